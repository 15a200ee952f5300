use crate::clients::{ClientId, ClientRecord};
use crate::node::NodeContext;
use crate::messages::{ForgetStream, RecordCodecs, RecordPublishEnd, ReleasePublish};
use crate::registry::StreamRegistry;
use crate::settings::StreamSettings;
use crate::storage::StorageHandle;
use actix::prelude::*;
use estuary_protocols::aac::AacConfig;
use estuary_protocols::avc::AvcConfig;
use estuary_protocols::media::{Codec, MediaFrame, Timebase, TrackKind};
use estuary_storage::{AudioInfo, StreamKey, VideoInfo};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use super::gaps::{Gap, Gaps};
use super::link::{PublishDrops, PublisherLink};
use tokio::sync::mpsc;

/// What a subscriber receives.
#[derive(Debug)]
pub struct Subscription {
    /// Frames, ending when the stream ends or the subscriber is cut off.
    pub rx: mpsc::Receiver<Arc<MediaFrame>>,
    /// The stream has (or may have) audio.
    pub has_audio: bool,
    /// The stream has (or may have) video.
    pub has_video: bool,
    /// Where an internal output lost frames (always empty for players, which are not told).
    pub gaps: Gaps,
}

/// A snapshot for the API.
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    /// `app`.
    pub app: String,
    /// `stream`.
    pub stream: String,
    /// `vhost`.
    pub vhost: String,
    /// Publishing client.
    pub publisher: Option<ClientId>,
    /// Its protocol.
    pub publisher_protocol: Option<&'static str>,
    /// Milliseconds since the current publish started.
    pub live_ms: u64,
    /// Subscribers now.
    pub subscribers: usize,
    /// Video track.
    pub video: Option<VideoInfo>,
    /// Audio track.
    pub audio: Option<AudioInfo>,
    /// Frames per second measured over the last seconds.
    pub fps: f64,
    /// Bytes received in this actor's life.
    pub bytes_in: u64,
    /// Bytes sent to subscribers in this actor's life.
    pub bytes_out: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames subscribers lost to backpressure.
    pub frames_dropped: u64,
    /// Subscribers disconnected for being too slow.
    pub slow_disconnects: u64,
    /// Frames a datagram publisher lost because this stream's input queue was full.
    pub publish_dropped: u64,
    /// Frames internal outputs (HLS, DASH, DVR) lost to a disk that could not keep up; each
    /// loss is a logged, indexed gap.
    pub output_frames_lost: u64,
    /// Times this stream's actor caught a panic and started its state over.
    pub restarts: u64,
    /// Receive rate over 30 s, kbit/s.
    pub kbps_in_30s: u64,
    /// Send rate over 30 s, kbit/s.
    pub kbps_out_30s: u64,
    /// Waiting for the publisher to come back.
    pub in_grace: bool,
}

pub(super) struct Subscriber {
    pub tx: mpsc::Sender<Arc<MediaFrame>>,
    /// An internal output (HLS, DASH, DVR): never cut off for being slow; its losses are
    /// noted in `gaps`.
    pub internal: bool,
    pub gaps: Gaps,
    /// While dropping: media time of the first frame lost.
    pub lost_from_ms: Option<i64>,
    pub record: Option<Arc<ClientRecord>>,
    pub dropping: bool,
    pub behind_since: Option<Instant>,
    pub dropped: u64,
    /// After (re)starting at a keyframe: audio presented before that keyframe is skipped, so
    /// the player's tracks start together (the GOP's audio begins at the keyframe's decode
    /// time, which B-frames put before its presentation time).
    pub audio_floor_ms: Option<i64>,
}

pub(super) struct Publisher {
    pub client: ClientId,
    pub protocol: &'static str,
    pub since: Instant,
    pub bytes_at_start: u64,
    pub out_at_start: u64,
}

