//! Group conversations with real processes: a group of three where two members are not each
//! other's contacts, one sealed frame per message reaching every member, and a member who was
//! offline getting the group's messages from its mailbox.

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::harness::{NodeProc, init, metric, run_ok, tokenim, wait_event};
use crate::relay::{LOOPBACK, edit_config, poll_until, relay, wait_stat};

pub(crate) async fn group_bodies(node: &NodeProc, id: &str) -> Result<Vec<String>> {
    let page = node.client.get(&format!("/groups/{id}/messages")).await?;
    Ok(page["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["body"].as_str().map(str::to_owned))
        .collect())
}

pub(crate) async fn wait_group_message(node: &NodeProc, id: &str, body: &str) -> Result<()> {
    poll_until(
        &format!("{body:?} never reached {}", node.address),
        // Until its welcome arrives the node does not know the group (404): keep waiting.
        || async {
            let bodies = group_bodies(node, id).await.unwrap_or_default();
            Ok(bodies.iter().any(|b| b == body))
        },
    )
    .await
}

/// `owner` makes the group "hikers" with its contacts bob and carol.
pub(crate) async fn create_hikers(owner: &NodeProc) -> Result<Value> {
    owner
        .client
        .post(
            "/groups",
            json!({ "name": "hikers", "members": ["bob", "carol"] }),
        )
        .await
}

pub(crate) async fn send(node: &NodeProc, id: &str, body: &str) -> Result<Value> {
    node.client
        .post(&format!("/groups/{id}/messages"), json!({ "body": body }))
        .await
}

#[tokio::test]
async fn a_group_of_three_talks_in_every_direction_and_an_offline_member_catches_up() -> Result<()>
{
    let root = tempfile::tempdir()?;
    let r = relay(root.path(), "relay").await?;
    let home = vec!["--home-relay".to_string(), r.p2p_addr().await?];
    let alice = NodeProc::start_with(&init(root.path(), "alice")?, LOOPBACK, &home).await?;
    let bob = NodeProc::start_with(&init(root.path(), "bob")?, LOOPBACK, &home).await?;
    let carol_dir = init(root.path(), "carol")?;
    let carol = NodeProc::start_with(&carol_dir, LOOPBACK, &home).await?;
    wait_stat(&r, "mailboxes", 3, "not everyone registered").await?;
    // Alice knows both; Bob and Carol know only Alice.
    for (other, name) in [(&bob, "bob"), (&carol, "carol")] {
        alice.befriend("alice", other, name).await?;
    }

    let mut bob_events = bob.client.events().await?;
    let group = create_hikers(&alice).await?;
    let id = group["id"].as_str().context("group id")?.to_owned();
    assert_eq!(group["role"], "owner", "{group}");
    assert_eq!(
        group["members"].as_array().map(Vec::len),
        Some(3),
        "{group}"
    );
    wait_event(&mut bob_events, "group_updated", |e| {
        e["group"] == id.as_str()
    })
    .await?;
    poll_until("carol never joined", || async {
        Ok(carol.client.get(&format!("/groups/{id}")).await.is_ok())
    })
    .await?;
    let at_carol = carol.client.get(&format!("/groups/{id}")).await?;
    assert_eq!(at_carol["name"], "hikers");
    assert_eq!(at_carol["role"], "member");

    // Every member writes; everyone else reads it (Bob and Carol through the group's cards).
    let sent = send(&alice, &id, "from alice").await?;
    let sent_id = sent["id"].as_str().context("id")?.to_owned();
    poll_until("alice's message never counted both members", || async {
        let m = alice.client.get(&format!("/messages/{sent_id}")).await?;
        Ok(m["reached"] == 2)
    })
    .await?;
    let ev = wait_event(&mut bob_events, "message", |e| {
        e["message"]["body"] == "from alice"
    })
    .await?;
    assert_eq!(ev["message"]["group"], id.as_str(), "{ev}");
    wait_group_message(&carol, &id, "from alice").await?;
    send(&bob, &id, "from bob").await?;
    wait_group_message(&alice, &id, "from bob").await?;
    wait_group_message(&carol, &id, "from bob").await?;
    send(&carol, &id, "from carol").await?;
    wait_group_message(&alice, &id, "from carol").await?;
    wait_group_message(&bob, &id, "from carol").await?;
    // Not a 1:1 message: Carol is no request of Bob's.
    let requests = bob.client.get("/requests").await?;
    assert_eq!(requests["requests"], json!([]), "{requests}");

    // Carol goes offline: what the group says waits in her mailbox.
    carol.stop().await?;
    let out = send(&alice, &id, "while you were out").await?;
    let out_id = out["id"].as_str().context("id")?.to_owned();
    send(&bob, &id, "me too").await?;
    let carol = NodeProc::start_with(&carol_dir, LOOPBACK, &home).await?;
    wait_group_message(&carol, &id, "while you were out").await?;
    wait_group_message(&carol, &id, "me too").await?;
    let bodies = group_bodies(&carol, &id).await?;
    assert_eq!(bodies.len(), 5, "each once: {bodies:?}");

    // Per-member state: Bob's node took it at once, Carol's relay held it, then Carol's node
    // said it arrived (over her 1:1 session with Alice) and Carol read it (with the CLI).
    poll_until("carol's delivery receipt never reached alice", || async {
        let m = alice.client.get(&format!("/messages/{out_id}")).await?;
        Ok(m["delivered_to"] == 2)
    })
    .await?;
    run_ok(tokenim(&carol_dir).args(["read", &out_id]))?;
    poll_until("carol's read receipt never reached alice", || async {
        let m = alice.client.get(&format!("/messages/{out_id}")).await?;
        Ok(m["read_by"] == 1 && m["state"] == "read")
    })
    .await?;
    let members = alice
        .client
        .get(&format!("/messages/{out_id}/members"))
        .await?;
    let state_of = |who: &NodeProc| {
        members["members"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["address"] == who.address.as_str())
            .map(|m| m["state"].clone())
    };
    assert_eq!(state_of(&carol), Some(json!("read")), "{members}");
    assert_eq!(state_of(&bob), Some(json!("delivered")), "{members}");
    assert_eq!(
        state_of(&alice),
        None,
        "the sender is not listed: {members}"
    );
    let listed = run_ok(tokenim(&alice.dir).args(["group", "receipts", &out_id]))?;
    assert!(
        listed.contains(&format!("{} read", carol.address)),
        "{listed}"
    );
    // Only the sender of a group message has member states.
    let refused = carol
        .client
        .get(&format!("/messages/{out_id}/members"))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    drop(bob_events);
    for p in [alice, bob, carol, r] {
        p.stop().await?;
    }
    Ok(())
}

/// Membership changes against real processes: a plain member cannot rename, the owner adds a
/// member who gets the group and its next messages, and a removed member's node learns it is
/// out and gets nothing said afterwards.
#[tokio::test]
async fn members_are_added_and_removed_and_removal_means_removal() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut nodes = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        nodes.push(NodeProc::start(&init(root.path(), name)?, LOOPBACK).await?);
    }
    let [alice, bob, carol, dave] =
        <[NodeProc; 4]>::try_from(nodes).map_err(|_| anyhow::anyhow!("four nodes"))?;
    for (other, name) in [(&bob, "bob"), (&carol, "carol"), (&dave, "dave")] {
        alice.befriend("alice", other, name).await?;
    }
    let group = create_hikers(&alice).await?;
    let id = group["id"].as_str().context("group id")?.to_owned();
    for n in [&bob, &carol] {
        poll_until("a member never joined", || async {
            Ok(n.client.get(&format!("/groups/{id}")).await.is_ok())
        })
        .await?;
    }
    // Bob is a plain member: renaming is not his to do.
    let refused = bob
        .client
        .patch(&format!("/groups/{id}"), json!({ "name": "bob's" }))
        .await
        .expect_err("a plain member renamed the group");
    assert!(refused.to_string().contains("conflict"), "{refused:#}");

    // Dave joins; the next message reaches him.
    alice
        .client
        .post(
            &format!("/groups/{id}/members"),
            json!({ "member": "dave" }),
        )
        .await?;
    poll_until("dave never joined", || async {
        Ok(dave.client.get(&format!("/groups/{id}")).await.is_ok())
    })
    .await?;
    send(&alice, &id, "welcome dave").await?;
    wait_group_message(&dave, &id, "welcome dave").await?;
    wait_group_message(&carol, &id, "welcome dave").await?;

    // Carol is removed: she learns it, and what is said afterwards does not reach her.
    let address = carol.address.clone();
    let after = alice
        .client
        .delete(&format!("/groups/{id}/members/{address}"))
        .await?;
    assert_eq!(
        after["members"].as_array().map(Vec::len),
        Some(3),
        "{after}"
    );
    poll_until("carol never learnt she was removed", || async {
        Ok(carol.client.get(&format!("/groups/{id}")).await.is_err())
    })
    .await?;
    // Wait until Bob holds Alice's new sender key (her message opens), then send again.
    send(&alice, &id, "after carol left").await?;
    wait_group_message(&bob, &id, "after carol left").await?;
    wait_group_message(&dave, &id, "after carol left").await?;
    send(&bob, &id, "bob after carol left").await?;
    wait_group_message(&alice, &id, "bob after carol left").await?;
    // Her node keeps what she had (the timeline lists group messages too), nothing later.
    let carol_has = carol.client.get("/messages?limit=200").await?.to_string();
    assert!(carol_has.contains("welcome dave"), "{carol_has}");
    assert!(!carol_has.contains("after carol left"), "{carol_has}");
    for p in [alice, bob, carol, dave] {
        p.stop().await?;
    }
    Ok(())
}

