//! The MPEG-TS muxer: frames to 188-byte packets (see the module docs).

use crate::codec::aac::AacConfig;
use crate::codec::avc::{self, AvcConfig};
use crate::codec::hevc;
use crate::media::{Codec, MediaFrame, Timebase, TrackKind};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::HashMap;
use super::*;

fn stream_type(codec: Codec) -> Option<u8> {
    match codec {
        Codec::H264 => Some(STREAM_TYPE_H264),
        Codec::H265 => Some(STREAM_TYPE_H265),
        Codec::Aac => Some(STREAM_TYPE_AAC),
        Codec::Mp3 => Some(STREAM_TYPE_MP3),
        // Opus in MPEG-TS (the Xiph/ETSI draft mapping that ffmpeg reads and writes):
        // private PES data, named by a registration descriptor.
        Codec::Opus => Some(STREAM_TYPE_PRIVATE),
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
    /// Opus output channels (from the `OpusHead`; stereo until one arrives).
    opus_channels: u8,
    /// PAT/PMT `version_number` (5 bits).
    version: u8,
    /// Carries timed metadata (`onCuePoint` events made by the API) as ID3 tags in a PES
    /// stream of its own (HLS segments: Apple's timed metadata for HLS).
    timed_metadata: bool,
    /// The metadata stream is in the PMT: from the first tag on. A stream declared but never
    /// fed would hold back demuxers that wait for every stream (FFmpeg's `-map 0 -t N` never
    /// ends), so a stream without timed metadata has no such stream at all.
    metadata_declared: bool,
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
            opus_channels: 2,
            version: 0,
            timed_metadata: false,
            metadata_declared: false,
        }
    }

    /// The same muxer with a timed metadata stream (PID [`PID_METADATA`], declared in the
    /// PMT with an `ID3 ` metadata descriptor, as ffmpeg and Safari read it) once the first
    /// tag comes: the tables are written again then, with the next version.
    pub fn with_timed_metadata(mut self) -> Self {
        self.timed_metadata = true;
        self
    }

    /// A muxer for a changed set of tracks that continues this one's output: continuity
    /// counters carry on and the tables get the next version, so a demuxer reading one
    /// continuous stream sees a program change, not corruption.
    pub fn retracked(&self, video: Option<Codec>, audio: Option<Codec>) -> Self {
        let mut muxer = TsMuxer::new(video, audio);
        muxer.cc = self.cc.clone();
        muxer.version = (self.version + 1) & 0x1f;
        muxer.timed_metadata = self.timed_metadata;
        muxer.metadata_declared = self.metadata_declared;
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
                if codec == Some(Codec::Opus) {
                    // Registration descriptor "Opus", then the DVB extension descriptor with
                    // the channel configuration (1 mono, 2 stereo; 0x80 | n for up to 8
                    // channels in Vorbis order).
                    let channels = if self.opus_channels <= 2 { self.opus_channels.max(1) } else { 0x80 | self.opus_channels.min(8) };
                    let descriptors = [0x05, 0x04, b'O', b'p', b'u', b's', 0x7f, 0x02, 0x80, channels];
                    streams.extend_from_slice(&[kind, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, descriptors.len() as u8]);
                    streams.extend_from_slice(&descriptors);
                } else {
                    streams.extend_from_slice(&[kind, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0x00]);
                }
            }
        }
        if self.metadata_declared {
            // metadata_descriptor: application format 0xffff with identifier "ID3 ", format
            // 0xff with identifier "ID3 ", service 0, no locator, carried in PES (0x0f).
            let descriptor = [0x26, 13, 0xff, 0xff, b'I', b'D', b'3', b' ', 0xff, b'I', b'D', b'3', b' ', 0x00, 0x0f];
            streams.extend_from_slice(&[STREAM_TYPE_METADATA, 0xe0 | (PID_METADATA >> 8) as u8, PID_METADATA as u8, 0xf0, descriptor.len() as u8]);
            streams.extend_from_slice(&descriptor);
        }
        let length = 9 + streams.len() + 4;
        // With timed metadata, the program points at it (metadata_pointer_descriptor: format
        // and identifier "ID3 ", service 0, no locator, carried in this program, number 1).
        let program_info: &[u8] = if self.metadata_declared { &[0x25, 15, 0xff, 0xff, b'I', b'D', b'3', b' ', 0xff, b'I', b'D', b'3', b' ', 0x00, 0x1f, 0x00, 0x01] } else { &[] };
        let length = length + program_info.len();
        let mut pmt = vec![0x02, 0xb0 | (length >> 8) as u8, length as u8, 0x00, 0x01, version, 0x00, 0x00];
        pmt.extend_from_slice(&[0xe0 | (pcr_pid >> 8) as u8, pcr_pid as u8, 0xf0, program_info.len() as u8]);
        pmt.extend_from_slice(program_info);
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
                Codec::Opus => {
                    if let Some(head) = crate::codec::opus::OpusHead::parse(&frame.payload) {
                        self.opus_channels = head.channels.max(1);
                    }
                }
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
            (TrackKind::Audio, Codec::Opus) if self.audio == Some(Codec::Opus) => {
                // One access unit per PES, after its control header: the 11-bit prefix 0x3ff,
                // no trim or extension flags, then the size in 255-byte steps.
                let mut es = BytesMut::with_capacity(frame.payload.len() + 2 + frame.payload.len() / 255 + 1);
                es.put_slice(&[0x7f, 0xe0]);
                let mut size = frame.payload.len();
                while size >= 255 {
                    es.put_u8(0xff);
                    size -= 255;
                }
                es.put_u8(size as u8);
                es.put_slice(&frame.payload);
                let pcr = if self.video.is_none() { Some(dts) } else { None };
                self.write_pes(out, PID_AUDIO, 0xbd, pts, None, &es, self.video.is_none(), pcr);
                true
            }
            (TrackKind::Audio, Codec::Mp3) if self.audio == Some(Codec::Mp3) => {
                let pcr = if self.video.is_none() { Some(dts) } else { None };
                let payload = frame.payload.clone();
                self.write_pes(out, PID_AUDIO, 0xc0, pts, None, &payload, false, pcr);
                true
            }
            (TrackKind::Data, Codec::ScriptData) if self.timed_metadata => match crate::container::flv::parse_cue_point(&frame.payload) {
                Some(json) => {
                    if !self.metadata_declared {
                        // A program change: the stream is declared from here on.
                        self.metadata_declared = true;
                        self.version = (self.version + 1) & 0x1f;
                        self.write_tables(out);
                    }
                    let tag = crate::container::id3::txxx_tag("estuary.metadata", &json);
                    self.write_pes(out, PID_METADATA, 0xbd, pts, None, &tag, false, None);
                    true
                }
                None => false,
            },
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
        // An ID3 tag starts its PES payload: data_alignment_indicator, as FFmpeg writes it.
        header.push(if pid == PID_METADATA { 0x84 } else { 0x80 });
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

pub(super) fn write_timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    let ts = ts & MAX_33;
    out.push((prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1);
    out.push((ts >> 22) as u8);
    out.push((((ts >> 15) as u8) << 1) | 1);
    out.push((ts >> 7) as u8);
    out.push(((ts as u8) << 1) | 1);
}
