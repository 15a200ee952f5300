use super::players::{self, GroupHandle, Join};
use super::session::{self, Role, SessionInput, SessionSetup};
use crate::access;
use crate::node::NodeContext;
use crate::access::auth::Action;
use crate::node::clients::ClientGuard;
use crate::messages::{InjectFault, PlayRefused, PublishRefused};
use crate::registry::StreamRegistry;
use crate::settings::SrtSettings;
use actix::prelude::*;
use bytes::BytesMut;
use estuary_protocols::srt::handshake::{self, EXT_CONGESTION, EXT_FILTER, EXT_GROUP, EXT_KEY_MATERIAL};
use estuary_protocols::srt::streamid::{self, Mode};
use estuary_storage::StreamKey;
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::*;
use srt_protocol::protocol::pending_connection::listen::Listen;
use srt_protocol::protocol::pending_connection::{AccessControlRequest, AccessControlResponse, ConnectionReject, ConnectionResult};
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const NAME: &str = "srt_listener";
/// Packets queued toward one session before further ones are dropped (as a network would).
const SESSION_QUEUE: usize = 4096;
/// Send buffer of every connection, in packets.
pub(super) const SEND_BUFFER_PACKETS: usize = 8192;

/// Accepts SRT callers and routes their packets.
pub struct SrtListener {
    node: NodeContext,
    settings: Arc<SrtSettings>,
    registry: Addr<StreamRegistry>,
    first_socket: Option<std::net::UdpSocket>,
    socket: Option<Arc<UdpSocket>>,
    init: ConnInitSettings,
    pending: HashMap<SocketAddr, Pending>,
    /// Where the packets of each established connection go (a publisher's session or the
    /// player group of its stream), with the route's number.
    sessions: HashMap<SocketAddr, (u64, mpsc::Sender<SessionInput>)>,
    next_route: u64,
    /// The player group of each stream with SRT players.
    groups: HashMap<StreamKey, GroupHandle>,
    /// Malformed datagrams since the last report (logged once per second, not per packet).
    malformed: u64,
    last_malformed: Option<(SocketAddr, String)>,
    /// The key of this listener's SYN cookies (random per listener).
    cookie_key: std::collections::hash_map::RandomState,
}

/// SYN cookies: an induction is answered without keeping anything; state is made only for a
/// conclusion that returns a cookie this listener gave that address in this minute or the
/// one before. So a flood of inductions from spoofed addresses costs a reply each and
/// nothing else, and cannot fill the table of handshakes in progress.
const COOKIE_PERIOD_S: u64 = 60;

struct Pending {
    since: Instant,
    state: PendingState,
    /// The caller's conclusion carried keying material (it encrypts), whatever its key
    /// length field says (libsrt leaves that 0 when `pbkeylen` is not set).
    encrypts: bool,
}

#[allow(clippy::large_enum_variant)] // one per caller in handshake; short-lived
enum PendingState {
    Handshaking(Box<Listen>),
    /// Refused; a retransmitted conclusion gets the same answer.
    Rejected(Option<Packet>),
}

/// What the access decision produced for an accepted caller.
struct Admission {
    guard: ClientGuard,
    key: StreamKey,
    params: Vec<(String, String)>,
    role: Role,
}

struct Decision {
    peer: SocketAddr,
    response: AccessControlResponse,
    admission: Option<Admission>,
}

