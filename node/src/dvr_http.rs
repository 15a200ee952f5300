//! DVR playback on the HTTP port:
//!
//! | URL | what |
//! |---|---|
//! | `/dvr/<app>/<stream>.mp4?start=&end=` | one progressive MP4 over the range (RFC 3339, Unix ms or `now`; either may be left out), up to the last durable fragment of the file being written |
//! | `/dvr/<app>/<stream>.m3u8?start=&end=` | the rewind playlist: HLS over the recorded fragments from `start`, growing while the stream is recorded (see `estuary_actors::dvr::rewind`) |
//! | `/dvr/files/<path>` | a recording file as written (path as listed by the recordings API) |
//!
//! An MP4 or playlist URL whose times move (no `end`, `end=now`; a playlist without `start` or
//! with `start=now`) is redirected (302) to one with fixed times, so the URL a player reads
//! ranges or reloads of always names the same bytes.
//!
//! The MP4 and the files support `HEAD`, `Range: bytes=...` (one range; 206 with exactly
//! those bytes, 416 past the end), `If-Range`, and `ETag`/`If-None-Match`. The MP4 is never assembled in memory: its header is
//! built from the index, and media bytes are read from the segment files by offset as the
//! response is written.

use crate::AppState;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use bytes::Bytes;
use estuary_actors::access::auth::Action;
use estuary_actors::dvr::playback::{self, PlaybackError};
use estuary_actors::StreamKey;
use estuary_protocols::container::mp4::Piece;
use estuary_protocols::http::{parse_range, RangeRequest};
use estuary_storage::layout::{parts, Layout, Part};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

const READ_CHUNK: u64 = 256 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dvr/files/{tail:.*}", web::get().to(download))
        .route("/dvr/files/{tail:.*}", web::head().to(download))
        .route("/dvr/{app}/{file}", web::get().to(range))
        .route("/dvr/{app}/{file}", web::head().to(range));
}

fn body_stream(layout: Arc<Layout>, from: u64, to: u64) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let parts = parts(&layout, from, to);
    let state = (parts.into_iter(), None::<(u32, tokio::fs::File, u64, u64)>, layout);
    futures_util::stream::unfold(state, |(mut parts, mut current, layout)| async move {
        loop {
            if let Some((source, mut file, offset, remaining)) = current.take() {
                if remaining == 0 {
                    continue;
                }
                let n = remaining.min(READ_CHUNK);
                let mut buf = vec![0u8; n as usize];
                if let Err(e) = file.read_exact(&mut buf).await {
                    tracing::warn!(file = %layout.files[source as usize].display(), offset, error = %e, "DVR file read failed mid-response");
                    return Some((Err(e), (parts, None, layout)));
                }
                current = Some((source, file, offset + n, remaining - n));
                return Some((Ok(Bytes::from(buf)), (parts, current, layout)));
            }
            match parts.next()? {
                Part::Memory(bytes) => return Some((Ok(bytes), (parts, None, layout))),
                Part::File { source, offset, len } => {
                    let path = &layout.files[source as usize];
                    let opened = async {
                        let mut file = tokio::fs::File::open(path).await?;
                        file.seek(std::io::SeekFrom::Start(offset)).await?;
                        Ok::<_, std::io::Error>(file)
                    };
                    match opened.await {
                        Ok(file) => current = Some((source, file, offset, len)),
                        Err(e) => {
                            tracing::warn!(file = %path.display(), error = %e, "DVR file unavailable mid-response");
                            return Some((Err(e), (parts, None, layout)));
                        }
                    }
                }
            }
        }
    })
}

