//! The HLS muxer actor: MPEG-TS segments (default) or fMP4 segments, and the media playlist.

use crate::files::{remove, write_atomic};
use estuary_protocols::segment::{Cut, Cutter};
use crate::settings::SegmentSettings;
use actix::prelude::*;
use crate::messages::{Fault, InjectFault};
use crate::node::bounded::BoundedMap;
use crate::node::NodeContext;
use crate::stream::Gaps;
use bytes::{Bytes, BytesMut};
use estuary_protocols::container::fmp4::{self, Track};
use estuary_protocols::manifest::hls::{MediaPlaylist, Segment};
use estuary_protocols::media::{Codec, MediaFrame, TrackKind};
use estuary_protocols::container::ts::TsMuxer;
use estuary_storage::StreamKey;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// What survives a muxer so the next publish of the stream continues the playlist.
struct Saved {
    playlist: MediaPlaylist,
    next_sequence: u64,
    retired: VecDeque<String>,
    init_version: u32,
}

/// Playlists kept at most; the oldest goes first. (A busy node sees a new stream name per
/// broadcast: without a bound this would grow with every name ever published.)
const MAX_HISTORY: usize = 10_000;

/// A node's HLS playlists of ended publishes, so a stream published again continues its
/// playlist (numbering and a discontinuity) instead of starting over.
pub struct HlsHistory(Mutex<BoundedMap<StreamKey, Saved>>);

impl Default for HlsHistory {
    fn default() -> Self {
        HlsHistory(Mutex::new(BoundedMap::new(MAX_HISTORY)))
    }
}

impl HlsHistory {
    fn take(&self, key: &StreamKey) -> Option<Saved> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key)
    }

    fn keep(&self, key: StreamKey, saved: Saved) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(key, saved);
    }

    /// Playlists kept now.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes HLS for one stream.
pub struct HlsMuxer {
    node: NodeContext,
    /// On the node's census while the actor lives.
    _counted: crate::node::census::Counted,
    key: StreamKey,
    settings: Arc<SegmentSettings>,
    dir: PathBuf,
    rx: Option<mpsc::Receiver<Arc<MediaFrame>>>,
    playlist: MediaPlaylist,
    next_sequence: u64,
    retired: VecDeque<String>,
    discontinuity: bool,
    /// Segment writes failing (a full disk): logged once, counted, recovery logged.
    write_failures: crate::files::WriteFailures,
    video_config: Option<Arc<MediaFrame>>,
    audio_config: Option<Arc<MediaFrame>>,
    /// The stream is AV1 and the segments are TS: nothing is written (logged once).
    refused_av1: bool,
    /// Segments written while the stream had no video parameters yet (its audio alone, as
    /// when a WebRTC publisher's first keyframe is late): removed if the video turns out to
    /// be AV1, which TS cannot carry, so no playlist promises a stream it does not hold.
    audio_only: Vec<String>,
    ts: Option<TsMuxer>,
    init_version: u32,
    init_written: bool,
    cutter: Cutter,
    gaps: Gaps,
    /// This muxer's generation among the stream's HLS muxers (see `node::outputs`).
    generation: u64,
}

impl HlsMuxer {
    /// A muxer reading `rx`.
    pub fn new(node: NodeContext, key: StreamKey, settings: Arc<SegmentSettings>, rx: mpsc::Receiver<Arc<MediaFrame>>, gaps: Gaps) -> Self {
        let dir = settings.dir.join(&key.app);
        let saved = node.hls.take(&key);
        let (generation, left) = node.outputs.begin(&key, crate::node::outputs::OutputKind::Hls);
        if saved.is_none() {
            // Files an ended publish left without a playlist to continue (its history was
            // evicted): this one starts afresh, so they go now, before any name is reused.
            crate::files::remove_all(&left);
        }
        let (playlist, next_sequence, retired, discontinuity, init_version) = match saved {
            Some(saved) => {
                let mut playlist = saved.playlist;
                playlist.ended = false;
                (playlist, saved.next_sequence, saved.retired, true, saved.init_version + 1)
            }
            None => (MediaPlaylist { target_duration: settings.fragment.as_secs_f64().round().max(1.0) as u64, ..Default::default() }, 0, VecDeque::new(), false, 0),
        };
        HlsMuxer {
            write_failures: Default::default(),
            _counted: node.census.enter("hls_muxer"),
            node,
            key,
            dir,
            rx: Some(rx),
            playlist,
            next_sequence,
            retired,
            discontinuity,
            video_config: None,
            audio_config: None,
            refused_av1: false,
            audio_only: Vec::new(),
            ts: None,
            init_version,
            init_written: false,
            cutter: Cutter::new(settings.fragment, settings.max_segment_bytes),
            gaps,
            generation,
            settings,
        }
    }

