//! GB28181: a simulated device registers over SIP (digest), is invited and plays over HTTP-FLV
//! and HLS, survives media loss (re-INVITE), ends with unregistration, and a wrong password is
//! refused; media without SIP (SRS 6's `/gb/v1/publish/`); broken cameras (bogus RTP lengths,
//! truncated PS, an SSRC nobody announced, malformed SIP) cost only their own connection; a
//! camera whose UDP packets arrive out of order plays clean.

use estuary_tests::ffmpeg::{self, decode, probe_streams, stream_of};
use estuary_tests::gb_camera::{Camera, Fault};
use estuary_tests::gb_device::Device;
use estuary_tests::{http, wait_until, Node, Scratch};
use std::process::Command;
use std::time::Duration;

fn make_clip(scratch: &Scratch) -> std::path::PathBuf {
    make_clip_with(scratch, "libx264")
}

fn make_clip_with(scratch: &Scratch, encoder: &str) -> std::path::PathBuf {
    ffmpeg::make_clip(&scratch.path(&format!("camera-{encoder}.mp4")), encoder, 0, 10)
}

#[test]
fn sip_device_registers_is_invited_plays_and_recovers() {
    let scratch = Scratch::new("gb-sip");
    let clip = make_clip(&scratch);
    let node = Node::start(&scratch, &[("ESTUARY_GB28181__PASSWORD", "s3cret-pass"), ("ESTUARY_HLS__FRAGMENT_MS", "2000"), ("ESTUARY_GB28181__KEEPALIVE_TIMEOUT_S", "10")]);
    let (device_id, channel) = ("34020000001110000001", "34020000001320000001");

    // A wrong password: 401 then 403.
    let intruder = Device::new(node.ports.sip, "34020000001110000099", "wrong-password", channel, clip.clone());
    assert_eq!(intruder.register(3600), 403);
    drop(intruder);
    // Malformed SIP is dropped with a reason.
    let device = Device::new(node.ports.sip, device_id, "s3cret-pass", channel, clip.clone());
    device.send_raw(b"HELLO WORLD\r\n\r\n");
    device.send_raw(&[0xff; 300]);
    assert_eq!(device.register(3600), 200);

    // It appears with its channel, is invited, and plays.
    let stream = format!("live/{device_id}_{channel}");
    let info = node.wait_live(&stream, Duration::from_secs(30));
    let devices = node.api("/api/v1/gb28181/devices");
    let listed = devices["devices"].as_array().unwrap().iter().find(|d| d["id"] == device_id).cloned().expect("device listed");
    assert_eq!(listed["online"], true);
    assert_eq!(listed["channels"][0]["id"], channel);
    assert_eq!(listed["channels"][0]["name"], "Gate");
    let flv = node.flv_url(&stream);
    let streams = probe_streams(&flv);
    let video = stream_of(&streams, "video").expect("video");
    assert_eq!((video["codec_name"].as_str(), video["width"].as_u64(), video["height"].as_u64()), (Some("h264"), Some(320), Some(240)));
    assert!(wait_until(Duration::from_secs(20), || http::get(node.ports.http, &format!("/{stream}.m3u8")).is_ok_and(|r| r.status == 200)), "no HLS");
    let hls = format!("http://127.0.0.1:{}/{stream}.m3u8", node.ports.http);
    let decoders: Vec<_> = [flv.clone(), hls].into_iter().map(|url| std::thread::spawn(move || (url.clone(), decode(&url, 20)))).collect();
    for d in decoders {
        let (url, (ok, errors)) = d.join().unwrap();
        assert!(ok && errors.trim().is_empty(), "{url}: {errors}");
    }
    assert!(node.log().contains("malformed SIP message dropped"), "log:\n{}", node.log());

    // Media loss: the node sends BYE, invites again, and the stream resumes.
    let invites = device.invites.load(std::sync::atomic::Ordering::SeqCst);
    device.drop_media();
    assert!(wait_until(Duration::from_secs(30), || device.invites.load(std::sync::atomic::Ordering::SeqCst) > invites), "no re-INVITE; log:\n{}", node.log());
    assert!(
        wait_until(Duration::from_secs(30), || node.stream_info(&stream).is_some_and(|s| s["publish"]["active"] == true && s["publish"]["cid"] != info["publish"]["cid"])),
        "stream did not resume after re-INVITE"
    );
    let (ok, errors) = decode(&flv, 3);
    assert!(ok && errors.trim().is_empty(), "{errors}");

    // Unregistration ends the stream.
    assert_eq!(device.register(0), 200);
    assert!(
        wait_until(Duration::from_secs(40), || node.stream_info(&stream).is_none_or(|s| s["publish"]["active"] != true)),
        "stream still published after unregister; log:\n{}",
        node.log()
    );

    // The device list (with its catalog) survives a restart; the device is offline until it
    // registers again.
    drop(device);
    let mut node = node;
    node.stop();
    node.restart();
    let devices = node.api("/api/v1/gb28181/devices");
    let remembered = devices["devices"].as_array().unwrap().iter().find(|d| d["id"] == device_id).cloned().expect("device remembered");
    assert_eq!(remembered["online"], false);
    assert_eq!(remembered["channels"][0]["id"], channel);
}

