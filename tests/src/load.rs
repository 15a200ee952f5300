//! The load tool's pure parts: target URLs (loopback only), the latency stamp carried in an
//! H.264 SEI NAL unit, and the statistics it reports.
//!
//! ## Latency stamps
//! The synthetic publisher puts one SEI NAL unit (type 6, payload type 5 "user data
//! unregistered") in front of every video frame: a 16-byte UUID that marks it as ours, then the
//! send time as 16 lowercase hex digits of Unix microseconds. Hex keeps the payload free of
//! zero bytes, so no emulation prevention is needed. Players on the same machine subtract it
//! from their receive time.

use std::net::IpAddr;

/// Our SEI UUID.
pub const STAMP_UUID: [u8; 16] = *b"estuary-latency!";

/// What a load URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `rtmp`, `http-flv`, `http-ts`, `hls`, `srt` or `whep`.
    pub protocol: &'static str,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// App.
    pub app: String,
    /// Stream (with query).
    pub stream: String,
}

/// Parses `ws://127.0.0.1[:8080]/tap/app/stream[?audio=..]` (an AI tap client),
/// `rtmp://127.0.0.1[:1935]/app/stream`, `http://127.0.0.1[:8080]/app/stream.flv` (or
/// `.ts`, or `.m3u8` for an LL-HLS player),
/// `srt://127.0.0.1[:10080]?streamid=#!::r=app/stream,m=request` (or `m=publish`), a WHEP
/// endpoint `http://127.0.0.1[:1985]/rtc/v1/whep/?app=app&stream=stream` or a WHIP endpoint
/// (`/rtc/v1/whip/`, the same query). Only loopback hosts are
/// accepted: this tool never loads anything but this machine.
pub fn parse_target(url: &str) -> Result<Target, String> {
    let (protocol, rest, default_port) = if let Some(rest) = url.strip_prefix("rtmp://") {
        ("rtmp", rest, 1935)
    } else if let Some(rest) = url.strip_prefix("http://") {
        ("http-flv", rest, 8080)
    } else if let Some(rest) = url.strip_prefix("srt://") {
        ("srt", rest, 10080)
    } else if let Some(rest) = url.strip_prefix("ws://") {
        ("tap", rest, 8080)
    } else {
        return Err(format!("{url}: expected rtmp://, http://, srt:// or ws://"));
    };
    let split_at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split_at);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().map_err(|_| format!("{url}: bad port"))?),
        None => (authority.to_string(), default_port),
    };
    let loopback = host == "localhost" || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!("{url}: only loopback hosts (127.0.0.0/8, ::1, localhost) may be loaded"));
    }
    if protocol == "srt" {
        let stream_id = path.trim_start_matches('/').strip_prefix('?').and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("streamid="))).ok_or_else(|| format!("{url}: SRT players need ?streamid=#!::r=app/stream,m=request"))?;
        let id = estuary_protocols::srt::streamid::parse(stream_id).map_err(|e| format!("{url}: {e}"))?;
        return Ok(Target { protocol, host, port, app: id.app, stream: id.stream });
    }
    for (prefix, kind) in [("/rtc/v1/whep", "whep"), ("/rtc/v1/whip", "whip")] {
        if protocol == "http-flv" && path.starts_with(prefix) {
            let query = path.split_once('?').map(|(_, q)| q).unwrap_or_default();
            let get = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_string);
            let (app, stream) = get("app").zip(get("stream")).ok_or_else(|| format!("{url}: WebRTC endpoints need ?app=..&stream=.."))?;
            return Ok(Target { protocol: kind, host, port: if authority.contains(':') { port } else { 1985 }, app, stream });
        }
    }
    let path = path.strip_prefix('/').ok_or_else(|| format!("{url}: no path"))?;
    if protocol == "tap" {
        // An AI tap client: ws://127.0.0.1:8080/tap/<app>/<stream>[?audio=...].
        let rest = path.strip_prefix("tap/").ok_or_else(|| format!("{url}: tap URLs are ws://host:port/tap/app/stream"))?;
        let (app, stream) = rest.split_once('/').ok_or_else(|| format!("{url}: expected /tap/app/stream"))?;
        return Ok(Target { protocol, host, port, app: app.to_string(), stream: stream.to_string() });
    }
    let (app, stream) = path.split_once('/').ok_or_else(|| format!("{url}: expected /app/stream"))?;
    let (protocol, stream) = if protocol == "http-flv" {
        match (stream.strip_suffix(".flv"), stream.strip_suffix(".ts"), stream.strip_suffix(".m3u8")) {
            (Some(stream), _, _) => ("http-flv", stream.to_string()),
            (_, Some(stream), _) => ("http-ts", stream.to_string()),
            (_, _, Some(stream)) => ("hls", stream.to_string()),
            _ => return Err(format!("{url}: HTTP players need a .flv, .ts or .m3u8 URL")),
        }
    } else {
        (protocol, stream.to_string())
    };
    Ok(Target { protocol, host, port, app: app.to_string(), stream })
}

