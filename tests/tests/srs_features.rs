//! SRS drop-in, feature by feature: for each feature SRS documents (RTMP with HTTP-FLV, HLS,
//! DVR's segment plan, forward, HTTP hooks, WebRTC, SRT, GB28181), a node started with an
//! srs.conf written for that feature, then a node started with the equivalent `SRS_*`
//! variables only, each checked the way SRS's documentation checks the feature: publish with
//! ffmpeg (or a camera, for GB28181), play with ffprobe or a WebRTC peer, files on disk, hook
//! bodies.

use estuary_tests::ffmpeg::{decode, probe_streams, publish, publish_ts, stream_of, Source};
use estuary_tests::hook_server::HookServer;
use estuary_tests::{http, wait_until, Node, Ports, Scratch};
use std::time::Duration;

/// The RTMP, API and HTTP listeners in srs.conf syntax (loopback, the free ports of `p`);
/// SRT, WebRTC and GB28181 stay off unless a feature's file turns them on, as in SRS.
fn conf_listeners(p: &Ports) -> String {
    format!("listen 127.0.0.1:{};\ndaemon off;\nsrs_log_tank console;\nhttp_api {{ enabled on; listen 127.0.0.1:{}; }}\nhttp_server {{ enabled on; listen 127.0.0.1:{}; }}\n", p.rtmp, p.api, p.http)
}

/// The same listeners as `SRS_*` variables, with WebRTC and the GB28181 caster off (Estuary's
/// own defaults would otherwise start them on their default ports).
fn env_listeners(p: &Ports) -> Vec<(String, String)> {
    vec![
        ("SRS_LISTEN".into(), format!("127.0.0.1:{}", p.rtmp)),
        ("SRS_HTTP_API_LISTEN".into(), format!("127.0.0.1:{}", p.api)),
        ("SRS_HTTP_SERVER_LISTEN".into(), format!("127.0.0.1:{}", p.http)),
        ("SRS_SRT_SERVER_LISTEN".into(), format!("127.0.0.1:{}", p.srt)),
        ("SRS_RTC_SERVER_LISTEN".into(), format!("127.0.0.1:{}", p.rtc)),
        ("SRS_RTC_SERVER_ENABLED".into(), "off".into()),
        ("SRS_STREAM_CASTER_ENABLED".into(), "off".into()),
    ]
}

/// `base` with `vars` set over it (a later value of a name replaces the earlier one).
fn with(mut base: Vec<(String, String)>, vars: Vec<(String, String)>) -> Vec<(String, String)> {
    base.retain(|(k, _)| !vars.iter().any(|(n, _)| n == k));
    base.extend(vars);
    base
}

