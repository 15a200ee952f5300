//! SRT players of one stream, served together: one task per stream (on the stream's worker)
//! holds every SRT player's connection, one subscription to the stream, and the stream's
//! recent frames muxed into MPEG-TS once ([`crate::delivery::ring::Ring`], the ring HTTP-TS
//! players are served from).
//!
//! ## One loop, on a tick
//! The task wakes every [`TICK`] (5 ms) while it has players, and at once when a player
//! joins. On each wake it takes, in this order:
//! - the packets the listener routed to its players since the last wake (ACK, ACK2, NAK,
//!   keepalive, shutdown), each handed to its player's connection;
//! - the stream's new frames, appended to the ring;
//! - when the write merge interval (`stream.write_merge_ms`) has passed, the new TS bytes for
//!   every player: players that are caught up share one piece per tick, cut once into SRT
//!   payloads (1316 bytes, seven TS packets); others (joiners, players that fell behind) get
//!   their own plan from their cursor;
//! - the timers of connections that are due (`srt-protocol` paces a live sender: a packet
//!   every few milliseconds at the stream's rate, plus ACK/NAK/keepalive timers);
//!
//! and sends every datagram the connections produced with `sendmmsg`, up to 1024 per call.
//! So a player costs its connection's state machine and its datagrams, not a task, a queue,
//! a TS muxer, a timer and a system call per packet.
//!
//! ## Slow players
//! A player whose connection holds more than half its send buffer unacknowledged gets no new
//! bytes; its cursor stays where it is, and once it is further behind than the ring's window
//! it loses frames up to the newest keyframe (whole GOPs, as other players do), counted in
//! the player's, the stream's and the node's `frames_dropped`. One that has not caught up
//! within `stream.slow_player_timeout` of its first loss is disconnected.

use super::listener::{SessionEnded, SrtListener, SEND_BUFFER_PACKETS};
use super::session::{stats_json, PathEstimate, SessionInput};
use crate::access::hooks;
use crate::delivery::engine::Format;
use crate::delivery::ring::{Cursor, Ring};
use crate::delivery::{FeedTerms, PlayerCount};
use crate::node::clients::{ClientGuard, ClientRecord, Role as ClientRole};
use crate::node::NodeContext;
use crate::stream::Subscription;
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use estuary_protocols::container::ts::PACKET_SIZE;
use estuary_protocols::MediaFrame;
use estuary_storage::StreamKey;
use srt_protocol::connection::{Action, Connection, DuplexConnection, Input};
use srt_protocol::packet::Packet;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// How often the loop wakes while it has players.
pub(super) const TICK: Duration = Duration::from_millis(5);
/// Bytes of an SRT data packet's header.
const SRT_HEADER: usize = 16;
/// Datagrams per `sendmmsg` call (Linux takes at most 1024).
const BATCH: usize = 1024;
/// Players joining at once before the listener is told the group is busy.
const JOINS: usize = 1024;
/// Packets from players waiting for the next wake.
pub(super) const PACKETS: usize = 65_536;
/// A full socket buffer is waited on this long per wake before datagrams are dropped.
const SEND_WAIT: Duration = Duration::from_millis(20);
/// A closing player's connection may take this long to flush before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// A group without players lets go of its stream after this long.
const IDLE: Duration = Duration::from_secs(5);
/// How often a group without players takes the stream's frames.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// A player whose handshake completed, handed to its stream's group.
pub(super) struct Join {
    pub connection: Connection,
    pub peer: SocketAddr,
    pub guard: ClientGuard,
    pub key: StreamKey,
    pub params: Vec<(String, String)>,
    /// The listener's number for this connection's route.
    pub route: u64,
    /// A shared subscription: becomes the group's feed unless the group has one for this life
    /// of the stream already (then it is dropped).
    pub subscription: Box<Subscription>,
}

/// The listener's way to a group.
#[derive(Clone)]
pub(super) struct GroupHandle {
    pub joins: mpsc::Sender<Join>,
    pub packets: mpsc::Sender<SessionInput>,
}

