//! Process-wide counters for the metrics exporter: labelled counters bumped on rare events
//! (connections, refusals, hook calls) and atomics for hot paths (dropped frames, bytes of
//! finished clients).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

/// Frames lost by slow subscribers, all streams.
pub static FRAMES_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Bytes received from clients that have disconnected.
pub static CLOSED_BYTES_IN: AtomicU64 = AtomicU64::new(0);
/// Bytes sent to clients that have disconnected.
pub static CLOSED_BYTES_OUT: AtomicU64 = AtomicU64::new(0);

type Labels = Vec<(&'static str, String)>;

static COUNTERS: LazyLock<Mutex<BTreeMap<(&'static str, Labels), u64>>> = LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// Adds one to counter `name` with `labels`.
pub fn inc(name: &'static str, labels: &[(&'static str, &str)]) {
    let labels: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
    *COUNTERS.lock().unwrap_or_else(|e| e.into_inner()).entry((name, labels)).or_insert(0) += 1;
}

/// Every labelled counter.
pub fn counters() -> Vec<(&'static str, Labels, u64)> {
    COUNTERS.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|((n, l), v)| (*n, l.clone(), *v)).collect()
}

/// Adds a finished client's bytes to the totals.
pub fn add_closed_bytes(bytes_in: u64, bytes_out: u64) {
    CLOSED_BYTES_IN.fetch_add(bytes_in, Ordering::Relaxed);
    CLOSED_BYTES_OUT.fetch_add(bytes_out, Ordering::Relaxed);
}
