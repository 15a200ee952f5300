//! Attacks from the audit (issue 27), each performed against a real node and checked to be
//! refused: SIP that used to stop the SIP server, GB28181 device ids that became file paths,
//! REGISTER floods that filled the device table, pages in a visitor's browser driving the
//! API, anonymous remote callers changing the node, and secrets read back out of the API, the
//! log and error messages.

use estuary_tests::gb_device::Device;
use estuary_tests::{ffmpeg, http, private_network_or_skip, wait_until, Node, Scratch};
use std::net::UdpSocket;
use std::time::Duration;

fn sip_exchange(socket: &UdpSocket, port: u16, message: &[u8]) -> Option<String> {
    socket.send_to(message, ("127.0.0.1", port)).ok()?;
    let mut buf = [0u8; 4096];
    socket.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn register_from(id: &str, call: &str) -> Vec<u8> {
    format!("REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{call}\r\nFrom: <sip:{id}@3402000000>;tag=1\r\nTo: <sip:{id}@3402000000>\r\nCall-ID: {call}\r\nCSeq: 1 REGISTER\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

/// One datagram with `Content-Length: 18446744073709551615` used to wrap the SIP parser's
/// length check and panic, ending the only SIP task: REGISTERs went unanswered for good.
#[test]
fn a_wrapping_content_length_does_not_stop_the_sip_server() {
    let scratch = Scratch::new("sec-sip");
    let node = Node::start(&scratch, &[]);
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    for length in ["18446744073709551615", "18446744073709551612"] {
        let packet = format!("MESSAGE sip:34020000002000000001@3402000000 SIP/2.0\r\nContent-Length: {length}\r\n\r\nxxxx");
        attacker.send_to(packet.as_bytes(), ("127.0.0.1", node.ports.sip)).unwrap();
    }
    let clip = ffmpeg::make_clip(&scratch.path("clip.mp4"), "libx264", 0, 4);
    let device = Device::new(node.ports.sip, "34020000001320000001", "", "34020000001320000002", clip);
    assert_eq!(device.register(3600), 200, "the SIP server must still answer; log:\n{}", node.log());
    assert!(node.log().contains("malformed SIP message dropped"), "{}", node.log());
}

/// A device id that is a path (`../../tmp/x/pwn`) used to become the stream name and the
/// HLS directory: files were written outside the data directory. Ids must be 20 digits.
#[test]
fn gb28181_ids_that_are_paths_are_refused_and_write_nothing() {
    let scratch = Scratch::new("sec-gbpath");
    let node = Node::start(&scratch, &[]);
    let target = scratch.path("outside");
    let evil = format!("../../../../../../../../../..{}/pwn", target.display());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let answer = sip_exchange(&socket, node.ports.sip, &register_from(&evil, "evil1")).expect("an answer");
    assert!(answer.starts_with("SIP/2.0 400"), "{answer}");
    assert!(node.api("/api/v1/gb28181/devices")["devices"].as_array().is_none_or(|d| d.is_empty()));
    // The SSRC route API refuses such an id too (its stream name would be the id).
    let response = http::send(node.ports.api, "POST", "/gb/v1/publish/", &[("Content-Type", "application/json")], format!(r#"{{"id":"{evil}","ssrc":"0200000001"}}"#).as_bytes()).unwrap();
    assert!(response.status >= 400, "{} {}", response.status, String::from_utf8_lossy(&response.body));
    assert!(!target.exists(), "nothing may be created outside the data directory");
}

/// With a password set, REGISTERs that never authenticate used to create device entries
/// (listed, and persisted once answered): 50,000 of them filled the table and the database.
/// Each was also answered towards its (spoofable) source: now one source gets a burst of
/// answers and then a steady 10 per second, the rest are dropped unanswered.
#[test]
fn register_floods_leave_no_device_and_are_not_reflected() {
    let scratch = Scratch::new("sec-flood");
    let node = Node::start(&scratch, &[("ESTUARY_GB28181__PASSWORD", "s3cret")]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for n in 0..300 {
        let id = format!("3402000000132{n:07}");
        socket.send_to(&register_from(&id, &format!("flood{n}")), ("127.0.0.1", node.ports.sip)).unwrap();
    }
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answers = 0;
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 401"));
        answers += 1;
    }
    assert!((1..=60).contains(&answers), "{answers} of 300 REGISTERs answered");
    let devices = node.api("/api/v1/gb28181/devices");
    assert_eq!(devices["devices"].as_array().map(Vec::len).unwrap_or(0), 0, "{devices}");
    assert!(node.log().contains("REGISTERs over the per-source rate dropped"), "{}", node.log());
}

/// A playlist the API accepted is not trusted later: a file it lists that became a link out of
/// `ingest.media_dir` while the ingest ran is refused when its turn comes.
#[test]
fn api_ingest_files_are_checked_again_each_time_they_are_read() {
    let scratch = Scratch::new("sec-reread");
    let media = scratch.path("media");
    std::fs::create_dir_all(&media).unwrap();
    ffmpeg::make_clip(&media.join("a.mp4"), "libx264", 0, 2);
    ffmpeg::make_clip(&media.join("b.mp4"), "libx264", 0, 2);
    let outside = ffmpeg::make_clip(&scratch.path("outside.mp4"), "libx264", 0, 2);
    std::fs::write(media.join("list.m3u"), "a.mp4\nb.mp4\n").unwrap();
    let node = Node::start(&scratch, &[("ESTUARY_INGEST__MEDIA_DIR", media.to_str().unwrap())]);
    let response = http::send(node.ports.api, "POST", "/api/v1/ingests", &[("Content-Type", "application/json")], br#"{"app":"live","stream":"list","source":"list.m3u"}"#).unwrap();
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    node.wait_live("live/list", Duration::from_secs(20));
    std::fs::remove_file(media.join("b.mp4")).unwrap();
    std::os::unix::fs::symlink(&outside, media.join("b.mp4")).unwrap();
    let refused = wait_until(Duration::from_secs(30), || {
        node.api("/api/v1/ingests")["ingests"][0]["last_error"].as_str().is_some_and(|e| e.contains("b.mp4 is not a file in ingest.media_dir"))
    });
    assert!(refused, "{}", node.api("/api/v1/ingests"));
}

/// Guessing a device's password: one source gets a burst of answers and then 10 a second;
/// the rest of its guesses are dropped unanswered, and the device itself (another address,
/// the right password) registers meanwhile.
#[test]
fn sip_digest_guesses_are_rate_limited_per_source() {
    let scratch = Scratch::new("sec-digest");
    let node = Node::start(&scratch, &[("ESTUARY_GB28181__PASSWORD", "s3cret")]);
    let id = "34020000001320000077";
    let guesser = UdpSocket::bind("127.0.0.1:0").unwrap();
    let challenge = sip_exchange(&guesser, node.ports.sip, &register_from(id, "guess0")).expect("a challenge");
    let nonce = challenge.split("nonce=\"").nth(1).and_then(|r| r.split('"').next()).expect("a nonce").to_string();
    let guesses = 300;
    for n in 0..guesses {
        let mut message = String::from_utf8(register_from(id, &format!("guess{n}"))).unwrap();
        let authorization = format!("Authorization: Digest username=\"{id}\", realm=\"3402000000\", nonce=\"{nonce}\", uri=\"sip:34020000002000000001@3402000000\", response=\"{:032x}\", algorithm=MD5\r\n", n);
        message = message.replacen("Content-Length", &format!("{authorization}Content-Length"), 1);
        guesser.send_to(message.as_bytes(), ("127.0.0.1", node.ports.sip)).unwrap();
    }
    guesser.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answers = 0;
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = guesser.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(!text.starts_with("SIP/2.0 200"), "a wrong digest was accepted: {text}");
        answers += 1;
    }
    // A burst of 20 and then 10 a second: most of 300 guesses sent at once go unanswered.
    assert!(answers < guesses / 2, "{answers} of {guesses} guesses answered");
    assert!(node.log().contains("REGISTERs over the per-source rate dropped"), "{}", node.log());
    // The device, from its own address with the right password, registers.
    let device = Device::new(node.ports.sip, id, "s3cret", "34020000001320000078", scratch.path("none.mp4"));
    assert_eq!(device.register(3600), 200);
}

/// SSRCs used to be sequential, and any host could connect first with the next one and
/// take the camera's stream. Now they are drawn at random and media for an invited device's
/// SSRC is taken from that device's address only.
#[test]
fn gb28181_media_is_taken_only_from_the_invited_device() {
    let scratch = Scratch::new("sec-ssrc");
    let node = Node::start(&scratch, &[]);
    let clip = ffmpeg::make_clip(&scratch.path("clip.mp4"), "libx264", 0, 4);
    let device = Device::new(node.ports.sip, "34020000001320000001", "", "34020000001320000002", clip.clone());
    device.withhold_media();
    assert_eq!(device.register(3600), 200);
    assert!(wait_until(Duration::from_secs(10), || !device.ssrcs.lock().unwrap().is_empty()), "no INVITE");
    let ssrc = device.ssrcs.lock().unwrap()[0];
    // Another host (127.0.0.2; any 127/8 address is local on Linux) sends RTP with that
    // SSRC first, over UDP to the same media port.
    let attacker = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 0];
    rtp.extend_from_slice(&ssrc.to_be_bytes());
    rtp.extend_from_slice(&[0, 0, 1, 0xba]);
    attacker.send_to(&rtp, ("127.0.0.1", node.ports.gb_media)).unwrap();
    assert!(node.wait_log("was given to the device at 127.0.0.1, not 127.0.0.2", Duration::from_secs(10)), "{}", node.log());
    assert!(node.stream_info("live/34020000001320000001_34020000001320000002").is_none_or(|s| s["publish"]["active"] != true));
    // A second invite (after a BYE) gets a new SSRC (drawn at random: the unit tests check
    // the format; here only that it changed).
    let second = http::post(node.ports.api, "/api/v1/gb28181/devices/34020000001320000001/channels/34020000001320000002/bye").unwrap();
    assert_eq!(second.status, 200);
    let again = http::post(node.ports.api, "/api/v1/gb28181/devices/34020000001320000001/channels/34020000001320000002/invite").unwrap();
    assert_eq!(again.status, 200);
    assert!(wait_until(Duration::from_secs(10), || device.ssrcs.lock().unwrap().len() >= 2));
    let next = device.ssrcs.lock().unwrap()[1];
    assert_ne!(next, ssrc, "a new dialog gets a new SSRC");
}

/// A media connection that drips bytes that never make a complete RTP packet used to be
/// kept forever (each read restarted the idle timer). It is closed once no complete packet
/// came for the first-packet time (10 s).
#[test]
fn a_media_connection_dripping_bytes_is_closed() {
    use std::io::{Read, Write};
    let scratch = Scratch::new("sec-drip");
    let node = Node::start(&scratch, &[]);
    let mut drip = std::net::TcpStream::connect(("127.0.0.1", node.ports.gb_media)).unwrap();
    drip.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    // Announces a 1,000-byte packet, then sends a byte every 2 s.
    drip.write_all(&[0x03, 0xe8]).unwrap();
    let mut closed = false;
    for _ in 0..15 {
        std::thread::sleep(Duration::from_secs(2));
        if drip.write_all(&[0]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 16];
        if matches!(drip.read(&mut buf), Ok(0)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a connection dripping bytes for 30 s is still open; log:\n{}", node.log());
    assert!(node.log().contains("no complete RTP packet"), "{}", node.log());
}

/// The API reads JSON whatever the Content-Type (curl -d), so a page in an operator's
/// browser could otherwise POST a form to it and, say, forward every stream elsewhere.
#[test]
fn cross_site_form_posts_cannot_change_the_node() {
    let scratch = Scratch::new("sec-csrf");
    let node = Node::start(&scratch, &[]);
    let body = br#"{"app":"live","stream":"cam","url":"rtmp://192.0.2.9:1/live/stolen"}"#;
    for headers in [&[("Origin", "http://evil.example"), ("Content-Type", "text/plain")][..], &[("Sec-Fetch-Site", "cross-site"), ("Content-Type", "application/x-www-form-urlencoded")][..]] {
        let response = http::send(node.ports.api, "POST", "/api/v1/forwards", headers, body).unwrap();
        assert_eq!(response.status, 403, "{headers:?}: {}", String::from_utf8_lossy(&response.body));
    }
    assert_eq!(node.api("/api/v1/forwards")["forwards"].as_array().map(Vec::len), Some(0));
    // curl -d (form type, no Origin) still works.
    let response = http::send(node.ports.api, "POST", "/api/v1/forwards", &[("Content-Type", "application/x-www-form-urlencoded")], body).unwrap();
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
}

/// Destinations carry platform stream keys; the API listed them and the log printed them.
/// Playlists used to be read out through ingest errors ("cannot open <first line>").
#[test]
fn secrets_stay_out_of_the_api_the_log_and_errors() {
    let scratch = Scratch::new("sec-secrets");
    let node = Node::start(&scratch, &[]);
    let key = "abcd-efgh-ijkl-mnop-SECRETKEY";
    let body = format!(r#"{{"app":"live","stream":"cam","url":"rtmp://192.0.2.9:1/live2/{key}"}}"#);
    let response = http::send(node.ports.api, "POST", "/api/v1/forwards", &[("Content-Type", "application/json")], body.as_bytes()).unwrap();
    assert_eq!(response.status, 200);
    assert!(wait_until(Duration::from_secs(10), || node.log().contains("forward")), "{}", node.log());
    let listed = String::from_utf8_lossy(&http::get(node.ports.api, "/api/v1/forwards").unwrap().body).into_owned();
    assert!(listed.contains("live2/abcd****") && !listed.contains("SECRETKEY"), "{listed}");
    assert!(!String::from_utf8_lossy(&response.body).contains("SECRETKEY"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(!node.log().contains("SECRETKEY"), "{}", node.log());

    let secret = scratch.path("notes.txt");
    std::fs::write(&secret, "TOPSECRET-first-line\nmore\n").unwrap();
    let body = format!(r#"{{"app":"live","stream":"leak","source":"{}"}}"#, secret.display());
    let response = http::send(node.ports.api, "POST", "/api/v1/ingests", &[("Content-Type", "application/json")], body.as_bytes()).unwrap();
    let text = String::from_utf8_lossy(&response.body).into_owned();
    assert!(response.status >= 400 && !text.contains("TOPSECRET"), "{} {text}", response.status);
    assert!(!node.log().contains("TOPSECRET"));
}

/// Keys and tokens that publishers and players put in their URLs (RTMP query, SRT stream id
/// fields, HTTP-FLV and WHEP queries) appear neither in the log, at debug level, nor in the
/// API's streams and clients, while the streams and clients themselves do.
#[test]
fn stream_keys_in_publish_and_play_urls_stay_out_of_the_log_and_the_api() {
    let scratch = Scratch::new("sec-keys");
    let node = Node::start(&scratch, &[("RUST_LOG", "debug")]);
    let source = ffmpeg::Source::default();
    let rtmp_url = format!("{}?secret=RTMPKEY1&token=RTMPKEY2", node.rtmp_url("live/cam"));
    let _rtmp = ffmpeg::publish(&rtmp_url, &source, &scratch, "rtmp");
    let srt_url = format!("srt://127.0.0.1:{}?streamid=#!::r=live/srtcam,m=publish,token=SRTKEY3,key=SRTKEY4", node.ports.srt);
    let _srt = ffmpeg::publish_ts(&srt_url, &source, &scratch, "srt");
    assert!(wait_until(Duration::from_secs(20), || node.api("/api/v1/streams")["streams"].as_array().is_some_and(|s| s.len() == 2)), "{}", node.log());
    let flv = format!("http://127.0.0.1:{}/live/cam.flv?token=FLVKEY5", node.ports.http);
    let mut player = ffmpeg::record(&flv, &scratch.path("out.flv"), Some(3.0), &scratch, "flv");
    // A real WHEP session with a token in its URL.
    let whep = estuary_tests::aiortc::whep_play(&format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=cam&token=WHEPKEY6", node.ports.api), 2, 1);
    assert_eq!(whep[0]["connected"], true, "{whep:?}");
    let clients = wait_until(Duration::from_secs(10), || node.api("/api/v1/clients")["clients"].as_array().is_some_and(|c| c.len() >= 3));
    let api = format!("{}{}", node.api("/api/v1/streams"), node.api("/api/v1/clients"));
    assert!(clients, "{api}");
    player.wait(Duration::from_secs(20));
    let log = node.log();
    assert!(api.contains("srtcam") && log.contains("live/cam") && log.contains("live/srtcam"), "{api}\n{log}");
    for key in ["RTMPKEY1", "RTMPKEY2", "SRTKEY3", "SRTKEY4", "FLVKEY5", "WHEPKEY6"] {
        assert!(!api.contains(key), "{key} in the API: {api}");
        assert!(!log.contains(key), "{key} in the log: {log}");
    }
}

/// With no API credentials configured, another host may neither read the API nor change the
/// node or mint tokens (WHIP stays public). Runs in a private network namespace with a second address on `lo`,
/// so the request really comes from a non-loopback address.
#[test]
fn anonymous_remote_callers_cannot_change_the_node_or_mint_tokens() {
    let Some(()) = private_network_or_skip("security") else { return };
    // A second, non-loopback address on `lo`: a connection to it comes from it.
    assert!(std::process::Command::new("ip").args(["addr", "add", "192.0.2.1/32", "dev", "lo"]).status().unwrap().success());
    let scratch = Scratch::new("sec-remote");
    let _node = Node::start_with_defaults(&scratch);
    let remote = |method: &str, path: &str, body: &str| -> u16 {
        use std::io::{Read, Write};
        let socket = std::net::TcpStream::connect("192.0.2.1:1985").expect("connect to the node's non-loopback address");
        let mut socket = socket;
        write!(socket, "{method} {path} HTTP/1.1\r\nHost: 192.0.2.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut answer = String::new();
        let _ = socket.read_to_string(&mut answer);
        answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    assert_eq!(remote("GET", "/api/v1/streams", ""), 403, "reads need credentials from other hosts");
    assert_eq!(remote("GET", "/api/v1/clients", ""), 403);
    assert_eq!(remote("GET", "/metrics", ""), 403);
    assert_eq!(remote("POST", "/rtc/v1/whep/?app=live&stream=x", "v=0"), 400, "WHEP is public (a bad offer is 400)");
    assert_eq!(remote("POST", "/api/v1/tokens", r#"{"action":"play","app":"live","stream":"x","ttl_seconds":60}"#), 403);
    assert_eq!(remote("POST", "/api/v1/forwards", r#"{"app":"live","stream":"x","url":"rtmp://192.0.2.9/live/x"}"#), 403);
    assert_eq!(remote("DELETE", "/api/v1/clients/1", ""), 403);
    // The same calls from this machine work.
    assert_eq!(http::get(1985, "/api/v1/streams").unwrap().status, 200);
    let local = http::send(1985, "POST", "/api/v1/forwards", &[("Content-Type", "application/json")], br#"{"app":"live","stream":"x","url":"rtmp://192.0.2.9/live/y"}"#).unwrap();
    assert_eq!(local.status, 200, "{}", String::from_utf8_lossy(&local.body));
}

/// Through the API, the node plays files only from `ingest.media_dir` and connects only to public
/// addresses (`forward.deny_private`, on by default); with the check off, the same requests pass.
#[test]
fn api_ingests_and_forwards_cannot_reach_outside_the_media_dir_or_into_private_networks() {
    let scratch = Scratch::new("sec-outside");
    let media = scratch.path("media");
    std::fs::create_dir_all(&media).unwrap();
    let clip = ffmpeg::make_clip(&media.join("clip.mp4"), "libx264", 0, 2);
    let outside = ffmpeg::make_clip(&scratch.path("outside.mp4"), "libx264", 0, 2);
    std::os::unix::fs::symlink(&outside, media.join("link.mp4")).unwrap();
    let node = Node::start(&scratch, &[("ESTUARY_INGEST__MEDIA_DIR", media.to_str().unwrap())]);
    let post = |path: &str, body: String| -> (u16, String) {
        let response = http::send(node.ports.api, "POST", path, &[("Content-Type", "application/json")], body.as_bytes()).unwrap();
        (response.status, String::from_utf8_lossy(&response.body).into_owned())
    };
    let ingest = |stream: &str, source: &str| post("/api/v1/ingests", format!(r#"{{"app":"live","stream":"{stream}","source":"{source}"}}"#));
    // A playlist in the media directory that lists a file outside it.
    std::fs::write(media.join("list.m3u"), format!("clip.mp4\n{}\n", outside.display())).unwrap();
    let missing = format!("{}/missing.mp4", scratch.0.display());
    for (stream, source) in [("passwd", "/etc/passwd".to_string()), ("dots", format!("{}/../outside.mp4", media.display())), ("dots2", "../outside.mp4".into()), ("link", "link.mp4".into()), ("list", "list.m3u".into()), ("missing", missing)] {
        let (status, text) = ingest(stream, &source);
        assert!(status == 400 && text.contains("is not a file in ingest.media_dir"), "{source}: {status} {text}");
    }
    // Whether a path outside exists is not told: a missing one gets the same answer.
    let (_, passwd) = ingest("passwd", "/etc/passwd");
    let (_, nothing) = ingest("passwd", "/etc/no-such-file");
    assert_eq!(passwd.replace("/etc/passwd", "X"), nothing.replace("/etc/no-such-file", "X"));
    for source in ["rtmp://127.0.0.1/live/x", "srt://10.1.2.3:10080", "rtmp://localhost/live/x", "rtmp://[::ffff:7f00:1]/live/x", "srt://[64:ff9b::a00:5]:10080"] {
        let (status, text) = ingest("url", source);
        assert!(status == 400 && text.contains("forward.deny_private"), "{source}: {status} {text}");
    }
    // HTTP can redirect anywhere: with the check on, not through the API at all.
    let (status, text) = ingest("url", "http://198.51.100.20/live.m3u8");
    assert!(status == 400 && text.contains("forward.deny_private"), "{status} {text}");
    for url in ["rtmp://127.0.0.1:1935/live/copy", "rtmp://[::1]/live/copy", "srt://192.168.1.10:10080", "rtmp://localhost/live/copy"] {
        let (status, text) = post("/api/v1/forwards", format!(r#"{{"app":"live","stream":"x","url":"{url}"}}"#));
        assert!(status == 400 && text.contains("forward.deny_private"), "{url}: {status} {text}");
    }
    assert_eq!(node.api("/api/v1/ingests")["total"], 0);
    assert_eq!(node.api("/api/v1/forwards")["total"], 0);
    // What is inside the media directory plays, by name or by path.
    assert_eq!(ingest("byname", "clip.mp4").0, 200);
    assert_eq!(ingest("bypath", clip.to_str().unwrap()).0, 200);
    drop(node);

    let open = Node::start(&Scratch::new("sec-outside-open"), &[("ESTUARY_INGEST__MEDIA_DIR", media.to_str().unwrap()), ("ESTUARY_FORWARD__DENY_PRIVATE", "false")]);
    let response = http::send(open.ports.api, "POST", "/api/v1/forwards", &[("Content-Type", "application/json")], br#"{"app":"live","stream":"x","url":"rtmp://127.0.0.1:1935/live/copy"}"#).unwrap();
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
}

/// One publisher, one keyframe, then 2,000 non-key frames of 1 MB: the GOP cache and the HLS
/// cutter (HLS is on by default) used to hold all of it (RSS 11 MiB → 1.9 GiB, and it stayed
/// after the publisher left). With `stream.gop_cache_max_bytes` and `hls.max_segment_bytes`
/// (64 MiB each by default; the live package a player starts holds at most three times the
/// latter) the node's memory stays bounded; the bound asserted here,
/// 400 MiB above the starting RSS, is the one docs/SECURITY.md documents.
#[test]
fn a_publisher_of_huge_frames_cannot_grow_memory_without_bound() {
    use estuary_protocols::container::flv::{self, FlvDemuxer, TAG_VIDEO};
    use estuary_protocols::media::MediaFrame;
    let scratch = Scratch::new("sec-memory");
    let node = Node::start(&scratch, &[("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "500")]);
    // A real H.264 sequence header and keyframe, from ffmpeg.
    let clip = scratch.path("one.flv");
    let mut make = std::process::Command::new("ffmpeg");
    make.args(["-hide_banner", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-f", "flv", "-y"]).arg(&clip);
    assert!(ffmpeg::run(make, Duration::from_secs(60)).success());
    let mut demuxer = FlvDemuxer::new(16 << 20);
    demuxer.push(&std::fs::read(&clip).unwrap());
    let mut frames: Vec<MediaFrame> = Vec::new();
    while let Ok(Some(tag)) = demuxer.next_tag() {
        if tag.tag_type == TAG_VIDEO {
            if let Ok(Some(frame)) = flv::video_body_to_frame(tag.timestamp as i64, &tag.body) {
                frames.push(frame);
            }
        }
    }
    let config = frames.iter().find(|f| f.config).cloned().expect("sequence header");
    let key = frames.iter().find(|f| f.keyframe && !f.config).cloned().expect("keyframe");

    let start_kb = node.rss_kb();
    let mut publisher = estuary_tests::rtmp_raw::Publisher::start(node.ports.rtmp, "live", "huge");
    publisher.send(&config).unwrap();
    publisher.send(&key).unwrap();
    // A player asks for HLS, so the stream's live package (on demand) takes the flood too.
    let http_port = node.ports.http;
    let hls_player = std::thread::spawn(move || http::get(http_port, "/live/huge.m3u8").map(|r| r.status));
    // A non-IDR slice NAL (type 1) of 1 MB, length-prefixed, 40 ms apart.
    let mut payload = (1_000_000u32 - 4).to_be_bytes().to_vec();
    payload.push(0x41);
    payload.resize(1_000_000, 0x5a);
    let payload = bytes::Bytes::from(payload);
    let mut peak_kb = start_kb;
    for n in 1..=2000i64 {
        let frame = MediaFrame { dts: key.dts + n * 40 * key.timebase.den as i64 / (1000 * key.timebase.num as i64), pts: key.pts + n * 40 * key.timebase.den as i64 / (1000 * key.timebase.num as i64), keyframe: false, config: false, payload: payload.clone(), ..key.clone() };
        publisher.send(&frame).unwrap_or_else(|e| panic!("frame {n}: {e}; log:\n{}", node.log()));
        if n % 100 == 0 {
            peak_kb = peak_kb.max(node.rss_kb());
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    peak_kb = peak_kb.max(node.rss_kb());
    assert_eq!(hls_player.join().expect("HLS player").ok(), Some(200), "the live package listed no segment; log:\n{}", node.log());
    drop(publisher);
    assert!(wait_until(Duration::from_secs(20), || node.stream_info("live/huge").is_none_or(|s| s["publish"]["active"] != true)));
    std::thread::sleep(Duration::from_secs(2));
    let after_kb = node.rss_kb();
    eprintln!("RSS: start {start_kb} KiB, peak {peak_kb} KiB, after the publisher left {after_kb} KiB");
    assert!(peak_kb < start_kb + 400 * 1024, "RSS grew from {start_kb} KiB to {peak_kb} KiB");
    assert!(after_kb < start_kb + 400 * 1024, "RSS after the publisher left: {after_kb} KiB");
    assert!(node.log().contains("gop_cache_max_bytes") && node.log().contains("max_segment_bytes"), "the caps must say they acted:\n{}", node.log());
}

fn status(port: u16, path: &str) -> u16 {
    http::status_only(port, path).unwrap_or(0)
}

/// With `auth.require_token = ["play"]` every way to watch a stream needs the token: RTMP,
/// SRT, HTTP-FLV, HTTP-TS, HLS playlists and segments, DASH manifests and segments, WHEP,
/// DVR ranges and recording files. Segments and `/dvr/files/` used to answer anyone who
/// guessed their names.
#[test]
fn every_play_path_needs_the_token() {
    let scratch = Scratch::new("sec-tokens");
    let env = [("ESTUARY_AUTH__TOKEN_SECRET", "s3cret"), ("ESTUARY_AUTH__REQUIRE_TOKEN", "[\"play\"]"), ("ESTUARY_DASH__ENABLED", "true"), ("ESTUARY_DVR__ENABLED", "true")];
    let node = Node::start(&scratch, &env);
    let mut mint = std::process::Command::new(estuary_tests::estuary_bin());
    mint.args(["token", "--action", "play", "--stream", "live/cam", "--ttl", "600"]).env("ESTUARY_AUTH__TOKEN_SECRET", "s3cret");
    let minted = ffmpeg::run(mint, Duration::from_secs(10));
    let token = minted.stdout.trim().to_string();
    assert!(minted.success() && !token.is_empty(), "{}", minted.stderr);
    let _publisher = ffmpeg::publish(&node.rtmp_url("live/cam"), &ffmpeg::Source::default(), &scratch, "publish");
    node.wait_live("live/cam", Duration::from_secs(20));
    let http_port = node.ports.http;
    assert!(wait_until(Duration::from_secs(30), || status(http_port, &format!("/live/cam.m3u8?token={token}")) == 200 && status(http_port, &format!("/live/cam.mpd?token={token}")) == 200), "no playlist; log:\n{}", node.log());

    // Live paths.
    for path in ["/live/cam.flv", "/live/cam.ts", "/live/cam.m3u8", "/live/cam.mpd", "/live/cam_master.m3u8"] {
        assert_eq!(status(http_port, path), 403, "{path} without a token");
    }
    assert_eq!(status(http_port, &format!("/live/cam.flv?token={token}")), 200);
    let (ok, _) = ffmpeg::decode(&node.rtmp_url("live/cam"), 1);
    assert!(!ok, "RTMP play without a token must be refused");
    let (ok, errors) = ffmpeg::decode(&format!("{}?token={token}", node.rtmp_url("live/cam")), 1);
    assert!(ok, "RTMP with the token: {errors}");
    let (ok, _) = ffmpeg::decode(&node.srt_url("live/cam", false, ""), 1);
    assert!(!ok, "SRT play without a token must be refused");

    // HLS and DASH segments: refused bare, served with the token the playlist passes on.
    let playlist = String::from_utf8_lossy(&http::get(http_port, &format!("/live/cam.m3u8?token={token}")).unwrap().body).into_owned();
    let segment = playlist.lines().find(|l| !l.starts_with('#') && !l.is_empty()).expect("a segment").to_string();
    assert!(segment.ends_with(&format!("?token={token}")), "the playlist passes the token on: {segment}");
    let bare = segment.split('?').next().unwrap();
    assert_eq!(status(http_port, &format!("/live/{bare}")), 403, "HLS segment {bare} without a token");
    assert_eq!(status(http_port, &format!("/live/{segment}")), 200);
    let mpd = String::from_utf8_lossy(&http::get(http_port, &format!("/live/cam.mpd?token={token}")).unwrap().body).into_owned();
    let init = mpd.split("initialization=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("an init segment").replace("&amp;", "&");
    assert!(init.contains("?token="), "{init}");
    assert_eq!(status(http_port, &format!("/live/{}", init.split('?').next().unwrap())), 403, "DASH init segment without a token");
    assert_eq!(status(http_port, &format!("/live/{init}")), 200);

    // WHEP.
    let players = estuary_tests::aiortc::whep_play(&format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=cam", node.ports.api), 1, 1);
    let text = format!("{players:?}");
    assert_eq!(players[0]["status"], 403, "WHEP without a token: {text}");

    // Recordings: the range URL and the files as listed.
    assert!(wait_until(Duration::from_secs(20), || node.api("/api/v1/recordings?app=live&stream=cam")["recordings"].as_array().is_some_and(|r| !r.is_empty())));
    let url = node.api("/api/v1/recordings?app=live&stream=cam")["recordings"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(status(http_port, &url), 403, "{url} without a token");
    assert_eq!(status(http_port, &format!("{url}?token={token}")), 200, "{url} with the token");
    assert_eq!(status(http_port, "/dvr/live/cam.mp4"), 403);
    assert_eq!(status(http_port, "/dvr/files/live/not-a-recording.mp4"), 404, "only indexed recordings are served");
}

/// GB28181 cameras and ingests used to publish without any access decision. They cannot
/// carry a URL token (a camera proves itself with the SIP digest, an ingest with the API's
/// rights), but CIDR rules and the `on_publish` hook now decide for them as for everyone.
#[test]
fn gb28181_and_ingest_publishing_ask_the_on_publish_hook() {
    let hooks = estuary_tests::hook_server::HookServer::start(|body| if body["stream"].as_str().unwrap_or("").starts_with("denied") { "1".into() } else { "0".into() });
    let url = hooks.url("/hooks");
    let scratch = Scratch::new("sec-hooks");
    let node = Node::start(&scratch, &[("ESTUARY_HOOKS__ON_PUBLISH", &format!("[\"{url}\"]")), ("ESTUARY_GB28181__STREAM_NAME", "denied_[channel]"), ("ESTUARY_INGEST__MEDIA_DIR", scratch.0.to_str().unwrap())]);
    let clip = ffmpeg::make_clip(&scratch.path("clip.mp4"), "libx264", 0, 4);
    let device = Device::new(node.ports.sip, "34020000001320000001", "", "34020000001320000002", clip.clone());
    assert_eq!(device.register(3600), 200);
    assert!(node.wait_log("hook denied", Duration::from_secs(15)) || node.wait_log("access refused", Duration::from_secs(5)), "{}", node.log());
    assert!(hooks.calls_of("on_publish").iter().any(|c| c["stream"] == "denied_34020000001320000002"), "{:?}", hooks.calls());
    assert!(node.stream_info("live/denied_34020000001320000002").is_none_or(|s| s["publish"]["active"] != true));

    let body = format!(r#"{{"app":"live","stream":"denied_tv","source":"{}"}}"#, clip.display());
    let _ = http::send(node.ports.api, "POST", "/api/v1/ingests", &[("Content-Type", "application/json")], body.as_bytes()).unwrap();
    assert!(wait_until(Duration::from_secs(15), || hooks.calls_of("on_publish").iter().any(|c| c["stream"] == "denied_tv")), "{:?}", hooks.calls());
    std::thread::sleep(Duration::from_secs(2));
    assert!(node.stream_info("live/denied_tv").is_none_or(|s| s["publish"]["active"] != true), "a denied ingest must not publish");
}

/// RTMPS in: ffmpeg publishes over TLS (the node's self-signed certificate) and plays back over
/// RTMPS; the node sees the client's own address, not the loopback hop of its TLS front end.
/// In a private network namespace with a second address on `lo`, so the client's address is
/// not a loopback one.
#[test]
fn rtmps_publishers_and_players_are_served_with_their_own_address() {
    let Some(()) = private_network_or_skip("security") else { return };
    assert!(std::process::Command::new("ip").args(["addr", "add", "192.0.2.2/32", "dev", "lo"]).status().unwrap().success());
    let scratch = Scratch::new("sec-rtmps");
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "192.0.2.2".to_string()]).expect("self-signed certificate");
    let (crt, key) = (scratch.path("server.crt"), scratch.path("server.key"));
    std::fs::write(&crt, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.key_pair.serialize_pem()).unwrap();
    let port = estuary_tests::free_port();
    let listen = format!("0.0.0.0:{port}");
    let node = Node::start(&scratch, &[("ESTUARY_HTTPS__CERT_FILE", crt.to_str().unwrap()), ("ESTUARY_HTTPS__KEY_FILE", key.to_str().unwrap()), ("ESTUARY_RTMPS__LISTEN", &listen), ("ESTUARY_RTMP__HANDSHAKE_TIMEOUT_MS", "2000")]);
    let url = format!("rtmps://192.0.2.2:{port}/live/secure");
    let _publisher = ffmpeg::publish(&url, &ffmpeg::Source { gop: 25, ..ffmpeg::Source::default() }, &scratch, "publisher");
    node.wait_live("live/secure", Duration::from_secs(20));
    let clients = node.api("/api/v1/clients");
    let publisher = clients["clients"].as_array().and_then(|c| c.iter().find(|c| c["publish"] == true)).cloned().unwrap_or_default();
    assert!(publisher["ip"].as_str().unwrap_or("").starts_with("192.0.2.2:"), "the publisher's address: {clients}");
    let streams = ffmpeg::probe_streams(&url);
    assert!(ffmpeg::stream_of(&streams, "video").is_some() && ffmpeg::stream_of(&streams, "audio").is_some(), "{streams:?}");
    let (clean, log) = ffmpeg::decode(&url, 3);
    assert!(clean, "RTMPS playback does not decode clean:\n{log}");
    // Plain RTMP on the TLS port is a failed TLS handshake for that client alone.
    let failed_handshakes = || node.log().lines().filter(|l| l.contains("RTMPS connection closed") && l.contains("TLS handshake")).count();
    let before = failed_handshakes();
    let plain = format!("rtmp://192.0.2.2:{port}/live/secure");
    let mut probe = std::process::Command::new("ffprobe");
    probe.args(["-v", "error", "-rw_timeout", "5000000", "-show_streams", &plain]);
    assert!(!ffmpeg::run(probe, Duration::from_secs(20)).success(), "plain RTMP was served on the RTMPS port");
    assert!(wait_until(Duration::from_secs(10), || failed_handshakes() > before), "{}", node.log());
    // A client that completes TLS and then says nothing is closed with its RTMP session (the
    // RTMP handshake timeout, 2 s here), and the node lets go of both of its sockets even
    // while the client keeps its end open (it is told EOF, and then holds on for 20 s).
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", node.pid())).map(|d| d.count()).unwrap_or(0);
    let baseline = (0..10).map(|_| { std::thread::sleep(Duration::from_millis(100)); fds() }).min().unwrap_or(0);
    let silent = format!(
        "import socket, ssl, sys, time\nctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\ns = ctx.wrap_socket(socket.create_connection(('192.0.2.2', {port})), server_hostname='x')\ns.settimeout(60)\nprint(len(s.recv(1)), flush=True)\ntime.sleep(20)"
    );
    let mut client = std::process::Command::new("python3").args(["-c", &silent]).stdout(std::process::Stdio::piped()).spawn().expect("python3");
    let mut told = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(client.stdout.take().unwrap()), &mut told).unwrap();
    assert_eq!(told.trim(), "0", "a silent RTMPS client was not told EOF");
    assert!(wait_until(Duration::from_secs(15), || fds() <= baseline), "the node still holds the silent client's sockets: {} open, {baseline} before", fds());
    let _ = client.kill();
    assert!(node.stream_info("live/secure").is_some_and(|s| s["publish"]["active"] == true));
}
