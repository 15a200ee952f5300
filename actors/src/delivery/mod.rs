//! The delivery engine: what players of a stream receive, written by one loop per worker
//! thread instead of a queue, a timer and a task per player.
//!
//! ## Shape
//! For each stream a worker serves, one *feed* subscribes to the stream actor (one bounded
//! queue, whatever the number of players) and appends each frame to a [`ring::Ring`]: the
//! stream's recent frames, each serialised once per output format and shared, by reference
//! count, by every player that needs the same bytes. A player is a [`ring::Cursor`]: the
//! number of the next frame it gets, and the few bytes of its own (control messages, the
//! headers it starts with, the rest of a frame the socket took only in part).
//!
//! The worker's loop wakes on a tick (`rtmp.write_merge_ms`, 50 ms by default) and writes,
//! for every player, everything from its cursor to the newest frame in one `writev`, without
//! waiting: a socket that takes nothing keeps its cursor until the next tick. A player that
//! joins is written to at once (sequence headers and the cached GOP), so startup does not wait
//! for a tick. With `write_merge_ms = 0` each frame goes out as it arrives.
//!
//! ## Slow players
//! A player further behind the newest frame than the window (`stream.player_queue_frames`)
//! loses frames up to the newest start point (a keyframe) and starts again there with fresh
//! headers: whole GOPs are lost, never part of one. Losses count in the player's, the stream's
//! and the node's `frames_dropped`. A player that has not caught up for
//! `stream.slow_player_timeout` since its first loss is disconnected, and a socket that takes
//! no byte for `rtmp.send_timeout` is closed.
//!
//! The ring holds the window, and the frames since the last keyframe for players that join
//! (up to `stream.gop_cache_max_frames`), within `stream.gop_cache_max_bytes` twice over; it is
//! shared, so a stalled player costs its cursor and its socket buffer, nothing more.

pub mod engine;
pub mod pending;
pub mod ring;

pub use engine::{hand_over, Outcome, Registration};

use std::sync::atomic::{AtomicU64, Ordering};

/// Figures of a stream's feeds, read by the stream actor for its own figures.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// Bytes written to players served by feeds.
    pub sent: AtomicU64,
    /// Media frames those players lost for being behind.
    pub dropped: AtomicU64,
    /// Players disconnected for staying behind.
    pub slow_disconnects: AtomicU64,
    /// Players the feeds serve now (a gauge: one up when a player joins a feed, one down when
    /// it leaves, whatever the way out).
    pub players: AtomicU64,
}

/// Holds one place in [`DeliveryCounters::players`] while a player is in a feed.
#[derive(Debug)]
pub struct PlayerCount(std::sync::Arc<DeliveryCounters>);

impl PlayerCount {
    /// Counts one more player.
    pub fn new(counters: std::sync::Arc<DeliveryCounters>) -> Self {
        counters.players.fetch_add(1, Ordering::Relaxed);
        PlayerCount(counters)
    }
}

impl Drop for PlayerCount {
    fn drop(&mut self) {
        self.0.players.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DeliveryCounters {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What a shared subscription (a feed) is told by its stream: how to bound its ring and its
/// players, and where to count.
#[derive(Debug, Clone)]
pub struct FeedTerms {
    /// Ring limits.
    pub limits: ring::RingLimits,
    /// A player behind for longer than this is disconnected.
    pub slow_player_timeout: std::time::Duration,
    /// The stream's counters.
    pub counters: std::sync::Arc<DeliveryCounters>,
}
