//! `GET|DELETE /api/v1/recordings` (the recordings index, coverage and gaps) and
//! `POST /api/v1/dvr` (recording switched on or off at runtime).

use super::*;

#[derive(Debug, serde::Deserialize)]
pub(super) struct RecordingQuery {
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

    /// The recordings of the query's range. With `live_view`, files being written are shown
    /// as their writers see them (`state: "recording"`, the end of their last synced
    /// fragment); without, as the index has them (what deletion acts on).
    async fn select(&self, state: &AppState, live_view: bool) -> Result<(Vec<estuary_storage::Recording>, i64, i64), HttpResponse> {
        let (from, to) = self.range()?;
        let list = state
            .storage
            .addr()
            .send(estuary_actors::messages::ListRecordings { key: self.key() })
            .await
            .map_err(|e| error(503, &format!("storage unavailable: {e}")))?
            .map_err(|e| error(503, &e.to_string()))?;
        let list: Vec<estuary_storage::Recording> = list.into_iter().filter(|r| self.app.as_ref().is_none_or(|a| &r.key.app == a) && self.stream.as_ref().is_none_or(|s| &r.key.stream == s)).collect();
        let list = if live_view {
            let mut in_progress: Vec<estuary_actors::StreamKey> = list.iter().filter(|r| r.state == estuary_storage::RecordingState::Recording).map(|r| r.key.clone()).collect();
            in_progress.dedup();
            let mut open = Vec::new();
            for key in &in_progress {
                // A writer that does not answer leaves its file as the index has it.
                open.extend(state.node.dvr.open_recordings(key).await.unwrap_or_default());
            }
            estuary_actors::dvr::with_open(list, &open).into_iter().map(|p| p.recording).collect()
        } else {
            list
        };
        let list = list.into_iter().filter(|r| r.end_ms > from && r.start_ms < to).collect();
        Ok((list, from, to))
    }
}

pub(super) fn recording_json(r: &estuary_storage::Recording) -> Value {
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

/// The coverage of `recordings` within [from, to) as JSON: covered spans, and the holes
/// between them with the reason a recorded loss gives (see [`estuary_storage::recordings::coverage`]).
pub(super) fn coverage(recordings: &[estuary_storage::Recording], losses: &[estuary_storage::RecordingGap], from: i64, to: i64) -> (Vec<Value>, Vec<Value>) {
    let coverage = estuary_storage::recordings::coverage(recordings, losses, from, to);
    let covered = coverage.spans.iter().map(|(a, b)| json!({ "start_ms": a, "end_ms": b, "duration_ms": b - a })).collect();
    let gaps = coverage
        .holes
        .iter()
        .map(|hole| {
            json!({
                "start_ms": hole.start_ms,
                "end_ms": hole.end_ms,
                "duration_ms": hole.end_ms - hole.start_ms,
                "reason": hole.loss.as_ref().map(|l| l.reason.clone()),
                "lost_frames": hole.loss.as_ref().map(|l| l.lost_frames),
            })
        })
        .collect();
    (covered, gaps)
}

pub(super) async fn list_recordings(_: Authorized, state: web::Data<AppState>, query: web::Query<RecordingQuery>) -> HttpResponse {
    let (list, from, to) = match query.select(&state, true).await {
        Ok(selected) => selected,
        Err(response) => return response,
    };
    let losses = match query.key() {
        Some(key) => match state.storage.ask(estuary_actors::messages::ListRecordingGaps(key)).await {
            Ok(Ok(losses)) => losses.into_iter().filter(|l| l.end_ms >= from && l.start_ms <= to).collect(),
            Ok(Err(e)) => return error(503, &e.to_string()),
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
pub(super) async fn delete_recordings(_: Authorized, state: web::Data<AppState>, query: web::Query<RecordingQuery>) -> HttpResponse {
    if query.key().is_none() {
        return error(400, "app and stream are required");
    }
    let (list, from, to) = match query.select(&state, false).await {
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
pub(super) struct DvrControl {
    app: String,
    stream: String,
    action: String,
}

/// `POST /api/v1/dvr?app=&stream=&action=start|stop`: records a stream (now, if live, and
/// whenever it is published) or stops recording it, until the node restarts.
pub(super) async fn dvr_control(_: Authorized, state: web::Data<AppState>, query: web::Query<DvrControl>) -> HttpResponse {
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

/// `GET /api/v1/dvr`: the streams being recorded now, each `recording`, or `suspended` with
/// the error (a full disk) and since when; a suspended recording resumes by itself when
/// writing works again.
pub(super) async fn dvr_status(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let mut streams: Vec<serde_json::Value> = state
        .node
        .dvr
        .recording()
        .into_iter()
        .map(|(key, failure)| match failure {
            None => json!({ "vhost": key.vhost, "app": key.app, "stream": key.stream, "state": "recording" }),
            Some((error, since_ms)) => json!({ "vhost": key.vhost, "app": key.app, "stream": key.stream, "state": "suspended", "error": error, "since_ms": since_ms }),
        })
        .collect();
    streams.sort_by_key(|s| format!("{}/{}/{}", s["vhost"], s["app"], s["stream"]));
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "streams": streams }))
}
