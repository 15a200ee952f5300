//! H.264 and AAC header parsing.
#![no_main]
use estuary_protocols::codec::aac::{AacConfig, AdtsHeader};
use estuary_protocols::codec::avc::{annexb_nals, length_prefixed_nals, AvcConfig, SpsInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = AvcConfig::parse(data) {
        let _ = config.sps_info();
        let _ = AvcConfig::parse(&config.to_bytes()).expect("a serialised record parses");
    }
    let _ = SpsInfo::parse(data);
    let _ = AacConfig::parse(data);
    let _ = AdtsHeader::parse(data);
    let _ = annexb_nals(data).len();
    let _ = length_prefixed_nals(data, 4).count();
});
