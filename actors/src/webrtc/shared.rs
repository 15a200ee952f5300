//! What the WHEP players of one stream on one worker thread share: the AAC-to-Opus
//! transcoder and the RTP payloads of each video frame.
//!
//! The same `Arc<MediaFrame>` reaches every player of a stream, so the first player on a
//! worker to meet a frame does the work for it (transcodes its audio, or cuts its H.264 NAL
//! units into RTP payloads) and remembers the result by the frame; the others take it from
//! there. Only the RTP header (sequence number, timestamp offset, SSRC), the header
//! extensions and SRTP stay per player. Done per player, AAC-to-Opus was the largest part of
//! a WHEP player's CPU and memory.
//!
//! A transcoder carries state (samples waiting for a full Opus frame), so it only moves
//! forward: a frame older than the last one fed, not in the list (a late joiner's cached GOP),
//! yields no audio for that player. Its audio starts with the live edge a moment later.

use bytes::Bytes;
use estuary_protocols::media::MediaFrame;
use estuary_transcode::opus::AacToOpus;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Frames remembered per stream (a few seconds of AAC).
const REMEMBERED: usize = 256;
/// Video frames remembered per stream: a GOP's worth for players that start from the cache
/// at about the same time; older frames are cut again by whoever needs them.
const VIDEO_REMEMBERED: usize = 128;

/// An AAC frame and the Opus packets it produced.
type Transcoded = (Arc<MediaFrame>, Vec<(i64, Bytes)>);

struct Bridge {
    config: Bytes,
    transcoder: AacToOpus,
    last_fed: i64,
    recent: VecDeque<Transcoded>,
}

/// What one worker's WHEP players share, per stream with players on that worker (in the
/// worker's `WorkerLocals`; its lock is only taken by the worker's own thread).
#[derive(Default)]
pub struct PlayerShares {
    bridges: HashMap<String, Bridge>,
    /// Recent video frames and their RTP payloads.
    video: HashMap<String, VecDeque<(Arc<MediaFrame>, Arc<[Bytes]>)>>,
    /// WHEP players of each stream on this worker.
    players: HashMap<String, usize>,
}

impl PlayerShares {
    /// A player of `stream` started on this worker.
    pub(crate) fn join(&mut self, stream: &str) {
        *self.players.entry(stream.to_string()).or_default() += 1;
    }

    /// A player of `stream` on this worker ended; the last one frees the stream's transcoder.
    pub(crate) fn leave(&mut self, stream: &str) {
        let count = self.players.entry(stream.to_string()).or_default();
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.players.remove(stream);
            self.bridges.remove(stream);
            self.video.remove(stream);
        }
    }

    /// The RTP payloads of a video frame of `stream`: made by `cut` for the first player that
    /// asks, shared with the others.
    pub(crate) fn video_payloads(&mut self, stream: &str, frame: &Arc<MediaFrame>, cut: impl FnOnce() -> Vec<Bytes>) -> Arc<[Bytes]> {
        let recent = self.video.entry(stream.to_string()).or_default();
        if let Some((_, payloads)) = recent.iter().rev().find(|(f, _)| Arc::ptr_eq(f, frame)) {
            return payloads.clone();
        }
        let payloads: Arc<[Bytes]> = cut().into();
        if recent.len() == VIDEO_REMEMBERED {
            recent.pop_front();
        }
        recent.push_back((frame.clone(), payloads.clone()));
        payloads
    }

    /// Opus packets (48 kHz times) for one AAC frame of `stream` with AudioSpecificConfig
    /// `config`, presented at `time` (48 kHz ticks).
    pub(crate) fn opus_for(&mut self, stream: &str, config: &Bytes, bitrate: u32, frame: &Arc<MediaFrame>, time: i64) -> Result<Vec<(i64, Bytes)>, String> {
        let bridges = &mut self.bridges;
        if bridges.get(stream).is_none_or(|b| b.config != *config) {
            let transcoder = AacToOpus::new(config, bitrate).map_err(|e| e.to_string())?;
            bridges.insert(stream.to_string(), Bridge { config: config.clone(), transcoder, last_fed: i64::MIN, recent: VecDeque::new() });
        }
        let Some(bridge) = bridges.get_mut(stream) else { return Ok(Vec::new()) };
        if let Some((_, packets)) = bridge.recent.iter().rev().find(|(f, _)| Arc::ptr_eq(f, frame)) {
            return Ok(packets.clone());
        }
        if time <= bridge.last_fed {
            return Ok(Vec::new());
        }
        bridge.last_fed = time;
        let packets: Vec<(i64, Bytes)> = bridge.transcoder.push(time, &frame.payload).map_err(|e| e.to_string())?.into_iter().map(|(t, p)| (t, Bytes::from(p))).collect();
        if bridge.recent.len() == REMEMBERED {
            bridge.recent.pop_front();
        }
        bridge.recent.push_back((frame.clone(), packets.clone()));
        Ok(packets)
    }
}

#[cfg(test)]
mod tests {
    use super::PlayerShares;
    use bytes::Bytes;
    use estuary_protocols::media::{Codec, MediaFrame, Timebase, TrackKind};
    use std::sync::Arc;

    fn frame(dts: i64) -> Arc<MediaFrame> {
        Arc::new(MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts, pts: dts, timebase: Timebase::MILLIS, keyframe: false, config: false, payload: Bytes::from_static(b"frame") })
    }

    #[test]
    fn a_frame_is_cut_once_for_every_player_of_the_stream() {
        let mut shares = PlayerShares::default();
        shares.join("live/a");
        shares.join("live/a");
        let (one, two) = (frame(0), frame(40));
        let mut cuts = 0;
        let mut cut = || {
            cuts += 1;
            vec![Bytes::from_static(b"p1"), Bytes::from_static(b"p2")]
        };
        let first = shares.video_payloads("live/a", &one, &mut cut);
        let again = shares.video_payloads("live/a", &one, &mut cut);
        assert!(Arc::ptr_eq(&first, &again));
        shares.video_payloads("live/a", &two, &mut cut);
        // Another stream's frame is its own.
        shares.video_payloads("live/b", &one, &mut cut);
        assert_eq!(cuts, 3);
        assert_eq!(first.len(), 2);
    }

    #[test]
    fn the_last_player_leaving_frees_the_stream() {
        let mut shares = PlayerShares::default();
        shares.join("live/a");
        shares.video_payloads("live/a", &frame(0), Vec::new);
        shares.leave("live/a");
        assert!(shares.video.is_empty() && shares.players.is_empty());
    }
}
