//! A live CMAF package: one stream's frames cut into fMP4 segments made of parts (CMAF
//! chunks), kept in memory for a window, and rendered as an LL-HLS media playlist
//! (RFC 8216bis) and a DASH MPD. Sans-IO: frames and the wall clock go in; parts, segments and
//! manifest text come out.
//!
//! Cutting rules:
//! - A segment starts at a start point (a video keyframe; any audio frame in an audio-only
//!   stream) and ends at the first start point at or after the segment target.
//! - A part ends before the frame that would carry it past the part target (judged by the
//!   video frame step), so every part's duration is at most the target when frames are
//!   regular; a segment's end also ends its last part.
//! - Each part is one `moof` + `mdat` of every track (for HLS, muxed) and one per track (for
//!   DASH, one representation per track). A segment is the concatenation of its parts; only
//!   its first part carries a `styp`.
//! - A segment that grows past the byte cap before its next start point ends there (its parts
//!   are already out); the next segment waits for a start point and follows a discontinuity.
//!
//! Captions (`onTextData` script data) become cues of a WebVTT rendition: one `.vtt` file per
//! complete segment, holding the cues that overlap it. Timed metadata (`onCuePoint` events
//! made by the API) becomes an ID3 tag in an `emsg` box at the head of the part it falls in.
//!
//! Segment numbers never repeat within a package; a package continued after a republish keeps
//! counting (with a discontinuity and a new initialization segment).

use crate::container::fmp4::{self, to_timescale, Track, TrackFragment};
use crate::container::{flv, id3, timed_text};
use crate::media::{Codec, MediaFrame, Timebase, TrackKind};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Arc;

/// How a package cuts and keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Segment target, ms (segments end at the first start point at or after it).
    pub segment_ms: i64,
    /// Part target, ms.
    pub part_ms: i64,
    /// Complete segments kept and listed (fewer when they would hold more than twice
    /// `max_segment_bytes`: memory stays bounded whatever a publisher sends).
    pub window: usize,
    /// A segment that would hold more than this many bytes (its HLS and DASH forms together)
    /// before its next start point is ended there.
    pub max_segment_bytes: usize,
}

/// One part (CMAF chunk) of a segment.
#[derive(Debug)]
pub struct Part {
    /// Duration, ms.
    pub duration_ms: i64,
    /// Starts with a keyframe (or the stream has no video).
    pub independent: bool,
    /// `moof` + `mdat` of every track (HLS).
    pub muxed: Bytes,
    /// One `moof` + `mdat` per track, in the order of the package's tracks (DASH); empty when
    /// the track had no frame in this part.
    pub tracks: Vec<Bytes>,
}

/// One segment, complete or in progress.
#[derive(Debug)]
pub struct Segment {
    /// Media sequence number (HLS) and `$Number$` (DASH).
    pub sequence: u64,
    /// Media time of its start, ms.
    pub start_ms: i64,
    /// Its parts so far.
    pub parts: Vec<Arc<Part>>,
    /// No more parts will come.
    pub complete: bool,
    /// Follows a discontinuity (a gap, a republish, new codec parameters).
    pub discontinuity: bool,
    /// The initialization segment version its parts need.
    pub init: u32,
    /// Per track, the span of its samples in the track's timescale (start, end).
    pub spans: Vec<Option<(i64, i64)>>,
    /// Bytes of its muxed parts.
    bytes: usize,
    /// Bytes it holds, muxed and per track (the byte cap).
    stored: usize,
    /// Once complete and first asked for: the whole segment muxed (HLS), made once and shared
    /// by every request for it (it may double what the segment holds while it is listed).
    whole_muxed: std::sync::OnceLock<Bytes>,
    /// The same per track (DASH), each made the first time it is asked for.
    whole_tracks: std::sync::OnceLock<Vec<std::sync::OnceLock<Bytes>>>,
}

impl Segment {
    /// Duration so far, ms (the sum of its parts).
    pub fn duration_ms(&self) -> i64 {
        self.parts.iter().map(|p| p.duration_ms).sum()
    }

    /// The whole segment of every track (HLS): its parts concatenated.
    pub fn muxed(&self) -> Bytes {
        let made = || concat(self.parts.iter().map(|p| &p.muxed));
        if self.complete {
            self.whole_muxed.get_or_init(made).clone()
        } else {
            made()
        }
    }

    /// The segment of track `index` (DASH).
    pub fn track(&self, index: usize) -> Bytes {
        let made = || concat(self.parts.iter().filter_map(|p| p.tracks.get(index)));
        if !self.complete {
            return made();
        }
        let slots = self.whole_tracks.get_or_init(|| (0..self.parts.iter().map(|p| p.tracks.len()).max().unwrap_or(0)).map(|_| std::sync::OnceLock::new()).collect());
        match slots.get(index) {
            Some(slot) => slot.get_or_init(made).clone(),
            None => Bytes::new(),
        }
    }
}

fn concat<'a>(parts: impl Iterator<Item = &'a Bytes>) -> Bytes {
    let parts: Vec<&Bytes> = parts.collect();
    if parts.len() == 1 {
        return parts[0].clone();
    }
    let mut out = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    out.freeze()
}

/// A duration in ms as whole seconds, rounded to the nearest (how EXTINF compares with the
/// target duration).
fn rounded_s(ms: i64) -> u64 {
    (ms.max(0) as u64 + 500) / 1000
}

/// The DASH representation id of a track.
pub fn representation(track: &Track) -> &'static str {
    if track.kind() == TrackKind::Video {
        "video"
    } else {
        "audio"
    }
}

/// An initialization segment version the current one replaced, kept while segments of the
/// window were cut with it: HLS plays them through its `EXT-X-MAP`, DASH lists them in a period
/// of their own.
struct InitVersion {
    version: u32,
    tracks: Vec<Track>,
    muxed: Bytes,
    per_track: Vec<Bytes>,
    /// Wall clock (Unix ms) at media time zero while this version was cut.
    clock_offset_ms: Option<i64>,
    /// Where its DASH period sits, fixed when its first segment was complete.
    period: Option<PeriodPin>,
    /// The publish that cut it (see [`Package::epoch`]).
    epoch: u64,
}

/// A DASH period's place, fixed once it is first listed: DASH-IF IOP forbids changing a
/// published period's `start` (or the MPD's `availabilityStartTime`), so neither moves when
/// earlier periods leave the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PeriodPin {
    /// The period's start, after the package's anchor (`availabilityStartTime`).
    start_ms: i64,
    /// The media time at the period's start (`presentationTimeOffset`).
    offset_ms: i64,
}

/// A caption cue of the WebVTT rendition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    /// Media time it shows from, ms.
    pub start_ms: i64,
    /// And until.
    pub end_ms: i64,
    /// Its text.
    pub text: String,
    /// The initialization segment version of the segments it was timed against (a republish
    /// may start media time again: cues of one publish never land in another's segments);
    /// none while no segment is open (after a republish, before its first keyframe), when it
    /// takes the next segment's.
    init: Option<u32>,
}

/// Cues kept at most (older ones leave first, even from segments still listed: a `.vtt`
/// file may then lose a cue), whatever the window holds.
const MAX_CUES: usize = 512;

/// `emsg` boxes waiting for the next part at most (timed metadata posted while a publisher
/// stalls mid-segment); older ones leave first.
const MAX_PENDING_EVENTS: usize = 64;

/// How long a caption with no end of its own shows, ms: about as long as it takes to read,
/// within bounds.
pub fn default_cue_ms(text: &str) -> i64 {
    (1_000 + 60 * text.chars().count() as i64).clamp(2_000, 6_000)
}

/// Where a caption shows on the media timeline, as every packaged output times it: from its
/// own start (or `at_ms`, where it went out), but never before `floor` (what is out already:
/// a recogniser's caption comes after its speech), until its own end when that leaves more
/// than half a second, else for the time it takes to read.
pub fn cue_span(caption: &flv::TextData, at_ms: i64, floor: Option<i64>) -> (i64, i64) {
    let start_ms = caption.start_ms.unwrap_or(at_ms).max(floor.unwrap_or(i64::MIN));
    let end_ms = match caption.end_ms {
        Some(end) if end > start_ms.saturating_add(500) => end,
        _ => start_ms.saturating_add(default_cue_ms(&caption.text)),
    };
    (start_ms, end_ms)
}

/// One stream's live package.
pub struct Package {
    settings: Settings,
    video_config: Option<Arc<MediaFrame>>,
    audio_config: Option<Arc<MediaFrame>>,
    /// New configuration seen: the tracks are rebuilt when the next segment opens.
    configs_changed: bool,
    /// The tracks of the current initialization segment.
    pub tracks: Vec<Track>,
    /// The current initialization segment's version.
    pub init: u32,
    /// Initialization segment of every track (HLS).
    pub init_muxed: Bytes,
    /// Initialization segment per track (DASH).
    pub init_tracks: Vec<Bytes>,
    /// Earlier initialization segments that segments of the window still need.
    previous_inits: Vec<InitVersion>,
    /// The clock offset of the publish before a republish, kept for its initialization
    /// segment's period until the new one takes over.
    resumed_offset_ms: Option<i64>,
    /// The DASH `availabilityStartTime`: the clock of the first version to complete a
    /// segment, fixed from then on.
    anchor_ms: Option<i64>,
    /// The current version's period, fixed when its first segment was complete.
    period: Option<PeriodPin>,
    /// Publishes the package has seen (one more at each [`Package::resume`]): versions cut
    /// in the same publish share its clock.
    epoch: u64,
    /// The publish that cut the current version.
    version_epoch: u64,
    /// Complete segments of the window, then the one in progress (if any).
    pub segments: VecDeque<Segment>,
    next_sequence: u64,
    /// Discontinuities that left the window.
    pub discontinuity_sequence: u64,
    pending: Vec<Arc<MediaFrame>>,
    pending_bytes: usize,
    part_start_ms: i64,
    fragment_sequence: u32,
    video_step_ms: i64,
    audio_step_ms: i64,
    last_video_ms: Option<i64>,
    last_audio_ms: Option<i64>,
    audio_next: Vec<Option<i64>>,
    discontinuity: bool,
    /// Segments ended early at the byte cap.
    pub capped: u64,
    /// The longest complete segment so far, whole seconds: the target duration never falls
    /// below it once announced (RFC 8216bis §4.4.3.1: it must not change).
    longest_s: u64,
    /// The stream ended (`EXT-X-ENDLIST`).
    pub ended: bool,
    /// The wall clock (Unix ms) at media time zero: the least `arrival - dts` of the video
    /// frames so far (of the audio frames without video), so frames replayed from a GOP cache
    /// (older than their arrival) do not move it.
    /// `EXT-X-PROGRAM-DATE-TIME` is a segment's start on this clock, and it is the DASH
    /// `availabilityStartTime` (a segment is available when its end has arrived).
    pub clock_offset_ms: Option<i64>,
    /// Caption cues of the segments in the window (and the one in progress), oldest first.
    pub cues: VecDeque<Cue>,
    /// The newest caption's language (the subtitle rendition's `LANGUAGE`).
    pub caption_language: Option<String>,
    /// The stream has had a caption: the MPD's text representation, once there, stays.
    captioned: bool,
    /// `emsg` boxes for the next part.
    events: Vec<Bytes>,
    /// The last `emsg` id given.
    event_id: u32,
}

