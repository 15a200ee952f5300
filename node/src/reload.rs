//! Reloading the configuration while the node runs: `SIGHUP` (SRS users run `killall -1 srs`)
//! and `/api/v1/raw?rpc=reload` read the file the node was started with again (Estuary's TOML or
//! an srs.conf, with the same environment), check it as a start does, and apply what can change
//! live to new sessions: hooks, access rules and tokens, HLS/DASH/DVR/forward/transcode
//! settings and stream limits for each publish from then on, the API's credentials, and the
//! log level. Nothing connected is touched: a publisher keeps the settings its publish started
//! with, a player its session. Settings that need a restart (listen addresses, directories,
//! threads, the cluster, ...) are reported and keep their running values. A file that does not
//! load is refused with the reason, and the running configuration stays.

use crate::config::{self, Config};
use actix::Addr;
use estuary_actors::node::NodeContext;
use estuary_actors::registry::StreamRegistry;
use estuary_actors::settings::Reloadable;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Keys (and whole sections) that only a restart changes: sockets, directories, threads and
/// what is started once at boot. Everything else applies to new sessions on reload.
pub const RESTART_KEYS: &[&str] = &[
    "node",
    "rtmp",
    "srt",
    "rtc",
    "http",
    "https",
    "rtmps",
    "api.listen",
    "api.debug_faults",
    "metrics.listen",
    "gb28181",
    "cluster",
    "ingest",
    "forward.tls_ca_file",
    "forward.deny_private",
    "transcode.ffmpeg",
    "dvr.dir",
    "dvr.max_age_s",
    "dvr.max_bytes",
    "dvr.retention",
    "stream.write_merge_ms",
    "stream.history_max_age_s",
    "stream.history_max_count",
];

fn needs_restart(key: &str) -> bool {
    RESTART_KEYS.iter().any(|prefix| key == *prefix || key.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')))
}

/// Every leaf of a configuration as `section.key[.sub...]` and its value (lists are leaves;
/// an empty table has none, so adding or removing a table entry shows as its keys).
fn leaves(value: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                leaves(inner, &path, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// What a reload from `old` to `new` does.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// Changed keys that apply to new sessions.
    pub applied: Vec<String>,
    /// Changed keys that keep their running value until a restart.
    pub restart: Vec<String>,
    /// The configuration to run with: `new`, with the restart keys as they were.
    pub config: Config,
}

/// Compares two configurations (sans-IO: no file, no node).
pub fn plan(old: &Config, new: &Config) -> Result<Plan, String> {
    let (old_json, mut new_json) = (serde_json::to_value(old).map_err(|e| e.to_string())?, serde_json::to_value(new).map_err(|e| e.to_string())?);
    let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
    leaves(&old_json, "", &mut before);
    leaves(&new_json, "", &mut after);
    let mut changed: Vec<String> = after.iter().filter(|(k, v)| before.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
    changed.extend(before.keys().filter(|k| !after.contains_key(*k)).cloned());
    changed.sort();
    changed.dedup();
    let (restart, applied): (Vec<String>, Vec<String>) = changed.into_iter().partition(|k| needs_restart(k));
    // The running value of every restart key goes back into the new configuration.
    for prefix in RESTART_KEYS {
        let pointer = format!("/{}", prefix.replace('.', "/"));
        let previous = old_json.pointer(&pointer).cloned();
        let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", &pointer));
        if let Some(Value::Object(parent)) = new_json.pointer_mut(parent) {
            match previous {
                Some(value) => {
                    parent.insert(last.to_string(), value);
                }
                None => {
                    parent.remove(last);
                }
            }
        }
    }
    let config: Config = serde_json::from_value(new_json).map_err(|e| format!("cannot keep the running values of restart-only keys: {e}"))?;
    Ok(Plan { applied, restart, config })
}

/// What a reload did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Outcome {
    /// Changed keys now in effect for new sessions.
    pub applied: Vec<String>,
    /// Changed keys that need a restart (their running values stay).
    pub restart_required: Vec<String>,
    /// SRS directives or variables not applied (as at start-up).
    pub not_applied: Vec<String>,
}

/// Sets the log level (`log.level`); `Err` when it cannot.
pub type LogLevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The node's reloader: where its configuration came from and what it runs with.
pub struct Reloader {
    file: Option<PathBuf>,
    srs: bool,
    running: Reloadable<Config>,
    node: NodeContext,
    registry: Addr<StreamRegistry>,
    set_log_level: Option<LogLevelSetter>,
    /// One reload at a time (a signal and an API call at once apply in turn).
    busy: tokio::sync::Mutex<()>,
    /// The last reload: its number (from 1), and what it did or why it was refused.
    last: std::sync::Mutex<Option<(u64, Result<Outcome, String>)>>,
}

impl Reloader {
    /// A reloader of the configuration read from `file` (as SRS's when `srs`), now `running`.
    pub fn new(file: Option<PathBuf>, srs: bool, running: Config, node: NodeContext, registry: Addr<StreamRegistry>, set_log_level: Option<LogLevelSetter>) -> Self {
        Reloader { file, srs, running: Reloadable::new(running), node, registry, set_log_level, busy: tokio::sync::Mutex::new(()), last: Default::default() }
    }

    /// The configuration in effect.
    pub fn running(&self) -> Arc<Config> {
        self.running.get()
    }

    /// The last reload (SRS's `rpc=reload-fetch`): its number and result; `None` before any.
    pub fn last(&self) -> Option<(u64, Result<Outcome, String>)> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the configuration again and applies it (`trigger` says who asked, for the log).
    pub async fn reload(&self, trigger: &str) -> Result<Outcome, String> {
        let _one_at_a_time = self.busy.lock().await;
        let result = self.reload_now(trigger).await;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let number = last.as_ref().map_or(1, |(n, _)| n + 1);
        *last = Some((number, result.clone()));
        result
    }

    async fn reload_now(&self, trigger: &str) -> Result<Outcome, String> {
        let source = self.file.as_ref().map_or_else(|| "the built-in defaults and the environment".to_string(), |f| f.display().to_string());
        // Reading and checking the file (which may resolve host names) runs off the actors' threads.
        let old = self.running.get();
        let (file, srs, running) = (self.file.clone(), self.srs, old.clone());
        let checked = tokio::task::spawn_blocking(move || -> Result<(Plan, Vec<String>), String> {
            let (new, warnings) = config::load_with_warnings(file.as_deref(), srs, std::env::vars()).map_err(|e| e.to_string())?;
            let plan = plan(&running, &new)?;
            // The running values of restart-only keys with the new others: checked as a whole.
            plan.config.validate().map_err(|e| format!("{e} (with the running values of the keys that need a restart)"))?;
            Ok((plan, warnings))
        })
        .await
        .map_err(|e| format!("configuration reload failed: {e}"))?;
        let (plan, warnings) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                let reason = format!("configuration reload refused ({source}): {e}; the running configuration stays");
                tracing::error!(%trigger, "{reason}");
                return Err(reason);
            }
        };
        let config = plan.config;
        // The registry first: if it cannot take the settings, nothing has changed yet.
        self.registry.send(estuary_actors::messages::ReloadStreamSettings(config.stream_settings_by_vhost())).await.map_err(|e| format!("the stream registry did not take the new settings: {e}; nothing was changed"))?;
        self.node.hooks.reload(config.hook_settings());
        self.node.access.reload(config.access_settings());
        self.node.vhosts.set(config.vhosts.keys().cloned().collect());
        self.node.transcode_settings.set(Some(Arc::new(config.transcode_settings())));
        if config.log.level != old.log.level {
            match (&self.set_log_level, std::env::var_os("RUST_LOG")) {
                (_, Some(_)) => tracing::warn!(level = %config.log.level, "log.level changed, but RUST_LOG is set and decides the log level"),
                (Some(set), None) => {
                    if let Err(e) = set(&config.log.level) {
                        tracing::warn!(level = %config.log.level, error = %e, "cannot change the log level");
                    }
                }
                (None, None) => {}
            }
        }
        self.running.set(config);
        for warning in &warnings {
            tracing::warn!("SRS configuration not applied: {warning}");
        }
        if !plan.restart.is_empty() {
            tracing::warn!(keys = %plan.restart.join(", "), "configuration reload: these changed but need a restart; their running values stay");
        }
        tracing::info!(%trigger, %source, applied = %if plan.applied.is_empty() { "nothing changed".to_string() } else { plan.applied.join(", ") }, "configuration reloaded; changes apply to new sessions, connected clients stay");
        Ok(Outcome { applied: plan.applied, restart_required: plan.restart, not_applied: warnings })
    }
}

