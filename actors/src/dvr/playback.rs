//! Assembly of one progressive MP4 over a recorded time range: which recordings, which
//! samples, on which timeline. The HTTP layer streams the result.
//!
//! - Recordings overlapping `[start, end)` (wall clock) are taken in order, including the one
//!   being written, up to its last synced fragment (its writer describes it: see
//!   [`super::OpenRecording`]). The `ETag` hashes the layout (recordings, sample counts and
//!   offsets), so a range inside the durable part keeps it while the file grows; an open-ended
//!   range is redirected by the HTTP layer to its current end, so every URL names fixed bytes.
//! - The first recording starts at the video keyframe at or before `start` (audio from the
//!   same instant); the last ends before `end`.
//! - Each recording's samples are placed on the wall-clock timeline (media time minus the
//!   recording's media start, plus its wall start), so a gap between recordings stays a gap
//!   and a publisher's timestamp reset does not fold the timeline.
//! - Every recording of the range must have the same tracks and codec parameters as the
//!   first; the range ends at the first one that does not (the response says so in a header).

use crate::messages::{GetRecordingSamples, ListRecordings};
use crate::storage::StorageHandle;
use estuary_protocols::container::fmp4::Track;
use estuary_protocols::media::Codec;
use estuary_protocols::container::mp4::{self, Progressive, ProgressiveTrack, SampleRef};
use estuary_storage::{Recording, RecordingState, StreamKey, TrackSamples};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a range cannot be served.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlaybackError {
    /// The stream has no recordings at all.
    #[error("no recordings of {0}")]
    UnknownStream(String),
    /// None overlap the range.
    #[error("no recordings of {stream} between {start_ms} and {end_ms} (Unix ms)")]
    NothingInRange {
        /// The stream.
        stream: String,
        /// Range start.
        start_ms: i64,
        /// Range end.
        end_ms: i64,
    },
    /// The recordings in range are FLV.
    #[error("the recordings in this range are FLV files; download them from /dvr/files/ instead")]
    NotMp4,
    /// The index could not be read.
    #[error("recordings index unavailable: {0}")]
    Storage(String),
}

/// A range ready to serve.
pub struct Plan {
    /// The layout; piece sources index `files`.
    pub progressive: Progressive,
    /// Source files.
    pub files: Vec<PathBuf>,
    /// Strong validator for `ETag`.
    pub etag: String,
    /// Recordings used.
    pub recordings: Vec<Recording>,
    /// Set when the range was cut short at a codec change (its wall time, Unix ms).
    pub cut_at_ms: Option<i64>,
}

fn track_of(samples: &TrackSamples) -> Option<Track> {
    let codec = match samples.codec.as_str() {
        "H264" => Codec::H264,
        "H265" => Codec::H265,
        "AAC" => Codec::Aac,
        "AV1" => Codec::Av1,
        "Opus" => Codec::Opus,
        "TX3G" => Codec::Tx3g,
        _ => return None,
    };
    Some(Track {
        id: samples.track_id,
        codec,
        timescale: samples.timescale,
        config: bytes::Bytes::from(samples.config.clone()),
        width: samples.width,
        height: samples.height,
        channels: samples.channels,
        sample_rate: samples.sample_rate,
    })
}

/// The caption track's codec name in a sample table.
const CAPTIONS: &str = "TX3G";

/// Whether two recordings have the same media tracks (a caption track may be in one only: a
/// stream's first caption starts a file that has one).
fn same_tracks(a: &[TrackSamples], b: &[TrackSamples]) -> bool {
    let media = |t: &[TrackSamples]| t.iter().filter(|t| t.codec != CAPTIONS).map(|t| (t.codec.clone(), t.config.clone(), t.timescale)).collect::<Vec<_>>();
    media(a) == media(b)
}

fn ticks(ms: i64, timescale: u32) -> i64 {
    ms * timescale as i64 / 1000
}

/// Plans `[start_ms, end_ms)` of `key`.
/// The recordings of `key` that can be played: closed ones from the index, and the ones in
/// progress (`open`) as far as they are durable. Oldest first.
pub async fn playable(storage: &StorageHandle, key: &StreamKey, open: &[super::OpenRecording]) -> Result<Vec<super::Playable>, PlaybackError> {
    let indexed = storage.ask(ListRecordings { key: Some(key.clone()) }).await.map_err(|e| PlaybackError::Storage(e.to_string()))?.map_err(|e| PlaybackError::Storage(e.to_string()))?;
    if indexed.is_empty() {
        return Err(PlaybackError::UnknownStream(key.to_string()));
    }
    // An entry still `Recording` that no writer describes has nothing durable yet (or is
    // being repaired on the next start).
    Ok(super::with_open(indexed, open).into_iter().filter(|p| p.from_writer || p.recording.state != RecordingState::Recording).collect())
}

