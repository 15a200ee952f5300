//! Worker arbiters: the event-loop threads (`node.workers`, one per core by default) that
//! do the media work. Connections are spread over them round robin; stream actors are placed
//! by a hash of their key, so each stream's fan-out runs on one thread and different streams
//! use different cores.

use actix::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What a worker's sessions share, used only from the worker's own thread (so its locks are
/// never contended): memoised work that players of the same stream on one worker would
/// otherwise each redo.
#[derive(Default)]
pub struct WorkerLocals {
    /// The inbox of the worker's delivery loop (see `delivery`).
    pub delivery: crate::delivery::engine::Port,
    /// What WHEP players of a stream share: the AAC-to-Opus transcoder and the RTP payloads
    /// of video frames (see `webrtc::shared`).
    pub whep: std::sync::Mutex<crate::webrtc::shared::PlayerShares>,
}

/// One worker: its arbiter and what its sessions share.
#[derive(Clone)]
pub struct Worker {
    /// The event loop.
    pub arbiter: ArbiterHandle,
    /// Shared by the sessions placed here.
    pub locals: Arc<WorkerLocals>,
}

/// A set of arbiters.
#[derive(Clone)]
pub struct Workers {
    arbiters: Arc<Vec<Worker>>,
    next: Arc<AtomicUsize>,
}

impl Workers {
    /// Starts `count` worker arbiters (at least one). Call inside an actix system.
    pub fn start(count: usize) -> Workers {
        let arbiters = (0..count.max(1)).map(|_| Worker { arbiter: Arbiter::new().handle(), locals: Arc::default() }).collect();
        Workers { arbiters: Arc::new(arbiters), next: Arc::new(AtomicUsize::new(0)) }
    }

    /// The arbiter for the next connection.
    pub fn next(&self) -> ArbiterHandle {
        self.next_worker().arbiter
    }

    /// The worker for the next connection, with what its sessions share.
    pub fn next_worker(&self) -> Worker {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        self.arbiters[index].clone()
    }

    /// The arbiter of the stream `key` (the same one for the life of the process).
    pub fn for_key(&self, key: &estuary_storage::StreamKey) -> ArbiterHandle {
        self.arbiters[index_for(key, self.arbiters.len())].arbiter.clone()
    }

    /// How many arbiters there are.
    pub fn len(&self) -> usize {
        self.arbiters.len()
    }

    /// Never true: there is at least one arbiter.
    pub fn is_empty(&self) -> bool {
        self.arbiters.is_empty()
    }
}

/// The index among `count` arbiters for `key`: FNV-1a of `vhost/app/stream`, stable across
/// runs (unlike std's randomly seeded hasher), so a stream's thread is predictable in tests
/// and benchmarks.
pub fn index_for(key: &estuary_storage::StreamKey, count: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.vhost.bytes().chain([b'/']).chain(key.app.bytes()).chain([b'/']).chain(key.stream.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % count.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_storage::StreamKey;

    #[test]
    fn streams_spread_over_arbiters_and_stay_put() {
        let keys: Vec<StreamKey> = (0..64).map(|i| StreamKey::new("live", &format!("s{i}"))).collect();
        let mut per = [0usize; 2];
        for key in &keys {
            let index = index_for(key, 2);
            assert_eq!(index, index_for(key, 2), "stable");
            per[index] += 1;
        }
        assert!(per[0] > 16 && per[1] > 16, "both arbiters get streams: {per:?}");
        assert_eq!(index_for(&keys[0], 1), 0);
    }
}
