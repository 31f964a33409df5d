//! Offline delivery through relay mailboxes, with real processes: custody receipts, draining,
//! acknowledgement, and a relay crash.

use anyhow::{Context, Result};
use serde_json::{Value, json};

use tokenim_node::peer::wire::{self, pb};

use crate::harness::{NodeProc, init, wait_event};

pub(crate) const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

pub(crate) async fn relay(root: &std::path::Path, name: &str) -> Result<NodeProc> {
    NodeProc::start_with(&init(root, name)?, LOOPBACK, &["--relay".into()]).await
}

/// Rewrites a node's `config.toml` before it starts.
pub(crate) fn edit_config(
    dir: &std::path::Path,
    edit: impl FnOnce(&mut tokenim_node::config::Config),
) -> Result<()> {
    let mut cfg = tokenim_node::config::Config::load(dir)?;
    edit(&mut cfg);
    std::fs::write(
        dir.join(tokenim_node::config::CONFIG_FILE),
        toml::to_string(&cfg)?,
    )?;
    Ok(())
}

pub(crate) async fn stats(relay: &NodeProc) -> Result<Value> {
    relay.client.get("/relay/stats").await
}

/// Polls until `check` holds, failing with `what` at the harness's limit. For what no event
/// announces: relay mailbox changes, counters, circuit reservations.
pub(crate) async fn poll_until<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + crate::harness::WAIT;
    while !check().await? {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Polls a relay's stats until `field` equals `want`.
pub(crate) async fn wait_stat(relay: &NodeProc, field: &str, want: u64, what: &str) -> Result<()> {
    poll_until(what, || async { Ok(stats(relay).await?[field] == want) }).await
}

/// Bob registers at his home relays, Alice adds his card, Bob goes offline.
pub(crate) async fn offline_bob(
    root: &std::path::Path,
    relays: &[&NodeProc],
) -> Result<(NodeProc, std::path::PathBuf, Vec<String>)> {
    let mut flags = Vec::new();
    for r in relays {
        flags.push("--home-relay".to_string());
        flags.push(r.p2p_addr().await?);
    }
    let alice = NodeProc::start(&init(root, "alice")?, LOOPBACK).await?;
    let bob = NodeProc::start_with(&init(root, "bob")?, LOOPBACK, &flags).await?;
    // Registration happens at start; wait until every relay hosts Bob's mailbox.
    for r in relays {
        wait_stat(r, "mailboxes", 1, "bob never registered").await?;
    }
    alice.add_contact(&bob, "bob").await?;
    bob.add_contact(&alice, "alice").await?;
    let bob_dir = bob.dir.clone();
    bob.stop().await?;
    Ok((alice, bob_dir, flags))
}

async fn send_all(alice: &NodeProc, n: usize) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            alice.send("bob", &format!("offline {i}")).await?["id"]
                .as_str()
                .context("id")?
                .to_string(),
        );
    }
    Ok(ids)
}

/// Waits until each message reaches `state` with at least `relays` custody receipts.
pub(crate) async fn wait_states(
    alice: &NodeProc,
    ids: &[String],
    state: &str,
    relays: u64,
) -> Result<()> {
    let mut events = alice.client.events().await?;
    for id in ids {
        let m = alice.client.get(&format!("/messages/{id}")).await?;
        if m["state"] == state && m["stored_by"].as_u64().unwrap_or(0) >= relays {
            continue;
        }
        wait_event(&mut events, "message_state", |e| {
            e["id"] == id.as_str()
                && e["state"] == state
                && e["stored_by"].as_u64().unwrap_or(0) >= relays
        })
        .await?;
    }
    Ok(())
}

