//! A throwaway `redis-server` (Debian's) on a free loopback port, without persistence and with
//! a password (so tests can check it never shows), for the cluster tests; killed when dropped.
//! It can be stopped and started again on the same port.

use crate::{free_port, Scratch};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running (or stopped) Redis.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl RedisServer {
    /// Starts one and waits until it answers.
    pub fn start(scratch: &Scratch) -> RedisServer {
        let mut server = RedisServer { port: free_port(), child: None, log: scratch.path("redis.log") };
        server.restart();
        server
    }

    /// The password it requires.
    pub const PASSWORD: &'static str = "cluster-test-secret";

    /// `redis://:<password>@127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}", Self::PASSWORD, self.port)
    }

    /// Starts it again (after [`RedisServer::kill`]), empty, on the same port.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("redis log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--requirepass", Self::PASSWORD])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis log"))
            .stderr(log)
            .spawn()
            .expect("redis-server (tests/run installs it with apt-get)");
        self.child = Some(child);
        let port = self.port;
        let up = crate::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                use std::io::{Read, Write};
                let mut answer = [0u8; 12];
                s.write_all(format!("AUTH {}\r\nPING\r\n", Self::PASSWORD).as_bytes()).is_ok() && s.read_exact(&mut answer).is_ok() && &answer == b"+OK\r\n+PONG\r\n"
            })
        });
        assert!(up, "redis-server did not answer on port {port}: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
