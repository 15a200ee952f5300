//! The small parts of HTTP/1.1 the node reads itself: a response to a hook call (status and
//! body, chunked or not; RFC 9112) and the `Range` header of a download (RFC 9110, 14.2).

/// Status and body of a complete HTTP/1.1 response in `raw` (a body sent with
/// `Transfer-Encoding: chunked` is joined). `None` when `raw` is not one.
pub fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let status = head.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut data = &body[..];
        while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&data[..end]).ok()?.trim(), 16).ok()?;
            if size == 0 {
                break;
            }
            out.extend_from_slice(data.get(end + 2..end + 2 + size)?);
            data = data.get(end + 4 + size..).unwrap_or(&[]);
        }
        body = out;
    }
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// What a `Range` header asks of a body of known length (RFC 9110, 14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range, or one the server may ignore: the whole body.
    Whole,
    /// Bytes `[start, end)`.
    Part(u64, u64),
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// Parses a `Range` header value (`None` when absent) for a body of `len` bytes. One range
/// is served; several are answered with the whole body (which RFC 9110 allows).
pub fn parse_range(value: Option<&str>, len: u64) -> RangeRequest {
    let Some(value) = value else { return RangeRequest::Whole };

    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeRequest::Whole };
    if spec.contains(',') {
        // Several ranges: answered with the whole body (allowed by RFC 9110).
        return RangeRequest::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else { return RangeRequest::Whole };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, false) => b.parse::<u64>().ok().map(|n| (len.saturating_sub(n), len.saturating_sub(1))).filter(|_| len > 0),
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else { return RangeRequest::Whole };
            if start >= len {
                return RangeRequest::Unsatisfiable;
            }
            let end = if b.is_empty() { len - 1 } else {
                match b.parse::<u64>() {
                    Ok(end) if end >= start => end.min(len - 1),
                    // An invalid range is ignored (RFC 9110, 14.2).
                    _ => return RangeRequest::Whole,
                }
            };
            Some((start, end))
        }
        (true, true) => return RangeRequest::Whole,
    };
    match range {
        Some((s, e)) if s < len && s <= e => RangeRequest::Part(s, e + 1),
        _ => RangeRequest::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_plain_and_chunked() {
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n0"), Some((200, "0".to_string())));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"co\r\n6\r\nde\":0}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((200, "{\"code\":0}".to_string())));
        assert_eq!(parse_response(b"HTTP/1.1 403 Forbidden\r\n\r\n"), Some((403, String::new())));
        assert_eq!(parse_response(b"garbage"), None);
        assert_eq!(parse_response(b"HTTP/1.1 abc\r\n\r\n"), None);
    }

    #[test]
    fn range_headers() {
        let check = |value: &str, len: u64| match parse_range(Some(value), len) {
            RangeRequest::Whole => "whole".to_string(),
            RangeRequest::Part(a, b) => format!("{a}..{b}"),
            RangeRequest::Unsatisfiable => "416".to_string(),
        };
        assert_eq!(check("bytes=0-99", 1000), "0..100");
        assert_eq!(check("bytes=990-2000", 1000), "990..1000");
        assert_eq!(check("bytes=-10", 1000), "990..1000");
        assert_eq!(check("bytes=500-", 1000), "500..1000");
        assert_eq!(check("bytes=1000-", 1000), "416");
        assert_eq!(check("bytes=1010-1020", 1000), "416");
        assert_eq!(check("bytes=9-3", 1000), "whole");
        assert_eq!(check("bytes=0-1,5-6", 1000), "whole");
        assert_eq!(check("items=0-1", 1000), "whole");
        assert_eq!(parse_range(None, 1000), RangeRequest::Whole);
    }
}
