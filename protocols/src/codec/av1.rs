//! AV1 headers: the `AV1CodecConfigurationRecord` (`av1C`, AV1 Codec ISO Media File Format
//! Binding §2.3) that enhanced RTMP's sequence start carries, and the frame size from the
//! sequence header OBU in it (AV1 Bitstream §5.5).

use crate::bits::{BitReader, BitsError};

/// OBU type of a sequence header.
const OBU_SEQUENCE_HEADER: u8 = 1;

/// What the node reads of an AV1 stream's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Av1Config {
    /// `seq_profile` (0 main, 1 high, 2 professional).
    pub profile: u8,
    /// `seq_level_idx` of operating point 0.
    pub level: u8,
    /// `seq_tier` of operating point 0 (true: high tier).
    pub high_tier: bool,
    /// Bits per sample: 8, 10 or 12.
    pub bit_depth: u8,
    /// Monochrome (no chroma planes).
    pub monochrome: bool,
    /// `max_frame_width_minus_1 + 1` of the sequence header (0 when the record has none).
    pub width: u32,
    /// `max_frame_height_minus_1 + 1` of the sequence header (0 when the record has none).
    pub height: u32,
}

/// Why an `av1C` record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Av1Error {
    /// Shorter than the 4 fixed bytes, or the marker/version byte is not 0x81.
    #[error("not an AV1CodecConfigurationRecord ({0})")]
    NotARecord(&'static str),
    /// The sequence header OBU in the record is cut short or malformed.
    #[error("bad sequence header: {0}")]
    SequenceHeader(String),
}

impl From<BitsError> for Av1Error {
    fn from(e: BitsError) -> Self {
        Av1Error::SequenceHeader(e.to_string())
    }
}

impl Av1Config {
    /// Reads an `av1C` record: profile, level, tier and depth from its fixed bytes, the frame
    /// size from the sequence header OBU among its `configOBUs` (when there is one).
    pub fn parse(record: &[u8]) -> Result<Av1Config, Av1Error> {
        if record.len() < 4 {
            return Err(Av1Error::NotARecord("shorter than 4 bytes"));
        }
        if record[0] != 0x81 {
            return Err(Av1Error::NotARecord("marker/version byte is not 0x81"));
        }
        let high_bitdepth = record[2] & 0x40 != 0;
        let twelve_bit = record[2] & 0x20 != 0;
        let mut config = Av1Config {
            profile: record[1] >> 5,
            level: record[1] & 0x1f,
            high_tier: record[2] & 0x80 != 0,
            bit_depth: match (high_bitdepth, twelve_bit) {
                (false, _) => 8,
                (true, false) => 10,
                (true, true) => 12,
            },
            monochrome: record[2] & 0x10 != 0,
            width: 0,
            height: 0,
        };
        if let Some(header) = sequence_header(&record[4..])? {
            let (width, height) = frame_size(header)?;
            config.width = width;
            config.height = height;
        }
        Ok(config)
    }

    /// The profile's name (AV1 §A.2).
    pub fn profile_name(&self) -> &'static str {
        match self.profile {
            0 => "Main",
            1 => "High",
            2 => "Professional",
            _ => "Other",
        }
    }

    /// The level as `X.Y` (AV1 §A.3: `seq_level_idx` is (X - 2) * 4 + Y; 31 means no level).
    pub fn level_name(&self) -> String {
        if self.level >= 31 {
            return "max".to_string();
        }
        format!("{}.{}", 2 + self.level / 4, self.level % 4)
    }

    /// The RFC 6381 codec string (`av01.P.LLT.DD`, AV1-ISOBMFF Annex A).
    pub fn codec_string(&self) -> String {
        format!("av01.{}.{:02}{}.{:02}", self.profile, self.level, if self.high_tier { 'H' } else { 'M' }, self.bit_depth)
    }
}

/// The payload of the first sequence header OBU in `obus` (low-overhead bitstream format:
/// every OBU but the last has a size field).
fn sequence_header(mut obus: &[u8]) -> Result<Option<&[u8]>, Av1Error> {
    while let Some(&header) = obus.first() {
        let kind = (header >> 3) & 0x0f;
        let extension = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        let mut at = 1 + extension as usize;
        let size = if has_size {
            let (size, used) = leb128(obus.get(at..).unwrap_or(&[])).ok_or_else(|| Av1Error::SequenceHeader("OBU size cut short".into()))?;
            at += used;
            size
        } else {
            obus.len().saturating_sub(at)
        };
        let end = at.checked_add(size).filter(|&end| end <= obus.len()).ok_or_else(|| Av1Error::SequenceHeader(format!("an OBU of {size} bytes runs past the record")))?;
        if kind == OBU_SEQUENCE_HEADER {
            return Ok(Some(&obus[at..end]));
        }
        obus = &obus[end..];
    }
    Ok(None)
}

