//! One account on several devices, with real processes: linking a new device with a one-time
//! link (`tokenim device link`, `tokenim init --link`), the signed list in the account's card,
//! a second use and an expired link refused with clear errors, and revoking.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tokenim_crypto::{ContactCard, Identity, LinkOffer};

use crate::harness::{NodeProc, init, metric, run_ok, tokenim, wait_event};
use crate::relay::{LOOPBACK, poll_until};

/// The device-list version of `of`'s card as `holder` holds it.
async fn held_version(holder: &NodeProc, of: &NodeProc) -> Result<Value> {
    let c = holder
        .client
        .get(&format!("/contacts/{}", of.address))
        .await?;
    Ok(c["device_list_version"].clone())
}

/// The devices the account's card lists (1 when it carries no list).
async fn devices_in_card(node: &NodeProc) -> Result<usize> {
    let card = ContactCard::from_uri(&node.card().await?, 0)?;
    Ok(card.devices()?.map_or(1, |l| l.devices().len()))
}

fn ids(list: &Value) -> Vec<String> {
    list["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_new_device_links_once_and_is_revoked() -> Result<()> {
    let root = tempfile::tempdir()?;
    let alice = NodeProc::start(&init(root.path(), "alice")?, LOOPBACK).await?;
    let mut events = alice.client.events().await?;
    let before = alice.client.get("/devices").await?;
    assert_eq!(before["version"], 1, "{before}");
    assert_eq!(ids(&before).len(), 1, "{before}");
    assert_eq!(devices_in_card(&alice).await?, 1);

    // The first device shows a link; the new device joins with it.
    let uri = run_ok(tokenim(&alice.dir).args(["device", "link"]))?
        .trim()
        .to_owned();
    assert!(uri.starts_with("tokenim-link:"), "{uri}");
    let laptop_dir = root.path().join("laptop");
    let joined =
        run_ok(tokenim(&laptop_dir).args(["init", "--link", &uri, "--device-name", "laptop"]))?;
    assert!(joined.contains(&alice.address), "{joined}");
    wait_event(&mut events, "device_linked", |_| true).await?;
    let list = alice.client.get("/devices").await?;
    assert_eq!(list["version"], 2, "{list}");
    let laptop = list["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"] == "laptop")
        .context("laptop listed")?;
    let laptop_id = laptop["id"].as_str().context("id")?.to_owned();
    assert_eq!(laptop["primary"], false, "{list}");
    assert_eq!(
        devices_in_card(&alice).await?,
        2,
        "the card carries the list"
    );

    // The link was for one device: a second use is refused, and nothing changes.
    let again = tokenim(&root.path().join("thief"))
        .args(["init", "--link", &uri])
        .output()?;
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already used"), "{err}");
    assert_eq!(alice.client.get("/devices").await?["version"], 2);

    // An expired link fails on the new device with a clear reason.
    let me = Identity::from_seed([9; 32]);
    let stale = LinkOffer::with_secret(
        me.public(),
        [1; 32],
        libp2p::PeerId::random().to_bytes(),
        vec!["/ip4/127.0.0.1/tcp/9".into()],
        1,
    )?;
    let late = tokenim(&root.path().join("late"))
        .args(["init", "--link", stale.to_uri().as_str()])
        .output()?;
    assert!(!late.status.success());
    let err = String::from_utf8_lossy(&late.stderr);
    assert!(err.contains("expired"), "{err}");

    // The linked device knows its account and cannot link others.
    let laptop_node = NodeProc::start(&laptop_dir, LOOPBACK).await?;
    let seen = laptop_node.client.get("/devices").await?;
    assert_eq!(seen["account"], alice.address.as_str(), "{seen}");
    let me_there = seen["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["this_device"] == true)
        .context("this device listed")?;
    assert_eq!(me_there["id"], laptop_id.as_str(), "{seen}");
    let refused = laptop_node.client.post("/devices/link", json!({})).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("conflict")),
        "{refused:?}"
    );

    // Revoked: off the list and out of the card.
    let after = alice
        .client
        .delete(&format!("/devices/{laptop_id}"))
        .await?;
    assert_eq!(after["version"], 3, "{after}");
    assert_eq!(ids(&after), ids(&before));
    wait_event(&mut events, "device_revoked", |e| {
        e["device"] == laptop_id.as_str()
    })
    .await?;
    assert_eq!(devices_in_card(&alice).await?, 1);
    let first = ids(&before)[0].clone();
    let primary = alice.client.delete(&format!("/devices/{first}")).await;
    assert!(
        primary
            .as_ref()
            .is_err_and(|e| e.to_string().contains("bad_request")),
        "{primary:?}"
    );
    drop(events);
    for p in [alice, laptop_node] {
        p.stop().await?;
    }
    Ok(())
}

