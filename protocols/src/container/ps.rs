//! MPEG-2 program stream (ISO/IEC 13818-1, 2.5) demuxing, as GB28181 cameras send it in RTP
//! payloads: pack headers (`00 00 01 BA`), system headers (`BB`), the program stream map
//! (`BC`, which names each elementary stream's type), and PES packets (`E0`-`EF` video,
//! `C0`-`DF` audio).
//!
//! The demuxer takes the payload bytes in order, split any way (cameras cut PS pieces across
//! RTP packets anywhere), and returns access units as [`Pes`] values that
//! [`crate::container::ts::TsFrameReader`] turns into frames: `pid` is the PES stream id and
//! `stream_type` comes from the stream map (H.264 `0x1B`, H.265 `0x24`, AAC `0x0F`, G.711
//! A-law `0x90`, µ-law `0x91`). A frame larger than one PES packet arrives as several PES
//! packets of which only the first carries a PTS; they are joined until the next PES with a
//! PTS. Bytes that do not start with a start code are skipped (counted) until the next one.

use crate::container::ts::Pes;
use bytes::{Buf, BytesMut};
use std::collections::HashMap;
use thiserror::Error;

/// A demuxing problem.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PsError {
    /// An access unit grew beyond the limit.
    #[error("access unit of stream {stream_id:#04x} exceeds {limit} bytes")]
    TooLarge {
        /// The PES stream id.
        stream_id: u8,
        /// The limit.
        limit: usize,
    },
}

struct Unit {
    pts: Option<u64>,
    dts: Option<u64>,
    data: BytesMut,
}

/// Reads a program stream.
pub struct PsDemuxer {
    buffer: BytesMut,
    types: HashMap<u8, u8>,
    units: HashMap<u8, Unit>,
    ready: Vec<Pes>,
    max_unit: usize,
    /// Bytes skipped looking for a start code.
    pub skipped: u64,
    /// PES packets dropped because no stream type is known for them (no stream map yet).
    pub untyped: u64,
}

impl Default for PsDemuxer {
    fn default() -> Self {
        PsDemuxer { buffer: BytesMut::new(), types: HashMap::new(), units: HashMap::new(), ready: Vec::new(), max_unit: 8 << 20, skipped: 0, untyped: 0 }
    }
}

fn timestamp(b: &[u8]) -> u64 {
    (((b[0] >> 1) & 0x07) as u64) << 30 | (b[1] as u64) << 22 | ((b[2] >> 1) as u64) << 15 | (b[3] as u64) << 7 | (b[4] >> 1) as u64
}

impl PsDemuxer {
    /// Stream types by PES stream id, from the last stream map.
    pub fn stream_types(&self) -> &HashMap<u8, u8> {
        &self.types
    }

    /// Adds payload bytes; complete access units are then available from [`Self::next_unit`].
    pub fn push(&mut self, data: &[u8]) -> Result<(), PsError> {
        self.buffer.extend_from_slice(data);
        loop {
            // Find a start code.
            let Some(start) = self.buffer.windows(3).position(|w| w == [0, 0, 1]) else {
                let keep = self.buffer.len().min(2);
                self.skipped += (self.buffer.len() - keep) as u64;
                let len = self.buffer.len();
                self.buffer.advance(len - keep);
                return Ok(());
            };
            if start > 0 {
                self.skipped += start as u64;
                self.buffer.advance(start);
            }
            if self.buffer.len() < 4 {
                return Ok(());
            }
            let code = self.buffer[3];
            let size = match code {
                0xba => {
                    if self.buffer.len() < 5 {
                        return Ok(());
                    }
                    if self.buffer[4] >> 6 == 0b01 {
                        if self.buffer.len() < 14 {
                            return Ok(());
                        }
                        14 + (self.buffer[13] & 0x07) as usize
                    } else {
                        12
                    }
                }
                0xb9 => 4,
                0xbb..=0xff => {
                    if self.buffer.len() < 6 {
                        return Ok(());
                    }
                    6 + u16::from_be_bytes([self.buffer[4], self.buffer[5]]) as usize
                }
                _ => {
                    // A start code that is not a system-level one (e.g. inside a broken packet).
                    self.skipped += 3;
                    self.buffer.advance(3);
                    continue;
                }
            };
            if self.buffer.len() < size {
                return Ok(());
            }
            let packet = self.buffer.split_to(size).freeze();
            match code {
                0xbc => self.stream_map(&packet),
                0xc0..=0xef => self.pes(&packet)?,
                _ => {}
            }
        }
    }

