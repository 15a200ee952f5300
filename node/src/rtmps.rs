//! RTMPS in (`[rtmps] listen`): publishers and players over TLS, as OBS and the platforms use
//! it, with the node's `[https]` certificate (read again when the files change).
//!
//! Each connection's TLS is ended here and its plain bytes are carried over a loopback TCP
//! connection to the node's own RTMP listener, so an RTMPS session is an RTMP session in every
//! respect (limits, timeouts, slow-player handling, the delivery engine). The RTMP listener
//! learns the real peer of such a connection from [`estuary_actors::node::ProxiedPeers`]
//! (registered before the loopback connection is made), so access rules, hooks, the API and
//! the log see the client's address, not the loopback hop.

use estuary_actors::node::{NodeContext, ProxiedPeers};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// When one side of a relayed connection has ended, how long the other may still finish.
const LINGER: Duration = Duration::from_secs(2);

/// Accepts RTMPS connections on `listener` until the node stops; each connection's TLS runs on
/// one of the node's worker threads.
pub async fn serve(node: NodeContext, listener: std::net::TcpListener, tls: tokio_rustls::rustls::ServerConfig, rtmp: SocketAddr, handshake_timeout: Duration) {
    let peers = node.proxied_peers.clone();
    let listen = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let listener = match listener.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(listener)) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(%listen, error = %e, "RTMPS listener not started");
            return;
        }
    };
    // The RTMP listener on this machine: its own address, or loopback when it listens on all.
    let rtmp = match rtmp.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(if ip.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() }, rtmp.port()),
        _ => rtmp,
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    tracing::info!(%listen, %rtmp, "RTMPS listening");
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "RTMPS accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Admitted here with the client's address; the loopback hop to the RTMP listener is
        // not counted again.
        let Ok(permit) = node.connections.admit(peer.ip(), "rtmps") else { continue };
        let (acceptor, peers) = (acceptor.clone(), peers.clone());
        let counted = node.census.enter("rtmps_relay");
        node.topology.workers.next().spawn(async move {
            let (_permit, _counted) = (permit, counted);
            if let Err(reason) = relay(socket, peer, acceptor, rtmp, peers, handshake_timeout).await {
                tracing::info!(%peer, %reason, "RTMPS connection closed");
            }
        });
    }
}

async fn relay(socket: tokio::net::TcpStream, peer: SocketAddr, acceptor: tokio_rustls::TlsAcceptor, rtmp: SocketAddr, peers: Arc<ProxiedPeers>, handshake_timeout: Duration) -> Result<(), String> {
    socket.set_nodelay(true).ok();
    // A peer that vanishes without a word is found out by the kernel.
    socket2::SockRef::from(&socket).set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(Duration::from_secs(30)).with_interval(Duration::from_secs(10))).ok();
    let tls = tokio::time::timeout(handshake_timeout, acceptor.accept(socket)).await.map_err(|_| "TLS handshake timed out".to_string())?.map_err(|e| format!("TLS handshake: {e}"))?;
    let inner = if rtmp.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }.map_err(|e| e.to_string())?;
    inner.bind(SocketAddr::new(rtmp.ip(), 0)).map_err(|e| format!("loopback bind: {e}"))?;
    let local = inner.local_addr().map_err(|e| e.to_string())?;
    // Known to the RTMP listener before it can accept the connection.
    peers.insert(local, peer);
    let connected = tokio::time::timeout(handshake_timeout, inner.connect(rtmp)).await;
    let plain = match connected {
        Ok(Ok(plain)) => plain,
        Ok(Err(e)) => {
            peers.take(&local);
            return Err(format!("cannot reach the RTMP listener at {rtmp}: {e}"));
        }
        Err(_) => {
            peers.take(&local);
            return Err(format!("the RTMP listener at {rtmp} did not accept in time"));
        }
    };
    plain.set_nodelay(true).ok();
    // Both ways at once; when either ends (the session closed the connection: a kick, a
    // timeout, a slow player; or the client left), the other gets LINGER to finish and then
    // the whole connection is dropped, so a silent client cannot hold it open.
    let (mut tls_read, mut tls_write) = tokio::io::split(tls);
    let (mut plain_read, mut plain_write) = plain.into_split();
    let up = async {
        let n = tokio::io::copy(&mut tls_read, &mut plain_write).await;
        use tokio::io::AsyncWriteExt;
        let _ = plain_write.shutdown().await;
        n
    };
    let down = async {
        let n = tokio::io::copy(&mut plain_read, &mut tls_write).await;
        use tokio::io::AsyncWriteExt;
        let _ = tls_write.shutdown().await;
        n
    };
    tokio::pin!(up, down);
    let result = tokio::select! {
        first = &mut up => { let _ = tokio::time::timeout(LINGER, &mut down).await; first }
        first = &mut down => { let _ = tokio::time::timeout(LINGER, &mut up).await; first }
    };
    peers.take(&local);
    match result {
        Ok(bytes) => {
            tracing::debug!(%peer, bytes, "RTMPS connection ended");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
