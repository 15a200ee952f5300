//! Worker arbiters: event-loop threads that connection actors are spread over, round robin.

use actix::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

static WORKERS: OnceLock<Workers> = OnceLock::new();

/// A set of arbiters.
#[derive(Clone)]
pub struct Workers {
    arbiters: Arc<Vec<ArbiterHandle>>,
    next: Arc<AtomicUsize>,
}

impl Workers {
    /// The arbiter for the next connection.
    pub fn next(&self) -> ArbiterHandle {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        self.arbiters[index].clone()
    }
}

/// Starts `count` worker arbiters (at least one) for the process. Later calls return the
/// first set.
pub fn start(count: usize) -> Workers {
    WORKERS
        .get_or_init(|| {
            let arbiters = (0..count.max(1)).map(|_| Arbiter::new().handle()).collect();
            Workers { arbiters: Arc::new(arbiters), next: Arc::new(AtomicUsize::new(0)) }
        })
        .clone()
}

/// The process's workers; starts one if none were configured.
pub fn get() -> Workers {
    start(1)
}
