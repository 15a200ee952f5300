//! Test harness: starts the real `estuary` binary on free loopback ports with its own data
//! directory, and drives it with ffmpeg/ffprobe and raw sockets.
//!
//! The node is started with `--exit-on-stdin-close` and a pipe as its standard input, so a
//! node shared by all tests of a file (kept in a `static`) goes away with the test process.

pub mod aiortc;
pub mod browser;
pub mod ffmpeg;
pub mod gb_camera;
pub mod gb_device;
pub mod hook_server;
pub mod load;
pub mod redis_server;
pub mod http;
pub mod lossy;
pub mod rtmp_raw;
pub mod tls_proxy;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1, free for TCP and UDP alike (bound and released; the node binds it
/// right after).
///
/// Ports come from 20000-31999, below the kernel's ephemeral range (32768-60999): a port the
/// kernel hands out with `bind(0)` can be given again, between our probe and the node's bind,
/// to any outgoing connection of ffmpeg or another test as its local port, and the node then
/// fails with "address in use". Below that range only explicit binds take ports; each test
/// process walks the range from its own pid-based offset and never returns to a port it gave
/// out, so parallel tests and restarts on the same ports do not collide.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const BASE: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, (std::process::id().wrapping_mul(7919)) % SPAN, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..SPAN {
        let port = (BASE + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {BASE}-{}", BASE + SPAN - 1)
}

/// A free UDP port on 127.0.0.1 (the same allocator as [`free_port`]).
pub fn free_udp_port() -> u16 {
    free_port()
}

/// The `estuary` binary built by `cargo build` (override with `ESTUARY_BIN`).
pub fn estuary_bin() -> PathBuf {
    if let Ok(path) = std::env::var("ESTUARY_BIN") {
        return PathBuf::from(path);
    }
    // Test executables live in target/<profile>/deps/; the binary one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join("estuary");
    assert!(bin.exists(), "{} is missing: run `cargo build -p estuary-node` first (tests/run does)", bin.display());
    bin
}

/// A scratch directory under the target dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new, empty scratch directory.
    pub fn new(name: &str) -> Scratch {
        let exe = std::env::current_exe().expect("test executable path");
        let base = exe.parent().and_then(Path::parent).expect("target dir").join("e2e-scratch");
        let dir = base.join(format!("{name}-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    /// A path inside.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Ports of one node.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// RTMP.
    pub rtmp: u16,
    /// HTTP streaming.
    pub http: u16,
    /// API.
    pub api: u16,
    /// SRT (UDP).
    pub srt: u16,
    /// GB28181 media (TCP).
    pub gb_media: u16,
    /// GB28181 SIP (UDP).
    pub sip: u16,
    /// WebRTC media (UDP).
    pub rtc: u16,
}

impl Ports {
    /// The node's built-in defaults (SRS's ports).
    pub fn defaults() -> Ports {
        Ports { rtmp: 1935, http: 8080, api: 1985, srt: 10080, gb_media: 9000, sip: 5060, rtc: 8000 }
    }

    /// Free ports.
    pub fn free() -> Ports {
        Ports { rtmp: free_port(), http: free_port(), api: free_port(), srt: free_udp_port(), gb_media: free_port(), sip: free_udp_port(), rtc: free_udp_port() }
    }
}

/// A running node.
pub struct Node {
    child: Option<Child>,
    /// Its ports.
    pub ports: Ports,
    /// Its working directory (data dir and log inside).
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    /// Command-line arguments; with any, the ports come from them (a configuration file),
    /// not from `ESTUARY_*` variables.
    args: Vec<String>,
    log: PathBuf,
}

impl Node {
    /// Starts a node with defaults plus `env` overrides (`ESTUARY_SECTION__KEY`), in a fresh
    /// directory.
    pub fn start(scratch: &Scratch, env: &[(&str, &str)]) -> Node {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Node::launch(scratch.0.clone(), Ports::free(), env, Vec::new())
    }

    /// Starts a node with an SRS configuration file made by `conf` from a set of free ports
    /// (the file, not the environment, must put every listener on them), and `env` (e.g.
    /// `SRS_*` variables). With `conf` None, only `env` configures the node, which must then
    /// set the ports itself.
    pub fn start_srs(scratch: &Scratch, conf: Option<&dyn Fn(&Ports) -> String>, env: &dyn Fn(&Ports) -> Vec<(String, String)>) -> Node {
        let ports = Ports::free();
        let mut args = Vec::new();
        if let Some(conf) = conf {
            let path = scratch.path("srs.conf");
            std::fs::write(&path, conf(&ports)).expect("write srs.conf");
            args = vec!["-c".to_string(), path.display().to_string()];
        }
        let env = env(&ports);
        // Marks the node as configured by its arguments or its SRS variables.
        args.push("--exit-on-stdin-close".to_string());
        Node::launch(scratch.0.clone(), ports, env, args)
    }

    /// Starts a node with an Estuary TOML file made by `toml` from a set of free ports (the file
    /// must put every listener on them); the file is `estuary.toml` in `scratch`.
    pub fn start_toml(scratch: &Scratch, toml: &dyn Fn(&Ports) -> String) -> Node {
        let ports = Ports::free();
        let path = scratch.path("estuary.toml");
        std::fs::write(&path, toml(&ports)).expect("write estuary.toml");
        let args = vec!["-c".to_string(), path.display().to_string(), "--exit-on-stdin-close".to_string()];
        Node::launch(scratch.0.clone(), ports, Vec::new(), args)
    }

    /// Sends SIGHUP (SRS's reload signal).
    pub fn hangup(&self) {
        let pid = self.pid().to_string();
        let status = Command::new("kill").args(["-HUP", &pid]).status().expect("kill -HUP");
        assert!(status.success(), "kill -HUP {pid} failed");
    }

    /// Starts a node with no configuration at all: built-in defaults, default ports, data in
    /// `./estuary-data` of a fresh directory. Run it inside [`private_network`], where the
    /// default ports are free.
    pub fn start_with_defaults(scratch: &Scratch) -> Node {
        Node::launch(scratch.0.clone(), Ports::defaults(), Vec::new(), Vec::new())
    }

    /// Starts again with the same directory, ports and settings (after `stop` or `kill`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart needs a stopped node");
        let node = Node::launch(self.dir.clone(), self.ports, self.env.clone(), self.args.clone());
        *self = node;
    }

    fn launch(dir: PathBuf, ports: Ports, env: Vec<(String, String)>, args: Vec<String>) -> Node {
        let log = dir.join(format!("node-{}.log", unique()));
        let log_file = std::fs::File::create(&log).expect("node log file");
        let mut command = Command::new(estuary_bin());
        command.current_dir(&dir);
        if args.is_empty() {
            command.arg("--exit-on-stdin-close");
            if ports.api != Ports::defaults().api {
                Node::on_loopback_ports(&mut command, ports);
            }
        } else {
            command.args(&args);
        }
        command
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        for (k, v) in &env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start estuary");
        let node = Node { child: Some(child), ports, dir, env, args, log };
        node.wait_ready();
        node
    }

    fn on_loopback_ports(command: &mut Command, ports: Ports) {
        command
            .env("ESTUARY_RTMP__LISTEN", format!("127.0.0.1:{}", ports.rtmp))
            .env("ESTUARY_HTTP__LISTEN", format!("127.0.0.1:{}", ports.http))
            .env("ESTUARY_API__LISTEN", format!("127.0.0.1:{}", ports.api))
            .env("ESTUARY_SRT__LISTEN", format!("127.0.0.1:{}", ports.srt))
            .env("ESTUARY_GB28181__MEDIA_LISTEN", format!("127.0.0.1:{}", ports.gb_media))
            .env("ESTUARY_GB28181__SIP_LISTEN", format!("127.0.0.1:{}", ports.sip))
            .env("ESTUARY_RTC__LISTEN", format!("127.0.0.1:{}", ports.rtc))
            .env("ESTUARY_NODE__WORKERS", "2");
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // Any HTTP answer means the API is up (401 when the test configured API auth).
            if http::get(self.ports.api, "/api/v1/versions").map(|r| r.status == 200 || r.status == 401).unwrap_or(false) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node did not become ready; log:\n{}", self.log());
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running node")
    }

    /// Resident memory in KiB.
    pub fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    }

    /// `rtmp://127.0.0.1:PORT/app/stream`.
    pub fn rtmp_url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{path}", self.ports.rtmp)
    }

    /// `srt://127.0.0.1:PORT?streamid=#!::r=app/stream,m=publish` (or `m=request`), plus
    /// `extra` query options for libsrt (`&latency=...`).
    pub fn srt_url(&self, path: &str, publish: bool, extra: &str) -> String {
        srt_url(self.ports.srt, path, publish, extra)
    }

    /// `http://127.0.0.1:PORT/app/stream.flv`.
    pub fn flv_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}.flv", self.ports.http)
    }

    /// GET on the API, parsed as JSON.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let response = http::get(self.ports.api, path).unwrap_or_else(|e| panic!("API {path}: {e}"));
        serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("API {path} returned non-JSON ({e}): {:?}", String::from_utf8_lossy(&response.body)))
    }

    /// The `/api/v1/streams` entry of `app/stream`.
    pub fn stream_info(&self, app_stream: &str) -> Option<serde_json::Value> {
        let streams = self.api("/api/v1/streams?count=1000&all=true");
        streams["streams"].as_array()?.iter().find(|s| s["url"] == format!("/{app_stream}")).cloned()
    }

    /// Waits until `app/stream` has an active publisher with video or audio known.
    pub fn wait_live(&self, app_stream: &str, timeout: Duration) -> serde_json::Value {
        let mut last = None;
        let ok = wait_until(timeout, || {
            last = self.stream_info(app_stream);
            last.as_ref().is_some_and(|s| s["publish"]["active"] == true && (!s["video"].is_null() || !s["audio"].is_null()))
        });
        assert!(ok, "stream {app_stream} did not go live; last state {last:?}; log:\n{}", self.log());
        last.unwrap_or_default()
    }

    /// SIGTERM, then wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("node did not stop within 10 s of SIGTERM");
        }
    }

    /// SIGKILL, then wait.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An SRT URL for ffmpeg/ffprobe on `port` (see [`Node::srt_url`]).
