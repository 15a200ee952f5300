//! WHIP publish: an SDP offer in, an SDP answer out, then a session task that turns the
//! publisher's RTP into frames for the stream actor.
//!
//! Video is H.264 (packetization-mode 1) when the offer lists it, else AV1 (a publisher that
//! offers only AV1, e.g. a browser told so with `setCodecPreferences`), else H.265: H.264 is
//! taken first because every output carries it. Video goes through a reorder buffer (80 ms for a missing
//! packet's retransmission) and [`H264Depacketizer`] into access units (RFC 6184, or RFC 7798
//! for H.265), with SPS/PPS (VPS/SPS/PPS) turned into a sequence header when they change, or [`Av1Depacketizer`] into temporal units, with
//! the in-band sequence header turned into an `av1C` record when it changes; on a 90 kHz clock unwrapped from
//! the 32-bit RTP timestamps (a jump backwards or of more than 5 s, as when a sender loops
//! a file, continues one frame interval on). Loss spoils the current picture; frames are then dropped until
//! the next IDR and a PLI asks the publisher for one (also every 3 s until the first IDR).
//! NACKs and receiver reports come from the `rtc` interceptors. Opus audio is transcoded to
//! AAC-LC 48 kHz stereo ([`OpusToAac`]) for the FLV, TS and MP4 outputs.
//!
//! A/V sync: each track's first packet is placed at its arrival time since the session
//! started, and later packets follow their RTP timestamps (one clock per track). This keeps
//! the tracks together within the network's jitter; RTCP sender reports are not used yet.

use super::peer::{self, Peer, SessionAnswer, SignalError, Step, VideoCodec};
use super::{random_token, Registration};
use crate::node::clients::Role as ClientRole;
use crate::messages::PublishRefused;
use crate::node::NodeContext;
use crate::registry::StreamRegistry;
use crate::stream::PublisherLink;
use actix::Addr;
use bytes::Bytes;
use estuary_protocols::codec::avc::{self, AvcConfig};
use estuary_protocols::media::{Codec, MediaFrame, Timebase, TrackKind};
use estuary_protocols::rtp::RtpPacket;
use estuary_protocols::codec::{av1, hevc};
use estuary_protocols::rtp::av1::{Av1Depacketizer, TemporalUnit};
use estuary_protocols::rtp::h264::{AccessUnit, H264Depacketizer};
use estuary_protocols::rtp::reorder::ReorderBuffer;
use estuary_storage::StreamKey;
use estuary_transcode::opus::OpusToAac;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::sansio::Protocol;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Accepts a WHIP offer for `key`: admission, the answer, and a session task publishing
/// what arrives.
pub async fn publish(node: NodeContext, registry: Addr<StreamRegistry>, key: StreamKey, params: Vec<(String, String)>, offer: String, peer_ip: Option<std::net::IpAddr>) -> Result<SessionAnswer, SignalError> {
    let (guard, port, settings) = peer::admit(&node, &key, &params, &offer, peer_ip, crate::access::auth::Action::Publish).await?;

    let (ufrag, password, id) = (random_token(8), random_token(24), random_token(16));
    // H.264 when offered (every output carries it), else AV1, else H.265.
    let codec = [VideoCodec::H264, VideoCodec::Av1, VideoCodec::H265].into_iter().find(|c| c.offered_in(&offer)).unwrap_or(VideoCodec::H264);
    // Any profile the publisher offers first is taken: the stream's headers say which.
    let profile = [VideoCodec::Av1, VideoCodec::H265].contains(&codec).then(|| (0..4).find(|p| codec.offered_with_profile(&offer, *p))).flatten().unwrap_or(0);
    let mut pc = peer::peer_connection(&ufrag, &password, &[(codec, profile)], peer::Side::Receives).map_err(SignalError::Unavailable)?;
    let answer = peer::answer(&mut pc, offer, &settings, port, &[codec])?;
    let stream = crate::attach::claim_publish(registry, key.clone(), guard.id(), "webrtc").await.map_err(|refused| match refused {
        PublishRefused::AlreadyPublishing { .. } => SignalError::Conflict(refused.to_string()),
        PublishRefused::Unavailable(_) => SignalError::Unavailable(refused.to_string()),
        PublishRefused::BadName(_) => SignalError::BadOffer(refused.to_string()),
    })?;
    let peer = match Registration::new(&node.rtc, &ufrag, &id).and_then(|r| Peer::new(pc, r, guard.id(), &settings, &answer).ok_or_else(|| "WebRTC is disabled".to_string())) {
        Ok(p) => p,
        Err(e) => {
            drop(stream);
            return Err(SignalError::Unavailable(e));
        }
    };
    guard.record().set_role(ClientRole::Publish, key.to_string());
    tracing::info!(client = guard.id(), session = %id, stream = %key, video = %codec.sdp_name(), "WHIP publish accepted");
    let worker = node.topology.workers.next();
    let counted = node.census.enter("whip_session");
    let session = Session { node, peer, stream, key, pli_interval: settings.pli_interval, video: VideoTrack { codec, ..VideoTrack::default() }, audio: AudioTrack::new(settings.aac_bitrate), opus_packets: 0, player_keyframe_requests: 0 };
    worker.spawn(async move {
        let (_guard, _counted) = (guard, counted);
        session.run().await;
    });
    Ok(SessionAnswer { sdp: answer.sdp, id })
}

