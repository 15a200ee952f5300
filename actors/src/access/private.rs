//! Where the node may be told to connect through the API. A forward or a URL ingest added over
//! the API makes the node open a connection wherever the caller says: with
//! `forward.deny_private` (the default) such destinations must not be this machine or its
//! private networks, so the API cannot be used to reach services that only trust the inside
//! (a request forgery). Destinations from the configuration file are the operator's own and are
//! not checked. Forwards check again at every connection, so a name that later resolves to a
//! private address (DNS rebinding) is refused then too.

use std::net::{IpAddr, SocketAddr};

/// Loopback, unspecified, private (RFC 1918, RFC 4193), shared (RFC 6598), link-local,
/// site-local, multicast, broadcast, reserved and benchmarking addresses, and IPv6 addresses
/// that carry an IPv4 one (IPv4-mapped and -compatible, NAT64, 6to4) when that one is; Teredo
/// is refused whole (its client address is hidden).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| is_private(IpAddr::V4(std::net::Ipv4Addr::from(((hi as u32) << 16) | lo as u32)));
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // ::ffff:a.b.c.d and ::a.b.c.d
                || (s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) && embedded(s[6], s[7]))
                // NAT64 64:ff9b::/96 and 64:ff9b:1::/48
                || (s[0] == 0x64 && s[1] == 0xff9b && embedded(s[6], s[7]))
                // 6to4 2002:aabb:ccdd::/48
                || (s[0] == 0x2002 && embedded(s[1], s[2]))
                // Teredo 2001:0::/32
                || (s[0] == 0x2001 && s[1] == 0)
        }
    }
}

/// The addresses of `host`, when none of them is private; otherwise why not.
pub async fn public_addresses(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port)).await.map_err(|e| format!("cannot resolve {bare}: {e}"))?.collect(),
    };
    if addresses.is_empty() {
        return Err(format!("{bare} has no address"));
    }
    if addresses.iter().any(|a| is_private(a.ip())) {
        return Err(format!("{bare} is this machine or a private network; destinations added through the API may not be (forward.deny_private)"));
    }
    Ok(addresses)
}

/// The host and port of a `scheme://[user@]host[:port]/...` URL (`default_port` when it names
/// none), for [`public_addresses`].
pub fn host_and_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map(|(_, a)| a).unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':').map(|p| p.parse().ok()).unwrap_or(Some(default_port))?;
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host.to_string(), port.parse().ok()?)),
        _ if !authority.is_empty() => Some((authority.to_string(), default_port)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for text in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "0.1.2.3", "192.0.0.8", "198.18.0.1", "240.0.0.1", "::1", "fd00::1", "fe80::1", "fec0::1", "::ffff:127.0.0.1", "::10.0.0.1", "64:ff9b::a00:5", "64:ff9b:1::a9fe:a9fe", "2002:c0a8:0101::1", "2001:0:4136:e378::1", "224.0.0.1", "255.255.255.255"] {
            assert!(is_private(text.parse().unwrap()), "{text}");
        }
        for text in ["8.8.8.8", "198.51.100.20", "172.32.0.1", "100.128.0.1", "2001:4860:4860::8888", "64:ff9b::808:808", "2002:0808:0808::1"] {
            assert!(!is_private(text.parse().unwrap()), "{text}");
        }
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(host_and_port("rtmp://cdn.example.com/live/key", 1935), Some(("cdn.example.com".into(), 1935)));
        assert_eq!(host_and_port("srt://10.0.0.2:10080?streamid=x", 10080), Some(("10.0.0.2".into(), 10080)));
        assert_eq!(host_and_port("rtmp://user:pw@[::1]:1936/live", 1935), Some(("::1".into(), 1936)));
        assert_eq!(host_and_port("https://h/x.m3u8", 443), Some(("h".into(), 443)));
        assert_eq!(host_and_port("nonsense", 1), None);
    }

    #[tokio::test]
    async fn literal_addresses_are_checked_without_dns() {
        assert!(public_addresses("127.0.0.1", 1935).await.is_err());
        assert!(public_addresses("[::1]", 1935).await.is_err());
        assert_eq!(public_addresses("198.51.100.20", 1935).await.unwrap(), vec!["198.51.100.20:1935".parse::<SocketAddr>().unwrap()]);
    }
}
