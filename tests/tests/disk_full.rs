//! A full disk under DVR and HLS: the node records and writes HLS onto small tmpfs mounts (in
//! a private mount namespace of the test), the test fills them, and then frees them.
//! While full: the recording is closed at its last complete fragment and indexed so, its state
//! in `GET /api/v1/dvr` is `suspended` with the reason, the `estuary_dvr_suspended` and
//! `estuary_disk_write_errors_total` metrics say so, the log names "disk full", and RTMP,
//! HTTP-FLV and WebRTC players carry on. Once space is free, recording resumes by itself (a new
//! file; the stretch in between is a gap with its reason in the index) and HLS continues after
//! a discontinuity. Every indexed file is whole: served at its indexed length, and decodes.

use estuary_tests::{aiortc, ffmpeg, http, mount_tmpfs, private_mounts_or_skip, wait_until, Node, Scratch};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Fills the filesystem of `dir` with one file; returns it.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0x55u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.flush();
    path
}

fn metric(node: &Node, name: &str, label: &str) -> f64 {
    let text = String::from_utf8_lossy(&http::get(node.ports.api, "/metrics").expect("metrics").body).into_owned();
    text.lines().filter(|l| l.starts_with(name) && l.contains(label)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn dvr_state(node: &Node) -> serde_json::Value {
    node.api("/api/v1/dvr")["streams"].as_array().and_then(|s| s.first().cloned()).unwrap_or_default()
}

/// The largest gap between consecutive video timestamps of a recorded file.
fn largest_gap(file: &Path) -> f64 {
    let times: Vec<f64> = ffmpeg::probe_packets(file.to_str().expect("a path"), None).iter().filter(|p| p.codec_type == "video").filter_map(|p| p.dts).collect();
    assert!(times.len() > 50, "{} video packets in {}", times.len(), file.display());
    times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

#[test]
fn a_full_disk_suspends_recording_and_hls_without_touching_live_playback_and_both_resume() {
    let Some(()) = private_mounts_or_skip("disk_full") else { return };
    let scratch = Scratch::new("disk-full");
    let (hls, recordings) = (scratch.path("estuary-data/hls"), scratch.path("recordings"));
    mount_tmpfs(&hls, 6);
    mount_tmpfs(&recordings, 6);
    let node = Node::start(
        &scratch,
        &[
            ("ESTUARY_DVR__ENABLED", "true"),
            ("ESTUARY_DVR__DIR", recordings.to_str().expect("a path")),
            ("ESTUARY_DVR__SEGMENT_MS", "600000"),
            ("ESTUARY_HLS__FRAGMENT_MS", "1000"),
            // HLS written to the (full) disk.
            ("ESTUARY_HLS__ALWAYS", "true"),
            ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "500"),
        ],
    );
    let mut publisher = ffmpeg::publish(&node.rtmp_url("live/cam"), &ffmpeg::Source { gop: 25, bframes: 0, qp: Some(20), ..ffmpeg::Source::default() }, &scratch, "publisher");
    node.wait_live("live/cam", Duration::from_secs(20));
    let (rtmp_out, flv_out) = (scratch.path("rtmp.flv"), scratch.path("http.flv"));
    let mut rtmp_player = ffmpeg::record(&node.rtmp_url("live/cam"), &rtmp_out, None, &scratch, "rtmp-player");
    let mut flv_player = ffmpeg::record(&node.flv_url("live/cam"), &flv_out, None, &scratch, "flv-player");
    let listed = |node: &Node| node.api("/api/v1/recordings?app=live&stream=cam");
    assert!(wait_until(Duration::from_secs(20), || listed(&node)["total"].as_u64().is_some_and(|t| t >= 1)), "no recording started: {}", node.log());
    assert!(wait_until(Duration::from_secs(20), || http::get(node.ports.http, "/live/cam.m3u8").is_ok_and(|r| r.status == 200)), "no HLS");
    std::thread::sleep(Duration::from_secs(2));

    // Full.
    let fillers = [fill(&hls), fill(&recordings)];
    assert!(wait_until(Duration::from_secs(20), || dvr_state(&node)["state"] == "suspended"), "recording not suspended: {}", node.api("/api/v1/dvr"));
    let state = dvr_state(&node);
    assert!(state["error"].as_str().is_some_and(|e| e.contains("disk full")), "{state}");
    assert!(wait_until(Duration::from_secs(20), || metric(&node, "estuary_disk_write_errors_total", "output=\"HLS\"") > 0.0), "HLS writes did not fail");
    assert!(metric(&node, "estuary_disk_write_errors_total", "output=\"dvr\"") > 0.0);
    assert_eq!(metric(&node, "estuary_dvr_suspended", ""), 1.0);
    assert!(node.log().contains("disk full"), "{}", node.log());
    // WebRTC plays while the disk is full.
    let whep = aiortc::whep_play(&format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=cam", node.ports.api), 3, 1);
    assert!(whep[0]["connected"] == true && whep[0]["video_frames"].as_u64().is_some_and(|n| n > 10), "{whep:?}");

    // Space again. (Only what the log says from now on counts: HLS may have written a
    // segment or two while full, in the room its own retired segments left.)
    let mark = node.log().len();
    let said = |node: &Node, text: &str| wait_until(Duration::from_secs(20), || node.log().get(mark..).is_some_and(|l| l.contains(text)));
    for filler in &fillers {
        std::fs::remove_file(filler).expect("filler removed");
    }
    assert!(wait_until(Duration::from_secs(20), || dvr_state(&node)["state"] == "recording"), "recording did not resume: {}", node.api("/api/v1/dvr"));
    assert!(said(&node, "recording resumed"), "{}", node.log());
    assert!(said(&node, "HLS writing works again"), "{}", node.log());
    assert_eq!(metric(&node, "estuary_dvr_suspended", ""), 0.0);
    let playlist = String::from_utf8_lossy(&http::get(node.ports.http, "/live/cam.m3u8").expect("playlist").body).into_owned();
    assert!(playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(rtmp_player.running() && flv_player.running(), "a player stopped: {} {}", rtmp_player.stderr(), flv_player.stderr());
    publisher.interrupt();
    publisher.wait(Duration::from_secs(10));
    assert!(wait_until(Duration::from_secs(20), || node.api("/api/v1/dvr")["streams"].as_array().is_some_and(|s| s.is_empty())), "the writer did not stop");

    // The index: every file complete, served at its indexed length, decodable; the stretch
    // while the disk was full is a gap with its reason.
    let index = listed(&node);
    let files = index["recordings"].as_array().cloned().unwrap_or_default();
    assert!(files.len() >= 2, "{index}");
    for file in &files {
        assert_eq!(file["state"], "complete", "{file}");
        let url = file["url"].as_str().expect("url");
        let served = http::get(node.ports.http, url).expect("file");
        assert_eq!(served.status, 200, "{url}");
        assert_eq!(served.body.len() as u64, file["bytes"].as_u64().expect("bytes"), "{url}: served and indexed lengths differ");
        let (ok, errors) = ffmpeg::decode(&format!("http://127.0.0.1:{}{url}", node.ports.http), 600);
        assert!(ok && errors.trim().is_empty(), "{url}: {errors}");
    }
    let losses = index["losses"].as_array().cloned().unwrap_or_default();
    assert!(losses.iter().any(|l| l["reason"].as_str().is_some_and(|r| r.contains("disk full"))), "{index}");

    // The players never noticed.
    rtmp_player.wait(Duration::from_secs(20));
    flv_player.wait(Duration::from_secs(20));
    for out in [&rtmp_out, &flv_out] {
        let gap = largest_gap(out);
        assert!(gap < 0.5, "{}: a gap of {gap:.2} s", out.display());
    }
}
