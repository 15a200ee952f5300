//! Churn soak: publish -> play -> unpublish cycles over RTMP, SRT and WHIP, each stream
//! watched while it is live (RTMP and HTTP-FLV players, SRT players, WHEP players through
//! aiortc). Afterwards nothing is held that was not held before: the node's census of actors
//! and tasks (`/api/v1/tasks`), its clients and connections, its open files and threads are
//! back at their baseline, resident memory is within 10 % of where it was after the first
//! 500 cycles, and the stream history in sled is pruned to its bound.
//!
//! `SOAK_CYCLES=10000` runs the long form (figures in docs/SECURITY.md); the short form in
//! `tests/run` does 1,000.

use bytes::{Bytes, BytesMut};
use estuary_protocols::codec::avc::AvcConfig;
use estuary_protocols::container::ts::TsMuxer;
use estuary_protocols::media::{Codec, MediaFrame, Timebase, TrackKind};
use estuary_tests::rtmp_raw::{self, Publisher};
use estuary_tests::{aiortc, ffmpeg, http, wait_until, Node, Scratch};
use futures_util::{SinkExt, StreamExt};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A 320x240 High-profile SPS and its PPS (x264).
const SPS: [u8; 25] = [0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60];
const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

/// `seconds` of 25 fps video (a keyframe each second) after its configuration, in FLV's
/// length-prefixed form.
fn frames(seconds: i64) -> Vec<MediaFrame> {
    let video = |dts: i64, keyframe: bool, config: bool, payload: Bytes| MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts, pts: dts, timebase: Timebase::MILLIS, keyframe, config, payload };
    let nal = |kind: u8| {
        let mut payload = 600u32.to_be_bytes().to_vec();
        payload.push(kind);
        payload.resize(604, 0x5a);
        Bytes::from(payload)
    };
    let mut out = vec![video(0, true, true, AvcConfig::from_parameter_sets(&SPS, &PPS).expect("parameter sets").to_bytes())];
    for n in 0..seconds * 25 {
        let keyframe = n % 25 == 0;
        out.push(video(n * 40, keyframe, false, nal(if keyframe { 0x65 } else { 0x41 })));
    }
    out
}

/// One RTMP cycle: publish, maybe an RTMP player and an HTTP-FLV player reading while the
/// stream is live, then everyone leaves.
fn rtmp_cycle(node: &Node, name: &str, rtmp_player: bool, flv_player: bool) {
    let media = frames(1);
    let mut publisher = Publisher::start(node.ports.rtmp, "live", name);
    publisher.send(&media[0]).expect("config");
    publisher.send(&media[1]).expect("keyframe");
    let mut players = Vec::new();
    if rtmp_player {
        players.push(rtmp_raw::playing(node.ports.rtmp, "live", name));
    }
    if flv_player {
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", node.ports.http)).expect("HTTP");
        write!(socket, "GET /live/{name}.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
        players.push(socket);
    }
    for frame in &media[2..] {
        publisher.send(frame).expect("frame");
    }
    for mut player in players {
        player.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut buffer = [0u8; 8192];
        let n = player.read(&mut buffer).unwrap_or(0);
        assert!(n > 0, "a player of {name} got nothing");
    }
}

/// One SRT cycle: publish MPEG-TS over SRT (in-process libsrt-compatible stack), with an SRT
/// player on every other cycle.
async fn srt_cycle(port: u16, name: &str, player: bool) -> Result<(), String> {
    let address = format!("127.0.0.1:{port}");
    let mut publisher = srt_tokio::SrtSocket::builder().latency(Duration::from_millis(120)).call(address.as_str(), Some(&format!("#!::r=live/{name},m=publish"))).await.map_err(|e| format!("publish {name}: {e}"))?;
    let mut muxer = TsMuxer::new(Some(Codec::H264), None);
    let mut ts = BytesMut::new();
    muxer.write_tables(&mut ts);
    let media = frames(2);
    let mut watcher = None;
    for (i, frame) in media.iter().enumerate() {
        muxer.write_frame(frame, &mut ts);
        while ts.len() >= 1316 {
            publisher.send((Instant::now(), ts.split_to(1316).freeze())).await.map_err(|e| format!("send: {e}"))?;
        }
        if i == 26 && player {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut socket = srt_tokio::SrtSocket::builder().latency(Duration::from_millis(120)).call(address.as_str(), Some(&format!("#!::r=live/{name},m=request"))).await.map_err(|e| format!("play {name}: {e}"))?;
            watcher = Some(tokio::spawn(async move {
                let got = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
                let _ = socket.close().await;
                matches!(got, Ok(Some(Ok(_))))
            }));
        }
        if i % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if let Some(watcher) = watcher {
        if !watcher.await.unwrap_or(false) {
            return Err(format!("the SRT player of {name} got nothing"));
        }
    }
    publisher.close().await.map_err(|e| format!("close: {e}"))
}

/// How many files are under `dir`, recursively (directories do not count).
fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 }).sum()
}

struct Held {
    rss_kb: u64,
    fds: usize,
    threads: usize,
    census: serde_json::Value,
    tasks: u64,
    clients: u64,
    connections: u64,
}

fn held(node: &Node) -> Held {
    let pid = node.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let threads = status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let tasks = node.api("/api/v1/tasks");
    Held {
        rss_kb: node.rss_kb(),
        fds,
        threads,
        tasks: tasks["total"].as_u64().unwrap_or(u64::MAX),
        census: tasks["kinds"].clone(),
        clients: tasks["clients"].as_u64().unwrap_or(u64::MAX),
        connections: tasks["connections"].as_u64().unwrap_or(u64::MAX),
    }
}

