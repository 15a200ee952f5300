//! The MP4 readers, both ways the node calls them: as file ingest does (`read_file`: the
//! top-level `moov`, its tables checked against the file) and as DVR repair does (walk the
//! top-level boxes with `box_header`, read each `moof` with `fragment_samples`).
//!
//! Besides "no panic", each input checks the readers' promises: samples lie inside the file
//! and within the sample budget, times stay below `MAX_TICKS`, and the heap the readers hold
//! at once stays within `heap_budget(input length)` (a counting allocator measures it).
//! Seeds: `protocols/fuzz/seeds/mp4` (replayed on stable by `mp4::tests::fuzz_corpus_replays`).
#![no_main]
use estuary_protocols::container::mp4::heap_budget;
use estuary_protocols::fuzzing;
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

fn measured(data: &[u8], read: fn(&[u8]) -> usize) {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    read(data);
    let peak = PEAK.load(Relaxed).saturating_sub(before);
    assert!(peak <= heap_budget(data.len()), "{peak} bytes of heap for {} bytes of input (budget {})", data.len(), heap_budget(data.len()));
}

fuzz_target!(|data: &[u8]| {
    measured(data, fuzzing::mp4_ingest);
    measured(data, fuzzing::mp4_repair);
});
