//! Reading the `moof` boxes of fragmented MP4 (ISO/IEC 14496-12 §8.8) back into sample
//! references. The DVR uses it to rebuild the sample table of a recording cut short by a
//! crash, so it reads what [`crate::container::fmp4::media_segment`] writes and refuses anything else:
//! `tfhd` with only default-base-is-moof, `tfdt`, and `trun`s with a data offset and a
//! duration, size, flags and composition offset per sample.
//!
//! Every number is checked: a `trun`'s data must start after its `moof` (the writer puts it
//! in the `mdat` that follows), no sample's offset plus size may overflow, and decode times
//! stay below [`MAX_TICKS`]. Work is one pass per `traf` to count its samples (so the output
//! is allocated once, at its exact size) and one to read them; a sample costs 16 bytes of
//! `trun`, so the output never exceeds 2 bytes of memory per byte of `moof`.

use super::boxes::{parse_header, Children, Mp4Box, Mp4Error};
use super::moov::MAX_TICKS;
use super::SampleRef;

/// `trun` flags the reader needs: data offset, then per sample its duration, size, flags and
/// composition time offset.
const TRUN_FLAGS: u32 = 0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800;
/// `tfhd` default-base-is-moof.
const DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
const TRUN_ENTRY: usize = 16;

/// The samples described by one `moof` box (its whole bytes, header included) found at
/// `moof_offset` in its file, per `track_ID`. Sample offsets are absolute file offsets, as
/// are the offsets in errors. A `moof` that is cut short, whose numbers do not add up, or that
/// uses what the fMP4 writer of this crate does not write is an error saying which box and
/// where.
pub fn fragment_samples(moof: &[u8], moof_offset: u64, source: u32) -> Result<Vec<(u32, Vec<SampleRef>)>, Mp4Error> {
    let header = parse_header(moof).map_err(|reason| Mp4Error::Malformed { box_type: *b"moof", offset: moof_offset, reason })?;
    let whole = Mp4Box { kind: header.kind, offset: moof_offset, header_len: header.header_len, body: &[] };
    if &header.kind != b"moof" {
        return Err(whole.malformed("not a `moof`"));
    }
    let total = match header.size {
        None => moof.len() as u64,
        Some(size) if size <= moof.len() as u64 => size,
        Some(size) => return Err(whole.malformed(format!("cut short: {size} bytes long, {} present", moof.len()))),
    };
    let moof_end = moof_offset.checked_add(total).ok_or_else(|| whole.malformed("ends beyond 2^64"))?;
    let body = &moof[header.header_len..total as usize];
    let moof_box = Mp4Box { body, ..whole };
    let mut out = Vec::new();
    for child in Children::new(body, moof_box.body_offset(), Some(moof_box)) {
        let child = child?;
        if &child.kind == b"traf" {
            out.push(traf(&child, moof_offset, moof_end, source)?);
        }
    }
    Ok(out)
}

/// The sample count of a `trun`, checked against its bytes; its flags checked too.
fn trun_count(trun: &Mp4Box<'_>) -> Result<usize, Mp4Error> {
    let flags = trun.u32_at(0)? & 0xff_ffff;
    if flags != TRUN_FLAGS {
        return Err(trun.unsupported(format!("flags {flags:#08x}; only {TRUN_FLAGS:#08x} is read")));
    }
    let count = trun.u32_at(4)? as usize;
    trun.entries(12, count, TRUN_ENTRY)?;
    Ok(count)
}