#[test]
fn publish_play_cycles_over_rtmp_srt_and_whip_leave_nothing_behind() {
    let cycles: usize = std::env::var("SOAK_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let scratch = Scratch::new("soak");
    let clip = ffmpeg::make_clip(&scratch.path("clip.mp4"), "libx264", 0, 4);
    let node = Node::start(
        &scratch,
        &[("ESTUARY_HLS__DISPOSE_S", "2"), ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "200"), ("ESTUARY_STREAM__HISTORY_MAX_COUNT", "100")],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let whip_cycles = |count: usize, prefix: &str| {
        Command::new("python3")
            .arg(aiortc::script("whip_cycles.py"))
            .arg(format!("http://127.0.0.1:{}", node.ports.api))
            .arg(&clip)
            .arg(count.to_string())
            .arg(prefix)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with aiortc (tests/run installs it)")
    };
    let whip_result = |child: std::process::Child| -> serde_json::Value {
        let output = child.wait_with_output().expect("whip_cycles.py");
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("whip_cycles.py printed {:?}: {e}", String::from_utf8_lossy(&output.stdout)))
    };
    let settled = |node: &Node| {
        wait_until(Duration::from_secs(60), || {
            let tasks = node.api("/api/v1/tasks");
            node.api("/api/v1/streams")["total"] == 0 && tasks["clients"] == 0 && tasks["kinds"].as_object().is_some_and(|k| k.iter().all(|(kind, n)| n == 0 || kind == "hls_muxer"))
        })
    };

    // Warm-up: one cycle of each, so lazily made things (thread pools, caches) exist in the
    // baseline.
    rtmp_cycle(&node, "warm", true, true);
    runtime.block_on(srt_cycle(node.ports.srt, "warmsrt", true)).expect("SRT warm-up");
    let warm = whip_result(whip_cycles(1, "warmwhip"));
    assert_eq!(warm["published"], 1, "{warm}");
    assert!(settled(&node), "the warm-up did not settle: {}", node.api("/api/v1/tasks"));
    let hls = node.dir.join("estuary-data/hls");
    assert!(wait_until(Duration::from_secs(30), || files_under(&hls) == 0), "HLS files of the warm-up left");
    let baseline = held(&node);

    // WHIP cycles run alongside, in one aiortc process (about 4 s each).
    let whip_count = (cycles / 50).max(2);
    let whip = whip_cycles(whip_count, "whip");
    let mut after_500 = None;
    let (mut rtmp, mut srt) = (0, 0);
    for i in 0..cycles {
        let name = format!("soak{i}");
        if i % 12 == 6 {
            runtime.block_on(srt_cycle(node.ports.srt, &name, i % 24 == 6)).unwrap_or_else(|e| panic!("cycle {i}: {e}"));
            srt += 1;
        } else {
            rtmp_cycle(&node, &name, i % 2 == 0, i % 5 == 0);
            rtmp += 1;
        }
        if i + 1 == 500.min(cycles) {
            // The RTMP and SRT side quiet (a WHIP cycle of the other process may be under way).
            let quiet = wait_until(Duration::from_secs(30), || {
                let kinds = node.api("/api/v1/tasks")["kinds"].clone();
                kinds["rtmp_session"] == 0 && kinds["srt_session"] == 0 && kinds["http_live_player"] == 0
            });
            assert!(quiet, "RTMP and SRT sessions left after 500 cycles: {}", node.api("/api/v1/tasks"));
            after_500 = Some(held(&node));
        }
    }
    let whip = whip_result(whip);
    assert_eq!(whip["published"], whip_count, "{whip}");
    assert_eq!(whip["played"], whip_count, "{whip}");
    assert!(settled(&node), "not settled at the end: {}", node.api("/api/v1/tasks"));
    // HLS files of the ended streams go after their dispose time.
    assert!(wait_until(Duration::from_secs(60), || files_under(&hls) == 0), "{} HLS files left", files_under(&hls));
    assert!(wait_until(Duration::from_secs(30), || node.api("/api/v1/streams?count=1000&all=true")["total"].as_u64().is_some_and(|t| t <= 100)), "stream history not pruned");
    let end = held(&node);
    let after_500 = after_500.expect("measured after 500 cycles");
    eprintln!(
        "{cycles} cycles ({rtmp} RTMP, {srt} SRT, {whip_count} WHIP): RSS {} KiB after warm-up, {} KiB after 500, {} KiB at the end; fds {} -> {}; threads {} -> {}; tasks {} -> {} ({}); clients {} -> {}; connections {} -> {}",
        baseline.rss_kb,
        after_500.rss_kb,
        end.rss_kb,
        baseline.fds,
        end.fds,
        baseline.threads,
        end.threads,
        baseline.tasks,
        end.tasks,
        end.census,
        baseline.clients,
        end.clients,
        baseline.connections,
        end.connections
    );
    assert_eq!(end.tasks, baseline.tasks, "actors and tasks left: {} (baseline {})", end.census, baseline.census);
    assert_eq!((end.clients, end.connections), (baseline.clients, baseline.connections));
    assert!(end.fds <= baseline.fds, "open files {} -> {}", baseline.fds, end.fds);
    assert!(end.threads <= baseline.threads, "threads {} -> {}", baseline.threads, end.threads);
    assert!(end.rss_kb * 10 <= after_500.rss_kb * 11, "RSS grew from {} KiB after 500 cycles to {} KiB", after_500.rss_kb, end.rss_kb);
    let metrics = String::from_utf8_lossy(&http::get(node.ports.api, "/metrics").expect("metrics").body).into_owned();
    assert!(!metrics.contains("stream=\"live/soak"), "series of ended streams in /metrics");
}