impl Package {
    /// An empty package whose first segment is numbered `first_sequence`.
    pub fn new(settings: Settings, first_sequence: u64) -> Package {
        Package::continuing(settings, first_sequence, 0)
    }

    /// An empty package numbered on from an earlier one of the stream: segments from
    /// `first_sequence`, initialization segments from `first_init` (names a cache may hold are
    /// never reused for other bytes).
    pub fn continuing(settings: Settings, first_sequence: u64, first_init: u32) -> Package {
        Package {
            settings,
            video_config: None,
            audio_config: None,
            configs_changed: false,
            tracks: Vec::new(),
            init: first_init,
            init_muxed: Bytes::new(),
            init_tracks: Vec::new(),
            previous_inits: Vec::new(),
            resumed_offset_ms: None,
            anchor_ms: None,
            period: None,
            epoch: 0,
            version_epoch: 0,
            segments: VecDeque::new(),
            next_sequence: first_sequence,
            discontinuity_sequence: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            part_start_ms: 0,
            fragment_sequence: 1,
            video_step_ms: 40,
            audio_step_ms: 21,
            last_video_ms: None,
            last_audio_ms: None,
            audio_next: Vec::new(),
            discontinuity: false,
            capped: 0,
            longest_s: 0,
            ended: false,
            clock_offset_ms: None,
            cues: VecDeque::new(),
            caption_language: None,
            captioned: false,
            events: Vec::new(),
            event_id: 0,
        }
    }

    /// The settings it cuts with.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The package continues with a new publish of its stream: new parameters are awaited,
    /// and the next segment follows a discontinuity with the numbering continued.
    pub fn resume(&mut self) {
        self.close(None);
        self.ended = false;
        self.discontinuity = true;
        self.video_config = None;
        self.audio_config = None;
        self.configs_changed = true;
        self.last_video_ms = None;
        self.last_audio_ms = None;
        // A new publish may start its timestamps afresh: its clock is learned again (the old
        // one stays with the old publish's initialization segment).
        // An attempt that never cut a segment does not replace the clock of the publish whose
        // segments are still current.
        self.resumed_offset_ms = self.resumed_offset_ms.or(self.clock_offset_ms);
        self.clock_offset_ms = None;
        self.epoch += 1;
    }

    /// The number the next segment gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The version the next initialization segment of a package continuing this one gets.
    pub fn next_init(&self) -> u32 {
        self.init.saturating_add(1)
    }

    /// Adds a frame that arrived at wall-clock `wall_ms`; true when a part or segment was
    /// added (something new to serve).
    pub fn push(&mut self, frame: Arc<MediaFrame>, wall_ms: i64) -> bool {
        if frame.track == TrackKind::Data {
            self.on_data(&frame);
            return false;
        }
        if frame.config {
            return self.on_config(frame);
        }
        let has_video = self.video_config.is_some();
        let start_point = if has_video { frame.is_video_keyframe() } else { frame.track == TrackKind::Audio };
        let dts = frame.dts_ms();
        // The clock follows the video when there is video: a publisher's encoder may hold video
        // back (lookahead) while its audio goes out early, and a part is out when its video is.
        let offset = wall_ms - dts;
        let clocked = !has_video || frame.track == TrackKind::Video;
        if clocked && self.clock_offset_ms.is_none_or(|least| offset < least) {
            self.clock_offset_ms = Some(offset);
        }
        let mut changed = false;
        if !self.open() {
            if !start_point {
                return false;
            }
            self.open_segment(dts);
        } else {
            let start_ms = self.segments.back().map(|s| s.start_ms).unwrap_or(dts);
            // Held twice once cut (muxed for HLS, per track for DASH).
            let bytes = self.segments.back().map(|s| s.stored).unwrap_or(0) + 2 * (self.pending_bytes + frame.payload.len());
            if start_point && (dts - start_ms >= self.settings.segment_ms || bytes > self.settings.max_segment_bytes) {
                self.close(Some(dts));
                self.open_segment(dts);
                changed = true;
            } else if bytes > self.settings.max_segment_bytes {
                // Too big to hold until the next start point: the segment ends here (its parts
                // are out already) and the next one starts at a start point, after a
                // discontinuity.
                self.close(Some(dts));
                self.discontinuity = true;
                self.capped += 1;
                return true;
            } else {
                let cuts = if has_video { frame.track == TrackKind::Video } else { frame.track == TrackKind::Audio };
                let step = if has_video { self.video_step_ms } else { self.audio_step_ms };
                if cuts && !self.pending.is_empty() && dts - self.part_start_ms + step > self.settings.part_ms {
                    changed |= self.close_part(dts);
                }
            }
        }
        match frame.track {
            TrackKind::Video => {
                if let Some(last) = self.last_video_ms.filter(|last| dts > *last) {
                    self.video_step_ms = dts - last;
                }
                self.last_video_ms = Some(dts);
            }
            _ => {
                if let Some(last) = self.last_audio_ms.filter(|last| dts > *last) {
                    self.audio_step_ms = dts - last;
                }
                self.last_audio_ms = Some(dts);
            }
        }
        self.pending_bytes += frame.payload.len();
        self.pending.push(frame);
        changed
    }

    /// Script data: a caption becomes a cue, timed metadata an event of the part in progress
    /// (none is in progress: it is for nobody, and goes).
    fn on_data(&mut self, frame: &MediaFrame) {
        let at_ms = frame.dts_ms();
        if let Some(caption) = flv::parse_text_data(&frame.payload) {
            // Complete segments are out already: a cue starts no earlier than the segment in
            // progress (a recogniser's caption arrives after the speech it transcribes).
            let floor = self.segments.back().map(|s| if s.complete { s.start_ms + s.duration_ms() } else { s.start_ms });
            let (start_ms, end_ms) = cue_span(&caption, at_ms, floor);
            let init = self.segments.back().filter(|s| !s.complete).map(|s| s.init);
            self.cues.push_back(Cue { start_ms, end_ms, text: caption.text, init });
            self.captioned = true;
            while self.cues.len() > MAX_CUES {
                self.cues.pop_front();
            }
            if caption.language.is_some() {
                self.caption_language = caption.language;
            }
        } else if let Some(json) = flv::parse_cue_point(&frame.payload) {
            if self.open() {
                let tag = id3::txxx_tag("estuary.metadata", &json);
                self.event_id = self.event_id.wrapping_add(1);
                self.events.push(fmp4::emsg_v1(1000, at_ms.max(0) as u64, u32::MAX, self.event_id, id3::EMSG_SCHEME, "", &tag));
                if self.events.len() > MAX_PENDING_EVENTS {
                    self.events.remove(0);
                }
            }
        }
    }

    /// Frames were lost before this point: the segment in progress ends, the next follows a
    /// discontinuity.
    pub fn gap(&mut self) -> bool {
        let closed = self.close(None);
        self.discontinuity = true;
        closed
    }

    /// The stream ended: the segment in progress ends.
    pub fn finish(&mut self) {
        self.close(None);
        self.ended = true;
    }

    /// A segment is in progress.
    fn open(&self) -> bool {
        self.segments.back().is_some_and(|s| !s.complete)
    }

    fn on_config(&mut self, frame: Arc<MediaFrame>) -> bool {
        let slot = if frame.track == TrackKind::Video { &mut self.video_config } else { &mut self.audio_config };
        if slot.as_ref().is_some_and(|old| old.codec == frame.codec && old.payload == frame.payload) {
            return false;
        }
        let had = slot.is_some();
        *slot = Some(frame);
        self.configs_changed = true;
        let init = self.init;
        let in_use = self.segments.iter().any(|s| s.init == init && !s.parts.is_empty());
        if !had && !in_use && self.segments.back().is_some_and(|s| !s.complete && s.parts.is_empty()) {
            // A track's first parameters arriving just after the segment opened (a TS or
            // WebRTC publisher's audio after its first keyframe): the segment takes the track
            // rather than starting the stream without it.
            self.rebuild_tracks(true);
            let (init, tracks) = (self.init, self.tracks.len());
            if let Some(segment) = self.segments.back_mut() {
                segment.init = init;
                segment.spans = vec![None; tracks];
            }
            return false;
        }
        if had {
            // New parameters: the segment in progress ends and the next (with a new
            // initialization segment) follows a discontinuity.
            let closed = self.close(None);
            self.discontinuity = true;
            return closed;
        }
        false
    }

