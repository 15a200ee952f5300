//! H.264 headers: the `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3.1), the
//! sequence parameter set fields the node reports (ITU-T H.264 §7.3.2.1.1: profile, level,
//! coded size after cropping, frame rate from the VUI timing info), and conversions between
//! Annex B byte streams and length-prefixed NAL units.

use crate::bits::{remove_emulation_prevention, BitReader, BitsError};
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Why an H.264 header could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AvcError {
    /// The record is shorter than its fields say.
    #[error("AVCDecoderConfigurationRecord truncated at byte {offset} (of {len})")]
    Truncated {
        /// Where reading stopped.
        offset: usize,
        /// The record's length.
        len: usize,
    },
    /// `configurationVersion` is not 1.
    #[error("AVCDecoderConfigurationRecord version {0}, expected 1")]
    BadVersion(u8),
    /// The record has no SPS.
    #[error("AVCDecoderConfigurationRecord carries no SPS")]
    NoSps,
    /// The SPS itself is malformed.
    #[error("SPS: {0}")]
    Sps(#[from] BitsError),
}

/// A parsed `AVCDecoderConfigurationRecord`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication`.
    pub profile: u8,
    /// `profile_compatibility`.
    pub compatibility: u8,
    /// `AVCLevelIndication`.
    pub level: u8,
    /// Bytes of each NAL unit length prefix (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter sets, without length prefixes.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets, without length prefixes.
    pub pps: Vec<Bytes>,
}

impl AvcConfig {
    /// Parses a record.
    pub fn parse(data: &[u8]) -> Result<AvcConfig, AvcError> {
        let truncated = |offset| AvcError::Truncated { offset, len: data.len() };
        if data.len() < 6 {
            return Err(truncated(data.len()));
        }
        if data[0] != 1 {
            return Err(AvcError::BadVersion(data[0]));
        }
        let mut config = AvcConfig {
            profile: data[1],
            compatibility: data[2],
            level: data[3],
            nal_length_size: (data[4] & 0x03) + 1,
            sps: Vec::new(),
            pps: Vec::new(),
        };
        let mut offset = 5;
        let sps_count = data[offset] & 0x1f;
        offset += 1;
        for _ in 0..sps_count {
            let (nal, next) = read_u16_prefixed(data, offset).ok_or_else(|| truncated(offset))?;
            config.sps.push(nal);
            offset = next;
        }
        let pps_count = *data.get(offset).ok_or_else(|| truncated(offset))?;
        offset += 1;
        for _ in 0..pps_count {
            let (nal, next) = read_u16_prefixed(data, offset).ok_or_else(|| truncated(offset))?;
            config.pps.push(nal);
            offset = next;
        }
        if config.sps.is_empty() {
            return Err(AvcError::NoSps);
        }
        Ok(config)
    }

    /// Builds a record from one SPS and one PPS (NAL units without start codes).
    pub fn from_parameter_sets(sps: &[u8], pps: &[u8]) -> Result<AvcConfig, AvcError> {
        if sps.len() < 4 {
            return Err(AvcError::NoSps);
        }
        Ok(AvcConfig {
            profile: sps[1],
            compatibility: sps[2],
            level: sps[3],
            nal_length_size: 4,
            sps: vec![Bytes::copy_from_slice(sps)],
            pps: vec![Bytes::copy_from_slice(pps)],
        })
    }

    /// Serialises the record.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(1);
        out.put_u8(self.profile);
        out.put_u8(self.compatibility);
        out.put_u8(self.level);
        out.put_u8(0xfc | (self.nal_length_size.clamp(1, 4) - 1));
        out.put_u8(0xe0 | (self.sps.len() as u8 & 0x1f));
        for sps in &self.sps {
            out.put_u16(sps.len() as u16);
            out.put_slice(sps);
        }
        out.put_u8(self.pps.len() as u8);
        for pps in &self.pps {
            out.put_u16(pps.len() as u16);
            out.put_slice(pps);
        }
        out.freeze()
    }

    /// Parses the first SPS.
    pub fn sps_info(&self) -> Result<SpsInfo, AvcError> {
        SpsInfo::parse(self.sps.first().ok_or(AvcError::NoSps)?)
    }
}

