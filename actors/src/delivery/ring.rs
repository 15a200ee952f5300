//! The shared part of delivery, free of I/O: a stream's recent frames in order
//! ([`Ring`], each frame serialised once for all the players that need the same bytes) and
//! a player's place in it ([`Cursor`]).

use bytes::{Bytes, BytesMut};
use estuary_protocols::media::{MediaFrame, TrackKind};
use std::cell::OnceCell;
use std::collections::VecDeque;
use std::sync::Arc;

/// How a player's bytes are made from a frame (RTMP with a chunk size and message stream id;
/// other formats later). Two serialisers with the same [`Serialise::key`] write the same
/// bytes for the same frame.
pub trait Serialise {
    /// What the bytes depend on besides the frame.
    fn key(&self) -> u64;
    /// Appends the bytes of `frame`.
    fn write(&self, out: &mut BytesMut, frame: &MediaFrame);
    /// The format's bytes depend on the frames before (MPEG-TS continuity counters): they are
    /// made by the ring in arrival order ([`Ring::enable_ts`]) and `write` is not used.
    fn in_order(&self) -> bool {
        false
    }
}

impl Serialise for estuary_protocols::rtmp::server::MediaWriter {
    fn key(&self) -> u64 {
        estuary_protocols::rtmp::server::MediaWriter::key(self)
    }
    fn write(&self, out: &mut BytesMut, frame: &MediaFrame) {
        self.write_frame(out, frame)
    }
}

/// One frame in the ring.
pub struct Entry {
    /// The frame.
    pub frame: Arc<MediaFrame>,
    /// A player may start here (a video keyframe; any audio frame of a stream without video).
    pub start: bool,
    /// The bytes for the first two serialisers that asked (RTMP at the node's chunk size
    /// and HTTP-FLV, nearly always).
    bytes: [OnceCell<(u64, Bytes)>; 2],
    /// MPEG-TS packets of the frame, made in arrival order once a TS player joined.
    ts: OnceCell<Bytes>,
}

impl Entry {
    /// The frame's bytes as `with` writes them, made once and shared.
    pub fn bytes<S: Serialise>(&self, with: &S) -> Bytes {
        if with.in_order() {
            return self.ts.get().cloned().unwrap_or_default();
        }
        let key = with.key();
        for slot in &self.bytes {
            let (cached_key, bytes) = slot.get_or_init(|| (key, serialise(with, &self.frame)));
            if *cached_key == key {
                return bytes.clone();
            }
        }
        serialise(with, &self.frame)
    }
}

fn encode_ts(ts: &mut crate::http_live::TsEncoder, frame: &MediaFrame) -> Bytes {
    use crate::http_live::Encoder;
    let mut out = BytesMut::new();
    ts.encode(frame, &mut out);
    out.freeze()
}

fn serialise<S: Serialise>(with: &S, frame: &MediaFrame) -> Bytes {
    let mut out = BytesMut::new();
    with.write(&mut out, frame);
    out.freeze()
}

/// How far (ms) the newest caption may be from a joining player's start and still be shown to
/// it.
pub const CAPTION_FRESH_MS: i64 = 10_000;

/// `caption` restamped at `start` (a joining player's first frame), when it is within
/// [`CAPTION_FRESH_MS`] of it: what the ring and the stream actor prime a joiner with.
pub fn caption_for_joiner(caption: &MediaFrame, start: &MediaFrame) -> Option<Arc<MediaFrame>> {
    if (start.dts_ms() - caption.dts_ms()).abs() > CAPTION_FRESH_MS {
        return None;
    }
    let mut copy = caption.clone();
    (copy.timebase, copy.dts, copy.pts) = (start.timebase, start.dts, start.dts);
    Some(Arc::new(copy))
}

/// Limits of a ring.
#[derive(Debug, Clone, Copy)]
pub struct RingLimits {
    /// A player further behind the newest frame than this loses frames up to a start point
    /// (`stream.player_queue_frames`).
    pub window_frames: usize,
    /// Frames since the last start point kept for players that join (0: no GOP cache).
    pub gop_frames: usize,
    /// Bytes held at most.
    pub max_bytes: usize,
}

