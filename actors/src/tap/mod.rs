//! The AI tap: a stream's audio and pictures, decoded, handed to models (speech recognition,
//! object detection, moderation) over a WebSocket (`/tap/<app>/<stream>`, served by the node
//! crate).
//!
//! One **feed** per stream and output format (rate, channels): it subscribes to the stream
//! once, decodes its audio to PCM (in-process: AAC with libfdk-aac, Opus with opus-rs, G.711
//! by table) and converts it to the format, then broadcasts chunks to every tap client that
//! asked for that format. Twenty clients of one format cost one decoder. The broadcast never
//! waits: a client that does not keep up loses its oldest chunks (counted per client and per
//! feed, and told to the client), and neither the stream nor the other clients slow down.
//! A feed stops when its last client leaves or the stream ends.
//!
//! Video feeds (one per stream and picture format, rate and size) work the same way, with an
//! ffmpeg child as their decoder: see [`video`].

pub mod video;

pub use video::{Picture, VideoFormat, VideoInfo, KIND_VIDEO_I420, KIND_VIDEO_JPEG};

use crate::messages::{AddSubscriber, FindStream};
use crate::node::NodeContext;
use crate::registry::StreamRegistry;
use actix::Addr;
use bytes::{BufMut, Bytes, BytesMut};
use estuary_protocols::media::{Codec, MediaFrame, Timebase, TrackKind};
use estuary_storage::StreamKey;
use estuary_transcode::pcm::{AudioCodec, PcmConverter, PcmDecoder};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Chunks a feed keeps for clients that are behind (about 2.5 s of AAC frames): a client
/// further behind than this loses the oldest.
pub const FEED_CHUNKS: usize = 128;

/// Byte 0 of a binary tap message: 16-bit little-endian PCM.
pub const KIND_AUDIO_S16LE: u8 = 1;

/// Length of a binary tap message's header (see [`encode_chunk`]).
pub const CHUNK_HEADER: usize = 20;

/// The audio a tap client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct AudioFormat {
    /// Sample rate, Hz (8,000 to 48,000).
    pub rate: u32,
    /// 1 (mono, the channels mixed) or 2.
    pub channels: u8,
}

impl AudioFormat {
    /// The format of a tap URL's query (`audio=s16le&rate=16000&channels=1`; those are also
    /// the defaults), or why it cannot be served.
    pub fn from_query(params: &[(String, String)]) -> Result<AudioFormat, String> {
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        match get("audio") {
            None | Some("s16le") => {}
            Some(other) => return Err(format!("audio={other} is not a tap format (s16le is)")),
        }
        let rate = match get("rate") {
            None => 16_000,
            Some(v) => v.parse::<u32>().ok().filter(|r| (8_000..=48_000).contains(r)).ok_or_else(|| format!("rate={v}: a sample rate from 8000 to 48000 Hz"))?,
        };
        let channels = match get("channels") {
            None => 1,
            Some(v) => v.parse::<u8>().ok().filter(|c| (1..=2).contains(c)).ok_or_else(|| format!("channels={v}: 1 or 2"))?,
        };
        Ok(AudioFormat { rate, channels })
    }
}

/// What a feed sends its clients.
#[derive(Debug, Clone)]
pub enum TapEvent {
    /// Decoded audio: the stream time of its first sample (µs) and when it was decoded (Unix
    /// µs), interleaved little-endian 16-bit samples.
    Audio { stream_us: i64, wall_us: i64, pcm: Bytes },
    /// The pictures that follow have this size (sent when it is first known or changes).
    VideoStart(VideoInfo),
    /// One decoded picture: its kind ([`KIND_VIDEO_JPEG`] or [`KIND_VIDEO_I420`]), its stream
    /// time (µs), when it was decoded (Unix µs), and its bytes.
    Video { kind: u8, stream_us: i64, wall_us: i64, data: Bytes },
    /// The feed ended (the stream ended, or its audio cannot be decoded): why.
    End(String),
}

/// A binary tap message: byte 0 the kind ([`KIND_AUDIO_S16LE`], [`KIND_VIDEO_JPEG`],
/// [`KIND_VIDEO_I420`]), bytes 1-3 zero, bytes 4-11 the stream time of the first sample (or
/// of the picture) in µs, bytes 12-19 the Unix time it was decoded in µs (both signed,
/// big-endian), then the samples or the picture.
pub fn encode_chunk(kind: u8, stream_us: i64, wall_us: i64, pcm: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(CHUNK_HEADER + pcm.len());
    out.put_u8(kind);
    out.put_slice(&[0, 0, 0]);
    out.put_i64(stream_us);
    out.put_i64(wall_us);
    out.put_slice(pcm);
    out.freeze()
}

