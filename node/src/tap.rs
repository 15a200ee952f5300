//! The AI tap's WebSocket: `GET /tap/<app>/<stream>?audio=s16le&rate=16000&channels=1` (and/or
//! `video=jpeg|i420&fps=2&width=640`) on the HTTP port (checked by the play rules, as a player
//! is) and `/api/v1/tap/<app>/<stream>` on the API (API credentials). See
//! `estuary_actors::tap` for the shared decoding. Without `video`, a tap is audio; with it,
//! pictures only, unless `audio` is asked for too.
//!
//! The server's messages: first a text message, JSON, naming the stream and the formats
//! (`{"type":"start", ...}`); then one binary message per decoded chunk or picture (a 20-byte
//! header with the kind, the stream time and the wall-clock time, then little-endian 16-bit
//! samples or the picture; see `estuary_actors::tap::encode_chunk`); `{"type":"video",
//! "format", "fps", "width", "height"}` before the first picture and when the size changes;
//! `{"type":"lost","chunks":N,"kind":"audio"|"video"}` when this client fell behind and lost
//! its N oldest; and at the end a close frame whose reason says why (the stream ended, it has
//! no audio or no video, its codec cannot be decoded).
//!
//! Results come back as captions: `POST /api/v1/streams/<app>/<stream>/captions` with
//! `{"text": "...", "language": "eng"}`, or a text message `{"type":"caption", ...}` on the
//! tap's own socket (answered with `{"type":"caption","at_ms":N}` or `{"type":"error", ...}`).
//! RTMP and HTTP-FLV players get each caption as `onTextData` at the live edge. Timed
//! metadata (`POST .../metadata`, any JSON object) goes to them as an `onCuePoint` event. Web
//! pages follow both at `GET /events/<app>/<stream>` (server-sent events).

use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use estuary_actors::node::clients::Role;
use estuary_actors::messages::TimedData;
use estuary_actors::tap::{self, AudioFormat, StreamEvent, TapClient, TapError, TapEvent, TapFormat, VideoFormat};
use futures_util::StreamExt;
use estuary_actors::StreamKey;
use serde_json::json;

/// The kernel's send buffer for a tap connection: about a second of 48 kHz stereo. A client
/// that stops reading then shows as lost chunks within seconds, instead of megabytes of old
/// audio piling up in socket buffers (and arriving late).
const TAP_SEND_BUFFER: usize = 192 * 1024;

/// A tap client that takes nothing for this long (its socket full) is ended.
const TAP_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Shortest time between two captions from one tap socket.
const CAPTION_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

enum Outgoing {
    Text(String),
    Binary(bytes::Bytes),
}

/// Sends one message. `Err(None)`: the client has gone; `Err(Some(why))`: it was kicked, or
/// took nothing for [`TAP_SEND_TIMEOUT`] (a send waits while its socket is full).
async fn deliver(session: &mut actix_ws::Session, record: &estuary_actors::node::clients::ClientRecord, message: Outgoing) -> Result<(), Option<String>> {
    let send = async {
        match message {
            Outgoing::Text(text) => session.text(text).await,
            Outgoing::Binary(bytes) => session.binary(bytes).await,
        }
    };
    tokio::select! {
        sent = send => sent.map_err(|_| None),
        _ = record.kicked() => Err(Some("kicked through the API".to_string())),
        _ = tokio::time::sleep(TAP_SEND_TIMEOUT) => Err(Some(format!("the client took nothing for {} s", TAP_SEND_TIMEOUT.as_secs()))),
    }
}

/// Tells the client why the tap ends and closes it (bounded: it may not be reading).
async fn finish(mut session: actix_ws::Session, reason: String) {
    let close = Some(actix_ws::CloseReason { code: actix_ws::CloseCode::Normal, description: Some(reason.clone()) });
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let _ = session.text(json!({ "type": "end", "reason": reason }).to_string()).await;
        let _ = session.close(close).await;
    })
    .await;
}

