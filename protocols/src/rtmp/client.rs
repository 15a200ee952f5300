//! The client side of an RTMP connection, for publishing (forwarders, the load tool's
//! synthetic publisher) and playing (edge pullers, the load tool's players).
//!
//! ```text
//! Handshaking --S0S1S2--> Connecting (connect sent) --_result--> Creating (createStream sent)
//!   --_result(stream id)--> Starting (publish/play sent) --onStatus *.Start--> Publishing | Playing
//! any state --_error / onStatus level=error--> Rejected
//! ```

use super::chunk::{ChunkDecoder, ChunkEncoder};
use super::message::{self as msg, Command};
use super::server::MediaWriter;
use super::RtmpError;
use crate::amf0::Value;
use crate::container::flv;
use crate::media::{MediaFrame, TimestampNormalizer, TrackKind};
use bytes::{Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, PeerType};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Publish or play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    /// Send media.
    Publish,
    /// Receive media.
    Play,
}

/// What to connect to.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Application (with its query, if any).
    pub app: String,
    /// `tcUrl` to send.
    pub tc_url: String,
    /// Stream name (with its query, if any).
    pub stream: String,
    /// Publish or play.
    pub mode: ClientMode,
    /// Outgoing chunk size.
    pub chunk_size: usize,
    /// Largest message accepted from the server.
    pub max_message_size: usize,
}

impl ClientConfig {
    /// A config with default chunk size (4096) and message limit (8 MiB).
    pub fn new(app: &str, tc_url: &str, stream: &str, mode: ClientMode) -> Self {
        ClientConfig { app: app.into(), tc_url: tc_url.into(), stream: stream.into(), mode, chunk_size: 4096, max_message_size: 8 << 20 }
    }
}

/// What the client session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `connect` succeeded.
    Connected,
    /// Publishing was accepted; frames may be sent.
    Publishing,
    /// Playback started; frames will arrive.
    Playing,
    /// The server refused.
    Rejected {
        /// Status code (e.g. `NetStream.Publish.BadName`).
        code: String,
        /// The server's description.
        description: String,
    },
    /// A frame received while playing.
    Frame(MediaFrame),
    /// Any other status the server sent.
    Status {
        /// Status code.
        code: String,
    },
}

/// One output of the client session.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientOutput {
    /// Bytes to send.
    Transmit(Bytes),
    /// An event.
    Event(ClientEvent),
}

const TX_CONNECT: f64 = 1.0;
const TX_CREATE_STREAM: f64 = 4.0;

/// The sans-IO client session.
pub struct ClientSession {
    config: ClientConfig,
    handshake: Option<Box<Handshake>>,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    out: BytesMut,
    queue: VecDeque<ClientOutput>,
    stream_id: Option<u32>,
    active: bool,
    normalizer: TimestampNormalizer,
}

impl ClientSession {
    /// A session whose first output is C0 and C1.
    pub fn new(config: ClientConfig) -> Self {
        let mut handshake = Box::new(Handshake::new(PeerType::Client));
        let mut out = BytesMut::new();
        // Generating C0C1 only fills a buffer with the time and random bytes.
        if let Ok(Ok(c0c1)) = catch_unwind(AssertUnwindSafe(|| handshake.generate_outbound_p0_and_p1())) {
            out.extend_from_slice(&c0c1);
        }
        ClientSession {
            decoder: ChunkDecoder::new(config.max_message_size),
            encoder: ChunkEncoder::new(),
            config,
            handshake: Some(handshake),
            out,
            queue: VecDeque::new(),
            stream_id: None,
            active: false,
            normalizer: TimestampNormalizer::rtmp(),
        }
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        if self.queue.is_empty() && !self.out.is_empty() {
            self.queue.push_back(ClientOutput::Transmit(self.out.split().freeze()));
        }
        self.queue.pop_front()
    }

    fn event(&mut self, event: ClientEvent) {
        if !self.out.is_empty() {
            self.queue.push_back(ClientOutput::Transmit(self.out.split().freeze()));
        }
        self.queue.push_back(ClientOutput::Event(event));
    }

