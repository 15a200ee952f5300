//! The configuration's sections and keys, with their defaults (`default-config.toml` says
//! what each means).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeSection,
    pub rtmp: RtmpSection,
    pub srt: SrtSection,
    pub rtc: RtcSection,
    pub http: HttpSection,
    pub api: ApiSection,
    pub stream: StreamSection,
    pub hls: HlsSection,
    pub dash: DashSection,
    pub dvr: DvrSection,
    pub forward: ForwardSection,
    pub ingest: IngestSection,
    pub transcode: TranscodeSection,
    pub gb28181: Gb28181Section,
    pub metrics: MetricsSection,
    pub auth: AuthSection,
    pub hooks: HooksSection,
    pub cluster: ClusterSection,
    pub log: LogSection,
    pub https: HttpsSection,
    pub rtmps: RtmpsSection,
    pub vhosts: std::collections::BTreeMap<String, VhostSection>,
}

/// RTMPS in: RTMP over TLS, with the `[https]` certificate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpsSection {
    pub listen: String,
}

/// HTTPS listeners of the HTTP server and the API, with one certificate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpsSection {
    pub listen: String,
    pub api_listen: String,
    pub cert_file: String,
    pub key_file: String,
}

/// A named virtual host's own sections: each one given replaces the node's section for the
/// streams of that vhost (keys it leaves out take the built-in defaults); sections not given
/// are the node's. DVR's directory and retention stay the node's.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VhostSection {
    pub hls: Option<HlsSection>,
    pub dash: Option<DashSection>,
    pub dvr: Option<DvrSection>,
    pub forward: Option<ForwardSection>,
    pub hooks: Option<HooksSection>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    pub listen: String,
    pub max_stream_series: usize,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection { listen: String::new(), max_stream_series: 100 }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    pub token_secret: String,
    pub require_token: Vec<String>,
    pub publish_allow: Vec<String>,
    pub publish_deny: Vec<String>,
    pub play_allow: Vec<String>,
    pub play_deny: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HookUrls {
    pub on_connect: Vec<String>,
    pub on_close: Vec<String>,
    pub on_publish: Vec<String>,
    pub on_unpublish: Vec<String>,
    pub on_play: Vec<String>,
    pub on_stop: Vec<String>,
    pub on_dvr: Vec<String>,
    pub on_hls: Vec<String>,
}

