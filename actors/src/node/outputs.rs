//! Which HLS or DASH muxer of a stream is the current one. Each muxer that starts takes a new
//! generation; when one ends, the disposal it schedules (`hls.dispose_s`, `dash.dispose_s`)
//! runs only if no newer muxer of the same stream started in the meantime, so a stream that
//! comes back keeps its files and one that does not leaves nothing behind.

use crate::node::bounded::BoundedMap;
use estuary_storage::StreamKey;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Streams tracked at most (live or waiting to be disposed); the oldest goes first.
const MAX_TRACKED: usize = 100_000;

/// A live output kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// HLS playlists and segments.
    Hls,
    /// DASH MPD and segments.
    Dash,
}

/// Generations of each stream's live outputs.
pub struct OutputGenerations {
    current: Mutex<BoundedMap<(StreamKey, OutputKind), u64>>,
    next: AtomicU64,
}

impl Default for OutputGenerations {
    fn default() -> Self {
        OutputGenerations { current: Mutex::new(BoundedMap::new(MAX_TRACKED)), next: AtomicU64::new(1) }
    }
}

impl OutputGenerations {
    /// A muxer of `kind` for `key` starts: its generation.
    pub fn begin(&self, key: &StreamKey, kind: OutputKind) -> u64 {
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        self.current.lock().unwrap_or_else(|e| e.into_inner()).insert((key.clone(), kind), generation);
        generation
    }

    /// True (and forgotten) when `generation` is still the current one of `key` and `kind`:
    /// the ended output may be disposed of.
    pub fn end_if_current(&self, key: &StreamKey, kind: OutputKind, generation: u64) -> bool {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let entry = (key.clone(), kind);
        if current.get(&entry) == Some(&generation) {
            current.remove(&entry);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_output_of_a_stream_is_disposed() {
        let outputs = OutputGenerations::default();
        let key = StreamKey::new("live", "a");
        let first = outputs.begin(&key, OutputKind::Hls);
        let second = outputs.begin(&key, OutputKind::Hls);
        assert!(!outputs.end_if_current(&key, OutputKind::Hls, first), "a newer muxer started");
        let dash = outputs.begin(&key, OutputKind::Dash);
        assert!(outputs.end_if_current(&key, OutputKind::Hls, second));
        assert!(!outputs.end_if_current(&key, OutputKind::Hls, second), "once");
        assert!(outputs.end_if_current(&key, OutputKind::Dash, dash), "kinds are apart");
    }
}
