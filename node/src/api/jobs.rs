//! Forwards, ingests and transcoders: `GET|POST /api/v1/{forwards,ingests,transcodes}`,
//! `DELETE /api/v1/{forwards,ingests,transcodes}/{id}`.

use super::*;

pub(super) async fn list_forwards(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let list = estuary_actors::forward::list(&state.node);
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": list.len(), "forwards": list }))
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct NewForward {
    app: String,
    stream: String,
    url: String,
}

/// Starts forwarding a stream (published or not yet) to a destination.
pub(super) async fn add_forward(_: Authorized, state: web::Data<AppState>, body: web::Json<NewForward>) -> HttpResponse {
    let body = body.into_inner();
    if let Err(reason) = estuary_protocols::naming::check_app(&body.app).and_then(|()| estuary_protocols::naming::check_stream(&body.stream)) {
        return error(400, &format!("app and stream are required: {reason}"));
    }
    let key = estuary_actors::StreamKey::new(&body.app, &body.stream);
    match estuary_actors::forward::start(state.node.clone(), state.registry.clone(), key, body.url, "api").await {
        Ok(status) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "forward": status })),
        Err(e) => error(400, &e.to_string()),
    }
}

pub(super) async fn remove_forward(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let Ok(id) = id.parse::<u64>() else { return error(400, "forward ids are numbers") };
    if estuary_actors::forward::remove(&state.node, id) {
        HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER }))
    } else {
        error(404, &format!("no forward {id}"))
    }
}

pub(super) async fn list_ingests(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let list = estuary_actors::ingest::list(&state.node);
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": list.len(), "ingests": list }))
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct NewIngest {
    app: String,
    stream: String,
    source: String,
    #[serde(default = "looped_default")]
    looped: bool,
}

pub(super) fn looped_default() -> bool {
    true
}

/// `name` (a name in the media directory `root`, already canonical, or a path) as it is once
/// links are followed, when that is inside `root`: never `..` or a link out of it.
fn in_media_dir(root: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    let path = if std::path::Path::new(name).is_absolute() { std::path::PathBuf::from(name) } else { root.join(name) };
    std::fs::canonicalize(path).ok().filter(|real| real.starts_with(root))
}

/// Publishes a file as a live stream (saved; it starts again with the node). The source is
/// checked now so a missing or non-media file is refused with the reason.
pub(super) async fn add_ingest(_: Authorized, state: web::Data<AppState>, body: web::Json<NewIngest>) -> HttpResponse {
    let body = body.into_inner();
    if let Err(reason) = estuary_protocols::naming::check_app(&body.app).and_then(|()| estuary_protocols::naming::check_stream(&body.stream)) {
        return error(400, &format!("app and stream are required: {reason}"));
    }
    let running = state.reloader.running();
    let mut source = body.source.clone();
    if let Some((scheme, _)) = source.split_once("://") {
        if !matches!(scheme, "rtmp" | "srt" | "http" | "https") {
            return error(400, &format!("{scheme}:// sources are not supported (rtmp, srt, http, https, or a file in ingest.media_dir)"));
        }
        // The node would fetch whatever URL it is given: not from inside (forward.deny_private).
        // ffmpeg follows HTTP redirects and playlists' URLs wherever they lead, which no check
        // of the first host can bound.
        if running.forward.deny_private && matches!(scheme, "http" | "https") {
            return error(400, "http(s) sources may redirect or list segments anywhere, so with forward.deny_private on they are taken from the configuration file ([ingest.sources]) only, or set forward.deny_private = false");
        }
        if running.forward.deny_private {
            let default_port = match scheme {
                "rtmp" => 1935,
                "srt" => 10080,
                "http" => 80,
                _ => 443,
            };
            let Some((host, port)) = estuary_actors::access::private::host_and_port(&source, default_port) else {
                return error(400, "the source URL names no host");
            };
            if let Err(reason) = estuary_actors::access::private::public_addresses(&host, port).await {
                tracing::warn!(source = %estuary_actors::access::secrets::mask_url(&source), %reason, "ingest refused");
                return error(400, &reason);
            }
        }
    }
    let media_dir = running.media_dir();
    let url = source.contains("://");
    let check = tokio::task::spawn_blocking(move || -> Result<String, String> {
        if url {
            return Ok(source);
        }
        // Files only from the media directory (where uploads go): a name there, or a path that
        // is there once links are followed; never `..` or a link out of it.
        let root = std::fs::canonicalize(&media_dir).map_err(|e| format!("ingest.media_dir {}: {e}", media_dir.display()))?;
        // One answer for a missing file and one elsewhere: the API does not tell which paths exist.
        let outside = || format!("{source} is not a file in ingest.media_dir ({}): files played through the API must be there (upload them, or copy them there)", root.display());
        source = in_media_dir(&root, &source).ok_or_else(outside)?.to_string_lossy().to_string();
        let files = estuary_actors::ingest::source_files(&source)?;
        let files = estuary_actors::ingest::check_confined(&root, &files).map_err(|e| format!("{e} (listed by {source})"))?;
        let first = &files[0];
        let meta = std::fs::metadata(first).map_err(|e| format!("cannot open {}: {e}", first.display()))?;
        if meta.len() > estuary_actors::ingest::MAX_SOURCE_BYTES {
            return Err(format!("{} is too large", first.display()));
        }
        let data = std::fs::read(first).map_err(|e| format!("cannot read {}: {e}", first.display()))?;
        estuary_actors::ingest::read_clip(bytes::Bytes::from(data)).map(|_| source.clone()).map_err(|e| format!("{}: {e}", first.display()))
    })
    .await;
    let source = match check {
        Ok(Ok(source)) => source,
        Ok(Err(reason)) => {
            tracing::warn!(source = %estuary_actors::access::secrets::mask_url(&body.source), %reason, "ingest refused");
            return error(400, &reason);
        }
        Err(e) => return error(500, &e.to_string()),
    };
    let spec = estuary_storage::IngestSpec { id: state.next_ingest_id(), app: body.app, stream: body.stream, source, looped: body.looped };
    match state.storage.ask(estuary_actors::messages::PutIngest(spec.clone())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(503, &e.to_string()),
        Err(e) => return error(503, &e.to_string()),
    }
    estuary_actors::ingest::start(state.node.clone(), state.registry.clone(), spec.clone(), "api");
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "id": spec.id.to_string() }))
}