    fn playlist_path(&self) -> PathBuf {
        self.dir.join(format!("{}.m3u8", self.key.stream))
    }

    fn init_name(&self) -> String {
        format!("{}-init-{}.mp4", self.key.stream, self.init_version)
    }

    fn on_config(&mut self, frame: Arc<MediaFrame>) {
        let slot = match frame.track {
            TrackKind::Video => &mut self.video_config,
            TrackKind::Audio => &mut self.audio_config,
            TrackKind::Data => return,
        };
        if slot.as_ref().is_some_and(|old| old.codec == frame.codec && old.payload == frame.payload) {
            return;
        }
        let changed = slot.is_some();
        if frame.track == TrackKind::Video && frame.codec != Codec::Av1 {
            self.audio_only.clear();
        }
        *slot = Some(frame);
        if changed {
            // New parameters start a new segment after a discontinuity.
            if let Some(cut) = self.cutter.flush() {
                self.close_segment(cut);
            }
            self.discontinuity = true;
        }
        self.ts = None;
        if self.init_written {
            self.init_version += 1;
            self.init_written = false;
        }
    }

    /// The frames before a gap make a (short) segment of their own; the next segment follows
    /// a discontinuity.
    fn after_gap(&mut self) {
        if let Some(cut) = self.cutter.flush() {
            self.close_segment(cut);
        }
        self.discontinuity = true;
    }

    /// After a panic: the segment in progress is given up, the TS muxer starts over, and the
    /// next segment (from the next keyframe) follows a discontinuity. The playlist and the
    /// segments already written stay.
    fn restart(&mut self) {
        self.cutter = Cutter::new(self.settings.fragment, self.settings.max_segment_bytes);
        self.ts = None;
        self.discontinuity = true;
    }

    fn on_frame(&mut self, frame: Arc<MediaFrame>) {
        // Timed metadata rides in TS segments (as ID3, in the segment in progress); other
        // script data is not carried.
        if frame.track == TrackKind::Data && (self.settings.fmp4 || frame.config || estuary_protocols::container::flv::parse_cue_point(&frame.payload).is_none()) {
            return;
        }
        if frame.config {
            self.on_config(frame);
            return;
        }
        // AV1 has no MPEG-TS mapping: TS segments of such a stream are not written (they would
        // carry the audio alone under a playlist that promises video).
        let av1 = self.video_config.as_ref().is_some_and(|c| c.codec == Codec::Av1) || (frame.track == TrackKind::Video && frame.codec == Codec::Av1);
        if av1 && !self.settings.fmp4 {
            if !self.refused_av1 {
                self.refused_av1 = true;
                tracing::warn!(stream = %self.key, "AV1 has no MPEG-TS mapping: classic HLS (TS) of this stream is not written; hls.fmp4 = true writes fMP4 segments, and the LL-HLS package plays it");
                self.drop_audio_only();
            }
            return;
        }
        let dropped = self.cutter.dropped;
        let closed = self.cutter.push(frame, self.video_config.is_some());
        if self.cutter.dropped != dropped && (self.cutter.dropped == 1 || self.cutter.dropped.is_power_of_two()) {
            tracing::warn!(stream = %self.key, dropped = self.cutter.dropped, max_bytes = self.settings.max_segment_bytes, "HLS segment grew past max_segment_bytes before a keyframe; dropped, the next starts at the next keyframe");
        }
        if let Some(cut) = closed {
            self.close_segment(cut);
        }
    }

