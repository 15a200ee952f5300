//! A tiny HTTP server standing in for an operator's hook backend: it records every callback
//! body and answers with a decision computed from it.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running hook server.
pub struct HookServer {
    /// Its port.
    pub port: u16,
    calls: Arc<Mutex<Vec<Value>>>,
}

impl HookServer {
    /// Starts a server whose answer body for each call is `decide(body)` (`"0"` allows).
    pub fn start(decide: impl Fn(&Value) -> String + Send + Sync + 'static) -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hook server");
        let port = listener.local_addr().expect("address").port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = calls.clone();
        let decide = Arc::new(decide);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let recorded = recorded.clone();
                let decide = decide.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut raw = Vec::new();
                    let mut buf = [0u8; 4096];
                    let body = loop {
                        let Ok(n) = stream.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        raw.extend_from_slice(&buf[..n]);
                        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
                        let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                        if raw.len() >= split + 4 + length {
                            break raw[split + 4..split + 4 + length].to_vec();
                        }
                    };
                    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let answer = decide(&value);
                    recorded.lock().unwrap_or_else(|e| e.into_inner()).push(value);
                    let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len());
                });
            }
        });
        HookServer { port, calls }
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Bodies received so far.
    pub fn calls(&self) -> Vec<Value> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Bodies of one action (`on_publish`, ...).
    pub fn calls_of(&self, action: &str) -> Vec<Value> {
        self.calls().into_iter().filter(|c| c["action"] == action).collect()
    }
}
