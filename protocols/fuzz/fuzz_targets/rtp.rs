//! Fuzz target `rtp`: see `estuary_protocols::fuzzing::rtp` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::rtp(data));
