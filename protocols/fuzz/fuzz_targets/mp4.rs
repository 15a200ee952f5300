//! The MP4 readers, both ways the node calls them: as file ingest does (`read_file`: the
//! top-level `moov`, its tables checked against the file) and as DVR repair does (walk the
//! top-level boxes with `box_header`, read each `moof` with `fragment_samples`).
//!
//! Besides "no panic", each input checks the readers' promises: samples lie inside the file
//! and within the sample budget, times stay below `MAX_TICKS`, and the heap the readers hold
//! at once stays within `heap_budget(input length)` (a counting allocator measures it).
//! Seeds: `protocols/fuzz/seeds/mp4` (replayed on stable by `mp4::tests::fuzz_corpus_replays`).
#![no_main]
use estuary_protocols::container::mp4::{box_header, fragment_samples, heap_budget, read_file, FILE_BYTES_PER_SAMPLE, MAX_TICKS};
use libfuzzer_sys::fuzz_target;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting live bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded to `System` with the caller's arguments unchanged; the
// counters do not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            // Counted as the old block and the new one both alive, as during a copy.
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn as_ingest(data: &[u8]) {
    let Ok(tracks) = read_file(data) else { return };
    let samples: usize = tracks.iter().map(|t| t.samples.len()).sum();
    assert!(samples as u64 <= data.len() as u64 / FILE_BYTES_PER_SAMPLE, "{samples} samples from {} bytes", data.len());
    for s in tracks.iter().flat_map(|t| &t.samples) {
        let end = s.offset.checked_add(s.size as u64).expect("sample end overflows");
        assert!(end <= data.len() as u64, "sample outside the file");
        assert!((0..MAX_TICKS).contains(&s.dts), "dts {}", s.dts);
    }
}

fn as_repair(data: &[u8]) {
    let len = data.len() as u64;
    let mut at = 0u64;
    while at + 8 <= len {
        let Some((kind, _, size)) = box_header(&data[at as usize..]) else { break };
        // As repair does: size 0 ("to the end", reported as u64::MAX) ends the walk; any other
        // size is at most 2^62, so adding it to an offset in the file cannot overflow.
        if size == u64::MAX {
            break;
        }
        let end = at.checked_add(size).expect("box end overflows");
        if end > len {
            break;
        }
        if &kind == b"moof" {
            if let Ok(fragments) = fragment_samples(&data[at as usize..end as usize], at, 0) {
                for s in fragments.iter().flat_map(|(_, s)| s) {
                    assert!(s.offset >= end, "sample data inside or before its moof");
                    assert!(s.offset.checked_add(s.size as u64).is_some(), "sample end overflows");
                    assert!((0..MAX_TICKS).contains(&s.dts), "dts {}", s.dts);
                }
            }
        }
        at = end;
    }
}

fn measured(data: &[u8], read: fn(&[u8])) {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    read(data);
    let peak = PEAK.load(Relaxed).saturating_sub(before);
    assert!(peak <= heap_budget(data.len()), "{peak} bytes of heap for {} bytes of input (budget {})", data.len(), heap_budget(data.len()));
}

fuzz_target!(|data: &[u8]| {
    measured(data, as_ingest);
    measured(data, as_repair);
});
