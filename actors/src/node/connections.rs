//! Admission of TCP connections (RTMP, RTMPS, HTTP, HTTPS, the API): at most
//! `node.max_connections` open at once on the whole node, and at most
//! `node.max_connections_per_ip` from one address (an IPv6 /64 counts as one address), so a
//! flood of idle connections cannot take every file descriptor and one address cannot take
//! every slot.
//!
//! A connection is admitted when it is accepted and holds a [`Permit`] until it closes. The
//! per-address table has an entry per address with a connection open, so it is bounded by
//! `max_connections`. 127.0.0.1 and ::1 are not counted per address: a reverse proxy or the
//! node's own RTMPS front end on this machine connects from there for many clients.
//! Refusals are counted in `/metrics` and logged at most once per second per reason, with
//! the number refused since the last line, so a storm cannot flood the log.

use super::stats::Stats;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits (`node.max_connections`, `node.max_connections_per_ip`; 0: no limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionLimits {
    /// Connections open at once on the node.
    pub max: usize,
    /// Connections open at once from one address (loopback's 127.0.0.1 and ::1 excepted).
    pub per_ip: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The node has `max_connections` open.
    Node(usize),
    /// This address has `max_connections_per_ip` open.
    Address(IpAddr, usize),
}

impl Refusal {
    fn label(&self) -> &'static str {
        match self {
            Refusal::Node(_) => "max_connections",
            Refusal::Address(..) => "max_connections_per_ip",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Node(max) => write!(f, "the node has {max} connections open (node.max_connections)"),
            Refusal::Address(ip @ IpAddr::V6(_), max) => write!(f, "{ip}/64 has {max} connections open (node.max_connections_per_ip)"),
            Refusal::Address(ip, max) => write!(f, "{ip} has {max} connections open (node.max_connections_per_ip)"),
        }
    }
}

#[derive(Debug, Default)]
struct RefusalLog {
    last: HashMap<&'static str, Instant>,
    since: HashMap<&'static str, u64>,
}

/// A node's connection counts.
#[derive(Debug)]
pub struct ConnectionGate {
    limits: ConnectionLimits,
    open: AtomicUsize,
    by_address: Mutex<HashMap<IpAddr, usize>>,
    log: Mutex<RefusalLog>,
    stats: Arc<Stats>,
}

/// One admitted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<ConnectionGate>,
    address: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.address {
            let mut table = self.gate.by_address.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = table.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    table.remove(&ip);
                }
            }
        }
    }
}

/// What the per-address limit counts `ip` as: an IPv4 address (also when it arrives mapped
/// into IPv6), or an IPv6 /64 (one host usually has a whole /64 to pick addresses from); `None`
/// for 127.0.0.1 and ::1.
fn address_key(ip: IpAddr) -> Option<IpAddr> {
    match ip.to_canonical() {
        IpAddr::V4(v4) if v4 == std::net::Ipv4Addr::LOCALHOST => None,
        IpAddr::V6(v6) if v6 == std::net::Ipv6Addr::LOCALHOST => None,
        IpAddr::V6(v6) => Some(IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1)))),
        v4 => Some(v4),
    }
}

