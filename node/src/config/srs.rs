//! SRS's configuration, read as SRS reads it, mapped onto Estuary's settings: an `srs.conf`
//! (SRS's nginx-like syntax: `name args;` and `name args { ... }`, `#` comments) and SRS's
//! `SRS_*` environment variables (`SRS_HTTP_API_LISTEN` is `http_api.listen`,
//! `SRS_VHOST_HLS_HLS_FRAGMENT` is `hls.hls_fragment` of `__defaultVhost__`).
//!
//! Both become a TOML table like the one an Estuary TOML file gives, so every check of
//! Estuary's own configuration applies. A directive Estuary does not apply is never ignored
//! silently: each is named in one warning, logged at start-up and printed by `-t`.

use std::fmt;

/// A directive: its name and arguments, the line it starts on, and its block, if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub line: usize,
    pub block: Option<Vec<Directive>>,
}

/// Why a file could not be read as SRS configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SrsError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SrsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Semicolon,
    Open,
    Close,
}

fn tokens(text: &str) -> Result<Vec<(Token, usize)>, SrsError> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            ';' => {
                out.push((Token::Semicolon, line));
                chars.next();
            }
            '{' => {
                out.push((Token::Open, line));
                chars.next();
            }
            '}' => {
                out.push((Token::Close, line));
                chars.next();
            }
            '"' | '\'' => {
                let quote = c;
                let start = line;
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        Some(c) if c == quote => break,
                        Some('\n') => {
                            line += 1;
                            word.push('\n');
                        }
                        Some(c) => word.push(c),
                        None => return Err(SrsError { line: start, message: format!("the quote {quote} opened here is never closed") }),
                    }
                }
                out.push((Token::Word(word), start));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, ';' | '{' | '}' | '#') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push((Token::Word(word), line));
            }
        }
    }
    Ok(out)
}

/// Reads SRS configuration text.
pub fn parse(text: &str) -> Result<Vec<Directive>, SrsError> {
    let tokens = tokens(text)?;
    let mut at = 0;
    let directives = block(&tokens, &mut at, None)?;
    Ok(directives)
}

fn block(tokens: &[(Token, usize)], at: &mut usize, opened: Option<usize>) -> Result<Vec<Directive>, SrsError> {
    let mut out = Vec::new();
    loop {
        let Some((token, line)) = tokens.get(*at) else {
            return match opened {
                Some(line) => Err(SrsError { line, message: "the block opened here is never closed (a `}` is missing)".into() }),
                None => Ok(out),
            };
        };
        let line = *line;
        match token {
            Token::Close => {
                *at += 1;
                return match opened {
                    Some(_) => Ok(out),
                    None => Err(SrsError { line, message: "a `}` closes no block".into() }),
                };
            }
            Token::Semicolon => return Err(SrsError { line, message: "a `;` ends no directive".into() }),
            Token::Open => return Err(SrsError { line, message: "a block `{` has no directive name before it".into() }),
            Token::Word(name) => {
                *at += 1;
                let mut args = Vec::new();
                loop {
                    match tokens.get(*at) {
                        Some((Token::Word(arg), _)) => {
                            args.push(arg.clone());
                            *at += 1;
                        }
                        Some((Token::Semicolon, _)) => {
                            *at += 1;
                            out.push(Directive { name: name.clone(), args, line, block: None });
                            break;
                        }
                        Some((Token::Open, open_line)) => {
                            let open_line = *open_line;
                            *at += 1;
                            let inner = block(tokens, at, Some(open_line))?;
                            out.push(Directive { name: name.clone(), args, line, block: Some(inner) });
                            break;
                        }
                        Some((Token::Close, close_line)) => return Err(SrsError { line: *close_line, message: format!("`{name}` on line {line} is not ended with `;`") }),
                        None => return Err(SrsError { line, message: format!("`{name}` is not ended with `;`") }),
                    }
                }
            }
        }
    }
}

/// The directive paths Estuary applies, as SRS names them (`vhost.` is a directive of
/// `vhost __defaultVhost__`), with what each sets. The `SRS_*` variables are these paths in
/// capitals with `_` for `.` (see [`env_name`]).
pub const SUPPORTED: &[(&str, &str)] = &[
    ("listen", "rtmp.listen (the first address)"),
    ("chunk_size", "rtmp.chunk_size"),
    ("max_connections", "node.max_connections"),
    ("srs_log_level", "log.level (verbose: trace, info: debug, trace: info, warn, error)"),
    ("srs_log_level_v2", "log.level (trace, debug, info, warn, error)"),
    ("srs_log_tank", "console only (logs go to standard error)"),
    ("daemon", "off only (run Estuary under a supervisor)"),
    ("http_api.enabled", "on only (the API is always served)"),
    ("http_api.listen", "api.listen"),
    ("http_api.crossdomain", "on only"),
    ("http_api.auth.enabled", "with username and password: api.username, api.password"),
    ("http_api.auth.username", "api.username"),
    ("http_api.auth.password", "api.password"),
    ("http_api.raw_api.enabled", "api.allow_reload (with allow_reload)"),
    ("http_api.raw_api.allow_reload", "api.allow_reload (with raw_api.enabled)"),
    ("http_server.enabled", "on only (HTTP-FLV/TS, HLS and DASH are always served)"),
    ("http_server.listen", "http.listen"),
    ("http_server.crossdomain", "on only"),
    ("http_server.https.enabled", "https.listen when on"),
    ("http_server.https.listen", "https.listen (port)"),
    ("http_server.https.key", "https.key_file"),
    ("http_server.https.cert", "https.cert_file"),
    ("http_api.https.enabled", "https.api_listen when on"),
    ("http_api.https.listen", "https.api_listen (port)"),
    ("http_api.https.key", "https.key_file (one certificate serves both)"),
    ("http_api.https.cert", "https.cert_file (one certificate serves both)"),
    ("rtmps.enabled", "rtmps.listen when on"),
    ("rtmps.listen", "rtmps.listen (port)"),
    ("rtmps.key", "https.key_file (one certificate serves HTTPS and RTMPS)"),
    ("rtmps.cert", "https.cert_file (one certificate serves HTTPS and RTMPS)"),
    ("rtc_server.enabled", "rtc.enabled"),
    ("rtc_server.listen", "rtc.listen (UDP port)"),
    ("rtc_server.candidate", "rtc.candidate ($NAME is read from the environment; * or an unset variable keeps the default)"),
    ("srt_server.enabled", "srt.enabled"),
    ("srt_server.listen", "srt.listen (UDP port)"),
    ("srt_server.latency", "srt.latency_ms and srt.peer_latency_ms"),
    ("srt_server.recvlatency", "srt.latency_ms"),
    ("srt_server.peerlatency", "srt.peer_latency_ms"),
    ("srt_server.passphrase", "srt.passphrase"),
    ("srt_server.peer_idle_timeout", "srt.peer_idle_timeout_ms"),
    ("srt_server.payloadsize", "srt.payload_size"),
    ("srt_server.default_app", "live only (SRT stream ids name their app)"),
    ("exporter.enabled", "metrics.listen is set when on"),
    ("exporter.listen", "metrics.listen (port)"),
    ("stream_caster.enabled", "gb28181.enabled (with caster gb28181)"),
    ("stream_caster.caster", "gb28181 only"),
    ("stream_caster.output", "gb28181.app (the app of rtmp://.../<app>/[stream])"),
    ("stream_caster.listen", "gb28181.media_listen (port)"),
    ("stream_caster.sip.enabled", "on only"),
    ("stream_caster.sip.listen", "gb28181.sip_listen (port)"),
    ("stream_caster.sip.serial", "gb28181.server_id"),
    ("stream_caster.sip.realm", "gb28181.realm"),
    ("vhost.chunk_size", "rtmp.chunk_size"),
    ("vhost.hls.enabled", "hls.enabled and hls.always (files from the publish on, as SRS)"),
    ("vhost.hls.hls_fragment", "hls.fragment_ms (seconds)"),
    ("vhost.hls.hls_window", "hls.window (seconds / hls_fragment)"),
    ("vhost.hls.hls_dispose", "hls.dispose_s"),
    ("vhost.hls.hls_wait_keyframe", "on only (segments start at keyframes)"),
    ("vhost.hls.hls_path", "served at SRS's URLs; files live under node.data_dir"),
    ("vhost.hls.hls_m3u8_file", "[app]/[stream].m3u8 only"),
    ("vhost.hls.hls_use_fmp4", "hls.fmp4"),
    ("vhost.http_remux.enabled", "on only (HTTP-FLV is always served)"),
    ("vhost.http_remux.mount", "[vhost]/[app]/[stream].flv only"),
    ("vhost.dash.enabled", "dash.enabled and dash.always (files from the publish on, as SRS)"),
    ("vhost.dash.dash_fragment", "dash.fragment_ms (seconds)"),
    ("vhost.dash.dash_timeshift", "dash.window (seconds / dash_fragment)"),
    ("vhost.dash.dash_path", "served at SRS's URLs; files live under node.data_dir"),
    ("vhost.dvr.enabled", "dvr.enabled"),
    ("vhost.dvr.dvr_apply", "dvr.apps (all, or the apps of the app/stream entries)"),
    ("vhost.dvr.dvr_plan", "dvr.plan (session or segment)"),
    ("vhost.dvr.dvr_duration", "dvr.segment_ms (seconds)"),
    ("vhost.dvr.dvr_wait_keyframe", "on only (files start at keyframes)"),
    ("vhost.dvr.dvr_path", "dvr.path from the first [variable] on, under dvr.dir; dvr.format mp4 for .mp4, else flv"),
    ("vhost.forward.enabled", "forward.apps.\"*\" when on"),
    ("vhost.forward.destination", "forward.apps.\"*\" (rtmp://<host:port>/[app]/[stream] each)"),
    ("vhost.forward.backend", "forward.backend"),
    ("vhost.http_hooks.enabled", "the hooks below when on"),
    ("vhost.http_hooks.on_connect", "hooks.on_connect"),
    ("vhost.http_hooks.on_close", "hooks.on_close"),
    ("vhost.http_hooks.on_publish", "hooks.on_publish"),
    ("vhost.http_hooks.on_unpublish", "hooks.on_unpublish"),
    ("vhost.http_hooks.on_play", "hooks.on_play"),
    ("vhost.http_hooks.on_stop", "hooks.on_stop"),
    ("vhost.http_hooks.on_dvr", "hooks.on_dvr"),
    ("vhost.http_hooks.on_hls", "hooks.on_hls"),
    ("vhost.rtc.enabled", "on only (rtc_server.enabled decides)"),
    ("vhost.rtc.rtmp_to_rtc", "on only (streams are always bridged)"),
    ("vhost.rtc.rtc_to_rtmp", "on only (streams are always bridged)"),
    ("vhost.rtc.pli_for_rtmp", "rtc.pli_interval_ms (seconds to ms)"),
    ("vhost.play.gop_cache", "stream.gop_cache"),
    ("vhost.play.gop_cache_max_frames", "stream.gop_cache_max_frames"),
    ("vhost.play.mw_latency", "stream.write_merge_ms"),
    ("vhost.publish.normal_timeout", "rtmp.publish_timeout_ms"),
    ("vhost.security.enabled", "the rules below when on (as in SRS, what no allow rule lets in is refused)"),
    ("vhost.security.allow", "auth.publish_allow / auth.play_allow (`allow publish|play all|<address>|<network>`)"),
    ("vhost.security.deny", "auth.publish_deny / auth.play_deny (`deny publish|play all|<address>|<network>`)"),
    ("vhost.ingest", "ingest.sources: `ingest <name> { enabled on; input { url <file or URL>; } engine { output rtmp://host/<app>/<stream>; } }` (published as it is)"),
    ("vhost.transcode", "transcode.apps: `transcode [<app>] { enabled on; engine <name> { vcodec; vbitrate; vheight; abitrate; output .../[stream]_<suffix>; } }`"),
];

