//! MPEG-DASH MPD writer (ISO/IEC 23009-1) for live streams: `type="dynamic"`, the ISO BMFF
//! live profile, one period per set of initialization segments (a codec change starts a new
//! one, §5.3.2), one adaptation set per track, `SegmentTemplate` with
//! `$Number$` and a `SegmentTimeline` (§5.3.9.6), so segment durations may vary with the GOP.

use std::fmt::Write;

/// One segment in a timeline, in the representation's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Start time.
    pub start: u64,
    /// Duration.
    pub duration: u64,
}

/// One representation (and its adaptation set).
#[derive(Debug, Clone, PartialEq)]
pub struct Representation {
    /// `id`, also used in file names.
    pub id: String,
    /// `video`, `audio` or `text` (captions: WebVTT in ISO BMFF).
    pub content_type: &'static str,
    /// The language (ISO 639), for a text representation.
    pub language: Option<String>,
    /// RFC 6381 codec string.
    pub codecs: String,
    /// Bits per second (estimate).
    pub bandwidth: u64,
    /// Video width.
    pub width: u32,
    /// Video height.
    pub height: u32,
    /// Audio sample rate.
    pub sample_rate: u32,
    /// Audio channels.
    pub channels: u16,
    /// Timescale of the timeline.
    pub timescale: u32,
    /// Initialization segment URI.
    pub initialization: String,
    /// Media segment URI template with `$Number$` or `$Time$`.
    pub media: String,
    /// Number of the first listed segment (written only for `$Number$` templates).
    pub start_number: u64,
    /// Media time (in `timescale`) at the start of the period (`presentationTimeOffset`;
    /// written when not zero).
    pub presentation_time_offset: u64,
    /// The listed segments.
    pub timeline: Vec<TimelineEntry>,
}

/// One period: a stretch of the stream with one set of initialization segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    /// `id`, stable across MPD updates.
    pub id: String,
    /// Start, seconds after `availabilityStartTime`.
    pub start_s: f64,
    /// The representations.
    pub representations: Vec<Representation>,
}

/// A live MPD.
#[derive(Debug, Clone, PartialEq)]
pub struct Mpd {
    /// `availabilityStartTime`, RFC 3339.
    pub availability_start_time: String,
    /// `publishTime`, RFC 3339.
    pub publish_time: String,
    /// Seconds between MPD updates a player should assume.
    pub minimum_update_period: f64,
    /// Seconds of buffer a player needs.
    pub min_buffer_time: f64,
    /// Seconds of time-shift window.
    pub time_shift_buffer_depth: f64,
    /// Seconds behind the live edge a player should play.
    pub suggested_presentation_delay: f64,
    /// The periods, oldest first (the last one is live).
    pub periods: Vec<Period>,
    /// The stream has ended (the MPD becomes static-like: no more updates).
    pub ended: bool,
    /// Low-latency signalling, when segments are delivered chunk by chunk.
    pub low_latency: Option<LowLatency>,
}

/// Low-latency DASH signalling: a `ServiceDescription` with the target latency, and an
/// `availabilityTimeOffset` on each `SegmentTemplate` (segments may be asked for before they
/// are complete and arrive chunk by chunk, `availabilityTimeComplete="false"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LowLatency {
    /// Latency a player should aim at, ms.
    pub target_latency_ms: u64,
    /// Seconds before its end a segment can be requested.
    pub availability_time_offset: f64,
}