/// The sample table of `playable`: the writer's, when the entry is the writer's, else the
/// index's.
pub async fn samples_of(storage: &StorageHandle, playable: &super::Playable) -> Result<Option<Vec<TrackSamples>>, PlaybackError> {
    if playable.from_writer {
        return Ok(playable.samples.clone());
    }
    storage.ask(GetRecordingSamples { id: playable.recording.id }).await.map_err(|e| PlaybackError::Storage(e.to_string()))?.map_err(|e| PlaybackError::Storage(e.to_string()))
}

/// Plans `[start_ms, end_ms)` of `key`; `open` are the stream's recordings in progress.
pub async fn plan(storage: &StorageHandle, dir: &Path, key: &StreamKey, start_ms: i64, end_ms: i64, open: &[super::OpenRecording]) -> Result<Plan, PlaybackError> {
    let all = playable(storage, key, open).await?;
    let mut selected: Vec<super::Playable> = all.into_iter().filter(|p| p.recording.end_ms > start_ms && p.recording.start_ms < end_ms).collect();
    selected.sort_by_key(|p| p.recording.start_ms);
    if selected.is_empty() {
        return Err(PlaybackError::NothingInRange { stream: key.to_string(), start_ms, end_ms });
    }
    if selected.iter().all(|p| p.recording.format != "mp4") {
        return Err(PlaybackError::NotMp4);
    }
    selected.retain(|p| p.recording.format == "mp4");

    let origin_wall = selected[0].recording.start_ms;
    let mut reference: Option<Vec<TrackSamples>> = None;
    let mut tracks: Vec<ProgressiveTrack> = Vec::new();
    let mut used = Vec::new();
    let mut files = Vec::new();
    let mut cut_at_ms = None;
    let mut begin_wall = None;
    // An empty caption sample seen in the files (2 bytes, no text): where a file without the
    // caption track follows one with it, the caption track shows nothing from there on.
    let mut empty_caption: Option<(u32, u64)> = None;
    for playable in &selected {
        let recording = &playable.recording;
        let Some(samples) = samples_of(storage, playable).await? else {
            continue;
        };
        match &reference {
            None => {
                tracks = samples.iter().filter(|t| t.codec != CAPTIONS).filter_map(|t| track_of(t).map(|track| ProgressiveTrack { track, samples: Vec::new(), end: None })).collect();
                reference = Some(samples.clone());
            }
            Some(reference) if !same_tracks(reference, &samples) => {
                cut_at_ms = Some(recording.start_ms);
                break;
            }
            Some(_) => {}
        }
        let source = files.len() as u32;
        files.push(dir.join(&recording.path));
        used.push(recording.clone());
        // Where this recording's media time lands on the output timeline, per track.
        let shift = |timescale: u32| ticks(recording.start_ms - origin_wall, timescale) - ticks(recording.media_start_ms, timescale);
        // The first recording starts at the keyframe at or before `start`, audio with it.
        let mut from_wall = start_ms.max(recording.start_ms);
        if begin_wall.is_none() {
            let target_media = recording.media_of(from_wall);
            let key_media = recording.keyframes.iter().rev().find(|(ms, _)| *ms <= target_media).or(recording.keyframes.first()).map(|(ms, _)| *ms);
            if let Some(ms) = key_media {
                from_wall = recording.wall_of(ms);
            }
            begin_wall = Some(from_wall);
        } else {
            from_wall = recording.start_ms;
        }
        let to_wall = end_ms.min(recording.end_ms);
        // The output track of each table: media tracks in order, the caption track by codec
        // (added with the first recording that has one; before it, the track starts later).
        let mut outputs = Vec::new();
        let mut media = 0;
        for table in &samples {
            if table.codec == CAPTIONS {
                let found = tracks.iter().position(|t| t.track.codec == estuary_protocols::media::Codec::Tx3g);
                let index = match (found, track_of(table)) {
                    (Some(index), _) => Some(index),
                    (None, Some(track)) => {
                        tracks.push(ProgressiveTrack { track, samples: Vec::new(), end: None });
                        Some(tracks.len() - 1)
                    }
                    (None, None) => None,
                };
                outputs.push(index);
            } else {
                outputs.push(Some(media).filter(|m| tracks.get(*m).is_some_and(|t| t.track.codec != estuary_protocols::media::Codec::Tx3g)));
                media += 1;
            }
        }
        if !samples.iter().any(|t| t.codec == CAPTIONS) {
            if let (Some(out), Some((empty_source, offset))) = (tracks.iter_mut().find(|t| t.track.codec == estuary_protocols::media::Codec::Tx3g), empty_caption) {
                let at = ticks(recording.media_of(from_wall), out.track.timescale) + shift(out.track.timescale);
                if out.samples.last().is_some_and(|last| last.dts < at) {
                    out.samples.push(SampleRef { dts: at, cts: 0, size: 2, key: true, source: empty_source, offset });
                }
            }
        }
        for (table, index) in samples.iter().zip(outputs) {
            let Some(out) = index.and_then(|i| tracks.get_mut(i)) else { continue };
            if table.codec == CAPTIONS && empty_caption.is_none() {
                empty_caption = table.samples.iter().find(|s| s.size == 2).map(|s| (source, s.offset));
            }
            let scale = table.timescale;
            let from = ticks(recording.media_of(from_wall), scale);
            let to = ticks(recording.media_of(to_wall), scale);
            let shift = shift(scale);
            for sample in table.samples.iter().filter(|s| s.dts >= from && s.dts < to) {
                let mut dts = sample.dts + shift;
                if let Some(last) = out.samples.last() {
                    dts = dts.max(last.dts + 1);
                }
                out.samples.push(SampleRef { dts, cts: sample.cts, size: sample.size, key: sample.key, source, offset: sample.offset });
            }
        }
    }
    // A video track must begin with a keyframe.
    for track in tracks.iter_mut().filter(|t| t.track.kind() == estuary_protocols::media::TrackKind::Video) {
        let first_key = track.samples.iter().position(|s| s.key).unwrap_or(track.samples.len());
        track.samples.drain(..first_key);
    }
    // Audio and captions start with the first picture (the keyframe's presentation time,
    // after B-frame reordering), not with its decode time.
    let picture_start = tracks
        .iter()
        .find(|t| t.track.kind() == estuary_protocols::media::TrackKind::Video)
        .and_then(|t| t.samples.first().map(|s| (s.dts + s.cts.max(0) as i64) as f64 / t.track.timescale.max(1) as f64));
    if let Some(picture_start) = picture_start {
        for track in tracks.iter_mut().filter(|t| t.track.kind() != estuary_protocols::media::TrackKind::Video) {
            let scale = track.track.timescale.max(1) as f64;
            let skip = track.samples.iter().position(|s| s.dts as f64 / scale >= picture_start - 0.0005).unwrap_or(track.samples.len());
            if track.track.kind() == estuary_protocols::media::TrackKind::Data && skip > 0 {
                // The caption on screen at the first picture starts with it.
                let at = (picture_start * scale).round() as i64;
                track.samples.drain(..skip - 1);
                let next = track.samples.get(1).map(|s| s.dts);
                if next.is_none_or(|next| next > at) {
                    track.samples[0].dts = at;
                } else {
                    track.samples.remove(0);
                }
            } else {
                track.samples.drain(..skip);
            }
        }
    }
    // The caption track ends with the video: its last sample's text goes there.
    let video_end_s = tracks.iter().find(|t| t.track.kind() == estuary_protocols::media::TrackKind::Video).and_then(|t| {
        let last = t.samples.last()?;
        let step = t.samples.len().checked_sub(2).map(|i| last.dts - t.samples[i].dts).unwrap_or(0);
        Some((last.dts + step) as f64 / t.track.timescale.max(1) as f64)
    });
    if let Some(end_s) = video_end_s {
        for track in tracks.iter_mut().filter(|t| t.track.kind() == estuary_protocols::media::TrackKind::Data) {
            let end = (end_s * track.track.timescale as f64).round() as i64;
            track.samples.retain(|s| s.dts < end);
            track.end = Some(end);
        }
    }
    if tracks.iter().all(|t| t.samples.is_empty()) {
        return Err(PlaybackError::NothingInRange { stream: key.to_string(), start_ms, end_ms });
    }
    let progressive = mp4::build(&tracks);
    let mut hash = Sha256::new();
    // The layout, not the files' sizes: a range inside the durable part of a growing file
    // keeps its validator while the file grows (its bytes do not change).
    for r in &used {
        hash.update(r.id.to_be_bytes());
    }
    for t in &tracks {
        hash.update((t.samples.len() as u64).to_be_bytes());
        if let (Some(first), Some(last)) = (t.samples.first(), t.samples.last()) {
            hash.update(first.offset.to_be_bytes());
            hash.update(last.offset.to_be_bytes());
            hash.update(first.dts.to_be_bytes());
            hash.update(last.dts.to_be_bytes());
        }
    }
    let etag = format!("\"{}\"", hex::encode(&hash.finalize()[..12]));
    Ok(Plan { progressive, files, etag, recordings: used, cut_at_ms })
}
