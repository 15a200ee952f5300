//! Start-up reconciliation of the recordings index with the files on disk (see the module
//! docs of [`crate::dvr`]). Runs synchronously before the node starts serving.

use estuary_protocols::container::flv::{self, FlvDemuxer};
use estuary_protocols::container::mp4::{box_header, fragment_samples};
use estuary_storage::{Recording, RecordingState, StoredSample, Store, TrackSamples};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// What reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries checked.
    pub checked: usize,
    /// Interrupted recordings repaired (cut to their last complete fragment).
    pub repaired: usize,
    /// Entries removed (file gone, or nothing playable in it).
    pub removed: usize,
    /// Files deleted that no entry named.
    pub orphans: usize,
}

/// Repairs or removes interrupted recordings and deletes orphan files under `dir`.
pub fn reconcile(store: &Store, dir: &Path) -> Result<Report, String> {
    let mut report = Report::default();
    let recordings = store.all_recordings().map_err(|e| e.to_string())?;
    let mut known = HashSet::new();
    for recording in recordings {
        report.checked += 1;
        let path = dir.join(&recording.path);
        if !path.is_file() {
            tracing::warn!(file = %recording.path, stream = %recording.key, "recording file missing; index entry removed");
            store.delete_recording(&recording).map_err(|e| e.to_string())?;
            report.removed += 1;
            continue;
        }
        if recording.state != RecordingState::Recording {
            known.insert(path);
            continue;
        }
        let repaired = match recording.format.as_str() {
            "mp4" => repair_mp4(store, &recording, &path),
            "flv" => repair_flv(&recording, &path),
            other => Err(format!("unknown format {other:?}")),
        };
        match repaired {
            Ok(Some((fixed, samples))) => {
                tracing::warn!(file = %fixed.path, stream = %fixed.key, duration_ms = fixed.duration_ms(), bytes = fixed.bytes, "interrupted recording repaired to its last complete fragment");
                store.put_recording(&fixed, samples.as_deref()).map_err(|e| e.to_string())?;
                known.insert(path);
                report.repaired += 1;
            }
            Ok(None) => {
                tracing::warn!(file = %recording.path, stream = %recording.key, "interrupted recording has no complete fragment; removed");
                store.delete_recording(&recording).map_err(|e| e.to_string())?;
                let _ = std::fs::remove_file(&path);
                report.removed += 1;
            }
            Err(e) => {
                tracing::warn!(file = %recording.path, stream = %recording.key, error = %e, "interrupted recording unreadable; removed");
                store.delete_recording(&recording).map_err(|e| e.to_string())?;
                let _ = std::fs::remove_file(&path);
                report.removed += 1;
            }
        }
    }
    report.orphans = remove_orphans(dir, &known);
    Ok(report)
}

fn remove_orphans(dir: &Path, known: &HashSet<std::path::PathBuf>) -> usize {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && !known.contains(&path) {
                tracing::warn!(file = %path.display(), "file in the DVR directory is not in the recordings index; deleted");
                if std::fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
        }
    }
    removed
}

type Repaired = Option<(Recording, Option<Vec<TrackSamples>>)>;

