//! A relay whose database sits on a small disk of its own (a 48 MiB tmpfs: mounting one needs
//! root; elsewhere the test says why and skips), filled by a sender's 50 KB messages for an
//! offline recipient: stores end in a clear refusal with a retry hint, `/v1/health` says the
//! disk is full, the recipient still drains and acks everything that was receipted while
//! another peer keeps hammering the relay with stores, the space comes back by itself, and
//! stores are taken again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tokenim_crypto::{ContactCard, Envelope, Identity, MailboxId};
use tokenim_node::peer::{self, NetworkConfig, NetworkHandle, wire, wire::pb};

use crate::harness::{NodeProc, init};
use crate::relay::{LOOPBACK, edit_config, poll_until, stats, wait_stat, wait_states};

/// A tmpfs mounted over a directory, unmounted when dropped (lazily: a process being killed
/// may still hold a file open).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `Ok(None)` (with the reason printed) where mounting is not allowed; failing to mount
    /// as root is an error, so that the test cannot silently stop running where it can.
    fn mount(at: &Path, size: &str) -> Result<Option<Tmpfs>> {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=700"),
                "tmpfs",
            ])
            .arg(at)
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Ok(Some(Tmpfs(at.to_path_buf()))),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        };
        if is_root() {
            bail!("running as root, yet cannot mount a tmpfs: {why}");
        }
        eprintln!("skipped: mounting a tmpfs needs root ({why})");
        Ok(None)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Moves an initialised node's database onto a fresh tmpfs of `size`.
fn database_on_tmpfs(dir: &Path, size: &str) -> Result<Option<Tmpfs>> {
    let db = dir.join(tokenim_node::config::DB_DIR);
    let moved = dir.join("db.init");
    std::fs::rename(&db, &moved)?;
    std::fs::create_dir(&db)?;
    let Some(disk) = Tmpfs::mount(&db, size)? else {
        return Ok(None);
    };
    for entry in std::fs::read_dir(&moved)? {
        let entry = entry?;
        std::fs::copy(entry.path(), db.join(entry.file_name()))?;
    }
    std::fs::remove_dir_all(&moved)?;
    Ok(Some(disk))
}

async fn health(node: &NodeProc) -> Result<Value> {
    node.client.get("/health").await
}

/// 50 KB, numbered so that the recipient's copy says which it is.
fn body(n: usize) -> String {
    format!("{n:05} {}", "x".repeat(50_000))
}

/// The numbers of every message `bob` holds from `alice`, paging through all of them.
async fn numbers_at(bob: &NodeProc, alice: &NodeProc) -> Result<Vec<usize>> {
    let mut numbers = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = bob
            .client
            .get(&format!(
                "/messages?peer={}&limit=200{cursor}",
                alice.address
            ))
            .await?;
        for m in page["messages"].as_array().context("messages")? {
            let text = m["body"].as_str().context("body")?;
            numbers.push(text.get(..5).context("short body")?.parse()?);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The bare peer's `store` of one junk envelope for `mailbox` at the relay.
async fn store_junk(
    net: &NetworkHandle,
    relay: (libp2p::PeerId, libp2p::Multiaddr),
    mailbox: MailboxId,
    grant: Vec<u8>,
    n: u32,
) -> Result<wire::Response> {
    let mut ciphertext = vec![0u8; 512];
    ciphertext[..4].copy_from_slice(&n.to_be_bytes());
    let envelope = Envelope::new(mailbox, ciphertext, peer::now_secs(), 600);
    let request = wire::Request {
        kind: Some(pb::request::Kind::Store(pb::StoreEnvelope {
            envelopes: vec![prost::Message::encode_to_vec(&envelope)],
            grant,
        })),
    };
    net.request(relay.0, vec![relay.1], request)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))
}

fn storage_full(r: &wire::Response) -> Option<u32> {
    match &r.kind {
        Some(pb::response::Kind::Rejected(x)) if x.code == wire::RejectCode::StorageFull as i32 => {
            Some(x.retry_after_secs)
        }
        _ => None,
    }
}

