//! ffmpeg job specs.
//!
//! A [`Rendition`] describes one output of a ladder; [`rendition_args`] turns a source URL,
//! a rendition and a destination URL into ffmpeg's argv. [`ProgressParser`] reads the
//! `-progress pipe:1` stream: blocks of `key=value` lines, each block ending with
//! `progress=continue` or `progress=end`.

use thiserror::Error;

/// Video codecs a rendition may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// libx264.
    H264,
    /// libx265.
    H265,
    /// SVT-AV1 (`libsvtav1`). Published back over enhanced RTMP, which needs an ffmpeg that
    /// writes it (6.1 or later; Debian 12's 5.1 does not, and the child's error says so).
    Av1,
    /// The source's own codec, encoded again (H.264, H.265 or AV1, resolved when the child
    /// starts from the stream's first video frame).
    Source,
    /// Pass the source video through.
    Copy,
}

impl VideoCodec {
    /// Parses a configured codec name.
    pub fn parse(name: &str) -> Result<VideoCodec, String> {
        Ok(match name {
            "h264" | "libx264" => VideoCodec::H264,
            "h265" | "hevc" | "libx265" => VideoCodec::H265,
            "av1" | "libsvtav1" => VideoCodec::Av1,
            "source" => VideoCodec::Source,
            "copy" => VideoCodec::Copy,
            other => return Err(format!("codec {other:?} is not h264, h265, av1, source or copy")),
        })
    }

    /// The name the API shows.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::H265 => "h265",
            VideoCodec::Av1 => "av1",
            VideoCodec::Source => "source",
            VideoCodec::Copy => "copy",
        }
    }
}

/// Where an overlay sits in the picture, `margin` pixels in from the edges it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Top left corner.
    TopLeft,
    /// Top right corner.
    TopRight,
    /// Bottom left corner.
    BottomLeft,
    /// Bottom right corner.
    BottomRight,
    /// Centred.
    Center,
}

impl Position {
    /// Parses `top-left`, `top-right`, `bottom-left`, `bottom-right` or `center`.
    pub fn parse(name: &str) -> Result<Position, String> {
        Ok(match name {
            "top-left" => Position::TopLeft,
            "top-right" => Position::TopRight,
            "bottom-left" => Position::BottomLeft,
            "bottom-right" => Position::BottomRight,
            "center" | "centre" => Position::Center,
            other => return Err(format!("position {other:?} is not top-left, top-right, bottom-left, bottom-right or center")),
        })
    }

    /// ffmpeg expressions for x and y, with `(outer width, outer height, own width, own
    /// height)` named as the filter names them.
    fn expressions(self, margin: u32, names: (&str, &str, &str, &str)) -> (String, String) {
        let (outer_w, outer_h, own_w, own_h) = names;
        let left = margin.to_string();
        let right = format!("{outer_w}-{own_w}-{margin}");
        let top = margin.to_string();
        let bottom = format!("{outer_h}-{own_h}-{margin}");
        match self {
            Position::TopLeft => (left, top),
            Position::TopRight => (right, top),
            Position::BottomLeft => (left, bottom),
            Position::BottomRight => (right, bottom),
            Position::Center => (format!("({outer_w}-{own_w})/2"), format!("({outer_h}-{own_h})/2")),
        }
    }
}

/// A picture (a logo or watermark: PNG with alpha, JPEG, ...) drawn over every frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOverlay {
    /// The image file.
    pub image: std::path::PathBuf,
    /// Where it sits.
    pub position: Position,
    /// Pixels from the edges.
    pub margin: u32,
    /// Drawn this many pixels wide (the height keeps the aspect ratio); `None`: its own size.
    pub width: Option<u32>,
    /// 0.0 (invisible) to 1.0 (as the image is).
    pub opacity: f32,
}

/// A line of text drawn over every frame; `[clock]` in it shows the node's local time
/// (HH:MM:SS) and `[date]` its date (YYYY-MM-DD), updated on every frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TextOverlay {
    /// The text (up to [`MAX_TEXT_CHARS`] of letters, digits, spaces and `.,:!?()/#+@&*_-`).
    pub text: String,
    /// Where it sits.
    pub position: Position,
    /// Pixels from the edges.
    pub margin: u32,
    /// Font size in pixels.
    pub size: u32,
    /// Colour: an ffmpeg colour name or `#RRGGBB`, optionally `@alpha`.
    pub color: String,
    /// A half-transparent black box behind the text.
    pub boxed: bool,
}

