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
//! ## Media in: one bounded queue per publisher
//! A publisher's frames come through its [`PublisherLink`] (see [`link`]): a bounded queue
//! this actor drains, whose `push` waits when the stream is behind. Dropping the link
//! detaches the publisher after its last queued frame.
//!
//! ## Internal outputs
//! HLS, DASH and DVR subscribe like players but with their own queue
//! (`stream.output_queue_frames`) and policy: never disconnected for being slow, and every
//! loss is a [`Gap`] the output is told about at the keyframe that ends it (see [`gaps`]).
//!
//! ## Panics
//! Every handler and every frame runs through `guarded`: a panic is caught, counted (the
//! `stream` row of the restart table, and the stream's own `restarts`), and the actor starts
//! its media state over with its publisher and subscribers kept.
//!
//! ## Publishers coming and going
//! When the publisher leaves, subscribers stay attached for `publisher_grace`. A publisher that
//! comes back in time resumes the same subscribers; its timestamps are rebased so the output
//! continues (monotonic, no jump back to zero). When the grace period ends without a
//! publisher, the actor stops, which ends every subscriber, and the registry forgets it.
//! An actor created for players waiting before any publish stays while it has players.

mod actor;
mod fanout;
pub mod gaps;
mod gop;
mod handlers;
pub mod link;
pub(crate) mod stats;

pub use actor::{StreamActor, Subscription};
pub use stats::StreamInfo;
pub use gaps::{Gap, Gaps};
pub use link::{PublisherLink, StreamGone, TryPush};

#[cfg(test)]
mod tests;
