//! RTMP in, RTMP and HTTP-FLV out, on one node shared by every test in this file (each test
//! uses its own stream names). Real ffmpeg publishes; real ffprobe/ffmpeg play.

use estuary_tests::ffmpeg::{self, decode, probe_packets, probe_streams, publish, record, stream_of, Packet, Source, Tracks};
use estuary_tests::{http, rtmp_raw, Node, Scratch};
use std::io::Write;
use std::sync::LazyLock;
use std::time::Duration;

struct Shared {
    node: Node,
    _scratch: Scratch,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| {
    let scratch = Scratch::new("rtmp-core");
    let node = Node::start(
        &scratch,
        &[("ESTUARY_RTMP__HANDSHAKE_TIMEOUT_MS", "2000"), ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "4000")],
    );
    Shared { node, _scratch: scratch }
});

fn node() -> &'static Node {
    &SHARED.node
}

fn pts_range(packets: &[Packet], codec_type: &str) -> (f64, f64) {
    let times: Vec<f64> = packets.iter().filter(|p| p.codec_type == codec_type).filter_map(|p| p.pts).collect();
    assert!(!times.is_empty(), "no {codec_type} packets");
    (times.iter().cloned().fold(f64::MAX, f64::min), times.iter().cloned().fold(f64::MIN, f64::max))
}

/// (video start - audio start) of the same encoder settings written straight to a file:
/// the offset the source itself has, which playback through the node must keep.
fn source_av_offset(scratch: &Scratch) -> f64 {
    let path = scratch.path("reference.flv");
    let mut args = Source { duration: Some(3.0), ..Source::default() }.args();
    args.retain(|a| a != "-re");
    let mut command = std::process::Command::new("ffmpeg");
    command.args(&args).args(["-f", "flv", "-y"]).arg(&path);
    let output = ffmpeg::run(command, Duration::from_secs(60));
    assert!(output.success(), "reference encode failed: {}", output.stderr);
    let packets = probe_packets(&path.display().to_string(), None);
    pts_range(&packets, "video").0 - pts_range(&packets, "audio").0
}

#[test]
fn publish_and_play_over_rtmp_and_http_flv() {
    let node = node();
    let scratch = Scratch::new("av");
    let _publisher = publish(&node.rtmp_url("live/livestream"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/livestream", Duration::from_secs(20));
    let reference_offset = source_av_offset(&scratch);

    let urls = [node.rtmp_url("live/livestream"), node.flv_url("live/livestream")];
    for url in &urls {
        let streams = probe_streams(url);
        assert_eq!(streams.len(), 2, "{url}: expected exactly video and audio, got {streams:?}");
        let video = stream_of(&streams, "video").unwrap_or_else(|| panic!("{url}: no video"));
        assert_eq!(video["codec_name"], "h264", "{url}");
        assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(320), Some(240)), "{url}");
        assert_eq!(video["r_frame_rate"], "25/1", "{url}");
        assert!(video["has_b_frames"].as_u64().unwrap_or(0) >= 1, "{url}: B-frames expected in the published stream");
        let audio = stream_of(&streams, "audio").unwrap_or_else(|| panic!("{url}: no audio"));
        assert_eq!(audio["codec_name"], "aac", "{url}");
        assert_eq!(audio["sample_rate"], "48000", "{url}");
        assert_eq!(audio["channels"].as_u64(), Some(2), "{url}");
    }

    // 20 s of each decode with nothing printed at -v error, both players at once.
    let decoders: Vec<_> = urls.iter().cloned().map(|url| std::thread::spawn(move || (decode(&url, 20), url))).collect();
    for handle in decoders {
        let ((ok, errors), url) = handle.join().expect("decoder thread");
        assert!(ok && errors.trim().is_empty(), "{url}: decode failed or printed errors: {errors}");
    }

    // Audio and video keep the source's relation: start offsets within 50 ms of the source's
    // own, and no drift over 10 s of playback.
    for url in &urls {
        let packets = probe_packets(url, Some(10));
        let (video_start, video_end) = pts_range(&packets, "video");
        let (audio_start, audio_end) = pts_range(&packets, "audio");
        let offset = video_start - audio_start;
        assert!((offset - reference_offset).abs() <= 0.050, "{url}: A/V start offset {offset:.3}s vs source {reference_offset:.3}s");
        assert!(video_end - video_start > 8.0, "{url}: only {:.2}s of video", video_end - video_start);
        // The read stops mid-interleave: allow one video frame plus one audio frame.
        let drift = (video_end - audio_end) - offset;
        assert!(drift.abs() <= 0.050 + 0.040 + 0.022, "{url}: A/V drift {drift:.3}s over 10 s");
    }
}

