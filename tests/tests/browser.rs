//! A real browser plays the node's HLS and DASH: headless Chromium (Debian's) with hls.js and
//! dash.js, driven by playwright-core (`tests/browser/play.mjs`). Passing means the video's
//! currentTime advanced 5 s past where playback started, with no player errors.

use estuary_tests::ffmpeg::{publish, run, Source};
use estuary_tests::{http, wait_until, Node, Scratch};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn play(kind: &str, url: &str) -> serde_json::Value {
    let dir = browser_dir();
    assert!(dir.join("node_modules/playwright-core").exists(), "run `npm ci` in {} (tests/run does)", dir.display());
    let mut command = Command::new("node");
    command.arg(dir.join("play.mjs")).args([kind, url, "5"]);
    let output = run(command, Duration::from_secs(150));
    assert!(output.success(), "{kind} playback in Chromium failed:\n{}\n{}", output.stdout, output.stderr);
    let line = output.stdout.lines().last().unwrap_or_default().to_string();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("play.mjs printed {line:?}: {e}"))
}

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
        let result = play(kind, &url);
        assert!(result["advanced"].as_f64().unwrap_or(0.0) >= 5.0, "{kind}: {result}");
        assert_eq!(result["width"], 320, "{kind}: {result}");
        assert_eq!(result["events"].as_array().map(|e| e.len()), Some(0), "{kind} player reported errors: {result}");
    }
}
