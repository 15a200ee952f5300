//! The node context: everything the actors of one node share, built once (by the `estuary`
//! binary, or by a test) and handed down to every actor and session as a [`NodeContext`].
//!
//! Nothing in this crate keeps process-wide state: two nodes (or two roles) can run in one
//! process, each with its own context, and a handler can be tested with a context of its own.
//! Every table here that is keyed by something a peer or an API caller chooses has a bound
//! and evicts (see each table's docs).

pub mod bounded;
pub mod census;
pub mod clients;
pub mod connections;
pub mod outputs;
pub mod stats;
pub mod supervision;
pub mod worker_table;
pub mod workers;

use crate::access::{Access, AccessSettings};
use clients::Clients;
use crate::access::hooks::{HookSettings, Hooks};
use stats::Stats;
use supervision::Restarts;
use workers::Workers;
use actix::prelude::*;
use std::sync::Arc;

/// A node's shared state; cheap to clone.
pub type NodeContext = Arc<Node>;

/// The threads a node's actors run on (see docs/ARCHITECTURE.md, "Threads").
#[derive(Clone)]
pub struct Topology {
    /// Worker arbiters: stream actors (by key hash) and connection sessions (round robin).
    pub workers: Workers,
    /// HLS and DASH muxers.
    pub segmenter: ArbiterHandle,
    /// DVR writers and the janitor.
    pub dvr: ArbiterHandle,
    /// The SRT listener (it reads every SRT datagram of the node).
    pub srt: ArbiterHandle,
}

impl Topology {
    /// Starts `workers` worker arbiters (at least one) and the dedicated ones. Call inside an
    /// actix system.
    pub fn start(workers: usize) -> Topology {
        Topology { workers: Workers::start(workers), segmenter: Arbiter::new().handle(), dvr: Arbiter::new().handle(), srt: Arbiter::new().handle() }
    }
}

/// One node.
pub struct Node {
    /// Its threads.
    pub topology: Topology,
    /// Connected clients.
    pub clients: Arc<Clients>,
    /// Restart counts of supervised workers.
    pub restarts: Restarts,
    /// Counters for `/metrics`.
    pub stats: Arc<Stats>,
    /// HTTP callbacks.
    pub hooks: Arc<Hooks>,
    /// The access policy (CIDR rules, tokens, deciding hooks).
    pub access: Access,
    /// DVR switches set at runtime and the writers running.
    pub dvr: crate::dvr::DvrRuntime,
    /// HLS playlists of ended publishes, kept so the next publish continues them.
    pub hls: crate::hls::HlsHistory,
    /// Live packages (LL-HLS and DASH on demand), served from memory.
    pub packages: crate::package::LivePackages,
    /// Which HLS/DASH muxer of each stream is current (for disposing of ended outputs).
    pub outputs: outputs::OutputGenerations,
    /// Transcoders.
    pub transcoders: crate::transcode::Transcoders,
    /// AI tap feeds (decoded audio for models).
    pub taps: crate::tap::Taps,
    /// Listeners of streams' captions and timed metadata (server-sent events).
    pub events: crate::tap::Events,
    /// Transcoding settings for transcoders started by players (fallback renditions) and the
    /// API: set at boot, replaced by a configuration reload (a running transcoder keeps the
    /// settings it started with).
    pub transcode_settings: crate::settings::Reloadable<Option<Arc<crate::transcode::TranscodeSettings>>>,
    /// Held while a player starts a fallback rendition, so that two do not start one each.
    pub fallback_starting: tokio::sync::Mutex<()>,
    /// Forwarders.
    pub forwards: crate::forward::Forwards,
    /// Ingests.
    pub ingests: crate::ingest::Ingests,
    /// GB28181: announced SSRCs and the SIP server's command channel.
    pub gb: crate::gb28181::GbState,
    /// WebRTC: the UDP socket's routes and keyframe requests.
    pub rtc: crate::webrtc::RtcState,
    /// The cluster directory (origins only).
    pub cluster: Option<Arc<crate::cluster::Directory>>,
    /// Named vhosts with settings of their own (a client's URL host selects one, as in SRS).
    pub vhosts: crate::settings::Reloadable<std::collections::BTreeSet<String>>,
    /// Connections the node makes to its own RTMP listener for RTMPS clients: their real peers.
    pub proxied_peers: Arc<ProxiedPeers>,
    /// TCP connections open, against `node.max_connections` and `node.max_connections_per_ip`.
    pub connections: Arc<connections::ConnectionGate>,
    /// Actors and per-connection tasks alive, by kind (for leak checks).
    pub census: Arc<census::Census>,
}