/// Supported paths that only a file can set (blocks with names, or lists of rules).
fn file_only(path: &str) -> bool {
    ["vhost.security", "vhost.ingest", "vhost.transcode"].iter().any(|block| path == *block || path.starts_with(&format!("{block}.")) || path.starts_with(&format!("{block}{{")))
}

/// The `SRS_*` environment variable of a supported path.
pub fn env_name(path: &str) -> String {
    format!("SRS_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// The supported directives and their variables as a Markdown table (docs/SRS.md carries it;
/// `estuary --srs-table` prints it).
pub fn markdown_table() -> String {
    let mut out = String::from("| srs.conf directive | environment variable | Estuary setting |\n|---|---|---|\n");
    for (path, what) in SUPPORTED {
        let shown = match path.strip_prefix("vhost.") {
            Some(rest) => format!("vhost __defaultVhost__ {{ {} }}", rest.replace('.', " { ") + &" }".repeat(rest.matches('.').count())),
            None => path.replace('.', " { ") + &" }".repeat(path.matches('.').count()),
        };
        let variable = if file_only(path) { "(srs.conf only)".to_string() } else { format!("`{}`", env_name(path)) };
        out.push_str(&format!("| `{shown}` | {variable} | {what} |\n"));
    }
    out
}

/// What a configuration gives: the table of Estuary settings and a warning for each
/// directive not applied.
#[derive(Debug, Default)]
pub struct Mapped {
    pub table: toml::Table,
    pub warnings: Vec<String>,
    /// The environment, for SRS's `$NAME` values (`candidate $CANDIDATE`).
    pub vars: std::collections::HashMap<String, String>,
}

impl Mapped {
    fn set(&mut self, section: &str, key: &str, value: toml::Value) {
        let entry = self.table.entry(section.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = entry {
            t.insert(key.to_string(), value);
        }
    }

    fn set_in(&mut self, section: &str, sub: &str, key: &str, value: toml::Value) {
        let entry = self.table.entry(section.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = entry {
            let inner = t.entry(sub.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = inner {
                inner.insert(key.to_string(), value);
            }
        }
    }

    fn warn(&mut self, origin: &Origin, path: &str, why: &str) {
        self.warnings.push(format!("{}: `{path}` {why}", origin.describe()));
    }
}

/// Where a directive came from, for messages.
enum Origin<'a> {
    Line(&'a str, usize),
    Env(&'a str),
}

impl Origin<'_> {
    fn describe(&self) -> String {
        match self {
            Origin::Line(file, line) => format!("{file} line {line}"),
            Origin::Env(name) => format!("environment variable {name}"),
        }
    }
}

/// SRS's defaults where they differ from Estuary's, for a node configured by an srs.conf:
/// what the file does not turn on stays off (HLS, WebRTC, SRT, GB28181), and DVR and HLS
/// segment as SRS does. The API and the HTTP server are always on in Estuary.
fn srs_defaults(mapped: &mut Mapped) {
    use toml::Value as V;
    srs_vhost_defaults(mapped);
    mapped.set("rtc", "enabled", V::Boolean(false));
    mapped.set("srt", "enabled", V::Boolean(false));
    mapped.set("gb28181", "enabled", V::Boolean(false));
    // SRS serves /api/v1/raw?rpc=reload only with raw_api { enabled on; allow_reload on; }.
    mapped.set("api", "allow_reload", V::Boolean(false));
}

/// SRS's defaults of a vhost's HLS, DASH and DVR: off, SRS's fragment lengths, session DVR.
fn srs_vhost_defaults(mapped: &mut Mapped) {
    use toml::Value as V;
    mapped.set("hls", "enabled", V::Boolean(false));
    mapped.set("hls", "fragment_ms", V::Integer(10_000));
    mapped.set("hls", "window", V::Integer(6));
    mapped.set("dash", "enabled", V::Boolean(false));
    mapped.set("dash", "fragment_ms", V::Integer(30_000));
    mapped.set("dvr", "enabled", V::Boolean(false));
    mapped.set("dvr", "plan", V::String("session".into()));
    mapped.set("dvr", "segment_ms", V::Integer(30_000));
}

/// Maps parsed SRS directives (from `file`, for messages) onto `mapped`, over SRS's defaults.
/// Call [`map_env`] next if there are `SRS_*` variables, then [`finish`].
pub fn map_file(mapped: &mut Mapped, directives: &[Directive], file: &str) -> Result<(), SrsError> {
    srs_defaults(mapped);
    let mut flat = Vec::new();
    flatten(directives, "", &mut flat);
    for d in directives.iter().filter(|d| d.name == "vhost") {
        let name = d.args.first().cloned().unwrap_or_default();
        if name != "__defaultVhost__" {
            named_vhost(mapped, d, &name, file)?;
        }
    }
    for d in directives.iter().filter(|d| d.name == "vhost" && d.args.first().is_some_and(|v| v == "__defaultVhost__")) {
        for inner in d.block.iter().flatten() {
            match inner.name.as_str() {
                "security" => security(mapped, inner, file)?,
                "ingest" => ingest(mapped, inner, file)?,
                "transcode" => transcode(mapped, inner, file)?,
                _ => {}
            }
        }
    }
    let mut casters = 0;
    for (path, args, line, vhost) in flat {
        if vhost.as_deref().is_some_and(|v| v != "__defaultVhost__") || file_only(&path) {
            continue;
        }
        if path == "stream_caster{}" {
            casters += 1;
            if casters > 1 {
                mapped.warnings.push(format!("{file} line {line}: a second stream_caster block is not applied (Estuary runs one GB28181 caster)"));
            }
        }
        if casters > 1 && path.starts_with("stream_caster.") {
            continue;
        }
        apply(mapped, &Origin::Line(file, line), &path, &args)?;
    }
    Ok(())
}

/// Directive paths with their arguments, line and vhost (for directives inside a vhost, the
/// path starts `vhost.`).
fn flatten(directives: &[Directive], prefix: &str, out: &mut Vec<(String, Vec<String>, usize, Option<String>)>) {
    for d in directives {
        let path = if prefix.is_empty() { d.name.clone() } else { format!("{prefix}.{}", d.name) };
        match &d.block {
            Some(inner) if d.name == "vhost" && prefix.is_empty() => {
                let name = d.args.first().cloned().unwrap_or_default();
                let mut inner_flat = Vec::new();
                flatten(inner, "vhost", &mut inner_flat);
                out.extend(inner_flat.into_iter().map(|(p, a, l, _)| (p, a, l, Some(name.clone()))));
            }
            Some(inner) => {
                // A block's own arguments (ingest <name>, engine <name>) and its contents.
                out.push((format!("{path}{{}}"), d.args.clone(), d.line, None));
                flatten(inner, &path, out);
            }
            None => out.push((path, d.args.clone(), d.line, None)),
        }
    }
}

/// Maps the `SRS_*` variables among `env` onto `mapped` (after a file, before `ESTUARY_*`).
/// An empty variable counts as unset.
pub fn map_env(mapped: &mut Mapped, env: &[(String, String)]) -> Result<(), SrsError> {
    for (name, value) in env {
        let Some(_) = name.strip_prefix("SRS_") else { continue };
        if value.trim().is_empty() {
            continue;
        }
        match SUPPORTED.iter().find(|(path, _)| env_name(path) == *name) {
            Some((path, _)) if file_only(path) => mapped.warnings.push(format!("environment variable {name}: `{path}` is read from an srs.conf only (its rules or blocks have names); ignored")),
            Some((path, _)) => {
                let args: Vec<String> = value.split_whitespace().map(str::to_string).collect();
                apply(mapped, &Origin::Env(name), path, &args)?;
            }
            None => mapped.warnings.push(format!("environment variable {name} is not an SRS setting Estuary applies; ignored")),
        }
    }
    Ok(())
}

fn on_off(origin: &Origin, path: &str, args: &[String]) -> Result<bool, SrsError> {
    match args.first().map(String::as_str) {
        Some("on") | Some("true") => Ok(true),
        Some("off") | Some("false") => Ok(false),
        other => Err(error(origin, format!("`{path}` takes on or off, not {}", other.unwrap_or("nothing")))),
    }
}

fn error(origin: &Origin, message: String) -> SrsError {
    match origin {
        Origin::Line(_, line) => SrsError { line: *line, message },
        Origin::Env(name) => SrsError { line: 0, message: format!("{name}: {message}") },
    }
}

fn one<'a>(origin: &Origin, path: &str, args: &'a [String]) -> Result<&'a str, SrsError> {
    args.first().map(String::as_str).ok_or_else(|| error(origin, format!("`{path}` needs a value")))
}

fn number(origin: &Origin, path: &str, args: &[String]) -> Result<f64, SrsError> {
    let raw = one(origin, path, args)?;
    raw.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| error(origin, format!("`{path}` takes a number, not {raw}")))
}

/// SRS's `listen` values: a port, or an address with a port. The first is used.
fn address(origin: &Origin, path: &str, args: &[String], mapped: &mut Mapped) -> Result<String, SrsError> {
    let raw = one(origin, path, args)?;
    if args.len() > 1 {
        mapped.warn(origin, path, &format!("lists {} addresses; Estuary listens on the first, {raw}", args.len()));
    }
    if let Ok(port) = raw.parse::<u16>() {
        return Ok(format!("0.0.0.0:{port}"));
    }
    match raw.parse::<std::net::SocketAddr>() {
        Ok(addr) => Ok(addr.to_string()),
        Err(_) => Err(error(origin, format!("`{path}` takes a port or an address with a port, not {raw}"))),
    }
}

/// Values a directive is accepted with when it only restates what Estuary does anyway.
fn only(mapped: &mut Mapped, origin: &Origin, path: &str, args: &[String], accepted: &[&str], what: &str) {
    let value = args.join(" ");
    if !accepted.contains(&value.as_str()) {
        mapped.warn(origin, path, &format!("is {value}, which Estuary does not do ({what}); ignored"));
    }
}

/// Which TLS listener an SRS directive configures: the HTTP server's, the API's or RTMPS.
fn srs_tls_server(path: &str) -> &'static str {
    if path.starts_with("http_api") {
        "api"
    } else if path.starts_with("rtmps") {
        "rtmps"
    } else {
        "http"
    }
}

fn apply(mapped: &mut Mapped, origin: &Origin, path: &str, args: &[String]) -> Result<(), SrsError> {
    use toml::Value as V;
    let ms = |seconds: f64| V::Integer((seconds * 1000.0).round() as i64);
    match path {
        "listen" => {
            let addr = address(origin, path, args, mapped)?;
            mapped.set("rtmp", "listen", V::String(addr));
        }
        "chunk_size" | "vhost.chunk_size" => mapped.set("rtmp", "chunk_size", V::Integer(number(origin, path, args)? as i64)),
        "max_connections" => mapped.set("node", "max_connections", V::Integer(number(origin, path, args)? as i64)),
        "srs_log_level_v2" => {
            let level = match one(origin, path, args)? {
                level @ ("trace" | "debug" | "info" | "warn" | "error") => level,
                other => return Err(error(origin, format!("`{path}` is one of trace, debug, info, warn, error, not {other}"))),
            };
            mapped.set("log", "level", V::String(level.into()));
        }
        "srs_log_level" => {
            let level = match one(origin, path, args)? {
                "verbose" => "trace",
                "info" => "debug",
                "trace" => "info",
                "warn" => "warn",
                "error" => "error",
                other => return Err(error(origin, format!("`{path}` is one of verbose, info, trace, warn, error, not {other}"))),
            };
            mapped.set("log", "level", V::String(level.into()));
        }
        "srs_log_tank" => only(mapped, origin, path, args, &["console"], "logs go to standard error"),
        "daemon" => only(mapped, origin, path, args, &["off"], "it does not daemonize; run it under systemd, Docker or another supervisor"),
        "http_api.enabled" | "http_server.enabled" | "vhost.http_remux.enabled" | "stream_caster.sip.enabled" | "vhost.rtc.enabled" | "vhost.rtc.rtmp_to_rtc" | "vhost.rtc.rtc_to_rtmp" | "vhost.hls.hls_wait_keyframe" | "vhost.dvr.dvr_wait_keyframe" => {
            only(mapped, origin, path, args, &["on"], "this is always on")
        }
        "http_api.crossdomain" | "http_server.crossdomain" => only(mapped, origin, path, args, &["on"], "CORS headers are always sent"),
        "http_api.listen" => {
            let addr = address(origin, path, args, mapped)?;
            mapped.set("api", "listen", V::String(addr));
        }
        "http_api.auth.enabled" => mapped.set_in("api", "_srs", "enabled", V::Boolean(on_off(origin, path, args)?)),
        "http_api.auth.username" => mapped.set_in("api", "_srs", "username", V::String(one(origin, path, args)?.into())),
        "http_api.auth.password" => mapped.set_in("api", "_srs", "password", V::String(one(origin, path, args)?.into())),
        "http_api.raw_api.enabled" => mapped.set_in("api", "_srs", "raw_api", V::Boolean(on_off(origin, path, args)?)),
        "http_api.raw_api.allow_reload" => mapped.set_in("api", "_srs", "allow_reload", V::Boolean(on_off(origin, path, args)?)),
        p @ ("http_server.https.enabled" | "http_api.https.enabled" | "rtmps.enabled") => {
            let server = srs_tls_server(p);
            mapped.set_in("https", "_srs", &format!("{server}_enabled"), V::Boolean(on_off(origin, path, args)?));
        }
        p @ ("http_server.https.listen" | "http_api.https.listen" | "rtmps.listen") => {
            let server = srs_tls_server(p);
            let addr = address(origin, path, args, mapped)?;
            mapped.set_in("https", "_srs", &format!("{server}_listen"), V::String(addr));
        }
        p @ ("http_server.https.key" | "http_server.https.cert" | "http_api.https.key" | "http_api.https.cert" | "rtmps.key" | "rtmps.cert") => {
            // Kept per server (a variable after the file replaces it); one pair is chosen once
            // everything is read.
            let server = srs_tls_server(p);
            let file = if p.ends_with(".key") { "key" } else { "cert" };
            mapped.set_in("https", "_srs", &format!("{server}_{file}"), V::String(one(origin, path, args)?.to_string()));
        }
        "http_server.listen" => {
            let addr = address(origin, path, args, mapped)?;
            mapped.set("http", "listen", V::String(addr));
        }
        "rtc_server.enabled" => mapped.set("rtc", "enabled", V::Boolean(on_off(origin, path, args)?)),
        "rtc_server.listen" => {
            let addr = address(origin, path, args, mapped)?;
            mapped.set("rtc", "listen", V::String(addr));
        }
        "rtc_server.candidate" => {
            // SRS reads `$NAME` from the environment (Docker: -e CANDIDATE=<ip>); `*` or an
            // unset variable keeps Estuary's default.
            let raw = one(origin, path, args)?;
            let candidate = match raw.strip_prefix('$') {
                Some(name) => mapped.vars.get(name).cloned().filter(|v| !v.is_empty()),
                None => Some(raw.to_string()).filter(|c| c != "*"),
            };
            if let Some(candidate) = candidate {
                mapped.set("rtc", "candidate", V::String(candidate));
            }
        }
        "srt_server.enabled" => mapped.set("srt", "enabled", V::Boolean(on_off(origin, path, args)?)),
        "srt_server.listen" => {
            let addr = address(origin, path, args, mapped)?;
            mapped.set("srt", "listen", V::String(addr));
        }
        "srt_server.latency" => {
            // SRT's LATENCY is the receive and the peer latency at once.
            let ms = number(origin, path, args)? as i64;
            mapped.set("srt", "latency_ms", V::Integer(ms));
            mapped.set("srt", "peer_latency_ms", V::Integer(ms));
        }
        "srt_server.recvlatency" => mapped.set("srt", "latency_ms", V::Integer(number(origin, path, args)? as i64)),
        "srt_server.peerlatency" => mapped.set("srt", "peer_latency_ms", V::Integer(number(origin, path, args)? as i64)),
        "srt_server.passphrase" => mapped.set("srt", "passphrase", V::String(one(origin, path, args)?.into())),
        "srt_server.peer_idle_timeout" => mapped.set("srt", "peer_idle_timeout_ms", V::Integer(number(origin, path, args)? as i64)),
        "srt_server.payloadsize" => mapped.set("srt", "payload_size", V::Integer(number(origin, path, args)? as i64)),
        "srt_server.default_app" => only(mapped, origin, path, args, &["live"], "a stream id without an app plays from live"),
        "exporter.enabled" => {
            if on_off(origin, path, args)? {
                mapped.set_in("metrics", "_srs", "enabled", V::Boolean(true));
            }
        }
        "exporter.listen" => {
            let addr = address(origin, path, args, mapped)?;
            mapped.set_in("metrics", "_srs", "listen", V::String(addr));
        }
        "stream_caster.enabled" => mapped.set_in("gb28181", "_srs", "enabled", V::Boolean(on_off(origin, path, args)?)),
        "stream_caster.caster" => mapped.set_in("gb28181", "_srs", "caster", V::String(one(origin, path, args)?.into())),
        "stream_caster.output" => {
            // rtmp://127.0.0.1[:port]/<app>/[stream]: Estuary publishes into <app> itself.
            let output = one(origin, path, args)?;
            let app = output.split("://").nth(1).and_then(|rest| rest.split('/').nth(1)).filter(|a| !a.is_empty() && !a.contains('['));
            match app {
                Some(app) => mapped.set_in("gb28181", "_srs", "app", V::String(app.split('?').next().unwrap_or(app).into())),
                None => mapped.warn(origin, path, &format!("is {output}; Estuary needs rtmp://<host>/<app>/[stream] to know the app; the default app is used")),
            }
        }
        "stream_caster.listen" => {
            let addr = address(origin, path, args, mapped)?;
            mapped.set_in("gb28181", "_srs", "media_listen", V::String(addr));
        }
        "stream_caster.sip.listen" => {
            let addr = address(origin, path, args, mapped)?;
            mapped.set_in("gb28181", "_srs", "sip_listen", V::String(addr));
        }
        "stream_caster.sip.serial" => mapped.set_in("gb28181", "_srs", "server_id", V::String(one(origin, path, args)?.into())),
        "stream_caster.sip.realm" => mapped.set_in("gb28181", "_srs", "realm", V::String(one(origin, path, args)?.into())),
        "vhost.hls.enabled" => {
            // SRS writes HLS files from the publish on: the drop-in does the same.
            let on = on_off(origin, path, args)?;
            mapped.set("hls", "enabled", V::Boolean(on));
            mapped.set("hls", "always", V::Boolean(on));
        }
        "vhost.hls.hls_fragment" => mapped.set("hls", "fragment_ms", ms(number(origin, path, args)?)),
        "vhost.rtc.pli_for_rtmp" => mapped.set("rtc", "pli_interval_ms", ms(number(origin, path, args)?)),
        "vhost.hls.hls_window" => mapped.set_in("hls", "_srs", "window_s", V::Float(number(origin, path, args)?)),
        "vhost.hls.hls_dispose" => mapped.set("hls", "dispose_s", V::Integer(number(origin, path, args)? as i64)),
        "vhost.hls.hls_use_fmp4" => mapped.set("hls", "fmp4", V::Boolean(on_off(origin, path, args)?)),
        "vhost.hls.hls_path" | "vhost.dash.dash_path" => {
            mapped.warn(origin, path, "is not applied: Estuary keeps these files under node.data_dir and serves them at SRS's URLs (http://host:8080/<app>/<stream>.m3u8, .mpd)")
        }
        "vhost.hls.hls_m3u8_file" => only(mapped, origin, path, args, &["[app]/[stream].m3u8"], "playlists are [app]/[stream].m3u8"),
        "vhost.http_remux.mount" => only(mapped, origin, path, args, &["[vhost]/[app]/[stream].flv", "[app]/[stream].flv"], "HTTP-FLV is served at /<app>/<stream>.flv"),
        "vhost.dash.enabled" => {
            let on = on_off(origin, path, args)?;
            mapped.set("dash", "enabled", V::Boolean(on));
            mapped.set("dash", "always", V::Boolean(on));
        }
        "vhost.dash.dash_fragment" => mapped.set("dash", "fragment_ms", ms(number(origin, path, args)?)),
        "vhost.dash.dash_timeshift" => mapped.set_in("dash", "_srs", "window_s", V::Float(number(origin, path, args)?)),
        "vhost.dvr.enabled" => mapped.set("dvr", "enabled", V::Boolean(on_off(origin, path, args)?)),
        "vhost.dvr.dvr_apply" => {
            if args.iter().any(|a| a == "all") {
                mapped.set("dvr", "apps", V::Array(Vec::new()));
            } else {
                let mut apps: Vec<String> = args.iter().map(|a| a.split('/').next().unwrap_or(a).to_string()).collect();
                apps.sort();
                apps.dedup();
                if args.iter().any(|a| a.contains('/')) {
                    mapped.warn(origin, path, "names streams; Estuary records whole apps, so every stream of those apps is recorded");
                }
                mapped.set("dvr", "apps", V::Array(apps.into_iter().map(V::String).collect()));
            }
        }
        "vhost.dvr.dvr_plan" => {
            let plan = one(origin, path, args)?;
            if plan != "session" && plan != "segment" {
                return Err(error(origin, format!("`{path}` is session or segment, not {plan}")));
            }
            mapped.set("dvr", "plan", V::String(plan.into()));
        }
        "vhost.dvr.dvr_duration" => mapped.set("dvr", "segment_ms", ms(number(origin, path, args)?)),
        "vhost.dvr.dvr_path" => {
            let raw = one(origin, path, args)?;
            let (relative, format) = dvr_path(raw);
            if !raw.contains('[') {
                mapped.warn(origin, path, &format!("names no file pattern; files are written as {relative} under dvr.dir"));
            } else if !raw.starts_with(&relative) {
                mapped.warn(origin, path, &format!("is {raw}; files are written as {relative} under dvr.dir (node.data_dir/dvr by default)"));
            }
            mapped.set("dvr", "path", V::String(relative));
            mapped.set("dvr", "format", V::String(format.into()));
        }
        "vhost.forward.enabled" => mapped.set_in("forward", "_srs", "enabled", V::Boolean(on_off(origin, path, args)?)),
        "vhost.forward.destination" => {
            let urls: Vec<V> = args.iter().map(|d| V::String(if d.contains("://") { d.clone() } else { format!("rtmp://{d}/[app]/[stream]") })).collect();
            mapped.set_in("forward", "_srs", "destination", V::Array(urls));
        }
        "vhost.forward.backend" => mapped.set("forward", "backend", V::String(one(origin, path, args)?.into())),
        "vhost.http_hooks.enabled" => mapped.set_in("hooks", "_srs", "enabled", V::Boolean(on_off(origin, path, args)?)),
        p if p.starts_with("vhost.http_hooks.on_") && SUPPORTED.iter().any(|(s, _)| *s == p) => {
            let event = &p["vhost.http_hooks.".len()..];
            mapped.set_in("hooks", "_srs", event, V::Array(args.iter().cloned().map(V::String).collect()));
        }
        "vhost.play.gop_cache" => mapped.set("stream", "gop_cache", V::Boolean(on_off(origin, path, args)?)),
        "vhost.play.gop_cache_max_frames" => mapped.set("stream", "gop_cache_max_frames", V::Integer(number(origin, path, args)? as i64)),
        "vhost.play.mw_latency" => mapped.set("stream", "write_merge_ms", V::Integer(number(origin, path, args)? as i64)),
        "vhost.publish.normal_timeout" => mapped.set("rtmp", "publish_timeout_ms", V::Integer(number(origin, path, args)? as i64)),
        // A block's own line (its contents are mapped one by one).
        p if p.ends_with("{}") => {
            let name = &p[..p.len() - 2];
            let known_block = SUPPORTED.iter().any(|(s, _)| s.starts_with(&format!("{name}.")));
            if !known_block {
                mapped.warn(origin, name, "is not applied by Estuary (configure it in Estuary's TOML: see docs/SRS.md); its directives are ignored");
                return Ok(());
            }
        }
        _ => {
            // Inside a block that is not applied as a whole, one warning for the block is
            // enough.
            let parent_unknown = path.rsplit_once('.').is_some_and(|(parent, _)| parent != "vhost" && !SUPPORTED.iter().any(|(s, _)| s.starts_with(&format!("{parent}."))));
            if !parent_unknown {
                mapped.warn(origin, path, "is not applied by Estuary; ignored");
            }
        }
    }
    Ok(())
}

/// The sections a named vhost has of its own in Estuary (`vhosts.<name>.<section>`).
const VHOST_SECTIONS: [&str; 5] = ["hls", "dash", "dvr", "forward", "hooks"];

/// A named vhost (`vhost example.com { ... }`): its HLS, DASH, DVR, forward and hooks become
/// `vhosts."example.com"`, from SRS's defaults as a vhost of SRS starts from (what it does
/// not turn on is off; no hooks or forwards unless it has them). What Estuary keeps node-wide
/// (play, publish, chunk_size) and the blocks read for the default vhost only are warned about.
fn named_vhost(mapped: &mut Mapped, vhost: &Directive, name: &str, file: &str) -> Result<(), SrsError> {
    use toml::Value as V;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
        return Err(SrsError { line: vhost.line, message: format!("vhost {name:?} is not a host name") });
    }
    let mut own = Mapped { vars: mapped.vars.clone(), ..Default::default() };
    srs_vhost_defaults(&mut own);
    let mut flat = Vec::new();
    flatten(vhost.block.as_deref().unwrap_or_default(), "vhost", &mut flat);
    for (path, args, line, _) in flat {
        if file_only(&path) {
            // One warning per block (its own line), none for what is inside.
            if let Some(block) = path.strip_suffix("{}").filter(|b| b.matches('.').count() == 1) {
                own.warnings.push(format!("{file} line {line}: vhost {name}: `{block}` is applied in __defaultVhost__ only; ignored"));
            }
            continue;
        }
        apply(&mut own, &Origin::Line(file, line), &path, &args)?;
        // What a directive set outside the vhost's own sections is node-wide in Estuary.
        let node_wide: Vec<String> = own.table.keys().filter(|k| !VHOST_SECTIONS.contains(&k.as_str())).cloned().collect();
        for section in node_wide {
            if let Some(V::Table(keys)) = own.table.remove(&section) {
                for key in keys.keys().filter(|k| *k != "_srs") {
                    own.warnings.push(format!("{file} line {line}: vhost {name}: `{path}` sets {section}.{key}, one setting for the whole node in Estuary (set it in __defaultVhost__); ignored here"));
                }
            }
        }
    }
    finish(&mut own);
    mapped.warnings.extend(own.warnings);
    // No forwards and no hooks unless the vhost has its own (not the node's).
    for section in ["forward", "hooks"] {
        own.table.entry(section).or_insert_with(|| V::Table(toml::Table::new()));
    }
    for section in VHOST_SECTIONS {
        if let Some(value) = own.table.remove(section) {
            mapped.set_in("vhosts", name, section, value);
        }
    }
    Ok(())
}