fn respond(req: &HttpRequest, layout: Layout, etag: &str, content_type: &str, extra: &[(&str, String)]) -> HttpResponse {
    let cors = (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    if req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
        return HttpResponse::NotModified().insert_header((header::ETAG, etag)).insert_header(cors).finish();
    }
    let len = layout.len;
    let head = req.method() == actix_web::http::Method::HEAD;
    // A range is only served of the same representation: `If-Range` with another validator
    // gets the whole body.
    let range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| req.headers().get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() == etag));
    let (mut builder, from, to) = match parse_range(range, len) {
        RangeRequest::Whole => (HttpResponse::Ok(), 0, len),
        RangeRequest::Part(from, to) => {
            let mut b = HttpResponse::PartialContent();
            b.insert_header((header::CONTENT_RANGE, format!("bytes {}-{}/{}", from, to - 1, len)));
            (b, from, to)
        }
        RangeRequest::Unsatisfiable => {
            return HttpResponse::RangeNotSatisfiable().insert_header((header::CONTENT_RANGE, format!("bytes */{len}"))).insert_header(cors).body(format!("range not satisfiable: the body has {len} bytes\n"));
        }
    };
    builder
        .content_type(content_type.to_string())
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::ETAG, etag.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(cors);
    for (k, v) in extra {
        builder.insert_header((*k, v.clone()));
    }
    let stream = body_stream(Arc::new(layout), from, if head { from } else { to });
    builder.no_chunking(to - from).streaming(stream)
}

fn bad(status: actix_web::http::StatusCode, text: String) -> HttpResponse {
    HttpResponse::build(status).insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).body(text + "\n")
}

/// A range request's stream, query and times, checked (names, times, play rules).
struct DvrQuery {
    key: StreamKey,
    /// The query without the times, made safe to repeat in URLs (a token, say).
    query: String,
    start: Option<i64>,
    end: Option<i64>,
    /// `start` was `now` (a new instant on every request).
    start_now: bool,
    /// `end` was left out or `now`.
    end_open: bool,
}

/// `text` with every byte outside RFC 3986's unreserved set and `keep` percent-encoded.
fn escape(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn check_range(state: &AppState, req: &HttpRequest, app: &str, stream: &str) -> Result<DvrQuery, HttpResponse> {
    use actix_web::http::StatusCode;
    if let Err(reason) = estuary_protocols::naming::check_app(app).and_then(|()| estuary_protocols::naming::check_stream(stream)) {
        return Err(bad(StatusCode::BAD_REQUEST, format!("invalid app or stream name: {reason}")));
    }
    let params = estuary_protocols::rtmp::message::parse_query(req.query_string());
    let raw = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string());
    let time = |name: &str| raw(name).map(|v| estuary_actors::dvr::parse_time(&v)).transpose();
    let (start, end) = match (time("start"), time("end")) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) => return Err(bad(StatusCode::BAD_REQUEST, format!("start: {e}"))),
        (_, Err(e)) => return Err(bad(StatusCode::BAD_REQUEST, format!("end: {e}"))),
    };
    if let (Some(start), Some(end)) = (start, end) {
        if end <= start {
            return Err(bad(StatusCode::BAD_REQUEST, format!("end ({end}) must be after start ({start})")));
        }
    }
    let key = StreamKey::new(app, stream);
    let ip = req.peer_addr().map(|a| a.ip());
    let request = estuary_actors::access::Request { action: Action::Play, client: 0, ip, vhost: &key.vhost, app: &key.app, stream: &key.stream, params: &params };
    if let Err(reason) = state.node.access.check_rules(&request) {
        return Err(bad(StatusCode::FORBIDDEN, reason.to_string()));
    }
    let query = params.iter().filter(|(k, _)| k != "start" && k != "end").map(|(k, v)| format!("{}={}", escape(k, b""), escape(v, b""))).collect::<Vec<_>>().join("&");
    Ok(DvrQuery { key, query, start, end, start_now: raw("start").as_deref() == Some("now"), end_open: raw("end").is_none_or(|v| v == "now") })
}

/// A redirect to the same DVR resource with fixed times.
fn redirect(request: &DvrQuery, extension: &str, start: Option<i64>, end: Option<i64>) -> HttpResponse {
    let mut params: Vec<String> = Vec::new();
    if let Some(start) = start {
        params.push(format!("start={start}"));
    }
    if let Some(end) = end {
        params.push(format!("end={end}"));
    }
    if !request.query.is_empty() {
        params.push(request.query.clone());
    }
    let location = format!("/dvr/{}/{}.{extension}?{}", escape(&request.key.app, b""), escape(&request.key.stream, b""), params.join("&"));
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .finish()
}

