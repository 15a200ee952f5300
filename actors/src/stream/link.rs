//! The one way media enters a stream: a [`PublisherLink`], handed to a publishing session
//! when its claim succeeds.
//!
//! A link owns the only sender of a bounded channel (`stream.publish_queue_frames` frames)
//! whose receiver the stream actor drains. Unlike an actix `Addr` (where every clone gets a
//! mailbox slot of its own, so a clone's `try_send` never reports `Full`), a tokio bounded
//! channel has one bound for all senders, so the bound holds whatever the caller does:
//! - TCP publishers (RTMP, GB28181 over TCP, file ingest) call [`PublisherLink::push`], which
//!   waits while the stream is behind; the session stops reading its socket meanwhile and
//!   TCP pushes back on the encoder.
//! - Datagram publishers (WHIP, SRT, GB28181 over UDP) call [`PublisherLink::push_or_drop`]:
//!   a frame that finds the queue full is dropped and counted for the stream and the client,
//!   video until the next keyframe; codec headers are held, never dropped. (SRT's session
//!   task also runs the SRT protocol, so it must not wait; SRT live mode drops late data
//!   too.)
//!
//! Dropping the link (or the session that holds it) closes the channel; the stream actor
//! takes the frames still queued and then detaches that publisher, so no separate "detach"
//! message can be lost or overtake the last frames.

use crate::node::clients::{ClientId, ClientRecord};
use estuary_protocols::MediaFrame;
use estuary_storage::StreamKey;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Counters shared by a stream actor and its publisher's link.
#[derive(Debug, Default)]
pub struct PublishDrops {
    /// Frames dropped because the stream's input queue was full.
    pub frames: AtomicU64,
}

/// The stream actor went away (it stopped, or restarted its input); the session should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream actor went away")]
pub struct StreamGone;

/// A publishing session's handle on its stream.
#[derive(Debug)]
pub struct PublisherLink {
    key: StreamKey,
    client: ClientId,
    tx: mpsc::Sender<Arc<MediaFrame>>,
    drops: Arc<PublishDrops>,
    record: Option<Arc<ClientRecord>>,
    /// After a video frame was dropped: video waits for the next keyframe (frames that
    /// depend on a lost one would only show as corruption).
    video_broken: bool,
    /// Codec headers that found the queue full: sent before the next frame that gets in,
    /// never dropped (only the newest of each track is kept).
    held_configs: Vec<Arc<MediaFrame>>,
}

impl PublisherLink {
    pub(super) fn new(key: StreamKey, client: ClientId, tx: mpsc::Sender<Arc<MediaFrame>>, drops: Arc<PublishDrops>, record: Option<Arc<ClientRecord>>) -> Self {
        PublisherLink { key, client, tx, drops, record, video_broken: false, held_configs: Vec::new() }
    }

    /// The stream this link feeds.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// The publishing client.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Queues `frame`, waiting while the stream's input queue is full.
    pub async fn push(&self, frame: Arc<MediaFrame>) -> Result<(), StreamGone> {
        self.tx.send(frame).await.map_err(|_| StreamGone)
    }

    /// Queues `frame` if there is room now; gives it back when the queue is full.
    pub fn try_push(&self, frame: Arc<MediaFrame>) -> Result<(), TryPush> {
        match self.tx.try_send(frame) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(frame)) => Err(TryPush::Full(frame)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TryPush::Gone),
        }
    }

    /// For datagram publishers: queues `frame` if there is room; otherwise drops it and counts
    /// the drop for the stream and the client. Returns whether the frame was queued.
    ///
    /// A drop never leaves damage behind it: after a video frame is lost, video frames are
    /// dropped (counted) until the next keyframe, and codec headers are never lost (one that
    /// finds the queue full is held and sent before the next frame that gets in). The caller
    /// may ask its peer for a keyframe when this returns `false` (WHIP sends a PLI).
    pub fn push_or_drop(&mut self, frame: Arc<MediaFrame>) -> Result<bool, StreamGone> {
        if frame.config {
            self.held_configs.retain(|held| held.track != frame.track);
            self.held_configs.push(frame);
            return self.flush_held().map(|flushed| flushed && self.held_configs.is_empty());
        }
        let video = frame.track == estuary_protocols::media::TrackKind::Video;
        if video && self.video_broken && !frame.keyframe {
            self.count_drop();
            return Ok(false);
        }
        // Held headers go first; if they still do not fit, neither does this frame.
        if !self.flush_held()? {
            if video {
                self.video_broken = true;
            }
            self.count_drop();
            return Ok(false);
        }
        match self.try_push(frame) {
            Ok(()) => {
                if video {
                    self.video_broken = false;
                }
                Ok(true)
            }
            Err(TryPush::Full(_)) => {
                if video {
                    self.video_broken = true;
                }
                self.count_drop();
                Ok(false)
            }
            Err(TryPush::Gone) => Err(StreamGone),
        }
    }

    /// Sends held codec headers; true when none is left.
    fn flush_held(&mut self) -> Result<bool, StreamGone> {
        while let Some(config) = self.held_configs.first().cloned() {
            match self.try_push(config) {
                Ok(()) => {
                    self.held_configs.remove(0);
                }
                Err(TryPush::Full(_)) => return Ok(false),
                Err(TryPush::Gone) => return Err(StreamGone),
            }
        }
        Ok(true)
    }

    fn count_drop(&self) {
        let dropped = self.drops.frames.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(record) = &self.record {
            record.frames_dropped.fetch_add(1, Ordering::Relaxed);
        }
        if dropped == 1 || dropped.is_power_of_two() {
            tracing::warn!(stream = %self.key, client = self.client, dropped, "stream input queue full; dropping the publisher's frames (video until the next keyframe)");
        }
    }

    /// A sender for a future that must outlive a borrow of the session (for example a
    /// `ctx.wait` in an actor). It shares this link's bound.
    pub fn sender(&self) -> mpsc::Sender<Arc<MediaFrame>> {
        self.tx.clone()
    }
}

/// Why [`PublisherLink::try_push`] did not queue a frame.
#[derive(Debug)]
pub enum TryPush {
    /// The queue is full; the frame is given back.
    Full(Arc<MediaFrame>),
    /// The stream actor went away.
    Gone,
}
