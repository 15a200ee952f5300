//! Virtual live: a 30 s MP4 published as a looping live stream, played over HTTP-FLV for 90 s
//! across two loop points, and started again after a node restart; bad sources refused.

use estuary_tests::ffmpeg::{self, decode, probe_packets};
use estuary_tests::{http, wait_until, Node, Scratch};
use std::process::Command;
use std::time::Duration;

fn ingests(node: &Node) -> Vec<serde_json::Value> {
    node.api("/api/v1/ingests")["ingests"].as_array().cloned().unwrap_or_default()
}

fn post(node: &Node, body: &str) -> http::Response {
    http::send(node.ports.api, "POST", "/api/v1/ingests", &[("Content-Type", "application/json")], body.as_bytes()).expect("API")
}

#[test]
fn looping_mp4_plays_for_ninety_seconds_and_survives_a_restart() {
    let scratch = Scratch::new("ingest");
    let clip = ffmpeg::make_clip(&scratch.path("clip.mp4"), "libx264", 2, 30);
    let not_media = scratch.path("notes.bin");
    std::fs::write(&not_media, "this is not a video\n".repeat(100)).unwrap();

    let mut node = Node::start(&scratch, &[]);
    // Bad sources are refused with the reason; nothing starts.
    let missing = post(&node, r#"{"app":"live","stream":"gone","source":"/nonexistent/file.mp4"}"#);
    assert_eq!(missing.status, 400);
    assert!(String::from_utf8_lossy(&missing.body).contains("cannot open"), "{}", String::from_utf8_lossy(&missing.body));
    let text = post(&node, &format!(r#"{{"app":"live","stream":"text","source":"{}"}}"#, not_media.display()));
    assert_eq!(text.status, 400);
    assert!(String::from_utf8_lossy(&text.body).contains("not a media file"), "{}", String::from_utf8_lossy(&text.body));
    assert!(ingests(&node).is_empty());

    let created = post(&node, &format!(r#"{{"app":"live","stream":"tv","source":"{}"}}"#, clip.display()));
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    node.wait_live("live/tv", Duration::from_secs(20));

    // 90 s of HTTP-FLV: two loop points. Decoded and probed at the same time.
    let url = node.flv_url("live/tv");
    let decoder = std::thread::spawn({
        let url = url.clone();
        move || decode(&url, 90)
    });
    let packets = probe_packets(&url, Some(90));
    let (ok, errors) = decoder.join().expect("decoder");
    assert!(ok && errors.trim().is_empty(), "decode across loop points: {errors}");
    for kind in ["video", "audio"] {
        let dts: Vec<f64> = packets.iter().filter(|p| p.codec_type == kind).filter_map(|p| p.dts).collect();
        assert!(dts.len() > 100, "{kind}: {} packets", dts.len());
        let span = dts.last().unwrap() - dts.first().unwrap();
        assert!(span > 85.0, "{kind}: only {span:.1} s of timestamps");
        let backwards: Vec<(f64, f64)> = dts.windows(2).filter(|w| w[1] <= w[0]).map(|w| (w[0], w[1])).collect();
        assert!(backwards.is_empty(), "{kind} timestamps not increasing at {backwards:?}");
        // No jump larger than a few frames either (the loop joins seamlessly).
        let largest = dts.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, f64::max);
        assert!(largest < 0.5, "{kind}: a {largest:.3} s jump in timestamps");
    }
    let status = &ingests(&node)[0];
    assert!(status["loops"].as_u64().unwrap_or(0) >= 2, "{status}");
    assert_eq!(status["state"], "live");

    // After a restart the saved ingest runs again.
    node.stop();
    node.restart();
    node.wait_live("live/tv", Duration::from_secs(20));
    let after = ingests(&node);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(wait_until(Duration::from_secs(10), || ingests(&node)[0]["state"] == "live"));
    let (ok, errors) = decode(&url, 4);
    assert!(ok && errors.trim().is_empty(), "{errors}");

    // Removing it stops the stream's publisher and forgets it.
    let id = after[0]["id"].as_str().unwrap().to_string();
    assert_eq!(http::delete(node.ports.api, &format!("/api/v1/ingests/{id}")).unwrap().status, 200);
    assert!(ingests(&node).is_empty());
    assert!(wait_until(Duration::from_secs(15), || node.stream_info("live/tv").is_none_or(|s| s["publish"]["active"] != true)), "still publishing");
}

#[test]
fn directory_of_files_and_url_relay() {
    let scratch = Scratch::new("ingest-more");
    let dir = scratch.path("clips");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, tone) in [("a.mp4", 440), ("b.flv", 660)] {
        let mut make = Command::new("ffmpeg");
        make.args(["-hide_banner", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", &format!("sine=frequency={tone}:sample_rate=48000")])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-c:a", "aac", "-t", "4", "-y"])
            .arg(dir.join(name));
        assert!(ffmpeg::run(make, Duration::from_secs(60)).success(), "could not make {name}");
    }
    let node = Node::start(&scratch, &[]);
    let created = post(&node, &format!(r#"{{"app":"live","stream":"dir","source":"{}"}}"#, dir.display()));
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    node.wait_live("live/dir", Duration::from_secs(20));
    // 12 s: both files, twice over the MP4 -> FLV boundary and the loop point.
    let packets = probe_packets(&node.flv_url("live/dir"), Some(12));
    let dts: Vec<f64> = packets.iter().filter(|p| p.codec_type == "video").filter_map(|p| p.dts).collect();
    assert!(dts.last().unwrap() - dts.first().unwrap() > 10.0, "{} s of video", dts.last().unwrap() - dts.first().unwrap());
    assert!(dts.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] < 0.5), "timestamps jump or go back across files");
    assert!(ingests(&node).iter().any(|i| i["loops"].as_u64() >= Some(1)), "{:?}", ingests(&node));

    // A URL source is relayed by an ffmpeg child.
    let _source = ffmpeg::publish(&node.rtmp_url("live/origin"), &ffmpeg::Source::default(), &scratch, "origin");
    node.wait_live("live/origin", Duration::from_secs(20));
    let created = post(&node, &format!(r#"{{"app":"live","stream":"relayed","source":"{}"}}"#, node.rtmp_url("live/origin")));
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    node.wait_live("live/relayed", Duration::from_secs(30));
    let (ok, errors) = decode(&node.flv_url("live/relayed"), 3);
    assert!(ok && errors.trim().is_empty(), "{errors}");
    let refused = post(&node, r#"{"app":"live","stream":"x","source":"ftp://example.com/a.mp4"}"#);
    assert_eq!(refused.status, 400);
}