    fn stream_map(&mut self, packet: &[u8]) {
        // 6: header; 6..8 flags; 8..10 info length; then the elementary stream map.
        let Some(info) = packet.get(8..10).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize) else { return };
        let map_at = 10 + info;
        let Some(map_len) = packet.get(map_at..map_at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize) else { return };
        let mut at = map_at + 2;
        let end = (map_at + 2 + map_len).min(packet.len());
        while at + 4 <= end {
            let (kind, id) = (packet[at], packet[at + 1]);
            let es_info = u16::from_be_bytes([packet[at + 2], packet[at + 3]]) as usize;
            self.types.insert(id, kind);
            at += 4 + es_info;
        }
    }

    fn pes(&mut self, packet: &[u8]) -> Result<(), PsError> {
        let stream_id = packet[3];
        if packet.len() < 9 || packet[6] >> 6 != 0b10 {
            return Ok(());
        }
        let flags = packet[7];
        let header_len = packet[8] as usize;
        let Some(payload) = packet.get(9 + header_len..) else { return Ok(()) };
        let pts = (flags & 0x80 != 0).then(|| packet.get(9..14).map(timestamp)).flatten();
        let dts = (flags & 0x40 != 0).then(|| packet.get(14..19).map(timestamp)).flatten();
        if pts.is_some() {
            self.complete(stream_id);
            self.units.insert(stream_id, Unit { pts, dts, data: BytesMut::from(payload) });
        } else if let Some(unit) = self.units.get_mut(&stream_id) {
            unit.data.extend_from_slice(payload);
        }
        if self.units.get(&stream_id).is_some_and(|u| u.data.len() > self.max_unit) {
            self.units.remove(&stream_id);
            return Err(PsError::TooLarge { stream_id, limit: self.max_unit });
        }
        Ok(())
    }

    fn complete(&mut self, stream_id: u8) {
        let Some(unit) = self.units.remove(&stream_id) else { return };
        let Some(&stream_type) = self.types.get(&stream_id) else {
            self.untyped += 1;
            return;
        };
        self.ready.push(Pes { pid: stream_id as u16, stream_type, pts: unit.pts, dts: unit.dts, data: unit.data.freeze(), random_access: false });
    }

    /// The next complete access unit.
    pub fn next_unit(&mut self) -> Option<Pes> {
        if self.ready.is_empty() {
            None
        } else {
            Some(self.ready.remove(0))
        }
    }

    /// At the end of input: emits what is still being assembled.
    pub fn flush(&mut self) {
        let ids: Vec<u8> = self.units.keys().copied().collect();
        for id in ids {
            self.complete(id);
        }
    }
}

/// Writes program stream packs (the tests' camera simulator uses this; so can anything that
/// needs to send GB28181 media).
pub mod mux {
    fn put_timestamp(out: &mut Vec<u8>, marker: u8, ts: u64) {
        out.push(marker << 4 | (((ts >> 30) & 0x07) as u8) << 1 | 1);
        out.extend_from_slice(&((((ts >> 15) & 0x7fff) as u16) << 1 | 1).to_be_bytes());
        out.extend_from_slice(&(((ts & 0x7fff) as u16) << 1 | 1).to_be_bytes());
    }

    /// A pack header (MPEG-2) with SCR `scr` (90 kHz).
    pub fn pack_header(scr: u64) -> Vec<u8> {
        let mut out = vec![0, 0, 1, 0xba];
        out.push(0x44 | (((scr >> 30) & 0x07) as u8) << 3 | ((scr >> 28) & 0x03) as u8);
        out.push((scr >> 20) as u8);
        out.push(((scr >> 12) & 0xf8) as u8 | 0x04 | ((scr >> 13) & 0x03) as u8);
        out.push((scr >> 5) as u8);
        out.push(((scr & 0x1f) as u8) << 3 | 0x04);
        out.push(0x01);
        out.extend_from_slice(&[0x01, 0x89, 0xc3]); // mux rate, markers
        out.push(0xf8); // no stuffing
        out
    }

    /// A program stream map naming `(stream_type, stream_id)` pairs.
    pub fn stream_map(streams: &[(u8, u8)]) -> Vec<u8> {
        let map_len = streams.len() * 4;
        let length = 2 + 2 + 2 + map_len + 4;
        let mut out = vec![0, 0, 1, 0xbc];
        out.extend_from_slice(&(length as u16).to_be_bytes());
        out.extend_from_slice(&[0xe0, 0xff, 0, 0]);
        out.extend_from_slice(&(map_len as u16).to_be_bytes());
        for (kind, id) in streams {
            out.extend_from_slice(&[*kind, *id, 0, 0]);
        }
        out.extend_from_slice(&crate::container::ts::crc32_mpeg2(&out[..]).to_be_bytes());
        out
    }

