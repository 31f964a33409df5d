//! Retention really frees disk: fill a RocksDB mailbox, expire it, purge, and watch the live
//! SST size drop.

use tokenim_store::{Result, Store, StoreOptions};

#[test]
fn purge_frees_rocksdb_disk_space() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = StoreOptions {
        mailbox_max_messages: 1_000_000,
        mailbox_max_bytes: 1 << 30,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts)?;
    let (old, fresh) = ([1u8; 32], [2u8; 32]);
    store.mailbox_register(&old, 0)?;
    store.mailbox_register(&fresh, 0)?;
    let envelope = vec![0x5au8; 1024];
    const N: u64 = 20_000;
    for chunk in 0..N / 500 {
        let ids: Vec<[u8; 32]> = (0..500)
            .map(|i| {
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&(chunk * 500 + i).to_be_bytes());
                id
            })
            .collect();
        let items: Vec<(&[u8; 32], &[u8])> = ids.iter().map(|id| (id, &envelope[..])).collect();
        store.mailbox_put_many(&old, &items, 1_000, 60)?;
    }
    // Some data that must survive the purge.
    for i in 0..100u64 {
        let mut id = [9u8; 32];
        id[..8].copy_from_slice(&i.to_be_bytes());
        store.mailbox_put(&fresh, &id, &envelope, 1_000, 100_000)?;
    }
    store.flush()?;
    let before = store.storage_stats()?;
    assert!(
        before.live_sst_bytes > N * 1024,
        "expected the envelopes on disk: {before:?}"
    );

    let report = store.purge_expired(1_060)?;
    assert_eq!(report.mailbox_messages, N);
    assert_eq!(report.mailbox_bytes, N * 1024);
    store.flush()?;
    let after = store.storage_stats()?;
    println!(
        "live SST bytes before {} after {}",
        before.live_sst_bytes, after.live_sst_bytes
    );
    assert!(
        after.live_sst_bytes < before.live_sst_bytes / 10,
        "purge did not free disk: before {before:?} after {after:?}"
    );
    assert_eq!(store.mailbox_page(&fresh, None, 1000)?.len(), 100);
    assert!(store.mailbox_page(&old, None, 10)?.is_empty());
    Ok(())
}
