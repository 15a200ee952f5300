//! Transcoding ladders: one supervised ffmpeg child per rendition, reading the source stream
//! from this node over RTMP and publishing the rendition back as `<stream><suffix>` (RTMP for
//! H.264, SRT/MPEG-TS for H.265, which ffmpeg 5 cannot put in FLV).
//!
//! A transcoder holds a subscription to its source stream (draining it), so it learns at once
//! when the stream ends and then kills its child. While the source lives, a child that exits
//! is started again (see [`crate::transcode::child`] for the backoff, progress and error capture), and
//! every restart is counted. A missing ffmpeg binary is an error in the status and the log,
//! retried at the slowest pace, not a crash loop.
//!
//! Ladders come from `[transcode]` per app (started when a stream of the app is published;
//! streams whose name ends with a rendition suffix are not transcoded again) and from
//! `POST /api/v1/transcodes` per stream.


pub mod child;

use crate::messages::{AddSubscriber, FindStream};
use crate::registry::StreamRegistry;
use crate::node::worker_table::{WorkerEntry, WorkerTable};
use actix::prelude::*;
use estuary_storage::StreamKey;
use crate::transcode::child::ChildEvent;
use estuary_transcode::ffmpeg::{rendition_args_as, Rendition, VideoCodec};
use serde::Serialize;
use std::collections::BTreeMap;
use crate::node::{Node, NodeContext};
use std::sync::Arc;

/// A node's transcoders.
pub type Transcoders = WorkerTable<TranscodeStatus, (StreamKey, String)>;

/// Where the node listens, for the children's URLs.
#[derive(Debug, Clone)]
pub struct TranscodeSettings {
    /// ffmpeg binary.
    pub ffmpeg: String,
    /// Node RTMP port (loopback).
    pub rtmp_port: u16,
    /// Node SRT port (loopback), when SRT is on.
    pub srt_port: Option<u16>,
    /// Ladders per app.
    pub ladders: BTreeMap<String, Vec<Rendition>>,
    /// Whether players may start H.264 fallback renditions.
    pub fallback: bool,
    /// Most fallback renditions running at once.
    pub fallback_max: usize,
    /// Video bitrate of H.264 fallback renditions, kbit/s.
    pub fallback_kbps: u32,
    /// A fallback rendition nobody plays for this long is stopped.
    pub fallback_idle: std::time::Duration,
}

/// What the API shows of one rendition's transcoder.
#[derive(Debug, Clone, Serialize)]
pub struct TranscodeStatus {
    /// Id.
    pub id: String,
    /// Source `app/stream`.
    pub source: String,
    /// Output `app/stream`.
    pub output: String,
    /// `config` or `api`.
    pub origin: &'static str,
    /// `starting`, `running`, `restarting`, `failed`, `stopped`.
    pub state: &'static str,
    /// The running child's pid.
    pub pid: Option<u32>,
    /// Children started after the first.
    pub restarts: u64,
    /// Why the last child ended.
    pub last_error: Option<String>,
    /// Frames encoded by the current child.
    pub frame: u64,
    /// Its fps.
    pub fps: f64,
    /// Its speed relative to real time.
    pub speed: Option<f64>,
    /// Output height, when scaled.
    pub height: Option<u32>,
    /// Video bitrate, kbit/s.
    pub video_kbps: u32,
    /// Video codec: `h264`, `h265`, `av1`, `copy`, or `source` with the codec it resolved to
    /// (`source (h265)`).
    pub codec: String,
    /// Whether a picture is drawn over the video.
    pub overlay: bool,
    /// Whether a line of text is drawn over the video.
    pub text: bool,
}

type TranscodeEntry = WorkerEntry<TranscodeStatus, (StreamKey, String)>;

/// Every transcoder.
pub fn list(node: &Node) -> Vec<TranscodeStatus> {
    node.transcoders.list()
}

/// Renditions configured for `source`'s app that `source` is not itself one of.
pub fn ladder_for<'a>(settings: &'a TranscodeSettings, source: &StreamKey) -> &'a [Rendition] {
    // The app's own ladder, or the ladder of every app ("*", SRS's `transcode` without an app).
    // Not fallback renditions either: they are made for players, and a ladder's subscription
    // would keep one running with nobody watching.
    if source.stream.ends_with(FALLBACK_SUFFIX) {
        return &[];
    }
    match settings.ladders.get(&source.app).or_else(|| settings.ladders.get("*")) {
        Some(ladder) if !ladder.iter().any(|r| source.stream.ends_with(&r.suffix)) => ladder,
        _ => &[],
    }
}

