//! SIP (RFC 3261) messages as GB28181 (GB/T 28181-2016) uses them: parsing and building of
//! requests and responses, stream framing by `Content-Length` (for SIP over TCP), HTTP digest
//! authentication (RFC 2617, MD5, the variant without `qop` that cameras use), and reading
//! fields out of MANSCDP XML bodies (`CmdType`, `DeviceID`, `SN`, catalog items).
//!
//! Headers keep their order and original case; lookups are case-insensitive and know the
//! compact forms (`v` Via, `f` From, `t` To, `i` Call-ID, `l` Content-Length, `c`
//! Content-Type, `m` Contact).

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use thiserror::Error;

/// Largest SIP message accepted.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A SIP problem.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SipError {
    /// The start line is not a SIP request or response line.
    #[error("bad SIP start line {0:?}")]
    StartLine(String),
    /// A header line without a colon, or not UTF-8.
    #[error("bad SIP header line {0:?}")]
    Header(String),
    /// Content-Length is not a number or exceeds the limit.
    #[error("bad Content-Length {0:?}")]
    ContentLength(String),
    /// The message is larger than [`MAX_MESSAGE`].
    #[error("SIP message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
}

/// Request or response line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD uri SIP/2.0`.
    Request {
        /// Method.
        method: String,
        /// Request URI.
        uri: String,
    },
    /// `SIP/2.0 code reason`.
    Response {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// A SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    /// First line.
    pub start: StartLine,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

fn canonical(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "v" => "via".into(),
        "f" => "from".into(),
        "t" => "to".into(),
        "i" => "call-id".into(),
        "l" => "content-length".into(),
        "c" => "content-type".into(),
        "m" => "contact".into(),
        other => other.into(),
    }
}

impl SipMessage {
    /// A request.
    pub fn request(method: &str, uri: &str) -> SipMessage {
        SipMessage { start: StartLine::Request { method: method.into(), uri: uri.into() }, headers: Vec::new(), body: Bytes::new() }
    }

    /// A response to `request`: Via, From, To (with `to_tag` added when it has none), Call-ID
    /// and CSeq copied, as RFC 3261 8.2.6 asks.
    pub fn response_to(request: &SipMessage, code: u16, reason: &str, to_tag: Option<&str>) -> SipMessage {
        let mut response = SipMessage { start: StartLine::Response { code, reason: reason.into() }, headers: Vec::new(), body: Bytes::new() };
        for (name, value) in &request.headers {
            let c = canonical(name);
            if ["via", "from", "call-id", "cseq"].contains(&c.as_str()) {
                response.headers.push((name.clone(), value.clone()));
            } else if c == "to" {
                let value = match to_tag {
                    Some(tag) if !value.contains(";tag=") => format!("{value};tag={tag}"),
                    _ => value.clone(),
                };
                response.headers.push((name.clone(), value));
            }
        }
        response
    }

    /// Adds a header.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> SipMessage {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body and its type.
    pub fn with_body(mut self, content_type: &str, body: impl Into<Bytes>) -> SipMessage {
        self.body = body.into();
        self.headers.retain(|(n, _)| canonical(n) != "content-type");
        self.headers.push(("Content-Type".into(), content_type.into()));
        self
    }

    /// The first header named `name` (case-insensitive, compact forms known).
    pub fn header(&self, name: &str) -> Option<&str> {
        let want = canonical(name);
        self.headers.iter().find(|(n, _)| canonical(n) == want).map(|(_, v)| v.as_str())
    }

