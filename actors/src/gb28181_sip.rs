//! GB28181 signalling: the platform side of SIP over UDP and TCP (SRS's 5060).
//!
//! ```text
//! device                               Estuary
//! REGISTER ----------------------->    401 (Digest nonce)         when a password is set
//! REGISTER + Authorization ------->    200 | 403 (wrong password)
//!          <-----------------------    MESSAGE Catalog query
//! 200 / MESSAGE Catalog response ->    200; channels recorded; INVITE each (auto_invite)
//!          <-----------------------    INVITE (SDP: TCP passive, media port, y=SSRC)
//! 200 + SDP ---------------------->    ACK; the device connects to the media port
//! MESSAGE Keepalive -------------->    200
//! REGISTER Expires: 0 ------------>    200; BYE to its sessions
//! ```
//!
//! One task owns the socket and all state (devices, sessions, transactions); the API talks
//! to it through a command channel. Media loss (the device's media connection ending while
//! its session is up) leads to a BYE and a new INVITE after a backoff (1 s doubling to 30 s).
//! A device that misses keepalives for `keepalive_timeout` is taken offline and its sessions
//! are ended. Malformed datagrams are logged (once per second at most) and dropped.

use estuary_protocols::sip::{self, SipMessage};
use estuary_storage::StreamKey;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// SIP server settings.
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// UDP address.
    pub listen: SocketAddr,
    /// Server id (SRS default 34020000002000000001).
    pub server_id: String,
    /// Domain / realm (SRS default 3402000000).
    pub realm: String,
    /// Devices must authenticate with this password; empty: no authentication.
    pub password: String,
    /// Invite every channel as soon as its catalog arrives.
    pub auto_invite: bool,
    /// Address devices send media to.
    pub media_ip: String,
    /// Media port.
    pub media_port: u16,
    /// Ask cameras for RTP over UDP instead of TCP (passive).
    pub media_udp: bool,
    /// App of the streams (`<app>/<device>_<channel>`).
    pub app: String,
    /// A device silent this long is taken offline.
    pub keepalive_timeout: Duration,
}

/// A device as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceStatus {
    /// Device id.
    pub id: String,
    /// Where it registered from.
    pub address: String,
    /// Registered and keeping alive.
    pub online: bool,
    /// Seconds since its last keepalive or registration.
    pub last_seen_s: u64,
    /// Channels from its catalog: (id, name, session state).
    pub channels: Vec<ChannelStatus>,
}

/// A channel as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelStatus {
    /// Channel id.
    pub id: String,
    /// Name from the catalog.
    pub name: String,
    /// `idle`, `inviting`, `live`, `retrying`.
    pub session: &'static str,
    /// The stream it publishes to.
    pub stream: String,
    /// INVITEs sent for it.
    pub invites: u64,
}

enum Command {
    List(oneshot::Sender<Vec<DeviceStatus>>),
    Invite(String, String, oneshot::Sender<Result<String, String>>),
    Bye(String, String, oneshot::Sender<Result<(), String>>),
}

static COMMANDS: OnceLock<mpsc::Sender<Command>> = OnceLock::new();
/// Media-ended notices waiting for the SIP task. One per ended media connection, so the
/// bound only matters if the SIP task stalls; a notice that does not fit is logged and the
/// session is left to the keepalive check.
const MEDIA_ENDED_QUEUE: usize = 1024;
static MEDIA_ENDED: OnceLock<mpsc::Sender<u32>> = OnceLock::new();

/// Called by the media side when the connection carrying `ssrc` ended.
pub fn media_ended(ssrc: u32) {
    if let Some(tx) = MEDIA_ENDED.get() {
        if tx.try_send(ssrc).is_err() {
            tracing::warn!(ssrc, "GB28181 SIP task not keeping up; media-ended notice dropped (no re-INVITE for it)");
        }
    }
}

/// Devices and channels.
pub async fn devices() -> Result<Vec<DeviceStatus>, String> {
    let tx = COMMANDS.get().ok_or("GB28181 SIP is disabled")?;
    let (reply, rx) = oneshot::channel();
    tx.send(Command::List(reply)).await.map_err(|_| "SIP server stopped")?;
    rx.await.map_err(|_| "SIP server stopped".into())
}

