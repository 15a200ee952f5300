//! What WHIP and WHEP sessions share: the signalling errors, the peer connection's codecs
//! and settings, offer/answer with our host candidates, and the loop that feeds a peer
//! connection datagrams, timeouts and the clock and carries out what it asks.

use super::{Datagram, Registration, RtcSettings};
use bytes::BytesMut;
use estuary_protocols::media::MediaFrame;
use rtc::interceptor::Registry;
use rtc::interceptor::NackGeneratorBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only, Slot};
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_AV1, MIME_TYPE_H264, MIME_TYPE_HEVC, MIME_TYPE_OPUS};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Why a WHIP or WHEP request was refused, with the HTTP status it maps to.
#[derive(Debug)]
pub enum SignalError {
    /// The offer is not usable SDP (400).
    BadOffer(String),
    /// Access control or a hook said no (403).
    Forbidden(String),
    /// Nobody publishes the stream (404, WHEP).
    NotFound(String),
    /// Someone already publishes the stream (409, WHIP).
    Conflict(String),
    /// WebRTC is off or the node is shutting down (503).
    Unavailable(String),
}

impl SignalError {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            SignalError::BadOffer(_) => 400,
            SignalError::Forbidden(_) => 403,
            SignalError::NotFound(_) => 404,
            SignalError::Conflict(_) => 409,
            SignalError::Unavailable(_) => 503,
        }
    }
}

impl std::fmt::Display for SignalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignalError::BadOffer(s) | SignalError::Forbidden(s) | SignalError::NotFound(s) | SignalError::Conflict(s) | SignalError::Unavailable(s) => f.write_str(s),
        }
    }
}

/// An accepted offer.
#[derive(Debug)]
pub struct SessionAnswer {
    /// The SDP answer.
    pub sdp: String,
    /// The session id (the resource to DELETE).
    pub id: String,
}

/// The H.264 codec we send (WHEP) and one of those we take (WHIP).
pub(crate) fn h264(profile_level_id: &str, payload_type: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: format!("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile_level_id}"),
            rtcp_feedback: vec![],
        },
        payload_type,
    }
}

/// A video codec a session sends (WHEP) or takes (WHIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VideoCodec {
    H264,
    H265,
    Av1,
}

impl VideoCodec {
    /// Its name in SDP `rtpmap` lines.
    pub(crate) fn sdp_name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "H264",
            VideoCodec::H265 => "H265",
            VideoCodec::Av1 => "AV1",
        }
    }

    /// Whether an SDP offer lists it (`a=rtpmap:<pt> <name>/90000`).
    pub(crate) fn offered_in(self, sdp: &str) -> bool {
        let name = format!(" {}/90000", self.sdp_name().to_ascii_lowercase());
        sdp.lines().any(|line| line.trim_end().to_ascii_lowercase().strip_prefix("a=rtpmap:").is_some_and(|rest| rest.ends_with(&name) || rest.contains(&format!("{name}/"))))
    }

    /// The fmtp parameter that names a profile (`profile` for AV1, `profile-id` for H.265),
    /// and its value when the offer leaves it out.
    fn profile_parameter(self) -> Option<(&'static str, u8)> {
        match self {
            VideoCodec::H264 => None,
            VideoCodec::H265 => Some(("profile-id", 1)),
            VideoCodec::Av1 => Some(("profile", 0)),
        }
    }

    /// The profile number of a stream's profile name (as the API shows it): AV1 0 Main, 1
    /// High, 2 Professional; H.265 `general_profile_idc` 1 Main, 2 Main 10, 3 Main Still
    /// Picture, 4 Range Extensions. Unknown names are the codec's default.
    pub(crate) fn profile_number(self, name: &str) -> u8 {
        let names: &[&str] = match self {
            VideoCodec::H264 => &[],
            VideoCodec::H265 => &["", "Main", "Main 10", "Main Still Picture", "Range Extensions"],
            VideoCodec::Av1 => &["Main", "High", "Professional"],
        };
        names.iter().position(|n| !n.is_empty() && *n == name).map(|p| p as u8).or(self.profile_parameter().map(|(_, default)| default)).unwrap_or(0)
    }

    /// Whether an SDP offer lists it in `profile` (any profile for H.264, whose profiles
    /// are matched by the `rtc` crate): a payload type of this codec whose fmtp has that
    /// profile, or no profile parameter when `profile` is the default.
    pub(crate) fn offered_with_profile(self, sdp: &str, profile: u8) -> bool {
        let Some((parameter, default)) = self.profile_parameter() else { return self.offered_in(sdp) };
        let name = format!(" {}/90000", self.sdp_name().to_ascii_lowercase());
        let lines: Vec<String> = sdp.lines().map(|l| l.trim_end().to_ascii_lowercase()).collect();
        let types: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("a=rtpmap:")).filter(|rest| rest.ends_with(&name) || rest.contains(&format!("{name}/"))).filter_map(|rest| rest.split(' ').next()).collect();
        types.iter().any(|pt| {
            let fmtp = lines.iter().find_map(|l| l.strip_prefix(&format!("a=fmtp:{pt} ")));
            let offered = fmtp.and_then(|f| f.split(';').find_map(|kv| kv.trim().strip_prefix(&format!("{parameter}="))).and_then(|v| v.parse::<u8>().ok())).unwrap_or(default);
            offered == profile
        })
    }

    /// The codec parameters we register: the H.264 profiles browsers and aiortc offer; AV1 and
    /// H.265 in the stream's `profile` (any level; the stream's own headers say which).
    pub(crate) fn parameters(self, profile: u8) -> Vec<RTCRtpCodecParameters> {
        match self {
            // Constrained baseline, baseline, main and high.
            VideoCodec::H264 => [("42e01f", 102), ("42001f", 103), ("4d001f", 104), ("640032", 105)].into_iter().map(|(profile, pt)| h264(profile, pt)).collect(),
            VideoCodec::Av1 => vec![RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec { mime_type: MIME_TYPE_AV1.to_owned(), clock_rate: 90_000, channels: 0, sdp_fmtp_line: format!("level-idx=5;profile={profile};tier=0"), rtcp_feedback: vec![] },
                payload_type: 45,
            }],
            VideoCodec::H265 => vec![RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec { mime_type: MIME_TYPE_HEVC.to_owned(), clock_rate: 90_000, channels: 0, sdp_fmtp_line: format!("level-id=93;profile-id={profile};tier-flag=0;tx-mode=SRST"), rtcp_feedback: vec![] },
                payload_type: 49,
            }],
        }
    }
}

