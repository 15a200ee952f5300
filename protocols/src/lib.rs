//! Estuary's protocol layer: the media model every actor exchanges and every wire format the
//! node speaks, written as **sans-IO** code. Nothing in this crate touches a socket, a file, a
//! clock or an async runtime: bytes and the current time go in, events and bytes come out.
//!
//! | module | what it holds |
//! |---|---|
//! | [`media`] | `MediaFrame`, codecs, timebases, the timestamp normaliser used at ingest |
//! | [`clock`] | UTC calendar fields and RFC 3339, without a clock |
//! | [`bits`] | a bit reader with exp-Golomb codes for codec headers |
//! | [`naming`] | the one stream-name rule every protocol's names pass before they reach a path, a map or a log |
//! | [`codec`] | H.264 (`avc`), H.265 (`hevc`) and AAC (`aac`) configuration records and bitstream helpers |
//! | [`container`] | FLV (`flv`), MPEG-TS (`ts`), MPEG-PS (`ps`), progressive MP4 with budgeted readers (`mp4`), fragmented MP4 (`fmp4`) |
//! | [`segment`] | where live segments end (shared by the on-disk HLS and DASH writers) |
//! | [`cmaf`] | a stream's live CMAF package in memory (segments of parts), rendered as an LL-HLS playlist and a DASH MPD |
//! | [`manifest`] | HLS media playlists (`hls`) and DASH MPDs (`dash`) |
//! | [`amf0`] | AMF0 values, encoder and depth-limited decoder |
//! | [`rtmp`] | RTMP chunk stream, messages and the server/client sessions |
//! | [`rtp`] | RTP headers and RFC 4571 framing, the H.264 depacketiser (`h264`), a reorder buffer (`reorder`) |
//! | [`srt`] | a pre-parse look at SRT handshake datagrams (`handshake`), SRT stream ids in SRS's conventions (`streamid`) |
//! | [`http`] | an HTTP/1.1 response reader (hook answers) and `Range` header parsing |
//! | [`stun`] | the USERNAME of a STUN Binding request (how WebRTC datagrams find their session) |
//! | [`gb28181`] | the GB28181 platform (registration, catalog, INVITE, keepalives) and SIP messages with digest auth (`sip`) |

pub mod amf0;
pub mod bits;
pub mod cmaf;
pub mod clock;
pub mod codec;
pub mod container;
pub mod gb28181;
pub mod http;
pub mod manifest;
pub mod media;
pub mod naming;
pub mod rtmp;
pub mod rtp;
pub mod segment;
pub mod srt;
pub mod stun;
#[doc(hidden)]
pub mod fuzzing;

pub use media::{Codec, MediaFrame, Timebase, TrackKind};
