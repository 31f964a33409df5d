//! Relay figures over libp2p against real relay processes: ingest into a mailbox, and the
//! owner's drain of it.

use super::*;

pub(crate) async fn relay_drain(bin: &Path, root: &Path, n: usize) -> Result<()> {
    let big = format!(
        "[limits]\ninbound_per_peer_per_sec = 1000000\nmax_outbox = {}\n[relay]\nmailbox_max_messages = 10000000\nmailbox_max_bytes = 100000000000\n",
        n + 1000
    );
    for name in ["relay", "alice", "bob"] {
        init(bin, &root.join(name), name)?;
        std::fs::write(root.join(name).join("config.toml"), &big)?;
    }
    let relay = run(bin, &root.join("relay"), &["--relay"]).await?;
    let id = relay.client.identity().await?;
    let relay_addr = format!(
        "{}/p2p/{}",
        id["listen_addrs"][0].as_str().context("addr")?,
        id["peer_id"].as_str().context("peer id")?
    );
    let bob_flags = ["--home-relay", relay_addr.as_str()];
    let alice = run(bin, &root.join("alice"), &[]).await?;
    let bob = run(bin, &root.join("bob"), &bob_flags).await?;
    let stored = |want: usize| move |t: &str| t.contains(&format!("\"stored_messages\":{want},"));
    poll_until(&relay, "/relay/stats", |t| t.contains("\"mailboxes\":1,")).await?;
    befriend((&alice, "alice"), (&bob, "bob")).await?;
    // A conversation in both directions first, so that the queue is session frames.
    for (from, to) in [(&alice, "bob"), (&bob, "alice"), (&alice, "bob")] {
        let m = from
            .client
            .post("/messages", json!({ "to": to, "body": "hello" }))
            .await?;
        let path = format!("/messages/{}", m["id"].as_str().context("id")?);
        poll_until(from, &path, |t| t.contains("\"delivered\"")).await?;
    }

    drop(bob);

    let t_fill = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let body = "x".repeat(1000);
    let mut sends = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let (client, body) = (alice.client.clone(), body.clone());
        sends.push(tokio::spawn(async move {
            let _permit = permit;
            client
                .post("/messages", json!({ "to": "bob", "body": body }))
                .await
        }));
    }
    for s in sends {
        s.await??;
    }
    poll_until(&relay, "/relay/stats", stored(n)).await?;
    println!(
        "filled: {n} messages sent by alice and stored at the relay in {:.1} s",
        t_fill.elapsed().as_secs_f64()
    );

    // Alice goes offline too, so that Bob's drain has the machine (Bob's delivery receipts
    // wait in his outbox).
    drop(alice);
    let t0 = Instant::now();
    let bob = run(bin, &root.join("bob"), &bob_flags).await?;
    let ready = t0.elapsed();
    poll_until(&relay, "/relay/stats", stored(0)).await?;
    let drained = t0.elapsed();
    // New messages stored by this process of Bob's: what waited on the relay.
    let received = bob
        .client
        .get_text("/metrics")
        .await?
        .lines()
        .find_map(|l| {
            l.strip_prefix("tokenim_messages_received_total ")?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0) as u64;
    println!(
        "| drain over libp2p: bob starts, fetches, opens, stores and acks {n} messages | {received}/{n} in the inbox | {:.2} s from start ({:.2} s after ready, {:.0} msg/s) |",
        drained.as_secs_f64(),
        (drained - ready).as_secs_f64(),
        n as f64 / (drained - ready).as_secs_f64()
    );
    drop(bob);
    drop(relay);
    anyhow::ensure!(received == n as u64, "{received} of {n} messages arrived");
    Ok(())
}

/// A bare libp2p peer speaking the TokenIM protocol, with a fresh key.
async fn client(
    cfg: &tokenim_node::peer::NetworkConfig,
) -> Result<(
    tokenim_node::peer::NetworkHandle,
    tokio::sync::mpsc::Receiver<tokenim_node::peer::NetEvent>,
    tokio::task::JoinHandle<()>,
)> {
    let mut registry = prometheus_client::registry::Registry::default();
    let key = libp2p::identity::Keypair::generate_ed25519();
    Ok(tokenim_node::peer::spawn(key, cfg.clone(), &mut registry).await?)
}

