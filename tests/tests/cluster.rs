//! Origins sharing one Redis (a real `redis-server`): each registers itself and lapses when it
//! dies; a stream published on one origin is refused on another, naming the owner; after
//! `kill -9` of the owner its claim lapses and the stream can be published elsewhere; while
//! Redis is away a node keeps serving and accepts publishes, and claims them when Redis is
//! back.

use estuary_tests::ffmpeg::{decode, publish, Source};
use estuary_tests::redis_server::RedisServer;
use estuary_tests::{wait_until, Node, Scratch};
use serde_json::Value;
use std::time::Duration;

fn origin(scratch: &Scratch, redis: &RedisServer, id: &str) -> Node {
    member(scratch, redis, "origin", id, &[])
}

/// A cluster node in `mode`, with short leases and beats, and `extra` settings.
fn member(scratch: &Scratch, redis: &RedisServer, mode: &str, id: &str, extra: &[(&str, &str)]) -> Node {
    let url = redis.url();
    let mut env: Vec<(&str, &str)> = vec![
        ("ESTUARY_CLUSTER__MODE", mode),
        ("ESTUARY_CLUSTER__REDIS", &url),
        ("ESTUARY_CLUSTER__NODE_ID", id),
        ("ESTUARY_CLUSTER__LEASE_MS", "3000"),
        ("ESTUARY_CLUSTER__HEARTBEAT_MS", "500"),
        ("ESTUARY_CLUSTER__EDGE_IDLE_MS", "2000"),
        ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "1000"),
    ];
    env.extend_from_slice(extra);
    Node::start(scratch, &env)
}

fn directory(node: &Node) -> Value {
    node.api("/api/v1/cluster")
}

fn node_ids(node: &Node) -> Vec<String> {
    directory(node)["nodes"].as_array().map(|nodes| nodes.iter().filter_map(|n| n["id"].as_str().map(String::from)).collect()).unwrap_or_default()
}

fn owner(node: &Node, stream: &str) -> Option<String> {
    directory(node)["streams"].as_array()?.iter().find(|s| s["stream"] == format!("__defaultVhost__/{stream}")).and_then(|s| s["owner"].as_str().map(String::from))
}