fn traf(traf: &Mp4Box<'_>, moof_offset: u64, moof_end: u64, source: u32) -> Result<(u32, Vec<SampleRef>), Mp4Error> {
    // First pass: how many samples, so the output is allocated once.
    let mut total = 0usize;
    for child in traf.children() {
        let child = child?;
        if &child.kind == b"trun" {
            total += trun_count(&child)?;
        }
    }
    let mut samples = Vec::with_capacity(total);
    let mut track_id = None;
    let mut base_dts = 0i64;
    for child in traf.children() {
        let child = child?;
        match &child.kind {
            b"tfhd" => {
                let flags = child.u32_at(0)? & 0xff_ffff;
                if flags & !DEFAULT_BASE_IS_MOOF != 0 {
                    return Err(child.unsupported(format!("flags {flags:#08x}; only default-base-is-moof is read")));
                }
                track_id = Some(child.u32_at(4)?);
            }
            b"tfdt" => {
                let base = match child.body.first() {
                    Some(1) => child.u64_at(4)?,
                    _ => child.u32_at(4)? as u64,
                };
                base_dts = i64::try_from(base).ok().filter(|&b| b < MAX_TICKS).ok_or_else(|| child.malformed(format!("base decode time {base} is beyond 2^52")))?;
            }
            b"trun" => {
                let count = trun_count(&child)?;
                let entries = child.entries(12, count, TRUN_ENTRY)?;
                let data_offset = child.u32_at(8)? as i32;
                let start = moof_offset.checked_add_signed(data_offset as i64).filter(|&start| start >= moof_end).ok_or_else(|| {
                    child.malformed(format!("data offset {data_offset} from the `moof` at byte {moof_offset} points before the end of the `moof` (byte {moof_end})"))
                })?;
                let mut offset = start;
                let mut dts = base_dts;
                for i in 0..count {
                    let duration = entries.u32(i, 0);
                    let size = entries.u32(i, 4);
                    let flags = entries.u32(i, 8);
                    let cts = entries.u32(i, 12) as i32;
                    let end = offset
                        .checked_add(size as u64)
                        .ok_or_else(|| child.malformed(format!("sample {} ({size} bytes at byte {offset}) ends beyond 2^64", i + 1)))?;
                    samples.push(SampleRef { dts, cts, size, key: flags & 0x0001_0000 == 0, source, offset });
                    dts = dts
                        .checked_add(duration as i64)
                        .filter(|&next| next < MAX_TICKS)
                        .ok_or_else(|| child.malformed(format!("sample {} ends at decode time {dts} + {duration}, beyond 2^52", i + 1)))?;
                    offset = end;
                }
            }
            _ => {}
        }
    }
    let track_id = track_id.ok_or_else(|| traf.malformed("no `tfhd` in it"))?;
    Ok((track_id, samples))
}

#[cfg(test)]
mod tests {
    use super::super::moov::tests::{hex, mp4_box};
    use super::*;

    /// Issue 28: a bare `moof` whose `trun` has data offset -1 (the old reader made the offset
    /// `u64::MAX` and wrapped it on the next sample).
    const NEGATIVE_DATA_OFFSET: &str = "000000686d6f6f660000006074726166000000107466686400020000000000010000001474666474010000000000000000000000000000347472756e00000f0100000002ffffffff0000000100000001000000000000000000000001000000010000000000000000";

    fn full(kind: &[u8; 4], version: u8, flags: u32, rest: &[u8]) -> Vec<u8> {
        let mut body = (flags | (version as u32) << 24).to_be_bytes().to_vec();
        body.extend_from_slice(rest);
        mp4_box(kind, &body)
    }

    /// A `moof` with one `traf`: tfdt `base`, and a trun at `data_offset` with `(duration, size)`s.
    fn moof(base: u64, data_offset: i32, samples: &[(u32, u32)]) -> Vec<u8> {
        let mut trun = (samples.len() as u32).to_be_bytes().to_vec();
        trun.extend_from_slice(&data_offset.to_be_bytes());
        for &(duration, size) in samples {
            for field in [duration, size, 0x0200_0000, 0] {
                trun.extend_from_slice(&field.to_be_bytes());
            }
        }
        let traf = [full(b"tfhd", 0, DEFAULT_BASE_IS_MOOF, &7u32.to_be_bytes()), full(b"tfdt", 1, 0, &base.to_be_bytes()), full(b"trun", 1, TRUN_FLAGS, &trun)].concat();
        mp4_box(b"moof", &mp4_box(b"traf", &traf))
    }

