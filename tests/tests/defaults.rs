//! The node as a new user gets it: the `estuary` binary started with no configuration at all
//! (no file, no `ESTUARY_*` variable), on its built-in default ports, inside a private network
//! namespace whose only interface is `lo` (each test its own, so they run in parallel and the
//! default ports are always free). Every protocol is driven the way the README shows it, at
//! the README's URLs.
//!
//! The other suites configure their nodes on 127.0.0.1 and ephemeral ports; this one catches
//! what only the defaults get wrong (WebRTC and SIP on a wildcard listen address, above all).
//! Needs root for `unshare(CLONE_NEWNET)`: outside CI a non-root run says why it skips.

use estuary_protocols::gb28181::sip::SipMessage;
use estuary_tests::ffmpeg::{self, decode, probe_streams, stream_of, Source};
use estuary_tests::gb_device::Device;
use estuary_tests::aiortc::{whep_play, whip_publish};
use estuary_tests::{http, private_network_or_skip, wait_until, Node, Scratch};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn codec(streams: &[serde_json::Value], kind: &str) -> String {
    stream_of(streams, kind).and_then(|s| s["codec_name"].as_str()).unwrap_or("none").to_string()
}

#[test]
fn every_protocol_plays_on_the_default_ports_with_no_configuration() {
    let Some(()) = private_network_or_skip("defaults") else { return };
    let scratch = Scratch::new("defaults");
    let node = Node::start_with_defaults(&scratch);
    assert!(node.wait_log("listen=0.0.0.0:8000", Duration::from_secs(10)), "WebRTC must listen on its default wildcard address:\n{}", node.log());

    // Publish exactly where the README says, with B-frames off for the WebRTC players.
    let source = Source { bframes: 0, ..Source::default() };
    let _publisher = ffmpeg::publish("rtmp://127.0.0.1/live/livestream", &source, &scratch, "publish");
    node.wait_live("live/livestream", Duration::from_secs(20));

    for url in ["rtmp://127.0.0.1/live/livestream", "http://127.0.0.1:8080/live/livestream.flv", "http://127.0.0.1:8080/live/livestream.ts", "srt://127.0.0.1:10080?streamid=#!::r=live/livestream,m=request"] {
        let streams = probe_streams(url);
        assert_eq!((codec(&streams, "video"), codec(&streams, "audio")), ("h264".into(), "aac".into()), "{url}");
        let (ok, errors) = decode(url, 3);
        assert!(ok && errors.is_empty(), "{url} does not decode clean: {errors}");
    }
    // HLS once its first segments are cut (2 s each).
    assert!(wait_until(Duration::from_secs(20), || http::get(8080, "/live/livestream.m3u8").map(|r| r.status == 200 && String::from_utf8_lossy(&r.body).matches("#EXTINF").count() >= 2).unwrap_or(false)), "no HLS playlist with two segments; log:\n{}", node.log());
    let streams = probe_streams("http://127.0.0.1:8080/live/livestream.m3u8");
    assert_eq!((codec(&streams, "video"), codec(&streams, "audio")), ("h264".into(), "aac".into()));

    // WHEP with aiortc, whose only address is loopback, against the wildcard-bound UDP port.
    let player = whep_play("http://127.0.0.1:1985/rtc/v1/whep/?app=live&stream=livestream", 4, 1)[0].clone();
    assert_eq!(player["status"], 201, "{player}");
    assert_eq!(player["connected"], true, "WHEP did not connect on the default rtc.listen: {player}\nlog:\n{}", node.log());
    assert!(player["video_frames"].as_u64().unwrap_or(0) > 25 && player["audio_frames"].as_u64().unwrap_or(0) > 25, "{player}");

    // WHIP with aiortc: the published clip plays over RTMP.
    let clip = ffmpeg::make_clip(&scratch.path("clip.mp4"), "libx264", 0, 10);
    let (mut whip, published) = whip_publish("http://127.0.0.1:1985/rtc/v1/whip/?app=live&stream=whip", &clip, 20);
    assert_eq!(published["status"], 201, "{published}");
    assert_eq!(published["connected"], true, "WHIP did not connect on the default rtc.listen: {published}\nlog:\n{}", node.log());
    node.wait_live("live/whip", Duration::from_secs(20));
    let streams = probe_streams("rtmp://127.0.0.1/live/whip");
    assert_eq!(codec(&streams, "video"), "h264");
    let _ = whip.kill();
    let _ = whip.wait();

    // Headless Chromium: its fake camera over WHIP, played over WHEP in another page.
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let mut command = Command::new("node");
    command.arg(browser.join("webrtc.mjs")).args(["http://127.0.0.1:1985", "live", "chrome", "5"]);
    let output = ffmpeg::run(command, Duration::from_secs(120));
    let line = output.stdout.lines().last().unwrap_or_default().to_string();
    let result: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("webrtc.mjs printed {line:?} ({e}); stderr:\n{}\nlog:\n{}", output.stderr, node.log()));
    let (start, end) = (result["play"]["frames_start"].as_u64().unwrap_or(0), result["play"]["frames_end"].as_u64().unwrap_or(0));
    assert!(end > start + 25, "Chromium's WHEP video must advance: {result}");

    // The API as the README calls it (curl's -d sends a form content type).
    let curl = |args: &[&str]| {
        let output = Command::new("curl").args(args).output().expect("curl");
        assert!(output.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let streams = curl(&["-s", "http://127.0.0.1:1985/api/v1/streams"]);
    assert!(streams.contains("\"livestream\""), "{streams}");
    // No Redis by default: the node is on its own.
    let cluster = curl(&["-s", "http://127.0.0.1:1985/api/v1/cluster"]);
    assert!(cluster.contains("\"mode\":\"standalone\""), "{cluster}");
    let added = curl(&["-s", "-X", "POST", "http://127.0.0.1:1985/api/v1/forwards", "-d", r#"{"app":"live","stream":"livestream","url":"rtmp://198.51.100.20/live/[stream]_copy"}"#]);
    assert!(added.contains("\"code\":0"), "a form-typed JSON body must be accepted: {added}");
    // By default the API cannot point the node at itself or a private network.
    let inside = curl(&["-s", "-X", "POST", "http://127.0.0.1:1985/api/v1/forwards", "-d", r#"{"app":"live","stream":"livestream","url":"rtmp://127.0.0.1/live/[stream]_copy"}"#]);
    assert!(inside.contains("\"code\":400") && inside.contains("forward.deny_private"), "{inside}");
    let refused = curl(&["-s", "-X", "POST", "http://127.0.0.1:1985/api/v1/forwards", "-d", "app=live&stream=livestream"]);
    assert!(refused.contains("\"code\":400") && refused.contains("bad JSON body"), "a body that is not JSON gets 400 with the reason: {refused}");
}

/// A device made for SRS 5/6 registers and never answers the catalog query: after
/// `gb28181.catalog_timeout_ms` its own id is invited and plays. A device registering over
/// TCP gets requests whose Via names TCP and a real address.
#[test]
fn gb28181_devices_on_the_default_ports() {
    let Some(()) = private_network_or_skip("defaults") else { return };
    let scratch = Scratch::new("defaults-gb");
    let node = Node::start_with_defaults(&scratch);
    let clip = ffmpeg::make_clip(&scratch.path("clip.mp4"), "libx264", 0, 10);

    let device_id = "34020000001320000009";
    let device = Device::new(5060, device_id, "", "34020000001320000010", clip);
    device.ignore_catalog();
    assert_eq!(device.register(3600), 200);
    let stream = format!("live/{device_id}_{device_id}");
    node.wait_live(&stream, Duration::from_secs(20));
    assert_eq!(device.invited.lock().unwrap().first().map(String::as_str), Some(device_id), "the device id itself is invited");
    let url = format!("http://127.0.0.1:8080/{stream}.flv");
    let (ok, errors) = decode(&url, 3);
    assert!(ok && errors.is_empty(), "{url}: {errors}");
    assert!(node.log().contains("sent no catalog"), "{}", node.log());

    // SIP over TCP: REGISTER, then read the 200 and the catalog query the node sends back.
    let mut tcp = std::net::TcpStream::connect("127.0.0.1:5060").expect("SIP over TCP");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = tcp.local_addr().unwrap();
    let register = SipMessage::request("REGISTER", "sip:34020000002000000001@3402000000")
        .with("Via", format!("SIP/2.0/TCP {local};rport;branch=z9hG4bKtcp1"))
        .with("From", "<sip:34020000001320000011@3402000000>;tag=t1")
        .with("To", "<sip:34020000001320000011@3402000000>")
        .with("Call-ID", "tcp-reg-1")
        .with("CSeq", "1 REGISTER")
        .with("Contact", format!("<sip:34020000001320000011@{local}>"))
        .with("Expires", "3600");
    tcp.write_all(&register.to_bytes()).unwrap();
    let mut received = Vec::new();
    let mut query = None;
    let mut buf = [0u8; 4096];
    while query.is_none() {
        let n = tcp.read(&mut buf).expect("the node answers over TCP");
        assert!(n > 0, "connection closed; got {:?}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
        while let Ok(Some((message, used))) = SipMessage::parse(&received) {
            received.drain(..used);
            if message.method() == Some("MESSAGE") {
                query = Some(message);
            }
        }
    }
    let via = query.unwrap().header("Via").unwrap_or_default().to_string();
    assert!(via.starts_with("SIP/2.0/TCP 127.0.0.1:5060;"), "the catalog query's Via must name TCP and the address we reached: {via}");
}
