use super::actor::StreamRegistry;
use crate::messages::*;
use crate::stream::StreamActor;
use actix::prelude::*;
use estuary_storage::StreamKey;

impl Handler<ClaimPublish> for StreamRegistry {
    type Result = Result<Addr<StreamActor>, PublishRefused>;

    fn handle(&mut self, msg: ClaimPublish, ctx: &mut Self::Context) -> Self::Result {
        if let Some(entry) = self.entries.get_mut(&msg.key) {
            if entry.addr.connected() {
                if let Some(by) = entry.publisher {
                    if by != msg.client {
                        return Err(PublishRefused::AlreadyPublishing { stream: msg.key.to_string(), by });
                    }
                }
                entry.publisher = Some(msg.client);
                return Ok(entry.addr.clone());
            }
        }
        let addr = self.spawn_stream(&msg.key, ctx);
        if let Some(entry) = self.entries.get_mut(&msg.key) {
            entry.publisher = Some(msg.client);
        }
        Ok(addr)
    }
}

impl Handler<FindStream> for StreamRegistry {
    type Result = Option<Addr<StreamActor>>;

    fn handle(&mut self, msg: FindStream, ctx: &mut Self::Context) -> Self::Result {
        match self.entries.get(&msg.key) {
            Some(entry) if entry.addr.connected() => Some(entry.addr.clone()),
            _ if msg.create => Some(self.spawn_stream(&msg.key, ctx)),
            _ => None,
        }
    }
}

impl Handler<ReleasePublish> for StreamRegistry {
    type Result = ();

    fn handle(&mut self, msg: ReleasePublish, _: &mut Self::Context) {
        if let Some(entry) = self.entries.get_mut(&msg.key) {
            if entry.publisher == Some(msg.client) {
                entry.publisher = None;
            }
        }
    }
}

impl Handler<ForgetStream> for StreamRegistry {
    type Result = ();

    fn handle(&mut self, msg: ForgetStream, _: &mut Self::Context) {
        if self.entries.get(&msg.key).map(|e| e.generation) == Some(msg.generation) {
            self.entries.remove(&msg.key);
        }
    }
}

impl Handler<ReloadStreamSettings> for StreamRegistry {
    type Result = ();

    fn handle(&mut self, msg: ReloadStreamSettings, _: &mut Self::Context) {
        self.settings.set(msg.0);
    }
}

impl Handler<PublishedStreams> for StreamRegistry {
    type Result = MessageResult<PublishedStreams>;

    fn handle(&mut self, _: PublishedStreams, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.entries.iter().filter(|(_, e)| e.publisher.is_some() && e.addr.connected()).map(|(k, _)| k.clone()).collect())
    }
}

impl Handler<ListStreams> for StreamRegistry {
    type Result = MessageResult<ListStreams>;

    fn handle(&mut self, _: ListStreams, _: &mut Self::Context) -> Self::Result {
        let mut list: Vec<(StreamKey, Addr<StreamActor>)> =
            self.entries.iter().map(|(k, e)| (k.clone(), e.addr.clone())).collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        MessageResult(list)
    }
}
