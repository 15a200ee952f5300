//! RTMP message types (Adobe RTMP specification 1.0, §5.4 protocol control messages, §6.2
//! user control messages, §7.1 command and data messages) and builders for the messages the
//! sessions send.

use super::chunk::ChunkEncoder;
use crate::amf0::{self, Value};
use bytes::{BufMut, BytesMut};

/// Set Chunk Size.
pub const SET_CHUNK_SIZE: u8 = 1;
/// Abort Message.
pub const ABORT: u8 = 2;
/// Acknowledgement.
pub const ACKNOWLEDGEMENT: u8 = 3;
/// User Control Message.
pub const USER_CONTROL: u8 = 4;
/// Window Acknowledgement Size.
pub const WINDOW_ACK_SIZE: u8 = 5;
/// Set Peer Bandwidth.
pub const SET_PEER_BANDWIDTH: u8 = 6;
/// Audio data.
pub const AUDIO: u8 = 8;
/// Video data.
pub const VIDEO: u8 = 9;
/// AMF3 data message.
pub const DATA_AMF3: u8 = 15;
/// AMF3 command message.
pub const COMMAND_AMF3: u8 = 17;
/// AMF0 data message.
pub const DATA_AMF0: u8 = 18;
/// AMF0 command message.
pub const COMMAND_AMF0: u8 = 20;
/// Aggregate message.
pub const AGGREGATE: u8 = 22;

/// User control event: Stream Begin.
pub const UC_STREAM_BEGIN: u16 = 0;
/// User control event: Stream EOF.
pub const UC_STREAM_EOF: u16 = 1;
/// User control event: Set Buffer Length.
pub const UC_SET_BUFFER_LENGTH: u16 = 3;
/// User control event: Stream Is Recorded.
pub const UC_STREAM_IS_RECORDED: u16 = 4;
/// User control event: Ping Request.
pub const UC_PING_REQUEST: u16 = 6;
/// User control event: Ping Response.
pub const UC_PING_RESPONSE: u16 = 7;

/// Chunk stream for protocol control messages (required by the specification).
pub const CSID_CONTROL: u32 = 2;
/// Chunk stream for NetConnection commands.
pub const CSID_COMMAND: u32 = 3;
/// Chunk stream for NetStream status and data messages.
pub const CSID_STREAM: u32 = 5;
/// Chunk stream for video.
pub const CSID_VIDEO: u32 = 6;
/// Chunk stream for audio.
pub const CSID_AUDIO: u32 = 7;

/// Appends a protocol control message with a 4-byte value.
pub fn write_u32_control(out: &mut BytesMut, encoder: &ChunkEncoder, type_id: u8, value: u32) {
    encoder.write(out, CSID_CONTROL, 0, type_id, 0, &[&value.to_be_bytes()]);
}

/// Appends Set Peer Bandwidth.
pub fn write_peer_bandwidth(out: &mut BytesMut, encoder: &ChunkEncoder, window: u32, limit_type: u8) {
    let mut body = [0u8; 5];
    body[..4].copy_from_slice(&window.to_be_bytes());
    body[4] = limit_type;
    encoder.write(out, CSID_CONTROL, 0, SET_PEER_BANDWIDTH, 0, &[&body]);
}

/// Appends a user control message with one 4-byte argument.
pub fn write_user_control(out: &mut BytesMut, encoder: &ChunkEncoder, event: u16, value: u32) {
    let mut body = [0u8; 6];
    body[..2].copy_from_slice(&event.to_be_bytes());
    body[2..].copy_from_slice(&value.to_be_bytes());
    encoder.write(out, CSID_CONTROL, 0, USER_CONTROL, 0, &[&body]);
}

/// Appends an AMF0 command.
pub fn write_command(out: &mut BytesMut, encoder: &ChunkEncoder, csid: u32, stream_id: u32, values: &[Value]) {
    let body = amf0::encode_all(values);
    encoder.write(out, csid, 0, COMMAND_AMF0, stream_id, &[&body]);
}

/// Appends an AMF0 data message.
pub fn write_data(out: &mut BytesMut, encoder: &ChunkEncoder, stream_id: u32, values: &[Value]) {
    let body = amf0::encode_all(values);
    encoder.write(out, CSID_STREAM, 0, DATA_AMF0, stream_id, &[&body]);
}

/// Appends an `onStatus` command on a message stream.
pub fn write_on_status(out: &mut BytesMut, encoder: &ChunkEncoder, stream_id: u32, level: &str, code: &str, description: &str) {
    write_status(out, encoder, stream_id, vec![("level", Value::String(level.into())), ("code", Value::String(code.into())), ("description", Value::String(description.into()))]);
}

/// Writes an `onStatus` error that sends the client elsewhere, as SRS does for its origin
/// cluster: code `NetConnection.Connect.Rejected` and an `ex` object with `code: 302` and the
/// `redirect` URL.
pub fn write_redirect_status(out: &mut BytesMut, encoder: &ChunkEncoder, stream_id: u32, url: &str) {
    write_status(
        out,
        encoder,
        stream_id,
        vec![
            ("level", Value::String("error".into())),
            ("code", Value::String("NetConnection.Connect.Rejected".into())),
            ("description", Value::String(format!("RTMP 302 Redirect to {url}"))),
            ("ex", Value::object([("code", Value::Number(302.0)), ("redirect", Value::String(url.into()))])),
        ],
    );
}

