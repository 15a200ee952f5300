//! Fuzz target `codec_headers`: see `estuary_protocols::fuzzing::codec_headers` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::codec_headers(data));
