//! SRT in and out: MPEG-TS over SRT on one UDP port (SRS's 10080).
//!
//! ## Shape
//! - [`SrtListener`] owns the UDP socket. It parses every datagram, keeps one handshake state
//!   machine per caller address (`srt-protocol`'s sans-IO `Listen`), decides who may connect
//!   from the stream id, and routes packets of established connections to their session.
//! - One session per publishing connection ([`session`]), a task on a worker arbiter with a
//!   typed mailbox (packets from the listener, a close request). It drives `srt-protocol`'s
//!   `DuplexConnection` and demuxes the received TS into frames for the stream actor.
//! - One player group per stream ([`players`]), a task on the stream's worker holding every
//!   SRT player's connection: one subscription, the stream's TS muxed once and shared, the
//!   connections' timers and routed packets handled on a 5 ms tick, and the tick's datagrams
//!   sent with `sendmmsg` (a player's full-size packets as one UDP segmentation offload run).
//!
//! ## Why not `srt-tokio`'s listener
//! `srt-protocol` has `unimplemented!()`/`todo!()` on inputs ordinary callers send (a
//! passphrase the listener does not expect, a key length it does not use, `transtype=file`'s
//! congestion block), and `srt-tokio` runs every connection's handshake inside one listener
//! task, so one such caller ends SRT for everyone. Here every call into `srt-protocol` sits
//! behind `catch_unwind` and affects only the caller whose input triggered it; the cases we
//! know of are refused before they reach the library, with the reject code a caller expects:
//!
//! | caller | reject reason |
//! |---|---|
//! | stream id missing or malformed | `2400` bad request |
//! | access policy (rules, token, `on_publish`/`on_play` hook) refuses | `2403` forbidden |
//! | publish to a stream that is live | `2409` conflict |
//! | play of a stream nobody publishes | `2404` not found |
//! | passphrase given, none configured (or the reverse) | `1010` bad secret / `1011` unsecure |
//! | `transtype=file` (congestion `file`) | `1013` congestion |
//! | packet filter (FEC) or socket groups | `1014` filter / `1015` group |
//!
//! With a passphrase configured, Estuary adopts the caller's key length (`pbkeylen` 16, 24 or
//! 32), as libsrt listeners do.
//!
//! ## Stream ids
//! SRS's convention, see [`estuary_protocols::srt::streamid`]: `#!::r=live/livestream,m=publish`
//! to publish, `m=request` to play (the default), `h=` a vhost, other keys become hook
//! parameters; plain `live/livestream` and URL-encoded forms too.

mod listener;
mod players;
mod session;

pub use listener::SrtListener;

/// Binds the SRT UDP socket (at boot, so a busy port fails the start with a clear error).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    // Player groups send a wake's datagrams in bursts; a larger buffer (within the system's
    // `net.core.wmem_max`/`rmem_max`) keeps a burst from meeting a full one.
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.set_send_buffer_size(4 << 20);
    let _ = sock.set_recv_buffer_size(4 << 20);
    Ok(socket)
}
