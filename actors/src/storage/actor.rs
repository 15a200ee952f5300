use crate::node::NodeContext;
use crate::node::supervision::Backoff;
use actix::prelude::*;
use estuary_storage::Store;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Owns the database.
pub struct StorageActor {
    pub(super) store: Store,
    node: NodeContext,
}

/// What a handler answers when it panicked.
pub(super) trait FromPanic {
    fn from_panic(panic: crate::node::supervision::Panicked) -> Self;
}

impl FromPanic for () {
    fn from_panic(_: crate::node::supervision::Panicked) -> Self {}
}

impl<T> FromPanic for Result<T, StorageFailure> {
    fn from_panic(panic: crate::node::supervision::Panicked) -> Self {
        Err(StorageFailure::Panicked(panic.0))
    }
}

/// Why a storage request failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageFailure {
    /// The store refused or could not complete it (names the tree and key).
    #[error(transparent)]
    Store(#[from] estuary_storage::StorageError),
    /// The handler panicked; the actor started over, the request may be retried.
    #[error("the storage actor panicked ({0}); it started over, try again")]
    Panicked(String),
}

impl StorageActor {
    /// Runs a handler body, catching a panic. The actor's only state is the shared `Store`
    /// handle (sled itself is crash-safe), so starting over is counting the restart and
    /// answering the one request that failed with an error; the thread lives on.
    pub(super) fn guarded<R: FromPanic>(&mut self, what: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        crate::node::supervision::catch(|| f(self)).unwrap_or_else(|panic| {
            self.node.restarts.panicked(NAME, &format_args!("storage ({what})"), &panic);
            R::from_panic(panic)
        })
    }
}

impl Actor for StorageActor {
    type Context = SyncContext<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "storage flush on stop failed");
        }
    }
}

/// Requests waiting for the storage thread, at most. A `SyncArbiter`'s queue has no bound
/// of its own, so the handle keeps one: every request holds a permit until it is handled.
const QUEUE: usize = 4096;

/// The address of the storage actor, with fire-and-forget and request helpers.
#[derive(Clone)]
pub struct StorageHandle {
    addr: Addr<StorageActor>,
    permits: Arc<tokio::sync::Semaphore>,
    /// `persist` deliveries waiting now.
    persisting: Arc<std::sync::atomic::AtomicUsize>,
    node: NodeContext,
}

/// `persist` deliveries that may wait at once (a storage stall with publishers reconnecting in
/// a loop must not pile up tasks without end); past it, updates are dropped, logged and counted.
const PERSIST_WAITING: usize = 4096;

/// A storage answer that may carry a failure worth logging.
pub trait Reported {
    /// The failure, if any.
    fn failure(&self) -> Option<String>;
}

impl Reported for () {
    fn failure(&self) -> Option<String> {
        None
    }
}

impl<T> Reported for Result<T, StorageFailure> {
    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(|e| e.to_string())
    }
}

pub(crate) const NAME: &str = "storage";

impl StorageHandle {
    /// Starts the storage actor on its own thread.
    pub fn start(node: NodeContext, store: Store) -> StorageHandle {
        node.restarts.register(NAME);
        let factory_node = node.clone();
        let backoff = Arc::new(Mutex::new(Backoff::workers()));
        let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let addr = SyncArbiter::start(1, move || {
            if !first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                factory_node.restarts.record(NAME);
                let delay = backoff.lock().unwrap_or_else(|e| e.into_inner()).on_start(Instant::now());
                tracing::warn!(delay_ms = delay.as_millis() as u64, "storage actor restarting");
                // This factory runs on the storage thread itself, so sleeping only delays storage.
                std::thread::sleep(delay);
            } else {
                backoff.lock().unwrap_or_else(|e| e.into_inner()).on_start(Instant::now());
            }
            StorageActor { store: store.clone(), node: factory_node.clone() }
        });
        StorageHandle { addr, permits: Arc::new(tokio::sync::Semaphore::new(QUEUE)), persisting: Arc::default(), node }
    }

    /// Sends a request and waits for its answer, waiting first for room in the queue.
    pub async fn ask<M>(&self, msg: M) -> Result<M::Result, MailboxError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        StorageActor: Handler<M>,
    {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.permits.acquire().await;
        self.addr.send(msg).await
    }

    /// The actor's address.
    pub fn addr(&self) -> &Addr<StorageActor> {
        &self.addr
    }

    /// Sends a message that should not be lost, without waiting for it: a task waits for room
    /// in the queue, then delivers it; a failure is logged. For publish counters and recording
    /// gaps. At most [`PERSIST_WAITING`] such deliveries wait at once; past that (storage
    /// stalled for long), updates are dropped, logged and counted.
    pub fn persist<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send + Reported,
        StorageActor: Handler<M>,
    {
        use std::sync::atomic::Ordering;
        if self.persisting.fetch_add(1, Ordering::AcqRel) >= PERSIST_WAITING {
            self.persisting.fetch_sub(1, Ordering::AcqRel);
            let dropped = self.node.stats.storage_dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped == 1 || dropped.is_power_of_two() {
                tracing::error!(message = std::any::type_name::<M>(), waiting = PERSIST_WAITING, dropped, "storage far behind; update dropped");
            }
            return;
        }
        let handle = self.clone();
        actix::spawn(async move {
            match handle.ask(msg).await {
                Ok(answer) => {
                    if let Some(failure) = answer.failure() {
                        tracing::error!(message = std::any::type_name::<M>(), error = %failure, "storage update failed");
                    }
                }
                Err(e) => tracing::error!(message = std::any::type_name::<M>(), error = %e, "storage unavailable; update lost"),
            }
            handle.persisting.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Sends a message whose result nobody waits for. With the queue full (storage far
    /// behind), the message is dropped and counted rather than queued without bound; only
    /// bookkeeping that the next event rewrites goes this way (codecs, device records).
    pub fn tell<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        StorageActor: Handler<M>,
    {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let addr = self.addr.clone();
                actix::spawn(async move {
                    let _ = addr.send(msg).await;
                    drop(permit);
                });
            }
            Err(_) => {
                let dropped = self.node.stats.storage_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if dropped == 1 || dropped.is_power_of_two() {
                    tracing::warn!(message = std::any::type_name::<M>(), queue = QUEUE, dropped, "storage queue full; update dropped");
                }
            }
        }
    }
}
