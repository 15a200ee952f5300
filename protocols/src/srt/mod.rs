//! SRT: what the node reads itself before the SRT library takes a datagram (handshake
//! extension blocks) and the stream id in SRS's conventions.

pub mod handshake;
pub mod streamid;