/// An invite link: someone no member has as a contact joins with it (no admin needs to act),
/// and then talks with a member who does not know them either.
#[tokio::test]
async fn a_stranger_joins_with_an_invite_link_and_talks_with_the_members() -> Result<()> {
    let root = tempfile::tempdir()?;
    let alice = NodeProc::start(&init(root.path(), "alice")?, LOOPBACK).await?;
    let bob = NodeProc::start(&init(root.path(), "bob")?, LOOPBACK).await?;
    let erin = NodeProc::start(&init(root.path(), "erin")?, LOOPBACK).await?;
    alice.befriend("alice", &bob, "bob").await?;
    let group = alice
        .client
        .post("/groups", json!({ "name": "open mic", "members": ["bob"] }))
        .await?;
    let id = group["id"].as_str().context("group id")?.to_owned();
    let link = alice
        .client
        .post(&format!("/groups/{id}/invites"), json!({ "max_uses": 1 }))
        .await?;
    let uri = link["uri"].as_str().context("uri")?.to_owned();
    assert!(uri.starts_with("tokenim-group:"), "{link}");

    let mut erin_events = erin.client.events().await?;
    let joined = erin
        .client
        .post("/groups/join", json!({ "invite": uri }))
        .await?;
    assert_eq!(joined["group"], id.as_str());
    wait_event(&mut erin_events, "group_updated", |e| {
        e["group"] == id.as_str()
    })
    .await?;
    poll_until("bob never saw erin join", || async {
        let g = bob.client.get(&format!("/groups/{id}")).await?;
        Ok(g["members"].as_array().map(Vec::len) == Some(3))
    })
    .await?;
    send(&bob, &id, "welcome, erin").await?;
    wait_group_message(&erin, &id, "welcome, erin").await?;
    send(&erin, &id, "thanks, bob").await?;
    wait_group_message(&bob, &id, "thanks, bob").await?;
    wait_group_message(&alice, &id, "thanks, bob").await?;
    // Used up: a second join through the same link does not take effect.
    let members = alice.client.get(&format!("/groups/{id}")).await?;
    assert_eq!(members["members"].as_array().map(Vec::len), Some(3));
    drop(erin_events);
    for p in [alice, bob, erin] {
        p.stop().await?;
    }
    Ok(())
}

