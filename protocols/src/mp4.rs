//! Progressive MP4 (ISO/IEC 14496-12) assembled from samples that live elsewhere, and a reader
//! for the fragments of fragmented MP4 files.
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
//! ## Fragment reader
//! [`box_header`] and [`fragment_samples`] read `moof` boxes (`tfhd`, `tfdt`, `trun`) back into
//! sample references; the DVR uses them to rebuild the sample table of a recording cut short
//! by a crash.

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

/// A box header at the start of `data`: (type, header length, total length). `None` when
/// fewer bytes than a header are given or the size is impossible; a size of 0 ("to the end of
/// the file") is reported as `u64::MAX`.
pub fn box_header(data: &[u8]) -> Option<([u8; 4], u64, u64)> {
    if data.len() < 8 {
        return None;
    }
    let size = u32::from_be_bytes(data[0..4].try_into().ok()?) as u64;
    let kind: [u8; 4] = data[4..8].try_into().ok()?;
    match size {
        0 => Some((kind, 8, u64::MAX)),
        1 => {
            let large = u64::from_be_bytes(data.get(8..16)?.try_into().ok()?);
            (large >= 16).then_some((kind, 16, large))
        }
        2..=7 => None,
        _ => Some((kind, 8, size)),
    }
}

/// The first top-level box of `kind` in a whole file's bytes (header included); an error
/// when a box runs past the end.
pub fn top_level_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, Mp4Error> {
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let (found, _, len) = box_header(&data[at..]).ok_or_else(|| Mp4Error::Malformed(format!("bad box header at {at}")))?;
        let len = if len == u64::MAX { (data.len() - at) as u64 } else { len };
        let end = at
            .checked_add(len as usize)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| Mp4Error::Malformed("file is cut short".into()))?;
        if &found == kind {
            return Ok(Some(&data[at..end]));
        }
        at = end;
    }
    Ok(None)
}

/// The samples described by one `moof` box (its whole bytes, header included) found at
/// `moof_offset` in its file, per `track_ID`. Sample offsets are absolute file offsets.
/// Returns `None` for a `moof` this reader does not understand (it only needs to read what the
/// fMP4 writer of this crate produces, but it checks every length).
pub fn fragment_samples(moof: &[u8], moof_offset: u64, source: u32) -> Option<Vec<(u32, Vec<SampleRef>)>> {
    let (kind, header, total) = box_header(moof)?;
    if &kind != b"moof" || total > moof.len() as u64 {
        return None;
    }
    let mut out = Vec::new();
    let mut at = header as usize;
    while at < total as usize {
        let (kind, h, len) = box_header(&moof[at..])?;
        let end = at.checked_add(len as usize).filter(|&e| e <= total as usize)?;
        if &kind == b"traf" {
            out.push(traf(&moof[at + h as usize..end], moof_offset, source)?);
        }
        at = end;
    }
    Some(out)
}

fn traf(body: &[u8], moof_offset: u64, source: u32) -> Option<(u32, Vec<SampleRef>)> {
    let mut track_id = None;
    let mut base_dts = 0i64;
    let mut samples = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let (kind, h, len) = box_header(&body[at..])?;
        let end = at.checked_add(len as usize).filter(|&e| e <= body.len())?;
        let content = &body[at + h as usize..end];
        match &kind {
            b"tfhd" => {
                track_id = Some(u32::from_be_bytes(content.get(4..8)?.try_into().ok()?));
                let flags = u32::from_be_bytes(content.get(0..4)?.try_into().ok()?) & 0xff_ffff;
                // Only default-base-is-moof without other defaults is written here.
                if flags & !0x02_0000 != 0 {
                    return None;
                }
            }
            b"tfdt" => {
                base_dts = match content.first()? {
                    1 => u64::from_be_bytes(content.get(4..12)?.try_into().ok()?) as i64,
                    _ => u32::from_be_bytes(content.get(4..8)?.try_into().ok()?) as i64,
                };
            }
            b"trun" => {
                let flags = u32::from_be_bytes(content.get(0..4)?.try_into().ok()?) & 0xff_ffff;
                if flags != 0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800 {
                    return None;
                }
                let count = u32::from_be_bytes(content.get(4..8)?.try_into().ok()?) as usize;
                let data_offset = i32::from_be_bytes(content.get(8..12)?.try_into().ok()?) as i64;
                let mut offset = (moof_offset as i64).checked_add(data_offset)? as u64;
                let mut dts = base_dts;
                let entries = content.get(12..12 + count.checked_mul(16)?)?;
                for entry in entries.chunks_exact(16) {
                    let duration = u32::from_be_bytes(entry[0..4].try_into().ok()?) as i64;
                    let size = u32::from_be_bytes(entry[4..8].try_into().ok()?);
                    let flags = u32::from_be_bytes(entry[8..12].try_into().ok()?);
                    let cts = i32::from_be_bytes(entry[12..16].try_into().ok()?);
                    samples.push(SampleRef {
                        dts,
                        cts,
                        size,
                        key: flags & 0x0001_0000 == 0,
                        source,
                        offset,
                    });
                    dts += duration;
                    offset += size as u64;
                }
            }
            _ => {}
        }
        at = end;
    }
    Some((track_id?, samples))
}

