//! GB28181 media: PS over RTP over TCP (RFC 4571) from cameras, published as live streams.
//!
//! The media side. The SIP server ([`crate::gb28181::sip`]) or an external signalling
//! server (through `POST /gb/v1/publish/`) announces the SSRC a camera will put in its RTP;
//! over TCP (passive: the camera connects, RFC 4571 framing) or UDP (one RTP packet per
//! datagram, sessions by SSRC) the first packet's SSRC then selects the stream; PS payloads are demuxed
//! ([`estuary_protocols::container::ps`]) and the access units turned into frames like TS ones
//! (H.264, H.265, AAC); G.711 A-law and µ-law audio is transcoded to AAC (8 kHz mono,
//! libfdk-aac) so RTMP, FLV and HLS players get audio.
//!
//! Bad input costs only that connection: an RFC 4571 length no RTP packet can have, or a
//! packet that is not RTP version 2, closes it with the reason logged; bytes of a broken PS
//! pack are skipped up to the next start code; an unknown SSRC is refused.


pub mod sip;

use crate::node::clients::{self, Role};
use crate::node::bounded::BoundedMap;
use crate::node::NodeContext;
use crate::registry::StreamRegistry;
use actix::prelude::*;
use estuary_protocols::container::ps::PsDemuxer;
use estuary_protocols::rtp::{Rfc4571Reader, RtpPacket};
use estuary_protocols::rtp::reorder::ReorderBuffer;
use estuary_protocols::container::ts::TsFrameReader;
use estuary_storage::StreamKey;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// SSRCs remembered at most; the one announced longest ago goes first. (The API can
/// announce any number; each INVITE announces one.)
const MAX_SSRCS: usize = 65_536;

/// A node's GB28181 state shared by the SIP server, the media listeners and the API.
pub struct GbState {
    /// Announced SSRCs: the stream each belongs to, and the hosts its media may come from
    /// (the invited device's address, and the media address its answer's SDP names; empty
    /// for SSRCs announced through the API: any host); with the order of announcement.
    ssrcs: Mutex<BoundedMap<u32, Announced>>,
    /// The SIP server's command channel (set when it starts).
    pub(crate) commands: std::sync::OnceLock<tokio::sync::mpsc::Sender<crate::gb28181::sip::Command>>,
    /// Where media connections report that they ended (set when the SIP server starts).
    pub(crate) media_ended: std::sync::OnceLock<tokio::sync::mpsc::Sender<u32>>,
}

/// An announced SSRC's stream and the hosts allowed to send it (empty: any).
type Announced = (StreamKey, Vec<std::net::IpAddr>);

/// A camera's media connection must send its first packet within this time.
const FIRST_PACKET: Duration = Duration::from_secs(10);
/// A camera silent this long is dropped.
const IDLE: Duration = Duration::from_secs(20);
/// How long RTP over UDP waits for a packet that arrived out of order.
const UDP_REORDER_WAIT: Duration = Duration::from_millis(50);

impl Default for GbState {
    fn default() -> Self {
        GbState { ssrcs: Mutex::new(BoundedMap::new(MAX_SSRCS)), commands: Default::default(), media_ended: Default::default() }
    }
}

impl GbState {
    /// Expects media with `ssrc` for `key`, from the host `from` when known (an invited
    /// device), else from anywhere (the API's `/gb/v1/publish/`, for an external signalling
    /// server). Announcing the same SSRC and stream again with another host adds that host.
    pub fn expect(&self, ssrc: u32, key: StreamKey, from: Option<std::net::IpAddr>) {
        let mut ssrcs = self.ssrcs.lock().unwrap_or_else(|e| e.into_inner());
        match (ssrcs.get_mut(&ssrc), from) {
            (Some((known, hosts)), Some(host)) if *known == key && !hosts.is_empty() => {
                if !hosts.contains(&host) && hosts.len() < 8 {
                    hosts.push(host);
                }
            }
            (_, from) => {
                ssrcs.insert(ssrc, (key, from.into_iter().collect()));
            }
        }
    }

    /// The stream of an announced SSRC, if `peer` may send it.
    fn announced(&self, ssrc: u32, peer: SocketAddr) -> Result<StreamKey, String> {
        match self.ssrcs.lock().unwrap_or_else(|e| e.into_inner()).get(&ssrc).cloned() {
            None => Err(format!("unknown SSRC {ssrc}")),
            Some((_, hosts)) if !hosts.is_empty() && !hosts.iter().any(|h| h.to_canonical() == peer.ip().to_canonical()) => {
                let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
                Err(format!("SSRC {ssrc} was given to the device at {}, not {}", hosts.join(" or "), peer.ip()))
            }
            Some((key, _)) => Ok(key),
        }
    }

