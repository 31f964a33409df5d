//! Full disks, for real: RocksDB on a 48 MiB tmpfs (mounting one needs root; elsewhere these
//! tests say why and skip). The free-space reserve refuses puts before RocksDB runs out of
//! space, deletes still work, reclaiming turns them into free space and puts are taken again;
//! and when something else fills the disk so that RocksDB itself hits ENOSPC, the store
//! recovers by itself once space returns.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokenim_store::{Store, StoreError, StoreOptions};

const MAILBOX: [u8; 32] = [9; 32];
/// About what a 50 KB message takes once sealed and padded.
const ENVELOPE: usize = 64 * 1024;
const WAIT: Duration = Duration::from_secs(60);

/// A tmpfs mounted on a fresh directory, unmounted (lazily, so it cannot fail for a file
/// still open) when dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with the reason printed) where mounting is not allowed; a failure as root is
    /// a test failure, so that these tests cannot silently stop running where they can.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=700"),
                "tmpfs",
            ])
            .arg(&path)
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs { path, _dir: dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(
            !is_root(),
            "running as root, yet cannot mount a tmpfs: {why}"
        );
        eprintln!("skipped: mounting a tmpfs needs root ({why})");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn id(n: u32) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id
}

fn envelope(n: u32) -> Vec<u8> {
    vec![(n % 251) as u8; ENVELOPE]
}

fn put(store: &Store, n: u32) -> tokenim_store::Result<()> {
    store
        .mailbox_put(&MAILBOX, &id(n), &envelope(n), 1_000, 3_600)
        .map(|_| ())
}

fn stored(store: &Store) -> u64 {
    store
        .mailbox_usage(&MAILBOX)
        .expect("mailbox is registered")
        .messages
}

/// Polls `check` until it holds, failing after [`WAIT`].
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn open(path: &Path, opts: StoreOptions) -> Store {
    let store = Store::open(&path.join("db"), opts).expect("open store");
    store.mailbox_register(&MAILBOX, 1_000).expect("register");
    store
}

#[test]
fn the_reserve_refuses_puts_and_deletes_bring_the_space_back() {
    let Some(disk) = Tmpfs::mount("48m") else {
        return;
    };
    // The default reserve (256 MiB) is capped at a quarter of the filesystem: 12 MiB.
    let store = open(&disk.path, StoreOptions::default());
    let mut n = 0;
    let refusal = loop {
        match put(&store, n) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 2_000, "48 MiB took more than 2000 envelopes of 64 KiB");
    };
    assert!(
        matches!(&refusal, StoreError::StorageFull(why) if why.contains("reserve")),
        "refused with {refusal:?}"
    );
    assert_eq!(
        store.space_status().expect("status").reserve_bytes,
        12 << 20
    );
    // Refused by the reserve, not by the disk, after a good part of the rest was used (write
    // buffers, preallocated logs and compactions take some); what was accepted is all there.
    assert!(n >= 200, "only {n} envelopes fit");
    assert_eq!(stored(&store), u64::from(n));

    // The owner drains: deletes work on the full disk, and reclaiming frees the space.
    let ids: Vec<[u8; 32]> = (0..n).map(id).collect();
    for chunk in ids.chunks(256) {
        store.mailbox_delete(&MAILBOX, chunk).expect("delete");
    }
    assert_eq!(stored(&store), 0);
    wait_until("the space never came back", || {
        let status = store.reclaim_space().expect("reclaim");
        !status.full && status.free_bytes > Some(36 << 20)
    });
    assert!(!store.is_full());
    for m in n..n + 200 {
        put(&store, m).expect("puts are taken again");
    }
}

#[test]
fn after_enospc_from_outside_the_store_takes_writes_again_by_itself() {
    let Some(disk) = Tmpfs::mount("48m") else {
        return;
    };
    // No reserve: RocksDB itself runs into the full disk.
    let opts = StoreOptions {
        disk_reserve_bytes: 0,
        ..StoreOptions::default()
    };
    let store = open(&disk.path, opts);
    for n in 0..50 {
        put(&store, n).expect("put");
    }
    // Another program fills the disk.
    let filler = disk.path.join("filler");
    {
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let mut n = 50;
    let refusal = loop {
        match put(&store, n) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 2_000, "puts never failed on a full disk");
    };
    // RocksDB's own ENOSPC, not the reserve's refusal; it now takes no write at all.
    assert!(
        matches!(&refusal, StoreError::StorageFull(why) if why.contains("No space left")),
        "refused with {refusal:?}"
    );
    assert!(store.is_full());
    assert!(store.mailbox_delete(&MAILBOX, &[id(0)]).is_err());

    // Space returns: the store notices and takes writes again, with nothing lost.
    std::fs::remove_file(&filler).expect("remove filler");
    let started = Instant::now();
    wait_until("RocksDB never took writes again", || {
        !store.reclaim_space().expect("reclaim").full
    });
    let recovered = started.elapsed();
    put(&store, n).expect("put after recovery");
    assert_eq!(stored(&store), u64::from(n) + 1);
    let page = store.mailbox_page(&MAILBOX, None, 10_000).expect("page");
    assert_eq!(page.len() as u32, n + 1);
    eprintln!("took writes again {recovered:?} after space returned");
}
