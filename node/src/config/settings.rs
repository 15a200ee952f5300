//! The actors' settings, derived from a valid configuration.

use super::{Config, ConfigError, DvrSection, ForwardSection};
use std::net::SocketAddr;
use std::time::Duration;

impl Config {
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
            pli_interval: std::time::Duration::from_millis(self.rtc.pli_interval_ms),
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
            write_merge: Duration::from_millis(self.stream.write_merge_ms),
            ..Default::default()
        }
    }

    /// The configuration the streams of `vhost` run with: the node's, with the sections the
    /// vhost gives in place of the node's (DVR's directory and retention stay the node's).
    pub fn for_vhost(&self, vhost: &str) -> Config {
        let mut config = self.clone();
        let Some(own) = self.vhosts.get(vhost) else { return config };
        if let Some(hls) = &own.hls {
            config.hls = hls.clone();
        }
        if let Some(dash) = &own.dash {
            config.dash = dash.clone();
        }
        if let Some(dvr) = &own.dvr {
            let node = &self.dvr;
            config.dvr = DvrSection { dir: node.dir.clone(), max_age_s: node.max_age_s, max_bytes: node.max_bytes, retention: node.retention.clone(), ..dvr.clone() };
        }
        if let Some(forward) = &own.forward {
            config.forward = ForwardSection { tls_ca_file: self.forward.tls_ca_file.clone(), ..forward.clone() };
        }
        if let Some(hooks) = &own.hooks {
            config.hooks = hooks.clone();
        }
        config.vhosts.clear();
        config
    }

    /// Hook settings for the actors.
    pub fn hook_settings(&self) -> estuary_actors::access::hooks::HookSettings {
        let mut settings = self.own_hook_settings();
        settings.vhosts = self.vhosts.iter().filter(|(_, v)| v.hooks.is_some()).map(|(name, _)| (name.clone(), std::sync::Arc::new(self.for_vhost(name).own_hook_settings()))).collect();
        settings
    }

    fn own_hook_settings(&self) -> estuary_actors::access::hooks::HookSettings {
        estuary_actors::access::hooks::HookSettings {
            timeout: Duration::from_millis(self.hooks.timeout_ms),
            fail_open: self.hooks.fail_open.iter().cloned().collect(),
            default: self.hooks.default.by_event(),
            apps: self.hooks.apps.iter().map(|(app, urls)| (app.clone(), urls.by_event())).collect(),
            server_id: format!("estuary-{}", std::process::id()),
            vhosts: Default::default(),
        }
    }

    /// Stream settings of the node's default vhost and of each named vhost.
    pub fn stream_settings_by_vhost(&self) -> estuary_actors::settings::VhostStreamSettings {
        estuary_actors::settings::VhostStreamSettings { default: self.stream_settings(), vhosts: self.vhosts.keys().map(|name| (name.clone(), self.for_vhost(name).stream_settings())).collect() }
    }

    /// Cluster membership, `None` when standalone; `node_id` is used when the config names
    /// none.
    pub fn cluster_settings(&self, node_id: &str) -> Option<estuary_actors::cluster::ClusterSettings> {
        if self.cluster.mode == "standalone" {
            return None;
        }
        let host = &self.cluster.advertise;
        let port = |listen: &str| listen.parse::<SocketAddr>().map(|a| a.port()).unwrap_or(0);
        Some(estuary_actors::cluster::ClusterSettings {
            role: self.cluster.mode.clone(),
            node_id: if self.cluster.node_id.is_empty() { node_id.to_string() } else { self.cluster.node_id.clone() },
            redis_url: self.cluster.redis.clone(),
            rtmp: format!("rtmp://{host}:{}", self.rtmp_listen().port()),
            http: format!("http://{host}:{}", port(&self.http.listen)),
            srt: format!("srt://{host}:{}", self.srt_listen().port()),
            api: format!("http://{host}:{}", port(&self.api.listen)),
            lease: std::time::Duration::from_millis(self.cluster.lease_ms),
            heartbeat: std::time::Duration::from_millis(self.cluster.heartbeat_ms),
            idle: std::time::Duration::from_millis(self.cluster.edge_idle_ms),
            secret: self.cluster.secret.clone(),
            redirect: self.cluster.redirect,
        })
    }

    /// Access settings for the actors (validated, so parsing cannot fail here).
    pub fn access_settings(&self) -> estuary_actors::access::AccessSettings {
        use estuary_actors::access::auth::{Cidr, CidrRules, TokenSigner};
        let nets = |list: &[String]| list.iter().filter_map(|n| Cidr::parse(n).ok()).collect::<Vec<_>>();
        estuary_actors::access::AccessSettings {
            signer: (!self.auth.token_secret.is_empty()).then(|| TokenSigner::new(&self.auth.token_secret)),
            require_token: self.auth.require_token.iter().filter_map(|a| estuary_actors::access::auth::Action::parse(a)).map(|a| a.name()).collect(),
            publish: CidrRules { allow: nets(&self.auth.publish_allow), deny: nets(&self.auth.publish_deny) },
            play: CidrRules { allow: nets(&self.auth.play_allow), deny: nets(&self.auth.play_deny) },
        }
    }

    /// Where HLS files go.
    pub fn hls_dir(&self) -> std::path::PathBuf {
        self.node.data_dir.join("hls")
    }

    /// Where uploaded media files go (`ingest.media_dir`, or `<node.data_dir>/media`).
    pub fn media_dir(&self) -> std::path::PathBuf {
        if self.ingest.media_dir.is_empty() {
            self.node.data_dir.join("media")
        } else {
            std::path::PathBuf::from(&self.ingest.media_dir)
        }
    }

    /// Where DASH files go.
    pub fn dash_dir(&self) -> std::path::PathBuf {
        self.node.data_dir.join("dash")
    }

    /// Transcoding settings for the actors (ladders validated by `validate`).
    pub fn transcode_settings(&self) -> estuary_actors::transcode::TranscodeSettings {
        estuary_actors::transcode::TranscodeSettings {
            ffmpeg: self.transcode.ffmpeg.clone(),
            rtmp_port: self.rtmp_listen().port(),
            srt_port: self.srt.enabled.then(|| self.srt_listen().port()),
            ladders: self.transcode.apps.iter().map(|(app, list)| (app.clone(), list.iter().filter_map(|r| r.to_rendition().ok()).collect())).collect(),
            fallback: self.transcode.fallback,
            fallback_max: self.transcode.fallback_max,
            fallback_kbps: self.transcode.fallback_kbps,
            fallback_idle: std::time::Duration::from_secs(self.transcode.fallback_idle_s),
        }
    }

    /// GB28181 SIP settings.
    pub fn sip_settings(&self) -> estuary_actors::gb28181::sip::SipSettings {
        estuary_actors::gb28181::sip::SipSettings {
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
            captions: self.dvr.captions,
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
            dispose: Duration::from_secs(self.hls.dispose_s),
            always: self.hls.always,
            part: Duration::from_millis(self.hls.part_ms),
            idle: Duration::from_secs(self.hls.idle_s),
        };
        let dash = SegmentSettings {
            enabled: self.dash.enabled,
            apps: self.dash.apps.clone(),
            dir: self.dash_dir(),
            fragment: Duration::from_millis(self.dash.fragment_ms),
            window: self.dash.window,
            fmp4: true,
            max_segment_bytes: self.dash.max_segment_bytes,
            dispose: Duration::from_secs(self.dash.dispose_s),
            always: self.dash.always,
            // On demand, DASH is cut by the same package as HLS (the [hls] settings).
            part: Duration::from_millis(self.hls.part_ms),
            idle: Duration::from_secs(self.hls.idle_s),
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
pub(super) fn rtc_candidates(value: &str) -> Result<Vec<std::net::IpAddr>, ConfigError> {
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
