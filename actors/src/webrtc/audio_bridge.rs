//! AAC to Opus once per stream and worker, shared by every WHEP player there.
//!
//! Transcoding costs far more than sending: done per player it made AAC-to-Opus the largest
//! part of a WHEP player's CPU and memory. The same `Arc<MediaFrame>` reaches every player
//! of a stream, so the first player to meet a frame feeds it to the thread's transcoder for
//! that stream and remembers the Opus packets it produced; the others take them from there.
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

/// An AAC frame and the Opus packets it produced.
type Transcoded = (Arc<MediaFrame>, Vec<(i64, Bytes)>);

struct Bridge {
    config: Bytes,
    transcoder: AacToOpus,
    last_fed: i64,
    recent: VecDeque<Transcoded>,
}

/// The transcoders of one worker: one per stream with WHEP players on that worker (in the
/// worker's `WorkerLocals`; its lock is only taken by the worker's own thread).
#[derive(Default)]
pub struct AudioBridges {
    bridges: HashMap<String, Bridge>,
    /// WHEP players of each stream on this worker.
    players: HashMap<String, usize>,
}

impl AudioBridges {
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
        }
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