/// The real peer of each loopback connection a TLS front end (RTMPS) makes to a listener of this
/// node, keyed by that connection's local address; the listener takes the entry on accept.
#[derive(Default, Debug)]
pub struct ProxiedPeers(std::sync::Mutex<std::collections::HashMap<std::net::SocketAddr, std::net::SocketAddr>>);

impl ProxiedPeers {
    /// Registers `peer` as the client behind the connection from `local`.
    pub fn insert(&self, local: std::net::SocketAddr, peer: std::net::SocketAddr) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(local, peer);
    }

    /// The client behind the connection from `local`, once.
    pub fn take(&self, local: &std::net::SocketAddr) -> Option<std::net::SocketAddr> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(local)
    }
}

/// What a node is built from (settings that actors read through the context).
#[derive(Default)]
pub struct NodeOptions {
    /// Worker arbiters (at least one).
    pub workers: usize,
    /// HTTP callbacks.
    pub hooks: HookSettings,
    /// The access policy.
    pub access: AccessSettings,
    /// A CA file forwarders trust for `rtmps://` besides the system's (tests' self-signed).
    pub forward_tls_ca_file: Option<String>,
    /// Forward destinations added through the API must be public addresses (`forward.deny_private`).
    pub forward_deny_private: bool,
    /// Cluster membership (`None`: standalone).
    pub cluster: Option<crate::cluster::ClusterSettings>,
    /// Named vhosts with settings of their own.
    pub vhosts: std::collections::BTreeSet<String>,
    /// Connection limits (0: none).
    pub connections: connections::ConnectionLimits,
}

impl Node {
    /// Builds a node's context. Call inside an actix system (it starts the arbiters).
    pub fn start(options: NodeOptions) -> NodeContext {
        let stats = Arc::new(Stats::default());
        let hooks = Arc::new(Hooks::new(options.hooks, stats.clone()));
        // The URL was checked at start-up (`cluster::check_url`).
        let cluster = options.cluster.and_then(|settings| match crate::cluster::Directory::new(settings, stats.clone()) {
            Ok(directory) => Some(Arc::new(directory)),
            Err(e) => {
                tracing::error!(error = %e, "cluster directory unavailable; this node runs standalone");
                None
            }
        });
        let connections = connections::ConnectionGate::new(options.connections, stats.clone());
        Arc::new(Node {
            topology: Topology::start(options.workers),
            clients: Clients::new(stats.clone()),
            restarts: Restarts::default(),
            access: Access::new(options.access, hooks.clone(), stats.clone(), cluster.clone()),
            hooks,
            stats,
            dvr: Default::default(),
            hls: Default::default(),
            packages: Default::default(),
            outputs: Default::default(),
            transcoders: Default::default(),
            taps: Default::default(),
            events: Default::default(),
            transcode_settings: Default::default(),
            fallback_starting: tokio::sync::Mutex::new(()),
            forwards: crate::forward::Forwards::new(options.forward_tls_ca_file, options.forward_deny_private),
            ingests: Default::default(),
            gb: Default::default(),
            rtc: Default::default(),
            cluster,
            vhosts: crate::settings::Reloadable::new(options.vhosts),
            proxied_peers: Default::default(),
            connections,
            census: Default::default(),
        })
    }

    /// A node with default settings and one worker, for tests.
    pub fn for_tests() -> NodeContext {
        Node::start(NodeOptions { workers: 1, ..NodeOptions::default() })
    }
}
