//! The `estuary` binary.

mod api;
mod config;
mod console;
mod dvr_http;
mod front;
mod http;
mod live_package;
mod metrics;
mod reload;
mod rtmps;
mod tap;
mod tls;

use actix::prelude::*;
use actix_web::{web, App, HttpServer};
use clap::Parser;
use estuary_actors::messages::FlushStorage;
use estuary_actors::node::{Node, NodeContext, NodeOptions};
use estuary_actors::registry::StreamRegistry;
use estuary_actors::rtmp::{self, RtmpListener};
use estuary_actors::storage::StorageHandle;
use estuary_storage::Store;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Estuary: a realtime media server and gateway.
#[derive(Parser, Debug)]
#[command(name = "estuary", version, about)]
struct Cli {
    /// Configuration file: Estuary's TOML (defaults are built in; see --print-default-config),
    /// or SRS's srs.conf when it ends in .conf.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// An SRS configuration file (srs.conf syntax), whatever its name.
    #[arg(long, conflicts_with = "config")]
    srs_config: Option<PathBuf>,
    /// Print the documented default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Print the SRS directives and SRS_* variables Estuary applies, as a Markdown table.
    #[arg(long)]
    srs_table: bool,
    /// Validate the configuration, list what is not applied, and exit (SRS's -t).
    #[arg(long, short = 't')]
    check_config: bool,
    /// Shut down when standard input closes (for supervisors and test harnesses that own
    /// the node's lifetime through a pipe).
    #[arg(long)]
    exit_on_stdin_close: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Mint a signed URL token with the configured auth.token_secret and print it.
    Token {
        /// publish or play.
        #[arg(long)]
        action: String,
        /// The stream as app/stream.
        #[arg(long)]
        stream: String,
        /// Seconds the token stays valid.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

/// Shared state of the HTTP and API servers.
#[derive(Clone)]
pub struct AppState {
    pub node: NodeContext,
    pub registry: Addr<StreamRegistry>,
    pub storage: StorageHandle,
    pub rtmp_listener: Addr<RtmpListener>,
    pub srt_listener: Option<Addr<estuary_actors::srt::SrtListener>>,
    pub debug_faults: bool,
    pub started: Instant,
    pub hls_dir: PathBuf,
    pub dvr: std::sync::Arc<estuary_actors::settings::DvrSettings>,
    pub gb_app: String,
    pub gb_media_port: Option<u16>,
    pub dash_dir: PathBuf,
    /// The configuration in effect and how to read it again (SIGHUP, `/api/v1/raw?rpc=reload`);
    /// API credentials and metric limits are read from it per request.
    pub reloader: std::sync::Arc<reload::Reloader>,
    pub write_merge: std::time::Duration,
    /// The last ingest id handed out (ids are `unix_ms << 8` or one more than the last, so
    /// two ingests created in the same millisecond differ, and ids grow across restarts).
    pub last_ingest_id: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The process's CPU seconds at the last `/api/v1/summaries` sample, for its CPU %.
    pub last_cpu: std::sync::Arc<std::sync::Mutex<(Instant, f64)>>,
    /// What the console signs in with on the HTTP port when no API credentials are configured
    /// (`<node.data_dir>/console-token`, made at the first start).
    pub console_token: Option<std::sync::Arc<str>>,
    /// Uploads in progress (`POST /api/v1/uploads`).
    pub uploads: std::sync::Arc<api::Uploads>,
}

impl AppState {
    /// HLS fragment length in seconds, when HLS is on (SRS's vhost `hls.fragment`).
    pub fn hls_fragment_s(&self) -> Option<f64> {
        let running = self.reloader.running();
        running.hls.enabled.then(|| running.hls.fragment_ms as f64 / 1000.0)
    }

    /// A fresh ingest id.
    pub fn next_ingest_id(&self) -> u64 {
        let floor = (estuary_actors::unix_ms().max(0) as u64) << 8;
        let previous = self.last_ingest_id.fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |last| Some(last.saturating_add(1).max(floor)));
        // The closure always returns Some, so fetch_update cannot fail; both arms hold the old value.
        let last = previous.unwrap_or_else(|v| v);
        last.saturating_add(1).max(floor)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", config::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    if cli.srs_table {
        print!("{}", config::srs::markdown_table());
        return ExitCode::SUCCESS;
    }
    let file = cli.srs_config.as_deref().or(cli.config.as_deref());
    let (config, warnings) = match config::load_with_warnings(file, cli.srs_config.is_some(), std::env::vars()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("estuary: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if !config.https.listen.is_empty() || !config.https.api_listen.is_empty() {
        // The certificate is part of the configuration: a file that does not load is a bad
        // configuration (for -t too), named with the problem.
        if let Err(e) = tls::load(std::path::Path::new(&config.https.cert_file), std::path::Path::new(&config.https.key_file)) {
            eprintln!("estuary: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    }
    if cli.check_config {
        for warning in &warnings {
            println!("estuary: not applied: {warning}");
        }
        println!("estuary: configuration is valid");
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Token { action, stream, ttl }) = &cli.command {
        let Some(action) = estuary_actors::access::auth::Action::parse(action) else {
            eprintln!("estuary: --action must be publish or play");
            return ExitCode::from(2);
        };
        if config.auth.token_secret.is_empty() {
            eprintln!("estuary: auth.token_secret is not configured (config file or ESTUARY_AUTH__TOKEN_SECRET)");
            return ExitCode::from(2);
        }
        let expiry = (estuary_actors::unix_ms() / 1000) as u64 + ttl;
        println!("{}", estuary_actors::access::auth::TokenSigner::new(&config.auth.token_secret).mint(action, stream.trim_matches('/'), expiry));
        return ExitCode::SUCCESS;
    }
    let set_log_level = init_logging(&config.log.level);
    for warning in &warnings {
        tracing::warn!("SRS configuration not applied: {warning}");
    }
    let source = ConfigSource { file: file.map(PathBuf::from), srs: cli.srs_config.is_some(), set_log_level };
    match run(config, source, cli.exit_on_stdin_close) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("estuary: {e}");
            ExitCode::from(1)
        }
    }
}

/// Where the configuration came from, for reloads.
struct ConfigSource {
    file: Option<PathBuf>,
    srs: bool,
    set_log_level: reload::LogLevelSetter,
}

/// The log filter of `level`: the node's own messages at `level`, its libraries' quieter.
fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::new(format!("{level},actix_server=warn,actix_web=warn,srt_protocol=warn,rtc=warn,rtc_ice=warn,rtc_dtls=error,rtc_srtp=warn,rtc_sctp=warn,rtc_interceptor=warn"))
}

/// Starts logging at `level` (or as RUST_LOG says); the answer changes the level later.
fn init_logging(level: &str) -> reload::LogLevelSetter {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| log_filter(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).with_target(false).with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
    // Panics caught at a session boundary are logged by that session with its context; the
    // panic itself goes to the same log, as one line, instead of raw stderr.
    std::panic::set_hook(Box::new(|info| {
        let message = info.payload().downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| info.payload().downcast_ref::<String>().cloned()).unwrap_or_default();
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        tracing::error!(%thread, %location, "panic: {message}");
    }));
    Box::new(move |level| handle.reload(log_filter(level)).map_err(|e| e.to_string()))
}

fn run(config: config::Config, source: ConfigSource, exit_on_stdin_close: bool) -> Result<(), String> {
    let store = Store::open(&config.node.data_dir).map_err(|e| format!("cannot open the database: {e}"))?;
    // HLS and DASH files are live artifacts: whatever a previous run left is stale.
    // The directories themselves stay: each may be a mount point (a tmpfs for HLS).
    for dir in [config.hls_dir(), config.dash_dir()] {
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("cannot clear {}: {e}", dir.display()))?.path();
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.map_err(|e| format!("cannot clear {}: {e}", path.display()))?;
        }
    }
    let dvr_dir = config.dvr_dir();
    std::fs::create_dir_all(&dvr_dir).map_err(|e| format!("cannot create the DVR directory {}: {e}", dvr_dir.display()))?;
    let report = estuary_actors::dvr::repair::reconcile(&store, &dvr_dir).map_err(|e| format!("cannot reconcile the recordings index: {e}"))?;
    if report.repaired + report.removed + report.orphans > 0 {
        tracing::warn!(checked = report.checked, repaired = report.repaired, removed = report.removed, orphan_files = report.orphans, "recordings index reconciled with the disk");
    } else {
        tracing::info!(recordings = report.checked, "recordings index matches the disk");
    }
    let rtmp_socket = rtmp::bind(config.rtmp_listen()).map_err(|e| format!("cannot listen for RTMP on {}: {e}", config.rtmp.listen))?;
    let srt_socket = if config.srt.enabled {
        Some(estuary_actors::srt::bind(config.srt_listen()).map_err(|e| format!("cannot listen for SRT on {}: {e}", config.srt.listen))?)
    } else {
        None
    };
    let rtc_socket = if config.rtc.enabled {
        let settings = config.rtc_settings();
        Some((estuary_actors::webrtc::bind(settings.listen).map_err(|e| format!("cannot listen for WebRTC on {} (UDP): {e}", config.rtc.listen))?, settings))
    } else {
        None
    };
    let gb_media = if config.gb28181.enabled {
        let addr: std::net::SocketAddr = config.gb28181.media_listen.parse().map_err(|e| format!("gb28181.media_listen: {e}"))?;
        let tcp = estuary_actors::gb28181::bind(addr).map_err(|e| format!("cannot listen for GB28181 media on {addr} (TCP): {e}"))?;
        let udp = std::net::UdpSocket::bind(addr).and_then(|s| s.set_nonblocking(true).map(|()| s)).map_err(|e| format!("cannot listen for GB28181 media on {addr} (UDP): {e}"))?;
        Some((tcp, udp))
    } else {
        None
    };
    let gb_sip = if config.gb28181.enabled {
        let settings = config.sip_settings();
        let listen = settings.platform.listen;
        let udp = estuary_actors::gb28181::sip::bind(listen).map_err(|e| format!("cannot listen for GB28181 SIP on {listen} (UDP): {e}"))?;
        let tcp = estuary_actors::gb28181::sip::bind_tcp(listen).map_err(|e| format!("cannot listen for GB28181 SIP on {listen} (TCP): {e}"))?;
        Some((udp, tcp, settings))
    } else {
        None
    };
    // Every listening socket is bound before any actor starts: a busy port ends the boot with
    // a clear error and nothing half-started to tear down.
    let http_socket = std::net::TcpListener::bind(&config.http.listen).map_err(|e| format!("cannot listen for HTTP on {}: {e}", config.http.listen))?;
    let api_socket = std::net::TcpListener::bind(&config.api.listen).map_err(|e| format!("cannot listen for the API on {}: {e}", config.api.listen))?;
    // HTTPS: the certificate is loaded before anything starts, so a bad file ends the boot.
    let https = if config.https.listen.is_empty() && config.https.api_listen.is_empty() {
        None
    } else {
        let (tls, certificate) = tls::server_config(std::path::Path::new(&config.https.cert_file), std::path::Path::new(&config.https.key_file))?;
        let bind = |listen: &str, what: &str| -> Result<Option<std::net::TcpListener>, String> {
            if listen.is_empty() {
                return Ok(None);
            }
            std::net::TcpListener::bind(listen).map(Some).map_err(|e| format!("cannot listen for {what} over HTTPS on {listen}: {e}"))
        };
        Some((bind(&config.https.listen, "HTTP")?, bind(&config.https.api_listen, "the API")?, tls, certificate))
    };
    // RTMPS: bound and its certificate loaded before anything starts, as HTTPS's.
    let rtmps = if config.rtmps.listen.is_empty() {
        None
    } else {
        let socket = std::net::TcpListener::bind(&config.rtmps.listen).map_err(|e| format!("cannot listen for RTMPS on {}: {e}", config.rtmps.listen))?;
        let (mut tls, certificate) = tls::server_config(std::path::Path::new(&config.https.cert_file), std::path::Path::new(&config.https.key_file))?;
        // RTMP clients name no application protocol.
        tls.alpn_protocols.clear();
        Some((socket, tls, certificate))
    };
    let metrics_socket = if config.metrics.listen.is_empty() {
        None
    } else {
        Some(std::net::TcpListener::bind(&config.metrics.listen).map_err(|e| format!("cannot listen for metrics on {}: {e}", config.metrics.listen))?)
    };
    let workers = if config.node.workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { config.node.workers };

    let cluster_settings = if config.cluster.mode == "standalone" {
        None
    } else {
        estuary_actors::cluster::check_url(&config.cluster.redis).map_err(|e| format!("cluster.redis: {e}"))?;
        let stored = store.node_id().map_err(|e| format!("cannot read or make this node's cluster id: {e}"))?;
        config.cluster_settings(&stored)
    };
    let system = actix::System::new();
    system.block_on(async move {
        // The node's context: its threads and everything its actors share. Built here, once,
        // and handed to every actor (nothing in the actors crate is process-wide).
        let node = Node::start(NodeOptions { workers, hooks: config.hook_settings(), access: config.access_settings(), forward_tls_ca_file: Some(config.forward.tls_ca_file.clone()), forward_deny_private: config.forward.deny_private, cluster: cluster_settings, vhosts: config.vhosts.keys().cloned().collect(), connections: estuary_actors::node::connections::ConnectionLimits { max: config.node.max_connections, per_ip: config.node.max_connections_per_ip } });
        let storage = StorageHandle::start(node.clone(), store.clone());
        let registry = StreamRegistry::new(node.clone(), config.stream_settings_by_vhost(), storage.clone()).start();
        let dvr_settings = std::sync::Arc::new(config.dvr_settings());
        {
            let (settings, storage) = (dvr_settings.clone(), storage.clone());
            estuary_actors::dvr::janitor::DvrJanitor::start_in_arbiter(&node.topology.dvr, move |_| estuary_actors::dvr::janitor::DvrJanitor::new(settings, storage));
        }
        let rtmp_settings = config.rtmp_settings();
        let (listener_node, listener_registry) = (node.clone(), registry.clone());
        let rtmp_listener = Supervisor::start(move |_| RtmpListener::new(listener_node, rtmp_settings, listener_registry, Some(rtmp_socket)));
        let srt_listener = srt_socket.map(|socket| {
            let settings = config.srt_settings();
            let (node, registry) = (node.clone(), registry.clone());
            let mut socket = Some(socket);
            let arbiter = node.topology.srt.clone();
            Supervisor::start_in_arbiter(&arbiter, move |_| estuary_actors::srt::SrtListener::new(node.clone(), settings.clone(), registry.clone(), socket.take()))
        });
        if let Some((socket, settings)) = rtc_socket {
            actix::spawn(estuary_actors::webrtc::serve(node.clone(), socket, settings));
        }
        if let Some((socket, tcp, settings)) = gb_sip {
            let known = store.gb_devices().unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read remembered GB28181 devices");
                Vec::new()
            });
            actix::spawn(estuary_actors::gb28181::sip::serve(node.clone(), socket, Some(tcp), settings, Some(storage.clone()), known));
        }
        if let Some((listener, udp)) = gb_media {
            actix::spawn(estuary_actors::gb28181::serve(node.clone(), listener, registry.clone()));
            actix::spawn(estuary_actors::gb28181::serve_udp(node.clone(), udp, registry.clone()));
            tracing::info!(listen = %config.gb28181.media_listen, "GB28181 media listening (PS over RTP, TCP and UDP)");
        }
        node.ingests.configure(config.transcode.ffmpeg.clone(), config.rtmp_listen().port(), config.media_dir());
        node.transcode_settings.set(Some(std::sync::Arc::new(config.transcode_settings())));
        {
            // Stream history stays bounded however many names are used.
            let (storage, registry, max_age_ms, max_count) = (storage.clone(), registry.clone(), (config.stream.history_max_age_s * 1000) as i64, config.stream.history_max_count);
            actix::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
                loop {
                    every.tick().await;
                    let Ok(live) = registry.send(estuary_actors::messages::ListStreams).await else { continue };
                    let live = live.into_iter().map(|(key, _)| key).collect();
                    match storage.ask(estuary_actors::messages::PruneStreams { now_ms: estuary_actors::unix_ms(), max_age_ms, max_count, live }).await {
                        Ok(Ok(0)) => {}
                        Ok(Ok(removed)) => tracing::info!(removed, max_count, max_age_s = max_age_ms / 1000, "ended streams forgotten"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "stream history not pruned"),
                        Err(_) => {}
                    }
                }
            });
        }
        if let Some(directory) = node.cluster.clone() {
            // The node's registration and its streams' claims, renewed on every beat.
            let (registry, node) = (registry.clone(), node.clone());
            tracing::info!(node = %directory.node_id(), role = %directory.settings().role, redis = %directory.shown_url(), "joining the cluster");
            {
                // Publishes on other nodes reach players waiting here at once.
                let (directory, registry, node) = (directory.clone(), registry.clone(), node.clone());
                actix::spawn(async move {
                    directory
                        .follow_events(|stream| {
                            let (registry, node) = (registry.clone(), node.clone());
                            actix::spawn(async move { estuary_actors::cluster::pull::on_published_elsewhere(&node, &registry, &stream).await });
                        })
                        .await
                });
            }
            actix::spawn(async move {
                let mut every = tokio::time::interval(directory.settings().heartbeat);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let cpu = std::sync::Mutex::new((std::time::Instant::now(), metrics::cpu_seconds()));
                loop {
                    every.tick().await;
                    let Ok(published) = registry.send(estuary_actors::messages::PublishedStreams).await else { continue };
                    let published: std::collections::HashSet<String> = published.iter().map(|k| k.db_key()).collect();
                    directory.beat(&published, node.clients.snapshot().len(), metrics::cpu_percent(&cpu)).await;
                }
            });
        }
        for (index, (stream, source)) in config.ingest.sources.iter().enumerate() {
            if let Some((app, name)) = stream.split_once('/') {
                let spec = estuary_storage::IngestSpec { id: 1_000_000_000 + index as u64, app: app.into(), stream: name.into(), source: source.clone(), looped: true };
                estuary_actors::ingest::start(node.clone(), registry.clone(), spec, "config");
            }
        }
        match store.ingests() {
            Ok(saved) => {
                for spec in saved {
                    estuary_actors::ingest::start(node.clone(), registry.clone(), spec, "api");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read saved ingests"),
        }
        let reloader = std::sync::Arc::new(reload::Reloader::new(source.file, source.srs, config.clone(), node.clone(), registry.clone(), Some(source.set_log_level)));
        actix::spawn(reload::on_sighup(reloader.clone()));
        let console_token = console::prepare(&config)?;
        let state = AppState { node: node.clone(), registry, storage: storage.clone(), rtmp_listener, srt_listener, debug_faults: config.api.debug_faults, started: Instant::now(), hls_dir: config.hls_dir(), dvr: dvr_settings.clone(), gb_app: config.gb28181.app.clone(), gb_media_port: config.gb28181.enabled.then(|| config.gb28181.media_listen.parse::<std::net::SocketAddr>().map(|a| a.port()).unwrap_or(9000)), dash_dir: config.dash_dir(),
            reloader: reloader.clone(),
            write_merge: std::time::Duration::from_millis(config.stream.write_merge_ms),
            last_ingest_id: Default::default(),
            last_cpu: std::sync::Arc::new(std::sync::Mutex::new((Instant::now(), metrics::cpu_seconds()))),
            console_token: console_token.clone(),
            uploads: Default::default(),
        };

        let (https_http, https_api, tls_config) = match https {
            Some((http, api, tls_config, certificate)) => {
                actix::spawn(tls::watch(certificate));
                (http, api, Some(tls_config))
            }
            None => (None, None, None),
        };
        if let Some((socket, tls, certificate)) = rtmps {
            actix::spawn(tls::watch(certificate));
            actix::spawn(rtmps::serve(node.clone(), socket, tls, config.rtmp_listen(), std::time::Duration::from_millis(config.rtmp.handshake_timeout_ms)));
        }
        let http_state = state.clone();
        let (http_gate, api_gate) = (node.connections.clone(), node.connections.clone());
        let console_on = config.http.console;
        let front_on = config.http.front;
        let front_tick = (config.http.front_tick_ms > 0).then(|| std::time::Duration::from_millis(config.http.front_tick_ms));
        // The HTTP port: the front (see `front`) answers LL-HLS viewers' requests and hands
        // every other connection to actix-web's HTTP service of the same app.
        let http_local = http_socket.local_addr().map_err(|e| format!("cannot serve HTTP on {}: {e}", config.http.listen))?;
        let http_server = actix_server::Server::build()
            .workers(workers)
            .disable_signals()
            .shutdown_timeout(1)
            .listen("http", http_socket, move || {
                let app = actix_service::ServiceFactoryExt::map_err(actix_service::IntoServiceFactory::into_factory(http_app(http_state.clone(), console_on)), |e: actix_web::Error| e.error_response());
                let http = actix_http::HttpService::<front::Handed, _, _>::build()
                    .keep_alive(actix_http::KeepAlive::Timeout(std::time::Duration::from_secs(5)))
                    .client_request_timeout(std::time::Duration::from_secs(5))
                    .client_disconnect_timeout(std::time::Duration::from_secs(1))
                    .local_addr(http_local)
                    .on_connect_ext(|handed: &front::Handed, data: &mut actix_web::dev::Extensions| handed.on_connect(data))
                    // What actix-web's own listener gives its app (the constructor is hidden in
                    // actix-web 4 but public; the lock file pins the version).
                    .finish(actix_service::map_config(app, move |_| actix_web::dev::AppConfig::__priv_test_new(false, http_local.to_string(), http_local)));
                front::service(http, http_state.clone(), http_gate.clone(), front_on, front_tick)
            })
            .map_err(|e| format!("cannot serve HTTP on {}: {e}", config.http.listen))?;
        // HTTPS: the same app through actix-web alone, on workers of its own (as many).
        let https_server = match (https_http, &tls_config) {
            (Some(socket), Some(tls_config)) => {
                let (https_state, https_gate) = (state.clone(), node.connections.clone());
                let server = HttpServer::new(move || http_app(https_state.clone(), console_on))
                    .on_connect(move |connection, data| http::on_connect(&https_gate, "http", true, connection, data))
                    .workers(workers)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .listen_rustls_0_23(socket, tls_config.clone())
                    .map_err(|e| format!("cannot serve HTTPS on {}: {e}", config.https.listen))?
                    .run();
                Some(server)
            }
            _ => None,
        };
        // Started once every listener of the port is set up.
        let http_server = http_server.run();
        let api_state = state.clone();
        let api_server = HttpServer::new(move || {
            App::new()
                // SRS answers `/api/v1/streams/` as `/api/v1/streams`, and so do its users'
                // scripts: the trailing slash is trimmed before routing.
                .wrap(actix_web::middleware::NormalizePath::trim())
                .wrap_fn(|req, srv| match http::refused(&req) {
                    Some(response) => futures_util::future::Either::Left(std::future::ready(Ok(req.into_response(response)))),
                    None => futures_util::future::Either::Right(actix_web::dev::Service::call(srv, req)),
                })
                .app_data(web::Data::new(api_state.clone()))
                .configure(api::routes)
        })
            .on_connect(move |connection, data| http::on_connect(&api_gate, "api", false, connection, data))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .listen(api_socket)
            .map_err(|e| format!("cannot serve the API on {}: {e}", config.api.listen))?;
        let api_server = match (https_api, &tls_config) {
            (Some(socket), Some(tls_config)) => api_server.listen_rustls_0_23(socket, tls_config.clone()).map_err(|e| format!("cannot serve the API over HTTPS on {}: {e}", config.https.api_listen))?,
            _ => api_server,
        }
        .run();
        let (http_handle, api_handle) = (http_server.handle(), api_server.handle());
        let https_handle = https_server.as_ref().map(|s| s.handle());
        actix::spawn(http_server);
        actix::spawn(api_server);
        if let Some(server) = https_server {
            actix::spawn(server);
        }
        let metrics_handle = if let Some(socket) = metrics_socket {
            let metrics_state = state.clone();
            let server = HttpServer::new(move || App::new().app_data(web::Data::new(metrics_state.clone())).app_data(api::PublicReads).route("/metrics", web::get().to(api::metrics_text)))
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .listen(socket)
                .map_err(|e| format!("cannot serve metrics on {}: {e}", config.metrics.listen))?
                .run();
            let handle = server.handle();
            actix::spawn(server);
            Some(handle)
        } else {
            None
        };
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            rtmp = %config.rtmp.listen,
            srt = %if config.srt.enabled { config.srt.listen.as_str() } else { "off" },
            http = %config.http.listen,
            api = %config.api.listen,
            https = %if config.https.listen.is_empty() { "off" } else { config.https.listen.as_str() },
            https_api = %if config.https.api_listen.is_empty() { "off" } else { config.https.api_listen.as_str() },
            data_dir = %config.node.data_dir.display(),
            workers,
            "estuary ready"
        );

        let reason = wait_for_shutdown(exit_on_stdin_close).await;
        tracing::info!(%reason, "shutting down");
        if let Some(directory) = node.cluster.clone() {
            // Others may take this node's streams at once, not after their leases.
            directory.leave().await;
        }
        http_handle.stop(false).await;
        if let Some(handle) = https_handle {
            handle.stop(false).await;
        }
        api_handle.stop(false).await;
        if let Some(handle) = metrics_handle {
            handle.stop(false).await;
        }
        match storage.ask(FlushStorage).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "final database flush failed"),
            Err(e) => tracing::error!(error = %e, "storage actor unavailable for the final flush"),
        }
        if let Err(e) = store.flush() {
            tracing::error!(error = %e, "final database flush failed");
        }
        actix::System::current().stop();
        tracing::info!("stopped");
        Ok::<(), String>(())
    })
}

