//! The HTTP API (SRS's port 1985) in SRS's JSON shapes: every answer has `code` (0 on
//! success, otherwise the HTTP status) and `server`; errors add `message`.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /api/v1/versions` | version |
//! | `GET /api/v1/summaries` | uptime, memory, CPU, network totals, clients |
//! | `GET /api/v1/streams[?start=&count=]`, `GET /api/v1/streams/{id}` | live and remembered streams |
//! | `GET /api/v1/clients[?start=&count=]`, `GET /api/v1/clients/{id}`, `DELETE /api/v1/clients/{id}` | clients; DELETE kicks |
//! | `POST /api/v1/tokens` | mints a signed URL token: `{"action":"play","app":"live","stream":"s","ttl_seconds":3600}` |
//! | `GET /api/v1/supervisors` | restart counts |
//! | `POST /api/v1/debug/fault?actor=&stream=&kind=&ms=&during_ms=` | fault injection (only with `api.debug_faults`): `actor` is `rtmp_listener`, `srt_listener`, `storage`, or `stream`, `hls`, `dash`, `dvr` of `stream=app/name`; `kind` is `panic` (default), `stall` (`ms`) or `slow` (sleep `ms` per write for `during_ms`) |
//! | `GET /metrics` | Prometheus text |

use crate::{metrics, AppState};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse};
use estuary_actors::clients;
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

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|err, _| actix_web::error::InternalError::from_response(err.to_string(), error(400, &format!("bad query: {err}"))).into()))
        // Like SRS, a JSON body is read whatever its Content-Type: `curl -d` sends
        // application/x-www-form-urlencoded. What is not JSON still gets 400 with serde's
        // reason (the field, or the line and column).
        .app_data(web::JsonConfig::default().limit(64 * 1024).content_type(|_| true).content_type_required(false).error_handler(|err, _| actix_web::error::InternalError::from_response(err.to_string(), error(400, &format!("bad JSON body: {err}"))).into()))
        .route("/api/v1/versions", web::get().to(versions))
        .route("/api/v1/summaries", web::get().to(summaries))
        .route("/api/v1/streams", web::get().to(streams))
        .route("/api/v1/streams/{id}", web::get().to(stream_by_id))
        .route("/api/v1/clients", web::get().to(list_clients))
        .route("/api/v1/clients/{id}", web::get().to(client_by_id))
        .route("/api/v1/clients/{id}", web::delete().to(kick_client))
        .route("/api/v1/tokens", web::post().to(mint_token))
        .route("/api/v1/recordings", web::get().to(list_recordings))
        .route("/api/v1/recordings", web::delete().to(delete_recordings))
        .route("/api/v1/dvr", web::post().to(dvr_control))
        .route("/gb/v1/publish/", web::post().to(gb_publish))
        .route("/rtc/v1/whip/", web::post().to(whip_publish))
        .route("/rtc/v1/whip", web::post().to(whip_publish))
        .route("/rtc/v1/whip/resource/{id}", web::delete().to(rtc_delete))
        .route("/rtc/v1/whep/", web::post().to(whep_play))
        .route("/rtc/v1/whep", web::post().to(whep_play))
        .route("/rtc/v1/whep/resource/{id}", web::delete().to(rtc_delete))
        .route("/rtc/v1/publish/", web::post().to(srs_rtc_publish))
        .route("/rtc/v1/play/", web::post().to(srs_rtc_play))
        .route("/rtc/v1/publish/", web::method(actix_web::http::Method::OPTIONS).to(rtc_preflight))
        .route("/rtc/v1/play/", web::method(actix_web::http::Method::OPTIONS).to(rtc_preflight))
        .route("/rtc/v1/whip/", web::method(actix_web::http::Method::OPTIONS).to(rtc_preflight))
        .route("/rtc/v1/whep/", web::method(actix_web::http::Method::OPTIONS).to(rtc_preflight))
        .route("/rtc/v1/whip/resource/{id}", web::method(actix_web::http::Method::OPTIONS).to(rtc_preflight))
        .route("/rtc/v1/whep/resource/{id}", web::method(actix_web::http::Method::OPTIONS).to(rtc_preflight))
        .route("/api/v1/gb28181/devices", web::get().to(gb_devices))
        .route("/api/v1/gb28181/devices/{device}/channels/{channel}/{action}", web::post().to(gb_channel))
        .route("/gb/v1/publish", web::post().to(gb_publish))
        .route("/api/v1/transcodes", web::get().to(list_transcodes))
        .route("/api/v1/transcodes", web::post().to(add_transcode))
        .route("/api/v1/transcodes/{id}", web::delete().to(remove_transcode))
        .route("/api/v1/ingests", web::get().to(list_ingests))
        .route("/api/v1/ingests", web::post().to(add_ingest))
        .route("/api/v1/ingests/{id}", web::delete().to(remove_ingest))
        .route("/api/v1/forwards", web::get().to(list_forwards))
        .route("/api/v1/forwards", web::post().to(add_forward))
        .route("/api/v1/forwards/{id}", web::delete().to(remove_forward))
        .route("/api/v1/supervisors", web::get().to(supervisors))
        .route("/api/v1/debug/fault", web::post().to(fault))
        .route("/metrics", web::get().to(metrics_text))
        .default_service(web::to(|| async { error(404, "no such API") }));
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
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return std::future::ready(Ok(Authorized));
        };
        let auth = &state.api_auth;
        let reads = matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD);
        // JSON bodies are read whatever their Content-Type (for `curl -d`). A browser sends a
        // form or text/plain POST to another origin without asking first (no CORS
        // preflight), so such a request from a web page (it carries Origin, or
        // Sec-Fetch-Site: cross-site) is refused: no page can drive the API from a visitor's
        // browser. Real JSON from a page needs a preflight, which the API does not grant.
        let json_typed = actix_web::HttpMessage::mime_type(req).ok().flatten().is_some_and(|m| m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"));
        let from_a_page = req.headers().contains_key("origin") || req.headers().get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site");
        if !reads && from_a_page && !json_typed {
            let response = error(403, "a cross-site form or text POST cannot change the node; send Content-Type: application/json");
            return std::future::ready(Err(actix_web::error::InternalError::from_response("forbidden", response).into()));
        }
        if auth.token.is_empty() && (auth.username.is_empty() || auth.password.is_empty()) {
            // No credentials configured: reads stay open, as in SRS, but what changes the
            // node or mints tokens (every method but GET/HEAD) is served to this machine only.
            // Direct from this machine only: not through a local reverse proxy or tunnel (its
            // forwarding headers give it away; without them, put api.token on such setups),
            // and not a page whose own host name was rebound to 127.0.0.1 (Host must name
            // a loopback address).
            let proxied = ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|h| req.headers().contains_key(*h));
            let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
            let host_name = host.rsplit_once(':').filter(|(h, port)| !h.is_empty() && !h.ends_with(']') || port.chars().all(|c| c.is_ascii_digit())).map(|(h, _)| h).unwrap_or(host);
            let loopback_host = host_name.eq_ignore_ascii_case("localhost") || host_name.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback());
            let local = !proxied && loopback_host && req.peer_addr().is_some_and(|peer| peer.ip().to_canonical().is_loopback());
            if reads || local {
                return std::future::ready(Ok(Authorized));
            }
            let response = error(403, "this API call changes the node or mints tokens: from other hosts it needs api.token or api.username/api.password to be set");
            return std::future::ready(Err(actix_web::error::InternalError::from_response("forbidden", response).into()));
        }
        let header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let bearer_ok = !auth.token.is_empty() && header.strip_prefix("Bearer ").is_some_and(|t| t.trim() == auth.token);
        let basic_ok = !auth.username.is_empty()
            && header.strip_prefix("Basic ").and_then(|b| decode_base64(b.trim())).is_some_and(|pair| pair == format!("{}:{}", auth.username, auth.password));
        if bearer_ok || basic_ok {
            std::future::ready(Ok(Authorized))
        } else {
            let response = error(401, "authentication required");
            std::future::ready(Err(actix_web::error::InternalError::from_response("unauthorized", response).into()))
        }
    }
}

