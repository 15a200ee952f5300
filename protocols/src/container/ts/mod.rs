//! MPEG-TS (ISO/IEC 13818-1, "transport stream"): a muxer that turns [`MediaFrame`]s into
//! 188-byte packets and a split-proof demuxer that turns packets back into PES packets and
//! frames.
//!
//! ## Muxing
//! One program: PAT on PID 0, PMT on PID 0x1000, video on 0x100 (also carrying the PCR),
//! audio on 0x101. Each frame becomes one PES packet. H.264/H.265 access units are written as
//! Annex B with an access unit delimiter first and the parameter sets from the sequence
//! header in front of every keyframe (so any segment can start decoding); AAC frames get an
//! ADTS header built from the AudioSpecificConfig. Opus goes as private PES data
//! (`private_stream_1`, stream type 0x06) named by a registration descriptor `Opus` and a DVB
//! extension descriptor with the channel configuration, each packet after its control header
//! (prefix 0x3ff, then the size); the muxer writes Opus, the demuxer does not read it yet. AV1
//! has no TS mapping here and is left out. Keyframes set `random_access_indicator`,
//! every video PES carries a PCR equal to its DTS. Continuity counters run per PID.
//!
//! ## Demuxing
//! [`TsDemuxer`] resynchronises on the 0x47 sync byte, reads PAT and PMT (sections that fit
//! one packet, CRC-checked), reassembles PES packets per PID (bounded size) and emits them
//! with their stream type. [`TsFrameReader`] turns PES packets of H.264 and AAC into frames
//! in the canonical forms (length-prefixed NAL units with an `AVCDecoderConfigurationRecord`;
//! raw AAC with an `AudioSpecificConfig`), emitting a config frame whenever the parameter sets
//! change. PTS/DTS are widened from 33 bits once, there.
//!
//! `mux.rs` holds the muxer, `demux.rs` the demuxer and the PES-to-frame reader.

mod demux;
mod mux;

pub use demux::{Pes, TsDemuxer, TsFrameReader};
pub use mux::TsMuxer;

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
/// PID of the timed metadata (ID3) stream, when a muxer carries one.
pub const PID_METADATA: u16 = 0x102;

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
/// Metadata carried in PES packets (ISO/IEC 13818-1 Amd. 1): ID3 timed metadata.
pub const STREAM_TYPE_METADATA: u8 = 0x15;

