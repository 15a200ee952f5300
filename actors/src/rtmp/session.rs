use super::writer::{self, WriterCmd, WriterEnd};
use crate::access;
use crate::access::auth::Action;
use crate::access::hooks;
use crate::node::clients::{ClientGuard, ClientId, Role};
use crate::node::workers::WorkerLocals;
use crate::node::NodeContext;
use crate::messages::*;
use crate::registry::StreamRegistry;
use crate::settings::RtmpSettings;
use crate::stream::{PublisherLink, TryPush};
use actix::prelude::*;
use bytes::BytesMut;
use estuary_protocols::rtmp::server::{ServerConfig, ServerEvent, ServerOutput, ServerSession};
use estuary_protocols::MediaFrame;
use estuary_storage::StreamKey;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::codec::{BytesCodec, FramedRead};

/// Control messages queued toward the writer before the peer counts as not reading.
const CONTROL_QUEUE: usize = 256;

/// Why a publish or play did not start.
enum Refusal {
    /// The access policy refused.
    Denied(String),
    /// Another publisher holds the stream.
    Busy(PublishRefused),
    /// The stream could not be subscribed.
    Unavailable(String),
    /// Another origin owns the stream and `cluster.redirect` sends players there.
    Redirect(String),
}

/// What the publisher side does, in order. Attaching goes through the queue too: a publish
/// that ends and starts again on one connection while frames of the first still wait for room
/// must not hand those frames (or its detach) to the second.
enum Outgoing {
    Frame(Arc<MediaFrame>),
    Detach,
    Attach(PublisherLink),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Publishing,
    Playing,
}

/// One RTMP connection.
pub struct RtmpSession {
    node: NodeContext,
    /// On the node's census while the actor lives.
    _counted: crate::node::census::Counted,
    /// The connection's slot under `node.max_connections` (none for RTMPS's loopback hop:
    /// the TLS front end holds that client's).
    permit: Option<crate::node::connections::Permit>,
    /// What the sessions of this session's worker share.
    locals: Arc<WorkerLocals>,
    client: ClientGuard,
    peer: SocketAddr,
    settings: Arc<RtmpSettings>,
    registry: Addr<StreamRegistry>,
    session: ServerSession,
    socket: Option<std::net::TcpStream>,
    writer: Option<mpsc::Sender<WriterCmd>>,
    state: State,
    stream_key: Option<StreamKey>,
    link: Option<PublisherLink>,
    outbox: VecDeque<Outgoing>,
    flushing: bool,
    /// Times reading stopped because the stream's queue was full (backpressure).
    paused_reads: u64,
    closing: bool,
    started_at: Instant,
    last_input: Instant,
    app: String,
    /// The vhost of the connection: named in the connect URL (`?vhost=`), or its host when
    /// that is a configured vhost (SRS's rule), else the default.
    vhost: String,
    params: Vec<(String, String)>,
    span: tracing::Span,
}

impl RtmpSession {
    /// A session for an accepted connection.
    /// Holds `permit` for the session's life.
    pub fn holding(mut self, permit: Option<crate::node::connections::Permit>) -> Self {
        self.permit = permit;
        self
    }

    /// A session on an accepted connection.
    pub fn new(node: NodeContext, locals: Arc<WorkerLocals>, socket: std::net::TcpStream, peer: SocketAddr, settings: Arc<RtmpSettings>, registry: Addr<StreamRegistry>) -> Self {
        let config = ServerConfig {
            chunk_size: settings.chunk_size,
            max_message_size: settings.max_message_size,
            ..ServerConfig::default()
        };
        let client = node.clients.register("rtmp", peer.to_string());
        let span = tracing::info_span!("rtmp", client = client.id(), %peer, stream = tracing::field::Empty);
        RtmpSession {
            _counted: node.census.enter("rtmp_session"),
            node,
            permit: None,
            locals,
            client,
            span,
            peer,
            settings,
            registry,
            session: ServerSession::new(config),
            socket: Some(socket),
            writer: None,
            state: State::Idle,
            stream_key: None,
            link: None,
            outbox: VecDeque::new(),
            flushing: false,
            paused_reads: 0,
            closing: false,
            started_at: Instant::now(),
            last_input: Instant::now(),
            app: String::new(),
            vhost: "__defaultVhost__".to_string(),
            params: Vec::new(),
        }
    }

