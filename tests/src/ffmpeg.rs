//! ffmpeg and ffprobe as independent clients.

use crate::Scratch;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The output of a finished (or timed-out) command.
#[derive(Debug)]
pub struct Output {
    /// Exit status; `None` when it was killed at the timeout.
    pub status: Option<ExitStatus>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `command` to completion, killing it after `timeout`.
pub fn run(mut command: Command, timeout: Duration) -> Output {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output { status, stdout: out_reader.join().unwrap_or_default(), stderr: err_reader.join().unwrap_or_default() }
}

/// Which tracks a synthetic source has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracks {
    /// H.264 + AAC.
    AudioVideo,
    /// H.264 only.
    VideoOnly,
    /// AAC only.
    AudioOnly,
}

/// A synthetic live source: lavfi test pattern and tone, libx264 (with B-frames) and AAC
/// 48 kHz stereo, paced in real time.
#[derive(Debug, Clone)]
pub struct Source {
    /// Tracks.
    pub tracks: Tracks,
    /// `WxH`.
    pub size: &'static str,
    /// Frames per second.
    pub rate: u32,
    /// Keyframe interval in frames.
    pub gop: u32,
    /// B-frames.
    pub bframes: u32,
    /// x264 constant quantiser (low = high bitrate); `None` for x264's default rate control.
    pub qp: Option<u32>,
    /// Stop after this many seconds; `None` runs until killed.
    pub duration: Option<f64>,
    /// Paced in real time (`-re`); false sends as fast as the encoder runs.
    pub realtime: bool,
    /// Video encoder: `libx264` or `libx265`.
    pub video_codec: &'static str,
    /// Audio sample rate (Hz).
    pub audio_rate: u32,
}

impl Default for Source {
    fn default() -> Self {
        Source { tracks: Tracks::AudioVideo, size: "320x240", rate: 25, gop: 50, bframes: 2, qp: None, duration: None, realtime: true, video_codec: "libx264", audio_rate: 48_000 }
    }
}

impl Source {
    /// ffmpeg input and encoding arguments (no output).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["-hide_banner".into(), "-v".into(), "error".into()];
        if self.realtime {
            args.push("-re".into());
        }
        if self.tracks != Tracks::AudioOnly {
            args.extend(["-f".into(), "lavfi".into(), "-i".into(), format!("testsrc2=size={}:rate={}", self.size, self.rate)]);
        }
        if self.tracks != Tracks::VideoOnly {
            args.extend(["-f".into(), "lavfi".into(), "-i".into(), format!("sine=frequency=440:sample_rate={}", self.audio_rate)]);
        }
        if self.tracks != Tracks::AudioOnly {
            args.extend(["-c:v".into(), self.video_codec.into(), "-preset".into(), "ultrafast".into(), "-pix_fmt".into(), "yuv420p".into()]);
            if self.video_codec == "libx265" {
                args.extend(["-x265-params".into(), "log-level=error".into()]);
            }
            args.extend(["-bf".into(), self.bframes.to_string(), "-g".into(), self.gop.to_string(), "-keyint_min".into(), self.gop.to_string()]);
            args.extend(["-sc_threshold".into(), "0".into()]);
            if let Some(qp) = self.qp {
                args.extend(["-qp".into(), qp.to_string()]);
            }
        }
        if self.tracks != Tracks::VideoOnly {
            args.extend(["-c:a".into(), "aac".into(), "-ar".into(), self.audio_rate.to_string(), "-ac".into(), "2".into()]);
        }
        if let Some(d) = self.duration {
            args.extend(["-t".into(), d.to_string()]);
        }
        args
    }
}

/// A background ffmpeg; killed on drop.
pub struct Process {
    child: Option<Child>,
    stderr_path: PathBuf,
}

