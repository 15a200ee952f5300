//! Forwarding (restreaming): a stream pushed on to other servers over RTMP, RTMPS (TLS via
//! rustls; Mozilla's roots plus `forward.tls_ca_file`) or SRT, each destination by its own
//! forwarder.
//!
//! A forwarder is a subscriber of the stream actor like any player, running as a task on the
//! forwarding arbiter. It always drains its subscription, connected or not, so the stream
//! actor never counts it as a slow player while the far end is down. It connects, sends the
//! codec headers, waits for a keyframe and then forwards every frame; when the destination
//! refuses, drops or stalls (a write that takes longer than 10 s), it retries with capped
//! exponential backoff (1 s doubling to 30 s) and resumes at the next keyframe. It stops when
//! the stream ends or the destination is removed.
//!
//! Destinations come from `[forward]` (per app, started when the stream is published), from
//! a backend asked on publish (`forward.backend`, SRS's idea: it answers with the URLs), and
//! from `POST /api/v1/forwards` (per stream, at runtime). A destination URL may contain
//! `[app]` and `[stream]`; an RTMP URL naming only an app gets the stream name appended, and
//! an SRT URL without a stream id gets `#!::r=<app>/<stream>,m=publish`.
//!
//! State (connecting, live, retrying with the next attempt time, last error, bytes sent,
//! connects and retries) is kept in a process-wide table for the API.

use crate::http_live::{Encoder, TsEncoder};
use crate::messages::FindStream;
use crate::registry::StreamRegistry;
use crate::stream::Subscription;
use crate::node::worker_table::{WorkerEntry, WorkerTable};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use estuary_protocols::media::{MediaFrame, TrackKind};
use estuary_protocols::rtmp::client::{ClientConfig, ClientEvent, ClientMode, ClientOutput, ClientSession};
use estuary_storage::StreamKey;
use serde::Serialize;
use crate::node::supervision::Backoff;
use crate::node::{Node, NodeContext};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits between reconnections: 1 s doubling to 30 s, back to 1 s once connected.
fn backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(30), Duration::from_secs(60))
}

/// A node's forwarders, and the extra CA file they trust.
#[derive(Default)]
pub struct Forwards {
    table: WorkerTable<ForwardStatus, (StreamKey, String)>,
    tls_ca_file: Option<String>,
    /// Destinations added through the API may not be private (see [`crate::access::private`]).
    deny_private: bool,
}

impl Forwards {
    /// An empty table; `tls_ca_file` (PEM) is trusted for `rtmps://` besides the system roots;
    /// with `deny_private`, destinations added through the API must be public addresses.
    pub fn new(tls_ca_file: Option<String>, deny_private: bool) -> Self {
        Forwards { table: WorkerTable::new(), tls_ca_file: tls_ca_file.filter(|p| !p.is_empty()), deny_private }
    }
}

/// Where a forwarder is.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ForwardState {
    /// Connecting to the destination.
    Connecting,
    /// Sending.
    Live,
    /// Waiting before the next attempt.
    Retrying {
        /// Unix ms of the next attempt.
        next_attempt_ms: i64,
    },
    /// Finished (stream ended or removed).
    Stopped,
}

/// What the API shows of one forwarder.
#[derive(Debug, Clone, Serialize)]
pub struct ForwardStatus {
    /// Id (for `DELETE /api/v1/forwards/{id}`).
    pub id: String,
    /// `app/stream`.
    pub stream: String,
    /// The destination as resolved, its stream key and query values masked
    /// ([`crate::access::secrets::mask_url`]).
    pub url: String,
    /// `config` or `api`.
    pub origin: &'static str,
    /// State.
    #[serde(flatten)]
    pub state: ForwardState,
    /// The last failure.
    pub last_error: Option<String>,
    /// Media bytes sent.
    pub bytes_sent: u64,
    /// Successful connections.
    pub connects: u64,
    /// Attempts that failed or connections that dropped.
    pub retries: u64,
}

type ForwardEntry = WorkerEntry<ForwardStatus, (StreamKey, String)>;

/// Every forwarder of this process's life, running or stopped, until removed.
pub fn list(node: &Node) -> Vec<ForwardStatus> {
    node.forwards.table.list()
}

/// Stops and removes forwarder `id`; false when unknown.
pub fn remove(node: &Node, id: u64) -> bool {
    node.forwards.table.remove(id)
}

