//! The rewind playlist: an HLS playlist over the recorded fMP4 fragments of a stream, from a
//! chosen time to now (`/dvr/<app>/<stream>.m3u8?start=`), so a player can seek back into the
//! recording and catch up to live.
//!
//! - Segments are byte ranges of the DVR's own files (`EXT-X-BYTERANGE`), each file's init
//!   segment its `EXT-X-MAP`; nothing is copied or repackaged.
//! - The writer starts a fragment at every video keyframe, so a segment is one or more whole
//!   fragments from a keyframe to the next keyframe at least [`SEGMENT_MS`] later.
//! - While the stream is recorded, the playlist is an `EVENT` playlist that grows: the last
//!   segment of the file in progress is left out until the next keyframe's fragment is
//!   durable (a listed segment never changes). Once recording stops it ends with
//!   `EXT-X-ENDLIST`.
//! - `EXT-X-START:TIME-OFFSET=0` asks players to begin at `start`, not at the live edge.
//! - The target duration is at least 6 s, so it stays the same as the playlist grows.
//! - A new file after a hole, a publisher's timestamp reset or a codec change is marked
//!   `EXT-X-DISCONTINUITY`; every file carries `EXT-X-PROGRAM-DATE-TIME`.

use estuary_storage::{Recording, TrackSamples};
use std::fmt::Write;

/// Segments are at least this long (whole GOPs), unless a file ends first.
pub const SEGMENT_MS: i64 = 2_000;

/// A file that starts at most this many ms after the previous one ends (wall clock and media
/// time) continues its timeline...
const CONTINUOUS_MS: i64 = 100;
/// ...as does one that starts up to this much before the previous one's end (the audio that
/// ends a file is presented before the next file's first picture).
const OVERLAP_MS: i64 = 1000;

/// The target duration a playlist declares at least, so that it rarely has to change as
/// segments are added (it changes only for GOPs longer than this).
const MIN_TARGET_S: i64 = 6;

/// One fragment (`moof` + `mdat`) of a recording, from its sample table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Byte offset of its `moof`.
    pub offset: u64,
    /// Length of `moof` + `mdat`.
    pub len: u64,
    /// Media time of its first sample (the first video sample when there is video), ms.
    pub media_ms: i64,
    /// Whether it starts with a video keyframe (always true for audio-only recordings).
    pub key: bool,
}

/// The fragments of a recording whose init segment is `init_len` bytes long, in file order.
/// Samples of one fragment are contiguous in its `mdat`; each jump between sample runs is a
/// fragment header, which starts where the previous run ended.
pub fn fragments(samples: &[TrackSamples], init_len: u64) -> Vec<Fragment> {
    let has_video = samples.iter().any(is_video);
    let mut all: Vec<(u64, u64, i64, bool, bool)> = samples
        .iter()
        .flat_map(|t| {
            let video = is_video(t);
            let scale = t.timescale.max(1) as i64;
            t.samples.iter().map(move |s| (s.offset, s.size as u64, s.dts * 1000 / scale, video, s.key))
        })
        .collect();
    all.sort_by_key(|s| s.0);
    // Per fragment: its start offset, its earliest video sample (time, key), its earliest
    // sample of any track.
    let mut built: Vec<(u64, Option<(i64, bool)>, i64)> = Vec::new();
    let mut run_end = None::<u64>;
    for (offset, size, ms, video, key) in all {
        if run_end != Some(offset) {
            built.push((run_end.unwrap_or(init_len), None, ms));
        }
        let (_, earliest_video, earliest) = built.last_mut().expect("a fragment was just pushed");
        *earliest = (*earliest).min(ms);
        if video && earliest_video.is_none_or(|(t, _)| ms < t) {
            *earliest_video = Some((ms, key));
        }
        run_end = Some(offset + size);
    }
    let ends: Vec<u64> = built.iter().skip(1).map(|b| b.0).chain(run_end).collect();
    built
        .iter()
        .zip(ends)
        .map(|(&(offset, video, earliest), end)| Fragment {
            offset,
            len: end - offset,
            // A video recording's fragment without video (the audio that ends a file) joins
            // the segment before it.
            media_ms: video.map(|(t, _)| t).unwrap_or(earliest),
            key: if has_video { video.is_some_and(|(_, key)| key) } else { true },
        })
        .collect()
}

fn is_video(t: &TrackSamples) -> bool {
    matches!(t.codec.as_str(), "H264" | "H265" | "AV1")
}

/// One recording ready for the playlist.
pub struct Source<'a> {
    /// The entry (for an open file: as of its last synced fragment).
    pub recording: &'a Recording,
    /// Its sample table.
    pub samples: &'a [TrackSamples],
    /// Length of its init segment.
    pub init_len: u64,
    /// Still being written: its last segment may grow and is left out.
    pub in_progress: bool,
}

