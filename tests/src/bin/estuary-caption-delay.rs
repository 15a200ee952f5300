//! `estuary-caption-delay`: how long a caption takes from its `POST` to each output of a node
//! on this machine. It posts numbered captions to a live stream, one every `--every-ms`, and
//! watches, all at once: an HTTP-FLV player (the `onTextData` script tag, and the CEA-608
//! caption in the video's SEI), the HLS WebVTT rendition (its playlist and `.vtt` files
//! polled every 100 ms, as an eager player would), the DASH text representation (the MPD and
//! its text segments, polled the same way), the stream's server-sent events and, with
//! `--dvr`, the text track of the DVR recording (an HTTP-MP4 range of the last 10 s, polled
//! every 250 ms). Prints one JSON line with the median and p99 per output, in milliseconds.
//! RTMP players get the same `onTextData` tag as HTTP-FLV players, from the same place.
//!
//! Loopback only: it talks to 127.0.0.1.

use clap::Parser;
use estuary_protocols::container::flv::{FlvDemuxer, TAG_SCRIPT, TAG_VIDEO};
use estuary_tests::load::{median_p99, Dechunker};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(name = "estuary-caption-delay", about = "Caption delay from POST to each output of a node on this machine")]
struct Args {
    /// The node's HTTP port (players).
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// The node's API port (captions are posted there).
    #[arg(long, default_value_t = 1985)]
    api_port: u16,
    /// The live stream, `app/stream`.
    #[arg(long, default_value = "live/livestream")]
    stream: String,
    /// Captions to post.
    #[arg(long, default_value_t = 20)]
    count: usize,
    /// Time between captions, ms (longer than a segment lets every one reach the WebVTT).
    #[arg(long, default_value_t = 1500)]
    every_ms: u64,
    /// Also watch the DVR recording (the node records the stream).
    #[arg(long)]
    dvr: bool,
}

