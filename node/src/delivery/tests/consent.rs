//! Contact consent: what strangers, requests and blocked peers can make the node do.

use super::*;
use crate::delivery::Consent;

fn with_card(peer: &Peer, id: [u8; 16], body: &str) -> InnerMessage {
    InnerMessage {
        sender_card: peer.card(),
        ..Peer::text(id, body)
    }
}

/// Held messages of a conversation (a request's).
fn held(r: &Rig, peer: &Peer) -> Vec<String> {
    let (all, _) = r
        .store
        .list_messages(Some(&peer.key().0), 100, None)
        .expect("store");
    all.into_iter().filter(|m| m.held).map(|m| m.body).collect()
}

fn timeline(r: &Rig) -> Vec<String> {
    let (all, _) = r.store.list_messages(None, 100, None).expect("store");
    all.into_iter().map(|m| m.body).collect()
}

fn is_accepted(resp: &wire::Response) -> bool {
    matches!(resp.kind, Some(pb::response::Kind::Accepted(_)))
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_strangers_queues_nothing_back_and_leaves_the_users_sends_their_room() {
    let bob = Peer::new(2);
    let mut r = rig(
        Settings {
            max_outbox: 4,
            requests: RequestLimits {
                max_requests: 8,
                ..RequestLimits::default()
            },
            ..settings()
        },
        &[&bob],
    );
    let me = Identity::from_seed([1; 32]);
    // Each stranger's first message is a fresh handshake carrying its card; a contact's would
    // be answered with a handshake response queued in the outbox.
    let mut strangers: Vec<Peer> = (0..40).map(|i| Peer::new(100 + i)).collect();
    for (i, s) in strangers.iter_mut().enumerate() {
        let inner = with_card(s, [i as u8; 16], "hi, it's me");
        let envelope = s.seal(&me, &inner);
        assert!(is_accepted(&r.deliver(s, envelope).await));
    }
    assert!(
        r.store.list_outbox().expect("outbox").is_empty(),
        "something was queued back to a stranger"
    );
    let requests = r
        .store
        .list_contacts()
        .expect("contacts")
        .into_iter()
        .filter(|c| c.state == tokenim_store::ContactState::Request)
        .count();
    assert_eq!(requests, 8, "stranger state is not bounded");
    assert_eq!(r.metrics.requests_dropped.get(), 32);
    assert!(timeline(&r).is_empty(), "a request reached the timeline");
    // The user's own sends still have all their room.
    for i in 0..4 {
        r.send(&bob, &format!("mine {i}")).await;
    }
    let mut to = Vec::new();
    while let Some((peer, _, answer)) = r.next_request().await {
        to.push(peer);
        answer.send(accepted()).expect("waiting");
    }
    assert_eq!(to, vec![bob.node; 4], "the node wrote to someone else");
}

#[tokio::test(start_paused = true)]
async fn accepting_a_request_releases_its_messages_and_receipts_them() {
    let mut carol = Peer::new(3);
    let mut r = rig(settings(), &[]);
    let me = Identity::from_seed([1; 32]);
    let page = vec![
        carol.seal(&me, &with_card(&carol, [1; 16], "one")),
        carol.seal(&me, &with_card(&carol, [2; 16], "two")),
    ];
    // Through a relay, a contact's messages would be receipted at once.
    let acks = r.handle.ingest_weak().ingest(PeerId::random(), page).await;
    assert_eq!(acks, [true, true]);
    assert_eq!(held(&r, &carol), ["two", "one"]);
    assert!(timeline(&r).is_empty());
    assert!(r.store.list_outbox().expect("outbox").is_empty());
    let mut requested = 0;
    while let Ok(ev) = r.events.try_recv() {
        requested += usize::from(matches!(ev, NodeEvent::MessageRequest(_)));
    }
    assert_eq!(requested, 2);

    let contact = r
        .handle
        .consent(
            carol.key(),
            Consent::Accept {
                name: Some("carol".into()),
            },
        )
        .await
        .expect("accept")
        .expect("record");
    assert_eq!(contact.name.as_deref(), Some("carol"));
    assert!(held(&r, &carol).is_empty());
    assert_eq!(timeline(&r), ["two", "one"]);
    // Now the delivery receipt goes out, to Carol's node.
    let (peer, envelope, answer) = r.next_request().await.expect("a receipt");
    assert_eq!(peer, carol.node);
    let receipt = carol.open(&envelope).inner.expect("inner");
    assert_eq!(receipt.kind, InnerKind::DeliveryReceipt as i32);
    assert_eq!(receipt.ref_ids.len(), 2);
    answer.send(accepted()).expect("waiting");
}

#[tokio::test(start_paused = true)]
async fn a_blocked_peer_is_dropped_and_an_unblocked_or_removed_one_is_a_stranger_again() {
    let mut bob = Peer::new(2);
    let r = rig(settings(), &[&bob]);
    let me = Identity::from_seed([1; 32]);
    r.handle
        .consent(bob.key(), Consent::Block)
        .await
        .expect("block");
    let sealed = bob.seal(&me, &Peer::text([1; 16], "let me in"));
    assert!(is_accepted(&r.deliver(&bob, sealed).await));
    assert_eq!(r.metrics.from_blocked.get(), 1);
    assert!(r.store.get_message(&[1; 16]).expect("store").is_none());
    let refused = r.handle.send(bob.key(), "hi".into()).await;
    assert!(
        matches!(refused, Err(DeliveryError::NotAContact(_))),
        "{refused:?}"
    );

    // Bob had no name: unblocked, he is a stranger, and his next message a request.
    r.handle
        .consent(bob.key(), Consent::Unblock)
        .await
        .expect("unblock");
    bob.sessions.reset_send(&me.public().identity_key);
    let sealed = bob.seal(&me, &with_card(&bob, [2; 16], "again"));
    r.deliver(&bob, sealed).await;
    assert_eq!(held(&r, &bob), ["again"]);

    // Accepted, then removed: a stranger once more.
    r.handle
        .consent(bob.key(), Consent::Accept { name: None })
        .await
        .expect("accept");
    r.handle
        .consent(bob.key(), Consent::Forget)
        .await
        .expect("forget");
    bob.sessions.reset_send(&me.public().identity_key);
    let sealed = bob.seal(&me, &with_card(&bob, [3; 16], "still me"));
    r.deliver(&bob, sealed).await;
    assert_eq!(held(&r, &bob), ["still me"]);
    assert_eq!(
        timeline(&r),
        ["again"],
        "history of the former contact stays"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_holds_a_bounded_number_of_messages() {
    let mut carol = Peer::new(3);
    let r = rig(
        Settings {
            requests: RequestLimits {
                max_messages: 5,
                ..RequestLimits::default()
            },
            ..settings()
        },
        &[],
    );
    let me = Identity::from_seed([1; 32]);
    for i in 0..12u8 {
        // No answer ever comes back, so every message is a fresh handshake.
        let sealed = carol.seal(&me, &with_card(&carol, [i; 16], &format!("m{i}")));
        assert!(is_accepted(&r.deliver(&carol, sealed).await));
    }
    assert_eq!(held(&r, &carol).len(), 5);
    assert_eq!(r.metrics.requests_dropped.get(), 7);
}
