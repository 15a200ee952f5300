//! The media model: the one frame type that crosses actor boundaries.
//!
//! Every ingest protocol converts what it receives into [`MediaFrame`]s and every output
//! converts them back, so the rest of the node never sees a wire format. Each codec has one
//! canonical payload form, converted at the protocol edge:
//!
//! | codec | `config == true` payload | media payload |
//! |---|---|---|
//! | H.264 | `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3) | NAL units, each with a 4-byte big-endian length prefix |
//! | H.265 | `HEVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §8.3.3) | NAL units, 4-byte length prefixes |
//! | AV1 | `AV1CodecConfigurationRecord` | OBUs (low-overhead format) |
//! | AAC | `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1) | one raw AAC frame, no ADTS header |
//! | Opus, MP3, G.711 | codec-specific header when any | one raw frame |
//! | script data | — | AMF0 `onMetaData` name and value, as in an FLV script tag |
//!
//! Timestamps are 64-bit signed values in an explicit [`Timebase`]. Ingest widens the
//! protocol's own timestamps (32-bit milliseconds for RTMP, 33-bit 90 kHz for MPEG-TS) with a
//! [`TimestampNormalizer`] exactly once, so nothing downstream deals with wrap-around.

use bytes::Bytes;

/// A timebase: one tick lasts `num / den` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timebase {
    /// Numerator of the tick length in seconds.
    pub num: u32,
    /// Denominator of the tick length in seconds.
    pub den: u32,
}

impl Timebase {
    /// Milliseconds: RTMP and FLV.
    pub const MILLIS: Timebase = Timebase { num: 1, den: 1000 };
    /// 90 kHz: MPEG-TS, MPEG-PS and RTP video.
    pub const MPEG: Timebase = Timebase { num: 1, den: 90_000 };

    /// Converts `value` ticks of this timebase into ticks of `to`, rounding toward negative
    /// infinity. Uses 128-bit intermediates so no realistic value overflows.
    pub fn rescale(self, value: i64, to: Timebase) -> i64 {
        if self == to {
            return value;
        }
        let numerator = value as i128 * self.num as i128 * to.den as i128;
        let denominator = self.den as i128 * to.num as i128;
        if denominator == 0 {
            return 0;
        }
        numerator.div_euclid(denominator) as i64
    }
}

/// Which track of a stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// Video frames.
    Video,
    /// Audio frames.
    Audio,
    /// Timed metadata (`onMetaData` and other script data).
    Data,
}

/// The codecs Estuary knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
    /// AV1.
    Av1,
    /// AAC (any profile; the AudioSpecificConfig says which).
    Aac,
    /// Opus.
    Opus,
    /// MPEG-1/2 Layer III.
    Mp3,
    /// G.711 A-law.
    G711A,
    /// G.711 µ-law.
    G711U,
    /// AMF0 script data (`onMetaData`).
    ScriptData,
    /// 3GPP timed text (`tx3g`, ISO/IEC 14496-17 / 3GPP TS 26.245): captions in MP4
    /// recordings.
    Tx3g,
    /// WebVTT in ISO BMFF (`wvtt`, ISO/IEC 14496-30): captions in DASH.
    WebVtt,
}

impl Codec {
    /// The name used in the API and logs (SRS spells these the same way).
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "H264",
            Codec::H265 => "H265",
            Codec::Av1 => "AV1",
            Codec::Aac => "AAC",
            Codec::Opus => "Opus",
            Codec::Mp3 => "MP3",
            Codec::G711A => "PCMA",
            Codec::G711U => "PCMU",
            Codec::ScriptData => "AMF0",
            Codec::Tx3g => "TX3G",
            Codec::WebVtt => "WVTT",
        }
    }

    /// The track this codec travels on.
    pub fn track(self) -> TrackKind {
        match self {
            Codec::H264 | Codec::H265 | Codec::Av1 => TrackKind::Video,
            Codec::Aac | Codec::Opus | Codec::Mp3 | Codec::G711A | Codec::G711U => {
                TrackKind::Audio
            }
            Codec::ScriptData | Codec::Tx3g | Codec::WebVtt => TrackKind::Data,
        }
    }
}

