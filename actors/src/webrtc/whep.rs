//! WHEP play: an SDP offer in, an answer with our video and audio tracks out, then a session
//! task subscribed to the stream like any player, sending its frames as RTP.
//!
//! - Video passes through in the stream's codec when the offer lists it: H.264 as single-NAL
//!   or FU-A packets of at most 1200 bytes (`protocols::rtp::h264::packetize`), SPS and PPS in
//!   front of every keyframe; AV1 as OBU elements (`protocols::rtp::av1`), the sequence
//!   header in front of every keyframe that lacks one; H.265 as single NAL units and FUs
//!   (`protocols::rtp::h265`, RFC 7798), VPS, SPS and PPS in front of every keyframe. The RTP
//!   timestamp comes from the presentation time (90 kHz). An AV1 or H.265 stream whose
//!   player's offer lacks its codec plays from the stream's H.264 fallback rendition. A frame is cut
//!   into payloads once per stream and worker thread ([`super::shared`]); each player adds its
//!   own RTP header and SRTP. A stream with
//!   B-frames is passed through as it is (packets in decode order); WebRTC decoders in
//!   browsers expect none, so such streams stutter there, and a warning is logged once.
//! - Audio: AAC is transcoded to Opus 48 kHz stereo once per stream and worker thread
//!   ([`super::shared`]); Opus from enhanced RTMP passes through.
//! - Frames that are waiting when the session wakes are all handed to the peer connection
//!   before its datagrams go out, in one `sendmmsg` ([`super::send`]).
//! - The subscription starts with headers and the cached GOP. Frames that arrive before
//!   ICE and DTLS connect wait in a bounded queue; if it overflows, the player restarts at
//!   the next keyframe.
//! - NACKs are answered from the player's record of its last 256 video packets
//!   ([`super::resend`]); RTCP reports come from the `rtc` interceptors.
//!   Keyframe requests (PLI, FIR) from players, and every new player, ask a WHIP publisher
//!   of the stream for a keyframe; other publishers' players wait for the next keyframe of
//!   the GOP (they start from the cached one).

use super::peer::{self, Peer, SessionAnswer, SignalError, Step};
use super::resend::{self, History, Sent};
use super::{random_token, Registration};
use crate::node::clients::Role as ClientRole;
use crate::node::NodeContext;
use crate::registry::StreamRegistry;
use actix::Addr;
use bytes::Bytes;
use estuary_protocols::codec::avc::{self, AvcConfig};
use estuary_protocols::media::{Codec, MediaFrame, Timebase, TrackKind};
use estuary_protocols::codec::{av1, hevc};
use estuary_protocols::rtp::{self as rtp_format, h264, h265};
use super::peer::VideoCodec;
use estuary_storage::StreamKey;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Largest RTP payload we send.
const MTU: usize = 1200;
/// Frames held while ICE/DTLS connects (the cached GOP and what follows).
const PENDING_FRAMES: usize = 2000;
const RTP_48K: Timebase = Timebase { num: 1, den: 48_000 };

fn track(kind: RtpCodecKind, ssrc: u32, codec: rtc::rtp_transceiver::rtp_sender::RTCRtpCodec) -> MediaStreamTrack {
    let name = if kind == RtpCodecKind::Video { "video" } else { "audio" };
    MediaStreamTrack::new(
        "estuary".to_string(),
        format!("estuary-{name}"),
        format!("estuary {name}"),
        kind,
        vec![RTCRtpEncodingParameters { rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() }, codec, ..Default::default() }],
    )
}

