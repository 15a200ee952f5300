//! The floor of the delivery benchmark: about the least a server can do to serve RTMP
//! players of one stream. One publisher's frames are chunked once into a shared batch; on
//! every tick (the node's merge interval) the same batch goes to every player in one write.
//! A player starts at the first keyframe after it joined, with the stream's headers. There is
//! no GOP cache, no slow-player policy, no accounting: a player keeps only the bytes its
//! socket did not take (and is dropped past 8 MiB of them).
//!
//! `tests/bench/run` runs it pinned to the same core as the servers, and prints Estuary's CPU
//! as a ratio to it.
//!
//! ```sh
//! target/release/estuary-floor --listen 127.0.0.1:19365 --merge-ms 50
//! ```

use bytes::{Bytes, BytesMut};
use clap::Parser;
use estuary_protocols::rtmp::server::{MediaWriter, ServerConfig, ServerEvent, ServerOutput, ServerSession};
use estuary_protocols::media::TrackKind;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(about = "Writes one RTMP publisher's frames to every player at a fixed cadence, with nothing else (the benchmark's floor)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:19365")]
    listen: String,
    /// Write interval, ms (the node's stream.write_merge_ms).
    #[arg(long, default_value_t = 50)]
    merge_ms: u64,
}

/// Chunk size toward players, as the node's default.
const CHUNK_SIZE: usize = 4096;
/// Bytes a player may owe before it is dropped.
const MAX_PENDING: usize = 8 << 20;

struct Player {
    socket: OwnedWriteHalf,
    pending: VecDeque<Bytes>,
    pending_len: usize,
}

#[derive(Default)]
struct Shared {
    /// Metadata and sequence headers, as written to players.
    metadata: Option<Bytes>,
    video_config: Option<Bytes>,
    audio_config: Option<Bytes>,
    /// Frames since the last tick.
    batch: BytesMut,
    /// Where the first keyframe of the batch starts.
    batch_keyframe: Option<usize>,
    players: Vec<Player>,
    waiting: Vec<OwnedWriteHalf>,
}

impl Player {
    /// Writes `bytes` after whatever is still owed; false when the player is gone.
    fn send(&mut self, bytes: Bytes) -> bool {
        if self.pending.is_empty() {
            match self.socket.try_write(&bytes) {
                Ok(n) if n == bytes.len() => return true,
                Ok(n) => self.push(bytes.slice(n..)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.push(bytes),
                Err(_) => return false,
            }
            return self.pending_len <= MAX_PENDING;
        }
        self.push(bytes);
        let slices: Vec<IoSlice<'_>> = self.pending.iter().take(256).map(|b| IoSlice::new(b)).collect();
        match self.socket.try_write_vectored(&slices) {
            Ok(mut n) => {
                self.pending_len -= n;
                while n > 0 {
                    let Some(front) = self.pending.front_mut() else { break };
                    if front.len() <= n {
                        n -= front.len();
                        self.pending.pop_front();
                    } else {
                        let _ = front.split_to(n);
                        n = 0;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
        self.pending_len <= MAX_PENDING
    }

    fn push(&mut self, bytes: Bytes) {
        self.pending_len += bytes.len();
        self.pending.push_back(bytes);
    }
}

fn tick(shared: &mut Shared) {
    let batch = shared.batch.split().freeze();
    let keyframe = shared.batch_keyframe.take();
    if batch.is_empty() {
        return;
    }
    shared.players.retain_mut(|player| player.send(batch.clone()));
    if let Some(at) = keyframe {
        let headers: Vec<Bytes> = [&shared.metadata, &shared.video_config, &shared.audio_config].into_iter().flatten().cloned().collect();
        for socket in shared.waiting.drain(..) {
            let mut player = Player { socket, pending: VecDeque::new(), pending_len: 0 };
            let mut alive = true;
            for bytes in headers.iter().cloned().chain([batch.slice(at..)]) {
                alive &= player.send(bytes);
            }
            if alive {
                shared.players.push(player);
            }
        }
    }
}

async fn connection(stream: TcpStream, shared: Rc<RefCell<Shared>>) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let mut session = ServerSession::new(ServerConfig::default());
    let shared_writer = MediaWriter::new(CHUNK_SIZE, 1);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match read.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if session.handle_input(&buf[..n]).is_err() {
            return;
        }
        while let Some(output) = session.poll_output() {
            match output {
                ServerOutput::Transmit(bytes) => {
                    if write.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                ServerOutput::Event(ServerEvent::PublishRequested { request, .. }) => session.accept(request),
                ServerOutput::Event(ServerEvent::PlayRequested { request, .. }) => {
                    session.accept(request);
                    while let Some(ServerOutput::Transmit(bytes)) = session.poll_output() {
                        if write.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    if session.media_writer().map(|w| w.key()) != Some(shared_writer.key()) {
                        eprintln!("floor: a player with another chunk size or stream id; closing it");
                        return;
                    }
                    shared.borrow_mut().waiting.push(write);
                    // The write half now belongs to the tick; keep reading until the peer goes.
                    loop {
                        match read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if session.handle_input(&buf[..n]).is_err() {
                                    return;
                                }
                                while session.poll_output().is_some() {}
                            }
                        }
                    }
                }
                ServerOutput::Event(ServerEvent::Frame(frame)) => {
                    let mut shared = shared.borrow_mut();
                    let mut bytes = BytesMut::new();
                    shared_writer.write_frame(&mut bytes, &frame);
                    let bytes = bytes.freeze();
                    match (frame.track, frame.config) {
                        (TrackKind::Video, true) => shared.video_config = Some(bytes.clone()),
                        (TrackKind::Audio, true) => shared.audio_config = Some(bytes.clone()),
                        (TrackKind::Data, _) => shared.metadata = Some(bytes.clone()),
                        _ => {}
                    }
                    if frame.is_video_keyframe() && shared.batch_keyframe.is_none() {
                        shared.batch_keyframe = Some(shared.batch.len());
                    }
                    shared.batch.extend_from_slice(&bytes);
                }
                ServerOutput::Event(_) => {}
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    if args.merge_ms == 0 {
        eprintln!("--merge-ms must be at least 1");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = match TcpListener::bind(&args.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("floor: cannot listen on {}: {e}", args.listen);
                std::process::exit(1);
            }
        };
        eprintln!("floor listening on {} (ticks every {} ms)", args.listen, args.merge_ms);
        let shared = Rc::new(RefCell::new(Shared::default()));
        let ticker = shared.clone();
        tokio::task::spawn_local(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(args.merge_ms));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                tick(&mut ticker.borrow_mut());
            }
        });
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::task::spawn_local(connection(stream, shared.clone()));
            }
        }
    });
}