/// Why a forward cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The destination URL is not one Estuary can forward to.
    #[error("{url}: {problem}")]
    BadDestination {
        /// The URL with `[app]`/`[stream]` filled in.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The stream registry is gone (the node is stopping).
    #[error("stream registry unavailable")]
    RegistryGone,
    /// No stream actor could be found or created.
    #[error("stream {0} not found")]
    NoStream(String),
    /// The stream actor stopped while subscribing.
    #[error("stream {0} is restarting, try again")]
    StreamRestarting(String),
    /// The stream refused the subscription.
    #[error(transparent)]
    Refused(#[from] crate::messages::PlayRefused),
    /// A destination added through the API is this machine or a private network.
    #[error("{0}")]
    Private(String),
}

/// A destination URL with `[app]`/`[stream]` filled in (see the module docs).
pub fn resolve(template: &str, key: &StreamKey) -> Result<Destination, ForwardError> {
    let url = template.replace("[app]", &key.app).replace("[stream]", &key.stream).replace("[vhost]", &key.vhost);
    let rtmp = url.strip_prefix("rtmp://").map(|r| (r, false)).or_else(|| url.strip_prefix("rtmps://").map(|r| (r, true)));
    if let Some((rest, tls)) = rtmp {
        let bad = |problem| ForwardError::BadDestination { url: url.clone(), problem };
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("expected rtmp://host[:port]/app[/stream]"))?;
        let (host, port) = split_host(authority, if tls { 443 } else { 1935 }).ok_or_else(|| bad("bad host or port"))?;
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let (app, stream) = match path.split_once('/') {
            Some((app, stream)) if !stream.is_empty() => (app.to_string(), stream.to_string()),
            _ => (path.trim_end_matches('/').to_string(), key.stream.clone()),
        };
        if app.is_empty() {
            return Err(bad("no app"));
        }
        let stream = match query {
            Some(q) => format!("{stream}?{q}"),
            None => stream,
        };
        let resolved = format!("{}://{}/{app}/{stream}", if tls { "rtmps" } else { "rtmp" }, host_port(&host, port));
        Ok(Destination::Rtmp { tls, host, port, app, stream, url: resolved })
    } else if let Some(rest) = url.strip_prefix("srt://") {
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, port) = split_host(authority.trim_end_matches('/'), 10080).ok_or_else(|| ForwardError::BadDestination { url: url.clone(), problem: "bad host or port" })?;
        let stream_id = query.split('&').find_map(|kv| kv.strip_prefix("streamid=")).map(str::to_string).unwrap_or_else(|| format!("#!::r={}/{},m=publish", key.app, key.stream));
        let latency = query.split('&').find_map(|kv| kv.strip_prefix("latency=")).and_then(|v| v.parse::<u64>().ok()).map(Duration::from_micros).unwrap_or(Duration::from_millis(120));
        let resolved = format!("srt://{}?streamid={stream_id}", host_port(&host, port));
        Ok(Destination::Srt { host, port, stream_id, latency, url: resolved })
    } else {
        Err(ForwardError::BadDestination { url, problem: "only rtmp://, rtmps:// and srt:// destinations are supported" })
    }
}

/// `host:port`, an IPv6 address in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn split_host(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() {
        return None;
    }
    // An IPv6 literal: [addr] or [addr]:port (the host is kept without its brackets).
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => default_port,
            other => other.strip_prefix(':')?.parse().ok()?,
        };
        return (!host.is_empty()).then(|| (host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => None,
        None => Some((authority.to_string(), default_port)),
    }
}

/// A resolved destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// RTMP publish (RTMPS when `tls`).
    Rtmp {
        /// Over TLS.
        tls: bool,
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// App.
        app: String,
        /// Stream (with query).
        stream: String,
        /// The URL, for display.
        url: String,
    },
    /// MPEG-TS over SRT, as caller.
    Srt {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Stream id.
        stream_id: String,
        /// Latency.
        latency: Duration,
        /// The URL, for display.
        url: String,
    },
}

impl Destination {
    /// Host and port it connects to.
    fn endpoint(&self) -> (&str, u16) {
        match self {
            Destination::Rtmp { host, port, .. } | Destination::Srt { host, port, .. } => (host, *port),
        }
    }

