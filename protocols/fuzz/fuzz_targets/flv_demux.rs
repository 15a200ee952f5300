//! Fuzz target `flv_demux`: see `estuary_protocols::fuzzing::flv_demux` for what it feeds and checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| estuary_protocols::fuzzing::flv_demux(data));
