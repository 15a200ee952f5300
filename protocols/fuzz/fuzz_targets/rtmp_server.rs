//! Fuzz target `rtmp_server`: see `estuary_protocols::fuzzing::rtmp_server` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::rtmp_server(data));