/// Waits until Bob holds exactly `n` messages from Alice, then until `relays` hold nothing
/// more for him (every push and page was handled), and checks again: a copy arriving late
/// would show as a duplicate.
async fn bob_gets_each_once(
    bob: &NodeProc,
    alice: &NodeProc,
    n: usize,
    relays: &[&NodeProc],
) -> Result<()> {
    let count = || async {
        let page = bob
            .client
            .get(&format!("/messages?peer={}&limit=200", alice.address))
            .await?;
        let got = page["messages"].as_array().context("list")?.len();
        anyhow::ensure!(
            got <= n,
            "bob has {got} messages, more than the {n} sent: duplicates"
        );
        Ok(got)
    };
    // Counted from the store: a drain that ran before the event stream was subscribed
    // announces nothing.
    poll_until("bob never got every message", || async {
        Ok(count().await? >= n)
    })
    .await?;
    for r in relays {
        wait_stat(r, "stored_messages", 0, "a relay mailbox never emptied").await?;
    }
    anyhow::ensure!(count().await? == n, "a message went missing");
    Ok(())
}

#[tokio::test]
async fn messages_wait_on_the_home_relay_and_reach_bob_exactly_once() -> Result<()> {
    let root = tempfile::tempdir()?;
    let r1 = relay(root.path(), "relay1").await?;
    let (alice, bob_dir, flags) = offline_bob(root.path(), &[&r1]).await?;
    let ids = send_all(&alice, 10).await?;
    wait_states(&alice, &ids, "stored", 1).await?;
    assert_eq!(stats(&r1).await?["stored_messages"], 10);

    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &flags).await?;
    bob_gets_each_once(&bob, &alice, 10, &[&r1]).await?;
    // Bob's end-to-end delivery receipts reach Alice; his acks empty the mailbox.
    wait_states(&alice, &ids, "delivered", 0).await?;
    wait_stat(&r1, "stored_messages", 0, "relay mailbox never emptied").await?;
    for p in [alice, bob, r1] {
        p.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn both_home_relays_store_and_one_drain_empties_both() -> Result<()> {
    let root = tempfile::tempdir()?;
    let r1 = relay(root.path(), "relay1").await?;
    let r2 = relay(root.path(), "relay2").await?;
    let (alice, bob_dir, flags) = offline_bob(root.path(), &[&r1, &r2]).await?;
    let ids = send_all(&alice, 5).await?;
    wait_states(&alice, &ids, "stored", 2).await?;
    for r in [&r1, &r2] {
        assert_eq!(stats(r).await?["stored_messages"], 5);
    }
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &flags).await?;
    bob_gets_each_once(&bob, &alice, 5, &[&r1, &r2]).await?;
    for r in [&r1, &r2] {
        wait_stat(r, "stored_messages", 0, "a relay mailbox never emptied").await?;
    }
    for p in [alice, bob, r1, r2] {
        p.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_relay_killed_mid_stream_keeps_everything_it_receipted() -> Result<()> {
    let root = tempfile::tempdir()?;
    let r1 = relay(root.path(), "relay1").await?;
    let relay_listen = r1.listen_addr().await?;
    let relay_dir = r1.dir.clone();
    let (alice, bob_dir, flags) = offline_bob(root.path(), &[&r1]).await?;
    let ids = send_all(&alice, 30).await?;
    // Wait for the first receipts, then SIGKILL the relay while the rest may be in flight.
    wait_states(&alice, &ids[..5], "stored", 1).await?;
    r1.kill().await?;
    let mut receipted = Vec::new();
    for id in &ids {
        let m = alice.client.get(&format!("/messages/{id}")).await?;
        if m["state"] == "stored" {
            receipted.push(m["body"].as_str().context("body")?.to_string());
        }
    }
    let r1 = NodeProc::start_with(&relay_dir, &relay_listen, &["--relay".into()]).await?;
    let stored = stats(&r1).await?["stored_messages"].as_u64().unwrap_or(0);
    assert!(
        stored as usize >= receipted.len(),
        "relay lost receipted messages: {stored} < {}",
        receipted.len()
    );

    // Alice keeps retrying the rest; Bob eventually gets all 30, each once.
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &flags).await?;
    bob_gets_each_once(&bob, &alice, 30, &[&r1]).await?;
    let page = bob
        .client
        .get(&format!("/messages?peer={}&limit=200", alice.address))
        .await?;
    let bodies: Vec<String> = page["messages"]
        .as_array()
        .context("list")?
        .iter()
        .filter_map(|m| m["body"].as_str().map(String::from))
        .collect();
    for b in &receipted {
        assert!(bodies.contains(b), "receipted message {b:?} was lost");
    }
    for p in [alice, bob, r1] {
        p.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_personal_node_is_not_a_relay_and_says_so() -> Result<()> {
    let root = tempfile::tempdir()?;
    let node = NodeProc::start(&init(root.path(), "plain")?, LOOPBACK).await?;
    let err = node
        .client
        .get("/relay/stats")
        .await
        .expect_err("not a relay");
    assert!(err.to_string().contains("not_found"), "{err}");
    node.stop().await?;
    Ok(())
}

/// The libp2p PeerId a node's data directory runs as.
pub(crate) fn peer_id_of(dir: &std::path::Path) -> Result<libp2p::PeerId> {
    let key = std::fs::read(dir.join(tokenim_node::config::NODE_KEY_FILE))?;
    Ok(libp2p::identity::Keypair::from_protobuf_encoding(&key)?
        .public()
        .to_peer_id())
}

/// Two relays of one mesh: each lists the other (and `also`) in `[relay] mesh`; relay2
/// bootstraps from relay1 (whose address comes back too).
pub(crate) async fn two_relays(
    root: &std::path::Path,
    also: &[libp2p::PeerId],
) -> Result<(NodeProc, String, NodeProc)> {
    let (d1, d2) = (init(root, "relay1")?, init(root, "relay2")?);
    let (p1, p2) = (peer_id_of(&d1)?, peer_id_of(&d2)?);
    for (dir, other) in [(&d1, p2), (&d2, p1)] {
        edit_config(dir, |c| {
            c.relay.mesh = std::iter::once(&other)
                .chain(also)
                .map(ToString::to_string)
                .collect();
        })?;
    }
    let r1 = NodeProc::start_with(&d1, LOOPBACK, &["--relay".into()]).await?;
    let r1_addr = r1.p2p_addr().await?;
    let flags = ["--relay".into(), "--bootstrap".into(), r1_addr.clone()];
    let r2 = NodeProc::start_with(&d2, LOOPBACK, &flags).await?;
    Ok((r1, r1_addr, r2))
}

/// Relays gossip envelopes on the mailbox's shard topic (so relays a sender did not reach keep
/// a copy) and tombstones (so an ack at one relay empties the others).
#[tokio::test]
async fn relays_share_envelopes_and_tombstones_over_gossipsub() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (r1, r1_addr, r2) = two_relays(root.path(), &[]).await?;
    let (alice, bob_dir, _) = offline_bob(root.path(), &[&r1, &r2]).await?;
    // Alice only knows relay1: give her a card of Bob's that lists relay1 alone.
    let only_r1 = vec!["--home-relay".to_string(), r1_addr];
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &only_r1).await?;
    alice.add_contact(&bob, "bob").await?;
    bob.stop().await?;

    let ids = send_all(&alice, 3).await?;
    wait_states(&alice, &ids, "stored", 1).await?;
    wait_stat(
        &r2,
        "stored_messages",
        3,
        "relay2 never got the gossiped envelopes",
    )
    .await?;

    // Bob drains and acks relay1 only; the tombstone empties relay2 too.
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &only_r1).await?;
    bob_gets_each_once(&bob, &alice, 3, &[&r1, &r2]).await?;
    for r in [&r1, &r2] {
        wait_stat(r, "stored_messages", 0, "a relay mailbox never emptied").await?;
    }
    for p in [alice, bob, r1, r2] {
        p.stop().await?;
    }
    Ok(())
}

