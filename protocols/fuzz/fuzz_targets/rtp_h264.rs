//! Fuzz target `rtp_h264`: see `estuary_protocols::fuzzing::rtp_h264` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::rtp_h264(data));
