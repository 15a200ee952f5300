//! Reading a progressive MP4's `moov` (ISO/IEC 14496-12 §8.6–8.7, sample tables) into
//! sample references, within a budget.
//!
//! ## Tables and how they are checked
//! A track's samples are described by run-length and per-chunk tables that are only
//! consistent by convention: `stsz` gives the count and sizes, `stco`/`co64` the chunk
//! offsets, `stsc` how many samples each chunk holds, `stts` the decode-time deltas, `ctts`
//! the composition offsets and `stss` the sync samples. The reader refuses, before any loop
//! over samples, a file whose numbers do not add up:
//!
//! - `stsz`: the sizes it describes must fit in the file (their sum is at most the file's
//!   length), and the file's budget must cover its sample count (see [`MAX_SAMPLES`]);
//! - `stts`, `ctts`: the runs must cover exactly the `stsz` sample count, and the last decode
//!   time must stay below [`MAX_TICKS`];
//! - `stsc`: runs start at chunk 1 and increase; with `stco`/`co64` they must place every
//!   sample, and every sample must lie inside the file (checked, no wrapping);
//! - `stss`: sample numbers within 1..=count, increasing.
//!
//! Then one pass walks all tables together with a cursor in each, so the work is linear in
//! the number of table entries plus the number of samples, never chunks × runs, and the only
//! allocation that grows with the file is the exact-size output.

use super::boxes::{find_top_level, Children, Mp4Box, Mp4Error, Table};
use super::SampleRef;
use crate::container::fmp4::Track;
use crate::media::{Codec, TrackKind};
use bytes::Bytes;

/// At most this many samples are read from one file, all tracks together (32 bytes each in
/// memory: at most 320 MB of index, reached only by a file of 80 MB or more).
pub const MAX_SAMPLES: usize = 10_000_000;

/// And at most one sample per this many bytes of file. Real files are far from it: each
/// sample of the codecs Estuary carries holds at least a few bytes (a length-prefixed NAL
/// unit, an AAC frame) and has its own 4-byte `stsz` entry. So the index of a file costs at
/// most 4 bytes of memory per byte of file.
pub const FILE_BYTES_PER_SAMPLE: u64 = 8;

/// [`read_moov`], which cannot check the tables against a file, reads at most this many
/// samples (32 MB of index).
pub const MAX_SAMPLES_WITHOUT_FILE: usize = 1_000_000;

/// Decode times (and fragment base times) must stay below 2^52 ticks (1,600 years at 90 kHz,
/// 52 days at a 1 GHz timescale), so callers can add a duration and scale to milliseconds
/// in `i64` without overflow.
pub const MAX_TICKS: i64 = 1 << 52;

/// The most heap, in bytes, the MP4 readers ([`read_file`], [`read_moov`],
/// [`fragment_samples`](super::fragment_samples)) hold at once for an input of `len` bytes:
/// 8 bytes per input byte plus 64 KiB. The index is at most half of it (see
/// [`FILE_BYTES_PER_SAMPLE`]); codec configurations copied out of the file and the track
/// list make the rest. The fuzz target checks it on every input.
pub const fn heap_budget(len: usize) -> usize {
    len.saturating_mul(8).saturating_add(64 << 10)
}

/// A track read from a progressive MP4's `moov`.
#[derive(Debug, Clone)]
pub struct DemuxedTrack {
    /// Codec, timescale and configuration.
    pub track: Track,
    /// Samples in decode order (`source` is 0; offsets are file offsets).
    pub samples: Vec<SampleRef>,
}

/// Reads the tracks Estuary can carry (H.264, H.265, AAC) from a whole progressive MP4 file:
/// finds its top-level `moov` and checks every table against the file's length (no sample
/// outside the file, no more samples than the file can hold). Errors give byte offsets from
/// the start of the file. This is the entry point for bytes from outside (ingest, uploads).
pub fn read_file(file: &[u8]) -> Result<Vec<DemuxedTrack>, Mp4Error> {
    let moov = find_top_level(file, b"moov")?.ok_or(Mp4Error::NoMoov)?;
    let len = file.len() as u64;
    let budget = (len / FILE_BYTES_PER_SAMPLE).min(MAX_SAMPLES as u64) as usize;
    read(moov, Some(len), budget)
}