/// One live stream.
pub struct StreamActor {
    pub(super) node: NodeContext,
    pub(super) key: StreamKey,
    pub(super) generation: u64,
    pub(super) settings: StreamSettings,
    pub(super) registry: Addr<StreamRegistry>,
    pub(super) storage: StorageHandle,
    pub(super) publisher: Option<Publisher>,
    pub(super) ever_published: bool,
    pub(super) grace: Option<SpawnHandle>,
    pub(super) metadata: Option<Arc<MediaFrame>>,
    pub(super) video_config: Option<Arc<MediaFrame>>,
    pub(super) audio_config: Option<Arc<MediaFrame>>,
    pub(super) video: Option<VideoInfo>,
    pub(super) audio: Option<AudioInfo>,
    pub(super) gop: Vec<Arc<MediaFrame>>,
    pub(super) gop_overflow: bool,
    /// Payload bytes in `gop`.
    pub(super) gop_bytes: usize,
    pub(super) subscribers: HashMap<ClientId, Subscriber>,
    pub(super) last_out_dts_ms: Option<i64>,
    pub(super) offset_ms: i64,
    pub(super) pending_rebase: bool,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) frames_in: u64,
    pub(super) video_frames: u64,
    pub(super) frames_dropped: u64,
    pub(super) slow_disconnects: u64,
    pub(super) samples: VecDeque<(u64, u64, u64)>,
    pub(super) fps: f64,
    pub(super) idle_since: Instant,
    pub(super) hls_subscriber: Option<ClientId>,
    pub(super) dash_subscriber: Option<ClientId>,
    pub(super) dvr_subscriber: Option<ClientId>,
    pub(super) hls_output: Option<Addr<crate::segmenter::HlsMuxer>>,
    pub(super) dash_output: Option<Addr<crate::segmenter::DashMuxer>>,
    pub(super) dvr_output: Option<Addr<crate::dvr::DvrWriter>>,
    /// Serial of the publisher input now drained (older inputs ending do not detach).
    pub(super) input_serial: u64,
    pub(super) publish_drops: Arc<PublishDrops>,
    pub(super) output_frames_lost: u64,
    pub(super) restarts: u64,
}

impl StreamActor {
    /// A stream actor for `key`.
    pub fn new(node: NodeContext, key: StreamKey, generation: u64, settings: StreamSettings, registry: Addr<StreamRegistry>, storage: StorageHandle) -> Self {
        StreamActor {
            node,
            key,
            generation,
            settings,
            registry,
            storage,
            publisher: None,
            ever_published: false,
            grace: None,
            metadata: None,
            video_config: None,
            audio_config: None,
            video: None,
            audio: None,
            gop: Vec::new(),
            gop_overflow: false,
            gop_bytes: 0,
            subscribers: HashMap::new(),
            last_out_dts_ms: None,
            offset_ms: 0,
            pending_rebase: false,
            bytes_in: 0,
            bytes_out: 0,
            frames_in: 0,
            video_frames: 0,
            frames_dropped: 0,
            slow_disconnects: 0,
            samples: VecDeque::new(),
            fps: 0.0,
            idle_since: Instant::now(),
            hls_subscriber: None,
            dash_subscriber: None,
            dvr_subscriber: None,
            hls_output: None,
            dash_output: None,
            dvr_output: None,
            input_serial: 0,
            publish_drops: Arc::new(PublishDrops::default()),
            output_frames_lost: 0,
            restarts: 0,
        }
    }

    /// Opens the publisher's input: a bounded channel this actor drains, handed to the
    /// session as its [`PublisherLink`]. When the link drops, the frames still queued are
    /// taken, then the publisher is detached.
    pub(super) fn open_input(&mut self, client: ClientId, ctx: &mut Context<Self>) -> PublisherLink {
        let (tx, rx) = mpsc::channel(self.settings.publish_queue_frames.max(1));
        self.input_serial += 1;
        let serial = self.input_serial;
        let input = actix::fut::wrap_stream::<_, Self>(tokio_stream::wrappers::ReceiverStream::new(rx))
            .map(move |frame, act, ctx| {
                if act.publisher.as_ref().is_some_and(|p| p.client == client) {
                    act.guarded(ctx, "frame", |act, _| act.ingest(frame));
                }
            })
            .finish()
            .map(move |(), act, ctx| {
                if act.input_serial == serial && act.publisher.as_ref().is_some_and(|p| p.client == client) {
                    act.detach(ctx);
                }
            });
        ctx.spawn(input);
        PublisherLink::new(self.key.clone(), client, tx, self.publish_drops.clone(), self.node.clients.get(client))
    }

