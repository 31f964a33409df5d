//! Contact consent against real processes: a stranger's messages wait as a request and
//! nothing goes back to the stranger until the user accepts; blocked peers are dropped;
//! removed contacts stay removed.

use anyhow::{Context, Result};
use serde_json::Value;

use crate::harness::{NodeProc, init, metric, run_ok, tokenim};
use crate::relay::{LOOPBACK, poll_until, relay, wait_stat, wait_states};

async fn requests(node: &NodeProc) -> Result<Vec<Value>> {
    Ok(node.client.get("/requests").await?["requests"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

async fn held_from(node: &NodeProc, peer: &str) -> Result<usize> {
    Ok(requests(node)
        .await?
        .iter()
        .find(|r| r["address"] == peer)
        .and_then(|r| r["messages"].as_u64())
        .unwrap_or(0) as usize)
}

async fn state_of(node: &NodeProc, id: &str) -> Result<String> {
    let m = node.client.get(&format!("/messages/{id}")).await?;
    Ok(m["state"].as_str().unwrap_or_default().to_owned())
}

async fn send_ids(from: &NodeProc, to: &str, bodies: &[&str]) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for b in bodies {
        let m = from.send(to, b).await?;
        ids.push(m["id"].as_str().context("id")?.to_owned());
    }
    Ok(ids)
}

#[tokio::test]
async fn a_strangers_messages_wait_as_a_request_and_nothing_goes_back_until_accepted() -> Result<()>
{
    let root = tempfile::tempdir()?;
    let r = relay(root.path(), "relay").await?;
    let home = vec!["--home-relay".to_string(), r.p2p_addr().await?];
    let alice_dir = init(root.path(), "alice")?;
    let alice = NodeProc::start_with(&alice_dir, LOOPBACK, &home).await?;
    wait_stat(&r, "mailboxes", 1, "alice never registered").await?;
    let carol = NodeProc::start(&init(root.path(), "carol")?, LOOPBACK).await?;
    // Carol has Alice's card (cards are meant to be shared); Alice never added Carol.
    carol.add_contact(&alice, "alice").await?;
    alice.stop().await?;

    let ids = send_ids(
        &carol,
        "alice",
        &["hello, we met at the meetup", "are you there?"],
    )
    .await?;
    wait_states(&carol, &ids, "stored", 0).await?;
    let alice = NodeProc::start_with(&alice_dir, LOOPBACK, &home).await?;
    poll_until("the request never arrived", || async {
        Ok(held_from(&alice, &carol.address).await? == 2)
    })
    .await?;

    // A request, not a contact: not listed, not in the timeline, readable by peer.
    let contacts = alice.client.get("/contacts").await?;
    assert_eq!(contacts["contacts"], serde_json::json!([]), "{contacts}");
    let timeline = alice.client.get("/messages").await?;
    assert_eq!(timeline["messages"], serde_json::json!([]), "{timeline}");
    let held = alice
        .client
        .get(&format!("/messages?peer={}", carol.address))
        .await?;
    assert_eq!(held["messages"].as_array().map(Vec::len), Some(2), "{held}");
    // Nothing went back: no delivery was even attempted (a contact's drained messages would
    // have been receipted at once), and Alice cannot write to Carol yet.
    assert_eq!(metric(&alice, "tokenim_delivery_attempts_total").await?, 0);
    let refused = alice
        .send(&carol.address, "hi")
        .await
        .expect_err("a request is not written to");
    assert!(refused.to_string().contains("conflict"), "{refused:#}");
    for id in &ids {
        assert_eq!(state_of(&carol, id).await?, "stored");
    }
    let listed = run_ok(tokenim(&alice.dir).args(["requests", "list"]))?;
    assert!(listed.contains(&carol.address), "{listed}");

    // Accepted: the messages join the conversation and are receipted.
    run_ok(tokenim(&alice.dir).args(["requests", "accept", &carol.address, "--name", "carol"]))?;
    wait_states(&carol, &ids, "delivered", 0).await?;
    let timeline = alice.client.get("/messages").await?;
    assert_eq!(timeline["messages"].as_array().map(Vec::len), Some(2));
    assert!(requests(&alice).await?.is_empty());
    let reply = send_ids(&alice, "carol", &["hi Carol"]).await?;
    wait_states(&alice, &reply, "delivered", 0).await?;

    // Blocked: dropped unread.
    run_ok(tokenim(&alice.dir).args(["contact", "block", &carol.address]))?;
    send_ids(&carol, "alice", &["blocked?"]).await?;
    poll_until("the blocked message was never dropped", || async {
        Ok(metric(&alice, "tokenim_from_blocked_total").await? >= 1)
    })
    .await?;
    let convo = alice
        .client
        .get(&format!("/messages?peer={}", carol.address))
        .await?;
    assert!(!convo.to_string().contains("blocked?"), "{convo}");

    // Unblocked (a named contact again), then removed: her next message is a request again.
    run_ok(tokenim(&alice.dir).args(["contact", "unblock", &carol.address]))?;
    run_ok(tokenim(&alice.dir).args(["contact", "remove", &carol.address]))?;
    send_ids(&carol, "alice", &["still there?"]).await?;
    poll_until("the removed contact's message is not a request", || async {
        Ok(held_from(&alice, &carol.address).await? == 1)
    })
    .await?;
    let contacts = run_ok(tokenim(&alice.dir).args(["contact", "list"]))?;
    assert!(!contacts.contains(&carol.address), "{contacts}");
    for p in [alice, carol, r] {
        p.stop().await?;
    }
    Ok(())
}