/// A stream's recent frames, numbered from 0 in arrival order.
pub struct Ring {
    entries: VecDeque<Entry>,
    /// Number of the first entry held.
    base: u64,
    bytes: usize,
    limits: RingLimits,
    /// The newest start point, while held.
    last_start: Option<u64>,
    metadata: Option<Arc<MediaFrame>>,
    /// The newest caption (timed script data) and its frame number, shown to a joining player
    /// that starts after it, while still fresh.
    caption: Option<(u64, Arc<MediaFrame>)>,
    video_config: Option<Arc<MediaFrame>>,
    audio_config: Option<Arc<MediaFrame>>,
    /// The stream's MPEG-TS muxer, once a TS player joined.
    ts: Option<crate::http_live::TsEncoder>,
    /// An audio frame went by: players starting at a keyframe skip the audio before it.
    seen_audio: bool,
}

impl Ring {
    /// An empty ring.
    pub fn new(limits: RingLimits) -> Ring {
        Ring::starting_at(limits, 0)
    }

    /// An empty ring whose first frame gets number `head` (a ring started over keeps its
    /// numbering, so its players' cursors stay at or before it).
    pub fn starting_at(limits: RingLimits, head: u64) -> Ring {
        Ring { entries: VecDeque::new(), base: head, bytes: 0, limits, last_start: None, metadata: None, caption: None, video_config: None, audio_config: None, ts: None, seen_audio: false }
    }

    /// An empty ring in place of this one (after a panic), keeping the numbering (so every
    /// cursor is at or before its start) and the stream's headers (so players start again at
    /// a keyframe with them).
    pub fn started_over(&self) -> Ring {
        let mut ring = Ring::starting_at(self.limits, self.head());
        ring.metadata = self.metadata.clone();
        ring.caption = self.caption.clone();
        ring.video_config = self.video_config.clone();
        ring.audio_config = self.audio_config.clone();
        ring.seen_audio = self.seen_audio;
        ring
    }