/// Stops transcoder `id`; false when unknown.
pub fn remove(node: &Node, id: u64) -> bool {
    node.transcoders.remove(id)
}

/// Whether `ffmpeg` can be run.
pub fn ffmpeg_available(ffmpeg: &str) -> Result<(), String> {
    match std::process::Command::new(ffmpeg).arg("-version").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{ffmpeg} -version failed ({status})")),
        Err(e) => Err(format!("cannot run {ffmpeg}: {e} (install ffmpeg, e.g. apt-get install ffmpeg, or set transcode.ffmpeg)")),
    }
}

/// Starts one transcoder per rendition of `ladder` for `source` (those already running for
/// the same source and suffix are kept).
pub async fn start(node: NodeContext, registry: Addr<StreamRegistry>, settings: Arc<TranscodeSettings>, source: StreamKey, ladder: Vec<Rendition>, origin: &'static str) -> Result<Vec<TranscodeStatus>, String> {
    for rendition in &ladder {
        rendition.validate().map_err(|e| e.to_string())?;
        if rendition.video_codec == VideoCodec::H265 && settings.srt_port.is_none() {
            return Err(format!("rendition {}: H.265 renditions are published over SRT, which is disabled", rendition.suffix));
        }
    }
    let mut started = Vec::new();
    for rendition in ladder {
        if let Some(existing) = node.transcoders.find_running(|(s, suffix)| *s == source && *suffix == rendition.suffix) {
            started.push(existing.status());
            continue;
        }
        let stream = registry.send(FindStream { key: source.clone(), create: false }).await.map_err(|_| "stream registry unavailable".to_string())?.ok_or_else(|| format!("stream {source} is not live"))?;
        let subscription = stream.send(AddSubscriber { client: node.clients.allocate_id(), require_live: true, shared: false }).await.map_err(|_| "stream is restarting".to_string())?.map_err(|e| e.to_string())?;
        let id = node.transcoders.next_id();
        let output = StreamKey::new(&source.app, &format!("{}{}", source.stream, rendition.suffix));
        let entry = TranscodeEntry::new(
            TranscodeStatus {
                id: id.to_string(),
                source: source.to_string(),
                output: output.to_string(),
                origin,
                state: "starting",
                pid: None,
                restarts: 0,
                last_error: None,
                frame: 0,
                fps: 0.0,
                speed: None,
                height: rendition.height,
                video_kbps: rendition.video_kbps,
                codec: rendition.video_codec.name().to_string(),
                overlay: rendition.overlay.is_some(),
                text: rendition.text.is_some(),
            },
            (source.clone(), rendition.suffix.clone()),
        );
        node.transcoders.insert(id, entry.clone());
        started.push(entry.status());
        tracing::info!(source = %source, output = %output, "transcoder started");
        let (settings, source) = (settings.clone(), source.clone());
        let (node_for_idle, registry_for_idle) = (node.clone(), registry.clone());
        let counted = node.census.enter("transcode");
        node.topology.workers.next().spawn(async move {
            let _counted = counted;
            let has_video = subscription.has_video;
            let mut rx = subscription.rx;
            let mut rendition = rendition;
            let source_video = if has_video { source_codec(&mut rx).await } else { VideoCodec::H264 };
            if rendition.video_codec == VideoCodec::Source {
                let codec = source_video;
                rendition.video_codec = codec;
                entry.update(|s| s.codec = format!("source ({})", codec.name()));
                tracing::info!(source = %source, output = %output, codec = codec.name(), "transcoder keeps the source's video codec");
            }
            let ended = async move { while rx.recv().await.is_some() {} };
            let idle = (origin == "fallback").then(|| unused(node_for_idle, registry_for_idle, output.clone(), settings.fallback_idle));
            supervise(entry, settings, source, source_video, output, rendition, ended, idle).await;
        });
    }
    Ok(started)
}

/// The source's video codec, read from its first video frame (up to 10 s): what a `source`
/// rendition encodes to, and how the child reads the stream. H.264 when it has no video by
/// then or is of another codec.
async fn source_codec(rx: &mut tokio::sync::mpsc::Receiver<Arc<estuary_protocols::media::MediaFrame>>) -> VideoCodec {
    use estuary_protocols::media::{Codec, TrackKind};
    let first_video = async {
        while let Some(frame) = rx.recv().await {
            if frame.track == TrackKind::Video {
                return Some(frame.codec);
            }
        }
        None
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), first_video).await {
        Ok(Some(Codec::H265)) => VideoCodec::H265,
        Ok(Some(Codec::Av1)) => VideoCodec::Av1,
        _ => VideoCodec::H264,
    }
}