fn error(status: u16, message: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status).insert_header(("Access-Control-Allow-Origin", "*")).content_type("text/plain; charset=utf-8").body(format!("{message}\n"))
}

/// `GET /tap/{app}/{stream}` on the HTTP port.
pub async fn tap_on_http_port(state: web::Data<AppState>, req: HttpRequest, body: web::Payload, path: web::Path<(String, String)>) -> HttpResponse {
    let (app, stream) = path.into_inner();
    serve(state, req, body, app, stream, true).await
}

/// `GET /api/v1/tap/{app}/{stream}` (the caller is authorized by the API).
pub async fn tap_on_api(state: web::Data<AppState>, req: HttpRequest, body: web::Payload, app: String, stream: String) -> HttpResponse {
    serve(state, req, body, app, stream, false).await
}

async fn serve(state: web::Data<AppState>, req: HttpRequest, body: web::Payload, app: String, stream: String, check_play: bool) -> HttpResponse {
    if let Err(reason) = estuary_protocols::naming::check_app(&app).and_then(|()| estuary_protocols::naming::check_stream(&stream)) {
        return error(400, &format!("invalid app or stream name: {reason}"));
    }
    let params = estuary_protocols::rtmp::message::parse_query(req.query_string());
    let video = match VideoFormat::from_query(&params) {
        Ok(video) => video,
        Err(reason) => return error(400, &reason),
    };
    // Audio unless only pictures are asked for.
    let audio = if video.is_none() || params.iter().any(|(k, _)| k == "audio") {
        match AudioFormat::from_query(&params) {
            Ok(format) => Some(format),
            Err(reason) => return error(400, &reason),
        }
    } else {
        None
    };
    let key = StreamKey::new(&app, &stream);
    let peer = req.peer_addr().unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
    let guard = state.node.clients.register("tap", peer.to_string());
    if check_play {
        let request = estuary_actors::access::Request {
            action: estuary_actors::access::auth::Action::Play,
            client: guard.id(),
            ip: Some(peer.ip()),
            vhost: &key.vhost,
            app: &key.app,
            stream: &key.stream,
            params: &params,
        };
        if let Err(reason) = state.node.access.check(&request).await {
            tracing::info!(client = guard.id(), stream = %key, %reason, "tap refused");
            return error(403, &format!("play refused: {reason}"));
        }
    }
    // Nothing starts for a request that is not a WebSocket upgrade.
    let upgrade = req.headers().get("upgrade").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return error(400, "the tap is a WebSocket: ask with Upgrade: websocket (ws://...)");
    }
    // Captions sent on the socket need what a publisher needs (on the API port, credentials
    // for changes): a viewer may listen, not write on every viewer's screen.
    let can_caption = !check_play || {
        let request = estuary_actors::access::Request { action: estuary_actors::access::auth::Action::Publish, client: guard.id(), ip: Some(peer.ip()), vhost: &key.vhost, app: &key.app, stream: &key.stream, params: &params };
        state.node.access.check_rules(&request).is_ok()
    };
    // Refused before the upgrade when the stream is not live; a stream without audio is told
    // over the socket (the client asked for a WebSocket, so it gets its close reason).
    let mut joined: Vec<Result<TapClient, TapError>> = Vec::new();
    for format in audio.map(TapFormat::Audio).into_iter().chain(video.map(TapFormat::Video)) {
        let client = tap::join(&state.node, &state.registry, &key, format).await;
        if let Err(TapError::NotFound(_)) = &client {
            return error(404, &format!("stream {key} is not live"));
        }
        joined.push(client);
    }
    let (response, mut session, mut messages) = match actix_ws::handle(&req, body) {
        Ok(handshake) => handshake,
        Err(e) => return error(400, &format!("not a WebSocket request: {e}")),
    };
    crate::http::limit_send_buffer(&req, TAP_SEND_BUFFER);
    guard.record().set_role(Role::Play, key.to_string());
    let record = guard.record().clone();
    actix_web::rt::spawn(async move {
        let _guard = guard;
        let mut clients = Vec::new();
        for client in joined {
            match client {
                Ok(client) => clients.push(client),
                Err(e) => {
                    tracing::info!(client = record.id, stream = %key, reason = %e, "tap closed");
                    finish(session, e.to_string()).await;
                    return;
                }
            }
        }
        let mut video_client = if video.is_some() { clients.pop() } else { None };
        let mut audio_client = clients.pop();
        let feeds: Vec<u64> = audio_client.iter().chain(video_client.iter()).map(TapClient::feed_id).collect();
        tracing::info!(client = record.id, stream = %key, ?feeds, ?audio, ?video, "tap started");
        let mut start = json!({ "type": "start", "stream": key.to_string(), "feed": feeds.first(), "feeds": feeds, "header_bytes": tap::CHUNK_HEADER });
        if let Some(format) = audio {
            start["audio"] = json!({ "format": "s16le", "rate": format.rate, "channels": format.channels });
        }
        if let Some(format) = video {
            start["video"] = json!({ "format": format.video, "fps": format.fps });
            if let Some(info) = video_client.as_ref().and_then(TapClient::video_info) {
                start["video"] = json!(info);
            }
        }
        let mut last_caption: Option<std::time::Instant> = None;
        let mut outcome = deliver(&mut session, &record, Outgoing::Text(start.to_string())).await;
        // A client joining a running video feed learns the picture size from `start`; the
        // feed's own announcement then repeats it.
        while outcome.is_ok() {
            outcome = tokio::select! {
                event = next_event(&mut audio_client) => on_event(&mut session, &record, &key, "audio", event).await,
                event = next_event(&mut video_client) => on_event(&mut session, &record, &key, "video", event).await,
                message = messages.recv() => match message {
                    Some(Ok(actix_ws::Message::Ping(bytes))) => session.pong(&bytes).await.map_err(|_| None),
                    Some(Ok(actix_ws::Message::Text(text))) => {
                        let answer = match serde_json::from_str::<serde_json::Value>(&text) {
                            Ok(message) if message["type"] == "caption" => {
                                if !can_caption {
                                    json!({ "type": "error", "status": 403, "message": "captions on the tap need the publish rules to pass (or the API's tap with credentials)" })
                                } else if last_caption.is_some_and(|at| at.elapsed() < CAPTION_INTERVAL) {
                                    json!({ "type": "error", "status": 429, "message": format!("at most one caption every {} ms", CAPTION_INTERVAL.as_millis()) })
                                } else {
                                    last_caption = Some(std::time::Instant::now());
                                    match send_caption(&state, &key, &message).await {
                                        Ok(at_ms) => json!({ "type": "caption", "at_ms": at_ms }),
                                        Err((status, reason)) => json!({ "type": "error", "status": status, "message": reason }),
                                    }
                                }
                            }
                            Ok(_) => json!({ "type": "error", "status": 400, "message": "the tap takes {\"type\":\"caption\", ...} messages" }),
                            Err(e) => json!({ "type": "error", "status": 400, "message": format!("not JSON: {e}") }),
                        };
                        deliver(&mut session, &record, Outgoing::Text(answer.to_string())).await
                    }
                    Some(Ok(actix_ws::Message::Close(_))) | None | Some(Err(_)) => Err(None),
                    Some(Ok(_)) => Ok(()),
                },
                _ = record.kicked() => Err(Some("kicked through the API".to_string())),
            };
        }
        let reason = outcome.err().flatten();
        let lost: u64 = audio_client.iter().chain(video_client.iter()).map(|c| c.lost).sum();
        tracing::info!(client = record.id, stream = %key, lost, reason = reason.as_deref().unwrap_or("the client left"), "tap ended");
        if let Some(reason) = reason {
            finish(session, reason).await;
        }
    });
    response
}

