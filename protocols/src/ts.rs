//! MPEG-TS (ISO/IEC 13818-1, "transport stream"): a muxer that turns [`MediaFrame`]s into
//! 188-byte packets and a split-proof demuxer that turns packets back into PES packets and
//! frames.
//!
//! ## Muxing
//! One program: PAT on PID 0, PMT on PID 0x1000, video on 0x100 (also carrying the PCR),
//! audio on 0x101. Each frame becomes one PES packet. H.264/H.265 access units are written as
//! Annex B with an access unit delimiter first and the parameter sets from the sequence
//! header in front of every keyframe (so any segment can start decoding); AAC frames get an
//! ADTS header built from the AudioSpecificConfig. Keyframes set `random_access_indicator`,
//! every video PES carries a PCR equal to its DTS. Continuity counters run per PID.
//!
//! ## Demuxing
//! [`TsDemuxer`] resynchronises on the 0x47 sync byte, reads PAT and PMT (sections that fit
//! one packet, CRC-checked), reassembles PES packets per PID (bounded size) and emits them
//! with their stream type. [`TsFrameReader`] turns PES packets of H.264 and AAC into frames
//! in the canonical forms (length-prefixed NAL units with an `AVCDecoderConfigurationRecord`;
//! raw AAC with an `AudioSpecificConfig`), emitting a config frame whenever the parameter sets
//! change. PTS/DTS are widened from 33 bits once, there.

use crate::aac::{AacConfig, AdtsHeader};
use crate::avc::{self, AvcConfig};
use crate::hevc;
use crate::media::{Codec, MediaFrame, Timebase, TimestampNormalizer, TrackKind};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use thiserror::Error;

/// Transport packet size.
pub const PACKET_SIZE: usize = 188;
/// PID of the program association table.
pub const PID_PAT: u16 = 0;
/// PID of the program map table.
pub const PID_PMT: u16 = 0x1000;
/// PID of the video elementary stream.
pub const PID_VIDEO: u16 = 0x100;
/// PID of the audio elementary stream.
pub const PID_AUDIO: u16 = 0x101;

/// Stream type: MPEG-1 audio (MP3).
pub const STREAM_TYPE_MP3: u8 = 0x03;
/// Stream type: PES private data (Opus uses it with an `Opus` registration descriptor).
pub const STREAM_TYPE_PRIVATE: u8 = 0x06;
/// Stream type: AAC with ADTS.
pub const STREAM_TYPE_AAC: u8 = 0x0f;
/// Stream type: H.264.
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// Stream type: H.265.
pub const STREAM_TYPE_H265: u8 = 0x24;

const MAX_33: u64 = (1 << 33) - 1;

/// A demuxing problem.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TsError {
    /// A PES packet grew beyond the limit.
    #[error("PES on PID {pid:#x} exceeds {limit} bytes (input offset {offset})")]
    PesTooLarge {
        /// The PID.
        pid: u16,
        /// The limit.
        limit: usize,
        /// Input offset.
        offset: u64,
    },
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, initial value all ones, no reflection).
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= (byte as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
        }
    }
    crc
}

fn stream_type(codec: Codec) -> Option<u8> {
    match codec {
        Codec::H264 => Some(STREAM_TYPE_H264),
        Codec::H265 => Some(STREAM_TYPE_H265),
        Codec::Aac => Some(STREAM_TYPE_AAC),
        Codec::Mp3 => Some(STREAM_TYPE_MP3),
        _ => None,
    }
}

/// Writes frames as a transport stream.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    video: Option<Codec>,
    audio: Option<Codec>,
    cc: HashMap<u16, u8>,
    parameter_sets: Vec<Bytes>,
    nal_length_size: usize,
    aac: Option<AacConfig>,
    /// PAT/PMT `version_number` (5 bits).
    version: u8,
}