/// An unsigned LEB128 value of at most 8 bytes and how many bytes it used.
fn leb128(data: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in data.iter().take(8).enumerate() {
        value |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return usize::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

/// `max_frame_width_minus_1 + 1` and `max_frame_height_minus_1 + 1` of a sequence header
/// OBU's payload.
fn frame_size(header: &[u8]) -> Result<(u32, u32), Av1Error> {
    let mut r = BitReader::new(header);
    let fields = SequenceFields::read_to_frame_size(&mut r)?;
    Ok((fields.width, fields.height))
}

/// The fields of a sequence header OBU (AV1 §5.5) that an `av1C` record repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SequenceFields {
    profile: u8,
    level: u8,
    tier: bool,
    reduced_still_picture_header: bool,
    width: u32,
    height: u32,
}

impl SequenceFields {
    /// Reads from the start of a sequence header's payload to its frame size, past the timing,
    /// decoder model and operating point fields before it.
    fn read_to_frame_size(r: &mut BitReader<'_>) -> Result<SequenceFields, Av1Error> {
        let profile = r.bits(3)? as u8;
        let _still_picture = r.bit()?;
        let reduced_still_picture_header = r.bit()?;
        let (mut level, mut tier) = (0, false);
        if reduced_still_picture_header {
            level = r.bits(5)? as u8;
        } else {
            let mut decoder_model_info = false;
            let mut buffer_delay_bits = 0;
            if r.bit()? {
                // timing_info(): display tick, time scale, equal_picture_interval (+ uvlc).
                r.skip(64)?;
                if r.bit()? {
                    uvlc(r)?;
                }
                decoder_model_info = r.bit()?;
                if decoder_model_info {
                    buffer_delay_bits = r.bits(5)? + 1;
                    r.skip(32 + 5 + 5)?;
                }
            }
            let initial_display_delay = r.bit()?;
            let operating_points = r.bits(5)? + 1;
            for point in 0..operating_points {
                let _idc = r.bits(12)?;
                let point_level = r.bits(5)? as u8;
                let point_tier = point_level > 7 && r.bit()?;
                if point == 0 {
                    (level, tier) = (point_level, point_tier);
                }
                if decoder_model_info && r.bit()? {
                    r.skip(2 * buffer_delay_bits as usize + 1)?;
                }
                if initial_display_delay && r.bit()? {
                    r.skip(4)?;
                }
            }
        }
        let width_bits = r.bits(4)? + 1;
        let height_bits = r.bits(4)? + 1;
        let width = r.bits(width_bits)? + 1;
        let height = r.bits(height_bits)? + 1;
        Ok(SequenceFields { profile, level, tier, reduced_still_picture_header, width, height })
    }
}

/// The `AV1CodecConfigurationRecord` (`av1C`) of a sequence header OBU (`obu`: header, size
/// field and payload, as it goes into the record's `configOBUs`), for a stream whose
/// sequence header arrives in band (WebRTC).
pub fn record_from_sequence_header(obu: &[u8]) -> Result<Vec<u8>, Av1Error> {
    let payload = sequence_header(obu)?.ok_or_else(|| Av1Error::SequenceHeader("no sequence header OBU".into()))?;
    let mut r = BitReader::new(payload);
    let fields = SequenceFields::read_to_frame_size(&mut r)?;
    let frame_id_numbers = !fields.reduced_still_picture_header && r.bit()?;
    if frame_id_numbers {
        r.skip(4 + 3)?;
    }
    // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter.
    r.skip(3)?;
    if !fields.reduced_still_picture_header {
        // enable_interintra_compound, enable_masked_compound, enable_warped_motion,
        // enable_dual_filter.
        r.skip(4)?;
        let order_hint = r.bit()?;
        if order_hint {
            // enable_jnt_comp, enable_ref_frame_mvs.
            r.skip(2)?;
        }
        let force_screen_content_tools = if r.bit()? { 2 } else { r.bits(1)? };
        if force_screen_content_tools > 0 && !r.bit()? {
            // seq_force_integer_mv.
            r.skip(1)?;
        }
        if order_hint {
            r.skip(3)?;
        }
    }
    // enable_superres, enable_cdef, enable_restoration.
    r.skip(3)?;
    // color_config().
    let high_bitdepth = r.bit()?;
    let twelve_bit = fields.profile == 2 && high_bitdepth && r.bit()?;
    let monochrome = fields.profile != 1 && r.bit()?;
    let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
    if r.bit()? {
        primaries = r.bits(8)?;
        transfer = r.bits(8)?;
        matrix = r.bits(8)?;
    }
    let (subsampling_x, subsampling_y, chroma_position) = if monochrome {
        (true, true, 0)
    } else if primaries == 1 && transfer == 13 && matrix == 0 {
        (false, false, 0)
    } else {
        let _color_range = r.bit()?;
        let (x, y) = match fields.profile {
            0 => (true, true),
            1 => (false, false),
            _ if twelve_bit => {
                let x = r.bit()?;
                (x, x && r.bit()?)
            }
            _ => (true, false),
        };
        let position = if x && y { r.bits(2)? as u8 } else { 0 };
        (x, y, position)
    };
    let mut record = vec![
        0x81,
        (fields.profile << 5) | (fields.level & 0x1f),
        (fields.tier as u8) << 7 | (high_bitdepth as u8) << 6 | (twelve_bit as u8) << 5 | (monochrome as u8) << 4 | (subsampling_x as u8) << 3 | (subsampling_y as u8) << 2 | chroma_position,
        0,
    ];
    record.extend_from_slice(obu);
    Ok(record)
}

/// The sequence header OBU (header, size field, payload) among the configuration OBUs of an
/// `av1C` record, for senders that repeat it in front of keyframes (WebRTC).
pub fn sequence_header_obu(record: &[u8]) -> Option<Vec<u8>> {
    let payload = sequence_header(record.get(4..)?).ok()??;
    let mut obu = vec![OBU_SEQUENCE_HEADER << 3 | 0x02];
    let mut size = payload.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            obu.push(byte);
            break;
        }
        obu.push(byte | 0x80);
    }
    obu.extend_from_slice(payload);
    Some(obu)
}

