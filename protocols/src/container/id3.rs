//! ID3v2.4 tags for timed metadata: the form HLS carries it in (a timed-metadata PES stream in
//! MPEG-TS, Apple's "Timed Metadata for HTTP Live Streaming") and CMAF carries it in (an
//! `emsg` box of scheme `https://aomedia.org/emsg/ID3`). hls.js, Safari and ffmpeg read it.

use bytes::{BufMut, Bytes, BytesMut};

/// The `emsg` scheme of ID3 tags in CMAF (AOM "Carriage of ID3 Timed Metadata in CMAF").
pub const EMSG_SCHEME: &str = "https://aomedia.org/emsg/ID3";

/// A 28-bit number as four 7-bit bytes (ID3v2's "synchsafe" sizes).
fn synchsafe(n: usize) -> [u8; 4] {
    let n = n.min(0x0fff_ffff) as u32;
    [(n >> 21) as u8 & 0x7f, (n >> 14) as u8 & 0x7f, (n >> 7) as u8 & 0x7f, n as u8 & 0x7f]
}

/// An ID3v2.4 tag holding one `TXXX` (user text) frame: UTF-8, `description` then `value`.
/// Sizes past 256 MiB cannot be written; callers bound what they carry far below that.
pub fn txxx_tag(description: &str, value: &str) -> Bytes {
    let mut frame = BytesMut::with_capacity(1 + description.len() + 1 + value.len());
    frame.put_u8(0x03);
    frame.put_slice(description.replace('\0', " ").as_bytes());
    frame.put_u8(0);
    frame.put_slice(value.replace('\0', " ").as_bytes());
    let mut tag = BytesMut::with_capacity(20 + frame.len());
    tag.put_slice(b"ID3");
    tag.put_slice(&[0x04, 0x00, 0x00]);
    tag.put_slice(&synchsafe(10 + frame.len()));
    tag.put_slice(b"TXXX");
    tag.put_slice(&synchsafe(frame.len()));
    tag.put_slice(&[0x00, 0x00]);
    tag.put_slice(&frame);
    tag.freeze()
}

/// The (description, value) of the first `TXXX` frame of an ID3v2.3/2.4 tag.
pub fn read_txxx(tag: &[u8]) -> Option<(String, String)> {
    let size = |b: &[u8], safe: bool| -> usize {
        if safe {
            b.iter().fold(0usize, |n, x| (n << 7) | (*x & 0x7f) as usize)
        } else {
            b.iter().fold(0usize, |n, x| (n << 8) | *x as usize)
        }
    };
    if tag.len() < 10 || &tag[..3] != b"ID3" {
        return None;
    }
    let v4 = tag[3] == 4;
    let end = (10 + size(&tag[6..10], true)).min(tag.len());
    let mut at = 10;
    while at + 10 <= end {
        let id = &tag[at..at + 4];
        let len = size(&tag[at + 4..at + 8], v4);
        let body = tag.get(at + 10..at + 10 + len)?;
        if id == b"TXXX" && body.first() == Some(&0x03) {
            let text = &body[1..];
            let split = text.iter().position(|b| *b == 0)?;
            return Some((String::from_utf8_lossy(&text[..split]).into_owned(), String::from_utf8_lossy(&text[split + 1..]).into_owned()));
        }
        if id == [0, 0, 0, 0] {
            return None;
        }
        at += 10 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_reads_back_and_sizes_are_synchsafe() {
        let value = "x".repeat(300);
        let tag = txxx_tag("estuary.metadata", &value);
        assert_eq!(&tag[..5], b"ID3\x04\x00");
        // 300 + 18 bytes of frame body: no size byte has its top bit set.
        assert!(tag[6..10].iter().chain(&tag[14..18]).all(|b| b & 0x80 == 0));
        assert_eq!(tag.len(), 10 + 10 + 1 + 16 + 1 + 300);
        assert_eq!(read_txxx(&tag), Some(("estuary.metadata".into(), value)));
        assert_eq!(synchsafe(0x80), [0, 0, 1, 0]);
        assert_eq!(read_txxx(b"ID2\x04"), None);
    }
}
