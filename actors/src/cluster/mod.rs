//! The cluster directory: origins that share one Redis, the only shared state.
//!
//! - **Registration.** Each node writes `estuary:node:<id>` (its role, advertised addresses,
//!   streams, clients and the time of its beat) every `cluster.heartbeat_ms`, with a time to
//!   live of three beats: a node that stops beating leaves the directory by itself.
//! - **Claims.** A publish on an origin claims `estuary:stream:<vhost>/<app>/<stream>` with a
//!   lease of `cluster.lease_ms`, atomically (a script: set when absent or already ours). A
//!   claim held by another node refuses the publish with the owner's name. The owner renews
//!   its claims on every beat while the stream has a publisher here, and deletes them (only if
//!   still its own) at the first beat after the publisher left; a dead owner's claims lapse by
//!   themselves, and the next publish anywhere takes over.
//! - **Events.** Claims and releases are published on `estuary:events` as JSON
//!   (`{"event":"publish"|"unpublish","stream":..,"node":..}`) for nodes that react to them.
//! - **Redis away.** A node keeps serving; a publish it cannot check is accepted at once (and
//!   logged), and claimed as soon as Redis answers again; a claim found taken by another node
//!   then is logged once as a conflict (the earlier owner keeps the directory entry). The API
//!   and `/metrics` say the registry is unreachable. Only the beat connects (publishes never
//!   wait for a connection attempt), so the connection's I/O runs on the beat's thread, not on
//!   a media worker's.
//! - **Leaving.** On a clean shutdown a node deletes its registration and its claims at once.
//! - **Two processes with one id** (a copied data directory) are detected: each registration
//!   carries a random instance id, and a node that finds another live instance under its id
//!   logs it.

pub mod pull;

use crate::node::stats::Stats;
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Prefix of every key the cluster writes.
const PREFIX: &str = "estuary:";
/// The channel of publish/unpublish events.
pub const EVENTS: &str = "estuary:events";
/// How long one Redis operation may take before the registry counts as unreachable (the
/// configuration keeps `lease_ms` at least two beats plus this).
pub const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the API's directory scan may take.
const SCAN_TIMEOUT: Duration = Duration::from_secs(5);
/// Claims renewed per script call.
const RENEW_BATCH: usize = 500;

/// Claims a stream for a node (or renews its own claim); answers the owner.
const CLAIM: &str = r"
local owner = redis.call('GET', KEYS[1])
if (not owner) or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return owner
";

/// Claims or renews many streams at once (KEYS); answers their owners in order.
const CLAIM_MANY: &str = r"
local owners = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if (not owner) or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    owners[i] = ARGV[1]
  else
    owners[i] = owner
  end
end
return owners
";

/// Deletes a claim if it is still the node's own.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// What a node is in the cluster, and how others reach it.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `origin`.
    pub role: String,
    /// This node's id.
    pub node_id: String,
    /// `redis://host:port[/db]`.
    pub redis_url: String,
    /// `rtmp://host:port`, `http://host:port`, `srt://host:port`, `http://host:port` of the API.
    pub rtmp: String,
    /// HTTP streaming base URL.
    pub http: String,
    /// SRT address.
    pub srt: String,
    /// API base URL.
    pub api: String,
    /// A claim's lease.
    pub lease: Duration,
    /// Registration and renewal period.
    pub heartbeat: Duration,
    /// A pull stops this long after its last player left.
    pub idle: Duration,
    /// Shared by the cluster's nodes: pulls carry a token signed with it, which an origin
    /// accepts in place of its own play rules (empty: pulls are ordinary players).
    pub secret: String,
    /// An origin answers a play of a stream another origin owns with a redirect to the owner
    /// instead of pulling it.
    pub redirect: bool,
}

/// A pull as the API shows it.
#[derive(Debug, Clone)]
pub struct PullState {
    /// The owner pulled from.
    pub owner: String,
    /// Its RTMP address.
    pub upstream: String,
    /// `connecting`, `playing` or `looking up` (the upstream broke).
    pub state: &'static str,
    /// The last time a viewer without a connection (HLS, DASH) asked for the stream.
    pub touched: Instant,
    /// Upstream sessions resumed after a break.
    pub resumes: u64,
    /// A real publisher arrived here: the pull ends.
    pub stop: bool,
}

