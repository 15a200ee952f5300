//! The stream actor's fan-out policy, driven through its messages with synthetic frames.

use crate::messages::*;
use crate::registry::StreamRegistry;
use crate::settings::StreamSettings;
use crate::storage::StorageHandle;
use actix::prelude::*;
use bytes::Bytes;
use estuary_protocols::media::{Codec, MediaFrame, Timebase, TrackKind};
use estuary_storage::{StreamKey, Store};
use std::sync::Arc;

fn frame(track: TrackKind, dts: i64, keyframe: bool, config: bool) -> Arc<MediaFrame> {
    let codec = if track == TrackKind::Video { Codec::H264 } else { Codec::Aac };
    Arc::new(MediaFrame { track, codec, dts, pts: dts, timebase: Timebase::MILLIS, keyframe, config, payload: Bytes::from(vec![dts as u8; 8]) })
}

async fn setup(settings: StreamSettings, dir: &std::path::Path) -> Addr<crate::stream::StreamActor> {
    let storage = StorageHandle::start(Store::open(dir).unwrap());
    let registry = StreamRegistry::new(settings, storage).start();
    let stream = registry.send(ClaimPublish { key: StreamKey::new("live", "t"), client: 1 }).await.unwrap().unwrap();
    stream.send(AttachPublisher { client: 1, protocol: "test" }).await.unwrap().unwrap();
    for f in [frame(TrackKind::Video, 0, true, true), frame(TrackKind::Audio, 0, true, true)] {
        stream.send(PublishFrame { client: 1, frame: f }).await.unwrap();
    }
    stream
}

async fn gop(stream: &Addr<crate::stream::StreamActor>, start: i64, frames: i64) {
    for i in 0..frames {
        let f = frame(TrackKind::Video, start + i * 40, i == 0, false);
        stream.send(PublishFrame { client: 1, frame: f }).await.unwrap();
    }
}

#[actix_rt::test]
async fn late_joiner_gets_headers_then_the_cached_gop() {
    let dir = tempfile::tempdir().unwrap();
    let stream = setup(StreamSettings::default(), dir.path()).await;
    gop(&stream, 0, 5).await;
    gop(&stream, 200, 3).await;
    let mut sub = stream.send(AddSubscriber { client: 2, require_live: true }).await.unwrap().unwrap();
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
    let stream = setup(settings, dir.path()).await;
    let mut slow = stream.send(AddSubscriber { client: 2, require_live: false }).await.unwrap().unwrap();
    let mut fast = stream.send(AddSubscriber { client: 3, require_live: false }).await.unwrap().unwrap();
    // Nobody reads `slow`: 2 headers + 14 frames fill its 16 slots. `fast` is read after
    // every GOP.
    let mut fast_count = 0;
    for start in [0, 400, 800] {
        gop(&stream, start, 10).await;
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
    gop(&stream, 1200, 2).await;
    let resumed: Vec<_> = std::iter::from_fn(|| slow.rx.try_recv().ok()).collect();
    assert_eq!(resumed.len(), 4);
    assert!(resumed[0].config && resumed[1].config);
    assert!(resumed[2].is_video_keyframe() && resumed[2].dts == 1200);
    let info = stream.send(GetStreamInfo).await.unwrap();
    assert_eq!(info.frames_dropped, 6 + 10, "rest of GOP 2 and all of GOP 3");
}

#[actix_rt::test]
async fn second_publisher_is_refused_by_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageHandle::start(Store::open(dir.path()).unwrap());
    let registry = StreamRegistry::new(StreamSettings::default(), storage).start();
    let key = StreamKey::new("live", "x");
    registry.send(ClaimPublish { key: key.clone(), client: 1 }).await.unwrap().unwrap();
    let refused = registry.send(ClaimPublish { key: key.clone(), client: 2 }).await.unwrap().unwrap_err();
    assert_eq!(refused, PublishRefused::AlreadyPublishing { stream: "live/x".into(), by: 1 });
    registry.send(ReleasePublish { key: key.clone(), client: 1 }).await.unwrap();
    assert!(registry.send(ClaimPublish { key, client: 2 }).await.unwrap().is_ok());
}
