//! A lossy UDP relay on loopback: clients send to [`LossyRelay::port`], the relay forwards to
//! the target from one upstream socket per client and relays the answers back, dropping a
//! share of the datagrams in each direction. Drops are decided by a seeded generator, so a run
//! drops the same pattern every time; handshake packets are never dropped (SRT retries them
//! slowly, which only makes a test wait, not test anything).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running relay; stops on drop.
pub struct LossyRelay {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Datagrams forwarded.
    pub forwarded: Arc<AtomicU64>,
    /// Datagrams dropped.
    pub dropped: Arc<AtomicU64>,
}

/// xorshift64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn chance(&mut self, per_mille: u64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % 1000 < per_mille
    }
}

fn is_handshake(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && datagram[0] == 0x80 && datagram[1] == 0x00
}

impl LossyRelay {
    /// Relays to `target`, dropping `loss_per_mille`/1000 of the other datagrams each way.
    pub fn start(target: SocketAddr, loss_per_mille: u64, seed: u64) -> LossyRelay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("relay socket");
        front.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let port = front.local_addr().expect("relay address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let front = Arc::new(front);
        let upstreams: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
        {
            let (stop, forwarded, dropped) = (stop.clone(), forwarded.clone(), dropped.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(seed.max(1));
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, client)) = front.recv_from(&mut buf) else { continue };
                    let upstream = {
                        let mut map = upstreams.lock().unwrap();
                        map.entry(client)
                            .or_insert_with(|| {
                                let socket = UdpSocket::bind("127.0.0.1:0").expect("upstream socket");
                                socket.connect(target).expect("connect upstream");
                                socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
                                let socket = Arc::new(socket);
                                let (socket2, front2, stop2, forwarded2, dropped2) = (socket.clone(), front.clone(), stop.clone(), forwarded.clone(), dropped.clone());
                                std::thread::spawn(move || {
                                    let mut rng = Rng(seed.wrapping_mul(31).max(1));
                                    let mut buf = vec![0u8; 65536];
                                    while !stop2.load(Ordering::Relaxed) {
                                        let Ok(n) = socket2.recv(&mut buf) else { continue };
                                        if !is_handshake(&buf[..n]) && rng.chance(loss_per_mille) {
                                            dropped2.fetch_add(1, Ordering::Relaxed);
                                            continue;
                                        }
                                        forwarded2.fetch_add(1, Ordering::Relaxed);
                                        let _ = front2.send_to(&buf[..n], client);
                                    }
                                });
                                socket
                            })
                            .clone()
                    };
                    if !is_handshake(&buf[..n]) && rng.chance(loss_per_mille) {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    forwarded.fetch_add(1, Ordering::Relaxed);
                    let _ = upstream.send(&buf[..n]);
                }
            });
        }
        LossyRelay { port, stop, forwarded, dropped }
    }

    /// The port clients send to.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_and_drops_about_the_asked_share() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let relay = LossyRelay::start(server.local_addr().unwrap(), 100, 7);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut received = 0;
        let mut buf = [0u8; 64];
        for i in 0..1000u32 {
            client.send_to(&i.to_be_bytes(), ("127.0.0.1", relay.port())).unwrap();
            // One at a time: a burst would overflow socket buffers and lose datagrams that the
            // relay never saw.
            let seen = || relay.forwarded.load(Ordering::Relaxed) + relay.dropped.load(Ordering::Relaxed);
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while seen() < u64::from(i) + 1 && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            server.set_nonblocking(true).unwrap();
            while server.recv_from(&mut buf).is_ok() {
                received += 1;
            }
        }
        server.set_nonblocking(false).unwrap();
        while server.recv_from(&mut buf).is_ok() {
            received += 1;
        }
        let dropped = relay.dropped.load(Ordering::Relaxed);
        assert_eq!(received + dropped, 1000, "every datagram is either delivered or counted as dropped");
        assert!((50..=150).contains(&dropped), "10% asked, {dropped} of 1000 dropped");
    }
}
