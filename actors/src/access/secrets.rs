//! Secrets kept out of the API and the logs: the stream key at the end of a destination URL
//! (RTMP platforms put the account's key there), query values (`passphrase=`, `token=`,
//! `streamid=` ...), and the parameters of SRT stream ids. What is left is enough to tell
//! destinations and callers apart.

/// `rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl` → `rtmp://a.rtmp.youtube.com/live2/abcd****`;
/// every query value becomes `****`.
pub fn mask_url(url: &str) -> String {
    let masked = mask_userinfo(url);
    let url = masked.as_str();
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.find("://").map(|i| i + 3).and_then(|start| base[start..].find('/').map(|slash| start + slash)) {
        // Only the last path segment after the host's first `/` is a possible key.
        Some(path_start) => match base.rfind('/') {
            Some(last) if last > path_start || (last == path_start && base.len() > last + 1) => format!("{}/{}", &base[..last], mask_segment(&base[last + 1..])),
            _ => base.to_string(),
        },
        None => base.to_string(),
    };
    if let Some(query) = query {
        out.push('?');
        out.push_str(&mask_query(query));
    }
    out
}

/// `rtsp://admin:pw@cam/...` → `rtsp://admin:****@cam/...`.
fn mask_userinfo(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let authority_end = url[start..].find(['/', '?', '#']).map(|i| start + i).unwrap_or(url.len());
    match url[start..authority_end].rfind('@') {
        Some(at) => {
            let user = &url[start..start + at];
            let user = user.split_once(':').map(|(name, _)| format!("{name}:****")).unwrap_or_else(|| user.to_string());
            format!("{}{user}{}", &url[..start], &url[start + at..])
        }
        None => url.to_string(),
    }
}

fn mask_segment(segment: &str) -> String {
    if segment.chars().count() <= 4 {
        return segment.to_string();
    }
    let kept: String = segment.chars().take(4).collect();
    format!("{kept}****")
}

/// `a=1&token=xyz` → `a=****&token=****`.
pub fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) => format!("{key}=****"),
            None => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// An SRT stream id with its parameters masked: `#!::r=live/cam,m=publish,token=abc` keeps
/// `r` and `m` and masks the rest; a plain id keeps its resource and masks any query.
pub fn mask_stream_id(id: &str) -> String {
    if let Some(body) = id.strip_prefix("#!::") {
        let fields: Vec<String> = body
            .split(',')
            .map(|field| match field.split_once('=') {
                Some((key, value)) if key == "r" || key == "m" || key == "h" => format!("{key}={value}"),
                Some((key, _)) => format!("{key}=****"),
                None => field.to_string(),
            })
            .collect();
        return format!("#!::{}", fields.join(","));
    }
    match id.split_once('?') {
        Some((resource, query)) => format!("{resource}?{}", mask_query(query)),
        None => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_query_values_are_masked() {
        assert_eq!(mask_url("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop"), "rtmp://a.rtmp.youtube.com/live2/abcd****");
        assert_eq!(mask_url("rtmps://live-api-s.facebook.com:443/rtmp/FB-1234567890"), "rtmps://live-api-s.facebook.com:443/rtmp/FB-1****");
        assert_eq!(mask_url("rtmp://127.0.0.1/live/cam"), "rtmp://127.0.0.1/live/cam");
        assert_eq!(mask_url("srt://10.0.0.2:10080?streamid=#!::r=live/x&passphrase=secret123"), "srt://10.0.0.2:10080?streamid=****&passphrase=****");
        assert_eq!(mask_url("rtmp://host"), "rtmp://host");
        assert_eq!(mask_url("rtsp://admin:hunter2@10.0.0.5/Streaming/Channels/101"), "rtsp://admin:****@10.0.0.5/Streaming/Channels/101");
        assert_eq!(mask_stream_id("#!::r=live/cam,m=publish,token=1799999999.abcdef"), "#!::r=live/cam,m=publish,token=****");
        assert_eq!(mask_stream_id("live/cam?token=abc"), "live/cam?token=****");
    }
}