    /// Takes back what was cut before the AV1 video arrived: the audio waiting for the next
    /// segment, and the audio-only segments this muxer wrote (from the playlist and the disk;
    /// the playlist too when nothing else is in it).
    fn drop_audio_only(&mut self) {
        self.cutter = Cutter::new(self.settings.fragment, self.settings.max_segment_bytes);
        let gone = std::mem::take(&mut self.audio_only);
        if gone.is_empty() {
            return;
        }
        self.playlist.segments.retain(|s| !gone.contains(&s.uri));
        for name in &gone {
            remove(&self.dir.join(name));
        }
        if self.playlist.segments.is_empty() {
            remove(&self.playlist_path());
        } else {
            self.write_playlist();
        }
        tracing::info!(stream = %self.key, segments = gone.len(), "the audio-only HLS segments written before the AV1 video arrived are removed");
    }

    fn serialize_ts(&mut self, frames: &[Arc<MediaFrame>]) -> Bytes {
        let video = self.video_config.as_ref().map(|f| f.codec);
        let audio = self.audio_config.as_ref().map(|f| f.codec);
        let ts = self.ts.get_or_insert_with(|| {
            let mut muxer = TsMuxer::new(video, audio).with_timed_metadata();
            let mut scratch = BytesMut::new();
            for config in [&self.video_config, &self.audio_config].into_iter().flatten() {
                muxer.write_frame(config, &mut scratch);
            }
            muxer
        });
        let mut out = BytesMut::with_capacity(frames.iter().map(|f| f.payload.len() * 105 / 100 + 64).sum());
        ts.write_tables(&mut out);
        for frame in frames {
            ts.write_frame(frame, &mut out);
        }
        out.freeze()
    }

    fn tracks(&self) -> Vec<Track> {
        let mut tracks = Vec::new();
        for config in [&self.video_config, &self.audio_config].into_iter().flatten() {
            if let Some(track) = Track::from_config(tracks.len() as u32 + 1, config) {
                tracks.push(track);
            }
        }
        tracks
    }

    fn serialize_fmp4(&mut self, frames: &[Arc<MediaFrame>], sequence: u64, end_ms: i64) -> std::io::Result<Bytes> {
        let tracks = self.tracks();
        if !self.init_written {
            write_atomic(&self.dir.join(self.init_name()), &fmp4::init_segment(&tracks))?;
            self.init_written = true;
        }
        let per_track = fmp4::frames_by_track(&tracks, frames);
        // Video's last sample lasts until the segment's end; audio repeats its frame duration.
        let next_dts = |track: &Track, first: &MediaFrame| (track.kind() == TrackKind::Video).then(|| estuary_protocols::Timebase::MILLIS.rescale(end_ms, first.timebase));
        Ok(fmp4::fragment_of(sequence as u32, &tracks, &per_track, next_dts))
    }

