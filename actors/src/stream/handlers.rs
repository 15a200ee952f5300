use super::actor::{Publisher, StreamActor, Subscription};
use super::link::PublisherLink;
use crate::messages::*;
use actix::prelude::*;
use std::time::Instant;

impl Handler<AttachPublisher> for StreamActor {
    type Result = MessageResult<AttachPublisher>;

    fn handle(&mut self, msg: AttachPublisher, ctx: &mut Self::Context) -> Self::Result {
        if let Some(current) = &self.publisher {
            if current.client != msg.client {
                return MessageResult(Err(PublishRefused::AlreadyPublishing { stream: self.key.to_string(), by: current.client }));
            }
            // The same client again (a retried attach): a fresh input replaces the old one.
            return MessageResult(Ok(self.open_input(msg.client, ctx)));
        }
        if let Some(handle) = self.grace.take() {
            // A publisher back within the grace period continues the same publish: its outputs
            // are still running, so it keeps the settings they started with.
            ctx.cancel_future(handle);
            tracing::info!(stream = %self.key, client = msg.client, players = self.player_count(), "publisher resumed within the grace period");
        } else {
            // A new publish runs with the settings of now (a reload since the last one applies).
            self.settings = self.live.get().for_vhost(&self.key.vhost).clone();
            self.last_caption = None;
            self.cc_queue.clear();
            self.cc_erase_at_ms = None;
            self.cc_last_pts_ms = None;
        }
        self.pending_rebase = self.last_out_dts_ms.is_some();
        self.publisher = Some(Publisher {
            client: msg.client,
            protocol: msg.protocol,
            since: Instant::now(),
            bytes_at_start: self.bytes_in,
            out_at_start: self.bytes_out,
        });
        self.ever_published = true;
        self.storage.persist(RecordPublishStart { key: self.key.clone(), now_ms: crate::unix_ms() });
        self.guarded(ctx, "start outputs", |act, _| act.start_outputs());
        MessageResult(Ok::<PublisherLink, PublishRefused>(self.open_input(msg.client, ctx)))
    }
}

impl Handler<AddSubscriber> for StreamActor {
    type Result = MessageResult<AddSubscriber>;

    fn handle(&mut self, msg: AddSubscriber, ctx: &mut Self::Context) -> Self::Result {
        if msg.require_live && !self.ever_published {
            return MessageResult(Err(PlayRefused::NotLive(self.key.to_string())));
        }
        match self.guarded(ctx, "subscribe", |act, _| act.subscribe_for(msg.client, msg.shared)) {
            Some(subscription) => MessageResult(Ok::<Subscription, PlayRefused>(subscription)),
            None => MessageResult(Err(PlayRefused::NotFound(format!("{} (the stream restarted; try again)", self.key)))),
        }
    }
}

impl Handler<GetStreamInfo> for StreamActor {
    type Result = MessageResult<GetStreamInfo>;

    fn handle(&mut self, _: GetStreamInfo, ctx: &mut Self::Context) -> Self::Result {
        // After a panic the state started over; one more try, then what needs no figures.
        let info = self.guarded(ctx, "info", |act, _| act.info()).or_else(|| self.guarded(ctx, "info", |act, _| act.info()));
        MessageResult::<GetStreamInfo>(info.unwrap_or_else(|| self.minimal_info()))
    }
}

impl Handler<StartOutputs> for StreamActor {
    type Result = ();

    fn handle(&mut self, _: StartOutputs, ctx: &mut Self::Context) {
        if self.publisher.is_some() {
            self.guarded(ctx, "start outputs", |act, _| act.start_outputs());
        }
    }
}

impl Handler<StartPackage> for StreamActor {
    type Result = MessageResult<StartPackage>;