/// Accepts a WHEP offer for `key`: admission, subscription, the answer, and a session task
/// sending the stream.
pub async fn play(node: NodeContext, registry: Addr<StreamRegistry>, key: StreamKey, params: Vec<(String, String)>, offer: String, peer_ip: Option<std::net::IpAddr>) -> Result<SessionAnswer, SignalError> {
    let (guard, port, settings) = peer::admit(&node, &key, &params, &offer, peer_ip, crate::access::auth::Action::Play).await?;
    if crate::cluster::pull::ensure(&node, &registry, &key).await {
        crate::cluster::pull::wait_live(&node, &registry, &key, crate::cluster::pull::START_TIMEOUT).await;
    }
    // The stream's own codec when the offer lists it; otherwise an AV1 or H.265 stream is
    // played from its H.264 fallback rendition, started on the first such request and shared
    // (the play rules were checked for the stream asked for).
    // (A profile the offer does not list counts as a codec it lacks: H.265 Main 10 to a
    // browser offering Main only would not decode.)
    let info = crate::transcode::video_info(&registry, &key).await;
    let (key, video_codec, profile) = match info.as_ref().map(|v| v.codec.as_str()) {
        Some(codec @ ("H265" | "AV1")) => {
            let own = if codec == "AV1" { VideoCodec::Av1 } else { VideoCodec::H265 };
            let profile = own.profile_number(info.as_ref().map(|v| v.profile.as_str()).unwrap_or(""));
            if own.offered_with_profile(&offer, profile) {
                (key, own, profile)
            } else {
                let fallback = crate::transcode::fallback(&node, &registry, &key).await.map_err(|e| SignalError::Unavailable(format!("{key} is {codec} (profile {profile}), which the offer does not list, and {e}")))?;
                tracing::info!(client = guard.id(), stream = %key, codec, profile, fallback = %fallback, "WHEP player's offer lacks the stream's codec or profile: it gets the H.264 fallback rendition");
                (fallback, VideoCodec::H264, 0)
            }
        }
        _ => (key, VideoCodec::H264, 0),
    };
    let subscription = crate::attach::subscribe(registry, key.clone(), guard.id(), true).await.map_err(|refused| SignalError::NotFound(refused.to_string()))?;

    let (ufrag, password, id) = (random_token(8), random_token(24), random_token(16));
    let mut pc = peer::peer_connection(&ufrag, &password, &[(video_codec, profile)], peer::Side::Sends).map_err(SignalError::Unavailable)?;
    let (video_ssrc, audio_ssrc) = (rand::random::<u32>(), rand::random::<u32>());
    let sent = video_codec.parameters(profile).remove(0).rtp_codec;
    let video = if subscription.has_video { Some(pc.add_track(track(RtpCodecKind::Video, video_ssrc, sent)).map_err(|e| SignalError::Unavailable(format!("video track: {e}")))?) } else { None };
    let audio = if subscription.has_audio { Some(pc.add_track(track(RtpCodecKind::Audio, audio_ssrc, peer::opus().rtp_codec)).map_err(|e| SignalError::Unavailable(format!("audio track: {e}")))?) } else { None };
    let answer = peer::answer(&mut pc, offer, &settings, port, &[video_codec])?;
    let registration = Registration::new(&node.rtc, &ufrag, &id).map_err(SignalError::Unavailable)?;
    let peer = Peer::new(pc, registration, guard.id(), &settings, &answer).ok_or_else(|| SignalError::Unavailable("WebRTC is disabled".into()))?;
    guard.record().set_role(ClientRole::Play, key.to_string());
    tracing::info!(client = guard.id(), session = %id, stream = %key, video = %video_codec.sdp_name(), "WHEP play accepted");
    let worker = node.topology.workers.next_worker();
    let counted = node.census.enter("whep_session");
    let player = Player {
        node,
        locals: worker.locals.clone(),
        peer,
        stream: key.to_string(),
        key,
        video: Outgoing::new(video, video_ssrc, true),
        audio: Outgoing::new(audio, audio_ssrc, false),
        video_codec,
        avc: None,
        av1_header: None,
        hevc: None,
        aac_config: None,
        opus_bitrate: settings.opus_bitrate,
        pending: VecDeque::new(),
        waiting_for_keyframe: false,
        warned_b_frames: false,
        video_frames: 0,
        audio_packets: 0,
    };
    let rx = subscription.rx;
    worker.arbiter.spawn(async move {
        let (_guard, _counted) = (guard, counted);
        player.run(rx).await;
    });
    Ok(SessionAnswer { sdp: answer.sdp, id })
}

/// One outgoing RTP stream.
struct Outgoing {
    sender: Option<RTCRtpSenderId>,
    ssrc: u32,
    sequence: u16,
    /// Random start of the RTP clock (RFC 3550).
    offset: u32,
    /// The negotiated payload type, looked up at the first packet.
    payload_type: Option<u8>,
    /// The packets sent lately, for NACKs (video: the offer announces NACK for video only).
    history: Option<History>,
    /// Packets sent again for NACKs.
    resent: u64,
}

