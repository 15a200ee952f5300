//! The recordings index: one [`Recording`] per DVR segment file, ordered by stream and start
//! time, and the segment's sample table ([`TrackSamples`]) kept apart so listings stay small.
//!
//! Keys of `recordings`: `vhost/app/stream`, a zero byte, the start time (Unix ms, i64 as
//! big-endian u64 with the sign bit flipped, so keys sort by time), then the id (u64
//! big-endian). Keys of `recording_samples`: the id, big-endian.

use crate::{codec, StorageError, Store};
use crate::{AudioInfo, StreamKey, VideoInfo};
use serde::{Deserialize, Serialize};

/// Where a recording is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordingState {
    /// Being written; after a crash, the node repairs or removes it on start.
    Recording,
    /// Closed normally.
    Complete,
    /// Cut short by a crash and repaired to its last complete fragment.
    Repaired,
}

/// One segment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// Unique id.
    pub id: u64,
    /// The stream.
    pub key: StreamKey,
    /// File path relative to the DVR directory.
    pub path: String,
    /// `mp4` or `flv`.
    pub format: String,
    /// State.
    pub state: RecordingState,
    /// Wall-clock time of the first frame, Unix ms.
    pub start_ms: i64,
    /// Wall-clock time of the end of the last frame, Unix ms.
    pub end_ms: i64,
    /// Media time (stream timestamps, ms) of the first frame.
    pub media_start_ms: i64,
    /// Media time of the end of the last frame.
    pub media_end_ms: i64,
    /// File size in bytes.
    pub bytes: u64,
    /// Video track.
    pub video: Option<VideoInfo>,
    /// Audio track.
    pub audio: Option<AudioInfo>,
    /// Keyframes: (media time ms, byte offset of the sample in the file).
    pub keyframes: Vec<(i64, u64)>,
}

impl Recording {
    /// Duration in ms.
    pub fn duration_ms(&self) -> i64 {
        (self.end_ms - self.start_ms).max(0)
    }

    /// Wall-clock time of media time `media_ms` within this recording.
    pub fn wall_of(&self, media_ms: i64) -> i64 {
        self.start_ms + (media_ms - self.media_start_ms)
    }

    /// Media time of wall-clock time `wall_ms` within this recording.
    pub fn media_of(&self, wall_ms: i64) -> i64 {
        self.media_start_ms + (wall_ms - self.start_ms)
    }
}

/// One sample of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSample {
    /// Decode time in the track's timescale (stream time, not rebased).
    pub dts: i64,
    /// Composition offset.
    pub cts: i32,
    /// Size.
    pub size: u32,
    /// Sync sample.
    pub key: bool,
    /// Byte offset in the file.
    pub offset: u64,
}

/// One track of a recording and its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackSamples {
    /// Track id in the file.
    pub track_id: u32,
    /// Codec name (`H264`, `H265`, `AAC`).
    pub codec: String,
    /// Timescale.
    pub timescale: u32,
    /// Codec configuration (avcC, hvcC, AudioSpecificConfig).
    pub config: Vec<u8>,
    /// Video width.
    pub width: u32,
    /// Video height.
    pub height: u32,
    /// Audio channels.
    pub channels: u16,
    /// Audio sample rate.
    pub sample_rate: u32,
    /// Samples in decode order.
    pub samples: Vec<StoredSample>,
}

/// A stretch of a recorded stream that is not in any file, and why: the recording could not
/// keep up (a slow disk), or its writer restarted after a fault. Kept with the recordings
/// index so that "no file covers this time" is always explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingGap {
    /// The stream.
    pub key: StreamKey,
    /// Wall-clock start of the missing stretch (the end of the file before it), Unix ms.
    pub start_ms: i64,
    /// Wall-clock end (the start of the file after it), Unix ms.
    pub end_ms: i64,
    /// Frames that never reached a file.
    pub lost_frames: u64,
    /// Why.
    pub reason: String,
}

impl TrackSamples {
    /// A track's description with no samples yet (a recording's sample table as its file
    /// starts, or as repair begins from the file's init segment).
    pub fn empty_for(track: &estuary_protocols::container::fmp4::Track) -> TrackSamples {
        TrackSamples {
            track_id: track.id,
            codec: track.codec.name().to_string(),
            timescale: track.timescale,
            config: track.config.to_vec(),
            width: track.width,
            height: track.height,
            channels: track.channels,
            sample_rate: track.sample_rate,
            samples: Vec::new(),
        }
    }
}

