//! Relay figures, in process with a real RocksDB in a temporary directory:
//!
//! * ingest: 1 KiB-message envelopes received, checked (decode, hash, bucket), stored and
//!   receipted (Ed25519 signature) per second, one per request and 64 per request — the bound
//!   from crypto + RocksDB alone;
//! * drain: 100,000 queued messages fetched page by page, opened (Noise transport), written
//!   to the inbox with their dedup ids and session state (one transaction per page), and
//!   acknowledged. The relay runs on its own thread, as on its own machine, and the recipient
//!   asks for the next page before it processes the current one, as `sync_mailbox` does;
//! * page query latency with 100 concurrent clients over 1,000,000 stored envelopes, served
//!   by the relay's worker threads (`RelayHandle`), measured from request to answer.
//!
//! Run: `cargo bench -p tokenim-node --bench relay` (sizes: TOKENIM_BENCH_INGEST,
//! TOKENIM_BENCH_DRAIN, TOKENIM_BENCH_STORED).

use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokenim_crypto::ed25519_dalek::SigningKey;
use tokenim_crypto::{Envelope, Identity, InnerMessage, SessionPolicy, Sessions};
use tokenim_node::bench::{Metrics, Relay, RelayHandle};
use tokenim_node::peer::wire::pb;
use tokenim_store::{Cf, Direction, MessageRecord, MessageState, Store, StoreOptions};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

fn open_store(dir: &std::path::Path) -> Store {
    let opts = StoreOptions {
        mailbox_max_messages: u64::MAX,
        mailbox_max_bytes: u64::MAX,
        total_max_bytes: u64::MAX,
        ..StoreOptions::default()
    };
    Store::open(dir, opts).expect("open store")
}

fn relay(store: &Store) -> (Relay, PeerId) {
    (
        Relay::new(
            store.clone(),
            SigningKey::from_bytes(&[7; 32]),
            14 * 86400,
            Metrics::default(),
        ),
        PeerId::random(),
    )
}

fn ingest(n: usize, batch: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    let (relay, peer) = relay(&store);
    let owner = Identity::from_seed([1; 32]).mailbox_key(0);
    store
        .mailbox_register(&owner.id().0, now())
        .expect("register");
    // Distinct envelopes of a 1 KiB message's bucket (2 KiB): the relay never decrypts.
    let envelopes: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut frame = vec![0u8; 2048];
            frame[..8].copy_from_slice(&(i as u64).to_be_bytes());
            prost::Message::encode_to_vec(&Envelope::new(owner.id(), frame, now(), 86400))
        })
        .collect();
    let t0 = Instant::now();
    for chunk in envelopes.chunks(batch) {
        let (r, _) = relay.handle(
            peer,
            pb::request::Kind::Store(pb::StoreEnvelope {
                grant: Vec::new(),
                envelopes: chunk.to_vec(),
            }),
        );
        assert!(matches!(r.kind, Some(pb::response::Kind::Stored(_))));
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "| relay ingest (check + store + receipt), {n} × 1 KiB, {batch} per request | {:.0} msg/s |",
        n as f64 / secs
    );
}

