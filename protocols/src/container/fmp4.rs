//! Fragmented MP4 (ISO/IEC 14496-12, CMAF ISO/IEC 23000-19) writers: an initialization
//! segment (`ftyp` + `moov` with empty sample tables and `mvex`) and media segments (`styp`,
//! `moof` with one `traf` per track, `mdat`), for HLS fMP4 and DASH.
//!
//! Sample tables are built from frames with timestamps converted to each track's timescale
//! (90 kHz for video, the sample rate for audio); durations are differences of converted
//! timestamps, so no rounding error accumulates. `trun` is version 1 (signed composition
//! offsets), `tfhd` uses default-base-is-moof, `tfdt` is version 1 (64-bit).

use crate::codec::aac::AacConfig;
use crate::codec::avc::AvcConfig;
use crate::codec::opus::{self, OpusHead};
use crate::media::{Codec, MediaFrame, Timebase, TrackKind};
use bytes::{BufMut, Bytes, BytesMut};

/// One track of an fMP4 presentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// `track_ID` (1-based).
    pub id: u32,
    /// The codec.
    pub codec: Codec,
    /// Media timescale (ticks per second).
    pub timescale: u32,
    /// The codec configuration (avcC / hvcC / AudioSpecificConfig / Opus head).
    pub config: Bytes,
    /// Video width.
    pub width: u32,
    /// Video height.
    pub height: u32,
    /// Audio channels.
    pub channels: u16,
    /// Audio sample rate.
    pub sample_rate: u32,
}

impl Track {
    /// A track from a sequence-header frame; `None` for codecs without an fMP4 mapping here.
    pub fn from_config(id: u32, frame: &MediaFrame) -> Option<Track> {
        match frame.codec {
            Codec::H264 => {
                let sps = AvcConfig::parse(&frame.payload).ok()?.sps_info().ok()?;
                Some(Track { id, codec: Codec::H264, timescale: 90_000, config: frame.payload.clone(), width: sps.width, height: sps.height, channels: 0, sample_rate: 0 })
            }
            Codec::H265 => {
                let (width, height) = crate::codec::hevc::HevcSps::from_config(&frame.payload).map(|sps| (sps.width, sps.height)).unwrap_or((0, 0));
                Some(Track { id, codec: Codec::H265, timescale: 90_000, config: frame.payload.clone(), width, height, channels: 0, sample_rate: 0 })
            }
            Codec::Aac => {
                let aac = AacConfig::parse(&frame.payload).ok()?;
                Some(Track {
                    id,
                    codec: Codec::Aac,
                    timescale: aac.sample_rate,
                    config: frame.payload.clone(),
                    width: 0,
                    height: 0,
                    channels: aac.channel_config.max(1) as u16,
                    sample_rate: aac.sample_rate,
                })
            }
            Codec::Av1 => {
                let av1 = crate::codec::av1::Av1Config::parse(&frame.payload).ok()?;
                Some(Track { id, codec: Codec::Av1, timescale: 90_000, config: frame.payload.clone(), width: av1.width, height: av1.height, channels: 0, sample_rate: 0 })
            }
            Codec::Opus => {
                let head = OpusHead::parse(&frame.payload)?;
                Some(Track {
                    id,
                    codec: Codec::Opus,
                    timescale: opus::SAMPLE_RATE,
                    config: frame.payload.clone(),
                    width: 0,
                    height: 0,
                    channels: head.channels.max(1) as u16,
                    sample_rate: opus::SAMPLE_RATE,
                })
            }
            _ => None,
        }
    }

    /// Video or audio.
    pub fn kind(&self) -> TrackKind {
        self.codec.track()
    }

