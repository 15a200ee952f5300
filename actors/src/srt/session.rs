//! One SRT publisher's connection: drives `srt-protocol`'s `DuplexConnection` with packets
//! routed from the listener and the current time, and demuxes the TS it releases into frames
//! for the stream actor. (Players are served per stream by [`super::players`].)
//!
//! The connection is a state machine that answers every input with one action; the loop feeds
//! it the result of each action (`PacketSent`, `DataReleased`, ...) until it asks to wait, then
//! waits for the next packet, frame, timer or close request. Every call sits behind
//! `catch_unwind`: a panic in the library ends this connection only.

use super::listener::{SessionEnded, SrtListener};
use crate::node::clients::{ClientGuard, Role as ClientRole};
use crate::access::hooks;
use crate::node::NodeContext;
use crate::stream::{PublisherLink, Subscription};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use estuary_protocols::container::ts::{TsDemuxer, TsFrameReader};
use estuary_storage::StreamKey;
use serde_json::json;
use srt_protocol::connection::{Action, Connection, DuplexConnection, Input};
use srt_protocol::packet::{Acknowledgement, ControlPacket, ControlTypes, Packet};
use srt_protocol::statistics::SocketStatistics;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// How long a closing connection may take to flush before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the listener sends a session.
#[allow(clippy::large_enum_variant)] // packets are the common case; boxing would allocate per packet
pub(super) enum SessionInput {
    /// A packet from the peer, with the address it came from.
    Packet(SocketAddr, Packet),
}

/// Publisher or player, with what the admission obtained.
pub(super) enum Role {
    /// Frames go to this stream actor.
    Publish {
        /// The publisher's link (holding it holds the publish claim).
        stream: PublisherLink,
    },
    /// Frames come from this subscription.
    Play {
        /// The subscription.
        subscription: Box<Subscription>,
    },
}

/// Everything a session starts with.
pub(super) struct SessionSetup {
    pub connection: Connection,
    pub socket: Arc<UdpSocket>,
    pub peer: SocketAddr,
    pub inbox: mpsc::Receiver<SessionInput>,
    pub guard: ClientGuard,
    pub key: StreamKey,
    pub params: Vec<(String, String)>,
    pub stream: PublisherLink,
    /// The listener's number for this connection's route.
    pub route: u64,
    pub listener: Addr<SrtListener>,
    pub node: NodeContext,
}

/// An action, owned (the library's borrows the connection).
#[allow(clippy::large_enum_variant)] // lives on the stack for one loop turn
enum Step {
    Send(Packet, SocketAddr),
    Data(Bytes),
    Stats(serde_json::Value),
    Wait(Duration),
    Close,
}

/// TS in, frames out to the stream actor.
struct Publisher {
    stream: PublisherLink,
    demuxer: TsDemuxer,
    reader: TsFrameReader,
    errors: u64,
}

impl Publisher {
    /// Demuxes `data` and hands the frames to the stream (see `push_or_drop`).
    fn push(&mut self, client: u64, data: &[u8]) -> Result<(), &'static str> {
        if let Err(e) = self.demuxer.push(data) {
            self.errors += 1;
            if self.errors == 1 || self.errors.is_power_of_two() {
                tracing::warn!(client, error = %e, count = self.errors, "bad MPEG-TS from SRT publisher; data skipped");
            }
        }
        while let Some(pes) = self.demuxer.next_pes() {
            for frame in self.reader.frames(&pes) {
                // Never waits: this loop also runs SRT itself (ACKs, NAKs, keepalives), so a
                // stream that is behind costs frames (counted; video until the next
                // keyframe), as SRT's own live mode drops what comes too late.
                self.stream.push_or_drop(Arc::new(frame)).map_err(|_| "the stream actor went away")?;
            }
        }
        Ok(())
    }
}

/// What the ACKs in either direction say about the path (the library's statistics do not
/// carry its RTT estimate).
#[derive(Default)]
pub(super) struct PathEstimate {
    rtt: Option<Duration>,
    link_capacity_pps: Option<u32>,
}

impl PathEstimate {
    pub(super) fn observe(&mut self, packet: &Packet) {
        if let Packet::Control(ControlPacket { control_type: ControlTypes::Ack(Acknowledgement::Small(_, stats) | Acknowledgement::Full(_, stats, _)), .. }) = packet {
            self.rtt = Some(stats.rtt.mean_as_duration());
            if let Some(capacity) = stats.estimated_link_capacity {
                self.link_capacity_pps = Some(capacity);
            }
        }
    }
}

