//! The MPEG-TS demuxer and the PES-to-frame reader (see the module docs).

use crate::codec::aac::{AacConfig, AdtsHeader};
use crate::codec::avc::{self, AvcConfig};
use crate::codec::hevc;
use crate::media::{Codec, MediaFrame, Timebase, TimestampNormalizer, TrackKind};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use super::*;

pub(super) fn read_timestamp(b: &[u8]) -> u64 {
    (((b[0] as u64 >> 1) & 0x07) << 30) | ((b[1] as u64) << 22) | (((b[2] as u64) >> 1) << 15) | ((b[3] as u64) << 7) | ((b[4] as u64) >> 1)
}

/// A reassembled PES packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pes {
    /// The PID it arrived on.
    pub pid: u16,
    /// The stream type from the PMT.
    pub stream_type: u8,
    /// PTS in 90 kHz units (33-bit).
    pub pts: Option<u64>,
    /// DTS in 90 kHz units (33-bit).
    pub dts: Option<u64>,
    /// The elementary stream data.
    pub data: Bytes,
    /// The transport packet that started it had `random_access_indicator` set.
    pub random_access: bool,
}

#[derive(Debug, Default)]
struct PesBuffer {
    data: BytesMut,
    random_access: bool,
}

/// Reads a transport stream.
#[derive(Debug)]
pub struct TsDemuxer {
    buffer: BytesMut,
    offset: u64,
    pmt_pids: Vec<u16>,
    streams: HashMap<u16, u8>,
    pes: HashMap<u16, PesBuffer>,
    ready: VecDeque<Pes>,
    max_pes: usize,
    /// Bytes skipped while looking for sync.
    pub skipped: u64,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        Self::new(8 << 20)
    }
}

impl TsDemuxer {
    /// A demuxer that refuses PES packets above `max_pes` bytes.
    pub fn new(max_pes: usize) -> Self {
        TsDemuxer { buffer: BytesMut::new(), offset: 0, pmt_pids: Vec::new(), streams: HashMap::new(), pes: HashMap::new(), ready: VecDeque::new(), max_pes, skipped: 0 }
    }

    /// Stream types by PID, as the PMT declared them.
    pub fn streams(&self) -> &HashMap<u16, u8> {
        &self.streams
    }

    /// Adds bytes.
    pub fn push(&mut self, data: &[u8]) -> Result<(), TsError> {
        self.buffer.extend_from_slice(data);
        while self.buffer.len() >= PACKET_SIZE {
            // In sync when this byte and, if buffered, the one a packet later are 0x47.
            let in_sync = self.buffer[0] == 0x47 && self.buffer.get(PACKET_SIZE).is_none_or(|&b| b == 0x47);
            if !in_sync {
                let skip = self.buffer[1..].iter().position(|&b| b == 0x47).map(|p| p + 1).unwrap_or(self.buffer.len());
                self.buffer.advance(skip);
                self.offset += skip as u64;
                self.skipped += skip as u64;
                continue;
            }
            let packet = self.buffer.split_to(PACKET_SIZE).freeze();
            self.packet(&packet)?;
            self.offset += PACKET_SIZE as u64;
        }
        Ok(())
    }

    /// The next complete PES packet.
    pub fn next_pes(&mut self) -> Option<Pes> {
        self.ready.pop_front()
    }

    /// At the end of input: emits PES packets still being assembled.
    pub fn flush(&mut self) {
        let pids: Vec<u16> = self.pes.keys().copied().collect();
        for pid in pids {
            self.complete(pid);
        }
    }

    fn packet(&mut self, packet: &[u8]) -> Result<(), TsError> {
        let pusi = packet[1] & 0x40 != 0;
        let pid = (((packet[1] & 0x1f) as u16) << 8) | packet[2] as u16;
        let control = (packet[3] >> 4) & 0x03;
        let mut offset = 4;
        let mut random_access = false;
        if control & 0x02 != 0 {
            let length = packet[4] as usize;
            if length > 0 && 5 < PACKET_SIZE {
                random_access = packet[5] & 0x40 != 0;
            }
            offset += 1 + length;
        }
        if control & 0x01 == 0 || offset >= PACKET_SIZE {
            return Ok(());
        }
        let payload = &packet[offset..];
        if pid == PID_PAT || self.pmt_pids.contains(&pid) {
            if pusi {
                self.section(pid, payload);
            }
            return Ok(());
        }
        if !self.streams.contains_key(&pid) {
            return Ok(());
        }
        if pusi {
            self.complete(pid);
            self.pes.insert(pid, PesBuffer { data: BytesMut::from(payload), random_access });
        } else if let Some(buffer) = self.pes.get_mut(&pid) {
            buffer.data.extend_from_slice(payload);
        } else {
            return Ok(());
        }
        let len = self.pes.get(&pid).map(|b| b.data.len()).unwrap_or(0);
        if len > self.max_pes {
            self.pes.remove(&pid);
            return Err(TsError::PesTooLarge { pid, limit: self.max_pes, offset: self.offset });
        }
        // A PES with a declared length completes as soon as it has all its bytes.
        if let Some(buffer) = self.pes.get(&pid) {
            if buffer.data.len() >= 6 {
                let declared = u16::from_be_bytes([buffer.data[4], buffer.data[5]]) as usize;
                if declared > 0 && buffer.data.len() >= 6 + declared {
                    self.complete(pid);
                }
            }
        }
        Ok(())
    }

