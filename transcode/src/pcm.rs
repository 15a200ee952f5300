//! Decoded audio for the AI tap: a stream's compressed audio (AAC with libfdk-aac, Opus with
//! `opus-rs`, G.711 by its tables) into signed 16-bit PCM, then converted to the rate and
//! channel count a tap client asked for.
//!
//! The rate conversion is deliberately simple. Going down (48 kHz to 16 kHz for speech
//! recognition, the common case) every output sample is the mean of the input samples of its
//! interval, which is a box filter: it keeps the band speech lives in and damps what would fold
//! over, at a cost of a few operations a sample. Going up it interpolates linearly. Both keep
//! their position across calls, so chunks converted one by one join without clicks or drift.

use crate::audio::AudioError;
use opus_rs::OpusDecoder;

/// Largest Opus packet duration (120 ms at 48 kHz), samples per channel.
const OPUS_MAX_FRAME: usize = 5760;

/// Which compressed audio a [`PcmDecoder`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC, raw frames behind an AudioSpecificConfig.
    Aac,
    /// Opus (RFC 7587 packets), decoded at 48 kHz stereo.
    Opus,
    /// G.711 A-law, 8 kHz mono.
    G711A,
    /// G.711 µ-law, 8 kHz mono.
    G711U,
}

enum Inner {
    Aac(Box<fdk_aac::dec::Decoder>),
    Opus(Box<OpusDecoder>, Vec<f32>),
    G711 { alaw: bool },
}

/// One stream's audio into interleaved 16-bit PCM at its own rate and channels.
pub struct PcmDecoder {
    inner: Inner,
    pcm: Vec<i16>,
    /// Frames that failed to decode.
    pub errors: u64,
}

impl PcmDecoder {
    /// A decoder for `codec`; AAC needs its AudioSpecificConfig.
    pub fn new(codec: AudioCodec, aac_config: Option<&[u8]>) -> Result<PcmDecoder, AudioError> {
        let inner = match codec {
            AudioCodec::Aac => {
                let config = aac_config.ok_or_else(|| AudioError("AAC decoder: no AudioSpecificConfig yet".into()))?;
                let mut decoder = fdk_aac::dec::Decoder::new(fdk_aac::dec::Transport::Raw);
                decoder.config_raw(config).map_err(|e| AudioError(format!("AAC decoder: {}", e.message())))?;
                Inner::Aac(Box::new(decoder))
            }
            AudioCodec::Opus => {
                let decoder = OpusDecoder::new(48_000, 2).map_err(|e| AudioError(format!("Opus decoder: {e}")))?;
                Inner::Opus(Box::new(decoder), vec![0.0; OPUS_MAX_FRAME * 2])
            }
            AudioCodec::G711A => Inner::G711 { alaw: true },
            AudioCodec::G711U => Inner::G711 { alaw: false },
        };
        Ok(PcmDecoder { inner, pcm: vec![0; 8 * 2048], errors: 0 })
    }

    /// Decodes one frame: `(rate, channels, interleaved samples)`, or `None` when the frame
    /// did not decode (counted in `errors`).
    pub fn decode(&mut self, frame: &[u8]) -> Option<(u32, usize, &[i16])> {
        match &mut self.inner {
            Inner::Aac(decoder) => {
                if decoder.fill(frame).and_then(|_| decoder.decode_frame(&mut self.pcm)).is_err() {
                    self.errors += 1;
                    return None;
                }
                let info = decoder.stream_info();
                let (rate, channels) = (info.sampleRate.max(1) as u32, info.numChannels.max(1) as usize);
                let size = decoder.decoded_frame_size().min(self.pcm.len());
                Some((rate, channels, &self.pcm[..size]))
            }
            Inner::Opus(decoder, float) => match decoder.decode(frame, OPUS_MAX_FRAME, float) {
                Ok(samples) => {
                    let samples = samples.min(OPUS_MAX_FRAME);
                    self.pcm.clear();
                    self.pcm.extend(float[..samples * 2].iter().map(|&s| (s * 32768.0).clamp(-32768.0, 32767.0) as i16));
                    Some((48_000, 2, &self.pcm[..]))
                }
                Err(_) => {
                    self.errors += 1;
                    None
                }
            },
            Inner::G711 { alaw } => {
                let alaw = *alaw;
                self.pcm.clear();
                self.pcm.extend(frame.iter().map(|&b| if alaw { alaw_to_linear(b) } else { ulaw_to_linear(b) }));
                Some((8_000, 1, &self.pcm[..]))
            }
        }
    }
}

/// G.711 A-law to linear (ITU-T G.711 §A).
fn alaw_to_linear(byte: u8) -> i16 {
    let value = byte ^ 0x55;
    let exponent = (value >> 4) & 0x07;
    let mantissa = (value & 0x0f) as i16;
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        _ => ((mantissa << 4) + 0x108) << (exponent - 1),
    };
    if value & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// G.711 µ-law to linear.