    /// Called by the media side when the connection carrying `ssrc` ended.
    pub(crate) fn media_ended(&self, ssrc: u32) {
        if let Some(tx) = self.media_ended.get() {
            if tx.try_send(ssrc).is_err() {
                tracing::warn!(ssrc, "GB28181 SIP task not keeping up; media-ended notice dropped (no re-INVITE for it)");
            }
        }
    }
}

/// Parses an SSRC as GB28181 writes it (ten decimal digits in `y=`), or `0x` hex.
pub fn parse_ssrc(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse::<u64>().ok().and_then(|v| u32::try_from(v).ok()),
    };
    parsed.ok_or_else(|| format!("ssrc {text:?} is not a 32-bit number"))
}

/// Binds the media listener (at boot, so a busy port fails the start).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Accepts camera media connections forever.
pub async fn serve(node: NodeContext, listener: std::net::TcpListener, registry: Addr<StreamRegistry>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "GB28181 media listener unusable");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let (node, registry) = (node.clone(), registry.clone());
                let counted = node.census.enter("gb28181_media");
                node.topology.workers.next().spawn(async move {
                    let _counted = counted;
                    let reason = connection(node, socket, peer, registry).await;
                    tracing::info!(%peer, %reason, "GB28181 media connection closed");
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "GB28181 media accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads what has arrived, waiting until `deadline` at most: the deadline runs from the
/// last complete packet, so a peer dripping bytes that never make one is dropped as well.
async fn read_some(socket: &mut tokio::net::TcpStream, buf: &mut [u8], deadline: Instant, what: Duration) -> Result<usize, String> {
    match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), socket.read(buf)).await {
        Err(_) => Err(format!("no complete RTP packet for {} s", what.as_secs())),
        Ok(Err(e)) => Err(format!("read failed: {e}")),
        Ok(Ok(0)) => Err("the camera closed the connection".into()),
        Ok(Ok(n)) => Ok(n),
    }
}

async fn connection(node: NodeContext, mut socket: tokio::net::TcpStream, peer: SocketAddr, registry: Addr<StreamRegistry>) -> String {
    let mut reader = Rfc4571Reader::default();
    let mut buf = vec![0u8; 64 * 1024];
    // The first packet names the stream.
    let first_deadline = Instant::now() + FIRST_PACKET;
    let first = loop {
        let n = match read_some(&mut socket, &mut buf, first_deadline, FIRST_PACKET).await {
            Ok(n) => n,
            Err(e) => return e,
        };
        reader.push(&buf[..n]);
        match reader.next_frame() {
            Ok(Some(frame)) => break frame,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "GB28181 media refused");
                return e.to_string();
            }
        }
    };
    let first = match RtpPacket::parse(first) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "GB28181 media refused");
            return e.to_string();
        }
    };
    let mut session = match MediaSession::open(node, &first, peer, registry, "tcp").await {
        Ok(session) => session,
        Err(e) => return e,
    };
    let reason = 'outer: {
        let mut packet = Some(first);
        let mut last_packet = Instant::now();
        loop {
            while let Some(p) = packet.take() {
                last_packet = Instant::now();
                let ssrc = p.ssrc;
                if let Err(e) = session.packet(p).await {
                    break 'outer e;
                }
                match reader.next_frame() {
                    Ok(Some(next)) => match RtpPacket::parse(next) {
                        Ok(next) if next.ssrc == ssrc => packet = Some(next),
                        Ok(next) => break 'outer format!("SSRC changed from {ssrc} to {} mid-connection", next.ssrc),
                        Err(e) => break 'outer format!("bad RTP: {e}"),
                    },
                    Ok(None) => {}
                    Err(e) => break 'outer format!("bad framing: {e}"),
                }
            }
            let n = match read_some(&mut socket, &mut buf, last_packet + IDLE, IDLE).await {
                Ok(n) => n,
                Err(e) => break e,
            };
            reader.push(&buf[..n]);
            match reader.next_frame() {
                Ok(Some(next)) => match RtpPacket::parse(next) {
                    Ok(next) => packet = Some(next),
                    Err(e) => break format!("bad RTP: {e}"),
                },
                Ok(None) => {}
                Err(e) => break format!("bad framing: {e}"),
            }
        }
    };
    session.close(&reason);
    reason
}

/// One camera's media, whatever carries it: RTP packets in, frames out to its stream.
struct MediaSession {
    node: NodeContext,
    peer: SocketAddr,
    key: StreamKey,
    guard: clients::ClientGuard,
    stream: crate::stream::PublisherLink,
    /// Over UDP frames are dropped (and counted) when the stream is behind; over TCP the
    /// session waits, which stops reading the camera's connection.
    datagram: bool,
    ssrc: u32,
    demuxer: PsDemuxer,
    frames: TsFrameReader,
    g711: G711Audio,
    expected_sequence: u16,
    lost: u64,
}