fn write_status(out: &mut BytesMut, encoder: &ChunkEncoder, stream_id: u32, info: Vec<(&str, Value)>) {
    write_command(out, encoder, CSID_STREAM, stream_id, &[Value::String("onStatus".into()), Value::Number(0.0), Value::Null, Value::object(info)]);
}

/// A decoded command: name, transaction id, command object and further arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Command name (`connect`, `publish`, `_result`, ...).
    pub name: String,
    /// Transaction id.
    pub transaction_id: f64,
    /// The command object (often `Null`).
    pub object: Value,
    /// Further arguments.
    pub args: Vec<Value>,
}

impl Command {
    /// Parses an AMF0 (or AMF3-wrapped AMF0) command payload.
    pub fn parse(type_id: u8, payload: &[u8]) -> Result<Command, amf0::Amf0Error> {
        let payload = if type_id == COMMAND_AMF3 && payload.first() == Some(&0) { &payload[1..] } else { payload };
        let mut values = amf0::decode_all(payload)?.into_iter();
        let name = match values.next() {
            Some(Value::String(name)) => name,
            _ => String::new(),
        };
        let transaction_id = values.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let object = values.next().unwrap_or(Value::Null);
        Ok(Command { name, transaction_id, object, args: values.collect() })
    }

    /// The `n`th argument after the command object, as a string.
    pub fn arg_str(&self, n: usize) -> Option<&str> {
        self.args.get(n).and_then(|v| v.as_str())
    }
}

/// Splits `name?query` into the name and its query parameters (`a=b&c=d`).
pub fn split_query(value: &str) -> (String, Vec<(String, String)>) {
    match value.split_once('?') {
        Some((name, query)) => (name.to_string(), parse_query(query)),
        None => (value.to_string(), Vec::new()),
    }
}

/// Parses `a=b&c=d` (also `a=b,c=d` which some encoders use); no percent-decoding.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split(['&', ','])
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

/// Appends an aggregate message's sub-messages as (type, timestamp, body) triples. The
/// sub-message timestamps are rebased so the first equals `timestamp`.
pub fn split_aggregate(timestamp: u32, payload: &[u8]) -> Vec<(u8, u32, bytes::Bytes)> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    let mut base: Option<u32> = None;
    while offset + 11 <= payload.len() {
        let h = &payload[offset..offset + 11];
        let size = ((h[1] as usize) << 16) | ((h[2] as usize) << 8) | h[3] as usize;
        let ts = ((h[7] as u32) << 24) | ((h[4] as u32) << 16) | ((h[5] as u32) << 8) | h[6] as u32;
        let body_end = offset + 11 + size;
        if body_end > payload.len() {
            break;
        }
        let first = *base.get_or_insert(ts);
        let body = bytes::Bytes::copy_from_slice(&payload[offset + 11..body_end]);
        out.push((h[0] & 0x1f, timestamp.wrapping_add(ts.wrapping_sub(first)), body));
        offset = body_end + 4;
    }
    out
}

/// Writes a user-control message body parser result.
pub fn parse_user_control(payload: &[u8]) -> Option<(u16, u32)> {
    if payload.len() < 6 {
        return None;
    }
    let event = u16::from_be_bytes([payload[0], payload[1]]);
    let value = u32::from_be_bytes([payload[2], payload[3], payload[4], payload[5]]);
    Some((event, value))
}

/// Reads the 4-byte big-endian value of a protocol control message.
pub fn parse_u32(payload: &[u8]) -> Option<u32> {
    payload.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Builds an FLV-style aggregate payload (used by tests of peers that send aggregates).
pub fn build_aggregate(parts: &[(u8, u32, &[u8])]) -> BytesMut {
    let mut out = BytesMut::new();
    for (type_id, ts, body) in parts {
        out.put_slice(&crate::container::flv::tag_header(*type_id, body.len(), *ts as i64));
        out.put_slice(body);
        out.put_u32(11 + body.len() as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_splitting() {
        let (name, params) = split_query("livestream?token=abc&vhost=x");
        assert_eq!(name, "livestream");
        assert_eq!(params, vec![("token".into(), "abc".into()), ("vhost".into(), "x".into())]);
        assert_eq!(split_query("plain"), ("plain".into(), vec![]));
    }

    #[test]
    fn aggregate_round_trip() {
        let payload = build_aggregate(&[(9, 500, &[1, 2]), (8, 520, &[3])]);
        let parts = split_aggregate(1000, &payload);
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].0, parts[0].1, &parts[0].2[..]), (9, 1000, &[1u8, 2][..]));
        assert_eq!((parts[1].0, parts[1].1, &parts[1].2[..]), (8, 1020, &[3u8][..]));
        // A truncated aggregate yields the complete parts only.
        assert_eq!(split_aggregate(0, &payload[..payload.len() - 6]).len(), 1);
    }

    #[test]
    fn amf3_command_is_unwrapped() {
        let mut payload = vec![0u8];
        payload.extend_from_slice(&amf0::encode_all(&[Value::String("play".into()), Value::Number(4.0), Value::Null, Value::String("s".into())]));
        let command = Command::parse(COMMAND_AMF3, &payload).unwrap();
        assert_eq!(command.name, "play");
        assert_eq!(command.transaction_id, 4.0);
        assert_eq!(command.arg_str(0), Some("s"));
    }
}
