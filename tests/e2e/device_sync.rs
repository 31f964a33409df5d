//! One account on several devices, what they keep in step, with real processes and a relay:
//! history handed to a new device, contacts and message requests decided on either device,
//! groups (a member on two devices), a device offline reached through its own mailbox, and two
//! linked devices that reach each other.

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::groups::{create_hikers, send as send_group, wait_group_message};
use crate::harness::{NodeProc, init, wait_event};
use crate::relay::{LOOPBACK, poll_until, relay, wait_stat};

/// Every message body `node` holds (all conversations but requests).
async fn bodies(node: &NodeProc) -> Result<Vec<String>> {
    let page = node.client.get("/messages?limit=200").await?;
    Ok(page["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["body"].as_str().map(str::to_owned))
        .collect())
}

async fn wait_body(node: &NodeProc, body: &str) -> Result<()> {
    poll_until(&format!("{body:?} never showed"), || async {
        Ok(bodies(node).await?.iter().any(|b| b == body))
    })
    .await
}

/// Links the running `device` to `first`'s account; `history` is the link request's body.
async fn link(first: &NodeProc, device: &NodeProc, name: &str, history: Value) -> Result<()> {
    let link = first.client.post("/devices/link", history).await?;
    device
        .client
        .post("/devices/join", json!({ "uri": link["uri"], "name": name }))
        .await?;
    Ok(())
}

async fn has_request_from(node: &NodeProc, peer: &NodeProc) -> Result<bool> {
    let page = node.client.get("/requests").await?;
    Ok(page["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["address"] == peer.address.as_str()))
}

#[tokio::test]
async fn a_linked_device_takes_history_contacts_requests_and_groups() -> Result<()> {
    let root = tempfile::tempdir()?;
    let r = relay(root.path(), "relay").await?;
    let home = vec!["--home-relay".to_string(), r.p2p_addr().await?];
    let start = |name: &'static str| {
        let home = home.clone();
        let dir = init(root.path(), name);
        async move { NodeProc::start_with(&dir?, LOOPBACK, &home).await }
    };
    let alice = start("alice").await?;
    let bob = start("bob").await?;
    let carol = start("carol").await?;
    wait_stat(&r, "mailboxes", 3, "not everyone registered").await?;
    for (other, name) in [(&bob, "bob"), (&carol, "carol")] {
        alice.befriend("alice", other, name).await?;
    }
    alice.send("bob", "before the laptop").await?;
    bob.send("alice", "also before").await?;
    wait_body(&alice, "also before").await?;
    let group = create_hikers(&alice).await?;
    let id = group["id"].as_str().context("group id")?.to_owned();
    poll_until("carol never joined", || async {
        Ok(carol.client.get(&format!("/groups/{id}")).await.is_ok())
    })
    .await?;

    // The laptop links and asks for the last day's history.
    let laptop = start("laptop").await?;
    wait_stat(&r, "mailboxes", 4, "the laptop never registered").await?;
    let mut laptop_events = laptop.client.events().await?;
    link(&alice, &laptop, "laptop", json!({ "history_days": 1 })).await?;
    let done = wait_event(&mut laptop_events, "sync_progress", |e| {
        e["direction"] == "receiving" && e["done"] == e["total"]
    })
    .await?;
    assert!(done["total"].as_u64() >= Some(2), "{done}");
    let held = bodies(&laptop).await?;
    for body in ["before the laptop", "also before"] {
        assert!(
            held.iter().any(|b| b == body),
            "{body:?} not handed over: {held:?}"
        );
    }

    // The account's group is on the laptop; a member's message reaches it, and what the
    // laptop writes reaches the members as Alice's and shows on her first device.
    poll_until("the group never reached the laptop", || async {
        Ok(laptop.client.get(&format!("/groups/{id}")).await.is_ok())
    })
    .await?;
    send_group(&bob, &id, "hello hikers").await?;
    wait_group_message(&laptop, &id, "hello hikers").await?;
    let mut bob_events = bob.client.events().await?;
    send_group(&laptop, &id, "from alice's laptop").await?;
    let ev = wait_event(&mut bob_events, "message", |e| {
        e["message"]["body"] == "from alice's laptop"
    })
    .await?;
    assert_eq!(ev["message"]["from"], alice.address.as_str(), "{ev}");
    wait_group_message(&carol, &id, "from alice's laptop").await?;
    wait_group_message(&alice, &id, "from alice's laptop").await?;
    let refused = laptop
        .client
        .post(&format!("/groups/{id}/members"), json!({ "member": "bob" }))
        .await;
    let why = refused.err().context("a linked device changed the group")?;
    assert!(format!("{why:#}").contains("first device"), "{why:#}");

    // A contact added on the first device shows on the laptop.
    let dave = NodeProc::start(&init(root.path(), "dave")?, LOOPBACK).await?;
    alice.befriend("alice", &dave, "dave").await?;
    poll_until("dave never reached the laptop's contacts", || async {
        let c = laptop
            .client
            .get(&format!("/contacts/{}", dave.address))
            .await;
        Ok(c.is_ok_and(|c| c["blocked"] == false))
    })
    .await?;

    // A stranger's request shows on the laptop; accepted there, it is accepted on both.
    let eve = NodeProc::start(&init(root.path(), "eve")?, LOOPBACK).await?;
    eve.add_contact(&alice, "alice").await?;
    eve.send("alice", "hi, this is eve").await?;
    poll_until("eve's request never reached the laptop", || async {
        has_request_from(&laptop, &eve).await
    })
    .await?;
    laptop
        .client
        .post(
            &format!("/requests/{}/accept", eve.address),
            json!({ "name": "eve" }),
        )
        .await?;
    poll_until("the acceptance never reached the first device", || async {
        Ok(!has_request_from(&alice, &eve).await?)
    })
    .await?;
    let at_alice = alice
        .client
        .get(&format!("/contacts/{}", eve.address))
        .await?;
    assert_eq!(at_alice["blocked"], false, "{at_alice}");
    wait_body(&alice, "hi, this is eve").await?;

    drop((laptop_events, bob_events));
    for p in [alice, bob, carol, laptop, dave, eve, r] {
        p.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn an_offline_device_catches_up_from_its_mailbox_and_linked_devices_reach_each_other()
-> Result<()> {
    let root = tempfile::tempdir()?;
    let r = relay(root.path(), "relay").await?;
    let home = vec!["--home-relay".to_string(), r.p2p_addr().await?];
    let start_in = |dir: std::path::PathBuf| {
        let home = home.clone();
        async move { NodeProc::start_with(&dir, LOOPBACK, &home).await }
    };
    let alice = start_in(init(root.path(), "alice")?).await?;
    let bob = start_in(init(root.path(), "bob")?).await?;
    let laptop_dir = init(root.path(), "laptop")?;
    let laptop = start_in(laptop_dir.clone()).await?;
    let phone = start_in(init(root.path(), "phone")?).await?;
    wait_stat(&r, "mailboxes", 4, "not everyone registered").await?;
    alice.befriend("alice", &bob, "bob").await?;
    link(&alice, &laptop, "laptop", json!({})).await?;
    link(&alice, &phone, "phone", json!({})).await?;
    // Each linked device hears of the other from the first.
    for device in [&laptop, &phone] {
        poll_until("a linked device never learnt the newest list", || async {
            Ok(device.client.get("/devices").await?["version"] == 3)
        })
        .await?;
    }
    // Alice's next message carries her devices' cards to Bob.
    let mut bob_events = bob.client.events().await?;
    alice.send("bob", "three devices now").await?;
    wait_event(&mut bob_events, "message", |e| {
        e["message"]["body"] == "three devices now"
    })
    .await?;
    poll_until("bob never learnt every device", || async {
        let c = bob
            .client
            .get(&format!("/contacts/{}", alice.address))
            .await?;
        Ok(c["device_list_version"] == 3)
    })
    .await?;

    // What the laptop sends shows on the phone: the first device told each of the other.
    laptop.send("bob", "from the laptop").await?;
    poll_until("the phone never showed the laptop's message", || async {
        let page = phone.client.get("/messages").await?;
        Ok(page["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["body"] == "from the laptop" && m["direction"] == "outgoing"))
    })
    .await?;

    // The laptop is off; Bob writes; it waits in the laptop's mailbox and arrives once.
    laptop.stop().await?;
    bob.send("alice", "while the laptop was off").await?;
    wait_body(&alice, "while the laptop was off").await?;
    wait_body(&phone, "while the laptop was off").await?;
    let laptop = start_in(laptop_dir).await?;
    wait_body(&laptop, "while the laptop was off").await?;
    let n = bodies(&laptop)
        .await?
        .iter()
        .filter(|b| *b == "while the laptop was off")
        .count();
    assert_eq!(n, 1, "the laptop holds it once");

    drop(bob_events);
    for p in [alice, bob, laptop, phone, r] {
        p.stop().await?;
    }
    Ok(())
}
