//! A look at raw SRT handshake datagrams before the SRT library parses them.
//!
//! Estuary drives `srt-protocol`'s sans-IO state machines, whose handshake parser aborts on
//! extension blocks it does not implement. Callers send those in ordinary configurations:
//! `transtype=file` adds an `SRT_CMD_CONGESTION` block ("file"), `packetfilter=` an
//! `SRT_CMD_FILTER`, socket groups an `SRT_CMD_GROUP`. This module finds such blocks so the
//! listener can refuse the caller with the matching reject code, and strips blocks that carry
//! nothing Estuary needs.
//!
//! ## Layout (SRT RFC draft, draft-sharabayko-srt, sections 3.2 and 3.2.1)
//! A control packet starts with a 16-byte header (bit 0 set; control type 0 is HANDSHAKE),
//! then the 48-byte handshake body:
//!
//! | offset in datagram | field |
//! |---|---|
//! | 16 | version (5 for HSv5) |
//! | 22 | extension flags (HSREQ 1, KMREQ 2, CONFIG 4) in conclusion packets |
//! | 24 | initial sequence number, then MTU (28) and flow window (32) |
//! | 36 | handshake type (1 induction, 0 wave-a-hand, -1 conclusion, -2 agreement, 1000+ reject) |
//! | 40 | SRT socket id of the sender, then SYN cookie (44) and peer address (48..64) |
//! | 64.. | extension blocks: type `u16`, length in 32-bit words `u16`, contents |
//!
//! String contents (stream id, congestion type) are stored in 32-bit words with each word's
//! bytes reversed, padded with zeros.

/// `SRT_CMD_KMREQ`: the caller's keying material (it encrypts).
pub const EXT_KEY_MATERIAL: u16 = 3;
/// `SRT_CMD_SID`: the stream id.
pub const EXT_STREAM_ID: u16 = 5;
/// `SRT_CMD_CONGESTION`: the congestion controller ("live" or "file").
pub const EXT_CONGESTION: u16 = 6;
/// `SRT_CMD_FILTER`: a packet filter configuration (e.g. FEC).
pub const EXT_FILTER: u16 = 7;
/// `SRT_CMD_GROUP`: socket group membership (bonding).
pub const EXT_GROUP: u16 = 8;

const HEADER: usize = 16;
const BODY: usize = 48;

/// One extension block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// Block type (`SRT_CMD_*`).
    pub kind: u16,
    /// Byte range of the whole block (type and length words included) in the datagram.
    pub range: std::ops::Range<usize>,
}

/// What a handshake datagram says, as far as the listener needs to know before parsing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeView {
    /// Handshake type (1 induction, -1 conclusion, ...).
    pub shake_type: i32,
    /// The sender's socket id.
    pub socket_id: u32,
    /// Extension blocks, in order (only conclusion packets carry them).
    pub extensions: Vec<Extension>,
}

impl HandshakeView {
    /// The congestion controller named by an `SRT_CMD_CONGESTION` block, if any.
    pub fn congestion(&self, datagram: &[u8]) -> Option<String> {
        let ext = self.extensions.iter().find(|e| e.kind == EXT_CONGESTION)?;
        Some(decode_string(&datagram[ext.range.start + 4..ext.range.end]))
    }

    /// Whether a block of `kind` is present.
    pub fn has(&self, kind: u16) -> bool {
        self.extensions.iter().any(|e| e.kind == kind)
    }
}

/// The handshake in `datagram`, or `None` when it is not a well-formed handshake control
/// packet (data packets, other control packets, short or inconsistent datagrams).
pub fn inspect(datagram: &[u8]) -> Option<HandshakeView> {
    if datagram.len() < HEADER + BODY || datagram[0] & 0x80 == 0 || u16::from_be_bytes([datagram[0] & 0x7f, datagram[1]]) != 0 {
        return None;
    }
    let shake_type = i32::from_be_bytes(datagram[36..40].try_into().ok()?);
    let socket_id = u32::from_be_bytes(datagram[40..44].try_into().ok()?);
    let mut extensions = Vec::new();
    let mut at = HEADER + BODY;
    // Extensions only follow an HSv5 conclusion (or agreement); induction packets carry a
    // magic code in the flag field instead.
    if shake_type == -1 || shake_type == -2 {
        while datagram.len() >= at + 4 {
            let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
            let words = u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]) as usize;
            let end = at + 4 + words * 4;
            if end > datagram.len() {
                return None;
            }
            extensions.push(Extension { kind, range: at..end });
            at = end;
        }
    }
    Some(HandshakeView { shake_type, socket_id, extensions })
}