/// One unit of media: a video access unit, an audio frame, a codec configuration or a piece of
/// script data. Cheap to clone through `Arc<MediaFrame>`; the payload is reference counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// The track this frame belongs to.
    pub track: TrackKind,
    /// The codec of the payload.
    pub codec: Codec,
    /// Decode timestamp, in `timebase` ticks.
    pub dts: i64,
    /// Presentation timestamp, in `timebase` ticks (equal to `dts` without reordering).
    pub pts: i64,
    /// The unit of `dts` and `pts`.
    pub timebase: Timebase,
    /// A random access point: a video IDR/IRAP frame. Always true for audio frames.
    pub keyframe: bool,
    /// The payload is the codec configuration (sequence header), not media.
    pub config: bool,
    /// The payload in the codec's canonical form (see the module docs).
    pub payload: Bytes,
}

impl MediaFrame {
    /// The decode timestamp in milliseconds.
    pub fn dts_ms(&self) -> i64 {
        self.timebase.rescale(self.dts, Timebase::MILLIS)
    }

    /// The presentation timestamp in milliseconds.
    pub fn pts_ms(&self) -> i64 {
        self.timebase.rescale(self.pts, Timebase::MILLIS)
    }

    /// `pts - dts` in milliseconds (the FLV composition time).
    pub fn cts_ms(&self) -> i64 {
        self.pts_ms() - self.dts_ms()
    }

    /// Returns a copy of this frame with both timestamps shifted by `offset` ticks.
    pub fn shifted(&self, offset: i64) -> MediaFrame {
        let mut frame = self.clone();
        frame.dts += offset;
        frame.pts += offset;
        frame
    }

    /// True for a video keyframe that carries media (not a sequence header).
    pub fn is_video_keyframe(&self) -> bool {
        self.track == TrackKind::Video && self.keyframe && !self.config
    }
}

/// Widens a protocol's wrapping timestamps to 64 bits and keeps each track monotonic.
///
/// Rules (applied per track, so audio and video stay aligned to the same clock):
/// - the difference to the previous raw value is taken modulo `2^bits`, so wrap-around
///   (RTMP's 32-bit milliseconds after 49.7 days, MPEG-TS's 33-bit 90 kHz after 26.5 hours)
///   continues smoothly;
/// - a step backwards is clamped to the previous output (DTS never decreases);
/// - a step forwards larger than `max_jump` (a publisher that restarted its clock) is
///   replaced by the last normal step, so the output continues without a gap.
#[derive(Debug, Clone)]
pub struct TimestampNormalizer {
    bits: u32,
    max_jump: i64,
    tracks: [Option<TrackClock>; 3],
}

#[derive(Debug, Clone, Copy)]
struct TrackClock {
    last_raw: u64,
    last_out: i64,
    last_step: i64,
}

/// What the normaliser did with one timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    /// The timestamp continued normally.
    None,
    /// The timestamp went backwards and was clamped.
    ClampedBackwards,
    /// The timestamp jumped forward by more than allowed and was rebased.
    Rebased,
}

impl TimestampNormalizer {
    /// A normaliser for timestamps of `bits` width where forward steps above `max_jump` ticks
    /// count as discontinuities.
    pub fn new(bits: u32, max_jump: i64) -> Self {
        TimestampNormalizer { bits, max_jump, tracks: [None, None, None] }
    }

    /// For RTMP/FLV: 32-bit milliseconds, discontinuity above 10 s.
    pub fn rtmp() -> Self {
        Self::new(32, 10_000)
    }

