//! H.264 over RTP (RFC 6184, packetization-mode 1) into access units: single NAL unit
//! packets, STAP-A aggregates and FU-A fragments, joined per RTP timestamp. H.265 (RFC 7798:
//! single NAL unit packets, aggregation packets, fragmentation units; no DONL) is reassembled
//! by the same depacketizer ([`H264Depacketizer::new_h265`]), whose keyframes are then IRAP
//! pictures.
//!
//! An access unit is complete at the marker bit, or when a packet with a new timestamp
//! arrives. A gap in sequence numbers spoils the unit being assembled; after a gap, units are
//! dropped until the next one that holds an IDR slice, so no decoder ever sees a picture that
//! references one it never got. [`H264Depacketizer::wants_keyframe`] tells the caller to ask
//! the sender for one (PLI). Packets are expected in order: reordering belongs to a jitter
//! buffer in front of this.

use crate::codec::avc;
use crate::rtp::RtpPacket;
use bytes::{Bytes, BytesMut};

/// Largest access unit accepted (a bound on memory for a sender that never sets the marker).
pub const MAX_ACCESS_UNIT: usize = 4 * 1024 * 1024;

/// One picture's NAL units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// RTP timestamp (90 kHz).
    pub timestamp: u32,
    /// NAL units, without start codes or length prefixes.
    pub nals: Vec<Bytes>,
    /// Holds an IDR slice.
    pub keyframe: bool,
}

/// Reassembles access units from RTP packets of one SSRC.
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    /// RFC 7798 (H.265) instead of RFC 6184.
    h265: bool,
    timestamp: Option<u32>,
    nals: Vec<Bytes>,
    size: usize,
    fragment: Option<BytesMut>,
    last_sequence: Option<u16>,
    /// The unit being assembled lost a packet.
    spoiled: bool,
    /// Since a loss, waiting for an IDR.
    waiting_for_idr: bool,
    keyframe_request: bool,
    /// Packets that could not be used (malformed, lost context), for stats.
    pub discarded: u64,
    /// Sequence gaps seen.
    pub gaps: u64,
}

impl H264Depacketizer {
    /// A depacketizer that starts by waiting for an IDR.
    pub fn new() -> Self {
        H264Depacketizer { waiting_for_idr: true, keyframe_request: true, ..Default::default() }
    }

    /// The same for H.265 (RFC 7798); keyframes are IRAP pictures.
    pub fn new_h265() -> Self {
        H264Depacketizer { h265: true, ..H264Depacketizer::new() }
    }

