//! Virtual live: media files published into a stream in real time, looped, with timestamps
//! that keep increasing across loops and file boundaries; or a URL relayed into a stream.
//!
//! Sources:
//! - a file: MP4 (progressive; read with `protocols::mp4::read_file`), FLV or MPEG-TS,
//!   demuxed in-process by the `protocols` code. Each file is read into memory when its turn
//!   comes (up to [`MAX_SOURCE_BYTES`]) and frames are slices of it;
//! - a directory (its media files in name order) or a playlist (`.m3u`, `.m3u8` or `.txt`
//!   listing paths, relative to the playlist), played one after the other;
//! - a URL (`rtmp://`, `srt://`, `http(s)://` incl. HLS): relayed by a supervised ffmpeg child
//!   (`-c copy`, see [`crate::transcode::child`]) publishing to this node over RTMP.
//!
//! A file ingest claims its stream like any publisher, paces frames by their decode times
//! against the clock, and shifts each file's timestamps so they continue where the previous
//! one ended, so players see one continuous stream.
//!
//! Ingests created through the API are saved in sled and started again when the node starts;
//! those in `[ingest]` come from the config. A source that is missing, not media, or whose
//! stream is already published is reported in the API (`failed` with the error) and retried
//! every 10 s; nothing else is affected.

use crate::registry::StreamRegistry;
use crate::stream::PublisherLink;
use crate::node::{Node, NodeContext};
use crate::node::worker_table::{WorkerEntry, WorkerTable};
use actix::prelude::*;
use bytes::Bytes;
use estuary_protocols::container::flv::{self, FlvDemuxer, TAG_AUDIO, TAG_VIDEO};
use estuary_protocols::media::{MediaFrame, Timebase, TrackKind};
use estuary_protocols::container::mp4::read_file;
use estuary_protocols::container::Sniffed;
use estuary_protocols::container::ts::{TsDemuxer, TsFrameReader};
use estuary_storage::{IngestSpec, StreamKey};
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Largest source file read.
pub const MAX_SOURCE_BYTES: u64 = 1 << 30;
const RETRY: Duration = Duration::from_secs(10);

/// A node's ingests, and what URL relays need: the ffmpeg binary and the node's RTMP port.
#[derive(Default)]
pub struct Ingests {
    table: WorkerTable<IngestStatus, u64>,
    relay: OnceLock<(String, u16)>,
    media_dir: OnceLock<std::path::PathBuf>,
}

impl Ingests {
    /// Sets the ffmpeg binary and the node's RTMP port, for URL relays, and the directory
    /// files of ingests added through the API must stay in (once, at boot).
    pub fn configure(&self, ffmpeg: String, rtmp_port: u16, media_dir: std::path::PathBuf) {
        let _ = self.relay.set((ffmpeg, rtmp_port));
        let _ = self.media_dir.set(media_dir);
    }
}

/// The files as they are once links are followed, when every one lies in `root`; else which
/// does not. Files of ingests added through the API are checked each time they are read (a
/// playlist edited, or a file replaced by a link pointing out, after the API took the ingest),
/// and the resolved paths are what is then read.
pub fn check_confined(root: &std::path::Path, files: &[std::path::PathBuf]) -> Result<Vec<std::path::PathBuf>, String> {
    let root = std::fs::canonicalize(root).map_err(|e| format!("ingest.media_dir {}: {e}", root.display()))?;
    files
        .iter()
        .map(|f| match std::fs::canonicalize(f) {
            Ok(real) if real.starts_with(&root) => Ok(real),
            _ => Err(format!("{} is not a file in ingest.media_dir", f.display())),
        })
        .collect()
}

/// What the API shows of an ingest.
#[derive(Debug, Clone, Serialize)]
pub struct IngestStatus {
    /// Id.
    pub id: String,
    /// `app/stream`.
    pub stream: String,
    /// Source file.
    pub source: String,
    /// `config` or `api`.
    pub origin: &'static str,
    /// `starting`, `live`, `failed`, `stopped`.
    pub state: &'static str,
    /// The last error.
    pub last_error: Option<String>,
    /// Completed passes through the file.
    pub loops: u64,
    /// Frames published.
    pub frames: u64,
    /// Clip length in ms (once read).
    pub clip_ms: Option<i64>,
}