fn decode_base64(text: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = ALPHABET.iter().position(|a| *a == c)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).ok()
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

/// A stable id for a stream: FNV-1a of `vhost/app/stream`, in hex.
pub fn stream_id(vhost: &str, app: &str, stream: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{vhost}/{app}/{stream}").bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn history(record: &StreamRecord) -> Value {
    json!({
        "first_publish_ms": record.first_publish_ms,
        "last_publish_ms": record.last_publish_ms,
        "last_unpublish_ms": record.last_unpublish_ms,
        "publish_count": record.publish_count,
        "bytes_in_total": record.bytes_in,
        "bytes_out_total": record.bytes_out,
        "live_ms_total": record.live_ms_total,
    })
}

fn video_json(video: &Option<estuary_storage::VideoInfo>) -> Value {
    match video {
        Some(v) => json!({ "codec": v.codec, "profile": v.profile, "level": v.level, "width": v.width, "height": v.height }),
        None => Value::Null,
    }
}

fn audio_json(audio: &Option<estuary_storage::AudioInfo>) -> Value {
    match audio {
        Some(a) => json!({ "codec": a.codec, "sample_rate": a.sample_rate, "channel": a.channels, "profile": a.profile }),
        None => Value::Null,
    }
}

type Merged = (Option<StreamInfo>, Option<StreamRecord>);

/// Live stream state merged with remembered records, by (vhost, app, stream).
pub async fn all_streams(state: &AppState) -> Result<BTreeMap<(String, String, String), Merged>, HttpResponse> {
    let live = state.registry.send(ListStreams).await.map_err(|_| error(500, "stream registry unavailable"))?;
    let infos: Vec<Option<StreamInfo>> =
        futures_util::future::join_all(live.iter().map(|(_, addr)| async move { addr.send(GetStreamInfo).await.ok() })).await;
    let records = match state.storage.ask(ListStreamRecords).await {
        Ok(Ok(records)) => records,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "stream history unavailable");
            Vec::new()
        }
        Err(_) => Vec::new(),
    };
    let mut by_key: BTreeMap<(String, String, String), Merged> = BTreeMap::new();
    for ((key, _), info) in live.iter().zip(infos) {
        by_key.entry((key.vhost.clone(), key.app.clone(), key.stream.clone())).or_default().0 = info;
    }
    for record in records {
        let k = record.key.clone();
        by_key.entry((k.vhost, k.app, k.stream)).or_default().1 = Some(record);
    }
    Ok(by_key)
}

