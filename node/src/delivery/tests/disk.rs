//! What the inbox promises against power cuts and full disks: `accepted` only for what is
//! synced to disk, and on a disk below its reserve a clear `STORAGE_FULL` (with a retry hint)
//! that relays must not take for a reason to delete.

use tokenim_store::{DiskSpace, MemBackend};

use super::*;

fn store_on(backend: &Arc<MemBackend>) -> Store {
    Store::with_backend(backend.clone(), tokenim_store::StoreOptions::default()).expect("store")
}

/// A disk of 1 GiB with `free` bytes left (the reserve is 256 MiB).
fn disk(free: u64) -> Option<DiskSpace> {
    Some(DiskSpace {
        free_bytes: free,
        total_bytes: 1 << 30,
    })
}

#[tokio::test(start_paused = true)]
async fn what_is_answered_accepted_survives_a_power_cut() {
    let mut bob = Peer::new(2);
    let backend = Arc::new(MemBackend::with_power_loss());
    let r = rig_on(store_on(&backend), settings(), &[&bob]);
    let me = Identity::from_seed([1; 32]);
    let envelope = bob.seal(&me, &Peer::text([5; 16], "kept"));
    let answer = r.deliver(&bob, envelope).await;
    assert!(
        matches!(answer.kind, Some(pb::response::Kind::Accepted(_))),
        "{answer:?}"
    );
    let after = store_on(&Arc::new(backend.power_cut()));
    let kept = after
        .get_message(&[5; 16])
        .expect("store")
        .expect("an accepted message is on disk after a power cut");
    assert_eq!(kept.body, "kept");
}

#[tokio::test(start_paused = true)]
async fn a_full_disk_refuses_inbound_messages_until_space_returns() {
    let mut bob = Peer::new(2);
    let backend = Arc::new(MemBackend::new());
    let r = rig_on(store_on(&backend), settings(), &[&bob]);
    let me = Identity::from_seed([1; 32]);
    let envelope = bob.seal(&me, &Peer::text([6; 16], "later"));

    backend.set_disk_space(disk(100 << 20));
    let answer = r.deliver(&bob, envelope.clone()).await;
    let Some(pb::response::Kind::Rejected(refusal)) = &answer.kind else {
        panic!("a full disk took a message: {answer:?}");
    };
    assert_eq!(refusal.code, RejectCode::StorageFull as i32);
    assert_eq!(refusal.retry_after_secs, wire::STORAGE_FULL_RETRY_SECS);
    assert!(r.store.get_message(&[6; 16]).expect("store").is_none());
    // A relay pushing or paging it must keep it.
    let acks = r
        .handle
        .ingest_weak()
        .ingest(PeerId::random(), vec![envelope.clone()])
        .await;
    assert_eq!(
        acks,
        [false],
        "a relay was told to delete what was not stored"
    );

    // Space returns: the same envelope opens again (its session was put back) and is stored.
    backend.set_disk_space(disk(900 << 20));
    let answer = r.deliver(&bob, envelope).await;
    assert!(
        matches!(answer.kind, Some(pb::response::Kind::Accepted(_))),
        "{answer:?}"
    );
    assert!(r.store.get_message(&[6; 16]).expect("store").is_some());
}
