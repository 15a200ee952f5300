//! The write half of an RTMP connection.

use crate::node::clients::ClientRecord;
use super::wire::{self, Pending};
use bytes::{Bytes, BytesMut};
use estuary_protocols::rtmp::server::MediaWriter;
use estuary_protocols::MediaFrame;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

/// Bytes gathered into one write.
const BATCH_BYTES: usize = 64 * 1024;

/// What the session tells its writer.
pub enum WriterCmd {
    /// Control bytes from the protocol session.
    Bytes(Bytes),
    /// Start sending a subscription's frames.
    StartMedia {
        /// The subscription.
        rx: mpsc::Receiver<Arc<MediaFrame>>,
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

async fn next_frame(media: &mut Option<(mpsc::Receiver<Arc<MediaFrame>>, MediaWriter)>) -> Option<Arc<MediaFrame>> {
    match media {
        Some((rx, _)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs until the connection ends. With a non-zero `merge`, media is written at most once per
/// `merge` interval: frames that arrive in between wait and go out in the same write.
pub async fn run(mut socket: OwnedWriteHalf, mut ctrl: mpsc::Receiver<WriterCmd>, record: Arc<ClientRecord>, send_timeout: Duration, merge: Duration, locals: Arc<crate::node::workers::WorkerLocals>) -> WriterEnd {
    let cache = &locals.rtmp_frames;
    let mut media: Option<(mpsc::Receiver<Arc<MediaFrame>>, MediaWriter)> = None;
    let mut buf = Pending::default();
    // The first media write (sequence headers and the cached GOP) goes out at once: merging
    // only starts after it, so startup time is not delayed.
    let mut last_media_write = tokio::time::Instant::now().checked_sub(merge).unwrap_or_else(tokio::time::Instant::now);
    let mut backlogged = false;
    loop {
        let end = tokio::select! {
            biased;
            cmd = ctrl.recv() => match cmd {
                Some(WriterCmd::Bytes(bytes)) => {
                    buf.push(bytes);
                    None
                }
                Some(WriterCmd::StartMedia { rx, writer }) => {
                    media = Some((rx, writer));
                    None
                }
                Some(WriterCmd::StopMedia) => {
                    media = None;
                    None
                }
                Some(WriterCmd::Close) | None => Some(WriterEnd::Closed),
            },
            frame = next_frame(&mut media) => match (frame, media.as_mut()) {
                (Some(frame), Some((rx, writer))) => {
                    buf.push(wire::frame_bytes(cache, &frame, writer));
                    // Merge only when caught up: a player with a backlog is written to at once.
                    if !merge.is_zero() && !backlogged {
                        tokio::time::sleep_until(last_media_write + merge).await;
                        last_media_write = tokio::time::Instant::now();
                    }
                    let limit = BATCH_BYTES;
                    while buf.len() < limit {
                        match rx.try_recv() {
                            Ok(frame) => buf.push(wire::frame_bytes(cache, &frame, writer)),
                            Err(_) => break,
                        }
                    }
                    backlogged = buf.len() >= limit;
                    None
                }
                (_, media_now) => {
                    if let Some((_, writer)) = media_now {
                        let mut end = BytesMut::new();
                        writer.write_stream_end(&mut end);
                        buf.push(end.freeze());
                    }
                    media = None;
                    Some(WriterEnd::StreamEnded)
                }
            },
        };
        if !buf.is_empty() {
            match tokio::time::timeout(send_timeout, buf.write_to(&mut socket)).await {
                Ok(Ok(written)) => record.add_out(written),
                Ok(Err(e)) => return WriterEnd::Io(e.to_string()),
                Err(_) => return WriterEnd::Timeout(send_timeout),
            }
        }
        if let Some(end) = end {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.shutdown()).await;
            return end;
        }
    }
}