/// Opus, 48 kHz stereo.
pub(crate) fn opus() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec { mime_type: MIME_TYPE_OPUS.to_owned(), clock_rate: 48_000, channels: 2, sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(), rtcp_feedback: vec![] },
        payload_type: 111,
    }
}

/// Checks that `offer` looks like SDP with media, before any work is done for it.
fn check_offer(offer: &str) -> Result<(), SignalError> {
    if !offer.trim_start().starts_with("v=0") {
        return Err(SignalError::BadOffer("the body is not an SDP offer (it must start with v=0)".into()));
    }
    if !offer.contains("m=video") && !offer.contains("m=audio") {
        return Err(SignalError::BadOffer("the offer has no audio or video section".into()));
    }
    Ok(())
}

/// What every offer goes through first: WebRTC must be on, the offer must look like SDP,
/// and access control (rules, token, hooks) must allow `action` on `key`. Returns the
/// client's registration, the shared socket's port and the settings.
pub(crate) async fn admit(node: &crate::node::Node, key: &estuary_storage::StreamKey, params: &[(String, String)], offer: &str, peer_ip: Option<std::net::IpAddr>, action: crate::access::auth::Action) -> Result<(crate::node::clients::ClientGuard, u16, RtcSettings), SignalError> {
    let (socket, settings) = node.rtc.socket().ok_or_else(|| SignalError::Unavailable("WebRTC is disabled (rtc.enabled = false)".into()))?;
    check_offer(offer)?;
    let guard = node.clients.register("webrtc", peer_ip.map(|ip| ip.to_string()).unwrap_or_default());
    let check = crate::access::Request { action, client: guard.id(), ip: peer_ip, vhost: &key.vhost, app: &key.app, stream: &key.stream, params };
    node.access.check(&check).await.map_err(|refused| SignalError::Forbidden(refused.to_string()))?;
    let port = socket.get_ref().local_addr().map(|a| a.port()).unwrap_or(settings.listen.port());
    Ok((guard, port, settings))
}

