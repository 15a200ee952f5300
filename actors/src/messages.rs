//! Every message the actors exchange, named as verbs.

use crate::node::clients::ClientId;
use crate::stream::{StreamActor, StreamInfo, Subscription};
use actix::prelude::*;
use estuary_storage::{AudioInfo, StreamKey, StreamRecord, VideoInfo};
use thiserror::Error;

/// Why a publish was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PublishRefused {
    /// Another client publishes this stream.
    #[error("stream {stream} is already being published (by client {by})")]
    AlreadyPublishing {
        /// `app/stream`.
        stream: String,
        /// The current publisher.
        by: ClientId,
    },
    /// The stream actor went away while attaching; the caller may retry.
    #[error("stream {0} is shutting down, try again")]
    Unavailable(String),
    /// The name breaks the stream-name rule ([`estuary_protocols::naming`]).
    #[error("bad stream name: {0}")]
    BadName(String),
}

/// Why a play was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PlayRefused {
    /// No such stream.
    #[error("stream {0} not found")]
    NotFound(String),
    /// The stream exists but nobody publishes it.
    #[error("stream {0} is not being published")]
    NotLive(String),
    /// The access policy (rules, token, hook) refused.
    #[error("{0}")]
    Denied(String),
    /// The node could not take the player now (a busy or failing delivery loop).
    #[error("{0}")]
    Unavailable(String),
}

/// Registry: claim `key` for a publisher. Creates the stream actor when needed.
#[derive(Message)]
#[rtype(result = "Result<Addr<StreamActor>, PublishRefused>")]
pub struct ClaimPublish {
    /// The stream.
    pub key: StreamKey,
    /// The publishing client.
    pub client: ClientId,
}

/// Registry: the stream actor of `key`; with `create`, starts an idle one for waiting players.
#[derive(Message)]
#[rtype(result = "Option<Addr<StreamActor>>")]
pub struct FindStream {
    /// The stream.
    pub key: StreamKey,
    /// Start an idle stream actor when none exists.
    pub create: bool,
}

/// Stream: the stream's live package (LL-HLS and DASH on demand), started if it is not
/// running; `None` when the stream is not being published and has no package left.
#[derive(Message)]
#[rtype(result = "Option<std::sync::Arc<crate::package::LivePackage>>")]
pub struct StartPackage;

/// Registry: a stream's publisher left (sent by the stream actor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleasePublish {
    /// The stream.
    pub key: StreamKey,
    /// The publisher that left.
    pub client: ClientId,
}

/// Registry: a stream actor stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForgetStream {
    /// The stream.
    pub key: StreamKey,
    /// The actor's generation, so a newer actor for the same key is not forgotten.
    pub generation: u64,
}

/// Registry: every stream actor.
#[derive(Message)]
#[rtype(result = "Vec<(StreamKey, Addr<StreamActor>)>")]
pub struct ListStreams;

/// Registry: the stream settings of every publish from now on (a configuration reload).
/// Streams being published keep theirs until their publisher leaves.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReloadStreamSettings(pub crate::settings::VhostStreamSettings);

/// Registry: the streams that have a publisher now.
#[derive(Message)]
#[rtype(result = "Vec<StreamKey>")]
pub struct PublishedStreams;

/// Stream: this client now publishes. The answer is the publisher's only way to send media
/// (see [`crate::stream::PublisherLink`]); dropping it detaches the publisher.
#[derive(Message)]
#[rtype(result = "Result<crate::stream::PublisherLink, PublishRefused>")]
pub struct AttachPublisher {
    /// The publisher.
    pub client: ClientId,
    /// Its protocol.
    pub protocol: &'static str,
}

/// Stream: subscribe a player.
#[derive(Message)]
#[rtype(result = "Result<Subscription, PlayRefused>")]
pub struct AddSubscriber {
    /// The player.
    pub client: ClientId,
    /// Refuse when no publisher is attached and the stream is not in its grace period.
    pub require_live: bool,
    /// A feed of the delivery engine (many players behind one subscription): counted through
    /// the stream's delivery counters, not a client record.
    pub shared: bool,
}

/// Stream: its current state.
#[derive(Message)]
#[rtype(result = "StreamInfo")]
pub struct GetStreamInfo;

/// Storage: a publish started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordPublishStart {
    /// The stream.
    pub key: StreamKey,
    /// When, Unix ms.
    pub now_ms: i64,
}

/// Storage: the codecs of a stream.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordCodecs {
    /// The stream.
    pub key: StreamKey,
    /// Video track.
    pub video: Option<VideoInfo>,
    /// Audio track.
    pub audio: Option<AudioInfo>,
}

/// Storage: a publish ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordPublishEnd {
    /// The stream.
    pub key: StreamKey,
    /// When, Unix ms.
    pub now_ms: i64,
    /// Bytes received during this publish.
    pub bytes_in: u64,
    /// Bytes sent during this publish.
    pub bytes_out: u64,
    /// Duration of this publish.
    pub live_ms: u64,
}

/// Storage: every stream record.
#[derive(Message)]
#[rtype(result = "Result<Vec<StreamRecord>, crate::storage::StorageFailure>")]
pub struct ListStreamRecords;

