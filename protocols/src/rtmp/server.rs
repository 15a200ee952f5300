//! The server side of an RTMP connection: handshake, `connect`, `createStream`, `publish` or
//! `play`, and media. Publishing and playing are decided by the application: the session
//! emits [`ServerEvent::PublishRequested`] / [`ServerEvent::PlayRequested`] with a request id
//! and waits for [`ServerSession::accept`] or [`ServerSession::reject`].
//!
//! State machine:
//!
//! ```text
//! Handshaking --C0C1..C2--> Connected --connect--> App --publish/play--> Pending(id)
//!   Pending --accept--> Publishing | Playing        Pending --reject--> App (peer told why)
//!   Publishing/Playing --deleteStream/closeStream/FCUnpublish--> App
//! ```
//!
//! Media received while publishing is widened to 64-bit timestamps (one
//! [`TimestampNormalizer`] per session) and emitted as [`MediaFrame`]s. Media for players is
//! serialised by a [`MediaWriter`], which the caller may use outside the session (it needs only
//! the chunk size and the message stream id), so one serialisation can serve many players.

use super::chunk::{ChunkDecoder, ChunkEncoder};
use super::message::{self as msg, Command};
use super::RtmpError;
use crate::amf0::Value;
use crate::container::flv;
use crate::media::{MediaFrame, TimestampNormalizer, TrackKind};
use bytes::{Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, PeerType};
use std::collections::{HashMap, VecDeque};

/// Identifies a publish or play request awaiting the application's decision.
pub type RequestId = u32;

/// Session limits and parameters.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Chunk size announced to and used toward the peer.
    pub chunk_size: usize,
    /// Window acknowledgement size announced to the peer.
    pub window_ack_size: u32,
    /// Largest message accepted from the peer.
    pub max_message_size: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { chunk_size: 4096, window_ack_size: 2_500_000, max_message_size: 8 << 20 }
    }
}

/// What the session tells the application.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// `connect` was received and answered.
    Connected {
        /// The application name (query removed).
        app: String,
        /// The `tcUrl` the client sent.
        tc_url: String,
        /// Query parameters of the app name.
        params: Vec<(String, String)>,
    },
    /// The peer wants to publish.
    PublishRequested {
        /// Pass to `accept` or `reject`.
        request: RequestId,
        /// Application.
        app: String,
        /// Stream name (query removed).
        stream: String,
        /// Query parameters of the stream name and the app.
        params: Vec<(String, String)>,
    },
    /// The peer wants to play.
    PlayRequested {
        /// Pass to `accept` or `reject`.
        request: RequestId,
        /// Application.
        app: String,
        /// Stream name (query removed).
        stream: String,
        /// Query parameters of the stream name and the app.
        params: Vec<(String, String)>,
    },
    /// A media frame from the publisher.
    Frame(MediaFrame),
    /// The publisher ended its stream but may keep the connection.
    PublishStopped,
    /// The player ended playback but may keep the connection.
    PlayStopped,
    /// Something was ignored; worth a log line.
    Warning(String),
}

/// One output of the session.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerOutput {
    /// Bytes to send to the peer.
    Transmit(Bytes),
    /// An event for the application.
    Event(ServerEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Idle,
    Publishing { stream_id: u32 },
    Playing { stream_id: u32 },
}

#[derive(Debug)]
struct PendingRequest {
    publish: bool,
    stream_id: u32,
    stream: String,
}

/// Serialises frames for one player connection.
#[derive(Debug, Clone, Copy)]
pub struct MediaWriter {
    encoder: ChunkEncoder,
    stream_id: u32,
}

impl MediaWriter {
    /// A writer for a message stream at an outgoing chunk size.
    pub fn new(chunk_size: usize, stream_id: u32) -> Self {
        MediaWriter { encoder: ChunkEncoder::with_chunk_size(chunk_size), stream_id }
    }

    /// Appends the RTMP message for `frame`.
    pub fn write_frame(&self, out: &mut BytesMut, frame: &MediaFrame) {
        let prefix = flv::body_prefix(frame);
        let (csid, type_id) = match frame.track {
            TrackKind::Video => (msg::CSID_VIDEO, msg::VIDEO),
            TrackKind::Audio => (msg::CSID_AUDIO, msg::AUDIO),
            TrackKind::Data => (msg::CSID_STREAM, msg::DATA_AMF0),
        };
        let timestamp = frame.dts_ms().max(0) as u64 as u32;
        self.encoder.write(out, csid, timestamp, type_id, self.stream_id, &[&prefix, &frame.payload]);
    }