pub(super) fn stats_json(stats: &SocketStatistics, path: &PathEstimate, previous: &mut Option<(Instant, u64, u64)>) -> serde_json::Value {
    let now = Instant::now();
    let (recv_kbps, send_kbps) = match previous.replace((now, stats.rx_bytes, stats.tx_bytes)) {
        Some((at, rx, tx)) if now > at => {
            let secs = (now - at).as_secs_f64();
            ((stats.rx_bytes.saturating_sub(rx) as f64 * 8.0 / 1000.0 / secs).round(), (stats.tx_bytes.saturating_sub(tx) as f64 * 8.0 / 1000.0 / secs).round())
        }
        _ => (0.0, 0.0),
    };
    json!({
        "rtt_ms": path.rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
        "link_capacity_pps": path.link_capacity_pps,
        "recv_kbps": recv_kbps,
        "send_kbps": send_kbps,
        "recv_packets": stats.rx_data,
        "sent_packets": stats.tx_data,
        "recv_lost_packets": stats.rx_loss_data,
        "send_lost_packets": stats.tx_loss_data,
        "retransmitted_packets": stats.tx_retransmit_data,
        "recv_retransmitted_packets": stats.rx_retransmit_data,
        "recv_dropped_packets": stats.rx_dropped_data,
        "send_dropped_packets": stats.tx_dropped_data,
        "naks_sent": stats.tx_nak,
        "naks_received": stats.rx_nak,
        "send_buffer_ms": stats.tx_buffered_time.as_millis() as u64,
        "recv_buffer_ms": stats.rx_acknowledged_time.as_millis() as u64,
    })
}

/// Runs the connection until it closes.
pub(super) async fn run(setup: SessionSetup) {
    let SessionSetup { connection, socket, peer, mut inbox, guard, key, params, stream, route, listener, node } = setup;
    let client = guard.id();
    let record = guard.record().clone();
    let latency_ms = connection.settings.recv_tsbpd_latency.max(connection.settings.send_tsbpd_latency).as_millis() as u64;
    let mut connection = DuplexConnection::new(connection);
    record.set_role(ClientRole::Publish, key.to_string());
    tracing::info!(client, %peer, stream = %key, latency_ms, "SRT publish started");
    let mut publisher = Publisher { stream, demuxer: TsDemuxer::default(), reader: TsFrameReader::default(), errors: 0 };

    let mut input = Input::Timer;
    let mut closing: Option<Instant> = None;
    let mut previous_stats = None;
    let mut path = PathEstimate::default();
    let mut send_buf = BytesMut::with_capacity(2048);
    let reason: String = loop {
        if closing.is_some_and(|since| since.elapsed() > CLOSE_GRACE) {
            break "closed without a clean shutdown".into();
        }
        let now = Instant::now();
        let step = catch_unwind(AssertUnwindSafe(|| match connection.handle_input(now, input) {
            Action::SendPacket((packet, to)) => Step::Send(packet, to),
            Action::ReleaseData((_, data)) => Step::Data(data),
            Action::UpdateStatistics(stats) => Step::Stats(stats_json(stats, &path, &mut previous_stats)),
            Action::WaitForData(wait) => Step::Wait(wait),
            Action::Close => Step::Close,
        }));
        let step = match step {
            Ok(step) => step,
            Err(_) => {
                tracing::error!(client, %peer, stream = %key, "SRT connection code panicked on this connection; closing it (others are unaffected)");
                break "internal error in the SRT library".into();
            }
        };
        input = match step {
            Step::Send(packet, to) => {
                path.observe(&packet);
                send_buf.clear();
                packet.serialize(&mut send_buf);
                match socket.send_to(&send_buf, to).await {
                    Ok(sent) => record.add_out(sent),
                    Err(e) => tracing::debug!(client, %peer, error = %e, "SRT send failed"),
                }
                Input::PacketSent
            }
            Step::Data(data) => {
                record.add_in(data.len());
                if let Err(why) = publisher.push(client, &data) {
                    break why.into();
                }
                Input::DataReleased
            }
            Step::Stats(stats) => {
                record.set_transport(stats);
                Input::StatisticsUpdated
            }
            Step::Close => break if closing.is_some() { "closed".into() } else { "the peer closed the connection or went silent".into() },
            Step::Wait(wait) => {
                let wait = wait.min(Duration::from_millis(100));
                tokio::select! {
                    message = inbox.recv() => match message {
                        Some(SessionInput::Packet(_, packet)) => {
                            path.observe(&packet);
                            Input::Packet(Ok((packet, peer)))
                        }
                        None => break "the SRT listener went away".into(),
                    },
                    _ = record.kicked(), if closing.is_none() => {
                        tracing::info!(client, %peer, stream = %key, "SRT client kicked through the API");
                        closing = Some(Instant::now());
                        Input::Data(None)
                    }
                    _ = tokio::time::sleep(wait) => Input::Timer,
                }
            }
        };
    };

    node.hooks.notify(hooks::Event::Unpublish, &key.app, hooks::body(client, &peer.ip().to_string(), &key.vhost, &key.app, &key.stream, &params));
    let errors = publisher.errors;
    drop(publisher);
    tracing::info!(
        client,
        %peer,
        stream = %key,
        %reason,
        ts_errors = errors,
        bytes_in = record.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
        bytes_out = record.bytes_out.load(std::sync::atomic::Ordering::Relaxed),
        alive_ms = record.connected.elapsed().as_millis() as u64,
        "SRT connection closed"
    );
    inbox.close();
    drop(guard);
    crate::tell(&listener, SessionEnded { peer, route });
}