/// A peer connection with Opus and the `video` codecs in their profiles (the answer picks
/// among them in the offer's order), ICE-lite with the given credentials, DTLS server.
pub(crate) fn peer_connection(ufrag: &str, password: &str, video: &[(VideoCodec, u8)], side: Side) -> Result<RTCPeerConnection, String> {
    let mut media = MediaEngine::default();
    media.register_codec(opus(), RtpCodecKind::Audio).map_err(|e| e.to_string())?;
    for codec in video.iter().flat_map(|(c, profile)| c.parameters(*profile)) {
        media.register_codec(codec, RtpCodecKind::Video).map_err(|e| e.to_string())?;
    }
    let registry = interceptors(&mut media, side).map_err(|e| e.to_string())?;
    let settings = SettingEngineBuilder::new().with_lite(true).with_ice_credentials(ufrag.to_string(), password.to_string()).with_answering_dtls_role(RTCDtlsRole::Server).build();
    RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .map_err(|e| e.to_string())
}

/// The grid the peer connections' own timers (RTCP reports, NACK scans, ICE keepalives) are
/// moved onto: every session's timer fires at a multiple of this, so hundreds of players'
/// timers wake the worker thread together rather than each at its own moment.
const TIMER_GRID_MS: u64 = 10;

/// `deadline` moved later onto the next [`TIMER_GRID_MS`] boundary of the wall clock (read
/// only for alignment; a clock step costs at most one early or late timer).
fn on_grid(deadline: Instant, now: Instant) -> Instant {
    let grid_us = TIMER_GRID_MS * 1000;
    let wall_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
    let ahead_us = deadline.saturating_duration_since(now).as_micros() as u64;
    // Rounded up to whole microseconds, so the result is never before `deadline`.
    let ahead_us = if now + Duration::from_micros(ahead_us) < deadline { ahead_us + 1 } else { ahead_us };
    let aligned = (wall_us + ahead_us).div_ceil(grid_us) * grid_us;
    now + Duration::from_micros(aligned - wall_us)
}

/// Which end of the media a peer connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// WHIP: takes the peer's media.
    Receives,
    /// WHEP: sends the stream to the peer.
    Sends,
}

/// The interceptors a session needs, and the NACK and TWCC feedback announced for video.
/// - A WHIP session (receives media): `rtc`'s NACK generator, TWCC feedback and RTCP reports.
/// - A WHEP session (sends media): RTCP reports, and [`super::resend::PlayerFeedback`], which
///   hands the player's NACKs and keyframe requests to the session. NACKs are answered by the
///   session itself ([`super::resend`]), and nothing it would generate feedback for ever arrives, so the
///   generator and the TWCC receiver would only be two more stages every sent packet is moved
///   through. Its SDP is the same as before (the feedback and header extensions are announced
///   either way).
fn interceptors(media: &mut MediaEngine, side: Side) -> rtc::shared::error::Result<Registry> {
    for parameter in ["", "pli"] {
        media.register_feedback(RTCPFeedback { typ: "nack".to_owned(), parameter: parameter.to_owned() }, RtpCodecKind::Video);
    }
    configure_simulcast_extension_headers(media)?;
    let registry = match side {
        Side::Receives => configure_twcc_receiver_only(Registry::new().with(Slot::NackGenerator, NackGeneratorBuilder::new().build()), media)?,
        Side::Sends => {
            // For the media engine's TWCC feedback and header extension only.
            let _announced = configure_twcc_receiver_only(Registry::new(), media)?;
            // The slot where `rtc`'s own NACK responder would sit.
            Registry::new().with(Slot::NackResponder, super::resend::PlayerFeedback::default())
        }
    };
    Ok(configure_rtcp_reports(registry))
}

/// The answer to an offer and the addresses it offered as host candidates.
pub(crate) struct Answer {
    pub(crate) sdp: String,
    pub(crate) candidates: Vec<IpAddr>,
    pub(crate) port: u16,
}