/// Steps of a track's clock from RTP timestamps: a step backwards or of more than 5 s
/// becomes the last normal step (or `nominal`).
#[derive(Default)]
struct RtpClock {
    last_rtp: Option<u32>,
    last_step: Option<i64>,
    time: i64,
}

impl RtpClock {
    /// The time of a packet with `timestamp`, in the track's clock rate; the first packet is
    /// placed at `arrival`.
    fn time(&mut self, timestamp: u32, arrival: i64, rate: i64, nominal: i64) -> i64 {
        match self.last_rtp {
            None => self.time = arrival,
            Some(last) => {
                let mut step = timestamp.wrapping_sub(last) as i32 as i64;
                if step < 0 || step > 5 * rate {
                    step = self.last_step.unwrap_or(nominal);
                } else if step > 0 {
                    self.last_step = Some(step);
                }
                self.time += step;
            }
        }
        self.last_rtp = Some(timestamp);
        self.time
    }
}

/// Opus in, AAC frames out.
struct AudioTrack {
    bitrate: u32,
    clock: RtpClock,
    transcoder: Option<OpusToAac>,
    config_sent: bool,
    frames: u64,
    failed: bool,
}

impl AudioTrack {
    fn new(bitrate: u32) -> AudioTrack {
        AudioTrack { bitrate, clock: RtpClock::default(), transcoder: None, config_sent: false, frames: 0, failed: false }
    }

    /// AAC frames (90 kHz times) for one Opus packet; `arrival` in 48 kHz ticks.
    fn frames(&mut self, timestamp: u32, payload: &[u8], arrival: i64) -> Vec<MediaFrame> {
        if self.failed {
            return Vec::new();
        }
        if self.transcoder.is_none() {
            match OpusToAac::new(self.bitrate) {
                Ok(t) => self.transcoder = Some(t),
                Err(e) => {
                    tracing::error!(error = %e, "Opus to AAC transcoder unavailable; audio dropped");
                    self.failed = true;
                    return Vec::new();
                }
            }
        }
        let time = self.clock.time(timestamp, arrival, 48_000, 960);
        let Some(transcoder) = self.transcoder.as_mut() else { return Vec::new() };
        let mut out = Vec::new();
        let frames = match transcoder.push(time, payload) {
            Ok(frames) => frames,
            Err(e) => {
                tracing::warn!(error = %e, "Opus to AAC failed for a packet");
                return out;
            }
        };
        for (t48, aac) in frames {
            let t = t48 * 15 / 8;
            if !self.config_sent {
                self.config_sent = true;
                out.push(MediaFrame { track: TrackKind::Audio, codec: Codec::Aac, dts: t, pts: t, timebase: Timebase::MPEG, keyframe: true, config: true, payload: Bytes::copy_from_slice(transcoder.config()) });
            }
            self.frames += 1;
            out.push(MediaFrame { track: TrackKind::Audio, codec: Codec::Aac, dts: t, pts: t, timebase: Timebase::MPEG, keyframe: true, config: false, payload: Bytes::from(aac) });
        }
        out
    }
}