impl SrtListener {
    /// A listener; `first_socket` is the socket bound at boot.
    pub fn new(node: NodeContext, settings: SrtSettings, registry: Addr<StreamRegistry>, first_socket: Option<std::net::UdpSocket>) -> Self {
        node.restarts.register(NAME);
        let init = ConnInitSettings {
            recv_latency: settings.latency,
            send_latency: settings.peer_latency,
            peer_idle_timeout: settings.peer_idle_timeout,
            statistics_interval: Duration::from_secs(1),
            key_settings: None,
            // srt-protocol's default send buffer is 32 packets; libsrt's is 8192. A player's
            // start (the cached GOP) needs hundreds, and the library mishandles an overflowing
            // send buffer, so it gets libsrt's size and the session never fills it.
            send_buffer_size: srt_protocol::options::PacketCount(SEND_BUFFER_PACKETS as u64),
            recv_buffer_size: srt_protocol::options::PacketCount(8192),
            ..ConnInitSettings::default()
        };
        SrtListener {
            node,
            settings: Arc::new(settings),
            registry,
            first_socket,
            socket: None,
            init,
            pending: HashMap::new(),
            sessions: HashMap::new(),
            next_route: 0,
            groups: HashMap::new(),
            malformed: 0,
            last_malformed: None,
            cookie_key: std::collections::hash_map::RandomState::new(),
        }
    }

