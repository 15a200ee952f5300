//! A node's table of connected clients (publishers and players of every protocol), for the
//! API and stream statistics. Each session registers itself and holds a [`ClientGuard`]; the
//! entry disappears when the guard drops, however the session ends.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A client's id: unique for the life of the process.
pub type ClientId = u64;


/// What one client is doing.
#[derive(Debug)]
pub struct ClientRecord {
    /// Id.
    pub id: ClientId,
    /// `rtmp`, `http-flv`, ...
    pub protocol: &'static str,
    /// Peer address.
    pub peer: String,
    /// When it connected.
    pub connected: Instant,
    /// Bytes received from it.
    pub bytes_in: AtomicU64,
    /// Bytes sent to it.
    pub bytes_out: AtomicU64,
    /// Frames this client lost: a player's frames dropped for being slow, a datagram
    /// publisher's frames dropped because its stream's input queue was full.
    pub frames_dropped: AtomicU64,
    role: Mutex<Option<(Role, String)>>,
    transport: Mutex<Option<serde_json::Value>>,
    /// Byte counts sampled when the API asks for the rate: (when, in, out), oldest first,
    /// at most one per 5 s over the last 30 s.
    samples: Mutex<std::collections::VecDeque<(Instant, u64, u64)>>,
    kicked: std::sync::atomic::AtomicBool,
    kick: tokio::sync::Notify,
}

/// Publisher or player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends a stream.
    Publish,
    /// Receives a stream.
    Play,
}

/// Kilobits per second from `bytes` over `seconds` (0 for no time).
fn kbps(bytes: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        0.0
    } else {
        bytes as f64 * 8.0 / 1000.0 / seconds
    }
}

impl ClientRecord {
    /// Received and sent kilobits per second over about the last 30 s (SRS's `kbps.recv_30s`
    /// and `send_30s`): against the sample nearest before the last 30 s (samples are kept
    /// every 5 s at most, when asked), or since the connection opened when it is younger or
    /// was never asked. Sampled when asked (the API), so it costs the media path nothing.
    pub fn kbps_30s(&self) -> (f64, f64) {
        self.kbps_at(Instant::now(), self.bytes_in.load(Ordering::Relaxed), self.bytes_out.load(Ordering::Relaxed))
    }

    fn kbps_at(&self, now: Instant, bytes_in: u64, bytes_out: u64) -> (f64, f64) {
        const WINDOW: Duration = Duration::from_secs(30);
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        // Keep the newest sample at or beyond the window's start as the base, drop older ones.
        while samples.get(1).is_some_and(|(at, _, _)| now.duration_since(*at) >= WINDOW) {
            samples.pop_front();
        }
        let (since, base_in, base_out) = match samples.front() {
            // A connection younger than the window: everything since it opened.
            _ if now.duration_since(self.connected) <= WINDOW => (self.connected, 0, 0),
            // The last sample (at most 30 s, or the one just before the window), unless it is
            // too recent to measure a rate over (two calls in a row).
            Some(&oldest) if now.duration_since(oldest.0) >= Duration::from_secs(5) => oldest,
            // Otherwise (or never sampled) the average since the connection opened.
            _ => (self.connected, 0, 0),
        };
        if samples.back().is_none_or(|(at, _, _)| now.duration_since(*at) >= Duration::from_secs(5)) {
            samples.push_back((now, bytes_in, bytes_out));
        }
        let seconds = now.duration_since(since).as_secs_f64();
        (kbps(bytes_in.saturating_sub(base_in), seconds), kbps(bytes_out.saturating_sub(base_out), seconds))
    }

    /// Sets what the client does and on which stream (`app/stream`).
    pub fn set_role(&self, role: Role, stream: String) {
        *self.role.lock().unwrap_or_else(|e| e.into_inner()) = Some((role, stream));
    }

    /// Clears the role (the client stopped publishing/playing but is still connected).
    pub fn clear_role(&self) {
        *self.role.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The current role and stream.
    pub fn role(&self) -> Option<(Role, String)> {
        self.role.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets the transport's own statistics (SRT: RTT, loss, retransmits, rates).
    pub fn set_transport(&self, stats: serde_json::Value) {
        *self.transport.lock().unwrap_or_else(|e| e.into_inner()) = Some(stats);
    }

    /// The transport's statistics, when the protocol has any.
    pub fn transport(&self) -> Option<serde_json::Value> {
        self.transport.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Asks the client's session to disconnect (the API's `DELETE /clients/{id}`).
    pub fn kick(&self) {
        self.kicked.store(true, Ordering::SeqCst);
        self.kick.notify_one();
    }

    /// The client has been kicked (for sessions that poll instead of waiting).
    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::SeqCst)
    }

    /// Completes when the client has been kicked.
    pub async fn kicked(&self) {
        if self.kicked.load(Ordering::SeqCst) {
            return;
        }
        self.kick.notified().await;
    }