fn stream_json(node: &estuary_actors::node::Node, (vhost, app, stream): &(String, String, String), (info, record): &Merged) -> Value {
    let active = info.as_ref().is_some_and(|i| i.publisher.is_some());
    let video = info.as_ref().and_then(|i| i.video.clone()).or_else(|| record.as_ref().and_then(|r| r.video.clone()));
    let audio = info.as_ref().and_then(|i| i.audio.clone()).or_else(|| record.as_ref().and_then(|r| r.audio.clone()));
    json!({
        "id": stream_id(vhost, app, stream),
        "name": stream,
        "vhost": vhost,
        "app": app,
        "url": format!("/{app}/{stream}"),
        "live_ms": info.as_ref().map(|i| i.live_ms).unwrap_or(0),
        "clients": info.as_ref().map(|i| i.subscribers + usize::from(i.publisher.is_some())).unwrap_or(0),
        "players": info.as_ref().map(|i| i.subscribers).unwrap_or(0),
        "frames": info.as_ref().map(|i| i.frames_in).unwrap_or(0),
        "frames_dropped": info.as_ref().map(|i| i.frames_dropped).unwrap_or(0),
        // Frames a datagram publisher (WHIP, GB28181 over UDP) lost to a full input queue.
        "publish_dropped": info.as_ref().map(|i| i.publish_dropped).unwrap_or(0),
        // Frames HLS, DASH or DVR lost to a disk that could not keep up (each a logged gap).
        "output_frames_lost": info.as_ref().map(|i| i.output_frames_lost).unwrap_or(0),
        // Panics the stream actor caught and recovered from.
        "restarts": info.as_ref().map(|i| i.restarts).unwrap_or(0),
        "fps": info.as_ref().map(|i| i.fps).unwrap_or(0.0),
        "recv_bytes": info.as_ref().map(|i| i.bytes_in).unwrap_or(0),
        "send_bytes": info.as_ref().map(|i| i.bytes_out).unwrap_or(0),
        "kbps": {
            "recv_30s": info.as_ref().map(|i| i.kbps_in_30s).unwrap_or(0),
            "send_30s": info.as_ref().map(|i| i.kbps_out_30s).unwrap_or(0),
        },
        "publish": {
            "active": active,
            "cid": info.as_ref().and_then(|i| i.publisher).map(|c| c.to_string()),
            "protocol": info.as_ref().and_then(|i| i.publisher_protocol),
            "in_grace": info.as_ref().is_some_and(|i| i.in_grace),
            // The publisher's transport statistics (SRT: RTT, loss, retransmits, rates).
            "transport": info.as_ref().and_then(|i| i.publisher).and_then(|id| node.clients.get(id)).and_then(|c| c.transport()),
        },
        "video": video_json(&video),
        "audio": audio_json(&audio),
        "history": record.as_ref().map(history).unwrap_or(Value::Null),
    })
}

async fn streams(_: Authorized, state: web::Data<AppState>, page: web::Query<Page>) -> HttpResponse {
    let (start, count) = match page.bounds() {
        Ok(bounds) => bounds,
        Err(response) => return response,
    };
    let all = match all_streams(&state).await {
        Ok(all) => all,
        Err(response) => return response,
    };
    let list: Vec<Value> = all.iter().skip(start).take(count).map(|(k, m)| stream_json(&state.node, k, m)).collect();
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": all.len(), "streams": list }))
}

async fn stream_by_id(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let all = match all_streams(&state).await {
        Ok(all) => all,
        Err(response) => return response,
    };
    match all.iter().find(|(k, _)| stream_id(&k.0, &k.1, &k.2) == *id) {
        Some((k, m)) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "stream": stream_json(&state.node, k, m) })),
        None => error(404, &format!("no stream with id {id}")),
    }
}

fn client_json(c: &clients::ClientRecord) -> Value {
    let role = c.role();
    let mut value = json!({
        "id": c.id.to_string(),
        "protocol": c.protocol,
        "ip": c.peer,
        "type": role.as_ref().map(|(r, _)| *r),
        "stream": role.as_ref().map(|(_, s)| s.clone()),
        "alive": c.connected.elapsed().as_secs_f64(),
        "recv_bytes": c.bytes_in.load(Ordering::Relaxed),
        "send_bytes": c.bytes_out.load(Ordering::Relaxed),
        "frames_dropped": c.frames_dropped.load(Ordering::Relaxed),
    });
    if let Some(transport) = c.transport() {
        value[c.protocol] = transport;
    }
    value
}

async fn list_clients(_: Authorized, state: web::Data<AppState>, page: web::Query<Page>) -> HttpResponse {
    let (start, count) = match page.bounds() {
        Ok(bounds) => bounds,
        Err(response) => return response,
    };
    let all = state.node.clients.snapshot();
    let list: Vec<Value> = all.iter().skip(start).take(count).map(|c| client_json(c)).collect();
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": all.len(), "clients": list }))
}

fn find_client(state: &AppState, id: &str) -> Result<std::sync::Arc<clients::ClientRecord>, HttpResponse> {
    let id: u64 = id.parse().map_err(|_| error(400, &format!("client id {id:?} is not a number")))?;
    state.node.clients.get(id).ok_or_else(|| error(404, &format!("no client with id {id}")))
}

async fn client_by_id(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    match find_client(&state, &id) {
        Ok(client) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "client": client_json(&client) })),
        Err(response) => response,
    }
}

