//! Fuzz target `srt_streamid`: see `estuary_protocols::fuzzing::srt_streamid` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::srt_streamid(data));
