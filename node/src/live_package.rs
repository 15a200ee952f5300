//! HLS and DASH on demand, from each stream's live package in memory (see
//! `estuary_actors::package`):
//!
//! | URL | what |
//! |---|---|
//! | `/<app>/<stream>.m3u8` | LL-HLS media playlist; `_HLS_msn`/`_HLS_part` block until that part exists, `_HLS_skip=YES` gives a delta update |
//! | `/<app>/<stream>-init-<v>.mp4`, `-<n>.m4s`, `-<n>-p<i>.m4s` | initialization segment, whole segment, part |
//! | `/<app>/<stream>_vtt.m3u8`, `/<app>/<stream>-<n>.vtt` | the WebVTT caption rendition: its playlist (the complete segments of the media playlist) and the cues of segment `n`; `<stream>_master.m3u8` lists it as `EXT-X-MEDIA:TYPE=SUBTITLES` |
//! | `/<app>/<stream>.mpd` | DASH MPD (low-latency signalling) |
//! | `/<app>/<stream>-<video\|audio>-init-v<v>.mp4`, `-<video\|audio>-v<v>-t<t>.m4s` | DASH initialization segment and segment (`$Time$` under initialization segment `v`, so a republish that starts its clock again never reuses a name; the `v`/`t` letters keep DASH names apart from HLS names of streams whose names end in `-video-<n>`); a segment still being cut is sent chunk by chunk |
//!
//! The first playlist or MPD request of a live stream starts its package and waits for its
//! first two segments (one, when the second takes longer than three segment targets), up to
//! [`FIRST_SEGMENT_WAIT`]. Playlists are `no-cache` with an `ETag`;
//! segments and parts never change under their name and are cacheable, with `Range` support.
//! Playlists and MPDs of at least [`GZIP_MIN_BYTES`] go gzip-compressed to clients whose
//! `Accept-Encoding` takes it (compressed once per version of a shared playlist, with its own
//! `ETag` and `Vary: Accept-Encoding`); segments and parts, already compressed media, never are.
//!
//! Tracks: H.264 (`avc1`), H.265 (`hvc1`), AV1 (`av01`) and AAC (`mp4a`), Opus (`Opus`), each
//! with the codec string of its own configuration in the master playlist and the MPD.

use crate::AppState;
use actix_web::{http::header, HttpRequest, HttpResponse};
use bytes::Bytes;
use estuary_actors::package::{LivePackage, Rendered};
use estuary_actors::StreamKey;
use estuary_protocols::cmaf::{parse_file_name, Blocking, FileName, Package};
use estuary_protocols::http::{parse_range, RangeRequest};
use std::sync::Arc;
use std::time::Duration;

/// How long the first request of a package waits for its first segment.
pub const FIRST_SEGMENT_WAIT: Duration = Duration::from_secs(10);

/// Latency a DASH player is asked to aim at (`ServiceDescription`), ms.
const DASH_TARGET_LATENCY_MS: u64 = 2_500;

/// Whether HLS and DASH of `app` on `vhost` are served on demand (not from files).
pub fn on_demand(state: &AppState, vhost: &str, app: &str) -> (bool, bool) {
    let config = state.reloader.running();
    let own = config.vhosts.get(vhost);
    let hls = own.and_then(|v| v.hls.as_ref()).unwrap_or(&config.hls);
    let dash = own.and_then(|v| v.dash.as_ref()).unwrap_or(&config.dash);
    let applies = |enabled: bool, apps: &[String]| enabled && (apps.is_empty() || apps.iter().any(|a| a == app));
    (!hls.always && applies(hls.enabled, &hls.apps), !dash.always && applies(dash.enabled, &dash.apps))
}

fn text(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status).insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).content_type("text/plain; charset=utf-8").body(body)
}

