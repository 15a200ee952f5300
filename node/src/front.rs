//! The HTTP port's front: it accepts the connections itself, reads each request head, and
//! answers the requests an LL-HLS viewer repeats several times a second (the media playlist
//! with its blocking reload, parts, segments and initialization segments of a stream's live
//! package, and the master and caption playlists and `.vtt` cues a player starts with)
//! straight from the package's shared bytes: one `writev` of a small response head and the
//! part, with no per-request objects of the HTTP server. Any other request (the API,
//! the console, HTTP-FLV, DASH, a `Range`, a `HEAD`, a request with a body, an error the
//! front cannot judge) hands the connection, with the bytes already read, to actix-web for
//! the rest of its life, so everything else behaves exactly as it did.
//!
//! Why: an LL-HLS viewer makes about seven requests a second, and at 1,000 viewers the HTTP
//! server's per-request work (request and response objects, header maps, the body copied
//! into its write buffer) cost as much as the bytes themselves. actix-web cannot give a
//! connection away between two requests (it keeps reading it while a handler is pending),
//! so the choice is made before actix sees the connection.
//!
//! Timeouts are actix-web's defaults: a request head must arrive within 5 s of its first
//! byte (or of the connection), and a kept-alive connection idle for 5 s is closed; a
//! response the client takes no byte of for 10 s ends the connection.

use crate::AppState;
use actix_http::Protocol;
use actix_service::{fn_factory, fn_service, Service, ServiceFactory};
use actix_web::rt::net::TcpStream;
use bytes::{Buf, Bytes, BytesMut};
use estuary_actors::node::connections::{ConnectionGate, Permit, Refusal};
use estuary_actors::package::LivePackage;
use estuary_actors::StreamKey;
use estuary_protocols::cmaf::{Blocking, FileName};
use std::borrow::Cow;
use std::cell::Cell;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

mod batch;

/// How long a request head may take, from its first byte (or from the connection).
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a kept-alive connection may stay idle between requests.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// A response the client takes no byte of for this long ends the connection.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Request heads longer than this go to actix-web, which answers 431 (see
/// `http::MAX_HEADER_BYTES`).
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// A connection handed to actix-web: its socket, the bytes the front read of it and did not
/// answer (a request head, perhaps more), and what the connection gate said of it.
pub struct Handed {
    io: TcpStream,
    read: Bytes,
    admission: Cell<Option<Result<Permit, Refusal>>>,
}

impl Handed {
    /// For actix-web's `on_connect`: the gate's answer and, for an admitted connection, a
    /// second handle of its socket for the delivery engine (see `http::on_connect`).
    pub fn on_connect(&self, data: &mut actix_web::dev::Extensions) {
        let Some(admission) = self.admission.take() else { return };
        let admitted = admission.is_ok();
        data.insert(crate::http::Admission(admission));
        if admitted {
            crate::http::keep_live_socket(&self.io, data);
        }
    }
}

impl AsyncRead for Handed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Handed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The service of the HTTP port's listener, made on each server worker: the front, with
/// `http` (actix-web's HTTP service of the same app) for what it hands over.
/// With `answering` false (`http.front = false`) every connection is handed over at once;
/// `tick` is the worker loop's (`http.front_tick_ms`; `None`: each connection's requests are
/// answered as they come, by its own task).
pub fn service<F>(http: F, state: AppState, gate: Arc<ConnectionGate>, answering: bool, tick: Option<Duration>) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = (), InitError = ()>
where
    F: ServiceFactory<(Handed, Protocol, Option<SocketAddr>), Config = (), Response = ()> + 'static,
    F::Service: 'static,
    F::Error: std::fmt::Debug,
    F::InitError: std::fmt::Debug,
{
    fn_factory(move || {
        let made = http.new_service(());
        let (state, gate) = (state.clone(), gate.clone());
        async move {
            let http = Rc::new(made.await.map_err(|e| tracing::error!(error = ?e, "cannot start the HTTP service"))?);
            Ok::<_, ()>(fn_service(move |io: TcpStream| {
                let (http, state, gate) = (http.clone(), state.clone(), gate.clone());
                async move {
                    let Ok(peer) = io.peer_addr() else { return Ok(()) };
                    let admission = gate.admit(peer.ip(), "http");
                    let handed = match admission {
                        Ok(permit) if !answering => Some(Handed { io, read: Bytes::new(), admission: Cell::new(Some(Ok(permit))) }),
                        // A refused connection gets its 503 from actix-web at its first request.
                        Err(refusal) => Some(Handed { io, read: Bytes::new(), admission: Cell::new(Some(Err(refusal))) }),
                        Ok(permit) => front(io, peer, &state, tick).await.map(|(io, read)| Handed { io, read, admission: Cell::new(Some(Ok(permit))) }),
                    };
                    if let Some(handed) = handed {
                        if let Err(e) = http.call((handed, Protocol::Http1, Some(peer))).await {
                            tracing::debug!(%peer, error = ?e, "HTTP connection ended with an error");
                        }
                    }
                    Ok(())
                }
            }))
        }
    })
}