    fn url(&self) -> &str {
        match self {
            Destination::Rtmp { url, .. } | Destination::Srt { url, .. } => url,
        }
    }
}

/// Starts forwarding `key` to `template` (subscribing through `registry`). A destination
/// already forwarded for this stream returns the running forwarder.
pub async fn start(node: NodeContext, registry: Addr<StreamRegistry>, key: StreamKey, template: String, origin: &'static str) -> Result<ForwardStatus, ForwardError> {
    let destination = resolve(&template, &key)?;
    // What the API adds may not point inside; checked now and at every connection.
    let guarded = origin == "api" && node.forwards.deny_private;
    if guarded {
        let (host, port) = destination.endpoint();
        crate::access::private::public_addresses(host, port).await.map_err(ForwardError::Private)?;
    }
    if let Some(existing) = node.forwards.table.find_running(|(k, t)| *k == key && *t == template) {
        return Ok(existing.status());
    }
    let stream = registry.send(FindStream { key: key.clone(), create: true }).await.map_err(|_| ForwardError::RegistryGone)?.ok_or_else(|| ForwardError::NoStream(key.to_string()))?;
    let id = node.forwards.table.next_id();
    let client = node.clients.allocate_id();
    let subscription = stream.send(crate::messages::AddSubscriber { client, require_live: false, shared: false }).await.map_err(|_| ForwardError::StreamRestarting(key.to_string()))??;
    let entry = ForwardEntry::new(
        ForwardStatus {
            id: id.to_string(),
            stream: key.to_string(),
            url: crate::access::secrets::mask_url(destination.url()),
            origin,
            state: ForwardState::Connecting,
            last_error: None,
            bytes_sent: 0,
            connects: 0,
            retries: 0,
        },
        (key.clone(), template),
    );
    node.forwards.table.insert(id, entry.clone());
    tracing::info!(stream = %key, destination = %crate::access::secrets::mask_url(destination.url()), %origin, "forwarding started");
    let status = entry.status();
    node.topology.workers.next().spawn(node.census.track("forward", run(entry, destination, subscription, node.forwards.tls_ca_file.clone(), guarded)));
    Ok(status)
}

/// SRS's forward backend: asks `backend` (HTTP POST, SRS's `on_forward` body) where to
/// forward a stream that was just published; the answer `{"code":0,"data":{"urls":[...]}}`
/// starts one forwarder per URL (origin `backend`). Failures are logged; publishing goes on.
pub async fn ask_backend(node: NodeContext, registry: Addr<StreamRegistry>, key: StreamKey, backend: String) {
    let body = serde_json::json!({ "action": "on_forward", "vhost": key.vhost, "app": key.app, "stream": key.stream, "param": "" });
    let answer = match crate::access::hooks::post(&backend, &body, Duration::from_secs(3)).await {
        Ok((200, text)) => text,
        Ok((status, text)) => {
            tracing::warn!(stream = %key, %backend, status, body = %text.chars().take(200).collect::<String>(), "forward backend refused");
            return;
        }
        Err(e) => {
            tracing::warn!(stream = %key, %backend, error = %e, "forward backend unreachable");
            return;
        }
    };
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(&answer);
    let urls: Vec<String> = match &parsed {
        Ok(v) if v["code"] == 0 => v["data"]["urls"].as_array().map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_string)).collect()).unwrap_or_default(),
        _ => {
            tracing::warn!(stream = %key, %backend, answer = %answer.chars().take(200).collect::<String>(), "forward backend answer is not {{\"code\":0,\"data\":{{\"urls\":[...]}}}}");
            return;
        }
    };
    for url in urls {
        if let Err(e) = start(node.clone(), registry.clone(), key.clone(), url.clone(), "backend").await {
            tracing::error!(stream = %key, destination = %crate::access::secrets::mask_url(&url), error = %e, "cannot forward (from the backend's answer)");
        }
    }
}

/// A TLS connector trusting the Mozilla roots built in and, when given, the certificates of a
/// PEM file (`forward.tls_ca_file`: a private CDN, a self-signed test server).
fn tls_connector(tls_ca_file: Option<&str>) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = tls_ca_file {
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| format!("forward.tls_ca_file {path}: {e}"))? {
            let cert = cert.map_err(|e| format!("forward.tls_ca_file {path}: {e}"))?;
            roots.add(cert).map_err(|e| format!("forward.tls_ca_file {path}: {e}"))?;
        }
    }
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)))
}

