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

mod boxes;
mod fragment;
mod moov;

pub use boxes::{box_header, top_level_box, Mp4Error, MAX_BOX_LEN};
pub use fragment::fragment_samples;
pub use moov::{heap_budget, read_file, read_moov, DemuxedTrack, FILE_BYTES_PER_SAMPLE, MAX_SAMPLES, MAX_SAMPLES_WITHOUT_FILE, MAX_TICKS};

use crate::fmp4::{boxed, full_box, write_trak_with, Track, MATRIX};
use crate::media::TrackKind;
use bytes::{BufMut, Bytes, BytesMut};

/// One sample stored somewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRef {
    /// Decode time in the track's timescale.
    pub dts: i64,
    /// Composition offset (pts - dts) in the track's timescale.
    pub cts: i32,
    /// Size in bytes.
    pub size: u32,
    /// Sync sample (keyframe; every audio sample is one).
    pub key: bool,
    /// Which source holds it (an index the caller defines, e.g. the segment).
    pub source: u32,
    /// Byte offset in that source.
    pub offset: u64,
}

/// A track and its samples, in decode order.
#[derive(Debug, Clone)]
pub struct ProgressiveTrack {
    /// The track (codec, timescale, configuration).
    pub track: Track,
    /// Samples in decode order.
    pub samples: Vec<SampleRef>,
}

/// A byte range of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// The source.
    pub source: u32,
    /// Offset in the source.
    pub offset: u64,
    /// Length.
    pub len: u32,
}

/// A laid-out progressive MP4: `header` (ftyp, moov, mdat header) then `pieces` in order.
#[derive(Debug, Clone)]
pub struct Progressive {
    /// Everything before the media bytes.
    pub header: Bytes,
    /// The media bytes, in file order.
    pub pieces: Vec<Piece>,
    /// Total file length.
    pub len: u64,
    /// Presentation duration in milliseconds.
    pub duration_ms: u64,
}

const MOVIE_TIMESCALE: u32 = 1000;

fn seconds(track: &Track, ticks: i64) -> f64 {
    ticks as f64 / track.timescale.max(1) as f64
}

fn durations(samples: &[SampleRef]) -> Vec<u32> {
    let mut out: Vec<u32> = samples.windows(2).map(|w| (w[1].dts - w[0].dts).clamp(0, u32::MAX as i64) as u32).collect();
    if !samples.is_empty() {
        out.push(out.last().copied().unwrap_or(0));
    }
    out
}

/// Lays out `tracks` (empty tracks are left out) as one progressive MP4.
pub fn build(tracks: &[ProgressiveTrack]) -> Progressive {
    let tracks: Vec<&ProgressiveTrack> = tracks.iter().filter(|t| !t.samples.is_empty()).collect();
    // Interleave by decode time.
    let mut order: Vec<(f64, usize, usize)> = Vec::new();
    for (t, track) in tracks.iter().enumerate() {
        for (i, sample) in track.samples.iter().enumerate() {
            order.push((seconds(&track.track, sample.dts), t, i));
        }
    }
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let media_len: u64 = order.iter().map(|&(_, t, i)| tracks[t].samples[i].size as u64).sum();
    let mut positions: Vec<Vec<u64>> = tracks.iter().map(|t| vec![0; t.samples.len()]).collect();
    let mut at = 0u64;
    for &(_, t, i) in &order {
        positions[t][i] = at;
        at += tracks[t].samples[i].size as u64;
    }
    let origin = tracks.iter().map(|t| presentation_start(t)).fold(f64::INFINITY, f64::min);
    let origin = if origin.is_finite() { origin } else { 0.0 };

    let ftyp = {
        let mut o = BytesMut::new();
        boxed(&mut o, b"ftyp", |o| {
            o.put_slice(b"isom");
            o.put_u32(0x200);
            for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
                o.put_slice(brand);
            }
        });
        o
    };
    let large = media_len + 16 > u32::MAX as u64;
    let mdat_header_len: u64 = if large { 16 } else { 8 };
    // Chunk offsets do not change the moov's size: measure once, then write for real.
    let probe = moov(&tracks, &positions, origin, 0, false);
    let wide = ftyp.len() as u64 + probe.len() as u64 + mdat_header_len + media_len > u32::MAX as u64;
    let probe = if wide { moov(&tracks, &positions, origin, 0, true) } else { probe };
    let base = ftyp.len() as u64 + probe.len() as u64 + mdat_header_len;
    let moov_box = moov(&tracks, &positions, origin, base, wide);
    debug_assert_eq!(moov_box.len(), probe.len());

    let mut header = BytesMut::with_capacity(base as usize);
    header.put_slice(&ftyp);
    header.put_slice(&moov_box);
    if large {
        header.put_u32(1);
        header.put_slice(b"mdat");
        header.put_u64(media_len + 16);
    } else {
        header.put_u32((media_len + 8) as u32);
        header.put_slice(b"mdat");
    }
    let pieces = order
        .iter()
        .map(|&(_, t, i)| {
            let s = &tracks[t].samples[i];
            Piece {
                source: s.source,
                offset: s.offset,
                len: s.size,
            }
        })
        .collect();
    let duration_ms = tracks.iter().map(|t| track_movie_duration(t, origin)).max().unwrap_or(0);
    Progressive {
        len: base + media_len,
        header: header.freeze(),
        pieces,
        duration_ms,
    }
}

