//! AV1 over RTP (the AOM "RTP Payload Format For AV1", v1.0): temporal units into payloads
//! and back.
//!
//! A payload is a one-byte aggregation header (`Z` the first element continues an OBU of the
//! previous packet, `Y` the last one goes on in the next, `W` the number of elements when it
//! is 1 to 3 and the last element has no length, `N` the first packet of a coded video
//! sequence) followed by OBU elements: an OBU without its size field, each preceded by its
//! length (LEB128) unless `W` says it is the last. Temporal delimiters, tile lists and padding
//! are not sent.
//!
//! Here temporal units are in the low-overhead bitstream format MP4 and FLV carry: OBUs with
//! size fields (the last one may have none and run to the end).

use crate::rtp::RtpPacket;
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Largest temporal unit accepted (a bound on memory for a sender that never sets the marker).
pub const MAX_TEMPORAL_UNIT: usize = 4 * 1024 * 1024;

const OBU_SEQUENCE_HEADER: u8 = 1;
const OBU_TEMPORAL_DELIMITER: u8 = 2;
const OBU_FRAME_HEADER: u8 = 3;
const OBU_FRAME: u8 = 6;
const OBU_TILE_LIST: u8 = 8;
const OBU_PADDING: u8 = 15;

/// A temporal unit that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Av1RtpError {
    /// An OBU's header or size field is cut short, or its size runs past the unit.
    #[error("malformed OBU at byte {0} of the temporal unit")]
    Malformed(usize),
}

/// One OBU of a temporal unit: its header byte(s) with the size flag cleared, and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obu<'a> {
    /// OBU type (AV1 §6.2.2).
    pub kind: u8,
    /// The header and, if flagged, the extension byte, with `obu_has_size_field` cleared.
    header: [u8; 2],
    header_len: usize,
    /// The OBU's payload.
    pub payload: &'a [u8],
}

impl Obu<'_> {
    /// Bytes it takes in an RTP OBU element (header without size field, payload).
    fn len(&self) -> usize {
        self.header_len + self.payload.len()
    }

    /// The `offset`th byte onwards of its element form.
    fn element_bytes(&self, offset: usize, len: usize, out: &mut BytesMut) {
        let mut at = offset;
        let end = offset + len;
        while at < end.min(self.header_len) {
            out.put_u8(self.header[at]);
            at += 1;
        }
        if at < end {
            out.put_slice(&self.payload[at - self.header_len..end - self.header_len]);
        }
    }
}

