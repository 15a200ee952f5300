//! The codec matrix: six sources (RTMP H.264 + AAC, enhanced RTMP H.265 + AAC and AV1 + Opus,
//! SRT H.265 + AAC, WHIP H.264 + Opus, a GB28181 camera's H.265 + G.711) played over every
//! output (RTMP, HTTP-FLV, HTTP-TS, classic HLS, LL-HLS, DASH, SRT, WHEP, DVR HTTP-MP4). Each
//! cell either plays (a real player sees both tracks with their codecs at 320x240 and decodes
//! 5 s without an error; aiortc decodes WHEP) or is refused with a reason the node logs. The
//! README's codec table is this test's result: a difference fails the test, and the table
//! as found is written to `target/codec-matrix.md`.
//!
//! The player is the static ffmpeg 9 (PyPI's imageio-ffmpeg), which reads every codec here in
//! every container that has a mapping for it (Debian's 5.1 reads no H.265 or AV1 in FLV). Node
//! one serves everything but classic HLS; it forwards each stream to node two, which writes
//! classic HLS (TS segments, `hls.always`).

use estuary_tests::aiortc::{whep_play, whip_publish};
use estuary_tests::ffmpeg::{make_clip, modern_ffmpeg, publish, publish_enhanced, publish_ts, Process, Source};
use estuary_tests::gb_camera::{Camera, Fault};
use estuary_tests::{http, wait_until, Node, Scratch};
use std::time::Duration;

const OUTPUTS: [&str; 9] = ["RTMP", "HTTP-FLV", "HTTP-TS", "HLS (TS)", "LL-HLS (fMP4)", "DASH", "SRT", "WHEP", "DVR MP4"];

/// Marks around the table in the README.
const BEGIN: &str = "<!-- codec-matrix: begin (tests/tests/matrix.rs writes this table) -->";
const END: &str = "<!-- codec-matrix: end -->";

/// What a player found: codecs, size and whether 5 s decoded clean.
struct Played {
    video: Option<(String, u64, u64)>,
    audio: Option<String>,
    errors: String,
}

fn codec_name(name: &str) -> String {
    match name {
        "h264" => "H.264",
        "hevc" => "H.265",
        "av1" => "AV1",
        "aac" => "AAC",
        "opus" => "Opus",
        other => other,
    }
    .to_string()
}

/// Plays `url` with ffmpeg 9 for 5 s: the input's streams and the errors of the decode.
fn play(url: &str) -> Played {
    let output = std::process::Command::new(modern_ffmpeg())
        .args(["-hide_banner", "-nostdin", "-loglevel", "level+info", "-rw_timeout", "15000000", "-i", url, "-map", "0", "-t", "5", "-f", "null", "-"])
        .output()
        .expect("ffmpeg 9 runs");
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    let mut played = Played { video: None, audio: None, errors: String::new() };
    let mut input = true;
    for line in text.lines() {
        if line.contains("Output #0") {
            input = false;
        }
        if line.contains("[error]") || line.contains("[fatal]") {
            played.errors.push_str(line);
            played.errors.push('\n');
        }
        if !input || !line.contains("Stream #0:") {
            continue;
        }
        if let Some(rest) = line.split("Video: ").nth(1) {
            let codec = rest.split([' ', ',']).next().unwrap_or("").to_string();
            let size = rest.split(", ").find_map(|field| {
                let field = field.split(' ').next()?;
                let (w, h) = field.split_once('x')?;
                Some((w.parse::<u64>().ok()?, h.parse::<u64>().ok()?))
            });
            if played.video.is_none() {
                let (w, h) = size.unwrap_or((0, 0));
                played.video = Some((codec, w, h));
            }
        } else if let Some(rest) = line.split("Audio: ").nth(1) {
            if played.audio.is_none() {
                played.audio = Some(rest.split([' ', ',']).next().unwrap_or("").to_string());
            }
        }
    }
    if !output.status.success() && played.errors.is_empty() {
        played.errors = text.lines().rev().take(3).collect::<Vec<_>>().join("\n");
    }
    // The progress report's last `time=`: how much was decoded (`-t 5` ends at 5 s).
    let decoded_s = text.split("time=").filter_map(|rest| {
        let clock = rest.split_whitespace().next()?;
        let mut parts = clock.split(':').map(|p| p.parse::<f64>().ok());
        Some(parts.next()?? * 3600.0 + parts.next()?? * 60.0 + parts.next()??)
    }).last();
    if played.errors.is_empty() && decoded_s.is_none_or(|s| s < 4.5) {
        played.errors = format!("decoded {decoded_s:?} s of the 5 asked for");
    }
    played
}

