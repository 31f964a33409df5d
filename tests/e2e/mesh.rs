//! The relay mesh's gossip, with real relay processes: what may travel on the mailbox shard
//! topics, who may publish there, and who hears it.

use anyhow::{Context, Result};
use libp2p::PeerId;
use prometheus_client::registry::Registry;
use tokenim_crypto::ed25519_dalek::SigningKey;
use tokenim_crypto::{Envelope, Identity, MailboxId, RelayedEnvelope};
use tokenim_node::peer::{self, NetworkConfig, NetworkHandle, wire::pb};

use crate::harness::{NodeProc, counter, metric};
use crate::relay::{BarePeer, LOOPBACK, poll_until, stats, two_relays, wait_stat};

/// An in-process libp2p peer on one shard topic, dialing a relay. Its key comes from `seed`;
/// it plays a relay of the mesh when the relays list its peer id, a plain peer otherwise.
struct TopicPeer {
    net: NetworkHandle,
    /// The key behind its peer id, which it signs relayed envelopes with.
    key: SigningKey,
    topic: String,
    /// Its own libp2p counters: what it heard on the topic.
    registry: Registry,
}

impl TopicPeer {
    fn peer_id(seed: u8) -> PeerId {
        libp2p::identity::Keypair::ed25519_from_bytes([seed; 32])
            .expect("an Ed25519 seed")
            .public()
            .to_peer_id()
    }

    async fn start(seed: u8, relay_addr: &str, topic: &str) -> Result<Self> {
        let mut cfg = NetworkConfig::peer(LOOPBACK.parse()?);
        cfg.bootstrap = vec![relay_addr.parse()?];
        cfg.topics = vec![topic.to_string()];
        let mut registry = Registry::default();
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes([seed; 32])?;
        let (net, _events, _task) = peer::spawn(keypair, cfg, &mut registry).await?;
        Ok(Self {
            net,
            key: SigningKey::from_bytes(&[seed; 32]),
            topic: topic.to_string(),
            registry,
        })
    }

    fn publish(&self, kind: pb::gossip::Kind) {
        let data = prost::Message::encode_to_vec(&pb::Gossip { kind: Some(kind) });
        self.net.publish(self.topic.clone(), data);
    }

    /// Gossipsub messages this peer received.
    fn heard(&self) -> Result<u64> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(counter(&text, "libp2p_gossipsub_messages_total "))
    }

    async fn wait_connected(&self, relay: &NodeProc) -> Result<()> {
        let relay: PeerId = relay.client.identity().await?["peer_id"]
            .as_str()
            .context("peer id")?
            .parse()?;
        poll_until("the topic peer never connected to the relay", || async {
            Ok(self
                .net
                .info()
                .await?
                .connected
                .iter()
                .any(|(p, _)| *p == relay))
        })
        .await
    }
}

/// `envelope`, as a relay with `key` publishes it after storing it.
fn relayed(key: &SigningKey, envelope: &Envelope) -> pb::gossip::Kind {
    let bytes = prost::Message::encode_to_vec(envelope);
    pb::gossip::Kind::Relayed(RelayedEnvelope::sign(key, bytes, peer::now_secs()).to_bytes())
}

fn shard_topic(mailbox: &MailboxId) -> String {
    let shard = u16::from_be_bytes([mailbox.0[0], mailbox.0[1]]) % 64;
    format!("tokenim/mailbox/1/{shard}")
}

/// A valid envelope for `mailbox`, distinct for each `n`.
fn envelope(mailbox: MailboxId, n: u32) -> Envelope {
    Envelope::new(mailbox, n.to_be_bytes().repeat(128), peer::now_secs(), 600)
}

/// A perfectly valid envelope for a mailbox hosted at relay2, signed by a key outside the mesh
/// and put on the shard topic at relay1 (by a plain peer, and forwarded by a peer of the
/// mesh), never lands at relay2; an envelope a relay of the mesh signed does.
#[tokio::test]
async fn only_envelopes_a_relay_of_the_mesh_signed_cross_the_shard_topics() -> Result<()> {
    let root = tempfile::tempdir()?;
    // Peers 11 and 12 are relays of the mesh as far as the relays know; 13 is not.
    let mesh = [TopicPeer::peer_id(11), TopicPeer::peer_id(12)];
    let (r1, r1_addr, r2) = two_relays(root.path(), &mesh).await?;
    let owner = Identity::from_seed([5; 32]);
    let mailbox = owner.mailbox_key(0).id();
    let at_r2 = BarePeer::new(&r2).await?;
    at_r2.register_as(&owner).await?;
    let topic = shard_topic(&mailbox);
    let member = TopicPeer::start(11, &r1_addr, &topic).await?;
    let forwarder = TopicPeer::start(12, &r1_addr, &topic).await?;
    let outsider = TopicPeer::start(13, &r1_addr, &topic).await?;

    // The outsider signs with its own key and publishes; a peer of the mesh forwards another
    // copy it signed; until relay1 has received some (publishing fails quietly until the
    // topic peers are known).
    let (mut n, mut unvouched, mut mirrored) = (0u32, Vec::new(), Vec::new());
    poll_until(
        "relay1 never received the envelopes signed outside the mesh",
        || {
            for by in [&outsider, &forwarder] {
                n += 1;
                let e = envelope(mailbox, n);
                unvouched.push(e.id());
                by.publish(relayed(&outsider.key, &e));
            }
            async { Ok(metric(&r1, "libp2p_gossipsub_messages_total ").await? >= 1) }
        },
    )
    .await?;
    // Then a relay of the mesh: once relay2 has its copy, whatever relay1 forwarded before it
    // would have reached relay2 too. The outsider keeps trying meanwhile.
    poll_until("the mesh relay's envelope never mirrored to relay2", || {
        n += 1;
        let e = envelope(mailbox, n);
        unvouched.push(e.id());
        outsider.publish(relayed(&outsider.key, &e));
        n += 1;
        let e = envelope(mailbox, n);
        mirrored.push(e.id());
        member.publish(relayed(&member.key, &e));
        async { Ok(stats(&r2).await?["stored_messages"].as_u64().unwrap_or(0) >= 1) }
    })
    .await?;
    let held = at_r2.fetch_as(&owner).await?;
    assert!(!held.is_empty());
    for bytes in held {
        let id = Envelope::decode_checked(&bytes)?.id();
        assert!(
            !unvouched.contains(&id),
            "an envelope signed outside the mesh landed at relay2"
        );
        assert!(mirrored.contains(&id));
    }
    assert!(metric(&r1, "tokenim_gossip_unvouched_total ").await? >= 1);
    for p in [r1, r2] {
        p.stop().await?;
    }
    Ok(())
}

