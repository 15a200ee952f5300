use super::actor::{StorageActor, StorageFailure};
use crate::messages::*;
use actix::prelude::*;
use estuary_storage::StreamRecord;

impl Handler<RecordPublishStart> for StorageActor {
    type Result = ();

    fn handle(&mut self, msg: RecordPublishStart, _: &mut Self::Context) {
        self.guarded("RecordPublishStart", |s| {
            let result = s.store.update_stream(&msg.key, |current| {
                let mut record = current.unwrap_or_else(|| StreamRecord::first(msg.key.clone(), msg.now_ms));
                record.last_publish_ms = msg.now_ms;
                record.publish_count += 1;
                record
            });
            if let Err(e) = result {
                tracing::error!(stream = %msg.key, error = %e, "could not record publish start");
            }
        })
    }
}

impl Handler<RecordCodecs> for StorageActor {
    type Result = ();

    fn handle(&mut self, msg: RecordCodecs, _: &mut Self::Context) {
        self.guarded("RecordCodecs", |s| {
            let result = s.store.update_stream(&msg.key, |current| {
                let mut record = current.unwrap_or_else(|| StreamRecord::first(msg.key.clone(), crate::unix_ms()));
                if msg.video.is_some() {
                    record.video = msg.video.clone();
                }
                if msg.audio.is_some() {
                    record.audio = msg.audio.clone();
                }
                record
            });
            if let Err(e) = result {
                tracing::error!(stream = %msg.key, error = %e, "could not record codecs");
            }
        })
    }
}

impl Handler<RecordPublishEnd> for StorageActor {
    type Result = ();

    fn handle(&mut self, msg: RecordPublishEnd, _: &mut Self::Context) {
        self.guarded("RecordPublishEnd", |s| {
            let result = s.store.update_stream(&msg.key, |current| {
                let mut record = current.unwrap_or_else(|| StreamRecord::first(msg.key.clone(), msg.now_ms));
                record.last_unpublish_ms = Some(msg.now_ms);
                record.bytes_in += msg.bytes_in;
                record.bytes_out += msg.bytes_out;
                record.live_ms_total += msg.live_ms;
                record
            });
            match result.and_then(|_| s.store.flush()) {
                Ok(()) => {}
                Err(e) => tracing::error!(stream = %msg.key, error = %e, "could not record publish end"),
            }
        })
    }
}

impl Handler<ListStreamRecords> for StorageActor {
    type Result = Result<Vec<StreamRecord>, StorageFailure>;

    fn handle(&mut self, _: ListStreamRecords, _: &mut Self::Context) -> Self::Result {
        self.guarded("ListStreamRecords", |s| {
            let (records, errors) = s.store.list_streams().map_err(StorageFailure::from)?;
            for error in errors {
                tracing::warn!(error = %error, "skipping undecodable stream record");
            }
            Ok(records)
        })
    }
}

impl Handler<FlushStorage> for StorageActor {
    type Result = Result<(), StorageFailure>;

    fn handle(&mut self, _: FlushStorage, _: &mut Self::Context) -> Self::Result {
        self.guarded("FlushStorage", |s| {
            s.store.flush().map_err(StorageFailure::from)
        })
    }
}

impl Handler<PruneStreams> for StorageActor {
    type Result = Result<usize, StorageFailure>;

    fn handle(&mut self, msg: PruneStreams, _: &mut Self::Context) -> Self::Result {
        self.guarded("PruneStreams", |s| s.store.prune_streams(msg.now_ms, msg.max_age_ms, msg.max_count, |key| msg.live.contains(key)).map_err(StorageFailure::from))
    }
}

impl Handler<InjectFault> for StorageActor {
    type Result = ();

    fn handle(&mut self, msg: InjectFault, _: &mut Self::Context) {
        tracing::warn!(fault = ?msg.0, "fault injected into the storage actor");
        match msg.0 {
            Fault::Panic => self.guarded("injected fault", |_| panic!("fault injected into the storage actor")),
            // The storage thread is its own: sleeping holds storage only, as a stuck disk would.
            Fault::Stall(duration) | Fault::SlowWrites { during: duration, .. } => std::thread::sleep(duration),
        }
    }
}

impl Handler<PutRecordingGap> for StorageActor {
    type Result = Result<(), StorageFailure>;

