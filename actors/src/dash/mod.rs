//! The DASH muxer actor: one fMP4 representation per track (`<stream>-video-T.m4s`,
//! `<stream>-audio-T.m4s`, named by start time `T` in the track's timescale, with `-init.mp4`
//! initialization segments) and a dynamic MPD with a `SegmentTimeline` and a `$Time$`
//! template. `availabilityStartTime` is set so that a segment becomes available the moment it
//! is written.
//!
//! Why `$Time$` rather than `$Number$`: FFmpeg's DASH reader (5.x) maps a sliding
//! `$Number$` timeline with a moving `startNumber` back to the wrong segment on every MPD
//! refresh (it counts timeline entries from zero), so audio jumps back a segment. `$Time$`
//! addresses segments by start time, which every player resolves the same way.
//!
//! New codec parameters whose initialization segment differs (a codec change on a republish
//! within the grace period, a new resolution) start a new Period with initialization
//! segments of their own (`-init-v<N>.mp4`; the first version is `-init.mp4`): the segments
//! still listed keep theirs, and an initialization segment is never rewritten once a segment
//! was listed with it. A period starts at its first segment, with that segment's media time as
//! `presentationTimeOffset`: at that media time after the availability start (one muxer's
//! media time is continuous), or later where the wall clock puts it when a publisher came
//! back after a pause (its timestamps continue from its last frame). Fixed once written.

use crate::files::{remove, write_atomic};
use estuary_protocols::segment::{Cut, Cutter};
use crate::settings::SegmentSettings;
use actix::prelude::*;
use crate::messages::{Fault, InjectFault};
use crate::node::NodeContext;
use crate::stream::Gaps;
use estuary_protocols::manifest::dash::{rfc3339, Mpd, Period, Representation, TimelineEntry};
use estuary_protocols::container::fmp4::{self, to_timescale, Track, TrackFragment};
use estuary_protocols::media::{Codec, MediaFrame, Timebase, TrackKind};
use estuary_storage::StreamKey;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

struct Listed {
    number: u64,
    entry: TimelineEntry,
    bytes: usize,
}

/// One initialization segment version and the segments listed with it (an MPD Period).
struct DiskPeriod {
    version: u32,
    tracks: Vec<Track>,
    /// Each track's initialization segment, to tell a real change from the same parameters
    /// sent again.
    inits: Vec<Vec<u8>>,
    listed: Vec<VecDeque<Listed>>,
    /// Its start (ms after the availability start); `None` until its first segment.
    start_ms: Option<i64>,
    /// The media time (ms) at its start (`presentationTimeOffset`).
    offset_ms: i64,
}

impl DiskPeriod {
    fn init_name(&self, stream: &str, rep: &str) -> String {
        if self.version == 0 {
            format!("{stream}-{rep}-init.mp4")
        } else {
            format!("{stream}-{rep}-init-v{}.mp4", self.version)
        }
    }

    fn is_listed(&self) -> bool {
        self.listed.iter().any(|l| !l.is_empty())
    }
}

/// Writes DASH for one stream.
pub struct DashMuxer {
    node: NodeContext,
    /// On the node's census while the actor lives.
    _counted: crate::node::census::Counted,
    key: StreamKey,
    settings: Arc<SegmentSettings>,
    dir: PathBuf,
    rx: Option<mpsc::Receiver<Arc<MediaFrame>>>,
    video_config: Option<Arc<MediaFrame>>,
    audio_config: Option<Arc<MediaFrame>>,
    /// Periods with listed segments, oldest first; the last is the current one.
    periods: Vec<DiskPeriod>,
    init_written: bool,
    number: u64,
    cutter: Cutter,
    gaps: Gaps,
    retired: VecDeque<String>,
    availability_start_ms: Option<i64>,
    audio_next: Option<i64>,
    /// This muxer's generation among the stream's DASH muxers (see `node::outputs`).
    generation: u64,
    /// Segment writes failing (a full disk): logged once, counted, recovery logged.
    write_failures: crate::files::WriteFailures,
}

impl DashMuxer {
    /// A muxer reading `rx`.
    pub fn new(node: NodeContext, key: StreamKey, settings: Arc<SegmentSettings>, rx: mpsc::Receiver<Arc<MediaFrame>>, gaps: Gaps) -> Self {
        let (generation, left) = node.outputs.begin(&key, crate::node::outputs::OutputKind::Dash);
        // A new publish starts a new MPD: what the last one left goes now, before any name is
        // reused.
        crate::files::remove_all(&left);
        let dir = settings.dir.join(&key.app);
        DashMuxer {
            _counted: node.census.enter("dash_muxer"),
            write_failures: Default::default(),
            node,
            key,
            dir,
            rx: Some(rx),
            video_config: None,
            audio_config: None,
            periods: Vec::new(),
            init_written: false,
            number: 1,
            cutter: Cutter::new(settings.fragment, settings.max_segment_bytes),
            gaps,
            retired: VecDeque::new(),
            availability_start_ms: None,
            audio_next: None,
            generation,
            settings,
        }
    }