fn read_u16_prefixed(data: &[u8], offset: usize) -> Option<(Bytes, usize)> {
    let len = u16::from_be_bytes([*data.get(offset)?, *data.get(offset + 1)?]) as usize;
    let body = data.get(offset + 2..offset + 2 + len)?;
    Some((Bytes::copy_from_slice(body), offset + 2 + len))
}

/// What the node reports about an SPS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpsInfo {
    /// `profile_idc` (66 Baseline, 77 Main, 100 High, ...).
    pub profile_idc: u8,
    /// `level_idc` (31 means level 3.1).
    pub level_idc: u8,
    /// Displayed width in pixels, after cropping.
    pub width: u32,
    /// Displayed height in pixels, after cropping.
    pub height: u32,
    /// Frames per second from the VUI timing info, when present.
    pub frame_rate: Option<f64>,
}

impl SpsInfo {
    /// Parses an SPS NAL unit (header byte included, no start code).
    pub fn parse(nal: &[u8]) -> Result<SpsInfo, AvcError> {
        let rbsp = remove_emulation_prevention(nal);
        let mut r = BitReader::new(rbsp.get(1..).unwrap_or(&[]));
        let profile_idc = r.bits(8)? as u8;
        r.skip(8)?;
        let level_idc = r.bits(8)? as u8;
        r.ue()?; // seq_parameter_set_id
        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135)
        {
            chroma_format_idc = r.ue()?;
            if chroma_format_idc == 3 {
                separate_colour_plane = r.bit()?;
            }
            r.ue()?; // bit_depth_luma_minus8
            r.ue()?; // bit_depth_chroma_minus8
            r.bit()?; // qpprime_y_zero_transform_bypass_flag
            if r.bit()? {
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.bit()? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        r.ue()?; // log2_max_frame_num_minus4
        match r.ue()? {
            0 => {
                r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
            }
            1 => {
                r.bit()?;
                r.se()?;
                r.se()?;
                let cycle = r.ue()?;
                for _ in 0..cycle.min(256) {
                    r.se()?;
                }
            }
            _ => {}
        }
        r.ue()?; // max_num_ref_frames
        r.bit()?; // gaps_in_frame_num_value_allowed_flag
        let width_mbs = r.ue()? as u64 + 1;
        let height_map_units = r.ue()? as u64 + 1;
        let frame_mbs_only = r.bit()?;
        if !frame_mbs_only {
            r.bit()?; // mb_adaptive_frame_field_flag
        }
        r.bit()?; // direct_8x8_inference_flag
        let (mut crop_left, mut crop_right, mut crop_top, mut crop_bottom) = (0, 0, 0, 0);
        if r.bit()? {
            crop_left = r.ue()? as u64;
            crop_right = r.ue()? as u64;
            crop_top = r.ue()? as u64;
            crop_bottom = r.ue()? as u64;
        }
        let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
        let (sub_width, sub_height) = match chroma_array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let frame_height_factor = if frame_mbs_only { 1 } else { 2 };
        let (crop_unit_x, crop_unit_y) = if chroma_array_type == 0 {
            (1, frame_height_factor)
        } else {
            (sub_width, sub_height * frame_height_factor)
        };
        let width = (width_mbs * 16).saturating_sub(crop_unit_x * (crop_left + crop_right));
        let height = (height_map_units * 16 * frame_height_factor)
            .saturating_sub(crop_unit_y * (crop_top + crop_bottom));
        let frame_rate = if r.bit().unwrap_or(false) { read_vui_frame_rate(&mut r).ok().flatten() } else { None };
        Ok(SpsInfo {
            profile_idc,
            level_idc,
            width: width.min(u32::MAX as u64) as u32,
            height: height.min(u32::MAX as u64) as u32,
            frame_rate,
        })
    }
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), BitsError> {
    let mut last = 8i32;
    let mut next = 8i32;
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last as i64 + delta as i64 + 256).rem_euclid(256) as i32;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

fn read_vui_frame_rate(r: &mut BitReader<'_>) -> Result<Option<f64>, BitsError> {
    if r.bit()? {
        // aspect_ratio_info_present_flag
        if r.bits(8)? == 255 {
            r.skip(32)?; // sar_width, sar_height
        }
    }
    if r.bit()? {
        r.bit()?; // overscan_appropriate_flag
    }
    if r.bit()? {
        r.skip(4)?; // video_format, video_full_range_flag
        if r.bit()? {
            r.skip(24)?; // colour description
        }
    }
    if r.bit()? {
        r.ue()?;
        r.ue()?;
    }
    if r.bit()? {
        let num_units_in_tick = r.bits(32)?;
        let time_scale = r.bits(32)?;
        if num_units_in_tick > 0 && time_scale > 0 {
            return Ok(Some(time_scale as f64 / (2.0 * num_units_in_tick as f64)));
        }
    }
    Ok(None)
}

/// NAL unit type of an H.264 NAL header byte.
pub fn nal_type(header: u8) -> u8 {
    header & 0x1f
}

/// Iterates over the NAL units of a length-prefixed payload. Stops at the first prefix that
/// runs past the end (a truncated payload yields the complete units before it).
pub fn length_prefixed_nals(payload: &[u8], length_size: usize) -> impl Iterator<Item = &[u8]> {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        if length_size == 0 || length_size > 4 || offset + length_size > payload.len() {
            return None;
        }
        let mut len = 0usize;
        for byte in &payload[offset..offset + length_size] {
            len = (len << 8) | *byte as usize;
        }
        let start = offset + length_size;
        let nal = payload.get(start..start.checked_add(len)?)?;
        offset = start + len;
        Some(nal)
    })
}