async fn wait_for_shutdown(watch_stdin: bool) -> &'static str {
    // Standard input is read on a plain thread: a blocked read there does not hold the
    // runtime open at exit, as a tokio blocking task would.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    if watch_stdin {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 256];
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            let _ = closed_tx.send(());
        });
    }
    let stdin_closed = async {
        if !watch_stdin || closed_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate => "SIGTERM",
        _ = stdin_closed => "standard input closed",
    }
}

/// The HTTP port's app (streams, DVR, tap, and with the console the API too), for the plain
/// port behind the front and for HTTPS.
fn http_app(
    http_state: AppState,
    console_on: bool,
) -> App<impl actix_service::ServiceFactory<actix_web::dev::ServiceRequest, Config = (), Response = actix_web::dev::ServiceResponse, Error = actix_web::Error, InitError = ()>> {
    App::new()
        .wrap_fn(move |mut req, srv| {
            use futures_util::FutureExt;
            if let Some(response) = http::refused(&req) {
                return std::future::ready(Ok(req.into_response(response))).boxed_local();
            }
            http::count_request(&req);
            if console_on {
                http::trim_api_slash(&mut req);
            }
            // Playlists, manifests and segments skip the router (see `http::direct`).
            match http::direct(req) {
                Ok(response) => response,
                Err(req) => actix_web::dev::Service::call(srv, req).boxed_local(),
            }
        })
        .app_data(web::Data::new(http_state))
        .app_data(api::OnHttpPort)
        .configure(|cfg| {
            if console_on {
                // Before the stream routes: `/console/x` and `/api/v1` have the shape of `/{app}/{file}`.
                console::routes(cfg);
                api::extractors(cfg);
                api::endpoints(cfg);
            }
        })
        .configure(dvr_http::routes)
        .configure(http::routes)
}
