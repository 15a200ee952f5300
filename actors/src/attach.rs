//! Attaching a protocol session to a stream, the same way for every protocol: claim the
//! stream for a publisher, or subscribe a player. Both retry briefly when the stream actor
//! stops between the registry lookup and the attach (the registry forgets it, then the next
//! attempt starts a new one).

use crate::node::clients::ClientId;
use crate::messages::*;
use crate::registry::StreamRegistry;
use crate::stream::{PublisherLink, Subscription};
use actix::Addr;
use estuary_storage::StreamKey;
use std::time::Duration;

const ATTEMPTS: usize = 5;
const RETRY_DELAY: Duration = Duration::from_millis(50);

/// Claims `key` for publisher `client` speaking `protocol` and attaches it to the stream actor.
/// The answer is the publisher's link: its only way to send media, and its claim (dropping
/// it detaches the publisher).
pub async fn claim_publish(registry: Addr<StreamRegistry>, key: StreamKey, client: ClientId, protocol: &'static str) -> Result<PublisherLink, PublishRefused> {
    // Every publish path (RTMP, SRT, WHIP, GB28181, ingest) comes through here: a name that
    // breaks the rule never reaches a muxer's directory or the registry's map.
    check_name(&key).map_err(PublishRefused::BadName)?;
    for _ in 0..ATTEMPTS {
        let stream = registry
            .send(ClaimPublish { key: key.clone(), client })
            .await
            .map_err(|_| PublishRefused::Unavailable(key.to_string()))??;
        match stream.send(AttachPublisher { client, protocol }).await {
            Ok(Ok(link)) => return Ok(link),
            Ok(Err(refused)) => return Err(refused),
            Err(_) => tokio::time::sleep(RETRY_DELAY).await,
        }
    }
    Err(PublishRefused::Unavailable(key.to_string()))
}

/// Subscribes player `client` to `key`. With `require_live`, a stream nobody publishes (and
/// that is not in its grace period) is refused; without, the player waits for a publisher.
pub async fn subscribe(registry: Addr<StreamRegistry>, key: StreamKey, client: ClientId, require_live: bool) -> Result<Subscription, PlayRefused> {
    subscribe_with(registry, key, client, require_live, false).await
}

/// [`subscribe`] for a feed of the delivery engine (see [`crate::delivery`]).
pub async fn subscribe_shared(registry: Addr<StreamRegistry>, key: StreamKey, client: ClientId, require_live: bool) -> Result<Subscription, PlayRefused> {
    subscribe_with(registry, key, client, require_live, true).await
}

async fn subscribe_with(registry: Addr<StreamRegistry>, key: StreamKey, client: ClientId, require_live: bool, shared: bool) -> Result<Subscription, PlayRefused> {
    if let Err(reason) = check_name(&key) {
        return Err(PlayRefused::NotFound(format!("{key} ({reason})")));
    }
    for _ in 0..ATTEMPTS {
        let stream = registry
            .send(FindStream { key: key.clone(), create: !require_live })
            .await
            .map_err(|_| PlayRefused::NotFound(key.to_string()))?
            .ok_or_else(|| PlayRefused::NotFound(key.to_string()))?;
        match stream.send(AddSubscriber { client, require_live, shared }).await {
            Ok(result) => return result,
            Err(_) => tokio::time::sleep(RETRY_DELAY).await,
        }
    }
    Err(PlayRefused::NotFound(key.to_string()))
}

/// The stream-name rule, for a key.
pub fn check_name(key: &StreamKey) -> Result<(), String> {
    estuary_protocols::naming::check_key(&key.vhost, &key.app, &key.stream)
}

/// Why `key` cannot be played as MPEG-TS (HTTP-TS, SRT), if it cannot: its video is AV1,
/// for which MPEG-TS has no standard mapping.
pub async fn mpeg_ts_refusal(registry: &Addr<StreamRegistry>, key: &StreamKey) -> Option<String> {
    (crate::transcode::video_codec(registry, key).await.as_deref() == Some("AV1")).then(|| {
        format!("{key} is AV1, which has no MPEG-TS mapping: play it over LL-HLS, DASH, RTMP, HTTP-FLV, WebRTC or DVR MP4, or as H.264 with ?codec=h264")
    })
}