    fn id(&self) -> ClientId {
        self.client.id()
    }

    fn input(&mut self, bytes: &[u8], ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let session = &mut self.session;
        match catch_unwind(AssertUnwindSafe(|| session.handle_input(bytes))) {
            Err(_) => {
                tracing::error!(client = self.id(), peer = %self.peer, received = self.session.bytes_received(), "RTMP protocol code panicked on this connection's input; closing it");
                ctx.stop();
            }
            Ok(Err(e)) => {
                tracing::warn!(client = self.id(), peer = %self.peer, stream = ?self.stream_key.as_ref().map(|k| k.to_string()), reason = %e, "closing RTMP connection");
                self.drain(ctx);
                self.close_after_flush();
            }
            Ok(Ok(())) => self.drain(ctx),
        }
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        while let Some(output) = self.session.poll_output() {
            match output {
                ServerOutput::Transmit(bytes) => self.transmit(WriterCmd::Bytes(bytes), ctx),
                ServerOutput::Event(event) => self.on_event(event, ctx),
            }
        }
    }

    fn transmit(&mut self, cmd: WriterCmd, ctx: &mut Context<Self>) {
        let Some(writer) = &self.writer else { return };
        match writer.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(client = self.id(), peer = %self.peer, "peer does not read its control messages; closing");
                ctx.stop();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => ctx.stop(),
        }
    }

    fn close_after_flush(&mut self) {
        self.closing = true;
        if let Some(writer) = &self.writer {
            // Close is the last command; if the queue is full the writer ends with it anyway
            // when the session drops the sender.
            let _ = writer.try_send(WriterCmd::Close);
        }
    }

    fn key_for(&self, app: &str, stream: &str, params: &[(String, String)]) -> Result<StreamKey, String> {
        let valid = |name: &str| {
            !name.is_empty()
                && name.len() <= 200
                && !name.split('/').any(|part| part.is_empty() || part == "." || part == "..")
                && name.chars().all(|c| !c.is_control() && c != '\\')
        };
        if !valid(app) || !valid(stream) {
            return Err(format!("invalid stream name {app:?}/{stream:?}"));
        }
        let mut key = StreamKey::new(app, stream);
        // A vhost named on the stream's own URL, else the connection's.
        key.vhost = if params.iter().any(|(k, v)| (k == "vhost" || k == "domain") && !v.is_empty()) { connection_vhost("", params, &self.node.vhosts.get()) } else { self.vhost.clone() };
        Ok(key)
    }

    fn on_event(&mut self, event: ServerEvent, ctx: &mut Context<Self>) {
        match event {
            ServerEvent::Connected { app, tc_url, params } => {
                tracing::debug!(client = self.id(), peer = %self.peer, %app, %tc_url, "RTMP connect");
                self.app = app.clone();
                self.vhost = connection_vhost(&tc_url, &params, &self.node.vhosts.get());
                if self.node.hooks.configured(hooks::Event::Connect, &app) {
                    // Hold the connection's further commands until the hook decides.
                    let mut body = hooks::body(self.id(), &self.peer.ip().to_string(), &self.vhost, &app, "", &params);
                    body["tcUrl"] = serde_json::Value::String(tc_url);
                    let hooks = self.node.hooks.clone();
                    let fut = async move { hooks.decide(hooks::Event::Connect, &app, body).await };
                    ctx.wait(fut.into_actor(self).map(|result, act, ctx| {
                        if let Err(denied) = result {
                            tracing::warn!(client = act.id(), peer = %act.peer, reason = %denied.0, "RTMP connect refused by hook");
                            ctx.stop();
                        }
                    }));
                }
            }
            ServerEvent::PublishRequested { request, app, stream, params } => {
                let Some((key, allowed)) = self.admit(request, Action::Publish, &app, &stream, params) else { return };
                let (registry, client, claim_key) = (self.registry.clone(), self.id(), key.clone());
                let fut = async move {
                    allowed.await?;
                    crate::attach::claim_publish(registry, claim_key, client, "rtmp").await.map_err(Refusal::Busy)
                };
                ctx.wait(fut.into_actor(self).map(move |result, act, ctx| match result {
                    Ok(stream) => {
                        act.session.accept(request);
                        act.state = State::Publishing;
                        act.client.record().set_role(Role::Publish, key.to_string());
                        tracing::info!(client = act.id(), peer = %act.peer, stream = %key, "RTMP publish started");
                        act.span.record("stream", tracing::field::display(&key));
                        act.stream_key = Some(key);
                        act.outbox.push_back(Outgoing::Attach(stream));
                        act.flush_outbox(ctx);
                        act.drain(ctx);
                    }
                    Err(Refusal::Busy(reason)) => {
                        tracing::warn!(client = act.id(), peer = %act.peer, stream = %key, %reason, "RTMP publish refused");
                        act.refuse(request, None, reason.to_string());
                        act.drain(ctx);
                    }
                    Err(Refusal::Denied(reason) | Refusal::Unavailable(reason) | Refusal::Redirect(reason)) => {
                        tracing::warn!(client = act.id(), peer = %act.peer, stream = %key, %reason, "RTMP publish refused");
                        act.refuse(request, Some("NetStream.Publish.Rejected"), reason);
                        act.drain(ctx);
                    }
                }));
            }
            ServerEvent::PlayRequested { request, app, stream, params } => {
                let Some((key, allowed)) = self.admit(request, Action::Play, &app, &stream, params) else { return };
                let (registry, find_key, node) = (self.registry.clone(), key.clone(), self.node.clone());
                let fut = async move {
                    allowed.await?;
                    if let Some(owner) = crate::cluster::pull::redirect(&node, &registry, &find_key).await {
                        let base = owner["rtmp"].as_str().unwrap_or_default();
                        return Err(Refusal::Redirect(format!("{base}/{}/{}", find_key.app, find_key.stream)));
                    }
                    // A stream another origin owns is pulled here (the player waits for it).
                    crate::cluster::pull::ensure(&node, &registry, &find_key).await;
                    // A shared subscription has an id of its own: it may outlive this client as
                    // the worker's feed, and a replay by this client must not replace it.
                    let feed_id = node.clients.allocate_id();
                    crate::attach::subscribe_shared(registry, find_key.clone(), feed_id, false).await.map(|subscription| (find_key, subscription)).map_err(|e| Refusal::Unavailable(e.to_string()))
                };
                ctx.wait(fut.into_actor(self).map(move |result, act, ctx| match result {
                    Ok((stream_key, subscription)) => {
                        act.session.accept(request);
                        act.drain(ctx);
                        let Some(media_writer) = act.session.media_writer() else {
                            ctx.stop();
                            return;
                        };
                        act.state = State::Playing;
                        act.client.record().set_role(Role::Play, key.to_string());
                        tracing::info!(client = act.id(), peer = %act.peer, stream = %key, "RTMP play started");
                        act.span.record("stream", tracing::field::display(&key));
                        act.stream_key = Some(key);
                        act.transmit(WriterCmd::StartMedia { key: stream_key, subscription, writer: media_writer }, ctx);
                    }
                    Err(Refusal::Redirect(url)) => {
                        tracing::info!(client = act.id(), peer = %act.peer, stream = %key, %url, "RTMP play redirected to the stream's owner (cluster.redirect)");
                        act.session.redirect(request, &url);
                        act.close_after_status();
                        act.drain(ctx);
                    }
                    Err(refusal) => {
                        let (code, reason) = match refusal {
                            Refusal::Denied(reason) => (Some("NetStream.Play.Rejected"), reason),
                            Refusal::Redirect(url) => (None, url),
                            Refusal::Unavailable(reason) => (None, reason),
                            Refusal::Busy(reason) => (None, reason.to_string()),
                        };
                        tracing::warn!(client = act.id(), peer = %act.peer, stream = %key, %reason, "RTMP play refused");
                        act.refuse(request, code, reason);
                        act.drain(ctx);
                    }
                }));
            }
            ServerEvent::Frame(frame) => {
                if self.state == State::Publishing {
                    self.outbox.push_back(Outgoing::Frame(Arc::new(frame)));
                    self.flush_outbox(ctx);
                }
            }
            ServerEvent::PublishStopped => {
                if self.state == State::Publishing {
                    tracing::info!(client = self.id(), stream = ?self.stream_key.as_ref().map(|k| k.to_string()), "RTMP publisher unpublished");
                    self.notify_end();
                    self.outbox.push_back(Outgoing::Detach);
                    self.flush_outbox(ctx);
                    self.state = State::Idle;
                    self.client.record().clear_role();
                }
            }
            ServerEvent::PlayStopped => {
                if self.state == State::Playing {
                    self.transmit(WriterCmd::StopMedia, ctx);
                    self.notify_end();
                    self.state = State::Idle;
                    self.client.record().clear_role();
                }
            }
            ServerEvent::Warning(text) => {
                tracing::warn!(client = self.id(), peer = %self.peer, stream = ?self.stream_key.as_ref().map(|k| k.to_string()), "{text}");
            }
        }
    }

    /// The first step of a publish or play request: the stream key (a bad one is refused
    /// here, and `None` returned) and a future that asks the access policy.
    fn admit(&mut self, request: u32, action: Action, app: &str, stream: &str, params: Vec<(String, String)>) -> Option<(StreamKey, impl std::future::Future<Output = Result<(), Refusal>> + 'static)> {
        let key = match self.key_for(app, stream, &params) {
            Ok(key) => key,
            Err(reason) => {
                self.refuse(request, None, reason);
                return None;
            }
        };
        self.params = params.clone();
        let (node, client, ip, checked) = (self.node.clone(), self.id(), self.peer.ip(), key.clone());
        let allowed = async move {
            let request = access::Request { action, client, ip: Some(ip), vhost: &checked.vhost, app: &checked.app, stream: &checked.stream, params: &params };
            node.access.check(&request).await.map_err(|refused| Refusal::Denied(refused.to_string()))
        };
        Some((key, allowed))
    }

    fn refuse(&mut self, request: u32, code: Option<&str>, reason: String) {
        match code {
            Some(code) => self.session.reject_with(request, code, &reason),
            None => self.session.reject(request, &reason),
        }
        self.close_after_status();
    }

    /// The status just written goes out, then the connection closes.
    fn close_after_status(&mut self) {
        self.closing = true;
        if let Some(writer) = &self.writer {
            while let Some(ServerOutput::Transmit(bytes)) = self.session.poll_output() {
                let _ = writer.try_send(WriterCmd::Bytes(bytes));
            }
            let _ = writer.try_send(WriterCmd::Close);
        }
    }

    fn flush_outbox(&mut self, ctx: &mut Context<Self>) {
        if self.flushing {
            return;
        }
        let client = self.id();
        while let Some(item) = self.outbox.pop_front() {
            match item {
                Outgoing::Attach(link) => self.link = Some(link),
                // Dropping the link detaches after the frames already queued.
                Outgoing::Detach => self.link = None,
                Outgoing::Frame(frame) => {
                    // Frames after an unpublish and before the next publish have no stream.
                    let Some(link) = &self.link else { continue };
                    match link.try_push(frame) {
                        Ok(()) => {}
                        Err(TryPush::Full(frame)) => {
                            // The stream is behind: stop reading the socket (`ctx.wait` holds
                            // this actor's reads) until its queue has room, which pushes back
                            // on the publisher through TCP.
                            let sender = link.sender();
                            self.flushing = true;
                            self.paused_reads += 1;
                            ctx.wait(async move { sender.send(frame).await }.into_actor(self).map(|result, act, ctx| {
                                act.flushing = false;
                                // The silence timer restarts: the peer could not be heard meanwhile.
                                act.last_input = Instant::now();
                                if result.is_err() {
                                    tracing::warn!(client = act.id(), "stream went away under a publisher; closing");
                                    ctx.stop();
                                } else {
                                    act.flush_outbox(ctx);
                                }
                            }));
                            return;
                        }
                        Err(TryPush::Gone) => {
                            tracing::warn!(client, "stream went away under a publisher; closing");
                            ctx.stop();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// `on_unpublish` or `on_stop` for the current role.
    fn notify_end(&self) {
        let Some(key) = &self.stream_key else { return };
        let event = match self.state {
            State::Publishing => hooks::Event::Unpublish,
            State::Playing => hooks::Event::Stop,
            State::Idle => return,
        };
        self.node.hooks.notify(event, &key.app, hooks::body(self.id(), &self.peer.ip().to_string(), &key.vhost, &key.app, &key.stream, &self.params));
    }

    fn check_timeouts(&mut self, ctx: &mut Context<Self>) {
        let _entered = self.span.clone().entered();
        let settings = &self.settings;
        if !self.session.handshake_done() && self.started_at.elapsed() > settings.handshake_timeout {
            tracing::warn!(client = self.id(), peer = %self.peer, received = self.session.bytes_received(), timeout_ms = settings.handshake_timeout.as_millis() as u64, "RTMP handshake not completed in time; closing");
            ctx.stop();
        } else if self.state != State::Playing && !self.flushing && self.last_input.elapsed() > settings.publish_timeout {
            // (While `flushing`, this session is the one not reading: the stream is behind and
            // the publisher is being pushed back, which is not the peer falling silent.)
            tracing::warn!(client = self.id(), peer = %self.peer, stream = ?self.stream_key.as_ref().map(|k| k.to_string()), idle_ms = self.last_input.elapsed().as_millis() as u64, "RTMP peer silent for too long; closing");
            ctx.stop();
        }
    }
}

impl Actor for RtmpSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(socket) = self.socket.take() else {
            ctx.stop();
            return;
        };
        let stream = match tokio::net::TcpStream::from_std(socket) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "cannot register RTMP connection with the event loop");
                ctx.stop();
                return;
            }
        };
        tracing::debug!(client = self.id(), peer = %self.peer, "RTMP connection accepted");
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        self.writer = Some(tx);
        let context = writer::WriterContext { record: self.client.record().clone(), send_timeout: self.settings.send_timeout, merge: self.settings.write_merge, locals: self.locals.clone(), stats: self.node.stats.clone() };
        let handle = actix::spawn(writer::run(write, rx, context));
        ctx.spawn(handle.into_actor(self).map(|result, act, ctx| {
            match result {
                Ok(WriterEnd::Closed) => {}
                Ok(WriterEnd::StreamEnded) => {
                    tracing::info!(client = act.id(), stream = ?act.stream_key.as_ref().map(|k| k.to_string()), "stream ended for this RTMP player; closing")
                }
                Ok(WriterEnd::Io(e)) => tracing::info!(client = act.id(), peer = %act.peer, error = %e, "RTMP write failed; closing"),
                Ok(WriterEnd::Timeout(t)) => {
                    tracing::warn!(client = act.id(), peer = %act.peer, timeout_ms = t.as_millis() as u64, "RTMP peer stopped reading; closing")
                }
                Err(e) => tracing::error!(client = act.id(), error = %e, "RTMP writer task failed"),
            }
            ctx.stop();
        }));
        let record = self.client.record().clone();
        ctx.spawn(async move { record.kicked().await }.into_actor(self).map(|_, act, ctx| {
            tracing::info!(client = act.id(), peer = %act.peer, stream = ?act.stream_key.as_ref().map(|k| k.to_string()), "RTMP client kicked through the API");
            ctx.stop();
        }));
        ctx.add_stream(FramedRead::with_capacity(read, BytesCodec::new(), 8 * 1024));
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.check_timeouts(ctx));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        let _entered = self.span.clone().entered();
        self.notify_end();
        if !self.app.is_empty() {
            let record = self.client.record();
            let stream = self.stream_key.as_ref().map(|k| k.stream.clone()).unwrap_or_default();
            let vhost = self.stream_key.as_ref().map_or(self.vhost.as_str(), |k| k.vhost.as_str());
            let mut body = hooks::body(self.id(), &self.peer.ip().to_string(), vhost, &self.app, &stream, &self.params);
            body["send_bytes"] = record.bytes_out.load(std::sync::atomic::Ordering::Relaxed).into();
            body["recv_bytes"] = record.bytes_in.load(std::sync::atomic::Ordering::Relaxed).into();
            self.node.hooks.notify(hooks::Event::Close, &self.app, body);
        }
        self.link = None;
        let record = self.client.record();
        tracing::info!(
            client = self.id(),
            peer = %self.peer,
            stream = ?self.stream_key.as_ref().map(|k| k.to_string()),
            bytes_in = record.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
            bytes_out = record.bytes_out.load(std::sync::atomic::Ordering::Relaxed),
            alive_ms = self.started_at.elapsed().as_millis() as u64,
            paused_reads = self.paused_reads,
            "RTMP connection closed"
        );
    }
}

