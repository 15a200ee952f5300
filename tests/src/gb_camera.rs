//! A GB28181 camera's media side: an MP4 clip (H.264 or H.265, with AAC) sent as MPEG-PS over RTP over
//! TCP (RFC 4571), paced in real time and looped, the way devices and SRS's own simulator do
//! it: a pack header before every frame, system-level stream map before keyframes, each PS
//! piece cut into RTP packets of at most 1400 bytes, payload type 96, one SSRC.

use bytes::Bytes;
use estuary_protocols::codec::aac::AacConfig;
use estuary_protocols::codec::avc::{self, AvcConfig};
use estuary_protocols::media::Codec;
use estuary_protocols::container::mp4::{read_moov, top_level_box};
use estuary_protocols::container::ps::mux;
use estuary_protocols::rtp::{frame_4571, RtpPacket};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the camera sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing wrong.
    None,
    /// After `after` packets, one RFC 4571 length of 3 (no RTP packet is that short).
    BogusLength {
        /// Packets sent first.
        after: usize,
    },
    /// After `after` packets, a PS pack cut short (half a frame), then normal packs again.
    TruncatedPs {
        /// Packets sent first.
        after: usize,
    },
    /// Over UDP: every fifth packet of a frame is sent after the one that follows it, as a
    /// network path that reorders does.
    Reorder,
}

/// A camera streaming in a background thread until stopped or the connection fails.
pub struct Camera {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<usize, String>>>,
}

impl Camera {
    /// Connects to `127.0.0.1:port` and streams `clip` with `ssrc` for `seconds`.
    pub fn start(port: u16, ssrc: u32, clip: &Path, seconds: f64, fault: Fault) -> Camera {
        Camera::start_with(port, ssrc, clip, seconds, fault, false)
    }

    /// Like [`Camera::start`]; with `g711`, the audio is a 440 Hz tone in G.711 A-law (8 kHz,
    /// 20 ms packets) instead of the clip's AAC, as most cameras send.
    pub fn start_with(port: u16, ssrc: u32, clip: &Path, seconds: f64, fault: Fault, g711: bool) -> Camera {
        Camera::start_over(port, ssrc, clip, seconds, fault, g711, false)
    }

    /// Like [`Camera::start_with`]; with `udp`, one RTP packet per datagram to the port
    /// instead of RFC 4571 over TCP.
    pub fn start_over(port: u16, ssrc: u32, clip: &Path, seconds: f64, fault: Fault, g711: bool, udp: bool) -> Camera {
        let stop = Arc::new(AtomicBool::new(false));
        let data = std::fs::read(clip).expect("clip");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || run(port, ssrc, Bytes::from(data), seconds, fault, flag, g711, udp));
        Camera { stop, thread: Some(thread) }
    }

    /// Stops and returns how many RTP packets went out, or why it failed.
    pub fn finish(mut self) -> Result<usize, String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_else(|_| Err("camera thread panicked".into())))
            .unwrap_or(Ok(0))
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Unit {
    at: f64,
    video: bool,
    key: bool,
    pts: u64,
    dts: u64,
    data: Vec<u8>,
    hevc: bool,
}

fn units(data: &Bytes) -> Vec<Unit> {
    let moov = top_level_box(data, b"moov").expect("clip readable").expect("clip has a moov");
    let tracks = read_moov(moov).expect("clip readable");
    let mut out = Vec::new();
    for track in tracks {
        let scale = track.track.timescale as f64;
        match track.track.codec {
            Codec::H264 | Codec::H265 => {
                let hevc = track.track.codec == Codec::H265;
                // Access unit delimiter, the parameter sets (sent before keyframes) and the
                // length-prefix size, per codec.
                let (aud, parameter_sets, length_size): (&[u8], Vec<Bytes>, usize) = if hevc {
                    let (size, sets) = estuary_protocols::codec::hevc::config_parameter_sets(&track.track.config).expect("hvcC");
                    (&[0x46, 0x01, 0x50], sets, size as usize)
                } else {
                    let config = AvcConfig::parse(&track.track.config).expect("avcC");
                    (
                        &[0x09, 0xf0],
                        config.sps.iter().chain(config.pps.iter()).cloned().collect(),
                        config.nal_length_size as usize,
                    )
                };
                for s in &track.samples {
                    let payload = &data[s.offset as usize..(s.offset + s.size as u64) as usize];
                    let mut nals: Vec<&[u8]> = vec![aud];
                    if s.key {
                        nals.extend(parameter_sets.iter().map(|p| &p[..]));
                    }
                    nals.extend(avc::length_prefixed_nals(payload, length_size));
                    let es: Vec<u8> = nals.iter().flat_map(|nal| [0u8, 0, 0, 1].iter().chain(nal.iter()).copied()).collect();
                    let dts = (s.dts as f64 / scale * 90_000.0) as u64 + 90_000;
                    let pts = ((s.dts + s.cts as i64) as f64 / scale * 90_000.0) as u64 + 90_000;
                    out.push(Unit {
                        at: s.dts as f64 / scale,
                        video: true,
                        key: s.key,
                        pts,
                        dts,
                        data: es,
                        hevc,
                    });
                }
            }
            Codec::Aac => {
                let config = AacConfig::parse(&track.track.config).expect("ASC");
                for s in &track.samples {
                    let payload = &data[s.offset as usize..(s.offset + s.size as u64) as usize];
                    let mut es = config.adts_header(payload.len()).to_vec();
                    es.extend_from_slice(payload);
                    let ts = (s.dts as f64 / scale * 90_000.0) as u64 + 90_000;
                    out.push(Unit {
                        at: s.dts as f64 / scale,
                        video: false,
                        key: true,
                        pts: ts,
                        dts: ts,
                        data: es,
                        hevc: false,
                    });
                }
            }
            _ => {}
        }
    }
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    out
}

