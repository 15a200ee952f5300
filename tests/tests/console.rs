//! The web console, the player page and the WHIP page, used in headless Chromium the way a
//! person uses them (`tests/browser/console.mjs` clicks, fills forms and picks files), against
//! nodes fed by ffmpeg. Every view visited is screenshotted to `target/console-screenshots/`.
//! Uploads' bad input is checked over raw HTTP.

use estuary_tests::browser::{console, screenshots_dir};
use estuary_tests::ffmpeg::{self, publish, Source};
use estuary_tests::{http, wait_until, Node, Scratch};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

fn base(node: &Node) -> String {
    format!("http://127.0.0.1:{}", node.ports.http)
}

fn shots() -> String {
    screenshots_dir().to_string_lossy().to_string()
}

/// The token a node without API credentials made for its console (`<data_dir>/console-token`).
fn console_token(node: &Node) -> String {
    let path = node.dir.join("estuary-data/console-token");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

/// Playback in the page went on: `seconds` of media time and decoded frames, at the source's size.
fn assert_played(result: &Value, what: &str, seconds: f64, width: u64) {
    assert!(result["advanced"].as_f64().unwrap_or(0.0) >= seconds, "{what}: {result}");
    assert!(result["frames_end"].as_u64() > result["frames_start"].as_u64(), "{what}: no frames decoded: {result}");
    assert_eq!(result["width"].as_u64(), Some(width), "{what}: {result}");
}

fn one_second_gops() -> Source {
    Source { gop: 25, bframes: 0, ..Source::default() }
}

#[test]
fn the_console_lists_a_stream_previews_it_and_the_player_page_plays_every_protocol() {
    let scratch = Scratch::new("console-play");
    let node = Node::start(&scratch, &[("ESTUARY_DASH__ENABLED", "true")]);
    let token = console_token(&node);
    let _publisher = publish(&node.rtmp_url("live/show"), &one_second_gops(), &scratch, "publisher");
    node.wait_live("live/show", Duration::from_secs(20));
    let ready = |path: &str| wait_until(Duration::from_secs(30), || http::get(node.ports.http, path).is_ok_and(|r| r.status == 200 && r.body.len() > 200));
    assert!(ready("/live/show.m3u8") && ready("/live/show.mpd"), "outputs not ready; log:\n{}", node.log());
    std::thread::sleep(Duration::from_secs(3));

    // `/` leads to the console.
    let root = http::get(node.ports.http, "/").expect("GET /");
    assert_eq!((root.status, root.headers.iter().find(|(k, _)| k == "location").map(|(_, v)| v.as_str())), (302, Some("console/")));

    let listed = console("streams", json!({ "base": base(&node), "stream": "live/show", "token": token, "shots": shots() }));
    assert!(listed["listed"]["codec"].as_str().unwrap_or("").starts_with("H264"), "{listed}");
    assert!(listed["listed"]["audio"].as_str().unwrap_or("").starts_with("AAC"), "{listed}");
    assert_eq!(listed["listed"]["resolution"], "320x240", "{listed}");
    assert_played(&listed["preview"], "preview", 3.0, 320);

    for protocol in ["flv", "ts", "hls", "dash", "webrtc"] {
        let played = console("player", json!({ "base": base(&node), "stream": "live/show", "protocol": protocol, "seconds": 3, "shots": if protocol == "flv" { shots() } else { String::new() } }));
        assert_played(&played, protocol, 3.0, 320);
        assert_eq!(played["status"]["state"], "playing", "{played}");
    }

    let offline = console("offline", json!({ "base": base(&node), "stream": "live/nobody" }));
    assert!(offline["text"].as_str().unwrap_or("").contains("not live"), "{offline}");

    // The embed snippets as the console shows them, pasted into another site's page.
    let snippets = console("snippets", json!({ "base": base(&node), "stream": "live/show", "token": token, "shots": shots() }));
    assert_played(&snippets["player"], "the play view's player", 1.0, 320);
    let urls: Vec<(String, String)> = serde_json::from_value(snippets["urls"].clone()).expect("urls");
    let url_of = |label: &str| urls.iter().find(|(l, _)| l == label).map(|(_, u)| u.clone()).unwrap_or_default();
    assert_eq!(url_of("RTMP"), node.rtmp_url("live/show"), "{snippets}");
    assert_eq!(url_of("HTTP-FLV"), format!("{}/live/show.flv", base(&node)), "{snippets}");
    assert_eq!(url_of("DASH"), format!("{}/live/show.mpd", base(&node)), "{snippets}");
    assert!(url_of("SRT").contains("r=live/show,m=request") && url_of("WebRTC (WHEP)").contains("/rtc/v1/whep/?app=live&stream=show"), "{snippets}");
    let embedded = console("embed", json!({ "iframe": snippets["iframe"], "script": snippets["script"], "shots": shots() }));
    assert_ne!(embedded["page_origin"], embedded["player_origin"], "{embedded}");
    assert_played(&embedded["iframe"], "iframe snippet", 3.0, 320);
    assert_played(&embedded["script"], "script snippet", 3.0, 320);

    // Opened as the node's log says: the console URL with #token=.
    let views = console("views", json!({ "base": base(&node), "token": token, "shots": shots() }));
    for name in ["dashboard", "streams", "play", "virtual-live", "jobs", "recordings", "gb28181", "cluster"] {
        assert!(views[name]["error"].is_null() && !views[name]["text"].as_str().unwrap_or("").is_empty(), "view {name}: {views}");
    }
    assert!(views["streams"]["text"].as_str().unwrap_or("").contains("live/show"), "{views}");

    // Behind a reverse proxy at a sub-path.
    let proxied = console("proxied", json!({ "base": base(&node), "stream": "live/show", "token": token, "shots": shots() }));
    assert!(proxied["console_url"].as_str().unwrap_or("").contains("/video/console/"), "{proxied}");
    assert_played(&proxied["preview"], "preview through the proxy", 2.0, 320);
    assert_played(&proxied["webrtc"], "WHEP through the proxy", 2.0, 320);
}

#[test]
fn with_api_credentials_the_console_signs_in_and_kicks_a_player() {
    let scratch = Scratch::new("console-kick");
    let token = "console-test-token";
    let node = Node::start(&scratch, &[("ESTUARY_API__TOKEN", token)]);
    let _publisher = publish(&node.rtmp_url("live/kick"), &one_second_gops(), &scratch, "publisher");
    let auth = format!("Bearer {token}");
    let api = |path: &str| -> Value {
        let response = http::send(node.ports.api, "GET", path, &[("Authorization", auth.as_str())], b"").expect("API");
        serde_json::from_slice(&response.body).expect("JSON")
    };
    assert!(wait_until(Duration::from_secs(20), || api("/api/v1/streams")["streams"].as_array().is_some_and(|s| s.iter().any(|s| s["publish"]["active"] == true))), "not live; log:\n{}", node.log());

    // The console's pages are public; what they read needs the API's credentials, on either port.
    assert_eq!(http::get(node.ports.http, "/console/").map(|r| r.status).ok(), Some(200));
    assert_eq!(http::get(node.ports.http, "/players/").map(|r| r.status).ok(), Some(200));
    for (port, path) in [(node.ports.http, "/api/v1/streams"), (node.ports.http, "/api/v1/console"), (node.ports.http, "/api/v1/uploads"), (node.ports.api, "/api/v1/clients")] {
        assert_eq!(http::get(port, path).map(|r| r.status).ok(), Some(401), "{path} on {port}");
    }
    let login = console("login", json!({ "base": base(&node), "token": token }));
    assert_eq!(login["listed"], json!(["live/kick"]), "{login}");

    let out = scratch.path("player.flv");
    let mut player = ffmpeg::record(&node.flv_url("live/kick"), &out, None, &scratch, "player");
    let mut id = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let clients = api("/api/v1/clients");
            id = clients["clients"].as_array().and_then(|c| c.iter().find(|c| c["publish"] == false)).and_then(|c| c["id"].as_str()).unwrap_or_default().to_string();
            !id.is_empty()
        }),
        "the player did not connect"
    );
    console("kick", json!({ "base": base(&node), "client": id, "token": token, "shots": shots() }));
    assert!(player.wait(Duration::from_secs(20)).is_some(), "the kicked player is still connected: {}", player.stderr());
    let gone = api("/api/v1/clients");
    assert!(!gone["clients"].as_array().unwrap().iter().any(|c| c["id"] == id.as_str()), "{gone}");
    assert!(node.log().lines().any(|l| l.contains("kicking client through the API") && l.contains(&format!("client={id}"))), "the kick is not in the log");
}