    /// What the bytes of [`MediaWriter::write_frame`] depend on besides the frame: two
    /// writers with the same key write the same bytes for the same frame.
    pub fn key(&self) -> u64 {
        ((self.encoder.chunk_size() as u64) << 32) | u64::from(self.stream_id)
    }

    /// Appends the `onStatus` and Stream EOF a player gets when the stream ends.
    pub fn write_stream_end(&self, out: &mut BytesMut) {
        msg::write_on_status(out, &self.encoder, self.stream_id, "status", "NetStream.Play.UnpublishNotify", "Stream ended.");
        msg::write_user_control(out, &self.encoder, msg::UC_STREAM_EOF, self.stream_id);
    }
}

/// The sans-IO server session.
pub struct ServerSession {
    config: ServerConfig,
    handshake: Option<Box<Handshake>>,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    out: BytesMut,
    queue: VecDeque<ServerOutput>,
    app: Option<(String, Vec<(String, String)>)>,
    next_stream_id: u32,
    next_request: RequestId,
    pending: HashMap<RequestId, PendingRequest>,
    role: Role,
    received: u64,
    last_ack: u64,
    peer_window: u32,
    normalizer: TimestampNormalizer,
    warnings: u32,
}

const MAX_WARNINGS: u32 = 20;

impl ServerSession {
    /// A session waiting for the client's C0 and C1.
    pub fn new(config: ServerConfig) -> Self {
        ServerSession {
            decoder: ChunkDecoder::new(config.max_message_size),
            encoder: ChunkEncoder::new(),
            config,
            handshake: Some(Box::new(Handshake::new(PeerType::Server))),
            out: BytesMut::new(),
            queue: VecDeque::new(),
            app: None,
            next_stream_id: 1,
            next_request: 1,
            pending: HashMap::new(),
            role: Role::Idle,
            received: 0,
            last_ack: 0,
            peer_window: 0,
            normalizer: TimestampNormalizer::rtmp(),
            warnings: 0,
        }
    }

