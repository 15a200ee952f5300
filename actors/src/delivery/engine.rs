//! One delivery loop per worker thread (see the module docs).

use super::ring::{Cursor, Ring};
use super::FeedTerms;
use crate::node::clients::ClientRecord;
use crate::node::stats::Stats;
use crate::rtmp::writer::{WriterCmd, WriterEnd};
use crate::stream::Subscription;
use bytes::{Bytes, BytesMut};
use estuary_protocols::rtmp::server::MediaWriter;
use estuary_protocols::MediaFrame;
use estuary_storage::StreamKey;
use futures_util::stream::{SelectAll, StreamExt};
use futures_util::FutureExt;
use std::collections::HashMap;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

/// How a player's bytes are made.
#[derive(Debug, Clone, Copy)]
pub enum Format {
    /// RTMP messages for one connection's chunk size and message stream id.
    Rtmp(MediaWriter),
    /// FLV tags (HTTP-FLV).
    Flv,
    /// MPEG-TS packets (HTTP-TS), made by the ring in arrival order.
    Ts,
}

impl super::ring::Serialise for Format {
    fn key(&self) -> u64 {
        match self {
            Format::Rtmp(writer) => writer.key(),
            // Above any RTMP key (chunk sizes stay far below 2^31).
            Format::Flv => 1 << 63,
            Format::Ts => (1 << 63) + 1,
        }
    }

    fn write(&self, out: &mut BytesMut, frame: &MediaFrame) {
        match self {
            Format::Rtmp(writer) => writer.write_frame(out, frame),
            Format::Flv => estuary_protocols::container::flv::write_frame_tag(out, frame),
            // Made by the ring (continuity counters run across frames); headers need no bytes.
            Format::Ts => {}
        }
    }

    fn in_order(&self) -> bool {
        matches!(self, Format::Ts)
    }
}

impl Format {
    /// What a player gets when the stream ends.
    fn stream_end(&self) -> Option<Bytes> {
        match self {
            Format::Rtmp(writer) => {
                let mut end = BytesMut::new();
                writer.write_stream_end(&mut end);
                Some(end.freeze())
            }
            Format::Flv | Format::Ts => None,
        }
    }
}

/// A player's connection.
pub enum Sink {
    /// The write half of an RTMP session's connection.
    Rtmp(OwnedWriteHalf),
    /// An HTTP connection whose response head is among the player's first bytes; registered
    /// with the worker's event loop when the loop takes it.
    Http(std::net::TcpStream),
}

enum PlayerSocket {
    Rtmp(OwnedWriteHalf),
    /// Non-blocking; never registered with the event loop (the loop's tick, not readiness,
    /// decides when to write).
    Http(std::net::TcpStream),
}

