//! The `ingests` tree: virtual-live sources created through the API, so they come back after
//! a restart. Key: id (u64 big-endian).

use crate::{codec, StorageError, Store};
use serde::{Deserialize, Serialize};

/// A file published as a live stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestSpec {
    /// Id.
    pub id: u64,
    /// App.
    pub app: String,
    /// Stream.
    pub stream: String,
    /// Source path (MP4, FLV or MPEG-TS file).
    pub source: String,
    /// Start over at the end.
    pub looped: bool,
}

impl Store {
    /// Saves an ingest (flushed).
    pub fn put_ingest(&self, spec: &IngestSpec) -> Result<(), StorageError> {
        self.ingests.insert(spec.id.to_be_bytes(), codec::encode(spec)).map_err(|e| self.sled_err(e))?;
        self.flush()
    }

    /// Every saved ingest.
    pub fn ingests(&self) -> Result<Vec<IngestSpec>, StorageError> {
        let mut out = Vec::new();
        for item in self.ingests.iter() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            out.push(codec::decode(&v).map_err(|detail| StorageError::Decode { tree: "ingests", key: format!("{k:?}"), detail })?);
        }
        Ok(out)
    }

    /// Forgets an ingest; false when unknown.
    pub fn delete_ingest(&self, id: u64) -> Result<bool, StorageError> {
        let removed = self.ingests.remove(id.to_be_bytes()).map_err(|e| self.sled_err(e))?.is_some();
        self.flush()?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingests_persist() {
        let dir = tempfile::tempdir().unwrap();
        let spec = IngestSpec { id: 7, app: "live".into(), stream: "tv".into(), source: "/media/a.mp4".into(), looped: true };
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_ingest(&spec).unwrap();
        }
        let store = crate::reopen(dir.path());
        assert_eq!(store.ingests().unwrap(), vec![spec]);
        assert!(store.delete_ingest(7).unwrap());
        assert!(!store.delete_ingest(7).unwrap());
        assert!(store.ingests().unwrap().is_empty());
    }
}