/// What the front needs of a request head, borrowed from the connection's buffer.
pub(crate) struct Head<'a> {
    path: &'a str,
    query: &'a str,
    host: &'a str,
    accept_encoding: Cow<'a, str>,
    if_none_match: Option<Cow<'a, str>>,
    /// `Connection: close` (the response closes the connection).
    close: bool,
}

/// Reads and answers requests until one is not the front's; returns the connection and what
/// was read of it for actix-web, or `None` when the connection is done. With `tick`, a
/// kept-alive connection goes to the worker's loop ([`batch`]) after each answer, and comes
/// back here for a request the loop does not answer itself.
async fn front(mut io: TcpStream, peer: SocketAddr, state: &AppState, tick: Option<Duration>) -> Option<(TcpStream, Bytes)> {
    let mut buf = BytesMut::with_capacity(2048);
    let mut head_slices = Vec::with_capacity(512);
    let mut memo = Memo::default();
    let mut first = true;
    loop {
        // A request head, within the keep-alive time (idle) and the head time (once started;
        // the first request's from the connection, as actix-web counts it).
        let idle_until = tokio::time::Instant::now() + if buf.is_empty() { KEEP_ALIVE } else { HEAD_TIMEOUT };
        let mut head_until = (first || !buf.is_empty()).then(|| tokio::time::Instant::now() + HEAD_TIMEOUT);
        loop {
            match parse(&buf) {
                Parsed::Ours(..) => break,
                Parsed::NotOurs => return Some((io, buf.freeze())),
                Parsed::Partial if buf.len() > MAX_HEAD => return Some((io, buf.freeze())),
                Parsed::Partial => {}
            }
            let until = head_until.unwrap_or(idle_until);
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(2048);
            }
            match tokio::time::timeout_at(until, io.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {
                    head_until.get_or_insert_with(|| tokio::time::Instant::now() + HEAD_TIMEOUT);
                }
                // Idle, or a head that did not come whole in time (a trickling client): the
                // latter is told so, as actix-web does.
                Err(_) => {
                    if !buf.is_empty() {
                        let _ = tokio::time::timeout(Duration::from_secs(1), tokio::io::AsyncWriteExt::write_all(&mut io, REQUEST_TIMEOUT)).await;
                    }
                    return None;
                }
            }
        }
        // Parsed again: the head borrows the buffer the loop above reads into.
        let Parsed::Ours(head, length) = parse(&buf) else { return Some((io, buf.freeze())) };
        let Some(reply) = answer(state, &head, peer, &mut memo).await else {
            // Not the front's after all (decided before the request was taken).
            return Some((io, buf.freeze()));
        };
        let close = head.close;
        head_slices.clear();
        let Some(body) = reply.write_head(&mut head_slices, close) else {
            tracing::error!(%peer, path = %head.path, "an HTTP answer of the front had a streaming body; connection closed");
            return None;
        };
        buf.advance(length);
        // Each response is one write: no reason to wait for the previous one's ACK. Set
        // once, on the first response (the sockets actix-web serves keep their default).
        if first && io.set_nodelay(true).is_err() {
            return None;
        }
        first = false;
        if !write_all(&mut io, &head_slices, &body).await || close {
            return None;
        }
        let Some(tick) = tick else { continue };
        let unsent;
        (io, buf, memo, unsent) = batch::adopt(io, buf, memo, peer, state, tick).await?;
        if let Some(batch::Unsent { head, body, written, close }) = unsent {
            let (head, body) = match written.checked_sub(head.len()) {
                None => (&head[written..], &body[..]),
                Some(into_body) => (&[][..], &body[into_body..]),
            };
            if !write_all(&mut io, head, body).await || close {
                return None;
            }
        }
    }
}

