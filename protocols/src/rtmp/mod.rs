//! RTMP (Adobe RTMP specification 1.0) as sans-IO sessions.
//!
//! - The handshake (§5.2, plus the digest variant Flash-era clients require) comes from
//!   `rml_rtmp`, called behind `catch_unwind`.
//! - The chunk stream ([`chunk`]), the message layer ([`message`]) and the sessions
//!   ([`server`], [`client`]) are Estuary's own: `rml_rtmp`'s chunk deserializer keeps a single
//!   partial-message buffer for all chunk streams (interleaved chunk streams corrupt each
//!   other), has no limit on message sizes, panics on crafted input and has no enhanced RTMP.
//!   Ours reassembles per chunk stream, enforces limits with errors that name the offset, and
//!   carries enhanced FLV bodies (H.265, AV1, Opus) unchanged.
//!
//! A session is driven with `handle_input(bytes)`, then `poll_output()` until it returns
//! `None`. Sessions never read a clock: the actor that owns one enforces timeouts.

pub mod chunk;
pub mod client;
pub mod message;
pub mod server;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult};
use std::panic::{catch_unwind, AssertUnwindSafe};
use thiserror::Error;

/// Feeds `data` to an `rml_rtmp` handshake (behind `catch_unwind`) and appends its replies to
/// `out`. Returns the bytes that followed the handshake once it completed, `None` while it is
/// still in progress.
pub(crate) fn drive_handshake(handshake: &mut Handshake, data: &[u8], out: &mut bytes::BytesMut) -> Result<Option<Vec<u8>>, RtmpError> {
    let result = catch_unwind(AssertUnwindSafe(|| handshake.process_bytes(data)))
        .map_err(|_| RtmpError::Handshake("handshake parser panicked on the input".into()))?
        .map_err(|e| RtmpError::Handshake(format!("{e:?}")))?;
    match result {
        HandshakeProcessResult::InProgress { response_bytes } => {
            out.extend_from_slice(&response_bytes);
            Ok(None)
        }
        HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
            out.extend_from_slice(&response_bytes);
            Ok(Some(remaining_bytes))
        }
    }
}

/// Why an RTMP session ended.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RtmpError {
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The chunk stream was malformed or broke a limit.
    #[error("{0}")]
    Chunk(#[from] chunk::ChunkError),
    /// A command could not be decoded.
    #[error("malformed {what} (input offset ~{offset}): {detail}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Input bytes consumed so far.
        offset: u64,
        /// The decoder's message.
        detail: String,
    },
    /// The peer broke the protocol's order of things.
    #[error("protocol violation: {0}")]
    Protocol(String),
}
