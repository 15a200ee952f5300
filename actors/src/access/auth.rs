//! Local access control that needs no backend: signed tokens and CIDR rules.
//!
//! ## Tokens
//! A token is `<expiry>.<signature>`: `expiry` in Unix seconds, `signature` the lowercase hex
//! HMAC-SHA256, under the node's secret, of `<action>:<app>/<stream>:<expiry>` (`action` is
//! `publish` or `play`). Clients pass it as `?token=...` on any protocol's URL. A token is
//! valid for one action on one stream until its expiry; anything else (tampered, expired, for
//! another stream or action, malformed) is refused with a reason.
//!
//! ## CIDR rules
//! Per action, an allow list and a deny list of networks (`10.0.0.0/8`, `::1/128`, or a bare
//! address). Deny wins; a non-empty allow list admits only its networks.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;

/// What a client wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send a stream.
    Publish,
    /// Receive a stream.
    Play,
}

impl Action {
    /// `publish` or `play`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }

    /// Parses `publish` / `play`.
    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "publish" => Some(Action::Publish),
            "play" => Some(Action::Play),
            _ => None,
        }
    }
}

/// Signs and checks tokens with one secret.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(<secret>)")
    }
}

impl TokenSigner {
    /// A signer for `secret`.
    pub fn new(secret: &str) -> Self {
        TokenSigner { secret: secret.as_bytes().to_vec() }
    }

    fn signature(&self, action: Action, stream: &str, expiry: u64) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("{}:{stream}:{expiry}", action.name()).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A token for `action` on `stream` (`app/stream`) valid until `expiry` (Unix seconds).
    pub fn mint(&self, action: Action, stream: &str, expiry: u64) -> String {
        format!("{expiry}.{}", self.signature(action, stream, expiry))
    }

    /// Checks a token at time `now` (Unix seconds).
    pub fn verify(&self, token: &str, action: Action, stream: &str, now: u64) -> Result<(), TokenError> {
        let (expiry, signature) = token.split_once('.').ok_or(TokenError::Malformed("expected <expiry>.<signature>"))?;
        let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed("the expiry is not a number"))?;
        let expected = self.signature(action, stream, expiry);
        // The signature is a secret-derived value.
        if !same_secret(&expected, signature) {
            return Err(TokenError::Forged { action: action.name(), stream: stream.to_string() });
        }
        if now > expiry {
            return Err(TokenError::Expired { ago_s: now - expiry });
        }
        Ok(())
    }
}

/// Whether two secrets (tokens, passwords, signatures) are equal, in a time that depends on
/// their lengths only, not on where they first differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Why a signed URL token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `?token=`.
    #[error("a token is required (?token=...)")]
    Missing,
    /// Not `<expiry>.<signature>`.
    #[error("malformed token ({0})")]
    Malformed(&'static str),
    /// The signature is not ours for this action and stream.
    #[error("token signature does not match {action} {stream}")]
    Forged {
        /// `publish` or `play`.
        action: &'static str,
        /// `app/stream`.
        stream: String,
    },
    /// Past its expiry.
    #[error("token expired {ago_s} s ago")]
    Expired {
        /// Seconds since it expired.
        ago_s: u64,
    },
}

/// A network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    address: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n` or a bare address.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| format!("{text:?} is not an IP network"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{text:?}: prefix must be 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { address, prefix })
    }

    /// True when `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix as u32) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix as u32) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Allow and deny lists for one action.
#[derive(Debug, Clone, Default)]
pub struct CidrRules {
    /// Admitted networks (empty: everyone not denied).
    pub allow: Vec<Cidr>,
    /// Refused networks (wins over allow).
    pub deny: Vec<Cidr>,
}

impl CidrRules {
    /// Checks `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        if let Some(net) = self.deny.iter().find(|n| n.contains(ip)) {
            return Err(format!("address {ip} is denied by rule {}/{}", net.address, net.prefix));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(ip)) {
            return Err(format!("address {ip} is not in the allowed networks"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc") && same_secret("", ""));
        assert!(!same_secret("abc", "abd") && !same_secret("abc", "ab") && !same_secret("ab", "abc") && !same_secret("abc", ""));
        assert!(!same_secret("ab\0", "ab"), "a shorter secret padded with NUL is not equal");
    }

    #[test]
    fn tokens_bind_action_stream_and_expiry() {
        let signer = TokenSigner::new("s3cret");
        let token = signer.mint(Action::Play, "live/cam", 1000);
        assert!(signer.verify(&token, Action::Play, "live/cam", 999).is_ok());
        assert!(signer.verify(&token, Action::Play, "live/cam", 1000).is_ok());
        assert_eq!(signer.verify(&token, Action::Play, "live/cam", 1001), Err(TokenError::Expired { ago_s: 1 }));
        assert!(matches!(signer.verify(&token, Action::Publish, "live/cam", 999), Err(TokenError::Forged { action: "publish", .. })));
        assert!(matches!(signer.verify(&token, Action::Play, "live/other", 999), Err(TokenError::Forged { .. })));
        let mut tampered = token.clone();
        tampered.replace_range(0..4, "9999");
        assert!(matches!(signer.verify(&tampered, Action::Play, "live/cam", 999), Err(TokenError::Forged { .. })));
        assert!(matches!(signer.verify("garbage", Action::Play, "live/cam", 0), Err(TokenError::Malformed(_))));
        assert!(matches!(TokenSigner::new("other").verify(&token, Action::Play, "live/cam", 999), Err(TokenError::Forged { .. })));
    }

    #[test]
    fn cidr_rules() {
        let rules = CidrRules { allow: vec![Cidr::parse("127.0.0.0/8").unwrap(), Cidr::parse("::1").unwrap()], deny: vec![Cidr::parse("127.0.0.2").unwrap()] };
        assert!(rules.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(rules.check("::1".parse().unwrap()).is_ok());
        assert!(rules.check("::ffff:127.0.0.5".parse().unwrap()).is_ok());
        assert!(rules.check("127.0.0.2".parse().unwrap()).unwrap_err().contains("denied"));
        assert!(rules.check("10.1.2.3".parse().unwrap()).unwrap_err().contains("not in"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nonsense").is_err());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
    }
}