    fn rep_id(track: &Track) -> &'static str {
        if track.kind() == TrackKind::Video {
            "video"
        } else {
            "audio"
        }
    }

    /// The frames before a gap make a (short) segment of their own; the timeline carries the
    /// gap (each `S` element has its own start time).
    fn after_gap(&mut self) {
        if let Some(cut) = self.cutter.flush() {
            self.close_segment(cut);
        }
        self.audio_next = None;
    }

    /// After a panic: the segment in progress is given up; the next starts at the next
    /// keyframe. The MPD and the segments already written stay.
    fn restart(&mut self) {
        self.cutter = Cutter::new(self.settings.fragment, self.settings.max_segment_bytes);
        self.audio_next = None;
    }

    fn on_frame(&mut self, frame: Arc<MediaFrame>) {
        match (frame.track, frame.config) {
            (TrackKind::Data, _) => return,
            (kind @ (TrackKind::Video | TrackKind::Audio), true) => {
                let slot = if kind == TrackKind::Video { &self.video_config } else { &self.audio_config };
                if slot.as_ref().is_some_and(|old| old.codec != frame.codec || old.payload != frame.payload) {
                    // The segment in progress was cut with the old parameters: it is closed
                    // with them, before they change.
                    if let Some(cut) = self.cutter.flush() {
                        self.close_segment(cut);
                    }
                }
                if kind == TrackKind::Video {
                    self.video_config = Some(frame);
                } else {
                    self.audio_config = Some(frame);
                }
                self.init_written = false;
                return;
            }
            _ => {}
        }
        let dropped = self.cutter.dropped;
        let closed = self.cutter.push(frame, self.video_config.is_some());
        if self.cutter.dropped != dropped && (self.cutter.dropped == 1 || self.cutter.dropped.is_power_of_two()) {
            tracing::warn!(stream = %self.key, dropped = self.cutter.dropped, max_bytes = self.settings.max_segment_bytes, "DASH segment grew past max_segment_bytes before a keyframe; dropped, the next starts at the next keyframe");
        }
        if let Some(cut) = closed {
            self.close_segment(cut);
        }
    }

    /// The current period for the configuration frames seen: the same one when its
    /// initialization segments are unchanged, rewritten in place while no segment was listed
    /// with it, else a new period.
    fn ensure_init(&mut self) -> std::io::Result<()> {
        if self.init_written {
            return Ok(());
        }
        let mut tracks = Vec::new();
        for config in [&self.video_config, &self.audio_config].into_iter().flatten() {
            if let Some(track) = Track::from_config(1, config) {
                tracks.push(track);
            }
        }
        let inits: Vec<Vec<u8>> = tracks.iter().map(|t| fmp4::init_segment(std::slice::from_ref(t)).to_vec()).collect();
        let version = match self.periods.last() {
            Some(current) if current.inits == inits => {
                self.init_written = true;
                return Ok(());
            }
            Some(current) if !current.is_listed() => current.version,
            Some(current) => current.version + 1,
            None => 0,
        };
        let period = DiskPeriod { version, listed: tracks.iter().map(|_| VecDeque::new()).collect(), tracks, inits, start_ms: None, offset_ms: 0 };
        for (track, init) in period.tracks.iter().zip(&period.inits) {
            write_atomic(&self.dir.join(period.init_name(&self.key.stream, Self::rep_id(track))), init)?;
        }
        if self.periods.last().is_some_and(|p| !p.is_listed()) {
            // Replaced before any segment was listed with it: its initialization segments go,
            // but for the names the new period has just written again.
            if let Some(unused) = self.periods.pop() {
                let stream = &self.key.stream;
                let kept: Vec<String> = period.tracks.iter().map(|t| period.init_name(stream, Self::rep_id(t))).collect();
                self.retired.extend(unused.tracks.iter().map(|t| unused.init_name(stream, Self::rep_id(t))).filter(|name| !kept.contains(name)));
            }
        } else if !self.periods.is_empty() {
            tracing::info!(stream = %self.key, version, "DASH: new codec parameters start a new period");
        }
        self.periods.push(period);
        self.init_written = true;
        Ok(())
    }

    fn close_segment(&mut self, cut: Cut) {
        if let Err(e) = self.ensure_init() {
            tracing::error!(stream = %self.key, error = %e, "cannot write DASH initialization segments");
            return;
        }
        let number = self.number;
        self.number += 1;
        let (frames, end_ms) = (cut.frames, cut.end_ms);
        let availability_start_ms = self.availability_start_ms;
        let Some(period) = self.periods.last_mut() else { return };
        if period.start_ms.is_none() {
            // The first period starts at media time zero (the availability start). A later one
            // starts at its first segment: at its media time, or later on the wall clock when a
            // publisher came back after a while (its timestamps go on from the last frame, the
            // time it was away is not in them). Its `presentationTimeOffset` is that media time.
            let first_ms = frames.iter().map(|f| f.timebase.rescale(f.dts, Timebase::MILLIS)).min().unwrap_or(0).max(0);
            let (start_ms, offset_ms) = match (period.version, availability_start_ms) {
                (0, _) => (0, 0),
                (_, None) => (first_ms, first_ms),
                (_, Some(ast)) => (first_ms.max(crate::unix_ms() - (end_ms - first_ms) - ast), first_ms),
            };
            period.start_ms = Some(start_ms);
            period.offset_ms = offset_ms;
        }
        for (index, track) in period.tracks.iter().enumerate() {
            let mut own: Vec<Arc<MediaFrame>> = frames.iter().filter(|f| f.track == track.kind() && f.codec == track.codec).cloned().collect();
            if track.codec == Codec::Aac {
                own = estuary_protocols::cmaf::contiguous_audio(&mut self.audio_next, own, track);
            }
            let Some(first) = own.first() else { continue };
            let timebase = first.timebase;
            let next_dts = if track.kind() == TrackKind::Video { Some(Timebase::MILLIS.rescale(end_ms, timebase)) } else { None };
            let data = fmp4::media_segment(number as u32, &[TrackFragment { track, frames: &own, next_dts }]);
            let start = to_timescale(track, first.dts, timebase);
            let name = format!("{}-{}-{}.m4s", self.key.stream, Self::rep_id(track), start.max(0));
            if let Err(e) = write_atomic(&self.dir.join(&name), &data) {
                self.write_failures.failed(&self.node, &self.key, "DASH", &name, &e);
                continue;
            }
            self.write_failures.succeeded(&self.key, "DASH");
            let end = match next_dts {
                Some(next) => to_timescale(track, next, timebase),
                None => {
                    let last = own.last().map(|f| to_timescale(track, f.dts, f.timebase)).unwrap_or(start);
                    last + if track.codec == Codec::Aac { 1024 } else { 1 }
                }
            };
            period.listed[index].push_back(Listed { number, entry: TimelineEntry { start: start.max(0) as u64, duration: (end - start).max(1) as u64 }, bytes: data.len() });
        }
        // The window: the last `window` segments, whatever period they belong to. A period
        // left with none goes, with its initialization segments.
        let oldest_kept = number.saturating_sub(self.settings.window.max(1) as u64 - 1);
        let stream = self.key.stream.clone();
        let count = self.periods.len();
        for (position, period) in self.periods.iter_mut().enumerate() {
            for (track, list) in period.tracks.iter().zip(period.listed.iter_mut()) {
                while list.front().is_some_and(|l| l.number < oldest_kept) {
                    if let Some(old) = list.pop_front() {
                        self.retired.push_back(format!("{stream}-{}-{}.m4s", Self::rep_id(track), old.entry.start));
                    }
                }
            }
            if position + 1 < count && !period.is_listed() {
                self.retired.extend(period.tracks.iter().map(|t| period.init_name(&stream, Self::rep_id(t))));
            }
        }
        let last = self.periods.len() - 1;
        let mut position = 0;
        self.periods.retain(|p| {
            position += 1;
            position - 1 == last || p.is_listed()
        });
        let tracks = self.periods.last().map(|p| p.tracks.len()).unwrap_or(1).max(1);
        while self.retired.len() > self.settings.window * tracks {
            if let Some(old) = self.retired.pop_front() {
                remove(&self.dir.join(old));
            }
        }
        if self.availability_start_ms.is_none() {
            self.availability_start_ms = Some(crate::unix_ms() - end_ms);
        }
        self.write_mpd(false);
    }

    fn write_mpd(&self, ended: bool) {
        let fragment = self.settings.fragment.as_secs_f64();
        let stream = &self.key.stream;
        let periods = self
            .periods
            .iter()
            .filter(|p| p.is_listed())
            .map(|period| {
                let start_ms = period.start_ms.unwrap_or(0);
                let representations = period
                    .tracks
                    .iter()
                    .zip(&period.listed)
                    .filter(|(_, list)| !list.is_empty())
                    .map(|(track, list)| {
                        let seconds: f64 = list.iter().map(|l| l.entry.duration as f64 / track.timescale as f64).sum();
                        let bytes: usize = list.iter().map(|l| l.bytes).sum();
                        let id = Self::rep_id(track);
                        Representation {
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
                            initialization: period.init_name(stream, id),
                            media: format!("{stream}-{id}-$Time$.m4s"),
                            start_number: list.front().map(|l| l.number).unwrap_or(1),
                            presentation_time_offset: (period.offset_ms.max(0) as u64).saturating_mul(track.timescale as u64) / 1000,
                            timeline: list.iter().map(|l| l.entry).collect(),
                        }
                    })
                    .collect();
                Period { id: period.version.to_string(), start_s: start_ms as f64 / 1000.0, representations }
            })
            .collect();
        let mpd = Mpd {
            availability_start_time: rfc3339(self.availability_start_ms.unwrap_or(0)),
            publish_time: rfc3339(crate::unix_ms()),
            minimum_update_period: fragment,
            min_buffer_time: fragment,
            time_shift_buffer_depth: fragment * self.settings.window as f64,
            suggested_presentation_delay: fragment * 3.0,
            periods,
            ended,
            low_latency: None,
        };
        let path = self.dir.join(format!("{}.mpd", self.key.stream));
        if let Err(e) = write_atomic(&path, mpd.render().as_bytes()) {
            tracing::error!(stream = %self.key, error = %e, "cannot write DASH MPD");
        }
    }
}

