//! The DVR writer actor: frames in, segment files and index entries out (see the module docs
//! for the order of writes).

use crate::access::hooks;
use crate::node::NodeContext;
use crate::messages::{DeleteRecording, Fault, InjectFault, PutRecording, PutRecordingGap};
use crate::stream::{Gap, Gaps};
use crate::settings::{DvrFormat, DvrPlan, DvrSettings};
use crate::storage::StorageHandle;
use actix::prelude::*;
use bytes::BytesMut;
use estuary_protocols::container::flv;
use estuary_protocols::container::fmp4::{self, to_timescale, Track};
use estuary_protocols::container::timed_text::{self, Cue};
use estuary_protocols::media::{Codec, MediaFrame, TrackKind};
use estuary_storage::{Recording, RecordingGap, RecordingState, StoredSample, StreamKey, TrackSamples};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Captions kept for the files being written (the oldest go first): more than a caption
/// track needs, since captions older than the written fragments are dropped as they pass.
const MAX_CUES: usize = 256;

/// After a write fails (a full disk), how long the writer waits before it tries a new file
/// (at the next keyframe after that).
const RETRY_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(2);

/// Recording is suspended after a failed write until a new file can be written.
struct Suspended {
    reason: String,
    retry_at: std::time::Instant,
    lost_frames: u64,
}

/// What a failed write means to an operator: "disk full" (ENOSPC, EDQUOT) or the error.
pub fn describe_write_error(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(28) => "disk full".to_string(),
        Some(122) => "disk quota exceeded".to_string(),
        _ => error.to_string(),
    }
}


/// Asks a writer to close its file and stop (the API's DVR stop).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopRecording;

/// A recording not yet (or only just) indexed as closed, as far as its bytes are durable: its
/// index entry with the current end, and its sample table for MP4 files.
#[derive(Debug, Clone)]
pub struct OpenRecording {
    /// The entry, with `end_ms`, `media_end_ms`, `bytes` and `keyframes` as of the last
    /// synced fragment.
    pub recording: Recording,
    /// The samples of the synced fragments (MP4 only).
    pub samples: Option<Vec<TrackSamples>>,
}

/// Asks a writer for its recordings in progress ([`OpenRecording`]): the open file and the one
/// still taking audio after a cut (files closed since are described by
/// [`super::DvrRuntime`] until the index has them).
#[derive(Message)]
#[rtype(result = "Vec<OpenRecording>")]
pub struct GetOpenRecordings;

struct OpenFile {
    recording: Recording,
    file: File,
    absolute: PathBuf,
    tracks: Vec<Track>,
    samples: Vec<TrackSamples>,
    sequence: u32,
    position: u64,
    pending: Vec<Arc<MediaFrame>>,
    fragment_start_ms: i64,
    last_end_ms: i64,
    /// Media time where the synced fragments end (the end of the durable part).
    durable_end_ms: i64,
    /// Presentation time of the first keyframe: audio before it belongs to the file before.
    presentation_start_ms: i64,
    /// Media time up to which the caption track (if the file has one) is written.
    text_end_ms: i64,
}

impl OpenFile {
    fn has_captions(&self) -> bool {
        self.tracks.iter().any(|t| t.codec == Codec::Tx3g)
    }
}


/// Records one stream.
pub struct DvrWriter {
    node: NodeContext,
    /// On the node's census while the actor lives.
    _counted: crate::node::census::Counted,
    key: StreamKey,
    settings: Arc<DvrSettings>,
    storage: StorageHandle,
    rx: Option<mpsc::Receiver<Arc<MediaFrame>>>,
    has_video: bool,
    video_config: Option<Arc<MediaFrame>>,
    audio_config: Option<Arc<MediaFrame>>,
    open: Option<OpenFile>,
    /// The previous file after a cut, still taking audio presented before the cut.
    closing: Option<(OpenFile, i64)>,
    /// Wall clock and media time of one instant, so consecutive files join without gaps or
    /// overlaps (re-anchored when the two clocks drift apart by more than a second).
    anchor: Option<(i64, i64)>,
    failed: bool,
    /// Set while writes fail (a full disk): frames are dropped until a new file can be written.
    suspended: Option<Suspended>,
    /// Tells this writer's failure state from that of a later writer of the same stream.
    generation: u64,
    video_step_ms: i64,
    last_video_dts_ms: Option<i64>,
    gaps: Gaps,
    /// Wall-clock end of the last file closed by a gap or a restart, and why: the next file's
    /// start closes the gap in the index.
    open_gap: Option<(i64, u64, String)>,
    /// Fault injection: sleep this long before each write until the instant given.
    slow_writes: Option<(std::time::Duration, std::time::Instant)>,
    /// The index entry of the file just opened, to be stored before anything is appended.
    pending_index: Option<PutRecording>,
    /// Captions on the media timeline, for the caption tracks of the files being written.
    cues: std::collections::VecDeque<Cue>,
    /// The stream has had a caption: files started from now on have a caption track.
    captioned: bool,
}

