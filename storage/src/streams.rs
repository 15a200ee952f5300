//! The `streams` tree: what the node remembers about every stream it has carried.

use crate::{codec, StorageError, Store};
use serde::{Deserialize, Serialize};

/// `vhost/app/stream`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamKey {
    /// Virtual host (`__defaultVhost__` when none was given, as in SRS).
    pub vhost: String,
    /// Application.
    pub app: String,
    /// Stream name.
    pub stream: String,
}

impl StreamKey {
    /// A key in the default vhost.
    pub fn new(app: &str, stream: &str) -> Self {
        StreamKey { vhost: "__defaultVhost__".into(), app: app.into(), stream: stream.into() }
    }

    /// The sled key.
    pub fn db_key(&self) -> String {
        format!("{}/{}/{}", self.vhost, self.app, self.stream)
    }
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.app, self.stream)
    }
}

/// The video track as last published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct VideoInfo {
    /// Codec name (`H264`, `H265`, `AV1`).
    pub codec: String,
    /// Profile name (`High`, `Main`, ...).
    pub profile: String,
    /// Level (`3.1`).
    pub level: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// The audio track as last published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AudioInfo {
    /// Codec name (`AAC`, `Opus`, ...).
    pub codec: String,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u8,
    /// Profile (`LC`, `HE`, ...).
    pub profile: String,
}

/// What is remembered about one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Which stream.
    pub key: StreamKey,
    /// Video as last published.
    pub video: Option<VideoInfo>,
    /// Audio as last published.
    pub audio: Option<AudioInfo>,
    /// First publish, Unix milliseconds.
    pub first_publish_ms: i64,
    /// Last publish start, Unix milliseconds.
    pub last_publish_ms: i64,
    /// Last unpublish, Unix milliseconds (None while the first publish is live).
    pub last_unpublish_ms: Option<i64>,
    /// How many times it was published.
    pub publish_count: u64,
    /// Bytes received from publishers over all publishes.
    pub bytes_in: u64,
    /// Bytes sent to players over all publishes.
    pub bytes_out: u64,
    /// Milliseconds spent live over all publishes.
    pub live_ms_total: u64,
}

impl StreamRecord {
    /// A record for a stream published for the first time at `now_ms`.
    pub fn first(key: StreamKey, now_ms: i64) -> Self {
        StreamRecord {
            key,
            video: None,
            audio: None,
            first_publish_ms: now_ms,
            last_publish_ms: now_ms,
            last_unpublish_ms: None,
            publish_count: 0,
            bytes_in: 0,
            bytes_out: 0,
            live_ms_total: 0,
        }
    }
}

const TREE: &str = "streams";

impl Store {
    /// The record of one stream.
    pub fn stream(&self, key: &StreamKey) -> Result<Option<StreamRecord>, StorageError> {
        let db_key = key.db_key();
        match self.streams.get(db_key.as_bytes()).map_err(|e| self.sled_err(e))? {
            Some(raw) => codec::decode(&raw)
                .map(Some)
                .map_err(|detail| StorageError::Decode { tree: TREE, key: db_key, detail }),
            None => Ok(None),
        }
    }

    /// Writes a record.
    pub fn put_stream(&self, record: &StreamRecord) -> Result<(), StorageError> {
        self.streams
            .insert(record.key.db_key().as_bytes(), codec::encode(record))
            .map(|_| ())
            .map_err(|e| self.sled_err(e))
    }

    /// Reads, changes and writes one record. `change` gets the current record, if any, and
    /// returns the new one. Callers serialise writers (the node has one storage actor), so
    /// read-modify-write needs no compare-and-swap loop.
    pub fn update_stream(
        &self,
        key: &StreamKey,
        change: impl FnOnce(Option<StreamRecord>) -> StreamRecord,
    ) -> Result<StreamRecord, StorageError> {
        let current = self.stream(key)?;
        let next = change(current);
        self.put_stream(&next)?;
        Ok(next)
    }

    /// Every record, ordered by key. Undecodable records are skipped and returned as errors
    /// in the second list, so one bad value does not hide the rest.
    pub fn list_streams(&self) -> Result<(Vec<StreamRecord>, Vec<StorageError>), StorageError> {
        let mut records = Vec::new();
        let mut errors = Vec::new();
        for item in self.streams.iter() {
            let (key, value) = item.map_err(|e| self.sled_err(e))?;
            match codec::decode::<StreamRecord>(&value) {
                Ok(record) => records.push(record),
                Err(detail) => errors.push(StorageError::Decode {
                    tree: TREE,
                    key: String::from_utf8_lossy(&key).into_owned(),
                    detail,
                }),
            }
        }
        Ok((records, errors))
    }