fn vars(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// Runs `check` on a node configured by `conf` (an srs.conf), then on one configured by
/// `env` (SRS variables only).
fn both(name: &str, conf: &dyn Fn(&Ports) -> String, env: &dyn Fn(&Ports) -> Vec<(String, String)>, check: &dyn Fn(&Node, &Scratch, &str)) {
    let scratch = Scratch::new(&format!("srs-{name}-conf"));
    let node = Node::start_srs(&scratch, Some(&|p: &Ports| format!("{}{}", conf_listeners(p), conf(p))), &|_| Vec::new());
    check(&node, &scratch, "srs.conf");
    drop(node);
    let scratch = Scratch::new(&format!("srs-{name}-env"));
    let node = Node::start_srs(&scratch, None, &|p: &Ports| with(env_listeners(p), env(p)));
    check(&node, &scratch, "SRS_* variables");
}

fn plays_both_tracks(url: &str, how: &str) {
    let streams = probe_streams(url);
    assert!(stream_of(&streams, "video").is_some() && stream_of(&streams, "audio").is_some(), "{how}: {url}: {streams:?}");
    let (ok, errors) = decode(url, 3);
    assert!(ok && errors.trim().is_empty(), "{how}: {url}: {errors}");
}

fn source(seconds: Option<f64>) -> Source {
    Source { duration: seconds, bframes: 0, gop: 25, ..Source::default() }
}

#[test]
fn rtmp_and_http_flv() {
    both(
        "flv",
        &|_| "vhost __defaultVhost__ {\n    http_remux { enabled on; mount [vhost]/[app]/[stream].flv; }\n}\n".into(),
        &|_| vars(&[("SRS_VHOST_HTTP_REMUX_ENABLED", "on".into()), ("SRS_VHOST_HTTP_REMUX_MOUNT", "[vhost]/[app]/[stream].flv".into())]),
        &|node, scratch, how| {
            let _publisher = publish(&node.rtmp_url("live/livestream"), &source(None), scratch, "publisher");
            node.wait_live("live/livestream", Duration::from_secs(20));
            plays_both_tracks(&node.rtmp_url("live/livestream"), how);
            plays_both_tracks(&node.flv_url("live/livestream"), how);
        },
    );
}

#[test]
fn hls() {
    both(
        "hls",
        &|_| "vhost __defaultVhost__ {\n    hls { enabled on; hls_fragment 2; hls_window 10; }\n}\n".into(),
        &|_| vars(&[("SRS_VHOST_HLS_ENABLED", "on".into()), ("SRS_VHOST_HLS_HLS_FRAGMENT", "2".into()), ("SRS_VHOST_HLS_HLS_WINDOW", "10".into())]),
        &|node, scratch, how| {
            let _publisher = publish(&node.rtmp_url("live/livestream"), &source(None), scratch, "publisher");
            node.wait_live("live/livestream", Duration::from_secs(20));
            let text = || http::get(node.ports.http, "/live/livestream.m3u8").map(|r| String::from_utf8_lossy(&r.body).into_owned()).unwrap_or_default();
            assert!(wait_until(Duration::from_secs(20), || text().matches("#EXTINF").count() >= 2), "{how}: no HLS playlist: {}", text());
            // hls_fragment 2 with a keyframe every second: segments of about 2 s.
            let lengths: Vec<f64> = text().lines().filter_map(|l| l.strip_prefix("#EXTINF:")).filter_map(|d| d.trim_end_matches(',').split(',').next()?.parse().ok()).collect();
            assert!(lengths.iter().all(|&l| (1.5..=2.5).contains(&l)), "{how}: segments not near hls_fragment 2: {lengths:?}");
            plays_both_tracks(&format!("http://127.0.0.1:{}/live/livestream.m3u8", node.ports.http), how);
        },
    );
}

#[test]
fn dvr_segment_plan() {
    both(
        "dvr",
        &|_| "vhost __defaultVhost__ {\n    dvr {\n        enabled on;\n        dvr_apply all;\n        dvr_plan segment;\n        dvr_duration 2;\n        dvr_wait_keyframe on;\n        dvr_path ./objs/nginx/html/[app]/[stream].[timestamp].flv;\n    }\n}\n".into(),
        &|_| {
            vars(&[
                ("SRS_VHOST_DVR_ENABLED", "on".into()),
                ("SRS_VHOST_DVR_DVR_APPLY", "all".into()),
                ("SRS_VHOST_DVR_DVR_PLAN", "segment".into()),
                ("SRS_VHOST_DVR_DVR_DURATION", "2".into()),
                ("SRS_VHOST_DVR_DVR_PATH", "./objs/nginx/html/[app]/[stream].[timestamp].flv".into()),
            ])
        },
        &|node, scratch, how| {
            let mut publisher = publish(&node.rtmp_url("live/recorded"), &source(Some(7.0)), scratch, "publisher");
            node.wait_live("live/recorded", Duration::from_secs(20));
            assert!(publisher.wait(Duration::from_secs(60)).is_some(), "{how}: the publisher did not finish");
            // Segments of 2 s over 7 s: at least three files, FLV, at the path's pattern.
            let dir = node.dir.join("estuary-data/dvr/live");
            let files = || -> Vec<std::path::PathBuf> {
                let mut files: Vec<_> = std::fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "flv")).collect()).unwrap_or_default();
                files.sort();
                files
            };
            let recordings = || node.api("/api/v1/recordings?app=live&stream=recorded")["recordings"].as_array().cloned().unwrap_or_default();
            assert!(wait_until(Duration::from_secs(15), || files().len() >= 3 && recordings().iter().all(|r| r["state"] != "recording")), "{how}: files {:?}, recordings {:?}", files(), recordings());
            for file in files() {
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                assert!(name.starts_with("recorded.") && name.ends_with(".flv"), "{how}: {name}");
                let streams = probe_streams(&file.display().to_string());
                assert!(stream_of(&streams, "video").is_some(), "{how}: {}: {streams:?}", file.display());
            }
        },
    );
}