    /// The method, for requests.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, for responses.
    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let (n, m) = self.header("CSeq")?.trim().split_once(' ')?;
        Some((n.trim().parse().ok()?, m.trim().to_string()))
    }

    /// The user part of the `From` URI (`sip:<user>@host`): the device id in GB28181.
    pub fn from_user(&self) -> Option<&str> {
        uri_user(self.header("From")?)
    }

    /// Serializes (Content-Length is written from the body).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = String::new();
        match &self.start {
            StartLine::Request { method, uri } => out.push_str(&format!("{method} {uri} SIP/2.0\r\n")),
            StartLine::Response { code, reason } => out.push_str(&format!("SIP/2.0 {code} {reason}\r\n")),
        }
        for (name, value) in self.headers.iter().filter(|(n, _)| canonical(n) != "content-length") {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut bytes = BytesMut::from(out.as_bytes());
        bytes.extend_from_slice(&self.body);
        bytes.freeze()
    }

    /// Parses one message from the start of `data`: `Ok(None)` when more bytes are needed
    /// (TCP), else the message and the bytes it used.
    pub fn parse(data: &[u8]) -> Result<Option<(SipMessage, usize)>, SipError> {
        let Some(head_end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            return if data.len() > MAX_MESSAGE { Err(SipError::TooLarge) } else { Ok(None) };
        };
        let head = std::str::from_utf8(&data[..head_end]).map_err(|_| SipError::Header("(not UTF-8)".into()))?;
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or_default();
        let start = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let code = code.parse().ok().filter(|c| (100..700).contains(c)).ok_or_else(|| SipError::StartLine(first.into()))?;
            StartLine::Response { code, reason: reason.into() }
        } else {
            let mut parts = first.split(' ');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(method), Some(uri), Some("SIP/2.0"), None) if !method.is_empty() && method.chars().all(|c| c.is_ascii_uppercase()) => StartLine::Request { method: method.into(), uri: uri.into() },
                _ => return Err(SipError::StartLine(first.chars().take(80).collect())),
            }
        };
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line.split_once(':').ok_or_else(|| SipError::Header(line.chars().take(80).collect()))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let mut message = SipMessage { start, headers, body: Bytes::new() };
        let length = match message.header("Content-Length") {
            Some(v) => v.trim().parse::<usize>().map_err(|_| SipError::ContentLength(v.into()))?,
            None => 0,
        };
        // Checked: a Content-Length near usize::MAX must not wrap past the size limit.
        let end = head_end.checked_add(4).and_then(|body| body.checked_add(length)).filter(|end| *end <= MAX_MESSAGE).ok_or(SipError::TooLarge)?;
        if data.len() < end {
            return Ok(None);
        }
        message.body = Bytes::copy_from_slice(&data[head_end + 4..end]);
        // The length is the body's; it is written again from the body.
        message.headers.retain(|(n, _)| canonical(n) != "content-length");
        Ok(Some((message, end)))
    }
}

/// The user part of a SIP URI inside a header value (`"name" <sip:user@host>;tag=x`).
pub fn uri_user(value: &str) -> Option<&str> {
    let start = value.find("sip:")? + 4;
    let rest = &value[start..];
    let end = rest.find(['@', '>', ';', ' ']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|u| !u.is_empty())
}

/// A header parameter (`;tag=abc`, `realm="x"`).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value.split([';', ',']).map(str::trim).find_map(|p| {
        let p = p.strip_prefix("Digest ").unwrap_or(p);
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"'))
    })
}