/// Longest overlay text.
pub const MAX_TEXT_CHARS: usize = 128;

/// One output of a transcode ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    /// Suffix appended to the source stream name (`_720p`).
    pub suffix: String,
    /// Output height in pixels; the width keeps the aspect ratio (even).
    pub height: Option<u32>,
    /// Video bitrate in kbit/s.
    pub video_kbps: u32,
    /// Video codec.
    pub video_codec: VideoCodec,
    /// Audio bitrate in kbit/s (AAC).
    pub audio_kbps: u32,
    /// A picture over the video.
    pub overlay: Option<ImageOverlay>,
    /// A line of text over the video.
    pub text: Option<TextOverlay>,
}

/// A rendition spec that cannot work.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// An empty or unsafe suffix.
    #[error("rendition suffix {0:?} must be 1-32 characters of [A-Za-z0-9_-]")]
    BadSuffix(String),
    /// Height out of range.
    #[error("rendition height {0} must be even and between 16 and 4320")]
    BadHeight(u32),
    /// Bitrate out of range.
    #[error("rendition {what} bitrate {kbps} kbit/s must be between 8 and 100000")]
    BadBitrate {
        /// video or audio.
        what: &'static str,
        /// The value.
        kbps: u32,
    },
    /// An overlay that cannot work.
    #[error("rendition {suffix}: {reason}")]
    BadOverlay {
        /// The rendition.
        suffix: String,
        /// Why.
        reason: String,
    },
}

impl Rendition {
    /// Checks the spec.
    pub fn validate(&self) -> Result<(), SpecError> {
        let suffix_ok = !self.suffix.is_empty()
            && self.suffix.len() <= 32
            && self.suffix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !suffix_ok {
            return Err(SpecError::BadSuffix(self.suffix.clone()));
        }
        if let Some(h) = self.height {
            if !(16..=4320).contains(&h) || h % 2 != 0 {
                return Err(SpecError::BadHeight(h));
            }
        }
        for (what, kbps) in [("video", self.video_kbps), ("audio", self.audio_kbps)] {
            if !(8..=100_000).contains(&kbps) {
                return Err(SpecError::BadBitrate { what, kbps });
            }
        }
        let bad = |reason: String| Err(SpecError::BadOverlay { suffix: self.suffix.clone(), reason });
        if self.video_codec == VideoCodec::Copy && (self.overlay.is_some() || self.text.is_some()) {
            return bad("codec \"copy\" passes the video through undecoded, so it cannot draw an overlay (use \"source\" to keep the codec)".into());
        }
        if let Some(overlay) = &self.overlay {
            if !(0.0..=1.0).contains(&overlay.opacity) || overlay.opacity.is_nan() {
                return bad(format!("overlay opacity {} must be between 0.0 and 1.0", overlay.opacity));
            }
            if let Some(width) = overlay.width.filter(|w| !(2..=7680).contains(w)) {
                return bad(format!("overlay width {width} must be between 2 and 7680"));
            }
            if overlay.margin > 4320 {
                return bad(format!("overlay margin {} must be at most 4320", overlay.margin));
            }
            if !overlay.image.is_file() {
                return bad(format!("overlay image {} is not a readable file", overlay.image.display()));
            }
        }
        if let Some(text) = &self.text {
            let allowed = |c: char| c.is_alphanumeric() || c == ' ' || ".,:!?()/#+@&*_-".contains(c);
            let shown = text.text.replace("[clock]", "").replace("[date]", "");
            if text.text.trim().is_empty() || text.text.chars().count() > MAX_TEXT_CHARS {
                return bad(format!("overlay text must have 1 to {MAX_TEXT_CHARS} characters"));
            }
            if let Some(c) = shown.chars().find(|c| !allowed(*c)) {
                return bad(format!("overlay text may hold letters, digits, spaces, .,:!?()/#+@&*_- and [clock] or [date], not {c:?}"));
            }
            if !(6..=400).contains(&text.size) {
                return bad(format!("overlay text size {} must be between 6 and 400", text.size));
            }
            if text.margin > 4320 {
                return bad(format!("overlay text margin {} must be at most 4320", text.margin));
            }
            let color_ok = !text.color.is_empty() && text.color.len() <= 32 && text.color.chars().all(|c| c.is_ascii_alphanumeric() || c == '#' || c == '@' || c == '.');
            if !color_ok {
                return bad(format!("overlay text color {:?} must be a colour name or #RRGGBB, optionally @alpha", text.color));
            }
        }
        Ok(())
    }