type IngestEntry = WorkerEntry<IngestStatus, u64>;

/// Every ingest.
pub fn list(node: &Node) -> Vec<IngestStatus> {
    node.ingests.table.list()
}

/// Stops ingest `id`; false when unknown.
pub fn stop(node: &Node, id: u64) -> bool {
    node.ingests.table.remove(id)
}

/// Starts an ingest.
pub fn start(node: NodeContext, registry: Addr<StreamRegistry>, spec: IngestSpec, origin: &'static str) {
    let entry = IngestEntry::new(
        IngestStatus {
            id: spec.id.to_string(),
            stream: format!("{}/{}", spec.app, spec.stream),
            // URL sources may carry keys or passwords: listed masked, like forwards.
            source: if spec.source.contains("://") { crate::access::secrets::mask_url(&spec.source) } else { spec.source.clone() },
            origin,
            state: "starting",
            last_error: None,
            loops: 0,
            frames: 0,
            clip_ms: None,
        },
        spec.id,
    );
    node.ingests.table.insert(spec.id, entry.clone());
    tracing::info!(id = spec.id, stream = %format!("{}/{}", spec.app, spec.stream), source = %crate::access::secrets::mask_url(&spec.source), %origin, "ingest started");
    // Without a media directory known (a node built without `configure`), nothing is allowed.
    let confine = if origin == "api" && !spec.source.contains("://") { Some(node.ingests.media_dir.get().cloned().unwrap_or_default()) } else { None };
    node.topology.workers.next().spawn(node.census.track("ingest", run(node.clone(), registry, spec, entry, confine)));
}

/// A clip: configuration frames, media frames in decode order, and its length.
pub struct Clip {
    /// Codec headers.
    pub configs: Vec<MediaFrame>,
    /// Media frames, ordered by decode time.
    pub frames: Vec<MediaFrame>,
    /// Length in ms (last frame's end minus the first frame's start).
    pub duration_ms: i64,
}

impl Clip {
    /// The clip's video and audio as the API describes a stream's tracks, and its length in ms.
    pub fn describe(&self) -> (Option<estuary_storage::VideoInfo>, Option<estuary_storage::AudioInfo>, u64) {
        use estuary_protocols::media::TrackKind;
        let video = self.configs.iter().find(|f| f.track == TrackKind::Video).map(crate::stream::stats::describe_video);
        let audio = self.configs.iter().find(|f| f.track == TrackKind::Audio).map(crate::stream::stats::describe_audio);
        (video, audio, self.duration_ms.max(0) as u64)
    }
}

