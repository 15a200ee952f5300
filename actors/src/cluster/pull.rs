//! Playing a stream that lives on another origin: the node pulls it from its owner over RTMP
//! (Estuary's own client, [`estuary_protocols::rtmp::client`]) and publishes it locally, so
//! every output (RTMP, HTTP-FLV/TS, HLS, DASH, SRT, WHEP) serves it as an ordinary stream.
//!
//! - One pull per stream per node, shared by all its players; the owner's client list shows
//!   one `cluster-pull` player per pulling node.
//! - A pull starts when a player asks for a stream that has no publisher here and that the
//!   directory says another node owns; it stops `cluster.edge_idle_ms` after its last player
//!   leaves, or when the owner's stream ends (players then wait, as for any stream in grace).
//! - A pulled stream is not claimed by the puller (the beat leaves it out).

use crate::messages::PublishedStreams;
use crate::node::clients::Role;
use crate::node::NodeContext;
use crate::registry::StreamRegistry;
use actix::Addr;
use estuary_protocols::rtmp::client::{ClientConfig, ClientEvent, ClientMode, ClientOutput, ClientSession};
use estuary_storage::StreamKey;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A pull whose stream has had no owner this long gives up.
const NO_OWNER_TIMEOUT: Duration = Duration::from_secs(15);
/// An upstream session that brings no media this long counts as broken.
const NO_MEDIA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a player that needs a live stream (HTTP-FLV/TS, SRT, WHEP) waits for a pull to
/// bring it.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes sure a stream owned elsewhere is being pulled here. `true` when a pull runs (or was
/// just started) for `key`; `false` when the stream is local, unowned, or the node is not in
/// a cluster.
pub async fn ensure(node: &NodeContext, registry: &Addr<StreamRegistry>, key: &StreamKey) -> bool {
    let Some(directory) = node.cluster.clone() else { return false };
    if directory.settings().redirect && !directory.is_edge() {
        // Players are redirected to the owner instead (see `redirect`).
        return false;
    }
    let stream = key.db_key();
    if directory.is_pulling(&stream) {
        // A player arriving counts as interest at once (before it is listed as a player), so
        // the pull does not stop under it.
        directory.touch(&stream);
        return true;
    }
    if registry.send(PublishedStreams).await.is_ok_and(|published| published.contains(key)) {
        return false;
    }
    let Some((owner, rtmp)) = directory.owner_address(&stream).await else { return false };
    if !directory.start_pulling(&stream, &owner, &rtmp) {
        return true;
    }
    spawn_pull(node.clone(), registry.clone(), key.clone(), owner, rtmp);
    true
}