/// MD5 hex.
fn md5_hex(text: &str) -> String {
    let mut hash = Md5::new();
    hash.update(text.as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 2617 digest response (no qop): `MD5(MD5(user:realm:pass):nonce:MD5(method:uri))`.
pub fn digest_response(username: &str, realm: &str, password: &str, method: &str, uri: &str, nonce: &str) -> String {
    let ha1 = md5_hex(&format!("{username}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    md5_hex(&format!("{ha1}:{nonce}:{ha2}"))
}

/// Checks an `Authorization: Digest ...` header for `method` against `password`, with the
/// `nonce` the server issued. Returns the username when it holds.
pub fn verify_digest(authorization: &str, method: &str, realm: &str, nonce: &str, password: &str) -> Result<String, String> {
    if !authorization.trim_start().starts_with("Digest") {
        return Err("not a Digest authorization".into());
    }
    let get = |name: &str| param(authorization, name).ok_or_else(|| format!("Authorization has no {name}"));
    let (username, uri, response) = (get("username")?, get("uri")?, get("response")?);
    if get("nonce")? != nonce {
        return Err("stale or foreign nonce".into());
    }
    if get("realm").map(|r| r != realm).unwrap_or(false) {
        return Err(format!("realm is not {realm}"));
    }
    if digest_response(username, realm, password, method, uri, nonce) != response.to_ascii_lowercase() {
        return Err("wrong password".into());
    }
    Ok(username.to_string())
}

/// The text of the first `<tag>...</tag>` in a MANSCDP body.
pub fn xml_field<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&close)? + start;
    Some(body[start..end].trim())
}

/// Every `<Item>` of a catalog response: (DeviceID, Name).
pub fn catalog_items(body: &str) -> Vec<(String, String)> {
    body.split("<Item>")
        .skip(1)
        .filter_map(|item| {
            let item = item.split("</Item>").next()?;
            Some((xml_field(item, "DeviceID")?.to_string(), xml_field(item, "Name").unwrap_or("").to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;rport;branch=z9hG4bK1\r\n\
From: <sip:34020000001320000001@3402000000>;tag=abc\r\n\
To: <sip:34020000001320000001@3402000000>\r\n\
Call-ID: 1@127.0.0.1\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:34020000001320000001@127.0.0.1:5061>\r\n\
Max-Forwards: 70\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn parses_builds_and_frames() {
        let (msg, used) = SipMessage::parse(REGISTER.as_bytes()).unwrap().unwrap();
        assert_eq!(used, REGISTER.len());
        assert_eq!(msg.method(), Some("REGISTER"));
        assert_eq!(msg.from_user(), Some("34020000001320000001"));
        assert_eq!(msg.cseq(), Some((1, "REGISTER".into())));
        assert_eq!(msg.header("call-id"), Some("1@127.0.0.1"));
        // Round trip.
        let again = SipMessage::parse(&msg.to_bytes()).unwrap().unwrap().0;
        assert_eq!(again, msg);
        // A response copies the dialog headers and tags To.
        let ok = SipMessage::response_to(&msg, 200, "OK", Some("srv"));
        let ok = SipMessage::parse(&ok.to_bytes()).unwrap().unwrap().0;
        assert_eq!(ok.code(), Some(200));
        assert!(ok.header("To").unwrap().ends_with(";tag=srv"));
        assert_eq!(ok.header("Via"), msg.header("Via"));
        // TCP: two messages back to back, split anywhere, with a body.
        let message = SipMessage::request("MESSAGE", "sip:x@y").with("Call-ID", "2").with_body("Application/MANSCDP+xml", "<Query><CmdType>Catalog</CmdType></Query>");
        let mut stream = message.to_bytes().to_vec();
        stream.extend_from_slice(REGISTER.as_bytes());
        for cut in 0..stream.len() {
            match SipMessage::parse(&stream[..cut]).unwrap() {
                None => {}
                Some((m, n)) => {
                    assert_eq!(m, message);
                    assert_eq!(SipMessage::parse(&stream[n..]).unwrap().unwrap().0, msg);
                }
            }
        }
    }

    #[test]
    fn bad_messages_are_errors() {
        for bad in ["HELLO\r\n\r\n", "register sip:x SIP/2.0\r\n\r\n", "INVITE sip:x SIP/2.0\r\nno colon here\r\n\r\n", "SIP/2.0 99 Odd\r\n\r\n", "MESSAGE sip:x SIP/2.0\r\nContent-Length: lots\r\n\r\n"] {
            assert!(SipMessage::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(SipMessage::parse(&vec![b'a'; MAX_MESSAGE + 1]), Err(SipError::TooLarge));
        // usize::MAX used to wrap the end offset past the size check and panic on the slice.
        for length in [u64::MAX.to_string(), (u64::MAX - 3).to_string()] {
            let wrapping = format!("REGISTER sip:x SIP/2.0\r\nContent-Length: {length}\r\n\r\nbody");
            assert!(matches!(SipMessage::parse(wrapping.as_bytes()), Err(SipError::TooLarge)), "{length}");
        }
        let huge = format!("MESSAGE sip:x SIP/2.0\r\nContent-Length: {}\r\n\r\n", MAX_MESSAGE);
        assert_eq!(SipMessage::parse(huge.as_bytes()), Err(SipError::TooLarge));
    }

    #[test]
    fn digest_authentication() {
        // RFC 2617 3.5's example values (without qop).
        let response = digest_response("Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093");
        assert_eq!(response.len(), 32);
        let header = format!(r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", response="{response}", algorithm=MD5"#);
        assert_eq!(verify_digest(&header, "GET", "testrealm@host.com", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "Circle Of Life"), Ok("Mufasa".into()));
        assert_eq!(verify_digest(&header, "GET", "testrealm@host.com", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "wrong").unwrap_err(), "wrong password");
        assert!(verify_digest(&header, "GET", "testrealm@host.com", "othernonce", "Circle Of Life").is_err());
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn manscdp_fields() {
        let body = "<?xml version=\"1.0\"?><Response><CmdType>Catalog</CmdType><SN>7</SN><DeviceID>3402</DeviceID><SumNum>2</SumNum><DeviceList Num=\"2\"><Item><DeviceID>34020000001320000001</DeviceID><Name>Gate</Name></Item><Item><DeviceID>34020000001320000002</DeviceID><Name>Yard</Name></Item></DeviceList></Response>";
        assert_eq!(xml_field(body, "CmdType"), Some("Catalog"));
        assert_eq!(xml_field(body, "SN"), Some("7"));
        assert_eq!(catalog_items(body), vec![("34020000001320000001".into(), "Gate".into()), ("34020000001320000002".into(), "Yard".into())]);
        assert_eq!(uri_user("\"cam\" <sip:3402@127.0.0.1:5060>;tag=1"), Some("3402"));
        assert_eq!(param("Digest realm=\"3402000000\", nonce=\"n1\"", "nonce"), Some("n1"));
    }
}
