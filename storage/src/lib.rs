//! Estuary's persistent state in sled. The API is synchronous: sled calls block, so the node
//! runs them on a dedicated storage actor thread (see `estuary-actors`), never on an event loop.
//!
//! ## Layout (schema version [`SCHEMA_VERSION`])
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `schema_version` | `u32`, big-endian |
//! | `streams` | `vhost/app/stream` (UTF-8) | [`StreamRecord`] |
//! | `recordings` | `vhost/app/stream`, 0, start time, id (see [`recordings`]) | [`Recording`] |
//! | `recording_samples` | recording id (u64 big-endian) | `Vec<`[`TrackSamples`]`>` |
//! | `ingests` | ingest id (u64 big-endian) | [`IngestSpec`] |
//! | `gb_devices` | GB28181 device id (UTF-8) | [`GbDeviceRecord`] |
//!
//! Values are encoded by the [`codec`] module: one version byte, then bincode 2 (standard
//! configuration) of the serde form. Only that module names bincode, so the encoding can be
//! swapped by bumping the version byte.
//!
//! Opening a database written by a newer schema fails with [`StorageError::NewerSchema`]
//! rather than misreading it.

pub mod codec;
pub mod gb_devices;
pub mod ingests;
pub mod layout;
pub mod recordings;
mod streams;

pub use gb_devices::GbDeviceRecord;
pub use ingests::IngestSpec;
pub use recordings::{Recording, RecordingGap, RecordingState, StoredSample, TrackSamples};
pub use streams::{AudioInfo, StreamKey, StreamRecord, VideoInfo};

use std::path::{Path, PathBuf};
use thiserror::Error;

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// A storage failure.
#[derive(Debug, Error)]
pub enum StorageError {
    /// sled failed (I/O, corruption, or the database is locked by another process).
    #[error("sled database at {path}: {source}")]
    Sled {
        /// The database directory.
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer Estuary.
    #[error("database schema version {found} is newer than this build's {SCHEMA_VERSION}")]
    NewerSchema {
        /// The version found.
        found: u32,
    },
    /// A stored value could not be decoded.
    #[error("undecodable value in tree {tree} at key {key:?}: {detail}")]
    Decode {
        /// The tree.
        tree: &'static str,
        /// The key.
        key: String,
        /// What went wrong.
        detail: String,
    },
}

/// The node's database. Cheap to clone (shares one sled instance).
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    streams: sled::Tree,
    recordings: sled::Tree,
    recording_samples: sled::Tree,
    ingests: sled::Tree,
    gb_devices: sled::Tree,
    recording_gaps: sled::Tree,
}

impl Store {
    /// Opens (or creates) the database in `dir/db`.
    pub fn open(dir: &Path) -> Result<Store, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir { path: dir.to_path_buf(), source })?;
        let path = dir.join("db");
        let sled_err = |source| StorageError::Sled { path: path.clone(), source };
        let db = sled::Config::new().path(&path).flush_every_ms(Some(500)).open().map_err(sled_err)?;
        let meta = db.open_tree("meta").map_err(sled_err)?;
        match meta.get("schema_version").map_err(sled_err)? {
            Some(raw) => {
                let found = u32::from_be_bytes(raw.as_ref().try_into().map_err(|_| StorageError::Decode {
                    tree: "meta",
                    key: "schema_version".into(),
                    detail: format!("{} bytes, expected 4", raw.len()),
                })?);
                if found > SCHEMA_VERSION {
                    return Err(StorageError::NewerSchema { found });
                }
            }
            None => {
                meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes()).map_err(sled_err)?;
            }
        }
        let streams = db.open_tree("streams").map_err(sled_err)?;
        let recordings = db.open_tree("recordings").map_err(sled_err)?;
        let recording_samples = db.open_tree("recording_samples").map_err(sled_err)?;
        let ingests = db.open_tree("ingests").map_err(sled_err)?;
        let gb_devices = db.open_tree("gb_devices").map_err(sled_err)?;
        let recording_gaps = db.open_tree("recording_gaps").map_err(sled_err)?;
        Ok(Store { path, db, streams, recordings, recording_samples, ingests, gb_devices, recording_gaps })
    }

    /// This node's cluster id: made once (`node-` and 8 hex digits from the clock and the
    /// process id) and kept in the `meta` tree, so a node keeps its name across restarts.
    pub fn node_id(&self) -> Result<String, StorageError> {
        let meta = self.db.open_tree("meta").map_err(|e| self.sled_err(e))?;
        if let Some(raw) = meta.get("node_id").map_err(|e| self.sled_err(e))? {
            return Ok(String::from_utf8_lossy(&raw).into_owned());
        }
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0) as u64 ^ ((std::process::id() as u64) << 32);
        // A 64-bit mix (splitmix64's finaliser) so ids of nodes made in the same instant differ.
        let mut x = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        let id = format!("node-{:08x}", x as u32);
        meta.insert("node_id", id.as_bytes()).map_err(|e| self.sled_err(e))?;
        self.flush()?;
        Ok(id)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sled_err(&self, source: sled::Error) -> StorageError {
        StorageError::Sled { path: self.path.clone(), source }
    }

    /// Flushes everything to disk.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.db.flush().map(|_| ()).map_err(|e| self.sled_err(e))
    }
}

/// Test helper: sled's background flusher holds the database for a moment after the last
/// handle drops, so reopening in the same process retries until the file lock is free.
#[cfg(test)]
pub(crate) fn reopen(path: &Path) -> Store {
    for _ in 0..100 {
        match Store::open(path) {
            Ok(store) => return store,
            Err(StorageError::Sled { .. }) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(other) => panic!("{other}"),
        }
    }
    panic!("database at {} still locked", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_is_recorded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.flush().unwrap();
        }
        let db = {
            let mut opened = None;
            for _ in 0..100 {
                match sled::open(dir.path().join("db")) {
                    Ok(db) => {
                        opened = Some(db);
                        break;
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
            opened.expect("database lock released")
        };
        let meta = db.open_tree("meta").unwrap();
        assert_eq!(meta.get("schema_version").unwrap().unwrap().as_ref(), &SCHEMA_VERSION.to_be_bytes());
        meta.insert("schema_version", &(SCHEMA_VERSION + 1).to_be_bytes()).unwrap();
        db.flush().unwrap();
        drop(meta);
        drop(db);
        let mut result = Store::open(dir.path());
        for _ in 0..100 {
            if !matches!(result, Err(StorageError::Sled { .. })) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            result = Store::open(dir.path());
        }
        assert!(matches!(result, Err(StorageError::NewerSchema { .. })));
    }
}
