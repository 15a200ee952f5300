//! Codecs past H.264 and AAC, end to end: a static ffmpeg 9 (PyPI's imageio-ffmpeg, as Debian's
//! ffmpeg 5.1 cannot publish them) sends AV1 and Opus over enhanced RTMP, and the LL-HLS
//! playlist, the DASH manifest and their fMP4 segments carry `av01`/`av1C` and `Opus`/`dOps`
//! tracks that Debian's ffprobe reads and ffmpeg decodes clean, and headless Chromium plays
//! through hls.js and dash.js; the DVR recording
//! plays back over HTTP-MP4 too; an H.264 stream gets an AV1 rendition from the transcoder.
//! One node for the file (DVR on, transcoders on ffmpeg 9).

use estuary_tests::ffmpeg::{decode, modern_ffmpeg, probe_streams, publish, publish_enhanced, stream_of, Process, Source};
use estuary_tests::{http, wait_until, Node, Scratch};
use std::sync::LazyLock;
use std::time::Duration;

struct Shared {
    node: Node,
    scratch: Scratch,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| {
    let scratch = Scratch::new("codecs");
    // Transcoders run the same ffmpeg 9, which publishes AV1 renditions over enhanced RTMP.
    let modern = modern_ffmpeg();
    let node = Node::start(&scratch, &[("ESTUARY_DVR__ENABLED", "true"), ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "1000"), ("ESTUARY_TRANSCODE__FFMPEG", modern.to_str().unwrap())]);
    Shared { node, scratch }
});