    /// Whether the rendition draws over the picture.
    pub fn draws(&self) -> bool {
        self.overlay.is_some() || self.text.is_some()
    }
}

/// The text for drawtext's `text='...'`. The quotes keep `,` literal in the filter graph, which
/// strips them; the filter's own option list then still splits at `:`, so a `:` of the text is
/// escaped once. The placeholders become drawtext's time expansions, whose `:` are escaped
/// for both of those levels and for the expansion's own argument list.
fn drawtext_text(text: &str) -> String {
    text.replace(':', r"\:").replace("[clock]", r"%{localtime\:%H\\\:%M\\\:%S}").replace("[date]", r"%{localtime\:%Y-%m-%d}")
}

/// ffmpeg's argv (without the program name) to read `source`, encode `rendition` and publish
/// FLV to `destination`.
pub fn rendition_args(source: &str, rendition: &Rendition, destination: &str) -> Result<Vec<String>, SpecError> {
    rendition_args_as(source, rendition, destination, "flv")
}

/// Like [`rendition_args`] with the output container named (`flv` for RTMP, `mpegts` for
/// SRT; ffmpeg 5 cannot put H.265 in FLV).
pub fn rendition_args_as(source: &str, rendition: &Rendition, destination: &str, format: &str) -> Result<Vec<String>, SpecError> {
    rendition.validate()?;
    let mut args: Vec<String> = ["-hide_banner", "-nostats", "-loglevel", "warning", "-progress", "pipe:1", "-i", source]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(overlay) = &rendition.overlay {
        // Read as one picture, whatever the file holds: not a playlist or a URL list that
        // ffmpeg would follow, not a numbered sequence.
        args.extend(["-f".into(), "image2".into(), "-pattern_type".into(), "none".into(), "-i".into(), format!("file:{}", overlay.image.to_string_lossy())]);
    }
    match rendition.video_codec {
        VideoCodec::Copy => args.extend(["-c:v".into(), "copy".into()]),
        codec => {
            // `Source` is resolved before the child starts; H.264 if it was not.
            match codec {
                VideoCodec::H265 => args.extend(["-c:v".into(), "libx265".into(), "-preset".into(), "veryfast".into()]),
                VideoCodec::Av1 => args.extend(["-c:v".into(), "libsvtav1".into(), "-preset".into(), "10".into()]),
                _ => args.extend(["-c:v".into(), "libx264".into(), "-preset".into(), "veryfast".into()]),
            }
            // Keyframes where the source has them: every rendition's segments and parts line up
            // with the source's (players switch between them at segment boundaries), and HLS
            // segments stay as short as the source's GOP instead of the encoder's default 10 s.
            args.extend(["-force_key_frames".into(), "source".into()]);
            if codec == VideoCodec::H265 {
                args.extend(["-x265-params".into(), "log-level=error".into()]);
            }
            args.extend(["-b:v".into(), format!("{}k", rendition.video_kbps)]);
            if codec != VideoCodec::Av1 {
                args.extend(["-maxrate".into(), format!("{}k", rendition.video_kbps)]);
                args.extend(["-bufsize".into(), format!("{}k", rendition.video_kbps * 2)]);
            }
            args.extend(video_filters(rendition));
        }
    }
    args.extend(["-c:a".into(), "aac".into(), "-b:a".into(), format!("{}k", rendition.audio_kbps)]);
    args.extend(["-f".into(), format.into(), destination.into()]);
    Ok(args)
}

