//! The chunk decoder alone, with the peer's chunk size taken from the first byte.
#![no_main]
use estuary_protocols::rtmp::chunk::ChunkDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&size, rest)) = data.split_first() else { return };
    let mut decoder = ChunkDecoder::new(1 << 16);
    let _ = decoder.set_chunk_size(size as u64 * 16 + 1);
    decoder.push(rest);
    while let Ok(Some(_)) = decoder.next_message() {}
});
