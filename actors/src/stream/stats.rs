//! The stream's figures: rates sampled once a second, slow players cut off, the snapshot the
//! API and `/metrics` read.

use super::actor::StreamActor;
use crate::node::clients::ClientId;
use actix::prelude::*;
use estuary_protocols::codec::aac::AacConfig;
use estuary_protocols::codec::avc::AvcConfig;
use estuary_protocols::media::{Codec, MediaFrame};
use estuary_storage::{AudioInfo, VideoInfo};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A snapshot for the API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamInfo {
    /// `app`.
    pub app: String,
    /// `stream`.
    pub stream: String,
    /// `vhost`.
    pub vhost: String,
    /// Publishing client.
    pub publisher: Option<ClientId>,
    /// Its protocol.
    pub publisher_protocol: Option<&'static str>,
    /// Milliseconds since the current publish started.
    pub live_ms: u64,
    /// Subscribers now.
    pub subscribers: usize,
    /// Video track.
    pub video: Option<VideoInfo>,
    /// Audio track.
    pub audio: Option<AudioInfo>,
    /// Frames per second measured over the last seconds.
    pub fps: f64,
    /// Bytes received in this actor's life.
    pub bytes_in: u64,
    /// Bytes sent to subscribers in this actor's life.
    pub bytes_out: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames subscribers lost to backpressure.
    pub frames_dropped: u64,
    /// Subscribers disconnected for being too slow.
    pub slow_disconnects: u64,
    /// Frames a datagram publisher lost because this stream's input queue was full.
    pub publish_dropped: u64,
    /// Frames internal outputs (HLS, DASH, DVR) lost to a disk that could not keep up; each
    /// loss is a logged, indexed gap.
    pub output_frames_lost: u64,
    /// Times this stream's actor caught a panic and started its state over.
    pub restarts: u64,
    /// Receive rate over 30 s, kbit/s.
    pub kbps_in_30s: u64,
    /// Send rate over 30 s, kbit/s.
    pub kbps_out_30s: u64,
    /// Waiting for the publisher to come back.
    pub in_grace: bool,
}

impl StreamActor {
    /// What is known of the stream without reading its figures (when reading them panicked).
    pub(super) fn minimal_info(&self) -> StreamInfo {
        StreamInfo { app: self.key.app.clone(), stream: self.key.stream.clone(), vhost: self.key.vhost.clone(), restarts: self.restarts, ..StreamInfo::default() }
    }

