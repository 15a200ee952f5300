//! HTTP live players (HTTP-FLV and HTTP-TS): a stream subscription encoded into a byte stream
//! for a chunked HTTP response. Frames come from the stream actor (see [`crate::stream`] for
//! what a late joiner receives and how a slow player is treated); each poll encodes every
//! frame already queued, up to 64 KiB, into one chunk.

use crate::node::clients::{ClientGuard, Role};
use crate::messages::{AddSubscriber, FindStream, PlayRefused};
use crate::registry::StreamRegistry;
use crate::stream::Subscription;
use actix::Addr;
use bytes::{Bytes, BytesMut};
use estuary_protocols::media::{MediaFrame, TrackKind};
use estuary_protocols::container::ts::TsMuxer;
use estuary_protocols::container::flv;
use estuary_storage::StreamKey;
use futures_util::Stream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

const BATCH_BYTES: usize = 64 * 1024;

/// Turns frames into a container byte stream.
pub trait Encoder: Send + Unpin + 'static {
    /// Bytes sent before any frame.
    fn start(&mut self, subscription: &Subscription) -> Option<Bytes>;
    /// Appends `frame`.
    fn encode(&mut self, frame: &MediaFrame, out: &mut BytesMut);
}

/// FLV: the file header, then one tag per frame.
#[derive(Default)]
pub struct FlvEncoder;

impl Encoder for FlvEncoder {
    fn start(&mut self, subscription: &Subscription) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(&flv::file_header(subscription.has_audio, subscription.has_video)))
    }

    fn encode(&mut self, frame: &MediaFrame, out: &mut BytesMut) {
        flv::write_frame_tag(out, frame);
    }
}

/// MPEG-TS: PAT/PMT once the codecs are known (and again at every video keyframe), then one
/// PES per frame.
#[derive(Default)]
pub struct TsEncoder {
    video: Option<Arc<MediaFrame>>,
    audio: Option<Arc<MediaFrame>>,
    muxer: Option<TsMuxer>,
    /// A track appeared or changed codec: the next media frame starts new tables.
    retrack: bool,
}

impl TsEncoder {
    /// PAT and PMT as the next ones will be, once the muxer started (for a player joining
    /// between two sets of tables).
    pub fn tables(&self) -> Option<Bytes> {
        let mut muxer = self.muxer.clone()?;
        let mut out = BytesMut::new();
        muxer.write_tables(&mut out);
        Some(out.freeze())
    }
}

impl Encoder for TsEncoder {
    fn start(&mut self, _: &Subscription) -> Option<Bytes> {
        None
    }

    fn encode(&mut self, frame: &MediaFrame, out: &mut BytesMut) {
        if frame.config {
            let slot = match frame.track {
                TrackKind::Video => &mut self.video,
                TrackKind::Audio => &mut self.audio,
                TrackKind::Data => return,
            };
            let codec_changed = slot.as_ref().map(|f| f.codec) != Some(frame.codec);
            *slot = Some(Arc::new(frame.clone()));
            match (&mut self.muxer, codec_changed) {
                (Some(muxer), false) => {
                    muxer.write_frame(frame, out);
                }
                _ => self.retrack = true,
            }
            return;
        }
        if frame.track == TrackKind::Data {
            // Timed metadata (the API's cue points) becomes ID3 in a PES stream of its own,
            // declared from the first tag on (see `TsMuxer::with_timed_metadata`).
            if let Some(muxer) = self.muxer.as_mut() {
                muxer.write_frame(frame, out);
            }
            return;
        }
        if self.muxer.is_none() || self.retrack {
            let (video, audio) = (self.video.as_ref().map(|f| f.codec), self.audio.as_ref().map(|f| f.codec));
            // A track change mid-stream continues the old muxer's continuity counters.
            let mut muxer = match &self.muxer {
                Some(old) => old.retracked(video, audio),
                None => TsMuxer::new(video, audio).with_timed_metadata(),
            };
            self.retrack = false;
            for config in [&self.video, &self.audio].into_iter().flatten() {
                muxer.write_frame(config, out);
            }
            muxer.write_tables(out);
            self.muxer = Some(muxer);
        } else if frame.is_video_keyframe() {
            if let Some(muxer) = self.muxer.as_mut() {
                muxer.write_tables(out);
            }
        }
        if let Some(muxer) = self.muxer.as_mut() {
            muxer.write_frame(frame, out);
        }
    }
}

struct Player<E: Encoder> {
    hooks: std::sync::Arc<crate::access::hooks::Hooks>,
    guard: ClientGuard,
    key: StreamKey,
    params: Vec<(String, String)>,
    header: Option<Bytes>,
    rx: mpsc::Receiver<Arc<MediaFrame>>,
    encoder: E,
    started: bool,
    backlogged: bool,
    /// On the node's census while the response streams.
    _counted: crate::node::census::Counted,
}