    fn period_now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) / COOKIE_PERIOD_S
    }

    /// The cookie (and the socket id offered) for `from` in cookie period `period`.
    fn cookie(&self, from: SocketAddr, period: u64) -> (i32, SocketId) {
        use std::hash::BuildHasher;
        let hash = self.cookie_key.hash_one((from, period));
        (hash as u32 as i32, SocketId(((hash >> 32) as u32) | 1))
    }

    /// Whether the handshake datagram `data` returns a cookie given to `from` in this cookie
    /// period or the one before.
    fn cookie_ok(&self, from: SocketAddr, data: &[u8]) -> bool {
        let Some(bytes) = data.get(44..48) else { return false };
        let cookie = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let now = Self::period_now();
        [now, now.saturating_sub(1)].into_iter().any(|p| self.cookie(from, p).0 == cookie)
    }

    /// The handshake state for `from` as of `period`: the settings with the socket id the
    /// induction answer offered.
    fn listen_for(&self, from: SocketAddr, period: u64) -> Listen {
        let mut init = self.init.copy_randomize();
        init.local_sockid = self.cookie(from, period).1;
        Listen::new(init, true)
    }

    /// Answers an induction with this listener's cookie; keeps nothing.
    fn answer_induction(&mut self, packet: Packet, from: SocketAddr) {
        let period = Self::period_now();
        let mut listen = self.listen_for(from, period);
        let answer = catch_unwind(AssertUnwindSafe(|| listen.handle_packet(Instant::now(), Ok((packet, from)))));
        match answer {
            Ok(ConnectionResult::SendPacket((Packet::Control(mut control), to))) => {
                if let ControlTypes::Handshake(shake) = &mut control.control_type {
                    shake.syn_cookie = self.cookie(from, period).0;
                }
                self.send(&Packet::Control(control), to);
            }
            Ok(other) => tracing::debug!(peer = %from, result = ?other, "SRT induction not answered"),
            Err(_) => tracing::warn!(peer = %from, "SRT handshake code panicked on an induction; ignored"),
        }
    }

    /// For a conclusion from an address with no handshake in progress: when it returns a
    /// cookie this listener gave, the handshake state as the induction left it and the
    /// conclusion rewritten to match it; else `None` (dropped: a spoofed or stale caller).
    fn admit_conclusion(&mut self, packet: Packet, from: SocketAddr) -> Option<(Listen, Packet)> {
        let Packet::Control(mut control) = packet else { return None };
        let ControlTypes::Handshake(shake) = &control.control_type else { return None };
        let now = Self::period_now();
        let period = [now, now.saturating_sub(1)].into_iter().find(|p| self.cookie(from, *p).0 == shake.syn_cookie)?;
        let mut listen = self.listen_for(from, period);
        // The library checks the cookie it made itself: replay the induction to it and hand
        // the conclusion on with that cookie.
        let induction = Packet::Control(ControlPacket {
            timestamp: control.timestamp,
            dest_sockid: SocketId(0),
            control_type: ControlTypes::Handshake(HandshakeControlInfo { shake_type: ShakeType::Induction, syn_cookie: 0, info: HandshakeVsInfo::V4(SocketType::Datagram), ..shake.clone() }),
        });
        let replayed = catch_unwind(AssertUnwindSafe(|| listen.handle_packet(Instant::now(), Ok((induction, from))))).ok()?;
        let ConnectionResult::SendPacket((Packet::Control(ControlPacket { control_type: ControlTypes::Handshake(answer), .. }), _)) = replayed else { return None };
        if let ControlTypes::Handshake(shake) = &mut control.control_type {
            shake.syn_cookie = answer.syn_cookie;
        }
        Some((listen, Packet::Control(control)))
    }

    fn listen(&mut self, ctx: &mut Context<Self>) {
        let socket = match self.socket.clone() {
            Some(socket) => Ok(socket),
            None => self
                .first_socket
                .take()
                .map(Ok)
                .unwrap_or_else(|| super::bind(self.settings.listen))
                .and_then(UdpSocket::from_std)
                .map(Arc::new),
        };
        match socket {
            Ok(socket) => {
                tracing::info!(listen = %self.settings.listen, latency_ms = self.settings.latency.as_millis() as u64, encrypted = self.settings.passphrase.is_some(), "SRT listening");
                ctx.add_stream(datagrams(socket.clone()));
                self.socket = Some(socket);
            }
            Err(e) => {
                tracing::error!(listen = %self.settings.listen, error = %e, "SRT listener cannot bind; will retry");
                ctx.stop();
            }
        }
    }

    fn start_group(&mut self, key: &StreamKey, socket: Arc<UdpSocket>, ctx: &mut Context<Self>) -> GroupHandle {
        let handle = players::start(key.clone(), socket, ctx.address(), self.node.clone(), self.settings.payload_size, self.settings.write_merge);
        self.groups.insert(key.clone(), handle.clone());
        handle
    }

    fn send(&self, packet: &Packet, to: SocketAddr) {
        let Some(socket) = &self.socket else { return };
        let mut buf = BytesMut::with_capacity(128);
        packet.serialize(&mut buf);
        if let Err(e) = socket.try_send_to(&buf, to) {
            tracing::debug!(peer = %to, error = %e, "SRT handshake reply not sent");
        }
    }

    fn datagram(&mut self, data: BytesMut, from: SocketAddr, ctx: &mut Context<Self>) {
        let view = handshake::inspect(&data);
        let is_new_call = view.as_ref().is_some_and(|v| v.shake_type == 1);
        if let Some((_, tx)) = self.sessions.get(&from) {
            if !is_new_call {
                match parse(&data) {
                    Ok(packet) => match tx.try_send(SessionInput::Packet(from, packet)) {
                        Ok(()) => {}
                        // The session is behind: SRT retransmits what is lost, so the datagram
                        // is dropped, and counted.
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            self.node.stats.datagrams_dropped_srt.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            self.sessions.remove(&from);
                        }
                    },
                    Err(reason) => self.malformed(from, reason),
                }
                return;
            }
            // An induction from a connected caller's address: answered with a cookie, and the
            // connection is left alone (anyone can send a datagram with that source address;
            // only a caller that gets the answer can go on, and its conclusion reaches the
            // connection, which ignores it until it ends).
            if let Ok(packet) = parse(&data) {
                self.answer_induction(packet, from);
            }
            return;
        }
        // A conclusion from an address with nothing in progress must return one of our
        // cookies before anything is done for it (refusals included: they would be stored).
        if view.as_ref().is_some_and(|v| v.shake_type == -1) && !self.pending.contains_key(&from) && !self.cookie_ok(from, &data) {
            self.node.stats.inc("estuary_srt_bad_cookies_total", &[]);
            tracing::debug!(peer = %from, "SRT conclusion without a cookie this listener gave (spoofed or stale); ignored");
            return;
        }

        // Handshake blocks the SRT library cannot parse: refuse what Estuary does not support,
        // drop what carries nothing it needs.
        let mut data = data;
        if let Some(view) = &view {
            let refusal = match view.congestion(&data) {
                Some(kind) if kind != "live" => Some((
                    RejectReason::Core(CoreRejectReason::Congestion),
                    format!("congestion control {kind:?} (transtype=file) is not supported; use live mode (the default)"),
                )),
                _ if view.has(EXT_FILTER) => Some((RejectReason::Core(CoreRejectReason::Filter), "packet filters (packetfilter=, FEC) are not supported".to_string())),
                _ if view.has(EXT_GROUP) => Some((RejectReason::Core(CoreRejectReason::Group), "socket groups (bonding) are not supported".to_string())),
                _ => None,
            };
            let stripped = handshake::strip(&data, view, &[EXT_CONGESTION, EXT_FILTER, EXT_GROUP]);
            if stripped.len() != data.len() {
                data = BytesMut::from(&stripped[..]);
            }
            if let Some((reason, text)) = refusal {
                match parse(&data) {
                    Ok(packet) => self.reject_unsupported(packet, from, reason, &text),
                    Err(reason) => self.malformed(from, reason),
                }
                return;
            }
        }

        let mut packet = match parse(&data) {
            Ok(packet) => packet,
            Err(reason) => return self.malformed(from, reason),
        };
        if !self.pending.contains_key(&from) {
            match view.as_ref().map(|v| v.shake_type) {
                Some(1) => return self.answer_induction(packet, from),
                Some(-1) => {}
                _ => {
                    // Not a handshake that starts anything: a stray or stale packet.
                    tracing::debug!(peer = %from, "SRT packet from an address with no connection; ignored");
                    return;
                }
            }
            if self.pending.len() >= self.settings.max_pending {
                tracing::warn!(peer = %from, pending = self.pending.len(), "too many SRT handshakes in progress; ignoring this caller for now");
                return;
            }
            let Some((listen, conclusion)) = self.admit_conclusion(packet, from) else {
                self.node.stats.inc("estuary_srt_bad_cookies_total", &[]);
                tracing::debug!(peer = %from, "SRT conclusion without a cookie this listener gave (spoofed or stale); ignored");
                return;
            };
            packet = conclusion;
            self.pending.insert(from, Pending { since: Instant::now(), state: PendingState::Handshaking(Box::new(listen)), encrypts: false });
        }
        let Some(pending) = self.pending.get_mut(&from) else { return };
        if view.as_ref().is_some_and(|v| v.has(EXT_KEY_MATERIAL)) {
            pending.encrypts = true;
        }
        let listen = match &mut pending.state {
            PendingState::Handshaking(listen) => listen,
            PendingState::Rejected(reply) => {
                if let Some(reply) = reply.clone() {
                    self.send(&reply, from);
                }
                return;
            }
        };
        let now = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| listen.handle_packet(now, Ok((packet, from)))));
        match result {
            Ok(result) => self.on_result(from, result, None, ctx),
            Err(_) => {
                tracing::error!(peer = %from, "SRT handshake code panicked on this caller's input; dropped the caller (others are unaffected)");
                self.pending.remove(&from);
            }
        }
    }

    fn reject_unsupported(&mut self, packet: Packet, from: SocketAddr, reason: RejectReason, text: &str) {
        let Packet::Control(ControlPacket { timestamp, control_type: ControlTypes::Handshake(shake), .. }) = packet else { return };
        tracing::warn!(peer = %from, code = i32::from(reason), reason = %text, "SRT caller refused");
        let reply: Packet = ControlPacket {
            timestamp,
            dest_sockid: shake.socket_id,
            control_type: ControlTypes::Handshake(HandshakeControlInfo {
                shake_type: ShakeType::Rejection(reason),
                socket_id: self.init.copy_randomize().local_sockid,
                info: HandshakeVsInfo::V5(HsV5Info::default()),
                ..shake
            }),
        }
        .into();
        self.send(&reply, from);
        // Kept for the caller's retransmissions, while the table has room (a flood of such
        // handshakes from spoofed addresses gets its answers and leaves nothing).
        if self.pending.len() < self.settings.max_pending {
            self.pending.insert(from, Pending { since: Instant::now(), state: PendingState::Rejected(Some(reply)), encrypts: false });
        }
    }

    fn on_result(&mut self, peer: SocketAddr, result: ConnectionResult, admission: Option<Admission>, ctx: &mut Context<Self>) {
        match result {
            ConnectionResult::SendPacket((packet, to)) => self.send(&packet, to),
            ConnectionResult::RequestAccess(request) => self.decide(peer, request, ctx),
            ConnectionResult::Reject(reply, reason) => {
                // Refusals decided by `admit` were logged with their reason already.
                if admission.is_some() || !matches!(reason, ConnectionReject::Rejecting(RejectReason::Server(_)) | ConnectionReject::Rejecting(RejectReason::Core(CoreRejectReason::BadSecret | CoreRejectReason::Unsecure))) {
                    tracing::warn!(%peer, %reason, "SRT handshake refused");
                } else {
                    tracing::debug!(%peer, %reason, "SRT handshake refused");
                }
                if let Some((packet, to)) = &reply {
                    self.send(packet, *to);
                }
                if let Some(admission) = admission {
                    release(admission);
                }
                if let Some(pending) = self.pending.get_mut(&peer) {
                    pending.state = PendingState::Rejected(reply.map(|(p, _)| p));
                }
            }
            ConnectionResult::Connected(reply, connection) => {
                if let Some((packet, to)) = &reply {
                    self.send(packet, *to);
                }
                self.pending.remove(&peer);
                let (Some(admission), Some(socket)) = (admission, self.socket.clone()) else {
                    tracing::warn!(%peer, "SRT connection completed without an access decision; dropped");
                    return;
                };
                let route = self.next_route;
                self.next_route += 1;
                let Admission { guard, key, params, role } = admission;
                match role {
                    Role::Publish { stream } => {
                        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                        self.sessions.insert(peer, (route, tx));
                        let setup = SessionSetup { connection, socket, peer, inbox: rx, guard, key, params, stream, route, listener: ctx.address(), node: self.node.clone() };
                        let census = self.node.census.clone();
                        self.node.topology.workers.next().spawn(census.track("srt_session", session::run(setup)));
                    }
                    Role::Play { subscription } => {
                        let join = Join { connection, peer, guard, key: key.clone(), params, subscription, route };
                        let mut handle = match self.groups.get(&key) {
                            Some(handle) if !handle.joins.is_closed() => handle.clone(),
                            _ => self.start_group(&key, socket.clone(), ctx),
                        };
                        let mut join = Some(join);
                        for _ in 0..2 {
                            let Some(next) = join.take() else { break };
                            match handle.joins.try_send(next) {
                                Ok(()) => {
                                    self.sessions.insert(peer, (route, handle.packets.clone()));
                                    break;
                                }
                                // The group let go of the stream just now: a new one takes it.
                                Err(mpsc::error::TrySendError::Closed(back)) => {
                                    join = Some(back);
                                    handle = self.start_group(&key, socket.clone(), ctx);
                                }
                                Err(mpsc::error::TrySendError::Full(back)) => {
                                    tracing::warn!(%peer, stream = %key, "the stream's SRT player group is not taking players; dropping this one");
                                    self.node.hooks.notify(crate::access::hooks::Event::Stop, &key.app, crate::access::hooks::body(back.guard.id(), &peer.ip().to_string(), &key.vhost, &key.app, &key.stream, &back.params));
                                }
                            }
                        }
                        if let Some(lost) = join {
                            tracing::warn!(%peer, stream = %key, "no SRT player group took this player; dropping it");
                            self.node.hooks.notify(crate::access::hooks::Event::Stop, &key.app, crate::access::hooks::body(lost.guard.id(), &peer.ip().to_string(), &key.vhost, &key.app, &key.stream, &lost.params));
                        }
                    }
                }
            }
            ConnectionResult::NotHandled(error) => tracing::debug!(%peer, %error, "SRT handshake packet not handled"),
            ConnectionResult::NoAction => {}
            ConnectionResult::Failure(error) => {
                tracing::warn!(%peer, %error, "SRT handshake failed");
                self.pending.remove(&peer);
            }
        }
    }

    /// Decides whether the caller may connect: stream id, encryption, access policy, and the
    /// stream claim (publish) or subscription (play). Runs asynchronously; the handshake waits
    /// in the meantime (retransmitted conclusions are ignored until the answer).
    fn decide(&mut self, peer: SocketAddr, request: AccessControlRequest, ctx: &mut Context<Self>) {
        let registry = self.registry.clone();
        let settings = self.settings.clone();
        let node = self.node.clone();
        let encrypts = request.key_size != KeySize::Unspecified || self.pending.get(&peer).is_some_and(|p| p.encrypts);
        let fut = async move {
            let (response, admission) = match admit(&node, &settings, registry, peer, &request, encrypts).await {
                Ok(admission) => {
                    let keys = settings.passphrase.as_ref().and_then(|p| Passphrase::try_from(p.clone()).ok()).map(|passphrase| KeySettings { key_size: request.key_size, passphrase });
                    (AccessControlResponse::Accepted(keys), Some(admission))
                }
                Err((reason, text)) => {
                    tracing::warn!(%peer, stream_id = ?request.stream_id.as_ref().map(|s| crate::access::secrets::mask_stream_id(&s.to_string())), code = i32::from(reason), reason = %text, "SRT caller refused");
                    (AccessControlResponse::Rejected(reason), None)
                }
            };
            Decision { peer, response, admission }
        };
        ctx.spawn(fut.into_actor(self).map(|decision, act, ctx| act.decided(decision, ctx)));
    }

    fn decided(&mut self, decision: Decision, ctx: &mut Context<Self>) {
        let Decision { peer, response, admission } = decision;
        let Some(Pending { state: PendingState::Handshaking(listen), .. }) = self.pending.get_mut(&peer) else {
            // The caller gave up (handshake timeout) while the decision was made.
            if let Some(admission) = admission {
                release(admission);
            }
            return;
        };
        let now = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| listen.handle_access_control_response(now, response))) {
            Ok(result) => self.on_result(peer, result, admission, ctx),
            Err(_) => {
                tracing::error!(%peer, "SRT handshake code panicked completing this caller's handshake; dropped the caller (others are unaffected)");
                if let Some(admission) = admission {
                    release(admission);
                }
                self.pending.remove(&peer);
            }
        }
    }

    fn malformed(&mut self, from: SocketAddr, reason: String) {
        self.malformed += 1;
        if self.malformed == 1 {
            tracing::warn!(peer = %from, %reason, "malformed SRT datagram dropped");
        }
        self.last_malformed = Some((from, reason));
    }

    fn housekeeping(&mut self) {
        if self.malformed > 1 {
            if let Some((peer, reason)) = &self.last_malformed {
                tracing::warn!(count = self.malformed - 1, last_peer = %peer, last_reason = %reason, "more malformed SRT datagrams dropped");
            }
        }
        self.malformed = 0;
        let timeout = self.settings.handshake_timeout;
        self.pending.retain(|peer, pending| {
            let keep = pending.since.elapsed() < timeout;
            if !keep {
                if let PendingState::Handshaking(_) = pending.state {
                    tracing::info!(%peer, "SRT handshake not completed in time; forgotten");
                }
            }
            keep
        });
        self.sessions.retain(|_, (_, tx)| !tx.is_closed());
        self.groups.retain(|_, handle| !handle.joins.is_closed());
    }
}

