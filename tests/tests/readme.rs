//! The README is executable: every fenced `sh` block in README.md is run as written, in order,
//! by bash, against nodes started by the README's own `cargo run` lines with no other
//! configuration, on the default ports, inside a private network namespace. Every `toml`
//! block must pass `estuary --check-config`.
//!
//! Each block is preceded by a marker comment, invisible on the rendered page, saying how it
//! runs; a block without one fails the suite, so a command added to the README is either run
//! here or skipped with its reason in plain sight:
//!
//! | marker | what the test does |
//! |---|---|
//! | `<!-- test: node -->` | stops the running node and background job, runs the block in the background as the node, waits for the API, restarts the background job (and lets it run `settle` seconds, default 0) |
//! | `<!-- test: background -->` | runs the block in the background in place of the previous background job (a publisher); it must still be running after `settle` seconds (default 4) |
//! | `<!-- test: run -->` | runs the block with `set -e` within `timeout` seconds (default 90); it must exit 0 and print no API error (`"code": 4xx/5xx`) |
//! | `<!-- test: config -->` | writes the TOML block to `estuary.toml` and runs `estuary --config estuary.toml --check-config` |
//! | `<!-- test: skip reason="..." -->` | not run, for the reason given |
//!
//! Options after the mode: `stop-background` ends the background job first (a publisher
//! leaving closes its recording) and starts it again after the block; `wait=N` then sleeps N seconds; `gb-device` first starts
//! the simulated camera the README's GB28181 URLs name.
//!
//! Blocks run in a scratch directory where `tests/` and `examples/` link to the checkout's, so the
//! README's relative paths work. Tools are the real ones, with three stand-ins first on `PATH`: `cargo` runs the already
//! built `estuary` for `cargo run --release -p estuary-node [-- args]` (and refuses anything
//! else), `estuary` is that binary, and `ffplay`, which needs a display, decodes the URL
//! headless for three seconds and fails unless frames came out. Placeholders are filled in
//! from the running node: `<stream-id>`, `<client-id>` (a player started for the purpose),
//! `<device>`, `<channel>`, and the media files `/media/loop.mp4` and `input.mp4` (a clip).

use estuary_tests::gb_device::Device;
use estuary_tests::{estuary_bin, ffmpeg, http, private_network_or_skip, wait_until, Scratch};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const GB_DEVICE: &str = "34020000001110000001";
const GB_CHANNEL: &str = "34020000001320000001";

#[derive(Debug)]
struct Block {
    line: usize,
    lang: String,
    mode: String,
    options: HashMap<String, String>,
    body: String,
}

/// The fenced blocks of `text` with their markers.
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].trim_start().strip_prefix("```").filter(|l| !l.is_empty()) else {
            i += 1;
            continue;
        };
        let start = i + 1;
        let marker = (0..i).rev().map(|j| lines[j].trim()).find(|l| !l.is_empty()).and_then(|l| l.strip_prefix("<!-- test:")).and_then(|l| l.strip_suffix("-->")).map(str::trim).unwrap_or("");
        let mut end = start;
        while end < lines.len() && !lines[end].trim_start().starts_with("```") {
            end += 1;
        }
        let (mode, options) = parse_marker(marker);
        out.push(Block { line: start, lang: lang.trim().to_string(), mode, options, body: lines[start..end].join("\n") });
        i = end + 1;
    }
    out
}

/// `mode key=value key="quoted value" flag` → (mode, options).
fn parse_marker(marker: &str) -> (String, HashMap<String, String>) {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in marker.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    let mode = if words.is_empty() { String::new() } else { words.remove(0) };
    let options = words.into_iter().map(|w| match w.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (w, String::new()),
    });
    (mode, options.collect())
}

/// The stand-ins put first on PATH.
fn write_shims(dir: &Path) {
    let bin = estuary_bin();
    let shims = [
        (
            "cargo",
            format!(
                "#!/bin/bash\n# README test stand-in: runs the estuary binary the test suite built.\nif [ \"$1 $2 $3 $4\" = \"run --release -p estuary-node\" ]; then\n  shift 4; [ \"$1\" = \"--\" ] && shift\n  exec {bin} --exit-on-stdin-close \"$@\"\nfi\necho \"README test: cargo $* is not a command this stand-in runs\" >&2\nexit 2\n",
                bin = bin.display()
            ),
        ),
        ("estuary", format!("#!/bin/bash\nexec {} \"$@\"\n", bin.display())),
        (
            "ffplay",
            "#!/bin/bash\n# README test stand-in for ffplay (no display here): decode 3 s of the URL headless,\n# trying for up to 30 s while the stream, its playlist or its recording is not there yet.\nurl=\"${@: -1}\"\nfor attempt in 1 2 3 4 5 6 7 8 9 10; do\n  frames=$(timeout 60 ffmpeg -nostdin -hide_banner -v error -rw_timeout 15000000 -i \"$url\" -t 3 -f framecrc - | grep -vc '^#')\n  if [ \"${frames:-0}\" -gt 0 ]; then echo \"ffplay stand-in: $frames frames from $url\" >&2; exit 0; fi\n  sleep 3\ndone\necho \"ffplay stand-in: nothing decoded from $url\" >&2\nexit 1\n"
                .to_string(),
        ),
    ];
    for (name, text) in shims {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("shim");
        let status = Command::new("chmod").arg("+x").arg(&path).status().expect("chmod");
        assert!(status.success());
    }
}

