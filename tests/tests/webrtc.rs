//! WebRTC: aiortc (PyPI; not our stack) publishes over WHIP to the node's single UDP port;
//! the stream plays over RTMP and HTTP-FLV as H.264 + AAC (Opus transcoded); a second publisher of the same stream
//! gets 409, bad offers get 400, and DELETE on the session's Location ends the publish.

use estuary_tests::ffmpeg::{self, decode, probe_streams, stream_of};
use estuary_tests::aiortc::{whep_play, whep_play_with, whip_publish};
use estuary_tests::{http, wait_until, Node, Scratch};
use std::path::PathBuf;
use std::time::Duration;

fn make_clip(scratch: &Scratch) -> PathBuf {
    ffmpeg::make_clip(&scratch.path("clip.mp4"), "libx264", 0, 10)
}

#[test]
fn aiortc_publishes_over_whip_and_plays_over_rtmp_and_flv() {
    let scratch = Scratch::new("whip");
    let clip = make_clip(&scratch);
    let node = Node::start(&scratch, &[]);
    let whip = |stream: &str| format!("http://127.0.0.1:{}/rtc/v1/whip/?app=live&stream={stream}", node.ports.api);

    // Offers that are not SDP, or name no stream, are refused with a reason.
    let bad = http::send(node.ports.api, "POST", "/rtc/v1/whip/?app=live&stream=w", &[("Content-Type", "application/sdp")], b"hello").unwrap();
    assert_eq!(bad.status, 400, "{}", String::from_utf8_lossy(&bad.body));
    assert!(String::from_utf8_lossy(&bad.body).contains("SDP"));
    let nameless = http::send(node.ports.api, "POST", "/rtc/v1/whip/?app=live", &[("Content-Type", "application/sdp")], b"v=0\r\n").unwrap();
    assert_eq!(nameless.status, 400);
    // Browsers on other origins get through CORS preflight.
    let preflight = http::send(node.ports.api, "OPTIONS", "/rtc/v1/whip/?app=live&stream=w", &[("Origin", "http://example.test"), ("Access-Control-Request-Method", "POST")], b"").unwrap();
    assert_eq!(preflight.status, 204);
    assert!(preflight.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("access-control-allow-methods") && v.contains("POST")), "{:?}", preflight.headers);

    let (mut publisher, answer) = whip_publish(&whip("w"), &clip, 40);
    assert_eq!(answer["status"], 201, "{answer}");
    assert_eq!(answer["connected"], true, "{answer}; log:\n{}", node.log());
    let location = answer["location"].as_str().expect("Location header").to_string();
    assert!(location.starts_with("/rtc/v1/whip/resource/"), "{location}");
    let info = node.wait_live("live/w", Duration::from_secs(20));
    assert_eq!(info["publish"]["active"], true, "{info}");

    // A second publisher of the same stream is refused.
    let (mut second, refused) = whip_publish(&whip("w"), &clip, 1);
    assert_eq!(refused["status"], 409, "{refused}");
    let _ = second.wait();

    // H.264 at the clip's size and the Opus audio as AAC over RTMP and HTTP-FLV, decoding
    // clean for 10 s.
    let flv = node.flv_url("live/w");
    for url in [flv.clone(), node.rtmp_url("live/w")] {
        let streams = probe_streams(&url);
        let video = stream_of(&streams, "video").unwrap_or_else(|| panic!("{url}: no video"));
        assert_eq!((video["codec_name"].as_str(), video["width"].as_u64(), video["height"].as_u64()), (Some("h264"), Some(320), Some(240)), "{video}");
        let audio = stream_of(&streams, "audio").unwrap_or_else(|| panic!("{url}: no audio"));
        assert_eq!((audio["codec_name"].as_str(), audio["sample_rate"].as_str(), audio["channels"].as_u64()), (Some("aac"), Some("48000"), Some(2)), "{audio}");
    }
    let decoders: Vec<_> = [flv, node.rtmp_url("live/w")].into_iter().map(|url| std::thread::spawn(move || (url.clone(), decode(&url, 10)))).collect();
    for d in decoders {
        let (url, (ok, errors)) = d.join().unwrap();
        assert!(ok && errors.trim().is_empty(), "{url}: {errors}");
    }

    // A player that joins late decodes video, and its arrival asks the publisher for a fresh
    // keyframe (how fast it starts is measured by the benchmark's WHEP startup figure).
    let late = &whep_play(&format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=w", node.ports.api), 3, 1)[0];
    assert_eq!(late["connected"], true, "{late}");
    assert!(late["video_frames"].as_u64().unwrap_or(0) > 0, "{late}");

    // DELETE on the Location ends the session and the publish.
    let deleted = http::delete(node.ports.api, &location).unwrap();
    assert_eq!(deleted.status, 200);
    assert!(node.wait_log("WHIP publish ended", Duration::from_secs(10)), "log:\n{}", node.log());
    assert!(node.log().contains("ended by DELETE"));
    let ended = node.log().lines().find(|l| l.contains("WHIP publish ended")).unwrap_or_default().to_string();
    assert!(!ended.contains("player_keyframe_requests=0"), "the late player's keyframe request reached the publisher: {ended}");
    assert!(wait_until(Duration::from_secs(15), || node.stream_info("live/w").is_none_or(|s| s["publish"]["active"] != true)), "still publishing");
    assert_eq!(http::delete(node.ports.api, &location).unwrap().status, 404, "a session is deleted once");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

#[test]
fn rtmp_publish_plays_over_whep_with_opus_audio() {
    let scratch = Scratch::new("whep");
    let node = Node::start(&scratch, &[]);
    let source = ffmpeg::Source { audio_rate: 44_100, bframes: 0, ..ffmpeg::Source::default() };
    let mut publisher = ffmpeg::publish(&node.rtmp_url("live/p"), &source, &scratch, "publisher");
    node.wait_live("live/p", Duration::from_secs(20));
    let whep = |stream: &str| format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream={stream}", node.ports.api);

    let players = whep_play(&whep("p"), 10, 1);
    let player = &players[0];
    assert_eq!(player["status"], 201, "{player}");
    assert_eq!(player["connected"], true, "{player}; log:\n{}", node.log());
    assert_eq!((player["width"].as_u64(), player["height"].as_u64()), (Some(320), Some(240)), "{player}");
    // 10 s at 25 fps and 50 Opus packets a second, with room for a slow machine.
    assert!(player["video_frames"].as_u64().unwrap_or(0) >= 100, "{player}");
    assert!(player["audio_frames"].as_u64().unwrap_or(0) >= 200, "{player}");
    assert_eq!(player["audio_rate"], 48_000, "AAC at 44.1 kHz arrives as 48 kHz Opus: {player}");
    assert!(node.wait_log("WHEP play ended", Duration::from_secs(10)), "DELETE did not end the session");

    // SRS's older JSON API plays too.
    let srs = &whep_play_with(&format!("http://127.0.0.1:{}/rtc/v1/play/", node.ports.api), 3, 1, Some("webrtc://127.0.0.1/live/p"))[0];
    assert_eq!(srs["status"], 201, "{srs}");
    assert!(srs["video_frames"].as_u64().unwrap_or(0) > 10 && srs["audio_frames"].as_u64().unwrap_or(0) > 10, "{srs}");

    // Nobody publishes `nope`.
    let missing = &whep_play(&whep("nope"), 1, 1)[0];
    assert_eq!(missing["status"], 404, "{missing}");
    publisher.kill();
}

#[test]
fn twenty_whep_players_of_one_whip_publisher_all_receive() {
    let scratch = Scratch::new("webrtc-fanout");
    let clip = make_clip(&scratch);
    let node = Node::start(&scratch, &[]);
    let (mut publisher, answer) = whip_publish(&format!("http://127.0.0.1:{}/rtc/v1/whip/?app=live&stream=fan", node.ports.api), &clip, 60);
    assert_eq!(answer["connected"], true, "{answer}");
    node.wait_live("live/fan", Duration::from_secs(20));
    let players = whep_play(&format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=fan", node.ports.api), 8, 20);
    assert_eq!(players.len(), 20);
    for (i, player) in players.iter().enumerate() {
        assert_eq!(player["connected"], true, "player {i}: {player}");
        assert!(player["video_frames"].as_u64().unwrap_or(0) >= 10, "player {i}: {player}");
        assert!(player["audio_frames"].as_u64().unwrap_or(0) >= 10, "player {i}: {player}");
    }
    let _ = publisher.kill();
    let _ = publisher.wait();
}

#[test]
fn chromium_publishes_over_whip_and_plays_over_whep() {
    let scratch = Scratch::new("webrtc-browser");
    let node = Node::start(&scratch, &[]);
    let (result, success, stderr) = estuary_tests::browser::webrtc(node.ports.api, "live", "chrome", 5, "video/H264");
    assert_eq!(result["publish"]["status"], 201, "{result}\n{}", node.log());
    assert_eq!(result["play"]["status"], 201, "{result}\n{}", node.log());
    let (start, end) = (result["play"]["frames_start"].as_u64().unwrap_or(0), result["play"]["frames_end"].as_u64().unwrap_or(0));
    assert!(end > start + 25, "the played video's frame counter must advance: {result}");
    assert_eq!((result["play"]["width"].as_u64(), result["play"]["height"].as_u64()), (Some(320), Some(240)), "{result}");
    assert_eq!(result["play"]["codec"], "video/H264", "{result}");
    assert!(success, "{stderr}");
}

/// WebRTC clients the API lists.
fn webrtc_clients(node: &Node) -> usize {
    node.api("/api/v1/clients")["clients"].as_array().map(|c| c.iter().filter(|c| c["protocol"] == "webrtc").count()).unwrap_or(0)
}

#[test]
fn failed_peers_are_cleaned_up_and_others_carry_on() {
    let scratch = Scratch::new("webrtc-cleanup");
    let clip = make_clip(&scratch);
    let node = Node::start(&scratch, &[("ESTUARY_RTC__CONNECT_TIMEOUT_S", "2")]);
    let whip = |stream: &str| format!("http://127.0.0.1:{}/rtc/v1/whip/?app=live&stream={stream}", node.ports.api);
    let (mut good, answer) = whip_publish(&whip("good"), &clip, 60);
    assert_eq!(answer["connected"], true, "{answer}");
    node.wait_live("live/good", Duration::from_secs(20));
    assert_eq!(webrtc_clients(&node), 1);

    // A peer that signals and never connects (no ICE, no DTLS) is dropped after the connect
    // timeout, and its stream is released.
    let (mut ghost, answer) = whip_publish(&whip("ghost"), &clip, 0);
    assert_eq!(answer["status"], 201, "{answer}");
    let _ = ghost.wait();
    assert!(node.wait_log("did not connect within 2 s", Duration::from_secs(15)), "log:\n{}", node.log());
    // Binding requests with credentials nobody issued, and datagrams that are not STUN, reach
    // no session.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut stun = vec![0x00, 0x01, 0x00, 0x10, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[9; 12]);
    stun.extend_from_slice(&[0x00, 0x06, 0x00, 0x09]);
    stun.extend_from_slice(b"nope:nope\0\0\0");
    for datagram in [&stun[..], b"\x80\x60garbage that is not STUN", &[0u8; 1][..]] {
        socket.send_to(datagram, ("127.0.0.1", node.ports.rtc)).unwrap();
    }
    // Bad SDP is refused before any session exists.
    let bad = http::send(node.ports.api, "POST", "/rtc/v1/whip/?app=live&stream=bad", &[("Content-Type", "application/sdp")], b"v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n").unwrap();
    assert_eq!(bad.status, 400, "{}", String::from_utf8_lossy(&bad.body));

    // Only the good publisher is left, and it still plays.
    assert!(wait_until(Duration::from_secs(10), || webrtc_clients(&node) == 1), "clients: {}", node.api("/api/v1/clients"));
    assert!(node.stream_info("live/ghost").is_none_or(|s| s["publish"]["active"] != true), "the ghost's stream is released");
    let (ok, errors) = decode(&node.flv_url("live/good"), 3);
    assert!(ok && errors.trim().is_empty(), "{errors}");
    let _ = good.kill();
    let _ = good.wait();
    assert!(wait_until(Duration::from_secs(60), || webrtc_clients(&node) == 0), "a publisher that vanished is dropped once ICE fails; clients: {}", node.api("/api/v1/clients"));
}

#[test]
fn an_hevc_stream_plays_over_whep_from_its_h264_fallback() {
    let scratch = Scratch::new("whep-fallback");
    let node = Node::start(&scratch, &[("ESTUARY_TRANSCODE__FALLBACK_IDLE_S", "10")]);
    let source = ffmpeg::Source { video_codec: "libx265", bframes: 0, ..ffmpeg::Source::default() };
    let _publisher = ffmpeg::publish_ts(&node.srt_url("live/hevc", true, ""), &source, &scratch, "publisher");
    node.wait_live("live/hevc", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(10), || node.stream_info("live/hevc").is_some_and(|i| i["video"]["codec"] == "H265")), "{:?}", node.stream_info("live/hevc"));
    let fallbacks = |node: &Node| node.api("/api/v1/transcodes")["transcodes"].as_array().cloned().unwrap_or_default().into_iter().filter(|t| t["origin"] == "fallback").collect::<Vec<_>>();
    assert!(fallbacks(&node).is_empty(), "nobody asked for a fallback yet");

    // Without the query the stream plays as it is (over HTTP-TS: Debian's ffprobe 5.1 cannot
    // read H.265 in FLV, which is what the fallback is for).
    let streams = probe_streams(&format!("http://127.0.0.1:{}/live/hevc.ts", node.ports.http));
    assert_eq!(stream_of(&streams, "video").and_then(|v| v["codec_name"].as_str()), Some("hevc"), "{streams:?}");
    assert!(fallbacks(&node).is_empty(), "an HEVC player needs no fallback");

    // An HTTP player asking for H.264 is sent to the fallback rendition, started for it.
    let redirect = http::get(node.ports.http, "/live/hevc.flv?codec=h264&x=1").unwrap();
    assert_eq!(redirect.status, 302, "{}", String::from_utf8_lossy(&redirect.body));
    assert_eq!(redirect.headers.iter().find(|(k, _)| k == "location").map(|(_, v)| v.as_str()), Some("/live/hevc_h264.flv?x=1"));
    let streams = probe_streams(&format!("http://127.0.0.1:{}/live/hevc.flv?codec=h264", node.ports.http));
    assert_eq!(stream_of(&streams, "video").and_then(|v| v["codec_name"].as_str()), Some("h264"), "{streams:?}");

    // aiortc offers H.264 (and VP8) only: it gets the same rendition and decodes it.
    let player = &whep_play(&format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=hevc", node.ports.api), 6, 1)[0];
    assert_eq!(player["status"], 201, "{player}; log:\n{}", node.log());
    assert_eq!(player["connected"], true, "{player}");
    assert_eq!((player["width"].as_u64(), player["height"].as_u64()), (Some(320), Some(240)), "{player}");
    assert!(player["video_frames"].as_u64().unwrap_or(0) >= 50, "{player}");
    assert!(node.log().contains("it gets the H.264 fallback rendition"), "{}", node.log());
    let listed = fallbacks(&node);
    assert_eq!(listed.len(), 1, "one transcoder for every player: {listed:?}");
    assert_eq!((listed[0]["source"].as_str(), listed[0]["output"].as_str(), listed[0]["codec"].as_str()), (Some("live/hevc"), Some("live/hevc_h264"), Some("h264")), "{listed:?}");

    // Once nobody plays it, the fallback stops (10 s idle) and the source goes on.
    assert!(
        wait_until(Duration::from_secs(40), || node.log().contains("nobody plays the fallback rendition any more")),
        "fallback still running: {:?}",
        fallbacks(&node)
    );
    assert!(fallbacks(&node).iter().all(|t| t["state"] == "stopped"), "{:?}", fallbacks(&node));
    assert!(node.stream_info("live/hevc").is_some_and(|i| i["video"]["codec"] == "H265"));
}