impl DvrWriter {
    /// A writer reading `rx` (a subscription of the stream actor).
    pub fn new(node: NodeContext, key: StreamKey, settings: Arc<DvrSettings>, storage: StorageHandle, rx: mpsc::Receiver<Arc<MediaFrame>>, gaps: Gaps, has_video: bool) -> Self {
        DvrWriter {
            _counted: node.census.enter("dvr_writer"),
            generation: node.dvr.new_recording_id(),
            node,
            key,
            settings,
            storage,
            rx: Some(rx),
            has_video,
            video_config: None,
            audio_config: None,
            open: None,
            closing: None,
            anchor: None,
            failed: false,
            suspended: None,
            video_step_ms: 40,
            last_video_dts_ms: None,
            gaps,
            open_gap: None,
            slow_writes: None,
            pending_index: None,
            cues: std::collections::VecDeque::new(),
            captioned: false,
        }
    }

    /// A gap ends at `frame`: the file before it is closed (and indexed) at the last frame
    /// it has; the gap is indexed once the next file starts (at this keyframe).
    fn on_gap(&mut self, gap: Gap) {
        tracing::warn!(stream = %self.key, lost_frames = gap.lost_frames, from_media_ms = gap.from_dts_ms, resume_media_ms = gap.resume.dts_ms(), reason = gap.reason, "recording lost frames; the file is cut at the gap and recording resumes at this keyframe");
        let end = self.last_wall_ms();
        self.close(&format!("gap: {}", gap.reason));
        match self.open_gap.as_mut() {
            // Already in a gap (recording suspended): it goes on, with these frames too.
            Some((_, lost, _)) => *lost += gap.lost_frames,
            None => self.open_gap = Some((end.unwrap_or_else(crate::unix_ms), gap.lost_frames, gap.reason.to_string())),
        }
    }

    /// Indexes the gap waiting since the last cut, as ending at `end_ms` (the next file's
    /// start, or the writer's stop).
    fn index_gap(&mut self, end_ms: i64) {
        let Some((start_ms, lost_frames, reason)) = self.open_gap.take() else { return };
        let gap = RecordingGap { key: self.key.clone(), start_ms, end_ms: end_ms.max(start_ms), lost_frames, reason };
        self.storage.persist(PutRecordingGap(gap));
    }

    /// Wall-clock end of what the open (or closing) file holds.
    fn last_wall_ms(&self) -> Option<i64> {
        let open = self.open.as_ref().or(self.closing.as_ref().map(|(o, _)| o))?;
        Some(open.recording.start_ms + (open.last_end_ms - open.recording.media_start_ms))
    }

    /// After a panic: the open file is closed as it stands (its fragments are durable; the
    /// pending ones are written if that still works), the state starts over with the codec
    /// headers kept, and the next file starts at the next keyframe. The stretch in between
    /// is indexed as a gap.
    fn restart(&mut self) {
        let end = self.last_wall_ms();
        let closed = crate::node::supervision::catch(|| self.close("writer restarted after a panic"));
        if closed.is_err() {
            tracing::error!(stream = %self.key, "closing the recording after a panic panicked too; its file is repaired on the next start");
            self.open = None;
            self.closing = None;
        }
        self.failed = false;
        self.anchor = None;
        self.last_video_dts_ms = None;
        self.open_gap = Some((end.unwrap_or_else(crate::unix_ms), 0, "writer restarted after a panic".into()));
    }