#[test]
fn origins_share_one_directory_refuse_a_second_publisher_and_take_over_after_kill_9() {
    let scratch = Scratch::new("cluster-origins");
    let redis = RedisServer::start(&scratch);
    let (scratch_a, scratch_b) = (Scratch::new("cluster-a"), Scratch::new("cluster-b"));
    let mut a = origin(&scratch_a, &redis, "origin-a");
    let b = origin(&scratch_b, &redis, "origin-b");

    // Both registered, with their role and addresses; the Redis password never shows.
    assert!(wait_until(Duration::from_secs(10), || node_ids(&b) == ["origin-a", "origin-b"]), "directory: {}", directory(&b));
    let listing = directory(&a);
    assert_eq!((listing["mode"].as_str(), listing["node_id"].as_str(), listing["registry"]["reachable"].as_bool()), (Some("origin"), Some("origin-a"), Some(true)), "{listing}");
    let record = listing["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "origin-a").cloned().unwrap();
    assert_eq!(record["role"], "origin");
    assert_eq!(record["rtmp"], format!("rtmp://127.0.0.1:{}", a.ports.rtmp), "{record}");
    assert!(record["cpu_percent"].is_number() && record["clients"].is_number() && record["streams"].is_number() && record["heartbeat_ms"].is_number(), "load figures missing: {record}");
    assert!(!listing.to_string().contains(RedisServer::PASSWORD) && !a.log().contains(RedisServer::PASSWORD), "the Redis password shows: {listing}");

    // A publish on A claims the stream, and A keeps it beyond its lease (3 s) by renewing it;
    // the same stream on B is refused, naming A.
    let mut first = publish(&a.rtmp_url("live/one"), &Source::default(), &scratch_a, "publisher-a");
    a.wait_live("live/one", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || owner(&b, "live/one").as_deref() == Some("origin-a")), "directory: {}", directory(&b));
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(owner(&b, "live/one").as_deref(), Some("origin-a"), "the claim was not renewed: {}", directory(&b));
    let mut second = publish(&b.rtmp_url("live/one"), &Source { duration: Some(5.0), ..Source::default() }, &scratch_b, "publisher-b");
    let status = second.wait(Duration::from_secs(20)).expect("the second publisher should be refused promptly");
    assert!(!status.success(), "the second publisher was accepted");
    assert!(second.stderr().contains("already published on node origin-a"), "ffmpeg did not show the reason: {}", second.stderr());
    assert!(b.log().contains("already published on node origin-a"), "B did not log the refusal:\n{}", b.log());
    assert!(b.stream_info("live/one").is_none_or(|s| s["publish"]["active"] != true), "B took the publisher");
    let metrics = estuary_tests::http::get(b.ports.api, "/metrics").map(|r| String::from_utf8_lossy(&r.body).into_owned()).expect("metrics");
    assert!(metrics.lines().any(|l| l.starts_with("estuary_cluster_publish_refused_total") && l.ends_with(" 1")), "no refusal counted:\n{metrics}");
    assert!(metrics.contains("estuary_cluster_registry_up 1"), "{metrics}");
    // Another stream on B is B's.
    let _other = publish(&b.rtmp_url("live/two"), &Source::default(), &scratch_b, "publisher-two");
    b.wait_live("live/two", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || owner(&a, "live/two").as_deref() == Some("origin-b")), "directory: {}", directory(&a));

    // The publisher leaves A: at its next beat A releases the claim (before the lease would
    // lapse) and B may take the stream.
    first.kill();
    assert!(wait_until(Duration::from_secs(12), || owner(&b, "live/one").is_none()), "A kept the claim of a stream nobody publishes: {}", directory(&b));
    assert!(wait_until(Duration::from_secs(2), || a.log().contains("cluster claim released")), "the claim lapsed instead of being released:\n{}", a.log());
    let mut taken = publish(&b.rtmp_url("live/one"), &Source::default(), &scratch_b, "publisher-b-again");
    b.wait_live("live/one", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || owner(&a, "live/one").as_deref() == Some("origin-b")), "directory: {}", directory(&a));
    taken.kill();

    // kill -9 of A: it leaves the directory and its claim lapses by itself; the publisher,
    // started again against B, is accepted there.
    let _third = publish(&a.rtmp_url("live/three"), &Source::default(), &scratch_a, "publisher-three");
    a.wait_live("live/three", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || owner(&b, "live/three").as_deref() == Some("origin-a")), "directory: {}", directory(&b));
    a.kill();
    assert!(wait_until(Duration::from_secs(10), || node_ids(&b) == ["origin-b"]), "A is still registered: {}", directory(&b));
    assert!(wait_until(Duration::from_secs(10), || owner(&b, "live/three").is_none()), "A's claim did not lapse: {}", directory(&b));
    let _moved = publish(&b.rtmp_url("live/three"), &Source::default(), &scratch_b, "publisher-moved");
    b.wait_live("live/three", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || owner(&b, "live/three").as_deref() == Some("origin-b")), "directory: {}", directory(&b));
    let (ok, errors) = decode(&b.flv_url("live/three"), 3);
    assert!(ok && errors.trim().is_empty(), "{errors}");
}