fn drain(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay_store = open_store(&dir.path().join("relay"));
    let inbox = open_store(&dir.path().join("bob"));
    let (relay, peer) = relay(&relay_store);
    let relay_key = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
    let alice = Identity::from_seed([2; 32]);
    let bob = Identity::from_seed([3; 32]);
    let mailbox = bob.mailbox_key(0);
    relay_store
        .mailbox_register(&mailbox.id().0, now())
        .expect("register");
    let mut a = Sessions::new(SessionPolicy {
        rekey_after_messages: u64::MAX,
        ..SessionPolicy::default()
    });
    let mut b = Sessions::new(SessionPolicy::default());
    // Establish the session so the queue is transport frames, as in steady state.
    let first = a
        .seal(
            &alice,
            &bob.public(),
            &InnerMessage::text([0; 16], "hi", 0),
            now(),
        )
        .expect("seal");
    let reply = b
        .open(&bob, &first, now())
        .expect("open")
        .reply
        .expect("reply");
    a.open(&alice, &reply, now()).expect("response");
    let body = "x".repeat(1000);
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        let frame = a
            .seal(
                &alice,
                &bob.public(),
                &InnerMessage::text(id, body.clone(), 0),
                now(),
            )
            .expect("seal");
        let env = Envelope::new(mailbox.id(), frame, now(), 86400);
        items.push((env.id(), prost::Message::encode_to_vec(&env)));
    }
    for chunk in items.chunks(1000) {
        let refs: Vec<(&[u8; 32], &[u8])> =
            chunk.iter().map(|(id, e)| (id, e.as_slice())).collect();
        relay_store
            .mailbox_put_many(&mailbox.id().0, &refs, now(), 86400)
            .expect("put");
    }
    drop(items);

    // The relay on its own thread, answering requests in order.
    type Reply = std::sync::mpsc::Receiver<Option<pb::response::Kind>>;
    let (to_relay, requests) = std::sync::mpsc::channel::<(
        pb::request::Kind,
        std::sync::mpsc::SyncSender<Option<pb::response::Kind>>,
    )>();
    let relay_thread = std::thread::spawn(move || {
        for (kind, reply) in requests {
            let _ = reply.send(relay.handle(peer, kind).0.kind);
        }
    });
    let ask = |kind| -> Reply {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        to_relay.send((kind, tx)).expect("relay thread");
        rx
    };

    let t0 = Instant::now();
    let Ok(Some(pb::response::Kind::Challenge(c))) =
        ask(pb::request::Kind::GetChallenge(pb::GetChallenge {})).recv()
    else {
        panic!("challenge")
    };
    let proof = mailbox
        .sign_registration(&relay_key, &c.challenge, now())
        .to_bytes();
    let fetch = |after_seq| {
        pb::request::Kind::Fetch(pb::FetchMailbox {
            registration: proof.clone(),
            after_seq,
            limit: 256,
        })
    };
    let mut drained = 0;
    let peer_key = alice.public().identity_key;
    let mut next = ask(fetch(0));
    let mut acks = Vec::new();
    loop {
        let Ok(Some(pb::response::Kind::Page(page))) = next.recv() else {
            panic!("page")
        };
        // Ask for the next page before processing this one.
        if page.more {
            next = ask(fetch(page.envelopes.last().expect("a full page").seq));
        }
        let mut txn = inbox.txn();
        let mut acked = Vec::new();
        for e in &page.envelopes {
            let env = Envelope::decode_checked(&e.envelope).expect("envelope");
            let opened = b.open(&bob, &env.ciphertext, now()).expect("open");
            let inner = opened.inner.expect("inner");
            let id: [u8; 16] = inner.id.as_slice().try_into().expect("id");
            if !inbox.is_seen(&peer_key, &id).expect("seen") {
                let record = MessageRecord {
                    id,
                    conversation: peer_key,
                    direction: Direction::Incoming,
                    from: peer_key,
                    to: bob.public().identity_key,
                    kind: 1,
                    body: inner.body,
                    sent_at_ms: 0,
                    received_at_ms: 0,
                    state: MessageState::Received,
                    relays: 0,
                    envelope_id: None,
                    updated_at_ms: 0,
                    held: false,
                    group: false,
                    reached: 0,
                    delivered_to: 0,
                    read_by: 0,
                };
                txn = txn
                    .put_message(&record)
                    .mark_seen(&peer_key, &id, now() + 86400);
            }
            acked.push(env.id());
        }
        let state = b.peer_state(&peer_key).expect("state");
        txn.put_session(&peer_key, &state)
            .commit()
            .expect("inbox commit");
        drained += acked.len();
        let ack = mailbox.sign_ack(&relay_key, &acked, now());
        acks.push(ask(pb::request::Kind::Ack(pb::AckMailbox {
            ack: ack.to_bytes(),
        })));
        if !page.more {
            break;
        }
    }
    for a in acks {
        assert!(matches!(a.recv(), Ok(Some(pb::response::Kind::Acked(_)))));
    }
    drop(to_relay);
    relay_thread.join().expect("relay thread");
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(drained, n);
    assert_eq!(
        relay_store
            .mailbox_usage(&mailbox.id().0)
            .expect("usage")
            .messages,
        0
    );
    println!(
        "| drain {n} queued messages (fetch, open, inbox, ack) | {secs:.2} s ({:.0} msg/s) |",
        n as f64 / secs
    );
}

