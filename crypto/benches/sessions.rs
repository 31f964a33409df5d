//! Session throughput: `cargo bench -p tokenim-crypto`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use tokenim_crypto::{ContactCard, Envelope, Identity, InnerMessage, SessionPolicy, Sessions};

fn established(policy: SessionPolicy) -> (Identity, Identity, Sessions, Sessions) {
    let (a, b) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
    let mut sa = Sessions::with_seed(policy.clone(), [3; 32]);
    let mut sb = Sessions::with_seed(policy, [4; 32]);
    let f = sa
        .seal(&a, &b.public(), &InnerMessage::text([0; 16], "hi", 0), 1)
        .unwrap();
    let r = sb.open(&b, &f, 1).unwrap().reply.unwrap();
    sa.open(&a, &r, 1).unwrap();
    (a, b, sa, sb)
}

fn transport(c: &mut Criterion) {
    let policy = SessionPolicy {
        rekey_after_messages: u64::MAX,
        ..SessionPolicy::default()
    };
    let (a, b, mut sa, mut sb) = established(policy);
    let bp = b.public();
    let msg = InnerMessage::text([7; 16], "x".repeat(1024), 0);
    let mut g = c.benchmark_group("transport");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal+open 1KiB", |bench| {
        bench.iter(|| {
            let f = sa.seal(&a, &bp, black_box(&msg), 2).unwrap();
            black_box(sb.open(&b, &f, 2).unwrap());
        })
    });
    g.bench_function("seal 1KiB", |bench| {
        bench.iter(|| black_box(sa.seal(&a, &bp, black_box(&msg), 2).unwrap()))
    });
    // The floor: the AEAD alone over the 2 KiB bucket a 1 KiB message travels in.
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &[9; 32]).unwrap(),
    );
    let mut buf = vec![0u8; 2048 - 25 - 16];
    g.bench_function("ring chacha20poly1305 seal 2KiB (floor)", |bench| {
        bench.iter(|| {
            let nonce = ring::aead::Nonce::assume_unique_for_key([0; 12]);
            key.seal_in_place_separate_tag(nonce, ring::aead::Aad::empty(), &mut buf)
                .unwrap()
        })
    });
    g.finish();
}

/// Sending to an account with several devices (docs/protocol.md §12): a seal per device over
/// its own session, against one AEAD seal of the body plus a per-device seal of its key.
fn fan_out(c: &mut Criterion) {
    let policy = SessionPolicy {
        rekey_after_messages: u64::MAX,
        ..SessionPolicy::default()
    };
    let a = Identity::from_seed([1; 32]);
    let mut sa = Sessions::with_seed(policy.clone(), [3; 32]);
    let devices: Vec<Identity> = (0..10u8)
        .map(|i| Identity::from_seed([20 + i; 32]))
        .collect();
    for (i, d) in devices.iter().enumerate() {
        let mut sd = Sessions::with_seed(policy.clone(), [40 + i as u8; 32]);
        let f = sa
            .seal(&a, &d.public(), &InnerMessage::text([0; 16], "hi", 0), 1)
            .unwrap();
        let r = sd.open(d, &f, 1).unwrap().reply.unwrap();
        sa.open(&a, &r, 1).unwrap();
    }
    let publics: Vec<_> = devices.iter().map(Identity::public).collect();
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &[9; 32]).unwrap(),
    );
    let wrapped_key = InnerMessage::text([8; 16], "k".repeat(32), 0);
    let mut g = c.benchmark_group("fan_out");
    for size in [1024usize, 56 * 1024] {
        let msg = InnerMessage::text([7; 16], "x".repeat(size), 0);
        for n in [2usize, 10] {
            g.throughput(Throughput::Elements(1));
            g.bench_function(
                format!("seal per device {n}x {}KiB", size / 1024),
                |bench| {
                    bench.iter(|| {
                        for p in &publics[..n] {
                            black_box(sa.seal(&a, p, black_box(&msg), 2).unwrap());
                        }
                    })
                },
            );
            let mut body = vec![0u8; size];
            g.bench_function(format!("wrap once {n}x {}KiB", size / 1024), |bench| {
                bench.iter(|| {
                    let nonce = ring::aead::Nonce::assume_unique_for_key([0; 12]);
                    let tag = key
                        .seal_in_place_separate_tag(nonce, ring::aead::Aad::empty(), &mut body)
                        .unwrap();
                    black_box(tag.as_ref()[0]);
                    for p in &publics[..n] {
                        black_box(sa.seal(&a, p, black_box(&wrapped_key), 2).unwrap());
                    }
                })
            });
        }
    }
    g.finish();
}

fn handshake(c: &mut Criterion) {
    // rekey_after_messages = 1: every seal after a completed handshake starts a new one.
    let policy = SessionPolicy {
        rekey_after_messages: 1,
        ..SessionPolicy::default()
    };
    let (a, b, mut sa, mut sb) = established(policy);
    let bp = b.public();
    let msg = InnerMessage::text([7; 16], "hello", 0);
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("IK init+response (both sides)", |bench| {
        bench.iter(|| {
            let f = sa.seal(&a, &bp, &msg, 2).unwrap();
            let r = sb.open(&b, &f, 2).unwrap().reply.unwrap();
            black_box(sa.open(&a, &r, 2).unwrap());
        })
    });
    g.finish();
}

fn decoders(c: &mut Criterion) {
    let id = Identity::from_seed([1; 32]);
    let env = Envelope::new(id.mailbox_key(0).id(), vec![5; 2048], 60, 60).encode_to_vec();
    let uri = ContactCard::new(&id, "Alice", 0, 1000).to_uri(&id).unwrap();
    let mut g = c.benchmark_group("decode");
    g.bench_function("envelope 2KiB decode_checked", |bench| {
        bench.iter(|| black_box(Envelope::decode_checked(black_box(&env)).unwrap()))
    });
    g.bench_function("contact card from_uri", |bench| {
        bench.iter(|| black_box(ContactCard::from_uri(black_box(&uri), 10).unwrap()))
    });
    g.finish();
}

/// Group sender keys: one seal per group message (any number of members), one open per member.
fn group(c: &mut Criterion) {
    use tokenim_crypto::group::sender_key::GroupCipher;
    let mut a = GroupCipher::with_seed([1; 32], [2; 32], [3; 32]);
    let mut b = GroupCipher::with_seed([1; 32], [4; 32], [5; 32]);
    b.add_distribution(a.my_distribution()).unwrap();
    let msg = vec![b'x'; 1024];
    let mut g = c.benchmark_group("group");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal 1KiB", |bench| {
        bench.iter(|| black_box(a.seal(black_box(&msg)).unwrap()))
    });
    // After the loop above the receiver's chain is far behind: start a fresh epoch.
    b.add_distribution(a.rotate()).unwrap();
    g.bench_function("seal+open 1KiB", |bench| {
        bench.iter(|| {
            let f = a.seal(black_box(&msg)).unwrap();
            black_box(b.open(&f).unwrap());
        })
    });
    // What a forged frame costs a receiver at worst: the chain walked MAX_FORWARD steps ahead,
    // then a failed decryption.
    let mut far = a.seal(black_box(&msg)).unwrap();
    let n = tokenim_crypto::group::sender_key::MAX_FORWARD - 1;
    far[17..25].copy_from_slice(&u64::from(n).to_be_bytes());
    g.bench_function("open forged frame MAX_FORWARD ahead", |bench| {
        bench.iter(|| assert!(b.open(black_box(&far)).is_err()))
    });
    g.finish();
}

criterion_group!(benches, transport, handshake, fan_out, decoders, group);
criterion_main!(benches);
