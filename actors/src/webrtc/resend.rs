//! Answering a WHEP player's NACKs (RFC 4585 generic NACK) from the player's own record of
//! the video packets it was sent.
//!
//! `rtc`'s NACK responder keeps a copy of every packet and answers a NACK by queueing all the
//! packets it names at once; `rtc` then walks that batch through each of its nine pipeline
//! stages, and every stage's queue keeps the batch's size for the rest of the session (about
//! 15 KiB each per player at 100 players, heaptrack). Here a sent packet is remembered as its
//! header fields and the stream's shared payload (reference-counted, cut once per stream), and
//! the packets a NACK names are written back one at a time, like any other packet.

use bytes::Bytes;
use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Packets remembered per video sender: 256 is 2.5 s at 1 Mbit/s and half a second at
/// 5 Mbit/s, longer than any retransmission is useful for live video.
pub(crate) const HISTORY: usize = 256;

/// Times one packet is sent again at most: a player that keeps asking (webrtc-rs asks again
/// every 100 ms, without limit, for as long as the packet is missing) is not sent it forever.
/// On an overloaded node or link every loss would otherwise be multiplied by the retries.
pub(crate) const MAX_RESENDS: u8 = 3;
/// A packet is not sent again sooner than this after its last copy (a NACK that crossed it).
pub(crate) const RESEND_GAP: Duration = Duration::from_millis(50);

/// A packet as it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) sequence: u16,
    pub(crate) timestamp: u32,
    pub(crate) marker: bool,
    pub(crate) payload: Bytes,
}

/// A remembered packet and its copies so far.
#[derive(Clone)]
struct Slot {
    sent: Sent,
    resends: u8,
    last_resent: Option<Instant>,
}

/// The last [`HISTORY`] packets of one sender, by sequence number.
pub(crate) struct History {
    slots: Vec<Option<Slot>>,
}

impl History {
    pub(crate) fn new() -> History {
        History { slots: vec![None; HISTORY] }
    }

    fn slot(sequence: u16) -> usize {
        sequence as usize % HISTORY
    }

    /// Remembers `sent`, forgetting the packet [`HISTORY`] sequence numbers before it.
    pub(crate) fn keep(&mut self, sent: Sent) {
        let slot = Self::slot(sent.sequence);
        self.slots[slot] = Some(Slot { sent, resends: 0, last_resent: None });
    }

    /// The packet sent with `sequence`, to be sent again at `now`: if it is still remembered,
    /// has been sent again fewer than [`MAX_RESENDS`] times, and not within [`RESEND_GAP`].
    pub(crate) fn resend(&mut self, sequence: u16, now: Instant) -> Option<&Sent> {
        let slot = self.slots[Self::slot(sequence)].as_mut().filter(|slot| slot.sent.sequence == sequence)?;
        if slot.resends >= MAX_RESENDS || slot.last_resent.is_some_and(|at| now.saturating_duration_since(at) < RESEND_GAP) {
            return None;
        }
        slot.resends += 1;
        slot.last_resent = Some(now);
        Some(&slot.sent)
    }
}

/// Every sequence number `nack` reports lost, in the order it lists them.
pub(crate) fn lost(nack: &TransportLayerNack) -> impl Iterator<Item = u16> + '_ {
    nack.nacks.iter().flat_map(|pair| (*pair).into_iter())
}

