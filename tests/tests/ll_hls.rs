//! HLS and DASH on demand from the live package in memory (issue 20): the default
//! configuration serves LL-HLS and DASH that ffprobe/ffmpeg open and writes no file; the
//! playlists keep the RFC 8216bis rules a validator checks (part durations, preload hints,
//! blocking reloads, delta updates); a DASH segment asked for before it is complete arrives
//! chunk by chunk; an idle package stops and comes back with its numbering continued.

use estuary_tests::ffmpeg::{decode, probe_streams, publish, stream_of, Source};
use estuary_tests::{http, wait_until, Node, Scratch};
use std::time::Duration;

fn text(node: &Node, path: &str) -> (u16, String) {
    let response = http::get(node.ports.http, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (response.status, String::from_utf8_lossy(&response.body).into_owned())
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn defaults_serve_ll_hls_and_dash_on_demand_and_write_no_file() {
    let scratch = Scratch::new("ll-defaults");
    let node = Node::start(&scratch, &[]);
    let _publisher = publish(&node.rtmp_url("live/od"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/od", Duration::from_secs(20));
    let data = node.dir.join("estuary-data");
    // Nobody asked: no package, no file.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!node.log().contains("live package started"), "a package started unasked:\n{}", node.log());
    for output in ["hls", "dash"] {
        assert_eq!(files_under(&data.join(output)), Vec::<std::path::PathBuf>::new(), "{output} files of a stream nobody watches");
    }
    // The first request waits for the first segment instead of a 404.
    let (status, playlist) = text(&node, "/live/od.m3u8");
    assert_eq!(status, 200, "{playlist}");
    assert!(playlist.contains("#EXTINF:") && playlist.contains("#EXT-X-PART:"), "{playlist}");
    let base = format!("http://127.0.0.1:{}/live", node.ports.http);
    for url in [format!("{base}/od.m3u8"), format!("{base}/od.mpd")] {
        let streams = probe_streams(&url);
        let video = stream_of(&streams, "video").unwrap_or_else(|| panic!("{url}: no video in {streams:?}"));
        assert_eq!((video["codec_name"].as_str(), video["width"].as_u64(), video["height"].as_u64()), (Some("h264"), Some(320), Some(240)), "{url}");
        assert_eq!(stream_of(&streams, "audio").and_then(|a| a["codec_name"].as_str()), Some("aac"), "{url}: {streams:?}");
        let (ok, errors) = decode(&url, 5);
        assert!(ok && errors.trim().is_empty(), "{url}: {errors}");
    }
    // Served from memory: still no file.
    for output in ["hls", "dash"] {
        assert_eq!(files_under(&data.join(output)), Vec::<std::path::PathBuf>::new(), "{output} files written");
    }
    assert_eq!(node.log().matches("live package started").count(), 1, "one package serves HLS and DASH:\n{}", node.log());
}

/// An LL-HLS playlist as a validator reads it.
#[derive(Debug, Default)]
struct Playlist {
    target: f64,
    part_target: f64,
    can_skip_until: f64,
    part_hold_back: f64,
    media_sequence: u64,
    skipped: u64,
    /// (msn, EXTINF or None while in progress, parts (duration, uri, independent), PDT ms).
    segments: Vec<(u64, Option<f64>, Vec<(f64, String, bool)>, Option<i64>)>,
    preload_hint: Option<String>,
}

fn attribute<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[at..];
    if let Some(quoted) = rest.strip_prefix('"') {
        return quoted.split('"').next();
    }
    rest.split(',').next()
}

fn parse(text: &str) -> Playlist {
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    let mut p = Playlist::default();
    let mut parts = Vec::new();
    let mut pdt = None;
    let mut extinf = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
            p.part_target = attribute(v, "PART-TARGET").unwrap().parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            assert_eq!(attribute(v, "CAN-BLOCK-RELOAD"), Some("YES"), "{line}");
            p.can_skip_until = attribute(v, "CAN-SKIP-UNTIL").unwrap().parse().unwrap();
            p.part_hold_back = attribute(v, "PART-HOLD-BACK").unwrap().parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:") {
            p.skipped = attribute(v, "SKIPPED-SEGMENTS").unwrap().parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = Some(estuary_protocols::clock::parse_rfc3339(v).unwrap_or_else(|| panic!("PDT {v}")));
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            parts.push((attribute(v, "DURATION").unwrap().parse::<f64>().unwrap(), attribute(v, "URI").unwrap().to_string(), attribute(v, "INDEPENDENT") == Some("YES")));
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            extinf = Some(v.trim_end_matches(',').parse::<f64>().unwrap());
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            assert_eq!(attribute(v, "TYPE"), Some("PART"), "{line}");
            p.preload_hint = attribute(v, "URI").map(str::to_string);
        } else if !line.starts_with('#') && !line.is_empty() {
            let msn = p.media_sequence + p.skipped + p.segments.len() as u64;
            p.segments.push((msn, extinf.take(), std::mem::take(&mut parts), pdt.take()));
        }
    }
    if !parts.is_empty() {
        let msn = p.media_sequence + p.skipped + p.segments.len() as u64;
        p.segments.push((msn, None, parts, pdt.take()));
    }
    p
}

/// The rules of RFC 8216bis a validator checks on one playlist of stream `s`.
fn validate(p: &Playlist, s: &str) {
    assert!(p.part_target > 0.0 && p.target >= 1.0);
    // 4.4.3.8: PART-HOLD-BACK at least twice the part target; 4.4.3.8: CAN-SKIP-UNTIL at least
    // six target durations.
    assert!(p.part_hold_back >= 2.0 * p.part_target, "{p:?}");
    assert!(p.can_skip_until >= 6.0 * p.target, "{p:?}");
    for (index, (msn, extinf, parts, pdt)) in p.segments.iter().enumerate() {
        assert!(pdt.is_some(), "segment {msn} has no EXT-X-PROGRAM-DATE-TIME");
        if let Some(extinf) = extinf {
            // 4.4.3.1: EXTINF rounded is at most the target duration.
            assert!(extinf.round() <= p.target, "segment {msn}: {extinf} s over the target {}", p.target);
        }
        for (n, (duration, uri, _)) in parts.iter().enumerate() {
            // 4.4.4.9: a part lasts at most the part target; all but a segment's last at least
            // 85 % of it.
            assert!(*duration <= p.part_target + 1e-9, "{uri}: {duration} s over {}", p.part_target);
            if n + 1 < parts.len() || extinf.is_none() {
                assert!(*duration >= 0.85 * p.part_target - 1e-9, "{uri}: {duration} s under 85 % of {}", p.part_target);
            }
            assert_eq!(uri, &format!("{s}-{msn}-p{n}.m4s"));
        }
        if let (Some(extinf), false) = (extinf, parts.is_empty()) {
            // A segment's parts make it up.
            let sum: f64 = parts.iter().map(|p| p.0).sum();
            assert!((sum - extinf).abs() < 0.002, "segment {msn}: parts {sum} s, EXTINF {extinf} s");
        }
        if !parts.is_empty() {
            assert!(parts[0].2, "segment {msn} does not start with an independent part");
        }
        // Program date-times follow the durations.
        if let (Some((_, Some(duration), _, Some(this))), Some((_, _, _, Some(next)))) = (p.segments.get(index), p.segments.get(index + 1)) {
            assert!((next - this - (duration * 1000.0) as i64).abs() <= 2, "PDT of {} is not {this} + {duration} s", msn + 1);
        }
    }
    // 4.4.5.3: the preload hint names the part after the last one listed.
    let (msn, extinf, parts, _) = p.segments.last().expect("segments");
    let expected = if extinf.is_some() { format!("{s}-{}-p0.m4s", msn + 1) } else { format!("{s}-{msn}-p{}.m4s", parts.len()) };
    assert_eq!(p.preload_hint.as_deref(), Some(expected.as_str()));
}

#[test]
fn playlists_keep_the_rfc8216bis_rules_block_as_asked_and_skip_in_delta_updates() {
    let scratch = Scratch::new("ll-rules");
    // 1 s segments and a window of 14: delta updates have something to skip (6 target
    // durations are kept in full). A package idle for 3 s stops.
    let node = Node::start(&scratch, &[("ESTUARY_HLS__FRAGMENT_MS", "1000"), ("ESTUARY_HLS__WINDOW", "14"), ("ESTUARY_HLS__PART_MS", "250"), ("ESTUARY_HLS__IDLE_S", "3")]);
    let _publisher = publish(&node.rtmp_url("live/v"), &Source { gop: 25, ..Source::default() }, &scratch, "publisher");
    node.wait_live("live/v", Duration::from_secs(20));
    assert_eq!(text(&node, "/live/v.m3u8").0, 200);
    // Let the window fill (requests keep the package running).
    assert!(
        wait_until(Duration::from_secs(40), || parse(&text(&node, "/live/v.m3u8").1).segments.iter().filter(|s| s.1.is_some()).count() >= 14),
        "the window did not fill; log:\n{}",
        node.log()
    );
    let full = parse(&text(&node, "/live/v.m3u8").1);
    validate(&full, "v");
    assert_eq!(full.part_target, 0.25);

    // Blocking reload: the next part, then the next whole segment.
    let (msn, extinf, parts, _) = full.segments.last().unwrap().clone();
    let (want_msn, want_part) = if extinf.is_some() { (msn + 1, 0) } else { (msn, parts.len()) };
    let (status, body) = text(&node, &format!("/live/v.m3u8?_HLS_msn={want_msn}&_HLS_part={want_part}"));
    assert_eq!(status, 200, "{body}");
    let blocked = parse(&body);
    validate(&blocked, "v");
    assert!(body.contains(&format!("URI=\"v-{want_msn}-p{want_part}.m4s\"")), "the reload returned before part {want_msn}.{want_part}:\n{body}");
    let (status, body) = text(&node, &format!("/live/v.m3u8?_HLS_msn={}", want_msn + 1));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("\nv-{}.m4s\n", want_msn + 1)), "the reload returned before segment {} was whole:\n{body}", want_msn + 1);
    // More than two segments ahead: 400 (RFC 8216bis 6.2.5.2); malformed: 400.
    assert_eq!(text(&node, &format!("/live/v.m3u8?_HLS_msn={}", want_msn + 10)).0, 400);
    assert_eq!(text(&node, "/live/v.m3u8?_HLS_part=1").0, 400);
    assert_eq!(text(&node, "/live/v.m3u8?_HLS_msn=x").0, 400);

    // A delta update skips the old segments and lists the rest exactly as in full.
    let (full_text, delta_text) = (text(&node, "/live/v.m3u8").1, text(&node, "/live/v.m3u8?_HLS_skip=YES").1);
    let (full, delta) = (parse(&full_text), parse(&delta_text));
    assert!(delta.skipped > 0, "nothing skipped:\n{delta_text}");
    assert_eq!(delta.media_sequence, full.media_sequence);
    validate(&delta, "v");
    let skipped_time: f64 = full.segments.iter().take(delta.skipped as usize).filter_map(|s| s.1).sum();
    let kept_time: f64 = full.segments.iter().skip(delta.skipped as usize).map(|s| s.1.unwrap_or_else(|| s.2.iter().map(|p| p.0).sum())).sum();
    assert!(skipped_time > 0.0 && kept_time >= delta.can_skip_until - full.target, "skipped {skipped_time} s, kept {kept_time} s (CAN-SKIP-UNTIL {})", delta.can_skip_until);
    let names = |p: &Playlist, skip: usize| p.segments.iter().skip(skip).map(|s| s.0).collect::<Vec<u64>>();
    // The two reads may straddle a new part or segment: compare what both list.
    let (a, b) = (names(&full, delta.skipped as usize), names(&delta, 0));
    let common = a.len().min(b.len());
    assert!(common >= 6 && a[..common] == b[..common], "full {a:?} vs delta {b:?}");

    // Parts and whole segments are fMP4 fragments; the hinted part is held until it exists.
    let part = http::get(node.ports.http, &format!("/live/{}", full.segments.last().unwrap().2[0].1)).unwrap();
    assert_eq!(part.status, 200);
    assert_eq!(&part.body[4..8], b"styp", "a segment's first part starts it");
    let hint = parse(&text(&node, "/live/v.m3u8").1).preload_hint.unwrap();
    let hinted = http::get(node.ports.http, &format!("/live/{hint}")).unwrap();
    assert_eq!(hinted.status, 200, "the hinted part {hint}");
    assert!(hinted.body.windows(4).any(|w| w == b"moof"));
    let whole = http::get(node.ports.http, &format!("/live/v-{}.m4s", full.segments[0].0)).unwrap();
    assert_eq!(whole.status, 200);
    assert_eq!(whole.headers.iter().find(|(k, _)| k == "cache-control").map(|(_, v)| v.as_str()), Some("max-age=60, immutable"));
    let ranged = http::send(node.ports.http, "GET", &format!("/live/v-{}.m4s", full.segments[0].0), &[("Range", "bytes=4-7")], b"").unwrap();
    assert_eq!((ranged.status, ranged.body.as_slice()), (206, b"styp".as_slice()));
    // A playlist unchanged since its ETag: 304.
    let playlist = http::get(node.ports.http, "/live/v.m3u8?_HLS_skip=YES").unwrap();
    let etag = playlist.headers.iter().find(|(k, _)| k == "etag").map(|(_, v)| v.clone()).expect("ETag");
    let again = http::send(node.ports.http, "GET", "/live/v.m3u8?_HLS_skip=YES", &[("If-None-Match", &etag)], b"").unwrap();
    let again_tag = again.headers.iter().find(|(k, _)| k == "etag").map(|(_, v)| v.clone());
    // 304 when nothing changed in between; a new part in between is a 200 with another tag.
    assert!((again.status == 304 && again.body.is_empty()) || (again.status == 200 && again_tag.as_deref() != Some(etag.as_str())), "{} {again_tag:?} after {etag}", again.status);

    // gzip where the client takes it, with its own ETag; a refused or absent gzip gets text.
    let header = |r: &http::Response, name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let zipped = http::send(node.ports.http, "GET", "/live/v.m3u8", &[("Accept-Encoding", "br, gzip;q=0.8")], b"").unwrap();
    assert_eq!(zipped.status, 200);
    assert_eq!(header(&zipped, "content-encoding").as_deref(), Some("gzip"), "{:?}", zipped.headers);
    assert_eq!(header(&zipped, "vary").as_deref(), Some("Accept-Encoding"));
    let zipped_tag = header(&zipped, "etag").expect("ETag");
    assert!(zipped_tag.ends_with("-gzip\""), "{zipped_tag}");
    let mut unzipped = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(zipped.body.as_slice()), &mut unzipped).expect("a gzip body");
    assert!(zipped.body.len() < unzipped.len(), "{} bytes of gzip for {} of text", zipped.body.len(), unzipped.len());
    validate(&parse(&unzipped), "v");
    let refused = http::send(node.ports.http, "GET", "/live/v.m3u8", &[("Accept-Encoding", "gzip;q=0")], b"").unwrap();
    assert_eq!((refused.status, header(&refused, "content-encoding")), (200, None));
    validate(&parse(&String::from_utf8_lossy(&refused.body)), "v");
    assert_eq!(header(&refused, "vary").as_deref(), Some("Accept-Encoding"));

    // DASH: the segment being cut is announced last in the timeline; asked for early, it
    // arrives chunk by chunk and whole.
    let mpd = text(&node, "/live/v.mpd").1;
    let video = mpd.split("contentType=\"video\"").nth(1).expect("a video set");
    let timeline = video.split("</SegmentTimeline>").next().unwrap();
    let first: u64 = timeline.split("<S t=\"").nth(1).and_then(|s| s.split('"').next()).and_then(|v| v.parse().ok()).expect("a start");
    let durations: Vec<u64> = timeline.split(" d=\"").skip(1).filter_map(|s| s.split('"').next()?.parse::<u64>().ok()).collect();
    let last = first + durations[..durations.len() - 1].iter().sum::<u64>();
    let media = video.split("media=\"").nth(1).and_then(|s| s.split('"').next()).expect("a media template");
    assert!(media.starts_with("v-video-v") && media.ends_with("-t$Time$.m4s"), "{media}");
    let early = http::get(node.ports.http, &format!("/live/{}", media.replace("$Time$", &last.to_string()))).unwrap();
    assert_eq!(early.status, 200, "{}", String::from_utf8_lossy(&early.body));
    assert!(early.headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked"), "{:?}", early.headers);
    let moofs = early.body.windows(4).filter(|w| *w == b"moof").count();
    assert!(moofs >= 3, "a 1 s segment of 250 ms parts came as {moofs} chunks");
    assert!(mpd.contains("availabilityTimeOffset=") && mpd.contains("<ServiceDescription") && mpd.contains("<UTCTiming"), "{mpd}");

    // Idle for 3 s: the package stops; the next request starts it again, numbering continued.
    let last_msn = parse(&text(&node, "/live/v.m3u8").1).segments.last().unwrap().0;
    assert!(wait_until(Duration::from_secs(15), || node.log().contains("live package stopped")), "the idle package did not stop:\n{}", node.log());
    let (status, body) = text(&node, "/live/v.m3u8");
    assert_eq!(status, 200, "{body}");
    let restarted = parse(&body);
    assert!(restarted.media_sequence > last_msn, "numbering restarted: {} after {last_msn}", restarted.media_sequence);
    validate(&restarted, "v");
}