#[test]
fn every_node_keeps_serving_while_redis_is_away_and_registers_and_claims_again_when_it_returns() {
    let scratch = Scratch::new("cluster-outage");
    let mut redis = RedisServer::start(&scratch);
    let scratch_e = Scratch::new("cluster-outage-edge");
    let node = origin(&scratch, &redis, "origin-c");
    let e = edge(&scratch_e, &redis, "edge-c");
    assert!(wait_until(Duration::from_secs(10), || node_ids(&node) == ["edge-c", "origin-c"]), "directory: {}", directory(&node));
    let _before = publish(&node.rtmp_url("live/before"), &Source::default(), &scratch, "before");
    node.wait_live("live/before", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || owner(&e, "live/before").as_deref() == Some("origin-c")), "directory: {}", directory(&e));
    // A player on the edge, across the whole outage.
    let recording = scratch_e.path("outage.flv");
    let mut edge_player = estuary_tests::ffmpeg::record(&e.flv_url("live/before"), &recording, Some(30.0), &scratch_e, "edge-player");
    let player_started = std::time::Instant::now();
    assert!(wait_until(Duration::from_secs(10), || players_of(&node, "live/before") == 1), "the edge does not pull: {}", node.api("/api/v1/clients"));

    // Redis away for 10 s.
    redis.kill();
    let killed = std::time::Instant::now();
    assert!(wait_until(Duration::from_secs(10), || directory(&node)["registry"]["reachable"] == false), "{}", directory(&node));
    let listing = directory(&node);
    assert!(listing["registry"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{listing}");
    let metrics = estuary_tests::http::get(node.ports.api, "/metrics").map(|r| String::from_utf8_lossy(&r.body).into_owned()).expect("metrics");
    assert!(metrics.contains("estuary_cluster_registry_up 0"), "{metrics}");
    // Playback goes on, and a new publish is accepted (and logged as unclaimed).
    let (ok, errors) = decode(&node.flv_url("live/before"), 3);
    assert!(ok && errors.trim().is_empty(), "{errors}");
    let _during = publish(&node.rtmp_url("live/during"), &Source::default(), &scratch, "during");
    node.wait_live("live/during", Duration::from_secs(20));
    assert!(node.log().contains("publish accepted here without a claim"), "{}", node.log());
    std::thread::sleep(Duration::from_secs(10).saturating_sub(killed.elapsed()));
    assert!(edge_player.running(), "the edge's player stopped while Redis was away: {}", edge_player.stderr());

    // Redis returns empty: both nodes register again, the origin claims both streams, and a
    // publish after the return plays on the edge.
    redis.restart();
    assert!(
        wait_until(Duration::from_secs(10), || node_ids(&node) == ["edge-c", "origin-c"] && owner(&node, "live/before").as_deref() == Some("origin-c") && owner(&node, "live/during").as_deref() == Some("origin-c")),
        "directory after Redis returned: {}\nlog:\n{}",
        directory(&node),
        node.log()
    );
    let _after = publish(&node.rtmp_url("live/after"), &Source::default(), &scratch, "after");
    node.wait_live("live/after", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || owner(&e, "live/after").as_deref() == Some("origin-c")), "directory: {}", directory(&e));
    plays_clean(&e.flv_url("live/after"));
    edge_player.interrupt();
    let played = player_started.elapsed().as_secs_f64();
    let (ok, errors) = decode(&recording.display().to_string(), 60);
    assert!(ok && errors.trim().is_empty(), "the edge player's recording across the outage: {errors}");
    let video = estuary_tests::ffmpeg::probe_packets(&recording.display().to_string(), None).into_iter().filter(|p| p.codec_type == "video").count();
    // 25 fps for as long as it played, less its start-up (and the GOP it started with).
    assert!(video as f64 >= (played - 3.0) * 25.0, "the edge player received {video} video packets in {played:.1} s");
}

/// Clients of `node` playing `stream` (on the owner, a pulling origin shows as one of them).
fn players_of(node: &Node, stream: &str) -> usize {
    node.api("/api/v1/clients?count=1000")["clients"].as_array().map(|clients| clients.iter().filter(|c| c["type"] == "play" && c["stream"] == stream).count()).unwrap_or(0)
}

