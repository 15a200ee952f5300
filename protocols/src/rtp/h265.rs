//! H.265 over RTP (RFC 7798), the sending side: NAL units that fit go as single NAL unit
//! packets, larger ones as fragmentation units (type 49). No aggregation packets and no
//! DONL fields (`sprop-max-don-diff` 0, the default).

use bytes::Bytes;

/// Fragmentation unit NAL type.
const FU: u8 = 49;

/// Splits NAL units (2-byte headers, no start codes or length prefixes) into RTP payloads of
/// at most `mtu` bytes. NAL units shorter than their header are skipped.
pub fn packetize<'a>(nals: impl IntoIterator<Item = &'a [u8]>, mtu: usize) -> Vec<Bytes> {
    let mtu = mtu.max(4);
    let mut out = Vec::new();
    for nal in nals {
        if nal.len() < 3 {
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
}
