//! Supervision of one external process (ffmpeg), shared by transcoders and URL ingests.
//!
//! The supervisor is the task that owns the child: it starts it, parses `-progress pipe:1`
//! from its stdout, keeps the last lines of its stderr as the error when it exits, starts it
//! again after a capped exponential backoff (1 s doubling to 30 s; back to 1 s after a minute
//! of running), and kills it when told to stop. A binary that cannot be started is retried at
//! the slowest pace, so a missing ffmpeg is an error in the status, not a crash loop.

use estuary_transcode::ffmpeg::{Progress, ProgressParser};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// What happened to the child.
#[derive(Debug, Clone)]
pub enum ChildEvent {
    /// A child is running.
    Started {
        /// Its pid.
        pid: Option<u32>,
        /// How many children ran before it.
        restarts: u64,
    },
    /// A progress block.
    Progress(Progress),
    /// It ended (or could not start); another attempt follows after `retry_in`.
    Ended {
        /// Why.
        error: String,
        /// Whether the binary could not be run at all.
        spawn_failed: bool,
        /// When the next attempt is.
        retry_in: Duration,
    },
}

/// Runs `program args` until `stop` completes; returns the reason `stop` gave.
pub async fn supervise<F>(program: &str, args: &[String], mut on_event: impl FnMut(ChildEvent) + Send + 'static, stop: F) -> &'static str
where
    F: Future<Output = &'static str>,
{
    tokio::pin!(stop);
    let mut backoff = crate::node::supervision::Backoff::new(Duration::from_secs(1), Duration::from_secs(30), Duration::from_secs(60));
    let mut restarts = 0u64;
    let on_event = Arc::new(Mutex::new(move |e: ChildEvent| on_event(e)));
    let emit = |e: ChildEvent| (on_event.lock().unwrap_or_else(|p| p.into_inner()))(e);
    loop {
        let spawned = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let retry_in = Duration::from_secs(30);
                emit(ChildEvent::Ended { error: format!("cannot run {program}: {e} (install ffmpeg or set transcode.ffmpeg)"), spawn_failed: true, retry_in });
                tokio::select! {
                    _ = tokio::time::sleep(retry_in) => {
                        restarts += 1;
                        continue;
                    }
                    reason = &mut stop => return reason,
                }
            }
        };
        let started = Instant::now();
        emit(ChildEvent::Started { pid: child.id(), restarts });
        let progress = child.stdout.take().map(|stdout| {
            let on_event = on_event.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                let mut parser = ProgressParser::default();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(p) = parser.line(&line) {
                        (on_event.lock().unwrap_or_else(|e| e.into_inner()))(ChildEvent::Progress(p));
                    }
                }
            })
        });
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let errors = child.stderr.take().map(|stderr| {
            let tail = tail.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                    tail.push_back(line);
                    if tail.len() > 5 {
                        tail.pop_front();
                    }
                }
            })
        });
        let status = tokio::select! {
            status = child.wait() => status,
            reason = &mut stop => {
                let _ = child.kill().await;
                progress.inspect(|p| p.abort());
                errors.inspect(|e| e.abort());
                return reason;
            }
        };
        if let Some(errors) = errors {
            let _ = errors.await;
        }
        if let Some(progress) = progress {
            progress.abort();
        }
        let lines: Vec<String> = tail.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        let error = if lines.is_empty() { format!("{program} exited ({status})") } else { format!("{program} exited ({status}): {}", lines.join(" | ")) };
        if started.elapsed() > backoff.stable_after() {
            backoff.reset();
        }
        let retry_in = backoff.after_failure();
        emit(ChildEvent::Ended { error, spawn_failed: false, retry_in });
        tokio::select! {
            _ = tokio::time::sleep(retry_in) => {}
            reason = &mut stop => return reason,
        }
        restarts += 1;
    }
}