    pub(super) fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let slow_timeout = self.settings.slow_player_timeout;
        let mut cut = Vec::new();
        let mut out_total = 0u64;
        for (id, sub) in &self.subscribers {
            if sub.tx.is_closed() {
                cut.push((*id, false));
            } else if !sub.internal && !sub.feed && sub.behind_since.is_some_and(|since| now.duration_since(since) > slow_timeout) {
                cut.push((*id, true));
            }
            if let Some(record) = &sub.record {
                out_total += record.bytes_out.load(Ordering::Relaxed);
            }
        }
        for (id, slow) in cut {
            if let Some(sub) = self.subscribers.remove(&id) {
                if slow {
                    self.slow_disconnects += 1;
                    tracing::warn!(stream = %self.key, client = id, dropped_frames = sub.dropped, timeout_ms = slow_timeout.as_millis() as u64, "player too slow for too long; disconnecting it");
                }
            }
        }
        // Bytes sent: count what current subscribers report, never going backwards when one
        // leaves.
        out_total += crate::delivery::DeliveryCounters::get(&self.delivery.sent);
        self.bytes_out = self.bytes_out.max(out_total);
        self.samples.push_back((self.bytes_in, self.bytes_out, self.video_frames));
        while self.samples.len() > 31 {
            self.samples.pop_front();
        }
        if self.samples.len() >= 2 {
            let n = self.samples.len();
            let (_, _, v_prev) = self.samples[n.saturating_sub(6).min(n - 2)];
            let span = (n - 1 - n.saturating_sub(6).min(n - 2)) as f64;
            self.fps = (self.video_frames - v_prev) as f64 / span;
        }
        if self.publisher.is_none() && self.grace.is_none() && self.subscribers.is_empty() && now.duration_since(self.idle_since) > self.settings.publisher_grace {
            ctx.stop();
        }
    }

    /// Players of the stream: its own subscribers that are players (not HLS, DASH, DVR, nor
    /// the delivery engine's feeds) and the players the feeds serve.
    pub(super) fn player_count(&self) -> usize {
        let own = self
            .subscribers
            .iter()
            .filter(|(id, sub)| !sub.feed && Some(**id) != self.hls_subscriber && Some(**id) != self.package_subscriber && Some(**id) != self.dash_subscriber && Some(**id) != self.dvr_subscriber)
            .count();
        own + crate::delivery::DeliveryCounters::get(&self.delivery.players) as usize
    }

    pub(super) fn info(&self) -> StreamInfo {
        let rate = |pick: fn(&(u64, u64, u64)) -> u64| -> u64 {
            match (self.samples.front(), self.samples.back()) {
                (Some(first), Some(last)) if self.samples.len() > 1 => {
                    (pick(last) - pick(first)) * 8 / 1000 / (self.samples.len() as u64 - 1)
                }
                _ => 0,
            }
        };
        StreamInfo {
            app: self.key.app.clone(),
            stream: self.key.stream.clone(),
            vhost: self.key.vhost.clone(),
            publisher: self.publisher.as_ref().map(|p| p.client),
            publisher_protocol: self.publisher.as_ref().map(|p| p.protocol),
            live_ms: self.publisher.as_ref().map(|p| p.since.elapsed().as_millis() as u64).unwrap_or(0),
            subscribers: self.player_count(),
            video: self.video.clone(),
            audio: self.audio.clone(),
            fps: (self.fps * 100.0).round() / 100.0,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            frames_in: self.frames_in,
            frames_dropped: self.frames_dropped + crate::delivery::DeliveryCounters::get(&self.delivery.dropped),
            slow_disconnects: self.slow_disconnects + crate::delivery::DeliveryCounters::get(&self.delivery.slow_disconnects),
            publish_dropped: self.publish_drops.frames.load(Ordering::Relaxed),
            output_frames_lost: self.output_frames_lost,
            restarts: self.restarts,
            kbps_in_30s: rate(|s| s.0),
            kbps_out_30s: rate(|s| s.1),
            in_grace: self.publisher.is_none() && self.ever_published,
        }
    }
}

pub(crate) fn describe_video(frame: &MediaFrame) -> VideoInfo {
    let mut info = VideoInfo { codec: frame.codec.name().to_string(), ..Default::default() };
    if frame.codec == Codec::H264 {
        if let Ok(sps) = AvcConfig::parse(&frame.payload).and_then(|c| c.sps_info()) {
            info.profile = match sps.profile_idc {
                66 => "Baseline",
                77 => "Main",
                88 => "Extended",
                100 => "High",
                110 => "High 10",
                122 => "High 4:2:2",
                244 => "High 4:4:4",
                _ => "Other",
            }
            .to_string();
            info.level = format!("{}.{}", sps.level_idc / 10, sps.level_idc % 10);
            info.width = sps.width;
            info.height = sps.height;
        }
    }
    if frame.codec == Codec::Av1 {
        if let Ok(config) = estuary_protocols::codec::av1::Av1Config::parse(&frame.payload) {
            info.profile = config.profile_name().to_string();
            info.level = config.level_name();
            info.width = config.width;
            info.height = config.height;
        }
    }
    if frame.codec == Codec::H265 {
        if let Some(sps) = estuary_protocols::codec::hevc::HevcSps::from_config(&frame.payload) {
            info.profile = sps.profile_name().to_string();
            info.level = sps.level_name();
            info.width = sps.width;
            info.height = sps.height;
        }
    }
    info
}

/// What the API and the recordings index say about an audio sequence header.
pub(crate) fn describe_audio(frame: &MediaFrame) -> AudioInfo {
    let mut info = AudioInfo { codec: frame.codec.name().to_string(), ..Default::default() };
    if frame.codec == Codec::Aac {
        if let Ok(config) = AacConfig::parse(&frame.payload) {
            info.sample_rate = config.sample_rate;
            info.channels = config.channel_config;
            info.profile = match config.object_type {
                1 => "Main",
                2 => "LC",
                5 => "HE",
                29 => "HEv2",
                _ => "Other",
            }
            .to_string();
        }
    }
    info
}
