//! The relay against power cuts and full disks: receipts only for what is synced; on a full
//! disk stores are refused with a retry hint, before they queue, while owners still fetch and
//! ack; and owners' requests never wait behind stores.

use tokenim_crypto::ed25519_dalek::SigningKey;
use tokenim_crypto::{CustodyReceipt, Envelope, Identity};
use tokenim_store::{DiskSpace, MemBackend, Store, StoreOptions};

use super::*;
use crate::net::wire::{RejectCode, Response};

const KEY: [u8; 32] = [7; 32];

fn relay_on(backend: &Arc<MemBackend>) -> (Relay, Store) {
    let store = Store::with_backend(backend.clone(), StoreOptions::default()).expect("store");
    let relay = Relay::new(
        store.clone(),
        SigningKey::from_bytes(&KEY),
        3600,
        Metrics::default(),
    );
    (relay, store)
}

fn relay_key() -> [u8; 32] {
    SigningKey::from_bytes(&KEY).verifying_key().to_bytes()
}

fn store_request(envelopes: Vec<Vec<u8>>) -> pb::request::Kind {
    pb::request::Kind::Store(pb::StoreEnvelope {
        envelopes,
        grant: Vec::new(),
    })
}

fn envelope(owner: &tokenim_crypto::MailboxKey, n: u8) -> (Envelope, Vec<u8>) {
    let e = Envelope::new(owner.id(), vec![n; 512], now_secs(), 600);
    let bytes = prost::Message::encode_to_vec(&e);
    (e, bytes)
}

/// A disk of 1 GiB with `free` bytes left (the default reserve is 256 MiB).
fn disk(free: u64) -> Option<DiskSpace> {
    Some(DiskSpace {
        free_bytes: free,
        total_bytes: 1 << 30,
    })
}

