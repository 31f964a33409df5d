//! The delivery rules, driven in one process with a fake network (the test answers the swarm
//! task's commands), a paused tokio clock and a manual wall clock.

mod disk;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use libp2p::PeerId;
use tokenim_crypto::{
    ContactCard, Envelope, Identity, InnerKind, InnerMessage, Opened, SessionPolicy, Sessions,
};
use tokenim_store::{ContactRecord, MessageState, Store};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::*;
use crate::mailbox::{HomeTask, home_relays};
use crate::net::wire::{self, RejectCode, pb};
use crate::net::{Command, DeliverError, NetInfo};

/// Wall-clock start of every test (ms since the epoch).
const T0_MS: u64 = 1_800_000_000_000;
/// Longest a test waits for the node to do something, in paused (virtual) time.
const QUIET: Duration = Duration::from_secs(120);

type Answer = oneshot::Sender<Result<wire::Response, DeliverError>>;

/// Another user, played by the test with its own session state.
struct Peer {
    id: Identity,
    node: PeerId,
    sessions: Sessions,
}

impl Peer {
    fn new(seed: u8) -> Self {
        Self {
            id: Identity::from_seed([seed; 32]),
            node: PeerId::random(),
            sessions: Sessions::new(SessionPolicy::default()),
        }
    }

    fn key(&self) -> IdentityKey {
        IdentityKey(self.id.public().identity_key)
    }

    fn card(&self) -> String {
        let mut card = ContactCard::new(&self.id, "peer", T0_MS / 1000, 30 * 24 * 3600);
        card.mailboxes = vec![self.id.mailbox_key(0).id()];
        card.node_peer_id = Some(self.node.to_bytes());
        card.direct_addrs = vec!["/ip4/127.0.0.1/tcp/9".into()];
        card.to_uri(&self.id).expect("card")
    }

    fn text(id: [u8; 16], body: &str) -> InnerMessage {
        InnerMessage {
            kind: InnerKind::Text as i32,
            id: id.to_vec(),
            body: body.into(),
            ref_ids: Vec::new(),
            sent_at_ms: T0_MS,
            sender_card: String::new(),
            write_grant: Vec::new(),
            payload: Vec::new(),
            attachments: Vec::new(),
        }
    }

    /// Seals `inner` to `to` as an encoded envelope for its first mailbox.
    fn seal(&mut self, to: &Identity, inner: &InnerMessage) -> Vec<u8> {
        let frame = self
            .sessions
            .seal(&self.id, &to.public(), inner, T0_MS / 1000)
            .expect("seal");
        let envelope = Envelope::new(to.mailbox_key(0).id(), frame, T0_MS / 1000, 3600);
        prost::Message::encode_to_vec(&envelope)
    }

    fn open(&mut self, encoded: &[u8]) -> Opened {
        let envelope = Envelope::decode_checked(encoded).expect("envelope");
        self.sessions
            .open(&self.id, &envelope.ciphertext, T0_MS / 1000)
            .expect("open")
    }
}

struct Rig {
    handle: DeliveryHandle,
    /// Requests the node sent, with the channel to answer each.
    net: mpsc::Receiver<(PeerId, wire::Request, Answer)>,
    net_events: mpsc::Sender<NetEvent>,
    events: broadcast::Receiver<NodeEvent>,
    store: Store,
    clock: Arc<AtomicU64>,
    metrics: Metrics,
    _home: HomeTask,
}

fn settings() -> Settings {
    Settings {
        display_name: "me".into(),
        publish_direct_addrs: true,
        message_ttl_secs: 3600,
        max_retry_backoff: Duration::from_secs(300),
        max_inflight: 256,
        max_inflight_per_peer: 32,
        max_outbox: 1000,
        requests: RequestLimits::default(),
        max_file_bytes: tokenim_crypto::file::DEFAULT_MAX_FILE_SIZE,
    }
}

fn rig(settings: Settings, contacts: &[&Peer]) -> Rig {
    rig_on(Store::in_memory(), settings, contacts)
}