/// Reads the tracks Estuary can carry from a `moov` box alone (whole box, header included)
/// when the file is not at hand. Sample offsets cannot be checked against a file here and at
/// most [`MAX_SAMPLES_WITHOUT_FILE`] samples are read; prefer [`read_file`]. Errors give byte
/// offsets from the start of the `moov`.
pub fn read_moov(moov: &[u8]) -> Result<Vec<DemuxedTrack>, Mp4Error> {
    let moov = find_top_level(moov, b"moov")?.ok_or(Mp4Error::NoMoov)?;
    read(moov, None, MAX_SAMPLES_WITHOUT_FILE)
}

/// The tracks an initialization segment describes (a fragmented file's `moov`, whole box,
/// header included), each with its own `track_ID` from `tkhd` (the one its fragments name).
/// No samples: those are in the fragments (see [`super::fragment_samples`]).
pub fn read_init(moov: &[u8]) -> Result<Vec<Track>, Mp4Error> {
    let moov = find_top_level(moov, b"moov")?.ok_or(Mp4Error::NoMoov)?;
    let mut tracks = Vec::new();
    for trak in moov.children() {
        let trak = trak?;
        if &trak.kind != b"trak" {
            continue;
        }
        // A damaged track is left out; the others are still read.
        let read = || -> Result<Option<Track>, Mp4Error> {
            let tkhd = trak.require(b"tkhd")?;
            // version/flags, then creation and modification times (32 or 64 bits), then track_ID.
            let id = if tkhd.body.first() == Some(&1) { tkhd.u32_at(20)? } else { tkhd.u32_at(12)? };
            track_of(&trak, id)
        };
        if let Ok(Some(track)) = read() {
            tracks.push(track);
        }
    }
    if tracks.is_empty() {
        return Err(Mp4Error::NoTracks);
    }
    Ok(tracks)
}

fn read(moov: Mp4Box<'_>, file_len: Option<u64>, budget: usize) -> Result<Vec<DemuxedTrack>, Mp4Error> {
    if moov.child(b"mvex")?.is_some() {
        return Err(Mp4Error::Fragmented);
    }
    let mut budget = Budget { left: budget, file_len };
    let mut tracks = Vec::new();
    for trak in moov.children() {
        let trak = trak?;
        if &trak.kind != b"trak" {
            continue;
        }
        let Some(track) = track_of(&trak, tracks.len() as u32 + 1)? else { continue };
        // Files are read for their media; a caption track is not carried into a live stream.
        if track.kind() == TrackKind::Data {
            continue;
        }
        // Present when track_of found a carried track (it needs the sample description).
        let Some(stbl) = stbl_of(&trak)? else { continue };
        let samples = sample_table(&stbl, track.kind() == TrackKind::Audio, &mut budget)?;
        if !samples.is_empty() {
            tracks.push(DemuxedTrack { track, samples });
        }
    }
    if tracks.is_empty() {
        return Err(Mp4Error::NoTracks);
    }
    Ok(tracks)
}

fn stbl_of<'a>(trak: &Mp4Box<'a>) -> Result<Option<Mp4Box<'a>>, Mp4Error> {
    let Some(mdia) = trak.child(b"mdia")? else { return Ok(None) };
    let Some(minf) = mdia.child(b"minf")? else { return Ok(None) };
    minf.child(b"stbl")
}

