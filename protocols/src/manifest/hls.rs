//! HLS media playlists (RFC 8216).
//!
//! Rules kept by [`MediaPlaylist::render`]: `EXT-X-TARGETDURATION` is at least every
//! segment's duration rounded to the nearest integer (§4.3.3.1); `EXT-X-MEDIA-SEQUENCE` is the
//! sequence number of the first listed segment (§4.3.3.2); `EXT-X-DISCONTINUITY-SEQUENCE`
//! counts discontinuities that left the window (§4.3.3.3); fMP4 playlists carry `EXT-X-MAP`
//! and version 7, TS playlists version 3.

use std::fmt::Write;

/// One listed segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Media sequence number.
    pub sequence: u64,
    /// Duration in seconds.
    pub duration: f64,
    /// URI relative to the playlist.
    pub uri: String,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// fMP4: the initialization segment URI (`EXT-X-MAP`), written when it changes.
    pub map: Option<String>,
    /// Wall-clock time (Unix ms) of its start (`EXT-X-PROGRAM-DATE-TIME`), when known.
    pub program_date_time: Option<i64>,
}

/// A live (or ended) media playlist.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MediaPlaylist {
    /// `EXT-X-TARGETDURATION` before adjustment to the segments.
    pub target_duration: u64,
    /// Discontinuities that left the window.
    pub discontinuity_sequence: u64,
    /// The window.
    pub segments: Vec<Segment>,
    /// `EXT-X-ENDLIST`.
    pub ended: bool,
}

impl MediaPlaylist {
    /// The target duration actually written: the configured one, raised to cover every
    /// listed segment.
    pub fn effective_target(&self) -> u64 {
        self.segments.iter().map(|s| s.duration.round() as u64).max().unwrap_or(0).max(self.target_duration).max(1)
    }

    /// The playlist text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let fmp4 = self.segments.iter().any(|s| s.map.is_some());
        let version = if fmp4 { 7 } else { 3 };
        let _ = writeln!(out, "#EXTM3U");
        let _ = writeln!(out, "#EXT-X-VERSION:{version}");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.effective_target());
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.segments.first().map(|s| s.sequence).unwrap_or(0));
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
        }
        if fmp4 {
            let _ = writeln!(out, "#EXT-X-INDEPENDENT-SEGMENTS");
        }
        let mut current_map: Option<&str> = None;
        for segment in &self.segments {
            if segment.discontinuity {
                let _ = writeln!(out, "#EXT-X-DISCONTINUITY");
            }
            if let Some(map) = segment.map.as_deref() {
                if current_map != Some(map) {
                    let _ = writeln!(out, "#EXT-X-MAP:URI=\"{map}\"");
                    current_map = Some(map);
                }
            }
            if let Some(pdt) = segment.program_date_time {
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", crate::clock::rfc3339(pdt));
            }
            let _ = writeln!(out, "#EXTINF:{:.3},", segment.duration);
            let _ = writeln!(out, "{}", segment.uri);
        }
        if self.ended {
            let _ = writeln!(out, "#EXT-X-ENDLIST");
        }
        out
    }

    /// Appends a segment and drops the oldest beyond `window`; returns the dropped ones.
    pub fn push(&mut self, segment: Segment, window: usize) -> Vec<Segment> {
        self.segments.push(segment);
        let mut removed = Vec::new();
        while self.segments.len() > window.max(1) {
            let old = self.segments.remove(0);
            // Only discontinuity tags that leave the playlist are counted.
            if old.discontinuity {
                self.discontinuity_sequence += 1;
            }
            removed.push(old);
        }
        removed
    }
}

/// One rendition in a master playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// Peak bits per second (`BANDWIDTH`).
    pub bandwidth: u64,
    /// Width and height, when known (`RESOLUTION`).
    pub resolution: Option<(u32, u32)>,
    /// The media playlist's URI.
    pub uri: String,
}

/// A subtitle rendition of a master playlist (`EXT-X-MEDIA:TYPE=SUBTITLES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subtitles {
    /// Its media playlist's URI.
    pub uri: String,
    /// Its language as an ISO 639 code, when known (written as the RFC 5646 tag players match).
    pub language: Option<String>,
}

/// The RFC 5646 primary language tag of an ISO 639 code: the two-letter code where one
/// exists for the common three-letter ones, the code itself when it is already two letters.
pub(crate) fn language_tag(code: &str) -> Option<&str> {
    const PAIRS: [(&str, &str); 16] = [
        ("eng", "en"), ("fra", "fr"), ("fre", "fr"), ("deu", "de"), ("ger", "de"), ("spa", "es"), ("ita", "it"), ("por", "pt"),
        ("rus", "ru"), ("zho", "zh"), ("chi", "zh"), ("jpn", "ja"), ("kor", "ko"), ("ara", "ar"), ("hin", "hi"), ("nld", "nl"),
    ];
    match code.len() {
        2 => Some(code),
        _ => PAIRS.iter().find(|(long, _)| *long == code).map(|(_, short)| *short),
    }
}