/// Invites a channel; returns the stream name.
pub async fn invite(device: &str, channel: &str) -> Result<String, String> {
    let tx = COMMANDS.get().ok_or("GB28181 SIP is disabled")?;
    let (reply, rx) = oneshot::channel();
    tx.send(Command::Invite(device.into(), channel.into(), reply)).await.map_err(|_| "SIP server stopped")?;
    rx.await.map_err(|_| "SIP server stopped".to_string())?
}

/// Ends a channel's session.
pub async fn bye(device: &str, channel: &str) -> Result<(), String> {
    let tx = COMMANDS.get().ok_or("GB28181 SIP is disabled")?;
    let (reply, rx) = oneshot::channel();
    tx.send(Command::Bye(device.into(), channel.into(), reply)).await.map_err(|_| "SIP server stopped")?;
    rx.await.map_err(|_| "SIP server stopped".to_string())?
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionState {
    Idle,
    Inviting,
    Live,
    Retrying,
}

struct Session {
    state: SessionState,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    ssrc: u32,
    invites: u64,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// The user wants it (auto-invite or API) until a BYE from the API or unregistration.
    wanted: bool,
}

struct Device {
    addr: SocketAddr,
    online: bool,
    last_seen: Instant,
    nonce: String,
    channels: Vec<(String, String)>,
    sessions: HashMap<String, Session>,
}

struct Server {
    settings: SipSettings,
    storage: Option<crate::storage::StorageHandle>,
    /// SIP over TCP: writers of the open connections, by peer address.
    tcp: HashMap<SocketAddr, mpsc::Sender<bytes::Bytes>>,
    socket: UdpSocket,
    devices: HashMap<String, Device>,
    next_ssrc: u32,
    cseq: u32,
    malformed: u64,
}

fn random_hex(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < len {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(len);
    out
}

impl Server {
    fn remember(&self, id: &str) {
        let (Some(storage), Some(device)) = (&self.storage, self.devices.get(id)) else { return };
        storage.tell(crate::messages::PutGbDevice(estuary_storage::GbDeviceRecord {
            id: id.to_string(),
            address: device.addr.to_string(),
            channels: device.channels.clone(),
            registered_ms: crate::unix_ms(),
        }));
    }

    fn stream_key(&self, device: &str, channel: &str) -> StreamKey {
        StreamKey::new(&self.settings.app, &format!("{device}_{channel}"))
    }

    async fn send(&self, message: &SipMessage, to: SocketAddr) {
        if let Some(writer) = self.tcp.get(&to) {
            if writer.try_send(message.to_bytes()).is_err() {
                tracing::warn!(peer = %to, "SIP over TCP peer not reading; message dropped");
            }
            return;
        }
        if let Err(e) = self.socket.send_to(&message.to_bytes(), to).await {
            tracing::warn!(peer = %to, error = %e, "SIP send failed");
        }
    }

    fn via(&self) -> String {
        format!("SIP/2.0/UDP {};rport;branch=z9hG4bK{}", self.settings.listen, random_hex(12))
    }

    fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }

    async fn datagram(&mut self, data: &[u8], from: SocketAddr, registry: &actix::Addr<crate::registry::StreamRegistry>) {
        let message = match SipMessage::parse(data) {
            Ok(Some((m, _))) => m,
            Ok(None) => return self.malformed(from, "incomplete SIP message in one datagram"),
            Err(e) => return self.malformed(from, &e.to_string()),
        };
        self.handle(message, from, registry).await;
    }

    async fn handle(&mut self, message: SipMessage, from: SocketAddr, registry: &actix::Addr<crate::registry::StreamRegistry>) {
        match message.method() {
            Some("REGISTER") => self.register(message, from).await,
            Some("MESSAGE") => self.message(message, from, registry).await,
            Some("BYE") => {
                let call_id = message.header("Call-ID").unwrap_or_default().to_string();
                self.send(&SipMessage::response_to(&message, 200, "OK", None), from).await;
                for device in self.devices.values_mut() {
                    for session in device.sessions.values_mut().filter(|s| s.call_id == call_id) {
                        tracing::info!(%from, "device ended a session (BYE)");
                        session.state = SessionState::Idle;
                        session.wanted = false;
                    }
                }
            }
            Some("ACK") => {}
            Some(other) => {
                tracing::debug!(%from, method = other, "SIP method not handled; 405");
                self.send(&SipMessage::response_to(&message, 405, "Method Not Allowed", None), from).await;
            }
            None => self.response(message, from).await,
        }
    }

    fn malformed(&mut self, from: SocketAddr, reason: &str) {
        self.malformed += 1;
        if self.malformed == 1 || self.malformed.is_power_of_two() {
            tracing::warn!(peer = %from, %reason, count = self.malformed, "malformed SIP datagram dropped");
        }
    }

    async fn register(&mut self, message: SipMessage, from: SocketAddr) {
        let Some(id) = message.from_user().map(str::to_string) else {
            self.send(&SipMessage::response_to(&message, 400, "Bad Request", None), from).await;
            return;
        };
        let expires = message.header("Expires").and_then(|v| v.trim().parse::<u64>().ok()).or_else(|| message.header("Contact").and_then(|c| sip::param(c, "expires")).and_then(|v| v.parse().ok())).unwrap_or(3600);
        if !self.settings.password.is_empty() {
            let device = self.devices.entry(id.clone()).or_insert_with(|| Device { addr: from, online: false, last_seen: Instant::now(), nonce: String::new(), channels: Vec::new(), sessions: HashMap::new() });
            match message.header("Authorization") {
                None => {
                    device.nonce = random_hex(32);
                    let challenge = format!(r#"Digest realm="{}",nonce="{}",algorithm=MD5"#, self.settings.realm, device.nonce);
                    let response = SipMessage::response_to(&message, 401, "Unauthorized", None).with("WWW-Authenticate", challenge);
                    self.send(&response, from).await;
                    return;
                }
                Some(authorization) => {
                    if let Err(reason) = sip::verify_digest(authorization, "REGISTER", &self.settings.realm, &device.nonce, &self.settings.password) {
                        tracing::warn!(device = %id, %from, %reason, "GB28181 registration refused");
                        self.send(&SipMessage::response_to(&message, 403, "Forbidden", None), from).await;
                        return;
                    }
                }
            }
        }
        let date = chrono_like_now();
        self.send(&SipMessage::response_to(&message, 200, "OK", Some(&random_hex(8))).with("Date", date).with("Expires", expires.to_string()), from).await;
        if expires == 0 {
            tracing::info!(device = %id, %from, "GB28181 device unregistered");
            self.end_device(&id).await;
            return;
        }
        let device = self.devices.entry(id.clone()).or_insert_with(|| Device { addr: from, online: false, last_seen: Instant::now(), nonce: String::new(), channels: Vec::new(), sessions: HashMap::new() });
        let first = !device.online;
        device.addr = from;
        device.online = true;
        device.last_seen = Instant::now();
        if first {
            tracing::info!(device = %id, %from, "GB28181 device registered");
            self.remember(&id);
            self.query_catalog(&id).await;
        }
    }

    async fn query_catalog(&mut self, id: &str) {
        let Some(addr) = self.devices.get(id).map(|d| d.addr) else { return };
        let cseq = self.next_cseq();
        let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<Query>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{cseq}</SN>\r\n<DeviceID>{id}</DeviceID>\r\n</Query>\r\n");
        let message = SipMessage::request("MESSAGE", &format!("sip:{id}@{}", self.settings.realm))
            .with("Via", self.via())
            .with("From", format!("<sip:{}@{}>;tag={}", self.settings.server_id, self.settings.realm, random_hex(8)))
            .with("To", format!("<sip:{id}@{}>", self.settings.realm))
            .with("Call-ID", format!("{}@estuary", random_hex(16)))
            .with("CSeq", format!("{cseq} MESSAGE"))
            .with("Max-Forwards", "70")
            .with_body("Application/MANSCDP+xml", body);
        self.send(&message, addr).await;
    }

    async fn message(&mut self, message: SipMessage, from: SocketAddr, _registry: &actix::Addr<crate::registry::StreamRegistry>) {
        let body = String::from_utf8_lossy(&message.body).into_owned();
        let id = message.from_user().unwrap_or_default().to_string();
        if !self.devices.get(&id).is_some_and(|d| d.online) {
            tracing::warn!(device = %id, %from, "MESSAGE from a device that is not registered; 403");
            self.send(&SipMessage::response_to(&message, 403, "Forbidden", None), from).await;
            return;
        }
        self.send(&SipMessage::response_to(&message, 200, "OK", None), from).await;
        let device = self.devices.get_mut(&id).expect("checked above");
        device.last_seen = Instant::now();
        device.addr = from;
        match sip::xml_field(&body, "CmdType") {
            Some("Keepalive") => {}
            Some("Catalog") => {
                let items = sip::catalog_items(&body);
                tracing::info!(device = %id, channels = items.len(), "GB28181 catalog received");
                for (channel, name) in items {
                    if !device.channels.iter().any(|(c, _)| *c == channel) {
                        device.channels.push((channel, name));
                    }
                }
                self.remember(&id);
                if self.settings.auto_invite {
                    let channels: Vec<String> = self.devices[&id].channels.iter().map(|(c, _)| c.clone()).collect();
                    for channel in channels {
                        let _ = self.start_session(&id, &channel).await;
                    }
                }
            }
            other => tracing::debug!(device = %id, cmd = ?other, "MANSCDP message not handled"),
        }
    }

    async fn start_session(&mut self, device_id: &str, channel: &str) -> Result<String, String> {
        let key = self.stream_key(device_id, channel);
        let device = self.devices.get_mut(device_id).ok_or_else(|| format!("device {device_id} is not registered"))?;
        if !device.online {
            return Err(format!("device {device_id} is offline"));
        }
        if !device.channels.iter().any(|(c, _)| c == channel) {
            return Err(format!("device {device_id} has no channel {channel}"));
        }
        let session = device.sessions.entry(channel.to_string()).or_insert_with(|| Session {
            state: SessionState::Idle,
            call_id: String::new(),
            from_tag: String::new(),
            to_tag: None,
            ssrc: 0,
            invites: 0,
            backoff: Duration::from_secs(1),
            retry_at: None,
            wanted: true,
        });
        session.wanted = true;
        if matches!(session.state, SessionState::Inviting | SessionState::Live) {
            return Ok(key.to_string());
        }
        self.send_invite(device_id, channel).await;
        Ok(key.to_string())
    }

    async fn send_invite(&mut self, device_id: &str, channel: &str) {
        let key = self.stream_key(device_id, channel);
        self.next_ssrc = (self.next_ssrc + 1) % 10_000;
        let realm_digits: String = self.settings.realm.chars().filter(|c| c.is_ascii_digit()).skip(3).take(5).collect();
        let ssrc_text = format!("0{:0>5}{:04}", realm_digits, self.next_ssrc);
        let ssrc: u32 = ssrc_text.parse().unwrap_or(self.next_ssrc);
        crate::gb28181::expect(ssrc, key.clone());
        let cseq = self.next_cseq();
        let (call_id, from_tag) = (format!("{}@estuary", random_hex(16)), random_hex(8));
        let Some(device) = self.devices.get_mut(device_id) else { return };
        let Some(session) = device.sessions.get_mut(channel) else { return };
        session.state = SessionState::Inviting;
        session.call_id = call_id.clone();
        session.from_tag = from_tag.clone();
        session.to_tag = None;
        session.ssrc = ssrc;
        session.invites += 1;
        let addr = device.addr;
        let s = &self.settings;
        let (profile, tcp_attributes) = if s.media_udp { ("RTP/AVP", "") } else { ("TCP/RTP/AVP", "a=setup:passive\r\na=connection:new\r\n") };
        let sdp = format!(
            "v=0\r\no={channel} 0 0 IN IP4 {ip}\r\ns=Play\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=video {port} {profile} 96\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\n{tcp_attributes}y={ssrc_text}\r\n",
            ip = s.media_ip,
            port = s.media_port
        );
        let invite = SipMessage::request("INVITE", &format!("sip:{channel}@{}", s.realm))
            .with("Via", format!("SIP/2.0/UDP {};rport;branch=z9hG4bK{}", s.listen, random_hex(12)))
            .with("From", format!("<sip:{}@{}>;tag={from_tag}", s.server_id, s.realm))
            .with("To", format!("<sip:{channel}@{}>", s.realm))
            .with("Call-ID", call_id)
            .with("CSeq", format!("{cseq} INVITE"))
            .with("Contact", format!("<sip:{}@{}>", s.server_id, s.listen))
            .with("Max-Forwards", "70")
            .with("Subject", format!("{channel}:{ssrc_text},{}:0", s.server_id))
            .with_body("APPLICATION/SDP", sdp);
        tracing::info!(device = %device_id, channel, stream = %key, ssrc, "GB28181 INVITE");
        self.send(&invite, addr).await;
    }

    async fn response(&mut self, message: SipMessage, from: SocketAddr) {
        let Some((_, method)) = message.cseq() else { return };
        let call_id = message.header("Call-ID").unwrap_or_default().to_string();
        let code = message.code().unwrap_or(0);
        if method != "INVITE" {
            return;
        }
        let found = self.devices.iter_mut().find_map(|(id, d)| d.sessions.iter_mut().find(|(_, s)| s.call_id == call_id).map(|(c, s)| (id.clone(), c.clone(), s, d.addr)));
        let Some((device_id, channel, session, addr)) = found else { return };
        if code < 200 {
            return;
        }
        let to = message.header("To").unwrap_or_default().to_string();
        session.to_tag = sip::param(&to, "tag").map(str::to_string);
        let (call_id, from_tag) = (session.call_id.clone(), session.from_tag.clone());
        if (200..300).contains(&code) {
            session.state = SessionState::Live;
            let cseq = message.cseq().map(|c| c.0).unwrap_or(1);
            let ack = SipMessage::request("ACK", &format!("sip:{channel}@{}", self.settings.realm))
                .with("Via", self.via())
                .with("From", format!("<sip:{}@{}>;tag={from_tag}", self.settings.server_id, self.settings.realm))
                .with("To", to)
                .with("Call-ID", call_id)
                .with("CSeq", format!("{cseq} ACK"))
                .with("Max-Forwards", "70");
            self.send(&ack, addr).await;
            tracing::info!(device = %device_id, channel, %from, "GB28181 session established");
        } else {
            tracing::warn!(device = %device_id, channel, code, "GB28181 INVITE refused; will retry");
            self.schedule_retry(&device_id, &channel);
        }
    }

    fn schedule_retry(&mut self, device_id: &str, channel: &str) {
        if let Some(session) = self.devices.get_mut(device_id).and_then(|d| d.sessions.get_mut(channel)) {
            session.state = SessionState::Retrying;
            session.retry_at = Some(Instant::now() + session.backoff);
            session.backoff = (session.backoff * 2).min(Duration::from_secs(30));
        }
    }

    async fn send_bye(&mut self, device_id: &str, channel: &str) {
        let Some(device) = self.devices.get_mut(device_id) else { return };
        let addr = device.addr;
        let Some(session) = device.sessions.get_mut(channel) else { return };
        if !matches!(session.state, SessionState::Live | SessionState::Inviting) {
            session.state = SessionState::Idle;
            return;
        }
        session.state = SessionState::Idle;
        let to = match &session.to_tag {
            Some(tag) => format!("<sip:{channel}@{}>;tag={tag}", self.settings.realm),
            None => format!("<sip:{channel}@{}>", self.settings.realm),
        };
        let (call_id, from_tag) = (session.call_id.clone(), session.from_tag.clone());
        let cseq = self.next_cseq();
        let bye = SipMessage::request("BYE", &format!("sip:{channel}@{}", self.settings.realm))
            .with("Via", self.via())
            .with("From", format!("<sip:{}@{}>;tag={from_tag}", self.settings.server_id, self.settings.realm))
            .with("To", to)
            .with("Call-ID", call_id)
            .with("CSeq", format!("{cseq} BYE"))
            .with("Max-Forwards", "70");
        tracing::info!(device = %device_id, channel, "GB28181 BYE");
        self.send(&bye, addr).await;
    }

    async fn end_device(&mut self, id: &str) {
        let channels: Vec<String> = self.devices.get(id).map(|d| d.sessions.keys().cloned().collect()).unwrap_or_default();
        for channel in channels {
            self.send_bye(id, &channel).await;
            if let Some(s) = self.devices.get_mut(id).and_then(|d| d.sessions.get_mut(&channel)) {
                s.wanted = false;
            }
        }
        if let Some(device) = self.devices.get_mut(id) {
            device.online = false;
        }
    }

    async fn on_media_ended(&mut self, ssrc: u32) {
        let found = self.devices.iter().find_map(|(id, d)| d.sessions.iter().find(|(_, s)| s.ssrc == ssrc && s.state == SessionState::Live && s.wanted).map(|(c, _)| (id.clone(), c.clone())));
        if let Some((device, channel)) = found {
            tracing::warn!(%device, %channel, "GB28181 media lost; BYE and re-INVITE");
            self.send_bye(&device, &channel).await;
            self.schedule_retry(&device, &channel);
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        let timeout = self.settings.keepalive_timeout;
        let silent: Vec<String> = self.devices.iter().filter(|(_, d)| d.online && now.duration_since(d.last_seen) > timeout).map(|(id, _)| id.clone()).collect();
        for id in silent {
            tracing::warn!(device = %id, timeout_s = timeout.as_secs(), "GB28181 device missed its keepalives; offline");
            self.end_device(&id).await;
        }
        let due: Vec<(String, String)> = self
            .devices
            .iter()
            .filter(|(_, d)| d.online)
            .flat_map(|(id, d)| d.sessions.iter().filter(|(_, s)| s.wanted && s.state == SessionState::Retrying && s.retry_at.is_some_and(|t| t <= now)).map(move |(c, _)| (id.clone(), c.clone())))
            .collect();
        for (device, channel) in due {
            tracing::info!(%device, %channel, "GB28181 re-INVITE");
            self.send_invite(&device, &channel).await;
        }
    }

    fn status(&self) -> Vec<DeviceStatus> {
        let mut list: Vec<DeviceStatus> = self
            .devices
            .iter()
            .map(|(id, d)| DeviceStatus {
                id: id.clone(),
                address: d.addr.to_string(),
                online: d.online,
                last_seen_s: d.last_seen.elapsed().as_secs(),
                channels: d
                    .channels
                    .iter()
                    .map(|(c, name)| {
                        let session = d.sessions.get(c);
                        ChannelStatus {
                            id: c.clone(),
                            name: name.clone(),
                            session: match session.map(|s| s.state) {
                                Some(SessionState::Inviting) => "inviting",
                                Some(SessionState::Live) => "live",
                                Some(SessionState::Retrying) => "retrying",
                                _ => "idle",
                            },
                            stream: self.stream_key(id, c).to_string(),
                            invites: session.map(|s| s.invites).unwrap_or(0),
                        }
                    })
                    .collect(),
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }
}

/// `Date` header value in GB28181's style (`2026-11-25T18:00:00.000`, UTC here).
fn chrono_like_now() -> String {
    let c = estuary_protocols::clock::Civil::from_unix_ms(crate::unix_ms());
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}", c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis)
}

/// Binds the SIP socket (at boot).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

enum TcpEvent {
    Open(SocketAddr, mpsc::Sender<bytes::Bytes>),
    Message(SocketAddr, SipMessage),
    Malformed(SocketAddr, String),
    Closed(SocketAddr),
}

/// One SIP-over-TCP connection: messages framed by Content-Length go to the server task;
/// what the server sends to this peer is written here.
async fn tcp_connection(socket: tokio::net::TcpStream, peer: SocketAddr, events: mpsc::Sender<TcpEvent>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut read, mut write) = socket.into_split();
    let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(64);
    if events.send(TcpEvent::Open(peer, tx)).await.is_err() {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buffer.extend_from_slice(&chunk[..n]);
        loop {
            // Keep-alive CRLFs between messages (RFC 5626) are skipped.
            while buffer.starts_with(b"\r\n") {
                buffer.drain(..2);
            }
            match SipMessage::parse(&buffer) {
                Ok(Some((message, used))) => {
                    buffer.drain(..used);
                    if events.send(TcpEvent::Message(peer, message)).await.is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = events.send(TcpEvent::Malformed(peer, e.to_string())).await;
                    break 'read;
                }
            }
        }
    }
    writer.abort();
    let _ = events.send(TcpEvent::Closed(peer)).await;
}

/// Binds the SIP TCP listener (at boot).
pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Runs the SIP server (UDP and, when given, TCP on the same port). `known` are the devices
/// remembered from earlier runs (shown offline until they register).
pub async fn serve(
    socket: std::net::UdpSocket,
    tcp: Option<std::net::TcpListener>,
    settings: SipSettings,
    registry: actix::Addr<crate::registry::StreamRegistry>,
    storage: Option<crate::storage::StorageHandle>,
    known: Vec<estuary_storage::GbDeviceRecord>,
) {
    let (tcp_tx, mut tcp_events) = mpsc::channel::<TcpEvent>(256);
    if let Some(listener) = tcp.and_then(|l| tokio::net::TcpListener::from_std(l).ok()) {
        tokio::spawn(async move {
            while let Ok((socket, peer)) = listener.accept().await {
                tokio::spawn(tcp_connection(socket, peer, tcp_tx.clone()));
            }
        });
    }
    let socket = match UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "GB28181 SIP socket unusable");
            return;
        }
    };
    let (command_tx, mut commands) = mpsc::channel(64);
    let _ = COMMANDS.set(command_tx);
    let (media_tx, mut media) = mpsc::channel(MEDIA_ENDED_QUEUE);
    let _ = MEDIA_ENDED.set(media_tx);
    tracing::info!(listen = %settings.listen, server_id = %settings.server_id, realm = %settings.realm, auth = !settings.password.is_empty(), "GB28181 SIP listening (UDP and TCP)");
    let mut devices = HashMap::new();
    for record in known {
        let addr = record.address.parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        devices.insert(record.id, Device { addr, online: false, last_seen: Instant::now(), nonce: String::new(), channels: record.channels, sessions: HashMap::new() });
    }
    let mut server = Server { settings, storage, tcp: HashMap::new(), socket, devices, next_ssrc: 0, cseq: 0, malformed: 0 };
    let mut buf = vec![0u8; 65_536];
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            received = server.socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    let data = buf[..n].to_vec();
                    server.datagram(&data, from, &registry).await;
                }
                Err(e) => tracing::debug!(error = %e, "SIP receive error"),
            },
            Some(command) = commands.recv() => match command {
                Command::List(reply) => { let _ = reply.send(server.status()); }
                Command::Invite(device, channel, reply) => { let _ = reply.send(server.start_session(&device, &channel).await); }
                Command::Bye(device, channel, reply) => {
                    let result = match server.devices.get_mut(&device).and_then(|d| d.sessions.get_mut(&channel)) {
                        Some(session) => {
                            session.wanted = false;
                            server.send_bye(&device, &channel).await;
                            Ok(())
                        }
                        None => Err(format!("no session for {device}/{channel}")),
                    };
                    let _ = reply.send(result);
                }
            },
            Some(ssrc) = media.recv() => server.on_media_ended(ssrc).await,
            Some(event) = tcp_events.recv() => match event {
                TcpEvent::Open(peer, writer) => { server.tcp.insert(peer, writer); }
                TcpEvent::Message(peer, message) => server.handle(message, peer, &registry).await,
                TcpEvent::Malformed(peer, reason) => server.malformed(peer, &reason),
                TcpEvent::Closed(peer) => { server.tcp.remove(&peer); }
            },
            _ = ticker.tick() => server.tick().await,
        }
    }
}
