//! Configuration: embedded defaults, an optional TOML file, then `ESTUARY_<SECTION>__<KEY>`
//! environment overrides, then validation. Every error names the key and the problem.
//! `node/src/default-config.toml` documents every key; a unit test keeps it equal to the
//! defaults in code.
//!
//! | file | what |
//! |---|---|
//! | `schema.rs` | the sections and keys, with their defaults |
//! | `load.rs` | defaults, file, environment overrides |
//! | `srs.rs` | SRS's `srs.conf` and `SRS_*` variables mapped onto these settings |
//! | `validate.rs` | ranges, addresses and names |
//! | `settings.rs` | the actors' settings derived from a valid configuration |

mod load;
mod schema;
mod settings;
pub mod srs;
mod validate;

#[cfg(test)]
pub use load::load;
pub use load::load_with_warnings;
pub use schema::*;

use std::path::PathBuf;

/// The documented default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../default-config.toml");

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys or wrong types.
    #[error("{origin}: {message}")]
    Parse {
        /// File name or environment.
        origin: String,
        /// The parser's message (names the key).
        message: String,
    },
    /// A value is out of range.
    #[error("config key {key}: {problem}")]
    Invalid {
        /// `section.key`.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_match_the_code() {
        let documented: Config = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert_eq!(documented, Config::default());
        assert!(documented.validate().is_ok());
    }

    #[test]
    fn env_overrides_and_errors_name_the_key() {
        let config = load(None, [("ESTUARY_RTMP__LISTEN".to_string(), "127.0.0.1:1936".to_string()), ("ESTUARY_STREAM__PUBLISHER_GRACE_MS".to_string(), "2000".to_string())]).unwrap();
        assert_eq!(config.rtmp.listen, "127.0.0.1:1936");
        assert_eq!(config.stream.publisher_grace_ms, 2000);

        let err = load(None, [("ESTUARY_RTMP__CHUNK_SIZE".to_string(), "10".to_string())]).unwrap_err().to_string();
        assert!(err.contains("rtmp.chunk_size"), "{err}");
        let err = load(None, [("ESTUARY_RTMP__BOGUS".to_string(), "1".to_string())]).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        let err = load(None, [("ESTUARY_HTTP__LISTEN".to_string(), "nowhere".to_string())]).unwrap_err().to_string();
        assert!(err.contains("http.listen"), "{err}");
        let err = load(None, [("ESTUARY_AUTH__PLAY_DENY".to_string(), "[\"10.0.0.0/99\"]".to_string())]).unwrap_err().to_string();
        assert!(err.contains("auth.play_deny"), "{err}");
        let err = load(None, [("ESTUARY_HOOKS__ON_PUBLISH".to_string(), "[\"https://x\"]".to_string())]).unwrap_err().to_string();
        assert!(err.contains("http://"), "{err}");
        let err = load(None, [("ESTUARY_AUTH__REQUIRE_TOKEN".to_string(), "[\"play\"]".to_string())]).unwrap_err().to_string();
        assert!(err.contains("token_secret"), "{err}");
    }

    #[test]
    fn a_vhost_overrides_its_own_sections_and_not_what_is_the_nodes() {
        let config: Config = toml::from_str("[hls]\nfragment_ms = 4000\n[vhosts.\"example.com\".hls]\nfragment_ms = 1000\n").unwrap();
        assert!(config.validate().is_ok());
        assert_eq!(config.for_vhost("example.com").hls.fragment_ms, 1000);
        assert_eq!(config.for_vhost("other.org").hls.fragment_ms, 4000);
        assert_eq!(config.stream_settings_by_vhost().for_vhost("example.com").hls.fragment.as_millis(), 1000);
        let bad: Config = toml::from_str("[vhosts.\"example.com\".dvr]\ndir = \"/elsewhere\"\n").unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("set them in [dvr]"));
        let bad: Config = toml::from_str("[vhosts.\"example.com\".hls]\nfragment_ms = 1\n").unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("vhosts.\"example.com\""));
        let bad: Config = toml::from_str("[vhosts.\"a/b\"]\n").unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn file_with_unknown_key_is_refused() {
        let dir = std::env::temp_dir().join(format!("estuary-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[rtmp]\nlisten = \"127.0.0.1:1\"\nchunksize = 5\n").unwrap();
        let err = load(Some(&path), []).unwrap_err().to_string();
        assert!(err.contains("chunksize") && err.contains("bad.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
