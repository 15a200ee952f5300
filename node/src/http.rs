//! The HTTP streaming server (SRS's port 8080):
//!
//! | URL | what |
//! |---|---|
//! | `/<app>/<stream>.flv` | HTTP-FLV live |
//! | `/<app>/<stream>.ts` | HTTP-TS live (when no HLS segment has that name) |
//! | `/<app>/<stream>.m3u8`, `-<n>.m4s`, `-<n>-p<i>.m4s`, `-init-<v>.mp4` | LL-HLS on demand, from memory (see `live_package`) |
//! | `/<app>/<stream>.mpd`, `-video-v<v>-t<t>.m4s`, `-video-init-v<v>.mp4` | DASH on demand, from memory |
//! | `/<app>/<stream>.m3u8`, `/<app>/<stream>-<n>.ts`, `.m4s`, `-init-<n>.mp4` | HLS files (`hls.always`) |
//! | `/<app>/<stream>.mpd`, `/<app>/<stream>-video-<n>.m4s`, `-init.mp4` | DASH files (`dash.always`) |
//!
//! Names are checked before any file is touched: one path segment each, no `..`, no
//! separators, no control characters; files are only read from the HLS and DASH directories.
//!
//! Playlists, manifests and segments (`.m3u8 .m4s .mp4 .mpd .ts` directly under an app that is
//! not one of the node's own prefixes) are answered by [`direct`], called from the server's
//! middleware before the router: matching every route's pattern for each of the ~7 requests a
//! second an LL-HLS viewer makes was a tenth of the node's CPU at 1,000 viewers. On the plain
//! HTTP port most of an LL-HLS viewer's requests never reach actix-web: `front` answers them.

use crate::AppState;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use estuary_actors::http_live::{self, FlvEncoder, TsEncoder};
use estuary_protocols::manifest::hls::{self, Variant};
use estuary_protocols::naming;
use estuary_actors::messages::PlayRefused;
use estuary_actors::StreamKey;
use estuary_actors::node::connections::{ConnectionGate, Permit, Refusal};
use std::path::PathBuf;
use std::sync::Arc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tap/{app}/{stream}", web::get().to(crate::tap::tap_on_http_port))
        .route("/events/{app}/{stream}", web::get().to(crate::tap::events))
        .route("/{app}/{file}", web::get().to(stream_file))
        .route("/{app}/{file}", web::head().to(stream_file))
        .route("/{app}/{file}", web::method(actix_web::http::Method::OPTIONS).to(preflight))
        .default_service(web::to(|| async { HttpResponse::NotFound().body("not found\n") }));
}

async fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "*"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
        .finish()
}

fn refusal(refused: PlayRefused) -> HttpResponse {
    let status = match refused {
        PlayRefused::Denied(_) => actix_web::http::StatusCode::FORBIDDEN,
        PlayRefused::NotFound(_) | PlayRefused::NotLive(_) => actix_web::http::StatusCode::NOT_FOUND,
        PlayRefused::Unavailable(_) => actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
    };
    HttpResponse::build(status).insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).body(format!("{refused}\n"))
}

/// A second handle of an HTTP connection, made when it is accepted, for a live player the
/// delivery engine serves (see `estuary_actors::delivery`), and the number of requests seen
/// on the connection.
pub struct LiveSocket {
    socket: std::cell::RefCell<Option<std::net::TcpStream>>,
    requests: std::cell::Cell<u32>,
}

/// For the HTTP server's middleware: counts a request on its connection.
pub fn count_request(req: &actix_web::dev::ServiceRequest) {
    if let Some(slot) = req.conn_data::<LiveSocket>() {
        slot.requests.set(slot.requests.get().saturating_add(1));
    }
}