/// What a request for a stream's file is answered with when the client takes too long to
/// send its head.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

pub(crate) enum Parsed<'a> {
    Ours(Head<'a>, usize),
    NotOurs,
    Partial,
}

/// Whether the request head at the start of `buf` is complete and of the kind the front
/// answers: `GET` over HTTP/1.1 with no body, of a playlist, part or segment path (see
/// `http::direct_path`), with no `Range`.
pub(crate) fn parse(buf: &[u8]) -> Parsed<'_> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut fields);
    let length = match request.parse(buf) {
        // Longer than the limit: actix-web answers 431.
        Ok(httparse::Status::Complete(length)) if length > MAX_HEAD => return Parsed::NotOurs,
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        // Too many fields, or not HTTP: actix-web answers.
        Err(_) => return Parsed::NotOurs,
    };
    if request.method != Some("GET") || request.version != Some(1) {
        return Parsed::NotOurs;
    }
    let target = request.path.unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some((_, file)) = crate::http::direct_path(path) else { return Parsed::NotOurs };
    if ![".m3u8", ".m4s", ".mp4", ".vtt"].iter().any(|extension| file.ends_with(extension)) {
        return Parsed::NotOurs;
    }
    let mut head = Head { path, query, host: "", accept_encoding: Cow::Borrowed(""), if_none_match: None, close: false };
    for field in request.headers.iter() {
        let Ok(value) = std::str::from_utf8(field.value) else { return Parsed::NotOurs };
        let name = field.name;
        // Repeated fields as actix-web reads them: the first `Host`, every `If-None-Match`
        // and `Accept-Encoding` value, `close` in any `Connection`.
        if name.eq_ignore_ascii_case("host") {
            if head.host.is_empty() {
                head.host = value;
            }
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            join(&mut head.accept_encoding, value);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            join(head.if_none_match.get_or_insert(Cow::Borrowed("")), value);
        } else if name.eq_ignore_ascii_case("connection") {
            head.close |= value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
        } else if name.eq_ignore_ascii_case("range") || name.eq_ignore_ascii_case("transfer-encoding") || name.eq_ignore_ascii_case("expect") || name.eq_ignore_ascii_case("upgrade") {
            return Parsed::NotOurs;
        } else if name.eq_ignore_ascii_case("content-length") && value.trim() != "0" {
            return Parsed::NotOurs;
        }
    }
    Parsed::Ours(head, length)
}

/// Appends a repeated field's value to what was read of it, comma-separated.
fn join<'a>(joined: &mut Cow<'a, str>, value: &'a str) {
    if joined.is_empty() {
        *joined = Cow::Borrowed(value);
    } else {
        let owned = joined.to_mut();
        owned.push(',');
        owned.push_str(value);
    }
}