#[test]
fn the_whip_page_publishes_the_camera_and_the_stream_plays_over_hls() {
    let scratch = Scratch::new("console-whip");
    let node = Node::start(&scratch, &[]);
    let published = console("publish", json!({ "base": base(&node), "stream": "live/camera", "token": console_token(&node), "shots": shots() }));
    assert_eq!(published["state"], "WebRTC connected: live/camera", "{published}");
    assert!(published["listed"]["codec"].as_str().unwrap_or("").starts_with("H264"), "{published}");
    assert_eq!(published["listed"]["resolution"], "640x360", "{published}");
    assert_played(&published["hls"], "HLS of the WHIP stream", 3.0, 640);
}

/// A few MB of H.264 and AAC in MP4, as a user would upload.
fn clip(scratch: &Scratch) -> std::path::PathBuf {
    let path = scratch.path("holiday.mp4");
    let mut make = std::process::Command::new("ffmpeg");
    make.args(["-hide_banner", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=44100"])
        .args(["-t", "12", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-b:v", "2M", "-c:a", "aac", "-movflags", "+faststart", "-y"])
        .arg(&path);
    assert!(ffmpeg::run(make, Duration::from_secs(120)).success(), "could not make {}", path.display());
    path
}

#[test]
fn the_virtual_live_wizard_uploads_a_file_and_restreams_it_to_another_node() {
    let scratch = Scratch::new("console-wizard");
    // The destination is on this machine, which forwards added through the API may not reach
    // by default.
    let node = Node::start(&scratch, &[("ESTUARY_FORWARD__DENY_PRIVATE", "false")]);
    let destination = Node::start(&Scratch::new("console-wizard-destination"), &[]);
    let file = clip(&scratch);
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 2_000_000, "the clip should be a few MB, is {size} bytes");

    let result = console(
        "wizard",
        json!({ "base": base(&node), "file": file, "stream": "live/channel1", "url": format!("rtmp://127.0.0.1:{}/live", destination.ports.rtmp), "key": "from-console", "token": console_token(&node), "shots": shots() }),
    );
    assert!(result["uploaded"].as_str().unwrap_or("").starts_with("Uploaded holiday.mp4"), "{result}");
    assert!(result["started"].as_str().unwrap_or("").starts_with("Started"), "{result}");
    let uploads = node.api("/api/v1/uploads");
    assert_eq!(uploads["uploads"][0]["name"], "holiday.mp4", "{uploads}");
    assert_eq!(uploads["uploads"][0]["bytes"], size, "{uploads}");

    destination.wait_live("live/from-console", Duration::from_secs(30));
    let streams = ffmpeg::probe_streams(&destination.flv_url("live/from-console"));
    assert!(ffmpeg::stream_of(&streams, "video").is_some() && ffmpeg::stream_of(&streams, "audio").is_some(), "{streams:?}");
    let (clean, log) = ffmpeg::decode(&destination.flv_url("live/from-console"), 4);
    assert!(clean, "the restream does not decode clean on the destination:\n{log}");
}

#[test]
fn the_recordings_view_shows_coverage_and_plays_a_clip() {
    let scratch = Scratch::new("console-recordings");
    let node = Node::start(&scratch, &[("ESTUARY_DVR__ENABLED", "true")]);
    let mut source = publish(&node.rtmp_url("live/rec"), &Source { duration: Some(8.0), ..one_second_gops() }, &scratch, "publisher");
    node.wait_live("live/rec", Duration::from_secs(20));
    assert!(source.wait(Duration::from_secs(30)).is_some(), "the publisher did not finish");
    let result = console("recordings", json!({ "base": base(&node), "stream": "live/rec", "token": console_token(&node), "shots": shots() }));
    assert!(result["covered"].as_u64().unwrap_or(0) >= 1, "{result}");
    assert_played(&result["played"], "recorded clip", 2.0, 320);
    let download = result["range"]["download"].as_str().unwrap_or_default();
    assert!(download.contains("/dvr/live/rec.mp4?start="), "{result}");
    let path = download.split_once(&base(&node)).map(|(_, p)| p.to_string()).unwrap_or_default();
    let file = http::get(node.ports.http, &path).expect("download");
    assert_eq!((file.status, file.body.get(4..8)), (200, Some(&b"ftyp"[..])), "{path}");
}

/// Sends an upload's head and `body`; with `finish`, ends the body and returns the status the
/// node answered with; without, returns None and leaves the connection open in `open`.
fn raw_upload(port: u16, name: &str, content_length: Option<usize>, body: &[u8], finish: bool, open: &mut Option<std::net::TcpStream>) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let length = match content_length {
        Some(n) => format!("Content-Length: {n}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".to_string(),
    };
    write!(stream, "POST /api/v1/uploads?name={name} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/octet-stream\r\n{length}\r\n").ok()?;
    // The node may answer (and stop reading) before the whole body is sent.
    let _ = if content_length.is_some() {
        stream.write_all(body)
    } else {
        body.chunks(64 * 1024).try_for_each(|chunk| write!(stream, "{:x}\r\n", chunk.len()).and_then(|()| stream.write_all(chunk)).and_then(|()| stream.write_all(b"\r\n"))).and_then(|()| if finish { stream.write_all(b"0\r\n\r\n") } else { Ok(()) })
    };
    if !finish {
        *open = Some(stream);
        return None;
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).split_whitespace().nth(1).and_then(|s| s.parse().ok())
}

#[test]
fn uploads_that_are_too_large_not_media_or_cut_off_leave_nothing() {
    let scratch = Scratch::new("console-uploads");
    let media = scratch.path("media");
    let node = Node::start(&scratch, &[("ESTUARY_INGEST__MEDIA_DIR", media.to_str().unwrap()), ("ESTUARY_INGEST__UPLOAD_MAX_BYTES", "1000000")]);
    let leftovers = || std::fs::read_dir(&media).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect::<Vec<_>>()).unwrap_or_default();

    // Declared too large: refused before a byte is stored.
    let mut open = None;
    assert_eq!(raw_upload(node.ports.api, "big.mp4", Some(2_000_000), &vec![0u8; 2_000_000], true, &mut open), Some(413));
    assert!(leftovers().is_empty(), "a refused upload stored something: {:?}", leftovers());
    // Too large without a declared length: cut off at the limit.
    assert_eq!(raw_upload(node.ports.api, "big.mp4", None, &vec![0u8; 1_300_000], true, &mut open), Some(413));
    // Not media.
    let junk = http::send(node.ports.api, "POST", "/api/v1/uploads?name=notes.mp4", &[("Content-Type", "application/octet-stream")], &b"these are not the frames you are looking for\n".repeat(200)).expect("upload");
    assert_eq!(junk.status, 400, "{}", String::from_utf8_lossy(&junk.body));
    assert!(String::from_utf8_lossy(&junk.body).contains("not a media file"), "{}", String::from_utf8_lossy(&junk.body));
    // A name that is not a media file's.
    assert_eq!(http::send(node.ports.api, "POST", "/api/v1/uploads?name=passwd", &[], b"x").map(|r| r.status).ok(), Some(400));
    // Cut off midway, both ways of sending a body: the part received is on disk until the
    // client goes away.
    for length in [Some(900_000), None] {
        raw_upload(node.ports.api, "cut.mp4", length, &vec![1u8; 300_000], false, &mut open);
        assert!(wait_until(Duration::from_secs(10), || leftovers().iter().any(|n| n.ends_with(".part"))), "no partial file while uploading: {:?}", leftovers());
        drop(open.take());
        assert!(wait_until(Duration::from_secs(10), || leftovers().is_empty()), "files left behind: {:?}; log:\n{}", leftovers(), node.log());
    }
    assert!(wait_until(Duration::from_secs(10), || leftovers().is_empty()), "files left behind: {:?}; log:\n{}", leftovers(), node.log());
    assert!(node.log().contains("upload cut off"), "the cut-off upload is not in the log:\n{}", node.log());
    assert_eq!(node.api("/api/v1/uploads")["total"], 0);
    assert_eq!(node.api("/api/v1/ingests")["total"], 0);

    // A real file is kept under its name; a second one of that name does not replace it.
    let clip = ffmpeg::make_clip(&scratch.path("short.mp4"), "libx264", 0, 2);
    let bytes = std::fs::read(&clip).unwrap();
    assert!(bytes.len() < 1_000_000);
    for expected in ["short.mp4", "short-1.mp4"] {
        let saved = http::send(node.ports.api, "POST", "/api/v1/uploads?name=short.mp4", &[("Content-Type", "application/octet-stream")], &bytes).expect("upload");
        let answer: Value = serde_json::from_slice(&saved.body).expect("JSON");
        assert_eq!((saved.status, answer["name"].as_str()), (200, Some(expected)), "{answer}");
        assert_eq!(answer["video"]["codec"], "H264", "{answer}");
    }
    // Two uploads of one name at once keep both files.
    let twins: Vec<String> = std::thread::scope(|scope| {
        let uploads: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| {
                let saved = http::send(node.ports.api, "POST", "/api/v1/uploads?name=twin.mp4", &[("Content-Type", "application/octet-stream")], &bytes).expect("upload");
                assert_eq!(saved.status, 200, "{}", String::from_utf8_lossy(&saved.body));
                serde_json::from_slice::<Value>(&saved.body).expect("JSON")["name"].as_str().unwrap_or_default().to_string()
            }))
            .collect();
        uploads.into_iter().map(|u| u.join().expect("upload thread")).collect()
    });
    assert_ne!(twins[0], twins[1], "two uploads were saved under one name");
    let mut names = leftovers();
    names.sort();
    assert_eq!(names, ["short-1.mp4", "short.mp4", "twin-1.mp4", "twin.mp4"]);
}