/// For the HTTP server's middleware: the API's paths (`/api/...`, `/rtc/...`, mounted here for
/// the console) lose a trailing slash before routing, as on the API port, so SRS's
/// `/rtc/v1/whep/?app=..` works on both.
pub fn trim_api_slash(req: &mut actix_web::dev::ServiceRequest) {
    let path = req.path();
    if !(path.starts_with("/api/") || path.starts_with("/rtc/")) || !path.ends_with('/') {
        return;
    }
    let trimmed = path.trim_end_matches('/');
    let rebuilt = match req.query_string() {
        "" => trimmed.to_string(),
        query => format!("{trimmed}?{query}"),
    };
    // Scheme and authority (HTTP/2, absolute-form requests) are kept.
    let mut parts = req.head().uri.clone().into_parts();
    let Ok(path_and_query) = rebuilt.parse() else { return };
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = actix_web::http::Uri::from_parts(parts) {
        req.match_info_mut().get_mut().update(&uri);
        req.head_mut().uri = uri;
    }
}

/// What the connection gate said of an HTTP connection, kept in its extensions for its life
/// (the permit frees the slot when the connection closes).
pub struct Admission(pub Result<Permit, Refusal>);

/// For `HttpServer::on_connect`: admits the connection through the node's gate (`listener`
/// names the port in the log and metrics) and, with `live_socket`, keeps a second handle of
/// its TCP socket for the delivery engine.
pub fn on_connect(gate: &Arc<ConnectionGate>, listener: &'static str, live_socket: bool, connection: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    let plain = connection.downcast_ref::<actix_web::rt::net::TcpStream>();
    let tcp = plain.or_else(|| connection.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>>().map(|tls| tls.get_ref().0));
    let mut admitted = true;
    if let Some(peer) = tcp.and_then(|s| s.peer_addr().ok()) {
        let admission = gate.admit(peer.ip(), listener);
        admitted = admission.is_ok();
        data.insert(Admission(admission));
    }
    // A refused connection gets its 503 at its first request (or is closed by the request-head
    // timeout): it is not given a second handle.
    if let Some(stream) = plain.filter(|_| live_socket && admitted) {
        keep_live_socket(stream, data);
    }
}

/// Keeps a second handle of an admitted connection's TCP socket for the delivery engine
/// (HTTP-FLV and HTTP-TS players).
pub fn keep_live_socket(stream: &actix_web::rt::net::TcpStream, data: &mut actix_web::dev::Extensions) {
    match socket2::SockRef::from(stream).try_clone() {
        Ok(socket) => {
            data.insert(LiveSocket { socket: std::cell::RefCell::new(Some(socket.into())), requests: std::cell::Cell::new(0) });
        }
        Err(e) => tracing::warn!(error = %e, "cannot keep a handle of an HTTP connection; HTTP-FLV on it streams through the HTTP server"),
    }
}

/// Most bytes of header fields (names and values) a request may carry on the HTTP, HTTPS
/// and API ports; more is answered 431 (the HTTP server itself refuses a head that does not
/// fit its buffer, about 128 KiB, the same way).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// For the servers' middleware: a connection the gate refused gets 503 with the reason and is
/// closed; a request with more than [`MAX_HEADER_BYTES`] of header fields gets 431.
pub fn refused(req: &actix_web::dev::ServiceRequest) -> Option<HttpResponse> {
    if let Some(Admission(Err(refusal))) = req.conn_data::<Admission>() {
        return Some(HttpResponse::ServiceUnavailable().force_close().insert_header((header::RETRY_AFTER, "5")).content_type("text/plain; charset=utf-8").body(format!("connection refused: {refusal}\n")));
    }
    let header_bytes: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Some(HttpResponse::build(actix_web::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).force_close().content_type("text/plain; charset=utf-8").body(format!("request header fields too large: {header_bytes} bytes (the limit is {MAX_HEADER_BYTES})\n")));
    }
    None
}

/// Sets the kernel send buffer of the request's connection (plain HTTP port only; elsewhere
/// nothing is done): for long responses whose client should fall behind visibly, not into
/// megabytes of socket buffer.
pub fn limit_send_buffer(req: &HttpRequest, bytes: usize) {
    let Some(slot) = req.conn_data::<LiveSocket>() else { return };
    if let Some(socket) = slot.socket.borrow().as_ref() {
        if let Err(e) = socket2::SockRef::from(socket).set_send_buffer_size(bytes) {
            tracing::debug!(error = %e, "cannot set a connection's send buffer");
        }
    }
}