/// How long a missing video packet is waited for (a NACK retransmission on a LAN or a
/// moderate internet path arrives within this) before it counts as lost.
const REORDER_WAIT: Duration = Duration::from_millis(80);

/// Reassembles the negotiated video codec's frames.
enum Depacketizer {
    H264(H264Depacketizer),
    Av1(Av1Depacketizer),
}

/// A frame out of RTP.
enum Unit {
    H264(AccessUnit),
    Av1(TemporalUnit),
}

impl Depacketizer {
    fn push(&mut self, packet: &RtpPacket) -> Option<Unit> {
        match self {
            Depacketizer::H264(d) => d.push(packet).map(Unit::H264),
            Depacketizer::Av1(d) => d.push(packet).map(Unit::Av1),
        }
    }

    fn wants_keyframe(&mut self) -> bool {
        match self {
            Depacketizer::H264(d) => d.wants_keyframe(),
            Depacketizer::Av1(d) => d.wants_keyframe(),
        }
    }
}

struct VideoTrack {
    codec: VideoCodec,
    reorder: ReorderBuffer,
    depacketizer: Option<Depacketizer>,
    /// AV1: the sequence header OBU the last record was made from.
    av1_header: Option<Bytes>,
    ssrc: u32,
    receiver: Option<RTCRtpReceiverId>,
    /// H.265 only.
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    config_sent: bool,
    clock: RtpClock,
    /// A WHEP player asked for a keyframe.
    player_request: bool,
    /// A picture was lost here and the PLI for it waits for the next round.
    loss_request: bool,
    last_pli: Option<Instant>,
    /// When the last keyframe arrived.
    last_keyframe: Option<Instant>,
    frames: u64,
}

impl Default for VideoTrack {
    fn default() -> Self {
        VideoTrack {
            codec: VideoCodec::H264,
            reorder: ReorderBuffer::new(REORDER_WAIT, 512),
            depacketizer: None,
            av1_header: None,
            ssrc: 0,
            receiver: None,
            vps: None,
            sps: None,
            pps: None,
            config_sent: false,
            clock: RtpClock::default(),
            player_request: false,
            loss_request: false,
            last_pli: None,
            last_keyframe: None,
            frames: 0,
        }
    }
}

impl VideoTrack {
    fn depacketizer(&mut self) -> &mut Depacketizer {
        let codec = self.codec;
        self.depacketizer.get_or_insert_with(|| match codec {
            VideoCodec::Av1 => Depacketizer::Av1(Av1Depacketizer::new()),
            VideoCodec::H265 => Depacketizer::H264(H264Depacketizer::new_h265()),
            VideoCodec::H264 => Depacketizer::H264(H264Depacketizer::new()),
        })
    }

    /// Frames for one AV1 temporal unit: an `av1C` sequence header first when the in-band
    /// sequence header changed (a unit before any is held back: no decoder could use it).
    fn av1_frames(&mut self, unit: TemporalUnit, arrival: i64) -> Vec<MediaFrame> {
        let time = self.clock.time(unit.timestamp, arrival, 90_000, 3000);
        let mut out = Vec::new();
        if let Some(header) = unit.sequence_header.filter(|h| self.av1_header.as_ref() != Some(h)) {
            match av1::record_from_sequence_header(&header) {
                Ok(record) => {
                    out.push(MediaFrame { track: TrackKind::Video, codec: Codec::Av1, dts: time, pts: time, timebase: Timebase::MPEG, keyframe: true, config: true, payload: Bytes::from(record) });
                    self.av1_header = Some(header);
                    self.config_sent = true;
                }
                Err(e) => tracing::warn!(error = %e, "unusable AV1 sequence header from a WHIP publisher"),
            }
        }
        if self.config_sent {
            self.frames += 1;
            out.push(MediaFrame { track: TrackKind::Video, codec: Codec::Av1, dts: time, pts: time, timebase: Timebase::MPEG, keyframe: unit.keyframe, config: false, payload: unit.data });
        }
        out
    }

