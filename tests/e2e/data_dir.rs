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
