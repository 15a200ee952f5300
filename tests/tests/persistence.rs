//! Stream metadata lives in sled and survives restarts (graceful and SIGKILL).

use estuary_tests::ffmpeg::{publish, Source};
use estuary_tests::{wait_until, Node, Scratch};
use std::time::Duration;

fn history_count(node: &Node, path: &str) -> u64 {
    node.stream_info(path).map(|s| s["history"]["publish_count"].as_u64().unwrap_or(0)).unwrap_or(0)
}

#[test]
fn stream_metadata_survives_restarts() {
    let scratch = Scratch::new("persist");
    let mut node = Node::start(&scratch, &[("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "500")]);
    let source = Source { duration: Some(3.0), ..Source::default() };
    let mut publisher = publish(&node.rtmp_url("live/remember"), &source, &scratch, "first");
    node.wait_live("live/remember", Duration::from_secs(20));
    assert!(publisher.wait(Duration::from_secs(20)).is_some_and(|s| s.success()), "{}", publisher.stderr());
    assert!(
        wait_until(Duration::from_secs(10), || node.stream_info("live/remember").is_some_and(|s| !s["history"]["last_unpublish_ms"].is_null())),
        "unpublish not recorded"
    );

    node.stop();
    node.restart();
    let info = node.stream_info("live/remember").expect("stream remembered after restart");
    assert_eq!(info["publish"]["active"], false);
    assert_eq!(info["history"]["publish_count"], 1);
    assert!(info["history"]["bytes_in_total"].as_u64().unwrap_or(0) > 10_000, "{info}");
    assert!(info["history"]["live_ms_total"].as_u64().unwrap_or(0) >= 2000, "{info}");
    assert_eq!(info["video"]["codec"], "H264");
    assert_eq!(info["video"]["width"], 320);
    assert_eq!(info["audio"]["codec"], "AAC");
    assert_eq!(info["audio"]["sample_rate"], 48000);

    // Publish again, then kill -9: the second publish is still counted after the restart.
    let mut publisher = publish(&node.rtmp_url("live/remember"), &source, &scratch, "second");
    node.wait_live("live/remember", Duration::from_secs(20));
    assert!(publisher.wait(Duration::from_secs(20)).is_some_and(|s| s.success()));
    assert!(wait_until(Duration::from_secs(10), || history_count(&node, "live/remember") == 2), "second publish not recorded");
    assert!(
        wait_until(Duration::from_secs(10), || node.stream_info("live/remember").is_some_and(|s| s["publish"]["active"] == false)),
        "stream still active"
    );
    std::thread::sleep(Duration::from_millis(300));
    node.kill();
    node.restart();
    assert_eq!(history_count(&node, "live/remember"), 2);
}