/// A cell for a player's result: the codecs it played, or what went wrong.
fn cell_of(played: &Played) -> Result<String, String> {
    match (&played.video, &played.audio) {
        (Some((video, 320, 240)), Some(audio)) if played.errors.trim().is_empty() => Ok(format!("{} + {}", codec_name(video), codec_name(audio))),
        _ => Err(format!("video {:?}, audio {:?}, errors: {}", played.video, played.audio, played.errors.trim())),
    }
}

struct Row {
    label: &'static str,
    stream: String,
    cells: Vec<String>,
}

/// A refusal the node logged for `stream`: the reason a cell shows.
fn refusal(log: &str, stream: &str, needles: &[&str]) -> Option<&'static str> {
    let refused = log.lines().any(|l| l.contains(stream) && needles.iter().any(|n| l.contains(n)));
    refused.then_some("refused: no MPEG-TS mapping for AV1")
}

fn cells(node: &Node, classic: &Node, stream: &str, dvr_from_ms: i64) -> Vec<String> {
    let http = |n: &Node, path: &str| format!("http://127.0.0.1:{}/{path}", n.ports.http);
    let mut out = Vec::new();
    for output in OUTPUTS {
        let cell = match output {
            "WHEP" => {
                let whep = format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream={}", node.ports.api, stream.trim_start_matches("live/"));
                let player = &whep_play(&whep, 4, 1)[0];
                let ok = player["status"] == 201 && player["video_frames"].as_u64().unwrap_or(0) > 10 && player["audio_frames"].as_u64().unwrap_or(0) > 10 && player["width"] == 320 && player["height"] == 240;
                let fallback = node.log().lines().any(|l| l.contains("gets the H.264 fallback rendition") && l.contains(&format!("stream={stream} ")));
                // aiortc decodes H.264 (and VP8, which the node does not send) and Opus.
                if ok { Ok(if fallback { "H.264 + Opus (H.264 fallback)".to_string() } else { "H.264 + Opus".to_string() }) } else { Err(format!("aiortc: {player}")) }
            }
            _ => {
                let (url, player_node) = match output {
                    "RTMP" => (node.rtmp_url(stream), node),
                    "HTTP-FLV" => (http(node, &format!("{stream}.flv")), node),
                    "HTTP-TS" => (http(node, &format!("{stream}.ts")), node),
                    "HLS (TS)" => (http(classic, &format!("{stream}.m3u8")), classic),
                    "LL-HLS (fMP4)" => (http(node, &format!("{stream}.m3u8")), node),
                    "DASH" => (http(node, &format!("{stream}.mpd")), node),
                    "SRT" => (node.srt_url(stream, false, ""), node),
                    _ => (http(node, &format!("dvr/{stream}.mp4?start={dvr_from_ms}")), node),
                };
                let played = play(&url);
                cell_of(&played).or_else(|failure| {
                    let needles: &[&str] = match output {
                        "HTTP-TS" => &["HTTP-TS play refused", "no MPEG-TS mapping"],
                        "SRT" => &["no MPEG-TS mapping"],
                        "HLS (TS)" => &["AV1 has no MPEG-TS mapping: classic HLS"],
                        _ => &[],
                    };
                    refusal(&player_node.log(), stream, needles).map(str::to_string).ok_or(failure)
                })
            }
        };
        out.push(cell.unwrap_or_else(|failure| format!("FAILS ({failure})")));
    }
    out
}

fn render(rows: &[Row]) -> String {
    let mut table = format!("| source \\ output | {} |\n|---|{}\n", OUTPUTS.join(" | "), "---|".repeat(OUTPUTS.len()));
    for row in rows {
        table.push_str(&format!("| {} | {} |\n", row.label, row.cells.join(" | ")));
    }
    table
}