/// Starts the group of `key` on the stream's worker.
pub(super) fn start(key: StreamKey, socket: Arc<UdpSocket>, listener: Addr<SrtListener>, node: NodeContext, payload_size: usize, merge: Duration) -> GroupHandle {
    let (joins_tx, joins) = mpsc::channel(JOINS);
    let (packets_tx, packets) = mpsc::channel(PACKETS);
    let chunk = (payload_size / PACKET_SIZE).max(1) * PACKET_SIZE;
    let mut out = Outbox::new(chunk + SRT_HEADER);
    // Kernels without UDP segmentation offload (before Linux 4.18) do not know the option.
    out.gso = nix::sys::socket::getsockopt(&*socket, nix::sys::socket::sockopt::UdpGsoSegment).is_ok();
    let group = Group { key: key.clone(), socket, listener, node: node.clone(), chunk, merge, feed: None, members: Vec::new(), by_peer: HashMap::new(), out };
    let census = node.census.clone();
    node.topology.workers.for_key(&key).spawn(census.track("srt_players", group.run(joins, packets)));
    GroupHandle { joins: joins_tx, packets: packets_tx }
}

/// The stream as this group sees it: one subscription, its frames in a ring.
struct Feed {
    rx: mpsc::Receiver<Arc<MediaFrame>>,
    ring: Ring,
    terms: FeedTerms,
    ended: bool,
    /// The players of this life were told the stream ended.
    end_handled: bool,
    /// Frames arrived since the last delivery.
    fresh: bool,
    last_delivery: Option<Instant>,
}

struct Member {
    conn: DuplexConnection,
    peer: SocketAddr,
    guard: ClientGuard,
    record: Arc<ClientRecord>,
    key: StreamKey,
    params: Vec<(String, String)>,
    route: u64,
    cursor: Cursor,
    /// When the connection next wants a timer input.
    due: Instant,
    closing: Option<Instant>,
    /// Why the player is going (set once it is decided).
    reason: Option<String>,
    path: PathEstimate,
    previous_stats: Option<(Instant, u64, u64)>,
    behind_since: Option<Instant>,
    lost: u64,
    /// The feed (life of the stream) this player belongs to.
    life: Arc<crate::delivery::DeliveryCounters>,
    _counted: PlayerCount,
}

/// Datagrams made during one wake, sent together. A player's full-size data packets that
/// follow each other are kept as one run, sent as one message with UDP segmentation offload
/// (`UDP_SEGMENT`: the kernel cuts it into datagrams of `segment` bytes), so a burst costs one
/// pass through the network stack instead of one per packet.
struct Outbox {
    bytes: BytesMut,
    items: Vec<Item>,
    /// Size of a full data packet (header and payload); runs are cut at this size.
    segment: usize,
    /// Runs are made (off after the kernel refused one).
    gso: bool,
}

#[derive(Clone, Copy)]
struct Item {
    start: usize,
    end: usize,
    to: SocketAddr,
    member: usize,
    segments: usize,
    /// Every datagram of the run so far is exactly `segment` bytes (another may follow).
    open: bool,
}

/// Datagrams in one run at most (the kernel allows 64 or more).
const MAX_SEGMENTS: usize = 40;
/// Bytes in one run at most (one UDP message).
const MAX_RUN_BYTES: usize = 60_000;

impl Outbox {
    fn new(segment: usize) -> Outbox {
        Outbox { bytes: BytesMut::new(), items: Vec::new(), segment, gso: true }
    }

    fn push(&mut self, packet: &Packet, to: SocketAddr, member: usize) {
        let start = self.bytes.len();
        packet.serialize(&mut self.bytes);
        let end = self.bytes.len();
        let len = end - start;
        if self.gso && len <= self.segment {
            if let Some(last) = self.items.last_mut() {
                if last.open && last.to == to && last.member == member && last.segments < MAX_SEGMENTS && last.end - last.start + len <= MAX_RUN_BYTES {
                    last.end = end;
                    last.segments += 1;
                    last.open = len == self.segment;
                    return;
                }
            }
        }
        self.items.push(Item { start, end, to, member, segments: 1, open: len == self.segment });
    }

    /// The items with every run cut back into single datagrams.
    fn unrolled(items: &[Item], segment: usize) -> Vec<Item> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let mut at = item.start;
            while at < item.end {
                let end = (at + segment).min(item.end);
                out.push(Item { start: at, end, segments: 1, open: false, ..*item });
                at = end;
            }
        }
        out
    }
}

