//! The stream core under faults, through the debug fault API (`api.debug_faults`): a stalled
//! stream pushes back on an RTMP publisher (and drops, counted, for a WHIP publisher) with the
//! node's memory bounded; panics in the stream, its muxers, its recorder and the storage
//! actor are caught, counted and recovered from while players keep playing; a recorder whose
//! disk is too slow loses nothing silently (every hole in the recordings has a reason) and
//! resumes by itself.

use estuary_tests::aiortc::whip_publish;
use estuary_tests::ffmpeg::{self, decode, publish, record, Source};
use estuary_tests::{http, wait_until, Node, Scratch};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn fault(node: &Node, query: &str) {
    let response = http::post(node.ports.api, &format!("/api/v1/debug/fault?{query}")).expect("API");
    assert_eq!(response.status, 200, "fault {query}: {}", String::from_utf8_lossy(&response.body));
}

fn restarts(node: &Node) -> Value {
    node.api("/api/v1/supervisors")["restarts"].clone()
}

/// The API's entry for the client publishing `stream` (`app/name`).
fn publisher(node: &Node, stream: &str) -> Value {
    let clients = node.api("/api/v1/clients?count=1000");
    clients["clients"].as_array().into_iter().flatten().find(|c| c["type"] == "publish" && c["stream"].as_str().is_some_and(|s| s.ends_with(stream))).cloned().unwrap_or(Value::Null)
}

fn recv_bytes(node: &Node, stream: &str) -> u64 {
    publisher(node, stream)["recv_bytes"].as_u64().unwrap_or(0)
}

fn frames(node: &Node, stream: &str) -> u64 {
    node.stream_info(stream).and_then(|s| s["frames"].as_u64()).unwrap_or(0)
}

