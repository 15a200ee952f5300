//! AAC headers: the `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1) and the 7-byte ADTS
//! header (ISO/IEC 13818-7 §6.2) used when AAC travels in MPEG-TS.

use crate::bits::{BitReader, BitsError};
use thiserror::Error;

/// Sampling frequencies by `samplingFrequencyIndex`.
pub const SAMPLE_RATES: [u32; 13] =
    [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// Why an AAC header could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AacError {
    /// The config ended early.
    #[error("AudioSpecificConfig: {0}")]
    Truncated(#[from] BitsError),
    /// A reserved sampling frequency index.
    #[error("AudioSpecificConfig: reserved sampling frequency index {0}")]
    BadFrequencyIndex(u8),
    /// Not an ADTS header.
    #[error("ADTS: no syncword")]
    NoSyncword,
}

/// The fields of an `AudioSpecificConfig` the node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// `audioObjectType` (2 = AAC-LC, 5 = SBR/HE-AAC, 29 = PS/HE-AACv2).
    pub object_type: u8,
    /// `samplingFrequencyIndex` (15 = explicit frequency).
    pub frequency_index: u8,
    /// The sampling frequency in Hz.
    pub sample_rate: u32,
    /// `channelConfiguration` (0 = defined in the program config element).
    pub channel_config: u8,
}

impl AacConfig {
    /// Parses the start of an `AudioSpecificConfig`.
    pub fn parse(data: &[u8]) -> Result<AacConfig, AacError> {
        let mut r = BitReader::new(data);
        let mut object_type = r.bits(5)? as u8;
        if object_type == 31 {
            object_type = 32 + r.bits(6)? as u8;
        }
        let frequency_index = r.bits(4)? as u8;
        let sample_rate = match frequency_index {
            15 => r.bits(24)?,
            index => *SAMPLE_RATES
                .get(index as usize)
                .ok_or(AacError::BadFrequencyIndex(index))?,
        };
        let channel_config = r.bits(4)? as u8;
        Ok(AacConfig { object_type, frequency_index, sample_rate, channel_config })
    }

    /// A two-byte config for the given object type, rate and channels. Rates not in the table
    /// use the nearest entry.
    pub fn new(object_type: u8, sample_rate: u32, channels: u8) -> AacConfig {
        let frequency_index = SAMPLE_RATES
            .iter()
            .enumerate()
            .min_by_key(|(_, rate)| rate.abs_diff(sample_rate))
            .map(|(index, _)| index as u8)
            .unwrap_or(4);
        AacConfig {
            object_type,
            frequency_index,
            sample_rate: SAMPLE_RATES[frequency_index as usize],
            channel_config: channels,
        }
    }

    /// Serialises the two-byte form (object type below 31, tabled frequency).
    pub fn to_bytes(&self) -> [u8; 2] {
        let object_type = self.object_type.min(30);
        let index = self.frequency_index.min(12);
        [
            (object_type << 3) | (index >> 1),
            ((index & 1) << 7) | ((self.channel_config & 0x0f) << 3),
        ]
    }

    /// The 7-byte ADTS header (no CRC) for a raw frame of `payload_len` bytes.
    pub fn adts_header(&self, payload_len: usize) -> [u8; 7] {
        let frame_len = (payload_len + 7).min(0x1fff) as u32;
        // ADTS can only carry the MPEG-2 profiles: object type minus one, in two bits.
        let profile = (self.object_type.clamp(1, 4) - 1) as u32;
        let index = self.frequency_index.min(12) as u32;
        let channels = self.channel_config as u32 & 0x07;
        [
            0xff,
            0xf1, // MPEG-4, layer 0, no CRC
            ((profile << 6) | (index << 2) | (channels >> 2)) as u8,
            (((channels & 3) << 6) | (frame_len >> 11)) as u8,
            ((frame_len >> 3) & 0xff) as u8,
            (((frame_len & 7) << 5) | 0x1f) as u8,
            0xfc,
        ]
    }
}

/// A parsed ADTS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// The config it implies.
    pub config: AacConfig,
    /// Header length (7, or 9 with CRC).
    pub header_len: usize,
    /// Whole frame length, header included.
    pub frame_len: usize,
}

impl AdtsHeader {
    /// Parses an ADTS header at the start of `data`.
    pub fn parse(data: &[u8]) -> Result<AdtsHeader, AacError> {
        if data.len() < 7 {
            return Err(AacError::Truncated(BitsError { consumed_bits: data.len() * 8, what: "ADTS header" }));
        }
        if data[0] != 0xff || data[1] & 0xf0 != 0xf0 {
            return Err(AacError::NoSyncword);
        }
        let protection_absent = data[1] & 1 == 1;
        let object_type = ((data[2] >> 6) & 3) + 1;
        let frequency_index = (data[2] >> 2) & 0x0f;
        let sample_rate = *SAMPLE_RATES
            .get(frequency_index as usize)
            .ok_or(AacError::BadFrequencyIndex(frequency_index))?;
        let channel_config = ((data[2] & 1) << 2) | (data[3] >> 6);
        let frame_len = (((data[3] & 3) as usize) << 11) | ((data[4] as usize) << 3) | (data[5] as usize >> 5);
        Ok(AdtsHeader {
            config: AacConfig { object_type, frequency_index, sample_rate, channel_config },
            header_len: if protection_absent { 7 } else { 9 },
            frame_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lc_48k_stereo() {
        // What ffmpeg's aac encoder writes for 48 kHz stereo.
        let config = AacConfig::parse(&[0x11, 0x90]).unwrap();
        assert_eq!(config.object_type, 2);
        assert_eq!(config.sample_rate, 48000);
        assert_eq!(config.channel_config, 2);
        assert_eq!(config.to_bytes(), [0x11, 0x90]);
    }

    #[test]
    fn adts_round_trip() {
        let config = AacConfig::new(2, 44100, 2);
        let header = config.adts_header(100);
        let parsed = AdtsHeader::parse(&header).unwrap();
        assert_eq!(parsed.config, config);
        assert_eq!(parsed.frame_len, 107);
        assert_eq!(parsed.header_len, 7);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(AacConfig::parse(&[0x11]).is_err());
        assert!(AacConfig::parse(&[0x16, 0x90]).is_err()); // frequency index 13
        assert_eq!(AdtsHeader::parse(&[0; 7]), Err(AacError::NoSyncword));
    }
}