impl Process {
    /// True while it runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits for exit up to `timeout`; returns the status, or `None` if still running.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Kills it (SIGKILL) and waits.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it gracefully (SIGINT, as Ctrl-C in a terminal) and waits up to 5 s.
    pub fn interrupt(&mut self) {
        if let Some(child) = self.child.as_ref() {
            let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
        }
        if self.wait(Duration::from_secs(5)).is_none() {
            self.kill();
        }
        self.child = None;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs ffmpeg with `args` in the background, stderr kept in the scratch directory as `name.stderr`.
pub fn spawn(args: Vec<String>, scratch: &Scratch, name: &str) -> Process {
    spawn_program(Path::new("ffmpeg"), args, scratch, name)
}

/// The ffmpeg of PyPI's `imageio-ffmpeg` wheel (a static ffmpeg 9 that tests/run installs):
/// it publishes AV1, H.265 and Opus over enhanced RTMP, which Debian's ffmpeg 5.1 cannot.
/// Panics with the install command when it is missing.
pub fn modern_ffmpeg() -> PathBuf {
    let output = Command::new("python3")
        .args(["-c", "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())"])
        .output()
        .expect("python3 (tests/run installs what the tests need)");
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(output.status.success() && !path.is_empty(), "imageio-ffmpeg is missing: `python3 -m pip install -r tests/requirements.txt` (tests/run does): {}", String::from_utf8_lossy(&output.stderr));
    PathBuf::from(path)
}

/// Runs `program` (an ffmpeg) with `args` in the background, stderr kept in the scratch
/// directory as `name.stderr`.
pub fn spawn_program(program: &Path, args: Vec<String>, scratch: &Scratch, name: &str) -> Process {
    let stderr_path = scratch.path(&format!("{name}.stderr"));
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let child = Command::new(program).args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(stderr)).spawn().unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    Process { child: Some(child), stderr_path }
}

/// Publishes a live 320x240 25 fps test pattern and a 440 Hz tone (48 kHz) over enhanced
/// RTMP to `url` with ffmpeg 9 ([`modern_ffmpeg`]), encoded with the `video` and `audio`
/// arguments (codec and its options), as yuv420p with 2 s GOPs.
pub fn publish_enhanced(url: &str, video: &[&str], audio: &[&str], scratch: &Scratch, name: &str) -> Process {
    let mut args: Vec<String> = ["-hide_banner", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"].iter().map(|a| a.to_string()).collect();
    args.extend(video.iter().map(|a| a.to_string()));
    args.extend(["-g", "50", "-pix_fmt", "yuv420p"].iter().map(|a| a.to_string()));
    args.extend(audio.iter().map(|a| a.to_string()));
    args.extend(["-f".to_string(), "flv".to_string(), url.to_string()]);
    spawn_program(&modern_ffmpeg(), args, scratch, name)
}

/// Publishes `source` to an RTMP `url`.
pub fn publish(url: &str, source: &Source, scratch: &Scratch, name: &str) -> Process {
    let mut args = source.args();
    args.extend(["-f".into(), "flv".into(), url.into()]);
    spawn(args, scratch, name)
}

/// Publishes `source` as MPEG-TS to `url` (SRT).
pub fn publish_ts(url: &str, source: &Source, scratch: &Scratch, name: &str) -> Process {
    let mut args = source.args();
    args.extend(["-f".into(), "mpegts".into(), url.into()]);
    spawn(args, scratch, name)
}

/// Copies what `url` plays into an FLV file until the stream ends (or `seconds`).
pub fn record(url: &str, out: &Path, seconds: Option<f64>, scratch: &Scratch, name: &str) -> Process {
    let mut args: Vec<String> = vec!["-hide_banner".into(), "-v".into(), "error".into(), "-rw_timeout".into(), "20000000".into(), "-i".into(), url.into(), "-c".into(), "copy".into()];
    if let Some(s) = seconds {
        args.extend(["-t".into(), s.to_string()]);
    }
    args.extend(["-f".into(), "flv".into(), "-y".into(), out.display().to_string()]);
    spawn(args, scratch, name)
}

/// Copies what `url` plays into a file of container `format` until the input ends.
pub fn record_as(url: &str, out: &Path, format: &str, scratch: &Scratch, name: &str) -> Process {
    let args: Vec<String> = vec![
        "-hide_banner".into(),
        "-v".into(),
        "error".into(),
        "-i".into(),
        url.into(),
        "-c".into(),
        "copy".into(),
        "-f".into(),
        format.into(),
        "-y".into(),
        out.display().to_string(),
    ];
    spawn(args, scratch, name)
}

/// ffprobe's streams of `url` (or a file).
pub fn probe_streams(url: &str) -> Vec<Value> {
    let mut command = Command::new("ffprobe");
    command.args(["-v", "error", "-rw_timeout", "15000000", "-show_streams", "-of", "json", url]);
    let output = run(command, Duration::from_secs(30));
    assert!(output.success(), "ffprobe {url} failed: {}", output.stderr);
    let json: Value = serde_json::from_str(&output.stdout).unwrap_or_else(|e| panic!("ffprobe JSON: {e}: {}", output.stdout));
    json["streams"].as_array().cloned().unwrap_or_default()
}

/// One packet as ffprobe reports it.
#[derive(Debug, Clone)]
pub struct Packet {
    /// `video`, `audio` or `data`.
    pub codec_type: String,
    /// Presentation time in seconds.
    pub pts: Option<f64>,
    /// Decode time in seconds.
    pub dts: Option<f64>,
    /// Keyframe flag.
    pub key: bool,
}

/// The packets of the first `seconds` of `url` (or a file, with `seconds` = None for all).
pub fn probe_packets(url: &str, seconds: Option<u32>) -> Vec<Packet> {
    let mut command = Command::new("ffprobe");
    command.args(["-v", "error"]);
    if !url.starts_with('/') {
        command.args(["-rw_timeout", "15000000"]);
    }
    if let Some(s) = seconds {
        command.args(["-read_intervals", &format!("%+{s}")]);
    }
    command.args(["-show_entries", "packet=codec_type,pts_time,dts_time,flags", "-of", "json", url]);
    let output = run(command, Duration::from_secs(60 + seconds.unwrap_or(0) as u64));
    assert!(output.success(), "ffprobe packets {url} failed: {}", output.stderr);
    let json: Value = serde_json::from_str(&output.stdout).unwrap_or_else(|e| panic!("ffprobe JSON: {e}"));
    let time = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    json["packets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| Packet {
            codec_type: p["codec_type"].as_str().unwrap_or("").to_string(),
            pts: time(&p["pts_time"]),
            dts: time(&p["dts_time"]),
            key: p["flags"].as_str().unwrap_or("").contains('K'),
        })
        .collect()
}

/// Decodes `seconds` of `url` with `ffmpeg -v error`; returns what it printed (empty when
/// clean) and whether it exited 0.
pub fn decode(url: &str, seconds: u32) -> (bool, String) {
    decode_with(url, seconds, &[])
}

/// As [`decode`], for a variable frame rate source (a WebRTC publisher's): the decoded frames
/// keep the input's timebase (`-enc_time_base -1`). With FFmpeg's default (one tick per frame
/// at the guessed rate) two frames closer than a frame interval, which a browser's encoder
/// sends under load, land on one tick and the null muxer reports non-increasing timestamps;
/// frames with truly equal timestamps are still reported.
pub fn decode_vfr(url: &str, seconds: u32) -> (bool, String) {
    decode_with(url, seconds, &["-enc_time_base", "-1"])
}

fn decode_with(url: &str, seconds: u32, output_options: &[&str]) -> (bool, String) {
    let mut command = Command::new("ffmpeg");
    command.args(["-hide_banner", "-nostdin", "-v", "error", "-rw_timeout", "15000000", "-i", url, "-t", &seconds.to_string()]);
    command.args(output_options).args(["-f", "null", "-"]);
    let output = run(command, Duration::from_secs(seconds as u64 + 40));
    (output.success(), output.stderr)
}

/// The stream of `codec_type` in a probe result.
pub fn stream_of<'a>(streams: &'a [Value], codec_type: &str) -> Option<&'a Value> {
    streams.iter().find(|s| s["codec_type"] == codec_type)
}

/// Makes a test clip at `path`: a 320x240, 25 fps test pattern and a 440 Hz tone (AAC 48 kHz
/// stereo), `seconds` long, 2 s GOPs, `bframes` B-frames, video with `encoder` (`libx264` or
/// `libx265`, the latter tagged `hvc1`). Panics if ffmpeg fails.
pub fn make_clip(path: &Path, encoder: &str, bframes: u32, seconds: u32) -> PathBuf {
    let mut make = Command::new("ffmpeg");
    make.args(["-hide_banner", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-c:v", encoder, "-preset", "ultrafast", "-g", "50", "-c:a", "aac"])
        .args(["-bf".to_string(), bframes.to_string(), "-t".to_string(), seconds.to_string(), "-y".to_string()]);
    if encoder == "libx265" {
        make.args(["-x265-params", "log-level=error", "-tag:v", "hvc1"]);
    }
    make.arg(path);
    assert!(run(make, Duration::from_secs(120)).success(), "could not make the clip {}", path.display());
    path.to_path_buf()
}