/// A track read from a progressive MP4's `moov`.
#[derive(Debug, Clone)]
pub struct DemuxedTrack {
    /// Codec, timescale and configuration.
    pub track: Track,
    /// Samples in decode order (`source` is 0; offsets are file offsets).
    pub samples: Vec<SampleRef>,
}

/// Why a `moov` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mp4Error {
    /// A box is cut short or inconsistent.
    #[error("malformed MP4: {0}")]
    Malformed(String),
    /// No track Estuary can carry (H.264, H.265, AAC).
    #[error("no H.264, H.265 or AAC track")]
    NoTracks,
    /// Fragmented files are not read here.
    #[error("fragmented MP4 (moof) is not supported as a source")]
    Fragmented,
}

/// A box's children: (type, body).
type Boxes<'a> = Vec<([u8; 4], &'a [u8])>;

fn children(data: &[u8]) -> Result<Boxes<'_>, Mp4Error> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let (kind, h, len) = box_header(&data[at..]).ok_or_else(|| Mp4Error::Malformed(format!("bad box header at {at}")))?;
        let len = if len == u64::MAX { (data.len() - at) as u64 } else { len };
        let end = at
            .checked_add(len as usize)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| Mp4Error::Malformed(format!("box {} overruns its parent", String::from_utf8_lossy(&kind))))?;
        out.push((kind, &data[at + h as usize..end]));
        at = end;
    }
    Ok(out)
}

fn child<'a>(list: &[([u8; 4], &'a [u8])], kind: &[u8; 4]) -> Option<&'a [u8]> {
    list.iter().find(|(k, _)| k == kind).map(|(_, b)| *b)
}

fn be32(data: &[u8], at: usize) -> Result<u32, Mp4Error> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| Mp4Error::Malformed("table cut short".into()))
}

