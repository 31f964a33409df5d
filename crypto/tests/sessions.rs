//! Session behaviour through the public API: delivery with offline peers, ordering, loss,
//! replays, restarts, limits.
#![allow(clippy::unwrap_used)]

use tokenim_crypto::{
    BUCKETS, CryptoError, Envelope, Identity, InnerMessage, MAX_BODY_BYTES, MAX_CARD_URI_BYTES,
    MAX_REF_IDS, PublicIdentity, SessionPolicy, Sessions,
};

const INIT: u8 = 1;
const RESPONSE: u8 = 2;
const TRANSPORT: u8 = 3;

struct Party {
    id: Identity,
    s: Sessions,
}

impl Party {
    fn new(n: u8, policy: &SessionPolicy) -> Self {
        Party {
            id: Identity::from_seed([n; 32]),
            s: Sessions::with_seed(policy.clone(), [n + 100; 32]),
        }
    }
    fn public(&self) -> PublicIdentity {
        self.id.public()
    }
    fn key(&self) -> [u8; 32] {
        self.id.public().identity_key
    }
    fn seal(&mut self, to: &Party, m: &InnerMessage, now: u64) -> Vec<u8> {
        let f = self.s.seal(&self.id, &to.public(), m, now).unwrap();
        assert!(BUCKETS.contains(&f.len()));
        f
    }
    fn open(&mut self, f: &[u8], now: u64) -> tokenim_crypto::Result<tokenim_crypto::Opened> {
        self.s.open(&self.id, f, now)
    }
    /// Serialises every peer and restores into a fresh `Sessions` (a process restart).
    fn restart(&mut self, peers: &[[u8; 32]], seed: u8) {
        let policy = self.s.policy().clone();
        let states: Vec<_> = peers.iter().filter_map(|k| self.s.peer_state(k)).collect();
        self.s = Sessions::with_seed(policy, [seed; 32]);
        for st in states {
            self.s.restore_peer(&st).unwrap();
        }
    }
}

fn text(n: u32) -> InnerMessage {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    InnerMessage::text(id, format!("message {n}"), u64::from(n))
}

fn pair() -> (Party, Party) {
    let p = SessionPolicy::default();
    (Party::new(1, &p), Party::new(2, &p))
}

/// A sends one message, B answers the handshake, A takes the response.
fn establish(a: &mut Party, b: &mut Party, n: u32, now: u64) {
    let f = a.seal(b, &text(n), now);
    assert_eq!(f[0], INIT);
    let o = b.open(&f, now).unwrap();
    assert_eq!(o.from, a.public());
    assert_eq!(o.inner.unwrap(), text(n));
    let r = o.reply.unwrap();
    assert_eq!((r[0], r.len()), (RESPONSE, 512));
    let o = a.open(&r, now).unwrap();
    assert_eq!(o.from, b.public());
    assert!(o.inner.is_none() && o.reply.is_none());
    assert!(a.s.has_send_session(&b.key()));
}

#[test]
fn first_messages_are_self_contained_while_offline() {
    let (mut a, mut b) = pair();
    // B is offline: A's three messages are three inits.
    let frames: Vec<_> = (1..=3)
        .map(|n| a.seal(&b, &text(n), 10 + u64::from(n)))
        .collect();
    assert!(frames.iter().all(|f| f[0] == INIT));
    assert_eq!(a.s.pending_inits(&b.key()), 3);
    // B comes online and reads them newest first; every one decrypts on its own.
    let mut replies = Vec::new();
    for (i, f) in frames.iter().enumerate().rev() {
        let o = b.open(f, 100).unwrap();
        assert_eq!(o.inner.unwrap(), text(i as u32 + 1));
        replies.push(o.reply.unwrap());
    }
    // Responses arrive in any order; A ends on the newest session.
    for r in replies.iter().rev() {
        let _ = a.open(r, 100);
    }
    assert!(a.s.has_send_session(&b.key()));
    assert_eq!(a.s.pending_inits(&b.key()), 0);
    let f = a.seal(&b, &text(4), 101);
    assert_eq!(f[0], TRANSPORT);
    assert_eq!(b.open(&f, 101).unwrap().inner.unwrap(), text(4));
}

