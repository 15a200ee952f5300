//! Runtime settings the actors need, filled from the node's configuration.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Settings a configuration reload may replace while the node runs. Readers take the current
/// value as an `Arc` and keep it for as long as their session or call lasts: a reload changes
/// what the next session sees, never what a running one is using.
#[derive(Debug, Default)]
pub struct Reloadable<T>(RwLock<Arc<T>>);

impl<T> Reloadable<T> {
    /// Starts with `value`.
    pub fn new(value: T) -> Self {
        Reloadable(RwLock::new(Arc::new(value)))
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        // A writer only swaps an `Arc`, so a poisoned lock still holds a whole value.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the value for every later [`Reloadable::get`].
    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }
}

/// Stream actor behaviour.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// How long players wait for a publisher that dropped to come back.
    pub publisher_grace: Duration,
    /// Keep the last GOP for late joiners.
    pub gop_cache: bool,
    /// Frames above which the GOP cache is given up until the next keyframe.
    pub gop_cache_max_frames: usize,
    /// Bytes above which the GOP cache is given up until the next keyframe.
    pub gop_cache_max_bytes: usize,
    /// Frames queued per player before it starts losing GOPs.
    pub player_queue_frames: usize,
    /// Frames queued from a publisher to the stream (see [`crate::stream::PublisherLink`]).
    pub publish_queue_frames: usize,
    /// Frames queued per internal output (HLS, DASH, DVR).
    pub output_queue_frames: usize,
    /// A player behind for longer than this is disconnected.
    pub slow_player_timeout: Duration,
    /// HLS output.
    pub hls: std::sync::Arc<SegmentSettings>,
    /// DASH output.
    pub dash: std::sync::Arc<SegmentSettings>,
    /// DVR recording.
    pub dvr: std::sync::Arc<DvrSettings>,
    /// Forward destinations per app (URL templates).
    pub forward: std::sync::Arc<std::collections::BTreeMap<String, Vec<String>>>,
    /// HTTP backend asked where to forward each published stream.
    pub forward_backend: Option<String>,
    /// Transcoding ladders.
    pub transcode: Option<std::sync::Arc<crate::transcode::TranscodeSettings>>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        // Without a node configuration there is no directory to write to: outputs are off.
        let hls = SegmentSettings::new(std::env::temp_dir().join("estuary-hls"), false);
        StreamSettings {
            publisher_grace: Duration::from_secs(5),
            gop_cache: true,
            gop_cache_max_frames: 1000,
            gop_cache_max_bytes: 64 << 20,
            player_queue_frames: 1024,
            publish_queue_frames: 256,
            output_queue_frames: 1024,
            slow_player_timeout: Duration::from_secs(10),
            dash: std::sync::Arc::new(SegmentSettings::new(std::env::temp_dir().join("estuary-dash"), false)),
            hls: std::sync::Arc::new(hls),
            dvr: std::sync::Arc::new(DvrSettings::default()),
            forward: Default::default(),
            transcode: None,
            forward_backend: None,
        }
    }
}

/// Stream settings of the default vhost and of each named vhost that has its own.
#[derive(Debug, Clone, Default)]
pub struct VhostStreamSettings {
    /// For every vhost without its own.
    pub default: StreamSettings,
    /// By vhost name.
    pub vhosts: std::collections::BTreeMap<String, StreamSettings>,
}

impl VhostStreamSettings {
    /// The settings of `vhost`'s streams.
    pub fn for_vhost(&self, vhost: &str) -> &StreamSettings {
        self.vhosts.get(vhost).unwrap_or(&self.default)
    }
}

impl From<StreamSettings> for VhostStreamSettings {
    fn from(default: StreamSettings) -> Self {
        VhostStreamSettings { default, vhosts: Default::default() }
    }
}

/// RTMP listener and session behaviour.
#[derive(Debug, Clone)]
pub struct RtmpSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Outgoing chunk size.
    pub chunk_size: usize,
    /// Largest message accepted.
    pub max_message_size: usize,
    /// A connection must finish the handshake within this time.
    pub handshake_timeout: Duration,
    /// A publisher silent for this long is disconnected.
    pub publish_timeout: Duration,
    /// A write to a player that does not complete within this time ends that player.
    pub send_timeout: Duration,
    /// Players' media writes are merged over this interval (0: write every frame at once).
    pub write_merge: Duration,
}

impl Default for RtmpSettings {
    fn default() -> Self {
        RtmpSettings {
            listen: "0.0.0.0:1935".parse().expect("literal address"),
            chunk_size: 4096,
            max_message_size: 8 << 20,
            handshake_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            write_merge: Duration::ZERO,
        }
    }
}

/// HLS or DASH output settings.
#[derive(Debug, Clone)]
pub struct SegmentSettings {
    /// Produce this output at all.
    pub enabled: bool,
    /// Apps it applies to; empty means every app.
    pub apps: Vec<String>,
    /// Directory for playlists and segments (`<dir>/<app>/...`).
    pub dir: std::path::PathBuf,
    /// Target segment duration (segments are cut at the first keyframe after it).
    pub fragment: Duration,
    /// Segments listed in the playlist/MPD.
    pub window: usize,
    /// HLS only: fMP4 segments instead of MPEG-TS.
    pub fmp4: bool,
    /// A segment larger than this before its closing keyframe is dropped.
    pub max_segment_bytes: usize,
    /// How long an ended stream's files stay; zero keeps them.
    pub dispose: Duration,
    /// Written to disk from the publish on (today's writer) instead of packaged in memory
    /// on demand.
    pub always: bool,
    /// On demand: the part target of the live package (LL-HLS parts, DASH chunks).
    pub part: Duration,
    /// On demand: a package with no request for this long stops.
    pub idle: Duration,
}