async fn kick_client(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    match find_client(&state, &id) {
        Ok(client) => {
            tracing::info!(client = client.id, protocol = client.protocol, peer = %client.peer, "kicking client through the API");
            client.kick();
            HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER }))
        }
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    action: String,
    app: String,
    stream: String,
    ttl_seconds: Option<u64>,
}

async fn mint_token(_: Authorized, state: web::Data<AppState>, body: web::Json<TokenRequest>) -> HttpResponse {
    let Some(action) = estuary_actors::auth::Action::parse(&body.action) else {
        return error(400, "action must be publish or play");
    };
    let Some(signer) = state.node.access.settings().signer.clone() else {
        return error(409, "no auth.token_secret configured");
    };
    let ttl = body.ttl_seconds.unwrap_or(3600).clamp(1, 366 * 86_400);
    let expiry = (estuary_actors::unix_ms() / 1000) as u64 + ttl;
    let token = signer.mint(action, &format!("{}/{}", body.app, body.stream), expiry);
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "token": token, "expires": expiry, "query": format!("token={token}") }))
}

async fn supervisors(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "restarts": state.node.restarts.snapshot() }))
}

#[derive(Deserialize)]
struct FaultQuery {
    actor: String,
    /// `app/stream` for `stream`, `hls`, `dash` and `dvr`.
    stream: Option<String>,
    /// `panic` (the default), `stall` or `slow` (a writer sleeping before each write).
    kind: Option<String>,
    /// Stall length, or sleep per write for `slow`; milliseconds.
    ms: Option<u64>,
    /// How long `slow` lasts; milliseconds.
    during_ms: Option<u64>,
}

async fn fault(_: Authorized, state: web::Data<AppState>, query: web::Query<FaultQuery>) -> HttpResponse {
    use estuary_actors::messages::{Fault, FaultTarget, InjectStreamFault};
    if !state.debug_faults {
        return error(403, "fault injection is disabled (set api.debug_faults = true)");
    }
    let ms = |v: Option<u64>, default: u64| std::time::Duration::from_millis(v.unwrap_or(default).min(600_000));
    let fault = match query.kind.as_deref().unwrap_or("panic") {
        "panic" => Fault::Panic,
        "stall" => Fault::Stall(ms(query.ms, 5000)),
        "slow" => Fault::SlowWrites { per_write: ms(query.ms, 1000), during: ms(query.during_ms, 20_000) },
        other => return error(400, &format!("unknown kind {other:?}; expected panic, stall or slow")),
    };
    let target = match query.actor.as_str() {
        "rtmp_listener" | "srt_listener" | "storage" => None,
        "stream" => Some(FaultTarget::Stream),
        "hls" => Some(FaultTarget::Hls),
        "dash" => Some(FaultTarget::Dash),
        "dvr" => Some(FaultTarget::Dvr),
        other => return error(400, &format!("unknown actor {other:?}; expected rtmp_listener, srt_listener, storage, stream, hls, dash or dvr")),
    };
    let sent = match (target, query.actor.as_str()) {
        (None, "rtmp_listener") => state.rtmp_listener.send(InjectFault(fault)).await.is_ok(),
        (None, "srt_listener") => match &state.srt_listener {
            Some(listener) => listener.send(InjectFault(fault)).await.is_ok(),
            None => return error(400, "SRT is disabled (srt.enabled = false)"),
        },
        (None, _) => {
            // The storage thread sleeps through a stall: do not hold this request for it.
            let storage = state.storage.clone();
            actix_web::rt::spawn(async move { storage.ask(InjectFault(fault)).await });
            true
        }
        (Some(target), _) => {
            let Some((app, stream)) = query.stream.as_deref().and_then(|s| s.split_once('/')) else {
                return error(400, "this actor needs stream=<app>/<stream>");
            };
            let key = estuary_storage::StreamKey::new(app, stream);
            let Ok(Some(addr)) = state.registry.send(estuary_actors::messages::FindStream { key: key.clone(), create: false }).await else {
                return error(404, &format!("stream {key} not found"));
            };
            match addr.send(InjectStreamFault { target, fault }).await {
                Ok(Ok(())) => true,
                Ok(Err(reason)) => return error(409, &reason),
                Err(_) => false,
            }
        }
    };
    if !sent {
        return error(503, "actor unavailable");
    }
    tracing::warn!(actor = %query.actor, stream = ?query.stream, ?fault, "fault injected through the API");
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "actor": query.actor }))
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
        assert!(decode_base64("!!").is_none());
        assert_eq!(stream_id("v", "a", "s"), stream_id("v", "a", "s"));
        assert_ne!(stream_id("v", "a", "s"), stream_id("v", "a", "t"));
        assert_eq!(stream_id("v", "a", "s").len(), 16);
    }
}

#[derive(Debug, serde::Deserialize)]
struct RecordingQuery {
    app: Option<String>,
    stream: Option<String>,
    vhost: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

impl RecordingQuery {
    fn range(&self) -> Result<(i64, i64), HttpResponse> {
        let parse = |name: &str, v: &Option<String>, default: i64| match v {
            Some(text) => estuary_actors::dvr::parse_time(text).map_err(|e| error(400, &format!("{name}: {e}"))),
            None => Ok(default),
        };
        let from = parse("from", &self.from, i64::MIN / 4)?;
        let to = parse("to", &self.to, i64::MAX / 4)?;
        if to <= from {
            return Err(error(400, "to must be after from"));
        }
        Ok((from, to))
    }