    fn box_error(error: Mp4Error) -> ([u8; 4], u64, String) {
        match error {
            Mp4Error::Malformed { box_type, offset, reason } => (box_type, offset, reason),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn negative_data_offset_is_refused() {
        let bare = hex(NEGATIVE_DATA_OFFSET);
        assert_eq!(bare.len(), 104);
        let (kind, offset, reason) = box_error(fragment_samples(&bare, 0, 0).unwrap_err());
        assert_eq!((&kind, offset), (b"trun", 52));
        assert_eq!(reason, "data offset -1 from the `moof` at byte 0 points before the end of the `moof` (byte 104)");
        // Found later in a file, offsets in the error are the file's.
        let (_, offset, _) = box_error(fragment_samples(&bare, 1000, 0).unwrap_err());
        assert_eq!(offset, 1052);
        // Pointing into the moof itself is refused too; just past it is read.
        let len = moof(0, 0, &[(1, 1), (1, 2)]).len() as i32;
        assert!(fragment_samples(&moof(0, len - 1, &[(1, 1), (1, 2)]), 0, 0).is_err());
        let read = fragment_samples(&moof(0, len + 8, &[(1, 1), (1, 2)]), 10, 4).unwrap();
        assert_eq!(read[0].0, 7);
        assert_eq!(read[0].1.iter().map(|s| (s.offset, s.size, s.source)).collect::<Vec<_>>(), vec![(10 + len as u64 + 8, 1, 4), (11 + len as u64 + 8, 2, 4)]);
    }

    #[test]
    fn decode_times_that_overflow_are_refused() {
        // tfdt base i64::MAX, duration 1: the old reader overflowed `dts += duration`.
        let (kind, _, reason) = box_error(fragment_samples(&moof(i64::MAX as u64, 200, &[(1, 1)]), 0, 0).unwrap_err());
        assert_eq!((&kind, reason.as_str()), (b"tfdt", "base decode time 9223372036854775807 is beyond 2^52"));
        assert!(fragment_samples(&moof(u64::MAX, 200, &[(1, 1)]), 0, 0).is_err());
        // A base in range, durations that leave it.
        let base = MAX_TICKS as u64 - 2;
        let (kind, _, reason) = box_error(fragment_samples(&moof(base, 200, &[(1, 1), (1, 1)]), 0, 0).unwrap_err());
        assert_eq!((&kind, reason.as_str()), (b"trun", "sample 2 ends at decode time 4503599627370495 + 1, beyond 2^52"));
    }

    #[test]
    fn offsets_that_overflow_are_refused() {
        // A moof near the end of the offset space: its samples cannot be placed.
        let (kind, _, reason) = box_error(fragment_samples(&moof(0, 200, &[(1, u32::MAX), (1, u32::MAX)]), u64::MAX - 300, 0).unwrap_err());
        assert_eq!(&kind, b"trun");
        assert!(reason.contains("ends beyond 2^64"), "{reason}");
        assert!(fragment_samples(&moof(0, 200, &[(1, 1)]), u64::MAX - 10, 0).is_err());
    }

    #[test]
    fn sample_counts_beyond_the_trun_are_refused() {
        let mut bytes = moof(0, 200, &[(1, 1)]);
        // trun sample count is at: moof(8) traf(8) tfhd(16) tfdt(20) trun header 8 + flags 4.
        let at = 8 + 8 + 16 + 20 + 12;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let (kind, offset, _) = box_error(fragment_samples(&bytes, 0, 0).unwrap_err());
        assert_eq!((&kind, offset), (b"trun", 52));
        // Cut short, or not a moof: errors, not panics.
        assert!(fragment_samples(&bytes[..40], 0, 0).is_err());
        assert!(fragment_samples(b"\0\0\0\x08free", 0, 0).is_err());
        assert!(fragment_samples(b"", 0, 0).is_err());
    }

    #[test]
    fn an_empty_trun_shorter_than_its_fields_is_an_error_not_a_panic() {
        // trun with flags 0x000f01 (data offset + four per-sample fields), sample count 0 and
        // a body of 8 bytes: the entries would start at byte 12, past its end. Found in review;
        // slicing there panicked, and DVR repair reads such fragments at boot.
        let trun = full(b"trun", 0, 0x000f01, &0u32.to_be_bytes());
        let traf = [full(b"tfhd", 0, DEFAULT_BASE_IS_MOOF, &7u32.to_be_bytes()), trun].concat();
        let bytes = mp4_box(b"moof", &mp4_box(b"traf", &traf));
        assert!(fragment_samples(&bytes, 0, 0).is_err());
        for len in 8..12 {
            let trun = full(b"trun", 0, 0x000f01, &vec![0u8; len - 4]);
            let traf = [full(b"tfhd", 0, DEFAULT_BASE_IS_MOOF, &7u32.to_be_bytes()), trun].concat();
            let _ = fragment_samples(&mp4_box(b"moof", &mp4_box(b"traf", &traf)), 0, 0);
        }
    }
}
