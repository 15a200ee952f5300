//! GB28181 signalling over UDP and TCP (SRS's 5060): the IO shell around the sans-IO
//! [`Platform`] of `estuary_protocols::gb28181`, which holds every device and dialog (see
//! there for the message flow, retries and timeouts).
//!
//! One task owns the UDP socket, the writers of SIP-over-TCP connections and the platform.
//! Datagrams, framed TCP messages, API commands (list, invite, bye), media-ended notices from
//! the media side and a one-second tick go in; the platform's outputs come out as datagrams
//! or TCP writes, SSRC routes for the media listener (`gb28181::expect`), device records for
//! sled and log lines (malformed messages: the first and then every power of two).

use estuary_protocols::gb28181::{DeviceRecord, Event, Link, Output, Platform, PlatformConfig, Transport};
use estuary_protocols::gb28181::sip::SipMessage;
use estuary_storage::StreamKey;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use crate::node::{Node, NodeContext};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// SIP server settings.
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// What the platform presents and asks of devices (its `seed` is replaced at start).
    pub platform: PlatformConfig,
    /// App of the streams.
    pub app: String,
    /// Stream name pattern: `[device]` and `[channel]` are replaced by their ids.
    pub stream_name: String,
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

pub(crate) enum Command {
    List(oneshot::Sender<Vec<DeviceStatus>>),
    Invite(String, String, oneshot::Sender<Result<String, String>>),
    Bye(String, String, oneshot::Sender<Result<(), String>>),
}

/// Media-ended notices waiting for the SIP task. One per ended media connection, so the
/// bound only matters if the SIP task stalls; a notice that does not fit is logged and the
/// session is left to the keepalive check.
const MEDIA_ENDED_QUEUE: usize = 1024;

/// Devices and channels.
pub async fn devices(node: &Node) -> Result<Vec<DeviceStatus>, String> {
    let tx = node.gb.commands.get().ok_or("GB28181 SIP is disabled")?;
    let (reply, rx) = oneshot::channel();
    tx.send(Command::List(reply)).await.map_err(|_| "SIP server stopped")?;
    rx.await.map_err(|_| "SIP server stopped".into())
}

/// Invites a channel; returns the stream name.
pub async fn invite(node: &Node, device: &str, channel: &str) -> Result<String, String> {
    let tx = node.gb.commands.get().ok_or("GB28181 SIP is disabled")?;
    let (reply, rx) = oneshot::channel();
    tx.send(Command::Invite(device.into(), channel.into(), reply)).await.map_err(|_| "SIP server stopped")?;
    rx.await.map_err(|_| "SIP server stopped".to_string())?
}

/// Ends a channel's session.
pub async fn bye(node: &Node, device: &str, channel: &str) -> Result<(), String> {
    let tx = node.gb.commands.get().ok_or("GB28181 SIP is disabled")?;
    let (reply, rx) = oneshot::channel();
    tx.send(Command::Bye(device.into(), channel.into(), reply)).await.map_err(|_| "SIP server stopped")?;
    rx.await.map_err(|_| "SIP server stopped".to_string())?
}

/// SIP-over-TCP connections open at once; more are closed on accept.
const MAX_TCP_CONNECTIONS: usize = 1024;
/// A SIP-over-TCP connection that completes no message for this long is closed (devices
/// send keepalives every 60 s by default; a REGISTER refresh comes sooner than this too).
const TCP_IDLE: Duration = Duration::from_secs(300);
/// Largest SIP message buffered from one TCP connection before it is dropped.
const TCP_BUFFER: usize = 256 * 1024;

/// Name in the restart table (`/api/v1/supervisors`).
const SUPERVISION_NAME: &str = "gb28181_sip";