fn announce(node: &Node, id: &str, ssrc: &str) -> http::Response {
    let body = format!(r#"{{"id":"{id}","ssrc":"{ssrc}"}}"#);
    http::send(node.ports.api, "POST", "/gb/v1/publish/", &[("Content-Type", "application/json")], body.as_bytes()).expect("API")
}

#[test]
fn camera_media_plays_and_broken_cameras_are_dropped_alone() {
    let scratch = Scratch::new("gb28181");
    let clip = make_clip(&scratch);
    let node = Node::start(&scratch, &[("ESTUARY_HLS__FRAGMENT_MS", "2000")]);

    let id = "34020000001320000001";
    let answer = announce(&node, id, "0200000001");
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["port"].as_u64(), Some(node.ports.gb_media as u64));
    assert_eq!(json["is_tcp"], true);
    assert_eq!(announce(&node, "cam", "not-a-number").status, 400);

    let camera = Camera::start(node.ports.gb_media, 200_000_001, &clip, 40.0, Fault::None);
    let stream = format!("live/{id}");
    let info = node.wait_live(&stream, Duration::from_secs(20));
    assert_eq!(info["publish"]["protocol"], "gb28181", "{info}");

    // Broken cameras alongside: each is dropped (or its bad bytes skipped), the first plays on.
    assert_eq!(announce(&node, "bogus", "0200000002").status, 200);
    assert_eq!(announce(&node, "torn", "0200000003").status, 200);
    let bogus = Camera::start(node.ports.gb_media, 200_000_002, &clip, 20.0, Fault::BogusLength { after: 60 });
    let torn = Camera::start(node.ports.gb_media, 200_000_003, &clip, 20.0, Fault::TruncatedPs { after: 60 });
    let stranger = Camera::start(node.ports.gb_media, 999, &clip, 5.0, Fault::None);
    // A camera over UDP whose packets arrive out of order plays clean (reorder buffer).
    assert_eq!(announce(&node, "shuffled", "0200000004").status, 200);
    let shuffled = Camera::start_over(node.ports.gb_media, 200_000_004, &clip, 40.0, Fault::Reorder, false, true);

    let flv = node.flv_url(&stream);
    let streams = probe_streams(&flv);
    let video = stream_of(&streams, "video").expect("video");
    assert_eq!((video["codec_name"].as_str(), video["width"].as_u64(), video["height"].as_u64()), (Some("h264"), Some(320), Some(240)), "{video}");
    assert!(stream_of(&streams, "audio").is_some_and(|a| a["codec_name"] == "aac"), "{streams:?}");
    let hls = format!("http://127.0.0.1:{}/{stream}.m3u8", node.ports.http);
    assert!(wait_until(Duration::from_secs(20), || http::get(node.ports.http, &format!("/{stream}.m3u8")).is_ok_and(|r| r.status == 200)), "no HLS");
    node.wait_live("live/shuffled", Duration::from_secs(20));
    let decoders: Vec<_> = [flv.clone(), hls, node.flv_url("live/shuffled")].into_iter().map(|url| std::thread::spawn(move || (url.clone(), decode(&url, 20)))).collect();
    for d in decoders {
        let (url, (ok, errors)) = d.join().unwrap();
        assert!(ok && errors.trim().is_empty(), "{url}: {errors}\nlog:\n{}", node.log());
    }
    assert!(shuffled.finish().is_ok());

    let log = node.log();
    assert!(log.contains("bad framing"), "bogus RTP length not reported:\n{log}");
    assert!(log.contains("unknown SSRC 999"), "unknown SSRC not reported:\n{log}");
    assert!(bogus.finish().is_err() || log.contains("bad framing"));
    assert!(stranger.finish().is_err() || log.contains("unknown SSRC 999"));
    drop(torn);
    // The good camera was never interrupted.
    assert_eq!(node.stream_info(&stream).unwrap()["publish"]["cid"], info["publish"]["cid"]);
    assert!(camera.finish().is_ok());
}