/// Runs a pull (marked in the directory by the caller) on a worker.
fn spawn_pull(node: NodeContext, registry: Addr<StreamRegistry>, key: StreamKey, owner: String, rtmp: String) {
    tracing::info!(stream = %key, %owner, upstream = %rtmp, "pulling a stream from its owner");
    let worker = node.topology.workers.next();
    let counted = node.census.enter("cluster_pull");
    worker.spawn(async move {
        let _counted = counted;
        let result = run(&node, registry.clone(), &key, &rtmp).await;
        match &result {
            Ok(reason) => tracing::info!(stream = %key, %owner, %reason, "pull ended"),
            Err(e) => {
                node.stats.inc("estuary_cluster_pull_failures_total", &[]);
                tracing::warn!(stream = %key, %owner, error = %e, "pull failed");
            }
        }
        let Some(directory) = node.cluster.clone() else { return };
        // The pull stays marked until the local stream has let it go, so the beat never takes
        // the pulled stream for one published here.
        for _ in 0..40 {
            if !registry.send(PublishedStreams).await.is_ok_and(|published| published.contains(&key)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stopped_by_publisher = directory.pull_state(&key.db_key()).is_some_and(|p| p.stop);
        directory.stop_pulling(&key.db_key());
        // Players still here (one that arrived as the pull was ending, or players of a pull
        // that failed to start) get a new pull, once, after a pause if it failed.
        if !stopped_by_publisher && players(&node, &key) > 0 {
            if result.is_err() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if let Some((owner, rtmp)) = directory.owner_address(&key.db_key()).await {
                if directory.start_pulling(&key.db_key(), &owner, &rtmp) {
                    spawn_pull(node.clone(), registry.clone(), key.clone(), owner, rtmp);
                }
            }
        }
    });
}

/// With `cluster.redirect` on an origin: where a player of `key` should go instead (the
/// owner's registration), when `key` has no publisher here and another node owns it.
pub async fn redirect(node: &NodeContext, registry: &Addr<StreamRegistry>, key: &StreamKey) -> Option<serde_json::Value> {
    let directory = node.cluster.clone()?;
    if !directory.settings().redirect {
        return None;
    }
    if registry.send(PublishedStreams).await.is_ok_and(|published| published.contains(key)) {
        return None;
    }
    directory.redirect_to(&key.db_key()).await
}

/// A stream was just published on another node: players already waiting here for it (RTMP
/// players wait for streams nobody publishes yet) get it pulled at once.
pub async fn on_published_elsewhere(node: &NodeContext, registry: &Addr<StreamRegistry>, stream: &str) {
    let mut parts = stream.splitn(3, '/');
    let (Some(vhost), Some(app), Some(name)) = (parts.next(), parts.next(), parts.next()) else { return };
    let key = StreamKey { vhost: vhost.to_string(), app: app.to_string(), stream: name.to_string() };
    if players(node, &key) > 0 && ensure(node, registry, &key).await {
        tracing::info!(stream = %key, "players were waiting here for a stream published on another node; pulling it");
    }
}

/// Waits (at most `timeout`) until `key` has a publisher here.
pub async fn wait_live(node: &NodeContext, registry: &Addr<StreamRegistry>, key: &StreamKey, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if registry.send(PublishedStreams).await.is_ok_and(|published| published.contains(key)) {
            return true;
        }
        if !node.cluster.as_ref().is_some_and(|d| d.is_pulling(&key.db_key())) {
            // The pull failed (or never started): no reason to wait on.
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Players of `key` on this node.
fn players(node: &NodeContext, key: &StreamKey) -> usize {
    let name = key.to_string();
    node.clients.snapshot().iter().filter(|c| matches!(c.role(), Some((Role::Play, s)) if s == name)).count()
}

/// How a pulled stream's timestamps continue across upstream sessions: each new session's
/// first frame lands one frame after the last frame sent on.
#[derive(Default)]
struct Timeline {
    /// Added to every timestamp of the current session, in ms.
    offset_ms: i64,
    /// The last timestamp sent on (after the offset), ms.
    last_ms: Option<i64>,
    /// The next frame starts a new session.
    fresh: bool,
}

impl Timeline {
    fn place(&mut self, mut frame: estuary_protocols::media::MediaFrame) -> estuary_protocols::media::MediaFrame {
        use estuary_protocols::media::{Timebase, TrackKind};
        // Metadata and codec headers carry no time of the media (the owner sends metadata at
        // 0): only audio and video frames set the new session's offset.
        if frame.track == TrackKind::Data || frame.config {
            if !self.fresh && self.offset_ms != 0 {
                let shift = Timebase::MILLIS.rescale(self.offset_ms, frame.timebase);
                frame.dts += shift;
                frame.pts += shift;
            }
            return frame;
        }
        let dts_ms = frame.timebase.rescale(frame.dts, Timebase::MILLIS);
        if self.fresh {
            self.fresh = false;
            self.offset_ms = self.last_ms.map(|last| last + 40 - dts_ms).unwrap_or(0);
        }
        if self.offset_ms != 0 {
            let shift = Timebase::MILLIS.rescale(self.offset_ms, frame.timebase);
            frame.dts += shift;
            frame.pts += shift;
        }
        let out_ms = dts_ms + self.offset_ms;
        self.last_ms = Some(self.last_ms.map_or(out_ms, |last| last.max(out_ms)));
        frame
    }
}

/// Why one upstream session ended.
enum Ended {
    /// Nobody watches any more: the pull is over.
    Idle(String),
    /// The owner's stream or connection ended: look the stream up again.
    Upstream(String),
}

async fn run(node: &NodeContext, registry: Addr<StreamRegistry>, key: &StreamKey, rtmp: &str) -> Result<String, String> {
    let guard = node.clients.register("cluster-pull", rtmp.trim_start_matches("rtmp://").to_string());
    let idle_after = node.cluster.as_ref().map(|d| d.settings().idle).unwrap_or(Duration::from_secs(5));
    let mut pull = Pull { node, registry, key, guard, link: None, timeline: Timeline::default(), last_player: Instant::now(), idle_after };
    let mut upstream = rtmp.to_string();
    loop {
        let reason = match pull.session(&upstream).await {
            Ok(Ended::Idle(reason)) => return Ok(reason),
            Ok(Ended::Upstream(reason)) => reason,
            // Before anything was published here, a failure ends the pull (players get the
            // usual "not found"); after, it is an upstream break like any other.
            Err(e) if pull.link.is_none() => return Err(e),
            Err(e) => e,
        };
        tracing::warn!(stream = %key, %upstream, %reason, "upstream of a pulled stream ended; looking the stream up again (players stay connected)");
        if let Some(directory) = &node.cluster {
            directory.set_pull(&key.db_key(), |p| p.state = "looking up");
        }
        // The stream may be moving (its owner died, its publisher started again elsewhere):
        // look it up until it has an owner again, while somebody watches. The address that
        // just failed is tried again only every 2 s (a dead owner's claim lasts its lease).
        let failed_at = Instant::now();
        let mut pause = Duration::from_millis(250);
        loop {
            if let Some(reason) = pull.idle() {
                return Ok(reason);
            }
            // Nobody owns it any more (its lease lapsed and nobody published it again): the
            // local stream lets its players go through its ordinary grace.
            if failed_at.elapsed() >= NO_OWNER_TIMEOUT {
                return Ok(format!("no node has published the stream for {} s", NO_OWNER_TIMEOUT.as_secs()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            let Some(directory) = node.cluster.clone() else { return Ok(reason) };
            if let Some((owner, rtmp)) = directory.owner_address(&key.db_key()).await {
                if rtmp == upstream && failed_at.elapsed() < Duration::from_secs(2) {
                    continue;
                }
                tracing::info!(stream = %key, %owner, upstream = %rtmp, "pulled stream found again; resuming");
                node.stats.inc("estuary_cluster_pull_resumes_total", &[]);
                directory.set_pull(&key.db_key(), |p| {
                    p.owner = owner.clone();
                    p.upstream = rtmp.clone();
                    p.state = "connecting";
                    p.resumes += 1;
                });
                upstream = rtmp;
                break;
            }
        }
        pull.timeline.fresh = true;
    }
}

struct Pull<'a> {
    node: &'a NodeContext,
    registry: Addr<StreamRegistry>,
    key: &'a StreamKey,
    guard: crate::node::clients::ClientGuard,
    link: Option<crate::stream::PublisherLink>,
    timeline: Timeline,
    last_player: Instant,
    idle_after: Duration,
}

impl Pull<'_> {
    /// `Some(reason)` once nobody has watched for `idle_after`, or a real publisher arrived.
    fn idle(&mut self) -> Option<String> {
        let state = self.node.cluster.as_ref().and_then(|d| d.pull_state(&self.key.db_key()));
        if state.as_ref().is_some_and(|s| s.stop) {
            return Some("a publisher arrived here".into());
        }
        let touched = state.map(|s| s.touched);
        if players(self.node, self.key) > 0 || touched.is_some_and(|t| t.elapsed() < self.idle_after) {
            self.last_player = Instant::now();
            None
        } else if self.last_player.elapsed() >= self.idle_after {
            Some(format!("no player for {} ms", self.idle_after.as_millis()))
        } else {
            None
        }
    }

    /// One upstream session: connect, play, pass frames on until it ends.
    async fn session(&mut self, rtmp: &str) -> Result<Ended, String> {
        let key = self.key;
        let authority = rtmp.strip_prefix("rtmp://").ok_or_else(|| format!("owner's RTMP address {rtmp:?} is not rtmp://host:port"))?;
        let socket = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority)).await.map_err(|_| format!("connect to {authority} timed out"))?.map_err(|e| format!("connect to {authority}: {e}"))?;
        socket.set_nodelay(true).ok();
        let (mut read, mut write) = socket.into_split();
        let tc_url = format!("rtmp://{authority}/{}", key.app);
        // With `cluster.secret`, the play carries a token the owner accepts in place of its
        // own play rules (its tokens, CIDR lists and hooks are for viewers, not for nodes).
        let token = self.node.cluster.as_ref().and_then(|d| d.pull_token(&key.db_key()));
        let mut query: Vec<String> = Vec::new();
        if key.vhost != "__defaultVhost__" {
            query.push(format!("vhost={}", key.vhost));
        }
        if let Some(token) = token {
            query.push(format!("cluster_token={token}"));
        }
        let stream = if query.is_empty() { key.stream.clone() } else { format!("{}?{}", key.stream, query.join("&")) };
        let mut session = ClientSession::new(ClientConfig::new(&key.app, &tc_url, &stream, ClientMode::Play));
        let mut buf = vec![0u8; 64 * 1024];
        let mut check = tokio::time::interval(Duration::from_millis(500));
        let mut last_media = Instant::now();
        loop {
            while let Some(output) = session.poll_output() {
                match output {
                    ClientOutput::Transmit(bytes) => write.write_all(&bytes).await.map_err(|e| format!("write: {e}"))?,
                    ClientOutput::Event(ClientEvent::Playing) => {
                        if let Some(directory) = &self.node.cluster {
                            directory.set_pull(&key.db_key(), |p| p.state = "playing");
                        }
                        if self.link.is_some() {
                            continue;
                        }
                        // Published here as an ordinary stream; the link's drop unpublishes it.
                        let claimed = crate::attach::claim_publish(self.registry.clone(), key.clone(), self.guard.id(), "cluster-pull").await.map_err(|e| format!("cannot publish the pulled stream here: {e}"))?;
                        self.guard.record().set_role(Role::Publish, key.to_string());
                        self.link = Some(claimed);
                    }
                    ClientOutput::Event(ClientEvent::Frame(frame)) => {
                        last_media = Instant::now();
                        if let Some(link) = &self.link {
                            self.guard.record().add_in(frame.payload.len());
                            let frame = self.timeline.place(frame);
                            link.push(Arc::new(frame)).await.map_err(|_| "the local stream went away".to_string())?;
                        }
                    }
                    ClientOutput::Event(ClientEvent::Rejected { description, .. }) => return Err(format!("the owner refused: {description}")),
                    // The owner keeps its players through its publisher's grace (and closes them
                    // after): a publisher's blip is not a reason to leave.
                    ClientOutput::Event(_) => {}
                }
            }
            tokio::select! {
                read_result = read.read(&mut buf) => {
                    let n = match read_result {
                        Ok(n) => n,
                        Err(e) => return Ok(Ended::Upstream(format!("read: {e}"))),
                    };
                    if n == 0 {
                        return Ok(Ended::Upstream("the owner closed the connection".into()));
                    }
                    session.handle_input(&buf[..n]).map_err(|e| format!("RTMP: {e}"))?;
                }
                _ = check.tick() => {
                    if let Some(reason) = self.idle() {
                        return Ok(Ended::Idle(reason));
                    }
                    if last_media.elapsed() >= NO_MEDIA_TIMEOUT {
                        return Ok(Ended::Upstream(format!("no media from the owner for {} s", NO_MEDIA_TIMEOUT.as_secs())));
                    }
                }
            }
        }
    }
}
