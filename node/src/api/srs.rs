//! SRS's informational API paths, in SRS's shapes, for the scripts and consoles written for
//! SRS: `/api/` and `/api/v1/` (the lists of endpoints), `/api/v1/vhosts[/{id}]`,
//! `/api/v1/rusages`, `/api/v1/self_proc_stats`, `/api/v1/system_proc_stats`,
//! `/api/v1/meminfos`, `/api/v1/features`, `/api/v1/requests`, `/api/v1/authors`, and
//! `/api/v1/raw?rpc=reload` / `rpc=reload-fetch`. Figures come from the kernel (`/proc`) and
//! from the node's own counters.

use super::*;

/// Milliseconds since the Unix epoch (SRS's `sample_time`).
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn ok(data: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "data": data }))
}

/// `GET /api/`: the API versions.
pub(super) async fn api_root(_: Authorized) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "urls": { "v1": "the API of version 1" } }))
}

/// The endpoints `GET /api/v1/` lists, with a line on each.
pub const V1_URLS: &[(&str, &str)] = &[
    ("versions", "the node's version"),
    ("summaries", "uptime, memory, CPU, network totals and clients"),
    ("rusages", "resource usage of the node's process (getrusage)"),
    ("self_proc_stats", "the node's process from /proc/self/stat"),
    ("system_proc_stats", "the machine's CPU times from /proc/stat"),
    ("meminfos", "the machine's memory from /proc/meminfo"),
    ("authors", "who wrote the node, and its license"),
    ("features", "what this build can do"),
    ("requests", "the request as the node received it"),
    ("vhosts", "virtual hosts with streams and clients"),
    ("streams", "live streams (?start=&count=)"),
    ("clients", "connected clients (?start=&count=); DELETE /api/v1/clients/{id} kicks one"),
    ("cluster", "the cluster directory when the node is in one"),
    ("raw", "?rpc=reload reads the configuration again (as SIGHUP); ?rpc=reload-fetch tells how the last reload went"),
];

/// `GET /api/v1/`: the endpoints of version 1.
pub(super) async fn api_v1_root(_: Authorized) -> HttpResponse {
    let urls: serde_json::Map<String, Value> = V1_URLS.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
    HttpResponse::Ok().json(json!({
        "code": 0,
        "server": SERVER,
        "urls": urls,
        "tests": {
            "requests": "show the request: /api/v1/requests",
            "vhost": "the vhosts: /api/v1/vhosts/",
        }
    }))
}

/// A stable id for a vhost (SRS's ids start `vid-`).
pub fn vhost_id(name: &str) -> String {
    format!("vid-{}", &super::streams::stream_id(name, "", "")[..12])
}

async fn vhosts_json(state: &AppState) -> Result<Vec<Value>, HttpResponse> {
    let all = all_streams(state).await?;
    let mut by_vhost: BTreeMap<String, (u64, u64, u64, u64, usize, usize)> = BTreeMap::new();
    by_vhost.entry("__defaultVhost__".to_string()).or_default();
    for ((vhost, _, _), merged) in all.iter().filter(|(_, m)| m.live) {
        let entry = by_vhost.entry(vhost.clone()).or_default();
        entry.4 += 1;
        if let Some(info) = &merged.info {
            entry.0 += info.bytes_out;
            entry.1 += info.bytes_in;
            entry.2 += info.kbps_out_30s;
            entry.3 += info.kbps_in_30s;
            entry.5 += info.subscribers + usize::from(info.publisher.is_some());
        }
    }
    let hls_fragment = state.hls_fragment_s();
    Ok(by_vhost
        .into_iter()
        .map(|(name, (send, recv, kbps_send, kbps_recv, streams, clients))| {
            json!({
                "id": vhost_id(&name),
                "name": name,
                "enabled": true,
                "clients": clients,
                "streams": streams,
                "send_bytes": send,
                "recv_bytes": recv,
                "kbps": { "recv_30s": kbps_recv, "send_30s": kbps_send },
                "hls": { "enabled": hls_fragment.is_some(), "fragment": hls_fragment.unwrap_or(0.0) },
            })
        })
        .collect())
}

