//! Tests that need the internals: snow compatibility, forward/post-compromise security.
#![allow(clippy::unwrap_used)]

use super::*;

fn ids() -> (Identity, Identity) {
    (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]))
}

fn text(n: u8) -> InnerMessage {
    InnerMessage::text([n; 16], format!("message {n}"), u64::from(n))
}

/// Our transport encryption gives the same bytes as snow's StatelessTransportState for the same
/// handshake, in both directions, and each side decrypts the other's.
#[test]
fn transport_is_byte_compatible_with_snow() {
    let (a, b) = ids();
    let mut ini = noise::initiator(&a.dh_secret_bytes(), &b.public().dh_key, [3; 32]).unwrap();
    let mut res = noise::responder(&b.dh_secret_bytes(), [4; 32]).unwrap();
    let (mut m, mut p) = (vec![0u8; 1024], vec![0u8; 1024]);
    let n = ini.write_message(b"hello", &mut m).unwrap();
    res.read_message(&m[..n], &mut p).unwrap();
    let n = res.write_message(b"", &mut m).unwrap();
    ini.read_message(&m[..n], &mut p).unwrap();
    let (k1, k2) = ini.dangerously_get_raw_split();
    assert_eq!(res.dangerously_get_raw_split(), (k1, k2));
    let snow_i = ini.into_stateless_transport_mode().unwrap();
    let snow_r = res.into_stateless_transport_mode().unwrap();
    let msg = b"the same bytes, please".repeat(20);
    for nonce in [0u64, 1, 2, 255, 256, 1 << 32, (1 << 40) + 7] {
        // initiator -> responder with k1
        let mut ours = msg.clone();
        let tag = transport::seal_in_place(&k1, nonce, &mut ours);
        ours.extend_from_slice(&tag);
        let mut theirs = vec![0u8; msg.len() + 16];
        let n = snow_i.write_message(nonce, &msg, &mut theirs).unwrap();
        assert_eq!(&theirs[..n], &ours[..], "nonce {nonce}");
        let mut out = vec![0u8; msg.len()];
        snow_r.read_message(nonce, &ours, &mut out).unwrap();
        assert_eq!(out, msg);
        // responder -> initiator with k2 (unused by TokenIM, but proves the key order)
        let n = snow_r.write_message(nonce, &msg, &mut theirs).unwrap();
        let mut buf = theirs[..n].to_vec();
        assert_eq!(
            transport::open_in_place(&k2, nonce, &mut buf).unwrap(),
            &msg[..]
        );
    }
}