#[test]
fn out_of_order_and_lost_frames() {
    let (mut a, mut b) = pair();
    establish(&mut a, &mut b, 0, 1);
    let frames: Vec<_> = (1..=50).map(|n| a.seal(&b, &text(n), 2)).collect();
    assert!(frames.iter().all(|f| f[0] == TRANSPORT));
    // Deliver in a scrambled order and lose every 7th.
    let mut order: Vec<usize> = (0..50).collect();
    order.reverse();
    order.swap(3, 30);
    order.swap(10, 45);
    for i in order {
        if i % 7 == 3 {
            continue;
        }
        let o = b.open(&frames[i], 3).unwrap();
        assert_eq!(o.inner.unwrap(), text(i as u32 + 1));
        assert!(o.reply.is_none());
    }
}

#[test]
fn duplicates_are_rejected() {
    let (mut a, mut b) = pair();
    let init = a.seal(&b, &text(1), 1);
    let o = b.open(&init, 1).unwrap();
    assert!(matches!(b.open(&init, 1), Err(CryptoError::Replay)));
    let resp = o.reply.unwrap();
    a.open(&resp, 1).unwrap();
    assert!(matches!(a.open(&resp, 1), Err(CryptoError::UnknownSession)));
    let t = a.seal(&b, &text(2), 1);
    b.open(&t, 1).unwrap();
    assert!(matches!(b.open(&t, 1), Err(CryptoError::Replay)));
}

#[test]
fn frames_older_than_the_window_open_marked_late() {
    let p = SessionPolicy {
        replay_window: 64,
        ..SessionPolicy::default()
    };
    let (mut a, mut b) = (Party::new(1, &p), Party::new(2, &p));
    establish(&mut a, &mut b, 0, 1);
    let frames: Vec<_> = (1..=100).map(|n| a.seal(&b, &text(n), 1)).collect();
    assert!(!b.open(&frames[99], 1).unwrap().late);
    // Behind the window: authentic, but the caller must dedup it.
    let old = b.open(&frames[0], 1).unwrap();
    assert!(old.late);
    assert_eq!(old.inner.unwrap(), text(1));
    assert!(!b.open(&frames[99 - 63], 1).unwrap().late);
    assert!(matches!(b.open(&frames[99], 1), Err(CryptoError::Replay)));
    // A late frame is still authenticated.
    let mut forged = frames[1].clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(b.open(&forged, 1).is_err());
}

#[test]
fn restart_keeps_sessions_working() {
    let (mut a, mut b) = pair();
    let (ak, bk) = (a.key(), b.key());
    establish(&mut a, &mut b, 0, 1);
    let before: Vec<_> = (1..=5).map(|n| a.seal(&b, &text(n), 2)).collect();
    b.open(&before[0], 2).unwrap();
    b.open(&before[2], 2).unwrap();
    a.restart(&[bk], 50);
    b.restart(&[ak], 51);
    // Old frames still open after B's restart; the replay window survived.
    assert!(matches!(b.open(&before[2], 3), Err(CryptoError::Replay)));
    b.open(&before[1], 3).unwrap();
    // A continues on the same session with fresh nonces (never reusing one).
    let after = a.seal(&b, &text(6), 3);
    assert_eq!(after[0], TRANSPORT);
    assert_eq!(&after[1..17], &before[0][1..17]);
    let nonce = |f: &[u8]| u64::from_be_bytes(f[17..25].try_into().unwrap());
    assert_eq!(nonce(&after), nonce(&before[4]) + 1);
    assert_eq!(b.open(&after, 3).unwrap().inner.unwrap(), text(6));
    b.open(&before[4], 3).unwrap();
    // State restored into a process that already knew the peer replaces it cleanly.
    let st = b.s.peer_state(&ak).unwrap();
    b.s.restore_peer(&st).unwrap();
    b.open(&before[3], 3).unwrap();
}

#[test]
fn pending_inits_lost_on_restart_only_cost_a_handshake() {
    let (mut a, mut b) = pair();
    let bk = b.key();
    let f = a.seal(&b, &text(1), 1);
    a.restart(&[bk], 60);
    assert_eq!(a.s.pending_inits(&bk), 0);
    let o = b.open(&f, 2).unwrap();
    assert_eq!(o.inner.unwrap(), text(1));
    assert!(matches!(
        a.open(&o.reply.unwrap(), 2),
        Err(CryptoError::UnknownSession)
    ));
    establish(&mut a, &mut b, 2, 3);
    let t = a.seal(&b, &text(3), 3);
    assert_eq!(b.open(&t, 3).unwrap().inner.unwrap(), text(3));
}

