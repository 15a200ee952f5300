//! CEA-608 closed captions carried in H.264/H.265 SEI (ATSC A/53 `GA94` user data, the form
//! FFmpeg, hls.js, Safari and VLC read), for captions added to a live stream: a caption is
//! sent as a pop-on caption on channel 1 (loaded off screen, shown at once with End Of
//! Caption), and erased when its time is up.
//!
//! Sans-IO: text in, byte pairs, SEI NAL units and frames out.

use crate::codec::{avc, hevc};
use crate::media::{Codec, MediaFrame};
use bytes::{BufMut, Bytes, BytesMut};

/// Characters per caption row.
pub const ROW_CHARS: usize = 32;
/// Rows a caption may take (the bottom four of the screen).
pub const MAX_ROWS: usize = 4;

/// A byte with odd parity in its top bit, as every 608 byte is sent.
fn parity(byte: u8) -> u8 {
    let byte = byte & 0x7f;
    if byte.count_ones() % 2 == 0 {
        byte | 0x80
    } else {
        byte
    }
}

/// A control code on channel 1, sent twice (decoders act on it once: the repeat survives a
/// lost pair).
fn control(first: u8, second: u8, out: &mut Vec<[u8; 2]>) {
    out.push([parity(first), parity(second)]);
    out.push([parity(first), parity(second)]);
}

/// The 608 basic character of `c`: ASCII maps to itself except where 608 put accented
/// letters; those letters map to their codes; anything else becomes `?`.
fn basic_char(c: char) -> u8 {
    match c {
        'á' => 0x2a,
        'é' => 0x5c,
        'í' => 0x5e,
        'ó' => 0x5f,
        'ú' => 0x60,
        'ç' => 0x7b,
        '÷' => 0x7c,
        'Ñ' => 0x7d,
        'ñ' => 0x7e,
        // The ASCII characters 608 replaced have no code of their own.
        '*' | '\\' | '^' | '_' | '`' | '{' | '|' | '}' | '~' => b'?',
        ' '..='~' => c as u8,
        _ => b'?',
    }
}

/// `text` word-wrapped into rows of at most [`ROW_CHARS`] characters, at most [`MAX_ROWS`]
/// of them (the last row ends with `...` when text was left out).
pub fn rows(text: &str) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let word: String = word.chars().take(ROW_CHARS).collect();
        if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > ROW_CHARS {
            rows.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&word);
    }
    if !current.is_empty() {
        rows.push(current);
    }
    if rows.len() > MAX_ROWS {
        rows.truncate(MAX_ROWS);
        let last = &mut rows[MAX_ROWS - 1];
        let kept: String = last.chars().take(ROW_CHARS - 3).collect();
        *last = format!("{kept}...");
    }
    rows
}

/// The byte pairs of a pop-on caption of `text` on channel 1: Resume Caption Loading, Erase
/// Non-displayed Memory, a Preamble Address Code per row (the bottom rows, column 0), the
/// characters, End Of Caption.
pub fn pop_on(text: &str) -> Vec<[u8; 2]> {
    let rows = rows(text);
    let mut out = Vec::new();
    control(0x14, 0x20, &mut out);
    control(0x14, 0x2e, &mut out);
    // Rows 12 to 15 (PAC first bytes 0x13, 0x13, 0x14, 0x14; the second row of each pair
    // has bit 0x20 set), indent 0 (0x50).
    const PAC: [(u8, u8); 4] = [(0x13, 0x50), (0x13, 0x70), (0x14, 0x50), (0x14, 0x70)];
    for (index, row) in rows.iter().enumerate() {
        let (first, second) = PAC[MAX_ROWS - rows.len() + index];
        control(first, second, &mut out);
        let bytes: Vec<u8> = row.chars().map(basic_char).collect();
        for pair in bytes.chunks(2) {
            out.push([parity(pair[0]), parity(pair.get(1).copied().unwrap_or(0))]);
        }
    }
    control(0x14, 0x2f, &mut out);
    out
}

/// The byte pairs that erase the caption on screen (Erase Displayed Memory).
pub fn erase() -> Vec<[u8; 2]> {
    let mut out = Vec::new();
    control(0x14, 0x2c, &mut out);
    out
}

/// The SEI message body (`user_data_registered_itu_t_t35`, payload type 4) carrying `pairs`
/// as field 1 data: country 0xB5, provider 0x0031, `GA94`, cc_data (at most 31 pairs).
fn sei_payload(pairs: &[[u8; 2]]) -> Vec<u8> {
    let pairs = &pairs[..pairs.len().min(31)];
    let mut payload = vec![0xb5, 0x00, 0x31, b'G', b'A', b'9', b'4', 0x03, 0xc0 | pairs.len() as u8, 0xff];
    for pair in pairs {
        payload.extend_from_slice(&[0xfc, pair[0], pair[1]]);
    }
    payload.push(0xff);
    payload
}

/// `rbsp` with emulation prevention bytes inserted (no `00 00 0x` with x ≤ 3 in a NAL).
fn escape(rbsp: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &byte in rbsp {
        if zeros >= 2 && byte <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(byte);
        zeros = if byte == 0 { zeros + 1 } else { 0 };
    }
}

/// SEI NAL units carrying `pairs` for `codec` (H.264 or H.265), at most 31 pairs each.
pub fn sei_nals(codec: Codec, pairs: &[[u8; 2]]) -> Vec<Bytes> {
    pairs
        .chunks(31)
        .filter_map(|chunk| {
            let mut rbsp = Vec::new();
            let payload = sei_payload(chunk);
            rbsp.push(4);
            rbsp.push(payload.len() as u8);
            rbsp.extend_from_slice(&payload);
            rbsp.push(0x80);
            let mut nal = match codec {
                Codec::H264 => vec![0x06],
                // Prefix SEI (type 39), layer 0, temporal id 1.
                Codec::H265 => vec![39 << 1, 0x01],
                _ => return None,
            };
            escape(&rbsp, &mut nal);
            Some(Bytes::from(nal))
        })
        .collect()
}

