//! Fuzz target `sip`: see `estuary_protocols::fuzzing::sip_platform` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::sip_platform(data));
