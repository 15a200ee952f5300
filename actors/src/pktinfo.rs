//! Which local address a UDP datagram was sent to, for sockets bound to a wildcard address.
//!
//! `recv_from` tells the source only. With `IP_PKTINFO` / `IPV6_RECVPKTINFO` set, `recvmsg`
//! also returns the destination address as ancillary data (RFC 3542 §6, ip(7)). WebRTC needs
//! it to match a datagram to our ICE candidate, GB28181 to put a reachable address in its
//! SIP headers.

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};
use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

/// Space for one `in_pktinfo` or `in6_pktinfo` control message (header included), with room
/// to spare.
pub(crate) const CONTROL_SPACE: usize = 128;

/// Asks the kernel to report each datagram's destination address.
pub(crate) fn report_destinations(socket: &std::net::UdpSocket) -> io::Result<()> {
    match socket.local_addr()? {
        SocketAddr::V4(_) => setsockopt(socket, sockopt::Ipv4PacketInfo, &true)?,
        SocketAddr::V6(_) => {
            setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)?;
            // A dual-stack socket also receives IPv4; ignore a kernel that refuses this.
            let _ = setsockopt(socket, sockopt::Ipv4PacketInfo, &true);
        }
    }
    Ok(())
}

/// One datagram: its length, its source and, when the kernel said, its destination address.
pub(crate) fn receive(fd: RawFd, buf: &mut [u8], control: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let message = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(control), MsgFlags::empty())?;
    let from = message.address.as_ref().and_then(socket_addr).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without an IP source address"))?;
    let mut to = None;
    // A truncated control buffer only loses the destination; the datagram is still good.
    if let Ok(messages) = message.cmsgs() {
        for control in messages {
            match control {
                ControlMessageOwned::Ipv4PacketInfo(info) => to = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)))),
                ControlMessageOwned::Ipv6PacketInfo(info) => to = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr))),
                _ => {}
            }
        }
    }
    Ok((message.bytes, from, to.map(unmap)))
}

pub(crate) fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    if let Some(v6) = address.as_sockaddr_in6() {
        return Some(SocketAddr::from(*v6));
    }
    None
}

/// An IPv4 address that reached a dual-stack socket arrives as `::ffff:a.b.c.d`.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_socket_reports_the_destination_of_each_datagram() {
        let server = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        report_destinations(&server).unwrap();
        let port = server.local_addr().unwrap().port();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"hello", ("127.0.0.1", port)).unwrap();
        let (mut buf, mut control) = ([0u8; 64], [0u8; CONTROL_SPACE]);
        use std::os::fd::AsRawFd;
        let (n, from, to) = receive(server.as_raw_fd(), &mut buf, &mut control).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, client.local_addr().unwrap());
        assert_eq!(to, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
