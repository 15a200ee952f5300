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
            "# srs.conf as SRS's docs write it\n{}max_connections 1000;\ndaemon off;\nsrs_log_tank console;\nvhost __defaultVhost__ {{\n    hls {{\n        enabled on;\n        hls_fragment 1;\n        hls_window 6;\n    }}\n    http_remux {{\n        enabled on;\n        mount [vhost]/[app]/[stream].flv;\n    }}\n    dvr {{\n        enabled on;\n        dvr_plan session;\n        dvr_path ./objs/nginx/html/[app]/[stream].[timestamp].flv;\n    }}\n    http_hooks {{\n        enabled on;\n        on_publish {hook_url};\n        on_unpublish {hook_url};\n    }}\n}}\n",
            listeners(p)
        )
    };
    let node = Node::start_srs(&scratch, Some(&conf), &|_| Vec::new());
    // What SRS would do and Estuary does not is named at start-up, once each, with its line.
    assert!(node.wait_log("`max_connections` is not applied", Duration::from_secs(5)), "{}", node.log());
    assert!(node.log().contains("srs.conf line 4: `http_server.dir`"), "{}", node.log());
    assert!(node.log().contains("srs.conf line 8: `max_connections`"), "{}", node.log());
    assert_eq!(node.log().matches("`max_connections`").count(), 1, "{}", node.log());

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
    std::fs::write(&good, "listen 1935;\nmax_connections 1000;\nvhost __defaultVhost__ {\n    hls { enabled on; }\n}\n").unwrap();
    let out = std::process::Command::new(estuary_tests::estuary_bin()).args(["-t", "-c"]).arg(&good).output().expect("estuary -t");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("line 2: `max_connections`") && text.contains("configuration is valid"), "{text}");
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
