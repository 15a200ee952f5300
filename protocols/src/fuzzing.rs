//! Entry points of the fuzz targets in `protocols/fuzz` (one function per target, fed
//! arbitrary bytes), kept here so the same code runs two ways: under libFuzzer on nightly
//! (`cargo +nightly fuzz run <target>`), and on stable, where `tests/fuzz_corpus.rs` replays
//! every committed seed (`protocols/fuzz/seeds/<target>/`) through [`TARGETS`] so a
//! regression fails CI without a nightly toolchain.
//!
//! Each function calls a parser the way the node does with bytes from a peer or a file, and
//! checks what its result promises (lengths inside the input, bounds kept, round trips), so a
//! finding is a panic or a broken promise, not only a crash. The MP4 target's heap budget
//! is checked by its libFuzzer binary alone (it needs a counting allocator).

use crate::amf0;
use crate::codec::aac::{AacConfig, AdtsHeader};
use crate::codec::avc::{annexb_nals, length_prefixed_nals, AvcConfig, SpsInfo};
use crate::codec::hevc::{self, HevcSps};
use crate::container::flv::{self, FlvDemuxer};
use crate::container::fmp4;
use crate::container::mp4;
use crate::container::ps::PsDemuxer;
use crate::container::ts::{TsDemuxer, TsFrameReader};
use crate::gb28181::sip::{self, SipMessage};
use crate::gb28181::{Link, Platform, PlatformConfig, Transport};
use crate::media::{Codec, MediaFrame, Timebase};
use crate::rtmp::chunk::ChunkDecoder;
use crate::rtmp::client::{ClientConfig, ClientMode, ClientSession};
use crate::rtmp::server::{ServerConfig, ServerSession};
use crate::rtp::h264::{H264Depacketizer, MAX_ACCESS_UNIT};
use crate::rtp::reorder::ReorderBuffer;
use crate::rtp::{Rfc4571Reader, RtpPacket};
use crate::srt::{handshake, streamid};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;

/// Every target: its name (the `[[bin]]` in `protocols/fuzz/Cargo.toml` and the seed
/// directory) and its entry point.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("rtmp_server", rtmp_server),
    ("rtmp_client", rtmp_client),
    ("rtmp_chunks", rtmp_chunks),
    ("flv_demux", flv_demux),
    ("amf0", amf0_values),
    ("codec_headers", codec_headers),
    ("mp4", mp4_readers),
    ("ts_demux", ts_demux),
    ("ps_demux", ps_demux),
    ("rtp", rtp),
    ("rtp_h264", rtp_h264),
    ("sip", sip_platform),
    ("manscdp", manscdp),
    ("stun", stun),
    ("srt_streamid", srt_streamid),
    ("srt_handshake", srt_handshake),
    ("http_range", http_range),
];

/// A version byte and two 1536-byte handshake blocks of zeros: C0 C1 C2 to a server, S0 S1 S2
/// to a client (neither side checks the other's digest here).
fn plain_handshake() -> Vec<u8> {
    let mut handshake = vec![3u8];
    handshake.extend(std::iter::repeat_n(0u8, 1536 * 2));
    handshake
}

/// The RTMP server session from the first byte (handshake, then chunks and commands), and
/// the same bytes again after a well-formed handshake so the chunk layer is reached quickly.
pub fn rtmp_server(data: &[u8]) {
    let mut session = ServerSession::new(ServerConfig::default());
    let _ = session.handle_input(data);
    while session.poll_output().is_some() {}

    let mut session = ServerSession::new(ServerConfig { max_message_size: 1 << 16, ..ServerConfig::default() });
    let handshake = plain_handshake();
    if session.handle_input(&handshake).is_ok() {
        for piece in data.chunks(97) {
            if session.handle_input(piece).is_err() {
                break;
            }
        }
    }
    while session.poll_output().is_some() {}
}

/// The RTMP client session (forwards, URL ingests, edges pulling from an origin) reading a
/// server's bytes: raw, and after a well-formed S0 S1 S2. The first byte picks play or
/// publish.
pub fn rtmp_client(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let mode = if first & 1 == 0 { ClientMode::Play } else { ClientMode::Publish };
    let config = ClientConfig { max_message_size: 1 << 16, ..ClientConfig::new("live", "rtmp://127.0.0.1/live", "stream", mode) };

    let mut session = ClientSession::new(config.clone());
    let _ = session.handle_input(rest);
    while session.poll_output().is_some() {}

    let mut session = ClientSession::new(config);
    while session.poll_output().is_some() {}
    let handshake = plain_handshake();
    if session.handle_input(&handshake).is_ok() {
        for piece in rest.chunks(61) {
            if session.handle_input(piece).is_err() {
                break;
            }
            while session.poll_output().is_some() {}
        }
    }
    while session.poll_output().is_some() {}
}

