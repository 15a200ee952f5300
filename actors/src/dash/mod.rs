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
//! Known limit: a codec change in the middle of a publish rewrites the initialization
//! segments in place (a new Period would be the proper answer).

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
    tracks: Vec<Track>,
    init_written: bool,
    number: u64,
    cutter: Cutter,
    gaps: Gaps,
    listed: Vec<VecDeque<Listed>>,
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
            tracks: Vec::new(),
            init_written: false,
            number: 1,
            cutter: Cutter::new(settings.fragment, settings.max_segment_bytes),
            gaps,
            listed: Vec::new(),
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
            (TrackKind::Video, true) => {
                self.video_config = Some(frame);
                self.init_written = false;
                return;
            }
            (TrackKind::Audio, true) => {
                self.audio_config = Some(frame);
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
        for track in &tracks {
            let name = format!("{}-{}-init.mp4", self.key.stream, Self::rep_id(track));
            write_atomic(&self.dir.join(name), &fmp4::init_segment(std::slice::from_ref(track)))?;
        }
        if self.listed.len() != tracks.len() {
            // A track came (or went): the segments listed so far leave with the old timeline,
            // retired so they are still deleted.
            for (old, listed) in self.tracks.iter().zip(&self.listed) {
                let rep = Self::rep_id(old);
                self.retired.extend(listed.iter().map(|l| format!("{}-{rep}-{}.m4s", self.key.stream, l.entry.start)));
            }
            self.listed = tracks.iter().map(|_| VecDeque::new()).collect();
        }
        self.tracks = tracks;
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
        let tracks = self.tracks.clone();
        for (index, track) in tracks.iter().enumerate() {
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
            let list = &mut self.listed[index];
            list.push_back(Listed { number, entry: TimelineEntry { start: start.max(0) as u64, duration: (end - start).max(1) as u64 }, bytes: data.len() });
            while list.len() > self.settings.window {
                if let Some(old) = list.pop_front() {
                    self.retired.push_back(format!("{}-{}-{}.m4s", self.key.stream, Self::rep_id(track), old.entry.start));
                }
            }
        }
        while self.retired.len() > self.settings.window * self.tracks.len().max(1) {
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
        let representations = self
            .tracks
            .iter()
            .zip(&self.listed)
            .filter(|(_, list)| !list.is_empty())
            .map(|(track, list)| {
                let seconds: f64 = list.iter().map(|l| l.entry.duration as f64 / track.timescale as f64).sum();
                let bytes: usize = list.iter().map(|l| l.bytes).sum();
                let id = Self::rep_id(track);
                Representation {
                    id: id.to_string(),
                    content_type: id,
                    codecs: track.codec_string(),
                    bandwidth: ((bytes as f64 * 8.0) / seconds.max(0.001)) as u64,
                    width: track.width,
                    height: track.height,
                    sample_rate: track.sample_rate,
                    channels: track.channels,
                    timescale: track.timescale,
                    initialization: format!("{}-{id}-init.mp4", self.key.stream),
                    media: format!("{}-{id}-$Time$.m4s", self.key.stream),
                    start_number: list.front().map(|l| l.number).unwrap_or(1),
                    presentation_time_offset: 0,
                    timeline: list.iter().map(|l| l.entry).collect(),
                }
            })
            .collect();
        let mpd = Mpd {
            availability_start_time: rfc3339(self.availability_start_ms.unwrap_or(0)),
            publish_time: rfc3339(crate::unix_ms()),
            minimum_update_period: fragment,
            min_buffer_time: fragment,
            time_shift_buffer_depth: fragment * self.settings.window as f64,
            suggested_presentation_delay: fragment * 3.0,
            periods: vec![Period { id: "0".into(), start_s: 0.0, representations }],
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
        for (track, listed) in self.tracks.iter().zip(&self.listed) {
            let rep = Self::rep_id(track);
            files.extend(listed.iter().map(|l| self.dir.join(format!("{stream}-{rep}-{}.m4s", l.entry.start))));
            files.push(self.dir.join(format!("{stream}-{rep}-init.mp4")));
        }
        files.extend(self.retired.iter().map(|name| self.dir.join(name)));
        files.push(self.dir.join(format!("{stream}.mpd")));
        crate::files::dispose_later(self.node.clone(), self.key.clone(), crate::node::outputs::OutputKind::Dash, self.generation, self.settings.dispose, files, |_| {});
        ctx.stop();
    }
}