    /// Feeds bytes from the server.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        let mut data = data;
        let leftover;
        if let Some(handshake) = self.handshake.as_mut() {
            match super::drive_handshake(handshake, data, &mut self.out)? {
                None => return Ok(()),
                Some(remaining) => {
                    self.handshake = None;
                    self.send_connect();
                    leftover = remaining;
                    data = &leftover;
                }
            }
        }
        self.decoder.push(data);
        while let Some(message) = self.decoder.next_message()? {
            match message.type_id {
                msg::SET_CHUNK_SIZE => {
                    let size = msg::parse_u32(&message.payload).unwrap_or(0);
                    self.decoder.set_chunk_size(size as u64)?;
                }
                msg::USER_CONTROL => {
                    if let Some((msg::UC_PING_REQUEST, value)) = msg::parse_user_control(&message.payload) {
                        msg::write_user_control(&mut self.out, &self.encoder, msg::UC_PING_RESPONSE, value);
                    }
                }
                msg::COMMAND_AMF0 | msg::COMMAND_AMF3 => {
                    let command = Command::parse(message.type_id, &message.payload).map_err(|e| RtmpError::Malformed {
                        what: "command",
                        offset: 0,
                        detail: e.to_string(),
                    })?;
                    self.on_command(command);
                }
                msg::AUDIO | msg::VIDEO | msg::DATA_AMF0 if self.active && self.config.mode == ClientMode::Play => {
                    let track = match message.type_id {
                        msg::AUDIO => TrackKind::Audio,
                        msg::VIDEO => TrackKind::Video,
                        _ => TrackKind::Data,
                    };
                    let (dts, _) = self.normalizer.normalize(track, message.timestamp as u64);
                    let frame = match message.type_id {
                        msg::AUDIO => flv::audio_body_to_frame(dts, &message.payload).ok().flatten(),
                        msg::VIDEO => flv::video_body_to_frame(dts, &message.payload).ok().flatten(),
                        _ => flv::script_body_to_frame(dts, &message.payload).ok().flatten(),
                    };
                    if let Some(frame) = frame {
                        self.event(ClientEvent::Frame(frame));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn send_connect(&mut self) {
        msg::write_u32_control(&mut self.out, &self.encoder, msg::SET_CHUNK_SIZE, self.config.chunk_size as u32);
        self.encoder.set_chunk_size(self.config.chunk_size);
        let values = [
            Value::String("connect".into()),
            Value::Number(TX_CONNECT),
            Value::object([
                ("app", Value::String(self.config.app.clone())),
                ("type", Value::String("nonprivate".into())),
                ("flashVer", Value::String("FMLE/3.0 (compatible; Estuary)".into())),
                ("tcUrl", Value::String(self.config.tc_url.clone())),
            ]),
        ];
        msg::write_command(&mut self.out, &self.encoder, msg::CSID_COMMAND, 0, &values);
    }

    fn on_command(&mut self, command: Command) {
        match command.name.as_str() {
            "_result" if command.transaction_id == TX_CONNECT => {
                self.event(ClientEvent::Connected);
                if self.config.mode == ClientMode::Publish {
                    for (tx, name) in [(2.0, "releaseStream"), (3.0, "FCPublish")] {
                        let values = [Value::String(name.into()), Value::Number(tx), Value::Null, Value::String(self.config.stream.clone())];
                        msg::write_command(&mut self.out, &self.encoder, msg::CSID_COMMAND, 0, &values);
                    }
                }
                let values = [Value::String("createStream".into()), Value::Number(TX_CREATE_STREAM), Value::Null];
                msg::write_command(&mut self.out, &self.encoder, msg::CSID_COMMAND, 0, &values);
            }
            "_result" if command.transaction_id == TX_CREATE_STREAM => {
                let id = command.args.first().and_then(|v| v.as_f64()).unwrap_or(1.0) as u32;
                self.stream_id = Some(id);
                let stream = Value::String(self.config.stream.clone());
                let values = match self.config.mode {
                    ClientMode::Publish => vec![Value::String("publish".into()), Value::Number(5.0), Value::Null, stream, Value::String("live".into())],
                    ClientMode::Play => vec![Value::String("play".into()), Value::Number(5.0), Value::Null, stream, Value::Number(-2000.0)],
                };
                msg::write_command(&mut self.out, &self.encoder, msg::CSID_STREAM, id, &values);
                if self.config.mode == ClientMode::Play {
                    let mut body = [0u8; 10];
                    body[..2].copy_from_slice(&msg::UC_SET_BUFFER_LENGTH.to_be_bytes());
                    body[2..6].copy_from_slice(&id.to_be_bytes());
                    body[6..].copy_from_slice(&1000u32.to_be_bytes());
                    self.encoder.write(&mut self.out, msg::CSID_CONTROL, 0, msg::USER_CONTROL, 0, &[&body]);
                }
            }
            "_error" => {
                let description = command.args.first().and_then(|v| v.get("description")).and_then(|v| v.as_str()).unwrap_or("").to_string();
                let code = command.args.first().and_then(|v| v.get("code")).and_then(|v| v.as_str()).unwrap_or("_error").to_string();
                self.event(ClientEvent::Rejected { code, description });
            }
            "onStatus" => {
                let info = command.args.first().cloned().unwrap_or(Value::Null);
                let code = info.get("code").and_then(|v| v.as_str()).unwrap_or("").to_string();
                let level = info.get("level").and_then(|v| v.as_str()).unwrap_or("");
                if level == "error" {
                    let description = info.get("description").and_then(|v| v.as_str()).unwrap_or("").to_string();
                    self.event(ClientEvent::Rejected { code, description });
                } else if code == "NetStream.Publish.Start" {
                    self.active = true;
                    self.event(ClientEvent::Publishing);
                } else if code == "NetStream.Play.Start" {
                    self.active = true;
                    self.event(ClientEvent::Playing);
                } else {
                    self.event(ClientEvent::Status { code });
                }
            }
            _ => {}
        }
    }

    /// Queues a frame for sending (publish mode, after [`ClientEvent::Publishing`]).
    pub fn send_frame(&mut self, frame: &MediaFrame) {
        if let Some(id) = self.stream_id {
            MediaWriter::new(self.encoder.chunk_size(), id).write_frame(&mut self.out, frame);
        }
    }
}