/// Recordings that touch within this many ms count as continuous (a segment cut is not a
/// gap); a loss this close to a hole explains it.
const CONTINUOUS_MS: i64 = 100;

/// A hole between recordings, with the recorded loss that explains it, if any (a hole
/// without one is time nobody published).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hole {
    /// Start (the end of the recording before), Unix ms.
    pub start_ms: i64,
    /// End (the start of the recording after), Unix ms.
    pub end_ms: i64,
    /// Why it is there.
    pub loss: Option<RecordingGap>,
}

/// What recordings cover of [from, to).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Coverage {
    /// Covered spans (start, end), Unix ms, in order, merged.
    pub spans: Vec<(i64, i64)>,
    /// The holes between spans.
    pub holes: Vec<Hole>,
}

/// What `recordings` (of one stream) cover of [from, to), and the holes between, each
/// matched with a loss from `losses` when one explains it.
pub fn coverage(recordings: &[Recording], losses: &[RecordingGap], from: i64, to: i64) -> Coverage {
    let mut spans: Vec<(i64, i64)> = recordings.iter().map(|r| (r.start_ms.max(from), r.end_ms.min(to))).filter(|(a, b)| b > a).collect();
    spans.sort();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 + CONTINUOUS_MS => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let holes = merged
        .windows(2)
        .map(|w| {
            let (start_ms, end_ms) = (w[0].1, w[1].0);
            let loss = losses.iter().find(|l| l.start_ms <= end_ms + CONTINUOUS_MS && l.end_ms >= start_ms - CONTINUOUS_MS).cloned();
            Hole { start_ms, end_ms, loss }
        })
        .collect();
    Coverage { spans: merged, holes }
}

