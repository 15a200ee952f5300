//! Atomic file writes and names, and the disposal of an ended stream's live output files.

use std::io::Write;
use std::path::Path;

/// Writes `data` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let written = std::fs::File::create(&tmp).and_then(|mut file| file.write_all(data)).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        // A full disk leaves a partial file: it would hold the space it is short of.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The write failures of one output (a stream's HLS or DASH files): the first is logged with
/// its reason, repeats at most once a minute, and the recovery once; each is counted in
/// `estuary_disk_write_errors_total`.
#[derive(Debug, Default)]
pub struct WriteFailures {
    since: Option<std::time::Instant>,
    logged: Option<std::time::Instant>,
    count: u64,
}

impl WriteFailures {
    /// A write of `what` failed.
    pub fn failed(&mut self, node: &crate::node::Node, stream: &crate::StreamKey, output: &'static str, what: &str, error: &std::io::Error) {
        node.stats.inc("estuary_disk_write_errors_total", &[("output", output)]);
        self.count += 1;
        let now = std::time::Instant::now();
        self.since.get_or_insert(now);
        if self.logged.is_none_or(|at| now.duration_since(at) >= std::time::Duration::from_secs(60)) {
            self.logged = Some(now);
            let reason = crate::dvr::describe_write_error(error);
            tracing::error!(%stream, output, file = what, %error, %reason, failures = self.count, "cannot write {output} files; skipping them until writing works again");
        }
    }

    /// A write succeeded: logs the recovery after failures. Returns whether it had failed.
    pub fn succeeded(&mut self, stream: &crate::StreamKey, output: &'static str) -> bool {
        let Some(since) = self.since.take() else { return false };
        tracing::info!(%stream, output, failures = self.count, failing_s = since.elapsed().as_secs(), "{output} writing works again");
        self.logged = None;
        self.count = 0;
        true
    }
}

/// Removes a file; a file already gone is fine.
pub fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot delete old segment"),
    }
}

/// The live output (`kind`) of `key`, muxer `generation`, ended leaving `files`: after
/// `after` they are removed, unless a newer muxer of the stream started meanwhile (it takes
/// them over); `forget` runs with the removal (dropping what was kept for the stream's
/// continuity). A zero `after` keeps the files. Files of a muxer that ended after a newer one
/// started are left alone (the newer one may be writing the same names).
pub fn dispose_later(node: crate::node::NodeContext, key: estuary_storage::StreamKey, kind: crate::node::outputs::OutputKind, generation: u64, after: std::time::Duration, files: Vec<std::path::PathBuf>, forget: impl FnOnce(&crate::node::Node) + Send + 'static) {
    if node.outputs.ended(&key, kind, generation, files, !after.is_zero()).is_some() {
        tracing::debug!(stream = %key, output = ?kind, "a newer muxer of this stream runs; its files stay");
        return;
    }
    if after.is_zero() {
        return;
    }
    actix::spawn(async move {
        tokio::time::sleep(after).await;
        let Some(files) = node.outputs.dispose(&key, kind, generation) else { return };
        forget(&node);
        remove_all(&files);
        tracing::info!(stream = %key, output = ?kind, files = files.len(), after_s = after.as_secs(), "files of the ended stream removed");
    });
}

/// Removes `files` (already gone is fine).
pub fn remove_all(files: &[std::path::PathBuf]) {
    for file in files {
        remove(file);
    }
}
