//! `estuary-load`: N players over RTMP, HTTP-FLV, SRT, WebRTC/WHEP, LL-HLS or the AI tap (and optionally a synthetic publisher) against
//! a server on this machine, reporting players held, delivered Mbit/s, startup time, delay
//! through the server, and the server's CPU and memory. See the README's "Benchmarks".
//!
//! Bounded by design: players and duration are capped, and only loopback targets are accepted.

use bytes::{Bytes, BytesMut};
use clap::Parser;
use estuary_protocols::container::flv::{self, FlvDemuxer, TAG_AUDIO, TAG_VIDEO};
use estuary_protocols::media::{MediaFrame, TrackKind};
use estuary_protocols::rtmp::client::{ClientConfig, ClientEvent, ClientMode, ClientOutput, ClientSession};
use estuary_protocols::container::ts::{TsDemuxer, TsFrameReader, TsMuxer};
use estuary_tests::load::{last_stamp_in, median_p99, parse_target, preload_hint, process_cpu_seconds, process_rss_kb, read_stamp, stamp_nal, Dechunker, Target};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_PLAYERS: usize = 20_000;
const MAX_HOLD_S: u64 = 600;
const MAX_STREAMS: usize = 1000;

#[derive(Parser, Debug)]
#[command(name = "estuary-load", about = "Load and latency tool for RTMP / HTTP-FLV servers on this machine")]
struct Args {
    /// Player URL: rtmp://127.0.0.1:1935/live/bench, http://127.0.0.1:8080/live/bench.flv (or
    /// .ts, or .m3u8: an LL-HLS player fetching parts),
    /// 'srt://127.0.0.1:10080?streamid=#!::r=live/bench,m=request',
    /// 'http://127.0.0.1:1985/rtc/v1/whep/?app=live&stream=bench' or an AI tap client
    /// 'ws://127.0.0.1:8080/tap/live/bench?audio=s16le&rate=16000' (publish with
    /// --publish-url rtmp://...: its delay is measured against the RTMP publisher's pacing,
    /// so with --streams 1 only: publishers of several streams start at different times)
    #[arg(long)]
    url: String,
    /// Concurrent players.
    #[arg(long, default_value_t = 100)]
    players: usize,
    /// Time over which players connect.
    #[arg(long, default_value_t = 5000)]
    ramp_ms: u64,
    /// Seconds to hold all players after the ramp (measurements cover this window).
    #[arg(long, default_value_t = 20)]
    hold_s: u64,
    /// Publish this FLV clip (H.264/AAC, looped, timestamps rewritten, latency-stamped) first.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// Where to publish the clip (default: the player URL, when it is RTMP): rtmp://,
    /// 'srt://127.0.0.1:10080?streamid=#!::r=live/bench,m=publish' or
    /// 'http://127.0.0.1:1985/rtc/v1/whip/?app=live&stream=bench' (WHIP publishers send the
    /// clip's video only: its AAC has no WebRTC mapping).
    #[arg(long)]
    publish_url: Option<String>,
    /// Streams published, each by its own publisher; with more than one, stream `s` becomes
    /// `s-0`, `s-1`, ... on both the publish and the player URL, and players are spread over
    /// them in turn.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Server process to measure (CPU user+sys and RSS over the hold).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Players read every this many milliseconds, like a buffering player (0: on every wakeup).
    #[arg(long, default_value_t = 50)]
    read_batch_ms: u64,
    /// Once playing, RTMP and HTTP-FLV players wake only when this many bytes are readable
    /// (SO_RCVLOWAT; 0: off). Use with --read-batch-ms 0.
    #[arg(long, default_value_t = 0)]
    read_lowat: usize,
    /// SRT players' receiver latency (the connection uses the larger of both sides').
    #[arg(long, default_value_t = 120)]
    srt_latency_ms: u64,
    /// HLS players ask for playlists without `Accept-Encoding: gzip` (by default they take
    /// gzip, as browsers do; parts are never compressed).
    #[arg(long)]
    hls_plain: bool,
    /// WebRTC peers' ICE check interval (webrtc-rs's default is 200 ms; browsers check
    /// faster while connecting).
    #[arg(long, default_value_t = 200)]
    ice_check_ms: u64,
    /// WHEP players throw away every this many video RTP datagrams from 2 s after their first
    /// keyframe (0: none),
    /// as a lossy network would, and count how many of them the server sends again when the
    /// players' NACKs ask (`rtp_dropped`, `rtp_recovered` in the result).
    #[arg(long, default_value_t = 0)]
    drop_video_every: u64,
    /// WHEP players ask for a keyframe (RTCP PLI) every this many milliseconds once video
    /// arrives (0: never); `pli_sent` in the result counts them.
    #[arg(long, default_value_t = 0)]
    pli_every_ms: u64,
    /// A label printed with the results.
    #[arg(long, default_value = "")]
    label: String,
}

/// When (Unix µs) the RTMP publisher's pacing started: a frame of stream time `t` ms was sent
/// at this plus `t` ms (0 until it starts).
static PUBLISH_START_US: AtomicU64 = AtomicU64::new(0);

/// Chunks tap clients were told they lost (`{"type":"lost"}`), all clients together.
static TAP_LOST: AtomicU64 = AtomicU64::new(0);

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

#[derive(Default)]
struct PlayerStats {
    connect_us: AtomicU64,
    first_key_us: AtomicU64,
    last_frame_us: AtomicU64,
    /// When the player's connection ended without an error (the server closed it), or 0.
    ended_us: AtomicU64,
    bytes: AtomicU64,
    delays_us: Mutex<Vec<u64>>,
    /// WHEP: video datagrams thrown away, and those of them that came again.
    rtp_dropped: AtomicU64,
    rtp_recovered: AtomicU64,
    /// WHEP: keyframe requests sent.
    pli_sent: AtomicU64,
}

impl PlayerStats {
    /// True once the player got its first keyframe: from then on it reads in batches.
    fn playing(&self) -> bool {
        self.first_key_us.load(Ordering::Relaxed) > 0
    }

    fn frame(&self, frame: &MediaFrame) {
        self.frame_at(frame, now_us());
    }

