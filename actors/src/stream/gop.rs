//! The stream's GOP cache and headers: what a late joiner is served before live frames.

use super::actor::StreamActor;
use estuary_protocols::media::{MediaFrame, TrackKind};
use std::sync::Arc;

impl StreamActor {
    pub(super) fn cache(&mut self, frame: &Arc<MediaFrame>) {
        if frame.is_video_keyframe() {
            self.gop.clear();
            self.gop_overflow = false;
            self.gop_bytes = frame.payload.len();
            self.gop.push(frame.clone());
            return;
        }
        if self.gop.is_empty() || self.gop_overflow {
            return;
        }
        let bytes = self.gop_bytes + frame.payload.len();
        if self.gop.len() >= self.settings.gop_cache_max_frames || bytes > self.settings.gop_cache_max_bytes {
            tracing::warn!(stream = %self.key, frames = self.gop.len(), bytes, "GOP longer than gop_cache_max_frames or gop_cache_max_bytes; late joiners will wait for the next keyframe");
            self.gop.clear();
            self.gop.shrink_to_fit();
            self.gop_bytes = 0;
            self.gop_overflow = true;
            return;
        }
        self.gop_bytes = bytes;
        self.gop.push(frame.clone());
    }

    /// True when `frame` is a point where a subscriber may (re)start.
    pub(super) fn is_start_point(&self, frame: &MediaFrame) -> bool {
        if frame.config {
            return false;
        }
        match frame.track {
            TrackKind::Video => frame.keyframe,
            TrackKind::Audio => self.video_config.is_none(),
            TrackKind::Data => false,
        }
    }

    pub(super) fn headers(&self) -> impl Iterator<Item = &Arc<MediaFrame>> {
        self.metadata.iter().chain(self.video_config.iter()).chain(self.audio_config.iter())
    }
}

pub(super) fn retime(frame: &Arc<MediaFrame>, dts: i64) -> Arc<MediaFrame> {
    if frame.dts == dts {
        return frame.clone();
    }
    let mut copy = MediaFrame::clone(frame);
    copy.pts = dts;
    copy.dts = dts;
    Arc::new(copy)
}