/// The next event of `client`; never, when there is none.
async fn next_event(client: &mut Option<TapClient>) -> Option<Result<TapEvent, u64>> {
    match client {
        Some(client) => client.next().await,
        None => std::future::pending().await,
    }
}

/// Sends what a feed gave to the client (`kind`: which feed, for a `lost` message).
async fn on_event(session: &mut actix_ws::Session, record: &estuary_actors::node::clients::ClientRecord, key: &StreamKey, kind: &str, event: Option<Result<TapEvent, u64>>) -> Result<(), Option<String>> {
    match event {
        Some(Ok(TapEvent::Audio { stream_us, wall_us, pcm })) => {
            let chunk = tap::encode_chunk(tap::KIND_AUDIO_S16LE, stream_us, wall_us, &pcm);
            record.add_out(chunk.len());
            deliver(session, record, Outgoing::Binary(chunk)).await
        }
        Some(Ok(TapEvent::Video { kind, stream_us, wall_us, data })) => {
            let chunk = tap::encode_chunk(kind, stream_us, wall_us, &data);
            record.add_out(chunk.len());
            deliver(session, record, Outgoing::Binary(chunk)).await
        }
        Some(Ok(TapEvent::VideoStart(info))) => {
            let mut message = json!(info);
            message["type"] = json!("video");
            deliver(session, record, Outgoing::Text(message.to_string())).await
        }
        Some(Ok(TapEvent::End(why))) => Err(Some(why)),
        Some(Err(lost)) => {
            tracing::debug!(client = record.id, stream = %key, lost, kind, "tap client behind: oldest chunks dropped");
            deliver(session, record, Outgoing::Text(json!({ "type": "lost", "chunks": lost, "kind": kind }).to_string())).await
        }
        None => Err(Some(format!("the {kind} tap feed stopped"))),
    }
}

