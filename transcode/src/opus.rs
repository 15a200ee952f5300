//! Opus to AAC for WebRTC publishers whose audio goes out over FLV, TS and MP4: Opus packets
//! (RFC 7587, 48 kHz) decoded with `opus-rs` (pure Rust) and encoded to AAC-LC 48 kHz stereo
//! with libfdk-aac.
//!
//! Output times count encoder frames (1024 samples) from an anchor: the first packet's time,
//! moved to a new anchor when the input jumps by more than 200 ms from where the samples
//! decoded so far say it should be (a gap, or a sender restarting its clock).

use crate::audio::{AacEncoder, AudioError, AAC_FRAME};
use opus_rs::OpusDecoder;

/// Output rate and channels.
pub const RATE: u32 = 48_000;
const CHANNELS: usize = 2;
/// Largest Opus packet duration (120 ms) in samples per channel.
const MAX_FRAME: usize = 5760;

/// One Opus stream into AAC frames.
pub struct OpusToAac {
    decoder: OpusDecoder,
    encoder: AacEncoder,
    pcm: Vec<f32>,
    /// (input time, output sample) that output times count from.
    anchor: Option<(i64, u64)>,
    samples_in: u64,
    frames_out: u64,
    /// Packets that failed to decode.
    pub errors: u64,
}

impl OpusToAac {
    /// A transcoder producing AAC at `bitrate` bit/s.
    pub fn new(bitrate: u32) -> Result<OpusToAac, AudioError> {
        let decoder = OpusDecoder::new(RATE as i32, CHANNELS).map_err(|e| AudioError(format!("Opus decoder: {e}")))?;
        Ok(OpusToAac { decoder, encoder: AacEncoder::new(RATE, CHANNELS, bitrate)?, pcm: vec![0.0; MAX_FRAME * CHANNELS], anchor: None, samples_in: 0, frames_out: 0, errors: 0 })
    }

    /// The AudioSpecificConfig of the output.
    pub fn config(&self) -> &[u8] {
        self.encoder.config()
    }

    /// Takes one Opus packet presented at `time` (48 kHz ticks); returns the AAC frames now
    /// complete with their times (48 kHz ticks). A packet that does not decode is counted and
    /// skipped.
    pub fn push(&mut self, time: i64, packet: &[u8]) -> Result<Vec<(i64, Vec<u8>)>, AudioError> {
        let samples = match self.decoder.decode(packet, MAX_FRAME, &mut self.pcm) {
            Ok(n) => n.min(MAX_FRAME),
            Err(_) => {
                self.errors += 1;
                return Ok(Vec::new());
            }
        };
        let expected = self.anchor.map(|(t, first)| t + (self.samples_in as i64 - first as i64));
        if self.anchor.is_none() || expected.is_some_and(|e| (time - e).abs() > RATE as i64 / 5) {
            // Frames already encoded keep their times; new input lines up at `time`.
            let pending = self.samples_in as i64 - (self.frames_out * AAC_FRAME as u64) as i64;
            self.anchor = Some((time - pending, self.frames_out * AAC_FRAME as u64));
        }
        self.samples_in += samples as u64;
        let pcm: Vec<i16> = self.pcm[..samples * CHANNELS].iter().map(|&s| (s * 32768.0).clamp(-32768.0, 32767.0) as i16).collect();
        let frames = self.encoder.push(&pcm)?;
        let (anchor_time, anchor_sample) = self.anchor.unwrap_or((time, 0));
        Ok(frames
            .into_iter()
            .map(|frame| {
                let sample = self.frames_out * AAC_FRAME as u64;
                self.frames_out += 1;
                (anchor_time + sample as i64 - anchor_sample as i64, frame)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opus_rs::{Application, OpusEncoder};

    /// 20 ms packets of a 440 Hz tone, stereo, from the same library's encoder.
    fn tone_packets(count: usize) -> Vec<Vec<u8>> {
        let mut encoder = OpusEncoder::new(48_000, 2, Application::Audio).unwrap();
        encoder.bitrate_bps = 64_000;
        (0..count)
            .map(|i| {
                let pcm: Vec<f32> = (0..960).flat_map(|n| {
                    let t = (i * 960 + n) as f32 / 48_000.0;
                    let v = (2.0 * std::f32::consts::PI * 440.0 * t).sin() * 0.5;
                    [v, v]
                }).collect();
                let mut out = vec![0u8; 1500];
                let len = encoder.encode(&pcm, 960, &mut out).unwrap();
                out.truncate(len);
                out
            })
            .collect()
    }

    #[test]
    fn decodes_to_aac_frames_with_continuous_times() {
        let mut t = OpusToAac::new(128_000).unwrap();
        // AudioSpecificConfig: AAC-LC (2), 48 kHz (index 3), stereo.
        assert_eq!(t.config(), &[0x11, 0x90]);
        let mut out = Vec::new();
        for (i, packet) in tone_packets(100).iter().enumerate() {
            out.extend(t.push(5_000 + i as i64 * 960, packet).unwrap());
        }
        assert_eq!(t.errors, 0);
        // 2 s of input: 93 frames of 1024 samples, minus the encoder's delay of about two.
        assert!((88..=94).contains(&out.len()), "{} frames", out.len());
        for (i, (time, frame)) in out.iter().enumerate() {
            assert_eq!(*time, 5_000 + i as i64 * 1024);
            assert!(!frame.is_empty());
        }
        // A jump of 10 s in the input moves the anchor; times continue from there.
        let before = t.frames_out;
        let later: Vec<(i64, Vec<u8>)> = tone_packets(20).iter().enumerate().flat_map(|(i, p)| t.push(500_000 + i as i64 * 960, p).unwrap()).collect();
        assert!(!later.is_empty());
        let pending = 100 * 960 - before as i64 * 1024;
        assert_eq!(later[0].0, 500_000 - pending, "frames already queued in the encoder end where the new input starts");
        // Garbage is counted, not fatal.
        assert!(t.push(600_000, &[0xff; 3]).is_ok());
    }
}
