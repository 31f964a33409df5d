//! Property tests: round trips, and corrupted or truncated input is an `Err`, never a panic
//! (and never a different valid value).
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use prost::Message as _;
use tokenim_crypto::{
    Address, BUCKETS, ContactCard, CustodyReceipt, Envelope, Identity, InnerMessage, MailboxAck,
    MailboxId, Registration, RelayInfo, SessionPolicy, Sessions,
};

const BECH32_CHARS: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn relay_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x52; 32])
}

/// Applies one mutation: flip bits in a byte, truncate, or insert a byte.
fn mutate(mut v: Vec<u8>, op: u8, pos: usize, val: u8) -> Vec<u8> {
    if v.is_empty() {
        return vec![val];
    }
    let pos = pos % v.len();
    match op % 3 {
        0 => v[pos] ^= val.max(1),
        1 => v.truncate(pos),
        _ => v.insert(pos, val),
    }
    v
}

/// (identity seed, a card of that identity).
fn card_strategy() -> impl Strategy<Value = (u8, ContactCard)> {
    let relays = prop::collection::vec(
        (
            prop::collection::vec(any::<u8>(), 1..40),
            prop::collection::vec("/[a-z0-9/.]{1,40}", 0..3),
        ),
        0..3,
    );
    (
        any::<u8>(),
        "[a-zA-Z0-9 éü漢-]{0,40}",
        prop::collection::vec(any::<[u8; 32]>(), 0..4),
        relays,
        prop::option::of(prop::collection::vec(any::<u8>(), 1..40)),
        prop::collection::vec("/[a-z0-9/.]{1,40}", 0..3),
        0u64..u64::MAX / 2,
        0u64..1_000_000,
    )
        .prop_map(|(seed, name, mbs, relays, peer, direct, created, valid)| {
            let id = Identity::from_seed([seed; 32]);
            let mut card = ContactCard::new(&id, name, created, valid);
            card.mailboxes = mbs.into_iter().map(MailboxId).collect();
            card.home_relays = relays
                .into_iter()
                .map(|(peer_id, addrs)| RelayInfo { peer_id, addrs })
                .collect();
            card.node_peer_id = peer;
            card.direct_addrs = direct;
            (seed, card)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn address_round_trip_and_typos(key in any::<[u8; 32]>(), pos in 4usize..62, c in 0usize..32) {
        let a = Address::from_identity_key(key);
        let s = a.to_string();
        prop_assert_eq!(s.parse::<Address>().unwrap(), a);
        let mut t = s.clone().into_bytes();
        prop_assume!(t[pos] != BECH32_CHARS[c]);
        t[pos] = BECH32_CHARS[c];
        let typo = String::from_utf8(t).unwrap();
        prop_assert!(typo.parse::<Address>().is_err());
    }

    #[test]
    fn address_transposition_is_detected(key in any::<[u8; 32]>(), pos in 4usize..61) {
        let s = Address::from_identity_key(key).to_string();
        let mut t = s.clone().into_bytes();
        prop_assume!(t[pos] != t[pos + 1]);
        t.swap(pos, pos + 1);
        prop_assert!(String::from_utf8(t).unwrap().parse::<Address>().is_err());
    }

    #[test]
    fn address_parse_never_panics(s in ".{0,100}") {
        let _ = s.parse::<Address>();
        let _ = s.parse::<MailboxId>();
    }

    #[test]
    fn card_round_trip((seed, card) in card_strategy()) {
        let uri = card.to_uri(&Identity::from_seed([seed; 32])).unwrap();
        prop_assert_eq!(ContactCard::from_uri(&uri, card.created_at).unwrap(), card);
    }

    #[test]
    fn corrupted_card_is_rejected(seed in any::<u8>(), op in any::<u8>(), pos in any::<usize>(), val in any::<u8>()) {
        let id = Identity::from_seed([seed; 32]);
        let card = ContactCard::new(&id, "Bob", 10, 100);
        let uri = card.to_uri(&id).unwrap();
        let bytes = mutate(uri.clone().into_bytes(), op, pos, val);
        if let Ok(s) = String::from_utf8(bytes) {
            // Harmless edits (whitespace, prefix case) may still parse, but never to another
            // card.
            if let Ok(c) = ContactCard::from_uri(&s, 50) {
                prop_assert_eq!(c, card);
            }
        }
    }

    #[test]
    fn card_decode_never_panics(s in "tokenim:[A-Za-z0-9_-]{0,300}") {
        let _ = ContactCard::from_uri(&s, 0);
    }

    #[test]
    fn envelope_round_trip(mb in any::<[u8; 32]>(), b in 0usize..BUCKETS.len(), fill in any::<u8>(), now in any::<u64>(), ttl in any::<u32>()) {
        let env = Envelope::new(MailboxId(mb), vec![fill; BUCKETS[b]], now, ttl);
        let d = Envelope::decode_checked(&env.encode_to_vec()).unwrap();
        prop_assert_eq!(d.mailbox().unwrap(), MailboxId(mb));
        prop_assert_eq!(d, env);
    }

    #[test]
    fn corrupted_envelope_never_panics(op in any::<u8>(), pos in any::<usize>(), val in any::<u8>()) {
        let env = Envelope::new(MailboxId([1; 32]), vec![3; 512], 600, 60);
        let bytes = mutate(env.encode_to_vec(), op, pos, val);
        if let Ok(d) = Envelope::decode_checked(&bytes) {
            // Only fields outside the id may change (e.g. ttl); the id still matches the data.
            prop_assert_eq!(d.id(), tokenim_crypto::message_id(&d.ciphertext));
        }
    }

    #[test]
    fn envelope_decode_arbitrary(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = Envelope::decode_checked(&bytes);
    }

    #[test]
    fn receipts_round_trip(mid in any::<[u8; 32]>(), mb in any::<[u8; 32]>(), t in any::<u64>(), d in any::<u32>(), n in 1usize..20) {
        let r = relay_key();
        let rk = r.verifying_key().to_bytes();
        let ids: Vec<[u8; 32]> = (0..n).map(|i| [i as u8; 32]).collect();
        let rc = CustodyReceipt::sign(&r, &ids, MailboxId(mb), t / 2, t / 2 + u64::from(d));
        let back = CustodyReceipt::from_bytes(&rc.to_bytes()).unwrap();
        back.verify(&rk, &MailboxId(mb), &ids).unwrap();
        prop_assert_eq!(back, rc);
        let mk = Identity::from_seed([mb[0]; 32]).mailbox_key(u32::from(mb[1]));
        let ack = mk.sign_ack(&rk, &ids, t);
        let back = MailboxAck::from_bytes(&ack.to_bytes()).unwrap();
        back.verify(&mk.id(), &rk, t, 0).unwrap();
        prop_assert_eq!(back, ack);
        let reg = mk.sign_registration(&rk, &mid, t);
        let back = Registration::from_bytes(&reg.to_bytes()).unwrap();
        back.verify(&rk, &mid, t, 0).unwrap();
        prop_assert_eq!(back, reg);
    }

    #[test]
    fn corrupted_ack_is_rejected(op in any::<u8>(), pos in any::<usize>(), val in any::<u8>()) {
        let mk = Identity::from_seed([4; 32]).mailbox_key(0);
        let rk = relay_key().verifying_key().to_bytes();
        let ack = mk.sign_ack(&rk, &[[1; 32], [2; 32]], 1000);
        let bytes = mutate(ack.to_bytes(), op, pos, val);
        if let Ok(a) = MailboxAck::from_bytes(&bytes) {
            let ok = a.verify(&mk.id(), &rk, 1000, 60).is_ok();
            // Verifies only if it still says exactly what was signed.
            prop_assert_eq!(ok, a == ack);
        }
    }

    #[test]
    fn corrupted_receipt_is_rejected(op in any::<u8>(), pos in any::<usize>(), val in any::<u8>()) {
        let r = relay_key();
        let rk = r.verifying_key().to_bytes();
        let rc = CustodyReceipt::sign(&r, &[[7; 32], [9; 32]], MailboxId([8; 32]), 10, 20);
        if let Ok(c) = CustodyReceipt::from_bytes(&mutate(rc.to_bytes(), op, pos, val)) {
            prop_assert_eq!(c.verify(&rk, &MailboxId([8; 32]), &[[7; 32], [9; 32]]).is_ok(), c == rc);
        }
    }
}

fn text(id: u8, body: String) -> InnerMessage {
    InnerMessage::text([id; 16], body, 0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any interleaving of sends on a session round-trips, in any delivery order.
    #[test]
    fn seal_open_round_trip(bodies in prop::collection::vec(".{0,300}", 1..12), big in 0usize..20_000, rot in any::<usize>()) {
        let (a, b) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
        let mut sa = Sessions::with_seed(SessionPolicy::default(), [3; 32]);
        let mut sb = Sessions::with_seed(SessionPolicy::default(), [4; 32]);
        let mut msgs: Vec<InnerMessage> = bodies.into_iter().enumerate().map(|(i, s)| text(i as u8, s)).collect();
        msgs.push(text(200, "y".repeat(big)));
        // First message: init + response.
        let f = sa.seal(&a, &b.public(), &msgs[0], 1).unwrap();
        let o = sb.open(&b, &f, 1).unwrap();
        prop_assert_eq!(o.inner.as_ref(), Some(&msgs[0]));
        sa.open(&a, &o.reply.unwrap(), 1).unwrap();
        let mut frames: Vec<(usize, Vec<u8>)> = msgs.iter().enumerate().skip(1)
            .map(|(i, m)| (i, sa.seal(&a, &b.public(), m, 2).unwrap()))
            .collect();
        let k = rot % frames.len();
        frames.rotate_left(k);
        for (i, f) in frames {
            prop_assert!(BUCKETS.contains(&f.len()));
            prop_assert_eq!(sb.open(&b, &f, 3).unwrap().inner.unwrap(), msgs[i].clone());
        }
    }

    /// Any corruption of any frame kind is an error, and does not disturb the session.
    #[test]
    fn corrupted_frames_are_rejected(which in 0u8..3, op in any::<u8>(), pos in any::<usize>(), val in any::<u8>()) {
        let (a, b) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
        let mut sa = Sessions::with_seed(SessionPolicy::default(), [3; 32]);
        let mut sb = Sessions::with_seed(SessionPolicy::default(), [4; 32]);
        let init = sa.seal(&a, &b.public(), &text(1, "one".into()), 1).unwrap();
        let mut probe_b = Sessions::with_seed(SessionPolicy::default(), [5; 32]);
        if which == 0 {
            prop_assert!(probe_b.open(&b, &mutate(init.clone(), op, pos, val), 1).is_err());
        }
        let resp = sb.open(&b, &init, 1).unwrap().reply.unwrap();
        if which == 1 {
            prop_assert!(sa.open(&a, &mutate(resp.clone(), op, pos, val), 1).is_err());
        }
        sa.open(&a, &resp, 1).unwrap();
        let t = sa.seal(&a, &b.public(), &text(2, "two".into()), 1).unwrap();
        if which == 2 {
            prop_assert!(sb.open(&b, &mutate(t.clone(), op, pos, val), 1).is_err());
        }
        prop_assert_eq!(sb.open(&b, &t, 1).unwrap().inner.unwrap(), text(2, "two".into()));
    }

    #[test]
    fn arbitrary_frames_never_panic(kind in 0u8..5, b in 0usize..2, rest in prop::collection::vec(any::<u8>(), 0..64)) {
        let me = Identity::from_seed([2; 32]);
        let mut s = Sessions::with_seed(SessionPolicy::default(), [4; 32]);
        let mut f = vec![0u8; BUCKETS[b]];
        f[0] = kind;
        f[1..1 + rest.len()].copy_from_slice(&rest);
        prop_assert!(s.open(&me, &f, 0).is_err());
    }
}