    /// The RFC 6381 codec string (`avc1.64001f`, `hvc1.1.6.L93.B0`, `av01.0.04M.08`,
    /// `mp4a.40.2`, `opus`), from the track's own configuration.
    pub fn codec_string(&self) -> String {
        match self.codec {
            Codec::H264 if self.config.len() >= 4 => format!("avc1.{:02x}{:02x}{:02x}", self.config[1], self.config[2], self.config[3]),
            Codec::H264 => "avc1".into(),
            Codec::H265 => crate::codec::hevc::codec_string(&self.config).unwrap_or_else(|| "hvc1".into()),
            Codec::Av1 => crate::codec::av1::Av1Config::parse(&self.config).map(|c| c.codec_string()).unwrap_or_else(|_| "av01".into()),
            Codec::Opus => "opus".into(),
            Codec::Aac => format!("mp4a.40.{}", AacConfig::parse(&self.config).map(|c| c.object_type).unwrap_or(2)),
            other => other.name().to_lowercase(),
        }
    }
}

pub(crate) fn boxed(out: &mut BytesMut, kind: &[u8; 4], body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

pub(crate) fn full_box(out: &mut BytesMut, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut BytesMut)) {
    boxed(out, kind, |out| {
        out.put_u32(((version as u32) << 24) | (flags & 0x00ff_ffff));
        body(out);
    });
}

pub(crate) const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// The initialization segment for `tracks`.
pub fn init_segment(tracks: &[Track]) -> Bytes {
    let mut out = BytesMut::new();
    boxed(&mut out, b"ftyp", |o| {
        o.put_slice(b"iso6");
        o.put_u32(0);
        for brand in [b"iso6", b"cmfc", b"mp41", b"dash"] {
            o.put_slice(brand);
        }
    });
    boxed(&mut out, b"moov", |o| {
        write_mvhd(o, 1000, 0, tracks.iter().map(|t| t.id).max().unwrap_or(0) + 1);
        for track in tracks {
            write_trak(o, track);
        }
        boxed(o, b"mvex", |o| {
            for track in tracks {
                full_box(o, b"trex", 0, 0, |o| {
                    o.put_u32(track.id);
                    o.put_u32(1);
                    o.put_u32(0);
                    o.put_u32(0);
                    o.put_u32(0);
                });
            }
        });
    });
    out.freeze()
}

fn write_trak(o: &mut BytesMut, track: &Track) {
    write_trak_with(o, track, 0, 0, |_| {}, |o| {
        full_box(o, b"stts", 0, 0, |o| o.put_u32(0));
        full_box(o, b"stsc", 0, 0, |o| o.put_u32(0));
        full_box(o, b"stsz", 0, 0, |o| {
            o.put_u32(0);
            o.put_u32(0);
        });
        full_box(o, b"stco", 0, 0, |o| o.put_u32(0));
    });
}

/// A `trak`: header with `duration` (movie timescale), `edts` written by `edits`, media
/// header with `media_duration` (track timescale), handler, media information, and a sample
/// table of the sample description followed by what `tables` writes. Fragmented files give
/// zero durations and empty tables; progressive files ([`crate::container::mp4`]) the real ones.
pub(crate) fn write_trak_with(o: &mut BytesMut, track: &Track, duration: u32, media_duration: u32, edits: impl FnOnce(&mut BytesMut), tables: impl FnOnce(&mut BytesMut)) {
    let kind = track.kind();
    boxed(o, b"trak", |o| {
        full_box(o, b"tkhd", 0, 3, |o| {
            o.put_u32(0);
            o.put_u32(0);
            o.put_u32(track.id);
            o.put_u32(0);
            o.put_u32(duration);
            o.put_slice(&[0; 8]);
            o.put_u16(0);
            o.put_u16(0);
            o.put_u16(if kind == TrackKind::Audio { 0x0100 } else { 0 });
            o.put_u16(0);
            for m in MATRIX {
                o.put_u32(m);
            }
            o.put_u32(track.width << 16);
            o.put_u32(track.height << 16);
        });
        edits(o);
        boxed(o, b"mdia", |o| {
            full_box(o, b"mdhd", 0, 0, |o| {
                o.put_u32(0);
                o.put_u32(0);
                o.put_u32(track.timescale);
                o.put_u32(media_duration);
                o.put_u16(0x55c4); // "und"
                o.put_u16(0);
            });
            full_box(o, b"hdlr", 0, 0, |o| {
                o.put_u32(0);
                // Captions are a subtitle track ('sbtl', as QuickTime and FFmpeg write tx3g).
                let (handler, name): (&[u8; 4], &[u8]) = match kind {
                    TrackKind::Video => (b"vide", b"Estuary video\0"),
                    TrackKind::Audio => (b"soun", b"Estuary audio\0"),
                    // WebVTT in ISO BMFF is a 'text' track (ISO/IEC 14496-30).
                    TrackKind::Data if track.codec == Codec::WebVtt => (b"text", b"Estuary captions\0"),
                    TrackKind::Data => (b"sbtl", b"Estuary captions\0"),
                };
                o.put_slice(handler);
                o.put_slice(&[0; 12]);
                o.put_slice(name);
            });
            boxed(o, b"minf", |o| {
                match kind {
                    TrackKind::Video => full_box(o, b"vmhd", 0, 1, |o| o.put_slice(&[0; 8])),
                    TrackKind::Audio => full_box(o, b"smhd", 0, 0, |o| o.put_u32(0)),
                    TrackKind::Data => full_box(o, b"nmhd", 0, 0, |_| {}),
                }
                boxed(o, b"dinf", |o| {
                    full_box(o, b"dref", 0, 0, |o| {
                        o.put_u32(1);
                        full_box(o, b"url ", 0, 1, |_| {});
                    });
                });
                boxed(o, b"stbl", |o| {
                    full_box(o, b"stsd", 0, 0, |o| {
                        o.put_u32(1);
                        write_sample_entry(o, track);
                    });
                    tables(o);
                });
            });
        });
    });
}