    fn frame(&mut self, frame: Arc<MediaFrame>) {
        if let Some(gap) = self.gaps.ended_by(&frame) {
            self.on_gap(gap);
        }
        if self.failed {
            return;
        }
        if frame.config {
            let slot = match frame.track {
                TrackKind::Video => &mut self.video_config,
                TrackKind::Audio => &mut self.audio_config,
                TrackKind::Data => return,
            };
            let changed = slot.as_ref().is_some_and(|old| old.payload != frame.payload || old.codec != frame.codec);
            let first = slot.is_none();
            *slot = Some(frame);
            if changed && self.open.is_some() {
                tracing::info!(stream = %self.key, "codec parameters changed; starting a new recording file");
                self.close("codec change");
            }
            if first {
                self.take_new_track();
            }
            return;
        }
        if frame.track == TrackKind::Data {
            self.caption(&frame);
            return;
        }
        if frame.track == TrackKind::Video {
            let dts = frame.dts_ms();
            if let Some(last) = self.last_video_dts_ms {
                if dts > last {
                    self.video_step_ms = dts - last;
                }
            }
            self.last_video_dts_ms = Some(dts);
        }
        // Audio presented before the cut still goes to the previous file; the previous file
        // is finished by the first audio frame after the cut (or a video frame well past it).
        if let Some((_, cut_ms)) = &self.closing {
            let cut_ms = *cut_ms;
            if frame.track == TrackKind::Audio && frame.pts_ms() < cut_ms {
                if let Some((closing, _)) = self.closing.as_mut() {
                    closing.last_end_ms = closing.last_end_ms.max(frame.dts_ms() + 21);
                    closing.pending.push(frame);
                }
                return;
            }
            if frame.track == TrackKind::Audio || frame.dts_ms() > cut_ms + 500 {
                self.finish_closing("segment length reached");
            }
        }
        let start_point = if self.has_video { frame.is_video_keyframe() } else { frame.track == TrackKind::Audio };
        let due = self
            .open
            .as_ref()
            .is_some_and(|open| self.settings.plan == DvrPlan::Segment && frame.dts_ms() - open.recording.media_start_ms >= self.settings.segment.as_millis() as i64);
        // The first caption of a stream: the file goes on to this keyframe, the next one has a
        // caption track (an MP4's tracks are fixed by its header).
        let captions_began = self.captioned && self.open.as_ref().is_some_and(|open| !open.has_captions());
        if start_point && captions_began {
            tracing::info!(stream = %self.key, "the stream has captions: a new recording file with a caption track starts at this keyframe");
        }
        if start_point && (due || captions_began) {
            self.finish_closing("segment length reached");
            if let Some(open) = self.open.take() {
                self.closing = Some((open, frame.pts_ms()));
            }
        }
        if frame.track == TrackKind::Audio && self.open.as_ref().is_some_and(|o| frame.pts_ms() < o.presentation_start_ms) {
            // Before the first picture of this file (and no earlier file to take it).
            return;
        }
        if self.open.is_none() {
            if let Some(suspended) = self.suspended.as_mut() {
                if !start_point || std::time::Instant::now() < suspended.retry_at {
                    suspended.lost_frames += 1;
                    return;
                }
            }
            if !start_point {
                return;
            }
            match self.open_file(&frame) {
                // While suspended, this is a trial: recording has resumed once its first
                // fragment is on disk (see `fragment_written`).
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::error!(stream = %self.key, error = %e, "cannot start a recording file; recording of this stream stops");
                    self.failed = true;
                    return;
                }
                Err(e) => {
                    self.suspend(&e, "cannot start a recording file");
                    return;
                }
            }
        }
        let fragment_ms = self.settings.fragment.as_millis() as i64;
        // A fragment ends after `fragment_ms`, or at a video keyframe once it holds half that
        // (at most 500 ms), so that keyframes start fragments (the rewind playlist's segments
        // start at keyframes) without a sync per frame when keyframes are dense.
        let key_flush_ms = (fragment_ms / 2).min(500);
        let flush = self.open.as_ref().is_some_and(|open| {
            let held = frame.dts_ms() - open.fragment_start_ms;
            !open.pending.is_empty() && (held >= fragment_ms || (frame.is_video_keyframe() && held >= key_flush_ms))
        });
        if flush {
            if let Err(e) = self.write_fragment() {
                self.fail(e);
                return;
            }
            self.fragment_written();
        }
        if let Some(open) = self.open.as_mut() {
            if open.pending.is_empty() {
                open.fragment_start_ms = frame.dts_ms();
            }
            let step = if frame.track == TrackKind::Video { self.video_step_ms } else { 21 };
            open.last_end_ms = open.last_end_ms.max(frame.dts_ms() + step);
            open.pending.push(frame);
        }
    }

    /// A caption (script data `onTextData`) for the caption tracks. Like the live outputs, a
    /// caption dated before what is written already (a recogniser's text comes after its
    /// speech) is shown from there on, for its own span or the time it takes to read.
    fn caption(&mut self, frame: &MediaFrame) {
        if !self.settings.captions || self.settings.format != DvrFormat::Mp4 {
            return;
        }
        let Some(caption) = flv::parse_text_data(&frame.payload) else { return };
        self.captioned = true;
        let floor = self.open.iter().chain(self.closing.iter().map(|(o, _)| o)).filter(|o| o.has_captions()).map(|o| o.text_end_ms).max();
        let (start_ms, end_ms) = estuary_protocols::cmaf::cue_span(&caption, frame.dts_ms(), floor);
        self.cues.push_back(Cue { start_ms, end_ms, text: caption.text });
        while self.cues.len() > MAX_CUES {
            self.cues.pop_front();
        }
    }

    /// Drops the captions that every file being written with a caption track is past (with
    /// none, they wait, at most [`MAX_CUES`], for the next file).
    fn forget_written_cues(&mut self) {
        let Some(oldest) = self.open.iter().chain(self.closing.iter().map(|(o, _)| o)).filter(|o| o.has_captions()).map(|o| o.text_end_ms).min() else {
            return;
        };
        self.cues.retain(|c| c.end_ms > oldest);
    }

    /// A fragment is on disk: a suspended recording has resumed.
    fn fragment_written(&mut self) {
        if let Some(suspended) = self.suspended.take() {
            if let Some((_, lost, _)) = self.open_gap.as_mut() {
                *lost += suspended.lost_frames;
            }
            tracing::info!(stream = %self.key, lost_frames = suspended.lost_frames, after = %suspended.reason, "recording resumed: writing works again");
            self.node.dvr.set_failure(&self.key, self.generation, None);
        }
    }

    /// A write failed: the file is closed at its last complete fragment (and indexed so), the
    /// stretch until recording resumes becomes a gap in the index, and a new file is tried at
    /// the first keyframe [`RETRY_AFTER_FAILURE`] later, and so on until one can be written.
    fn fail(&mut self, error: std::io::Error) {
        let file = self.open.as_ref().map(|o| o.recording.path.clone()).unwrap_or_default();
        let end = self.last_wall_ms();
        tracing::error!(stream = %self.key, %file, %error, "recording write failed; the file is closed at its last complete fragment, recording resumes when writing works again");
        let reason = describe_write_error(&error);
        // A file that never took a fragment (a trial after a failure, or a file that failed
        // at once) held nothing: it goes, with its index entry, and no hook is called.
        if self.open.as_ref().is_some_and(|o| o.durable_end_ms <= o.recording.media_start_ms) {
            if let Some(open) = self.open.take() {
                let _ = std::fs::remove_file(&open.absolute);
                tracing::info!(stream = %self.key, file = %open.recording.path, "recording file removed: it could not take its first fragment");
                self.storage.persist(DeleteRecording { recording: open.recording });
            }
        }
        self.close(&format!("write failed: {reason}"));
        if self.open_gap.is_none() {
            self.open_gap = Some((end.unwrap_or_else(crate::unix_ms), 0, format!("recording write failed: {reason}")));
        }
        self.suspend(&error, "recording write failed");
    }

    fn suspend(&mut self, error: &std::io::Error, what: &str) {
        let reason = describe_write_error(error);
        let retry_at = std::time::Instant::now() + RETRY_AFTER_FAILURE;
        match self.suspended.as_mut() {
            Some(suspended) => suspended.retry_at = retry_at,
            None => {
                if self.open_gap.is_none() {
                    self.open_gap = Some((crate::unix_ms(), 0, format!("{what}: {reason}")));
                }
                tracing::warn!(stream = %self.key, %reason, retry_s = RETRY_AFTER_FAILURE.as_secs(), "{what}; recording is suspended and tried again at a keyframe every few seconds");
                self.node.stats.inc("estuary_disk_write_errors_total", &[("output", "dvr")]);
                self.node.dvr.set_failure(&self.key, self.generation, Some(format!("{what}: {reason}")));
                self.suspended = Some(Suspended { reason, retry_at, lost_frames: 0 });
            }
        }
    }

    fn open_file(&mut self, first: &MediaFrame) -> std::io::Result<()> {
        // Wall time of this file's first frame: from the anchor when the clocks agree, so a
        // file starts exactly where the previous one ended.
        let clock = crate::unix_ms();
        let now = match self.anchor {
            Some((wall, media)) if (wall + first.dts_ms() - media - clock).abs() < 1000 => wall + first.dts_ms() - media,
            _ => {
                self.anchor = Some((clock, first.dts_ms()));
                clock
            }
        };
        let base = super::expand_path(&self.settings.path, &self.key, now);
        let mut relative = base.clone();
        let mut absolute = self.settings.dir.join(&relative);
        let mut n = 1;
        while absolute.exists() {
            // `name-1.mp4`, keeping the extension players and the HTTP side go by.
            relative = match base.rsplit_once('.') {
                Some((stem, extension)) if !extension.contains('/') => format!("{stem}-{n}.{extension}"),
                _ => format!("{base}-{n}"),
            };
            absolute = self.settings.dir.join(&relative);
            n += 1;
        }
        let dir = absolute.parent().map(Path::to_path_buf).unwrap_or_else(|| self.settings.dir.clone());
        std::fs::create_dir_all(&dir)?;
        let mut file = File::create(&absolute)?;
        let mut tracks = Vec::new();
        for config in [&self.video_config, &self.audio_config].into_iter().flatten() {
            if let Some(track) = Track::from_config(tracks.len() as u32 + 1, config) {
                tracks.push(track);
            }
        }
        let header = match self.settings.format {
            DvrFormat::Mp4 => {
                if tracks.is_empty() {
                    let _ = std::fs::remove_file(&absolute);
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no track Estuary can write to MP4 (H.264, H.265, AAC)"));
                }
                if self.settings.captions && self.captioned {
                    // Sized as the picture: 3GPP players place the text box by the track header.
                    let mut text = timed_text::track(tracks.len() as u32 + 1);
                    if let Some(video) = tracks.iter().find(|t| t.kind() == TrackKind::Video) {
                        (text.width, text.height) = (video.width, video.height);
                    }
                    tracks.push(text);
                }
                fmp4::init_segment(&tracks).to_vec()
            }
            DvrFormat::Flv => {
                let mut out = flv::file_header(self.audio_config.is_some(), self.video_config.is_some()).to_vec();
                let mut body = BytesMut::new();
                for config in [&self.video_config, &self.audio_config].into_iter().flatten() {
                    let mut config = (**config).clone();
                    config.dts = first.timebase.rescale(first.dts, config.timebase);
                    config.pts = config.dts;
                    flv::write_frame_tag(&mut body, &config);
                }
                out.extend_from_slice(&body);
                out
            }
        };
        let written = file.write_all(&header).and_then(|()| file.sync_all()).and_then(|()| File::open(&dir)?.sync_all());
        if let Err(e) = written {
            // Not indexed yet: nothing refers to it.
            let _ = std::fs::remove_file(&absolute);
            return Err(e);
        }
        let samples = tracks.iter().map(TrackSamples::empty_for).collect();
        let recording = Recording {
            id: self.node.dvr.new_recording_id(),
            key: self.key.clone(),
            path: relative.clone(),
            format: match self.settings.format {
                DvrFormat::Mp4 => "mp4",
                DvrFormat::Flv => "flv",
            }
            .into(),
            state: RecordingState::Recording,
            start_ms: now,
            end_ms: now,
            media_start_ms: first.dts_ms(),
            media_end_ms: first.dts_ms(),
            bytes: header.len() as u64,
            video: self.video_config.as_ref().map(|c| crate::stream::stats::describe_video(c)),
            audio: self.audio_config.as_ref().map(|c| crate::stream::stats::describe_audio(c)),
            keyframes: Vec::new(),
        };
        tracing::info!(stream = %self.key, file = %relative, "recording started");
        self.index_gap(now);
        // The entry must exist before fragments are appended (a crash then leaves an indexed
        // file that the next start repairs, never an orphan): the writer waits for it before
        // taking the next frame (see `StreamHandler::handle`).
        self.pending_index = Some(PutRecording { recording: recording.clone(), samples: None });
        self.open = Some(OpenFile {
            recording,
            file,
            absolute,
            tracks,
            samples,
            sequence: 0,
            position: header.len() as u64,
            pending: Vec::new(),
            fragment_start_ms: first.dts_ms(),
            last_end_ms: first.dts_ms(),
            durable_end_ms: first.dts_ms(),
            presentation_start_ms: first.pts_ms(),
            text_end_ms: first.dts_ms(),
        });
        Ok(())
    }

    fn write_fragment(&mut self) -> std::io::Result<()> {
        if let Some((per_write, until)) = self.slow_writes {
            if std::time::Instant::now() < until {
                // Fault injection: a slow disk (this thread is the DVR writers' own).
                std::thread::sleep(per_write);
            } else {
                self.slow_writes = None;
            }
        }
        let format = self.settings.format;
        let written = match self.open.as_mut() {
            Some(open) => write_fragment(open, format, self.cues.make_contiguous()),
            None => Ok(()),
        };
        self.forget_written_cues();
        written
    }

    /// Closes the open file (and the one still closing).
    fn close(&mut self, reason: &str) {
        self.finish_closing(reason);
        if let Some(open) = self.open.take() {
            self.finalize(open, reason);
        }
    }

    /// A track's first parameters arrived after the open file began (an MPEG-TS or WebRTC
    /// publisher's audio comes after its first keyframe). Before the file's first fragment,
    /// the file starts again with the track, from the same frames; after it, the file goes on
    /// without it (an MP4's tracks are fixed by its header) and the next file has it.
    fn take_new_track(&mut self) {
        let tracks = [&self.video_config, &self.audio_config].into_iter().flatten().filter(|c| Track::from_config(1, c).is_some()).count();
        let restart = self.open.as_ref().is_some_and(|o| o.tracks.iter().filter(|t| t.kind() != TrackKind::Data).count() < tracks && o.durable_end_ms <= o.recording.media_start_ms && o.sequence == 0);
        if !restart {
            return;
        }
        if let Some(mut open) = self.open.take() {
            let pending = std::mem::take(&mut open.pending);
            tracing::info!(stream = %self.key, file = %open.recording.path, frames = pending.len(), "a track's parameters came after the recording began; the file starts again with it");
            self.storage.persist(DeleteRecording { recording: open.recording });
            // The new file is made while the old one is still there, so it gets a path of its
            // own: an old entry that outlives its delete (a crash, a full storage queue) names
            // a missing file, which the start-up repair drops, never the new file.
            for frame in pending {
                self.frame(frame);
            }
            let _ = std::fs::remove_file(&open.absolute);
        }
    }

    fn finish_closing(&mut self, reason: &str) {
        if let Some((closing, _)) = self.closing.take() {
            self.finalize(closing, reason);
        }
    }

    fn finalize(&mut self, mut open: OpenFile, reason: &str) {
        if let Err(e) = write_fragment(&mut open, self.settings.format, self.cues.make_contiguous()) {
            // The failed fragment was taken back: the file ends at its last complete one.
            tracing::error!(stream = %self.key, file = %open.recording.path, error = %e, "the last fragment of the recording could not be written; the file ends at the one before");
            self.node.stats.inc("estuary_disk_write_errors_total", &[("output", "dvr")]);
        }
        if let Err(e) = open.file.sync_all() {
            tracing::error!(stream = %self.key, file = %open.recording.path, error = %e, "recording sync failed; the file is repaired on the next start");
            return;
        }
        let duration = open.last_end_ms - open.recording.media_start_ms;
        open.recording.media_end_ms = open.last_end_ms;
        open.recording.end_ms = open.recording.start_ms + duration;
        open.recording.bytes = open.position;
        open.recording.state = RecordingState::Complete;
        let samples = match self.settings.format {
            DvrFormat::Mp4 => Some(open.samples),
            DvrFormat::Flv => None,
        };
        tracing::info!(stream = %self.key, file = %open.recording.path, duration_ms = duration, bytes = open.position, %reason, "recording file closed");
        let mut body = hooks::body(0, "127.0.0.1", &self.key.vhost, &self.key.app, &self.key.stream, &[]);
        body["cwd"] = serde_json::Value::String(self.settings.dir.display().to_string());
        body["file"] = serde_json::Value::String(open.absolute.display().to_string());
        let recording = open.recording;
        // Until the index has it, the closed file is described by the node's DVR state (the
        // writer may stop before the index answers).
        let id = recording.id;
        self.node.dvr.remember_closed(&self.key, OpenRecording { recording: recording.clone(), samples: samples.clone() });
        let storage = self.storage.clone();
        let app = self.key.app.clone();
        let (node, key) = (self.node.clone(), self.key.clone());
        // The hook fires once the index has the closed file.
        actix::spawn(async move {
            match storage.ask(PutRecording { recording, samples }).await {
                Ok(Ok(())) => node.hooks.notify(hooks::Event::Dvr, &app, body),
                Ok(Err(e)) => tracing::error!(error = %e, "closed recording not indexed"),
                Err(e) => tracing::error!(error = %e, "storage unavailable; closed recording not indexed (repaired on the next start)"),
            }
            node.dvr.forget_closed(&key, id);
        });
    }
}

