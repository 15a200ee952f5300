//! The storage adapter: an actor that owns the sled [`Store`](estuary_storage::Store) on its
//! own `SyncArbiter` thread, so blocking sled calls never stall an event loop, and a small
//! async facade ([`StorageHandle`]) the other actors and the API use.
//!
//! Supervision: the `SyncArbiter` recreates the actor from its factory whenever it stops; the
//! factory counts the restart (`storage` in the restart table) and waits a capped exponential
//! backoff first. The `Store` handle is shared, so a restart does not reopen sled.

mod actor;
mod handlers;

pub use actor::{Reported, StorageActor, StorageFailure, StorageHandle};
