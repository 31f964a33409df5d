//! Receipt, ack, registration, relayed-envelope and identity decoders (+ verification) on
//! arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenim_crypto::{
    CustodyReceipt, Identity, MailboxAck, MailboxId, PublicIdentity, Registration, RelayedEnvelope,
};

fuzz_target!(|data: &[u8]| {
    let (k, m) = ([7u8; 32], MailboxId([8; 32]));
    if let Ok(r) = CustodyReceipt::from_bytes(data) {
        let _ = r.verify(&r.relay_key, &r.mailbox, &r.message_ids);
        let _ = r.verify(&k, &m, &[[9; 32]]);
    }
    if let Ok(a) = MailboxAck::from_bytes(data) {
        let _ = a.verify(&a.mailbox, &a.relay_key, a.timestamp, 0);
    }
    if let Ok(r) = Registration::from_bytes(data) {
        let _ = r.verify(&r.relay_key, &r.challenge, r.timestamp, 0);
    }
    if let Ok(r) = RelayedEnvelope::from_bytes(data) {
        let _ = r.verify(r.stored_at, 0);
    }
    if let Ok(p) = PublicIdentity::from_bytes(data) {
        p.verify().expect("from_bytes verifies");
    }
    let _ = Identity::from_bytes(data);
});