/// A response of the front.
pub(crate) enum Reply {
    Manifest(crate::live_package::ManifestReply),
    Media(Bytes, &'static str),
    /// An answer made by the shared code as actix-web's response (an error, a refusal).
    Other(actix_web::HttpResponse),
}

/// What a connection's requests resolved to last: a viewer names the same stream, from the
/// same host, with the same query (but for `_HLS_*`) request after request, so the stream's
/// key (its vhost as `http::stream_key` finds it) and running package are looked up once.
#[derive(Default)]
pub(crate) struct Memo {
    app: String,
    stream: String,
    host: String,
    /// The query without its `_HLS_*` parameters.
    rest: String,
    vhosts: Option<Arc<std::collections::BTreeSet<String>>>,
    key: Option<StreamKey>,
    /// The parameters of `rest`.
    params: Vec<(String, String)>,
    package: Option<Arc<LivePackage>>,
    scratch: String,
}

impl Memo {
    /// Resolves the key of `app/stream` requested with this `Host` and query (again when any
    /// of them, or the configured vhosts, differ from the last request's).
    fn resolve(&mut self, state: &AppState, app: &str, stream: &str, host: &str, query: &str) {
        self.scratch.clear();
        for pair in query.split(['&', ',']).filter(|pair| !pair.is_empty() && !pair.starts_with("_HLS_")) {
            if !self.scratch.is_empty() {
                self.scratch.push('&');
            }
            self.scratch.push_str(pair);
        }
        let vhosts = state.node.vhosts.get();
        let same = self.app == app && self.stream == stream && self.host == host && self.rest == self.scratch && self.vhosts.as_ref().is_some_and(|v| Arc::ptr_eq(v, &vhosts));
        if self.key.is_some() && same {
            return;
        }
        self.params = estuary_protocols::rtmp::message::parse_query(&self.scratch);
        (self.app, self.stream, self.host) = (app.to_string(), stream.to_string(), host.to_string());
        self.rest.clone_from(&self.scratch);
        self.vhosts = Some(vhosts);
        self.package = None;
        self.key = Some(crate::http::stream_key(state, app, stream, host, &self.params));
    }

