//! Box headers and box walking (ISO/IEC 14496-12 §4.2) for the readers, with the absolute
//! byte offset of every box kept so that an error can say where it is.
//!
//! A box is `size:u32 type:[u8; 4]`, then `largesize:u64` when `size` is 1; `size` 0 means
//! "to the end of the enclosing box or file". Sizes count the header. Nothing here allocates:
//! children are walked lazily, a table is a checked view of a box's bytes.

use std::fmt;

/// Largest box size believed: 2^62 bytes. A larger 64-bit size is refused so that a caller
/// adding it to any real file offset cannot overflow a `u64`.
pub const MAX_BOX_LEN: u64 = 1 << 62;

/// Why MP4 bytes cannot be read. Errors about a box name its type and the byte offset of its
/// header (from the start of the file for [`read_file`](super::read_file) and
/// [`fragment_samples`](super::fragment_samples); from the start of the `moov` for
/// [`read_moov`](super::read_moov)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mp4Error {
    /// A box is cut short, or its numbers do not add up.
    #[error("malformed MP4: `{}` box at byte {offset}: {reason}", FourCc(*box_type))]
    Malformed {
        /// The box's type.
        box_type: [u8; 4],
        /// Where its header starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The file describes more than the reader's budget allows (see [`super::MAX_SAMPLES`]).
    #[error("MP4 over the reader's budget: `{}` box at byte {offset}: {reason}", FourCc(*box_type))]
    OverBudget {
        /// The box's type.
        box_type: [u8; 4],
        /// Where its header starts.
        offset: u64,
        /// What exceeds the budget.
        reason: String,
    },
    /// A valid box using a feature this reader does not read.
    #[error("unsupported MP4: `{}` box at byte {offset}: {reason}", FourCc(*box_type))]
    Unsupported {
        /// The box's type.
        box_type: [u8; 4],
        /// Where its header starts.
        offset: u64,
        /// The feature.
        reason: String,
    },
    /// No top-level `moov` box.
    #[error("MP4 without moov (not a finished file)")]
    NoMoov,
    /// No track Estuary can carry (H.264, H.265, AAC).
    #[error("no H.264, H.265 or AAC track")]
    NoTracks,
    /// Fragmented files are not read here.
    #[error("fragmented MP4 (moof) is not supported as a source")]
    Fragmented,
}

/// A box type for messages: printable ASCII as is, anything else as `\xNN`.
pub(crate) struct FourCc(pub [u8; 4]);

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// A parsed box header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: [u8; 4],
    /// 8, or 16 with a 64-bit size.
    pub header_len: usize,
    /// Total size, header included; `None` for "to the end".
    pub size: Option<u64>,
}

/// Reads the header at the start of `data` (at least 8 bytes are expected; fewer is an error
/// too). The error text says what is wrong with it.
pub(crate) fn parse_header(data: &[u8]) -> Result<Header, String> {
    let (Some(size), Some(kind)) = (data.get(0..4), data.get(4..8)) else {
        return Err(format!("{} bytes left, a box header needs 8", data.len()));
    };
    let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as u64;
    let kind = [kind[0], kind[1], kind[2], kind[3]];
    match size {
        0 => Ok(Header { kind, header_len: 8, size: None }),
        1 => {
            let Some(large) = data.get(8..16) else {
                return Err("64-bit size cut short".into());
            };
            let large = u64::from_be_bytes([large[0], large[1], large[2], large[3], large[4], large[5], large[6], large[7]]);
            if large < 16 {
                Err(format!("64-bit size {large} is smaller than its 16-byte header"))
            } else if large > MAX_BOX_LEN {
                Err(format!("64-bit size {large} is beyond 2^62 bytes"))
            } else {
                Ok(Header { kind, header_len: 16, size: Some(large) })
            }
        }
        2..=7 => Err(format!("size {size} is smaller than its 8-byte header")),
        _ => Ok(Header { kind, header_len: 8, size: Some(size) }),
    }
}

/// A box header at the start of `data`: (type, header length, total length). `None` when
/// fewer bytes than a header are given or the size is impossible (smaller than the header,
/// or a 64-bit size beyond [`MAX_BOX_LEN`]); a size of 0 ("to the end of the file") is
/// reported as `u64::MAX`.
pub fn box_header(data: &[u8]) -> Option<([u8; 4], u64, u64)> {
    let header = parse_header(data).ok()?;
    Some((header.kind, header.header_len as u64, header.size.unwrap_or(u64::MAX)))
}

/// One box found in some bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mp4Box<'a> {
    pub kind: [u8; 4],
    /// Absolute offset of the header (saturating: only used in messages).
    pub offset: u64,
    pub header_len: usize,
    /// Everything after the header, up to the box's end.
    pub body: &'a [u8],
}

impl<'a> Mp4Box<'a> {
    /// Absolute offset of the body.
    pub fn body_offset(&self) -> u64 {
        self.offset.saturating_add(self.header_len as u64)
    }