/// Why a file cannot be played as a clip.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// Neither MP4, FLV nor MPEG-TS.
    #[error("not a media file Estuary reads (MP4, FLV or MPEG-TS)")]
    NotMedia,
    /// The MP4 reader refused it (names the box and offset).
    #[error(transparent)]
    Mp4(#[from] estuary_protocols::container::mp4::Mp4Error),
    /// The FLV demuxer refused it.
    #[error(transparent)]
    Flv(#[from] estuary_protocols::container::flv::FlvError),
    /// The MPEG-TS demuxer refused it.
    #[error(transparent)]
    Ts(#[from] estuary_protocols::container::ts::TsError),
    /// An MP4 sample table points past the end of the file.
    #[error("a sample lies outside the file")]
    SampleOutside,
    /// Nothing to start playing from.
    #[error("no playable frames (no keyframe or audio)")]
    NoFrames,
}

/// Reads a clip from file bytes, by content (MP4 `ftyp`/`moov`, `FLV`, TS sync bytes).
pub fn read_clip(data: Bytes) -> Result<Clip, ClipError> {
    let (configs, mut frames) = match estuary_protocols::container::sniff(&data) {
        Some(Sniffed::Flv) => read_flv(&data)?,
        Some(Sniffed::Ts) => read_ts(&data)?,
        Some(Sniffed::Mp4) => read_mp4(&data)?,
        None => return Err(ClipError::NotMedia),
    };
    if !frames.iter().any(|f| f.is_video_keyframe() || f.track == TrackKind::Audio) {
        return Err(ClipError::NoFrames);
    }
    frames.sort_by(|a, b| a.dts_ms().cmp(&b.dts_ms()).then((a.track as u8).cmp(&(b.track as u8))));
    let first = frames.first().map(|f| f.dts_ms()).unwrap_or(0);
    let step = |kind: TrackKind| {
        let mut it = frames.iter().filter(|f| f.track == kind).rev();
        match (it.next(), it.next()) {
            (Some(a), Some(b)) => (a.dts_ms() - b.dts_ms()).max(1),
            _ => 40,
        }
    };
    let end = frames.iter().map(|f| f.dts_ms() + step(f.track)).max().unwrap_or(first);
    Ok(Clip { configs, duration_ms: (end - first).max(1), frames })
}

fn read_mp4(data: &Bytes) -> Result<(Vec<MediaFrame>, Vec<MediaFrame>), ClipError> {
    // Checks the tables against the file: a crafted file is refused within the reader's budget.
    let tracks = read_file(data)?;
    let mut configs = Vec::new();
    let mut frames = Vec::new();
    for track in tracks {
        let kind = track.track.kind();
        let timebase = Timebase { num: 1, den: track.track.timescale.max(1) };
        configs.push(MediaFrame { track: kind, codec: track.track.codec, dts: 0, pts: 0, timebase, keyframe: true, config: true, payload: track.track.config.clone() });
        for s in track.samples {
            let end = s.offset.checked_add(s.size as u64).filter(|&e| e <= data.len() as u64).ok_or(ClipError::SampleOutside)?;
            frames.push(MediaFrame {
                track: kind,
                codec: track.track.codec,
                dts: s.dts,
                pts: s.dts + s.cts as i64,
                timebase,
                keyframe: s.key,
                config: false,
                payload: data.slice(s.offset as usize..end as usize),
            });
        }
    }
    Ok((configs, frames))
}

fn read_flv(data: &Bytes) -> Result<(Vec<MediaFrame>, Vec<MediaFrame>), ClipError> {
    let mut demuxer = FlvDemuxer::new(16 << 20);
    demuxer.push(data);
    let (mut configs, mut frames) = (Vec::new(), Vec::new());
    while let Some(tag) = demuxer.next_tag()? {
        let frame = match tag.tag_type {
            TAG_VIDEO => flv::video_body_to_frame(tag.timestamp as i64, &tag.body).ok().flatten(),
            TAG_AUDIO => flv::audio_body_to_frame(tag.timestamp as i64, &tag.body).ok().flatten(),
            _ => None,
        };
        match frame {
            Some(f) if f.config => configs.push(f),
            Some(f) => frames.push(f),
            None => {}
        }
    }
    Ok((configs, frames))
}

fn read_ts(data: &Bytes) -> Result<(Vec<MediaFrame>, Vec<MediaFrame>), ClipError> {
    let mut demuxer = TsDemuxer::default();
    let mut reader = TsFrameReader::default();
    demuxer.push(data)?;
    demuxer.flush();
    let (mut configs, mut frames) = (Vec::new(), Vec::new());
    while let Some(pes) = demuxer.next_pes() {
        for f in reader.frames(&pes) {
            if f.config {
                configs.push(f);
            } else {
                frames.push(f);
            }
        }
    }
    Ok((configs, frames))
}

async fn load(path: &str) -> Result<Clip, String> {
    let meta = tokio::fs::metadata(path).await.map_err(|e| format!("cannot open {path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path} is not a file"));
    }
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(format!("{path} is larger than {MAX_SOURCE_BYTES} bytes"));
    }
    let data = tokio::fs::read(path).await.map_err(|e| format!("cannot read {path}: {e}"))?;
    // Demuxing a file of up to a gigabyte is work for a blocking thread, not for the worker
    // that serves streams and sessions.
    let clip = tokio::task::spawn_blocking(move || read_clip(Bytes::from(data))).await.map_err(|e| format!("{path}: the reader failed: {e}"))?;
    clip.map_err(|e| format!("{path}: {e}"))
}

