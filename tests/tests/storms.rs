//! Connection storms and slow clients against one node while a stream plays: idle connections
//! on the RTMP, HTTP and API ports are closed by the handshake and request-head timeouts;
//! beyond `node.max_connections` and `node.max_connections_per_ip` connections are refused
//! with the reason (HTTP answers 503 naming the limit); headers trickled a byte at a time are
//! cut; oversized headers get 431 and oversized API bodies 413. The RTMP and HTTP-FLV players
//! that were watching before it all see no gap in the stream.
//!
//! The storm comes from other loopback addresses (127.0.1.2 and up, 150 connections each;
//! 127.0.0.1 is not limited per address, as a local reverse proxy's address).
//! `STORM_CONNECTIONS=20000` runs the long form (20,000 idle connections over the three
//! ports; the default is 1,800).

use estuary_tests::{ffmpeg, http, wait_until, Node, Scratch};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connects to `port` on 127.0.0.1 from `source`.
fn connect_from(source: [u8; 4], port: u16) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    socket.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    Ok(socket.into())
}

/// A metric's value summed over its series (0 when absent), from the metrics port (which the
/// connection limits do not cover, so it answers during the storm).
fn metric(port: u16, name: &str) -> f64 {
    let text = String::from_utf8_lossy(&http::get(port, "/metrics").expect("metrics").body).into_owned();
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Whether the node has closed `socket` (end of stream, a reset, or an answer such as 408
/// followed by the close), reading without waiting.
fn closed_by_node(mut socket: &TcpStream) -> bool {
    socket.set_nonblocking(true).expect("non-blocking");
    let mut buffer = [0u8; 512];
    let closed = loop {
        match socket.read(&mut buffer) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    socket.set_nonblocking(false).expect("blocking");
    closed
}

/// The largest gap between consecutive video packets of an FLV file (by their timestamps) and
/// the stream time covered.
fn largest_gap(file: &std::path::Path) -> (f64, f64) {
    let packets = ffmpeg::probe_packets(file.to_str().expect("a path"), None);
    let times: Vec<f64> = packets.iter().filter(|p| p.codec_type == "video").filter_map(|p| p.dts).collect();
    assert!(times.len() > 25, "{} video packets in {}", times.len(), file.display());
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    (gap, times[times.len() - 1] - times[0])
}

#[test]
fn storms_and_slow_clients_are_cut_and_players_see_no_gap() {
    let total: usize = std::env::var("STORM_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1800);
    let scratch = Scratch::new("storms");
    // The node takes two thirds of the storm; no storm address reaches its own limit.
    let max = total * 2 / 3;
    let metrics = estuary_tests::free_port();
    let node = Node::start(
        &scratch,
        &[("ESTUARY_NODE__MAX_CONNECTIONS", &max.to_string()), ("ESTUARY_NODE__MAX_CONNECTIONS_PER_IP", "400"), ("ESTUARY_METRICS__LISTEN", &format!("127.0.0.1:{metrics}"))],
    );
    let _publisher = ffmpeg::publish(&node.rtmp_url("live/cam"), &ffmpeg::Source { gop: 25, ..ffmpeg::Source::default() }, &scratch, "publisher");
    node.wait_live("live/cam", Duration::from_secs(20));
    let (rtmp_out, flv_out) = (scratch.path("rtmp.flv"), scratch.path("http.flv"));
    let mut rtmp_player = ffmpeg::record(&node.rtmp_url("live/cam"), &rtmp_out, None, &scratch, "rtmp-player");
    let mut flv_player = ffmpeg::record(&node.flv_url("live/cam"), &flv_out, None, &scratch, "flv-player");
    assert!(wait_until(Duration::from_secs(20), || node.api("/api/v1/clients")["clients"].as_array().is_some_and(|c| c.len() == 3)), "{}", node.log());
    let baseline = metric(metrics, "estuary_connections_open");

    // 1. Idle connections on every port, from enough addresses that none reaches its own
    // limit (150 each), more than the node takes. Connections the node has closed already are
    // let go as the storm goes on (this process has a file descriptor limit too).
    let sources: Vec<[u8; 4]> = (0..total.div_ceil(150).max(10)).map(|i| [127, 0, 1 + (i / 200) as u8, 2 + (i % 200) as u8]).collect();
    let ports = [node.ports.rtmp, node.ports.http, node.ports.api];
    let (mut idle, mut closed_early) = (Vec::new(), 0);
    for n in 0..total {
        let (source, port) = (sources[n % sources.len()], ports[n % 3]);
        idle.push(connect_from(source, port).unwrap_or_else(|e| panic!("connection {n} to {port} from {source:?}: {e}")));
        if n % 500 == 499 {
            let before = idle.len();
            idle.retain(|s| !closed_by_node(s));
            closed_early += before - idle.len();
        }
    }
    assert!(wait_until(Duration::from_secs(20), || metric(metrics, "estuary_connections_refused_total") > 0.0), "{}", node.log());
    // Every one of them is closed by the node: refused at once, or at its timeout (RTMP's
    // handshake timeout, the HTTP request-head timeout).
    assert!(wait_until(Duration::from_secs(60), || metric(metrics, "estuary_connections_open") <= baseline), "open: {}", metric(metrics, "estuary_connections_open"));
    let still_open = idle.iter().filter(|s| !closed_by_node(s)).count();
    assert_eq!(still_open, 0, "of {} idle connections left after {closed_early} closed during the storm", idle.len());
    let refused = metric(metrics, "estuary_connections_refused_total");
    eprintln!("{total} idle connections from {} addresses, max_connections {max}: {refused} refused, {closed_early} seen closed during the storm, all closed", sources.len());
    drop(idle);
    assert!(node.log().contains("node.max_connections"), "{}", node.log());

    // 2. One address past its own limit: the HTTP connection beyond it is told why.
    let mine: Vec<TcpStream> = (0..400).map(|_| connect_from([127, 0, 0, 20], node.ports.http).expect("connect")).collect();
    // All 400 admitted (the HTTP server's threads take connections in their own time).
    assert!(wait_until(Duration::from_secs(10), || metric(metrics, "estuary_connections_open") >= baseline + 400.0), "open: {}", metric(metrics, "estuary_connections_open"));
    let mut extra = connect_from([127, 0, 0, 20], node.ports.http).expect("connect");
    write!(extra, "GET /api/v1/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = extra.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("node.max_connections_per_ip"), "{answer}");
    // Another address is not affected.
    let mut other = connect_from([127, 0, 0, 21], node.ports.http).expect("connect");
    write!(other, "GET /live/cam.m3u8 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = other.read_to_string(&mut answer);
    assert!(!answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(mine);

    // 3. Slowloris: request heads trickled a byte at a time are cut by the node.
    let mut slow: Vec<TcpStream> = (0..50).map(|i| connect_from([127, 0, 0, 30], if i % 2 == 0 { node.ports.http } else { node.ports.api }).expect("connect")).collect();
    for s in &mut slow {
        s.write_all(b"GET /live/cam.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n").expect("first line");
    }
    // A byte each tenth of a second per connection, for at most a minute.
    let mut cut = 0;
    for _round in 0..600 {
        for s in &mut slow {
            // A write to a connection the node closed fails, or the read below sees the end.
            let _ = s.write_all(b"X");
        }
        cut = slow.iter().filter(|s| closed_by_node(s)).count();
        if cut == slow.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cut, slow.len(), "trickling connections still open after a minute");
    drop(slow);

    // 4. Oversized heads and bodies.
    let big = "a".repeat(20 * 1024);
    for port in [node.ports.http, node.ports.api] {
        let response = http::send(port, "GET", "/api/v1/versions", &[("X-Big", big.as_str())], b"").expect("answer");
        assert_eq!(response.status, 431, "port {port}");
        let huge = "a".repeat(300 * 1024);
        let status = http::send(port, "GET", "/api/v1/versions", &[("X-Big", huge.as_str())], b"").map(|r| r.status).unwrap_or(0);
        assert!(status == 431 || status == 0, "port {port}: {status}");
    }
    let body = format!(r#"{{"app":"live","stream":"cam","url":"rtmp://192.0.2.9/live/{}"}}"#, "k".repeat(100 * 1024));
    let response = http::send(node.ports.api, "POST", "/api/v1/forwards", &[("Content-Type", "application/json")], body.as_bytes()).expect("answer");
    assert_eq!(response.status, 413, "{}", String::from_utf8_lossy(&response.body));

    // The players watched throughout.
    assert!(rtmp_player.running() && flv_player.running(), "a player stopped: {} {}", rtmp_player.stderr(), flv_player.stderr());
    rtmp_player.interrupt();
    flv_player.interrupt();
    rtmp_player.wait(Duration::from_secs(10));
    flv_player.wait(Duration::from_secs(10));
    for file in [&rtmp_out, &flv_out] {
        let (gap, covered) = largest_gap(file);
        assert!(gap < 0.5, "{}: a gap of {gap:.2} s in the stream", file.display());
        assert!(covered > 5.0, "{}: only {covered:.1} s of stream", file.display());
    }
    assert_eq!(node.api("/api/v1/streams")["streams"].as_array().map(|s| s.len()), Some(1));
}

/// An SRT induction handshake (version 4, as libsrt's callers open) from socket `socket_id`.
fn srt_induction(socket_id: u32) -> Vec<u8> {
    let mut d = vec![0u8; 64];
    d[0] = 0x80; // control packet, type 0: handshake
    d[16..20].copy_from_slice(&4u32.to_be_bytes());
    d[22..24].copy_from_slice(&2u16.to_be_bytes()); // UDT_DGRAM
    d[24..28].copy_from_slice(&socket_id.wrapping_mul(7).to_be_bytes()); // initial sequence number
    d[28..32].copy_from_slice(&1500u32.to_be_bytes());
    d[32..36].copy_from_slice(&8192u32.to_be_bytes());
    d[36..40].copy_from_slice(&1i32.to_be_bytes()); // induction
    d[40..44].copy_from_slice(&socket_id.to_be_bytes());
    d[48..52].copy_from_slice(&[127, 0, 0, 1]);
    d
}

/// The same caller's conclusion (version 5) returning `cookie`.
fn srt_conclusion(socket_id: u32, cookie: i32) -> Vec<u8> {
    let mut d = srt_induction(socket_id);
    d[16..20].copy_from_slice(&5u32.to_be_bytes());
    d[20..22].copy_from_slice(&0u16.to_be_bytes());
    d[22..24].copy_from_slice(&1u16.to_be_bytes()); // HSREQ
    d[36..40].copy_from_slice(&(-1i32).to_be_bytes());
    d[44..48].copy_from_slice(&cookie.to_be_bytes());
    // HSREQ block: SRT version 1.5.0, flags, latencies.
    d.extend_from_slice(&[0, 1, 0, 3, 0, 1, 5, 0, 0, 0, 0, 0xbf, 0, 0x78, 0, 0x78]);
    d
}

/// 5,000 callers from distinct addresses that send an induction and never come back, and
/// 5,000 conclusions with made-up cookies, half of them asking for a packet filter (which
/// the node refuses, and used to remember the refusal for): the node answers the inductions,
/// keeps nothing for them (no table to fill), drops the forged conclusions, and a real caller
/// publishes and plays during the flood.
#[test]
fn srt_handshake_floods_leave_nothing_and_real_callers_get_through() {
    let callers: usize = std::env::var("STORM_SRT_CALLERS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let scratch = Scratch::new("storms-srt");
    let node = Node::start(&scratch, &[]);
    let rss_before = node.rss_kb();
    let port = node.ports.srt;
    let flood = std::thread::spawn(move || {
        let mut answered = 0;
        for n in 0..callers {
            let source = std::net::Ipv4Addr::new(127, 0, 1 + (n / 250) as u8, 2 + (n % 250) as u8);
            let socket = std::net::UdpSocket::bind((source, 0)).expect("bind");
            socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
            socket.send_to(&srt_induction(0x1000 + n as u32), ("127.0.0.1", port)).expect("send");
            let mut buffer = [0u8; 256];
            if let Ok((len, _)) = socket.recv_from(&mut buffer) {
                // An induction answer: a handshake carrying a cookie.
                if len >= 64 && buffer[0] == 0x80 && buffer[44..48] != [0, 0, 0, 0] {
                    answered += 1;
                }
            }
            // A forged conclusion from another address.
            let forger = std::net::UdpSocket::bind((source, 0)).expect("bind");
            let mut conclusion = srt_conclusion(0x9000 + n as u32, n as i32 * 7919);
            if n % 2 == 1 {
                // A packet filter block (SRT_CMD_FILTER, "fec"), refused by the node.
                conclusion.extend_from_slice(&[0, 7, 0, 1, b'c', b'e', b'f', 0]);
            }
            forger.send_to(&conclusion, ("127.0.0.1", port)).expect("send");
        }
        answered
    });
    std::thread::sleep(Duration::from_secs(1));
    // A real caller during the flood.
    let mut publisher = ffmpeg::publish_ts(&format!("srt://127.0.0.1:{port}?streamid=#!::r=live/srtcam,m=publish"), &ffmpeg::Source { duration: Some(6.0), ..ffmpeg::Source::default() }, &scratch, "publisher");
    node.wait_live("live/srtcam", Duration::from_secs(20));
    let streams = ffmpeg::probe_streams(&format!("srt://127.0.0.1:{port}?streamid=#!::r=live/srtcam,m=request"));
    assert!(ffmpeg::stream_of(&streams, "video").is_some(), "an SRT player got no video during the flood: {streams:?}");
    let answered = flood.join().expect("flood");
    publisher.wait(Duration::from_secs(20));
    assert!(answered * 10 >= callers * 9, "{answered} of {callers} inductions answered");
    let forged = {
        let text = String::from_utf8_lossy(&http::get(node.ports.api, "/metrics").expect("metrics").body).into_owned();
        text.lines().find(|l| l.starts_with("estuary_srt_bad_cookies_total")).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).unwrap_or(0.0)
    };
    assert!(forged >= callers as f64 * 0.9, "{forged} forged conclusions counted of {callers}");
    let rss_after = node.rss_kb();
    eprintln!("{callers} spoofed inductions ({answered} answered) and {callers} forged conclusions ({forged} dropped): RSS {rss_before} -> {rss_after} KiB");
    assert!(rss_after < rss_before + 30 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");
}
