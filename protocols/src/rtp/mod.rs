//! RTP (RFC 3550) packet headers and RTP over TCP framing (RFC 4571: each packet preceded by
//! a 16-bit big-endian length), as GB28181 cameras send PS media.

pub mod av1;
pub mod h264;
pub mod h265;
pub mod reorder;

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// An RTP problem.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RtpError {
    /// Shorter than its header says.
    #[error("RTP packet of {0} bytes is shorter than its header")]
    Short(usize),
    /// Not version 2.
    #[error("RTP version {0} (expected 2)")]
    Version(u8),
    /// Padding longer than the payload.
    #[error("RTP padding of {0} bytes exceeds the payload")]
    Padding(usize),
    /// A framed length that cannot be an RTP packet.
    #[error("RFC 4571 frame of {0} bytes at stream offset {1} is not an RTP packet")]
    BadFrame(usize, u64),
}

/// A parsed RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// Payload type.
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub sequence: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// The payload (after CSRCs, extension and before padding).
    pub payload: Bytes,
}

impl RtpPacket {
    /// Parses one packet.
    pub fn parse(data: Bytes) -> Result<RtpPacket, RtpError> {
        if data.len() < 12 {
            return Err(RtpError::Short(data.len()));
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let padding = data[0] & 0x20 != 0;
        let extension = data[0] & 0x10 != 0;
        let csrcs = (data[0] & 0x0f) as usize;
        let mut start = 12 + 4 * csrcs;
        if extension {
            let words = data.get(start + 2..start + 4).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize).ok_or(RtpError::Short(data.len()))?;
            start += 4 + 4 * words;
        }
        if start > data.len() {
            return Err(RtpError::Short(data.len()));
        }
        let mut end = data.len();
        if padding {
            let pad = data[data.len() - 1] as usize;
            if pad == 0 || pad > end - start {
                return Err(RtpError::Padding(pad));
            }
            end -= pad;
        }
        Ok(RtpPacket {
            payload_type: data[1] & 0x7f,
            marker: data[1] & 0x80 != 0,
            sequence: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            payload: data.slice(start..end),
        })
    }

    /// Serializes a packet without CSRCs, extension or padding.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(12 + self.payload.len());
        out.extend_from_slice(&[0x80, (self.payload_type & 0x7f) | if self.marker { 0x80 } else { 0 }]);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out.freeze()
    }
}

/// Splits an RFC 4571 byte stream into packets, whatever the read boundaries.
#[derive(Debug, Default)]
pub struct Rfc4571Reader {
    buffer: BytesMut,
    offset: u64,
}

impl Rfc4571Reader {
    /// Adds bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next complete frame; an error for a length no RTP packet can have (then the stream
    /// cannot be resynchronised and the connection should be dropped).
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, RtpError> {
        if self.buffer.len() < 2 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([self.buffer[0], self.buffer[1]]) as usize;
        if len < 12 {
            return Err(RtpError::BadFrame(len, self.offset));
        }
        if self.buffer.len() < 2 + len {
            return Ok(None);
        }
        self.buffer.advance(2);
        self.offset += 2 + len as u64;
        Ok(Some(self.buffer.split_to(len).freeze()))
    }
}

/// Frames `packet` for RFC 4571.
pub fn frame_4571(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + 2);
    out.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    out.extend_from_slice(packet);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_framing_at_any_split() {
        let packets: Vec<RtpPacket> = (0..5u16)
            .map(|i| RtpPacket { payload_type: 96, marker: i == 4, sequence: 65534u16.wrapping_add(i), timestamp: 3600 * i as u32, ssrc: 0x0200_0001, payload: Bytes::from(vec![i as u8; 100 + i as usize]) })
            .collect();
        let stream: Vec<u8> = packets.iter().flat_map(|p| frame_4571(&p.to_bytes())).collect();
        for step in [1, 2, 3, 7, 50, 1000] {
            let mut reader = Rfc4571Reader::default();
            let mut out = Vec::new();
            for piece in stream.chunks(step) {
                reader.push(piece);
                while let Some(frame) = reader.next_frame().unwrap() {
                    out.push(RtpPacket::parse(frame).unwrap());
                }
            }
            assert_eq!(out, packets, "step {step}");
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(RtpPacket::parse(Bytes::from_static(&[0x80; 5])), Err(RtpError::Short(5)));
        assert_eq!(RtpPacket::parse(Bytes::from(vec![0x40; 20])), Err(RtpError::Version(1)));
        let mut padded = vec![0xa0, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2];
        padded.push(200);
        assert_eq!(RtpPacket::parse(Bytes::from(padded)), Err(RtpError::Padding(200)));
        // CSRC count pointing past the end.
        assert!(RtpPacket::parse(Bytes::from(vec![0x8f, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9])).is_err());
        let mut reader = Rfc4571Reader::default();
        reader.push(&[0, 3, 1, 2, 3]);
        assert_eq!(reader.next_frame(), Err(RtpError::BadFrame(3, 0)));
    }
}