pub(crate) fn write_sample_entry(o: &mut BytesMut, track: &Track) {
    match track.codec {
        Codec::H264 | Codec::H265 | Codec::Av1 => {
            let (kind, config_kind) = match track.codec {
                Codec::H264 => (b"avc1", b"avcC"),
                Codec::H265 => (b"hvc1", b"hvcC"),
                _ => (b"av01", b"av1C"),
            };
            boxed(o, kind, |o| {
                o.put_slice(&[0; 6]);
                o.put_u16(1);
                o.put_slice(&[0; 16]);
                o.put_u16(track.width as u16);
                o.put_u16(track.height as u16);
                o.put_u32(0x0048_0000);
                o.put_u32(0x0048_0000);
                o.put_u32(0);
                o.put_u16(1);
                o.put_slice(&[0; 32]);
                o.put_u16(0x0018);
                o.put_u16(0xffff);
                boxed(o, config_kind, |o| o.put_slice(&track.config));
            });
        }
        Codec::WebVtt => {
            // SampleEntry, then the WebVTT configuration box: the file header.
            boxed(o, b"wvtt", |o| {
                o.put_slice(&[0; 6]);
                o.put_u16(1);
                boxed(o, b"vttC", |o| o.put_slice(b"WEBVTT"));
            });
        }
        Codec::Tx3g => {
            // SampleEntry (reserved, data_reference_index), then the track's tx3g fields.
            boxed(o, b"tx3g", |o| {
                o.put_slice(&[0; 6]);
                o.put_u16(1);
                o.put_slice(&track.config);
            });
        }
        Codec::Opus => {
            // AudioSampleEntry at 48 kHz, then dOps (Opus in ISOBMFF §4.3).
            let head = OpusHead::parse(&track.config).unwrap_or_else(|| OpusHead::basic(track.channels.clamp(1, 255) as u8));
            boxed(o, b"Opus", |o| {
                o.put_slice(&[0; 6]);
                o.put_u16(1);
                o.put_slice(&[0; 8]);
                o.put_u16(track.channels);
                o.put_u16(16);
                o.put_u32(0);
                o.put_u32(opus::SAMPLE_RATE << 16);
                boxed(o, b"dOps", |o| o.put_slice(&head.to_dops()));
            });
        }
        _ => {
            boxed(o, b"mp4a", |o| {
                o.put_slice(&[0; 6]);
                o.put_u16(1);
                o.put_slice(&[0; 8]);
                o.put_u16(track.channels);
                o.put_u16(16);
                o.put_u32(0);
                o.put_u32(track.sample_rate.min(0xffff) << 16);
                full_box(o, b"esds", 0, 0, |o| {
                    let asc = &track.config;
                    let decoder_specific = 2 + asc.len();
                    let decoder_config = 2 + 13 + decoder_specific;
                    let es = 2 + 3 + decoder_config + 3;
                    o.put_slice(&[0x03, (es - 2) as u8]);
                    o.put_u16(track.id as u16);
                    o.put_u8(0);
                    o.put_slice(&[0x04, (decoder_config - 2) as u8, 0x40, 0x15, 0, 0, 0]);
                    o.put_u32(0);
                    o.put_u32(0);
                    o.put_slice(&[0x05, asc.len() as u8]);
                    o.put_slice(asc);
                    o.put_slice(&[0x06, 0x01, 0x02]);
                });
            });
        }
    }
}

