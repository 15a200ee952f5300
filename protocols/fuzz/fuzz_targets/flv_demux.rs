//! FLV demuxing and tag-body conversion.
#![no_main]
use bytes::Bytes;
use estuary_protocols::container::flv::{audio_body_to_frame, script_body_to_frame, video_body_to_frame, FlvDemuxer, TAG_AUDIO, TAG_VIDEO};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut demuxer = FlvDemuxer::new(1 << 20);
    demuxer.push(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
    demuxer.push(data);
    while let Ok(Some(tag)) = demuxer.next_tag() {
        let _ = match tag.tag_type {
            TAG_VIDEO => video_body_to_frame(tag.timestamp as i64, &tag.body).map(|_| ()).map_err(|_| ()),
            TAG_AUDIO => audio_body_to_frame(tag.timestamp as i64, &tag.body).map(|_| ()).map_err(|_| ()),
            _ => script_body_to_frame(0, &tag.body).map(|_| ()).map_err(|_| ()),
        };
    }
    let body = Bytes::copy_from_slice(data);
    let _ = video_body_to_frame(0, &body);
    let _ = audio_body_to_frame(0, &body);
});