#[test]
fn forward() {
    // The destination is another node, as in SRS's forward example.
    let scratch = Scratch::new("srs-forward-destination");
    let destination = Node::start(&scratch, &[]);
    let target = format!("127.0.0.1:{}", destination.ports.rtmp);
    let conf_target = target.clone();
    both(
        "forward",
        &move |_| format!("vhost __defaultVhost__ {{\n    forward {{ enabled on; destination {conf_target}; }}\n}}\n"),
        &|_| vars(&[("SRS_VHOST_FORWARD_ENABLED", "on".into()), ("SRS_VHOST_FORWARD_DESTINATION", target.clone())]),
        &|node, scratch, how| {
            let stream = if how == "srs.conf" { "live/fwdconf" } else { "live/fwdenv" };
            let _publisher = publish(&node.rtmp_url(stream), &source(None), scratch, "publisher");
            node.wait_live(stream, Duration::from_secs(20));
            destination.wait_live(stream, Duration::from_secs(20));
            plays_both_tracks(&destination.flv_url(stream), how);
        },
    );
}

#[test]
fn http_hooks() {
    // The hook server refuses the stream named "denied", as a backend refusing a stream key would.
    let hooks = HookServer::start(|body| if body["stream"] == "denied" { r#"{"code":403}"#.to_string() } else { r#"{"code":0}"#.to_string() });
    let url = hooks.url("/api/v1/hooks");
    let events = ["on_publish", "on_unpublish", "on_play", "on_stop"];
    let conf_url = url.clone();
    both(
        "hooks",
        &move |_| format!("vhost __defaultVhost__ {{\n    http_hooks {{\n        enabled on;\n{}    }}\n}}\n", events.iter().map(|e| format!("        {e} {conf_url};\n")).collect::<String>()),
        &|_| {
            let mut set = vec![("SRS_VHOST_HTTP_HOOKS_ENABLED".to_string(), "on".to_string())];
            set.extend(events.iter().map(|e| (format!("SRS_VHOST_HTTP_HOOKS_{}", e.to_ascii_uppercase()), url.clone())));
            set
        },
        &|node, scratch, how| {
            let stream = if how == "srs.conf" { "hookconf" } else { "hookenv" };
            let calls = |action: &str| hooks.calls_of(action).into_iter().filter(|b| b["stream"] == stream).collect::<Vec<_>>();
            let mut publisher = publish(&node.rtmp_url(&format!("live/{stream}?secret=abc")), &source(Some(6.0)), scratch, "publisher");
            node.wait_live(&format!("live/{stream}"), Duration::from_secs(20));
            plays_both_tracks(&node.flv_url(&format!("live/{stream}")), how);
            assert!(publisher.wait(Duration::from_secs(60)).is_some(), "{how}: the publisher did not finish");
            assert!(wait_until(Duration::from_secs(15), || events.iter().all(|e| !calls(e).is_empty())), "{how}: not every event was posted: {:?}", hooks.calls());
            // SRS's body fields, with SRS's types.
            let body = &calls("on_publish")[0];
            for field in ["action", "client_id", "ip", "vhost", "app", "stream", "param", "server_id", "stream_url"] {
                assert!(body[field].is_string(), "{how}: on_publish body lacks the string {field}: {body}");
            }
            assert_eq!((body["app"].as_str(), body["param"].as_str()), (Some("live"), Some("?secret=abc")), "{how}: {body}");
            // A stream the hook refuses is not published.
            let mut refused = publish(&node.rtmp_url("live/denied"), &source(Some(5.0)), scratch, "denied");
            let status = refused.wait(Duration::from_secs(20)).expect("the refused publisher should end promptly");
            assert!(!status.success(), "{how}: a publish the hook refused went through");
            assert!(node.stream_info("live/denied").is_none_or(|s| s["publish"]["active"] != true), "{how}: the refused stream is live");
        },
    );
}

#[test]
fn webrtc() {
    both(
        "rtc",
        &|p| format!("rtc_server {{ enabled on; listen 127.0.0.1:{}; candidate 127.0.0.1; }}\nvhost __defaultVhost__ {{\n    rtc {{ enabled on; rtmp_to_rtc on; rtc_to_rtmp on; }}\n}}\n", p.rtc),
        &|_| vars(&[("SRS_RTC_SERVER_ENABLED", "on".into()), ("SRS_RTC_SERVER_CANDIDATE", "127.0.0.1".into()), ("SRS_VHOST_RTC_ENABLED", "on".into()), ("SRS_VHOST_RTC_RTMP_TO_RTC", "on".into())]),
        &|node, scratch, how| {
            let _publisher = publish(&node.rtmp_url("live/livestream"), &source(None), scratch, "publisher");
            node.wait_live("live/livestream", Duration::from_secs(20));
            // Played as SRS's player does: an offer POSTed to /rtc/v1/play/ with the stream URL.
            let api = format!("http://127.0.0.1:{}/rtc/v1/play/", node.ports.api);
            let played = estuary_tests::aiortc::whep_play_with(&api, 4, 1, Some("webrtc://127.0.0.1/live/livestream"));
            assert_eq!(played[0]["connected"], true, "{how}: {}", played[0]);
            assert!(played[0]["video_frames"].as_u64().unwrap_or(0) > 25 && played[0]["audio_frames"].as_u64().unwrap_or(0) > 50, "{how}: {}", played[0]);
        },
    );
}

#[test]
fn srt() {
    both(
        "srt",
        &|p| format!("srt_server {{ enabled on; listen 127.0.0.1:{}; latency 200; }}\n", p.srt),
        &|_| vars(&[("SRS_SRT_SERVER_ENABLED", "on".into()), ("SRS_SRT_SERVER_LATENCY", "200".into())]),
        &|node, scratch, how| {
            // SRS's stream id: #!::r=live/livestream,m=publish.
            let _publisher = publish_ts(&node.srt_url("live/livestream", true, ""), &source(None), scratch, "publisher");
            node.wait_live("live/livestream", Duration::from_secs(20));
            plays_both_tracks(&node.srt_url("live/livestream", false, ""), how);
            plays_both_tracks(&node.rtmp_url("live/livestream"), how);
        },
    );
}

#[test]
fn gb28181() {
    let clips = Scratch::new("srs-gb-clip");
    let clip = estuary_tests::ffmpeg::make_clip(&clips.path("camera.mp4"), "libx264", 0, 10);
    let caster = |p: &Ports| format!("stream_caster {{\n    enabled on;\n    caster gb28181;\n    output rtmp://127.0.0.1/live/[stream];\n    listen 127.0.0.1:{};\n    sip {{ enabled on; listen 127.0.0.1:{}; }}\n}}\n", p.gb_media, p.sip);
    both(
        "gb",
        &caster,
        &|p| {
            vars(&[
                ("SRS_STREAM_CASTER_ENABLED", "on".into()),
                ("SRS_STREAM_CASTER_CASTER", "gb28181".into()),
                ("SRS_STREAM_CASTER_OUTPUT", "rtmp://127.0.0.1/live/[stream]".into()),
                ("SRS_STREAM_CASTER_LISTEN", format!("127.0.0.1:{}", p.gb_media)),
                ("SRS_STREAM_CASTER_SIP_ENABLED", "on".into()),
                ("SRS_STREAM_CASTER_SIP_LISTEN", format!("127.0.0.1:{}", p.sip)),
            ])
        },
        &|node, _, how| {
            let (device_id, channel) = ("34020000001110000001", "34020000001320000001");
            let device = estuary_tests::gb_device::Device::new(node.ports.sip, device_id, "", channel, clip.clone());
            assert_eq!(device.register(3600), 200, "{how}: the camera could not register");
            let stream = format!("live/{device_id}_{channel}");
            node.wait_live(&stream, Duration::from_secs(30));
            let streams = probe_streams(&node.flv_url(&stream));
            assert!(stream_of(&streams, "video").is_some(), "{how}: {streams:?}");
            let (ok, errors) = decode(&node.flv_url(&stream), 3);
            assert!(ok && errors.trim().is_empty(), "{how}: {errors}");
        },
    );
}

#[test]
fn security_ingest_and_transcode_blocks() {
    let scratch = Scratch::new("srs-blocks");
    let clip = estuary_tests::ffmpeg::make_clip(&scratch.path("source.mp4"), "libx264", 0, 6);
    let clip_path = clip.display().to_string();
    let conf = move |p: &Ports| {
        format!(
            "{}vhost __defaultVhost__ {{
    security {{
        enabled on;
        allow publish 127.0.0.1;
        allow play all;
        deny play 127.0.0.2;
    }}
    ingest loop {{
        enabled on;
        input {{ type file; url {clip_path}; }}
        ffmpeg ./objs/ffmpeg/bin/ffmpeg;
        engine {{ enabled off; output rtmp://127.0.0.1:[port]/live?vhost=[vhost]/ingested; }}
    }}
    transcode live {{
        enabled on;
        ffmpeg ./objs/ffmpeg/bin/ffmpeg;
        engine sd {{
            enabled on;
            vcodec libx264;
            vbitrate 300;
            vheight 120;
            acodec libfdk_aac;
            abitrate 64;
            output rtmp://127.0.0.1:[port]/[app]?vhost=[vhost]/[stream]_[engine];
        }}
    }}
}}
",
            conf_listeners(p)
        )
    };
    let node = Node::start_srs(&scratch, Some(&conf), &|_| Vec::new());
    // The ingest publishes the file as live/ingested (looped), and the security rules let a
    // publisher from 127.0.0.1 in.
    let ingested = node.wait_live("live/ingested", Duration::from_secs(30));
    assert_eq!(ingested["publish"]["active"], true, "{ingested}");
    let _publisher = publish(&node.rtmp_url("live/cam"), &source(None), &scratch, "publisher");
    node.wait_live("live/cam", Duration::from_secs(20));
    // The engine "sd" makes live/cam_sd at 120 lines.
    let rendition = node.wait_live("live/cam_sd", Duration::from_secs(60));
    assert_eq!(rendition["publish"]["active"], true, "{rendition}");
    plays_both_tracks(&node.flv_url("live/cam_sd"), "srs.conf");
    // A player from 127.0.0.2 is refused by `deny play 127.0.0.2` (as SRS does: deny wins).
    assert_eq!(http_status_from("127.0.0.2", node.ports.http, "/live/cam.flv"), 403);
    assert!(node.log().contains("is denied by rule 127.0.0.2/32"), "{}", node.log());
    assert_eq!(http_status_from("127.0.0.1", node.ports.http, "/live/cam.flv"), 200);
    let info = node.stream_info("live/cam_sd").expect("the rendition");
    assert_eq!(info["video"]["height"].as_u64(), Some(120), "{info}");
}

/// The status of an HTTP GET of `path` from the local address `source` (any 127.x address).
fn http_status_from(source: &str, port: u16, path: &str) -> u16 {
    use std::io::{Read, Write};
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&local.into()).expect("bind the source address");
    let remote: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket.connect(&remote.into()).expect("connect");
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).expect("a status line");
    String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0)
}

