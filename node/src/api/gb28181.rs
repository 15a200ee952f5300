//! GB28181: `POST /gb/v1/publish/` (an SSRC announced by an external signalling server),
//! `GET /api/v1/gb28181/devices`, `POST .../channels/{channel}/{invite|bye}`.

use super::*;

#[derive(Debug, serde::Deserialize)]
pub(super) struct GbPublish {
    id: String,
    ssrc: serde_json::Value,
}

/// SRS 6's `POST /gb/v1/publish/`: a signalling server announces that the camera `id` will
/// send PS media with `ssrc`; the answer names the media port (TCP). The stream is
/// `<gb28181.app>/<id>`.
pub(super) async fn gb_publish(_: Authorized, state: web::Data<AppState>, body: web::Json<GbPublish>) -> HttpResponse {
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

pub(super) async fn gb_devices(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    match estuary_actors::gb28181::sip::devices(&state.node).await {
        Ok(list) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": list.len(), "devices": list })),
        Err(e) => error(503, &e),
    }
}

/// `POST /api/v1/gb28181/devices/{device}/channels/{channel}/invite` (or `/bye`).
pub(super) async fn gb_channel(_: Authorized, state: web::Data<AppState>, path: web::Path<(String, String, String)>) -> HttpResponse {
    let (device, channel, action) = path.into_inner();
    let result = match action.as_str() {
        "invite" => estuary_actors::gb28181::sip::invite(&state.node, &device, &channel).await.map(|stream| json!({ "code": 0, "server": SERVER, "stream": stream })),
        "bye" => estuary_actors::gb28181::sip::bye(&state.node, &device, &channel).await.map(|()| json!({ "code": 0, "server": SERVER })),
        other => return error(400, &format!("action {other:?} is not invite or bye")),
    };
    match result {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(e) => error(404, &e),
    }
}
