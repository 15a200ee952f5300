//! GB28181 media without SIP (SRS 6's `/gb/v1/publish/`): a simulated camera sends PS over
//! RTP over TCP and the stream plays over HTTP-FLV and HLS; broken cameras (bogus RTP
//! lengths, truncated PS, an SSRC nobody announced) cost only their own connection.

use estuary_tests::ffmpeg::{self, decode, probe_streams, stream_of};
use estuary_tests::gb_camera::{Camera, Fault};
use estuary_tests::{http, wait_until, Node, Scratch};
use std::process::Command;
use std::time::Duration;

fn announce(node: &Node, id: &str, ssrc: &str) -> http::Response {
    let body = format!(r#"{{"id":"{id}","ssrc":"{ssrc}"}}"#);
    http::send(node.ports.api, "POST", "/gb/v1/publish/", &[("Content-Type", "application/json")], body.as_bytes()).expect("API")
}

#[test]
fn camera_media_plays_and_broken_cameras_are_dropped_alone() {
    let scratch = Scratch::new("gb28181");
    let clip = scratch.path("camera.mp4");
    let mut make = Command::new("ffmpeg");
    make.args(["-hide_banner", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", "50", "-c:a", "aac", "-t", "10", "-y"])
        .arg(&clip);
    assert!(ffmpeg::run(make, Duration::from_secs(60)).success(), "could not make the clip");
    let node = Node::start(&scratch, &[("ESTUARY_HLS__FRAGMENT_MS", "2000")]);

    let id = "34020000001320000001";
    let answer = announce(&node, id, "0200000001");
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["port"].as_u64(), Some(node.ports.gb_media as u64));
    assert_eq!(json["is_tcp"], true);
    assert_eq!(announce(&node, "cam", "not-a-number").status, 400);

    let camera = Camera::start(node.ports.gb_media, 200_000_001, &clip, 40.0, Fault::None);
    let stream = format!("live/{id}");
    let info = node.wait_live(&stream, Duration::from_secs(20));
    assert_eq!(info["publish"]["protocol"], "gb28181", "{info}");

    // Broken cameras alongside: each is dropped (or its bad bytes skipped), the first plays on.
    assert_eq!(announce(&node, "bogus", "0200000002").status, 200);
    assert_eq!(announce(&node, "torn", "0200000003").status, 200);
    let bogus = Camera::start(node.ports.gb_media, 200_000_002, &clip, 20.0, Fault::BogusLength { after: 60 });
    let torn = Camera::start(node.ports.gb_media, 200_000_003, &clip, 20.0, Fault::TruncatedPs { after: 60 });
    let stranger = Camera::start(node.ports.gb_media, 999, &clip, 5.0, Fault::None);

    let flv = node.flv_url(&stream);
    let streams = probe_streams(&flv);
    let video = stream_of(&streams, "video").expect("video");
    assert_eq!((video["codec_name"].as_str(), video["width"].as_u64(), video["height"].as_u64()), (Some("h264"), Some(320), Some(240)), "{video}");
    assert!(stream_of(&streams, "audio").is_some_and(|a| a["codec_name"] == "aac"), "{streams:?}");
    let hls = format!("http://127.0.0.1:{}/{stream}.m3u8", node.ports.http);
    assert!(wait_until(Duration::from_secs(20), || http::get(node.ports.http, &format!("/{stream}.m3u8")).is_ok_and(|r| r.status == 200)), "no HLS");
    let decoders: Vec<_> = [flv.clone(), hls].into_iter().map(|url| std::thread::spawn(move || (url.clone(), decode(&url, 20)))).collect();
    for d in decoders {
        let (url, (ok, errors)) = d.join().unwrap();
        assert!(ok && errors.trim().is_empty(), "{url}: {errors}\nlog:\n{}", node.log());
    }

    let log = node.log();
    assert!(log.contains("bad framing"), "bogus RTP length not reported:\n{log}");
    assert!(log.contains("SSRC nobody announced"), "unknown SSRC not reported:\n{log}");
    assert!(bogus.finish().is_err() || log.contains("bad framing"));
    assert!(stranger.finish().is_err() || log.contains("SSRC nobody announced"));
    drop(torn);
    // The good camera was never interrupted.
    assert_eq!(node.stream_info(&stream).unwrap()["publish"]["cid"], info["publish"]["cid"]);
    assert!(camera.finish().is_ok());
}
