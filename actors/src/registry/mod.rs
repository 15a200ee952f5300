//! The stream registry: the one place that knows which stream actor serves `app/stream` and
//! who publishes it. A second publisher of a live stream is refused here, synchronously, so
//! two publishers can never race into one stream.

mod actor;
mod handlers;

pub use actor::StreamRegistry;
