//! Fuzz target `rtmp_client`: see `estuary_protocols::fuzzing::rtmp_client` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::rtmp_client(data));
