//! Supervisors restart a failed RTMP listener, SRT listener and storage actor; live sessions
//! are not affected.

use estuary_tests::ffmpeg::{publish, publish_ts, Source};
use estuary_tests::{http, wait_until, Node, Scratch};
use std::time::Duration;

fn restarts(node: &Node, name: &str) -> u64 {
    node.api("/api/v1/supervisors")["restarts"][name].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn failed_listener_and_storage_are_restarted() {
    let scratch = Scratch::new("supervise");
    let node = Node::start(&scratch, &[("ESTUARY_API__DEBUG_FAULTS", "true")]);
    assert_eq!(restarts(&node, "rtmp_listener"), 0);
    assert_eq!(restarts(&node, "storage"), 0);

    let _steady = publish(&node.rtmp_url("live/steady"), &Source::default(), &scratch, "steady");
    let before = node.wait_live("live/steady", Duration::from_secs(20));

    let response = http::post(node.ports.api, "/api/v1/debug/fault?actor=rtmp_listener").expect("API");
    assert_eq!(response.status, 200);
    assert!(wait_until(Duration::from_secs(10), || restarts(&node, "rtmp_listener") == 1), "listener restart not counted");
    assert!(wait_until(Duration::from_secs(10), || node.log().matches("RTMP listening").count() >= 2), "listener did not listen again");
    // New connections are accepted again, and the existing publisher never noticed.
    let mut after = publish(&node.rtmp_url("live/after"), &Source { duration: Some(2.0), ..Source::default() }, &scratch, "after");
    node.wait_live("live/after", Duration::from_secs(20));
    assert!(after.wait(Duration::from_secs(20)).is_some_and(|s| s.success()), "{}", after.stderr());
    let steady = node.stream_info("live/steady").expect("steady listed");
    assert_eq!(steady["publish"]["cid"], before["publish"]["cid"], "the publisher was disturbed");

    let response = http::post(node.ports.api, "/api/v1/debug/fault?actor=storage").expect("API");
    assert_eq!(response.status, 200);
    assert!(wait_until(Duration::from_secs(10), || restarts(&node, "storage") == 1), "storage restart not counted");
    // Storage works after its restart: a new stream is recorded.
    let mut stored = publish(&node.rtmp_url("live/stored"), &Source { duration: Some(2.0), ..Source::default() }, &scratch, "stored");
    node.wait_live("live/stored", Duration::from_secs(20));
    assert!(stored.wait(Duration::from_secs(20)).is_some());
    assert!(
        wait_until(Duration::from_secs(10), || node.stream_info("live/stored").is_some_and(|s| s["history"]["publish_count"] == 1)),
        "storage did not record after its restart"
    );

    let response = http::post(node.ports.api, "/api/v1/debug/fault?actor=nonsense").expect("API");
    assert_eq!(response.status, 400);
}

#[test]
fn failed_srt_listener_is_restarted_and_keeps_its_sessions() {
    let scratch = Scratch::new("supervise-srt");
    let node = Node::start(&scratch, &[("ESTUARY_API__DEBUG_FAULTS", "true")]);
    assert_eq!(restarts(&node, "srt_listener"), 0);
    let _steady = publish_ts(&node.srt_url("live/srtsteady", true, ""), &Source::default(), &scratch, "steady");
    let before = node.wait_live("live/srtsteady", Duration::from_secs(20));

    let response = http::post(node.ports.api, "/api/v1/debug/fault?actor=srt_listener").expect("API");
    assert_eq!(response.status, 200);
    assert!(wait_until(Duration::from_secs(10), || restarts(&node, "srt_listener") == 1), "SRT listener restart not counted");
    assert!(wait_until(Duration::from_secs(10), || node.log().matches("SRT listening").count() >= 2), "SRT listener did not listen again");

    // The established publisher's packets still reach its session: frames keep coming.
    let frames = |n: &Node| n.stream_info("live/srtsteady").and_then(|s| s["frames"].as_u64()).unwrap_or(0);
    let at_restart = frames(&node);
    assert!(wait_until(Duration::from_secs(10), || frames(&node) > at_restart + 50), "the SRT publisher stalled after the listener restart");
    let steady = node.stream_info("live/srtsteady").expect("listed");
    assert_eq!(steady["publish"]["cid"], before["publish"]["cid"], "the publisher was disturbed");
    // New callers are accepted.
    let mut after = publish_ts(&node.srt_url("live/srtafter", true, ""), &Source { duration: Some(2.0), ..Source::default() }, &scratch, "after");
    node.wait_live("live/srtafter", Duration::from_secs(20));
    assert!(after.wait(Duration::from_secs(20)).is_some_and(|s| s.success()), "{}", after.stderr());
}

#[test]
fn fault_injection_is_off_by_default() {
    let scratch = Scratch::new("nofault");
    let node = Node::start(&scratch, &[]);
    let response = http::post(node.ports.api, "/api/v1/debug/fault?actor=storage").expect("API");
    assert_eq!(response.status, 403);
    assert_eq!(restarts(&node, "storage"), 0);
}
