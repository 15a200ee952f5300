//! Caption tracks in MP4: 3GPP timed text (`tx3g`; 3GPP TS 26.245, carried in MP4 as
//! ISO/IEC 14496-17 describes) for MP4 recordings (FFmpeg reads it as `mov_text`, QuickTime
//! and VLC show it as a subtitle track), and WebVTT in ISO BMFF (`wvtt`, ISO/IEC 14496-30) for
//! DASH (dash.js and Shaka read it).
//!
//! A text track covers its whole timeline: every stretch without a caption is an empty
//! sample, so a sample's duration is how long its text stays on screen. [`samples_between`]
//! lays cues out that way for one span of a recording.

use super::fmp4::Track;
use crate::media::{Codec, MediaFrame, Timebase, TrackKind};
use bytes::{BufMut, Bytes, BytesMut};

/// The track's timescale: milliseconds, the unit of every caption time.
pub const TIMESCALE: u32 = 1000;

/// The longest text a sample carries (its length field is 16 bits); longer text is cut at a
/// character boundary.
pub const MAX_TEXT_BYTES: usize = u16::MAX as usize;

/// One caption on the recording's media timeline (milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    /// First millisecond shown.
    pub start_ms: i64,
    /// First millisecond no longer shown.
    pub end_ms: i64,
    /// The text (line breaks as `\n`).
    pub text: String,
}

/// The caption track of an MP4 file, with id `id`. Its configuration is the `tx3g` sample
/// entry's body after the SampleEntry header: white text centred at the bottom on a clear
/// background, in the player's default sans-serif font.
pub fn track(id: u32) -> Track {
    let mut body = BytesMut::new();
    body.put_u32(0); // displayFlags
    body.put_i8(1); // horizontal justification: centre
    body.put_i8(-1); // vertical justification: bottom
    body.put_slice(&[0, 0, 0, 0]); // background colour (RGBA): transparent
    body.put_slice(&[0; 8]); // default text box: the player's choice
    // StyleRecord: startChar, endChar, font-ID, face-style-flags, font-size, text colour.
    body.put_u16(0);
    body.put_u16(0);
    body.put_u16(1);
    body.put_u8(0);
    body.put_u8(18);
    body.put_slice(&[0xff, 0xff, 0xff, 0xff]);
    // FontTableBox: one font.
    let font = b"Sans-Serif";
    body.put_u32(8 + 2 + 2 + 1 + font.len() as u32);
    body.put_slice(b"ftab");
    body.put_u16(1);
    body.put_u16(1);
    body.put_u8(font.len() as u8);
    body.put_slice(font);
    Track { id, codec: Codec::Tx3g, timescale: TIMESCALE, config: body.freeze(), width: 0, height: 0, channels: 0, sample_rate: 0 }
}

/// How a caption track's samples are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// 3GPP timed text: a 16-bit length and the UTF-8 text.
    Tx3g,
    /// WebVTT in ISO BMFF: a `vttc` box holding the text in a `payl` box, or `vtte` for none.
    WebVtt,
}

/// The WebVTT caption track of a DASH text representation, with id `id`.
pub fn webvtt_track(id: u32) -> Track {
    Track { id, codec: Codec::WebVtt, timescale: TIMESCALE, config: Bytes::from_static(b"WEBVTT"), width: 0, height: 0, channels: 0, sample_rate: 0 }
}