/// An interceptor that lets a WHEP player's NACKs and keyframe requests (PLI, FIR) through
/// to the session. `rtc` ends every inbound RTCP packet at the end of its interceptor chain
/// unless an interceptor marks it for the application; without this mark the session never
/// saw a NACK or a keyframe request.
///
/// The feedback is also moved to the front of its compound packet: `rtc` hands a compound
/// packet to the application only if the first packet's destination SSRC is one of the
/// session's tracks, and browsers put a receiver report first, which names no SSRC at all
/// before anything arrived or after a long pause (exactly when a PLI matters).
#[derive(Default)]
pub(crate) struct PlayerFeedback {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

/// Whether an RTCP packet is feedback the session acts on.
fn acted_on(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<TransportLayerNack>() || any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for PlayerFeedback {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            if packets.iter().any(|p| acted_on(p.as_ref())) {
                // Stable: the feedback first, in its order, then the rest in theirs.
                packets.sort_by_key(|p| !acted_on(p.as_ref()));
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for PlayerFeedback {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::{lost, History, Sent, HISTORY, MAX_RESENDS, RESEND_GAP};
    use bytes::Bytes;
    use std::time::{Duration, Instant};
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
    use rtc::shared::marshal::{Marshal, Unmarshal};

    fn sent(sequence: u16) -> Sent {
        Sent { sequence, timestamp: 90 * sequence as u32, marker: sequence % 3 == 0, payload: Bytes::from(sequence.to_be_bytes().to_vec()) }
    }

    #[test]
    fn a_remembered_packet_comes_back_as_it_was_sent_and_an_overwritten_one_does_not() {
        let now = Instant::now();
        let mut history = History::new();
        for sequence in 65_500u16..=65_535 {
            history.keep(sent(sequence));
        }
        for sequence in 0u16..300 {
            history.keep(sent(sequence));
        }
        // Across the wrap: the last 256 are 44..=299.
        assert_eq!(history.resend(299, now), Some(&sent(299)));
        assert_eq!(history.resend(44, now), Some(&sent(44)));
        assert_eq!(history.resend(43, now), None, "overwritten by 299");
        assert_eq!(history.resend(65_530, now), None, "overwritten long ago");
        assert_eq!(history.resend(300, now), None, "never sent");
        assert_eq!(HISTORY, 256);
    }

    #[test]
    fn a_packet_asked_for_again_and_again_is_resent_a_few_times_spaced_out() {
        let start = Instant::now();
        let mut history = History::new();
        history.keep(sent(7));
        // Asked for every 10 ms for a second: sent again at 0, 50 and 100 ms, then no more.
        let mut resent_at = Vec::new();
        for ms in (0..1000).step_by(10) {
            if history.resend(7, start + Duration::from_millis(ms)).is_some() {
                resent_at.push(ms);
            }
        }
        assert_eq!(resent_at, vec![0, RESEND_GAP.as_millis() as u64, 2 * RESEND_GAP.as_millis() as u64]);
        assert_eq!(resent_at.len(), MAX_RESENDS as usize);
        // A packet sent anew under the same slot starts over.
        history.keep(sent(7 + HISTORY as u16));
        assert!(history.resend(7 + HISTORY as u16, start + Duration::from_secs(2)).is_some());
    }

    /// A browser's compound packet: a receiver report without report blocks (nothing received
    /// yet), SDES, then a PLI. It comes out marked for the application, with the PLI first.
    #[test]
    fn player_feedback_is_marked_for_the_session_and_put_first_in_its_compound() {
        use super::PlayerFeedback;
        use rtc::interceptor::{Attribute, AttributedPacket, Packet, TaggedPacket};
        use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
        use rtc::rtcp::receiver_report::ReceiverReport;
        use rtc::rtcp::source_description::SourceDescription;
        use rtc::sansio::Protocol;
        use rtc::shared::TransportContext;

        let tagged = |packets: Vec<Box<dyn rtc::rtcp::Packet>>| TaggedPacket { now: Instant::now(), transport: TransportContext::default(), message: AttributedPacket::new(Packet::Rtcp(packets)) };
        let mut feedback = PlayerFeedback::default();
        let report = ReceiverReport { ssrc: 9, reports: vec![], profile_extensions: Default::default() };
        feedback.handle_read(tagged(vec![Box::new(report.clone()), Box::new(SourceDescription::default()), Box::new(PictureLossIndication { sender_ssrc: 9, media_ssrc: 77 })])).unwrap();
        // A report alone is left for the interceptors (and ends at `rtc`'s terminus).
        feedback.handle_read(tagged(vec![Box::new(report)])).unwrap();

        let first = feedback.poll_read().unwrap();
        assert!(first.message.has(&Attribute::DeliverToApplication));
        let Packet::Rtcp(packets) = &first.message.packet else { panic!("not RTCP") };
        assert_eq!(packets[0].destination_ssrc(), vec![77], "the PLI leads, naming the track");
        assert!(packets[1].as_any().is::<ReceiverReport>() && packets[2].as_any().is::<SourceDescription>(), "the rest in their order");
        let second = feedback.poll_read().unwrap();
        assert!(!second.message.has(&Attribute::DeliverToApplication));
        assert!(feedback.poll_read().is_none());
    }

    #[test]
    fn the_sequence_numbers_of_a_nack_off_the_wire() {
        // One pair naming 65534 and, by its bitmap, 65535 (bit 0) and 2 (bit 3, across the
        // wrap); a second pair naming 100 alone.
        let nack = TransportLayerNack { sender_ssrc: 1, media_ssrc: 2, nacks: vec![NackPair { packet_id: 65_534, lost_packets: 0b1001 }, NackPair { packet_id: 100, lost_packets: 0 }] };
        let wire = nack.marshal().unwrap();
        let parsed = TransportLayerNack::unmarshal(&mut &wire[..]).unwrap();
        assert_eq!(lost(&parsed).collect::<Vec<u16>>(), vec![65_534, 65_535, 2, 100]);
    }
}