/// The directives of `block` with their arguments and lines (one level).
fn children(block: &Directive) -> impl Iterator<Item = &Directive> {
    block.block.iter().flatten()
}

fn child<'a>(block: &'a Directive, name: &str) -> Option<&'a Directive> {
    children(block).find(|d| d.name == name)
}

fn enabled(block: &Directive, file: &str) -> Result<bool, SrsError> {
    match child(block, "enabled") {
        Some(d) => on_off(&Origin::Line(file, d.line), &format!("{}.enabled", block.name), &d.args),
        None => Ok(false),
    }
}

/// `security { enabled on; allow|deny publish|play all|<ip>; }`: SRS refuses what no allow
/// rule lets in, and a deny rule wins over an allow rule.
fn security(mapped: &mut Mapped, block: &Directive, file: &str) -> Result<(), SrsError> {
    use toml::Value as V;
    if !enabled(block, file)? {
        return Ok(());
    }
    let everyone = || vec![V::String("0.0.0.0/0".into()), V::String("::/0".into())];
    for action in ["publish", "play"] {
        let (mut allow, mut deny, mut allow_all, mut allow_rules) = (Vec::new(), Vec::new(), false, 0);
        for rule in children(block).filter(|d| d.name == "allow" || d.name == "deny") {
            let origin = Origin::Line(file, rule.line);
            let (Some(what), Some(who)) = (rule.args.first(), rule.args.get(1)) else {
                return Err(error(&origin, format!("`{}` takes publish or play and all or an address, as in `{} play all;`", rule.name, rule.name)));
            };
            if what != "publish" && what != "play" {
                return Err(error(&origin, format!("`{}` applies to publish or play, not {what}", rule.name)));
            }
            if what != action {
                continue;
            }
            if who != "all" && estuary_actors::access::auth::Cidr::parse(who).is_err() {
                return Err(error(&origin, format!("`{} {what} {who}`: {who} is not all, an address or a network", rule.name)));
            }
            match (rule.name.as_str(), who.as_str()) {
                ("allow", "all") => {
                    allow_rules += 1;
                    allow_all = true;
                }
                ("allow", who) => {
                    allow_rules += 1;
                    allow.push(V::String(who.into()));
                }
                (_, "all") => deny.extend(everyone()),
                (_, who) => deny.push(V::String(who.into())),
            }
        }
        if allow_rules == 0 {
            // Enabled with no allow rule for the action: nobody may.
            deny = everyone();
        }
        mapped.set("auth", &format!("{action}_allow"), V::Array(if allow_all { Vec::new() } else { allow }));
        mapped.set("auth", &format!("{action}_deny"), V::Array(deny));
    }
    Ok(())
}

