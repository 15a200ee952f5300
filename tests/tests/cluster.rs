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
    let url = redis.url();
    Node::start(
        scratch,
        &[
            ("ESTUARY_CLUSTER__MODE", "origin"),
            ("ESTUARY_CLUSTER__REDIS", &url),
            ("ESTUARY_CLUSTER__NODE_ID", id),
            ("ESTUARY_CLUSTER__LEASE_MS", "3000"),
            ("ESTUARY_CLUSTER__HEARTBEAT_MS", "500"),
            ("ESTUARY_CLUSTER__EDGE_IDLE_MS", "2000"),
            ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "1000"),
        ],
    )
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
fn a_node_keeps_serving_while_redis_is_away_and_claims_its_streams_when_it_returns() {
    let scratch = Scratch::new("cluster-outage");
    let mut redis = RedisServer::start(&scratch);
    let node = origin(&scratch, &redis, "origin-c");
    assert!(wait_until(Duration::from_secs(10), || node_ids(&node) == ["origin-c"]), "directory: {}", directory(&node));
    let _before = publish(&node.rtmp_url("live/before"), &Source::default(), &scratch, "before");
    node.wait_live("live/before", Duration::from_secs(20));

    redis.kill();
    assert!(wait_until(Duration::from_secs(10), || directory(&node)["registry"]["reachable"] == false), "{}", directory(&node));
    let listing = directory(&node);
    assert!(listing["registry"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{listing}");
    // Playback goes on, and a new publish is accepted (and logged as unclaimed).
    let (ok, errors) = decode(&node.flv_url("live/before"), 3);
    assert!(ok && errors.trim().is_empty(), "{errors}");
    let _during = publish(&node.rtmp_url("live/during"), &Source::default(), &scratch, "during");
    node.wait_live("live/during", Duration::from_secs(20));
    assert!(node.log().contains("publish accepted here without a claim"), "{}", node.log());

    // Redis returns empty: the node registers again and claims both streams.
    redis.restart();
    assert!(
        wait_until(Duration::from_secs(10), || node_ids(&node) == ["origin-c"] && owner(&node, "live/before").as_deref() == Some("origin-c") && owner(&node, "live/during").as_deref() == Some("origin-c")),
        "directory after Redis returned: {}\nlog:\n{}",
        directory(&node),
        node.log()
    );
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

    // With no player left (and no HLS viewer), B stops pulling after edge_idle_ms (2 s).
    assert!(wait_until(Duration::from_secs(20), || players_of(&a, "live/pull") == 0), "B kept pulling with no player: {}", a.api("/api/v1/clients"));
    assert!(b.log().contains("pull ended"), "{}", b.log());
}
