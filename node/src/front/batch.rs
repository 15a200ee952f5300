//! The front's loop: kept-alive connections of LL-HLS viewers, served by one task per worker
//! thread that wakes on a tick (`http.front_tick_ms`, 20 ms by default).
//!
//! Why: a viewer makes two requests per part (the preload-hinted part and the playlist's
//! blocking reload), and a connection with its own task in the runtime woke the thread for
//! each of them: at 1,000 viewers that was over two thousand sleeps and wakeups a second,
//! each with its timers and its walk through the runtime. Here a connection, once the front
//! answered a request on it, leaves the runtime's poller for the loop's own (`mio`), which the
//! loop reads without blocking on each tick: everything that came since the last tick is
//! answered in one pass, and a request held for a part not there yet is answered on the
//! first tick after the package's version moved. The thread wakes on ticks, whatever the
//! number of viewers, and a request waits at most a tick longer than it did.
//!
//! A request the loop cannot answer at once and in full (a package to start, a master
//! playlist, an error only the full path words, anything that is not a plain LL-HLS GET)
//! sends the connection, with what was read of it, back to its task, which answers it
//! (`front`) and gives the connection to the loop again, or to actix-web. The task waits for
//! that while the loop has the connection, so the connection keeps its place in the
//! connection gate and in the server's count.
//!
//! A response the socket does not take whole at once (a slow or far viewer, a large segment)
//! goes back to the task with the connection, which waits for the socket to take the rest (so
//! a response is never paced by the ticks) and then gives the connection to the loop again.
//! The timeouts are the front's: a kept-alive connection idle for `KEEP_ALIVE` is closed and a
//! head that does not come whole within `HEAD_TIMEOUT` gets 408, checked on the ticks; a
//! response the socket takes no byte of for `SEND_TIMEOUT` ends the connection (the task's).
//! A panic while a connection is served closes that connection only (counted as a restart).

use super::{answer_now, parse, Memo, Now, Parsed, Reply, HEAD_TIMEOUT, KEEP_ALIVE, MAX_HEAD, REQUEST_TIMEOUT};
use crate::AppState;
use actix_web::rt::net::TcpStream;
use bytes::{Buf, Bytes, BytesMut};
use estuary_actors::package::LivePackage;
use estuary_protocols::cmaf::FileName;
use mio::unix::SourceFd;
use mio::{Interest, Token};
use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What goes back to a connection's task: its socket, what was read of it, its memo, and the
/// rest of a response the socket did not take at once.
type Back = (std::net::TcpStream, BytesMut, Memo, Option<Unsent>);

/// A response written in part: its head and body, and how much of them went out.
pub(super) struct Unsent {
    pub head: Vec<u8>,
    pub body: Bytes,
    pub written: usize,
    /// The connection closes after it.
    pub close: bool,
}

/// A connection on its way into the loop.
struct Adopted {
    socket: std::net::TcpStream,
    buf: BytesMut,
    memo: Memo,
    peer: SocketAddr,
    back: oneshot::Sender<Back>,
}

/// The worker thread's loop, as its tasks see it.
#[derive(Default)]
struct Shared {
    incoming: RefCell<Vec<Adopted>>,
    running: Cell<bool>,
    /// The thread cannot make a poller: its connections stay with their tasks.
    broken: Cell<bool>,
}

thread_local! {
    static SHARED: Rc<Shared> = Rc::new(Shared::default());
}

/// Gives a kept-alive connection (and what was read of it) to this worker's loop, starting
/// the loop if it is not running; returns the connection when the loop sends it back for a
/// request it does not answer, `None` when the loop closed it.
pub(super) async fn adopt(io: TcpStream, buf: BytesMut, memo: Memo, peer: SocketAddr, state: &AppState, tick: Duration) -> Option<(TcpStream, BytesMut, Memo, Option<Unsent>)> {
    if SHARED.with(|shared| shared.broken.get()) {
        return Some((io, buf, memo, None));
    }
    // Out of the runtime's poller: its readiness no longer wakes the thread.
    let socket = match io.into_std() {
        Ok(socket) => socket,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "cannot take an HTTP connection out of the runtime's poller; closed");
            return None;
        }
    };
    let (back, returned) = oneshot::channel();
    SHARED.with(|shared| {
        shared.incoming.borrow_mut().push(Adopted { socket, buf, memo, peer, back });
        if !shared.running.replace(true) {
            actix_web::rt::spawn(run(shared.clone(), state.clone(), tick));
        }
    });
    let (socket, buf, memo, unsent) = returned.await.ok()?;
    match TcpStream::from_std(socket) {
        Ok(io) => Some((io, buf, memo, unsent)),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "cannot give an HTTP connection back to the runtime's poller; closed");
            None
        }
    }
}

