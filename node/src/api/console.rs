//! What the web console needs beyond the rest of the API: `GET /api/v1/console` (the node's
//! ports and switches, to show every play URL), and uploads of media files for virtual live:
//! `POST /api/v1/uploads?name=clip.mp4` (the file is the body) and `GET /api/v1/uploads`.
//!
//! An upload is written to a hidden `.part` file in `ingest.media_dir` as it arrives; only a
//! complete body that reads as media (MP4, FLV or MPEG-TS, through the ingest's own reader) is
//! renamed to its name. A body over `ingest.upload_max_bytes` (413), one that is not media
//! (400), or one cut off midway (the client went away, the handler is dropped) leaves nothing.

use super::*;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// `path` from the root (relative paths are the node's working directory's).
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

fn port_of(listen: &str) -> Option<u16> {
    listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

pub(super) async fn console_info(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let c = state.reloader.running();
    let auth = !c.api.token.is_empty() || (!c.api.username.is_empty() && !c.api.password.is_empty());
    HttpResponse::Ok().json(json!({
        "code": 0,
        "server": SERVER,
        "version": env!("CARGO_PKG_VERSION"),
        "ports": {
            "rtmp": port_of(&c.rtmp.listen),
            "http": port_of(&c.http.listen),
            "api": port_of(&c.api.listen),
            "srt": c.srt.enabled.then(|| port_of(&c.srt.listen)).flatten(),
            "rtc": c.rtc.enabled.then(|| port_of(&c.rtc.listen)).flatten(),
            "https": (!c.https.listen.is_empty()).then(|| port_of(&c.https.listen)).flatten(),
        },
        "hls": c.hls.enabled,
        "dash": c.dash.enabled,
        "dvr": { "enabled": c.dvr.enabled, "apps": c.dvr.apps },
        "gb28181": c.gb28181.enabled,
        "cluster": state.node.cluster.is_some(),
        "auth": auth,
        "uploads": { "media_dir": absolute(c.media_dir()), "max_bytes": c.ingest.upload_max_bytes },
    }))
}

#[derive(Deserialize)]
pub(super) struct UploadQuery {
    name: String,
}

/// The file name an upload is saved under: the last path component, of letters, digits, `.`,
/// `-` and `_` (others become `_`), with a media extension the ingest reads.
fn upload_name(name: &str) -> Result<String, String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    let clean = clean.trim_start_matches('.').to_string();
    let extension = Path::new(&clean).extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("mp4" | "m4v" | "mov" | "flv" | "ts") if clean.len() <= 200 => Ok(clean),
        Some("mp4" | "m4v" | "mov" | "flv" | "ts") => Err("name is longer than 200 characters".into()),
        _ => Err(format!("{name:?} is not a media file name (.mp4, .m4v, .mov, .flv or .ts)")),
    }
}

/// A `.part` file that is deleted when dropped, unless kept: an upload whose handler ends early
/// (a refusal, or the client went away and actix dropped the handler) leaves nothing behind.
struct PartFile {
    path: Option<PathBuf>,
    name: String,
    peer: String,
    received: u64,
    /// The handler answered (a refusal it logged); otherwise a drop means the client left.
    answered: bool,
}

impl Drop for PartFile {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else { return };
        if !self.answered {
            tracing::warn!(name = %self.name, peer = %self.peer, received = self.received, "upload cut off: the client went away; the partial file is removed");
        }
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove an unfinished upload");
        }
    }
}