impl Outgoing {
    fn new(sender: Option<RTCRtpSenderId>, ssrc: u32, nack: bool) -> Outgoing {
        Outgoing { sender, ssrc, sequence: rand::random(), offset: rand::random(), payload_type: None, history: nack.then(History::new), resent: 0 }
    }
}

struct Player {
    node: NodeContext,
    /// The worker's shared transcoders.
    locals: std::sync::Arc<crate::node::workers::WorkerLocals>,
    peer: Peer,
    key: StreamKey,
    /// `key` as text: the name keyframe requests and the shared audio bridge go by.
    stream: String,
    video: Outgoing,
    audio: Outgoing,
    /// The video codec negotiated (the stream's).
    video_codec: VideoCodec,
    avc: Option<AvcConfig>,
    /// AV1: the sequence header OBU of the stream's `av1C`.
    av1_header: Option<Vec<u8>>,
    /// H.265: NAL length size and parameter sets of the stream's `hvcC`.
    hevc: Option<(u8, Vec<Bytes>)>,
    /// The stream's AudioSpecificConfig, once its AAC header arrived.
    aac_config: Option<Bytes>,
    opus_bitrate: u32,
    pending: VecDeque<Arc<MediaFrame>>,
    waiting_for_keyframe: bool,
    warned_b_frames: bool,
    video_frames: u64,
    audio_packets: u64,
}

