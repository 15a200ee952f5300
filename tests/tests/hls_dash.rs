//! HLS (MPEG-TS and fMP4 segments), HTTP-TS and DASH outputs of an RTMP publish, checked with
//! ffprobe/ffmpeg and by reading the playlists as a player would.

use estuary_tests::ffmpeg::{decode, probe_packets, probe_streams, publish, stream_of, Source};
use estuary_tests::{http, wait_until, Node, Scratch};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

struct Shared {
    node: Node,
    _scratch: Scratch,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| {
    let scratch = Scratch::new("hls-dash");
    let node = Node::start(
        &scratch,
        // The writers on disk (hls.always, dash.always): the in-memory packages on demand are
        // tested in ll_hls.rs.
        &[("ESTUARY_HLS__ALWAYS", "true"), ("ESTUARY_DASH__ALWAYS", "true"), ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "4000"), ("ESTUARY_HLS__WINDOW", "5"), ("ESTUARY_DASH__WINDOW", "5")],
    );
    Shared { node, _scratch: scratch }
});

fn node() -> &'static Node {
    &SHARED.node
}

fn url(node: &Node, path: &str) -> String {
    format!("http://127.0.0.1:{}/{path}", node.ports.http)
}

struct Playlist {
    target: f64,
    media_sequence: u64,
    segments: Vec<(f64, String)>,
    discontinuities: usize,
    ended: bool,
}

fn parse_playlist(text: &str) -> Playlist {
    let mut playlist = Playlist { target: 0.0, media_sequence: 0, segments: Vec::new(), discontinuities: 0, ended: false };
    let mut duration = None;
    assert!(text.starts_with("#EXTM3U"), "not a playlist: {text}");
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            playlist.target = v.parse().expect("target duration");
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            playlist.media_sequence = v.parse().expect("media sequence");
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            duration = Some(v.trim_end_matches(',').parse::<f64>().expect("EXTINF"));
        } else if line == "#EXT-X-DISCONTINUITY" {
            playlist.discontinuities += 1;
        } else if line == "#EXT-X-ENDLIST" {
            playlist.ended = true;
        } else if !line.starts_with('#') && !line.is_empty() {
            playlist.segments.push((duration.take().expect("EXTINF before URI"), line.to_string()));
        }
    }
    playlist
}

fn fetch_playlist(node: &Node, path: &str) -> Option<Playlist> {
    let response = http::get(node.ports.http, &format!("/{path}")).ok()?;
    (response.status == 200).then(|| parse_playlist(&String::from_utf8_lossy(&response.body)))
}

fn wait_segments(node: &Node, path: &str, count: usize) -> Playlist {
    let mut last = None;
    let ok = wait_until(Duration::from_secs(30), || {
        last = fetch_playlist(node, path);
        last.as_ref().is_some_and(|p| p.segments.len() >= count)
    });
    assert!(ok, "{path}: fewer than {count} segments; log:\n{}", node.log());
    last.expect("playlist")
}

#[test]
fn hls_http_ts_and_dash_play_both_tracks() {
    let node = node();
    let scratch = Scratch::new("outputs");
    let _publisher = publish(&node.rtmp_url("live/outputs"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/outputs", Duration::from_secs(20));
    wait_segments(node, "live/outputs.m3u8", 3);
    assert!(wait_until(Duration::from_secs(20), || http::get(node.ports.http, "/live/outputs.mpd").is_ok_and(|r| r.status == 200)), "no MPD");

    let urls = [url(node, "live/outputs.m3u8"), url(node, "live/outputs.ts"), url(node, "live/outputs.mpd")];
    for url in &urls {
        let streams = probe_streams(url);
        let video = stream_of(&streams, "video").unwrap_or_else(|| panic!("{url}: no video in {streams:?}"));
        assert_eq!(video["codec_name"], "h264", "{url}");
        assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(320), Some(240)), "{url}");
        let audio = stream_of(&streams, "audio").unwrap_or_else(|| panic!("{url}: no audio"));
        assert_eq!(audio["codec_name"], "aac", "{url}");
        assert_eq!(audio["sample_rate"], "48000", "{url}");
    }
    let decoders: Vec<_> = urls.iter().cloned().map(|url| std::thread::spawn(move || (decode(&url, 20), url))).collect();
    for handle in decoders {
        let ((ok, errors), url) = handle.join().expect("decoder thread");
        assert!(ok && errors.trim().is_empty(), "{url}: {errors}");
    }

    // Content types, caching and CORS as browsers and CDNs expect.
    for (path, content_type, cache) in [
        ("/live/outputs.m3u8", "application/vnd.apple.mpegurl", "no-cache"),
        ("/live/outputs.mpd", "application/dash+xml", "no-cache"),
    ] {
        let response = http::get(node.ports.http, path).expect("GET");
        let header = |name: &str| response.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        assert_eq!(header("content-type"), content_type, "{path}");
        assert_eq!(header("cache-control"), cache, "{path}");
        assert_eq!(header("access-control-allow-origin"), "*", "{path}");
    }
}

