//! Operating the node: the API's clients and streams, kicking a client, HTTP callbacks that
//! decide publish and play, signed URLs, CIDR rules, API authentication, Prometheus metrics,
//! and bad API input.

use estuary_tests::ffmpeg::{probe_streams, publish, record, run, Source};
use estuary_tests::hook_server::HookServer;
use estuary_tests::{estuary_bin, http, wait_until, Node, Scratch};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn clients(node: &Node) -> Vec<Value> {
    node.api("/api/v1/clients?count=1000")["clients"].as_array().cloned().unwrap_or_default()
}

fn publish_refused(node: &Node, path: &str, scratch: &Scratch, name: &str) -> String {
    let mut publisher = publish(&node.rtmp_url(path), &Source { duration: Some(5.0), ..Source::default() }, scratch, name);
    let status = publisher.wait(Duration::from_secs(20)).expect("a refused publisher exits");
    assert!(!status.success(), "publishing {path} was not refused");
    publisher.stderr()
}

#[test]
fn api_lists_clients_and_kicking_one_ends_only_it() {
    let scratch = Scratch::new("kick");
    let node = Node::start(&scratch, &[]);
    let _publisher = publish(&node.rtmp_url("live/kick"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/kick", Duration::from_secs(20));
    let mut rtmp_a = record(&node.rtmp_url("live/kick"), &scratch.path("a.flv"), None, &scratch, "rtmp-a");
    let mut rtmp_b = record(&node.rtmp_url("live/kick"), &scratch.path("b.flv"), None, &scratch, "rtmp-b");
    let mut flv = record(&node.flv_url("live/kick"), &scratch.path("c.flv"), None, &scratch, "flv");
    assert!(
        wait_until(Duration::from_secs(15), || clients(&node).iter().filter(|c| c["type"] == "play").count() == 3),
        "players not listed: {:?}",
        clients(&node)
    );
    let list = clients(&node);
    let publishers: Vec<&Value> = list.iter().filter(|c| c["type"] == "publish").collect();
    assert_eq!(publishers.len(), 1);
    assert_eq!(publishers[0]["protocol"], "rtmp");
    assert_eq!(publishers[0]["stream"], "live/kick");
    assert!(list.iter().any(|c| c["protocol"] == "http-flv" && c["type"] == "play"));
    let info = node.stream_info("live/kick").expect("stream listed");
    assert_eq!(info["players"], 3);
    let by_id = node.api(&format!("/api/v1/streams/{}", info["id"].as_str().unwrap_or("")));
    assert_eq!(by_id["stream"]["url"], "/live/kick");

    // Kick one RTMP player: it ends, the others keep playing.
    let victim = list.iter().find(|c| c["protocol"] == "rtmp" && c["type"] == "play").expect("an RTMP player")["id"].as_str().unwrap_or("").to_string();
    assert_eq!(node.api(&format!("/api/v1/clients/{victim}"))["client"]["id"], victim);
    let response = http::delete(node.ports.api, &format!("/api/v1/clients/{victim}")).expect("DELETE");
    assert_eq!(response.status, 200);
    assert!(wait_until(Duration::from_secs(5), || !clients(&node).iter().any(|c| c["id"] == victim.as_str())), "kicked client still listed");
    let ended = wait_until(Duration::from_secs(10), || !rtmp_a.running() || !rtmp_b.running());
    assert!(ended, "no RTMP player ended after the kick");
    assert!(rtmp_a.running() != rtmp_b.running(), "exactly one RTMP player must end");
    assert!(flv.running(), "the HTTP-FLV player was disturbed");
    assert_eq!(clients(&node).iter().filter(|c| c["type"] == "play").count(), 2);

    // Kick the HTTP-FLV player too.
    let flv_id = clients(&node).iter().find(|c| c["protocol"] == "http-flv").expect("FLV player")["id"].as_str().unwrap_or("").to_string();
    assert_eq!(http::delete(node.ports.api, &format!("/api/v1/clients/{flv_id}")).expect("DELETE").status, 200);
    assert!(flv.wait(Duration::from_secs(20)).is_some(), "kicked HTTP-FLV player still running");
}

#[test]
fn hooks_decide_publish_and_play_and_are_notified() {
    let scratch = Scratch::new("hooks");
    let hooks = HookServer::start(|body| {
        let denied = body["stream"] == "forbidden" || body["param"].as_str().unwrap_or("").contains("deny=1");
        if denied { r#"{"code":403}"#.to_string() } else { r#"{"code":0}"#.to_string() }
    });
    let url = hooks.url("/hooks");
    let node = Node::start(
        &scratch,
        &[
            ("ESTUARY_HOOKS__ON_CONNECT", &format!("[\"{url}\"]")),
            ("ESTUARY_HOOKS__ON_PUBLISH", &format!("[\"{url}\"]")),
            ("ESTUARY_HOOKS__ON_UNPUBLISH", &format!("[\"{url}\"]")),
            ("ESTUARY_HOOKS__ON_PLAY", &format!("[\"{url}\"]")),
            ("ESTUARY_HOOKS__ON_STOP", &format!("[\"{url}\"]")),
            ("ESTUARY_HOOKS__ON_CLOSE", &format!("[\"{url}\"]")),
            ("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "500"),
        ],
    );
    let stderr = publish_refused(&node, "live/forbidden", &scratch, "forbidden");
    assert!(stderr.contains("on_publish hook"), "ffmpeg did not show the hook's refusal: {stderr}");
    let mut allowed = publish(&node.rtmp_url("live/allowed?token=abc"), &Source { duration: Some(6.0), ..Source::default() }, &scratch, "allowed");
    node.wait_live("live/allowed", Duration::from_secs(20));

    let publish_calls = hooks.calls_of("on_publish");
    let call = publish_calls.iter().find(|c| c["stream"] == "allowed").expect("on_publish for live/allowed");
    for field in ["client_id", "ip", "vhost", "app", "stream", "param", "server_id"] {
        assert!(!call[field].is_null(), "on_publish body lacks {field}: {call}");
    }
    assert_eq!(call["app"], "live");
    assert_eq!(call["ip"], "127.0.0.1");
    assert_eq!(call["param"], "?token=abc");
    assert!(!hooks.calls_of("on_connect").is_empty(), "no on_connect");

    // Play: allowed normally, refused (HTTP 403) when the hook says no.
    let streams = probe_streams(&node.flv_url("live/allowed"));
    assert!(!streams.is_empty());
    assert_eq!(http::status_only(node.ports.http, "/live/allowed.flv?deny=1").expect("answer"), 403);
    let mut command = Command::new("ffprobe");
    command.args(["-v", "error", "-rw_timeout", "10000000", &node.rtmp_url("live/allowed?deny=1")]);
    assert!(!run(command, Duration::from_secs(30)).success(), "RTMP play with deny=1 was not refused");
    assert!(hooks.calls_of("on_play").len() >= 3);

    assert!(allowed.wait(Duration::from_secs(20)).is_some());
    assert!(wait_until(Duration::from_secs(10), || !hooks.calls_of("on_unpublish").is_empty()), "no on_unpublish");
    assert!(wait_until(Duration::from_secs(10), || !hooks.calls_of("on_stop").is_empty()), "no on_stop");
    assert!(wait_until(Duration::from_secs(10), || hooks.calls_of("on_close").iter().any(|c| c["recv_bytes"].as_u64().unwrap_or(0) > 0)), "no on_close with byte counts");
}

#[test]
fn hook_server_down_denies_unless_fail_open() {
    let scratch = Scratch::new("hookdown");
    let dead = format!("[\"http://127.0.0.1:{}/dead\"]", estuary_tests::free_port());
    let strict = Node::start(&scratch, &[("ESTUARY_HOOKS__ON_PUBLISH", &dead), ("ESTUARY_HOOKS__TIMEOUT_MS", "1000")]);
    let stderr = publish_refused(&strict, "live/any", &scratch, "strict");
    assert!(stderr.contains("failed"), "{stderr}");

    let scratch_open = Scratch::new("hookopen");
    let lenient = Node::start(&scratch_open, &[("ESTUARY_HOOKS__ON_PUBLISH", &dead), ("ESTUARY_HOOKS__TIMEOUT_MS", "1000"), ("ESTUARY_HOOKS__FAIL_OPEN", "[\"on_publish\"]")]);
    let _publisher = publish(&lenient.rtmp_url("live/any"), &Source::default(), &scratch_open, "lenient");
    lenient.wait_live("live/any", Duration::from_secs(20));
}

#[test]
fn signed_urls_play_until_expiry_and_tampering_is_refused() {
    let scratch = Scratch::new("tokens");
    let node = Node::start(&scratch, &[("ESTUARY_AUTH__TOKEN_SECRET", "correct horse"), ("ESTUARY_AUTH__REQUIRE_TOKEN", "[\"play\"]")]);
    let _publisher = publish(&node.rtmp_url("live/signed"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/signed", Duration::from_secs(20));

    let mint = |ttl: u64| -> String {
        let body = format!(r#"{{"action":"play","app":"live","stream":"signed","ttl_seconds":{ttl}}}"#);
        let response = http::send(node.ports.api, "POST", "/api/v1/tokens", &[("Content-Type", "application/json")], body.as_bytes()).expect("POST");
        assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
        let json: Value = serde_json::from_slice(&response.body).expect("JSON");
        json["token"].as_str().expect("token").to_string()
    };
    let plays = |query: &str| -> bool {
        let rtmp = {
            let mut command = Command::new("ffprobe");
            command.args(["-v", "error", "-rw_timeout", "10000000", &format!("{}?{query}", node.rtmp_url("live/signed"))]);
            run(command, Duration::from_secs(30)).success()
        };
        let flv = http::status_only(node.ports.http, &format!("/live/signed.flv?{query}")).unwrap_or(0);
        let flv_ok = match flv {
            200 => true,
            403 => false,
            other => panic!("HTTP-FLV answered {other}"),
        };
        assert_eq!(rtmp, flv_ok, "RTMP and HTTP-FLV disagree for {query}");
        rtmp
    };
    let good = mint(3600);
    assert!(plays(&format!("token={good}")), "a valid token was refused");
    assert!(!plays("nothing=1"), "no token was accepted");
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap_or('0');
    tampered.push(if last == '0' { '1' } else { '0' });
    assert!(!plays(&format!("token={tampered}")), "a tampered token was accepted");

    // A token for another stream, and one minted by the CLI for this one.
    let other = Command::new(estuary_bin())
        .args(["token", "--action", "play", "--stream", "live/other", "--ttl", "600"])
        .env("ESTUARY_AUTH__TOKEN_SECRET", "correct horse")
        .output()
        .expect("estuary token");
    assert!(other.status.success(), "{}", String::from_utf8_lossy(&other.stderr));
    assert!(!plays(&format!("token={}", String::from_utf8_lossy(&other.stdout).trim())), "a token for another stream was accepted");
    let cli = Command::new(estuary_bin())
        .args(["token", "--action", "play", "--stream", "live/signed", "--ttl", "600"])
        .env("ESTUARY_AUTH__TOKEN_SECRET", "correct horse")
        .output()
        .expect("estuary token");
    assert!(plays(&format!("token={}", String::from_utf8_lossy(&cli.stdout).trim())), "the CLI's token was refused");

    // A short-lived token works, then expires. (Checked over HTTP-FLV first: an RTMP probe
    // takes long enough that the token could expire between the two checks.)
    let short = mint(4);
    assert_eq!(http::status_only(node.ports.http, &format!("/live/signed.flv?token={short}")).unwrap_or(0), 200, "a fresh short-lived token was refused");
    // Wait for expiry over HTTP-FLV, then check that RTMP refuses it too (one probe each, so
    // the two checks cannot straddle the expiry moment and disagree).
    assert!(
        wait_until(Duration::from_secs(15), || http::status_only(node.ports.http, &format!("/live/signed.flv?token={short}")).unwrap_or(0) == 403),
        "an expired token was still accepted over HTTP-FLV"
    );
    let mut command = Command::new("ffprobe");
    command.args(["-v", "error", "-rw_timeout", "10000000", &format!("{}?token={short}", node.rtmp_url("live/signed"))]);
    assert!(!run(command, Duration::from_secs(30)).success(), "an expired token was still accepted over RTMP");
    assert!(node.log().contains("token expired"), "expiry not logged");
}

#[test]
fn cidr_rules_refuse_publishers() {
    let scratch = Scratch::new("cidr");
    let node = Node::start(&scratch, &[("ESTUARY_AUTH__PUBLISH_DENY", "[\"127.0.0.0/8\"]")]);
    let stderr = publish_refused(&node, "live/blocked", &scratch, "blocked");
    assert!(stderr.contains("denied"), "{stderr}");
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines().find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' ')).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[test]
fn metrics_pass_promtool_and_move() {
    let scratch = Scratch::new("metrics");
    let metrics_port = estuary_tests::free_port();
    let node = Node::start(&scratch, &[("ESTUARY_METRICS__LISTEN", &format!("127.0.0.1:{metrics_port}"))]);
    let before = String::from_utf8_lossy(&http::get(node.ports.api, "/metrics").expect("metrics").body).into_owned();
    let _publisher = publish(&node.rtmp_url("live/measured"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/measured", Duration::from_secs(20));
    let mut player = record(&node.flv_url("live/measured"), &scratch.path("p.flv"), Some(3.0), &scratch, "player");
    assert!(player.wait(Duration::from_secs(30)).is_some());
    let after = String::from_utf8_lossy(&http::get(node.ports.api, "/metrics").expect("metrics").body).into_owned();
    let separate = http::get(metrics_port, "/metrics").expect("metrics port");
    assert_eq!(separate.status, 200);

    for text in [&before, &after] {
        let path = scratch.path("metrics.txt");
        std::fs::write(&path, text).expect("write metrics");
        let output = Command::new("sh").arg("-c").arg(format!("promtool check metrics < {}", path.display())).output().expect("promtool (tests/run installs it)");
        assert!(output.status.success(), "promtool: {}{}\n{text}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    }
    assert!(metric(&after, "estuary_connections_total{protocol=\"rtmp\"}") > metric(&before, "estuary_connections_total{protocol=\"rtmp\"}"));
    assert!(metric(&after, "estuary_connections_total{protocol=\"http-flv\"}") >= 1.0);
    assert!(metric(&after, "estuary_received_bytes_total") > metric(&before, "estuary_received_bytes_total") + 10_000.0);
    assert!(metric(&after, "estuary_sent_bytes_total") > metric(&before, "estuary_sent_bytes_total") + 10_000.0);
    assert_eq!(metric(&after, "estuary_streams"), 1.0);
    assert!(metric(&after, "estuary_stream_received_bytes_total{app=\"live\",stream=\"measured\"}") > 0.0);
}

#[test]
fn bad_api_input_gets_srs_style_errors_and_auth_is_enforced() {
    let scratch = Scratch::new("badapi");
    let node = Node::start(&scratch, &[("ESTUARY_API__TOKEN", "let-me-in"), ("ESTUARY_AUTH__TOKEN_SECRET", "s")]);
    let bearer = [("Authorization", "Bearer let-me-in")];
    let ask = |method: &str, path: &str, body: &[u8]| http::send(node.ports.api, method, path, &bearer, body).expect("API answer");
    assert_eq!(http::get(node.ports.api, "/api/v1/streams").expect("answer").status, 401);
    let basic_wrong = http::send(node.ports.api, "GET", "/api/v1/streams", &[("Authorization", "Basic dXNlcjpwYXNz")], b"").expect("answer");
    assert_eq!(basic_wrong.status, 401);
    assert_eq!(ask("GET", "/api/v1/streams", b"").status, 200);
    for (method, path, body, status) in [
        ("GET", "/api/v1/clients/999999", &b""[..], 404),
        ("GET", "/api/v1/clients/abc", b"", 400),
        ("DELETE", "/api/v1/clients/999999", b"", 404),
        ("GET", "/api/v1/streams/0000000000000000", b"", 404),
        ("GET", "/api/v1/streams?count=100000000", b"", 400),
        ("GET", "/api/v1/clients?count=-1", b"", 400),
        ("GET", "/api/v1/clients?start=abc", b"", 400),
        ("POST", "/api/v1/tokens", b"{not json", 400),
        ("POST", "/api/v1/tokens", br#"{"action":"fly","app":"a","stream":"b"}"#, 400),
        ("GET", "/api/v1/nothing", b"", 404),
    ] {
        let response = ask(method, path, body);
        assert_eq!(response.status, status, "{method} {path}: {}", String::from_utf8_lossy(&response.body));
        let json: Value = serde_json::from_slice(&response.body).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {:?}", String::from_utf8_lossy(&response.body)));
        assert_eq!(json["code"], status, "{method} {path}: {json}");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}: {json}");
    }
    // Still serving.
    assert_eq!(ask("GET", "/api/v1/versions", b"").status, 200);
}

/// Differences between `value` and `shape`: a shape is an object of shapes, a one-element
/// array (every element has that shape) or a JSON type name (`string`, `number`, `bool`,
/// `object`, `array`). Fields the value has beyond the shape are fine (Estuary adds some).
fn shape_differences(path: &str, value: &Value, shape: &Value) -> Vec<String> {
    match shape {
        Value::Object(fields) => match value {
            Value::Object(_) => fields.iter().flat_map(|(name, inner)| shape_differences(&format!("{path}.{name}"), &value[name], inner)).collect(),
            other => vec![format!("{path}: an object expected, got {other}")],
        },
        Value::Array(items) => match value.as_array() {
            Some(values) => values.iter().enumerate().flat_map(|(i, v)| shape_differences(&format!("{path}[{i}]"), v, &items[0])).collect(),
            None => vec![format!("{path}: an array expected, got {value}")],
        },
        Value::String(kind) => {
            let fits = match kind.as_str() {
                "string" => value.is_string(),
                "number" => value.is_number(),
                "bool" => value.is_boolean(),
                "object" => value.is_object(),
                "array" => value.is_array(),
                _ => false,
            };
            if fits { Vec::new() } else { vec![format!("{path}: {kind} expected, got {value}")] }
        }
        _ => vec![format!("{path}: bad shape {shape}")],
    }
}

#[test]
fn srs_api_paths_answer_with_and_without_the_trailing_slash_in_srs_shapes() {
    let scratch = Scratch::new("srs-api");
    let node = Node::start(&scratch, &[]);
    let _publisher = publish(&node.rtmp_url("live/srsapi"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/srsapi", Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(15), || node.stream_info("live/srsapi").is_some_and(|s| s["video"]["width"].is_number() && s["audio"]["sample_rate"].is_number())),
        "stream never described: {:?}",
        node.stream_info("live/srsapi")
    );
    let vhost_id = node.api("/api/v1/vhosts")["vhosts"][0]["id"].as_str().expect("a vhost id").to_string();
    let stream_id = node.stream_info("live/srsapi").expect("stream")["id"].as_str().expect("stream id").to_string();
    let client_id = clients(&node)[0]["id"].as_str().expect("client id").to_string();
    // Field names and JSON types as SRS documents them for each path (written from SRS's
    // HTTP API page and its console's use of the answers).
    let kbps = serde_json::json!({ "recv_30s": "number", "send_30s": "number" });
    let stream = serde_json::json!({
        "id": "string", "name": "string", "vhost": "string", "app": "string", "url": "string",
        "live_ms": "number", "clients": "number", "frames": "number", "send_bytes": "number", "recv_bytes": "number",
        "kbps": kbps, "publish": { "active": "bool", "cid": "string" },
        "video": { "codec": "string", "profile": "string", "level": "string", "width": "number", "height": "number" },
        "audio": { "codec": "string", "sample_rate": "number", "channel": "number", "profile": "string" },
    });
    let vhost = serde_json::json!({
        "id": "string", "name": "string", "enabled": "bool", "clients": "number", "streams": "number",
        "send_bytes": "number", "recv_bytes": "number", "kbps": kbps, "hls": { "enabled": "bool", "fragment": "number" },
    });
    let client = serde_json::json!({ "id": "string", "vhost": "string", "ip": "string", "alive": "number", "send_bytes": "number", "recv_bytes": "number", "kbps": kbps, "publish": "bool", "url": "string", "name": "string" });
    let paths: Vec<(String, Value)> = vec![
        ("/api".into(), serde_json::json!({ "urls": { "v1": "string" } })),
        ("/api/v1".into(), serde_json::json!({ "urls": { "versions": "string", "summaries": "string", "rusages": "string", "self_proc_stats": "string", "system_proc_stats": "string", "meminfos": "string", "authors": "string", "features": "string", "requests": "string", "vhosts": "string", "streams": "string", "clients": "string" } })),
        ("/api/v1/versions".into(), serde_json::json!({ "data": { "major": "number", "minor": "number", "revision": "number", "version": "string" } })),
        ("/api/v1/summaries".into(), serde_json::json!({ "data": { "ok": "bool", "self": { "version": "string", "pid": "number" } } })),
        ("/api/v1/rusages".into(), serde_json::json!({ "data": { "ok": "bool", "sample_time": "number", "ru_utime": "number", "ru_stime": "number", "ru_maxrss": "number", "ru_minflt": "number", "ru_majflt": "number", "ru_nvcsw": "number", "ru_nivcsw": "number" } })),
        ("/api/v1/self_proc_stats".into(), serde_json::json!({ "data": { "ok": "bool", "sample_time": "number", "percent": "number", "pid": "number", "comm": "string", "state": "string", "ppid": "number", "utime": "number", "stime": "number", "num_threads": "number", "vsize": "number", "rss": "number" } })),
        ("/api/v1/system_proc_stats".into(), serde_json::json!({ "data": { "ok": "bool", "sample_time": "number", "percent": "number", "user": "number", "nice": "number", "sys": "number", "idle": "number" } })),
        ("/api/v1/meminfos".into(), serde_json::json!({ "data": { "ok": "bool", "sample_time": "number", "percent_ram": "number", "percent_swap": "number", "MemActive": "number", "RealInUse": "number", "NotInUse": "number", "MemTotal": "number", "MemFree": "number", "Buffers": "number", "Cached": "number", "SwapTotal": "number", "SwapFree": "number" } })),
        ("/api/v1/features".into(), serde_json::json!({ "data": { "features": { "hls": "bool", "dvr": "bool", "api": "bool", "httpd": "bool", "callback": "bool" } } })),
        ("/api/v1/requests".into(), serde_json::json!({ "data": { "uri": "string", "path": "string", "METHOD": "string", "headers": "array" } })),
        ("/api/v1/authors".into(), serde_json::json!({ "data": { "license": "string", "contributors": "string" } })),
        ("/api/v1/vhosts".into(), serde_json::json!({ "vhosts": [vhost.clone()] })),
        (format!("/api/v1/vhosts/{vhost_id}"), serde_json::json!({ "vhost": vhost })),
        ("/api/v1/streams?start=0&count=10".into(), serde_json::json!({ "streams": [stream.clone()] })),
        (format!("/api/v1/streams/{stream_id}"), serde_json::json!({ "stream": stream })),
        ("/api/v1/clients?start=0&count=10".into(), serde_json::json!({ "clients": [client.clone()] })),
        (format!("/api/v1/clients/{client_id}"), serde_json::json!({ "client": client })),
    ];
    for (path, shape) in &paths {
        let (bare, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), format!("?{q}")),
            None => (path.clone(), String::new()),
        };
        for variant in [format!("{bare}{query}"), format!("{bare}/{query}")] {
            let response = http::get(node.ports.api, &variant).unwrap_or_else(|e| panic!("{variant}: {e}"));
            assert_eq!(response.status, 200, "{variant}: {}", String::from_utf8_lossy(&response.body));
            let body: Value = serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("{variant}: not JSON ({e})"));
            assert_eq!(body["code"], 0, "{variant}: {body}");
            assert!(body["server"].is_string(), "{variant}: {body}");
            let differences = shape_differences(&variant, &body, shape);
            assert!(differences.is_empty(), "{variant} differs from SRS's shape:\n{}\n{body}", differences.join("\n"));
        }
    }
    // The list answers are not empty: the shapes above were checked against real entries.
    assert_eq!(node.api("/api/v1/streams/")["streams"].as_array().map(Vec::len), Some(1));
    assert!(node.api("/api/v1/clients/")["clients"].as_array().is_some_and(|c| !c.is_empty()));
    // The console's links: a client's vhost is a vhost's id; a publisher's rate is its media.
    let publisher = || clients(&node).into_iter().find(|c| c["publish"] == true).expect("the publisher");
    assert_eq!(publisher()["vhost"].as_str(), Some(vhost_id.as_str()), "{}", publisher());
    assert!(wait_until(Duration::from_secs(10), || publisher()["kbps"]["recv_30s"].as_f64().is_some_and(|k| k > 10.0)), "the publisher's rate: {}", publisher());
    let requests = node.api("/api/v1/requests/?x=1");
    assert_eq!(requests["data"]["query"]["x"], "1", "{requests}");
    // An unknown path is still a JSON 404, slash or not.
    for path in ["/api/v1/nothing", "/api/v1/nothing/"] {
        let response = http::get(node.ports.api, path).expect(path);
        assert_eq!(response.status, 404, "{path}");
    }
}

/// A fresh self-signed certificate for 127.0.0.1 written as `<name>.crt` and `<name>.key`;
/// the certificate's PEM.
fn self_signed(scratch: &Scratch, name: &str) -> String {
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("self-signed certificate");
    std::fs::write(scratch.path(&format!("{name}.key")), pair.key_pair.serialize_pem()).unwrap();
    std::fs::write(scratch.path(&format!("{name}.crt")), pair.cert.pem()).unwrap();
    pair.cert.pem()
}

/// The certificate a TLS server on `port` presents, PEM with white space removed (Python's
/// ssl module: a TLS client that is not ours).
fn served_certificate(port: u16) -> String {
    let out = Command::new("python3").args(["-c", "import ssl, sys; print(ssl.get_server_certificate(('127.0.0.1', int(sys.argv[1]))))", &port.to_string()]).output().expect("python3");
    String::from_utf8_lossy(&out.stdout).split_whitespace().collect()
}

#[test]
fn https_serves_hls_flv_and_the_api_and_takes_a_renewed_certificate() {
    let scratch = Scratch::new("https");
    let first = self_signed(&scratch, "first");
    let (https, https_api) = (estuary_tests::free_port(), estuary_tests::free_port());
    // The node reads the files it is pointed at; a renewal replaces their contents.
    std::fs::copy(scratch.path("first.crt"), scratch.path("server.crt")).unwrap();
    std::fs::copy(scratch.path("first.key"), scratch.path("server.key")).unwrap();
    let (cert_file, key_file) = (scratch.path("server.crt").display().to_string(), scratch.path("server.key").display().to_string());
    let (listen, api_listen) = (format!("127.0.0.1:{https}"), format!("127.0.0.1:{https_api}"));
    let node = Node::start(&scratch, &[("ESTUARY_HTTPS__LISTEN", &listen), ("ESTUARY_HTTPS__API_LISTEN", &api_listen), ("ESTUARY_HTTPS__CERT_FILE", &cert_file), ("ESTUARY_HTTPS__KEY_FILE", &key_file)]);
    let _publisher = publish(&node.rtmp_url("live/tls"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/tls", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(20), || http::get(node.ports.http, "/live/tls.m3u8").is_ok_and(|r| String::from_utf8_lossy(&r.body).matches("#EXTINF").count() >= 2)), "no playlist");

    // HLS and HTTP-FLV over https:// (ffmpeg's TLS client), both tracks, decoded clean.
    for url in [format!("https://127.0.0.1:{https}/live/tls.m3u8"), format!("https://127.0.0.1:{https}/live/tls.flv")] {
        let streams = probe_streams(&url);
        assert!(estuary_tests::ffmpeg::stream_of(&streams, "video").is_some() && estuary_tests::ffmpeg::stream_of(&streams, "audio").is_some(), "{url}: {streams:?}\n{}", node.log());
        let (ok, errors) = estuary_tests::ffmpeg::decode(&url, 3);
        assert!(ok && errors.trim().is_empty(), "{url}: {errors}");
    }
    // The API over TLS (curl).
    let out = Command::new("curl").args(["-sk", &format!("https://127.0.0.1:{https_api}/api/v1/versions")]).output().expect("curl");
    let body: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(body["code"], 0, "{}", String::from_utf8_lossy(&out.stdout));
    let first: String = first.split_whitespace().collect();
    assert_eq!(served_certificate(https), first);

    // A renewed certificate on disk serves new connections, on both listeners.
    let second: String = self_signed(&scratch, "second").split_whitespace().collect();
    std::fs::copy(scratch.path("second.key"), scratch.path("server.key")).unwrap();
    std::fs::copy(scratch.path("second.crt"), scratch.path("server.crt")).unwrap();
    assert!(wait_until(Duration::from_secs(15), || served_certificate(https) == second && served_certificate(https_api) == second), "the renewed certificate is not served:\n{}", node.log());
    assert!(node.log().contains("HTTPS certificate changed on disk"), "{}", node.log());
    // A file that does not load keeps the certificate in use.
    let refusals = || node.log().matches("does not load; the one in use stays").count();
    let before = refusals();
    std::fs::write(scratch.path("server.crt"), "not a certificate\n").unwrap();
    assert!(wait_until(Duration::from_secs(15), || refusals() > before), "{}", node.log());
    assert_eq!(served_certificate(https), second);
    let (ok, errors) = estuary_tests::ffmpeg::decode(&format!("https://127.0.0.1:{https}/live/tls.flv"), 2);
    assert!(ok && errors.trim().is_empty(), "{errors}");
}

#[test]
fn https_without_a_loadable_certificate_stops_the_start_naming_the_file() {
    let scratch = Scratch::new("https-bad");
    self_signed(&scratch, "good");
    std::fs::write(scratch.path("bad.crt"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    std::fs::write(scratch.path("bad.key"), "nothing").unwrap();
    // Each broken file is named, by a start and by -t, with the exit status of a bad configuration.
    for (cert, key, named) in [("bad.crt", "good.key", "https.cert_file"), ("good.crt", "bad.key", "https.key_file")] {
        for check in [false, true] {
            let mut command = Command::new(estuary_bin());
            command
                .current_dir(&scratch.0)
                // A node that starts anyway ends with its (closed) standard input.
                .arg("--exit-on-stdin-close")
                .env("ESTUARY_HTTPS__LISTEN", format!("127.0.0.1:{}", estuary_tests::free_port()))
                .env("ESTUARY_HTTPS__CERT_FILE", scratch.path(cert))
                .env("ESTUARY_HTTPS__KEY_FILE", scratch.path(key))
                .env("ESTUARY_RTMP__LISTEN", format!("127.0.0.1:{}", estuary_tests::free_port()))
                .env("ESTUARY_HTTP__LISTEN", format!("127.0.0.1:{}", estuary_tests::free_port()))
                .env("ESTUARY_API__LISTEN", format!("127.0.0.1:{}", estuary_tests::free_port()))
                .env("ESTUARY_SRT__ENABLED", "false")
                .env("ESTUARY_RTC__ENABLED", "false")
                .env("ESTUARY_GB28181__ENABLED", "false");
            if check {
                command.arg("-t");
            }
            let out = command.output().expect("estuary");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cert}/{key} (-t {check}): {err}");
            assert!(err.contains(named) && err.contains(if named == "https.cert_file" { "bad.crt" } else { "bad.key" }), "{err}");
        }
    }
}
