//! Fuzz target `http_range`: see `estuary_protocols::fuzzing::http_range` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::http_range(data));