/// Why a publish was refused by the directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stream} is already published on node {owner}")]
pub struct Taken {
    /// The stream.
    pub stream: String,
    /// The node that owns it.
    pub owner: String,
}

#[derive(Debug, Default)]
struct Health {
    connected: bool,
    last_error: Option<String>,
    last_ok_ms: Option<i64>,
}

/// The connection, and a number that changes each time it is made (so a failure on an old
/// connection never throws away a newer one).
#[derive(Default)]
struct Slot {
    connection: Option<MultiplexedConnection>,
    generation: u64,
}

/// Checks a Redis URL the way the client will read it (at start-up, so a bad one stops the
/// node with a reason instead of leaving it without a registry).
pub fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url).map(|_| ()).map_err(|e| format!("{:?} is not a Redis URL the client accepts: {e}", redacted(url)))
}

/// `redis://user:secret@host:port/db` without its credentials, for logs and the API.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}***@{}", &url[..scheme + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// A node's view of the cluster directory (see the module docs).
pub struct Directory {
    settings: ClusterSettings,
    client: redis::Client,
    slot: Mutex<Slot>,
    /// Streams this node claimed, and when (or when they were last seen published).
    claimed: Mutex<HashMap<String, Instant>>,
    /// Streams published here but claimed by another node (logged once each).
    conflicts: Mutex<std::collections::HashSet<String>>,
    /// Streams this node pulls from their owners (published here, never claimed).
    pulls: Mutex<HashMap<String, PullState>>,
    /// Claims and releases of this node, one at a time (a release never deletes a claim
    /// made meanwhile).
    claiming: tokio::sync::Mutex<()>,
    /// This process's random id, in its registration.
    instance: String,
    /// The URL without credentials.
    shown_url: String,
    health: Mutex<Health>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").field("node_id", &self.settings.node_id).field("redis", &self.shown_url).finish()
    }
}

fn stream_key(stream: &str) -> String {
    format!("{PREFIX}stream:{stream}")
}

fn node_key(id: &str) -> String {
    format!("{PREFIX}node:{id}")
}