/// The connection's second handle, when a live play is the connection's first request.
/// Later requests on a kept-alive connection stream through the HTTP server: a response
/// before them may still sit in its buffers, and writing past them would interleave.
fn take_live_socket(req: &HttpRequest) -> Option<std::net::TcpStream> {
    // A HEAD gets the head only, through the HTTP server.
    if req.method() != actix_web::http::Method::GET {
        return None;
    }
    let slot = req.conn_data::<LiveSocket>()?;
    if slot.requests.get() != 1 {
        return None;
    }
    slot.socket.borrow_mut().take()
}

fn live<S>(body: S, content_type: &'static str) -> HttpResponse
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + 'static,
{
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .streaming(body)
}

async fn serve_file(path: PathBuf, content_type: &'static str, cache: &'static str) -> Option<HttpResponse> {
    let data = tokio::fs::read(&path).await.ok()?;
    Some(
        HttpResponse::Ok()
            .content_type(content_type)
            .insert_header((header::CACHE_CONTROL, cache))
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
            .body(data),
    )
}

async fn stream_file(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    let (app, file) = path.into_inner();
    serve_stream_file(state, req, app, file).await
}

/// First path segments the routes before the stream routes may own (API, console, players,
/// DVR, GB28181): requests under them always go through the router.
const ROUTED: [&str; 6] = ["api", "rtc", "console", "players", "dvr", "gb"];

/// For the HTTP server's middleware: a GET or HEAD of `/<app>/<file>` for a playlist, manifest
/// or segment, answered without the router. Players ask for a part and a playlist every few
/// hundred milliseconds, and matching the path against every route's pattern (most of them
/// regular expressions) cost a tenth of the node's CPU at 1,000 LL-HLS viewers. The answer
/// is the one the router would give (`stream_file` is the route's handler): paths under
/// [`ROUTED`] and paths with percent-escapes (the router decodes them) are left to it.
pub fn direct(req: actix_web::dev::ServiceRequest) -> Result<futures_util::future::LocalBoxFuture<'static, Result<actix_web::dev::ServiceResponse, actix_web::Error>>, actix_web::dev::ServiceRequest> {
    use futures_util::FutureExt;
    let method = req.method();
    if method != actix_web::http::Method::GET && method != actix_web::http::Method::HEAD {
        return Err(req);
    }
    let Some((app, file)) = direct_path(req.path()) else { return Err(req) };
    let (app, file) = (app.to_string(), file.to_string());
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else { return Err(req) };
    let (http_req, _payload) = req.into_parts();
    Ok(async move {
        let response = serve_stream_file(state, http_req.clone(), app, file).await;
        Ok(actix_web::dev::ServiceResponse::new(http_req, response))
    }
    .boxed_local())
}

/// `(app, file)` of a path the middleware answers directly (see [`direct`]).
pub(crate) fn direct_path(path: &str) -> Option<(&str, &str)> {
    let (app, file) = path.strip_prefix('/')?.split_once('/')?;
    if app.is_empty() || file.is_empty() || file.contains('/') || path.contains('%') || ROUTED.contains(&app) {
        return None;
    }
    let (_, extension) = file.rsplit_once('.')?;
    matches!(extension, "m3u8" | "m4s" | "mp4" | "mpd" | "ts" | "vtt").then_some((app, file))
}

/// The stream a request for `/<app>/<stream>.<ext>` names: the vhost as SRS picks it,
/// `?vhost=`, or the Host header when it names a configured one.
pub(crate) fn stream_key(state: &AppState, app: &str, stream: &str, host: &str, params: &[(String, String)]) -> StreamKey {
    let mut key = StreamKey::new(app, stream);
    key.vhost = estuary_actors::rtmp::connection_vhost(&format!("http://{host}/"), params, &state.node.vhosts.get());
    key
}

/// The play rules (CIDR, token) for a playlist, manifest or segment of stream `checked`
/// under `key`'s vhost and app: the refusal's answer when they refuse.
pub(crate) fn check_play(state: &AppState, key: &StreamKey, checked: &str, peer: std::net::SocketAddr, params: &[(String, String)]) -> Result<(), HttpResponse> {
    let request = estuary_actors::access::Request {
        action: estuary_actors::access::auth::Action::Play,
        client: 0,
        ip: Some(peer.ip()),
        vhost: &key.vhost,
        app: &key.app,
        stream: checked,
        params,
    };
    state.node.access.check_rules(&request).map_err(|reason| refusal(PlayRefused::Denied(reason.to_string())))
}

