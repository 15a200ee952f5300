//! The HTTP API (SRS's port 1985) in SRS's JSON shapes: every answer has `code` (0 on
//! success, otherwise the HTTP status) and `server`; errors add `message`.
//! Every path answers with and without a trailing slash.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /api/`, `GET /api/v1/` | SRS's lists of versions and endpoints |
//! | `GET /api/v1/vhosts`, `GET /api/v1/vhosts/{id}` | vhosts with their streams, clients and bytes |
//! | `GET /api/v1/rusages`, `/self_proc_stats`, `/system_proc_stats`, `/meminfos` | the process and the machine, from `/proc` |
//! | `GET /api/v1/features`, `/requests`, `/authors` | the build's features, the request echoed, the license |
//! | `GET /api/v1/versions` | version |
//! | `GET /api/v1/summaries` | uptime, memory, CPU, network totals, clients |
//! | `GET /api/v1/streams[?start=&count=&all=true]`, `GET /api/v1/streams/{id}` | live streams; with `all=true` also the remembered (ended) ones |
//! | `GET /api/v1/clients[?start=&count=]`, `GET /api/v1/clients/{id}`, `DELETE /api/v1/clients/{id}` | clients; DELETE kicks |
//! | `POST /api/v1/tokens` | mints a signed URL token: `{"action":"play","app":"live","stream":"s","ttl_seconds":3600}` |
//! | `GET /api/v1/supervisors` | restart counts |
//! | `GET /api/v1/dvr` | streams being recorded: recording, or suspended with the error |
//! | `GET /api/v1/tasks` | actors and tasks alive by kind, connections, clients (leak checks) |
//! | `GET /api/v1/cluster` | the cluster directory: this node, the registry's health, the nodes (role, addresses, load, last beat) and the stream owners; `mode: "standalone"` and nothing else on a standalone node |
//! | `POST /api/v1/debug/fault?actor=&stream=&kind=&ms=&during_ms=` | fault injection (only with `api.debug_faults`): `actor` is `rtmp_listener`, `srt_listener`, `storage`, or `stream`, `hls`, `dash`, `dvr` of `stream=app/name`; `kind` is `panic` (default), `stall` (`ms`) or `slow` (sleep `ms` per write for `during_ms`) |
//! | `GET /api/v1/console` | what the web console shows play URLs from: ports, switches, upload limits |
//! | `POST /api/v1/uploads?name=clip.mp4`, `GET /api/v1/uploads` | a media file (the body) saved to `ingest.media_dir` for virtual live; the files there |
//! | `GET /metrics` | Prometheus text |
//!
//! With `http.console` (the default) the HTTP server answers the same `/api/` and `/rtc/`
//! paths (their trailing slash trimmed too), so the console and player pages reach them from
//! their own origin. There every `/api/` call needs credentials (see [`OnHttpPort`]); WHIP and
//! WHEP stay public as on this port.

mod clients;
mod console;
mod debug;
mod gb28181;
mod jobs;
mod recordings;
mod rtc;
mod srs;
mod streams;
mod tokens;

pub use console::Uploads;
pub use streams::all_streams;
use estuary_actors::access::auth::same_secret;
use clients::*;
use console::*;
use debug::*;
use gb28181::*;
use jobs::*;
use recordings::*;
use rtc::*;
use srs::*;
use streams::*;
use tokens::*;

use crate::{metrics, AppState};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse};

use estuary_actors::messages::{GetStreamInfo, InjectFault, ListStreamRecords, ListStreams};
use estuary_actors::stream::StreamInfo;
use estuary_storage::StreamRecord;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

const SERVER: &str = "estuary";
/// Largest page the list endpoints serve.
const MAX_PAGE: usize = 1000;

/// The API server: the endpoints, with SRS's error shapes for bad queries and bodies, and a
/// JSON 404 for every other path.
pub fn routes(cfg: &mut web::ServiceConfig) {
    extractors(cfg);
    endpoints(cfg);
    cfg.default_service(web::to(|| async { error(404, "no such API") }));
}

/// How the API's extractors answer a bad query or body.
pub fn extractors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|err, _| actix_web::error::InternalError::from_response(err.to_string(), error(400, &format!("bad query: {err}"))).into()))
        // Like SRS, a JSON body is read whatever its Content-Type: `curl -d` sends
        // application/x-www-form-urlencoded. What is not JSON still gets 400 with serde's
        // reason (the field, or the line and column).
        .app_data(web::JsonConfig::default().limit(64 * 1024).content_type(|_| true).content_type_required(false).error_handler(|err, _| {
            // Too large is 413, anything else about the body 400.
            let status = match err {
                actix_web::error::JsonPayloadError::Overflow { .. } | actix_web::error::JsonPayloadError::OverflowKnownLength { .. } => 413,
                _ => 400,
            };
            actix_web::error::InternalError::from_response(err.to_string(), error(status, &format!("bad JSON body: {err}"))).into()
        }));
}