#[test]
fn a_stream_nobody_publishes_is_404_and_a_republish_continues_the_playlist() {
    let scratch = Scratch::new("ll-republish");
    let node = Node::start(&scratch, &[("ESTUARY_STREAM__PUBLISHER_GRACE_MS", "500")]);
    let (status, body) = text(&node, "/live/nobody.m3u8");
    assert_eq!(status, 404, "{body}");
    assert_eq!(text(&node, "/live/nobody.mpd").0, 404);
    assert_eq!(text(&node, "/live/nobody-3-p0.m4s").0, 404);
    let mut first = publish(&node.rtmp_url("live/again"), &Source { gop: 25, ..Source::default() }, &scratch, "first");
    node.wait_live("live/again", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(20), || parse(&text(&node, "/live/again.m3u8").1).segments.len() >= 3));
    first.kill();
    assert!(wait_until(Duration::from_secs(20), || text(&node, "/live/again.m3u8").1.contains("#EXT-X-ENDLIST")), "no ENDLIST after the publisher left");
    let ended = parse(&text(&node, "/live/again.m3u8").1);
    let _second = publish(&node.rtmp_url("live/again"), &Source { gop: 25, ..Source::default() }, &scratch, "second");
    node.wait_live("live/again", Duration::from_secs(20));
    let continued = wait_until(Duration::from_secs(20), || {
        let text = text(&node, "/live/again.m3u8").1;
        !text.contains("#EXT-X-ENDLIST") && text.contains("#EXT-X-DISCONTINUITY") && parse(&text).segments.last().is_some_and(|s| s.0 > ended.segments.last().unwrap().0)
    });
    assert!(continued, "the republish did not continue the playlist after a discontinuity:\n{}", text(&node, "/live/again.m3u8").1);
    let url = format!("http://127.0.0.1:{}/live/again.m3u8", node.ports.http);
    let (ok, errors) = decode(&url, 4);
    assert!(ok && errors.trim().is_empty(), "{errors}");
}

