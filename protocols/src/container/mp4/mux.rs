//! A progressive MP4 (`ftyp`, `moov`, one `mdat`) laid out over samples stored elsewhere:
//! the header is built, the media bytes are named by file and offset (see the module docs).

use crate::container::fmp4::{boxed, full_box, write_mvhd, write_trak_with, Track};
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
    /// Where the last sample ends (its decode time plus duration, in the track's timescale);
    /// `None` repeats the duration before it (a caption track says when its last text goes).
    pub end: Option<i64>,
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

fn durations(samples: &[SampleRef], end: Option<i64>) -> Vec<u32> {
    let mut out: Vec<u32> = samples.windows(2).map(|w| (w[1].dts - w[0].dts).clamp(0, u32::MAX as i64) as u32).collect();
    if let Some(last) = samples.last() {
        let repeated = out.last().copied().unwrap_or(0);
        out.push(end.map(|end| (end - last.dts).clamp(0, u32::MAX as i64) as u32).unwrap_or(repeated));
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
    let d = durations(samples, track.end);
    let end = samples.last().map(|s| s.dts + *d.last().unwrap_or(&0) as i64).unwrap_or(0);
    let shown = seconds(&track.track, end) - seconds(&track.track, samples[0].dts) - seconds(&track.track, samples[0].cts.max(0) as i64);
    ((presentation_start(track) - origin + shown.max(0.0)) * MOVIE_TIMESCALE as f64).round().max(0.0) as u64
}

fn moov(tracks: &[&ProgressiveTrack], positions: &[Vec<u64>], origin: f64, base: u64, wide: bool) -> BytesMut {
    let mut o = BytesMut::new();
    let movie_duration = tracks.iter().map(|t| track_movie_duration(t, origin)).max().unwrap_or(0);
    boxed(&mut o, b"moov", |o| {
        write_mvhd(o, MOVIE_TIMESCALE, movie_duration.min(u32::MAX as u64) as u32, tracks.iter().map(|t| t.track.id).max().unwrap_or(0) + 1);
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
    let durations = durations(samples, progressive.end);
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
