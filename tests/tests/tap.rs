//! The AI tap: a stream's audio decoded to PCM over a WebSocket (tungstenite as the client),
//! heard at the right pitch in the format asked for, its pictures as JPEG and I420 at the
//! rate and size asked for, one decoder per format however many clients, a stalled client losing chunks while the others keep up, and bad taps refused
//! with the reason; captions and timed metadata back out to FLV/RTMP players, web pages,
//! HLS players (a WebVTT rendition, ID3 in emsg boxes, ID3 in TS segments), and CEA-608 in
//! the video's SEI.

use estuary_tests::ffmpeg::{publish, Source, Tracks};
use estuary_tests::{wait_until, Node, Scratch};
use serde_json::Value;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<TcpStream>;

/// Header bytes of a binary tap message.
const HEADER: usize = 20;

fn connect_with(port: u16, path: &str, receive_buffer: Option<usize>) -> Result<Socket, tungstenite::Error> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    let address: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    socket.connect(&address.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let (socket, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => panic!("handshake interrupted"),
    })?;
    Ok(socket)
}

fn connect(port: u16, path: &str) -> Socket {
    connect_with(port, path, None).unwrap_or_else(|e| panic!("tap {path}: {e}"))
}

/// The JSON of the next text message.
fn next_text(socket: &mut Socket) -> Value {
    loop {
        match socket.read().expect("read a tap message") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("tap JSON"),
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(frame) => panic!("closed before a text message: {frame:?}"),
        }
    }
}

