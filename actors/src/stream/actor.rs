use crate::node::clients::ClientId;
use crate::node::NodeContext;
use crate::messages::{ForgetStream, RecordCodecs, RecordPublishEnd, ReleasePublish};
use crate::registry::StreamRegistry;
use crate::settings::StreamSettings;
use crate::storage::StorageHandle;
use actix::prelude::*;
use estuary_protocols::media::{Codec, MediaFrame, Timebase, TrackKind};
use estuary_storage::{AudioInfo, StreamKey, VideoInfo};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use super::fanout::{Subscriber, RESTARTED};
use super::gaps::Gaps;
use super::gop::retime;
use super::stats::{describe_audio, describe_video};
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
    /// For a feed of the delivery engine: its ring limits, slow-player rule and counters.
    pub shared: Option<crate::delivery::FeedTerms>,
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
    /// On the node's census while the actor lives.
    _counted: crate::node::census::Counted,
    pub(super) key: StreamKey,
    pub(super) generation: u64,
    /// The settings of the current publish, taken from `live` when a publisher attaches.
    pub(super) settings: StreamSettings,
    /// The registry's settings, replaced by a configuration reload.
    pub(super) live: Arc<crate::settings::Reloadable<crate::settings::VhostStreamSettings>>,
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
    /// The newest caption, primed to a new subscriber while fresh (see `subscribe_as`).
    pub(super) last_caption: Option<Arc<MediaFrame>>,
    /// CEA-608 byte pairs of captions waiting to ride in the next video frames' SEI.
    pub(super) cc_queue: VecDeque<[u8; 2]>,
    /// When (stream ms) the caption on screen is erased from the CEA-608 captions.
    pub(super) cc_erase_at_ms: Option<i64>,
    /// NAL length field size of the stream's H.264/H.265 frames (from its configuration).
    pub(super) nal_length_size: usize,
    /// Presentation time (ms) of the last frame given caption data: later data goes only to
    /// frames presented after it, so pieces of a caption keep their order in display order
    /// (decoders read caption data after reordering B-frames).
    pub(super) cc_last_pts_ms: Option<i64>,
    pub(super) offset_ms: i64,
    pub(super) pending_rebase: bool,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) frames_in: u64,
    pub(super) video_frames: u64,
    pub(super) frames_dropped: u64,
    pub(super) slow_disconnects: u64,
    /// Figures of the delivery engine's feeds of this stream.
    pub(super) delivery: Arc<crate::delivery::DeliveryCounters>,
    pub(super) samples: VecDeque<(u64, u64, u64)>,
    pub(super) fps: f64,
    pub(super) idle_since: Instant,
    pub(super) hls_subscriber: Option<ClientId>,
    /// The live package's subscription (HLS and DASH on demand).
    pub(super) package_subscriber: Option<ClientId>,
    pub(super) dash_subscriber: Option<ClientId>,
    pub(super) dvr_subscriber: Option<ClientId>,
    pub(super) hls_output: Option<Addr<crate::hls::HlsMuxer>>,
    pub(super) dash_output: Option<Addr<crate::dash::DashMuxer>>,
    pub(super) dvr_output: Option<Addr<crate::dvr::DvrWriter>>,
    /// Serial of the publisher input now drained (older inputs ending do not detach).
    pub(super) input_serial: u64,
    pub(super) publish_drops: Arc<PublishDrops>,
    pub(super) output_frames_lost: u64,
    pub(super) restarts: u64,
}