/// `app/stream` of an RTMP output URL such as `rtmp://127.0.0.1:[port]/live?vhost=[vhost]/livestream`.
fn output_stream(output: &str) -> Option<(String, String)> {
    let rest = output.strip_prefix("rtmp://")?.split_once('/')?.1;
    let parts: Vec<&str> = rest.split('/').collect();
    let app = parts.first()?.split('?').next()?;
    let stream = parts.last()?.split('?').next()?;
    (parts.len() >= 2 && !app.is_empty() && !stream.is_empty()).then(|| (app.to_string(), stream.to_string()))
}

/// `ingest <name> { enabled on; input { type file|stream; url ...; } engine { output ...; } }`.
fn ingest(mapped: &mut Mapped, block: &Directive, file: &str) -> Result<(), SrsError> {
    use toml::Value as V;
    let name = block.args.first().cloned().unwrap_or_default();
    let origin = Origin::Line(file, block.line);
    if !enabled(block, file)? {
        return Ok(());
    }
    let input = child(block, "input");
    let url = input.and_then(|i| child(i, "url")).and_then(|u| u.args.first()).cloned();
    let kind = input.and_then(|i| child(i, "type")).and_then(|t| t.args.first()).map(String::as_str).unwrap_or("file");
    let Some(url) = url else {
        return Err(error(&origin, format!("ingest {name} has no input {{ url ...; }}")));
    };
    if kind == "device" {
        mapped.warn(&origin, &format!("ingest {name}"), "reads a capture device, which Estuary does not; not started");
        return Ok(());
    }
    let engines: Vec<&Directive> = children(block).filter(|d| d.name == "engine").collect();
    let output = engines.iter().find_map(|e| child(e, "output").and_then(|o| o.args.first()).cloned());
    let Some((app, stream)) = output.as_deref().and_then(output_stream).filter(|(a, s)| !a.contains('[') && !s.contains('[')) else {
        mapped.warn(&origin, &format!("ingest {name}"), &format!("has output {:?}; Estuary needs rtmp://<host>/<app>/<stream> to know the stream; not started", output.unwrap_or_default()));
        return Ok(());
    };
    for engine in engines {
        let transcodes = enabled(engine, file)? && child(engine, "vcodec").and_then(|v| v.args.first()).is_some_and(|c| c != "copy");
        if transcodes {
            mapped.warn(&Origin::Line(file, engine.line), &format!("ingest {name} engine"), "transcodes; Estuary publishes the input as it is (add a transcode ladder for renditions)");
        }
    }
    mapped.set_in("ingest", "sources", &format!("{app}/{stream}"), V::String(url));
    Ok(())
}

