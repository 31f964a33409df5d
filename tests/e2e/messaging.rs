//! Messages between real processes: both ways, exactly once, surviving a SIGKILL.

use anyhow::Result;

use crate::harness::{NodeProc, init, pair, wait_event};

#[tokio::test]
async fn two_nodes_exchange_messages_both_ways() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (alice, bob) = pair(root.path()).await?;
    let mut bob_events = bob.client.events().await?;
    let mut alice_events = alice.client.events().await?;

    let sent = alice.send("bob", "hello bob").await?;
    assert_eq!(sent["state"], "queued");
    let id = sent["id"].as_str().expect("id").to_string();
    let got = wait_event(&mut bob_events, "message", |_| true).await?;
    assert_eq!(got["message"]["body"], "hello bob");
    assert_eq!(got["message"]["from"], alice.address.as_str());
    wait_event(&mut alice_events, "message_state", |e| {
        e["id"] == id.as_str() && e["state"] == "delivered"
    })
    .await?;

    bob.send(&alice.address, "hello alice").await?;
    let got = wait_event(&mut alice_events, "message", |_| true).await?;
    assert_eq!(got["message"]["body"], "hello alice");

    // Bob reads; Alice's copy turns "read".
    bob.client
        .post(&format!("/messages/{id}/read"), serde_json::json!({}))
        .await?;
    wait_event(&mut alice_events, "message_state", |e| {
        e["id"] == id.as_str() && e["state"] == "read"
    })
    .await?;
    let m = alice.client.get(&format!("/messages/{id}")).await?;
    assert_eq!(m["state"], "read");

    let page = bob
        .client
        .get(&format!("/messages?peer={}", alice.address))
        .await?;
    let bodies: Vec<_> = page["messages"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(
        bodies,
        vec!["hello alice", "hello bob"],
        "newest first, each once"
    );
    alice.stop().await?;
    bob.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_send_accepted_before_sigkill_is_delivered_after_restart_exactly_once() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (alice, bob) = pair(root.path()).await?;
    let bob_listen = bob.listen_addr().await?;
    let bob_dir = bob.dir.clone();
    bob.stop().await?;

    // Bob is offline: the 202 means durably queued, not delivered.
    let sent = alice.send("bob", "written before the crash").await?;
    let id = sent["id"].as_str().expect("id").to_string();
    let alice_dir = alice.dir.clone();
    alice.kill().await?;

    let bob = NodeProc::start(&bob_dir, &bob_listen).await?;
    let mut bob_events = bob.client.events().await?;
    let alice = NodeProc::start(&alice_dir, "/ip4/127.0.0.1/tcp/0").await?;
    let got = wait_event(&mut bob_events, "message", |_| true).await?;
    assert_eq!(got["message"]["body"], "written before the crash");

    let mut alice_events = alice.client.events().await?;
    let state = alice.client.get(&format!("/messages/{id}")).await?;
    if state["state"] != "delivered" {
        wait_event(&mut alice_events, "message_state", |e| {
            e["id"] == id.as_str() && e["state"] == "delivered"
        })
        .await?;
    }
    let page = bob
        .client
        .get(&format!("/messages?peer={}", alice.address))
        .await?;
    assert_eq!(
        page["messages"].as_array().expect("list").len(),
        1,
        "exactly once"
    );
    alice.stop().await?;
    bob.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_sigkill_right_after_the_202_never_loses_or_duplicates_the_message() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (alice, bob) = pair(root.path()).await?;
    let mut bob_events = bob.client.events().await?;
    let alice_dir = alice.dir.clone();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            alice.send("bob", &format!("burst {i}")).await?["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    alice.kill().await?;
    let alice = NodeProc::start(&alice_dir, "/ip4/127.0.0.1/tcp/0").await?;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < ids.len() {
        let ev = wait_event(&mut bob_events, "message", |_| true).await?;
        assert!(
            seen.insert(ev["message"]["id"].as_str().expect("id").to_string()),
            "a message arrived twice"
        );
    }
    let page = bob
        .client
        .get(&format!("/messages?peer={}&limit=100", alice.address))
        .await?;
    assert_eq!(page["messages"].as_array().expect("list").len(), ids.len());
    alice.stop().await?;
    bob.stop().await?;
    Ok(())
}

#[tokio::test]
async fn init_refuses_to_overwrite_and_keeps_secrets_private() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir()?;
    let dir = init(root.path(), "carol")?;
    for f in ["identity.key", "node.key", "api.token"] {
        let mode = std::fs::metadata(dir.join(f))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let before = std::fs::read(dir.join("identity.key"))?;
    let out = crate::harness::tokenim(&dir).args(["init"]).output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already initialised"));
    assert_eq!(std::fs::read(dir.join("identity.key"))?, before);
    Ok(())
}