    /// A frame whose first byte arrived at `now`.
    fn frame_at(&self, frame: &MediaFrame, now: u64) {
        self.last_frame_us.store(now, Ordering::Relaxed);
        if frame.track == TrackKind::Video && !frame.config {
            if frame.keyframe && self.first_key_us.load(Ordering::Relaxed) == 0 {
                self.first_key_us.store(now, Ordering::Relaxed);
            }
            // Frames of the cached GOP a player starts with are old by design; delay is
            // measured once the player is live (3 s after its first keyframe).
            let live = now.saturating_sub(self.first_key_us.load(Ordering::Relaxed)) > 3_000_000;
            if let Some(sent) = read_stamp(&frame.payload).filter(|_| live) {
                let mut delays = self.delays_us.lock().unwrap_or_else(|e| e.into_inner());
                if delays.len() < 1000 {
                    delays.push(now.saturating_sub(sent));
                }
            }
        }
    }
}

async fn rtmp_player(target: Target, stats: Arc<PlayerStats>, batch: Duration, lowat: usize) -> Result<(), String> {
    let mut socket = TcpStream::connect((target.host.as_str(), target.port)).await.map_err(|e| e.to_string())?;
    socket.set_nodelay(true).ok();
    stats.connect_us.store(now_us(), Ordering::Relaxed);
    let tc_url = format!("rtmp://{}:{}/{}", target.host, target.port, target.app);
    let mut session = ClientSession::new(ClientConfig::new(&target.app, &tc_url, &target.stream, ClientMode::Play));
    let mut buf = vec![0u8; 256 * 1024];
    let mut lowat_set = false;
    loop {
        while let Some(output) = session.poll_output() {
            match output {
                ClientOutput::Transmit(bytes) => socket.write_all(&bytes).await.map_err(|e| e.to_string())?,
                ClientOutput::Event(ClientEvent::Frame(frame)) => stats.frame(&frame),
                ClientOutput::Event(ClientEvent::Rejected { description, .. }) => return Err(description),
                ClientOutput::Event(_) => {}
            }
        }
        let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("server closed".into());
        }
        stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        session.handle_input(&buf[..n]).map_err(|e| e.to_string())?;
        wake_on(&socket, lowat, &stats, &mut lowat_set);
        if !batch.is_zero() && stats.playing() {
            tokio::time::sleep(batch).await;
        }
    }
}

// SO_RCVLOWAT, which nix does not name.
use nix::{setsockopt_impl, sockopt_impl};
sockopt_impl!(RcvLowat, SetOnly, libc::SOL_SOCKET, libc::SO_RCVLOWAT, libc::c_int);

/// Once the player plays, sets its socket's receive low-water mark (see `--read-lowat`).
fn wake_on(socket: &TcpStream, lowat: usize, stats: &PlayerStats, set: &mut bool) {
    if lowat > 0 && !*set && stats.playing() {
        *set = true;
        let value = libc::c_int::try_from(lowat).unwrap_or(libc::c_int::MAX);
        if let Err(e) = nix::sys::socket::setsockopt(socket, RcvLowat, &value) {
            eprintln!("SO_RCVLOWAT: {e}");
        }
    }
}

async fn flv_player(target: Target, stats: Arc<PlayerStats>, batch: Duration, lowat: usize) -> Result<(), String> {
    let mut socket = TcpStream::connect((target.host.as_str(), target.port)).await.map_err(|e| e.to_string())?;
    stats.connect_us.store(now_us(), Ordering::Relaxed);
    let extension = if target.protocol == "http-ts" { "ts" } else { "flv" };
    let request = format!("GET /{}/{}.{extension} HTTP/1.1\r\nHost: {}\r\n\r\n", target.app, target.stream, target.host);
    socket.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut chunked: Option<Option<Dechunker>> = None;
    let mut body = Vec::new();
    let mut demuxer = FlvDemuxer::default();
    let mut ts = TsDemuxer::default();
    let mut ts_reader = TsFrameReader::default();
    // MPEG-TS: bytes of an unfinished packet, and per PID the arrival times of PES starts not
    // yet complete. A video PES has no length, so the demuxer completes it only when the
    // next one starts; its frame is timed by the read that brought its first packet.
    let mut ts_partial: Vec<u8> = Vec::new();
    let mut ts_starts: std::collections::HashMap<u16, std::collections::VecDeque<u64>> = Default::default();
    let mut lowat_set = false;
    loop {
        let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("server closed".into());
        }
        stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let mut data = &buf[..n];
        if chunked.is_none() {
            head.extend_from_slice(data);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
                return Err(String::from_utf8_lossy(&head[..end]).into_owned());
            }
            let is_chunked = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase().contains("transfer-encoding: chunked");
            chunked = Some(is_chunked.then(Dechunker::default));
            body = head.split_off(end + 4);
            data = &[];
        }
        match chunked.as_mut().and_then(|c| c.as_mut()) {
            Some(dechunker) => {
                let pending = std::mem::take(&mut body);
                dechunker.push(&pending, &mut body)?;
                let mut decoded = Vec::new();
                dechunker.push(data, &mut decoded)?;
                body.extend_from_slice(&decoded);
            }
            None => body.extend_from_slice(data),
        }
        if extension == "ts" {
            let now = now_us();
            ts_partial.extend_from_slice(&body);
            body.clear();
            let whole = ts_partial.len() / 188 * 188;
            for packet in ts_partial[..whole].chunks(188) {
                ts.push(packet).map_err(|e| e.to_string())?;
                let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
                if packet[1] & 0x40 != 0 && ts.streams().contains_key(&pid) {
                    let starts = ts_starts.entry(pid).or_default();
                    starts.push_back(now);
                    if starts.len() > 64 {
                        starts.pop_front();
                    }
                }
                while let Some(pes) = ts.next_pes() {
                    let at = ts_starts.get_mut(&pes.pid).and_then(|q| q.pop_front()).unwrap_or(now);
                    for frame in ts_reader.frames(&pes) {
                        stats.frame_at(&frame, at);
                    }
                }
            }
            ts_partial.drain(..whole);
            wake_on(&socket, lowat, &stats, &mut lowat_set);
            if !batch.is_zero() && stats.playing() {
                tokio::time::sleep(batch).await;
            }
            continue;
        }
        demuxer.push(&body);
        body.clear();
        while let Some(tag) = demuxer.next_tag().map_err(|e| e.to_string())? {
            let frame = match tag.tag_type {
                TAG_VIDEO => flv::video_body_to_frame(tag.timestamp as i64, &tag.body).ok().flatten(),
                TAG_AUDIO => flv::audio_body_to_frame(tag.timestamp as i64, &tag.body).ok().flatten(),
                _ => None,
            };
            if let Some(frame) = frame {
                stats.frame(&frame);
            }
        }
        wake_on(&socket, lowat, &stats, &mut lowat_set);
        if !batch.is_zero() && stats.playing() {
            tokio::time::sleep(batch).await;
        }
    }
}