    fn handle(&mut self, _: StartPackage, ctx: &mut Self::Context) -> Self::Result {
        if self.subscribed(self.package_subscriber) {
            if let Some(package) = self.node.packages.get(&self.key) {
                return MessageResult(Some(package));
            }
        }
        if self.publisher.is_none() {
            // Not live: what an ended publish left, if anything.
            return MessageResult(self.node.packages.get(&self.key));
        }
        let started = self.guarded(ctx, "start package", |act, _| {
            let id = act.node.clients.allocate_id();
            let subscription = act.subscribe_as(id, true);
            let (package, packager) = crate::package::Packager::begin(&act.node, &act.key, &act.settings.hls, subscription.rx, subscription.gaps);
            crate::package::Packager::start_in_arbiter(&act.node.topology.segmenter, move |_| packager);
            act.package_subscriber = Some(id);
            package
        });
        MessageResult(started)
    }
}

impl Handler<InjectTimedData> for StreamActor {
    type Result = Result<i64, CaptionRefused>;

    fn handle(&mut self, msg: InjectTimedData, ctx: &mut Self::Context) -> Self::Result {
        use estuary_protocols::container::flv;
        if self.publisher.is_none() {
            return Err(CaptionRefused::NotLive(self.key.to_string()));
        }
        // At the live edge: FLV and RTMP players need script data in time order with the
        // media, so a caption that comes late (speech recognition lags its audio) is shown
        // when it arrives rather than dated back before frames already sent.
        let at = self.last_out_dts_ms.unwrap_or(0);
        let (frame, what) = match &msg.0 {
            TimedData::Caption { text, language, start_ms, end_ms } => (std::sync::Arc::new(flv::text_data_frame(at, text, language, (*start_ms, *end_ms))), "caption"),
            TimedData::Metadata { json } => (std::sync::Arc::new(flv::cue_point_frame(at, json)), "timed metadata"),
        };
        if let TimedData::Caption { text, start_ms, end_ms, .. } = &msg.0 {
            self.last_caption = Some(frame.clone());
            // H.264/H.265 carry it as a CEA-608 pop-on caption too, in the SEI of the next
            // video frames (every output that passes the video on shows it), erased after its
            // span or the time it takes to read.
            if self.video_config.as_ref().is_some_and(|c| matches!(c.codec, estuary_protocols::media::Codec::H264 | estuary_protocols::media::Codec::H265)) {
                let shown_ms = match (start_ms, end_ms) {
                    (Some(start), Some(end)) => (end - start).clamp(1_000, 10_000),
                    _ => estuary_protocols::cmaf::default_cue_ms(text),
                };
                // A caption still waiting is replaced rather than queued behind.
                self.cc_queue.clear();
                self.cc_queue.extend(estuary_protocols::codec::cea608::pop_on(text));
                self.cc_erase_at_ms = Some(at + shown_ms);
            }
        }
        self.guarded(ctx, "timed data", |act, _| act.fan_out(&frame));
        tracing::debug!(stream = %self.key, at_ms = at, bytes = frame.payload.len(), what, "timed data sent to players");
        Ok(at)
    }
}

impl Handler<InjectStreamFault> for StreamActor {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: InjectStreamFault, ctx: &mut Self::Context) -> Self::Result {
        tracing::warn!(stream = %self.key, target = ?msg.target, fault = ?msg.fault, "fault injected");
        let fault = InjectFault(msg.fault);
        let missing = |what: &str| format!("stream {} has no {what} output", self.key);
        match msg.target {
            FaultTarget::Stream => match msg.fault {
                Fault::Panic => {
                    self.guarded(ctx, "injected fault", |_, _| panic!("fault injected into the stream actor"));
                }
                Fault::Stall(duration) => {
                    // Holds this actor (no message, no frame) without blocking its thread.
                    ctx.wait(actix::fut::wrap_future(tokio::time::sleep(duration)));
                }
                Fault::SlowWrites { .. } => return Err("the stream actor does not write; choose kind=panic or kind=stall".into()),
            },
            FaultTarget::Hls => self.hls_output.as_ref().ok_or_else(|| missing("HLS"))?.do_send(fault),
            FaultTarget::Dash => self.dash_output.as_ref().ok_or_else(|| missing("DASH"))?.do_send(fault),
            FaultTarget::Dvr => self.dvr_output.as_ref().ok_or_else(|| missing("DVR"))?.do_send(fault),
        }
        Ok(())
    }
}
