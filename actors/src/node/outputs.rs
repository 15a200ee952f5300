//! Which HLS or DASH muxer of a stream is the current one, and the files an ended one left.
//!
//! Each muxer that starts takes a new generation. When one ends it hands in its files; the
//! disposal it schedules (`hls.dispose_s`, `dash.dispose_s`) removes them only if no newer
//! muxer of the same stream started meanwhile. A newer muxer takes the files over instead: HLS
//! continues the old playlist (its segments leave through the window as usual), DASH starts a
//! new MPD and deletes them at once. So a stream that comes back keeps what it uses and one that
//! does not leaves nothing behind.
//!
//! Entries exist only for live muxers and for ended ones waiting for their disposal (or
//! removed at once when the dispose time is zero), so the table is bounded by the streams live
//! plus those ended within the dispose time.

use estuary_storage::StreamKey;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A live output kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// HLS playlists and segments.
    Hls,
    /// DASH MPD and segments.
    Dash,
}

struct Entry {
    generation: u64,
    /// Files of the ended muxer `generation`, waiting for their disposal.
    left: Vec<PathBuf>,
}

/// Generations of each stream's live outputs.
pub struct OutputGenerations {
    current: Mutex<HashMap<(StreamKey, OutputKind), Entry>>,
    next: AtomicU64,
}

impl Default for OutputGenerations {
    fn default() -> Self {
        OutputGenerations { current: Mutex::new(HashMap::new()), next: AtomicU64::new(1) }
    }
}

impl OutputGenerations {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(StreamKey, OutputKind), Entry>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A muxer of `kind` for `key` starts: its generation, and the files an ended muxer of
    /// the same stream left that are not disposed of yet (now this muxer's to handle).
    pub fn begin(&self, key: &StreamKey, kind: OutputKind) -> (u64, Vec<PathBuf>) {
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        let old = self.map().insert((key.clone(), kind), Entry { generation, left: Vec::new() });
        (generation, old.map(|e| e.left).unwrap_or_default())
    }

    /// Muxer `generation` ended leaving `files`. With `keep` (a dispose time to wait) they are
    /// held for [`OutputGenerations::dispose`]; without, the entry goes. If a newer muxer
    /// already started, the files are given back (the caller decides; nothing is held).
    pub fn ended(&self, key: &StreamKey, kind: OutputKind, generation: u64, files: Vec<PathBuf>, keep: bool) -> Option<Vec<PathBuf>> {
        let mut map = self.map();
        let entry = (key.clone(), kind);
        match map.get_mut(&entry) {
            Some(current) if current.generation == generation => {
                if keep {
                    current.left = files;
                } else {
                    map.remove(&entry);
                }
                None
            }
            _ => Some(files),
        }
    }

    /// The files muxer `generation` left, if it is still the latest of its stream (then the
    /// entry goes): they may be deleted.
    pub fn dispose(&self, key: &StreamKey, kind: OutputKind, generation: u64) -> Option<Vec<PathBuf>> {
        let mut map = self.map();
        let entry = (key.clone(), kind);
        if map.get(&entry).is_some_and(|e| e.generation == generation) {
            return map.remove(&entry).map(|e| e.left);
        }
        None
    }

    /// Streams tracked now (live muxers and ended ones waiting for disposal).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// True when none is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_output_is_disposed_and_a_newer_one_takes_the_files_over() {
        let outputs = OutputGenerations::default();
        let key = StreamKey::new("live", "a");
        let files = |n: &str| vec![PathBuf::from(n)];
        let (first, inherited) = outputs.begin(&key, OutputKind::Hls);
        assert!(inherited.is_empty());
        assert_eq!(outputs.ended(&key, OutputKind::Hls, first, files("a-0.ts"), true), None, "held for its disposal");
        // Back before the disposal: the new muxer takes the files over, the old disposal is void.
        let (second, inherited) = outputs.begin(&key, OutputKind::Hls);
        assert_eq!(inherited, files("a-0.ts"));
        assert_eq!(outputs.dispose(&key, OutputKind::Hls, first), None);
        assert_eq!(outputs.ended(&key, OutputKind::Hls, second, files("a-1.ts"), true), None);
        assert_eq!(outputs.dispose(&key, OutputKind::Hls, second), Some(files("a-1.ts")));
        assert!(outputs.is_empty(), "disposed entries go");
        // With no dispose time the entry goes at the end; kinds are apart.
        let (dash, _) = outputs.begin(&key, OutputKind::Dash);
        assert_eq!(outputs.ended(&key, OutputKind::Dash, dash, files("a.mpd"), false), None);
        assert!(outputs.is_empty());
        // An old muxer ending after a newer one started gets its files back.
        let (old, _) = outputs.begin(&key, OutputKind::Hls);
        let (_new, _) = outputs.begin(&key, OutputKind::Hls);
        assert_eq!(outputs.ended(&key, OutputKind::Hls, old, files("a-9.ts"), true), Some(files("a-9.ts")));
    }
}
