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

#[cfg(test)]
mod tests {
    use super::*;

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
}