/// Applies `offer`, adds our host candidates and returns the answer, which must carry one of
/// the `video` codecs (the ones the peer connection was made with).
pub(crate) fn answer(pc: &mut RTCPeerConnection, offer: String, settings: &RtcSettings, port: u16, video: &[VideoCodec]) -> Result<Answer, SignalError> {
    let description = RTCSessionDescription::offer(offer).map_err(|e| SignalError::BadOffer(format!("bad SDP offer: {e}")))?;
    pc.set_remote_description(Instant::now(), description).map_err(|e| SignalError::BadOffer(format!("offer refused: {e}")))?;
    let candidates = super::addresses::candidates(&settings.candidates, settings.listen);
    for ip in &candidates {
        let candidate = CandidateHostConfig { base_config: CandidateConfig { network: "udp".to_owned(), address: ip.to_string(), port, component: 1, ..Default::default() }, ..Default::default() }
            .new_candidate_host()
            .map_err(|e| SignalError::Unavailable(format!("candidate {ip}: {e}")))?;
        let init = RTCIceCandidate::from(&candidate).to_json().map_err(|e| SignalError::Unavailable(format!("candidate {ip}: {e}")))?;
        pc.add_local_candidate(init).map_err(|e| SignalError::Unavailable(format!("candidate {ip}: {e}")))?;
    }
    let answer = pc.create_answer(None).map_err(|e| SignalError::BadOffer(format!("no answer to this offer: {e}")))?;
    pc.set_local_description(Instant::now(), answer).map_err(|e| SignalError::Unavailable(format!("answer: {e}")))?;
    let sdp = pc.local_description().map(|d| d.sdp).ok_or_else(|| SignalError::Unavailable("no local description".into()))?;
    if !video.iter().any(|codec| codec.offered_in(&sdp)) {
        let names: Vec<&str> = video.iter().map(|c| match c {
            VideoCodec::H264 => "H.264 (packetization-mode=1)",
            VideoCodec::H265 => "H.265",
            VideoCodec::Av1 => "AV1",
        }).collect();
        return Err(SignalError::BadOffer(format!("the offer has no {} video; Estuary's WebRTC speaks H.264, AV1 and H.265 video and Opus audio", names.join(" or "))));
    }
    Ok(Answer { sdp, candidates, port })
}

/// What [`Peer::wait`] saw.
pub(crate) enum Step {
    /// Something was handled; look at the peer connection's outputs again.
    Handled,
    /// A frame (or the end of the stream, `None`) from the subscription.
    Media(Option<Arc<MediaFrame>>),
    /// The session is over, with the reason.
    End(String),
    /// A player asked the publisher for a keyframe.
    KeyframeRequest,
}

/// Datagrams' room kept between flushes (a frame's packets; more is given back).
const OUTGOING_KEPT: usize = 128;

/// A running peer connection on the shared socket.
pub(crate) struct Peer {
    pub(crate) pc: RTCPeerConnection,
    socket: super::SharedSocket,
    /// The host candidates we offered, and our port.
    candidates: Vec<IpAddr>,
    port: u16,
    registration: Registration,
    pub(crate) client: u64,
    pub(crate) connected: bool,
    started: Instant,
    connect_timeout: Duration,
    /// Remote tracks by track id (WHIP).
    pub(crate) tracks: HashMap<String, RTCRtpReceiverId>,
    /// Another time the owner must be woken at (a reorder buffer's).
    pub(crate) extra_deadline: Option<Instant>,
    /// When the peer's first datagram (its first ICE check) arrived, since the start.
    first_datagram: Option<Duration>,
    /// What the peer connection wrote, sent together at the next flush.
    outgoing: Vec<(BytesMut, std::net::SocketAddr)>,
    /// Datagrams lost to a full socket buffer or a failing destination.
    pub(crate) dropped: u64,
}

impl Peer {
    pub(crate) fn new(pc: RTCPeerConnection, registration: Registration, client: u64, settings: &RtcSettings, answer: &Answer) -> Option<Peer> {
        let socket = registration.socket();
        Some(Peer { pc, socket, candidates: answer.candidates.clone(), port: answer.port, registration, client, connected: false, started: Instant::now(), connect_timeout: settings.connect_timeout, tracks: HashMap::new(), extra_deadline: None, first_datagram: None, outgoing: Vec::new(), dropped: 0 })
    }

    /// Time since the session started: the clock the session's sans-IO parts run on.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The instant `elapsed` time after the session started.
    pub(crate) fn at(&self, elapsed: Duration) -> Instant {
        self.started + elapsed
    }

    /// Time since the session started, in ticks of `rate` Hz.
    pub(crate) fn arrival(&self, rate: i64) -> i64 {
        (self.elapsed().as_micros() as i64) * rate / 1_000_000
    }

