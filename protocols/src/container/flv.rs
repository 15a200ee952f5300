//! FLV (Adobe Flash Video File Format Specification v10.1, annex E) and enhanced FLV
//! (the "Enhanced RTMP" specification of the Veovera group, v1/v2): the file header, tags,
//! and the audio/video tag bodies that RTMP also carries as message payloads.
//!
//! ## Tag bodies
//! - Legacy video: `FrameType(4) CodecID(4)`; for AVC (7) and the widespread HEVC extension
//!   (12): `AVCPacketType(8) CompositionTime(SI24)` then the payload.
//! - Enhanced video: `IsExHeader(1)=1 FrameType(3) PacketType(4) FourCC(32)`; for `avc1`/`hvc1`
//!   the `CodedFrames` packet carries SI24 composition time, `CodedFramesX` has none.
//! - Legacy audio: `SoundFormat(4) Rate(2) Size(1) Type(1)`; for AAC (10) `AACPacketType(8)`.
//! - Enhanced audio: `SoundFormat(4)=9 PacketType(4) FourCC(32)`, used for Opus.
//!
//! Estuary writes H.264 and AAC in the legacy form (every player reads it) and H.265, AV1 and
//! Opus in the enhanced form.
//!
//! ## Demuxing
//! [`FlvDemuxer`] is split-proof: bytes may arrive in any chunking and the same tags come out.

use crate::amf0;
use crate::media::{Codec, MediaFrame, Timebase, TrackKind};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// FLV tag type of audio.
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type of video.
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type of script data.
pub const TAG_SCRIPT: u8 = 18;

/// A malformed FLV tag or body.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FlvError {
    /// The body is shorter than its header.
    #[error("{kind} tag body of {len} bytes is too short")]
    ShortBody {
        /// "audio" or "video".
        kind: &'static str,
        /// The body length.
        len: usize,
    },
    /// A codec Estuary does not carry.
    #[error("unsupported {kind} codec {id}")]
    UnsupportedCodec {
        /// "audio" or "video".
        kind: &'static str,
        /// The codec id or FourCC.
        id: String,
    },
    /// Not an FLV file.
    #[error("not an FLV stream (signature {0:02x?})")]
    BadSignature([u8; 3]),
    /// A tag larger than allowed.
    #[error("FLV tag of {size} bytes at offset {offset} exceeds the limit of {limit}")]
    TagTooLarge {
        /// Declared size.
        size: usize,
        /// Where the tag starts.
        offset: u64,
        /// The limit.
        limit: usize,
    },
}

