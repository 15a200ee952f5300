//! Progressive MP4 (ISO/IEC 14496-12) assembled from samples that live elsewhere, and the
//! readers for progressive files and for the fragments of fragmented ones.
//!
//! ## Progressive layout
//! [`build`] lays out `ftyp`, `moov` (complete sample tables) and one `mdat` whose contents
//! are only described, not copied: the result is the header bytes plus a list of
//! [`Piece`]s, each a byte range of some source file. A server streams the header, then the
//! pieces, and can answer any byte range without assembling the file.
//!
//! - Samples of all tracks are interleaved in the `mdat` by decode time (in seconds), each
//!   sample its own chunk (`stsc` has one entry), so a player reading front to back gets audio
//!   and video together.
//! - `stco` is used while every offset fits 32 bits, `co64` otherwise.
//! - Times: each track keeps its own timescale (90 kHz video, the sample rate for audio).
//!   A track's first sample is shown at its decode time plus composition offset; the edit
//!   list's `media_time` skips that offset (B-frames), the presentation starts at the earliest
//!   such time of any track, and a track that starts later gets an empty edit first, so audio
//!   and video keep their relative timing.
//! - Durations are differences of decode times; the last sample repeats the previous one's.
//!
//! ## Readers
//! - [`read_file`] reads a whole progressive file's `moov` into [`DemuxedTrack`]s (file
//!   ingest); [`read_moov`] does the same for a `moov` alone.
//! - [`box_header`], [`top_level_box`] and [`fragment_samples`] read `moof` boxes (`tfhd`,
//!   `tfdt`, `trun`) back into sample references; the DVR uses them to rebuild the sample
//!   table of a recording cut short by a crash.
//!
//! The readers take bytes from outside (uploads, files to ingest, recordings a crash left
//! half-written), so every offset, size, time and count read is checked before it is used, and
//! a file whose numbers do not add up is refused with an [`Mp4Error`] naming the box and its
//! byte offset. Their cost is bounded by the input, not by what it claims:
//!
//! - at most one sample per [`FILE_BYTES_PER_SAMPLE`] bytes of file and [`MAX_SAMPLES`] per
//!   file (32 bytes of index each), and at most [`heap_budget`] bytes of heap for an input of
//!   a given length (8 per byte plus 64 KiB);
//! - work linear in the input: each table entry is visited a bounded number of times and each
//!   sample once.
//!
//! `docs/SECURITY.md` records the budget and what fuzzing showed.
//!
//! `mux.rs` lays out a progressive file over stored samples; `moov.rs` and `fragment.rs` read
//! movie and fragment boxes, `boxes.rs` walks boxes within a budget.

mod boxes;
mod fragment;
mod moov;
mod mux;

pub use boxes::{box_header, top_level_box, Mp4Error, MAX_BOX_LEN};
pub use fragment::fragment_samples;
pub use moov::{heap_budget, read_file, read_init, read_moov, DemuxedTrack, FILE_BYTES_PER_SAMPLE, MAX_SAMPLES, MAX_SAMPLES_WITHOUT_FILE, MAX_TICKS};
pub use mux::{build, Piece, Progressive, ProgressiveTrack, SampleRef};

#[cfg(test)]
mod tests {
    use super::*;
    use super::mux::*;
    use crate::container::fmp4::Track;
    use crate::media::TrackKind;
    use bytes::Bytes;
    use crate::codec::aac::AacConfig;
    use crate::codec::avc::AvcConfig;
    use crate::container::fmp4::{init_segment, media_segment, TrackFragment};
    use crate::media::{Codec, MediaFrame, Timebase};
    use std::sync::Arc;

    use crate::container::ts::tests::{PPS, SPS};

    fn tracks() -> (Track, Track) {
        let avc = AvcConfig::from_parameter_sets(&SPS, &PPS).unwrap().to_bytes();
        let video = MediaFrame {
            track: TrackKind::Video,
            codec: Codec::H264,
            dts: 0,
            pts: 0,
            timebase: Timebase::MILLIS,
            keyframe: true,
            config: true,
            payload: avc,
        };
        let asc = Bytes::from(
            AacConfig {
                object_type: 2,
                frequency_index: 3,
                sample_rate: 48_000,
                channel_config: 2,
            }
            .to_bytes()
            .to_vec(),
        );
        let audio = MediaFrame {
            track: TrackKind::Audio,
            codec: Codec::Aac,
            dts: 0,
            pts: 0,
            timebase: Timebase::MILLIS,
            keyframe: true,
            config: true,
            payload: asc,
        };
        (Track::from_config(1, &video).unwrap(), Track::from_config(2, &audio).unwrap())
    }