/// Every API path (the HTTP server mounts them too, for the console).
pub fn endpoints(cfg: &mut web::ServiceConfig) {
    cfg
        // Paths are matched without their trailing slash (the server trims it first, see
        // `main.rs`): `/api/v1/streams/` is `/api/v1/streams`, as in SRS.
        .route("/api", web::get().to(api_root))
        .route("/api/v1", web::get().to(api_v1_root))
        .route("/api/v1/vhosts", web::get().to(vhosts))
        .route("/api/v1/vhosts/{id}", web::get().to(vhost_by_id))
        .route("/api/v1/rusages", web::get().to(rusages))
        .route("/api/v1/self_proc_stats", web::get().to(self_proc_stats))
        .route("/api/v1/system_proc_stats", web::get().to(system_proc_stats))
        .route("/api/v1/meminfos", web::get().to(meminfos))
        .route("/api/v1/features", web::get().to(features))
        .route("/api/v1/requests", web::get().to(requests))
        .route("/api/v1/authors", web::get().to(authors))
        .route("/api/v1/raw", web::get().to(raw))
        .route("/api/v1/versions", web::get().to(versions))
        .route("/api/v1/summaries", web::get().to(summaries))
        .route("/api/v1/cluster", web::get().to(cluster))
        .route("/api/v1/streams", web::get().to(streams))
        .route("/api/v1/streams/{id}", web::get().to(stream_by_id))
        .route("/api/v1/clients", web::get().to(list_clients))
        .route("/api/v1/clients/{id}", web::get().to(client_by_id))
        .route("/api/v1/clients/{id}", web::delete().to(kick_client))
        .route("/api/v1/tokens", web::post().to(mint_token))
        .route("/api/v1/recordings", web::get().to(list_recordings))
        .route("/api/v1/recordings", web::delete().to(delete_recordings))
        .route("/api/v1/dvr", web::post().to(dvr_control))
        .route("/api/v1/dvr", web::get().to(dvr_status))
        .route("/rtc/v1/whip", web::post().to(whip_publish))
        .route("/rtc/v1/whip/resource/{id}", web::delete().to(rtc_delete))
        .route("/rtc/v1/whep", web::post().to(whep_play))
        .route("/rtc/v1/whep/resource/{id}", web::delete().to(rtc_delete))
        .route("/rtc/v1/publish", web::post().to(srs_rtc_publish))
        .route("/rtc/v1/play", web::post().to(srs_rtc_play))
        .route("/rtc/v1/publish", web::method(actix_web::http::Method::OPTIONS).to(rtc_preflight))
        .route("/rtc/v1/play", web::method(actix_web::http::Method::OPTIONS).to(rtc_preflight))
        .route("/rtc/v1/whip", web::method(actix_web::http::Method::OPTIONS).to(rtc_preflight))
        .route("/rtc/v1/whep", web::method(actix_web::http::Method::OPTIONS).to(rtc_preflight))
        .route("/rtc/v1/whip/resource/{id}", web::method(actix_web::http::Method::OPTIONS).to(rtc_preflight))
        .route("/rtc/v1/whep/resource/{id}", web::method(actix_web::http::Method::OPTIONS).to(rtc_preflight))
        .route("/api/v1/gb28181/devices", web::get().to(gb_devices))
        .route("/api/v1/gb28181/devices/{device}/channels/{channel}/{action}", web::post().to(gb_channel))
        .route("/gb/v1/publish", web::post().to(gb_publish))
        .route("/api/v1/transcodes", web::get().to(list_transcodes))
        .route("/api/v1/taps", web::get().to(list_taps))
        .route("/api/v1/streams/{app}/{stream}/captions", web::post().to(post_caption))
        .route("/api/v1/streams/{app}/{stream}/metadata", web::post().to(post_metadata))
        .route("/api/v1/tap/{app}/{stream}", web::get().to(tap_stream))
        .route("/api/v1/transcodes", web::post().to(add_transcode))
        .route("/api/v1/transcodes/{id}", web::delete().to(remove_transcode))
        .route("/api/v1/ingests", web::get().to(list_ingests))
        .route("/api/v1/ingests", web::post().to(add_ingest))
        .route("/api/v1/ingests/{id}", web::delete().to(remove_ingest))
        .route("/api/v1/forwards", web::get().to(list_forwards))
        .route("/api/v1/forwards", web::post().to(add_forward))
        .route("/api/v1/forwards/{id}", web::delete().to(remove_forward))
        .route("/api/v1/supervisors", web::get().to(supervisors))
        .route("/api/v1/tasks", web::get().to(tasks))
        .route("/api/v1/debug/fault", web::post().to(fault))
        .route("/api/v1/console", web::get().to(console_info))
        .route("/api/v1/uploads", web::get().to(list_uploads))
        .route("/api/v1/uploads", web::post().to(upload))
        .route("/metrics", web::get().to(metrics_text));
}