/// The track a `trak` describes; `None` for a codec Estuary does not carry.
fn track_of(trak: &Mp4Box<'_>, id: u32) -> Result<Option<Track>, Mp4Error> {
    let Some(mdia) = trak.child(b"mdia")? else { return Ok(None) };
    let mdhd = mdia.require(b"mdhd")?;
    let timescale = if mdhd.body.first() == Some(&1) { mdhd.u32_at(20)? } else { mdhd.u32_at(12)? };
    let Some(stbl) = stbl_of(trak)? else { return Ok(None) };
    let stsd = stbl.require(b"stsd")?;
    // version/flags, entry_count, then the sample entries.
    let Some(entry) = stsd.children_from(8).next().transpose()? else { return Ok(None) };
    let track = match &entry.kind {
        b"avc1" | b"avc3" | b"hvc1" | b"hev1" | b"av01" => {
            // VisualSampleEntry: 78 bytes of fields, then boxes.
            let (codec, config_kind) = match &entry.kind {
                b"avc1" | b"avc3" => (Codec::H264, b"avcC"),
                b"av01" => (Codec::Av1, b"av1C"),
                _ => (Codec::H265, b"hvcC"),
            };
            let Some(config) = find(entry.children_from(78), config_kind)? else { return Ok(None) };
            let dimension = |at: usize| entry.body.get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as u32);
            Track {
                id,
                codec,
                timescale,
                config: Bytes::copy_from_slice(config.body),
                width: dimension(24),
                height: dimension(26),
                channels: 0,
                sample_rate: 0,
            }
        }
        b"mp4a" => {
            // AudioSampleEntry: 28 bytes of fields, then boxes.
            let Some(esds) = find(entry.children_from(28), b"esds")? else { return Ok(None) };
            let Some(asc) = esds_config(esds.body) else { return Ok(None) };
            let Ok(aac) = crate::codec::aac::AacConfig::parse(&asc) else { return Ok(None) };
            Track {
                id,
                codec: Codec::Aac,
                timescale,
                config: Bytes::from(asc),
                width: 0,
                height: 0,
                channels: aac.channel_config.max(1) as u16,
                sample_rate: aac.sample_rate,
            }
        }
        b"Opus" => {
            // AudioSampleEntry, then dOps; the track keeps the OpusHead that frames carry.
            let Some(dops) = find(entry.children_from(28), b"dOps")? else { return Ok(None) };
            let Some(head) = crate::codec::opus::OpusHead::from_dops(dops.body) else { return Ok(None) };
            Track {
                id,
                codec: Codec::Opus,
                timescale,
                config: Bytes::from(head.to_bytes()),
                width: 0,
                height: 0,
                channels: head.channels.max(1) as u16,
                sample_rate: crate::codec::opus::SAMPLE_RATE,
            }
        }
        b"tx3g" => {
            // SampleEntry's 8 bytes, then the timed-text fields the track keeps as its config.
            // A broken caption track is left out, never a reason to refuse the file.
            let Some(fields) = entry.body.get(8..).filter(|_| timescale > 0) else { return Ok(None) };
            Track { id, codec: Codec::Tx3g, timescale, config: Bytes::copy_from_slice(fields), width: 0, height: 0, channels: 0, sample_rate: 0 }
        }
        _ => return Ok(None),
    };
    if timescale == 0 {
        return Err(mdhd.malformed("timescale 0"));
    }
    Ok(Some(track))
}