/// `GET /api/v1/taps`: the tap feeds (one decoder each) and their clients.
pub fn list(state: &AppState) -> serde_json::Value {
    let feeds = state.node.taps.list();
    json!({ "total": feeds.len(), "taps": feeds })
}

/// Longest caption text, bytes (a few lines of subtitles; a model's whole transcript is not a
/// caption).
pub const MAX_CAPTION_BYTES: usize = 1024;

/// Checks a caption (`text`, optional `language`, optional `start`/`end` in stream ms) and
/// sends it to the stream's players: the stream time it went out at, or (HTTP status, reason).
pub async fn send_caption(state: &AppState, key: &StreamKey, body: &serde_json::Value) -> Result<i64, (u16, String)> {
    let text = match &body["text"] {
        serde_json::Value::String(text) if !text.trim().is_empty() => text.trim().to_string(),
        serde_json::Value::Null => return Err((400, "a caption needs \"text\"".into())),
        serde_json::Value::String(_) => return Err((400, "the caption's text is empty".into())),
        _ => return Err((400, "\"text\" must be a string".into())),
    };
    if text.len() > MAX_CAPTION_BYTES {
        return Err((413, format!("caption text of {} bytes (the limit is {MAX_CAPTION_BYTES})", text.len())));
    }
    let language = match &body["language"] {
        serde_json::Value::Null => "eng".to_string(),
        serde_json::Value::String(code) if (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase()) => code.clone(),
        other => return Err((400, format!("language {other}: an ISO 639 code such as \"eng\""))),
    };
    // Timing, when given, must make sense (outputs that show captions for a span use it).
    let time = |name: &str| -> Result<Option<f64>, (u16, String)> {
        match &body[name] {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Number(n) => match n.as_f64() {
                // Stream milliseconds: beyond ~30 years is not a time but a mistake.
                Some(v) if (0.0..1e12).contains(&v) => Ok(Some(v)),
                _ => Err((400, format!("malformed timing: {name} = {n}"))),
            },
            other => Err((400, format!("malformed timing: {name} = {other} (stream milliseconds)"))),
        }
    };
    let (start, end) = (time("start")?, time("end")?);
    if let (Some(start), Some(end)) = (start, end) {
        if end <= start {
            return Err((400, format!("malformed timing: end {end} is not after start {start}")));
        }
    }
    let data = json!({ "text": text, "language": language, "start": body["start"], "end": body["end"] });
    let (start_ms, end_ms) = (start.map(|v| v.round() as i64), end.map(|v| v.round() as i64));
    let at_ms = inject(state, key, TimedData::Caption { text, language, start_ms, end_ms }).await?;
    state.node.events.publish(key, StreamEvent { kind: "caption", stream: key.to_string(), at_ms, unix_ms: estuary_actors::unix_ms(), data });
    Ok(at_ms)
}

