//! A reorder (jitter) buffer for RTP packets of one SSRC, sans-IO: packets go in as they
//! arrive, and come out in sequence order.
//!
//! A packet that arrives early (a gap before it) is held until the gap fills, which is what a
//! NACK-triggered retransmission does, or until waiting longer would cost more than the loss:
//! the oldest held packet has waited `max_wait`, or `max_packets` are held. Then the buffer
//! moves past the gap and the consumer (a depacketizer) sees the sequence jump as loss.
//! Packets older than the release point (late retransmissions, duplicates) are dropped.
//! Time is an argument: a `Duration` since an origin the caller picks.

use crate::rtp::RtpPacket;
use std::collections::BTreeMap;
use std::time::Duration;

/// A jump this large (in either direction) means the sender restarted its sequence: the
/// buffer flushes and starts over instead of waiting.
const RESTART_JUMP: u16 = 3000;

/// Orders packets by sequence number.
#[derive(Debug)]
pub struct ReorderBuffer {
    max_wait: Duration,
    max_packets: usize,
    /// Extended sequence number expected next.
    next: Option<u64>,
    held: BTreeMap<u64, (Duration, RtpPacket)>,
    /// Packets dropped as late or duplicate.
    pub late: u64,
    /// Gaps given up on.
    pub skipped: u64,
}

impl ReorderBuffer {
    /// A buffer that waits up to `max_wait` or `max_packets` for a missing packet.
    pub fn new(max_wait: Duration, max_packets: usize) -> Self {
        ReorderBuffer { max_wait, max_packets: max_packets.max(1), next: None, held: BTreeMap::new(), late: 0, skipped: 0 }
    }

    /// Takes a packet received at `now`; returns the packets now in order.
    pub fn push(&mut self, now: Duration, packet: RtpPacket) -> Vec<RtpPacket> {
        let Some(next) = self.next else {
            self.next = Some(u64::from(packet.sequence) + (1 << 16));
            return self.release(vec![packet]);
        };
        let expected = (next & 0xffff) as u16;
        let ahead = packet.sequence.wrapping_sub(expected);
        let behind = expected.wrapping_sub(packet.sequence);
        if ahead >= RESTART_JUMP && behind >= RESTART_JUMP {
            // Neither shortly ahead nor shortly behind: the sender started over.
            let mut out = self.flush();
            self.next = Some(u64::from(packet.sequence) + (1 << 16));
            out.extend(self.release(vec![packet]));
            return out;
        }
        if ahead >= RESTART_JUMP {
            self.late += 1;
            return Vec::new();
        }
        let ext = next + u64::from(ahead);
        if ext == next {
            let mut out = self.release(vec![packet]);
            out.extend(self.drain_ready());
            return out;
        }
        if self.held.contains_key(&ext) {
            self.late += 1;
            return Vec::new();
        }
        self.held.insert(ext, (now, packet));
        self.poll(now)
    }

    /// Releases what waited long enough (call on a timer, and after `push`).
    pub fn poll(&mut self, now: Duration) -> Vec<RtpPacket> {
        let mut out = Vec::new();
        while let Some((&first, (arrived, _))) = self.held.first_key_value() {
            let overdue = now.saturating_sub(*arrived) >= self.max_wait || self.held.len() > self.max_packets;
            if !overdue {
                break;
            }
            self.skipped += 1;
            self.next = Some(first);
            out.extend(self.drain_ready());
        }
        out
    }

    /// When [`ReorderBuffer::poll`] next has something to release.
    pub fn deadline(&self) -> Option<Duration> {
        self.held.values().map(|(at, _)| *at + self.max_wait).min()
    }

    /// Everything held, in order (the stream ended or restarted).
    pub fn flush(&mut self) -> Vec<RtpPacket> {
        let held = std::mem::take(&mut self.held);
        if let Some((&last, _)) = held.last_key_value() {
            self.next = Some(last + 1);
        }
        held.into_values().map(|(_, p)| p).collect()
    }

    fn release(&mut self, packets: Vec<RtpPacket>) -> Vec<RtpPacket> {
        if let Some(next) = self.next.as_mut() {
            *next += packets.len() as u64;
        }
        packets
    }

    fn drain_ready(&mut self) -> Vec<RtpPacket> {
        let mut out = Vec::new();
        while let Some(next) = self.next {
            match self.held.remove(&next) {
                Some((_, packet)) => {
                    out.push(packet);
                    self.next = Some(next + 1);
                }
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packet(sequence: u16) -> RtpPacket {
        RtpPacket { payload_type: 96, marker: false, sequence, timestamp: 0, ssrc: 1, payload: Bytes::new() }
    }

    fn seqs(packets: Vec<RtpPacket>) -> Vec<u16> {
        packets.into_iter().map(|p| p.sequence).collect()
    }

    #[test]
    fn reorders_within_the_window_and_across_the_wrap() {
        let t0 = Duration::from_secs(1000);
        let mut b = ReorderBuffer::new(Duration::from_millis(80), 64);
        assert_eq!(seqs(b.push(t0, packet(65_534))), [65_534]);
        assert_eq!(seqs(b.push(t0, packet(0))), Vec::<u16>::new(), "65535 is missing");
        assert_eq!(seqs(b.push(t0, packet(1))), Vec::<u16>::new());
        assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(80)));
        assert_eq!(seqs(b.push(t0 + Duration::from_millis(10), packet(65_535))), [65_535, 0, 1]);
        assert_eq!(seqs(b.push(t0, packet(2))), [2]);
        assert_eq!((b.late, b.skipped), (0, 0));
    }

    #[test]
    fn gives_up_on_a_gap_after_the_wait_or_when_full() {
        let t0 = Duration::from_secs(1000);
        let mut b = ReorderBuffer::new(Duration::from_millis(80), 3);
        b.push(t0, packet(10));
        assert!(b.push(t0, packet(12)).is_empty());
        assert!(b.poll(t0 + Duration::from_millis(79)).is_empty());
        assert_eq!(seqs(b.poll(t0 + Duration::from_millis(80))), [12], "11 is given up");
        assert_eq!(b.skipped, 1);
        // The lost packet arriving now is late.
        assert!(b.push(t0, packet(11)).is_empty());
        assert_eq!(b.late, 1);
        // Too many held: released at once.
        for s in [14, 15, 16] {
            assert!(b.push(t0, packet(s)).is_empty());
        }
        assert_eq!(seqs(b.push(t0, packet(17))), [14, 15, 16, 17]);
    }

    #[test]
    fn duplicates_are_dropped_and_restarts_flush() {
        let t0 = Duration::from_secs(1000);
        let mut b = ReorderBuffer::new(Duration::from_millis(80), 64);
        b.push(t0, packet(100));
        assert_eq!(seqs(b.push(t0, packet(100))), Vec::<u16>::new());
        b.push(t0, packet(102));
        assert!(b.push(t0, packet(102)).is_empty(), "held twice");
        assert_eq!(b.late, 2);
        // A sender restart far away: what was held goes out, then the new packet.
        assert_eq!(seqs(b.push(t0, packet(40_000))), [102, 40_000]);
        assert_eq!(seqs(b.push(t0, packet(40_001))), [40_001]);
    }
}
