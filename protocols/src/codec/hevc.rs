//! H.265 headers: the parameter-set arrays of an `HEVCDecoderConfigurationRecord`
//! (ISO/IEC 14496-15 §8.3.3.1) and NAL unit types (ITU-T H.265 §7.4.2.2).

use bytes::Bytes;

/// VPS NAL unit type.
pub const NAL_VPS: u8 = 32;
/// SPS NAL unit type.
pub const NAL_SPS: u8 = 33;
/// PPS NAL unit type.
pub const NAL_PPS: u8 = 34;
/// Access unit delimiter NAL unit type.
pub const NAL_AUD: u8 = 35;

/// NAL unit type of an H.265 NAL header's first byte.
pub fn nal_type(first_byte: u8) -> u8 {
    (first_byte >> 1) & 0x3f
}

/// True for IRAP pictures (BLA, IDR, CRA: types 16..=23), where decoding can start.
pub fn is_irap(nal_type: u8) -> bool {
    (16..=23).contains(&nal_type)
}

/// The NAL units of the parameter-set arrays of an `HEVCDecoderConfigurationRecord`, and
/// its NAL length size. `None` when the record is malformed.
pub fn config_parameter_sets(record: &[u8]) -> Option<(u8, Vec<Bytes>)> {
    if record.len() < 23 || record[0] != 1 {
        return None;
    }
    let length_size = (record[21] & 0x03) + 1;
    let arrays = record[22] as usize;
    let mut offset = 23;
    let mut nals = Vec::new();
    for _ in 0..arrays {
        let count = u16::from_be_bytes([*record.get(offset + 1)?, *record.get(offset + 2)?]) as usize;
        offset += 3;
        for _ in 0..count {
            let len = u16::from_be_bytes([*record.get(offset)?, *record.get(offset + 1)?]) as usize;
            let nal = record.get(offset + 2..offset + 2 + len)?;
            nals.push(Bytes::copy_from_slice(nal));
            offset += 2 + len;
        }
    }
    Some((length_size, nals))
}

/// Builds an `HEVCDecoderConfigurationRecord` from one VPS, SPS and PPS (NAL units with
/// their 2-byte headers, no start codes). The profile, tier, compatibility flags, constraint
/// flags and level are copied from the SPS's `profile_tier_level` (H.265 §7.3.3); chroma
/// format 4:2:0 and 8-bit depth are declared, as decoders take the real values from the SPS.
/// `None` when the SPS is too short to hold its profile_tier_level.
pub fn config_from_parameter_sets(vps: &[u8], sps: &[u8], pps: &[u8]) -> Option<Bytes> {
    let rbsp = crate::bits::remove_emulation_prevention(sps);
    // NAL header (2 bytes), then vps_id(4) max_sub_layers_minus1(3) temporal_id_nesting(1),
    // then the 12 bytes of the general profile_tier_level.
    let first = *rbsp.get(2)?;
    let ptl = rbsp.get(3..15)?;
    let max_sub_layers = ((first >> 1) & 0x07) + 1;
    let nesting = first & 1;
    let mut out = Vec::with_capacity(23 + vps.len() + sps.len() + pps.len() + 15);
    out.push(1);
    out.extend_from_slice(ptl);
    out.extend_from_slice(&[0xf0, 0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00]);
    out.push((max_sub_layers.min(7) << 3) | (nesting << 2) | 0x03);
    out.push(3);
    for (kind, nal) in [(NAL_VPS, vps), (NAL_SPS, sps), (NAL_PPS, pps)] {
        out.push(0x80 | kind);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(nal.len().min(u16::MAX as usize) as u16).to_be_bytes());
        out.extend_from_slice(nal);
    }
    Some(Bytes::from(out))
}

