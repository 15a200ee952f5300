//! Configuration: embedded defaults, an optional TOML file, then `ESTUARY_<SECTION>__<KEY>`
//! environment overrides, then validation. Every error names the key and the problem.
//! `node/src/default-config.toml` documents every key; a unit test keeps it equal to the
//! defaults in code.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The documented default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys or wrong types.
    #[error("{origin}: {message}")]
    Parse {
        /// File name or environment.
        origin: String,
        /// The parser's message (names the key).
        message: String,
    },
    /// A value is out of range.
    #[error("config key {key}: {problem}")]
    Invalid {
        /// `section.key`.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

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
    pub log: LogSection,
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
    fn by_event(&self) -> std::collections::BTreeMap<String, Vec<String>> {
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
    pub fragment_ms: u64,
    pub window: usize,
    pub fmp4: bool,
    pub max_segment_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashSection {
    pub enabled: bool,
    pub apps: Vec<String>,
    pub fragment_ms: u64,
    pub window: usize,
    pub max_segment_bytes: usize,
}

impl Default for HlsSection {
    fn default() -> Self {
        HlsSection { enabled: true, apps: Vec::new(), fragment_ms: 2000, window: 6, fmp4: false, max_segment_bytes: 64 << 20 }
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
}

fn default_codec() -> String {
    "h264".into()
}

fn default_audio_kbps() -> u32 {
    128
}

impl RenditionSection {
    pub fn to_rendition(&self) -> Result<estuary_transcode::ffmpeg::Rendition, String> {
        use estuary_transcode::ffmpeg::{Rendition, VideoCodec};
        let video_codec = match self.codec.as_str() {
            "h264" | "libx264" => VideoCodec::H264,
            "h265" | "hevc" | "libx265" => VideoCodec::H265,
            "copy" => VideoCodec::Copy,
            other => return Err(format!("codec {other:?} is not h264, h265 or copy")),
        };
        let rendition = Rendition { suffix: self.suffix.clone(), height: self.height, video_kbps: self.video_kbps, video_codec, audio_kbps: self.audio_kbps };
        rendition.validate().map_err(|e| e.to_string())?;
        Ok(rendition)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeSection {
    pub ffmpeg: String,
    pub apps: std::collections::BTreeMap<String, Vec<RenditionSection>>,
}

impl Default for TranscodeSection {
    fn default() -> Self {
        TranscodeSection { ffmpeg: "ffmpeg".into(), apps: Default::default() }
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

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    pub sources: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardSection {
    pub backend: String,
    pub tls_ca_file: String,
    pub apps: std::collections::BTreeMap<String, Vec<String>>,
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
            max_age_s: 0,
            max_bytes: 0,
            retention: Default::default(),
        }
    }
}

impl Default for DashSection {
    fn default() -> Self {
        DashSection { enabled: false, apps: Vec::new(), fragment_ms: 2000, window: 6, max_segment_bytes: 64 << 20 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    pub data_dir: PathBuf,
    pub workers: usize,
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
}

impl Default for RtcSection {
    fn default() -> Self {
        RtcSection { enabled: true, listen: "0.0.0.0:8000".into(), candidate: String::new(), connect_timeout_s: 10, aac_bitrate: 128_000, opus_bitrate: 64_000, max_sessions: 1000 }
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    pub listen: String,
    pub debug_faults: bool,
    pub token: String,
    pub username: String,
    pub password: String,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub level: String,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection { data_dir: PathBuf::from("./estuary-data"), workers: 0 }
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
        HttpSection { listen: "0.0.0.0:8080".into() }
    }
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection { listen: "0.0.0.0:1985".into(), debug_faults: false, token: String::new(), username: String::new(), password: String::new() }
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
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { level: "info".into() }
    }
}

/// Loads the configuration: defaults, then `file`, then environment overrides from `env`.
pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    let (mut table, origin) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
            let value: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse { origin: path.display().to_string(), message: e.to_string() })?;
            (value, path.display().to_string())
        }
        None => (toml::Table::new(), "built-in defaults".to_string()),
    };
    let mut overridden = Vec::new();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("ESTUARY_") else { continue };
        let Some((section, key)) = rest.split_once("__") else { continue };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw.clone()));
        let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key.clone(), value);
            }
            _ => {
                return Err(ConfigError::Parse { origin: format!("environment variable {name}"), message: format!("{section} is not a section") })
            }
        }
        overridden.push(name);
    }
    let origin = if overridden.is_empty() { origin } else { format!("{origin} with environment overrides {}", overridden.join(", ")) };
    let config: Config = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| ConfigError::Parse { origin, message: e.to_string() })?;
    config.validate()?;
    Ok(config)
}