/// `transcode [<app>] { enabled on; ffmpeg ...; engine <name> { ... } }`: each enabled engine
/// is a rendition of the app's ladder, named by what its output adds after `[stream]`.
fn transcode(mapped: &mut Mapped, block: &Directive, file: &str) -> Result<(), SrsError> {
    use toml::Value as V;
    let origin = Origin::Line(file, block.line);
    if !enabled(block, file)? {
        return Ok(());
    }
    let scope = block.args.first().cloned().unwrap_or_default();
    let app = match scope.split_once('/') {
        Some((app, stream)) => {
            mapped.warn(&origin, &format!("transcode {scope}"), &format!("names the stream {stream}; Estuary's ladders are per app, so every stream of {app} is transcoded"));
            app.to_string()
        }
        None if scope.is_empty() => "*".to_string(),
        None => scope.clone(),
    };
    if let Some(ffmpeg) = child(block, "ffmpeg").and_then(|f| f.args.first()) {
        if std::path::Path::new(ffmpeg).is_file() {
            mapped.set("transcode", "ffmpeg", V::String(ffmpeg.clone()));
        } else {
            mapped.warn(&origin, "transcode.ffmpeg", &format!("{ffmpeg} is not a file here; ffmpeg is run from PATH"));
        }
    }
    let mut ladder = Vec::new();
    for engine in children(block).filter(|d| d.name == "engine") {
        let engine_name = engine.args.first().cloned().unwrap_or_default();
        let at = Origin::Line(file, engine.line);
        if !enabled(engine, file)? {
            continue;
        }
        let value = |name: &str| child(engine, name).and_then(|d| d.args.first()).cloned();
        let number_of = |name: &str| -> Result<Option<u32>, SrsError> {
            match child(engine, name) {
                Some(d) => Ok(Some(number(&Origin::Line(file, d.line), &format!("engine.{name}"), &d.args)? as u32)),
                None => Ok(None),
            }
        };
        let output = value("output").unwrap_or_default();
        let last = output.rsplit('/').next().unwrap_or("").split('?').next().unwrap_or("").replace("[engine]", &engine_name);
        let Some(suffix) = last.strip_prefix("[stream]").filter(|s| !s.is_empty() && !s.contains('[')) else {
            mapped.warn(&at, &format!("transcode engine {engine_name}"), &format!("has output {output:?}; Estuary publishes renditions as [stream]<suffix> in the same app; not applied"));
            continue;
        };
        let codec = match value("vcodec").as_deref() {
            Some("libx264") | None => "h264",
            Some("libx265") => "h265",
            Some("copy") => "copy",
            Some(other) => {
                mapped.warn(&at, &format!("transcode engine {engine_name}"), &format!("has vcodec {other}; Estuary encodes libx264, libx265 or copies; not applied"));
                continue;
            }
        };
        let mut rendition = toml::Table::new();
        rendition.insert("suffix".into(), V::String(suffix.to_string()));
        rendition.insert("codec".into(), V::String(codec.into()));
        rendition.insert("video_kbps".into(), V::Integer(number_of("vbitrate")?.unwrap_or(1000) as i64));
        if let Some(height) = number_of("vheight")?.filter(|h| *h > 0) {
            rendition.insert("height".into(), V::Integer(height as i64));
        }
        if let Some(audio) = number_of("abitrate")?.filter(|a| *a > 0) {
            rendition.insert("audio_kbps".into(), V::Integer(audio as i64));
        }
        let ignored: Vec<&str> = children(engine).map(|d| d.name.as_str()).filter(|n| !["enabled", "vcodec", "vbitrate", "vheight", "abitrate", "acodec", "output", "iformat", "oformat"].contains(n)).collect();
        if !ignored.is_empty() {
            mapped.warn(&at, &format!("transcode engine {engine_name}"), &format!("sets {}, which Estuary does not apply (it keeps the aspect ratio and the frame rate, and encodes AAC)", ignored.join(", ")));
        }
        ladder.push(V::Table(rendition));
    }
    if !ladder.is_empty() {
        mapped.set_in("transcode", "apps", &app, V::Array(ladder));
    }
    Ok(())
}