fn find<'a>(children: Children<'a>, kind: &[u8; 4]) -> Result<Option<Mp4Box<'a>>, Mp4Error> {
    for found in children {
        let found = found?;
        if &found.kind == kind {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The AudioSpecificConfig in an `esds` body (any descriptor length encoding).
fn esds_config(esds: &[u8]) -> Option<Vec<u8>> {
    fn descriptor(data: &[u8]) -> Option<(u8, &[u8])> {
        let tag = *data.first()?;
        let mut len = 0usize;
        let mut at = 1;
        for _ in 0..4 {
            let b = *data.get(at)?;
            at += 1;
            len = (len << 7) | (b & 0x7f) as usize;
            if b & 0x80 == 0 {
                break;
            }
        }
        Some((tag, data.get(at..at.checked_add(len)?)?))
    }
    let (tag, es) = descriptor(esds.get(4..)?)?;
    if tag != 0x03 {
        return None;
    }
    let flags = *es.get(2)?;
    let mut at = 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + *es.get(at)? as usize;
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    let (tag, decoder) = descriptor(es.get(at..)?)?;
    if tag != 0x04 {
        return None;
    }
    let (tag, specific) = descriptor(decoder.get(13..)?)?;
    (tag == 0x05).then(|| specific.to_vec())
}

/// What is left of a file's budget, and the file's length when known.
struct Budget {
    left: usize,
    file_len: Option<u64>,
}

/// Sample sizes: one for all, or a table.
enum Sizes<'a> {
    Uniform(u32),
    Each(Table<'a>),
}

impl Sizes<'_> {
    fn get(&self, i: usize) -> u32 {
        match self {
            Sizes::Uniform(size) => *size,
            Sizes::Each(table) => table.u32(i, 0),
        }
    }
}

/// A run-length table (`stts`, `ctts`: `count:u32 value:u32`) read one sample at a time.
struct Runs<'a> {
    table: Table<'a>,
    entry: usize,
    left: u32,
}