/// Parses a datagram; the library's parser sits behind `catch_unwind` because it has
/// panicking paths on peer input.
fn parse(data: &[u8]) -> Result<Packet, String> {
    let mut buf = data;
    match catch_unwind(AssertUnwindSafe(|| Packet::parse(&mut buf, false))) {
        Ok(Ok(packet)) => Ok(packet),
        Ok(Err(e)) => Err(format!("{e} ({} bytes)", data.len())),
        Err(_) => Err(format!("SRT parser panicked on this datagram ({} bytes)", data.len())),
    }
}

/// Undoes an admission whose handshake did not complete.
fn release(admission: Admission) {
    // Dropping the publisher's link releases the claim.
    drop(admission);
}

async fn admit(node: &NodeContext, settings: &SrtSettings, registry: Addr<StreamRegistry>, peer: SocketAddr, request: &AccessControlRequest, encrypts: bool) -> Result<Admission, (RejectReason, String)> {
    let bad_request = |text: String| (RejectReason::Server(ServerRejectReason::BadRequest), text);
    let raw = request.stream_id.as_ref().map(|s| s.to_string()).unwrap_or_default();
    let id = streamid::parse(&raw).map_err(|e| bad_request(format!("stream id {raw:?}: {e}")))?;
    // Refused here, before the library sees the mismatch (it panics on both).
    match (&settings.passphrase, encrypts) {
        (None, false) | (Some(_), true) => {}
        (None, true) => return Err((RejectReason::Core(CoreRejectReason::BadSecret), "the caller encrypts (passphrase set) but this server has no srt.passphrase".into())),
        (Some(_), false) => return Err((RejectReason::Core(CoreRejectReason::Unsecure), "this server requires a passphrase (srt.passphrase); the caller sent none".into())),
    }
    let mut key = StreamKey::new(&id.app, &id.stream);
    if let Some(vhost) = &id.vhost {
        key.vhost = vhost.clone();
    }
    let guard = node.clients.register("srt", peer.to_string());
    let action = match id.mode {
        Mode::Publish => Action::Publish,
        Mode::Request => Action::Play,
    };
    let check = access::Request { action, client: guard.id(), ip: Some(peer.ip()), vhost: &key.vhost, app: &key.app, stream: &key.stream, params: &id.params };
    node.access.check(&check).await.map_err(|refused| (RejectReason::Server(ServerRejectReason::Forbidden), refused.to_string()))?;
    let role = match id.mode {
        Mode::Publish => {
            let stream = crate::attach::claim_publish(registry, key.clone(), guard.id(), "srt").await.map_err(|refused| match refused {
                PublishRefused::AlreadyPublishing { .. } => (RejectReason::Server(ServerRejectReason::Conflict), refused.to_string()),
                PublishRefused::Unavailable(_) => (RejectReason::Server(ServerRejectReason::Unacceptable), refused.to_string()),
                PublishRefused::BadName(_) => (RejectReason::Server(ServerRejectReason::BadRequest), refused.to_string()),
            })?;
            Role::Publish { stream }
        }
        Mode::Request => {
            if crate::cluster::pull::ensure(node, &registry, &key).await {
                crate::cluster::pull::wait_live(node, &registry, &key, crate::cluster::pull::START_TIMEOUT).await;
            }
            if let Some(reason) = crate::attach::mpeg_ts_refusal(&registry, &key).await {
                return Err((RejectReason::Server(ServerRejectReason::Unacceptable), reason));
            }
            let subscription = crate::attach::subscribe_shared(registry, key.clone(), guard.id(), true).await.map_err(|refused| match refused {
                PlayRefused::NotFound(_) | PlayRefused::NotLive(_) => (RejectReason::Server(ServerRejectReason::Notfound), refused.to_string()),
                PlayRefused::Denied(text) => (RejectReason::Server(ServerRejectReason::Forbidden), text),
                PlayRefused::Unavailable(text) => (RejectReason::Server(ServerRejectReason::Overload), text),
            })?;
            Role::Play { subscription: Box::new(subscription) }
        }
    };
    Ok(Admission { guard, key, params: id.params, role })
}

