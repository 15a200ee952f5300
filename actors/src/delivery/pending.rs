//! Byte pieces waiting to be written, in order, written with `writev` instead of copied into
//! one buffer (an RTMP session's control bytes; a delivery cursor's own bytes).

use bytes::Bytes;
use std::collections::VecDeque;
use std::io::IoSlice;
use tokio::io::AsyncWriteExt;

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

    /// Queues `bytes` before everything else.
    pub fn push_front(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.pieces.push_front(bytes);
        }
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> impl Iterator<Item = &Bytes> {
        self.pieces.iter()
    }

    /// Takes every piece queued.
    pub fn take_all(&mut self) -> Vec<Bytes> {
        self.len = 0;
        self.pieces.drain(..).collect()
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

    /// Drops the first `n` bytes (at most what is queued).
    pub fn consume(&mut self, n: usize) {
        let mut n = n.min(self.len);
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
