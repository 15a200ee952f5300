//! Prometheus text exposition (format 0.0.4) of the node's state: process figures, client and
//! stream gauges, and counters (connections, refusals, hook calls, supervisor restarts,
//! dropped frames, bytes). Per-stream series carry `app` and `stream` labels for at most
//! `metrics.max_stream_series` streams (busiest first), so cardinality stays bounded.

use crate::api::all_streams;
use crate::AppState;
use actix_web::HttpResponse;
use estuary_actors::node::clients;
use estuary_actors::node::Node;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

/// Resident memory of this process, bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0)
        * 1024
}

/// User plus system CPU time of this process, seconds.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// CPU use since the previous call (`last` holds that call's sample), percent of one core.
pub fn cpu_percent(last: &Mutex<(Instant, f64)>) -> f64 {
    let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
    let now = (Instant::now(), cpu_seconds());
    let wall = now.0.duration_since(last.0).as_secs_f64();
    let percent = if wall > 0.0 { (now.1 - last.1) / wall * 100.0 } else { 0.0 };
    *last = now;
    (percent * 10.0).round() / 10.0
}

/// Bytes received and sent, all clients ever.
pub fn byte_totals(node: &Node) -> (u64, u64) {
    let mut received = node.clients.closed_bytes_in.load(Ordering::Relaxed);
    let mut sent = node.clients.closed_bytes_out.load(Ordering::Relaxed);
    for client in node.clients.snapshot() {
        received += client.bytes_in.load(Ordering::Relaxed);
        sent += client.bytes_out.load(Ordering::Relaxed);
    }
    (received, sent)
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", inner.join(","))
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, pairs: &[(&str, &str)], value: f64) {
        let _ = writeln!(self.out, "{name}{} {value}", labels(pairs));
    }
}