impl HookUrls {
    pub(super) fn by_event(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        [
            ("on_connect", &self.on_connect),
            ("on_close", &self.on_close),
            ("on_publish", &self.on_publish),
            ("on_unpublish", &self.on_unpublish),
            ("on_play", &self.on_play),
            ("on_stop", &self.on_stop),
            ("on_dvr", &self.on_dvr),
            ("on_hls", &self.on_hls),
        ]
        .into_iter()
        .filter(|(_, urls)| !urls.is_empty())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksSection {
    pub timeout_ms: u64,
    pub fail_open: Vec<String>,
    #[serde(flatten)]
    pub default: HookUrls,
    pub apps: std::collections::BTreeMap<String, HookUrls>,
}

impl Default for HooksSection {
    fn default() -> Self {
        HooksSection { timeout_ms: 3000, fail_open: Vec::new(), default: HookUrls::default(), apps: Default::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsSection {
    pub enabled: bool,
    pub apps: Vec<String>,
    pub always: bool,
    pub fragment_ms: u64,
    pub part_ms: u64,
    pub window: usize,
    pub idle_s: u64,
    pub fmp4: bool,
    pub max_segment_bytes: usize,
    pub dispose_s: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashSection {
    pub enabled: bool,
    pub apps: Vec<String>,
    pub always: bool,
    pub fragment_ms: u64,
    pub window: usize,
    pub max_segment_bytes: usize,
    pub dispose_s: u64,
}

impl Default for HlsSection {
    fn default() -> Self {
        HlsSection { enabled: true, apps: Vec::new(), always: false, fragment_ms: 2000, part_ms: 300, window: 6, idle_s: 30, fmp4: false, max_segment_bytes: 64 << 20, dispose_s: 120 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionSection {
    pub suffix: String,
    #[serde(default)]
    pub height: Option<u32>,
    pub video_kbps: u32,
    #[serde(default = "default_codec")]
    pub codec: String,
    #[serde(default = "default_audio_kbps")]
    pub audio_kbps: u32,
    /// A picture (logo, watermark) over the video.
    #[serde(default)]
    pub overlay: Option<ImageOverlaySection>,
    /// A line of text (a label, a clock) over the video.
    #[serde(default)]
    pub text: Option<TextOverlaySection>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageOverlaySection {
    pub image: String,
    #[serde(default = "default_image_position")]
    pub position: String,
    #[serde(default = "default_overlay_margin")]
    pub margin: u32,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default = "default_opacity")]
    pub opacity: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextOverlaySection {
    pub text: String,
    #[serde(default = "default_text_position")]
    pub position: String,
    #[serde(default = "default_overlay_margin")]
    pub margin: u32,
    #[serde(default = "default_text_size")]
    pub size: u32,
    #[serde(default = "default_text_color")]
    pub color: String,
    #[serde(default, rename = "box")]
    pub boxed: bool,
}

fn default_image_position() -> String {
    "top-right".into()
}

fn default_text_position() -> String {
    "bottom-left".into()
}

fn default_overlay_margin() -> u32 {
    16
}

fn default_opacity() -> f32 {
    1.0
}

fn default_text_size() -> u32 {
    24
}

fn default_text_color() -> String {
    "white".into()
}

fn default_codec() -> String {
    "h264".into()
}

fn default_audio_kbps() -> u32 {
    128
}

impl RenditionSection {
    pub fn to_rendition(&self) -> Result<estuary_transcode::ffmpeg::Rendition, String> {
        use estuary_transcode::ffmpeg::{ImageOverlay, Position, Rendition, TextOverlay, VideoCodec};
        let video_codec = VideoCodec::parse(&self.codec)?;
        let overlay = match &self.overlay {
            Some(o) => Some(ImageOverlay { image: o.image.clone().into(), position: Position::parse(&o.position)?, margin: o.margin, width: o.width, opacity: o.opacity }),
            None => None,
        };
        let text = match &self.text {
            Some(t) => Some(TextOverlay { text: t.text.clone(), position: Position::parse(&t.position)?, margin: t.margin, size: t.size, color: t.color.clone(), boxed: t.boxed }),
            None => None,
        };
        let rendition = Rendition { suffix: self.suffix.clone(), height: self.height, video_kbps: self.video_kbps, video_codec, audio_kbps: self.audio_kbps, overlay, text };
        rendition.validate().map_err(|e| e.to_string())?;
        Ok(rendition)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeSection {
    pub ffmpeg: String,
    pub apps: std::collections::BTreeMap<String, Vec<RenditionSection>>,
    pub fallback: bool,
    pub fallback_max: usize,
    pub fallback_kbps: u32,
    pub fallback_idle_s: u64,
}

impl Default for TranscodeSection {
    fn default() -> Self {
        TranscodeSection { ffmpeg: "ffmpeg".into(), apps: Default::default(), fallback: true, fallback_max: 16, fallback_kbps: 2000, fallback_idle_s: 10 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gb28181Section {
    pub enabled: bool,
    pub media_listen: String,
    pub app: String,
    pub stream_name: String,
    pub sip_listen: String,
    pub server_id: String,
    pub realm: String,
    pub password: String,
    pub auto_invite: bool,
    pub media_ip: String,
    pub media_transport: String,
    pub keepalive_timeout_s: u64,
    pub catalog_timeout_ms: u64,
    pub max_devices: usize,
}

impl Default for Gb28181Section {
    fn default() -> Self {
        Gb28181Section {
            enabled: true,
            media_listen: "0.0.0.0:9000".into(),
            app: "live".into(),
            stream_name: "[device]_[channel]".into(),
            sip_listen: "0.0.0.0:5060".into(),
            server_id: "34020000002000000001".into(),
            realm: "3402000000".into(),
            password: String::new(),
            auto_invite: true,
            media_ip: "127.0.0.1".into(),
            media_transport: "tcp".into(),
            keepalive_timeout_s: 180,
            catalog_timeout_ms: 3000,
            max_devices: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    pub sources: std::collections::BTreeMap<String, String>,
    /// Where uploaded media files go (`POST /api/v1/uploads`); empty: `<node.data_dir>/media`.
    pub media_dir: String,
    /// Largest upload accepted, in bytes.
    pub upload_max_bytes: u64,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection { sources: Default::default(), media_dir: String::new(), upload_max_bytes: 1 << 30 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardSection {
    pub backend: String,
    pub tls_ca_file: String,
    pub apps: std::collections::BTreeMap<String, Vec<String>>,
    /// Forwards and URL ingests added through the API may not point at this machine or a
    /// private network.
    pub deny_private: bool,
}

impl Default for ForwardSection {
    fn default() -> Self {
        ForwardSection { backend: String::new(), tls_ca_file: String::new(), apps: Default::default(), deny_private: true }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    pub max_age_s: u64,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DvrSection {
    pub enabled: bool,
    pub apps: Vec<String>,
    pub dir: String,
    pub plan: String,
    pub segment_ms: u64,
    pub format: String,
    pub path: String,
    pub fragment_ms: u64,
    pub captions: bool,
    pub max_age_s: u64,
    pub max_bytes: u64,
    pub retention: std::collections::BTreeMap<String, RetentionSection>,
}

impl Default for DvrSection {
    fn default() -> Self {
        DvrSection {
            enabled: false,
            apps: Vec::new(),
            dir: String::new(),
            plan: "segment".into(),
            segment_ms: 60_000,
            format: "mp4".into(),
            path: "[app]/[stream].[timestamp].mp4".into(),
            fragment_ms: 1000,
            captions: true,
            max_age_s: 0,
            max_bytes: 0,
            retention: Default::default(),
        }
    }
}

impl Default for DashSection {
    fn default() -> Self {
        DashSection { enabled: true, apps: Vec::new(), always: false, fragment_ms: 2000, window: 6, max_segment_bytes: 64 << 20, dispose_s: 120 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    pub data_dir: PathBuf,
    pub workers: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpSection {
    pub listen: String,
    pub chunk_size: usize,
    pub max_message_size: usize,
    pub handshake_timeout_ms: u64,
    pub publish_timeout_ms: u64,
    pub send_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SrtSection {
    pub enabled: bool,
    pub listen: String,
    pub latency_ms: u64,
    pub peer_latency_ms: u64,
    pub peer_idle_timeout_ms: u64,
    pub handshake_timeout_ms: u64,
    pub passphrase: String,
    pub payload_size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtcSection {
    pub enabled: bool,
    pub listen: String,
    pub candidate: String,
    pub connect_timeout_s: u64,
    pub aac_bitrate: u32,
    pub opus_bitrate: u32,
    pub max_sessions: usize,
    /// How often a WHIP publisher that sends no keyframe of its own is asked for one (RTCP
    /// PLI), in ms; 0: never (SRS's `pli_for_rtmp`).
    pub pli_interval_ms: u64,
}

impl Default for RtcSection {
    fn default() -> Self {
        RtcSection { enabled: true, listen: "0.0.0.0:8000".into(), candidate: String::new(), connect_timeout_s: 10, aac_bitrate: 128_000, opus_bitrate: 64_000, max_sessions: 1000, pli_interval_ms: 3000 }
    }
}

impl Default for SrtSection {
    fn default() -> Self {
        SrtSection {
            enabled: true,
            listen: "0.0.0.0:10080".into(),
            latency_ms: 120,
            peer_latency_ms: 120,
            peer_idle_timeout_ms: 5000,
            handshake_timeout_ms: 5000,
            passphrase: String::new(),
            payload_size: 1316,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub listen: String,
    /// The web console (`/console/`), the player page (`/players/`) and, for them, the API's
    /// paths (`/api/...`, `/rtc/...`) on this port too.
    pub console: bool,
    /// The port's front answers LL-HLS playlists, parts and segments itself (see
    /// `front.rs`); off: every request goes through actix-web.
    pub front: bool,
    /// Kept-alive connections the front answered are then served by one loop per worker
    /// thread, every this many ms (see `front/batch.rs`); 0: each by its own task, as its
    /// requests come.
    pub front_tick_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    pub listen: String,
    pub debug_faults: bool,
    pub token: String,
    pub username: String,
    pub password: String,
    pub allow_reload: bool,
    /// Without credentials: other hosts may read the API (SRS's behaviour). Off: only this
    /// machine may, other hosts get 403 until credentials are set.
    pub public_reads: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSection {
    pub publisher_grace_ms: u64,
    pub gop_cache: bool,
    pub gop_cache_max_frames: usize,
    pub gop_cache_max_bytes: usize,
    pub player_queue_frames: usize,
    pub publish_queue_frames: usize,
    pub output_queue_frames: usize,
    pub slow_player_timeout_ms: u64,
    pub write_merge_ms: u64,
    pub history_max_age_s: u64,
    pub history_max_count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub level: String,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection { data_dir: PathBuf::from("./estuary-data"), workers: 0, max_connections: 10_000, max_connections_per_ip: 1000 }
    }
}

impl Default for RtmpSection {
    fn default() -> Self {
        RtmpSection {
            listen: "0.0.0.0:1935".into(),
            chunk_size: 4096,
            max_message_size: 8 << 20,
            handshake_timeout_ms: 10_000,
            publish_timeout_ms: 10_000,
            send_timeout_ms: 10_000,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection { listen: "0.0.0.0:8080".into(), console: true, front: true, front_tick_ms: 20 }
    }
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection { listen: "0.0.0.0:1985".into(), debug_faults: false, token: String::new(), username: String::new(), password: String::new(), allow_reload: true, public_reads: false }
    }
}

impl Default for StreamSection {
    fn default() -> Self {
        StreamSection {
            publisher_grace_ms: 5000,
            gop_cache: true,
            gop_cache_max_frames: 1000,
            gop_cache_max_bytes: 64 << 20,
            player_queue_frames: 1024,
            publish_queue_frames: 256,
            output_queue_frames: 1024,
            slow_player_timeout_ms: 10_000,
            write_merge_ms: 50,
            history_max_age_s: 30 * 86_400,
            history_max_count: 10_000,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { level: "info".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    pub mode: String,
    pub redis: String,
    pub node_id: String,
    pub advertise: String,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub edge_idle_ms: u64,
    pub secret: String,
    pub redirect: bool,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection { mode: "standalone".into(), redis: "redis://127.0.0.1:6379".into(), node_id: String::new(), advertise: "127.0.0.1".into(), lease_ms: 5000, heartbeat_ms: 1000, edge_idle_ms: 5000, secret: String::new(), redirect: false }
    }
}
