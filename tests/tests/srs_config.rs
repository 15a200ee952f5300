//! SRS drop-in: the node started with an `srs.conf` written as SRS's documentation writes it,
//! and separately with `SRS_*` variables only, checked the way SRS's docs say to check each
//! feature (publish with ffmpeg, play with ffprobe, files on disk, hook bodies).

use estuary_tests::ffmpeg::{probe_streams, publish, stream_of, Source};
use estuary_tests::hook_server::HookServer;
use estuary_tests::{http, wait_until, Node, Ports, Scratch};
use std::time::Duration;

/// Every listener of the node on `ports`, in srs.conf syntax (loopback only).
fn listeners(p: &Ports) -> String {
    format!(
        "listen 127.0.0.1:{};\nhttp_api {{ enabled on; listen 127.0.0.1:{}; }}\nhttp_server {{ enabled on; listen 127.0.0.1:{}; dir ./objs/nginx/html; }}\nrtc_server {{ enabled on; listen 127.0.0.1:{}; candidate $CANDIDATE; }}\nsrt_server {{ enabled on; listen 127.0.0.1:{}; }}\nstream_caster {{ enabled on; caster gb28181; output rtmp://127.0.0.1/live/[stream]; listen 127.0.0.1:{}; sip {{ enabled on; listen 127.0.0.1:{}; }} }}\n",
        p.rtmp, p.api, p.http, p.rtc, p.srt, p.gb_media, p.sip
    )
}