struct Group {
    key: StreamKey,
    socket: Arc<UdpSocket>,
    listener: Addr<SrtListener>,
    node: NodeContext,
    chunk: usize,
    merge: Duration,
    feed: Option<Feed>,
    members: Vec<Member>,
    by_peer: HashMap<SocketAddr, usize>,
    out: Outbox,
}

enum Drive {
    Open,
    Closed(String),
}

impl Member {
    /// Hands `input` to the connection and takes its actions until it waits; datagrams go to
    /// the outbox.
    fn drive(&mut self, index: usize, now: Instant, mut input: Input, out: &mut Outbox) -> Drive {
        #[allow(clippy::large_enum_variant)] // lives on the stack for one call
        enum Next {
            Input(Input),
            Wait(Duration),
            Close,
        }
        loop {
            let (conn, path, previous, record) = (&mut self.conn, &mut self.path, &mut self.previous_stats, &self.record);
            let step = catch_unwind(AssertUnwindSafe(|| match conn.handle_input(now, input) {
                Action::SendPacket((packet, to)) => {
                    path.observe(&packet);
                    out.push(&packet, to, index);
                    Next::Input(Input::PacketSent)
                }
                // A player sends no data; anything released is dropped.
                Action::ReleaseData(_) => Next::Input(Input::DataReleased),
                Action::UpdateStatistics(stats) => {
                    record.set_transport(stats_json(stats, path, previous));
                    Next::Input(Input::StatisticsUpdated)
                }
                Action::WaitForData(wait) => Next::Wait(wait),
                Action::Close => Next::Close,
            }));
            match step {
                Ok(Next::Input(next)) => input = next,
                Ok(Next::Wait(wait)) => {
                    self.due = now + wait;
                    return Drive::Open;
                }
                Ok(Next::Close) => {
                    let reason = if self.closing.is_some() { "closed" } else { "the peer closed the connection or went silent" };
                    return Drive::Closed(reason.into());
                }
                Err(_) => {
                    tracing::error!(client = self.record.id, peer = %self.peer, stream = %self.key, "SRT connection code panicked on this connection; closing it (others are unaffected)");
                    return Drive::Closed("internal error in the SRT library".into());
                }
            }
        }
    }

    /// Packets the connection holds unsent or unacknowledged.
    fn backlog(&mut self, now: Instant) -> usize {
        catch_unwind(AssertUnwindSafe(|| {
            self.conn.update_statistics(now);
            self.conn.statistics().tx_buffered_data as usize
        }))
        .unwrap_or(usize::MAX)
    }

    fn close(&mut self, now: Instant, reason: &str, index: usize, out: &mut Outbox) -> Drive {
        if self.closing.is_some() {
            return Drive::Open;
        }
        self.closing = Some(now);
        self.reason = Some(reason.to_owned());
        self.drive(index, now, Input::Data(None), out)
    }
}

