//! DVR: recording streams to files, the recordings index, retention, and the assembly of
//! progressive MP4 over any recorded time range.
//!
//! ## Writers
//! One [`DvrWriter`] per recorded stream, a subscriber of the stream actor like any player,
//! on the DVR arbiter (its own thread: file writes and fsyncs never stall connections). A
//! stream is recorded when `[dvr]` enables its app, or when `POST /api/v1/dvr` switched it on
//! at runtime ([`DvrRuntime::set_runtime`]; a runtime switch wins over config until the node
//! restarts).
//!
//! ## Files and crash safety (fragmented MP4)
//! A segment file starts with an initialization segment; then one fragment (`moof` + `mdat`)
//! per `dvr.fragment_ms`, and a new one at every video keyframe, is appended and made durable
//! (`fdatasync`) before the next. The order of operations is the index's guarantee:
//! 1. create the file, write the init segment, fsync file and directory;
//! 2. index it as `Recording` (so a crash leaves an entry that the next start repairs);
//! 3. append fragments, each synced;
//! 4. at the cut: sync, then index it `Complete` with its sample table.
//!
//! On start, [`repair::reconcile`] walks the index: entries whose file vanished are dropped;
//! `Recording` entries are repaired (the file is cut after its last complete fragment and the
//! sample table rebuilt from the `moof` boxes) or, with no complete fragment, removed; files
//! under the DVR directory that no entry names are deleted. An index entry therefore only
//! ever points at playable bytes.
//!
//! ## The file being written
//! Its index entry exists from the start (step 2) but its end and sample table are stored only
//! at the cut (a write per fragment would cost the index far more than it gives). Until then
//! its writer describes it on request ([`GetOpenRecordings`]): the entry as of the last synced
//! fragment, and the sample table of the synced fragments. The recordings API, the HTTP-MP4
//! ranges and the rewind playlist ([`rewind`]) merge that view with the index
//! ([`with_open`]), so the recording in progress plays up to about a second behind live.
//!
//! FLV recordings are written the same way (synced every fragment interval; repaired by
//! cutting after the last complete tag) and can be downloaded, but only MP4 recordings are
//! served as HTTP-MP4 ranges.
//!
//! ## Retention
//! [`janitor::DvrJanitor`] applies `max_age` and `max_bytes` per app every few seconds:
//! oldest recordings first, index entry and file together (entry first: a crash in between
//! leaves an orphan file, which the next start deletes).

pub mod janitor;
pub mod playback;
pub mod repair;
pub mod rewind;
mod writer;

pub use writer::{describe_write_error, DvrWriter, GetOpenRecordings, OpenRecording, StopRecording};

use crate::settings::DvrSettings;
use actix::prelude::*;
use estuary_storage::StreamKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use crate::node::bounded::BoundedMap;
use std::sync::Mutex;

/// Runtime switches kept at most (streams named through the API); the oldest switch goes
/// first.
const MAX_SWITCHES: usize = 10_000;

/// A node's DVR state: switches set through the API and the writers running.
pub struct DvrRuntime {
    /// Stream → on, bounded by [`MAX_SWITCHES`].
    switches: Mutex<BoundedMap<StreamKey, bool>>,
    writers: Mutex<HashMap<StreamKey, Addr<DvrWriter>>>,
    /// Files closed whose index entry is not stored yet (at most [`CLOSED_KEPT`] a stream).
    closed: Mutex<HashMap<StreamKey, Vec<OpenRecording>>>,
    /// Streams whose recording is suspended because writes fail, with why and since when
    /// (unix ms); at most one entry per running writer.
    failures: Mutex<HashMap<StreamKey, (u64, String, i64)>>,
    serial: AtomicU64,
}

/// Closed files described per stream while their index entries are being stored.
const CLOSED_KEPT: usize = 4;

impl Default for DvrRuntime {
    fn default() -> Self {
        DvrRuntime { switches: Mutex::new(BoundedMap::new(MAX_SWITCHES)), writers: Mutex::default(), closed: Mutex::default(), failures: Mutex::default(), serial: AtomicU64::new(0) }
    }
}