    /// Number the next frame will get.
    pub fn head(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Number of the oldest frame held.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of payload held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The limits.
    pub fn limits(&self) -> RingLimits {
        self.limits
    }

    /// Frame number `seq`, if held.
    pub fn get(&self, seq: u64) -> Option<&Entry> {
        seq.checked_sub(self.base).and_then(|i| self.entries.get(i as usize))
    }

    /// Appends a frame, keeping the headers a joining player needs, and lets go of what no
    /// limit keeps.
    pub fn push(&mut self, frame: Arc<MediaFrame>) {
        if frame.track == TrackKind::Data {
            // The stream's onMetaData primes a joining player (whether or not it came marked
            // as a header); timed script data (captions) goes to the players of now only.
            if estuary_protocols::container::flv::is_metadata(&frame.payload) {
                self.metadata = Some(frame.clone());
            } else if estuary_protocols::container::flv::is_text_data(&frame.payload) {
                self.caption = Some((self.head(), frame.clone()));
            }
        } else if frame.config {
            match frame.track {
                TrackKind::Video => self.video_config = Some(frame.clone()),
                TrackKind::Audio => self.audio_config = Some(frame.clone()),
                TrackKind::Data => {}
            }
        }
        let start = !frame.config
            && match frame.track {
                TrackKind::Video => frame.keyframe,
                TrackKind::Audio => self.video_config.is_none(),
                TrackKind::Data => false,
            };
        if start {
            self.last_start = Some(self.head());
        }
        self.seen_audio |= frame.track == TrackKind::Audio;
        self.bytes += frame.payload.len();
        let entry = Entry { frame, start, bytes: Default::default(), ts: OnceCell::new() };
        if let Some(ts) = self.ts.as_mut() {
            let _ = entry.ts.set(encode_ts(ts, &entry.frame));
        }
        self.entries.push_back(entry);
        self.trim();
    }

    /// Starts making MPEG-TS packets for every frame from the newest start point on (what a
    /// TS player can be given); later frames get theirs as they arrive.
    pub fn enable_ts(&mut self) {
        if self.ts.is_some() {
            return;
        }
        use crate::http_live::Encoder;
        let mut ts = crate::http_live::TsEncoder::default();
        let mut scratch = BytesMut::new();
        for header in [&self.video_config, &self.audio_config].into_iter().flatten() {
            ts.encode(header, &mut scratch);
        }
        let from = self.last_start().unwrap_or(self.head());
        for seq in from..self.head() {
            if let Some(entry) = self.get(seq) {
                let _ = entry.ts.set(encode_ts(&mut ts, &entry.frame));
            }
        }
        self.ts = Some(ts);
    }

    /// PAT and PMT as the stream's MPEG-TS muxer writes them now, for a TS player starting
    /// at a frame that does not carry them (any audio frame of a stream without video; tables
    /// go out with video keyframes only).
    fn ts_tables_for(&self, seq: u64) -> Option<Bytes> {
        let entry = self.get(seq)?;
        if entry.frame.is_video_keyframe() {
            return None;
        }
        self.ts.as_ref()?.tables()
    }

    fn trim(&mut self) {
        let limits = self.limits;
        while self.entries.len() > 1 {
            let len = self.entries.len();
            let over_bytes = self.bytes > limits.max_bytes;
            // Frames from the last start point stay for joiners, within their own limit.
            let joiners_need = self.last_start.is_some_and(|start| self.base >= start && self.head() - start <= limits.gop_frames as u64 && limits.gop_frames > 0);
            let over_window = len > limits.window_frames && !joiners_need;
            if !over_bytes && !over_window {
                break;
            }
            let Some(entry) = self.entries.pop_front() else { break };
            self.bytes -= entry.frame.payload.len();
            if self.last_start == Some(self.base) {
                self.last_start = None;
            }
            self.base += 1;
        }
    }

    /// The first start point at or after `from`.
    pub fn next_start(&self, from: u64) -> Option<u64> {
        let from = from.max(self.base);
        (from..self.head()).find(|&seq| self.get(seq).is_some_and(|e| e.start))
    }

    /// Where a joining player starts: the newest start point (the cached GOP), if the GOP
    /// cache holds one.
    pub fn join_point(&self) -> Option<u64> {
        if self.limits.gop_frames == 0 {
            return None;
        }
        self.last_start.filter(|&start| start >= self.base && self.head() - start <= self.limits.gop_frames as u64)
    }

    /// The newest start point held, whatever the GOP cache says (for a player that lost its
    /// place).
    pub fn last_start(&self) -> Option<u64> {
        self.last_start.filter(|&start| start >= self.base)
    }

    /// The bytes of frames `from..head` as `with` writes them, in one piece (what every
    /// caught-up player of one format is owed on a tick).
    pub fn concat<S: Serialise>(&self, from: u64, with: &S) -> Bytes {
        let mut out = BytesMut::new();
        for seq in from.max(self.base)..self.head() {
            if let Some(entry) = self.get(seq) {
                out.extend_from_slice(&entry.bytes(with));
            }
        }
        out.freeze()
    }

    /// Metadata and sequence headers to send before starting at the frame numbered `seq`,
    /// stamped with its decode time (metadata keeps 0). The newest caption comes last, at the
    /// start's time, when it came before the start and is fresh ([`caption_for_joiner`]): the
    /// text other players have on screen, and what tells a player such as FFmpeg, which looks
    /// for tracks when it starts, that the stream has one.
    pub fn headers_for(&self, seq: u64) -> Vec<Arc<MediaFrame>> {
        let dts = self.get(seq).map(|e| e.frame.dts);
        let mut headers: Vec<Arc<MediaFrame>> = [&self.metadata, &self.video_config, &self.audio_config]
            .into_iter()
            .flatten()
            .map(|header| match dts {
                Some(dts) if header.track != TrackKind::Data && header.dts != dts => {
                    let mut copy = MediaFrame::clone(header);
                    copy.dts = dts;
                    copy.pts = dts;
                    Arc::new(copy)
                }
                _ => header.clone(),
            })
            .collect();
        // A caption at or after the start is in the ring and comes in its turn.
        if let (Some((at, caption)), Some(start)) = (&self.caption, self.get(seq).map(|e| &e.frame)) {
            headers.extend((*at < seq).then(|| caption_for_joiner(caption, start)).flatten());
        }
        headers
    }
}

/// A player's place in a ring: the next frame it gets, and its own bytes to send first
/// (control messages, headers, the rest of a frame written in part).
pub struct Cursor {
    /// Next frame.
    next: u64,
    /// Waiting for a start point (a new player without a cached GOP, or one that lost its
    /// place).
    waiting: bool,
    /// Lost its place and has not started again: frames passed are losses.
    losing: bool,
    /// Audio presented before this time is skipped after (re)starting at a keyframe, so the
    /// tracks start together.
    audio_floor_ms: Option<i64>,
    own: super::pending::Pending,
}

/// Pieces per write (Linux's IOV_MAX is 1024).
pub const MAX_PIECES: usize = 256;
/// Bytes per write at most.
pub const MAX_WRITE: usize = 256 * 1024;

/// What one write covers, to be passed back to [`Cursor::advance`].
#[derive(Default)]
pub struct Plan {
    /// The bytes, in order.
    pub pieces: Vec<Bytes>,
    /// How many of the pieces are the cursor's own, and their bytes.
    own: usize,
    own_bytes: usize,
    /// Frame number of each of the other pieces.
    seqs: Vec<u64>,
    /// Where the cursor is once everything is written.
    end: u64,
    /// Media frames the player lost on the way to this plan (fell out of the window).
    pub lost_frames: u64,
}

impl Plan {
    /// Bytes in the plan.
    pub fn len(&self) -> usize {
        self.pieces.iter().map(Bytes::len).sum()
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

impl Cursor {
    /// A player joining `ring`: at the cached GOP with headers first, or waiting for the next
    /// start point.
    pub fn join<S: Serialise>(ring: &Ring, with: &S) -> Cursor {
        let mut cursor = Cursor { next: ring.head(), waiting: true, losing: false, audio_floor_ms: None, own: Default::default() };
        if let Some(start) = ring.join_point() {
            cursor.start_at(ring, start, with);
        }
        cursor
    }

    /// Queues bytes of the player's own, sent before the next frame.
    pub fn push_own(&mut self, bytes: Bytes) {
        self.own.push(bytes);
    }

    /// Takes the player's own bytes waiting (when delivery hands the connection back).
    pub fn take_own(&mut self) -> Vec<Bytes> {
        self.own.take_all()
    }

    /// Bytes of the player's own waiting.
    pub fn own_len(&self) -> usize {
        self.own.len()
    }

    /// The player has everything it can get from the ring now.
    pub fn caught_up(&self, ring: &Ring) -> bool {
        self.own.is_empty() && (self.next >= ring.head() || self.waiting)
    }

    /// Has a place in the stream (not waiting for a start point).
    pub fn started(&self) -> bool {
        !self.waiting
    }

    /// Lost its place and has not started again.
    pub fn losing(&self) -> bool {
        self.losing
    }

    fn start_at<S: Serialise>(&mut self, ring: &Ring, seq: u64, with: &S) {
        for header in ring.headers_for(seq) {
            self.push_own(serialise(with, &header));
        }
        if with.in_order() {
            if let Some(tables) = ring.ts_tables_for(seq) {
                self.push_own(tables);
            }
        }
        self.next = seq;
        self.waiting = false;
        self.losing = false;
        // Without audio in the stream there is nothing to skip (and the player stays on the
        // shared path, [`Cursor::plain_from`]).
        self.audio_floor_ms = ring.get(seq).filter(|e| ring.seen_audio && e.frame.track == TrackKind::Video).map(|e| e.frame.pts_ms());
    }

    /// Starts over at the next start point from `at` (the ring it was in started over).
    pub fn wait_for_start(&mut self, at: u64) {
        self.next = at;
        self.waiting = true;
        self.losing = false;
        self.audio_floor_ms = None;
    }

    /// Media frames (not headers) numbered `from..to`, counting those no longer held as media.
    fn media_between(ring: &Ring, from: u64, to: u64) -> u64 {
        (from..to).filter(|&seq| ring.get(seq).is_none_or(|e| !e.frame.config)).count() as u64
    }

    /// Where a player in the plain case stands: nothing of its own to send, started, not
    /// skipping audio, within the window. Such players are owed exactly the frames from
    /// there to the newest, the same bytes for all of them ([`Ring::concat`]).
    pub fn plain_from(&self, ring: &Ring) -> Option<u64> {
        let plain = self.own.is_empty() && !self.waiting && self.audio_floor_ms.is_none() && self.next >= ring.base() && ring.head().saturating_sub(self.next) <= ring.limits().window_frames as u64;
        plain.then_some(self.next)
    }

    /// Records that `written` bytes of `batch` (the frames up to `to`) went out; the rest is
    /// the player's own to send first.
    pub fn advance_plain(&mut self, to: u64, batch: &Bytes, written: usize) {
        if written < batch.len() {
            self.push_own(batch.slice(written..));
        }
        self.next = to;
    }

    /// The next write: the player's own bytes, then frames from its place. A player further
    /// behind than the ring's window (or behind what it holds) loses frames up to the newest
    /// start point, or waits for the next one; a waiting player starts at the next start
    /// point with fresh headers.
    pub fn plan<S: Serialise>(&mut self, ring: &Ring, with: &S) -> Plan {
        let mut plan = Plan::default();
        let head = ring.head();
        if !self.waiting && (self.next < ring.base() || head.saturating_sub(self.next) > ring.limits().window_frames as u64) {
            self.losing = true;
            match ring.last_start().filter(|&start| start > self.next) {
                Some(start) => {
                    plan.lost_frames += Self::media_between(ring, self.next, start);
                    self.start_at(ring, start, with);
                }
                None => {
                    plan.lost_frames += Self::media_between(ring, self.next, head);
                    self.next = head;
                    self.waiting = true;
                }
            }
        }
        if self.waiting {
            match ring.next_start(self.next) {
                Some(start) => {
                    if self.losing {
                        plan.lost_frames += Self::media_between(ring, self.next, start);
                    }
                    self.start_at(ring, start, with);
                }
                None => {
                    if self.losing {
                        plan.lost_frames += Self::media_between(ring, self.next, head);
                    }
                    self.next = head;
                }
            }
        }
        let mut bytes = 0;
        for piece in self.own.pieces().take(MAX_PIECES) {
            bytes += piece.len();
            plan.pieces.push(piece.clone());
        }
        plan.own = plan.pieces.len();
        plan.own_bytes = bytes;
        plan.end = self.next;
        if bytes < self.own.len() || self.waiting {
            return plan;
        }
        let mut seq = self.next;
        while seq < head && plan.pieces.len() < MAX_PIECES && bytes < MAX_WRITE {
            let Some(entry) = ring.get(seq) else { break };
            seq += 1;
            let frame = &entry.frame;
            if let Some(floor) = self.audio_floor_ms {
                if frame.track == TrackKind::Audio && !frame.config {
                    if frame.pts_ms() < floor {
                        continue;
                    }
                    self.audio_floor_ms = None;
                }
            }
            let piece = entry.bytes(with);
            bytes += piece.len();
            plan.pieces.push(piece);
            plan.seqs.push(seq - 1);
        }
        plan.end = seq;
        plan
    }

    /// Records that the first `written` bytes of `plan` went out.
    pub fn advance(&mut self, plan: Plan, mut written: usize) {
        self.own.consume(written.min(plan.own_bytes));
        if written < plan.own_bytes {
            return;
        }
        written -= plan.own_bytes;
        for (piece, seq) in plan.pieces.into_iter().skip(plan.own).zip(plan.seqs) {
            if piece.len() <= written {
                written -= piece.len();
                self.next = seq + 1;
            } else {
                if written > 0 {
                    // The rest of this frame goes out before anything else.
                    self.own.push_front(piece.slice(written..));
                    self.next = seq + 1;
                } else {
                    self.next = seq;
                }
                return;
            }
        }
        self.next = plan.end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use estuary_protocols::media::{Codec, Timebase};

    /// Writes a frame as its track letter and its decode time, so outputs read as text.
    struct Text;

    impl Serialise for Text {
        fn key(&self) -> u64 {
            1
        }
        fn write(&self, out: &mut BytesMut, frame: &MediaFrame) {
            let kind = match (frame.track, frame.config, frame.keyframe) {
                (TrackKind::Video, true, _) => "VH",
                (TrackKind::Audio, true, _) => "AH",
                (TrackKind::Video, false, true) => "K",
                (TrackKind::Video, false, false) => "v",
                (TrackKind::Audio, false, _) => "a",
                (TrackKind::Data, _, _) if estuary_protocols::container::flv::is_metadata(&frame.payload) => "M",
                (TrackKind::Data, _, _) => "T",
            };
            out.put_slice(format!("{kind}{} ", frame.dts).as_bytes());
        }
    }

    fn frame(track: TrackKind, dts: i64, keyframe: bool, config: bool) -> Arc<MediaFrame> {
        let (codec, payload) = match track {
            TrackKind::Audio => (Codec::Aac, Bytes::from_static(&[0; 100])),
            TrackKind::Video => (Codec::H264, Bytes::from_static(&[0; 100])),
            TrackKind::Data => {
                let metadata = [estuary_protocols::amf0::Value::String("onMetaData".into()), estuary_protocols::amf0::Value::EcmaArray(Vec::new())];
                (Codec::ScriptData, estuary_protocols::amf0::encode_all(&metadata).freeze())
            }
        };
        Arc::new(MediaFrame { track, codec, dts, pts: dts, timebase: Timebase::MILLIS, keyframe, config, payload })
    }

    fn limits(window: usize) -> RingLimits {
        RingLimits { window_frames: window, gop_frames: 1000, max_bytes: 1 << 20 }
    }

    /// A stream with headers, then GOPs of one keyframe and three frames with audio between.
    fn feed(ring: &mut Ring, from: i64, gops: usize) {
        if from == 0 {
            ring.push(frame(TrackKind::Data, 0, false, false));
            ring.push(frame(TrackKind::Video, 0, false, true));
            ring.push(frame(TrackKind::Audio, 0, false, true));
        }
        for g in 0..gops as i64 {
            let base = from + g * 400;
            for i in 0..4 {
                ring.push(frame(TrackKind::Video, base + i * 100, i == 0, false));
                ring.push(frame(TrackKind::Audio, base + i * 100 + 10, false, false));
            }
        }
    }

    /// Writes everything the cursor can get, `step` bytes at a time.
    fn drain(cursor: &mut Cursor, ring: &Ring, step: usize) -> (String, u64) {
        let (out, lost) = drain_with(cursor, ring, &Text, step);
        (String::from_utf8(out).unwrap(), lost)
    }

    /// The bytes `with` gives, written `step` at a time, and the frames lost on the way.
    fn drain_with<S: Serialise>(cursor: &mut Cursor, ring: &Ring, with: &S, step: usize) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        let mut lost = 0;
        loop {
            let plan = cursor.plan(ring, with);
            lost += plan.lost_frames;
            if plan.is_empty() {
                return (out, lost);
            }
            let all: Vec<u8> = plan.pieces.iter().flat_map(|p| p.iter().copied()).collect();
            let n = all.len().min(step);
            out.extend_from_slice(&all[..n]);
            cursor.advance(plan, n);
        }
    }

    #[test]
    fn a_joiner_gets_headers_then_the_cached_gop_then_live_frames() {
        let mut ring = Ring::new(limits(64));
        feed(&mut ring, 0, 2);
        let mut cursor = Cursor::join(&ring, &Text);
        let (out, lost) = drain(&mut cursor, &ring, 1 << 20);
        assert_eq!(out, "M0 VH400 AH400 K400 a410 v500 a510 v600 a610 v700 a710 ");
        assert_eq!(lost, 0);
        assert!(cursor.caught_up(&ring));
        feed(&mut ring, 800, 1);
        assert_eq!(drain(&mut cursor, &ring, 1 << 20).0, "K800 a810 v900 a910 v1000 a1010 v1100 a1110 ");
    }

    #[test]
    fn a_caption_reaches_the_players_of_now_and_a_joiner_gets_the_metadata_then_the_fresh_caption() {
        let mut ring = Ring::new(limits(64));
        feed(&mut ring, 0, 1);
        let mut early = Cursor::join(&ring, &Text);
        drain(&mut early, &ring, 1 << 20);
        ring.push(Arc::new(estuary_protocols::container::flv::text_data_frame(350, "hello", "eng", (None, None))));
        feed(&mut ring, 400, 1);
        let (out, _) = drain(&mut early, &ring, 1 << 20);
        assert!(out.starts_with("T350 K400 "), "{out}");
        let (out, _) = drain(&mut Cursor::join(&ring, &Text), &ring, 1 << 20);
        assert!(out.starts_with("M0 VH400 AH400 T400 K400 "), "{out}");
        // One after the start point is not primed: the joiner gets it once, in its place.
        ring.push(Arc::new(estuary_protocols::container::flv::text_data_frame(450, "again", "eng", (None, None))));
        let (out, _) = drain(&mut Cursor::join(&ring, &Text), &ring, 1 << 20);
        assert!(out.starts_with("M0 VH400 AH400 K400 ") && out.matches("T450").count() == 1, "{out}");
        // A caption long gone is not shown to a joiner.
        feed(&mut ring, 20_000, 1);
        let (out, _) = drain(&mut Cursor::join(&ring, &Text), &ring, 1 << 20);
        assert!(out.starts_with("M0 VH20000 AH20000 K20000 "), "{out}");
    }

    #[test]
    fn writes_of_any_size_give_the_same_bytes() {
        let mut ring = Ring::new(limits(64));
        feed(&mut ring, 0, 2);
        let whole = drain(&mut Cursor::join(&ring, &Text), &ring, 1 << 20).0;
        for step in [1, 3, 7, 50] {
            let mut cursor = Cursor::join(&ring, &Text);
            cursor.push_own(Bytes::from_static(b"C "));
            let (out, _) = drain(&mut cursor, &ring, step);
            assert_eq!(out, whole.replacen("K400", "C K400", 1), "step {step}");
        }
    }

    #[test]
    fn audio_before_the_keyframe_is_skipped_so_tracks_start_together() {
        let mut ring = Ring::new(limits(64));
        ring.push(frame(TrackKind::Video, 0, false, true));
        ring.push(frame(TrackKind::Audio, 0, false, true));
        ring.push(frame(TrackKind::Video, 1000, true, false));
        ring.push(frame(TrackKind::Audio, 990, false, false));
        ring.push(frame(TrackKind::Audio, 1010, false, false));
        ring.push(frame(TrackKind::Audio, 995, false, false));
        let (out, _) = drain(&mut Cursor::join(&ring, &Text), &ring, 1 << 20);
        assert_eq!(out, "VH1000 AH1000 K1000 a1010 a995 ");
    }

    #[test]
    fn without_a_cached_gop_a_joiner_waits_for_the_next_keyframe() {
        let mut ring = Ring::new(RingLimits { gop_frames: 0, ..limits(64) });
        feed(&mut ring, 0, 1);
        let mut cursor = Cursor::join(&ring, &Text);
        assert_eq!(drain(&mut cursor, &ring, 1 << 20), (String::new(), 0));
        feed(&mut ring, 400, 1);
        assert_eq!(drain(&mut cursor, &ring, 1 << 20).0, "M0 VH400 AH400 K400 a410 v500 a510 v600 a610 v700 a710 ");
    }

    #[test]
    fn a_player_behind_the_window_loses_whole_gops_and_restarts_with_headers() {
        let mut ring = Ring::new(limits(12));
        feed(&mut ring, 0, 1);
        let mut cursor = Cursor::join(&ring, &Text);
        // Takes its first two frames after the headers, then stalls for three GOPs.
        let plan = cursor.plan(&ring, &Text);
        let n = plan.pieces.iter().take(5).map(Bytes::len).sum();
        cursor.advance(plan, n);
        feed(&mut ring, 400, 3);
        assert!(!cursor.caught_up(&ring));
        let (out, lost) = drain(&mut cursor, &ring, 1 << 20);
        assert!(cursor.losing() == false && cursor.caught_up(&ring));
        assert_eq!(out, "M0 VH1200 AH1200 K1200 a1210 v1300 a1310 v1400 a1410 v1500 a1510 ");
        // Frames 2..8 of the first GOP and the two GOPs after it: 6 + 16.
        assert_eq!(lost, 22);
    }

    #[test]
    fn the_ring_keeps_the_gop_for_joiners_and_lets_go_by_window_and_bytes() {
        let mut ring = Ring::new(limits(4));
        feed(&mut ring, 0, 3);
        // The last GOP (8 frames) is kept though the window is 4.
        assert_eq!(ring.len(), 8);
        assert_eq!(ring.get(ring.base()).map(|e| e.start), Some(true));
        let mut tight = Ring::new(RingLimits { window_frames: 4, gop_frames: 1000, max_bytes: 350 });
        feed(&mut tight, 0, 3);
        assert!(tight.bytes() <= 350 && tight.len() == 3, "{} frames, {} bytes", tight.len(), tight.bytes());
        // The GOP went with the bytes: a joiner waits.
        assert_eq!(tight.join_point(), None);
    }

    #[test]
    fn caught_up_players_share_one_piece_with_the_same_bytes() {
        let mut ring = Ring::new(limits(64));
        feed(&mut ring, 0, 1);
        let mut cursor = Cursor::join(&ring, &Text);
        drain(&mut cursor, &ring, 1 << 20);
        feed(&mut ring, 400, 1);
        let from = cursor.plain_from(&ring).expect("caught up and started");
        let batch = ring.concat(from, &Text);
        assert_eq!(&batch[..], b"K400 a410 v500 a510 v600 a610 v700 a710 ");
        // A partial write leaves the rest as the player's own, sent first.
        cursor.advance_plain(ring.head(), &batch, 5);
        assert_eq!(cursor.plain_from(&ring), None);
        feed(&mut ring, 800, 1);
        let (out, _) = drain(&mut cursor, &ring, 1 << 20);
        assert!(out.starts_with("a410 v500 a510 v600 a610 v700 a710 K800 "), "{out}");
        assert_eq!(cursor.plain_from(&ring), Some(ring.head()));
        // A player that is waiting, or behind the window, is not plain.
        assert_eq!(Cursor::join(&Ring::new(RingLimits { gop_frames: 0, ..limits(64) }), &Text).plain_from(&ring), None);
    }

    #[test]
    fn a_partly_written_frame_finishes_before_control_bytes() {
        let mut ring = Ring::new(limits(64));
        feed(&mut ring, 0, 1);
        let mut cursor = Cursor::join(&ring, &Text);
        let plan = cursor.plan(&ring, &Text);
        let headers: usize = plan.pieces.iter().take(3).map(Bytes::len).sum();
        // Headers and two bytes of the keyframe ("K0 ").
        cursor.advance(plan, headers + 2);
        cursor.push_own(Bytes::from_static(b"C "));
        let (out, _) = drain(&mut cursor, &ring, 1 << 20);
        assert!(out.starts_with(" C a10 "), "{out}");
    }

    /// MPEG-TS, made by the ring in arrival order.
    struct InOrder;

    impl Serialise for InOrder {
        fn key(&self) -> u64 {
            2
        }
        fn write(&self, _: &mut BytesMut, _: &MediaFrame) {}
        fn in_order(&self) -> bool {
            true
        }
    }

    fn aac(dts: i64, config: bool) -> Arc<MediaFrame> {
        // AAC-LC, 44.1 kHz, stereo.
        let payload = if config { Bytes::from_static(&[0x12, 0x10]) } else { Bytes::from_static(&[0x21; 64]) };
        Arc::new(MediaFrame { track: TrackKind::Audio, codec: Codec::Aac, dts, pts: dts, timebase: Timebase::MILLIS, keyframe: false, config, payload })
    }

    fn pids(ts: &[u8]) -> Vec<u16> {
        ts.chunks(188).map(|p| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2])).collect()
    }