fn concurrent_pages(stored: usize, clients: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    let keys: Vec<_> = (0..clients)
        .map(|i| Identity::from_seed([i as u8 + 10; 32]).mailbox_key(0))
        .collect();
    for k in &keys {
        store.mailbox_register(&k.id().0, now()).expect("register");
    }
    let per = stored / clients;
    for (mi, k) in keys.iter().enumerate() {
        for start in (0..per).step_by(2000) {
            let batch: Vec<([u8; 32], Vec<u8>)> = (start..(start + 2000).min(per))
                .map(|i| {
                    let mut id = [0u8; 32];
                    id[..8].copy_from_slice(&((mi * per + i) as u64).to_be_bytes());
                    (id, vec![0u8; 512])
                })
                .collect();
            let refs: Vec<(&[u8; 32], &[u8])> =
                batch.iter().map(|(id, e)| (id, e.as_slice())).collect();
            store
                .mailbox_put_many(&k.id().0, &refs, now(), 86400)
                .expect("put");
        }
    }
    // Settle the LSM tree, as on a relay that has been running for a while: otherwise the
    // compactions of the bulk load above compete with the queries for the two cores.
    store.flush().expect("flush");
    for cf in [Cf::Mailboxes, Cf::MailboxIndex, Cf::MailboxExpiry] {
        store
            .backend()
            .compact_range(cf, None, None)
            .expect("compact");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let threads = env_usize(
        "TOKENIM_BENCH_RELAY_THREADS",
        tokenim_node::config::RelayConfig::default().worker_threads(),
    );
    let (lat, wall) = runtime.block_on(async {
        let (relay, _) = relay(&store);
        let (relay, idle) = RelayHandle::new(relay, Metrics::default());
        relay.start(idle, None, threads);
        let relay_key = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
        let ask = move |peer, kind| {
            let (reply, rx) = tokio::sync::oneshot::channel();
            relay.request(peer, kind, reply);
            rx
        };
        // Every client proves its mailbox once; its pages then reuse the proof.
        let mut proofs = Vec::new();
        for k in &keys {
            let peer = PeerId::random();
            let r = ask(peer, pb::request::Kind::GetChallenge(pb::GetChallenge {}));
            let Ok(pb::Response {
                kind: Some(pb::response::Kind::Challenge(c)),
            }) = r.await
            else {
                panic!("challenge")
            };
            let proof = k.sign_registration(&relay_key, &c.challenge, now());
            proofs.push((peer, proof.to_bytes()));
        }
        let t0 = Instant::now();
        let tasks: Vec<_> = proofs
            .into_iter()
            .enumerate()
            .map(|(i, (peer, proof))| {
                let ask = ask.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    for q in 0..50u64 {
                        let after = (q * 7919 + i as u64 * 104_729) % per as u64;
                        let fetch = pb::FetchMailbox {
                            registration: proof.clone(),
                            after_seq: after + 1,
                            limit: 100,
                        };
                        let t = Instant::now();
                        let r = ask(peer, pb::request::Kind::Fetch(fetch)).await;
                        lat.push(t.elapsed());
                        let Ok(pb::Response {
                            kind: Some(pb::response::Kind::Page(page)),
                        }) = r
                        else {
                            panic!("no page: {r:?}")
                        };
                        assert!(!page.envelopes.is_empty() || after + 2 >= per as u64);
                    }
                    lat
                })
            })
            .collect();
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.expect("client"));
        }
        (lat, t0.elapsed().as_secs_f64())
    });
    let mut lat = lat;
    lat.sort();
    println!(
        "| page of 100 after a cursor, {clients} concurrent clients, {stored} stored, {threads} relay threads | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({:.0} pages/s) |",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        lat.len() as f64 / wall
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let scale = |n: usize| if quick { n / 100 } else { n };
    println!("| relay benchmark | result |\n|---|---|");
    let ingest_n = env_usize("TOKENIM_BENCH_INGEST", scale(50_000));
    ingest(ingest_n, 1);
    ingest(ingest_n, 64);
    drain(env_usize("TOKENIM_BENCH_DRAIN", scale(100_000)));
    concurrent_pages(env_usize("TOKENIM_BENCH_STORED", scale(1_000_000)), 100);
}