    /// Frames for one H.264 or H.265 access unit: a sequence header first when the parameter
    /// sets changed (SPS/PPS, or VPS/SPS/PPS), media before any parameter set held back (no
    /// decoder could use it). `arrival` (90 kHz, since the session started) places the first
    /// unit.
    fn frames(&mut self, unit: AccessUnit, arrival: i64) -> Vec<MediaFrame> {
        // RTP timestamps may jump (a sender looping a file restarts them, a camera reboots).
        let time = self.clock.time(unit.timestamp, arrival, 90_000, 3000);
        let h265 = self.codec == VideoCodec::H265;
        let mut out = Vec::new();
        let mut media = Vec::new();
        let mut changed = false;
        for nal in unit.nals {
            let slot = match (h265, if h265 { hevc::nal_type(nal[0]) } else { avc::nal_type(nal[0]) }) {
                (false, 7) | (true, hevc::NAL_SPS) => Some(&mut self.sps),
                (false, 8) | (true, hevc::NAL_PPS) => Some(&mut self.pps),
                (true, hevc::NAL_VPS) => Some(&mut self.vps),
                (false, 9) | (true, hevc::NAL_AUD) => continue,
                _ => None,
            };
            match slot {
                Some(slot) => {
                    changed |= slot.as_ref() != Some(&nal);
                    *slot = Some(nal);
                }
                None => media.push(nal),
            }
        }
        let codec = if h265 { Codec::H265 } else { Codec::H264 };
        if changed || !self.config_sent {
            let config = match (h265, &self.vps, &self.sps, &self.pps) {
                (false, _, Some(sps), Some(pps)) => AvcConfig::from_parameter_sets(sps, pps).ok().map(|c| c.to_bytes()),
                (true, Some(vps), Some(sps), Some(pps)) => hevc::config_from_parameter_sets(vps, sps, pps),
                _ => None,
            };
            if let Some(config) = config {
                out.push(MediaFrame { track: TrackKind::Video, codec, dts: time, pts: time, timebase: Timebase::MPEG, keyframe: true, config: true, payload: config });
                self.config_sent = true;
            }
        }
        if self.config_sent && !media.is_empty() {
            let payload = avc::to_length_prefixed(media.iter().map(|nal| nal.as_ref()));
            self.frames += 1;
            out.push(MediaFrame { track: TrackKind::Video, codec, dts: time, pts: time, timebase: Timebase::MPEG, keyframe: unit.keyframe, config: false, payload });
        }
        out
    }
}

struct Session {
    node: NodeContext,
    peer: Peer,
    stream: PublisherLink,
    key: StreamKey,
    video: VideoTrack,
    audio: AudioTrack,
    opus_packets: u64,
    player_keyframe_requests: u64,
    /// See [`super::RtcSettings::pli_interval`].
    pli_interval: Duration,
}

impl Session {
    async fn run(mut self) {
        let mut keyframes = self.node.rtc.take_keyframe_requests(&self.key.to_string());
        let reason = loop {
            if let Err(reason) = self.drain().await {
                break reason;
            }
            match self.peer.wait(None, Some(&mut keyframes)).await {
                Step::End(reason) => break reason,
                Step::KeyframeRequest => {
                    self.video.player_request = true;
                    self.player_keyframe_requests += 1;
                    tracing::debug!(client = self.peer.client, stream = %self.key, "keyframe requested by a player");
                }
                _ => {}
            }
        };
        tracing::info!(client = self.peer.client, stream = %self.key, video_frames = self.video.frames, opus_packets = self.opus_packets, aac_frames = self.audio.frames, player_keyframe_requests = self.player_keyframe_requests, %reason, "WHIP publish ended");
        self.peer.close();
    }

