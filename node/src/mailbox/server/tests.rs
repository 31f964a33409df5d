use tokenim_crypto::Identity;

use super::*;

fn kind(r: &Response) -> &pb::response::Kind {
    r.kind.as_ref().expect("a response kind")
}

fn rejected_code(r: &Response) -> RejectCode {
    match kind(r) {
        pb::response::Kind::Rejected(x) => RejectCode::try_from(x.code).expect("code"),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn forged_foreign_and_stale_acks_are_rejected_and_delete_nothing() {
    let store = Store::in_memory();
    let relay = Relay::new(
        store.clone(),
        SigningKey::from_bytes(&[7; 32]),
        3600,
        Metrics::default(),
    );
    let relay_key = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
    let peer = PeerId::random();
    let owner = Identity::from_seed([1; 32]).mailbox_key(0);
    let attacker = Identity::from_seed([2; 32]).mailbox_key(0);
    let now = now_secs();
    let envelope = Envelope::new(owner.id(), vec![0; 512], now, 600);
    let bytes = prost::Message::encode_to_vec(&envelope);

    // Unregistered mailboxes are refused; registered ones get a receipt that verifies.
    let (r, _) = relay.handle(
        peer,
        pb::request::Kind::Store(pb::StoreEnvelope {
            envelopes: vec![bytes.clone()],
        }),
    );
    assert_eq!(rejected_code(&r), RejectCode::UnknownMailbox);
    store
        .mailbox_register(&owner.id().0, now)
        .expect("register");
    let (r, _) = relay.handle(
        peer,
        pb::request::Kind::Store(pb::StoreEnvelope {
            envelopes: vec![bytes],
        }),
    );
    let pb::response::Kind::Stored(stored) = kind(&r) else {
        panic!("not stored: {r:?}")
    };
    CustodyReceipt::from_bytes(&stored.receipt)
        .expect("receipt")
        .verify(&relay_key, &owner.id(), &[envelope.id()])
        .expect("receipt verifies");

    let ids = [envelope.id()];
    let mut forged = attacker.sign_ack(&relay_key, &ids, now);
    forged.mailbox = owner.id();
    let for_other_relay = owner.sign_ack(&[9; 32], &ids, now);
    let stale = owner.sign_ack(&relay_key, &ids, now - 2 * ACK_WINDOW_SECS);
    for bad in [
        forged.to_bytes(),
        for_other_relay.to_bytes(),
        stale.to_bytes(),
        vec![1, 2, 3],
    ] {
        let (r, _) = relay.handle(peer, pb::request::Kind::Ack(pb::AckMailbox { ack: bad }));
        assert!(matches!(
            rejected_code(&r),
            RejectCode::Forbidden | RejectCode::Malformed
        ));
    }
    assert_eq!(relay.metrics.acks_rejected.get(), 4);
    assert_eq!(
        store.mailbox_usage(&owner.id().0).expect("usage").messages,
        1,
        "nothing deleted"
    );

    let good = owner.sign_ack(&relay_key, &ids, now);
    let (r, _) = relay.handle(
        peer,
        pb::request::Kind::Ack(pb::AckMailbox {
            ack: good.to_bytes(),
        }),
    );
    assert!(matches!(kind(&r), pb::response::Kind::Acked(a) if a.deleted == 1));
    assert_eq!(
        store.mailbox_usage(&owner.id().0).expect("usage").messages,
        0
    );
}

#[test]
fn a_batch_is_stored_whole_under_one_receipt_or_not_at_all() {
    let store = Store::in_memory();
    let key = SigningKey::from_bytes(&[7; 32]);
    let relay_key = key.verifying_key().to_bytes();
    let relay = Relay::new(store.clone(), key, 3600, Metrics::default());
    let owner = Identity::from_seed([1; 32]).mailbox_key(0);
    let other = Identity::from_seed([2; 32]).mailbox_key(0);
    let now = now_secs();
    for m in [&owner, &other] {
        store.mailbox_register(&m.id().0, now).expect("register");
    }
    let envelope =
        |m: &tokenim_crypto::MailboxKey, i: u8| Envelope::new(m.id(), vec![i; 512], now, 600);
    let store_req = |envelopes: Vec<&Envelope>| {
        pb::request::Kind::Store(pb::StoreEnvelope {
            envelopes: envelopes
                .into_iter()
                .map(prost::Message::encode_to_vec)
                .collect(),
        })
    };
    let usage =
        |m: &tokenim_crypto::MailboxKey| store.mailbox_usage(&m.id().0).expect("usage").messages;
    let (a, b, c) = (
        envelope(&owner, 1),
        envelope(&owner, 2),
        envelope(&other, 3),
    );

    // Two mailboxes in one request, garbage, or nothing: refused, nothing stored.
    let (r, _) = relay.handle(PeerId::random(), store_req(vec![&a, &c]));
    assert_eq!(rejected_code(&r), RejectCode::Malformed);
    let garbage = pb::request::Kind::Store(pb::StoreEnvelope {
        envelopes: vec![prost::Message::encode_to_vec(&a), vec![9; 40]],
    });
    let (r, _) = relay.handle(PeerId::random(), garbage);
    assert_eq!(rejected_code(&r), RejectCode::Malformed);
    let (r, _) = relay.handle(PeerId::random(), store_req(vec![]));
    assert_eq!(rejected_code(&r), RejectCode::Malformed);
    assert_eq!(usage(&owner) + usage(&other), 0);

    // One receipt covers the batch; a repeat is all duplicates and is receipted again.
    for expected_duplicates in [0, 2] {
        let (r, followup) = relay.handle(PeerId::random(), store_req(vec![&a, &b]));
        let pb::response::Kind::Stored(stored) = kind(&r) else {
            panic!("not stored: {r:?}")
        };
        assert_eq!(stored.duplicates, expected_duplicates);
        assert_eq!(followup.publish.len(), 2 - expected_duplicates as usize);
        CustodyReceipt::from_bytes(&stored.receipt)
            .expect("receipt")
            .verify(&relay_key, &owner.id(), &[a.id(), b.id()])
            .expect("covers both");
    }
    assert_eq!(usage(&owner), 2);
}

#[test]
fn pages_of_large_envelopes_fit_one_frame() {
    let store = Store::in_memory();
    let key = SigningKey::from_bytes(&[7; 32]);
    let relay_key = key.verifying_key().to_bytes();
    let relay = Relay::new(store.clone(), key, 3600, Metrics::default());
    let owner = Identity::from_seed([1; 32]).mailbox_key(0);
    let now = now_secs();
    store
        .mailbox_register(&owner.id().0, now)
        .expect("register");
    for i in 0..40u8 {
        let e = Envelope::new(owner.id(), vec![i; 32 * 1024], now, 600);
        let bytes = prost::Message::encode_to_vec(&e);
        store
            .mailbox_put(&owner.id().0, &e.id(), &bytes, now, 600)
            .expect("put");
    }
    let peer = PeerId::random();
    let (r, _) = relay.handle(peer, pb::request::Kind::GetChallenge(pb::GetChallenge {}));
    let pb::response::Kind::Challenge(c) = kind(&r) else {
        panic!("no challenge")
    };
    let proof = owner.sign_registration(&relay_key, &c.challenge, now);
    let (mut after_seq, mut total) = (0, 0);
    loop {
        let fetch = pb::FetchMailbox {
            registration: proof.to_bytes(),
            after_seq,
            limit: MAX_PAGE as u32,
        };
        let (r, _) = relay.handle(peer, pb::request::Kind::Fetch(fetch));
        assert!(prost::Message::encoded_len(&r) <= crate::net::wire::MAX_FRAME_BYTES);
        let pb::response::Kind::Page(page) = kind(&r) else {
            panic!("no page: {r:?}")
        };
        assert!(!page.envelopes.is_empty() && page.envelopes.len() < 40);
        total += page.envelopes.len();
        after_seq = page.envelopes.last().map_or(after_seq, |e| e.seq);
        if !page.more {
            break;
        }
    }
    assert_eq!(total, 40);
}

#[test]
fn fetching_needs_a_fresh_proof_for_this_peer() {
    let store = Store::in_memory();
    let relay = Relay::new(
        store,
        SigningKey::from_bytes(&[7; 32]),
        3600,
        Metrics::default(),
    );
    let relay_key = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
    let owner = Identity::from_seed([1; 32]).mailbox_key(0);
    let (alice, mallory) = (PeerId::random(), PeerId::random());
    let (r, _) = relay.handle(alice, pb::request::Kind::GetChallenge(pb::GetChallenge {}));
    let pb::response::Kind::Challenge(c) = kind(&r) else {
        panic!("no challenge")
    };
    let proof = owner
        .sign_registration(&relay_key, &c.challenge, now_secs())
        .to_bytes();
    let register = |p: &Vec<u8>| {
        pb::request::Kind::Register(pb::RegisterMailbox {
            registration: p.clone(),
        })
    };
    // The proof is bound to the challenge given to alice's connection.
    let (r, _) = relay.handle(mallory, register(&proof));
    assert_eq!(rejected_code(&r), RejectCode::Forbidden);
    let (r, _) = relay.handle(alice, register(&proof));
    assert!(matches!(kind(&r), pb::response::Kind::Accepted(_)));
    let fetch = pb::FetchMailbox {
        registration: proof,
        after_seq: 0,
        limit: 10,
    };
    let (r, _) = relay.handle(alice, pb::request::Kind::Fetch(fetch.clone()));
    assert!(matches!(kind(&r), pb::response::Kind::Page(p) if p.envelopes.is_empty() && !p.more));
    relay.peer_disconnected(&alice);
    let (r, _) = relay.handle(alice, pb::request::Kind::Fetch(fetch));
    assert_eq!(
        rejected_code(&r),
        RejectCode::Forbidden,
        "challenges die with the connection"
    );
}

#[test]
fn refusals_do_not_say_how_full_a_mailbox_is() {
    let store = Store::in_memory_with(tokenim_store::StoreOptions {
        mailbox_max_messages: 1,
        ..Default::default()
    });
    let relay = Relay::new(
        store.clone(),
        SigningKey::from_bytes(&[7; 32]),
        3600,
        Metrics::default(),
    );
    let owner = Identity::from_seed([1; 32]).mailbox_key(0);
    store.mailbox_register(&owner.id().0, 0).expect("register");
    let envelope = |n: u8| {
        prost::Message::encode_to_vec(&Envelope::new(owner.id(), vec![n; 512], now_secs(), 600))
    };
    let store_one = |bytes: Vec<u8>| {
        relay
            .handle(
                PeerId::random(),
                pb::request::Kind::Store(pb::StoreEnvelope {
                    envelopes: vec![bytes],
                }),
            )
            .0
    };
    assert!(matches!(
        kind(&store_one(envelope(1))),
        pb::response::Kind::Stored(_)
    ));
    let refused = store_one(envelope(2));
    let pb::response::Kind::Rejected(r) = kind(&refused) else {
        panic!("a full mailbox stored more: {refused:?}");
    };
    assert_eq!(RejectCode::try_from(r.code), Ok(RejectCode::Quota));
    assert!(
        !r.detail.chars().any(|c| c.is_ascii_digit()),
        "{}",
        r.detail
    );
}

#[test]
fn only_checked_envelopes_and_owner_signed_tombstones_pass_gossip_validation() {
    use crate::mailbox::protocol::check_gossip;
    let gossip_is_valid = |data: &[u8], now| check_gossip(data, now).is_ok();
    let now = now_secs();
    let owner = Identity::from_seed([1; 32]).mailbox_key(0);
    let stranger = Identity::from_seed([2; 32]).mailbox_key(0);
    let tombstone = |ack: Vec<u8>| {
        prost::Message::encode_to_vec(&pb::Gossip {
            kind: Some(pb::gossip::Kind::Tombstone(ack)),
        })
    };
    let envelope = Envelope::new(owner.id(), vec![3; 512], now, 600);
    let ids = [envelope.id()];
    // A tombstone for any relay is fine if the owner signed it; a forged one is not.
    let signed = owner.sign_ack(&[9; 32], &ids, now);
    let mut forged = stranger.sign_ack(&[9; 32], &ids, now);
    forged.mailbox = owner.id();
    assert!(gossip_is_valid(&tombstone(signed.to_bytes()), now));
    assert!(!gossip_is_valid(&tombstone(forged.to_bytes()), now));
    assert!(!gossip_is_valid(
        &tombstone(
            owner
                .sign_ack(&[9; 32], &ids, now - 2 * ACK_WINDOW_SECS)
                .to_bytes()
        ),
        now
    ));
    assert!(gossip_is_valid(
        &gossip_envelope(prost::Message::encode_to_vec(&envelope)),
        now
    ));
    assert!(!gossip_is_valid(&gossip_envelope(vec![3; 64]), now));
    assert!(!gossip_is_valid(b"junk", now));
}
