//! Start-up reconciliation of the recordings index with the files on disk (see the module
//! docs of [`crate::dvr`]). Runs synchronously before the node starts serving.

use estuary_protocols::mp4::{box_header, fragment_samples};
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
    let mut collected: Vec<(u32, Vec<estuary_protocols::mp4::SampleRef>)> = Vec::new();
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
    for track in &tracks {
        let scale = track.timescale.max(1) as i64;
        let video = track.codec == "H264" || track.codec == "H265";
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

/// Track descriptions from our own init segment's `moov`, for a file indexed before its sample
/// table was written (the table is stored at the cut).
fn tracks_of_moov(moov: &[u8]) -> Vec<TrackSamples> {
    fn children(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((kind, h, len)) = box_header(&data[at..]) {
            let Some(end) = at.checked_add(len as usize).filter(|&e| e <= data.len()) else { break };
            out.push((kind, &data[at + h as usize..end]));
            at = end;
        }
        out
    }
    let mut tracks = Vec::new();
    let Some((_, moov_body)) = children(moov).into_iter().find(|(k, _)| k == b"moov") else { return tracks };
    for (_, trak) in children(moov_body).into_iter().filter(|(k, _)| k == b"trak") {
        let parts = children(trak);
        let track_id = parts.iter().find(|(k, _)| k == b"tkhd").and_then(|(_, b)| b.get(12..16)).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
        let Some((_, mdia)) = parts.iter().find(|(k, _)| k == b"mdia") else { continue };
        let mdia = children(mdia);
        let timescale = mdia.iter().find(|(k, _)| k == b"mdhd").and_then(|(_, b)| b.get(12..16)).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
        let Some((_, minf)) = mdia.iter().find(|(k, _)| k == b"minf") else { continue };
        let Some((_, stbl)) = children(minf).into_iter().find(|(k, _)| k == b"stbl") else { continue };
        let Some((_, stsd)) = children(stbl).into_iter().find(|(k, _)| k == b"stsd") else { continue };
        let Some(entries) = stsd.get(8..) else { continue };
        let Some((kind, entry)) = children(entries).into_iter().next() else { continue };
        let (codec, config, width, height, channels, sample_rate) = match &kind {
            b"avc1" | b"hvc1" => {
                let config = entry.get(78..).map(children).and_then(|c| c.into_iter().find(|(k, _)| k == b"avcC" || k == b"hvcC")).map(|(_, b)| b.to_vec()).unwrap_or_default();
                let width = entry.get(24..26).map(|b| u16::from_be_bytes([b[0], b[1]]) as u32).unwrap_or(0);
                let height = entry.get(26..28).map(|b| u16::from_be_bytes([b[0], b[1]]) as u32).unwrap_or(0);
                (if &kind == b"avc1" { "H264" } else { "H265" }, config, width, height, 0, 0)
            }
            b"mp4a" => {
                let channels = entry.get(16..18).map(|b| u16::from_be_bytes([b[0], b[1]])).unwrap_or(2);
                let rate = entry.get(24..26).map(|b| u16::from_be_bytes([b[0], b[1]]) as u32).unwrap_or(0);
                // esds: ES descriptor -> decoder config -> decoder specific info (tag 5).
                let esds = entry.get(28..).map(children).and_then(|c| c.into_iter().find(|(k, _)| k == b"esds")).map(|(_, b)| b.to_vec()).unwrap_or_default();
                let config = audio_specific_config(&esds).unwrap_or_default();
                ("AAC", config, 0, 0, channels, rate)
            }
            _ => continue,
        };
        tracks.push(TrackSamples { track_id, codec: codec.into(), timescale, config, width, height, channels, sample_rate, samples: Vec::new() });
    }
    tracks
}

/// The AudioSpecificConfig in an `esds` body as this crate's writer lays it out (one-byte
/// descriptor lengths, no optional ES fields): ES (0x03) > DecoderConfig (0x04, 13 bytes of
/// fields) > DecoderSpecificInfo (0x05).
fn audio_specific_config(esds: &[u8]) -> Option<Vec<u8>> {
    let d = esds.get(4..)?;
    if *d.first()? != 0x03 {
        return None;
    }
    let decoder = d.get(5..)?;
    if *decoder.first()? != 0x04 {
        return None;
    }
    let specific = decoder.get(2 + 13..)?;
    if *specific.first()? != 0x05 {
        return None;
    }
    let len = *specific.get(1)? as usize;
    specific.get(2..2 + len).map(|c| c.to_vec())
}

/// FLV: keep whole tags (11-byte header, body, 4-byte previous size); cut the rest.
fn repair_flv(recording: &Recording, path: &Path) -> Result<Repaired, String> {
    let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| e.to_string())?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(|e| e.to_string())?;
    if data.len() < 13 || &data[..3] != b"FLV" {
        return Ok(None);
    }
    let mut at = 13usize;
    let mut last_ts = None;
    let mut first_ts = None;
    let mut keyframes = Vec::new();
    let mut media_tags = 0;
    while at + 11 <= data.len() {
        let size = u32::from_be_bytes([0, data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let end = at + 11 + size + 4;
        if end > data.len() {
            break;
        }
        let ts = (u32::from_be_bytes([data[at + 7], data[at + 4], data[at + 5], data[at + 6]])) as i64;
        if data[at] == 9 && size > 0 && data[at + 11] >> 4 == 1 {
            keyframes.push((ts, at as u64));
        }
        if data[at] == 8 || data[at] == 9 {
            media_tags += 1;
            first_ts.get_or_insert(ts);
            last_ts = Some(ts);
        }
        at = end;
    }
    if media_tags < 3 {
        return Ok(None);
    }
    file.set_len(at as u64).map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    let mut fixed = recording.clone();
    fixed.state = RecordingState::Repaired;
    fixed.bytes = at as u64;
    fixed.keyframes = keyframes;
    fixed.media_end_ms = last_ts.unwrap_or(fixed.media_start_ms);
    fixed.end_ms = fixed.start_ms + (fixed.media_end_ms - fixed.media_start_ms).max(0);
    Ok(Some((fixed, None)))
}