/// The stream's package, started if need be; the first request waits for a segment.
async fn ensure(state: &AppState, key: &StreamKey) -> Result<Arc<LivePackage>, HttpResponse> {
    if let Some(directory) = &state.node.cluster {
        directory.touch(&key.db_key());
    }
    let running = state.node.packages.get(key).filter(|p| !p.read(|p| p.ended));
    let package = match running {
        Some(package) => package,
        None => {
            // A stream another origin owns is pulled here first (a cluster edge or origin).
            if state.node.cluster.is_some() {
                estuary_actors::cluster::pull::ensure(&state.node, &state.registry, key).await;
            }
            let addr = state.registry.send(estuary_actors::messages::FindStream { key: key.clone(), create: false }).await.ok().flatten();
            let started = match addr {
                Some(addr) => addr.send(estuary_actors::messages::StartPackage).await.ok().flatten(),
                None => None,
            };
            match started.or_else(|| state.node.packages.get(key)) {
                Some(package) => package,
                None => return Err(text(actix_web::http::StatusCode::NOT_FOUND, format!("stream {key} is not live\n"))),
            }
        }
    };
    package.touch();
    // Two segments if they come within three segment targets (hls.js, started in a playlist
    // of one segment, reloaded that segment's parts over and over and stalled); otherwise
    // one (a long GOP, or a publisher whose next keyframe does not come).
    let segment_ms = package.read(|p| p.settings().segment_ms).max(0) as u64;
    let two = Duration::from_millis(3 * segment_ms).min(FIRST_SEGMENT_WAIT);
    let listed = package.wait_for(|p| LivePackage::listable(p, 2), two).await || package.wait_for(|p| LivePackage::listable(p, 1), FIRST_SEGMENT_WAIT - two).await;
    if !listed {
        tracing::warn!(stream = %key, wait_s = FIRST_SEGMENT_WAIT.as_secs(), "no segment of the live package yet (no keyframe from the publisher?)");
        return Err(HttpResponse::ServiceUnavailable()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
            .insert_header((header::RETRY_AFTER, "2"))
            .body(format!("stream {key} has no segment yet (waiting {} s for a keyframe)\n", FIRST_SEGMENT_WAIT.as_secs())));
    }
    Ok(package)
}

/// Playlists and manifests shorter than this are sent as they are: gzip would save little.
const GZIP_MIN_BYTES: usize = 1024;

/// Whether an `Accept-Encoding` value takes gzip (RFC 9110 §12.5.3): a `gzip` (or `x-gzip`)
/// entry decides by its weight (`q=0` refuses); without one, a `*` entry does.
fn accepts_gzip_in(accept_encoding: &str) -> bool {
    let mut explicit = None;
    let mut any = None;
    for item in accept_encoding.split(',') {
        let mut fields = item.split(';').map(str::trim);
        let coding = fields.next().unwrap_or("");
        let weight = fields.find_map(|f| f.split_once('=').filter(|(name, _)| name.trim().eq_ignore_ascii_case("q")).map(|(_, q)| q.trim().parse::<f32>().unwrap_or(0.0))).unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            explicit = Some(explicit.unwrap_or(false) || weight > 0.0);
        } else if coding == "*" {
            any = Some(weight > 0.0);
        }
    }
    explicit.or(any).unwrap_or(false)
}

/// What a playlist or manifest request gets: 304 when the client has this version, else the
/// text, gzip-compressed when the client takes it and the text is long enough. Each encoding
/// has its own ETag, as RFC 9110 asks of strong validators.
pub struct ManifestReply {
    pub not_modified: bool,
    pub etag: String,
    pub gzip: bool,
    pub body: Bytes,
}

/// The reply to a playlist or manifest request with these `Accept-Encoding` and
/// `If-None-Match` values (shared by the router's answer and the front's, see `front`).
pub fn manifest_reply(accept_encoding: &str, if_none_match: Option<&str>, rendered: &Rendered) -> ManifestReply {
    let gzip = rendered.text.len() >= GZIP_MIN_BYTES && accepts_gzip_in(accept_encoding);
    let etag = if gzip { format!("{}-gzip\"", rendered.etag.trim_end_matches('"')) } else { rendered.etag.to_string() };
    let not_modified = if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let body = match (not_modified, gzip) {
        (true, _) => Bytes::new(),
        (false, true) => rendered.gzipped(),
        // The shared text, without a copy.
        (false, false) => Bytes::from_owner(ArcText(rendered.text.clone())),
    };
    ManifestReply { not_modified, etag, gzip, body }
}

