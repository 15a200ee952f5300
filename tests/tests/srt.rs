//! SRT in and out: ffmpeg (libsrt) and srt-live-transmit as publishers and players, every
//! output of an SRT publish, SRT play of an RTMP publish, H.265 over SRT, a lossy path, and
//! the callers Estuary refuses. One node for the file; tests use their own stream names and
//! run in parallel.

use estuary_tests::ffmpeg::{self, decode, probe_streams, publish, publish_ts, stream_of, Source};
use estuary_tests::lossy::LossyRelay;
use estuary_tests::{srt_url, wait_until, Node, Scratch};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

struct Shared {
    node: Node,
    _scratch: Scratch,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| {
    let scratch = Scratch::new("srt");
    let node = Node::start(&scratch, &[("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "2000"), ("ESTUARY_HLS__FRAGMENT_MS", "2000")]);
    Shared { node, _scratch: scratch }
});

fn node() -> &'static Node {
    &SHARED.node
}

fn http_url(node: &Node, path: &str) -> String {
    format!("http://127.0.0.1:{}/{path}", node.ports.http)
}

fn assert_both_tracks(url: &str, video_codec: &str) {
    let streams = probe_streams(url);
    let video = stream_of(&streams, "video").unwrap_or_else(|| panic!("{url}: no video in {streams:?}"));
    assert_eq!(video["codec_name"], video_codec, "{url}");
    assert_eq!(video["width"], 320, "{url}");
    let audio = stream_of(&streams, "audio").unwrap_or_else(|| panic!("{url}: no audio in {streams:?}"));
    assert_eq!(audio["codec_name"], "aac", "{url}");
}

/// Decodes every URL for `seconds` at once (one ffmpeg each) and asserts all were clean.
fn decode_all_clean(urls: &[String], seconds: u32) {
    let handles: Vec<_> = urls.iter().cloned().map(|url| std::thread::spawn(move || (url.clone(), decode(&url, seconds)))).collect();
    for handle in handles {
        let (url, (ok, errors)) = handle.join().expect("decoder thread");
        assert!(ok && errors.trim().is_empty(), "{url}: decode not clean: {errors}\nnode log:\n{}", node().log());
    }
}

fn wait_hls(node: &Node, path: &str) {
    let ok = wait_until(Duration::from_secs(30), || {
        estuary_tests::http::get(node.ports.http, &format!("/{path}.m3u8")).map(|r| r.status == 200 && String::from_utf8_lossy(&r.body).matches("#EXTINF").count() >= 2).unwrap_or(false)
    });
    assert!(ok, "{path}.m3u8 has no segments; log:\n{}", node.log());
}

#[test]
fn ffmpeg_srt_publish_plays_over_rtmp_flv_hls_and_srt() {
    let node = node();
    let scratch = Scratch::new("srt-publish");
    let _publisher = publish_ts(&node.srt_url("live/srtpub", true, ""), &Source::default(), &scratch, "publisher");
    let info = node.wait_live("live/srtpub", Duration::from_secs(20));
    assert_eq!(info["publish"]["protocol"], "srt", "{info}");
    wait_hls(node, "live/srtpub");

    let urls = vec![node.rtmp_url("live/srtpub"), node.flv_url("live/srtpub"), http_url(node, "live/srtpub.m3u8"), node.srt_url("live/srtpub", false, "")];
    for url in &urls {
        assert_both_tracks(url, "h264");
    }
    decode_all_clean(&urls, 20);

    // The publisher's transport statistics are in the client API.
    let clients = node.api("/api/v1/clients?count=1000");
    let publisher = clients["clients"].as_array().unwrap().iter().find(|c| c["stream"] == "live/srtpub" && c["type"] == "publish").cloned().expect("publisher in the client list");
    assert_eq!(publisher["protocol"], "srt");
    let srt = &publisher["srt"];
    assert!(srt["recv_packets"].as_u64().unwrap_or(0) > 1000, "{publisher}");
    assert!(srt["rtt_ms"].as_f64().is_some(), "{publisher}");
    assert!(srt["recv_kbps"].as_f64().unwrap_or(0.0) > 100.0, "{publisher}");
}

#[test]
fn rtmp_publish_plays_over_srt() {
    let node = node();
    let scratch = Scratch::new("rtmp-to-srt");
    let _publisher = publish(&node.rtmp_url("live/fromrtmp"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/fromrtmp", Duration::from_secs(20));
    let url = node.srt_url("live/fromrtmp", false, "");
    assert_both_tracks(&url, "h264");
    decode_all_clean(&[url], 10);
}

#[test]
fn hevc_over_srt_plays_over_srt_and_hls() {
    let node = node();
    let scratch = Scratch::new("hevc");
    let source = Source { video_codec: "libx265", bframes: 0, ..Source::default() };
    let _publisher = publish_ts(&node.srt_url("live/hevc", true, ""), &source, &scratch, "publisher");
    let info = node.wait_live("live/hevc", Duration::from_secs(30));
    assert_eq!(info["video"]["codec"], "H265", "{info}");
    wait_hls(node, "live/hevc");
    // The default HLS is LL-HLS from the live package: fMP4 parts with an `hvc1` track.
    let playlist = String::from_utf8_lossy(&estuary_tests::http::get(node.ports.http, "/live/hevc.m3u8").unwrap().body).into_owned();
    assert!(playlist.contains("#EXT-X-PART:"), "{playlist}");
    let init = playlist.split("#EXT-X-MAP:URI=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_else(|| panic!("no EXT-X-MAP in\n{playlist}"));
    let init = estuary_tests::http::get(node.ports.http, &format!("/live/{init}")).unwrap();
    assert_eq!(init.status, 200);
    assert!(init.body.windows(4).any(|w| w == b"hvc1") && init.body.windows(4).any(|w| w == b"hvcC"), "the init segment has no hvc1/hvcC sample entry");
    let urls = vec![node.srt_url("live/hevc", false, ""), http_url(node, "live/hevc.m3u8")];
    for url in &urls {
        assert_both_tracks(url, "hevc");
    }
    decode_all_clean(&urls, 10);
}

#[test]
fn survives_packet_loss_both_ways() {
    let node = node();
    let scratch = Scratch::new("lossy");
    let target = format!("127.0.0.1:{}", node.ports.srt).parse().unwrap();
    // 2% of the publisher's datagrams and of the ACKs/NAKs coming back are dropped; the same
    // for the player. ARQ has to repair all of it within the latency window: 1 s here, as
    // over a lossy link one would configure, since a player's start (the cached GOP, sent at
    // once) must also arrive with its retransmissions inside that window.
    let publish_relay = LossyRelay::start(target, 20, 11);
    let play_relay = LossyRelay::start(target, 20, 23);
    let _publisher = publish_ts(&srt_url(publish_relay.port(), "live/lossy", true, "&latency=1000000"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/lossy", Duration::from_secs(20));
    let url = srt_url(play_relay.port(), "live/lossy", false, "&latency=1000000");
    assert_both_tracks(&url, "h264");
    let decoder = std::thread::spawn({
        let url = url.clone();
        move || decode(&url, 15)
    });
    // While it plays: the node saw the loss and repaired it in both directions.
    let mut stats = (None, None);
    let repaired = wait_until(Duration::from_secs(12), || {
        let clients = node.api("/api/v1/clients?count=1000");
        let find = |kind: &str| clients["clients"].as_array().and_then(|list| list.iter().find(|c| c["stream"] == "live/lossy" && c["type"] == kind).map(|c| c["srt"].clone()));
        stats = (find("publish"), find("play"));
        let lost_in = stats.0.as_ref().and_then(|s| s["recv_retransmitted_packets"].as_u64()).unwrap_or(0);
        let resent_out = stats.1.as_ref().and_then(|s| s["retransmitted_packets"].as_u64()).unwrap_or(0);
        lost_in > 0 && resent_out > 0
    });
    assert!(repaired, "no loss seen or repaired: publisher/player stats {stats:?}");
    let (ok, errors) = decoder.join().expect("decoder");
    assert!(ok && errors.trim().is_empty(), "lossy playback not clean: {errors}\nstats {stats:?}\nnode log:\n{}", node.log());
    assert!(publish_relay.dropped.load(Ordering::Relaxed) > 20, "the relay dropped {} datagrams", publish_relay.dropped.load(Ordering::Relaxed));
    assert!(play_relay.dropped.load(Ordering::Relaxed) > 20, "the relay dropped {} datagrams", play_relay.dropped.load(Ordering::Relaxed));
}

#[test]
fn srt_live_transmit_publishes_and_plays() {
    let node = node();
    let scratch = Scratch::new("slt");
    // ffmpeg makes TS on stdout; srt-live-transmit sends it.
    let mut source = Command::new("ffmpeg");
    source.args(Source::default().args()).args(["-f", "mpegts", "-"]).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut encoder = source.spawn().expect("ffmpeg");
    let publish_uri = format!("srt://127.0.0.1:{}?streamid=#!::r=live/slt,m=publish", node.ports.srt);
    let mut sender = Command::new("srt-live-transmit")
        .args(["-q", "file://con", &publish_uri])
        .stdin(Stdio::from(encoder.stdout.take().expect("ffmpeg stdout")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("srt-live-transmit (apt srt-tools; tests/run installs it)");
    node.wait_live("live/slt", Duration::from_secs(20));

    // srt-live-transmit plays into a file; ffprobe reads the file.
    let out = scratch.path("played.ts");
    let play_uri = format!("srt://127.0.0.1:{}?streamid=#!::r=live/slt,m=request", node.ports.srt);
    let file = std::fs::File::create(&out).expect("output file");
    let mut receiver = Command::new("srt-live-transmit").args(["-q", &play_uri, "file://con"]).stdout(Stdio::from(file)).stderr(Stdio::null()).spawn().expect("srt-live-transmit");
    let started = Instant::now();
    let grew = wait_until(Duration::from_secs(30), || std::fs::metadata(&out).map(|m| m.len() > 1_000_000).unwrap_or(false));
    let _ = receiver.kill();
    let _ = receiver.wait();
    let _ = sender.kill();
    let _ = encoder.kill();
    let _ = sender.wait();
    let _ = encoder.wait();
    assert!(grew, "srt-live-transmit received {} bytes in {:?}; log:\n{}", std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0), started.elapsed(), node.log());
    let path = out.display().to_string();
    assert_both_tracks(&path, "h264");
    // The receiver was killed mid-stream, so the file's last frame is usually cut short: decode
    // all but the last two seconds (decoders read a few frames ahead of the output).
    let packets = ffmpeg::probe_packets(&path, None);
    let first = packets.iter().filter_map(|p| p.pts).fold(f64::MAX, f64::min);
    let last = packets.iter().filter_map(|p| p.pts).fold(0.0f64, f64::max);
    assert!(last - first > 4.0, "only {:.1} s played", last - first);
    let (ok, errors) = decode(&path, (last - first - 2.0) as u32);
    assert!(ok && errors.trim().is_empty(), "played file does not decode clean: {errors}");
}

/// libsrt's connect timeout for callers expected to be refused, in ms: long, so a caller that
/// got no reject packet would outlast the test's patience instead of failing for another
/// reason.
const WAIT: &str = "&connect_timeout=20000";

/// Runs a short ffmpeg publish to `url`; returns (exit success, stderr).
fn try_publish(url: &str) -> (bool, String) {
    let mut command = Command::new("ffmpeg");
    command.args(Source { duration: Some(3.0), ..Source::default() }.args()).args(["-f", "mpegts", url]);
    let output = ffmpeg::run(command, Duration::from_secs(15));
    (output.success(), output.stderr)
}

#[test]
fn refused_callers_get_a_reason_and_others_keep_playing() {
    let node = node();
    let scratch = Scratch::new("refusals");
    let _publisher = publish_ts(&node.srt_url("live/keeper", true, ""), &Source::default(), &scratch, "publisher");
    node.wait_live("live/keeper", Duration::from_secs(20));
    let frames_before = node.stream_info("live/keeper").unwrap()["frames"].as_u64().unwrap();

    // Garbage datagrams: random bytes, a truncated control header, a fake handshake.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = ("127.0.0.1", node.ports.srt);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for len in [1usize, 15, 16, 17, 64, 200, 1500] {
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        socket.send_to(&garbage, target).unwrap();
    }
    let mut fake_handshake = vec![0u8; 64];
    fake_handshake[0] = 0x80;
    fake_handshake[16..20].copy_from_slice(&5u32.to_be_bytes());
    fake_handshake[36..40].copy_from_slice(&(-1i32).to_be_bytes());
    socket.send_to(&fake_handshake, target).unwrap();
    socket.send_to(&[0x80, 0x00, 0x00, 0x00, 0xff], target).unwrap();

    let cases = [
        (node.srt_url("live", true, WAIT).replace("r=live,", "r=nonsense,"), "code=2400"),
        (node.srt_url("live/keeper", true, WAIT), "code=2409"),
        (node.srt_url("live/nobody", false, WAIT), "code=2404"),
        (node.srt_url("live/filemode", true, &format!("{WAIT}&transtype=file")), "code=1013"),
        (node.srt_url("live/secret", true, &format!("{WAIT}&passphrase=0123456789abcdef")), "code=1010"),
        (node.srt_url("live/secret32", true, &format!("{WAIT}&passphrase=0123456789abcdef&pbkeylen=32")), "code=1010"),
    ];
    for (url, expected) in &cases {
        // A refusal is an answer, not a timeout: without a reject packet, libsrt would wait out
        // the 20 s connect timeout set in the URL and `ffmpeg::run`'s 15 s bound would kill it,
        // which `run` reports as a failure with that reason in stderr.
        let (ok, stderr) = try_publish(url);
        assert!(!ok, "{url} was accepted: {stderr}");
        assert!(stderr.contains("Input/output error") || stderr.contains("failed"), "{url}: no connection error from the caller: {stderr}");
        assert!(node.log().contains(expected), "{url}: the log has no {expected}:\n{}", node.log());
    }
    let log = node.log();
    assert!(log.contains("malformed SRT datagram dropped"), "garbage not reported:\n{log}");

    // The publisher kept publishing and a new player still plays.
    let frames_after = node.stream_info("live/keeper").unwrap()["frames"].as_u64().unwrap();
    assert!(frames_after > frames_before, "frames stalled at {frames_before}");
    decode_all_clean(&[node.srt_url("live/keeper", false, "")], 3);
}