    /// Adds received bytes.
    pub fn add_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Adds sent bytes.
    pub fn add_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Keeps a client in the table while alive.
#[derive(Debug)]
pub struct ClientGuard {
    record: Arc<ClientRecord>,
    clients: Arc<Clients>,
}

impl ClientGuard {
    /// The record.
    pub fn record(&self) -> &Arc<ClientRecord> {
        &self.record
    }

    /// The id.
    pub fn id(&self) -> ClientId {
        self.record.id
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.clients.closed_bytes_in.fetch_add(self.record.bytes_in.load(Ordering::Relaxed), Ordering::Relaxed);
        self.clients.closed_bytes_out.fetch_add(self.record.bytes_out.load(Ordering::Relaxed), Ordering::Relaxed);
        self.clients.table().remove(&self.record.id);
    }
}

/// A node's client table.
#[derive(Debug)]
pub struct Clients {
    next_id: AtomicU64,
    table: Mutex<BTreeMap<ClientId, Arc<ClientRecord>>>,
    /// Bytes received from clients that have disconnected.
    pub closed_bytes_in: AtomicU64,
    /// Bytes sent to clients that have disconnected.
    pub closed_bytes_out: AtomicU64,
    stats: Arc<crate::node::stats::Stats>,
}

impl Clients {
    /// An empty table that counts connections in `stats`.
    pub fn new(stats: Arc<crate::node::stats::Stats>) -> Arc<Clients> {
        Arc::new(Clients { next_id: AtomicU64::new(1), table: Mutex::new(BTreeMap::new()), closed_bytes_in: AtomicU64::new(0), closed_bytes_out: AtomicU64::new(0), stats })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<ClientId, Arc<ClientRecord>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh id for an internal subscriber (a muxer, a recorder) that is not a client.
    pub fn allocate_id(&self) -> ClientId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a new client; it stays in the table while the guard lives.
    pub fn register(self: &Arc<Self>, protocol: &'static str, peer: String) -> ClientGuard {
        let record = Arc::new(ClientRecord {
            id: self.allocate_id(),
            protocol,
            peer,
            connected: Instant::now(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            role: Mutex::new(None),
            transport: Mutex::new(None),
            samples: Mutex::new(std::collections::VecDeque::new()),
            kicked: std::sync::atomic::AtomicBool::new(false),
            kick: tokio::sync::Notify::new(),
        });
        self.stats.inc("estuary_connections_total", &[("protocol", protocol)]);
        self.table().insert(record.id, record.clone());
        ClientGuard { record, clients: self.clone() }
    }

    /// All clients, ordered by id.
    pub fn snapshot(&self) -> Vec<Arc<ClientRecord>> {
        self.table().values().cloned().collect()
    }

    /// One client by id.
    pub fn get(&self, id: ClientId) -> Option<Arc<ClientRecord>> {
        self.table().get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_removes_entry_and_keeps_its_bytes() {
        let clients = Clients::new(Default::default());
        let guard = clients.register("rtmp", "127.0.0.1:5000".into());
        let id = guard.id();
        guard.record().set_role(Role::Play, "live/x".into());
        guard.record().add_out(10);
        assert_eq!(clients.get(id).unwrap().role(), Some((Role::Play, "live/x".into())));
        drop(guard);
        assert!(clients.get(id).is_none());
        assert_eq!(clients.closed_bytes_out.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn kbps_covers_about_the_last_30_seconds() {
        let clients = Clients::new(Default::default());
        let guard = clients.register("rtmp", "127.0.0.1:5000".into());
        let record = guard.record();
        let t0 = record.connected;
        let at = |s: u64| t0 + Duration::from_secs(s);
        // 10 s in, 125,000 bytes out: 100 kbit/s since the connection opened.
        assert_eq!(record.kbps_at(at(10), 0, 125_000), (0.0, 100.0));
        // Samples every 5 s at 100 kbit/s, then 20 s at 300 kbit/s: the last 30 s average
        // (10 s at 100 and 20 s at 300) is 233.3, not the whole connection's.
        let mut out = 125_000u64;
        for s in (15..=30).step_by(5) {
            out += 62_500;
            record.kbps_at(at(s), 0, out);
        }
        for s in (35..=50).step_by(5) {
            out += 187_500;
            record.kbps_at(at(s), 0, out);
        }
        let (_, send) = record.kbps_at(at(50), 0, out);
        assert!((send - 233.33).abs() < 0.1, "{send}");
        // Asked again only a minute later: against the last sample (at 50 s), not zero.
        let (_, send) = record.kbps_at(at(110), 0, out + 750_000);
        assert!((send - 100.0).abs() < 0.1, "{send}");
    }

    #[test]
    fn kbps_of_a_long_connection_never_asked_is_its_average() {
        let clients = Clients::new(Default::default());
        let guard = clients.register("rtmp", "127.0.0.1:5000".into());
        let record = guard.record();
        let (recv, _) = record.kbps_at(record.connected + Duration::from_secs(100), 1_250_000, 0);
        assert!((recv - 100.0).abs() < 0.1, "{recv}");
    }
}