impl Group {
    async fn run(mut self, mut joins: mpsc::Receiver<Join>, mut packets: mpsc::Receiver<SessionInput>) {
        let mut joins_open = true;
        let mut idle_since = Some(Instant::now());
        let mut inbox = Vec::with_capacity(1024);
        let mut next_wake = Instant::now();
        loop {
            // Without players the group still takes frames now and then (its ring stays fresh
            // for the next joiner) and lets go of the stream after IDLE.
            let sleep_until = if self.members.is_empty() { Instant::now() + IDLE_POLL } else { next_wake };
            tokio::select! {
                biased;
                join = joins.recv(), if joins_open => match join {
                    Some(join) => self.add_guarded(join),
                    None => joins_open = false,
                },
                _ = tokio::time::sleep_until(sleep_until.into()) => {}
            }
            let now = Instant::now();
            while joins_open {
                match joins.try_recv() {
                    Ok(join) => self.add_guarded(join),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => joins_open = false,
                }
            }
            // Packets from players.
            loop {
                inbox.clear();
                match packets.try_recv() {
                    Ok(first) => inbox.push(first),
                    Err(_) => break,
                }
                while inbox.len() < 1024 {
                    match packets.try_recv() {
                        Ok(more) => inbox.push(more),
                        Err(_) => break,
                    }
                }
                for SessionInput::Packet(from, packet) in inbox.drain(..) {
                    let Some(&index) = self.by_peer.get(&from) else { continue };
                    let member = &mut self.members[index];
                    member.path.observe(&packet);
                    if let Drive::Closed(reason) = member.drive(index, now, Input::Packet(Ok((packet, from))), &mut self.out) {
                        member.reason.get_or_insert(reason);
                    }
                }
            }
            self.take_frames(now);
            self.deliver(now);
            // The timers at the clock's time now, not the wake's: a NAK handled after an ACK
            // of the same player in this wake found the send timer just fired (by the ACK's
            // input, at the same `now`), so its retransmission would wait for the next wake;
            // a moment later the timer is due again and the lost packets go out in this one.
            self.timers(Instant::now());
            self.flush().await;
            self.remove_finished(now);

            if self.members.is_empty() {
                let idle = *idle_since.get_or_insert(now);
                let feed_ended = self.feed.as_ref().is_none_or(|feed| feed.ended);
                if !joins_open || feed_ended && now - idle >= TICK || now - idle >= IDLE {
                    // No one can join any more, or nobody did for a while: drain what the
                    // listener sent meanwhile before going (it starts a new group next time).
                    joins.close();
                    let mut late = Vec::new();
                    while let Ok(join) = joins.try_recv() {
                        late.push(join);
                    }
                    if late.is_empty() {
                        break;
                    }
                    joins_open = false;
                    for join in late {
                        self.add_guarded(join);
                    }
                }
            } else {
                idle_since = None;
            }
            // Measured from the end of the work, so an overloaded group still yields its
            // worker between wakes.
            next_wake = Instant::now() + TICK;
        }
        tracing::debug!(stream = %self.key, "SRT player group ended");
    }

    /// Takes a player; a panic doing so costs that player only.
    fn add_guarded(&mut self, join: Join) {
        let (peer, route, client, key) = (join.peer, join.route, join.guard.id(), join.key.clone());
        if catch_unwind(AssertUnwindSafe(|| self.add(join))).is_err() {
            tracing::error!(stream = %key, client, %peer, "SRT player group panicked taking a player; that player is dropped");
            if let Some(&index) = self.by_peer.get(&peer) {
                if self.members.get(index).is_some_and(|m| m.route == route) {
                    let member = self.members.swap_remove(index);
                    self.by_peer.remove(&peer);
                    if index < self.members.len() {
                        let moved = self.members[index].peer;
                        self.by_peer.insert(moved, index);
                    }
                    self.finish(member, "internal error taking the player");
                    return;
                }
            }
            crate::tell(&self.listener, SessionEnded { peer, route });
        }
    }

    fn add(&mut self, join: Join) {
        let Join { connection, peer, guard, key, params, subscription, route } = join;
        let record = guard.record().clone();
        let Some(terms) = subscription.shared.clone() else {
            tracing::error!(stream = %key, client = guard.id(), "SRT player without a shared subscription; closing it");
            self.node.hooks.notify(hooks::Event::Stop, &key.app, hooks::body(guard.id(), &peer.ip().to_string(), &key.vhost, &key.app, &key.stream, &params));
            crate::tell(&self.listener, SessionEnded { peer, route });
            return;
        };
        // A new life of the stream (a republish) starts a new feed; players of the old one
        // are closing already.
        let same_life = self.feed.as_ref().is_some_and(|feed| !feed.ended && Arc::ptr_eq(&feed.terms.counters, &terms.counters));
        if !same_life {
            tracing::debug!(stream = %key, "SRT player group takes a feed of the stream");
            // Players of an earlier life get nothing more from it.
            let now = Instant::now();
            if self.feed.as_ref().is_some_and(|feed| !feed.end_handled) {
                self.close_life(now, "the stream ended", |_, _| true);
            }
            let ring = Ring::new(terms.limits);
            self.feed = Some(Feed { rx: subscription.rx, ring, terms: terms.clone(), ended: false, end_handled: false, fresh: false, last_delivery: None });
        }
        let Some(feed) = self.feed.as_mut() else { return };
        feed.ring.enable_ts();
        // Frames already queued for the feed go in before the player takes its place.
        let now = Instant::now();
        Self::drain_feed(feed);
        let cursor = Cursor::join(&feed.ring, &Format::Ts);
        let latency_ms = connection.settings.recv_tsbpd_latency.max(connection.settings.send_tsbpd_latency).as_millis() as u64;
        record.set_role(ClientRole::Play, key.to_string());
        tracing::info!(client = guard.id(), %peer, stream = %key, latency_ms, "SRT play started");
        let member = Member {
            conn: DuplexConnection::new(connection),
            peer,
            record,
            key,
            params,
            route,
            cursor,
            due: now,
            closing: None,
            reason: None,
            path: PathEstimate::default(),
            previous_stats: None,
            behind_since: None,
            lost: 0,
            life: terms.counters.clone(),
            _counted: PlayerCount::new(terms.counters.clone()),
            guard,
        };
        let index = self.members.len();
        self.by_peer.insert(peer, index);
        self.members.push(member);
        // A joiner gets the cached GOP at once (or, if the stream just ended, its end).
        self.serve_own(index, now);
        self.end_if_ended(now);
    }

