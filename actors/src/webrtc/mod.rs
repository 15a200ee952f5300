//! WebRTC on one UDP port shared by every peer (SRS's 8000), ICE-lite.
//!
//! The peer connections are the sans-IO core of the webrtc-rs project (`rtc`): each session
//! task owns one `RTCPeerConnection`, feeds it datagrams, timeouts and the clock, and carries
//! out what it asks (datagrams to send, events, RTP/RTCP in and out). The `webrtc` crate's
//! async layer binds sockets per connection and has no single-port mux, so we keep the
//! socket ourselves:
//!
//! - [`serve`] reads the socket. A datagram from an address already bound to a session goes
//!   to that session's bounded inbox. A datagram from a new address must be a STUN Binding
//!   request whose USERNAME starts with the ufrag of a session we created (we choose every
//!   local ufrag); the address is then bound to that session. Anything else is counted and
//!   dropped.
//! - Sessions send on the shared socket.
//!
//! What exists so far is WHIP publish ([`whip`]); see docs/ARCHITECTURE.md for what is still
//! to come (WHEP, the AAC/Opus bridge).

mod addresses;
pub mod shared;
mod peer;
mod resend;
mod send;
pub mod whep;
pub mod whip;

pub use peer::{SessionAnswer, SignalError};

use bytes::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use crate::node::NodeContext;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// Datagrams waiting for one session.
const INBOX: usize = 1024;

/// WebRTC settings.
#[derive(Debug, Clone)]
pub struct RtcSettings {
    /// The UDP socket's address.
    pub listen: SocketAddr,
    /// The addresses put in our ICE candidates: what peers send to. Behind NAT, the public
    /// address. Empty: the listen address, or every interface address when that is the
    /// wildcard (see [`addresses`]).
    pub candidates: Vec<IpAddr>,
    /// A session whose ICE/DTLS does not connect within this time is dropped.
    pub connect_timeout: std::time::Duration,
    /// AAC bitrate of WebRTC publishers' audio (Opus transcoded), bit/s.
    pub aac_bitrate: u32,
    /// Opus bitrate for WebRTC players of AAC streams, bit/s.
    pub opus_bitrate: u32,
    /// WHIP and WHEP sessions at once (connecting or connected); more offers get 503.
    pub max_sessions: usize,
    /// A WHIP publisher whose last keyframe is older than this is asked for one (PLI), so
    /// RTMP, HLS and DASH players get GOPs from browsers, which send keyframes only when asked.
    /// Zero: only when a picture was lost or a WHEP player asked.
    pub pli_interval: std::time::Duration,
}

/// What a session receives from the socket reader.
pub(crate) struct Datagram {
    pub(crate) from: SocketAddr,
    /// The local address it was sent to, when the kernel said.
    pub(crate) to: Option<IpAddr>,
    pub(crate) data: Bytes,
}

/// The node's WebRTC socket: registered with the reader's runtime for reading only. Sessions
/// send on it directly (`sendmmsg`, from their own threads); were it registered for writing
/// too, every send's freed buffer space would wake the reader's thread (7,000 wakeups a
/// second with 100 players).
pub(crate) type SharedSocket = Arc<AsyncFd<std::net::UdpSocket>>;

struct Shared {
    socket: SharedSocket,
    settings: RtcSettings,
    /// Sessions by local ufrag.
    by_ufrag: Mutex<HashMap<String, mpsc::Sender<Datagram>>>,
    /// Sessions by the peer address that completed a STUN check.
    by_addr: Mutex<HashMap<SocketAddr, mpsc::Sender<Datagram>>>,
    /// Sessions by id (the WHIP resource), to end them.
    ends: Mutex<HashMap<String, tokio::sync::watch::Sender<bool>>>,
}

/// A node's WebRTC state: the UDP socket reader's routes (set when it starts) and the
/// keyframe requests of WHIP publishers.
#[derive(Default)]
pub struct RtcState {
    shared: OnceLock<Arc<Shared>>,
    /// Keyframe requests for WHIP publishers, by stream: WHEP players that join or lose
    /// packets ask through here, and the publisher's session sends a PLI (at most one per
    /// 300 ms). Entries of ended publishers go when the next publisher registers.
    keyframes: Mutex<HashMap<String, mpsc::Sender<()>>>,
}