pub(crate) const MAX_33: u64 = (1 << 33) - 1;

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use super::demux::*;
    use super::mux::*;
    use crate::codec::avc::{self, AvcConfig};
    use crate::codec::hevc;
    use crate::media::{Codec, MediaFrame, Timebase, TrackKind};
    use bytes::{Bytes, BytesMut};
    use std::collections::HashMap;

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
        use crate::codec::hevc::tests::{PPS as HPPS, SPS as HSPS, VPS as HVPS};
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
    fn opus_goes_as_registered_private_data_with_control_headers() {
        let head = crate::codec::opus::OpusHead::basic(1).to_bytes();
        let mut muxer = TsMuxer::new(None, Some(Codec::Opus));
        let mut out = BytesMut::new();
        muxer.write_frame(&ms_frame(TrackKind::Audio, Codec::Opus, 0, 0, true, true, head), &mut out);
        muxer.write_tables(&mut out);
        // A 300-byte packet: its size is written as 255 + 45.
        muxer.write_frame(&ms_frame(TrackKind::Audio, Codec::Opus, 20, 0, true, false, vec![9; 300]), &mut out);
        let packets: Vec<&[u8]> = out.chunks(PACKET_SIZE).collect();
        let pmt = packets.iter().find(|p| (((p[1] & 0x1f) as u16) << 8 | p[2] as u16) == PID_PMT).expect("a PMT");
        let stream = [STREAM_TYPE_PRIVATE, 0xe0 | (PID_AUDIO >> 8) as u8, PID_AUDIO as u8, 0xf0, 10, 0x05, 4, b'O', b'p', b'u', b's', 0x7f, 2, 0x80, 1];
        assert!(pmt.windows(stream.len()).any(|w| w == stream), "PMT entry with the Opus descriptors, mono: {pmt:02x?}");
        let pes = packets.iter().find(|p| (((p[1] & 0x1f) as u16) << 8 | p[2] as u16) == PID_AUDIO && p[1] & 0x40 != 0).expect("the audio PES");
        let start = pes.windows(4).position(|w| w == [0, 0, 1, 0xbd]).expect("private_stream_1");
        let header_len = pes[start + 8] as usize;
        let es = &pes[start + 9 + header_len..];
        assert_eq!(&es[..4], &[0x7f, 0xe0, 0xff, 45]);
        assert!(es[4..].iter().all(|&b| b == 9));
    }

    #[test]
    fn timed_metadata_is_an_id3_pes_stream_declared_in_the_pmt() {
        let cue = crate::container::flv::cue_point_frame(2_000, r#"{"objects":3}"#);
        let caption = crate::container::flv::text_data_frame(2_000, "hi", "eng", (None, None));
        let mut out = BytesMut::new();
        // Without the option, nothing is written for it.
        let mut plain = TsMuxer::new(Some(Codec::H264), None);
        assert!(!plain.write_frame(&cue, &mut out));
        let mut muxer = TsMuxer::new(Some(Codec::H264), None).with_timed_metadata();
        muxer.write_tables(&mut out);
        let entry = [STREAM_TYPE_METADATA, 0xe0 | (PID_METADATA >> 8) as u8, PID_METADATA as u8];
        let pmts = |out: &BytesMut| -> Vec<Vec<u8>> { out.chunks(PACKET_SIZE).filter(|p| (((p[1] & 0x1f) as u16) << 8 | p[2] as u16) == PID_PMT).map(|p| p.to_vec()).collect() };
        // Until a tag comes, the stream is not declared (a demuxer would wait for it).
        assert!(pmts(&out)[0].windows(3).all(|w| w != entry), "declared before any metadata");
        assert!(!muxer.write_frame(&caption, &mut out), "a caption is not metadata");
        assert!(muxer.write_frame(&cue, &mut out));
        // The first tag comes after new tables (the next version) that declare it.
        let tables = pmts(&out);
        assert_eq!(tables.len(), 2);
        assert_eq!((tables[0][10] >> 1) & 0x1f, 0);
        assert_eq!((tables[1][10] >> 1) & 0x1f, 1, "a new PMT version");
        let packets: Vec<&[u8]> = out.chunks(PACKET_SIZE).collect();
        let pmt = &tables[1];
        let at = pmt.windows(3).position(|w| w == entry).expect("the metadata stream in the PMT");
        assert_eq!(&pmt[at + 5..at + 7], &[0x26, 13]);
        assert_eq!(&pmt[15..19], &[0xf0, 17, 0x25, 15], "the program's metadata pointer");
        assert_eq!(crc32_mpeg2(&pmt[5..5 + 3 + ((pmt[6] as usize & 0x0f) << 8 | pmt[7] as usize)]), 0, "the section's CRC holds");
        let pes = packets.iter().find(|p| (((p[1] & 0x1f) as u16) << 8 | p[2] as u16) == PID_METADATA && p[1] & 0x40 != 0).expect("the ID3 PES");
        let start = pes.windows(4).position(|w| w == [0, 0, 1, 0xbd]).unwrap();
        assert_eq!(pes[start + 6], 0x84, "data aligned");
        assert_eq!(read_timestamp(&pes[start + 9..]), 180_000);
        let tag = &pes[start + 9 + pes[start + 8] as usize..];
        assert_eq!(crate::container::id3::read_txxx(tag), Some(("estuary.metadata".into(), r#"{"objects":3}"#.into())));
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
