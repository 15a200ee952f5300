//! HLS and DASH muxer actors: one of each per stream (when enabled for its app), each a
//! subscriber of the stream actor like any player, on a dedicated arbiter so their file
//! writes never stall connection or stream actors.
//!
//! Segments are cut at the first video keyframe (audio-only: audio frame) at or after the
//! target duration. Files are written atomically (temporary name, then rename), so a reader
//! never sees half a segment or half a playlist. A segment leaving the playlist window stays
//! on disk for one more window (players may still be fetching it), then it is deleted: disk
//! use per stream is bounded by about twice the window.
//!
//! A stream that ends gets `EXT-X-ENDLIST` (HLS). A stream published again later continues
//! the same numbering after an `EXT-X-DISCONTINUITY`; so does a codec change within one
//! publish (the muxer keeps its state per stream in a process-wide table).

mod dash;
mod files;
mod hls;

pub use dash::DashMuxer;
pub use hls::HlsMuxer;

use actix::prelude::*;
use std::sync::OnceLock;

static ARBITER: OnceLock<ArbiterHandle> = OnceLock::new();

/// The arbiter muxers run on.
pub fn arbiter() -> ArbiterHandle {
    ARBITER.get_or_init(|| Arbiter::new().handle()).clone()
}
