//! Unit tests that need the internals (chains, key stores); the public-API tests are in
//! `crypto/tests/sender_keys.rs`.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::BUCKETS;

const G: [u8; 32] = [0x47; 32];
const A: [u8; 32] = [0xa1; 32];
const B: [u8; 32] = [0xb2; 32];

fn pair() -> (GroupCipher, GroupCipher) {
    let a = GroupCipher::with_seed(G, A, [1; 32]);
    let mut b = GroupCipher::with_seed(G, B, [2; 32]);
    b.add_distribution(a.my_distribution()).unwrap();
    (a, b)
}

fn chain_of<'a>(g: &'a GroupCipher, sender: &[u8; 32]) -> &'a RecvChain {
    g.senders[sender].last().unwrap()
}

/// A frame under `d`'s key id at iteration `n`, built from the documented format by someone
/// who holds the distribution (a member): `payload` goes in as the padded plaintext.
fn forge(d: &SenderKeyDistribution, n: u32, payload: &[u8], frame_len: usize) -> Vec<u8> {
    let mut chain = d.chain_key.clone();
    for _ in d.iteration..n {
        chain = chain::next_chain(&chain);
    }
    let mut out = vec![KIND_TRANSPORT];
    out.extend_from_slice(&d.key_id());
    out.extend_from_slice(&u64::from(n).to_be_bytes());
    out.extend_from_slice(&frame::pad(payload, frame_len - TRANSPORT_HEADER - TAG_LEN));
    let tag = transport::seal_in_place(
        &chain::message_key(&chain),
        u64::from(n),
        &mut out[TRANSPORT_HEADER..],
    );
    out.extend_from_slice(&tag);
    out
}

/// The signed payload (signature || plaintext) inside a genuine frame.
fn payload_of(d: &SenderKeyDistribution, n: u32, frame: &[u8]) -> Vec<u8> {
    let mut chain = d.chain_key.clone();
    for _ in d.iteration..n {
        chain = chain::next_chain(&chain);
    }
    let mut buf = frame[TRANSPORT_HEADER..].to_vec();
    let p = transport::open_in_place(&chain::message_key(&chain), u64::from(n), &mut buf).unwrap();
    frame::unpad(p).unwrap().to_vec()
}

#[test]
fn frames_are_buckets_shaped_like_transport_frames() {
    let (mut a, mut b) = pair();
    for (len, bucket) in [
        (0, 512),
        (512 - GROUP_FRAME_OVERHEAD, 512),
        (512 - GROUP_FRAME_OVERHEAD + 1, 2048),
        (MAX_GROUP_PLAINTEXT, 65536),
    ] {
        let f = a.seal(&vec![7; len]).unwrap();
        assert_eq!(f.len(), bucket, "plaintext {len}");
        assert_eq!(f[0], KIND_TRANSPORT);
        assert_eq!(frame_key_id(&f), Some(a.own.key_id));
        assert_eq!(b.open(&f).unwrap(), (A, vec![7; len]));
    }
    assert!(matches!(
        a.seal(&vec![0; MAX_GROUP_PLAINTEXT + 1]),
        Err(CryptoError::MessageTooLarge { .. })
    ));
    assert!(BUCKETS.contains(&a.seal(b"x").unwrap().len()));
}