/// A plain peer subscribed to a shard topic at relay1 hears nothing of what the mesh gossips
/// there (envelopes mirrored to relay2, the tombstone of the owner's ack), though the mesh
/// works.
#[tokio::test]
async fn a_peer_outside_the_mesh_hears_nothing_on_the_shard_topics() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (r1, r1_addr, r2) = two_relays(root.path(), &[]).await?;
    let owner = Identity::from_seed([6; 32]);
    let mailbox = owner.mailbox_key(0).id();
    let (at_r1, at_r2) = (BarePeer::new(&r1).await?, BarePeer::new(&r2).await?);
    at_r1.register_as(&owner).await?;
    at_r2.register_as(&owner).await?;
    let outsider = TopicPeer::start(13, &r1_addr, &shard_topic(&mailbox)).await?;
    outsider.wait_connected(&r1).await?;

    let mut ids = Vec::new();
    for n in 0..5u32 {
        let e = envelope(mailbox, n);
        ids.push(e.id());
        // The owner's grant for some contact: relays store only with one.
        let grant = owner.mailbox_key(0).contact_grant(&[9; 32], u64::MAX);
        let store = pb::request::Kind::Store(pb::StoreEnvelope {
            grant: grant.to_bytes(),
            envelopes: vec![prost::Message::encode_to_vec(&e)],
        });
        let answer = at_r1.ask(store).await?;
        anyhow::ensure!(
            matches!(answer, pb::response::Kind::Stored(_)),
            "{answer:?}"
        );
        wait_stat(
            &r2,
            "stored_messages",
            u64::from(n) + 1,
            "relay2 got no copy",
        )
        .await?;
    }
    let ack = owner
        .mailbox_key(0)
        .sign_ack(&at_r1.relay_key, &ids, peer::now_secs());
    let answer = at_r1
        .ask(pb::request::Kind::Ack(pb::AckMailbox {
            ack: ack.to_bytes(),
        }))
        .await?;
    anyhow::ensure!(
        matches!(answer, pb::response::Kind::Acked(a) if a.deleted == 5),
        "{answer:?}"
    );
    wait_stat(
        &r2,
        "stored_messages",
        0,
        "the tombstone never emptied relay2",
    )
    .await?;
    assert_eq!(
        outsider.heard()?,
        0,
        "a peer outside the mesh heard the mesh's gossip"
    );
    for p in [r1, r2] {
        p.stop().await?;
    }
    Ok(())
}

/// A peer of the mesh publishes junk on a shard topic at one relay: that relay rejects it
/// before forwarding (so the other relay of the mesh never sees it) and scores the peer down,
/// while a valid relayed envelope from another peer of the mesh still crosses.
#[tokio::test]
async fn junk_on_a_shard_topic_is_rejected_at_the_first_relay_and_goes_no_further() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mesh = [TopicPeer::peer_id(21), TopicPeer::peer_id(22)];
    let (r1, r1_addr, r2) = two_relays(root.path(), &mesh).await?;
    let mailbox = Identity::from_seed([5; 32]).mailbox_key(0).id();
    let topic = shard_topic(&mailbox);
    let junk = TopicPeer::start(21, &r1_addr, &topic).await?;
    let honest = TopicPeer::start(22, &r1_addr, &topic).await?;
    // Junk until relay1 has seen some (publishing fails quietly until the mesh has formed).
    let mut n = 0u32;
    poll_until("relay1 never saw the junk", || {
        n += 1;
        junk.net
            .publish(topic.clone(), format!("junk {n}").into_bytes());
        junk.publish(pb::gossip::Kind::Relayed(n.to_be_bytes().repeat(16)));
        async { Ok(metric(&r1, "tokenim_envelopes_rejected_total ").await? >= 2) }
    })
    .await?;
    // Then a valid envelope from another peer: once relay2 has it, anything relay1 had
    // forwarded before it would have reached relay2 too.
    poll_until("the valid envelope never crossed the mesh", || {
        n += 1;
        honest.publish(relayed(&honest.key, &envelope(mailbox, n)));
        async { Ok(metric(&r2, "libp2p_gossipsub_messages_total ").await? >= 1) }
    })
    .await?;
    for name in [
        "tokenim_envelopes_rejected_total ",
        "tokenim_gossip_unvouched_total ",
    ] {
        assert_eq!(
            metric(&r2, name).await?,
            0,
            "junk crossed the mesh to relay2 ({name})"
        );
    }
    for p in [r1, r2] {
        p.stop().await?;
    }
    Ok(())
}