impl<E: Encoder> Drop for Player<E> {
    fn drop(&mut self) {
        let record = self.guard.record();
        let ip = record.peer.rsplit_once(':').map(|(ip, _)| ip.trim_matches(['[', ']'])).unwrap_or("");
        self.hooks.notify(crate::access::hooks::Event::Stop, &self.key.app, crate::access::hooks::body(record.id, ip, &self.key.vhost, &self.key.app, &self.key.stream, &self.params));
        tracing::info!(
            client = record.id,
            protocol = record.protocol,
            peer = %record.peer,
            stream = %self.key,
            bytes_out = record.bytes_out.load(Ordering::Relaxed),
            alive_ms = record.connected.elapsed().as_millis() as u64,
            "HTTP player left"
        );
    }
}

/// The admission of an HTTP player of `protocol` (`http-flv`, `http-ts`) to `key`: the access
/// policy, a cluster pull if the stream lives elsewhere, and a subscription (`shared` for the
/// delivery engine). Fails when the stream is unknown or has never been published, or the
/// policy refuses.
async fn admit(node: &crate::node::NodeContext, registry: &Addr<StreamRegistry>, key: &StreamKey, peer: std::net::SocketAddr, params: &[(String, String)], protocol: &'static str, shared: bool) -> Result<(ClientGuard, Subscription), PlayRefused> {
    let not_found = || PlayRefused::NotFound(key.to_string());
    let guard = node.clients.register(protocol, peer.to_string());
    let request = crate::access::Request {
        action: crate::access::auth::Action::Play,
        client: guard.id(),
        ip: Some(peer.ip()),
        vhost: &key.vhost,
        app: &key.app,
        stream: &key.stream,
        params,
    };
    node.access.check(&request).await.map_err(|refused| PlayRefused::Denied(refused.to_string()))?;
    if crate::cluster::pull::ensure(node, registry, key).await {
        crate::cluster::pull::wait_live(node, registry, key, crate::cluster::pull::START_TIMEOUT).await;
    }
    let stream = registry.send(FindStream { key: key.clone(), create: false }).await.map_err(|_| not_found())?.ok_or_else(not_found)?;
    let subscription = stream.send(AddSubscriber { client: if shared { node.clients.allocate_id() } else { guard.id() }, require_live: true, shared }).await.map_err(|_| not_found())??;
    guard.record().set_role(Role::Play, key.to_string());
    tracing::info!(client = guard.id(), protocol, peer = %guard.record().peer, stream = %key, "HTTP play started");
    Ok((guard, subscription))
}

/// Subscribes an HTTP player of `protocol` (`http-flv`, `http-ts`) to `key`, after the
/// access policy allowed it, as a byte stream for a chunked response. Fails when the stream
/// is unknown or has never been published, or the policy refuses.
#[allow(clippy::too_many_arguments)]
pub async fn play<E: Encoder>(
    node: &crate::node::NodeContext,
    registry: &Addr<StreamRegistry>,
    key: StreamKey,
    peer: std::net::SocketAddr,
    params: Vec<(String, String)>,
    protocol: &'static str,
    mut encoder: E,
    merge: std::time::Duration,
) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + 'static, PlayRefused> {
    let (guard, subscription) = admit(node, registry, &key, peer, &params, protocol, false).await?;
    let header = encoder.start(&subscription);
    let player = Player { hooks: node.hooks.clone(), guard, key, params, header, rx: subscription.rx, encoder, started: false, backlogged: false, _counted: node.census.enter("http_live_player") };
    Ok(futures_util::stream::unfold(player, move |mut player| async move {
        if let Some(header) = player.header.take() {
            player.guard.record().add_out(header.len());
            return Some((Ok(header), player));
        }
        let mut buf = BytesMut::with_capacity(8 * 1024);
        while buf.is_empty() {
            let record = player.guard.record().clone();
            let first = tokio::select! {
                frame = player.rx.recv() => frame?,
                _ = record.kicked() => {
                    tracing::info!(client = record.id, stream = %player.key, "HTTP player kicked through the API");
                    return None;
                }
            };
            player.encoder.encode(&first, &mut buf);
            // The first chunk (headers and the cached GOP) goes out at once, and so does
            // everything while the player has a backlog; merging applies when it is caught up.
            if !merge.is_zero() && player.started && !player.backlogged {
                tokio::time::sleep(merge).await;
            }
            player.started = true;
            // Chunks stay at 64 KiB even for the startup burst: the HTTP server keeps its write
            // buffer at the largest chunk it was given, per connection.
            let limit = BATCH_BYTES;
            while buf.len() < limit {
                match player.rx.try_recv() {
                    Ok(frame) => player.encoder.encode(&frame, &mut buf),
                    Err(_) => break,
                }
            }
            player.backlogged = buf.len() >= limit;
        }
        player.guard.record().add_out(buf.len());
        Some((Ok(buf.freeze()), player))
    }))
}


