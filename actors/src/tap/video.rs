//! Video for the AI tap: a stream's pictures, decoded, as JPEG or raw I420 at a few frames a
//! second (object detection, moderation, scene description).
//!
//! There is no maintained in-process decoder for every codec a stream may carry, so a video
//! feed runs one ffmpeg child (the binary of `transcode.ffmpeg`): the stream's video goes in
//! on its stdin as MPEG-TS (our muxer, from the stream's first keyframe on), the pictures come
//! out on its stdout (`image2pipe` JPEG, or `rawvideo` I420 of a fixed size) after `fps` and
//! `scale` filters, and a `showinfo` filter reports each picture's timestamp on stderr, in the
//! same order. With `-copyts` those are the stream's own times. When the child exits while
//! the stream goes on, a new one starts at the next keyframe (after 1 s, doubling to 30 s);
//! a binary that cannot be run ends the feed with that error.

use super::{Feed, TapEvent, VIDEO_WAIT};
use crate::node::NodeContext;
use bytes::{Bytes, BytesMut};
use estuary_protocols::container::fmp4::Track;
use estuary_protocols::container::ts::TsMuxer;
use estuary_protocols::media::{Codec, MediaFrame, TrackKind};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Byte 0 of a binary tap message: one JPEG picture.
pub const KIND_VIDEO_JPEG: u8 = 2;
/// Byte 0 of a binary tap message: one raw picture, planar YUV 4:2:0 (Y, then U, then V).
pub const KIND_VIDEO_I420: u8 = 3;

/// Most pictures a second a tap gives.
pub const MAX_FPS: u32 = 30;

/// Longest side of a tap picture, pixels.
pub const MAX_SIDE: u32 = 4096;

/// Pictures a video feed keeps for clients that are behind (a 4K I420 picture is 12 MiB):
/// a client further behind loses the oldest.
pub const FEED_PICTURES: usize = 8;

/// The picture format a tap client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Picture {
    /// JPEG (quality about 85 %).
    Jpeg,
    /// Raw planar YUV 4:2:0.
    I420,
}

/// The video a tap client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct VideoFormat {
    /// The picture format.
    pub video: Picture,
    /// Pictures a second (1 to [`MAX_FPS`]).
    pub fps: u32,
    /// Width in pixels (even; the height keeps the picture's aspect); `None`: the stream's.
    pub width: Option<u32>,
}

impl VideoFormat {
    /// The format of a tap URL's query (`video=jpeg&fps=2&width=640`; 1 picture a second at
    /// the stream's size by default), `None` when it asks for no video, or why it cannot be
    /// served.
    pub fn from_query(params: &[(String, String)]) -> Result<Option<VideoFormat>, String> {
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let video = match get("video") {
            None => return Ok(None),
            Some("jpeg") => Picture::Jpeg,
            Some("i420") => Picture::I420,
            Some(other) => return Err(format!("video={other} is not a tap format (jpeg or i420 are)")),
        };
        let fps = match get("fps") {
            None => 1,
            Some(v) => v.parse::<u32>().ok().filter(|f| (1..=MAX_FPS).contains(f)).ok_or_else(|| format!("fps={v}: 1 to {MAX_FPS} pictures a second"))?,
        };
        let width = match get("width") {
            None => None,
            Some(v) => Some(v.parse::<u32>().ok().filter(|w| (16..=3840).contains(w) && w % 2 == 0).ok_or_else(|| format!("width={v}: an even number of pixels from 16 to 3840"))?),
        };
        Ok(Some(VideoFormat { video, fps, width }))
    }

    /// The picture size for a source of `width` x `height`: the asked width (or the source's)
    /// and the height that keeps the aspect, both even.
    pub fn size_for(&self, width: u32, height: u32) -> (u32, u32) {
        // At most MAX_SIDE either way (a very tall source scaled to a wide width would ask
        // ffmpeg for pictures of gigabytes).
        let even = |v: u64| ((v.clamp(2, MAX_SIDE as u64) / 2) * 2) as u32;
        match self.width {
            Some(w) if width > 0 => (w, even((height as u64 * w as u64 + width as u64 / 2) / width as u64)),
            _ => (even(width as u64), even(height as u64)),
        }
    }
}

/// The picture size of a feed, once known: what clients are told before its pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VideoInfo {
    /// The picture format.
    pub format: Picture,
    /// Pictures a second.
    pub fps: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// The length of the first complete JPEG picture at the start of `data` (from its SOI to its
