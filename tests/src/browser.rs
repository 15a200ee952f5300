//! Headless Chromium playing a URL with hls.js or dash.js (`tests/browser/play.mjs`, driven by
//! playwright-core; `tests/run` installs it with `npm ci`).

use crate::ffmpeg::run;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The directory of the browser scripts.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Plays `url` (`kind` is `hls` or `dash`) until its currentTime has advanced `seconds` past
/// where playback started, and returns what `play.mjs` printed: `started`, `advanced`,
/// `currentTime`, `width`, `height`, `seekable` ([start, end] or null) and the player's
/// `events` (errors). Panics when playback does not advance.
pub fn play(kind: &str, url: &str, seconds: u32) -> serde_json::Value {
    let dir = dir();
    assert!(dir.join("node_modules/playwright-core").exists(), "run `npm ci` in {} (tests/run does)", dir.display());
    let mut command = Command::new("node");
    command.arg(dir.join("play.mjs")).args([kind, url, &seconds.to_string()]);
    let output = run(command, Duration::from_secs(150));
    assert!(output.success(), "{kind} playback of {url} in Chromium failed:\n{}\n{}", output.stdout, output.stderr);
    let line = output.stdout.lines().last().unwrap_or_default().to_string();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("play.mjs printed {line:?}: {e}"))
}

/// Plays `url` in the player's low-latency mode: after `seconds` of playback, samples how far
/// behind live it is every 500 ms for `measure` seconds (`latencies`, seconds) and counts
/// stalls (`stalls`), besides what [`play`] returns.
pub fn play_low_latency(kind: &str, url: &str, seconds: u32, measure: u32) -> serde_json::Value {
    let dir = dir();
    assert!(dir.join("node_modules/playwright-core").exists(), "run `npm ci` in {} (tests/run does)", dir.display());
    let mut command = Command::new("node");
    command.arg(dir.join("play.mjs")).args([kind, url, &seconds.to_string(), &measure.to_string()]);
    let output = run(command, Duration::from_secs(150 + measure as u64));
    assert!(output.success(), "{kind} low-latency playback of {url} in Chromium failed:\n{}\n{}", output.stdout, output.stderr);
    let line = output.stdout.lines().last().unwrap_or_default().to_string();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("play.mjs printed {line:?}: {e}"))
}

/// Plays the HLS master playlist `url` with hls.js (low-latency mode, captions on) for
/// `seconds` once started, and returns what `captions.mjs` printed: the WebVTT `cues` texts
/// the player showed, the `id3` timed metadata it parsed (as text), `currentTime`, `events`.
pub fn captions(url: &str, seconds: u32) -> serde_json::Value {
    captions_with(url, seconds, "hls")
}

/// As [`captions`], with `kind` `dash`: the MPD `url` played by dash.js with its text
/// representation on (`id3` stays empty).
pub fn captions_with(url: &str, seconds: u32, kind: &str) -> serde_json::Value {
    let dir = dir();
    assert!(dir.join("node_modules/playwright-core").exists(), "run `npm ci` in {} (tests/run does)", dir.display());
    let mut command = Command::new("node");
    command.arg(dir.join("captions.mjs")).args([url, &seconds.to_string(), kind]);
    let output = run(command, Duration::from_secs(120 + seconds as u64));
    assert!(output.success(), "captions playback of {url} in Chromium failed:\n{}\n{}", output.stdout, output.stderr);
    let line = output.stdout.lines().last().unwrap_or_default().to_string();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("captions.mjs printed {line:?}: {e}"))
}

/// Runs `tests/browser/webrtc.mjs` against the API at `api_port`: Chromium publishes over WHIP
/// in `publish_codec` (a MIME type such as `video/AV1`, or `none` to play a stream published
/// otherwise), then plays `app/stream` over WHEP for `seconds`. Returns the JSON line it
/// printed (`publish`, `play` with `status`, `frames_start`, `frames_end`, `width`, `height`
/// and the received `codec`) and whether the script succeeded, with its stderr.
pub fn webrtc(api_port: u16, app: &str, stream: &str, seconds: u32, publish_codec: &str) -> (serde_json::Value, bool, String) {
    let dir = dir();
    assert!(dir.join("node_modules/playwright-core").exists(), "run `npm ci` in {} (tests/run does)", dir.display());
    let mut command = Command::new("node");
    command.arg(dir.join("webrtc.mjs")).arg(format!("http://127.0.0.1:{api_port}")).args([app, stream, &seconds.to_string(), publish_codec]);
    let output = run(command, Duration::from_secs(120));
    let line = output.stdout.lines().last().unwrap_or_default().to_string();
    let result = serde_json::from_str(&line).unwrap_or_else(|e| panic!("webrtc.mjs printed {line:?} ({e}); stderr:\n{}", output.stderr));
    (result, output.success(), output.stderr)
}

/// Where the console tests keep their screenshots (one PNG per view they visit), for a person
/// to look at after a run: `target/console-screenshots/`.
pub fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("console-screenshots")
}

/// Runs one scenario of `tests/browser/console.mjs` (the console and player pages driven in
/// headless Chromium) with `args`, and returns the JSON line it printed. Panics with the page's
/// state when the scenario fails.
pub fn console(scenario: &str, args: serde_json::Value) -> serde_json::Value {
    let dir = dir();
    assert!(dir.join("node_modules/playwright-core").exists(), "run `npm ci` in {} (tests/run does)", dir.display());
    let mut command = Command::new("node");
    command.arg(dir.join("console.mjs")).arg(scenario).arg(args.to_string());
    let output = run(command, Duration::from_secs(240));
    assert!(output.success(), "console scenario {scenario} failed:\n{}\n{}", output.stdout, output.stderr);
    let line = output.stdout.lines().last().unwrap_or_default().to_string();
    let result: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("console.mjs printed {line:?}: {e}"));
    // Resources that fail to load are expected (an offline stream's retries); a script error
    // in a page is a defect.
    let thrown: Vec<&serde_json::Value> = result["console_errors"].as_array().into_iter().flatten().filter(|e| e.as_str().is_some_and(|e| e.starts_with("page error"))).collect();
    assert!(thrown.is_empty(), "console scenario {scenario}: the page threw: {thrown:?}");
    result
}
