//! A big-endian bit reader for codec headers, with the exp-Golomb codes of
//! ITU-T H.264 §9.1 (`ue(v)`, `se(v)`), and removal of emulation-prevention bytes
//! (H.264 §7.4.1: `00 00 03` inside a NAL unit stands for `00 00`).

use thiserror::Error;

/// Reading past the end of the data.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("bitstream ended after {consumed_bits} bits while reading {what}")]
pub struct BitsError {
    /// How many bits had been read.
    pub consumed_bits: usize,
    /// What was being read.
    pub what: &'static str,
}

/// Reads bits MSB-first from a byte slice.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, position: 0 }
    }

    /// Bits not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len() * 8 - self.position.min(self.data.len() * 8)
    }

    /// One bit.
    pub fn bit(&mut self) -> Result<bool, BitsError> {
        let byte = self.data.get(self.position / 8).ok_or(BitsError {
            consumed_bits: self.position,
            what: "a bit",
        })?;
        let value = (byte >> (7 - (self.position % 8))) & 1;
        self.position += 1;
        Ok(value == 1)
    }

    /// `n` bits (at most 32) as an unsigned value.
    pub fn bits(&mut self, n: u32) -> Result<u32, BitsError> {
        debug_assert!(n <= 32);
        let mut value: u32 = 0;
        for _ in 0..n {
            value = (value << 1) | self.bit()? as u32;
        }
        Ok(value)
    }

    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize) -> Result<(), BitsError> {
        if self.remaining() < n {
            return Err(BitsError { consumed_bits: self.position, what: "skipped bits" });
        }
        self.position += n;
        Ok(())
    }

    /// An unsigned exp-Golomb value, `ue(v)`.
    pub fn ue(&mut self) -> Result<u32, BitsError> {
        let mut leading_zeros = 0u32;
        while !self.bit()? {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return Err(BitsError { consumed_bits: self.position, what: "ue(v) prefix" });
            }
        }
        if leading_zeros == 0 {
            return Ok(0);
        }
        let suffix = self.bits(leading_zeros)?;
        Ok(((1u64 << leading_zeros) - 1 + suffix as u64).min(u32::MAX as u64) as u32)
    }

    /// A signed exp-Golomb value, `se(v)`.
    pub fn se(&mut self) -> Result<i32, BitsError> {
        let code = self.ue()? as i64;
        let value = if code % 2 == 1 { (code + 1) / 2 } else { -(code / 2) };
        Ok(value as i32)
    }
}

/// Returns the RBSP of a NAL unit: `00 00 03` sequences lose their `03`.
pub fn remove_emulation_prevention(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &byte in nal {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_values() {
        // 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3
        let data = [0b1010_0110, 0b0100_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(r.ue().unwrap(), 0);
        assert_eq!(r.ue().unwrap(), 1);
        assert_eq!(r.ue().unwrap(), 2);
        assert_eq!(r.ue().unwrap(), 3);
    }

    #[test]
    fn signed_exp_golomb() {
        // 010 -> +1, 011 -> -1
        let data = [0b0100_1100];
        let mut r = BitReader::new(&data);
        assert_eq!(r.se().unwrap(), 1);
        assert_eq!(r.se().unwrap(), -1);
    }

    #[test]
    fn end_of_data_is_an_error() {
        let mut r = BitReader::new(&[0]);
        assert!(r.ue().is_err());
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(remove_emulation_prevention(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    }
}