    fn open_segment(&mut self, dts: i64) {
        if self.configs_changed || self.tracks.is_empty() {
            self.rebuild_tracks(false);
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.segments.push_back(Segment {
            sequence,
            start_ms: dts,
            parts: Vec::new(),
            complete: false,
            discontinuity: std::mem::take(&mut self.discontinuity),
            init: self.init,
            spans: vec![None; self.tracks.len()],
            bytes: 0,
            stored: 0,
            whole_muxed: std::sync::OnceLock::new(),
            whole_tracks: std::sync::OnceLock::new(),
        });
        self.part_start_ms = dts;
        // Cues that came while no segment was open belong to this one's version.
        let init = self.init;
        for cue in self.cues.iter_mut().filter(|c| c.init.is_none()) {
            cue.init = Some(init);
        }
    }

    /// New tracks and initialization segments; with `unused`, the current initialization
    /// segment is replaced in place (no part was cut with it yet).
    fn rebuild_tracks(&mut self, unused: bool) {
        let mut tracks = Vec::new();
        for config in [&self.video_config, &self.audio_config].into_iter().flatten() {
            if let Some(track) = Track::from_config(tracks.len() as u32 + 1, config) {
                tracks.push(track);
            }
        }
        if !self.init_muxed.is_empty() && !unused {
            // A new track set is a discontinuity too; the old initialization segment stays
            // while segments of the window need it.
            if tracks.iter().map(|t| t.codec).ne(self.tracks.iter().map(|t| t.codec)) {
                self.discontinuity = true;
            }
            let clock_offset_ms = self.resumed_offset_ms.take().or(self.clock_offset_ms);
            self.previous_inits.push(InitVersion { version: self.init, tracks: std::mem::take(&mut self.tracks), muxed: std::mem::take(&mut self.init_muxed), per_track: std::mem::take(&mut self.init_tracks), clock_offset_ms, period: self.period.take(), epoch: self.version_epoch });
            self.init += 1;
        }
        self.version_epoch = self.epoch;
        self.init_muxed = fmp4::init_segment(&tracks);
        // Each DASH representation's initialization segment has its one track as track 1.
        self.init_tracks = tracks.iter().map(|t| fmp4::init_segment(&[Track { id: 1, ..t.clone() }])).collect();
        self.audio_next = vec![None; tracks.len()];
        self.tracks = tracks;
        self.configs_changed = false;
    }

    /// Ends the part in progress at `end_ms`; true when it had frames.
    fn close_part(&mut self, end_ms: i64) -> bool {
        let frames = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let start_ms = self.part_start_ms;
        self.part_start_ms = end_ms;
        let Some(segment) = self.segments.back_mut().filter(|s| !s.complete) else { return false };
        if frames.is_empty() {
            return false;
        }
        let mut per_track = fmp4::frames_by_track(&self.tracks, &frames);
        for (index, track) in self.tracks.iter().enumerate() {
            if track.codec == Codec::Aac {
                per_track[index] = contiguous_audio(&mut self.audio_next[index], std::mem::take(&mut per_track[index]), track);
            }
        }
        let first_part = segment.parts.is_empty();
        let next_dts = |track: &Track, first: &MediaFrame| (track.kind() == TrackKind::Video).then(|| Timebase::MILLIS.rescale(end_ms, first.timebase));
        let sequence = self.fragment_sequence;
        self.fragment_sequence = self.fragment_sequence.wrapping_add(1).max(1);
        let fragments: Vec<TrackFragment<'_>> = self
            .tracks
            .iter()
            .zip(&per_track)
            .filter(|(_, frames)| !frames.is_empty())
            .map(|(track, frames)| TrackFragment { track, frames, next_dts: next_dts(track, &frames[0]) })
            .collect();
        if fragments.is_empty() {
            return false;
        }
        let events = std::mem::take(&mut self.events);
        let muxed = fmp4::media_fragment_with_events(sequence, &fragments, first_part, &events);
        let mut tracks = Vec::with_capacity(self.tracks.len());
        for (index, track) in self.tracks.iter().enumerate() {
            let frames = &per_track[index];
            let Some(first) = frames.first() else {
                tracks.push(Bytes::new());
                continue;
            };
            let alone = Track { id: 1, ..track.clone() };
            let fragment = TrackFragment { track: &alone, frames, next_dts: next_dts(track, first) };
            let first_of_track = segment.spans[index].is_none();
            // The events go with the first representation (the video, when there is one).
            let events: &[Bytes] = if index == 0 { &events } else { &[] };
            tracks.push(fmp4::media_fragment_with_events(sequence, &[fragment], first_of_track, events));
            let start = to_timescale(track, first.dts, first.timebase);
            let end = match next_dts(track, first) {
                Some(next) => to_timescale(track, next, first.timebase),
                None => {
                    let last = frames.last().map(|f| to_timescale(track, f.dts, f.timebase)).unwrap_or(start);
                    let previous = frames.len().checked_sub(2).map(|i| to_timescale(track, frames[i].dts, frames[i].timebase));
                    last + match (track.codec, previous) {
                        (Codec::Aac, _) => 1024,
                        (_, Some(previous)) => (last - previous).max(1),
                        _ => 1,
                    }
                }
            };
            let span = segment.spans[index].get_or_insert((start, end));
            span.1 = end;
        }
        let independent = frames.iter().find(|f| f.track == TrackKind::Video).map(|f| f.keyframe).unwrap_or(true);
        segment.bytes += muxed.len();
        segment.stored += muxed.len() + tracks.iter().map(|t| t.len()).sum::<usize>();
        segment.parts.push(Arc::new(Part { duration_ms: (end_ms - start_ms).max(1), independent, muxed, tracks }));
        true
    }

    /// Ends the segment in progress (its last part at `end_ms`, or one frame step past its
    /// last frame); true when something was added or ended.
    fn close(&mut self, end_ms: Option<i64>) -> bool {
        if !self.open() {
            return false;
        }
        let last = self.pending.iter().map(|f| f.dts_ms()).max();
        let step = if self.video_config.is_some() { self.video_step_ms } else { self.audio_step_ms };
        let end = end_ms.or(last.map(|l| l + step)).unwrap_or(self.part_start_ms);
        self.close_part(end);
        let empty = match self.segments.back_mut() {
            Some(segment) => {
                segment.complete = true;
                self.longest_s = self.longest_s.max(rounded_s(segment.duration_ms()));
                segment.parts.is_empty()
            }
            None => true,
        };
        // The current version's first complete segment fixes its period (and the first
        // version's, the MPD's anchor): the first version's media time zero is the anchor; a
        // version cut in the same publish as the one before follows that one's period (one
        // clock, so the two never overlap as the clock estimate is refined); after a
        // republish, a period starts at its first segment on the new publish's clock, never
        // before the previous period's end.
        if let (false, None, Some(clock), Some(first)) = (empty, self.period, self.clock_offset_ms, self.segments.back().map(|s| s.start_ms.max(0))) {
            let previous = self.previous_inits.last().and_then(|old| old.period.map(|pin| (old, pin)));
            self.period = Some(match (self.anchor_ms, previous) {
                (None, _) => {
                    self.anchor_ms = Some(clock);
                    PeriodPin { start_ms: 0, offset_ms: 0 }
                }
                (Some(_), Some((old, pin))) if old.epoch == self.version_epoch => PeriodPin { start_ms: pin.start_ms + first - pin.offset_ms, offset_ms: first },
                (Some(anchor), previous) => {
                    let previous_end = previous.and_then(|(old, pin)| self.segments.iter().rev().find(|s| s.init == old.version).map(|s| pin.start_ms + s.start_ms + s.duration_ms() - pin.offset_ms));
                    PeriodPin { start_ms: (clock + first - anchor).max(previous_end.unwrap_or(i64::MIN)), offset_ms: first }
                }
            });
        }
        let stored = |segments: &VecDeque<Segment>| segments.iter().map(|s| s.stored).sum::<usize>();
        while self.segments.iter().filter(|s| s.complete).count() > self.settings.window.max(1)
            || (self.segments.iter().filter(|s| s.complete).count() > 1 && stored(&self.segments) > self.settings.max_segment_bytes.saturating_mul(2))
        {
            if let Some(old) = self.segments.pop_front() {
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
            }
        }
        let segments = &self.segments;
        self.previous_inits.retain(|old| segments.iter().any(|s| s.init == old.version));
        // Cues whose segments all left the window go too.
        self.cues.retain(|cue| cue.init.is_none() || segments.iter().any(|s| Some(s.init) == cue.init && cue.end_ms > s.start_ms));
        true
    }

    /// The WebVTT file of segment `sequence` (complete): the cues overlapping it, on media
    /// time, with an `X-TIMESTAMP-MAP` tying its local time to the segment's media time in
    /// 90 kHz (RFC 8216 §3.5), so players place the cues on the video's timeline.
    pub fn render_vtt(&self, sequence: u64) -> Option<String> {
        let segment = self.segment(sequence).filter(|s| s.complete)?;
        let start = segment.start_ms.max(0);
        let end = start + segment.duration_ms();
        let mut out = String::from("WEBVTT\n");
        // Not wrapped at 33 bits: the fMP4 decode times it maps to do not wrap either.
        let _ = writeln!(out, "X-TIMESTAMP-MAP=MPEGTS:{},LOCAL:{}", start as u64 * 90, vtt_time(start));
        for cue in self.cues.iter().filter(|c| c.init == Some(segment.init) && c.start_ms < end && c.end_ms > start) {
            let _ = write!(out, "\n{} --> {}\n{}\n", vtt_time(cue.start_ms.max(0)), vtt_time(cue.end_ms.max(0)), timed_text::webvtt_payload(&cue.text));
        }
        Some(out)
    }

    /// The media playlist of the WebVTT rendition: the complete segments of the media
    /// playlist (same numbers, durations, discontinuities and dates), each as
    /// `<stream>-<n>.vtt`.
    pub fn render_vtt_playlist(&self, stream: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "#EXTM3U");
        let _ = writeln!(out, "#EXT-X-VERSION:3");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration());
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.segments.front().map(|s| s.sequence).unwrap_or(self.next_sequence));
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
        }
        for segment in self.segments.iter().filter(|s| s.complete && !s.parts.is_empty()) {
            if segment.discontinuity {
                let _ = writeln!(out, "#EXT-X-DISCONTINUITY");
            }
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", crate::clock::rfc3339(self.clock_of(segment.init).or(self.clock_offset_ms).unwrap_or(0) + segment.start_ms));
            let _ = writeln!(out, "#EXTINF:{:.3},", segment.duration_ms() as f64 / 1000.0);
            let _ = writeln!(out, "{stream}-{}.vtt", segment.sequence);
        }
        if self.ended {
            let _ = writeln!(out, "#EXT-X-ENDLIST");
        }
        out
    }

    /// The segment numbered `sequence`, if in the window.
    pub fn segment(&self, sequence: u64) -> Option<&Segment> {
        // Numbers rise through the window (with holes where a segment came to nothing).
        let index = self.segments.binary_search_by_key(&sequence, |s| s.sequence).ok()?;
        self.segments.get(index)
    }

    /// The HLS initialization segment of version `version`, while anything needs it.
    pub fn hls_init(&self, version: u32) -> Option<Bytes> {
        if version == self.init {
            return Some(self.init_muxed.clone()).filter(|b| !b.is_empty());
        }
        self.previous_inits.iter().find(|old| old.version == version).map(|old| old.muxed.clone())
    }

    /// The tracks of initialization segment `version`, while anything needs it.
    fn tracks_of(&self, version: u32) -> Option<&[Track]> {
        if version == self.init {
            return Some(&self.tracks);
        }
        self.previous_inits.iter().find(|old| old.version == version).map(|old| old.tracks.as_slice())
    }

    /// The DASH initialization segment of representation `rep` of version `version`, while
    /// anything needs it.
    pub fn dash_init(&self, rep: &str, version: u32) -> Option<Bytes> {
        let index = self.tracks_of(version)?.iter().position(|t| representation(t) == rep)?;
        if version == self.init {
            return self.init_tracks.get(index).cloned();
        }
        self.previous_inits.iter().find(|old| old.version == version).and_then(|old| old.per_track.get(index).cloned())
    }

    /// The newest segment number and, if it is in progress, the number of its parts.
    pub fn last(&self) -> Option<(u64, Option<usize>)> {
        let last = self.segments.back()?;
        Some((last.sequence, (!last.complete).then_some(last.parts.len())))
    }

    /// The newest part: its segment and index (`EXT-X-RENDITION-REPORT`'s LAST-MSN and
    /// LAST-PART).
    pub fn last_part(&self) -> Option<(u64, usize)> {
        let segment = self.segments.iter().rev().find(|s| !s.parts.is_empty())?;
        Some((segment.sequence, segment.parts.len() - 1))
    }

    /// True once segment `msn` has part `part` (or, with no part, is complete), or the package
    /// can no longer get it (ended, or the segment left the window).
    pub fn has(&self, msn: u64, part: Option<usize>) -> bool {
        if self.ended || self.segments.front().is_some_and(|s| s.sequence > msn) {
            return true;
        }
        match self.segment(msn) {
            Some(segment) => match part {
                Some(part) => segment.complete || segment.parts.len() > part,
                None => segment.complete,
            },
            None => false,
        }
    }

    /// The HLS target duration, s: the segment target rounded up, raised to cover every
    /// segment listed now or before (it only rises: players may keep the first one they saw).
    pub fn target_duration(&self) -> u64 {
        let configured = (self.settings.segment_ms as u64).div_ceil(1000);
        let longest = self.segments.iter().map(|s| rounded_s(s.duration_ms())).max().unwrap_or(0);
        configured.max(longest).max(self.longest_s).max(1)
    }

    /// The LL-HLS media playlist. URIs are relative: `<stream>-init-<v>.mp4`,
    /// `<stream>-<n>.m4s`, `<stream>-<n>-p<i>.m4s`. With `skip`, segments older than the
    /// skip boundary are replaced by `EXT-X-SKIP` (a delta update). `reports` are the other
    /// renditions' (playlist URI, LAST-MSN, LAST-PART).
    pub fn render_hls(&self, stream: &str, skip: bool, reports: &[(String, u64, Option<usize>)]) -> String {
        let mut out = String::new();
        let target = self.target_duration();
        let part_target = self.settings.part_ms as f64 / 1000.0;
        let skip_until = 6 * target;
        let _ = writeln!(out, "#EXTM3U");
        let _ = writeln!(out, "#EXT-X-VERSION:9");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
        let _ = writeln!(out, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={:.1},PART-HOLD-BACK={:.3}", skip_until as f64, 3.0 * part_target);
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.3}");
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.segments.front().map(|s| s.sequence).unwrap_or(self.next_sequence));
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
        }
        let _ = writeln!(out, "#EXT-X-INDEPENDENT-SEGMENTS");
        // Segments whose end is older than the skip boundary (counted from the playlist's
        // end) may be skipped; only whole segments from the front.
        let total_ms: i64 = self.segments.iter().map(|s| s.duration_ms()).sum();
        let mut skipped = 0;
        if skip {
            let mut end_ms = 0;
            for segment in &self.segments {
                end_ms += segment.duration_ms();
                if !segment.complete || total_ms - end_ms <= skip_until as i64 * 1000 || segment.discontinuity {
                    break;
                }
                skipped += 1;
            }
            if skipped > 0 {
                let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
            }
        }
        // Parts are listed for the segments of the last three target durations.
        let parts_from_ms = total_ms - 3 * target as i64 * 1000;
        let mut start_ms = 0;
        let mut current_map = None;
        for segment in self.segments.iter().skip(skipped) {
            let listed_from = start_ms;
            start_ms += segment.duration_ms();
            if segment.parts.is_empty() {
                continue;
            }
            if segment.discontinuity {
                let _ = writeln!(out, "#EXT-X-DISCONTINUITY");
            }
            if current_map != Some(segment.init) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{stream}-init-{}.mp4\"", segment.init);
                current_map = Some(segment.init);
            }
            // Each segment on the clock of the publish it was cut from.
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", crate::clock::rfc3339(self.clock_of(segment.init).or(self.clock_offset_ms).unwrap_or(0) + segment.start_ms));
            if start_ms > parts_from_ms || !segment.complete {
                let _ = listed_from;
                for (index, part) in segment.parts.iter().enumerate() {
                    let independent = if part.independent { ",INDEPENDENT=YES" } else { "" };
                    let _ = writeln!(out, "#EXT-X-PART:DURATION={:.3},URI=\"{stream}-{}-p{index}.m4s\"{independent}", part.duration_ms as f64 / 1000.0, segment.sequence);
                }
            }
            if segment.complete {
                let _ = writeln!(out, "#EXTINF:{:.3},", segment.duration_ms() as f64 / 1000.0);
                let _ = writeln!(out, "{stream}-{}.m4s", segment.sequence);
            }
        }
        if self.ended {
            let _ = writeln!(out, "#EXT-X-ENDLIST");
            return out;
        }
        let (msn, part) = match self.segments.back() {
            Some(last) if !last.complete => (last.sequence, last.parts.len()),
            _ => (self.next_sequence, 0),
        };
        let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{stream}-{msn}-p{part}.m4s\"");
        for (uri, last_msn, last_part) in reports {
            match last_part {
                Some(part) => {
                    let _ = writeln!(out, "#EXT-X-RENDITION-REPORT:URI=\"{uri}\",LAST-MSN={last_msn},LAST-PART={part}");
                }
                None => {
                    let _ = writeln!(out, "#EXT-X-RENDITION-REPORT:URI=\"{uri}\",LAST-MSN={last_msn}");
                }
            }
        }
        out
    }

    /// The DASH MPD: one period per initialization segment version with complete segments in
    /// the window (a codec change or a republish starts a new one), one representation per
    /// track, `$Time$` addressing, the complete segments in a `SegmentTimeline`. `now_ms` is
    /// the wall clock (`publishTime`, `UTCTiming`); `target_latency_ms` goes into the
    /// `ServiceDescription`.
    ///
    /// Times: `availabilityStartTime` is the first period's clock (wall time at its media time
    /// zero), so its period starts at zero with no offset, as a single-period MPD always did.
    /// A later period starts where its first segment sits on the wall clock, and its
    /// `presentationTimeOffset` is that segment's media time: each segment stays at the wall
    /// time its own publish's clock gives it.
    pub fn render_mpd(&self, stream: &str, now_ms: i64, target_latency_ms: u64) -> String {
        let segment_s = self.settings.segment_ms as f64 / 1000.0;
        let part_s = self.settings.part_ms as f64 / 1000.0;
        // The versions with complete segments, in window order (the current one alone before
        // any segment is complete).
        let mut versions: Vec<u32> = Vec::new();
        for segment in self.segments.iter().filter(|s| s.complete && !s.parts.is_empty()) {
            if versions.last() != Some(&segment.init) {
                versions.push(segment.init);
            }
        }
        versions.retain(|v| *v == self.init || self.previous_inits.iter().any(|old| old.version == *v));
        if versions.is_empty() {
            versions.push(self.init);
        }
        // Before any period is fixed (no complete segment yet), the clock of what is there.
        let ast_ms = self.anchor_ms.or_else(|| versions.first().and_then(|v| self.clock_of(*v))).or(self.clock_offset_ms).unwrap_or(0);
        let mut periods = Vec::new();
        for (position, &version) in versions.iter().enumerate() {
            let Some(tracks) = self.tracks_of(version) else { continue };
            let listed: Vec<&Segment> = self.segments.iter().filter(|s| s.complete && s.init == version && !s.parts.is_empty()).collect();
            let pin = if version == self.init { self.period } else { self.previous_inits.iter().find(|old| old.version == version).and_then(|old| old.period) };
            let (start_s, offset_ms) = match pin {
                Some(pin) => (pin.start_ms as f64 / 1000.0, pin.offset_ms),
                // Not listed before (only the segment being cut has it): where it would be fixed.
                None if position == 0 => (0.0, 0),
                None => {
                    let first_ms = listed.first().map(|s| s.start_ms).unwrap_or(0);
                    ((self.clock_of(version).unwrap_or(ast_ms) + first_ms - ast_ms) as f64 / 1000.0, first_ms.max(0))
                }
            };
            let live = version == self.init;
            let representations = tracks
                .iter()
                .enumerate()
                .map(|(index, track)| {
                    let id = representation(track);
                    let mut timeline: Vec<crate::manifest::dash::TimelineEntry> = listed
                        .iter()
                        .filter_map(|s| s.spans.get(index).copied().flatten())
                        .map(|(start, end)| crate::manifest::dash::TimelineEntry { start: start.max(0) as u64, duration: (end - start).max(1) as u64 })
                        .collect();
                    let seconds: f64 = timeline.iter().map(|e| e.duration as f64 / track.timescale as f64).sum();
                    // Low latency: the segment being cut is announced too, with the duration of
                    // the one before (or what it has so far, if longer), so a player asks for it
                    // early and gets it chunk by chunk; the next MPD gives its real duration.
                    let last = timeline.last().copied();
                    let growing = self.segments.back().filter(|s| live && !s.complete && s.init == version).and_then(|s| s.spans.get(index).copied().flatten());
                    if let (Some(last), Some((start, end))) = (last, growing) {
                        let start = start.max(0) as u64;
                        if start == last.start + last.duration {
                            let so_far = (end - start as i64).max(1) as u64;
                            timeline.push(crate::manifest::dash::TimelineEntry { start, duration: last.duration.max(so_far) });
                        }
                    }
                    let bytes: usize = listed.iter().filter_map(|s| s.parts.iter().map(|p| p.tracks.get(index).map(|b| b.len())).sum::<Option<usize>>()).sum();
                    crate::manifest::dash::Representation {
                        id: id.to_string(),
                        content_type: id,
                        language: None,
                        codecs: track.codec_string(),
                        bandwidth: ((bytes as f64 * 8.0) / seconds.max(0.001)) as u64,
                        width: track.width,
                        height: track.height,
                        sample_rate: track.sample_rate,
                        channels: track.channels,
                        timescale: track.timescale,
                        initialization: format!("{stream}-{id}-init-v{version}.mp4"),
                        media: format!("{stream}-{id}-v{version}-t$Time$.m4s"),
                        start_number: listed.first().map(|s| s.sequence).unwrap_or(0),
                        presentation_time_offset: (offset_ms as u64).saturating_mul(track.timescale as u64) / 1000,
                        timeline,
                    }
                })
                .filter(|r| !r.timeline.is_empty())
                .collect::<Vec<_>>();
            let mut representations = representations;
            // Captions, once the stream has had one: WebVTT in ISO BMFF, one text segment per
            // complete segment (made on request from the cues, like the HLS .vtt files), on
            // media time in milliseconds.
            if self.has_captions() {
                let timeline: Vec<crate::manifest::dash::TimelineEntry> = listed.iter().map(|s| crate::manifest::dash::TimelineEntry { start: s.start_ms.max(0) as u64, duration: s.duration_ms().max(1) as u64 }).collect();
                if !timeline.is_empty() {
                    representations.push(crate::manifest::dash::Representation {
                        id: TEXT.to_string(),
                        content_type: TEXT,
                        language: self.caption_language.clone(),
                        codecs: "wvtt".into(),
                        bandwidth: 1000,
                        width: 0,
                        height: 0,
                        sample_rate: 0,
                        channels: 0,
                        timescale: timed_text::TIMESCALE,
                        initialization: format!("{stream}-{TEXT}-init-v{version}.mp4"),
                        media: format!("{stream}-{TEXT}-v{version}-t$Time$.m4s"),
                        start_number: listed.first().map(|s| s.sequence).unwrap_or(0),
                        presentation_time_offset: offset_ms as u64,
                        timeline,
                    });
                }
            }
            periods.push(crate::manifest::dash::Period { id: version.to_string(), start_s, representations });
        }
        let mpd = crate::manifest::dash::Mpd {
            availability_start_time: crate::clock::rfc3339(ast_ms),
            publish_time: crate::clock::rfc3339(now_ms),
            minimum_update_period: part_s.max(0.1),
            min_buffer_time: part_s.max(0.5),
            time_shift_buffer_depth: segment_s * self.settings.window as f64,
            suggested_presentation_delay: target_latency_ms as f64 / 1000.0,
            periods,
            ended: self.ended,
            low_latency: Some(crate::manifest::dash::LowLatency { target_latency_ms, availability_time_offset: (segment_s - part_s).max(0.0) }),
        };
        mpd.render()
    }

    /// The wall clock (Unix ms) at media time zero of version `version`'s segments. Until a new
    /// publish cuts its first segment, the current version's segments are the previous
    /// publish's, on its clock.
    fn clock_of(&self, version: u32) -> Option<i64> {
        let (epoch, saved) = if version == self.init {
            (self.version_epoch, self.resumed_offset_ms)
        } else {
            let old = self.previous_inits.iter().find(|old| old.version == version)?;
            (old.epoch, old.clock_offset_ms)
        };
        // Versions of the publish going on share its clock, refined as frames arrive.
        if epoch == self.epoch {
            self.clock_offset_ms.or(saved)
        } else {
            saved
        }
    }

    /// Whether the stream has had a caption (the DASH manifest then offers a text
    /// representation).
    pub fn has_captions(&self) -> bool {
        self.captioned
    }

    /// The initialization segment of the DASH text representation of version `version` (one
    /// WebVTT track; the same for every version, named per version like the others).
    pub fn dash_text_init(&self, version: u32) -> Option<Bytes> {
        self.tracks_of(version)?;
        Some(fmp4::init_segment(&[timed_text::webvtt_track(1)]))
    }

    /// The DASH text segment of version `init` starting at `time_ms` (media ms): the complete
    /// media segment starting there, as WebVTT samples of the cues that overlap it (empty
    /// samples between, so it covers the segment exactly).
    pub fn dash_text_segment(&self, init: u32, time_ms: u64) -> Option<Bytes> {
        let segment = self.segments.iter().find(|s| s.complete && s.init == init && !s.parts.is_empty() && s.start_ms.max(0) as u64 == time_ms)?;
        let start = segment.start_ms.max(0);
        let end = start + segment.duration_ms().max(1);
        let cues: Vec<timed_text::Cue> = self.cues.iter().filter(|c| c.init == Some(init)).map(|c| timed_text::Cue { start_ms: c.start_ms, end_ms: c.end_ms, text: c.text.clone() }).collect();
        let track = timed_text::webvtt_track(1);
        let samples = timed_text::samples_in(timed_text::Format::WebVtt, &cues, start, end);
        let fragment = fmp4::TrackFragment { track: &track, frames: &samples, next_dts: Some(end) };
        Some(fmp4::media_segment(segment.sequence.min(u32::MAX as u64) as u32, &[fragment]))
    }

    /// The DASH segment of representation `rep` (`video`/`audio`) of initialization segment
    /// `init` starting at `time` (in the track's timescale): its track index and sequence
    /// number. Segments of earlier initialization segments are served while the window (and
    /// so the MPD's earlier periods) lists them.
    pub fn dash_segment(&self, rep: &str, init: u32, time: u64) -> Option<(usize, u64)> {
        let index = self.tracks_of(init)?.iter().position(|t| representation(t) == rep)?;
        let segment = self.segments.iter().find(|s| s.init == init && s.spans.get(index).copied().flatten().is_some_and(|(start, _)| start.max(0) as u64 == time))?;
        Some((index, segment.sequence))
    }

    /// Where the next DASH segment of track `index` will start (the end of the newest one),
    /// for a player asking ahead of the timeline (low-latency DASH).
    pub fn dash_next_time(&self, index: usize) -> Option<u64> {
        let last = self.segments.iter().rev().find(|s| s.complete && s.init == self.init)?;
        last.spans.get(index).copied().flatten().map(|(_, end)| end.max(0) as u64)
    }
}

