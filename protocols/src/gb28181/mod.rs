//! The platform side of GB28181 signalling, sans-IO: devices, registrations, catalogs and
//! the INVITE/ACK/BYE dialogs of the channels being watched.
//!
//! ```text
//! device                               platform
//! REGISTER ----------------------->    401 (Digest nonce)         when a password is set
//! REGISTER + Authorization ------->    200 | 403 (wrong password)
//!          <-----------------------    MESSAGE Catalog query
//! MESSAGE Catalog response ------->    200; channels recorded; INVITE each (auto_invite)
//!   (no answer within catalog_timeout: the device id is invited as its own channel)
//!          <-----------------------    INVITE (SDP: TCP passive or UDP, media port, y=SSRC)
//! 200 + SDP ---------------------->    ACK; media flows to the media port
//! MESSAGE Keepalive -------------->    200
//! REGISTER Expires: 0 ------------>    200; BYE to its sessions
//! ```
//!
//! [`Platform`] owns no socket and no clock. Messages, media-ended notices, API commands and
//! the passage of time go in with the current time, a `Duration` since an origin the shell
//! picks (its start, say); what to do comes out of
//! [`Platform::poll_output`]: SIP messages to send, SSRCs to route to a stream, device
//! records to persist, and [`Event`]s to log. Random values (nonces, tags, Call-IDs, branch
//! ids) come from a generator seeded through [`PlatformConfig::seed`], so a test replays the
//! same dialog byte for byte.
//!
//! Media loss (the device's media connection ending while its session is live) leads to a
//! BYE and a new INVITE after a backoff (1 s doubling up to 30 s); a refused INVITE is retried
//! the same way. A device silent for longer than the keepalive timeout is taken offline and
//! its sessions are ended.
//!
//! Devices built for SRS 5/6 never answer the catalog query: SRS invites the registered id
//! itself. After [`PlatformConfig::catalog_timeout`] without a catalog the platform does the
//! same (or invites the channels remembered from an earlier run). A catalog sent unprompted
//! is taken like an answer.
//!
//! Our requests name the transport the device used (`Via: SIP/2.0/TCP` for a device that
//! registered over TCP) and the local address its messages reached ([`Link`]); a wildcard
//! listen address is never put in a header (RFC 3261 §18.1.1, §20.43).

pub mod sip;

use crate::clock::Civil;
use sip::SipMessage;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// First retry delay after media loss or a refused INVITE.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Digest challenges outstanding at once; the oldest is forgotten first. A challenge is
/// kept apart from the device table, so REGISTERs that never authenticate create no device.
pub const MAX_CHALLENGES: usize = 1024;
/// REGISTERs one source address may send at once ...
pub const REGISTER_BURST: f64 = 20.0;
/// ... and per second after that. More are dropped unanswered, so a spoofed flood gets no
/// reflection (no 401, no catalog query) towards its victim.
pub const REGISTER_RATE: f64 = 10.0;
/// Source addresses whose budget is tracked; the longest idle is forgotten first.
pub const MAX_SOURCES: usize = 4096;

/// How the platform presents itself and what it asks of devices.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// Address of the SIP socket (used in Via and Contact).
    pub listen: SocketAddr,
    /// Platform id (SRS's default is 34020000002000000001).
    pub server_id: String,
    /// Domain / digest realm (SRS's default is 3402000000).
    pub realm: String,
    /// Devices must authenticate with this password; empty: no authentication.
    pub password: String,
    /// Invite every channel as soon as its catalog arrives.
    pub auto_invite: bool,
    /// Address devices send media to.
    pub media_ip: String,
    /// Media port.
    pub media_port: u16,
    /// Ask for RTP over UDP instead of RTP over TCP with the device connecting (passive).
    pub media_udp: bool,
    /// A device silent this long is taken offline.
    pub keepalive_timeout: Duration,
    /// A registered device that has not sent its catalog this long after the query gets its
    /// own id invited as a channel.
    pub catalog_timeout: Duration,
    /// Seed of the generator of nonces, tags, Call-IDs and branch ids.
    pub seed: u64,
    /// Most devices known at once (online or remembered); a new device beyond it takes the
    /// place of the device offline longest, or gets 503 when all are online.
    pub max_devices: usize,
}

/// The transport a device's messages came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
}

/// How a device reaches the platform: its transport and the local address its messages
/// arrived at (the UDP datagram's destination, or the TCP connection's local end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// UDP or TCP.
    pub transport: Transport,
    /// Our address as the device sees it.
    pub local: SocketAddr,
}

/// What the platform asks its IO shell to do, or tells it.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this message to this address (over the TCP connection from there if there is
    /// one, else UDP).
    Send(SipMessage, SocketAddr),
    /// PS media carrying `ssrc` belongs to this device's channel.
    ExpectMedia {
        /// SSRC from the INVITE's `y=` line.
        ssrc: u32,
        /// Device id.
        device: String,
        /// Channel id.
        channel: String,
        /// The device's address: media for this SSRC is taken from this host only.
        from: std::net::IpAddr,
    },
    /// Persist this device (after registration and after its catalog).
    Remember(DeviceRecord),
    /// Forget this device (evicted: the table was full and it was the longest offline).
    Forget(String),
    /// Something to log.
    Event(Event),
}

/// A device as persisted between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Device id.
    pub id: String,
    /// Address it registered from.
    pub address: SocketAddr,
    /// Channels from its catalog: (id, name).
    pub channels: Vec<(String, String)>,
}

/// Things that happened, for the log. Fields are named for what they hold: `device` and
/// `channel` ids, the peer address `from`, delays.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A device registered (first REGISTER after being offline).
    Registered { device: String, from: SocketAddr },
    /// A device unregistered (`Expires: 0`).
    Unregistered { device: String, from: SocketAddr },
    /// A REGISTER failed digest authentication (answered 403).
    RegistrationRefused { device: String, from: SocketAddr, reason: String },
    /// A MESSAGE from a device that is not registered (answered 403).
    NotRegistered { device: String, from: SocketAddr },
    /// A catalog arrived.
    Catalog { device: String, channels: usize },
    /// No catalog came within the timeout: these channels are invited (the device id itself
    /// when none are known).
    CatalogTimeout { device: String, channels: Vec<String> },
    /// An INVITE was sent.
    Invite { device: String, channel: String, ssrc: u32, attempt: u64 },
    /// A 2xx to an INVITE arrived; ACK sent.
    Established { device: String, channel: String },
    /// An INVITE was refused; a retry is scheduled.
    InviteRefused { device: String, channel: String, code: u16, retry_in: Duration },
    /// Media of a live session ended; BYE sent and a new INVITE scheduled.
    MediaLost { device: String, channel: String, retry_in: Duration },
    /// A BYE was sent.
    Bye { device: String, channel: String },
    /// The device ended a session with its own BYE.
    DeviceBye { device: String, channel: String },
    /// A device missed its keepalives and was taken offline.
    KeepaliveTimeout { device: String, silent: Duration },
    /// A message that could not be parsed was dropped. `count` is the total so far; shells
    /// log the first and then every power of two.
    Malformed { from: SocketAddr, reason: String, count: u64 },
    /// A request method the platform does not handle (answered 405).
    Unsupported { from: SocketAddr, method: String },
    /// A REGISTER or MESSAGE whose device id is not 20 digits (answered 400).
    BadId { from: SocketAddr, reason: String },
    /// A new device was refused because the device table is full (answered 503).
    TableFull { device: String, from: SocketAddr },
    /// A REGISTER over the per-source rate was dropped unanswered. `count` is the total so
    /// far; shells log the first and then every power of two.
    RateLimited { from: SocketAddr, count: u64 },
}

/// Where a channel's session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// No dialog.
    Idle,
    /// INVITE sent, no final answer yet.
    Inviting,
    /// Established (ACK sent).
    Live,
    /// Waiting for the retry time to send a new INVITE.
    Retrying,
}

impl SessionState {
    /// The name the API shows.
    pub fn name(self) -> &'static str {
        match self {
            SessionState::Idle => "idle",
            SessionState::Inviting => "inviting",
            SessionState::Live => "live",
            SessionState::Retrying => "retrying",
        }
    }
}