    /// Carries out everything the peer connection has ready and publishes what arrived.
    async fn drain(&mut self) -> Result<(), String> {
        self.peer.flush("WHIP publisher").await?;
        while let Some(TaggedRTCMessage { message, .. }) = self.peer.pc.poll_read() {
            let RTCMessage::RtpPacket(track_id, packet) = message else { continue };
            let Some(receiver_id) = self.peer.tracks.get(&track_id.to_string()).copied() else { continue };
            match self.peer.pc.rtp_receiver(receiver_id).map(|r| r.track().kind()) {
                Some(RtpCodecKind::Video) => {
                    let rtp = RtpPacket { payload_type: packet.header.payload_type, marker: packet.header.marker, sequence: packet.header.sequence_number, timestamp: packet.header.timestamp, ssrc: packet.header.ssrc, payload: packet.payload.clone() };
                    self.video.ssrc = rtp.ssrc;
                    self.video.receiver = Some(receiver_id);
                    let ready = self.video.reorder.push(self.peer.elapsed(), rtp);
                    self.depacketize(ready).await?;
                }
                Some(RtpCodecKind::Audio) => {
                    self.opus_packets += 1;
                    let arrival = self.peer.arrival(48_000);
                    for frame in self.audio.frames(packet.header.timestamp, &packet.payload, arrival) {
                        self.publish(frame).await?;
                    }
                }
                _ => {}
            }
        }
        let overdue = self.video.reorder.poll(self.peer.elapsed());
        self.depacketize(overdue).await?;
        self.peer.extra_deadline = self.video.reorder.deadline().map(|d| self.peer.at(d));
        self.request_keyframe();
        // The PLI, if any, goes out now.
        self.peer.flush("WHIP publisher").await
    }

    /// Video packets in sequence order into access units, and those into frames.
    async fn depacketize(&mut self, packets: Vec<RtpPacket>) -> Result<(), String> {
        for rtp in packets {
            let unit = self.video.depacketizer().push(&rtp);
            if let Some(unit) = unit {
                let arrival = self.peer.arrival(90_000);
                let frames = match unit {
                    Unit::H264(unit) => self.video.frames(unit, arrival),
                    Unit::Av1(unit) => self.video.av1_frames(unit, arrival),
                };
                for frame in frames {
                    if frame.keyframe && !frame.config {
                        self.video.last_keyframe = Some(Instant::now());
                    }
                    self.publish(frame).await?;
                }
            }
        }
        Ok(())
    }