#[allow(clippy::too_many_arguments)]
async fn supervise(entry: Arc<TranscodeEntry>, settings: Arc<TranscodeSettings>, source: StreamKey, source_video: VideoCodec, output: StreamKey, rendition: Rendition, ended: impl std::future::Future<Output = ()>, idle: Option<impl std::future::Future<Output = ()>>) {
    // H.264 is read over RTMP. H.265 over SRT (MPEG-TS) when SRT is on: ffmpeg before 6.1
    // cannot read H.265 in FLV. AV1 has no MPEG-TS mapping, so it is read over RTMP, which needs
    // an ffmpeg that reads enhanced RTMP.
    let input = match (source_video, settings.srt_port) {
        (VideoCodec::H265, Some(port)) => format!("srt://127.0.0.1:{port}?streamid=#!::r={}/{},m=request", source.app, source.stream),
        _ => format!("rtmp://127.0.0.1:{}/{}/{}", settings.rtmp_port, source.app, source.stream),
    };
    if rendition.video_codec == VideoCodec::H265 && settings.srt_port.is_none() {
        entry.update(|s| {
            s.state = "failed";
            s.last_error = Some(format!("rendition {}: H.265 renditions are published over SRT, which is disabled", rendition.suffix));
        });
        entry.mark_stopped();
        tracing::error!(source = %source, output = %output, "H.265 rendition needs SRT, which is disabled; transcoder not started");
        return;
    }
    let (destination, format) = match (rendition.video_codec, settings.srt_port) {
        (VideoCodec::H265, Some(port)) => (format!("srt://127.0.0.1:{port}?streamid=#!::r={}/{},m=publish", output.app, output.stream), "mpegts"),
        _ => (format!("rtmp://127.0.0.1:{}/{}/{}", settings.rtmp_port, output.app, output.stream), "flv"),
    };
    let args = match rendition_args_as(&input, &rendition, &destination, format) {
        Ok(args) => args,
        Err(e) => {
            entry.update(|s| {
                s.state = "failed";
                s.last_error = Some(e.to_string());
            });
            entry.mark_stopped();
            return;
        }
    };
    let events = entry.clone();
    let log_output = output.clone();
    let on_event = move |event: ChildEvent| match event {
        ChildEvent::Started { pid, restarts } => events.update(|s| {
            s.state = "running";
            s.pid = pid;
            s.restarts = restarts;
            s.frame = 0;
        }),
        ChildEvent::Progress(p) => events.update(|s| {
            s.frame = p.frame;
            s.fps = p.fps;
            s.speed = p.speed;
        }),
        ChildEvent::Ended { error, spawn_failed, retry_in } => {
            if spawn_failed {
                tracing::error!(output = %log_output, %error, retry_in_ms = retry_in.as_millis() as u64, "transcoder cannot start ffmpeg");
            } else {
                tracing::warn!(output = %log_output, %error, restart_in_ms = retry_in.as_millis() as u64, "transcoder child ended; restarting");
            }
            events.update(|s| {
                s.state = if spawn_failed { "failed" } else { "restarting" };
                s.pid = None;
                s.last_error = Some(error);
            });
        }
    };
    let stop_entry = entry.clone();
    let stop = async move {
        let unused = async move {
            match idle {
                Some(idle) => idle.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ended => "the source stream ended",
            _ = stop_entry.stop_requested() => "removed",
            _ = unused => "nobody plays the fallback rendition any more",
        }
    };
    let reason = crate::transcode::child::supervise(&settings.ffmpeg, &args, on_event, stop).await;
    entry.update(|s| {
        s.state = "stopped";
        s.pid = None;
    });
    entry.mark_stopped();
    tracing::info!(source = %source, output = %output, %reason, "transcoder stopped");
}

/// Suffix of a stream's H.264 fallback rendition (`live/cam` → `live/cam_h264`).
pub const FALLBACK_SUFFIX: &str = "_h264";

/// How long a player waits for a fallback rendition to go live.
pub const FALLBACK_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The video codec a live stream has now (`H264`, `H265`, `AV1`), if it is live with video.
pub async fn video_codec(registry: &Addr<StreamRegistry>, key: &StreamKey) -> Option<String> {
    video_info(registry, key).await.map(|v| v.codec)
}

/// The video track (codec, profile, level, size) of a live stream, if it is live with video.
pub async fn video_info(registry: &Addr<StreamRegistry>, key: &StreamKey) -> Option<estuary_storage::VideoInfo> {
    let stream = registry.send(FindStream { key: key.clone(), create: false }).await.ok().flatten()?;
    let info = stream.send(crate::messages::GetStreamInfo).await.ok()?;
    info.publisher.is_some().then_some(info.video).flatten()
}

/// For a player that cannot decode `source`'s video: its H.264 rendition `<stream>_h264`,
/// started once per stream (and shared by every player that needs it) and stopped
/// `fallback_idle` after its last player goes. Waits until the rendition is live with H.264
/// video (up to [`FALLBACK_WAIT`]) and returns its key. The caller has checked that the
/// player may play `source`.
pub async fn fallback(node: &NodeContext, registry: &Addr<StreamRegistry>, source: &StreamKey) -> Result<StreamKey, String> {
    let settings = node.transcode_settings.get().as_ref().clone().ok_or_else(|| "transcoding is not configured on this node".to_string())?;
    if !settings.fallback {
        return Err("H.264 fallback renditions are off (transcode.fallback)".into());
    }
    // The child's URLs name no vhost: it reads and publishes in the default one.
    if source.vhost != StreamKey::new("", "").vhost {
        return Err(format!("fallback renditions are made for streams of the default vhost only, not {}", source.vhost));
    }
    let output = StreamKey::new(&source.app, &format!("{}{FALLBACK_SUFFIX}", source.stream));
    if video_codec(registry, &output).await.as_deref() == Some("H264") {
        return Ok(output);
    }
    {
        // One start at a time: players arriving together find the first one's transcoder.
        let _one = node.fallback_starting.lock().await;
        let running = node.transcoders.find_running(|(s, suffix)| s == source && suffix == FALLBACK_SUFFIX).is_some();
        if !running {
            let count = node.transcoders.list().iter().filter(|t| t.origin == "fallback" && t.state != "stopped").count();
            if count >= settings.fallback_max {
                return Err(format!("{count} fallback renditions run already (transcode.fallback_max)"));
            }
            let ffmpeg = settings.ffmpeg.clone();
            tokio::task::spawn_blocking(move || ffmpeg_available(&ffmpeg)).await.map_err(|e| e.to_string())??;
            let rendition = Rendition { suffix: FALLBACK_SUFFIX.into(), height: None, video_kbps: settings.fallback_kbps, video_codec: VideoCodec::H264, audio_kbps: 128, overlay: None, text: None };
            let started = start(node.clone(), registry.clone(), settings, source.clone(), vec![rendition], "fallback").await?;
            if let Some(status) = started.first() {
                tracing::info!(source = %source, output = %output, transcoder = %status.id, "H.264 fallback rendition for a player that cannot decode the source");
            }
        }
    }
    let deadline = tokio::time::Instant::now() + FALLBACK_WAIT;
    loop {
        if video_codec(registry, &output).await.as_deref() == Some("H264") {
            return Ok(output);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("the H.264 fallback rendition of {source} did not start within {} s", FALLBACK_WAIT.as_secs()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Resolves once `output` has had no player (and no live HLS/DASH package) for `idle`,
/// counted from when it went live (or from [`FALLBACK_WAIT`], if it never does: the players
/// that asked for it have given up by then).
async fn unused(node: NodeContext, registry: Addr<StreamRegistry>, output: StreamKey, idle: std::time::Duration) {
    let started = tokio::time::Instant::now();
    let mut idle_since = started;
    let mut live = false;
    let name = output.to_string();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        // Players are clients playing it (RTMP, HTTP-FLV/TS, SRT, WHEP); a forward or a
        // transcoder of it is not.
        let players = node.clients.snapshot().iter().filter(|c| c.role().is_some_and(|(role, stream)| role == crate::node::clients::Role::Play && stream == name)).count();
        live = live || video_codec(&registry, &output).await.is_some();
        let starting = !live && started.elapsed() < FALLBACK_WAIT;
        let packaged = node.packages.get(&output).is_some_and(|p| !p.read(|p| p.ended));
        if players > 0 || packaged || starting {
            idle_since = tokio::time::Instant::now();
        } else if idle_since.elapsed() >= idle {
            return;
        }
    }
}