    fn handle(&mut self, msg: PutRecordingGap, _: &mut Self::Context) -> Self::Result {
        self.guarded("put recording gap", |s| s.store.put_recording_gap(&msg.0).map_err(StorageFailure::from))
    }
}

impl Handler<ListRecordingGaps> for StorageActor {
    type Result = Result<Vec<estuary_storage::RecordingGap>, StorageFailure>;

    fn handle(&mut self, msg: ListRecordingGaps, _: &mut Self::Context) -> Self::Result {
        self.guarded("list recording gaps", |s| s.store.recording_gaps_of(&msg.0).map_err(StorageFailure::from))
    }
}

impl Handler<PutRecording> for StorageActor {
    type Result = Result<(), StorageFailure>;

    fn handle(&mut self, msg: PutRecording, _: &mut Self::Context) -> Self::Result {
        self.guarded("PutRecording", |s| {
            s.store.put_recording(&msg.recording, msg.samples.as_deref()).map_err(|e| {
                tracing::error!(stream = %msg.recording.key, file = %msg.recording.path, error = %e, "could not index recording");
                StorageFailure::from(e)
            })
        })
    }
}

impl Handler<ListRecordings> for StorageActor {
    type Result = Result<Vec<estuary_storage::Recording>, StorageFailure>;

    fn handle(&mut self, msg: ListRecordings, _: &mut Self::Context) -> Self::Result {
        self.guarded("ListRecordings", |s| {
            match &msg.key {
                Some(key) => s.store.recordings_of(key),
                None => s.store.all_recordings(),
            }
            .map_err(StorageFailure::from)
        })
    }
}

impl Handler<GetRecordingSamples> for StorageActor {
    type Result = Result<Option<Vec<estuary_storage::TrackSamples>>, StorageFailure>;

    fn handle(&mut self, msg: GetRecordingSamples, _: &mut Self::Context) -> Self::Result {
        self.guarded("GetRecordingSamples", |s| {
            s.store.recording_samples(msg.id).map_err(StorageFailure::from)
        })
    }
}

impl Handler<DeleteRecording> for StorageActor {
    type Result = Result<(), StorageFailure>;

    fn handle(&mut self, msg: DeleteRecording, _: &mut Self::Context) -> Self::Result {
        self.guarded("DeleteRecording", |s| {
            s.store.delete_recording(&msg.recording).map_err(StorageFailure::from)
        })
    }
}

impl Handler<PutIngest> for StorageActor {
    type Result = Result<(), StorageFailure>;

    fn handle(&mut self, msg: PutIngest, _: &mut Self::Context) -> Self::Result {
        self.guarded("PutIngest", |s| {
            s.store.put_ingest(&msg.0).map_err(StorageFailure::from)
        })
    }
}

impl Handler<ListIngests> for StorageActor {
    type Result = Result<Vec<estuary_storage::IngestSpec>, StorageFailure>;

    fn handle(&mut self, _: ListIngests, _: &mut Self::Context) -> Self::Result {
        self.guarded("ListIngests", |s| {
            s.store.ingests().map_err(StorageFailure::from)
        })
    }
}

impl Handler<DeleteIngest> for StorageActor {
    type Result = Result<bool, StorageFailure>;

    fn handle(&mut self, msg: DeleteIngest, _: &mut Self::Context) -> Self::Result {
        self.guarded("DeleteIngest", |s| {
            s.store.delete_ingest(msg.0).map_err(StorageFailure::from)
        })
    }
}

impl Handler<DeleteGbDevice> for StorageActor {
    type Result = ();

    fn handle(&mut self, msg: DeleteGbDevice, _: &mut Self::Context) {
        self.guarded("DeleteGbDevice", |s| {
            if let Err(e) = s.store.delete_gb_device(&msg.0) {
                tracing::error!(device = %msg.0, error = %e, "could not forget GB28181 device");
            }
        })
    }
}

impl Handler<PutGbDevice> for StorageActor {
    type Result = ();

    fn handle(&mut self, msg: PutGbDevice, _: &mut Self::Context) {
        self.guarded("PutGbDevice", |s| {
            if let Err(e) = s.store.put_gb_device(&msg.0) {
                tracing::error!(device = %msg.0.id, error = %e, "could not save GB28181 device");
            }
        })
    }
}
