use crate::supervision::{self, Backoff};
use actix::prelude::*;
use estuary_storage::Store;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Owns the database.
pub struct StorageActor {
    pub(super) store: Store,
}

impl Actor for StorageActor {
    type Context = SyncContext<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "storage flush on stop failed");
        }
    }
}

/// The address of the storage actor, with fire-and-forget and request helpers.
#[derive(Clone)]
pub struct StorageHandle {
    addr: Addr<StorageActor>,
}

pub(crate) const NAME: &str = "storage";

impl StorageHandle {
    /// Starts the storage actor on its own thread.
    pub fn start(store: Store) -> StorageHandle {
        supervision::register(NAME);
        let backoff = Arc::new(Mutex::new(Backoff::workers()));
        let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let addr = SyncArbiter::start(1, move || {
            if !first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                supervision::record_restart(NAME);
                let delay = backoff.lock().unwrap_or_else(|e| e.into_inner()).on_start(Instant::now());
                tracing::warn!(delay_ms = delay.as_millis() as u64, "storage actor restarting");
                // This factory runs on the storage thread itself, so sleeping only delays storage.
                std::thread::sleep(delay);
            } else {
                backoff.lock().unwrap_or_else(|e| e.into_inner()).on_start(Instant::now());
            }
            StorageActor { store: store.clone() }
        });
        StorageHandle { addr }
    }

    /// The actor's address.
    pub fn addr(&self) -> &Addr<StorageActor> {
        &self.addr
    }

    /// Sends a message whose result nobody waits for.
    pub fn tell<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        StorageActor: Handler<M>,
    {
        crate::tell(&self.addr, msg);
    }
}