/// Reads an unsigned LEB128 value of at most 8 bytes: the value and the bytes it used.
pub fn leb128(data: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in data.iter().take(8).enumerate() {
        value |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return usize::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

fn put_leb128(out: &mut BytesMut, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

fn leb128_len(value: usize) -> usize {
    let mut len = 1;
    let mut rest = value >> 7;
    while rest > 0 {
        len += 1;
        rest >>= 7;
    }
    len
}

/// The OBUs of a temporal unit in the low-overhead format, without the kinds RTP does not carry.
pub fn obus(unit: &[u8]) -> Result<Vec<Obu<'_>>, Av1RtpError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < unit.len() {
        let first = unit[at];
        let kind = (first >> 3) & 0x0f;
        let extension = first & 0x04 != 0;
        let has_size = first & 0x02 != 0;
        let header_len = 1 + extension as usize;
        let mut header = [first & !0x02, 0];
        if extension {
            header[1] = *unit.get(at + 1).ok_or(Av1RtpError::Malformed(at))?;
        }
        let mut body = at + header_len;
        let size = if has_size {
            let (size, used) = leb128(unit.get(body..).unwrap_or(&[])).ok_or(Av1RtpError::Malformed(at))?;
            body += used;
            size
        } else {
            unit.len().saturating_sub(body)
        };
        let end = body.checked_add(size).filter(|&end| end <= unit.len()).ok_or(Av1RtpError::Malformed(at))?;
        if !matches!(kind, OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING) {
            out.push(Obu { kind, header, header_len, payload: &unit[body..end] });
        }
        at = end;
    }
    Ok(out)
}

/// Cuts a temporal unit into RTP payloads of at most `mtu` bytes. A keyframe without a
/// sequence header OBU gets `sequence_header` (a whole OBU, size field allowed) in front, so a
/// player can start there; a unit that starts with a sequence header is marked as the start
/// of a coded video sequence (`N`).
pub fn packetize(unit: &[u8], keyframe: bool, sequence_header: Option<&[u8]>, mtu: usize) -> Result<Vec<Bytes>, Av1RtpError> {
    let mtu = mtu.max(8);
    let mut list = obus(unit)?;
    if keyframe && list.first().is_none_or(|o| o.kind != OBU_SEQUENCE_HEADER) {
        if let Some(header) = sequence_header {
            let extra = obus(header)?;
            list.splice(0..0, extra.into_iter().filter(|o| o.kind == OBU_SEQUENCE_HEADER).take(1));
        }
    }
    let new_sequence = keyframe && list.first().is_some_and(|o| o.kind == OBU_SEQUENCE_HEADER);
    let mut payloads = Vec::new();
    let mut packet = BytesMut::with_capacity(mtu);
    packet.put_u8(0);
    // Whether the packet being filled starts with the rest of an OBU (`Z`).
    let mut starts_continued = false;
    for obu in &list {
        let mut offset = 0;
        let total = obu.len();
        while offset < total {
            let room = mtu.saturating_sub(packet.len());
            let left = total - offset;
            // Every element carries its length (W = 0): simple, and at most a few bytes.
            let take = if leb128_len(left) + left <= room { left } else { room.saturating_sub(leb128_len(room)) };
            if take == 0 {
                // Full: the OBU starts in the next packet (offset is 0 here: a packet is
                // finished right after a fragment).
                payloads.push(finish(&mut packet, starts_continued, false, new_sequence && payloads.is_empty()));
                starts_continued = false;
                continue;
            }
            put_leb128(&mut packet, take);
            obu.element_bytes(offset, take, &mut packet);
            offset += take;
            if offset < total {
                payloads.push(finish(&mut packet, starts_continued, true, new_sequence && payloads.is_empty()));
                starts_continued = true;
            }
        }
    }
    if packet.len() > 1 {
        payloads.push(finish(&mut packet, starts_continued, false, new_sequence && payloads.is_empty()));
    }
    Ok(payloads)
}

/// Sets the aggregation header of `packet` and starts the next one.
fn finish(packet: &mut BytesMut, first_continues: bool, last_continues: bool, new_sequence: bool) -> Bytes {
    packet[0] = (first_continues as u8) << 7 | (last_continues as u8) << 6 | (new_sequence as u8) << 3;
    let done = std::mem::replace(packet, BytesMut::with_capacity(packet.capacity()));
    packet.put_u8(0);
    done.freeze()
}

/// One temporal unit out of RTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporalUnit {
    /// RTP timestamp (90 kHz).
    pub timestamp: u32,
    /// Its OBUs in the low-overhead format, each with a size field.
    pub data: Bytes,
    /// The start of a coded video sequence (`N`): a keyframe with its sequence header.
    pub keyframe: bool,
    /// The sequence header OBU it carries (with size field), if any.
    pub sequence_header: Option<Bytes>,
}

/// Reassembles temporal units from the RTP packets of one SSRC, in order (a reorder buffer
/// belongs in front). A lost packet spoils the unit; units are then dropped until the next
/// coded video sequence, and [`Av1Depacketizer::wants_keyframe`] asks for one.
#[derive(Debug, Default)]
pub struct Av1Depacketizer {
    timestamp: Option<u32>,
    /// Complete OBUs of the unit, each with a size field.
    data: BytesMut,
    /// The OBU being reassembled from fragments (header without size field, payload).
    fragment: Option<BytesMut>,
    keyframe: bool,
    sequence_header: Option<Bytes>,
    /// A sequence header was seen since the start (a key frame can then be decoded).
    seen_sequence_header: bool,
    /// The unit's first frame header was looked at.
    frame_seen: bool,
    last_sequence: Option<u16>,
    spoiled: bool,
    waiting_for_keyframe: bool,
    keyframe_request: bool,
    /// Packets that could not be used (malformed, lost context).
    pub discarded: u64,
    /// Sequence gaps seen.
    pub gaps: u64,
}

impl Av1Depacketizer {
    /// A depacketizer that starts by waiting for a keyframe.
    pub fn new() -> Self {
        Av1Depacketizer { waiting_for_keyframe: true, keyframe_request: true, ..Default::default() }
    }