    fn drain_feed(feed: &mut Feed) {
        loop {
            match feed.rx.try_recv() {
                Ok(frame) => {
                    feed.ring.push(frame);
                    feed.fresh = true;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    feed.ended = true;
                    break;
                }
            }
        }
    }

    fn take_frames(&mut self, now: Instant) {
        let Some(feed) = self.feed.as_mut() else { return };
        if !feed.ended && catch_unwind(AssertUnwindSafe(|| Self::drain_feed(feed))).is_err() {
            tracing::error!(stream = %self.key, "SRT player group panicked taking frames; closing its players (they can connect again)");
            feed.ended = true;
        }
        self.end_if_ended(now);
    }

    /// Once the feed ended: the players of its life get what is left, then are closed (once;
    /// a player that joins an ended feed is closed at once).
    fn end_if_ended(&mut self, now: Instant) {
        let Some(feed) = self.feed.as_mut() else { return };
        if !feed.ended {
            return;
        }
        let first = !feed.end_handled;
        feed.end_handled = true;
        if first {
            tracing::info!(stream = %self.key, players = self.members.len(), "stream ended for its SRT players; closing them");
            // The last frames go out before the end.
            self.deliver_now(now);
        }
        self.close_life(now, "the stream ended", |member_life, feed_life| Arc::ptr_eq(member_life, feed_life));
    }

    /// Closes the players whose life `matches` the feed's.
    fn close_life(&mut self, now: Instant, reason: &str, matches: impl Fn(&Arc<crate::delivery::DeliveryCounters>, &Arc<crate::delivery::DeliveryCounters>) -> bool) {
        let Some(feed) = self.feed.as_ref() else { return };
        let life = feed.terms.counters.clone();
        for (index, member) in self.members.iter_mut().enumerate() {
            if member.closing.is_none() && member.reason.is_none() && matches(&member.life, &life) {
                if let Drive::Closed(closed) = member.close(now, reason, index, &mut self.out) {
                    member.reason.get_or_insert(closed);
                }
            }
        }
    }

    /// New bytes for every player, once the merge interval has passed.
    fn deliver(&mut self, now: Instant) {
        let Some(feed) = self.feed.as_mut() else { return };
        if !feed.fresh || feed.last_delivery.is_some_and(|at| now - at < self.merge) {
            return;
        }
        self.deliver_now(now);
    }