/// Splits an Annex B byte stream (start codes `00 00 01` / `00 00 00 01`) into NAL units.
pub fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (index, &start) in starts.iter().enumerate() {
        let mut end = starts.get(index + 1).map(|next| next - 3).unwrap_or(data.len());
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        if end > start {
            nals.push(&data[start..end]);
        }
    }
    nals
}

/// Writes NAL units with 4-byte length prefixes.
pub fn to_length_prefixed<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    for nal in nals {
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    out.freeze()
}

/// Writes NAL units as an Annex B byte stream with 4-byte start codes.
pub fn to_annexb<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    for nal in nals {
        out.put_slice(&[0, 0, 0, 1]);
        out.put_slice(nal);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS of x264 for 320x240, High profile level 1.3, 25 fps (VUI timing 1/50).
    /// Made with `ffmpeg -f lavfi -i testsrc2=size=320x240:rate=25 -c:v libx264`.
    const SPS_320X240: [u8; 25] = [
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];

    #[test]
    fn sps_gives_size_profile_and_rate() {
        let info = SpsInfo::parse(&SPS_320X240).unwrap();
        assert_eq!(info.profile_idc, 100);
        assert_eq!(info.level_idc, 13);
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(info.frame_rate, Some(25.0));
    }

    #[test]
    fn config_round_trip() {
        let config = AvcConfig::from_parameter_sets(&SPS_320X240, &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0]).unwrap();
        let bytes = config.to_bytes();
        let parsed = AvcConfig::parse(&bytes).unwrap();
        assert_eq!(parsed, config);
        assert_eq!(parsed.sps_info().unwrap().width, 320);
    }

    #[test]
    fn truncated_config_is_an_error() {
        let config = AvcConfig::from_parameter_sets(&SPS_320X240, &[0x68, 0xeb]).unwrap().to_bytes();
        for cut in 0..config.len() {
            assert!(AvcConfig::parse(&config[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn annexb_and_length_prefixed_convert() {
        let stream = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5];
        let nals = annexb_nals(&stream);
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]);
        let prefixed = to_length_prefixed(nals.iter().copied());
        let back: Vec<&[u8]> = length_prefixed_nals(&prefixed, 4).collect();
        assert_eq!(back, nals);
        assert_eq!(annexb_nals(&to_annexb(back)), nals);
    }

    #[test]
    fn huge_scaling_list_delta_is_not_an_overflow() {
        // Found by the codec_headers fuzz target: a scaling-list delta near i32::MAX.
        let input = [0xa9, 0x80, 0x00, 0x80, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0xff, 0xff, 0xff, 0x01, 0xc8, 0x00, 0xff, 0x87, 0x76, 0xff, 0x1a, 0x00];
        let _ = SpsInfo::parse(&input);
        let _ = AvcConfig::parse(&input).and_then(|c| c.sps_info());
    }

    #[test]
    fn truncated_length_prefix_stops() {
        let data = [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 9, 0x41];
        assert_eq!(length_prefixed_nals(&data, 4).count(), 1);
    }
}
