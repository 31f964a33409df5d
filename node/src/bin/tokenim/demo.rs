//! `tokenim demo`: a relay and personal nodes (Alice, Bob, then Carol) on loopback in this process,
//! each with its own data directory, RocksDB and local API. They swap contact cards through the
//! API and chat; the demo prints what Bob's app sees on its event stream and how Alice's delivery
//! states move. Then Bob goes offline: Alice's messages wait in his mailbox on the relay, and
//! reach him when his node comes back.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};

use tokenim_node::config::{self, Config};
use tokenim_node::{self as node, Client, RunningNode};

struct Peer {
    name: &'static str,
    node: RunningNode,
    client: Client,
    address: String,
    cfg: Config,
}

async fn start_peer(
    root: &std::path::Path,
    name: &'static str,
    edit: impl FnOnce(&mut Config),
) -> Result<Peer> {
    let dir = root.join(name);
    node::init(&dir, Some(name))?;
    let mut cfg = Config::load(&dir)?;
    cfg.api.listen = "127.0.0.1:0".parse()?;
    cfg.network.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    edit(&mut cfg);
    run_peer(root, name, cfg).await
}

async fn run_peer(root: &std::path::Path, name: &'static str, cfg: Config) -> Result<Peer> {
    let dir = root.join(name);
    let node = node::start(&dir, cfg.clone()).await?;
    let api = node.api_addr.context("the API is served")?;
    let token = std::fs::read_to_string(dir.join(config::TOKEN_FILE))?;
    let client = Client::with(api, token.trim().to_string());
    let address = node.address.to_string();
    println!(
        "  {name:5} address {}  api http://{}",
        tokenim_node::short(&address),
        api
    );
    Ok(Peer {
        name,
        node,
        client,
        address,
        cfg,
    })
}