/// The RFC 6381 codec string of an `HEVCDecoderConfigurationRecord` (ISO/IEC 14496-15
/// Annex E.3): `hvc1.` then profile space and profile, the compatibility flags bit-reversed in
/// hex, tier and level, and the constraint bytes up to the last non-zero one
/// (`hvc1.1.6.L93.B0`). `None` when the record is shorter than its fixed part.
pub fn codec_string(record: &[u8]) -> Option<String> {
    if record.len() < 23 {
        return None;
    }
    let space = ["", "A", "B", "C"][(record[1] >> 6) as usize];
    let tier = if record[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = record[1] & 0x1f;
    let compatibility = u32::from_be_bytes([record[2], record[3], record[4], record[5]]).reverse_bits();
    let mut out = format!("hvc1.{space}{profile}.{compatibility:X}.{tier}{}", record[12]);
    let constraints = &record[6..12];
    let used = constraints.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    for byte in &constraints[..used] {
        out.push_str(&format!(".{byte:X}"));
    }
    Some(out)
}

/// What the node reports about an H.265 SPS (H.265 §7.3.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HevcSps {
    /// `general_profile_idc` (1 Main, 2 Main 10, 3 Main Still Picture, 4 range extensions).
    pub profile_idc: u8,
    /// `general_level_idc`: thirty times the level (93 is level 3.1).
    pub level_idc: u8,
    /// Displayed width in pixels, after the conformance window.
    pub width: u32,
    /// Displayed height in pixels, after the conformance window.
    pub height: u32,
}

impl HevcSps {
    /// Parses an SPS NAL unit (2-byte header included, no start code).
    pub fn parse(nal: &[u8]) -> Result<HevcSps, crate::bits::BitsError> {
        let rbsp = crate::bits::remove_emulation_prevention(nal);
        let mut r = crate::bits::BitReader::new(rbsp.get(2..).unwrap_or(&[]));
        r.skip(4)?; // sps_video_parameter_set_id
        let max_sub_layers_minus1 = r.bits(3)? as usize;
        r.skip(1)?; // sps_temporal_id_nesting_flag
        // profile_tier_level(1, max_sub_layers_minus1): profile space, tier, profile_idc,
        // 32 compatibility flags, 48 bits of constraint flags, then the level.
        r.skip(3)?;
        let profile_idc = r.bits(5)? as u8;
        r.skip(32 + 48)?;
        let level_idc = r.bits(8)? as u8;
        let mut sub_layers = Vec::with_capacity(max_sub_layers_minus1);
        for _ in 0..max_sub_layers_minus1 {
            sub_layers.push((r.bit()?, r.bit()?));
        }
        if max_sub_layers_minus1 > 0 {
            r.skip(2 * (8 - max_sub_layers_minus1))?;
        }
        for (profile_present, level_present) in sub_layers {
            if profile_present {
                r.skip(88)?;
            }
            if level_present {
                r.skip(8)?;
            }
        }
        r.ue()?; // sps_seq_parameter_set_id
        let chroma_format_idc = r.ue()?;
        let separate_colour_plane = chroma_format_idc == 3 && r.bit()?;
        let mut width = r.ue()?;
        let mut height = r.ue()?;
        if r.bit()? {
            // Conformance window offsets are in chroma samples (Table 6-1).
            let (sub_width, sub_height) = match (chroma_format_idc, separate_colour_plane) {
                (1, _) => (2, 2),
                (2, _) => (2, 1),
                _ => (1, 1),
            };
            let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
            width = width.saturating_sub(left.saturating_add(right).saturating_mul(sub_width));
            height = height.saturating_sub(top.saturating_add(bottom).saturating_mul(sub_height));
        }
        Ok(HevcSps { profile_idc, level_idc, width, height })
    }

    /// The SPS of an `HEVCDecoderConfigurationRecord`, parsed; `None` when the record has no
    /// SPS or it does not parse.
    pub fn from_config(record: &[u8]) -> Option<HevcSps> {
        let (_, nals) = config_parameter_sets(record)?;
        let sps = nals.iter().find(|nal| !nal.is_empty() && nal_type(nal[0]) == NAL_SPS)?;
        HevcSps::parse(sps).ok()
    }

