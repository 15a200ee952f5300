use crate::clients::ClientId;
use crate::settings::StreamSettings;
use crate::storage::StorageHandle;
use crate::stream::StreamActor;
use actix::prelude::*;
use estuary_storage::StreamKey;
use std::collections::HashMap;

pub(super) struct Entry {
    pub addr: Addr<StreamActor>,
    pub generation: u64,
    pub publisher: Option<ClientId>,
}

/// Maps streams to their actors.
pub struct StreamRegistry {
    pub(super) settings: StreamSettings,
    pub(super) storage: StorageHandle,
    pub(super) entries: HashMap<StreamKey, Entry>,
    pub(super) next_generation: u64,
}

impl StreamRegistry {
    /// A registry whose stream actors use `settings` and record into `storage`.
    pub fn new(settings: StreamSettings, storage: StorageHandle) -> Self {
        StreamRegistry { settings, storage, entries: HashMap::new(), next_generation: 1 }
    }

    pub(super) fn spawn_stream(&mut self, key: &StreamKey, ctx: &mut Context<Self>) -> Addr<StreamActor> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let addr = StreamActor::new(key.clone(), generation, self.settings.clone(), ctx.address(), self.storage.clone()).start();
        self.entries.insert(key.clone(), Entry { addr: addr.clone(), generation, publisher: None });
        addr
    }
}

impl Actor for StreamRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}
