//! The `gb_devices` tree: GB28181 devices seen by the SIP server and their catalog channels,
//! so the device list survives a restart (devices show as offline until they register
//! again). Key: device id (UTF-8).

use crate::{codec, StorageError, Store};
use serde::{Deserialize, Serialize};

/// A device as remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GbDeviceRecord {
    /// Device id.
    pub id: String,
    /// Last address it registered from.
    pub address: String,
    /// Channels from its catalog: (id, name).
    pub channels: Vec<(String, String)>,
    /// Last registration, Unix ms.
    pub registered_ms: i64,
}

impl Store {
    /// Saves a device (flushed).
    pub fn put_gb_device(&self, device: &GbDeviceRecord) -> Result<(), StorageError> {
        self.gb_devices.insert(device.id.as_bytes(), codec::encode(device)).map_err(|e| self.sled_err(e))?;
        self.flush()
    }

    /// Forgets a device (flushed).
    pub fn delete_gb_device(&self, id: &str) -> Result<(), StorageError> {
        self.gb_devices.remove(id.as_bytes()).map_err(|e| self.sled_err(e))?;
        self.flush()
    }

    /// Every remembered device.
    pub fn gb_devices(&self) -> Result<Vec<GbDeviceRecord>, StorageError> {
        let mut out = Vec::new();
        for item in self.gb_devices.iter() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            out.push(codec::decode(&v).map_err(|detail| StorageError::Decode { tree: "gb_devices", key: String::from_utf8_lossy(&k).into_owned(), detail })?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_persist() {
        let dir = tempfile::tempdir().unwrap();
        let device = GbDeviceRecord { id: "34020000001110000001".into(), address: "127.0.0.1:5061".into(), channels: vec![("34020000001320000001".into(), "Gate".into())], registered_ms: 5 };
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_gb_device(&device).unwrap();
        }
        let store = crate::reopen(dir.path());
        assert_eq!(store.gb_devices().unwrap(), vec![device]);
    }
}