/// Appends the pending frames as one fragment and syncs it. On failure the fragment is taken
/// back (the file cut to its previous length, the sample tables and keyframes as before, the
/// pending frames dropped), so the file and its description end at the last complete fragment.
fn write_fragment(open: &mut OpenFile, format: DvrFormat, cues: &[Cue]) -> std::io::Result<()> {
    if open.pending.is_empty() {
        return Ok(());
    }
    let before = (open.position, open.sequence, open.recording.keyframes.len(), open.samples.iter().map(|t| t.samples.len()).collect::<Vec<_>>(), open.text_end_ms);
    let written = append_fragment(open, format, cues);
    if written.is_err() {
        let (position, sequence, keyframes, samples, text_end_ms) = before;
        open.text_end_ms = text_end_ms;
        let _ = open.file.set_len(position);
        let _ = std::io::Seek::seek(&mut open.file, std::io::SeekFrom::Start(position));
        open.position = position;
        open.sequence = sequence;
        open.recording.keyframes.truncate(keyframes);
        for (table, len) in open.samples.iter_mut().zip(samples) {
            table.samples.truncate(len);
        }
        open.last_end_ms = open.durable_end_ms;
    }
    written
}

fn append_fragment(open: &mut OpenFile, format: DvrFormat, cues: &[Cue]) -> std::io::Result<()> {
    let pending = std::mem::take(&mut open.pending);
    match format {
        DvrFormat::Mp4 => {
            open.sequence += 1;
            let mut per_track = fmp4::frames_by_track(&open.tracks, &pending);
            // The caption track covers the fragment's span without a hole: captions where
            // there are some, empty samples between.
            let text_to_ms = open.last_end_ms.max(open.text_end_ms);
            if let Some(index) = open.tracks.iter().position(|t| t.codec == Codec::Tx3g) {
                per_track[index] = timed_text::samples_between(cues, open.text_end_ms, text_to_ms);
            }
            let bytes = fmp4::fragment_of(open.sequence, &open.tracks, &per_track, |track, _| (track.codec == Codec::Tx3g).then_some(text_to_ms));
            let media_len: u64 = per_track.iter().flatten().map(|f| f.payload.len() as u64).sum();
            let mut offset = open.position + bytes.len() as u64 - media_len;
            for (track, frames) in open.tracks.iter().zip(&per_track) {
                let Some(table) = open.samples.iter_mut().find(|s| s.track_id == track.id) else {
                    continue;
                };
                for frame in frames {
                    let dts = to_timescale(track, frame.dts, frame.timebase);
                    let pts = to_timescale(track, frame.pts, frame.timebase);
                    let key = track.kind() == TrackKind::Audio || frame.keyframe;
                    table.samples.push(StoredSample {
                        dts,
                        cts: (pts - dts) as i32,
                        size: frame.payload.len() as u32,
                        key,
                        offset,
                    });
                    if track.kind() == TrackKind::Video && frame.keyframe {
                        open.recording.keyframes.push((frame.dts_ms(), offset));
                    }
                    offset += frame.payload.len() as u64;
                }
            }
            open.file.write_all(&bytes)?;
            open.position += bytes.len() as u64;
            open.text_end_ms = text_to_ms;
        }
        DvrFormat::Flv => {
            let mut out = BytesMut::new();
            for frame in &pending {
                if frame.is_video_keyframe() {
                    open.recording.keyframes.push((frame.dts_ms(), open.position + out.len() as u64));
                }
                flv::write_frame_tag(&mut out, frame);
            }
            open.file.write_all(&out)?;
            open.position += out.len() as u64;
        }
    }
    // Each fragment is durable before the next one starts: a crash loses at most one.
    open.file.sync_data()?;
    open.durable_end_ms = open.last_end_ms;
    Ok(())
}