    fn boxes(data: &[u8]) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut at = 0u64;
        while let Some((kind, _, len)) = box_header(&data[at as usize..]) {
            out.push((String::from_utf8_lossy(&kind).into_owned(), len));
            at += len.min(data.len() as u64 - at);
            if at as usize >= data.len() {
                break;
            }
        }
        out
    }

    fn find<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
        let mut data = data;
        for (depth, want) in path.iter().enumerate() {
            let mut at = 0;
            let mut found = None;
            while let Some((kind, h, len)) = box_header(&data[at..]) {
                let end = at + len as usize;
                if &&kind == want {
                    // Full boxes inside stbl and the sample entry list are not descended here.
                    found = Some(&data[at + h as usize..end]);
                    break;
                }
                at = end;
                if at >= data.len() {
                    break;
                }
            }
            data = found?;
            let _ = depth;
        }
        Some(data)
    }

    #[test]
    fn progressive_layout_points_at_the_samples() {
        let (video, audio) = tracks();
        // Two sources; video 25 fps with B-frame offsets, audio 1024-sample frames.
        let video_samples: Vec<SampleRef> = (0..50)
            .map(|i| SampleRef {
                dts: i * 3600,
                cts: if i % 3 == 0 { 7200 } else { 3600 },
                size: 100 + i as u32,
                key: i % 25 == 0,
                source: (i / 25) as u32,
                offset: 1000 + i as u64 * 300,
            })
            .collect();
        let audio_samples: Vec<SampleRef> = (0..94)
            .map(|i| SampleRef {
                dts: 480 + i * 1024,
                cts: 0,
                size: 10,
                key: true,
                source: 0,
                offset: 50_000 + i as u64 * 10,
            })
            .collect();
        let built = build(&[
            ProgressiveTrack {
                track: video.clone(),
                samples: video_samples.clone(),
                end: None,
            },
            ProgressiveTrack {
                track: audio,
                samples: audio_samples.clone(),
                end: None,
            },
        ]);
        let top = boxes(&built.header);
        assert_eq!(top.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(), vec!["ftyp", "moov", "mdat"]);
        let media: u64 = built.pieces.iter().map(|p| p.len as u64).sum();
        assert_eq!(built.len, built.header.len() as u64 + media);
        assert_eq!(top[2].1, media + 8, "mdat covers exactly the pieces");
        assert_eq!(built.pieces.len(), 50 + 94);
        // Interleaved by time: the first pieces are the first video and audio samples.
        assert_eq!(
            built.pieces[0],
            Piece {
                source: 0,
                offset: 1000,
                len: 100
            }
        );
        // stco entries point into the mdat in piece order.
        let moov = find(&built.header, &[b"moov"]).unwrap();
        let trak = find(moov, &[b"trak"]).unwrap();
        let stbl = find(trak, &[b"mdia", b"minf", b"stbl"]).unwrap();
        let stco = find(stbl, &[b"stco"]).unwrap();
        let count = u32::from_be_bytes(stco[4..8].try_into().unwrap()) as usize;
        assert_eq!(count, 50);
        let offsets: Vec<u64> = stco[8..].chunks(4).map(|c| u32::from_be_bytes(c.try_into().unwrap()) as u64).collect();
        let mut expected = built.header.len() as u64;
        let mut video_offsets = Vec::new();
        for piece in &built.pieces {
            if video_samples.iter().any(|s| s.source == piece.source && s.offset == piece.offset) {
                video_offsets.push(expected);
            }
            expected += piece.len as u64;
        }
        assert_eq!(offsets, video_offsets);
        let stss = find(stbl, &[b"stss"]).unwrap();
        assert_eq!(&stss[4..], &[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 26]);
        // Video is shown from its first composition time (80 ms); audio from 10 ms. So the
        // movie starts at 10 ms: video gets a 70 ms empty edit, then skips its 80 ms offset.
        let elst = find(trak, &[b"edts", b"elst"]).unwrap();
        assert_eq!(u32::from_be_bytes(elst[4..8].try_into().unwrap()), 2);
        assert_eq!(u32::from_be_bytes(elst[8..12].try_into().unwrap()), 70);
        assert_eq!(i32::from_be_bytes(elst[12..16].try_into().unwrap()), -1);
        assert_eq!(i32::from_be_bytes(elst[24..28].try_into().unwrap()), 7200);
        assert_eq!(built.duration_ms, 2005, "audio ends last: 94 * 1024 / 48 kHz after the movie start");
    }

    #[test]
    fn av1_and_opus_tracks_read_back_from_their_init_segment() {
        let config = |track: TrackKind, codec: Codec, payload: Vec<u8>| MediaFrame { track, codec, dts: 0, pts: 0, timebase: Timebase::MILLIS, keyframe: true, config: true, payload: Bytes::from(payload) };
        let video = Track::from_config(1, &config(TrackKind::Video, Codec::Av1, crate::codec::av1::sample::AV1C_320X240.to_vec())).unwrap();
        let head = crate::codec::opus::OpusHead { channels: 2, pre_skip: 312, input_sample_rate: 44_100, output_gain: 0, mapping_family: 0, mapping: Vec::new() };
        let audio = Track::from_config(2, &config(TrackKind::Audio, Codec::Opus, head.to_bytes())).unwrap();
        assert_eq!((video.width, video.height, video.codec_string()), (320, 240, "av01.0.00M.08".to_string()));
        assert_eq!((audio.timescale, audio.channels, audio.codec_string()), (48_000, 2, "opus".to_string()));
        let init = init_segment(&[video.clone(), audio.clone()]);
        let read = super::read_init(&init).unwrap();
        assert_eq!(read, vec![video, audio]);
        // Not an OpusHead: no track, rather than a wrong one.
        assert!(Track::from_config(2, &config(TrackKind::Audio, Codec::Opus, vec![1, 2, 3])).is_none());
    }

    #[test]
    fn a_caption_track_reads_back_from_its_init_segment_and_its_fragments() {
        let (video, audio) = tracks();
        let text = crate::container::timed_text::track(3);
        let init = init_segment(&[video.clone(), audio.clone(), text.clone()]);
        // Our repair reads the tracks back from the init segment, the caption track with them.
        assert_eq!(super::read_init(&init).unwrap(), vec![video, audio, text.clone()]);
        let cues = [crate::container::timed_text::Cue { start_ms: 1200, end_ms: 1700, text: "hello".into() }];
        let samples = crate::container::timed_text::samples_between(&cues, 1000, 2000);
        let segment = media_segment(1, &[TrackFragment { track: &text, frames: &samples, next_dts: Some(2000) }]);
        let moof_len = boxes(&segment)[1].1 as usize;
        let moof_at = boxes(&segment)[0].1 as usize;
        let (id, read) = fragment_samples(&segment[moof_at..moof_at + moof_len], moof_at as u64, 0).unwrap().remove(0);
        assert_eq!(id, 3);
        // Empty, the caption, empty again: 200 + 500 + 300 ms, every one a sync sample.
        let times: Vec<i64> = read.iter().map(|s| s.dts).collect();
        assert_eq!(times, vec![1000, 1200, 1700]);
        assert!(read.iter().all(|s| s.key));
        let shown: Vec<&str> = read.iter().map(|s| crate::container::timed_text::text_of(&segment[s.offset as usize..(s.offset + s.size as u64) as usize]).unwrap()).collect();
        assert_eq!(shown, vec!["", "hello", ""]);
    }

    #[test]
    fn fragments_read_back_as_written() {
        let (video, audio) = tracks();
        let init = init_segment(&[video.clone(), audio.clone()]);
        let frame = |track: TrackKind, codec: Codec, dts: i64, cts: i64, key: bool, size: usize| {
            Arc::new(MediaFrame {
                track,
                codec,
                dts,
                pts: dts + cts,
                timebase: Timebase::MILLIS,
                keyframe: key,
                config: false,
                payload: Bytes::from(vec![7u8; size]),
            })
        };
        let v: Vec<_> = (0..10).map(|i| frame(TrackKind::Video, Codec::H264, 1000 + i * 40, 80, i == 0, 500 + i as usize)).collect();
        let a: Vec<_> = (0..19).map(|i| frame(TrackKind::Audio, Codec::Aac, 1000 + i * 21, 0, true, 20)).collect();
        let segment = media_segment(
            1,
            &[
                TrackFragment {
                    track: &video,
                    frames: &v,
                    next_dts: Some(1400),
                },
                TrackFragment {
                    track: &audio,
                    frames: &a,
                    next_dts: None,
                },
            ],
        );
        let mut file = init.to_vec();
        let segment_at = file.len() as u64;
        file.extend_from_slice(&segment);
        // Walk the file's top-level boxes, read the moof.
        let mut at = segment_at;
        let mut found = None;
        while let Some((kind, _, len)) = box_header(&file[at as usize..]) {
            if &kind == b"moof" {
                found = fragment_samples(&file[at as usize..(at + len) as usize], at, 3).ok();
            }
            at += len;
            if at as usize >= file.len() {
                break;
            }
        }
        let tracks = found.expect("moof parsed");
        assert_eq!(tracks.len(), 2);
        let (id, samples) = &tracks[0];
        assert_eq!(*id, 1);
        assert_eq!(samples.len(), 10);
        assert_eq!(samples[0].dts, 90_000);
        assert_eq!(samples[1].dts, 90_000 + 3600);
        assert_eq!(samples[0].cts, 7200);
        assert!(samples[0].key && !samples[1].key);
        for (sample, frame) in samples.iter().zip(&v) {
            assert_eq!(&file[sample.offset as usize..(sample.offset + sample.size as u64) as usize], &frame.payload[..]);
            assert_eq!(sample.source, 3);
        }
        let (id, samples) = &tracks[1];
        assert_eq!((*id, samples.len(), samples[0].dts), (2, 19, 48_000));
        // A truncated moof is refused, not misread.
        let moof_at = segment_at as usize + boxes(&segment)[0].1 as usize;
        assert!(fragment_samples(&file[moof_at..moof_at + 40], moof_at as u64, 0).is_err());
    }

    #[test]
    fn progressive_layout_reads_back() {
        let (video, audio) = tracks();
        let video_samples: Vec<SampleRef> = (0..30)
            .map(|i| SampleRef {
                dts: i * 3600,
                cts: if i % 2 == 0 { 3600 } else { 0 },
                size: 50 + i as u32,
                key: i % 10 == 0,
                source: 0,
                offset: 0,
            })
            .collect();
        let audio_samples: Vec<SampleRef> = (0..50)
            .map(|i| SampleRef {
                dts: i * 1024,
                cts: 0,
                size: 9,
                key: true,
                source: 0,
                offset: 0,
            })
            .collect();
        let built = build(&[
            ProgressiveTrack {
                track: video.clone(),
                samples: video_samples.clone(),
                end: None,
            },
            ProgressiveTrack {
                track: audio.clone(),
                samples: audio_samples.clone(),
                end: None,
            },
        ]);
        let top = boxes(&built.header);
        let moov_at = top[0].1 as usize;
        let moov = &built.header[moov_at..moov_at + top[1].1 as usize];
        let read = read_moov(moov).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].track.codec, crate::media::Codec::H264);
        assert_eq!(read[0].track.config, video.config);
        assert_eq!(read[1].track.config, audio.config);
        assert_eq!((read[1].track.sample_rate, read[1].track.channels), (48_000, 2));
        // Offsets: where build placed each sample in the file.
        let mut expected = std::collections::HashMap::new();
        let mut at = built.header.len() as u64;
        for piece in &built.pieces {
            expected.entry(piece.len).or_insert_with(Vec::new).push(at);
            at += piece.len as u64;
        }
        for (got, want) in read[0].samples.iter().zip(&video_samples) {
            assert_eq!((got.dts, got.cts, got.size, got.key), (want.dts, want.cts, want.size, want.key));
            assert!(expected[&got.size].contains(&got.offset));
        }
        assert_eq!(read[1].samples.len(), 50);
        assert!(read[1].samples.iter().all(|s| s.key && s.size == 9));
        // Truncated or lying tables are errors, not panics.
        for cut in [8, 40, moov.len() / 2, moov.len() - 3] {
            let mut broken = moov[..cut].to_vec();
            broken[0..4].copy_from_slice(&(cut as u32).to_be_bytes());
            assert!(read_moov(&broken).is_err(), "cut at {cut}");
        }
        // The whole file (media bytes as zeros) reads the same, checked against its length.
        let mut file = built.header.to_vec();
        file.resize(built.len as usize, 0);
        let whole = read_file(&file).unwrap();
        assert_eq!(whole.iter().map(|t| &t.samples).collect::<Vec<_>>(), read.iter().map(|t| &t.samples).collect::<Vec<_>>());
        // Cut before its last sample, it is refused and says where.
        file.truncate(file.len() - 1);
        let error = read_file(&file).unwrap_err();
        assert!(error.to_string().contains("cannot fit in a file") || error.to_string().contains("lies outside the file"), "{error}");
    }

    /// Reads `data` both ways the node does and checks what a reader promises: as file ingest
    /// does (`read_file`), and as DVR repair does (walk the top-level boxes with `box_header`,
    /// read each `moof` with `fragment_samples`). Returns how many samples were described.
    /// The fuzz target `mp4` does the same and also checks the heap budget.
    fn read_both_ways(data: &[u8]) -> usize {
        crate::fuzzing::mp4_ingest(data) + crate::fuzzing::mp4_repair(data)
    }

    /// The fuzz target's seeds and every input it ever failed on (`protocols/fuzz/seeds/mp4`),
    /// replayed on stable: none panics, each is read within the budget.
    /// The seeds in `protocols/fuzz/seeds/mp4`, built in as byte vectors (protocols reads no
    /// files): add an input the fuzz target ever fails on there and here.
    const SEEDS: &[(&str, &[u8])] = &[
        ("co64_offset_overflow.bin", include_bytes!("../../../fuzz/seeds/mp4/co64_offset_overflow.bin")),
        ("ctts_40_entries.bin", include_bytes!("../../../fuzz/seeds/mp4/ctts_40_entries.bin")),
        ("ctts_count_4g_305.bin", include_bytes!("../../../fuzz/seeds/mp4/ctts_count_4g_305.bin")),
        ("empty_trun_short_body.bin", include_bytes!("../../../fuzz/seeds/mp4/empty_trun_short_body.bin")),
        ("stsc_run_per_chunk.bin", include_bytes!("../../../fuzz/seeds/mp4/stsc_run_per_chunk.bin")),
        ("stsz_uniform_10m_281.bin", include_bytes!("../../../fuzz/seeds/mp4/stsz_uniform_10m_281.bin")),
        ("stts_40_entries.bin", include_bytes!("../../../fuzz/seeds/mp4/stts_40_entries.bin")),
        ("stts_count_4g_delta_4g.bin", include_bytes!("../../../fuzz/seeds/mp4/stts_count_4g_delta_4g.bin")),
        ("tfdt_i64_max.bin", include_bytes!("../../../fuzz/seeds/mp4/tfdt_i64_max.bin")),
        ("tfdt_near_limit.bin", include_bytes!("../../../fuzz/seeds/mp4/tfdt_near_limit.bin")),
        ("trun_negative_offset_104.bin", include_bytes!("../../../fuzz/seeds/mp4/trun_negative_offset_104.bin")),
        ("valid_fragmented.mp4", include_bytes!("../../../fuzz/seeds/mp4/valid_fragmented.mp4")),
        ("valid_progressive.mp4", include_bytes!("../../../fuzz/seeds/mp4/valid_progressive.mp4")),
    ];

    #[test]
    fn fuzz_corpus_replays() {
        let mut described = Vec::new();
        for (name, data) in SEEDS {
            described.push((*name, read_both_ways(data)));
        }
        // The valid seeds (a file made by `build`, a segment made by the fMP4 writer) read in
        // full: 6 video + 8 audio samples, 4 video + 6 audio samples.
        assert!(described.contains(&("valid_progressive.mp4", 14)) && described.contains(&("valid_fragmented.mp4", 10)), "{described:?}");
    }
}