/// The SEI NAL unit (without length prefix) stamping `micros`.
pub fn stamp_nal(micros: u64) -> Vec<u8> {
    let mut nal = vec![0x06, 0x05, 32];
    nal.extend_from_slice(&STAMP_UUID);
    nal.extend_from_slice(format!("{micros:016x}").as_bytes());
    nal.push(0x80);
    nal
}

/// The latest stamp anywhere in `data` (an fMP4 part: its samples keep our SEI NAL units
/// whole, and the UUID does not occur otherwise).
pub fn last_stamp_in(data: &[u8]) -> Option<u64> {
    let at = data.windows(STAMP_UUID.len()).rposition(|w| w == STAMP_UUID)? + STAMP_UUID.len();
    u64::from_str_radix(std::str::from_utf8(data.get(at..at + 16)?).ok()?, 16).ok()
}

/// The preload hint of an LL-HLS playlist: its URI and the (segment, part) it names
/// (`<stream>-<msn>-p<part>.m4s`).
pub fn preload_hint(playlist: &str) -> Option<(String, u64, u64)> {
    let line = playlist.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    let uri = line.split("URI=\"").nth(1)?.split('"').next()?.to_string();
    let stem = uri.strip_suffix(".m4s")?;
    let (rest, part) = stem.rsplit_once("-p")?;
    let (_, msn) = rest.rsplit_once('-')?;
    Some((uri.clone(), msn.parse().ok()?, part.parse().ok()?))
}

/// Reads a stamp from a length-prefixed (4-byte) H.264 payload, when its first NAL is ours.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    let len = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let nal = payload.get(4..4 + len)?;
    if nal.len() < 3 + 16 + 16 || nal[0] & 0x1f != 6 || nal[1] != 5 || nal[3..19] != STAMP_UUID {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&nal[19..35]).ok()?, 16).ok()
}

/// Undoes HTTP/1.1 chunked transfer coding incrementally (any split of the input).
#[derive(Debug, Default)]
pub struct Dechunker {
    size_line: Vec<u8>,
    remaining: usize,
    skip_crlf: usize,
    done: bool,
}

impl Dechunker {
    /// Appends the payload bytes contained in `input` to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !input.is_empty() && !self.done {
            if self.skip_crlf > 0 {
                let n = self.skip_crlf.min(input.len());
                self.skip_crlf -= n;
                input = &input[n..];
            } else if self.remaining > 0 {
                let n = self.remaining.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.remaining -= n;
                input = &input[n..];
                if self.remaining == 0 {
                    self.skip_crlf = 2;
                }
            } else {
                let byte = input[0];
                input = &input[1..];
                if byte == b'\n' {
                    let line = String::from_utf8_lossy(&self.size_line).trim().to_string();
                    self.size_line.clear();
                    let size = usize::from_str_radix(line.split(';').next().unwrap_or(""), 16).map_err(|_| format!("bad chunk size line {line:?}"))?;
                    if size == 0 {
                        self.done = true;
                    }
                    self.remaining = size;
                } else if self.size_line.len() < 64 {
                    self.size_line.push(byte);
                } else {
                    return Err("chunk size line too long".into());
                }
            }
        }
        Ok(())
    }
}

/// Median and 99th percentile of `samples` (sorted in place); `None` when empty.
pub fn median_p99(samples: &mut [f64]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Some((at(0.5), at(0.99)))
}