/// What a feed makes: audio or pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum TapFormat {
    /// PCM audio.
    Audio(AudioFormat),
    /// Pictures.
    Video(VideoFormat),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FeedKey {
    stream: StreamKey,
    format: TapFormat,
}

/// One decoder and its clients.
#[derive(Debug)]
pub struct Feed {
    id: u64,
    stream: StreamKey,
    format: TapFormat,
    tx: broadcast::Sender<TapEvent>,
    clients: AtomicUsize,
    chunks: AtomicU64,
    lost: AtomicU64,
    codec: Mutex<Option<&'static str>>,
    errors: AtomicU64,
    started_ms: i64,
    /// A video feed's picture size, once known.
    video: Mutex<Option<VideoInfo>>,
}

impl Feed {
    fn new(id: u64, stream: StreamKey, format: TapFormat, capacity: usize) -> Arc<Feed> {
        let (tx, _) = broadcast::channel(capacity);
        let zero = || AtomicU64::new(0);
        Arc::new(Feed { id, stream, format, tx, clients: AtomicUsize::new(0), chunks: zero(), lost: zero(), codec: Mutex::new(None), errors: zero(), started_ms: crate::unix_ms(), video: Mutex::new(None) })
    }
}

/// A feed as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FeedInfo {
    /// The decoder's id.
    pub id: u64,
    /// The stream.
    pub stream: String,
    /// The format it makes (`rate` and `channels`, or `video`, `fps` and `width`).
    pub format: TapFormat,
    /// Its source codec, once known.
    pub codec: Option<&'static str>,
    /// Tap clients of this feed.
    pub clients: usize,
    /// Chunks decoded and sent.
    pub chunks: u64,
    /// Chunks its clients lost for not keeping up (summed over clients).
    pub lost: u64,
    /// Frames that did not decode (audio), or decoder restarts (video).
    pub decode_errors: u64,
    /// When it started (Unix ms).
    pub started_ms: i64,
}

/// Why a tap cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// No such live stream.
    #[error("stream {0} is not live")]
    NotFound(String),
}

/// The node's tap feeds.
#[derive(Debug, Default)]
pub struct Taps {
    feeds: Mutex<HashMap<FeedKey, Arc<Feed>>>,
    next_id: AtomicU64,
    /// Held while a feed starts, so that two first clients of one format make one feed.
    starting: tokio::sync::Mutex<()>,
}

impl Taps {
    /// The feeds running.
    pub fn list(&self) -> Vec<FeedInfo> {
        let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<FeedInfo> = feeds
            .values()
            .map(|f| FeedInfo {
                id: f.id,
                stream: f.stream.to_string(),
                format: f.format,
                codec: *f.codec.lock().unwrap_or_else(|e| e.into_inner()),
                clients: f.clients.load(Ordering::Relaxed),
                chunks: f.chunks.load(Ordering::Relaxed),
                lost: f.lost.load(Ordering::Relaxed),
                decode_errors: f.errors.load(Ordering::Relaxed),
                started_ms: f.started_ms,
            })
            .collect();
        list.sort_by_key(|f| f.id);
        list
    }

    fn find(&self, key: &FeedKey) -> Option<TapClient> {
        let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        let feed = feeds.get(key)?;
        Some(TapClient::of(feed))
    }

    /// Removes `feed` when it has no client, in one step with the check.
    fn remove_if_idle(&self, feed: &Arc<Feed>) -> bool {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if feed.clients.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let key = FeedKey { stream: feed.stream.clone(), format: feed.format };
        if feeds.get(&key).is_some_and(|f| Arc::ptr_eq(f, feed)) {
            feeds.remove(&key);
        }
        true
    }

    fn remove(&self, feed: &Arc<Feed>) {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        let key = FeedKey { stream: feed.stream.clone(), format: feed.format };
        if feeds.get(&key).is_some_and(|f| Arc::ptr_eq(f, feed)) {
            feeds.remove(&key);
        }
    }
}