/// A member holds the sender's chain key, so it can make frames that decrypt; it cannot sign
/// them. Every forgery is refused and burns no key of the real sender.
#[test]
fn a_member_holding_the_chain_key_cannot_forge() {
    let (mut a, mut b) = pair();
    let d = a.my_distribution(); // what the member M holds, as B does
    let m_key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);

    // 1. A new message signed with M's own key.
    let text = b"transfer everything to M";
    let n = 0;
    let sig = sign::sign(
        &m_key,
        CTX_GROUP_FRAME,
        &[&signed_header(&d.key_id(), n, 512), text],
    );
    let forged = forge(&d, n, &[&sig[..], text].concat(), 512);
    assert!(matches!(
        b.open(&forged),
        Err(CryptoError::BadSignature("group frame"))
    ));

    // 2. A genuine signed payload moved to another iteration, or padded into another bucket.
    let genuine = a.seal(b"hello").unwrap();
    let payload = payload_of(&d, 0, &genuine);
    for f in [forge(&d, 1, &payload, 512), forge(&d, 0, &payload, 2048)] {
        assert!(matches!(
            b.open(&f),
            Err(CryptoError::BadSignature("group frame"))
        ));
    }
    // 3. Garbage where the signature belongs, and no signature at all.
    assert!(b.open(&forge(&d, 0, &[0; 70], 512)).is_err());
    assert!(matches!(
        b.open(&forge(&d, 0, &[1; 10], 512)),
        Err(CryptoError::FrameMalformed(_))
    ));

    // Nothing was consumed: the real frames at iterations 0 and 1 still open.
    let second = a.seal(b"world").unwrap();
    assert_eq!(b.open(&second).unwrap().1, b"world");
    assert_eq!(b.open(&genuine).unwrap().1, b"hello");
    assert!(chain_of(&b, &A).skipped.is_empty());
}

#[test]
fn skipped_keys_are_bounded_and_replays_told_from_old_frames() {
    let (mut a, mut b) = pair();
    let frames: Vec<Vec<u8>> = (0..2500u32)
        .map(|i| a.seal(&i.to_be_bytes()).unwrap())
        .collect();
    let open = |b: &mut GroupCipher, i: usize| b.open(&frames[i]).map(|(_, p)| p);

    // Too far ahead of the chain (at 0): refused, nothing stored.
    assert!(matches!(
        open(&mut b, MAX_FORWARD as usize + 1),
        Err(CryptoError::SenderKeyTooFarAhead {
            ahead: 2001,
            max: 2000
        })
    ));
    assert!(chain_of(&b, &A).skipped.is_empty());
    // Exactly MAX_FORWARD ahead is fine: 0..2000 are kept as skipped keys.
    open(&mut b, 2000).unwrap();
    assert_eq!(chain_of(&b, &A).skipped.len(), 2000);
    // Jumping 400 further keeps only the newest 2000 skipped keys.
    open(&mut b, 2400).unwrap();
    let c = chain_of(&b, &A);
    assert_eq!(c.skipped.len(), MAX_SKIPPED_KEYS);
    assert_eq!(c.floor, 399);
    assert_eq!(c.iteration, 2401);
    assert!(matches!(open(&mut b, 0), Err(CryptoError::SenderKeyTooOld)));
    assert!(matches!(
        open(&mut b, 398),
        Err(CryptoError::SenderKeyTooOld)
    ));
    assert_eq!(open(&mut b, 399).unwrap(), 399u32.to_be_bytes());
    assert!(matches!(open(&mut b, 399), Err(CryptoError::Replay)));
    assert!(matches!(open(&mut b, 2400), Err(CryptoError::Replay)));
    assert!(matches!(open(&mut b, 2000), Err(CryptoError::Replay)));
    // The bounds and the replay memory survive a restore.
    let mut b = GroupCipher::from_bytes(&b.to_bytes()).unwrap();
    assert!(matches!(open(&mut b, 399), Err(CryptoError::Replay)));
    assert!(matches!(
        open(&mut b, 10),
        Err(CryptoError::SenderKeyTooOld)
    ));
    assert_eq!(open(&mut b, 1500).unwrap(), 1500u32.to_be_bytes());
    // 49 more skipped keys (2401..=2449) beside 1998 held push the 47 oldest out (400..=446).
    assert_eq!(open(&mut b, 2450).unwrap(), 2450u32.to_be_bytes());
    let c = chain_of(&b, &A);
    assert_eq!(c.skipped.len(), MAX_SKIPPED_KEYS);
    assert_eq!(c.floor, 447);
    assert!(matches!(
        open(&mut b, 446),
        Err(CryptoError::SenderKeyTooOld)
    ));
    assert_eq!(open(&mut b, 447).unwrap(), 447u32.to_be_bytes());
}

