//! What a configuration must satisfy: ranges, addresses, names.

use super::{Config, ConfigError};
use super::settings::rtc_candidates;
use std::net::SocketAddr;

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
        range("ingest.upload_max_bytes", self.ingest.upload_max_bytes, 1, estuary_actors::ingest::MAX_SOURCE_BYTES)?;
        address("srt.listen", &self.srt.listen)?;
        address("rtc.listen", &self.rtc.listen)?;
        rtc_candidates(&self.rtc.candidate)?;
        range("rtc.connect_timeout_s", self.rtc.connect_timeout_s, 1, 300)?;
        range("rtc.aac_bitrate", self.rtc.aac_bitrate as u64, 16_000, 512_000)?;
        range("rtc.opus_bitrate", self.rtc.opus_bitrate as u64, 6_000, 510_000)?;
        if self.rtc.pli_interval_ms != 0 {
            range("rtc.pli_interval_ms", self.rtc.pli_interval_ms, 500, 30_000)?;
        }
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
        range("node.max_connections", self.node.max_connections, 0, 1_000_000)?;
        range("node.max_connections_per_ip", self.node.max_connections_per_ip, 0, 1_000_000)?;
        range("stream.publisher_grace_ms", self.stream.publisher_grace_ms, 0, 3_600_000)?;
        range("stream.gop_cache_max_frames", self.stream.gop_cache_max_frames, 1, 100_000)?;
        range("stream.gop_cache_max_bytes", self.stream.gop_cache_max_bytes as u64, 1 << 20, 1 << 32)?;
        range("hls.max_segment_bytes", self.hls.max_segment_bytes as u64, 1 << 20, 1 << 32)?;
        range("dash.max_segment_bytes", self.dash.max_segment_bytes as u64, 1 << 20, 1 << 32)?;
        range("stream.player_queue_frames", self.stream.player_queue_frames, 16, 100_000)?;
        range("hls.dispose_s", self.hls.dispose_s, 0, 7 * 86_400)?;
        range("dash.dispose_s", self.dash.dispose_s, 0, 7 * 86_400)?;
        range("stream.history_max_age_s", self.stream.history_max_age_s, 60, 10 * 365 * 86_400)?;
        range("stream.history_max_count", self.stream.history_max_count, 1, 10_000_000)?;
        range("stream.publish_queue_frames", self.stream.publish_queue_frames, 16, 100_000)?;
        range("stream.output_queue_frames", self.stream.output_queue_frames, 16, 100_000)?;
        range("stream.slow_player_timeout_ms", self.stream.slow_player_timeout_ms, 100, 3_600_000)?;
        range("stream.write_merge_ms", self.stream.write_merge_ms, 0, 1000)?;
        range("http.front_tick_ms", self.http.front_tick_ms, 0, 1000)?;
        range("hls.fragment_ms", self.hls.fragment_ms, 200, 60_000)?;
        range("hls.part_ms", self.hls.part_ms, 50, 5_000)?;
        range("hls.idle_s", self.hls.idle_s, 1, 86_400)?;
        if self.hls.part_ms > self.hls.fragment_ms {
            return Err(ConfigError::Invalid { key: "hls.part_ms", problem: format!("{} exceeds hls.fragment_ms ({}): parts divide segments", self.hls.part_ms, self.hls.fragment_ms) });
        }
        range("hls.window", self.hls.window, 1, 1000)?;
        range("dash.fragment_ms", self.dash.fragment_ms, 200, 60_000)?;
        range("dvr.segment_ms", self.dvr.segment_ms, 1000, 86_400_000)?;
        range("dvr.fragment_ms", self.dvr.fragment_ms, 100, 60_000)?;
        range("cluster.lease_ms", self.cluster.lease_ms, 1200, 600_000)?;
        range("cluster.heartbeat_ms", self.cluster.heartbeat_ms, 100, 60_000)?;
        range("cluster.edge_idle_ms", self.cluster.edge_idle_ms, 1000, 3_600_000)?;
        if !["standalone", "origin", "edge"].contains(&self.cluster.mode.as_str()) {
            return Err(ConfigError::Invalid { key: "cluster.mode", problem: format!("{:?} is not standalone, origin or edge", self.cluster.mode) });
        }
        // A claim must survive one missed beat and one slow Redis answer (1 s).
        if self.cluster.heartbeat_ms * 2 + 1000 > self.cluster.lease_ms {
            return Err(ConfigError::Invalid { key: "cluster.lease_ms", problem: format!("{} ms must be at least two beats (cluster.heartbeat_ms = {} ms) plus 1000 ms, so that a claim survives a missed beat and a slow registry answer", self.cluster.lease_ms, self.cluster.heartbeat_ms) });
        }
        if self.cluster.mode != "standalone" && !self.cluster.redis.starts_with("redis://") {
            return Err(ConfigError::Invalid { key: "cluster.redis", problem: format!("{:?} is not a redis:// URL", self.cluster.redis) });
        }
        if !self.cluster.node_id.is_empty() && (self.cluster.node_id.len() > 64 || !self.cluster.node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')) {
            return Err(ConfigError::Invalid { key: "cluster.node_id", problem: format!("{:?}: use at most 64 letters, digits, '-', '_' or '.'", self.cluster.node_id) });
        }
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
        if !(8..=100_000).contains(&self.transcode.fallback_kbps) {
            return Err(ConfigError::Invalid { key: "transcode.fallback_kbps", problem: format!("{} must be between 8 and 100000", self.transcode.fallback_kbps) });
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
                    .map_err(|problem| ConfigError::Invalid { key: "forward.apps", problem: problem.to_string() })?;
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
            if estuary_actors::access::auth::Action::parse(action).is_none() {
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
                estuary_actors::access::auth::Cidr::parse(entry).map_err(|problem| ConfigError::Invalid { key, problem })?;
            }
        }
        let events: Vec<&str> = estuary_actors::access::hooks::Event::ALL.iter().map(|e| e.name()).collect();
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
            for app in apps.iter() {
                estuary_protocols::naming::check_app(app).map_err(|reason| ConfigError::Invalid { key, problem: format!("{app:?} is not an app name: {reason}") })?;
            }
        }
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid { key: "node.data_dir", problem: "must not be empty".into() });
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return Err(ConfigError::Invalid { key: "log.level", problem: format!("{:?} is not one of error, warn, info, debug, trace", self.log.level) });
        }
        for (key, listen) in [("https.listen", &self.https.listen), ("https.api_listen", &self.https.api_listen), ("rtmps.listen", &self.rtmps.listen)] {
            if !listen.is_empty() {
                address(key, listen)?;
                if self.https.cert_file.is_empty() || self.https.key_file.is_empty() {
                    return Err(ConfigError::Invalid { key, problem: "needs https.cert_file and https.key_file (PEM)".into() });
                }
            }
        }
        for name in self.vhosts.keys() {
            if name.is_empty() || name.len() > 200 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
                return Err(ConfigError::Invalid { key: "vhosts", problem: format!("{name:?} is not a host name (letters, digits, '-', '.', '_')") });
            }
            // What stays the node's cannot be set per vhost.
            let own = &self.vhosts[name];
            let node_dvr = super::DvrSection::default();
            if own.dvr.as_ref().is_some_and(|d| d.dir != node_dvr.dir || d.max_age_s != node_dvr.max_age_s || d.max_bytes != node_dvr.max_bytes || !d.retention.is_empty()) {
                return Err(ConfigError::Parse { origin: format!("vhosts.\"{name}\".dvr"), message: "dir, max_age_s, max_bytes and retention are the node's: set them in [dvr]".into() });
            }
            if own.forward.as_ref().is_some_and(|f| !f.tls_ca_file.is_empty()) {
                return Err(ConfigError::Parse { origin: format!("vhosts.\"{name}\".forward"), message: "tls_ca_file is the node's: set it in [forward]".into() });
            }
            // A vhost's sections are checked as the node's are, in place.
            self.for_vhost(name).validate().map_err(|e| ConfigError::Parse { origin: format!("vhosts.\"{name}\""), message: e.to_string() })?;
        }
        Ok(())
    }
}