    /// New bytes for every player of the feed's life now.
    fn deliver_now(&mut self, now: Instant) {
        let Some(feed) = self.feed.as_mut() else { return };
        feed.fresh = false;
        feed.last_delivery = Some(now);
        // Caught-up players of this life share one piece per starting frame.
        let mut shared: HashMap<u64, Vec<Bytes>> = HashMap::new();
        let head = feed.ring.head();
        for index in 0..self.members.len() {
            let feed = self.feed.as_mut().expect("feed present");
            let member = &mut self.members[index];
            if member.closing.is_some() || member.reason.is_some() || !Arc::ptr_eq(&member.life, &feed.terms.counters) {
                continue;
            }
            let backlog = member.backlog(now);
            if backlog > SEND_BUFFER_PACKETS / 2 {
                // Too much unacknowledged: nothing new this time (the cursor stays behind and
                // loses whole GOPs once out of the window); disconnected if it stays so.
                let since = *member.behind_since.get_or_insert(now);
                if now - since > feed.terms.slow_player_timeout {
                    feed.terms.counters.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(client = member.record.id, stream = %member.key, backlog_packets = backlog, "SRT player stayed behind; disconnecting it");
                    if let Drive::Closed(reason) = member.close(now, "too slow to keep up with the stream", index, &mut self.out) {
                        member.reason.get_or_insert(reason);
                    }
                }
                continue;
            }
            if let Some(from) = member.cursor.plain_from(&feed.ring) {
                if from >= head {
                    continue;
                }
                let chunk = self.chunk;
                let ring = &feed.ring;
                let pieces = shared.entry(from).or_insert_with(|| chunks(ring.concat(from, &Format::Ts), chunk));
                let total: usize = pieces.iter().map(Bytes::len).sum();
                let batch_end = head;
                for piece in pieces.iter() {
                    if let Drive::Closed(reason) = member.drive(index, now, Input::Data(Some((now, piece.clone()))), &mut self.out) {
                        member.reason.get_or_insert(reason);
                        break;
                    }
                }
                // Everything was handed to the connection (it keeps what it has not sent).
                member.cursor.advance_plain(batch_end, &Bytes::new(), 0);
                feed.terms.counters.sent.fetch_add(total as u64, Ordering::Relaxed);
                member.behind_since = None;
            } else {
                self.serve_own(index, now);
            }
        }
    }

