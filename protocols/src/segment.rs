//! Where live segments end, shared by the HLS and DASH packagers: at the first start point
//! (a video keyframe; any audio frame in an audio-only stream) at or after the target
//! duration, or early at a keyframe when a segment would grow past its byte cap. Frames
//! before the first start point are dropped, so every segment begins decodable. Pure: frames
//! in, segments out.

use crate::media::{MediaFrame, TrackKind};
use std::sync::Arc;
use std::time::Duration;

/// A finished segment: its frames and its time span in milliseconds.
pub struct Cut {
    /// The segment's frames, from a start point.
    pub frames: Vec<Arc<MediaFrame>>,
    /// Start, media time in ms.
    pub start_ms: i64,
    /// End (the next segment's start, or one frame past the last), ms.
    pub end_ms: i64,
}

/// Decides where segments end: at the first start point (a video keyframe; any audio frame
/// in an audio-only stream) at or after the target duration. Frames before the first start
/// point are dropped, so every segment begins decodable.
pub struct Cutter {
    target_ms: i64,
    max_bytes: usize,
    /// Payload bytes of `frames`.
    bytes: usize,
    /// Segments dropped for growing past `max_bytes`.
    pub dropped: u64,
    frames: Vec<Arc<MediaFrame>>,
    start_ms: i64,
    last_video_step_ms: i64,
}

impl Cutter {
    /// A cutter aiming at segments of `target`, dropping a segment that grows past
    /// `max_bytes` before a start point.
    pub fn new(target: Duration, max_bytes: usize) -> Self {
        Cutter { target_ms: target.as_millis() as i64, max_bytes, bytes: 0, dropped: 0, frames: Vec::new(), start_ms: 0, last_video_step_ms: 40 }
    }

    /// Adds a media frame; returns the segment it closed, if any.
    pub fn push(&mut self, frame: Arc<MediaFrame>, has_video: bool) -> Option<Cut> {
        let start_point = if has_video { frame.is_video_keyframe() } else { frame.track == TrackKind::Audio };
        let dts = frame.dts_ms();
        if frame.track == TrackKind::Video {
            if let Some(previous) = self.frames.iter().rev().find(|f| f.track == TrackKind::Video) {
                let step = dts - previous.dts_ms();
                if step > 0 {
                    self.last_video_step_ms = step;
                }
            }
        }
        let mut closed = None;
        if self.frames.is_empty() {
            if !start_point {
                return None;
            }
            self.start_ms = dts;
        } else if start_point && (dts - self.start_ms >= self.target_ms || self.bytes + frame.payload.len() > self.max_bytes) {
            // At a keyframe a segment may always close (early when it is too big): the
            // keyframe starts the next one and nothing is lost.
            closed = Some(Cut { frames: std::mem::take(&mut self.frames), start_ms: self.start_ms, end_ms: dts });
            self.bytes = 0;
            self.start_ms = dts;
        } else if self.bytes + frame.payload.len() > self.max_bytes {
            // Too big to hold until its next keyframe: dropped whole (a segment cut here would
            // leave the next one starting without a keyframe). The caller logs `dropped`.
            self.frames = Vec::new();
            self.bytes = 0;
            self.dropped += 1;
            return None;
        }
        self.bytes += frame.payload.len();
        self.frames.push(frame);
        closed
    }

    /// Closes the current segment early (stream end, parameter change); it ends one video
    /// frame after its last frame.
    pub fn flush(&mut self) -> Option<Cut> {
        let last = self.frames.last()?.dts_ms();
        self.bytes = 0;
        Some(Cut { frames: std::mem::take(&mut self.frames), start_ms: self.start_ms, end_ms: last + self.last_video_step_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Codec, Timebase};

    fn video(dts_ms: i64, keyframe: bool, bytes: usize) -> Arc<MediaFrame> {
        Arc::new(MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts: dts_ms, pts: dts_ms, timebase: Timebase::MILLIS, keyframe, config: false, payload: bytes::Bytes::from(vec![0u8; bytes]) })
    }

    #[test]
    fn a_segment_past_the_byte_cap_is_dropped_and_the_next_starts_at_a_keyframe() {
        let mut cutter = Cutter::new(Duration::from_secs(2), 10_000);
        assert!(cutter.push(video(0, true, 1000), true).is_none());
        for n in 1..100 {
            assert!(cutter.push(video(n * 40, false, 1000), true).is_none());
            assert!(cutter.bytes <= 10_000, "held {} bytes", cutter.bytes);
        }
        assert_eq!(cutter.dropped, 1);
        assert!(cutter.frames.is_empty(), "non-key frames after the drop wait for a keyframe");
        // The next keyframe starts a segment again, and an ordinary GOP is cut as usual.
        assert!(cutter.push(video(4000, true, 1000), true).is_none());
        assert!(cutter.push(video(5000, false, 1000), true).is_none());
        let cut = cutter.push(video(6000, true, 1000), true).expect("a 2 s segment");
        assert_eq!((cut.frames.len(), cut.start_ms, cut.end_ms), (2, 4000, 6000));
        assert_eq!(cutter.dropped, 1);
    }

    #[test]
    fn a_keyframe_past_the_byte_cap_closes_the_segment_early_instead_of_dropping() {
        let mut cutter = Cutter::new(Duration::from_secs(2), 10_000);
        cutter.push(video(0, true, 6000), true);
        let cut = cutter.push(video(40, true, 6000), true).expect("closed early at the keyframe");
        assert_eq!((cut.frames.len(), cutter.dropped, cutter.frames.len()), (1, 0, 1));
    }
}