/// Registers a mailbox at a relay process, then stores `n` distinct envelopes with 32 requests
/// in flight and checks every custody receipt. One client stands in for many senders, so the
/// relay's per-peer rate limit is lifted for the run.
pub(crate) async fn relay_ingest(
    bin: &Path,
    root: &Path,
    n: usize,
    batch: usize,
    in_flight: usize,
) -> Result<()> {
    use tokenim_crypto::{CustodyReceipt, Envelope, Identity};
    use tokenim_node::peer::NetworkConfig;
    use tokenim_node::peer::wire::{self, pb};

    let dir = root.join("relay");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("config.toml"),
        "[limits]\ninbound_per_peer_per_sec = 1000000\n[relay]\nmailbox_max_messages = 10000000\nmailbox_max_bytes = 100000000000\ntotal_max_bytes = 100000000000\n",
    )?;
    let relay = start_with(bin, &dir, "relay", &["--relay"]).await?;
    let id = relay.client.identity().await?;
    let peer: libp2p::PeerId = id["peer_id"].as_str().context("peer id")?.parse()?;
    let addr: libp2p::Multiaddr = id["listen_addrs"][0].as_str().context("addr")?.parse()?;
    let relay_key = tokenim_node::peer::relay_key_of(&peer).context("relay key")?;
    let cfg = NetworkConfig::peer("/ip4/127.0.0.1/tcp/0".parse()?);
    // The owner registers its mailbox and goes offline (as when messages pile up for it);
    // a second peer then plays the senders.
    let (owner_net, _owner_events, _owner_task) = client(&cfg).await?;
    let net = owner_net.clone();
    let ask = |kind| wire::Request { kind: Some(kind) };
    let answer = net
        .request(
            peer,
            vec![addr.clone()],
            ask(pb::request::Kind::GetChallenge(pb::GetChallenge {})),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let Some(pb::response::Kind::Challenge(c)) = answer.kind else {
        bail!("no challenge: {answer:?}")
    };
    let owner = Identity::from_seed([5; 32]).mailbox_key(0);
    let now = tokenim_node::peer::now_secs();
    let proof = owner.sign_registration(&relay_key, &c.challenge, now);
    let register = pb::RegisterMailbox {
        registration: proof.to_bytes(),
    };
    let answer = net
        .request(peer, vec![], ask(pb::request::Kind::Register(register)))
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    anyhow::ensure!(
        matches!(answer.kind, Some(pb::response::Kind::Accepted(_))),
        "not registered: {answer:?}"
    );
    owner_net.shutdown().await;
    let (net, _events, _task) = client(&cfg).await?;
    let answer = net
        .request(
            peer,
            vec![addr],
            ask(pb::request::Kind::GetChallenge(pb::GetChallenge {})),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    anyhow::ensure!(answer.kind.is_some(), "relay unreachable for the sender");

    let envelopes: Vec<Envelope> = (0..n)
        .map(|i| {
            let mut frame = vec![0u8; 2048];
            frame[..8].copy_from_slice(&(i as u64).to_be_bytes());
            Envelope::new(owner.id(), frame, now, 86400)
        })
        .collect();
    let mailbox = owner.id();
    let sem = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for chunk in envelopes.chunks(batch.max(1)) {
        let permit = sem.clone().acquire_owned().await?;
        let net = net.clone();
        let ids: Vec<_> = chunk.iter().map(Envelope::id).collect();
        let store = pb::StoreEnvelope {
            grant: Vec::new(),
            envelopes: chunk.iter().map(prost::Message::encode_to_vec).collect(),
        };
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let request = wire::Request {
                kind: Some(pb::request::Kind::Store(store)),
            };
            match net.request(peer, vec![], request).await {
                Ok(wire::Response {
                    kind: Some(pb::response::Kind::Stored(s)),
                }) => Some((s.receipt, ids)),
                _ => None,
            }
        }));
    }
    let mut answers = Vec::with_capacity(tasks.len());
    for t in tasks {
        answers.push(t.await.ok().flatten());
    }
    let secs = t0.elapsed().as_secs_f64();
    let ok: usize = answers
        .iter()
        .flatten()
        .filter(|(receipt, ids)| {
            CustodyReceipt::from_bytes(receipt)
                .is_ok_and(|r| r.verify(&relay_key, &mailbox, ids).is_ok())
        })
        .map(|(_, ids)| ids.len())
        .sum();
    println!(
        "| relay ingest over libp2p (TCP, Noise, Yamux), 1 KiB messages, {batch} per request, {in_flight} requests in flight | {ok}/{n} receipted | {:.0} msg/s |",
        ok as f64 / secs
    );
    net.shutdown().await;
    drop(relay);
    Ok(())
}
