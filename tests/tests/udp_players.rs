//! Many players of one stream over UDP outputs at once: 200 SRT players (the load tool's
//! srt-tokio callers) and 200 WHEP players (the load tool's webrtc-rs peers, a stack other
//! than the node's own code above the `rtc` crate's sans-IO parts) while an RTMP player and an
//! aiortc WHEP player decode the same stream, on one node.

use estuary_tests::aiortc::{whep_play, whip_publish};
use estuary_tests::ffmpeg::{decode, publish, spawn, Process, Source};
use estuary_tests::{Node, Scratch};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PLAYERS: usize = 200;

fn tasks(node: &Node) -> serde_json::Value {
    node.api("/api/v1/tasks")
}

/// Clients of `protocol` the API lists.
fn clients(node: &Node, protocol: &str) -> usize {
    node.api("/api/v1/clients?count=1000")["clients"].as_array().map(|clients| clients.iter().filter(|c| c["protocol"] == protocol).count()).unwrap_or(0)
}

/// Starts the load tool with [`PLAYERS`] players of `url` for `hold_s` seconds after the ramp.
fn load(url: &str, label: &str, hold_s: u32) -> Child {
    load_with(url, label, PLAYERS, 4000, hold_s, &[])
}

/// Starts the load tool with `players` players of `url`, connecting over `ramp_ms`, held
/// `hold_s` seconds, with `extra` arguments.
fn load_with(url: &str, label: &str, players: usize, ramp_ms: u32, hold_s: u32, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_estuary-load"))
        .args(["--url", url, "--players", &players.to_string(), "--ramp-ms", &ramp_ms.to_string(), "--hold-s", &hold_s.to_string(), "--label", label])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start estuary-load")
}