    fn close_segment(&mut self, cut: Cut) {
        let sequence = self.next_sequence;
        let extension = if self.settings.fmp4 { "m4s" } else { "ts" };
        let name = format!("{}-{sequence}.{extension}", self.key.stream);
        let data = if self.settings.fmp4 { self.serialize_fmp4(&cut.frames, sequence, cut.end_ms) } else { Ok(self.serialize_ts(&cut.frames)) };
        let duration = (cut.end_ms - cut.start_ms).max(1) as f64 / 1000.0;
        let written = data.and_then(|data| write_atomic(&self.dir.join(&name), &data));
        if let Err(e) = written {
            self.write_failures.failed(&self.node, &self.key, "HLS", &name, &e);
            // The playlist skips this stretch of time: players are told.
            self.discontinuity = true;
            return;
        }
        self.write_failures.succeeded(&self.key, "HLS");
        self.next_sequence += 1;
        let mut body = crate::access::hooks::body(0, "", &self.key.vhost, &self.key.app, &self.key.stream, &[]);
        body["duration"] = duration.into();
        body["file"] = self.dir.join(&name).display().to_string().into();
        body["url"] = format!("{}/{name}", self.key.app).into();
        body["m3u8"] = self.playlist_path().display().to_string().into();
        body["m3u8_url"] = format!("{}/{}.m3u8", self.key.app, self.key.stream).into();
        body["seq_no"] = sequence.into();
        // Only TS refuses AV1; at most a window of names (retired ones leave the list).
        if self.video_config.is_none() && !self.settings.fmp4 {
            self.audio_only.push(name.clone());
        }
        let segment = Segment {
            sequence,
            duration,
            uri: name,
            discontinuity: std::mem::take(&mut self.discontinuity),
            map: if self.settings.fmp4 { Some(self.init_name()) } else { None },
            // The segment closes as the keyframe after it arrives: it started about its
            // duration ago.
            program_date_time: Some(crate::unix_ms() - (duration * 1000.0) as i64),
        };
        for removed in self.playlist.push(segment, self.settings.window) {
            self.audio_only.retain(|name| *name != removed.uri);
            self.retired.push_back(removed.uri);
        }
        while self.retired.len() > self.settings.window {
            if let Some(old) = self.retired.pop_front() {
                remove(&self.dir.join(old));
            }
        }
        self.write_playlist();
        self.node.hooks.notify(crate::access::hooks::Event::Hls, &self.key.app, body);
    }

    fn write_playlist(&mut self) {
        if let Err(e) = write_atomic(&self.playlist_path(), self.playlist.render().as_bytes()) {
            self.write_failures.failed(&self.node, &self.key, "HLS", "playlist", &e);
        }
    }

    fn finish(&mut self) {
        if let Some(cut) = self.cutter.flush() {
            self.close_segment(cut);
        }
        self.playlist.ended = true;
        // A refused AV1 stream's playlist is not written for the first time at its end.
        if !(self.refused_av1 && self.playlist.segments.is_empty()) {
            self.write_playlist();
        }
        tracing::info!(stream = %self.key, segments = self.next_sequence, "HLS ended");
        // Everything this stream's HLS has on disk, for its disposal.
        let mut files: Vec<PathBuf> = self.playlist.segments.iter().map(|s| s.uri.clone()).chain(self.retired.iter().cloned()).map(|name| self.dir.join(name)).collect();
        files.extend((0..=self.init_version).map(|v| self.dir.join(format!("{}-init-{v}.mp4", self.key.stream))));
        files.push(self.playlist_path());
        let saved = Saved {
            playlist: std::mem::take(&mut self.playlist),
            next_sequence: self.next_sequence,
            retired: std::mem::take(&mut self.retired),
            init_version: self.init_version,
        };
        self.node.hls.keep(self.key.clone(), saved);
        let key = self.key.clone();
        crate::files::dispose_later(self.node.clone(), self.key.clone(), crate::node::outputs::OutputKind::Hls, self.generation, self.settings.dispose, files, move |node| {
            // A stream published after the disposal starts a new playlist.
            node.hls.take(&key);
        });
    }
}

impl Handler<InjectFault> for HlsMuxer {
    type Result = ();

    fn handle(&mut self, msg: InjectFault, ctx: &mut Self::Context) {
        tracing::warn!(stream = %self.key, fault = ?msg.0, "fault injected into the HLS muxer");
        match msg.0 {
            Fault::Panic => {
                if let Err(panic) = crate::node::supervision::catch(|| panic!("fault injected into the HLS muxer")) {
                    self.node.restarts.panicked("hls", &format_args!("HLS of {}", self.key), &panic);
                    self.restart();
                }
            }
            Fault::Stall(duration) => ctx.wait(actix::fut::wrap_future(tokio::time::sleep(duration))),
            // The API refuses it: the muxers' writes are not throttled.
            Fault::SlowWrites { .. } => {}
        }
    }
}