    fn section(&mut self, pid: u16, payload: &[u8]) {
        let pointer = payload[0] as usize;
        let Some(section) = payload.get(1 + pointer..) else { return };
        if section.len() < 3 {
            return;
        }
        let length = (((section[1] & 0x0f) as usize) << 8) | section[2] as usize;
        let Some(section) = section.get(..3 + length) else { return };
        if length < 9 || crc32_mpeg2(&section[..section.len() - 4]) != u32::from_be_bytes([section[section.len() - 4], section[section.len() - 3], section[section.len() - 2], section[section.len() - 1]]) {
            return;
        }
        let body = &section[8..section.len() - 4];
        match (pid, section[0]) {
            (PID_PAT, 0x00) => {
                for entry in body.chunks_exact(4) {
                    let program = u16::from_be_bytes([entry[0], entry[1]]);
                    let pmt = (((entry[2] & 0x1f) as u16) << 8) | entry[3] as u16;
                    if program != 0 && !self.pmt_pids.contains(&pmt) {
                        self.pmt_pids.push(pmt);
                    }
                }
            }
            (_, 0x02) => {
                if body.len() < 4 {
                    return;
                }
                let info_len = (((body[2] & 0x0f) as usize) << 8) | body[3] as usize;
                let mut at = 4 + info_len;
                while at + 5 <= body.len() {
                    let kind = body[at];
                    let es_pid = (((body[at + 1] & 0x1f) as u16) << 8) | body[at + 2] as u16;
                    let es_info = (((body[at + 3] & 0x0f) as usize) << 8) | body[at + 4] as usize;
                    self.streams.insert(es_pid, kind);
                    at += 5 + es_info;
                }
            }
            _ => {}
        }
    }

    fn complete(&mut self, pid: u16) {
        let Some(buffer) = self.pes.remove(&pid) else { return };
        let data = buffer.data;
        if data.len() < 9 || data[0] != 0 || data[1] != 0 || data[2] != 1 {
            return;
        }
        let flags = data[7];
        let header_len = data[8] as usize;
        let Some(es_start) = 9usize.checked_add(header_len) else { return };
        if es_start > data.len() {
            return;
        }
        let mut pts = None;
        let mut dts = None;
        if flags & 0x80 != 0 && header_len >= 5 {
            pts = Some(read_timestamp(&data[9..14]));
            if flags & 0x40 != 0 && header_len >= 10 {
                dts = Some(read_timestamp(&data[14..19]));
            }
        }
        let declared = u16::from_be_bytes([data[4], data[5]]) as usize;
        let end = if declared > 0 { (6 + declared).min(data.len()) } else { data.len() };
        let stream_type = self.streams.get(&pid).copied().unwrap_or(0);
        let es = Bytes::copy_from_slice(&data[es_start.min(end)..end]);
        self.ready.push_back(Pes { pid, stream_type, pts, dts, data: es, random_access: buffer.random_access });
    }
}

/// Turns PES packets into frames.
#[derive(Debug)]
pub struct TsFrameReader {
    normalizer: TimestampNormalizer,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    hevc: [Option<Bytes>; 3],
    hevc_config: Option<Bytes>,
    aac: Option<AacConfig>,
    /// PES packets of stream types not converted (counted, not an error).
    pub unsupported: u64,
}

impl Default for TsFrameReader {
    fn default() -> Self {
        TsFrameReader { normalizer: TimestampNormalizer::new(33, 10 * 90_000), sps: None, pps: None, hevc: [None, None, None], hevc_config: None, aac: None, unsupported: 0 }
    }
}

impl TsFrameReader {
    /// Widens an audio PTS (33 bits, 90 kHz) on the same clock as the frames this reader
    /// makes, for audio converted elsewhere (G.711 transcoded to AAC).
    pub fn audio_time(&mut self, pts: u64) -> i64 {
        self.normalizer.normalize(TrackKind::Audio, pts).0
    }