impl PlayerSocket {
    /// One non-blocking `sendmsg` straight to the socket. The loop polls its players on a
    /// tick instead of waiting for readiness, so the write goes past tokio's readiness
    /// state: a socket just handed over is written to at once (tokio would answer
    /// `WouldBlock` until its reactor had seen the socket, delaying a joiner by a tick).
    fn try_write_vectored(&self, slices: &[IoSlice<'_>]) -> std::io::Result<usize> {
        let socket = match self {
            PlayerSocket::Rtmp(socket) => socket2::SockRef::from(socket.as_ref()),
            PlayerSocket::Http(socket) => socket2::SockRef::from(socket),
        };
        socket.send_vectored(slices)
    }
}

/// A player handed to a worker's loop once its play was accepted.
pub struct Registration {
    /// The stream.
    pub key: StreamKey,
    /// A shared subscription to the stream: becomes the worker's feed for it unless the
    /// worker has one already (then it is dropped).
    pub subscription: Subscription,
    /// The connection.
    pub socket: Sink,
    /// The session's commands (control bytes, stop, close); dropping the sender ends the
    /// player.
    pub ctrl: mpsc::Receiver<WriterCmd>,
    /// Bytes the session's writer had not written yet.
    pub own: Vec<Bytes>,
    /// How frames are serialised for this connection.
    pub writer: Format,
    /// The player's record (bytes out, frames dropped).
    pub record: Arc<ClientRecord>,
    /// A socket that takes no byte for this long is closed.
    pub send_timeout: Duration,
    /// Told when the loop lets go of the player.
    pub done: oneshot::Sender<Outcome>,
}

/// How the loop let go of a player.
pub enum Outcome {
    /// The connection is over.
    Ended(WriterEnd),
    /// The player stopped playing: the connection goes back to the session's writer.
    Returned {
        /// The write half.
        socket: OwnedWriteHalf,
        /// The session's commands.
        ctrl: mpsc::Receiver<WriterCmd>,
        /// Bytes not written yet.
        own: Vec<Bytes>,
    },
}

/// The loop's inbox on each worker (kept in the worker's `WorkerLocals`).
#[derive(Default)]
pub struct Port(std::sync::Mutex<Option<mpsc::Sender<Registration>>>);

/// Registrations waiting for a loop. The loop takes them before anything else, so this fills
/// only when the loop is stuck; a player arriving then is refused.
const INBOX: usize = 4096;

/// Hands a player to the loop of the current worker thread, starting the loop if needed.
/// Must be called on the worker's own thread (the session's writer runs there).
pub fn hand_over(port: &Port, merge: Duration, stats: Arc<Stats>, registration: Registration) {
    send(port, registration, move |rx| {
        tokio::task::spawn_local(Engine::new(merge, stats).run(rx));
    });
}

/// Hands a player to the loop of `worker`, from any thread, starting the loop if needed.
pub fn hand_over_to(worker: &crate::node::workers::Worker, merge: Duration, stats: Arc<Stats>, registration: Registration) {
    let arbiter = worker.arbiter.clone();
    send(&worker.locals.delivery, registration, move |rx| {
        arbiter.spawn_fn(move || {
            tokio::task::spawn_local(Engine::new(merge, stats).run(rx));
        });
    });
}

fn send(port: &Port, registration: Registration, start: impl FnOnce(mpsc::Receiver<Registration>)) {
    let mut slot = port.0.lock().unwrap_or_else(|e| e.into_inner());
    let registration = match slot.as_ref() {
        Some(tx) => match tx.try_send(registration) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(registration)) => {
                tracing::warn!(stream = %registration.key, client = registration.record.id, waiting = INBOX, "the worker's delivery loop is not taking players; refusing this one");
                let _ = registration.done.send(Outcome::Ended(WriterEnd::Io("the worker's delivery loop is busy".into())));
                return;
            }
            Err(mpsc::error::TrySendError::Closed(registration)) => registration,
        },
        None => registration,
    };
    let (tx, rx) = mpsc::channel(INBOX);
    let _ = tx.try_send(registration);
    *slot = Some(tx);
    start(rx);
}

type Frames = Pin<Box<dyn futures_util::Stream<Item = (u64, Option<Arc<MediaFrame>>)>>>;

struct Player {
    socket: PlayerSocket,
    ctrl: mpsc::Receiver<WriterCmd>,
    cursor: Cursor,
    writer: Format,
    record: Arc<ClientRecord>,
    send_timeout: Duration,
    done: oneshot::Sender<Outcome>,
    /// Last time the socket took bytes or there was nothing to write.
    progress: Instant,
    /// Since the player first lost frames without catching up since.
    behind_since: Option<Instant>,
    /// Has not received media yet: written to as soon as frames arrive.
    fresh: bool,
    /// The stream ended: the player gets what it can within a second, then goes.
    ending: Option<Instant>,
    /// The end of the stream was queued (after the frames the player had not had).
    end_queued: bool,
    /// The player's place in its stream's player count.
    _counted: super::PlayerCount,
}

