//! Codec headers: what the node must read of each codec's configuration and bitstream to
//! describe a stream and convert between its carriages.

pub mod aac;
pub mod av1;
pub mod avc;
pub mod cea608;
pub mod hevc;
pub mod opus;
