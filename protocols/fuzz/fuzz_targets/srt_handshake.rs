//! Fuzz target `srt_handshake`: see `estuary_protocols::fuzzing::srt_handshake` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::srt_handshake(data));