    /// Widens `raw` for `track`. Returns the output value and what was corrected.
    pub fn normalize(&mut self, track: TrackKind, raw: u64) -> (i64, Correction) {
        let mask: u64 = if self.bits >= 64 { u64::MAX } else { (1u64 << self.bits) - 1 };
        let raw = raw & mask;
        let slot = match track {
            TrackKind::Video => 0,
            TrackKind::Audio => 1,
            TrackKind::Data => 2,
        };
        let Some(clock) = self.tracks[slot].as_mut() else {
            // The first value of a track is taken as it is, unless another track already
            // established a clock: then it is widened relative to that one, so both tracks
            // share one epoch even after a wrap.
            let out = self
                .tracks
                .iter()
                .flatten()
                .next()
                .map(|other| {
                    other.last_out + signed_delta(raw, other.last_raw, self.bits, mask)
                })
                .unwrap_or(raw as i64);
            self.tracks[slot] = Some(TrackClock { last_raw: raw, last_out: out, last_step: 0 });
            return (out, Correction::None);
        };
        let delta = signed_delta(raw, clock.last_raw, self.bits, mask);
        clock.last_raw = raw;
        let (step, correction) = if delta < 0 {
            (0, Correction::ClampedBackwards)
        } else if delta > self.max_jump {
            (clock.last_step, Correction::Rebased)
        } else {
            (delta, Correction::None)
        };
        clock.last_out += step;
        if step > 0 {
            clock.last_step = step;
        }
        (clock.last_out, correction)
    }
}

fn signed_delta(raw: u64, previous: u64, bits: u32, mask: u64) -> i64 {
    let diff = raw.wrapping_sub(previous) & mask;
    if bits >= 64 {
        return diff as i64;
    }
    let half = 1u64 << (bits - 1);
    if diff >= half {
        diff as i64 - (mask as i64) - 1
    } else {
        diff as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_between_timebases() {
        assert_eq!(Timebase::MPEG.rescale(90_000, Timebase::MILLIS), 1000);
        assert_eq!(Timebase::MILLIS.rescale(40, Timebase::MPEG), 3600);
        assert_eq!(Timebase::MPEG.rescale(-1, Timebase::MILLIS), -1);
    }

    #[test]
    fn rtmp_wraparound_continues() {
        let mut n = TimestampNormalizer::rtmp();
        assert_eq!(n.normalize(TrackKind::Video, u32::MAX as u64 - 20).0, u32::MAX as i64 - 20);
        let (out, c) = n.normalize(TrackKind::Video, 19);
        assert_eq!(out, u32::MAX as i64 + 20);
        assert_eq!(c, Correction::None);
    }

    #[test]
    fn backwards_is_clamped_and_jumps_rebased() {
        let mut n = TimestampNormalizer::rtmp();
        n.normalize(TrackKind::Audio, 1000);
        assert_eq!(n.normalize(TrackKind::Audio, 1023).0, 1023);
        assert_eq!(n.normalize(TrackKind::Audio, 1000), (1023, Correction::ClampedBackwards));
        // A restart of the publisher's clock far ahead continues with the last step (23 ms).
        assert_eq!(n.normalize(TrackKind::Audio, 900_000), (1046, Correction::Rebased));
        assert_eq!(n.normalize(TrackKind::Audio, 900_023), (1069, Correction::None));
    }

    #[test]
    fn second_track_shares_the_epoch_after_wrap() {
        let mut n = TimestampNormalizer::rtmp();
        n.normalize(TrackKind::Video, u32::MAX as u64 - 10);
        n.normalize(TrackKind::Video, 30);
        let (audio, _) = n.normalize(TrackKind::Audio, 20);
        assert_eq!(audio, u32::MAX as i64 + 21);
    }

    #[test]
    fn mpeg_33_bit_wrap() {
        let mut n = TimestampNormalizer::new(33, 90_000 * 10);
        let max = (1u64 << 33) - 1;
        n.normalize(TrackKind::Video, max - 3599);
        assert_eq!(n.normalize(TrackKind::Video, 0).0, max as i64 + 1);
    }
}
