//! Which local address a WebRTC datagram arrived on, and which addresses we offer as ICE host
//! candidates.
//!
//! The ICE agent of `rtc` accepts a STUN check only when the packet's local address equals
//! one of the local candidates it was given. A socket bound to `0.0.0.0:8000` (the default)
//! does not know, from `recv_from`, which of the host's addresses a datagram was sent to, so
//! the reader asks the kernel ([`crate::pktinfo`]). [`local_for`] then maps that destination to the candidate it belongs to.
//!
//! Candidates: `rtc.candidate` lists them explicitly (NAT, public addresses, host names
//! resolved at boot). Without it, a socket bound to one address offers that address, and a
//! socket bound to the wildcard offers every address of every interface that is up, looked
//! up again for each offer so that a changed DHCP lease or a new interface is picked up
//! (MediaMTX behaves the same way). Loopback is offered last, so a browser on the LAN tries
//! the LAN address first and a client on the same machine still connects.

use crate::pktinfo::socket_addr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The addresses to offer as host candidates: `configured` when it is not empty, else the
/// listen address, or every interface address when that is the wildcard.
pub(crate) fn candidates(configured: &[IpAddr], listen: SocketAddr) -> Vec<IpAddr> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    if !listen.ip().is_unspecified() {
        return vec![listen.ip()];
    }
    let mut found = interface_addresses(listen.is_ipv6());
    if found.is_empty() {
        tracing::warn!("no interface address found for WebRTC candidates; offering 127.0.0.1 (set rtc.candidate)");
        found.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    found
}

/// Addresses of interfaces that are up: IPv4 always, IPv6 too on an IPv6 socket (except
/// link-local ones, which need a scope id that SDP does not carry). Loopback last.
fn interface_addresses(with_ipv6: bool) -> Vec<IpAddr> {
    use nix::net::if_::InterfaceFlags;
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut found: Vec<IpAddr> = interfaces
        .filter(|i| i.flags.contains(InterfaceFlags::IFF_UP))
        .filter_map(|i| i.address.as_ref().and_then(socket_addr).map(|a| a.ip()))
        .filter(|ip| match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => with_ipv6 && (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect();
    found.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6()));
    found.dedup();
    found
}

/// The local address to tell the ICE agent for a datagram sent to `to`: that address when we
/// offered it, else the first candidate (behind NAT the packet's destination is a private
/// address and the offered candidate the public one).
pub(crate) fn local_for(to: Option<IpAddr>, candidates: &[IpAddr], port: u16) -> Option<SocketAddr> {
    let ip = match to {
        Some(ip) if candidates.contains(&ip) => ip,
        _ => *candidates.first()?,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_picks_its_own_candidate_or_the_first() {
        let lan: IpAddr = "192.0.2.10".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let public: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(local_for(Some(lo), &[lan, lo], 8000), Some("127.0.0.1:8000".parse().unwrap()));
        assert_eq!(local_for(Some(lan), &[lan, lo], 8000), Some("192.0.2.10:8000".parse().unwrap()));
        // NAT: the packet came to the private address, the peer was given the public one.
        assert_eq!(local_for(Some(lan), &[public], 8000), Some("203.0.113.7:8000".parse().unwrap()));
        assert_eq!(local_for(None, &[public, lo], 9), Some("203.0.113.7:9".parse().unwrap()));
        assert_eq!(local_for(Some(lo), &[], 9), None);
    }

    #[test]
    fn wildcard_offers_interface_addresses_with_loopback_last() {
        let found = candidates(&[], "0.0.0.0:8000".parse().unwrap());
        assert!(found.iter().all(|ip| ip.is_ipv4()), "{found:?}");
        assert!(found.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{found:?}");
        let first_loopback = found.iter().position(|ip| ip.is_loopback()).unwrap();
        assert!(found[first_loopback..].iter().all(|ip| ip.is_loopback()), "{found:?}");
        assert_eq!(candidates(&[], "127.0.0.1:8000".parse().unwrap()), vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        let configured: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(candidates(&[configured], "0.0.0.0:8000".parse().unwrap()), vec![configured]);
    }
}
