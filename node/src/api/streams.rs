//! `GET /api/v1/streams[?start=&count=&all=true]`, `GET /api/v1/streams/{id}`: live streams
//! merged with what storage remembers of them (ended ones only with `all=true`, or by id).

use super::*;

/// A stable id for a stream: FNV-1a of `vhost/app/stream`, in hex.
pub fn stream_id(vhost: &str, app: &str, stream: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{vhost}/{app}/{stream}").bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

pub(super) fn history(record: &StreamRecord) -> Value {
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

pub(super) fn video_json(video: &Option<estuary_storage::VideoInfo>) -> Value {
    match video {
        Some(v) => json!({ "codec": v.codec, "profile": v.profile, "level": v.level, "width": v.width, "height": v.height }),
        None => Value::Null,
    }
}

pub(super) fn audio_json(audio: &Option<estuary_storage::AudioInfo>) -> Value {
    match audio {
        Some(a) => json!({ "codec": a.codec, "sample_rate": a.sample_rate, "channel": a.channels, "profile": a.profile }),
        None => Value::Null,
    }
}

/// A stream as the API lists it.
#[derive(Default)]
pub struct Merged {
    /// A stream actor exists (publishing, in its grace period, or holding waiting players).
    pub live: bool,
    /// Its live state, when it answered in time.
    pub info: Option<StreamInfo>,
    /// What storage remembers of it.
    pub record: Option<StreamRecord>,
}

/// How long the API waits for one stream actor's state.
const STREAM_INFO_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Live stream state merged with remembered records, by (vhost, app, stream).
pub async fn all_streams(state: &AppState) -> Result<BTreeMap<(String, String, String), Merged>, HttpResponse> {
    let live = state.registry.send(ListStreams).await.map_err(|_| error(500, "stream registry unavailable"))?;
    // A stream actor that is stuck (a stall, a long handler) must not hold the whole list: it
    // gets a moment to answer and is listed from storage's record meanwhile.
    let infos: Vec<Option<StreamInfo>> = futures_util::future::join_all(live.iter().map(|(key, addr)| async move {
        match tokio::time::timeout(STREAM_INFO_WAIT, addr.send(GetStreamInfo)).await {
            Ok(answer) => answer.ok(),
            Err(_) => {
                tracing::warn!(stream = %key, wait_ms = STREAM_INFO_WAIT.as_millis() as u64, "stream actor did not answer in time; listed without its live state");
                None
            }
        }
    }))
    .await;
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
        let entry = by_key.entry((key.vhost.clone(), key.app.clone(), key.stream.clone())).or_default();
        entry.live = true;
        entry.info = info;
    }
    for record in records {
        let k = record.key.clone();
        by_key.entry((k.vhost, k.app, k.stream)).or_default().record = Some(record);
    }
    Ok(by_key)
}

pub(super) fn stream_json(node: &estuary_actors::node::Node, (vhost, app, stream): &(String, String, String), Merged { info, record, .. }: &Merged) -> Value {
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
        // A stream this node pulls from another node of the cluster: from whom, and how.
        "pull": node.cluster.as_ref().and_then(|d| d.pull_state(&format!("{vhost}/{app}/{stream}"))).map(|p| json!({ "owner": p.owner, "upstream": p.upstream, "state": p.state, "resumes": p.resumes })),
    })
}

pub(super) async fn streams(_: Authorized, state: web::Data<AppState>, page: web::Query<Page>) -> HttpResponse {
    let (start, count) = match page.bounds() {
        Ok(bounds) => bounds,
        Err(response) => return response,
    };
    let all = match all_streams(&state).await {
        Ok(all) => all,
        Err(response) => return response,
    };
    // Live streams by default; with `?all=true` also the ones storage remembers.
    let listed: Vec<_> = all.iter().filter(|(_, m)| m.live || page.all == Some(true)).collect();
    let list: Vec<Value> = listed.iter().skip(start).take(count).map(|(k, m)| stream_json(&state.node, k, m)).collect();
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": listed.len(), "streams": list }))
}

pub(super) async fn stream_by_id(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let all = match all_streams(&state).await {
        Ok(all) => all,
        Err(response) => return response,
    };
    match all.iter().find(|(k, _)| stream_id(&k.0, &k.1, &k.2) == *id) {
        Some((k, m)) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "stream": stream_json(&state.node, k, m) })),
        None => error(404, &format!("no stream with id {id}")),
    }
}