/// `uvlc()` (AV1 §4.10.3): leading zeros up to a one, then that many bits (none, and the
/// largest value, from 32 zeros on).
fn uvlc(r: &mut BitReader<'_>) -> Result<u32, Av1Error> {
    let mut zeros = 0u32;
    while !r.bit()? {
        zeros = zeros.saturating_add(1);
    }
    if zeros >= 32 {
        return Ok(u32::MAX);
    }
    if zeros == 0 {
        return Ok(0);
    }
    Ok(r.bits(zeros)? + ((1u32 << zeros) - 1))
}

#[cfg(test)]
pub(crate) mod sample {
    /// The `av1C` of a 320x240 8-bit 4:2:0 main-profile stream as SVT-AV1 wrote it through
    /// ffmpeg's MP4 muxer: the 4 fixed bytes, then a sequence header OBU of 11 bytes.
    pub const AV1C_320X240: [u8; 17] = [0x81, 0x00, 0x0c, 0x00, 0x0a, 0x0b, 0x02, 0x00, 0x00, 0x05, 0x21, 0xe7, 0xfd, 0xe0, 0x17, 0xc0, 0x02];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoders_record_gives_size_and_codec_string() {
        let config = Av1Config::parse(&sample::AV1C_320X240).unwrap();
        assert_eq!((config.width, config.height), (320, 240));
        assert_eq!((config.profile, config.level, config.high_tier, config.bit_depth, config.monochrome), (0, 0, false, 8, false));
        assert_eq!(config.codec_string(), "av01.0.00M.08");
    }

    #[test]
    fn a_sequence_header_in_band_gives_the_encoders_record() {
        // The record an encoder wrote, rebuilt from its sequence header OBU alone.
        let obu = sequence_header_obu(&sample::AV1C_320X240).unwrap();
        assert_eq!(obu, sample::AV1C_320X240[4..]);
        assert_eq!(record_from_sequence_header(&obu).unwrap(), sample::AV1C_320X240);
        // Cut short: a reason, no record.
        assert!(record_from_sequence_header(&obu[..8]).is_err());
        assert!(record_from_sequence_header(&[0x12, 0x00]).is_err(), "a temporal delimiter is no sequence header");
    }