/// A write to an HTTP-FLV player that takes no byte for this long ends it.
const HTTP_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Which HTTP live format a delivered player gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveFormat {
    /// HTTP-FLV.
    Flv,
    /// HTTP-TS.
    Ts,
}

/// Plays `key` as HTTP-FLV or HTTP-TS on `socket` through the delivery engine (see
/// [`crate::delivery`]): after the admission, the response head and the stream's bytes are
/// written by a worker's delivery loop straight to the connection (a handle of the HTTP
/// server's own), with no copy through the HTTP server's buffers. Returns once the player
/// is gone; the connection is shut down by then, so the HTTP server's own response goes
/// nowhere. `head_fields` are extra response header lines (CORS).
#[allow(clippy::too_many_arguments)]
pub async fn play_on(
    live_format: LiveFormat,
    node: &crate::node::NodeContext,
    registry: &Addr<StreamRegistry>,
    key: StreamKey,
    peer: std::net::SocketAddr,
    params: Vec<(String, String)>,
    socket: std::net::TcpStream,
    merge: std::time::Duration,
    head_fields: &str,
) -> Result<(), PlayRefused> {
    use crate::delivery::engine::{self, Format, Outcome, Registration, Sink};
    let (protocol, content_type, format) = match live_format {
        LiveFormat::Flv => ("http-flv", "video/x-flv", Format::Flv),
        LiveFormat::Ts => ("http-ts", "video/mp2t", Format::Ts),
    };
    let (guard, subscription) = admit(node, registry, &key, peer, &params, protocol, true).await?;
    // Counted until the player has gone (this function returns then).
    let _counted = node.census.enter("http_live_player");
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nCache-Control: no-cache\r\nConnection: close\r\n{head_fields}\r\n");
    let mut own = vec![Bytes::from(head)];
    if live_format == LiveFormat::Flv {
        own.push(Bytes::copy_from_slice(&flv::file_header(subscription.has_audio, subscription.has_video)));
    }
    // The player ends when this sender goes (a kick, or the HTTP server dropping the request).
    let (ctrl_tx, ctrl) = mpsc::channel(1);
    let (done, outcome) = tokio::sync::oneshot::channel();
    let record = guard.record().clone();
    let registration = Registration { key: key.clone(), subscription, socket: Sink::Http(socket), ctrl, own, writer: format, record: record.clone(), send_timeout: HTTP_SEND_TIMEOUT, done };
    let worker = node.topology.workers.next_worker();
    engine::hand_over_to(&worker, merge, node.stats.clone(), registration);
    // Hooks and the log line when the player goes, whichever way.
    let _left = Left { hooks: node.hooks.clone(), guard, key: key.clone(), params };
    let mut ctrl_tx = Some(ctrl_tx);
    let mut outcome = outcome;
    loop {
        tokio::select! {
            end = &mut outcome => {
                if let Ok(Outcome::Ended(end)) = &end {
                    tracing::debug!(client = record.id, stream = %key, ?end, protocol, "HTTP player ended");
                }
                // Not a byte went out (the loop refused the player or failed taking it): the
                // HTTP server answers with an error instead of an empty stream.
                if record.bytes_out.load(Ordering::Relaxed) == 0 {
                    let why = match end {
                        Ok(Outcome::Ended(end)) => format!("{end:?}"),
                        _ => "the delivery loop dropped the player".to_string(),
                    };
                    return Err(PlayRefused::Unavailable(format!("cannot serve {key} now: {why}")));
                }
                break;
            }
            // The loop ends the player once this sender is gone, then answers.
            _ = record.kicked(), if ctrl_tx.is_some() => {
                tracing::info!(client = record.id, stream = %key, "HTTP player kicked through the API");
                ctrl_tx = None;
            }
        }
    }
    Ok(())
}

/// Sends `on_stop` and logs when an HTTP player served by the delivery engine goes.
struct Left {
    hooks: std::sync::Arc<crate::access::hooks::Hooks>,
    guard: ClientGuard,
    key: StreamKey,
    params: Vec<(String, String)>,
}

impl Drop for Left {
    fn drop(&mut self) {
        let record = self.guard.record();
        let ip = record.peer.rsplit_once(':').map(|(ip, _)| ip.trim_matches(['[', ']'])).unwrap_or("");
        self.hooks.notify(crate::access::hooks::Event::Stop, &self.key.app, crate::access::hooks::body(record.id, ip, &self.key.vhost, &self.key.app, &self.key.stream, &self.params));
        tracing::info!(client = record.id, protocol = record.protocol, peer = %record.peer, stream = %self.key, bytes_out = record.bytes_out.load(Ordering::Relaxed), alive_ms = record.connected.elapsed().as_millis() as u64, "HTTP player left");
    }
}