/// `GET /api/v1/vhosts`.
pub(super) async fn vhosts(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    match vhosts_json(&state).await {
        Ok(list) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "vhosts": list })),
        Err(response) => response,
    }
}

/// `GET /api/v1/vhosts/{id}` (by id or by name).
pub(super) async fn vhost_by_id(_: Authorized, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    match vhosts_json(&state).await {
        Ok(list) => match list.into_iter().find(|v| v["id"] == id.as_str() || v["name"] == id.as_str()) {
            Some(vhost) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "vhost": vhost })),
            None => error(404, &format!("no vhost {id}")),
        },
        Err(response) => response,
    }
}

/// Fields of `/proc/self/stat` after the command name, by their number in proc(5) (the
/// first after the name is field 3, `state`).
fn self_stat() -> Option<(String, Vec<String>)> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let rest = text[close + 2..].split_whitespace().map(str::to_string).collect();
    Some((comm, rest))
}

/// Clock ticks per second of /proc's CPU times (USER_HZ is 100 on every Linux the node runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// `GET /api/v1/rusages`: the process's resource usage, in getrusage's field names.
pub(super) async fn rusages(_: Authorized) -> HttpResponse {
    let Some((_, fields)) = self_stat() else { return error(500, "cannot read /proc/self/stat") };
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let status_kb = |name: &str| status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    ok(json!({
        "ok": true,
        "sample_time": now_ms(),
        "ru_utime": field(14) as f64 / TICKS_PER_SECOND,
        "ru_stime": field(15) as f64 / TICKS_PER_SECOND,
        "ru_maxrss": status_kb("VmHWM:"),
        "ru_minflt": field(10),
        "ru_majflt": field(12),
        "ru_nvcsw": status_kb("voluntary_ctxt_switches:"),
        "ru_nivcsw": status_kb("nonvoluntary_ctxt_switches:"),
    }))
}

/// `GET /api/v1/self_proc_stats`: `/proc/self/stat` with proc(5)'s field names.
pub(super) async fn self_proc_stats(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let Some((comm, fields)) = self_stat() else { return error(500, "cannot read /proc/self/stat") };
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    ok(json!({
        "ok": true,
        "sample_time": now_ms(),
        "percent": metrics::cpu_percent(&state.last_cpu) / 100.0,
        "pid": std::process::id(),
        "comm": comm,
        "state": fields.first().cloned().unwrap_or_default(),
        "ppid": field(4),
        "pgrp": field(5),
        "session": field(6),
        "tty_nr": field(7),
        "tpgid": field(8),
        "flags": field(9),
        "minflt": field(10),
        "cminflt": field(11),
        "majflt": field(12),
        "cmajflt": field(13),
        "utime": field(14),
        "stime": field(15),
        "cutime": field(16),
        "cstime": field(17),
        "priority": field(18),
        "nice": field(19),
        "num_threads": field(20),
        "itrealvalue": field(21),
        "starttime": field(22),
        "vsize": field(23),
        "rss": field(24),
        "rsslim": field(25),
    }))
}

/// `GET /api/v1/system_proc_stats`: the machine's CPU times (the `cpu` line of `/proc/stat`).
pub(super) async fn system_proc_stats(_: Authorized) -> HttpResponse {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else { return error(500, "cannot read /proc/stat") };
    let times: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let at = |i: usize| times.get(i).copied().unwrap_or(0);
    let total: u64 = times.iter().take(8).sum();
    let busy = total.saturating_sub(at(3) + at(4));
    ok(json!({
        "ok": true,
        "sample_time": now_ms(),
        "percent": if total == 0 { 0.0 } else { busy as f64 / total as f64 },
        "user": at(0),
        "nice": at(1),
        "sys": at(2),
        "idle": at(3),
        "iowait": at(4),
        "irq": at(5),
        "softirq": at(6),
        "steal": at(7),
        "guest": at(8),
    }))
}

