//! The access policy every protocol asks before a publish or play: CIDR rules, then the
//! signed token (when a secret is configured and the action requires one), then the deciding
//! HTTP hook. One [`Access`] per node; with default settings everything is allowed.


pub mod auth;
pub mod hooks;
pub mod private;
pub mod secrets;

use crate::access::auth::{Action, CidrRules, TokenSigner};
use hooks::Event;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

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

/// Why a publish or play was refused; the text is fit for the client and the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The name breaks the stream-name rule.
    #[error("bad stream name: {0}")]
    BadName(String),
    /// The CIDR rules refused the address.
    #[error("{0}")]
    Network(String),
    /// A token was required and missing, malformed, forged or expired.
    #[error("{0}")]
    Token(#[from] auth::TokenError),
    /// Tokens are required but no secret is configured.
    #[error("tokens required but no secret configured")]
    NoSecret,
    /// The deciding hook refused (or could not be reached).
    #[error("{0}")]
    Hook(String),
    /// Another node of the cluster publishes the stream.
    #[error("{0}")]
    Cluster(#[from] crate::cluster::Taken),
}

/// A node's access policy.
#[derive(Debug, Default)]
pub struct Access {
    settings: crate::settings::Reloadable<AccessSettings>,
    hooks: Arc<hooks::Hooks>,
    stats: Arc<crate::node::stats::Stats>,
    /// Publishes claim their stream in the cluster directory once everything else agreed.
    cluster: Option<Arc<crate::cluster::Directory>>,
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

impl Access {
    /// The policy `settings`, asking `hooks` and counting refusals in `stats`.
    pub fn new(settings: AccessSettings, hooks: Arc<hooks::Hooks>, stats: Arc<crate::node::stats::Stats>, cluster: Option<Arc<crate::cluster::Directory>>) -> Self {
        Access { settings: crate::settings::Reloadable::new(settings), hooks, stats, cluster }
    }

    /// The settings (for minting tokens through the API).
    pub fn settings(&self) -> Arc<AccessSettings> {
        self.settings.get()
    }

    /// Replaces the local rules (a configuration reload): requests checked from now on use them.
    pub fn reload(&self, settings: AccessSettings) {
        self.settings.set(settings);
    }

    /// Checks a request; `Err` carries a reason fit for the client and the log.
    pub async fn check(&self, request: &Request<'_>) -> Result<(), Refused> {
        // The name rule first: a bad name reaches neither a hook nor the log.
        estuary_protocols::naming::check_key(request.vhost, request.app, request.stream).map_err(Refused::BadName)?;
        // Another node of the cluster pulling the stream, proven by `cluster.secret`.
        if let (Some(directory), Action::Play) = (&self.cluster, request.action) {
            if let Some((_, token)) = request.params.iter().find(|(k, _)| k == "cluster_token") {
                if directory.is_pull_token(token, &format!("{}/{}/{}", request.vhost, request.app, request.stream)) {
                    return Ok(());
                }
                tracing::warn!(client = request.client, ip = ?request.ip, stream = %format!("{}/{}", request.app, request.stream), "a cluster pull token that does not verify (another cluster.secret?); the ordinary play rules apply");
            }
        }
        let result = self.check_inner(request).await;
        if let Err(reason) = &result {
            self.stats.inc("estuary_requests_refused_total", &[("action", request.action.name())]);
            tracing::warn!(client = request.client, ip = ?request.ip, stream = %format!("{}/{}", request.app, request.stream), action = request.action.name(), %reason, "access refused");
        }
        result
    }

    /// For publishers that proved who they are another way and cannot carry a URL token:
    /// GB28181 cameras (SIP digest) and ingests (configured, or added through the API). The CIDR
    /// rules and the `on_publish` hook apply as to everyone; the token rule does not.
    pub async fn check_without_token(&self, request: &Request<'_>) -> Result<(), Refused> {
        estuary_protocols::naming::check_key(request.vhost, request.app, request.stream).map_err(Refused::BadName)?;
        let result = async {
            self.check_cidr(request)?;
            self.decide_by_hook(request).await?;
            self.claim(request).await
        }
        .await;
        if let Err(reason) = &result {
            self.stats.inc("estuary_requests_refused_total", &[("action", request.action.name())]);
            tracing::warn!(client = request.client, ip = ?request.ip, stream = %format!("{}/{}", request.app, request.stream), action = request.action.name(), %reason, "access refused");
        }
        result
    }

    /// Only the local rules (CIDR and token), without the hook: for repeated requests of one
    /// viewer such as HLS playlist refreshes.
    pub fn check_rules(&self, request: &Request<'_>) -> Result<(), Refused> {
        estuary_protocols::naming::check_key(request.vhost, request.app, request.stream).map_err(Refused::BadName)?;
        let result = self.check_local(request);
        if let Err(reason) = &result {
            self.stats.inc("estuary_requests_refused_total", &[("action", request.action.name())]);
            tracing::warn!(ip = ?request.ip, stream = %format!("{}/{}", request.app, request.stream), action = request.action.name(), %reason, "access refused");
        }
        result
    }

    fn check_cidr(&self, request: &Request<'_>) -> Result<(), Refused> {
        if let Some(ip) = request.ip {
            let settings = self.settings.get();
            let rules = match request.action {
                Action::Publish => &settings.publish,
                Action::Play => &settings.play,
            };
            rules.check(ip).map_err(Refused::Network)?;
        }
        Ok(())
    }

    fn check_local(&self, request: &Request<'_>) -> Result<(), Refused> {
        self.check_cidr(request)?;
        {
            let settings = self.settings.get();
            if settings.require_token.contains(request.action.name()) {
                let signer = settings.signer.as_ref().ok_or(Refused::NoSecret)?;
                let token = request.params.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str()).ok_or(auth::TokenError::Missing)?;
                let now = (crate::unix_ms() / 1000).max(0) as u64;
                signer.verify(token, request.action, &format!("{}/{}", request.app, request.stream), now)?;
            }
        }
        Ok(())
    }

    async fn check_inner(&self, request: &Request<'_>) -> Result<(), Refused> {
        self.check_local(request)?;
        self.decide_by_hook(request).await?;
        self.claim(request).await
    }

    /// A publish claims its stream in the cluster directory (origins only), last, so that a
    /// publish refused for another reason never holds a claim.
    async fn claim(&self, request: &Request<'_>) -> Result<(), Refused> {
        match (&self.cluster, request.action) {
            // An edge claims nothing: what is published on it goes on to an origin, which claims.
            (Some(directory), Action::Publish) if !directory.is_edge() => {
                let stream = format!("{}/{}/{}", request.vhost, request.app, request.stream);
                if let Some(pull) = directory.pull_state(&stream) {
                    // This node pulls the stream: while its owner plays it, it is the owner's;
                    // once the owner is gone, the pull gives way (the publisher may retry at once).
                    let name = format!("{}/{}", request.app, request.stream);
                    if pull.state == "looking up" {
                        directory.request_stop(&stream);
                        return Err(Refused::Cluster(crate::cluster::Taken { stream: format!("{name} (pulled here from a node that is gone; the pull stops now, publish again)"), owner: pull.owner }));
                    }
                    return Err(Refused::Cluster(crate::cluster::Taken { stream: name, owner: pull.owner }));
                }
                Ok(directory.claim(&stream).await?)
            }
            _ => Ok(()),
        }
    }

    async fn decide_by_hook(&self, request: &Request<'_>) -> Result<(), Refused> {
        let event = match request.action {
            Action::Publish => Event::Publish,
            Action::Play => Event::Play,
        };
        let ip = request.ip.map(|ip| ip.to_string()).unwrap_or_default();
        let body = hooks::body(request.client, &ip, request.vhost, request.app, request.stream, request.params);
        self.hooks.decide(event, request.app, body).await.map_err(|denied| Refused::Hook(denied.0))
    }
}