/// A WebVTT timestamp (`hh:mm:ss.ttt`) of `ms`.
fn vtt_time(ms: i64) -> String {
    let ms = ms.max(0);
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// AAC frames retimed onto a contiguous sample clock: RTMP carries millisecond timestamps, so
/// 1024-sample frames arrive 21 or 22 ms apart; snapping them (within a quarter frame of the
/// expected time) keeps parts and segments gapless.
pub fn contiguous_audio(next: &mut Option<i64>, frames: Vec<Arc<MediaFrame>>, track: &Track) -> Vec<Arc<MediaFrame>> {
    let timebase = Timebase { num: 1, den: track.timescale };
    frames
        .into_iter()
        .map(|frame| {
            let t = to_timescale(track, frame.dts, frame.timebase);
            let t = match *next {
                Some(expected) if (t - expected).abs() <= 256 => expected,
                _ => t,
            };
            *next = Some(t + 1024);
            Arc::new(MediaFrame { dts: t, pts: t, timebase, ..MediaFrame::clone(&frame) })
        })
        .collect()
}

/// What a playlist request asks for (`_HLS_msn`, `_HLS_part`, `_HLS_skip`), checked against
/// RFC 8216bis §6.2.5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Blocking {
    /// Wait for this segment.
    pub msn: Option<u64>,
    /// And this part of it.
    pub part: Option<usize>,
    /// A delta update.
    pub skip: bool,
}