pub fn srt_url(port: u16, path: &str, publish: bool, extra: &str) -> String {
    let mode = if publish { "publish" } else { "request" };
    format!("srt://127.0.0.1:{port}?streamid=#!::r={path},m={mode}{extra}")
}

/// Polls `check` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Moves the calling thread, and every process and thread it starts from now on, into a new
/// network namespace whose only interface is `lo`, up. There the node's default ports are
/// free however many suites run at once, and nothing a client does can leave the machine.
/// Needs root (tests/run runs as root in CI); the error says why it could not.
pub fn private_network() -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET) failed: {e} (a private network namespace needs root or CAP_SYS_ADMIN)"))?;
    let status = Command::new("ip").args(["link", "set", "lo", "up"]).status().map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if !status.success() {
        return Err(format!("`ip link set lo up` failed: {status}"));
    }
    Ok(())
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0"))).unwrap_or(false)
}

/// Gives the calling thread (and the processes it starts, a node included) a private mount
/// namespace, so it can mount small filesystems (a tmpfs) that nothing else sees. Mounts made
/// in it go when the last process in it ends.
pub fn private_mounts() -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS) failed: {e} (a private mount namespace needs root or CAP_SYS_ADMIN)"))?;
    let status = Command::new("mount").args(["--make-rprivate", "/"]).status().map_err(|e| format!("cannot run `mount`: {e}"))?;
    if !status.success() {
        return Err(format!("`mount --make-rprivate /` failed: {status}"));
    }
    Ok(())
}

