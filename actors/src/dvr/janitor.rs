//! Retention: deletes the oldest recordings of each app beyond `max_age` or `max_bytes`.

use crate::messages::{DeleteRecording, ListRecordings};
use crate::settings::DvrSettings;
use crate::storage::StorageHandle;
use actix::prelude::*;
use estuary_storage::{Recording, RecordingState};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Runs retention every few seconds.
pub struct DvrJanitor {
    settings: Arc<DvrSettings>,
    storage: StorageHandle,
    busy: bool,
}

impl DvrJanitor {
    /// A janitor for `settings`.
    pub fn new(settings: Arc<DvrSettings>, storage: StorageHandle) -> Self {
        DvrJanitor { settings, storage, busy: false }
    }
}

/// The recordings retention removes, given every recording and the time now.
pub fn expired(settings: &DvrSettings, recordings: &[Recording], now_ms: i64) -> Vec<Recording> {
    let mut by_app: BTreeMap<&str, Vec<&Recording>> = BTreeMap::new();
    for recording in recordings.iter().filter(|r| r.state != RecordingState::Recording) {
        by_app.entry(recording.key.app.as_str()).or_default().push(recording);
    }
    let mut out = Vec::new();
    for (app, mut list) in by_app {
        let retention = settings.retention_of(app);
        list.sort_by_key(|r| r.start_ms);
        let mut keep = Vec::new();
        for recording in list {
            if !retention.max_age.is_zero() && recording.end_ms < now_ms - retention.max_age.as_millis() as i64 {
                out.push(recording.clone());
            } else {
                keep.push(recording);
            }
        }
        if retention.max_bytes > 0 {
            // Live files count too: they grow toward the limit while being written.
            let live: u64 = recordings.iter().filter(|r| r.key.app == app && r.state == RecordingState::Recording).map(|r| r.bytes).sum();
            let mut total: u64 = keep.iter().map(|r| r.bytes).sum::<u64>() + live;
            for recording in keep {
                if total <= retention.max_bytes {
                    break;
                }
                total -= recording.bytes;
                out.push(recording.clone());
            }
        }
    }
    out
}

/// Removes recordings: index entry first, then the file (an interruption in between leaves an
/// orphan file, which the next start deletes; never an entry without its file).
pub async fn delete(storage: &StorageHandle, dir: &Path, recordings: Vec<Recording>, reason: &str) -> Result<usize, String> {
    let mut deleted = 0;
    for recording in recordings {
        storage.ask(DeleteRecording { recording: recording.clone() }).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        let path = dir.join(&recording.path);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "could not delete recording file"),
        }
        tracing::info!(stream = %recording.key, file = %recording.path, bytes = recording.bytes, %reason, "recording deleted");
        deleted += 1;
    }
    Ok(deleted)
}

impl Actor for DvrJanitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_secs(2), |act, ctx| {
            if act.busy {
                return;
            }
            act.busy = true;
            let (settings, storage) = (act.settings.clone(), act.storage.clone());
            let fut = async move {
                let recordings = storage.ask(ListRecordings { key: None }).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
                let victims = expired(&settings, &recordings, crate::unix_ms());
                if victims.is_empty() {
                    return Ok(0);
                }
                delete(&storage, &settings.dir, victims, "retention").await
            };
            ctx.spawn(fut.into_actor(act).map(|result: Result<usize, String>, act, _| {
                act.busy = false;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "DVR retention pass failed");
                }
            }));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Retention;
    use estuary_storage::StreamKey;

    fn recording(id: u64, app: &str, start_ms: i64, bytes: u64, state: RecordingState) -> Recording {
        Recording {
            id,
            key: StreamKey::new(app, "s"),
            path: format!("{app}/{id}.mp4"),
            format: "mp4".into(),
            state,
            start_ms,
            end_ms: start_ms + 10_000,
            media_start_ms: 0,
            media_end_ms: 10_000,
            bytes,
            video: None,
            audio: None,
            keyframes: Vec::new(),
        }
    }

    #[test]
    fn age_and_size_limits_per_app_take_the_oldest() {
        let mut settings = DvrSettings { retention: Retention { max_age: Duration::from_secs(60), max_bytes: 0 }, ..Default::default() };
        settings.app_retention.insert("big".into(), Retention { max_age: Duration::ZERO, max_bytes: 250 });
        let now = 1_000_000;
        let recordings = vec![
            recording(1, "live", now - 200_000, 100, RecordingState::Complete),
            recording(2, "live", now - 30_000, 100, RecordingState::Complete),
            recording(3, "big", now - 500_000, 100, RecordingState::Complete),
            recording(4, "big", now - 400_000, 100, RecordingState::Repaired),
            recording(5, "big", now - 300_000, 100, RecordingState::Complete),
            recording(6, "big", now - 1_000, 60, RecordingState::Recording),
            recording(7, "live", now - 900_000, 100, RecordingState::Recording),
        ];
        let ids: Vec<u64> = expired(&settings, &recordings, now).iter().map(|r| r.id).collect();
        // live: 1 is older than a minute (7 is being written: never); big: 360 bytes > 250,
        // the two oldest go.
        assert_eq!(ids, vec![3, 4, 1]);
    }
}
