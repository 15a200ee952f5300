//! Estuary's actors. All I/O lives here; wire formats come from `estuary-protocols`.
//!
//! Everything a node's actors share (threads, client table, restart counts, counters, hooks,
//! access policy, per-feature tables) is in its [`node::Node`] context, built once and handed
//! down: this crate keeps no process-wide state.
//!
//! | actor | where it runs | supervised by |
//! |---|---|---|
//! | [`registry::StreamRegistry`] — one per node: `app/stream` → stream actor, publish claims | system arbiter | — (never stops; carries no media) |
//! | [`stream::StreamActor`] — one per live stream: publisher input, headers, GOP cache, bounded fan-out, grace period | the worker its key hashes to | itself: panics caught, state started over, counted (`stream`) |
//! | [`rtmp::RtmpListener`], [`srt::SrtListener`] — accept connections / callers | system arbiter | actix `Supervisor`, capped exponential backoff; a panic stops it for a restart |
//! | [`rtmp::RtmpSession`] — one per connection, owns a sans-IO RTMP session, plus a writer task | worker arbiters, round robin | — (a failure ends that one connection) |
//! | SRT, WebRTC (WHIP/WHEP) and GB28181 sessions — tasks | worker arbiters, round robin | — (a failure ends that one session) |
//! | [`hls::HlsMuxer`], [`dash::DashMuxer`] | the segmenter arbiter | themselves: panics caught, counted (`hls`, `dash`) |
//! | [`dvr::DvrWriter`] | the DVR arbiter | itself: panics caught, file closed, gap indexed, counted (`dvr`) |
//! | [`storage::StorageActor`] — owns sled | its own `SyncArbiter` thread | itself (panics caught, counted `storage`); the `SyncArbiter` recreates it if it stops |
//!
//! HTTP-FLV and HTTP-TS players ([`http_live`]) are subscribers served through actix-web
//! streaming bodies; HLS and DASH muxers ([`hls`], [`dash`]) and the DVR writer are internal
//! subscribers with their own queue policy (see [`stream`]).
//!
//! Media enters a stream through its publisher's [`stream::PublisherLink`] (one bounded queue
//! per publisher) and leaves as `Arc<MediaFrame>` through each subscriber's bounded channel
//! (see [`stream`] for the drop-a-GOP policy). Control messages use bounded mailboxes.

pub mod access;
pub mod attach;
pub mod cluster;
pub mod dash;
pub mod delivery;
pub mod dvr;
pub mod files;
pub mod forward;
pub mod gb28181;
pub mod hls;
pub mod http_live;
pub mod ingest;
pub mod messages;
pub mod node;
pub mod package;
mod pktinfo;
pub mod registry;
pub mod rtmp;
pub mod settings;
pub mod srt;
pub mod storage;
pub mod stream;
pub mod tap;
pub mod transcode;
pub mod webrtc;

pub use estuary_storage::StreamKey;

/// Current Unix time in milliseconds.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Sends a control message without blocking the caller: `try_send` first, and when the
/// mailbox is full, a task that delivers it.
///
/// The bound this keeps is not the mailbox's: in actix 0.13 each `Addr` clone has a slot of
/// its own, so the spawned delivery always gets in. What bounds the overflow is who calls
/// this: control messages only (a stream's release and removal, a session's end), at most a
/// few per session or stream in its life, so the overflow is bounded by the number of live
/// sessions, which the listeners cap. Media never goes this way: it travels on each
/// publisher's bounded [`stream::PublisherLink`] and each subscriber's bounded channel.
pub fn tell<A, M>(addr: &actix::Addr<A>, msg: M)
where
    A: actix::Actor + actix::Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    match addr.try_send(msg) {
        Ok(()) => {}
        Err(actix::dev::SendError::Full(msg)) => {
            let addr = addr.clone();
            actix::spawn(async move {
                let _ = addr.send(msg).await;
            });
        }
        Err(actix::dev::SendError::Closed(_)) => {}
    }
}