/// A device as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    /// Device id.
    pub id: String,
    /// Where it registered from.
    pub address: SocketAddr,
    /// Registered and keeping alive.
    pub online: bool,
    /// Time since its last registration or message.
    pub silent: Duration,
    /// Its channels.
    pub channels: Vec<ChannelView>,
}

/// A channel as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelView {
    /// Channel id.
    pub id: String,
    /// Name from the catalog.
    pub name: String,
    /// Session state.
    pub state: SessionState,
    /// INVITEs sent for it.
    pub invites: u64,
}

struct Session {
    state: SessionState,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    ssrc: u32,
    invites: u64,
    backoff: Duration,
    retry_at: Option<Duration>,
    /// Wanted (auto-invite or API) until a BYE from the API, the device or unregistration.
    wanted: bool,
}

struct Device {
    addr: SocketAddr,
    link: Link,
    /// When a catalog query goes unanswered for too long.
    catalog_deadline: Option<Duration>,
    /// Its own id was invited as a channel because no catalog came: replaced by the real
    /// channels when a catalog does come, and given up on when the device refuses it.
    placeholder: bool,
    online: bool,
    last_seen: Duration,
    channels: Vec<(String, String)>,
    sessions: BTreeMap<String, Session>,
}

impl Device {
    fn new(addr: SocketAddr, link: Link, now: Duration) -> Device {
        Device { addr, link, catalog_deadline: None, placeholder: false, online: false, last_seen: now, channels: Vec::new(), sessions: BTreeMap::new() }
    }
}

/// The platform: every device and dialog, driven by its IO shell.
pub struct Platform {
    config: PlatformConfig,
    devices: BTreeMap<String, Device>,
    /// Digest nonces sent to devices not yet authenticated: id → (nonce, when).
    challenges: BTreeMap<String, (String, Duration)>,
    out: VecDeque<Output>,
    rng: u64,
    /// REGISTER budget per source address: (tokens, when last refilled).
    register_budget: BTreeMap<std::net::IpAddr, (f64, Duration)>,
    rate_limited: u64,
    cseq: u32,
    malformed: u64,
    /// (caller's clock, unix ms) at construction, for the `Date` header.
    epoch: (Duration, i64),
}

impl Platform {
    /// A platform with no devices. `now` is the time on the caller's monotonic clock (a
    /// `Duration` since an origin of its choosing) and `unix_ms` the wall-clock time then.
    pub fn new(config: PlatformConfig, now: Duration, unix_ms: i64) -> Platform {
        let rng = config.seed | 1;
        Platform { config, devices: BTreeMap::new(), challenges: BTreeMap::new(), out: VecDeque::new(), rng, register_budget: BTreeMap::new(), rate_limited: 0, cseq: 0, malformed: 0, epoch: (now, unix_ms) }
    }

    /// Devices remembered from an earlier run: listed offline until they register.
    pub fn remember_known(&mut self, now: Duration, records: impl IntoIterator<Item = DeviceRecord>) {
        for record in records {
            let link = self.default_link();
            let device = self.devices.entry(record.id).or_insert_with(|| Device::new(record.address, link, now));
            device.channels = record.channels;
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Over UDP to the configured listen address: see [`Platform::handle_on`].
    fn default_link(&self) -> Link {
        Link { transport: Transport::Udp, local: self.config.listen }
    }

    /// A datagram from `from` that reached the configured listen address.
    pub fn handle_bytes(&mut self, now: Duration, data: &[u8], from: SocketAddr) {
        let link = self.default_link();
        self.handle_bytes_on(now, data, from, link);
    }

    /// A datagram (or a framed TCP message's bytes) from `from`, over `link`.
    pub fn handle_bytes_on(&mut self, now: Duration, data: &[u8], from: SocketAddr, link: Link) {
        match SipMessage::parse(data) {
            Ok(Some((message, _))) => self.handle_on(now, message, from, link),
            Ok(None) => self.malformed(from, "incomplete SIP message in one datagram"),
            Err(e) => self.malformed(from, &e.to_string()),
        }
    }

    /// A message that could not be framed or parsed (counted and reported).
    pub fn malformed(&mut self, from: SocketAddr, reason: &str) {
        self.malformed += 1;
        self.event(Event::Malformed { from, reason: reason.to_string(), count: self.malformed });
    }

    /// A parsed message from `from` that reached the configured listen address over UDP.
    pub fn handle(&mut self, now: Duration, message: SipMessage, from: SocketAddr) {
        let link = self.default_link();
        self.handle_on(now, message, from, link);
    }

    /// A parsed message from `from`, over `link`.
    pub fn handle_on(&mut self, now: Duration, message: SipMessage, from: SocketAddr, link: Link) {
        match message.method().map(str::to_string).as_deref() {
            Some("REGISTER") => self.register(now, message, from, link),
            Some("MESSAGE") => self.message(now, message, from, link),
            Some("BYE") => self.device_bye(message, from),
            Some("ACK") => {}
            Some(other) => {
                self.event(Event::Unsupported { from, method: other.to_string() });
                self.send(SipMessage::response_to(&message, 405, "Method Not Allowed", None), from);
            }
            None => self.response(now, message),
        }
    }

    /// The API asks for a channel's media. Sends an INVITE unless a session is already
    /// inviting or live.
    pub fn invite(&mut self, device_id: &str, channel: &str) -> Result<(), String> {
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
            backoff: FIRST_BACKOFF,
            retry_at: None,
            wanted: true,
        });
        session.wanted = true;
        if matches!(session.state, SessionState::Inviting | SessionState::Live) {
            return Ok(());
        }
        self.send_invite(device_id, channel);
        Ok(())
    }

    /// The API ends a channel's session: BYE, and no retries.
    pub fn bye(&mut self, device_id: &str, channel: &str) -> Result<(), String> {
        let session = self.devices.get_mut(device_id).and_then(|d| d.sessions.get_mut(channel)).ok_or_else(|| format!("no session for {device_id}/{channel}"))?;
        session.wanted = false;
        self.send_bye(device_id, channel);
        Ok(())
    }

    /// The media connection carrying `ssrc` ended.
    pub fn media_ended(&mut self, now: Duration, ssrc: u32) {
        let found = self.devices.iter().find_map(|(id, d)| d.sessions.iter().find(|(_, s)| s.ssrc == ssrc && s.state == SessionState::Live && s.wanted).map(|(c, _)| (id.clone(), c.clone())));
        if let Some((device, channel)) = found {
            self.send_bye(&device, &channel);
            let retry_in = self.schedule_retry(now, &device, &channel);
            self.event(Event::MediaLost { device, channel, retry_in });
        }
    }

    /// Time passed: keepalive timeouts and due retries.
    pub fn tick(&mut self, now: Duration) {
        let timeout = self.config.keepalive_timeout;
        let silent: Vec<(String, Duration)> = self
            .devices
            .iter()
            .filter(|(_, d)| d.online && now.saturating_sub(d.last_seen) > timeout)
            .map(|(id, d)| (id.clone(), now.saturating_sub(d.last_seen)))
            .collect();
        for (device, silent) in silent {
            self.event(Event::KeepaliveTimeout { device: device.clone(), silent });
            self.end_device(&device);
        }
        let due: Vec<(String, String)> = self
            .devices
            .iter()
            .filter(|(_, d)| d.online)
            .flat_map(|(id, d)| d.sessions.iter().filter(|(_, s)| s.wanted && s.state == SessionState::Retrying && s.retry_at.is_some_and(|t| t <= now)).map(move |(c, _)| (id.clone(), c.clone())))
            .collect();
        for (device, channel) in due {
            self.send_invite(&device, &channel);
        }
        let uncatalogued: Vec<String> = self.devices.iter().filter(|(_, d)| d.online && d.catalog_deadline.is_some_and(|t| t <= now)).map(|(id, _)| id.clone()).collect();
        for id in uncatalogued {
            let Some(device) = self.devices.get_mut(&id) else { continue };
            device.catalog_deadline = None;
            if device.channels.is_empty() {
                device.channels.push((id.clone(), String::new()));
                device.placeholder = true;
            }
            let channels: Vec<String> = device.channels.iter().map(|(c, _)| c.clone()).collect();
            self.event(Event::CatalogTimeout { device: id.clone(), channels: channels.clone() });
            self.remember(&id);
            if self.config.auto_invite {
                for channel in channels {
                    let _ = self.invite(&id, &channel);
                }
            }
        }
    }