#[tokio::test]
async fn a_full_relay_refuses_clearly_lets_its_owners_drain_and_recovers() -> Result<()> {
    let root = tempfile::tempdir()?;
    let relay_dir = init(root.path(), "relay1")?;
    let Some(disk) = database_on_tmpfs(&relay_dir, "48m")? else {
        return Ok(());
    };
    // Alice has not heard from Bob, so she writes under his card's first-contact grant: let
    // that window hold more than the disk does.
    edit_config(&relay_dir, |c| c.relay.first_contact_per_mailbox = 100_000)?;
    let r1 = NodeProc::start_with(&relay_dir, LOOPBACK, &["--relay".into()]).await?;
    let relay_addr = r1.p2p_addr().await?;
    let relay_peer: libp2p::PeerId = r1.client.identity().await?["peer_id"]
        .as_str()
        .context("peer id")?
        .parse()?;
    let relay_route = (relay_peer, r1.listen_addr().await?.parse()?);

    // Bob registers and goes offline; Alice retries soon after refusals.
    let bob_flags = vec!["--home-relay".to_string(), relay_addr];
    let alice_dir = init(root.path(), "alice")?;
    edit_config(&alice_dir, |c| c.limits.max_retry_backoff_secs = 4)?;
    let alice = NodeProc::start(&alice_dir, LOOPBACK).await?;
    let bob = NodeProc::start_with(&init(root.path(), "bob")?, LOOPBACK, &bob_flags).await?;
    wait_stat(&r1, "mailboxes", 1, "bob never registered").await?;
    alice.add_contact(&bob, "bob").await?;
    bob.add_contact(&alice, "alice").await?;
    let card = ContactCard::from_uri(&bob.card().await?, peer::now_secs())?;
    let mailbox = *card
        .mailboxes
        .first()
        .context("bob's card has no mailbox")?;
    let bob_dir = bob.dir.clone();
    bob.stop().await?;

    // Alice sends until the relay's disk is full: each batch is stored, or the relay says so.
    let mut ids: Vec<String> = Vec::new();
    loop {
        let batch = ids.len()..ids.len() + 10;
        for n in batch.clone() {
            let sent = alice.send("bob", &body(n)).await?;
            ids.push(sent["id"].as_str().context("id")?.to_string());
        }
        poll_until("a batch was neither stored nor refused", || {
            let (alice, r1, ids) = (&alice, &r1, &ids[batch.clone()]);
            async move {
                if health(r1).await?["status"] == "degraded" {
                    return Ok(true);
                }
                let mut stored = 0;
                for id in ids {
                    stored += usize::from(
                        alice.client.get(&format!("/messages/{id}")).await?["state"] == "stored",
                    );
                }
                Ok(stored == ids.len())
            }
        })
        .await?;
        if health(&r1).await?["status"] == "degraded" {
            break;
        }
        ensure!(ids.len() < 2_000, "48 MiB held 2000 messages of 50 KB");
    }
    let h = health(&r1).await?;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["reasons"], serde_json::json!(["disk_full"]), "{h}");

    // A store now gets a clear refusal with a retry hint, not a generic failure.
    let mut registry = prometheus_client::registry::Registry::default();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let (net, _net_events, _net_task) =
        peer::spawn(key, NetworkConfig::peer(LOOPBACK.parse()?), &mut registry).await?;
    // A stranger with Bob's card (and its first-contact grant).
    let refused = store_junk(
        &net,
        relay_route.clone(),
        mailbox,
        card.intro_grant.clone(),
        0,
    )
    .await?;
    let hint = storage_full(&refused).with_context(|| format!("not STORAGE_FULL: {refused:?}"))?;
    ensure!(hint > 0, "no retry hint");

    // What was receipted so far; Alice keeps the rest and retries.
    let mut receipted = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        if alice.client.get(&format!("/messages/{id}")).await?["state"] == "stored" {
            receipted.push(n);
        }
    }
    let held = stats(&r1).await?["stored_messages"].as_u64().unwrap_or(0);
    eprintln!(
        "{} sent, {} receipted, {held} held by the relay when its disk was full",
        ids.len(),
        receipted.len()
    );
    ensure!(receipted.len() >= 200, "only {} fitted", receipted.len());
    ensure!(
        held as usize >= receipted.len(),
        "the relay lost receipted messages"
    );

    // Another peer hammers the relay with stores while Bob drains (for a mailbox the relay
    // does not host: once space is back, they are refused for that and store nothing).
    let elsewhere_key = Identity::from_seed([5; 32]).mailbox_key(0);
    let (elsewhere, elsewhere_grant) = (
        elsewhere_key.id(),
        elsewhere_key.first_contact_grant(u64::MAX).to_bytes(),
    );
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let hammer = tokio::spawn({
        let (net, route, mailbox) = (net.clone(), relay_route.clone(), elsewhere);
        let grant = elsewhere_grant.clone();
        async move {
            let mut n = 1;
            let mut refusals = 0u32;
            while !*stopped.borrow_and_update() {
                let sends =
                    (0..8).map(|i| store_junk(&net, route.clone(), mailbox, grant.clone(), n + i));
                for r in futures::future::join_all(sends).await.into_iter().flatten() {
                    refusals += u32::from(storage_full(&r).is_some());
                }
                n += 8;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            refusals
        }
    });
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &bob_flags).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let got = loop {
        let got = numbers_at(&bob, &alice).await?;
        if got.len() >= ids.len() || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = stop.send(true);
    let refusals = hammer.await?;
    ensure!(refusals > 0, "the hammer was never refused");
    for n in &receipted {
        ensure!(
            got.binary_search(n).is_ok(),
            "receipted message {n} was lost"
        );
    }
    assert_eq!(
        got,
        (0..ids.len()).collect::<Vec<_>>(),
        "lost or duplicated"
    );

    // Bob's acks emptied his mailbox and freed the disk.
    wait_stat(&r1, "stored_messages", 0, "the relay mailbox never emptied").await?;
    poll_until("the relay never said its disk was fine again", || async {
        Ok(health(&r1).await?["status"] == "ok")
    })
    .await?;

    // Stores are taken again: Bob goes offline, Alice's new messages are receipted.
    bob.stop().await?;
    let mut more = Vec::new();
    for n in ids.len()..ids.len() + 3 {
        more.push(
            alice.send("bob", &body(n)).await?["id"]
                .as_str()
                .context("id")?
                .to_string(),
        );
    }
    wait_states(&alice, &more, "stored", 1).await?;
    let answer = store_junk(&net, relay_route, elsewhere, elsewhere_grant, u32::MAX).await?;
    ensure!(storage_full(&answer).is_none(), "still refused: {answer:?}");
    // The reserve kept RocksDB itself from ever running out of space (which would have
    // stopped all its writes, acks included, for a while).
    let log = std::fs::read_to_string(relay_dir.join("db/LOG"))?;
    ensure!(
        !log.contains("No space left"),
        "the relay's database ran out of space"
    );
    for p in [alice, r1] {
        p.stop().await?;
    }
    drop(disk);
    Ok(())
}