/// A connected destination.
enum Sink {
    Rtmp { session: Box<ClientSession>, write: Box<dyn tokio::io::AsyncWrite + Send + Unpin> },
    Srt { socket: srt_tokio::SrtSocket, encoder: TsEncoder, buffer: BytesMut },
}

impl Sink {
    /// Connects to `destination`; when `guarded`, only to public addresses it resolves to.
    async fn connect(destination: &Destination, tls_ca_file: Option<&str>, guarded: bool) -> Result<Sink, String> {
        // Resolved here (each attempt), checked when guarded; every address is tried in turn.
        let (host, port) = destination.endpoint();
        let addresses: Vec<std::net::SocketAddr> = if guarded {
            crate::access::private::public_addresses(host, port).await?
        } else {
            tokio::net::lookup_host(host_port(host, port)).await.map_err(|e| format!("cannot resolve {host}: {e}"))?.collect()
        };
        if addresses.is_empty() {
            return Err(format!("{host} has no address"));
        }
        match destination {
            Destination::Rtmp { tls, host, port, app, stream, .. } => {
                let socket = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addresses[..])).await.map_err(|_| "connect timed out".to_string())?.map_err(|e| format!("connect: {e}"))?;
                socket.set_nodelay(true).ok();
                let scheme = if *tls { "rtmps" } else { "rtmp" };
                let tc_url = format!("{scheme}://{}/{app}", host_port(host, *port));
                let mut session = Box::new(ClientSession::new(ClientConfig::new(app, &tc_url, stream, ClientMode::Publish)));
                type Reader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
                type Writer = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;
                let (mut read, mut write): (Reader, Writer) = if *tls {
                    let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("TLS name {host}: {e}"))?;
                    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls_connector(tls_ca_file)?.connect(name, socket)).await.map_err(|_| "TLS handshake timed out".to_string())?.map_err(|e| format!("TLS: {e}"))?;
                    let (r, w) = tokio::io::split(stream);
                    (Box::new(r), Box::new(w))
                } else {
                    let (r, w) = socket.into_split();
                    (Box::new(r), Box::new(w))
                };
                let mut buf = vec![0u8; 16 * 1024];
                let handshake = async {
                    loop {
                        while let Some(output) = session.poll_output() {
                            match output {
                                ClientOutput::Transmit(bytes) => write.write_all(&bytes).await.map_err(|e| format!("write: {e}"))?,
                                ClientOutput::Event(ClientEvent::Publishing) => return Ok(()),
                                ClientOutput::Event(ClientEvent::Rejected { description, .. }) => return Err(format!("refused: {description}")),
                                ClientOutput::Event(_) => {}
                            }
                        }
                        let n = read.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
                        if n == 0 {
                            return Err("the destination closed the connection".to_string());
                        }
                        session.handle_input(&buf[..n]).map_err(|e| format!("RTMP: {e}"))?;
                    }
                };
                tokio::time::timeout(CONNECT_TIMEOUT, handshake).await.map_err(|_| "RTMP handshake timed out".to_string())??;
                // Whatever the destination sends from now on (acks, pings) is drained.
                tokio::spawn(async move {
                    let mut sink = vec![0u8; 16 * 1024];
                    while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
                });
                Ok(Sink::Rtmp { session, write })
            }
            Destination::Srt { stream_id, latency, .. } => {
                // srt-tokio parses only host:port strings without IPv6 brackets: an address it takes.
                let socket = tokio::time::timeout(CONNECT_TIMEOUT, srt_tokio::SrtSocket::builder().latency(*latency).call(addresses[0], Some(stream_id)))
                    .await
                    .map_err(|_| "SRT connect timed out".to_string())?
                    .map_err(|e| format!("SRT: {e}"))?;
                Ok(Sink::Srt { socket, encoder: TsEncoder::default(), buffer: BytesMut::new() })
            }
        }
    }

    /// Sends one frame; returns the bytes written.
    async fn send(&mut self, frame: &MediaFrame) -> Result<usize, String> {
        match self {
            Sink::Rtmp { session, write } => {
                session.send_frame(frame);
                let mut sent = 0;
                while let Some(output) = session.poll_output() {
                    if let ClientOutput::Transmit(bytes) = output {
                        tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&bytes)).await.map_err(|_| "the destination stopped reading".to_string())?.map_err(|e| format!("write: {e}"))?;
                        sent += bytes.len();
                    }
                }
                Ok(sent)
            }
            Sink::Srt { socket, encoder, buffer } => {
                use futures_util::SinkExt;
                encoder.encode(frame, buffer);
                let mut sent = 0;
                while !buffer.is_empty() {
                    let n = buffer.len().min(1316);
                    let chunk: Bytes = buffer.split_to(n).freeze();
                    sent += chunk.len();
                    tokio::time::timeout(WRITE_TIMEOUT, socket.send((Instant::now(), chunk))).await.map_err(|_| "SRT send stalled".to_string())?.map_err(|e| format!("SRT: {e}"))?;
                }
                Ok(sent)
            }
        }
    }

    async fn close(self) {
        if let Sink::Srt { mut socket, .. } = self {
            use futures_util::SinkExt;
            let _ = tokio::time::timeout(Duration::from_secs(2), socket.close()).await;
        }
    }
}

