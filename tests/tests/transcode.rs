//! Transcoding ladders: two renditions at their configured sizes, an HLS master playlist that
//! ffprobe opens, a killed ffmpeg child restarted by its supervisor, and bad specs or a
//! missing ffmpeg reported without harm.

use estuary_tests::ffmpeg::{probe_streams, publish, stream_of, Source};
use estuary_tests::{http, wait_until, Node, Scratch};
use serde_json::Value;
use std::time::Duration;

fn transcodes(node: &Node) -> Vec<Value> {
    node.api("/api/v1/transcodes")["transcodes"].as_array().cloned().unwrap_or_default()
}

fn height(url: &str) -> u64 {
    let streams = probe_streams(url);
    stream_of(&streams, "video").and_then(|v| v["height"].as_u64()).unwrap_or_else(|| panic!("{url}: no video in {streams:?}"))
}

#[test]
fn ladder_renditions_master_playlist_and_restarts() {
    let scratch = Scratch::new("transcode");
    let ladder = r#"{ live = [ { suffix = "_180p", height = 180, video_kbps = 300 }, { suffix = "_120p", height = 120, video_kbps = 150, audio_kbps = 64 } ] }"#;
    let node = Node::start(&scratch, &[("ESTUARY_TRANSCODE__APPS", ladder)]);
    let _publisher = publish(&node.rtmp_url("live/s"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/s", Duration::from_secs(20));
    node.wait_live("live/s_180p", Duration::from_secs(40));
    node.wait_live("live/s_120p", Duration::from_secs(40));
    assert_eq!(height(&node.rtmp_url("live/s_180p")), 180);
    assert_eq!(height(&node.flv_url("live/s_120p")), 120);
    assert_eq!(transcodes(&node).len(), 2, "{:?}", transcodes(&node));

    // The master playlist lists the source and both renditions once their HLS exists.
    let master = "/live/s_master.m3u8".to_string();
    let mut text = String::new();
    let ok = wait_until(Duration::from_secs(30), || {
        text = http::get(node.ports.http, &master).map(|r| String::from_utf8_lossy(&r.body).into_owned()).unwrap_or_default();
        ["s.m3u8", "s_180p.m3u8", "s_120p.m3u8"].iter().all(|v| text.lines().any(|l| l == *v))
    });
    assert!(ok, "master playlist incomplete:\n{text}");
    assert!(text.starts_with("#EXTM3U") && text.matches("#EXT-X-STREAM-INF:BANDWIDTH=").count() == 3, "{text}");
    assert!(text.contains("RESOLUTION=320x240"), "{text}");
    // Each variant's package starts with its first request (which waits for two segments);
    // once all run, each rendition's LL-HLS playlist reports the others' newest parts
    // (RFC 8216bis EXT-X-RENDITION-REPORT), so a player switches without a blind reload.
    for name in ["s", "s_180p", "s_120p"] {
        assert_eq!(http::get(node.ports.http, &format!("/live/{name}.m3u8")).unwrap().status, 200, "{name}");
    }
    for (name, others) in [("s", ["s_180p", "s_120p"]), ("s_180p", ["s", "s_120p"])] {
        let playlist = String::from_utf8_lossy(&http::get(node.ports.http, &format!("/live/{name}.m3u8")).unwrap().body).into_owned();
        for other in others {
            let report = playlist.lines().find(|l| l.starts_with(&format!("#EXT-X-RENDITION-REPORT:URI=\"{other}.m3u8\",LAST-MSN=")));
            assert!(report.is_some_and(|r| r.contains(",LAST-PART=")), "{name}.m3u8 has no report of {other}:\n{playlist}");
        }
    }
    let streams = probe_streams(&format!("http://127.0.0.1:{}{master}", node.ports.http));
    assert!(streams.iter().filter(|s| s["codec_type"] == "video").count() >= 3, "ffprobe did not open every variant: {streams:?}");

    // Killing a child: the supervisor starts a new one and the rendition comes back.
    let victim = transcodes(&node).into_iter().find(|t| t["output"] == "live/s_180p").expect("180p transcoder");
    let pid = victim["pid"].as_u64().expect("pid");
    assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    assert!(
        wait_until(Duration::from_secs(30), || transcodes(&node).iter().any(|t| t["output"] == "live/s_180p" && t["restarts"].as_u64() >= Some(1) && t["state"] == "running" && t["pid"].as_u64() != Some(pid))),
        "no restart: {:?}",
        transcodes(&node)
    );
    assert!(wait_until(Duration::from_secs(30), || probe_ok(&node.rtmp_url("live/s_180p"))), "rendition did not come back");
    assert!(node.log().contains("transcoder child ended; restarting"), "log:\n{}", node.log());

    // A bad spec is refused with the reason.
    let body = r#"{"app":"live","stream":"s","renditions":[{"suffix":"_odd","height":17,"video_kbps":100}]}"#;
    let refused = http::send(node.ports.api, "POST", "/api/v1/transcodes", &[("Content-Type", "application/json")], body.as_bytes()).unwrap();
    assert_eq!(refused.status, 400);
    assert!(String::from_utf8_lossy(&refused.body).contains("height 17"), "{}", String::from_utf8_lossy(&refused.body));
}

fn probe_ok(url: &str) -> bool {
    let output = std::process::Command::new("ffprobe").args(["-v", "error", "-rw_timeout", "5000000", "-show_streams", url]).output();
    output.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("codec_type=video"))
}

#[test]
fn missing_ffmpeg_is_an_error_not_a_crash_loop() {
    let scratch = Scratch::new("transcode-missing");
    let ladder = r#"{ live = [ { suffix = "_small", height = 120, video_kbps = 150 } ] }"#;
    let node = Node::start(&scratch, &[("ESTUARY_TRANSCODE__APPS", ladder), ("ESTUARY_TRANSCODE__FFMPEG", "/nonexistent/ffmpeg")]);
    let _publisher = publish(&node.rtmp_url("live/m"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/m", Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(15), || transcodes(&node).iter().any(|t| t["state"] == "failed" && t["last_error"].as_str().is_some_and(|e| e.contains("/nonexistent/ffmpeg")))),
        "{:?}",
        transcodes(&node)
    );
    let body = r#"{"app":"live","stream":"m","renditions":[{"suffix":"_x","height":120,"video_kbps":100}]}"#;
    let refused = http::send(node.ports.api, "POST", "/api/v1/transcodes", &[("Content-Type", "application/json")], body.as_bytes()).unwrap();
    assert_eq!(refused.status, 503, "{}", String::from_utf8_lossy(&refused.body));
    // Not a crash loop: a binary that cannot run is retried at the slowest pace (30 s), and
    // the log says so.
    let log = node.log();
    let line = log.lines().find(|l| l.contains("transcoder cannot start ffmpeg")).unwrap_or_default();
    assert!(line.contains("retry_in_ms=30000"), "not the slow retry: {line:?}");
    // The source itself is unaffected.
    assert!(probe_ok(&node.flv_url("live/m")));
}

/// One RGB frame (`width` x `height`) of `url`, decoded by ffmpeg.
fn frame(url: &str, width: usize, height: usize) -> Vec<u8> {
    let output = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-rw_timeout", "10000000", "-i", url, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(output.status.success(), "{url}: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.stdout.len(), width * height * 3, "{url}: not a {width}x{height} frame");
    output.stdout
}

fn pixel(frame: &[u8], width: usize, x: usize, y: usize) -> (u8, u8, u8) {
    let at = (y * width + x) * 3;
    (frame[at], frame[at + 1], frame[at + 2])
}

/// Pixels of a box that are bright (text drawn in white), as a bitmap.
fn bright(frame: &[u8], width: usize, (x0, y0, x1, y1): (usize, usize, usize, usize)) -> Vec<bool> {
    (y0..y1).flat_map(|y| (x0..x1).map(move |x| (x, y))).map(|(x, y)| pixel(frame, width, x, y)).map(|(r, g, b)| r > 150 && g > 150 && b > 150).collect()
}

#[test]
fn overlays_draw_a_logo_and_a_clock() {
    let scratch = Scratch::new("transcode-overlay");
    let media = scratch.path("media");
    std::fs::create_dir_all(&media).unwrap();
    // A solid red 64x64 logo, drawn 40 px wide at half opacity, 10 px in from the top right.
    let made = std::process::Command::new("ffmpeg").args(["-v", "error", "-f", "lavfi", "-i", "color=c=red:s=64x64", "-frames:v", "1", "-y"]).arg(media.join("logo.png")).status().unwrap();
    assert!(made.success());
    let node = Node::start(&scratch, &[("ESTUARY_INGEST__MEDIA_DIR", media.to_str().unwrap())]);
    // A black picture, so whatever is not black in the rendition was drawn by the overlays.
    let args: Vec<String> = [
        "-hide_banner", "-v", "error", "-re", "-f", "lavfi", "-i", "color=c=black:s=320x240:r=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-c:a", "aac", "-f", "flv",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([node.rtmp_url("live/o")])
    .collect();
    let _publisher = estuary_tests::ffmpeg::spawn(args, &scratch, "publisher");
    node.wait_live("live/o", Duration::from_secs(20));

    // A picture outside the media directory is refused through the API.
    let outside = r#"{"app":"live","stream":"o","renditions":[{"suffix":"_x","video_kbps":300,"overlay":{"image":"/etc/hostname"}}]}"#;
    let refused = http::send(node.ports.api, "POST", "/api/v1/transcodes", &[("Content-Type", "application/json")], outside.as_bytes()).unwrap();
    assert_eq!(refused.status, 400);
    assert!(String::from_utf8_lossy(&refused.body).contains("not a file in ingest.media_dir"), "{}", String::from_utf8_lossy(&refused.body));
    // So is an overlay on a rendition that does not decode the video.
    let copy = r#"{"app":"live","stream":"o","renditions":[{"suffix":"_x","video_kbps":300,"codec":"copy","text":{"text":"x"}}]}"#;
    let refused = http::send(node.ports.api, "POST", "/api/v1/transcodes", &[("Content-Type", "application/json")], copy.as_bytes()).unwrap();
    assert_eq!(refused.status, 400);
    assert!(String::from_utf8_lossy(&refused.body).contains("cannot draw an overlay"), "{}", String::from_utf8_lossy(&refused.body));

    let body = r#"{"app":"live","stream":"o","renditions":[{"suffix":"_branded","height":240,"video_kbps":800,"codec":"source",
        "overlay":{"image":"logo.png","position":"top-right","margin":10,"width":40,"opacity":0.5},
        "text":{"text":"LIVE, cam 1: [clock]","position":"bottom-left","margin":10,"size":24,"color":"white"}}]}"#;
    let started = http::send(node.ports.api, "POST", "/api/v1/transcodes", &[("Content-Type", "application/json")], body.as_bytes()).unwrap();
    assert_eq!(started.status, 200, "{}", String::from_utf8_lossy(&started.body));
    node.wait_live("live/o_branded", Duration::from_secs(40));
    let status = transcodes(&node).into_iter().find(|t| t["output"] == "live/o_branded").expect("transcoder listed");
    assert_eq!(status["codec"], "source (h264)", "{status}");
    assert_eq!((status["overlay"].as_bool(), status["text"].as_bool()), (Some(true), Some(true)), "{status}");

    let (w, h) = (320, 240);
    let source = frame(&node.rtmp_url("live/o"), w, h);
    let branded = frame(&node.rtmp_url("live/o_branded"), w, h);
    // The logo's centre: red at half strength over black; the same place in the source is black.
    let logo_centre = (w - 10 - 20, 10 + 20);
    let (r, g, b) = pixel(&branded, w, logo_centre.0, logo_centre.1);
    assert!((90..=170).contains(&r) && g < 50 && b < 50, "logo pixel {:?} is not half-opaque red", (r, g, b));
    let (r, g, b) = pixel(&source, w, logo_centre.0, logo_centre.1);
    assert!(r < 40 && g < 40 && b < 40, "the source is not black where the logo goes: {:?}", (r, g, b));
    // Away from both overlays the picture stays black.
    let (r, g, b) = pixel(&branded, w, w / 2, h / 2);
    assert!(r < 40 && g < 40 && b < 40, "{:?}", (r, g, b));
    // The text: white pixels in the bottom-left band, none there in the source.
    let band = (10, h - 10 - 30, w - 10, h - 5);
    let drawn = bright(&branded, w, band).iter().filter(|b| **b).count();
    assert!(drawn > 100, "only {drawn} white pixels where the text goes");
    assert_eq!(bright(&source, w, band).iter().filter(|b| **b).count(), 0);
    // The clock runs: a later frame has a digit changed, which redraws dozens of the band's
    // pixels (two keyframes of the same picture differ in a few edge pixels at most).
    let first = bright(&branded, w, band);
    let mut changed = 0;
    let runs = wait_until(Duration::from_secs(20), || {
        let later = frame(&node.rtmp_url("live/o_branded"), w, h);
        changed = first.iter().zip(bright(&later, w, band)).filter(|(a, b)| **a != *b).count();
        changed >= 30
    });
    assert!(runs, "the clock's pixels did not change ({changed} differ at most)");
}
