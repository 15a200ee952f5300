//! Counters for the metrics exporter: labelled counters bumped on rare events (connections,
//! refusals, hook calls, dropped datagrams) and an atomic for the hot path (frames players
//! lost). One [`Stats`] per node, in its [`crate::node::Node`].

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

/// A node's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Frames lost by slow players, all streams.
    pub frames_dropped: AtomicU64,
    /// Datagrams dropped because their session's inbox was full, by protocol (hot path under
    /// overload: plain atomics, no lock).
    pub datagrams_dropped_srt: AtomicU64,
    /// See `datagrams_dropped_srt`.
    pub datagrams_dropped_webrtc: AtomicU64,
    /// See `datagrams_dropped_srt`.
    pub datagrams_dropped_gb28181: AtomicU64,
    /// Storage updates dropped because the storage queue was full.
    pub storage_dropped: AtomicU64,
    counters: Mutex<BTreeMap<(&'static str, Labels), u64>>,
}

impl Stats {
    /// Adds one to counter `name` with `labels`. The label values come from a fixed set
    /// (protocols, actions, events, message types), so the map stays small.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        *self.counters.lock().unwrap_or_else(|e| e.into_inner()).entry((name, labels)).or_insert(0) += 1;
    }

    /// Every labelled counter.
    pub fn counters(&self) -> Vec<(&'static str, Labels, u64)> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|((n, l), v)| (*n, l.clone(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count_per_label_set() {
        let stats = Stats::default();
        stats.inc("c", &[("protocol", "rtmp")]);
        stats.inc("c", &[("protocol", "rtmp")]);
        stats.inc("c", &[("protocol", "srt")]);
        let counters = stats.counters();
        assert_eq!(counters.len(), 2);
        assert!(counters.contains(&("c", vec![("protocol", "rtmp".to_string())], 2)));
    }
}