/// What `open` holds durably, as an index entry and a sample table; `None` before its first
/// synced fragment.
fn durable_view(open: &OpenFile, format: DvrFormat) -> Option<OpenRecording> {
    if open.durable_end_ms <= open.recording.media_start_ms {
        return None;
    }
    let mut recording = open.recording.clone();
    recording.media_end_ms = open.durable_end_ms;
    recording.end_ms = recording.start_ms + (open.durable_end_ms - recording.media_start_ms);
    recording.bytes = open.position;
    let samples = match format {
        DvrFormat::Mp4 => Some(open.samples.clone()),
        DvrFormat::Flv => None,
    };
    Some(OpenRecording { recording, samples })
}

impl Actor for DvrWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.node.dvr.register_writer(&self.key, ctx.address());
        if let Some(rx) = self.rx.take() {
            ctx.add_stream(ReceiverStream::new(rx));
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.close("recording stopped");
        // A gap that no new file closed ends here.
        self.index_gap(crate::unix_ms());
        self.node.dvr.set_failure(&self.key, self.generation, None);
        self.node.dvr.unregister_writer(&self.key);
    }
}

impl StreamHandler<Arc<MediaFrame>> for DvrWriter {
    fn handle(&mut self, frame: Arc<MediaFrame>, ctx: &mut Self::Context) {
        if let Err(panic) = crate::node::supervision::catch(|| self.frame(frame)) {
            self.node.restarts.panicked("dvr", &format_args!("recording of {}", self.key), &panic);
            self.restart();
        }
        if let Some(entry) = self.pending_index.take() {
            // No frame is taken (so no fragment appended) until the index has the new file.
            let storage = self.storage.clone();
            let file = entry.recording.path.clone();
            ctx.wait(async move { storage.ask(entry).await }.into_actor(self).map(move |answer, act, _| match answer {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(stream = %act.key, %file, error = %e, "new recording not indexed; its file is removed on the next start if the node stops first"),
                Err(e) => tracing::error!(stream = %act.key, %file, error = %e, "storage unavailable; new recording not indexed"),
            }));
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        self.close("stream ended");
        ctx.stop();
    }
}

impl Handler<InjectFault> for DvrWriter {
    type Result = ();