pub fn error(status: u16, message: &str) -> HttpResponse {
    let status_code = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status_code).json(json!({ "code": status, "server": SERVER, "message": message }))
}

/// Passes when the API is open or the request carries the configured credentials.
pub struct Authorized;

impl FromRequest for Authorized {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let reads = matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD);
        std::future::ready(authorize(req, !reads).map(|()| Authorized))
    }
}

/// Passes as [`Authorized`] does for a call that changes the node, whatever its method (SRS's
/// `GET /api/v1/raw?rpc=reload`).
pub struct AuthorizedChange;

impl FromRequest for AuthorizedChange {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(authorize(req, true).map(|()| AuthorizedChange))
    }
}

/// Marks an app whose reads are open without credentials: the metrics port (`metrics.listen`),
/// which serves nothing but `/metrics` to the scrapers it was opened for.
pub struct PublicReads;

/// Marks the HTTP server's app: the API's paths there (for the console) always need
/// credentials, the API's or the console token, since that port is the one put behind reverse
/// proxies and opened to viewers.
pub struct OnHttpPort;

fn refuse(status: u16, message: &str) -> actix_web::Error {
    actix_web::error::InternalError::from_response(if status == 401 { "unauthorized" } else { "forbidden" }, error(status, message)).into()
}

/// Whether a request's `Origin` names another site than its `Host` (a page of another origin).
fn foreign_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get("origin").and_then(|v| v.to_str().ok()) else { return false };
    let host = req.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or("");
    let authority = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    let bare = |a: &str| a.strip_suffix(":80").or_else(|| a.strip_suffix(":443")).unwrap_or(a).to_ascii_lowercase();
    authority.is_empty() || bare(authority) != bare(host)
}