/// Reads one response of a kept-alive connection: status, lowercase headers and a body of
/// `content-length` bytes (none for 304).
fn read_response(reader: &mut std::io::BufReader<std::net::TcpStream>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{BufRead, Read};
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("header line {line:?}"));
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; if status == 304 { 0 } else { length }];
    reader.read_exact(&mut body).expect("body");
    (status, headers, body)
}

/// One kept-alive connection with its requests written back to back (pipelined): the HTTP
/// port's front answers the LL-HLS ones (media, master and caption playlists, a part, an
/// unknown part), a `Range` request hands the connection with the requests still unread to
/// the full HTTP server, which answers the rest, all in order and the same as the front
/// would. `http.front = false` (everything through the full server) gives the same answers,
/// and so does the front without its worker loop (`http.front_tick_ms = 0`).
/// (No `HEAD` among them: actix-http decides whether a response has a body by the newest
/// request it has read, so a pipelined `HEAD` is not answered right by the full server.)
#[test]
fn pipelined_requests_of_one_connection_are_answered_in_order_across_the_hand_over() {
    use std::io::Write;
    // The front with its worker loop (the default), the front with a task per connection,
    // and no front.
    for (front, tick) in [("true", "20"), ("true", "0"), ("false", "20")] {
        let scratch = Scratch::new(&format!("ll-front-{front}-{tick}"));
        let node = Node::start(&scratch, &[("ESTUARY_HTTP__FRONT", front), ("ESTUARY_HTTP__FRONT_TICK_MS", tick)]);
        let _publisher = publish(&node.rtmp_url("live/fr"), &Source::default(), &scratch, "publisher");
        node.wait_live("live/fr", Duration::from_secs(20));
        let (status, playlist) = text(&node, "/live/fr.m3u8");
        assert_eq!(status, 200, "{playlist}");
        let part = playlist.lines().filter_map(|l| attribute(l, "URI").filter(|_| l.starts_with("#EXT-X-PART:"))).next().unwrap_or_else(|| panic!("no part in {playlist}")).to_string();
        let requests: Vec<(&str, String)> = vec![
            ("", "/live/fr.m3u8".into()),
            ("", format!("/live/{part}")),
            ("", "/live/fr_master.m3u8".into()),
            ("", "/live/fr_vtt.m3u8".into()),
            ("", "/live/fr-999999-p0.m4s".into()),
            ("Range: bytes=0-9\r\n", format!("/live/{part}")),
            ("", "/live/fr.m3u8".into()),
            ("", format!("/live/{part}")),
        ];
        let socket = std::net::TcpStream::connect(("127.0.0.1", node.ports.http)).expect("connect");
        socket.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let mut all = String::new();
        for (field, path) in &requests {
            all.push_str(&format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{field}\r\n"));
        }
        (&socket).write_all(all.as_bytes()).expect("write the requests");
        let mut reader = std::io::BufReader::new(socket);
        let answers: Vec<_> = requests.iter().map(|_| read_response(&mut reader)).collect();
        let context = format!("front = {front}, tick = {tick}, answers: {:?}", answers.iter().map(|(status, headers, body)| (status, headers, body.len())).collect::<Vec<_>>());
        let statuses: Vec<u16> = answers.iter().map(|(status, _, _)| *status).collect();
        assert_eq!(statuses, [200, 200, 200, 200, 404, 206, 200, 200], "{context}");
        let body = |i: usize| String::from_utf8_lossy(&answers[i].2).into_owned();
        let header = |i: usize, name: &str| answers[i].1.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        for i in [0, 6] {
            assert!(body(i).starts_with("#EXTM3U") && body(i).contains("#EXT-X-PART:"), "{context}: {}", body(i));
            assert_eq!(header(i, "cache-control").as_deref(), Some("no-cache"), "{context}");
            assert!(header(i, "etag").is_some(), "{context}");
        }
        assert_eq!(answers[5].2, answers[1].2[..10], "{context}");
        assert!(body(2).contains("#EXT-X-STREAM-INF") && body(2).contains("fr.m3u8"), "{context}: {}", body(2));
        assert!(body(3).starts_with("#EXTM3U"), "{context}: {}", body(3));
        // The same part, answered by each side: same bytes, an fMP4 fragment.
        assert!(!answers[1].2.is_empty() && answers[1].2 == answers[7].2, "{context}");
        assert!(answers[1].2.windows(4).any(|w| w == b"moof"), "{context}");
        assert_eq!(header(1, "content-type").as_deref(), Some("video/iso.segment"), "{context}");
        assert_eq!(header(1, "cache-control").as_deref(), Some("max-age=60, immutable"), "{context}");
        for answer in &answers {
            assert!(answer.1.iter().any(|(n, v)| n == "access-control-allow-origin" && v == "*"), "{context}");
        }
    }
}

/// A kept-alive connection to the node's HTTP port, and a reader of its responses.
fn kept_alive(node: &Node) -> (std::net::TcpStream, std::io::BufReader<std::net::TcpStream>) {
    let socket = std::net::TcpStream::connect(("127.0.0.1", node.ports.http)).expect("connect");
    socket.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let reader = std::io::BufReader::new(socket.try_clone().expect("clone"));
    (socket, reader)
}

/// A GET of `path` on a kept-alive connection, and its response.
fn get_on(socket: &std::net::TcpStream, reader: &mut std::io::BufReader<std::net::TcpStream>, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::Write;
    (&*socket).write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).expect("write");
    read_response(reader)
}