async fn serve_stream_file(state: web::Data<AppState>, req: HttpRequest, app: String, file: String) -> HttpResponse {
    // The one name rule (letters, digits, - _ . ~ @ + = ! ,; no `..`): segment and playlist
    // names are the stream's name with a suffix, so they pass it too.
    if let Err(reason) = naming::check_app(&app).and_then(|()| naming::check_file_name(&file)) {
        return HttpResponse::BadRequest().body(format!("invalid app or file name: {reason}\n"));
    }
    let Some((stream, extension)) = file.rsplit_once('.') else {
        return HttpResponse::NotFound().body(format!("no such resource /{app}/{file}\n"));
    };
    let peer = req.peer_addr().unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
    let params = estuary_protocols::rtmp::message::parse_query(req.query_string());
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let key = stream_key(&state, &app, stream, host, &params);
    let not_found = |what: &str| HttpResponse::NotFound().insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).body(format!("{what}\n"));
    let hls_file = state.hls_dir.join(&app).join(&file);
    let dash_file = state.dash_dir.join(&app).join(&file);
    // Playlists, manifests and their segments go through the same play rules (CIDR, token)
    // as every other play path. Segment names are predictable, so a segment is checked as
    // the stream it belongs to; playlists pass the viewer's token on in their segment URIs.
    // Decided by the name, not by whether the file exists yet: a request racing the next
    // segment's rename must not skip the check. `.ts` with no owning playlist is live
    // HTTP-TS, checked as its own stream (and again when it subscribes).
    let segment = matches!(extension, "ts" | "m4s" | "mp4" | "vtt");
    // A file of a live package in memory (HLS and DASH on demand), else of the files on disk.
    // Only names of the protocols served on demand: with `hls.always` the disk's `-<n>.m4s`
    // and `-init-<v>.mp4` are HLS's, with `dash.always` the disk's DASH files.
    let (hls_on_demand, dash_on_demand) = crate::live_package::on_demand(&state, &key.vhost, &app);
    let packaged = if segment { crate::live_package::owner(&state, &key.vhost, &app, stream, extension, hls_on_demand, dash_on_demand) } else { None };
    let owner = if segment { packaged.as_ref().map(|(owner, _)| owner.clone()).or_else(|| segment_stream(&state, &app, stream)) } else { None };
    if segment && owner.is_none() && extension != "ts" {
        return not_found(&format!("no such segment {app}/{file}"));
    }
    if matches!(extension, "m3u8" | "mpd") || segment {
        // `_master` (a master playlist) and, on demand, `_vtt` (the caption rendition) name the
        // stream they are made from only as playlists; any other file is checked as named.
        let base = match extension {
            "m3u8" => stream.strip_suffix("_master").or_else(|| stream.strip_suffix("_vtt").filter(|_| hls_on_demand)),
            _ => None,
        };
        let checked = owner.clone().unwrap_or_else(|| base.unwrap_or(stream).to_string());
        if let Err(refused) = check_play(&state, &key, &checked, peer, &params) {
            return refused;
        }
    }
    let token = params.iter().find(|(k, _)| k == "token").map(|(_, v)| v.clone());
    // `?codec=h264`: a player that decodes only H.264 is sent to the stream's H.264 fallback
    // rendition when the stream is of another codec (started once and shared, stopped when
    // nobody plays it).
    let live_url = matches!(extension, "flv" | "m3u8" | "mpd") || (extension == "ts" && owner.is_none());
    if live_url && params.iter().any(|(k, v)| k == "codec" && v.eq_ignore_ascii_case("h264")) {
        let codec = estuary_actors::transcode::video_codec(&state.registry, &key).await;
        if let Some(codec @ ("H265" | "AV1")) = codec.as_deref() {
            // Nothing is started for a player the play rules (and the on_play hook) refuse.
            let request = estuary_actors::access::Request { action: estuary_actors::access::auth::Action::Play, client: 0, ip: Some(peer.ip()), vhost: &key.vhost, app: &key.app, stream: &key.stream, params: &params };
            if let Err(reason) = state.node.access.check(&request).await {
                return refusal(PlayRefused::Denied(reason.to_string()));
            }
            return match estuary_actors::transcode::fallback(&state.node, &state.registry, &key).await {
                Ok(fallback) => {
                    // The query as it came, without `codec`; a token for the stream asked for
                    // becomes one for its fallback (tokens are signed per stream), good as long.
                    let access = state.node.access.settings();
                    let query: Vec<String> = req
                        .query_string()
                        .split('&')
                        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some("codec"))
                        .filter_map(|kv| match (kv.strip_prefix("token="), &access.signer) {
                            // Only a token that verifies for the stream asked for is exchanged
                            // (one the rules did not need to check is not made valid); others
                            // are left out.
                            (Some(token), Some(signer)) => {
                                let now = (estuary_actors::unix_ms() / 1000).max(0) as u64;
                                let play = estuary_actors::access::auth::Action::Play;
                                let expiry = token.split_once('.').and_then(|(expiry, _)| expiry.parse::<u64>().ok());
                                match (signer.verify(token, play, &key.to_string(), now), expiry) {
                                    (Ok(()), Some(expiry)) => Some(format!("token={}", signer.mint(play, &fallback.to_string(), expiry))),
                                    _ => None,
                                }
                            }
                            _ => Some(kv.to_string()),
                        })
                        .collect();
                    let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
                    let location = format!("/{app}/{}.{extension}{query}", fallback.stream);
                    tracing::info!(stream = %key, codec, %location, "HTTP player asked for H.264: redirected to the fallback rendition");
                    HttpResponse::Found().insert_header((header::LOCATION, location)).insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).finish()
                }
                Err(reason) => HttpResponse::ServiceUnavailable().insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).body(format!("{key} is {codec} and has no H.264 rendition: {reason}\n")),
            };
        }
    }
    // `cluster.redirect`: a stream another origin owns is played there (live URLs only; a
    // segment is fetched where its playlist came from).
    if live_url {
        if let Some(node) = estuary_actors::cluster::pull::redirect(&state.node, &state.registry, &key).await {
            // The play rules first: nobody learns where a stream lives without passing them.
            if let Err(refused) = check_play(&state, &key, &key.stream, peer, &params) {
                return refused;
            }
            let base = node["http"].as_str().unwrap_or_default();
            let query = if req.query_string().is_empty() { String::new() } else { format!("?{}", req.query_string()) };
            let location = format!("{base}/{app}/{file}{query}");
            tracing::info!(stream = %key, %location, "HTTP play redirected to the stream's owner (cluster.redirect)");
            return HttpResponse::Found().insert_header((header::LOCATION, location)).insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).finish();
        }
    }
    if let Some((owner, name)) = packaged {
        let mut owner_key = StreamKey::new(&app, &owner);
        owner_key.vhost = key.vhost.clone();
        // Not in the package (left the window, never made): not found, and never a disk file
        // of the same name, which would be another stream's under the check made for this one.
        return match crate::live_package::media(&state, &req, owner_key, name, extension).await {
            Some(response) => response,
            None => not_found(&format!("no such segment {app}/{file}")),
        };
    }
    match extension {
        "m3u8" if hls_on_demand => match (stream.strip_suffix("_master"), stream.strip_suffix("_vtt")) {
            (Some(base), _) => master_playlist(&state, &key.vhost, &app, base, token.as_deref()).await,
            (None, Some(base)) => {
                let mut base_key = StreamKey::new(&app, base);
                base_key.vhost = key.vhost.clone();
                crate::live_package::subtitles_playlist(&state, &req, &base_key, token.as_deref()).await
            }
            (None, None) => crate::live_package::playlist(&state, &req, &key, &params, token.as_deref()).await,
        },
        "mpd" if dash_on_demand => crate::live_package::manifest(&state, &req, &key, token.as_deref()).await,
        "flv" => {
            // The delivery engine writes to its own handle of the connection (made when it was
            // accepted); without one (another transport), the response streams as a body.
            let socket = take_live_socket(&req);
            match socket {
                Some(socket) => match http_live::play_on(http_live::LiveFormat::Flv, &state.node, &state.registry, key, peer, params, socket, state.write_merge, "Access-Control-Allow-Origin: *\r\n").await {
                    // Nothing reaches the client any more: the connection is shut down.
                    Ok(()) => HttpResponse::Ok().force_close().finish(),
                    Err(refused) => refusal(refused),
                },
                None => match http_live::play(&state.node, &state.registry, key, peer, params, "http-flv", FlvEncoder, state.write_merge).await {
                    Ok(body) => live(body, "video/x-flv"),
                    Err(refused) => refusal(refused),
                },
            }
        }
        "ts" => {
            if let Some(response) = serve_file(hls_file, "video/mp2t", "max-age=60").await {
                return response;
            }
            if let Some(reason) = estuary_actors::attach::mpeg_ts_refusal(&state.registry, &key).await {
                tracing::warn!(stream = %key, %peer, %reason, "HTTP-TS play refused");
                return HttpResponse::NotAcceptable().insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).content_type("text/plain; charset=utf-8").body(format!("{reason}\n"));
            }
            let socket = take_live_socket(&req);
            match socket {
                Some(socket) => match http_live::play_on(http_live::LiveFormat::Ts, &state.node, &state.registry, key, peer, params, socket, state.write_merge, "Access-Control-Allow-Origin: *\r\n").await {
                    Ok(()) => HttpResponse::Ok().force_close().finish(),
                    Err(refused) => refusal(refused),
                },
                None => match http_live::play(&state.node, &state.registry, key, peer, params, "http-ts", TsEncoder::default(), state.write_merge).await {
                    Ok(body) => live(body, "video/mp2t"),
                    Err(refused) => refusal(refused),
                },
            }
        }
        "m3u8" => match serve_text(pulled_playlist(&state, &key, hls_file).await, "application/vnd.apple.mpegurl", token.as_deref(), estuary_protocols::manifest::hls::with_query_on_uris).await {
            Some(response) => response,
            None => match stream.strip_suffix("_master") {
                Some(base) => master_playlist(&state, &key.vhost, &app, base, token.as_deref()).await,
                None => not_found(&format!("no HLS playlist for {app}/{stream}")),
            },
        },
        "mpd" => serve_text(pulled_playlist(&state, &key, dash_file).await, "application/dash+xml", token.as_deref(), estuary_protocols::manifest::dash::with_query_on_templates).await.unwrap_or_else(|| not_found(&format!("no DASH manifest for {app}/{stream}"))),
        "m4s" | "mp4" => {
            let content_type = if extension == "mp4" { "video/mp4" } else { "video/iso.segment" };
            let cache = if extension == "mp4" { "no-cache" } else { "max-age=60" };
            if let Some(response) = serve_file(hls_file, content_type, cache).await {
                return response;
            }
            serve_file(dash_file, content_type, cache).await.unwrap_or_else(|| not_found(&format!("no such segment {app}/{file}")))
        }
        other => not_found(&format!("unsupported format .{other}")),
    }
}