/// When a track's first sample is shown, in seconds of its media time: its decode time plus
/// its composition offset (the edit list removes that offset).
fn presentation_start(track: &ProgressiveTrack) -> f64 {
    let first = &track.samples[0];
    seconds(&track.track, first.dts + first.cts.max(0) as i64)
}

/// The track's end on the movie timeline, in movie timescale units.
fn track_movie_duration(track: &ProgressiveTrack, origin: f64) -> u64 {
    let samples = &track.samples;
    let d = durations(samples);
    let end = samples.last().map(|s| s.dts + *d.last().unwrap_or(&0) as i64).unwrap_or(0);
    let shown = seconds(&track.track, end) - seconds(&track.track, samples[0].dts) - seconds(&track.track, samples[0].cts.max(0) as i64);
    ((presentation_start(track) - origin + shown.max(0.0)) * MOVIE_TIMESCALE as f64).round().max(0.0) as u64
}

fn moov(tracks: &[&ProgressiveTrack], positions: &[Vec<u64>], origin: f64, base: u64, wide: bool) -> BytesMut {
    let mut o = BytesMut::new();
    let movie_duration = tracks.iter().map(|t| track_movie_duration(t, origin)).max().unwrap_or(0);
    boxed(&mut o, b"moov", |o| {
        full_box(o, b"mvhd", 0, 0, |o| {
            o.put_u32(0);
            o.put_u32(0);
            o.put_u32(MOVIE_TIMESCALE);
            o.put_u32(movie_duration.min(u32::MAX as u64) as u32);
            o.put_u32(0x0001_0000);
            o.put_u16(0x0100);
            o.put_slice(&[0; 10]);
            for m in MATRIX {
                o.put_u32(m);
            }
            o.put_slice(&[0; 24]);
            o.put_u32(tracks.iter().map(|t| t.track.id).max().unwrap_or(0) + 1);
        });
        for (track, positions) in tracks.iter().zip(positions) {
            trak(o, track, positions, origin, base, wide);
        }
    });
    o
}

