//! Gaps in what an internal output (a recording, an HLS or DASH muxer) received.
//!
//! Internal outputs are never cut off for being slow, but their queue is bounded: when a disk
//! cannot keep up for longer than the queue lasts, the stream actor drops that output's
//! frames until the next keyframe, as it does for a player. Unlike a player, the output is
//! told exactly where: before the stream sends the keyframe that resumes it, it notes a
//! [`Gap`] naming that very frame (the same `Arc`), so the output can close its file at the
//! gap, index the gap and start anew at the keyframe. Nothing is lost silently.

use estuary_protocols::MediaFrame;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Frames an output did not receive.
#[derive(Debug, Clone)]
pub struct Gap {
    /// The frame the output resumes with (a keyframe; compare with `Arc::ptr_eq`).
    pub resume: Arc<MediaFrame>,
    /// Media time of the first frame lost, ms.
    pub from_dts_ms: i64,
    /// Frames lost.
    pub lost_frames: u64,
    /// Why.
    pub reason: &'static str,
}

#[derive(Debug, Default)]
struct Inner {
    pending: Mutex<VecDeque<Gap>>,
    count: AtomicUsize,
}

/// The gaps noted for one subscription, shared by the stream actor and the output.
#[derive(Debug, Clone, Default)]
pub struct Gaps(Arc<Inner>);

impl Gaps {
    /// Notes a gap that ends at `gap.resume`.
    pub(crate) fn note(&self, gap: Gap) {
        self.0.pending.lock().unwrap_or_else(|e| e.into_inner()).push_back(gap);
        self.0.count.fetch_add(1, Ordering::Release);
    }

    /// Withdraws the gap noted last (its resume frame could not be sent after all).
    pub(crate) fn withdraw_last(&self) {
        if self.0.pending.lock().unwrap_or_else(|e| e.into_inner()).pop_back().is_some() {
            self.0.count.fetch_sub(1, Ordering::Release);
        }
    }

    /// The gap that `frame` ends, if it ends one. Cheap when there is none (one atomic load).
    pub fn ended_by(&self, frame: &Arc<MediaFrame>) -> Option<Gap> {
        if self.0.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut pending = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.front().is_some_and(|gap| Arc::ptr_eq(&gap.resume, frame)) {
            self.0.count.fetch_sub(1, Ordering::Release);
            return pending.pop_front();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use estuary_protocols::media::{Codec, Timebase, TrackKind};

    fn frame(dts: i64) -> Arc<MediaFrame> {
        Arc::new(MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts, pts: dts, timebase: Timebase::MILLIS, keyframe: true, config: false, payload: Bytes::from_static(b"x") })
    }

    #[test]
    fn a_gap_is_found_only_at_its_own_resume_frame() {
        let gaps = Gaps::default();
        let resume = frame(100);
        let twin = frame(100);
        assert!(gaps.ended_by(&resume).is_none());
        gaps.note(Gap { resume: resume.clone(), from_dts_ms: 40, lost_frames: 2, reason: "test" });
        assert!(gaps.ended_by(&twin).is_none(), "an equal frame is not the resume frame");
        let gap = gaps.ended_by(&resume).expect("the gap");
        assert_eq!((gap.from_dts_ms, gap.lost_frames), (40, 2));
        assert!(gaps.ended_by(&resume).is_none(), "taken once");
    }

    #[test]
    fn a_withdrawn_gap_is_gone() {
        let gaps = Gaps::default();
        let resume = frame(7);
        gaps.note(Gap { resume: resume.clone(), from_dts_ms: 0, lost_frames: 1, reason: "test" });
        gaps.withdraw_last();
        assert!(gaps.ended_by(&resume).is_none());
    }
}