fn address(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|e| ConfigError::Invalid { key, problem: format!("{value:?} is not an address like 0.0.0.0:1935 ({e})") })
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(key: &'static str, value: T, min: T, max: T) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::Invalid { key, problem: format!("{value} is outside {min}..={max}") });
    }
    Ok(())
}

impl Config {
    /// Checks ranges and addresses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        address("rtmp.listen", &self.rtmp.listen)?;
        address("http.listen", &self.http.listen)?;
        address("srt.listen", &self.srt.listen)?;
        address("rtc.listen", &self.rtc.listen)?;
        rtc_candidates(&self.rtc.candidate)?;
        range("rtc.connect_timeout_s", self.rtc.connect_timeout_s, 1, 300)?;
        range("rtc.aac_bitrate", self.rtc.aac_bitrate as u64, 16_000, 512_000)?;
        range("rtc.opus_bitrate", self.rtc.opus_bitrate as u64, 6_000, 510_000)?;
        range("rtc.max_sessions", self.rtc.max_sessions as u64, 1, 100_000)?;
        address("gb28181.media_listen", &self.gb28181.media_listen)?;
        address("gb28181.sip_listen", &self.gb28181.sip_listen)?;
        range("gb28181.keepalive_timeout_s", self.gb28181.keepalive_timeout_s, 3, 86_400)?;
        range("gb28181.catalog_timeout_ms", self.gb28181.catalog_timeout_ms, 1000, 600_000)?;
        range("gb28181.max_devices", self.gb28181.max_devices as u64, 1, 1_000_000)?;
        if !self.gb28181.stream_name.contains("[channel]") {
            return Err(ConfigError::Invalid { key: "gb28181.stream_name", problem: format!("{:?} has no [channel]: every channel needs its own stream", self.gb28181.stream_name) });
        }
        if !["tcp", "udp"].contains(&self.gb28181.media_transport.as_str()) {
            return Err(ConfigError::Invalid { key: "gb28181.media_transport", problem: format!("{:?} is not tcp or udp", self.gb28181.media_transport) });
        }
        range("srt.latency_ms", self.srt.latency_ms, 0, 60_000)?;
        range("srt.peer_latency_ms", self.srt.peer_latency_ms, 0, 60_000)?;
        range("srt.peer_idle_timeout_ms", self.srt.peer_idle_timeout_ms, 1000, 600_000)?;
        range("srt.handshake_timeout_ms", self.srt.handshake_timeout_ms, 500, 60_000)?;
        range("srt.payload_size", self.srt.payload_size, 188, 1456)?;
        if !self.srt.passphrase.is_empty() && !(10..=79).contains(&self.srt.passphrase.len()) {
            return Err(ConfigError::Invalid { key: "srt.passphrase", problem: format!("must be 10 to 79 characters long (SRT's rule), not {}", self.srt.passphrase.len()) });
        }
        address("api.listen", &self.api.listen)?;
        range("rtmp.chunk_size", self.rtmp.chunk_size, 128, 65536)?;
        range("rtmp.max_message_size", self.rtmp.max_message_size, 65536, 0xff_ffff)?;
        range("rtmp.handshake_timeout_ms", self.rtmp.handshake_timeout_ms, 100, 600_000)?;
        range("rtmp.publish_timeout_ms", self.rtmp.publish_timeout_ms, 100, 3_600_000)?;
        range("rtmp.send_timeout_ms", self.rtmp.send_timeout_ms, 100, 600_000)?;
        range("node.workers", self.node.workers, 0, 256)?;
        range("stream.publisher_grace_ms", self.stream.publisher_grace_ms, 0, 3_600_000)?;
        range("stream.gop_cache_max_frames", self.stream.gop_cache_max_frames, 1, 100_000)?;
        range("stream.gop_cache_max_bytes", self.stream.gop_cache_max_bytes as u64, 1 << 20, 1 << 32)?;
        range("hls.max_segment_bytes", self.hls.max_segment_bytes as u64, 1 << 20, 1 << 32)?;
        range("dash.max_segment_bytes", self.dash.max_segment_bytes as u64, 1 << 20, 1 << 32)?;
        range("stream.player_queue_frames", self.stream.player_queue_frames, 16, 100_000)?;
        range("stream.publish_queue_frames", self.stream.publish_queue_frames, 16, 100_000)?;
        range("stream.output_queue_frames", self.stream.output_queue_frames, 16, 100_000)?;
        range("stream.slow_player_timeout_ms", self.stream.slow_player_timeout_ms, 100, 3_600_000)?;
        range("stream.write_merge_ms", self.stream.write_merge_ms, 0, 1000)?;
        range("hls.fragment_ms", self.hls.fragment_ms, 200, 60_000)?;
        range("hls.window", self.hls.window, 1, 1000)?;
        range("dash.fragment_ms", self.dash.fragment_ms, 200, 60_000)?;
        range("dvr.segment_ms", self.dvr.segment_ms, 1000, 86_400_000)?;
        range("dvr.fragment_ms", self.dvr.fragment_ms, 100, 60_000)?;
        if !["session", "segment"].contains(&self.dvr.plan.as_str()) {
            return Err(ConfigError::Invalid { key: "dvr.plan", problem: format!("{:?} is not session or segment", self.dvr.plan) });
        }
        if !["mp4", "flv"].contains(&self.dvr.format.as_str()) {
            return Err(ConfigError::Invalid { key: "dvr.format", problem: format!("{:?} is not mp4 or flv", self.dvr.format) });
        }
        if self.dvr.path.is_empty() || self.dvr.path.starts_with('/') || self.dvr.path.split('/').any(|p| p == "..") {
            return Err(ConfigError::Invalid { key: "dvr.path", problem: format!("{:?} must be a relative path template inside dvr.dir", self.dvr.path) });
        }
        for renditions in self.transcode.apps.values() {
            for r in renditions {
                r.to_rendition().map_err(|problem| ConfigError::Invalid { key: "transcode.apps", problem })?;
            }
        }
        for stream in self.ingest.sources.keys() {
            if stream.split('/').count() != 2 || stream.split('/').any(|p| p.is_empty() || p == "..") {
                return Err(ConfigError::Invalid { key: "ingest.sources", problem: format!("{stream:?} is not app/stream") });
            }
        }
        if !self.forward.backend.is_empty() && !self.forward.backend.starts_with("http://") {
            return Err(ConfigError::Invalid { key: "forward.backend", problem: "must be an http:// URL".into() });
        }
        for (app, urls) in &self.forward.apps {
            for url in urls {
                estuary_actors::forward::resolve(url, &estuary_actors::StreamKey::new(app, "stream"))
                    .map_err(|problem| ConfigError::Invalid { key: "forward.apps", problem })?;
            }
        }
        if !self.dvr.path.contains("[stream]") {
            return Err(ConfigError::Invalid { key: "dvr.path", problem: "must contain [stream] (streams would overwrite each other)".into() });
        }
        range("dash.window", self.dash.window, 1, 1000)?;
        if !self.metrics.listen.is_empty() {
            address("metrics.listen", &self.metrics.listen)?;
        }
        range("metrics.max_stream_series", self.metrics.max_stream_series, 0, 100_000)?;
        range("hooks.timeout_ms", self.hooks.timeout_ms, 10, 120_000)?;
        for action in &self.auth.require_token {
            if estuary_actors::auth::Action::parse(action).is_none() {
                return Err(ConfigError::Invalid { key: "auth.require_token", problem: format!("{action:?} is not publish or play") });
            }
        }
        if !self.auth.require_token.is_empty() && self.auth.token_secret.is_empty() {
            return Err(ConfigError::Invalid { key: "auth.require_token", problem: "needs auth.token_secret".into() });
        }
        for (key, list) in [
            ("auth.publish_allow", &self.auth.publish_allow),
            ("auth.publish_deny", &self.auth.publish_deny),
            ("auth.play_allow", &self.auth.play_allow),
            ("auth.play_deny", &self.auth.play_deny),
        ] {
            for entry in list {
                estuary_actors::auth::Cidr::parse(entry).map_err(|problem| ConfigError::Invalid { key, problem })?;
            }
        }
        let events: Vec<&str> = estuary_actors::hooks::Event::ALL.iter().map(|e| e.name()).collect();
        if let Some(bad) = self.hooks.fail_open.iter().find(|e| !events.contains(&e.as_str())) {
            return Err(ConfigError::Invalid { key: "hooks.fail_open", problem: format!("{bad:?} is not a hook event ({})", events.join(", ")) });
        }
        let all_urls = std::iter::once(&self.hooks.default).chain(self.hooks.apps.values()).flat_map(|u| u.by_event().into_values().flatten());
        for url in all_urls {
            if !url.starts_with("http://") {
                return Err(ConfigError::Invalid { key: "hooks", problem: format!("{url:?}: hook URLs must start with http://") });
            }
        }
        for (key, apps) in [("hls.apps", &self.hls.apps), ("dash.apps", &self.dash.apps), ("dvr.apps", &self.dvr.apps)] {
            if let Some(bad) = apps.iter().find(|a| a.is_empty() || a.contains('/') || a.contains("..")) {
                return Err(ConfigError::Invalid { key, problem: format!("{bad:?} is not an app name") });
            }
        }
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid { key: "node.data_dir", problem: "must not be empty".into() });
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return Err(ConfigError::Invalid { key: "log.level", problem: format!("{:?} is not one of error, warn, info, debug, trace", self.log.level) });
        }
        Ok(())
    }

    /// The RTMP listen address (validated).
    pub fn rtmp_listen(&self) -> SocketAddr {
        self.rtmp.listen.parse().unwrap_or_else(|_| ([0, 0, 0, 0], 1935).into())
    }

    /// Settings for the RTMP actors.
    pub fn rtmp_settings(&self) -> estuary_actors::settings::RtmpSettings {
        estuary_actors::settings::RtmpSettings {
            listen: self.rtmp_listen(),
            chunk_size: self.rtmp.chunk_size,
            max_message_size: self.rtmp.max_message_size,
            handshake_timeout: Duration::from_millis(self.rtmp.handshake_timeout_ms),
            publish_timeout: Duration::from_millis(self.rtmp.publish_timeout_ms),
            send_timeout: Duration::from_millis(self.rtmp.send_timeout_ms),
            write_merge: Duration::from_millis(self.stream.write_merge_ms),
        }
    }

    /// WebRTC settings (`rtc.candidate`'s host names are resolved here).
    pub fn rtc_settings(&self) -> estuary_actors::webrtc::RtcSettings {
        estuary_actors::webrtc::RtcSettings {
            listen: self.rtc.listen.parse().unwrap_or_else(|_| ([0, 0, 0, 0], 8000).into()),
            candidates: rtc_candidates(&self.rtc.candidate).unwrap_or_default(),
            connect_timeout: Duration::from_secs(self.rtc.connect_timeout_s),
            aac_bitrate: self.rtc.aac_bitrate,
            opus_bitrate: self.rtc.opus_bitrate,
            max_sessions: self.rtc.max_sessions,
        }
    }

    /// The SRT listen address (validated).
    pub fn srt_listen(&self) -> SocketAddr {
        self.srt.listen.parse().unwrap_or_else(|_| ([0, 0, 0, 0], 10080).into())
    }

    /// Settings for the SRT actors.
    pub fn srt_settings(&self) -> estuary_actors::settings::SrtSettings {
        estuary_actors::settings::SrtSettings {
            listen: self.srt_listen(),
            latency: Duration::from_millis(self.srt.latency_ms),
            peer_latency: Duration::from_millis(self.srt.peer_latency_ms),
            peer_idle_timeout: Duration::from_millis(self.srt.peer_idle_timeout_ms),
            handshake_timeout: Duration::from_millis(self.srt.handshake_timeout_ms),
            passphrase: Some(self.srt.passphrase.clone()).filter(|p| !p.is_empty()),
            payload_size: self.srt.payload_size,
            ..Default::default()
        }
    }

    /// Hook settings for the actors.
    pub fn hook_settings(&self) -> estuary_actors::hooks::HookSettings {
        estuary_actors::hooks::HookSettings {
            timeout: Duration::from_millis(self.hooks.timeout_ms),
            fail_open: self.hooks.fail_open.iter().cloned().collect(),
            default: self.hooks.default.by_event(),
            apps: self.hooks.apps.iter().map(|(app, urls)| (app.clone(), urls.by_event())).collect(),
            server_id: format!("estuary-{}", std::process::id()),
        }
    }

    /// Access settings for the actors (validated, so parsing cannot fail here).
    pub fn access_settings(&self) -> estuary_actors::access::AccessSettings {
        use estuary_actors::auth::{Cidr, CidrRules, TokenSigner};
        let nets = |list: &[String]| list.iter().filter_map(|n| Cidr::parse(n).ok()).collect::<Vec<_>>();
        estuary_actors::access::AccessSettings {
            signer: (!self.auth.token_secret.is_empty()).then(|| TokenSigner::new(&self.auth.token_secret)),
            require_token: self.auth.require_token.iter().filter_map(|a| estuary_actors::auth::Action::parse(a)).map(|a| a.name()).collect(),
            publish: CidrRules { allow: nets(&self.auth.publish_allow), deny: nets(&self.auth.publish_deny) },
            play: CidrRules { allow: nets(&self.auth.play_allow), deny: nets(&self.auth.play_deny) },
        }
    }

    /// Where HLS files go.
    pub fn hls_dir(&self) -> std::path::PathBuf {
        self.node.data_dir.join("hls")
    }

    /// Where DASH files go.
    pub fn dash_dir(&self) -> std::path::PathBuf {
        self.node.data_dir.join("dash")
    }

    /// Transcoding settings for the actors (ladders validated by `validate`).
    pub fn transcode_settings(&self) -> estuary_actors::transcoder::TranscodeSettings {
        estuary_actors::transcoder::TranscodeSettings {
            ffmpeg: self.transcode.ffmpeg.clone(),
            rtmp_port: self.rtmp_listen().port(),
            srt_port: self.srt.enabled.then(|| self.srt_listen().port()),
            ladders: self.transcode.apps.iter().map(|(app, list)| (app.clone(), list.iter().filter_map(|r| r.to_rendition().ok()).collect())).collect(),
        }
    }

    /// GB28181 SIP settings.
    pub fn sip_settings(&self) -> estuary_actors::gb28181_sip::SipSettings {
        estuary_actors::gb28181_sip::SipSettings {
            platform: estuary_protocols::gb28181::PlatformConfig {
                listen: self.gb28181.sip_listen.parse().unwrap_or_else(|_| ([0, 0, 0, 0], 5060).into()),
                server_id: self.gb28181.server_id.clone(),
                realm: self.gb28181.realm.clone(),
                password: self.gb28181.password.clone(),
                auto_invite: self.gb28181.auto_invite,
                media_ip: self.gb28181.media_ip.clone(),
                media_port: self.gb28181.media_listen.parse::<SocketAddr>().map(|a| a.port()).unwrap_or(9000),
                media_udp: self.gb28181.media_transport == "udp",
                keepalive_timeout: Duration::from_secs(self.gb28181.keepalive_timeout_s),
                catalog_timeout: Duration::from_millis(self.gb28181.catalog_timeout_ms),
                max_devices: self.gb28181.max_devices,
                seed: 0,
            },
            app: self.gb28181.app.clone(),
            stream_name: self.gb28181.stream_name.clone(),
        }
    }

    /// Where recordings go.
    pub fn dvr_dir(&self) -> std::path::PathBuf {
        if self.dvr.dir.is_empty() {
            self.node.data_dir.join("dvr")
        } else {
            std::path::PathBuf::from(&self.dvr.dir)
        }
    }

    /// DVR settings for the actors.
    pub fn dvr_settings(&self) -> estuary_actors::settings::DvrSettings {
        use estuary_actors::settings::{DvrFormat, DvrPlan, DvrSettings, Retention};
        let retention = |age: u64, bytes: u64| Retention { max_age: Duration::from_secs(age), max_bytes: bytes };
        DvrSettings {
            enabled: self.dvr.enabled,
            apps: self.dvr.apps.clone(),
            dir: self.dvr_dir(),
            plan: if self.dvr.plan == "session" { DvrPlan::Session } else { DvrPlan::Segment },
            segment: Duration::from_millis(self.dvr.segment_ms),
            format: if self.dvr.format == "flv" { DvrFormat::Flv } else { DvrFormat::Mp4 },
            path: self.dvr.path.clone(),
            fragment: Duration::from_millis(self.dvr.fragment_ms),
            retention: retention(self.dvr.max_age_s, self.dvr.max_bytes),
            app_retention: self.dvr.retention.iter().map(|(app, r)| (app.clone(), retention(r.max_age_s, r.max_bytes))).collect(),
        }
    }

    /// Settings for stream actors.
    pub fn stream_settings(&self) -> estuary_actors::settings::StreamSettings {
        use estuary_actors::settings::SegmentSettings;
        let hls = SegmentSettings {
            enabled: self.hls.enabled,
            apps: self.hls.apps.clone(),
            dir: self.hls_dir(),
            fragment: Duration::from_millis(self.hls.fragment_ms),
            window: self.hls.window,
            fmp4: self.hls.fmp4,
            max_segment_bytes: self.hls.max_segment_bytes,
        };
        let dash = SegmentSettings {
            enabled: self.dash.enabled,
            apps: self.dash.apps.clone(),
            dir: self.dash_dir(),
            fragment: Duration::from_millis(self.dash.fragment_ms),
            window: self.dash.window,
            fmp4: true,
            max_segment_bytes: self.dash.max_segment_bytes,
        };
        estuary_actors::settings::StreamSettings {
            hls: std::sync::Arc::new(hls),
            dash: std::sync::Arc::new(dash),
            dvr: std::sync::Arc::new(self.dvr_settings()),
            forward: std::sync::Arc::new(self.forward.apps.clone()),
            forward_backend: Some(self.forward.backend.clone()).filter(|b| !b.is_empty()),
            transcode: Some(std::sync::Arc::new(self.transcode_settings())),
            publisher_grace: Duration::from_millis(self.stream.publisher_grace_ms),
            gop_cache: self.stream.gop_cache,
            gop_cache_max_frames: self.stream.gop_cache_max_frames,
            gop_cache_max_bytes: self.stream.gop_cache_max_bytes,
            player_queue_frames: self.stream.player_queue_frames,
            publish_queue_frames: self.stream.publish_queue_frames,
            output_queue_frames: self.stream.output_queue_frames,
            slow_player_timeout: Duration::from_millis(self.stream.slow_player_timeout_ms),
        }
    }
}

