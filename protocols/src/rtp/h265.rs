//! H.265 over RTP (RFC 7798), the sending side: NAL units that fit go as single NAL unit
//! packets, larger ones as fragmentation units (type 49). No aggregation packets and no
//! DONL fields (`sprop-max-don-diff` 0, the default). The receiving side is
//! [`super::h264::H264Depacketizer::new_h265`].

use bytes::Bytes;

/// Fragmentation unit NAL type.
const FU: u8 = 49;

/// Splits NAL units (2-byte headers, no start codes or length prefixes) into RTP payloads of
/// at most `mtu` bytes. NAL units shorter than their header are skipped.
pub fn packetize<'a>(nals: impl IntoIterator<Item = &'a [u8]>, mtu: usize) -> Vec<Bytes> {
    let mtu = mtu.max(4);
    let mut out = Vec::new();
    for nal in nals {
        if nal.len() < 2 {
            continue;
        }
        if nal.len() <= mtu {
            out.push(Bytes::copy_from_slice(nal));
            continue;
        }
        // The payload header is the NAL's with type 49 (F, layer id and TID kept); the FU
        // header has S, E and the NAL's own type.
        let header = [(nal[0] & 0x81) | (FU << 1), nal[1]];
        let kind = (nal[0] >> 1) & 0x3f;
        let pieces: Vec<&[u8]> = nal[2..].chunks(mtu - 3).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let mut fu = kind;
            if i == 0 {
                fu |= 0x80;
            }
            if i + 1 == pieces.len() {
                fu |= 0x40;
            }
            let mut payload = Vec::with_capacity(piece.len() + 3);
            payload.extend_from_slice(&[header[0], header[1], fu]);
            payload.extend_from_slice(piece);
            out.push(Bytes::from(payload));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_nals_go_alone_and_large_ones_as_fragments_that_rebuild_the_nal() {
        let vps = [0x40, 0x01, 0x0c, 0x01];
        // An IDR_W_RADL slice (type 19) with TID 1, of 3000 bytes.
        let mut idr = vec![19 << 1, 0x01];
        idr.extend((0..2998).map(|i| (i % 251) as u8));
        let payloads = packetize([&vps[..], &idr[..], &[0x26][..]], 1200);
        assert_eq!(payloads[0].as_ref(), &vps);
        let fragments = &payloads[1..];
        assert_eq!(fragments.len(), 3);
        assert!(fragments.iter().all(|p| p.len() <= 1200 && p[0] >> 1 == FU && p[1] == 0x01 && p[2] & 0x3f == 19));
        assert_eq!((fragments[0][2] & 0xc0, fragments[1][2] & 0xc0, fragments[2][2] & 0xc0), (0x80, 0x00, 0x40));
        // The NAL header from the FU headers, then the fragments in order, is the NAL again.
        let mut rebuilt = vec![(fragments[0][0] & 0x81) | (fragments[0][2] & 0x3f) << 1, fragments[0][1]];
        for fragment in fragments {
            rebuilt.extend_from_slice(&fragment[3..]);
        }
        assert_eq!(rebuilt, idr);
    }

    fn packets(payloads: &[Bytes], timestamp: u32, first: u16) -> Vec<crate::rtp::RtpPacket> {
        payloads.iter().enumerate().map(|(i, p)| crate::rtp::RtpPacket { payload_type: 49, marker: i + 1 == payloads.len(), sequence: first.wrapping_add(i as u16), timestamp, ssrc: 3, payload: p.clone() }).collect()
    }

    #[test]
    fn the_depacketizer_rebuilds_access_units_from_single_aggregated_and_fragmented_nals() {
        let (vps, sps, pps) = ([0x40, 0x01, 0x0c], [0x42, 0x01, 0x01, 0x60], [0x44, 0x01, 0xc1]);
        let mut idr = vec![19 << 1, 0x01];
        idr.extend((0..4000).map(|i| (i % 253) as u8));
        let trail = [0x02, 0x01, 0xaa, 0xbb];
        // The parameter sets as one aggregation packet (type 48), as many senders do.
        let mut aggregate = vec![48 << 1, 0x01];
        for nal in [&vps[..], &sps, &pps] {
            aggregate.extend((nal.len() as u16).to_be_bytes());
            aggregate.extend_from_slice(nal);
        }
        let mut key = vec![Bytes::from(aggregate)];
        key.extend(packetize([&idr[..]], 1200));
        let mut depacketizer = super::super::h264::H264Depacketizer::new_h265();
        let mut units = Vec::new();
        // A trailing picture before any IRAP is not given out.
        units.extend(packets(&packetize([&trail[..]], 1200), 0, 10).iter().filter_map(|p| depacketizer.push(p)));
        assert!(units.is_empty());
        assert!(depacketizer.wants_keyframe());
        units.extend(packets(&key, 3000, 11).iter().filter_map(|p| depacketizer.push(p)));
        units.extend(packets(&packetize([&trail[..]], 1200), 6000, 11 + key.len() as u16).iter().filter_map(|p| depacketizer.push(p)));
        assert_eq!(units.len(), 2);
        assert!(units[0].keyframe && !units[1].keyframe);
        let nals: Vec<&[u8]> = units[0].nals.iter().map(|n| n.as_ref()).collect();
        assert_eq!(nals, vec![&vps[..], &sps, &pps, &idr]);
        // A lost fragment spoils the picture and asks for a keyframe again.
        let mut lossy = packets(&key, 9000, 100);
        lossy.remove(2);
        assert!(lossy.iter().filter_map(|p| depacketizer.push(p)).next().is_none());
        assert!(depacketizer.wants_keyframe());
        // Malformed: a size past the end, a short packet.
        for payload in [&[48 << 1, 0x01, 0x00, 0x09, 0x40][..], &[49 << 1]] {
            let packet = crate::rtp::RtpPacket { payload_type: 49, marker: true, sequence: 200, timestamp: 1, ssrc: 3, payload: Bytes::copy_from_slice(payload) };
            assert_eq!(depacketizer.push(&packet), None);
        }
    }
}