/// The IO shell around [`Platform`]: sockets, the storage actor, the media side's SSRC table
/// and the log.
struct Shell {
    node: NodeContext,
    settings: SipSettings,
    platform: Platform,
    storage: Option<crate::storage::StorageHandle>,
    /// SIP over TCP: writers of the open connections, by peer address.
    tcp: HashMap<SocketAddr, mpsc::Sender<bytes::Bytes>>,
    socket: UdpSocket,
    /// Time zero of the platform's clock.
    origin: Instant,
}

impl Shell {
    /// Runs protocol code on a peer's message behind `catch_unwind`: a bug that panics on
    /// some input drops that message (logged with the peer and counted under
    /// `gb28181_sip` in the restart table), never the SIP server.
    fn guarded(&mut self, peer: SocketAddr, handle: impl FnOnce(&mut Platform)) {
        let platform = &mut self.platform;
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(platform))) {
            let what = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default();
            self.node.restarts.record(SUPERVISION_NAME);
            tracing::error!(%peer, panic = %what, "GB28181 SIP message made the platform panic; message dropped, server carries on");
        }
    }

    /// The platform's clock: time since the shell started.
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn stream_key(&self, device: &str, channel: &str) -> StreamKey {
        let name = self.settings.stream_name.replace("[device]", device).replace("[channel]", channel);
        StreamKey::new(&self.settings.app, &name)
    }

    /// Carries out everything the platform asked for.
    async fn flush(&mut self) {
        while let Some(output) = self.platform.poll_output() {
            match output {
                Output::Send(message, to) => self.send(&message, to).await,
                Output::ExpectMedia { ssrc, device, channel, from } => self.node.gb.expect(ssrc, self.stream_key(&device, &channel), Some(from)),
                Output::Remember(record) => {
                    if let Some(storage) = &self.storage {
                        storage.tell(crate::messages::PutGbDevice(estuary_storage::GbDeviceRecord {
                            id: record.id,
                            address: record.address.to_string(),
                            channels: record.channels,
                            registered_ms: crate::unix_ms(),
                        }));
                    }
                }
                Output::Forget(id) => {
                    tracing::info!(device = %id, "GB28181 device table full (gb28181.max_devices): forgot the device offline longest");
                    if let Some(storage) = &self.storage {
                        storage.tell(crate::messages::DeleteGbDevice(id));
                    }
                }
                Output::Event(event) => self.log(event),
            }
        }
    }

    fn log(&self, event: Event) {
        match event {
            Event::Registered { device, from } => tracing::info!(%device, %from, "GB28181 device registered"),
            Event::Unregistered { device, from } => tracing::info!(%device, %from, "GB28181 device unregistered"),
            Event::RegistrationRefused { device, from, reason } => tracing::warn!(%device, %from, %reason, "GB28181 registration refused"),
            Event::NotRegistered { device, from } => tracing::warn!(%device, %from, "MESSAGE from a device that is not registered; 403"),
            Event::Catalog { device, channels } => tracing::info!(%device, channels, "GB28181 catalog received"),
            Event::CatalogTimeout { device, channels } => tracing::info!(%device, channels = %channels.join(","), "GB28181 device sent no catalog; inviting its known channels (its own id when none)"),
            Event::Invite { device, channel, ssrc, attempt } => {
                let stream = self.stream_key(&device, &channel);
                tracing::info!(%device, %channel, %stream, ssrc, attempt, "GB28181 INVITE");
            }
            Event::Established { device, channel } => tracing::info!(%device, %channel, "GB28181 session established"),
            Event::InviteRefused { device, channel, code, retry_in } => tracing::warn!(%device, %channel, code, retry_in_ms = retry_in.as_millis() as u64, "GB28181 INVITE refused; will retry"),
            Event::MediaLost { device, channel, retry_in } => tracing::warn!(%device, %channel, retry_in_ms = retry_in.as_millis() as u64, "GB28181 media lost; BYE and re-INVITE"),
            Event::Bye { device, channel } => tracing::info!(%device, %channel, "GB28181 BYE"),
            Event::DeviceBye { device, channel } => tracing::info!(%device, %channel, "device ended a session (BYE)"),
            Event::KeepaliveTimeout { device, silent } => tracing::warn!(%device, silent_s = silent.as_secs(), "GB28181 device missed its keepalives; offline"),
            Event::Malformed { from, reason, count } => {
                if count == 1 || count.is_power_of_two() {
                    tracing::warn!(peer = %from, %reason, count, "malformed SIP message dropped");
                }
            }
            Event::Unsupported { from, method } => tracing::debug!(%from, %method, "SIP method not handled; 405"),
            Event::BadId { from, reason } => tracing::warn!(peer = %from, %reason, "SIP request refused (400)"),
            Event::RateLimited { from, count } => {
                if count == 1 || count.is_power_of_two() {
                    tracing::warn!(peer = %from, count, "REGISTERs over the per-source rate dropped unanswered");
                }
            }
            Event::TableFull { device, from } => tracing::warn!(%device, peer = %from, "GB28181 device table full (gb28181.max_devices); 503"),
        }
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

    fn status(&self) -> Vec<DeviceStatus> {
        self.platform
            .devices(self.now())
            .into_iter()
            .map(|d| DeviceStatus {
                channels: d
                    .channels
                    .into_iter()
                    .map(|c| ChannelStatus { stream: self.stream_key(&d.id, &c.id).to_string(), id: c.id, name: c.name, session: c.state.name(), invites: c.invites })
                    .collect(),
                id: d.id,
                address: d.address.to_string(),
                online: d.online,
                last_seen_s: d.silent.as_secs(),
            })
            .collect()
    }
}

