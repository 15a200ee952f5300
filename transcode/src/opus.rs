//! The WebRTC audio bridge. [`OpusToAac`]: WebRTC publishers' Opus (RFC 7587, 48 kHz)
//! decoded with `opus-rs` (pure Rust) and encoded to AAC-LC 48 kHz stereo with libfdk-aac, for
//! the FLV, TS and MP4 outputs. [`AacToOpus`]: AAC from RTMP/SRT publishers decoded with
//! libfdk-aac, resampled to 48 kHz stereo when needed, and encoded to 20 ms Opus packets for
//! WebRTC players.
//!
//! Output times count encoder frames (1024 samples) from an anchor: the first packet's time,
//! moved to a new anchor when the input jumps by more than 200 ms from where the samples
//! decoded so far say it should be (a gap, or a sender restarting its clock).

use crate::audio::{AacEncoder, AudioError, AAC_FRAME};
use opus_rs::{Application, OpusDecoder, OpusEncoder};

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

/// Samples per channel in one 20 ms Opus packet at 48 kHz.
pub const OPUS_FRAME: usize = 960;

/// One AAC stream into 20 ms Opus packets (48 kHz stereo).
pub struct AacToOpus {
    decoder: fdk_aac::dec::Decoder,
    encoder: OpusEncoder,
    pcm: Vec<i16>,
    /// 48 kHz stereo samples waiting for a full Opus frame.
    pending: Vec<f32>,
    resampler: Resampler,
    anchor: Option<(i64, u64)>,
    samples_in: u64,
    packets_out: u64,
    out: Vec<u8>,
    /// AAC frames that failed to decode.
    pub errors: u64,
}

impl AacToOpus {
    /// A transcoder for the AAC stream with this AudioSpecificConfig, to Opus at `bitrate`.
    pub fn new(audio_specific_config: &[u8], bitrate: u32) -> Result<AacToOpus, AudioError> {
        let mut decoder = fdk_aac::dec::Decoder::new(fdk_aac::dec::Transport::Raw);
        decoder.config_raw(audio_specific_config).map_err(|e| AudioError(format!("AAC decoder: {}", e.message())))?;
        let mut encoder = OpusEncoder::new(RATE as i32, CHANNELS, Application::Audio).map_err(|e| AudioError(format!("Opus encoder: {e}")))?;
        encoder.bitrate_bps = bitrate as i32;
        Ok(AacToOpus { decoder, encoder, pcm: vec![0; 8 * 2048], pending: Vec::new(), resampler: Resampler::default(), anchor: None, samples_in: 0, packets_out: 0, out: vec![0; 1500], errors: 0 })
    }

    /// Takes one raw AAC frame presented at `time` (48 kHz ticks); returns the Opus packets
    /// now complete with their times (48 kHz ticks).
    pub fn push(&mut self, time: i64, frame: &[u8]) -> Result<Vec<(i64, Vec<u8>)>, AudioError> {
        let decoded = self.decoder.fill(frame).and_then(|_| self.decoder.decode_frame(&mut self.pcm));
        if decoded.is_err() {
            self.errors += 1;
            return Ok(Vec::new());
        }
        let (rate, channels) = {
            let info = self.decoder.stream_info();
            (info.sampleRate.max(1) as u32, info.numChannels.max(1) as usize)
        };
        let size = self.decoder.decoded_frame_size().min(self.pcm.len());
        let stereo: Vec<f32> = self.pcm[..size]
            .chunks(channels)
            .flat_map(|s| {
                let l = s[0] as f32 / 32768.0;
                let r = if channels > 1 { s[1] as f32 / 32768.0 } else { l };
                [l, r]
            })
            .collect();
        let resampled = self.resampler.run(&stereo, rate);
        let expected = self.anchor.map(|(t, first)| t + (self.samples_in as i64 - first as i64));
        if self.anchor.is_none() || expected.is_some_and(|e| (time - e).abs() > RATE as i64 / 5) {
            let pending = (self.pending.len() / CHANNELS) as i64;
            self.anchor = Some((time - pending, self.samples_in - pending as u64));
        }
        self.samples_in += (resampled.len() / CHANNELS) as u64;
        self.pending.extend_from_slice(&resampled);
        let (anchor_time, anchor_sample) = self.anchor.unwrap_or((time, 0));
        let mut packets = Vec::new();
        while self.pending.len() >= OPUS_FRAME * CHANNELS {
            let chunk: Vec<f32> = self.pending.drain(..OPUS_FRAME * CHANNELS).collect();
            let sample = self.samples_in - (self.pending.len() / CHANNELS) as u64 - OPUS_FRAME as u64;
            let len = self.encoder.encode(&chunk, OPUS_FRAME, &mut self.out).map_err(|e| AudioError(format!("Opus encoder: {e}")))?;
            self.packets_out += 1;
            packets.push((anchor_time + sample as i64 - anchor_sample as i64, self.out[..len].to_vec()));
        }
        Ok(packets)
    }
}