    /// Forgets streams that are not live (`is_live` says which are): those whose last
    /// activity is older than `max_age_ms` before `now_ms`, then the oldest beyond `max_count`.
    /// A stream's last activity is its last unpublish, or its last publish when no unpublish
    /// was recorded after it (a node killed mid-publish). Returns how many went.
    pub fn prune_streams(&self, now_ms: i64, max_age_ms: i64, max_count: usize, is_live: impl Fn(&StreamKey) -> bool) -> Result<usize, StorageError> {
        let (records, _) = self.list_streams()?;
        let last_activity = |r: &StreamRecord| r.last_unpublish_ms.unwrap_or(r.last_publish_ms).max(r.last_publish_ms);
        let mut candidates: Vec<&StreamRecord> = records.iter().filter(|r| !is_live(&r.key)).collect();
        // Oldest activity first.
        candidates.sort_by_key(|r| last_activity(r));
        let over = records.len().saturating_sub(max_count);
        let mut removed = 0;
        for (index, record) in candidates.iter().enumerate() {
            let too_old = now_ms - last_activity(record) > max_age_ms;
            if too_old || index < over {
                self.streams.remove(record.key.db_key().as_bytes()).map_err(|e| self.sled_err(e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_streams_are_forgotten_by_age_and_count_and_live_ones_never() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let record = |name: &str, published: i64, unpublished: Option<i64>| {
            let mut r = StreamRecord::first(StreamKey::new("live", name), published);
            r.last_unpublish_ms = unpublished;
            store.put_stream(&r).unwrap();
        };
        record("old", 1_000, Some(2_000));
        record("mid", 50_000, Some(60_000));
        record("new", 80_000, Some(90_000));
        record("live", 10_000, None);
        record("live-again", 95_000, Some(5_000));
        // Published at 30 s, never unpublished, not live: a node killed mid-publish left it.
        record("stuck", 30_000, None);
        let live = |key: &StreamKey| key.stream.starts_with("live");
        // "old" ended, and "stuck" was last active, more than 50 s before now (100 s).
        assert_eq!(store.prune_streams(100_000, 50_000, 100, live).unwrap(), 2);
        // Four left, two allowed: the oldest not-live ones ("mid", then "new") go; the live
        // ones stay even if that leaves more than the count.
        assert_eq!(store.prune_streams(100_000, 50_000, 2, live).unwrap(), 2);
        let (left, _) = store.list_streams().unwrap();
        let mut names: Vec<String> = left.iter().map(|r| r.key.stream.clone()).collect();
        names.sort();
        assert_eq!(names, vec!["live", "live-again"]);
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = StreamKey::new("live", "cam1");
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .update_stream(&key, |current| {
                    assert!(current.is_none());
                    let mut r = StreamRecord::first(key.clone(), 1000);
                    r.publish_count = 1;
                    r.video = Some(VideoInfo { codec: "H264".into(), width: 320, height: 240, ..Default::default() });
                    r
                })
                .unwrap();
            store
                .update_stream(&key, |current| {
                    let mut r = current.unwrap();
                    r.publish_count += 1;
                    r.bytes_in += 500;
                    r
                })
                .unwrap();
            store.flush().unwrap();
        }
        let store = crate::reopen(dir.path());
        let record = store.stream(&key).unwrap().unwrap();
        assert_eq!(record.publish_count, 2);
        assert_eq!(record.bytes_in, 500);
        assert_eq!(record.video.unwrap().width, 320);
        let (all, errors) = store.list_streams().unwrap();
        assert_eq!(all.len(), 1);
        assert!(errors.is_empty());
    }

    #[test]
    fn undecodable_value_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_stream(&StreamRecord::first(StreamKey::new("live", "a"), 1)).unwrap();
        store.streams.insert("__defaultVhost__/live/b", &[9u8, 9, 9][..]).unwrap();
        let (all, errors) = store.list_streams().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(store.stream(&StreamKey::new("live", "b")).is_err());
    }
}