/// One segment of the playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Index of the source.
    pub source: usize,
    /// Byte range.
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// Wall-clock start, Unix ms.
    pub wall_ms: i64,
    /// Duration, ms.
    pub duration_ms: i64,
}

/// The segments of `source` (index `index`) that end after `from_ms` and start before
/// `to_ms` (wall clock).
pub fn segments(index: usize, source: &Source, from_ms: i64, to_ms: i64) -> Vec<Segment> {
    let recording = source.recording;
    let fragments = fragments(source.samples, source.init_len);
    // Group fragments: a segment starts at a key fragment once the current one is long enough.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (i, f) in fragments.iter().enumerate() {
        match groups.last_mut() {
            Some((first, last)) if !(f.key && f.media_ms - fragments[*first].media_ms >= SEGMENT_MS) => *last = i,
            _ => groups.push((i, i)),
        }
    }
    // Leading fragments before the first keyframe cannot start playback.
    if let Some(first_key) = fragments.iter().position(|f| f.key) {
        groups.retain(|(first, _)| *first >= first_key);
    }
    if source.in_progress {
        groups.pop();
    }
    groups
        .into_iter()
        .map(|(first, last)| {
            let start = fragments[first].media_ms;
            let end = fragments.get(last + 1).map(|f| f.media_ms).unwrap_or(recording.media_end_ms);
            let offset = fragments[first].offset;
            let len = fragments[last].offset + fragments[last].len - offset;
            Segment { source: index, offset, len, wall_ms: recording.wall_of(start), duration_ms: (end - start).max(1) }
        })
        .filter(|s| s.wall_ms + s.duration_ms > from_ms && s.wall_ms < to_ms)
        .collect()
}

