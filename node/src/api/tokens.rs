//! `POST /api/v1/tokens` (signed URL tokens) and `GET /api/v1/supervisors` (restart counts).

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