impl TsMuxer {
    /// A muxer for the given tracks (codecs that TS cannot carry here are left out).
    pub fn new(video: Option<Codec>, audio: Option<Codec>) -> Self {
        TsMuxer {
            video: video.filter(|c| stream_type(*c).is_some()),
            audio: audio.filter(|c| stream_type(*c).is_some()),
            cc: HashMap::new(),
            parameter_sets: Vec::new(),
            nal_length_size: 4,
            aac: None,
            version: 0,
        }
    }

    /// A muxer for a changed set of tracks that continues this one's output: continuity
    /// counters carry on and the tables get the next version, so a demuxer reading one
    /// continuous stream sees a program change, not corruption.
    pub fn retracked(&self, video: Option<Codec>, audio: Option<Codec>) -> Self {
        let mut muxer = TsMuxer::new(video, audio);
        muxer.cc = self.cc.clone();
        muxer.version = (self.version + 1) & 0x1f;
        muxer
    }

    /// The video codec carried.
    pub fn video(&self) -> Option<Codec> {
        self.video
    }

    /// The audio codec carried.
    pub fn audio(&self) -> Option<Codec> {
        self.audio
    }

    fn next_cc(&mut self, pid: u16) -> u8 {
        let cc = self.cc.entry(pid).or_insert(0x0f);
        *cc = (*cc + 1) & 0x0f;
        *cc
    }

    fn write_section(&mut self, out: &mut BytesMut, pid: u16, section: &[u8]) {
        let cc = self.next_cc(pid);
        let start = out.len();
        out.put_slice(&[0x47, 0x40 | (pid >> 8) as u8, pid as u8, 0x10 | cc, 0x00]);
        out.put_slice(section);
        out.put_u32(crc32_mpeg2(section));
        out.resize(start + PACKET_SIZE, 0xff);
    }

    /// Appends a PAT and a PMT.
    pub fn write_tables(&mut self, out: &mut BytesMut) {
        let version = 0xc1 | (self.version << 1);
        let mut pat = vec![0x00, 0xb0, 0x0d, 0x00, 0x01, version, 0x00, 0x00, 0x00, 0x01];
        pat.extend_from_slice(&[0xe0 | (PID_PMT >> 8) as u8, PID_PMT as u8]);
        self.write_section(out, PID_PAT, &pat);

        let pcr_pid = if self.video.is_some() { PID_VIDEO } else { PID_AUDIO };
        let mut streams = Vec::new();
        for (codec, pid) in [(self.video, PID_VIDEO), (self.audio, PID_AUDIO)] {
            if let Some(kind) = codec.and_then(stream_type) {
                streams.extend_from_slice(&[kind, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0x00]);
            }
        }
        let length = 9 + streams.len() + 4;
        let mut pmt = vec![0x02, 0xb0 | (length >> 8) as u8, length as u8, 0x00, 0x01, version, 0x00, 0x00];
        pmt.extend_from_slice(&[0xe0 | (pcr_pid >> 8) as u8, pcr_pid as u8, 0xf0, 0x00]);
        pmt.extend_from_slice(&streams);
        self.write_section(out, PID_PMT, &pmt);
    }