impl MediaSession {
    /// Claims the stream the SSRC of `first` was announced for.
    async fn open(node: NodeContext, first: &RtpPacket, peer: SocketAddr, registry: Addr<StreamRegistry>, transport: &'static str) -> Result<MediaSession, String> {
        let key = node.gb.announced(first.ssrc, peer).inspect_err(|reason| {
            tracing::warn!(%peer, ssrc = first.ssrc, %reason, "GB28181 media refused (an SSRC must be announced by an INVITE to this host, or POST /gb/v1/publish/)");
        })?;
        let guard = node.clients.register("gb28181", peer.to_string());
        // The camera proved itself with the SIP digest; CIDR rules and on_publish apply.
        let check = crate::access::Request { action: crate::access::auth::Action::Publish, client: guard.id(), ip: Some(peer.ip()), vhost: &key.vhost, app: &key.app, stream: &key.stream, params: &[] };
        node.access.check_without_token(&check).await.map_err(|refused| refused.to_string())?;
        let stream = crate::attach::claim_publish(registry, key.clone(), guard.id(), "gb28181").await.map_err(|e| {
            tracing::warn!(%peer, stream = %key, error = %e, "GB28181 publish refused");
            e.to_string()
        })?;
        guard.record().set_role(Role::Publish, key.to_string());
        tracing::info!(%peer, stream = %key, ssrc = first.ssrc, transport, "GB28181 publish started");
        Ok(MediaSession {
            node,
            peer,
            key,
            guard,
            stream,
            datagram: transport == "udp",
            ssrc: first.ssrc,
            demuxer: PsDemuxer::default(),
            frames: TsFrameReader::default(),
            g711: G711Audio::default(),
            expected_sequence: first.sequence,
            lost: 0,
        })
    }

    /// Takes one packet (in order; an older sequence number is a duplicate or late and is
    /// dropped).
    async fn packet(&mut self, p: RtpPacket) -> Result<(), String> {
        let ahead = p.sequence.wrapping_sub(self.expected_sequence);
        if ahead >= 0x8000 {
            return Ok(());
        }
        self.lost += u64::from(ahead);
        self.expected_sequence = p.sequence.wrapping_add(1);
        self.guard.record().add_in(p.payload.len());
        if let Err(e) = self.demuxer.push(&p.payload) {
            tracing::warn!(peer = %self.peer, stream = %self.key, error = %e, "bad PS from camera; frame dropped");
        }
        while let Some(unit) = self.demuxer.next_unit() {
            let converted = match unit.stream_type {
                0x90 | 0x91 => self.g711.convert(&unit, &mut self.frames, &self.key),
                _ => self.frames.frames(&unit),
            };
            for frame in converted {
                let pushed = if self.datagram { self.stream.push_or_drop(Arc::new(frame)).map(|_| ()) } else { self.stream.push(Arc::new(frame)).await };
                if pushed.is_err() {
                    return Err("the stream actor went away".into());
                }
            }
        }
        Ok(())
    }

    fn close(self, reason: &str) {
        if reason.starts_with("bad") {
            tracing::warn!(peer = %self.peer, stream = %self.key, %reason, "GB28181 media connection dropped");
        }
        if self.demuxer.skipped > 0 || self.lost > 0 {
            tracing::info!(peer = %self.peer, stream = %self.key, skipped_bytes = self.demuxer.skipped, lost_packets = self.lost, untyped_units = self.demuxer.untyped, "GB28181 media had gaps");
        }
        self.node.gb.media_ended(self.ssrc);
    }
}