impl<'a> Runs<'a> {
    /// Checks that the runs cover exactly `n` samples; the cursor then never runs out.
    fn new(table: Table<'a>, n: usize) -> Result<Runs<'a>, Mp4Error> {
        let covered: u64 = (0..table.len()).map(|i| table.u32(i, 0) as u64).sum();
        if covered != n as u64 {
            return Err(table.owner.malformed(format!("its {} entries cover {covered} samples; `stsz` has {n}", table.len())));
        }
        Ok(Runs { table, entry: 0, left: if table.len() > 0 { table.u32(0, 0) } else { 0 } })
    }

    /// The next sample's value.
    fn next(&mut self) -> Result<u32, Mp4Error> {
        while self.left == 0 {
            self.entry += 1;
            if self.entry >= self.table.len() {
                return Err(self.table.owner.malformed("runs out of entries"));
            }
            self.left = self.table.u32(self.entry, 0);
        }
        self.left -= 1;
        Ok(self.table.u32(self.entry, 4))
    }
}

fn sample_table(stbl: &Mp4Box<'_>, all_sync: bool, budget: &mut Budget) -> Result<Vec<SampleRef>, Mp4Error> {
    // Sizes: checked against the file and the budget before anything is allocated.
    let stsz = stbl.require(b"stsz")?;
    let uniform = stsz.u32_at(4)?;
    let n = stsz.u32_at(8)? as usize;
    let (sizes, total) = if uniform != 0 {
        (Sizes::Uniform(uniform), n as u64 * uniform as u64)
    } else {
        let table = stsz.entries(12, n, 4)?;
        // At most 2^32 entries of below 2^32 each: no overflow.
        let total = (0..n).map(|i| table.u32(i, 0) as u64).sum();
        (Sizes::Each(table), total)
    };
    if let Some(len) = budget.file_len {
        if total > len {
            return Err(stsz.malformed(format!("{n} samples of {total} bytes in all cannot fit in a file of {len} bytes")));
        }
    }
    if n > budget.left {
        return Err(stsz.over_budget(format!(
            "{n} samples; the file's budget has {} left (one sample per {FILE_BYTES_PER_SAMPLE} bytes of file, at most {MAX_SAMPLES})",
            budget.left
        )));
    }
    budget.left -= n;

    // Chunks.
    let (chunks, wide) = match stbl.child(b"stco")? {
        Some(stco) => (stco.table(4)?, false),
        None => {
            let co64 = stbl.child(b"co64")?.ok_or_else(|| stbl.malformed("neither `stco` nor `co64` in it"))?;
            (co64.table(8)?, true)
        }
    };
    let chunk_offset = |c: usize| if wide { chunks.u64(c, 0) } else { chunks.u32(c, 0) as u64 };
    let stsc = stbl.require(b"stsc")?.table(12)?;
    for i in 0..stsc.len() {
        let first = stsc.u32(i, 0);
        let ordered = if i == 0 { first == 1 } else { first > stsc.u32(i - 1, 0) };
        if !ordered {
            return Err(stsc.owner.malformed(format!("entry {} starts at chunk {first}: runs must start at chunk 1 and increase", i + 1)));
        }
    }

    // Times: every run covers exactly the samples there are, and the end stays in range.
    let stts = stbl.require(b"stts")?.table(8)?;
    let end: u128 = (0..stts.len()).map(|i| stts.u32(i, 0) as u128 * stts.u32(i, 4) as u128).sum();
    if end >= MAX_TICKS as u128 {
        return Err(stts.owner.malformed(format!("decode times reach {end} ticks, beyond 2^52")));
    }
    let mut deltas = Runs::new(stts, n)?;
    let mut offsets = match stbl.child(b"ctts")? {
        Some(ctts) => Some(Runs::new(ctts.table(8)?, n)?),
        None => None,
    };
    let stss = match (all_sync, stbl.child(b"stss")?) {
        (false, Some(stss)) => Some(stss.table(4)?),
        _ => None,
    };
    if let Some(stss) = &stss {
        for i in 0..stss.len() {
            let number = stss.u32(i, 0) as usize;
            let ordered = i == 0 || number > stss.u32(i - 1, 0) as usize;
            if !(1..=n).contains(&number) || !ordered {
                return Err(stss.owner.malformed(format!("entry {} names sample {number} of {n} (numbers must increase)", i + 1)));
            }
        }
    }

    // One pass over all tables.
    let mut samples = Vec::with_capacity(n);
    let mut run = 0usize;
    let mut dts = 0i64;
    let mut next_sync = 0usize;
    for chunk in 0..chunks.len() {
        if samples.len() == n {
            break;
        }
        let number = chunk as u64 + 1;
        while run + 1 < stsc.len() && stsc.u32(run + 1, 0) as u64 <= number {
            run += 1;
        }
        let per_chunk = if stsc.len() > 0 { stsc.u32(run, 4) as usize } else { 0 };
        let mut at = chunk_offset(chunk);
        for _ in 0..per_chunk.min(n - samples.len()) {
            let i = samples.len();
            let size = sizes.get(i);
            let end = at.checked_add(size as u64).filter(|&end| budget.file_len.is_none_or(|len| end <= len)).ok_or_else(|| {
                let file = budget.file_len.map_or(String::new(), |len| format!(" of {len} bytes"));
                chunks.owner.malformed(format!("sample {} ({size} bytes at byte {at}, chunk {number}) lies outside the file{file}", i + 1))
            })?;
            let key = match &stss {
                None => true,
                Some(stss) if next_sync < stss.len() && stss.u32(next_sync, 0) as usize == i + 1 => {
                    next_sync += 1;
                    true
                }
                Some(_) => false,
            };
            let cts = match offsets.as_mut() {
                // Version 0 stores the offset unsigned; negative offsets written that way
                // are common, so both versions are read as signed.
                Some(offsets) => offsets.next()? as i32,
                None => 0,
            };
            samples.push(SampleRef { dts, cts, size, key, source: 0, offset: at });
            // Below MAX_TICKS in all (checked above); checked again rather than trusted.
            dts = dts.checked_add(deltas.next()? as i64).ok_or_else(|| stts.owner.malformed("decode time overflows"))?;
            at = end;
        }
    }
    if samples.len() < n {
        return Err(stsc.owner.malformed(format!("its runs over {} chunks place {} of the {n} samples", chunks.len(), samples.len())));
    }
    Ok(samples)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds MP4 boxes for hostile inputs: `(type, body)` → bytes.
    pub(crate) fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    /// A full box with version 0: flags 0, then `fields` as big-endian `u32`s.
    fn table(kind: &[u8; 4], fields: &[u32]) -> Vec<u8> {
        let mut body = vec![0u8; 4];
        for field in fields {
            body.extend_from_slice(&field.to_be_bytes());
        }
        mp4_box(kind, &body)
    }

    /// A one-track H.264 `moov` whose `stbl` holds `tables` after an `avc1` description.
    fn moov_with(tables: &[Vec<u8>]) -> Vec<u8> {
        let mut entry = vec![0u8; 78];
        entry[24..28].copy_from_slice(&[0, 64, 0, 48]);
        entry.extend(mp4_box(b"avcC", &[1, 0x64, 0, 0x0d, 0xff, 0xe0, 0]));
        let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd.extend(mp4_box(b"avc1", &entry));
        let mut stbl = mp4_box(b"stsd", &stsd);
        for t in tables {
            stbl.extend_from_slice(t);
        }
        let mdhd = table(b"mdhd", &[0, 0, 90_000, 0, 0]);
        let minf = mp4_box(b"minf", &mp4_box(b"stbl", &stbl));
        let mdia = mp4_box(b"mdia", &[mdhd, minf].concat());
        mp4_box(b"moov", &mp4_box(b"trak", &mdia))
    }

    fn file_with(tables: &[Vec<u8>], media: usize) -> Vec<u8> {
        let mut file = moov_with(tables);
        file.extend(mp4_box(b"mdat", &vec![0xaa; media]));
        file
    }

    fn malformed(error: &Mp4Error) -> (&[u8; 4], u64, &str) {
        match error {
            Mp4Error::Malformed { box_type, offset, reason } | Mp4Error::OverBudget { box_type, offset, reason } => (box_type, *offset, reason),
            other => panic!("not a box error: {other}"),
        }
    }

    /// Byte offset of the first `kind` box header in `file` (test helper: a byte search).
    fn offset_of(file: &[u8], kind: &[u8; 4]) -> u64 {
        file.windows(4).position(|w| w == kind).expect("box present") as u64 - 4
    }

    /// The 305-byte file of issue 28: one `ctts` entry `ffffffff 00000000` (one sample), which
    /// the old reader looped over 2^32 times (3.9 s in release).
    pub(crate) const CTTS_HANG: &str = "000001316d6f6f76000001297472616b000001216d646961000000206d64686400000000000000000000000000015f900000000000000000000000f96d696e66000000f17374626c0000007573747364000000000000000100000065617663310000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000f617663430164000dffe000000000147374737a000000000000000100000001000000147374636f0000000000000001000000000000001c73747363000000000000000100000001000000010000000100000018737474730000000000000001000000010000000100000018637474730000000000000001ffffffff00000000";

    pub(crate) fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
    }