fn rig_on(store: Store, settings: Settings, contacts: &[&Peer]) -> Rig {
    for p in contacts {
        store
            .put_contact(&ContactRecord {
                identity_key: p.key().0,
                name: None,
                card_uri: p.card(),
                added_at: T0_MS / 1000,
                updated_at: T0_MS / 1000,
                state: tokenim_store::ContactState::Accepted,
                write_grant: Vec::new(),
                device_cards: Vec::new(),
            })
            .expect("contact");
    }
    let (net, mut net_rx) = NetworkHandle::fake(PeerId::random());
    // The network: requests go to the test, everything else is answered here.
    let (requests, requests_rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(cmd) = net_rx.recv().await {
            match cmd {
                Command::Request {
                    peer,
                    request,
                    reply,
                    ..
                } => {
                    let _ = requests.send((peer, request, reply)).await;
                }
                Command::Info { reply } => {
                    let _ = reply.send(NetInfo {
                        peer_id: PeerId::random(),
                        listen_addrs: Vec::new(),
                        connected: Vec::new(),
                    });
                }
                _ => {}
            }
        }
    });
    let (home, home_task) = home_relays(&[], &store);
    let (events_tx, events) = broadcast::channel(256);
    let clock = Arc::new(AtomicU64::new(T0_MS));
    let metrics = Metrics::default();
    let delivery = Delivery::new(Parts {
        me: Arc::new(Identity::from_seed([1; 32])),
        sessions: Sessions::new(SessionPolicy::default()),
        store: store.clone(),
        net,
        home,
        events: crate::event::Events::new(events_tx),
        metrics: metrics.clone(),
        settings,
        clock: Clock::Manual(clock.clone()),
    });
    let (net_events, net_events_rx) = mpsc::channel(16);
    let (handle, _join) = delivery.spawn(net_events_rx).expect("spawn");
    Rig {
        handle,
        net: requests_rx,
        net_events,
        events,
        store,
        clock,
        metrics,
        _home: home_task,
    }
}

impl Rig {
    /// The next envelope the node delivers; `None` when it sends nothing for [`QUIET`].
    async fn next_request(&mut self) -> Option<(PeerId, Vec<u8>, Answer)> {
        let (peer, request, answer) = tokio::time::timeout(QUIET, self.net.recv()).await.ok()??;
        let Some(pb::request::Kind::Deliver(d)) = request.kind else {
            panic!("the node sent something other than `deliver`");
        };
        Some((peer, d.envelope, answer))
    }

    async fn send(&self, to: &Peer, body: &str) -> MessageId {
        let record = self.handle.send(to.key(), body.into()).await.expect("send");
        MessageId(record.id)
    }

    /// Hands the node an envelope as a contact's node would; its answer.
    async fn deliver(&self, from: &Peer, envelope: Vec<u8>) -> wire::Response {
        let (reply, answer) = oneshot::channel();
        self.net_events
            .send(NetEvent::Request {
                peer: from.node,
                request: wire::Request::deliver(envelope),
                reply,
            })
            .await
            .expect("delivery task");
        answer.await.expect("answer")
    }

    fn state(&self, id: MessageId) -> MessageState {
        self.store
            .get_message(&id.0)
            .expect("store")
            .expect("message")
            .state
    }

    /// The next state change of message `id`.
    async fn next_state(&mut self, id: MessageId) -> MessageState {
        loop {
            match self.events.recv().await.expect("events") {
                NodeEvent::MessageState(m) if m.id == id.0 => return m.state,
                _ => {}
            }
        }
    }
}

fn accepted() -> Result<wire::Response, DeliverError> {
    Ok(wire::Response::accepted(false))
}