impl SegmentSettings {
    /// Defaults for `dir`: on, every app, 2 s segments, a window of 6.
    pub fn new(dir: std::path::PathBuf, enabled: bool) -> Self {
        SegmentSettings {
            enabled,
            apps: Vec::new(),
            dir,
            fragment: Duration::from_secs(2),
            window: 6,
            fmp4: false,
            max_segment_bytes: 64 << 20,
            dispose: Duration::from_secs(120),
            always: false,
            part: Duration::from_millis(300),
            idle: Duration::from_secs(30),
        }
    }

    /// True when this output is produced for `app`.
    pub fn applies_to(&self, app: &str) -> bool {
        self.enabled && (self.apps.is_empty() || self.apps.iter().any(|a| a == app))
    }

    /// True when this output is written to disk for `app` from the publish on.
    pub fn written_for(&self, app: &str) -> bool {
        self.always && self.applies_to(app)
    }

    /// True when this output is packaged in memory for `app` when a player asks.
    pub fn on_demand_for(&self, app: &str) -> bool {
        !self.always && self.applies_to(app)
    }

    /// How the live package cuts (from the HLS settings, which DASH shares on demand).
    pub fn package(&self) -> estuary_protocols::cmaf::Settings {
        estuary_protocols::cmaf::Settings {
            segment_ms: self.fragment.as_millis() as i64,
            part_ms: self.part.as_millis() as i64,
            window: self.window,
            max_segment_bytes: self.max_segment_bytes,
        }
    }
}

/// The SRT listener's settings.
#[derive(Debug, Clone)]
pub struct SrtSettings {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Receiver latency (TSBPD delay) Estuary asks for; the larger of both peers' wins.
    pub latency: Duration,
    /// Latency Estuary asks the peer to apply to what Estuary sends.
    pub peer_latency: Duration,
    /// A connection silent this long is closed.
    pub peer_idle_timeout: Duration,
    /// A caller must complete the handshake within this time.
    pub handshake_timeout: Duration,
    /// Passphrase callers must use (encryption on); `None`: unencrypted callers only.
    pub passphrase: Option<String>,
    /// Largest SRT payload, bytes (1316 = seven TS packets).
    pub payload_size: usize,
    /// Handshakes in progress at once; further callers are ignored until some complete.
    pub max_pending: usize,
    /// Players get new frames at most this often (`stream.write_merge_ms`; 0: as they come).
    pub write_merge: Duration,
}

impl Default for SrtSettings {
    fn default() -> Self {
        SrtSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], 10080)),
            latency: Duration::from_millis(120),
            peer_latency: Duration::from_millis(120),
            peer_idle_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            passphrase: None,
            payload_size: 1316,
            max_pending: 1024,
            write_merge: Duration::ZERO,
        }
    }
}

/// One file per publish, or a new file every `segment` (cut at a keyframe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DvrPlan {
    /// One file per publish.
    Session,
    /// A new file at the first keyframe after each `segment`.
    Segment,
}

/// Recording file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DvrFormat {
    /// Fragmented MP4 (a crash loses at most the last fragment); playable over HTTP-MP4.
    Mp4,
    /// FLV (downloadable; not served as HTTP-MP4).
    Flv,
}

/// Retention limits for one app (0 = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Recordings older than this (by end time) are deleted.
    pub max_age: Duration,
    /// The app's recordings are kept under this many bytes, oldest deleted first.
    pub max_bytes: u64,
}

/// DVR settings.
#[derive(Debug, Clone)]
pub struct DvrSettings {
    /// Record the apps in `apps` (all apps when empty).
    pub enabled: bool,
    /// Apps to record.
    pub apps: Vec<String>,
    /// Root directory of recordings.
    pub dir: std::path::PathBuf,
    /// Plan.
    pub plan: DvrPlan,
    /// Segment length for the segment plan.
    pub segment: Duration,
    /// Format.
    pub format: DvrFormat,
    /// Path template under `dir` (`[app]`, `[stream]`, `[timestamp]`, `[2006]`, `[01]`, `[02]`,
    /// `[15]`, `[04]`, `[05]`, `[999]`).
    pub path: String,
    /// MP4 fragment length (each fragment is made durable before the next starts).
    pub fragment: Duration,
    /// MP4 recordings carry a caption track (3GPP timed text) with the stream's captions.
    pub captions: bool,
    /// Retention for apps without their own.
    pub retention: Retention,
    /// Per-app retention.
    pub app_retention: std::collections::BTreeMap<String, Retention>,
}

impl Default for DvrSettings {
    fn default() -> Self {
        DvrSettings {
            enabled: false,
            apps: Vec::new(),
            dir: std::env::temp_dir().join("estuary-dvr"),
            plan: DvrPlan::Segment,
            segment: Duration::from_secs(60),
            format: DvrFormat::Mp4,
            path: "[app]/[stream].[timestamp].mp4".into(),
            fragment: Duration::from_secs(1),
            captions: true,
            retention: Retention::default(),
            app_retention: Default::default(),
        }
    }
}

impl DvrSettings {
    /// Whether config turns recording on for `app`.
    pub fn applies_to(&self, app: &str) -> bool {
        self.enabled && (self.apps.is_empty() || self.apps.iter().any(|a| a == app))
    }

    /// The retention of `app`.
    pub fn retention_of(&self, app: &str) -> Retention {
        self.app_retention.get(app).copied().unwrap_or(self.retention)
    }
}
