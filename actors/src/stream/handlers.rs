use super::actor::{Publisher, StreamActor, Subscription};
use crate::messages::*;
use actix::prelude::*;
use std::time::Instant;

impl Handler<AttachPublisher> for StreamActor {
    type Result = Result<(), PublishRefused>;

    fn handle(&mut self, msg: AttachPublisher, ctx: &mut Self::Context) -> Self::Result {
        if let Some(current) = &self.publisher {
            if current.client != msg.client {
                return Err(PublishRefused::AlreadyPublishing { stream: self.key.to_string(), by: current.client });
            }
            return Ok(());
        }
        if let Some(handle) = self.grace.take() {
            ctx.cancel_future(handle);
            tracing::info!(stream = %self.key, client = msg.client, players = self.subscribers.len(), "publisher resumed within the grace period");
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
        self.storage.tell(RecordPublishStart { key: self.key.clone(), now_ms: crate::unix_ms() });
        self.start_outputs();
        Ok(())
    }
}

impl Handler<PublishFrame> for StreamActor {
    type Result = ();

    fn handle(&mut self, msg: PublishFrame, _: &mut Self::Context) {
        if self.publisher.as_ref().map(|p| p.client) == Some(msg.client) {
            self.ingest(msg.frame);
        }
    }
}

impl Handler<DetachPublisher> for StreamActor {
    type Result = ();

    fn handle(&mut self, msg: DetachPublisher, ctx: &mut Self::Context) {
        if self.publisher.as_ref().map(|p| p.client) == Some(msg.client) {
            self.detach(ctx);
        }
    }
}

impl Handler<AddSubscriber> for StreamActor {
    type Result = MessageResult<AddSubscriber>;

    fn handle(&mut self, msg: AddSubscriber, _: &mut Self::Context) -> Self::Result {
        if msg.require_live && !self.ever_published {
            return MessageResult(Err(PlayRefused::NotLive(self.key.to_string())));
        }
        MessageResult(Ok::<Subscription, PlayRefused>(self.subscribe(msg.client)))
    }
}

impl Handler<GetStreamInfo> for StreamActor {
    type Result = MessageResult<GetStreamInfo>;

    fn handle(&mut self, _: GetStreamInfo, _: &mut Self::Context) -> Self::Result {
        MessageResult::<GetStreamInfo>(self.info())
    }
}

impl Handler<StartOutputs> for StreamActor {
    type Result = ();

    fn handle(&mut self, _: StartOutputs, _: &mut Self::Context) {
        if self.publisher.is_some() {
            self.start_outputs();
        }
    }
}
