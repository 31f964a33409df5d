//! `--file-mb N`: a file of N MiB between two `tokenim` processes on loopback, direct and
//! through a relay (the sender gone before the recipient fetches), against a raw libp2p
//! stream carrying the same bytes between two processes. Reports MB/s and each process's idle
//! and peak RSS.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, StreamProtocol, SwarmBuilder, noise, tcp, yamux};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use super::{Proc, befriend, rss_kib, run, start, start_with};

const RAW: StreamProtocol = StreamProtocol::new("/tokenim-bench/raw/1.0.0");
/// Bytes per write of the raw baseline (a chunk's size, as the file path sends).
const WRITE: usize = 256 * 1024;

/// Peak resident set of a process so far (`VmHWM`), KiB.
fn peak_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn raw_swarm() -> Result<libp2p::Swarm<libp2p_stream::Behaviour>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// The baseline's receiving process (`--raw-sink`): reads every stream to its end, answers
/// one byte.
pub(crate) async fn raw_sink() -> Result<()> {
    let mut swarm = raw_swarm()?;
    let mut incoming = swarm.behaviour().new_control().accept(RAW)?;
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let peer = *swarm.local_peer_id();
    let addr = loop {
        if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
            swarm.select_next_some().await
        {
            break address;
        }
    };
    println!("{}", json!({ "addr": format!("{addr}/p2p/{peer}") }));
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; WRITE];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                let _ = stream.write_all(b"k").await;
                let _ = stream.close().await;
            });
        }
    });
    loop {
        swarm.select_next_some().await;
    }
}

/// `bytes` over one raw stream to a `--raw-sink` process: seconds, and the sink's peak RSS.
async fn raw_baseline(bytes: u64) -> Result<(Duration, u64, u64)> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--raw-sink")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let line = lines.next_line().await?.context("raw sink exited")?;
    let addr: Multiaddr = serde_json::from_str::<Value>(&line)?["addr"]
        .as_str()
        .context("addr")?
        .parse()?;
    let peer = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .context("sink peer id")?;
    let idle = rss_kib(child.id());
    let mut swarm = raw_swarm()?;
    let mut control = swarm.behaviour().new_control();
    swarm.dial(addr)?;
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let mut stream = control.open_stream(peer, RAW).await?;
    let data = vec![0x5au8; WRITE];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = WRITE.min((bytes - sent) as usize);
        stream.write_all(&data[..n]).await?;
        sent += n as u64;
    }
    stream.close().await?;
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).await?;
    let took = t0.elapsed();
    Ok((took, idle, peak_kib(child.id())))
}