#[tokio::test(start_paused = true)]
async fn in_flight_deliveries_stay_within_the_total_and_per_peer_limits() {
    let (bob, carol) = (Peer::new(2), Peer::new(3));
    let mut r = rig(
        Settings {
            max_inflight: 3,
            max_inflight_per_peer: 2,
            ..settings()
        },
        &[&bob, &carol],
    );
    for i in 0..4 {
        r.send(&bob, &format!("b{i}")).await;
    }
    for i in 0..2 {
        r.send(&carol, &format!("c{i}")).await;
    }
    let mut open: Vec<(PeerId, Answer)> = Vec::new();
    let (mut delivered, mut most_at_once) = (0, 0);
    while delivered < 6 {
        match r.next_request().await {
            Some((peer, _, answer)) => {
                open.push((peer, answer));
                let to_bob = open.iter().filter(|(p, _)| *p == bob.node).count();
                assert!(open.len() <= 3, "{} deliveries in flight", open.len());
                assert!(
                    to_bob <= 2 && open.len() - to_bob <= 2,
                    "per-peer limit broken"
                );
                most_at_once = most_at_once.max(open.len());
            }
            // Nothing more can start: settle the oldest delivery.
            None => {
                assert!(!open.is_empty(), "the node stalled with nothing in flight");
                let (_, answer) = open.remove(0);
                answer.send(accepted()).expect("waiting");
                delivered += 1;
            }
        }
    }
    assert_eq!(most_at_once, 3, "the node never used all its slots");
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_peer_is_retried_with_growing_delays_until_the_message_expires() {
    let bob = Peer::new(2);
    let mut r = rig(
        Settings {
            message_ttl_secs: 30,
            max_retry_backoff: Duration::from_secs(16),
            ..settings()
        },
        &[&bob],
    );
    let id = r.send(&bob, "hello").await;
    let start = tokio::time::Instant::now();
    let mut attempts = Vec::new();
    while let Some((_, _, answer)) = r.next_request().await {
        let elapsed = start.elapsed();
        attempts.push(elapsed.as_secs());
        r.clock
            .store(T0_MS + elapsed.as_millis() as u64, Ordering::Relaxed);
        answer
            .send(Err(DeliverError::Unreachable("offline".into())))
            .expect("waiting");
        if attempts.len() == 4 {
            break;
        }
    }
    // 2 s doubling; the retry due at 30 s would be past the 30 s TTL: the message fails.
    assert_eq!(attempts, [0, 2, 6, 14]);
    assert_eq!(r.next_state(id).await, MessageState::Failed);
    assert!(r.next_request().await.is_none(), "retried after expiry");
    assert!(r.store.list_outbox().expect("outbox").is_empty());
}

#[tokio::test(start_paused = true)]
async fn states_never_move_backwards() {
    let mut bob = Peer::new(2);
    let mut r = rig(settings(), &[&bob]);
    let id = r.send(&bob, "hello").await;
    let (_, envelope, answer) = r.next_request().await.expect("delivery");
    answer.send(accepted()).expect("waiting");
    assert_eq!(r.next_state(id).await, MessageState::Delivered);
    // Bob opens it (learning the session), then reports it read, then a late "delivered".
    bob.open(&envelope);
    let me = Identity::from_seed([1; 32]);
    for kind in [InnerKind::ReadReceipt, InnerKind::DeliveryReceipt] {
        let receipt = InnerMessage::receipt(kind, rand::random(), &[id.0], T0_MS);
        let sealed = bob.seal(&me, &receipt);
        assert!(matches!(
            r.deliver(&bob, sealed).await.kind,
            Some(pb::response::Kind::Accepted(_))
        ));
    }
    assert_eq!(r.next_state(id).await, MessageState::Read);
    assert_eq!(
        r.state(id),
        MessageState::Read,
        "a late receipt moved it back"
    );
    // Only its recipient may report on a message.
    let mut carol = Peer::new(3);
    let forged = InnerMessage::receipt(InnerKind::DeliveryReceipt, rand::random(), &[id.0], T0_MS);
    let sealed = carol.seal(&me, &forged);
    r.deliver(&carol, sealed).await;
    assert_eq!(r.state(id), MessageState::Read);
}

#[tokio::test(start_paused = true)]
async fn an_undecryptable_frame_is_resealed_on_a_fresh_session_with_the_same_id() {
    let mut bob = Peer::new(2);
    let mut r = rig(settings(), &[&bob]);
    let id = r.send(&bob, "hello").await;
    let (_, first, answer) = r.next_request().await.expect("delivery");
    answer
        .send(Ok(wire::Response::rejected(
            RejectCode::Undecryptable,
            "no session",
        )))
        .expect("waiting");
    let (_, second, answer) = r.next_request().await.expect("resealed delivery");
    assert_ne!(first, second, "the same frame was sent again");
    let opened = bob.open(&second);
    let inner = opened.inner.expect("a message");
    assert_eq!(
        (inner.id.as_slice(), inner.body.as_str()),
        (&id.0[..], "hello")
    );
    let stored = r.store.get_message(&id.0).expect("store").expect("message");
    let resealed = Envelope::decode_checked(&second).expect("envelope").id();
    assert_eq!(stored.envelope_id, Some(resealed));
    answer.send(accepted()).expect("waiting");
    assert_eq!(r.next_state(id).await, MessageState::Delivered);
}

#[tokio::test(start_paused = true)]
async fn a_batch_of_handshakes_from_one_peer_is_answered_once() {
    let mut bob = Peer::new(2);
    let r = rig(settings(), &[&bob]);
    let me = Identity::from_seed([1; 32]);
    let first = bob.seal(&me, &Peer::text([1; 16], "one"));
    bob.sessions.reset_send(&me.public().identity_key);
    let second = bob.seal(&me, &Peer::text([2; 16], "two"));
    let acks = r
        .handle
        .ingest_weak()
        .ingest(PeerId::random(), vec![first, second])
        .await;
    assert_eq!(acks, [true, true]);
    // One handshake answer (the last init) and one delivery receipt for both messages.
    let outbox = r.store.list_outbox().expect("outbox");
    assert_eq!(outbox.len(), 2, "{outbox:?}");
}

#[tokio::test(start_paused = true)]
async fn one_envelope_that_can_never_be_stored_holds_back_none_of_its_page() {
    let (mut bob, mut carol, mut dave) = (Peer::new(2), Peer::new(3), Peer::new(4));
    let r = rig(settings(), &[&bob, &carol, &dave]);
    let me = Identity::from_seed([1; 32]);
    // The same inner id from two senders cannot both be stored, so the page's one write fails;
    // the frames it opened must open again (sessions reloaded) and be stored one by one.
    let page = vec![
        bob.seal(&me, &Peer::text([9; 16], "bob's")),
        carol.seal(&me, &Peer::text([9; 16], "carol's")),
        dave.seal(&me, &Peer::text([8; 16], "dave's")),
    ];
    let acks = r.handle.ingest_weak().ingest(PeerId::random(), page).await;
    assert_eq!(acks, [true, true, true], "the relay may delete all three");
    let stored = r
        .store
        .get_message(&[9; 16])
        .expect("store")
        .expect("stored");
    assert_eq!((stored.from, stored.body.as_str()), (bob.key().0, "bob's"));
    let stored = r
        .store
        .get_message(&[8; 16])
        .expect("store")
        .expect("stored");
    assert_eq!(stored.from, dave.key().0);
    assert_eq!(
        r.metrics.envelopes_dropped.get(),
        1,
        "carol's is dropped, and counted"
    );
}

#[tokio::test(start_paused = true)]
async fn a_resent_envelope_is_stored_and_announced_once() {
    let mut bob = Peer::new(2);
    let mut r = rig(settings(), &[&bob]);
    let me = Identity::from_seed([1; 32]);
    let envelope = bob.seal(&me, &Peer::text([5; 16], "once"));
    let first = r.deliver(&bob, envelope.clone()).await;
    let again = r.deliver(&bob, envelope).await;
    let duplicate = |resp: &wire::Response| match &resp.kind {
        Some(pb::response::Kind::Accepted(a)) => a.duplicate,
        other => panic!("not accepted: {other:?}"),
    };
    assert!(!duplicate(&first));
    assert!(duplicate(&again));
    let mut announced = 0;
    while let Ok(ev) = r.events.try_recv() {
        if matches!(ev, NodeEvent::Message(m) if m.id == [5; 16]) {
            announced += 1;
        }
    }
    assert_eq!(announced, 1);
    let (inbox, _) = r.store.list_messages(None, 10, None).expect("inbox");
    assert_eq!(inbox.len(), 1);
}

mod consent;
