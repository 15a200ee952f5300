//! The stream actor's fan-out policy, driven through its messages with synthetic frames.

use crate::messages::*;
use crate::registry::StreamRegistry;
use crate::settings::StreamSettings;
use crate::storage::StorageHandle;
use actix::prelude::*;
use crate::stream::TryPush;
use bytes::Bytes;
use estuary_protocols::media::{Codec, MediaFrame, Timebase, TrackKind};
use estuary_storage::{StreamKey, Store};
use std::sync::Arc;

fn frame(track: TrackKind, dts: i64, keyframe: bool, config: bool) -> Arc<MediaFrame> {
    let codec = if track == TrackKind::Video { Codec::H264 } else { Codec::Aac };
    Arc::new(MediaFrame { track, codec, dts, pts: dts, timebase: Timebase::MILLIS, keyframe, config, payload: Bytes::from(vec![dts as u8; 8]) })
}

async fn setup(settings: StreamSettings, dir: &std::path::Path) -> Harness {
    let node = crate::node::Node::for_tests();
    let storage = StorageHandle::start(node.clone(), Store::open(dir).unwrap());
    let registry = StreamRegistry::new(node, settings, storage).start();
    let stream = registry.send(ClaimPublish { key: StreamKey::new("live", "t"), client: 1 }).await.unwrap().unwrap();
    let link = stream.send(AttachPublisher { client: 1, protocol: "test" }).await.unwrap().unwrap();
    let mut harness = Harness { stream, link, pushed: 0 };
    for f in [frame(TrackKind::Video, 0, true, true), frame(TrackKind::Audio, 0, true, true)] {
        harness.push(f).await;
    }
    harness.settle().await;
    harness
}

/// A stream actor and its publisher's link.
struct Harness {
    stream: Addr<crate::stream::StreamActor>,
    link: crate::stream::PublisherLink,
    pushed: u64,
}

impl Harness {
    async fn push(&mut self, f: Arc<MediaFrame>) {
        self.link.push(f).await.unwrap();
        self.pushed += 1;
    }

    /// Waits until the actor has taken every frame pushed (frames travel on the link's
    /// queue, beside the mailbox, so a message is no barrier).
    async fn settle(&self) {
        for _ in 0..500 {
            if self.stream.send(GetStreamInfo).await.unwrap().frames_in >= self.pushed {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("the stream actor did not take {} frames", self.pushed);
    }

    async fn gop(&mut self, start: i64, frames: i64) {
        for i in 0..frames {
            self.push(frame(TrackKind::Video, start + i * 40, i == 0, false)).await;
        }
        self.settle().await;
    }
}

#[actix_rt::test]
async fn late_joiner_gets_headers_then_the_cached_gop() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = setup(StreamSettings::default(), dir.path()).await;
    h.gop(0, 5).await;
    h.gop(200, 3).await;
    let mut sub = h.stream.send(AddSubscriber { client: 2, require_live: true, shared: false }).await.unwrap().unwrap();
    let mut got = Vec::new();
    while let Ok(f) = sub.rx.try_recv() {
        got.push(f);
    }
    assert_eq!(got.len(), 2 + 3, "headers then the last GOP only");
    assert!(got[0].config && got[1].config);
    assert!(got[2].is_video_keyframe());
    assert_eq!(got[2].dts, 200);
    // Headers are retimed to the GOP start so the player sees no jump.
    assert_eq!(got[0].dts, 200);
}

#[actix_rt::test]
async fn a_full_subscriber_drops_until_a_keyframe_then_resumes_with_headers() {
    let dir = tempfile::tempdir().unwrap();
    let settings = StreamSettings { player_queue_frames: 16, ..StreamSettings::default() };
    let mut h = setup(settings, dir.path()).await;
    let mut slow = h.stream.send(AddSubscriber { client: 2, require_live: false, shared: false }).await.unwrap().unwrap();
    let mut fast = h.stream.send(AddSubscriber { client: 3, require_live: false, shared: false }).await.unwrap().unwrap();
    // Nobody reads `slow`: 2 headers + 14 frames fill its 16 slots. `fast` is read after
    // every GOP.
    let mut fast_count = 0;
    for start in [0, 400, 800] {
        h.gop(start, 10).await;
        while fast.rx.try_recv().is_ok() {
            fast_count += 1;
        }
    }
    assert_eq!(fast_count, 2 + 30, "the reading subscriber lost nothing");

    let mut slow_frames = Vec::new();
    while let Ok(f) = slow.rx.try_recv() {
        slow_frames.push(f);
    }
    assert_eq!(slow_frames.len(), 16);
    assert_eq!(slow_frames.last().unwrap().dts, 400 + 3 * 40, "filled up inside the second GOP");

    // With room again, the next keyframe resumes it: headers first, then the keyframe.
    h.gop(1200, 2).await;
    let resumed: Vec<_> = std::iter::from_fn(|| slow.rx.try_recv().ok()).collect();
    assert_eq!(resumed.len(), 4);
    assert!(resumed[0].config && resumed[1].config);
    assert!(resumed[2].is_video_keyframe() && resumed[2].dts == 1200);
    let info = h.stream.send(GetStreamInfo).await.unwrap();
    assert_eq!(info.frames_dropped, 6 + 10, "rest of GOP 2 and all of GOP 3");
}

#[actix_rt::test]
async fn second_publisher_is_refused_by_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let node = crate::node::Node::for_tests();
    let storage = StorageHandle::start(node.clone(), Store::open(dir.path()).unwrap());
    let registry = StreamRegistry::new(node, StreamSettings::default(), storage).start();
    let key = StreamKey::new("live", "x");
    registry.send(ClaimPublish { key: key.clone(), client: 1 }).await.unwrap().unwrap();
    let refused = registry.send(ClaimPublish { key: key.clone(), client: 2 }).await.unwrap().unwrap_err();
    assert_eq!(refused, PublishRefused::AlreadyPublishing { stream: "live/x".into(), by: 1 });
    registry.send(ReleasePublish { key: key.clone(), client: 1 }).await.unwrap();
    assert!(registry.send(ClaimPublish { key, client: 2 }).await.unwrap().is_ok());
}