/// The playlist over `sources` (oldest first) from `from_ms` to `to_ms`; `uri` names a
/// source's file; `live` leaves the playlist open (an `EVENT` playlist).
pub fn playlist(sources: &[Source], from_ms: i64, to_ms: i64, live: bool, uri: impl Fn(&Recording) -> String) -> String {
    let segments: Vec<Segment> = sources.iter().enumerate().flat_map(|(i, s)| segments(i, s, from_ms, to_ms)).collect();
    let target = segments.iter().map(|s| (s.duration_ms + 999) / 1000).max().unwrap_or(0).max(MIN_TARGET_S);
    let mut out = String::new();
    let _ = writeln!(out, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0");
    let _ = writeln!(out, "#EXT-X-PLAYLIST-TYPE:{}", if live { "EVENT" } else { "VOD" });
    // Segments start at keyframes; for H.265 a keyframe may be a CRA whose leading pictures
    // need the segment before, so the claim is made for the other codecs only.
    if !sources.iter().any(|s| s.samples.iter().any(|t| t.codec == "H265")) {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    out.push_str("#EXT-X-START:TIME-OFFSET=0,PRECISE=YES\n");
    let mut current: Option<usize> = None;
    for segment in &segments {
        let source = &sources[segment.source];
        if current != Some(segment.source) {
            if let Some(previous) = current.map(|i| sources[i].recording) {
                let r = source.recording;
                // Files of one publish join (a file may overlap the next by the audio that
                // ends it); a hole, a timestamp reset or new codec parameters do not.
                let joins = |gap: i64| (-OVERLAP_MS..=CONTINUOUS_MS).contains(&gap);
                let same_tracks = sources[current.unwrap_or(0)].samples.iter().map(|t| (&t.codec, &t.config)).eq(source.samples.iter().map(|t| (&t.codec, &t.config)));
                if !joins(r.start_ms - previous.end_ms) || !joins(r.media_start_ms - previous.media_end_ms) || !same_tracks {
                    out.push_str("#EXT-X-DISCONTINUITY\n");
                }
            }
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\",BYTERANGE=\"{}@0\"", uri(source.recording), source.init_len);
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", estuary_protocols::clock::rfc3339(segment.wall_ms));
            current = Some(segment.source);
        }
        let _ = writeln!(out, "#EXTINF:{:.3},\n#EXT-X-BYTERANGE:{}@{}\n{}", segment.duration_ms as f64 / 1000.0, segment.len, segment.offset, uri(source.recording));
    }
    if !live {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_storage::{RecordingState, StoredSample, StreamKey};

    /// A recording of `gops` GOPs of 2 s (25 fps video, 90 kHz; AAC at 48 kHz), one fragment
    /// per second, each fragment `header` bytes of moof and mdat header before its samples.
    fn recorded(gops: usize, init: u64, header: u64) -> (Recording, Vec<TrackSamples>) {
        let track = |id, codec: &str, timescale| TrackSamples { track_id: id, codec: codec.into(), timescale, config: vec![1], width: 0, height: 0, channels: 0, sample_rate: 0, samples: Vec::new() };
        let (mut video, mut audio) = (track(1, "H264", 90_000), track(2, "AAC", 48_000));
        let mut offset = init;
        for second in 0..(gops * 2) as i64 {
            offset += header;
            for frame in 0..25i64 {
                let ms = second * 1000 + frame * 40;
                video.samples.push(StoredSample { dts: ms * 90, cts: 0, size: 1000, key: frame == 0 && second % 2 == 0, offset });
                offset += 1000;
            }
            for frame in 0..47i64 {
                audio.samples.push(StoredSample { dts: (second * 1000) * 48 + frame * 1024, cts: 0, size: 200, key: true, offset });
                offset += 200;
            }
        }
        let recording = Recording {
            id: 7,
            key: StreamKey::new("live", "x"),
            path: "live/x.mp4".into(),
            format: "mp4".into(),
            state: RecordingState::Complete,
            start_ms: 1_000_000,
            end_ms: 1_000_000 + gops as i64 * 2000,
            media_start_ms: 0,
            media_end_ms: gops as i64 * 2000,
            bytes: offset,
            video: None,
            audio: None,
            keyframes: Vec::new(),
        };
        (recording, vec![video, audio])
    }

    #[test]
    fn fragments_come_from_the_jumps_between_sample_runs() {
        let (_, samples) = recorded(2, 1200, 300);
        let fragments = fragments(&samples, 1200);
        assert_eq!(fragments.len(), 4);
        let size = 300 + 25 * 1000 + 47 * 200;
        for (i, f) in fragments.iter().enumerate() {
            assert_eq!(f.offset, 1200 + i as u64 * size, "fragment {i}");
            assert_eq!(f.len, size);
            assert_eq!(f.media_ms, i as i64 * 1000);
            assert_eq!(f.key, i % 2 == 0);
        }
    }

    #[test]
    fn a_fragment_of_audio_alone_stays_in_the_segment_before_it() {
        let (recording, mut samples) = recorded(1, 1000, 100);
        // The audio that ends a file: one more fragment with no video.
        let end = recording.bytes + 100;
        samples[1].samples.push(StoredSample { dts: 2000 * 48, cts: 0, size: 200, key: true, offset: end });
        let fragments = fragments(&samples, 1000);
        assert_eq!(fragments.len(), 3);
        assert_eq!(fragments[2], Fragment { offset: recording.bytes, len: 300, media_ms: 2000, key: false });
        let mut closed = recording.clone();
        closed.bytes = end + 200;
        let source = Source { recording: &closed, samples: &samples, init_len: 1000, in_progress: false };
        let all = segments(0, &source, i64::MIN, i64::MAX);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].offset + all[0].len, closed.bytes, "the audio tail is in the last segment");
    }

    #[test]
    fn segments_are_whole_gops_and_an_open_file_holds_its_last_back() {
        let (recording, samples) = recorded(3, 1000, 100);
        let closed = Source { recording: &recording, samples: &samples, init_len: 1000, in_progress: false };
        let all = segments(0, &closed, i64::MIN, i64::MAX);
        assert_eq!(all.iter().map(|s| (s.wall_ms - recording.start_ms, s.duration_ms)).collect::<Vec<_>>(), vec![(0, 2000), (2000, 2000), (4000, 2000)]);
        assert_eq!(all[1].offset, all[0].offset + all[0].len, "segments follow each other");
        assert_eq!(all[2].offset + all[2].len, recording.bytes, "the last ends with the file");
        let open = Source { in_progress: true, ..closed };
        assert_eq!(segments(0, &open, i64::MIN, i64::MAX).len(), 2);
        // From 2.5 s in: the GOP that holds it, and the rest.
        assert_eq!(segments(0, &closed, recording.start_ms + 2500, i64::MAX).len(), 2);
    }

    #[test]
    fn playlist_maps_each_file_and_marks_discontinuities() {
        let (first, samples) = recorded(2, 1000, 100);
        let mut second = first.clone();
        second.id = 8;
        second.path = "live/y.mp4".into();
        second.start_ms = first.end_ms + 30_000; // a hole
        second.end_ms = second.start_ms + 4000;
        let sources = [
            Source { recording: &first, samples: &samples, init_len: 1000, in_progress: false },
            Source { recording: &second, samples: &samples, init_len: 1000, in_progress: true },
        ];
        let text = playlist(&sources, i64::MIN, i64::MAX, true, |r| format!("files/{}", r.path));
        assert!(text.starts_with("#EXTM3U\n"), "{text}");
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !text.contains("#EXT-X-ENDLIST"), "{text}");
        assert_eq!(text.matches("#EXT-X-MAP:URI=\"files/live/").count(), 2, "{text}");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY").count(), 1, "{text}");
        assert_eq!(text.matches("#EXTINF:2.000,").count(), 3, "two from the closed file, one from the open: {text}");
        let ended = playlist(&sources[..1], i64::MIN, i64::MAX, false, |r| r.path.clone());
        assert!(ended.ends_with("#EXT-X-ENDLIST\n") && ended.contains("VOD"), "{ended}");
    }
}