/// The API's rule: reads are open unless credentials are configured; a call that `changes`
/// the node needs the credentials, or, without any configured, comes straight from this machine.
/// On the HTTP port (the console's) every call needs credentials: the API's, or, when none are
/// configured, the console token.
fn authorize(req: &HttpRequest, changes: bool) -> Result<(), actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Ok(());
    };
    let running = state.reloader.running();
    let auth = &running.api;
    let reads = !changes;
    if changes && foreign_origin(req) {
        return Err(refuse(403, "a page of another origin cannot change the node"));
    }
    // JSON bodies are read whatever their Content-Type (for `curl -d`). A browser sends a
    // POST without a body type, or with a form or text/plain one (CORS's "simple" requests),
    // to another origin without asking first (no preflight), so such a request from a web
    // page (it carries Origin, or Sec-Fetch-Site: cross-site) is refused: no page can drive
    // the API from a visitor's browser. Any other type (JSON, an upload's
    // application/octet-stream) or method (DELETE) from another origin needs a preflight,
    // which the API does not grant; from the console's own origin it is served.
    let simple_type = match actix_web::HttpMessage::mime_type(req) {
        Ok(Some(mime)) => matches!((mime.type_().as_str(), mime.subtype().as_str()), ("application", "x-www-form-urlencoded") | ("multipart", "form-data") | ("text", "plain")),
        Ok(None) => true,
        Err(_) => true,
    };
    let simple = simple_type && matches!(*req.method(), actix_web::http::Method::POST | actix_web::http::Method::GET | actix_web::http::Method::HEAD);
    let from_a_page = req.headers().contains_key("origin") || req.headers().get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site");
    if !reads && from_a_page && simple {
        let response = error(403, "a cross-site form or text POST cannot change the node; send Content-Type: application/json");
        return Err(actix_web::error::InternalError::from_response("forbidden", response).into());
    }
    // A GET that changes the node (SRS's reload) could be an <img> on a page of another
    // site, or of another port of this host (same-site); browsers say where a request comes
    // from, tools such as curl do not.
    let get = matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD);
    if changes && get && req.headers().get("sec-fetch-site").is_some_and(|v| v.as_bytes() != b"same-origin" && v.as_bytes() != b"none") {
        let response = error(403, "a page of another origin cannot make this call; use curl or the API from this origin");
        return Err(actix_web::error::InternalError::from_response("forbidden", response).into());
    }
    let header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let configured = !auth.token.is_empty() || (!auth.username.is_empty() && !auth.password.is_empty());
    if req.app_data::<OnHttpPort>().is_some() && !configured {
        let token = state.console_token.as_deref().unwrap_or("");
        let ok = !token.is_empty() && header.strip_prefix("Bearer ").is_some_and(|t| same_secret(t.trim(), token));
        return if ok {
            Ok(())
        } else {
            Err(refuse(401, "the API on the HTTP port needs credentials: the console token (in <node.data_dir>/console-token), or set api.token or api.username/api.password"))
        };
    }
    if !configured {
        // No credentials configured: the API is served to this machine only (reads to other
        // hosts too with api.public_reads, as in SRS, or on the metrics port); what changes
        // the node or mints tokens (every method but GET/HEAD, and a reload) always to this
        // machine only. Direct from this machine only: not through a local reverse proxy or
        // tunnel (its forwarding headers give it away; without them, put api.token on such
        // setups), and not a page whose own host name was rebound to 127.0.0.1 (Host must
        // name a loopback address).
        let proxied = ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|h| req.headers().contains_key(*h));
        let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
        // `[v6]`, `[v6]:port`, `name`, `name:port`.
        let host_name = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit())).map(|(h, _)| h).unwrap_or(host),
        };
        let loopback_host = host_name.eq_ignore_ascii_case("localhost") || host_name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback());
        let local = !proxied && loopback_host && req.peer_addr().is_some_and(|peer| peer.ip().to_canonical().is_loopback());
        let public_reads = running.api.public_reads || req.app_data::<PublicReads>().is_some();
        if local || (reads && public_reads) {
            return Ok(());
        }
        let response = if reads {
            error(403, "the API answers other hosts only with credentials: set api.token or api.username/api.password (or api.public_reads = true to let anyone read it)")
        } else {
            error(403, "this API call changes the node or mints tokens: from other hosts it needs api.token or api.username/api.password to be set")
        };
        return Err(actix_web::error::InternalError::from_response("forbidden", response).into());
    }
    let bearer_ok = !auth.token.is_empty() && header.strip_prefix("Bearer ").is_some_and(|t| same_secret(t.trim(), &auth.token));
    let basic_ok = !auth.username.is_empty()
        && header.strip_prefix("Basic ").and_then(|b| decode_base64(b.trim())).is_some_and(|pair| same_secret(&pair, &format!("{}:{}", auth.username, auth.password)));
    if bearer_ok || basic_ok {
        Ok(())
    } else {
        let response = error(401, "authentication required");
        Err(actix_web::error::InternalError::from_response("unauthorized", response).into())
    }
}

/// `user:password` of a Basic credential (RFC 7617), when it is valid base64 and UTF-8.
fn decode_base64(text: &str) -> Option<String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    // Padding optional, as clients send it either way.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));
    let bytes = LENIENT.decode(text).ok()?;
    String::from_utf8(bytes).ok()
}

async fn versions(_: Authorized) -> HttpResponse {
    let version = env!("CARGO_PKG_VERSION");
    let parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    HttpResponse::Ok().json(json!({
        "code": 0,
        "server": SERVER,
        "data": {
            "major": parts.first().copied().unwrap_or(0),
            "minor": parts.get(1).copied().unwrap_or(0),
            "revision": parts.get(2).copied().unwrap_or(0),
            "version": version,
        }
    }))
}

async fn cluster(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let Some(directory) = state.node.cluster.clone() else {
        return HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "mode": "standalone" }));
    };
    let snapshot = directory.snapshot().await;
    let (connected, last_error, last_ok_ms) = directory.health();
    let registry = json!({ "url": directory.shown_url(), "reachable": connected && snapshot.is_ok(), "error": snapshot.as_ref().err().cloned().or(last_error), "last_ok_ms": last_ok_ms });
    let (nodes, streams) = snapshot.unwrap_or_default();
    HttpResponse::Ok().json(json!({
        "code": 0,
        "server": SERVER,
        "mode": directory.settings().role,
        "node_id": directory.node_id(),
        "registry": registry,
        "nodes": nodes,
        "streams": streams,
    }))
}