/// An HLS playlist or DASH manifest of a stream another node owns: the first request makes
/// this node pull it and waits (up to 10 s) for the file; each request keeps the pull going.
/// Returns the path to serve (unchanged on a standalone node).
async fn pulled_playlist(state: &AppState, key: &estuary_actors::StreamKey, playlist: std::path::PathBuf) -> std::path::PathBuf {
    let Some(directory) = state.node.cluster.clone() else { return playlist };
    let stream = key.db_key();
    // Decided by whether the stream is published here, not by whether a file is on disk (an
    // ended stream's playlist stays until it is disposed of).
    if estuary_actors::cluster::pull::ensure(&state.node, &state.registry, key).await {
        directory.touch(&stream);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !playlist.is_file() && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    playlist
}

/// `/<app>/<stream>_master.m3u8`: an HLS master playlist of the stream and its transcoded
/// renditions that currently have a playlist, highest bandwidth first.
pub(crate) async fn master_playlist(state: &AppState, vhost: &str, app: &str, stream: &str, token: Option<&str>) -> HttpResponse {
    let mut variants: Vec<(u64, Option<(u32, u32)>, String)> = Vec::new();
    let renditions: Vec<estuary_actors::transcode::TranscodeStatus> =
        estuary_actors::transcode::list(&state.node).into_iter().filter(|t| t.source == format!("{app}/{stream}") && t.state != "stopped").collect();
    let streams = state.registry.send(estuary_actors::messages::ListStreams).await.unwrap_or_default();
    let info_of = |name: &str| {
        let key = StreamKey::new(app, name);
        streams.iter().find(|(k, _)| *k == key).map(|(_, addr)| addr.clone())
    };
    let mut candidates = vec![(stream.to_string(), None)];
    candidates.extend(renditions.iter().map(|r| (r.output.rsplit('/').next().unwrap_or_default().to_string(), Some(r.video_kbps))));
    let (on_demand, _) = crate::live_package::on_demand(state, vhost, app);
    for (name, configured_kbps) in candidates {
        // On demand, every live rendition has a playlist (it starts when asked for).
        if !on_demand && !state.hls_dir.join(app).join(format!("{name}.m3u8")).exists() {
            continue;
        }
        let Some(addr) = info_of(&name) else { continue };
        // A stream actor that does not answer in time is left out rather than holding the playlist.
        let Ok(Ok(info)) = tokio::time::timeout(std::time::Duration::from_millis(500), addr.send(estuary_actors::messages::GetStreamInfo)).await else { continue };
        let measured = info.kbps_in_30s * 1000;
        let bandwidth = configured_kbps.map(|k| (k as u64 + 128) * 1000).unwrap_or(measured).max(measured).max(64_000);
        let resolution = info.video.as_ref().map(|v| (v.width, v.height)).filter(|(w, h)| *w > 0 && *h > 0);
        variants.push((bandwidth, resolution, name));
    }
    if variants.is_empty() {
        return HttpResponse::NotFound().insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).body(format!("no HLS playlist for {app}/{stream} or its renditions\n"));
    }
    let variants: Vec<Variant> = variants.into_iter().map(|(bandwidth, resolution, name)| Variant { bandwidth, resolution, uri: format!("{name}.m3u8") }).collect();
    // On demand, the stream's package serves a WebVTT caption rendition (empty until a
    // caption comes): every variant refers to it.
    let subtitles = on_demand.then(|| {
        let mut key = StreamKey::new(app, stream);
        key.vhost = vhost.to_string();
        let language = state.node.packages.get(&key).and_then(|p| p.read(|p| p.caption_language.clone()));
        hls::Subtitles { uri: format!("{stream}_vtt.m3u8"), language }
    });
    let text = hls::master_playlist(variants, subtitles.as_ref());
    let text = match token {
        Some(token) => estuary_protocols::manifest::hls::with_query_on_uris(&text, &format!("token={token}")),
        None => text,
    };
    HttpResponse::Ok()
        .content_type("application/vnd.apple.mpegurl")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(text)
}

/// A playlist or manifest; with a viewer's token, rewritten so its segment URIs carry it.
async fn serve_text(path: PathBuf, content_type: &'static str, token: Option<&str>, rewrite: fn(&str, &str) -> String) -> Option<HttpResponse> {
    let Some(token) = token else { return serve_file(path, content_type, "no-cache").await };
    let text = tokio::fs::read_to_string(&path).await.ok()?;
    let query = format!("token={}", token.replace(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'), ""));
    Some(
        HttpResponse::Ok()
            .content_type(content_type)
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
            .body(rewrite(&text, &query)),
    )
}

/// The stream a segment file belongs to: the longest prefix of its name, cut at a `-`,
/// that has a playlist or manifest (`cam-1-7.ts` → `cam-1` when `cam-1.m3u8` exists).
fn segment_stream(state: &AppState, app: &str, stem: &str) -> Option<String> {
    let mut cut = stem.len();
    while let Some(dash) = stem[..cut].rfind('-') {
        let prefix = &stem[..dash];
        if state.hls_dir.join(app).join(format!("{prefix}.m3u8")).is_file() || state.dash_dir.join(app).join(format!("{prefix}.mpd")).is_file() {
            return Some(prefix.to_string());
        }
        cut = dash;
    }
    None
}