struct Runner {
    dir: PathBuf,
    path: String,
    node: Option<Child>,
    node_log: PathBuf,
    background: Option<(String, Child)>,
    device: Option<Device>,
    player: Option<ffmpeg::Process>,
    scratch: Scratch,
    clip: PathBuf,
}

impl Runner {
    fn bash(&self, script: &str) -> Command {
        let mut command = Command::new("bash");
        command.arg("-c").arg(script).current_dir(&self.dir).env("PATH", &self.path).env_remove("RUST_LOG").stdin(Stdio::null());
        command
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.node_log).unwrap_or_default()
    }

    fn stop_node(&mut self) {
        self.stop_background();
        if let Some(mut node) = self.node.take() {
            let _ = Command::new("kill").arg("-TERM").arg(node.id().to_string()).status();
            if !wait_until(Duration::from_secs(10), || matches!(node.try_wait(), Ok(Some(_)))) {
                let _ = node.kill();
            }
            let _ = node.wait();
        }
    }

    /// Ends the background job as a user would, with Ctrl-C (SIGINT to its process group:
    /// ffmpeg then closes its connection properly), and kills what is left after 5 s.
    fn stop_background(&mut self) {
        if let Some((_, mut child)) = self.background.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-INT", "--", &group]).status();
            if !wait_until(Duration::from_secs(5), || matches!(child.try_wait(), Ok(Some(_)))) {
                let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            }
            let _ = child.wait();
        }
    }

    fn start_background(&mut self, body: &str) -> Child {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.join("background.log")).expect("log");
        self.bash(body).process_group(0).stdout(Stdio::null()).stderr(Stdio::from(log)).spawn().expect("bash")
    }

    fn start_node(&mut self, block: &Block, body: &str) {
        let restart = self.background.as_ref().map(|(body, _)| body.clone());
        self.stop_background();
        self.stop_node();
        let log = std::fs::File::create(&self.node_log).expect("log");
        // stdin stays a pipe we hold: the stand-in starts estuary with --exit-on-stdin-close.
        let child = self.bash(body).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::from(log)).spawn().expect("bash");
        self.node = Some(child);
        let up = wait_until(Duration::from_secs(30), || http::get(1985, "/api/v1/versions").map(|r| r.status == 200).unwrap_or(false));
        assert!(up, "README line {}: the node did not come up:\n{body}\nlog:\n{}", block.line, self.log());
        if let Some(body) = restart {
            let child = self.start_background(&body);
            self.background = Some((body, child));
        }
        if let Some(seconds) = block.options.get("settle") {
            std::thread::sleep(Duration::from_secs(seconds.parse().expect("settle=N")));
        }
    }

    /// The block's text with placeholders filled in.
    fn fill(&mut self, body: &str) -> String {
        let mut text = body.replace("/media/loop.mp4", &self.clip.display().to_string()).replace("input.mp4", &self.clip.display().to_string());
        text = text.replace("<device>", GB_DEVICE).replace("<channel>", GB_CHANNEL);
        if text.contains("<stream-id>") {
            let streams: serde_json::Value = serde_json::from_slice(&http::get(1985, "/api/v1/streams").expect("API").body).expect("JSON");
            let id = streams["streams"][0]["id"].as_str().map(str::to_string).or_else(|| streams["streams"][0]["id"].as_u64().map(|n| n.to_string())).expect("a stream to name");
            text = text.replace("<stream-id>", &id);
        }
        if text.contains("<client-id>") {
            // A player started for the purpose: the one client id that was not there before.
            let ids = || -> Vec<String> {
                let clients: serde_json::Value = http::get(1985, "/api/v1/clients").ok().and_then(|r| serde_json::from_slice(&r.body).ok()).unwrap_or_default();
                clients["clients"].as_array().map(|c| c.iter().filter_map(|c| c["id"].as_str().map(str::to_string).or_else(|| c["id"].as_u64().map(|n| n.to_string()))).collect()).unwrap_or_default()
            };
            let before = ids();
            let url = "http://127.0.0.1:8080/live/livestream.flv";
            self.player = Some(ffmpeg::record(url, &self.scratch.path("kicked.flv"), None, &self.scratch, "kicked"));
            let mut id = None;
            assert!(wait_until(Duration::from_secs(15), || {
                id = ids().into_iter().find(|id| !before.contains(id));
                id.is_some()
            }), "the player started for <client-id> never showed up in /api/v1/clients");
            text = text.replace("<client-id>", &id.unwrap_or_default());
        }
        text
    }

    fn run(&mut self, block: &Block) {
        let paused = if block.options.contains_key("stop-background") {
            let body = self.background.as_ref().map(|(body, _)| body.clone());
            self.stop_background();
            body
        } else {
            None
        };
        if let Some(seconds) = block.options.get("wait") {
            std::thread::sleep(Duration::from_secs(seconds.parse().expect("wait=N")));
        }
        if block.options.contains_key("gb-device") && self.device.is_none() {
            let device = Device::new(5060, GB_DEVICE, "", GB_CHANNEL, self.clip.clone());
            assert_eq!(device.register(3600), 200, "simulated camera registers");
            self.device = Some(device);
            assert!(wait_until(Duration::from_secs(20), || http::get(1985, "/api/v1/streams").map(|r| String::from_utf8_lossy(&r.body).contains(GB_CHANNEL)).unwrap_or(false)), "camera stream live; log:\n{}", self.log());
        }
        let body = self.fill(&block.body);
        let where_ = format!("README.md line {} ({} block)", block.line, block.mode);
        match (block.lang.as_str(), block.mode.as_str()) {
            (_, "skip") => {
                let reason = block.options.get("reason").filter(|r| !r.is_empty()).unwrap_or_else(|| panic!("{where_}: a skip needs reason=\"...\""));
                eprintln!("{where_}: skipped: {reason}");
            }
            ("toml", "config") => {
                std::fs::write(self.dir.join("estuary.toml"), &body).expect("estuary.toml");
                let output = self.bash("estuary --config estuary.toml --check-config").output().expect("estuary");
                assert!(output.status.success(), "{where_}: --check-config refused it:\n{body}\n{}", String::from_utf8_lossy(&output.stderr));
            }
            ("sh", "node") => self.start_node(block, &body),
            ("sh", "background") => {
                self.stop_background();
                let mut child = self.start_background(&body);
                let settle: u64 = block.options.get("settle").map(|s| s.parse().expect("settle=N")).unwrap_or(4);
                std::thread::sleep(Duration::from_secs(settle));
                let running = matches!(child.try_wait(), Ok(None));
                let log = std::fs::read_to_string(self.dir.join("background.log")).unwrap_or_default();
                assert!(running, "{where_}: exited early:\n{body}\n{log}\nnode log:\n{}", self.log());
                self.background = Some((body, child));
            }
            ("sh", "run") => {
                let timeout: u64 = block.options.get("timeout").map(|s| s.parse().expect("timeout=N")).unwrap_or(90);
                let output = ffmpeg::run(self.bash(&format!("set -e\n{body}")), Duration::from_secs(timeout));
                assert!(output.success(), "{where_} failed:\n{body}\nstdout:\n{}\nstderr:\n{}\nnode log:\n{}", output.stdout, output.stderr, self.log());
                let api_error = output.stdout.split("\"code\":").skip(1).map(|rest| rest.trim_start()).find(|rest| rest.starts_with('4') || rest.starts_with('5'));
                assert!(api_error.is_none(), "{where_}: the API answered an error:\n{body}\nstdout:\n{}", output.stdout);
                if block.body.contains("<client-id>") {
                    let kicked = self.player.as_mut().and_then(|p| p.wait(Duration::from_secs(10)));
                    assert!(kicked.is_some(), "{where_}: the kicked player is still playing");
                }
                eprintln!("{where_}: ok\n{}", output.stderr.trim());
            }
            (lang, mode) => panic!("{where_}: a {lang:?} block needs a test marker (node, background, run, config or skip), has {mode:?}"),
        }
        if let Some(body) = paused {
            let child = self.start_background(&body);
            self.background = Some((body, child));
        }
    }
}