impl Blocking {
    /// From the query's parameters; `Err` with the reason for a 400.
    pub fn parse<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> Result<Blocking, String> {
        let get = |name: &str| params.iter().find(|(k, _)| k.as_ref() == name).map(|(_, v)| v.as_ref());
        let msn = get("_HLS_msn").map(|v| v.parse::<u64>().map_err(|_| format!("_HLS_msn is not a number: {v:?}"))).transpose()?;
        let part = get("_HLS_part").map(|v| v.parse::<usize>().map_err(|_| format!("_HLS_part is not a number: {v:?}"))).transpose()?;
        if part.is_some() && msn.is_none() {
            return Err("_HLS_part without _HLS_msn".into());
        }
        let skip = match get("_HLS_skip") {
            None => false,
            Some("YES") | Some("v2") => true,
            Some(other) => return Err(format!("_HLS_skip must be YES or v2, not {other:?}")),
        };
        Ok(Blocking { msn, part, skip })
    }
}

/// The DASH representation of the captions (`<stream>-text-...`).
pub const TEXT: &str = "text";

/// A media file name of a live package, parsed (`<stream>` is found by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileName {
    /// `<stream>-init-<v>.mp4`: the HLS initialization segment.
    HlsInit(u32),
    /// `<stream>-<n>.m4s`: a whole HLS segment.
    HlsSegment(u64),
    /// `<stream>-<n>-p<i>.m4s`: an HLS part.
    HlsPart(u64, usize),
    /// `<stream>-<rep>-init-v<v>.mp4`: a DASH initialization segment.
    DashInit(String, u32),
    /// `<stream>-<rep>-v<v>-t<time>.m4s`: a DASH segment of initialization segment `v` (the
    /// version keeps names unique when a republish starts the media time again).
    DashSegment(String, u32, u64),
    /// `<stream>-<n>.vtt`: the WebVTT file of segment `n`.
    Subtitles(u64),
}

