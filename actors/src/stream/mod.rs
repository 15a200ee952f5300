//! The stream actor: one per `app/stream`, the hub between one publisher and its subscribers.
//!
//! ## What it keeps
//! The latest metadata, video and audio sequence headers, and the frames since the last video
//! keyframe (the GOP cache, up to a configured number of frames). A late joiner receives
//! metadata, headers, then the cached GOP, then live frames, so its first video frame is a
//! keyframe. With no cached GOP it waits for the next keyframe.
//!
//! ## Fan-out and slow subscribers
//! Each subscriber has a bounded channel of `Arc<MediaFrame>`; fan-out is `try_send`, so the
//! publisher never waits for a player. When a subscriber's channel is full it starts dropping:
//! it loses frames until the next keyframe that finds room for the headers too (a whole GOP
//! is lost, never part of one). A subscriber that stays in that state longer than
//! `slow_player_timeout` is disconnected (its sender is dropped, so its reader ends).
//!
//! ## Publishers coming and going
//! When the publisher leaves, subscribers stay attached for `publisher_grace`. A publisher that
//! comes back in time resumes the same subscribers; its timestamps are rebased so the output
//! continues (monotonic, no jump back to zero). When the grace period ends without a
//! publisher, the actor stops, which ends every subscriber, and the registry forgets it.
//! An actor created for players waiting before any publish stays while it has players.

mod actor;
mod handlers;

pub use actor::{StreamActor, StreamInfo, Subscription};

#[cfg(test)]
mod tests;
