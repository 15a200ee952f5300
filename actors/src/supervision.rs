//! Restart bookkeeping shared by every supervised worker: a process-wide table of restart
//! counts (shown by the API and metrics) and a capped exponential backoff.
//!
//! The backoff doubles from `base` up to `cap` for each restart that follows the previous
//! start within `stable_after`; a worker that ran longer than that starts again from `base`.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

static RESTARTS: LazyLock<Mutex<BTreeMap<String, u64>>> = LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// Counts one restart of the worker called `name`.
pub fn record_restart(name: &str) {
    // A poisoned lock only means another thread panicked while counting; the map is still valid.
    let mut map = RESTARTS.lock().unwrap_or_else(|e| e.into_inner());
    *map.entry(name.to_string()).or_insert(0) += 1;
}

/// Makes `name` appear in the table with zero restarts.
pub fn register(name: &str) {
    let mut map = RESTARTS.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(name.to_string()).or_insert(0);
}

/// Restart counts by worker name.
pub fn restarts() -> BTreeMap<String, u64> {
    RESTARTS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Capped exponential backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    stable_after: Duration,
    attempt: u32,
    last_start: Option<Instant>,
}

impl Backoff {
    /// A backoff from `base` doubling to `cap`, reset after `stable_after` of uptime.
    pub fn new(base: Duration, cap: Duration, stable_after: Duration) -> Self {
        Backoff { base, cap, stable_after, attempt: 0, last_start: None }
    }

    /// The defaults for node workers: 100 ms doubling to 10 s, reset after 60 s.
    pub fn workers() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(10), Duration::from_secs(60))
    }

    /// Call at each start; returns how long to wait before starting (zero the first time).
    pub fn on_start(&mut self, now: Instant) -> Duration {
        let delay = match self.last_start {
            None => Duration::ZERO,
            Some(last) if now.duration_since(last) >= self.stable_after => {
                self.attempt = 0;
                Duration::ZERO
            }
            Some(_) => {
                let factor = 1u32 << self.attempt.min(16);
                self.attempt += 1;
                (self.base * factor).min(self.cap)
            }
        };
        self.last_start = Some(now + delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500), Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(b.on_start(t0), Duration::ZERO);
        let delays: Vec<_> = (1..=5).map(|i| b.on_start(t0 + Duration::from_secs(i)).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        assert_eq!(b.on_start(t0 + Duration::from_secs(600)), Duration::ZERO);
        assert_eq!(b.on_start(t0 + Duration::from_secs(601)).as_millis(), 100);
    }

    #[test]
    fn restart_table_counts() {
        register("test-worker");
        record_restart("test-worker");
        record_restart("test-worker");
        assert_eq!(restarts().get("test-worker"), Some(&2));
    }
}
