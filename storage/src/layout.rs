//! A download body laid out as memory plus slices of recording files, so a time range of
//! recordings is served as one MP4 without assembling it: [`parts`] maps any byte range of
//! the body to the memory and file slices that hold it (adjacent slices of one file merged).

use bytes::Bytes;
use estuary_protocols::container::mp4::Piece;
use std::path::PathBuf;

/// A response body described as memory plus file slices.
pub struct Layout {
    /// Bytes sent first, from memory (the MP4 header).
    pub header: Bytes,
    /// File slices after the header.
    pub pieces: Vec<Piece>,
    /// Start of each piece in the whole body.
    starts: Vec<u64>,
    /// The files pieces name by index.
    pub files: Vec<PathBuf>,
    /// Body length.
    pub len: u64,
}

impl Layout {
    /// The layout of `header` then `pieces` of `files`.
    pub fn new(header: Bytes, pieces: Vec<Piece>, files: Vec<PathBuf>) -> Layout {
        let mut starts = Vec::with_capacity(pieces.len());
        let mut at = header.len() as u64;
        for piece in &pieces {
            starts.push(at);
            at += piece.len as u64;
        }
        Layout { header, pieces, starts, files, len: at }
    }
}

/// A contiguous part of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Bytes held in memory.
    Memory(Bytes),
    /// `len` bytes at `offset` of file number `source`.
    File {
        /// Index into [`Layout::files`].
        source: u32,
        /// Byte offset in the file.
        offset: u64,
        /// Byte count.
        len: u64,
    },
}

/// The parts covering `[from, to)` of the body, with adjacent slices of one file merged.
pub fn parts(layout: &Layout, from: u64, to: u64) -> Vec<Part> {
    let mut out = Vec::new();
    let header_len = layout.header.len() as u64;
    if from < header_len {
        out.push(Part::Memory(layout.header.slice(from as usize..to.min(header_len) as usize)));
    }
    let first = layout.starts.partition_point(|&s| s <= from).saturating_sub(1);
    for (piece, &start) in layout.pieces.iter().zip(&layout.starts).skip(first) {
        if start >= to {
            break;
        }
        let end = start + piece.len as u64;
        if end <= from {
            continue;
        }
        let a = from.max(start) - start;
        let b = to.min(end) - start;
        let (offset, len) = (piece.offset + a, b - a);
        match out.last_mut() {
            Some(Part::File { source, offset: o, len: l }) if *source == piece.source && *o + *l == offset => *l += len,
            _ => out.push(Part::File { source: piece.source, offset, len }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        let pieces = vec![
            Piece { source: 0, offset: 100, len: 10 },
            Piece { source: 0, offset: 110, len: 5 },
            Piece { source: 1, offset: 0, len: 20 },
            Piece { source: 0, offset: 200, len: 10 },
        ];
        Layout::new(Bytes::from_static(b"HEADER"), pieces, vec![PathBuf::from("a"), PathBuf::from("b")])
    }

    fn describe(parts: &[Part]) -> Vec<String> {
        parts
            .iter()
            .map(|p| match p {
                Part::Memory(b) => format!("mem {}", String::from_utf8_lossy(b)),
                Part::File { source, offset, len } => format!("{source}@{offset}+{len}"),
            })
            .collect()
    }

    #[test]
    fn ranges_map_to_exact_file_slices() {
        let l = layout();
        assert_eq!(l.len, 6 + 45);
        assert_eq!(describe(&parts(&l, 0, l.len)), vec!["mem HEADER", "0@100+15", "1@0+20", "0@200+10"]);
        assert_eq!(describe(&parts(&l, 3, 8)), vec!["mem DER", "0@100+2"]);
        assert_eq!(describe(&parts(&l, 20, 22)), vec!["0@114+1", "1@0+1"]);
        assert_eq!(describe(&parts(&l, 50, 51)), vec!["0@209+1"]);
        assert!(parts(&l, 51, 51).is_empty());
    }
}