fn rejection(r: &Response) -> &pb::Rejected {
    match r.kind.as_ref() {
        Some(pb::response::Kind::Rejected(x)) => x,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn a_receipt_is_only_signed_for_what_survives_a_power_cut() {
    let backend = Arc::new(MemBackend::with_power_loss());
    let (relay, store) = relay_on(&backend);
    let owner = Identity::from_seed([1; 32]).mailbox_key(0);
    store
        .mailbox_register(&owner.id().0, now_secs())
        .expect("register");
    let (a, a_bytes) = envelope(&owner, 1);
    let (b, b_bytes) = envelope(&owner, 2);
    let (r, _) = relay.handle(PeerId::random(), store_request(vec![a_bytes, b_bytes]));
    let Some(pb::response::Kind::Stored(stored)) = r.kind else {
        panic!("not stored: {r:?}");
    };
    CustodyReceipt::from_bytes(&stored.receipt)
        .expect("receipt")
        .verify(&relay_key(), &owner.id(), &[a.id(), b.id()])
        .expect("receipt verifies");

    let after = Store::with_backend(Arc::new(backend.power_cut()), StoreOptions::default())
        .expect("reopen");
    let page = after.mailbox_page(&owner.id().0, None, 10).expect("page");
    assert_eq!(
        page.len(),
        2,
        "a receipted envelope did not survive the power cut"
    );
}

#[test]
fn a_full_disk_refuses_stores_with_a_retry_hint_while_owners_fetch_and_ack() {
    let backend = Arc::new(MemBackend::new());
    let (relay, store) = relay_on(&backend);
    let owner = Identity::from_seed([1; 32]).mailbox_key(0);
    let now = now_secs();
    store
        .mailbox_register(&owner.id().0, now)
        .expect("register");
    let (kept, kept_bytes) = envelope(&owner, 1);
    let (r, _) = relay.handle(PeerId::random(), store_request(vec![kept_bytes]));
    assert!(
        matches!(r.kind, Some(pb::response::Kind::Stored(_))),
        "{r:?}"
    );

    backend.set_disk_space(disk(100 << 20));
    let (_, refused_bytes) = envelope(&owner, 2);
    let (r, _) = relay.handle(PeerId::random(), store_request(vec![refused_bytes.clone()]));
    let refusal = rejection(&r);
    assert_eq!(refusal.code, RejectCode::StorageFull as i32);
    assert_eq!(refusal.retry_after_secs, wire::STORAGE_FULL_RETRY_SECS);
    assert!(relay.storage_full());

    // The owner drains and acks on the full disk.
    let peer = PeerId::random();
    let (r, _) = relay.handle(peer, pb::request::Kind::GetChallenge(pb::GetChallenge {}));
    let Some(pb::response::Kind::Challenge(c)) = r.kind else {
        panic!("no challenge: {r:?}");
    };
    let proof = owner.sign_registration(&relay_key(), &c.challenge, now);
    let fetch = pb::FetchMailbox {
        registration: proof.to_bytes(),
        after_seq: 0,
        limit: 10,
    };
    let (r, _) = relay.handle(peer, pb::request::Kind::Fetch(fetch));
    let Some(pb::response::Kind::Page(page)) = r.kind else {
        panic!("no page: {r:?}");
    };
    assert_eq!(page.envelopes.len(), 1);
    let ack = owner.sign_ack(&relay_key(), &[kept.id()], now).to_bytes();
    let (r, _) = relay.handle(peer, pb::request::Kind::Ack(pb::AckMailbox { ack }));
    assert!(
        matches!(r.kind, Some(pb::response::Kind::Acked(a)) if a.deleted == 1),
        "{r:?}"
    );

    // Through the worker queue, a store is refused before it queues (no thread runs here).
    let (handle, _idle) = RelayHandle::new(relay, Metrics::default());
    let (reply, mut answer) = oneshot::channel();
    handle.request(
        PeerId::random(),
        store_request(vec![refused_bytes.clone()]),
        reply,
    );
    let early = answer.try_recv().expect("answered at once");
    assert_eq!(rejection(&early).code, RejectCode::StorageFull as i32);

    // Space returns: the keeper's reclaim notices, and stores are taken again.
    backend.set_disk_space(disk(900 << 20));
    let (relay, _) = relay_on(&backend);
    assert!(!relay.reclaim(), "still full with 900 MiB free");
    let (r, _) = relay.handle(PeerId::random(), store_request(vec![refused_bytes]));
    assert!(
        matches!(r.kind, Some(pb::response::Kind::Stored(_))),
        "{r:?}"
    );
}

#[test]
fn owners_have_a_queue_of_their_own_and_go_first() {
    let backend = Arc::new(MemBackend::new());
    let (relay, store) = relay_on(&backend);
    let owner = Identity::from_seed([1; 32]).mailbox_key(0);
    store
        .mailbox_register(&owner.id().0, now_secs())
        .expect("register");
    let (handle, Idle(queues)) = RelayHandle::new(relay, Metrics::default());
    // No thread serves the queues: stores fill theirs, and the next one is turned away.
    let mut stores = Vec::new();
    let busy = loop {
        let mut ciphertext = vec![0; 512];
        ciphertext[..4].copy_from_slice(&(stores.len() as u32).to_be_bytes());
        let e = Envelope::new(owner.id(), ciphertext, now_secs(), 600);
        let (reply, mut answer) = oneshot::channel();
        handle.request(
            PeerId::random(),
            store_request(vec![prost::Message::encode_to_vec(&e)]),
            reply,
        );
        if let Ok(r) = answer.try_recv() {
            break r;
        }
        stores.push(answer);
        assert!(stores.len() <= QUEUE, "the store queue never filled");
    };
    assert_eq!(rejection(&busy).code, RejectCode::RateLimited as i32);

    // An owner still gets in, and is served before the stores queued ahead of it.
    let (reply, mut challenge) = oneshot::channel();
    handle.request(
        PeerId::random(),
        pb::request::Kind::GetChallenge(pb::GetChallenge {}),
        reply,
    );
    assert!(challenge.try_recv().is_err(), "the owner was turned away");
    let first = next_work(&queues).flatten().expect("work");
    assert!(
        matches!(
            first,
            Work::Request {
                kind: pb::request::Kind::GetChallenge(_),
                ..
            }
        ),
        "served first: {first:?}"
    );
    let second = next_work(&queues).flatten().expect("work");
    assert!(matches!(
        second,
        Work::Request {
            kind: pb::request::Kind::Store(_),
            ..
        }
    ));
}