impl Directory {
    /// A directory client (the beat connects). `Err` for a URL the redis client refuses.
    pub fn new(settings: ClusterSettings, stats: Arc<Stats>) -> Result<Directory, String> {
        let shown_url = redacted(&settings.redis_url);
        let client = redis::Client::open(settings.redis_url.as_str()).map_err(|e| format!("bad cluster.redis {shown_url:?}: {e}"))?;
        let instance = format!("{:016x}", rand::random::<u64>());
        Ok(Directory {
            settings,
            client,
            slot: Mutex::default(),
            claimed: Mutex::default(),
            conflicts: Mutex::default(),
            pulls: Mutex::default(),
            claiming: tokio::sync::Mutex::new(()),
            instance,
            shown_url,
            health: Mutex::default(),
            stats,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    /// The settings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// The token a pull of `stream` (`vhost/app/stream`) presents: signed with
    /// `cluster.secret` over `cluster:vhost/app/stream` (never valid as a viewer's token, even
    /// with the same secret), valid for a minute; `None` without a secret.
    pub fn pull_token(&self, stream: &str) -> Option<String> {
        if self.settings.secret.is_empty() {
            return None;
        }
        let expiry = (crate::unix_ms() / 1000).max(0) as u64 + 60;
        Some(crate::access::auth::TokenSigner::new(&self.settings.secret).mint(crate::access::auth::Action::Play, &format!("cluster:{stream}"), expiry))
    }

    /// Whether `token` is a valid pull token for `stream` (`vhost/app/stream`).
    pub fn is_pull_token(&self, token: &str, stream: &str) -> bool {
        !self.settings.secret.is_empty() && crate::access::auth::TokenSigner::new(&self.settings.secret).verify(token, crate::access::auth::Action::Play, &format!("cluster:{stream}"), (crate::unix_ms() / 1000).max(0) as u64).is_ok()
    }

    /// Whether this node is an edge (it pulls and forwards, and claims nothing).
    pub fn is_edge(&self) -> bool {
        self.settings.role == "edge"
    }

    /// The RTMP address of the origin with the fewest published streams (ties: by id).
    pub async fn least_loaded_origin(&self) -> Option<String> {
        let nodes = self.scan(format!("{PREFIX}node:*")).await.ok()?;
        nodes
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_str::<Value>(&v).ok())
            .filter(|n| n["role"] == "origin")
            .min_by_key(|n| (n["streams"].as_u64().unwrap_or(u64::MAX), n["id"].as_str().unwrap_or_default().to_string()))
            .and_then(|n| n["rtmp"].as_str().map(String::from))
    }

    /// The Redis URL without credentials.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// The connection and its generation. Only `connect` (the beat) makes a new one; others
    /// fail at once when there is none, so a publish never waits on a connection attempt.
    async fn connection(&self, connect: bool) -> Result<(MultiplexedConnection, u64), String> {
        {
            let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(connection) = &slot.connection {
                return Ok((connection.clone(), slot.generation));
            }
        }
        if !connect {
            return Err("cluster registry not connected (the next beat tries again)".into());
        }
        let connection = match tokio::time::timeout(OP_TIMEOUT, self.client.get_multiplexed_async_connection()).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(format!("cannot connect to {}: {e}", self.shown_url)),
            Err(_) => return Err(format!("cannot connect to {}: no answer within {} ms", self.shown_url, OP_TIMEOUT.as_millis())),
        };
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.generation += 1;
        slot.connection = Some(connection.clone());
        Ok((connection, slot.generation))
    }

    /// Runs one operation against Redis, keeping the health state and the connection: a
    /// failed connection (I/O, timeout) is dropped and counts as the registry being
    /// unreachable; an error Redis answered with does neither.
    async fn run<T, F, Fut>(&self, what: &str, connect: bool, timeout: Duration, op: F) -> Result<T, String>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let (connection, generation) = match self.connection(connect).await {
            Ok(found) => found,
            Err(e) => {
                self.unhealthy(&e);
                return Err(e);
            }
        };
        let broken = |this: &Self, error: String| {
            let mut slot = this.slot.lock().unwrap_or_else(|e| e.into_inner());
            if slot.generation == generation {
                slot.connection = None;
            }
            drop(slot);
            this.unhealthy(&error);
            Err(error)
        };
        match tokio::time::timeout(timeout, op(connection)).await {
            Ok(Ok(value)) => {
                let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
                if !health.connected {
                    tracing::info!(redis = %self.shown_url, node = %self.settings.node_id, "cluster registry reachable");
                }
                health.connected = true;
                health.last_error = None;
                health.last_ok_ms = Some(crate::unix_ms());
                Ok(value)
            }
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() => broken(self, format!("{what}: {e}")),
            Ok(Err(e)) => {
                tracing::warn!(redis = %self.shown_url, error = %e, "{what} failed");
                Err(format!("{what}: {e}"))
            }
            Err(_) => broken(self, format!("{what}: no answer within {} ms", timeout.as_millis())),
        }
    }

