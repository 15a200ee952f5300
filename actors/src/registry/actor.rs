use crate::node::clients::ClientId;
use crate::node::NodeContext;
use crate::settings::{Reloadable, VhostStreamSettings};
use std::sync::Arc;
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
    pub(super) node: NodeContext,
    /// Shared with every stream actor, which takes the current value at each new publish.
    pub(super) settings: Arc<Reloadable<VhostStreamSettings>>,
    pub(super) storage: StorageHandle,
    pub(super) entries: HashMap<StreamKey, Entry>,
    pub(super) next_generation: u64,
}

impl StreamRegistry {
    /// A registry whose stream actors use `settings` (one set, or one per vhost) and record
    /// into `storage`.
    pub fn new(node: NodeContext, settings: impl Into<VhostStreamSettings>, storage: StorageHandle) -> Self {
        StreamRegistry { node, settings: Arc::new(Reloadable::new(settings.into())), storage, entries: HashMap::new(), next_generation: 1 }
    }

    pub(super) fn spawn_stream(&mut self, key: &StreamKey, ctx: &mut Context<Self>) -> Addr<StreamActor> {
        let generation = self.next_generation;
        self.next_generation += 1;
        // Each stream lives on the worker thread its key hashes to: streams use every core,
        // and the registry (control only) never carries media.
        let (node, settings, registry, storage, stream_key) = (self.node.clone(), self.settings.clone(), ctx.address(), self.storage.clone(), key.clone());
        let addr = StreamActor::start_in_arbiter(&self.node.topology.workers.for_key(key), move |_| StreamActor::new(node, stream_key, generation, settings, registry, storage));
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