impl Player {
    async fn run(mut self, mut rx: mpsc::Receiver<Arc<MediaFrame>>) {
        self.locals.whep.lock().unwrap_or_else(|e| e.into_inner()).join(&self.stream);
        // A WHIP publisher sends a fresh keyframe for a player that joins; with other
        // publishers the player starts from the cached GOP.
        if self.node.rtc.request_keyframe(&self.stream) {
            tracing::debug!(client = self.peer.client, stream = %self.key, "keyframe requested from the WHIP publisher for a new player");
        }
        let reason = loop {
            if let Err(reason) = self.peer.flush("WHEP player").await {
                break reason;
            }
            // RTCP from the player: reports go to the interceptors, NACKs are answered
            // here, keyframe requests go on to a WHIP publisher.
            let mut resent = false;
            while let Some(TaggedRTCMessage { message, .. }) = self.peer.pc.poll_read() {
                if let RTCMessage::RtcpPacket(_, packets) = message {
                    if packets.iter().any(|p| p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>()) {
                        self.node.rtc.request_keyframe(&self.stream);
                    }
                    for nack in packets.iter().filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>()) {
                        if nack.media_ssrc == self.video.ssrc {
                            resend_lost(&mut self.peer, &mut self.video, nack);
                            resent = true;
                        }
                    }
                }
            }
            if resent {
                continue;
            }
            if self.peer.connected && !self.pending.is_empty() {
                while let Some(frame) = self.pending.pop_front() {
                    self.send(&frame);
                }
                continue;
            }
            match self.peer.wait(Some(&mut rx), None).await {
                Step::Handled | Step::KeyframeRequest => {}
                Step::End(reason) => break reason,
                Step::Media(None) => break "the stream ended or the player fell too far behind".to_string(),
                Step::Media(Some(frame)) => {
                    // Everything already waiting goes into this wake's datagrams too.
                    let mut next = Some(frame);
                    let mut ended = false;
                    while let Some(frame) = next.take() {
                        if self.peer.connected {
                            self.send(&frame);
                        } else {
                            self.hold(frame);
                        }
                        match rx.try_recv() {
                            Ok(more) => next = Some(more),
                            Err(mpsc::error::TryRecvError::Empty) => {}
                            Err(mpsc::error::TryRecvError::Disconnected) => ended = true,
                        }
                    }
                    if ended {
                        let _ = self.peer.flush("WHEP player").await;
                        break "the stream ended or the player fell too far behind".to_string();
                    }
                }
            }
        };
        tracing::info!(client = self.peer.client, stream = %self.key, video_frames = self.video_frames, audio_packets = self.audio_packets, packets_resent = self.video.resent, datagrams_dropped = self.peer.dropped, %reason, "WHEP play ended");
        self.locals.whep.lock().unwrap_or_else(|e| e.into_inner()).leave(&self.stream);
        self.peer.close();
    }

    /// Keeps a frame until the connection is up.
    fn hold(&mut self, frame: Arc<MediaFrame>) {
        if self.pending.len() >= PENDING_FRAMES {
            self.pending.retain(|f| f.config);
            self.waiting_for_keyframe = true;
        }
        self.pending.push_back(frame);
    }

    fn send(&mut self, frame: &Arc<MediaFrame>) {
        match (frame.track, frame.config) {
            (TrackKind::Video, true) => match frame.codec {
                Codec::H264 => match AvcConfig::parse(&frame.payload) {
                    Ok(config) => self.avc = Some(config),
                    Err(e) => tracing::warn!(client = self.peer.client, error = %e, "unusable H.264 sequence header for WebRTC"),
                },
                Codec::Av1 => self.av1_header = av1::sequence_header_obu(&frame.payload),
                Codec::H265 => {
                    self.hevc = hevc::config_parameter_sets(&frame.payload);
                    if self.hevc.is_none() {
                        tracing::warn!(client = self.peer.client, "unusable H.265 sequence header for WebRTC");
                    }
                }
                _ => {}
            },
            (TrackKind::Video, false) => self.send_video(frame),
            (TrackKind::Audio, true) => {
                if frame.codec == Codec::Aac {
                    self.aac_config = Some(frame.payload.clone());
                }
            }
            (TrackKind::Audio, false) => self.send_audio(frame),
            (TrackKind::Data, _) => {}
        }
    }

    fn send_video(&mut self, frame: &Arc<MediaFrame>) {
        // A republish in another codec is not sent (the player negotiated this one).
        let expected = match self.video_codec {
            VideoCodec::H264 => Codec::H264,
            VideoCodec::H265 => Codec::H265,
            VideoCodec::Av1 => Codec::Av1,
        };
        if frame.codec != expected {
            return;
        }
        if self.video_codec == VideoCodec::H264 && self.avc.is_none() || self.video_codec == VideoCodec::H265 && self.hevc.is_none() {
            return;
        }
        if self.waiting_for_keyframe && !frame.keyframe {
            return;
        }
        if frame.pts != frame.dts && !self.warned_b_frames {
            self.warned_b_frames = true;
            tracing::warn!(client = self.peer.client, stream = %self.key, "stream has B-frames; WebRTC players may stutter (encode with -bf 0 for WebRTC)");
        }
        let (avc, av1_header, hevc) = (&self.avc, &self.av1_header, &self.hevc);
        let client = self.peer.client;
        let payloads = self.locals.whep.lock().unwrap_or_else(|e| e.into_inner()).video_payloads(&self.stream, frame, || match (avc, hevc) {
            (Some(config), _) if frame.codec == Codec::H264 => cut(config, frame),
            (_, Some((length_size, sets))) if frame.codec == Codec::H265 => cut_hevc(*length_size, sets, frame),
            _ => rtp_format::av1::packetize(&frame.payload, frame.keyframe, av1_header.as_deref(), MTU).unwrap_or_else(|e| {
                tracing::debug!(client, error = %e, "AV1 frame not sent");
                Vec::new()
            }),
        });
        if payloads.is_empty() {
            // Nothing to send (an AV1 unit that could not be cut): a player still waiting for
            // its first keyframe keeps waiting for the next one.
            return;
        }
        self.waiting_for_keyframe = false;
        let timestamp = (frame.timebase.rescale(frame.pts, Timebase::MPEG) as u32).wrapping_add(self.video.offset);
        let count = payloads.len();
        for (i, payload) in payloads.iter().enumerate() {
            write(&mut self.peer, &mut self.video, timestamp, i + 1 == count, payload.clone());
        }
        self.video_frames += 1;
    }

    fn send_audio(&mut self, frame: &Arc<MediaFrame>) {
        let time = frame.timebase.rescale(frame.pts, RTP_48K);
        let packets = match (frame.codec, &self.aac_config) {
            (Codec::Opus, _) => vec![(time, frame.payload.clone())],
            (Codec::Aac, Some(config)) => match self.locals.whep.lock().unwrap_or_else(|e| e.into_inner()).opus_for(&self.stream, config, self.opus_bitrate, frame, time) {
                Ok(packets) => packets,
                Err(e) => {
                    if self.audio_packets == 0 {
                        tracing::warn!(client = self.peer.client, error = %e, "AAC to Opus failed; audio not sent");
                    }
                    Vec::new()
                }
            },
            _ => Vec::new(),
        };
        for (time, payload) in packets {
            let timestamp = (time as u32).wrapping_add(self.audio.offset);
            write(&mut self.peer, &mut self.audio, timestamp, false, payload);
            self.audio_packets += 1;
        }
    }
}