    fn unhealthy(&self, error: &str) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if health.connected || health.last_error.is_none() {
            tracing::warn!(redis = %self.shown_url, %error, "cluster registry unreachable; this node keeps serving what it serves and retries on every beat");
        }
        health.connected = false;
        health.last_error = Some(error.to_string());
        self.stats.inc("estuary_cluster_registry_errors_total", &[]);
    }

    async fn claim_script(&self, stream: &str) -> Result<String, String> {
        let key = stream_key(stream);
        let (me, lease) = (self.settings.node_id.clone(), self.settings.lease.as_millis() as u64);
        self.run("claim", false, OP_TIMEOUT, |mut c| async move { redis::Script::new(CLAIM).key(key).arg(me).arg(lease).invoke_async::<String>(&mut c).await }).await
    }

    async fn event(&self, event: &str, stream: &str) {
        let message = json!({ "event": event, "stream": stream, "node": self.settings.node_id }).to_string();
        let _ = self.run("publish event", false, OP_TIMEOUT, |mut c| async move { redis::cmd("PUBLISH").arg(EVENTS).arg(message).query_async::<i64>(&mut c).await }).await;
    }

    fn display(stream: &str) -> String {
        stream.trim_start_matches("__defaultVhost__/").to_string()
    }

    /// Claims `stream` (`vhost/app/stream`) for a publish on this node. `Err` when another
    /// node owns it. When Redis cannot be asked, the publish is allowed (logged) and the
    /// claim is made on a later beat.
    pub async fn claim(&self, stream: &str) -> Result<(), Taken> {
        let _one_at_a_time = self.claiming.lock().await;
        match self.claim_script(stream).await {
            Ok(owner) if owner == self.settings.node_id => {
                let new = self.claimed.lock().unwrap_or_else(|e| e.into_inner()).insert(stream.to_string(), Instant::now()).is_none();
                if new {
                    self.event("publish", stream).await;
                }
                Ok(())
            }
            Ok(owner) => {
                self.stats.inc("estuary_cluster_publish_refused_total", &[]);
                Err(Taken { stream: Self::display(stream), owner })
            }
            Err(e) => {
                tracing::warn!(%stream, error = %e, "cluster registry unreachable: publish accepted here without a claim; it is claimed once the registry answers");
                self.claimed.lock().unwrap_or_else(|e| e.into_inner()).insert(stream.to_string(), Instant::now());
                Ok(())
            }
        }
    }

    /// Releases `stream` if it is still unpublished since `since` (a publish meanwhile
    /// renewed it) and still ours in Redis.
    async fn release(&self, stream: &str, since: Instant) {
        let _one_at_a_time = self.claiming.lock().await;
        {
            let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
            if claimed.get(stream) != Some(&since) {
                return;
            }
            claimed.remove(stream);
        }
        self.conflicts.lock().unwrap_or_else(|e| e.into_inner()).remove(stream);
        let key = stream_key(stream);
        let me = self.settings.node_id.clone();
        if let Ok(1) = self.run("release", false, OP_TIMEOUT, |mut c| async move { redis::Script::new(RELEASE).key(key).arg(me).invoke_async::<i64>(&mut c).await }).await {
            tracing::info!(%stream, "cluster claim released");
            self.event("unpublish", stream).await;
        }
    }

    /// One beat: registration, then claims renewed for streams published here (`published`;
    /// those published without a claim are claimed), and released for those without a
    /// publisher since the last beat.
    pub async fn beat(&self, published: &std::collections::HashSet<String>, clients: usize, cpu_percent: f64) {
        let record = json!({
            "id": self.settings.node_id,
            "instance": self.instance,
            "role": self.settings.role,
            "rtmp": self.settings.rtmp,
            "http": self.settings.http,
            "srt": self.settings.srt,
            "api": self.settings.api,
            "streams": published.len(),
            "clients": clients,
            "cpu_percent": (cpu_percent * 10.0).round() / 10.0,
            "heartbeat_ms": crate::unix_ms(),
        })
        .to_string();
        let (key, ttl) = (node_key(&self.settings.node_id), self.settings.heartbeat.as_millis() as u64 * 3);
        let previous = match self.run("register", true, OP_TIMEOUT, |mut c| async move { redis::cmd("SET").arg(key).arg(record).arg("PX").arg(ttl).arg("GET").query_async::<Option<String>>(&mut c).await }).await {
            Ok(previous) => previous,
            Err(_) => return,
        };
        if let Some(other) = previous.and_then(|p| serde_json::from_str::<Value>(&p).ok()).and_then(|p| p["instance"].as_str().map(String::from)) {
            if other != self.instance {
                tracing::error!(node = %self.settings.node_id, "another process registers under this node id (same cluster.node_id, or a copied data directory): claims of the two are indistinguishable; give each node its own id");
            }
        }
        if self.is_edge() {
            return;
        }
        // Renewals (and claims of streams published while the registry was away), in batches.
        let now = Instant::now();
        let pulled: std::collections::HashSet<String> = self.pulls.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        let mut wanted: Vec<String> = published.iter().filter(|s| !pulled.contains(*s)).cloned().collect();
        wanted.sort();
        for batch in wanted.chunks(RENEW_BATCH) {
            let keys: Vec<String> = batch.iter().map(|s| stream_key(s)).collect();
            let (me, lease) = (self.settings.node_id.clone(), self.settings.lease.as_millis() as u64);
            let owners = match self.run("renew", false, OP_TIMEOUT, |mut c| async move { redis::Script::new(CLAIM_MANY).key(keys).arg(me).arg(lease).invoke_async::<Vec<String>>(&mut c).await }).await {
                Ok(owners) => owners,
                Err(_) => return,
            };
            for (stream, owner) in batch.iter().zip(owners) {
                if owner == self.settings.node_id {
                    let new = self.claimed.lock().unwrap_or_else(|e| e.into_inner()).insert(stream.clone(), now).is_none();
                    self.conflicts.lock().unwrap_or_else(|e| e.into_inner()).remove(stream);
                    if new {
                        self.event("publish", stream).await;
                    }
                } else if self.conflicts.lock().unwrap_or_else(|e| e.into_inner()).insert(stream.clone()) {
                    self.stats.inc("estuary_cluster_conflicts_total", &[]);
                    tracing::error!(%stream, %owner, "stream published here is claimed by another node (both took publishers while the registry was away); the directory keeps the earlier owner");
                }
            }
        }
        // Claims whose stream has had no publisher here for a beat go (a publisher back later
        // claims again).
        let stale: Vec<(String, Instant)> = self
            .claimed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(stream, since)| !published.contains(*stream) && now.duration_since(**since) >= self.settings.heartbeat)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (stream, since) in stale {
            self.release(&stream, since).await;
        }
    }

    /// Follows the `estuary:events` channel (on its own connection, reconnecting every second
    /// while Redis is away) and hands each `publish` event of another node to `on_publish`
    /// with the stream (`vhost/app/stream`). Runs until the node stops.
    pub async fn follow_events(&self, on_publish: impl Fn(String)) {
        use futures_util::StreamExt;
        loop {
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(EVENTS).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match tokio::time::timeout(OP_TIMEOUT, subscribed).await {
                Ok(Ok(mut pubsub)) => {
                    tracing::debug!(channel = EVENTS, "following cluster events");
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(payload) = message.get_payload::<String>() else { continue };
                        let Ok(event) = serde_json::from_str::<Value>(&payload) else { continue };
                        if event["event"] == "publish" && event["node"] != self.settings.node_id.as_str() {
                            if let Some(stream) = event["stream"].as_str() {
                                on_publish(stream.to_string());
                            }
                        }
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "cannot follow cluster events yet"),
                Err(_) => tracing::debug!("cannot follow cluster events yet: no answer"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Leaves the directory at once (clean shutdown): the registration and every claim.
    pub async fn leave(&self) {
        let claims: Vec<(String, Instant)> = self.claimed.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (stream, since) in claims {
            self.release(&stream, since).await;
        }
        let key = node_key(&self.settings.node_id);
        if self.run("unregister", false, OP_TIMEOUT, |mut c| async move { redis::cmd("DEL").arg(key).query_async::<i64>(&mut c).await }).await.is_ok() {
            tracing::info!(node = %self.settings.node_id, "left the cluster");
        }
    }

    /// Whether this node pulls `stream`.
    pub fn is_pulling(&self, stream: &str) -> bool {
        self.pulls.lock().unwrap_or_else(|e| e.into_inner()).contains_key(stream)
    }

    /// A viewer without a connection (HLS, DASH) asked for pulled `stream` now.
    pub fn touch(&self, stream: &str) {
        if let Some(pull) = self.pulls.lock().unwrap_or_else(|e| e.into_inner()).get_mut(stream) {
            pull.touched = Instant::now();
        }
    }

    /// When a viewer without a connection last asked for pulled `stream`.
    pub fn last_touched(&self, stream: &str) -> Option<Instant> {
        self.pulls.lock().unwrap_or_else(|e| e.into_inner()).get(stream).map(|p| p.touched)
    }

    /// The pull of `stream`, if this node pulls it.
    pub fn pull_state(&self, stream: &str) -> Option<PullState> {
        self.pulls.lock().unwrap_or_else(|e| e.into_inner()).get(stream).cloned()
    }

    /// Updates the pull of `stream`.
    pub fn set_pull(&self, stream: &str, update: impl FnOnce(&mut PullState)) {
        if let Some(pull) = self.pulls.lock().unwrap_or_else(|e| e.into_inner()).get_mut(stream) {
            update(pull);
        }
    }

    /// Marks `stream` as pulled here from `owner` at `upstream`; `false` if it already was
    /// (one pull per stream).
    pub fn start_pulling(&self, stream: &str, owner: &str, upstream: &str) -> bool {
        let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        if pulls.contains_key(stream) {
            return false;
        }
        pulls.insert(stream.to_string(), PullState { owner: owner.to_string(), upstream: upstream.to_string(), state: "connecting", touched: Instant::now(), resumes: 0, stop: false });
        true
    }

    /// Asks the pull of `stream` to end (a real publisher arrived here).
    pub fn request_stop(&self, stream: &str) {
        self.set_pull(stream, |p| p.stop = true);
    }

    /// The pull of `stream` ended.
    pub fn stop_pulling(&self, stream: &str) {
        self.pulls.lock().unwrap_or_else(|e| e.into_inner()).remove(stream);
    }

    /// Streams pulled here now.
    pub fn pulls(&self) -> Vec<String> {
        let mut list: Vec<String> = self.pulls.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        list.sort();
        list
    }

    /// With `cluster.redirect` (origins only): the owner's registration when `stream` has no
    /// publisher here and another node owns it; players are sent there.
    pub async fn redirect_to(&self, stream: &str) -> Option<Value> {
        if !self.settings.redirect || self.is_edge() || self.is_pulling(stream) {
            return None;
        }
        self.owner_record(stream).await.map(|(_, record)| record)
    }

    /// The owner of `stream` when it is another node, and that node's RTMP address.
    pub async fn owner_address(&self, stream: &str) -> Option<(String, String)> {
        let (owner, record) = self.owner_record(stream).await?;
        Some((owner, record["rtmp"].as_str()?.to_string()))
    }

    /// The owner of `stream` when it is another node, and its registration.
    async fn owner_record(&self, stream: &str) -> Option<(String, Value)> {
        let key = stream_key(stream);
        let owner = self.run("look up owner", false, OP_TIMEOUT, |mut c| async move { redis::cmd("GET").arg(key).query_async::<Option<String>>(&mut c).await }).await.ok()??;
        if owner == self.settings.node_id {
            return None;
        }
        let node = node_key(&owner);
        let record = self.run("look up node", false, OP_TIMEOUT, |mut c| async move { redis::cmd("GET").arg(node).query_async::<Option<String>>(&mut c).await }).await.ok()??;
        Some((owner, serde_json::from_str(&record).ok()?))
    }

    /// Whether the registry answered the last operation, and its last error.
    pub fn health(&self) -> (bool, Option<String>, Option<i64>) {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        (health.connected, health.last_error.clone(), health.last_ok_ms)
    }

    async fn scan(&self, pattern: String) -> Result<Vec<(String, String)>, String> {
        self.run("scan", false, SCAN_TIMEOUT, |mut c| async move {
            let mut keys: Vec<String> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query_async(&mut c).await?;
                keys.extend(batch);
                if next == 0 || keys.len() > 100_000 {
                    break;
                }
                cursor = next;
            }
            // SCAN may return a key twice.
            keys.sort();
            keys.dedup();
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
            Ok(keys.into_iter().zip(values).filter_map(|(k, v)| v.map(|v| (k, v))).collect())
        })
        .await
    }

    /// The directory as `/api/v1/cluster` shows it: nodes and stream owners.
    pub async fn snapshot(&self) -> Result<(Vec<Value>, Vec<Value>), String> {
        let mut nodes: Vec<Value> = self.scan(format!("{PREFIX}node:*")).await?.into_iter().filter_map(|(_, v)| serde_json::from_str(&v).ok()).collect();
        nodes.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let mut streams: Vec<Value> = self
            .scan(format!("{PREFIX}stream:*"))
            .await?
            .into_iter()
            .map(|(k, owner)| json!({ "stream": k.trim_start_matches(&format!("{PREFIX}stream:")), "owner": owner }))
            .collect();
        streams.sort_by(|a, b| a["stream"].as_str().cmp(&b["stream"].as_str()));
        Ok((nodes, streams))
    }
}