pub(super) async fn remove_ingest(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let Ok(id) = id.parse::<u64>() else { return error(400, "ingest ids are numbers") };
    let stopped = estuary_actors::ingest::stop(&state.node, id);
    let forgotten = matches!(state.storage.ask(estuary_actors::messages::DeleteIngest(id)).await, Ok(Ok(true)));
    if stopped || forgotten {
        HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER }))
    } else {
        error(404, &format!("no ingest {id}"))
    }
}

pub(super) async fn list_transcodes(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let list = estuary_actors::transcode::list(&state.node);
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "total": list.len(), "transcodes": list }))
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct NewTranscode {
    app: String,
    stream: String,
    renditions: Vec<crate::config::RenditionSection>,
}

/// Starts a ladder for a live stream (until it ends).
pub(super) async fn add_transcode(_: Authorized, state: web::Data<AppState>, body: web::Json<NewTranscode>) -> HttpResponse {
    let body = body.into_inner();
    if body.renditions.is_empty() {
        return error(400, "renditions must not be empty");
    }
    // Overlay pictures named through the API are files of the media directory, as the files
    // an API ingest plays (a name there, or a path there once links are followed).
    let media_dir = state.reloader.running().media_dir();
    let mut renditions = body.renditions.clone();
    for (i, r) in renditions.iter_mut().enumerate() {
        let Some(overlay) = r.overlay.as_mut() else { continue };
        let named = overlay.image.clone();
        let root = media_dir.clone();
        let confined = tokio::task::spawn_blocking(move || -> Result<String, String> {
            let outside = || format!("overlay image {named} is not a file in ingest.media_dir ({}): pictures named through the API must be there", root.display());
            let root = std::fs::canonicalize(&root).map_err(|_| outside())?;
            let real = in_media_dir(&root, &named).filter(|real| real.is_file()).ok_or_else(outside)?;
            Ok(real.to_string_lossy().into_owned())
        })
        .await;
        match confined {
            Ok(Ok(real)) => overlay.image = real,
            Ok(Err(reason)) => return error(400, &format!("renditions[{i}]: {reason}")),
            Err(e) => return error(500, &e.to_string()),
        }
    }
    let mut ladder = Vec::new();
    for (i, r) in renditions.iter().enumerate() {
        match r.to_rendition() {
            Ok(r) => ladder.push(r),
            Err(e) => return error(400, &format!("renditions[{i}]: {e}")),
        }
    }
    let Some(settings) = state.node.transcode_settings.get().as_ref().clone() else { return error(503, "transcoding is not configured on this node") };
    let ffmpeg = settings.ffmpeg.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || estuary_actors::transcode::ffmpeg_available(&ffmpeg)).await {
        tracing::error!(error = %e, "transcode refused");
        return error(503, &e);
    }
    let key = estuary_actors::StreamKey::new(&body.app, &body.stream);
    match estuary_actors::transcode::start(state.node.clone(), state.registry.clone(), settings, key, ladder, "api").await {
        Ok(list) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "transcodes": list })),
        Err(e) => error(400, &e),
    }
}

pub(super) async fn remove_transcode(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let Ok(id) = id.parse::<u64>() else { return error(400, "transcode ids are numbers") };
    if estuary_actors::transcode::remove(&state.node, id) {
        HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER }))
    } else {
        error(404, &format!("no transcode {id}"))
    }
}