/// A connection in the loop.
struct Conn {
    socket: std::net::TcpStream,
    buf: BytesMut,
    memo: Memo,
    peer: SocketAddr,
    back: oneshot::Sender<Back>,
    /// The poller said there is something to read (cleared by a read that takes less than
    /// asked, which empties the socket's queue).
    readable: bool,
    /// The client closed its side.
    ended: bool,
    /// A response the socket did not take whole: the connection goes back to its task,
    /// which waits for the socket to take the rest.
    unsent: Option<Unsent>,
    /// The request at the front of `buf` waits for its package.
    held: Option<Held>,
    /// When the last response was written whole (or the connection came), for `KEEP_ALIVE`.
    idle_since: Instant,
    /// When the first byte of an incomplete head was seen, for `HEAD_TIMEOUT`.
    head_since: Option<Instant>,
}

struct Held {
    package: Arc<LivePackage>,
    version: u64,
    until: Instant,
    /// A media file's name and content type (see [`Held::release`]).
    media: Option<(FileName, &'static str)>,
    /// The request's length in the buffer, and whether its response closes the connection.
    length: usize,
    close: bool,
}

/// What became of a held request when its package moved.
enum Release {
    /// Its file is there.
    Reply(Reply),
    /// Still the package's next: held on.
    Wait,
    /// Anything else (a blocking playlist, an ended or replaced package): asked again.
    Again,
}

impl Held {
    /// A held media request, looked up again without being parsed and checked again (it
    /// passed the checks when it was held, as the full path's hold does).
    fn release(&mut self) -> Release {
        use crate::live_package as live;
        let Some((name, content_type)) = &self.media else { return Release::Again };
        if self.package.retired() {
            return Release::Again;
        }
        let version = self.package.version();
        let found = self.package.read(|p| match live::lookup(p, name) {
            Some(live::Media::Bytes(bytes)) => Ok(bytes),
            Some(live::Media::Growing(..)) => Err(false),
            None => Err(!p.ended && live::coming(p, name)),
        });
        match found {
            Ok(bytes) => Release::Reply(Reply::Media(bytes, content_type)),
            Err(true) => {
                self.version = version;
                Release::Wait
            }
            Err(false) => Release::Again,
        }
    }
}

/// What a tick does with a connection.
enum Step {
    Keep,
    Close,
    /// Back to its task, for a request the loop does not answer or a response to finish.
    HandBack,
}

/// Bytes asked of a socket per read: a request head is a few hundred.
const READ_CHUNK: usize = 1024;

/// Marks the loop stopped however it ends (a panic too), and sends connections that were on
/// their way in back to their tasks: the next adoption starts a new loop.
struct Stopped(Rc<Shared>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.running.set(false);
        for Adopted { socket, buf, memo, back, .. } in self.0.incoming.take() {
            let _ = back.send((socket, buf, memo, None));
        }
    }
}

async fn run(shared: Rc<Shared>, state: AppState, tick: Duration) {
    let _stopped = Stopped(shared.clone());
    let mut poll = match mio::Poll::new() {
        Ok(poll) => poll,
        Err(e) => {
            tracing::error!(error = %e, "cannot make the HTTP front's poller; this worker's connections are served by their own tasks");
            shared.broken.set(true);
            // `Stopped` sends the connections on their way in back.
            return;
        }
    };
    let mut events = mio::Events::with_capacity(1024);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut scratch = Vec::with_capacity(512);
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = Instant::now();
        let incoming = shared.incoming.take();
        for adopted in incoming {
            let Adopted { socket, buf, memo, peer, back } = adopted;
            let index = free.pop().unwrap_or(conns.len());
            if let Err(e) = poll.registry().register(&mut SourceFd(&socket.as_raw_fd()), Token(index), Interest::READABLE) {
                tracing::debug!(%peer, error = %e, "cannot poll an HTTP connection in the front's loop; its task serves it");
                free.push(index);
                let _ = back.send((socket, buf, memo, None));
                continue;
            }
            let conn = Conn { socket, buf, memo, peer, back, readable: true, ended: false, unsent: None, held: None, idle_since: now, head_since: None };
            match conns.get_mut(index) {
                Some(slot) => *slot = Some(conn),
                None => conns.push(Some(conn)),
            }
        }
        // Everything the poller has, in as many calls as it takes.
        loop {
            if poll.poll(&mut events, Some(Duration::ZERO)).is_err() {
                break;
            }
            let mut count = 0;
            for event in events.iter() {
                count += 1;
                if let Some(Some(conn)) = conns.get_mut(event.token().0) {
                    conn.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
                }
            }
            if count < events.capacity() {
                break;
            }
        }
        for index in 0..conns.len() {
            let Some(conn) = conns[index].as_mut() else { continue };
            // A panic costs its own connection, not the others of the loop.
            let step = match estuary_actors::node::supervision::catch(|| step(conn, &state, now, &mut scratch)) {
                Ok(step) => step,
                Err(panic) => {
                    state.node.restarts.panicked("http front", &format_args!("a kept-alive connection of {}", conn.peer), &panic);
                    Step::Close
                }
            };
            if matches!(step, Step::Keep) {
                continue;
            }
            let Some(conn) = conns[index].take() else { continue };
            free.push(index);
            let _ = poll.registry().deregister(&mut SourceFd(&conn.socket.as_raw_fd()));
            if matches!(step, Step::HandBack) {
                let _ = conn.back.send((conn.socket, conn.buf, conn.memo, conn.unsent));
            }
            // Closed: the socket closes here, and its task, told nothing, ends.
        }
        if conns.iter().all(Option::is_none) && shared.incoming.borrow().is_empty() {
            return;
        }
    }
}