/// A playlist or manifest response: `no-cache` with an ETag (see [`manifest_reply`]).
fn manifest_response(req: &HttpRequest, rendered: &Rendered, content_type: &'static str) -> HttpResponse {
    let accept_encoding = req.headers().get_all(header::ACCEPT_ENCODING).filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let reply = manifest_reply(&accept_encoding, req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()), rendered);
    let mut response = if reply.not_modified { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, reply.etag))
        .insert_header((header::VARY, "Accept-Encoding"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((header::ACCESS_CONTROL_EXPOSE_HEADERS, "ETag, Date"));
    if reply.not_modified {
        return response.finish();
    }
    response.content_type(content_type);
    if reply.gzip {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    response.body(reply.body)
}

fn query(token: Option<&str>) -> Option<String> {
    token.map(|token| format!("token={}", token.replace(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'), "")))
}

/// `/<app>/<stream>.m3u8`: the LL-HLS playlist, after blocking as the query asks.
pub async fn playlist(state: &AppState, req: &HttpRequest, key: &StreamKey, params: &[(String, String)], token: Option<&str>) -> HttpResponse {
    match playlist_text(state, key, Blocking::parse(params), token).await {
        Ok(rendered) => manifest_response(req, &rendered, "application/vnd.apple.mpegurl"),
        Err(response) => response,
    }
}

/// The LL-HLS playlist of `key` once it holds what the query asks for (`blocking`, or the
/// reason it is no query), or the error answer.
pub async fn playlist_text(state: &AppState, key: &StreamKey, blocking: Result<Blocking, String>, token: Option<&str>) -> Result<Arc<Rendered>, HttpResponse> {
    let blocking = match blocking {
        Ok(blocking) => blocking,
        Err(reason) => return Err(text(actix_web::http::StatusCode::BAD_REQUEST, format!("{reason}\n"))),
    };
    let package = ensure(state, key).await?;
    if let Some(msn) = blocking.msn {
        if let Some(refused) = too_far_ahead(key, &package, msn) {
            return Err(refused);
        }
        let part = blocking.part;
        if !package.wait_for(|p| p.has(msn, part), block_time(&package)).await {
            return Err(part_late(key, msn, part));
        }
    }
    Ok(rendered_playlist(state, key, &package, blocking.skip, token))
}

/// RFC 8216bis 6.2.5.2: a blocking request more than two segments ahead is refused (400).
pub fn too_far_ahead(key: &StreamKey, package: &LivePackage, msn: u64) -> Option<HttpResponse> {
    let newest = package.read(|p| p.next_sequence()).saturating_sub(1);
    (msn > newest + 2).then(|| text(actix_web::http::StatusCode::BAD_REQUEST, format!("_HLS_msn={msn} is more than two segments past the newest ({newest}) of {key}\n")))
}

/// How long a blocking playlist request waits: three target durations, after which the RFC
/// lets a server give up with 503 ([`part_late`]).
pub fn block_time(package: &LivePackage) -> Duration {
    Duration::from_secs(3 * package.read(|p| p.target_duration()))
}

/// The answer to a blocking playlist request whose part did not come in [`block_time`].
pub fn part_late(key: &StreamKey, msn: u64, part: Option<usize>) -> HttpResponse {
    HttpResponse::ServiceUnavailable().insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).body(format!("segment {msn} part {part:?} of {key} did not arrive in time\n"))
}

/// The playlist of `package` as it is now, with the viewer's token on its URIs.
pub fn rendered_playlist(state: &AppState, key: &StreamKey, package: &LivePackage, skip: bool, token: Option<&str>) -> Arc<Rendered> {
    let rendered = package.hls_playlist(skip, &rendition_reports(state, key));
    match query(token) {
        Some(query) => Arc::new(Rendered::once(estuary_protocols::manifest::hls::with_query_on_uris(&rendered.text, &query))),
        None => rendered,
    }
}

/// `/<app>/<stream>_vtt.m3u8`: the playlist of the stream's WebVTT caption rendition.
pub async fn subtitles_playlist(state: &AppState, req: &HttpRequest, key: &StreamKey, token: Option<&str>) -> HttpResponse {
    match subtitles_text(state, key, token).await {
        Ok(rendered) => manifest_response(req, &rendered, "application/vnd.apple.mpegurl"),
        Err(response) => response,
    }
}

/// The caption rendition's playlist of `key`, or the error answer.
pub async fn subtitles_text(state: &AppState, key: &StreamKey, token: Option<&str>) -> Result<Rendered, HttpResponse> {
    let package = ensure(state, key).await?;
    let text = package.read(|p| p.render_vtt_playlist(&key.stream));
    let text = match query(token) {
        Some(query) => estuary_protocols::manifest::hls::with_query_on_uris(&text, &query),
        None => text,
    };
    Ok(Rendered::once(text))
}

/// A rendered playlist shared by every response that sends it.
struct ArcText(Arc<str>);

impl AsRef<[u8]> for ArcText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// `EXT-X-RENDITION-REPORT`s for a stream of a transcoding ladder: the ladder's other
/// renditions (the source and its transcodes) that have a package here, with their newest part.
fn rendition_reports(state: &AppState, key: &StreamKey) -> Vec<(String, u64, Option<usize>)> {
    let me = format!("{}/{}", key.app, key.stream);
    let ladders = estuary_actors::transcode::list(&state.node);
    if ladders.is_empty() {
        return Vec::new();
    }
    let source = ladders.iter().find(|t| t.output == me).map(|t| t.source.clone()).unwrap_or_else(|| me.clone());
    let mut members = vec![source.clone()];
    members.extend(ladders.iter().filter(|t| t.source == source && t.state != "stopped").map(|t| t.output.clone()));
    members
        .into_iter()
        .filter(|member| *member != me)
        .filter_map(|member| {
            let (app, stream) = member.split_once('/')?;
            if app != key.app {
                return None;
            }
            let mut other = StreamKey::new(app, stream);
            other.vhost = key.vhost.clone();
            let (msn, part) = state.node.packages.get(&other)?.read(|p| p.last_part())?;
            Some((format!("{stream}.m3u8"), msn, Some(part)))
        })
        .collect()
}

/// `/<app>/<stream>.mpd`: the DASH MPD.
pub async fn manifest(state: &AppState, req: &HttpRequest, key: &StreamKey, token: Option<&str>) -> HttpResponse {
    let package = match ensure(state, key).await {
        Ok(package) => package,
        Err(response) => return response,
    };
    // After new codec parameters the MPD lists only segments of the new initialization
    // segment: until the first of them is complete it would list nothing, so the request waits
    // for it (up to three segment targets), as the first request of a package does.
    let listed = |p: &Package| p.ended || p.segments.iter().any(|s| s.complete && s.init == p.init && !s.parts.is_empty());
    if !package.read(listed) {
        let wait = package.read(|p| Duration::from_millis(3 * p.settings().segment_ms as u64));
        package.wait_for(listed, wait).await;
    }
    let body = package.read(|p| p.render_mpd(&key.stream, estuary_actors::unix_ms(), DASH_TARGET_LATENCY_MS));
    let body = match query(token) {
        Some(query) => estuary_protocols::manifest::dash::with_query_on_templates(&body, &query),
        None => body,
    };
    manifest_response(req, &Rendered::once(body), "application/dash+xml")
}

/// The stream a media file name belongs to, when that stream has a package here.
pub fn owner(state: &AppState, vhost: &str, app: &str, stem: &str, extension: &str, hls: bool, dash: bool) -> Option<(String, FileName)> {
    parse_file_name(stem, extension).into_iter().filter(|(_, name)| if matches!(name, FileName::DashInit(..) | FileName::DashSegment(..)) { dash } else { hls }).find(|(stream, _)| {
        let mut key = StreamKey::new(app, stream);
        key.vhost = vhost.to_string();
        state.node.packages.get(&key).is_some()
    })
}

/// What a media request gets from a package.
pub enum Media {
    Bytes(Bytes),
    /// A DASH segment still being cut: track, segment number, chunk by chunk.
    Growing(usize, u64),
}

/// How long a request for the file a package makes next is held (a preload hint, or a
/// low-latency DASH player asking ahead): a segment target and a part.
pub fn hold_time(package: &LivePackage) -> Duration {
    package.read(|p| Duration::from_millis((p.settings().segment_ms + p.settings().part_ms) as u64))
}

/// The answer to a request for a media file the package does not have.
pub fn no_such_segment(app: &str, file: &str) -> HttpResponse {
    HttpResponse::NotFound().insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).body(format!("no such segment {app}/{file}\n"))
}

/// The file `name` of the package, if it has it now.
pub fn lookup(p: &Package, name: &FileName) -> Option<Media> {
    match name {
        FileName::HlsInit(v) => p.hls_init(*v).map(Media::Bytes),
        FileName::Subtitles(n) => p.render_vtt(*n).map(|text| Media::Bytes(Bytes::from(text))),
        FileName::HlsSegment(n) => p.segment(*n).filter(|s| s.complete).map(|s| Media::Bytes(s.muxed())),
        FileName::HlsPart(n, i) => p.segment(*n).and_then(|s| s.parts.get(*i)).map(|part| Media::Bytes(part.muxed.clone())),
        FileName::DashInit(rep, v) if rep == estuary_protocols::cmaf::TEXT => p.dash_text_init(*v).map(Media::Bytes),
        FileName::DashSegment(rep, v, t) if rep == estuary_protocols::cmaf::TEXT => p.dash_text_segment(*v, *t).map(Media::Bytes),
        FileName::DashInit(rep, v) => p.dash_init(rep, *v).map(Media::Bytes),
        FileName::DashSegment(rep, v, t) => {
            let (index, n) = p.dash_segment(rep, *v, *t)?;
            let segment = p.segment(n)?;
            Some(if segment.complete { Media::Bytes(segment.track(index)) } else { Media::Growing(index, n) })
        }
    }
}

/// True when `name` is what the package will make next (the preload hint, or the DASH
/// segment after the newest): worth waiting for.
pub fn coming(p: &Package, name: &FileName) -> bool {
    if p.ended {
        return false;
    }
    match name {
        // A segment already complete gets no more parts.
        FileName::HlsPart(n, _) if p.segment(*n).is_some_and(|s| s.complete) => false,
        FileName::HlsPart(n, i) => match p.last() {
            Some((last, Some(parts))) if *n == last => *i <= parts + 1,
            _ => *n == p.next_sequence() && *i <= 1,
        },
        FileName::DashSegment(rep, v, t) => *v == p.init && p.tracks.iter().position(|tr| estuary_protocols::cmaf::representation(tr) == rep).and_then(|index| p.dash_next_time(index)) == Some(*t),
        _ => false,
    }
}

/// A segment, part or initialization segment of a package.
pub async fn media(state: &AppState, req: &HttpRequest, key: StreamKey, name: FileName, extension: &str) -> Option<HttpResponse> {
    let content_type = media_type(extension);
    match find_media(state, &key, &name).await? {
        (Media::Bytes(bytes), _) => Some(bytes_response(req, bytes, content_type)),
        (Media::Growing(index, n), package) => Some(growing(package, index, n, content_type)),
    }
}

/// The content type of a package's media file.
pub fn media_type(extension: &str) -> &'static str {
    match extension {
        "mp4" => "video/mp4",
        "vtt" => "text/vtt; charset=utf-8",
        _ => "video/iso.segment",
    }
}

/// A segment, part or initialization segment of a package, held until it exists when it is
/// the next one the package makes.
pub async fn find_media(state: &AppState, key: &StreamKey, name: &FileName) -> Option<(Media, Arc<LivePackage>)> {
    let package = state.node.packages.get(key)?;
    package.touch();
    let mut found = package.read(|p| lookup(p, name));
    if found.is_none() && package.read(|p| coming(p, name)) {
        package.wait_for(|p| lookup(p, name).is_some() || p.ended, hold_time(&package)).await;
        found = package.read(|p| lookup(p, name));
    }
    found.map(|media| (media, package))
}

fn bytes_response(req: &HttpRequest, bytes: Bytes, content_type: &'static str) -> HttpResponse {
    let len = bytes.len() as u64;
    let range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok());
    let mut response = match parse_range(range, len) {
        RangeRequest::Whole => HttpResponse::Ok(),
        RangeRequest::Part(start, end) => {
            let mut response = HttpResponse::PartialContent();
            response.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", end - 1)));
            return response
                .content_type(content_type)
                .insert_header((header::CACHE_CONTROL, "max-age=60, immutable"))
                .insert_header((header::ACCEPT_RANGES, "bytes"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
                .body(bytes.slice(start as usize..end as usize));
        }
        RangeRequest::Unsatisfiable => {
            return HttpResponse::RangeNotSatisfiable().insert_header((header::CONTENT_RANGE, format!("bytes */{len}"))).insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).finish();
        }
    };
    response
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "max-age=60, immutable"))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(bytes)
}

