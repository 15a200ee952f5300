//! DVR playback on the HTTP port:
//!
//! | URL | what |
//! |---|---|
//! | `/dvr/<app>/<stream>.mp4?start=&end=` | one progressive MP4 over the range (RFC 3339 or Unix ms; either may be left out) |
//! | `/dvr/files/<path>` | a recording file as written (path as listed by the recordings API) |
//!
//! Both support `HEAD`, `Range: bytes=...` (one range; 206 with exactly those bytes, 416 past
//! the end) and `ETag`/`If-None-Match`. The MP4 is never assembled in memory: its header is
//! built from the index, and media bytes are read from the segment files by offset as the
//! response is written.

use crate::AppState;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use bytes::Bytes;
use estuary_actors::auth::Action;
use estuary_actors::dvr::playback::{self, PlaybackError};
use estuary_actors::StreamKey;
use estuary_protocols::mp4::Piece;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

const READ_CHUNK: u64 = 256 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dvr/files/{tail:.*}", web::get().to(download))
        .route("/dvr/files/{tail:.*}", web::head().to(download))
        .route("/dvr/{app}/{file}", web::get().to(range_mp4))
        .route("/dvr/{app}/{file}", web::head().to(range_mp4));
}

/// A response body described as memory plus file slices.
struct Layout {
    header: Bytes,
    pieces: Vec<Piece>,
    /// Start of each piece in the whole body.
    starts: Vec<u64>,
    files: Vec<PathBuf>,
    len: u64,
}

impl Layout {
    fn new(header: Bytes, pieces: Vec<Piece>, files: Vec<PathBuf>) -> Layout {
        let mut starts = Vec::with_capacity(pieces.len());
        let mut at = header.len() as u64;
        for piece in &pieces {
            starts.push(at);
            at += piece.len as u64;
        }
        Layout { header, pieces, starts, files, len: at }
    }
}

enum Part {
    Memory(Bytes),
    File { source: u32, offset: u64, len: u64 },
}

/// The parts covering `[from, to)` of the body, with adjacent slices of one file merged.
fn parts(layout: &Layout, from: u64, to: u64) -> Vec<Part> {
    let mut out = Vec::new();
    let header_len = layout.header.len() as u64;
    if from < header_len {
        out.push(Part::Memory(layout.header.slice(from as usize..to.min(header_len) as usize)));
    }
    let first = layout.starts.partition_point(|&s| s <= from).saturating_sub(1);
    for (piece, &start) in layout.pieces.iter().zip(&layout.starts).skip(first) {
        if start >= to {
            break;
        }
        let end = start + piece.len as u64;
        if end <= from {
            continue;
        }
        let a = from.max(start) - start;
        let b = to.min(end) - start;
        let (offset, len) = (piece.offset + a, b - a);
        match out.last_mut() {
            Some(Part::File { source, offset: o, len: l }) if *source == piece.source && *o + *l == offset => *l += len,
            _ => out.push(Part::File { source: piece.source, offset, len }),
        }
    }
    out
}