async fn run(node: NodeContext, registry: Addr<StreamRegistry>, spec: IngestSpec, entry: Arc<IngestEntry>, confine: Option<std::path::PathBuf>) {
    let key = StreamKey::new(&spec.app, &spec.stream);
    if spec.source.contains("://") {
        let relay_with = node.ingests.relay.get().cloned();
        return relay(relay_with, spec, key, entry).await;
    }
    while !entry.is_stopped() {
        let result = publish(&node, &registry, &spec, &key, &entry, confine.as_deref()).await;
        if entry.is_stopped() {
            break;
        }
        match result {
            Ok(()) => {
                entry.update(|s| s.state = "stopped");
                tracing::info!(id = spec.id, stream = %key, "ingest finished (not looped)");
                return;
            }
            Err(error) => {
                tracing::warn!(id = spec.id, stream = %key, source = %crate::access::secrets::mask_url(&spec.source), %error, retry_in_s = RETRY.as_secs(), "ingest failed; will retry");
                entry.update(|s| {
                    s.state = "failed";
                    s.last_error = Some(error);
                });
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = entry.stop_requested() => break,
                }
            }
        }
    }
    entry.update(|s| s.state = "stopped");
    tracing::info!(id = spec.id, stream = %key, "ingest stopped");
}

/// The files an ingest plays, in order.
pub fn source_files(source: &str) -> Result<Vec<std::path::PathBuf>, String> {
    let path = std::path::Path::new(source);
    let media = |p: &std::path::Path| p.extension().and_then(|e| e.to_str()).is_some_and(|e| ["mp4", "m4v", "mov", "flv", "ts"].contains(&e.to_ascii_lowercase().as_str()));
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path).map_err(|e| format!("cannot list {source}: {e}"))?.flatten().map(|e| e.path()).filter(|p| p.is_file() && media(p)).collect();
        files.sort();
        if files.is_empty() {
            return Err(format!("{source} has no .mp4, .flv or .ts files"));
        }
        return Ok(files);
    }
    let playlist = path.extension().and_then(|e| e.to_str()).is_some_and(|e| ["m3u", "m3u8", "txt"].contains(&e));
    if playlist && path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {source}: {e}"))?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        let mut files = Vec::new();
        for (number, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#')) {
            // The line itself is never echoed: a playlist path pointed at some other text
            // file must not read it out through the error message.
            if !media(std::path::Path::new(line)) {
                return Err(format!("playlist {source} line {number} does not name a .mp4, .m4v, .mov, .flv or .ts file"));
            }
            files.push(base.join(line));
        }
        if files.is_empty() {
            return Err(format!("playlist {source} lists no files"));
        }
        return Ok(files);
    }
    Ok(vec![path.to_path_buf()])
}