impl RtcState {
    /// A WHIP publisher of `stream` takes keyframe requests on the returned channel until it
    /// drops it.
    pub(crate) fn take_keyframe_requests(&self, stream: &str) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        let mut map = lock(&self.keyframes);
        map.retain(|_, tx| !tx.is_closed());
        map.insert(stream.to_string(), tx);
        rx
    }

    /// Asks the WHIP publisher of `stream`, if there is one, for a keyframe. True if asked.
    pub(crate) fn request_keyframe(&self, stream: &str) -> bool {
        let mut map = lock(&self.keyframes);
        match map.get(stream) {
            Some(tx) if tx.is_closed() => {
                map.remove(stream);
                false
            }
            // A request already waiting covers this one too.
            Some(tx) => {
                let _ = tx.try_send(());
                true
            }
            None => false,
        }
    }

    /// The socket and settings, when WebRTC is on.
    pub(crate) fn socket(&self) -> Option<(SharedSocket, RtcSettings)> {
        self.shared.get().map(|s| (s.socket.clone(), s.settings.clone()))
    }

    /// Ends the session with this id (the WHIP resource's DELETE). False if there is none.
    pub fn end_session(&self, id: &str) -> bool {
        let Some(shared) = self.shared.get() else { return false };
        match lock(&shared.ends).get(id) {
            Some(tx) => {
                let _ = tx.send(true);
                true
            }
            None => false,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds the WebRTC UDP socket (at boot, so a busy port fails the start).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    crate::pktinfo::report_destinations(&socket)?;
    // Every peer's batch of a wakeup leaves through this one socket; a larger buffer (within
    // the system's `net.core.wmem_max`/`rmem_max`) keeps the keyframe bursts of many players
    // from meeting a full one.
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.set_send_buffer_size(4 << 20);
    let _ = sock.set_recv_buffer_size(4 << 20);
    Ok(socket)
}

/// Runs the socket reader. Call once, inside the actix system.
pub async fn serve(node: NodeContext, socket: std::net::UdpSocket, settings: RtcSettings) {
    // Registered for reading only (see `SharedSocket`). tokio deprecates this constructor in
    // favour of an `unsafe` one whose contract (the wrapped value owns its descriptor and keeps
    // it open) a `std::net::UdpSocket` meets by construction; the crate forbids `unsafe`.
    #[allow(deprecated)]
    let registered = AsyncFd::with_interest(socket, tokio::io::Interest::READABLE);
    let socket = match registered {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "WebRTC UDP socket unusable");
            return;
        }
    };
    let offered = addresses::candidates(&settings.candidates, settings.listen);
    let offered = offered.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ");
    let source = if settings.candidates.is_empty() { "interfaces" } else { "rtc.candidate" };
    tracing::info!(listen = %settings.listen, candidates = %offered, from = source, "WebRTC listening (UDP, ICE-lite)");
    let shared = Arc::new(Shared { socket: socket.clone(), settings, by_ufrag: Mutex::default(), by_addr: Mutex::default(), ends: Mutex::default() });
    if node.rtc.shared.set(shared.clone()).is_err() {
        tracing::error!("WebRTC socket reader started twice");
        return;
    }
    let mut buf = vec![0u8; 2048];
    let mut control = [0u8; crate::pktinfo::CONTROL_SPACE];
    let fd = std::os::fd::AsRawFd::as_raw_fd(socket.get_ref());
    let mut strays = 0u64;
    loop {
        let received = async {
            loop {
                let mut ready = socket.readable().await?;
                if let Ok(result) = ready.try_io(|_| crate::pktinfo::receive(fd, &mut buf, &mut control)) {
                    return result;
                }
            }
        }
        .await;
        let (n, from, to) = match received {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!(error = %e, "WebRTC receive error");
                continue;
            }
        };
        let data = Bytes::copy_from_slice(&buf[..n]);
        let known = lock(&shared.by_addr).get(&from).cloned();
        let target = match known {
            Some(tx) => Some(tx),
            None => estuary_protocols::stun::username(&data).and_then(|user| {
                let local = user.split(':').next().unwrap_or_default().to_string();
                let tx = lock(&shared.by_ufrag).get(&local).cloned()?;
                lock(&shared.by_addr).insert(from, tx.clone());
                Some(tx)
            }),
        };
        match target {
            Some(tx) => match tx.try_send(Datagram { from, to, data }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    node.stats.datagrams_dropped_webrtc.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(%from, "WebRTC session not keeping up; datagram dropped");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    lock(&shared.by_addr).remove(&from);
                }
            },
            None => {
                strays += 1;
                if strays == 1 || strays.is_power_of_two() {
                    tracing::debug!(%from, count = strays, "WebRTC datagram for no session dropped");
                }
            }
        }
    }
}


/// A session's registration with the socket reader; removed on drop.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    ufrag: String,
    id: String,
    pub(crate) inbox: mpsc::Receiver<Datagram>,
    pub(crate) end: tokio::sync::watch::Receiver<bool>,
}

impl Registration {
    /// The node's WebRTC socket.
    pub(crate) fn socket(&self) -> SharedSocket {
        self.shared.socket.clone()
    }

    pub(crate) fn new(rtc: &RtcState, ufrag: &str, id: &str) -> Result<Registration, String> {
        let shared = rtc.shared.get().ok_or("WebRTC is disabled (rtc.enabled = false)")?.clone();
        if lock(&shared.ends).len() >= shared.settings.max_sessions {
            return Err(format!("too many WebRTC sessions (rtc.max_sessions = {})", shared.settings.max_sessions));
        }
        let (tx, inbox) = mpsc::channel(INBOX);
        let (end_tx, end) = tokio::sync::watch::channel(false);
        lock(&shared.by_ufrag).insert(ufrag.to_string(), tx);
        lock(&shared.ends).insert(id.to_string(), end_tx);
        Ok(Registration { shared, ufrag: ufrag.to_string(), id: id.to_string(), inbox, end })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let shared = &self.shared;
        lock(&shared.by_ufrag).remove(&self.ufrag);
        lock(&shared.ends).remove(&self.id);
        // Addresses bound to this session go when their sender is found closed; remove
        // them now so a new session from the same address is not misrouted.
        lock(&shared.by_addr).retain(|_, tx| !tx.is_closed());
    }
}

/// `len` random letters and digits (thread_rng: a CSPRNG), for ICE credentials, session ids and
/// the console token (`[a-z0-9]`).
pub fn random_token(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..len).map(|_| b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)] as char).collect()
}
