//! Stream churn, as platforms make it (a new stream name per broadcast): hundreds of short
//! publishes, some watched over HLS (playlist requests, and ffprobe on every hundredth). After the dispose time nothing of the ended streams is
//! left: no HLS or DASH files, nothing in the default stream list, no `/metrics` series, and
//! a bounded stream history in sled. A stream back within the dispose time continues its
//! playlist; one back after it starts afresh.
//!
//! `CHURN_STREAMS=10000` runs the long form (figures in docs/BENCHMARKS.md).

use bytes::Bytes;
use estuary_protocols::codec::avc::AvcConfig;
use estuary_protocols::media::{Codec, MediaFrame, Timebase, TrackKind};
use estuary_tests::rtmp_raw::Publisher;
use estuary_tests::{http, wait_until, Node, Scratch};
use std::path::Path;
use std::time::Duration;

/// A 320x240 High-profile SPS and its PPS (x264).
const SPS: [u8; 25] = [0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60];
const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

fn video(dts_ms: i64, keyframe: bool, config: bool, payload: Bytes) -> MediaFrame {
    MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts: dts_ms, pts: dts_ms, timebase: Timebase::MILLIS, keyframe, config, payload }
}

/// Publishes `seconds` of 25 fps video with a keyframe every second, as fast as the socket
/// takes it; the publish ends when the returned publisher is dropped.
fn publish(port: u16, name: &str, seconds: i64) -> Publisher {
    let mut publisher = Publisher::start(port, "live", name);
    let config = AvcConfig::from_parameter_sets(&SPS, &PPS).expect("parameter sets").to_bytes();
    publisher.send(&video(0, true, true, config)).expect("config");
    let nal = |kind: u8| {
        let mut payload = 400u32.to_be_bytes().to_vec();
        payload.push(kind);
        payload.resize(404, 0x5a);
        Bytes::from(payload)
    };
    let (idr, slice) = (nal(0x65), nal(0x41));
    for n in 0..seconds * 25 {
        let keyframe = n % 25 == 0;
        publisher.send(&video(n * 40, keyframe, false, if keyframe { idr.clone() } else { slice.clone() })).expect("frame");
    }
    publisher
}

/// Files under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn bytes_under(dir: &Path) -> u64 {
    files(dir).iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum()
}

fn media_sequence(node: &Node, stream: &str) -> Option<(u64, bool)> {
    let response = http::get(node.ports.http, &format!("/live/{stream}.m3u8")).ok()?;
    let text = String::from_utf8_lossy(&response.body).into_owned();
    let sequence = text.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))?.trim().parse().ok()?;
    (response.status == 200).then_some((sequence, text.contains("#EXT-X-DISCONTINUITY")))
}