impl DvrRuntime {
    /// Switches recording of `key` on or off at runtime (overrides config until restart).
    pub fn set_runtime(&self, key: &StreamKey, on: bool) {
        self.switches.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), on);
    }

    /// Whether `key` should be recorded now.
    pub fn wanted(&self, key: &StreamKey, settings: &DvrSettings) -> bool {
        match self.switches.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            Some(on) => *on,
            None => settings.applies_to(&key.app),
        }
    }

    /// How many streams are being recorded now.
    pub fn writing(&self) -> usize {
        self.writers.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|a| a.connected()).count()
    }

    /// Records (`Some`) or clears (`None`) why the recording of `key` by the writer of
    /// `generation` is suspended (a writer clears only its own).
    pub fn set_failure(&self, key: &StreamKey, generation: u64, failure: Option<String>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failure {
            Some(reason) => {
                failures.insert(key.clone(), (generation, reason, crate::unix_ms()));
            }
            None => {
                if failures.get(key).is_some_and(|(g, ..)| *g == generation) {
                    failures.remove(key);
                }
            }
        }
    }

    /// Why recording `key` is suspended and since when (unix ms), if it is.
    pub fn failure(&self, key: &StreamKey) -> Option<(String, i64)> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).get(key).map(|(_, reason, since)| (reason.clone(), *since))
    }

    /// Every stream being recorded, with its failure if recording is suspended.
    pub fn recording(&self) -> Vec<(StreamKey, Option<(String, i64)>)> {
        let keys: Vec<StreamKey> = self.writers.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|(_, a)| a.connected()).map(|(k, _)| k.clone()).collect();
        keys.into_iter().map(|key| {
            let failure = self.failure(&key);
            (key, failure)
        }).collect()
    }

    /// The writer recording `key`, if one runs.
    pub fn writer_of(&self, key: &StreamKey) -> Option<Addr<DvrWriter>> {
        self.writers.lock().unwrap_or_else(|e| e.into_inner()).get(key).filter(|a| a.connected()).cloned()
    }

    /// The recordings of `key` not (yet) closed in the index, as far as they are durable: the
    /// writer's open (and closing) file, and files closed whose entries are being stored.
    /// `Err` when the writer does not answer within two seconds (callers answer 503 rather
    /// than leave out what they listed before).
    pub async fn open_recordings(&self, key: &StreamKey) -> Result<Vec<OpenRecording>, String> {
        let mut out = match self.writer_of(key) {
            Some(writer) => match tokio::time::timeout(std::time::Duration::from_secs(2), writer.send(GetOpenRecordings)).await {
                Ok(Ok(open)) => open,
                // The writer stopped meanwhile: what it closed is in `closed` or the index.
                Ok(Err(_)) => Vec::new(),
                Err(_) => {
                    tracing::warn!(stream = %key, "DVR writer did not describe its open recording within 2 s");
                    return Err(format!("the recording of {key} is busy; try again"));
                }
            },
            None => Vec::new(),
        };
        if let Some(closed) = self.closed.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            out.extend(closed.iter().filter(|c| !out.iter().any(|o| o.recording.id == c.recording.id)).cloned().collect::<Vec<_>>());
        }
        Ok(out)
    }

    pub(crate) fn remember_closed(&self, key: &StreamKey, closed: OpenRecording) {
        let mut map = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(key.clone()).or_default();
        if list.len() == CLOSED_KEPT {
            list.remove(0);
        }
        list.push(closed);
    }

    pub(crate) fn forget_closed(&self, key: &StreamKey, id: u64) {
        let mut map = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = map.get_mut(key) {
            list.retain(|c| c.recording.id != id);
            if list.is_empty() {
                map.remove(key);
            }
        }
    }

    pub(crate) fn register_writer(&self, key: &StreamKey, addr: Addr<DvrWriter>) {
        self.writers.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), addr);
    }

    pub(crate) fn unregister_writer(&self, key: &StreamKey) {
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        if writers.get(key).is_some_and(|a| !a.connected()) {
            writers.remove(key);
        }
    }

    /// A recording id unique in this node and across restarts: Unix ms in the high bits, a
    /// counter below.
    pub(crate) fn new_recording_id(&self) -> u64 {
        ((crate::unix_ms().max(0) as u64) << 16) | (self.serial.fetch_add(1, Ordering::Relaxed) & 0xffff)
    }
}

