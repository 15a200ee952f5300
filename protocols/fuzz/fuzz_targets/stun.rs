//! Fuzz target `stun`: see `estuary_protocols::fuzzing::stun` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::stun(data));