    #[test]
    fn a_ts_player_joining_an_audio_only_stream_gets_the_tables_first() {
        let mut ring = Ring::new(limits(256));
        ring.push(aac(0, true));
        ring.enable_ts();
        for i in 0..20 {
            ring.push(aac(i * 23, false));
        }
        // Tables went out with the first frame only; a player joining now starts at the
        // newest audio frame and must still be told the programme.
        let mut cursor = Cursor::join(&ring, &InOrder);
        let (out, _) = drain_with(&mut cursor, &ring, &InOrder, 1 << 20);
        assert!(!out.is_empty() && out.len() % 188 == 0, "{} bytes", out.len());
        let pids = pids(&out);
        assert_eq!(pids[0], 0, "first packet is not the PAT: {pids:?}");
        assert!(pids.len() > 2 && pids[2] != 0, "tables then audio: {pids:?}");
    }

    #[test]
    fn players_of_a_stream_without_audio_stay_on_the_shared_path() {
        let mut ring = Ring::new(limits(64));
        ring.push(frame(TrackKind::Video, 0, false, true));
        for i in 0..8 {
            ring.push(frame(TrackKind::Video, i * 100, i % 4 == 0, false));
        }
        let mut cursor = Cursor::join(&ring, &Text);
        drain(&mut cursor, &ring, 1 << 20);
        ring.push(frame(TrackKind::Video, 800, false, false));
        assert_eq!(cursor.plain_from(&ring), Some(ring.head() - 1));
        // With audio in the stream, a joiner skips audio before its keyframe first.
        ring.push(frame(TrackKind::Audio, 0, false, true));
        ring.push(frame(TrackKind::Video, 900, true, false));
        let joiner = Cursor::join(&ring, &Text);
        assert_eq!(joiner.plain_from(&ring), None);
    }

    #[test]
    fn after_the_ring_started_over_players_wait_for_a_keyframe() {
        let mut ring = Ring::new(limits(64));
        feed(&mut ring, 0, 1);
        let mut cursor = Cursor::join(&ring, &Text);
        drain(&mut cursor, &ring, 1 << 20);
        let mut ring = ring.started_over();
        cursor.wait_for_start(ring.head());
        ring.push(frame(TrackKind::Video, 500, false, false));
        ring.push(frame(TrackKind::Audio, 510, false, false));
        assert_eq!(drain(&mut cursor, &ring, 1 << 20), (String::new(), 0));
        ring.push(frame(TrackKind::Video, 800, true, false));
        ring.push(frame(TrackKind::Audio, 810, false, false));
        assert_eq!(drain(&mut cursor, &ring, 1 << 20).0, "M0 VH800 AH800 K800 a810 ");
    }
}