async fn run(entry: Arc<ForwardEntry>, destination: Destination, subscription: Subscription, tls_ca_file: Option<String>, guarded: bool) {
    let mut rx = subscription.rx;
    let mut configs: Vec<Arc<MediaFrame>> = Vec::new();
    let mut sink: Option<Sink> = None;
    let mut waiting_for_key = true;
    let mut backoff = backoff();
    let mut next_attempt = tokio::time::Instant::now();
    let (result_tx, mut result_rx) = mpsc::channel::<Result<Sink, String>>(1);
    let mut attempt_running = false;
    let reason = loop {
        if sink.is_none() && !attempt_running && tokio::time::Instant::now() >= next_attempt {
            attempt_running = true;
            entry.update(|s| s.state = ForwardState::Connecting);
            let (destination, tx, ca) = (destination.clone(), result_tx.clone(), tls_ca_file.clone());
            tokio::spawn(async move {
                let _ = tx.send(Sink::connect(&destination, ca.as_deref(), guarded).await).await;
            });
        }
        let wait = next_attempt.max(tokio::time::Instant::now() + Duration::from_millis(10));
        tokio::select! {
            _ = entry.stop_requested() => break "removed",
            frame = rx.recv() => {
                let Some(frame) = frame else { break "the stream ended" };
                // A header equal to the one held (a publisher or an ingest loop sending it
                // again) is not sent again.
                let repeated = frame.config && configs.iter().any(|c| c.track == frame.track && c.codec == frame.codec && c.payload == frame.payload);
                if repeated {
                    continue;
                }
                if frame.config {
                    configs.retain(|c| c.track != frame.track);
                    configs.push(frame.clone());
                }
                let Some(current) = sink.as_mut() else { continue };
                if frame.track == TrackKind::Data {
                    continue;
                }
                if frame.config {
                    // Headers go out before the first keyframe (below); one arriving later (a
                    // track whose parameters come after the first keyframe, as an MPEG-TS or
                    // WebRTC publisher's audio, or new parameters) goes out as it comes.
                    if !waiting_for_key {
                        if let Err(e) = current.send(&frame).await {
                            fail(&entry, &mut sink, &mut backoff, &mut next_attempt, &mut waiting_for_key, e).await;
                        }
                    }
                    continue;
                }
                if waiting_for_key {
                    let has_video = configs.iter().any(|c| c.track == TrackKind::Video);
                    let start = if has_video { frame.is_video_keyframe() } else { frame.track == TrackKind::Audio };
                    if !start {
                        continue;
                    }
                    waiting_for_key = false;
                    let mut failed = None;
                    for config in &configs {
                        if let Err(e) = current.send(&retimed(config, &frame)).await {
                            failed = Some(e);
                            break;
                        }
                    }
                    if let Some(e) = failed {
                        fail(&entry, &mut sink, &mut backoff, &mut next_attempt, &mut waiting_for_key, e).await;
                        continue;
                    }
                }
                match current.send(&frame).await {
                    Ok(n) => entry.update(|s| s.bytes_sent += n as u64),
                    Err(e) => fail(&entry, &mut sink, &mut backoff, &mut next_attempt, &mut waiting_for_key, e).await,
                }
            }
            result = result_rx.recv() => {
                attempt_running = false;
                match result {
                    Some(Ok(connected)) => {
                        tracing::info!(stream = %entry.key.0, destination = %crate::access::secrets::mask_url(destination.url()), "forward connected");
                        entry.update(|s| {
                            s.state = ForwardState::Live;
                            s.connects += 1;
                        });
                        backoff.reset();
                        waiting_for_key = true;
                        sink = Some(connected);
                    }
                    Some(Err(e)) => fail(&entry, &mut sink, &mut backoff, &mut next_attempt, &mut waiting_for_key, e).await,
                    None => break "internal error",
                }
            }
            _ = tokio::time::sleep_until(wait), if sink.is_none() && !attempt_running => {}
        }
    };
    if let Some(sink) = sink.take() {
        sink.close().await;
    }
    entry.update(|s| s.state = ForwardState::Stopped);
    entry.mark_stopped();
    tracing::info!(stream = %entry.key.0, destination = %crate::access::secrets::mask_url(destination.url()), %reason, "forwarding stopped");
}