    pub fn malformed(&self, reason: impl Into<String>) -> Mp4Error {
        Mp4Error::Malformed { box_type: self.kind, offset: self.offset, reason: reason.into() }
    }

    pub fn over_budget(&self, reason: impl Into<String>) -> Mp4Error {
        Mp4Error::OverBudget { box_type: self.kind, offset: self.offset, reason: reason.into() }
    }

    pub fn unsupported(&self, reason: impl Into<String>) -> Mp4Error {
        Mp4Error::Unsupported { box_type: self.kind, offset: self.offset, reason: reason.into() }
    }

    /// The boxes in the body, from byte `skip` of it (past a full box's fields or a sample
    /// entry's fixed part).
    pub fn children_from(&self, skip: usize) -> Children<'a> {
        let skip = skip.min(self.body.len());
        Children::new(&self.body[skip..], self.body_offset().saturating_add(skip as u64), Some(*self))
    }

    /// The boxes in the body.
    pub fn children(&self) -> Children<'a> {
        self.children_from(0)
    }

    /// The first child of `kind`; an error when a child before it is broken.
    pub fn child(&self, kind: &[u8; 4]) -> Result<Option<Mp4Box<'a>>, Mp4Error> {
        for found in self.children() {
            let found = found?;
            if &found.kind == kind {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The first child of `kind`; an error naming this box when there is none.
    pub fn require(&self, kind: &[u8; 4]) -> Result<Mp4Box<'a>, Mp4Error> {
        self.child(kind)?.ok_or_else(|| self.malformed(format!("no `{}` box in it", FourCc(*kind))))
    }

    /// The big-endian `u32` at byte `at` of the body.
    pub fn u32_at(&self, at: usize) -> Result<u32, Mp4Error> {
        self.body
            .get(at..at.saturating_add(4))
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| self.malformed(format!("cut short: {} bytes, a field at byte {at} of it needs 4", self.body.len())))
    }

    /// The big-endian `u64` at byte `at` of the body.
    pub fn u64_at(&self, at: usize) -> Result<u64, Mp4Error> {
        Ok((self.u32_at(at)? as u64) << 32 | self.u32_at(at.saturating_add(4))? as u64)
    }

    /// A full box's table: version and flags, `entry_count:u32`, then the entries
    /// (`entry_len` bytes each); the count is checked against the bytes present.
    pub fn table(&self, entry_len: usize) -> Result<Table<'a>, Mp4Error> {
        self.table_after(8, entry_len)
    }

    /// A table whose `entry_count:u32` ends at byte `entries_at` of the body.
    pub fn table_after(&self, entries_at: usize, entry_len: usize) -> Result<Table<'a>, Mp4Error> {
        let count = self.u32_at(entries_at - 4)? as usize;
        self.entries(entries_at, count, entry_len)
    }

    /// `count` entries of `entry_len` bytes from byte `entries_at` of the body.
    pub fn entries(&self, entries_at: usize, count: usize, entry_len: usize) -> Result<Table<'a>, Mp4Error> {
        let have = self.body.len().saturating_sub(entries_at);
        // `get` and not slicing: with zero entries `need` is 0 even when the table would
        // start past the end of a short body.
        let entries = count.checked_mul(entry_len).and_then(|need| self.body.get(entries_at..)?.get(..need));
        match entries {
            Some(entries) => Ok(Table { owner: *self, entries, entry_len }),
            None => Err(self.malformed(format!("claims {count} entries of {entry_len} bytes; it holds {have} bytes of entries"))),
        }
    }
}

/// The entries of a table box, already checked to be present.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table<'a> {
    pub owner: Mp4Box<'a>,
    entries: &'a [u8],
    entry_len: usize,
}

impl<'a> Table<'a> {
    pub fn len(&self) -> usize {
        self.entries.len() / self.entry_len
    }

    /// Field `field` (a byte offset in the entry) of entry `i`, as `u32`. Out of range reads
    /// give 0; callers stay within [`Table::len`] and the entry.
    pub fn u32(&self, i: usize, field: usize) -> u32 {
        let at = i * self.entry_len + field;
        self.entries.get(at..at + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Like [`Table::u32`], for a 64-bit field.
    pub fn u64(&self, i: usize, field: usize) -> u64 {
        (self.u32(i, field) as u64) << 32 | self.u32(i, field + 4) as u64
    }
}

/// The boxes in some bytes, one after the other; trailing bytes too few for a header are
/// ignored (as players do). After an error the walk ends.
pub(crate) struct Children<'a> {
    data: &'a [u8],
    base: u64,
    at: usize,
    parent: Option<Mp4Box<'a>>,
    done: bool,
}

impl<'a> Children<'a> {
    /// Walks `data`, which starts at absolute offset `base`, inside `parent` (`None`: the file).
    pub fn new(data: &'a [u8], base: u64, parent: Option<Mp4Box<'a>>) -> Children<'a> {
        Children { data, base, at: 0, parent, done: false }
    }