enum RangeRequest {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(req: &HttpRequest, len: u64) -> RangeRequest {
    let Some(value) = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()) else { return RangeRequest::Whole };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeRequest::Whole };
    if spec.contains(',') {
        // Several ranges: answered with the whole body (allowed by RFC 9110).
        return RangeRequest::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else { return RangeRequest::Whole };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, false) => b.parse::<u64>().ok().map(|n| (len.saturating_sub(n), len.saturating_sub(1))).filter(|_| len > 0),
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else { return RangeRequest::Whole };
            if start >= len {
                return RangeRequest::Unsatisfiable;
            }
            let end = if b.is_empty() { len - 1 } else {
                match b.parse::<u64>() {
                    Ok(end) if end >= start => end.min(len - 1),
                    // An invalid range is ignored (RFC 9110, 14.2).
                    _ => return RangeRequest::Whole,
                }
            };
            Some((start, end))
        }
        (true, true) => return RangeRequest::Whole,
    };
    match range {
        Some((s, e)) if s < len && s <= e => RangeRequest::Part(s, e + 1),
        _ => RangeRequest::Unsatisfiable,
    }
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
    let (mut builder, from, to) = match parse_range(req, len) {
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

async fn range_mp4(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let (app, file) = path.into_inner();
    let Some(stream) = file.strip_suffix(".mp4") else {
        return bad(StatusCode::NOT_FOUND, format!("{file}: DVR ranges are served as <stream>.mp4"));
    };
    let valid = |s: &str| !s.is_empty() && s.len() <= 200 && !s.contains("..") && s.chars().all(|c| !c.is_control() && c != '/' && c != '\\');
    if !valid(&app) || !valid(stream) {
        return bad(StatusCode::BAD_REQUEST, "invalid app or stream name".into());
    }
    let params = estuary_protocols::rtmp::message::parse_query(req.query_string());
    let time = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| estuary_actors::dvr::parse_time(v)).transpose();
    let (start, end) = match (time("start"), time("end")) {
        (Ok(s), Ok(e)) => (s.unwrap_or(i64::MIN / 4), e.unwrap_or(i64::MAX / 4)),
        (Err(e), _) => return bad(StatusCode::BAD_REQUEST, format!("start: {e}")),
        (_, Err(e)) => return bad(StatusCode::BAD_REQUEST, format!("end: {e}")),
    };
    if end <= start {
        return bad(StatusCode::BAD_REQUEST, format!("end ({end}) must be after start ({start})"));
    }
    let key = StreamKey::new(&app, stream);
    let ip = req.peer_addr().map(|a| a.ip());
    let request = estuary_actors::access::Request { action: Action::Play, client: 0, ip, vhost: &key.vhost, app: &key.app, stream: &key.stream, params: &params };
    if let Err(reason) = state.node.access.check_rules(&request) {
        return bad(StatusCode::FORBIDDEN, reason);
    }
    let plan = match playback::plan(&state.storage, &state.dvr.dir, &key, start, end).await {
        Ok(plan) => plan,
        Err(e @ (PlaybackError::UnknownStream(_) | PlaybackError::NothingInRange { .. })) => return bad(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ PlaybackError::NotMp4) => return bad(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
        Err(e @ PlaybackError::Storage(_)) => return bad(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let mut extra = vec![("X-Estuary-Duration-Ms", plan.progressive.duration_ms.to_string()), ("X-Estuary-Segments", plan.recordings.len().to_string())];
    if let Some(cut) = plan.cut_at_ms {
        extra.push(("X-Estuary-Cut-At", cut.to_string()));
    }
    let layout = Layout::new(plan.progressive.header, plan.progressive.pieces, plan.files);
    respond(&req, layout, &plan.etag, "video/mp4", &extra)
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
        Ok(Err(e)) => return bad(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => return bad(StatusCode::SERVICE_UNAVAILABLE, format!("storage unavailable: {e}")),
    };
    let Some(recording) = recordings.into_iter().find(|r| r.path == tail) else {
        return bad(StatusCode::NOT_FOUND, format!("no recording file {tail}"));
    };
    let params = estuary_protocols::rtmp::message::parse_query(req.query_string());
    let key = &recording.key;
    let request = estuary_actors::access::Request { action: Action::Play, client: 0, ip: req.peer_addr().map(|a| a.ip()), vhost: &key.vhost, app: &key.app, stream: &key.stream, params: &params };
    if let Err(reason) = state.node.access.check_rules(&request) {
        return bad(StatusCode::FORBIDDEN, reason);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        let pieces = vec![
            Piece { source: 0, offset: 100, len: 10 },
            Piece { source: 0, offset: 110, len: 5 },
            Piece { source: 1, offset: 0, len: 20 },
            Piece { source: 0, offset: 200, len: 10 },
        ];
        Layout::new(Bytes::from_static(b"HEADER"), pieces, vec![PathBuf::from("a"), PathBuf::from("b")])
    }

    fn describe(parts: &[Part]) -> Vec<String> {
        parts
            .iter()
            .map(|p| match p {
                Part::Memory(b) => format!("mem {}", String::from_utf8_lossy(b)),
                Part::File { source, offset, len } => format!("{source}@{offset}+{len}"),
            })
            .collect()
    }

    #[test]
    fn range_headers() {
        let req = |value: &str| actix_web::test::TestRequest::default().insert_header((header::RANGE, value)).to_http_request();
        let check = |value: &str, len: u64| match parse_range(&req(value), len) {
            RangeRequest::Whole => "whole".to_string(),
            RangeRequest::Part(a, b) => format!("{a}..{b}"),
            RangeRequest::Unsatisfiable => "416".to_string(),
        };
        assert_eq!(check("bytes=0-99", 1000), "0..100");
        assert_eq!(check("bytes=990-2000", 1000), "990..1000");
        assert_eq!(check("bytes=-10", 1000), "990..1000");
        assert_eq!(check("bytes=500-", 1000), "500..1000");
        assert_eq!(check("bytes=1000-", 1000), "416");
        assert_eq!(check("bytes=1010-1020", 1000), "416");
        assert_eq!(check("bytes=9-3", 1000), "whole");
        assert_eq!(check("bytes=0-1,5-6", 1000), "whole");
        assert_eq!(check("items=0-1", 1000), "whole");
    }

    #[test]
    fn ranges_map_to_exact_file_slices() {
        let l = layout();
        assert_eq!(l.len, 6 + 45);
        assert_eq!(describe(&parts(&l, 0, l.len)), vec!["mem HEADER", "0@100+15", "1@0+20", "0@200+10"]);
        assert_eq!(describe(&parts(&l, 3, 8)), vec!["mem DER", "0@100+2"]);
        assert_eq!(describe(&parts(&l, 20, 22)), vec!["0@114+1", "1@0+1"]);
        assert_eq!(describe(&parts(&l, 50, 51)), vec!["0@209+1"]);
        assert!(parts(&l, 51, 51).is_empty());
    }
}