/// Audio chunks until `seconds` of samples in `rate`/`channels` came: (stream µs, wall µs)
/// of each chunk and the samples.
fn read_audio(socket: &mut Socket, rate: usize, channels: usize, seconds: f64) -> (Vec<(i64, i64)>, Vec<i16>) {
    let wanted = (rate as f64 * seconds) as usize * channels;
    let (mut times, mut samples) = (Vec::new(), Vec::new());
    while samples.len() < wanted {
        match socket.read().expect("read tap audio") {
            Message::Binary(data) => {
                assert!(data.len() > HEADER && (data.len() - HEADER) % (2 * channels) == 0, "a chunk of {} bytes", data.len());
                assert_eq!(&data[..4], &[1, 0, 0, 0], "kind byte and zeros");
                let stream_us = i64::from_be_bytes(data[4..12].try_into().unwrap());
                let wall_us = i64::from_be_bytes(data[12..20].try_into().unwrap());
                times.push((stream_us, wall_us));
                samples.extend(data[HEADER..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
            }
            Message::Text(text) => panic!("unexpected text while reading audio: {text}"),
            Message::Close(frame) => panic!("closed while reading audio: {frame:?}"),
            _ => {}
        }
    }
    (times, samples)
}

/// Rising zero crossings a second of one channel, after its first 100 ms (a new decoder's
/// first output is its start-up delay, near silence).
fn pitch(samples: &[i16], rate: usize, channels: usize) -> f64 {
    let channel: Vec<i16> = samples.iter().step_by(channels).skip(rate / 10).copied().collect();
    let rising = channel.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
    rising as f64 * rate as f64 / channel.len() as f64
}

fn feeds(node: &Node) -> Vec<Value> {
    node.api("/api/v1/taps")["taps"].as_array().cloned().unwrap_or_default()
}

fn unix_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

#[test]
fn a_tap_hears_the_stream_as_pcm_in_the_format_asked_on_both_ports() {
    let scratch = Scratch::new("tap-pcm");
    let node = Node::start(&scratch, &[]);
    // A 440 Hz tone, AAC 48 kHz stereo.
    let _publisher = publish(&node.rtmp_url("live/tone"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/tone", Duration::from_secs(20));

    let mut mono = connect(node.ports.http, "/tap/live/tone?audio=s16le&rate=16000&channels=1");
    let start = next_text(&mut mono);
    assert_eq!(start["type"], "start", "{start}");
    assert_eq!(start["stream"], "live/tone");
    assert_eq!((start["audio"]["rate"].as_u64(), start["audio"]["channels"].as_u64()), (Some(16_000), Some(1)), "{start}");
    let (times, samples) = read_audio(&mut mono, 16_000, 1, 3.0);
    let f = pitch(&samples, 16_000, 1);
    assert!((430.0..450.0).contains(&f), "the tone came out at {f:.1} Hz, not 440");
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    assert!(peak > 1_000, "the tone is nearly silent: peak {peak}");
    // Stream times grow with the audio; wall-clock times are now.
    assert!(times.windows(2).all(|w| w[1].0 > w[0].0), "stream times do not grow: {:?}", &times[..times.len().min(10)]);
    let span_s = (times.last().unwrap().0 - times[0].0) as f64 / 1e6;
    assert!((2.0..4.0).contains(&span_s), "3 s of samples span {span_s:.2} s of stream time");
    let now = unix_us();
    assert!(times.iter().all(|&(_, wall)| (now - wall).abs() < 30_000_000), "wall-clock times are not now ({now}): {:?}", &times[..3]);

    // The same over the API port, another format: a second decoder.
    let mut stereo = connect(node.ports.api, "/api/v1/tap/live/tone?rate=48000&channels=2");
    assert_eq!(next_text(&mut stereo)["audio"]["channels"], 2);
    let (_, samples) = read_audio(&mut stereo, 48_000, 2, 1.0);
    let f = pitch(&samples, 48_000, 2);
    assert!((430.0..450.0).contains(&f), "the stereo tap's tone is at {f:.1} Hz");
    let list = feeds(&node);
    assert_eq!(list.len(), 2, "one feed per format: {list:?}");
    assert!(list.iter().all(|f| f["stream"] == "live/tone" && f["codec"] == "AAC" && f["clients"] == 1), "{list:?}");
    // The client list shows the taps as players of the stream.
    let clients = node.api("/api/v1/clients?count=100");
    let taps = clients["clients"].as_array().map(|c| c.iter().filter(|c| c["protocol"] == "tap").count()).unwrap_or(0);
    assert_eq!(taps, 2, "{clients}");

    // Clients gone: their feeds stop (each checks every second).
    drop(mono);
    drop(stereo);
    assert!(wait_until(Duration::from_secs(10), || feeds(&node).is_empty()), "feeds left: {:?}", feeds(&node));
}

#[test]
fn twenty_tap_clients_share_one_decoder_and_a_stalled_one_loses_chunks_without_slowing_the_others() {
    let scratch = Scratch::new("tap-many");
    let node = Node::start(&scratch, &[]);
    let _publisher = publish(&node.rtmp_url("live/many"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/many", Duration::from_secs(20));
    let path = "/tap/live/many?rate=48000&channels=2";
    // The stalled client never reads, behind a small receive buffer.
    let mut stalled = connect_with(node.ports.http, path, Some(4096)).expect("stalled client");
    let mut readers: Vec<Socket> = (0..19).map(|_| connect(node.ports.http, path)).collect();
    for reader in &mut readers {
        assert_eq!(next_text(reader)["type"], "start");
    }
    let list = feeds(&node);
    assert_eq!(list.len(), 1, "twenty clients of one format, one decoder: {list:?}");
    assert_eq!(list[0]["clients"], 20, "{list:?}");

    // The readers take 8 s of audio each, round robin, while the stalled client's share
    // piles up. None of them may be told it lost a chunk (`read_audio` fails on any text
    // message): the stalled client slowed nobody. A reader that stops getting audio fails on
    // its socket's read timeout.
    let mut received = vec![0usize; readers.len()];
    let wanted = 48_000 * 2 * 8;
    while received.iter().any(|&n| n < wanted) {
        for (i, reader) in readers.iter_mut().enumerate() {
            if received[i] < wanted {
                let (_, samples) = read_audio(reader, 48_000, 2, 0.1);
                received[i] += samples.len();
            }
        }
    }
    // The stalled client lost chunks (the feed counts them once it reads again); the readers
    // lost none, or they would have had a "lost" message.
    let lost = |node: &Node| feeds(node).first().and_then(|f| f["lost"].as_u64()).unwrap_or(0);
    let mut told = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while told.is_none() && Instant::now() < deadline {
        match stalled.read().expect("the stalled client reads at last") {
            Message::Text(text) => {
                let message: Value = serde_json::from_str(text.as_str()).unwrap();
                if message["type"] == "lost" {
                    told = message["chunks"].as_u64();
                }
            }
            Message::Close(frame) => panic!("the stalled client was closed: {frame:?}"),
            _ => {}
        }
    }
    let told = told.expect("the stalled client was never told it lost chunks");
    assert!(lost(&node) >= told, "the feed counts {} lost, the client was told {told}", lost(&node));
    assert_eq!(feeds(&node).len(), 1);
}

/// The next binary message: (kind, stream µs, payload); text messages on the way are
/// collected in `texts`.
fn next_binary(socket: &mut Socket, texts: &mut Vec<Value>) -> (u8, i64, Vec<u8>) {
    loop {
        match socket.read().expect("read a tap message") {
            Message::Binary(data) => {
                assert!(data.len() > HEADER, "a message of {} bytes", data.len());
                assert_eq!(&data[1..4], &[0, 0, 0]);
                return (data[0], i64::from_be_bytes(data[4..12].try_into().unwrap()), data[HEADER..].to_vec());
            }
            Message::Text(text) => texts.push(serde_json::from_str(text.as_str()).expect("tap JSON")),
            Message::Close(frame) => panic!("closed while waiting for a picture: {frame:?}; texts {texts:?}"),
            _ => {}
        }
    }
}

#[test]
fn a_tap_sees_the_stream_as_jpeg_and_i420_pictures_at_the_rate_and_size_asked() {
    let scratch = Scratch::new("tap-video");
    let node = Node::start(&scratch, &[]);
    // 320x240 at 25 frames a second, with a tone.
    let _publisher = publish(&node.rtmp_url("live/scene"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/scene", Duration::from_secs(20));

    // JPEG, 2 a second, 160 wide: 160x120 pictures half a second apart in stream time.
    let mut jpeg = connect(node.ports.http, "/tap/live/scene?video=jpeg&fps=2&width=160");
    let start = next_text(&mut jpeg);
    assert_eq!((start["type"].as_str(), start["video"]["format"].as_str(), start["video"]["fps"].as_u64()), (Some("start"), Some("jpeg"), Some(2)), "{start}");
    assert!(start["audio"].is_null(), "pictures only were asked for: {start}");
    let mut texts = Vec::new();
    let pictures: Vec<(u8, i64, Vec<u8>)> = (0..6).map(|_| next_binary(&mut jpeg, &mut texts)).collect();
    let size = texts.iter().find(|t| t["type"] == "video").unwrap_or_else(|| panic!("no picture size before the pictures: {texts:?}"));
    assert_eq!((size["width"].as_u64(), size["height"].as_u64(), size["format"].as_str()), (Some(160), Some(120), Some("jpeg")), "{size}");
    for (kind, _, data) in &pictures {
        assert_eq!(*kind, 2, "JPEG kind");
        assert!(data.starts_with(&[0xff, 0xd8]) && data.ends_with(&[0xff, 0xd9]), "not one whole JPEG: {} bytes", data.len());
    }
    let steps: Vec<i64> = pictures.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(steps.iter().all(|&step| (400_000..=600_000).contains(&step)), "2 pictures a second, stream times {:?}", pictures.iter().map(|p| p.1).collect::<Vec<_>>());
    // FFmpeg reads a picture as what it was asked to be.
    let file = scratch.path("picture.jpg");
    std::fs::write(&file, &pictures[3].2).unwrap();
    let probe = std::process::Command::new("ffprobe").args(["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0"]).arg(&file).output().expect("ffprobe");
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "mjpeg,160,120", "{}", String::from_utf8_lossy(&probe.stderr));

    // Raw I420, 1 a second, 64 wide: 64x48 pictures of 4608 bytes with a picture in them
    // (testsrc2 is colourful: the luma varies).
    let mut raw = connect(node.ports.http, "/tap/live/scene?video=i420&fps=1&width=64");
    assert_eq!(next_text(&mut raw)["video"]["format"], "i420");
    let mut texts = Vec::new();
    let (kind, _, data) = next_binary(&mut raw, &mut texts);
    assert_eq!((kind, data.len()), (3, 64 * 48 * 3 / 2), "texts before it: {texts:?}");
    let luma = &data[..64 * 48];
    let (low, high) = (luma.iter().min().unwrap(), luma.iter().max().unwrap());
    assert!(high - low > 50, "a flat picture: luma from {low} to {high}");

    // Audio and pictures on one socket: both kinds come, and the JPEG feed is shared.
    let mut both = connect(node.ports.http, "/tap/live/scene?audio=s16le&video=jpeg&fps=2&width=160");
    let start = next_text(&mut both);
    assert!(start["audio"]["rate"] == 16_000 && start["video"]["width"] == 160, "a running feed's size is in start: {start}");
    let mut kinds = std::collections::BTreeSet::new();
    let mut texts = Vec::new();
    for _ in 0..200 {
        kinds.insert(next_binary(&mut both, &mut texts).0);
        if kinds.len() == 2 {
            break;
        }
    }
    assert_eq!(kinds.into_iter().collect::<Vec<u8>>(), vec![1, 2]);
    let list = feeds(&node);
    assert_eq!(list.len(), 3, "JPEG, I420 and audio feeds: {list:?}");
    let shared = list.iter().find(|f| f["format"]["video"] == "jpeg").unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!((shared["clients"].as_u64(), shared["format"]["fps"].as_u64(), shared["codec"].as_str()), (Some(2), Some(2), Some("H264")), "{shared}");
    drop((jpeg, raw, both));
    assert!(wait_until(Duration::from_secs(10), || feeds(&node).is_empty()), "feeds left: {:?}", feeds(&node));

    // A stream without video: the tap says so and closes cleanly.
    let source = Source { tracks: Tracks::AudioOnly, ..Source::default() };
    let _radio = publish(&node.rtmp_url("live/radio"), &source, &scratch, "radio");
    node.wait_live("live/radio", Duration::from_secs(20));
    let mut blind = connect(node.ports.http, "/tap/live/radio?video=jpeg");
    assert_eq!(next_text(&mut blind)["type"], "start");
    let end = next_text(&mut blind);
    assert!(end["type"] == "end" && end["reason"].as_str().unwrap_or("").contains("has no video"), "{end}");
}

#[test]
fn bad_taps_are_refused_with_the_reason() {
    let scratch = Scratch::new("tap-bad");
    let node = Node::start(&scratch, &[]);
    let status = |path: &str| match connect_with(node.ports.http, path, None) {
        Ok(_) => panic!("{path} was accepted"),
        Err(tungstenite::Error::Http(response)) => (response.status().as_u16(), String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned()),
        Err(e) => panic!("{path}: {e}"),
    };
    let (code, body) = status("/tap/live/nobody");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("not live"), "{body}");
    let source = Source { tracks: Tracks::VideoOnly, ..Source::default() };
    let _publisher = publish(&node.rtmp_url("live/mute"), &source, &scratch, "publisher");
    node.wait_live("live/mute", Duration::from_secs(20));
    for (path, code, reason) in [
        ("/tap/live/mute?rate=96000", 400, "8000 to 48000"),
        ("/tap/live/mute?audio=f32le", 400, "f32le"),
        ("/tap/live/mute?channels=6", 400, "1 or 2"),
        ("/tap/live/mute?video=png", 400, "jpeg or i420"),
        ("/tap/live/mute?video=jpeg&fps=99", 400, "1 to 30"),
        ("/tap/live/mute?video=i420&width=333", 400, "even"),
        ("/tap/live/bad%20name", 400, "invalid"),
    ] {
        let (got, body) = status(path);
        assert_eq!(got, code, "{path}: {body}");
        assert!(body.contains(reason), "{path}: {body}");
    }
    // Not a WebSocket request: nothing starts.
    let plain = estuary_tests::http::get(node.ports.http, "/tap/live/mute").expect("GET the tap");
    assert_eq!(plain.status, 400, "{}", String::from_utf8_lossy(&plain.body));
    assert!(feeds(&node).is_empty());
    // A stream without audio: the tap says so (no audio frame within 5 s) and closes cleanly.
    let mut tap = connect(node.ports.http, "/tap/live/mute");
    assert_eq!(next_text(&mut tap)["type"], "start");
    let end = next_text(&mut tap);
    assert_eq!(end["type"], "end", "{end}");
    assert!(end["reason"].as_str().unwrap_or("").contains("has no audio"), "{end}");
    let closed = loop {
        match tap.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    let frame = closed.expect("a close frame with a reason");
    assert_eq!(u16::from(frame.code), 1000);
    assert!(frame.reason.contains("has no audio"), "{frame:?}");
    assert!(feeds(&node).is_empty());
    // The node still serves: the tone stream taps fine.
    let _tone = publish(&node.rtmp_url("live/ok"), &Source::default(), &scratch, "tone");
    node.wait_live("live/ok", Duration::from_secs(20));
    let mut ok = connect(node.ports.http, "/tap/live/ok");
    assert_eq!(next_text(&mut ok)["type"], "start");
    read_audio(&mut ok, 16_000, 1, 0.5);
}

/// Texts of the subtitle packets ffprobe reads from `url` in `seconds`.
fn subtitle_texts(url: &str, seconds: u32) -> Vec<String> {
    let output = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-read_intervals", &format!("%+{seconds}"), "-show_packets", "-show_data", "-of", "json", url])
        .output()
        .expect("run ffprobe");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("ffprobe {url}: {e}: {}", String::from_utf8_lossy(&output.stderr)));
    let packets = report["packets"].as_array().cloned().unwrap_or_default();
    packets
        .iter()
        .filter(|p| p["codec_type"] == "subtitle")
        .map(|p| {
            // ffprobe's hex dump: "00000000: 6361 7074 ...  caption..."; the hex is 39 chars.
            let hex: String = p["data"].as_str().unwrap_or("").lines().filter_map(|l| l.split_once(": ")).map(|(_, rest)| rest.chars().take(39).filter(|c| !c.is_whitespace()).collect::<String>()).collect();
            let bytes: Vec<u8> = (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect()
}

/// Posts what `bodies(n)` gives (API path under the stream, JSON body) for n = 1, 2, ...
/// every `every` until the flag is set; the thread answers how many rounds it posted. Every
/// post must be taken.
fn post_until_stopped(api: u16, stream: &'static str, every: Duration, bodies: impl Fn(u64) -> Vec<(&'static str, String)> + Send + 'static) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let poster = std::thread::spawn(move || {
        let mut n = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            for (path, body) in bodies(n) {
                let response = estuary_tests::http::send(api, "POST", &format!("/api/v1/streams/{stream}/{path}"), &[("Content-Type", "application/json")], body.as_bytes()).expect("POST");
                assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
            }
            std::thread::sleep(every);
        }
        n
    });
    (stop, poster)
}

fn post_caption(node: &Node, path: &str, body: &str) -> (u16, Value) {
    let response = estuary_tests::http::send(node.ports.api, "POST", path, &[("Content-Type", "application/json")], body.as_bytes()).expect("POST a caption");
    (response.status, serde_json::from_slice(&response.body).unwrap_or(Value::Null))
}

#[test]
fn captions_reach_rtmp_and_flv_players_as_text_and_web_pages_as_events_and_bad_ones_are_refused() {
    let scratch = Scratch::new("tap-captions");
    let node = Node::start(&scratch, &[]);
    let _publisher = publish(&node.rtmp_url("live/cc"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/cc", Duration::from_secs(20));
    let path = "/api/v1/streams/live/cc/captions";

    let long = format!(r#"{{"text":"{}"}}"#, "a".repeat(2000));
    for (target, body, status, reason) in [
        ("/api/v1/streams/live/nobody/captions", r#"{"text":"hi"}"#, 404, "not live"),
        (path, "{}", 400, "needs \"text\""),
        (path, r#"{"text":"  "}"#, 400, "empty"),
        (path, &long, 413, "2000 bytes"),
        (path, r#"{"text":"hi","start":5000,"end":1000}"#, 400, "malformed timing"),
        (path, r#"{"text":"hi","start":"soon"}"#, 400, "malformed timing"),
        (path, r#"{"text":"hi","language":"English"}"#, 400, "ISO 639"),
    ] {
        let (got, answer) = post_caption(&node, target, body);
        assert_eq!(got, status, "{target} {body}: {answer}");
        assert!(answer["message"].as_str().unwrap_or("").contains(reason), "{target} {body}: {answer}");
    }

    // A web page's event stream, open before the captions.
    let events = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let (events, port) = (events.clone(), node.ports.http);
        let mut sse = TcpStream::connect(("127.0.0.1", port)).expect("connect for events");
        std::io::Write::write_all(&mut sse, b"GET /events/live/cc HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n").unwrap();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut sse, &mut buffer) {
                if n == 0 {
                    break;
                }
                events.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
    }
    assert!(wait_until(Duration::from_secs(5), || events.lock().unwrap().contains(": events of live/cc")), "no event stream: {}", events.lock().unwrap());
    assert!(events.lock().unwrap().contains("text/event-stream"), "{}", events.lock().unwrap());

    // Captions every 300 ms while players read.
    let (stop, poster) = post_until_stopped(node.ports.api, "live/cc", Duration::from_millis(300), |n| vec![("captions", format!(r#"{{"text":"caption number {n}","language":"eng","start":{},"end":{}}}"#, n * 300, n * 300 + 250))]);
    // Players start once a caption has gone out (a player joining later is given the newest).
    assert!(wait_until(Duration::from_secs(5), || events.lock().unwrap().contains("caption number 1\"")), "{}", events.lock().unwrap());
    for url in [node.flv_url("live/cc"), node.rtmp_url("live/cc")] {
        let texts = subtitle_texts(&url, 5);
        assert!(texts.len() >= 5, "{url}: {} captions in 5 s: {texts:?}", texts.len());
        assert!(texts.iter().all(|t| t.starts_with("caption number ")), "{url}: {texts:?}");
    }
    // A player joining after captions still gets the stream's onMetaData first (a caption is
    // a timed event, not the metadata a joining player is primed with).
    let output = std::process::Command::new("ffprobe").args(["-v", "error", "-show_entries", "format_tags=encoder", "-of", "json", &node.flv_url("live/cc")]).output().expect("ffprobe");
    let tags: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    assert!(tags["format"]["tags"]["encoder"].as_str().is_some_and(|e| e.starts_with("Lavf")), "no onMetaData for a late player: {tags}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(poster.join().expect("poster") >= 10);

    // The page saw the captions as events.
    let seen = events.lock().unwrap().clone();
    assert!(seen.matches("event: caption\n").count() >= 10, "{seen}");
    let first = seen.lines().find(|l| l.starts_with("data: ") && l.contains("caption number 1\"")).expect("the first caption's event");
    let first: Value = serde_json::from_str(&first["data: ".len()..]).unwrap();
    assert_eq!((first["type"].as_str(), first["stream"].as_str(), first["data"]["language"].as_str()), (Some("caption"), Some("live/cc"), Some("eng")), "{first}");
    assert_eq!((first["data"]["start"].as_u64(), first["data"]["end"].as_u64()), (Some(300), Some(550)), "{first}");

    // Timed metadata: to the page as an event; bad metadata refused.
    let (status, answer) = post_caption(&node, "/api/v1/streams/live/cc/metadata", r#"{"objects":[{"label":"person","score":0.9}]}"#);
    assert_eq!(status, 200, "{answer}");
    assert!(wait_until(Duration::from_secs(5), || events.lock().unwrap().contains("event: metadata\ndata: ")), "{}", events.lock().unwrap());
    let seen = events.lock().unwrap().clone();
    let metadata = seen.lines().find(|l| l.starts_with("data: ") && l.contains("\"metadata\"")).expect("the metadata event");
    let metadata: Value = serde_json::from_str(&metadata["data: ".len()..]).unwrap();
    assert_eq!(metadata["data"]["objects"][0]["label"], "person", "{metadata}");
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(10_000));
    for (target, body, status) in [("/api/v1/streams/live/cc/metadata", "[1,2]", 400), ("/api/v1/streams/live/cc/metadata", big.as_str(), 413), ("/api/v1/streams/live/nobody/metadata", "{}", 404)] {
        let (got, answer) = post_caption(&node, target, body);
        assert_eq!(got, status, "{target}: {answer}");
    }

    // Over the tap's own socket: answered with the time it went out at.
    let mut tap = connect(node.ports.http, "/tap/live/cc");
    assert_eq!(next_text(&mut tap)["type"], "start");
    tap.send(Message::text(r#"{"type":"caption","text":"from the tap"}"#)).expect("send a caption");
    tap.send(Message::text(r#"{"type":"caption","text":"too soon"}"#)).expect("send a second caption");
    let (ok, too_soon) = (next_text(&mut tap), next_text(&mut tap));
    assert_eq!(ok["type"], "caption", "{ok}");
    assert!(ok["at_ms"].as_i64().is_some_and(|t| t > 0), "{ok}");
    assert_eq!((too_soon["type"].as_str(), too_soon["status"].as_u64()), (Some("error"), Some(429)), "{too_soon}");
    std::thread::sleep(Duration::from_millis(150));
    tap.send(Message::text(r#"{"type":"caption","text":""}"#)).expect("send an empty caption");
    let refused = next_text(&mut tap);
    assert_eq!((refused["type"].as_str(), refused["status"].as_u64()), (Some("error"), Some(400)), "{refused}");
}

/// The words of `text`, lowercase.
fn words(text: &str) -> std::collections::BTreeSet<String> {
    text.split_whitespace().map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase()).filter(|w| !w.is_empty()).collect()
}

#[test]
fn speech_is_captioned_by_the_reference_worker_for_players_and_recordings() {
    let scratch = Scratch::new("tap-asr");
    // Recorded too: the DVR's MP4 files carry the captions in a text track.
    let node = Node::start(&scratch, &[("ESTUARY_DVR__ENABLED", "true")]);
    // A known sentence from espeak-ng, with a pause after it, looped as the stream's audio.
    // The video has B-frames: a caption this long is more than one frame's caption data, and
    // its pieces must follow display order, not decode order.
    const SENTENCE: &str = "we are going to the park today";
    let speech = scratch.path("speech.wav");
    let status = std::process::Command::new("espeak-ng").args(["-v", "en-us", "-s", "120", "-w"]).arg(&speech).arg(SENTENCE).status().expect("run espeak-ng (tests/run installs it)");
    assert!(status.success());
    let padded = scratch.path("padded.wav");
    let output = std::process::Command::new("ffmpeg").args(["-v", "error", "-y", "-i"]).arg(&speech).args(["-af", "apad=pad_dur=1.5", "-ar", "48000", "-ac", "2"]).arg(&padded).output().expect("ffmpeg");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let args: Vec<String> = ["-hide_banner", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-stream_loop", "-1", "-i", padded.to_str().unwrap(), "-c:v", "libx264", "-preset", "superfast", "-bf", "2", "-g", "50", "-c:a", "aac", "-f", "flv", &node.rtmp_url("live/speech")].iter().map(|a| a.to_string()).collect();
    let _publisher = estuary_tests::ffmpeg::spawn(args, &scratch, "publisher");
    node.wait_live("live/speech", Duration::from_secs(20));
    // HLS is packaged on demand: a player of the master playlist starts the package, which
    // then carries the captions in its WebVTT rendition.
    let master = estuary_tests::http::get(node.ports.http, "/live/speech_master.m3u8").expect("GET the master playlist");
    assert!(String::from_utf8_lossy(&master.body).contains("TYPE=SUBTITLES"));

    let worker_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/asr/worker.py");
    let log = std::fs::File::create(scratch.path("worker.log")).unwrap();
    let mut worker = std::process::Command::new("python3")
        .arg(&worker_path)
        .arg(format!("ws://127.0.0.1:{}/tap/live/speech", node.ports.http))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the reference worker");
    // Once captions come, a player reads them for 15 s (the sentence comes round every ~4 s).
    // A player joining a captioned stream is given the newest caption first, which is how
    // FFmpeg, which looks for tracks only as it starts, finds the text track.
    let first = wait_until(Duration::from_secs(30), || std::fs::read_to_string(scratch.path("worker.log")).is_ok_and(|l| l.contains("caption:")));
    assert!(first, "no caption from the worker in 30 s:\n{}", std::fs::read_to_string(scratch.path("worker.log")).unwrap_or_default());
    let captions_from_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 5_000;
    // While the FLV player reads, the WebVTT rendition is read as an HLS player would (its
    // playlist every 2 s, which also keeps the package running).
    let vtt = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (stop, port) = (stop.clone(), node.ports.http);
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    seen.extend(vtt_cues_at(port, "live", "speech"));
                    std::thread::sleep(Duration::from_secs(2));
                }
                seen
            })
        };
        let sei = {
            let url = node.flv_url("live/speech");
            std::thread::spawn(move || sei_captions(&url, 15))
        };
        let texts = subtitle_texts(&node.flv_url("live/speech"), 15);
        let sei = sei.join().expect("the SEI reader");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (texts, reader.join().expect("the WebVTT reader"), sei)
    };
    let (texts, vtt, sei) = vtt;
    let _ = worker.kill();
    let _ = worker.wait();
    let worker_log = std::fs::read_to_string(scratch.path("worker.log")).unwrap_or_default();
    // A DVR clip of the captioned stretch (up to what is on disk): its text track as FFmpeg
    // reads it (mov_text), written out as SRT.
    let clip_url = format!("http://127.0.0.1:{}/dvr/live/speech.mp4?start={captions_from_ms}", node.ports.http);
    let probe = std::process::Command::new("ffprobe").args(["-v", "error", "-show_entries", "stream=codec_type,codec_name", "-of", "csv=p=0", &clip_url]).output().expect("ffprobe");
    let streams = String::from_utf8_lossy(&probe.stdout).into_owned();
    assert!(streams.lines().any(|l| l.trim() == "mov_text,subtitle"), "the DVR clip has no text track: {streams:?} {}", String::from_utf8_lossy(&probe.stderr));
    let srt = std::process::Command::new("ffmpeg").args(["-v", "error", "-i", &clip_url, "-map", "0:s:0", "-f", "srt", "-"]).output().expect("ffmpeg");
    assert!(srt.status.success(), "{}", String::from_utf8_lossy(&srt.stderr));
    let recorded: Vec<String> = String::from_utf8_lossy(&srt.stdout).lines().filter(|l| !l.trim().is_empty() && !l.contains("-->") && l.parse::<u64>().is_err()).map(str::to_string).collect();
    // Tolerant: a synthetic voice through AAC and a small model. At least 4 of the sentence's
    // 7 distinct words, 2 of them among its content words (going, park, today): common words
    // alone (we, are, to, the) could come from any speech. A clean run gets all 7. The same
    // for the FLV captions, the HLS WebVTT rendition's cues, the CEA-608 captions in the
    // video's SEI as FFmpeg decodes them and the text track of a DVR clip.
    let expected = words(SENTENCE);
    for (output, texts) in [("FLV captions", &texts), ("WebVTT cues", &vtt.into_iter().collect()), ("SEI captions", &sei), ("DVR text track", &recorded)] {
        let heard: std::collections::BTreeSet<String> = texts.iter().flat_map(|t| words(t)).collect();
        let overlap: Vec<&String> = expected.intersection(&heard).collect();
        let content = ["going", "park", "today"].iter().filter(|w| heard.contains(**w)).count();
        assert!(overlap.len() >= 4 && content >= 2, "{output} {texts:?} share only {overlap:?} with \"{SENTENCE}\"; worker log:\n{worker_log}");
    }
}

/// The CEA-608 captions FFmpeg decodes from the video SEI of `url` in `seconds` (the `subcc`
/// output of its `movie` source, written as SRT), one text per caption.
fn sei_captions(url: &str, seconds: u32) -> Vec<String> {
    let source = format!("movie='{}'[out0+subcc]", url.replace(':', "\\:"));
    let output = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", &source, "-map", "0:s", "-t", &seconds.to_string(), "-f", "srt", "-"])
        .output()
        .expect("run ffmpeg");
    let srt = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success() || !srt.is_empty(), "ffmpeg {source}: {}", String::from_utf8_lossy(&output.stderr));
    // SRT blocks: number, timing, text lines, blank.
    srt.split("\n\n").filter_map(|block| {
        let text: Vec<&str> = block.lines().skip(2).map(str::trim).filter(|l| !l.is_empty()).collect();
        // FFmpeg's caption decoder wraps the text in font tags and a position override.
        let mut plain = String::new();
        let mut skipping: Option<char> = None;
        for c in text.join(" ").chars() {
            match (skipping, c) {
                (None, '<') => skipping = Some('>'),
                (None, '{') => skipping = Some('}'),
                (None, c) => plain.push(c),
                (Some(end), c) if c == end => skipping = None,
                _ => {}
            }
        }
        let plain = plain.trim().to_string();
        (!plain.is_empty()).then_some(plain)
    }).collect()
}

/// The cue texts of the WebVTT rendition of `app/stream` as it is now: its playlist, then
/// every `.vtt` file it lists.
fn vtt_cues(node: &Node, app: &str, stream: &str) -> Vec<String> {
    vtt_cues_at(node.ports.http, app, stream)
}

fn vtt_cues_at(port: u16, app: &str, stream: &str) -> Vec<String> {
    let Ok(playlist) = estuary_tests::http::get(port, &format!("/{app}/{stream}_vtt.m3u8")) else { return Vec::new() };
    let mut cues = Vec::new();
    for uri in String::from_utf8_lossy(&playlist.body).lines().filter(|l| l.ends_with(".vtt")) {
        let Ok(file) = estuary_tests::http::get(port, &format!("/{app}/{uri}")) else { continue };
        assert_eq!(file.status, 200, "{uri}");
        let text = String::from_utf8_lossy(&file.body).into_owned();
        assert!(text.starts_with("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:"), "{uri}: {text}");
        // A cue is its timing line, then its text lines up to a blank line.
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.contains(" --> ") {
                cues.push(lines.by_ref().take_while(|l| !l.is_empty()).collect::<Vec<_>>().join(" "));
            }
        }
    }
    cues
}

#[test]
fn captions_and_metadata_reach_hls_and_dash_players_as_webvtt_and_id3_in_emsg() {
    let scratch = Scratch::new("tap-hls");
    let node = Node::start(&scratch, &[]);
    let _publisher = publish(&node.rtmp_url("live/vtt"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/vtt", Duration::from_secs(20));
    // The master playlist (which starts the package) lists the caption rendition.
    let master = estuary_tests::http::get(node.ports.http, "/live/vtt_master.m3u8").expect("GET the master playlist");
    let master = String::from_utf8_lossy(&master.body).into_owned();
    assert!(master.contains("#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\"") && master.contains("URI=\"vtt_vtt.m3u8\"") && master.contains(",SUBTITLES=\"subs\"\nvtt.m3u8"), "{master}");

    // Captions and metadata every 400 ms while hls.js plays the master playlist.
    let (stop, poster) = post_until_stopped(node.ports.api, "live/vtt", Duration::from_millis(400), |n| {
        vec![("captions", format!(r#"{{"text":"caption number {n}","language":"eng"}}"#)), ("metadata", format!(r#"{{"detection":{n}}}"#))]
    });
    let played = estuary_tests::browser::captions(&format!("http://127.0.0.1:{}/live/vtt_master.m3u8", node.ports.http), 12);
    // dash.js plays the MPD, which has a text representation once captions came.
    let dash = estuary_tests::browser::captions_with(&format!("http://127.0.0.1:{}/live/vtt.mpd", node.ports.http), 12, "dash");
    // The rendition as a plain client sees it: cues in the `.vtt` files of its playlist.
    let fetched = vtt_cues(&node, "live", "vtt");
    // The fMP4 parts carry the metadata as ID3 in emsg boxes.
    let playlist = String::from_utf8_lossy(&estuary_tests::http::get(node.ports.http, "/live/vtt.m3u8").expect("GET the playlist").body).into_owned();
    let segment = playlist.lines().filter(|l| l.ends_with(".m4s") && !l.starts_with('#')).last().expect("a whole segment").to_string();
    let bytes = estuary_tests::http::get(node.ports.http, &format!("/live/{segment}")).expect("GET a segment").body;
    // The video carries them as CEA-608 in its SEI: FFmpeg decodes them from an FLV player.
    let sei = sei_captions(&node.flv_url("live/vtt"), 6);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(poster.join().expect("poster") >= 20);

    let cues: Vec<String> = played["cues"].as_array().expect("cues").iter().filter_map(|c| c.as_str().map(str::to_string)).collect();
    assert!(fetched.iter().filter(|c| c.starts_with("caption number ")).count() >= 5, "the .vtt files hold {fetched:?}");
    assert!(cues.iter().filter(|c| c.starts_with("caption number ")).count() >= 5, "hls.js showed {cues:?}: {played}");
    let dash_cues: Vec<String> = dash["cues"].as_array().expect("cues").iter().filter_map(|c| c.as_str().map(str::to_string)).collect();
    assert!(dash_cues.iter().filter(|c| c.starts_with("caption number ")).count() >= 5, "dash.js showed {dash_cues:?}: {dash}");
    let mut dash_offsets: Vec<f64> = dash["offsets"].as_array().expect("offsets").iter().filter_map(|o| o.as_f64()).collect();
    dash_offsets.sort_by(|a, b| a.total_cmp(b));
    assert!(dash_offsets[dash_offsets.len() / 2].abs() < 6.0, "dash.js cue starts against the playhead: {dash_offsets:?}");
    // Placed on the video's timeline: a cue appears (its segment complete, then fetched) about
    // when the playhead reaches it, not seconds or hours away; the median of how far each
    // cue's start was from the playhead when it appeared is within a few segments.
    let mut offsets: Vec<f64> = played["offsets"].as_array().expect("offsets").iter().filter_map(|o| o.as_f64()).collect();
    offsets.sort_by(|a, b| a.total_cmp(b));
    let median = offsets[offsets.len() / 2];
    assert!(median.abs() < 6.0, "cue starts against the playhead: {offsets:?}");
    let id3: Vec<String> = played["id3"].as_array().expect("id3").iter().filter_map(|c| c.as_str().map(str::to_string)).collect();
    assert!(id3.iter().filter(|t| t.contains("estuary.metadata") && t.contains("{\"detection\":")).count() >= 5, "hls.js parsed {id3:?}");
    assert!(sei.iter().filter(|c| c.starts_with("caption number ")).count() >= 3, "CEA-608 captions in the SEI: {sei:?}");
    let emsg = bytes.windows(4).filter(|w| w == b"emsg").count();
    assert!(emsg >= 1 && bytes.windows(16).any(|w| w == b"estuary.metadata"), "{segment}: {emsg} emsg boxes");
}

#[test]
fn timed_metadata_is_an_id3_stream_in_classic_hls_ts_segments_and_http_ts() {
    let scratch = Scratch::new("tap-id3");
    let node = Node::start(&scratch, &[("ESTUARY_HLS__ALWAYS", "true")]);
    let _publisher = publish(&node.rtmp_url("live/id3"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/id3", Duration::from_secs(20));
    // An HTTP-TS player reading while the metadata comes: the stream is declared when the
    // first tag comes, and the tags follow.
    let http_ts = {
        let url = format!("http://127.0.0.1:{}/live/id3.ts", node.ports.http);
        std::thread::spawn(move || {
            std::process::Command::new("ffprobe").args(["-v", "error", "-read_intervals", "%+5", "-show_streams", "-show_packets", "-of", "json", &url]).output().expect("ffprobe")
        })
    };
    for n in 0..20 {
        let body = format!(r#"{{"scene":{n}}}"#);
        let response = estuary_tests::http::send(node.ports.api, "POST", "/api/v1/streams/live/id3/metadata", &[("Content-Type", "application/json")], body.as_bytes()).expect("POST");
        assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
        std::thread::sleep(Duration::from_millis(300));
    }
    // A segment cut while metadata came: the data stream and its tags.
    let playlist = String::from_utf8_lossy(&estuary_tests::http::get(node.ports.http, "/live/id3.m3u8").expect("GET the playlist").body).into_owned();
    let segment = playlist.lines().filter(|l| l.ends_with(".ts")).last().expect("a TS segment").to_string();
    let output = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-show_packets", "-show_data", "-of", "json", &format!("http://127.0.0.1:{}/live/{segment}", node.ports.http)])
        .output()
        .expect("ffprobe");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let streams = report["streams"].as_array().cloned().unwrap_or_default();
    let data = streams.iter().find(|s| s["codec_type"] == "data").unwrap_or_else(|| panic!("no data stream in {segment}: {report}"));
    assert_eq!(data["codec_name"], "timed_id3", "{data}");
    let index = data["index"].clone();
    let tags: Vec<String> = report["packets"].as_array().cloned().unwrap_or_default().iter().filter(|p| p["stream_index"] == index).map(|p| p["data"].as_str().unwrap_or("").to_string()).collect();
    // Two or more tags in a 2 s segment of metadata every 300 ms; ffprobe's dump shows the
    // ASCII of each ("estuary.metadata" is split across its lines, "scene" is not). FFmpeg
    // 5.1 hands out each tag without its first five bytes (the "ID3" and version; FFmpeg 9
    // gives the whole tag), so the frame is looked for, not the header.
    assert!(tags.len() >= 2 && tags.iter().all(|t| t.contains("TXXX") && t.contains("scene")), "{segment}: {tags:?}");
    // HTTP-TS (and SRT, which shares its packets) carry them the same way.
    let output = http_ts.join().expect("the HTTP-TS reader");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let data = report["streams"].as_array().cloned().unwrap_or_default().into_iter().find(|s| s["codec_type"] == "data").unwrap_or_else(|| panic!("no data stream over HTTP-TS: {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(data["codec_name"], "timed_id3", "{data}");
    let packets = report["packets"].as_array().map(|p| p.iter().filter(|p| p["stream_index"] == data["index"]).count()).unwrap_or(0);
    assert!(packets >= 2, "{packets} ID3 packets over HTTP-TS");
}