    /// Tables for `n` samples of `size` bytes in one chunk at `offset`, 3000 ticks apart.
    fn plain(n: u32, size: u32, offset: u32) -> Vec<Vec<u8>> {
        vec![
            table(b"stsz", &[size, n]),
            table(b"stco", &[1, offset]),
            table(b"stsc", &[1, 1, n, 1]),
            table(b"stts", &[1, n, 3000]),
        ]
    }

    #[test]
    fn a_consistent_file_reads_back() {
        let moov_len = moov_with(&plain(4, 10, 0)).len() as u32;
        let file = file_with(&plain(4, 10, moov_len + 8), 40);
        let tracks = read_file(&file).unwrap();
        assert_eq!(tracks.len(), 1);
        let samples = &tracks[0].samples;
        assert_eq!(samples.iter().map(|s| (s.dts, s.offset)).collect::<Vec<_>>(), (0..4).map(|i| (i * 3000, (moov_len + 8) as u64 + i as u64 * 10)).collect::<Vec<_>>());
        assert!(samples.iter().all(|s| s.key && s.size == 10 && s.cts == 0));
        assert_eq!((tracks[0].track.width, tracks[0].track.height), (64, 48));
    }

    #[test]
    fn ctts_count_of_four_billion_is_refused_at_once() {
        let file = hex(CTTS_HANG);
        assert_eq!(file.len(), 305);
        let error = read_file(&file).unwrap_err();
        assert_eq!(malformed(&error), (b"ctts", 281, "its 1 entries cover 4294967295 samples; `stsz` has 1"));
        assert_eq!(error.to_string(), "malformed MP4: `ctts` box at byte 281: its 1 entries cover 4294967295 samples; `stsz` has 1");
        // The same moov alone: offsets from the moov (here the same).
        assert_eq!(malformed(&read_moov(&file).unwrap_err()).1, 281);
        // Forty such entries (the old reader: over 30 s).
        let mut fields = vec![40];
        for _ in 0..40 {
            fields.extend([u32::MAX, 0]);
        }
        let mut tables = plain(1, 1, 0);
        tables.push(table(b"ctts", &fields));
        let error = read_file(&file_with(&tables, 1)).unwrap_err();
        assert_eq!(malformed(&error).0, b"ctts");
    }