    /// Runs `f` on this actor, catching a panic. After a panic the actor starts its media
    /// state over, keeping its publisher and subscribers: the GOP cache is emptied and every
    /// subscriber waits for the next keyframe (which brings the headers again), so players
    /// keep playing after a short freeze instead of hanging on a dead actor.
    pub(super) fn guarded<R>(&mut self, ctx: &mut Context<Self>, what: &str, f: impl FnOnce(&mut Self, &mut Context<Self>) -> R) -> Option<R> {
        let context = format!("stream {} ({what})", self.key);
        let node = self.node.clone();
        match crate::supervision::catch(&node.restarts, "stream", &context, || f(self, ctx)) {
            Ok(result) => Some(result),
            Err(_) => {
                self.restart_state();
                None
            }
        }
    }

    fn restart_state(&mut self) {
        self.restarts += 1;
        self.gop.clear();
        self.gop_bytes = 0;
        self.gop_overflow = false;
        for sub in self.subscribers.values_mut() {
            if !sub.dropping {
                sub.dropping = true;
                sub.lost_from_ms = self.last_out_dts_ms;
            }
            // A restart is not the player's fault: it is not timed out for it.
            sub.behind_since = None;
        }
        tracing::warn!(stream = %self.key, restarts = self.restarts, players = self.subscribers.len(), "stream state started over after a panic; players resume at the next keyframe");
    }

    fn subscribed(&self, id: Option<ClientId>) -> bool {
        id.and_then(|id| self.subscribers.get(&id)).is_some_and(|s| !s.tx.is_closed())
    }

    /// Starts the HLS and DASH muxers this stream's app has enabled, unless running.
    pub(super) fn start_outputs(&mut self) {
        let app = self.key.app.clone();
        if self.settings.hls.applies_to(&app) && !self.subscribed(self.hls_subscriber) {
            let id = self.node.clients.allocate_id();
            let subscription = self.subscribe_as(id, true);
            let (node, key, settings) = (self.node.clone(), self.key.clone(), self.settings.hls.clone());
            let addr = crate::segmenter::HlsMuxer::start_in_arbiter(&self.node.topology.segmenter, move |_| crate::segmenter::HlsMuxer::new(node, key, settings, subscription.rx, subscription.gaps));
            self.hls_subscriber = Some(id);
            self.hls_output = Some(addr);
        }
        if self.settings.dash.applies_to(&app) && !self.subscribed(self.dash_subscriber) {
            let id = self.node.clients.allocate_id();
            let subscription = self.subscribe_as(id, true);
            let (node, key, settings) = (self.node.clone(), self.key.clone(), self.settings.dash.clone());
            let addr = crate::segmenter::DashMuxer::start_in_arbiter(&self.node.topology.segmenter, move |_| crate::segmenter::DashMuxer::new(node, key, settings, subscription.rx, subscription.gaps));
            self.dash_subscriber = Some(id);
            self.dash_output = Some(addr);
        }
        if self.node.dvr.wanted(&self.key, &self.settings.dvr) && !self.subscribed(self.dvr_subscriber) {
            let id = self.node.clients.allocate_id();
            let subscription = self.subscribe_as(id, true);
            let has_video = subscription.has_video;
            let (node, key, settings, storage) = (self.node.clone(), self.key.clone(), self.settings.dvr.clone(), self.storage.clone());
            let addr = crate::dvr::DvrWriter::start_in_arbiter(&self.node.topology.dvr, move |_| crate::dvr::DvrWriter::new(node, key, settings, storage, subscription.rx, subscription.gaps, has_video));
            self.dvr_subscriber = Some(id);
            self.dvr_output = Some(addr);
        }
        if let Some(transcode) = &self.settings.transcode {
            let ladder = crate::transcoder::ladder_for(transcode, &self.key).to_vec();
            if !ladder.is_empty() {
                let (node, registry, key, settings) = (self.node.clone(), self.registry.clone(), self.key.clone(), transcode.clone());
                actix::spawn(async move {
                    // The child reads the stream like any player: it is served the headers
                    // and the cached GOP, or waits for the next keyframe, so it needs no head start.
                    if let Err(e) = crate::transcoder::start(node, registry, settings, key.clone(), ladder, "config").await {
                        tracing::error!(stream = %key, error = %e, "cannot transcode");
                    }
                });
            }
        }
        if let Some(backend) = &self.settings.forward_backend {
            actix::spawn(crate::forward::ask_backend(self.node.clone(), self.registry.clone(), self.key.clone(), backend.clone()));
        }
        for template in self.settings.forward.get(&self.key.app).into_iter().flatten() {
            let (node, registry, key, template) = (self.node.clone(), self.registry.clone(), self.key.clone(), template.clone());
            actix::spawn(async move {
                if let Err(e) = crate::forward::start(node, registry, key.clone(), template.clone(), "config").await {
                    tracing::error!(stream = %key, destination = %template, error = %e, "cannot forward");
                }
            });
        }
    }