/// The samples of one track in one media segment.
#[derive(Debug, Clone)]
pub struct TrackFragment<'a> {
    /// The track.
    pub track: &'a Track,
    /// Its frames, in decode order (media frames only).
    pub frames: &'a [std::sync::Arc<MediaFrame>],
    /// The decode time of whatever follows the last frame, in the frames' timebase, for the
    /// last sample's duration; `None` repeats the previous duration.
    pub next_dts: Option<i64>,
}

/// `frames` split by track (a frame belongs to the track of its kind and codec; frames of
/// no track are left out), in the order of `tracks`.
pub fn frames_by_track(tracks: &[Track], frames: &[std::sync::Arc<MediaFrame>]) -> Vec<Vec<std::sync::Arc<MediaFrame>>> {
    let mut per_track = vec![Vec::new(); tracks.len()];
    for frame in frames {
        if let Some(index) = tracks.iter().position(|t| t.kind() == frame.track && t.codec == frame.codec) {
            per_track[index].push(frame.clone());
        }
    }
    per_track
}

/// One fragment (`moof` + `mdat`) of the tracks that have frames; `next_dts` gives the
/// duration of each track's last sample (see [`TrackFragment::next_dts`]).
pub fn fragment_of(sequence: u32, tracks: &[Track], per_track: &[Vec<std::sync::Arc<MediaFrame>>], next_dts: impl Fn(&Track, &MediaFrame) -> Option<i64>) -> bytes::Bytes {
    let fragments: Vec<TrackFragment<'_>> = tracks
        .iter()
        .zip(per_track)
        .filter(|(_, frames)| !frames.is_empty())
        .map(|(track, frames)| TrackFragment { track, frames, next_dts: next_dts(track, &frames[0]) })
        .collect();
    media_segment(sequence, &fragments)
}

/// A version 0 `mvhd`: no creation or modification time, unit rate and volume, the identity
/// matrix; shared by the init segments and the progressive files.
pub(crate) fn write_mvhd(o: &mut BytesMut, timescale: u32, duration: u32, next_track_id: u32) {
    full_box(o, b"mvhd", 0, 0, |o| {
        o.put_u32(0);
        o.put_u32(0);
        o.put_u32(timescale);
        o.put_u32(duration);
        o.put_u32(0x0001_0000);
        o.put_u16(0x0100);
        o.put_slice(&[0; 10]);
        for m in MATRIX {
            o.put_u32(m);
        }
        o.put_slice(&[0; 24]);
        o.put_u32(next_track_id);
    });
}

/// A track's timestamp in its own timescale.
pub fn to_timescale(track: &Track, value: i64, timebase: Timebase) -> i64 {
    timebase.rescale(value, Timebase { num: 1, den: track.timescale })
}

