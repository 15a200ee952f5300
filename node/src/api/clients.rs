//! `GET /api/v1/clients`, `GET|DELETE /api/v1/clients/{id}`.

use super::*;

pub(super) fn client_json(c: &estuary_actors::node::clients::ClientRecord) -> Value {
    let role = c.role();
    let (recv_kbps, send_kbps) = c.kbps_30s();
    let mut value = json!({
        "id": c.id.to_string(),
        "protocol": c.protocol,
        "ip": c.peer,
        "type": role.as_ref().map(|(r, _)| *r),
        "stream": role.as_ref().map(|(_, s)| s.clone()),
        // SRS's fields: whether it publishes, the stream's URL path and its name.
        "publish": matches!(role, Some((estuary_actors::node::clients::Role::Publish, _))),
        "url": role.as_ref().map(|(_, s)| format!("/{s}")),
        "name": role.as_ref().map(|(_, s)| s.rsplit('/').next().unwrap_or(s).to_string()),
        // SRS's vhost id (streams' ids link the same way), and the rates of the last 30 s.
        "vhost": super::srs::vhost_id("__defaultVhost__"),
        "kbps": { "recv_30s": recv_kbps, "send_30s": send_kbps },
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

pub(super) async fn list_clients(_: Authorized, state: web::Data<AppState>, page: web::Query<Page>) -> HttpResponse {
    let (start, count) = match page.bounds() {
        Ok(bounds) => bounds,
        Err(response) => return response,
    };
    let all = state.node.clients.snapshot();
    let list: Vec<Value> = all.iter().skip(start).take(count).map(|c| client_json(c)).collect();
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": all.len(), "clients": list }))
}

pub(super) fn find_client(state: &AppState, id: &str) -> Result<std::sync::Arc<estuary_actors::node::clients::ClientRecord>, HttpResponse> {
    let id: u64 = id.parse().map_err(|_| error(400, &format!("client id {id:?} is not a number")))?;
    state.node.clients.get(id).ok_or_else(|| error(404, &format!("no client with id {id}")))
}

pub(super) async fn client_by_id(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    match find_client(&state, &id) {
        Ok(client) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "client": client_json(&client) })),
        Err(response) => response,
    }
}

pub(super) async fn kick_client(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    match find_client(&state, &id) {
        Ok(client) => {
            tracing::info!(client = client.id, protocol = client.protocol, peer = %client.peer, "kicking client through the API");
            client.kick();
            HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER }))
        }
        Err(response) => response,
    }
}