    /// Takes a frame: a config frame updates the muxer's headers; a media frame is appended
    /// as a PES packet. Returns whether packets were written.
    pub fn write_frame(&mut self, frame: &MediaFrame, out: &mut BytesMut) -> bool {
        if frame.config {
            match frame.codec {
                Codec::H264 => {
                    if let Ok(config) = AvcConfig::parse(&frame.payload) {
                        self.nal_length_size = config.nal_length_size as usize;
                        self.parameter_sets = config.sps.iter().chain(config.pps.iter()).cloned().collect();
                    }
                }
                Codec::H265 => {
                    if let Some((length_size, nals)) = hevc::config_parameter_sets(&frame.payload) {
                        self.nal_length_size = length_size as usize;
                        self.parameter_sets = nals;
                    }
                }
                Codec::Aac => self.aac = AacConfig::parse(&frame.payload).ok(),
                _ => {}
            }
            return false;
        }
        let dts = (frame.timebase.rescale(frame.dts, Timebase::MPEG).max(0) as u64) & MAX_33;
        let pts = (frame.timebase.rescale(frame.pts, Timebase::MPEG).max(0) as u64) & MAX_33;
        match (frame.track, frame.codec) {
            (TrackKind::Video, codec) if Some(codec) == self.video => {
                let mut es = BytesMut::with_capacity(frame.payload.len() + 64);
                let (aud, aud_type, sps_type, pps_type): (&[u8], u8, u8, u8) = if codec == Codec::H265 {
                    (&[0x46, 0x01, 0x50], hevc::NAL_AUD, hevc::NAL_SPS, hevc::NAL_PPS)
                } else {
                    (&[0x09, 0xf0], 9, 7, 8)
                };
                es.put_slice(&[0, 0, 0, 1]);
                es.put_slice(aud);
                if frame.keyframe {
                    for nal in &self.parameter_sets {
                        es.put_slice(&[0, 0, 0, 1]);
                        es.put_slice(nal);
                    }
                }
                for nal in avc::length_prefixed_nals(&frame.payload, self.nal_length_size) {
                    let Some(&first) = nal.first() else { continue };
                    let kind = if codec == Codec::H265 { hevc::nal_type(first) } else { avc::nal_type(first) };
                    if kind == aud_type || (frame.keyframe && (kind == sps_type || kind == pps_type) && !self.parameter_sets.is_empty()) {
                        continue;
                    }
                    es.put_slice(&[0, 0, 0, 1]);
                    es.put_slice(nal);
                }
                let dts_field = if pts != dts { Some(dts) } else { None };
                self.write_pes(out, PID_VIDEO, 0xe0, pts, dts_field, &es, frame.keyframe, Some(dts));
                true
            }
            (TrackKind::Audio, Codec::Aac) if self.audio == Some(Codec::Aac) => {
                let Some(config) = self.aac else { return false };
                let mut es = BytesMut::with_capacity(frame.payload.len() + 7);
                es.put_slice(&config.adts_header(frame.payload.len()));
                es.put_slice(&frame.payload);
                let pcr = if self.video.is_none() { Some(dts) } else { None };
                self.write_pes(out, PID_AUDIO, 0xc0, pts, None, &es, self.video.is_none(), pcr);
                true
            }
            (TrackKind::Audio, Codec::Mp3) if self.audio == Some(Codec::Mp3) => {
                let pcr = if self.video.is_none() { Some(dts) } else { None };
                let payload = frame.payload.clone();
                self.write_pes(out, PID_AUDIO, 0xc0, pts, None, &payload, false, pcr);
                true
            }
            _ => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_pes(&mut self, out: &mut BytesMut, pid: u16, stream_id: u8, pts: u64, dts: Option<u64>, es: &[u8], random_access: bool, pcr: Option<u64>) {
        let header_data_len = if dts.is_some() { 10 } else { 5 };
        let mut header = Vec::with_capacity(9 + header_data_len);
        header.extend_from_slice(&[0, 0, 1, stream_id]);
        let pes_len = 3 + header_data_len + es.len();
        // Video PES may exceed the 16-bit length; 0 means "unbounded" there.
        let len_field = if pes_len > 0xffff || stream_id == 0xe0 { 0 } else { pes_len as u16 };
        header.extend_from_slice(&len_field.to_be_bytes());
        header.push(0x80);
        header.push(if dts.is_some() { 0xc0 } else { 0x80 });
        header.push(header_data_len as u8);
        write_timestamp(&mut header, if dts.is_some() { 0x3 } else { 0x2 }, pts);
        if let Some(dts) = dts {
            write_timestamp(&mut header, 0x1, dts);
        }

        let total = header.len() + es.len();
        let mut written = 0usize;
        let mut first = true;
        while written < total {
            let cc = self.next_cc(pid);
            let start = out.len();
            out.put_slice(&[0x47, ((first as u8) << 6) | (pid >> 8) as u8, pid as u8, 0]);
            let remaining = total - written;
            let mut adaptation = Vec::new();
            if first && (random_access || pcr.is_some()) {
                let mut flags = 0u8;
                if random_access {
                    flags |= 0x40;
                }
                if pcr.is_some() {
                    flags |= 0x10;
                }
                adaptation.push(flags);
                if let Some(pcr) = pcr {
                    let base = pcr & MAX_33;
                    adaptation.extend_from_slice(&[
                        (base >> 25) as u8,
                        (base >> 17) as u8,
                        (base >> 9) as u8,
                        (base >> 1) as u8,
                        (((base & 1) << 7) as u8) | 0x7e,
                        0,
                    ]);
                }
            }
            let mut af_total = if adaptation.is_empty() { 0 } else { 1 + adaptation.len() };
            if remaining < 184 - af_total {
                // Stuff the last packet through the adaptation field.
                let stuffing = 184 - af_total - remaining;
                if af_total == 0 {
                    if stuffing == 1 {
                        af_total = 1;
                    } else {
                        adaptation.push(0);
                        adaptation.extend(std::iter::repeat_n(0xff, stuffing - 2));
                        af_total = 1 + adaptation.len();
                    }
                } else {
                    adaptation.extend(std::iter::repeat_n(0xff, stuffing));
                    af_total = 1 + adaptation.len();
                }
            }
            let control = if af_total > 0 { 0x30 } else { 0x10 };
            out[start + 3] = control | cc;
            if af_total > 0 {
                out.put_u8((af_total - 1) as u8);
                out.put_slice(&adaptation);
            }
            let take = 184 - af_total;
            let mut left = take;
            while left > 0 {
                let at = written;
                let (source, offset) = if at < header.len() { (&header[..], at) } else { (es, at - header.len()) };
                let n = left.min(source.len() - offset);
                out.put_slice(&source[offset..offset + n]);
                written += n;
                left -= n;
            }
            first = false;
        }
    }
}

fn write_timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    let ts = ts & MAX_33;
    out.push((prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1);
    out.push((ts >> 22) as u8);
    out.push((((ts >> 15) as u8) << 1) | 1);
    out.push((ts >> 7) as u8);
    out.push(((ts as u8) << 1) | 1);
}

fn read_timestamp(b: &[u8]) -> u64 {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const SPS: [u8; 25] = [
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1,
        0x42, 0x99, 0x60,
    ];
    pub(crate) const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn ms_frame(track: TrackKind, codec: Codec, dts: i64, cts: i64, keyframe: bool, config: bool, payload: Vec<u8>) -> MediaFrame {
        MediaFrame { track, codec, dts, pts: dts + cts, timebase: Timebase::MILLIS, keyframe, config, payload: Bytes::from(payload) }
    }

    fn sample_frames() -> Vec<MediaFrame> {
        let avc = AvcConfig::from_parameter_sets(&SPS, &PPS).unwrap().to_bytes().to_vec();
        let mut frames = vec![
            ms_frame(TrackKind::Video, Codec::H264, 0, 0, true, true, avc),
            ms_frame(TrackKind::Audio, Codec::Aac, 0, 0, true, true, vec![0x11, 0x90]),
        ];
        for i in 0..6i64 {
            // A 600-byte keyframe spans several packets; the others are small.
            let size = if i == 0 { 600 } else { 20 + i as usize };
            let mut nal = vec![if i == 0 { 0x65 } else { 0x41 }];
            nal.extend((0..size).map(|b| (b % 251) as u8 + 1));
            frames.push(ms_frame(TrackKind::Video, Codec::H264, 1000 + i * 40, 80, i == 0, false, avc::to_length_prefixed([&nal[..]]).to_vec()));
            frames.push(ms_frame(TrackKind::Audio, Codec::Aac, 1000 + i * 21, 0, true, false, vec![0x21, i as u8, 7, 7]));
        }
        frames
    }

    fn mux(frames: &[MediaFrame]) -> BytesMut {
        let mut muxer = TsMuxer::new(Some(Codec::H264), Some(Codec::Aac));
        let mut out = BytesMut::new();
        muxer.write_tables(&mut out);
        for f in frames {
            muxer.write_frame(f, &mut out);
        }
        out
    }

    #[test]
    fn retracked_muxer_continues_counters_and_versions_tables() {
        let frames = sample_frames();
        let mut muxer = TsMuxer::new(Some(Codec::H264), None);
        let mut out = BytesMut::new();
        muxer.write_frame(&frames[0], &mut out);
        muxer.write_tables(&mut out);
        for f in frames.iter().filter(|f| f.track == TrackKind::Video).skip(1).take(2) {
            muxer.write_frame(f, &mut out);
        }
        // Audio appears: new tables, same counters.
        let mut muxer = muxer.retracked(Some(Codec::H264), Some(Codec::Aac));
        muxer.write_frame(&frames[0], &mut out);
        muxer.write_frame(&frames[1], &mut out);
        muxer.write_tables(&mut out);
        for f in frames.iter().skip(4) {
            muxer.write_frame(f, &mut out);
        }
        let mut last_cc: HashMap<u16, u8> = HashMap::new();
        let mut versions = Vec::new();
        for packet in out.chunks(PACKET_SIZE) {
            let pid = (((packet[1] & 0x1f) as u16) << 8) | packet[2] as u16;
            let cc = packet[3] & 0x0f;
            if let Some(prev) = last_cc.insert(pid, cc) {
                assert_eq!(cc, (prev + 1) & 0x0f, "continuity on PID {pid:#x}");
            }
            if pid == PID_PAT {
                versions.push((packet[10] >> 1) & 0x1f);
            }
        }
        assert_eq!(versions, vec![0, 1]);
        // A demuxer reading the whole stream gets both tracks.
        let frames_out = demux(&out, 188);
        assert!(frames_out.iter().any(|f| f.track == TrackKind::Audio && !f.config));
    }

    fn demux(data: &[u8], step: usize) -> Vec<MediaFrame> {
        let mut demuxer = TsDemuxer::default();
        let mut reader = TsFrameReader::default();
        let mut frames = Vec::new();
        for piece in data.chunks(step) {
            demuxer.push(piece).unwrap();
            while let Some(pes) = demuxer.next_pes() {
                frames.extend(reader.frames(&pes));
            }
        }
        demuxer.flush();
        while let Some(pes) = demuxer.next_pes() {
            frames.extend(reader.frames(&pes));
        }
        frames
    }

    #[test]
    fn packets_are_well_formed() {
        let out = mux(&sample_frames());
        assert_eq!(out.len() % PACKET_SIZE, 0);
        let mut cc: HashMap<u16, u8> = HashMap::new();
        for packet in out.chunks(PACKET_SIZE) {
            assert_eq!(packet[0], 0x47);
            let pid = (((packet[1] & 0x1f) as u16) << 8) | packet[2] as u16;
            let counter = packet[3] & 0x0f;
            if let Some(previous) = cc.insert(pid, counter) {
                assert_eq!(counter, (previous + 1) & 0x0f, "continuity on PID {pid:#x}");
            }
        }
    }

    #[test]
    fn mux_then_demux_gives_the_same_frames_in_any_chunking() {
        let frames = sample_frames();
        let data = mux(&frames);
        for step in [1, 100, 188, 4096] {
            let back = demux(&data, step);
            let video: Vec<&MediaFrame> = back.iter().filter(|f| f.track == TrackKind::Video && !f.config).collect();
            let audio: Vec<&MediaFrame> = back.iter().filter(|f| f.track == TrackKind::Audio && !f.config).collect();
            let original_video: Vec<&MediaFrame> = frames.iter().filter(|f| f.track == TrackKind::Video && !f.config).collect();
            let original_audio: Vec<&MediaFrame> = frames.iter().filter(|f| f.track == TrackKind::Audio && !f.config).collect();
            assert_eq!(video.len(), original_video.len(), "step {step}");
            assert_eq!(audio.len(), original_audio.len(), "step {step}");
            for (got, want) in video.iter().zip(&original_video) {
                assert_eq!(got.payload, want.payload);
                assert_eq!((got.dts_ms(), got.pts_ms(), got.keyframe), (want.dts_ms(), want.pts_ms(), want.keyframe));
            }
            for (got, want) in audio.iter().zip(&original_audio) {
                assert_eq!(got.payload, want.payload);
                assert_eq!(got.dts_ms(), want.dts_ms());
            }
            let video_config = back.iter().find(|f| f.track == TrackKind::Video && f.config).expect("video config");
            assert_eq!(AvcConfig::parse(&video_config.payload).unwrap().sps[0][..], SPS[..]);
            let audio_config = back.iter().find(|f| f.track == TrackKind::Audio && f.config).expect("audio config");
            assert_eq!(&audio_config.payload[..], &[0x11, 0x90]);
        }
    }

    #[test]
    fn garbage_before_and_between_packets_is_skipped() {
        let data = mux(&sample_frames());
        let mut noisy = vec![0x12, 0x47, 0x00];
        noisy.extend_from_slice(&data[..188 * 3]);
        noisy.extend_from_slice(&[1, 2, 3]);
        noisy.extend_from_slice(&data[188 * 3..]);
        let frames = demux(&noisy, 1000);
        assert!(frames.iter().filter(|f| !f.config).count() >= 10, "most frames survive garbage");
    }

    #[test]
    fn hevc_mux_then_demux() {
        use crate::hevc::tests::{PPS as HPPS, SPS as HSPS, VPS as HVPS};
        let record = hevc::config_from_parameter_sets(&HVPS, &HSPS, &HPPS).unwrap();
        let mut frames = vec![ms_frame(TrackKind::Video, Codec::H265, 0, 0, true, true, record.to_vec())];
        for i in 0..4i64 {
            let nal = if i == 0 { vec![0x26, 0x01, 0xaf, 0x11] } else { vec![0x02, 0x01, 0xd0, i as u8 + 1] };
            frames.push(ms_frame(TrackKind::Video, Codec::H265, i * 40, 40, i == 0, false, avc::to_length_prefixed([&nal[..]]).to_vec()));
        }
        let mut muxer = TsMuxer::new(Some(Codec::H265), None);
        let mut data = BytesMut::new();
        muxer.write_tables(&mut data);
        for f in &frames {
            muxer.write_frame(f, &mut data);
        }
        let back = demux(&data, 188);
        let config = back.iter().find(|f| f.config).expect("HEVC config from the in-band parameter sets");
        assert_eq!(config.payload, record);
        let media: Vec<&MediaFrame> = back.iter().filter(|f| !f.config).collect();
        assert_eq!(media.len(), 4);
        assert!(media[0].keyframe && !media[1].keyframe);
        for (got, want) in media.iter().zip(frames.iter().skip(1)) {
            assert_eq!(got.payload, want.payload);
            assert_eq!((got.dts_ms(), got.pts_ms()), (want.dts_ms(), want.pts_ms()));
        }
    }

    #[test]
    fn crc_matches_the_reference_value() {
        // CRC-32/MPEG-2 of "123456789" is 0x0376E6E7.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn timestamps_encode_and_decode() {
        for ts in [0u64, 1, 90_000, MAX_33] {
            let mut b = Vec::new();
            write_timestamp(&mut b, 2, ts);
            assert_eq!(read_timestamp(&b), ts);
        }
    }
}
