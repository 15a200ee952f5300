//! Fuzz target `amf0`: see `estuary_protocols::fuzzing::amf0_values` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::amf0_values(data));
