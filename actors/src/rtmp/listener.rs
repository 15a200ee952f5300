use super::session::RtmpSession;
use crate::messages::InjectFault;
use crate::registry::StreamRegistry;
use crate::settings::RtmpSettings;
use crate::node::NodeContext;
use crate::node::supervision::Backoff;
use actix::prelude::*;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;
use tokio_stream::wrappers::TcpListenerStream;

const NAME: &str = "rtmp_listener";

/// Binds a listening socket. The standard library sets `SO_REUSEADDR` on Unix, so a
/// restarted listener does not wait for the old socket's connections to leave TIME_WAIT.
/// Works outside an async runtime (the node binds at boot to fail fast on a busy port).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr)
}

/// Accepts RTMP connections.
pub struct RtmpListener {
    node: NodeContext,
    settings: Arc<RtmpSettings>,
    registry: Addr<StreamRegistry>,
    first_socket: Option<std::net::TcpListener>,
    backoff: Backoff,
}

impl RtmpListener {
    /// A listener; `first_socket` is the socket bound at boot (so a busy port fails the boot
    /// with a clear error), later restarts bind anew.
    pub fn new(node: NodeContext, settings: RtmpSettings, registry: Addr<StreamRegistry>, first_socket: Option<std::net::TcpListener>) -> Self {
        node.restarts.register(NAME);
        RtmpListener { node, settings: Arc::new(settings), registry, first_socket, backoff: Backoff::workers() }
    }

    fn listen(&mut self, ctx: &mut Context<Self>) {
        let socket = match self.first_socket.take() {
            Some(socket) => Ok(socket),
            None => bind(self.settings.listen),
        };
        let listener = socket.and_then(|s| {
            s.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(s)
        });
        match listener {
            Ok(listener) => {
                tracing::info!(listen = %self.settings.listen, "RTMP listening");
                ctx.add_stream(TcpListenerStream::new(listener));
            }
            Err(e) => {
                tracing::error!(listen = %self.settings.listen, error = %e, "RTMP listener cannot bind; will retry");
                ctx.stop();
            }
        }
    }
}

impl Actor for RtmpListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let delay = self.backoff.on_start(Instant::now());
        if delay.is_zero() {
            self.listen(ctx);
        } else {
            ctx.run_later(delay, |act, ctx| act.listen(ctx));
        }
    }
}

impl Supervised for RtmpListener {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.node.restarts.record(NAME);
        tracing::warn!(listen = %self.settings.listen, "RTMP listener restarting");
    }
}

impl StreamHandler<io::Result<TcpStream>> for RtmpListener {
    fn handle(&mut self, item: io::Result<TcpStream>, _: &mut Self::Context) {
        let stream = match item {
            Ok(stream) => stream,
            Err(e) => {
                // EMFILE and friends: this connection is lost, the listener carries on.
                tracing::warn!(error = %e, "RTMP accept failed");
                return;
            }
        };
        let (peer, permit) = match stream.peer_addr() {
            // An RTMPS client's connection through the node's TLS front end: its real peer
            // (admitted by the front end).
            Ok(peer) => match self.node.proxied_peers.take(&peer) {
                Some(client) => (client, None),
                None => match self.node.connections.admit(peer.ip(), "rtmp") {
                    Ok(permit) => (peer, Some(permit)),
                    // Logged by the gate; the connection is closed unanswered (RTMP has no
                    // way to say why before its handshake).
                    Err(_) => return,
                },
            },
            Err(e) => {
                tracing::debug!(error = %e, "RTMP connection gone before it was accepted");
                return;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let socket = match stream.into_std() {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand RTMP connection to a worker");
                return;
            }
        };
        let settings = self.settings.clone();
        let registry = self.registry.clone();
        let worker = self.node.topology.workers.next_worker();
        let (node, locals) = (self.node.clone(), worker.locals.clone());
        RtmpSession::start_in_arbiter(&worker.arbiter, move |_| RtmpSession::new(node, locals, socket, peer, settings, registry).holding(permit));
    }
}

impl Handler<InjectFault> for RtmpListener {
    type Result = ();

    fn handle(&mut self, msg: InjectFault, ctx: &mut Self::Context) {
        tracing::warn!(fault = ?msg.0, "fault injected into the RTMP listener");
        // A panic is caught at the actor's boundary and handled as a fatal error: the actor
        // stops and its Supervisor restarts it (counting the restart, with backoff).
        let fault = msg.0;
        let outcome = crate::node::supervision::catch(|| {
            if fault == crate::messages::Fault::Panic {
                panic!("fault injected into the RTMP listener");
            }
        });
        if let Err(panic) = outcome {
            tracing::error!(panic = %panic.0, "the RTMP listener panicked; restarting it");
            ctx.stop();
        }
    }
}