#[test]
fn a_late_joiner_reads_from_its_distribution_on() {
    let mut a = GroupCipher::with_seed(G, A, [1; 32]);
    let early = a.seal(b"before B joined").unwrap();
    let mut b = GroupCipher::with_seed(G, B, [2; 32]);
    b.add_distribution(a.my_distribution()).unwrap();
    assert_eq!(b.my_distribution().iteration(), 0);
    assert!(matches!(b.open(&early), Err(CryptoError::SenderKeyTooOld)));
    let later = a.seal(b"after").unwrap();
    assert_eq!(b.open(&later).unwrap(), (A, b"after".to_vec()));
}

#[test]
fn distribution_rules() {
    let mut a = GroupCipher::with_seed(G, A, [1; 32]);
    let mut b = GroupCipher::with_seed(G, B, [2; 32]);
    let other_group = GroupCipher::with_seed([0x99; 32], A, [1; 32]);
    assert!(matches!(
        b.add_distribution(other_group.my_distribution()),
        Err(CryptoError::WrongGroup)
    ));
    assert!(matches!(
        b.add_distribution(b.my_distribution()),
        Err(CryptoError::Malformed { .. })
    ));
    let e0 = a.my_distribution();
    b.add_distribution(e0.clone()).unwrap();
    // The same one again (at a later iteration too) changes nothing.
    let f0 = a.seal(b"0").unwrap();
    b.add_distribution(a.my_distribution()).unwrap();
    assert_eq!(chain_of(&b, &A).iteration, 0);
    assert_eq!(b.open(&f0).unwrap().1, b"0");

    // Epochs: newest two kept; an older one then refused.
    let e1 = a.rotate();
    let e2 = a.rotate();
    b.add_distribution(e2.clone()).unwrap();
    b.add_distribution(e1.clone()).unwrap();
    assert!(!b.holds_key(&e0.key_id()));
    assert!(b.holds_key(&e1.key_id()) && b.holds_key(&e2.key_id()));
    assert!(matches!(
        b.add_distribution(e0),
        Err(CryptoError::StaleSenderKey)
    ));
    assert!(matches!(b.open(&f0), Err(CryptoError::UnknownSenderKey)));

    // The same epoch under another key (the sender started over) replaces it.
    let mut a_again = GroupCipher::with_seed(G, A, [3; 32]);
    a_again.rotate();
    a_again.rotate();
    let e2b = a_again.my_distribution();
    assert_eq!(e2b.epoch(), 2);
    b.add_distribution(e2b.clone()).unwrap();
    assert!(!b.holds_key(&e2.key_id()) && b.holds_key(&e2b.key_id()));
    assert_eq!(b.open(&a_again.seal(b"x").unwrap()).unwrap().1, b"x");
    assert_eq!(b.senders[&A].len(), 2);
    assert_eq!(b.index.len(), 2);
}

#[test]
fn distribution_decoding() {
    let a = GroupCipher::with_seed(G, A, [1; 32]);
    let d = a.my_distribution();
    let bytes = d.to_bytes();
    assert_eq!(SenderKeyDistribution::from_bytes(&bytes).unwrap(), d);
    let good = pb::SenderKeyDistribution::decode(bytes.as_slice()).unwrap();
    let cases: Vec<(pb::SenderKeyDistribution, &str)> = vec![
        (
            pb::SenderKeyDistribution {
                version: 2,
                ..good.clone()
            },
            "version",
        ),
        (
            pb::SenderKeyDistribution {
                group: vec![1; 31],
                ..good.clone()
            },
            "group",
        ),
        (
            pb::SenderKeyDistribution {
                chain_key: vec![],
                ..good.clone()
            },
            "chain",
        ),
        (
            pb::SenderKeyDistribution {
                // The identity point: a weak key.
                signing_key: {
                    let mut k = vec![0; 32];
                    k[0] = 1;
                    k
                },
                ..good.clone()
            },
            "weak key",
        ),
        (
            pb::SenderKeyDistribution {
                iteration: u32::MAX,
                ..good.clone()
            },
            "exhausted",
        ),
    ];
    for (p, why) in cases {
        assert!(
            SenderKeyDistribution::from_bytes(&p.encode_to_vec()).is_err(),
            "{why}"
        );
    }
    assert!(SenderKeyDistribution::from_bytes(&[0xff, 0xff]).is_err());
    let debug = format!("{d:?} {:?}", a);
    assert!(!debug.contains(&hex::encode(*d.chain_key)));
}