/// A master playlist (RFC 8216, 4.3.4.2) of `variants`, highest bandwidth first, with the
/// caption rendition every variant refers to, if any.
pub fn master_playlist(mut variants: Vec<Variant>, subtitles: Option<&Subtitles>) -> String {
    variants.sort_by_key(|v| std::cmp::Reverse(v.bandwidth));
    let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
    if let Some(subtitles) = subtitles {
        text.push_str("#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"Captions\",DEFAULT=NO,AUTOSELECT=YES");
        if let Some(tag) = subtitles.language.as_deref().and_then(language_tag) {
            text.push_str(&format!(",LANGUAGE=\"{tag}\""));
        }
        text.push_str(&format!(",URI=\"{}\"\n", subtitles.uri));
    }
    for variant in variants {
        text.push_str(&format!("#EXT-X-STREAM-INF:BANDWIDTH={}", variant.bandwidth));
        if let Some((w, h)) = variant.resolution {
            text.push_str(&format!(",RESOLUTION={w}x{h}"));
        }
        if subtitles.is_some() {
            text.push_str(",SUBTITLES=\"subs\"");
        }
        text.push_str(&format!("\n{}\n", variant.uri));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(sequence: u64, duration: f64, discontinuity: bool) -> Segment {
        Segment { sequence, duration, uri: format!("s-{sequence}.ts"), discontinuity, map: None, program_date_time: None }
    }

    #[test]
    fn renders_a_live_window() {
        let mut playlist = MediaPlaylist { target_duration: 2, ..Default::default() };
        for i in 0..5 {
            playlist.push(seg(i, 2.0 + i as f64 * 0.1, i == 3), 3);
        }
        let text = playlist.render();
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:2\n#EXTINF:2.200,\ns-2.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.300,\ns-3.ts\n#EXTINF:2.400,\ns-4.ts\n"
        );
    }

    #[test]
    fn target_covers_long_segments_and_discontinuities_are_counted() {
        let mut playlist = MediaPlaylist { target_duration: 2, ..Default::default() };
        let with_map = |s: Segment| Segment { map: Some("init.mp4".into()), ..s };
        playlist.push(with_map(seg(0, 2.0, true)), 2);
        playlist.push(with_map(seg(1, 4.6, false)), 2);
        playlist.push(with_map(seg(2, 2.0, false)), 2);
        playlist.ended = true;
        let text = playlist.render();
        assert!(text.contains("#EXT-X-TARGETDURATION:5\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
        assert!(text.contains("#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION"));
        assert!(text.contains("#EXT-X-MAP:URI=\"init.mp4\"\n"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
    }
}

/// `playlist` with `query` (`token=...`) appended to every URI: segment and playlist lines
/// and `URI="..."` attributes (`EXT-X-MAP`, keys). Lets a player that was given a signed
/// playlist URL fetch what it lists with the same signature (RFC 8216 §4.1: URI lines are
/// relative to the playlist, so the query has to be on each of them).
pub fn with_query_on_uris(playlist: &str, query: &str) -> String {
    let add = |uri: &str| if uri.contains('?') { format!("{uri}&{query}") } else { format!("{uri}?{query}") };
    let mut out = String::with_capacity(playlist.len() + 64);
    for line in playlist.lines() {
        if !line.is_empty() && !line.starts_with('#') {
            out.push_str(&add(line));
        } else if let Some(start) = line.find("URI=\"").map(|i| i + 5) {
            match line[start..].find('"') {
                Some(len) => {
                    out.push_str(&line[..start]);
                    out.push_str(&add(&line[start..start + len]));
                    out.push_str(&line[start + len..]);
                }
                None => out.push_str(line),
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod query_tests {
    use super::with_query_on_uris;

    #[test]
    fn every_uri_gets_the_query_and_nothing_else_changes() {
        let playlist = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-MAP:URI=\"cam-init-0.mp4\"\n#EXTINF:2.000,\ncam-5.m4s\n#EXTINF:2.000,\ncam-6.m4s?x=1\n";
        let out = with_query_on_uris(playlist, "token=9.ab");
        assert_eq!(out, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-MAP:URI=\"cam-init-0.mp4?token=9.ab\"\n#EXTINF:2.000,\ncam-5.m4s?token=9.ab\n#EXTINF:2.000,\ncam-6.m4s?x=1&token=9.ab\n");
    }

    #[test]
    fn master_playlist_lists_variants_by_bandwidth() {
        use super::{master_playlist, Variant};
        let text = master_playlist(vec![
            Variant { bandwidth: 500_000, resolution: Some((320, 180)), uri: "s_low.m3u8".into() },
            Variant { bandwidth: 2_000_000, resolution: None, uri: "s.m3u8".into() },
        ], None);
        assert_eq!(text, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=2000000\ns.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=500000,RESOLUTION=320x180\ns_low.m3u8\n");
    }

    #[test]
    fn every_variant_refers_to_the_caption_rendition() {
        use super::{master_playlist, Subtitles, Variant};
        let variants = vec![Variant { bandwidth: 800_000, resolution: Some((640, 360)), uri: "s.m3u8".into() }];
        let text = master_playlist(variants.clone(), Some(&Subtitles { uri: "s_vtt.m3u8".into(), language: Some("eng".into()) }));
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"Captions\",DEFAULT=NO,AUTOSELECT=YES,LANGUAGE=\"en\",URI=\"s_vtt.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,SUBTITLES=\"subs\"\ns.m3u8\n"
        );
        // A code with no known two-letter form is left out rather than written wrong.
        let text = master_playlist(variants, Some(&Subtitles { uri: "s_vtt.m3u8".into(), language: Some("tlh".into()) }));
        assert!(!text.contains("LANGUAGE"), "{text}");
    }
}
