//! In-process audio transcoding: G.711 (ITU-T G.711 A-law and µ-law, as GB28181 cameras
//! send) decoded to PCM and encoded to AAC-LC with libfdk-aac (the `fdk-aac` crate builds it
//! from bundled source; no system package).

use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};
use thiserror::Error;

/// Samples per AAC-LC frame.
pub const AAC_FRAME: usize = 1024;

/// An encoder failure.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("AAC encoder: {0}")]
pub struct AudioError(pub String);

/// A-law byte to 16-bit linear PCM (G.711 A.2).
pub fn alaw_to_linear(value: u8) -> i16 {
    let a = value ^ 0x55;
    let exponent = (a & 0x70) >> 4;
    let mantissa = (a & 0x0f) as i16;
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        e => ((mantissa << 4) + 0x108) << (e - 1),
    };
    if a & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// µ-law byte to 16-bit linear PCM (G.711 A.1).
pub fn ulaw_to_linear(value: u8) -> i16 {
    let u = !value;
    let exponent = (u & 0x70) >> 4;
    let mantissa = (u & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// 16-bit linear PCM to A-law (for test sources and simulators).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let sign: u8 = if sample >= 0 { 0x80 } else { 0 };
    let magnitude = (sample as i32).unsigned_abs().min(32635);
    let (exponent, mantissa) = if magnitude < 256 {
        (0u32, (magnitude >> 4) & 0x0f)
    } else {
        let exponent = 31 - magnitude.leading_zeros() - 7;
        (exponent, (magnitude >> (exponent + 3)) & 0x0f)
    };
    (sign | ((exponent as u8) << 4) | mantissa as u8) ^ 0x55
}

/// AAC-LC encoder over 16-bit interleaved PCM; emits one raw AAC frame per
/// [`AAC_FRAME`] samples per channel.
pub struct AacEncoder {
    encoder: Encoder,
    channels: usize,
    pending: Vec<i16>,
    config: Vec<u8>,
    out: Vec<u8>,
}

impl AacEncoder {
    /// An encoder for `sample_rate` Hz and `channels` (1 or 2) at `bitrate` bit/s.
    pub fn new(sample_rate: u32, channels: usize, bitrate: u32) -> Result<AacEncoder, AudioError> {
        let params = EncoderParams {
            bit_rate: BitRate::Cbr(bitrate),
            sample_rate,
            transport: Transport::Raw,
            channels: if channels == 2 { ChannelMode::Stereo } else { ChannelMode::Mono },
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        };
        let encoder = Encoder::new(params).map_err(|e| AudioError(format!("{e:?}")))?;
        let info = encoder.info().map_err(|e| AudioError(format!("{e:?}")))?;
        let config = info.confBuf[..(info.confSize as usize).min(64)].to_vec();
        Ok(AacEncoder { encoder, channels: channels.max(1), pending: Vec::new(), config, out: vec![0u8; 8192] })
    }

    /// The AudioSpecificConfig.
    pub fn config(&self) -> &[u8] {
        &self.config
    }

    /// Adds PCM; returns the AAC frames now complete (the encoder delays by about two frames).
    pub fn push(&mut self, pcm: &[i16]) -> Result<Vec<Vec<u8>>, AudioError> {
        self.pending.extend_from_slice(pcm);
        let block = AAC_FRAME * self.channels;
        let mut frames = Vec::new();
        while self.pending.len() >= block {
            let chunk: Vec<i16> = self.pending.drain(..block).collect();
            let info = self.encoder.encode(&chunk, &mut self.out).map_err(|e| AudioError(format!("{e:?}")))?;
            if info.output_size > 0 {
                frames.push(self.out[..info.output_size].to_vec());
            }
        }
        Ok(frames)
    }
}

/// G.711 to AAC for one stream, with timestamps: the first G.711 packet's time (90 kHz)
/// anchors the output, then each AAC frame is 1024 samples later; a jump of more than
/// 200 ms in the input (a gap) re-anchors.
pub struct G711ToAac {
    alaw: bool,
    encoder: AacEncoder,
    anchor: Option<(i64, u64)>,
    samples_in: u64,
    frames_out: u64,
}

impl G711ToAac {
    /// A transcoder for A-law (`alaw`) or µ-law, 8 kHz mono.
    pub fn new(alaw: bool) -> Result<G711ToAac, AudioError> {
        Ok(G711ToAac { alaw, encoder: AacEncoder::new(8000, 1, 24_000)?, anchor: None, samples_in: 0, frames_out: 0 })
    }

    /// The AudioSpecificConfig of the output.
    pub fn config(&self) -> &[u8] {
        self.encoder.config()
    }

    /// Takes G.711 bytes presented at `pts` (90 kHz); returns AAC frames with their times
    /// (90 kHz).
    pub fn push(&mut self, pts: i64, data: &[u8]) -> Result<Vec<(i64, Vec<u8>)>, AudioError> {
        let expected = self.anchor.map(|(t, first)| t + ((self.samples_in - first) as i64) * 90_000 / 8000);
        if self.anchor.is_none() || expected.is_some_and(|e| (pts - e).abs() > 18_000) {
            self.anchor = Some((pts - (self.samples_in as i64 - (self.frames_out * AAC_FRAME as u64) as i64) * 90_000 / 8000, self.frames_out * AAC_FRAME as u64));
        }
        let pcm: Vec<i16> = data.iter().map(|&b| if self.alaw { alaw_to_linear(b) } else { ulaw_to_linear(b) }).collect();
        self.samples_in += pcm.len() as u64;
        let frames = self.encoder.push(&pcm)?;
        let (anchor_time, anchor_sample) = self.anchor.unwrap_or((pts, 0));
        Ok(frames
            .into_iter()
            .map(|frame| {
                let sample = self.frames_out * AAC_FRAME as u64;
                self.frames_out += 1;
                (anchor_time + (sample as i64 - anchor_sample as i64) * 90_000 / 8000, frame)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_tables_match_the_standard() {
        // G.711 A-law: 0xd5 is the smallest positive step, 0x55 the smallest negative.
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
        // µ-law: 0xff and 0x7f are zero, 0x80 the largest positive.
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        // A-law round trip stays within one quantisation step.
        for sample in (-32000i16..32000).step_by(97) {
            let back = alaw_to_linear(linear_to_alaw(sample));
            let step = (sample as i32).abs() / 16 + 16;
            assert!((back as i32 - sample as i32).abs() <= step, "{sample} -> {back}");
        }
    }

    #[test]
    fn encodes_aac_frames_with_continuous_times() {
        let mut transcoder = G711ToAac::new(true).unwrap();
        // AudioSpecificConfig: AAC-LC (2), 8 kHz (index 11), mono.
        assert_eq!(transcoder.config()[..2], [0x15, 0x88]);
        let tone: Vec<u8> = (0..8000 * 3).map(|i| linear_to_alaw(((i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 8000.0).sin() * 8000.0) as i16)).collect();
        let mut frames = Vec::new();
        for (i, packet) in tone.chunks(160).enumerate() {
            // 20 ms packets, 1800 ticks apart, starting at 90 000.
            frames.extend(transcoder.push(90_000 + i as i64 * 1800, packet).unwrap());
        }
        assert!(frames.len() >= 20, "{} frames from 3 s", frames.len());
        assert_eq!(frames[0].0, 90_000);
        for pair in frames.windows(2) {
            assert_eq!(pair[1].0 - pair[0].0, 11_520, "1024 samples at 8 kHz");
        }
        assert!(frames.iter().all(|(_, f)| !f.is_empty() && f.len() < 2000));
    }
}