impl Actor for HlsMuxer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(rx) = self.rx.take() {
            ctx.add_stream(ReceiverStream::new(rx));
        }
        tracing::info!(stream = %self.key, dir = %self.dir.display(), fmp4 = self.settings.fmp4, "HLS muxer started");
    }
}

impl StreamHandler<Arc<MediaFrame>> for HlsMuxer {
    fn handle(&mut self, frame: Arc<MediaFrame>, _: &mut Self::Context) {
        let outcome = crate::node::supervision::catch(|| {
            if let Some(gap) = self.gaps.ended_by(&frame) {
                tracing::warn!(stream = %self.key, lost_frames = gap.lost_frames, reason = gap.reason, "HLS output lost frames; the segment before the gap is closed and the next starts at this keyframe");
                self.after_gap();
            }
            self.on_frame(frame)
        });
        if let Err(panic) = outcome {
            self.node.restarts.panicked("hls", &format_args!("HLS of {}", self.key), &panic);
            self.restart();
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if let Err(panic) = crate::node::supervision::catch(|| self.finish()) {
            self.node.restarts.panicked("hls", &format_args!("HLS of {} (end)", self.key), &panic);
        }
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use estuary_protocols::media::Timebase;
    use std::time::Duration;

    fn frame(track: TrackKind, codec: Codec, dts: i64, keyframe: bool, config: bool, payload: &[u8]) -> Arc<MediaFrame> {
        Arc::new(MediaFrame { track, codec, dts, pts: dts, timebase: Timebase::MILLIS, keyframe, config, payload: Bytes::copy_from_slice(payload) })
    }

    /// An audio track whose video parameters come late, and turn out to be AV1: the audio-only
    /// TS segments cut meanwhile are taken back, and no playlist is left promising them.
    #[actix_rt::test]
    async fn audio_cut_before_late_av1_video_is_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let settings = SegmentSettings { enabled: true, apps: Vec::new(), dir: dir.path().to_path_buf(), fragment: Duration::from_secs(1), window: 5, fmp4: false, max_segment_bytes: 1 << 20, dispose: Duration::ZERO, always: true, part: Duration::from_millis(300), idle: Duration::from_secs(30) };
        let (tx, rx) = mpsc::channel(1024);
        let key = StreamKey::new("live", "late");
        let muxer = HlsMuxer::new(crate::node::Node::for_tests(), key, Arc::new(settings), rx, Gaps::default()).start();
        // AAC-LC 48 kHz stereo; 3.5 s of audio alone.
        tx.send(frame(TrackKind::Audio, Codec::Aac, 0, true, true, &[0x11, 0x90])).await.unwrap();
        for i in 0..164 {
            tx.send(frame(TrackKind::Audio, Codec::Aac, i * 21, true, false, &[0x21; 20])).await.unwrap();
        }
        let playlist = dir.path().join("live/late.m3u8");
        for _ in 0..500 {
            if playlist.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(playlist.exists(), "audio-only segments were cut while the video was unknown");
        // The video arrives: AV1.
        let av1c = [0x81, 0x00, 0x0c, 0x00, 0x0a, 0x0b, 0x02, 0x00, 0x00, 0x05, 0x21, 0xe7, 0xfd, 0xe0, 0x17, 0xc0, 0x02];
        tx.send(frame(TrackKind::Video, Codec::Av1, 3500, true, true, &av1c)).await.unwrap();
        tx.send(frame(TrackKind::Video, Codec::Av1, 3500, true, false, &[0x32, 0x00])).await.unwrap();
        tx.send(frame(TrackKind::Audio, Codec::Aac, 3510, true, false, &[0x21; 20])).await.unwrap();
        drop(tx);
        for _ in 0..500 {
            if !playlist.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let left: Vec<String> = std::fs::read_dir(dir.path().join("live")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert!(left.is_empty(), "files left: {left:?}");
        drop(muxer);
    }
}