    /// The running package of the key resolved last (not one that ended or left the table:
    /// the full path starts the stream's next package, or answers for the ended one).
    fn package(&mut self, state: &AppState) -> Option<Arc<LivePackage>> {
        let ended = |package: &Arc<LivePackage>| package.retired() || package.read(|p| p.ended);
        if self.package.as_ref().is_none_or(ended) {
            self.package = state.node.packages.get(self.key.as_ref()?).filter(|package| !ended(package));
        }
        self.package.clone()
    }
}

/// What the front does with a request now.
pub(crate) enum Now {
    Reply(Reply),
    /// Not there yet: asked again when the package's version is no longer this one, and
    /// answered as it is once this long has passed (the request's hold). For a media file,
    /// its name and content type: what it takes to answer it once it is there.
    Hold(Arc<LivePackage>, u64, Duration, Option<(FileName, &'static str)>),
    /// For the full path ([`answer_slow`]): a package to start, a master or caption playlist,
    /// a query to refuse, a file that is not the package's.
    Slow,
}

/// `(app, file, stream, extension)` of a stream file path the front may answer.
fn named<'a>(state: &AppState, path: &'a str) -> Option<(&'a str, &'a str, &'a str, &'a str)> {
    let (app, file) = crate::http::direct_path(path)?;
    if state.node.cluster.is_some() {
        return None;
    }
    estuary_protocols::naming::check_app(app).and_then(|()| estuary_protocols::naming::check_file_name(file)).ok()?;
    let (stream, extension) = file.rsplit_once('.')?;
    Some((app, file, stream, extension))
}

/// The answer to a request of a running package's media playlist, part, segment or
/// initialization segment, made without waiting (`expired`: the request's hold is over, so
/// what is not there is answered as missing). The checks are [`answer_slow`]'s, in its order.
pub(crate) fn answer_now(state: &AppState, head: &Head, peer: SocketAddr, memo: &mut Memo, expired: bool) -> Now {
    use crate::live_package as live;
    let Some((app, file, stream, extension)) = named(state, head.path) else { return Now::Slow };
    let name = if extension == "m3u8" {
        if stream.ends_with("_master") || stream.ends_with("_vtt") {
            return Now::Slow;
        }
        memo.resolve(state, app, stream, head.host, head.query);
        None
    } else {
        let hls = |name: &FileName| matches!(name, FileName::HlsInit(_) | FileName::HlsSegment(_) | FileName::HlsPart(..) | FileName::Subtitles(_));
        let Some((owner, name)) = estuary_protocols::cmaf::parse_file_name(stream, extension).into_iter().find(|(_, name)| hls(name)) else { return Now::Slow };
        memo.resolve(state, app, &owner, head.host, head.query);
        Some(name)
    };
    // No running package: the full path's (which starts one, or answers as the router would).
    let Some(package) = memo.package(state) else { return Now::Slow };
    let (Some(key), params) = (memo.key.as_ref(), &memo.params) else { return Now::Slow };
    if params.iter().any(|(k, _)| k == "codec") || !live::on_demand(state, &key.vhost, app).0 {
        return Now::Slow;
    }
    if let Err(refused) = crate::http::check_play(state, key, &key.stream, peer, params) {
        return Now::Reply(Reply::Other(refused));
    }
    package.touch();
    // Read before the package is: a change after this is seen by the hold.
    let version = package.version();
    let Some(name) = name else {
        // A package that has not two segments yet is the full path's (its first playlist
        // waits for them).
        if !package.read(|p| LivePackage::listable(p, 2)) {
            return Now::Slow;
        }
        let mut pairs = [("", ""); 3];
        let mut count = 0;
        for pair in head.query.split(['&', ',']).filter(|pair| pair.starts_with("_HLS_")) {
            let Some(slot) = pairs.get_mut(count) else { return Now::Slow };
            *slot = pair.split_once('=').unwrap_or((pair, ""));
            count += 1;
        }
        let Ok(blocking) = Blocking::parse(&pairs[..count]) else { return Now::Slow };
        if let Some(msn) = blocking.msn {
            if let Some(refused) = live::too_far_ahead(key, &package, msn) {
                return Now::Reply(Reply::Other(refused));
            }
            if !package.read(|p| p.has(msn, blocking.part)) {
                return match expired {
                    true => Now::Reply(Reply::Other(live::part_late(key, msn, blocking.part))),
                    false => Now::Hold(package.clone(), version, live::block_time(&package), None),
                };
            }
        }
        let token = params.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str());
        let rendered = live::rendered_playlist(state, key, &package, blocking.skip, token);
        return Now::Reply(Reply::Manifest(live::manifest_reply(&head.accept_encoding, head.if_none_match.as_deref(), &rendered)));
    };
    let (found, coming) = package.read(|p| {
        let found = live::lookup(p, &name);
        let coming = found.is_none() && !expired && live::coming(p, &name);
        (found, coming)
    });
    match found {
        Some(live::Media::Bytes(bytes)) => Now::Reply(Reply::Media(bytes, live::media_type(extension))),
        // HLS names are never a growing DASH segment.
        Some(live::Media::Growing(..)) => Now::Slow,
        None if coming => Now::Hold(package.clone(), version, live::hold_time(&package), Some((name, live::media_type(extension)))),
        None => Now::Reply(Reply::Other(live::no_such_segment(app, file))),
    }
}

/// The answer to a request of the front's kind: [`answer_now`], waiting out its holds, or
/// the full path's.
async fn answer(state: &AppState, head: &Head<'_>, peer: SocketAddr, memo: &mut Memo) -> Option<Reply> {
    let mut until = None;
    loop {
        let expired = until.is_some_and(|until| tokio::time::Instant::now() >= until);
        match answer_now(state, head, peer, memo, expired) {
            Now::Reply(reply) => return Some(reply),
            Now::Hold(package, version, wait, _) => {
                let until = *until.get_or_insert_with(|| tokio::time::Instant::now() + wait);
                package.changed_since(version, until).await;
            }
            Now::Slow => return answer_slow(state, head, peer).await,
        }
    }
}

/// The full path: the answer to a request of the front's kind, or `None` when actix-web must
/// answer it (what the router would do differently: `?codec=`, a cluster, files on disk,
/// DASH names). The checks are those of `http::serve_stream_file`, in its order.
async fn answer_slow(state: &AppState, head: &Head<'_>, peer: SocketAddr) -> Option<Reply> {
    let (app, file, stream, extension) = named(state, head.path)?;
    let params = estuary_protocols::rtmp::message::parse_query(head.query);
    if params.iter().any(|(k, _)| k == "codec") {
        return None;
    }
    let key = crate::http::stream_key(state, app, stream, head.host, &params);
    let (hls_on_demand, _) = crate::live_package::on_demand(state, &key.vhost, app);
    if !hls_on_demand {
        return None;
    }
    if extension == "m3u8" {
        // A master playlist and the caption rendition's are checked as the stream they are
        // made from.
        let (master, captions) = (stream.strip_suffix("_master"), stream.strip_suffix("_vtt"));
        let base = master.or(captions).unwrap_or(stream);
        if let Err(refused) = crate::http::check_play(state, &key, base, peer, &params) {
            return Some(Reply::Other(refused));
        }
        let token = params.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str());
        let mut base_key = key.clone();
        base_key.stream = base.to_string();
        let rendered = match (master, captions) {
            (Some(base), _) => return Some(Reply::Other(crate::http::master_playlist(state, &key.vhost, app, base, token).await)),
            (None, Some(_)) => crate::live_package::subtitles_text(state, &base_key, token).await.map(Arc::new),
            (None, None) => crate::live_package::playlist_text(state, &key, Blocking::parse(&params), token).await,
        };
        return Some(match rendered {
            Ok(rendered) => Reply::Manifest(crate::live_package::manifest_reply(&head.accept_encoding, head.if_none_match.as_deref(), &rendered)),
            Err(response) => Reply::Other(response),
        });
    }
    let (owner, name) = crate::live_package::owner(state, &key.vhost, app, stream, extension, true, false)?;
    if !matches!(name, FileName::HlsInit(_) | FileName::HlsSegment(_) | FileName::HlsPart(..) | FileName::Subtitles(_)) {
        return None;
    }
    let mut owner_key = key.clone();
    owner_key.stream = owner;
    if let Err(refused) = crate::http::check_play(state, &owner_key, &owner_key.stream, peer, &params) {
        return Some(Reply::Other(refused));
    }
    Some(match crate::live_package::find_media(state, &owner_key, &name).await {
        Some((crate::live_package::Media::Bytes(bytes), _)) => Reply::Media(bytes, crate::live_package::media_type(extension)),
        // HLS names are never a growing DASH segment.
        Some((crate::live_package::Media::Growing(..), _)) => return None,
        None => Reply::Other(crate::live_package::no_such_segment(app, file)),
    })
}