#[test]
fn simultaneous_handshakes_both_ways() {
    let (mut a, mut b) = pair();
    let fa = a.seal(&b, &text(1), 1);
    let fb = b.seal(&a, &text(2), 1);
    let oa = a.open(&fb, 1).unwrap();
    let ob = b.open(&fa, 1).unwrap();
    assert_eq!(oa.inner.unwrap(), text(2));
    assert_eq!(ob.inner.unwrap(), text(1));
    a.open(&ob.reply.unwrap(), 1).unwrap();
    b.open(&oa.reply.unwrap(), 1).unwrap();
    for n in 3..10 {
        let x = a.seal(&b, &text(n), 2);
        let y = b.seal(&a, &text(n + 100), 2);
        assert_eq!((x[0], y[0]), (TRANSPORT, TRANSPORT));
        assert_eq!(b.open(&x, 2).unwrap().inner.unwrap(), text(n));
        assert_eq!(a.open(&y, 2).unwrap().inner.unwrap(), text(n + 100));
    }
}

#[test]
fn rehandshake_after_message_count_and_age() {
    let p = SessionPolicy {
        rekey_after_messages: 5,
        rekey_after_secs: 1000,
        ..SessionPolicy::default()
    };
    let (mut a, mut b) = (Party::new(1, &p), Party::new(2, &p));
    establish(&mut a, &mut b, 0, 10);
    let kinds: Vec<u8> = (1..=5)
        .map(|n| {
            let f = a.seal(&b, &text(n), 10);
            let o = b.open(&f, 10).unwrap();
            if let Some(r) = o.reply {
                a.open(&r, 10).unwrap();
            }
            f[0]
        })
        .collect();
    // 1 init + 4 transport, then the 6th message starts a new handshake.
    assert_eq!(kinds, [TRANSPORT, TRANSPORT, TRANSPORT, TRANSPORT, INIT]);
    let f = a.seal(&b, &text(6), 10);
    assert_eq!(f[0], TRANSPORT);
    b.open(&f, 10).unwrap();
    // Age: created at 10, so at 1010 it is due.
    assert_eq!(a.seal(&b, &text(7), 1009)[0], TRANSPORT);
    let f = a.seal(&b, &text(8), 1010);
    assert_eq!(f[0], INIT);
    // Until the response arrives, the old session carries on...
    let g = a.seal(&b, &text(9), 1011);
    assert_eq!(g[0], TRANSPORT);
    assert_eq!(b.open(&f, 1011).unwrap().inner.unwrap(), text(8));
    assert_eq!(b.open(&g, 1011).unwrap().inner.unwrap(), text(9));
    // ...but not past twice the age limit: then every message is a self-contained init.
    assert_eq!(a.seal(&b, &text(10), 2010)[0], INIT);
    assert_eq!(a.seal(&b, &text(11), 2010)[0], INIT);
}

#[test]
fn pending_inits_are_bounded() {
    let (mut a, mut b) = pair();
    let frames: Vec<_> = (1..=10).map(|n| a.seal(&b, &text(n), 1)).collect();
    assert_eq!(a.s.pending_inits(&b.key()), 8);
    let replies: Vec<_> = frames
        .iter()
        .filter_map(|f| b.open(f, 2).unwrap().reply)
        .collect();
    // B keeps 4 sessions, ordered by the initiator's sequence: it answered the first 4 it saw
    // and each later (newer) one.
    assert_eq!(replies.len(), 10);
    assert_eq!(b.s.inbound_sessions(&a.key()), 4);
    // The two oldest inits were forgotten by A.
    assert!(matches!(
        a.open(&replies[0], 2),
        Err(CryptoError::UnknownSession)
    ));
    assert!(matches!(
        a.open(&replies[1], 2),
        Err(CryptoError::UnknownSession)
    ));
    a.open(&replies[9], 2).unwrap();
    // Older responses after the newest was adopted: nothing left to wait for.
    assert!(matches!(
        a.open(&replies[5], 2),
        Err(CryptoError::UnknownSession)
    ));
    let t = a.seal(&b, &text(11), 3);
    assert_eq!(b.open(&t, 3).unwrap().inner.unwrap(), text(11));
}

