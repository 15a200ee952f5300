//! A count of what a node holds, by kind: actors (RTMP sessions, streams, muxers, DVR
//! writers) and per-connection tasks (SRT, WebRTC, GB28181 media, RTMPS relays, forwards,
//! ingests, transcodes, pulls, delivery players). Each holds a [`Counted`] for its life, so
//! after a load has gone every count returns to where it was: `GET /api/v1/tasks` shows
//! them, and the churn soak checks them. (The runtime's own task count does not see actix's
//! actors, which live in each arbiter's local task set.)

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Live things by kind.
#[derive(Debug, Default)]
pub struct Census {
    counts: Mutex<BTreeMap<&'static str, usize>>,
}

/// One live thing of a kind; dropping it takes it off the count.
#[derive(Debug)]
pub struct Counted {
    census: Arc<Census>,
    kind: &'static str,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut counts = self.census.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(self.kind) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Census {
    /// Counts one more `kind` until the returned value is dropped.
    pub fn enter(self: &Arc<Self>, kind: &'static str) -> Counted {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()).entry(kind).or_insert(0) += 1;
        Counted { census: self.clone(), kind }
    }

    /// `task`, counted as one `kind` from now until it completes or is dropped.
    pub fn track<F: Future>(self: &Arc<Self>, kind: &'static str, task: F) -> impl Future<Output = F::Output> {
        let counted = self.enter(kind);
        async move {
            let _counted = counted;
            task.await
        }
    }

    /// Every kind seen so far with its count now (kinds at zero stay listed).
    pub fn snapshot(&self) -> BTreeMap<&'static str, usize> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_guards_and_tracked_tasks() {
        let census = Arc::new(Census::default());
        let a = census.enter("session");
        let b = census.enter("session");
        let task = census.track("task", async { 7 });
        assert_eq!(census.snapshot().get("session"), Some(&2));
        assert_eq!(census.snapshot().get("task"), Some(&1));
        drop(a);
        drop(task);
        assert_eq!(census.snapshot().get("session"), Some(&1));
        assert_eq!(census.snapshot().get("task"), Some(&0));
        drop(b);
        assert!(census.snapshot().values().all(|n| *n == 0));
    }
}