#[test]
fn a_stream_published_on_one_origin_plays_on_another_through_one_pull() {
    let scratch = Scratch::new("cluster-pull");
    let redis = RedisServer::start(&scratch);
    let (scratch_a, scratch_b) = (Scratch::new("cluster-pull-a"), Scratch::new("cluster-pull-b"));
    let a = origin(&scratch_a, &redis, "origin-a");
    let b = origin(&scratch_b, &redis, "origin-b");
    assert!(wait_until(Duration::from_secs(10), || node_ids(&b) == ["origin-a", "origin-b"]), "directory: {}", directory(&b));
    let _publisher = publish(&a.rtmp_url("live/pull"), &Source { bframes: 0, ..Source::default() }, &scratch_a, "publisher");
    a.wait_live("live/pull", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || owner(&b, "live/pull").as_deref() == Some("origin-a")), "directory: {}", directory(&b));

    // B has no publisher of it: each protocol's first player makes B pull it from A.
    let http = |path: &str| format!("http://127.0.0.1:{}/{path}", b.ports.http);
    for url in [b.rtmp_url("live/pull"), b.flv_url("live/pull"), b.srt_url("live/pull", false, ""), http("live/pull.m3u8")] {
        let streams = estuary_tests::ffmpeg::probe_streams(&url);
        assert!(estuary_tests::ffmpeg::stream_of(&streams, "video").is_some() && estuary_tests::ffmpeg::stream_of(&streams, "audio").is_some(), "{url}: {streams:?}\nB's log:\n{}", b.log());
        let (ok, errors) = decode(&url, 3);
        assert!(ok && errors.trim().is_empty(), "{url}: {errors}");
    }
    let whep = estuary_tests::aiortc::whep_play(&format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=pull", b.ports.api), 4, 1);
    assert_eq!(whep[0]["connected"], true, "{}", whep[0]);
    assert!(whep[0]["video_frames"].as_u64().unwrap_or(0) > 25 && whep[0]["audio_frames"].as_u64().unwrap_or(0) > 50, "{}", whep[0]);
    let info = b.stream_info("live/pull").expect("B lists the pulled stream");
    assert_eq!(info["publish"]["protocol"], "cluster-pull", "{info}");

    // Three players on B at once: A serves B one pull.
    let players: Vec<_> = (0..3).map(|i| estuary_tests::ffmpeg::record(&b.flv_url("live/pull"), &scratch_b.path(&format!("p{i}.flv")), Some(8.0), &scratch_b, &format!("player{i}"))).collect();
    assert!(wait_until(Duration::from_secs(10), || players_of(&b, "live/pull") == 3), "players on B: {}", b.api("/api/v1/clients"));
    assert_eq!(players_of(&a, "live/pull"), 1, "A should serve exactly one puller: {}", a.api("/api/v1/clients"));
    assert!(b.api("/api/v1/cluster")["streams"].as_array().unwrap().iter().all(|s| s["owner"] == "origin-a"), "B claimed a pulled stream: {}", directory(&b));
    drop(players);

    // The upstream breaks while the owner's stream has long been live (A kicks B's puller):
    // B pulls again and a player on B goes on with continuous timestamps.
    let recording = scratch_b.path("resumed.flv");
    let mut resumed = estuary_tests::ffmpeg::record(&b.flv_url("live/pull"), &recording, Some(30.0), &scratch_b, "resumed");
    assert!(wait_until(Duration::from_secs(10), || players_of(&a, "live/pull") == 1), "{}", a.api("/api/v1/clients"));
    std::thread::sleep(Duration::from_secs(3));
    let puller = a.api("/api/v1/clients?count=1000")["clients"].as_array().unwrap().iter().find(|c| c["type"] == "play" && c["stream"] == "live/pull").map(|c| c["id"].as_str().unwrap().to_string()).expect("the puller on A");
    assert_eq!(estuary_tests::http::delete(a.ports.api, &format!("/api/v1/clients/{puller}")).expect("kick").status, 200);
    assert!(wait_until(Duration::from_secs(10), || b.stream_info("live/pull").is_some_and(|s| s["pull"]["resumes"].as_u64().unwrap_or(0) >= 1 && s["pull"]["state"] == "playing")), "B did not resume: {}", b.log());
    std::thread::sleep(Duration::from_secs(4));
    resumed.interrupt();
    let file = recording.display().to_string();
    let video: Vec<f64> = estuary_tests::ffmpeg::probe_packets(&file, None).into_iter().filter(|p| p.codec_type == "video").filter_map(|p| p.dts).collect();
    assert!(video.len() > 100, "{file}: {} video packets", video.len());
    let worst = video.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, |worst, step| if step.abs() > worst.abs() { step } else { worst });
    assert!((0.0..=1.0).contains(&worst), "{file}: video timestamps step by {worst} s across the resume");

    // With no player left (and no HLS viewer), B stops pulling after edge_idle_ms (2 s).
    assert!(wait_until(Duration::from_secs(20), || players_of(&a, "live/pull") == 0), "B kept pulling with no player: {}", a.api("/api/v1/clients"));
    assert!(b.log().contains("pull ended"), "{}", b.log());
    // An RTMP player waiting on B for a stream nobody publishes yet gets it as soon as it is
    // published on A (B follows the cluster's events).
    let waiting_url = b.rtmp_url("live/later");
    let waiting = std::thread::spawn(move || decode(&waiting_url, 3));
    assert!(wait_until(Duration::from_secs(10), || players_of(&b, "live/later") == 1), "the player is not waiting on B: {}", b.api("/api/v1/clients"));
    let _later = publish(&a.rtmp_url("live/later"), &Source { bframes: 0, ..Source::default() }, &scratch_a, "later");
    let (ok, errors) = waiting.join().expect("waiting player");
    assert!(ok && errors.trim().is_empty(), "the waiting player on B: {errors}\nB's log:\n{}", b.log());
    assert!(b.log().contains("players were waiting here for a stream published on another node"), "{}", b.log());
    // H.265 (published over SRT) travels through the pull too (enhanced RTMP between nodes).
    let hevc = Source { video_codec: "libx265", bframes: 0, ..Source::default() };
    let _hevc_publisher = estuary_tests::ffmpeg::publish_ts(&a.srt_url("live/hevcpull", true, ""), &hevc, &scratch_a, "hevc-publisher");
    a.wait_live("live/hevcpull", Duration::from_secs(30));
    let hevc_url = b.srt_url("live/hevcpull", false, "");
    let streams = estuary_tests::ffmpeg::probe_streams(&hevc_url);
    assert_eq!(estuary_tests::ffmpeg::stream_of(&streams, "video").map(|v| v["codec_name"].clone()), Some(serde_json::json!("hevc")), "{streams:?}\nB's log:\n{}", b.log());
    assert!(estuary_tests::ffmpeg::stream_of(&streams, "audio").is_some(), "{streams:?}");
    let (ok, errors) = decode(&hevc_url, 3);
    assert!(ok && errors.trim().is_empty(), "{hevc_url}: {errors}");
}

