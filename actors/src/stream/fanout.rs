//! Fan-out: each frame to every subscriber's bounded channel, with the drop-a-GOP policy for
//! players and the gap policy for internal outputs (see the module docs).

use super::actor::{StreamActor, Subscription};
use super::gaps::{Gap, Gaps};
use super::gop::retime;
use crate::node::clients::{ClientId, ClientRecord};
use estuary_protocols::media::{MediaFrame, TrackKind};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Why an output lost frames: its queue overflowed (a slow disk).
const OVERFLOW: &str = "output could not keep up";
/// Why an output lost frames: the stream actor started over after a panic.
pub(super) const RESTARTED: &str = "stream restarted after a panic";

pub(super) struct Subscriber {
    pub tx: mpsc::Sender<Arc<MediaFrame>>,
    /// An internal output (HLS, DASH, DVR): never cut off for being slow; its losses are
    /// noted in `gaps`.
    pub internal: bool,
    pub gaps: Gaps,
    /// While losing frames (after an overflow or a restart, not while a new subscriber waits
    /// for its first keyframe): why.
    pub lost_reason: Option<&'static str>,
    /// Media time of the first frame lost.
    pub lost_from_ms: Option<i64>,
    pub record: Option<Arc<ClientRecord>>,
    /// A feed of the delivery engine: its players are counted in the stream's delivery
    /// counters, not as this one subscriber.
    pub feed: bool,
    pub dropping: bool,
    pub behind_since: Option<Instant>,
    pub dropped: u64,
    /// After (re)starting at a keyframe: audio presented before that keyframe is skipped, so
    /// the player's tracks start together (the GOP's audio begins at the keyframe's decode
    /// time, which B-frames put before its presentation time).
    pub audio_floor_ms: Option<i64>,
}

impl StreamActor {
    pub(super) fn subscribed(&self, id: Option<ClientId>) -> bool {
        id.and_then(|id| self.subscribers.get(&id)).is_some_and(|s| !s.tx.is_closed())
    }