/// One tick of a connection: the rest of its last response, what it sent, and its requests
/// in order, as far as they can be answered now.
fn step(conn: &mut Conn, state: &AppState, now: Instant, scratch: &mut Vec<u8>) -> Step {
    if conn.readable && !conn.ended {
        // More than a head's limit is never needed to decide (what is beyond stays in the
        // socket until the requests before it are answered).
        while conn.buf.len() <= MAX_HEAD {
            let start = conn.buf.len();
            conn.buf.resize(start + READ_CHUNK, 0);
            let read = (&conn.socket).read(&mut conn.buf[start..]);
            conn.buf.truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => conn.ended = true,
                Ok(n) if n == READ_CHUNK => continue,
                Ok(_) => conn.readable = false,
                Err(e) if e.kind() == ErrorKind::WouldBlock => conn.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Step::Close,
            }
            break;
        }
    }
    loop {
        let mut expired = false;
        let mut released = None;
        if let Some(held) = &mut conn.held {
            if now < held.until && held.package.version() == held.version {
                return Step::Keep;
            }
            expired = now >= held.until;
            if !expired {
                match held.release() {
                    Release::Wait => return Step::Keep,
                    Release::Reply(reply) => released = Some((reply, held.length, held.close)),
                    Release::Again => {}
                }
            }
        }
        if let Some((reply, length, close)) = released {
            match respond(conn, reply, length, close, now, scratch) {
                Some(step) => return step,
                None => continue,
            }
        }
        let (head, length) = match parse(&conn.buf) {
            Parsed::Ours(head, length) => (head, length),
            Parsed::NotOurs => return Step::HandBack,
            // The client closed its side: what it asked for before is answered, then the
            // connection is closed.
            Parsed::Partial if conn.ended => return Step::Close,
            Parsed::Partial if conn.buf.is_empty() => {
                return if now.duration_since(conn.idle_since) > KEEP_ALIVE { Step::Close } else { Step::Keep };
            }
            Parsed::Partial if conn.buf.len() > MAX_HEAD => return Step::HandBack,
            Parsed::Partial => {
                let since = *conn.head_since.get_or_insert(now);
                if now.duration_since(since) > HEAD_TIMEOUT {
                    let _ = (&conn.socket).write(REQUEST_TIMEOUT);
                    return Step::Close;
                }
                return Step::Keep;
            }
        };
        let close = head.close;
        let reply = match answer_now(state, &head, conn.peer, &mut conn.memo, expired) {
            Now::Reply(reply) => reply,
            Now::Hold(package, version, wait, media) => {
                let until = conn.held.as_ref().map_or(now + wait, |held| held.until);
                conn.held = Some(Held { package, version, until, media, length, close });
                return Step::Keep;
            }
            Now::Slow => return Step::HandBack,
        };
        if let Some(step) = respond(conn, reply, length, close, now, scratch) {
            return step;
        }
    }
}

/// Writes the response to the request of `length` bytes at the front of the buffer; the
/// step's end, or `None` to go on with the next request.
fn respond(conn: &mut Conn, reply: Reply, length: usize, close: bool, now: Instant, scratch: &mut Vec<u8>) -> Option<Step> {
    scratch.clear();
    let Some(body) = reply.write_head(scratch, close) else { return Some(Step::Close) };
    conn.buf.advance(length);
    (conn.held, conn.head_since) = (None, None);
    match write(&conn.socket, scratch, &body) {
        Ok(written) if written == scratch.len() + body.len() => {
            if close {
                return Some(Step::Close);
            }
            conn.idle_since = now;
            None
        }
        Ok(written) => {
            conn.unsent = Some(Unsent { head: std::mem::take(scratch), body, written, close });
            Some(Step::HandBack)
        }
        Err(_) => Some(Step::Close),
    }
}

/// Writes `head` and `body` (one `writev`, again while the socket takes all of it, until it
/// takes less); how much was written.
fn write(socket: &std::net::TcpStream, head: &[u8], body: &[u8]) -> std::io::Result<usize> {
    let mut written = 0;
    while written < head.len() + body.len() {
        let (head, body) = match written.checked_sub(head.len()) {
            None => (&head[written..], body),
            Some(into_body) => (&[][..], &body[into_body..]),
        };
        match (&mut &*socket).write_vectored(&[IoSlice::new(head), IoSlice::new(body)]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}
