//! RTMP service: a supervised listener that accepts TCP connections and one session actor per
//! connection.
//!
//! A session actor owns a sans-IO [`ServerSession`](estuary_protocols::rtmp::server::ServerSession):
//! bytes from the socket go in (behind `catch_unwind`, so a bug in protocol code ends only
//! that connection), outputs are drained: bytes to the connection's writer task, events to the
//! actor. Publish and play requests are decided by the stream registry before the session
//! accepts them. The writer task owns the socket's write half and writes control replies, with
//! a send timeout so a stalled peer cannot pin it; once a play is accepted it hands the write
//! half to its worker's delivery loop ([`crate::delivery`]) until the player stops.

mod listener;
mod session;
pub(crate) mod writer;

pub use listener::{bind, RtmpListener};
pub use session::{connection_vhost, RtmpSession};
