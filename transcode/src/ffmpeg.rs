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
    /// Pass the source video through.
    Copy,
}

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
        Ok(())
    }
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
    match rendition.video_codec {
        VideoCodec::Copy => args.extend(["-c:v".into(), "copy".into()]),
        codec => {
            let encoder = if codec == VideoCodec::H265 { "libx265" } else { "libx264" };
            args.extend(["-c:v".into(), encoder.into(), "-preset".into(), "veryfast".into()]);
            // Keyframes where the source has them: every rendition's segments and parts line up
            // with the source's (players switch between them at segment boundaries), and HLS
            // segments stay as short as the source's GOP instead of the encoder's default 10 s.
            args.extend(["-force_key_frames".into(), "source".into()]);
            if codec == VideoCodec::H265 {
                args.extend(["-x265-params".into(), "log-level=error".into()]);
            }
            args.extend(["-b:v".into(), format!("{}k", rendition.video_kbps)]);
            args.extend(["-maxrate".into(), format!("{}k", rendition.video_kbps)]);
            args.extend(["-bufsize".into(), format!("{}k", rendition.video_kbps * 2)]);
            if let Some(h) = rendition.height {
                args.extend(["-vf".into(), format!("scale=-2:{h}")]);
            }
        }
    }
    args.extend(["-c:a".into(), "aac".into(), "-b:a".into(), format!("{}k", rendition.audio_kbps)]);
    args.extend(["-f".into(), format.into(), destination.into()]);
    Ok(args)
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
        Rendition { suffix: "_360p".into(), height: Some(360), video_kbps: 800, video_codec: VideoCodec::H264, audio_kbps: 96 }
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