/// An SRT player (srt-tokio caller): TS in, frames out through our TS demuxer. SRT delivers
/// packets as they are released by the receive buffer, so there is no read batching.
/// One GET on a kept-alive connection: status and body (Content-Length bodies, as the node
/// answers playlists and parts). With `gzip`, the request takes gzip as browsers do and a
/// gzip body is decompressed.
async fn http_get(socket: &mut TcpStream, host: &str, path: &str, head: &mut Vec<u8>, gzip: bool) -> Result<(u16, Vec<u8>), String> {
    let accept = if gzip { "Accept-Encoding: gzip, deflate, br\r\n" } else { "" };
    socket.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{accept}\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16 * 1024];
    let end = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("server closed".into());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
    let length: usize = text.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).ok_or_else(|| format!("no Content-Length for {path}"))?;
    let mut body: Vec<u8> = head.drain(..end + 4).collect();
    body.clear();
    while head.len() < length {
        let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("server closed".into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    body.extend(head.drain(..length));
    if text.lines().any(|l| l.strip_prefix("content-encoding:").is_some_and(|v| v.trim() == "gzip")) {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body.as_slice()), &mut plain).map_err(|e| format!("{path}: bad gzip body: {e}"))?;
        return Ok((status, plain));
    }
    Ok((status, body))
}

/// An LL-HLS player as hls.js plays: the playlist, then for each part the preload-hinted part
/// (held by the node until it exists) and a blocking reload of the delta playlist, all on one
/// kept-alive connection. Delay: a part's arrival against the newest stamp in it.
async fn hls_player(target: Target, stats: Arc<PlayerStats>, gzip: bool) -> Result<(), String> {
    let mut socket = TcpStream::connect((target.host.as_str(), target.port)).await.map_err(|e| e.to_string())?;
    stats.connect_us.store(now_us(), Ordering::Relaxed);
    let (host, base) = (target.host.clone(), format!("/{}/{}", target.app, target.stream));
    let mut pending = Vec::new();
    let (status, body) = http_get(&mut socket, &host, &format!("{base}.m3u8"), &mut pending, gzip).await?;
    if status != 200 {
        return Err(format!("playlist: {status}"));
    }
    let mut playlist = String::from_utf8_lossy(&body).into_owned();
    loop {
        let (uri, msn, part) = preload_hint(&playlist).ok_or("no preload hint (ended?)")?;
        let (status, data) = http_get(&mut socket, &host, &format!("/{}/{uri}", target.app), &mut pending, false).await?;
        let now = now_us();
        if status == 200 {
            stats.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            stats.last_frame_us.store(now, Ordering::Relaxed);
            if stats.first_key_us.load(Ordering::Relaxed) == 0 {
                stats.first_key_us.store(now, Ordering::Relaxed);
            }
            let live = now.saturating_sub(stats.first_key_us.load(Ordering::Relaxed)) > 3_000_000;
            if let Some(sent) = last_stamp_in(&data).filter(|_| live) {
                let mut delays = stats.delays_us.lock().unwrap_or_else(|e| e.into_inner());
                if delays.len() < 1000 {
                    delays.push(now.saturating_sub(sent));
                }
            }
        }
        // Blocking on the part just fetched answers at once with the playlist whose hint is
        // the next part (as hls.js asks for the hinted part's playlist).
        let (status, body) = http_get(&mut socket, &host, &format!("{base}.m3u8?_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES"), &mut pending, gzip).await?;
        if status != 200 {
            return Err(format!("playlist reload: {status}"));
        }
        playlist = String::from_utf8_lossy(&body).into_owned();
    }
}

async fn srt_player(target: Target, stats: Arc<PlayerStats>, latency: Duration) -> Result<(), String> {
    use futures_util::StreamExt;
    let stream_id = format!("#!::r={}/{},m=request", target.app, target.stream);
    let address = format!("{}:{}", target.host, target.port);
    stats.connect_us.store(now_us(), Ordering::Relaxed);
    let mut socket = srt_tokio::SrtSocket::builder().latency(latency).call(address.as_str(), Some(&stream_id)).await.map_err(|e| e.to_string())?;
    let mut demuxer = TsDemuxer::default();
    let mut reader = TsFrameReader::default();
    while let Some(item) = socket.next().await {
        let (_, data) = item.map_err(|e| e.to_string())?;
        stats.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        demuxer.push(&data).map_err(|e| e.to_string())?;
        while let Some(pes) = demuxer.next_pes() {
            for frame in reader.frames(&pes) {
                stats.frame(&frame);
            }
        }
    }
    Ok(())
}

