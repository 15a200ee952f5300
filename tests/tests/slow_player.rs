//! A player that stops reading must not slow the publisher or other players, must lose whole
//! GOPs and then be disconnected, and must not make the node's memory grow.

use estuary_tests::ffmpeg::{decode, probe_packets, publish, record, Source};
use estuary_tests::{rtmp_raw, Node, Scratch};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn stalled_players_are_cut_off_without_hurting_the_publisher_or_others() {
    let scratch = Scratch::new("slow");
    let node = Node::start(
        &scratch,
        &[("ESTUARY_STREAM__PLAYER_QUEUE_FRAMES", "64"), ("ESTUARY_STREAM__SLOW_PLAYER_TIMEOUT_MS", "3000"), ("ESTUARY_RTMP__SEND_TIMEOUT_MS", "5000")],
    );
    // A high-bitrate source (about 10 Mbit/s) so a stalled reader fills the kernel's socket
    // buffers within seconds.
    let source = Source { size: "640x360", qp: Some(0), ..Source::default() };
    let mut publisher = publish(&node.rtmp_url("live/busy"), &source, &scratch, "publisher");
    node.wait_live("live/busy", Duration::from_secs(20));

    let healthy_rtmp = scratch.path("healthy-rtmp.flv");
    let healthy_flv = scratch.path("healthy-http.flv");
    let mut rtmp_player = record(&node.rtmp_url("live/busy"), &healthy_rtmp, Some(30.0), &scratch, "rtmp-player");
    let mut flv_player = record(&node.flv_url("live/busy"), &healthy_flv, Some(30.0), &scratch, "flv-player");

    // Two players that stop reading right after they start: one RTMP, one HTTP-FLV.
    let mut stalled_rtmp = rtmp_raw::playing(node.ports.rtmp, "live", "busy");
    let mut stalled_http = TcpStream::connect(("127.0.0.1", node.ports.http)).expect("connect HTTP");
    stalled_http.write_all(b"GET /live/busy.flv HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    stalled_http.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");

    std::thread::sleep(Duration::from_secs(3));
    let rss_start = node.rss_kb();
    let mut rss_max = rss_start;
    let stall_end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < stall_end {
        rss_max = rss_max.max(node.rss_kb());
        std::thread::sleep(Duration::from_millis(500));
    }

    let info = node.stream_info("live/busy").expect("stream listed");
    assert!(info["frames_dropped"].as_u64().unwrap_or(0) > 0, "no frames dropped for the stalled players: {info}");
    assert!(publisher.running(), "publisher died");
    assert!(node.log().contains("player too slow for too long; disconnecting it"), "slow players were not cut off");
    let growth_mb = (rss_max.saturating_sub(rss_start)) as f64 / 1024.0;
    assert!(growth_mb < 64.0, "node memory grew by {growth_mb:.1} MiB during a 30 s stall");

    // The stalled connections were closed by the node: reading now reaches the end.
    assert!(rtmp_raw::read_until_closed(&mut stalled_rtmp, Duration::from_secs(20)).is_some(), "stalled RTMP player still connected");
    assert!(rtmp_raw::read_until_closed(&mut stalled_http, Duration::from_secs(20)).is_some(), "stalled HTTP-FLV player still connected");

    // The healthy players got everything, without gaps.
    for (player, out) in [(&mut rtmp_player, &healthy_rtmp), (&mut flv_player, &healthy_flv)] {
        assert!(player.wait(Duration::from_secs(30)).is_some(), "healthy player did not finish");
        let path = out.display().to_string();
        let packets = probe_packets(&path, None);
        let dts: Vec<f64> = packets.iter().filter(|p| p.codec_type == "video").filter_map(|p| p.dts).collect();
        let span = dts.last().copied().unwrap_or(0.0) - dts.first().copied().unwrap_or(0.0);
        assert!(span > 28.0, "{path}: only {span:.1}s recorded");
        let largest_gap = dts.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        assert!(largest_gap <= 0.08, "{path}: video gap of {largest_gap:.3}s: a healthy player lost frames");
        let (ok, errors) = decode(&path, 40);
        assert!(ok && errors.trim().is_empty(), "{path}: {errors}");
    }
    publisher.kill();
}
