//! Fuzz target `manscdp`: see `estuary_protocols::fuzzing::manscdp` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::manscdp(data));