enum Finish {
    End(WriterEnd),
    Return,
}

struct Feed {
    key: StreamKey,
    ring: Ring,
    terms: FeedTerms,
    players: Vec<Player>,
    /// The stream's frames ended: no new player joins this feed.
    ended: bool,
    /// Dropping it ends the feed's frame stream (and so its subscription).
    _stop: oneshot::Sender<()>,
}

struct Engine {
    merge: Duration,
    stats: Arc<Stats>,
    feeds: HashMap<u64, Feed>,
    by_key: HashMap<StreamKey, u64>,
    frames: SelectAll<Frames>,
    next_id: u64,
}

/// Ends of an unfinished write wait at most this long once the stream ended.
const END_GRACE: Duration = Duration::from_secs(1);
/// Housekeeping tick when writes are not merged (control bytes, retries, timeouts).
const IDLE_TICK: Duration = Duration::from_millis(50);

impl Engine {
    fn new(merge: Duration, stats: Arc<Stats>) -> Engine {
        Engine { merge, stats, feeds: HashMap::new(), by_key: HashMap::new(), frames: SelectAll::new(), next_id: 0 }
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Registration>) {
        let mut tick = tokio::time::interval(if self.merge.is_zero() { IDLE_TICK } else { self.merge });
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                registration = inbox.recv() => match registration {
                    Some(registration) => {
                        let (key, client) = (registration.key.clone(), registration.record.id);
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.add(registration))).is_err() {
                            // The registration is gone with its socket and its answer: the
                            // player's side sees the connection end.
                            tracing::error!(stream = %key, client, "delivery panicked taking a player; that player is closed");
                        }
                    }
                    None => break,
                },
                Some((id, frame)) = self.frames.next(), if !self.frames.is_empty() => {
                    let mut touched = vec![id];
                    self.arrived(id, frame);
                    // Everything else already queued goes into the rings before writing.
                    for _ in 0..256 {
                        match self.frames.next().now_or_never() {
                            Some(Some((id, frame))) => {
                                if !touched.contains(&id) {
                                    touched.push(id);
                                }
                                self.arrived(id, frame);
                            }
                            _ => break,
                        }
                    }
                    let everyone = self.merge.is_zero();
                    for id in touched {
                        self.serve_feed(id, everyone);
                    }
                }
                _ = tick.tick() => {
                    let ids: Vec<u64> = self.feeds.keys().copied().collect();
                    for id in ids {
                        self.serve_feed(id, true);
                    }
                }
            }
        }
    }

    fn add(&mut self, registration: Registration) {
        let Registration { key, subscription, socket, ctrl, own, writer, record, send_timeout, done } = registration;
        // The worker's feed of the stream, unless it belongs to an earlier life of the stream
        // (a republish after the stream actor went: the old feed is still ending).
        let current = self.by_key.get(&key).copied().filter(|id| match (&subscription.shared, self.feeds.get(id)) {
            (Some(terms), Some(feed)) => !feed.ended && Arc::ptr_eq(&terms.counters, &feed.terms.counters),
            _ => false,
        });
        let id = match current {
            Some(id) => id,
            None => {
                let Some(terms) = subscription.shared.clone() else {
                    tracing::error!(stream = %key, client = record.id, "delivery needs a shared subscription; closing the player");
                    let _ = done.send(Outcome::Ended(WriterEnd::StreamEnded));
                    return;
                };
                let id = self.next_id;
                self.next_id += 1;
                let (stop_tx, stop_rx) = oneshot::channel::<()>();
                let rx = subscription.rx;
                let frames = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|frame| (frame, rx)) })
                    .take_until(stop_rx)
                    .map(move |frame| (id, Some(frame)))
                    .chain(futures_util::stream::once(async move { (id, None) }));
                self.frames.push(Box::pin(frames));
                tracing::debug!(stream = %key, feed = id, "delivery feed started on this worker");
                self.feeds.insert(id, Feed { key: key.clone(), ring: Ring::new(terms.limits), terms, players: Vec::new(), ended: false, _stop: stop_tx });
                self.by_key.insert(key, id);
                id
            }
        };
        let socket = match socket {
            Sink::Rtmp(socket) => PlayerSocket::Rtmp(socket),
            Sink::Http(socket) => match socket.set_nonblocking(true) {
                Ok(()) => PlayerSocket::Http(socket),
                Err(e) => {
                    let _ = done.send(Outcome::Ended(WriterEnd::Io(format!("cannot register the connection: {e}"))));
                    return;
                }
            },
        };
        let Some(feed) = self.feeds.get_mut(&id) else { return };
        if matches!(writer, Format::Ts) {
            feed.ring.enable_ts();
        }
        let mut cursor = Cursor::join(&feed.ring, &writer);
        // What the writer had not sent yet goes first.
        let joined = cursor.take_own();
        for bytes in own.into_iter().chain(joined) {
            cursor.push_own(bytes);
        }
        let now = Instant::now();
        feed.players.push(Player { socket, ctrl, cursor, writer, record, send_timeout, done, progress: now, behind_since: None, fresh: true, ending: None, end_queued: false, _counted: super::PlayerCount::new(feed.terms.counters.clone()) });
        // Startup does not wait for a tick.
        let index = feed.players.len() - 1;
        self.serve_one(id, index, now, &mut Batches::new());
    }

    fn arrived(&mut self, id: u64, frame: Option<Arc<MediaFrame>>) {
        let Some(feed) = self.feeds.get_mut(&id) else { return };
        match frame {
            Some(frame) => {
                let ring = &mut feed.ring;
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ring.push(frame))).is_err() {
                    tracing::error!(stream = %feed.key, "delivery ring panicked on a frame; its players resume at the next keyframe");
                                        let ts = feed.players.iter().any(|p| matches!(p.writer, Format::Ts));
                    let (limits, head, old) = (feed.terms.limits, feed.ring.head(), &feed.ring);
                    let with_ts = |mut ring: Ring| {
                        if ts {
                            ring.enable_ts();
                        }
                        ring
                    };
                    // The headers come along unless they are what made it panic (an empty
                    // ring without headers has nothing to encode).
                    feed.ring = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| with_ts(old.started_over()))).unwrap_or_else(|_| {
                        tracing::error!(stream = %feed.key, "delivery ring panicked again on the stream's headers; players wait for new ones");
                        with_ts(Ring::starting_at(limits, head))
                    });
                    for player in &mut feed.players {
                        player.cursor.wait_for_start(feed.ring.head());
                    }
                }
            }
            None => {
                let now = Instant::now();
                tracing::debug!(stream = %feed.key, feed = id, players = feed.players.len(), "delivery feed ended");
                // Each player gets the frames it has not had, then the end of the stream.
                feed.ended = true;
                for player in &mut feed.players {
                    player.ending.get_or_insert(now);
                }
                if self.by_key.get(&feed.key) == Some(&id) {
                    self.by_key.remove(&feed.key);
                }
            }
        }
    }

    /// Writes to a feed's players (only the fresh ones unless `everyone`), and lets go of
    /// the players that finished and of a feed without players.
    fn serve_feed(&mut self, id: u64, everyone: bool) {
        let now = Instant::now();
        let mut batches = Batches::new();
        let Some(feed) = self.feeds.get(&id) else { return };
        let count = feed.players.len();
        let mut index = 0;
        for _ in 0..count {
            let Some(feed) = self.feeds.get(&id) else { return };
            let Some(player) = feed.players.get(index) else { break };
            if everyone || player.fresh || player.ending.is_some() {
                if self.serve_one(id, index, now, &mut batches) {
                    continue;
                }
            }
            index += 1;
        }
        if self.feeds.get(&id).is_some_and(|feed| feed.players.is_empty()) {
            if let Some(feed) = self.feeds.remove(&id) {
                tracing::debug!(stream = %feed.key, feed = id, "delivery feed stopped: no players left on this worker");
                if self.by_key.get(&feed.key) == Some(&id) {
                    self.by_key.remove(&feed.key);
                }
            }
        }
    }

    /// Serves player `index` of feed `id`; true when it finished and was removed.
    fn serve_one(&mut self, id: u64, index: usize, now: Instant, batches: &mut Batches) -> bool {
        let Some(feed) = self.feeds.get_mut(&id) else { return false };
        let Feed { key, ring, terms, players, .. } = feed;
        let Some(player) = players.get_mut(index) else { return false };
        let finish = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(player, ring, terms, &self.stats, key, now, batches))) {
            Ok(finish) => finish,
            Err(_) => {
                tracing::error!(stream = %key, client = player.record.id, "delivery panicked serving a player; closing that player");
                Some(Finish::End(WriterEnd::Io("internal error in delivery".into())))
            }
        };
        let Some(finish) = finish else { return false };
        let player = players.swap_remove(index);
        let outcome = match finish {
            Finish::End(end) => Outcome::Ended(end),
            Finish::Return => {
                let mut player = player;
                let own = player.cursor.take_own();
                let outcome = match player.socket {
                    PlayerSocket::Rtmp(socket) => Outcome::Returned { socket, ctrl: player.ctrl, own },
                    // An HTTP response has no way back.
                    PlayerSocket::Http(_) => Outcome::Ended(WriterEnd::Closed),
                };
                let _ = player.done.send(outcome);
                return true;
            }
        };
        // Dropping an RTMP write half shuts its direction down; an HTTP response ends with
        // its connection (the HTTP server holds the other handle and sees it closed).
        let Player { done, socket, .. } = player;
        if let PlayerSocket::Http(socket) = socket {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        let _ = done.send(outcome);
        true
    }
}

