//! SRT stream ids in SRS's conventions (and the SRT Access Control guidelines,
//! `#!::key=value,...`): which stream a caller wants and whether it publishes or plays.
//!
//! Accepted forms:
//! - `#!::r=live/livestream,m=publish` (keys: `r` resource, `m` mode `publish`/`request`/`play`,
//!   `h` vhost; every other key becomes a parameter, as `u`, `s`, `t` or a `token`);
//! - the same, URL-encoded (`%23%21%3A%3Ar%3Dlive...`), as some tools send it;
//! - a plain `live/livestream` (optionally `?m=publish&...`).
//!
//! A resource may carry its own query (`r=live/s?token=x`). Without a mode the caller plays.

use thiserror::Error;

/// Publish or play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The caller sends a stream.
    Publish,
    /// The caller receives a stream.
    Request,
}

/// A parsed stream id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamId {
    /// Publish or play.
    pub mode: Mode,
    /// Application.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// Virtual host, when given.
    pub vhost: Option<String>,
    /// Other keys and query parameters.
    pub params: Vec<(String, String)>,
}

/// Why a stream id is refused (the listener rejects the caller with this reason).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StreamIdError {
    /// No resource (`r=`) or path.
    #[error("stream id names no resource (expected #!::r=app/stream,m=publish)")]
    NoResource,
    /// The resource is not `app/stream`.
    #[error("resource {0:?} is not app/stream")]
    BadResource(String),
    /// An unknown mode.
    #[error("mode {0:?} is not publish or request")]
    BadMode(String),
    /// Percent-decoding produced invalid UTF-8.
    #[error("stream id is not valid percent-encoded UTF-8")]
    BadEncoding,
}

fn percent_decode(text: &str) -> Result<String, StreamIdError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| StreamIdError::BadEncoding)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| StreamIdError::BadEncoding)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| StreamIdError::BadEncoding)
}

fn valid_part(part: &str) -> bool {
    !part.is_empty() && part != "." && part != ".." && part.len() <= 200 && part.chars().all(|c| !c.is_control() && c != '\\')
}

fn split_resource(resource: &str, params: &mut Vec<(String, String)>) -> Result<(String, String), StreamIdError> {
    let (path, query) = match resource.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (resource, None),
    };
    if let Some(query) = query {
        params.extend(crate::rtmp::message::parse_query(query));
    }
    let path = path.trim_matches('/');
    let (app, stream) = path.split_once('/').ok_or_else(|| StreamIdError::BadResource(resource.to_string()))?;
    if !valid_part(app) || !valid_part(stream) || stream.split('/').any(|p| !valid_part(p)) {
        return Err(StreamIdError::BadResource(resource.to_string()));
    }
    Ok((app.to_string(), stream.to_string()))
}

fn mode_of(value: &str) -> Result<Mode, StreamIdError> {
    match value {
        "publish" => Ok(Mode::Publish),
        "request" | "play" => Ok(Mode::Request),
        other => Err(StreamIdError::BadMode(other.to_string())),
    }
}

/// Parses a stream id.
pub fn parse(raw: &str) -> Result<StreamId, StreamIdError> {
    let text = if raw.contains('%') { percent_decode(raw)? } else { raw.to_string() };
    let mut params = Vec::new();
    let mut mode = Mode::Request;
    let mut vhost = None;
    let (app, stream) = if let Some(body) = text.strip_prefix("#!::") {
        let mut resource = None;
        for pair in body.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key.trim() {
                "r" => resource = Some(value.trim().to_string()),
                "m" => mode = mode_of(value.trim())?,
                "h" => vhost = Some(value.trim().to_string()).filter(|v| !v.is_empty()),
                other => params.push((other.to_string(), value.to_string())),
            }
        }
        split_resource(&resource.ok_or(StreamIdError::NoResource)?, &mut params)?
    } else {
        if text.trim().is_empty() {
            return Err(StreamIdError::NoResource);
        }
        let parts = split_resource(text.trim(), &mut params)?;
        if let Some((_, value)) = params.iter().find(|(k, _)| k == "m") {
            mode = mode_of(value)?;
        }
        params.retain(|(k, _)| k != "m");
        parts
    };
    Ok(StreamId { mode, app, stream, vhost, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srs_form() {
        let id = parse("#!::r=live/livestream,m=publish").unwrap();
        assert_eq!((id.mode, id.app.as_str(), id.stream.as_str()), (Mode::Publish, "live", "livestream"));
        let id = parse("#!::h=example.com,r=live/cam?token=abc,m=request,u=alice").unwrap();
        assert_eq!(id.mode, Mode::Request);
        assert_eq!(id.vhost.as_deref(), Some("example.com"));
        assert_eq!(id.params, vec![("u".to_string(), "alice".to_string()), ("token".to_string(), "abc".to_string())]);
        assert_eq!(parse("#!::r=live/s").unwrap().mode, Mode::Request);
        assert_eq!(parse("#!::r=live/s,m=play").unwrap().mode, Mode::Request);
    }

    #[test]
    fn encoded_and_plain_forms() {
        let id = parse("%23%21%3A%3Ar%3Dlive%2Flivestream%2Cm%3Dpublish").unwrap();
        assert_eq!((id.mode, id.stream.as_str()), (Mode::Publish, "livestream"));
        let id = parse("live/livestream").unwrap();
        assert_eq!((id.mode, id.app.as_str()), (Mode::Request, "live"));
        let id = parse("live/livestream?m=publish&token=t").unwrap();
        assert_eq!(id.mode, Mode::Publish);
        assert_eq!(id.params, vec![("token".to_string(), "t".to_string())]);
    }

    #[test]
    fn bad_ids_have_reasons() {
        assert_eq!(parse(""), Err(StreamIdError::NoResource));
        assert_eq!(parse("#!::m=publish"), Err(StreamIdError::NoResource));
        assert!(matches!(parse("#!::r=livestream"), Err(StreamIdError::BadResource(_))));
        assert!(matches!(parse("#!::r=live/../etc,m=publish"), Err(StreamIdError::BadResource(_))));
        assert_eq!(parse("#!::r=live/s,m=record"), Err(StreamIdError::BadMode("record".into())));
        assert_eq!(parse("%zz"), Err(StreamIdError::BadEncoding));
        assert_eq!(parse("%ff%fe/x"), Err(StreamIdError::BadEncoding));
    }
}
