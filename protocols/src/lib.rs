//! Estuary's protocol layer: the media model every actor exchanges and every wire format the
//! node speaks, written as **sans-IO** code. Nothing in this crate touches a socket, a file, a
//! clock or an async runtime: bytes and the current time go in, events and bytes come out.
//!
//! | module | what it holds |
//! |---|---|
//! | [`media`] | `MediaFrame`, codecs, timebases, the timestamp normaliser used at ingest |
//! | [`clock`] | UTC calendar fields and RFC 3339, without a clock |
//! | [`bits`] | a bit reader with exp-Golomb codes for codec headers |
//! | [`avc`] | H.264 `AVCDecoderConfigurationRecord` and SPS parsing |
//! | [`aac`] | AAC `AudioSpecificConfig` parsing and ADTS headers |
//! | [`hevc`] | H.265 NAL types and `HEVCDecoderConfigurationRecord` parameter sets |
//! | [`amf0`] | AMF0 values, encoder and depth-limited decoder |
//! | [`flv`] | FLV file/tag mux and demux, legacy and enhanced (FourCC) codec tags |
//! | [`ps`] | MPEG-2 program stream demuxer (GB28181 media) and a small pack writer |
//! | [`rtp`] | RTP headers and RFC 4571 framing |
//! | [`sip`] | SIP messages, digest authentication, MANSCDP fields (GB28181 signalling) |
//! | [`rtmp`] | RTMP chunk stream, messages and the server/client sessions |
//! | [`srt_handshake`] | a pre-parse look at SRT handshake datagrams (extension blocks) |
//! | [`srt_streamid`] | SRT stream ids in SRS's conventions |
//! | [`ts`] | MPEG-TS muxer, demuxer and PES-to-frame reader |
//! | [`mp4`] | progressive MP4 laid out over samples stored elsewhere; moov and fragment readers with a budget |
//! | [`naming`] | the one stream-name rule every protocol's names pass before they reach a path, a map or a log |
//! | [`fmp4`] | fragmented MP4 (CMAF) initialization and media segments |
//! | [`hls`] | HLS media playlists |
//! | [`dash`] | DASH MPD for live streams |

pub mod aac;
pub mod amf0;
pub mod avc;
pub mod bits;
pub mod clock;
pub mod dash;
pub mod flv;
pub mod gb28181;
pub mod hls;
pub mod fmp4;
pub mod hevc;
pub mod media;
pub mod mp4;
pub mod naming;
pub mod ps;
pub mod rtmp;
pub mod rtp;
pub mod rtp_h264;
pub mod rtp_reorder;
pub mod sip;
pub mod srt_handshake;
pub mod srt_streamid;
pub mod ts;

pub use media::{Codec, MediaFrame, Timebase, TrackKind};