    fn key(&self) -> Option<estuary_actors::StreamKey> {
        let (app, stream) = (self.app.as_ref()?, self.stream.as_ref()?);
        let mut key = estuary_actors::StreamKey::new(app, stream);
        if let Some(vhost) = &self.vhost {
            key.vhost = vhost.clone();
        }
        Some(key)
    }

    async fn select(&self, state: &AppState) -> Result<(Vec<estuary_storage::Recording>, i64, i64), HttpResponse> {
        let (from, to) = self.range()?;
        let list = state
            .storage
            .addr()
            .send(estuary_actors::messages::ListRecordings { key: self.key() })
            .await
            .map_err(|e| error(503, &format!("storage unavailable: {e}")))?
            .map_err(|e| error(503, &e))?;
        let list = list
            .into_iter()
            .filter(|r| self.app.as_ref().is_none_or(|a| &r.key.app == a) && self.stream.as_ref().is_none_or(|s| &r.key.stream == s))
            .filter(|r| r.end_ms > from && r.start_ms < to)
            .collect();
        Ok((list, from, to))
    }
}

fn recording_json(r: &estuary_storage::Recording) -> Value {
    json!({
        "id": r.id.to_string(),
        "vhost": r.key.vhost,
        "app": r.key.app,
        "stream": r.key.stream,
        "file": r.path,
        "url": format!("/dvr/files/{}", r.path),
        "format": r.format,
        "state": format!("{:?}", r.state).to_lowercase(),
        "start_ms": r.start_ms,
        "end_ms": r.end_ms,
        "duration_ms": r.duration_ms(),
        "bytes": r.bytes,
        "keyframes": r.keyframes.len(),
        "video": video_json(&r.video),
        "audio": audio_json(&r.audio),
    })
}

/// Merged time coverage of recordings (of one stream) and the gaps between, within [from, to).
/// Spans covered by recordings within [from, to), and the holes between them. A hole that a
/// recorded loss explains (the writer could not keep up, or restarted) carries its reason and
/// the frames lost; a hole without one is time nobody published.
fn coverage(recordings: &[estuary_storage::Recording], losses: &[estuary_storage::RecordingGap], from: i64, to: i64) -> (Vec<Value>, Vec<Value>) {
    let mut spans: Vec<(i64, i64)> = recordings.iter().map(|r| (r.start_ms.max(from), r.end_ms.min(to))).filter(|(a, b)| b > a).collect();
    spans.sort();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    // Touching within 100 ms counts as continuous (a segment cut is not a gap).
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 + 100 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let gaps = merged
        .windows(2)
        .map(|w| {
            let (start, end) = (w[0].1, w[1].0);
            let loss = losses.iter().find(|l| l.start_ms <= end + 100 && l.end_ms >= start - 100);
            json!({
                "start_ms": start,
                "end_ms": end,
                "duration_ms": end - start,
                "reason": loss.map(|l| l.reason.clone()),
                "lost_frames": loss.map(|l| l.lost_frames),
            })
        })
        .collect();
    let covered = merged.iter().map(|(a, b)| json!({ "start_ms": a, "end_ms": b, "duration_ms": b - a })).collect();
    (covered, gaps)
}

async fn list_recordings(_: Authorized, state: web::Data<AppState>, query: web::Query<RecordingQuery>) -> HttpResponse {
    let (list, from, to) = match query.select(&state).await {
        Ok(selected) => selected,
        Err(response) => return response,
    };
    let losses = match query.key() {
        Some(key) => match state.storage.ask(estuary_actors::messages::ListRecordingGaps(key)).await {
            Ok(Ok(losses)) => losses.into_iter().filter(|l| l.end_ms >= from && l.start_ms <= to).collect(),
            Ok(Err(e)) => return error(503, &e),
            Err(e) => return error(503, &e.to_string()),
        },
        None => Vec::new(),
    };
    let (covered, gaps) = if query.key().is_some() { coverage(&list, &losses, from, to) } else { (Vec::new(), Vec::new()) };
    HttpResponse::Ok().json(json!({
        "code": 0,
        "server": SERVER,
        "total": list.len(),
        "recordings": list.iter().map(recording_json).collect::<Vec<_>>(),
        "coverage": covered,
        "gaps": gaps,
        "losses": losses.iter().map(|l| json!({ "start_ms": l.start_ms, "end_ms": l.end_ms, "lost_frames": l.lost_frames, "reason": l.reason })).collect::<Vec<_>>(),
    }))
}

/// Deletes the recordings of a stream that lie entirely inside [from, to); recordings that
/// only overlap it are kept and listed.
async fn delete_recordings(_: Authorized, state: web::Data<AppState>, query: web::Query<RecordingQuery>) -> HttpResponse {
    if query.key().is_none() {
        return error(400, "app and stream are required");
    }
    let (list, from, to) = match query.select(&state).await {
        Ok(selected) => selected,
        Err(response) => return response,
    };
    let (inside, partial): (Vec<_>, Vec<_>) = list.into_iter().filter(|r| r.state != estuary_storage::RecordingState::Recording).partition(|r| r.start_ms >= from && r.end_ms <= to);
    let ids: Vec<String> = inside.iter().map(|r| r.id.to_string()).collect();
    match estuary_actors::dvr::janitor::delete(&state.storage, &state.dvr.dir, inside, "deleted through the API").await {
        Ok(n) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "deleted": n, "ids": ids, "kept_partial": partial.iter().map(recording_json).collect::<Vec<_>>() })),
        Err(e) => error(503, &e),
    }
}