async fn inject(state: &AppState, key: &StreamKey, data: TimedData) -> Result<i64, (u16, String)> {
    let not_live = || (404, format!("stream {key} is not live"));
    let stream = state.registry.send(estuary_actors::messages::FindStream { key: key.clone(), create: false }).await.map_err(|_| not_live())?.ok_or_else(not_live)?;
    stream.send(estuary_actors::messages::InjectTimedData(data)).await.map_err(|_| not_live())?.map_err(|e| (404, e.to_string()))
}

/// Largest timed metadata object, bytes of JSON.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

/// Checks timed metadata (a JSON object) and sends it to the stream's players and event
/// listeners: the stream time it went out at, or (HTTP status, reason).
pub async fn send_metadata(state: &AppState, key: &StreamKey, body: &serde_json::Value) -> Result<i64, (u16, String)> {
    if !body.is_object() {
        return Err((400, "timed metadata is a JSON object".into()));
    }
    let text = body.to_string();
    if text.len() > MAX_METADATA_BYTES {
        return Err((413, format!("timed metadata of {} bytes (the limit is {MAX_METADATA_BYTES})", text.len())));
    }
    let at_ms = inject(state, key, TimedData::Metadata { json: text }).await?;
    state.node.events.publish(key, StreamEvent { kind: "metadata", stream: key.to_string(), at_ms, unix_ms: estuary_actors::unix_ms(), data: body.clone() });
    Ok(at_ms)
}

/// How often an idle event stream gets a comment line (proxies close silent connections).
const EVENTS_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// `GET /events/{app}/{stream}` on the HTTP port: the stream's captions and timed metadata as
/// server-sent events (`event: caption` / `event: metadata`, `data:` the JSON), from now on,
/// for web pages (`new EventSource(...)`). Checked by the play rules, as a player is. A
/// listener that falls 64 events behind gets `event: lost` with how many it missed.
pub async fn events(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    let (app, stream) = path.into_inner();
    if let Err(reason) = estuary_protocols::naming::check_app(&app).and_then(|()| estuary_protocols::naming::check_stream(&stream)) {
        return error(400, &format!("invalid app or stream name: {reason}"));
    }
    let params = estuary_protocols::rtmp::message::parse_query(req.query_string());
    let key = StreamKey::new(&app, &stream);
    let peer = req.peer_addr().unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
    let request = estuary_actors::access::Request { action: estuary_actors::access::auth::Action::Play, client: 0, ip: Some(peer.ip()), vhost: &key.vhost, app: &key.app, stream: &key.stream, params: &params };
    if let Err(reason) = state.node.access.check_rules(&request) {
        return error(403, &format!("play refused: {reason}"));
    }
    let rx = state.node.events.subscribe(&key);
    let first = bytes::Bytes::from(format!(": events of {key}\nretry: 3000\n\n"));
    let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(futures_util::stream::unfold(rx, |mut rx| async move {
        let text = match tokio::time::timeout(EVENTS_KEEPALIVE, rx.recv()).await {
            Err(_) => ": keep-alive\n\n".to_string(),
            Ok(Ok(event)) => format!("event: {}\ndata: {}\n\n", event.kind, serde_json::to_string(&*event).unwrap_or_default()),
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => format!("event: lost\ndata: {{\"events\":{n}}}\n\n"),
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
        };
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(text)), rx))
    }));
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .streaming(body)
}