pub async fn run(messages: usize) -> Result<()> {
    let root = tempdir()?;
    println!(
        "TokenIM demo: a relay and two nodes on loopback ({})",
        root.display()
    );
    let relay = start_peer(&root, "relay", |c| c.relay.enabled = true).await?;
    let relay_addr = format!(
        "{}/p2p/{}",
        relay
            .node
            .listen_addrs()
            .await?
            .first()
            .context("relay address")?,
        relay.node.peer_id
    );
    let alice = start_peer(&root, "alice", |_| {}).await?;
    let bob = start_peer(&root, "bob", |c| c.network.home_relays = vec![relay_addr]).await?;

    println!("\n1. Swapping contact cards through the local API");
    for (a, b) in [(&alice, &bob), (&bob, &alice)] {
        let card = a.client.identity().await?["contact_card"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        b.client
            .post("/contacts", json!({ "card": card, "name": a.name }))
            .await?;
        println!("  {} added {} ({} byte card)", b.name, a.name, card.len());
    }

    let mut bob_events = bob.client.events().await?;
    let mut alice_events = alice.client.events().await?;

    println!("\n2. Alice sends {messages} messages; Bob's app receives them on /v1/events");
    let mut latencies = Vec::new();
    for i in 1..=messages {
        let text = format!("hello Bob, this is message {i}");
        let t0 = Instant::now();
        let sent = alice
            .client
            .post("/messages", json!({ "to": "bob", "body": text }))
            .await?;
        let ev = next_event(&mut bob_events, "message").await?;
        latencies.push(t0.elapsed());
        println!(
            "  bob ← {:?} ({} µs after Alice's POST; Alice's state was {})",
            ev["message"]["body"].as_str().unwrap_or(""),
            t0.elapsed().as_micros(),
            sent["state"].as_str().unwrap_or("")
        );
    }

    println!("\n3. Bob replies and reads Alice's messages; Alice sees delivery and read states");
    let reply = bob
        .client
        .post(
            "/messages",
            json!({ "to": "alice", "body": "hi Alice, got them all" }),
        )
        .await?;
    let ev = next_event(&mut alice_events, "message").await?;
    println!(
        "  alice ← {:?} (message {})",
        ev["message"]["body"].as_str().unwrap_or(""),
        reply["id"].as_str().unwrap_or("")
    );
    let inbox = bob
        .client
        .get(&format!("/messages?peer={}&limit=100", alice.address))
        .await?;
    let mut read = 0;
    for m in inbox["messages"].as_array().into_iter().flatten() {
        if m["direction"] == "incoming" {
            bob.client
                .post(
                    &format!("/messages/{}/read", m["id"].as_str().unwrap_or("")),
                    json!({}),
                )
                .await?;
            read += 1;
        }
    }
    let mut read_seen = 0;
    while read_seen < read {
        let ev = next_event(&mut alice_events, "message_state").await?;
        if ev["state"] == "read" {
            read_seen += 1;
        }
    }
    println!("  alice saw {read_seen} read receipts");

    let conv = alice
        .client
        .get(&format!("/messages?peer={}&limit=100", bob.address))
        .await?;
    println!("\n4. Alice's conversation with Bob (newest first):");
    for m in conv["messages"].as_array().into_iter().flatten() {
        let dir = if m["direction"] == "outgoing" {
            "→"
        } else {
            "←"
        };
        println!(
            "  {dir} [{:9}] {}",
            m["state"].as_str().unwrap_or(""),
            m["body"].as_str().unwrap_or("")
        );
    }
    latencies.sort();
    if let (Some(min), Some(max)) = (latencies.first(), latencies.last()) {
        println!(
            "\nAPI send → peer's event: min {} µs, max {} µs over {} messages",
            min.as_micros(),
            max.as_micros(),
            latencies.len()
        );
    }

    println!("\n5. Bob goes offline; Alice's messages wait in his mailbox on the relay");
    let bob_cfg = bob.cfg.clone();
    // Bob's app disconnects first: an open event stream would keep his node's API serving.
    drop(bob_events);
    bob.node.shutdown().await;
    let mut ids = Vec::new();
    for text in ["are you there?", "call me when you are back"] {
        let sent = alice
            .client
            .post("/messages", json!({ "to": "bob", "body": text }))
            .await?;
        ids.push(sent["id"].as_str().unwrap_or_default().to_string());
    }
    for id in &ids {
        let ev = wait_state(&alice, &mut alice_events, id, "stored").await?;
        println!(
            "  alice: {id} stored, custody receipts from {} relay(s)",
            ev["stored_by"]
        );
    }
    let held = relay.client.get("/relay/stats").await?;
    println!(
        "  relay holds {} envelope(s), {} bytes, for {} mailbox(es)",
        held["stored_messages"], held["stored_bytes"], held["mailboxes"]
    );

    println!("\n6. Bob comes back, drains his mailbox and acknowledges");
    let bob = run_peer(&root, "bob", bob_cfg).await?;
    for id in &ids {
        wait_state(&alice, &mut alice_events, id, "delivered").await?;
    }
    let inbox = bob
        .client
        .get(&format!("/messages?peer={}&limit=2", alice.address))
        .await?;
    for m in inbox["messages"].as_array().into_iter().flatten() {
        println!("  bob ← {:?}", m["body"].as_str().unwrap_or(""));
    }
    println!("  alice: both delivered (end-to-end receipts)");
    let held = relay.client.get("/relay/stats").await?;
    println!("  relay now holds {} envelope(s)", held["stored_messages"]);

    println!("\n7. Carol, a stranger holding Alice's card, writes: a message request");
    let carol = start_peer(&root, "carol", |_| {}).await?;
    let card = alice.client.identity().await?["contact_card"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    carol
        .client
        .post("/contacts", json!({ "card": card, "name": "alice" }))
        .await?;
    carol
        .client
        .post(
            "/messages",
            json!({ "to": "alice", "body": "hi Alice, we met at the meetup" }),
        )
        .await?;
    let ev = next_event(&mut alice_events, "message_request").await?;
    println!(
        "  alice's app gets a message_request: {:?}",
        ev["message"]["body"].as_str().unwrap_or("")
    );
    let requests = alice.client.get("/requests").await?;
    let contacts = alice.client.get("/contacts").await?;
    println!(
        "  alice: {} request(s); her contacts are still {}; nothing went back to Carol",
        requests["requests"].as_array().map_or(0, Vec::len),
        contacts["contacts"].as_array().map_or(0, Vec::len)
    );
    let mut carol_events = carol.client.events().await?;
    alice
        .client
        .post(
            &format!("/requests/{}/accept", carol.address),
            json!({ "name": "carol" }),
        )
        .await?;
    alice
        .client
        .post("/messages", json!({ "to": "carol", "body": "hi Carol!" }))
        .await?;
    let ev = next_event(&mut carol_events, "message").await?;
    println!(
        "  alice accepts and answers; carol ← {:?}",
        ev["message"]["body"].as_str().unwrap_or("")
    );

    println!("\n8. Alice makes a group with Bob and Carol (who are not each other's contacts)");
    let group = alice
        .client
        .post(
            "/groups",
            json!({ "name": "hikers", "members": ["bob", "carol"] }),
        )
        .await?;
    let id = group["id"].as_str().unwrap_or_default().to_string();
    println!(
        "  group {}… \"{}\" with {} members, signed log and one sender key each",
        &id[..12.min(id.len())],
        group["name"].as_str().unwrap_or(""),
        group["members"].as_array().map_or(0, Vec::len)
    );
    next_event(&mut carol_events, "group_updated").await?;
    let joined = async {
        while bob.client.get(&format!("/groups/{id}")).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), joined)
        .await
        .context("bob never joined the group")?;
    // Bob's sender key reaches Carol over a 1:1 session through the group's card of Carol.
    let t0 = Instant::now();
    bob.client
        .post(
            &format!("/groups/{id}/messages"),
            json!({ "body": "trailhead at 8?" }),
        )
        .await?;
    let ev = next_event(&mut carol_events, "message").await?;
    println!(
        "  carol ← {:?} from bob, sealed once for the group ({} µs)",
        ev["message"]["body"].as_str().unwrap_or(""),
        t0.elapsed().as_micros()
    );
    drop(carol_events);
    // Carol reads it: her read receipt reaches Bob, who sees who has read it.
    let mid = ev["message"]["id"].as_str().unwrap_or_default().to_string();
    carol
        .client
        .post(&format!("/messages/{mid}/read"), json!({}))
        .await?;
    let read = async {
        loop {
            let m = bob.client.get(&format!("/messages/{mid}")).await?;
            if m["read_by"] == 1 {
                return anyhow::Ok(m);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let m = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .context("carol's read receipt never reached bob")??;
    let who = bob.client.get(&format!("/messages/{mid}/members")).await?;
    let states: Vec<String> = who["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{} {}",
                tokenim_node::short(m["address"].as_str().unwrap_or("")),
                m["state"].as_str().unwrap_or("")
            )
        })
        .collect();
    println!(
        "  bob's message: delivered to {}, read by {} ({})",
        m["delivered_to"],
        m["read_by"],
        states.join(", ")
    );

    println!("\n9. Alice links a second device with a one-time link, handing over today's history");
    let link = alice
        .client
        .post(
            "/devices/link",
            json!({ "ttl_secs": 120, "history_days": 1 }),
        )
        .await?;
    let laptop = start_peer(&root, "laptop", |_| {}).await?;
    let mut laptop_events = laptop.client.events().await?;
    let list = laptop
        .client
        .post(
            "/devices/join",
            json!({ "uri": link["uri"], "name": "laptop" }),
        )
        .await?;
    println!(
        "  laptop joined alice's account: {} devices, signed list version {}",
        list["devices"].as_array().map_or(0, Vec::len),
        list["version"]
    );
    loop {
        let p = next_event(&mut laptop_events, "sync_progress").await?;
        if p["done"] == p["total"] {
            println!("  history hand-off: {} messages on the laptop", p["total"]);
            break;
        }
    }

    println!("\n10. The laptop is Alice: it gets the group, and what it writes is hers");
    let on_laptop = async {
        while laptop.client.get(&format!("/groups/{id}")).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), on_laptop)
        .await
        .context("the group never reached the laptop")?;
    bob.client
        .post(
            &format!("/groups/{id}/messages"),
            json!({ "body": "see you both there" }),
        )
        .await?;
    let ev = next_event(&mut laptop_events, "message").await?;
    println!(
        "  laptop got bob's group message {:?} (passed on by alice's first device)",
        ev["message"]["body"].as_str().unwrap_or("")
    );
    let mut carol_events = carol.client.events().await?;
    laptop
        .client
        .post(
            &format!("/groups/{id}/messages"),
            json!({ "body": "typed on the laptop" }),
        )
        .await?;
    let ev = loop {
        let ev = next_event(&mut carol_events, "message").await?;
        if ev["message"]["body"] == "typed on the laptop" {
            break ev;
        }
    };
    println!(
        "  carol got {:?} from {}",
        ev["message"]["body"].as_str().unwrap_or(""),
        if ev["message"]["from"] == alice.address.as_str() {
            "alice"
        } else {
            "someone else"
        }
    );

    println!("\n11. Alice sends Bob a file: encrypted once, fetched in checked chunks");
    let path = root.join("trail-map.bin");
    let content: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    std::fs::write(&path, &content)?;
    let mut bob_events = bob.client.events().await?;
    let t0 = Instant::now();
    let file = alice.client.upload_file(&path).await?;
    alice
        .client
        .post(
            "/messages",
            json!({ "to": "bob", "body": "the trail map", "attachments": [file["id"]] }),
        )
        .await?;
    let done = next_event(&mut bob_events, "file_completed").await?;
    let at_bob = done["id"].as_str().unwrap_or_default().to_string();
    let saved = root.join("trail-map-at-bob.bin");
    let n = bob.client.download_file(&at_bob, &saved).await?;
    println!(
        "  bob has {n} bytes in {:.0} ms, verified (SHA-256 {}…); same bytes: {}",
        t0.elapsed().as_secs_f64() * 1000.0,
        &file["sha256"].as_str().unwrap_or("")[..12],
        std::fs::read(&saved)? == content
    );

    drop((carol_events, laptop_events, bob_events));
    for peer in [alice, bob, carol, laptop, relay] {
        peer.node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&root);
    println!("done.");
    Ok(())
}

/// Waits until message `id` of `peer` is in `state` (already, or by a later event).
async fn wait_state(
    peer: &Peer,
    events: &mut (impl futures::Stream<Item = Result<Value>> + Unpin),
    id: &str,
    state: &str,
) -> Result<Value> {
    let now = peer.client.get(&format!("/messages/{id}")).await?;
    if now["state"] == state {
        return Ok(now);
    }
    loop {
        let ev = next_event(events, "message_state").await?;
        if ev["id"] == id && ev["state"] == state {
            return Ok(ev);
        }
    }
}

/// The next event of `kind`; `message` events only count when incoming (a node also announces
/// the messages its own apps send).
async fn next_event(
    events: &mut (impl futures::Stream<Item = Result<Value>> + Unpin),
    kind: &str,
) -> Result<Value> {
    let wait = async {
        while let Some(ev) = events.next().await {
            let ev = ev?;
            if ev["type"] == kind && (kind != "message" || ev["message"]["direction"] == "incoming")
            {
                return Ok(ev);
            }
        }
        bail!("event stream closed")
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .with_context(|| format!("no {kind} event within 30 s"))?
}

fn tempdir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tokenim-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