/// (Recv-Q, Send-Q) of the established TCP connection whose local port is `port`, from `ss`.
fn queues(local_port: u16) -> Option<(u64, u64)> {
    let out = Command::new("ss").args(["-tnH", "state", "established", &format!("( sport = :{local_port} )")]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.lines().next()?.split_whitespace().collect();
    Some((fields.first()?.parse().ok()?, fields.get(1)?.parse().ok()?))
}

/// Send-Q of the connection whose *peer* port is `port` (the publisher's side).
fn peer_send_queue(remote_port: u16) -> Option<u64> {
    let out = Command::new("ss").args(["-tnH", "state", "established", &format!("( dport = :{remote_port} )")]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().filter_map(|l| l.split_whitespace().nth(1)?.parse().ok()).max()
}

#[test]
fn a_stalled_stream_pushes_back_on_its_rtmp_publisher_and_resumes() {
    let scratch = Scratch::new("core-stall");
    let node = Node::start(&scratch, &[("ESTUARY_API__DEBUG_FAULTS", "true")]);
    // A heavy stream (~10 Mbit/s), so the kernel's socket buffers fill within the stall.
    let source = Source { size: "640x360", qp: Some(4), ..Source::default() };
    let mut pusher = publish(&node.rtmp_url("live/stall"), &source, &scratch, "publisher");
    let before = node.wait_live("live/stall", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = node.rss_kb();

    fault(&node, "actor=stream&stream=live/stall&kind=stall&ms=14000");
    // The stream takes nothing; its input queue (256 frames) fills within seconds and the
    // RTMP session stops reading its socket: the bytes it has read stop growing.
    let mut paused_at = 0;
    let stopped = wait_until(Duration::from_secs(10), || {
        let a = recv_bytes(&node, "live/stall");
        std::thread::sleep(Duration::from_millis(1500));
        paused_at = recv_bytes(&node, "live/stall");
        a > 0 && a == paused_at
    });
    assert!(stopped, "the RTMP session kept reading while its stream was stalled; log:\n{}", node.log());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(recv_bytes(&node, "live/stall"), paused_at, "reading resumed during the stall");
    // The API does not hang on the stalled actor: the stream is listed (from its record).
    let listed = node.api("/api/v1/streams?count=1000");
    assert!(listed["streams"].as_array().is_some_and(|l| l.iter().any(|s| s["url"] == "/live/stall")), "{listed}");
    // What the encoder sends waits in the kernel: unread on the node's socket, then queued on
    // the publisher's side as the window closes.
    let (unread, _) = queues(node.ports.rtmp).expect("the node's end of the RTMP connection");
    assert!(unread > 0, "no bytes wait on the node's socket");
    let publisher_queue = peer_send_queue(node.ports.rtmp).unwrap_or(0);
    assert!(publisher_queue > 0, "the publisher's send queue is empty: TCP did not push back");
    let rss_stalled = node.rss_kb();
    eprintln!("RSS before {rss_before} KiB, stalled {rss_stalled} KiB; unread {unread} B on the node, {publisher_queue} B queued by the publisher");
    assert!(rss_stalled < rss_before + 30 * 1024, "memory grew by {} KiB during the stall", rss_stalled - rss_before);

    // After the stall the same publish goes on, and players decode it.
    assert!(wait_until(Duration::from_secs(20), || recv_bytes(&node, "live/stall") > paused_at + 200_000), "reading did not resume after the stall");
    let resumed = frames(&node, "live/stall");
    assert!(wait_until(Duration::from_secs(10), || frames(&node, "live/stall") > resumed + 100), "frames did not flow after the stall");
    assert!(pusher.running(), "the publisher gave up: {}", pusher.stderr());
    assert_eq!(node.stream_info("live/stall").unwrap()["publish"]["cid"], before["publish"]["cid"], "the publisher changed");
    let (ok, errors) = decode(&node.flv_url("live/stall"), 3);
    assert!(ok, "{errors}");
    assert!(node.log().contains("RTMP publish started"));
}

#[test]
fn a_stalled_stream_drops_and_counts_a_whip_publishers_frames() {
    let scratch = Scratch::new("core-whip");
    let clip = ffmpeg::make_clip(&scratch.path("clip.mp4"), "libx264", 0, 10);
    let node = Node::start(&scratch, &[("ESTUARY_API__DEBUG_FAULTS", "true")]);
    let url = format!("http://127.0.0.1:{}/rtc/v1/whip/?app=live&stream=wstall", node.ports.api);
    let (mut whip, answer) = whip_publish(&url, &clip, 40);
    assert_eq!(answer["connected"], true, "{answer}; log:\n{}", node.log());
    node.wait_live("live/wstall", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = node.rss_kb();
    fault(&node, "actor=stream&stream=live/wstall&kind=stall&ms=10000");
    // RTP cannot be pushed back: once the input queue is full, frames are dropped, counted.
    let dropped = |n: &Node| n.stream_info("live/wstall").and_then(|s| s["publish_dropped"].as_u64()).unwrap_or(0);
    // (The stalled actor answers the API again once the stall ends; until then the stream is
    // listed without its live figures.)
    assert!(wait_until(Duration::from_secs(25), || dropped(&node) > 0), "no drops counted; log:\n{}", node.log());
    assert!(publisher(&node, "live/wstall")["frames_dropped"].as_u64().unwrap_or(0) > 0, "the client's drops are not counted");
    assert!(node.rss_kb() < rss_before + 30 * 1024, "memory grew during the stall");
    let metrics = String::from_utf8_lossy(&http::get(node.ports.api, "/metrics").unwrap().body).into_owned();
    assert!(metrics.lines().any(|l| l.starts_with("estuary_stream_publish_dropped_frames_total{") && l.contains("wstall") && !l.ends_with(" 0")), "drops missing from /metrics");
    // After the stall, frames flow again.
    let after = frames(&node, "live/wstall");
    assert!(wait_until(Duration::from_secs(10), || frames(&node, "live/wstall") > after + 50), "frames did not flow after the stall");
    let _ = whip.kill();
    let _ = whip.wait();
}

#[test]
fn panics_in_the_stream_its_outputs_and_storage_are_caught_and_players_keep_playing() {
    let scratch = Scratch::new("core-panic");
    let node = Node::start(
        &scratch,
        &[("ESTUARY_API__DEBUG_FAULTS", "true"), ("ESTUARY_DVR__ENABLED", "true"), ("ESTUARY_HLS__ALWAYS", "true"), ("ESTUARY_DASH__ALWAYS", "true"), ("ESTUARY_HLS__FRAGMENT_MS", "1000"), ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "1000")],
    );
    let source = Source { gop: 25, ..Source::default() };
    let mut pusher = publish(&node.rtmp_url("live/p"), &source, &scratch, "publisher");
    node.wait_live("live/p", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    let watched = scratch.path("watched.flv");
    let mut player = record(&node.flv_url("live/p"), &watched, Some(24.0), &scratch, "player");
    std::thread::sleep(Duration::from_secs(3));

    for actor in ["stream", "hls", "dash", "dvr"] {
        fault(&node, &format!("actor={actor}&stream=live/p&kind=panic"));
        std::thread::sleep(Duration::from_secs(2));
    }
    fault(&node, "actor=storage&kind=panic");
    let counted = wait_until(Duration::from_secs(10), || {
        let r = restarts(&node);
        ["stream", "hls", "dash", "dvr", "storage"].iter().all(|name| r[*name].as_u64() == Some(1))
    });
    assert!(counted, "restarts not counted: {}; log:\n{}", restarts(&node), node.log());
    assert_eq!(node.stream_info("live/p").unwrap()["restarts"], 1);
    let metrics = String::from_utf8_lossy(&http::get(node.ports.api, "/metrics").unwrap().body).into_owned();
    assert!(metrics.contains("estuary_supervisor_restarts_total{worker=\"dvr\"} 1"), "restart missing from /metrics");

    // The player played through all of it.
    assert!(player.wait(Duration::from_secs(40)).is_some_and(|s| s.success()), "player failed: {}", player.stderr());
    let probe = Command::new("ffprobe").args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"]).arg(&watched).output().unwrap();
    let duration: f64 = String::from_utf8_lossy(&probe.stdout).trim().parse().unwrap_or(0.0);
    assert!(duration > 18.0, "the player got only {duration} s of 24");

    // HLS goes on with new segments after a discontinuity; DASH keeps listing segments.
    let playlist = || String::from_utf8_lossy(&http::get(node.ports.http, "/live/p.m3u8").unwrap().body).into_owned();
    assert!(wait_until(Duration::from_secs(10), || playlist().contains("#EXT-X-DISCONTINUITY")), "{}", playlist());
    let segments = |text: &str| text.lines().filter(|l| l.ends_with(".ts") || l.ends_with(".m4s")).map(str::to_string).collect::<Vec<_>>();
    let now = segments(&playlist());
    assert!(wait_until(Duration::from_secs(10), || segments(&playlist()).last() != now.last()), "HLS stopped after the panic");
    let mpd = http::get(node.ports.http, "/live/p.mpd").unwrap();
    assert_eq!(mpd.status, 200);

    // The recording shows the restart as a gap with its reason, not silence.
    pusher.interrupt();
    let _ = pusher.wait(Duration::from_secs(10));
    let explained = wait_until(Duration::from_secs(20), || {
        let listing = node.api("/api/v1/recordings?app=live&stream=p");
        listing["losses"].as_array().is_some_and(|l| l.iter().any(|g| g["reason"].as_str().is_some_and(|r| r.contains("restarted"))))
    });
    assert!(explained, "{}", node.api("/api/v1/recordings?app=live&stream=p"));

    // Nothing hangs: a new publish and the API work.
    let mut other = publish(&node.rtmp_url("live/after"), &Source { duration: Some(3.0), ..Source::default() }, &scratch, "after");
    node.wait_live("live/after", Duration::from_secs(20));
    assert!(other.wait(Duration::from_secs(20)).is_some_and(|s| s.success()), "{}", other.stderr());
}

#[test]
fn a_recorder_on_a_slow_disk_loses_nothing_silently_and_resumes_by_itself() {
    let scratch = Scratch::new("core-slowdisk");
    let node = Node::start(
        &scratch,
        &[
            ("ESTUARY_API__DEBUG_FAULTS", "true"),
            ("ESTUARY_DVR__ENABLED", "true"),
            ("ESTUARY_STREAM__OUTPUT_QUEUE_FRAMES", "64"),
            ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "1000"),
        ],
    );
    let source = Source { gop: 25, ..Source::default() };
    let mut pusher = publish(&node.rtmp_url("live/slow"), &source, &scratch, "publisher");
    node.wait_live("live/slow", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    // Each fragment write (one a second) now takes three seconds, for twenty seconds.
    fault(&node, "actor=dvr&stream=live/slow&kind=slow&ms=3000&during_ms=20000");
    let lost = |n: &Node| n.stream_info("live/slow").and_then(|s| s["output_frames_lost"].as_u64()).unwrap_or(0);
    assert!(wait_until(Duration::from_secs(25), || lost(&node) > 0), "the recorder never fell behind; log:\n{}", node.log());
    // Past the slowness the recorder catches up while the publish goes on.
    std::thread::sleep(Duration::from_secs(22));
    pusher.interrupt();
    let _ = pusher.wait(Duration::from_secs(10));
    let settled = wait_until(Duration::from_secs(20), || {
        let listing = node.api("/api/v1/recordings?app=live&stream=slow");
        listing["recordings"].as_array().is_some_and(|r| !r.is_empty() && r.iter().all(|r| r["state"] != "recording"))
    });
    assert!(settled, "recordings did not close");
    let listing = node.api("/api/v1/recordings?app=live&stream=slow");
    let losses = listing["losses"].as_array().cloned().unwrap_or_default();
    assert!(!losses.is_empty(), "frames were lost but no loss is recorded: {listing}");
    assert!(losses.iter().all(|l| l["lost_frames"].as_u64().unwrap_or(0) > 0 || l["reason"].as_str().is_some()), "{listing}");
    // Every hole between the files is explained.
    let gaps = listing["gaps"].as_array().cloned().unwrap_or_default();
    assert!(!gaps.is_empty(), "{listing}");
    for gap in &gaps {
        assert!(gap["reason"].is_string(), "a hole in the recording without a reason: {gap}\n{listing}");
    }
    // It resumed by itself during the same publish: a file starts after the last loss.
    let last_loss_end = losses.iter().filter_map(|l| l["end_ms"].as_i64()).max().unwrap();
    let recordings = listing["recordings"].as_array().cloned().unwrap_or_default();
    let resumed = recordings.iter().any(|r| r["start_ms"].as_i64().is_some_and(|s| s >= last_loss_end - 100) && r["duration_ms"].as_i64().unwrap_or(0) > 2000);
    assert!(resumed, "no recording after the last gap: {listing}");
    assert!(node.log().contains("recording lost frames"), "the loss was not logged");
}