/// The video filter arguments: scaling, then the picture, then the text. With a picture (a
/// second input) they form a filter graph and the outputs are mapped by hand.
fn video_filters(rendition: &Rendition) -> Vec<String> {
    let mut main: Vec<String> = Vec::new();
    if let Some(h) = rendition.height {
        main.push(format!("scale=-2:{h}"));
    }
    let text = rendition.text.as_ref().map(|t| {
        let (x, y) = t.position.expressions(t.margin, ("w", "h", "tw", "th"));
        let mut filter = format!("drawtext=text='{}':x={x}:y={y}:fontsize={}:fontcolor={}", drawtext_text(&t.text), t.size, t.color);
        if t.boxed {
            filter.push_str(":box=1:boxcolor=black@0.5:boxborderw=6");
        }
        filter
    });
    let Some(overlay) = &rendition.overlay else {
        main.extend(text);
        return if main.is_empty() { Vec::new() } else { vec!["-vf".into(), main.join(",")] };
    };
    let width = overlay.width.map(|w| format!("scale={w}:-2,")).unwrap_or_default();
    let (x, y) = overlay.position.expressions(overlay.margin, ("main_w", "main_h", "overlay_w", "overlay_h"));
    let base = if main.is_empty() { "null".to_string() } else { main.join(",") };
    let mut graph = format!("[1:v]{width}format=rgba,colorchannelmixer=aa={:.3}[logo];[0:v]{base}[base];[base][logo]overlay=x={x}:y={y}", overlay.opacity);
    if let Some(text) = text {
        graph.push(',');
        graph.push_str(&text);
    }
    graph.push_str("[video]");
    // Audio where the source has it (`?`: none is not an error).
    ["-filter_complex", &graph, "-map", "[video]", "-map", "0:a?"].iter().map(|s| s.to_string()).collect()
}

/// One progress block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Frames encoded.
    pub frame: u64,
    /// Frames per second.
    pub fps: f64,
    /// Output time in microseconds.
    pub out_time_us: i64,
    /// Speed relative to real time.
    pub speed: Option<f64>,
    /// Frames dropped.
    pub drop_frames: u64,
    /// True for the final block.
    pub ended: bool,
}

/// Reads `-progress` output line by line.
#[derive(Debug, Default)]
pub struct ProgressParser {
    current: Progress,
}