/// EOI), `None` while it is incomplete. Segment lengths are followed (an EOI-like pair inside
/// a segment is not the end); in the entropy-coded data after SOS a 0xFF is followed by 0x00
/// (stuffing) or a restart marker, anything else is the next marker. `Err` when the data does
/// not start with a JPEG.
pub fn jpeg_len(data: &[u8]) -> Result<Option<usize>, String> {
    if data.len() < 2 {
        return Ok(None);
    }
    if data[..2] != [0xff, 0xd8] {
        return Err(format!("not a JPEG picture (starts {:02x}{:02x})", data[0], data[1]));
    }
    let mut at = 2;
    loop {
        // Fill bytes (0xFF runs) may come before a marker.
        while data.get(at) == Some(&0xff) && data.get(at + 1) == Some(&0xff) {
            at += 1;
        }
        let (Some(&ff), Some(&marker)) = (data.get(at), data.get(at + 1)) else { return Ok(None) };
        if ff != 0xff {
            return Err(format!("JPEG: no marker at byte {at}"));
        }
        at += 2;
        match marker {
            0xd9 => return Ok(Some(at)),
            0xd0..=0xd7 | 0x01 => continue,
            _ => {}
        }
        let Some(len) = data.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize) else { return Ok(None) };
        if len < 2 {
            return Err(format!("JPEG: segment {marker:02x} of length {len}"));
        }
        at += len;
        if marker == 0xda {
            // Entropy-coded data until a marker that is not stuffing or a restart.
            loop {
                let Some(found) = data.get(at..).and_then(|rest| rest.iter().position(|&b| b == 0xff)) else { return Ok(None) };
                at += found;
                match data.get(at + 1) {
                    None => return Ok(None),
                    Some(0x00) | Some(0xd0..=0xd7) | Some(0xff) => at += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

/// The ffmpeg arguments of a feed: TS in on stdin, `format` pictures of `size` out on stdout,
/// each picture's `showinfo` line on stderr.
pub fn ffmpeg_args(format: &VideoFormat, size: (u32, u32)) -> Vec<String> {
    let mut args: Vec<String> = [
        "-hide_banner", "-loglevel", "info", "-fflags", "+nobuffer", "-probesize", "65536", "-analyzeduration", "500000", "-copyts", "-f", "mpegts", "-i", "pipe:0", "-map", "0:v:0", "-an", "-sn", "-dn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("-vf".into());
    args.push(format!("fps={},scale={}:{},showinfo", format.fps, size.0, size.1));
    args.extend(["-fps_mode", "passthrough"].iter().map(|s| s.to_string()));
    match format.video {
        Picture::Jpeg => args.extend(["-c:v", "mjpeg", "-q:v", "4", "-f", "image2pipe", "pipe:1"].iter().map(|s| s.to_string())),
        Picture::I420 => args.extend(["-pix_fmt", "yuv420p", "-c:v", "rawvideo", "-f", "rawvideo", "pipe:1"].iter().map(|s| s.to_string())),
    }
    args
}

/// The picture time (seconds) of a `showinfo` log line, if it is one of its per-frame lines.
pub fn showinfo_time(line: &str) -> Option<f64> {
    if !line.contains("Parsed_showinfo") || !line.contains(" n:") {
        return None;
    }
    let after = &line[line.find("pts_time:")? + "pts_time:".len()..];
    after.split_whitespace().next()?.parse::<f64>().ok().filter(|t| t.is_finite())
}

/// How a child ended.
enum ChildEnd {
    /// The stream ended (or the feed has no client left): the feed is over, for this reason.
    Over(String),
    /// The child exited (or broke) while the stream goes on: start another.
    Exited(String),
    /// The stream's video parameters changed (a republish, a new resolution or codec): a new
    /// child for them, at once, from the next keyframe.
    NewParameters(Arc<MediaFrame>),
}

/// Decodes the stream's video into the feed until the stream ends, it has no video a tap can
/// decode, or nobody watches; returns why it stopped.
pub(super) async fn run(node: &NodeContext, feed: &Arc<Feed>, format: VideoFormat, mut rx: tokio::sync::mpsc::Receiver<Arc<MediaFrame>>) -> String {
    let ffmpeg = node.transcode_settings.get().as_ref().as_ref().map(|s| s.ffmpeg.clone()).unwrap_or_else(|| "ffmpeg".to_string());
    let mut backoff = crate::node::supervision::Backoff::new(std::time::Duration::from_secs(1), std::time::Duration::from_secs(30), std::time::Duration::from_secs(60));
    let mut config: Option<Arc<MediaFrame>> = None;
    let started = tokio::time::Instant::now();
    // One ticker for the whole wait: a stream whose audio keeps coming must not keep putting
    // the check off.
    let mut idle = tokio::time::interval(super::IDLE_CHECK);
    // Frames until the first keyframe (and the codec's parameters).
    loop {
        let first = loop {
            let frame = tokio::select! {
                frame = rx.recv() => match frame {
                    Some(frame) => frame,
                    None => return "the stream ended".into(),
                },
                _ = idle.tick() => {
                    if node.taps.remove_if_idle(feed) {
                        return "no tap client left".into();
                    }
                    if config.is_none() && started.elapsed() >= VIDEO_WAIT {
                        return format!("stream {} has no video (none in {} s)", feed.stream, VIDEO_WAIT.as_secs());
                    }
                    continue;
                }
            };
            if frame.track != TrackKind::Video {
                continue;
            }
            if frame.config {
                if !matches!(frame.codec, Codec::H264 | Codec::H265) {
                    return format!("its video ({}) cannot be decoded for a tap (H.264 and H.265 can)", frame.codec.name());
                }
                config = Some(frame);
                continue;
            }
            if config.as_ref().is_some_and(|c| c.codec != frame.codec) {
                // Frames of a codec whose parameters never came: nothing to start a decoder on.
                continue;
            }
            if frame.keyframe && config.as_ref().is_some_and(|c| c.codec == frame.codec) {
                break frame;
            }
        };
        let Some(header) = config.clone() else { continue };
        let (width, height) = Track::from_config(1, &header).map(|t| (t.width, t.height)).unwrap_or((0, 0));
        if width == 0 || height == 0 {
            return format!("the size of stream {}'s pictures is unknown (its {} parameters do not parse)", feed.stream, header.codec.name());
        }
        let size = format.size_for(width, height);
        let info = VideoInfo { format: format.video, fps: format.fps, width: size.0, height: size.1 };
        *feed.video.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
        let _ = feed.tx.send(TapEvent::VideoStart(info));
        *feed.codec.lock().unwrap_or_else(|e| e.into_inner()) = Some(header.codec.name());
        let began = std::time::Instant::now();
        match child(node, feed, &ffmpeg, &format, size, &header, first, &mut rx).await {
            ChildEnd::Over(why) => return why,
            ChildEnd::NewParameters(frame) => {
                tracing::info!(stream = %feed.stream, feed = feed.id, codec = frame.codec.name(), "the stream's video parameters changed; a new tap video decoder starts at the next keyframe");
                if !matches!(frame.codec, Codec::H264 | Codec::H265) {
                    return format!("its video ({}) cannot be decoded for a tap (H.264 and H.265 can)", frame.codec.name());
                }
                config = Some(frame);
            }
            ChildEnd::Exited(error) => {
                feed.errors.fetch_add(1, Ordering::Relaxed);
                if began.elapsed() > backoff.stable_after() {
                    backoff.reset();
                }
                let retry_in = backoff.after_failure();
                tracing::warn!(stream = %feed.stream, feed = feed.id, %error, retry_in_ms = retry_in.as_millis() as u64, "tap video decoder exited; a new one starts at the next keyframe");
                if error.starts_with("cannot run") {
                    return error;
                }
                // The wait ends early when the last client leaves.
                let until = tokio::time::Instant::now() + retry_in;
                while tokio::time::Instant::now() < until {
                    tokio::time::sleep(super::IDLE_CHECK.min(until - tokio::time::Instant::now())).await;
                    if node.taps.remove_if_idle(feed) {
                        return "no tap client left".into();
                    }
                }
            }
        }
    }
}

/// One ffmpeg child, fed from `first` on, until it or the stream ends.
#[allow(clippy::too_many_arguments)]
async fn child(node: &NodeContext, feed: &Arc<Feed>, ffmpeg: &str, format: &VideoFormat, size: (u32, u32), header: &Arc<MediaFrame>, first: Arc<MediaFrame>, rx: &mut tokio::sync::mpsc::Receiver<Arc<MediaFrame>>) -> ChildEnd {
    let spawned = tokio::process::Command::new(ffmpeg)
        .args(ffmpeg_args(format, size))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut process = match spawned {
        Ok(process) => process,
        Err(e) => return ChildEnd::Exited(format!("cannot run {ffmpeg}: {e} (install ffmpeg or set transcode.ffmpeg)")),
    };
    tracing::info!(stream = %feed.stream, feed = feed.id, pid = process.id(), width = size.0, height = size.1, fps = format.fps, "tap video decoder started");
    let (Some(mut stdin), Some(stdout), Some(stderr)) = (process.stdin.take(), process.stdout.take(), process.stderr.take()) else {
        return ChildEnd::Exited("the decoder's pipes did not open".into());
    };
    // Picture times from stderr, in order; the last lines kept for the error. Bounded: when
    // the picture reader is this far behind, the log reader waits, and so does ffmpeg.
    let (times_tx, mut times) = tokio::sync::mpsc::channel::<f64>(64);
    let tail = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let log = {
        let tail = tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match showinfo_time(&line) {
                    Some(time) => {
                        if times_tx.send(time).await.is_err() {
                            // The picture reader has stopped: the child is being ended.
                            break;
                        }
                    }
                    None if !line.contains("Parsed_showinfo") => {
                        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                        tail.push_back(line);
                        if tail.len() > 4 {
                            tail.pop_front();
                        }
                    }
                    None => {}
                }
            }
        })
    };
    let frame_len = size.0 as usize * size.1 as usize * 3 / 2;
    let kind = match format.video {
        Picture::Jpeg => KIND_VIDEO_JPEG,
        Picture::I420 => KIND_VIDEO_I420,
    };
    let pictures = {
        let feed = feed.clone();
        let video = format.video;
        tokio::spawn(async move {
            let mut stdout = stdout;
            let mut buffer = BytesMut::with_capacity(256 * 1024);
            loop {
                // Every complete picture in the buffer goes out.
                loop {
                    let len = match video {
                        Picture::I420 => (buffer.len() >= frame_len).then_some(frame_len),
                        Picture::Jpeg => match jpeg_len(&buffer) {
                            Ok(len) => len,
                            Err(e) => return format!("the decoder's output: {e}"),
                        },
                    };
                    let Some(len) = len else { break };
                    let picture: Bytes = buffer.split_to(len).freeze();
                    let Some(time) = times.recv().await else { return "the decoder stopped reporting picture times".to_string() };
                    feed.chunks.fetch_add(1, Ordering::Relaxed);
                    let _ = feed.tx.send(TapEvent::Video { kind, stream_us: (time * 1_000_000.0).round() as i64, wall_us: crate::unix_ms() * 1000, data: picture });
                }
                if buffer.capacity() - buffer.len() < 64 * 1024 {
                    buffer.reserve(256 * 1024);
                }
                match stdout.read_buf(&mut buffer).await {
                    Ok(0) => return "the decoder closed its output".to_string(),
                    Ok(_) => {}
                    Err(e) => return format!("reading the decoder's output: {e}"),
                }
                // A picture larger than any sane one means the output is not what we think.
                if buffer.len() > 64 << 20 {
                    return "the decoder's output holds no picture boundary in 64 MiB".to_string();
                }
            }
        })
    };
    // The child's stdin is written by a task of its own through a short queue: a decoder
    // slower than the stream (a big picture on a busy machine) makes this feed skip to the
    // next keyframe, never stops it from taking the stream's frames (the stream would count
    // the feed as a slow player and cut it off).
    let (input, mut queued) = tokio::sync::mpsc::channel::<Bytes>(32);
    let mut writer = tokio::spawn(async move {
        while let Some(chunk) = queued.recv().await {
            if let Err(e) = stdin.write_all(&chunk).await {
                return format!("writing to the decoder: {e}");
            }
        }
        "the decoder's input closed".to_string()
    });
    let mut muxer = TsMuxer::new(Some(header.codec), None);
    let mut out = BytesMut::new();
    muxer.write_tables(&mut out);
    muxer.write_frame(header, &mut out);
    muxer.write_frame(&first, &mut out);
    let mut idle = tokio::time::interval(super::IDLE_CHECK);
    let mut pictures = pictures;
    let mut skipping = false;
    let end = loop {
        if !out.is_empty() {
            match input.try_send(out.split().freeze()) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    if !skipping {
                        tracing::debug!(stream = %feed.stream, feed = feed.id, "tap video decoder behind; frames skipped to the next keyframe");
                    }
                    skipping = true;
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => break ChildEnd::Exited("the decoder's input closed".into()),
            }
        }
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(frame) => {
                    if frame.track != TrackKind::Video {
                        continue;
                    }
                    if frame.config {
                        if frame.codec != header.codec || frame.payload != header.payload {
                            break ChildEnd::NewParameters(frame);
                        }
                        continue;
                    }
                    if skipping && !frame.keyframe {
                        continue;
                    }
                    skipping = false;
                    muxer.write_frame(&frame, &mut out);
                }
                None => break ChildEnd::Over("the stream ended".into()),
            },
            written = &mut writer => {
                break ChildEnd::Exited(written.unwrap_or_else(|e| format!("the decoder's writer failed: {e}")));
            }
            _ = idle.tick() => {
                if node.taps.remove_if_idle(feed) {
                    break ChildEnd::Over("no tap client left".into());
                }
            }
            ended = &mut pictures => {
                let why = ended.unwrap_or_else(|e| format!("the picture reader failed: {e}"));
                break ChildEnd::Exited(why);
            }
        }
    };
    drop(input);
    writer.abort();
    pictures.abort();
    let _ = process.start_kill();
    let status = tokio::time::timeout(std::time::Duration::from_secs(2), process.wait()).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), log).await;
    match end {
        ChildEnd::Exited(why) => {
            let lines: Vec<String> = tail.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
            let status = match status {
                Ok(Ok(status)) => status.to_string(),
                _ => "still running; killed".to_string(),
            };
            ChildEnd::Exited(if lines.is_empty() { format!("{why} ({status})") } else { format!("{why} ({status}): {}", lines.join(" | ")) })
        }
        over => over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn formats_from_the_query() {
        assert_eq!(VideoFormat::from_query(&query(&[("audio", "s16le")])).unwrap(), None);
        assert_eq!(VideoFormat::from_query(&query(&[("video", "jpeg")])).unwrap(), Some(VideoFormat { video: Picture::Jpeg, fps: 1, width: None }));
        assert_eq!(VideoFormat::from_query(&query(&[("video", "i420"), ("fps", "5"), ("width", "320")])).unwrap(), Some(VideoFormat { video: Picture::I420, fps: 5, width: Some(320) }));
        assert!(VideoFormat::from_query(&query(&[("video", "png")])).unwrap_err().contains("jpeg or i420"));
        assert!(VideoFormat::from_query(&query(&[("video", "jpeg"), ("fps", "0")])).unwrap_err().contains("1 to 30"));
        assert!(VideoFormat::from_query(&query(&[("video", "jpeg"), ("width", "641")])).unwrap_err().contains("even"));
    }

    #[test]
    fn sizes_keep_the_aspect_and_are_even() {
        let format = |width| VideoFormat { video: Picture::Jpeg, fps: 1, width };
        assert_eq!(format(Some(640)).size_for(1920, 1080), (640, 360));
        assert_eq!(format(Some(100)).size_for(320, 240), (100, 74));
        assert_eq!(format(None).size_for(321, 241), (320, 240));
        // A tall source scaled wide stays a picture, not gigabytes.
        assert_eq!(format(Some(3840)).size_for(16, 1568), (3840, MAX_SIDE));
    }

    #[test]
    fn jpeg_pictures_end_at_their_eoi_not_at_look_alikes() {
        // SOI; an APP0 segment whose payload holds FF D9; SOS; entropy data with stuffing
        // (FF 00) and a restart marker (FF D0); EOI. Then the next picture's first bytes.
        let mut picture = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x06, 0xff, 0xd9, 0x12, 0x34];
        picture.extend_from_slice(&[0xff, 0xda, 0x00, 0x04, 0x01, 0x02, 0x55, 0xff, 0x00, 0x66, 0xff, 0xd0, 0x77, 0xff, 0xd9]);
        let mut data = picture.clone();
        data.extend_from_slice(&[0xff, 0xd8, 0xff]);
        assert_eq!(jpeg_len(&data), Ok(Some(picture.len())));
        // Cut anywhere before its end, it is incomplete.
        for cut in 0..picture.len() {
            assert_eq!(jpeg_len(&picture[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(jpeg_len(&[0x00, 0x01, 0x02]).is_err());
        assert!(jpeg_len(&[0xff, 0xd8, 0xff, 0xe0, 0x00, 0x01]).is_err(), "a segment length under 2");
    }

    #[test]
    fn picture_times_come_from_showinfo_lines() {
        let line = "[Parsed_showinfo_2 @ 0x55d0] n:   3 pts:     25 pts_time:12.5    duration:      1 duration_time:0.5     fmt:yuvj420p";
        assert_eq!(showinfo_time(line), Some(12.5));
        assert_eq!(showinfo_time("[Parsed_showinfo_2 @ 0x55d0]   color_range:pc"), None);
        assert_eq!(showinfo_time("frame=  125 fps=0.2 q=-0.0"), None);
        let args = ffmpeg_args(&VideoFormat { video: Picture::I420, fps: 2, width: Some(640) }, (640, 360));
        assert!(args.windows(2).any(|w| w == ["-vf", "fps=2,scale=640:360,showinfo"]));
        assert!(args.iter().any(|a| a == "-copyts"));
    }
}
