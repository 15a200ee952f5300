//! The bookkeeping shared by long-running workers the API lists and stops (forwarders,
//! ingests, transcoders): a status snapshot the worker updates, a stop request it waits on,
//! and a table by id. The workers themselves run on the node's worker arbiters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// One worker's shared record; `K` identifies what it works on (for de-duplication).
#[derive(Debug)]
pub struct WorkerEntry<S, K> {
    status: Mutex<S>,
    stop: Notify,
    stopped: AtomicBool,
    /// What the worker works on.
    pub key: K,
}

impl<S: Clone, K> WorkerEntry<S, K> {
    /// A record with an initial status.
    pub fn new(status: S, key: K) -> Arc<Self> {
        Arc::new(WorkerEntry { status: Mutex::new(status), stop: Notify::new(), stopped: AtomicBool::new(false), key })
    }

    /// Changes the status.
    pub fn update(&self, f: impl FnOnce(&mut S)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// A snapshot of the status.
    pub fn status(&self) -> S {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Asks the worker to stop.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stop.notify_one();
    }

    /// Whether a stop was asked for, or the worker finished.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Marks the worker finished.
    pub fn mark_stopped(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Completes when a stop is asked for.
    pub async fn stop_requested(&self) {
        self.stop.notified().await;
    }
}

/// Finished workers kept for the API to show; older ones are forgotten.
const FINISHED_KEPT: usize = 256;

/// Workers of one kind by id (one table per kind in each node).
pub struct WorkerTable<S, K> {
    entries: Mutex<BTreeMap<u64, Arc<WorkerEntry<S, K>>>>,
    next_id: AtomicU64,
}

impl<S: Clone, K> WorkerTable<S, K> {
    /// An empty table.
    pub const fn new() -> Self {
        WorkerTable { entries: Mutex::new(BTreeMap::new()), next_id: AtomicU64::new(1) }
    }

    /// A fresh worker id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<WorkerEntry<S, K>>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds (or replaces, stopping the old one) worker `id`.
    pub fn insert(&self, id: u64, entry: Arc<WorkerEntry<S, K>>) {
        let mut entries = self.entries();
        if let Some(old) = entries.insert(id, entry) {
            old.stop();
        }
        // Workers started per publish (configured forwards, ladders) would otherwise pile up
        // as finished entries: keep the newest few for the API.
        let finished: Vec<u64> = entries.iter().filter(|(_, e)| e.is_stopped()).map(|(id, _)| *id).collect();
        for id in finished.iter().take(finished.len().saturating_sub(FINISHED_KEPT)) {
            entries.remove(id);
        }
    }

    /// A running worker whose key matches.
    pub fn find_running(&self, matches: impl Fn(&K) -> bool) -> Option<Arc<WorkerEntry<S, K>>> {
        self.entries().values().find(|e| matches(&e.key) && !e.is_stopped()).cloned()
    }

    /// Every worker's status, by id.
    pub fn list(&self) -> Vec<S> {
        self.entries().values().map(|e| e.status()).collect()
    }

    /// Stops and removes worker `id`; false when unknown.
    pub fn remove(&self, id: u64) -> bool {
        match self.entries().remove(&id) {
            Some(entry) => {
                entry.stop();
                true
            }
            None => false,
        }
    }
}

impl<S: Clone, K> Default for WorkerTable<S, K> {
    fn default() -> Self {
        Self::new()
    }
}
