//! The RTMP chunk stream (Adobe RTMP specification 1.0, §5.3): messages are cut into chunks
//! of at most the peer's chunk size, each with a basic header (format and chunk stream id) and
//! a message header of 11, 7, 3 or 0 bytes that compresses against the previous chunk of the
//! same chunk stream.
//!
//! [`ChunkDecoder`] keeps one partial message per chunk stream, so interleaved chunk streams
//! reassemble correctly, and enforces limits the peer cannot talk it out of: the message size,
//! the number of chunk streams, and the chunk size range. It is split-proof: a chunk is only
//! consumed once it is complete, so any chunking of the input gives the same messages.
//!
//! Timestamp rules, as FFmpeg, librtmp and SRS apply them: a type-0 header carries an absolute
//! timestamp and also becomes the chunk stream's delta; type 1 and 2 carry a delta; a type-3
//! header that starts a new message adds the last delta again. A 24-bit field of `0xFFFFFF`
//! means a 4-byte extended timestamp follows, and type-3 chunks of that chunk stream repeat it.
//! Some senders omit the repetition on continuation chunks; the decoder accepts both by
//! checking whether the next four bytes equal the expected value.
//!
//! [`ChunkEncoder`] always writes a type-0 header for a message's first chunk and type 3 for
//! the rest. That costs a few bytes per message but makes every message self-contained, so
//! messages serialised once can be shared by many connections and interleaved freely.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::HashMap;
use thiserror::Error;

/// The chunk size every RTMP connection starts with.
pub const DEFAULT_CHUNK_SIZE: usize = 128;
/// The largest chunk size Estuary accepts from a peer (the largest RTMP message length).
pub const MAX_CHUNK_SIZE: usize = 0xff_ffff;
/// Chunk streams one connection may have open at once.
pub const MAX_CHUNK_STREAMS: usize = 64;

/// A violation of the chunk stream format or of Estuary's limits.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// A message longer than the configured limit.
    #[error("message of {length} bytes on chunk stream {csid} exceeds the limit of {limit} bytes (input offset {offset})")]
    MessageTooLarge {
        /// Declared message length.
        length: usize,
        /// The limit.
        limit: usize,
        /// The chunk stream.
        csid: u32,
        /// Input offset of the chunk.
        offset: u64,
    },
    /// A compressed header on a chunk stream that has no previous header.
    #[error("chunk stream {csid} starts with a type-{format} header (input offset {offset})")]
    NoPreviousHeader {
        /// The chunk stream.
        csid: u32,
        /// The header format.
        format: u8,
        /// Input offset of the chunk.
        offset: u64,
    },
    /// Too many chunk streams.
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams open (input offset {0})")]
    TooManyChunkStreams(u64),
    /// A chunk size outside 1..=16777215.
    #[error("peer set chunk size {0}, outside 1..={MAX_CHUNK_SIZE}")]
    BadChunkSize(u64),
}

/// A reassembled RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Chunk stream it arrived on.
    pub csid: u32,
    /// Timestamp in milliseconds (32-bit, wraps).
    pub timestamp: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// Payload.
    pub payload: Bytes,
}

#[derive(Debug, Default, Clone)]
struct ChunkStream {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    extended_value: u32,
    partial: Option<BytesMut>,
}

/// Reassembles messages from chunks.
#[derive(Debug)]
pub struct ChunkDecoder {
    buffer: BytesMut,
    chunk_size: usize,
    max_message_size: usize,
    streams: HashMap<u32, ChunkStream>,
    consumed: u64,
}

