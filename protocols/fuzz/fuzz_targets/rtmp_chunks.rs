//! Fuzz target `rtmp_chunks`: see `estuary_protocols::fuzzing::rtmp_chunks` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::rtmp_chunks(data));
