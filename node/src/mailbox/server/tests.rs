use tokenim_crypto::Identity;

use super::super::protocol::{ACK_WINDOW_SECS, MAX_PAGE};

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
            grant: Vec::new(),
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
            grant: Vec::new(),
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
    // With a mesh, so that what it stores is gossiped.
    let relay = Relay::new(store.clone(), key, 3600, Metrics::default())
        .with_mesh(MeshKeys::from([[1; 32]]));
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
            grant: Vec::new(),
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
        grant: Vec::new(),
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
                    grant: Vec::new(),
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
fn only_mesh_signed_envelopes_and_owner_signed_tombstones_pass_gossip_validation() {
    use crate::mailbox::protocol::{GOSSIP_WINDOW_SECS, InvalidGossip, check_gossip};
    let mesh_relay = SigningKey::from_bytes(&[8; 32]);
    let outsider = SigningKey::from_bytes(&[9; 32]);
    let mesh = MeshKeys::from([mesh_relay.verifying_key().to_bytes()]);
    let check = |data: &[u8], now| check_gossip(data, now, &mesh).map(|_| ());
    let now = now_secs();
    let owner = Identity::from_seed([1; 32]).mailbox_key(0);
    let stranger = Identity::from_seed([2; 32]).mailbox_key(0);
    let gossip = |kind| prost::Message::encode_to_vec(&pb::Gossip { kind: Some(kind) });
    let tombstone = |ack: Vec<u8>| gossip(pb::gossip::Kind::Tombstone(ack));
    let envelope = Envelope::new(owner.id(), vec![3; 512], now, 600);
    let bytes = prost::Message::encode_to_vec(&envelope);
    let ids = [envelope.id()];
    // A tombstone for any relay is fine if the owner signed it; a forged one is not.
    let signed = owner.sign_ack(&[9; 32], &ids, now);
    let mut forged = stranger.sign_ack(&[9; 32], &ids, now);
    forged.mailbox = owner.id();
    assert_eq!(check(&tombstone(signed.to_bytes()), now), Ok(()));
    assert_eq!(
        check(&tombstone(forged.to_bytes()), now),
        Err(InvalidGossip::Tombstone)
    );
    let stale = owner.sign_ack(&[9; 32], &ids, now - 2 * ACK_WINDOW_SECS);
    assert_eq!(
        check(&tombstone(stale.to_bytes()), now),
        Err(InvalidGossip::Tombstone)
    );
    // An envelope counts only as a relay of the mesh signed it, within the window.
    assert_eq!(
        check(&relayed_gossip(&mesh_relay, bytes.clone(), now), now),
        Ok(())
    );
    for unvouched in [
        relayed_gossip(&outsider, bytes.clone(), now),
        relayed_gossip(&mesh_relay, bytes.clone(), now - GOSSIP_WINDOW_SECS - 1),
        relayed_gossip(&mesh_relay, bytes.clone(), now + GOSSIP_WINDOW_SECS + 1),
    ] {
        assert_eq!(check(&unvouched, now), Err(InvalidGossip::Unvouched));
    }
    // An outsider's copy relabelled with a mesh relay's key does not verify.
    let mut relabelled = tokenim_crypto::RelayedEnvelope::sign(&outsider, bytes.clone(), now);
    relabelled.relay_key = mesh_relay.verifying_key().to_bytes();
    let relabelled = gossip(pb::gossip::Kind::Relayed(relabelled.to_bytes()));
    assert_eq!(check(&relabelled, now), Err(InvalidGossip::Unvouched));
    // Even a mesh relay's signature does not make junk an envelope.
    assert_eq!(
        check(&relayed_gossip(&mesh_relay, vec![3; 64], now), now),
        Err(InvalidGossip::Envelope)
    );
    assert_eq!(check(b"junk", now), Err(InvalidGossip::Envelope));
    assert_eq!(
        check(&gossip(pb::gossip::Kind::Relayed(bytes)), now),
        Err(InvalidGossip::Envelope)
    );
}

/// A relay with a mesh gossips what it stored, signed; a relay of that mesh stores the copy,
/// a relay outside it does not; a relay without a mesh gossips nothing (neither envelopes nor
/// tombstones).
#[test]
fn stored_envelopes_are_gossiped_signed_and_only_the_mesh_takes_them() {
    use crate::mailbox::protocol::check_gossip;
    let owner = Identity::from_seed([1; 32]).mailbox_key(0);
    let (key_a, key_b) = (
        SigningKey::from_bytes(&[7; 32]),
        SigningKey::from_bytes(&[8; 32]),
    );
    let relay = |key: &SigningKey, mesh: MeshKeys| {
        let store = Store::in_memory();
        store.mailbox_register(&owner.id().0, 0).expect("register");
        let relay = Relay::new(store.clone(), key.clone(), 3600, Metrics::default());
        (relay.with_mesh(mesh), store)
    };
    let (a, _) = relay(&key_a, MeshKeys::from([key_b.verifying_key().to_bytes()]));
    let (b, b_store) = relay(&key_b, MeshKeys::from([key_a.verifying_key().to_bytes()]));
    let (lone, _) = relay(&key_a, MeshKeys::new());
    let envelope = Envelope::new(owner.id(), vec![4; 512], now_secs(), 600);
    let store = pb::request::Kind::Store(pb::StoreEnvelope {
        grant: Vec::new(),
        envelopes: vec![prost::Message::encode_to_vec(&envelope)],
    });
    let (_, followup) = a.handle(PeerId::random(), store.clone());
    let [(topic, data)] = followup.publish.as_slice() else {
        panic!("one gossip message expected: {followup:?}");
    };
    assert_eq!(*topic, shard_topic(&owner.id()));
    assert!(
        check_gossip(data, now_secs(), lone.mesh()).is_err(),
        "taken outside the mesh"
    );
    let copy = check_gossip(data, now_secs(), b.mesh()).expect("taken by the mesh");
    let again = b.on_gossip(copy);
    assert!(again.publish.is_empty(), "gossip is not published twice");
    assert_eq!(
        b_store
            .mailbox_usage(&owner.id().0)
            .expect("usage")
            .messages,
        1
    );

    let (_, followup) = lone.handle(PeerId::random(), store);
    assert!(
        followup.publish.is_empty(),
        "a relay without a mesh gossiped"
    );
    let lone_key = key_a.verifying_key().to_bytes();
    let ack = owner.sign_ack(&lone_key, &[envelope.id()], now_secs());
    let ack = pb::request::Kind::Ack(pb::AckMailbox {
        ack: ack.to_bytes(),
    });
    let (r, followup) = lone.handle(PeerId::random(), ack);
    assert!(matches!(kind(&r), pb::response::Kind::Acked(a) if a.deleted == 1));
    assert!(
        followup.publish.is_empty(),
        "a relay without a mesh gossiped a tombstone"
    );
}