impl Actor for SrtListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.listen(ctx);
        ctx.run_interval(Duration::from_secs(1), |act, _| act.housekeeping());
    }
}

impl Supervised for SrtListener {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.node.restarts.record(NAME);
        tracing::warn!(sessions = self.sessions.len(), "SRT listener restarting (established sessions keep their routes)");
        self.pending.clear();
    }
}

/// Datagrams read at most per batch.
const READ_BATCH: usize = 512;
/// After a batch the reader lets datagrams gather this long before reading again, so a busy
/// listener wakes about a thousand times a second, not once per datagram (every player's
/// ACKs, every publisher's packets), for at most this much added delay.
const READ_GATHER: Duration = Duration::from_millis(1);

/// The socket's datagrams in batches: each batch is what was waiting when the reader woke.
fn datagrams(socket: Arc<UdpSocket>) -> impl futures_util::Stream<Item = Vec<Result<(BytesMut, SocketAddr), std::io::Error>>> {
    futures_util::stream::unfold((socket, vec![0u8; 65_536]), |(socket, mut buf)| async move {
        let mut batch = Vec::new();
        loop {
            if let Err(e) = socket.readable().await {
                batch.push(Err(e));
                return Some((batch, (socket, buf)));
            }
            while batch.len() < READ_BATCH {
                match socket.try_recv_from(&mut buf) {
                    Ok((n, from)) => batch.push(Ok((BytesMut::from(&buf[..n]), from))),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => batch.push(Err(e)),
                }
            }
            if !batch.is_empty() {
                break;
            }
        }
        if batch.len() < READ_BATCH {
            tokio::time::sleep(READ_GATHER).await;
        }
        Some((batch, (socket, buf)))
    })
}