/// Writes `bytes` of data quickly (not compressible in any way the transfer could exploit: it
/// is encrypted anyway).
fn write_file(path: &Path, bytes: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut left = bytes;
    while left > 0 {
        for b in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let n = (block.len() as u64).min(left) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// Sends the file at `path` from `a` to `to` and waits until `b` holds it verified: the
/// time from `b` asking for it to `complete`.
async fn fetch_at(b: &Proc, body: &str) -> Result<(String, Duration)> {
    let id = loop {
        let page = b.client.get("/messages").await?;
        let found = page["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["body"] == body)
            .and_then(|m| m["attachments"][0]["id"].as_str().map(str::to_owned));
        if let Some(id) = found {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let t0 = Instant::now();
    b.client
        .post(&format!("/files/{id}/download"), json!({}))
        .await?;
    loop {
        let s = b.client.get(&format!("/files/{id}/status")).await?;
        match s["state"].as_str() {
            Some("complete") => return Ok((id, t0.elapsed())),
            Some("failed") => bail!("download failed: {s}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

pub(crate) async fn file_transfer(bin: &Path, root: &Path, mb: u64) -> Result<()> {
    let bytes = mb * 1024 * 1024;
    std::fs::create_dir_all(root)?;
    let path = root.join("payload.bin");
    write_file(&path, bytes)?;
    println!("file of {mb} MiB ({bytes} bytes) on loopback\n");
    println!(
        "| path | MB/s | time s | sender RSS idle / peak (MiB) | receiver RSS idle / peak (MiB) |"
    );
    println!("|---|---|---|---|---|");
    let mib = |k: u64| k / 1024;

    let (took, sink_idle, sink_peak) = raw_baseline(bytes).await?;
    let raw = mb_per_s(bytes, took);
    println!(
        "| raw libp2p stream (TCP, Noise, Yamux) | {raw:.0} | {:.2} | – | {} / {} |",
        took.as_secs_f64(),
        mib(sink_idle),
        mib(sink_peak)
    );

    // Direct: the recipient fetches from the sender's node.
    let a = start(bin, &root.join("a"), "a").await?;
    let b = start(bin, &root.join("b"), "b").await?;
    befriend((&a, "a"), (&b, "b")).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a_idle, b_idle) = (rss_kib(a.child.id()), rss_kib(b.child.id()));
    let t0 = Instant::now();
    let file = a.client.upload_file(&path).await?;
    let upload = t0.elapsed();
    a.client
        .post(
            "/messages",
            json!({ "to": "b", "body": "direct", "attachments": [file["id"]] }),
        )
        .await?;
    let (_, took) = fetch_at(&b, "direct").await?;
    let direct = mb_per_s(bytes, took);
    println!(
        "| TokenIM direct | {direct:.0} ({:.0} % of raw) | {:.2} | {} / {} | {} / {} |",
        100.0 * direct / raw,
        took.as_secs_f64(),
        mib(a_idle),
        mib(peak_kib(a.child.id())),
        mib(b_idle),
        mib(peak_kib(b.child.id()))
    );
    println!(
        "| (upload into the sender's node) | {:.0} | {:.2} | | |",
        mb_per_s(bytes, upload),
        upload.as_secs_f64()
    );
    drop((a, b));

    // Through a relay: the recipient is offline, the sender leaves the file at its relay and
    // goes; the recipient comes back and fetches from the relay.
    let relay = start_with(bin, &root.join("relay"), "relay", &["--relay"]).await?;
    let id = relay.client.identity().await?;
    let relay_addr = format!(
        "{}/p2p/{}",
        id["listen_addrs"][0].as_str().context("addr")?,
        id["peer_id"].as_str().context("peer id")?
    );
    let home = ["--home-relay", relay_addr.as_str()];
    let a = start(bin, &root.join("a2"), "a2").await?;
    let c = start_with(bin, &root.join("c"), "c", &home).await?;
    befriend((&a, "a"), (&c, "c")).await?;
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let file = a.client.upload_file(&path).await?;
    let t0 = Instant::now();
    a.client
        .post(
            "/messages",
            json!({ "to": "c", "body": "via relay", "attachments": [file["id"]] }),
        )
        .await?;
    loop {
        let s = relay.client.get("/relay/stats").await?;
        if s["held_file_bytes"].as_u64().unwrap_or(0) >= bytes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let push = t0.elapsed();
    let a_peak = peak_kib(a.child.id());
    drop(a);
    let relay_idle = rss_kib(relay.child.id());
    let c = run(bin, &root.join("c"), &home).await?;
    let (_, took) = fetch_at(&c, "via relay").await?;
    let via = mb_per_s(bytes, took);
    println!(
        "| sender → relay (left while the recipient was offline) | {:.0} | {:.2} | – / {} | relay – / {} |",
        mb_per_s(bytes, push),
        push.as_secs_f64(),
        mib(a_peak),
        mib(peak_kib(relay.child.id()))
    );
    println!(
        "| TokenIM through the relay (sender gone) | {via:.0} ({:.0} % of raw) | {:.2} | relay {} / {} | {} (peak) |",
        100.0 * via / raw,
        took.as_secs_f64(),
        mib(relay_idle),
        mib(peak_kib(relay.child.id())),
        mib(peak_kib(c.child.id()))
    );
    Ok(())
}