    #[test]
    fn profile_level_tier_and_depth_come_from_the_fixed_bytes() {
        // profile 1, level 13 (5.1), high tier, 10-bit; no configOBUs.
        let config = Av1Config::parse(&[0x81, 0x2d, 0xc0, 0x00]).unwrap();
        assert_eq!(config.codec_string(), "av01.1.13H.10");
        assert_eq!((config.width, config.height), (0, 0));
    }

    #[test]
    fn bad_records_are_refused_with_a_reason() {
        assert!(matches!(Av1Config::parse(&[0x81, 0]), Err(Av1Error::NotARecord(_))));
        assert!(matches!(Av1Config::parse(&[0x01, 0, 0, 0]), Err(Av1Error::NotARecord(_))));
        // The OBU claims 11 bytes but 3 follow.
        assert!(matches!(Av1Config::parse(&sample::AV1C_320X240[..9]), Err(Av1Error::SequenceHeader(_))));
        // A sequence header cut inside its fields.
        let mut cut = sample::AV1C_320X240[..8].to_vec();
        cut[5] = 2;
        assert!(matches!(Av1Config::parse(&cut), Err(Av1Error::SequenceHeader(_))));
    }

    #[test]
    fn uvlc_reads_up_to_its_one_however_many_zeros() {
        // 0 → "1"; 4 → "00101"; 33 zeros then the one: the largest value, nothing more read.
        let mut r = BitReader::new(&[0b1001_0100]);
        assert_eq!(uvlc(&mut r).unwrap(), 0);
        assert_eq!(uvlc(&mut r).unwrap(), 4);
        let mut long = vec![0u8; 4];
        long.extend([0b0100_0000]);
        let mut r = BitReader::new(&long);
        assert_eq!(uvlc(&mut r).unwrap(), u32::MAX);
        assert_eq!(r.remaining(), 6, "the zeros and the one are consumed");
        assert!(uvlc(&mut BitReader::new(&[0, 0])).is_err(), "no one before the end");
    }

    #[test]
    fn timing_info_and_decoder_model_fields_are_read_past() {
        // A hand-built sequence header: profile 0, timing info with equal_picture_interval
        // (uvlc 0), decoder model info (buffer_delay_length 5 bits), one operating point at
        // level 9 (tier bit) with decoder model parameters and no display delay, then a
        // 1920x1080 frame size in 11-bit fields.
        let mut bits = String::new();
        bits += "000"; // seq_profile
        bits += "0"; // still_picture
        bits += "0"; // reduced_still_picture_header
        bits += "1"; // timing_info_present_flag
        bits += &"0".repeat(31);
        bits += "1"; // num_units_in_display_tick = 1
        bits += &format!("{:032b}", 25u32); // time_scale
        bits += "1"; // equal_picture_interval
        bits += "1"; // uvlc: 0
        bits += "1"; // decoder_model_info_present_flag
        bits += "00100"; // buffer_delay_length_minus_1 = 4
        bits += &"0".repeat(32); // num_units_in_decoding_tick
        bits += "00000"; // buffer_removal_time_length_minus_1
        bits += "00000"; // frame_presentation_time_length_minus_1
        bits += "0"; // initial_display_delay_present_flag
        bits += "00000"; // operating_points_cnt_minus_1
        bits += &"0".repeat(12); // operating_point_idc
        bits += "01001"; // seq_level_idx 9
        bits += "1"; // seq_tier
        bits += "1"; // decoder_model_present_for_this_op
        bits += &"0".repeat(5 + 5 + 1); // buffer delays and low_delay_mode_flag
        bits += "1010"; // frame_width_bits_minus_1 = 10
        bits += "1010"; // frame_height_bits_minus_1 = 10
        bits += &format!("{:011b}", 1919);
        bits += &format!("{:011b}", 1079);
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let payload: Vec<u8> = bits.as_bytes().chunks(8).map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()).collect();
        let mut record = vec![0x81, 0x09, 0x80, 0x00, 0x0a, payload.len() as u8];
        record.extend(&payload);
        let config = Av1Config::parse(&record).unwrap();
        assert_eq!((config.width, config.height), (1920, 1080));
        assert_eq!(config.codec_string(), "av01.0.09H.08");
    }
}
