//! Transcoding ladders: two renditions at their configured sizes, an HLS master playlist that
//! ffprobe opens, a killed ffmpeg child restarted by its supervisor, and bad specs or a
//! missing ffmpeg reported without harm.

use estuary_tests::ffmpeg::{probe_streams, publish, stream_of, Source};
use estuary_tests::{http, wait_until, Node, Scratch};
use serde_json::Value;
use std::time::Duration;

fn transcodes(node: &Node) -> Vec<Value> {
    node.api("/api/v1/transcodes")["transcodes"].as_array().cloned().unwrap_or_default()
}

fn height(url: &str) -> u64 {
    let streams = probe_streams(url);
    stream_of(&streams, "video").and_then(|v| v["height"].as_u64()).unwrap_or_else(|| panic!("{url}: no video in {streams:?}"))
}

#[test]
fn ladder_renditions_master_playlist_and_restarts() {
    let scratch = Scratch::new("transcode");
    let ladder = r#"{ live = [ { suffix = "_180p", height = 180, video_kbps = 300 }, { suffix = "_120p", height = 120, video_kbps = 150, audio_kbps = 64 } ] }"#;
    let node = Node::start(&scratch, &[("ESTUARY_TRANSCODE__APPS", ladder)]);
    let _publisher = publish(&node.rtmp_url("live/s"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/s", Duration::from_secs(20));
    node.wait_live("live/s_180p", Duration::from_secs(40));
    node.wait_live("live/s_120p", Duration::from_secs(40));
    assert_eq!(height(&node.rtmp_url("live/s_180p")), 180);
    assert_eq!(height(&node.flv_url("live/s_120p")), 120);
    assert_eq!(transcodes(&node).len(), 2, "{:?}", transcodes(&node));

    // The master playlist lists the source and both renditions once their HLS exists.
    let master = "/live/s_master.m3u8".to_string();
    let mut text = String::new();
    let ok = wait_until(Duration::from_secs(30), || {
        text = http::get(node.ports.http, &master).map(|r| String::from_utf8_lossy(&r.body).into_owned()).unwrap_or_default();
        ["s.m3u8", "s_180p.m3u8", "s_120p.m3u8"].iter().all(|v| text.lines().any(|l| l == *v))
    });
    assert!(ok, "master playlist incomplete:\n{text}");
    assert!(text.starts_with("#EXTM3U") && text.matches("#EXT-X-STREAM-INF:BANDWIDTH=").count() == 3, "{text}");
    assert!(text.contains("RESOLUTION=320x240"), "{text}");
    // Each variant's package starts with its first request (which waits for two segments);
    // once all run, each rendition's LL-HLS playlist reports the others' newest parts
    // (RFC 8216bis EXT-X-RENDITION-REPORT), so a player switches without a blind reload.
    for name in ["s", "s_180p", "s_120p"] {
        assert_eq!(http::get(node.ports.http, &format!("/live/{name}.m3u8")).unwrap().status, 200, "{name}");
    }
    for (name, others) in [("s", ["s_180p", "s_120p"]), ("s_180p", ["s", "s_120p"])] {
        let playlist = String::from_utf8_lossy(&http::get(node.ports.http, &format!("/live/{name}.m3u8")).unwrap().body).into_owned();
        for other in others {
            let report = playlist.lines().find(|l| l.starts_with(&format!("#EXT-X-RENDITION-REPORT:URI=\"{other}.m3u8\",LAST-MSN=")));
            assert!(report.is_some_and(|r| r.contains(",LAST-PART=")), "{name}.m3u8 has no report of {other}:\n{playlist}");
        }
    }
    let streams = probe_streams(&format!("http://127.0.0.1:{}{master}", node.ports.http));
    assert!(streams.iter().filter(|s| s["codec_type"] == "video").count() >= 3, "ffprobe did not open every variant: {streams:?}");

    // Killing a child: the supervisor starts a new one and the rendition comes back.
    let victim = transcodes(&node).into_iter().find(|t| t["output"] == "live/s_180p").expect("180p transcoder");
    let pid = victim["pid"].as_u64().expect("pid");
    assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    assert!(
        wait_until(Duration::from_secs(30), || transcodes(&node).iter().any(|t| t["output"] == "live/s_180p" && t["restarts"].as_u64() >= Some(1) && t["state"] == "running" && t["pid"].as_u64() != Some(pid))),
        "no restart: {:?}",
        transcodes(&node)
    );
    assert!(wait_until(Duration::from_secs(30), || probe_ok(&node.rtmp_url("live/s_180p"))), "rendition did not come back");
    assert!(node.log().contains("transcoder child ended; restarting"), "log:\n{}", node.log());

    // A bad spec is refused with the reason.
    let body = r#"{"app":"live","stream":"s","renditions":[{"suffix":"_odd","height":17,"video_kbps":100}]}"#;
    let refused = http::send(node.ports.api, "POST", "/api/v1/transcodes", &[("Content-Type", "application/json")], body.as_bytes()).unwrap();
    assert_eq!(refused.status, 400);
    assert!(String::from_utf8_lossy(&refused.body).contains("height 17"), "{}", String::from_utf8_lossy(&refused.body));
}

fn probe_ok(url: &str) -> bool {
    let output = std::process::Command::new("ffprobe").args(["-v", "error", "-rw_timeout", "5000000", "-show_streams", url]).output();
    output.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("codec_type=video"))
}

#[test]
fn missing_ffmpeg_is_an_error_not_a_crash_loop() {
    let scratch = Scratch::new("transcode-missing");
    let ladder = r#"{ live = [ { suffix = "_small", height = 120, video_kbps = 150 } ] }"#;
    let node = Node::start(&scratch, &[("ESTUARY_TRANSCODE__APPS", ladder), ("ESTUARY_TRANSCODE__FFMPEG", "/nonexistent/ffmpeg")]);
    let _publisher = publish(&node.rtmp_url("live/m"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/m", Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(15), || transcodes(&node).iter().any(|t| t["state"] == "failed" && t["last_error"].as_str().is_some_and(|e| e.contains("/nonexistent/ffmpeg")))),
        "{:?}",
        transcodes(&node)
    );
    let body = r#"{"app":"live","stream":"m","renditions":[{"suffix":"_x","height":120,"video_kbps":100}]}"#;
    let refused = http::send(node.ports.api, "POST", "/api/v1/transcodes", &[("Content-Type", "application/json")], body.as_bytes()).unwrap();
    assert_eq!(refused.status, 503, "{}", String::from_utf8_lossy(&refused.body));
    // Not a crash loop: a binary that cannot run is retried at the slowest pace (30 s), and
    // the log says so.
    let log = node.log();
    let line = log.lines().find(|l| l.contains("transcoder cannot start ffmpeg")).unwrap_or_default();
    assert!(line.contains("retry_in_ms=30000"), "not the slow retry: {line:?}");
    // The source itself is unaffected.
    assert!(probe_ok(&node.flv_url("live/m")));
}