/// A codec header moved to the time of the frame it precedes.
fn retimed(config: &MediaFrame, at: &MediaFrame) -> MediaFrame {
    let mut config = config.clone();
    config.dts = at.timebase.rescale(at.dts, config.timebase);
    config.pts = config.dts;
    config
}

async fn fail(entry: &ForwardEntry, sink: &mut Option<Sink>, backoff: &mut Backoff, next_attempt: &mut tokio::time::Instant, waiting_for_key: &mut bool, error: String) {
    if let Some(old) = sink.take() {
        old.close().await;
    }
    *waiting_for_key = true;
    let delay = backoff.after_failure();
    *next_attempt = tokio::time::Instant::now() + delay;
    let next_ms = crate::unix_ms() + delay.as_millis() as i64;
    let url = entry.status().url;
    tracing::warn!(stream = %entry.key.0, destination = %url, %error, retry_in_ms = delay.as_millis() as u64, "forward failed; will retry");
    entry.update(|s| {
        s.state = ForwardState::Retrying { next_attempt_ms: next_ms };
        s.last_error = Some(error);
        s.retries += 1;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_resolve() {
        let key = StreamKey::new("live", "cam");
        assert_eq!(resolve("rtmp://10.0.0.5/live", &key).unwrap().url(), "rtmp://10.0.0.5:1935/live/cam");
        assert_eq!(resolve("rtmp://cdn.example:1936/app/[stream]_hd?key=x", &key).unwrap().url(), "rtmp://cdn.example:1936/app/cam_hd?key=x");
        assert_eq!(resolve("rtmp://h/[app]/fixed", &key).unwrap().url(), "rtmp://h:1935/live/fixed");
        match resolve("srt://127.0.0.1:10081", &key).unwrap() {
            Destination::Srt { stream_id, port, .. } => assert_eq!((stream_id.as_str(), port), ("#!::r=live/cam,m=publish", 10081)),
            other => panic!("{other:?}"),
        }
        match resolve("srt://h:9000?streamid=#!::r=x/[stream],m=publish&latency=300000", &key).unwrap() {
            Destination::Srt { stream_id, latency, .. } => assert_eq!((stream_id.as_str(), latency), ("#!::r=x/cam,m=publish", Duration::from_millis(300))),
            other => panic!("{other:?}"),
        }
        assert_eq!(resolve("rtmps://live.example.com/app/key", &key).unwrap().url(), "rtmps://live.example.com:443/app/key");
        assert_eq!(resolve("rtmp://[::1]/live", &key).unwrap().url(), "rtmp://[::1]:1935/live/cam");
        assert_eq!(resolve("rtmp://[2001:db8::5]:1936/a/b", &key).unwrap().endpoint(), ("2001:db8::5", 1936));
        assert_eq!(resolve("srt://[fd00::2]:10080", &key).unwrap().url(), "srt://[fd00::2]:10080?streamid=#!::r=live/cam,m=publish");
        assert!(resolve("rtmp://[::1/live", &key).is_err());
        for bad in ["http://h/live", "rtmp://", "rtmp://h", "rtmp://h:notaport/live", "srt://:5/"] {
            assert!(resolve(bad, &key).is_err(), "{bad}");
        }
    }
}