/// The ways `stem.extension` can be read as a package file: (stream name, file). The four
/// forms end differently (a bare number, `p<i>`, `init-<v>`, `init-v<v>`, `t<time>`), so a
/// name has one reading whatever dashes and digits the stream name holds: a DASH file is never
/// taken for an HLS file of another stream.
pub fn parse_file_name(stem: &str, extension: &str) -> Vec<(String, FileName)> {
    let pieces: Vec<&str> = stem.split('-').collect();
    let mut out = Vec::new();
    let join = |n: usize| pieces[..n].join("-");
    let n = pieces.len();
    let number = |s: &str| s.parse::<u64>().ok().filter(|_| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    let version = |s: &str| number(s).and_then(|v| u32::try_from(v).ok());
    let rep = |s: &str| matches!(s, "video" | "audio" | "text");
    match extension {
        "mp4" if n >= 3 && pieces[n - 2] == "init" => {
            if let Some(v) = version(pieces[n - 1]) {
                out.push((join(n - 2), FileName::HlsInit(v)));
            } else if let Some(v) = pieces[n - 1].strip_prefix('v').and_then(version).filter(|_| n >= 4 && rep(pieces[n - 3])) {
                out.push((join(n - 3), FileName::DashInit(pieces[n - 3].to_string(), v)));
            }
        }
        "vtt" if n >= 2 => {
            if let Some(msn) = number(pieces[n - 1]) {
                out.push((join(n - 1), FileName::Subtitles(msn)));
            }
        }
        "m4s" if n >= 2 => {
            let last = pieces[n - 1];
            if let Some(msn) = number(last) {
                out.push((join(n - 1), FileName::HlsSegment(msn)));
            } else if let (Some(index), Some(msn)) = (last.strip_prefix('p').and_then(number), n.checked_sub(2).and_then(|i| number(pieces[i]))) {
                out.push((join(n - 2), FileName::HlsPart(msn, index as usize)));
            } else if let (Some(time), true) = (last.strip_prefix('t').and_then(number), n >= 4) {
                if let (true, Some(v)) = (rep(pieces[n - 3]), pieces[n - 2].strip_prefix('v').and_then(version)) {
                    out.push((join(n - 3), FileName::DashSegment(pieces[n - 3].to_string(), v, time)));
                }
            }
        }
        _ => {}
    }
    out.retain(|(stream, _)| !stream.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::avc::AvcConfig;

    fn settings() -> Settings {
        Settings { segment_ms: 2000, part_ms: 500, window: 3, max_segment_bytes: 1 << 20 }
    }

    fn configs() -> (Arc<MediaFrame>, Arc<MediaFrame>) {
        let sps = [0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60];
        let avc = AvcConfig::from_parameter_sets(&sps, &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0]).unwrap().to_bytes();
        let v = MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts: 0, pts: 0, timebase: Timebase::MILLIS, keyframe: true, config: true, payload: avc };
        let a = MediaFrame { track: TrackKind::Audio, codec: Codec::Aac, dts: 0, pts: 0, timebase: Timebase::MILLIS, keyframe: true, config: true, payload: Bytes::from_static(&[0x11, 0x90]) };
        (Arc::new(v), Arc::new(a))
    }

    fn video(dts: i64, key: bool) -> Arc<MediaFrame> {
        Arc::new(MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts, pts: dts, timebase: Timebase::MILLIS, keyframe: key, config: false, payload: Bytes::from(vec![1u8; 100]) })
    }

    fn audio(dts: i64) -> Arc<MediaFrame> {
        Arc::new(MediaFrame { track: TrackKind::Audio, codec: Codec::Aac, dts, pts: dts, timebase: Timebase::MILLIS, keyframe: true, config: false, payload: Bytes::from(vec![2u8; 10]) })
    }

    /// `seconds` of 25 fps video with a keyframe every `gop_ms` and AAC at 48 kHz.
    fn feed(package: &mut Package, from_ms: i64, until_ms: i64, gop_ms: i64) {
        feed_at(package, from_ms, until_ms, gop_ms, 1_000_000);
    }

    /// The stream published again: the package resumes and takes the same parameters.
    fn republish(package: &mut Package) {
        package.resume();
        let (v, a) = configs();
        package.push(v, 0);
        package.push(a, 0);
    }

    fn package() -> Package {
        let mut package = Package::new(settings(), 0);
        let (v, a) = configs();
        package.push(v, 0);
        package.push(a, 0);
        package
    }

    #[test]
    fn the_target_duration_never_falls_when_a_long_segment_leaves_the_window() {
        let mut package = package();
        // One 6 s GOP, then 2 s GOPs until the long segment has left the window of three.
        feed(&mut package, 0, 6_000, 6_000);
        feed(&mut package, 6_000, 8_000, 2_000);
        assert_eq!(package.target_duration(), 6);
        feed(&mut package, 8_000, 20_000, 2_000);
        assert!(package.segments.iter().all(|s| s.duration_ms() <= 2_000), "the long segment is still listed");
        assert_eq!(package.target_duration(), 6);
        assert!(package.render_hls("s", false, &[]).contains("#EXT-X-TARGETDURATION:6\n"));
    }

    #[test]
    fn parts_never_exceed_the_target_and_segments_start_at_keyframes() {
        let mut package = package();
        feed(&mut package, 0, 10_000, 2000);
        let complete: Vec<&Segment> = package.segments.iter().filter(|s| s.complete).collect();
        assert_eq!(complete.len(), 3, "the window");
        for segment in &complete {
            assert_eq!(segment.duration_ms(), 2000, "segment {}", segment.sequence);
            assert!(segment.parts[0].independent);
            for (index, part) in segment.parts.iter().enumerate() {
                assert!(part.duration_ms <= 500, "part of {} ms", part.duration_ms);
                // RFC 8216bis: every part but a segment's last lasts at least 85 % of the target.
                if index + 1 < segment.parts.len() {
                    assert!(part.duration_ms >= 425, "part of {} ms", part.duration_ms);
                }
            }
            // The whole segment is its parts; only the first carries styp.
            let whole = segment.muxed();
            assert_eq!(&whole[4..8], b"styp");
            assert_eq!(whole.windows(4).filter(|w| w == b"styp").count(), 1);
            assert_eq!(whole.windows(4).filter(|w| w == b"moof").count(), segment.parts.len());
            // Made once and shared by later requests, per track too.
            assert_eq!(segment.muxed().as_ptr(), whole.as_ptr());
            assert_eq!(segment.track(1).as_ptr(), segment.track(1).as_ptr());
            assert_eq!(segment.track(1).windows(4).filter(|w| w == b"moof").count(), segment.parts.len());
        }
        // Numbering: the oldest left the window.
        assert_eq!(package.segments.front().unwrap().sequence, 1);
        assert_eq!(package.last(), Some((4, Some(package.segments.back().unwrap().parts.len()))));
        // DASH spans are contiguous for video.
        let spans: Vec<(i64, i64)> = complete.iter().map(|s| s.spans[0].unwrap()).collect();
        for pair in spans.windows(2) {
            assert_eq!(pair[0].1, pair[1].0);
        }
    }

    #[test]
    fn playlist_lists_parts_hints_and_blocks_until_the_part_exists() {
        let mut package = package();
        feed(&mut package, 0, 7_000, 2000);
        let text = package.render_hls("s", false, &[]);
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.500"));
        assert!(text.contains("CAN-BLOCK-RELOAD=YES"));
        assert!(text.contains("#EXT-X-MAP:URI=\"s-init-0.mp4\""));
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:"));
        let (msn, part) = package.last().unwrap();
        let part = part.unwrap();
        assert!(text.contains(&format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s-{msn}-p{part}.m4s\"")), "{text}");
        assert!(package.has(msn, Some(part.saturating_sub(1))));
        assert!(!package.has(msn, Some(part)));
        assert!(!package.has(msn + 1, None));
        assert!(package.has(0, None), "a segment that left the window does not block");
    }

    #[test]
    fn program_date_time_follows_live_frames_not_a_replayed_gop() {
        let mut package = package();
        // A cached GOP replayed at once (arriving at 10 000 although it is 0..1960), then
        // live frames arriving 8 000 ms after their media time.
        for v in (0..2000).step_by(40) {
            package.push(video(v, v == 0), 10_000);
        }
        for v in (2000..4100).step_by(40) {
            package.push(video(v, v % 2000 == 0), 8_000 + v);
        }
        assert_eq!(package.clock_offset_ms, Some(8_000));
        let text = package.render_hls("s", false, &[]);
        assert!(text.contains(&format!("#EXT-X-PROGRAM-DATE-TIME:{}", crate::clock::rfc3339(8_000))), "{text}");
        assert!(text.contains(&format!("#EXT-X-PROGRAM-DATE-TIME:{}", crate::clock::rfc3339(10_000))), "{text}");
    }

    #[test]
    fn audio_parameters_just_after_the_first_keyframe_join_the_first_segment() {
        let mut package = Package::new(settings(), 0);
        let (v, a) = configs();
        package.push(v, 0);
        package.push(video(0, true), 0);
        package.push(a, 0);
        feed(&mut package, 40, 4_100, 2000);
        assert_eq!(package.init, 0);
        assert_eq!(package.tracks.len(), 2);
        assert!(package.segments.iter().all(|s| s.init == 0 && !s.discontinuity));
    }

    #[test]
    fn an_earlier_init_segment_stays_while_the_window_needs_it() {
        let mut package = package();
        feed(&mut package, 0, 3_000, 1000);
        let (v, _) = configs();
        let mut changed = MediaFrame::clone(&v);
        changed.payload = Bytes::from([changed.payload.to_vec(), vec![0]].concat());
        package.push(Arc::new(changed), 3_000);
        feed(&mut package, 3_000, 5_000, 1000);
        assert!(package.hls_init(0).is_some() && package.hls_init(1).is_some());
        // Once the window holds only segments of the new one, the old one goes.
        feed(&mut package, 5_000, 12_000, 1000);
        assert!(package.hls_init(0).is_none() && package.hls_init(1).is_some());
        // Segments are found by number through holes.
        let numbers: Vec<u64> = package.segments.iter().map(|s| s.sequence).collect();
        for n in numbers {
            assert_eq!(package.segment(n).map(|s| s.sequence), Some(n));
        }
    }

    #[test]
    fn a_republish_starting_its_clock_again_gets_new_dash_segment_names() {
        let mut package = package();
        feed(&mut package, 0, 5_000, 2000);
        let before = package.render_mpd("s", 10_000, 2_500);
        assert!(before.contains("media=\"s-video-v0-t$Time$.m4s\"") && before.contains("<S t=\"0\""), "{before}");
        republish(&mut package);
        feed(&mut package, 0, 9_000, 2000);
        let after = package.render_mpd("s", 20_000, 2_500);
        // The same media times again, under other names: a cache never serves the old bytes.
        assert!(after.contains("media=\"s-video-v1-t$Time$.m4s\"") && after.contains("<S t=\"180000\""), "{after}");
        // The old publish's segments have left the window (three segments): so has its period.
        assert!(!after.contains("-v0-"), "{after}");
        assert_eq!(package.dash_segment("video", 0, 0), None);
        assert_eq!(package.dash_init("video", 0), None);
        assert!(package.dash_segment("video", 1, 180_000).is_some());
    }

    /// `feed`, with media time `media_ms` arriving at wall-clock `wall_offset_ms + media_ms`.
    fn feed_at(package: &mut Package, from_ms: i64, until_ms: i64, gop_ms: i64, wall_offset_ms: i64) {
        let mut a = from_ms * 48 / 1024 * 1024 / 48;
        for v in (from_ms..until_ms).step_by(40) {
            while a <= v {
                package.push(audio(a), wall_offset_ms + a);
                a += 21;
            }
            package.push(video(v, v % gop_ms == 0), wall_offset_ms + v);
        }
    }

    #[test]
    fn the_mpd_keeps_the_old_clock_until_a_republish_cuts_its_first_segment() {
        let mut package = package();
        feed(&mut package, 0, 5_000, 2000);
        republish(&mut package);
        // A republish's frames before its first keyframe learn the new clock; an attempt that
        // drops and comes back does not replace the old publish's clock either.
        package.push(audio(50_000), 2_000_000);
        republish(&mut package);
        package.push(audio(60_000), 3_000_000);
        let mpd = package.render_mpd("s", 1_010_000, 2_500);
        assert!(mpd.contains(&format!("availabilityStartTime=\"{}\"", crate::clock::rfc3339(1_000_000))), "{mpd}");
        // The new publish's first segment: the old one is period 0, on its own clock.
        feed_at(&mut package, 10_000, 13_000, 2000, 996_000);
        let mpd = package.render_mpd("s", 1_010_000, 2_500);
        assert!(mpd.contains(&format!("availabilityStartTime=\"{}\"", crate::clock::rfc3339(1_000_000))) && mpd.contains("start=\"PT6.000S\""), "{mpd}");
    }

    #[test]
    fn a_republish_gets_a_dash_period_of_its_own_while_the_window_holds_the_old_one() {
        let mut package = package();
        // The first publish: media time 0 arrives at wall clock 1 000 000.
        feed(&mut package, 0, 5_000, 2000);
        republish(&mut package);
        // The second starts at media time 10 000, on the wall clock 1 006 000.
        feed_at(&mut package, 10_000, 13_000, 2000, 996_000);
        let mpd = package.render_mpd("s", 1_010_000, 2_500);
        assert!(mpd.contains(&format!("availabilityStartTime=\"{}\"", crate::clock::rfc3339(1_000_000))), "{mpd}");
        let periods: Vec<&str> = mpd.split("<Period ").skip(1).collect();
        assert_eq!(periods.len(), 2, "{mpd}");
        // The old publish: media time zero at the availability start, its own initialization
        // segment, no segment being announced.
        assert!(periods[0].starts_with("id=\"0\" start=\"PT0.000S\""), "{mpd}");
        assert!(periods[0].contains("initialization=\"s-video-init-v0.mp4\"") && !periods[0].contains("presentationTimeOffset"), "{mpd}");
        // The new one starts 6 s later; its media time 10 s is the period's start.
        assert!(periods[1].starts_with("id=\"1\" start=\"PT6.000S\""), "{mpd}");
        assert!(periods[1].contains("initialization=\"s-video-init-v1.mp4\"") && periods[1].contains("presentationTimeOffset=\"900000\""), "{mpd}");
        assert!(periods[1].contains("presentationTimeOffset=\"480000\""), "audio's offset in its own timescale: {mpd}");
        assert!(periods[1].contains("<S t=\"900000\" d=\"180000\"/>"), "{mpd}");
        // Both versions' files are served while listed.
        assert!(package.dash_init("video", 0).is_some() && package.dash_init("audio", 0).is_some() && package.dash_init("video", 1).is_some());
        assert!(package.dash_segment("video", 0, 180_000).is_some(), "{mpd}");
        assert!(package.dash_segment("video", 1, 900_000).is_some());
        assert!(package.hls_init(0).is_some());
        // LL-HLS dates each segment on its own publish's clock.
        let playlist = package.render_hls("s", false, &[]);
        let dates: Vec<&str> = playlist.lines().filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")).collect();
        assert_eq!(dates.first().copied(), Some(crate::clock::rfc3339(1_002_000).as_str()), "{playlist}");
        assert!(dates.contains(&crate::clock::rfc3339(1_006_000).as_str()), "{playlist}");

        // Once the window holds only the new publish, the MPD has its period alone, where it
        // was: a published period's start and the availability start never move.
        feed_at(&mut package, 13_000, 22_000, 2000, 996_000);
        let mpd = package.render_mpd("s", 1_020_000, 2_500);
        assert_eq!(mpd.matches("<Period ").count(), 1, "{mpd}");
        assert!(mpd.contains("<Period id=\"1\" start=\"PT6.000S\">") && mpd.contains("presentationTimeOffset=\"900000\""), "{mpd}");
        assert!(mpd.contains(&format!("availabilityStartTime=\"{}\"", crate::clock::rfc3339(1_000_000))), "{mpd}");
        assert_eq!(package.dash_init("video", 0), None);
        assert_eq!(package.hls_init(0), None);
    }

    #[test]
    fn the_mpd_announces_the_segment_being_cut_and_finds_it_by_time() {
        let mut package = package();
        feed(&mut package, 0, 5_000, 2000);
        let mpd = package.render_mpd("s", 10_000, 2_500);
        let video = mpd.split("contentType=\"video\"").nth(1).unwrap().split("</SegmentTimeline>").next().unwrap().to_string();
        // Two complete segments (0-2 s, 2-4 s) and the one being cut (from 4 s), announced with
        // the previous duration.
        assert!(video.contains("<S t=\"0\" d=\"180000\"/>") && video.matches("<S d=\"180000\"/>").count() == 2, "{video}");
        assert!(mpd.contains("availabilityTimeOffset=\"1.500\"") && mpd.contains("target=\"2500\""), "{mpd}");
        assert!(mpd.contains("media=\"s-video-v0-t$Time$.m4s\"") && mpd.contains("initialization=\"s-video-init-v0.mp4\""), "{mpd}");
        let (index, sequence) = package.dash_segment("video", 0, 360_000).expect("the segment being cut");
        assert_eq!(package.dash_segment("video", 1, 360_000), None, "another initialization segment's name");
        assert_eq!((index, sequence), (0, 2));
        assert!(!package.segment(2).unwrap().complete);
        assert_eq!(package.dash_next_time(0), Some(360_000));
    }

    #[test]
    fn delta_updates_skip_old_segments() {
        let mut package = Package::new(Settings { window: 12, segment_ms: 1000, ..settings() }, 0);
        let (v, a) = configs();
        package.push(v, 0);
        package.push(a, 0);
        feed(&mut package, 0, 12_500, 1000);
        let full = package.render_hls("s", false, &[]);
        let delta = package.render_hls("s", true, &[]);
        assert!(!full.contains("EXT-X-SKIP"));
        // 12 complete 1 s segments: those ending more than 6 s before the end are skipped.
        assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=6"), "{delta}");
        assert_eq!(delta.lines().filter(|l| l.starts_with("#EXTINF")).count(), 6);
        assert_eq!(full.lines().filter(|l| l.starts_with("#EXTINF")).count(), 12);
    }

    #[test]
    fn a_new_configuration_makes_a_discontinuity_and_a_new_init() {
        let mut package = package();
        feed(&mut package, 0, 3_000, 1000);
        let (v, _) = configs();
        let mut changed = MediaFrame::clone(&v);
        let mut payload = changed.payload.to_vec();
        payload.push(0);
        changed.payload = Bytes::from(payload);
        package.push(Arc::new(changed), 3_000);
        feed(&mut package, 3_000, 5_000, 1000);
        assert_eq!(package.init, 1);
        let after: Vec<&Segment> = package.segments.iter().filter(|s| s.init == 1).collect();
        assert!(after[0].discontinuity);
        let text = package.render_hls("s", false, &[]);
        assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"s-init-1.mp4\""), "{text}");
    }

    #[test]
    fn new_parameters_within_a_publish_follow_the_previous_period_as_the_clock_is_refined() {
        let mut package = package();
        // The first frames arrive 100 ms late; the clock estimate then falls by 100 ms.
        feed_at(&mut package, 0, 3_000, 1000, 1_000_100);
        feed_at(&mut package, 3_000, 4_000, 1000, 1_000_000);
        let (v, _) = configs();
        let mut changed = MediaFrame::clone(&v);
        changed.payload = Bytes::from([changed.payload.as_ref(), &[0]].concat());
        package.push(Arc::new(changed), 1_004_000);
        feed_at(&mut package, 4_000, 7_000, 1000, 1_000_000);
        let mpd = package.render_mpd("s", 1_007_000, 2_500);
        let periods: Vec<&str> = mpd.split("<Period ").skip(1).collect();
        assert_eq!(periods.len(), 2, "{mpd}");
        // On the first period's clock, the second starts where the first ends: media time 4 s.
        assert!(periods[1].starts_with("id=\"1\" start=\"PT4.000S\""), "{mpd}");
        // LL-HLS dates both versions on the one (refined) clock: they never go backwards.
        let playlist = package.render_hls("s", false, &[]);
        let dates: Vec<&str> = playlist.lines().filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")).collect();
        assert!(dates.windows(2).all(|w| w[0] < w[1]), "{playlist}");
        assert!(dates.contains(&crate::clock::rfc3339(1_004_000).as_str()), "{playlist}");
    }

    #[test]
    fn the_byte_cap_ends_a_segment_and_the_next_waits_for_a_keyframe() {
        // A window of 100 segments: only the byte bound keeps the package small.
        let mut package = Package::new(Settings { max_segment_bytes: 3_000, window: 100, ..settings() }, 0);
        let (v, _) = configs();
        package.push(v, 0);
        for n in 0..1000 {
            package.push(video(n * 40, n % 50 == 0), n * 40);
            // The cap counts payload; boxes add their headers.
            assert!(package.segments.iter().all(|s| s.stored <= 3_600), "bounded");
        }
        assert!(package.capped >= 1);
        let stored: usize = package.segments.iter().map(|s| s.stored).sum();
        assert!(stored <= 3 * 3_600, "the window holds {stored} bytes");
        assert!(package.segments.iter().all(|s| s.parts.first().is_some_and(|p| p.independent)));
    }

    #[test]
    fn file_names_parse_with_dashes_in_the_stream_name() {
        assert_eq!(parse_file_name("cam-1-12-p3", "m4s")[0], ("cam-1".to_string(), FileName::HlsPart(12, 3)));
        assert!(parse_file_name("cam-1-12", "m4s").contains(&("cam-1".to_string(), FileName::HlsSegment(12))));
        assert_eq!(parse_file_name("cam-video-v3-t900", "m4s"), vec![("cam".to_string(), FileName::DashSegment("video".into(), 3, 900))]);
        assert_eq!(parse_file_name("cam-audio-init-v2", "mp4"), vec![("cam".to_string(), FileName::DashInit("audio".into(), 2))]);
        // One reading each: stream `cam-video-3`'s segment 900 and stream `cam-video`'s
        // initialization segment 2 are not DASH files of stream `cam`.
        assert_eq!(parse_file_name("cam-video-3-900", "m4s"), vec![("cam-video-3".to_string(), FileName::HlsSegment(900))]);
        assert_eq!(parse_file_name("cam-video-init-2", "mp4"), vec![("cam-video".to_string(), FileName::HlsInit(2))]);
        assert_eq!(parse_file_name("cam-video-v3-t", "m4s"), vec![]);
        assert!(parse_file_name("cam-init-0", "mp4").contains(&("cam".to_string(), FileName::HlsInit(0))));
        assert!(parse_file_name("12", "m4s").is_empty());
        assert_eq!(Blocking::parse(&[("_HLS_part", "1")]).unwrap_err(), "_HLS_part without _HLS_msn");
        assert!(Blocking::parse(&[("_HLS_msn", "x")]).is_err());
        assert_eq!(Blocking::parse(&[("_HLS_msn", "4"), ("_HLS_skip", "YES")]).unwrap(), Blocking { msn: Some(4), part: None, skip: true });
    }

    #[test]
    fn captions_become_cues_of_the_segments_they_overlap_and_metadata_an_emsg() {
        let mut package = package();
        feed(&mut package, 0, 3_000, 2_000);
        // A late caption (it says it began at 500 ms, in a segment already out) starts at the
        // segment in progress; one with an end spans two segments; markup is escaped.
        package.push(Arc::new(flv::text_data_frame(3_000, "we are <going>", "eng", (Some(500), None))), 0);
        package.push(Arc::new(flv::text_data_frame(3_100, "to the park & back", "fre", (Some(3_500), Some(4_500)))), 0);
        package.push(Arc::new(flv::cue_point_frame(3_100, r#"{"label":"dog"}"#)), 0);
        feed(&mut package, 3_040, 6_040, 2_000);
        let first = package.render_vtt(0).unwrap();
        assert!(first.starts_with("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n") && !first.contains("-->"), "{first}");
        let second = package.render_vtt(1).unwrap();
        assert!(second.contains("X-TIMESTAMP-MAP=MPEGTS:180000,LOCAL:00:00:02.000\n"), "{second}");
        let going = format!("00:00:02.000 --> 00:00:0{}.{:03}\nwe are &lt;going&gt;\n", (2_000 + default_cue_ms("we are <going>")) / 1000, default_cue_ms("we are <going>") % 1000);
        assert!(second.contains(&going) && second.contains("00:00:03.500 --> 00:00:04.500\nto the park &amp; back\n"), "{second}");
        let third = package.render_vtt(2).unwrap();
        assert!(third.contains("to the park") && third.contains("X-TIMESTAMP-MAP=MPEGTS:360000,LOCAL:00:00:04.000"), "{third}");
        assert_eq!(package.caption_language.as_deref(), Some("fre"));
        assert!(package.render_vtt(3).is_none(), "the segment in progress has no WebVTT yet");
        let playlist = package.render_vtt_playlist("cam");
        assert!(playlist.contains("#EXTINF:2.000,\ncam-1.vtt\n") && !playlist.contains("cam-3.vtt"), "{playlist}");
        // The event is in the part cut after it arrived, before its moof, in HLS and in the
        // first DASH representation; its tag holds the JSON.
        let part = package.segment(1).unwrap().parts.iter().find(|p| p.muxed.windows(4).any(|w| w == b"emsg")).expect("a part with an emsg").clone();
        let at = part.muxed.windows(4).position(|w| w == b"emsg").unwrap();
        assert!(at < part.muxed.windows(4).position(|w| w == b"moof").unwrap());
        assert!(part.tracks[0].windows(4).any(|w| w == b"emsg") && !part.tracks[1].windows(4).any(|w| w == b"emsg"));
        let scheme = part.muxed.windows(id3::EMSG_SCHEME.len()).position(|w| w == id3::EMSG_SCHEME.as_bytes()).unwrap();
        let tag = &part.muxed[scheme + id3::EMSG_SCHEME.len() + 2..];
        assert_eq!(id3::read_txxx(tag), Some(("estuary.metadata".into(), r#"{"label":"dog"}"#.into())));
        // DASH: a text representation (WebVTT in ISO BMFF, ms timeline) beside the media, its
        // segments holding the same cues as the .vtt files.
        let mpd = package.render_mpd("cam", 10_000, 3_000);
        assert!(mpd.contains(r#"contentType="text" mimeType="application/mp4" lang="fr""#) && mpd.contains(r#"codecs="wvtt""#), "{mpd}");
        assert!(mpd.contains(r#"media="cam-text-v0-t$Time$.m4s""#) && mpd.contains(r#"<S t="0" d="2000"/>"#), "{mpd}");
        let init = package.dash_text_init(0).unwrap();
        assert!(init.windows(4).any(|w| w == b"wvtt") && init.windows(4).any(|w| w == b"vttC"));
        let text = package.dash_text_segment(0, 2_000).expect("the text segment at 2 s");
        let payloads: Vec<String> = text.windows(4).enumerate().filter(|(_, w)| *w == b"payl").map(|(i, _)| {
            let len = u32::from_be_bytes(text[i - 4..i].try_into().unwrap()) as usize;
            String::from_utf8_lossy(&text[i + 4..i - 4 + len]).into_owned()
        }).collect();
        assert_eq!(payloads, vec!["we are &lt;going&gt;".to_string(), "to the park &amp; back".to_string()]);
        assert!(package.dash_text_segment(0, 2_001).is_none() && package.dash_text_segment(0, 6_000).is_none(), "no segment starts at 2.001 s; the one at 6 s is in progress");
        assert_eq!(parse_file_name("cam-text-v0-t2000", "m4s"), vec![("cam".to_string(), FileName::DashSegment("text".into(), 0, 2000))]);
        // Cues leave with their segments; the text representation stays (players set up a
        // period's adaptation sets once).
        feed(&mut package, 6_040, 16_040, 2_000);
        assert!(package.cues.is_empty(), "{:?}", package.cues);
        assert!(package.render_mpd("cam", 20_000, 3_000).contains(r#"contentType="text""#));
    }

    #[test]
    fn a_caption_between_a_republish_and_its_first_keyframe_joins_the_new_segments() {
        let mut package = package();
        feed(&mut package, 0, 4_000, 2_000);
        republish(&mut package);
        // No segment is open until the new publish's first keyframe (its media time goes on,
        // as the stream actor rebases it).
        package.push(Arc::new(flv::text_data_frame(4_010, "after the republish", "eng", (None, None))), 0);
        feed(&mut package, 4_040, 8_040, 2_000);
        let first_new = package.segments.iter().find(|s| s.discontinuity).map(|s| s.sequence).expect("the republish's first segment");
        let vtt = package.render_vtt(first_new).unwrap();
        assert!(vtt.contains("after the republish"), "{vtt}");
    }

    #[test]
    fn vtt_file_names_parse() {
        assert_eq!(parse_file_name("cam-1-17", "vtt"), vec![("cam-1".to_string(), FileName::Subtitles(17))]);
        assert!(parse_file_name("cam-x", "vtt").is_empty());
    }
}