#[test]
fn an_srs_conf_runs_rtmp_http_flv_hls_dvr_and_hooks() {
    let scratch = Scratch::new("srs-conf");
    let hooks = HookServer::start(|_| r#"{"code":0}"#.to_string());
    let hook_url = hooks.url("/api/v1/streams");
    let conf = move |p: &Ports| {
        format!(
            "# srs.conf as SRS's docs write it\n{}pid ./objs/srs.pid;\ndaemon off;\nsrs_log_tank console;\nvhost __defaultVhost__ {{\n    hls {{\n        enabled on;\n        hls_fragment 1;\n        hls_window 6;\n    }}\n    http_remux {{\n        enabled on;\n        mount [vhost]/[app]/[stream].flv;\n    }}\n    dvr {{\n        enabled on;\n        dvr_plan session;\n        dvr_path ./objs/nginx/html/[app]/[stream].[timestamp].flv;\n    }}\n    http_hooks {{\n        enabled on;\n        on_publish {hook_url};\n        on_unpublish {hook_url};\n    }}\n}}\n",
            listeners(p)
        )
    };
    let node = Node::start_srs(&scratch, Some(&conf), &|_| Vec::new());
    // What SRS would do and Estuary does not is named at start-up, once each, with its line.
    assert!(node.wait_log("`pid` is not applied", Duration::from_secs(5)), "{}", node.log());
    assert!(node.log().contains("srs.conf line 4: `http_server.dir`"), "{}", node.log());
    assert!(node.log().contains("srs.conf line 8: `pid`"), "{}", node.log());
    assert_eq!(node.log().matches("`pid`").count(), 1, "{}", node.log());

    let mut publisher = publish(&node.rtmp_url("live/livestream"), &Source { duration: Some(8.0), ..Source::default() }, &scratch, "publisher");
    node.wait_live("live/livestream", Duration::from_secs(20));
    // HTTP-FLV at SRS's mount, HLS at SRS's URL.
    let flv = probe_streams(&node.flv_url("live/livestream"));
    assert!(stream_of(&flv, "video").is_some() && stream_of(&flv, "audio").is_some(), "HTTP-FLV: {flv:?}");
    let playlist = format!("http://127.0.0.1:{}/live/livestream.m3u8", node.ports.http);
    assert!(wait_until(Duration::from_secs(15), || http::get(node.ports.http, "/live/livestream.m3u8").is_ok_and(|r| r.status == 200 && String::from_utf8_lossy(&r.body).matches("#EXTINF").count() >= 2)), "no HLS playlist");
    let text = String::from_utf8_lossy(&http::get(node.ports.http, "/live/livestream.m3u8").expect("playlist").body).into_owned();
    // hls_fragment 1: segments of about a second (whole GOPs of the 1 s test source).
    let longest = text.lines().filter_map(|l| l.strip_prefix("#EXTINF:")).filter_map(|d| d.trim_end_matches(',').split(',').next()?.parse::<f64>().ok()).fold(0.0, f64::max);
    assert!(longest > 0.0 && longest <= 2.5, "segments not near hls_fragment 1:\n{text}");
    let hls = probe_streams(&playlist);
    assert!(stream_of(&hls, "video").is_some(), "HLS: {hls:?}");
    // on_publish reached the hook with SRS's body.
    assert!(wait_until(Duration::from_secs(5), || !hooks.calls_of("on_publish").is_empty()), "no on_publish: {:?}", hooks.calls());
    let body = &hooks.calls_of("on_publish")[0];
    assert_eq!(body["app"], "live");
    assert_eq!(body["stream"], "livestream");

    // dvr_plan session: one file for the publish.
    assert!(publisher.wait(Duration::from_secs(60)).is_some(), "publisher did not finish");
    assert!(wait_until(Duration::from_secs(15), || !hooks.calls_of("on_unpublish").is_empty()), "no on_unpublish: {:?}", hooks.calls());
    let recordings = || node.api("/api/v1/recordings?app=live&stream=livestream");
    assert!(wait_until(Duration::from_secs(15), || recordings()["recordings"].as_array().is_some_and(|r| r.len() == 1 && r[0]["state"] != "recording")), "{}", recordings());
    // An .flv dvr_path records FLV, as SRS does, at the path's pattern under dvr.dir.
    let path = recordings()["recordings"][0]["file"].as_str().unwrap_or_default().to_string();
    assert!(path.starts_with("live/livestream.") && path.ends_with(".flv"), "{path}");
    let on_disk = node.dir.join("estuary-data/dvr").join(&path);
    let recorded = probe_streams(&on_disk.display().to_string());
    assert!(stream_of(&recorded, "video").is_some(), "{}: {recorded:?}", on_disk.display());
}

#[test]
fn srs_variables_alone_configure_the_node() {
    let scratch = Scratch::new("srs-env");
    let env = |p: &Ports| -> Vec<(String, String)> {
        [
            ("SRS_LISTEN", format!("127.0.0.1:{}", p.rtmp)),
            ("SRS_HTTP_API_LISTEN", format!("127.0.0.1:{}", p.api)),
            ("SRS_HTTP_SERVER_LISTEN", format!("127.0.0.1:{}", p.http)),
            ("SRS_RTC_SERVER_ENABLED", "off".to_string()),
            ("SRS_SRT_SERVER_LISTEN", format!("127.0.0.1:{}", p.srt)),
            ("SRS_STREAM_CASTER_ENABLED", "off".to_string()),
            ("SRS_VHOST_HLS_ENABLED", "on".to_string()),
            ("SRS_VHOST_HLS_HLS_FRAGMENT", "1".to_string()),
            ("SRS_VHOST_HLS_HLS_WINDOW", "3".to_string()),
            ("SRS_VHOST_PLAY_GOP_CACHE", "off".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    let node = Node::start_srs(&scratch, None, &env);
    let _publisher = publish(&node.rtmp_url("live/envstream"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/envstream", Duration::from_secs(20));
    let flv = probe_streams(&node.flv_url("live/envstream"));
    assert!(stream_of(&flv, "video").is_some(), "HTTP-FLV: {flv:?}");
    // hls_window 3 s of 1 s fragments: the playlist keeps 3 segments.
    assert!(wait_until(Duration::from_secs(20), || http::get(node.ports.http, "/live/envstream.m3u8").is_ok_and(|r| String::from_utf8_lossy(&r.body).matches("#EXTINF").count() == 3)), "playlist: {:?}", http::get(node.ports.http, "/live/envstream.m3u8").map(|r| String::from_utf8_lossy(&r.body).into_owned()));
    // An unknown SRS variable is named, not ignored silently.
    drop(node);
    let scratch = Scratch::new("srs-env-unknown");
    let node = Node::start_srs(&scratch, None, &|p| {
        let mut vars = env(p);
        vars.push(("SRS_VHOST_NO_SUCH_THING".to_string(), "on".to_string()));
        vars
    });
    assert!(node.wait_log("SRS_VHOST_NO_SUCH_THING is not an SRS setting Estuary applies", Duration::from_secs(5)), "{}", node.log());
}

#[test]
fn srs_t_checks_the_file_and_names_the_bad_line() {
    let scratch = Scratch::new("srs-t");
    let good = scratch.path("good.conf");
    std::fs::write(&good, "listen 1935;\npid ./objs/srs.pid;\nvhost __defaultVhost__ {\n    hls { enabled on; }\n}\n").unwrap();
    let out = std::process::Command::new(estuary_tests::estuary_bin()).args(["-t", "-c"]).arg(&good).output().expect("estuary -t");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("line 2: `pid`") && text.contains("configuration is valid"), "{text}");
    let bad = scratch.path("bad.conf");
    std::fs::write(&bad, "listen 1935;\nvhost __defaultVhost__ {\n    hls { enabled on; }\n").unwrap();
    let out = std::process::Command::new(estuary_tests::estuary_bin()).args(["-t", "-c"]).arg(&bad).output().expect("estuary -t");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a malformed file passed -t");
    assert!(err.contains("bad.conf line 2") && err.contains("never closed"), "{err}");
    let wrong = scratch.path("wrong.conf");
    std::fs::write(&wrong, "listen 1935;\nvhost __defaultVhost__ {\n    dvr { dvr_plan weekly; }\n}\n").unwrap();
    let out = std::process::Command::new(estuary_tests::estuary_bin()).args(["-t", "-c"]).arg(&wrong).output().expect("estuary -t");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("line 3") && err.contains("session or segment"), "{err}");
}

#[test]
fn the_srs_page_carries_the_table_the_code_prints() {
    let out = std::process::Command::new(estuary_tests::estuary_bin()).arg("--srs-table").output().expect("estuary --srs-table");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && table.lines().count() > 20, "{table}");
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SRS.md")).expect("docs/SRS.md");
    assert!(page.contains(&table), "docs/SRS.md is not up to date: put the output of `estuary --srs-table` in it");
}

/// The longest `#EXTINF` of a playlist, in seconds.
fn longest_segment(playlist: &str) -> f64 {
    playlist.lines().filter_map(|l| l.strip_prefix("#EXTINF:")).filter_map(|d| d.trim_end_matches(',').split(',').next()?.parse::<f64>().ok()).fold(0.0, f64::max)
}

/// The playlist of `app_stream` once it has `segments` segments.
fn playlist_with(node: &Node, app_stream: &str, segments: usize) -> String {
    let path = format!("/{app_stream}.m3u8");
    let text = || http::get(node.ports.http, &path).map(|r| String::from_utf8_lossy(&r.body).into_owned()).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(20), || text().matches("#EXTINF").count() >= segments), "{path} never had {segments} segments: {}", text());
    text()
}

/// The ids of the clients of `app_stream`, sorted.
fn client_ids(node: &Node, app_stream: &str) -> Vec<String> {
    let mut ids: Vec<String> = node.api("/api/v1/clients?count=1000")["clients"].as_array().into_iter().flatten().filter(|c| c["stream"] == app_stream).filter_map(|c| c["id"].as_str().map(str::to_string)).collect();
    ids.sort();
    ids
}

#[test]
fn reload_by_sighup_and_by_the_api_keeps_everyone_connected_and_applies_to_the_next_publish() {
    let scratch = Scratch::new("srs-reload");
    let hooks: Vec<HookServer> = (0..3).map(|_| HookServer::start(|_| r#"{"code":0}"#.to_string())).collect();
    let urls: Vec<String> = hooks.iter().map(|h| h.url("/api/v1/streams")).collect();
    let conf = |p: &Ports, rtmp: u16, hook: &str, fragment: u32| {
        let listeners = listeners(p).replacen(&format!("listen 127.0.0.1:{};", p.rtmp), &format!("listen 127.0.0.1:{rtmp};"), 1).replacen("http_api { enabled on;", "http_api { enabled on; raw_api { enabled on; allow_reload on; }", 1);
        format!("{listeners}vhost __defaultVhost__ {{\n    hls {{ enabled on; hls_fragment {fragment}; hls_window 30; }}\n    http_hooks {{ enabled on; on_publish {hook}; }}\n}}\n")
    };
    let first = {
        let url = urls[0].clone();
        move |p: &Ports| conf(p, p.rtmp, &url, 3)
    };
    let node = Node::start_srs(&scratch, Some(&first), &|_| Vec::new());
    let file = scratch.path("srs.conf");
    let ports = node.ports;

    // A publisher, an HTTP-FLV player and a WHEP player, connected across every reload below.
    let mut publisher = publish(&node.rtmp_url("live/keep"), &Source { duration: Some(90.0), bframes: 0, gop: 25, ..Source::default() }, &scratch, "publisher");
    node.wait_live("live/keep", Duration::from_secs(20));
    let recording = scratch.path("keep.flv");
    let mut flv_player = estuary_tests::ffmpeg::record(&node.flv_url("live/keep"), &recording, Some(80.0), &scratch, "flv-player");
    let whep_url = format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=keep", ports.api);
    let whep = std::thread::spawn(move || estuary_tests::aiortc::whep_play(&whep_url, 50, 1));
    assert!(wait_until(Duration::from_secs(20), || client_ids(&node, "live/keep").len() == 3), "not all three connected: {}", node.api("/api/v1/clients"));
    let connected = client_ids(&node, "live/keep");
    assert!(wait_until(Duration::from_secs(5), || hooks[0].calls_of("on_publish").len() == 1), "{:?}", hooks[0].calls());
    // hls_fragment 3: segments of about 3 s (the test source has a keyframe every second).
    assert!(longest_segment(&playlist_with(&node, "live/keep", 1)) > 2.5);

    // SIGHUP after the hook URL and hls_fragment changed: the next publish uses both.
    std::fs::write(&file, conf(&ports, ports.rtmp, &urls[1], 1)).unwrap();
    node.hangup();
    assert!(node.wait_log("configuration reloaded", Duration::from_secs(10)), "{}", node.log());
    assert!(node.log().contains("hls.fragment_ms") && node.log().contains("hooks.on_publish"), "the reload did not name what changed:\n{}", node.log());
    let mut next = publish(&node.rtmp_url("live/next"), &Source { duration: Some(8.0), bframes: 0, gop: 25, ..Source::default() }, &scratch, "next");
    assert!(wait_until(Duration::from_secs(15), || hooks[1].calls_of("on_publish").iter().any(|b| b["stream"] == "next")), "the new hook URL was not called: {:?}", hooks[1].calls());
    assert!(hooks[0].calls_of("on_publish").iter().all(|b| b["stream"] != "next"), "the old hook URL was still called");
    let next_playlist = playlist_with(&node, "live/next", 3);
    assert!(longest_segment(&next_playlist) <= 1.5, "the next publish does not use hls_fragment 1:\n{next_playlist}");
    // The stream published before the reload keeps the segmenting it started with.
    let keep_playlist = playlist_with(&node, "live/keep", 3);
    assert!(longest_segment(&keep_playlist) > 2.5, "the running publish changed its segments:\n{keep_playlist}");
    assert!(next.wait(Duration::from_secs(30)).is_some(), "the second publisher did not finish");

    // The API after another change, with a listen address that needs a restart.
    std::fs::write(&file, conf(&ports, estuary_tests::free_port(), &urls[2], 1)).unwrap();
    let answer = http::get(ports.api, "/api/v1/raw?rpc=reload").expect("reload through the API");
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    assert_eq!((answer.status, body["code"].as_i64()), (200, Some(0)), "{body}");
    assert_eq!(body["data"]["applied"], serde_json::json!(["hooks.on_publish"]), "{body}");
    assert_eq!(body["data"]["restart_required"], serde_json::json!(["rtmp.listen"]), "{body}");
    // RTMP stays on its port; the hook in effect is the third.
    let mut third = publish(&node.rtmp_url("live/third"), &Source { duration: Some(3.0), bframes: 0, gop: 25, ..Source::default() }, &scratch, "third");
    assert!(wait_until(Duration::from_secs(15), || hooks[2].calls_of("on_publish").iter().any(|b| b["stream"] == "third")), "{:?}", hooks[2].calls());
    assert!(third.wait(Duration::from_secs(30)).is_some_and(|s| s.success()), "{}", third.stderr());

    // A file that does not parse: both ways refused with the reason, the running configuration stays.
    std::fs::write(&file, format!("{}vhost __defaultVhost__ {{\n    http_hooks {{ enabled on; on_publish {} }}\n}}\n", listeners(&ports), urls[0])).unwrap();
    let answer = http::get(ports.api, "/api/v1/raw?rpc=reload").expect("reload through the API");
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    assert!(answer.status == 400 && text.contains("srs.conf line") && text.contains("running configuration stays"), "{} {text}", answer.status);
    let fetched = node.api("/api/v1/raw?rpc=reload-fetch");
    assert_eq!(fetched["data"]["err"], 1, "{fetched}");
    node.hangup();
    assert!(wait_until(Duration::from_secs(10), || node.log().matches("configuration reload refused").count() == 2), "{}", node.log());
    let mut fourth = publish(&node.rtmp_url("live/fourth"), &Source { duration: Some(3.0), bframes: 0, gop: 25, ..Source::default() }, &scratch, "fourth");
    assert!(wait_until(Duration::from_secs(15), || hooks[2].calls_of("on_publish").iter().any(|b| b["stream"] == "fourth")), "the running hook changed after a refused reload: {:?} {:?}", hooks[0].calls(), hooks[2].calls());
    assert!(fourth.wait(Duration::from_secs(30)).is_some_and(|s| s.success()), "{}", fourth.stderr());

    // Nobody was disconnected: the same three clients, the publisher still running.
    assert_eq!(client_ids(&node, "live/keep"), connected, "{}", node.api("/api/v1/clients"));
    assert!(publisher.running(), "the publisher stopped: {}", publisher.stderr());
    assert!(flv_player.running(), "the HTTP-FLV player stopped: {}", flv_player.stderr());
    let whep = whep.join().expect("WHEP player");
    // 25 fps for 50 s, less start-up.
    assert!(whep[0]["connected"] == true && whep[0]["error"].is_null() && whep[0]["video_frames"].as_u64().unwrap_or(0) > 25 * 40, "{}", whep[0]);
    flv_player.interrupt();
    let file = recording.display().to_string();
    let (ok, errors) = estuary_tests::ffmpeg::decode(&file, 120);
    assert!(ok && errors.trim().is_empty(), "the HTTP-FLV player's recording: {errors}");
    let video: Vec<f64> = estuary_tests::ffmpeg::probe_packets(&file, None).into_iter().filter(|p| p.codec_type == "video").filter_map(|p| p.dts).collect();
    let worst = video.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, f64::max);
    assert!(video.len() > 25 * 30 && worst < 0.5, "{file}: {} video packets, largest step {worst} s", video.len());
    publisher.kill();
}

#[test]
fn estuary_toml_reloads_through_the_api_and_refuses_an_invalid_file() {
    let scratch = Scratch::new("toml-reload");
    let hooks: Vec<HookServer> = (0..2).map(|_| HookServer::start(|_| r#"{"code":0}"#.to_string())).collect();
    let toml = |p: &Ports, hook: &str, extra: &str| {
        format!(
            "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[api]\nlisten = \"127.0.0.1:{}\"\n[srt]\nenabled = false\n[rtc]\nenabled = false\n[hooks]\non_publish = [\"{hook}\"]\n{extra}",
            p.rtmp, p.http, p.api
        )
    };
    let first = {
        let url = hooks[0].url("/hook");
        move |p: &Ports| toml(p, &url, "")
    };
    let node = Node::start_toml(&scratch, &first);
    let file = scratch.path("estuary.toml");
    let _publisher = publish(&node.rtmp_url("live/a"), &Source { bframes: 0, ..Source::default() }, &scratch, "a");
    node.wait_live("live/a", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || hooks[0].calls_of("on_publish").len() == 1), "{:?}", hooks[0].calls());

    // The hook and the log level change through the API.
    std::fs::write(&file, toml(&node.ports, &hooks[1].url("/hook"), "[log]\nlevel = \"debug\"\n")).unwrap();
    // Not from a page of another origin (an <img> on a page of this host's other port), even
    // on this machine; a browser says where its request comes from.
    let from_a_page = http::send(node.ports.api, "GET", "/api/v1/raw?rpc=reload", &[("Sec-Fetch-Site", "same-site"), ("Sec-Fetch-Mode", "no-cors")], b"").expect("reload");
    assert_eq!(from_a_page.status, 403, "{}", String::from_utf8_lossy(&from_a_page.body));
    assert!(!node.log().contains("configuration reloaded"), "a page reloaded the node");
    let answer = http::get(node.ports.api, "/api/v1/raw?rpc=reload").expect("reload");
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    assert_eq!(body["data"]["applied"], serde_json::json!(["hooks.on_publish", "log.level"]), "{body}");
    let _second = publish(&node.rtmp_url("live/b"), &Source { bframes: 0, ..Source::default() }, &scratch, "b");
    node.wait_live("live/b", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || hooks[1].calls_of("on_publish").len() == 1), "{:?}", hooks[1].calls());
    assert!(node.log().contains(" DEBUG "), "log.level debug was not applied:\n{}", node.log());

    // An unknown key is refused with its name; the running hook stays.
    std::fs::write(&file, toml(&node.ports, &hooks[0].url("/hook"), "[hls]\nfragmnt_ms = 1000\n")).unwrap();
    let answer = http::get(node.ports.api, "/api/v1/raw?rpc=reload").expect("reload");
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    assert!(answer.status == 400 && text.contains("fragmnt_ms"), "{} {text}", answer.status);
    let _third = publish(&node.rtmp_url("live/c"), &Source { bframes: 0, ..Source::default() }, &scratch, "c");
    node.wait_live("live/c", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || hooks[1].calls_of("on_publish").len() == 2), "{:?}", hooks[1].calls());
    assert_eq!(hooks[0].calls_of("on_publish").len(), 1, "the refused file's hook was used");
}

#[test]
fn a_reload_applies_to_the_next_fallback_rendition() {
    let scratch = Scratch::new("fallback-reload");
    let toml = |p: &Ports, fallback: bool| {
        format!(
            "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[api]\nlisten = \"127.0.0.1:{}\"\n[srt]\nenabled = false\n[rtc]\nenabled = false\n[transcode]\nfallback = {fallback}\n",
            p.rtmp, p.http, p.api
        )
    };
    let node = Node::start_toml(&scratch, &|p| toml(p, true));
    // An H.265 stream, from ffmpeg 9 over enhanced RTMP.
    let _publisher = estuary_tests::ffmpeg::publish_enhanced(&node.rtmp_url("live/hevc"), &["-c:v", "libx265", "-preset", "ultrafast", "-bf", "0", "-x265-params", "log-level=error"], &["-c:a", "aac"], &scratch, "hevc");
    node.wait_live("live/hevc", Duration::from_secs(30));
    assert!(wait_until(Duration::from_secs(10), || node.stream_info("live/hevc").is_some_and(|i| i["video"]["codec"] == "H265")), "{:?}", node.stream_info("live/hevc"));
    // Fallback renditions turned off in the file and reloaded: the next player asking for
    // H.264 is told so, and no transcoder starts.
    std::fs::write(scratch.path("estuary.toml"), toml(&node.ports, false)).unwrap();
    let answer = http::get(node.ports.api, "/api/v1/raw?rpc=reload").expect("reload");
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    assert_eq!(body["data"]["applied"], serde_json::json!(["transcode.fallback"]), "{body}");
    let refused = http::get(node.ports.http, "/live/hevc.flv?codec=h264").expect("play");
    let text = String::from_utf8_lossy(&refused.body).into_owned();
    assert!(refused.status == 503 && text.contains("transcode.fallback"), "{} {text}", refused.status);
    assert!(node.api("/api/v1/transcodes")["transcodes"].as_array().is_some_and(|t| t.is_empty()), "{}", node.api("/api/v1/transcodes"));
}
