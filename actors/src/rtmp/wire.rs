//! Each frame serialised once per worker for all RTMP players that need the same bytes, and
//! the bytes written with `writev` instead of copied into a buffer per player.
//!
//! A frame's RTMP chunks depend only on the frame, the outgoing chunk size and the message
//! stream id ([`MediaWriter::key`]), and the same `Arc<MediaFrame>` goes to every player of a
//! stream. The players' writers of one worker run one after another when a frame arrives, so
//! a short list of recently serialised frames per worker ([`FrameCache`], in the worker's
//! `WorkerLocals`) catches nearly every repeat: the first player pays for the chunking, the
//! others take a reference-counted [`Bytes`]. Entries hold their `Arc`, so a frame's address
//! cannot be reused by another frame while it is listed. (Its lock is only ever taken by the
//! worker's own thread, so it is never contended.)

use bytes::{Bytes, BytesMut};
use estuary_protocols::rtmp::server::MediaWriter;
use estuary_protocols::MediaFrame;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Frames remembered per thread: a few frames of a few streams.
const CACHE_FRAMES: usize = 64;

struct Entry {
    frame: Arc<MediaFrame>,
    key: u64,
    bytes: Bytes,
}

/// Recently serialised frames of one worker.
#[derive(Default)]
pub struct FrameCache(VecDeque<Entry>);

impl FrameCache {
    /// The RTMP message for `frame` as `writer` would write it, shared with other players.
    pub fn bytes(&mut self, frame: &Arc<MediaFrame>, writer: &MediaWriter) -> Bytes {
        let key = writer.key();
        if let Some(entry) = self.0.iter().rev().find(|e| e.key == key && Arc::ptr_eq(&e.frame, frame)) {
            return entry.bytes.clone();
        }
        let mut out = BytesMut::new();
        writer.write_frame(&mut out, frame);
        let bytes = out.freeze();
        if self.0.len() == CACHE_FRAMES {
            self.0.pop_front();
        }
        self.0.push_back(Entry { frame: frame.clone(), key, bytes: bytes.clone() });
        bytes
    }
}

/// [`FrameCache::bytes`] through the worker's lock.
pub fn frame_bytes(cache: &std::sync::Mutex<FrameCache>, frame: &Arc<MediaFrame>, writer: &MediaWriter) -> Bytes {
    cache.lock().unwrap_or_else(|e| e.into_inner()).bytes(frame, writer)
}

/// Byte pieces waiting to be written, in order.
#[derive(Default)]
pub struct Pending {
    pieces: VecDeque<Bytes>,
    len: usize,
}

/// Pieces per `writev` (Linux's IOV_MAX is 1024).
const MAX_IOV: usize = 256;

impl Pending {
    /// Queues `bytes`.
    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.pieces.push_back(bytes);
        }
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes everything with vectored writes; returns the bytes written.
    pub async fn write_to<W: tokio::io::AsyncWrite + Unpin>(&mut self, socket: &mut W) -> std::io::Result<usize> {
        let total = self.len;
        while !self.pieces.is_empty() {
            let written = {
                let slices: Vec<IoSlice<'_>> = self.pieces.iter().take(MAX_IOV).map(|b| IoSlice::new(b)).collect();
                socket.write_vectored(&slices).await?
            };
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.consume(written);
        }
        Ok(total)
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.pieces.front_mut() else { return };
            if front.len() <= n {
                n -= front.len();
                self.pieces.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_protocols::media::{Codec, Timebase, TrackKind};

    fn frame(payload: &'static [u8]) -> Arc<MediaFrame> {
        Arc::new(MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts: 40, pts: 40, timebase: Timebase::MILLIS, keyframe: false, config: false, payload: Bytes::from_static(payload) })
    }

    #[test]
    fn shared_bytes_equal_a_fresh_serialisation() {
        let cache = std::sync::Mutex::new(FrameCache::default());
        let (a, b) = (frame(&[1; 300]), frame(&[2; 300]));
        for (chunk, sid) in [(128, 1), (4096, 1), (128, 2)] {
            let writer = MediaWriter::new(chunk, sid);
            for f in [&a, &b, &a] {
                let mut fresh = BytesMut::new();
                writer.write_frame(&mut fresh, f);
                assert_eq!(frame_bytes(&cache, f, &writer), fresh.freeze(), "chunk {chunk} stream {sid}");
            }
        }
        // A second request for the same frame and writer is the same allocation.
        let writer = MediaWriter::new(128, 1);
        assert_eq!(frame_bytes(&cache, &a, &writer).as_ptr(), frame_bytes(&cache, &a, &writer).as_ptr());
    }

    /// A writer that takes at most `step` bytes per call.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
    }

    impl tokio::io::AsyncWrite for Trickle {
        fn poll_write(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.got.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn partial_writes_resume_mid_piece() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut pending = Pending::default();
        let mut expected = Vec::new();
        for i in 0..600u32 {
            let piece: Vec<u8> = (0..(i % 7 + 1)).map(|j| (i + j) as u8).collect();
            expected.extend_from_slice(&piece);
            pending.push(Bytes::from(piece));
        }
        pending.push(Bytes::new());
        assert_eq!(pending.len(), expected.len());
        let mut sink = Trickle { got: Vec::new(), step: 5 };
        let written = runtime.block_on(pending.write_to(&mut sink)).unwrap();
        assert_eq!(written, expected.len());
        assert_eq!(sink.got, expected);
        assert!(pending.is_empty());
    }
}