    /// Takes a frame from the publisher: rebases it, updates headers and the GOP cache, and
    /// fans it out.
    pub(super) fn ingest(&mut self, frame: Arc<MediaFrame>) {
        self.frames_in += 1;
        self.bytes_in += frame.payload.len() as u64;
        if self.pending_rebase {
            self.pending_rebase = false;
            if let Some(last) = self.last_out_dts_ms {
                self.offset_ms = last + 1 - frame.dts_ms();
            }
        }
        if frame.track == TrackKind::Data {
            // Script data always travels at timestamp 0: FLV readers (FFmpeg's among them)
            // turn script tags at later timestamps into a subtitle track.
            let frame = retime(&frame, 0);
            self.metadata = Some(frame.clone());
            self.fan_out(&frame);
            return;
        }
        let frame = if self.offset_ms != 0 {
            Arc::new(frame.shifted(Timebase::MILLIS.rescale(self.offset_ms, frame.timebase)))
        } else {
            frame
        };
        let dts = frame.dts_ms();
        self.last_out_dts_ms = Some(self.last_out_dts_ms.map_or(dts, |last| last.max(dts)));

        if frame.config {
            match frame.track {
                TrackKind::Video => {
                    self.video = Some(describe_video(&frame));
                    self.video_config = Some(frame.clone());
                    self.record_codecs();
                }
                TrackKind::Audio => {
                    self.audio = Some(describe_audio(&frame));
                    self.audio_config = Some(frame.clone());
                    self.record_codecs();
                }
                TrackKind::Data => self.metadata = Some(frame.clone()),
            }
        } else {
            if frame.track == TrackKind::Video {
                self.video_frames += 1;
            }
            if self.settings.gop_cache {
                self.cache(&frame);
            }
        }
        self.fan_out(&frame);
    }

    fn cache(&mut self, frame: &Arc<MediaFrame>) {
        if frame.is_video_keyframe() {
            self.gop.clear();
            self.gop_overflow = false;
            self.gop_bytes = frame.payload.len();
            self.gop.push(frame.clone());
            return;
        }
        if self.gop.is_empty() || self.gop_overflow {
            return;
        }
        let bytes = self.gop_bytes + frame.payload.len();
        if self.gop.len() >= self.settings.gop_cache_max_frames || bytes > self.settings.gop_cache_max_bytes {
            tracing::warn!(stream = %self.key, frames = self.gop.len(), bytes, "GOP longer than gop_cache_max_frames or gop_cache_max_bytes; late joiners will wait for the next keyframe");
            self.gop.clear();
            self.gop.shrink_to_fit();
            self.gop_bytes = 0;
            self.gop_overflow = true;
            return;
        }
        self.gop_bytes = bytes;
        self.gop.push(frame.clone());
    }

    /// True when `frame` is a point where a subscriber may (re)start.
    fn is_start_point(&self, frame: &MediaFrame) -> bool {
        if frame.config {
            return false;
        }
        match frame.track {
            TrackKind::Video => frame.keyframe,
            TrackKind::Audio => self.video_config.is_none(),
            TrackKind::Data => false,
        }
    }

    fn headers(&self) -> impl Iterator<Item = &Arc<MediaFrame>> {
        self.metadata.iter().chain(self.video_config.iter()).chain(self.audio_config.iter())
    }

