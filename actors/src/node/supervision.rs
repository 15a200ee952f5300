//! Restart bookkeeping shared by every supervised worker: the node's table of restart counts
//! ([`Restarts`], shown by the API and metrics), a capped exponential backoff, and [`catch`],
//! which turns a panic inside an actor's handler into an error the actor recovers from.
//!
//! actix does not catch panics: a panic in a handler ends that actor's future (on a
//! `SyncArbiter`, its thread) without `stopped` running, and its `Supervisor` never sees it.
//! So every actor that must survive a bug calls into its own state through [`catch`] and,
//! on a panic, counts a restart and resets that state (see each actor's docs for what it
//! keeps and what it starts over).
//!
//! The backoff doubles from `base` up to `cap` for each restart that follows the previous
//! start within `stable_after`; a worker that ran longer than that starts again from `base`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Restart counts by worker name (a fixed set of names: one per kind of worker, never per
/// stream or client, so the table stays small).
#[derive(Debug, Default)]
pub struct Restarts(Mutex<BTreeMap<String, u64>>);

impl Restarts {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        // A poisoned lock only means another thread panicked while counting; the map is still valid.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one restart of the worker called `name`.
    pub fn record(&self, name: &str) {
        *self.map().entry(name.to_string()).or_insert(0) += 1;
    }

    /// Makes `name` appear in the table with zero restarts.
    pub fn register(&self, name: &str) {
        self.map().entry(name.to_string()).or_insert(0);
    }

    /// Restart counts by worker name.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.map().clone()
    }
}

/// A handler panicked; the text is the panic's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("panicked: {0}")]
pub struct Panicked(pub String);

impl Restarts {
    /// Counts a caught panic of `worker` as a restart and logs it with `context` (the stream,
    /// the request); the caller then starts over what the panicking code touched.
    pub fn panicked(&self, worker: &str, context: &dyn std::fmt::Display, panic: &Panicked) {
        self.record(worker);
        tracing::error!(worker, context = %context, panic = %panic.0, "a handler panicked; the actor restarts its state");
    }
}

/// Runs `f`, turning a panic into [`Panicked`]. Costs nothing more than the call when
/// nothing panics; on a panic the caller reports it ([`Restarts::panicked`]) and starts over.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panicked> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        Panicked(message)
    })
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

    /// For retry loops: the wait after a failed attempt, `base` doubling to `cap`.
    pub fn after_failure(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(16);
        self.attempt += 1;
        (self.base * factor).min(self.cap)
    }

    /// Back to `base` (the last attempt succeeded, or ran long enough).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How long a run must last to count as stable (then the next wait starts from `base`).
    pub fn stable_after(&self) -> Duration {
        self.stable_after
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
    fn retry_waits_double_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), Duration::from_secs(60));
        let waits: Vec<u64> = (0..7).map(|_| b.after_failure().as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.after_failure().as_secs(), 1);
    }

    #[test]
    fn catch_passes_results_through_and_a_panic_is_counted() {
        let restarts = Restarts::default();
        restarts.register("catch-test");
        assert_eq!(catch(|| 7), Ok(7));
        let caught = catch(|| -> u8 { panic!("boom {}", 1) });
        assert_eq!(caught, Err(Panicked("boom 1".into())));
        restarts.panicked("catch-test", &"ctx", &Panicked("boom 1".into()));
        assert_eq!(restarts.snapshot().get("catch-test"), Some(&1));
    }

    #[test]
    fn restart_table_counts() {
        let restarts = Restarts::default();
        restarts.register("test-worker");
        restarts.record("test-worker");
        restarts.record("test-worker");
        assert_eq!(restarts.snapshot().get("test-worker"), Some(&2));
    }
}