/// A recording as playback sees it: from the index, or (while the index still says
/// `Recording`) as its writer describes it.
#[derive(Debug, Clone)]
pub struct Playable {
    /// The entry.
    pub recording: estuary_storage::Recording,
    /// Taken from the writer's description (then `samples` is its sample table, for MP4).
    pub from_writer: bool,
    /// The writer's sample table of the durable fragments.
    pub samples: Option<Vec<estuary_storage::TrackSamples>>,
}

/// The index's entries, each one still `Recording` in the index replaced by its writer's
/// description when there is one (entry and samples from the same moment). Nothing the index
/// does not list is added (a file deleted meanwhile stays deleted).
pub fn with_open(indexed: Vec<estuary_storage::Recording>, open: &[OpenRecording]) -> Vec<Playable> {
    use estuary_storage::RecordingState;
    indexed
        .into_iter()
        .map(|r| match open.iter().find(|o| o.recording.id == r.id) {
            Some(o) if r.state == RecordingState::Recording => Playable { recording: o.recording.clone(), from_writer: true, samples: o.samples.clone() },
            _ => Playable { recording: r, from_writer: false, samples: None },
        })
        .collect()
}

/// Fills a path template: `[app]`, `[stream]`, `[timestamp]` (Unix ms), and date parts in Go's
/// reference-time style as SRS has them: `[2006]` year, `[01]` month, `[02]` day, `[15]` hour,
/// `[04]` minute, `[05]` second, `[999]` milliseconds (UTC). Characters that could leave the
/// directory are replaced.
pub fn expand_path(template: &str, key: &StreamKey, unix_ms: i64) -> String {
    let clean = |s: &str| s.replace(['/', '\\'], "_").replace("..", "_");
    let c = estuary_protocols::clock::Civil::from_unix_ms(unix_ms);
    template
        .replace("[app]", &clean(&key.app))
        .replace("[stream]", &clean(&key.stream))
        .replace("[timestamp]", &unix_ms.to_string())
        .replace("[2006]", &format!("{:04}", c.year))
        .replace("[01]", &format!("{:02}", c.month))
        .replace("[02]", &format!("{:02}", c.day))
        .replace("[15]", &format!("{:02}", c.hour))
        .replace("[04]", &format!("{:02}", c.minute))
        .replace("[05]", &format!("{:02}", c.second))
        .replace("[999]", &format!("{:03}", c.millis))
}

/// Parses a time given as `now`, Unix milliseconds or RFC 3339 (`2026-11-25T14:02:00Z`, fractional
/// seconds and `+hh:mm` offsets allowed) into Unix ms.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(crate::unix_ms());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| format!("{text:?} is too large"));
    }
    estuary_protocols::clock::parse_rfc3339(text).ok_or_else(|| format!("{text:?} is neither Unix milliseconds nor RFC 3339 (2026-11-25T14:02:00Z)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1795627359123"), Ok(1_795_627_359_123));
        assert_eq!(parse_time("2026-11-25T17:22:39.123Z"), Ok(1_795_627_359_123));
        assert_eq!(parse_time("2026-11-25T18:22:39.1+01:00"), Ok(1_795_627_359_100));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
        for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-25T17:22:39", "2026-11-25T17:22:39.Z", "-5"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_templates() {
        let key = StreamKey::new("live", "cam/7");
        // 2026-11-25T17:22:39.123Z
        let ms = 1_795_627_359_123;
        assert_eq!(expand_path("[app]/[stream].[timestamp].mp4", &key, ms), "live/cam_7.1795627359123.mp4");
        assert_eq!(expand_path("[app]/[2006]/[01]/[02]/[stream]-[15][04][05].[999].flv", &key, ms), "live/2026/11/25/cam_7-172239.123.flv");
        assert_eq!(expand_path("[2006]-[01]-[02]", &key, 0), "1970-01-01");
        assert_eq!(expand_path("[2006]-[01]-[02]", &key, 951_782_400_000), "2000-02-29");
        let evil = StreamKey::new("..", "x");
        assert!(!expand_path("[app]/[stream]", &evil, 0).contains(".."));
    }
}