/// `GET /api/v1/meminfos`: the machine's memory from `/proc/meminfo` (kB).
pub(super) async fn meminfos(_: Authorized) -> HttpResponse {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb = |name: &str| text.lines().find(|l| l.split(':').next() == Some(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let (total, free, buffers, cached, active) = (kb("MemTotal"), kb("MemFree"), kb("Buffers"), kb("Cached"), kb("Active"));
    let (swap_total, swap_free) = (kb("SwapTotal"), kb("SwapFree"));
    let ram_used = total.saturating_sub(free + buffers + cached);
    let swap_used = swap_total.saturating_sub(swap_free);
    let share = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 / whole as f64 };
    ok(json!({
        "ok": true,
        "sample_time": now_ms(),
        "percent_ram": share(ram_used, total),
        "percent_swap": share(swap_used, swap_total),
        "MemActive": active,
        "RealInUse": ram_used,
        "NotInUse": total.saturating_sub(ram_used),
        "MemTotal": total,
        "MemFree": free,
        "Buffers": buffers,
        "Cached": cached,
        "SwapTotal": swap_total,
        "SwapFree": swap_free,
    }))
}

/// `GET /api/v1/features`: what this build serves.
pub(super) async fn features(_: Authorized) -> HttpResponse {
    ok(json!({
        "options": "",
        "build": std::env::consts::ARCH,
        "features": {
            "ssl": false,
            "hls": true,
            "dash": true,
            "hds": false,
            "callback": true,
            "api": true,
            "httpd": true,
            "dvr": true,
            "transcode": true,
            "ingest": true,
            "stat": true,
            "caster": true,
            "rtc": true,
            "srt": true,
            "gb28181": true,
            "cluster": true,
        }
    }))
}

/// `GET /api/v1/requests`: the request as received (method, path, query, headers).
pub(super) async fn requests(_: Authorized, req: HttpRequest) -> HttpResponse {
    let headers: Vec<Value> = req.headers().iter().map(|(k, v)| json!({ k.as_str(): String::from_utf8_lossy(v.as_bytes()) })).collect();
    let query: serde_json::Map<String, Value> = estuary_protocols::rtmp::message::parse_query(req.query_string()).into_iter().map(|(k, v)| (k, Value::from(v))).collect();
    ok(json!({
        "uri": req.uri().to_string(),
        "path": req.path(),
        "METHOD": req.method().as_str(),
        "headers": headers,
        "query": query,
        "server": { "sigature": SERVER, "version": env!("CARGO_PKG_VERSION"), "time": now_ms() },
    }))
}

/// `GET /api/v1/authors`.
pub(super) async fn authors(_: Authorized) -> HttpResponse {
    ok(json!({
        "license": env!("CARGO_PKG_LICENSE"),
        "contributors": "the Estuary developers",
    }))
}

#[derive(Deserialize)]
pub(super) struct RawQuery {
    rpc: Option<String>,
}

/// `GET /api/v1/raw?rpc=reload`: reads the configuration again and applies what can change
/// live (see `reload.rs`); `rpc=reload-fetch`: the last reload's result. SRS serves these only
/// with `raw_api { enabled on; allow_reload on; }` (Estuary: `api.allow_reload`), and a
/// reload changes the node, so it passes the API's rule for changes.
pub(super) async fn raw(state: web::Data<AppState>, _: AuthorizedChange, query: web::Query<RawQuery>) -> HttpResponse {
    if !state.reloader.running().api.allow_reload {
        return error(403, "reloading through the API is off (api.allow_reload = false; in an srs.conf: http_api { raw_api { enabled on; allow_reload on; } })");
    }
    match query.rpc.as_deref() {
        Some("reload") => match state.reloader.reload("API").await {
            Ok(outcome) => HttpResponse::Ok().json(json!({ "code": 0, "server": SERVER, "data": outcome })),
            Err(reason) => error(400, &reason),
        },
        Some("reload-fetch") => {
            let data = match state.reloader.last() {
                None => json!({ "err": 0, "msg": "no reload yet", "state": 0, "rid": "" }),
                Some((number, Ok(outcome))) => json!({ "err": 0, "msg": "Success", "state": 0, "rid": number.to_string(), "outcome": outcome }),
                Some((number, Err(reason))) => json!({ "err": 1, "msg": reason, "state": 0, "rid": number.to_string() }),
            };
            ok(data)
        }
        Some(other) => error(400, &format!("rpc={other} is not served; the raw API has reload and reload-fetch (SRS 4 and later removed the rest)")),
        None => error(400, "the raw API needs ?rpc=reload or ?rpc=reload-fetch"),
    }
}