#[allow(clippy::too_many_arguments)]
fn run(port: u16, ssrc: u32, data: Bytes, seconds: f64, fault: Fault, stop: Arc<AtomicBool>, g711: bool, udp: bool) -> Result<usize, String> {
    let mut clip = units(&data);
    let clip_len = clip.last().map(|u| u.at + 0.04).unwrap_or(1.0);
    if g711 {
        clip.retain(|u| u.video);
        let packets = (clip_len / 0.02) as u64;
        for p in 0..packets {
            let data: Vec<u8> = (0..160u64)
                .map(|i| {
                    let n = (p * 160 + i) as f64;
                    estuary_transcode::audio::linear_to_alaw(((n * 440.0 * 2.0 * std::f64::consts::PI / 8000.0).sin() * 6000.0) as i16)
                })
                .collect();
            let ts = p * 1800 + 90_000;
            clip.push(Unit {
                at: p as f64 * 0.02,
                video: false,
                key: true,
                pts: ts,
                dts: ts,
                data,
                hevc: false,
            });
        }
        clip.sort_by(|a, b| a.at.total_cmp(&b.at));
    }
    let audio_type = if g711 { 0x90 } else { 0x0f };
    enum Out {
        Tcp(TcpStream),
        Udp(std::net::UdpSocket),
    }
    let mut out = if udp {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        socket.connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        Out::Udp(socket)
    } else {
        let socket = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        socket.set_nodelay(true).ok();
        Out::Tcp(socket)
    };
    let start = Instant::now();
    let mut sequence = 0u16;
    let mut sent = 0usize;
    let mut round = 0u64;
    loop {
        for unit in &clip {
            let at = unit.at + round as f64 * clip_len;
            if at > seconds || stop.load(Ordering::SeqCst) {
                return Ok(sent);
            }
            let due = start + Duration::from_secs_f64(at);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let shift = (round as f64 * clip_len * 90_000.0) as u64;
            let mut pack = mux::pack_header(unit.dts + shift);
            if unit.video && unit.key {
                pack.extend(mux::stream_map(&[(if unit.hevc { 0x24 } else { 0x1b }, 0xe0), (audio_type, 0xc0)]));
            }
            pack.extend(mux::pes(if unit.video { 0xe0 } else { 0xc0 }, unit.pts + shift, unit.dts + shift, &unit.data));
            if matches!(fault, Fault::TruncatedPs { after } if sent >= after && sent < after + 1) && unit.video {
                pack.truncate(pack.len() / 2);
            }
            let mut held: Option<Vec<u8>> = None;
            for piece in pack.chunks(1400) {
                let packet = RtpPacket {
                    payload_type: 96,
                    marker: false,
                    sequence,
                    timestamp: (unit.pts + shift) as u32,
                    ssrc,
                    payload: Bytes::copy_from_slice(piece),
                };
                sequence = sequence.wrapping_add(1);
                match &mut out {
                    Out::Tcp(socket) => {
                        if matches!(fault, Fault::BogusLength { after } if sent == after) {
                            socket.write_all(&[0, 3, 1, 2, 3]).map_err(|e| format!("write: {e}"))?;
                        }
                        socket.write_all(&frame_4571(&packet.to_bytes())).map_err(|e| format!("write: {e}"))?;
                    }
                    Out::Udp(socket) => {
                        if matches!(fault, Fault::Reorder) && sent % 5 == 0 && held.is_none() {
                            held = Some(packet.to_bytes().to_vec());
                        } else {
                            socket.send(&packet.to_bytes()).map_err(|e| format!("send: {e}"))?;
                            if let Some(late) = held.take() {
                                socket.send(&late).map_err(|e| format!("send: {e}"))?;
                            }
                        }
                    }
                }
                sent += 1;
            }
            if let (Out::Udp(socket), Some(late)) = (&mut out, held.take()) {
                socket.send(&late).map_err(|e| format!("send: {e}"))?;
            }
        }
        round += 1;
    }
}