fn ulaw_to_linear(byte: u8) -> i16 {
    let value = !byte;
    let exponent = (value >> 4) & 0x07;
    let mantissa = (value & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if value & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Converts interleaved 16-bit PCM to one rate and channel count, keeping its position across
/// calls (see the module docs). Channels: mono is the mean of the input's channels; stereo
/// takes the first two (a mono input is doubled).
#[derive(Debug)]
pub struct PcmConverter {
    out_rate: u32,
    out_channels: usize,
    /// The input rate the position counts in (a change restarts the position).
    in_rate: u32,
    /// Input samples (already in the output's channels) not used up yet; the first one is
    /// input sample number `base`.
    pending: Vec<f32>,
    base: u64,
    /// Output samples made since the position started.
    produced: u64,
}

impl PcmConverter {
    /// A converter to `rate` Hz and `channels` (1 or 2).
    pub fn new(rate: u32, channels: usize) -> PcmConverter {
        PcmConverter { out_rate: rate.max(1), out_channels: channels.clamp(1, 2), in_rate: 0, pending: Vec::new(), base: 0, produced: 0 }
    }

    /// Converts `samples` (interleaved, `channels` of them, at `rate`) and returns the
    /// output samples that are now complete, interleaved.
    pub fn convert(&mut self, rate: u32, channels: usize, samples: &[i16]) -> Vec<i16> {
        let channels = channels.max(1);
        let rate = rate.max(1);
        if rate != self.in_rate {
            self.in_rate = rate;
            self.pending.clear();
            self.base = 0;
            self.produced = 0;
        }
        let oc = self.out_channels;
        for frame in samples.chunks_exact(channels) {
            if oc == 1 {
                self.pending.push(frame.iter().map(|&s| s as f32).sum::<f32>() / channels as f32);
            } else {
                let left = frame[0] as f32;
                self.pending.push(left);
                self.pending.push(if channels > 1 { frame[1] as f32 } else { left });
            }
        }
        let (in_rate, out_rate) = (self.in_rate as u64, self.out_rate as u64);
        let available = self.base + (self.pending.len() / oc) as u64;
        let mut out = Vec::new();
        loop {
            let j = self.produced;
            if in_rate >= out_rate {
                let lo = j * in_rate / out_rate;
                let hi = ((j + 1) * in_rate / out_rate).max(lo + 1);
                if hi > available {
                    break;
                }
                for c in 0..oc {
                    let sum: f32 = (lo..hi).map(|i| self.pending[(i - self.base) as usize * oc + c]).sum();
                    out.push((sum / (hi - lo) as f32).round().clamp(-32768.0, 32767.0) as i16);
                }
            } else {
                let i0 = j * in_rate / out_rate;
                if i0 + 1 >= available {
                    break;
                }
                let frac = ((j * in_rate) % out_rate) as f32 / out_rate as f32;
                for c in 0..oc {
                    let a = self.pending[(i0 - self.base) as usize * oc + c];
                    let b = self.pending[(i0 + 1 - self.base) as usize * oc + c];
                    out.push((a + (b - a) * frac).round().clamp(-32768.0, 32767.0) as i16);
                }
            }
            self.produced += 1;
        }
        // Input before what the next output sample needs is used up.
        let next = self.produced * in_rate / out_rate;
        let drop = next.saturating_sub(self.base).min((self.pending.len() / oc) as u64);
        self.pending.drain(..drop as usize * oc);
        self.base += drop;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, channels: usize, freq: f32, seconds: f32) -> Vec<i16> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .flat_map(|i| {
                let v = ((i as f32 / rate as f32) * freq * std::f32::consts::TAU).sin() * 12_000.0;
                std::iter::repeat_n(v as i16, channels)
            })
            .collect()
    }

    /// Rising zero crossings a second: the frequency of a clean tone.
    fn frequency(samples: &[i16], rate: u32) -> f32 {
        let rising = samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        rising as f32 * rate as f32 / samples.len() as f32
    }

    #[test]
    fn downsampling_in_chunks_keeps_the_pitch_the_length_and_the_joins() {
        let input = sine(44_100, 2, 440.0, 2.0);
        let mut whole = PcmConverter::new(16_000, 1);
        let at_once = whole.convert(44_100, 2, &input);
        let mut chunked = PcmConverter::new(16_000, 1);
        let mut pieces = Vec::new();
        // AAC-sized frames (1024 samples a channel).
        for chunk in input.chunks(2048) {
            pieces.extend(chunked.convert(44_100, 2, chunk));
        }
        assert_eq!(pieces, at_once, "chunked conversion differs from one pass");
        assert!((31_990..=32_000).contains(&at_once.len()), "{} samples for 2 s at 16 kHz", at_once.len());
        let f = frequency(&at_once, 16_000);
        assert!((435.0..445.0).contains(&f), "pitch {f} Hz");
        let peak = at_once.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak > 11_000, "level lost: peak {peak}");
    }

    #[test]
    fn a_tone_above_the_new_band_is_damped() {
        // 7.9 kHz is under 8 kHz (Nyquist of 16 kHz) but near it; 14 kHz would fold to 2 kHz.
        let high = sine(48_000, 1, 14_000.0, 1.0);
        let out = PcmConverter::new(16_000, 1).convert(48_000, 1, &high);
        let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak < 6_000, "14 kHz folded in at peak {peak} of 12000");
    }

    #[test]
    fn upsampling_and_channel_doubling() {
        let input = sine(8_000, 1, 300.0, 1.0);
        let mut converter = PcmConverter::new(48_000, 2);
        let mut out = Vec::new();
        for chunk in input.chunks(160) {
            out.extend(converter.convert(8_000, 1, chunk));
        }
        assert!((47_990 * 2..=48_000 * 2).contains(&out.len()), "{} values", out.len());
        let left: Vec<i16> = out.chunks(2).map(|s| s[0]).collect();
        assert!(out.chunks(2).all(|s| s[0] == s[1]));
        let f = frequency(&left, 48_000);
        assert!((295.0..305.0).contains(&f), "pitch {f} Hz");
    }

    #[test]
    fn g711_tables_match_known_values() {
        // µ-law 0xff and A-law 0xd5 are the codes nearest silence; 0x80 / 0xaa the loudest.
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        let mut decoder = PcmDecoder::new(AudioCodec::G711U, None).unwrap();
        let (rate, channels, pcm) = decoder.decode(&[0xff, 0x80]).unwrap();
        assert_eq!((rate, channels, pcm), (8_000, 1, &[0, 32124][..]));
    }
}