#[test]
fn headers_out_of_range_are_refused() {
    let (mut a, mut b) = pair();
    let mut f = a.seal(b"x").unwrap();
    f[TRANSPORT_HEADER - 8..TRANSPORT_HEADER].copy_from_slice(&u64::from(u32::MAX).to_be_bytes());
    assert!(matches!(b.open(&f), Err(CryptoError::FrameMalformed(_))));
    f[0] = 1;
    assert!(matches!(b.open(&f), Err(CryptoError::UnknownFrameKind(1))));
    assert!(matches!(
        b.open(&f[..511]),
        Err(CryptoError::NotABucket { len: 511 })
    ));
    assert_eq!(frame_key_id(&f[..100]), None);
    a.own.iteration = u32::MAX;
    assert!(matches!(a.seal(b"x"), Err(CryptoError::NonceExhausted)));
}

#[test]
fn restored_state_is_checked() {
    let (mut a, mut b) = pair();
    for _ in 0..3 {
        a.seal(b"x").unwrap();
    }
    b.open(&a.seal(b"y").unwrap()).unwrap(); // B skipped 0..3
    let good = pb::GroupCipherState::decode(b.to_bytes().as_slice()).unwrap();
    assert_eq!(good.senders[0].skipped.len(), 3);
    let tweak = |f: &dyn Fn(&mut pb::GroupCipherState)| {
        let mut p = good.clone();
        f(&mut p);
        GroupCipher::from_bytes(&p.encode_to_vec())
    };
    assert!(tweak(&|_| {}).is_ok());
    assert!(tweak(&|p| p.version = 9).is_err());
    assert!(tweak(&|p| p.own = None).is_err());
    assert!(tweak(&|p| p.senders[0].sender = B.to_vec()).is_err());
    assert!(tweak(&|p| p.senders[0].floor = 5).is_err());
    assert!(tweak(&|p| p.senders[0].skipped[0].iteration = 7).is_err());
    assert!(tweak(&|p| p.senders[0].skipped[1].iteration = 0).is_err());
    assert!(
        tweak(&|p| {
            let s = p.senders[0].clone();
            p.senders.push(s);
        })
        .is_err()
    );
    assert!(
        tweak(&|p| {
            let mut s = p.senders[0].clone();
            s.skipped = vec![pb::SkippedMessageKey::default(); MAX_SKIPPED_KEYS + 1];
            p.senders[0] = s;
        })
        .is_err()
    );
    // Equal state encodes to equal bytes.
    let c = GroupCipher::from_bytes(&b.to_bytes()).unwrap();
    assert_eq!(*c.to_bytes(), *b.to_bytes());
}

/// A frame far ahead costs the walk to it once: the chain keys on the way are cached (memory
/// only), so more frames out there (e.g. forged by someone who saw the clear key id) cost at
/// most 64 steps each. The cache holds the right keys, and goes as the chain passes it.
#[test]
fn far_frames_walk_the_chain_once() {
    let (mut a, mut b) = pair();
    let frames: Vec<Vec<u8>> = (0..1500u32)
        .map(|i| a.seal(&i.to_be_bytes()).unwrap())
        .collect();
    let mut forged = frames[1400].clone();
    forged[100] ^= 1;
    assert!(matches!(b.open(&forged), Err(CryptoError::DecryptFailed)));
    let c = chain_of(&b, &A);
    assert_eq!((c.iteration, c.skipped.len()), (0, 0));
    assert_eq!(c.checkpoints.len(), 1400 / 64);
    assert!(
        c.checkpoints
            .keys()
            .all(|&i| i % 64 == 0 && i > 0 && i <= 1400)
    );
    for i in [1399, 1400, 640, 1] {
        assert_eq!(b.open(&frames[i]).unwrap().1, (i as u32).to_be_bytes());
    }
    let c = chain_of(&b, &A);
    assert!(c.checkpoints.is_empty());
    assert_eq!((c.iteration, c.skipped.len()), (1401, 1397));
    assert_eq!(b.open(&frames[1450]).unwrap().1, 1450u32.to_be_bytes());
    assert!(chain_of(&b, &A).checkpoints.keys().all(|&i| i > 1450));
}
