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