fn playback_error(e: PlaybackError) -> HttpResponse {
    use actix_web::http::StatusCode;
    match e {
        e @ (PlaybackError::UnknownStream(_) | PlaybackError::NothingInRange { .. }) => bad(StatusCode::NOT_FOUND, e.to_string()),
        e @ PlaybackError::NotMp4 => bad(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
        e @ PlaybackError::Storage(_) => bad(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn range(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let (app, file) = path.into_inner();
    if let Some(stream) = file.strip_suffix(".m3u8") {
        return match check_range(&state, &req, &app, stream) {
            Ok(request) => rewind(&state, request).await,
            Err(response) => response,
        };
    }
    let Some(stream) = file.strip_suffix(".mp4") else {
        return bad(StatusCode::NOT_FOUND, format!("{file}: DVR ranges are served as <stream>.mp4, rewind playlists as <stream>.m3u8"));
    };
    let request = match check_range(&state, &req, &app, stream) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let (key, start, end) = (&request.key, request.start.unwrap_or(i64::MIN / 4), if request.end_open { i64::MAX / 4 } else { request.end.unwrap_or(i64::MAX / 4) });
    let open = match state.node.dvr.open_recordings(key).await {
        Ok(open) => open,
        Err(e) => return bad(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let plan = match playback::plan(&state.storage, &state.dvr.dir, key, start, end, &open).await {
        Ok(plan) => plan,
        Err(e) => return playback_error(e),
    };
    if request.end_open {
        // An open end is a moving target (the recording grows): name the current end, so the
        // URL a player reads ranges of is one fixed MP4.
        let current_end = plan.recordings.last().map(|r| r.end_ms).unwrap_or(start);
        return redirect(&request, "mp4", request.start, Some(current_end));
    }
    let mut extra = vec![("X-Estuary-Duration-Ms", plan.progressive.duration_ms.to_string()), ("X-Estuary-Segments", plan.recordings.len().to_string())];
    if let Some(cut) = plan.cut_at_ms {
        extra.push(("X-Estuary-Cut-At", cut.to_string()));
    }
    let layout = Layout::new(plan.progressive.header, plan.progressive.pieces, plan.files);
    respond(&req, layout, &plan.etag, "video/mp4", &extra)
}

/// Length of an MP4 file's init segment (`ftyp` + `moov`), read from its box headers.
async fn init_len(path: &std::path::Path) -> std::io::Result<u64> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut at = 0u64;
    for expected in [b"ftyp", b"moov"] {
        let mut header = [0u8; 8];
        file.seek(std::io::SeekFrom::Start(at)).await?;
        file.read_exact(&mut header).await?;
        let size = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as u64;
        if &header[4..8] != expected || size < 8 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("expected a {} box at byte {at}", String::from_utf8_lossy(expected))));
        }
        at += size;
    }
    Ok(at)
}

/// The rewind playlist (see [`estuary_actors::dvr::rewind`]).
async fn rewind(state: &AppState, request: DvrQuery) -> HttpResponse {
    use actix_web::http::StatusCode;
    use estuary_actors::dvr::rewind;
    let key = &request.key;
    let open = match state.node.dvr.open_recordings(key).await {
        Ok(open) => open,
        Err(e) => return bad(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let recordings = match playback::playable(&state.storage, key, &open).await {
        Ok(list) => list,
        Err(e) => return playback_error(e),
    };
    // A playlist's first segments must not change between reloads: `start` is fixed first.
    if request.start.is_none() || request.start_now {
        let start = if request.start_now { request.start } else { recordings.iter().map(|p| p.recording.start_ms).min() };
        return redirect(&request, "m3u8", start, if request.end_open { None } else { request.end });
    }
    let start = request.start.unwrap_or(0);
    let end = if request.end_open { i64::MAX / 4 } else { request.end.unwrap_or(i64::MAX / 4) };
    let selected: Vec<_> = recordings.into_iter().filter(|p| p.recording.format == "mp4" && p.recording.end_ms > start && p.recording.start_ms < end).collect();
    if selected.is_empty() {
        return playback_error(PlaybackError::NothingInRange { stream: key.to_string(), start_ms: start, end_ms: end });
    }
    let mut loaded = Vec::new();
    for playable in selected {
        let samples = match playback::samples_of(&state.storage, &playable).await {
            Ok(Some(samples)) => samples,
            Ok(None) => continue,
            Err(e) => return playback_error(e),
        };
        let recording = playable.recording;
        let init = match init_len(&state.dvr.dir.join(&recording.path)).await {
            Ok(len) => len,
            Err(e) => {
                tracing::warn!(stream = %key, file = %recording.path, error = %e, "recording left out of the rewind playlist: its init segment cannot be read");
                continue;
            }
        };
        let in_progress = recording.state == estuary_storage::RecordingState::Recording;
        loaded.push((recording, samples, init, in_progress));
    }
    let sources: Vec<rewind::Source> = loaded.iter().map(|(recording, samples, init_len, in_progress)| rewind::Source { recording, samples, init_len: *init_len, in_progress: *in_progress }).collect();
    // Open while the stream is recorded and the range reaches past what is recorded.
    let recorded_end = loaded.iter().map(|(r, ..)| r.end_ms).max().unwrap_or(start);
    let live = state.node.dvr.writer_of(key).is_some() && end > recorded_end;
    let query = if request.query.is_empty() { String::new() } else { format!("?{}", request.query) };
    let text = rewind::playlist(&sources, start, end, live, |r| format!("../files/{}{query}", escape(&r.path, b"/")));
    if !text.contains("#EXTINF") && !live {
        return bad(StatusCode::NOT_FOUND, format!("no recorded fragments of {key} from {start}"));
    }
    HttpResponse::Ok()
        .content_type("application/vnd.apple.mpegurl")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(text)
}

async fn download(state: web::Data<AppState>, req: HttpRequest, tail: web::Path<String>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let tail = tail.into_inner();
    let parts: Vec<&str> = tail.split('/').collect();
    if tail.is_empty() || tail.len() > 1000 || parts.iter().any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\\') || p.chars().any(|c| c.is_control())) {
        return bad(StatusCode::BAD_REQUEST, format!("{tail:?} is not a recording path"));
    }
    // Only indexed recordings are served, and as the stream they belong to: the same play
    // rules (CIDR, token) as the range URL, since file names are easy to guess.
    let recordings = match state.storage.ask(estuary_actors::messages::ListRecordings { key: None }).await {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => return bad(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => return bad(StatusCode::SERVICE_UNAVAILABLE, format!("storage unavailable: {e}")),
    };
    let Some(recording) = recordings.into_iter().find(|r| r.path == tail) else {
        return bad(StatusCode::NOT_FOUND, format!("no recording file {tail}"));
    };
    let params = estuary_protocols::rtmp::message::parse_query(req.query_string());
    let key = &recording.key;
    let request = estuary_actors::access::Request { action: Action::Play, client: 0, ip: req.peer_addr().map(|a| a.ip()), vhost: &key.vhost, app: &key.app, stream: &key.stream, params: &params };
    if let Err(reason) = state.node.access.check_rules(&request) {
        return bad(StatusCode::FORBIDDEN, reason.to_string());
    }
    let path = state.dvr.dir.join(&tail);
    let Ok(meta) = tokio::fs::metadata(&path).await else {
        return bad(StatusCode::NOT_FOUND, format!("no recording file {tail}"));
    };
    if !meta.is_file() {
        return bad(StatusCode::NOT_FOUND, format!("no recording file {tail}"));
    }
    let len = meta.len();
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_millis()).unwrap_or(0);
    let etag = format!("\"{len:x}-{modified:x}\"");
    let content_type = if tail.ends_with(".flv") { "video/x-flv" } else { "video/mp4" };
    let pieces = if len > 0 { vec![Piece { source: 0, offset: 0, len: len.min(u32::MAX as u64) as u32 }] } else { Vec::new() };
    // Files above 4 GiB are described in 4 GiB pieces.
    let pieces = if len > u32::MAX as u64 {
        let mut v = Vec::new();
        let mut at = 0;
        while at < len {
            let n = (len - at).min(u32::MAX as u64);
            v.push(Piece { source: 0, offset: at, len: n as u32 });
            at += n;
        }
        v
    } else {
        pieces
    };
    respond(&req, Layout::new(Bytes::new(), pieces, vec![path]), &etag, content_type, &[])
}