impl Reply {
    /// Writes the response head into `out` and returns the body (`None` for a body that is
    /// not whole bytes, which none of the shared answers has).
    pub(crate) fn write_head(self, out: &mut Vec<u8>, close: bool) -> Option<Bytes> {
        use std::io::Write;
        let date = http_date();
        let connection = if close { "connection: close\r\n" } else { "" };
        match self {
            Reply::Manifest(reply) => {
                let status = if reply.not_modified { "304 Not Modified" } else { "200 OK" };
                let _ = write!(out, "HTTP/1.1 {status}\r\ncache-control: no-cache\r\netag: {}\r\nvary: Accept-Encoding\r\naccess-control-allow-origin: *\r\naccess-control-expose-headers: ETag, Date\r\n", reply.etag);
                if !reply.not_modified {
                    let _ = write!(out, "content-type: application/vnd.apple.mpegurl\r\n{}content-length: {}\r\n", if reply.gzip { "content-encoding: gzip\r\n" } else { "" }, reply.body.len());
                }
                let _ = write!(out, "{connection}date: {date}\r\n\r\n");
                Some(reply.body)
            }
            Reply::Media(bytes, content_type) => {
                let _ = write!(out, "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncache-control: max-age=60, immutable\r\naccept-ranges: bytes\r\naccess-control-allow-origin: *\r\ncontent-length: {}\r\n{connection}date: {date}\r\n\r\n", bytes.len());
                Some(bytes)
            }
            Reply::Other(response) => {
                let status = response.status();
                let _ = write!(out, "HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
                for (name, value) in response.headers() {
                    out.extend_from_slice(name.as_str().as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                // The shared code's answers here are all whole bodies (text).
                let body = actix_web::body::MessageBody::try_into_bytes(response.into_body()).ok()?;
                let _ = write!(out, "content-length: {}\r\n{connection}date: {date}\r\n\r\n", body.len());
                Some(body)
            }
        }
    }
}

/// Writes `head` and `body` (one `writev` when the socket takes it all), each write within
/// [`SEND_TIMEOUT`]. False when the connection failed or stalled.
async fn write_all(io: &mut TcpStream, head: &[u8], body: &[u8]) -> bool {
    let (mut head, mut body) = (head, body);
    while !head.is_empty() || !body.is_empty() {
        let slices = [IoSlice::new(head), IoSlice::new(body)];
        let written = match tokio::time::timeout(SEND_TIMEOUT, tokio::io::AsyncWriteExt::write_vectored(io, &slices)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return false,
            Ok(Ok(n)) => n,
        };
        let from_head = written.min(head.len());
        head = &head[from_head..];
        body = &body[written - from_head..];
    }
    true
}

/// The `Date` field's value, made once a second per thread.
fn http_date() -> String {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
    }
    let now = std::time::SystemTime::now();
    let second = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != second || date.1.is_empty() {
            *date = (second, httpdate::fmt_http_date(now));
        }
        date.1.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::{parse, Parsed};

    fn ours(request: &str) -> Option<(String, usize)> {
        match parse(request.as_bytes()) {
            Parsed::Ours(head, length) => Some((format!("{}?{}|{}|{}|{:?}|{}", head.path, head.query, head.host, head.accept_encoding, head.if_none_match, head.close), length)),
            _ => None,
        }
    }

    #[test]
    fn the_front_takes_only_plain_gets_of_hls_files() {
        let part = "GET /live/cam-12-p3.m4s HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(ours(part), Some(("/live/cam-12-p3.m4s?|a||None|false".to_string(), part.len())));
        let playlist = "GET /live/cam.m3u8?_HLS_msn=4&_HLS_part=1 HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\naccept-encoding: br\r\nIf-None-Match: \"x\"\r\nConnection: close\r\n\r\nGET /next";
        assert_eq!(ours(playlist), Some(("/live/cam.m3u8?_HLS_msn=4&_HLS_part=1|h|gzip,br|Some(\"\\\"x\\\"\")|true".to_string(), playlist.len() - "GET /next".len())));
        assert!(matches!(parse(b"GET /live/cam.m3u8 HTTP/1.1\r\nHost: a\r\n"), Parsed::Partial));
        // Repeated fields: the first Host, every entity tag, close from any Connection.
        let repeated = "GET /live/cam.m3u8 HTTP/1.1\r\nHost: a\r\nHost: b\r\nIf-None-Match: \"x\"\r\nIf-None-Match: \"y\"\r\nConnection: close\r\nConnection: te\r\n\r\n";
        assert_eq!(ours(repeated).map(|(head, _)| head), Some("/live/cam.m3u8?|a||Some(\"\\\"x\\\",\\\"y\\\"\")|true".to_string()));
        // A head over the limit is actix-web's (431), even when it came whole.
        let long = format!("GET /live/cam.m3u8 HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(super::MAX_HEAD));
        assert!(matches!(parse(long.as_bytes()), Parsed::NotOurs));
        for other in [
            "HEAD /live/cam.m3u8 HTTP/1.1\r\n\r\n",
            "GET /live/cam.m3u8 HTTP/1.0\r\n\r\n",
            "GET /live/cam.flv HTTP/1.1\r\n\r\n",
            "GET /live/cam.mpd HTTP/1.1\r\n\r\n",
            "OPTIONS /live/cam.m3u8 HTTP/1.1\r\n\r\n",
            "GET /api/v1/x.m3u8 HTTP/1.1\r\n\r\n",
            "GET /live/a%2Fb.m3u8 HTTP/1.1\r\n\r\n",
            "GET /live/cam-1.m4s HTTP/1.1\r\nRange: bytes=0-9\r\n\r\n",
            "GET /live/cam-1.m4s HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd",
            "POST /rtc/v1/whip/ HTTP/1.1\r\n\r\n",
            "not http at all\r\n\r\n",
        ] {
            assert!(matches!(parse(other.as_bytes()), Parsed::NotOurs), "{other}");
        }
    }
}
