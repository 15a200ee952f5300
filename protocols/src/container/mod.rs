//! Containers: FLV (RTMP's bodies and HTTP-FLV), MPEG-TS (SRT, HTTP-TS, HLS), MPEG-PS
//! (GB28181 cameras), progressive MP4 (recordings, ingest) and fragmented MP4 (HLS, DASH, DVR);
//! ID3 tags for timed metadata; 3GPP timed text for the captions of MP4 recordings.

pub mod flv;
pub mod fmp4;
pub mod id3;
pub mod mp4;
pub mod ps;
pub mod timed_text;
pub mod ts;

/// A container recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// `FLV` signature.
    Flv,
    /// MPEG-TS: sync bytes at 0 and 188.
    Ts,
    /// MP4 / QuickTime: a known top-level box first.
    Mp4,
}

/// Which container `data` holds, by content (not by name).
pub fn sniff(data: &[u8]) -> Option<Sniffed> {
    if data.starts_with(b"FLV") {
        Some(Sniffed::Flv)
    } else if data.len() >= 2 * ts::PACKET_SIZE && data[0] == 0x47 && data[ts::PACKET_SIZE] == 0x47 {
        Some(Sniffed::Ts)
    } else if mp4::box_header(data).is_some_and(|(kind, _, _)| matches!(&kind, b"ftyp" | b"moov" | b"mdat" | b"free" | b"wide")) {
        Some(Sniffed::Mp4)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_recognised_by_content() {
        assert_eq!(sniff(b"FLV\x01\x05"), Some(Sniffed::Flv));
        let mut ts = vec![0u8; 376];
        ts[0] = 0x47;
        ts[188] = 0x47;
        assert_eq!(sniff(&ts), Some(Sniffed::Ts));
        assert_eq!(sniff(&[0, 0, 0, 16, b'f', b't', b'y', b'p', 0, 0, 0, 0, 0, 0, 0, 0]), Some(Sniffed::Mp4));
        assert_eq!(sniff(b"hello world, not media"), None);
        assert_eq!(sniff(&ts[..200]), None, "one sync byte is not enough");
    }
}