    fn fan_out(&mut self, frame: &Arc<MediaFrame>) {
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
                    if sub.internal {
                        if let Some(from) = sub.lost_from_ms {
                            sub.gaps.note(Gap { resume: frame.clone(), from_dts_ms: from, lost_frames: sub.dropped, reason: "output could not keep up" });
                        }
                    }
                    if sub.tx.try_send(frame.clone()).is_ok() {
                        if sub.internal && sub.lost_from_ms.is_some() {
                            tracing::warn!(stream = %self.key, output = id, lost_frames = sub.dropped, "output caught up; it resumes at this keyframe after a gap");
                        }
                        sub.dropping = false;
                        sub.behind_since = None;
                        sub.lost_from_ms = None;
                        sub.dropped = 0;
                        if frame.track == TrackKind::Video {
                            sub.audio_floor_ms = Some(frame.pts_ms());
                        }
                        continue;
                    }
                    if sub.internal && sub.lost_from_ms.is_some() {
                        sub.gaps.withdraw_last();
                    }
                }
                // Frames skipped while a new subscriber waits for its first keyframe are not
                // losses; frames skipped after an overflow (or a restart) are.
                if !frame.config && sub.lost_from_ms.is_some() {
                    sub.dropped += 1;
                    if sub.internal {
                        self.output_frames_lost += 1;
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

    /// Creates a subscription primed with headers and the cached GOP.
    pub(super) fn subscribe(&mut self, client: ClientId) -> Subscription {
        self.subscribe_as(client, false)
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
                lost_from_ms: None,
                record: self.node.clients.get(client),
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
        }
    }

    pub(super) fn record_codecs(&self) {
        self.storage.tell(RecordCodecs { key: self.key.clone(), video: self.video.clone(), audio: self.audio.clone() });
    }

    pub(super) fn detach(&mut self, ctx: &mut Context<Self>) {
        let Some(publisher) = self.publisher.take() else { return };
        tracing::info!(stream = %self.key, client = publisher.client, grace_ms = self.settings.publisher_grace.as_millis() as u64, "publisher left; players wait for the grace period");
        self.storage.tell(RecordPublishEnd {
            key: self.key.clone(),
            now_ms: crate::unix_ms(),
            bytes_in: self.bytes_in - publisher.bytes_at_start,
            bytes_out: self.bytes_out - publisher.out_at_start,
            live_ms: publisher.since.elapsed().as_millis() as u64,
        });
        crate::tell(&self.registry, ReleasePublish { key: self.key.clone(), client: publisher.client });
        self.idle_since = Instant::now();
        let grace = self.settings.publisher_grace;
        self.grace = Some(ctx.run_later(grace, |act, ctx| {
            if act.publisher.is_none() {
                tracing::info!(stream = %act.key, "no publisher within the grace period; stream ends");
                ctx.stop();
            }
        }));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let slow_timeout = self.settings.slow_player_timeout;
        let mut cut = Vec::new();
        let mut out_total = 0u64;
        for (id, sub) in &self.subscribers {
            if sub.tx.is_closed() {
                cut.push((*id, false));
            } else if !sub.internal && sub.behind_since.is_some_and(|since| now.duration_since(since) > slow_timeout) {
                cut.push((*id, true));
            }
            if let Some(record) = &sub.record {
                out_total += record.bytes_out.load(Ordering::Relaxed);
            }
        }
        for (id, slow) in cut {
            if let Some(sub) = self.subscribers.remove(&id) {
                if slow {
                    self.slow_disconnects += 1;
                    tracing::warn!(stream = %self.key, client = id, dropped_frames = sub.dropped, timeout_ms = slow_timeout.as_millis() as u64, "player too slow for too long; disconnecting it");
                }
            }
        }
        // Bytes sent: count what current subscribers report, never going backwards when one
        // leaves.
        self.bytes_out = self.bytes_out.max(out_total);
        self.samples.push_back((self.bytes_in, self.bytes_out, self.video_frames));
        while self.samples.len() > 31 {
            self.samples.pop_front();
        }
        if self.samples.len() >= 2 {
            let n = self.samples.len();
            let (_, _, v_prev) = self.samples[n.saturating_sub(6).min(n - 2)];
            let span = (n - 1 - n.saturating_sub(6).min(n - 2)) as f64;
            self.fps = (self.video_frames - v_prev) as f64 / span;
        }
        if self.publisher.is_none() && self.grace.is_none() && self.subscribers.is_empty() && now.duration_since(self.idle_since) > self.settings.publisher_grace {
            ctx.stop();
        }
    }

    pub(super) fn info(&self) -> StreamInfo {
        let rate = |pick: fn(&(u64, u64, u64)) -> u64| -> u64 {
            match (self.samples.front(), self.samples.back()) {
                (Some(first), Some(last)) if self.samples.len() > 1 => {
                    (pick(last) - pick(first)) * 8 / 1000 / (self.samples.len() as u64 - 1)
                }
                _ => 0,
            }
        };
        StreamInfo {
            app: self.key.app.clone(),
            stream: self.key.stream.clone(),
            vhost: self.key.vhost.clone(),
            publisher: self.publisher.as_ref().map(|p| p.client),
            publisher_protocol: self.publisher.as_ref().map(|p| p.protocol),
            live_ms: self.publisher.as_ref().map(|p| p.since.elapsed().as_millis() as u64).unwrap_or(0),
            subscribers: self.subscribers.keys().filter(|id| Some(**id) != self.hls_subscriber && Some(**id) != self.dash_subscriber && Some(**id) != self.dvr_subscriber).count(),
            video: self.video.clone(),
            audio: self.audio.clone(),
            fps: (self.fps * 100.0).round() / 100.0,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            frames_in: self.frames_in,
            frames_dropped: self.frames_dropped,
            slow_disconnects: self.slow_disconnects,
            publish_dropped: self.publish_drops.frames.load(Ordering::Relaxed),
            output_frames_lost: self.output_frames_lost,
            restarts: self.restarts,
            kbps_in_30s: rate(|s| s.0),
            kbps_out_30s: rate(|s| s.1),
            in_grace: self.publisher.is_none() && self.ever_published,
        }
    }
}

fn retime(frame: &Arc<MediaFrame>, dts: i64) -> Arc<MediaFrame> {
    if frame.dts == dts {
        return frame.clone();
    }
    let mut copy = MediaFrame::clone(frame);
    copy.pts = dts;
    copy.dts = dts;
    Arc::new(copy)
}

fn describe_video(frame: &MediaFrame) -> VideoInfo {
    let mut info = VideoInfo { codec: frame.codec.name().to_string(), ..Default::default() };
    if frame.codec == Codec::H264 {
        if let Ok(sps) = AvcConfig::parse(&frame.payload).and_then(|c| c.sps_info()) {
            info.profile = match sps.profile_idc {
                66 => "Baseline",
                77 => "Main",
                88 => "Extended",
                100 => "High",
                110 => "High 10",
                122 => "High 4:2:2",
                244 => "High 4:4:4",
                _ => "Other",
            }
            .to_string();
            info.level = format!("{}.{}", sps.level_idc / 10, sps.level_idc % 10);
            info.width = sps.width;
            info.height = sps.height;
        }
    }
    info
}

fn describe_audio(frame: &MediaFrame) -> AudioInfo {
    let mut info = AudioInfo { codec: frame.codec.name().to_string(), ..Default::default() };
    if frame.codec == Codec::Aac {
        if let Ok(config) = AacConfig::parse(&frame.payload) {
            info.sample_rate = config.sample_rate;
            info.channels = config.channel_config;
            info.profile = match config.object_type {
                1 => "Main",
                2 => "LC",
                5 => "HE",
                29 => "HEv2",
                _ => "Other",
            }
            .to_string();
        }
    }
    info
}

impl Actor for StreamActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.tick(ctx));
        tracing::debug!(stream = %self.key, generation = self.generation, "stream actor started");
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(publisher) = &self.publisher {
            crate::tell(&self.registry, ReleasePublish { key: self.key.clone(), client: publisher.client });
        }
        crate::tell(&self.registry, ForgetStream { key: self.key.clone(), generation: self.generation });
        tracing::info!(stream = %self.key, players = self.subscribers.len(), "stream actor stopped");
    }
}