/// A seed for nonces and tags that differs between runs.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}

/// Binds the SIP socket (at boot).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    // The destination of each datagram, for Via and Contact on a wildcard listen address.
    crate::pktinfo::report_destinations(&socket)?;
    Ok(socket)
}

enum TcpEvent {
    Open(SocketAddr, mpsc::Sender<bytes::Bytes>),
    /// A message from the peer, and our end of its connection.
    Message(SocketAddr, SipMessage, SocketAddr),
    Malformed(SocketAddr, String),
    Closed(SocketAddr),
}

/// One SIP-over-TCP connection: messages framed by Content-Length go to the server task;
/// what the server sends to this peer is written here.
async fn tcp_connection(socket: tokio::net::TcpStream, peer: SocketAddr, events: mpsc::Sender<TcpEvent>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(local) = socket.local_addr() else { return };
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
    let mut last_message = Instant::now();
    'read: loop {
        let remaining = (last_message + TCP_IDLE).saturating_duration_since(Instant::now());
        let n = match tokio::time::timeout(remaining, read.read(&mut chunk)).await {
            Err(_) => {
                tracing::info!(%peer, idle_s = TCP_IDLE.as_secs(), "SIP over TCP connection sent no complete message; closed");
                break;
            }
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        buffer.extend_from_slice(&chunk[..n]);
        if buffer.len() > TCP_BUFFER {
            let _ = events.send(TcpEvent::Malformed(peer, format!("more than {TCP_BUFFER} bytes without a complete message"))).await;
            break;
        }
        loop {
            // Keep-alive CRLFs between messages (RFC 5626) are skipped.
            while buffer.starts_with(b"\r\n") {
                buffer.drain(..2);
            }
            match SipMessage::parse(&buffer) {
                Ok(Some((message, used))) => {
                    buffer.drain(..used);
                    last_message = Instant::now();
                    if events.send(TcpEvent::Message(peer, message, local)).await.is_err() {
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
    node: NodeContext,
    socket: std::net::UdpSocket,
    tcp: Option<std::net::TcpListener>,
    settings: SipSettings,
    storage: Option<crate::storage::StorageHandle>,
    known: Vec<estuary_storage::GbDeviceRecord>,
) {
    let (tcp_tx, mut tcp_events) = mpsc::channel::<TcpEvent>(256);
    if let Some(listener) = tcp.and_then(|l| tokio::net::TcpListener::from_std(l).ok()) {
        let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            let mut refused = 0u64;
            while let Ok((socket, peer)) = listener.accept().await {
                use std::sync::atomic::Ordering;
                if open.load(Ordering::Relaxed) >= MAX_TCP_CONNECTIONS {
                    refused += 1;
                    if refused == 1 || refused.is_power_of_two() {
                        tracing::warn!(%peer, open = MAX_TCP_CONNECTIONS, refused, "SIP over TCP connection refused: too many open");
                    }
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                let (open, events) = (open.clone(), tcp_tx.clone());
                tokio::spawn(async move {
                    tcp_connection(socket, peer, events).await;
                    open.fetch_sub(1, Ordering::Relaxed);
                });
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
    node.restarts.register(SUPERVISION_NAME);
    let (command_tx, mut commands) = mpsc::channel(64);
    let _ = node.gb.commands.set(command_tx);
    let (media_tx, mut media) = mpsc::channel(MEDIA_ENDED_QUEUE);
    let _ = node.gb.media_ended.set(media_tx);
    tracing::info!(listen = %settings.platform.listen, server_id = %settings.platform.server_id, realm = %settings.platform.realm, auth = !settings.platform.password.is_empty(), "GB28181 SIP listening (UDP and TCP)");
    let config = PlatformConfig { seed: seed(), ..settings.platform.clone() };
    let mut platform = Platform::new(config, Duration::ZERO, crate::unix_ms());
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    platform.remember_known(Duration::ZERO, known.into_iter().map(|r| DeviceRecord { address: r.address.parse().unwrap_or(unknown), id: r.id, channels: r.channels }));
    let mut shell = Shell { node, settings, platform, storage, tcp: HashMap::new(), socket, origin: Instant::now() };
    let mut buf = vec![0u8; 65_536];
    let mut control = [0u8; crate::pktinfo::CONTROL_SPACE];
    let fd = std::os::fd::AsRawFd::as_raw_fd(&shell.socket);
    let listen = shell.settings.platform.listen;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            received = shell.socket.async_io(tokio::io::Interest::READABLE, || crate::pktinfo::receive(fd, &mut buf, &mut control)) => match received {
                Ok((n, from, to)) => {
                    let link = Link { transport: Transport::Udp, local: SocketAddr::new(to.unwrap_or(listen.ip()), listen.port()) };
                    let now = shell.now();
                    shell.guarded(from, |platform| platform.handle_bytes_on(now, &buf[..n], from, link));
                }
                Err(e) => tracing::debug!(error = %e, "SIP receive error"),
            },
            Some(command) = commands.recv() => match command {
                Command::List(reply) => { let _ = reply.send(shell.status()); }
                Command::Invite(device, channel, reply) => {
                    let result = shell.platform.invite(&device, &channel).map(|()| shell.stream_key(&device, &channel).to_string());
                    let _ = reply.send(result);
                }
                Command::Bye(device, channel, reply) => { let _ = reply.send(shell.platform.bye(&device, &channel)); }
            },
            Some(ssrc) = media.recv() => shell.platform.media_ended(shell.now(), ssrc),
            Some(event) = tcp_events.recv() => match event {
                TcpEvent::Open(peer, writer) => { shell.tcp.insert(peer, writer); }
                TcpEvent::Message(peer, message, local) => {
                    let now = shell.now();
                    shell.guarded(peer, |platform| platform.handle_on(now, message, peer, Link { transport: Transport::Tcp, local }));
                }
                TcpEvent::Malformed(peer, reason) => shell.platform.malformed(peer, &reason),
                TcpEvent::Closed(peer) => { shell.tcp.remove(&peer); }
            },
            _ = ticker.tick() => shell.platform.tick(shell.now()),
        }
        shell.flush().await;
    }
}