#[actix_rt::test]
async fn a_stalled_stream_fills_the_publishers_queue_and_push_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let settings = StreamSettings { publish_queue_frames: 16, ..StreamSettings::default() };
    let mut h = setup(settings, dir.path()).await;
    h.stream.send(InjectStreamFault { target: FaultTarget::Stream, fault: Fault::Stall(std::time::Duration::from_millis(300)) }).await.unwrap().unwrap();
    // The actor takes nothing while stalled: the 17th frame finds the queue full.
    let mut queued = 0;
    let refused = loop {
        match h.link.try_push(frame(TrackKind::Video, 1000 + queued * 40, queued == 0, false)) {
            Ok(()) => queued += 1,
            Err(TryPush::Full(f)) => break f,
            Err(TryPush::Gone) => panic!("stream gone"),
        }
        assert!(queued <= 16, "the queue let more than its bound through");
    };
    assert_eq!(queued, 16);
    h.pushed += queued as u64;
    // `push` waits for the stall to end instead of failing or growing the queue.
    let started = std::time::Instant::now();
    h.push(refused).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(100), "push returned while the stream was stalled");
    h.settle().await;
    assert_eq!(h.stream.send(GetStreamInfo).await.unwrap().frames_in, h.pushed, "nothing lost");
}

#[actix_rt::test]
async fn a_datagram_publisher_loses_frames_to_a_full_queue_and_they_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let settings = StreamSettings { publish_queue_frames: 16, ..StreamSettings::default() };
    let mut h = setup(settings, dir.path()).await;
    h.stream.send(InjectStreamFault { target: FaultTarget::Stream, fault: Fault::Stall(std::time::Duration::from_millis(200)) }).await.unwrap().unwrap();
    let mut kept = 0;
    for i in 0..40 {
        if h.link.push_or_drop(frame(TrackKind::Video, 1000 + i * 40, i == 0, false)).unwrap() {
            kept += 1;
        }
    }
    assert_eq!(kept, 16);
    assert_eq!(h.stream.send(GetStreamInfo).await.unwrap().publish_dropped, 24);
}

#[actix_rt::test]
async fn a_panic_in_the_stream_is_caught_and_players_resume_at_the_next_keyframe() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = setup(StreamSettings::default(), dir.path()).await;
    h.gop(0, 5).await;
    let mut player = h.stream.send(AddSubscriber { client: 2, require_live: true, shared: false }).await.unwrap().unwrap();
    while player.rx.try_recv().is_ok() {}
    h.stream.send(InjectStreamFault { target: FaultTarget::Stream, fault: Fault::Panic }).await.unwrap().unwrap();
    let info = h.stream.send(GetStreamInfo).await.unwrap();
    assert_eq!(info.restarts, 1);
    assert_eq!(info.publisher, Some(1), "the publisher stays attached");
    // Frames of the interrupted GOP are not sent; the next keyframe resumes the player with
    // headers first.
    h.push(frame(TrackKind::Video, 200, false, false)).await;
    h.push(frame(TrackKind::Video, 240, false, false)).await;
    h.settle().await;
    assert!(player.rx.try_recv().is_err(), "the rest of the interrupted GOP is skipped");
    h.gop(400, 2).await;
    let resumed: Vec<_> = std::iter::from_fn(|| player.rx.try_recv().ok()).collect();
    assert_eq!(resumed.len(), 4, "headers, keyframe, next frame");
    assert!(resumed[0].config && resumed[1].config && resumed[2].is_video_keyframe());
    // A late joiner is served from the new GOP cache.
    let late = h.stream.send(AddSubscriber { client: 3, require_live: true, shared: false }).await.unwrap().unwrap();
    assert!(late.rx.len() >= 3);
}