impl StreamActor {
    /// A stream actor for `key`.
    pub fn new(node: NodeContext, key: StreamKey, generation: u64, live: Arc<crate::settings::Reloadable<crate::settings::VhostStreamSettings>>, registry: Addr<StreamRegistry>, storage: StorageHandle) -> Self {
        StreamActor {
            _counted: node.census.enter("stream"),
            settings: live.get().for_vhost(&key.vhost).clone(),
            node,
            key,
            generation,
            live,
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
            last_caption: None,
            cc_queue: VecDeque::new(),
            cc_erase_at_ms: None,
            nal_length_size: 4,
            cc_last_pts_ms: None,
            offset_ms: 0,
            pending_rebase: false,
            bytes_in: 0,
            bytes_out: 0,
            frames_in: 0,
            video_frames: 0,
            frames_dropped: 0,
            slow_disconnects: 0,
            delivery: Arc::default(),
            samples: VecDeque::new(),
            fps: 0.0,
            idle_since: Instant::now(),
            hls_subscriber: None,
            package_subscriber: None,
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
                    act.guarded(ctx, "detach", |act, ctx| act.detach(ctx));
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
        match crate::node::supervision::catch(|| f(self, ctx)) {
            Ok(result) => Some(result),
            Err(panic) => {
                self.node.restarts.panicked("stream", &format_args!("stream {} ({what})", self.key), &panic);
                self.restart_state();
                None
            }
        }
    }

    pub(super) fn restart_state(&mut self) {
        self.restarts += 1;
        self.samples.clear();
        self.gop.clear();
        self.gop_bytes = 0;
        self.gop_overflow = false;
        for sub in self.subscribers.values_mut() {
            if !sub.dropping {
                sub.dropping = true;
                sub.dropped = 0;
                sub.lost_reason = Some(RESTARTED);
                sub.lost_from_ms = None;
            }
            // A restart is not the player's fault: it is not timed out for it.
            sub.behind_since = None;
        }
        tracing::warn!(stream = %self.key, restarts = self.restarts, players = self.player_count(), "stream state started over after a panic; players resume at the next keyframe");
    }

    /// Starts the HLS and DASH muxers this stream's app has enabled, unless running.
    pub(super) fn start_outputs(&mut self) {
        let app = self.key.app.clone();
        // A stream pulled from its owner in the cluster gets its players' outputs only:
        // recording, transcoding and forwarding are the owner's (no duplicate pushes or files).
        let pulled = self.publisher.as_ref().is_some_and(|p| p.protocol == "cluster-pull");
        if self.settings.hls.written_for(&app) && !self.subscribed(self.hls_subscriber) {
            let id = self.node.clients.allocate_id();
            let subscription = self.subscribe_as(id, true);
            let (node, key, settings) = (self.node.clone(), self.key.clone(), self.settings.hls.clone());
            let addr = crate::hls::HlsMuxer::start_in_arbiter(&self.node.topology.segmenter, move |_| crate::hls::HlsMuxer::new(node, key, settings, subscription.rx, subscription.gaps));
            self.hls_subscriber = Some(id);
            self.hls_output = Some(addr);
        }
        if self.settings.dash.written_for(&app) && !self.subscribed(self.dash_subscriber) {
            let id = self.node.clients.allocate_id();
            let subscription = self.subscribe_as(id, true);
            let (node, key, settings) = (self.node.clone(), self.key.clone(), self.settings.dash.clone());
            let addr = crate::dash::DashMuxer::start_in_arbiter(&self.node.topology.segmenter, move |_| crate::dash::DashMuxer::new(node, key, settings, subscription.rx, subscription.gaps));
            self.dash_subscriber = Some(id);
            self.dash_output = Some(addr);
        }
        if pulled {
            return;
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
            let ladder = crate::transcode::ladder_for(transcode, &self.key).to_vec();
            if !ladder.is_empty() {
                let (node, registry, key, settings) = (self.node.clone(), self.registry.clone(), self.key.clone(), transcode.clone());
                actix::spawn(async move {
                    // The child reads the stream like any player: it is served the headers
                    // and the cached GOP, or waits for the next keyframe, so it needs no head start.
                    if let Err(e) = crate::transcode::start(node, registry, settings, key.clone(), ladder, "config").await {
                        tracing::error!(stream = %key, error = %e, "cannot transcode");
                    }
                });
            }
        }
        if let Some(backend) = &self.settings.forward_backend {
            actix::spawn(crate::forward::ask_backend(self.node.clone(), self.registry.clone(), self.key.clone(), backend.clone()));
        }
        if let Some(directory) = self.node.cluster.clone().filter(|d| d.is_edge()) {
            // A publish on an edge goes on to the least-loaded origin (which claims it); a
            // pulled stream is the origin's already.
            {
                let (node, registry, key) = (self.node.clone(), self.registry.clone(), self.key.clone());
                actix::spawn(async move {
                    let Some(origin) = directory.least_loaded_origin().await else {
                        tracing::error!(stream = %key, "published on an edge but no origin is registered; it plays on this edge only");
                        return;
                    };
                    tracing::info!(stream = %key, %origin, "publish on an edge passed on to the least-loaded origin");
                    if let Err(e) = crate::forward::start(node, registry, key.clone(), format!("{origin}/[app]/[stream]"), "cluster").await {
                        tracing::error!(stream = %key, %origin, error = %e, "cannot pass the publish on to an origin");
                    }
                });
            }
        }
        for template in self.settings.forward.get(&self.key.app).into_iter().chain(self.settings.forward.get("*")).flatten() {
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

        let frame = if !frame.config && frame.track == TrackKind::Video { self.with_captions(frame) } else { frame };
        if frame.config {
            match frame.track {
                TrackKind::Video => {
                    self.nal_length_size = match frame.codec {
                        Codec::H264 => estuary_protocols::codec::avc::AvcConfig::parse(&frame.payload).map(|c| c.nal_length_size as usize).unwrap_or(4),
                        Codec::H265 => estuary_protocols::codec::hevc::config_parameter_sets(&frame.payload).map(|(size, _)| size as usize).unwrap_or(4),
                        _ => 4,
                    };
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

    /// The video frame with the CEA-608 captions due (a caption's pairs, at most
    /// [`CC_PAIRS_PER_FRAME`] per frame, or the erasure of the caption on screen when its time
    /// is up) in an SEI before its first slice; unchanged when nothing is due, the frame is
    /// presented before the last one that carried caption data, or it has no slice.
    fn with_captions(&mut self, frame: Arc<MediaFrame>) -> Arc<MediaFrame> {
        use estuary_protocols::codec::cea608;
        if self.cc_queue.is_empty() && self.cc_erase_at_ms.is_none() {
            return frame;
        }
        // After a republish's rebase or a wrap, a presentation time far behind starts afresh.
        let pts = frame.pts_ms();
        if let Some(last) = self.cc_last_pts_ms {
            if pts <= last && last - pts < 10_000 {
                return frame;
            }
        }
        if self.cc_queue.is_empty() {
            match self.cc_erase_at_ms {
                Some(at) if frame.dts_ms() >= at => {
                    self.cc_erase_at_ms = None;
                    self.cc_queue.extend(cea608::erase());
                }
                _ => return frame,
            }
        }
        let take = self.cc_queue.len().min(CC_PAIRS_PER_FRAME);
        let pairs: Vec<[u8; 2]> = self.cc_queue.iter().take(take).copied().collect();
        match cea608::with_nals(&frame, self.nal_length_size, &cea608::sei_nals(frame.codec, &pairs)) {
            Some(captioned) => {
                self.cc_queue.drain(..take);
                self.cc_last_pts_ms = Some(pts);
                Arc::new(captioned)
            }
            None => frame,
        }
    }

    pub(super) fn record_codecs(&self) {
        self.storage.tell(RecordCodecs { key: self.key.clone(), video: self.video.clone(), audio: self.audio.clone() });
    }

    pub(super) fn detach(&mut self, ctx: &mut Context<Self>) {
        let Some(publisher) = self.publisher.take() else { return };
        tracing::info!(stream = %self.key, client = publisher.client, grace_ms = self.settings.publisher_grace.as_millis() as u64, "publisher left; players wait for the grace period");
        self.storage.persist(RecordPublishEnd {
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
}

/// CEA-608 byte pairs one video frame carries at most: A/53 allows 20 `cc_data` entries a
/// frame at 30 fps. That is more than 608's line rate (one pair per field per frame); FFmpeg,
/// hls.js, Safari and VLC take it, and a short caption shows in one frame instead of a second.
const CC_PAIRS_PER_FRAME: usize = 20;

impl Actor for StreamActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            act.guarded(ctx, "tick", |act, ctx| act.tick(ctx));
        });
        tracing::debug!(stream = %self.key, generation = self.generation, "stream actor started");
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(publisher) = &self.publisher {
            crate::tell(&self.registry, ReleasePublish { key: self.key.clone(), client: publisher.client });
        }
        crate::tell(&self.registry, ForgetStream { key: self.key.clone(), generation: self.generation });
        tracing::info!(stream = %self.key, players = self.player_count(), "stream actor stopped");
    }
}