#[test]
fn the_api_on_the_http_port_needs_credentials_and_refuses_other_origins() {
    let scratch = Scratch::new("console-api-port");
    let node = Node::start(&scratch, &[]);
    let token = console_token(&node);
    let bearer = format!("Bearer {token}");
    let status = |port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| http::send(port, method, path, headers, body).map(|r| r.status).unwrap_or(0);
    // The API port keeps SRS's rule (reads open); on the HTTP port, which reverse proxies put
    // on the internet, a request from this machine is no credential: only the console token is.
    assert_eq!(status(node.ports.api, "GET", "/api/v1/streams", &[], b""), 200);
    assert_eq!(status(node.ports.http, "GET", "/api/v1/streams", &[], b""), 401);
    assert_eq!(status(node.ports.http, "GET", "/api/v1/streams/", &[("X-Forwarded-For", "203.0.113.9")], b""), 401);
    assert_eq!(status(node.ports.http, "GET", "/api/v1/streams", &[("Authorization", "Bearer wrong")], b""), 401);
    assert_eq!(status(node.ports.http, "GET", "/api/v1/streams/", &[("Authorization", bearer.as_str())], b""), 200);
    assert_eq!(status(node.ports.http, "GET", "/metrics", &[], b""), 401);
    // WHIP/WHEP stay public there, as on the API port (a bad offer is a 400, not a 401).
    assert_eq!(status(node.ports.http, "POST", "/rtc/v1/whep/?app=live&stream=x", &[("Content-Type", "application/sdp")], b"v=0
"), 400);
    // A page of another origin changes nothing, whatever it sends and even with the token.
    let forward = br#"{"app":"live","stream":"x","url":"rtmp://198.51.100.20:1/live/y"}"#;
    for port in [node.ports.api, node.ports.http] {
        let headers = [("Origin", "http://evil.example"), ("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
        assert_eq!(status(port, "POST", "/api/v1/forwards", &headers, forward), 403, "port {port}");
    }
    // Nor is it granted a preflight for the API's paths.
    let preflight = http::send(node.ports.http, "OPTIONS", "/api/v1/forwards", &[("Origin", "http://evil.example"), ("Access-Control-Request-Method", "POST")], b"").expect("OPTIONS");
    assert!(!preflight.headers.iter().any(|(k, _)| k == "access-control-allow-origin"), "{:?}", preflight.headers);
    // The console's own origin, with the token, may (this client's Host header names no port,
    // so neither does the Origin of a page it would have loaded).
    let headers = [("Origin", "http://127.0.0.1"), ("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
    assert_eq!(status(node.ports.http, "POST", "/api/v1/forwards", &headers, forward), 200);
    assert!(node.log().contains("web console") && node.log().contains("console-token"), "the log does not say how to reach the console");
}