impl StreamHandler<Result<BytesMut, io::Error>> for RtmpSession {
    fn handle(&mut self, item: Result<BytesMut, io::Error>, ctx: &mut Self::Context) {
        let _entered = self.span.clone().entered();
        match item {
            Ok(bytes) => {
                self.last_input = Instant::now();
                self.client.record().add_in(bytes.len());
                self.input(&bytes, ctx);
            }
            Err(e) => {
                tracing::info!(client = self.id(), peer = %self.peer, error = %e, "RTMP read failed; closing");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(client = self.id(), peer = %self.peer, "RTMP peer closed the connection");
        ctx.stop();
    }
}

/// The vhost of a connection, as SRS picks it: `?vhost=` (or `?domain=`) in its URL, else the
/// host of its URL (RTMP's tcUrl, HTTP's Host); a name that is none of the node's named
/// `vhosts` (compared without case, as host names are) is the default vhost.
pub fn connection_vhost(tc_url: &str, params: &[(String, String)], vhosts: &std::collections::BTreeSet<String>) -> String {
    let named = params.iter().find(|(k, _)| k == "vhost" || k == "domain").map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let host = tc_url.split_once("://").map_or("", |(_, rest)| rest).split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit())).map_or(host, |(name, _)| name);
    let wanted = named.unwrap_or(host);
    vhosts.iter().find(|v| v.eq_ignore_ascii_case(wanted)).cloned().unwrap_or_else(|| "__defaultVhost__".to_string())
}