fn trak(o: &mut BytesMut, progressive: &ProgressiveTrack, positions: &[u64], origin: f64, base: u64, wide: bool) {
    let track = &progressive.track;
    let samples = &progressive.samples;
    let video = track.kind() == TrackKind::Video;
    let durations = durations(samples);
    let media_duration: u64 = durations.iter().map(|&d| d as u64).sum();
    let first_cts = samples[0].cts.max(0) as i64;
    let delay_ms = ((presentation_start(progressive) - origin) * MOVIE_TIMESCALE as f64).round().max(0.0) as u64;
    let shown_ms = ((media_duration as f64 - first_cts as f64).max(0.0) / track.timescale.max(1) as f64 * MOVIE_TIMESCALE as f64).round() as u64;
    let edits = |o: &mut BytesMut| {
        boxed(o, b"edts", |o| {
            full_box(o, b"elst", 0, 0, |o| {
                o.put_u32(if delay_ms > 0 { 2 } else { 1 });
                if delay_ms > 0 {
                    o.put_u32(delay_ms.min(u32::MAX as u64) as u32);
                    o.put_i32(-1);
                    o.put_u32(0x0001_0000);
                }
                o.put_u32(shown_ms.min(u32::MAX as u64) as u32);
                o.put_i32(first_cts as i32);
                o.put_u32(0x0001_0000);
            });
        });
    };
    let tables = |o: &mut BytesMut| {
        // stts: run-length durations.
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for &d in &durations {
            match runs.last_mut() {
                Some((count, delta)) if *delta == d => *count += 1,
                _ => runs.push((1, d)),
            }
        }
        full_box(o, b"stts", 0, 0, |o| {
            o.put_u32(runs.len() as u32);
            for (count, delta) in &runs {
                o.put_u32(*count);
                o.put_u32(*delta);
            }
        });
        if samples.iter().any(|s| s.cts != 0) {
            let mut runs: Vec<(u32, i32)> = Vec::new();
            for s in samples {
                match runs.last_mut() {
                    Some((count, offset)) if *offset == s.cts => *count += 1,
                    _ => runs.push((1, s.cts)),
                }
            }
            full_box(o, b"ctts", 1, 0, |o| {
                o.put_u32(runs.len() as u32);
                for (count, offset) in &runs {
                    o.put_u32(*count);
                    o.put_i32(*offset);
                }
            });
        }
        if video {
            let keys: Vec<u32> = samples.iter().enumerate().filter(|(_, s)| s.key).map(|(i, _)| i as u32 + 1).collect();
            full_box(o, b"stss", 0, 0, |o| {
                o.put_u32(keys.len() as u32);
                for k in &keys {
                    o.put_u32(*k);
                }
            });
        }
        full_box(o, b"stsc", 0, 0, |o| {
            o.put_u32(1);
            o.put_u32(1);
            o.put_u32(1);
            o.put_u32(1);
        });
        full_box(o, b"stsz", 0, 0, |o| {
            o.put_u32(0);
            o.put_u32(samples.len() as u32);
            for s in samples {
                o.put_u32(s.size);
            }
        });
        if wide {
            full_box(o, b"co64", 0, 0, |o| {
                o.put_u32(positions.len() as u32);
                for p in positions {
                    o.put_u64(base + p);
                }
            });
        } else {
            full_box(o, b"stco", 0, 0, |o| {
                o.put_u32(positions.len() as u32);
                for p in positions {
                    o.put_u32((base + p) as u32);
                }
            });
        }
    };
    let duration = (delay_ms + shown_ms).min(u32::MAX as u64) as u32;
    write_trak_with(o, track, duration, media_duration.min(u32::MAX as u64) as u32, edits, tables);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aac::AacConfig;
    use crate::avc::AvcConfig;
    use crate::fmp4::{init_segment, media_segment, TrackFragment};
    use crate::media::{Codec, MediaFrame, Timebase};
    use std::sync::Arc;

    use crate::ts::tests::{PPS, SPS};

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
            },
            ProgressiveTrack {
                track: audio,
                samples: audio_samples.clone(),
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
            },
            ProgressiveTrack {
                track: audio.clone(),
                samples: audio_samples.clone(),
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
        let mut described = 0;
        if let Ok(tracks) = read_file(data) {
            let samples = tracks.iter().map(|t| t.samples.len()).sum::<usize>();
            assert!(samples as u64 <= data.len() as u64 / FILE_BYTES_PER_SAMPLE, "{samples} samples in {} bytes", data.len());
            for s in tracks.iter().flat_map(|t| &t.samples) {
                assert!(s.offset + s.size as u64 <= data.len() as u64, "sample outside the file");
                assert!((0..MAX_TICKS).contains(&s.dts));
            }
            described += samples;
        }
        let mut at = 0u64;
        let len = data.len() as u64;
        while at + 8 <= len {
            let Some((kind, _, size)) = box_header(&data[at as usize..]) else { break };
            if size == u64::MAX || at + size > len {
                break;
            }
            if &kind == b"moof" {
                if let Ok(fragments) = fragment_samples(&data[at as usize..(at + size) as usize], at, 0) {
                    for s in fragments.iter().flat_map(|(_, s)| s) {
                        assert!(s.offset.checked_add(s.size as u64).is_some() && s.offset >= at + size);
                        assert!((0..MAX_TICKS).contains(&s.dts));
                        described += 1;
                    }
                }
            }
            at += size;
        }
        described
    }

    /// The fuzz target's seeds and every input it ever failed on (`protocols/fuzz/seeds/mp4`),
    /// replayed on stable: none panics, each is read within the budget.
    /// The seeds in `protocols/fuzz/seeds/mp4`, built in as byte vectors (protocols reads no
    /// files): add an input the fuzz target ever fails on there and here.
    const SEEDS: &[(&str, &[u8])] = &[
        ("co64_offset_overflow.bin", include_bytes!("../fuzz/seeds/mp4/co64_offset_overflow.bin")),
        ("ctts_40_entries.bin", include_bytes!("../fuzz/seeds/mp4/ctts_40_entries.bin")),
        ("ctts_count_4g_305.bin", include_bytes!("../fuzz/seeds/mp4/ctts_count_4g_305.bin")),
        ("empty_trun_short_body.bin", include_bytes!("../fuzz/seeds/mp4/empty_trun_short_body.bin")),
        ("stsc_run_per_chunk.bin", include_bytes!("../fuzz/seeds/mp4/stsc_run_per_chunk.bin")),
        ("stsz_uniform_10m_281.bin", include_bytes!("../fuzz/seeds/mp4/stsz_uniform_10m_281.bin")),
        ("stts_40_entries.bin", include_bytes!("../fuzz/seeds/mp4/stts_40_entries.bin")),
        ("stts_count_4g_delta_4g.bin", include_bytes!("../fuzz/seeds/mp4/stts_count_4g_delta_4g.bin")),
        ("tfdt_i64_max.bin", include_bytes!("../fuzz/seeds/mp4/tfdt_i64_max.bin")),
        ("tfdt_near_limit.bin", include_bytes!("../fuzz/seeds/mp4/tfdt_near_limit.bin")),
        ("trun_negative_offset_104.bin", include_bytes!("../fuzz/seeds/mp4/trun_negative_offset_104.bin")),
        ("valid_fragmented.mp4", include_bytes!("../fuzz/seeds/mp4/valid_fragmented.mp4")),
        ("valid_progressive.mp4", include_bytes!("../fuzz/seeds/mp4/valid_progressive.mp4")),
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