fn xml_escape(value: &str) -> String {
    value.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Mpd {
    /// The MPD document.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = write!(
            out,
            r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic" availabilityStartTime="{}" publishTime="{}" minBufferTime="PT{:.1}S" timeShiftBufferDepth="PT{:.1}S" suggestedPresentationDelay="PT{:.1}S""#,
            self.availability_start_time, self.publish_time, self.min_buffer_time, self.time_shift_buffer_depth, self.suggested_presentation_delay
        );
        if !self.ended {
            let _ = write!(out, r#" minimumUpdatePeriod="PT{:.1}S""#, self.minimum_update_period);
        }
        let _ = writeln!(out, ">");
        if let Some(ll) = self.low_latency {
            let target = ll.target_latency_ms;
            let _ = writeln!(out, r#"  <ServiceDescription id="0">"#);
            let _ = writeln!(out, r#"    <Latency referenceId="0" target="{target}" min="{}" max="{}"/>"#, target / 2, target * 2);
            let _ = writeln!(out, r#"    <PlaybackRate min="0.96" max="1.04"/>"#);
            let _ = writeln!(out, "  </ServiceDescription>");
        }
        for period in &self.periods {
            let _ = writeln!(out, r#"  <Period id="{}" start="PT{:.3}S">"#, xml_escape(&period.id), period.start_s.max(0.0));
            for (index, r) in period.representations.iter().enumerate() {
                let mime = match r.content_type {
                    "video" => "video/mp4",
                    "audio" => "audio/mp4",
                    _ => "application/mp4",
                };
                // `@lang` is an RFC 5646 tag: `en` for the captions' ISO 639-2 `eng`.
                let lang = r.language.as_deref().and_then(crate::manifest::hls::language_tag).map(|l| format!(r#" lang="{}""#, xml_escape(l))).unwrap_or_default();
                let _ = writeln!(out, r#"    <AdaptationSet id="{index}" contentType="{}" mimeType="{mime}"{lang} segmentAlignment="true" startWithSAP="1">"#, r.content_type);
                if r.content_type == "text" {
                    let _ = writeln!(out, r#"      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="subtitle"/>"#);
                }
                if index == 0 {
                    // Timed metadata rides in the first representation as ID3 in `emsg` boxes.
                    let _ = writeln!(out, r#"      <InbandEventStream schemeIdUri="{}" value=""/>"#, crate::container::id3::EMSG_SCHEME);
                }
                let _ = write!(out, r#"      <Representation id="{}" codecs="{}" bandwidth="{}""#, xml_escape(&r.id), xml_escape(&r.codecs), r.bandwidth);
                match r.content_type {
                    "video" => {
                        let _ = write!(out, r#" width="{}" height="{}""#, r.width, r.height);
                    }
                    "audio" => {
                        let _ = write!(out, r#" audioSamplingRate="{}""#, r.sample_rate);
                    }
                    _ => {}
                }
                let _ = writeln!(out, ">");
                if r.content_type == "audio" {
                    let _ = writeln!(out, r#"        <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="{}"/>"#, r.channels);
                }
                let _ = write!(out, r#"        <SegmentTemplate timescale="{}" initialization="{}" media="{}""#, r.timescale, xml_escape(&r.initialization), xml_escape(&r.media));
                if r.media.contains("$Number$") {
                    let _ = write!(out, r#" startNumber="{}""#, r.start_number);
                }
                if r.presentation_time_offset > 0 {
                    let _ = write!(out, r#" presentationTimeOffset="{}""#, r.presentation_time_offset);
                }
                // Text segments exist only once complete: no early requests for them.
                if let Some(ll) = self.low_latency.filter(|_| r.content_type != "text") {
                    let _ = write!(out, r#" availabilityTimeOffset="{:.3}" availabilityTimeComplete="false""#, ll.availability_time_offset);
                }
                let _ = writeln!(out, ">");
                let _ = writeln!(out, "          <SegmentTimeline>");
                let mut expected = None;
                for entry in &r.timeline {
                    if expected == Some(entry.start) {
                        let _ = writeln!(out, r#"            <S d="{}"/>"#, entry.duration);
                    } else {
                        let _ = writeln!(out, r#"            <S t="{}" d="{}"/>"#, entry.start, entry.duration);
                    }
                    expected = Some(entry.start + entry.duration);
                }
                let _ = writeln!(out, "          </SegmentTimeline>");
                let _ = writeln!(out, "        </SegmentTemplate>");
                let _ = writeln!(out, "      </Representation>");
                let _ = writeln!(out, "    </AdaptationSet>");
            }
            let _ = writeln!(out, "  </Period>");
        }
        // Players need the server's clock for a dynamic MPD; without this element dash.js asks
        // a public time server.
        let _ = writeln!(out, r#"  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:direct:2014" value="{}"/>"#, self.publish_time);
        let _ = writeln!(out, "</MPD>");
        out
    }
}

pub use crate::clock::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_618_904_123), "2026-11-25T15:01:44.123Z");
    }

    #[test]
    fn renders_timeline_with_implicit_starts() {
        let mpd = Mpd {
            availability_start_time: rfc3339(0),
            publish_time: rfc3339(1000),
            minimum_update_period: 2.0,
            min_buffer_time: 2.0,
            time_shift_buffer_depth: 12.0,
            suggested_presentation_delay: 4.0,
            ended: false,
            low_latency: None,
            periods: vec![Period { id: "0".into(), start_s: 0.0, representations: vec![Representation {
                id: "video".into(),
                content_type: "video",
                language: None,
                codecs: "avc1.64000d".into(),
                bandwidth: 500_000,
                width: 320,
                height: 240,
                sample_rate: 0,
                channels: 0,
                timescale: 90_000,
                initialization: "s-video-init.mp4".into(),
                media: "s-video-$Number$.m4s".into(),
                start_number: 5,
                presentation_time_offset: 0,
                timeline: vec![TimelineEntry { start: 900_000, duration: 180_000 }, TimelineEntry { start: 1_080_000, duration: 181_000 }, TimelineEntry { start: 1_300_000, duration: 10 }],
            }] }],
        };
        let text = mpd.render();
        assert!(text.contains(r#"type="dynamic""#));
        assert!(text.contains(r#"minimumUpdatePeriod="PT2.0S""#));
        assert!(text.contains(r#"<S t="900000" d="180000"/>"#));
        assert!(text.contains(r#"<S d="181000"/>"#));
        assert!(text.contains(r#"<S t="1300000" d="10"/>"#));
        assert!(text.contains(r#"startNumber="5""#));
    }
}

/// `mpd` with `query` (`token=...`) appended to its `SegmentTemplate` `media` and
/// `initialization` templates, so a player given a signed manifest URL fetches its segments
/// with the same signature (a query after `$Time$` is allowed, ISO/IEC 23009-1 §5.3.9.4.4).
pub fn with_query_on_templates(mpd: &str, query: &str) -> String {
    let mut out = mpd.to_string();
    for attribute in ["media=\"", "initialization=\""] {
        let mut result = String::with_capacity(out.len() + 64);
        let mut rest = out.as_str();
        while let Some(at) = rest.find(attribute) {
            let start = at + attribute.len();
            let Some(len) = rest[start..].find('"') else { break };
            let value = &rest[start..start + len];
            let joined = if value.contains('?') { format!("{value}&amp;{query}") } else { format!("{value}?{query}") };
            result.push_str(&rest[..start]);
            result.push_str(&joined);
            rest = &rest[start + len..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

#[cfg(test)]
mod query_tests {
    use super::with_query_on_templates;

    #[test]
    fn templates_get_the_query() {
        let mpd = r#"<SegmentTemplate timescale="90000" initialization="cam-v0-init.mp4" media="cam-v0-$Time$.m4s"/>"#;
        assert_eq!(with_query_on_templates(mpd, "token=9.ab"), r#"<SegmentTemplate timescale="90000" initialization="cam-v0-init.mp4?token=9.ab" media="cam-v0-$Time$.m4s?token=9.ab"/>"#);
    }
}