/// Whether a NAL unit (by its first byte) is a coded slice, before which SEI goes.
fn is_slice(codec: Codec, first: u8) -> bool {
    match codec {
        Codec::H264 => (1..=5).contains(&avc::nal_type(first)),
        _ => hevc::nal_type(first) < 32,
    }
}

/// `frame` (length-prefixed NAL units of `length_size` bytes) with `nals` inserted before its
/// first coded slice (after any access unit delimiter and parameter sets); None when the
/// frame is not H.264/H.265 or its units cannot be read.
pub fn with_nals(frame: &MediaFrame, length_size: usize, nals: &[Bytes]) -> Option<MediaFrame> {
    if !matches!(frame.codec, Codec::H264 | Codec::H265) || !(1..=4).contains(&length_size) || nals.is_empty() {
        return None;
    }
    let units: Vec<&[u8]> = avc::length_prefixed_nals(&frame.payload, length_size).collect();
    let read: usize = units.iter().map(|u| u.len() + length_size).sum();
    if read != frame.payload.len() || units.is_empty() {
        return None;
    }
    let mut out = BytesMut::with_capacity(frame.payload.len() + nals.iter().map(|n| n.len() + length_size).sum::<usize>());
    let put = |out: &mut BytesMut, unit: &[u8]| {
        let len = (unit.len() as u32).to_be_bytes();
        out.put_slice(&len[4 - length_size..]);
        out.put_slice(unit);
    };
    let mut inserted = false;
    for unit in units {
        if !inserted && unit.first().is_some_and(|b| is_slice(frame.codec, *b)) {
            for nal in nals {
                put(&mut out, nal);
            }
            inserted = true;
        }
        put(&mut out, unit);
    }
    if !inserted {
        return None;
    }
    Some(MediaFrame { payload: out.freeze(), ..frame.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Timebase, TrackKind};

    #[test]
    fn bytes_have_odd_parity_and_a_caption_is_loaded_then_shown() {
        assert_eq!(parity(0x14), 0x94);
        assert_eq!(parity(0x20), 0x20);
        let pairs = pop_on("Hi é");
        assert!(pairs.iter().flatten().all(|b| b.count_ones() % 2 == 1), "{pairs:02x?}");
        let plain: Vec<[u8; 2]> = pairs.iter().map(|p| [p[0] & 0x7f, p[1] & 0x7f]).collect();
        // RCL RCL ENM ENM, the bottom row's PAC twice, "Hi", " é", EOC EOC.
        assert_eq!(plain, vec![[0x14, 0x20], [0x14, 0x20], [0x14, 0x2e], [0x14, 0x2e], [0x14, 0x70], [0x14, 0x70], [b'H', b'i'], [b' ', 0x5c], [0x14, 0x2f], [0x14, 0x2f]]);
    }

    #[test]
    fn long_text_wraps_into_at_most_four_rows() {
        assert_eq!(rows("we are going to the park today and then we will go home"), vec!["we are going to the park today", "and then we will go home"]);
        let long = "word ".repeat(60);
        let wrapped = rows(&long);
        assert_eq!(wrapped.len(), MAX_ROWS);
        assert!(wrapped.iter().all(|r| r.chars().count() <= ROW_CHARS) && wrapped[3].ends_with("..."), "{wrapped:?}");
    }

    #[test]
    fn sei_goes_before_the_first_slice_and_is_escaped() {
        // A caption whose pairs hold 00 00 (a pair of padding after an odd character count
        // and a zero-valued pair) must not make a start code.
        let pairs = vec![[0x80, 0x80], [0x00, 0x00], [0x00, 0x01]];
        let nals = sei_nals(Codec::H264, &pairs);
        assert_eq!(nals.len(), 1);
        assert!(!nals[0].windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 3), "{:02x?}", nals[0]);
        let aud = [0x09u8, 0xf0];
        let idr = [0x65u8, 0x88, 0x84];
        let mut payload = Vec::new();
        for unit in [&aud[..], &idr[..]] {
            payload.extend_from_slice(&(unit.len() as u32).to_be_bytes());
            payload.extend_from_slice(unit);
        }
        let frame = MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts: 0, pts: 0, timebase: Timebase::MILLIS, keyframe: true, config: false, payload: Bytes::from(payload) };
        let out = with_nals(&frame, 4, &nals).unwrap();
        let units: Vec<&[u8]> = avc::length_prefixed_nals(&out.payload, 4).collect();
        assert_eq!(units.len(), 3);
        assert_eq!((units[0], units[1][0], units[2]), (&aud[..], 0x06, &idr[..]));
        assert_eq!(&units[1][3..7], b"\xb5\x00\x31G".as_slice());
        // A frame with no slice, or of another codec, is left alone.
        assert!(with_nals(&MediaFrame { payload: Bytes::from_static(&[0, 0, 0, 2, 0x09, 0xf0]), ..frame.clone() }, 4, &nals).is_none());
        assert!(with_nals(&MediaFrame { codec: Codec::Av1, ..frame }, 4, &nals).is_none());
        let hevc = sei_nals(Codec::H265, &pop_on("hello"));
        assert_eq!(&hevc[0][..3], &[0x4e, 0x01, 0x04]);
    }
}