fn time_key(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn stream_prefix(key: &StreamKey) -> Vec<u8> {
    let mut prefix = key.db_key().into_bytes();
    prefix.push(0);
    prefix
}

fn recording_key(recording: &Recording) -> Vec<u8> {
    let mut k = stream_prefix(&recording.key);
    k.extend_from_slice(&time_key(recording.start_ms));
    k.extend_from_slice(&recording.id.to_be_bytes());
    k
}

impl Store {
    /// A fresh recording id.
    pub fn next_recording_id(&self) -> Result<u64, StorageError> {
        self.db.generate_id().map_err(|e| self.sled_err(e))
    }

    /// Inserts or replaces a recording (and its samples, when given), then flushes to disk.
    /// Callers write and fsync the file first: an index entry only ever points at bytes that
    /// are on disk.
    pub fn put_recording(&self, recording: &Recording, samples: Option<&[TrackSamples]>) -> Result<(), StorageError> {
        if let Some(samples) = samples {
            self.recording_samples.insert(recording.id.to_be_bytes(), codec::encode(&samples)).map_err(|e| self.sled_err(e))?;
        }
        // A recording's start time may have been corrected since it was first written: drop
        // any entry with the same id under another start time.
        if let Some(old) = self.recordings_of(&recording.key)?.into_iter().find(|r| r.id == recording.id && r.start_ms != recording.start_ms) {
            self.recordings.remove(recording_key(&old)).map_err(|e| self.sled_err(e))?;
        }
        self.recordings.insert(recording_key(recording), codec::encode(recording)).map_err(|e| self.sled_err(e))?;
        self.flush()
    }

    /// Every recording of `key`, oldest first.
    pub fn recordings_of(&self, key: &StreamKey) -> Result<Vec<Recording>, StorageError> {
        self.scan_recordings(self.recordings.scan_prefix(stream_prefix(key)))
    }

    /// Every recording, grouped by stream, oldest first within a stream.
    pub fn all_recordings(&self) -> Result<Vec<Recording>, StorageError> {
        self.scan_recordings(self.recordings.iter())
    }

    fn scan_recordings(&self, iter: sled::Iter) -> Result<Vec<Recording>, StorageError> {
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            let recording = codec::decode(&v).map_err(|detail| StorageError::Decode { tree: "recordings", key: String::from_utf8_lossy(&k).into_owned(), detail })?;
            out.push(recording);
        }
        Ok(out)
    }

    /// The sample table of recording `id`.
    pub fn recording_samples(&self, id: u64) -> Result<Option<Vec<TrackSamples>>, StorageError> {
        match self.recording_samples.get(id.to_be_bytes()).map_err(|e| self.sled_err(e))? {
            Some(v) => codec::decode(&v).map(Some).map_err(|detail| StorageError::Decode { tree: "recording_samples", key: id.to_string(), detail }),
            None => Ok(None),
        }
    }

    /// Records a gap (flushed before returning).
    pub fn put_recording_gap(&self, gap: &RecordingGap) -> Result<(), StorageError> {
        let mut k = stream_prefix(&gap.key);
        k.extend_from_slice(&time_key(gap.start_ms));
        self.recording_gaps.insert(k, codec::encode(gap)).map_err(|e| self.sled_err(e))?;
        self.flush()
    }

    /// The gaps of `key`, oldest first.
    pub fn recording_gaps_of(&self, key: &StreamKey) -> Result<Vec<RecordingGap>, StorageError> {
        let mut out = Vec::new();
        for item in self.recording_gaps.scan_prefix(stream_prefix(key)) {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            out.push(codec::decode(&v).map_err(|detail| StorageError::Decode { tree: "recording_gaps", key: String::from_utf8_lossy(&k).into_owned(), detail })?);
        }
        Ok(out)
    }

    /// Forgets the gaps of `key` that ended before `before_ms` (retention follows the files).
    pub fn prune_recording_gaps(&self, key: &StreamKey, before_ms: i64) -> Result<usize, StorageError> {
        let mut removed = 0;
        for gap in self.recording_gaps_of(key)? {
            if gap.end_ms < before_ms {
                let mut k = stream_prefix(&gap.key);
                k.extend_from_slice(&time_key(gap.start_ms));
                self.recording_gaps.remove(k).map_err(|e| self.sled_err(e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes a recording and its samples from the index (the caller deletes the file).
    /// Gaps before the stream's oldest remaining recording go with it (retention follows the
    /// files).
    pub fn delete_recording(&self, recording: &Recording) -> Result<(), StorageError> {
        self.recordings.remove(recording_key(recording)).map_err(|e| self.sled_err(e))?;
        self.recording_samples.remove(recording.id.to_be_bytes()).map_err(|e| self.sled_err(e))?;
        // The first entry under the stream's prefix is its oldest recording (keys sort by time).
        let oldest = self.scan_recordings_first(&recording.key)?;
        self.prune_recording_gaps(&recording.key, oldest.map_or(i64::MAX, |r| r.start_ms))?;
        self.flush()
    }

    fn scan_recordings_first(&self, key: &StreamKey) -> Result<Option<Recording>, StorageError> {
        match self.recordings.scan_prefix(stream_prefix(key)).next() {
            Some(item) => {
                let (k, v) = item.map_err(|e| self.sled_err(e))?;
                codec::decode(&v).map(Some).map_err(|detail| StorageError::Decode { tree: "recordings", key: String::from_utf8_lossy(&k).into_owned(), detail })
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(id: u64, stream: &str, start_ms: i64) -> Recording {
        Recording {
            id,
            key: StreamKey::new("live", stream),
            path: format!("live/{stream}.{start_ms}.mp4"),
            format: "mp4".into(),
            state: RecordingState::Complete,
            start_ms,
            end_ms: start_ms + 30_000,
            media_start_ms: 1000,
            media_end_ms: 31_000,
            bytes: 1234,
            video: None,
            audio: None,
            keyframes: vec![(1000, 48), (3000, 900)],
        }
    }

    #[test]
    fn recordings_sort_by_stream_and_time_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            // Negative and positive times sort correctly; other streams stay apart.
            for (id, stream, start) in [(1, "a", 2_000), (2, "a", -5), (3, "b", 1_000), (4, "a", 1_700_000_000_000), (5, "ab", 0)] {
                store.put_recording(&recording(id, stream, start), None).unwrap();
            }
            let samples = vec![TrackSamples {
                track_id: 1,
                codec: "H264".into(),
                timescale: 90_000,
                config: vec![1, 2, 3],
                width: 320,
                height: 240,
                channels: 0,
                sample_rate: 0,
                samples: vec![StoredSample { dts: 90_000, cts: 3600, size: 10, key: true, offset: 48 }],
            }];
            store.put_recording(&recording(6, "c", 10), Some(&samples)).unwrap();
            assert_eq!(store.recording_samples(6).unwrap(), Some(samples));
        }
        let store = crate::reopen(dir.path());
        let a: Vec<u64> = store.recordings_of(&StreamKey::new("live", "a")).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(a, vec![2, 1, 4]);
        assert_eq!(store.all_recordings().unwrap().len(), 6);
        assert!(store.recording_samples(6).unwrap().is_some());

        // Moving a recording's start replaces its entry; deleting removes samples too.
        let mut moved = recording(1, "a", 3_000);
        moved.state = RecordingState::Repaired;
        store.put_recording(&moved, None).unwrap();
        let a = store.recordings_of(&StreamKey::new("live", "a")).unwrap();
        assert_eq!(a.iter().filter(|r| r.id == 1).count(), 1);
        let c = store.recordings_of(&StreamKey::new("live", "c")).unwrap();
        store.delete_recording(&c[0]).unwrap();
        assert!(store.recordings_of(&StreamKey::new("live", "c")).unwrap().is_empty());
        assert!(store.recording_samples(6).unwrap().is_none());
    }

    #[test]
    fn gaps_are_kept_per_stream_in_time_order_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let gap = |stream: &str, start_ms: i64| RecordingGap { key: StreamKey::new("live", stream), start_ms, end_ms: start_ms + 5000, lost_frames: 9, reason: "test".into() };
        store.put_recording_gap(&gap("a", 20_000)).unwrap();
        store.put_recording_gap(&gap("a", 10_000)).unwrap();
        store.put_recording_gap(&gap("b", 15_000)).unwrap();
        let a: Vec<i64> = store.recording_gaps_of(&StreamKey::new("live", "a")).unwrap().iter().map(|g| g.start_ms).collect();
        assert_eq!(a, vec![10_000, 20_000]);
        assert_eq!(store.prune_recording_gaps(&StreamKey::new("live", "a"), 16_000).unwrap(), 1);
        assert_eq!(store.recording_gaps_of(&StreamKey::new("live", "a")).unwrap().len(), 1);
        assert_eq!(store.recording_gaps_of(&StreamKey::new("live", "b")).unwrap().len(), 1);
        // Deleting recordings takes the gaps before the oldest one left with them.
        let (old, newer) = (recording(1, "b", 1_000), recording(2, "b", 40_000));
        store.put_recording(&old, None).unwrap();
        store.put_recording(&newer, None).unwrap();
        store.delete_recording(&old).unwrap();
        assert!(store.recording_gaps_of(&StreamKey::new("live", "b")).unwrap().is_empty(), "the gap at 15 s ended before the oldest file left (40 s)");
        store.put_recording_gap(&gap("b", 50_000)).unwrap();
        store.delete_recording(&newer).unwrap();
        assert!(store.recording_gaps_of(&StreamKey::new("live", "b")).unwrap().is_empty(), "no file left, no gap left");
    }

    #[test]
    fn coverage_merges_touching_files_and_explains_holes_with_losses() {
        let a = recording(1, "c", 0);
        let mut b = recording(2, "c", 30_050);
        b.end_ms = 40_000;
        let c = recording(3, "c", 50_000);
        let loss = RecordingGap { key: StreamKey::new("live", "c"), start_ms: 40_000, end_ms: 50_000, lost_frames: 12, reason: "output could not keep up".into() };
        let coverage = coverage(&[c.clone(), a.clone(), b.clone()], std::slice::from_ref(&loss), 0, 100_000);
        assert_eq!(coverage.spans, vec![(0, 40_000), (50_000, 80_000)], "a 50 ms cut is continuous");
        assert_eq!(coverage.holes, vec![Hole { start_ms: 40_000, end_ms: 50_000, loss: Some(loss) }]);
        let unexplained = super::coverage(&[a, c], &[], 0, 100_000);
        assert_eq!(unexplained.holes[0].loss, None);
        assert_eq!(super::coverage(&[b], &[], 35_000, 38_000).spans, vec![(35_000, 38_000)], "clipped to the range");
    }
}
