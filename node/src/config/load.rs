//! Defaults, then a TOML file, then `ESTUARY_<SECTION>__<KEY>` environment overrides.

use super::{Config, ConfigError};
use std::path::Path;

/// Loads the configuration: defaults, then `file`, then environment overrides from `env`.
pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    let (mut table, origin) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
            let value: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse { origin: path.display().to_string(), message: e.to_string() })?;
            (value, path.display().to_string())
        }
        None => (toml::Table::new(), "built-in defaults".to_string()),
    };
    let mut overridden = Vec::new();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("ESTUARY_") else { continue };
        let Some((section, key)) = rest.split_once("__") else { continue };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw.clone()));
        let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key.clone(), value);
            }
            _ => {
                return Err(ConfigError::Parse { origin: format!("environment variable {name}"), message: format!("{section} is not a section") })
            }
        }
        overridden.push(name);
    }
    let origin = if overridden.is_empty() { origin } else { format!("{origin} with environment overrides {}", overridden.join(", ")) };
    let config: Config = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| ConfigError::Parse { origin, message: e.to_string() })?;
    config.validate()?;
    Ok(config)
}