/// Walks the file's top-level boxes; keeps everything up to the last `mdat` whose bytes are
/// all there after a readable `moof`, cuts the rest, rebuilds the sample table.
fn repair_mp4(store: &Store, recording: &Recording, path: &Path) -> Result<Repaired, String> {
    let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut at = 0u64;
    let mut good_end = None;
    let mut init_end = None;
    let mut pending_moof: Option<(u64, Vec<u8>)> = None;
    let mut tracks: Vec<TrackSamples> = store.recording_samples(recording.id).ok().flatten().unwrap_or_default();
    let mut collected: Vec<(u32, Vec<estuary_protocols::container::mp4::SampleRef>)> = Vec::new();
    while at + 8 <= len {
        let mut header = [0u8; 16];
        file.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
        let n = read_up_to(&mut file, &mut header)?;
        let Some((kind, _, size)) = box_header(&header[..n]) else { break };
        if size == u64::MAX || at + size > len {
            break;
        }
        match &kind {
            b"moov" => {
                init_end = Some(at + size);
                if tracks.is_empty() {
                    let mut moov = vec![0u8; size as usize];
                    file.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
                    file.read_exact(&mut moov).map_err(|e| e.to_string())?;
                    tracks = tracks_of_moov(&moov);
                }
            }
            b"moof" => {
                let mut moof = vec![0u8; size as usize];
                file.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
                file.read_exact(&mut moof).map_err(|e| e.to_string())?;
                pending_moof = Some((at, moof));
            }
            b"mdat" => {
                if let Some((moof_at, moof)) = pending_moof.take() {
                    match fragment_samples(&moof, moof_at, 0) {
                        Ok(fragment) => {
                            let end = at + size;
                            if fragment.iter().flat_map(|(_, s)| s).all(|s| s.offset + s.size as u64 <= end) {
                                collected.extend(fragment);
                                good_end = Some(end);
                            }
                        }
                        Err(error) => tracing::warn!(file = %path.display(), %error, "DVR repair: fragment not readable; its samples are left out"),
                    }
                }
            }
            _ => {}
        }
        at += size;
    }
    let (Some(_), Some(end)) = (init_end, good_end) else { return Ok(None) };
    file.set_len(end).map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    for track in &mut tracks {
        track.samples.clear();
    }
    for (track_id, samples) in collected {
        if let Some(track) = tracks.iter_mut().find(|t| t.track_id == track_id) {
            track.samples.extend(samples.iter().map(|s| StoredSample { dts: s.dts, cts: s.cts, size: s.size, key: s.key, offset: s.offset }));
        }
    }
    let mut fixed = recording.clone();
    fixed.state = RecordingState::Repaired;
    fixed.bytes = end;
    fixed.keyframes.clear();
    let mut media_end_ms = recording.media_start_ms;
    // The media tracks say where the recording ends (a caption track's last sample may run
    // to the end of its fragment's span, or stop short of it).
    for track in tracks.iter().filter(|t| t.codec != "TX3G") {
        let scale = track.timescale.max(1) as i64;
        let video = matches!(track.codec.as_str(), "H264" | "H265" | "AV1");
        let step = track.samples.windows(2).last().map(|w| w[1].dts - w[0].dts).unwrap_or(0);
        if let Some(last) = track.samples.last() {
            media_end_ms = media_end_ms.max((last.dts + step) * 1000 / scale);
        }
        if video {
            fixed.keyframes.extend(track.samples.iter().filter(|s| s.key).map(|s| (s.dts * 1000 / scale, s.offset)));
        }
    }
    if tracks.iter().all(|t| t.samples.is_empty()) {
        return Ok(None);
    }
    fixed.media_end_ms = media_end_ms;
    fixed.end_ms = fixed.start_ms + (media_end_ms - fixed.media_start_ms).max(0);
    Ok(Some((fixed, Some(tracks))))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> Result<usize, String> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(n)
}

/// Track descriptions from our own init segment's `moov` (the protocols crate's reader), for
/// a file indexed before its sample table was written (the table is stored at the cut).
fn tracks_of_moov(moov: &[u8]) -> Vec<TrackSamples> {
    let tracks = match estuary_protocols::container::mp4::read_init(moov) {
        Ok(tracks) => tracks,
        Err(error) => {
            tracing::warn!(%error, "DVR repair: the init segment is not readable");
            return Vec::new();
        }
    };
    tracks.iter().map(TrackSamples::empty_for).collect()
}

/// FLV: keep whole tags (the protocols crate's demuxer reads them, with their offsets); cut
/// the rest.
fn repair_flv(recording: &Recording, path: &Path) -> Result<Repaired, String> {
    let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| e.to_string())?;
    // Read straight into the demuxer's buffer: a long recording is held in memory once.
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut data = bytes::BytesMut::zeroed(usize::try_from(len).map_err(|_| "file too large".to_string())?);
    file.read_exact(&mut data[..]).map_err(|e| e.to_string())?;
    let mut demuxer = FlvDemuxer::new(64 << 20);
    demuxer.push_owned(data);
    let mut at = 0u64;
    let mut last_ts = None;
    let mut first_ts = None;
    let mut keyframes = Vec::new();
    let mut media_tags = 0;
    // Complete tags only; a truncated or damaged tail ends the walk.
    while let Ok(Some(tag)) = demuxer.next_tag() {
        let ts = tag.timestamp as i64;
        // Frame type in bits 4-6 of the first body byte (legacy and enhanced FLV alike).
        if tag.tag_type == flv::TAG_VIDEO && tag.body.first().is_some_and(|b| (b >> 4) & 0x07 == 1) {
            keyframes.push((ts, tag.offset));
        }
        if tag.tag_type == flv::TAG_AUDIO || tag.tag_type == flv::TAG_VIDEO {
            media_tags += 1;
            first_ts.get_or_insert(ts);
            last_ts = Some(ts);
        }
        at = tag.offset + 11 + tag.body.len() as u64 + 4;
    }
    if media_tags < 3 {
        return Ok(None);
    }
    file.set_len(at).map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    let mut fixed = recording.clone();
    fixed.state = RecordingState::Repaired;
    fixed.bytes = at;
    fixed.keyframes = keyframes;
    fixed.media_end_ms = last_ts.unwrap_or(fixed.media_start_ms);
    fixed.end_ms = fixed.start_ms + (fixed.media_end_ms - fixed.media_start_ms).max(0);
    Ok(Some((fixed, None)))
}