/// The load tool's JSON result; fails the test when it failed.
fn result_of(load: Child, node: &Node) -> serde_json::Value {
    let output = load.wait_with_output().expect("estuary-load output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "estuary-load failed: {}\n{stdout}\nnode log:\n{}", String::from_utf8_lossy(&output.stderr), node.log());
    stdout.lines().rev().find_map(|line| serde_json::from_str(line).ok()).unwrap_or_else(|| panic!("no result from estuary-load: {stdout}"))
}

/// A node of its own with an ffmpeg RTMP publish of `live/<stream>` live on it. A small
/// picture keeps the debug build's cost for hundreds of players low; no B-frames: WebRTC
/// players are sent frames in decode order.
fn live_node(scratch: &Scratch, stream: &str) -> (Node, Process) {
    let node = Node::start(scratch, &[]);
    let source = Source { size: "320x180", bframes: 0, ..Source::default() };
    let publisher = publish(&node.rtmp_url(&format!("live/{stream}")), &source, scratch, "publisher");
    node.wait_live(&format!("live/{stream}"), Duration::from_secs(20));
    (node, publisher)
}

#[test]
fn two_hundred_srt_and_two_hundred_whep_players_while_rtmp_plays_clean() {
    // What is tested is that every player gets the stream and the publisher's other players
    // do not suffer.
    let scratch = Scratch::new("udp-players");
    let (node, _publisher) = live_node(&scratch, "many");

    let hold_s = 30;
    let whep_url = format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=many", node.ports.api);
    let srt = load(&node.srt_url("live/many", false, ""), "srt", hold_s);
    let whep = load(&whep_url, "whep", hold_s);

    // Once every player is on (the ramp takes 4 s; a loaded machine connects slower): one
    // task serves the stream's SRT players, and an RTMP player and an aiortc WHEP player
    // decode the stream.
    let mut counts = (0, 0);
    estuary_tests::wait_until(Duration::from_secs(25), || {
        counts = (clients(&node, "srt"), clients(&node, "webrtc"));
        counts == (PLAYERS, PLAYERS)
    });
    let (srt_clients, webrtc_clients) = counts;
    let census = tasks(&node);
    let srt_groups = census["kinds"]["srt_players"].as_u64().unwrap_or(0);
    let aiortc = std::thread::spawn(move || whep_play(&whep_url, 4, 1));
    let (clean, errors) = decode(&node.rtmp_url("live/many"), 5);
    let aiortc = aiortc.join().expect("aiortc player");

    let srt = result_of(srt, &node);
    let whep = result_of(whep, &node);
    assert!(clean && errors.trim().is_empty(), "the RTMP player's decode was not clean: {errors}");
    assert_eq!(srt_clients, PLAYERS, "SRT clients listed by the API while all played");
    assert_eq!(webrtc_clients, PLAYERS, "WebRTC clients listed by the API while all played");
    assert_eq!(srt_groups, 1, "tasks serving the stream's SRT players: {census}");
    for result in [&srt, &whep] {
        assert_eq!(result["connected"], PLAYERS, "{result}");
        assert_eq!(result["player_errors"], 0, "{result}");
        assert_eq!(result["receiving_at_end"], PLAYERS, "every player still receiving at the end: {result}\nlog:\n{}", node.log().lines().filter(|l| !l.contains("DEBUG") && !l.contains("discard message") && !l.contains("WHEP play")).rev().take(40).collect::<Vec<_>>().join("\n"));
        // Startup (connect to first keyframe) is a benchmark figure, printed, not asserted.
        eprintln!("{} players: median startup {} ms", result["label"], result["startup_ms_median"]);
    }
    let player = &aiortc[0];
    assert_eq!(player["connected"], true, "aiortc among 200 WHEP players: {player}\nlog:\n{}", node.log());
    // 4 s at 25 frames/s and 50 Opus frames/s; at least half of each decoded.
    assert!(player["video_frames"].as_u64().unwrap_or(0) >= 50, "aiortc video among 200 WHEP players: {player}");
    assert!(player["audio_frames"].as_u64().unwrap_or(0) >= 100, "aiortc audio among 200 WHEP players: {player}");
}

#[test]
fn srt_players_end_with_the_stream_and_a_republish_is_played_by_new_ones() {
    let scratch = Scratch::new("udp-players-end");
    let node = Node::start(&scratch, &[("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "0")]);
    let source = Source { size: "320x180", ..Source::default() };
    let mut publisher = publish(&node.rtmp_url("live/ends"), &source, &scratch, "publisher");
    node.wait_live("live/ends", Duration::from_secs(20));
    let url = node.srt_url("live/ends", false, "");
    // Two SRT players of the first publish (one group), reading until the stream ends.
    let mut players: Vec<_> = (0..2).map(|i| spawn(["-hide_banner", "-nostdin", "-v", "error", "-i", url.as_str(), "-t", "120", "-f", "null", "-"].map(String::from).to_vec(), &scratch, &format!("player{i}"))).collect();
    std::thread::sleep(Duration::from_secs(4));
    for player in players.iter_mut() {
        assert!(player.running(), "SRT player stopped while the stream was live: {}", player.stderr());
    }
    publisher.kill();
    for player in players.iter_mut() {
        assert!(player.wait(Duration::from_secs(15)).is_some(), "SRT player still connected 15 s after the stream ended; log:\n{}", node.log());
    }
    // The next publish of the same stream is played by new SRT players, clean.
    let _publisher = publish(&node.rtmp_url("live/ends"), &source, &scratch, "publisher2");
    node.wait_live("live/ends", Duration::from_secs(20));
    let (clean, errors) = decode(&url, 4);
    assert!(clean && errors.trim().is_empty(), "SRT play of the republished stream not clean: {errors}\nlog:\n{}", node.log());
}

/// WHEP players (the load tool's webrtc-rs peers, whose NACK generator is `rtc`'s) that throw
/// away every 20th video datagram get nearly all of them again: the node answers their NACKs
/// from each player's record of its last 256 video packets. With that answer switched off,
/// none came back (seen once: 0 of 96).
#[test]
fn whep_players_that_lose_video_packets_get_them_again() {
    let scratch = Scratch::new("whep-nack");
    let (node, _publisher) = live_node(&scratch, "lossy");
    let url = format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=lossy", node.ports.api);
    let result = result_of(load_with(&url, "whep-nack", 3, 300, 8, &["--drop-video-every", "20"]), &node);
    let dropped = result["rtp_dropped"].as_u64().unwrap_or(0);
    let recovered = result["rtp_recovered"].as_u64().unwrap_or(0);
    eprintln!("WHEP players threw away {dropped} video datagrams; {recovered} came again");
    // (Not `receiving_at_end`: the load tool reassembles frames in arrival order only, so a
    // frame whose lost packet comes back late is spoiled for it and it waits for a keyframe.)
    assert_eq!((result["connected"].as_u64(), result["player_errors"].as_u64()), (Some(3), Some(0)), "{result}");
    assert!(dropped >= 20, "too few video datagrams thrown away to judge: {result}");
    // The players stop at once at the end of the hold: the last few thrown away may not
    // have been asked for yet.
    assert!(recovered * 10 >= dropped * 9, "only {recovered} of {dropped} lost video packets were sent again: {result}\nlog:\n{}", node.log().lines().filter(|l| l.contains("WHEP")).collect::<Vec<_>>().join("\n"));
}

/// Keyframe requests (PLI) of WHEP players reach the stream's WHIP publisher: two load-tool
/// players ask every 300 ms while aiortc publishes; the publisher's session counts the
/// requests it got from players (its end log). Before `rtc`'s inbound RTCP was let through to
/// the sessions only each player's joining asked (2), however often the players asked.
#[test]
fn whep_players_keyframe_requests_reach_the_whip_publisher() {
    let scratch = Scratch::new("whep-pli");
    let clip = estuary_tests::ffmpeg::make_clip(&scratch.path("clip.mp4"), "libx264", 0, 10);
    let node = Node::start(&scratch, &[]);
    let (mut publisher, answer) = whip_publish(&format!("http://127.0.0.1:{}/rtc/v1/whip/?app=live&stream=pli", node.ports.api), &clip, 14);
    assert_eq!(answer["connected"], true, "{answer}");
    node.wait_live("live/pli", Duration::from_secs(20));
    let url = format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=pli", node.ports.api);
    let result = result_of(load_with(&url, "whep-pli", 2, 300, 6, &["--pli-every-ms", "300"]), &node);
    let sent = result["pli_sent"].as_u64().unwrap_or(0);
    assert!(sent >= 20, "the players sent too few keyframe requests to judge: {result}");
    let _ = publisher.wait();
    let mut ended = String::new();
    estuary_tests::wait_until(Duration::from_secs(20), || {
        ended = node.log().lines().find(|l| l.contains("WHIP publish ended")).unwrap_or_default().to_string();
        !ended.is_empty()
    });
    let requests: u64 = ended.split("player_keyframe_requests=").nth(1).and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no request count in the publisher's end log: {ended:?}\nlog:\n{}", node.log()));
    eprintln!("WHEP players sent {sent} keyframe requests; the WHIP session got {requests}");
    // Requests close together are merged on the way (one waiting request covers the next),
    // so fewer arrive than were sent; far more than the two joins.
    assert!(requests >= 10, "the WHIP publisher's session got {requests} keyframe requests from players that sent {sent}: {ended}");
}