#[test]
fn playlists_follow_rfc_8216() {
    let node = node();
    let scratch = Scratch::new("rfc");
    let _publisher = publish(&node.rtmp_url("live/rfc"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/rfc", Duration::from_secs(20));
    wait_segments(node, "live/rfc.m3u8", 2);
    let mut previous: Option<Playlist> = None;
    let mut checked_segments = 0;
    let deadline = Instant::now() + Duration::from_secs(16);
    while Instant::now() < deadline {
        let playlist = fetch_playlist(node, "live/rfc.m3u8").expect("playlist");
        for (index, (duration, uri)) in playlist.segments.iter().enumerate() {
            assert!(playlist.target >= duration.round(), "target {} < EXTINF {duration}", playlist.target);
            let number: u64 = uri.trim_start_matches("rfc-").trim_end_matches(".ts").parse().expect("segment number");
            assert_eq!(number, playlist.media_sequence + index as u64, "media sequence does not match the segment list");
        }
        if let Some(previous) = &previous {
            assert!(playlist.media_sequence >= previous.media_sequence, "media sequence went backwards");
            let (prev_last, last) = (previous.media_sequence + previous.segments.len() as u64, playlist.media_sequence + playlist.segments.len() as u64);
            assert!(last >= prev_last, "segments disappeared from the end");
        }
        // Each listed segment's content lasts what EXTINF says, within a frame.
        if let Some((duration, uri)) = playlist.segments.last() {
            let packets = probe_packets(&url(node, &format!("live/{uri}")), None);
            let video: Vec<f64> = packets.iter().filter(|p| p.codec_type == "video").filter_map(|p| p.dts).collect();
            let content = video.last().unwrap_or(&0.0) - video.first().unwrap_or(&0.0) + 0.04;
            assert!((content - duration).abs() <= 0.041, "{uri}: EXTINF {duration} but {content:.3}s of video");
            assert!(packets.iter().find(|p| p.codec_type == "video").is_some_and(|p| p.key), "{uri} does not start with a keyframe");
            checked_segments += 1;
        }
        previous = Some(playlist);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let last = previous.expect("fetched");
    assert!(last.media_sequence > 0, "the window never slid");
    assert!(checked_segments >= 5);
}

#[test]
fn files_on_disk_stay_bounded_over_ten_minutes_of_stream() {
    let node = node();
    let scratch = Scratch::new("long");
    // Ten minutes of media sent as fast as the encoder runs: segments are cut on media time.
    let source = Source { duration: Some(600.0), realtime: false, ..Source::default() };
    let mut publisher = publish(&node.rtmp_url("long/stream"), &source, &scratch, "publisher");
    let hls_dir = node.dir.join("estuary-data/hls/long");
    let dash_dir = node.dir.join("estuary-data/dash/long");
    let count = |dir: &std::path::Path, ext: &str| std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == ext)).count()).unwrap_or(0);
    let mut most_ts = 0;
    let mut most_m4s = 0;
    while publisher.wait(Duration::from_millis(500)).is_none() {
        most_ts = most_ts.max(count(&hls_dir, "ts"));
        most_m4s = most_m4s.max(count(&dash_dir, "m4s"));
    }
    assert!(publisher.stderr().trim().is_empty(), "publisher: {}", publisher.stderr());
    std::thread::sleep(Duration::from_secs(1));
    let playlist = fetch_playlist(node, "long/stream.m3u8").expect("playlist");
    assert!(playlist.media_sequence >= 200, "only {} segments for ten minutes of media", playlist.media_sequence);
    // Window 5, plus 5 retired segments kept for slow players, plus the one being written.
    assert!(most_ts <= 11, "{most_ts} TS segment files on disk");
    assert!(most_m4s <= 2 * 11, "{most_m4s} DASH segment files on disk");
}