/// A bare libp2p peer in this test process that speaks the wire protocol to a relay process.
pub(crate) struct BarePeer {
    pub(crate) net: tokenim_node::peer::NetworkHandle,
    relay: libp2p::PeerId,
    addr: libp2p::Multiaddr,
    pub(crate) relay_key: [u8; 32],
}

impl BarePeer {
    pub(crate) async fn new(relay: &NodeProc) -> Result<Self> {
        use tokenim_node::peer::{self, NetworkConfig};
        let cfg = NetworkConfig::peer("/ip4/127.0.0.1/tcp/0".parse()?);
        let mut registry = prometheus_client::registry::Registry::default();
        let key = libp2p::identity::Keypair::generate_ed25519();
        let (net, _events, _task) = peer::spawn(key, cfg, &mut registry).await?;
        let peer_id: libp2p::PeerId = relay.client.identity().await?["peer_id"]
            .as_str()
            .context("peer")?
            .parse()?;
        Ok(Self {
            net,
            relay: peer_id,
            addr: relay.listen_addr().await?.parse()?,
            relay_key: peer::relay_key_of(&peer_id).context("relay key")?,
        })
    }

    pub(crate) async fn ask(&self, kind: pb::request::Kind) -> Result<pb::response::Kind> {
        let request = wire::Request { kind: Some(kind) };
        let answer = self
            .net
            .request(self.relay, vec![self.addr.clone()], request)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        answer.kind.context("empty answer")
    }