/// A DASH segment still being cut, sent chunk by chunk (HTTP chunked transfer) as its parts
/// arrive; the response ends with the segment.
fn growing(package: Arc<LivePackage>, index: usize, sequence: u64, content_type: &'static str) -> HttpResponse {
    let stream = futures_util::stream::unfold((package, 0usize, false), move |(package, sent, done)| async move {
        if done {
            return None;
        }
        let ready = |p: &Package| p.segment(sequence).is_none_or(|s| s.complete || s.parts.len() > sent);
        let wait = package.read(|p| Duration::from_millis((p.settings().segment_ms * 2) as u64));
        if !package.wait_for(ready, wait).await {
            // Cut short: the connection is aborted, so the player does not take what it got
            // for a whole segment.
            return Some((Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("segment {sequence} stopped growing"))), (package, sent, true)));
        }
        let (chunk, now_sent, complete) = package.read(|p| match p.segment(sequence) {
            Some(segment) => {
                let chunk: Vec<Bytes> = segment.parts[sent.min(segment.parts.len())..].iter().filter_map(|part| part.tracks.get(index).cloned()).collect();
                (chunk, segment.parts.len(), segment.complete)
            }
            None => (Vec::new(), usize::MAX, true),
        });
        if now_sent == usize::MAX {
            // The segment left the window (or the package was replaced) before it was whole.
            return Some((Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("segment {sequence} is gone"))), (package, sent, true)));
        }
        let mut out = bytes::BytesMut::new();
        for piece in chunk {
            out.extend_from_slice(&piece);
        }
        Some((Ok::<Bytes, std::io::Error>(out.freeze()), (package, now_sent, complete)))
    });
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .streaming(stream)
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip_in;

    #[test]
    fn accept_encoding_weights_decide_gzip() {
        for (header, gzip) in [
            ("gzip, deflate, br", true),
            ("br;q=1.0, gzip;q=0.8, *;q=0.1", true),
            ("x-gzip", true),
            ("GZIP", true),
            ("*", true),
            ("", false),
            ("br, deflate", false),
            ("gzip;q=0", false),
            ("gzip; Q=0.000", false),
            // An explicit entry overrides the wildcard, either way round.
            ("gzip;q=0, *", false),
            ("*;q=0, gzip", true),
            ("identity, *;q=0", false),
        ] {
            assert_eq!(accepts_gzip_in(header), gzip, "Accept-Encoding: {header}");
        }
    }
}