#[test]
fn republish_continues_across_a_discontinuity() {
    let node = node();
    let scratch = Scratch::new("again");
    let first = Source { duration: Some(8.0), ..Source::default() };
    let mut publisher = publish(&node.rtmp_url("live/again"), &first, &scratch, "first");
    node.wait_live("live/again", Duration::from_secs(20));
    wait_segments(node, "live/again.m3u8", 2);
    let out = scratch.path("follower.ts");
    let mut follower = estuary_tests::ffmpeg::record_as(&url(node, "live/again.m3u8"), &out, "mpegts", &scratch, "follower");
    assert!(publisher.wait(Duration::from_secs(20)).is_some());
    // Back within the grace period, with a different resolution: a codec change.
    let second = Source { duration: Some(8.0), size: "480x270", ..Source::default() };
    let mut publisher = publish(&node.rtmp_url("live/again"), &second, &scratch, "second");
    assert!(publisher.wait(Duration::from_secs(20)).is_some_and(|s| s.success()), "{}", publisher.stderr());
    assert!(wait_until(Duration::from_secs(20), || fetch_playlist(node, "live/again.m3u8").is_some_and(|p| p.ended)), "no ENDLIST after the stream ended");
    let playlist = fetch_playlist(node, "live/again.m3u8").expect("playlist");
    assert!(playlist.discontinuities >= 1, "no EXT-X-DISCONTINUITY at the codec change");
    assert!(follower.wait(Duration::from_secs(30)).is_some(), "follower did not stop at ENDLIST");
    let packets = probe_packets(&out.display().to_string(), None);
    let video: Vec<f64> = packets.iter().filter(|p| p.codec_type == "video").filter_map(|p| p.pts).collect();
    let span = video.iter().cloned().fold(f64::MIN, f64::max) - video.iter().cloned().fold(f64::MAX, f64::min);
    assert!(span > 10.0, "follower got {span:.1}s: it did not continue across the discontinuity");

    // Published again after the stream ended: the playlist continues its numbering.
    let before = playlist.media_sequence + playlist.segments.len() as u64;
    let mut third = publish(&node.rtmp_url("live/again"), &Source { duration: Some(5.0), ..Source::default() }, &scratch, "third");
    assert!(third.wait(Duration::from_secs(20)).is_some());
    let resumed = wait_segments(node, "live/again.m3u8", 1);
    let first_new = resumed.segments.iter().map(|(_, uri)| uri.trim_start_matches("again-").trim_end_matches(".ts").parse::<u64>().unwrap_or(0)).max().unwrap_or(0);
    assert!(first_new >= before, "numbering restarted ({first_new} < {before})");
    assert!(resumed.discontinuities >= 1);
}

#[test]
fn bad_requests_never_leave_the_output_directories() {
    let node = node();
    std::fs::write(node.dir.join("secret.m3u8"), "#EXTM3U\nsecret\n").expect("write secret");
    for (path, allowed) in [
        ("/live/nothing.m3u8", &[404][..]),
        ("/live/nothing.mpd", &[404]),
        ("/live/nothing.ts", &[404]),
        ("/live/nothing-3.m4s", &[404]),
        ("/live/..%2F..%2Fsecret.m3u8", &[400, 404]),
        ("/..%2F..%2F/secret.m3u8", &[400, 404]),
        ("/live/%2e%2e.m3u8", &[400, 404]),
        ("/live/stream.exe", &[404]),
    ] {
        let response = http::get(node.ports.http, path).expect("answer");
        assert!(allowed.contains(&response.status), "{path}: {}", response.status);
        assert!(!String::from_utf8_lossy(&response.body).contains("secret"), "{path} leaked a file");
    }
    let long = format!("/live/{}.m3u8", "a".repeat(300));
    assert_eq!(http::get(node.ports.http, &long).expect("answer").status, 400);
}

#[test]
fn hls_with_fmp4_segments_plays() {
    let scratch = Scratch::new("fmp4");
    let node = Node::start(&scratch, &[("ESTUARY_HLS__ALWAYS", "true"), ("ESTUARY_HLS__FMP4", "true")]);
    let _publisher = publish(&node.rtmp_url("live/cmaf"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/cmaf", Duration::from_secs(20));
    wait_segments(&node, "live/cmaf.m3u8", 2);
    let text = String::from_utf8_lossy(&http::get(node.ports.http, "/live/cmaf.m3u8").expect("GET").body).into_owned();
    assert!(text.contains("#EXT-X-MAP:URI=\"cmaf-init-0.mp4\""), "{text}");
    assert!(text.contains("#EXT-X-VERSION:7"), "{text}");
    let playlist_url = url(&node, "live/cmaf.m3u8");
    let streams = probe_streams(&playlist_url);
    assert!(stream_of(&streams, "video").is_some() && stream_of(&streams, "audio").is_some(), "{streams:?}");
    let (ok, errors) = decode(&playlist_url, 10);
    assert!(ok && errors.trim().is_empty(), "{errors}");
}
