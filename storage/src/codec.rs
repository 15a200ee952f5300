//! Value encoding: a version byte followed by bincode 2 (standard configuration) of the
//! value's serde form. This is the only module that names bincode (its 2.x line carries an
//! "unmaintained" advisory and 3.0 is an empty release), so swapping the encoding means a new
//! version byte here and nothing else.

use serde::{de::DeserializeOwned, Serialize};

/// The version byte of values written by this build.
pub const VALUE_VERSION: u8 = 1;

/// Encodes a value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VALUE_VERSION];
    // Encoding plain data structs into a Vec cannot fail: bincode only errors on writers
    // that fail or on types serde cannot describe, and ours are derived.
    let body = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("bincode encoding of a derived struct into a Vec cannot fail");
    out.extend_from_slice(&body);
    out
}

/// Decodes a value written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&VALUE_VERSION, body)) => bincode::serde::decode_from_slice(body, bincode::config::standard())
            .map(|(value, _)| value)
            .map_err(|e| e.to_string()),
        Some((version, _)) => Err(format!("unknown value version {version}")),
        None => Err("empty value".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        count: u64,
        maybe: Option<i64>,
    }

    #[test]
    fn round_trip_and_version_check() {
        let sample = Sample { name: "live/x".into(), count: 7, maybe: Some(-3) };
        let bytes = encode(&sample);
        assert_eq!(bytes[0], VALUE_VERSION);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample);
        let mut wrong = bytes.clone();
        wrong[0] = 99;
        assert!(decode::<Sample>(&wrong).unwrap_err().contains("version 99"));
        assert!(decode::<Sample>(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode::<Sample>(&[]).is_err());
    }
}