#[test]
fn replayed_old_init_cannot_displace_sessions() {
    let (mut a, mut b) = pair();
    let old = a.seal(&b, &text(1), 1);
    b.open(&old, 1).unwrap();
    // Four newer handshakes fill B's receive sessions and push the first one out.
    let mut last_reply = None;
    for n in 2..=5 {
        let f = a.seal(&b, &text(n), 1 + u64::from(n));
        last_reply = b.open(&f, 10).unwrap().reply;
    }
    a.open(&last_reply.unwrap(), 10).unwrap();
    assert_eq!(b.s.inbound_sessions(&a.key()), 4);
    // A replay of the first init is delivered (the inbox dedups on the inner id) but creates no
    // session and no response, so the live session survives.
    let o = b.open(&old, 11).unwrap();
    assert_eq!(o.inner.unwrap(), text(1));
    assert!(o.reply.is_none());
    let t = a.seal(&b, &text(6), 11);
    assert_eq!(t[0], TRANSPORT);
    assert_eq!(b.open(&t, 11).unwrap().inner.unwrap(), text(6));
}

#[test]
fn only_the_recipient_can_open() {
    let (mut a, mut b) = pair();
    let mut c = Party::new(3, &SessionPolicy::default());
    let f = a.seal(&b, &text(1), 1);
    assert!(matches!(c.open(&f, 1), Err(CryptoError::DecryptFailed)));
    let o = b.open(&f, 1).unwrap();
    let r = o.reply.unwrap();
    assert!(matches!(c.open(&r, 1), Err(CryptoError::UnknownSession)));
    a.open(&r, 1).unwrap();
    let t = a.seal(&b, &text(2), 1);
    assert!(matches!(c.open(&t, 1), Err(CryptoError::UnknownSession)));
}

#[test]
fn tampered_frames_fail_without_harm() {
    let (mut a, mut b) = pair();
    let init = a.seal(&b, &text(1), 1);
    for pos in [0usize, 1, 17, 60, 200, 511] {
        let mut f = init.clone();
        f[pos] ^= 0x20;
        assert!(b.open(&f, 1).is_err(), "init byte {pos}");
    }
    let o = b.open(&init, 1).unwrap();
    let resp = o.reply.unwrap();
    for pos in [0usize, 17, 60, 511] {
        let mut f = resp.clone();
        f[pos] ^= 0x20;
        assert!(a.open(&f, 1).is_err(), "response byte {pos}");
    }
    // A forged response did not cost the pending handshake.
    a.open(&resp, 1).unwrap();
    let t = a.seal(&b, &text(2), 1);
    for pos in [0usize, 1, 17, 24, 25, 300, 511] {
        let mut f = t.clone();
        f[pos] ^= 0x20;
        assert!(b.open(&f, 1).is_err(), "transport byte {pos}");
    }
    assert_eq!(b.open(&t, 1).unwrap().inner.unwrap(), text(2));
    assert!(matches!(
        b.open(&t[..500], 1),
        Err(CryptoError::NotABucket { len: 500 })
    ));
    assert!(matches!(
        b.open(&[], 1),
        Err(CryptoError::NotABucket { len: 0 })
    ));
    let mut k = t.clone();
    k[0] = 9;
    assert!(matches!(
        b.open(&k, 1),
        Err(CryptoError::UnknownFrameKind(9))
    ));
}