/// Gives `part` its name in `dir`: `name`, or, when taken, `stem-1.ext`, `stem-2.ext`... A hard
/// link never replaces a file, so two uploads of one name at once both keep theirs.
fn save_as(part: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    for n in 0..10_000u32 {
        let path = if n == 0 { dir.join(name) } else { dir.join(format!("{stem}-{n}.{ext}")) };
        match std::fs::hard_link(part, &path) {
            Ok(()) => {
                std::fs::remove_file(part)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!("no free name for {name}")))
}

/// The node's uploads in progress: names for their `.part` files, and the check that reads a
/// finished one back whole (up to `ingest.upload_max_bytes`), one at a time.
pub struct Uploads {
    next: std::sync::atomic::AtomicU64,
    checking: tokio::sync::Semaphore,
}

impl Default for Uploads {
    fn default() -> Self {
        Uploads { next: std::sync::atomic::AtomicU64::new(0), checking: tokio::sync::Semaphore::new(1) }
    }
}

pub(super) async fn upload(_: Authorized, state: web::Data<AppState>, req: HttpRequest, query: web::Query<UploadQuery>, mut payload: web::Payload) -> HttpResponse {
    let running = state.reloader.running();
    // Absolute, so the saved file's path names it from anywhere (an ingest of it, the console).
    let (dir, limit) = (absolute(running.media_dir()), running.ingest.upload_max_bytes);
    let name = match upload_name(&query.name) {
        Ok(name) => name,
        Err(reason) => return error(400, &reason),
    };
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let declared = req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        tracing::warn!(%name, %peer, bytes = declared, limit, "upload refused: larger than ingest.upload_max_bytes");
        return error(413, &format!("the file is larger than ingest.upload_max_bytes ({limit} bytes)"));
    }
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        return error(503, &format!("cannot create {}: {e}", dir.display()));
    }
    let part_path = dir.join(format!(".upload-{}-{}.part", std::process::id(), state.uploads.next.fetch_add(1, Ordering::Relaxed)));
    // A new file: never one that is there already, nor where a link there points.
    let mut file = match tokio::fs::OpenOptions::new().write(true).create_new(true).open(&part_path).await {
        Ok(file) => file,
        Err(e) => return error(503, &format!("cannot write {}: {e}", part_path.display())),
    };
    let mut part = PartFile { path: Some(part_path.clone()), name: name.clone(), peer: peer.clone(), received: 0, answered: false };
    let mut total: u64 = 0;
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                part.answered = true;
                tracing::warn!(%name, %peer, received = total, error = %e, "upload cut off; the partial file is removed");
                return error(400, &format!("the upload was cut off after {total} bytes: {e}"));
            }
        };
        total += chunk.len() as u64;
        part.received = total;
        if total > limit {
            part.answered = true;
            tracing::warn!(%name, %peer, received = total, limit, "upload refused: larger than ingest.upload_max_bytes");
            return error(413, &format!("the file is larger than ingest.upload_max_bytes ({limit} bytes)"));
        }
        if let Err(e) = file.write_all(&chunk).await {
            part.answered = true;
            tracing::error!(%name, file = %part_path.display(), error = %e, "upload not written");
            return error(507, &format!("cannot write the upload: {e}"));
        }
    }
    // From here on the body is complete: whatever happens is answered (and logged) here.
    part.answered = true;
    if let Err(e) = file.sync_all().await {
        return error(507, &format!("cannot write the upload: {e}"));
    }
    drop(file);
    let check_path = part_path.clone();
    let Ok(_checking) = state.uploads.checking.acquire().await else { return error(503, "uploads are closed") };
    let check = tokio::task::spawn_blocking(move || -> Result<(Option<estuary_storage::VideoInfo>, Option<estuary_storage::AudioInfo>, u64), String> {
        let data = std::fs::read(&check_path).map_err(|e| format!("cannot read the upload back: {e}"))?;
        let clip = estuary_actors::ingest::read_clip(bytes::Bytes::from(data)).map_err(|e| e.to_string())?;
        Ok(clip.describe())
    })
    .await;
    let (video, audio, duration_ms) = match check {
        Ok(Ok(description)) => description,
        Ok(Err(reason)) => {
            tracing::warn!(%name, %peer, bytes = total, %reason, "upload refused: not a media file the ingest can play");
            return error(400, &format!("not a media file the ingest can play: {reason}"));
        }
        Err(e) => return error(500, &e.to_string()),
    };
    let (from, into, wanted) = (part_path.clone(), dir.clone(), name.clone());
    let saved = match tokio::task::spawn_blocking(move || save_as(&from, &into, &wanted)).await {
        Ok(Ok(saved)) => saved,
        Ok(Err(e)) => return error(503, &format!("cannot save {name}: {e}")),
        Err(e) => return error(500, &e.to_string()),
    };
    part.path = None;
    tracing::info!(file = %saved.display(), bytes = total, %peer, "upload saved");
    HttpResponse::Ok().json(json!({
        "code": 0,
        "server": SERVER,
        "file": saved,
        "name": saved.file_name().map(|n| n.to_string_lossy().to_string()),
        "bytes": total,
        "duration_ms": duration_ms,
        "video": video_json(&video),
        "audio": audio_json(&audio),
    }))
}

pub(super) async fn list_uploads(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let dir = absolute(state.reloader.running().media_dir());
    let listed = tokio::task::spawn_blocking(move || -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        let mut files: Vec<Value> = entries
            .flatten()
            .filter(|e| upload_name(&e.file_name().to_string_lossy()).is_ok_and(|n| n == e.file_name().to_string_lossy()))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
                Some(json!({ "name": e.file_name().to_string_lossy(), "file": e.path(), "bytes": meta.len(), "modified_ms": modified }))
            })
            .collect();
        files.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        files
    })
    .await
    .unwrap_or_default();
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": listed.len(), "uploads": listed }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names() {
        assert_eq!(upload_name("clip.mp4").unwrap(), "clip.mp4");
        assert_eq!(upload_name("C:\\videos\\My Film.MOV").unwrap(), "My_Film.MOV");
        assert_eq!(upload_name("../../etc/x.ts").unwrap(), "x.ts");
        assert_eq!(upload_name("..mp4.flv").unwrap(), "mp4.flv");
        assert!(upload_name("passwd").is_err());
        assert!(upload_name("clip.mp4.sh").is_err());
        assert!(upload_name(&format!("{}.mp4", "a".repeat(300))).is_err());
    }
}
