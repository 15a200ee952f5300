//! Fuzz target `ts_demux`: see `estuary_protocols::fuzzing::ts_demux` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::ts_demux(data));
