//! The session table under a flood of stranger identities (anyone can make identities and send
//! an IK init): what a stranger can make the node keep is bounded, strangers are evicted least
//! recently active first, contacts are never evicted for a stranger, and a new contact always
//! gets in. Sans-IO and deterministic: times are logical seconds, identities and randomness
//! come from fixed seeds.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use tokenim_crypto::{CryptoError, Identity, InnerMessage, Opened, SessionPolicy, Sessions};

const INIT: u8 = 1;
const TRANSPORT: u8 = 3;

fn policy(max_strangers: usize, max_peers: usize) -> SessionPolicy {
    SessionPolicy {
        max_strangers,
        max_peers,
        ..SessionPolicy::default()
    }
}

fn text(n: u32) -> InnerMessage {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    InnerMessage::text(id, format!("message {n}"), u64::from(n))
}

/// An identity with its own session table.
struct Party {
    id: Identity,
    s: Sessions,
}

impl Party {
    fn new(n: u32, policy: &SessionPolicy) -> Self {
        let mut seed = [0x5a; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        let mut rng_seed = [0xa5; 32];
        rng_seed[..4].copy_from_slice(&n.to_be_bytes());
        Party {
            id: Identity::from_seed(seed),
            s: Sessions::with_seed(policy.clone(), rng_seed),
        }
    }
    fn key(&self) -> [u8; 32] {
        self.id.public().identity_key
    }
    fn seal_to(&mut self, to: &Party, m: u32, now: u64) -> Result<Vec<u8>, CryptoError> {
        self.s.seal(&self.id, &to.id.public(), &text(m), now)
    }
    fn open(&mut self, frame: &[u8], now: u64) -> Result<Opened, CryptoError> {
        self.s.open(&self.id, frame, now)
    }
    fn holds(&self, peer: &Party) -> bool {
        self.s.has_peer(&peer.key())
    }
    fn held(&self) -> BTreeSet<[u8; 32]> {
        self.s.peers().map(|(k, _)| *k).collect()
    }
    fn strangers(&self) -> usize {
        self.s.peers().filter(|(k, _)| !self.s.is_known(k)).count()
    }
}

/// `from` writes message `m` to `to`, which opens it and answers an init (as the node does);
/// returns the kind of frame `from` sent.
fn deliver(from: &mut Party, to: &mut Party, m: u32, now: u64) -> Result<u8, CryptoError> {
    let f = from.seal_to(to, m, now)?;
    let o = to.open(&f, now)?;
    assert_eq!(o.inner.unwrap(), text(m));
    if let Some(reply) = o.reply {
        from.open(&reply, now).unwrap();
    }
    Ok(f[0])
}

fn keys(parties: &[Party]) -> BTreeSet<[u8; 32]> {
    parties.iter().map(Party::key).collect()
}

/// (a) and (d): however many strangers write, the table holds at most `max_strangers` of them,
/// and the one that goes is the least recently active — activity, not arrival, and also
/// within one second.
#[test]
fn strangers_stay_bounded_and_the_least_recently_active_goes_first() {
    let p = policy(8, 1000);
    let mut b = Party::new(0, &p);
    let mut s: Vec<Party> = (1..=40).map(|n| Party::new(n, &p)).collect();
    for (i, x) in s.iter_mut().enumerate() {
        assert_eq!(deliver(x, &mut b, i as u32, 10 + i as u64).unwrap(), INIT);
        assert!(
            b.s.peers().count() <= 8,
            "stranger {i}: table grew past the bound"
        );
    }
    assert_eq!(b.held(), keys(&s[32..40]), "the 8 most recent strangers");
    // The oldest held stranger speaks again: the next oldest goes instead.
    assert_eq!(deliver(&mut s[32], &mut b, 100, 100).unwrap(), TRANSPORT);
    let mut n1 = Party::new(41, &p);
    deliver(&mut n1, &mut b, 101, 101).unwrap();
    assert!(b.holds(&s[32]));
    assert!(!b.holds(&s[33]));
    // Within one second the order of activity still decides.
    let mut n2 = Party::new(42, &p);
    deliver(&mut n2, &mut b, 102, 101).unwrap();
    assert!(!b.holds(&s[34]));
    assert!(b.holds(&n1) && b.holds(&n2));
    assert_eq!(b.s.peers().count(), 8);

    let mut c = Party::new(50, &p);
    let mut same: Vec<Party> = (60..69).map(|n| Party::new(n, &p)).collect();
    for (i, x) in same.iter_mut().enumerate() {
        deliver(x, &mut c, i as u32, 7).unwrap();
    }
    assert_eq!(
        c.held(),
        keys(&same[1..]),
        "first in, first out within one second"
    );
}

/// (b): a contact's sessions, both ways, survive any number of strangers, even when the
/// contact has been silent the longest.
#[test]
fn a_contact_is_never_evicted_by_strangers() {
    let p = policy(4, 8);
    let mut b = Party::new(0, &p);
    let mut c = Party::new(1, &p);
    b.s.set_known(&c.key(), true);
    assert_eq!(deliver(&mut c, &mut b, 1, 1).unwrap(), INIT);
    assert_eq!(deliver(&mut b, &mut c, 2, 1).unwrap(), INIT);
    // A frame of C's waits in a mailbox while strangers flood B.
    let queued = c.seal_to(&b, 3, 2).unwrap();
    assert_eq!(queued[0], TRANSPORT);
    for n in 10..110u32 {
        let mut x = Party::new(n, &p);
        deliver(&mut x, &mut b, n, u64::from(n)).unwrap();
        assert!(b.holds(&c), "stranger {n} pushed out the contact");
        assert!(b.strangers() <= 4 && b.s.peers().count() <= 5);
    }
    assert_eq!(b.open(&queued, 200).unwrap().inner.unwrap(), text(3));
    assert_eq!(deliver(&mut b, &mut c, 4, 200).unwrap(), TRANSPORT);
    assert_eq!(deliver(&mut c, &mut b, 5, 200).unwrap(), TRANSPORT);
}

/// (c): when the whole table is taken by strangers, a new contact still gets in — writing
/// first or written to — and the least recently active stranger makes room.
#[test]
fn a_new_contact_gets_in_when_the_table_is_full_of_strangers() {
    let p = policy(8, 8);
    let mut b = Party::new(0, &p);
    let mut s: Vec<Party> = (1..=30).map(|n| Party::new(n, &p)).collect();
    for (i, x) in s.iter_mut().enumerate() {
        deliver(x, &mut b, i as u32, 10 + i as u64).unwrap();
    }
    assert_eq!(b.held(), keys(&s[22..]));
    // A new contact writes first.
    let mut d = Party::new(100, &p);
    b.s.set_known(&d.key(), true);
    assert_eq!(deliver(&mut d, &mut b, 1, 50).unwrap(), INIT);
    assert!(b.holds(&d) && !b.holds(&s[22]));
    // This node writes to another new contact.
    let mut e = Party::new(101, &p);
    b.s.set_known(&e.key(), true);
    assert_eq!(deliver(&mut b, &mut e, 2, 51).unwrap(), INIT);
    assert!(b.holds(&e) && !b.holds(&s[23]));
    assert_eq!(b.s.peers().count(), 8);
    // More strangers take turns in what is left; the contacts stay.
    for n in 200..230u32 {
        let mut x = Party::new(n, &p);
        deliver(&mut x, &mut b, n, u64::from(n)).unwrap();
        assert!(b.holds(&d) && b.holds(&e));
        assert_eq!(b.strangers(), 6);
    }
    assert_eq!(deliver(&mut d, &mut b, 3, 300).unwrap(), TRANSPORT);
    assert_eq!(deliver(&mut b, &mut e, 4, 300).unwrap(), TRANSPORT);
}

/// A table at `max_peers` takes room for anyone from strangers only: with strangers left, a new
/// stranger or contact evicts one; with only contacts left, a stranger (and, as `max_peers` is
/// the hard bound, a contact too) is refused with `TooManyPeers`, never by evicting a contact.
#[test]
fn a_table_full_of_contacts_refuses_strangers() {
    let p = policy(8, 4);
    let mut b = Party::new(0, &p);
    let mut c: Vec<Party> = (1..=5).map(|n| Party::new(n, &p)).collect();
    for x in &c {
        b.s.set_known(&x.key(), true);
    }
    for (i, x) in c[..3].iter_mut().enumerate() {
        deliver(x, &mut b, i as u32, 1).unwrap();
    }
    let mut s1 = Party::new(10, &p);
    let mut s2 = Party::new(11, &p);
    deliver(&mut s1, &mut b, 10, 2).unwrap();
    deliver(&mut s2, &mut b, 11, 3).unwrap();
    assert!(b.holds(&s2) && !b.holds(&s1));
    deliver(&mut c[3], &mut b, 3, 4).unwrap();
    assert!(!b.holds(&s2));
    assert_eq!(b.held(), keys(&c[..4]));
    // Full of contacts.
    let mut s3 = Party::new(12, &p);
    let f = s3.seal_to(&b, 12, 5).unwrap();
    assert!(matches!(b.open(&f, 5), Err(CryptoError::TooManyPeers)));
    assert!(matches!(
        b.seal_to(&s3, 13, 5),
        Err(CryptoError::TooManyPeers)
    ));
    let f5 = c[4].seal_to(&b, 4, 5).unwrap();
    assert!(matches!(b.open(&f5, 5), Err(CryptoError::TooManyPeers)));
    assert_eq!(b.held(), keys(&c[..4]));
    // Every contact still works.
    for (i, x) in c[..4].iter_mut().enumerate() {
        assert_eq!(deliver(x, &mut b, 20 + i as u32, 6).unwrap(), TRANSPORT);
    }
    // Demoting a contact makes it an ordinary (evictable) stranger.
    b.s.set_known(&c[0].key(), false);
    assert_eq!(b.open(&f, 7).unwrap().inner.unwrap(), text(12));
    assert!(b.holds(&s3) && !b.holds(&c[0]));
}

/// An evicted stranger loses nothing but its session: its next transport frame is
/// `UnknownSession` (the node answers "undecryptable", the sender resets and reseals) and the
/// new handshake works.
#[test]
fn an_evicted_stranger_starts_over_with_a_new_handshake() {
    let p = policy(2, 100);
    let mut b = Party::new(0, &p);
    let mut x = Party::new(1, &p);
    assert_eq!(deliver(&mut x, &mut b, 1, 1).unwrap(), INIT);
    assert_eq!(deliver(&mut x, &mut b, 2, 1).unwrap(), TRANSPORT);
    for n in 10..12u32 {
        let mut y = Party::new(n, &p);
        deliver(&mut y, &mut b, n, 2).unwrap();
    }
    assert!(!b.holds(&x));
    let t = x.seal_to(&b, 3, 3).unwrap();
    assert!(matches!(b.open(&t, 3), Err(CryptoError::UnknownSession)));
    x.s.reset_send(&b.key());
    assert_eq!(deliver(&mut x, &mut b, 3, 3).unwrap(), INIT);
    assert_eq!(deliver(&mut x, &mut b, 4, 3).unwrap(), TRANSPORT);
    assert!(b.holds(&x));
}

/// Persisted state from a node that met many strangers: a restart (restoring everything in any
/// order, before the node has said who its contacts are) keeps only the most recent strangers,
/// and the contacts, marked and reloaded afterwards as the node does, keep working.
#[test]
fn a_restart_keeps_the_most_recent_strangers_and_every_contact() {
    let big = policy(1000, 1000);
    let small = policy(8, 1000);
    let mut b = Party::new(0, &big);
    let mut c: Vec<Party> = (1..=2).map(|n| Party::new(n, &big)).collect();
    for (i, x) in c.iter_mut().enumerate() {
        deliver(x, &mut b, i as u32, 1 + i as u64).unwrap();
    }
    let mut s: Vec<Party> = (10..40).map(|n| Party::new(n, &big)).collect();
    for (i, x) in s.iter_mut().enumerate() {
        deliver(x, &mut b, i as u32, 10 + i as u64).unwrap();
    }
    let mut states: Vec<([u8; 32], Vec<u8>)> =
        b.s.peers()
            .map(|(k, _)| (*k, b.s.peer_state(k).unwrap().to_vec()))
            .collect();
    states.sort();
    let contact_keys = keys(&c);
    for order in 0..2 {
        if order == 1 {
            states.reverse();
        }
        let queued: Vec<Vec<u8>> = c
            .iter_mut()
            .map(|x| {
                let to = Party::new(0, &small);
                x.seal_to(&to, 50, 50).unwrap()
            })
            .collect();
        let mut b2 = Party::new(0, &small);
        for (_, st) in &states {
            b2.s.restore_peer(st).unwrap();
            assert!(b2.s.peers().count() <= 8);
        }
        assert_eq!(b2.held(), keys(&s[22..]), "order {order}");
        for (k, st) in states.iter().filter(|(k, _)| contact_keys.contains(k)) {
            b2.s.set_known(k, true);
            if !b2.s.has_peer(k) {
                b2.s.restore_peer(st).unwrap();
            }
        }
        assert_eq!(b2.s.peers().count(), 10);
        for f in &queued {
            assert_eq!(f[0], TRANSPORT);
            assert_eq!(b2.open(f, 50).unwrap().inner.unwrap(), text(50));
        }
        for n in 100..120u32 {
            let mut y = Party::new(n, &small);
            deliver(&mut y, &mut b2, n, u64::from(n)).unwrap();
        }
        assert!(c.iter().all(|x| b2.holds(x)));
        assert_eq!(b2.strangers(), 8);
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Party i writes to B (an init, or a transport frame once it has a session).
    Write(usize),
    /// B writes to party i (a receipt or reply) and reads the handshake answer.
    Reply(usize),
    /// The node says whether party i is a contact.
    Known(usize, bool),
}

fn op(parties: usize) -> impl Strategy<Value = (Op, bool)> {
    let o = prop_oneof![
        4 => (0..parties).prop_map(Op::Write),
        2 => (0..parties).prop_map(Op::Reply),
        1 => (0..parties, any::<bool>()).prop_map(|(i, k)| Op::Known(i, k)),
    ];
    (o, any::<bool>())
}

/// What the table should hold: a plain least-recently-active model.
#[derive(Default)]
struct Model {
    tick: u64,
    /// Held peers and the tick of their last activity.
    held: BTreeMap<usize, u64>,
    known: BTreeSet<usize>,
    /// Whether B holds the receive session party i currently sends on.
    session: BTreeSet<usize>,
}

impl Model {
    fn strangers(&self) -> Vec<(u64, usize)> {
        let mut v: Vec<(u64, usize)> = self
            .held
            .iter()
            .filter(|(i, _)| !self.known.contains(i))
            .map(|(i, t)| (*t, *i))
            .collect();
        v.sort();
        v
    }
    fn trim(&mut self, max: usize, protect: Option<usize>) {
        loop {
            let s = self.strangers();
            if s.len() <= max {
                return;
            }
            let victim = s.iter().map(|(_, i)| *i).find(|i| Some(*i) != protect);
            let Some(victim) = victim else { return };
            self.held.remove(&victim);
            self.session.remove(&victim);
        }
    }
    /// Party i is active: admitted if new (evicting the oldest stranger beyond the bound).
    fn touch(&mut self, i: usize, max: usize) {
        self.tick += 1;
        self.held.insert(i, self.tick);
        if !self.known.contains(&i) {
            self.trim(max, Some(i));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        rng_seed: RngSeed::Fixed(0x5e55_1075),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any interleaving of strangers and contacts writing, replies, and contacts being marked
    /// and unmarked: B holds exactly what an LRU model over strangers says, never more than
    /// `max_strangers` strangers, and never drops a contact.
    #[test]
    fn the_table_follows_a_least_recently_active_model(
        max in 1usize..5,
        ops in prop::collection::vec(op(10), 1..60),
    ) {
        let p = policy(max, 1000);
        let mut b = Party::new(0, &p);
        let mut parties: Vec<Party> = (1..=10).map(|n| Party::new(n, &p)).collect();
        let mut m = Model::default();
        let mut now = 1u64;
        for (step, (o, tick)) in ops.into_iter().enumerate() {
            now += u64::from(tick);
            let n = step as u32;
            match o {
                Op::Write(i) => {
                    let x = &mut parties[i];
                    let f = x.seal_to(&b, n, now).unwrap();
                    let r = b.open(&f, now);
                    if f[0] == INIT {
                        let o = r.unwrap();
                        x.open(&o.reply.unwrap(), now).unwrap();
                        m.touch(i, max);
                        m.session.insert(i);
                    } else if m.session.contains(&i) {
                        prop_assert_eq!(r.unwrap().inner.unwrap(), text(n));
                        m.touch(i, max);
                    } else {
                        prop_assert!(matches!(r, Err(CryptoError::UnknownSession)), "step {}", step);
                        x.s.reset_send(&b.key());
                    }
                }
                Op::Reply(i) => {
                    let x = &mut parties[i];
                    let f = b.seal_to(x, n, now).unwrap();
                    m.touch(i, max);
                    let o = x.open(&f, now).unwrap();
                    prop_assert_eq!(o.inner.unwrap(), text(n));
                    if let Some(r) = o.reply {
                        b.open(&r, now).unwrap();
                        m.touch(i, max);
                    }
                }
                Op::Known(i, k) => {
                    b.s.set_known(&parties[i].key(), k);
                    if k {
                        m.known.insert(i);
                    } else {
                        m.known.remove(&i);
                        m.trim(max, None);
                    }
                }
            }
            let want: BTreeSet<[u8; 32]> = m.held.keys().map(|i| parties[*i].key()).collect();
            prop_assert_eq!(b.held(), want, "step {}", step);
            prop_assert!(b.strangers() <= max);
            for i in &m.known {
                prop_assert!(b.s.is_known(&parties[*i].key()));
            }
        }
    }
}