#[test]
fn ended_streams_leave_no_files_no_list_entries_no_series_and_a_bounded_history() {
    let streams: usize = std::env::var("CHURN_STREAMS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let scratch = Scratch::new("churn");
    let node = Node::start(
        &scratch,
        &[
            ("ESTUARY_HLS__DISPOSE_S", "4"),
            ("ESTUARY_HLS__FRAGMENT_MS", "1000"),
            // The files of the writers on disk are what this test disposes of.
            ("ESTUARY_HLS__ALWAYS", "true"),
            ("ESTUARY_DASH__ALWAYS", "true"),
            ("ESTUARY_DASH__DISPOSE_S", "4"),
            ("ESTUARY_DASH__FRAGMENT_MS", "1000"),
            ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "500"),
            ("ESTUARY_STREAM__HISTORY_MAX_COUNT", "50"),
        ],
    );
    let data = node.dir.join("estuary-data");
    let (hls, dash, db) = (data.join("hls"), data.join("dash"), data.join("db"));
    let rss_start = node.rss_kb();
    let fds = |node: &Node| std::fs::read_dir(format!("/proc/{}/fd", node.pid())).map(|d| d.count()).unwrap_or(0);
    let fds_start = fds(&node);

    // Four publishers at a time; every 25th stream is watched while its publisher is still
    // connected: its playlist is fetched, and every 100th is opened by ffprobe.
    let mut sled_after_100 = 0;
    let mut watched = 0;
    for batch in (0..streams).collect::<Vec<_>>().chunks(4) {
        let port = node.ports.rtmp;
        let handles: Vec<_> = batch.iter().map(|&i| std::thread::spawn(move || (i, publish(port, &format!("churn{i}"), 3)))).collect();
        // Unwatched publishers leave at once; watched ones after their checks.
        let _watched_publishers: Vec<Publisher> = handles.into_iter().map(|h| h.join().expect("publisher")).filter(|(i, _)| i % 25 == 0).map(|(_, p)| p).collect();
        for &i in batch.iter().filter(|i| *i % 25 == 0) {
            let name = format!("churn{i}");
            if wait_until(Duration::from_secs(10), || media_sequence(&node, &name).is_some()) {
                watched += 1;
            }
            // Every 100th is also opened by a real HLS client.
            if i % 100 == 0 {
                let streams = estuary_tests::ffmpeg::probe_streams(&format!("http://127.0.0.1:{}/live/{name}.m3u8", node.ports.http));
                assert!(estuary_tests::ffmpeg::stream_of(&streams, "video").is_some(), "ffprobe found no video in {name}'s HLS: {streams:?}");
            }
        }
        if batch.contains(&99) {
            std::thread::sleep(Duration::from_secs(1));
            sled_after_100 = bytes_under(&db);
        }
    }
    assert_eq!(watched, streams.div_ceil(25), "HLS was not produced for every watched stream");
    let files_at_end = files(&hls).len() + files(&dash).len();
    let disk_at_end = bytes_under(&hls) + bytes_under(&dash);
    assert!(files_at_end > 0, "no HLS or DASH files were written");

    // Dispose time (4 s) after the last stream ended (grace 0.5 s): nothing left.
    let cleaned = wait_until(Duration::from_secs(60), || files(&hls).is_empty() && files(&dash).is_empty());
    assert!(cleaned, "{} HLS and {} DASH files left, e.g. {:?}", files(&hls).len(), files(&dash).len(), files(&hls).first());
    assert!(node.log().contains("files of the ended stream removed"));
    let listed = node.api("/api/v1/streams?count=1000");
    assert_eq!(listed["total"], 0, "ended streams in the default list: {listed}");
    let metrics = String::from_utf8_lossy(&http::get(node.ports.api, "/metrics").unwrap().body).into_owned();
    assert!(!metrics.contains("stream=\"churn"), "series of ended streams in /metrics");

    // The history is pruned to its bound (every 10 s), and sled does not grow with names.
    assert!(wait_until(Duration::from_secs(30), || node.api("/api/v1/streams?count=1000&all=true")["total"].as_u64().is_some_and(|t| t <= 50)), "stream history not pruned to 50");
    let sled_end = bytes_under(&db);
    let rss_end = node.rss_kb();
    eprintln!(
        "{streams} streams: RSS {rss_start} -> {rss_end} KiB; open files {fds_start} -> {}; sled {sled_after_100} B after 100 streams, {sled_end} B at the end; HLS+DASH {files_at_end} files, {disk_at_end} B when publishing ended, {} files after the dispose time",
        fds(&node),
        files(&hls).len() + files(&dash).len()
    );
    // sled grows by its log, not by the names (the records are pruned to the bound above).
    assert!(sled_end <= sled_after_100 + 4 * 1024 * 1024, "sled grew from {sled_after_100} to {sled_end} bytes");

    // Back after the dispose time: a new playlist (sequence from 0, no discontinuity).
    drop(publish(node.ports.rtmp, "churn0", 3));
    assert!(wait_until(Duration::from_secs(10), || media_sequence(&node, "churn0").is_some()));
    assert_eq!(media_sequence(&node, "churn0"), Some((0, false)), "a stream back after the dispose time continues an old playlist");
    // Once that publish has ended (playlist closed, stream gone from the list), back within
    // the dispose time: the playlist continues after a discontinuity.
    let playlist = |node: &Node| http::get(node.ports.http, "/live/churn0.m3u8").map(|r| String::from_utf8_lossy(&r.body).contains("#EXT-X-ENDLIST")).unwrap_or(false);
    assert!(wait_until(Duration::from_secs(10), || playlist(&node) && node.api("/api/v1/streams")["total"] == 0), "the publish did not end");
    drop(publish(node.ports.rtmp, "churn0", 3));
    assert!(wait_until(Duration::from_secs(10), || media_sequence(&node, "churn0").is_some_and(|(_, discontinuity)| discontinuity)), "no continuity within the dispose time: {:?}", media_sequence(&node, "churn0"));
}