/// Reloads on every `SIGHUP` until the node stops.
pub async fn on_sighup(reloader: Arc<Reloader>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload through /api/v1/raw?rpc=reload");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        // The outcome is logged by the reload itself.
        let _ = reloader.reload("SIGHUP").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_keys_apply_and_restart_keys_keep_their_running_values() {
        let old = Config::default();
        let mut new = Config::default();
        new.hls.fragment_ms = 1000;
        new.hooks.default.on_publish = vec!["http://127.0.0.1:1/b".into()];
        new.rtmp.listen = "127.0.0.1:2935".into();
        new.api.listen = "127.0.0.1:2985".into();
        new.api.token = "t".into();
        new.ingest.sources.insert("live/a".into(), "file.mp4".into());
        let plan = plan(&old, &new).unwrap();
        assert_eq!(plan.applied, ["api.token", "hls.fragment_ms", "hooks.on_publish"]);
        assert_eq!(plan.restart, ["api.listen", "ingest.sources.live/a", "rtmp.listen"]);
        assert_eq!(plan.config.hls.fragment_ms, 1000);
        assert_eq!(plan.config.hooks.default.on_publish, ["http://127.0.0.1:1/b"]);
        assert_eq!(plan.config.api.token, "t");
        // The running values of restart keys stay, whole sections included.
        assert_eq!(plan.config.rtmp.listen, old.rtmp.listen);
        assert_eq!(plan.config.api.listen, old.api.listen);
        assert!(plan.config.ingest.sources.is_empty());
    }

    #[test]
    fn nothing_changed_is_an_empty_plan() {
        let plan = plan(&Config::default(), &Config::default()).unwrap();
        assert!(plan.applied.is_empty() && plan.restart.is_empty());
        assert_eq!(plan.config, Config::default());
    }

    #[test]
    fn a_key_removed_from_a_map_is_a_change() {
        let mut old = Config::default();
        old.forward.apps.insert("live".into(), vec!["rtmp://127.0.0.1:1/[app]/[stream]".into()]);
        let plan = plan(&old, &Config::default()).unwrap();
        assert_eq!(plan.applied, ["forward.apps.live"]);
        assert!(plan.config.forward.apps.is_empty());
    }

    #[test]
    fn restart_prefixes_match_whole_names_only() {
        assert!(needs_restart("rtmp.listen") && needs_restart("dvr.dir") && needs_restart("ingest.sources.live/a"));
        assert!(!needs_restart("dvr.dir_mode") && !needs_restart("api.token") && !needs_restart("rtmpx"));
    }
}