impl StreamHandler<Vec<Result<(BytesMut, SocketAddr), std::io::Error>>> for SrtListener {
    fn handle(&mut self, batch: Vec<Result<(BytesMut, SocketAddr), std::io::Error>>, ctx: &mut Self::Context) {
        for item in batch {
            match item {
                Ok((data, from)) => self.datagram(data, from, ctx),
                // ICMP errors (a caller's port closed) surface here on Linux; they concern one peer.
                Err(e) => tracing::debug!(error = %e, "SRT socket receive error"),
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        tracing::error!("SRT socket stream ended; restarting the listener");
        ctx.stop();
    }
}

/// A session ended: forget its route.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SessionEnded {
    pub peer: SocketAddr,
    /// The route's number (a new connection from the same address has another).
    pub route: u64,
}

impl Handler<SessionEnded> for SrtListener {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, _: &mut Self::Context) {
        if self.sessions.get(&msg.peer).is_some_and(|(route, _)| *route == msg.route) {
            self.sessions.remove(&msg.peer);
        }
    }
}

impl Handler<InjectFault> for SrtListener {
    type Result = ();

    fn handle(&mut self, msg: InjectFault, ctx: &mut Self::Context) {
        tracing::warn!(fault = ?msg.0, "fault injected into the SRT listener");
        // A panic is caught at the actor's boundary and handled as a fatal error: the actor
        // stops and its Supervisor restarts it (counting the restart, with backoff).
        let fault = msg.0;
        let outcome = crate::node::supervision::catch(|| {
            if fault == crate::messages::Fault::Panic {
                panic!("fault injected into the SRT listener");
            }
        });
        if let Err(panic) = outcome {
            tracing::error!(panic = %panic.0, "the SRT listener panicked; restarting it");
            ctx.stop();
        }
    }
}
