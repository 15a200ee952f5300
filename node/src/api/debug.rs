//! `POST /api/v1/debug/fault`: fault injection for tests and drills (only with
//! `api.debug_faults`).

use super::*;

#[derive(Deserialize)]
pub(super) struct FaultQuery {
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

pub(super) async fn fault(_: Authorized, state: web::Data<AppState>, query: web::Query<FaultQuery>) -> HttpResponse {
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
    // Each actor takes the faults it can suffer: listeners panic; storage, streams and muxers
    // also stall; only the DVR writer writes slowly.
    let supported = match (query.actor.as_str(), fault) {
        (_, Fault::Panic) => true,
        ("storage" | "stream" | "hls" | "dash" | "dvr", Fault::Stall(_)) => true,
        ("dvr", Fault::SlowWrites { .. }) => true,
        _ => false,
    };
    if !supported {
        return error(400, &format!("actor {} does not take kind={}", query.actor, query.kind.as_deref().unwrap_or("panic")));
    }
    let sent = match (target, query.actor.as_str()) {
        (None, "rtmp_listener") => state.rtmp_listener.send(InjectFault(fault)).await.is_ok(),
        (None, "srt_listener") => match &state.srt_listener {
            Some(listener) => listener.send(InjectFault(fault)).await.is_ok(),
            None => return error(400, "SRT is disabled (srt.enabled = false)"),
        },
        (None, _) if matches!(fault, Fault::Stall(_)) => {
            // The storage thread sleeps through a stall: do not hold this request for it.
            let storage = state.storage.clone();
            actix_web::rt::spawn(async move { storage.ask(InjectFault(fault)).await });
            true
        }
        (None, _) => state.storage.ask(InjectFault(fault)).await.is_ok(),
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