#[test]
fn every_source_codec_through_every_output() {
    let scratch = Scratch::new("matrix");
    let modern = modern_ffmpeg();
    let classic_scratch = Scratch::new("matrix-classic");
    let classic = Node::start(&classic_scratch, &[("ESTUARY_HLS__ALWAYS", "true"), ("ESTUARY_DASH__ENABLED", "false")]);
    let forward = format!(r#"{{ live = ["rtmp://127.0.0.1:{}/[app]/[stream]"] }}"#, classic.ports.rtmp);
    let node = Node::start(
        &scratch,
        &[("ESTUARY_DVR__ENABLED", "true"), ("ESTUARY_TRANSCODE__FFMPEG", modern.to_str().unwrap()), ("ESTUARY_FORWARD__APPS", &forward), ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "1000")],
    );
    let dvr_from_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;

    // The sources, all live at once.
    let mut processes: Vec<Process> = Vec::new();
    processes.push(publish(&node.rtmp_url("live/rtmp-avc"), &Source { bframes: 0, ..Source::default() }, &scratch, "rtmp-avc"));
    let enhanced = |video: &[&str], audio: &[&str], stream: &str| publish_enhanced(&node.rtmp_url(stream), video, audio, &scratch, stream.trim_start_matches("live/"));
    processes.push(enhanced(&["-c:v", "libx265", "-preset", "ultrafast", "-bf", "0", "-x265-params", "log-level=error"], &["-c:a", "aac", "-ac", "2"], "live/ertmp-hevc"));
    processes.push(enhanced(&["-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "lp=1"], &["-c:a", "libopus", "-b:a", "64k", "-ac", "2"], "live/ertmp-av1"));
    processes.push(publish_ts(&node.srt_url("live/srt-hevc", true, ""), &Source { video_codec: "libx265", bframes: 0, ..Source::default() }, &scratch, "srt-hevc"));
    let avc_clip = make_clip(&scratch.path("avc.mp4"), "libx264", 0, 10);
    let (mut whip, answer) = whip_publish(&format!("http://127.0.0.1:{}/rtc/v1/whip/?app=live&stream=whip-avc", node.ports.api), &avc_clip, 600);
    assert_eq!(answer["connected"], true, "WHIP publisher: {answer}");
    let hevc_clip = make_clip(&scratch.path("hevc.mp4"), "libx265", 0, 10);
    let gb_id = "34020000001320000009";
    let body = format!(r#"{{"id":"{gb_id}","ssrc":"0200000009"}}"#);
    let announced = http::send(node.ports.api, "POST", "/gb/v1/publish/", &[("Content-Type", "application/json")], body.as_bytes()).unwrap();
    assert_eq!(announced.status, 200, "{}", String::from_utf8_lossy(&announced.body));
    let camera = Camera::start_with(node.ports.gb_media, 200_000_009, &hevc_clip, 600.0, Fault::None, true);

    let gb_stream = format!("live/{gb_id}");
    let sources: [(&'static str, String); 6] = [
        ("RTMP H.264 + AAC", "live/rtmp-avc".into()),
        ("enhanced RTMP H.265 + AAC", "live/ertmp-hevc".into()),
        ("enhanced RTMP AV1 + Opus", "live/ertmp-av1".into()),
        ("SRT H.265 + AAC", "live/srt-hevc".into()),
        ("WHIP H.264 + Opus", "live/whip-avc".into()),
        ("GB28181 H.265 + G.711", gb_stream.clone()),
    ];
    for (label, stream) in &sources {
        node.wait_live(stream, Duration::from_secs(40));
        assert!(wait_until(Duration::from_secs(20), || node.stream_info(stream).is_some_and(|i| !i["video"].is_null() && !i["audio"].is_null())), "{label}: {:?}", node.stream_info(stream));
        classic.wait_live(stream, Duration::from_secs(40));
    }
    // Classic HLS writes 2 s segments: wait until each stream it can write has three (the
    // DVR has fragments by then too).
    for (label, stream) in sources.iter().filter(|(_, s)| s != "live/ertmp-av1") {
        let segments = || http::get(classic.ports.http, &format!("/{stream}.m3u8")).map(|r| String::from_utf8_lossy(&r.body).matches("#EXTINF").count()).unwrap_or(0);
        assert!(wait_until(Duration::from_secs(30), || segments() >= 3), "{label}: classic HLS has {} segments", segments());
    }

    // Three players at a time (a source's cells one after another): the machine has two cores
    // and the publishers encode live.
    let rows: Vec<Row> = std::thread::scope(|scope| {
        let (node, classic) = (&node, &classic);
        let handles: Vec<_> = sources
            .chunks(2)
            .map(|pair| {
                scope.spawn(move || pair.iter().map(|(label, stream)| Row { label, stream: stream.clone(), cells: cells(node, classic, stream, dvr_from_ms) }).collect::<Vec<Row>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a matrix thread")).collect()
    });
    let _ = whip.kill();
    let _ = camera.finish();
    drop(processes);

    let table = render(&rows);
    let found = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/codec-matrix.md");
    let _ = std::fs::write(&found, &table);
    let failing: Vec<String> = rows.iter().flat_map(|r| r.cells.iter().zip(OUTPUTS).filter(|(c, _)| c.starts_with("FAILS")).map(move |(c, o)| format!("{} ({}) over {o}: {c}", r.label, r.stream))).collect();
    assert!(failing.is_empty(), "cells that neither play nor are refused with a logged reason:\n{}\n\n{table}", failing.join("\n"));
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README.md");
    let documented = readme.split(BEGIN).nth(1).and_then(|rest| rest.split(END).next()).map(str::trim).unwrap_or("");
    assert_eq!(documented, table.trim(), "the README's codec table differs from what plays (the table as found is in {})", found.display());
}
