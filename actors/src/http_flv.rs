//! HTTP-FLV players: an FLV header, then one tag per frame, as a byte stream for a chunked
//! HTTP response. Frames come from a stream subscription (see [`crate::stream`] for what a
//! late joiner receives and how a slow player is treated); each poll writes every frame
//! already queued, up to 64 KiB, as one chunk.

use crate::clients::{self, ClientGuard, Role};
use crate::messages::{AddSubscriber, FindStream, PlayRefused};
use crate::registry::StreamRegistry;
use actix::Addr;
use bytes::{Bytes, BytesMut};
use estuary_protocols::flv;
use estuary_protocols::MediaFrame;
use estuary_storage::StreamKey;
use futures_util::Stream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

const BATCH_BYTES: usize = 64 * 1024;

struct Player {
    guard: ClientGuard,
    key: StreamKey,
    header: Option<Bytes>,
    rx: mpsc::Receiver<Arc<MediaFrame>>,
}

impl Drop for Player {
    fn drop(&mut self) {
        let record = self.guard.record();
        tracing::info!(
            client = record.id,
            peer = %record.peer,
            stream = %self.key,
            bytes_out = record.bytes_out.load(Ordering::Relaxed),
            alive_ms = record.connected.elapsed().as_millis() as u64,
            "HTTP-FLV player left"
        );
    }
}

/// Subscribes an HTTP-FLV player to `app/stream`. Fails when the stream is unknown or has
/// never been published.
pub async fn play(registry: &Addr<StreamRegistry>, key: StreamKey, peer: String) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + 'static, PlayRefused> {
    let not_found = || PlayRefused::NotFound(key.to_string());
    let stream = registry.send(FindStream { key: key.clone(), create: false }).await.map_err(|_| not_found())?.ok_or_else(not_found)?;
    let guard = clients::register("http-flv", peer);
    let subscription = stream.send(AddSubscriber { client: guard.id(), require_live: true }).await.map_err(|_| not_found())??;
    guard.record().set_role(Role::Play, key.to_string());
    tracing::info!(client = guard.id(), peer = %guard.record().peer, stream = %key, "HTTP-FLV play started");
    let header = Bytes::copy_from_slice(&flv::file_header(subscription.has_audio, subscription.has_video));
    let player = Player { guard, key, header: Some(header), rx: subscription.rx };
    Ok(futures_util::stream::unfold(player, |mut player| async move {
        if let Some(header) = player.header.take() {
            player.guard.record().add_out(header.len());
            return Some((Ok(header), player));
        }
        let first = player.rx.recv().await?;
        let mut buf = BytesMut::with_capacity(BATCH_BYTES);
        flv::write_frame_tag(&mut buf, &first);
        while buf.len() < BATCH_BYTES {
            match player.rx.try_recv() {
                Ok(frame) => flv::write_frame_tag(&mut buf, &frame),
                Err(_) => break,
            }
        }
        player.guard.record().add_out(buf.len());
        Some((Ok(buf.freeze()), player))
    }))
}