/// Two admins change the membership at the same moment (each adds a contact of theirs whom
/// nobody else knows): every member ends with the same members and roles.
#[tokio::test]
async fn two_admins_adding_at_once_leave_every_member_with_the_same_group() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mut nodes = Vec::new();
    for name in ["alice", "bob", "carol", "dave", "erin"] {
        nodes.push(NodeProc::start(&init(root.path(), name)?, LOOPBACK).await?);
    }
    let [alice, bob, carol, dave, erin] =
        <[NodeProc; 5]>::try_from(nodes).map_err(|_| anyhow::anyhow!("five nodes"))?;
    for (x, y, xn, yn) in [
        (&alice, &bob, "alice", "bob"),
        (&alice, &carol, "alice", "carol"),
        (&alice, &erin, "alice", "erin"),
        (&bob, &dave, "bob", "dave"),
    ] {
        x.befriend(xn, y, yn).await?;
    }
    let group = alice
        .client
        .post(
            "/groups",
            json!({ "name": "trail", "members": ["bob", "carol"] }),
        )
        .await?;
    let id = group["id"].as_str().context("group id")?.to_owned();
    poll_until("bob never joined", || async {
        Ok(bob.client.get(&format!("/groups/{id}")).await.is_ok())
    })
    .await?;
    alice
        .client
        .put(
            &format!("/groups/{id}/members/{}/role", bob.address),
            json!({ "role": "admin" }),
        )
        .await?;
    poll_until("bob never became an admin", || async {
        Ok(bob.client.get(&format!("/groups/{id}")).await?["role"] == "admin")
    })
    .await?;

    let members = format!("/groups/{id}/members");
    let (a, b) = tokio::join!(
        alice.client.post(&members, json!({ "member": "erin" })),
        bob.client.post(&members, json!({ "member": "dave" })),
    );
    a?;
    b?;
    // Every node converges on the same five members with the same roles.
    let view = |g: Value| -> Vec<(String, String)> {
        let mut m: Vec<(String, String)> = g["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["address"].as_str().unwrap_or_default().to_owned(),
                    m["role"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        m.sort();
        m
    };
    poll_until("alice never saw both adds", || async {
        let g = alice.client.get(&format!("/groups/{id}")).await?;
        Ok(view(g).len() == 5)
    })
    .await?;
    let reference = view(alice.client.get(&format!("/groups/{id}")).await?);
    for node in [&bob, &carol, &dave, &erin] {
        poll_until(&format!("{} never converged", node.address), || async {
            let g = node.client.get(&format!("/groups/{id}")).await;
            Ok(g.is_ok_and(|g| view(g) == reference))
        })
        .await?;
    }
    // And the newcomers, who do not know each other, hear each other.
    send(&dave, &id, "dave says hi").await?;
    wait_group_message(&erin, &id, "dave says hi").await?;
    for p in [alice, bob, carol, dave, erin] {
        p.stop().await?;
    }
    Ok(())
}

/// A member that missed a membership change (its copy expired in the outbox while the member
/// was away) catches up from the log heads that the next group message carries.
#[tokio::test]
async fn a_member_that_missed_a_change_catches_up_from_the_next_message() -> Result<()> {
    let root = tempfile::tempdir()?;
    let alice_dir = init(root.path(), "alice")?;
    // Alice gives up on undeliverable messages after a few seconds.
    edit_config(&alice_dir, |c| {
        c.limits.message_ttl_secs = 3;
        c.limits.max_retry_backoff_secs = 1;
    })?;
    let alice = NodeProc::start(&alice_dir, LOOPBACK).await?;
    let bob = NodeProc::start(&init(root.path(), "bob")?, LOOPBACK).await?;
    let carol_dir = init(root.path(), "carol")?;
    let carol = NodeProc::start(&carol_dir, LOOPBACK).await?;
    for (other, name) in [(&bob, "bob"), (&carol, "carol")] {
        alice.befriend("alice", other, name).await?;
    }
    let group = create_hikers(&alice).await?;
    let id = group["id"].as_str().context("group id")?.to_owned();
    send(&alice, &id, "hello").await?;
    wait_group_message(&carol, &id, "hello").await?;
    wait_group_message(&bob, &id, "hello").await?;

    // Carol is away (no relay keeps anything for her) while Alice renames the group; the
    // change to Carol expires in Alice's outbox.
    let carol_addr = carol.listen_addr().await?;
    carol.stop().await?;
    let failed = metric(&alice, "tokenim_messages_failed_total").await?;
    alice
        .client
        .patch(&format!("/groups/{id}"), json!({ "name": "hikers 2" }))
        .await?;
    // Nothing left in Alice's outbox: the rename reached Bob and expired for Carol.
    poll_until("the rename to carol never expired", || async {
        Ok(metric(&alice, "tokenim_outbox_depth").await? == 0
            && metric(&alice, "tokenim_messages_failed_total").await? > failed)
    })
    .await?;
    let carol = NodeProc::start(&carol_dir, &carol_addr).await?;
    let at_carol = carol.client.get(&format!("/groups/{id}")).await?;
    assert_eq!(at_carol["name"], "hikers", "{at_carol}");

    // Alice's next message names a head Carol lacks: Carol asks, and Alice sends the change.
    send(&alice, &id, "renamed").await?;
    wait_group_message(&carol, &id, "renamed").await?;
    poll_until("carol never learnt of the rename", || async {
        let g = carol.client.get(&format!("/groups/{id}")).await?;
        Ok(g["name"] == "hikers 2")
    })
    .await?;
    for p in [alice, bob, carol] {
        p.stop().await?;
    }
    Ok(())
}