#[test]
fn late_joiner_gets_headers_and_starts_on_a_keyframe() {
    let node = node();
    let scratch = Scratch::new("late");
    let _publisher = publish(&node.rtmp_url("live/latejoin"), &Source { gop: 75, ..Source::default() }, &scratch, "publisher");
    node.wait_live("live/latejoin", Duration::from_secs(20));
    // Join well inside a GOP (3 s GOPs; the stream has been live for a while).
    std::thread::sleep(Duration::from_millis(4300));
    for url in [node.rtmp_url("live/latejoin"), node.flv_url("live/latejoin")] {
        let streams = probe_streams(&url);
        let video = stream_of(&streams, "video").unwrap_or_else(|| panic!("{url}: no video (sequence header missing?)"));
        assert_eq!(video["width"].as_u64(), Some(320), "{url}");
        let packets = probe_packets(&url, Some(3));
        let first_video = packets.iter().find(|p| p.codec_type == "video").unwrap_or_else(|| panic!("{url}: no video packets"));
        assert!(first_video.key, "{url}: first video packet is not a keyframe: {first_video:?}");
        let video_start = first_video.pts.unwrap_or(0.0);
        assert!(video_start > 2.0, "{url}: expected to join mid-stream, started at {video_start}");
        let first_audio = packets.iter().find(|p| p.codec_type == "audio").and_then(|p| p.pts).unwrap_or(0.0);
        assert!((first_audio - video_start).abs() < 0.05, "{url}: audio starts at {first_audio}, video at {video_start}");
    }
}

