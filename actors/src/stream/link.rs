//! The one way media enters a stream: a [`PublisherLink`], handed to a publishing session
//! when its claim succeeds.
//!
//! A link owns the only sender of a bounded channel (`stream.publish_queue_frames` frames)
//! whose receiver the stream actor drains. Unlike an actix `Addr` (where every clone gets a
//! mailbox slot of its own, so a clone's `try_send` never reports `Full`), a tokio bounded
//! channel has one bound for all senders, so the bound holds whatever the caller does:
//! - TCP publishers (RTMP, SRT, GB28181 over TCP, ingest) call [`PublisherLink::push`], which
//!   waits while the stream is behind; the session stops reading its socket meanwhile and
//!   TCP (or SRT's flow window) pushes back on the encoder.
//! - Datagram publishers (WHIP, GB28181 over UDP) call [`PublisherLink::push_or_drop`]: a
//!   frame that finds the queue full is dropped and counted for the stream and the client.
//!
//! Dropping the link (or the session that holds it) closes the channel; the stream actor
//! takes the frames still queued and then detaches that publisher, so no separate "detach"
//! message can be lost or overtake the last frames.

use crate::clients::{ClientId, ClientRecord};
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
}

impl PublisherLink {
    pub(super) fn new(key: StreamKey, client: ClientId, tx: mpsc::Sender<Arc<MediaFrame>>, drops: Arc<PublishDrops>, record: Option<Arc<ClientRecord>>) -> Self {
        PublisherLink { key, client, tx, drops, record }
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

    /// Queues `frame` if there is room; otherwise drops it and counts the drop for the stream
    /// and the client. Returns whether the frame was queued.
    pub fn push_or_drop(&self, frame: Arc<MediaFrame>) -> Result<bool, StreamGone> {
        match self.try_push(frame) {
            Ok(()) => Ok(true),
            Err(TryPush::Full(_)) => {
                let dropped = self.drops.frames.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(record) = &self.record {
                    record.frames_dropped.fetch_add(1, Ordering::Relaxed);
                }
                if dropped == 1 || dropped.is_power_of_two() {
                    tracing::warn!(stream = %self.key, client = self.client, dropped, "stream input queue full; dropping the publisher's frames");
                }
                Ok(false)
            }
            Err(TryPush::Gone) => Err(StreamGone),
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
