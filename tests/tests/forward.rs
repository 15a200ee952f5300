//! Forwarding between two real nodes: a destination that goes away and comes back, one
//! publish restreamed to four destinations (RTMP, RTMPS through a TLS listener with a
//! self-signed certificate, SRT, and one named by a forward backend), and destinations that
//! are refused or unreachable.

use estuary_tests::ffmpeg::{decode, probe_streams, publish, stream_of, Source};
use estuary_tests::hook_server::HookServer;
use estuary_tests::tls_proxy::TlsProxy;
use estuary_tests::{http, wait_until, Node, Scratch};
use serde_json::Value;
use std::time::Duration;

fn forwards(node: &Node) -> Vec<Value> {
    node.api("/api/v1/forwards")["forwards"].as_array().cloned().unwrap_or_default()
}

fn assert_plays(url: &str) {
    let streams = probe_streams(url);
    assert!(stream_of(&streams, "video").is_some() && stream_of(&streams, "audio").is_some(), "{url}: {streams:?}");
}

#[test]
fn forward_survives_the_destination_restarting() {
    let scratch_b = Scratch::new("forward-b");
    let mut b = Node::start(&scratch_b, &[]);
    let scratch_a = Scratch::new("forward-a");
    let apps = format!("{{ live = [\"rtmp://127.0.0.1:{}/live\"] }}", b.ports.rtmp);
    let a = Node::start(&scratch_a, &[("ESTUARY_FORWARD__APPS", &apps)]);
    let _publisher = publish(&a.rtmp_url("live/s"), &Source::default(), &scratch_a, "publisher");
    b.wait_live("live/s", Duration::from_secs(30));
    assert_plays(&b.rtmp_url("live/s"));

    b.kill();
    std::thread::sleep(Duration::from_secs(10));
    b.restart();
    b.wait_live("live/s", Duration::from_secs(45));
    assert_plays(&b.flv_url("live/s"));
    let (ok, errors) = decode(&b.rtmp_url("live/s"), 5);
    assert!(ok && errors.trim().is_empty(), "{errors}");

    let list = forwards(&a);
    assert_eq!(list.len(), 1, "{list:?}");
    let forward = &list[0];
    assert_eq!(forward["state"], "live", "{forward}");
    assert_eq!(forward["origin"], "config");
    assert!(forward["retries"].as_u64().unwrap_or(0) >= 1, "{forward}");
    assert!(forward["connects"].as_u64().unwrap_or(0) >= 2, "{forward}");
    assert!(forward["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{forward}");
    assert!(forward["bytes_sent"].as_u64().unwrap_or(0) > 100_000, "{forward}");
    assert!(a.log().contains("forward failed; will retry"), "log:\n{}", a.log());
}

#[test]
fn one_publish_to_several_destinations_and_bad_ones_refused() {
    let scratch_b = Scratch::new("restream-b");
    let b = Node::start(&scratch_b, &[]);
    let scratch_a = Scratch::new("restream-a");
    // An RTMPS listener in front of B, trusted by A through forward.tls_ca_file.
    let tls = TlsProxy::start(b.ports.rtmp);
    let ca = scratch_a.path("test-ca.pem");
    tls.write_cert(&ca);
    // A forward backend that names one more destination for every publish.
    let b_rtmp = b.ports.rtmp;
    let backend = HookServer::start(move |body| {
        let stream = body["stream"].as_str().unwrap_or_default();
        serde_json::json!({ "code": 0, "data": { "urls": [format!("rtmp://127.0.0.1:{b_rtmp}/live/{stream}_from_backend")] } }).to_string()
    });
    // Destinations on this machine, added through the API: allowed explicitly.
    let a = Node::start(&scratch_a, &[("ESTUARY_FORWARD__TLS_CA_FILE", &ca.display().to_string()), ("ESTUARY_FORWARD__BACKEND", &backend.url("/forward")), ("ESTUARY_FORWARD__DENY_PRIVATE", "false")]);
    let _publisher = publish(&a.rtmp_url("live/show"), &Source::default(), &scratch_a, "publisher");
    a.wait_live("live/show", Duration::from_secs(20));
    let destinations = [
        format!("rtmp://127.0.0.1:{}/live/one", b.ports.rtmp),
        format!("rtmp://127.0.0.1:{}/live/[stream]_two", b.ports.rtmp),
        format!("srt://127.0.0.1:{}?streamid=#!::r=live/three,m=publish", b.ports.srt),
        format!("rtmps://127.0.0.1:{}/live/four", tls.port()),
    ];
    for url in &destinations {
        let body = serde_json::json!({ "app": "live", "stream": "show", "url": url }).to_string();
        let response = http::send(a.ports.api, "POST", "/api/v1/forwards", &[("Content-Type", "application/json")], body.as_bytes()).expect("API");
        assert_eq!(response.status, 200, "{url}: {}", String::from_utf8_lossy(&response.body));
    }
    for stream in ["live/one", "live/show_two", "live/three", "live/four", "live/show_from_backend"] {
        b.wait_live(stream, Duration::from_secs(30));
    }
    assert_eq!(backend.calls_of("on_forward").len(), 1, "{:?}", backend.calls());
    // All three play, and the one that arrived over SRT plays over SRT and RTMP alike.
    for url in [b.rtmp_url("live/one"), b.flv_url("live/show_two"), b.srt_url("live/three", false, ""), b.rtmp_url("live/three"), b.rtmp_url("live/four"), b.flv_url("live/show_from_backend")] {
        assert_plays(&url);
    }
    assert_eq!(b.stream_info("live/three").unwrap()["publish"]["protocol"], "srt");

    // Bad destinations: a scheme we cannot push to is refused at once; an unreachable one
    // is accepted and retried, with the reason in the API; the others carry on.
    let refused = http::send(a.ports.api, "POST", "/api/v1/forwards", &[("Content-Type", "application/json")], br#"{"app":"live","stream":"show","url":"http://127.0.0.1/x"}"#).expect("API");
    assert_eq!(refused.status, 400);
    let message: Value = serde_json::from_slice(&refused.body).unwrap();
    assert!(message["message"].as_str().is_some_and(|m| m.contains("only rtmp://, rtmps:// and srt://")), "{message}");
    let closed_port = estuary_tests::free_port();
    let body = serde_json::json!({ "app": "live", "stream": "show", "url": format!("rtmp://127.0.0.1:{closed_port}/live") }).to_string();
    let response = http::send(a.ports.api, "POST", "/api/v1/forwards", &[("Content-Type", "application/json")], body.as_bytes()).expect("API");
    assert_eq!(response.status, 200);
    let unreachable = |list: &[Value]| list.iter().find(|f| f["url"].as_str().is_some_and(|u| u.contains(&closed_port.to_string()))).cloned();
    assert!(
        wait_until(Duration::from_secs(15), || unreachable(&forwards(&a)).is_some_and(|f| f["state"] == "retrying" && f["last_error"].as_str().is_some_and(|e| e.contains("connect")))),
        "unreachable destination not reported: {:?}",
        forwards(&a)
    );
    let live = forwards(&a).iter().filter(|f| f["state"] == "live").count();
    assert_eq!(live, 5, "{:?}", forwards(&a));
    assert!(forwards(&a).iter().any(|f| f["origin"] == "backend"), "{:?}", forwards(&a));
    let (ok, errors) = decode(&b.rtmp_url("live/one"), 3);
    assert!(ok && errors.trim().is_empty(), "{errors}");

    // Removing a forward stops it.
    let id = unreachable(&forwards(&a)).unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(http::delete(a.ports.api, &format!("/api/v1/forwards/{id}")).unwrap().status, 200);
    assert!(unreachable(&forwards(&a)).is_none());
    assert_eq!(http::delete(a.ports.api, "/api/v1/forwards/999999").unwrap().status, 404);
}
