//! HTTP callbacks in SRS's style. For each event the node POSTs a JSON body (`action`,
//! `client_id`, `ip`, `vhost`, `app`, `stream`, `param`, ...) to every URL configured for it,
//! for the stream's app or, failing that, the default set.
//!
//! Deciding events (`on_connect`, `on_publish`, `on_play`) allow only when every URL answers
//! HTTP 200 with a body of `0` or a JSON object whose `code` is 0. Anything else, including a
//! timeout or an unreachable server, denies; `fail_open` lists the events for which an
//! unreachable server (not a refusal) allows instead. Notifying events (`on_close`,
//! `on_unpublish`, `on_stop`, `on_dvr`, `on_hls`) run in the background; their failures are
//! logged and counted.
//!
//! The client is a minimal HTTP/1.1 one (plain `http://` URLs): a hook that blocks never
//! blocks other sessions, since each call runs in its own task with a timeout.

use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Hook events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A client connected (RTMP `connect`).
    Connect,
    /// A client disconnected.
    Close,
    /// A publish is about to start.
    Publish,
    /// A publish ended.
    Unpublish,
    /// A play is about to start.
    Play,
    /// A play ended.
    Stop,
    /// A recording segment was closed.
    Dvr,
    /// An HLS segment was written.
    Hls,
}

impl Event {
    /// `on_connect`, ...
    pub fn name(self) -> &'static str {
        match self {
            Event::Connect => "on_connect",
            Event::Close => "on_close",
            Event::Publish => "on_publish",
            Event::Unpublish => "on_unpublish",
            Event::Play => "on_play",
            Event::Stop => "on_stop",
            Event::Dvr => "on_dvr",
            Event::Hls => "on_hls",
        }
    }

    /// Every event.
    pub const ALL: [Event; 8] = [Event::Connect, Event::Close, Event::Publish, Event::Unpublish, Event::Play, Event::Stop, Event::Dvr, Event::Hls];
}

/// Hook configuration.
#[derive(Debug, Clone, Default)]
pub struct HookSettings {
    /// Per-call timeout.
    pub timeout: Duration,
    /// Events for which an unreachable hook server allows.
    pub fail_open: HashSet<String>,
    /// URLs by event name, for apps without their own set.
    pub default: BTreeMap<String, Vec<String>>,
    /// URLs by app, then event name.
    pub apps: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// `server_id` in bodies.
    pub server_id: String,
    /// The hooks of named vhosts that have their own (their streams use these instead).
    pub vhosts: BTreeMap<String, Arc<HookSettings>>,
}

/// A node's hooks: its settings and the counters calls are counted in.
#[derive(Debug, Default)]
pub struct Hooks {
    settings: crate::settings::Reloadable<HookSettings>,
    stats: Arc<crate::node::stats::Stats>,
}

fn urls(settings: &HookSettings, event: Event, app: &str) -> Vec<String> {
    let set = settings.apps.get(app).unwrap_or(&settings.default);
    set.get(event.name()).cloned().unwrap_or_default()
}

impl Hooks {
    /// Hooks with `settings`, counting calls in `stats`.
    pub fn new(settings: HookSettings, stats: Arc<crate::node::stats::Stats>) -> Self {
        Hooks { settings: crate::settings::Reloadable::new(settings), stats }
    }

    /// Replaces the settings (a configuration reload): calls made from now on use them.
    pub fn reload(&self, settings: HookSettings) {
        self.settings.set(settings);
    }

    /// True when any URL is configured for `event` in `app` (in any vhost).
    pub fn configured(&self, event: Event, app: &str) -> bool {
        let settings = self.settings.get();
        !urls(&settings, event, app).is_empty() || settings.vhosts.values().any(|v| !urls(v, event, app).is_empty())
    }

    /// The settings for a call with `body`: its vhost's own, or the node's.
    fn current(&self, body: &Value) -> Arc<HookSettings> {
        let settings = self.settings.get();
        match body["vhost"].as_str().and_then(|vhost| settings.vhosts.get(vhost)) {
            Some(own) => own.clone(),
            None => settings,
        }
    }

    /// Calls a deciding hook. `Ok` when every configured URL allows (or none is configured).
    pub async fn decide(&self, event: Event, app: &str, mut body: Value) -> Result<(), Denied> {
        let settings = self.current(&body);
        let urls = urls(&settings, event, app);
        if urls.is_empty() {
            return Ok(());
        }
        body["action"] = Value::String(event.name().into());
        body["server_id"] = Value::String(settings.server_id.clone());
        for url in urls {
            match post(&url, &body, settings.timeout).await {
                Ok((200, text)) if allows(&text) => {
                    self.stats.inc("estuary_hook_calls_total", &[("event", event.name()), ("result", "allow")]);
                }
                Ok((status, text)) => {
                    self.stats.inc("estuary_hook_calls_total", &[("event", event.name()), ("result", "deny")]);
                    let text: String = text.chars().take(200).collect();
                    return Err(Denied(format!("{} hook {url} answered {status} {text:?}", event.name())));
                }
                Err(e) => {
                    self.stats.inc("estuary_hook_calls_total", &[("event", event.name()), ("result", "error")]);
                    if settings.fail_open.contains(event.name()) {
                        tracing::warn!(hook = event.name(), %url, error = %e, "hook server unreachable; allowing (fail_open)");
                        continue;
                    }
                    return Err(Denied(format!("{} hook {url} failed: {e}", event.name())));
                }
            }
        }
        Ok(())
    }