/// Receives camera media over UDP (one RTP packet per datagram) on the media port: one
/// session per SSRC, ended after [`IDLE`] without packets.
pub async fn serve_udp(node: NodeContext, socket: std::net::UdpSocket, registry: Addr<StreamRegistry>) {
    let socket = match tokio::net::UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "GB28181 UDP media socket unusable");
            return;
        }
    };
    // By SSRC: the address the session's media comes from, and its inbox.
    let mut sessions: HashMap<u32, (SocketAddr, tokio::sync::mpsc::Sender<RtpPacket>)> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut bad = 0u64;
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else { continue };
        let packet = match RtpPacket::parse(bytes::Bytes::copy_from_slice(&buf[..n])) {
            Ok(p) => p,
            Err(e) => {
                bad += 1;
                if bad == 1 || bad.is_power_of_two() {
                    tracing::warn!(%peer, error = %e, count = bad, "bad RTP datagram on the GB28181 media port dropped");
                }
                continue;
            }
        };
        sessions.retain(|_, (_, tx)| !tx.is_closed());
        if let Some((source, tx)) = sessions.get(&packet.ssrc) {
            // A live session takes packets from its own source only: another host that
            // knows the SSRC cannot inject into it.
            if *source == peer {
                if tx.try_send(packet).is_err() {
                    node.stats.datagrams_dropped_gb28181.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            } else {
                bad += 1;
                if bad == 1 || bad.is_power_of_two() {
                    tracing::warn!(%peer, ssrc = packet.ssrc, source = %source, count = bad, "GB28181 UDP media for a live SSRC from another address; dropped");
                }
            }
            continue;
        }
        if let Err(reason) = node.gb.announced(packet.ssrc, peer) {
            bad += 1;
            if bad == 1 || bad.is_power_of_two() {
                tracing::warn!(%peer, ssrc = packet.ssrc, %reason, count = bad, "GB28181 UDP media dropped");
            }
            continue;
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RtpPacket>(1024);
        sessions.insert(packet.ssrc, (peer, tx));
        let (session_node, registry) = (node.clone(), registry.clone());
        let counted = node.census.enter("gb28181_media");
        node.topology.workers.next().spawn(async move {
            let _counted = counted;
            let mut session = match MediaSession::open(session_node, &packet, peer, registry, "udp").await {
                Ok(s) => s,
                Err(_) => return,
            };
            // UDP may reorder: packets pass a reorder buffer (no retransmissions here, so
            // a gap is given up on after a short wait) before the PS demuxer.
            let mut reorder = ReorderBuffer::new(UDP_REORDER_WAIT, 256);
            let origin = Instant::now();
            let mut ready = reorder.push(Duration::ZERO, packet);
            let mut reason = String::new();
            let mut last_packet = Instant::now();
            while reason.is_empty() {
                for p in ready.drain(..) {
                    if let Err(e) = session.packet(p).await {
                        reason = e;
                        break;
                    }
                }
                if !reason.is_empty() {
                    break;
                }
                let wait = reorder.deadline().map(|d| d.saturating_sub(origin.elapsed())).unwrap_or(IDLE).min(IDLE);
                match tokio::time::timeout(wait, rx.recv()).await {
                    Ok(Some(p)) => {
                        last_packet = Instant::now();
                        ready = reorder.push(origin.elapsed(), p);
                    }
                    Ok(None) => reason = "the media listener went away".into(),
                    Err(_) if last_packet.elapsed() >= IDLE => reason = format!("no media for {} s", IDLE.as_secs()),
                    Err(_) => ready = reorder.poll(origin.elapsed()),
                }
            }
            tracing::info!(%peer, %reason, "GB28181 UDP media session ended");
            session.close(&reason);
        });
    }
}

/// G.711 audio of one camera, transcoded to AAC (8 kHz mono) for every output.
#[derive(Default)]
struct G711Audio {
    transcoder: Option<estuary_transcode::audio::G711ToAac>,
    failed: bool,
}

impl G711Audio {
    fn convert(&mut self, unit: &estuary_protocols::container::ts::Pes, clock: &mut TsFrameReader, key: &StreamKey) -> Vec<estuary_protocols::MediaFrame> {
        use estuary_protocols::media::{Codec, MediaFrame, Timebase, TrackKind};
        let (Some(pts), false) = (unit.pts, self.failed) else { return Vec::new() };
        let mut out = Vec::new();
        if self.transcoder.is_none() {
            match estuary_transcode::audio::G711ToAac::new(unit.stream_type == 0x90) {
                Ok(t) => {
                    tracing::info!(stream = %key, law = if unit.stream_type == 0x90 { "A" } else { "mu" }, "G.711 audio transcoded to AAC");
                    let time = clock.audio_time(pts);
                    out.push(MediaFrame { track: TrackKind::Audio, codec: Codec::Aac, dts: time, pts: time, timebase: Timebase::MPEG, keyframe: true, config: true, payload: bytes::Bytes::copy_from_slice(t.config()) });
                    self.transcoder = Some(t);
                }
                Err(e) => {
                    tracing::warn!(stream = %key, error = %e, "G.711 audio cannot be transcoded; dropped");
                    self.failed = true;
                    return out;
                }
            }
        }
        let time = clock.audio_time(pts);
        let Some(transcoder) = self.transcoder.as_mut() else { return out };
        match transcoder.push(time, &unit.data) {
            Ok(frames) => out.extend(frames.into_iter().map(|(t, data)| MediaFrame { track: TrackKind::Audio, codec: Codec::Aac, dts: t, pts: t, timebase: Timebase::MPEG, keyframe: true, config: false, payload: bytes::Bytes::from(data) })),
            Err(e) => {
                tracing::warn!(stream = %key, error = %e, "G.711 transcoding failed; audio dropped");
                self.failed = true;
            }
        }
        out
    }
}