    /// True once after a loss (and at the start): the caller should send a PLI.
    pub fn wants_keyframe(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_request)
    }

    /// Takes one packet; returns the temporal unit it completed, if any (at the marker bit, or
    /// when a packet with a new timestamp arrives).
    pub fn push(&mut self, packet: &RtpPacket) -> Option<TemporalUnit> {
        if let Some(last) = self.last_sequence {
            if packet.sequence != last.wrapping_add(1) {
                if packet.sequence.wrapping_sub(last) >= 0x8000 {
                    self.discarded += 1;
                    return None;
                }
                self.gaps += 1;
                self.spoiled = true;
                self.fragment = None;
            }
        }
        self.last_sequence = Some(packet.sequence);
        let mut done = None;
        if self.timestamp.is_some_and(|t| t != packet.timestamp) {
            done = self.finish();
        }
        self.timestamp = Some(packet.timestamp);
        self.take_payload(&packet.payload);
        if packet.marker && done.is_none() {
            done = self.finish();
        }
        done
    }

    fn take_payload(&mut self, payload: &[u8]) {
        let Some((&header, mut rest)) = payload.split_first() else {
            self.discarded += 1;
            return;
        };
        let (first_continues, last_continues) = (header & 0x80 != 0, header & 0x40 != 0);
        let count = ((header >> 4) & 0x03) as usize;
        if header & 0x08 != 0 && self.data.is_empty() && self.fragment.is_none() {
            self.keyframe = true;
        }
        let mut index = 0;
        while !rest.is_empty() {
            index += 1;
            let element = if count != 0 && index == count {
                std::mem::take(&mut rest)
            } else {
                let Some((len, used)) = leb128(rest).filter(|&(len, used)| used.checked_add(len).is_some_and(|end| end <= rest.len())) else {
                    self.discarded += 1;
                    self.spoiled = true;
                    return;
                };
                let element = &rest[used..used + len];
                rest = &rest[used + len..];
                element
            };
            let continued = index == 1 && first_continues;
            let goes_on = rest.is_empty() && last_continues;
            if continued {
                // The rest of the OBU the previous packet began (lost with a gap: dropped).
                match self.fragment.as_mut() {
                    Some(fragment) => fragment.put_slice(element),
                    None => {
                        self.spoiled = true;
                        continue;
                    }
                }
            } else {
                self.fragment = Some(BytesMut::from(element));
            }
            if self.fragment.as_ref().is_some_and(|f| f.len() + self.data.len() > MAX_TEMPORAL_UNIT) {
                self.fragment = None;
                self.spoiled = true;
                continue;
            }
            if !goes_on {
                if let Some(obu) = self.fragment.take() {
                    self.add(&obu);
                }
            }
        }
    }

    /// Appends a whole OBU (header, payload) with a size field. Senders should clear
    /// `obu_has_size_field` in RTP, but may keep it: then the size must match what follows,
    /// and it is taken out before the one written here.
    fn add(&mut self, obu: &[u8]) {
        let Some(&first) = obu.first() else { return };
        let header_len = 1 + (first & 0x04 != 0) as usize;
        if obu.len() < header_len {
            self.spoiled = true;
            return;
        }
        let mut payload = &obu[header_len..];
        if first & 0x02 != 0 {
            match leb128(payload) {
                Some((size, used)) if used.checked_add(size) == Some(payload.len()) => payload = &payload[used..],
                _ => {
                    self.spoiled = true;
                    return;
                }
            }
        }
        let start = self.data.len();
        self.data.put_u8(first | 0x02);
        self.data.put_slice(&obu[1..header_len]);
        put_leb128(&mut self.data, payload.len());
        self.data.put_slice(payload);
        let kind = (first >> 3) & 0x0f;
        if kind == OBU_SEQUENCE_HEADER {
            self.seen_sequence_header = true;
            if self.sequence_header.is_none() {
                self.sequence_header = Some(Bytes::copy_from_slice(&self.data[start..]));
            }
        }
        // A key frame (AV1 §5.9.2: show_existing_frame 0, frame_type 0) of a stream whose
        // sequence header is known starts a unit a decoder can begin with, even without `N`
        // (a sender answering a keyframe request need not repeat the sequence header).
        if matches!(kind, OBU_FRAME_HEADER | OBU_FRAME) && self.seen_sequence_header && !self.frame_seen {
            self.frame_seen = true;
            if payload.first().is_some_and(|b| b & 0xe0 == 0) {
                self.keyframe = true;
            }
        }
    }

    fn finish(&mut self) -> Option<TemporalUnit> {
        let data = std::mem::take(&mut self.data).freeze();
        let keyframe = std::mem::take(&mut self.keyframe);
        self.frame_seen = false;
        let sequence_header = self.sequence_header.take();
        let spoiled = std::mem::take(&mut self.spoiled) || self.fragment.take().is_some();
        let timestamp = self.timestamp?;
        if spoiled {
            self.discarded += 1;
            self.waiting_for_keyframe = true;
            self.keyframe_request = true;
            return None;
        }
        if data.is_empty() {
            return None;
        }
        if self.waiting_for_keyframe {
            if !keyframe {
                return None;
            }
            self.waiting_for_keyframe = false;
        }
        Some(TemporalUnit { timestamp, data, keyframe, sequence_header })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OBU with a size field.
    fn obu(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u8(kind << 3 | 0x02);
        put_leb128(&mut out, payload.len());
        out.put_slice(payload);
        out.to_vec()
    }

    fn packets(payloads: &[Bytes], timestamp: u32, first_sequence: u16) -> Vec<RtpPacket> {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| RtpPacket { payload_type: 45, marker: i + 1 == payloads.len(), sequence: first_sequence.wrapping_add(i as u16), timestamp, ssrc: 7, payload: p.clone() })
            .collect()
    }

    fn keyframe_unit(frame_len: usize) -> (Vec<u8>, Vec<u8>) {
        let header = obu(OBU_SEQUENCE_HEADER, &[0x00, 0x00, 0x00, 0x05, 0x21, 0xe7, 0xfd, 0xe0, 0x17, 0xc0, 0x02]);
        let frame: Vec<u8> = (0..frame_len).map(|i| (i * 7) as u8).collect();
        let mut unit = obu(OBU_TEMPORAL_DELIMITER, &[]);
        unit.extend(obu(6, &frame));
        (unit, header)
    }

    #[test]
    fn a_keyframe_gets_its_sequence_header_and_round_trips_through_fragments() {
        let (unit, header) = keyframe_unit(3000);
        let payloads = packetize(&unit, true, Some(&header), 1200).unwrap();
        assert!(payloads.len() >= 3 && payloads.iter().all(|p| p.len() <= 1200), "{:?}", payloads.iter().map(|p| p.len()).collect::<Vec<_>>());
        // N on the first packet only; Y on all but the last, Z on all but the first.
        assert_eq!(payloads[0][0] & 0x08, 0x08);
        assert!(payloads[1..].iter().all(|p| p[0] & 0x08 == 0));
        assert!(payloads[..payloads.len() - 1].iter().all(|p| p[0] & 0x40 != 0));
        assert!(payloads[1..].iter().all(|p| p[0] & 0x80 != 0));
        let mut depacketizer = Av1Depacketizer::new();
        let mut units: Vec<TemporalUnit> = packets(&payloads, 9000, 65534).iter().filter_map(|p| depacketizer.push(p)).collect();
        assert_eq!(units.len(), 1);
        let got = units.remove(0);
        // The temporal delimiter is not sent; the sequence header comes first.
        let mut expected = header.clone();
        expected.extend(obu(6, &(0..3000).map(|i| (i * 7) as u8).collect::<Vec<u8>>()));
        assert_eq!(got.data.to_vec(), expected);
        assert!(got.keyframe);
        assert_eq!(got.sequence_header.as_deref(), Some(header.as_slice()));
        // The record of the stream comes back from the sequence header it carried.
        assert!(crate::codec::av1::record_from_sequence_header(&header).is_ok());
    }

    #[test]
    fn small_obus_share_a_packet_and_delta_frames_follow() {
        // Inter frames (frame headers starting 0b001: frame_type INTER).
        let mut unit = obu(6, &[0x30, 2, 3]);
        unit.extend(obu(6, &[0x30, 5]));
        let payloads = packetize(&unit, false, None, 1200).unwrap();
        assert_eq!(payloads.len(), 1);
        assert_eq!(payloads[0].as_ref(), &[0x00, 4, 0x30, 0x30, 2, 3, 3, 0x30, 0x30, 5]);
        let (key, header) = keyframe_unit(10);
        let mut depacketizer = Av1Depacketizer::new();
        let mut out = Vec::new();
        // A delta frame before any keyframe is not given out.
        out.extend(packets(&payloads, 0, 1).iter().filter_map(|p| depacketizer.push(p)));
        assert!(out.is_empty());
        out.extend(packets(&packetize(&key, true, Some(&header), 1200).unwrap(), 3000, 2).iter().filter_map(|p| depacketizer.push(p)));
        out.extend(packets(&payloads, 6000, 3).iter().filter_map(|p| depacketizer.push(p)));
        assert_eq!(out.len(), 2);
        assert!(out[0].keyframe && !out[1].keyframe);
        assert_eq!(out[1].data.to_vec(), unit);
    }

    #[test]
    fn a_lost_packet_drops_units_until_the_next_keyframe_and_asks_for_one() {
        let (key, header) = keyframe_unit(3000);
        let key_payloads = packetize(&key, true, Some(&header), 1200).unwrap();
        let delta = packetize(&obu(6, &[0x30; 50]), false, None, 1200).unwrap();
        let mut depacketizer = Av1Depacketizer::new();
        assert!(depacketizer.wants_keyframe());
        let mut sequence = 100u16;
        let mut send = |d: &mut Av1Depacketizer, payloads: &[Bytes], timestamp: u32, skip: Option<usize>| {
            let out: Vec<TemporalUnit> = packets(payloads, timestamp, sequence).iter().enumerate().filter(|(i, _)| Some(*i) != skip).filter_map(|(_, p)| d.push(p)).collect();
            sequence = sequence.wrapping_add(payloads.len() as u16);
            out
        };
        assert_eq!(send(&mut depacketizer, &key_payloads, 0, None).len(), 1);
        // The keyframe's middle packet is lost: nothing until the next keyframe.
        assert!(send(&mut depacketizer, &key_payloads, 3000, Some(1)).is_empty());
        assert!(depacketizer.wants_keyframe());
        assert!(send(&mut depacketizer, &delta, 6000, None).is_empty());
        assert_eq!(send(&mut depacketizer, &key_payloads, 9000, None).len(), 1);
        assert_eq!(send(&mut depacketizer, &delta, 12000, None).len(), 1);
    }

    #[test]
    fn size_fields_kept_by_a_sender_are_checked_and_taken_out() {
        let (key, header) = keyframe_unit(10);
        let mut depacketizer = Av1Depacketizer::new();
        // Elements that keep the OBUs' own size fields.
        let mut payload = vec![0x08];
        for obu in [&header[..], &obu(6, &(0..10).map(|i| (i * 7) as u8).collect::<Vec<u8>>())] {
            let mut element = BytesMut::new();
            put_leb128(&mut element, obu.len());
            payload.extend_from_slice(&element);
            payload.extend_from_slice(obu);
        }
        let unit = depacketizer.push(&RtpPacket { payload_type: 45, marker: true, sequence: 1, timestamp: 0, ssrc: 1, payload: Bytes::from(payload.clone()) }).expect("a unit");
        let mut expected = header.clone();
        expected.extend_from_slice(&key[2..]);
        assert_eq!(unit.data.to_vec(), expected, "one size field per OBU");
        assert_eq!(unit.sequence_header.as_deref(), Some(header.as_slice()));
        // A size field that does not match what follows spoils the unit.
        let last = payload.len() - 11;
        payload[last] = 9;
        assert_eq!(depacketizer.push(&RtpPacket { payload_type: 45, marker: true, sequence: 2, timestamp: 3000, ssrc: 1, payload: Bytes::from(payload) }), None);
    }

    #[test]
    fn a_key_frame_without_a_new_sequence_header_ends_the_wait_after_a_loss() {
        let (key, header) = keyframe_unit(10);
        let mut depacketizer = Av1Depacketizer::new();
        let first = packetize(&key, true, Some(&header), 1200).unwrap();
        assert!(packets(&first, 0, 1).iter().find_map(|p| depacketizer.push(p)).is_some());
        // A loss, then a key frame (frame header starting 0b000) with no sequence header and
        // no N bit: decodable, since the sequence header is known.
        let delta = packetize(&obu(6, &[0x30, 1, 2]), false, None, 1200).unwrap();
        assert!(packets(&delta, 3000, 5).iter().find_map(|p| depacketizer.push(p)).is_none(), "after a gap");
        assert!(depacketizer.wants_keyframe());
        let bare_key = packetize(&obu(6, &[0x10, 1, 2]), false, None, 1200).unwrap();
        assert_eq!(bare_key[0][0] & 0x08, 0, "no N bit");
        let unit = packets(&bare_key, 6000, 6).iter().find_map(|p| depacketizer.push(p)).expect("the key frame");
        assert!(unit.keyframe);
    }

    #[test]
    fn malformed_input_is_refused_or_discarded_without_panics() {
        // A size running past the unit.
        assert_eq!(packetize(&[0x32, 0x05, 1, 2], false, None, 1200), Err(Av1RtpError::Malformed(0)));
        assert!(obus(&[0x36]).is_err(), "extension byte missing");
        let mut depacketizer = Av1Depacketizer::new();
        for payload in [&[][..], &[0x00, 0x7f], &[0x80, 0x01, 0x30], &[0x10], &[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]] {
            let packet = RtpPacket { payload_type: 45, marker: true, sequence: 1, timestamp: 1, ssrc: 1, payload: Bytes::copy_from_slice(payload) };
            assert_eq!(depacketizer.push(&packet), None);
        }
    }
}