#[derive(Debug, serde::Deserialize)]
struct DvrControl {
    app: String,
    stream: String,
    action: String,
}

/// `POST /api/v1/dvr?app=&stream=&action=start|stop`: records a stream (now, if live, and
/// whenever it is published) or stops recording it, until the node restarts.
async fn dvr_control(_: Authorized, state: web::Data<AppState>, query: web::Query<DvrControl>) -> HttpResponse {
    let key = estuary_actors::StreamKey::new(&query.app, &query.stream);
    match query.action.as_str() {
        "start" => {
            state.node.dvr.set_runtime(&key, true);
            if let Ok(Some(stream)) = state.registry.send(estuary_actors::messages::FindStream { key: key.clone(), create: false }).await {
                let _ = stream.send(estuary_actors::messages::StartOutputs).await;
            }
            tracing::info!(stream = %key, "recording switched on through the API");
        }
        "stop" => {
            state.node.dvr.set_runtime(&key, false);
            if let Some(writer) = state.node.dvr.writer_of(&key) {
                let _ = writer.send(estuary_actors::dvr::StopRecording).await;
            }
            tracing::info!(stream = %key, "recording switched off through the API");
        }
        other => return error(400, &format!("action {other:?} is not start or stop")),
    }
    let recording = state.node.dvr.writer_of(&key).is_some();
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "app": key.app, "stream": key.stream, "action": query.action, "recording": recording }))
}

async fn list_forwards(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let list = estuary_actors::forward::list(&state.node);
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": list.len(), "forwards": list }))
}

#[derive(Debug, serde::Deserialize)]
struct NewForward {
    app: String,
    stream: String,
    url: String,
}

/// Starts forwarding a stream (published or not yet) to a destination.
async fn add_forward(_: Authorized, state: web::Data<AppState>, body: web::Json<NewForward>) -> HttpResponse {
    let body = body.into_inner();
    if body.app.is_empty() || body.stream.is_empty() || body.app.contains('/') {
        return error(400, "app and stream are required");
    }
    let key = estuary_actors::StreamKey::new(&body.app, &body.stream);
    match estuary_actors::forward::start(state.node.clone(), state.registry.clone(), key, body.url, "api").await {
        Ok(status) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "forward": status })),
        Err(e) => error(400, &e),
    }
}

async fn remove_forward(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let Ok(id) = id.parse::<u64>() else { return error(400, "forward ids are numbers") };
    if estuary_actors::forward::remove(&state.node, id) {
        HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER }))
    } else {
        error(404, &format!("no forward {id}"))
    }
}

async fn list_ingests(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let list = estuary_actors::ingest::list(&state.node);
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": list.len(), "ingests": list }))
}

#[derive(Debug, serde::Deserialize)]
struct NewIngest {
    app: String,
    stream: String,
    source: String,
    #[serde(default = "looped_default")]
    looped: bool,
}

fn looped_default() -> bool {
    true
}

/// Publishes a file as a live stream (saved; it starts again with the node). The source is
/// checked now so a missing or non-media file is refused with the reason.
async fn add_ingest(_: Authorized, state: web::Data<AppState>, body: web::Json<NewIngest>) -> HttpResponse {
    let body = body.into_inner();
    let valid = |s: &str| !s.is_empty() && !s.contains('/') && s != "..";
    if !valid(&body.app) || !valid(&body.stream) {
        return error(400, "app and stream are required");
    }
    let source = body.source.clone();
    let check = tokio::task::spawn_blocking(move || -> Result<(), String> {
        if let Some((scheme, _)) = source.split_once("://") {
            return match scheme {
                "rtmp" | "srt" | "http" | "https" => Ok(()),
                other => Err(format!("{other}:// sources are not supported (rtmp, srt, http, https, or a file path)")),
            };
        }
        let files = estuary_actors::ingest::source_files(&source)?;
        let first = &files[0];
        let meta = std::fs::metadata(first).map_err(|e| format!("cannot open {}: {e}", first.display()))?;
        if meta.len() > estuary_actors::ingest::MAX_SOURCE_BYTES {
            return Err(format!("{} is too large", first.display()));
        }
        let data = std::fs::read(first).map_err(|e| format!("cannot read {}: {e}", first.display()))?;
        estuary_actors::ingest::read_clip(bytes::Bytes::from(data)).map(|_| ()).map_err(|e| format!("{}: {e}", first.display()))
    })
    .await;
    match check {
        Ok(Ok(_)) => {}
        Ok(Err(reason)) => {
            tracing::warn!(source = %body.source, %reason, "ingest refused");
            return error(400, &reason);
        }
        Err(e) => return error(500, &e.to_string()),
    }
    let spec = estuary_storage::IngestSpec { id: state.next_ingest_id(), app: body.app, stream: body.stream, source: body.source, looped: body.looped };
    match state.storage.ask(estuary_actors::messages::PutIngest(spec.clone())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(503, &e),
        Err(e) => return error(503, &e.to_string()),
    }
    estuary_actors::ingest::start(state.node.clone(), state.registry.clone(), spec.clone(), "api");
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "id": spec.id.to_string() }))
}