/// A video frame's RTP payloads: its NAL units (parameter sets of the stream's header in front
/// of a keyframe, the frame's own parameter sets and delimiters left out) as single-NAL and
/// FU-A payloads.
fn cut(config: &AvcConfig, frame: &MediaFrame) -> Vec<Bytes> {
    let mut nals: Vec<&[u8]> = Vec::new();
    if frame.keyframe {
        nals.extend(config.sps.iter().map(|b| &b[..]));
        nals.extend(config.pps.iter().map(|b| &b[..]));
    }
    nals.extend(avc::length_prefixed_nals(&frame.payload, config.nal_length_size as usize).filter(|n| !n.is_empty() && !matches!(avc::nal_type(n[0]), 7..=9)));
    let unit = avc::to_length_prefixed(nals);
    h264::packetize(&unit, MTU)
}

/// An H.265 frame's RTP payloads: VPS, SPS and PPS of the stream's header in front of a
/// keyframe, the frame's own parameter sets and delimiters left out.
fn cut_hevc(length_size: u8, sets: &[Bytes], frame: &MediaFrame) -> Vec<Bytes> {
    let mut nals: Vec<&[u8]> = Vec::new();
    if frame.keyframe {
        nals.extend(sets.iter().map(|b| &b[..]));
    }
    nals.extend(avc::length_prefixed_nals(&frame.payload, length_size as usize).filter(|n| n.len() >= 2 && !matches!(hevc::nal_type(n[0]), hevc::NAL_VPS..=hevc::NAL_AUD)));
    h265::packetize(nals, MTU)
}

/// Sends the next RTP packet of `out` (at the next flush), remembering it for NACKs when
/// `out` keeps a history.
fn write(peer: &mut Peer, out: &mut Outgoing, timestamp: u32, marker: bool, payload: Bytes) {
    let Some(id) = out.sender else { return };
    if out.payload_type.is_none() {
        out.payload_type = peer.pc.rtp_sender(id).and_then(|mut sender| sender.get_parameters().rtp_parameters.codecs.first().map(|c| c.payload_type));
    }
    let Some(payload_type) = out.payload_type else { return };
    let sent = Sent { sequence: out.sequence, timestamp, marker, payload };
    out.sequence = out.sequence.wrapping_add(1);
    put(peer, id, out.ssrc, payload_type, &sent);
    if let Some(history) = out.history.as_mut() {
        history.keep(sent);
    }
}

/// Sends again, one at a time, the packets `nack` names that `out` still remembers (as they
/// were: same sequence number, timestamp and payload; the player's SRTP takes a packet it
/// never received), each at most [`resend::MAX_RESENDS`] times. Those it no longer
/// remembers are left to the next keyframe.
fn resend_lost(peer: &mut Peer, out: &mut Outgoing, nack: &TransportLayerNack) {
    let (Some(id), Some(payload_type), Some(history)) = (out.sender, out.payload_type, out.history.as_mut()) else { return };
    let now = Instant::now();
    for sequence in resend::lost(nack) {
        let Some(sent) = history.resend(sequence, now) else { continue };
        put(peer, id, out.ssrc, payload_type, sent);
        out.resent += 1;
    }
}

/// Hands one RTP packet to the peer connection's sender `id` and takes what it wrote (sent
/// at the next flush).
fn put(peer: &mut Peer, id: RTCRtpSenderId, ssrc: u32, payload_type: u8, sent: &Sent) {
    let Some(mut sender) = peer.pc.rtp_sender(id) else { return };
    let packet = rtp::Packet { header: rtp::Header { version: 2, marker: sent.marker, payload_type, sequence_number: sent.sequence, timestamp: sent.timestamp, ssrc, ..Default::default() }, payload: sent.payload.clone() };
    if let Err(e) = sender.write_rtp(Instant::now(), packet) {
        tracing::debug!(client = peer.client, error = %e, "RTP not sent");
    }
    peer.collect_writes();
}