/// Offers `pc` with one host candidate at `local`, POSTs the offer to the node's WHEP or WHIP
/// endpoint (`endpoint`) for `target`, and applies the answer.
async fn negotiate(pc: &mut rtc::peer_connection::RTCPeerConnection, local: std::net::SocketAddr, target: &Target, endpoint: &str) -> Result<(), String> {
    use rtc::peer_connection::sdp::RTCSessionDescription;
    use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
    let e = |e: rtc::shared::error::Error| e.to_string();
    let candidate = CandidateHostConfig { base_config: CandidateConfig { network: "udp".to_owned(), address: local.ip().to_string(), port: local.port(), component: 1, ..Default::default() }, ..Default::default() }.new_candidate_host().map_err(e)?;
    pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().map_err(e)?).map_err(e)?;
    let offer = pc.create_offer(None).map_err(e)?;
    pc.set_local_description(Instant::now(), offer).map_err(e)?;
    let sdp = pc.local_description().map(|d| d.sdp).ok_or("no offer")?;
    let (port, path) = (target.port, format!("/rtc/v1/{endpoint}/?app={}&stream={}", target.app, target.stream));
    let response = tokio::task::spawn_blocking(move || estuary_tests::http::send(port, "POST", &path, &[("Content-Type", "application/sdp")], sdp.as_bytes()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if response.status != 201 {
        return Err(format!("{} answered {}: {}", endpoint.to_uppercase(), response.status, String::from_utf8_lossy(&response.body)));
    }
    let answer = RTCSessionDescription::answer(String::from_utf8_lossy(&response.body).into_owned()).map_err(e)?;
    pc.set_remote_description(Instant::now(), answer).map_err(e)
}

/// A WHEP player: `rtc` (the sans-IO WebRTC core Estuary also uses, driven here as a plain
/// offerer with full ICE) on its own UDP socket; H.264 is reassembled by our depacketizer so
/// the latency stamp can be read. Opus packets count as delivered bytes.
/// The video payload type the WHEP player offers (H.264 constrained baseline).
const WHEP_VIDEO_PT: u8 = 102;

async fn whep_player(target: Target, stats: Arc<PlayerStats>, ice_check: Duration, drop_every: u64, pli_every: Option<Duration>) -> Result<(), String> {
    use estuary_protocols::media::{Codec, Timebase};
    use estuary_protocols::rtp::RtpPacket;
    use estuary_protocols::rtp::h264::H264Depacketizer;
    use rtc::interceptor::Registry;
    use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
    use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS};
    use rtc::peer_connection::configuration::RTCConfigurationBuilder;
    use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
    use rtc::peer_connection::RTCPeerConnectionBuilder;
    use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
    use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
    use rtc::sansio::Protocol;
    use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

    let e = |e: rtc::shared::error::Error| e.to_string();
    let socket = tokio::net::UdpSocket::bind((target.host.as_str(), 0)).await.map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut media = MediaEngine::default();
    let codec = |mime: &str, clock_rate, channels, fmtp: &str, payload_type| RTCRtpCodecParameters { rtp_codec: RTCRtpCodec { mime_type: mime.to_owned(), clock_rate, channels, sdp_fmtp_line: fmtp.to_owned(), rtcp_feedback: vec![] }, payload_type };
    media.register_codec(codec(MIME_TYPE_H264, 90_000, 0, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", WHEP_VIDEO_PT), RtpCodecKind::Video).map_err(e)?;
    media.register_codec(codec(MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1", 111), RtpCodecKind::Audio).map_err(e)?;
    let registry = register_default_interceptors(Registry::new(), &mut media).map_err(e)?;
    let settings = rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder::new().with_ice_connection_attempts(Some(ice_check), None).build();
    let mut pc = RTCPeerConnectionBuilder::new().with_configuration(RTCConfigurationBuilder::new().build()).with_setting_engine(settings).with_media_engine(media).with_interceptor_registry(registry).build(Instant::now()).map_err(e)?;
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        pc.add_transceiver_from_kind(kind, Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() })).map_err(e)?;
    }
    stats.connect_us.store(now_us(), Ordering::Relaxed);
    negotiate(&mut pc, local, &target, "whep").await?;
    let mut depacketizer = H264Depacketizer::new();
    let mut buf = vec![0u8; 2048];
    // Sequence numbers of video datagrams thrown away and not seen again yet.
    let mut dropped = std::collections::HashSet::<u16>::new();
    let mut video_datagrams = 0u64;
    // The newest video sequence number seen: only datagrams beyond it are new (a copy sent
    // again for a NACK is behind it and is never thrown away).
    let mut newest: Option<u16> = None;
    // The video track's id and sender SSRC, once a packet of it arrived (keyframe requests
    // name them), and when the next request is due.
    let mut video_track: Option<(String, u32)> = None;
    let mut next_pli = Instant::now();
    loop {
        if let (Some(every), Some((track, ssrc))) = (pli_every, video_track.as_ref()) {
            if Instant::now() >= next_pli {
                use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
                let pli: Vec<Box<dyn rtc::rtcp::Packet>> = vec![Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc: *ssrc })];
                if pc.handle_write(TaggedRTCMessage { now: Instant::now(), message: RTCMessage::RtcpPacket(track.clone(), pli) }).is_ok() {
                    stats.pli_sent.fetch_add(1, Ordering::Relaxed);
                }
                next_pli = Instant::now() + every;
            }
        }
        while let Some(out) = pc.poll_write() {
            let _ = socket.send_to(&out.message, out.transport.peer_addr).await;
        }
        while pc.poll_event().is_some() {}
        while let Some(TaggedRTCMessage { message, .. }) = pc.poll_read() {
            let RTCMessage::RtpPacket(track, packet) = message else { continue };
            if packet.header.payload_type == WHEP_VIDEO_PT && video_track.is_none() {
                video_track = Some((track, packet.header.ssrc));
            }
            if packet.header.payload_type == WHEP_VIDEO_PT && dropped.remove(&packet.header.sequence_number) {
                stats.rtp_recovered.fetch_add(1, Ordering::Relaxed);
            }
            stats.bytes.fetch_add(packet.payload.len() as u64 + 12, Ordering::Relaxed);
            if packet.header.payload_type == 111 {
                continue;
            }
            let rtp = RtpPacket { payload_type: packet.header.payload_type, marker: packet.header.marker, sequence: packet.header.sequence_number, timestamp: packet.header.timestamp, ssrc: packet.header.ssrc, payload: packet.payload };
            if let Some(unit) = depacketizer.push(&rtp) {
                // Parameter sets go in front of keyframes; the stamp is the next NAL unit.
                let nals: Vec<&[u8]> = unit.nals.iter().map(|n| &n[..]).filter(|n| !matches!(n[0] & 0x1f, 7 | 8)).collect();
                let payload = estuary_protocols::codec::avc::to_length_prefixed(nals);
                let frame = MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts: unit.timestamp as i64, pts: unit.timestamp as i64, timebase: Timebase::MPEG, keyframe: unit.keyframe, config: false, payload };
                stats.frame(&frame);
            }
        }
        let now = Instant::now();
        let mut deadline = pc.poll_timeout().unwrap_or(now + Duration::from_millis(100)).min(now + Duration::from_millis(500));
        if pli_every.is_some() && video_track.is_some() {
            deadline = deadline.min(next_pli.max(now));
        }
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, from) = received.map_err(|e| e.to_string())?;
                // SRTP leaves the RTP header readable: version 2, payload type, sequence.
                // From 2 s after the first keyframe: the cached GOP a player starts with comes
                // in one burst, further ahead of a lost packet than SRTP's replay window (64
                // packets in webrtc-rs) lets a late copy in.
                let settled = stats.playing() && now_us().saturating_sub(stats.first_key_us.load(Ordering::Relaxed)) > 2_000_000;
                if drop_every > 0 && settled && n >= 12 && buf[0] >> 6 == 2 && buf[1] & 0x7f == WHEP_VIDEO_PT {
                    let sequence = u16::from_be_bytes([buf[2], buf[3]]);
                    let new = newest.is_none_or(|n| sequence.wrapping_sub(n).wrapping_sub(1) < 0x8000);
                    if new {
                        newest = Some(sequence);
                        video_datagrams += 1;
                        if video_datagrams % drop_every == 0 {
                            dropped.insert(sequence);
                            stats.rtp_dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                }
                let input = TaggedBytesMut { now: Instant::now(), transport: TransportContext { local_addr: local, peer_addr: from, ecn: None, transport_protocol: TransportProtocol::UDP }, message: bytes::BytesMut::from(&buf[..n]) };
                let _ = pc.handle_read(input);
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                let _ = pc.handle_timeout(Instant::now());
            }
        }
    }
}