#[test]
fn a_named_vhost_has_its_own_hls_and_hooks() {
    let scratch = Scratch::new("srs-vhost");
    let hooks = HookServer::start(|_| r#"{"code":0}"#.to_string());
    let url = hooks.url("/api/v1/streams");
    let conf = move |p: &Ports| format!("{}vhost __defaultVhost__ {{\n}}\nvhost example.com {{\n    hls {{ enabled on; hls_fragment 1; hls_window 10; }}\n    http_hooks {{ enabled on; on_publish {url}; }}\n}}\n", conf_listeners(p));
    let node = Node::start_srs(&scratch, Some(&conf), &|_| Vec::new());
    // A publisher naming the vhost (SRS's ?vhost=) gets its hooks and its HLS.
    let _named = publish(&format!("{}?vhost=example.com", node.rtmp_url("live/named")), &source(None), &scratch, "named");
    assert!(wait_until(Duration::from_secs(20), || hooks.calls_of("on_publish").iter().any(|b| b["stream"] == "named" && b["vhost"] == "example.com")), "{:?}\n{}", hooks.calls(), node.log());
    let playlist = || http::get(node.ports.http, "/live/named.m3u8").map(|r| String::from_utf8_lossy(&r.body).into_owned()).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(20), || playlist().matches("#EXTINF").count() >= 2), "no HLS for the named vhost: {}", playlist());
    plays_both_tracks(&format!("{}?vhost=example.com", node.rtmp_url("live/named")), "named vhost");
    // Over HTTP too: by ?vhost=, or by the Host header as SRS does; without either it is the
    // default vhost's stream, which nobody publishes.
    plays_both_tracks(&format!("{}?vhost=example.com", node.flv_url("live/named")), "named vhost over HTTP-FLV");
    assert_eq!(http_status_with_host("example.com", node.ports.http, "/live/named.flv"), 200);
    assert_eq!(http_status_with_host("127.0.0.1", node.ports.http, "/live/named.flv"), 404);
    // A vhost nobody configured is the default vhost, as in SRS.
    assert_eq!(http_status_with_host("127.0.0.1", node.ports.http, "/live/named.flv?vhost=nowhere.example"), 404);
    // The default vhost has neither (SRS's defaults: HLS off, no hooks).
    let _plain = publish(&node.rtmp_url("live/plain"), &source(None), &scratch, "plain");
    node.wait_live("live/plain", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(4));
    assert!(hooks.calls_of("on_publish").iter().all(|b| b["stream"] != "plain"), "the default vhost called the named vhost's hook: {:?}", hooks.calls());
    assert_eq!(http::get(node.ports.http, "/live/plain.m3u8").map(|r| r.status).unwrap_or(0), 404, "the default vhost made HLS");
}

/// The status of an HTTP GET of `path` on `port` that names `host` in its Host header.
fn http_status_with_host(host: &str, port: u16, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").as_bytes()).unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).expect("a status line");
    String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0)
}
