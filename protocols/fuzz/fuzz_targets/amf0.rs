//! AMF0 decoding, and re-encoding of whatever decoded must decode to the same values.
#![no_main]
use estuary_protocols::amf0::{decode_all, encode_all};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(values) = decode_all(data) {
        let again = decode_all(&encode_all(&values)).expect("re-encoded AMF0 must decode");
        // NaN never equals itself; compare the encodings instead.
        assert_eq!(encode_all(&again), encode_all(&values));
    }
});