/// SRS's `dvr_path` as a path under `dvr.dir` and a format: everything from the first
/// component with a variable on (`[vhost]/` left out: Estuary's paths are per app), or SRS
/// 1.0's directory form (no variables) with `[app]/[stream].[timestamp].flv` added; the
/// format from the extension (FLV unless it is `.mp4`, as in SRS).
fn dvr_path(raw: &str) -> (String, &'static str) {
    let format = if raw.ends_with(".mp4") { "mp4" } else { "flv" };
    let parts: Vec<&str> = raw.split('/').collect();
    let relative = match parts.iter().position(|p| p.contains('[')) {
        Some(first) => {
            let mut rest: Vec<&str> = parts[first..].to_vec();
            if rest.first() == Some(&"[vhost]") && rest.len() > 1 {
                rest.remove(0);
            }
            rest.join("/")
        }
        None => "[app]/[stream].[timestamp].flv".to_string(),
    };
    (relative, format)
}

/// Settings that depend on more than one directive or variable, resolved once the file and
/// the variables are all read (the helper tables `_srs` are removed).
pub fn finish(mapped: &mut Mapped) {
    use toml::Value as V;
    let take = |mapped: &mut Mapped, section: &str| -> toml::Table {
        match mapped.table.get_mut(section) {
            Some(V::Table(t)) => match t.remove("_srs") {
                Some(V::Table(srs)) => srs,
                _ => toml::Table::new(),
            },
            _ => toml::Table::new(),
        }
    };
    for section in ["hls", "dash"] {
        let srs = take(mapped, section);
        if let Some(window) = srs.get("window_s").and_then(V::as_float) {
            // The fragment the node will use: set here, or Estuary's default (2 s).
            let set_ms = mapped.table.get(section).and_then(|t| t.get("fragment_ms")).and_then(V::as_integer).map(|ms| ms as f64 / 1000.0);
            let fragment = set_ms.unwrap_or(2.0).max(0.2);
            mapped.set(section, "window", V::Integer(((window / fragment).round() as i64).max(1)));
        }
    }
    let auth = take(mapped, "api");
    if auth.contains_key("raw_api") || auth.contains_key("allow_reload") {
        let on = |key: &str| auth.get(key).and_then(V::as_bool).unwrap_or(false);
        mapped.set("api", "allow_reload", V::Boolean(on("raw_api") && on("allow_reload")));
    }
    match auth.get("enabled").and_then(V::as_bool) {
        Some(true) => {
            for key in ["username", "password"] {
                if let Some(value) = auth.get(key) {
                    mapped.set("api", key, value.clone());
                }
            }
        }
        Some(false) => {
            mapped.set("api", "username", V::String(String::new()));
            mapped.set("api", "password", V::String(String::new()));
        }
        None => {
            if auth.contains_key("username") || auth.contains_key("password") {
                mapped.warnings.push("http_api.auth has a username or password but is not enabled; the API stays open to reads".into());
            }
        }
    }
    let https = take(mapped, "https");
    let mut pair: Option<(String, String, &str)> = None;
    for (server, section, key, port, block) in [("http", "https", "listen", 8088, "http_server.https"), ("api", "https", "api_listen", 1990, "http_api.https"), ("rtmps", "rtmps", "listen", 1443, "rtmps")] {
        if https.get(&format!("{server}_enabled")).and_then(V::as_bool) != Some(true) {
            continue;
        }
        let listen = https.get(&format!("{server}_listen")).and_then(V::as_str).map_or_else(|| format!("0.0.0.0:{port}"), str::to_string);
        mapped.set(section, key, V::String(listen));
        let file = |name: &str| https.get(&format!("{server}_{name}")).and_then(V::as_str).unwrap_or("").to_string();
        let (cert, key_file) = (file("cert"), file("key"));
        match &pair {
            None => pair = Some((cert, key_file, block)),
            // Estuary serves one certificate on both listeners: the HTTP server's.
            Some((c, k, first)) if (c, k) != (&cert, &key_file) => {
                mapped.warnings.push(format!("{block} names cert {cert} and key {key_file}, but Estuary serves one certificate on all its TLS listeners: {first}'s ({c}, {k}) is used"));
            }
            Some(_) => {}
        }
    }
    if let Some((cert, key, _)) = pair {
        mapped.set("https", "cert_file", V::String(cert));
        mapped.set("https", "key_file", V::String(key));
    }
    let metrics = take(mapped, "metrics");
    if metrics.get("enabled").and_then(V::as_bool) == Some(true) {
        let listen = metrics.get("listen").and_then(V::as_str).unwrap_or("0.0.0.0:9972").to_string();
        mapped.set("metrics", "listen", V::String(listen));
    }
    let gb = take(mapped, "gb28181");
    if gb.get("enabled").and_then(V::as_bool) == Some(true) {
        match gb.get("caster").and_then(V::as_str) {
            Some("gb28181") | None => {
                mapped.set("gb28181", "enabled", V::Boolean(true));
                for key in ["app", "media_listen", "sip_listen", "server_id", "realm"] {
                    if let Some(value) = gb.get(key) {
                        mapped.set("gb28181", key, value.clone());
                    }
                }
            }
            Some(other) => mapped.warnings.push(format!("stream_caster {other} is not supported by Estuary (gb28181 is); not started")),
        }
    } else if gb.get("enabled").and_then(V::as_bool) == Some(false) {
        mapped.set("gb28181", "enabled", V::Boolean(false));
    }
    let forward = take(mapped, "forward");
    if forward.get("enabled").and_then(V::as_bool) == Some(true) {
        if let Some(destination) = forward.get("destination") {
            mapped.set_in("forward", "apps", "*", destination.clone());
        }
    }
    let hooks = take(mapped, "hooks");
    if hooks.get("enabled").and_then(V::as_bool) == Some(true) {
        for (event, urls) in hooks.iter().filter(|(k, _)| k.starts_with("on_")) {
            mapped.set("hooks", event, urls.clone());
        }
    }
    // Sections that held only helper entries are left out.
    mapped.table.retain(|_, section| section.as_table().is_none_or(|t| !t.is_empty()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# An srs.conf as SRS's docs write it.
listen              1935;
max_connections     1000;
pid                 ./objs/srs.pid;
daemon              off;
srs_log_tank        console;
http_api {
    enabled         on;
    listen          1985;
}
http_server {
    enabled         on;
    listen          8080;
    dir             ./objs/nginx/html;
}
rtc_server {
    enabled on;
    listen 8000; # UDP port
    candidate $CANDIDATE;
}
vhost __defaultVhost__ {
    hls {
        enabled         on;
        hls_fragment    2;
        hls_window      10;
    }
    http_remux {
        enabled     on;
        mount       [vhost]/[app]/[stream].flv;
    }
    dvr {
        enabled      on;
        dvr_plan     segment;
        dvr_duration 30;
        dvr_path     ./objs/nginx/html/[app]/[stream].[timestamp].flv;
    }
    http_hooks {
        enabled         on;
        on_publish      http://127.0.0.1:8085/api/v1/streams http://127.0.0.1:8086/hooks;
    }
    forward {
        enabled on;
        destination 127.0.0.1:19350;
    }
    play { gop_cache off; mw_latency 100; }
    refer { enabled on; all a.com; }
}
vhost other.example.com {
    hls { enabled on; hls_fragment 4; hls_window 20; }
    http_hooks { enabled on; on_publish http://127.0.0.1:9/other; }
    play { gop_cache on; }
    security { enabled on; allow play all; }
}
"#;

    fn get<'a>(table: &'a toml::Table, section: &str, key: &str) -> Option<&'a toml::Value> {
        table.get(section)?.as_table()?.get(key)
    }

    #[test]
    fn parses_blocks_arguments_comments_and_quotes() {
        let parsed = parse("a 1 2; # comment\nb { c \"x y\"; d 'z;'; }\n").unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0], Directive { name: "a".into(), args: vec!["1".into(), "2".into()], line: 1, block: None });
        let inner = parsed[1].block.as_ref().unwrap();
        assert_eq!(parsed[1].line, 2);
        assert_eq!(inner[0].args, vec!["x y".to_string()]);
        assert_eq!(inner[1].args, vec!["z;".to_string()]);
    }

    #[test]
    fn malformed_files_name_the_line() {
        assert_eq!(parse("listen 1935;\nvhost x {\n hls { enabled on; }\n").unwrap_err().line, 2);
        assert_eq!(parse("listen 1935\n}\n").unwrap_err().line, 2);
        assert_eq!(parse("a;\n;\n").unwrap_err().line, 2);
        assert_eq!(parse("a \"open;\n").unwrap_err().line, 1);
        assert_eq!(parse("a 1;\nb 2").unwrap_err().line, 2);
    }

    #[test]
    fn maps_srs_directives_onto_estuary_settings() {
        let mut mapped = Mapped::default();
        map_file(&mut mapped, &parse(SAMPLE).unwrap(), "srs.conf").unwrap();
        finish(&mut mapped);
        let t = &mapped.table;
        assert_eq!(get(t, "rtmp", "listen").unwrap().as_str(), Some("0.0.0.0:1935"));
        assert_eq!(get(t, "node", "max_connections").unwrap().as_integer(), Some(1000));
        assert_eq!(get(t, "api", "listen").unwrap().as_str(), Some("0.0.0.0:1985"));
        assert_eq!(get(t, "http", "listen").unwrap().as_str(), Some("0.0.0.0:8080"));
        assert_eq!(get(t, "rtc", "enabled").unwrap().as_bool(), Some(true));
        assert_eq!(get(t, "rtc", "candidate"), None);
        assert_eq!(get(t, "hls", "fragment_ms").unwrap().as_integer(), Some(2000));
        assert_eq!(get(t, "hls", "window").unwrap().as_integer(), Some(5));
        assert_eq!(get(t, "dvr", "plan").unwrap().as_str(), Some("segment"));
        assert_eq!(get(t, "dvr", "segment_ms").unwrap().as_integer(), Some(30000));
        assert_eq!(get(t, "dvr", "path").unwrap().as_str(), Some("[app]/[stream].[timestamp].flv"));
        assert_eq!(get(t, "dvr", "format").unwrap().as_str(), Some("flv"));
        // SRS's defaults for what the file leaves out.
        assert_eq!(get(t, "srt", "enabled").unwrap().as_bool(), Some(false));
        assert_eq!(get(t, "gb28181", "enabled").unwrap().as_bool(), Some(false));
        assert_eq!(get(t, "dash", "enabled").unwrap().as_bool(), Some(false));
        assert_eq!(get(t, "hooks", "on_publish").unwrap().as_array().map(Vec::len), Some(2));
        assert_eq!(get(t, "stream", "gop_cache").unwrap().as_bool(), Some(false));
        assert_eq!(get(t, "stream", "write_merge_ms").unwrap().as_integer(), Some(100));
        let forward = t["forward"]["apps"]["*"].as_array().unwrap();
        assert_eq!(forward[0].as_str(), Some("rtmp://127.0.0.1:19350/[app]/[stream]"));
        // No helper tables are left for Estuary's own checks to trip on.
        assert!(t.values().all(|s| s.as_table().is_none_or(|s| !s.contains_key("_srs"))), "{t:?}");
        // What is not applied is named once each, with its line.
        let w = mapped.warnings.join("\n");
        for expected in [
            "line 5: `pid`",
            "line 15: `http_server.dir`",
            "line 47: `vhost.refer` is not applied",
            "line 36: `vhost.dvr.dvr_path`",
            "line 52: vhost other.example.com: `vhost.play.gop_cache` sets stream.gop_cache, one setting for the whole node",
            "line 53: vhost other.example.com: `vhost.security` is applied in __defaultVhost__ only",
        ] {
            assert!(w.contains(expected), "no warning {expected:?} in:\n{w}");
        }
        assert!(!w.contains("refer.enabled") && !w.contains("refer.all"), "one warning per unapplied block:\n{w}");
        // The named vhost has sections of its own, from SRS's defaults.
        let other = t["vhosts"]["other.example.com"].as_table().unwrap();
        assert_eq!((other["hls"]["enabled"].as_bool(), other["hls"]["fragment_ms"].as_integer(), other["hls"]["window"].as_integer()), (Some(true), Some(4000), Some(5)));
        assert_eq!(other["hooks"]["on_publish"][0].as_str(), Some("http://127.0.0.1:9/other"));
        assert_eq!((other["dvr"]["enabled"].as_bool(), other["dash"]["enabled"].as_bool()), (Some(false), Some(false)));
        assert!(other["forward"].as_table().is_some_and(|f| f.is_empty()), "{other:?}");
        // The default vhost's own settings did not move.
        assert_eq!(get(t, "hls", "fragment_ms").unwrap().as_integer(), Some(2000));
        assert_eq!(get(t, "stream", "gop_cache").unwrap().as_bool(), Some(false));
        let config: crate::config::Config = toml::Value::Table(t.clone()).try_into().unwrap();
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        assert_eq!(config.for_vhost("other.example.com").hooks.default.on_publish, ["http://127.0.0.1:9/other"]);
        assert!(config.for_vhost("other.example.com").forward.apps.is_empty() && !config.forward.apps.is_empty());
    }

    /// The table and warnings an srs.conf gives, resolved.
    fn mapped_from(text: &str) -> Mapped {
        let mut mapped = Mapped::default();
        map_file(&mut mapped, &parse(text).unwrap(), "srs.conf").unwrap();
        finish(&mut mapped);
        mapped
    }

    fn strings(value: Option<&toml::Value>) -> Vec<String> {
        value.and_then(toml::Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
    }

    #[test]
    fn https_blocks_map_onto_one_certificate() {
        let m = mapped_from("http_server {\n enabled on;\n https { enabled on; listen 8088; key ./server.key; cert ./server.crt; }\n}\nhttp_api {\n enabled on;\n https { enabled on; key ./other.key; cert ./server.crt; }\n}\n");
        let t = &m.table;
        let text = |key: &str| get(t, "https", key).and_then(|v| v.as_str()).map(str::to_string);
        assert_eq!(text("listen").as_deref(), Some("0.0.0.0:8088"));
        assert_eq!(text("api_listen").as_deref(), Some("0.0.0.0:1990"));
        assert_eq!((text("key_file").as_deref(), text("cert_file").as_deref()), (Some("./server.key"), Some("./server.crt")));
        assert!(m.warnings.join("\n").contains("http_api.https names cert ./server.crt and key ./other.key"), "{:?}", m.warnings);
        // A variable replaces the file's value, as in SRS.
        let mut mapped = Mapped::default();
        map_file(&mut mapped, &parse("http_server { https { enabled on; key a.key; cert a.crt; } }").unwrap(), "srs.conf").unwrap();
        map_env(&mut mapped, &[("SRS_HTTP_SERVER_HTTPS_CERT".into(), "b.crt".into())]).unwrap();
        finish(&mut mapped);
        assert_eq!((get(&mapped.table, "https", "cert_file").and_then(|v| v.as_str()), get(&mapped.table, "https", "key_file").and_then(|v| v.as_str())), (Some("b.crt"), Some("a.key")));
        // Off: no listener.
        assert!(get(&mapped_from("http_server { https { enabled off; listen 8088; } }").table, "https", "listen").is_none());
        // SRS 6's rtmps block: its own port, the one certificate.
        let m = mapped_from("rtmps {\n enabled on;\n listen 1443;\n key ./server.key;\n cert ./server.crt;\n}\n");
        assert_eq!(get(&m.table, "rtmps", "listen").and_then(|v| v.as_str()), Some("0.0.0.0:1443"));
        assert_eq!(get(&m.table, "https", "cert_file").and_then(|v| v.as_str()), Some("./server.crt"));
        assert!(get(&mapped_from("rtmps { enabled off; listen 1443; }").table, "rtmps", "listen").is_none());
    }

    #[test]
    fn security_rules_refuse_what_no_allow_rule_lets_in() {
        let m = mapped_from("vhost __defaultVhost__ {\n security {\n enabled on;\n allow play all;\n deny play 10.0.0.0/8;\n allow publish 127.0.0.1;\n }\n}\n");
        let t = &m.table;
        assert_eq!(strings(get(t, "auth", "play_allow")), Vec::<String>::new());
        assert_eq!(strings(get(t, "auth", "play_deny")), ["10.0.0.0/8"]);
        assert_eq!(strings(get(t, "auth", "publish_allow")), ["127.0.0.1"]);
        assert_eq!(strings(get(t, "auth", "publish_deny")), Vec::<String>::new());
        // Enabled without an allow rule for an action: nobody may.
        let t = mapped_from("vhost __defaultVhost__ { security { enabled on; allow publish all; } }").table;
        assert_eq!(strings(get(&t, "auth", "play_deny")), ["0.0.0.0/0", "::/0"]);
        assert_eq!(strings(get(&t, "auth", "publish_deny")), Vec::<String>::new());
        // Off: no rules at all.
        assert!(get(&mapped_from("vhost __defaultVhost__ { security { enabled off; deny play all; } }").table, "auth", "play_deny").is_none());
        let err = map_file(&mut Mapped::default(), &parse("vhost __defaultVhost__ {\n security {\n enabled on;\n allow play somewhere;\n }\n}\n").unwrap(), "srs.conf").unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        // The rules are a file's only.
        let mut mapped = Mapped::default();
        map_env(&mut mapped, &[("SRS_VHOST_SECURITY_ENABLED".into(), "on".into())]).unwrap();
        assert!(mapped.warnings.join("").contains("srs.conf only"), "{:?}", mapped.warnings);
    }

    #[test]
    fn ingests_become_sources_and_transcode_engines_renditions() {
        let m = mapped_from(
            "vhost __defaultVhost__ {
    ingest livestream {
        enabled on;
        input { type file; url ./doc/source.flv; }
        ffmpeg ./objs/ffmpeg/bin/ffmpeg;
        engine { enabled off; output rtmp://127.0.0.1:[port]/live?vhost=[vhost]/livestream; }
    }
    ingest camera { enabled on; input { type stream; url rtsp://10.0.0.9/main; } engine { enabled on; vcodec libx264; output rtmp://127.0.0.1/cams/front; } }
    ingest off { enabled off; input { url x.flv; } engine { output rtmp://127.0.0.1/live/off; } }
    transcode live {
        enabled on;
        ffmpeg ./objs/ffmpeg/bin/ffmpeg;
        engine sd { enabled on; vcodec libx264; vbitrate 500; vfps 25; vwidth 640; vheight 360; acodec libfdk_aac; abitrate 70; output rtmp://127.0.0.1:[port]/[app]?vhost=[vhost]/[stream]_[engine]; }
        engine hd { enabled off; output rtmp://127.0.0.1:[port]/[app]/[stream]_hd; }
        engine elsewhere { enabled on; output rtmp://127.0.0.1:[port]/other/[stream]; }
    }
}
",
        );
        let t = &m.table;
        let sources = t["ingest"]["sources"].as_table().unwrap();
        assert_eq!(sources.get("live/livestream").and_then(|v| v.as_str()), Some("./doc/source.flv"));
        assert_eq!(sources.get("cams/front").and_then(|v| v.as_str()), Some("rtsp://10.0.0.9/main"));
        assert_eq!(sources.len(), 2, "{sources:?}");
        let ladder = t["transcode"]["apps"]["live"].as_array().unwrap();
        assert_eq!(ladder.len(), 1, "{ladder:?}");
        let sd = ladder[0].as_table().unwrap();
        assert_eq!((sd["suffix"].as_str(), sd["codec"].as_str(), sd["video_kbps"].as_integer(), sd["height"].as_integer(), sd["audio_kbps"].as_integer()), (Some("_sd"), Some("h264"), Some(500), Some(360), Some(70)));
        let w = m.warnings.join("\n");
        for expected in ["ingest camera engine", "transcode engine sd` sets vfps, vwidth", "transcode engine elsewhere", "transcode.ffmpeg"] {
            assert!(w.contains(expected), "no warning {expected:?} in:\n{w}");
        }
        // Estuary checks the result as it checks its own TOML.
        let config: crate::config::Config = toml::Value::Table(m.table.clone()).try_into().unwrap();
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        // Without an app, the ladder is every app's.
        let t = mapped_from("vhost __defaultVhost__ { transcode { enabled on; engine low { enabled on; vbitrate 300; output rtmp://h/[app]/[stream]_low; } } }").table;
        assert_eq!(t["transcode"]["apps"]["*"][0]["suffix"].as_str(), Some("_low"));
    }

    #[test]
    fn bad_values_are_errors_with_the_line() {
        let err = map_file(&mut Mapped::default(), &parse("vhost __defaultVhost__ {\n hls {\n enabled maybe;\n }\n}\n").unwrap(), "srs.conf").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("on or off"), "{err}");
        assert_eq!(map_file(&mut Mapped::default(), &parse("listen nowhere;").unwrap(), "srs.conf").unwrap_err().line, 1);
    }

    #[test]
    fn srs_environment_variables_map_like_the_file() {
        let env: Vec<(String, String)> = [
            ("SRS_LISTEN", "19350"),
            ("SRS_HTTP_API_LISTEN", "19850"),
            ("SRS_VHOST_HLS_ENABLED", "on"),
            ("SRS_VHOST_HLS_HLS_FRAGMENT", "4"),
            ("SRS_VHOST_HLS_HLS_WINDOW", "20"),
            ("SRS_VHOST_DVR_ENABLED", "on"),
            ("SRS_RTC_SERVER_ENABLED", "off"),
            ("SRS_SOMETHING_ELSE", "1"),
            ("PATH", "/bin"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut mapped = Mapped::default();
        map_env(&mut mapped, &env).unwrap();
        finish(&mut mapped);
        let t = &mapped.table;
        assert_eq!(get(t, "rtmp", "listen").unwrap().as_str(), Some("0.0.0.0:19350"));
        assert_eq!(get(t, "api", "listen").unwrap().as_str(), Some("0.0.0.0:19850"));
        assert_eq!(get(t, "hls", "fragment_ms").unwrap().as_integer(), Some(4000));
        assert_eq!(get(t, "hls", "window").unwrap().as_integer(), Some(5));
        assert_eq!(get(t, "dvr", "enabled").unwrap().as_bool(), Some(true));
        assert_eq!(get(t, "rtc", "enabled").unwrap().as_bool(), Some(false));
        assert_eq!(mapped.warnings.len(), 1, "{:?}", mapped.warnings);
        assert!(mapped.warnings[0].contains("SRS_SOMETHING_ELSE"));
    }

    #[test]
    fn every_supported_path_has_its_variable_and_a_table_row() {
        let table = markdown_table();
        for (path, _) in SUPPORTED {
            let variable = if file_only(path) { "(srs.conf only)".to_string() } else { format!("`{}`", env_name(path)) };
            assert!(table.contains(&variable), "{path}");
        }
        assert!(table.contains("| `vhost __defaultVhost__ { hls { hls_fragment } }` | `SRS_VHOST_HLS_HLS_FRAGMENT` |"), "{table}");
    }

    #[test]
    fn file_and_variables_combine_before_settings_are_resolved() {
        let mut mapped = Mapped::default();
        mapped.vars.insert("CANDIDATE".into(), "192.0.2.7".into());
        let text = "rtc_server { enabled on; candidate $CANDIDATE; }\nhttp_api { auth { enabled on; username admin; } }\nvhost __defaultVhost__ {\n http_hooks { enabled on; }\n hls { enabled on; hls_fragment 2; }\n}\n";
        map_file(&mut mapped, &parse(text).unwrap(), "srs.conf").unwrap();
        let env: Vec<(String, String)> = [("SRS_VHOST_HTTP_HOOKS_ON_PUBLISH", "http://127.0.0.1:1/hook"), ("SRS_VHOST_HLS_HLS_WINDOW", "60"), ("SRS_HTTP_API_AUTH_PASSWORD", "secret"), ("SRS_LISTEN", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map_env(&mut mapped, &env).unwrap();
        finish(&mut mapped);
        let t = &mapped.table;
        assert_eq!(get(t, "hooks", "on_publish").unwrap().as_array().map(Vec::len), Some(1));
        assert_eq!(get(t, "hls", "window").unwrap().as_integer(), Some(30));
        assert_eq!(get(t, "api", "username").unwrap().as_str(), Some("admin"));
        assert_eq!(get(t, "api", "password").unwrap().as_str(), Some("secret"));
        assert_eq!(get(t, "rtc", "candidate").unwrap().as_str(), Some("192.0.2.7"));
        assert_eq!(get(t, "rtmp", "listen"), None, "an empty variable counts as unset");
    }

    #[test]
    fn dvr_paths_keep_their_pattern_and_format() {
        assert_eq!(dvr_path("./objs/nginx/html/[app]/[stream].[timestamp].flv"), ("[app]/[stream].[timestamp].flv".to_string(), "flv"));
        assert_eq!(dvr_path("/data/[vhost]/[app]/[stream]/[2006]/[01]/[02]/[15].[04].[05].[999].mp4"), ("[app]/[stream]/[2006]/[01]/[02]/[15].[04].[05].[999].mp4".to_string(), "mp4"));
        assert_eq!(dvr_path("./objs/nginx/html"), ("[app]/[stream].[timestamp].flv".to_string(), "flv"));
    }
}
