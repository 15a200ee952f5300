//! RTMPS in (`[rtmps] listen`): publishers and players over TLS, as OBS and the platforms use
//! it, with the node's `[https]` certificate (read again when the files change).
//!
//! Each connection's TLS is ended here and its plain bytes are carried over a loopback TCP
//! connection to the node's own RTMP listener, so an RTMPS session is an RTMP session in every
//! respect (limits, timeouts, slow-player handling, the delivery engine). The RTMP listener
//! learns the real peer of such a connection from [`estuary_actors::node::ProxiedPeers`]
//! (registered before the loopback connection is made), so access rules, hooks, the API and
//! the log see the client's address, not the loopback hop.

use estuary_actors::node::ProxiedPeers;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Accepts RTMPS connections on `listener` until the node stops.
pub async fn serve(listener: std::net::TcpListener, tls: tokio_rustls::rustls::ServerConfig, rtmp: SocketAddr, peers: Arc<ProxiedPeers>, handshake_timeout: Duration) {
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
        let (acceptor, peers) = (acceptor.clone(), peers.clone());
        tokio::spawn(async move {
            if let Err(reason) = relay(socket, peer, acceptor, rtmp, peers, handshake_timeout).await {
                tracing::info!(%peer, %reason, "RTMPS connection closed");
            }
        });
    }
}

async fn relay(socket: tokio::net::TcpStream, peer: SocketAddr, acceptor: tokio_rustls::TlsAcceptor, rtmp: SocketAddr, peers: Arc<ProxiedPeers>, handshake_timeout: Duration) -> Result<(), String> {
    socket.set_nodelay(true).ok();
    let mut tls = tokio::time::timeout(handshake_timeout, acceptor.accept(socket)).await.map_err(|_| "TLS handshake timed out".to_string())?.map_err(|e| format!("TLS handshake: {e}"))?;
    let inner = if rtmp.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }.map_err(|e| e.to_string())?;
    inner.bind(SocketAddr::new(rtmp.ip(), 0)).map_err(|e| format!("loopback bind: {e}"))?;
    let local = inner.local_addr().map_err(|e| e.to_string())?;
    // Known to the RTMP listener before it can accept the connection.
    peers.insert(local, peer);
    let connected = inner.connect(rtmp).await;
    let mut plain = match connected {
        Ok(plain) => plain,
        Err(e) => {
            peers.take(&local);
            return Err(format!("cannot reach the RTMP listener at {rtmp}: {e}"));
        }
    };
    plain.set_nodelay(true).ok();
    let result = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
    peers.take(&local);
    match result {
        Ok((up, down)) => {
            tracing::debug!(%peer, bytes_in = up, bytes_out = down, "RTMPS connection ended");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