/// A media segment (`styp`, `moof`, `mdat`) with sequence number `sequence`.
pub fn media_segment(sequence: u32, fragments: &[TrackFragment<'_>]) -> Bytes {
    media_fragment(sequence, fragments, true)
}

/// An event message box, version 1 (ISO/IEC 23009-1 §5.10.3.3): its presentation time is
/// absolute, in `timescale`; `duration` 0xFFFFFFFF means unknown.
pub fn emsg_v1(timescale: u32, presentation_time: u64, duration: u32, id: u32, scheme: &str, value: &str, message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(40 + scheme.len() + value.len() + message.len());
    full_box(&mut out, b"emsg", 1, 0, |o| {
        o.put_u32(timescale);
        o.put_u64(presentation_time);
        o.put_u32(duration);
        o.put_u32(id);
        o.put_slice(scheme.as_bytes());
        o.put_u8(0);
        o.put_slice(value.as_bytes());
        o.put_u8(0);
        o.put_slice(message);
    });
    out.freeze()
}

/// One fragment (`moof` + `mdat`, a CMAF chunk) with sequence number `sequence`, led by a
/// `styp` when it starts a segment (the later chunks of a segment follow without one, so the
/// segment is their plain concatenation).
pub fn media_fragment(sequence: u32, fragments: &[TrackFragment<'_>], styp: bool) -> Bytes {
    media_fragment_with_events(sequence, fragments, styp, &[])
}

/// [`media_fragment`] with `events` (whole `emsg` boxes) between the `styp` and the `moof`,
/// where CMAF puts a chunk's event messages.
pub fn media_fragment_with_events(sequence: u32, fragments: &[TrackFragment<'_>], styp: bool, events: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    if styp {
        boxed(&mut out, b"styp", |o| {
            o.put_slice(b"msdh");
            o.put_u32(0);
            o.put_slice(b"msdh");
            o.put_slice(b"msix");
        });
    }
    for event in events {
        out.put_slice(event);
    }
    let moof_start = out.len();
    let mut data_offset_positions = Vec::new();
    boxed(&mut out, b"moof", |o| {
        full_box(o, b"mfhd", 0, 0, |o| o.put_u32(sequence));
        for fragment in fragments {
            let track = fragment.track;
            let frames = fragment.frames;
            let times: Vec<(i64, i64)> = frames
                .iter()
                .map(|f| (to_timescale(track, f.dts, f.timebase), to_timescale(track, f.pts, f.timebase)))
                .collect();
            boxed(o, b"traf", |o| {
                full_box(o, b"tfhd", 0, 0x02_0000, |o| o.put_u32(track.id));
                full_box(o, b"tfdt", 1, 0, |o| o.put_u64(times.first().map(|t| t.0.max(0) as u64).unwrap_or(0)));
                full_box(o, b"trun", 1, 0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800, |o| {
                    o.put_u32(frames.len() as u32);
                    data_offset_positions.push(o.len());
                    o.put_i32(0);
                    for (index, frame) in frames.iter().enumerate() {
                        let dts = times[index].0;
                        let next = match times.get(index + 1) {
                            Some(next) => next.0,
                            None => match fragment.next_dts {
                                Some(next) => to_timescale(track, next, frame.timebase),
                                None if index > 0 => dts + (dts - times[index - 1].0),
                                None if track.codec == Codec::Aac => dts + 1024,
                                None => dts + track.timescale as i64 / 25,
                            },
                        };
                        o.put_u32((next - dts).max(0) as u32);
                        o.put_u32(frame.payload.len() as u32);
                        let flags = if track.kind() != TrackKind::Video || frame.keyframe { 0x0200_0000 } else { 0x0101_0000 };
                        o.put_u32(flags);
                        o.put_i32((times[index].1 - dts) as i32);
                    }
                });
            });
        }
    });
    let moof_len = out.len() - moof_start;
    let mdat_header = 8;
    let mut data_offset = moof_len + mdat_header;
    for (fragment, position) in fragments.iter().zip(&data_offset_positions) {
        let at = *position;
        out[at..at + 4].copy_from_slice(&(data_offset as i32).to_be_bytes());
        data_offset += fragment.frames.iter().map(|f| f.payload.len()).sum::<usize>();
    }
    let mdat_len: usize = fragments.iter().flat_map(|f| f.frames.iter()).map(|f| f.payload.len()).sum();
    out.reserve(8 + mdat_len);
    out.put_u32((8 + mdat_len) as u32);
    out.put_slice(b"mdat");
    for fragment in fragments {
        for frame in fragment.frames {
            out.put_slice(&frame.payload);
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn read_boxes(data: &[u8]) -> Vec<(String, usize, usize)> {
        let mut boxes = Vec::new();
        let mut at = 0;
        while at + 8 <= data.len() {
            let size = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
            boxes.push((String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned(), at, size));
            assert!(size >= 8, "box size");
            at += size;
        }
        assert_eq!(at, data.len(), "boxes cover the data exactly");
        boxes
    }

    fn tracks() -> Vec<Track> {
        let sps = [
            0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20,
            0xf1, 0x42, 0x99, 0x60,
        ];
        let avc = AvcConfig::from_parameter_sets(&sps, &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0]).unwrap().to_bytes();
        let v = MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts: 0, pts: 0, timebase: Timebase::MILLIS, keyframe: true, config: true, payload: avc };
        let a = MediaFrame { track: TrackKind::Audio, codec: Codec::Aac, dts: 0, pts: 0, timebase: Timebase::MILLIS, keyframe: true, config: true, payload: Bytes::from_static(&[0x11, 0x90]) };
        vec![Track::from_config(1, &v).unwrap(), Track::from_config(2, &a).unwrap()]
    }

    #[test]
    fn init_segment_structure_and_codec_strings() {
        let tracks = tracks();
        assert_eq!((tracks[0].width, tracks[0].height), (320, 240));
        assert_eq!(tracks[0].codec_string(), "avc1.64000d");
        assert_eq!(tracks[1].codec_string(), "mp4a.40.2");
        let init = init_segment(&tracks);
        let top: Vec<String> = read_boxes(&init).into_iter().map(|b| b.0).collect();
        assert_eq!(top, vec!["ftyp", "moov"]);
        let text = String::from_utf8_lossy(&init);
        for kind in ["mvhd", "trak", "tkhd", "mdhd", "hdlr", "avc1", "avcC", "mp4a", "esds", "mvex", "trex"] {
            assert!(text.contains(kind), "missing {kind}");
        }
    }

    #[test]
    fn media_segment_offsets_point_at_the_samples() {
        let tracks = tracks();
        let video: Vec<Arc<MediaFrame>> = (0..3)
            .map(|i| Arc::new(MediaFrame { track: TrackKind::Video, codec: Codec::H264, dts: i * 40, pts: i * 40 + 80, timebase: Timebase::MILLIS, keyframe: i == 0, config: false, payload: Bytes::from(vec![i as u8 + 1; 10]) }))
            .collect();
        let audio: Vec<Arc<MediaFrame>> = (0..2)
            .map(|i| Arc::new(MediaFrame { track: TrackKind::Audio, codec: Codec::Aac, dts: i * 21, pts: i * 21, timebase: Timebase::MILLIS, keyframe: true, config: false, payload: Bytes::from(vec![0xa0 + i as u8; 5]) }))
            .collect();
        let segment = media_segment(7, &[
            TrackFragment { track: &tracks[0], frames: &video, next_dts: Some(120) },
            TrackFragment { track: &tracks[1], frames: &audio, next_dts: None },
        ]);
        let boxes = read_boxes(&segment);
        let names: Vec<&str> = boxes.iter().map(|b| b.0.as_str()).collect();
        assert_eq!(names, vec!["styp", "moof", "mdat"]);
        let moof_start = boxes[1].1;
        // The first trun's data offset (relative to moof) must land on the first video sample.
        let trun = segment.windows(4).position(|w| w == b"trun").unwrap();
        let offset = i32::from_be_bytes(segment[trun + 12..trun + 16].try_into().unwrap()) as usize;
        assert_eq!(&segment[moof_start + offset..moof_start + offset + 10], &[1u8; 10]);
        // First sample duration: 40 ms in 90 kHz; composition offset 80 ms.
        assert_eq!(u32::from_be_bytes(segment[trun + 16..trun + 20].try_into().unwrap()), 3600);
        assert_eq!(i32::from_be_bytes(segment[trun + 28..trun + 32].try_into().unwrap()), 7200);
        // The audio trun points right after the 30 video bytes.
        let second = trun + 4 + segment[trun + 4..].windows(4).position(|w| w == b"trun").unwrap();
        let audio_offset = i32::from_be_bytes(segment[second + 12..second + 16].try_into().unwrap()) as usize;
        assert_eq!(&segment[moof_start + audio_offset..moof_start + audio_offset + 5], &[0xa0u8; 5]);
    }
}