#[test]
fn audio_only_video_only_and_several_apps_at_once() {
    let node = node();
    let scratch = Scratch::new("tracks");
    let _radio = publish(&node.rtmp_url("radio/tone"), &Source { tracks: Tracks::AudioOnly, ..Source::default() }, &scratch, "radio");
    let _camera = publish(&node.rtmp_url("cams/pattern"), &Source { tracks: Tracks::VideoOnly, ..Source::default() }, &scratch, "camera");
    let _both = publish(&node.rtmp_url("live/second"), &Source::default(), &scratch, "both");
    let radio = node.wait_live("radio/tone", Duration::from_secs(20));
    let camera = node.wait_live("cams/pattern", Duration::from_secs(20));
    node.wait_live("live/second", Duration::from_secs(20));
    assert!(radio["video"].is_null() && radio["audio"]["codec"] == "AAC", "{radio}");
    assert!(camera["audio"].is_null() && camera["video"]["codec"] == "H264", "{camera}");

    for (path, only) in [("radio/tone", "audio"), ("cams/pattern", "video")] {
        for url in [node.rtmp_url(path), node.flv_url(path)] {
            let streams = probe_streams(&url);
            assert_eq!(streams.len(), 1, "{url}: {streams:?}");
            assert_eq!(streams[0]["codec_type"], only, "{url}");
            let (ok, errors) = decode(&url, 5);
            assert!(ok && errors.trim().is_empty(), "{url}: {errors}");
        }
    }
    // All three are live at the same time.
    let live: Vec<String> = node.api("/api/v1/streams")["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s["publish"]["active"] == true)
        .map(|s| s["url"].as_str().unwrap_or("").to_string())
        .collect();
    for path in ["/radio/tone", "/cams/pattern", "/live/second"] {
        assert!(live.iter().any(|u| u == path), "{path} not live in {live:?}");
    }
}

#[test]
fn second_publisher_is_refused_and_the_first_is_not_disturbed() {
    let node = node();
    let scratch = Scratch::new("dup");
    let url = node.rtmp_url("live/dup");
    let mut first = publish(&url, &Source::default(), &scratch, "first");
    let before = node.wait_live("live/dup", Duration::from_secs(20));
    let mut second = publish(&url, &Source { duration: Some(5.0), ..Source::default() }, &scratch, "second");
    let status = second.wait(Duration::from_secs(20)).expect("second publisher should be refused promptly");
    assert!(!status.success(), "second publisher exited successfully");
    assert!(second.stderr().contains("already being published"), "ffmpeg did not show the reason: {}", second.stderr());
    assert!(first.running(), "first publisher died");
    let after = node.stream_info("live/dup").expect("stream still listed");
    assert_eq!(after["publish"]["cid"], before["publish"]["cid"], "publisher changed");
    assert_eq!(after["publish"]["active"], true);
    let (ok, errors) = decode(&node.flv_url("live/dup"), 3);
    assert!(ok && errors.trim().is_empty(), "{errors}");
    assert!(node.log().contains("RTMP publish refused"), "refusal not logged");
}

#[test]
fn publisher_reconnecting_within_grace_resumes_the_same_players() {
    let node = node();
    let scratch = Scratch::new("resume");
    let url = node.rtmp_url("live/resume");
    let source = Source { duration: Some(8.0), ..Source::default() };
    let mut first = publish(&url, &source, &scratch, "first");
    node.wait_live("live/resume", Duration::from_secs(20));
    let rtmp_out = scratch.path("rtmp.flv");
    let flv_out = scratch.path("http.flv");
    let mut rtmp_player = record(&url, &rtmp_out, None, &scratch, "rtmp-player");
    let mut flv_player = record(&node.flv_url("live/resume"), &flv_out, None, &scratch, "flv-player");
    assert!(first.wait(Duration::from_secs(20)).is_some(), "first publisher did not finish");
    std::thread::sleep(Duration::from_millis(800));
    assert!(rtmp_player.running() && flv_player.running(), "players left while the publisher was away");
    let mut second = publish(&url, &source, &scratch, "second");
    assert!(second.wait(Duration::from_secs(20)).is_some_and(|s| s.success()), "second publisher failed: {}", second.stderr());
    // After the grace period the stream ends and the players finish by themselves.
    for (player, out) in [(&mut rtmp_player, &rtmp_out), (&mut flv_player, &flv_out)] {
        assert!(player.wait(Duration::from_secs(20)).is_some(), "player did not end after the grace period");
        let path = out.display().to_string();
        let packets = probe_packets(&path, None);
        let (start, end) = pts_range(&packets, "video");
        assert!(end - start > 10.0, "{path}: {:.1}s of video; the player did not continue across the reconnect", end - start);
        let dts: Vec<f64> = packets.iter().filter(|p| p.codec_type == "video").filter_map(|p| p.dts).collect();
        assert!(dts.windows(2).all(|w| w[1] >= w[0]), "{path}: video timestamps go backwards");
        let largest_gap = dts.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        assert!(largest_gap < 0.5, "{path}: timestamp gap of {largest_gap:.3}s across the reconnect");
        let (ok, errors) = decode(&path, 30);
        assert!(ok && errors.trim().is_empty(), "{path}: {errors}");
    }
    assert!(node.log().contains("publisher resumed within the grace period"));
}

#[test]
fn malformed_input_closes_only_that_connection() {
    let node = node();
    let scratch = Scratch::new("garbage");
    let _publisher = publish(&node.rtmp_url("live/survivor"), &Source::default(), &scratch, "publisher");
    let before = node.wait_live("live/survivor", Duration::from_secs(20));
    let port = node.ports.rtmp;

    // 1. Garbage instead of a handshake.
    let mut socket = rtmp_raw::connect(port);
    socket.write_all(&[0x47; 4096]).expect("write garbage");
    assert!(rtmp_raw::read_until_closed(&mut socket, Duration::from_secs(5)).is_some(), "garbage connection left open");
    assert!(node.wait_log("handshake failed", Duration::from_secs(5)), "garbage not logged");

    // 2. A handshake that stops halfway: closed after the (2 s) handshake timeout.
    let mut socket = rtmp_raw::connect(port);
    socket.write_all(&[3u8; 700]).expect("write half a handshake");
    assert!(rtmp_raw::read_until_closed(&mut socket, Duration::from_secs(8)).is_some(), "truncated handshake left open");
    assert!(node.wait_log("handshake not completed in time", Duration::from_secs(5)));

    // 3. Absurd chunk sizes.
    for size in [0x7fff_ffffu32, 0] {
        let mut socket = rtmp_raw::connected(port, "live");
        let mut message = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
        message.extend_from_slice(&size.to_be_bytes());
        socket.write_all(&message).expect("write set chunk size");
        assert!(rtmp_raw::read_until_closed(&mut socket, Duration::from_secs(5)).is_some(), "chunk size {size} left open");
    }
    assert!(node.wait_log("peer set chunk size 2147483647", Duration::from_secs(5)));
    assert!(node.wait_log("peer set chunk size 0", Duration::from_secs(5)));

    // 4. A message longer than the limit (8 MiB by default).
    let mut socket = rtmp_raw::connected(port, "live");
    socket.write_all(&[0x06, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0, 0x17, 0x01]).expect("write header");
    assert!(rtmp_raw::read_until_closed(&mut socket, Duration::from_secs(5)).is_some(), "oversized message left open");
    assert!(node.wait_log("exceeds the limit", Duration::from_secs(5)));

    // 5. A command whose AMF0 is broken.
    let mut socket = rtmp_raw::connected(port, "live");
    socket.write_all(&[0x03, 0, 0, 0, 0, 0, 3, 20, 0, 0, 0, 0, 0x02, 0xff, 0xff]).expect("write command");
    assert!(rtmp_raw::read_until_closed(&mut socket, Duration::from_secs(5)).is_some(), "broken command left open");
    assert!(node.wait_log("malformed command", Duration::from_secs(5)));

    // 6. A connection that says nothing after the handshake is closed by the idle timeout
    //    (not waited for here: it is the same path as the publish timeout), and HTTP garbage.
    let response = http::get(node.ports.http, "/live/..%2f..%2fetc.flv").expect("HTTP answer");
    assert!(response.status == 400 || response.status == 404, "traversal got {}", response.status);
    let response = http::get(node.ports.http, "/live/missing.flv").expect("HTTP answer");
    assert_eq!(response.status, 404);

    // The node and the existing publisher are unaffected.
    let after = node.stream_info("live/survivor").expect("survivor listed");
    assert_eq!(after["publish"]["cid"], before["publish"]["cid"]);
    let (ok, errors) = decode(&node.rtmp_url("live/survivor"), 3);
    assert!(ok && errors.trim().is_empty(), "{errors}");
}