/// The exposition text.
pub async fn render(state: &AppState) -> Result<String, HttpResponse> {
    let streams = all_streams(state).await?;
    let mut out = String::new();
    let mut f = Family { out: &mut out };

    f.header("estuary_build_info", "gauge", "Build information; always 1.");
    f.sample("estuary_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    f.header("estuary_uptime_seconds", "gauge", "Seconds since the node started.");
    f.sample("estuary_uptime_seconds", &[], state.started.elapsed().as_secs_f64());
    f.header("estuary_process_resident_memory_bytes", "gauge", "Resident memory of the node process.");
    f.sample("estuary_process_resident_memory_bytes", &[], rss_bytes() as f64);
    f.header("estuary_process_cpu_seconds_total", "counter", "User and system CPU time of the node process.");
    f.sample("estuary_process_cpu_seconds_total", &[], cpu_seconds());

    let live: Vec<_> = streams.iter().filter(|(_, m)| m.info.as_ref().is_some_and(|i| i.publisher.is_some())).collect();
    f.header("estuary_streams", "gauge", "Streams with an active publisher.");
    f.sample("estuary_streams", &[], live.len() as f64);

    let mut by_protocol: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
    for client in state.node.clients.snapshot() {
        let role = match client.role() {
            Some((clients::Role::Publish, _)) => "publish",
            Some((clients::Role::Play, _)) => "play",
            None => "none",
        };
        *by_protocol.entry((client.protocol, role)).or_insert(0) += 1;
    }
    f.header("estuary_clients", "gauge", "Connected clients by protocol and role.");
    for ((protocol, role), count) in &by_protocol {
        f.sample("estuary_clients", &[("protocol", protocol), ("type", role)], *count as f64);
    }

    let (received, sent) = byte_totals(&state.node);
    f.header("estuary_received_bytes_total", "counter", "Bytes received from clients.");
    f.sample("estuary_received_bytes_total", &[], received as f64);
    f.header("estuary_sent_bytes_total", "counter", "Bytes sent to clients.");
    f.sample("estuary_sent_bytes_total", &[], sent as f64);
    f.header("estuary_dropped_frames_total", "counter", "Frames slow subscribers lost to backpressure.");
    f.sample("estuary_dropped_frames_total", &[], state.node.stats.frames_dropped.load(Ordering::Relaxed) as f64);

    f.header("estuary_connections_open", "gauge", "TCP connections open on the RTMP, RTMPS, HTTP, HTTPS and API ports (counted against node.max_connections).");
    f.sample("estuary_connections_open", &[], state.node.connections.open() as f64);

    let counters = state.node.stats.counters();
    for (name, help) in [
        ("estuary_connections_total", "Client connections accepted, by protocol."),
        ("estuary_requests_refused_total", "Publish and play requests refused by the access policy, by action."),
        ("estuary_disk_write_errors_total", "Writes of DVR recordings, HLS and DASH files that failed (a full disk), by output."),
        ("estuary_srt_bad_cookies_total", "SRT conclusion handshakes dropped because they carried no cookie this listener gave (spoofed or stale callers)."),
        ("estuary_connections_refused_total", "TCP connections refused by node.max_connections or node.max_connections_per_ip, by listener and reason."),
        ("estuary_hook_calls_total", "HTTP callback calls by event and result."),
        ("estuary_cluster_registry_errors_total", "Cluster registry (Redis) operations that failed or timed out."),
        ("estuary_cluster_publish_refused_total", "Publishes refused because another node owns the stream."),
        ("estuary_cluster_conflicts_total", "Streams published here found claimed by another node (after a registry outage)."),
        ("estuary_cluster_pull_failures_total", "Pulls of a stream from its owner that failed before they started."),
        ("estuary_cluster_pull_resumes_total", "Pulls that resumed from a (new) owner after their upstream broke."),
    ] {
        f.header(name, "counter", help);
        for (_, pairs, value) in counters.iter().filter(|(n, _, _)| *n == name) {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            f.sample(name, &pairs, *value as f64);
        }
    }
    if let Some(directory) = &state.node.cluster {
        f.header("estuary_cluster_registry_up", "gauge", "1 when the cluster registry (Redis) answered the last operation.");
        f.sample("estuary_cluster_registry_up", &[], if directory.health().0 { 1.0 } else { 0.0 });
        f.header("estuary_cluster_pulls", "gauge", "Streams this node pulls from their owners now.");
        f.sample("estuary_cluster_pulls", &[], directory.pulls().len() as f64);
    }
    let stats = &state.node.stats;
    f.header("estuary_datagrams_dropped_total", "counter", "Datagrams received but dropped because their session's inbox was full, by protocol.");
    for (protocol, counter) in [("srt", &stats.datagrams_dropped_srt), ("webrtc", &stats.datagrams_dropped_webrtc), ("gb28181", &stats.datagrams_dropped_gb28181)] {
        f.sample("estuary_datagrams_dropped_total", &[("protocol", protocol)], counter.load(Ordering::Relaxed) as f64);
    }
    f.header("estuary_storage_dropped_total", "counter", "Storage updates dropped because the storage queue was full.");
    f.sample("estuary_storage_dropped_total", &[], stats.storage_dropped.load(Ordering::Relaxed) as f64);
    f.header("estuary_dvr_recordings", "gauge", "Streams being recorded (DVR) now.");
    f.sample("estuary_dvr_recordings", &[], state.node.dvr.writing() as f64);
    f.header("estuary_dvr_suspended", "gauge", "Streams whose recording is suspended because writes fail (a full disk); it resumes by itself.");
    f.sample("estuary_dvr_suspended", &[], state.node.dvr.recording().iter().filter(|(_, failure)| failure.is_some()).count() as f64);
    f.header("estuary_forwards", "gauge", "Forwards (restreams) by state: connecting, live, retrying.");
    let forwards = estuary_actors::forward::list(&state.node);
    for name in ["connecting", "live", "retrying"] {
        let count = forwards.iter().filter(|f| forward_state(&f.state) == name).count();
        f.sample("estuary_forwards", &[("state", name)], count as f64);
    }
    f.header("estuary_supervisor_restarts_total", "counter", "Restarts of supervised workers.");
    for (worker, count) in state.node.restarts.snapshot() {
        f.sample("estuary_supervisor_restarts_total", &[("worker", &worker)], count as f64);
    }

    let mut ranked: Vec<_> = live.iter().filter_map(|(k, m)| m.info.as_ref().map(|i| (k, i))).collect();
    ranked.sort_by_key(|(_, i)| std::cmp::Reverse(i.bytes_in + i.bytes_out));
    ranked.truncate(state.reloader.running().metrics.max_stream_series);
    type Pick = fn(&estuary_actors::stream::StreamInfo) -> f64;
    let per_stream: [(&str, &str, &str, Pick); 8] = [
        ("estuary_stream_players", "gauge", "Players of the stream.", |i| i.subscribers as f64),
        ("estuary_stream_received_bytes_total", "counter", "Bytes received for the stream.", |i| i.bytes_in as f64),
        ("estuary_stream_sent_bytes_total", "counter", "Bytes sent for the stream.", |i| i.bytes_out as f64),
        ("estuary_stream_dropped_frames_total", "counter", "Frames the stream's slow players lost.", |i| i.frames_dropped as f64),
        ("estuary_stream_publish_dropped_frames_total", "counter", "Frames a datagram publisher lost to the stream's full input queue.", |i| i.publish_dropped as f64),
        ("estuary_stream_output_lost_frames_total", "counter", "Frames HLS, DASH or DVR lost to a disk that could not keep up (each loss a recorded gap).", |i| i.output_frames_lost as f64),
        ("estuary_stream_restarts_total", "counter", "Panics the stream actor caught and recovered from.", |i| i.restarts as f64),
        ("estuary_stream_receive_rate_bytes_per_second", "gauge", "Receive rate over 30 s.", |i| i.kbps_in_30s as f64 * 1000.0 / 8.0),
    ];
    for (name, kind, help, pick) in per_stream {
        f.header(name, kind, help);
        for ((vhost, app, stream), info) in &ranked {
            // One app/stream may be live on several vhosts: a named vhost is a label.
            if vhost == "__defaultVhost__" {
                f.sample(name, &[("app", app), ("stream", stream)], pick(info));
            } else {
                f.sample(name, &[("vhost", vhost), ("app", app), ("stream", stream)], pick(info));
            }
        }
    }
    Ok(out)
}

fn forward_state(state: &estuary_actors::forward::ForwardState) -> &'static str {
    use estuary_actors::forward::ForwardState;
    match state {
        ForwardState::Connecting => "connecting",
        ForwardState::Live => "live",
        ForwardState::Retrying { .. } => "retrying",
        ForwardState::Stopped => "stopped",
    }
}