#[actix_rt::test]
async fn dropping_the_link_detaches_after_the_frames_already_queued() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = setup(StreamSettings::default(), dir.path()).await;
    let mut player = h.stream.send(AddSubscriber { client: 2, require_live: true, shared: false }).await.unwrap().unwrap();
    for i in 0..5 {
        h.push(frame(TrackKind::Video, i * 40, i == 0, false)).await;
    }
    let Harness { stream, link, .. } = h;
    drop(link);
    let mut got = 0;
    while let Ok(Some(f)) = tokio::time::timeout(std::time::Duration::from_secs(2), player.rx.recv()).await {
        if !f.config {
            got += 1;
        }
        if got == 5 {
            break;
        }
    }
    assert_eq!(got, 5, "every queued frame reached the player");
    for _ in 0..100 {
        let info = stream.send(GetStreamInfo).await.unwrap();
        if info.publisher.is_none() {
            assert!(info.in_grace);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the publisher was not detached when its link dropped");
}

#[test]
fn a_dropping_link_waits_for_a_keyframe_and_never_loses_headers() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let drops = Arc::new(crate::stream::link::PublishDrops::default());
    let mut link = crate::stream::PublisherLink::new(StreamKey::new("live", "d"), 1, tx, drops.clone(), None);
    assert!(link.push_or_drop(frame(TrackKind::Video, 0, true, false)).unwrap());
    assert!(link.push_or_drop(frame(TrackKind::Video, 40, false, false)).unwrap());
    // Full: a P-frame is lost, and so are the frames that depend on it.
    assert!(!link.push_or_drop(frame(TrackKind::Video, 80, false, false)).unwrap());
    // New headers find no room either: held, not lost.
    assert!(!link.push_or_drop(frame(TrackKind::Video, 100, true, true)).unwrap());
    while rx.try_recv().is_ok() {}
    assert!(!link.push_or_drop(frame(TrackKind::Video, 120, false, false)).unwrap(), "room again, but video waits for a keyframe");
    assert!(link.push_or_drop(frame(TrackKind::Video, 160, true, false)).unwrap());
    let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert_eq!(got.len(), 2);
    assert!(got[0].config && got[0].dts == 100, "the held headers go first");
    assert!(got[1].is_video_keyframe() && got[1].dts == 160);
    assert_eq!(drops.frames.load(std::sync::atomic::Ordering::Relaxed), 2);
}

/// The CEA-608 byte pairs in the caption SEI of a frame.
fn cc_pairs(payload: &[u8]) -> Vec<[u8; 2]> {
    let Some(at) = payload.windows(5).position(|w| w == b"GA94\x03") else { return Vec::new() };
    let data = &payload[at + 5..];
    let count = (data[0] & 0x1f) as usize;
    data[2..2 + 3 * count].chunks(3).map(|t| [t[1], t[2]]).collect()
}

#[actix_rt::test]
async fn a_caption_longer_than_one_frame_carries_follows_display_order_through_b_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = setup(StreamSettings::default(), dir.path()).await;
    let mut sub = h.stream.send(AddSubscriber { client: 2, require_live: false, shared: false }).await.unwrap().unwrap();
    let video = |dts: i64, pts: i64, key: bool| {
        let nal: &[u8] = if key { &[0x65, 0x88, 0x84] } else { &[0x41, 0x9a, 0x02] };
        let mut payload = (nal.len() as u32).to_be_bytes().to_vec();
        payload.extend_from_slice(nal);
        Arc::new(MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts, pts, timebase: Timebase::MILLIS, keyframe: key, config: false, payload: Bytes::from(payload) })
    };
    h.push(video(0, 80, true)).await;
    h.settle().await;
    // Two rows: more pairs than one frame carries, so three frames take them.
    let text = "we are going to the park today and then we will all go home";
    h.stream.send(InjectTimedData(TimedData::Caption { text: text.into(), language: "eng".into(), start_ms: None, end_ms: None })).await.unwrap().unwrap();
    // Decode order I P B B P B B: each P is presented after the two B-frames that follow it.
    for (dts, pts) in [(40, 200), (80, 120), (120, 160), (160, 320), (200, 240), (240, 280), (280, 440), (320, 360), (360, 400)] {
        h.push(video(dts, pts, false)).await;
    }
    h.settle().await;
    let mut frames = Vec::new();
    while let Ok(f) = sub.rx.try_recv() {
        if f.track == TrackKind::Video && !f.config {
            frames.push(f);
        }
    }
    frames.sort_by_key(|f| f.pts);
    let shown: Vec<[u8; 2]> = frames.iter().flat_map(|f| cc_pairs(&f.payload)).collect();
    assert_eq!(shown, estuary_protocols::codec::cea608::pop_on(text), "caption data in display order");
}