async fn summaries(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let (bytes_in, bytes_out) = metrics::byte_totals(&state.node);
    HttpResponse::Ok().json(json!({
        "code": 0,
        "server": SERVER,
        "data": {
            "ok": true,
            "self": {
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
                "uptime_ms": state.started.elapsed().as_millis() as u64,
                "mem_kbyte": metrics::rss_bytes() / 1024,
                "cpu_seconds": metrics::cpu_seconds(),
                "cpu_percent": metrics::cpu_percent(&state.last_cpu),
            },
            "network": { "recv_bytes": bytes_in, "send_bytes": bytes_out },
            "clients": state.node.clients.snapshot().len(),
        }
    }))
}

#[derive(Deserialize)]
struct Page {
    start: Option<usize>,
    count: Option<usize>,
    /// Streams: also those that ended (remembered in storage); `true` or `false`.
    all: Option<bool>,
}

impl Page {
    fn bounds(&self) -> Result<(usize, usize), HttpResponse> {
        let count = self.count.unwrap_or(100);
        if count == 0 || count > MAX_PAGE {
            return Err(error(400, &format!("count must be 1..={MAX_PAGE}")));
        }
        Ok((self.start.unwrap_or(0), count))
    }
}


pub async fn metrics_text(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    match metrics::render(&state).await {
        Ok(text) => HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text),
        Err(response) => response,
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srs_stream_urls() {
        assert_eq!(parse_stream_url("webrtc://example.com/live/livestream"), Some(("live".into(), "livestream".into(), vec![])));
        assert_eq!(parse_stream_url("webrtc://h:1985/live/s?token=abc&x"), Some(("live".into(), "s".into(), vec![("token".into(), "abc".into()), ("x".into(), String::new())])));
        assert_eq!(parse_stream_url("webrtc://h/only-stream"), None);
        assert_eq!(parse_stream_url("rtmp://h/live/s"), None);
    }

    #[test]
    fn base64_and_ids() {
        assert_eq!(decode_base64("dXNlcjpwYXNz").as_deref(), Some("user:pass"));
        assert_eq!(decode_base64("YQ==").as_deref(), Some("a"));
        assert_eq!(decode_base64("YQ").as_deref(), Some("a"), "padding is optional");
        assert!(decode_base64("!!").is_none());
        assert_eq!(stream_id("v", "a", "s"), stream_id("v", "a", "s"));
        assert_ne!(stream_id("v", "a", "s"), stream_id("v", "a", "t"));
        assert_eq!(stream_id("v", "a", "s").len(), 16);
    }
}

/// `GET /api/v1/taps`: the AI tap's feeds (one decoder per stream and format) and clients.
async fn list_taps(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let mut body = crate::tap::list(&state);
    body["code"] = json!(0);
    body["server"] = json!(SERVER);
    HttpResponse::Ok().json(body)
}

/// `GET /api/v1/tap/{app}/{stream}`: the AI tap's WebSocket with API credentials (those for
/// changes: captions come back on it).
async fn tap_stream(_: AuthorizedChange, state: web::Data<AppState>, req: HttpRequest, body: web::Payload, path: web::Path<(String, String)>) -> HttpResponse {
    let (app, stream) = path.into_inner();
    crate::tap::tap_on_api(state, req, body, app, stream).await
}

/// `POST /api/v1/streams/{app}/{stream}/captions`: a caption for the stream's players (see
/// `crate::tap`).
async fn post_caption(_: AuthorizedChange, state: web::Data<AppState>, path: web::Path<(String, String)>, body: web::Json<Value>) -> HttpResponse {
    post_timed_data(&state, path.into_inner(), &body, "caption").await
}

/// `POST /api/v1/streams/{app}/{stream}/metadata`: timed metadata (a JSON object) for the
/// stream's players and event listeners (see `crate::tap`).
async fn post_metadata(_: AuthorizedChange, state: web::Data<AppState>, path: web::Path<(String, String)>, body: web::Json<Value>) -> HttpResponse {
    post_timed_data(&state, path.into_inner(), &body, "metadata").await
}

async fn post_timed_data(state: &AppState, (app, stream): (String, String), body: &Value, kind: &str) -> HttpResponse {
    if let Err(reason) = estuary_protocols::naming::check_app(&app).and_then(|()| estuary_protocols::naming::check_stream(&stream)) {
        return error(400, &format!("invalid app or stream name: {reason}"));
    }
    let key = estuary_actors::StreamKey::new(&app, &stream);
    let sent = if kind == "caption" { crate::tap::send_caption(state, &key, body).await } else { crate::tap::send_metadata(state, &key, body).await };
    match sent {
        Ok(at_ms) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, kind: { "stream": key.to_string(), "at_ms": at_ms } })),
        Err((status, reason)) => error(status, &reason),
    }
}