/// The text segments a DASH MPD lists: their URIs (relative to the MPD), from the text
/// AdaptationSet's `SegmentTemplate` and `SegmentTimeline`.
fn dash_text_segments(mpd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = mpd;
    while let Some(at) = rest.find(r#"contentType="text""#) {
        let set = &rest[at..];
        let end = set.find("</AdaptationSet>").unwrap_or(set.len());
        let set_text = &set[..end];
        rest = &set[end..];
        let Some(media) = set_text.split(r#"media=""#).nth(1).and_then(|m| m.split('"').next()) else { continue };
        let mut time = 0u64;
        for entry in set_text.split("<S ").skip(1) {
            let attribute = |name: &str| entry.split(&format!(r#"{name}=""#)).nth(1).and_then(|v| v.split('"').next()).and_then(|v| v.parse::<u64>().ok());
            if let Some(t) = attribute("t") {
                time = t;
            }
            out.push(media.replace("$Time$", &time.to_string()));
            time += attribute("d").unwrap_or(0);
        }
    }
    out
}

/// When each caption (by number) was first seen by one output.
type Seen = Arc<Mutex<HashMap<usize, Instant>>>;

/// The caption numbers in `text` (`cap <n>` written as `cap 007`).
fn numbers(text: &str) -> Vec<usize> {
    text.match_indices("cap ").filter_map(|(at, _)| text.get(at + 4..at + 7)).filter_map(|n| n.parse().ok()).collect()
}

fn note(seen: &Seen, text: &str) {
    let now = Instant::now();
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    for n in numbers(text) {
        seen.entry(n).or_insert(now);
    }
}

/// A GET whose body is read as it comes, given to `each` (dechunked when chunked).
fn stream_get(port: u16, path: &str, mut each: impl FnMut(&[u8])) {
    let Ok(mut socket) = TcpStream::connect(("127.0.0.1", port)) else { return };
    let _ = write!(socket, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let chunked = loop {
        let Ok(n) = socket.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
            buffer.drain(..end + 4);
            break head.contains("transfer-encoding: chunked");
        }
    };
    let mut dechunker = Dechunker::default();
    let mut body = Vec::new();
    loop {
        if chunked {
            body.clear();
            if dechunker.push(&buffer, &mut body).is_err() {
                return;
            }
            each(&body);
        } else {
            each(&buffer);
        }
        buffer.clear();
        let Ok(n) = socket.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// The printable CEA-608 characters of every `GA94` caption SEI in an H.264/H.265 frame.
fn cea608_text(payload: &[u8], out: &mut String) {
    let mut rest = payload;
    while let Some(at) = rest.windows(5).position(|w| w == b"GA94\x03") {
        let data = &rest[at + 5..];
        let count = data.first().map(|b| (b & 0x1f) as usize).unwrap_or(0);
        for triplet in data.get(2..2 + 3 * count).unwrap_or_default().chunks(3) {
            if triplet.len() == 3 && triplet[0] == 0xfc {
                for byte in [triplet[1] & 0x7f, triplet[2] & 0x7f] {
                    if (0x20..0x7f).contains(&byte) {
                        out.push(byte as char);
                    }
                }
            }
        }
        rest = &rest[at + 5..];
    }
}

fn main() {
    let args = Args::parse();
    let (app, stream) = args.stream.split_once('/').unwrap_or(("live", args.stream.as_str()));
    let (app, stream) = (app.to_string(), stream.to_string());
    let outputs = ["flv_ontextdata", "flv_cea608_sei", "hls_webvtt", "sse_event", "dash_webvtt", "dvr_text_track"];
    let seen: Vec<Seen> = outputs.iter().map(|_| Seen::default()).collect();

    // HTTP-FLV: script tags and the video's SEI.
    {
        let (text, sei, port, path) = (seen[0].clone(), seen[1].clone(), args.http_port, format!("/{app}/{stream}.flv"));
        std::thread::spawn(move || {
            let mut demuxer = FlvDemuxer::default();
            let mut captions = String::new();
            stream_get(port, &path, |bytes| {
                demuxer.push(bytes);
                while let Ok(Some(tag)) = demuxer.next_tag() {
                    match tag.tag_type {
                        TAG_SCRIPT => note(&text, &String::from_utf8_lossy(&tag.body)),
                        TAG_VIDEO => {
                            cea608_text(&tag.body, &mut captions);
                            note(&sei, &captions);
                            if captions.len() > 4096 {
                                captions.drain(..2048);
                            }
                        }
                        _ => {}
                    }
                }
            });
        });
    }
    // Server-sent events.
    {
        let (events, port, path) = (seen[3].clone(), args.http_port, format!("/events/{app}/{stream}"));
        std::thread::spawn(move || stream_get(port, &path, |bytes| note(&events, &String::from_utf8_lossy(bytes))));
    }
    // The WebVTT rendition, polled: the master playlist starts the HLS package first.
    let _ = estuary_tests::http::get(args.http_port, &format!("/{app}/{stream}_master.m3u8"));
    {
        let (vtt, port, app, stream) = (seen[2].clone(), args.http_port, app.clone(), stream.clone());
        std::thread::spawn(move || {
            let mut fetched: HashMap<String, ()> = HashMap::new();
            loop {
                if let Ok(playlist) = estuary_tests::http::get(port, &format!("/{app}/{stream}_vtt.m3u8")) {
                    for uri in String::from_utf8_lossy(&playlist.body).lines().filter(|l| l.ends_with(".vtt")) {
                        if fetched.contains_key(uri) {
                            continue;
                        }
                        if let Ok(file) = estuary_tests::http::get(port, &format!("/{app}/{uri}")) {
                            if file.status == 200 {
                                note(&vtt, &String::from_utf8_lossy(&file.body));
                                fetched.insert(uri.to_string(), ());
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }
    // The DASH text representation, polled.
    {
        let (text, port, app, stream) = (seen[4].clone(), args.http_port, app.clone(), stream.clone());
        std::thread::spawn(move || {
            let mut fetched: HashMap<String, ()> = HashMap::new();
            loop {
                if let Ok(mpd) = estuary_tests::http::get(port, &format!("/{app}/{stream}.mpd")) {
                    for uri in dash_text_segments(&String::from_utf8_lossy(&mpd.body)) {
                        if fetched.contains_key(&uri) {
                            continue;
                        }
                        if let Ok(file) = estuary_tests::http::get(port, &format!("/{app}/{uri}")) {
                            if file.status == 200 {
                                note(&text, &String::from_utf8_lossy(&file.body));
                                fetched.insert(uri, ());
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }
    // The DVR recording's text track (3GPP timed text: the caption's UTF-8 in the samples),
    // through an HTTP-MP4 range of the last 10 s (open-ended: followed to its current end).
    if args.dvr {
        let (text, port, app, stream) = (seen[5].clone(), args.http_port, app.clone(), stream.clone());
        std::thread::spawn(move || loop {
            let from = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0) - 10_000;
            let mut path = format!("/dvr/{app}/{stream}.mp4?start={from}");
            for _ in 0..2 {
                let Ok(response) = estuary_tests::http::get(port, &path) else { break };
                match response.headers.iter().find(|(name, _)| name == "location") {
                    Some((_, location)) if (300..400).contains(&response.status) => path = location.clone(),
                    _ => {
                        if response.status == 200 {
                            note(&text, &String::from_utf8_lossy(&response.body));
                        }
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        });
    }
    std::thread::sleep(Duration::from_secs(3));

    let mut posted: HashMap<usize, Instant> = HashMap::new();
    let mut failures = 0;
    for n in 0..args.count {
        let body = format!(r#"{{"text":"cap {n:03}","language":"eng"}}"#);
        let at = Instant::now();
        match estuary_tests::http::send(args.api_port, "POST", &format!("/api/v1/streams/{app}/{stream}/captions"), &[("Content-Type", "application/json")], body.as_bytes()) {
            Ok(response) if response.status == 200 => {
                posted.insert(n, at);
            }
            _ => failures += 1,
        }
        std::thread::sleep(Duration::from_millis(args.every_ms));
    }
    // The last caption's segment completes within a segment or two.
    std::thread::sleep(Duration::from_secs(5));

    let mut result = serde_json::json!({ "stream": format!("{app}/{stream}"), "captions": posted.len(), "post_failures": failures });
    for (name, seen) in outputs.iter().zip(&seen) {
        if *name == "dvr_text_track" && !args.dvr {
            continue;
        }
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut delays: Vec<f64> = posted.iter().filter_map(|(n, at)| seen.get(n).map(|s| s.saturating_duration_since(*at).as_secs_f64() * 1000.0)).collect();
        let got = delays.len();
        let stats = median_p99(&mut delays);
        result[*name] = serde_json::json!({
            "seen": got,
            "median_ms": stats.map(|s| (s.0 * 10.0).round() / 10.0),
            "p99_ms": stats.map(|s| (s.1 * 10.0).round() / 10.0),
        });
    }
    println!("{result}");
}