/// A viewer on one kept-alive connection, as hls.js plays and the load tool's viewer does:
/// the preload-hinted part (held until it exists), then the blocking delta playlist of that
/// part, over and over. After the first request the front's worker loop serves the
/// connection: each held part comes with the fragment's bytes, each reload names it. Left
/// idle, the loop closes the connection after the keep-alive time; a head that does not come
/// whole in time gets 408; requests sent before the client closed its side are answered.
#[test]
fn a_kept_alive_viewer_is_held_for_each_part_and_idle_connections_are_closed() {
    use estuary_tests::load::preload_hint;
    use std::io::{Read, Write};
    let scratch = Scratch::new("ll-kept");
    let node = Node::start(&scratch, &[]);
    let _publisher = publish(&node.rtmp_url("live/kept"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/kept", Duration::from_secs(20));
    let (socket, mut reader) = kept_alive(&node);
    let mut get = |path: &str| get_on(&socket, &mut reader, path);
    let (status, _, body) = get("/live/kept.m3u8");
    assert_eq!(status, 200);
    let mut playlist = String::from_utf8_lossy(&body).into_owned();
    let mut held = 0;
    for round in 0..8 {
        let (uri, msn, part) = preload_hint(&playlist).unwrap_or_else(|| panic!("round {round}: no preload hint in\n{playlist}"));
        // Asked before it exists (the hint names the part being cut): held, then its bytes.
        let asked = std::time::Instant::now();
        let (status, headers, fragment) = get(&format!("/live/{uri}"));
        assert_eq!(status, 200, "round {round}: {uri}");
        assert!(fragment.windows(4).any(|w| w == b"moof"), "round {round}: {uri} is no fragment");
        assert!(headers.iter().any(|(n, v)| n == "cache-control" && v == "max-age=60, immutable"), "round {round}: {headers:?}");
        if asked.elapsed() > Duration::from_millis(50) {
            held += 1;
        }
        let (status, _, body) = get(&format!("/live/kept.m3u8?_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES"));
        assert_eq!(status, 200, "round {round}");
        playlist = String::from_utf8_lossy(&body).into_owned();
        assert!(playlist.contains(&uri), "round {round}: the reload does not list {uri}:\n{playlist}");
    }
    // Parts come every 300 ms: most of the eight were waited for.
    assert!(held >= 4, "only {held} of 8 hinted parts were held until they existed");
    // Idle: closed after the keep-alive time (5 s).
    let idle = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = reader.read_to_end(&mut rest);
    assert!(matches!(read, Ok(0)), "an idle kept-alive connection was not closed: {read:?}, {} bytes", rest.len());
    assert!(idle.elapsed() >= Duration::from_secs(4) && idle.elapsed() < Duration::from_secs(15), "closed after {:?}", idle.elapsed());
    // Two requests and the client's end of the connection, after a first request: both
    // answered, then closed.
    let (socket, mut reader) = kept_alive(&node);
    (&socket).write_all(b"GET /live/kept.m3u8 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    assert_eq!(read_response(&mut reader).0, 200);
    std::thread::sleep(Duration::from_millis(100));
    (&socket).write_all(b"GET /live/kept.m3u8 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /live/kept.m3u8 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    socket.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert_eq!((read_response(&mut reader).0, read_response(&mut reader).0), (200, 200));
    let mut rest = Vec::new();
    assert!(matches!(reader.read_to_end(&mut rest), Ok(0)), "{} more bytes after the last answer", rest.len());
    // A head that stops halfway, after a first request: 408, then closed.
    let (socket, mut reader) = kept_alive(&node);
    (&socket).write_all(b"GET /live/kept.m3u8 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    assert_eq!(read_response(&mut reader).0, 200);
    (&socket).write_all(b"GET /live/kept.m3u8 HTTP/1.1\r\nHo").expect("write");
    let mut rest = String::new();
    reader.read_to_string(&mut rest).expect("read until closed");
    assert!(rest.starts_with("HTTP/1.1 408 "), "a trickling head got {rest:?}");
}

/// A package stopped for having no viewer is not served again from a connection that kept
/// it: the next request of that connection (kept alive meanwhile) starts the stream's next
/// package, whose playlist moves on where the stopped one's stands still.
#[test]
fn a_kept_alive_connection_follows_the_stream_to_its_next_package() {
    let scratch = Scratch::new("ll-idle-next");
    let node = Node::start(&scratch, &[("ESTUARY_HLS__IDLE_S", "1")]);
    let _publisher = publish(&node.rtmp_url("live/nxt"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/nxt", Duration::from_secs(20));
    let (socket, mut reader) = kept_alive(&node);
    let mut get = |path: &str| get_on(&socket, &mut reader, path);
    let newest = |body: &[u8]| parse(&String::from_utf8_lossy(body)).segments.last().map(|s| s.0).unwrap_or_else(|| panic!("no segment in {}", String::from_utf8_lossy(body)));
    let (status, _, first) = get("/live/nxt.m3u8");
    assert_eq!(status, 200);
    // Twice, so the second comes from the front's loop with the package it resolved.
    let (status, _, _) = get("/live/nxt.m3u8");
    assert_eq!(status, 200);
    // Idle longer than hls.idle_s (checked every second), shorter than the keep-alive time.
    std::thread::sleep(Duration::from_millis(3500));
    let (status, _, next) = get("/live/nxt.m3u8");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&next));
    assert!(newest(&next) >= newest(&first), "{}", String::from_utf8_lossy(&next));
    // A live package: its playlist moves (parts every 300 ms); the stopped one's does not.
    std::thread::sleep(Duration::from_secs(1));
    let (status, _, later) = get("/live/nxt.m3u8");
    assert_eq!(status, 200);
    assert_ne!(later, next, "the connection was served the stopped package again:\n{}", String::from_utf8_lossy(&later));
}

/// Responses the socket does not take whole (a viewer that asks for many segments at once and
/// reads nothing for a while) are finished by the connection's own task, which then hands the
/// connection back to the front's loop: every segment arrives intact and in order, and the
/// next request on the connection is answered.
#[test]
fn responses_the_socket_takes_in_part_arrive_whole() {
    let scratch = Scratch::new("ll-partial");
    let node = Node::start(&scratch, &[]);
    let _publisher = publish(&node.rtmp_url("live/big"), &Source::default(), &scratch, "publisher");
    node.wait_live("live/big", Duration::from_secs(20));
    let (status, playlist) = text(&node, "/live/big.m3u8");
    assert_eq!(status, 200, "{playlist}");
    let segment = playlist.lines().find(|l| !l.starts_with('#') && l.ends_with(".m4s")).unwrap_or_else(|| panic!("no whole segment in {playlist}")).to_string();
    let whole = http::get(node.ports.http, &format!("/live/{segment}")).expect("the segment");
    assert_eq!(whole.status, 200);
    // More than the node's socket can hold for a reader with a small receive buffer (on
    // loopback the send buffer grows to about a megabyte at once).
    let copies = (4 << 20) / whole.body.len().max(1) + 1;
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    socket.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], node.ports.http)).into()).expect("connect");
    let socket: std::net::TcpStream = socket.into();
    socket.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut reader = std::io::BufReader::new(socket.try_clone().expect("clone"));
    // The first request is the task's; the connection then goes to the loop.
    assert_eq!(get_on(&socket, &mut reader, "/live/big.m3u8").0, 200);
    std::thread::sleep(Duration::from_millis(100));
    let request = format!("GET /live/{segment} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    std::io::Write::write_all(&mut &socket, request.repeat(copies).as_bytes()).expect("write");
    // Nothing read for a while: the loop's writes stop where the socket is full.
    std::thread::sleep(Duration::from_millis(500));
    for copy in 0..copies {
        let (status, _, body) = read_response(&mut reader);
        assert_eq!(status, 200, "copy {copy}");
        assert!(body == whole.body, "copy {copy} of {copies} arrived as {} bytes, not its {}", body.len(), whole.body.len());
    }
    assert_eq!(get_on(&socket, &mut reader, "/live/big.m3u8").0, 200);
}