    /// Serves a player that is not on the shared path: its own plan from its cursor.
    fn serve_own(&mut self, index: usize, now: Instant) {
        let Some(feed) = self.feed.as_mut() else { return };
        let member = &mut self.members[index];
        let mut rounds = 0;
        loop {
            rounds += 1;
            let plan = member.cursor.plan(&feed.ring, &Format::Ts);
            if plan.lost_frames > 0 {
                member.lost += plan.lost_frames;
                member.record.frames_dropped.fetch_add(plan.lost_frames, Ordering::Relaxed);
                feed.terms.counters.dropped.fetch_add(plan.lost_frames, Ordering::Relaxed);
                self.node.stats.frames_dropped.fetch_add(plan.lost_frames, Ordering::Relaxed);
                if member.behind_since.is_none() {
                    tracing::warn!(client = member.record.id, stream = %member.key, lost_frames = plan.lost_frames, "SRT player cannot keep up; skipping to the newest keyframe");
                    member.behind_since = Some(now);
                }
            }
            if plan.is_empty() {
                break;
            }
            let mut joined = BytesMut::with_capacity(plan.len());
            for piece in &plan.pieces {
                joined.extend_from_slice(piece);
            }
            let total = joined.len();
            for piece in chunks(joined.freeze(), self.chunk) {
                if let Drive::Closed(reason) = member.drive(index, now, Input::Data(Some((now, piece))), &mut self.out) {
                    member.reason.get_or_insert(reason);
                    break;
                }
            }
            member.cursor.advance(plan, total);
            feed.terms.counters.sent.fetch_add(total as u64, Ordering::Relaxed);
            if rounds >= 4 || member.cursor.caught_up(&feed.ring) {
                break;
            }
        }
        if member.behind_since.is_some() && member.cursor.caught_up(&feed.ring) && !member.cursor.losing() {
            member.behind_since = None;
        }
        if member.behind_since.is_some_and(|since| now - since > feed.terms.slow_player_timeout) && member.closing.is_none() {
            feed.terms.counters.slow_disconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client = member.record.id, stream = %member.key, lost_frames = member.lost, "SRT player stayed behind; disconnecting it");
            if let Drive::Closed(reason) = member.close(now, "too slow to keep up with the stream", index, &mut self.out) {
                member.reason.get_or_insert(reason);
            }
        }
    }

    /// Timers of connections that are due, and kicks.
    fn timers(&mut self, now: Instant) {
        for (index, member) in self.members.iter_mut().enumerate() {
            if member.reason.is_some() && member.closing.is_none() {
                continue;
            }
            if member.closing.is_none() && member.record.is_kicked() {
                tracing::info!(client = member.record.id, peer = %member.peer, stream = %member.key, "SRT client kicked through the API");
                if let Drive::Closed(reason) = member.close(now, "kicked", index, &mut self.out) {
                    member.reason.get_or_insert(reason);
                }
                continue;
            }
            if member.due <= now {
                if let Drive::Closed(reason) = member.drive(index, now, Input::Timer, &mut self.out) {
                    member.reason.get_or_insert(reason);
                }
            }
        }
    }

    /// Sends the wake's datagrams.
    async fn flush(&mut self) {
        if self.out.items.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.out.bytes).freeze();
        let mut items = std::mem::take(&mut self.out.items);
        let segment = self.out.segment;
        let mut done = 0;
        let mut dropped = 0u64;
        while done < items.len() {
            // Runs go in calls with the segmentation option, single datagrams in calls without.
            let run = self.out.gso && items[done].segments > 1;
            let mut upto = done + 1;
            while upto < items.len() && upto - done < BATCH && (self.out.gso && items[upto].segments > 1) == run {
                upto += 1;
            }
            let batch = &items[done..upto];
            let result = self.socket.try_io(tokio::io::Interest::WRITABLE, || match send_batch(&self.socket, &bytes, batch, run.then_some(segment)) {
                Ok(0) => Err(std::io::ErrorKind::WouldBlock.into()),
                other => other,
            });
            match result {
                Ok(sent) => {
                    for item in &items[done..done + sent] {
                        if let Some(member) = self.members.get(item.member) {
                            member.record.add_out(item.end - item.start);
                        }
                    }
                    done += sent;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The socket buffer is full: wait for room, a little; what cannot go is
                    // lost as a network would lose it (SRT retransmits what players NAK).
                    if tokio::time::timeout(SEND_WAIT, self.socket.writable()).await.is_err() {
                        dropped += (items.len() - done) as u64;
                        break;
                    }
                }
                Err(e) if run && matches!(e.raw_os_error(), Some(code) if code == nix::libc::EIO || code == nix::libc::EINVAL || code == nix::libc::EOPNOTSUPP || code == nix::libc::ENOPROTOOPT) => {
                    tracing::warn!(error = %e, "UDP segmentation offload refused by the kernel; SRT sends one datagram per packet from now on");
                    self.out.gso = false;
                    let rest = Outbox::unrolled(&items[done..], segment);
                    items.truncate(done);
                    items.extend(rest);
                }
                Err(e) => {
                    // The first message of the call failed (that destination only): it is
                    // dropped and the rest goes on.
                    tracing::debug!(stream = %self.key, error = %e, to = %items[done].to, "SRT datagram not sent");
                    dropped += 1;
                    done += 1;
                }
            }
        }
        if dropped > 0 {
            self.node.stats.datagrams_dropped_srt.fetch_add(dropped, Ordering::Relaxed);
        }
        // Keep the arena's allocation for the next wake when nothing else holds it.
        if let Ok(mut reuse) = bytes.try_into_mut() {
            reuse.clear();
            self.out.bytes = reuse;
        }
        items.clear();
        self.out.items = items;
    }

    /// Lets go of players that closed or whose closing took too long.
    fn remove_finished(&mut self, now: Instant) {
        let mut index = 0;
        while index < self.members.len() {
            let member = &self.members[index];
            let expired = member.closing.is_some_and(|since| now - since > CLOSE_GRACE);
            let done = member.reason.is_some() && (member.closing.is_none() || !member.conn.is_open()) || expired;
            if !done {
                index += 1;
                continue;
            }
            let member = self.members.swap_remove(index);
            self.by_peer.remove(&member.peer);
            if index < self.members.len() {
                let moved = self.members[index].peer;
                self.by_peer.insert(moved, index);
            }
            let reason = member.reason.clone().unwrap_or_else(|| "closed without a clean shutdown".into());
            self.finish(member, &reason);
        }
    }

    fn finish(&self, member: Member, reason: &str) {
        let Member { peer, guard, record, key, params, lost, route, .. } = member;
        let client = guard.id();
        self.node.hooks.notify(hooks::Event::Stop, &key.app, hooks::body(client, &peer.ip().to_string(), &key.vhost, &key.app, &key.stream, &params));
        tracing::info!(
            client,
            %peer,
            stream = %key,
            %reason,
            frames_skipped = lost,
            bytes_out = record.bytes_out.load(Ordering::Relaxed),
            alive_ms = record.connected.elapsed().as_millis() as u64,
            "SRT connection closed"
        );
        drop(guard);
        crate::tell(&self.listener, SessionEnded { peer, route });
    }
}