    /// True once after a loss (and at the start): the caller should send a PLI.
    pub fn wants_keyframe(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_request)
    }

    /// Takes one packet; returns the access unit it completed, if any. A packet with a new
    /// timestamp completes the previous unit and starts the next.
    pub fn push(&mut self, packet: &RtpPacket) -> Option<AccessUnit> {
        if let Some(last) = self.last_sequence {
            let expected = last.wrapping_add(1);
            if packet.sequence != expected {
                // Old or duplicate packets (behind `last`) are ignored.
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
        if packet.marker {
            // With a unit completed by the timestamp change and this one-packet unit both
            // ready, the earlier one is returned now and this one at the next packet.
            if done.is_none() {
                done = self.finish();
            }
        }
        done
    }

    fn take_payload(&mut self, payload: &Bytes) {
        if self.h265 {
            return self.take_h265_payload(payload);
        }
        let Some(&header) = payload.first() else {
            self.discarded += 1;
            return;
        };
        match header & 0x1f {
            1..=23 => self.add(payload.clone()),
            24 => {
                // STAP-A: 16-bit sizes, each followed by a NAL unit.
                let mut rest = payload.slice(1..);
                while rest.len() >= 2 {
                    let size = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                    if size == 0 || rest.len() < 2 + size {
                        self.discarded += 1;
                        self.spoiled = true;
                        return;
                    }
                    self.add(rest.slice(2..2 + size));
                    rest = rest.slice(2 + size..);
                }
            }
            28 => {
                // FU-A: indicator, FU header (S, E, type), fragment.
                if payload.len() < 3 {
                    self.discarded += 1;
                    return;
                }
                let fu = payload[1];
                self.take_fragment(fu & 0x80 != 0, fu & 0x40 != 0, &[(header & 0xe0) | (fu & 0x1f)], &payload[2..]);
            }
            _ => self.discarded += 1,
        }
    }

    /// An RFC 7798 payload: a 2-byte payload header whose type says single NAL unit (0-47),
    /// aggregation packet (48: 16-bit sizes, each followed by a NAL unit) or fragmentation
    /// unit (49: FU header with S, E and the NAL's type, then the piece). PACI (50) and
    /// unknown types are discarded.
    fn take_h265_payload(&mut self, payload: &Bytes) {
        if payload.len() < 2 {
            self.discarded += 1;
            self.spoiled = true;
            return;
        }
        match (payload[0] >> 1) & 0x3f {
            // (End of sequence and end of bitstream NAL units are their 2-byte header alone.)
            0..=47 => self.add(payload.clone()),
            48 => {
                let mut rest = payload.slice(2..);
                while !rest.is_empty() {
                    let size = if rest.len() >= 2 { u16::from_be_bytes([rest[0], rest[1]]) as usize } else { 0 };
                    if size < 2 || rest.len() < 2 + size {
                        self.discarded += 1;
                        self.spoiled = true;
                        return;
                    }
                    self.add(rest.slice(2..2 + size));
                    rest = rest.slice(2 + size..);
                }
            }
            49 => {
                // A start and an end in one fragment is no fragmentation (RFC 7798 §4.4.3).
                let Some(&fu) = payload.get(2).filter(|fu| *fu & 0xc0 != 0xc0) else {
                    self.discarded += 1;
                    self.spoiled = true;
                    return;
                };
                let header = [(payload[0] & 0x81) | ((fu & 0x3f) << 1), payload[1]];
                self.take_fragment(fu & 0x80 != 0, fu & 0x40 != 0, &header, &payload[3..]);
            }
            _ => self.discarded += 1,
        }
    }

    /// A piece of a fragmented NAL unit: `header` starts the NAL when `start`.
    fn take_fragment(&mut self, start: bool, end: bool, header: &[u8], piece: &[u8]) {
        if start {
            let mut nal = BytesMut::with_capacity(piece.len() * 4);
            nal.extend_from_slice(header);
            nal.extend_from_slice(piece);
            self.fragment = Some(nal);
        } else if let Some(nal) = self.fragment.as_mut() {
            nal.extend_from_slice(piece);
        } else {
            // A middle or end piece whose start was lost.
            self.discarded += 1;
            self.spoiled = true;
            return;
        }
        if self.fragment.as_ref().is_some_and(|f| f.len() > MAX_ACCESS_UNIT) {
            self.fragment = None;
            self.spoiled = true;
            return;
        }
        if end {
            if let Some(nal) = self.fragment.take() {
                self.add(nal.freeze());
            }
        }
    }

    fn add(&mut self, nal: Bytes) {
        if nal.is_empty() {
            return;
        }
        self.size += nal.len();
        if self.size > MAX_ACCESS_UNIT {
            self.spoiled = true;
            return;
        }
        self.nals.push(nal);
    }

    fn finish(&mut self) -> Option<AccessUnit> {
        let nals = std::mem::take(&mut self.nals);
        let spoiled = std::mem::take(&mut self.spoiled) || self.fragment.take().is_some();
        self.size = 0;
        if spoiled {
            self.waiting_for_idr = true;
            self.keyframe_request = true;
            return None;
        }
        let timestamp = self.timestamp?;
        if nals.is_empty() {
            return None;
        }
        let keyframe = if self.h265 { nals.iter().any(|n| crate::codec::hevc::is_irap(crate::codec::hevc::nal_type(n[0]))) } else { nals.iter().any(|n| avc::nal_type(n[0]) == 5) };
        if self.waiting_for_idr {
            if !keyframe {
                return None;
            }
            self.waiting_for_idr = false;
        }
        Some(AccessUnit { timestamp, nals, keyframe })
    }
}

/// Splits an access unit (length-prefixed, 4-byte sizes) into RTP payloads of at most `mtu`
/// bytes: NAL units that fit go alone, larger ones as FU-A fragments. Parameter sets are not
/// aggregated; senders put SPS and PPS before each IDR themselves.
pub fn packetize(access_unit: &[u8], mtu: usize) -> Vec<Bytes> {
    let mtu = mtu.max(3);
    let mut out = Vec::new();
    for nal in avc::length_prefixed_nals(access_unit, 4) {
        if nal.is_empty() {
            continue;
        }
        if nal.len() <= mtu {
            out.push(Bytes::copy_from_slice(nal));
            continue;
        }
        let (header, body) = (nal[0], &nal[1..]);
        let indicator = (header & 0xe0) | 28;
        let pieces: Vec<&[u8]> = body.chunks(mtu - 2).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let mut fu = header & 0x1f;
            if i == 0 {
                fu |= 0x80;
            }
            if i == pieces.len() - 1 {
                fu |= 0x40;
            }
            let mut payload = Vec::with_capacity(piece.len() + 2);
            payload.extend_from_slice(&[indicator, fu]);
            payload.extend_from_slice(piece);
            out.push(Bytes::from(payload));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(sequence: u16, timestamp: u32, marker: bool, payload: Vec<u8>) -> RtpPacket {
        RtpPacket { payload_type: 102, marker, sequence, timestamp, ssrc: 1, payload: Bytes::from(payload) }
    }

    fn idr(len: usize) -> Vec<u8> {
        let mut nal = vec![0x65];
        nal.extend((0..len).map(|i| i as u8));
        nal
    }

    fn length_prefixed(nals: &[&[u8]]) -> Vec<u8> {
        crate::codec::avc::to_length_prefixed(nals.iter().copied()).to_vec()
    }

    #[test]
    fn single_stap_a_and_fu_a_round_trip() {
        let sps = [0x67, 0x42, 0xc0, 0x1f];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let big = idr(3000);
        // STAP-A with SPS and PPS, then the IDR in FU-A pieces of 1200 bytes.
        let mut stap = vec![0x78];
        for nal in [&sps[..], &pps[..]] {
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(nal);
        }
        let mut d = H264Depacketizer::new();
        assert!(d.wants_keyframe(), "asks for a keyframe at the start");
        assert_eq!(d.push(&packet(10, 9000, false, stap)), None);
        let pieces = packetize(&length_prefixed(&[&big]), 1200);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0][0] & 0x1f, 28);
        let mut unit = None;
        for (i, piece) in pieces.iter().enumerate() {
            unit = d.push(&packet(11 + i as u16, 9000, i == pieces.len() - 1, piece.to_vec()));
        }
        let unit = unit.expect("completed at the marker");
        assert!(unit.keyframe);
        assert_eq!(unit.timestamp, 9000);
        assert_eq!(unit.nals.iter().map(|n| n.to_vec()).collect::<Vec<_>>(), vec![sps.to_vec(), pps.to_vec(), big.clone()]);
        // A small P frame in a single NAL packet.
        let p = vec![0x41, 1, 2, 3];
        let unit = d.push(&packet(14, 12000, true, p.clone())).expect("single NAL unit");
        assert!(!unit.keyframe);
        assert_eq!(unit.nals, vec![Bytes::from(p)]);
        assert!(!d.wants_keyframe());
    }

    #[test]
    fn a_new_timestamp_completes_a_unit_without_marker() {
        let mut d = H264Depacketizer::new();
        assert_eq!(d.push(&packet(1, 100, false, idr(10))), None);
        let unit = d.push(&packet(2, 200, false, vec![0x41, 9])).expect("previous unit");
        assert_eq!(unit.timestamp, 100);
        assert!(unit.keyframe);
    }

    #[test]
    fn loss_drops_units_until_the_next_idr_and_asks_for_one() {
        let mut d = H264Depacketizer::new();
        d.wants_keyframe();
        assert!(d.push(&packet(1, 100, true, idr(10))).is_some());
        let fu = packetize(&length_prefixed(&[&[0x41; 3000][..]]), 1200);
        // The middle fragment is lost.
        assert_eq!(d.push(&packet(2, 200, false, fu[0].to_vec())), None);
        assert_eq!(d.push(&packet(4, 200, true, fu[2].to_vec())), None);
        assert_eq!(d.gaps, 1);
        assert!(d.wants_keyframe());
        assert!(!d.wants_keyframe(), "asked once");
        // An intact P frame still refers to the lost one: dropped.
        assert_eq!(d.push(&packet(5, 300, true, vec![0x41, 1])), None);
        // The next IDR resumes.
        let unit = d.push(&packet(6, 400, true, idr(5))).expect("resumes at the IDR");
        assert!(unit.keyframe);
        // A late duplicate of an old packet is ignored.
        assert_eq!(d.push(&packet(3, 200, false, fu[1].to_vec())), None);
        assert!(d.push(&packet(7, 500, true, vec![0x41, 2])).is_some());
    }

    #[test]
    fn malformed_payloads_are_counted_not_fatal() {
        let mut d = H264Depacketizer::new();
        d.push(&packet(1, 100, false, vec![]));
        d.push(&packet(2, 100, false, vec![0x78, 0x00, 0x09, 0x67]));
        d.push(&packet(3, 100, false, vec![0x7c]));
        d.push(&packet(4, 100, true, vec![0x7c, 0x05, 1]));
        assert!(d.discarded >= 3);
        assert!(d.push(&packet(5, 200, true, idr(4))).is_some());
    }
}