/// `rtc.candidate`: addresses or host names separated by commas or spaces; host names are
/// resolved to every address they have. Empty means automatic.
fn rtc_candidates(value: &str) -> Result<Vec<std::net::IpAddr>, ConfigError> {
    use std::net::ToSocketAddrs;
    let mut found = Vec::new();
    for entry in value.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty()) {
        if let Ok(ip) = entry.parse::<std::net::IpAddr>() {
            found.push(ip);
            continue;
        }
        let resolved = (entry, 0).to_socket_addrs().map_err(|e| ConfigError::Invalid { key: "rtc.candidate", problem: format!("{entry:?} is neither an IP address nor a host name that resolves: {e}") })?;
        found.extend(resolved.map(|a| a.ip()));
    }
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_match_the_code() {
        let documented: Config = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert_eq!(documented, Config::default());
        assert!(documented.validate().is_ok());
    }

    #[test]
    fn env_overrides_and_errors_name_the_key() {
        let config = load(None, [("ESTUARY_RTMP__LISTEN".to_string(), "127.0.0.1:1936".to_string()), ("ESTUARY_STREAM__PUBLISHER_GRACE_MS".to_string(), "2000".to_string())]).unwrap();
        assert_eq!(config.rtmp.listen, "127.0.0.1:1936");
        assert_eq!(config.stream.publisher_grace_ms, 2000);

        let err = load(None, [("ESTUARY_RTMP__CHUNK_SIZE".to_string(), "10".to_string())]).unwrap_err().to_string();
        assert!(err.contains("rtmp.chunk_size"), "{err}");
        let err = load(None, [("ESTUARY_RTMP__BOGUS".to_string(), "1".to_string())]).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        let err = load(None, [("ESTUARY_HTTP__LISTEN".to_string(), "nowhere".to_string())]).unwrap_err().to_string();
        assert!(err.contains("http.listen"), "{err}");
        let err = load(None, [("ESTUARY_AUTH__PLAY_DENY".to_string(), "[\"10.0.0.0/99\"]".to_string())]).unwrap_err().to_string();
        assert!(err.contains("auth.play_deny"), "{err}");
        let err = load(None, [("ESTUARY_HOOKS__ON_PUBLISH".to_string(), "[\"https://x\"]".to_string())]).unwrap_err().to_string();
        assert!(err.contains("http://"), "{err}");
        let err = load(None, [("ESTUARY_AUTH__REQUIRE_TOKEN".to_string(), "[\"play\"]".to_string())]).unwrap_err().to_string();
        assert!(err.contains("token_secret"), "{err}");
    }

    #[test]
    fn file_with_unknown_key_is_refused() {
        let dir = std::env::temp_dir().join(format!("estuary-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[rtmp]\nlisten = \"127.0.0.1:1\"\nchunksize = 5\n").unwrap();
        let err = load(Some(&path), []).unwrap_err().to_string();
        assert!(err.contains("chunksize") && err.contains("bad.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
