//! The access policy every protocol asks before a publish or play: CIDR rules, then the
//! signed token (when a secret is configured and the action requires one), then the deciding
//! HTTP hook. Installed once at boot; without it everything is allowed.

use crate::auth::{Action, CidrRules, TokenSigner};
use crate::hooks::{self, Event};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// Local rules.
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// Token signer, when a secret is configured.
    pub signer: Option<TokenSigner>,
    /// Actions that need a valid token.
    pub require_token: HashSet<&'static str>,
    /// CIDR rules for publishing.
    pub publish: CidrRules,
    /// CIDR rules for playing.
    pub play: CidrRules,
}

static SETTINGS: OnceLock<Arc<AccessSettings>> = OnceLock::new();

/// Installs the policy (once, at boot).
pub fn install(settings: AccessSettings) {
    let _ = SETTINGS.set(Arc::new(settings));
}

/// The installed settings (for minting tokens through the API).
pub fn settings() -> Option<Arc<AccessSettings>> {
    SETTINGS.get().cloned()
}

/// A request to check.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Publish or play.
    pub action: Action,
    /// Client id.
    pub client: u64,
    /// Peer address.
    pub ip: Option<IpAddr>,
    /// Virtual host.
    pub vhost: &'a str,
    /// Application.
    pub app: &'a str,
    /// Stream name.
    pub stream: &'a str,
    /// Query parameters (`token` among them).
    pub params: &'a [(String, String)],
}

/// Checks a request; `Err` carries a reason fit for the client and the log.
pub async fn check(request: &Request<'_>) -> Result<(), String> {
    // The name rule first: a bad name reaches neither a hook nor the log.
    estuary_protocols::naming::check_key(request.vhost, request.app, request.stream)?;
    let result = check_inner(request).await;
    if let Err(reason) = &result {
        crate::stats::inc("estuary_requests_refused_total", &[("action", request.action.name())]);
        tracing::warn!(client = request.client, ip = ?request.ip, stream = %format!("{}/{}", request.app, request.stream), action = request.action.name(), %reason, "access refused");
    }
    result
}

/// For publishers that proved who they are another way and cannot carry a URL token:
/// GB28181 cameras (SIP digest) and ingests (configured, or added through the API). The CIDR
/// rules and the `on_publish` hook apply as to everyone; the token rule does not.
pub async fn check_without_token(request: &Request<'_>) -> Result<(), String> {
    estuary_protocols::naming::check_key(request.vhost, request.app, request.stream)?;
    let result = async {
        check_cidr(request)?;
        decide_by_hook(request).await
    }
    .await;
    if let Err(reason) = &result {
        crate::stats::inc("estuary_requests_refused_total", &[("action", request.action.name())]);
        tracing::warn!(client = request.client, ip = ?request.ip, stream = %format!("{}/{}", request.app, request.stream), action = request.action.name(), %reason, "access refused");
    }
    result
}

/// Only the local rules (CIDR and token), without the hook: for repeated requests of one
/// viewer such as HLS playlist refreshes.
pub fn check_rules(request: &Request<'_>) -> Result<(), String> {
    estuary_protocols::naming::check_key(request.vhost, request.app, request.stream)?;
    let result = check_local(request);
    if let Err(reason) = &result {
        crate::stats::inc("estuary_requests_refused_total", &[("action", request.action.name())]);
        tracing::warn!(ip = ?request.ip, stream = %format!("{}/{}", request.app, request.stream), action = request.action.name(), %reason, "access refused");
    }
    result
}

fn check_cidr(request: &Request<'_>) -> Result<(), String> {
    if let (Some(settings), Some(ip)) = (SETTINGS.get(), request.ip) {
        let rules = match request.action {
            Action::Publish => &settings.publish,
            Action::Play => &settings.play,
        };
        rules.check(ip)?;
    }
    Ok(())
}

fn check_local(request: &Request<'_>) -> Result<(), String> {
    check_cidr(request)?;
    if let Some(settings) = SETTINGS.get() {
        if settings.require_token.contains(request.action.name()) {
            let signer = settings.signer.as_ref().ok_or("tokens required but no secret configured")?;
            let token = request.params.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str()).ok_or("a token is required (?token=...)")?;
            let now = (crate::unix_ms() / 1000).max(0) as u64;
            signer.verify(token, request.action, &format!("{}/{}", request.app, request.stream), now)?;
        }
    }
    Ok(())
}

async fn check_inner(request: &Request<'_>) -> Result<(), String> {
    check_local(request)?;
    decide_by_hook(request).await
}

async fn decide_by_hook(request: &Request<'_>) -> Result<(), String> {
    let event = match request.action {
        Action::Publish => Event::Publish,
        Action::Play => Event::Play,
    };
    let ip = request.ip.map(|ip| ip.to_string()).unwrap_or_default();
    let body = hooks::body(request.client, &ip, request.vhost, request.app, request.stream, request.params);
    hooks::decide(event, request.app, body).await.map_err(|denied| denied.0)
}