async fn publish(node: &Node, registry: &Addr<StreamRegistry>, spec: &IngestSpec, key: &StreamKey, entry: &IngestEntry, confine: Option<&std::path::Path>) -> Result<(), String> {
    let source = spec.source.clone();
    let root = confine.map(std::path::Path::to_path_buf);
    let files = tokio::task::spawn_blocking(move || {
        let Some(root) = &root else { return source_files(&source) };
        // The source itself (a file, a playlist or a directory) first, then what it lists.
        let source = check_confined(root, &[std::path::PathBuf::from(&source)])?.remove(0);
        check_confined(root, &source_files(&source.to_string_lossy())?)
    })
    .await
    .map_err(|e| e.to_string())??;
    // The first file is read before the stream is claimed: a bad source never takes a name.
    let mut clip = load(&files[0].display().to_string()).await?;
    // The client list is readable without credentials: it names the file, not where on
    // this machine it lives (the ingest list, for operators, has the full source).
    let file_name = std::path::Path::new(&spec.source).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let guard = node.clients.register("ingest", format!("file:{file_name}"));
    let client = guard.id();
    // Configured or added with the API's rights: no token, but on_publish has its say.
    let check = crate::access::Request { action: crate::access::auth::Action::Publish, client, ip: None, vhost: &key.vhost, app: &key.app, stream: &key.stream, params: &[] };
    node.access.check_without_token(&check).await.map_err(|refused| refused.to_string())?;
    let stream = crate::attach::claim_publish(registry.clone(), key.clone(), client, "ingest").await.map_err(|e| e.to_string())?;
    guard.record().set_role(crate::node::clients::Role::Publish, key.to_string());
    entry.update(|s| {
        s.state = "live";
        s.last_error = None;
    });
    let start = tokio::time::Instant::now();
    let mut elapsed_ms = 0i64;
    let mut index = 0usize;
    let result = loop {
        entry.update(|s| s.clip_ms = Some(clip.duration_ms));
        match pace(&stream, &clip, start, elapsed_ms, entry).await {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
        elapsed_ms += clip.duration_ms;
        index += 1;
        if index == files.len() {
            entry.update(|s| s.loops += 1);
            if !spec.looped {
                break Ok(());
            }
            index = 0;
        }
        if files.len() > 1 {
            let file = match confine {
                Some(root) => match check_confined(root, std::slice::from_ref(&files[index])) {
                    Ok(mut real) => real.remove(0),
                    Err(e) => break Err(format!("{e} any more; not played")),
                },
                None => files[index].clone(),
            };
            clip = match load(&file.display().to_string()).await {
                Ok(clip) => clip,
                Err(e) => break Err(e),
            };
        }
    };
    drop(stream);
    result
}

/// Sends one pass of `clip`, its timestamps moved to start `offset_ms` after the ingest's
/// start. Returns false when stopped.
async fn pace(stream: &PublisherLink, clip: &Clip, start: tokio::time::Instant, offset_ms: i64, entry: &IngestEntry) -> Result<bool, String> {
    let send = |frame: MediaFrame| async move { stream.push(Arc::new(frame)).await.map_err(|gone| gone.to_string()) };
    let first_ms = clip.frames.first().map(|f| f.dts_ms()).unwrap_or(0);
    let shift_ms = offset_ms - first_ms;
    // Headers at every file start: the stream actor only passes on the ones that changed.
    for config in &clip.configs {
        let mut config = config.clone();
        config.dts = Timebase::MILLIS.rescale(offset_ms, config.timebase);
        config.pts = config.dts;
        send(config).await?;
    }
    for frame in &clip.frames {
        let due = start + Duration::from_millis((frame.dts_ms() + shift_ms).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = entry.stop_requested() => return Ok(false),
        }
        send(frame.shifted(Timebase::MILLIS.rescale(shift_ms, frame.timebase))).await?;
        entry.update(|s| s.frames += 1);
    }
    Ok(true)
}

/// A URL relayed by a supervised ffmpeg child into the stream.
async fn relay(relay_with: Option<(String, u16)>, spec: IngestSpec, key: StreamKey, entry: Arc<IngestEntry>) {
    let Some((ffmpeg, port)) = relay_with else {
        entry.update(|s| {
            s.state = "failed";
            s.last_error = Some("URL ingests are not configured on this node".into());
        });
        return;
    };
    let destination = format!("rtmp://127.0.0.1:{port}/{}/{}", key.app, key.stream);
    let args: Vec<String> = ["-hide_banner", "-nostats", "-loglevel", "warning", "-progress", "pipe:1", "-i", &spec.source, "-c", "copy", "-f", "flv", &destination].iter().map(|s| s.to_string()).collect();
    let events = entry.clone();
    let log_key = key.clone();
    let on_event = move |event: crate::transcode::child::ChildEvent| match event {
        crate::transcode::child::ChildEvent::Started { .. } => events.update(|s| {
            s.state = "live";
            s.last_error = None;
        }),
        crate::transcode::child::ChildEvent::Progress(p) => events.update(|s| s.frames = p.frame),
        crate::transcode::child::ChildEvent::Ended { error, retry_in, .. } => {
            tracing::warn!(stream = %log_key, %error, retry_in_ms = retry_in.as_millis() as u64, "ingest relay ended; will retry");
            events.update(|s| {
                s.state = "failed";
                s.last_error = Some(error);
            });
        }
    };
    let stop_entry = entry.clone();
    let reason = crate::transcode::child::supervise(&ffmpeg, &args, on_event, async move {
        stop_entry.stop_requested().await;
        "removed"
    })
    .await;
    entry.update(|s| s.state = "stopped");
    tracing::info!(id = spec.id, stream = %key, %reason, "ingest relay stopped");
}
