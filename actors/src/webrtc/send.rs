//! Datagrams of one wakeup sent together: everything a peer connection wrote since the last
//! flush goes out in one `sendmmsg` call (Linux takes up to 1024 messages per call), instead
//! of one `sendto` per RTP packet.

use bytes::BytesMut;
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Messages per `sendmmsg` call.
const BATCH: usize = 256;
/// How long a full socket buffer is waited on before the rest of the batch is dropped (as a
/// network would drop it; players ask again with NACKs, or wait for the next keyframe).
const SEND_WAIT: Duration = Duration::from_millis(20);
/// The first pause while the buffer is full; each further pause doubles, up to
/// [`SEND_RETRY_MAX`]. The socket is registered for reading only (see
/// [`super::SharedSocket`]), so room in the buffer is polled for, not signalled; the growing
/// pause keeps hundreds of waiting players from polling it every millisecond.
const SEND_RETRY: Duration = Duration::from_millis(1);
const SEND_RETRY_MAX: Duration = Duration::from_millis(8);

/// What one [`send_all`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) datagrams: usize,
    pub(crate) dropped: usize,
}

/// Sends `datagrams` on the non-blocking `socket` and empties the list (its allocation stays
/// for reuse).
pub(crate) async fn send_all(socket: &UdpSocket, datagrams: &mut Vec<(BytesMut, SocketAddr)>) -> Sent {
    let mut sent = Sent::default();
    let mut done = 0;
    let mut waiting_since: Option<std::time::Instant> = None;
    let mut pause = SEND_RETRY;
    while done < datagrams.len() {
        let upto = (done + BATCH).min(datagrams.len());
        let result = match send_batch(socket, &datagrams[done..upto]) {
            Ok(0) => Err(std::io::ErrorKind::WouldBlock.into()),
            other => other,
        };
        match result {
            Ok(n) => {
                sent.datagrams += n;
                done += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // What is left of this flush waits SEND_WAIT at most, then goes.
                let since = *waiting_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= SEND_WAIT {
                    sent.dropped += datagrams.len() - done;
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(SEND_RETRY_MAX);
            }
            Err(e) => {
                // The first message of the call failed: that destination only. It is dropped
                // and the rest goes on.
                tracing::debug!(error = %e, to = %datagrams[done].1, "WebRTC datagram not sent");
                sent.dropped += 1;
                done += 1;
            }
        }
    }
    datagrams.clear();
    sent
}

/// One `sendmmsg` of `batch`; how many messages the kernel took.
fn send_batch(socket: &UdpSocket, batch: &[(BytesMut, SocketAddr)]) -> std::io::Result<usize> {
    let slices: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|(bytes, _)| [IoSlice::new(bytes)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = batch.iter().map(|(_, to)| Some(SockaddrStorage::from(*to))).collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(batch.len(), None);
    let sent = sendmmsg(socket.as_raw_fd(), &mut headers, &slices, &addrs, [] as [ControlMessage<'_>; 0], MsgFlags::MSG_DONTWAIT).map_err(std::io::Error::from)?.count();
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::send_all;
    use bytes::BytesMut;

    #[tokio::test]
    async fn a_batch_arrives_whole_and_in_order() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // 300 queued datagrams outgrow the default receive buffer; a read that never comes
        // fails the test instead of hanging it.
        socket2::SockRef::from(&receiver).set_recv_buffer_size(4 << 20).unwrap();
        receiver.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let to = receiver.local_addr().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.set_nonblocking(true).unwrap();
        let mut datagrams: Vec<(BytesMut, std::net::SocketAddr)> = (0..300u16).map(|i| (BytesMut::from(&i.to_be_bytes()[..]), to)).collect();
        let sent = send_all(&sender, &mut datagrams).await;
        assert_eq!((sent.datagrams, sent.dropped), (300, 0));
        assert!(datagrams.is_empty());
        let mut buf = [0u8; 16];
        for i in 0..300u16 {
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &i.to_be_bytes());
        }
    }

    #[tokio::test]
    async fn an_unreachable_destination_costs_only_its_datagram() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let to = receiver.local_addr().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.set_nonblocking(true).unwrap();
        // An IPv6 destination on an IPv4 socket fails at once (EAFNOSUPPORT / EINVAL).
        let bad: std::net::SocketAddr = "[::1]:9".parse().unwrap();
        let mut datagrams = vec![(BytesMut::from(&b"a"[..]), to), (BytesMut::from(&b"x"[..]), bad), (BytesMut::from(&b"b"[..]), to)];
        let sent = send_all(&sender, &mut datagrams).await;
        assert_eq!((sent.datagrams, sent.dropped), (2, 1));
        let mut buf = [0u8; 16];
        for expected in [b"a", b"b"] {
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], expected);
        }
    }
}