/// Our RTP payload formats against the `rtc` crate's own (an independent implementation of
/// the same specifications, as a WebRTC peer would use).
#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use estuary_protocols::rtp::{av1, h264::H264Depacketizer, h265, RtpPacket};
    use rtc::rtp::codec::av1::{Av1Depacketizer, Av1Payloader};
    use rtc::rtp::codec::h265::HevcPayloader;
    use rtc::rtp::packetizer::{Depacketizer, Payloader};

    /// An OBU with a size field.
    fn obu(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![kind << 3 | 0x02];
        let mut size = payload.len();
        while size >= 0x80 {
            out.push((size as u8 & 0x7f) | 0x80);
            size >>= 7;
        }
        out.push(size as u8);
        out.extend_from_slice(payload);
        out
    }

    fn packets(payloads: &[Bytes], timestamp: u32) -> Vec<RtpPacket> {
        payloads.iter().enumerate().map(|(i, p)| RtpPacket { payload_type: 45, marker: i + 1 == payloads.len(), sequence: i as u16, timestamp, ssrc: 1, payload: p.clone() }).collect()
    }

    /// A keyframe temporal unit: sequence header, a frame OBU of `len` bytes.
    fn keyframe(len: usize) -> Vec<u8> {
        let mut unit = obu(1, &[0x00, 0x00, 0x00, 0x05, 0x21, 0xe7, 0xfd, 0xe0, 0x17, 0xc0, 0x02]);
        unit.extend(obu(6, &(0..len).map(|i| (i * 13) as u8).collect::<Vec<u8>>()));
        unit
    }

    #[test]
    fn our_av1_payloads_depacketize_in_rtc_and_rtcs_in_ours() {
        let unit = keyframe(5000);
        let ours = av1::packetize(&unit, true, None, 1200).unwrap();
        let mut theirs = Av1Depacketizer::default();
        let mut rebuilt = Vec::new();
        for payload in &ours {
            rebuilt.extend_from_slice(&theirs.depacketize(payload).unwrap());
        }
        assert_eq!(rebuilt, unit);

        let mut payloader = Av1Payloader::default();
        let payloads = payloader.payload(1200, &Bytes::from(unit.clone())).unwrap();
        assert!(payloads.len() > 1 && payloads[0][0] & 0x08 != 0, "rtc marks the new coded video sequence");
        let mut ours = av1::Av1Depacketizer::new();
        let units: Vec<av1::TemporalUnit> = packets(&payloads, 90).iter().filter_map(|p| ours.push(p)).collect();
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].data.to_vec(), unit);
        assert!(units[0].keyframe && units[0].sequence_header.is_some());
    }

    #[test]
    fn rtcs_h265_payloads_single_aggregated_and_fragmented_depacketize_in_ours() {
        let (vps, sps, pps) = (vec![0x40, 0x01, 0x0c, 0x01], vec![0x42, 0x01, 0x01, 0x60, 0x00], vec![0x44, 0x01, 0xc1, 0x72]);
        let mut idr = vec![19 << 1, 0x01];
        idr.extend((0..3000).map(|i| (i % 251) as u8));
        let mut annex_b = Vec::new();
        for nal in [&vps, &sps, &pps, &idr] {
            annex_b.extend_from_slice(&[0, 0, 0, 1]);
            annex_b.extend_from_slice(nal);
        }
        let payloads = HevcPayloader.payload(1200, &Bytes::from(annex_b)).unwrap();
        assert!(payloads.iter().any(|p| (p[0] >> 1) & 0x3f == 48), "rtc aggregates the parameter sets");
        let mut ours = H264Depacketizer::new_h265();
        let units: Vec<_> = packets(&payloads, 90).iter().filter_map(|p| ours.push(p)).collect();
        assert_eq!(units.len(), 1);
        assert!(units[0].keyframe);
        assert_eq!(units[0].nals.iter().map(|n| n.to_vec()).collect::<Vec<_>>(), vec![vps.clone(), sps.clone(), pps.clone(), idr.clone()]);
        // And ours (single NAL units and fragmentation units) back through ours.
        let mut again = H264Depacketizer::new_h265();
        let units: Vec<_> = packets(&h265::packetize([&vps[..], &sps, &pps, &idr], 1200), 180).iter().filter_map(|p| again.push(p)).collect();
        assert_eq!(units[0].nals.len(), 4);
    }
}