    /// When [`Platform::tick`] next has something to do (a retry or a keepalive deadline).
    pub fn next_deadline(&self) -> Option<Duration> {
        let keepalive = self.devices.values().filter(|d| d.online).map(|d| d.last_seen + self.config.keepalive_timeout);
        let retries = self.devices.values().filter(|d| d.online).flat_map(|d| d.sessions.values().filter(|s| s.wanted && s.state == SessionState::Retrying).filter_map(|s| s.retry_at));
        let catalogs = self.devices.values().filter(|d| d.online).filter_map(|d| d.catalog_deadline);
        keepalive.chain(retries).chain(catalogs).min()
    }

    /// Devices and channels, by device id.
    pub fn devices(&self, now: Duration) -> Vec<DeviceView> {
        self.devices
            .iter()
            .map(|(id, d)| DeviceView {
                id: id.clone(),
                address: d.addr,
                online: d.online,
                silent: now.saturating_sub(d.last_seen),
                channels: d
                    .channels
                    .iter()
                    .map(|(c, name)| {
                        let session = d.sessions.get(c);
                        ChannelView { id: c.clone(), name: name.clone(), state: session.map(|s| s.state).unwrap_or(SessionState::Idle), invites: session.map(|s| s.invites).unwrap_or(0) }
                    })
                    .collect(),
            })
            .collect()
    }

    fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    fn send(&mut self, message: SipMessage, to: SocketAddr) {
        self.out.push_back(Output::Send(message, to));
    }

    fn remember(&mut self, id: &str) {
        if let Some(device) = self.devices.get(id) {
            let record = DeviceRecord { id: id.to_string(), address: device.addr, channels: device.channels.clone() };
            self.out.push_back(Output::Remember(record));
        }
    }