fn edge(scratch: &Scratch, redis: &RedisServer, id: &str) -> Node {
    member(scratch, redis, "edge", id, &[])
}

fn plays_clean(url: &str) {
    let streams = estuary_tests::ffmpeg::probe_streams(url);
    assert!(estuary_tests::ffmpeg::stream_of(&streams, "video").is_some() && estuary_tests::ffmpeg::stream_of(&streams, "audio").is_some(), "{url}: {streams:?}");
    let (ok, errors) = decode(url, 3);
    assert!(ok && errors.trim().is_empty(), "{url}: {errors}");
}

#[test]
fn edges_pull_from_the_owner_resume_when_the_stream_moves_and_pass_publishes_on() {
    let scratch = Scratch::new("cluster-edges");
    let redis = RedisServer::start(&scratch);
    let scratches: Vec<Scratch> = ["edges-a", "edges-b", "edges-1", "edges-2"].iter().map(|n| Scratch::new(n)).collect();
    let mut a = origin(&scratches[0], &redis, "origin-a");
    let b = origin(&scratches[1], &redis, "origin-b");
    let e1 = edge(&scratches[2], &redis, "edge-1");
    let e2 = edge(&scratches[3], &redis, "edge-2");
    assert!(wait_until(Duration::from_secs(10), || node_ids(&e1) == ["edge-1", "edge-2", "origin-a", "origin-b"]), "directory: {}", directory(&e1));
    assert_eq!(directory(&e1)["nodes"][0]["role"], "edge");

    let source = Source { bframes: 0, ..Source::default() };
    let mut publisher = publish(&a.rtmp_url("live/e"), &source, &scratch, "publisher");
    a.wait_live("live/e", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || owner(&e1, "live/e").as_deref() == Some("origin-a")), "directory: {}", directory(&e1));

    // Every output of an edge plays the stream it pulls.
    for edge in [&e1, &e2] {
        for url in [edge.rtmp_url("live/e"), edge.flv_url("live/e"), edge.srt_url("live/e", false, ""), format!("http://127.0.0.1:{}/live/e.m3u8", edge.ports.http)] {
            plays_clean(&url);
        }
        let whep = estuary_tests::aiortc::whep_play(&format!("http://127.0.0.1:{}/rtc/v1/whep/?app=live&stream=e", edge.ports.api), 4, 1);
        assert_eq!(whep[0]["connected"], true, "{}", whep[0]);
        assert!(whep[0]["video_frames"].as_u64().unwrap_or(0) > 25 && whep[0]["audio_frames"].as_u64().unwrap_or(0) > 50, "{}", whep[0]);
    }

    // Long players on both edges: the origin serves one pull per edge.
    let recordings: Vec<std::path::PathBuf> = (0..2).map(|i| scratch.path(&format!("edge{i}.flv"))).collect();
    let mut long_players = vec![
        estuary_tests::ffmpeg::record(&e1.flv_url("live/e"), &recordings[0], Some(30.0), &scratch, "long-1"),
        estuary_tests::ffmpeg::record(&e2.flv_url("live/e"), &recordings[1], Some(30.0), &scratch, "long-2"),
    ];
    assert!(wait_until(Duration::from_secs(10), || players_of(&a, "live/e") == 2), "A should serve one pull per edge: {}", a.api("/api/v1/clients"));
    std::thread::sleep(Duration::from_secs(4));

    // The owner dies and the publisher starts again against B: the edges find the stream on
    // B and their players go on by themselves.
    a.kill();
    publisher.kill();
    let mut moved = None;
    assert!(
        wait_until(Duration::from_secs(15), || {
            if owner(&b, "live/e").is_none() && moved.is_none() {
                moved = Some(publish(&b.rtmp_url("live/e"), &source, &scratch, "publisher-moved"));
            }
            owner(&b, "live/e").as_deref() == Some("origin-b")
        }),
        "the stream did not move to B: {}",
        directory(&b)
    );
    assert!(wait_until(Duration::from_secs(15), || players_of(&b, "live/e") == 2), "the edges did not resume from B: {}\nedge-1 log:\n{}", b.api("/api/v1/clients"), e1.log());
    for player in &mut long_players {
        assert!(player.running(), "an edge player was disconnected when the stream moved: {}", player.stderr());
    }
    std::thread::sleep(Duration::from_secs(6));
    let mut player_logs = String::new();
    for player in &mut long_players {
        player.interrupt();
        player_logs.push_str(&player.stderr());
    }
    assert!(e1.log().contains("pulled stream found again; resuming"), "edge-1 did not resume its pull:\n{}", e1.log());
    for path in &recordings {
        let file = path.display().to_string();
        let (ok, errors) = decode(&file, 60);
        assert!(ok && errors.trim().is_empty(), "what an edge player received across the move does not decode clean: {errors}");
        // Timestamps continue across the move: video decode times never go back or jump.
        let video: Vec<f64> = estuary_tests::ffmpeg::probe_packets(&file, None).into_iter().filter(|p| p.codec_type == "video").filter_map(|p| p.dts).collect();
        // About 4 s before the move and 6 s after it.
        assert!(video.len() > 200, "{file}: {} video packets; players:\n{player_logs}\nedge-1 log:\n{}", video.len(), e1.log());
        let worst = video.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, |worst, step| if step.abs() > worst.abs() { step } else { worst });
        assert!((0.0..=1.0).contains(&worst), "{file}: video timestamps step by {worst} s across the move");
    }
    plays_clean(&e1.flv_url("live/e"));
    // With no player left, the edges stop pulling: the owner's client list loses them.
    assert!(wait_until(Duration::from_secs(15), || players_of(&b, "live/e") == 0), "an edge kept pulling with no player: {}", b.api("/api/v1/clients"));

    // A publish on an edge goes on to an origin (only B is left), which owns it; another edge
    // plays it.
    let _edge_publisher = publish(&e2.rtmp_url("live/fromedge"), &source, &scratch, "edge-publisher");
    assert!(wait_until(Duration::from_secs(15), || owner(&b, "live/fromedge").as_deref() == Some("origin-b")), "the edge's publish did not reach an origin: {}\nedge-2 log:\n{}", directory(&b), e2.log());
    plays_clean(&e1.flv_url("live/fromedge"));
    drop(moved);
}

