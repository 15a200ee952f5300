//! RTMP over a plain socket, for what ffmpeg cannot do on purpose: stop reading, send
//! garbage, break limits. The handshake and session logic are Estuary's sans-IO client, which
//! is itself tested against the server sessions with byte vectors; here it only gets a
//! connection to the point where the test misbehaves.

use estuary_protocols::rtmp::client::{ClientConfig, ClientEvent, ClientMode, ClientOutput, ClientSession};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Connects to the node's RTMP port.
pub fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to RTMP port");
    stream.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
    stream
}

fn pump(stream: &mut TcpStream, session: &mut ClientSession, until: impl Fn(&ClientEvent) -> bool, timeout: Duration) -> Result<Vec<ClientEvent>, String> {
    let deadline = Instant::now() + timeout;
    let mut events = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(output) = session.poll_output() {
            match output {
                ClientOutput::Transmit(bytes) => stream.write_all(&bytes).map_err(|e| e.to_string())?,
                ClientOutput::Event(event) => {
                    let done = until(&event);
                    events.push(event);
                    if done {
                        return Ok(events);
                    }
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!("timed out; events so far: {events:?}"));
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(format!("server closed the connection; events: {events:?}")),
            Ok(n) => session.handle_input(&buf[..n]).map_err(|e| e.to_string())?,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Completes the handshake and `connect`, then returns the socket.
pub fn connected(port: u16, app: &str) -> TcpStream {
    let mut stream = connect(port);
    let config = ClientConfig::new(app, &format!("rtmp://127.0.0.1:{port}/{app}"), "x", ClientMode::Play);
    let mut session = ClientSession::new(config);
    pump(&mut stream, &mut session, |e| *e == ClientEvent::Connected, Duration::from_secs(10)).expect("RTMP connect");
    stream
}

/// Starts playing `app/stream` and returns the socket as soon as playback started. The
/// caller may then simply stop reading.
pub fn playing(port: u16, app: &str, stream_name: &str) -> TcpStream {
    let mut stream = connect(port);
    let config = ClientConfig::new(app, &format!("rtmp://127.0.0.1:{port}/{app}"), stream_name, ClientMode::Play);
    let mut session = ClientSession::new(config);
    pump(&mut stream, &mut session, |e| *e == ClientEvent::Playing, Duration::from_secs(10)).expect("RTMP play");
    stream
}

/// Asks to play `app/stream` and returns the server's answer: `Ok(())` once playing, or the
/// events up to the refusal as the error text (a refused or redirected play).
pub fn try_play(port: u16, app: &str, stream_name: &str) -> Result<(), String> {
    let mut stream = connect(port);
    let config = ClientConfig::new(app, &format!("rtmp://127.0.0.1:{port}/{app}"), stream_name, ClientMode::Play);
    let mut session = ClientSession::new(config);
    pump(&mut stream, &mut session, |e| *e == ClientEvent::Playing || matches!(e, ClientEvent::Rejected { .. }), Duration::from_secs(10)).and_then(|events| {
        if events.iter().any(|e| *e == ClientEvent::Playing) {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    })
}

/// Reads until the server closes the connection; returns the bytes read, or `None` if it was
/// still open after `timeout`.
pub fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> Option<u64> {
    let deadline = Instant::now() + timeout;
    let mut total = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return Some(total),
            Ok(n) => total += n as u64,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(total),
        }
    }
    None
}

/// A publisher driven frame by frame: for inputs no encoder makes (huge frames, crafted
/// sequences).
pub struct Publisher {
    stream: TcpStream,
    session: ClientSession,
}

impl Publisher {
    /// Connects and publishes `app/stream`; returns once the server accepted the publish.
    pub fn start(port: u16, app: &str, stream_name: &str) -> Publisher {
        let mut stream = connect(port);
        let config = ClientConfig::new(app, &format!("rtmp://127.0.0.1:{port}/{app}"), stream_name, ClientMode::Publish);
        let mut session = ClientSession::new(config);
        pump(&mut stream, &mut session, |e| *e == ClientEvent::Publishing, Duration::from_secs(10)).expect("RTMP publish");
        Publisher { stream, session }
    }

    /// Sends one frame; an error when the server closed the connection.
    pub fn send(&mut self, frame: &estuary_protocols::media::MediaFrame) -> std::io::Result<()> {
        self.session.send_frame(frame);
        while let Some(output) = self.session.poll_output() {
            if let ClientOutput::Transmit(bytes) = output {
                self.stream.write_all(&bytes)?;
            }
        }
        // Drain what the server sent (acknowledgements) so neither side stalls.
        let mut buf = [0u8; 4096];
        self.stream.set_nonblocking(true)?;
        while let Ok(n) = self.stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = self.session.handle_input(&buf[..n]);
        }
        self.stream.set_nonblocking(false)?;
        Ok(())
    }
}