/// A complete Sessions transport frame decrypts with snow's transport state of the same
/// handshake (the ciphertext after the header is a plain Noise transport message).
#[test]
fn session_frame_matches_snow_transport_message() {
    let (a, b) = ids();
    let mut ini = noise::initiator(&a.dh_secret_bytes(), &b.public().dh_key, [5; 32]).unwrap();
    let mut res = noise::responder(&b.dh_secret_bytes(), [6; 32]).unwrap();
    let (mut m, mut p) = (vec![0u8; 1024], vec![0u8; 1024]);
    let n = ini.write_message(b"", &mut m).unwrap();
    res.read_message(&m[..n], &mut p).unwrap();
    let n = res.write_message(b"", &mut m).unwrap();
    ini.read_message(&m[..n], &mut p).unwrap();
    let (k1, _) = ini.dangerously_get_raw_split();
    let mut send = SendSession {
        id: noise::session_id(ini.get_handshake_hash()),
        key: Zeroizing::new(k1),
        next_nonce: 41,
        created_at: 0,
        sent: 0,
        seq: 0,
    };
    let frame = seal_transport(&mut send, &text(9)).unwrap();
    assert_eq!(frame.len(), 512);
    assert_eq!(frame[1..17], noise::session_id(res.get_handshake_hash()));
    let snow_r = res.into_stateless_transport_mode().unwrap();
    let mut out = vec![0u8; frame.len()];
    let n = snow_r
        .read_message(41, &frame[TRANSPORT_HEADER..], &mut out)
        .unwrap();
    let payload = frame::unpad(&out[..n]).unwrap();
    assert_eq!(InnerMessage::decode(payload).unwrap(), text(9));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Re-handshakes ratchet: once the old receive session is dropped, its key is gone from memory
/// and from persisted state, it cannot open new messages, and its frames are refused.
#[test]
fn rehandshake_gives_forward_and_post_compromise_security() {
    let (a, b) = ids();
    let policy = SessionPolicy {
        rekey_after_messages: 3,
        max_inbound: 2,
        ..SessionPolicy::default()
    };
    let mut sa = Sessions::with_seed(policy.clone(), [10; 32]);
    let mut sb = Sessions::with_seed(policy.clone(), [11; 32]);
    let (ak, bk) = (a.public().identity_key, b.public().identity_key);
    let mut old_keys: Vec<[u8; 32]> = Vec::new();
    let mut old_frames: Vec<Vec<u8>> = Vec::new();
    let mut n = 0u8;
    for round in 0..4 {
        // 3 messages per session: 1 init + 2 transport.
        for i in 0..3 {
            n += 1;
            let f = sa.seal(&a, &b.public(), &text(n), 100).unwrap();
            assert_eq!(
                f[0],
                if i == 0 { KIND_INIT } else { KIND_TRANSPORT },
                "round {round}"
            );
            let o = sb.open(&b, &f, 100).unwrap();
            assert_eq!(o.inner.unwrap(), text(n));
            if let Some(r) = o.reply {
                sa.open(&a, &r, 100).unwrap();
                old_keys.push(*sa.peers[&bk].send.as_ref().unwrap().key);
            }
            if i == 2 {
                old_frames.push(f);
            }
        }
    }
    assert_eq!(old_keys.len(), 4);
    // B holds only the 2 newest sessions.
    assert_eq!(sb.inbound_sessions(&ak), 2);
    let held: Vec<[u8; 32]> = sb.peers[&ak].inbound.iter().map(|s| *s.key).collect();
    assert_eq!(held, old_keys[2..].to_vec());
    let a_state = sa.peer_state(&bk).unwrap();
    let b_state = sb.peer_state(&ak).unwrap();
    for k in &old_keys[..3] {
        assert!(!contains(&a_state, k), "sender kept an old send key");
    }
    for k in &old_keys[..2] {
        assert!(!contains(&b_state, k), "receiver kept a dropped key");
    }
    assert!(
        contains(&b_state, &old_keys[3]),
        "the test looks at the right bytes"
    );
    // Restored state has no old keys either.
    let mut sb2 = Sessions::with_seed(policy, [12; 32]);
    sb2.restore_peer(&b_state).unwrap();
    let restored: Vec<[u8; 32]> = sb2.peers[&ak].inbound.iter().map(|s| *s.key).collect();
    assert_eq!(restored, old_keys[2..].to_vec());
    // A frame of a dropped session is refused; the old key does not open new messages.
    assert!(matches!(
        sb2.open(&b, &old_frames[0], 100),
        Err(CryptoError::UnknownSession)
    ));
    n += 1;
    let f = sa.seal(&a, &b.public(), &text(n), 100).unwrap();
    assert_eq!(f[0], KIND_INIT);
    let mut ct = f[HANDSHAKE_HEADER..].to_vec();
    for k in &old_keys {
        let mut c = ct.clone();
        assert!(transport::open_in_place(k, 0, &mut c).is_err());
    }
    let o = sb2.open(&b, &f, 100).unwrap();
    sa.open(&a, &o.reply.unwrap(), 100).unwrap();
    n += 1;
    let f = sa.seal(&a, &b.public(), &text(n), 100).unwrap();
    assert_eq!(f[0], KIND_TRANSPORT);
    ct = f[TRANSPORT_HEADER..].to_vec();
    for k in &old_keys {
        let mut c = ct.clone();
        assert!(transport::open_in_place(k, 0, &mut c).is_err());
    }
    assert_eq!(sb2.open(&b, &f, 100).unwrap().inner.unwrap(), text(n));
}

/// Once a send session is worn out while B is offline, every message is an init; B reads them
/// from its mailbox, in any order relative to the transport frames sent before, and still
/// opens those.
#[test]
fn a_burst_of_inits_does_not_push_out_the_session_in_use() {
    let (a, b) = ids();
    let policy = SessionPolicy {
        rekey_after_secs: 10,
        max_inbound: 2,
        ..SessionPolicy::default()
    };
    let mut sa = Sessions::with_seed(policy.clone(), [20; 32]);
    let mut sb = Sessions::with_seed(policy, [21; 32]);
    let first = sa.seal(&a, &b.public(), &text(1), 100).unwrap();
    let reply = sb.open(&b, &first, 100).unwrap().reply.unwrap();
    sa.open(&a, &reply, 100).unwrap();
    let used = sa.seal(&a, &b.public(), &text(2), 100).unwrap();
    assert_eq!(used[0], KIND_TRANSPORT);
    sb.open(&b, &used, 100).unwrap();
    // Two more transport frames are queued somewhere; a day later the session is worn out.
    let late: Vec<_> = (3..5)
        .map(|n| sa.seal(&a, &b.public(), &text(n), 100).unwrap())
        .collect();
    let inits: Vec<_> = (5..15)
        .map(|n| sa.seal(&a, &b.public(), &text(n), 200).unwrap())
        .collect();
    assert!(inits.iter().all(|f| f[0] == KIND_INIT));
    for f in &inits {
        sb.open(&b, f, 200).unwrap();
    }
    assert_eq!(sb.inbound_sessions(&a.public().identity_key), 2);
    for (f, n) in late.iter().zip(3..) {
        assert_eq!(sb.open(&b, f, 200).unwrap().inner.unwrap(), text(n));
    }
}

/// A rekey while B is offline costs one init per `rekey_after_messages`: the old session
/// carries the rest until B answers, and B's answer moves A to the new session.
#[test]
fn a_rekey_keeps_the_old_session_until_answered() {
    let (a, b) = ids();
    let policy = SessionPolicy {
        rekey_after_messages: 4,
        ..SessionPolicy::default()
    };
    let mut sa = Sessions::with_seed(policy.clone(), [22; 32]);
    let mut sb = Sessions::with_seed(policy, [23; 32]);
    let first = sa.seal(&a, &b.public(), &text(1), 100).unwrap();
    let reply = sb.open(&b, &first, 100).unwrap().reply.unwrap();
    sa.open(&a, &reply, 100).unwrap();
    // B is offline from here: 20 messages queue.
    let queued: Vec<_> = (2..22)
        .map(|n| sa.seal(&a, &b.public(), &text(n), 100).unwrap())
        .collect();
    let kinds: String = queued
        .iter()
        .map(|f| if f[0] == KIND_INIT { 'i' } else { 't' })
        .collect();
    assert_eq!(kinds, "tttitttitttitttittti");
    let mut replies = Vec::new();
    for (f, n) in queued.iter().zip(2..) {
        let o = sb.open(&b, f, 100).unwrap();
        assert_eq!(o.inner.unwrap(), text(n));
        replies.extend(o.reply);
    }
    // B answers the last init; A switches and drops the old key.
    let old_key = *sa.peers[&b.public().identity_key]
        .send
        .as_ref()
        .unwrap()
        .key;
    sa.open(&a, replies.last().unwrap(), 100).unwrap();
    let next = sa.seal(&a, &b.public(), &text(30), 100).unwrap();
    assert_eq!(next[0], KIND_TRANSPORT);
    assert_ne!(
        *sa.peers[&b.public().identity_key]
            .send
            .as_ref()
            .unwrap()
            .key,
        old_key
    );
    assert_eq!(sb.open(&b, &next, 100).unwrap().inner.unwrap(), text(30));
}

/// An init frame from `a` to `b` carrying `payload` as it is, under header id `init_id`.
fn handcrafted_init(
    a: &Identity,
    b: &Identity,
    init_id: [u8; ID_LEN],
    payload: &pb::HandshakePayload,
) -> Vec<u8> {
    let payload = payload.encode_to_vec();
    let mut hs = noise::initiator(&a.dh_secret_bytes(), &b.public().dh_key, [8; 32]).unwrap();
    let len = frame::init_frame_len(payload.len()).unwrap();
    let pt = frame::pad(&payload, frame::init_plaintext_len(len));
    let mut f = vec![0u8; len];
    f[0] = KIND_INIT;
    f[1..HANDSHAKE_HEADER].copy_from_slice(&init_id);
    hs.write_message(&pt, &mut f[HANDSHAKE_HEADER..]).unwrap();
    f
}

/// An init whose payload names another identity than the Noise static key is refused.
#[test]
fn sender_must_match_noise_static_key() {
    let (a, b) = ids();
    let c = Identity::from_seed([3; 32]);
    let init_id = [7u8; ID_LEN];
    let payload = pb::HandshakePayload {
        init_id: init_id.to_vec(),
        created_at: 1,
        sender: Some(c.public().to_pb()), // claims to be C, but handshakes with A's key
        inner: Some(text(1)),
        sequence: 1,
        reply_id: vec![8; ID_LEN],
    };
    let f = handcrafted_init(&a, &b, init_id, &payload);
    let mut sb = Sessions::with_seed(SessionPolicy::default(), [9; 32]);
    assert!(matches!(
        sb.open(&b, &f, 1),
        Err(CryptoError::SenderMismatch)
    ));
    // The same with a header id that differs from the payload's.
    let mut g = f.clone();
    g[1] ^= 1;
    assert!(matches!(
        sb.open(&b, &g, 1),
        Err(CryptoError::FrameMalformed(_))
    ));
}

/// A response carries the reply id the initiator put inside its init, not the init's clear
/// id: an observer of both frames cannot pair them by their headers. The initiator finds its
/// pending handshake by the reply id; a response under the init id is unknown to it.
#[test]
fn a_response_names_the_hidden_reply_id_not_the_init_id() {
    let (a, b) = ids();
    let mut sa = Sessions::with_seed(SessionPolicy::default(), [20; 32]);
    let mut sb = Sessions::with_seed(SessionPolicy::default(), [21; 32]);
    let bk = b.public().identity_key;
    let init = sa.seal(&a, &b.public(), &text(1), 10).unwrap();
    let response = sb.open(&b, &init, 10).unwrap().reply.unwrap();
    let reply_id: [u8; ID_LEN] = response[1..HANDSHAKE_HEADER].try_into().unwrap();
    assert_ne!(
        reply_id,
        init[1..HANDSHAKE_HEADER],
        "response repeats the init id"
    );
    assert!(sa.pending_index.contains_key(&reply_id));
    assert!(!contains(&init, &reply_id), "reply id in clear in the init");
    // The same response relabelled with the init id finds nothing.
    let mut relabelled = response.clone();
    relabelled[1..HANDSHAKE_HEADER].copy_from_slice(&init[1..HANDSHAKE_HEADER]);
    assert!(matches!(
        sa.open(&a, &relabelled, 11),
        Err(CryptoError::UnknownSession)
    ));
    sa.open(&a, &response, 11).unwrap();
    assert!(sa.peers[&bk].send.is_some());
    assert!(sa.pending_index.is_empty());
    let t = sa.seal(&a, &b.public(), &text(2), 12).unwrap();
    assert_eq!(t[0], KIND_TRANSPORT);
    assert_eq!(sb.open(&b, &t, 12).unwrap().inner.unwrap(), text(2));
}

/// An init without a well-formed reply id is refused (there is no id to answer under).
#[test]
fn an_init_without_a_reply_id_is_refused() {
    let (a, b) = ids();
    let init_id = [7u8; ID_LEN];
    for reply_id in [Vec::new(), vec![1; ID_LEN - 1], vec![1; ID_LEN + 1]] {
        let payload = pb::HandshakePayload {
            init_id: init_id.to_vec(),
            created_at: 1,
            sender: Some(a.public().to_pb()),
            inner: Some(text(1)),
            sequence: 1,
            reply_id,
        };
        let f = handcrafted_init(&a, &b, init_id, &payload);
        let mut sb = Sessions::with_seed(SessionPolicy::default(), [9; 32]);
        assert!(matches!(
            sb.open(&b, &f, 1),
            Err(CryptoError::Malformed { .. })
        ));
    }
}

/// The table's indexes agree with the peers held: every stranger is in the eviction order once,
/// no known peer is, and no session or pending init of an evicted peer stays indexed.
fn check_table(s: &Sessions) {
    let strangers: Vec<_> = s.peers.keys().filter(|k| !s.known.contains(*k)).collect();
    assert_eq!(s.strangers.len(), strangers.len());
    for k in strangers {
        assert_eq!(s.strangers.get(&s.peers[k].activity), Some(k));
    }
    let inbound: usize = s.peers.values().map(|p| p.inbound.len()).sum();
    let pending: usize = s.peers.values().map(|p| p.pending.len()).sum();
    assert_eq!(s.recv_index.len(), inbound);
    assert_eq!(s.pending_index.len(), pending);
    for (id, k) in &s.recv_index {
        assert!(s.peers[k].inbound.iter().any(|r| r.id == *id));
    }
    for (id, k) in &s.pending_index {
        assert!(s.peers[k].pending.iter().any(|q| q.reply_id == *id));
    }
}

/// Strangers with several receive sessions and pending inits each, contacts marked and
/// unmarked: what eviction drops leaves nothing behind, so memory stays bounded by
/// `max_strangers` × the per-peer bounds.
#[test]
fn eviction_leaves_no_index_behind() {
    let policy = SessionPolicy {
        max_strangers: 4,
        max_inbound: 3,
        max_pending: 2,
        ..SessionPolicy::default()
    };
    let b = Identity::from_seed([2; 32]);
    let mut sb = Sessions::with_seed(policy.clone(), [30; 32]);
    let others: Vec<Identity> = (0..12u8)
        .map(|n| Identity::from_seed([100 + n; 32]))
        .collect();
    let mut senders: Vec<Sessions> = (0..12u8)
        .map(|n| Sessions::with_seed(policy.clone(), [150 + n; 32]))
        .collect();
    let mut rng = ChaCha20Rng::from_seed([31; 32]);
    for step in 0..300u64 {
        let i = (rng.next_u32() % 12) as usize;
        let (x, key) = (&others[i], others[i].public().identity_key);
        match rng.next_u32() % 8 {
            // A new handshake from x (several receive sessions per stranger).
            0..=3 => {
                senders[i].reset_send(&b.public().identity_key);
                let f = senders[i].seal(x, &b.public(), &text(1), step).unwrap();
                let o = sb.open(&b, &f, step).unwrap();
                senders[i].open(x, &o.reply.unwrap(), step).unwrap();
            }
            // B writes to x and gets no answer (pending inits).
            4..=5 => {
                sb.seal(&b, &x.public(), &text(2), step).unwrap();
            }
            _ => sb.set_known(&key, rng.next_u32() % 2 == 0),
        }
        check_table(&sb);
        assert!(sb.strangers.len() <= 4, "step {step}");
        assert!(sb.recv_index.len() <= sb.peers.len() * 3);
        assert!(sb.pending_index.len() <= sb.peers.len() * 2);
    }
    assert!(
        sb.peers.len() > sb.strangers.len(),
        "some contacts were held"
    );
}