/// `bytes` cut into SRT payloads of at most `chunk` bytes (slices of the same buffer).
fn chunks(bytes: Bytes, chunk: usize) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(chunk.max(1)));
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + chunk).min(bytes.len());
        out.push(bytes.slice(at..end));
        at = end;
    }
    out
}

/// One `sendmmsg` of `batch` out of `bytes`, runs cut into datagrams of `segment` bytes by
/// the kernel when given; returns how many messages the kernel took.
fn send_batch(socket: &UdpSocket, bytes: &Bytes, batch: &[Item], segment: Option<usize>) -> std::io::Result<usize> {
    use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::IoSlice;
    let slices: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|item| [IoSlice::new(&bytes[item.start..item.end])]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = batch.iter().map(|item| Some(SockaddrStorage::from(item.to))).collect();
    let sent = match segment {
        Some(segment) => {
            let size = segment as u16;
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(batch.len(), Some(nix::cmsg_space!(u16)));
            sendmmsg(socket.as_raw_fd(), &mut headers, &slices, &addrs, [ControlMessage::UdpGsoSegments(&size)], MsgFlags::MSG_DONTWAIT).map_err(std::io::Error::from)?.count()
        }
        None => {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(batch.len(), None);
            sendmmsg(socket.as_raw_fd(), &mut headers, &slices, &addrs, [] as [ControlMessage<'_>; 0], MsgFlags::MSG_DONTWAIT).map_err(std::io::Error::from)?.count()
        }
    };
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::{chunks, Outbox};
    use bytes::Bytes;
    use srt_protocol::packet::{DataEncryption, DataPacket, Packet, PacketLocation, SeqNumber, MsgNumber, SocketId, TimeStamp};
    use std::net::SocketAddr;

    fn data(seq: u32, len: usize) -> Packet {
        Packet::Data(DataPacket {
            seq_number: SeqNumber::new_truncate(seq),
            message_loc: PacketLocation::ONLY,
            in_order_delivery: false,
            encryption: DataEncryption::None,
            retransmitted: false,
            message_number: MsgNumber::new_truncate(seq),
            timestamp: TimeStamp::from_micros(0),
            dest_sockid: SocketId(1),
            payload: Bytes::from(vec![0u8; len]),
        })
    }

    #[test]
    fn full_packets_to_one_peer_make_a_run_that_unrolls_to_the_same_datagrams() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let mut out = Outbox::new(16 + 1316);
        for seq in 0..3 {
            out.push(&data(seq, 1316), a, 0);
        }
        // A short packet ends the run; the next full one starts another.
        out.push(&data(3, 188), a, 0);
        out.push(&data(4, 1316), a, 0);
        // Another peer never joins a run.
        out.push(&data(5, 1316), b, 1);
        let runs: Vec<(usize, usize)> = out.items.iter().map(|i| (i.segments, i.end - i.start)).collect();
        assert_eq!(runs, vec![(4, 3 * 1332 + 204), (1, 1332), (1, 1332)]);
        let single: Vec<usize> = Outbox::unrolled(&out.items, 1332).iter().map(|i| i.end - i.start).collect();
        assert_eq!(single, vec![1332, 1332, 1332, 204, 1332, 1332]);
        // Without offload every datagram is its own message.
        let mut plain = Outbox::new(1332);
        plain.gso = false;
        for seq in 0..3 {
            plain.push(&data(seq, 1316), a, 0);
        }
        assert_eq!(plain.items.len(), 3);
    }

    #[test]
    fn chunks_cut_at_payload_size_and_keep_the_tail() {
        let bytes = Bytes::from(vec![7u8; 1316 * 2 + 188]);
        let pieces = chunks(bytes.clone(), 1316);
        assert_eq!(pieces.iter().map(Bytes::len).collect::<Vec<_>>(), vec![1316, 1316, 188]);
        assert_eq!(pieces.concat(), bytes.to_vec());
        assert!(chunks(Bytes::new(), 1316).is_empty());
    }
}
