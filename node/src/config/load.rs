//! Defaults, then a TOML file or an SRS configuration file, then SRS's `SRS_*` variables, then
//! `ESTUARY_<SECTION>__<KEY>` environment overrides.

use super::srs;
use super::{Config, ConfigError};
use std::path::Path;

/// Loads the configuration: defaults, then `file`, then environment overrides from `env`.
#[cfg(test)]
pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    load_with_warnings(file, false, env).map(|(config, _)| config)
}

/// Whether `file` is read as SRS configuration: asked for (`--srs-config`), or named `*.conf`.
pub fn is_srs_file(file: &Path, asked: bool) -> bool {
    asked || file.extension().is_some_and(|e| e == "conf")
}

/// Adds `from` into `into`, table by table.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(inner)) => merge(existing, inner),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Loads the configuration as [`load`] does, `file` as SRS configuration when `srs_file` (or
/// when it ends `.conf`), and says which SRS directives and variables were not applied.
pub fn load_with_warnings(file: Option<&Path>, srs_file: bool, env: impl IntoIterator<Item = (String, String)>) -> Result<(Config, Vec<String>), ConfigError> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let mut warnings = Vec::new();
    // SRS's file and SRS's variables go into one mapping, resolved once both are read.
    let mut srs_mapped = srs::Mapped { vars: env.iter().cloned().collect(), ..Default::default() };
    let (mut table, origin) = match file {
        Some(path) if is_srs_file(path, srs_file) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
            let name = path.display().to_string();
            let parse_error = |e: srs::SrsError| ConfigError::Parse { origin: format!("{name} line {}", e.line), message: e.message };
            srs::map_file(&mut srs_mapped, &srs::parse(&text).map_err(parse_error)?, &name).map_err(parse_error)?;
            (toml::Table::new(), format!("{name} (SRS configuration)"))
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
            let value: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse { origin: path.display().to_string(), message: e.to_string() })?;
            (value, path.display().to_string())
        }
        None => (toml::Table::new(), "built-in defaults".to_string()),
    };
    srs::map_env(&mut srs_mapped, &env).map_err(|e| ConfigError::Parse { origin: "SRS environment".into(), message: e.message })?;
    srs::finish(&mut srs_mapped);
    let srs_env: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).filter(|k| k.starts_with("SRS_")).collect();
    warnings.extend(srs_mapped.warnings);
    merge(&mut table, srs_mapped.table);
    let origin = if srs_env.is_empty() { origin } else { format!("{origin} with SRS variables {}", srs_env.join(", ")) };
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
    Ok((config, warnings))
}