impl ProgressParser {
    /// Feeds one line; returns a block when the line completes one.
    pub fn line(&mut self, line: &str) -> Option<Progress> {
        let (key, value) = line.trim().split_once('=')?;
        let value = value.trim();
        match key {
            "frame" => self.current.frame = value.parse().unwrap_or(0),
            "fps" => self.current.fps = value.parse().unwrap_or(0.0),
            "out_time_us" | "out_time_ms" => self.current.out_time_us = value.parse().unwrap_or(0),
            "drop_frames" => self.current.drop_frames = value.parse().unwrap_or(0),
            "speed" => self.current.speed = value.trim_end_matches('x').parse().ok(),
            "progress" => {
                self.current.ended = value == "end";
                return Some(std::mem::take(&mut self.current));
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendition() -> Rendition {
        Rendition { suffix: "_360p".into(), height: Some(360), video_kbps: 800, video_codec: VideoCodec::H264, audio_kbps: 96, overlay: None, text: None }
    }

    #[test]
    fn overlays_make_a_filter_graph() {
        let logo = std::env::temp_dir().join(format!("estuary-overlay-test-{}.png", std::process::id()));
        std::fs::write(&logo, b"not checked here").unwrap();
        let mut r = rendition();
        r.overlay = Some(ImageOverlay { image: logo.clone(), position: Position::TopRight, margin: 10, width: Some(40), opacity: 0.5 });
        r.text = Some(TextOverlay { text: "Cam 1: [clock]".into(), position: Position::BottomLeft, margin: 8, size: 20, color: "white".into(), boxed: true });
        let args = rendition_args("rtmp://127.0.0.1/live/s", &r, "rtmp://127.0.0.1/live/s_360p").unwrap();
        let at = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].clone());
        // The picture is the second input; the graph scales, draws it, then the text.
        assert_eq!(args.iter().filter(|a| *a == "-i").count(), 2);
        assert_eq!(args[args.iter().rposition(|a| a == "-i").unwrap() + 1], format!("file:{}", logo.to_string_lossy()));
        assert!(args.windows(4).any(|w| w == ["-f", "image2", "-pattern_type", "none"]));
        let graph = at("-filter_complex").unwrap();
        assert_eq!(
            graph,
            r"[1:v]scale=40:-2,format=rgba,colorchannelmixer=aa=0.500[logo];[0:v]scale=-2:360[base];[base][logo]overlay=x=main_w-overlay_w-10:y=10,drawtext=text='Cam 1\: %{localtime\:%H\\\:%M\\\:%S}':x=8:y=h-th-8:fontsize=20:fontcolor=white:box=1:boxcolor=black@0.5:boxborderw=6[video]"
        );
        assert!(args.windows(2).any(|w| w[0] == "-map" && w[1] == "[video]") && args.windows(2).any(|w| w[0] == "-map" && w[1] == "0:a?"));
        assert!(at("-vf").is_none());
        // Text alone stays a simple filter chain.
        r.overlay = None;
        let args = rendition_args("rtmp://127.0.0.1/live/s", &r, "rtmp://127.0.0.1/live/s_360p").unwrap();
        assert!(args.iter().any(|a| a.starts_with(r"scale=-2:360,drawtext=text='Cam 1\: ")));
        std::fs::remove_file(&logo).unwrap();
    }

    #[test]
    fn bad_overlays_are_refused() {
        let mut r = rendition();
        r.text = Some(TextOverlay { text: "it's".into(), position: Position::Center, margin: 0, size: 20, color: "white".into(), boxed: false });
        assert!(matches!(r.validate(), Err(SpecError::BadOverlay { .. })), "a quote would end drawtext's text");
        r.text.as_mut().unwrap().text = "100%".into();
        assert!(r.validate().is_err(), "% starts a drawtext expansion");
        r.text.as_mut().unwrap().text = "Lobby, cam 2 [date] [clock]".into();
        assert_eq!(r.validate(), Ok(()));
        r.text.as_mut().unwrap().color = "white:x=0".into();
        assert!(r.validate().is_err(), "a colour cannot carry more options");
        let mut r = rendition();
        r.video_codec = VideoCodec::Copy;
        r.text = Some(TextOverlay { text: "x".into(), position: Position::Center, margin: 0, size: 20, color: "white".into(), boxed: false });
        assert!(r.validate().unwrap_err().to_string().contains("cannot draw an overlay"));
        let mut r = rendition();
        r.overlay = Some(ImageOverlay { image: "/nonexistent/logo.png".into(), position: Position::TopLeft, margin: 0, width: None, opacity: 1.0 });
        assert!(r.validate().unwrap_err().to_string().contains("not a readable file"));
        let mut r = rendition();
        r.overlay = Some(ImageOverlay { image: std::env::temp_dir(), position: Position::TopLeft, margin: 0, width: None, opacity: 1.5 });
        assert!(r.validate().unwrap_err().to_string().contains("opacity"));
    }

    #[test]
    fn argv_for_a_rendition() {
        let args = rendition_args("rtmp://127.0.0.1/live/s", &rendition(), "rtmp://127.0.0.1/live/s_360p").unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("-i rtmp://127.0.0.1/live/s"));
        assert!(joined.contains("-c:v libx264"));
        assert!(joined.contains("-vf scale=-2:360"));
        assert!(joined.contains("-b:v 800k"));
        assert!(joined.ends_with("-f flv rtmp://127.0.0.1/live/s_360p"));
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut r = rendition();
        r.height = Some(361);
        assert_eq!(r.validate(), Err(SpecError::BadHeight(361)));
        let mut r = rendition();
        r.suffix = "../x".into();
        assert!(matches!(r.validate(), Err(SpecError::BadSuffix(_))));
        let mut r = rendition();
        r.video_kbps = 0;
        assert!(matches!(r.validate(), Err(SpecError::BadBitrate { what: "video", .. })));
    }

    #[test]
    fn progress_blocks() {
        let text = "frame=50\nfps=25.0\nout_time_us=2000000\ndrop_frames=1\nspeed=1.01x\nprogress=continue\nframe=75\nprogress=end\n";
        let mut parser = ProgressParser::default();
        let blocks: Vec<Progress> = text.lines().filter_map(|l| parser.line(l)).collect();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0], Progress { frame: 50, fps: 25.0, out_time_us: 2_000_000, speed: Some(1.01), drop_frames: 1, ended: false });
        assert_eq!(blocks[1].frame, 75);
        assert!(blocks[1].ended);
    }
}
