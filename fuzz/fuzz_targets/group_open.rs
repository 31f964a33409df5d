//! Group sender keys on hostile input. The first input byte picks what the fuzzer controls:
//!
//! * 0: the raw frame bytes (as given, and zero-padded to a bucket) for `GroupCipher::open`;
//! * 1: the padded plaintext of a frame genuinely encrypted under a member's chain (built from
//!   the documented wire format and key schedule) at a fuzzer-chosen iteration, either raw or
//!   as `len || bytes`, so the fuzzer reaches the signature check and the key store;
//! * 2: a `SenderKeyDistribution` to decode and add;
//! * 3: a persisted `GroupCipherState` to restore, then open a genuine frame with it.
//!
//! Nothing may panic, and nothing but the genuine frame may open.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use tokenim_crypto::bucket_for;
use tokenim_crypto::group::sender_key::{GroupCipher, SenderKeyDistribution};
use tokenim_crypto::pb;

const GROUP: [u8; 32] = [0x47; 32];
const A: [u8; 32] = [0xa1; 32];
const B: [u8; 32] = [0xb2; 32];
const LARGEST: usize = 65536;
const HEADER: usize = 25;
const TAG: usize = 16;

struct Setup {
    /// B's state holding A's chain.
    b_state: Vec<u8>,
    /// A's chain key at iteration 0 and its key id.
    chain: [u8; 32],
    key_id: [u8; 16],
    /// A's genuine frame at iteration 0.
    genuine: Vec<u8>,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let mut a = GroupCipher::with_seed(GROUP, A, [1; 32]);
        let mut b = GroupCipher::with_seed(GROUP, B, [2; 32]);
        let d = a.my_distribution();
        b.add_distribution(d.clone()).expect("add");
        let p = pb::SenderKeyDistribution::decode(d.to_bytes().as_slice()).expect("decode");
        Setup {
            b_state: b.to_bytes().to_vec(),
            chain: p.chain_key.as_slice().try_into().expect("chain"),
            key_id: d.key_id(),
            genuine: a.seal(b"genuine").expect("seal"),
        }
    })
}

fn receiver(s: &Setup) -> GroupCipher {
    GroupCipher::from_bytes(&s.b_state).expect("restore")
}

fn hmac_step(chain: &[u8; 32], b: u8) -> [u8; 32] {
    let t = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, chain), &[b]);
    t.as_ref().try_into().expect("32 bytes")
}

fn frame(s: &Setup, n: u32, structured: bool, bytes: &[u8]) -> Vec<u8> {
    let mut chain = s.chain;
    for _ in 0..n {
        chain = hmac_step(&chain, 2);
    }
    let mut pt = if structured {
        let mut p = (bytes.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(bytes);
        p
    } else {
        bytes.to_vec()
    };
    pt.truncate(LARGEST - HEADER - TAG);
    let total = bucket_for(HEADER + TAG + pt.len()).unwrap_or(LARGEST);
    pt.resize(total - HEADER - TAG, 0);
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&u64::from(n).to_le_bytes());
    let key =
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &hmac_step(&chain, 1)).expect("key"));
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut pt)
        .expect("seal");
    let mut f = vec![3u8];
    f.extend_from_slice(&s.key_id);
    f.extend_from_slice(&u64::from(n).to_be_bytes());
    f.extend_from_slice(&pt);
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = setup();
    match mode % 4 {
        0 => {
            let mut b = receiver(s);
            assert!(b.open(rest).is_err() || rest == s.genuine.as_slice());
            let mut padded = rest.to_vec();
            padded.truncate(LARGEST);
            padded.resize(bucket_for(padded.len()).unwrap_or(LARGEST), 0);
            assert!(b.open(&padded).is_err() || padded == s.genuine);
        }
        1 => {
            let Some((n, body)) = rest.split_first_chunk::<2>() else {
                return;
            };
            // Up to a little beyond the forward limit.
            let n = u32::from(u16::from_be_bytes(*n)) % 2100;
            let f = frame(s, n, mode & 0x10 != 0, body);
            let mut b = receiver(s);
            // Without A's signing key no made-up payload verifies.
            assert!(b.open(&f).is_err() || f == s.genuine);
            // The genuine frame still opens afterwards (unless that was it).
            assert!(f == s.genuine || b.open(&s.genuine).is_ok());
        }
        2 => {
            if let Ok(d) = SenderKeyDistribution::from_bytes(rest) {
                let _ = d.to_bytes();
                let mut b = receiver(s);
                let _ = b.add_distribution(d);
                let _ = b.open(&s.genuine);
                let _ = b.to_bytes();
            }
        }
        _ => {
            if let Ok(mut b) = GroupCipher::from_bytes(rest) {
                let _ = b.open(&s.genuine);
                let _ = b.seal(rest);
                let _ = b.rotate();
                let _ = GroupCipher::from_bytes(&b.to_bytes()).expect("re-encoded state");
            }
        }
    }
});
