//! Files with real processes: a file sent to a contact arrives whole and verified (API and
//! CLI, ranges), a file sent to a group reaches every member, and a recipient killed with
//! SIGKILL halfway through a large file resumes where it stopped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::groups::{create_hikers, send as send_group};
use crate::harness::{NodeProc, init, metric, pair, run_ok, tokenim, wait_event};
use crate::relay::{LOOPBACK, edit_config, offline_bob, poll_until, relay, stats, wait_stat};

/// `len` bytes of seeded pseudo-random data (incompressible, reproducible).
fn write_data(path: &Path, len: usize, seed: u64) -> Result<Vec<u8>> {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(path, &data)?;
    Ok(data)
}

async fn upload(node: &NodeProc, path: &Path) -> Result<String> {
    let f = node.client.upload_file(path).await?;
    Ok(f["id"].as_str().context("file id")?.to_owned())
}

/// The id, at `node`, of the file attached to the message with this body.
async fn attachment(node: &NodeProc, body: &str, group: Option<&str>) -> Result<Value> {
    let path = match group {
        Some(g) => format!("/groups/{g}/messages"),
        None => "/messages".to_owned(),
    };
    let deadline = tokio::time::Instant::now() + crate::harness::WAIT;
    loop {
        let page = node.client.get(&path).await.unwrap_or(Value::Null);
        let found = page["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["body"] == body)
            .and_then(|m| m["attachments"].get(0).cloned());
        if let Some(f) = found {
            return Ok(f);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{body:?} with a file never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn wait_complete(node: &NodeProc, id: &str) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + crate::harness::WAIT;
    loop {
        let status = node.client.get(&format!("/files/{id}/status")).await?;
        anyhow::ensure!(status["state"] != "failed", "download failed: {status}");
        if status["state"] == "complete" {
            return Ok(status);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "a download never completed: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn out(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[tokio::test]
async fn a_file_reaches_a_contact_whole_and_verified() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (alice, bob) = pair(root.path()).await?;
    let src = root.path().join("photo.jpg");
    let data = write_data(&src, 3 * 1024 * 1024 + 123, 7)?;
    let mut bob_events = bob.client.events().await?;
    let id = upload(&alice, &src).await?;
    let sent = alice
        .client
        .post(
            "/messages",
            json!({ "to": "bob", "body": "a photo", "attachments": [id] }),
        )
        .await?;
    assert_eq!(sent["attachments"][0]["name"], "photo.jpg", "{sent}");
    let ev = wait_event(&mut bob_events, "message", |e| {
        e["message"]["body"] == "a photo"
    })
    .await?;
    let offered = &ev["message"]["attachments"][0];
    assert_eq!(offered["size"], data.len() as u64, "{ev}");
    assert_eq!(offered["mime"], "image/jpeg", "{ev}");
    let at_bob = offered["id"].as_str().context("id")?.to_owned();
    wait_event(&mut bob_events, "file_completed", |e| {
        e["id"] == at_bob.as_str()
    })
    .await?;
    let status = wait_complete(&bob, &at_bob).await?;
    assert_eq!(
        status["sha256"],
        hex::encode(Sha256::digest(&data)),
        "{status}"
    );

    // Whole, through the CLI, and a range through the API.
    let saved = out(root.path(), "saved.jpg");
    run_ok(
        tokenim(&bob.dir)
            .args(["file", "get", &at_bob, "-o"])
            .arg(&saved),
    )?;
    assert!(std::fs::read(&saved)? == data, "the saved file differs");
    let part = reqwest::Client::new()
        .get(format!("http://{}/v1/files/{at_bob}", bob.api))
        .bearer_auth(std::fs::read_to_string(bob.dir.join("api.token"))?.trim())
        .header("Range", "bytes=300000-300099")
        .send()
        .await?;
    assert_eq!(part.status(), 206);
    assert!(part.bytes().await?.as_ref() == &data[300_000..300_100]);
    let listed = run_ok(tokenim(&bob.dir).args(["file", "list"]))?;
    assert!(
        listed.contains("complete") && listed.contains("photo.jpg"),
        "{listed}"
    );

    // The CLI sends a file with a text; an upload over the limit is refused before storing.
    let note = root.path().join("notes.txt");
    write_data(&note, 10_000, 9)?;
    run_ok(
        tokenim(&alice.dir)
            .args(["send", "bob", "notes attached", "--file"])
            .arg(&note),
    )?;
    let second = attachment(&bob, "notes attached", None).await?;
    wait_complete(&bob, second["id"].as_str().context("id")?).await?;
    drop(bob_events);
    for p in [alice, bob] {
        p.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_group_file_reaches_every_member() -> Result<()> {
    let root = tempfile::tempdir()?;
    let alice = NodeProc::start(&init(root.path(), "alice")?, LOOPBACK).await?;
    let bob = NodeProc::start(&init(root.path(), "bob")?, LOOPBACK).await?;
    let carol = NodeProc::start(&init(root.path(), "carol")?, LOOPBACK).await?;
    for (other, name) in [(&bob, "bob"), (&carol, "carol")] {
        alice.befriend("alice", other, name).await?;
    }
    let group = create_hikers(&alice).await?;
    let gid = group["id"].as_str().context("group id")?.to_owned();
    for m in [&bob, &carol] {
        poll_until("a member never joined", || async {
            Ok(m.client.get(&format!("/groups/{gid}")).await.is_ok())
        })
        .await?;
    }
    send_group(&bob, &gid, "ready").await?;
    let src = root.path().join("map.pdf");
    let data = write_data(&src, 700_000, 11)?;
    let id = upload(&alice, &src).await?;
    alice
        .client
        .post(
            &format!("/groups/{gid}/messages"),
            json!({ "body": "the map", "attachments": [id] }),
        )
        .await?;
    for m in [&bob, &carol] {
        let f = attachment(m, "the map", Some(&gid)).await?;
        let fid = f["id"].as_str().context("id")?;
        let status = wait_complete(m, fid).await?;
        assert_eq!(status["sha256"], hex::encode(Sha256::digest(&data)));
    }
    for p in [alice, bob, carol] {
        p.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_recipient_killed_halfway_resumes_without_fetching_it_all_again() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (alice, bob) = pair(root.path()).await?;
    let src = root.path().join("big.bin");
    let data = write_data(&src, 48 * 1024 * 1024, 13)?;
    // Every chunk but the last is full; the last is short (here empty).
    let chunks = (data.len() / (256 * 1024) + 1) as u64;
    let mut bob_events = bob.client.events().await?;
    let id = upload(&alice, &src).await?;
    alice
        .client
        .post(
            "/messages",
            json!({ "to": "bob", "body": "big one", "attachments": [id] }),
        )
        .await?;
    let half = data.len() as u64 / 3;
    let ev = wait_event(&mut bob_events, "file_progress", |e| {
        e["done"].as_u64().unwrap_or(0) >= half
    })
    .await?;
    let fid = ev["id"].as_str().context("id")?.to_owned();
    drop(bob_events);
    let bob_dir = bob.dir.clone();
    bob.kill().await?;
    let served_before = metric(&alice, "tokenim_file_chunks_served_total").await?;
    assert!(served_before < chunks, "it finished before the kill");
    let bob = NodeProc::start(&bob_dir, LOOPBACK).await?;
    let status = wait_complete(&bob, &fid).await?;
    assert_eq!(status["sha256"], hex::encode(Sha256::digest(&data)));
    // Everything once, plus what was in flight at the kill: at most one window of 8.
    let served = metric(&alice, "tokenim_file_chunks_served_total").await?;
    assert!(
        served <= chunks + 8,
        "{served} chunks served for a file of {chunks}"
    );
    for p in [alice, bob] {
        p.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_file_left_at_the_relay_reaches_the_recipient_after_the_sender_left() -> Result<()> {
    let root = tempfile::tempdir()?;
    let r = relay(root.path(), "relay").await?;
    let (alice, bob_dir, flags) = offline_bob(root.path(), &[&r]).await?;
    let src = root.path().join("offline.bin");
    let data = write_data(&src, 2 * 1024 * 1024 + 5, 17)?;
    let id = upload(&alice, &src).await?;
    alice
        .client
        .post(
            "/messages",
            json!({ "to": "bob", "body": "while you were away", "attachments": [id] }),
        )
        .await?;
    // Bob is offline: the message is left at his relay, and so is the file.
    poll_until("the file never reached the relay", || async {
        let s = stats(&r).await?;
        Ok(s["held_files"] == 1 && s["held_file_bytes"].as_u64() > Some(data.len() as u64))
    })
    .await?;
    alice.stop().await?;
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &flags).await?;
    let f = attachment(&bob, "while you were away", None).await?;
    let status = wait_complete(&bob, f["id"].as_str().context("id")?).await?;
    assert_eq!(status["sha256"], hex::encode(Sha256::digest(&data)));
    // Bob has it: the relay lets it go.
    wait_stat(
        &r,
        "held_files",
        0,
        "the relay kept the file after bob had it",
    )
    .await?;
    for p in [bob, r] {
        p.stop().await?;
    }
    Ok(())
}

/// A source that serves a wrong chunk is caught by the chunk's id, and the chunk comes from
/// another source (here the sender's copy is damaged on its disk, the recipient's relay holds
/// a good one); an upload over the limit is refused before it is stored.
#[tokio::test]
async fn a_wrong_chunk_is_refetched_elsewhere_and_an_oversized_upload_is_refused() -> Result<()> {
    let root = tempfile::tempdir()?;
    let r = relay(root.path(), "relay").await?;
    let (alice, bob_dir, flags) = offline_bob(root.path(), &[&r]).await?;
    let src = root.path().join("report.pdf");
    let data = write_data(&src, 3 * 256 * 1024 + 99, 23)?;
    let id = upload(&alice, &src).await?;
    alice
        .client
        .post(
            "/messages",
            json!({ "to": "bob", "body": "the report", "attachments": [id] }),
        )
        .await?;
    poll_until("the whole file never reached the relay", || async {
        let s = stats(&r).await?;
        Ok(s["held_file_bytes"].as_u64() > Some(data.len() as u64))
    })
    .await?;
    // Damage the sender's copy of chunk 0 (asked of the sender first).
    let enc = alice.dir.join("files").join(format!("{id}.enc"));
    let mut bytes = std::fs::read(&enc)?;
    bytes[100] ^= 0xff;
    std::fs::write(&enc, &bytes)?;
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &flags).await?;
    let f = attachment(&bob, "the report", None).await?;
    let status = wait_complete(&bob, f["id"].as_str().context("id")?).await?;
    assert_eq!(status["sha256"], hex::encode(Sha256::digest(&data)));
    let refused = metric(&bob, "tokenim_file_chunks_refused_total").await?;
    assert!(refused >= 1, "the damaged chunk was not noticed");

    // Over the limit: refused, nothing kept.
    let carol_dir = init(root.path(), "carol")?;
    edit_config(&carol_dir, |c| c.limits.max_file_bytes = 1024 * 1024)?;
    let carol = NodeProc::start(&carol_dir, LOOPBACK).await?;
    let big = root.path().join("big.bin");
    write_data(&big, 2 * 1024 * 1024, 29)?;
    let why = carol
        .client
        .upload_file(&big)
        .await
        .err()
        .context("an upload over the limit was taken")?;
    assert!(
        format!("{why:#}").contains("over the node's file size limit"),
        "{why:#}"
    );
    let files = carol.client.get("/files").await?;
    assert_eq!(files["files"], json!([]), "{files}");
    let left = std::fs::read_dir(carol_dir.join("files"))?.count();
    assert_eq!(left, 0, "an oversized upload left data on disk");
    // Offered a file over her limit, Carol lists it as failed, with the reason, and fetches
    // nothing.
    alice.befriend("alice", &carol, "carol").await?;
    let id = upload(&alice, &big).await?;
    alice
        .client
        .post(
            "/messages",
            json!({ "to": "carol", "body": "too big for you", "attachments": [id] }),
        )
        .await?;
    let offered = attachment(&carol, "too big for you", None).await?;
    assert_eq!(offered["state"], "failed", "{offered}");
    assert!(
        offered["error"]
            .as_str()
            .unwrap_or("")
            .contains("over this node's limit"),
        "{offered}"
    );
    for p in [alice, bob, carol, r] {
        p.stop().await?;
    }
    Ok(())
}