/// The chunk decoder alone, with the peer's chunk size taken from the first byte. No message
/// may exceed the decoder's limit.
pub fn rtmp_chunks(data: &[u8]) {
    let Some((&size, rest)) = data.split_first() else { return };
    let mut decoder = ChunkDecoder::new(1 << 16);
    let _ = decoder.set_chunk_size(size as u64 * 16 + 1);
    decoder.push(rest);
    while let Ok(Some(message)) = decoder.next_message() {
        assert!(message.payload.len() <= 1 << 16, "a message of {} bytes passed a 64 KiB limit", message.payload.len());
    }
}

/// FLV demuxing and tag-body conversion. No tag may exceed the demuxer's limit.
pub fn flv_demux(data: &[u8]) {
    let mut demuxer = FlvDemuxer::new(1 << 20);
    demuxer.push(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
    demuxer.push(data);
    while let Ok(Some(tag)) = demuxer.next_tag() {
        assert!(tag.body.len() <= 1 << 20, "an FLV tag of {} bytes passed a 1 MiB limit", tag.body.len());
        match tag.tag_type {
            flv::TAG_VIDEO => drop(flv::video_body_to_frame(tag.timestamp as i64, &tag.body)),
            flv::TAG_AUDIO => drop(flv::audio_body_to_frame(tag.timestamp as i64, &tag.body)),
            _ => drop(flv::script_body_to_frame(0, &tag.body)),
        }
    }
    let body = Bytes::copy_from_slice(data);
    if let Ok(Some(frame)) = flv::video_body_to_frame(0, &body) {
        // What was read from a tag body writes back as a tag body that reads the same.
        let again = flv::video_body_to_frame(0, &flv::frame_to_body(&frame)).expect("a written video body reads back");
        assert_eq!(again.map(|f| f.payload), Some(frame.payload));
    }
    let _ = flv::audio_body_to_frame(0, &body);
}

/// AMF0 decoding; whatever decoded re-encodes to something that decodes to the same values.
pub fn amf0_values(data: &[u8]) {
    if let Ok(values) = amf0::decode_all(data) {
        let again = amf0::decode_all(&amf0::encode_all(&values)).expect("re-encoded AMF0 must decode");
        // NaN never equals itself; compare the encodings instead.
        assert_eq!(amf0::encode_all(&again), amf0::encode_all(&values));
    }
}

/// Codec configuration: AVC records and SPS, HEVC records and SPS, AAC AudioSpecificConfig
/// and ADTS headers, NAL splitting, and the fMP4 track and init segment built from a
/// sequence header of each codec (AV1's record is carried opaque: it reaches the node through
/// FLV and is only copied).
pub fn codec_headers(data: &[u8]) {
    if let Ok(config) = AvcConfig::parse(data) {
        let _ = config.sps_info();
        let _ = AvcConfig::parse(&config.to_bytes()).expect("a serialised record parses");
    }
    let _ = SpsInfo::parse(data);
    let _ = AacConfig::parse(data);
    if let Ok(adts) = AdtsHeader::parse(data) {
        let _ = adts;
    }
    for nal in annexb_nals(data) {
        assert!(nal.len() <= data.len());
    }
    for nal in length_prefixed_nals(data, 4) {
        assert!(nal.len() <= data.len());
    }
    if let Some((_, sets)) = hevc::config_parameter_sets(data) {
        assert!(sets.iter().map(|s| s.len()).sum::<usize>() <= data.len());
    }
    let _ = HevcSps::from_config(data);
    let _ = HevcSps::parse(data);
    for codec in [Codec::H264, Codec::H265, Codec::Aac, Codec::Av1] {
        let frame = MediaFrame { track: codec.track(), codec, dts: 0, pts: 0, timebase: Timebase::MILLIS, keyframe: true, config: true, payload: Bytes::copy_from_slice(data) };
        if let Some(track) = fmp4::Track::from_config(1, &frame) {
            let _ = track.codec_string();
            let _ = fmp4::init_segment(&[track]);
        }
    }
}

/// The MP4 readers as file ingest (`read_file`) and DVR repair (`box_header`,
/// `fragment_samples`) call them.
pub fn mp4_readers(data: &[u8]) {
    mp4_ingest(data);
    mp4_repair(data);
}

/// As file ingest reads a file: the sample count stays within the file's budget, samples lie
/// inside the file, times below `MAX_TICKS`. Returns the samples read.
pub fn mp4_ingest(data: &[u8]) -> usize {
    let Ok(tracks) = mp4::read_file(data) else { return 0 };
    let samples: usize = tracks.iter().map(|t| t.samples.len()).sum();
    assert!(samples as u64 <= data.len() as u64 / mp4::FILE_BYTES_PER_SAMPLE, "{samples} samples from {} bytes", data.len());
    for s in tracks.iter().flat_map(|t| &t.samples) {
        let end = s.offset.checked_add(s.size as u64).expect("sample end overflows");
        assert!(end <= data.len() as u64, "sample outside the file");
        assert!((0..mp4::MAX_TICKS).contains(&s.dts), "dts {}", s.dts);
    }
    samples
}

/// As DVR repair walks a half-written recording: top-level boxes, each `moof` read; sample
/// data lies after its `moof`, times below `MAX_TICKS`. Returns the samples read.
pub fn mp4_repair(data: &[u8]) -> usize {
    let len = data.len() as u64;
    let (mut at, mut described) = (0u64, 0);
    while at + 8 <= len {
        let Some((kind, _, size)) = mp4::box_header(&data[at as usize..]) else { break };
        // As repair does: size 0 ("to the end", reported as u64::MAX) ends the walk; any other
        // size is at most 2^62, so adding it to an offset in the file cannot overflow.
        if size == u64::MAX {
            break;
        }
        let end = at.checked_add(size).expect("box end overflows");
        if end > len {
            break;
        }
        if &kind == b"moof" {
            if let Ok(fragments) = mp4::fragment_samples(&data[at as usize..end as usize], at, 0) {
                for s in fragments.iter().flat_map(|(_, s)| s) {
                    assert!(s.offset >= end, "sample data inside or before its moof");
                    assert!(s.offset.checked_add(s.size as u64).is_some(), "sample end overflows");
                    assert!((0..mp4::MAX_TICKS).contains(&s.dts), "dts {}", s.dts);
                    described += 1;
                }
            }
        }
        at = end;
    }
    described
}

/// The TS demuxer and frame reader as the SRT listener and URL ingests use them. PES
/// packets stay within the demuxer's limit.
pub fn ts_demux(data: &[u8]) {
    const MAX_PES: usize = 1 << 16;
    let mut demuxer = TsDemuxer::new(MAX_PES);
    let mut reader = TsFrameReader::default();
    let mut read = |demuxer: &mut TsDemuxer| {
        while let Some(pes) = demuxer.next_pes() {
            assert!(pes.data.len() <= MAX_PES, "a PES of {} bytes passed a {MAX_PES}-byte limit", pes.data.len());
            let _ = reader.frames(&pes);
        }
    };
    for piece in data.chunks(1000) {
        if demuxer.push(piece).is_err() {
            break;
        }
        read(&mut demuxer);
    }
    demuxer.flush();
    read(&mut demuxer);
}

/// The PS demuxer as GB28181 media uses it, and its units through the frame reader.
pub fn ps_demux(data: &[u8]) {
    let mut demuxer = PsDemuxer::default();
    let mut reader = TsFrameReader::default();
    for piece in data.chunks(1400) {
        if demuxer.push(piece).is_err() {
            break;
        }
        while let Some(unit) = demuxer.next_unit() {
            let _ = reader.frames(&unit);
        }
    }
    demuxer.flush();
    while let Some(unit) = demuxer.next_unit() {
        assert!(unit.data.len() <= data.len(), "a unit larger than the input");
        let _ = reader.frames(&unit);
    }
}

/// RTP parsing (the payload lies inside the packet; a parsed packet written out parses to the
/// same fields) and RFC 4571 framing (every frame is at least an RTP header long).
pub fn rtp(data: &[u8]) {
    if let Ok(packet) = RtpPacket::parse(Bytes::copy_from_slice(data)) {
        assert!(packet.payload.len() + 12 <= data.len());
        let again = RtpPacket::parse(packet.to_bytes()).expect("a written packet parses");
        assert_eq!(again, packet);
    }
    let mut reader = Rfc4571Reader::default();
    let mut taken = 0;
    for piece in data.chunks(7) {
        reader.push(piece);
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() >= 12);
                    taken += frame.len() + 2;
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert!(taken <= data.len());
}

/// The H.264, H.265 and AV1 depacketisers behind the reorder buffer, as WHIP and
/// GB28181-over-UDP use them, on simulated time. The input is a list of packets, each
/// `[arrival step][length u16][bytes]`; every packet the buffer releases goes to all three
/// depacketisers. Access units stay within `MAX_ACCESS_UNIT`; nothing comes out of the buffer
/// twice; an AV1 unit's OBUs parse, and a sequence header it carries either makes a record
/// that parses or is refused with an error.
pub fn rtp_h264(data: &[u8]) {
    use crate::rtp::av1::{self as av1_rtp, Av1Depacketizer};
    let mut reorder = ReorderBuffer::new(Duration::from_millis(50), 64);
    let mut h264 = H264Depacketizer::new();
    let mut h265 = H264Depacketizer::new_h265();
    let mut av1 = Av1Depacketizer::new();
    let mut now = Duration::ZERO;
    let (mut pushed, mut released) = (0usize, 0usize);
    let mut feed = |packets: Vec<RtpPacket>, released: &mut usize| {
        *released += packets.len();
        for packet in packets {
            for depacketizer in [&mut h264, &mut h265] {
                if let Some(unit) = depacketizer.push(&packet) {
                    let size: usize = unit.nals.iter().map(|n| n.len()).sum();
                    assert!(size <= MAX_ACCESS_UNIT + 65_536, "an access unit of {size} bytes");
                }
            }
            if let Some(unit) = av1.push(&packet) {
                assert!(unit.data.len() <= av1_rtp::MAX_TEMPORAL_UNIT + 65_536, "a temporal unit of {} bytes", unit.data.len());
                av1_rtp::obus(&unit.data).expect("a reassembled temporal unit is whole OBUs");
                if let Some(header) = &unit.sequence_header {
                    if let Ok(record) = crate::codec::av1::record_from_sequence_header(header) {
                        crate::codec::av1::Av1Config::parse(&record).expect("a record we made parses");
                    }
                }
            }
        }
    };
    let mut rest = data;
    while rest.len() >= 3 {
        now += Duration::from_millis(rest[0] as u64);
        let len = (u16::from_be_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let packet = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let Ok(packet) = RtpPacket::parse(Bytes::copy_from_slice(packet)) else { continue };
        pushed += 1;
        let out = reorder.push(now, packet);
        feed(out, &mut released);
        let out = reorder.poll(now);
        feed(out, &mut released);
    }
    let out = reorder.flush();
    feed(out, &mut released);
    let _ = (h264.wants_keyframe(), h265.wants_keyframe(), av1.wants_keyframe());
    assert!(released <= pushed, "{released} packets out of {pushed} in");
}

/// SIP: the message parser (a message uses no more bytes than it was given), then the whole
/// GB28181 platform taking the input as datagrams and TCP stream bytes from two devices, on
/// simulated time. The input is split into messages at NUL bytes; the first byte also
/// picks digest authentication and the media transport.
pub fn sip_platform(data: &[u8]) {
    if let Ok(Some((message, used))) = SipMessage::parse(data) {
        assert!(used <= data.len());
        let _ = (message.method(), message.code(), message.cseq(), message.from_user());
        if let Some(auth) = message.header("Authorization") {
            let _ = sip::verify_digest(auth, "REGISTER", "3402000000", "nonce", "secret");
            let _ = sip::param(auth, "response");
        }
        if let Some(to) = message.header("To") {
            let _ = sip::uri_user(to);
        }
    }
    let local: SocketAddr = "127.0.0.1:5060".parse().expect("an address");
    let config = PlatformConfig {
        listen: local,
        server_id: "34020000002000000001".into(),
        realm: "3402000000".into(),
        password: if data.first().is_some_and(|b| b & 1 == 1) { "secret".into() } else { String::new() },
        auto_invite: true,
        media_ip: "127.0.0.1".into(),
        media_port: 9000,
        media_udp: data.first().is_some_and(|b| b & 2 == 2),
        keepalive_timeout: Duration::from_secs(60),
        catalog_timeout: Duration::from_secs(5),
        seed: 7,
        max_devices: 8,
    };
    let mut platform = Platform::new(config, Duration::ZERO, 0);
    let devices: [SocketAddr; 2] = ["127.0.0.2:5060".parse().expect("an address"), "127.0.0.3:5061".parse().expect("an address")];
    let mut now = Duration::ZERO;
    for (i, piece) in data.split(|&b| b == 0).filter(|p| !p.is_empty()).enumerate() {
        now += Duration::from_secs(1);
        let link = Link { transport: if i % 3 == 2 { Transport::Tcp } else { Transport::Udp }, local };
        platform.handle_bytes_on(now, piece, devices[i % 2], link);
        if i % 4 == 3 {
            let _ = platform.invite("34020000001320000001", "34020000001320000001");
        }
        platform.tick(now);
        while platform.poll_output().is_some() {}
    }
    now += Duration::from_secs(120);
    platform.tick(now);
    while platform.poll_output().is_some() {}
    let _ = platform.devices(now);
}

/// MANSCDP XML bodies (catalogs, keepalives) as the platform reads them: fields and catalog
/// items are text of the body.
pub fn manscdp(data: &[u8]) {
    let body = String::from_utf8_lossy(data);
    for tag in ["CmdType", "DeviceID", "SN", "SumNum", "Status"] {
        if let Some(value) = sip::xml_field(&body, tag) {
            assert!(value.len() <= body.len());
        }
    }
    for (id, name) in sip::catalog_items(&body) {
        // Each is text of the body (they may overlap: a DeviceID holding a <Name> element).
        assert!(body.contains(&id) && body.contains(&name), "catalog item ({id:?}, {name:?}) is not text of the body");
    }
}

/// STUN: the username of a binding request lies inside the datagram.
pub fn stun(data: &[u8]) {
    if let Some(user) = crate::stun::username(data) {
        assert!(user.len() + 24 <= data.len());
    }
}

/// The SRT stream id (`#!::r=...,m=...` or a plain path), raw and as the handshake carries it.
pub fn srt_streamid(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(id) = streamid::parse(&text) {
        assert!(!id.app.is_empty() || !id.stream.is_empty());
    }
    let decoded = handshake::decode_string(data);
    let _ = streamid::parse(&decoded);
    assert_eq!(handshake::decode_string(&handshake::encode_string(&decoded)), decoded.trim_end_matches('\0'));
}

/// An SRT handshake datagram as the listener inspects it before the SRT stack sees it:
/// extension blocks lie inside the datagram, stripping them leaves a datagram that inspects
/// the same way without them.
pub fn srt_handshake(data: &[u8]) {
    let Some(view) = handshake::inspect(data) else { return };
    for ext in &view.extensions {
        assert!(ext.range.start <= ext.range.end && ext.range.end <= data.len(), "an extension outside the datagram");
    }
    let _ = view.congestion(data);
    let stripped = handshake::strip(data, &view, &[handshake::EXT_FILTER, handshake::EXT_GROUP]);
    assert!(stripped.len() <= data.len());
    if let Some(again) = handshake::inspect(&stripped) {
        assert!(again.extensions.iter().all(|e| e.kind != handshake::EXT_FILTER && e.kind != handshake::EXT_GROUP));
    }
}

/// The HTTP `Range` parser (DVR MP4 and file downloads): a part lies inside the body; and the
/// status-line parser of HTTP callbacks' answers.
pub fn http_range(data: &[u8]) {
    let Some((&len_byte, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    for len in [0, len_byte as u64, u64::from(len_byte) << 40, u64::MAX] {
        if let crate::http::RangeRequest::Part(start, end) = crate::http::parse_range(Some(&text), len) {
            assert!(start < end && end <= len, "range {start}..{end} of a {len}-byte body from {text:?}");
        }
    }
    let _ = crate::http::parse_response(rest);
}

pub mod seeds {
    //! The seed corpus: one or more well-formed inputs per target, made by the crate's own
    //! writers (and the SPS/VPS/PPS that Debian's ffmpeg writes), so libFuzzer starts from
    //! inputs that reach deep into each parser. `cargo run -p estuary-protocols --example
    //! write_fuzz_seeds` writes them into `protocols/fuzz/seeds/<target>/` (files already
    //! there, inputs that once found a bug, are kept); `tests/fuzz_corpus.rs` runs them.
    use super::*;
    use crate::amf0::Value;
    use crate::codec::avc::to_annexb;
    use crate::container::ps::mux as ps;
    use crate::container::ts::TsMuxer;
    use crate::media::TrackKind;
    use crate::rtmp::client::ClientOutput;
    use crate::rtmp::server::{ServerEvent, ServerOutput};
    use bytes::BytesMut;

    const SPS: [u8; 25] = [
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1,
        0x42, 0x99, 0x60,
    ];
    const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    const DEVICE: &str = "34020000001320000001";

    fn frame(track: TrackKind, codec: Codec, dts: i64, keyframe: bool, config: bool, payload: Vec<u8>) -> MediaFrame {
        MediaFrame { track, codec, dts, pts: dts + 40, timebase: Timebase::MILLIS, keyframe, config, payload: Bytes::from(payload) }
    }

    /// An H.264 config, a keyframe, a delta frame, an AAC config and an AAC frame, in FLV's
    /// (length-prefixed) form.
    fn frames() -> Vec<MediaFrame> {
        let avc = AvcConfig::from_parameter_sets(&SPS, &PPS).expect("a valid SPS/PPS").to_bytes().to_vec();
        let mut idr = vec![0, 0, 0, 6, 0x65, 0x88, 0x84, 0x00, 0x33, 0xff];
        idr.extend_from_slice(&[0, 0, 0, 3, 0x06, 0x05, 0x01]);
        vec![
            frame(TrackKind::Video, Codec::H264, 0, true, true, avc),
            frame(TrackKind::Audio, Codec::Aac, 0, true, true, AacConfig::new(2, 44_100, 2).to_bytes().to_vec()),
            frame(TrackKind::Video, Codec::H264, 0, true, false, idr),
            frame(TrackKind::Audio, Codec::Aac, 23, true, false, vec![0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]),
            frame(TrackKind::Video, Codec::H264, 40, false, false, vec![0, 0, 0, 5, 0x41, 0x9a, 0x21, 0x6c, 0x41]),
        ]
    }


    /// A client and a server session talking until both are quiet; the bytes each sent.
    fn rtmp_conversation(mode: ClientMode) -> (Vec<u8>, Vec<u8>) {
        let mut client = ClientSession::new(ClientConfig::new("live", "rtmp://127.0.0.1/live", "cam?token=t", mode));
        let mut server = ServerSession::new(ServerConfig::default());
        let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
        let mut sent_media = false;
        loop {
            let mut moved = false;
            while let Some(output) = client.poll_output() {
                match output {
                    ClientOutput::Transmit(bytes) => {
                        to_server.extend_from_slice(&bytes);
                        server.handle_input(&bytes).expect("server reads the client");
                        moved = true;
                    }
                    ClientOutput::Event(_) => {}
                }
            }
            while let Some(output) = server.poll_output() {
                match output {
                    ServerOutput::Transmit(bytes) => {
                        to_client.extend_from_slice(&bytes);
                        client.handle_input(&bytes).expect("client reads the server");
                        moved = true;
                    }
                    ServerOutput::Event(ServerEvent::PublishRequested { request, .. } | ServerEvent::PlayRequested { request, .. }) => {
                        server.accept(request);
                        moved = true;
                    }
                    ServerOutput::Event(_) => {}
                }
            }
            if !moved && !sent_media {
                sent_media = true;
                let mut media = BytesMut::new();
                for f in frames() {
                    match (mode, server.media_writer()) {
                        (ClientMode::Publish, _) => client.send_frame(&f),
                        (ClientMode::Play, Some(writer)) => writer.write_frame(&mut media, &f),
                        (ClientMode::Play, None) => panic!("the server accepted no play request"),
                    }
                }
                if !media.is_empty() {
                    to_client.extend_from_slice(&media);
                    client.handle_input(&media).expect("client reads the media");
                }
                moved = true;
            }
            if !moved {
                return (to_server, to_client);
            }
        }
    }

    /// Every seed: (target, file name, bytes).
    pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut write = |target: &'static str, name: &str, data: &[u8]| out.push((target, name.to_string(), data.to_vec()));
        for (mode, name) in [(ClientMode::Publish, "publish"), (ClientMode::Play, "play")] {
            let (to_server, to_client) = rtmp_conversation(mode);
            write("rtmp_server", name, &to_server);
            write("rtmp_server", &format!("{name}_after_handshake"), &to_server[1 + 2 * 1536..]);
            let mut client_input = vec![if mode == ClientMode::Play { 0 } else { 1 }];
            client_input.extend_from_slice(&to_client);
            write("rtmp_client", name, &client_input);
            let mut chunks = vec![(4096 / 16) as u8];
            chunks.extend_from_slice(&to_server[1 + 2 * 1536..]);
            write("rtmp_chunks", name, &chunks);
        }

        let mut flv = BytesMut::new();
        for f in frames() {
            flv::write_frame_tag(&mut flv, &f);
        }
        write("flv_demux", "h264_aac", &flv);
        write("flv_demux", "video_body", &flv::frame_to_body(&frames()[2]));

        let object = Value::Object(vec![("app".into(), Value::String("live".into())), ("fpad".into(), Value::Boolean(false)), ("capabilities".into(), Value::Number(239.0))]);
        let values = [Value::String("connect".into()), Value::Number(1.0), object, Value::Null, Value::EcmaArray(vec![("width".into(), Value::Number(640.0))]), Value::StrictArray(vec![Value::Undefined])];
        write("amf0", "connect", &amf0::encode_all(&values));

        write("codec_headers", "avcc", &frames()[0].payload);
        write("codec_headers", "sps", &SPS);
        write("codec_headers", "aac_config", &frames()[1].payload);
        write("codec_headers", "adts", &AacConfig::new(2, 44_100, 2).adts_header(6));
        let hvcc = hevc::config_from_parameter_sets(&crate::codec::hevc::sample::VPS, &crate::codec::hevc::sample::SPS, &crate::codec::hevc::sample::PPS).expect("an hvcC");
        write("codec_headers", "hvcc", &hvcc);
        write("codec_headers", "annexb", &to_annexb([&SPS[..], &PPS[..]]));

        let mut ts = BytesMut::new();
        let mut muxer = TsMuxer::new(Some(Codec::H264), Some(Codec::Aac));
        muxer.write_tables(&mut ts);
        for f in frames() {
            muxer.write_frame(&f, &mut ts);
        }
        write("ts_demux", "h264_aac", &ts);

        let mut program = ps::pack_header(90_000);
        program.extend(ps::stream_map(&[(0xe0, 0x1b), (0xc0, 0x0f)]));
        program.extend(ps::pes(0xe0, 90_000, 90_000, &to_annexb([&SPS[..], &PPS[..], &[0x65, 0x88, 0x84, 0x00][..]])));
        program.extend(ps::pes(0xc0, 90_000, 90_000, &AacConfig::new(2, 44_100, 2).adts_header(4).iter().chain(&[1u8, 2, 3, 4]).copied().collect::<Vec<u8>>()));
        program.extend(ps::pack_header(93_600));
        program.extend(ps::pes(0xe0, 93_600, 93_600, &to_annexb([&[0x41, 0x9a, 0x21][..]])));
        write("ps_demux", "h264_aac", &program);

        let au = crate::codec::avc::to_length_prefixed([&SPS[..], &PPS[..], &[0x65; 3000][..]]);
        let packets: Vec<RtpPacket> = crate::rtp::h264::packetize(&au, 1200)
            .into_iter()
            .enumerate()
            .map(|(i, payload)| RtpPacket { payload_type: 96, marker: false, sequence: 100 + i as u16, timestamp: 3000, ssrc: 0x1234, payload })
            .collect();
        write("rtp", "packet", &packets[0].to_bytes());
        let framed: Vec<u8> = packets.iter().flat_map(|p| crate::rtp::frame_4571(&p.to_bytes())).collect();
        write("rtp", "rfc4571", &framed);
        let mut h264 = Vec::new();
        let last = packets.len() - 1;
        // Sent out of order: the second packet last.
        for (step, i) in (0..packets.len()).filter(|&i| i != 1).chain([1]).enumerate() {
            let mut packet = packets[i].clone();
            packet.marker = i == last;
            let bytes = packet.to_bytes();
            h264.push((step % 3) as u8 * 20);
            h264.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            h264.extend_from_slice(&bytes);
        }
        write("rtp_h264", "fu_a_reordered", &h264);

        // AV1 (a sequence header and a key frame cut into fragments) and H.265 (parameter
        // sets and a slice cut into fragmentation units), each as in-order packets.
        let framed = |payloads: Vec<Bytes>| -> Vec<u8> {
            let last = payloads.len() - 1;
            let mut out = Vec::new();
            for (i, payload) in payloads.into_iter().enumerate() {
                let bytes = RtpPacket { payload_type: 45, marker: i == last, sequence: 7 + i as u16, timestamp: 9000, ssrc: 0x99, payload }.to_bytes();
                out.push(5);
                out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                out.extend_from_slice(&bytes);
            }
            out
        };
        let sequence_header = [0x0a, 0x0b, 0x00, 0x00, 0x00, 0x05, 0x21, 0xe7, 0xfd, 0xe0, 0x17, 0xc0, 0x02];
        let mut temporal_unit = vec![0x12, 0x00];
        temporal_unit.extend([0x32, 0x80, 0x14]);
        temporal_unit.extend((0..2560).map(|i| (i * 13) as u8));
        let av1 = crate::rtp::av1::packetize(&temporal_unit, true, Some(&sequence_header), 1200).expect("a well-formed temporal unit");
        write("rtp_h264", "av1_keyframe_fragments", &framed(av1));
        let vps: &[u8] = &[0x40, 0x01, 0x0c, 0x01, 0xff, 0xff];
        let slice: Vec<u8> = [0x26, 0x01].into_iter().chain((0..3000).map(|i| (i * 3) as u8)).collect();
        let h265 = crate::rtp::h265::packetize([vps, &[0x42, 0x01, 0x01][..], &[0x44, 0x01, 0xc0][..], &slice[..]], 1200);
        write("rtp_h264", "h265_fragmentation_units", &framed(h265));

        let register = SipMessage::request("REGISTER", "sip:34020000002000000001@3402000000")
            .with("Via", "SIP/2.0/UDP 127.0.0.2:5060;rport;branch=z9hG4bK1")
            .with("From", format!("<sip:{DEVICE}@3402000000>;tag=1"))
            .with("To", format!("<sip:{DEVICE}@3402000000>"))
            .with("Call-ID", "reg1")
            .with("CSeq", "1 REGISTER")
            .with("Expires", "3600");
        let catalog = format!("<?xml version=\"1.0\"?>\r\n<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>1</SN>\r\n<DeviceID>{DEVICE}</DeviceID>\r\n<SumNum>1</SumNum>\r\n<DeviceList Num=\"1\">\r\n<Item>\r\n<DeviceID>34020000001320000002</DeviceID>\r\n<Name>Gate</Name>\r\n</Item>\r\n</DeviceList>\r\n</Response>\r\n");
        let message = |call: &str, body: &str| {
            SipMessage::request("MESSAGE", "sip:34020000002000000001@3402000000")
                .with("Via", "SIP/2.0/UDP 127.0.0.2:5060;rport;branch=z9hG4bK2")
                .with("From", format!("<sip:{DEVICE}@3402000000>;tag=2"))
                .with("To", "<sip:34020000002000000001@3402000000>")
                .with("Call-ID", call.to_string())
                .with("CSeq", "20 MESSAGE")
                .with_body("Application/MANSCDP+xml", body.to_string())
        };
        let keepalive = format!("<?xml version=\"1.0\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>2</SN>\r\n<DeviceID>{DEVICE}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n");
        let mut sip = vec![0u8];
        for m in [register.clone(), message("c1", &catalog), message("k1", &keepalive)] {
            sip.extend_from_slice(&m.to_bytes());
            sip.push(0);
        }
        write("sip", "register_catalog_keepalive", &sip);
        let mut signed = vec![1u8];
        signed.extend_from_slice(&register.with("Authorization", format!("Digest username=\"{DEVICE}\", realm=\"3402000000\", nonce=\"n\", uri=\"sip:34020000002000000001@3402000000\", response=\"{}\", algorithm=MD5", sip::digest_response(DEVICE, "3402000000", "secret", "REGISTER", "sip:34020000002000000001@3402000000", "n"))).to_bytes());
        write("sip", "register_with_digest", &signed);
        write("manscdp", "catalog", catalog.as_bytes());
        write("manscdp", "keepalive", keepalive.as_bytes());

        let binding = crate::stun::binding_request("abcd:wxyz");
        write("stun", "binding_request", &binding);

        write("srt_streamid", "srs_form", b"#!::h=example.com,r=live/cam?token=abc,m=publish,u=alice");
        write("srt_streamid", "path_form", b"live/livestream?m=request&token=x%20y");
        write("srt_streamid", "word_swapped", &handshake::encode_string("#!::r=live/livestream,m=publish"));

        let mut conclusion = vec![0u8; 64];
        conclusion[0] = 0x80;
        conclusion[16..20].copy_from_slice(&5u32.to_be_bytes());
        conclusion[22..24].copy_from_slice(&5u16.to_be_bytes());
        conclusion[36..40].copy_from_slice(&(-1i32).to_be_bytes());
        conclusion[40..44].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        conclusion.extend_from_slice(&[0, 1, 0, 3]);
        conclusion.extend_from_slice(&[0; 12]);
        for (kind, text) in [(handshake::EXT_STREAM_ID, "#!::r=live/file,m=publish"), (handshake::EXT_CONGESTION, "file"), (handshake::EXT_FILTER, "fec,cols:10")] {
            let body = handshake::encode_string(text);
            conclusion.extend_from_slice(&kind.to_be_bytes());
            conclusion.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
            conclusion.extend_from_slice(&body);
        }
        write("srt_handshake", "conclusion", &conclusion);

        for (name, text) in [("first_bytes", "bytes=0-10"), ("suffix", "bytes=-5"), ("open", "bytes=5-"), ("several", "bytes=0-1,4-5")] {
            let mut input = vec![100u8];
            input.extend_from_slice(text.as_bytes());
            write("http_range", name, &input);
        }
        write("http_range", "response", b"\x00HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        out
    }
}