async fn remove_ingest(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let Ok(id) = id.parse::<u64>() else { return error(400, "ingest ids are numbers") };
    let stopped = estuary_actors::ingest::stop(&state.node, id);
    let forgotten = matches!(state.storage.ask(estuary_actors::messages::DeleteIngest(id)).await, Ok(Ok(true)));
    if stopped || forgotten {
        HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER }))
    } else {
        error(404, &format!("no ingest {id}"))
    }
}

async fn list_transcodes(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let list = estuary_actors::transcoder::list(&state.node);
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": list.len(), "transcodes": list }))
}

#[derive(Debug, serde::Deserialize)]
struct NewTranscode {
    app: String,
    stream: String,
    renditions: Vec<crate::config::RenditionSection>,
}

/// Starts a ladder for a live stream (until it ends).
async fn add_transcode(_: Authorized, state: web::Data<AppState>, body: web::Json<NewTranscode>) -> HttpResponse {
    let body = body.into_inner();
    if body.renditions.is_empty() {
        return error(400, "renditions must not be empty");
    }
    let mut ladder = Vec::new();
    for (i, r) in body.renditions.iter().enumerate() {
        match r.to_rendition() {
            Ok(r) => ladder.push(r),
            Err(e) => return error(400, &format!("renditions[{i}]: {e}")),
        }
    }
    let settings = state.transcode.clone();
    let ffmpeg = settings.ffmpeg.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || estuary_actors::transcoder::ffmpeg_available(&ffmpeg)).await {
        tracing::error!(error = %e, "transcode refused");
        return error(503, &e);
    }
    let key = estuary_actors::StreamKey::new(&body.app, &body.stream);
    match estuary_actors::transcoder::start(state.node.clone(), state.registry.clone(), settings, key, ladder, "api").await {
        Ok(list) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "transcodes": list })),
        Err(e) => error(400, &e),
    }
}

async fn remove_transcode(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let Ok(id) = id.parse::<u64>() else { return error(400, "transcode ids are numbers") };
    if estuary_actors::transcoder::remove(&state.node, id) {
        HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER }))
    } else {
        error(404, &format!("no transcode {id}"))
    }
}

#[derive(Debug, serde::Deserialize)]
struct GbPublish {
    id: String,
    ssrc: serde_json::Value,
}

/// SRS 6's `POST /gb/v1/publish/`: a signalling server announces that the camera `id` will
/// send PS media with `ssrc`; the answer names the media port (TCP). The stream is
/// `<gb28181.app>/<id>`.
async fn gb_publish(_: Authorized, state: web::Data<AppState>, body: web::Json<GbPublish>) -> HttpResponse {
    let Some(port) = state.gb_media_port else { return error(503, "GB28181 media is disabled (gb28181.enabled = false)") };
    let body = body.into_inner();
    if body.id.is_empty() || body.id.len() > 64 || !body.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return error(400, "id must be 1-64 characters of [A-Za-z0-9_-]");
    }
    let ssrc_text = match &body.ssrc {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return error(400, "ssrc is required"),
    };
    let ssrc = match estuary_actors::gb28181::parse_ssrc(&ssrc_text) {
        Ok(s) => s,
        Err(e) => return error(400, &e),
    };
    let key = estuary_actors::StreamKey::new(&state.gb_app, &body.id);
    state.node.gb.expect(ssrc, key.clone(), None);
    tracing::info!(stream = %key, ssrc, "GB28181 media expected");
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "port": port, "is_tcp": true, "stream": key.to_string() }))
}

async fn gb_devices(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    match estuary_actors::gb28181_sip::devices(&state.node).await {
        Ok(list) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": list.len(), "devices": list })),
        Err(e) => error(503, &e),
    }
}

/// `POST /api/v1/gb28181/devices/{device}/channels/{channel}/invite` (or `/bye`).
async fn gb_channel(_: Authorized, state: web::Data<AppState>, path: web::Path<(String, String, String)>) -> HttpResponse {
    let (device, channel, action) = path.into_inner();
    let result = match action.as_str() {
        "invite" => estuary_actors::gb28181_sip::invite(&state.node, &device, &channel).await.map(|stream| json!({ "code": 0, "server": SERVER, "stream": stream })),
        "bye" => estuary_actors::gb28181_sip::bye(&state.node, &device, &channel).await.map(|()| json!({ "code": 0, "server": SERVER })),
        other => return error(400, &format!("action {other:?} is not invite or bye")),
    };
    match result {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(e) => error(404, &e),
    }
}

/// WHIP (RFC 9725) publish: `POST /rtc/v1/whip/?app=live&stream=livestream` with an SDP
/// offer; 201 with the answer and a `Location` to `DELETE` when done. Other query parameters
/// (a `token`, say) go to access control and hooks like an RTMP publish's.
async fn whip_publish(req: HttpRequest, state: web::Data<AppState>, query: web::Query<Vec<(String, String)>>, body: web::Bytes) -> HttpResponse {
    rtc_offer(req, state, query.into_inner(), body, "whip").await
}

/// WHEP play: `POST /rtc/v1/whep/?app=live&stream=livestream` with an SDP offer; 201 with the
/// answer (H.264 video, Opus audio) and a `Location`; 404 when nobody publishes the stream.
async fn whep_play(req: HttpRequest, state: web::Data<AppState>, query: web::Query<Vec<(String, String)>>, body: web::Bytes) -> HttpResponse {
    rtc_offer(req, state, query.into_inner(), body, "whep").await
}