/// The 9-byte FLV header followed by the first `PreviousTagSize0`.
pub fn file_header(has_audio: bool, has_video: bool) -> [u8; 13] {
    let flags = (has_audio as u8) << 2 | has_video as u8;
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// The 11-byte header of a tag.
pub fn tag_header(tag_type: u8, data_size: usize, timestamp_ms: i64) -> [u8; 11] {
    let ts = timestamp_ms.max(0) as u64 as u32;
    let size = data_size.min(0xff_ffff) as u32;
    [
        tag_type,
        (size >> 16) as u8,
        (size >> 8) as u8,
        size as u8,
        (ts >> 16) as u8,
        (ts >> 8) as u8,
        ts as u8,
        (ts >> 24) as u8,
        0,
        0,
        0,
    ]
}

/// Appends a complete tag (header, body, `PreviousTagSize`) to `out`.
pub fn write_tag(out: &mut BytesMut, tag_type: u8, timestamp_ms: i64, body: &[u8]) {
    out.put_slice(&tag_header(tag_type, body.len(), timestamp_ms));
    out.put_slice(body);
    out.put_u32(11 + body.len() as u32);
}

/// Appends the tag for `frame` to `out`.
pub fn write_frame_tag(out: &mut BytesMut, frame: &MediaFrame) {
    let prefix = body_prefix(frame);
    let tag_type = match frame.track {
        TrackKind::Video => TAG_VIDEO,
        TrackKind::Audio => TAG_AUDIO,
        TrackKind::Data => TAG_SCRIPT,
    };
    let size = prefix.len() + frame.payload.len();
    out.reserve(11 + size + 4);
    out.put_slice(&tag_header(tag_type, size, frame.dts_ms()));
    out.put_slice(&prefix);
    out.put_slice(&frame.payload);
    out.put_u32(11 + size as u32);
}

/// The bytes an FLV/RTMP body puts before the canonical payload of `frame`.
pub fn body_prefix(frame: &MediaFrame) -> BodyPrefix {
    let mut prefix = BodyPrefix { bytes: [0; 8], len: 0 };
    let cts = frame.cts_ms().clamp(-0x80_0000, 0x7f_ffff) as i32;
    let cts_bytes = [(cts >> 16) as u8, (cts >> 8) as u8, cts as u8];
    let legacy_frame_type = if frame.keyframe { 0x10 } else { 0x20 };
    match frame.codec {
        Codec::H264 => {
            prefix.push(&[legacy_frame_type | 7, if frame.config { 0 } else { 1 }]);
            prefix.push(if frame.config { &[0, 0, 0] } else { &cts_bytes });
        }
        Codec::H265 | Codec::Av1 => {
            let fourcc = if frame.codec == Codec::H265 { b"hvc1" } else { b"av01" };
            let frame_type = if frame.keyframe || frame.config { 0x10 } else { 0x20 };
            let packet_type = if frame.config {
                0
            } else if frame.codec == Codec::H265 && cts != 0 {
                1
            } else {
                3
            };
            prefix.push(&[0x80 | frame_type | packet_type]);
            prefix.push(fourcc);
            if packet_type == 1 {
                prefix.push(&cts_bytes);
            }
        }
        Codec::Aac => prefix.push(&[0xaf, if frame.config { 0 } else { 1 }]),
        Codec::Opus => {
            prefix.push(&[0x90 | if frame.config { 0 } else { 1 }]);
            prefix.push(b"Opus");
        }
        Codec::Mp3 => prefix.push(&[0x2f]),
        Codec::G711A => prefix.push(&[0x7e]),
        Codec::G711U => prefix.push(&[0x8e]),
        Codec::ScriptData | Codec::Tx3g | Codec::WebVtt => {}
    }
    prefix
}

/// Up to 8 bytes that precede a payload in an FLV/RTMP body.
#[derive(Debug, Clone, Copy)]
pub struct BodyPrefix {
    bytes: [u8; 8],
    len: usize,
}

impl BodyPrefix {
    fn push(&mut self, data: &[u8]) {
        self.bytes[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
    }
}

impl std::ops::Deref for BodyPrefix {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The FLV/RTMP body of `frame` (prefix and payload).
pub fn frame_to_body(frame: &MediaFrame) -> Bytes {
    let prefix = body_prefix(frame);
    if prefix.is_empty() {
        return frame.payload.clone();
    }
    let mut out = BytesMut::with_capacity(prefix.len() + frame.payload.len());
    out.put_slice(&prefix);
    out.put_slice(&frame.payload);
    out.freeze()
}

fn si24(bytes: &[u8]) -> i64 {
    let raw = ((bytes[0] as i32) << 16) | ((bytes[1] as i32) << 8) | bytes[2] as i32;
    ((raw << 8) >> 8) as i64
}

/// Converts a video tag body at `dts_ms` into a frame. `Ok(None)` for bodies that carry no
/// media (end of sequence, command frames, metadata packets).
pub fn video_body_to_frame(dts_ms: i64, body: &Bytes) -> Result<Option<MediaFrame>, FlvError> {
    let short = || FlvError::ShortBody { kind: "video", len: body.len() };
    let first = *body.first().ok_or_else(short)?;
    let (codec, keyframe, config, cts, payload) = if first & 0x80 != 0 {
        let frame_type = (first >> 4) & 0x07;
        let packet_type = first & 0x0f;
        if body.len() < 5 {
            return Err(short());
        }
        let fourcc = &body[1..5];
        let codec = match fourcc {
            b"avc1" => Codec::H264,
            b"hvc1" => Codec::H265,
            b"av01" => Codec::Av1,
            other => {
                return Err(FlvError::UnsupportedCodec {
                    kind: "video",
                    id: String::from_utf8_lossy(other).into_owned(),
                })
            }
        };
        if frame_type == 5 {
            return Ok(None);
        }
        match packet_type {
            0 => (codec, true, true, 0, body.slice(5..)),
            1 if codec != Codec::Av1 => {
                if body.len() < 8 {
                    return Err(short());
                }
                (codec, frame_type == 1, false, si24(&body[5..8]), body.slice(8..))
            }
            1 | 3 => (codec, frame_type == 1, false, 0, body.slice(5..)),
            _ => return Ok(None),
        }
    } else {
        let frame_type = first >> 4;
        let codec = match first & 0x0f {
            7 => Codec::H264,
            12 => Codec::H265,
            other => {
                return Err(FlvError::UnsupportedCodec { kind: "video", id: other.to_string() })
            }
        };
        if frame_type == 5 {
            return Ok(None);
        }
        if body.len() < 5 {
            return Err(short());
        }
        match body[1] {
            0 => (codec, true, true, 0, body.slice(5..)),
            1 => (codec, frame_type == 1, false, si24(&body[2..5]), body.slice(5..)),
            _ => return Ok(None),
        }
    };
    if payload.is_empty() {
        return Ok(None);
    }
    Ok(Some(MediaFrame {
        track: TrackKind::Video,
        codec,
        dts: dts_ms,
        pts: dts_ms + cts,
        timebase: Timebase::MILLIS,
        keyframe,
        config,
        payload,
    }))
}

/// Converts an audio tag body at `dts_ms` into a frame; `Ok(None)` for bodies with no media.
pub fn audio_body_to_frame(dts_ms: i64, body: &Bytes) -> Result<Option<MediaFrame>, FlvError> {
    let short = || FlvError::ShortBody { kind: "audio", len: body.len() };
    let first = *body.first().ok_or_else(short)?;
    let (codec, config, payload) = match first >> 4 {
        10 => {
            if body.len() < 2 {
                return Err(short());
            }
            (Codec::Aac, body[1] == 0, body.slice(2..))
        }
        9 => {
            if body.len() < 5 {
                return Err(short());
            }
            let codec = match &body[1..5] {
                b"Opus" => Codec::Opus,
                b"mp4a" => Codec::Aac,
                b".mp3" => Codec::Mp3,
                other => {
                    return Err(FlvError::UnsupportedCodec {
                        kind: "audio",
                        id: String::from_utf8_lossy(other).into_owned(),
                    })
                }
            };
            match first & 0x0f {
                0 => (codec, true, body.slice(5..)),
                1 => (codec, false, body.slice(5..)),
                _ => return Ok(None),
            }
        }
        2 | 14 => (Codec::Mp3, false, body.slice(1..)),
        7 => (Codec::G711A, false, body.slice(1..)),
        8 => (Codec::G711U, false, body.slice(1..)),
        other => {
            return Err(FlvError::UnsupportedCodec { kind: "audio", id: other.to_string() })
        }
    };
    if payload.is_empty() {
        return Ok(None);
    }
    Ok(Some(MediaFrame {
        track: TrackKind::Audio,
        codec,
        dts: dts_ms,
        pts: dts_ms,
        timebase: Timebase::MILLIS,
        keyframe: true,
        config,
        payload,
    }))
}

/// Converts a script data body into a metadata frame when it is `onMetaData` (with or without
/// the `@setDataFrame` wrapper RTMP publishers add). Other script data gives `None`.
pub fn script_body_to_frame(dts_ms: i64, body: &[u8]) -> Result<Option<MediaFrame>, amf0::Amf0Error> {
    let values = amf0::decode_all(body)?;
    let mut values = values.as_slice();
    if values.first().and_then(|v| v.as_str()) == Some("@setDataFrame") {
        values = &values[1..];
    }
    if values.first().and_then(|v| v.as_str()) != Some("onMetaData") || values.len() < 2 {
        return Ok(None);
    }
    let payload = amf0::encode_all(&values[..2]).freeze();
    Ok(Some(MediaFrame {
        track: TrackKind::Data,
        codec: Codec::ScriptData,
        dts: dts_ms,
        pts: dts_ms,
        timebase: Timebase::MILLIS,
        keyframe: false,
        config: true,
        payload,
    }))
}

/// A caption as FLV/RTMP script data at `dts_ms`: `onTextData` with an ECMA array of `type`
/// ("Text"), `text` and `language` (an ISO 639-2 code), the form Flash players raise as a
/// text event and FFmpeg's FLV reader turns into a text subtitle track. Not metadata: it is a
/// timed event (`config` false), carried at its own time. `span`, the stream time (ms) the
/// caption belongs to when its sender knew it, goes along as `start`/`end` fields (players
/// ignore fields they do not know; the HLS packager times its WebVTT cues by them).
pub fn text_data_frame(dts_ms: i64, text: &str, language: &str, span: (Option<i64>, Option<i64>)) -> MediaFrame {
    let mut fields = vec![
        ("type".to_string(), amf0::Value::String("Text".into())),
        ("text".to_string(), amf0::Value::String(text.into())),
        ("language".to_string(), amf0::Value::String(language.into())),
    ];
    for (name, value) in [("start", span.0), ("end", span.1)] {
        if let Some(ms) = value {
            fields.push((name.to_string(), amf0::Value::Number(ms as f64)));
        }
    }
    let payload = amf0::encode_all(&[amf0::Value::String("onTextData".into()), amf0::Value::EcmaArray(fields)]).freeze();
    MediaFrame { track: TrackKind::Data, codec: Codec::ScriptData, dts: dts_ms, pts: dts_ms, timebase: Timebase::MILLIS, keyframe: false, config: false, payload }
}

/// Timed metadata (a model's detections, a producer's cue) as FLV/RTMP script data at
/// `dts_ms`: an `onCuePoint` event (`name` "estuary.metadata", `time` in seconds, `type`
/// "event", `parameters.json` the JSON text), the cue point form Flash-era players raise.
pub fn cue_point_frame(dts_ms: i64, json: &str) -> MediaFrame {
    let parameters = vec![("json".to_string(), amf0::Value::String(json.into()))];
    let fields = vec![
        ("name".to_string(), amf0::Value::String("estuary.metadata".into())),
        ("time".to_string(), amf0::Value::Number(dts_ms as f64 / 1000.0)),
        ("type".to_string(), amf0::Value::String("event".into())),
        ("parameters".to_string(), amf0::Value::Object(parameters)),
    ];
    let payload = amf0::encode_all(&[amf0::Value::String("onCuePoint".into()), amf0::Value::Object(fields)]).freeze();
    MediaFrame { track: TrackKind::Data, codec: Codec::ScriptData, dts: dts_ms, pts: dts_ms, timebase: Timebase::MILLIS, keyframe: false, config: false, payload }
}

fn script_name_is(payload: &[u8], name: &[u8]) -> bool {
    payload.len() >= 3 + name.len() && payload[0] == 0x02 && payload[1..3] == (name.len() as u16).to_be_bytes() && &payload[3..3 + name.len()] == name
}

/// Whether a script data payload is a caption (`onTextData`).
pub fn is_text_data(payload: &[u8]) -> bool {
    script_name_is(payload, b"onTextData")
}

/// A caption read back from its `onTextData` payload.
#[derive(Debug, Clone, PartialEq)]
pub struct TextData {
    /// The caption's text.
    pub text: String,
    /// Its language (ISO 639), when given.
    pub language: Option<String>,
    /// The stream time (ms) it starts at, when its sender gave it.
    pub start_ms: Option<i64>,
    /// And ends at.
    pub end_ms: Option<i64>,
}

/// The caption of an `onTextData` payload, if it is one with text.
pub fn parse_text_data(payload: &[u8]) -> Option<TextData> {
    if !is_text_data(payload) {
        return None;
    }
    let values = amf0::decode_all(payload).ok()?;
    let fields = values.get(1)?;
    let number = |name: &str| fields.get(name).and_then(|v| v.as_f64()).filter(|v| v.is_finite() && *v >= 0.0).map(|v| v as i64);
    Some(TextData {
        text: fields.get("text")?.as_str()?.to_string(),
        language: fields.get("language").and_then(|v| v.as_str()).map(str::to_string),
        start_ms: number("start"),
        end_ms: number("end"),
    })
}

/// The JSON text of timed metadata made by [`cue_point_frame`], if the payload is one.
pub fn parse_cue_point(payload: &[u8]) -> Option<String> {
    if !script_name_is(payload, b"onCuePoint") {
        return None;
    }
    let values = amf0::decode_all(payload).ok()?;
    let fields = values.get(1)?;
    if fields.get("name")?.as_str()? != "estuary.metadata" {
        return None;
    }
    Some(fields.get("parameters")?.get("json")?.as_str()?.to_string())
}

/// Whether a script data payload is the stream's `onMetaData` (which a joining player is
/// given first), not a timed event such as a caption.
pub fn is_metadata(payload: &[u8]) -> bool {
    script_name_is(payload, b"onMetaData")
}

/// One tag read from an FLV stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// 8 audio, 9 video, 18 script.
    pub tag_type: u8,
    /// Timestamp in milliseconds (with the extension byte).
    pub timestamp: u32,
    /// The body.
    pub body: Bytes,
    /// Byte offset of the tag header in the stream.
    pub offset: u64,
}

/// A split-proof FLV stream parser.
#[derive(Debug)]
pub struct FlvDemuxer {
    buffer: BytesMut,
    header_done: bool,
    offset: u64,
    max_tag_size: usize,
    /// Audio and video flags from the file header.
    pub flags: u8,
}

impl Default for FlvDemuxer {
    fn default() -> Self {
        Self::new(16 << 20)
    }
}

impl FlvDemuxer {
    /// A demuxer that refuses tags above `max_tag_size` bytes.
    pub fn new(max_tag_size: usize) -> Self {
        FlvDemuxer { buffer: BytesMut::new(), header_done: false, offset: 0, max_tag_size, flags: 0 }
    }

    /// Adds bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// Adds bytes it may keep without copying (a whole file read at once).
    pub fn push_owned(&mut self, data: BytesMut) {
        if self.buffer.is_empty() {
            self.buffer = data;
        } else {
            self.buffer.extend_from_slice(&data);
        }
    }

    /// The next complete tag, if buffered.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag>, FlvError> {
        if !self.header_done {
            if self.buffer.len() < 9 {
                return Ok(None);
            }
            if &self.buffer[..3] != b"FLV" {
                return Err(FlvError::BadSignature([self.buffer[0], self.buffer[1], self.buffer[2]]));
            }
            self.flags = self.buffer[4];
            let header_len = u32::from_be_bytes([self.buffer[5], self.buffer[6], self.buffer[7], self.buffer[8]]) as usize;
            let skip = header_len.max(9) + 4;
            if self.buffer.len() < skip {
                return Ok(None);
            }
            self.buffer.advance(skip);
            self.offset += skip as u64;
            self.header_done = true;
        }
        if self.buffer.len() < 11 {
            return Ok(None);
        }
        let size = ((self.buffer[1] as usize) << 16) | ((self.buffer[2] as usize) << 8) | self.buffer[3] as usize;
        if size > self.max_tag_size {
            return Err(FlvError::TagTooLarge { size, offset: self.offset, limit: self.max_tag_size });
        }
        if self.buffer.len() < 11 + size + 4 {
            return Ok(None);
        }
        let timestamp = ((self.buffer[7] as u32) << 24)
            | ((self.buffer[4] as u32) << 16)
            | ((self.buffer[5] as u32) << 8)
            | self.buffer[6] as u32;
        let tag_type = self.buffer[0] & 0x1f;
        let mut tag = self.buffer.split_to(11 + size + 4);
        tag.advance(11);
        tag.truncate(size);
        let offset = self.offset;
        self.offset += (11 + size + 4) as u64;
        Ok(Some(FlvTag { tag_type, timestamp, body: tag.freeze(), offset }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avc_frame(dts: i64, cts: i64, key: bool) -> MediaFrame {
        MediaFrame {
            track: TrackKind::Video,
            codec: Codec::H264,
            dts,
            pts: dts + cts,
            timebase: Timebase::MILLIS,
            keyframe: key,
            config: false,
            payload: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
        }
    }

    #[test]
    fn a_caption_is_on_text_data_and_not_metadata() {
        let frame = text_data_frame(1234, "hello world", "eng", (Some(1000), Some(2500)));
        assert_eq!((frame.track, frame.codec, frame.dts, frame.config), (TrackKind::Data, Codec::ScriptData, 1234, false));
        let values = amf0::decode_all(&frame.payload).unwrap();
        assert_eq!(values[0].as_str(), Some("onTextData"));
        let amf0::Value::EcmaArray(fields) = &values[1] else { panic!("{values:?}") };
        let text = fields.iter().find(|(k, _)| k == "text").and_then(|(_, v)| v.as_str());
        assert_eq!(text, Some("hello world"));
        assert!(!is_metadata(&frame.payload));
        let metadata = script_body_to_frame(0, &amf0::encode_all(&[amf0::Value::String("onMetaData".into()), amf0::Value::EcmaArray(vec![])])).unwrap().unwrap();
        assert!(is_metadata(&metadata.payload));
        assert!(!is_metadata(&[0x02, 0x00]));
        assert!(is_text_data(&frame.payload) && !is_text_data(&metadata.payload));
        let cue = cue_point_frame(2500, r#"{"label":"person"}"#);
        assert!(!is_metadata(&cue.payload) && !is_text_data(&cue.payload));
        let values = amf0::decode_all(&cue.payload).unwrap();
        assert_eq!(values[0].as_str(), Some("onCuePoint"));
        // Both read back, and neither is taken for the other.
        let caption = parse_text_data(&frame.payload).unwrap();
        assert_eq!(caption, TextData { text: "hello world".into(), language: Some("eng".into()), start_ms: Some(1000), end_ms: Some(2500) });
        assert_eq!(parse_text_data(&text_data_frame(5, "x", "fre", (None, None)).payload).map(|c| (c.start_ms, c.end_ms)), Some((None, None)));
        assert_eq!(parse_cue_point(&cue.payload).as_deref(), Some(r#"{"label":"person"}"#));
        assert!(parse_cue_point(&frame.payload).is_none() && parse_text_data(&cue.payload).is_none());
    }

    #[test]
    fn avc_body_round_trip_with_negative_cts() {
        for (cts, key) in [(80, true), (-40, false), (0, false)] {
            let frame = avc_frame(1000, cts, key);
            let body = frame_to_body(&frame);
            let back = video_body_to_frame(1000, &body).unwrap().unwrap();
            assert_eq!(back, frame);
        }
    }

    #[test]
    fn enhanced_hevc_and_opus_round_trip() {
        let mut frame = avc_frame(40, 40, true);
        frame.codec = Codec::H265;
        let body = frame_to_body(&frame);
        assert_eq!(&body[..5], &[0x91, b'h', b'v', b'c', b'1']);
        assert_eq!(video_body_to_frame(40, &body).unwrap().unwrap(), frame);

        let opus = MediaFrame {
            track: TrackKind::Audio,
            codec: Codec::Opus,
            dts: 20,
            pts: 20,
            timebase: Timebase::MILLIS,
            keyframe: true,
            config: false,
            payload: Bytes::from_static(&[0xfc, 1, 2]),
        };
        assert_eq!(audio_body_to_frame(20, &frame_to_body(&opus)).unwrap().unwrap(), opus);
    }

    #[test]
    fn aac_config_and_frame() {
        let body = Bytes::from_static(&[0xaf, 0x00, 0x11, 0x90]);
        let frame = audio_body_to_frame(0, &body).unwrap().unwrap();
        assert!(frame.config);
        assert_eq!(&frame.payload[..], &[0x11, 0x90]);
        assert_eq!(frame_to_body(&frame), body);
    }

    #[test]
    fn short_and_unknown_bodies_are_errors() {
        assert!(video_body_to_frame(0, &Bytes::from_static(&[0x17, 1])).is_err());
        assert!(video_body_to_frame(0, &Bytes::from_static(&[0x12, 1, 2, 3, 4])).is_err());
        assert!(audio_body_to_frame(0, &Bytes::from_static(&[0xaf])).is_err());
        assert!(video_body_to_frame(0, &Bytes::new()).is_err());
    }

    #[test]
    fn demuxer_is_split_proof() {
        let mut stream = BytesMut::new();
        stream.put_slice(&file_header(true, true));
        let frames = [avc_frame(0, 80, true), avc_frame(40, 0, false), avc_frame(0x0100_0000 + 5, 0, false)];
        for frame in &frames {
            write_frame_tag(&mut stream, frame);
        }
        let whole = {
            let mut d = FlvDemuxer::default();
            d.push(&stream);
            std::iter::from_fn(|| d.next_tag().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[2].timestamp, 0x0100_0005);
        for step in [1, 2, 7, 13, 64] {
            let mut d = FlvDemuxer::default();
            let mut tags = Vec::new();
            for piece in stream.chunks(step) {
                d.push(piece);
                while let Some(tag) = d.next_tag().unwrap() {
                    tags.push(tag);
                }
            }
            assert_eq!(tags, whole, "chunking {step}");
        }
        for (tag, frame) in whole.iter().zip(&frames) {
            let back = video_body_to_frame(tag.timestamp as i64, &tag.body).unwrap().unwrap();
            assert_eq!(&back, frame);
        }
    }

    #[test]
    fn metadata_unwraps_set_data_frame() {
        let values = vec![
            amf0::Value::String("@setDataFrame".into()),
            amf0::Value::String("onMetaData".into()),
            amf0::Value::EcmaArray(vec![("width".into(), amf0::Value::Number(320.0))]),
        ];
        let body = amf0::encode_all(&values);
        let frame = script_body_to_frame(0, &body).unwrap().unwrap();
        assert_eq!(amf0::decode_all(&frame.payload).unwrap(), values[1..].to_vec());
    }
}