/// A new device gets the account's contacts; a contact learns each new device list from the
/// next message, and refuses a card whose list is older than the one it holds.
#[tokio::test]
async fn contacts_learn_new_device_lists_and_refuse_rolled_back_ones() -> Result<()> {
    let root = tempfile::tempdir()?;
    let alice = NodeProc::start(&init(root.path(), "alice")?, LOOPBACK).await?;
    let bob = NodeProc::start(&init(root.path(), "bob")?, LOOPBACK).await?;
    alice.befriend("alice", &bob, "bob").await?;
    let mut bob_events = bob.client.events().await?;
    let say = |body: &'static str| {
        let alice = &alice;
        async move { alice.send("bob", body).await }
    };
    say("before").await?;
    wait_event(&mut bob_events, "message", |e| {
        e["message"]["body"] == "before"
    })
    .await?;
    assert_eq!(held_version(&bob, &alice).await?, Value::Null);

    let uri = run_ok(tokenim(&alice.dir).args(["device", "link"]))?
        .trim()
        .to_owned();
    let laptop_dir = root.path().join("laptop");
    run_ok(tokenim(&laptop_dir).args(["init", "--link", &uri]))?;
    let with_laptop = alice.card().await?;
    // The new device got the account's contacts with the link.
    let laptop = NodeProc::start(&laptop_dir, LOOPBACK).await?;
    let contacts = laptop.client.get("/contacts").await?;
    let names: Vec<&str> = contacts["contacts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["bob"], "{contacts}");
    laptop.stop().await?;
    // The session with Bob is open; the changed card still goes with the next message.
    say("linked").await?;
    wait_event(&mut bob_events, "message", |e| {
        e["message"]["body"] == "linked"
    })
    .await?;
    assert_eq!(held_version(&bob, &alice).await?, json!(2));

    let list = alice.client.get("/devices").await?;
    let laptop = ids(&list).into_iter().find(|id| *id != ids(&list)[0]);
    let laptop = laptop.context("laptop listed")?;
    alice.client.delete(&format!("/devices/{laptop}")).await?;
    say("revoked").await?;
    wait_event(&mut bob_events, "message", |e| {
        e["message"]["body"] == "revoked"
    })
    .await?;
    assert_eq!(held_version(&bob, &alice).await?, json!(3));

    // The card that still lists the revoked device is refused, and v3 stays.
    let rolled_back = bob
        .client
        .post("/contacts", json!({ "card": with_laptop }))
        .await;
    assert!(
        rolled_back
            .as_ref()
            .is_err_and(|e| e.to_string().contains("device list refused")),
        "{rolled_back:?}"
    );
    assert_eq!(held_version(&bob, &alice).await?, json!(3));
    drop(bob_events);
    for p in [alice, bob] {
        p.stop().await?;
    }
    Ok(())
}