async fn rtc_offer(req: HttpRequest, state: web::Data<AppState>, params: Vec<(String, String)>, body: web::Bytes, kind: &str) -> HttpResponse {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let (app, stream) = (get("app"), get("stream"));
    if !crate::http::valid_name(&app) || !crate::http::valid_name(&stream) {
        return error(400, "app and stream query parameters are required (letters, digits, - _ .)");
    }
    let Ok(offer) = String::from_utf8(body.to_vec()) else {
        return error(400, "the SDP offer is not UTF-8");
    };
    let key = estuary_actors::StreamKey::new(&app, &stream);
    let peer = req.peer_addr().map(|a| a.ip());
    let result = if kind == "whip" {
        estuary_actors::webrtc::whip::publish(state.node.clone(), state.registry.clone(), key, params, offer, peer).await
    } else {
        estuary_actors::webrtc::whep::play(state.node.clone(), state.registry.clone(), key, params, offer, peer).await
    };
    match result {
        Ok(answer) => HttpResponse::Created()
            .content_type("application/sdp")
            .insert_header(("Location", format!("/rtc/v1/{kind}/resource/{}", answer.id)))
            .insert_header(("Access-Control-Allow-Origin", "*"))
            .insert_header(("Access-Control-Expose-Headers", "Location"))
            .body(answer.sdp),
        Err(e) => {
            tracing::warn!(%app, %stream, status = e.status(), reason = %e, "{} refused", kind.to_uppercase());
            error(e.status(), &e.to_string())
        }
    }
}

/// SRS's older signalling: `POST /rtc/v1/publish/` or `/rtc/v1/play/` with JSON
/// `{"streamurl": "webrtc://host/app/stream?params", "sdp": "<offer>", ...}`; the answer is
/// `{"code": 0, "server": ..., "sdp": "<answer>", "sessionid": ...}`, errors carry the HTTP
/// status as `code` with a `message`.
#[derive(Deserialize)]
struct SrsRtcRequest {
    streamurl: String,
    sdp: String,
}

async fn srs_rtc_publish(req: HttpRequest, state: web::Data<AppState>, body: web::Json<SrsRtcRequest>) -> HttpResponse {
    srs_rtc(req, state, body.into_inner(), "whip").await
}

async fn srs_rtc_play(req: HttpRequest, state: web::Data<AppState>, body: web::Json<SrsRtcRequest>) -> HttpResponse {
    srs_rtc(req, state, body.into_inner(), "whep").await
}

/// `app`, `stream` and query parameters of `webrtc://host[:port]/app/stream[?k=v&...]`.
type AppStreamParams = (String, String, Vec<(String, String)>);

fn parse_stream_url(url: &str) -> Option<AppStreamParams> {
    let rest = url.strip_prefix("webrtc://").or_else(|| url.strip_prefix("http://")).or_else(|| url.strip_prefix("https://"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (_host, app_stream) = path.split_once('/')?;
    let (app, stream) = app_stream.rsplit_once('/')?;
    let (app, stream) = (app.to_string(), stream.to_string());
    let params = query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap_or((p.to_string(), String::new()))).collect();
    Some((app, stream, params))
}

async fn srs_rtc(req: HttpRequest, state: web::Data<AppState>, body: SrsRtcRequest, kind: &str) -> HttpResponse {
    let Some((app, stream, params)) = parse_stream_url(&body.streamurl) else {
        return error(400, "streamurl must look like webrtc://host/app/stream");
    };
    if !crate::http::valid_name(&app) || !crate::http::valid_name(&stream) {
        return error(400, "bad app or stream name in streamurl");
    }
    let key = estuary_actors::StreamKey::new(&app, &stream);
    let peer = req.peer_addr().map(|a| a.ip());
    let result = if kind == "whip" {
        estuary_actors::webrtc::whip::publish(state.node.clone(), state.registry.clone(), key, params, body.sdp, peer).await
    } else {
        estuary_actors::webrtc::whep::play(state.node.clone(), state.registry.clone(), key, params, body.sdp, peer).await
    };
    match result {
        Ok(answer) => HttpResponse::Ok().insert_header(("Access-Control-Allow-Origin", "*")).json(json!({ "code": 0, "server": SERVER, "sdp": answer.sdp, "sessionid": answer.id })),
        Err(e) => {
            tracing::warn!(%app, %stream, status = e.status(), reason = %e, "WebRTC {} refused", if kind == "whip" { "publish" } else { "play" });
            error(e.status(), &e.to_string())
        }
    }
}

/// CORS preflight for WHIP/WHEP: web players served from another origin (the HTTP port, a
/// console) POST `application/sdp` and DELETE their resource.
async fn rtc_preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .insert_header(("Access-Control-Allow-Methods", "POST, DELETE, OPTIONS"))
        .insert_header(("Access-Control-Allow-Headers", "Content-Type, Authorization"))
        .insert_header(("Access-Control-Expose-Headers", "Location"))
        .insert_header(("Access-Control-Max-Age", "600"))
        .finish()
}

/// Ends a WHIP or WHEP session.
async fn rtc_delete(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    if state.node.rtc.end_session(&path) {
        HttpResponse::Ok().insert_header(("Access-Control-Allow-Origin", "*")).finish()
    } else {
        error(404, "no such WebRTC session")
    }
}
