//! The RTMP server session from the first byte: handshake (rml_rtmp, behind catch_unwind),
//! then chunks and commands. Any input must give Ok or Err, never a panic. The input is also
//! fed a second time after a well-formed handshake, so the chunk layer is reached quickly.
#![no_main]
use estuary_protocols::rtmp::server::{ServerConfig, ServerSession};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut session = ServerSession::new(ServerConfig::default());
    let _ = session.handle_input(data);
    while session.poll_output().is_some() {}

    let mut session = ServerSession::new(ServerConfig { max_message_size: 1 << 16, ..ServerConfig::default() });
    let mut handshake = vec![3u8];
    handshake.extend(std::iter::repeat(0u8).take(1536 * 2));
    if session.handle_input(&handshake).is_ok() {
        for piece in data.chunks(97) {
            if session.handle_input(piece).is_err() {
                break;
            }
        }
    }
    while session.poll_output().is_some() {}
});