    /// PLI when the depacketizer lost a picture or a player asked, every 3 s until the first
    /// IDR, and when the last keyframe is older than the PLI interval (at most once per
    /// interval: the answer takes a round trip). At most one PLI per 300 ms, and when only
    /// players asked (every new WHEP player, every PLI or FIR a player sends), one per second:
    /// a keyframe costs every player of the stream several times a frame's bitrate, and many
    /// players losing packets would otherwise keep the publisher sending little else.
    fn request_keyframe(&mut self) {
        let Some(receiver) = self.video.receiver else { return };
        let lost = self.video.depacketizer.as_mut().is_some_and(|d| d.wants_keyframe()) | std::mem::take(&mut self.video.loss_request);
        let asked = std::mem::take(&mut self.video.player_request);
        let wanted = lost | asked;
        let waiting = self.video.frames == 0 && self.video.last_pli.is_none_or(|t| t.elapsed() > Duration::from_secs(3));
        let interval = self.pli_interval;
        let periodic = !interval.is_zero() && self.video.last_keyframe.is_some_and(|t| t.elapsed() >= interval) && self.video.last_pli.is_none_or(|t| t.elapsed() >= interval);
        if !(wanted || waiting || periodic) {
            return;
        }
        let gap = if lost || waiting || periodic { Duration::from_millis(300) } else { Duration::from_secs(1) };
        if self.video.last_pli.is_some_and(|t| t.elapsed() < gap) {
            // Too soon after the last one: keep the requests for the next round.
            self.video.loss_request |= lost;
            self.video.player_request |= asked;
            return;
        }
        self.video.last_pli = Some(Instant::now());
        let ssrc = self.video.ssrc;
        if let Some(mut receiver) = self.peer.pc.rtp_receiver(receiver) {
            if let Err(e) = receiver.write_rtcp(Instant::now(), vec![Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc: ssrc })]) {
                tracing::debug!(client = self.peer.client, error = %e, "PLI not sent");
            }
        }
    }

    /// Hands a frame to the stream. RTP arrives over UDP and cannot be pushed back: a frame
    /// that finds the stream's queue full is dropped and counted (the stream's
    /// `publish_dropped`, the client's `frames_dropped`), video until the next keyframe, which
    /// a lost video frame asks the sender for (PLI). (Takes `&mut self` so the future stays
    /// `Send`: the peer connection is not `Sync`.)
    async fn publish(&mut self, frame: MediaFrame) -> Result<(), String> {
        let video = frame.track == TrackKind::Video;
        let queued = self.stream.push_or_drop(Arc::new(frame)).map_err(|gone| gone.to_string())?;
        if !queued && video {
            self.video.player_request = true;
            self.request_keyframe();
        }
        Ok(())
    }

}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 320x240 High-profile SPS and its PPS, from an x264 stream.
    const SPS: [u8; 25] = [0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60];
    const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn unit(timestamp: u32, nals: &[&[u8]], keyframe: bool) -> AccessUnit {
        AccessUnit { timestamp, nals: nals.iter().map(|n| Bytes::copy_from_slice(n)).collect(), keyframe }
    }

    #[test]
    fn first_packets_are_placed_at_their_arrival() {
        let mut clock = RtpClock::default();
        assert_eq!(clock.time(1_000_000, 4_500, 90_000, 3000), 4_500);
        assert_eq!(clock.time(1_003_000, 999_999, 90_000, 3000), 7_500, "later packets follow RTP time, not arrival");
    }

    #[test]
    fn parameter_sets_become_a_sequence_header_and_time_never_steps_back() {
        let (sps, pps) = (SPS, PPS);
        let mut track = VideoTrack::default();
        // Media before any parameter set is held back (no decoder could use it).
        assert!(track.frames(unit(1000, &[&[0x41, 1]], false), 0).is_empty());
        let first = track.frames(unit(4000, &[&sps, &pps, &[0x65, 1, 2]], true), 0);
        assert_eq!(first.len(), 2);
        assert!(first[0].config && first[1].keyframe && !first[1].config);
        assert_eq!(first[1].payload[..], [0, 0, 0, 3, 0x65, 1, 2], "length-prefixed, parameter sets left out");
        let t0 = first[1].dts;
        // Normal steps, then a restart of the sender's clock (backwards), then a wrap.
        let times: Vec<i64> = [7000u32, 10_000, 500, 3500, u32::MAX - 1000, 1999]
            .into_iter()
            .map(|ts| track.frames(unit(ts, &[&[0x41, 9]], false), 0)[0].dts - t0)
            .collect();
        assert_eq!(times, vec![3000, 6000, 9000, 12_000, 15_000, 18_000]);
        // The same parameter sets again make no new header; new ones do.
        assert_eq!(track.frames(unit(5000, &[&sps, &pps, &[0x65, 3]], true), 0).len(), 1);
        let other_pps = [0x68, 0xce, 0x3c, 0x80];
        let changed = track.frames(unit(8000, &[&sps, &other_pps, &[0x65, 4]], true), 0);
        assert_eq!(changed.iter().filter(|f| f.config).count(), 1, "a new PPS makes a new sequence header");
    }

    #[test]
    fn h265_parameter_sets_become_an_hvcc_sequence_header() {
        let vps = [0x40, 0x01, 0x0c, 0x01, 0xff, 0xff];
        // NAL header, vps id / sub-layers / nesting, then the 12-byte profile_tier_level: Main,
        // level 93 (3.1).
        let sps = [0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5d, 0xa0];
        let pps = [0x44, 0x01, 0xc1, 0x72];
        let mut track = VideoTrack { codec: VideoCodec::H265, ..VideoTrack::default() };
        assert!(track.frames(unit(0, &[&[0x02, 0x01, 0xaa]], false), 0).is_empty(), "no picture before the parameter sets");
        let first = track.frames(unit(3000, &[&[0x46, 0x01, 0x50], &vps, &sps, &pps, &[0x26, 0x01, 0xab]], true), 0);
        assert_eq!(first.len(), 2, "{first:?}");
        assert!(first.iter().all(|f| f.codec == Codec::H265));
        assert!(first[0].config && first[1].keyframe && !first[1].config);
        let sets = estuary_protocols::codec::hevc::config_parameter_sets(&first[0].payload).expect("an hvcC record");
        assert_eq!(sets.1.iter().map(|n| n.to_vec()).collect::<Vec<_>>(), vec![vps.to_vec(), sps.to_vec(), pps.to_vec()]);
        assert_eq!(first[1].payload[..], [0, 0, 0, 3, 0x26, 0x01, 0xab], "length-prefixed, delimiter and parameter sets left out");
    }
}
