//! The data directory holds the identity and the database: `init` makes it private, and
//! neither `init` nor `run` works in one that others can write to.

use std::os::unix::fs::PermissionsExt;

use anyhow::Result;

use crate::harness::{NodeProc, init, tokenim};

fn mode(dir: &std::path::Path) -> Result<u32> {
    Ok(std::fs::metadata(dir)?.permissions().mode() & 0o777)
}

fn chmod(dir: &std::path::Path, mode: u32) -> Result<()> {
    Ok(std::fs::set_permissions(
        dir,
        std::fs::Permissions::from_mode(mode),
    )?)
}

#[tokio::test]
async fn a_data_directory_others_can_write_to_is_refused_and_one_they_can_read_is_closed()
-> Result<()> {
    let root = tempfile::tempdir()?;
    // A directory someone else prepared, open to all: init refuses it and writes no key.
    let open = root.path().join("open");
    std::fs::create_dir(&open)?;
    chmod(&open, 0o777)?;
    let out = tokenim(&open).args(["init", "--name", "x"]).output()?;
    assert!(
        !out.status.success(),
        "init accepted a world-writable directory"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("others can write"), "{err}");
    assert!(!open.join("identity.key").exists());

    // A fresh directory is created private.
    let dir = init(root.path(), "alice")?;
    assert_eq!(mode(&dir)?, 0o700);

    // Opened to the world later: run refuses to start, and says why.
    chmod(&dir, 0o777)?;
    let out = tokenim(&dir)
        .args([
            "run",
            "--api",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .output()?;
    assert!(
        !out.status.success(),
        "run started on a world-writable directory"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("others can write"), "{err}");

    // Only readable by others: run closes it and starts.
    chmod(&dir, 0o755)?;
    let node = NodeProc::start(&dir, "/ip4/127.0.0.1/tcp/0").await?;
    assert_eq!(mode(&dir)?, 0o700);
    node.stop().await?;
    Ok(())
}

/// A record that no longer decodes (disk damage, a bug) stops neither the node's start nor a
/// listing: the good records around it are served.
#[tokio::test]
async fn a_corrupt_record_stops_neither_the_start_nor_a_listing() -> Result<()> {
    use tokenim_store::{Batch, Cf, Store, StoreOptions};

    let root = tempfile::tempdir()?;
    let (alice, bob) = crate::harness::pair(root.path()).await?;
    let bob_address = bob.address.clone();
    let dir = alice.dir.clone();
    alice.stop().await?;
    {
        let store = Store::open(&dir.join("db"), StoreOptions::default())?;
        let mut batch = Batch::new();
        batch.put(Cf::Contacts, [0x42; 32], [0xff, 0xff, 0xff]);
        batch.put(Cf::Outbox, [0x43; 16], [0xff, 0xff]);
        batch.put(Cf::Sessions, [1u8, 2], b"short key".to_vec());
        store.backend().write(batch)?;
    }
    let alice = NodeProc::start(&dir, "/ip4/127.0.0.1/tcp/0").await?;
    let contacts = alice.client.get("/contacts").await?;
    let listed: Vec<&str> = contacts["contacts"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["address"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, [bob_address.as_str()], "{contacts}");
    alice.send("bob", "still works").await?;
    for p in [alice, bob] {
        p.stop().await?;
    }
    Ok(())
}
