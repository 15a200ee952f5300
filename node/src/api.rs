//! The HTTP API (SRS's port 1985) in SRS's JSON shapes: every answer has `code` (0 on
//! success) and `server`.

use crate::AppState;
use actix_web::{web, HttpResponse};
use estuary_actors::clients;
use estuary_actors::messages::{GetStreamInfo, InjectFault, ListStreamRecords, ListStreams};
use estuary_actors::stream::StreamInfo;
use estuary_storage::StreamRecord;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

const SERVER: &str = "estuary";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/versions", web::get().to(versions))
        .route("/api/v1/summaries", web::get().to(summaries))
        .route("/api/v1/streams", web::get().to(streams))
        .route("/api/v1/clients", web::get().to(list_clients))
        .route("/api/v1/supervisors", web::get().to(supervisors))
        .route("/api/v1/debug/fault", web::post().to(fault))
        .default_service(web::to(|| async { error(404, "no such API") }));
}

fn error(status: u16, message: &str) -> HttpResponse {
    let status_code = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status_code).json(json!({ "code": status, "server": SERVER, "message": message }))
}

async fn versions() -> HttpResponse {
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

fn rss_kbytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

async fn summaries(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "code": 0,
        "server": SERVER,
        "data": {
            "ok": true,
            "self": {
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
                "uptime_ms": state.started.elapsed().as_millis() as u64,
                "mem_kbyte": rss_kbytes(),
            },
            "clients": clients::snapshot().len(),
        }
    }))
}

#[derive(Deserialize)]
struct Page {
    start: Option<usize>,
    count: Option<usize>,
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

async fn streams(state: web::Data<AppState>, page: web::Query<Page>) -> HttpResponse {
    let start = page.start.unwrap_or(0);
    let count = page.count.unwrap_or(100).min(1000);
    let live = match state.registry.send(ListStreams).await {
        Ok(live) => live,
        Err(_) => return error(500, "stream registry unavailable"),
    };
    let infos: Vec<Option<StreamInfo>> =
        futures_util::future::join_all(live.iter().map(|(_, addr)| async move { addr.send(GetStreamInfo).await.ok() })).await;
    let records = match state.storage.addr().send(ListStreamRecords).await {
        Ok(Ok(records)) => records,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "stream history unavailable");
            Vec::new()
        }
        Err(_) => Vec::new(),
    };
    type Merged = (Option<StreamInfo>, Option<StreamRecord>);
    let mut by_key: BTreeMap<(String, String, String), Merged> = BTreeMap::new();
    for ((key, _), info) in live.iter().zip(infos) {
        by_key.entry((key.vhost.clone(), key.app.clone(), key.stream.clone())).or_default().0 = info;
    }
    for record in records {
        let k = record.key.clone();
        by_key.entry((k.vhost, k.app, k.stream)).or_default().1 = Some(record);
    }
    let total = by_key.len();
    let list: Vec<Value> = by_key
        .into_iter()
        .skip(start)
        .take(count)
        .map(|((vhost, app, stream), (info, record))| {
            let active = info.as_ref().is_some_and(|i| i.publisher.is_some());
            let video = info.as_ref().and_then(|i| i.video.clone()).or_else(|| record.as_ref().and_then(|r| r.video.clone()));
            let audio = info.as_ref().and_then(|i| i.audio.clone()).or_else(|| record.as_ref().and_then(|r| r.audio.clone()));
            json!({
                "id": format!("{vhost}/{app}/{stream}"),
                "name": stream,
                "vhost": vhost,
                "app": app,
                "url": format!("/{app}/{stream}"),
                "live_ms": info.as_ref().map(|i| i.live_ms).unwrap_or(0),
                "clients": info.as_ref().map(|i| i.subscribers + usize::from(i.publisher.is_some())).unwrap_or(0),
                "frames": info.as_ref().map(|i| i.frames_in).unwrap_or(0),
                "frames_dropped": info.as_ref().map(|i| i.frames_dropped).unwrap_or(0),
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
                },
                "video": video_json(&video),
                "audio": audio_json(&audio),
                "history": record.as_ref().map(history).unwrap_or(Value::Null),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": total, "streams": list }))
}

async fn list_clients(page: web::Query<Page>) -> HttpResponse {
    let start = page.start.unwrap_or(0);
    let count = page.count.unwrap_or(100).min(1000);
    let all = clients::snapshot();
    let list: Vec<Value> = all
        .iter()
        .skip(start)
        .take(count)
        .map(|c| {
            let role = c.role();
            json!({
                "id": c.id.to_string(),
                "protocol": c.protocol,
                "ip": c.peer,
                "type": role.as_ref().map(|(r, _)| *r),
                "stream": role.as_ref().map(|(_, s)| s.clone()),
                "alive": c.connected.elapsed().as_secs_f64(),
                "recv_bytes": c.bytes_in.load(Ordering::Relaxed),
                "send_bytes": c.bytes_out.load(Ordering::Relaxed),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": all.len(), "clients": list }))
}

async fn supervisors() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "restarts": estuary_actors::supervision::restarts() }))
}

#[derive(Deserialize)]
struct FaultQuery {
    actor: String,
}

async fn fault(state: web::Data<AppState>, query: web::Query<FaultQuery>) -> HttpResponse {
    if !state.debug_faults {
        return error(403, "fault injection is disabled (set api.debug_faults = true)");
    }
    let sent = match query.actor.as_str() {
        "rtmp_listener" => state.rtmp_listener.send(InjectFault).await.is_ok(),
        "storage" => state.storage.addr().send(InjectFault).await.is_ok(),
        other => return error(400, &format!("unknown actor {other:?}; expected rtmp_listener or storage")),
    };
    if !sent {
        return error(503, "actor unavailable");
    }
    tracing::warn!(actor = %query.actor, "fault injected through the API");
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "actor": query.actor }))
}