fn load_clip(path: &PathBuf) -> Result<(Vec<MediaFrame>, i64), String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut demuxer = FlvDemuxer::default();
    demuxer.push(&data);
    let mut frames = Vec::new();
    while let Some(tag) = demuxer.next_tag().map_err(|e| e.to_string())? {
        let body = Bytes::from(tag.body.to_vec());
        let frame = match tag.tag_type {
            TAG_VIDEO => flv::video_body_to_frame(tag.timestamp as i64, &body).ok().flatten(),
            TAG_AUDIO => flv::audio_body_to_frame(tag.timestamp as i64, &body).ok().flatten(),
            _ => None,
        };
        frames.extend(frame);
    }
    let duration = frames.iter().map(|f| f.dts).max().unwrap_or(0) + 40;
    if frames.iter().all(|f| !f.is_video_keyframe()) {
        return Err("clip has no H.264 keyframe".into());
    }
    Ok((frames, duration))
}

/// An AI tap client: a WebSocket (RFC 6455, read only: the server sends unmasked whole
/// frames and never pings) taking decoded PCM chunks. A chunk's delay is its arrival against
/// when the publisher sent the audio of its stream time (bytes 4-11 of its header, µs).
async fn tap_player(target: Target, stats: Arc<PlayerStats>) -> Result<(), String> {
    let mut socket = TcpStream::connect((target.host.as_str(), target.port)).await.map_err(|e| e.to_string())?;
    socket.set_nodelay(true).ok();
    stats.connect_us.store(now_us(), Ordering::Relaxed);
    let request = format!(
        "GET /tap/{}/{} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.app, target.stream, target.host, target.port
    );
    socket.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = socket.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 || buffer.len() > 16 * 1024 {
            return Err("no WebSocket handshake answer".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    if !buffer.starts_with(b"HTTP/1.1 101") {
        return Err(format!("tap refused: {}", String::from_utf8_lossy(&buffer[..head_end.min(200)])));
    }
    buffer.drain(..head_end);
    loop {
        // Whole frames out of the buffer.
        loop {
            if buffer.len() < 2 {
                break;
            }
            let opcode = buffer[0] & 0x0f;
            let (len, header) = match buffer[1] & 0x7f {
                126 if buffer.len() >= 4 => (u16::from_be_bytes([buffer[2], buffer[3]]) as usize, 4),
                127 if buffer.len() >= 10 => (u64::from_be_bytes(buffer[2..10].try_into().unwrap_or_default()) as usize, 10),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buffer.len() < header + len {
                break;
            }
            let now = now_us();
            let payload = &buffer[header..header + len];
            match opcode {
                2 if payload.len() >= 20 => {
                    stats.bytes.fetch_add(len as u64, Ordering::Relaxed);
                    stats.last_frame_us.store(now, Ordering::Relaxed);
                    if stats.first_key_us.load(Ordering::Relaxed) == 0 {
                        stats.first_key_us.store(now, Ordering::Relaxed);
                    }
                    let stream_us = i64::from_be_bytes(payload[4..12].try_into().unwrap_or_default());
                    let start = PUBLISH_START_US.load(Ordering::Relaxed);
                    let live = now.saturating_sub(stats.first_key_us.load(Ordering::Relaxed)) > 3_000_000;
                    if start > 0 && live && stream_us >= 0 {
                        let mut delays = stats.delays_us.lock().unwrap_or_else(|e| e.into_inner());
                        if delays.len() < 1000 {
                            delays.push(now.saturating_sub(start + stream_us as u64));
                        }
                    }
                }
                1 => {
                    let text = String::from_utf8_lossy(payload);
                    if text.contains("\"lost\"") {
                        let lost = text.split("\"chunks\":").nth(1).and_then(|rest| rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse::<u64>().ok())).unwrap_or(1);
                        TAP_LOST.fetch_add(lost, Ordering::Relaxed);
                    } else if text.contains("\"end\"") {
                        return Ok(());
                    }
                }
                8 => return Ok(()),
                _ => {}
            }
            buffer.drain(..header + len);
        }
        let n = socket.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// The clip's frame `frame` in loop `round`: timestamps moved on by whole clips, and a video
/// frame latency-stamped (an SEI NAL unit in front carrying the send time).
fn stamped(frame: &MediaFrame, round: i64, clip_ms: i64) -> MediaFrame {
    let mut out = frame.shifted(round * clip_ms);
    if out.track == TrackKind::Video {
        let stamp = stamp_nal(now_us());
        let mut payload = (stamp.len() as u32).to_be_bytes().to_vec();
        payload.extend_from_slice(&stamp);
        payload.extend_from_slice(&frame.payload);
        out.payload = Bytes::from(payload);
    }
    out
}

/// Publishes the clip to `target` over its protocol, looped and paced in real time.
async fn publisher(target: Target, clip: Arc<Vec<MediaFrame>>, clip_ms: i64, ready: tokio::sync::oneshot::Sender<()>, ice_check: Duration) -> Result<(), String> {
    match target.protocol {
        "srt" => srt_publisher(target, clip, clip_ms, ready).await,
        "whip" => whip_publisher(target, clip, clip_ms, ready, ice_check).await,
        _ => rtmp_publisher(target, clip, clip_ms, ready).await,
    }
}

async fn rtmp_publisher(target: Target, clip: Arc<Vec<MediaFrame>>, clip_ms: i64, ready: tokio::sync::oneshot::Sender<()>) -> Result<(), String> {
    let mut socket = TcpStream::connect((target.host.as_str(), target.port)).await.map_err(|e| e.to_string())?;
    socket.set_nodelay(true).ok();
    let tc_url = format!("rtmp://{}:{}/{}", target.host, target.port, target.app);
    let mut session = ClientSession::new(ClientConfig::new(&target.app, &tc_url, &target.stream, ClientMode::Publish));
    let mut buf = vec![0u8; 64 * 1024];
    'handshake: loop {
        while let Some(output) = session.poll_output() {
            match output {
                ClientOutput::Transmit(bytes) => socket.write_all(&bytes).await.map_err(|e| e.to_string())?,
                ClientOutput::Event(ClientEvent::Publishing) => break 'handshake,
                ClientOutput::Event(ClientEvent::Rejected { description, .. }) => return Err(description),
                ClientOutput::Event(_) => {}
            }
        }
        let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("server closed during publish".into());
        }
        session.handle_input(&buf[..n]).map_err(|e| e.to_string())?;
    }
    let _ = ready.send(());
    let (mut read_half, mut write_half) = socket.into_split();
    // Drain what the server sends (acks, pings) so it never blocks.
    tokio::spawn(async move {
        let mut sink = vec![0u8; 16 * 1024];
        while matches!(read_half.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let start = Instant::now();
    PUBLISH_START_US.store(now_us(), Ordering::Relaxed);
    for config in clip.iter().filter(|f| f.config) {
        session.send_frame(config);
    }
    for round in 0i64.. {
        for frame in clip.iter().filter(|f| !f.config) {
            let due = start + Duration::from_millis((frame.dts + round * clip_ms).max(0) as u64);
            tokio::time::sleep_until(due.into()).await;
            session.send_frame(&stamped(frame, round, clip_ms));
            while let Some(output) = session.poll_output() {
                if let ClientOutput::Transmit(bytes) = output {
                    write_half.write_all(&bytes).await.map_err(|e| e.to_string())?;
                }
            }
        }
    }
    Ok(())
}

/// An SRT publisher: the clip muxed to MPEG-TS (tables before every keyframe), each frame's
/// packets sent at once in payloads of up to seven TS packets, as encoders do.
async fn srt_publisher(target: Target, clip: Arc<Vec<MediaFrame>>, clip_ms: i64, ready: tokio::sync::oneshot::Sender<()>) -> Result<(), String> {
    use futures_util::SinkExt;
    let stream_id = format!("#!::r={}/{},m=publish", target.app, target.stream);
    let address = format!("{}:{}", target.host, target.port);
    let mut socket = srt_tokio::SrtSocket::builder().latency(Duration::from_millis(120)).call(address.as_str(), Some(&stream_id)).await.map_err(|e| e.to_string())?;
    let _ = ready.send(());
    let codec = |track| clip.iter().find(|f| f.track == track).map(|f| f.codec);
    let mut muxer = TsMuxer::new(codec(TrackKind::Video), codec(TrackKind::Audio));
    let mut ts = BytesMut::new();
    for config in clip.iter().filter(|f| f.config) {
        muxer.write_frame(config, &mut ts);
    }
    let start = Instant::now();
    for round in 0i64.. {
        for frame in clip.iter().filter(|f| !f.config) {
            let due = start + Duration::from_millis((frame.dts + round * clip_ms).max(0) as u64);
            tokio::time::sleep_until(due.into()).await;
            if frame.is_video_keyframe() {
                muxer.write_tables(&mut ts);
            }
            muxer.write_frame(&stamped(frame, round, clip_ms), &mut ts);
            while !ts.is_empty() {
                let chunk = ts.split_to(ts.len().min(7 * 188)).freeze();
                socket.send((Instant::now(), chunk)).await.map_err(|e| format!("SRT send: {e}"))?;
            }
        }
    }
    Ok(())
}

/// A WHIP publisher: `rtc` as the offerer with full ICE, sending the clip's H.264 (parameter
/// sets in front of keyframes, cut by our packetizer) once connected.
async fn whip_publisher(target: Target, clip: Arc<Vec<MediaFrame>>, clip_ms: i64, ready: tokio::sync::oneshot::Sender<()>, ice_check: Duration) -> Result<(), String> {
    use estuary_protocols::codec::avc::{self, AvcConfig};
    use rtc::interceptor::Registry;
    use rtc::media_stream::MediaStreamTrack;
    use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
    use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_H264};
    use rtc::peer_connection::configuration::RTCConfigurationBuilder;
    use rtc::peer_connection::event::RTCPeerConnectionEvent;
    use rtc::peer_connection::state::RTCPeerConnectionState;
    use rtc::peer_connection::RTCPeerConnectionBuilder;
    use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
    use rtc::sansio::Protocol;
    use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

    let e = |e: rtc::shared::error::Error| e.to_string();
    let socket = tokio::net::UdpSocket::bind((target.host.as_str(), 0)).await.map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut media = MediaEngine::default();
    let h264 = RTCRtpCodec { mime_type: MIME_TYPE_H264.to_owned(), clock_rate: 90_000, channels: 0, sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".to_owned(), rtcp_feedback: vec![] };
    media.register_codec(RTCRtpCodecParameters { rtp_codec: h264.clone(), payload_type: 102 }, RtpCodecKind::Video).map_err(e)?;
    let registry = register_default_interceptors(Registry::new(), &mut media).map_err(e)?;
    let settings = rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder::new().with_ice_connection_attempts(Some(ice_check), None).build();
    let mut pc = RTCPeerConnectionBuilder::new().with_configuration(RTCConfigurationBuilder::new().build()).with_setting_engine(settings).with_media_engine(media).with_interceptor_registry(registry).build(Instant::now()).map_err(e)?;
    // Distinct per publisher (the time and the stream name mixed); need not be unpredictable.
    let seed = target.stream.bytes().fold(now_us() | 1, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    let ssrc = (seed >> 32) as u32;
    let track = MediaStreamTrack::new("load".to_owned(), "load-video".to_owned(), "load video".to_owned(), RtpCodecKind::Video, vec![RTCRtpEncodingParameters { rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() }, codec: h264, ..Default::default() }]);
    let sender = pc.add_track(track).map_err(e)?;
    negotiate(&mut pc, local, &target, "whip").await?;

    let mut config: Option<AvcConfig> = clip.iter().find(|f| f.config && f.track == TrackKind::Video).and_then(|f| AvcConfig::parse(&f.payload).ok());
    let frames: Vec<&MediaFrame> = clip.iter().filter(|f| !f.config && f.track == TrackKind::Video).collect();
    if frames.is_empty() || config.is_none() {
        return Err("WHIP publishers send the clip's H.264, and it has none".into());
    }
    let (mut ready, mut connected) = (Some(ready), false);
    let (mut start, mut next, mut round, mut sequence) = (Instant::now(), 0usize, 0i64, seed as u16);
    let offset = (seed >> 16) as u32;
    let mut payload_type = None;
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some(out) = pc.poll_write() {
            let _ = socket.send_to(&out.message, out.transport.peer_addr).await;
        }
        while let Some(event) = pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(RTCPeerConnectionState::Connected) if !connected => {
                    connected = true;
                    start = Instant::now();
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) => return Err("WHIP connection failed".into()),
                _ => {}
            }
        }
        while pc.poll_read().is_some() {}
        let now = Instant::now();
        if connected {
            // Every frame that is due goes out now.
            loop {
                let frame = frames[next];
                let due = start + Duration::from_millis((frame.dts + round * clip_ms).max(0) as u64);
                if due > now {
                    break;
                }
                let out = stamped(frame, round, clip_ms);
                let Some(avc) = config.as_mut() else { return Err("clip has no H.264 configuration".into()) };
                let mut nals: Vec<&[u8]> = Vec::new();
                if out.keyframe {
                    nals.extend(avc.sps.iter().map(|b| &b[..]));
                    nals.extend(avc.pps.iter().map(|b| &b[..]));
                }
                nals.extend(avc::length_prefixed_nals(&out.payload, avc.nal_length_size as usize).filter(|n| !n.is_empty() && !matches!(avc::nal_type(n[0]), 7..=9)));
                let payloads = estuary_protocols::rtp::h264::packetize(&avc::to_length_prefixed(nals), 1200);
                let timestamp = offset.wrapping_add((out.dts * 90) as u32);
                let Some(mut rtp_sender) = pc.rtp_sender(sender) else { return Err("WHIP sender gone".into()) };
                if payload_type.is_none() {
                    payload_type = rtp_sender.get_parameters().rtp_parameters.codecs.first().map(|c| c.payload_type);
                }
                let last = payloads.len().saturating_sub(1);
                for (i, payload) in payloads.into_iter().enumerate() {
                    let header = rtc::rtp::Header { version: 2, marker: i == last, payload_type: payload_type.unwrap_or(102), sequence_number: sequence, timestamp, ssrc, ..Default::default() };
                    sequence = sequence.wrapping_add(1);
                    rtp_sender.write_rtp(now, rtc::rtp::Packet { header, payload }).map_err(e)?;
                }
                next += 1;
                if next == frames.len() {
                    next = 0;
                    round += 1;
                }
            }
            while let Some(out) = pc.poll_write() {
                let _ = socket.send_to(&out.message, out.transport.peer_addr).await;
            }
        }
        let mut deadline = pc.poll_timeout().unwrap_or(now + Duration::from_millis(100)).min(now + Duration::from_millis(500));
        if connected {
            deadline = deadline.min(start + Duration::from_millis((frames[next].dts + round * clip_ms).max(0) as u64));
        }
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, from) = received.map_err(|e| e.to_string())?;
                let input = TaggedBytesMut { now: Instant::now(), transport: TransportContext { local_addr: local, peer_addr: from, ecn: None, transport_protocol: TransportProtocol::UDP }, message: BytesMut::from(&buf[..n]) };
                let _ = pc.handle_read(input);
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                let _ = pc.handle_timeout(Instant::now());
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("estuary-load: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let target = parse_target(&args.url)?;
    if args.players == 0 || args.players > MAX_PLAYERS {
        return Err(format!("--players must be 1..={MAX_PLAYERS}"));
    }
    if args.hold_s == 0 || args.hold_s > MAX_HOLD_S {
        return Err(format!("--hold-s must be 1..={MAX_HOLD_S}"));
    }
    if args.streams == 0 || args.streams > MAX_STREAMS {
        return Err(format!("--streams must be 1..={MAX_STREAMS}"));
    }
    // Stream `i` of the run: the target itself when there is one stream.
    let streams = args.streams;
    let nth = move |target: &Target, i: usize| {
        let mut target = target.clone();
        if streams > 1 {
            // A tap URL's query stays after the stream name.
            target.stream = match target.stream.split_once('?') {
                Some((name, query)) => format!("{name}-{i}?{query}"),
                None => format!("{}-{i}", target.stream),
            };
        }
        target
    };
    let ice_check = Duration::from_millis(args.ice_check_ms.max(1));
    let mut publish_protocol = None;
    let publisher_errors = Arc::new(AtomicU64::new(0));
    if let Some(clip) = &args.clip {
        let publish_url = args.publish_url.clone().unwrap_or_else(|| args.url.clone());
        let publish_target = parse_target(&publish_url)?;
        if !matches!(publish_target.protocol, "rtmp" | "srt" | "whip") {
            return Err("--publish-url must be an rtmp://, srt:// (m=publish) or WHIP URL".into());
        }
        publish_protocol = Some(publish_target.protocol);
        let (frames, clip_ms) = load_clip(clip)?;
        let frames = Arc::new(frames);
        let mut ready = Vec::with_capacity(streams);
        for i in 0..streams {
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            ready.push(ready_rx);
            let (target, frames, errors) = (nth(&publish_target, i), frames.clone(), publisher_errors.clone());
            tokio::spawn(async move {
                let name = format!("{}/{}", target.app, target.stream);
                if let Err(e) = publisher(target, frames, clip_ms, ready_tx, ice_check).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("estuary-load: publisher of {name}: {e}");
                }
            });
            if streams > 1 {
                // Publishers start 10 ms apart, not as one burst of handshakes.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let wait = Duration::from_secs(10 + streams as u64 / 10);
        for (i, ready_rx) in ready.into_iter().enumerate() {
            tokio::time::timeout(wait, ready_rx).await.map_err(|_| format!("publisher {i} did not start within {wait:?}"))?.map_err(|_| format!("publisher {i} failed"))?;
        }
        // Let a GOP pass so late joiners find a cached keyframe.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let batch = Duration::from_millis(args.read_batch_ms);
    let lowat = args.read_lowat;
    let srt_latency = Duration::from_millis(args.srt_latency_ms);
    let hls_gzip = !args.hls_plain;
    let drop_video_every = args.drop_video_every;
    let pli_every = (args.pli_every_ms > 0).then(|| Duration::from_millis(args.pli_every_ms));
    let mut players = Vec::with_capacity(args.players);
    let errors = Arc::new(AtomicU64::new(0));
    let step = Duration::from_micros(args.ramp_ms * 1000 / args.players as u64);
    for index in 0..args.players {
        let stats = Arc::new(PlayerStats::default());
        players.push(stats.clone());
        let player = stats.clone();
        let target = nth(&target, index % streams);
        let errors = errors.clone();
        tokio::spawn(async move {
            let result = match target.protocol {
                "rtmp" => rtmp_player(target, stats, batch, lowat).await,
                "srt" => srt_player(target, stats, srt_latency).await,
                "whep" => whep_player(target, stats, ice_check, drop_video_every, pli_every).await,
                "hls" => hls_player(target, stats, hls_gzip).await,
                "tap" => tap_player(target, stats).await,
                _ => flv_player(target, stats, batch, lowat).await,
            };
            match result {
                Ok(()) => player.ended_us.store(now_us(), Ordering::Relaxed),
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        tokio::time::sleep(step).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let bytes_at = |players: &[Arc<PlayerStats>]| players.iter().map(|p| p.bytes.load(Ordering::Relaxed)).sum::<u64>();
    let hold_start = Instant::now();
    let bytes_start = bytes_at(&players);
    let cpu_start = args.server_pid.and_then(process_cpu_seconds);
    let mut rss_max = 0u64;
    let receiving_now = |players: &[Arc<PlayerStats>]| {
        let now = now_us();
        players.iter().filter(|p| now.saturating_sub(p.last_frame_us.load(Ordering::Relaxed)) < 2_000_000).count()
    };
    // Players receiving, sampled every 5 s of the hold: shows when players stopped, if any.
    let mut timeline = Vec::new();
    let mut next_sample = Duration::ZERO;
    while hold_start.elapsed() < Duration::from_secs(args.hold_s) {
        if hold_start.elapsed() >= next_sample {
            timeline.push(receiving_now(&players));
            next_sample += Duration::from_secs(5);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(pid) = args.server_pid {
            rss_max = rss_max.max(process_rss_kb(pid).unwrap_or(0));
        }
    }
    let held = hold_start.elapsed().as_secs_f64();
    let bytes_end = bytes_at(&players);
    let cpu_end = args.server_pid.and_then(process_cpu_seconds);
    let connected = players.iter().filter(|p| p.connect_us.load(Ordering::Relaxed) > 0).count();
    let receiving = receiving_now(&players);
    let ended = players.iter().filter(|p| p.ended_us.load(Ordering::Relaxed) > 0).count();
    let mut startup: Vec<f64> = players
        .iter()
        .filter_map(|p| {
            let (c, k) = (p.connect_us.load(Ordering::Relaxed), p.first_key_us.load(Ordering::Relaxed));
            (c > 0 && k >= c).then(|| (k - c) as f64 / 1000.0)
        })
        .collect();
    let mut delays: Vec<f64> = players.iter().flat_map(|p| p.delays_us.lock().unwrap_or_else(|e| e.into_inner()).clone()).map(|d| d as f64 / 1000.0).collect();
    let cpu_percent = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) => Some((b - a) / held * 100.0),
        _ => None,
    };
    let startup = median_p99(&mut startup);
    let delay = median_p99(&mut delays);
    let mbps = (bytes_end - bytes_start) as f64 * 8.0 / held / 1e6;
    let result = serde_json::json!({
        "label": args.label,
        "protocol": target.protocol,
        "players": args.players,
        "connected": connected,
        "receiving_at_end": receiving,
        "receiving_every_5s": timeline,
        "ended_by_server": ended,
        "player_errors": errors.load(Ordering::Relaxed),
        "streams": streams,
        "publish_protocol": publish_protocol,
        "publisher_errors": publisher_errors.load(Ordering::Relaxed),
        "tap_chunks_lost": (target.protocol == "tap").then(|| TAP_LOST.load(Ordering::Relaxed)),
        "rtp_dropped": (args.drop_video_every > 0).then(|| players.iter().map(|p| p.rtp_dropped.load(Ordering::Relaxed)).sum::<u64>()),
        "rtp_recovered": (args.drop_video_every > 0).then(|| players.iter().map(|p| p.rtp_recovered.load(Ordering::Relaxed)).sum::<u64>()),
        "pli_sent": (args.pli_every_ms > 0).then(|| players.iter().map(|p| p.pli_sent.load(Ordering::Relaxed)).sum::<u64>()),
        "read_batch_ms": if matches!(target.protocol, "srt" | "whep" | "hls" | "tap") { None } else { Some(args.read_batch_ms) },
        "read_lowat": if matches!(target.protocol, "srt" | "whep" | "hls" | "tap") || args.read_lowat == 0 { None } else { Some(args.read_lowat) },
        "srt_latency_ms": (target.protocol == "srt").then_some(args.srt_latency_ms),
        "delivered_mbps": (mbps * 10.0).round() / 10.0,
        "startup_ms_median": startup.map(|s| (s.0 * 10.0).round() / 10.0),
        "startup_ms_p99": startup.map(|s| (s.1 * 10.0).round() / 10.0),
        "delay_ms_median": delay.map(|d| (d.0 * 10.0).round() / 10.0),
        "delay_ms_p99": delay.map(|d| (d.1 * 10.0).round() / 10.0),
        "server_cpu_percent": cpu_percent.map(|c| (c * 10.0).round() / 10.0),
        "server_rss_kb_max": if rss_max > 0 { Some(rss_max) } else { None },
        "hold_s": held,
    });
    println!("{result}");
    Ok(())
}
