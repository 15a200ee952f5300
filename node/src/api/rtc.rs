//! WebRTC signalling: WHIP and WHEP (`/rtc/v1/whip/`, `/rtc/v1/whep/`, their resources'
//! DELETE, CORS preflight) and SRS's JSON API (`/rtc/v1/publish/`, `/rtc/v1/play/`).

use super::*;

/// WHIP (RFC 9725) publish: `POST /rtc/v1/whip/?app=live&stream=livestream` with an SDP
/// offer; 201 with the answer and a `Location` to `DELETE` when done. Other query parameters
/// (a `token`, say) go to access control and hooks like an RTMP publish's.
pub(super) async fn whip_publish(req: HttpRequest, state: web::Data<AppState>, query: web::Query<Vec<(String, String)>>, body: web::Bytes) -> HttpResponse {
    rtc_offer(req, state, query.into_inner(), body, "whip").await
}

/// WHEP play: `POST /rtc/v1/whep/?app=live&stream=livestream` with an SDP offer; 201 with the
/// answer (H.264 video, Opus audio) and a `Location`; 404 when nobody publishes the stream.
pub(super) async fn whep_play(req: HttpRequest, state: web::Data<AppState>, query: web::Query<Vec<(String, String)>>, body: web::Bytes) -> HttpResponse {
    rtc_offer(req, state, query.into_inner(), body, "whep").await
}

pub(super) async fn rtc_offer(req: HttpRequest, state: web::Data<AppState>, params: Vec<(String, String)>, body: web::Bytes, kind: &str) -> HttpResponse {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let (app, stream) = (get("app"), get("stream"));
    if let Err(reason) = estuary_protocols::naming::check_app(&app).and_then(|()| estuary_protocols::naming::check_stream(&stream)) {
        return error(400, &format!("app and stream query parameters are required: {reason}"));
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
pub(super) struct SrsRtcRequest {
    streamurl: String,
    sdp: String,
}

pub(super) async fn srs_rtc_publish(req: HttpRequest, state: web::Data<AppState>, body: web::Json<SrsRtcRequest>) -> HttpResponse {
    srs_rtc(req, state, body.into_inner(), "whip").await
}

pub(super) async fn srs_rtc_play(req: HttpRequest, state: web::Data<AppState>, body: web::Json<SrsRtcRequest>) -> HttpResponse {
    srs_rtc(req, state, body.into_inner(), "whep").await
}

/// `app`, `stream` and query parameters of `webrtc://host[:port]/app/stream[?k=v&...]`.
pub(super) type AppStreamParams = (String, String, Vec<(String, String)>);

pub(super) fn parse_stream_url(url: &str) -> Option<AppStreamParams> {
    let rest = url.strip_prefix("webrtc://").or_else(|| url.strip_prefix("http://")).or_else(|| url.strip_prefix("https://"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (_host, app_stream) = path.split_once('/')?;
    let (app, stream) = app_stream.rsplit_once('/')?;
    let (app, stream) = (app.to_string(), stream.to_string());
    let params = query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap_or((p.to_string(), String::new()))).collect();
    Some((app, stream, params))
}

pub(super) async fn srs_rtc(req: HttpRequest, state: web::Data<AppState>, body: SrsRtcRequest, kind: &str) -> HttpResponse {
    let Some((app, stream, params)) = parse_stream_url(&body.streamurl) else {
        return error(400, "streamurl must look like webrtc://host/app/stream");
    };
    if let Err(reason) = estuary_protocols::naming::check_app(&app).and_then(|()| estuary_protocols::naming::check_stream(&stream)) {
        return error(400, &format!("bad app or stream name in streamurl: {reason}"));
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
pub(super) async fn rtc_preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .insert_header(("Access-Control-Allow-Methods", "POST, DELETE, OPTIONS"))
        .insert_header(("Access-Control-Allow-Headers", "Content-Type, Authorization"))
        .insert_header(("Access-Control-Expose-Headers", "Location"))
        .insert_header(("Access-Control-Max-Age", "600"))
        .finish()
}

/// Ends a WHIP or WHEP session.
pub(super) async fn rtc_delete(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    if state.node.rtc.end_session(&path) {
        HttpResponse::Ok().insert_header(("Access-Control-Allow-Origin", "*")).finish()
    } else {
        error(404, "no such WebRTC session")
    }
}
