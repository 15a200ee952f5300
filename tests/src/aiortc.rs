//! The WebRTC peers of the tests: aiortc (PyPI, not our stack) driven through the scripts in
//! `tests/webrtc/`, which print their results as JSON.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A script in `tests/webrtc/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("webrtc").join(name)
}

/// Runs `players` aiortc WHEP players of `url` for `seconds`; their results.
pub fn whep_play(url: &str, seconds: u32, players: usize) -> Vec<serde_json::Value> {
    whep_play_with(url, seconds, players, None)
}

/// As [`whep_play`]; with `srs_streamurl`, through SRS's JSON API at `url` instead.
pub fn whep_play_with(url: &str, seconds: u32, players: usize, srs_streamurl: Option<&str>) -> Vec<serde_json::Value> {
    let mut command = Command::new("python3");
    command.arg(script("whep_play.py")).arg(url).arg(seconds.to_string()).arg(players.to_string()).stderr(Stdio::inherit());
    if let Some(streamurl) = srs_streamurl {
        command.env("SRS_STREAMURL", streamurl);
    }
    let output = command.output().expect("python3 with aiortc (tests/run installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    let parsed: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("players printed {text:?}: {e}"));
    parsed["players"].as_array().cloned().unwrap_or_default()
}

/// Starts aiortc publishing `clip` to `url` for `seconds`; returns the process and its first
/// JSON line (sent once the WHIP answer came back and ICE/DTLS connected, or failed).
pub fn whip_publish(url: &str, clip: &Path, seconds: u32) -> (Child, serde_json::Value) {
    let mut child = Command::new("python3")
        .arg(script("whip_publish.py"))
        .arg(url)
        .arg(clip)
        .arg(seconds.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with aiortc (tests/run installs it)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("publisher output");
    let result = serde_json::from_str(&line).unwrap_or_else(|e| panic!("publisher printed {line:?}: {e}"));
    (child, result)
}