impl ConnectionGate {
    /// A gate with these limits.
    pub fn new(limits: ConnectionLimits, stats: Arc<Stats>) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate { limits, open: AtomicUsize::new(0), by_address: Mutex::new(HashMap::new()), log: Mutex::new(RefusalLog::default()), stats })
    }

    /// The limits.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Admits a connection from `ip` accepted on `listener` (for the log: "rtmp", "http", ...),
    /// or says why not (logged and counted here).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, listener: &'static str) -> Result<Permit, Refusal> {
        let refusal = self.try_admit(ip);
        match refusal {
            Ok(permit) => Ok(permit),
            Err(refusal) => {
                self.refused(&refusal, listener);
                Err(refusal)
            }
        }
    }

    fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        // Taken only while under the limit, so admissions racing at the limit are not refused
        // for each other's attempts.
        let max = if self.limits.max > 0 { self.limits.max } else { usize::MAX };
        if self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < max).then_some(open + 1)).is_err() {
            return Err(Refusal::Node(self.limits.max));
        }
        let address = address_key(ip);
        if let Some(ip) = address {
            let mut table = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
            let count = table.entry(ip).or_insert(0);
            if self.limits.per_ip > 0 && *count >= self.limits.per_ip {
                if *count == 0 {
                    table.remove(&ip);
                }
                drop(table);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::Address(ip, self.limits.per_ip));
            }
            *count += 1;
        }
        Ok(Permit { gate: self.clone(), address })
    }

    fn refused(&self, refusal: &Refusal, listener: &'static str) {
        let reason = refusal.label();
        self.stats.inc("estuary_connections_refused_total", &[("listener", listener), ("reason", reason)]);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let due = log.last.get(reason).is_none_or(|at| now.duration_since(*at) >= Duration::from_secs(1));
        if due {
            let before = log.since.remove(reason).unwrap_or(0);
            log.last.insert(reason, now);
            drop(log);
            tracing::warn!(listener, %refusal, refused_since_last_line = before + 1, "connection refused");
        } else {
            *log.since.entry(reason).or_insert(0) += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn node_and_address_limits_hold_and_permits_free_their_slots() {
        let gate = ConnectionGate::new(ConnectionLimits { max: 5, per_ip: 2 }, Arc::new(Stats::default()));
        let a1 = gate.admit(ip(1), "rtmp").unwrap();
        let _a2 = gate.admit(ip(1), "rtmp").unwrap();
        assert_eq!(gate.admit(ip(1), "http").unwrap_err(), Refusal::Address(ip(1), 2));
        let _b = [gate.admit(ip(2), "rtmp").unwrap(), gate.admit(ip(2), "rtmp").unwrap()];
        // Loopback's own addresses count towards the node only.
        let _l = gate.admit(IpAddr::from([127, 0, 0, 1]), "rtmp").unwrap();
        assert_eq!(gate.admit(IpAddr::from([127, 0, 0, 1]), "rtmp").unwrap_err(), Refusal::Node(5));
        assert_eq!(gate.open(), 5);
        drop(a1);
        assert_eq!(gate.open(), 4);
        let _a3 = gate.admit(ip(1), "rtmp").unwrap();
        // Refused attempts left no slot taken and no empty entry behind.
        assert_eq!(gate.open(), 5);
        assert_eq!(gate.by_address.lock().unwrap().len(), 2);
        let refused: u64 = gate.stats.counters().iter().filter(|(n, ..)| *n == "estuary_connections_refused_total").map(|(.., v)| v).sum();
        assert_eq!(refused, 2);
    }

    #[test]
    fn other_loopback_addresses_mapped_forms_and_ipv6_neighbours_share_a_count() {
        let gate = ConnectionGate::new(ConnectionLimits { max: 0, per_ip: 1 }, Arc::new(Stats::default()));
        let _p = gate.admit(IpAddr::from([127, 0, 0, 2]), "http").unwrap();
        assert!(gate.admit(IpAddr::from([127, 0, 0, 2]), "http").is_err());
        // 127.0.0.1 mapped into IPv6 is still 127.0.0.1 (not limited per address).
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let _m = [gate.admit(mapped, "http").unwrap(), gate.admit(mapped, "http").unwrap()];
        // A mapped address counts with its IPv4 form.
        let _v4 = gate.admit(IpAddr::from([192, 0, 2, 7]), "http").unwrap();
        assert!(gate.admit("::ffff:192.0.2.7".parse().unwrap(), "http").is_err());
        // Addresses of one IPv6 /64 share a count; another /64 has its own.
        let _a = gate.admit("2001:db8:1:2::1".parse().unwrap(), "http").unwrap();
        assert!(gate.admit("2001:db8:1:2:ffff::9".parse().unwrap(), "http").is_err());
        assert!(gate.admit("2001:db8:1:3::1".parse().unwrap(), "http").is_ok());
    }
}
