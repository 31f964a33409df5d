//! What a power cut leaves (played by `MemBackend::with_power_loss`, which keeps what a
//! write-ahead log has fsynced): every write someone is promised — a mailbox put (a relay signs
//! a custody receipt for it), a registration, a durable commit — survives; a plain write may
//! not, until a later synced one.

use std::sync::Arc;

use tokenim_store::{ContactRecord, MemBackend, Store, StoreOptions};

const MAILBOX: [u8; 32] = [3; 32];

fn contact(n: u8) -> ContactRecord {
    ContactRecord {
        identity_key: [n; 32],
        name: Some(format!("contact {n}")),
        card_uri: format!("tokenim:card:{n}"),
        added_at: 1,
        updated_at: 1,
        state: tokenim_store::ContactState::Accepted,
        write_grant: Vec::new(),
        device_cards: Vec::new(),
    }
}

fn open(backend: MemBackend) -> (Arc<MemBackend>, Store) {
    let backend = Arc::new(backend);
    let store = Store::with_backend(backend.clone(), StoreOptions::default()).expect("open");
    (backend, store)
}

#[test]
fn promised_writes_survive_a_power_cut_and_plain_ones_wait_for_the_next_sync() {
    let (backend, store) = open(MemBackend::with_power_loss());
    store.mailbox_register(&MAILBOX, 1).expect("register");
    store
        .mailbox_put(&MAILBOX, &[1; 32], b"receipted", 1, 3600)
        .expect("put");
    store.put_contact(&contact(1)).expect("plain write");

    let (backend, after) = open(backend.power_cut());
    let page = after.mailbox_page(&MAILBOX, None, 10).expect("page");
    assert_eq!(page.len(), 1, "a put did not survive");
    assert_eq!(page[0].envelope, b"receipted");
    // The simulation is not vacuous: the plain write after the last sync is gone.
    assert!(after.get_contact(&[1; 32]).expect("read").is_none());

    // A plain write followed by a durable commit: both survive (the log is fsynced in order).
    after.put_contact(&contact(2)).expect("plain write");
    after
        .txn()
        .put_contact(&contact(3))
        .commit_durable()
        .expect("durable commit");
    let (_, again) = open(backend.power_cut());
    for n in [2, 3] {
        assert!(again.get_contact(&[n; 32]).expect("read").is_some(), "{n}");
    }
}