    /// A proof of owning `owner`'s mailbox over a fresh challenge of the relay.
    async fn proof(&self, owner: &tokenim_crypto::Identity) -> Result<Vec<u8>> {
        let pb::response::Kind::Challenge(c) = self
            .ask(pb::request::Kind::GetChallenge(pb::GetChallenge {}))
            .await?
        else {
            anyhow::bail!("no challenge");
        };
        Ok(owner
            .mailbox_key(0)
            .sign_registration(
                &self.relay_key,
                &c.challenge,
                tokenim_node::peer::now_secs(),
            )
            .to_bytes())
    }

    /// Registers `owner`'s mailbox at the relay, as the owner does.
    pub(crate) async fn register_as(&self, owner: &tokenim_crypto::Identity) -> Result<()> {
        let registration = self.proof(owner).await?;
        match self
            .ask(pb::request::Kind::Register(pb::RegisterMailbox {
                registration,
            }))
            .await?
        {
            pb::response::Kind::Accepted(_) => Ok(()),
            other => anyhow::bail!("registration refused: {other:?}"),
        }
    }

    /// The envelopes in `owner`'s mailbox, fetched as the owner does (challenge, proof, page).
    pub(crate) async fn fetch_as(&self, owner: &tokenim_crypto::Identity) -> Result<Vec<Vec<u8>>> {
        let proof = self.proof(owner).await?;
        let fetch = pb::FetchMailbox {
            registration: proof,
            after_seq: 0,
            limit: 256,
        };
        match self.ask(pb::request::Kind::Fetch(fetch)).await? {
            pb::response::Kind::Page(p) => {
                Ok(p.envelopes.into_iter().map(|e| e.envelope).collect())
            }
            other => anyhow::bail!("fetch refused: {other:?}"),
        }
    }
}

/// The identity in a node's data directory (for tests that play its owner or address it).
pub(crate) fn identity_of(dir: &std::path::Path) -> Result<tokenim_crypto::Identity> {
    Ok(tokenim_crypto::Identity::from_bytes(&std::fs::read(
        dir.join("identity.key"),
    )?)?)
}