    /// True once the handshake has completed.
    pub fn handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    /// Bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        if self.queue.is_empty() {
            self.flush();
        }
        self.queue.pop_front()
    }

    fn flush(&mut self) {
        if !self.out.is_empty() {
            self.queue.push_back(ServerOutput::Transmit(self.out.split().freeze()));
        }
    }

    fn event(&mut self, event: ServerEvent) {
        self.flush();
        self.queue.push_back(ServerOutput::Event(event));
    }

    fn warn(&mut self, text: String) {
        self.warnings += 1;
        if self.warnings <= MAX_WARNINGS {
            self.event(ServerEvent::Warning(text));
        }
    }

    /// Feeds received bytes. An error means the connection must be closed; outputs queued
    /// before it (e.g. a final status) may still be sent.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        self.received += data.len() as u64;
        let mut data = data;
        let leftover;
        if let Some(handshake) = self.handshake.as_mut() {
            match super::drive_handshake(handshake, data, &mut self.out)? {
                None => return Ok(()),
                Some(remaining) => {
                    self.handshake = None;
                    leftover = remaining;
                    data = &leftover;
                }
            }
        }
        self.decoder.push(data);
        while let Some(message) = self.decoder.next_message()? {
            self.handle_message(message)?;
        }
        if self.peer_window > 0 && self.received - self.last_ack >= self.peer_window as u64 {
            self.last_ack = self.received;
            msg::write_u32_control(&mut self.out, &self.encoder, msg::ACKNOWLEDGEMENT, self.received as u32);
        }
        Ok(())
    }

    fn malformed(&self, what: &'static str, detail: impl ToString) -> RtmpError {
        RtmpError::Malformed { what, offset: self.received, detail: detail.to_string() }
    }

    fn handle_message(&mut self, message: super::chunk::RawMessage) -> Result<(), RtmpError> {
        match message.type_id {
            msg::SET_CHUNK_SIZE => {
                let value = msg::parse_u32(&message.payload).ok_or_else(|| self.malformed("Set Chunk Size", "short payload"))?;
                self.decoder.set_chunk_size(value as u64)?;
            }
            msg::ABORT => {
                if let Some(csid) = msg::parse_u32(&message.payload) {
                    self.decoder.abort(csid);
                }
            }
            msg::WINDOW_ACK_SIZE => {
                self.peer_window = msg::parse_u32(&message.payload).unwrap_or(0);
            }
            msg::USER_CONTROL => {
                if let Some((msg::UC_PING_REQUEST, value)) = msg::parse_user_control(&message.payload) {
                    msg::write_user_control(&mut self.out, &self.encoder, msg::UC_PING_RESPONSE, value);
                }
            }
            msg::ACKNOWLEDGEMENT | msg::SET_PEER_BANDWIDTH => {}
            msg::COMMAND_AMF0 | msg::COMMAND_AMF3 => {
                let command = Command::parse(message.type_id, &message.payload).map_err(|e| self.malformed("command", e))?;
                self.handle_command(message.stream_id, command)?;
            }
            msg::AUDIO | msg::VIDEO | msg::DATA_AMF0 | msg::DATA_AMF3 => {
                self.handle_media(message.type_id, message.timestamp, message.payload);
            }
            msg::AGGREGATE => {
                for (type_id, timestamp, body) in msg::split_aggregate(message.timestamp, &message.payload) {
                    self.handle_media(type_id, timestamp, body);
                }
            }
            other => self.warn(format!("ignored RTMP message type {other}")),
        }
        Ok(())
    }

    fn handle_media(&mut self, type_id: u8, timestamp: u32, body: Bytes) {
        if !matches!(self.role, Role::Publishing { .. }) {
            self.warn(format!("media message type {type_id} before publish was accepted; dropped"));
            return;
        }
        let track = match type_id {
            msg::AUDIO => TrackKind::Audio,
            msg::VIDEO => TrackKind::Video,
            _ => TrackKind::Data,
        };
        let (dts, _) = self.normalizer.normalize(track, timestamp as u64);
        let frame = match type_id {
            msg::AUDIO => flv::audio_body_to_frame(dts, &body).map_err(|e| e.to_string()),
            msg::VIDEO => flv::video_body_to_frame(dts, &body).map_err(|e| e.to_string()),
            msg::DATA_AMF3 => flv::script_body_to_frame(dts, body.get(1..).unwrap_or(&[])).map_err(|e| e.to_string()),
            _ => flv::script_body_to_frame(dts, &body).map_err(|e| e.to_string()),
        };
        match frame {
            Ok(Some(frame)) => self.event(ServerEvent::Frame(frame)),
            Ok(None) => {}
            Err(e) => self.warn(format!("dropped media message: {e}")),
        }
    }

    fn result(&mut self, transaction_id: f64, values: Vec<Value>) {
        let mut all = vec![Value::String("_result".into()), Value::Number(transaction_id)];
        all.extend(values);
        msg::write_command(&mut self.out, &self.encoder, msg::CSID_COMMAND, 0, &all);
    }

    fn handle_command(&mut self, stream_id: u32, command: Command) -> Result<(), RtmpError> {
        match command.name.as_str() {
            "connect" => self.on_connect(command),
            "createStream" => {
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.saturating_add(1);
                self.result(command.transaction_id, vec![Value::Null, Value::Number(id as f64)]);
                Ok(())
            }
            "releaseStream" | "FCPublish" | "getStreamLength" | "checkBandwidth" | "_checkbw" => {
                if command.transaction_id != 0.0 {
                    self.result(command.transaction_id, vec![Value::Null, Value::Undefined]);
                }
                Ok(())
            }
            "publish" | "play" => self.on_publish_or_play(stream_id, command),
            "FCUnpublish" | "deleteStream" | "closeStream" => {
                match self.role {
                    Role::Publishing { .. } => self.event(ServerEvent::PublishStopped),
                    Role::Playing { .. } if command.name != "FCUnpublish" => self.event(ServerEvent::PlayStopped),
                    _ => return Ok(()),
                }
                if command.name != "FCUnpublish" || matches!(self.role, Role::Publishing { .. }) {
                    self.role = Role::Idle;
                }
                Ok(())
            }
            "pause" | "receiveAudio" | "receiveVideo" | "_result" | "_error" | "onStatus" | "onBWDone" | "@setDataFrame" => Ok(()),
            other => {
                self.warn(format!("ignored RTMP command {other:?}"));
                Ok(())
            }
        }
    }

    fn on_connect(&mut self, command: Command) -> Result<(), RtmpError> {
        if self.app.is_some() {
            return Err(RtmpError::Protocol("second connect on one connection".into()));
        }
        let app_field = command.object.get("app").and_then(|v| v.as_str()).unwrap_or("").trim_matches('/').to_string();
        let tc_url = command.object.get("tcUrl").and_then(|v| v.as_str()).unwrap_or("").to_string();
        let (app, params) = msg::split_query(&app_field);
        if app.is_empty() {
            return Err(RtmpError::Protocol("connect without an app name".into()));
        }
        msg::write_u32_control(&mut self.out, &self.encoder, msg::WINDOW_ACK_SIZE, self.config.window_ack_size);
        msg::write_peer_bandwidth(&mut self.out, &self.encoder, self.config.window_ack_size, 2);
        msg::write_u32_control(&mut self.out, &self.encoder, msg::SET_CHUNK_SIZE, self.config.chunk_size as u32);
        self.encoder.set_chunk_size(self.config.chunk_size);
        self.result(
            command.transaction_id,
            vec![
                Value::object([
                    ("fmsVer", Value::String("FMS/3,5,3,888".into())),
                    ("capabilities", Value::Number(127.0)),
                    ("mode", Value::Number(1.0)),
                ]),
                Value::object([
                    ("level", Value::String("status".into())),
                    ("code", Value::String("NetConnection.Connect.Success".into())),
                    ("description", Value::String("Connection succeeded.".into())),
                    ("objectEncoding", Value::Number(0.0)),
                ]),
            ],
        );
        self.app = Some((app.clone(), params.clone()));
        self.event(ServerEvent::Connected { app, tc_url, params });
        Ok(())
    }

    fn on_publish_or_play(&mut self, stream_id: u32, command: Command) -> Result<(), RtmpError> {
        let publish = command.name == "publish";
        let Some((app, app_params)) = self.app.clone() else {
            return Err(RtmpError::Protocol(format!("{} before connect", command.name)));
        };
        if self.role != Role::Idle || !self.pending.is_empty() {
            return Err(RtmpError::Protocol(format!("{} while a stream is already active", command.name)));
        }
        let raw_name = command.arg_str(0).unwrap_or("").trim_matches('/');
        let (stream, mut params) = msg::split_query(raw_name);
        params.extend(app_params);
        let request = self.next_request;
        self.next_request += 1;
        self.pending.insert(request, PendingRequest { publish, stream_id, stream: stream.clone() });
        if stream.is_empty() {
            self.reject(request, "empty stream name");
            return Ok(());
        }
        let event = if publish {
            ServerEvent::PublishRequested { request, app, stream, params }
        } else {
            ServerEvent::PlayRequested { request, app, stream, params }
        };
        self.event(event);
        Ok(())
    }

    /// Accepts a pending publish or play request.
    pub fn accept(&mut self, request: RequestId) {
        let Some(pending) = self.pending.remove(&request) else { return };
        let id = pending.stream_id;
        if pending.publish {
            self.role = Role::Publishing { stream_id: id };
            msg::write_on_status(&mut self.out, &self.encoder, id, "status", "NetStream.Publish.Start", &format!("Started publishing stream {}.", pending.stream));
        } else {
            self.role = Role::Playing { stream_id: id };
            msg::write_user_control(&mut self.out, &self.encoder, msg::UC_STREAM_BEGIN, id);
            msg::write_on_status(&mut self.out, &self.encoder, id, "status", "NetStream.Play.Reset", &format!("Playing and resetting stream {}.", pending.stream));
            msg::write_on_status(&mut self.out, &self.encoder, id, "status", "NetStream.Play.Start", &format!("Started playing stream {}.", pending.stream));
            msg::write_data(&mut self.out, &self.encoder, id, &[Value::String("|RtmpSampleAccess".into()), Value::Boolean(true), Value::Boolean(true)]);
        }
    }

    /// Rejects a pending request; the peer receives an error status with `reason`. The caller
    /// should flush the outputs and then close the connection.
    pub fn reject(&mut self, request: RequestId, reason: &str) {
        let code = match self.pending.get(&request) {
            Some(pending) if pending.publish => "NetStream.Publish.BadName",
            _ => "NetStream.Play.StreamNotFound",
        };
        self.reject_with(request, code, reason);
    }

    /// Rejects a pending request with a specific status code (e.g.
    /// `NetStream.Publish.Rejected` when the access policy refused).
    pub fn reject_with(&mut self, request: RequestId, code: &str, reason: &str) {
        let Some(pending) = self.pending.remove(&request) else { return };
        msg::write_on_status(&mut self.out, &self.encoder, pending.stream_id, "error", code, reason);
    }

    /// Answers a pending request with a redirect to `url` (see
    /// [`msg::write_redirect_status`]). The caller should flush and close.
    pub fn redirect(&mut self, request: RequestId, url: &str) {
        let Some(pending) = self.pending.remove(&request) else { return };
        msg::write_redirect_status(&mut self.out, &self.encoder, pending.stream_id, url);
    }

    /// True when `request` is a pending publish (false for a play or an unknown id).
    pub fn is_publish_request(&self, request: RequestId) -> bool {
        self.pending.get(&request).is_some_and(|p| p.publish)
    }

    /// For a playing session: the writer for its media.
    pub fn media_writer(&self) -> Option<MediaWriter> {
        match self.role {
            Role::Playing { stream_id } => Some(MediaWriter { encoder: self.encoder, stream_id }),
            _ => None,
        }
    }

    /// True while an accepted publish is active.
    pub fn is_publishing(&self) -> bool {
        matches!(self.role, Role::Publishing { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::{ClientConfig, ClientEvent, ClientMode, ClientOutput, ClientSession};
    use super::*;
    use crate::media::{Codec, Timebase};

    /// Moves bytes between a client and a server session until both are quiet; returns the
    /// events each side produced.
    fn pump(client: &mut ClientSession, server: &mut ServerSession, step: usize) -> (Vec<ClientEvent>, Vec<ServerEvent>) {
        let mut client_events = Vec::new();
        let mut server_events = Vec::new();
        loop {
            let mut moved = false;
            while let Some(output) = client.poll_output() {
                match output {
                    ClientOutput::Transmit(bytes) => {
                        for piece in bytes.chunks(step) {
                            server.handle_input(piece).unwrap();
                        }
                        moved = true;
                    }
                    ClientOutput::Event(e) => client_events.push(e),
                }
            }
            while let Some(output) = server.poll_output() {
                match output {
                    ServerOutput::Transmit(bytes) => {
                        for piece in bytes.chunks(step) {
                            client.handle_input(piece).unwrap();
                        }
                        moved = true;
                    }
                    ServerOutput::Event(e) => server_events.push(e),
                }
            }
            if !moved {
                return (client_events, server_events);
            }
        }
    }

    fn frame(dts: i64, track: TrackKind, codec: Codec, config: bool) -> MediaFrame {
        MediaFrame { track, codec, dts, pts: dts, timebase: Timebase::MILLIS, keyframe: true, config, payload: Bytes::from_static(&[0, 0, 0, 1, 0x65]) }
    }

    #[test]
    fn publish_flow_with_any_chunking() {
        for step in [1, 7, 1500, 100_000] {
            let mut client = ClientSession::new(ClientConfig::new("live", "rtmp://127.0.0.1/live", "cam?token=t", ClientMode::Publish));
            let mut server = ServerSession::new(ServerConfig::default());
            let (_, events) = pump(&mut client, &mut server, step);
            let request = events.iter().find_map(|e| match e {
                ServerEvent::PublishRequested { request, app, stream, params } => {
                    assert_eq!((app.as_str(), stream.as_str()), ("live", "cam"));
                    assert_eq!(params, &vec![("token".to_string(), "t".to_string())]);
                    Some(*request)
                }
                _ => None,
            });
            server.accept(request.expect("publish requested"));
            let (client_events, _) = pump(&mut client, &mut server, step);
            assert!(client_events.contains(&ClientEvent::Publishing), "step {step}: {client_events:?}");
            let mut video = frame(1000, TrackKind::Video, Codec::H264, false);
            video.pts = 1080;
            client.send_frame(&video);
            client.send_frame(&frame(0x1_0000_0010, TrackKind::Audio, Codec::Aac, false));
            let (_, events) = pump(&mut client, &mut server, step);
            let frames: Vec<_> = events.iter().filter_map(|e| if let ServerEvent::Frame(f) = e { Some(f.clone()) } else { None }).collect();
            assert_eq!(frames.len(), 2);
            assert_eq!(frames[0], video);
            // 0x1_0000_0010 travels as the 32-bit value 0x10 and is widened relative to the video.
            assert_eq!(frames[1].dts, 0x10);
        }
    }

    #[test]
    fn play_flow_and_rejection() {
        let mut client = ClientSession::new(ClientConfig::new("live", "rtmp://x/live", "s", ClientMode::Play));
        let mut server = ServerSession::new(ServerConfig::default());
        let (_, events) = pump(&mut client, &mut server, 4096);
        let request = events.iter().find_map(|e| if let ServerEvent::PlayRequested { request, .. } = e { Some(*request) } else { None }).unwrap();
        server.accept(request);
        let writer = server.media_writer().unwrap();
        let mut out = BytesMut::new();
        let config = frame(0, TrackKind::Video, Codec::H264, true);
        writer.write_frame(&mut out, &config);
        let (client_events, _) = pump(&mut client, &mut server, 4096);
        assert!(client_events.contains(&ClientEvent::Playing));
        client.handle_input(&out).unwrap();
        let mut got = None;
        while let Some(o) = client.poll_output() {
            if let ClientOutput::Event(ClientEvent::Frame(f)) = o {
                got = Some(f);
            }
        }
        assert_eq!(got, Some(config));

        let mut client = ClientSession::new(ClientConfig::new("live", "rtmp://x/live", "busy", ClientMode::Publish));
        let mut server = ServerSession::new(ServerConfig::default());
        let (_, events) = pump(&mut client, &mut server, 4096);
        let request = events.iter().find_map(|e| if let ServerEvent::PublishRequested { request, .. } = e { Some(*request) } else { None }).unwrap();
        server.reject(request, "stream live/busy is already being published");
        let (client_events, _) = pump(&mut client, &mut server, 4096);
        assert!(client_events.iter().any(|e| matches!(e, ClientEvent::Rejected { description, .. } if description.contains("already"))));
    }

    #[test]
    fn garbage_and_limits_are_errors_not_panics() {
        let mut server = ServerSession::new(ServerConfig::default());
        assert!(server.handle_input(&[0x06; 1537]).is_err());

        // A complete client handshake, then an absurd chunk size.
        let mut client = ClientSession::new(ClientConfig::new("live", "rtmp://x/live", "s", ClientMode::Play));
        let mut server = ServerSession::new(ServerConfig::default());
        let c0c1 = match client.poll_output() { Some(ClientOutput::Transmit(b)) => b, other => panic!("{other:?}") };
        server.handle_input(&c0c1).unwrap();
        while let Some(ServerOutput::Transmit(b)) = server.poll_output() {
            client.handle_input(&b).unwrap();
        }
        let c2 = match client.poll_output() { Some(ClientOutput::Transmit(b)) => b, other => panic!("{other:?}") };
        server.handle_input(&c2[..1536]).unwrap();
        assert!(server.handshake_done());
        let absurd = [0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(server.handle_input(&absurd), Err(RtmpError::Chunk(_))));
    }

    #[test]
    fn crafted_inputs_never_panic() {
        // Deterministic pseudo-random inputs after a valid handshake: every outcome must be
        // Ok or Err, never a panic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            let mut client = ClientSession::new(ClientConfig::new("live", "rtmp://x/live", "s", ClientMode::Publish));
            let mut server = ServerSession::new(ServerConfig::default());
            let c0c1 = match client.poll_output() { Some(ClientOutput::Transmit(b)) => b, _ => unreachable!() };
            server.handle_input(&c0c1).unwrap();
            server.handle_input(&[0u8; 1536]).unwrap();
            let len = (seed % 200) as usize + 1;
            let mut junk = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                junk.push(seed as u8);
            }
            let _ = server.handle_input(&junk);
            while server.poll_output().is_some() {}
        }
    }
}
