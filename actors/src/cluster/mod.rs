//! The cluster directory: origins that share one Redis, the only shared state.
//!
//! - **Registration.** Each node writes `estuary:node:<id>` (its role, advertised addresses,
//!   streams, clients and the time of its beat) every `cluster.heartbeat_ms`, with a time to
//!   live of three beats: a node that stops beating leaves the directory by itself.
//! - **Claims.** A publish on an origin claims `estuary:stream:<vhost>/<app>/<stream>` with a
//!   lease of `cluster.lease_ms`, atomically (a script: set when absent or already ours). A
//!   claim held by another node refuses the publish with the owner's name. The owner renews
//!   its claims on every beat while the stream has a publisher here, and deletes them (only if
//!   still its own) once it has had none for a lease; a dead owner's claims lapse by
//!   themselves, and the next publish anywhere takes over.
//! - **Events.** Claims and releases are published on `estuary:events` as JSON
//!   (`{"event":"publish"|"unpublish","stream":..,"node":..}`) for nodes that react to them.
//! - **Redis away.** A node keeps serving; a publish it cannot check is accepted (and logged),
//!   and claimed as soon as Redis answers again; a claim found taken by another node then is
//!   logged as a conflict (the earlier owner keeps the directory entry). The API and
//!   `/metrics` say the registry is unreachable; reconnection is tried on every beat.

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
/// How long one Redis operation may take before the registry counts as unreachable.
const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// Claims a stream for a node (or renews its own claim); answers the owner.
const CLAIM: &str = r"
local owner = redis.call('GET', KEYS[1])
if (not owner) or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return owner
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

/// A node's view of the cluster directory (see the module docs).
pub struct Directory {
    settings: ClusterSettings,
    client: Result<redis::Client, String>,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Streams this node claimed, and when (or when they were last seen published).
    claimed: Mutex<HashMap<String, Instant>>,
    health: Mutex<Health>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").field("node_id", &self.settings.node_id).field("redis", &self.settings.redis_url).finish()
    }
}

fn stream_key(stream: &str) -> String {
    format!("{PREFIX}stream:{stream}")
}

fn node_key(id: &str) -> String {
    format!("{PREFIX}node:{id}")
}

impl Directory {
    /// A directory client (it connects on first use).
    pub fn new(settings: ClusterSettings, stats: Arc<Stats>) -> Directory {
        let client = redis::Client::open(settings.redis_url.as_str()).map_err(|e| format!("bad cluster.redis {:?}: {e}", settings.redis_url));
        Directory { settings, client, connection: tokio::sync::Mutex::new(None), claimed: Mutex::default(), health: Mutex::default(), stats }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    /// The settings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let client = self.client.as_ref().map_err(Clone::clone)?;
        match tokio::time::timeout(OP_TIMEOUT, client.get_multiplexed_async_connection()).await {
            Ok(Ok(connection)) => {
                *slot = Some(connection.clone());
                Ok(connection)
            }
            Ok(Err(e)) => Err(format!("cannot connect to {}: {e}", self.settings.redis_url)),
            Err(_) => Err(format!("cannot connect to {}: no answer within {} ms", self.settings.redis_url, OP_TIMEOUT.as_millis())),
        }
    }