    #[test]
    fn stts_count_of_four_billion_is_refused_at_once() {
        // One entry: 60 ms in the old reader; 40 entries 2.4 s; a delta of 2^32 - 1 overflowed.
        for (entries, delta) in [(1u32, 1u32), (40, 1), (1, u32::MAX), (40, u32::MAX)] {
            let mut tables = plain(1, 1, 0);
            let mut fields = vec![entries];
            for _ in 0..entries {
                fields.extend([u32::MAX, delta]);
            }
            tables[3] = table(b"stts", &fields);
            let file = file_with(&tables, 1);
            let error = read_file(&file).unwrap_err();
            let (kind, offset, reason) = malformed(&error);
            assert_eq!((kind, offset), (b"stts", offset_of(&file, b"stts")), "{error}");
            assert!(reason.contains("beyond 2^52") || reason.contains("cover"), "{error}");
        }
        // Counts that add up but times that do not fit.
        let n = 2_000_000u32;
        let mut tables = plain(n, 1, 0);
        tables[3] = table(b"stts", &[1, n, u32::MAX]);
        let file = file_with(&tables, n as usize * 8);
        let error = read_file(&file).unwrap_err();
        assert_eq!(malformed(&error).2, "decode times reach 8589934590000000 ticks, beyond 2^52");
    }

    #[test]
    fn co64_offsets_that_overflow_are_refused() {
        // Two 16-byte samples in a chunk at 2^64 - 1: the old reader wrapped silently.
        let tables = vec![
            table(b"stsz", &[16, 2]),
            table(b"co64", &[1, u32::MAX, u32::MAX]),
            table(b"stsc", &[1, 1, 2, 1]),
            table(b"stts", &[1, 2, 3000]),
        ];
        let file = file_with(&tables, 32);
        let error = read_file(&file).unwrap_err();
        let (kind, offset, reason) = malformed(&error);
        assert_eq!((kind, offset), (b"co64", offset_of(&file, b"co64")));
        assert!(reason.starts_with("sample 1 (16 bytes at byte 18446744073709551615, chunk 1) lies outside the file"), "{reason}");
        // Without the file, the sum itself is still checked.
        let error = read_moov(&file).unwrap_err();
        assert_eq!(malformed(&error).0, b"co64");
    }

