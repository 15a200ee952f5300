//! `POST /api/v1/tokens` (signed URL tokens), `GET /api/v1/supervisors` (restart counts) and
//! `GET /api/v1/tasks` (what the node holds, for leak checks).

use super::*;

#[derive(Deserialize)]
pub(super) struct TokenRequest {
    action: String,
    app: String,
    stream: String,
    ttl_seconds: Option<u64>,
}

pub(super) async fn mint_token(_: Authorized, state: web::Data<AppState>, body: web::Json<TokenRequest>) -> HttpResponse {
    let Some(action) = estuary_actors::access::auth::Action::parse(&body.action) else {
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

pub(super) async fn supervisors(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "restarts": state.node.restarts.snapshot() }))
}

/// `GET /api/v1/tasks`: what the node holds now, for leak checks: actors and per-connection
/// tasks by kind (RTMP sessions, streams, muxers, SRT and WebRTC sessions, delivery players,
/// ...), TCP connections open and clients registered.
pub(super) async fn tasks(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let kinds = state.node.census.snapshot();
    let total: usize = kinds.values().sum();
    HttpResponse::Ok().json(json!({
        "code": 0,
        "server": SERVER,
        "total": total,
        "kinds": kinds,
        "connections": state.node.connections.open(),
        "clients": state.node.clients.snapshot().len(),
    }))
}