    pub(super) fn fan_out(&mut self, frame: &Arc<MediaFrame>) {
        let now = Instant::now();
        let start_point = self.is_start_point(frame);
        let header_count = self.headers().count();
        let headers: Vec<Arc<MediaFrame>> = if start_point { self.headers().cloned().collect() } else { Vec::new() };
        let mut closed = Vec::new();
        for (id, sub) in self.subscribers.iter_mut() {
            if let Some(floor) = sub.audio_floor_ms {
                if frame.track == TrackKind::Audio && !frame.config && !sub.dropping {
                    if frame.pts_ms() < floor {
                        continue;
                    }
                    sub.audio_floor_ms = None;
                }
            }
            if sub.dropping {
                // Resume only at a start point with room for headers and the frame.
                if start_point && sub.tx.capacity() > header_count {
                    for header in &headers {
                        let dts = if header.track == TrackKind::Data { 0 } else { frame.dts };
                        let _ = sub.tx.try_send(retime(header, dts));
                    }
                    // A gap is noted only where frames were lost (a restart right before a
                    // keyframe loses nothing).
                    let gap = match (sub.internal, sub.lost_reason, sub.lost_from_ms) {
                        (true, Some(reason), Some(from)) => Some(Gap { resume: frame.clone(), from_dts_ms: from, lost_frames: sub.dropped, reason }),
                        _ => None,
                    };
                    let noted = gap.is_some();
                    if let Some(gap) = gap {
                        sub.gaps.note(gap);
                    }
                    if sub.tx.try_send(frame.clone()).is_ok() {
                        if noted {
                            tracing::warn!(stream = %self.key, output = id, lost_frames = sub.dropped, reason = sub.lost_reason.unwrap_or_default(), "output resumes at this keyframe after a gap");
                        }
                        sub.dropping = false;
                        sub.behind_since = None;
                        sub.lost_reason = None;
                        sub.lost_from_ms = None;
                        sub.dropped = 0;
                        if frame.track == TrackKind::Video {
                            sub.audio_floor_ms = Some(frame.pts_ms());
                        }
                        continue;
                    }
                    if noted {
                        sub.gaps.withdraw_last();
                    }
                }
                // Frames skipped while a new subscriber waits for its first keyframe are not
                // losses; frames skipped after an overflow (or a restart) are.
                if !frame.config && sub.lost_reason.is_some() {
                    sub.dropped += 1;
                    sub.lost_from_ms.get_or_insert(frame.dts_ms());
                    if sub.internal {
                        if sub.lost_reason == Some(OVERFLOW) {
                            self.output_frames_lost += 1;
                        }
                    } else {
                        self.frames_dropped += 1;
                        self.node.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                        if let Some(record) = &sub.record {
                            record.frames_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                continue;
            }
            match sub.tx.try_send(frame.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.dropping = true;
                    sub.dropped = 1;
                    sub.lost_reason = Some(OVERFLOW);
                    sub.lost_from_ms = Some(frame.dts_ms());
                    if sub.internal {
                        // Never timed out: an output resumes by itself at a keyframe.
                        self.output_frames_lost += 1;
                        tracing::warn!(stream = %self.key, output = id, queue = sub.tx.max_capacity(), "output (HLS, DASH or DVR) cannot keep up: its queue is full; it loses frames until a keyframe finds room, and records the gap");
                    } else {
                        sub.behind_since = Some(now);
                        self.frames_dropped += 1;
                        self.node.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                        if let Some(record) = &sub.record {
                            record.frames_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::debug!(stream = %self.key, client = id, "subscriber queue full; dropping until the next keyframe");
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => closed.push(*id),
            }
        }
        for id in closed {
            self.subscribers.remove(&id);
        }
    }

    /// A player's subscription primed with headers and the cached GOP or, with `shared`, a feed of the delivery engine: counted
    /// through the stream's delivery counters instead of a client record.
    pub(super) fn subscribe_for(&mut self, client: ClientId, shared: bool) -> Subscription {
        let mut subscription = self.subscribe_as(client, false);
        if shared {
            if let Some(sub) = self.subscribers.get_mut(&client) {
                sub.record = None;
                sub.feed = true;
            }
            let settings = &self.settings;
            let gop_frames = if settings.gop_cache { settings.gop_cache_max_frames } else { 0 };
            subscription.shared = Some(crate::delivery::FeedTerms {
                limits: crate::delivery::ring::RingLimits { window_frames: settings.player_queue_frames, gop_frames, max_bytes: settings.gop_cache_max_bytes.saturating_mul(2) },
                slow_player_timeout: settings.slow_player_timeout,
                counters: self.delivery.clone(),
            });
        }
        subscription
    }

    /// A subscription for a player or, with `internal`, for an output of this node (HLS,
    /// DASH, DVR), which has its own queue size and is never cut off (see [`super::gaps`]).
    pub(super) fn subscribe_as(&mut self, client: ClientId, internal: bool) -> Subscription {
        let queue = if internal { self.settings.output_queue_frames } else { self.settings.player_queue_frames };
        let capacity = queue.max(self.gop.len() + 8);
        let (tx, rx) = mpsc::channel(capacity);
        let gaps = Gaps::default();
        let first_dts = self.gop.first().map(|f| f.dts);
        // Without a cached GOP the subscriber waits for the next keyframe, which sends the
        // headers then; priming them now would send them twice.
        let waiting_for_keyframe = self.gop.is_empty() && self.video_config.is_some();
        let primed_headers: Vec<&Arc<MediaFrame>> = if waiting_for_keyframe { Vec::new() } else { self.headers().collect() };
        for header in primed_headers {
            let frame = match first_dts {
                Some(dts) if header.track != TrackKind::Data => retime(header, dts),
                _ => header.clone(),
            };
            // Capacity exceeds headers + GOP, so these cannot fail.
            let _ = tx.try_send(frame);
        }
        // The newest caption, while fresh, at the start's time (as the delivery ring does for
        // its joiners: `Ring::headers_for`).
        if let (Some(caption), Some(start), false) = (&self.last_caption, self.gop.first(), waiting_for_keyframe) {
            if let Some(caption) = crate::delivery::ring::caption_for_joiner(caption, start) {
                let _ = tx.try_send(caption);
            }
        }
        let start_pts = self.gop.first().map(|f| f.pts_ms());
        let mut audio_started = false;
        for frame in &self.gop {
            if frame.track == TrackKind::Audio && !audio_started {
                if start_pts.is_some_and(|start| frame.pts_ms() < start) {
                    continue;
                }
                audio_started = true;
            }
            let _ = tx.try_send(frame.clone());
        }
        self.subscribers.insert(
            client,
            Subscriber {
                tx,
                internal,
                gaps: gaps.clone(),
                lost_reason: None,
                lost_from_ms: None,
                record: self.node.clients.get(client),
                feed: false,
                dropping: waiting_for_keyframe,
                behind_since: None,
                dropped: 0,
                audio_floor_ms: if audio_started { None } else { start_pts },
            },
        );
        let known = self.video_config.is_some() || self.audio_config.is_some();
        Subscription {
            rx,
            has_audio: !known || self.audio_config.is_some(),
            has_video: !known || self.video_config.is_some(),
            gaps,
            shared: None,
        }
    }
}