/// One tap client's place in a feed.
#[derive(Debug)]
pub struct TapClient {
    feed: Arc<Feed>,
    rx: broadcast::Receiver<TapEvent>,
    /// Chunks this client lost.
    pub lost: u64,
}

impl TapClient {
    fn of(feed: &Arc<Feed>) -> TapClient {
        feed.clients.fetch_add(1, Ordering::Relaxed);
        TapClient { feed: feed.clone(), rx: feed.tx.subscribe(), lost: 0 }
    }

    /// The feed's decoder id.
    pub fn feed_id(&self) -> u64 {
        self.feed.id
    }

    /// A video feed's picture size, when it is known already (a client joining a running
    /// feed is told it at once; later changes come as [`TapEvent::VideoStart`]).
    pub fn video_info(&self) -> Option<VideoInfo> {
        *self.feed.video.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next event. `Ok(n)` of lost chunks when the client fell behind (the next call
    /// goes on with the oldest chunk kept); `None` when the feed is gone.
    pub async fn next(&mut self) -> Option<Result<TapEvent, u64>> {
        match self.rx.recv().await {
            Ok(event) => Some(Ok(event)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.lost += n;
                self.feed.lost.fetch_add(n, Ordering::Relaxed);
                Some(Err(n))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for TapClient {
    fn drop(&mut self) {
        self.feed.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Joins the feed of `key` in `format`, starting it (one subscription and decoder) when it is
/// the first client.
pub async fn join(node: &NodeContext, registry: &Addr<StreamRegistry>, key: &StreamKey, format: TapFormat) -> Result<TapClient, TapError> {
    let feed_key = FeedKey { stream: key.clone(), format };
    if let Some(client) = node.taps.find(&feed_key) {
        return Ok(client);
    }
    let _starting = node.taps.starting.lock().await;
    if let Some(client) = node.taps.find(&feed_key) {
        return Ok(client);
    }
    let not_found = || TapError::NotFound(key.to_string());
    let stream = registry.send(FindStream { key: key.clone(), create: false }).await.map_err(|_| not_found())?.ok_or_else(not_found)?;
    let subscription = stream.send(AddSubscriber { client: node.clients.allocate_id(), require_live: true, shared: false }).await.map_err(|_| not_found())?.map_err(|_| not_found())?;
    let capacity = match format {
        TapFormat::Audio(_) => FEED_CHUNKS,
        TapFormat::Video(_) => video::FEED_PICTURES,
    };
    let feed = Feed::new(node.taps.next_id.fetch_add(1, Ordering::Relaxed) + 1, key.clone(), format, capacity);
    let client = TapClient::of(&feed);
    node.taps.feeds.lock().unwrap_or_else(|e| e.into_inner()).insert(feed_key, feed.clone());
    tracing::info!(stream = %key, feed = feed.id, ?format, "tap feed started");
    let node = node.clone();
    let counted = node.census.enter("tap_feed");
    node.topology.workers.next().spawn(async move {
        let _counted = counted;
        let why = match format {
            TapFormat::Audio(_) => run(&node, &feed, subscription.rx).await,
            TapFormat::Video(video) => video::run(&node, &feed, video, subscription.rx).await,
        };
        tracing::info!(stream = %feed.stream, feed = feed.id, chunks = feed.chunks.load(Ordering::Relaxed), lost = feed.lost.load(Ordering::Relaxed), why, "tap feed ended");
        node.taps.remove(&feed);
        let _ = feed.tx.send(TapEvent::End(why));
    });
    Ok(client)
}

/// How often a feed checks whether it still has clients.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a feed waits for the stream's first audio frame before saying it has none (a
/// stream's announced tracks are not enough: FLV's G.711 has no header to announce it).
pub const AUDIO_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a video feed waits for the stream's video parameters before saying it has none.
pub const VIDEO_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Decodes the stream's audio into the feed until the stream ends, the audio cannot be
/// decoded, or nobody listens; returns why it stopped.
async fn run(node: &NodeContext, feed: &Arc<Feed>, mut rx: tokio::sync::mpsc::Receiver<Arc<MediaFrame>>) -> String {
    let taps = &node.taps;
    let mut decoder: Option<(Codec, PcmDecoder)> = None;
    let mut aac_config: Option<Bytes> = None;
    let TapFormat::Audio(format) = feed.format else { return "not an audio feed".into() };
    let mut converter = PcmConverter::new(format.rate, format.channels as usize);
    let mut idle = tokio::time::interval(IDLE_CHECK);
    let started = tokio::time::Instant::now();
    let mut heard = false;
    loop {
        let frame = tokio::select! {
            frame = rx.recv() => match frame {
                Some(frame) => frame,
                None => return "the stream ended".into(),
            },
            _ = idle.tick() => {
                // Removed under the feeds' lock, which a joining client also takes: no client
                // joins a feed that is about to stop.
                if taps.remove_if_idle(feed) {
                    return "no tap client left".into();
                }
                if !heard && started.elapsed() >= AUDIO_WAIT {
                    return format!("stream {} has no audio (none in {} s)", feed.stream, AUDIO_WAIT.as_secs());
                }
                continue;
            }
        };
        if frame.track != TrackKind::Audio {
            continue;
        }
        heard = true;
        if frame.config {
            if frame.codec == Codec::Aac {
                aac_config = Some(frame.payload.clone());
                decoder = None;
            }
            continue;
        }
        let codec = match frame.codec {
            Codec::Aac => AudioCodec::Aac,
            Codec::Opus => AudioCodec::Opus,
            Codec::G711A => AudioCodec::G711A,
            Codec::G711U => AudioCodec::G711U,
            other => return format!("its audio ({}) cannot be decoded for a tap", other.name()),
        };
        if decoder.as_ref().is_none_or(|(c, _)| *c != frame.codec) {
            match PcmDecoder::new(codec, aac_config.as_deref()) {
                Ok(new) => {
                    *feed.codec.lock().unwrap_or_else(|e| e.into_inner()) = Some(frame.codec.name());
                    decoder = Some((frame.codec, new));
                }
                Err(e) => {
                    // AAC before its configuration: wait for it.
                    tracing::debug!(stream = %feed.stream, error = %e, "tap decoder not ready");
                    continue;
                }
            }
        }
        let Some((_, pcm_decoder)) = decoder.as_mut() else { continue };
        // A decoder that panics on a publisher's bad packet ends this feed alone; its clients
        // are told, and the next client starts a fresh one.
        let decoded = crate::node::supervision::catch(|| {
            let errors_before = pcm_decoder.errors;
            let decoded = pcm_decoder.decode(&frame.payload).map(|(rate, channels, samples)| converter.convert(rate, channels, samples));
            (decoded, pcm_decoder.errors - errors_before)
        });
        let converted = match decoded {
            Ok((Some(converted), _)) => converted,
            Ok((None, errors)) => {
                feed.errors.fetch_add(errors, Ordering::Relaxed);
                continue;
            }
            Err(panic) => {
                node.restarts.panicked("tap", &format_args!("tap feed of {}", feed.stream), &panic);
                return "internal error in the tap decoder".into();
            }
        };
        if converted.is_empty() {
            continue;
        }
        let mut pcm = BytesMut::with_capacity(converted.len() * 2);
        for sample in converted {
            pcm.put_i16_le(sample);
        }
        let stream_us = frame.timebase.rescale(frame.pts, Timebase { num: 1, den: 1_000_000 });
        let wall_us = crate::unix_ms() * 1000;
        feed.chunks.fetch_add(1, Ordering::Relaxed);
        // No receiver (the last client just left) is not an error: the idle check ends it.
        let _ = feed.tx.send(TapEvent::Audio { stream_us, wall_us, pcm: pcm.freeze() });
    }
}

/// Events a stream's web pages follow (`GET /events/<app>/<stream>`, server-sent events):
/// captions and timed metadata as they go out.
#[derive(Debug, Clone, Serialize)]
pub struct StreamEvent {
    /// `caption` or `metadata`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The stream.
    pub stream: String,
    /// The stream time (ms) it went out at.
    pub at_ms: i64,
    /// When, Unix ms.
    pub unix_ms: i64,
    /// The caption (`text`, `language`) or the metadata object.
    pub data: serde_json::Value,
}

/// Events a listener may be behind before it loses the oldest.
const EVENTS_KEPT: usize = 64;

/// The event channels of streams that have listeners.
#[derive(Debug, Default)]
pub struct Events {
    channels: Mutex<HashMap<StreamKey, broadcast::Sender<Arc<StreamEvent>>>>,
}

impl Events {
    /// Sends `event` to the listeners of `key` (none: nothing is kept).
    pub fn publish(&self, key: &StreamKey, event: StreamEvent) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = channels.get(key) {
            if tx.send(Arc::new(event)).is_err() {
                // Every listener has gone.
                channels.remove(key);
            }
        }
    }

    /// Listens to `key`'s events from now on.
    pub fn subscribe(&self, key: &StreamKey) -> broadcast::Receiver<Arc<StreamEvent>> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        // Channels whose listeners all left go when the next listener comes.
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels.entry(key.clone()).or_insert_with(|| broadcast::channel(EVENTS_KEPT).0).subscribe()
    }

    /// Streams with listeners.
    pub fn streams(&self) -> usize {
        self.channels.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|tx| tx.receiver_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn events_reach_the_listeners_of_their_stream_only() {
        let events = Events::default();
        let (a, b) = (StreamKey::new("live", "a"), StreamKey::new("live", "b"));
        let event = |text: &str| StreamEvent { kind: "caption", stream: "live/a".into(), at_ms: 1, unix_ms: 2, data: serde_json::json!({ "text": text }) };
        events.publish(&a, event("before anyone listens"));
        let mut rx = events.subscribe(&a);
        let mut other = events.subscribe(&b);
        events.publish(&a, event("hello"));
        assert_eq!(rx.try_recv().unwrap().data["text"], "hello");
        assert!(rx.try_recv().is_err() && other.try_recv().is_err());
        assert_eq!(events.streams(), 2);
        drop(rx);
        events.publish(&a, event("nobody"));
        assert_eq!(events.streams(), 1);
    }

    #[test]
    fn formats_from_the_query() {
        assert_eq!(AudioFormat::from_query(&[]).unwrap(), AudioFormat { rate: 16_000, channels: 1 });
        assert_eq!(AudioFormat::from_query(&query(&[("audio", "s16le"), ("rate", "48000"), ("channels", "2")])).unwrap(), AudioFormat { rate: 48_000, channels: 2 });
        assert!(AudioFormat::from_query(&query(&[("audio", "f32le")])).unwrap_err().contains("f32le"));
        assert!(AudioFormat::from_query(&query(&[("rate", "96000")])).unwrap_err().contains("8000 to 48000"));
        assert!(AudioFormat::from_query(&query(&[("channels", "6")])).unwrap_err().contains("1 or 2"));
    }

    #[test]
    fn a_chunk_has_its_header_then_the_samples() {
        let chunk = encode_chunk(KIND_AUDIO_S16LE, -5, 1_700_000_000_000_000, &[1, 2, 3, 4]);
        assert_eq!(chunk.len(), CHUNK_HEADER + 4);
        assert_eq!(&chunk[..4], &[KIND_AUDIO_S16LE, 0, 0, 0]);
        assert_eq!(i64::from_be_bytes(chunk[4..12].try_into().unwrap()), -5);
        assert_eq!(i64::from_be_bytes(chunk[12..20].try_into().unwrap()), 1_700_000_000_000_000);
        assert_eq!(&chunk[20..], &[1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_loses_the_oldest_chunks_and_is_told_how_many() {
        let feed = Feed::new(1, StreamKey::new("live", "a"), TapFormat::Audio(AudioFormat { rate: 16_000, channels: 1 }), 4);
        let mut slow = TapClient::of(&feed);
        let mut fast = TapClient::of(&feed);
        assert_eq!(feed.clients.load(Ordering::Relaxed), 2);
        for i in 0..10 {
            feed.tx.send(TapEvent::Audio { stream_us: i, wall_us: 0, pcm: Bytes::new() }).unwrap();
            // The fast client takes each chunk as it comes.
            match fast.next().await {
                Some(Ok(TapEvent::Audio { stream_us, .. })) => assert_eq!(stream_us, i),
                other => panic!("fast client got {other:?}"),
            }
        }
        assert!(matches!(slow.next().await, Some(Err(6))));
        match slow.next().await {
            Some(Ok(TapEvent::Audio { stream_us, .. })) => assert_eq!(stream_us, 6),
            other => panic!("slow client got {other:?}"),
        }
        assert_eq!((slow.lost, fast.lost, feed.lost.load(Ordering::Relaxed)), (6, 0, 6));
        drop(slow);
        assert_eq!(feed.clients.load(Ordering::Relaxed), 1);
    }
}
