//! The one rule every stream name obeys, whatever protocol brought it (RTMP, SRT, WHIP,
//! GB28181, ingest, players' URLs): names become directory and file names (HLS, DASH, DVR),
//! map keys and log fields, so they are checked once, before any of that.
//!
//! A vhost, app or stream name is 1 to [`MAX_PART`] bytes of letters and digits of any script
//! (SRS users name streams in Chinese) and `- _ . ~ @ + = ! ,`; app and stream names may have
//! several such parts joined by `/`, and a vhost may carry a `:port`. No part is `.` or `..`,
//! so no name climbs out of a directory, and no name holds a separator, a quote, `%`, `?`,
//! `#`, white space or a control character, so none needs quoting in a path or a log line.

/// Longest vhost, app or stream name part, in bytes.
pub const MAX_PART: usize = 128;
/// Most `/`-separated parts in a stream name.
pub const MAX_PARTS: usize = 4;

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || "-_.~@+=!,".contains(c)
}

fn check_part(what: &str, part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err(format!("{what} has an empty part"));
    }
    if part.len() > MAX_PART {
        return Err(format!("{what} part is {} bytes long; at most {MAX_PART}", part.len()));
    }
    if part == "." || part == ".." {
        return Err(format!("{what} part {part:?} is not allowed"));
    }
    if let Some(bad) = part.chars().find(|c| !allowed(*c)) {
        return Err(format!("{what} contains {bad:?}; names use letters, digits and - _ . ~ @ + = ! ,"));
    }
    Ok(())
}

fn check_parts(what: &str, name: &str) -> Result<(), String> {
    let parts = name.split('/').count();
    if parts > MAX_PARTS {
        return Err(format!("{what} has {parts} parts; at most {MAX_PARTS}"));
    }
    name.split('/').try_for_each(|p| check_part(what, p))
}

/// Checks a file name served under an app (a playlist or segment: the stream's name with a
/// suffix and an extension, `<stream>-video-<time>.m4s`): one part of allowed characters,
/// not `.` or `..`, up to [`MAX_PART`] plus 64 bytes (room for the suffix of a stream name of
/// the longest allowed length).
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_PART + 64 {
        return Err(format!("file name is {} bytes long; at most {}", name.len(), MAX_PART + 64));
    }
    // The name before the extension is a stream's name with a suffix: never empty, `.` or `..`.
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    if name.is_empty() || name == "." || name == ".." || stem.is_empty() || stem == "." || stem == ".." {
        return Err(format!("file name {name:?} is not allowed"));
    }
    match name.chars().find(|c| !allowed(*c)) {
        Some(bad) => Err(format!("file name contains {bad:?}; names use letters, digits and - _ . ~ @ + = ! ,")),
        None => Ok(()),
    }
}

/// Checks an app name: up to [`MAX_PARTS`] parts joined by `/` (`live/sub`).
pub fn check_app(app: &str) -> Result<(), String> {
    check_parts("app name", app)
}

/// Checks a stream name: up to [`MAX_PARTS`] parts joined by `/`.
pub fn check_stream(stream: &str) -> Result<(), String> {
    check_parts("stream name", stream)
}

/// Checks vhost (which may end in `:port`), app and stream together.
pub fn check_key(vhost: &str, app: &str, stream: &str) -> Result<(), String> {
    let host = match vhost.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => vhost,
    };
    check_part("vhost", host)?;
    check_app(app)?;
    check_stream(stream)
}

/// A GB28181 device or channel id: 20 decimal digits (GB/T 28181 §D.1 coding rule).
pub fn check_gb_id(id: &str) -> Result<(), String> {
    if id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("GB28181 id {:?} is not 20 digits", id.chars().take(40).collect::<String>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for stream in ["livestream", "cam-1_hd", "34020000001110000001_34020000001320000001", "a/b", "bench.v2", "user@site", "x=1,y!", "直播间1", "ü"] {
            assert!(check_stream(stream).is_ok(), "{stream}");
        }
        assert!(check_key("__defaultVhost__", "live", "livestream").is_ok());
        assert!(check_key("example.com:1935", "live/sub", "x").is_ok());
    }

    #[test]
    fn names_that_climb_quote_or_overflow_fail() {
        for stream in ["", "..", "a/../b", "../../../../tmp/x/pwn_1", "a//b", "/abs", "a b", "a\\b", "tab\t", "new\nline", "q?x", "h#x", "p%2e", "a:b", "q\"x", "a/b/c/d/e", "\u{202e}x"] {
            assert!(check_stream(stream).is_err(), "{stream:?}");
        }
        assert!(check_stream(&"x".repeat(MAX_PART + 1)).is_err());
        assert!(check_app("li/../ve").is_err());
        assert!(check_gb_id("34020000001320000001").is_ok());
        for id in ["3402000000132000000", "340200000013200000011", "../../../../../tmp/x/pwn", "3402000000132000000a"] {
            assert!(check_gb_id(id).is_err(), "{id}");
        }
    }

    #[test]
    fn file_names_allow_a_suffix_past_the_longest_stream_name() {
        let stream = "名".repeat(42); // 126 bytes: a valid stream name
        assert!(check_stream(&stream).is_ok());
        assert!(check_file_name(&format!("{stream}-video-123456789012.m4s")).is_ok());
        assert!(check_file_name(&format!("{stream}_master.m3u8")).is_ok());
        assert!(check_file_name("..").is_err());
        assert!(check_file_name("...m3u8").is_err(), "`..` with an extension");
        assert!(check_file_name(".m3u8").is_err());
        assert!(check_file_name("a/b.ts").is_err());
        assert!(check_file_name(&"x".repeat(MAX_PART + 65)).is_err());
    }
}