/// Caption text as a WebVTT cue payload (a `.vtt` file's or a `payl` box's): `&`, `<` and `>`
/// escaped, no blank line (which would end the cue) and so no `-->` either.
pub fn webvtt_payload(text: &str) -> String {
    // A lone CR is a line break to WebVTT parsers.
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\r', "\n");
    escaped.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

/// A WebVTT sample showing `text` (empty: the empty cue box), as [`webvtt_payload`].
pub fn webvtt_sample(text: &str) -> Bytes {
    let mut out = BytesMut::new();
    if text.is_empty() {
        out.put_u32(8);
        out.put_slice(b"vtte");
        return out.freeze();
    }
    let payload = webvtt_payload(text);
    out.put_u32(16 + payload.len() as u32);
    out.put_slice(b"vttc");
    out.put_u32(8 + payload.len() as u32);
    out.put_slice(b"payl");
    out.put_slice(payload.as_bytes());
    out.freeze()
}

/// A sample showing `text` (empty: nothing shown).
pub fn sample(text: &str) -> Bytes {
    let mut end = text.len().min(MAX_TEXT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = BytesMut::with_capacity(2 + end);
    out.put_u16(end as u16);
    out.put_slice(&text.as_bytes()[..end]);
    out.freeze()
}

/// The text a sample shows; `None` when it is not a timed-text sample.
pub fn text_of(sample: &[u8]) -> Option<&str> {
    let len = u16::from_be_bytes([*sample.first()?, *sample.get(1)?]) as usize;
    std::str::from_utf8(sample.get(2..2 + len)?).ok()
}

fn frame(format: Format, at_ms: i64, text: &str) -> std::sync::Arc<MediaFrame> {
    let (codec, payload) = match format {
        Format::Tx3g => (Codec::Tx3g, sample(text)),
        Format::WebVtt => (Codec::WebVtt, webvtt_sample(text)),
    };
    std::sync::Arc::new(MediaFrame { track: TrackKind::Data, codec, dts: at_ms, pts: at_ms, timebase: Timebase::MILLIS, keyframe: true, config: false, payload })
}

/// The samples covering `[from_ms, to_ms)` exactly: each cue's part of the span (a cue that
/// starts while an earlier one is shown replaces it), and empty samples between. Each frame's
/// duration runs to the next frame's time, the last one's to `to_ms`. Empty when the span is.
/// 3GPP timed text; [`samples_in`] for another format.
pub fn samples_between(cues: &[Cue], from_ms: i64, to_ms: i64) -> Vec<std::sync::Arc<MediaFrame>> {
    samples_in(Format::Tx3g, cues, from_ms, to_ms)
}

/// [`samples_between`] in `format`.
pub fn samples_in(format: Format, cues: &[Cue], from_ms: i64, to_ms: i64) -> Vec<std::sync::Arc<MediaFrame>> {
    let mut out = Vec::new();
    if to_ms <= from_ms {
        return out;
    }
    let mut ordered: Vec<&Cue> = cues.iter().filter(|c| c.end_ms > from_ms && c.start_ms < to_ms && c.end_ms > c.start_ms).collect();
    ordered.sort_by_key(|c| c.start_ms);
    let mut at = from_ms;
    for (i, cue) in ordered.iter().enumerate() {
        let start = cue.start_ms.max(at);
        // Until the next cue starts, at most.
        let end = ordered.get(i + 1).map_or(cue.end_ms, |next| cue.end_ms.min(next.start_ms.max(start))).min(to_ms);
        if end <= start {
            continue;
        }
        if start > at {
            out.push(frame(format, at, ""));
        }
        out.push(frame(format, start, &cue.text));
        at = end;
    }
    if at < to_ms {
        out.push(frame(format, at, ""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn laid_out(cues: &[Cue], from: i64, to: i64) -> Vec<(i64, String)> {
        samples_between(cues, from, to).iter().map(|f| (f.dts, text_of(&f.payload).unwrap().to_string())).collect()
    }

    fn cue(start_ms: i64, end_ms: i64, text: &str) -> Cue {
        Cue { start_ms, end_ms, text: text.into() }
    }

    #[test]
    fn a_span_without_cues_is_one_empty_sample() {
        assert_eq!(laid_out(&[], 1000, 2000), vec![(1000, String::new())]);
        assert!(samples_between(&[], 2000, 2000).is_empty());
    }

    #[test]
    fn cues_are_cut_to_the_span_with_empty_samples_between() {
        let cues = [cue(500, 1300, "before and into"), cue(1500, 1700, "inside"), cue(1900, 2600, "over the end")];
        assert_eq!(
            laid_out(&cues, 1000, 2000),
            vec![(1000, "before and into".into()), (1300, String::new()), (1500, "inside".into()), (1700, String::new()), (1900, "over the end".into())]
        );
        // The next span goes on with the rest of the cue that crossed the end.
        assert_eq!(laid_out(&cues, 2000, 3000), vec![(2000, "over the end".into()), (2600, String::new())]);
    }

    #[test]
    fn a_cue_starting_while_another_is_shown_replaces_it() {
        let cues = [cue(0, 3000, "long"), cue(1000, 2000, "short")];
        assert_eq!(laid_out(&cues, 0, 4000), vec![(0, "long".into()), (1000, "short".into()), (2000, String::new())]);
    }

    #[test]
    fn samples_round_trip_and_long_text_is_cut_at_a_character() {
        assert_eq!(&sample("hé")[..], &[0, 3, b'h', 0xc3, 0xa9]);
        assert_eq!(text_of(&sample("hé")), Some("hé"));
        assert_eq!(text_of(&sample("")), Some(""));
        assert_eq!(text_of(&[0, 5, b'a']), None, "a length past the end is not a sample");
        let long = "é".repeat(40_000);
        let cut = sample(&long);
        let text = text_of(&cut).unwrap();
        assert!(text.len() <= MAX_TEXT_BYTES && text.len() == 65_534, "{}", text.len());
    }

    #[test]
    fn webvtt_samples_are_cue_boxes() {
        assert_eq!(&webvtt_sample("")[..], b"\0\0\0\x08vtte");
        let boxed = webvtt_sample("a < b\n\nc");
        assert_eq!(&boxed[4..8], b"vttc");
        assert_eq!(&boxed[12..16], b"payl");
        assert_eq!(&boxed[16..], b"a &lt; b\nc");
        assert_eq!(u32::from_be_bytes(boxed[..4].try_into().unwrap()) as usize, boxed.len());
        let laid: Vec<Vec<u8>> = samples_in(Format::WebVtt, &[cue(100, 200, "x")], 0, 300).iter().map(|f| f.payload.to_vec()).collect();
        assert_eq!(laid, vec![webvtt_sample("").to_vec(), webvtt_sample("x").to_vec(), webvtt_sample("").to_vec()]);
    }

    #[test]
    fn the_sample_entry_names_its_font() {
        let track = track(3);
        assert_eq!((track.id, track.codec, track.timescale), (3, Codec::Tx3g, 1000));
        // 10 bytes of flags, justification and colour, an 8-byte box, a 12-byte style record.
        assert_eq!(&track.config[34..38], b"ftab");
        assert_eq!(track.config.len(), 30 + 8 + 2 + 2 + 1 + 10);
    }
}