    fn handle(&mut self, msg: InjectFault, ctx: &mut Self::Context) {
        tracing::warn!(stream = %self.key, fault = ?msg.0, "fault injected into the DVR writer");
        match msg.0 {
            Fault::Panic => {
                if let Err(panic) = crate::node::supervision::catch(|| panic!("fault injected into the DVR writer")) {
                    self.node.restarts.panicked("dvr", &format_args!("recording of {}", self.key), &panic);
                    self.restart();
                }
            }
            Fault::Stall(duration) => ctx.wait(actix::fut::wrap_future(tokio::time::sleep(duration))),
            Fault::SlowWrites { per_write, during } => self.slow_writes = Some((per_write, std::time::Instant::now() + during)),
        }
    }
}

impl Handler<GetOpenRecordings> for DvrWriter {
    type Result = MessageResult<GetOpenRecordings>;

    fn handle(&mut self, _: GetOpenRecordings, _: &mut Self::Context) -> Self::Result {
        let format = self.settings.format;
        let mut out: Vec<OpenRecording> = self.closing.iter().filter_map(|(open, _)| durable_view(open, format)).collect();
        out.extend(self.open.iter().filter_map(|open| durable_view(open, format)));
        MessageResult(out)
    }
}

impl Handler<StopRecording> for DvrWriter {
    type Result = ();

    fn handle(&mut self, _: StopRecording, ctx: &mut Self::Context) {
        tracing::info!(stream = %self.key, "recording stopped through the API");
        ctx.stop();
    }
}
