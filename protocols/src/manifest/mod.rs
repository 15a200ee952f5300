//! Manifests players poll: HLS media playlists (RFC 8216) and DASH MPDs (ISO/IEC 23009-1).

pub mod dash;
pub mod hls;