/// A live 320x240 25 fps test pattern in AV1 (SVT-AV1, 2 s GOPs) and a tone in Opus 48 kHz
/// stereo, published over enhanced RTMP to `path`.
fn publish_av1_opus(path: &str, name: &str) -> Process {
    let shared = &*SHARED;
    publish_enhanced(&shared.node.rtmp_url(path), &["-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "lp=1"], &["-c:a", "libopus", "-b:a", "64k", "-ac", "2"], &shared.scratch, name)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

#[test]
fn av1_and_opus_over_enhanced_rtmp_play_over_ll_hls_and_dash() {
    let node = &SHARED.node;
    let mut publisher = publish_av1_opus("live/av1", "av1-publisher");
    node.wait_live("live/av1", Duration::from_secs(30));
    let both = wait_until(Duration::from_secs(10), || node.stream_info("live/av1").is_some_and(|i| i["video"]["codec"] == "AV1" && i["audio"]["codec"] == "Opus"));
    assert!(both, "not AV1 and Opus: {:?}\n{}", node.stream_info("live/av1"), publisher.stderr());

    // LL-HLS (packaged on demand: the first request waits for segments).
    let playlist = http::get(node.ports.http, "/live/av1.m3u8").expect("playlist");
    assert_eq!(playlist.status, 200, "{}\nnode log:\n{}", String::from_utf8_lossy(&playlist.body), node.log());
    let playlist = String::from_utf8_lossy(&playlist.body).into_owned();
    assert!(playlist.contains("#EXT-X-PART:"), "{playlist}");
    let init = playlist.split("#EXT-X-MAP:URI=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_else(|| panic!("no EXT-X-MAP in\n{playlist}"));
    let init = http::get(node.ports.http, &format!("/live/{init}")).unwrap();
    assert_eq!(init.status, 200);
    for entry in [&b"av01"[..], b"av1C", b"Opus", b"dOps"] {
        assert_eq!(count(&init.body, entry), 1, "the init segment should hold one {:?} box", String::from_utf8_lossy(entry));
    }

    // DASH: the representations' codecs come from the stream's own configuration.
    assert!(wait_until(Duration::from_secs(20), || http::get(node.ports.http, "/live/av1.mpd").is_ok_and(|r| r.status == 200)), "no MPD:\n{}", node.log());
    let mpd = String::from_utf8_lossy(&http::get(node.ports.http, "/live/av1.mpd").unwrap().body).into_owned();
    assert!(mpd.contains("codecs=\"av01.0.") && mpd.contains("M.08\""), "no AV1 main-profile 8-bit codec string in\n{mpd}");
    assert!(mpd.contains("codecs=\"opus\""), "no Opus codec string in\n{mpd}");

    let urls = [format!("http://127.0.0.1:{}/live/av1.m3u8", node.ports.http), format!("http://127.0.0.1:{}/live/av1.mpd", node.ports.http)];
    for url in &urls {
        let streams = probe_streams(url);
        let video = stream_of(&streams, "video").unwrap_or_else(|| panic!("{url}: no video in {streams:?}"));
        assert_eq!((video["codec_name"].as_str(), video["width"].as_u64(), video["height"].as_u64()), (Some("av1"), Some(320), Some(240)), "{url}: {video}");
        let audio = stream_of(&streams, "audio").unwrap_or_else(|| panic!("{url}: no audio in {streams:?}"));
        assert_eq!((audio["codec_name"].as_str(), audio["sample_rate"].as_str(), audio["channels"].as_u64()), (Some("opus"), Some("48000"), Some(2)), "{url}: {audio}");
    }
    let decoders: Vec<_> = urls.iter().cloned().map(|url| std::thread::spawn(move || (decode(&url, 5), url))).collect();
    for decoder in decoders {
        let ((ok, errors), url) = decoder.join().unwrap();
        assert!(ok && errors.trim().is_empty(), "{url}: decode not clean: {errors}\nnode log:\n{}", node.log());
    }
    // HTTP-TS: MPEG-TS has no AV1 mapping, so the player is refused with the reason.
    let refused = http::get(node.ports.http, "/live/av1.ts").unwrap();
    assert_eq!(refused.status, 406, "{}", String::from_utf8_lossy(&refused.body));
    assert!(String::from_utf8_lossy(&refused.body).contains("no MPEG-TS mapping"), "{}", String::from_utf8_lossy(&refused.body));
    // Opus does have one (private PES data with the Opus registration descriptor): an H.264 +
    // Opus publish plays over HTTP-TS with both tracks, which ffmpeg reads and decodes.
    let _opus_publisher = publish_enhanced(&node.rtmp_url("live/avc-opus"), &["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0"], &["-c:a", "libopus", "-b:a", "64k", "-ac", "2"], &SHARED.scratch, "avc-opus-publisher");
    node.wait_live("live/avc-opus", Duration::from_secs(30));
    let ts = format!("http://127.0.0.1:{}/live/avc-opus.ts", node.ports.http);
    let streams = probe_streams(&ts);
    assert!(stream_of(&streams, "video").is_some_and(|v| v["codec_name"] == "h264"), "{streams:?}");
    let audio = stream_of(&streams, "audio").unwrap_or_else(|| panic!("{ts}: no audio in {streams:?}"));
    assert_eq!((audio["codec_name"].as_str(), audio["channels"].as_u64()), (Some("opus"), Some(2)), "{ts}: {audio}");
    let (ok, errors) = decode(&ts, 5);
    assert!(ok && errors.trim().is_empty(), "{ts}: decode not clean: {errors}");

    // Chromium (its own AV1 decoder) plays both through hls.js and dash.js.
    for (kind, url) in [("hls", &urls[0]), ("dash", &urls[1])] {
        let played = estuary_tests::browser::play(kind, url, 4);
        assert!(played["advanced"].as_f64().unwrap_or(0.0) >= 4.0 && played["width"] == 320, "{kind} in Chromium: {played}");
    }
    assert!(publisher.running(), "the publisher stopped: {}", publisher.stderr());

    // The recording, once the publisher has gone, plays back over HTTP-MP4 with both tracks.
    publisher.interrupt();
    let recordings = || node.api("/api/v1/recordings?app=live&stream=av1")["recordings"].as_array().cloned().unwrap_or_default();
    assert!(wait_until(Duration::from_secs(20), || { let r = recordings(); !r.is_empty() && r.iter().all(|r| r["state"] != "recording") }), "recordings: {:?}\n{}", recordings(), node.log());
    // The whole range as one progressive MP4 (the node redirects to the range it found).
    let url = format!("http://127.0.0.1:{}/dvr/live/av1.mp4", node.ports.http);
    let streams = probe_streams(&url);
    let video = stream_of(&streams, "video").unwrap_or_else(|| panic!("{url}: no video in {streams:?}"));
    assert_eq!((video["codec_name"].as_str(), video["width"].as_u64()), (Some("av1"), Some(320)), "{url}: {video}");
    let audio = stream_of(&streams, "audio").unwrap_or_else(|| panic!("{url}: no audio in {streams:?}"));
    assert_eq!(audio["codec_name"].as_str(), Some("opus"), "{url}: {audio}");
    let (ok, errors) = decode(&url, 60);
    assert!(ok && errors.trim().is_empty(), "{url}: decode not clean: {errors}");
}

#[test]
fn hevc_over_enhanced_rtmp_plays_over_ll_hls_with_its_own_codec_string() {
    let node = &SHARED.node;
    let publisher = publish_enhanced(&node.rtmp_url("live/hevc"), &["-c:v", "libx265", "-preset", "ultrafast", "-bf", "0", "-x265-params", "log-level=error"], &["-c:a", "aac", "-ac", "2"], &SHARED.scratch, "hevc-publisher");
    node.wait_live("live/hevc", Duration::from_secs(30));
    assert!(wait_until(Duration::from_secs(10), || node.stream_info("live/hevc").is_some_and(|i| i["video"]["codec"] == "H265")), "not H.265: {:?}\n{}", node.stream_info("live/hevc"), publisher.stderr());
    let playlist = http::get(node.ports.http, "/live/hevc.m3u8").expect("playlist");
    assert_eq!(playlist.status, 200, "{}", node.log());
    // The MPD names the stream's own profile and level (libx265 Main, level 2 at 320x240 25 fps:
    // general_level_idc 60), not a constant.
    let mpd = String::from_utf8_lossy(&http::get(node.ports.http, "/live/hevc.mpd").unwrap().body).into_owned();
    assert!(mpd.contains("codecs=\"hvc1.1.6.L60."), "no hvc1 codec string from the stream's hvcC in\n{mpd}");
    let url = format!("http://127.0.0.1:{}/live/hevc.m3u8", node.ports.http);
    let streams = probe_streams(&url);
    let video = stream_of(&streams, "video").unwrap_or_else(|| panic!("no video in {streams:?}"));
    assert_eq!((video["codec_name"].as_str(), video["codec_tag_string"].as_str(), video["width"].as_u64()), (Some("hevc"), Some("hvc1"), Some(320)), "{video}");
    let (ok, errors) = decode(&url, 5);
    assert!(ok && errors.trim().is_empty(), "{url}: decode not clean: {errors}");
}

/// The `t` of the first `S` element of `content`'s representation in `period` (an MPD's text
/// split at `<Period `).
fn first_time(period: &str, content: &str) -> Option<u64> {
    let set = period.split(&format!("contentType=\"{content}\"")).nth(1)?;
    let at = set.find("<S t=\"")? + 6;
    set[at..].split('"').next()?.parse().ok()
}

/// An attribute of the first element in `text` that has it.
fn attribute(text: &str, name: &str) -> Option<String> {
    text.split(&format!(" {name}=\"")).nth(1).and_then(|rest| rest.split('"').next()).map(str::to_string)
}

/// The video representation of a period.
fn video_of(period: &str) -> &str {
    period.split("contentType=\"video\"").nth(1).and_then(|rest| rest.split("</AdaptationSet>").next()).unwrap_or("")
}

#[test]
fn a_codec_change_on_republish_gets_a_new_dash_period_and_hls_discontinuity() {
    codec_change(&SHARED.node, &SHARED.scratch, "change", true);
}

#[test]
fn dash_files_on_disk_get_a_new_period_on_a_codec_change_too() {
    // `dash.always`: the DASH muxer writing files from the publish on, not the on-demand package.
    let scratch = Scratch::new("codecs-dash-always");
    // A grace period the second publisher reaches on a loaded machine (ffmpeg 9 starting an
    // HEVC encoder took over the 1 s this test once gave it, and the stream ended between).
    let node = Node::start(&scratch, &[("ESTUARY_DASH__ALWAYS", "true"), ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "10000")]);
    codec_change(&node, &scratch, "change", false);
    // The new version's initialization segments are files of their own (the old muxer
    // rewrote `-init.mp4` in place).
    let dir = scratch.path("estuary-data/dash/live");
    let names: Vec<String> = std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    assert!(names.iter().any(|n| n == "change-video-init-v1.mp4") && names.iter().any(|n| n == "change-audio-init-v1.mp4"), "{names:?}");
}

/// Publishes `stream` in H.264, republishes it in H.265 within the grace period, and checks
/// the MPD across the change: it always lists video, then has a period per codec whose first
/// segments decode behind their own initialization segments, and after the old period leaves
/// the window the new one keeps its place. With `ll_hls`, the LL-HLS playlist too.
fn codec_change(node: &Node, scratch: &Scratch, stream: &str, ll_hls: bool) {
    let path = format!("live/{stream}");
    let mut first = publish(&node.rtmp_url(&path), &Source::default(), scratch, &format!("{stream}-first"));
    node.wait_live(&path, Duration::from_secs(30));
    let mpd_text = || {
        let mpd = http::get(node.ports.http, &format!("/{path}.mpd")).expect("MPD");
        (mpd.status, String::from_utf8_lossy(&mpd.body).into_owned())
    };
    assert!(wait_until(Duration::from_secs(20), || mpd_text().1.contains("codecs=\"avc1.")), "{}", mpd_text().1);
    // The same stream again within the grace period, now in H.265 over enhanced RTMP.
    first.kill();
    let _second = publish_enhanced(&node.rtmp_url(&path), &["-c:v", "libx265", "-preset", "ultrafast", "-bf", "0", "-x265-params", "log-level=error"], &["-c:a", "aac", "-ac", "2"], scratch, &format!("{stream}-second"));
    // Asked for at any moment of the switch (before the first segment of the new codec is
    // complete too), the MPD lists the stream, never no representation at all; then it has a
    // period of each codec, the H.265 one last.
    let mut polls = 0;
    let text = loop {
        polls += 1;
        let (status, text) = mpd_text();
        assert!(status == 200 && text.contains("<Representation id=\"video\""), "poll {polls}: {status} {text}");
        if text.contains("codecs=\"hvc1.") || polls > 600 {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let periods: Vec<&str> = text.split("<Period ").skip(1).collect();
    assert_eq!(periods.len(), 2, "a period for each codec while the window holds both:\n{text}\n{}", node.log());
    assert!(periods[0].contains("codecs=\"avc1.") && periods[1].contains("codecs=\"hvc1."), "{text}");
    // The H.265 period starts after the H.264 one began, on the same wall clock.
    let start_s: f64 = periods[1].split("start=\"PT").nth(1).and_then(|rest| rest.split('S').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert!(start_s > 0.0, "{text}");
    let inits: Vec<String> = periods.iter().map(|p| attribute(video_of(p), "initialization").unwrap_or_else(|| panic!("no initialization in {p}"))).collect();
    assert_ne!(inits[0], inits[1], "each period has its own initialization segment: {text}");
    // Each period's first video segment, behind its own initialization segment, decodes clean
    // in its codec: nothing was rewritten in place.
    for (index, (period, codec)) in [(periods[0], "h264"), (periods[1], "hevc")].into_iter().enumerate() {
        let video = video_of(period);
        let time = first_time(period, "video").unwrap_or_else(|| panic!("no timeline in {period}"));
        let media = attribute(video, "media").expect("media template").replace("$Time$", &time.to_string());
        let init = http::get(node.ports.http, &format!("/live/{}", inits[index])).expect("init");
        let media = http::get(node.ports.http, &format!("/live/{media}")).expect("segment");
        assert_eq!((init.status, media.status), (200, 200), "{} at {time}: {text}", inits[index]);
        let file = scratch.path(&format!("{stream}-{index}.mp4"));
        std::fs::write(&file, [init.body.as_slice(), media.body.as_slice()].concat()).expect("write");
        let streams = probe_streams(&file.display().to_string());
        let video = stream_of(&streams, "video").unwrap_or_else(|| panic!("no video in period {index}: {streams:?}"));
        assert_eq!(video["codec_name"].as_str(), Some(codec), "{video}");
        let (ok, errors) = decode(&file.display().to_string(), 1);
        assert!(ok && errors.trim().is_empty(), "period {index} does not decode clean: {errors}");
    }
    if ll_hls {
        // LL-HLS: the new initialization segment after a discontinuity.
        let playlist = String::from_utf8_lossy(&http::get(node.ports.http, &format!("/{path}.m3u8")).expect("playlist").body).into_owned();
        let new = attribute(periods[1], "id").expect("period id");
        assert!(playlist.contains("#EXT-X-DISCONTINUITY") && playlist.contains(&format!("#EXT-X-MAP:URI=\"{stream}-init-{new}.mp4\"")), "{playlist}");
    }
    // A DASH player of the MPD plays on, in H.265.
    let url = format!("http://127.0.0.1:{}/{path}.mpd", node.ports.http);
    let (ok, errors) = decode(&url, 4);
    assert!(ok && errors.trim().is_empty(), "{url}: {errors}");
    // When the H.264 segments have left the window, the H.265 period stays where it was
    // published, and so does the availability start (DASH-IF IOP: neither may change).
    let (ast, new_start) = (attribute(&text, "availabilityStartTime"), attribute(periods[1], "start"));
    let alone = wait_until(Duration::from_secs(40), || mpd_text().1.matches("<Period ").count() == 1);
    let text = mpd_text().1;
    assert!(alone, "the H.264 period never left:\n{text}");
    assert_eq!((attribute(&text, "availabilityStartTime"), attribute(&text, "start")), (ast, new_start), "{text}");
    let (ok, errors) = decode(&url, 4);
    assert!(ok && errors.trim().is_empty(), "{url} after the old period left: {errors}");
}

#[test]
fn av1_plays_over_whep_in_chromium_as_av1() {
    let node = &SHARED.node;
    let publisher = publish_av1_opus("live/av1whep", "av1-whep-publisher");
    node.wait_live("live/av1whep", Duration::from_secs(30));
    assert!(wait_until(Duration::from_secs(10), || node.stream_info("live/av1whep").is_some_and(|i| i["video"]["codec"] == "AV1")), "{:?}\n{}", node.stream_info("live/av1whep"), publisher.stderr());
    // Chromium offers AV1 among its codecs: the stream goes out as it is, no fallback.
    let (result, success, stderr) = estuary_tests::browser::webrtc(node.ports.api, "live", "av1whep", 5, "none");
    assert_eq!(result["play"]["status"], 201, "{result}\n{}", node.log());
    assert_eq!(result["play"]["codec"], "video/AV1", "{result}");
    let (start, end) = (result["play"]["frames_start"].as_u64().unwrap_or(0), result["play"]["frames_end"].as_u64().unwrap_or(0));
    assert!(end > start + 25, "the played video's frame counter must advance: {result}");
    assert_eq!((result["play"]["width"].as_u64(), result["play"]["height"].as_u64()), (Some(320), Some(240)), "{result}");
    assert!(success, "{stderr}");
    assert!(node.stream_info("live/av1whep_h264").is_none(), "no fallback rendition for a player that decodes AV1");
}

#[test]
fn chromium_publishes_av1_over_whip_and_it_plays_over_whep_and_ll_hls() {
    let node = &SHARED.node;
    let api = node.ports.api;
    // Chromium publishes its fake camera in AV1 only, and plays the stream back over WHEP.
    let browser = std::thread::spawn(move || estuary_tests::browser::webrtc(api, "live", "whipav1", 15, "video/AV1"));
    let av1 = wait_until(Duration::from_secs(40), || node.stream_info("live/whipav1").is_some_and(|i| i["video"]["codec"] == "AV1"));
    assert!(av1, "no AV1 stream from the WHIP publisher: {:?}\n{}", node.stream_info("live/whipav1"), node.log());
    assert!(node.log().contains("video=AV1"), "{}", node.log());
    // The other outputs carry it as it is: LL-HLS in fMP4, read and decoded by Debian's ffmpeg.
    let url = format!("http://127.0.0.1:{}/live/whipav1.m3u8", node.ports.http);
    let streams = probe_streams(&url);
    let video = stream_of(&streams, "video").unwrap_or_else(|| panic!("no video in {streams:?}"));
    assert_eq!((video["codec_name"].as_str(), video["width"].as_u64(), video["height"].as_u64()), (Some("av1"), Some(320), Some(240)), "{video}");
    assert!(stream_of(&streams, "audio").is_some_and(|a| a["codec_name"] == "aac"), "Opus from WebRTC is AAC for the other outputs: {streams:?}");
    let (ok, errors) = estuary_tests::ffmpeg::decode_vfr(&url, 3);
    assert!(ok && errors.trim().is_empty(), "{url}: {errors}");
    let (result, success, stderr) = browser.join().expect("browser thread");
    assert_eq!(result["publish"]["status"], 201, "{result}");
    assert_eq!(result["play"]["codec"], "video/AV1", "{result}");
    let (start, end) = (result["play"]["frames_start"].as_u64().unwrap_or(0), result["play"]["frames_end"].as_u64().unwrap_or(0));
    assert!(end > start + 25, "the played video's frame counter must advance: {result}");
    assert!(success, "{stderr}");
}

#[test]
fn an_h264_stream_gets_an_av1_rendition() {
    let node = &SHARED.node;
    let _publisher = publish(&node.rtmp_url("live/ladder"), &Source::default(), &SHARED.scratch, "ladder-publisher");
    node.wait_live("live/ladder", Duration::from_secs(20));
    let body = r#"{"app":"live","stream":"ladder","renditions":[{"suffix":"_av1","height":180,"video_kbps":300,"codec":"av1"}]}"#;
    let started = http::send(node.ports.api, "POST", "/api/v1/transcodes", &[("Content-Type", "application/json")], body.as_bytes()).unwrap();
    assert_eq!(started.status, 200, "{}", String::from_utf8_lossy(&started.body));
    let live = wait_until(Duration::from_secs(40), || node.stream_info("live/ladder_av1").is_some_and(|i| i["video"]["codec"] == "AV1"));
    assert!(live, "no AV1 rendition: {:?}\n{}", node.api("/api/v1/transcodes"), node.log());
    let transcodes = node.api("/api/v1/transcodes");
    assert!(transcodes["transcodes"].as_array().unwrap().iter().any(|t| t["output"] == "live/ladder_av1" && t["codec"] == "av1"), "{transcodes}");
    let url = format!("http://127.0.0.1:{}/live/ladder_av1.m3u8", node.ports.http);
    let streams = probe_streams(&url);
    let video = stream_of(&streams, "video").unwrap_or_else(|| panic!("no video in {streams:?}"));
    assert_eq!((video["codec_name"].as_str(), video["height"].as_u64()), (Some("av1"), Some(180)), "{video}");
    assert!(stream_of(&streams, "audio").is_some_and(|a| a["codec_name"] == "aac"), "{streams:?}");
    let (ok, errors) = decode(&url, 5);
    assert!(ok && errors.trim().is_empty(), "{url}: decode not clean: {errors}");
}
