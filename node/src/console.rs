//! The web console and the player pages, on the HTTP port (`http.console`, on by default):
//!
//! | URL | what |
//! |---|---|
//! | `/` | redirects to `console/` |
//! | `/console/` | the console (a single page over the API; see `node/console/`) |
//! | `/console/<file>` | its scripts, styles, the WHIP publish page, vendored players |
//! | `/players/?stream=app/name&protocol=flv\|ts\|hls\|dash\|webrtc\|mp4` | the player page (embeddable) |
//!
//! The files are compiled into the binary. Every link between them is relative, so the whole
//! set works behind a reverse proxy at a sub-path (`https://example.com/video/console/`).

use actix_web::{web, HttpRequest, HttpResponse};

struct Asset {
    name: &'static str,
    body: &'static [u8],
    content_type: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset { name: $name, body: include_bytes!(concat!("../console/", $name)), content_type: $type }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("console.js", JS),
    asset!("player.html", HTML),
    asset!("player.js", JS),
    asset!("publish.html", HTML),
    asset!("publish.js", JS),
    asset!("vendor/hls.light.min.js", JS),
    asset!("vendor/mpegts.js", JS),
    asset!("vendor/dash.mediaplayer.min.js", JS),
    asset!("vendor/LICENSES.md", "text/markdown; charset=utf-8"),
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    // GET and HEAD (actix answers HEAD without the body).
    let read = || web::route().guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()));
    cfg.route("/", read().to(|| async { redirect("console/") }))
        .route("/console", read().to(|| async { redirect("console/") }))
        .route("/console/", read().to(|req: HttpRequest| async move { serve(&req, "index.html") }))
        .route("/console/{file:.+}", read().to(|req: HttpRequest, file: web::Path<String>| async move { serve(&req, &file) }))
        .route("/players", read().to(|| async { redirect("players/") }))
        .route("/players/", read().to(|req: HttpRequest| async move { serve(&req, "player.html") }));
}

fn redirect(to: &str) -> HttpResponse {
    // Relative, so a reverse proxy's sub-path is kept.
    HttpResponse::Found().insert_header(("Location", to)).finish()
}

fn serve(req: &HttpRequest, name: &str) -> HttpResponse {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("not found\n");
    };
    // The build is the version: a page and its scripts change together with the binary.
    let etag = format!("\"{}-{}\"", env!("CARGO_PKG_VERSION"), asset.body.len());
    if req.headers().get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return HttpResponse::NotModified().insert_header(("ETag", etag)).finish();
    }
    let cache = if name.starts_with("vendor/") { "public, max-age=86400" } else { "no-cache" };
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header(("Cache-Control", cache))
        .insert_header(("ETag", etag))
        // The player page is made to be embedded in other sites' pages; the console is not.
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(if name == "player.html" { ("Content-Security-Policy", "frame-ancestors *") } else { ("X-Frame-Options", "SAMEORIGIN") })
        .body(asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_relative_link_of_a_page_is_an_asset() {
        for page in ASSETS.iter().filter(|a| a.name.ends_with(".html")) {
            let text = std::str::from_utf8(page.body).unwrap();
            for attribute in ["src=\"", "href=\""] {
                for piece in text.split(attribute).skip(1) {
                    let link = piece.split('"').next().unwrap();
                    if link.starts_with('#') || link.contains("://") || link.starts_with("data:") {
                        continue;
                    }
                    let name = link.trim_start_matches("../console/").trim_start_matches("./");
                    // `./` is the console itself.
                    let name = if name.is_empty() { "index.html" } else { name };
                    assert!(ASSETS.iter().any(|a| a.name == name), "{} links to {link}, which is not served", page.name);
                }
            }
        }
    }
}

/// At start: the media directory made, and, with the console on, the console token (read from `<data_dir>/console-token`, or
/// made and written there, readable by the owner only) when no API credentials are configured,
/// and a log line saying where the console is and how to sign in. Upload leftovers of a process
/// that died mid-upload (`.upload-*.part` in the media directory) are removed.
pub fn prepare(config: &crate::config::Config) -> Result<Option<std::sync::Arc<str>>, String> {
    let media = config.media_dir();
    // Uploads go there and API ingests read files only from there.
    std::fs::create_dir_all(&media).map_err(|e| format!("cannot create ingest.media_dir {}: {e}", media.display()))?;
    if let Ok(entries) = std::fs::read_dir(&media) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(".upload-") && name.ends_with(".part") {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => tracing::info!(file = %entry.path().display(), "removed an upload a previous run did not finish"),
                    Err(e) => tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove an unfinished upload"),
                }
            }
        }
    }
    if !config.http.console {
        return Ok(None);
    }
    let url = format!("http://{}/console/", config.http.listen.replace("0.0.0.0", "127.0.0.1"));
    let api = &config.api;
    if !api.token.is_empty() || (!api.username.is_empty() && !api.password.is_empty()) {
        tracing::info!(%url, "web console; sign in with the API credentials");
        return Ok(None);
    }
    let path = config.node.data_dir.join("console-token");
    let token = match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
        _ => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let token = estuary_actors::webrtc::random_token(32);
            std::fs::create_dir_all(&config.node.data_dir).map_err(|e| format!("cannot create {}: {e}", config.node.data_dir.display()))?;
            let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            file.write_all(format!("{token}\n").as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            token
        }
    };
    tracing::info!(%url, token_file = %path.display(), "web console; sign in with the token in the file (or open the console with #token=<it>)");
    Ok(Some(std::sync::Arc::from(token.as_str())))
}