    /// Sends what the peer connection wrote and handles its events; an error ends the
    /// session.
    pub(crate) async fn flush(&mut self, role: &str) -> Result<(), String> {
        self.collect_writes();
        if !self.outgoing.is_empty() {
            let sent = super::send::send_all(self.socket.get_ref(), &mut self.outgoing).await;
            self.dropped += sent.dropped as u64;
            // A burst (the cached GOP at the start) does not keep its size for the session.
            self.outgoing.shrink_to(OUTGOING_KEPT);
        }
        while let Some(event) = self.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                    tracing::debug!(client = self.client, %state, "WebRTC connection state");
                    match state {
                        RTCPeerConnectionState::Connected if !self.connected => {
                            self.connected = true;
                            // Where the startup time goes: from the answer to the peer's
                            // first check is the peer's own pacing; from there to connected is
                            // ICE and the DTLS handshake.
                            let first_check_ms = self.first_datagram.map(|d| d.as_secs_f64() * 1e3);
                            let connected_ms = self.started.elapsed().as_secs_f64() * 1e3;
                            tracing::info!(client = self.client, first_check_ms, connected_ms, "{role} connected");
                        }
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => return Err(format!("connection {state}")),
                        _ => {}
                    }
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    self.tracks.insert(init.track_id.to_string(), init.receiver_id);
                }
                _ => {}
            }
        }
        if !self.connected && self.started.elapsed() > self.connect_timeout {
            return Err(format!("ICE/DTLS did not connect within {} s", self.connect_timeout.as_secs()));
        }
        Ok(())
    }

    /// Moves what the peer connection has written so far into the datagrams of the next
    /// flush. Called after every RTP packet handed to it: `rtc` passes a write through each
    /// of its handlers' queues, and each queue keeps the capacity of the largest batch it
    /// ever held, so a keyframe or the cached GOP written in one go left about 80 KiB per
    /// handler, nine handlers, about 0.75 MiB per player (heaptrack at 100 WHEP players).
    pub(crate) fn collect_writes(&mut self) {
        while let Some(out) = self.pc.poll_write() {
            self.outgoing.push((out.message, out.transport.peer_addr));
        }
    }

    /// Waits for a datagram, a timeout, the end signal, (with `media`) a frame, or (with
    /// `keyframes`) a keyframe request.
    pub(crate) async fn wait(&mut self, media: Option<&mut mpsc::Receiver<Arc<MediaFrame>>>, keyframes: Option<&mut mpsc::Receiver<()>>) -> Step {
        let now = Instant::now();
        let mut deadline = on_grid(self.pc.poll_timeout().unwrap_or(now + Duration::from_millis(100)).min(now + Duration::from_millis(500)), now);
        if let Some(extra) = self.extra_deadline {
            deadline = deadline.min(extra.max(now));
        }
        let next_frame = async {
            match media {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let keyframe_request = async {
            match keyframes {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            changed = self.registration.end.changed() => {
                if changed.is_err() || *self.registration.end.borrow() {
                    return Step::End("ended by DELETE".into());
                }
                Step::Handled
            }
            datagram = self.registration.inbox.recv() => match datagram {
                Some(Datagram { from, to, data }) => {
                    if self.first_datagram.is_none() {
                        self.first_datagram = Some(self.started.elapsed());
                    }
                    let Some(local_addr) = super::addresses::local_for(to, &self.candidates, self.port) else { return Step::End("no local candidate".into()) };
                    let input = TaggedBytesMut { now: Instant::now(), transport: TransportContext { local_addr, peer_addr: from, ecn: None, transport_protocol: TransportProtocol::UDP }, message: BytesMut::from(&data[..]) };
                    if let Err(e) = self.pc.handle_read(input) {
                        tracing::debug!(client = self.client, error = %e, "WebRTC datagram refused");
                    }
                    Step::Handled
                }
                None => Step::End("socket reader stopped".into()),
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                if let Err(e) = self.pc.handle_timeout(Instant::now()) {
                    tracing::debug!(client = self.client, error = %e, "WebRTC timeout handling failed");
                }
                Step::Handled
            }
            frame = next_frame => Step::Media(frame),
            Some(()) = keyframe_request => Step::KeyframeRequest,
        }
    }

    /// Closes the peer connection.
    pub(crate) fn close(&mut self) {
        let _ = self.pc.close();
    }
}

#[cfg(test)]
mod tests {
    use super::{on_grid, TIMER_GRID_MS};
    use std::time::{Duration, Instant};

    #[test]
    fn timers_move_later_onto_the_grid_never_earlier_and_by_less_than_a_step() {
        let now = Instant::now();
        for ahead in [0u64, 1, 3_500, 9_999, 10_000, 10_500, 11_000, 250_001] {
            let deadline = now + Duration::from_micros(ahead) + Duration::from_nanos(300);
            let moved = on_grid(deadline, now);
            assert!(moved >= deadline, "{ahead} us: moved earlier");
            assert!(moved <= deadline + Duration::from_millis(TIMER_GRID_MS), "{ahead} us: moved by more than a step");
        }
    }
}