/// CPU seconds (user + system) of a process, from `/proc/<pid>/stat`.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Resident memory of a process in KiB.
pub fn process_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hls_targets_and_hints() {
        let t = parse_target("http://127.0.0.1:8080/live/s.m3u8").unwrap();
        assert_eq!((t.protocol, t.stream.as_str()), ("hls", "s"));
        let playlist = "#EXTM3U\n#EXT-X-PART:DURATION=0.280,URI=\"cam-1-12-p2.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-1-12-p3.m4s\"\n";
        assert_eq!(preload_hint(playlist), Some(("cam-1-12-p3.m4s".to_string(), 12, 3)));
        let mut part = b"moof....".to_vec();
        part.extend_from_slice(&STAMP_UUID);
        part.extend_from_slice(b"00000000000000ff");
        part.extend_from_slice(&STAMP_UUID);
        part.extend_from_slice(b"0000000000000100");
        assert_eq!(last_stamp_in(&part), Some(256));
    }

    #[test]
    fn tap_targets() {
        let t = parse_target("ws://127.0.0.1:18080/tap/live/bench?audio=s16le&rate=16000").unwrap();
        assert_eq!((t.protocol, t.port, t.app.as_str(), t.stream.as_str()), ("tap", 18080, "live", "bench?audio=s16le&rate=16000"));
        assert_eq!(parse_target("ws://127.0.0.1/tap/live/s").unwrap().port, 8080);
        assert!(parse_target("ws://127.0.0.1:8080/live/s").is_err());
        assert!(parse_target("ws://10.0.0.1:8080/tap/live/s").is_err());
    }

    #[test]
    fn whep_targets() {
        let t = parse_target("http://127.0.0.1:19861/rtc/v1/whep/?app=live&stream=bench").unwrap();
        assert_eq!((t.protocol, t.port, t.app.as_str(), t.stream.as_str()), ("whep", 19861, "live", "bench"));
        assert_eq!(parse_target("http://127.0.0.1/rtc/v1/whep/?app=live&stream=s").unwrap().port, 1985);
        assert!(parse_target("http://127.0.0.1:1985/rtc/v1/whep/?app=live").is_err());
        let t = parse_target("http://127.0.0.1:19861/rtc/v1/whip/?app=live&stream=up").unwrap();
        assert_eq!((t.protocol, t.port, t.app.as_str(), t.stream.as_str()), ("whip", 19861, "live", "up"));
        assert!(parse_target("http://10.0.0.1:1985/rtc/v1/whep/?app=live&stream=s").is_err());
    }

    #[test]
    fn targets_are_loopback_only() {
        let t = parse_target("rtmp://127.0.0.1:1936/live/s?x=1").unwrap();
        assert_eq!((t.protocol, t.port, t.app.as_str(), t.stream.as_str()), ("rtmp", 1936, "live", "s?x=1"));
        let t = parse_target("http://localhost/live/s.flv").unwrap();
        assert_eq!((t.protocol, t.port, t.stream.as_str()), ("http-flv", 8080, "s"));
        let t = parse_target("http://127.0.0.1:8081/live/s.ts").unwrap();
        assert_eq!((t.protocol, t.port, t.stream.as_str()), ("http-ts", 8081, "s"));
        assert!(parse_target("rtmp://10.0.0.1/live/s").unwrap_err().contains("loopback"));
        assert!(parse_target("rtmp://example.com/live/s").is_err());
        assert!(parse_target("http://127.0.0.1/live/s.mpd").is_err());
        assert!(parse_target("srt://127.0.0.1/x").is_err(), "SRT needs a stream id");
        let t = parse_target("srt://127.0.0.1:10081?streamid=#!::r=live/s,m=request").unwrap();
        assert_eq!((t.protocol, t.port, t.app.as_str(), t.stream.as_str()), ("srt", 10081, "live", "s"));
        assert!(parse_target("srt://192.168.1.1:10080?streamid=live/s").unwrap_err().contains("loopback"));
        assert!(parse_target("ftp://127.0.0.1/x").is_err());
    }

    #[test]
    fn stamps_round_trip_and_foreign_sei_is_ignored() {
        let nal = stamp_nal(1_795_620_000_123_456);
        assert!(!nal.contains(&0), "no zero bytes, so no emulation prevention needed");
        let mut payload = (nal.len() as u32).to_be_bytes().to_vec();
        payload.extend_from_slice(&nal);
        payload.extend_from_slice(&[0, 0, 0, 2, 0x65, 0x88]);
        assert_eq!(read_stamp(&payload), Some(1_795_620_000_123_456));
        assert_eq!(read_stamp(&[0, 0, 0, 2, 0x65, 0x88]), None);
        let mut foreign = payload.clone();
        foreign[7] ^= 1;
        assert_eq!(read_stamp(&foreign), None);
        assert_eq!(read_stamp(&payload[..10]), None);
    }

    #[test]
    fn dechunking_is_split_proof() {
        let wire = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        for step in [1, 2, 3, 7, 100] {
            let mut d = Dechunker::default();
            let mut out = Vec::new();
            for piece in wire.chunks(step) {
                d.push(piece, &mut out).unwrap();
            }
            assert_eq!(out, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
        }
        assert!(Dechunker::default().push(b"zz\r\n", &mut Vec::new()).is_err());
    }

    #[test]
    fn percentiles() {
        let mut samples: Vec<f64> = (1..=100).map(|v| v as f64).collect();
        assert_eq!(median_p99(&mut samples), Some((51.0, 99.0)));
        assert_eq!(median_p99(&mut []), None);
        assert_eq!(median_p99(&mut [5.0]), Some((5.0, 5.0)));
    }

    #[test]
    fn reads_own_process_figures() {
        let pid = std::process::id();
        assert!(process_cpu_seconds(pid).is_some());
        assert!(process_rss_kb(pid).unwrap_or(0) > 0);
    }
}
