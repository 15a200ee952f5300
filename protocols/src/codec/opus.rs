//! Opus headers: the identification header `OpusHead` (RFC 7845 §5.1) that enhanced RTMP's
//! audio sequence start carries, and its MP4 form, the `dOps` box body (Encapsulation of Opus
//! in ISO Base Media File Format §4.3.2): the same fields, big-endian, without the magic.

/// The fields of an Opus identification header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channels.
    pub channels: u8,
    /// Samples (at 48 kHz) to drop at the start of decoding.
    pub pre_skip: u16,
    /// The original input sample rate (informational; Opus always decodes at 48 kHz).
    pub input_sample_rate: u32,
    /// Output gain, Q7.8 dB.
    pub output_gain: i16,
    /// Channel mapping family.
    pub mapping_family: u8,
    /// Stream count, coupled count and the channel mapping (families other than 0).
    pub mapping: Vec<u8>,
}

/// The sample rate every Opus stream decodes at, and the MP4 track timescale.
pub const SAMPLE_RATE: u32 = 48_000;

impl OpusHead {
    /// Parses `OpusHead` (magic, version 1, then little-endian fields). `None` when it is not one.
    pub fn parse(data: &[u8]) -> Option<OpusHead> {
        if data.len() < 19 || &data[..8] != b"OpusHead" || data[8] & 0xf0 != 0 {
            return None;
        }
        let channels = data[9];
        let mapping_family = data[18];
        let mapping = if mapping_family == 0 { Vec::new() } else { data.get(19..21 + channels as usize)?.to_vec() };
        Some(OpusHead {
            channels,
            pre_skip: u16::from_le_bytes([data[10], data[11]]),
            input_sample_rate: u32::from_le_bytes([data[12], data[13], data[14], data[15]]),
            output_gain: i16::from_le_bytes([data[16], data[17]]),
            mapping_family,
            mapping,
        })
    }

    /// Parses a `dOps` body (version 0). `None` when it is not one.
    pub fn from_dops(data: &[u8]) -> Option<OpusHead> {
        if data.len() < 11 || data[0] != 0 {
            return None;
        }
        let channels = data[1];
        let mapping_family = data[10];
        let mapping = if mapping_family == 0 { Vec::new() } else { data.get(11..13 + channels as usize)?.to_vec() };
        Some(OpusHead {
            channels,
            pre_skip: u16::from_be_bytes([data[2], data[3]]),
            input_sample_rate: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            output_gain: i16::from_be_bytes([data[8], data[9]]),
            mapping_family,
            mapping,
        })
    }

    /// A stereo (or mono) header with no pre-skip, for Opus that arrives without one.
    pub fn basic(channels: u8) -> OpusHead {
        OpusHead { channels, pre_skip: 0, input_sample_rate: SAMPLE_RATE, output_gain: 0, mapping_family: 0, mapping: Vec::new() }
    }

    /// The `OpusHead` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(19 + self.mapping.len());
        out.extend_from_slice(b"OpusHead");
        out.push(1);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_le_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_le_bytes());
        out.extend_from_slice(&self.output_gain.to_le_bytes());
        out.push(self.mapping_family);
        out.extend_from_slice(&self.mapping);
        out
    }

    /// The `dOps` body.
    pub fn to_dops(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(11 + self.mapping.len());
        out.push(0);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_be_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_be_bytes());
        out.extend_from_slice(&self.output_gain.to_be_bytes());
        out.push(self.mapping_family);
        out.extend_from_slice(&self.mapping);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `dOps` body ffmpeg's MP4 muxer wrote for libopus mono (pre-skip 312, 48 kHz input).
    const DOPS_MONO: [u8; 11] = [0x00, 0x01, 0x01, 0x38, 0x00, 0x00, 0xbb, 0x80, 0x00, 0x00, 0x00];

    #[test]
    fn dops_and_opus_head_carry_the_same_fields() {
        let head = OpusHead::from_dops(&DOPS_MONO).unwrap();
        assert_eq!((head.channels, head.pre_skip, head.input_sample_rate, head.output_gain, head.mapping_family), (1, 312, 48_000, 0, 0));
        let bytes = head.to_bytes();
        assert_eq!(&bytes[..8], b"OpusHead");
        assert_eq!(&bytes[10..12], &[0x38, 0x01], "little-endian pre-skip");
        assert_eq!(OpusHead::parse(&bytes).unwrap(), head);
        assert_eq!(head.to_dops(), DOPS_MONO);
    }

    #[test]
    fn a_mapping_table_travels_for_multichannel_families() {
        let head = OpusHead { channels: 3, pre_skip: 0, input_sample_rate: 48_000, output_gain: -256, mapping_family: 1, mapping: vec![2, 1, 0, 2, 1] };
        assert_eq!(OpusHead::parse(&head.to_bytes()).unwrap(), head);
        assert_eq!(OpusHead::from_dops(&head.to_dops()).unwrap(), head);
        // The table cut short.
        assert_eq!(OpusHead::parse(&head.to_bytes()[..21]), None);
    }

    #[test]
    fn other_data_is_not_an_opus_head() {
        assert_eq!(OpusHead::parse(b"OpusTags\x01\x02\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(OpusHead::parse(&OpusHead::basic(2).to_bytes()[..18]), None);
        assert_eq!(OpusHead::from_dops(&[1; 11]), None);
    }
}