    /// splitmix64.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn random_hex(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len + 16);
        while out.len() < len {
            out.push_str(&format!("{:016x}", self.random()));
        }
        out.truncate(len);
        out
    }

    /// Our address in headers sent over `link`: the address the device reached, or, when
    /// that is a wildcard, `media_ip` (the address devices are told to send media to).
    fn reachable(&self, link: Link) -> SocketAddr {
        if !link.local.ip().is_unspecified() {
            return link.local;
        }
        match self.config.media_ip.parse::<std::net::IpAddr>() {
            Ok(ip) if !ip.is_unspecified() => SocketAddr::new(ip, link.local.port()),
            _ => SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), link.local.port()),
        }
    }

    /// A Via header for a request to a device reached over `link`.
    fn via(&mut self, link: Link) -> String {
        let branch = self.random_hex(12);
        let transport = match link.transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        };
        format!("SIP/2.0/{transport} {};rport;branch=z9hG4bK{branch}", self.reachable(link))
    }

    fn link_of(&self, device: &str) -> Link {
        self.devices.get(device).map(|d| d.link).unwrap_or_else(|| self.default_link())
    }

    fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }

    /// `Date` header value in GB28181's style (`2026-11-25T18:00:00.000`, UTC).
    fn date(&self, now: Duration) -> String {
        let ms = self.epoch.1 + now.saturating_sub(self.epoch.0).as_millis() as i64;
        let c = Civil::from_unix_ms(ms);
        format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}", c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis)
    }

    /// The sender's device id if it is a valid one; else answers 400 and says why.
    fn device_id(&mut self, message: &SipMessage, from: SocketAddr) -> Option<String> {
        let checked = message.from_user().ok_or_else(|| "no user in From".to_string()).and_then(|id| crate::naming::check_gb_id(id).map(|()| id.to_string()));
        match checked {
            Ok(id) => Some(id),
            Err(reason) => {
                self.event(Event::BadId { from, reason });
                self.send(SipMessage::response_to(message, 400, "Bad Request", None), from);
                None
            }
        }
    }

    /// Takes one REGISTER from `from`'s budget; false when it has none left.
    fn register_allowed(&mut self, now: Duration, from: SocketAddr) -> bool {
        let ip = from.ip();
        if !self.register_budget.contains_key(&ip) && self.register_budget.len() >= MAX_SOURCES {
            let idle = self.register_budget.iter().min_by_key(|(_, (_, at))| *at).map(|(ip, _)| *ip);
            if let Some(idle) = idle {
                self.register_budget.remove(&idle);
            }
        }
        let (tokens, at) = self.register_budget.entry(ip).or_insert((REGISTER_BURST, now));
        *tokens = (*tokens + now.saturating_sub(*at).as_secs_f64() * REGISTER_RATE).min(REGISTER_BURST);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    fn register(&mut self, now: Duration, message: SipMessage, from: SocketAddr, link: Link) {
        if !self.register_allowed(now, from) {
            self.rate_limited += 1;
            self.event(Event::RateLimited { from, count: self.rate_limited });
            return;
        }
        let Some(id) = self.device_id(&message, from) else { return };
        if !self.devices.contains_key(&id) && self.devices.len() >= self.config.max_devices {
            // Full: the device offline longest makes room; with every device online, 503.
            let offline = self.devices.iter().filter(|(_, d)| !d.online).min_by_key(|(_, d)| d.last_seen).map(|(id, _)| id.clone());
            match offline {
                Some(old) => {
                    self.devices.remove(&old);
                    self.out.push_back(Output::Forget(old));
                }
                None => {
                    self.event(Event::TableFull { device: id, from });
                    self.send(SipMessage::response_to(&message, 503, "Service Unavailable", None), from);
                    return;
                }
            }
        }
        let expires = message
            .header("Expires")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .or_else(|| message.header("Contact").and_then(|c| sip::param(c, "expires")).and_then(|v| v.parse().ok()))
            .unwrap_or(3600);
        if !self.config.password.is_empty() {
            let nonce = self.challenges.get(&id).map(|(n, _)| n.clone());
            match (message.header("Authorization"), nonce) {
                // A challenge is due: none was answered yet, or the device repeats the
                // Authorization of an earlier login on a refresh (RFC 3261 §22.3), or its
                // challenge was forgotten. A fresh 401 (stale when it sent one) lets it log in.
                (authorization, None) => {
                    let nonce = self.random_hex(32);
                    if self.challenges.len() >= MAX_CHALLENGES {
                        let oldest = self.challenges.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| k.clone());
                        if let Some(oldest) = oldest {
                            self.challenges.remove(&oldest);
                        }
                    }
                    let stale = if authorization.is_some() { ",stale=TRUE" } else { "" };
                    let challenge = format!(r#"Digest realm="{}",nonce="{nonce}",algorithm=MD5{stale}"#, self.config.realm);
                    self.challenges.insert(id, (nonce, now));
                    self.send(SipMessage::response_to(&message, 401, "Unauthorized", None).with("WWW-Authenticate", challenge), from);
                    return;
                }
                (None, Some(_)) => {
                    // Asked again before answering: the same challenge.
                    let nonce = self.challenges.get(&id).map(|(n, _)| n.clone()).unwrap_or_default();
                    let challenge = format!(r#"Digest realm="{}",nonce="{nonce}",algorithm=MD5"#, self.config.realm);
                    self.send(SipMessage::response_to(&message, 401, "Unauthorized", None).with("WWW-Authenticate", challenge), from);
                    return;
                }
                (Some(authorization), Some(nonce)) => {
                    if let Err(reason) = sip::verify_digest(authorization, "REGISTER", &self.config.realm, &nonce, &self.config.password) {
                        self.event(Event::RegistrationRefused { device: id, from, reason });
                        self.send(SipMessage::response_to(&message, 403, "Forbidden", None), from);
                        return;
                    }
                    self.challenges.remove(&id);
                }
            }
        }
        let tag = self.random_hex(8);
        let date = self.date(now);
        self.send(SipMessage::response_to(&message, 200, "OK", Some(&tag)).with("Date", date).with("Expires", expires.to_string()), from);
        if expires == 0 {
            self.event(Event::Unregistered { device: id.clone(), from });
            self.end_device(&id);
            return;
        }
        let device = self.devices.entry(id.clone()).or_insert_with(|| Device::new(from, link, now));
        let first = !device.online;
        device.addr = from;
        device.link = link;
        device.online = true;
        device.last_seen = now;
        if first {
            self.event(Event::Registered { device: id.clone(), from });
            self.remember(&id);
            self.query_catalog(&id);
            if let Some(device) = self.devices.get_mut(&id) {
                device.catalog_deadline = Some(now + self.config.catalog_timeout);
            }
        }
    }

    fn query_catalog(&mut self, id: &str) {
        let Some((addr, link)) = self.devices.get(id).map(|d| (d.addr, d.link)) else { return };
        let cseq = self.next_cseq();
        let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<Query>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{cseq}</SN>\r\n<DeviceID>{id}</DeviceID>\r\n</Query>\r\n");
        let (via, tag, call) = (self.via(link), self.random_hex(8), self.random_hex(16));
        let c = &self.config;
        let message = SipMessage::request("MESSAGE", &format!("sip:{id}@{}", c.realm))
            .with("Via", via)
            .with("From", format!("<sip:{}@{}>;tag={tag}", c.server_id, c.realm))
            .with("To", format!("<sip:{id}@{}>", c.realm))
            .with("Call-ID", format!("{call}@estuary"))
            .with("CSeq", format!("{cseq} MESSAGE"))
            .with("Max-Forwards", "70")
            .with_body("Application/MANSCDP+xml", body);
        self.send(message, addr);
    }

    fn message(&mut self, now: Duration, message: SipMessage, from: SocketAddr, link: Link) {
        let Some(id) = self.device_id(&message, from) else { return };
        if !self.devices.get(&id).is_some_and(|d| d.online) {
            self.event(Event::NotRegistered { device: id, from });
            self.send(SipMessage::response_to(&message, 403, "Forbidden", None), from);
            return;
        }
        self.send(SipMessage::response_to(&message, 200, "OK", None), from);
        let body = String::from_utf8_lossy(&message.body).into_owned();
        let Some(device) = self.devices.get_mut(&id) else { return };
        device.last_seen = now;
        device.addr = from;
        device.link = link;
        if sip::xml_field(&body, "CmdType") != Some("Catalog") {
            // Keepalives only refresh `last_seen`; other notifications are acknowledged.
            return;
        }
        // Channel ids become stream names: only valid ones are taken.
        let items: Vec<(String, String)> = sip::catalog_items(&body).into_iter().filter(|(channel, _)| crate::naming::check_gb_id(channel).is_ok()).collect();
        let count = items.len();
        device.catalog_deadline = None;
        // The real catalog replaces the device-id placeholder, unless it lists that id.
        let drop_placeholder = device.placeholder && count > 0 && !items.iter().any(|(c, _)| *c == id);
        for (channel, name) in items {
            if !device.channels.iter().any(|(c, _)| *c == channel) {
                device.channels.push((channel, name));
            }
        }
        if drop_placeholder {
            device.placeholder = false;
            self.send_bye(&id, &id);
            if let Some(device) = self.devices.get_mut(&id) {
                device.sessions.remove(&id);
                device.channels.retain(|(c, _)| *c != id);
            }
        }
        let Some(device) = self.devices.get(&id) else { return };
        let channels: Vec<String> = device.channels.iter().map(|(c, _)| c.clone()).collect();
        self.event(Event::Catalog { device: id.clone(), channels: count });
        self.remember(&id);
        if self.config.auto_invite {
            for channel in channels {
                let _ = self.invite(&id, &channel);
            }
        }
    }

    fn device_bye(&mut self, message: SipMessage, from: SocketAddr) {
        let call_id = message.header("Call-ID").unwrap_or_default().to_string();
        self.send(SipMessage::response_to(&message, 200, "OK", None), from);
        let mut ended = Vec::new();
        for (id, device) in self.devices.iter_mut() {
            for (channel, session) in device.sessions.iter_mut().filter(|(_, s)| s.call_id == call_id) {
                session.state = SessionState::Idle;
                session.wanted = false;
                ended.push((id.clone(), channel.clone()));
            }
        }
        for (device, channel) in ended {
            self.event(Event::DeviceBye { device, channel });
        }
    }

    fn send_invite(&mut self, device_id: &str, channel: &str) {
        // GB28181's SSRC: "0" for live, five digits of the domain, four more digits. Those
        // four are drawn at random (from the seeded generator; the shell seeds it from the
        // OS) and not reused by a live session, so nobody can predict the next one and
        // connect first with it; media is also bound to the device's address.
        let realm_digits: String = self.config.realm.chars().filter(|c| c.is_ascii_digit()).skip(3).take(5).collect();
        let in_use: std::collections::BTreeSet<u32> = self.devices.values().flat_map(|d| d.sessions.values().filter(|s| s.state != SessionState::Idle).map(|s| s.ssrc)).collect();
        // A random start, then the next free serial: ends after at most 10,000 probes, and
        // when every serial is live the INVITE waits for a retry instead.
        let start = (self.random() % 10_000) as u32;
        let free = (0..10_000u32).map(|step| (start + step) % 10_000).map(|serial| {
            let text = format!("0{realm_digits:0>5}{serial:04}");
            let ssrc: u32 = text.parse().unwrap_or(serial);
            (text, ssrc)
        }).find(|(_, ssrc)| !in_use.contains(ssrc));
        let Some((ssrc_text, ssrc)) = free else {
            self.event(Event::InviteRefused { device: device_id.to_string(), channel: channel.to_string(), code: 503, retry_in: MAX_BACKOFF });
            if let Some(session) = self.devices.get_mut(device_id).and_then(|d| d.sessions.get_mut(channel)) {
                session.state = SessionState::Idle;
            }
            return;
        };
        let cseq = self.next_cseq();
        let (call_id, from_tag) = (format!("{}@estuary", self.random_hex(16)), self.random_hex(8));
        let contact = self.reachable(self.link_of(device_id));
        let via = self.via(self.link_of(device_id));
        let Some(device) = self.devices.get_mut(device_id) else { return };
        let addr = device.addr;
        let Some(session) = device.sessions.get_mut(channel) else { return };
        session.state = SessionState::Inviting;
        session.call_id = call_id.clone();
        session.from_tag = from_tag.clone();
        session.to_tag = None;
        session.ssrc = ssrc;
        session.invites += 1;
        session.retry_at = None;
        let attempt = session.invites;
        let c = &self.config;
        let (profile, tcp_attributes) = if c.media_udp { ("RTP/AVP", "") } else { ("TCP/RTP/AVP", "a=setup:passive\r\na=connection:new\r\n") };
        let sdp = format!(
            "v=0\r\no={channel} 0 0 IN IP4 {ip}\r\ns=Play\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=video {port} {profile} 96\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\n{tcp_attributes}y={ssrc_text}\r\n",
            ip = c.media_ip,
            port = c.media_port
        );
        let invite = SipMessage::request("INVITE", &format!("sip:{channel}@{}", c.realm))
            .with("Via", via)
            .with("From", format!("<sip:{}@{}>;tag={from_tag}", c.server_id, c.realm))
            .with("To", format!("<sip:{channel}@{}>", c.realm))
            .with("Call-ID", call_id)
            .with("CSeq", format!("{cseq} INVITE"))
            .with("Contact", format!("<sip:{}@{contact}>", c.server_id))
            .with("Max-Forwards", "70")
            .with("Subject", format!("{channel}:{ssrc_text},{}:0", c.server_id))
            .with_body("APPLICATION/SDP", sdp);
        self.out.push_back(Output::ExpectMedia { ssrc, device: device_id.to_string(), channel: channel.to_string(), from: addr.ip() });
        self.event(Event::Invite { device: device_id.to_string(), channel: channel.to_string(), ssrc, attempt });
        self.send(invite, addr);
    }

    fn response(&mut self, now: Duration, message: SipMessage) {
        let Some((cseq, method)) = message.cseq() else { return };
        let code = message.code().unwrap_or(0);
        if method != "INVITE" || code < 200 {
            return;
        }
        let call_id = message.header("Call-ID").unwrap_or_default().to_string();
        let found = self.devices.iter_mut().find_map(|(id, d)| d.sessions.iter_mut().find(|(_, s)| s.call_id == call_id).map(|(c, s)| (id.clone(), c.clone(), s, d.addr, d.link, d.placeholder)));
        let Some((device, channel, session, addr, link, has_placeholder)) = found else { return };
        let to = message.header("To").unwrap_or_default().to_string();
        session.to_tag = sip::param(&to, "tag").map(str::to_string);
        // A device that refuses its own id as a channel (4xx) will not change its mind.
        if has_placeholder && device == channel && (400..500).contains(&code) {
            session.state = SessionState::Idle;
            session.wanted = false;
            self.event(Event::InviteRefused { device, channel, code, retry_in: Duration::ZERO });
            return;
        }
        if !(200..300).contains(&code) {
            let retry_in = self.schedule_retry(now, &device, &channel);
            self.event(Event::InviteRefused { device, channel, code, retry_in });
            return;
        }
        // A 2xx retransmitted to a live session is ACKed again; one for a dialog already
        // ended (BYE sent) is ignored.
        if !matches!(session.state, SessionState::Inviting | SessionState::Live) {
            return;
        }
        session.state = SessionState::Live;
        session.backoff = FIRST_BACKOFF;
        // A device whose media leaves from another host than its SIP (a cascaded platform
        // with a separate media server, a multi-homed NVR) names it in its answer's SDP.
        let media_host = std::str::from_utf8(&message.body).ok().and_then(|sdp| sdp.lines().find_map(|l| l.trim().strip_prefix("c=IN IP4 ").or_else(|| l.trim().strip_prefix("c=IN IP6 ")))).and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok());
        let media_also = media_host.filter(|ip| *ip != addr.ip() && !ip.is_unspecified()).map(|from| Output::ExpectMedia { ssrc: session.ssrc, device: device.clone(), channel: channel.clone(), from });
        let (call_id, from_tag) = (session.call_id.clone(), session.from_tag.clone());
        let via = self.via(link);
        let c = &self.config;
        let ack = SipMessage::request("ACK", &format!("sip:{channel}@{}", c.realm))
            .with("Via", via)
            .with("From", format!("<sip:{}@{}>;tag={from_tag}", c.server_id, c.realm))
            .with("To", to)
            .with("Call-ID", call_id)
            .with("CSeq", format!("{cseq} ACK"))
            .with("Max-Forwards", "70");
        self.send(ack, addr);
        if let Some(also) = media_also {
            self.out.push_back(also);
        }
        self.event(Event::Established { device, channel });
    }

    fn schedule_retry(&mut self, now: Duration, device_id: &str, channel: &str) -> Duration {
        let Some(session) = self.devices.get_mut(device_id).and_then(|d| d.sessions.get_mut(channel)) else { return Duration::ZERO };
        let delay = session.backoff;
        session.state = SessionState::Retrying;
        session.retry_at = Some(now + delay);
        session.backoff = (session.backoff * 2).min(MAX_BACKOFF);
        delay
    }

    fn send_bye(&mut self, device_id: &str, channel: &str) {
        let Some(device) = self.devices.get_mut(device_id) else { return };
        let addr = device.addr;
        let Some(session) = device.sessions.get_mut(channel) else { return };
        let had_dialog = matches!(session.state, SessionState::Live | SessionState::Inviting);
        session.state = SessionState::Idle;
        session.retry_at = None;
        if !had_dialog {
            return;
        }
        let (call_id, from_tag, to_tag) = (session.call_id.clone(), session.from_tag.clone(), session.to_tag.clone());
        let link = self.link_of(device_id);
        let (via, cseq) = (self.via(link), self.next_cseq());
        let c = &self.config;
        let to = match to_tag {
            Some(tag) => format!("<sip:{channel}@{}>;tag={tag}", c.realm),
            None => format!("<sip:{channel}@{}>", c.realm),
        };
        let bye = SipMessage::request("BYE", &format!("sip:{channel}@{}", c.realm))
            .with("Via", via)
            .with("From", format!("<sip:{}@{}>;tag={from_tag}", c.server_id, c.realm))
            .with("To", to)
            .with("Call-ID", call_id)
            .with("CSeq", format!("{cseq} BYE"))
            .with("Max-Forwards", "70");
        self.event(Event::Bye { device: device_id.to_string(), channel: channel.to_string() });
        self.send(bye, addr);
    }

    fn end_device(&mut self, id: &str) {
        let channels: Vec<String> = self.devices.get(id).map(|d| d.sessions.keys().cloned().collect()).unwrap_or_default();
        for channel in channels {
            self.send_bye(id, &channel);
            if let Some(s) = self.devices.get_mut(id).and_then(|d| d.sessions.get_mut(&channel)) {
                s.wanted = false;
            }
        }
        if let Some(device) = self.devices.get_mut(id) {
            device.online = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: &str = "34020000001320000001";
    const CHANNEL: &str = "34020000001320000002";

    fn config(password: &str) -> PlatformConfig {
        PlatformConfig {
            listen: "127.0.0.1:5060".parse().unwrap(),
            server_id: "34020000002000000001".into(),
            realm: "3402000000".into(),
            password: password.into(),
            auto_invite: true,
            media_ip: "127.0.0.1".into(),
            media_port: 9000,
            media_udp: false,
            keepalive_timeout: Duration::from_secs(120),
            catalog_timeout: Duration::from_secs(3),
            seed: 7,
            max_devices: 100,
        }
    }

    fn camera() -> SocketAddr {
        "127.0.0.1:15060".parse().unwrap()
    }

    fn register(expires: u32, authorization: Option<String>) -> SipMessage {
        let mut m = SipMessage::request("REGISTER", "sip:34020000002000000001@3402000000")
            .with("Via", "SIP/2.0/UDP 127.0.0.1:15060;rport;branch=z9hG4bK1")
            .with("From", format!("<sip:{DEVICE}@3402000000>;tag=1"))
            .with("To", format!("<sip:{DEVICE}@3402000000>"))
            .with("Call-ID", "reg1")
            .with("CSeq", "1 REGISTER")
            .with("Expires", expires.to_string());
        if let Some(a) = authorization {
            m = m.with("Authorization", a);
        }
        m
    }

    /// A platform whose device registered, sent no catalog, and got its own id invited.
    fn placeholder_invited(t0: Duration) -> (Platform, SipMessage) {
        let mut p = Platform::new(config(""), t0, 1_764_000_000_000);
        p.handle(t0, register(3600, None), camera());
        drain(&mut p);
        p.tick(t0 + Duration::from_secs(3));
        let own = invite_of(&drain(&mut p));
        (p, own)
    }

    /// A bare REGISTER from device `id`.
    fn register_as(id: &str, call_id: &str) -> SipMessage {
        SipMessage::request("REGISTER", "sip:34020000002000000001@3402000000").with("From", format!("<sip:{id}@3402000000>;tag=1")).with("Call-ID", call_id.to_string()).with("CSeq", "1 REGISTER")
    }

    fn message(body: &str) -> SipMessage {
        SipMessage::request("MESSAGE", "sip:34020000002000000001@3402000000")
            .with("Via", "SIP/2.0/UDP 127.0.0.1:15060;rport;branch=z9hG4bK2")
            .with("From", format!("<sip:{DEVICE}@3402000000>;tag=2"))
            .with("To", "<sip:34020000002000000001@3402000000>")
            .with("Call-ID", "msg1")
            .with("CSeq", "20 MESSAGE")
            .with_body("Application/MANSCDP+xml", body.to_string())
    }

    fn catalog() -> SipMessage {
        message(&format!("<?xml version=\"1.0\"?>\r\n<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>1</SN>\r\n<DeviceID>{DEVICE}</DeviceID>\r\n<SumNum>1</SumNum>\r\n<DeviceList Num=\"1\">\r\n<Item>\r\n<DeviceID>{CHANNEL}</DeviceID>\r\n<Name>Gate</Name>\r\n</Item>\r\n</DeviceList>\r\n</Response>\r\n"))
    }

    fn drain(p: &mut Platform) -> Vec<Output> {
        std::iter::from_fn(|| p.poll_output()).collect()
    }

    fn sent(outputs: &[Output]) -> Vec<&SipMessage> {
        outputs.iter().filter_map(|o| if let Output::Send(m, _) = o { Some(m) } else { None }).collect()
    }

    fn label(m: &SipMessage) -> String {
        match (m.method(), m.code()) {
            (Some(method), _) => method.to_string(),
            (None, Some(code)) => code.to_string(),
            _ => "?".into(),
        }
    }

    fn labels(outputs: &[Output]) -> Vec<String> {
        sent(outputs).into_iter().map(label).collect()
    }

    /// An answer from the camera to `request` (INVITE) with `code`.
    fn answer(request: &SipMessage, code: u16) -> SipMessage {
        SipMessage::response_to(request, code, if code == 200 { "OK" } else { "Busy Here" }, Some("cam"))
    }

    /// Registers (with the digest dance when a password is set) and answers the catalog
    /// query; returns what the platform did after the catalog, which includes the INVITE.
    fn registered(p: &mut Platform, now: Duration) -> Vec<Output> {
        p.handle(now, register(3600, None), camera());
        let mut out = drain(p);
        if labels(&out) == ["401"] {
            let first = out;
            let challenge = sent(&first)[0].header("WWW-Authenticate").unwrap().to_string();
            let nonce = sip::param(&challenge, "nonce").unwrap().trim_matches('"').to_string();
            let response = sip::digest_response(DEVICE, "3402000000", "secret", "REGISTER", "sip:34020000002000000001@3402000000", &nonce);
            let auth = format!(r#"Digest username="{DEVICE}",realm="3402000000",nonce="{nonce}",uri="sip:34020000002000000001@3402000000",response="{response}",algorithm=MD5"#);
            p.handle(now, register(3600, Some(auth)), camera());
            out = drain(p);
        }
        assert_eq!(labels(&out), ["200", "MESSAGE"], "REGISTER answered, then the catalog query");
        assert!(out.iter().any(|o| matches!(o, Output::Remember(r) if r.id == DEVICE)));
        p.handle(now, catalog(), camera());
        drain(p)
    }

    fn invite_of(outputs: &[Output]) -> SipMessage {
        sent(outputs).into_iter().find(|m| m.method() == Some("INVITE")).cloned().expect("an INVITE")
    }

    #[test]
    fn digest_registration_then_catalog_then_invite_with_ssrc() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config("secret"), t0, 1_764_000_000_000);
        let out = registered(&mut p, t0);
        assert_eq!(labels(&out), ["200", "INVITE"]);
        let invite = invite_of(&out);
        let sdp = String::from_utf8(invite.body.to_vec()).unwrap();
        assert!(sdp.contains("m=video 9000 TCP/RTP/AVP 96"), "{sdp}");
        assert!(sdp.contains("a=setup:passive"));
        let y = sdp.lines().find_map(|l| l.strip_prefix("y=")).expect("y= line");
        assert!(y.len() == 10 && y.starts_with("020000"), "0 for live, digits 4-8 of the domain, four random digits: {y}");
        let ssrc: u32 = y.parse().unwrap();
        assert!(out.contains(&Output::ExpectMedia { ssrc, device: DEVICE.into(), channel: CHANNEL.into(), from: camera().ip() }));
        let view = p.devices(t0);
        assert_eq!(view[0].channels[0].state, SessionState::Inviting);
        assert_eq!(view[0].channels[0].name, "Gate");
    }

    #[test]
    fn wrong_password_gets_403_and_no_device_comes_online() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config("secret"), t0, 0);
        p.handle(t0, register(3600, None), camera());
        let challenge = drain(&mut p);
        assert_eq!(labels(&challenge), ["401"]);
        let nonce = sip::param(sent(&challenge)[0].header("WWW-Authenticate").unwrap(), "nonce").unwrap().trim_matches('"').to_string();
        let wrong = sip::digest_response(DEVICE, "3402000000", "guess", "REGISTER", "sip:34020000002000000001@3402000000", &nonce);
        p.handle(t0, register(3600, Some(format!(r#"Digest username="{DEVICE}",realm="3402000000",nonce="{nonce}",uri="sip:34020000002000000001@3402000000",response="{wrong}""#))), camera());
        let out = drain(&mut p);
        assert_eq!(labels(&out), ["403"]);
        assert!(out.iter().any(|o| matches!(o, Output::Event(Event::RegistrationRefused { .. }))));
        assert!(p.devices(t0).is_empty(), "a device that never authenticated is not in the table");
        // A keepalive from the refused device is refused too.
        p.handle(t0, message("<Notify><CmdType>Keepalive</CmdType></Notify>"), camera());
        assert_eq!(labels(&drain(&mut p)), ["403"]);
    }

    #[test]
    fn ok_is_acked_and_the_session_goes_live() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config(""), t0, 0);
        let invite = invite_of(&registered(&mut p, t0));
        p.handle(t0, SipMessage::response_to(&invite, 100, "Trying", None), camera());
        assert!(drain(&mut p).is_empty(), "a provisional answer changes nothing");
        p.handle(t0, answer(&invite, 200), camera());
        let out = drain(&mut p);
        assert_eq!(labels(&out), ["ACK"]);
        let ack = sent(&out)[0];
        assert_eq!(ack.header("Call-ID"), invite.header("Call-ID"));
        assert_eq!(ack.cseq().map(|c| c.0), invite.cseq().map(|c| c.0));
        assert!(ack.header("To").unwrap().contains("tag=cam"));
        assert_eq!(p.devices(t0)[0].channels[0].state, SessionState::Live);
    }

    #[test]
    fn media_loss_sends_bye_and_reinvites_after_a_growing_backoff() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config(""), t0, 0);
        let invite = invite_of(&registered(&mut p, t0));
        p.handle(t0, answer(&invite, 200), camera());
        drain(&mut p);
        let ssrc: u32 = String::from_utf8_lossy(&invite.body).lines().find_map(|l| l.strip_prefix("y=")).unwrap().trim().parse().unwrap();
        p.media_ended(t0, ssrc);
        let out = drain(&mut p);
        assert_eq!(labels(&out), ["BYE"]);
        assert!(sent(&out)[0].header("To").unwrap().contains("tag=cam"), "BYE inside the dialog");
        assert!(out.contains(&Output::Event(Event::MediaLost { device: DEVICE.into(), channel: CHANNEL.into(), retry_in: FIRST_BACKOFF })));
        assert_eq!(p.next_deadline(), Some(t0 + FIRST_BACKOFF));
        p.tick(t0 + Duration::from_millis(999));
        assert!(labels(&drain(&mut p)).is_empty(), "not before the backoff");
        p.tick(t0 + FIRST_BACKOFF);
        let out = drain(&mut p);
        assert_eq!(labels(&out), ["INVITE"]);
        let second = invite_of(&out);
        assert_ne!(second.header("Call-ID"), invite.header("Call-ID"), "a new dialog");
        let first_ssrc = invite.body.split(|b| *b == b'\n').find_map(|l| l.strip_prefix(b"y=")).map(|y| String::from_utf8_lossy(y).trim().to_string());
        assert!(out.iter().any(|o| matches!(o, Output::ExpectMedia { ssrc, .. } if Some(format!("{ssrc:010}")) != first_ssrc)), "a new SSRC for the new dialog");
        // Refused: retried after 2 s this time.
        let t1 = t0 + FIRST_BACKOFF;
        p.handle(t1, answer(&second, 486), camera());
        let out = drain(&mut p);
        assert!(out.contains(&Output::Event(Event::InviteRefused { device: DEVICE.into(), channel: CHANNEL.into(), code: 486, retry_in: Duration::from_secs(2) })));
        p.tick(t1 + Duration::from_secs(2));
        let third = invite_of(&drain(&mut p));
        p.handle(t1 + Duration::from_secs(2), answer(&third, 200), camera());
        assert_eq!(labels(&drain(&mut p)), ["ACK"]);
        assert_eq!(p.devices(t1)[0].channels[0].invites, 3);
        // Media of an older SSRC ending changes nothing.
        p.media_ended(t1, ssrc);
        assert!(drain(&mut p).is_empty());
    }

    #[test]
    fn keepalives_hold_the_device_and_silence_ends_it() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config(""), t0, 0);
        let invite = invite_of(&registered(&mut p, t0));
        p.handle(t0, answer(&invite, 200), camera());
        drain(&mut p);
        let t1 = t0 + Duration::from_secs(100);
        p.handle(t1, message("<Notify><CmdType>Keepalive</CmdType><SN>3</SN></Notify>"), camera());
        assert_eq!(labels(&drain(&mut p)), ["200"]);
        p.tick(t0 + Duration::from_secs(200));
        assert!(drain(&mut p).is_empty(), "the keepalive at 100 s holds it until 220 s");
        p.tick(t1 + Duration::from_secs(121));
        let out = drain(&mut p);
        assert_eq!(labels(&out), ["BYE"]);
        assert!(out.iter().any(|o| matches!(o, Output::Event(Event::KeepaliveTimeout { .. }))));
        assert!(!p.devices(t1)[0].online);
        // No retries for a device that is gone.
        p.tick(t1 + Duration::from_secs(600));
        assert!(drain(&mut p).is_empty());
    }

    #[test]
    fn unregister_and_device_bye_end_sessions_without_retries() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config(""), t0, 0);
        let invite = invite_of(&registered(&mut p, t0));
        p.handle(t0, answer(&invite, 200), camera());
        drain(&mut p);
        // The device hangs up by itself.
        let bye = SipMessage::request("BYE", "sip:x@y").with("Call-ID", invite.header("Call-ID").unwrap()).with("CSeq", "5 BYE").with("From", format!("<sip:{CHANNEL}@3402000000>;tag=cam")).with("To", "<sip:p@y>;tag=1");
        p.handle(t0, bye, camera());
        let out = drain(&mut p);
        assert_eq!(labels(&out), ["200"]);
        assert!(out.iter().any(|o| matches!(o, Output::Event(Event::DeviceBye { .. }))));
        p.media_ended(t0, 200_000_001);
        p.tick(t0 + Duration::from_secs(60));
        assert!(labels(&drain(&mut p)).is_empty(), "no re-INVITE after the device's BYE");
        // The API invites again, then the device unregisters: BYE, offline.
        p.invite(DEVICE, CHANNEL).unwrap();
        let again = invite_of(&drain(&mut p));
        p.handle(t0, answer(&again, 200), camera());
        drain(&mut p);
        p.handle(t0, register(0, None), camera());
        assert_eq!(labels(&drain(&mut p)), ["200", "BYE"]);
        assert!(!p.devices(t0)[0].online);
        assert_eq!(p.invite(DEVICE, CHANNEL), Err(format!("device {DEVICE} is offline")));
    }

    #[test]
    fn garbage_and_unknown_methods_are_reported() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config(""), t0, 0);
        p.handle_bytes(t0, b"\x00\x01garbage\r\n\r\n", camera());
        p.handle_bytes(t0, b"REGISTER sip:x SIP/2.0\r\nContent-Length: 50\r\n\r\nshort", camera());
        let out = drain(&mut p);
        assert!(matches!(&out[0], Output::Event(Event::Malformed { count: 1, .. })));
        assert!(matches!(&out[1], Output::Event(Event::Malformed { count: 2, .. })));
        p.handle(t0, SipMessage::request("SUBSCRIBE", "sip:x@y").with("CSeq", "1 SUBSCRIBE").with("Call-ID", "s"), camera());
        assert_eq!(labels(&drain(&mut p)), ["405"]);
        assert!(p.devices(t0).is_empty());
    }

    #[test]
    fn the_same_seed_replays_the_same_messages() {
        let run = || {
            let t0 = Duration::from_secs(1000);
            let mut p = Platform::new(config("secret"), t0, 1_764_000_000_000);
            let all = registered(&mut p, t0);
            all.into_iter().filter_map(|o| if let Output::Send(m, _) = o { Some(m.to_bytes()) } else { None }).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn a_device_that_ignores_the_catalog_query_gets_its_own_id_invited() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config(""), t0, 1_764_000_000_000);
        p.handle(t0, register(3600, None), camera());
        assert_eq!(labels(&drain(&mut p)), ["200", "MESSAGE"]);
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(3)));
        // One millisecond before the timeout nothing happens.
        p.tick(t0 + Duration::from_millis(2999));
        assert!(drain(&mut p).is_empty());
        p.tick(t0 + Duration::from_secs(3));
        let out = drain(&mut p);
        assert!(out.iter().any(|o| matches!(o, Output::Event(Event::CatalogTimeout { channels, .. }) if channels == &[DEVICE.to_string()])), "{out:?}");
        let invite = invite_of(&out);
        assert_eq!(invite.header("To"), Some(format!("<sip:{DEVICE}@3402000000>").as_str()));
        assert!(out.iter().any(|o| matches!(o, Output::ExpectMedia { channel, .. } if channel == DEVICE)));
        // The deadline is spent: a later tick invites nothing again.
        p.tick(t0 + Duration::from_secs(10));
        assert!(!labels(&drain(&mut p)).contains(&"INVITE".to_string()));
    }

    #[test]
    fn an_unprompted_catalog_cancels_the_timeout_and_is_invited() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config(""), t0, 1_764_000_000_000);
        p.handle(t0, register(3600, None), camera());
        drain(&mut p);
        p.handle(t0 + Duration::from_secs(1), catalog(), camera());
        let out = drain(&mut p);
        assert_eq!(invite_of(&out).header("To"), Some(format!("<sip:{CHANNEL}@3402000000>").as_str()));
        p.tick(t0 + Duration::from_secs(5));
        assert!(!drain(&mut p).iter().any(|o| matches!(o, Output::Event(Event::CatalogTimeout { .. }))));
    }

    #[test]
    fn requests_name_the_transport_and_a_reachable_address() {
        let t0 = Duration::from_secs(1000);
        let mut wildcard = config("");
        wildcard.listen = "0.0.0.0:5060".parse().unwrap();
        wildcard.media_ip = "192.0.2.5".into();
        let mut p = Platform::new(wildcard, t0, 1_764_000_000_000);
        // Over TCP, reached on 127.0.0.1: Via says TCP and names that address.
        let tcp = Link { transport: Transport::Tcp, local: "127.0.0.1:5060".parse().unwrap() };
        p.handle_on(t0, register(3600, None), camera(), tcp);
        let out = drain(&mut p);
        let query = sent(&out).into_iter().find(|m| m.method() == Some("MESSAGE")).unwrap().clone();
        assert!(query.header("Via").unwrap().starts_with("SIP/2.0/TCP 127.0.0.1:5060;"), "{:?}", query.header("Via"));
        p.handle_on(t0, catalog(), camera(), tcp);
        let invite = invite_of(&drain(&mut p));
        assert!(invite.header("Via").unwrap().starts_with("SIP/2.0/TCP 127.0.0.1:5060;"));
        assert_eq!(invite.header("Contact"), Some("<sip:34020000002000000001@127.0.0.1:5060>"));
        // Over UDP to the wildcard (the shell could not tell): media_ip, never 0.0.0.0.
        let mut p = Platform::new(p.config.clone(), t0, 1_764_000_000_000);
        p.handle(t0, register(3600, None), camera());
        let out = drain(&mut p);
        let query = sent(&out).into_iter().find(|m| m.method() == Some("MESSAGE")).unwrap().clone();
        assert!(query.header("Via").unwrap().starts_with("SIP/2.0/UDP 192.0.2.5:5060;"), "{:?}", query.header("Via"));
    }

    #[test]
    fn ids_that_are_not_20_digits_are_refused_and_leave_nothing() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config(""), t0, 0);
        let evil = SipMessage::request("REGISTER", "sip:34020000002000000001@3402000000")
            .with("From", "<sip:../../../../../../tmp/x/pwn@3402000000>;tag=1")
            .with("To", "<sip:x@3402000000>")
            .with("Call-ID", "evil")
            .with("CSeq", "1 REGISTER");
        p.handle(t0, evil, camera());
        let out = drain(&mut p);
        assert_eq!(labels(&out), ["400"]);
        assert!(out.iter().any(|o| matches!(o, Output::Event(Event::BadId { .. }))));
        assert!(p.devices(t0).is_empty());
        // A catalog naming a channel that is not 20 digits: that channel is not taken.
        registered(&mut p, t0);
        let bad_catalog = message(&format!("<Response><CmdType>Catalog</CmdType><DeviceID>{DEVICE}</DeviceID><DeviceList><Item><DeviceID>../../x</DeviceID><Name>x</Name></Item></DeviceList></Response>"));
        p.handle(t0, bad_catalog, camera());
        drain(&mut p);
        assert!(p.devices(t0)[0].channels.iter().all(|c| c.id == CHANNEL), "{:?}", p.devices(t0)[0].channels);
    }

    #[test]
    fn unauthenticated_registers_create_no_device_and_challenges_are_bounded() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config("secret"), t0, 0);
        for n in 0..(MAX_CHALLENGES as u64 + 500) {
            let id = format!("3402000000132{:07}", n);
            let m = register_as(&id, &format!("c{n}"));
            // From many sources (each within its rate), as a distributed flood would be.
            let source = SocketAddr::from(([10, 0, (n / 250) as u8, (n % 250) as u8], 5060));
            p.handle(t0 + Duration::from_millis(n), m, source);
        }
        assert!(p.devices(t0).is_empty());
        assert_eq!(p.challenges.len(), MAX_CHALLENGES);
    }

    #[test]
    fn a_full_device_table_refuses_new_devices() {
        let t0 = Duration::from_secs(1000);
        let mut cfg = config("");
        cfg.max_devices = 2;
        let mut p = Platform::new(cfg, t0, 0);
        for n in 0..3u64 {
            let id = format!("3402000000132{:07}", 100 + n);
            let m = register_as(&id, &format!("c{n}"));
            p.handle(t0, m, camera());
            let expected = if n < 2 { "200" } else { "503" };
            assert_eq!(labels(&drain(&mut p))[0], expected, "device {n}");
        }
        assert_eq!(p.devices(t0).len(), 2);
        // One goes offline: a new device takes its place, and the old one is forgotten.
        p.handle(t0, SipMessage::request("REGISTER", "sip:34020000002000000001@3402000000").with("From", "<sip:34020000001320000100@3402000000>;tag=1").with("Call-ID", "bye").with("CSeq", "2 REGISTER").with("Expires", "0"), camera());
        drain(&mut p);
        p.handle(t0, register_as("34020000001320000199", "new"), camera());
        let out = drain(&mut p);
        assert!(out.contains(&Output::Forget("34020000001320000100".into())), "{out:?}");
        assert_eq!(labels(&out)[0], "200");
    }

    #[test]
    fn a_late_catalog_replaces_the_placeholder_and_a_refused_placeholder_is_not_retried() {
        let t0 = Duration::from_secs(1000);
        let (mut p, own) = placeholder_invited(t0);
        // The device refuses its own id: no retry, ever.
        p.handle(t0 + Duration::from_secs(3), answer(&own, 404), camera());
        drain(&mut p);
        for s in 4..100 {
            p.tick(t0 + Duration::from_secs(s));
            assert!(!labels(&drain(&mut p)).contains(&"INVITE".to_string()), "re-INVITE at +{s} s");
        }
        // Its catalog comes late: the placeholder goes, the real channel is invited.
        p.handle(t0 + Duration::from_secs(100), catalog(), camera());
        let out = drain(&mut p);
        assert_eq!(invite_of(&out).header("To"), Some(format!("<sip:{CHANNEL}@3402000000>").as_str()));
        assert_eq!(p.devices(t0).iter().flat_map(|d| d.channels.iter().map(|c| c.id.clone())).collect::<Vec<_>>(), vec![CHANNEL.to_string()]);
        // A placeholder that was accepted is ended with a BYE when the catalog replaces it.
        let (mut p, own) = placeholder_invited(t0);
        p.handle(t0 + Duration::from_secs(3), answer(&own, 200), camera());
        drain(&mut p);
        p.handle(t0 + Duration::from_secs(5), catalog(), camera());
        let out = labels(&drain(&mut p));
        assert!(out.contains(&"BYE".to_string()) && out.contains(&"INVITE".to_string()), "{out:?}");
    }

    #[test]
    fn a_register_flood_from_one_source_is_cut_to_its_rate_unanswered() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config(""), t0, 0);
        let mut answered = 0;
        for n in 0..200u64 {
            let id = format!("3402000000132{n:07}");
            let m = register_as(&id, &format!("c{n}"));
            // 200 REGISTERs within one second.
            p.handle(t0 + Duration::from_millis(n * 5), m, camera());
            answered += labels(&drain(&mut p)).iter().filter(|l| *l == "200").count();
        }
        // The burst, plus the rate over the one second that passed.
        assert!((20..=31).contains(&answered), "{answered} answered");
        assert!(p.devices(t0).len() <= 31);
        // Another source has its own budget; and the budget comes back with time.
        let other: SocketAddr = "127.0.0.2:5060".parse().unwrap();
        p.handle(t0 + Duration::from_secs(1), register(3600, None), other);
        assert_eq!(labels(&drain(&mut p))[0], "200");
        p.handle(t0 + Duration::from_secs(10), register_as("34020000001329999999", "late"), camera());
        assert_eq!(labels(&drain(&mut p))[0], "200");
    }

    #[test]
    fn a_refresh_that_repeats_the_old_authorization_is_challenged_again_not_refused() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config("secret"), t0, 0);
        p.handle(t0, register(3600, None), camera());
        let challenge = drain(&mut p);
        let nonce = sip::param(sent(&challenge)[0].header("WWW-Authenticate").unwrap(), "nonce").unwrap().trim_matches('"').to_string();
        let digest = sip::digest_response(DEVICE, "3402000000", "secret", "REGISTER", "sip:34020000002000000001@3402000000", &nonce);
        let authorization = format!(r#"Digest username="{DEVICE}",realm="3402000000",nonce="{nonce}",uri="sip:34020000002000000001@3402000000",response="{digest}",algorithm=MD5"#);
        p.handle(t0, register(3600, Some(authorization.clone())), camera());
        assert_eq!(labels(&drain(&mut p))[0], "200");
        // The refresh sends the same Authorization: its nonce is spent, so a fresh, stale
        // challenge, not 403.
        p.handle(t0 + Duration::from_secs(1800), register(3600, Some(authorization)), camera());
        let out = drain(&mut p);
        assert_eq!(labels(&out), ["401"]);
        assert!(sent(&out)[0].header("WWW-Authenticate").unwrap().contains("stale=TRUE"));
        assert!(p.devices(t0)[0].online, "still registered meanwhile");
    }

    #[test]
    fn media_may_also_come_from_the_host_the_answer_names() {
        let t0 = Duration::from_secs(1000);
        let mut p = Platform::new(config(""), t0, 0);
        let invite = invite_of(&registered(&mut p, t0));
        let sdp = "v=0\r\no=x 0 0 IN IP4 192.0.2.9\r\ns=Play\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=video 9 TCP/RTP/AVP 96\r\n";
        p.handle(t0, answer(&invite, 200).with_body("APPLICATION/SDP", sdp.to_string()), camera());
        let out = drain(&mut p);
        assert!(out.iter().any(|o| matches!(o, Output::ExpectMedia { from, .. } if *from == "192.0.2.9".parse::<std::net::IpAddr>().unwrap())), "{out:?}");
    }
}