    fn error(&self, offset: u64, kind: [u8; 4], reason: String) -> Mp4Error {
        let within = match &self.parent {
            Some(parent) => format!("in `{}` at byte {}", FourCc(parent.kind), parent.offset),
            None => "in the file".to_string(),
        };
        Mp4Error::Malformed { box_type: kind, offset, reason: format!("{reason} ({within})") }
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<Mp4Box<'a>, Mp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.at..).unwrap_or_default();
        if self.done || rest.len() < 8 {
            return None;
        }
        let offset = self.base.saturating_add(self.at as u64);
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let header = match parse_header(rest) {
            Ok(header) => header,
            Err(reason) => {
                self.done = true;
                return Some(Err(self.error(offset, kind, reason)));
            }
        };
        let len = match header.size {
            None => rest.len(),
            Some(size) if size <= rest.len() as u64 => size as usize,
            Some(size) => {
                self.done = true;
                let reason = format!("{size} bytes long, only {} bytes left", rest.len());
                return Some(Err(self.error(offset, kind, reason)));
            }
        };
        if len < header.header_len {
            // Only a 64-bit header in fewer than 16 bytes could get here; parse_header refuses it.
            self.done = true;
            return Some(Err(self.error(offset, kind, "shorter than its header".into())));
        }
        self.at += len;
        Some(Ok(Mp4Box { kind, offset, header_len: header.header_len, body: &rest[header.header_len..len] }))
    }
}

/// The first top-level box of `kind` in a whole file's bytes (header included); an error
/// when a box before it, or it, is broken or runs past the end.
pub fn top_level_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, Mp4Error> {
    Ok(find_top_level(data, kind)?.map(|found| {
        let start = found.offset as usize;
        &data[start..start + found.header_len + found.body.len()]
    }))
}

/// Like [`top_level_box`], as a box with its offset.
pub(crate) fn find_top_level<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<Option<Mp4Box<'a>>, Mp4Error> {
    for found in Children::new(data, 0, None) {
        let found = found?;
        if &found.kind == kind {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_header_rejects_impossible_sizes() {
        assert_eq!(box_header(&[0, 0, 0, 8, b'f', b'r', b'e', b'e']), Some((*b"free", 8, 8)));
        assert!(box_header(&[0, 0, 0, 7, b'f', b'r', b'e', b'e']).is_none());
        assert!(box_header(&[0, 0, 0, 1, b'm', b'd', b'a', b't', 0, 0, 0, 0, 0, 0, 0, 8]).is_none());
        assert_eq!(box_header(&[0, 0, 0, 0, b'm', b'd', b'a', b't']).map(|b| b.2), Some(u64::MAX));
        assert!(box_header(&[0, 0, 0]).is_none());
        // A 64-bit size a caller could not add to an offset safely.
        let mut huge = vec![0, 0, 0, 1, b'm', b'd', b'a', b't'];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(box_header(&huge).is_none());
        huge[8..16].copy_from_slice(&MAX_BOX_LEN.to_be_bytes());
        assert_eq!(box_header(&huge).map(|b| b.2), Some(MAX_BOX_LEN));
    }

    #[test]
    fn errors_name_the_box_and_where_it_is() {
        // `free` (8 bytes), then a `moov` that claims 100 bytes with 12 present.
        let mut file = vec![0, 0, 0, 8, b'f', b'r', b'e', b'e', 0, 0, 0, 100, b'm', b'o', b'o', b'v'];
        file.extend_from_slice(&[0; 4]);
        let error = top_level_box(&file, b"moov").unwrap_err();
        assert_eq!(error, Mp4Error::Malformed { box_type: *b"moov", offset: 8, reason: "100 bytes long, only 12 bytes left (in the file)".into() });
        assert_eq!(error.to_string(), "malformed MP4: `moov` box at byte 8: 100 bytes long, only 12 bytes left (in the file)");
        // Binary box types are escaped in messages.
        let error = top_level_box(&[0, 0, 0, 3, 0, b'a', 0xff, b' '], b"moov").unwrap_err();
        assert!(error.to_string().starts_with("malformed MP4: `\\x00a\\xff ` box at byte 0: size 3"), "{error}");
    }

    #[test]
    fn tables_hold_what_they_claim() {
        // stco-like body: version/flags, count 3, two entries present.
        let body = [0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2];
        let owner = Mp4Box { kind: *b"stco", offset: 40, header_len: 8, body: &body };
        let error = owner.table(4).unwrap_err();
        assert_eq!(error.to_string(), "malformed MP4: `stco` box at byte 40: claims 3 entries of 4 bytes; it holds 8 bytes of entries");
        let huge = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        let owner = Mp4Box { kind: *b"co64", offset: 0, header_len: 8, body: &huge };
        assert!(owner.table(8).is_err());
    }
}