fn be64(data: &[u8], at: usize) -> Result<u64, Mp4Error> {
    data.get(at..at + 8)
        .map(|b| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .ok_or_else(|| Mp4Error::Malformed("table cut short".into()))
}

/// Entry count of a full box table, checked against what the box can hold.
fn count(body: &[u8], entry: usize) -> Result<usize, Mp4Error> {
    let n = be32(body, 4)? as usize;
    if n.checked_mul(entry).is_none_or(|bytes| bytes > body.len().saturating_sub(8)) {
        return Err(Mp4Error::Malformed(format!("table claims {n} entries")));
    }
    Ok(n)
}

/// Reads the tracks Estuary can carry from a progressive MP4's `moov` box (whole box,
/// header included). Other tracks (subtitles, data) are skipped.
pub fn read_moov(moov: &[u8]) -> Result<Vec<DemuxedTrack>, Mp4Error> {
    use crate::media::Codec;
    let top = children(moov)?;
    let body = child(&top, b"moov").ok_or_else(|| Mp4Error::Malformed("no moov".into()))?;
    let parts = children(body)?;
    if child(&parts, b"mvex").is_some() {
        return Err(Mp4Error::Fragmented);
    }
    let mut tracks = Vec::new();
    for (kind, trak) in &parts {
        if kind != b"trak" {
            continue;
        }
        let trak = children(trak)?;
        let Some(mdia) = child(&trak, b"mdia") else { continue };
        let mdia = children(mdia)?;
        let mdhd = child(&mdia, b"mdhd").ok_or_else(|| Mp4Error::Malformed("no mdhd".into()))?;
        let timescale = if mdhd.first() == Some(&1) { be32(mdhd, 20)? } else { be32(mdhd, 12)? };
        let Some(minf) = child(&mdia, b"minf") else { continue };
        let minf = children(minf)?;
        let Some(stbl) = child(&minf, b"stbl") else { continue };
        let stbl = children(stbl)?;
        let stsd = child(&stbl, b"stsd").ok_or_else(|| Mp4Error::Malformed("no stsd".into()))?;
        let entries = children(stsd.get(8..).unwrap_or_default())?;
        let Some((entry_kind, entry)) = entries.first() else { continue };
        let track = match entry_kind {
            b"avc1" | b"avc3" | b"hvc1" | b"hev1" => {
                let boxes = children(entry.get(78..).unwrap_or_default())?;
                let (codec, config) = match entry_kind {
                    b"avc1" | b"avc3" => (Codec::H264, child(&boxes, b"avcC")),
                    _ => (Codec::H265, child(&boxes, b"hvcC")),
                };
                let Some(config) = config else { continue };
                let width = entry.get(24..26).map(|b| u16::from_be_bytes([b[0], b[1]]) as u32).unwrap_or(0);
                let height = entry.get(26..28).map(|b| u16::from_be_bytes([b[0], b[1]]) as u32).unwrap_or(0);
                Track {
                    id: tracks.len() as u32 + 1,
                    codec,
                    timescale,
                    config: Bytes::copy_from_slice(config),
                    width,
                    height,
                    channels: 0,
                    sample_rate: 0,
                }
            }
            b"mp4a" => {
                let boxes = children(entry.get(28..).unwrap_or_default())?;
                let Some(esds) = child(&boxes, b"esds") else { continue };
                let Some(asc) = esds_config(esds) else { continue };
                let Ok(aac) = crate::aac::AacConfig::parse(&asc) else { continue };
                Track {
                    id: tracks.len() as u32 + 1,
                    codec: Codec::Aac,
                    timescale,
                    config: Bytes::from(asc),
                    width: 0,
                    height: 0,
                    channels: aac.channel_config.max(1) as u16,
                    sample_rate: aac.sample_rate,
                }
            }
            _ => continue,
        };
        let samples = sample_table(&stbl, track.kind() == TrackKind::Audio)?;
        if !samples.is_empty() {
            tracks.push(DemuxedTrack { track, samples });
        }
    }
    if tracks.is_empty() {
        return Err(Mp4Error::NoTracks);
    }
    Ok(tracks)
}

/// The AudioSpecificConfig in an `esds` body (any descriptor length encoding).
fn esds_config(esds: &[u8]) -> Option<Vec<u8>> {
    fn descriptor(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *data.first()?;
        let mut len = 0usize;
        let mut at = 1;
        for _ in 0..4 {
            let b = *data.get(at)?;
            at += 1;
            len = (len << 7) | (b & 0x7f) as usize;
            if b & 0x80 == 0 {
                break;
            }
        }
        let body = data.get(at..at.checked_add(len)?)?;
        Some((tag, body, &data[at + len..]))
    }
    let (tag, es, _) = descriptor(esds.get(4..)?)?;
    if tag != 0x03 {
        return None;
    }
    let flags = *es.get(2)?;
    let mut at = 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + *es.get(at)? as usize;
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    let (tag, decoder, _) = descriptor(es.get(at..)?)?;
    if tag != 0x04 {
        return None;
    }
    let (tag, specific, _) = descriptor(decoder.get(13..)?)?;
    (tag == 0x05).then(|| specific.to_vec())
}

fn sample_table(stbl: &[([u8; 4], &[u8])], all_sync: bool) -> Result<Vec<SampleRef>, Mp4Error> {
    let missing = |name: &str| Mp4Error::Malformed(format!("no {name}"));
    let stsz = child(stbl, b"stsz").ok_or_else(|| missing("stsz"))?;
    let uniform = be32(stsz, 4)?;
    let n = be32(stsz, 8)? as usize;
    if uniform == 0 && n.checked_mul(4).is_none_or(|b| b > stsz.len().saturating_sub(12)) {
        return Err(Mp4Error::Malformed(format!("stsz claims {n} samples")));
    }
    if n > 10_000_000 {
        return Err(Mp4Error::Malformed(format!("{n} samples")));
    }
    let sizes: Vec<u32> = (0..n).map(|i| if uniform != 0 { Ok(uniform) } else { be32(stsz, 12 + 4 * i) }).collect::<Result<_, _>>()?;
    // Chunk offsets.
    let offsets: Vec<u64> = if let Some(stco) = child(stbl, b"stco") {
        (0..count(stco, 4)?).map(|i| be32(stco, 8 + 4 * i).map(u64::from)).collect::<Result<_, _>>()?
    } else {
        let co64 = child(stbl, b"co64").ok_or_else(|| missing("stco/co64"))?;
        (0..count(co64, 8)?).map(|i| be64(co64, 8 + 8 * i)).collect::<Result<_, _>>()?
    };
    // Samples per chunk, expanded.
    let stsc = child(stbl, b"stsc").ok_or_else(|| missing("stsc"))?;
    let runs: Vec<(u32, u32)> = (0..count(stsc, 12)?)
        .map(|i| Ok((be32(stsc, 8 + 12 * i)?, be32(stsc, 12 + 12 * i)?)))
        .collect::<Result<_, Mp4Error>>()?;
    let mut sample_offsets = Vec::with_capacity(n);
    let mut index = 0usize;
    for (chunk, &chunk_offset) in offsets.iter().enumerate() {
        let chunk_number = chunk as u32 + 1;
        let per_chunk = runs.iter().rev().find(|(first, _)| *first <= chunk_number).map(|r| r.1).unwrap_or(0);
        let mut at = chunk_offset;
        for _ in 0..per_chunk {
            if index >= n {
                break;
            }
            sample_offsets.push(at);
            at += sizes[index] as u64;
            index += 1;
        }
    }
    if sample_offsets.len() != n {
        return Err(Mp4Error::Malformed(format!("chunks place {} of {n} samples", sample_offsets.len())));
    }
    // Decode times.
    let stts = child(stbl, b"stts").ok_or_else(|| missing("stts"))?;
    let mut dts = Vec::with_capacity(n);
    let mut t = 0i64;
    for i in 0..count(stts, 8)? {
        let (k, delta) = (be32(stts, 8 + 8 * i)?, be32(stts, 12 + 8 * i)?);
        for _ in 0..k {
            if dts.len() < n {
                dts.push(t);
            }
            t += delta as i64;
        }
    }
    while dts.len() < n {
        dts.push(t);
    }
    // Composition offsets.
    let mut cts = vec![0i32; n];
    if let Some(ctts) = child(stbl, b"ctts") {
        let mut at = 0usize;
        for i in 0..count(ctts, 8)? {
            let k = be32(ctts, 8 + 8 * i)?;
            let offset = be32(ctts, 12 + 8 * i)? as i32;
            for _ in 0..k {
                if at < n {
                    cts[at] = offset;
                }
                at += 1;
            }
        }
    }
    // Sync samples (all when there is no stss).
    let mut key = vec![all_sync || child(stbl, b"stss").is_none(); n];
    if let (false, Some(stss)) = (all_sync, child(stbl, b"stss")) {
        for i in 0..count(stss, 4)? {
            let s = be32(stss, 8 + 4 * i)? as usize;
            if (1..=n).contains(&s) {
                key[s - 1] = true;
            }
        }
    }
    Ok((0..n)
        .map(|i| SampleRef {
            dts: dts[i],
            cts: cts[i],
            size: sizes[i],
            key: key[i],
            source: 0,
            offset: sample_offsets[i],
        })
        .collect())
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
                found = fragment_samples(&file[at as usize..(at + len) as usize], at, 3);
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
        assert!(fragment_samples(&file[moof_at..moof_at + 40], moof_at as u64, 0).is_none());
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
    }

    #[test]
    fn box_header_rejects_impossible_sizes() {
        assert_eq!(box_header(&[0, 0, 0, 8, b'f', b'r', b'e', b'e']), Some((*b"free", 8, 8)));
        assert!(box_header(&[0, 0, 0, 7, b'f', b'r', b'e', b'e']).is_none());
        assert!(box_header(&[0, 0, 0, 1, b'm', b'd', b'a', b't', 0, 0, 0, 0, 0, 0, 0, 8]).is_none());
        assert_eq!(box_header(&[0, 0, 0, 0, b'm', b'd', b'a', b't']).map(|b| b.2), Some(u64::MAX));
        assert!(box_header(&[0, 0, 0]).is_none());
    }
}