/// Acks that are forged, meant for another mailbox or relay, or replayed from the past are
/// refused by a real relay and delete nothing, though they name the real envelope ids.
#[tokio::test]
async fn a_relay_process_refuses_forged_acks() -> Result<()> {
    use tokenim_crypto::{Envelope, Identity};

    let root = tempfile::tempdir()?;
    let r1 = relay(root.path(), "relay1").await?;
    let (alice, bob_dir, _) = offline_bob(root.path(), &[&r1]).await?;
    let ids = send_all(&alice, 2).await?;
    wait_states(&alice, &ids, "stored", 1).await?;
    assert_eq!(stats(&r1).await?["stored_messages"], 2);

    let peer = BarePeer::new(&r1).await?;
    // The ids an attacker may have seen on gossip: the real ones in Bob's mailbox.
    let bob = identity_of(&bob_dir)?;
    let real_ids: Vec<[u8; 32]> = peer
        .fetch_as(&bob)
        .await?
        .iter()
        .map(|e| Envelope::decode_checked(e).map(|e| e.id()))
        .collect::<Result<_, _>>()?;
    assert_eq!(real_ids.len(), 2);
    let mailbox = bob.mailbox_key(0).id();
    let attacker = Identity::from_seed([66; 32]).mailbox_key(0);
    let now = tokenim_node::peer::now_secs();
    let mut forged = attacker.sign_ack(&peer.relay_key, &real_ids, now);
    forged.mailbox = mailbox; // claims to be the owner, signed by someone else
    let for_other_relay = bob.mailbox_key(0).sign_ack(&[9; 32], &real_ids, now);
    let stale = bob
        .mailbox_key(0)
        .sign_ack(&peer.relay_key, &real_ids, now - 3600);
    for (what, ack) in [
        ("forged", forged.to_bytes()),
        ("for another relay", for_other_relay.to_bytes()),
        ("stale", stale.to_bytes()),
        ("garbage", vec![7; 40]),
    ] {
        let answer = peer
            .ask(pb::request::Kind::Ack(pb::AckMailbox { ack }))
            .await?;
        assert!(
            matches!(answer, pb::response::Kind::Rejected(_)),
            "{what} ack was not rejected: {answer:?}"
        );
    }
    // A valid ack for the attacker's own (unhosted) mailbox deletes nothing of Bob's.
    let own = attacker.sign_ack(&peer.relay_key, &real_ids, now);
    let answer = peer
        .ask(pb::request::Kind::Ack(pb::AckMailbox {
            ack: own.to_bytes(),
        }))
        .await?;
    assert!(
        matches!(answer, pb::response::Kind::Acked(a) if a.deleted == 0),
        "{answer:?}"
    );
    assert_eq!(
        stats(&r1).await?["stored_messages"],
        2,
        "nothing was deleted"
    );
    let metrics = r1.client.get_text("/metrics").await?;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tokenim_acks_rejected_total 4")),
        "{metrics}"
    );
    // The owner's own ack does delete them: the ids were the real ones.
    let good = bob.mailbox_key(0).sign_ack(&peer.relay_key, &real_ids, now);
    let answer = peer
        .ask(pb::request::Kind::Ack(pb::AckMailbox {
            ack: good.to_bytes(),
        }))
        .await?;
    assert!(
        matches!(answer, pb::response::Kind::Acked(a) if a.deleted == 2),
        "{answer:?}"
    );
    peer.net.shutdown().await;
    for p in [alice, r1] {
        p.stop().await?;
    }
    Ok(())
}

/// Two throwaway identities put envelopes with the same inner message id into Bob's mailbox, a
/// poison pill for the page they share (it cannot be written in one batch). Alice's message on
/// the same page still reaches Bob, the relay ends empty, and the pill is dropped and counted.
#[tokio::test]
async fn a_poison_pill_in_a_mailbox_page_holds_back_nothing_else() -> Result<()> {
    use tokenim_crypto::{Envelope, Identity, InnerKind, InnerMessage, SessionPolicy, Sessions};

    let root = tempfile::tempdir()?;
    let r1 = relay(root.path(), "relay1").await?;
    let (alice, bob_dir, flags) = offline_bob(root.path(), &[&r1]).await?;
    let bob = identity_of(&bob_dir)?.public();
    let mailbox = identity_of(&bob_dir)?.mailbox_key(0).id();
    let now = tokenim_node::peer::now_secs();
    let mut pills = Vec::new();
    for seed in [71u8, 72] {
        let stranger = Identity::from_seed([seed; 32]);
        let inner = InnerMessage {
            kind: InnerKind::Text as i32,
            id: vec![0x55; 16],
            body: "pill".into(),
            ref_ids: Vec::new(),
            sent_at_ms: now * 1000,
            sender_card: String::new(),
            write_grant: Vec::new(),
            payload: Vec::new(),
            attachments: Vec::new(),
        };
        let frame = Sessions::new(SessionPolicy::default()).seal(&stranger, &bob, &inner, now)?;
        pills.push(prost::Message::encode_to_vec(&Envelope::new(
            mailbox, frame, now, 3600,
        )));
    }
    // Strangers hold Bob's card, and with it his first-contact grant.
    let grant = identity_of(&bob_dir)?
        .mailbox_key(0)
        .first_contact_grant(now + 3600);
    let peer = BarePeer::new(&r1).await?;
    let stored = peer
        .ask(pb::request::Kind::Store(pb::StoreEnvelope {
            grant: grant.to_bytes(),
            envelopes: pills,
        }))
        .await?;
    assert!(
        matches!(stored, pb::response::Kind::Stored(_)),
        "{stored:?}"
    );
    let ids = send_all(&alice, 1).await?;
    wait_states(&alice, &ids, "stored", 1).await?;
    assert_eq!(stats(&r1).await?["stored_messages"], 3);

    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &flags).await?;
    bob_gets_each_once(&bob, &alice, 1, &[&r1]).await?;
    wait_states(&alice, &ids, "delivered", 0).await?;
    let metrics = bob.client.get_text("/metrics").await?;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tokenim_envelopes_dropped_total 1")),
        "{metrics}"
    );
    peer.net.shutdown().await;
    for p in [alice, bob, r1] {
        p.stop().await?;
    }
    Ok(())
}