/// `count` HTTP-FLV readers of `url_path` on `port` for `seconds`; the bytes each received.
fn flv_readers(port: u16, url_path: &str, count: usize, seconds: u64) -> Vec<u64> {
    let threads: Vec<_> = (0..count)
        .map(|_| {
            let path = url_path.to_string();
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let Ok(mut socket) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return 0 };
                let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
                if socket.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).is_err() {
                    return 0;
                }
                let until = std::time::Instant::now() + Duration::from_secs(seconds);
                let mut total = 0u64;
                let mut buf = vec![0u8; 64 * 1024];
                while std::time::Instant::now() < until {
                    match socket.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => total += n as u64,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
                total
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap_or(0)).collect()
}

#[test]
fn an_origin_that_requires_play_tokens_serves_edges_holding_the_cluster_secret_one_pull_for_100_players() {
    let scratch = Scratch::new("cluster-auth");
    let redis = RedisServer::start(&scratch);
    let scratches: Vec<Scratch> = ["auth-a", "auth-e", "auth-x"].iter().map(|n| Scratch::new(n)).collect();
    let secured = [("ESTUARY_AUTH__TOKEN_SECRET", "viewer-secret"), ("ESTUARY_AUTH__REQUIRE_TOKEN", "[\"play\"]"), ("ESTUARY_CLUSTER__SECRET", "cluster-secret")];
    let a = member(&scratches[0], &redis, "origin", "origin-a", &secured);
    let e = member(&scratches[1], &redis, "edge", "edge-1", &[("ESTUARY_CLUSTER__SECRET", "cluster-secret")]);
    let stranger = member(&scratches[2], &redis, "edge", "edge-x", &[("ESTUARY_CLUSTER__SECRET", "another-secret")]);
    assert!(wait_until(Duration::from_secs(10), || node_ids(&e).len() == 3), "directory: {}", directory(&e));
    let _publisher = publish(&a.rtmp_url("live/sec"), &Source { bframes: 0, ..Source::default() }, &scratch, "publisher");
    a.wait_live("live/sec", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || owner(&e, "live/sec").as_deref() == Some("origin-a")), "directory: {}", directory(&e));

    // A viewer without a token is refused by A; the edge holding the cluster secret is served,
    // an edge with another secret is not.
    let (ok, _) = decode(&a.flv_url("live/sec"), 2);
    assert!(!ok, "A played to a viewer without a token");
    plays_clean(&e.flv_url("live/sec"));
    let (ok, _) = decode(&stranger.flv_url("live/sec"), 2);
    assert!(!ok, "an edge with another cluster secret was served");
    assert!(a.log().contains("cluster pull token that does not verify"), "{}", a.log());

    // 100 players on the edge: A serves it one pull, and every player receives.
    let readers = std::thread::spawn({
        let port = e.ports.http;
        move || flv_readers(port, "/live/sec.flv", 100, 8)
    });
    assert!(wait_until(Duration::from_secs(10), || players_of(&e, "live/sec") == 100), "players on the edge: {}\nedge log:\n{}", players_of(&e, "live/sec"), e.log());
    assert_eq!(players_of(&a, "live/sec"), 1, "A should serve exactly one puller: {}", a.api("/api/v1/clients?count=1000"));
    let pulled = e.stream_info("live/sec").expect("the edge lists the stream");
    assert_eq!((pulled["pull"]["owner"].as_str(), pulled["pull"]["state"].as_str()), (Some("origin-a"), Some("playing")), "{pulled}");
    let metrics = estuary_tests::http::get(e.ports.api, "/metrics").map(|r| String::from_utf8_lossy(&r.body).into_owned()).expect("metrics");
    assert!(metrics.contains("estuary_cluster_pulls 1"), "{metrics}");
    let received = readers.join().expect("readers");
    assert!(received.iter().all(|&bytes| bytes > 100_000), "some of the 100 players received little: {received:?}");
}

