//! The write half of an RTMP connection: control messages until the session plays a
//! stream, then the worker's delivery loop (see [`crate::delivery`]) writes until the player
//! stops.

use crate::node::clients::ClientRecord;
use crate::delivery::pending::Pending;
use crate::delivery::{self, Outcome, Registration};
use bytes::Bytes;
use estuary_protocols::rtmp::server::MediaWriter;
use estuary_storage::StreamKey;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

/// What the session tells its writer.
pub enum WriterCmd {
    /// Control bytes from the protocol session.
    Bytes(Bytes),
    /// Start sending a stream: the connection goes to the worker's delivery loop.
    StartMedia {
        /// The stream.
        key: StreamKey,
        /// A shared subscription to it (see [`crate::delivery`]).
        subscription: crate::stream::Subscription,
        /// How to serialise frames for this connection.
        writer: MediaWriter,
    },
    /// Stop sending media (the player stopped).
    StopMedia,
    /// Flush and close.
    Close,
}

/// Why the writer ended.
#[derive(Debug)]
pub enum WriterEnd {
    /// The session asked, or went away.
    Closed,
    /// The stream ended for this player (stream stopped, or the player was cut off as too slow).
    StreamEnded,
    /// A write failed.
    Io(String),
    /// A write did not complete within the send timeout.
    Timeout(Duration),
}

/// What the writer needs from its node.
pub struct WriterContext {
    /// The connection's record.
    pub record: Arc<ClientRecord>,
    /// A write that does not complete within this time ends the connection.
    pub send_timeout: Duration,
    /// Players' writes are merged over this interval.
    pub merge: Duration,
    /// The worker's shared state (its delivery loop).
    pub locals: Arc<crate::node::workers::WorkerLocals>,
    /// The node's counters.
    pub stats: Arc<crate::node::stats::Stats>,
}

/// Runs until the connection ends.
pub async fn run(mut socket: OwnedWriteHalf, mut ctrl: mpsc::Receiver<WriterCmd>, context: WriterContext) -> WriterEnd {
    let mut buf = Pending::default();
    loop {
        let end = match ctrl.recv().await {
            Some(WriterCmd::Bytes(bytes)) => {
                buf.push(bytes);
                None
            }
            Some(WriterCmd::StartMedia { key, subscription, writer }) => {
                let (done, outcome) = oneshot::channel();
                let registration = Registration { key, subscription, socket: delivery::engine::Sink::Rtmp(socket), ctrl, own: buf.take_all(), writer: delivery::engine::Format::Rtmp(writer), record: context.record.clone(), send_timeout: context.send_timeout, done };
                delivery::hand_over(&context.locals.delivery, context.merge, context.stats.clone(), registration);
                match outcome.await {
                    Ok(Outcome::Ended(end)) => return end,
                    Ok(Outcome::Returned { socket: returned, ctrl: commands, own }) => {
                        socket = returned;
                        ctrl = commands;
                        for bytes in own {
                            buf.push(bytes);
                        }
                        None
                    }
                    Err(_) => return WriterEnd::Io("the delivery loop stopped".into()),
                }
            }
            Some(WriterCmd::StopMedia) => None,
            Some(WriterCmd::Close) | None => Some(WriterEnd::Closed),
        };
        if !buf.is_empty() {
            match tokio::time::timeout(context.send_timeout, buf.write_to(&mut socket)).await {
                Ok(Ok(written)) => context.record.add_out(written),
                Ok(Err(e)) => return WriterEnd::Io(e.to_string()),
                Err(_) => return WriterEnd::Timeout(context.send_timeout),
            }
        }
        if let Some(end) = end {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.shutdown()).await;
            return end;
        }
    }
}
