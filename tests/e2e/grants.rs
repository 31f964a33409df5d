//! Owner-issued write grants at a real relay: nothing is stored without one, strangers share a
//! small first-contact window per drain, and a contact's own grant is not held back by them.

use anyhow::{Context, Result};
use tokenim_crypto::Envelope;
use tokenim_node::peer::{now_secs, wire::pb};

use crate::harness::{NodeProc, init, metric};
use crate::relay::{
    BarePeer, LOOPBACK, edit_config, identity_of, offline_bob, poll_until, stats, wait_stat,
};

async fn send_n(from: &NodeProc, to: &str, n: usize) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..n {
        let m = from.send(to, &format!("{to} {i}")).await?;
        ids.push(m["id"].as_str().context("id")?.to_owned());
    }
    Ok(ids)
}

async fn stored(node: &NodeProc, ids: &[String]) -> Result<usize> {
    let mut n = 0;
    for id in ids {
        let m = node.client.get(&format!("/messages/{id}")).await?;
        n += usize::from(m["state"] == "stored");
    }
    Ok(n)
}

#[tokio::test]
async fn a_relay_stores_only_under_the_owners_grants_and_strangers_cannot_fill_a_mailbox()
-> Result<()> {
    let root = tempfile::tempdir()?;
    let relay_dir = init(root.path(), "relay")?;
    edit_config(&relay_dir, |c| c.relay.first_contact_per_mailbox = 3)?;
    let r = NodeProc::start_with(&relay_dir, LOOPBACK, &["--relay".into()]).await?;
    // Alice and Bob are contacts, but Alice has not heard from Bob yet: she holds only his
    // card's first-contact grant, like a stranger. One message from Bob hands her his own.
    let (alice, bob_dir, flags) = offline_bob(root.path(), &[&r]).await?;
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &flags).await?;
    let hello = send_n(&bob, "alice", 1).await?;
    poll_until("bob's hello never arrived", || async {
        let m = bob.client.get(&format!("/messages/{}", hello[0])).await?;
        Ok(m["state"] == "delivered")
    })
    .await?;
    let carol = NodeProc::start(&init(root.path(), "carol")?, LOOPBACK).await?;
    carol.add_contact(&bob, "bob").await?;
    bob.stop().await?;

    // No grant at all: refused.
    let bob_mailbox = identity_of(&bob_dir)?.mailbox_key(0).id();
    let now = now_secs();
    let plain = BarePeer::new(&r).await?;
    let envelope = Envelope::new(bob_mailbox, vec![0; 512], now, 600);
    let answer = plain
        .ask(pb::request::Kind::Store(pb::StoreEnvelope {
            envelopes: vec![prost::Message::encode_to_vec(&envelope)],
            grant: Vec::new(),
        }))
        .await?;
    assert!(
        matches!(&answer, pb::response::Kind::Rejected(x) if x.code == pb::RejectCode::Forbidden as i32),
        "{answer:?}"
    );

    // Carol, a stranger, gets three in; the rest wait at her node.
    let from_carol = send_n(&carol, "bob", 5).await?;
    poll_until("the relay never refused carol", || async {
        Ok(metric(&r, "tokenim_envelopes_rejected_total").await? >= 3)
    })
    .await?;
    poll_until("carol's first three were never stored", || async {
        Ok(stored(&carol, &from_carol).await? == 3)
    })
    .await?;
    // Alice writes under her own grant: Carol's window does not hold her back.
    let from_alice = send_n(&alice, "bob", 5).await?;
    poll_until("alice's messages were held back", || async {
        Ok(stored(&alice, &from_alice).await? == 5)
    })
    .await?;
    assert_eq!(stats(&r).await?["stored_messages"], 8);

    // Bob drains: Alice's messages are in, Carol's are a request that fills up as she retries.
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &flags).await?;
    wait_stat(&r, "stored_messages", 0, "bob never drained").await?;
    poll_until("carol's messages never all reached bob", || async {
        let requests = bob.client.get("/requests").await?;
        Ok(requests["requests"][0]["messages"] == 5)
    })
    .await?;
    let inbox = bob.client.get("/messages").await?;
    let from_alice_seen = inbox["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["direction"] == "incoming")
        .count();
    assert_eq!(from_alice_seen, 5, "{inbox}");
    plain.net.shutdown().await;
    for p in [alice, bob, carol, r] {
        p.stop().await?;
    }
    Ok(())
}

/// An operator who lists the mailboxes it hosts: the listed user registers, anyone else is
/// refused, and the refusal shows in that node's home relay status.
#[tokio::test]
async fn an_allow_listed_relay_hosts_only_the_mailboxes_its_operator_listed() -> Result<()> {
    use tokenim_node::config::Registration;

    let root = tempfile::tempdir()?;
    let (bob_dir, carol_dir) = (init(root.path(), "bob")?, init(root.path(), "carol")?);
    let listed = identity_of(&bob_dir)?.mailbox_key(0).id().to_string();
    let relay_dir = init(root.path(), "relay")?;
    edit_config(&relay_dir, |c| {
        c.relay.registration = Registration::Allowlist;
        c.relay.allowed_mailboxes = vec![listed];
    })?;
    let r = NodeProc::start_with(&relay_dir, LOOPBACK, &["--relay".into()]).await?;
    let flags = vec!["--home-relay".to_string(), r.p2p_addr().await?];
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &flags).await?;
    wait_stat(&r, "mailboxes", 1, "the listed mailbox never registered").await?;
    let carol = NodeProc::start_with(&carol_dir, LOOPBACK, &flags).await?;
    poll_until("carol's refusal never showed", || async {
        let relays = carol.client.get("/home-relays").await?;
        Ok(relays["relays"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("listed mailboxes only")))
    })
    .await?;
    assert_eq!(stats(&r).await?["mailboxes"], 1);
    for p in [bob, carol, r] {
        p.stop().await?;
    }
    Ok(())
}