#[test]
fn with_cluster_redirect_an_origin_sends_players_to_the_owner() {
    let scratch = Scratch::new("cluster-redirect");
    let redis = RedisServer::start(&scratch);
    let (scratch_a, scratch_b) = (Scratch::new("redirect-a"), Scratch::new("redirect-b"));
    let a = origin(&scratch_a, &redis, "origin-a");
    let b = member(&scratch_b, &redis, "origin", "origin-b", &[("ESTUARY_CLUSTER__REDIRECT", "true")]);
    assert!(wait_until(Duration::from_secs(10), || node_ids(&b) == ["origin-a", "origin-b"]), "directory: {}", directory(&b));
    let _publisher = publish(&a.rtmp_url("live/r"), &Source::default(), &scratch_a, "publisher");
    a.wait_live("live/r", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(5), || owner(&b, "live/r").as_deref() == Some("origin-a")), "directory: {}", directory(&b));

    // HTTP: a 302 to the owner's same URL (query kept), which plays.
    let response = estuary_tests::http::get(b.ports.http, "/live/r.flv?x=1").expect("GET on B");
    assert_eq!(response.status, 302, "{}", String::from_utf8_lossy(&response.body));
    let location = response.headers.iter().find(|(k, _)| k == "location").map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(location, format!("http://127.0.0.1:{}/live/r.flv?x=1", a.ports.http));
    plays_clean(&b.flv_url("live/r"));
    // RTMP: SRS's redirect status, naming the owner's URL.
    let answer = estuary_tests::rtmp_raw::try_play(b.ports.rtmp, "live", "r").expect_err("B played instead of redirecting");
    assert!(answer.contains("NetConnection.Connect.Rejected") && answer.contains(&format!("Redirect to rtmp://127.0.0.1:{}/live/r", a.ports.rtmp)), "{answer}");
    // B did not pull: it has no such stream, and A no RTMP player (a pull plays over RTMP).
    assert!(b.stream_info("live/r").is_none_or(|s| s["publish"]["active"] != true), "B pulled the stream");
    let rtmp_players = a.api("/api/v1/clients")["clients"].as_array().map(|c| c.iter().filter(|c| c["type"] == "play" && c["protocol"] == "rtmp").count()).unwrap_or(0);
    assert_eq!(rtmp_players, 0, "{}", a.api("/api/v1/clients"));
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_a_node_exports() {
    // An origin (so the cluster gauges exist) with a live, recorded, forwarded stream.
    let scratch = Scratch::new("grafana");
    let redis = RedisServer::start(&scratch);
    let sink = Node::start(&Scratch::new("grafana-sink"), &[]);
    let destination = format!("{{ live = [\"rtmp://127.0.0.1:{}/[app]/[stream]\"] }}", sink.ports.rtmp);
    let node = member(&scratch, &redis, "origin", "origin-g", &[("ESTUARY_DVR__ENABLED", "true"), ("ESTUARY_FORWARD__APPS", &destination)]);
    let _publisher = publish(&node.rtmp_url("live/dash"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/dash", Duration::from_secs(20));
    sink.wait_live("live/dash", Duration::from_secs(20));
    let metrics = || estuary_tests::http::get(node.ports.api, "/metrics").map(|r| String::from_utf8_lossy(&r.body).into_owned()).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(10), || metrics().contains("estuary_dvr_recordings 1") && metrics().contains("estuary_forwards{state=\"live\"} 1")), "{}", metrics());

    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/estuary.json")).expect("docs/grafana/estuary.json");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    // Panels, and panels inside rows.
    let panels: Vec<Value> = dashboard["panels"].as_array().expect("panels").iter().flat_map(|p| std::iter::once(p.clone()).chain(p["panels"].as_array().cloned().unwrap_or_default())).collect();
    let targets: Vec<(String, String)> = panels.iter().flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default()).filter_map(|t| Some((t["expr"].as_str()?.to_string(), t["legendFormat"].as_str().unwrap_or("").to_string()))).collect();
    assert!(targets.len() >= 15, "{targets:?}");

    // What the node exports: each family's type line, and the label names of its samples.
    let exported = metrics();
    let declared: std::collections::BTreeSet<&str> = exported.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let mut labels: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for line in exported.lines().filter(|l| !l.starts_with('#')) {
        let (name, rest) = line.split_once('{').unwrap_or((line.split(' ').next().unwrap_or(""), ""));
        let names = labels.entry(name.to_string()).or_default();
        for pair in rest.split('}').next().unwrap_or("").split(',').filter(|p| !p.is_empty()) {
            names.insert(pair.split('=').next().unwrap_or("").to_string());
        }
    }
    let word = |text: &str| -> String { text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let mut used = std::collections::BTreeSet::new();
    for (expr, legend) in &targets {
        // Every estuary_* name a query uses is declared by the node (a counter of events that
        // did not happen yet, such as refusals, has a type line but no sample).
        let mut names = Vec::new();
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("estuary_") {
            let name = word(&rest[at..]);
            rest = &rest[at + name.len()..];
            assert!(declared.contains(name.as_str()), "{expr}: {name} is not exported:\n{exported}");
            names.push(name.clone());
            used.insert(name);
        }
        // Label names in matchers, `by (...)` and the legend exist on those families (those
        // with samples here), or are the ones Prometheus adds.
        let mut wanted: Vec<String> = Vec::new();
        for part in expr.split('{').skip(1) {
            let inside = part.split('}').next().unwrap_or("");
            wanted.extend(inside.split(',').map(|m| word(m.trim())).filter(|w| !w.is_empty()));
        }
        for part in expr.split("by (").skip(1) {
            wanted.extend(part.split(')').next().unwrap_or("").split(',').map(|w| w.trim().to_string()));
        }
        for part in legend.split("{{").skip(1) {
            wanted.push(part.split("}}").next().unwrap_or("").trim().to_string());
        }
        let known: Vec<&std::collections::BTreeSet<String>> = names.iter().filter_map(|n| labels.get(n)).collect();
        if known.is_empty() {
            continue;
        }
        for label in wanted.iter().filter(|l| *l != "instance" && *l != "job") {
            assert!(known.iter().any(|set| set.contains(label)), "{expr} (legend {legend:?}): no label {label} on {names:?}:\n{exported}");
        }
    }
    assert!(used.len() >= 20, "{used:?}");
}