impl ChunkDecoder {
    /// A decoder that refuses messages above `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        ChunkDecoder {
            buffer: BytesMut::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message_size,
            streams: HashMap::new(),
            consumed: 0,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// Bytes buffered but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Applies the peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u64) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE as u64 {
            return Err(ChunkError::BadChunkSize(size));
        }
        self.chunk_size = size as usize;
        Ok(())
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Drops the partial message of a chunk stream (the Abort message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(stream) = self.streams.get_mut(&csid) {
            stream.partial = None;
        }
    }

    /// The next complete message, if the buffered chunks complete one.
    pub fn next_message(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            match self.next_chunk()? {
                ChunkResult::NeedMore => return Ok(None),
                ChunkResult::Message(message) => return Ok(Some(message)),
                ChunkResult::Partial => continue,
            }
        }
    }

    fn next_chunk(&mut self) -> Result<ChunkResult, ChunkError> {
        let data = &self.buffer[..];
        let offset = self.consumed;
        let Some(&first) = data.first() else { return Ok(ChunkResult::NeedMore) };
        let format = first >> 6;
        let (csid, mut pos) = match first & 0x3f {
            0 => match data.get(1) {
                Some(&b) => (64 + b as u32, 2),
                None => return Ok(ChunkResult::NeedMore),
            },
            1 => match (data.get(1), data.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + b1 as u32 + 256 * b2 as u32, 3),
                _ => return Ok(ChunkResult::NeedMore),
            },
            id => (id as u32, 1),
        };
        let header_len = [11, 7, 3, 0][format as usize];
        if data.len() < pos + header_len {
            return Ok(ChunkResult::NeedMore);
        }
        let known = self.streams.contains_key(&csid);
        if !known {
            if format >= 2 {
                return Err(ChunkError::NoPreviousHeader { csid, format, offset });
            }
            if self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(ChunkError::TooManyChunkStreams(offset));
            }
        }
        let mut next = self.streams.get(&csid).cloned().unwrap_or_default();
        let u24 = |b: &[u8]| ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        let mut field = None;
        if format <= 2 {
            field = Some(u24(&data[pos..pos + 3]));
        }
        if format <= 1 {
            next.length = u24(&data[pos + 3..pos + 6]);
            next.type_id = data[pos + 6];
        }
        if format == 0 {
            next.stream_id = u32::from_le_bytes([data[pos + 7], data[pos + 8], data[pos + 9], data[pos + 10]]);
        }
        pos += header_len;

        let starts_message = next.partial.is_none();
        // Resolve the timestamp field and the extended timestamp.
        let mut value = 0u32;
        if let Some(field) = field {
            next.extended = field == 0xff_ffff;
            if next.extended {
                if data.len() < pos + 4 {
                    return Ok(ChunkResult::NeedMore);
                }
                value = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
                pos += 4;
                next.extended_value = value;
            } else {
                value = field;
            }
        } else if next.extended {
            if data.len() < pos + 4 {
                return Ok(ChunkResult::NeedMore);
            }
            let repeated = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
            if starts_message || repeated == next.extended_value {
                pos += 4;
                value = repeated;
            } else {
                value = next.extended_value;
            }
        }
        if starts_message {
            if next.length as usize > self.max_message_size {
                return Err(ChunkError::MessageTooLarge {
                    length: next.length as usize,
                    limit: self.max_message_size,
                    csid,
                    offset,
                });
            }
            match format {
                0 => {
                    next.timestamp = value;
                    next.delta = value;
                }
                1 | 2 => {
                    next.delta = value;
                    next.timestamp = next.timestamp.wrapping_add(value);
                }
                _ => {
                    if next.extended {
                        next.delta = value;
                    }
                    next.timestamp = next.timestamp.wrapping_add(next.delta);
                }
            }
        }
        let have = next.partial.as_ref().map(|p| p.len()).unwrap_or(0);
        let remaining = (next.length as usize).saturating_sub(have);
        let take = remaining.min(self.chunk_size);
        if data.len() < pos + take {
            return Ok(ChunkResult::NeedMore);
        }
        // The chunk is complete: commit.
        let mut partial = next.partial.take().unwrap_or_else(|| BytesMut::with_capacity(next.length as usize));
        partial.extend_from_slice(&data[pos..pos + take]);
        self.buffer.advance(pos + take);
        self.consumed += (pos + take) as u64;
        let result = if partial.len() >= next.length as usize {
            ChunkResult::Message(RawMessage {
                csid,
                timestamp: next.timestamp,
                type_id: next.type_id,
                stream_id: next.stream_id,
                payload: partial.freeze(),
            })
        } else {
            next.partial = Some(partial);
            ChunkResult::Partial
        };
        self.streams.insert(csid, next);
        Ok(result)
    }
}

enum ChunkResult {
    NeedMore,
    Partial,
    Message(RawMessage),
}

/// Serialises messages into chunks (type 0 then type 3).
#[derive(Debug, Clone, Copy)]
pub struct ChunkEncoder {
    chunk_size: usize,
}

impl ChunkEncoder {
    /// An encoder at the default chunk size.
    pub fn new() -> Self {
        ChunkEncoder { chunk_size: DEFAULT_CHUNK_SIZE }
    }

