//! The HTTP streaming server (SRS's port 8080): `/<app>/<stream>.flv`.

use crate::AppState;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use estuary_actors::messages::PlayRefused;
use estuary_actors::StreamKey;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/{app}/{file}", web::get().to(stream_file))
        .default_service(web::to(|| async { HttpResponse::NotFound().body("not found\n") }));
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 200 && name != "." && name != ".." && name.chars().all(|c| !c.is_control() && c != '/' && c != '\\')
}

async fn stream_file(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    let (app, file) = path.into_inner();
    let Some((stream, extension)) = file.rsplit_once('.') else {
        return HttpResponse::NotFound().body(format!("no such resource /{app}/{file}\n"));
    };
    if !valid_name(&app) || !valid_name(stream) {
        return HttpResponse::BadRequest().body("invalid app or stream name\n");
    }
    let key = StreamKey::new(&app, stream);
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    match extension {
        "flv" => match estuary_actors::http_flv::play(&state.registry, key, peer).await {
            Ok(body) => HttpResponse::Ok()
                .content_type("video/x-flv")
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
                .streaming(body),
            Err(refused @ (PlayRefused::NotFound(_) | PlayRefused::NotLive(_))) => {
                HttpResponse::NotFound().body(format!("{refused}\n"))
            }
        },
        other => HttpResponse::NotFound().body(format!("unsupported format .{other}\n")),
    }
}