/// A home relay added through the API is registered at once (announced by a
/// `mailbox_synced` event), listed in the contact card, kept across restarts, and removable.
#[tokio::test]
async fn a_home_relay_added_through_the_api_keeps_the_mailbox() -> Result<()> {
    let root = tempfile::tempdir()?;
    let r1 = relay(root.path(), "relay1").await?;
    let r1_addr = r1.p2p_addr().await?;
    let r1_peer = r1.client.identity().await?["peer_id"]
        .as_str()
        .context("peer id")?
        .to_string();
    let alice = NodeProc::start(&init(root.path(), "alice")?, LOOPBACK).await?;
    let bob = NodeProc::start(&init(root.path(), "bob")?, LOOPBACK).await?;
    assert_eq!(bob.client.get("/home-relays").await?["relays"], json!([]));

    let mut events = bob.client.events().await?;
    let added = bob
        .client
        .post("/home-relays", json!({ "addr": r1_addr }))
        .await?;
    assert_eq!(added["peer_id"], r1_peer.as_str());
    assert_eq!(added["source"], "api");
    wait_event(&mut events, "mailbox_synced", |e| {
        e["relay_peer_id"] == r1_peer.as_str()
    })
    .await?;
    let listed = bob.client.get("/home-relays").await?;
    assert_eq!(listed["relays"][0]["registered"], true, "{listed}");
    assert_eq!(stats(&r1).await?["mailboxes"], 1);
    // Adding it again changes nothing; a bad address is refused.
    bob.client
        .post("/home-relays", json!({ "addr": r1_addr }))
        .await?;
    assert_eq!(
        bob.client.get("/home-relays").await?["relays"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let err = bob
        .client
        .post("/home-relays", json!({ "addr": "/ip4/127.0.0.1/tcp/1" }))
        .await
        .expect_err("no /p2p/ part");
    assert!(err.to_string().contains("bad_request"), "{err}");

    // Bob's card now names the relay: Alice's messages wait there while he is offline.
    alice.add_contact(&bob, "bob").await?;
    bob.add_contact(&alice, "alice").await?;
    let bob_dir = bob.dir.clone();
    bob.stop().await?;
    let ids = send_all(&alice, 3).await?;
    wait_states(&alice, &ids, "stored", 1).await?;

    // Restarted without flags, Bob still drains the relay he added.
    let bob = NodeProc::start(&bob_dir, LOOPBACK).await?;
    bob_gets_each_once(&bob, &alice, 3, &[&r1]).await?;
    wait_states(&alice, &ids, "delivered", 0).await?;
    wait_stat(&r1, "stored_messages", 0, "relay mailbox never emptied").await?;

    bob.client
        .delete(&format!("/home-relays/{r1_peer}"))
        .await?;
    assert_eq!(bob.client.get("/home-relays").await?["relays"], json!([]));
    let err = bob
        .client
        .delete(&format!("/home-relays/{r1_peer}"))
        .await
        .expect_err("already removed");
    assert!(err.to_string().contains("not_found"), "{err}");
    for p in [alice, bob, r1] {
        p.stop().await?;
    }
    Ok(())
}

/// A node that publishes no direct address listens through its home relay's circuit relay:
/// Alice reaches it through the relay and delivers directly, nothing is left in a mailbox.
#[tokio::test]
async fn a_node_without_public_addresses_is_reached_through_its_relay_circuit() -> Result<()> {
    let root = tempfile::tempdir()?;
    let r1 = relay(root.path(), "relay1").await?;
    let alice = NodeProc::start(&init(root.path(), "alice")?, LOOPBACK).await?;
    let bob_dir = init(root.path(), "bob")?;
    edit_config(&bob_dir, |cfg| cfg.network.publish_direct_addrs = false)?;
    let flags = ["--home-relay".to_string(), r1.p2p_addr().await?];
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &flags).await?;
    // The reservation at the relay shows as a listen address.
    poll_until("no circuit address", || async {
        let addrs = bob.client.identity().await?["listen_addrs"].to_string();
        Ok(addrs.contains("p2p-circuit"))
    })
    .await?;
    alice.add_contact(&bob, "bob").await?;
    bob.add_contact(&alice, "alice").await?;
    let ids = send_all(&alice, 3).await?;
    wait_states(&alice, &ids, "delivered", 0).await?;
    bob_gets_each_once(&bob, &alice, 3, &[&r1]).await?;
    for id in &ids {
        let m = alice.client.get(&format!("/messages/{id}")).await?;
        assert_eq!(
            m["stored_by"], 0,
            "delivered directly, not through a mailbox: {m}"
        );
    }
    assert_eq!(stats(&r1).await?["stored_messages"], 0);
    for p in [alice, bob, r1] {
        p.stop().await?;
    }
    Ok(())
}

/// A full mailbox refuses with `quota` and signs nothing: what did not fit stays queued at
/// Alice (never "stored" without a receipt) and arrives once Bob is back; nothing is lost or
/// doubled.
#[tokio::test]
async fn a_full_mailbox_refuses_and_the_rest_waits_at_the_sender() -> Result<()> {
    let root = tempfile::tempdir()?;
    let relay_dir = init(root.path(), "relay1")?;
    edit_config(&relay_dir, |cfg| cfg.relay.mailbox_max_messages = 3)?;
    let r1 = NodeProc::start_with(&relay_dir, LOOPBACK, &["--relay".into()]).await?;
    let (alice, bob_dir, flags) = offline_bob(root.path(), &[&r1]).await?;
    let ids = send_all(&alice, 6).await?;
    wait_stat(&r1, "stored_messages", 3, "the mailbox never filled").await?;
    // Refusals are counted at the relay; Alice keeps the rest, none of it marked stored.
    let rejected = |metrics: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("tokenim_envelopes_rejected_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    poll_until("no quota refusal", || async {
        Ok(rejected(&r1.client.get_text("/metrics").await?) >= 1.0)
    })
    .await?;
    // Alice takes in the three receipts (a state event each) and keeps the other three.
    let mut events = alice.client.events().await?;
    loop {
        let mut states = Vec::new();
        for id in &ids {
            let m = alice.client.get(&format!("/messages/{id}")).await?;
            states.push(m["state"].as_str().unwrap_or_default().to_string());
        }
        let count = |s: &str| states.iter().filter(|x| *x == s).count();
        assert!(count("stored") <= 3, "stored without a receipt: {states:?}");
        if count("stored") == 3 {
            assert_eq!(count("queued"), 3, "{states:?}");
            break;
        }
        wait_event(&mut events, "message_state", |_| true).await?;
    }
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &flags).await?;
    bob_gets_each_once(&bob, &alice, 6, &[&r1]).await?;
    wait_states(&alice, &ids, "delivered", 0).await?;
    wait_stat(&r1, "stored_messages", 0, "relay mailbox never emptied").await?;
    for p in [alice, bob, r1] {
        p.stop().await?;
    }
    Ok(())
}