    /// The profile's name.
    pub fn profile_name(&self) -> &'static str {
        match self.profile_idc {
            1 => "Main",
            2 => "Main 10",
            3 => "Main Still Picture",
            4 => "Range Extensions",
            _ => "Other",
        }
    }

    /// The level as people write it (`3.1`).
    pub fn level_name(&self) -> String {
        let tenths = self.level_idc as u32 * 10 / 30;
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

/// VPS, SPS and PPS that Debian's ffmpeg (libx265) writes for 640x360 at 25 fps, Main profile,
/// level 2.1 (`ffmpeg -f lavfi -i testsrc2=size=640x360:rate=25 -c:v libx265 -f hevc`): test
/// data and fuzz seeds.
#[doc(hidden)]
pub mod sample {
    pub const VPS: [u8; 24] = [
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3f,
        0x95, 0x98, 0x09,
    ];
    pub const SPS: [u8; 42] = [
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3f, 0xa0, 0x05, 0x02,
        0x01, 0x69, 0x65, 0x95, 0x9a, 0x49, 0x32, 0xbc, 0x05, 0xa0, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x03, 0x03, 0x21,
    ];
    pub const PPS: [u8; 7] = [0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) use super::sample::{PPS, SPS, VPS};

    #[test]
    fn codec_string_comes_from_the_record() {
        let record = config_from_parameter_sets(&VPS, &SPS, &PPS).unwrap();
        // Main profile (compatible with Main and Main 10), progressive source and frame-only
        // constraint flags, level 2.1.
        assert_eq!(codec_string(&record).unwrap(), "hvc1.1.6.L63.90");
        let mut high = record.to_vec();
        high[1] = 0x22; // main tier off, high tier on, Main 10
        high[2..6].copy_from_slice(&[0x20, 0, 0, 0]);
        high[6..12].copy_from_slice(&[0xb0, 0, 0, 0, 0, 0]);
        high[12] = 153;
        assert_eq!(codec_string(&high).unwrap(), "hvc1.2.4.H153.B0");
        assert_eq!(codec_string(&record[..20]), None);
    }

    #[test]
    fn record_from_parameter_sets_round_trips() {
        let record = config_from_parameter_sets(&VPS, &SPS, &PPS).unwrap();
        assert_eq!(record[0], 1);
        assert_eq!(record[1], 0x01, "profile space 0, main tier, Main profile");
        assert_eq!(record[12], 0x3f, "level 2.1");
        let (length_size, nals) = config_parameter_sets(&record).unwrap();
        assert_eq!(length_size, 4);
        assert_eq!(nals, vec![Bytes::from_static(&VPS), Bytes::from_static(&SPS), Bytes::from_static(&PPS)]);
        assert!(config_from_parameter_sets(&VPS, &SPS[..8], &PPS).is_none());
    }

    #[test]
    fn parameter_sets_from_a_record() {
        let mut record = vec![1u8];
        record.extend_from_slice(&[0; 20]);
        record.push(0xff); // lengthSizeMinusOne = 3
        record.push(2); // two arrays
        record.extend_from_slice(&[0x20, 0, 1, 0, 3, 0x40, 0x01, 0x0c]); // VPS
        record.extend_from_slice(&[0x21, 0, 1, 0, 2, 0x42, 0x01]); // SPS
        let (length_size, nals) = config_parameter_sets(&record).unwrap();
        assert_eq!(length_size, 4);
        assert_eq!(nals.len(), 2);
        assert_eq!(nal_type(nals[0][0]), NAL_VPS);
        assert_eq!(nal_type(nals[1][0]), NAL_SPS);
        assert!(config_parameter_sets(&record[..record.len() - 1]).is_none());
    }

    #[test]
    fn sps_gives_size_profile_and_level() {
        let sps = HevcSps::parse(&SPS).unwrap();
        assert_eq!((sps.width, sps.height), (640, 360));
        assert_eq!(sps.profile_name(), "Main");
        assert_eq!(sps.level_name(), "2.1");
        let record = config_from_parameter_sets(&VPS, &SPS, &PPS).unwrap();
        assert_eq!(HevcSps::from_config(&record), Some(sps));
        for cut in 0..SPS.len() - 1 {
            // Every truncation is an error, never a panic (some still hold the size).
            let _ = HevcSps::parse(&SPS[..cut]);
        }
        assert!(HevcSps::parse(&SPS[..10]).is_err());
    }
}
