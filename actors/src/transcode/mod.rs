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
        let counted = node.census.enter("transcode");
        node.topology.workers.next().spawn(async move {
            let _counted = counted;
            let mut rx = subscription.rx;
            let mut rendition = rendition;
            if rendition.video_codec == VideoCodec::Source {
                let codec = source_codec(&mut rx).await;
                rendition.video_codec = codec;
                entry.update(|s| s.codec = format!("source ({})", codec.name()));
                tracing::info!(source = %source, output = %output, codec = codec.name(), "transcoder keeps the source's video codec");
            }
            let ended = async move { while rx.recv().await.is_some() {} };
            supervise(entry, settings, source, output, rendition, ended).await;
        });
    }
    Ok(started)
}

/// The codec a `source` rendition encodes to: the stream's video codec, read from its first
/// video frame (up to 10 s); H.264 when it has none by then or is of another codec.
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

async fn supervise(entry: Arc<TranscodeEntry>, settings: Arc<TranscodeSettings>, source: StreamKey, output: StreamKey, rendition: Rendition, ended: impl std::future::Future<Output = ()>) {
    let input = format!("rtmp://127.0.0.1:{}/{}/{}", settings.rtmp_port, source.app, source.stream);
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
        tokio::select! {
            _ = ended => "the source stream ended",
            _ = stop_entry.stop_requested() => "removed",
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