impl Handler<InjectFault> for DashMuxer {
    type Result = ();

    fn handle(&mut self, msg: InjectFault, ctx: &mut Self::Context) {
        tracing::warn!(stream = %self.key, fault = ?msg.0, "fault injected into the DASH muxer");
        match msg.0 {
            Fault::Panic => {
                if let Err(panic) = crate::node::supervision::catch(|| panic!("fault injected into the DASH muxer")) {
                    self.node.restarts.panicked("dash", &format_args!("DASH of {}", self.key), &panic);
                    self.restart();
                }
            }
            Fault::Stall(duration) => ctx.wait(actix::fut::wrap_future(tokio::time::sleep(duration))),
            // The API refuses it: the muxers' writes are not throttled.
            Fault::SlowWrites { .. } => {}
        }
    }
}

impl Actor for DashMuxer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(rx) = self.rx.take() {
            ctx.add_stream(ReceiverStream::new(rx));
        }
        tracing::info!(stream = %self.key, dir = %self.dir.display(), "DASH muxer started");
    }
}

impl StreamHandler<Arc<MediaFrame>> for DashMuxer {
    fn handle(&mut self, frame: Arc<MediaFrame>, _: &mut Self::Context) {
        let outcome = crate::node::supervision::catch(|| {
            if let Some(gap) = self.gaps.ended_by(&frame) {
                tracing::warn!(stream = %self.key, lost_frames = gap.lost_frames, reason = gap.reason, "DASH output lost frames; the segment before the gap is closed and the next starts at this keyframe");
                self.after_gap();
            }
            self.on_frame(frame)
        });
        if let Err(panic) = outcome {
            self.node.restarts.panicked("dash", &format_args!("DASH of {}", self.key), &panic);
            self.restart();
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The last segment and the final MPD; a panic there still lets the files be disposed of.
        let ended = crate::node::supervision::catch(|| {
            if let Some(cut) = self.cutter.flush() {
                self.close_segment(cut);
            }
            self.write_mpd(true);
        });
        if let Err(panic) = ended {
            self.node.restarts.panicked("dash", &format_args!("DASH of {} (end)", self.key), &panic);
        }
        tracing::info!(stream = %self.key, segments = self.number - 1, "DASH ended");
        let stream = &self.key.stream;
        let mut files: Vec<PathBuf> = Vec::new();
        for period in &self.periods {
            for (track, listed) in period.tracks.iter().zip(&period.listed) {
                let rep = Self::rep_id(track);
                files.extend(listed.iter().map(|l| self.dir.join(format!("{stream}-{rep}-{}.m4s", l.entry.start))));
                files.push(self.dir.join(period.init_name(stream, rep)));
            }
        }
        files.extend(self.retired.iter().map(|name| self.dir.join(name)));
        files.push(self.dir.join(format!("{stream}.mpd")));
        crate::files::dispose_later(self.node.clone(), self.key.clone(), crate::node::outputs::OutputKind::Dash, self.generation, self.settings.dispose, files, |_| {});
        ctx.stop();
    }
}