/// Storage: forget ended streams older than `max_age_ms` and the oldest beyond `max_count`.
#[derive(Message)]
#[rtype(result = "Result<usize, crate::storage::StorageFailure>")]
pub struct PruneStreams {
    /// Now, Unix ms.
    pub now_ms: i64,
    /// Oldest end kept.
    pub max_age_ms: i64,
    /// Most records kept.
    pub max_count: usize,
    /// Streams live now (never forgotten).
    pub live: std::collections::HashSet<StreamKey>,
}

/// Storage: flush to disk.
#[derive(Message)]
#[rtype(result = "Result<(), crate::storage::StorageFailure>")]
pub struct FlushStorage;

/// A fault to inject (tests and operators; the API accepts it only with `api.debug_faults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Panic inside the actor's handler, as a bug would.
    Panic,
    /// Hold the actor's handler for this long without blocking its thread (the actor takes
    /// no message and no frame meanwhile).
    Stall(std::time::Duration),
    /// A writer sleeps this long before each write, for `during` (a slow disk).
    SlowWrites {
        /// Sleep per write.
        per_write: std::time::Duration,
        /// How long the slowness lasts.
        during: std::time::Duration,
    },
}

/// Any supervised worker: suffer `Fault` (fault injection). A panic is caught at the actor's
/// boundary, counted as a restart, and the actor starts over.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct InjectFault(pub Fault);

/// Which part of a stream a fault is injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    /// The stream actor itself.
    Stream,
    /// Its HLS muxer.
    Hls,
    /// Its DASH muxer.
    Dash,
    /// Its DVR writer.
    Dvr,
}

/// What [`InjectTimedData`] carries.
#[derive(Debug, Clone)]
pub enum TimedData {
    /// A caption (text already checked for size; an ISO 639-2 language code), with the
    /// stream time (ms) it belongs to when the sender gave it (checked: `end` after `start`).
    Caption { text: String, language: String, start_ms: Option<i64>, end_ms: Option<i64> },
    /// Timed metadata: a JSON object's text (already checked).
    Metadata { json: String },
}

/// Stream: timed data for the outputs that carry it (RTMP and HTTP-FLV players get a caption
/// as `onTextData`, metadata as an `onCuePoint` event, at the live edge). Answers the stream
/// time (ms) it went out at.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<i64, CaptionRefused>")]
pub struct InjectTimedData(pub TimedData);

/// Why a caption was not taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CaptionRefused {
    /// The stream has no publisher.
    #[error("stream {0} is not live")]
    NotLive(String),
}

/// Stream: inject `fault` into the stream actor or one of its outputs.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), String>")]
pub struct InjectStreamFault {
    /// Where.
    pub target: FaultTarget,
    /// What.
    pub fault: Fault,
}

/// Storage: insert or replace a recording (and its sample table), flushed before replying.
#[derive(Message)]
#[rtype(result = "Result<(), crate::storage::StorageFailure>")]
pub struct PutRecording {
    /// The recording.
    pub recording: estuary_storage::Recording,
    /// Its samples, when known.
    pub samples: Option<Vec<estuary_storage::TrackSamples>>,
}

/// Storage: recordings of one stream (or all).
#[derive(Message)]
#[rtype(result = "Result<Vec<estuary_storage::Recording>, crate::storage::StorageFailure>")]
pub struct ListRecordings {
    /// The stream; `None` for all.
    pub key: Option<StreamKey>,
}

/// Storage: record a gap in a stream's recordings (flushed before replying).
#[derive(Message)]
#[rtype(result = "Result<(), crate::storage::StorageFailure>")]
pub struct PutRecordingGap(pub estuary_storage::RecordingGap);

/// Storage: the gaps of one stream's recordings.
#[derive(Message)]
#[rtype(result = "Result<Vec<estuary_storage::RecordingGap>, crate::storage::StorageFailure>")]
pub struct ListRecordingGaps(pub StreamKey);

/// Storage: the sample table of a recording.
#[derive(Message)]
#[rtype(result = "Result<Option<Vec<estuary_storage::TrackSamples>>, crate::storage::StorageFailure>")]
pub struct GetRecordingSamples {
    /// Recording id.
    pub id: u64,
}

/// Storage: remove a recording from the index.
#[derive(Message)]
#[rtype(result = "Result<(), crate::storage::StorageFailure>")]
pub struct DeleteRecording {
    /// The recording.
    pub recording: estuary_storage::Recording,
}

/// Stream: start the outputs its settings (or a runtime DVR switch) ask for, if not running.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartOutputs;

/// Storage: save an ingest.
#[derive(Message)]
#[rtype(result = "Result<(), crate::storage::StorageFailure>")]
pub struct PutIngest(pub estuary_storage::IngestSpec);

/// Storage: every saved ingest.
#[derive(Message)]
#[rtype(result = "Result<Vec<estuary_storage::IngestSpec>, crate::storage::StorageFailure>")]
pub struct ListIngests;

/// Storage: forget an ingest.
#[derive(Message)]
#[rtype(result = "Result<bool, crate::storage::StorageFailure>")]
pub struct DeleteIngest(pub u64);

/// Storage: remember a GB28181 device.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PutGbDevice(pub estuary_storage::GbDeviceRecord);

/// Storage: forget a GB28181 device (evicted from a full device table).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeleteGbDevice(pub String);