    /// The frames in `pes` (config frames first when the parameters changed).
    pub fn frames(&mut self, pes: &Pes) -> Vec<MediaFrame> {
        let Some(pts) = pes.pts else { return Vec::new() };
        let raw_dts = pes.dts.unwrap_or(pts);
        let mut out = Vec::new();
        match pes.stream_type {
            STREAM_TYPE_H264 => {
                let (dts, _) = self.normalizer.normalize(TrackKind::Video, raw_dts);
                let cts = signed_33(pts.wrapping_sub(raw_dts));
                let mut media = Vec::new();
                let mut keyframe = false;
                let mut new_sps = None;
                let mut new_pps = None;
                for nal in avc::annexb_nals(&pes.data) {
                    match avc::nal_type(nal[0]) {
                        7 => new_sps = Some(Bytes::copy_from_slice(nal)),
                        8 => new_pps = Some(Bytes::copy_from_slice(nal)),
                        9 => {}
                        kind => {
                            keyframe |= kind == 5;
                            media.push(nal);
                        }
                    }
                }
                if new_sps.is_some() || new_pps.is_some() {
                    let changed = (new_sps.is_some() && new_sps != self.sps) || (new_pps.is_some() && new_pps != self.pps);
                    if let Some(sps) = new_sps {
                        self.sps = Some(sps);
                    }
                    if let Some(pps) = new_pps {
                        self.pps = Some(pps);
                    }
                    if changed {
                        if let (Some(sps), Some(pps)) = (&self.sps, &self.pps) {
                            if let Ok(config) = AvcConfig::from_parameter_sets(sps, pps) {
                                out.push(frame(TrackKind::Video, Codec::H264, dts, dts, true, true, config.to_bytes()));
                            }
                        }
                    }
                }
                if !media.is_empty() {
                    out.push(frame(TrackKind::Video, Codec::H264, dts, dts + cts, keyframe, false, avc::to_length_prefixed(media)));
                }
            }
            STREAM_TYPE_H265 => {
                let (dts, _) = self.normalizer.normalize(TrackKind::Video, raw_dts);
                let cts = signed_33(pts.wrapping_sub(raw_dts));
                let mut media = Vec::new();
                let mut keyframe = false;
                for nal in avc::annexb_nals(&pes.data) {
                    if nal.len() < 2 {
                        continue;
                    }
                    match hevc::nal_type(nal[0]) {
                        kind @ (hevc::NAL_VPS | hevc::NAL_SPS | hevc::NAL_PPS) => {
                            self.hevc[(kind - hevc::NAL_VPS) as usize] = Some(Bytes::copy_from_slice(nal));
                        }
                        hevc::NAL_AUD => {}
                        kind => {
                            keyframe |= hevc::is_irap(kind);
                            media.push(nal);
                        }
                    }
                }
                if let [Some(vps), Some(sps), Some(pps)] = &self.hevc {
                    if let Some(config) = hevc::config_from_parameter_sets(vps, sps, pps) {
                        if self.hevc_config.as_ref() != Some(&config) {
                            self.hevc_config = Some(config.clone());
                            out.push(frame(TrackKind::Video, Codec::H265, dts, dts, true, true, config));
                        }
                    }
                }
                if !media.is_empty() && self.hevc_config.is_some() {
                    out.push(frame(TrackKind::Video, Codec::H265, dts, dts + cts, keyframe, false, avc::to_length_prefixed(media)));
                }
            }
            STREAM_TYPE_AAC => {
                let (dts, _) = self.normalizer.normalize(TrackKind::Audio, pts);
                let mut data = &pes.data[..];
                let mut index = 0i64;
                while let Ok(header) = AdtsHeader::parse(data) {
                    if header.frame_len < header.header_len || header.frame_len > data.len() {
                        break;
                    }
                    if self.aac != Some(header.config) {
                        self.aac = Some(header.config);
                        out.push(frame(TrackKind::Audio, Codec::Aac, dts, dts, true, true, Bytes::copy_from_slice(&header.config.to_bytes())));
                    }
                    let offset = index * 1024 * 90_000 / header.config.sample_rate.max(1) as i64;
                    let payload = Bytes::copy_from_slice(&data[header.header_len..header.frame_len]);
                    out.push(frame(TrackKind::Audio, Codec::Aac, dts + offset, dts + offset, true, false, payload));
                    data = &data[header.frame_len..];
                    index += 1;
                }
            }
            _ => self.unsupported += 1,
        }
        out
    }
}

fn signed_33(value: u64) -> i64 {
    let value = value & MAX_33;
    if value >= 1 << 32 {
        value as i64 - (1 << 33)
    } else {
        value as i64
    }
}

fn frame(track: TrackKind, codec: Codec, dts: i64, pts: i64, keyframe: bool, config: bool, payload: Bytes) -> MediaFrame {
    MediaFrame { track, codec, dts, pts, timebase: Timebase::MPEG, keyframe, config, payload }
}