    /// An encoder with a given outgoing chunk size (after a Set Chunk Size was sent).
    pub fn with_chunk_size(chunk_size: usize) -> Self {
        ChunkEncoder { chunk_size: chunk_size.clamp(1, MAX_CHUNK_SIZE) }
    }

    /// The outgoing chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Changes the outgoing chunk size.
    pub fn set_chunk_size(&mut self, chunk_size: usize) {
        self.chunk_size = chunk_size.clamp(1, MAX_CHUNK_SIZE);
    }

    /// Bytes `write` adds for a message of `len` bytes.
    pub fn encoded_len(&self, csid: u32, timestamp: u32, len: usize) -> usize {
        let basic = basic_header_len(csid);
        let ext = if timestamp >= 0xff_ffff { 4 } else { 0 };
        let chunks = len.div_ceil(self.chunk_size).max(1);
        basic + 11 + ext + len + (chunks - 1) * (basic + ext)
    }

    /// Appends one message in chunks to `out`. `payload_parts` are concatenated, so a
    /// prefix and a shared payload need not be copied together first.
    pub fn write(&self, out: &mut BytesMut, csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload_parts: &[&[u8]]) {
        let len: usize = payload_parts.iter().map(|p| p.len()).sum();
        out.reserve(self.encoded_len(csid, timestamp, len));
        let extended = timestamp >= 0xff_ffff;
        write_basic_header(out, 0, csid);
        let field = if extended { 0xff_ffff } else { timestamp };
        out.put_slice(&field.to_be_bytes()[1..]);
        out.put_slice(&(len.min(0xff_ffff) as u32).to_be_bytes()[1..]);
        out.put_u8(type_id);
        out.put_u32_le(stream_id);
        if extended {
            out.put_u32(timestamp);
        }
        let mut in_chunk = 0usize;
        for part in payload_parts {
            let mut part: &[u8] = part;
            while !part.is_empty() {
                if in_chunk == self.chunk_size {
                    write_basic_header(out, 3, csid);
                    if extended {
                        out.put_u32(timestamp);
                    }
                    in_chunk = 0;
                }
                let take = part.len().min(self.chunk_size - in_chunk);
                out.put_slice(&part[..take]);
                part = &part[take..];
                in_chunk += take;
            }
        }
    }
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

fn basic_header_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

fn write_basic_header(out: &mut BytesMut, format: u8, csid: u32) {
    match csid {
        2..=63 => out.put_u8((format << 6) | csid as u8),
        64..=319 => {
            out.put_u8(format << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let id = csid.clamp(320, 65599) - 64;
            out.put_u8((format << 6) | 1);
            out.put_u8((id & 0xff) as u8);
            out.put_u8((id >> 8) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut ChunkDecoder) -> Vec<RawMessage> {
        std::iter::from_fn(|| decoder.next_message().unwrap()).collect()
    }

    #[test]
    fn round_trip_various_sizes_and_csids() {
        let encoder = ChunkEncoder::with_chunk_size(100);
        let mut out = BytesMut::new();
        let payload_a: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        encoder.write(&mut out, 6, 40, 9, 1, &[&payload_a[..10], &payload_a[10..]]);
        encoder.write(&mut out, 300, 0x0100_0000, 8, 1, &[&[1, 2, 3]]);
        encoder.write(&mut out, 70, 0xff_ffff, 9, 1, &[&payload_a]);
        encoder.write(&mut out, 3, 5, 20, 0, &[]);
        let mut decoder = ChunkDecoder::new(1 << 20);
        decoder.set_chunk_size(100).unwrap();
        decoder.push(&out);
        let messages = decode_all(&mut decoder);
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0].payload, payload_a);
        assert_eq!((messages[0].csid, messages[0].timestamp, messages[0].type_id), (6, 40, 9));
        assert_eq!((messages[1].csid, messages[1].timestamp), (300, 0x0100_0000));
        assert_eq!((messages[2].csid, messages[2].timestamp), (70, 0xff_ffff));
        assert_eq!(messages[2].payload, payload_a);
        assert!(messages[3].payload.is_empty());
    }

    #[test]
    fn split_proof() {
        let encoder = ChunkEncoder::with_chunk_size(64);
        let mut out = BytesMut::new();
        for i in 0..5u32 {
            let payload = vec![i as u8; 150 + i as usize * 37];
            encoder.write(&mut out, 4 + i, i * 33, 9, 1, &[&payload]);
        }
        let mut whole = ChunkDecoder::new(1 << 20);
        whole.set_chunk_size(64).unwrap();
        whole.push(&out);
        let expected = decode_all(&mut whole);
        for step in [1, 3, 11, 64, 65, 500] {
            let mut d = ChunkDecoder::new(1 << 20);
            d.set_chunk_size(64).unwrap();
            let mut got = Vec::new();
            for piece in out.chunks(step) {
                d.push(piece);
                got.extend(decode_all(&mut d));
            }
            assert_eq!(got, expected, "step {step}");
        }
    }

    #[test]
    fn interleaved_chunk_streams_reassemble() {
        // Two 200-byte messages on csid 4 and 6, chunk size 128, chunks interleaved:
        // 4(first) 6(first) 4(cont) 6(cont).
        let a = [0xaa; 200];
        let b = [0xbb; 200];
        let mut out = BytesMut::new();
        out.put_slice(&[0x04, 0, 0, 10, 0, 0, 200, 9, 1, 0, 0, 0]);
        out.put_slice(&a[..128]);
        out.put_slice(&[0x06, 0, 0, 20, 0, 0, 200, 8, 1, 0, 0, 0]);
        out.put_slice(&b[..128]);
        out.put_slice(&[0xc4]);
        out.put_slice(&a[128..]);
        out.put_slice(&[0xc6]);
        out.put_slice(&b[128..]);
        let mut d = ChunkDecoder::new(1 << 20);
        d.push(&out);
        let messages = decode_all(&mut d);
        assert_eq!(messages.len(), 2);
        assert_eq!((messages[0].csid, messages[0].timestamp, &messages[0].payload[..]), (4, 10, &a[..]));
        assert_eq!((messages[1].csid, messages[1].timestamp, &messages[1].payload[..]), (6, 20, &b[..]));
    }

    #[test]
    fn compressed_headers_accumulate_deltas() {
        // type 0 at ts 1000, type 2 delta 40, type 3 (new message: delta 40 again).
        let mut out = BytesMut::new();
        out.put_slice(&[0x05, 0, 0x03, 0xe8, 0, 0, 1, 9, 1, 0, 0, 0, 0xaa]);
        out.put_slice(&[0x85, 0, 0, 40, 0xbb]);
        out.put_slice(&[0xc5, 0xcc]);
        let mut d = ChunkDecoder::new(1024);
        d.push(&out);
        let ts: Vec<u32> = decode_all(&mut d).iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![1000, 1040, 1080]);
    }

    #[test]
    fn limits_are_errors() {
        let mut d = ChunkDecoder::new(1000);
        d.push(&[0x04, 0, 0, 0, 0, 0x10, 0, 9, 1, 0, 0, 0]);
        assert!(matches!(d.next_message(), Err(ChunkError::MessageTooLarge { length: 4096, .. })));

        let mut d = ChunkDecoder::new(1000);
        d.push(&[0xc9, 1, 2, 3]);
        assert!(matches!(d.next_message(), Err(ChunkError::NoPreviousHeader { csid: 9, format: 3, .. })));

        let mut d = ChunkDecoder::new(1000);
        assert_eq!(d.set_chunk_size(0), Err(ChunkError::BadChunkSize(0)));
        assert!(d.set_chunk_size(0x7fff_ffff).is_err());

        let mut d = ChunkDecoder::new(1000);
        for index in 0..=MAX_CHUNK_STREAMS as u8 {
            // Two-byte basic headers: chunk stream ids 64, 65, ...
            d.push(&[0x00, index, 0, 0, 0, 0, 0, 1, 9, 1, 0, 0, 0, 0xaa]);
        }
        let result: Result<Vec<_>, _> = std::iter::from_fn(|| d.next_message().transpose()).collect();
        assert!(matches!(result, Err(ChunkError::TooManyChunkStreams(_))));
    }

    #[test]
    fn encoded_len_is_exact() {
        for (chunk, len, ts, csid) in [(128, 0, 0, 3), (128, 128, 0, 3), (128, 129, 0xff_ffff, 70), (4096, 10_000, 5, 400)] {
            let encoder = ChunkEncoder::with_chunk_size(chunk);
            let mut out = BytesMut::new();
            encoder.write(&mut out, csid, ts, 9, 1, &[&vec![0u8; len]]);
            assert_eq!(out.len(), encoder.encoded_len(csid, ts, len));
        }
    }
}
