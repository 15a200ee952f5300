//! Transcoding specs. External transcodes run ffmpeg as a supervised child process; this crate
//! holds the pure parts: building its argument vector from a rendition spec and reading the
//! `-progress` key=value output it writes. The actors crate owns the processes.
//!
//! In-process audio transcoding (AAC <-> Opus for the WebRTC bridge) lands here with the
//! WebRTC work.

pub mod audio;
pub mod ffmpeg;
pub mod opus;
pub mod pcm;