/// One step for one player: its commands, then one write.
/// Pieces for caught-up players, made once per feed and tick: (format key, first frame, bytes).
type Batches = Vec<(u64, u64, Bytes)>;

fn serve(player: &mut Player, ring: &Ring, terms: &FeedTerms, stats: &Stats, key: &StreamKey, now: Instant, batches: &mut Batches) -> Option<Finish> {
    let mut close = false;
    loop {
        match player.ctrl.try_recv() {
            Ok(WriterCmd::Bytes(bytes)) => player.cursor.push_own(bytes),
            Ok(WriterCmd::StopMedia) => return Some(Finish::Return),
            Ok(WriterCmd::StartMedia { .. }) => {}
            Ok(WriterCmd::Close) | Err(mpsc::error::TryRecvError::Disconnected) => {
                close = true;
                break;
            }
            Err(mpsc::error::TryRecvError::Empty) => break,
        }
    }
    // The plain case, nearly every player on nearly every tick: one write of the piece all
    // caught-up players of this format get.
    if let Some(from) = player.cursor.plain_from(ring) {
        let head = ring.head();
        if from == head {
            player.progress = now;
        } else {
            let format = super::ring::Serialise::key(&player.writer);
            let batch = match batches.iter().find(|(k, f, _)| *k == format && *f == from) {
                Some((_, _, batch)) => batch.clone(),
                None => {
                    let batch = ring.concat(from, &player.writer);
                    batches.push((format, from, batch.clone()));
                    batch
                }
            };
            if batch.is_empty() {
                // Frames with no bytes in this format (metadata in MPEG-TS).
                player.cursor.advance_plain(head, &batch, 0);
                return finish_checks(player, ring, terms, key, now, close);
            }
            match player.socket.try_write_vectored(&[IoSlice::new(&batch)]) {
                Ok(0) => return Some(Finish::End(WriterEnd::Io("connection wrote zero bytes".into()))),
                Ok(written) => {
                    player.record.add_out(written);
                    terms.counters.sent.fetch_add(written as u64, Ordering::Relaxed);
                    player.cursor.advance_plain(head, &batch, written);
                    player.progress = now;
                    player.fresh = false;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Some(Finish::End(WriterEnd::Io(e.to_string()))),
            }
        }
        return finish_checks(player, ring, terms, key, now, close);
    }
    let plan = player.cursor.plan(ring, &player.writer);
    if plan.lost_frames > 0 {
        player.record.frames_dropped.fetch_add(plan.lost_frames, Ordering::Relaxed);
        stats.frames_dropped.fetch_add(plan.lost_frames, Ordering::Relaxed);
        terms.counters.dropped.fetch_add(plan.lost_frames, Ordering::Relaxed);
        if player.behind_since.is_none() {
            tracing::debug!(stream = %key, client = player.record.id, lost_frames = plan.lost_frames, "player behind; it lost frames up to a keyframe");
        }
        player.behind_since.get_or_insert(now);
    }
    if plan.is_empty() {
        player.progress = now;
    } else if plan.len() == 0 {
        // Only frames with no bytes in this format.
        player.cursor.advance(plan, 0);
        player.progress = now;
    } else {
        let slices: Vec<IoSlice<'_>> = plan.pieces.iter().map(|piece| IoSlice::new(piece)).collect();
        match player.socket.try_write_vectored(&slices) {
            Ok(0) => return Some(Finish::End(WriterEnd::Io("connection wrote zero bytes".into()))),
            Ok(written) => {
                player.record.add_out(written);
                terms.counters.sent.fetch_add(written as u64, Ordering::Relaxed);
                player.cursor.advance(plan, written);
                player.progress = now;
                // Still fresh until media went out (a waiting joiner gets its first frames
                // as they arrive, not at the next tick).
                player.fresh = !player.cursor.started();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Some(Finish::End(WriterEnd::Io(e.to_string()))),
        }
    }
    finish_checks(player, ring, terms, key, now, close)
}

/// After a write: catching up, closing, the end of the stream, the send timeout and the slow
/// player rule.
fn finish_checks(player: &mut Player, ring: &Ring, terms: &FeedTerms, key: &StreamKey, now: Instant, close: bool) -> Option<Finish> {
    let caught_up = player.cursor.caught_up(ring);
    if caught_up && !player.cursor.losing() {
        player.behind_since = None;
    }
    if close {
        return Some(Finish::End(WriterEnd::Closed));
    }
    if let Some(since) = player.ending {
        // The end goes after the frames the player had not had yet, or once the grace is
        // half gone; the player is let go once it went out, or at the end of the grace.
        if !player.end_queued && (caught_up || now.duration_since(since) > END_GRACE / 2) {
            // Nothing from the ring follows the end: a player still behind at half the grace
            // gives up the frames it has not had (a frame written in part is finished first).
            player.cursor.wait_for_start(ring.head());
            if let Some(end) = player.writer.stream_end() {
                player.cursor.push_own(end);
            }
            player.end_queued = true;
        }
        if (player.end_queued && player.cursor.own_len() == 0) || now.duration_since(since) > END_GRACE {
            return Some(Finish::End(WriterEnd::StreamEnded));
        }
    }
    if now.duration_since(player.progress) > player.send_timeout {
        return Some(Finish::End(WriterEnd::Timeout(player.send_timeout)));
    }
    if let Some(since) = player.behind_since {
        if now.duration_since(since) > terms.slow_player_timeout {
            terms.counters.slow_disconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(stream = %key, client = player.record.id, dropped_frames = player.record.frames_dropped.load(Ordering::Relaxed), timeout_ms = terms.slow_player_timeout.as_millis() as u64, "player too slow for too long; disconnecting it");
            return Some(Finish::End(WriterEnd::StreamEnded));
        }
    }
    None
}