/// `datagram` without the extension blocks of the given kinds. The flag field is left as it
/// is: `CONFIG` also covers the stream id block, which stays.
pub fn strip(datagram: &[u8], view: &HandshakeView, kinds: &[u16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(datagram.len());
    let mut copied = 0;
    for ext in view.extensions.iter().filter(|e| kinds.contains(&e.kind)) {
        out.extend_from_slice(&datagram[copied..ext.range.start]);
        copied = ext.range.end;
    }
    out.extend_from_slice(&datagram[copied..]);
    out
}

/// Decodes SRT's word-swapped, zero-padded string encoding.
pub fn decode_string(contents: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(contents.len());
    for word in contents.chunks(4) {
        bytes.extend(word.iter().rev());
    }
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Encodes `text` in SRT's word-swapped, zero-padded string encoding.
pub fn encode_string(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    bytes.chunks(4).flat_map(|word| word.iter().rev().copied().collect::<Vec<u8>>()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A conclusion handshake as libsrt sends it with `transtype=file`: header, body, then an
    /// HSREQ block (3 words), a stream id block and a congestion block.
    fn conclusion(stream_id: &str, congestion: Option<&str>) -> Vec<u8> {
        let mut d = vec![0u8; HEADER + BODY];
        d[0] = 0x80; // control, type 0 = handshake
        d[16..20].copy_from_slice(&5u32.to_be_bytes());
        d[22..24].copy_from_slice(&5u16.to_be_bytes()); // HSREQ | CONFIG
        d[36..40].copy_from_slice(&(-1i32).to_be_bytes());
        d[40..44].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        d.extend_from_slice(&1u16.to_be_bytes());
        d.extend_from_slice(&3u16.to_be_bytes());
        d.extend_from_slice(&[0; 12]);
        for (kind, text) in [(EXT_STREAM_ID, Some(stream_id)), (EXT_CONGESTION, congestion)] {
            if let Some(text) = text {
                let body = encode_string(text);
                d.extend_from_slice(&kind.to_be_bytes());
                d.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
                d.extend_from_slice(&body);
            }
        }
        d
    }

    /// The conclusion handshake ffmpeg 5.1 (libsrt 1.5) sends for
    /// `srt://127.0.0.1:10090?streamid=#!::r=live/file,m=publish&transtype=file`, captured on
    /// loopback: HSREQ (1), stream id (5) and congestion "file" (6) blocks.
    const FFMPEG_FILE_MODE_CONCLUSION: &[&str] = &[
        "8000000000000000000002df00000000000000050000000536a4ed66000005dc00002000ffffffff24c565cbf440121f",
        "0100007f0000000000000000000000000001000300010501000000e400000000000500073a3a2123696c3d72662f6576",
        "2c656c6975703d6d73696c620000006800060001656c6966",
    ];

    fn hex(lines: &[&str]) -> Vec<u8> {
        let text: String = lines.concat();
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn real_ffmpeg_file_mode_conclusion() {
        let d = hex(FFMPEG_FILE_MODE_CONCLUSION);
        let view = inspect(&d).unwrap();
        assert_eq!(view.shake_type, -1);
        assert_eq!(view.extensions.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![1, EXT_STREAM_ID, EXT_CONGESTION]);
        assert_eq!(view.congestion(&d).as_deref(), Some("file"));
        let sid = &view.extensions[1];
        assert_eq!(decode_string(&d[sid.range.start + 4..sid.range.end]), "#!::r=live/file,m=publish");
        let stripped = strip(&d, &view, &[EXT_CONGESTION]);
        assert_eq!(stripped.len(), d.len() - 8);
        assert!(!inspect(&stripped).unwrap().has(EXT_CONGESTION));
    }

    #[test]
    fn finds_congestion_block_and_strips_it() {
        let d = conclusion("#!::r=live/s,m=publish", Some("file"));
        let view = inspect(&d).unwrap();
        assert_eq!(view.shake_type, -1);
        assert_eq!(view.socket_id, 0x1234_5678);
        assert_eq!(view.extensions.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![1, EXT_STREAM_ID, EXT_CONGESTION]);
        assert_eq!(view.congestion(&d).as_deref(), Some("file"));
        let sid = &view.extensions[1];
        assert_eq!(decode_string(&d[sid.range.start + 4..sid.range.end]), "#!::r=live/s,m=publish");

        let stripped = strip(&d, &view, &[EXT_CONGESTION]);
        assert_eq!(stripped, conclusion("#!::r=live/s,m=publish", None));
        let again = inspect(&stripped).unwrap();
        assert!(!again.has(EXT_CONGESTION));
        assert!(again.has(EXT_STREAM_ID));
    }

    #[test]
    fn refuses_what_is_not_a_handshake() {
        let d = conclusion("live/s", None);
        assert!(inspect(&d[..60]).is_none(), "short");
        let mut data = d.clone();
        data[0] = 0x00;
        assert!(inspect(&data).is_none(), "data packet");
        let mut ack = d.clone();
        ack[1] = 2;
        assert!(inspect(&ack).is_none(), "ACK control packet");
        let mut overlong = d.clone();
        overlong[HEADER + BODY + 3] = 200; // HSREQ block claims 200 words
        assert!(inspect(&overlong).is_none(), "block past the end");
    }

    #[test]
    fn every_split_point_is_safe() {
        // Truncating a datagram anywhere never panics and never reads past the end.
        let d = conclusion("#!::r=live/s,m=publish", Some("live"));
        for len in 0..=d.len() {
            if let Some(view) = inspect(&d[..len]) {
                for ext in &view.extensions {
                    assert!(ext.range.end <= len);
                }
                let _ = view.congestion(&d[..len]);
            }
        }
    }

    #[test]
    fn string_round_trip() {
        for text in ["", "live", "file", "#!::r=a/b", "abcde"] {
            assert_eq!(decode_string(&encode_string(text)), text);
        }
        assert_eq!(encode_string("live"), b"evil".to_vec());
    }
}