#[test]
fn h265_camera_with_g711_audio_over_udp_plays_over_hls_ts() {
    let scratch = Scratch::new("gb-hevc");
    let clip = make_clip_with(&scratch, "libx265");
    // This camera is asked for RTP over UDP, and its stream is named by a pattern.
    let node = Node::start(&scratch, &[("ESTUARY_HLS__FRAGMENT_MS", "2000"), ("ESTUARY_GB28181__MEDIA_TRANSPORT", "udp"), ("ESTUARY_GB28181__STREAM_NAME", "cam-[channel]")]);
    let (device_id, channel) = ("34020000001110000002", "34020000001320000002");
    let device = Device::new_with(node.ports.sip, device_id, "", channel, clip, true);
    assert_eq!(device.register(3600), 200);
    let stream = format!("live/cam-{channel}");
    let info = node.wait_live(&stream, Duration::from_secs(30));
    assert_eq!(info["video"]["codec"], "H265", "{info}");
    assert!(node.log().contains("transport=\"udp\"") || node.log().contains("transport=udp"), "media did not come over UDP:\n{}", node.log());
    assert!(wait_until(Duration::from_secs(30), || http::get(node.ports.http, &format!("/{stream}.m3u8")).is_ok_and(|r| r.status == 200 && String::from_utf8_lossy(&r.body).matches("#EXTINF").count() >= 2)), "no HLS");
    let hls = format!("http://127.0.0.1:{}/{stream}.m3u8", node.ports.http);
    let streams = probe_streams(&hls);
    let video = stream_of(&streams, "video").expect("video");
    assert_eq!((video["codec_name"].as_str(), video["width"].as_u64(), video["height"].as_u64()), (Some("hevc"), Some(320), Some(240)), "{video}");
    // G.711 A-law from the camera arrives as AAC.
    let audio = stream_of(&streams, "audio").unwrap_or_else(|| panic!("no audio: {streams:?}"));
    assert_eq!((audio["codec_name"].as_str(), audio["sample_rate"].as_str()), (Some("aac"), Some("8000")), "{audio}");
    assert!(stream_of(&probe_streams(&node.flv_url(&stream)), "audio").is_some_and(|a| a["codec_name"] == "aac"));
    let ts = format!("http://127.0.0.1:{}/{stream}.ts", node.ports.http);
    assert_eq!(stream_of(&probe_streams(&ts), "video").map(|v| v["codec_name"].clone()), Some(serde_json::json!("hevc")));
    let (ok, errors) = decode(&hls, 20);
    assert!(ok && errors.trim().is_empty(), "{errors}");
}

/// Runs sipp's device scenario over `transport` (`u1` UDP, `t1` TCP); returns its exit
/// success and output.
fn sipp(node: &Node, transport: &str, device: &str, password: &str) -> (bool, String) {
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/register.xml");
    // sipp binds its local port for the transport it uses.
    let local = if transport.starts_with('t') { estuary_tests::free_port() } else { estuary_tests::free_udp_port() };
    let mut command = Command::new("sipp");
    command
        .args(["-sf"])
        .arg(&scenario)
        .args(["-t", transport, "-s", device, "-au", device, "-ap", password, "-m", "1", "-timeout", "20s", "-timeout_error", "-i", "127.0.0.1", "-p", &local.to_string(), "-nostdin"])
        .arg(format!("127.0.0.1:{}", node.ports.sip));
    let output = ffmpeg::run(command, Duration::from_secs(60));
    (output.success(), format!("{}{}", output.stdout, output.stderr))
}

#[test]
fn sipp_devices_register_over_udp_and_tcp() {
    let scratch = Scratch::new("gb-sipp");
    let node = Node::start(&scratch, &[("ESTUARY_GB28181__PASSWORD", "s3cret-pass"), ("ESTUARY_GB28181__AUTO_INVITE", "false")]);
    for (transport, device) in [("u1", "34020000001110000011"), ("t1", "34020000001110000012")] {
        let (ok, output) = sipp(&node, transport, device, "s3cret-pass");
        assert!(ok, "sipp over {transport} failed:\n{output}\nnode log:\n{}", node.log());
        let devices = node.api("/api/v1/gb28181/devices");
        assert!(devices["devices"].as_array().unwrap().iter().any(|d| d["id"] == device && d["online"] == true), "{devices}");
    }
    let (ok, _) = sipp(&node, "u1", "34020000001110000013", "not-the-password");
    assert!(!ok, "a wrong password registered");
    assert!(node.log().contains("GB28181 registration refused"), "{}", node.log());
}