#[test]
fn size_limits_and_buckets() {
    let (mut a, mut b) = pair();
    let mut big = text(1);
    big.body = "é".repeat(MAX_BODY_BYTES / 2);
    big.sender_card = "c".repeat(MAX_CARD_URI_BYTES);
    big.ref_ids = vec![vec![7; 16]; MAX_REF_IDS];
    big.kind = -1; // worst-case varint
    // The largest allowed message fits an init (the frame with the most overhead)...
    let f = a.seal(&b, &big, 1);
    assert_eq!((f[0], f.len()), (INIT, 65536));
    let o = b.open(&f, 1).unwrap();
    assert_eq!(o.inner.unwrap(), big);
    a.open(&o.reply.unwrap(), 1).unwrap();
    // ...and a transport frame.
    let f = a.seal(&b, &big, 1);
    assert_eq!((f[0], f.len()), (TRANSPORT, 65536));
    assert_eq!(b.open(&f, 1).unwrap().inner.unwrap(), big);
    // One byte more is refused before anything is encrypted.
    big.body.push('x');
    assert!(matches!(
        a.s.seal(&a.id, &b.public(), &big, 1),
        Err(CryptoError::MessageTooLarge { .. })
    ));
    // A 1 KiB message takes the 2 KiB bucket; frames are valid envelope ciphertexts.
    let mut m = text(2);
    m.body = "x".repeat(1024);
    let f = a.seal(&b, &m, 1);
    assert_eq!(f.len(), 2048);
    let env = Envelope::new(b.id.mailbox_key(0).id(), f, 1, 60);
    let env = Envelope::decode_checked(&prost::Message::encode_to_vec(&env)).unwrap();
    assert_eq!(b.open(&env.ciphertext, 1).unwrap().inner.unwrap(), m);
    // Invalid ids are refused.
    let mut bad = text(3);
    bad.id = vec![1; 3];
    assert!(matches!(
        a.s.seal(&a.id, &b.public(), &bad, 1),
        Err(CryptoError::InvalidMessage(_))
    ));
}

/// `max_peers` bounds the table: room is taken from strangers (see `session_table.rs`), and
/// when only known peers are left a new peer is refused.
#[test]
fn peer_count_is_bounded() {
    let p = SessionPolicy {
        max_peers: 1,
        ..SessionPolicy::default()
    };
    let (mut a, mut b, mut c) = (Party::new(1, &p), Party::new(2, &p), Party::new(3, &p));
    establish(&mut a, &mut b, 1, 1);
    // A stranger makes room by evicting the other stranger...
    let f = c.seal(&b, &text(2), 1);
    assert_eq!(b.open(&f, 1).unwrap().inner.unwrap(), text(2));
    assert_eq!(b.s.peers().count(), 1);
    // ...but never a known peer.
    b.s.forget_peer(&c.key());
    b.s.set_known(&a.key(), true);
    a.s.reset_send(&b.key());
    establish(&mut a, &mut b, 3, 2);
    let f = c.seal(&b, &text(4), 2);
    assert!(matches!(b.open(&f, 2), Err(CryptoError::TooManyPeers)));
    assert!(matches!(
        b.s.seal(&b.id, &c.public(), &text(5), 2),
        Err(CryptoError::TooManyPeers)
    ));
    b.s.forget_peer(&a.key());
    assert_eq!(b.s.peers().count(), 0);
    assert_eq!(b.open(&f, 2).unwrap().inner.unwrap(), text(4));
}

#[test]
fn refuses_unverified_recipient() {
    let (mut a, b) = pair();
    let mut forged = b.public();
    forged.dh_key = Identity::from_seed([9; 32]).public().dh_key;
    assert!(matches!(
        a.s.seal(&a.id, &forged, &text(1), 1),
        Err(CryptoError::IdentityInvalid)
    ));
}

#[test]
fn restore_rejects_garbage() {
    let (mut a, mut b) = pair();
    establish(&mut a, &mut b, 1, 1);
    let st = a.s.peer_state(&b.key()).unwrap();
    assert!(a.s.restore_peer(&st[..st.len() - 3]).is_err());
    assert!(a.s.restore_peer(b"garbage").is_err());
    let mut x = st.to_vec();
    x[1] ^= 0xff;
    assert!(a.s.restore_peer(&x).is_err());
    a.s.restore_peer(&st).unwrap();
}

#[test]
fn reset_send_starts_a_new_handshake() {
    let (mut a, mut b) = pair();
    establish(&mut a, &mut b, 1, 1);
    assert_eq!(a.seal(&b, &text(2), 1)[0], TRANSPORT);
    // B lost its state (e.g. reinstalled from its seed): A's transport frames are undecryptable.
    let t = a.seal(&b, &text(3), 1);
    b.s.forget_peer(&a.key());
    assert!(matches!(b.open(&t, 1), Err(CryptoError::UnknownSession)));
    a.s.reset_send(&b.key());
    assert!(!a.s.has_send_session(&b.key()));
    establish(&mut a, &mut b, 3, 2);
    let t = a.seal(&b, &text(4), 2);
    assert_eq!(b.open(&t, 2).unwrap().inner.unwrap(), text(4));
}
