//! `tokenim-loadgen`: starts two real `tokenim` processes on loopback, sends messages from A's
//! API at fixed rates and measures when each arrives on B's WebSocket event stream.
//! Reports latency percentiles, achieved throughput and both processes' RSS.
//!
//! Usage: tokenim-loadgen [--rates 100,1000] [--seconds 10] [--body-bytes 1024]
//!        tokenim-loadgen --relay-ingest 50000 [--batch 64]   (store requests to a relay
//!        process over libp2p)
//!        tokenim-loadgen --relay-drain 100000   (a recipient process drains its mailbox)
//!        tokenim-loadgen --group 99 [--group-messages 20]   (a 100-member group)
//!        tokenim-loadgen --file-mb 1024   (a file direct and through a relay, against a raw
//!        libp2p stream)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use tokenim_node::Client;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

mod file;
mod group;
mod relay;

#[derive(Debug, Parser)]
struct Args {
    /// Send rates to measure, messages per second.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    rates: Vec<u32>,
    /// Duration of each rate step.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Message body size.
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Instead of the API benchmark: start a relay process and send it this many 1 KiB-message
    /// envelopes over libp2p, counting receipted envelopes per second (receipts are verified
    /// after the clock stops: checking them is the senders' work, not the relay's).
    #[arg(long)]
    relay_ingest: Option<usize>,
    /// Envelopes per `store` request in --relay-ingest (a sender batches what it has queued
    /// for one mailbox, up to 256).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Instead of the API benchmark: three processes (relay, alice, bob). Bob goes offline,
    /// Alice sends this many messages (they wait on the relay), then Bob starts and drains
    /// them: reports the time until all are in his inbox and acknowledged at the relay.
    #[arg(long)]
    relay_drain: Option<usize>,
    /// `store` requests in flight in --relay-ingest.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Instead of the API benchmark: a group of this many members plus an owner, each a
    /// process; the owner sends `--group-messages` to it.
    #[arg(long)]
    group: Option<usize>,
    #[arg(long, default_value_t = 20)]
    group_messages: usize,
    /// Pause between two group messages, ms: short, the members' work for one message overlaps
    /// the next send (all processes share this machine's cores); long, each send is alone.
    #[arg(long, default_value_t = 50)]
    group_pace_ms: u64,
    /// Instead of the API benchmark: a file of this many MiB, direct and through a relay,
    /// against a raw libp2p stream.
    #[arg(long)]
    file_mb: Option<u64>,
    /// Internal: the raw-stream baseline's receiving process.
    #[arg(long, hide = true)]
    raw_sink: bool,
    /// The `tokenim` binary (default: next to this one).
    #[arg(long)]
    tokenim: Option<PathBuf>,
}

struct Proc {
    child: Child,
    client: Client,
}

async fn start(bin: &Path, dir: &Path, name: &str) -> Result<Proc> {
    start_with(bin, dir, name, &[]).await
}

async fn start_with(bin: &Path, dir: &Path, name: &str, extra: &[&str]) -> Result<Proc> {
    init(bin, dir, name)?;
    run(bin, dir, extra).await
}