    /// PES packets carrying `data` for `stream_id`, the first with PTS (and DTS when it
    /// differs), split to fit the 16-bit length.
    pub fn pes(stream_id: u8, pts: u64, dts: u64, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut first = true;
        for chunk in data.chunks(65_000) {
            let mut header = Vec::new();
            if first {
                if dts != pts {
                    header.extend_from_slice(&[0x80, 0xc0, 10]);
                    put_timestamp(&mut header, 3, pts);
                    put_timestamp(&mut header, 1, dts);
                } else {
                    header.extend_from_slice(&[0x80, 0x80, 5]);
                    put_timestamp(&mut header, 2, pts);
                }
            } else {
                header.extend_from_slice(&[0x80, 0x00, 0]);
            }
            out.extend_from_slice(&[0, 0, 1, stream_id]);
            out.extend_from_slice(&((header.len() + chunk.len()) as u16).to_be_bytes());
            out.extend_from_slice(&header);
            out.extend_from_slice(chunk);
            first = false;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> (Vec<u8>, Vec<(u8, u64, Vec<u8>)>) {
        let mut out = Vec::new();
        let mut expected = Vec::new();
        for i in 0..6u64 {
            out.extend(mux::pack_header(i * 3600));
            if i % 3 == 0 {
                out.extend(mux::stream_map(&[(0x1b, 0xe0), (0x0f, 0xc0)]));
            }
            // Frame 0 is larger than one PES packet.
            let video: Vec<u8> = (0..if i == 0 { 150_000 } else { 500 + i as usize }).map(|b| (b % 200) as u8 + 3).collect();
            out.extend(mux::pes(0xe0, 7200 + i * 3600, 3600 + i * 3600, &video));
            expected.push((0xe0, 7200 + i * 3600, video));
            let audio = vec![0x55u8; 20];
            out.extend(mux::pes(0xc0, 3600 + i * 3600, 3600 + i * 3600, &audio));
            expected.push((0xc0, 3600 + i * 3600, audio));
        }
        (out, expected)
    }

    #[test]
    fn units_come_back_at_any_split() {
        let (data, expected) = stream();
        for step in [1, 3, 100, 1400, 70_000] {
            let mut demuxer = PsDemuxer::default();
            let mut units = Vec::new();
            for piece in data.chunks(step) {
                demuxer.push(piece).unwrap();
                while let Some(u) = demuxer.next_unit() {
                    units.push(u);
                }
            }
            demuxer.flush();
            while let Some(u) = demuxer.next_unit() {
                units.push(u);
            }
            let got: Vec<(u8, u64, Vec<u8>)> = units.iter().map(|u| (u.pid as u8, u.pts.unwrap(), u.data.to_vec())).collect();
            let mut want = expected.clone();
            let mut got_sorted = got.clone();
            want.sort_by_key(|(id, pts, _)| (*id, *pts));
            got_sorted.sort_by_key(|(id, pts, _)| (*id, *pts));
            assert_eq!(got_sorted, want, "step {step}");
            assert_eq!(units[0].stream_type, 0x1b);
            assert_eq!(demuxer.skipped, 0);
        }
    }

    #[test]
    fn garbage_is_skipped_and_truncation_is_harmless() {
        let (data, _) = stream();
        let mut noisy = vec![0xde, 0xad, 0, 0, 0xbe, 0xef];
        noisy.extend_from_slice(&data[..data.len() / 2]);
        noisy.extend_from_slice(&[0, 0, 1, 0x42, 7, 7, 7]);
        noisy.extend_from_slice(&data[data.len() / 2..]);
        let mut demuxer = PsDemuxer::default();
        demuxer.push(&noisy).unwrap();
        assert!(demuxer.skipped > 0);
        // Every prefix of the stream is accepted without panicking.
        for cut in (0..data.len()).step_by(997) {
            let mut d = PsDemuxer::default();
            d.push(&data[..cut]).unwrap();
            d.flush();
            while d.next_unit().is_some() {}
        }
        // Before any stream map, units are counted, not guessed.
        let mut blind = PsDemuxer::default();
        blind.push(&mux::pes(0xe0, 1, 1, &[1, 2, 3])).unwrap();
        blind.push(&mux::pes(0xe0, 2, 2, &[1, 2, 3])).unwrap();
        assert!(blind.next_unit().is_none());
        assert_eq!(blind.untyped, 1);
    }
}
