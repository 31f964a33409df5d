//! `--group N`: one owner and N members, each a real `tokenim` process on loopback, in one
//! group. The owner sends messages at a fixed pace; reports the API answer time (`202`) and
//! when each member's WebSocket sees each message, as percentiles, and the owner's CPU time
//! per group message against per 1:1 message (sender keys: one seal for all members).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Mutex;

use super::{befriend, pct, start};

/// The owner's CPU time (user + system), from /proc.
fn cpu_secs(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

pub(super) async fn group(
    bin: &Path,
    root: &Path,
    members: usize,
    messages: usize,
    pace_ms: u64,
) -> Result<()> {
    let owner = start(bin, &root.join("owner"), "owner").await?;
    let mut procs = Vec::new();
    for i in 0..members {
        let name = format!("m{i}");
        let p = start(bin, &root.join(&name), &name).await?;
        befriend((&owner, "owner"), (&p, &name)).await?;
        procs.push(p);
    }
    let names: Vec<String> = (0..members).map(|i| format!("m{i}")).collect();
    let setup = Instant::now();
    let group = owner
        .client
        .post("/groups", json!({ "name": "load", "members": names }))
        .await?;
    let id = group["id"].as_str().context("group id")?.to_owned();
    // Every member holds the group and every other member's sender key once a message from
    // the last member reaches everyone; first wait for every member to hold the group.
    for p in &procs {
        let deadline = Instant::now() + Duration::from_secs(300);
        while p.client.get(&format!("/groups/{id}")).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "a member never joined");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!(
        "group of {} set up in {:.1} s (welcomes and sender keys over 1:1 sessions)",
        members + 1,
        setup.elapsed().as_secs_f64()
    );
    let arrivals: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let starts: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut watchers = Vec::new();
    for p in &procs {
        let mut events = p.client.events().await?;
        let (arrivals, starts) = (arrivals.clone(), starts.clone());
        watchers.push(tokio::spawn(async move {
            let mut seen = 0;
            while seen < messages {
                let Ok(Some(Ok(ev))) =
                    tokio::time::timeout(Duration::from_secs(60), events.next()).await
                else {
                    return;
                };
                if ev["type"] == "message" && ev["message"]["direction"] == "incoming" {
                    let key = ev["message"]["body"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    if let Some(t) = starts.lock().await.get(&key) {
                        arrivals.lock().await.push(t.elapsed());
                        seen += 1;
                    }
                }
            }
        }));
    }
    let cpu0 = cpu_secs(owner.child.id());
    let mut api = Vec::new();
    for i in 0..messages {
        let body = format!("g{i}");
        starts.lock().await.insert(body.clone(), Instant::now());
        let t = Instant::now();
        owner
            .client
            .post(&format!("/groups/{id}/messages"), json!({ "body": body }))
            .await?;
        api.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(pace_ms)).await;
    }
    for w in watchers {
        let _ = w.await;
    }
    let group_cpu = (cpu_secs(owner.child.id()) - cpu0) / messages as f64;
    // The same number of 1:1 messages to one member, for the CPU comparison.
    let cpu1 = cpu_secs(owner.child.id());
    for i in 0..messages {
        owner
            .client
            .post(
                "/messages",
                json!({ "to": "m0", "body": format!("one {i}") }),
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let one_cpu = (cpu_secs(owner.child.id()) - cpu1) / messages as f64;
    api.sort();
    let mut arrivals = arrivals.lock().await.clone();
    arrivals.sort();
    println!(
        "| members | messages | API 202 p50 / p99 ms | arrivals | member has it p50 / p99 / max ms | owner CPU per group msg | per 1:1 msg |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {messages} | {:.2} / {:.2} | {} of {} | {:.1} / {:.1} / {:.1} | {:.2} ms | {:.2} ms |",
        members + 1,
        pct(&api, 0.5),
        pct(&api, 0.99),
        arrivals.len(),
        messages * members,
        pct(&arrivals, 0.5),
        pct(&arrivals, 0.99),
        pct(&arrivals, 1.0),
        group_cpu * 1000.0,
        one_cpu * 1000.0
    );
    drop(procs);
    drop(owner);
    Ok(())
}