fn init(bin: &Path, dir: &Path, name: &str) -> Result<()> {
    let out = std::process::Command::new(bin)
        .arg("--data-dir")
        .arg(dir)
        .args(["init", "--name", name])
        .output()?;
    if !out.status.success() {
        bail!("init: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Each of the two adds the other's contact card under the given name.
async fn befriend((x, x_name): (&Proc, &str), (y, y_name): (&Proc, &str)) -> Result<()> {
    for (from, to, name) in [(x, y, y_name), (y, x, x_name)] {
        let card = to.client.identity().await?["contact_card"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        from.client
            .post("/contacts", json!({ "card": card, "name": name }))
            .await?;
    }
    Ok(())
}

async fn run(bin: &Path, dir: &Path, extra: &[&str]) -> Result<Proc> {
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir)
        .args([
            "run",
            "--api",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let ready: Value = loop {
        let line = lines.next_line().await?.context("tokenim exited")?;
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["event"] == "ready"
        {
            break v;
        }
    };
    let token = std::fs::read_to_string(dir.join("api.token"))?
        .trim()
        .to_string();
    Ok(Proc {
        child,
        client: Client::with(ready["api"].as_str().context("api")?.parse()?, token),
    })
}

fn rss_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = match args.tokenim {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("tokenim"),
    };
    if args.raw_sink {
        return file::raw_sink().await;
    }
    let root = std::env::temp_dir().join(format!("tokenim-loadgen-{}", std::process::id()));
    if let Some(mb) = args.file_mb {
        let result = file::file_transfer(&bin, &root, mb).await;
        let _ = std::fs::remove_dir_all(&root);
        return result;
    }
    if let Some(n) = args.group {
        let result = group::group(&bin, &root, n, args.group_messages, args.group_pace_ms).await;
        let _ = std::fs::remove_dir_all(&root);
        return result;
    }
    if let Some(n) = args.relay_drain {
        let result = relay::relay_drain(&bin, &root, n).await;
        let _ = std::fs::remove_dir_all(&root);
        return result;
    }
    if let Some(n) = args.relay_ingest {
        let result = relay::relay_ingest(&bin, &root, n, args.batch, args.in_flight).await;
        let _ = std::fs::remove_dir_all(&root);
        return result;
    }
    let a = start(&bin, &root.join("a"), "a").await?;
    let b = start(&bin, &root.join("b"), "b").await?;
    befriend((&a, "a"), (&b, "b")).await?;
    // Let both settle before the idle reading.
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "idle RSS: a {} KiB, b {} KiB",
        rss_kib(a.child.id()),
        rss_kib(b.child.id())
    );

    // Warm up the session (handshake) so the steps measure steady state.
    let mut events = b.client.events().await?;
    a.client
        .post("/messages", json!({ "to": "b", "body": "warm-up" }))
        .await?;
    while let Some(ev) = events.next().await {
        if ev?["type"] == "message" {
            break;
        }
    }

    println!(
        "| rate (msg/s) | sent | received | achieved (msg/s) | p50 ms | p90 ms | p99 ms | max ms | RSS a / b (KiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &rate in &args.rates {
        let starts: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let total = (u64::from(rate) * args.seconds) as usize;
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
        let padding = "x".repeat(args.body_bytes.saturating_sub(24));
        let t0 = Instant::now();
        let sender = {
            let client = a.client.clone();
            let starts = starts.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let sem = Arc::new(tokio::sync::Semaphore::new(256));
                for i in 0..total {
                    tick.tick().await;
                    let body = format!("m{rate}-{i} {padding}");
                    let key = format!("m{rate}-{i}");
                    starts.lock().await.insert(key, Instant::now());
                    let client = client.clone();
                    let permit = sem.clone().acquire_owned().await;
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = client
                            .post("/messages", json!({ "to": "b", "body": body }))
                            .await
                        {
                            eprintln!("send failed: {e}");
                        }
                    });
                }
            })
        };
        let mut lat = Vec::with_capacity(total);
        let deadline = Instant::now() + Duration::from_secs(args.seconds + 30);
        while lat.len() < total && Instant::now() < deadline {
            let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), events.next()).await
            else {
                break;
            };
            let ev = ev?;
            if ev["type"] == "message" {
                let body = ev["message"]["body"].as_str().unwrap_or_default();
                let key = body.split(' ').next().unwrap_or_default();
                if let Some(t) = starts.lock().await.remove(key) {
                    lat.push(t.elapsed());
                }
            } else if ev["type"] == "lagged" {
                eprintln!("event stream lagged: {ev}");
            }
        }
        let elapsed = t0.elapsed();
        sender.await?;
        lat.sort();
        println!(
            "| {rate} | {total} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} / {} |",
            lat.len(),
            lat.len() as f64 / elapsed.as_secs_f64(),
            pct(&lat, 0.5),
            pct(&lat, 0.9),
            pct(&lat, 0.99),
            pct(&lat, 1.0),
            rss_kib(a.child.id()),
            rss_kib(b.child.id())
        );
    }
    drop(a);
    drop(b);
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// Polls `path` on `proc` (a load tool may poll) until `done` holds.
async fn poll_until(proc: &Proc, path: &str, done: impl Fn(&str) -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let text = proc.client.get_text(path).await?;
        if done(&text) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "gave up waiting on {path}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
