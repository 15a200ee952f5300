//! `estuary-registry-load`: the cluster registry's load, measured. Plays many nodes against
//! one Redis with the cluster directory's own code (`estuary_actors::cluster::Directory`):
//! each node claims its share of the streams, then beats (registration plus renewal of its
//! claims) every heartbeat for a while. Prints one JSON line: claims per second and claim
//! latency, beat latency, and the commands per second Redis itself counted.
//!
//! ```sh
//! redis-server --port 6390 --save '' --appendonly no &
//! cargo run --release -p estuary-tests --bin estuary-registry-load -- --redis redis://127.0.0.1:6390 --nodes 100 --streams 10000 --seconds 10
//! ```

use clap::Parser;
use estuary_actors::cluster::{ClusterSettings, Directory};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Plays N nodes' heartbeats and M streams' claims and renewals against one Redis")]
struct Args {
    /// Redis URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Nodes to play.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Streams, spread evenly over the nodes.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// How long the nodes beat.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Heartbeat period, ms.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
}

fn percentile(samples: &mut [f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    Some((samples[index] * 100.0).round() / 100.0)
}

async fn commands_processed(client: &redis::Client) -> Result<u64, String> {
    let mut connection = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
    let info: String = redis::cmd("INFO").arg("stats").query_async(&mut connection).await.map_err(|e| e.to_string())?;
    info.lines().find_map(|l| l.strip_prefix("total_commands_processed:")).and_then(|v| v.trim().parse().ok()).ok_or_else(|| "no total_commands_processed in INFO".into())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("estuary-registry-load: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    if args.nodes == 0 || args.streams == 0 || args.seconds == 0 {
        return Err("--nodes, --streams and --seconds must be at least 1".into());
    }
    let client = redis::Client::open(args.redis.as_str()).map_err(|e| e.to_string())?;
    let heartbeat = Duration::from_millis(args.heartbeat_ms);
    let nodes: Vec<Arc<Directory>> = (0..args.nodes)
        .map(|i| {
            let settings = ClusterSettings {
                role: "origin".into(),
                node_id: format!("load-{i}"),
                redis_url: args.redis.clone(),
                rtmp: format!("rtmp://10.0.{}.{}:1935", i / 250, i % 250),
                http: String::new(),
                srt: String::new(),
                api: String::new(),
                lease: heartbeat * 2 + Duration::from_secs(1),
                heartbeat,
                idle: Duration::from_secs(5),
                secret: String::new(),
                redirect: false,
            };
            Directory::new(settings, Arc::new(Default::default())).map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    let published: Vec<Arc<HashSet<String>>> = (0..args.nodes).map(|i| Arc::new((0..args.streams).filter(|s| s % args.nodes == i).map(|s| format!("__defaultVhost__/load/s{s}")).collect())).collect();

    // Registration (the first beat connects each node), then the claims, all nodes at once.
    for (node, mine) in nodes.iter().zip(&published) {
        node.beat(&HashSet::new(), 0, 0.0).await;
        let _ = mine;
    }
    let before = commands_processed(&client).await?;
    let started = Instant::now();
    let claims: Vec<_> = nodes
        .iter()
        .zip(&published)
        .map(|(node, mine)| {
            let (node, mine) = (node.clone(), mine.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(mine.len());
                let mut refused = 0usize;
                for stream in mine.iter() {
                    let at = Instant::now();
                    if node.claim(stream).await.is_err() {
                        refused += 1;
                    }
                    latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                }
                (latencies, refused)
            })
        })
        .collect();
    let mut claim_ms = Vec::new();
    let mut refused = 0;
    for task in claims {
        let (latencies, r) = task.await.map_err(|e| e.to_string())?;
        claim_ms.extend(latencies);
        refused += r;
    }
    let claim_elapsed = started.elapsed().as_secs_f64();

    // Beats: every node registers and renews all its claims every heartbeat.
    let beat_started = Instant::now();
    let beats: Vec<_> = nodes
        .iter()
        .zip(&published)
        .map(|(node, mine)| {
            let (node, mine) = (node.clone(), mine.clone());
            let seconds = args.seconds;
            tokio::spawn(async move {
                let mut every = tokio::time::interval(heartbeat);
                let mut latencies = Vec::new();
                let until = Instant::now() + Duration::from_secs(seconds);
                while Instant::now() < until {
                    every.tick().await;
                    let at = Instant::now();
                    node.beat(&mine, 0, 0.0).await;
                    latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                }
                latencies
            })
        })
        .collect();
    let mut beat_ms = Vec::new();
    for task in beats {
        beat_ms.extend(task.await.map_err(|e| e.to_string())?);
    }
    let beat_elapsed = beat_started.elapsed().as_secs_f64();
    let after = commands_processed(&client).await?;
    let healthy = nodes.iter().filter(|n| n.health().0).count();
    for node in &nodes {
        node.leave().await;
    }
    let total_elapsed = claim_elapsed + beat_elapsed;
    println!(
        "{}",
        serde_json::json!({
            "nodes": args.nodes,
            "streams": args.streams,
            "heartbeat_ms": args.heartbeat_ms,
            "claims": claim_ms.len(),
            "claims_refused": refused,
            "claims_per_s": (claim_ms.len() as f64 / claim_elapsed).round(),
            "claim_ms_p50": percentile(&mut claim_ms, 0.5),
            "claim_ms_p99": percentile(&mut claim_ms, 0.99),
            "beats": beat_ms.len(),
            "beat_ms_p50": percentile(&mut beat_ms, 0.5),
            "beat_ms_p99": percentile(&mut beat_ms, 0.99),
            "redis_commands_per_s": ((after - before) as f64 / total_elapsed).round(),
            "nodes_healthy_at_end": healthy,
        })
    );
    Ok(())
}