/// Linear-interpolation resampler of interleaved stereo to 48 kHz, keeping its phase across
/// calls. Enough for speech and program audio on its way to Opus; not a mastering tool.
#[derive(Default)]
struct Resampler {
    /// Position of the next output sample, in input samples, relative to `last`.
    position: f64,
    /// The previous call's last input frame.
    last: Option<[f32; 2]>,
}

impl Resampler {
    fn run(&mut self, input: &[f32], rate: u32) -> Vec<f32> {
        if rate == RATE || input.len() < 2 {
            return input.to_vec();
        }
        let step = rate as f64 / RATE as f64;
        let frames: Vec<[f32; 2]> = self.last.into_iter().chain(input.chunks_exact(2).map(|c| [c[0], c[1]])).collect();
        let mut out = Vec::with_capacity((input.len() as f64 / step) as usize + 4);
        // With a previous frame, position 0 is that frame; without, the first input frame.
        while self.position + 1.0 < frames.len() as f64 {
            let i = self.position.floor() as usize;
            let frac = (self.position - i as f64) as f32;
            let (a, b) = (frames[i], frames[i + 1]);
            out.extend(a.iter().zip(b.iter()).map(|(x, y)| x + (y - x) * frac));
            self.position += step;
        }
        self.position -= (frames.len() - 1) as f64;
        self.last = frames.last().copied();
        out
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

    /// Zero crossings per second of one channel of interleaved stereo, halved: the frequency
    /// of a pure tone.
    fn tone_frequency(stereo: &[f32], rate: f32) -> f32 {
        let left: Vec<f32> = stereo.chunks_exact(2).map(|c| c[0]).collect();
        let crossings = left.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count();
        crossings as f32 / 2.0 / (left.len() as f32 / rate)
    }

    #[test]
    fn resampling_keeps_the_pitch_and_the_length() {
        let mut r = Resampler::default();
        let input: Vec<f32> = (0..44_100).flat_map(|n| {
            let v = (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 44_100.0).sin();
            [v, v]
        }).collect();
        // In uneven pieces, as AAC frames arrive.
        let out: Vec<f32> = input.chunks(2048).flat_map(|piece| r.run(piece, 44_100)).collect();
        let frames = out.len() / 2;
        assert!((47_990..=48_001).contains(&frames), "{frames} frames for 1 s");
        let f = tone_frequency(&out, 48_000.0);
        assert!((f - 1000.0).abs() < 5.0, "{f} Hz");
    }

    #[test]
    fn aac_to_opus_and_back_keeps_the_tone() {
        // AAC at 44.1 kHz from the fdk encoder, through AacToOpus, decoded by the Opus
        // decoder: the 440 Hz tone survives and packets are 20 ms apart.
        let mut aac = AacEncoder::new(44_100, 2, 128_000).unwrap();
        let pcm: Vec<i16> = (0..44_100 * 2).flat_map(|n| {
            let v = ((2.0 * std::f32::consts::PI * 440.0 * n as f32 / 44_100.0).sin() * 12_000.0) as i16;
            [v, v]
        }).collect();
        let frames = aac.push(&pcm).unwrap();
        let mut bridge = AacToOpus::new(aac.config(), 64_000).unwrap();
        let mut packets = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let time = 1000 + (i as i64 * 1024 * 48_000 / 44_100);
            packets.extend(bridge.push(time, frame).unwrap());
        }
        assert_eq!(bridge.errors, 0);
        assert!(packets.len() >= 90, "{} packets", packets.len());
        for pair in packets.windows(2) {
            assert_eq!(pair[1].0 - pair[0].0, OPUS_FRAME as i64);
        }
        let mut decoder = OpusDecoder::new(48_000, 2).unwrap();
        let mut decoded = Vec::new();
        let mut buf = vec![0f32; OPUS_FRAME * 2];
        for (_, packet) in &packets[10..] {
            let n = decoder.decode(packet, OPUS_FRAME, &mut buf).unwrap();
            decoded.extend_from_slice(&buf[..n * 2]);
        }
        let f = tone_frequency(&decoded, 48_000.0);
        assert!((f - 440.0).abs() < 10.0, "{f} Hz");
    }
}