/// Mounts a tmpfs of `megabytes` at `dir` (made if missing), in the calling thread's mount
/// namespace (see [`private_mounts`]).
pub fn mount_tmpfs(dir: &Path, megabytes: u32) {
    std::fs::create_dir_all(dir).expect("mount point");
    let status = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"]).arg(dir).status().expect("mount");
    assert!(status.success(), "mount -t tmpfs at {} failed: {status}", dir.display());
}

/// [`private_mounts`], or `None` after saying why the suite is skipped (only when not root,
/// as for [`private_network_or_skip`]).
pub fn private_mounts_or_skip(suite: &str) -> Option<()> {
    namespace_or_skip(suite, "mount", private_mounts())
}

/// [`private_network`], or `None` after saying on stderr why the calling suite is skipped:
/// only when not running as root. As root (tests/run in CI) not getting a namespace is a
/// failure, so the suite can never pass by silently doing nothing.
pub fn private_network_or_skip(suite: &str) -> Option<()> {
    namespace_or_skip(suite, "network", private_network())
}

fn namespace_or_skip(suite: &str, kind: &str, made: Result<(), String>) -> Option<()> {
    match made {
        Ok(()) => Some(()),
        Err(reason) if !is_root() => {
            eprintln!("SKIPPED {suite}: not root, so no private {kind} namespace: {reason}");
            None
        }
        Err(reason) => panic!("{suite} needs a private {kind} namespace: {reason}"),
    }
}