#[cfg(test)]
mod tests {
    use super::connection_vhost;

    #[test]
    fn the_vhost_comes_from_the_url_parameter_or_a_configured_host() {
        let vhosts: std::collections::BTreeSet<String> = ["example.com".to_string()].into();
        let param = |v: &str| vec![("vhost".to_string(), v.to_string())];
        assert_eq!(connection_vhost("rtmp://127.0.0.1/live", &param("example.com"), &vhosts), "example.com");
        assert_eq!(connection_vhost("rtmp://127.0.0.1/live", &param("Example.COM"), &vhosts), "example.com");
        // A vhost nobody configured is the default one, as in SRS.
        assert_eq!(connection_vhost("rtmp://127.0.0.1/live", &param("other.org"), &vhosts), "__defaultVhost__");
        assert_eq!(connection_vhost("rtmp://example.com:1935/live", &[], &vhosts), "example.com");
        assert_eq!(connection_vhost("rtmp://example.com/live?x=1", &[], &vhosts), "example.com");
        // A host that is no configured vhost (an address, another name): the default, as SRS.
        assert_eq!(connection_vhost("rtmp://127.0.0.1:1935/live", &[], &vhosts), "__defaultVhost__");
        assert_eq!(connection_vhost("rtmp://cdn.example.net/live", &[], &vhosts), "__defaultVhost__");
        assert_eq!(connection_vhost("", &[], &vhosts), "__defaultVhost__");
    }
}
