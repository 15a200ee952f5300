//! Supervisors restart a failed RTMP listener and a failed storage actor; live sessions are
//! not affected.

use estuary_tests::ffmpeg::{publish, Source};
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
fn fault_injection_is_off_by_default() {
    let scratch = Scratch::new("nofault");
    let node = Node::start(&scratch, &[]);
    let response = http::post(node.ports.api, "/api/v1/debug/fault?actor=storage").expect("API");
    assert_eq!(response.status, 403);
    assert_eq!(restarts(&node, "storage"), 0);
}
