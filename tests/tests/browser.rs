//! A real browser plays the node's HLS and DASH: headless Chromium (Debian's) with hls.js and
//! dash.js, driven by playwright-core (`tests/browser/play.mjs`). Passing means the video's
//! currentTime advanced 5 s past where playback started, with no player errors.

use estuary_tests::browser::play;
use estuary_tests::ffmpeg::{publish, Source};
use estuary_tests::{http, wait_until, Node, Scratch};
use std::time::Duration;

#[test]
fn chromium_plays_hls_and_dash() {
    let scratch = Scratch::new("browser");
    let node = Node::start(&scratch, &[("ESTUARY_DASH__ENABLED", "true")]);
    let _publisher = publish(&node.rtmp_url("live/browser"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/browser", Duration::from_secs(20));
    let ready = |path: &str| wait_until(Duration::from_secs(30), || http::get(node.ports.http, path).is_ok_and(|r| r.status == 200 && r.body.len() > 200));
    assert!(ready("/live/browser.m3u8") && ready("/live/browser.mpd"), "outputs not ready; log:\n{}", node.log());
    // Let a few segments accumulate so players have a live window to start in.
    std::thread::sleep(Duration::from_secs(5));

    for (kind, path) in [("hls", "live/browser.m3u8"), ("dash", "live/browser.mpd")] {
        let url = format!("http://127.0.0.1:{}/{path}", node.ports.http);
        let result = play(kind, &url, 5);
        assert!(result["advanced"].as_f64().unwrap_or(0.0) >= 5.0, "{kind}: {result}");
        assert_eq!(result["width"], 320, "{kind}: {result}");
        assert_eq!(result["events"].as_array().map(|e| e.len()), Some(0), "{kind} player reported errors: {result}");
    }
}