    /// Runs one operation against Redis, keeping the health state and the connection.
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, String>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let result = match self.connection().await {
            Ok(connection) => match tokio::time::timeout(OP_TIMEOUT, op(connection)).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(format!("{what}: {e}")),
                Err(_) => Err(format!("{what}: no answer within {} ms", OP_TIMEOUT.as_millis())),
            },
            Err(e) => Err(e),
        };
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(_) => {
                if !health.connected {
                    tracing::info!(redis = %self.settings.redis_url, node = %self.settings.node_id, "cluster registry reachable");
                }
                health.connected = true;
                health.last_ok_ms = Some(crate::unix_ms());
            }
            Err(e) => {
                if health.connected || health.last_error.is_none() {
                    tracing::warn!(redis = %self.settings.redis_url, error = %e, "cluster registry unreachable; this node keeps serving what it serves and retries on every beat");
                }
                health.connected = false;
                health.last_error = Some(e.clone());
                self.stats.inc("estuary_cluster_registry_errors_total", &[]);
                drop(health);
                // A broken connection is made again on the next call.
                if let Ok(mut slot) = self.connection.try_lock() {
                    *slot = None;
                }
            }
        }
        result
    }

    async fn claim_script(&self, stream: &str) -> Result<String, String> {
        let key = stream_key(stream);
        let (me, lease) = (self.settings.node_id.clone(), self.settings.lease.as_millis() as u64);
        self.run("claim", |mut c| async move { redis::Script::new(CLAIM).key(key).arg(me).arg(lease).invoke_async::<String>(&mut c).await }).await
    }

    async fn event(&self, event: &str, stream: &str) {
        let message = json!({ "event": event, "stream": stream, "node": self.settings.node_id }).to_string();
        let _ = self.run("publish event", |mut c| async move { redis::cmd("PUBLISH").arg(EVENTS).arg(message).query_async::<i64>(&mut c).await }).await;
    }

    /// Claims `stream` (`vhost/app/stream`) for a publish on this node. `Err` when another
    /// node owns it. When Redis cannot be asked, the publish is allowed (logged) and the
    /// claim is made on a later beat.
    pub async fn claim(&self, stream: &str) -> Result<(), Taken> {
        match self.claim_script(stream).await {
            Ok(owner) if owner == self.settings.node_id => {
                self.claimed.lock().unwrap_or_else(|e| e.into_inner()).insert(stream.to_string(), Instant::now());
                self.event("publish", stream).await;
                Ok(())
            }
            Ok(owner) => {
                self.stats.inc("estuary_cluster_publish_refused_total", &[]);
                Err(Taken { stream: stream.trim_start_matches("__defaultVhost__/").to_string(), owner })
            }
            Err(e) => {
                tracing::warn!(%stream, error = %e, "cluster registry unreachable: publish accepted here without a claim; it is claimed once the registry answers");
                self.claimed.lock().unwrap_or_else(|e| e.into_inner()).insert(stream.to_string(), Instant::now());
                Ok(())
            }
        }
    }

    async fn release(&self, stream: &str) {
        let key = stream_key(stream);
        let me = self.settings.node_id.clone();
        if self.run("release", |mut c| async move { redis::Script::new(RELEASE).key(key).arg(me).invoke_async::<i64>(&mut c).await }).await.is_ok() {
            tracing::info!(%stream, "cluster claim released");
            self.event("unpublish", stream).await;
        }
    }

    /// One beat: registration, then claims renewed for streams published here (`published`)
    /// and released for those without a publisher for a whole lease.
    pub async fn beat(&self, published: &[String], clients: usize) {
        let record = json!({
            "id": self.settings.node_id,
            "role": self.settings.role,
            "rtmp": self.settings.rtmp,
            "http": self.settings.http,
            "srt": self.settings.srt,
            "api": self.settings.api,
            "streams": published.len(),
            "clients": clients,
            "heartbeat_ms": crate::unix_ms(),
        })
        .to_string();
        let (key, ttl) = (node_key(&self.settings.node_id), self.settings.heartbeat.as_millis() as u64 * 3);
        if self.run("register", |mut c| async move { redis::cmd("SET").arg(key).arg(record).arg("PX").arg(ttl).query_async::<()>(&mut c).await }).await.is_err() {
            return;
        }
        let now = Instant::now();
        let claimed: Vec<(String, Instant)> = self.claimed.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (stream, since) in claimed {
            if published.contains(&stream) {
                match self.claim_script(&stream).await {
                    Ok(owner) if owner == self.settings.node_id => {
                        self.claimed.lock().unwrap_or_else(|e| e.into_inner()).insert(stream, now);
                    }
                    Ok(owner) => {
                        self.stats.inc("estuary_cluster_conflicts_total", &[]);
                        tracing::error!(%stream, %owner, "stream published here is claimed by another node (both took publishers while the registry was away); the directory keeps the earlier owner");
                    }
                    Err(_) => return,
                }
            } else if now.duration_since(since) >= self.settings.lease {
                self.claimed.lock().unwrap_or_else(|e| e.into_inner()).remove(&stream);
                self.release(&stream).await;
            }
        }
        // Streams published here without a claim (taken while the registry was away, or
        // published before this node joined) are claimed now.
        for stream in published {
            let known = self.claimed.lock().unwrap_or_else(|e| e.into_inner()).contains_key(stream);
            if !known {
                if let Err(taken) = self.claim(stream).await {
                    self.stats.inc("estuary_cluster_conflicts_total", &[]);
                    tracing::error!(stream = %taken.stream, owner = %taken.owner, "stream published here is claimed by another node; the directory keeps the earlier owner");
                }
            }
        }
    }

    /// Whether the registry answered the last operation, and its last error.
    pub fn health(&self) -> (bool, Option<String>, Option<i64>) {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        (health.connected, health.last_error.clone(), health.last_ok_ms)
    }

    async fn scan(&self, pattern: String) -> Result<Vec<(String, String)>, String> {
        self.run("scan", |mut c| async move {
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