    /// Calls a notifying hook in the background.
    pub fn notify(&self, event: Event, app: &str, mut body: Value) {
        let settings = self.current(&body);
        let stats = self.stats.clone();
        let urls = urls(&settings, event, app);
        if urls.is_empty() {
            return;
        }
        body["action"] = Value::String(event.name().into());
        body["server_id"] = Value::String(settings.server_id.clone());
        let spawn = move || async move {
            for url in urls {
                let result = post(&url, &body, settings.timeout).await;
                let outcome = match &result {
                    Ok((200, _)) => "ok",
                    Ok(_) => "rejected",
                    Err(_) => "error",
                };
                stats.inc("estuary_hook_calls_total", &[("event", event.name()), ("result", outcome)]);
                if outcome != "ok" {
                    tracing::warn!(hook = event.name(), %url, result = ?result, "notification hook failed");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(spawn());
            }
            Err(_) => tracing::warn!(hook = event.name(), "no runtime to send the hook from"),
        }
    }
}

/// Why a deciding hook refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// SRS's rule: `0`, or JSON with `code` 0.
pub fn allows(body: &str) -> bool {
    let body = body.trim();
    if body == "0" {
        return true;
    }
    serde_json::from_str::<Value>(body).ok().and_then(|v| v.get("code").and_then(|c| c.as_i64())) == Some(0)
}

/// Why a callback got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Not an `http://` URL.
    #[error("{0}: only http:// hook URLs are supported")]
    NotHttp(String),
    /// No answer in time.
    #[error("no answer within {0} ms")]
    Timeout(u128),
    /// Could not connect.
    #[error("connect {address}: {source}")]
    Connect {
        /// `host:port`.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The connection failed midway.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// What came back is not an HTTP response.
    #[error("malformed HTTP response")]
    Malformed,
}

/// POSTs JSON; returns status and body.
pub async fn post(url: &str, body: &Value, timeout: Duration) -> Result<(u16, String), CallError> {
    tokio::time::timeout(timeout, post_inner(url, body)).await.map_err(|_| CallError::Timeout(timeout.as_millis()))?
}

async fn post_inner(url: &str, body: &Value) -> Result<(u16, String), CallError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| CallError::NotHttp(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let mut stream = tokio::net::TcpStream::connect(&address).await.map_err(|source| CallError::Connect { address: address.clone(), source })?;
    let payload = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: estuary\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || raw.len() > 64 * 1024 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    estuary_protocols::http::parse_response(&raw).ok_or(CallError::Malformed)
}


/// The SRS-shaped body for a client event.
pub fn body(client: u64, ip: &str, vhost: &str, app: &str, stream: &str, params: &[(String, String)]) -> Value {
    let param = if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.iter().map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") }).collect::<Vec<_>>().join("&"))
    };
    serde_json::json!({
        "client_id": client.to_string(),
        "ip": ip,
        "vhost": vhost,
        "app": app,
        "stream": stream,
        "param": param,
        "stream_url": format!("/{app}/{stream}"),
        "tcUrl": format!("rtmp://{vhost}/{app}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srs_allow_rule() {
        assert!(allows("0"));
        assert!(allows(" 0\n"));
        assert!(allows(r#"{"code":0}"#));
        assert!(allows(r#"{"code": 0, "data": {}}"#));
        assert!(!allows(r#"{"code":1}"#));
        assert!(!allows("1"));
        assert!(!allows(""));
        assert!(!allows("ok"));
    }

    #[test]
    fn responses_parse() {
        assert_eq!(estuary_protocols::http::parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n0"), Some((200, "0".into())));
        assert_eq!(estuary_protocols::http::parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n0\r\n0\r\n\r\n"), Some((200, "0".into())));
        assert_eq!(estuary_protocols::http::parse_response(b"HTTP/1.0 403 Forbidden\r\n\r\nno"), Some((403, "no".into())));
        assert_eq!(estuary_protocols::http::parse_response(b"garbage"), None);
    }

    #[test]
    fn body_has_srs_fields() {
        let b = body(7, "127.0.0.1", "__defaultVhost__", "live", "cam", &[("token".into(), "x".into())]);
        assert_eq!(b["client_id"], "7");
        assert_eq!(b["param"], "?token=x");
        assert_eq!(b["stream"], "cam");
    }
}