    #[test]
    fn uniform_sizes_for_ten_million_samples_in_281_bytes_are_refused() {
        // Issue 28: `stsz` uniform size, 10,000,000 samples, one `stco` chunk, `stsc` 10 M
        // samples per chunk: 520 MB resident in the old reader.
        let n = 10_000_000;
        let tables = vec![table(b"stsz", &[1, n]), table(b"stco", &[1, 0]), table(b"stsc", &[1, 1, n, 1]), table(b"stts", &[1, n, 1])];
        let file = moov_with(&tables);
        assert_eq!(file.len(), 281);
        let error = read_file(&file).unwrap_err();
        assert_eq!(malformed(&error), (b"stsz", offset_of(&file, b"stsz"), "10000000 samples of 10000000 bytes in all cannot fit in a file of 281 bytes"));
        // Without the file at hand the budget still holds.
        assert!(matches!(read_moov(&file).unwrap_err(), Mp4Error::OverBudget { box_type, .. } if &box_type == b"stsz"));
        // Sizes that fit but more samples than the file's budget (one per 8 bytes).
        let tables = plain(1000, 1, 0);
        let file = file_with(&tables, 1000);
        assert!(file.len() < 8000);
        let error = read_file(&file).unwrap_err();
        assert!(matches!(&error, Mp4Error::OverBudget { box_type, .. } if box_type == b"stsz"), "{error}");
        assert!(error.to_string().contains("one sample per 8 bytes"), "{error}");
    }

    #[test]
    fn the_budget_is_shared_by_all_tracks() {
        let one = moov_with(&plain(100, 1, 0));
        // Two tracks of 100 samples each in a file with room for fewer than 200 (one per 8 bytes).
        let trak = &one[8..];
        let mut moov = mp4_box(b"moov", &[trak, trak].concat());
        moov.extend(mp4_box(b"free", &vec![0; 700]));
        let len = moov.len() as u64;
        assert!((100 * 8..200 * 8).contains(&len));
        let error = read_file(&moov).unwrap_err();
        assert!(matches!(&error, Mp4Error::OverBudget { .. }), "{error}");
    }

    #[test]
    fn tables_that_place_too_few_samples_are_refused() {
        // stsc says one sample per chunk, but there is one chunk for three samples.
        let mut tables = plain(3, 4, 0);
        tables[2] = table(b"stsc", &[1, 1, 1, 1]);
        let file = file_with(&tables, 12);
        let error = read_file(&file).unwrap_err();
        let (kind, _, reason) = malformed(&error);
        assert_eq!((kind, reason), (b"stsc", "its runs over 1 chunks place 1 of the 3 samples"));
        // stsc runs out of order.
        tables[2] = table(b"stsc", &[2, 2, 1, 1, 1, 3, 1]);
        assert!(malformed(&read_file(&file_with(&tables, 12)).unwrap_err()).2.contains("must start at chunk 1"));
        // stss naming a sample that does not exist.
        let mut tables = plain(3, 4, 0);
        tables.push(table(b"stss", &[1, 4]));
        assert_eq!(malformed(&read_file(&file_with(&tables, 12)).unwrap_err()).0, b"stss");
        // stts covering fewer samples than stsz.
        let mut tables = plain(3, 4, 0);
        tables[3] = table(b"stts", &[1, 2, 3000]);
        assert_eq!(malformed(&read_file(&file_with(&tables, 12)).unwrap_err()).2, "its 1 entries cover 2 samples; `stsz` has 3");
    }

    #[test]
    fn many_chunks_and_runs_are_read_in_one_pass() {
        // 50,000 chunks of one sample with 50,000 stsc runs: the old lookup was chunks x runs.
        let n = 50_000u32;
        let sizes: Vec<u32> = [0, n].into_iter().chain((0..n).map(|_| 2)).collect();
        let mut offsets = vec![n];
        let mut runs = vec![n];
        for c in 0..n {
            offsets.push(c * 2);
            runs.extend([c + 1, 1, 1]);
        }
        let tables = vec![table(b"stsz", &sizes), table(b"stco", &offsets), table(b"stsc", &runs), table(b"stts", &[1, n, 1])];
        let file = moov_with(&tables);
        let samples = &read_file(&file).unwrap()[0].samples;
        assert_eq!(samples.len(), n as usize);
        assert_eq!(samples[49_999].offset, 99_998);
        assert_eq!(samples[49_999].dts, 49_999);
    }
}