#[test]
fn every_readme_command_runs_as_written() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README.md");
    let blocks = blocks(&readme);
    assert!(blocks.iter().filter(|b| b.lang == "sh" && b.mode != "skip").count() >= 10, "the README's shell blocks were not found: {blocks:?}");
    for block in &blocks {
        assert!(["sh", "toml"].contains(&block.lang.as_str()), "README.md line {}: fence language {:?}: use sh or toml", block.line, block.lang);
        assert!(["node", "background", "run", "config", "skip"].contains(&block.mode.as_str()), "README.md line {}: no test marker before this block", block.line);
    }
    let Some(()) = private_network_or_skip("readme") else { return };
    let scratch = Scratch::new("readme");
    let dir = scratch.path("work");
    let shims = scratch.path("shims");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&shims).unwrap();
    // README commands run from the checkout's root; the working directory mirrors the paths
    // they use (`tests/...`) without writing data, recordings or estuary.toml into the tree.
    std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")), dir.join("tests")).expect("tests link");
    std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"), dir.join("examples")).expect("examples link");
    write_shims(&shims);
    let clip = ffmpeg::make_clip(&scratch.path("loop.mp4"), "libx264", 0, 10);
    let path = format!("{}:{}", shims.display(), std::env::var("PATH").unwrap_or_default());
    let node_log = scratch.path("node.log");
    let mut runner = Runner { dir, path, node: None, node_log, background: None, device: None, player: None, scratch, clip };
    for block in &blocks {
        runner.run(block);
    }
    runner.player.take();
    runner.device.take();
    runner.stop_node();
}