/// A message to an account reaches each of its devices, each once; a linked device's message
/// is the account's; after a revocation the revoked device is sent nothing.
#[tokio::test]
async fn a_message_reaches_every_device_of_the_account() -> Result<()> {
    let root = tempfile::tempdir()?;
    let alice = NodeProc::start(&init(root.path(), "alice")?, LOOPBACK).await?;
    let bob = NodeProc::start(&init(root.path(), "bob")?, LOOPBACK).await?;
    alice.befriend("alice", &bob, "bob").await?;
    // The laptop runs, then joins (so the card it hands over names where it listens now).
    let laptop = NodeProc::start(&init(root.path(), "laptop")?, LOOPBACK).await?;
    let link = alice.client.post("/devices/link", json!({})).await?;
    laptop
        .client
        .post(
            "/devices/join",
            json!({ "uri": link["uri"], "name": "laptop" }),
        )
        .await?;
    let mut bob_events = bob.client.events().await?;
    // Alice's next message carries her new card and her laptop's card.
    alice.send("bob", "I have a laptop now").await?;
    wait_event(&mut bob_events, "message", |e| {
        e["message"]["body"] == "I have a laptop now"
    })
    .await?;

    let delivered = || async { metric(&bob, "tokenim_messages_delivered_total").await };
    let settled = || async {
        poll_until("bob's outbox never emptied", || async {
            Ok(metric(&bob, "tokenim_outbox_depth").await? == 0)
        })
        .await
    };
    settled().await?;
    let before = delivered().await?;
    let to_both = bob.send("alice", "to both").await?;
    let to_both = to_both["id"].as_str().context("id")?.to_owned();
    for device in [&alice, &laptop] {
        poll_until("a device never got bob's message", || async {
            Ok(bodies(device)
                .await?
                .iter()
                .filter(|b| *b == "to both")
                .count()
                == 1)
        })
        .await?;
    }
    settled().await?;
    assert_eq!(delivered().await? - before, 2, "one copy per device");
    for device in [&alice, &laptop] {
        let n = bodies(device)
            .await?
            .iter()
            .filter(|b| *b == "to both")
            .count();
        assert_eq!(n, 1, "each device has it once");
    }

    // Read on the laptop: read on the first device too, and Bob sees it read.
    laptop
        .client
        .post(&format!("/messages/{to_both}/read"), json!({}))
        .await?;
    for (node, state) in [(&alice, "read"), (&bob, "read")] {
        poll_until("the read state never spread", || async {
            let m = node.client.get(&format!("/messages/{to_both}")).await?;
            Ok(m["state"] == state)
        })
        .await?;
    }

    // The laptop writes from the account: Bob sees Alice, not a stranger.
    laptop.send("bob", "from the laptop").await?;
    let ev = wait_event(&mut bob_events, "message", |e| {
        e["message"]["body"] == "from the laptop"
    })
    .await?;
    assert_eq!(ev["message"]["from"], alice.address.as_str(), "{ev}");
    let requests = bob.client.get("/requests").await?;
    assert_eq!(requests["requests"], json!([]), "{requests}");
    // What one device sent shows as sent on the other.
    for (device, body) in [
        (&laptop, "I have a laptop now"),
        (&alice, "from the laptop"),
    ] {
        poll_until(
            "a sent message never showed on the other device",
            || async {
                let page = device.client.get("/messages").await?;
                Ok(page["messages"].as_array().into_iter().flatten().any(|m| {
                    m["body"] == body
                        && m["direction"] == "outgoing"
                        && m["to"] == bob.address.as_str()
                }))
            },
        )
        .await?;
    }

    // Revoked: Alice's next message carries the list without the laptop; Bob stops sealing
    // to it.
    let list = alice.client.get("/devices").await?;
    let laptop_id = ids(&list).into_iter().nth(1).context("laptop listed")?;
    alice
        .client
        .delete(&format!("/devices/{laptop_id}"))
        .await?;
    alice.send("bob", "laptop gone").await?;
    wait_event(&mut bob_events, "message", |e| {
        e["message"]["body"] == "laptop gone"
    })
    .await?;
    settled().await?;
    let before = delivered().await?;
    bob.send("alice", "only alice").await?;
    poll_until("alice never got it", || async {
        Ok(bodies(&alice).await?.iter().any(|b| b == "only alice"))
    })
    .await?;
    settled().await?;
    assert_eq!(
        delivered().await? - before,
        1,
        "no copy for the revoked laptop"
    );
    // Nor does it speak for Alice any more: to Bob it is a stranger now.
    laptop.send("bob", "still alice?").await?;
    let ev = wait_event(&mut bob_events, "message_request", |e| {
        e["message"]["body"] == "still alice?"
    })
    .await?;
    assert_ne!(ev["message"]["from"], alice.address.as_str(), "{ev}");
    drop(bob_events);
    for p in [alice, bob, laptop] {
        p.stop().await?;
    }
    Ok(())
}

async fn bodies(node: &NodeProc) -> Result<Vec<String>> {
    let page = node.client.get("/messages").await?;
    Ok(page["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["body"].as_str().map(str::to_owned))
        .collect())
}
