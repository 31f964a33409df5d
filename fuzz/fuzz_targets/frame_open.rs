//! `Sessions::open` on hostile frames. The first input byte picks what the fuzzer controls:
//!
//! * 0: the raw frame bytes (as given, and zero-padded to a bucket);
//! * 1: the plaintext of a genuine init from A to B (raw padded plaintext, or a well-formed
//!   handshake payload around fuzzer-chosen inner-message bytes);
//! * 2: the plaintext of a genuine transport frame on B's receive session (same two forms);
//! * 3: the plaintext of a genuine handshake response to A's pending init.
//!
//! Modes 1-3 encrypt with the real keys (built from the documented wire format and key
//! derivation), so the fuzzer reaches everything after decryption. Nothing may panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest, Sha256};
use snow::resolvers::{DefaultResolver, FallbackResolver, RingResolver};
use tokenim_crypto::{
    Identity, InnerMessage, NOISE_PROLOGUE, NOISE_PROTOCOL, SessionPolicy, Sessions, bucket_for, pb,
};

const SEED_A: [u8; 32] = [1; 32];
const SEED_B: [u8; 32] = [2; 32];
const LARGEST: usize = 65536;

struct Setup {
    a: Identity,
    b: Identity,
    b_state: Vec<u8>,
    key: [u8; 32],
    sid: [u8; 16],
}

/// The X25519 secret as `identity.rs` documents its derivation.
fn dh_secret(seed: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tokenim/v1/derive\0identity-x25519\0");
    h.update(seed);
    h.finalize().into()
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let (a, b) = (Identity::from_seed(SEED_A), Identity::from_seed(SEED_B));
        let mut sa = Sessions::with_seed(SessionPolicy::default(), [3; 32]);
        let mut sb = Sessions::with_seed(SessionPolicy::default(), [4; 32]);
        let m = InnerMessage::text([0; 16], "x", 0);
        let f = sa.seal(&a, &b.public(), &m, 1).expect("seal");
        let r = sb.open(&b, &f, 1).expect("open").reply.expect("reply");
        sa.open(&a, &r, 1).expect("response");
        let b_state = sb
            .peer_state(&a.public().identity_key)
            .expect("state")
            .to_vec();
        let st = pb::PeerState::decode(b_state.as_slice()).expect("state decodes");
        let inbound = &st.inbound[0];
        Setup {
            key: inbound.key.as_slice().try_into().expect("key"),
            sid: inbound.session_id.as_slice().try_into().expect("sid"),
            a,
            b,
            b_state,
        }
    })
}

fn receiver(s: &Setup) -> Sessions {
    let mut sb = Sessions::with_seed(SessionPolicy::default(), [5; 32]);
    sb.restore_peer(&s.b_state).expect("restore");
    sb
}

fn builder() -> snow::Builder<'static> {
    let resolver = FallbackResolver::new(Box::new(RingResolver), Box::new(DefaultResolver));
    snow::Builder::with_resolver(NOISE_PROTOCOL.parse().expect("params"), Box::new(resolver))
        .prologue(NOISE_PROLOGUE)
        .expect("prologue")
}

/// `plaintext` zero-padded so that `overhead + len` is a bucket (truncated to the largest).
fn pad_to_bucket(mut plaintext: Vec<u8>, overhead: usize) -> Vec<u8> {
    plaintext.truncate(LARGEST - overhead);
    let total = bucket_for(overhead + plaintext.len()).unwrap_or(LARGEST);
    plaintext.resize(total - overhead, 0);
    plaintext
}

/// Either the raw bytes as the padded plaintext, or `len || bytes` (a well-formed envelope
/// around arbitrary payload bytes).
fn plaintext(structured: bool, bytes: Vec<u8>, overhead: usize) -> Vec<u8> {
    if structured {
        let mut p = (bytes.len() as u32).to_be_bytes().to_vec();
        p.extend_from_slice(&bytes);
        pad_to_bucket(p, overhead)
    } else {
        pad_to_bucket(bytes, overhead)
    }
}

fn init_frame(s: &Setup, structured: bool, rest: &[u8]) -> Vec<u8> {
    let init_id = [9u8; 16];
    let payload = if structured {
        // A genuine HandshakePayload whose inner message bytes are the fuzzer's.
        let mut p = pb::HandshakePayload {
            init_id: init_id.to_vec(),
            created_at: 10,
            sender: Some(pb::PublicIdentity {
                identity_key: s.a.public().identity_key.to_vec(),
                dh_key: s.a.public().dh_key.to_vec(),
                dh_sig: s.a.public().dh_sig.to_vec(),
            }),
            inner: None,
            sequence: 1,
        }
        .encode_to_vec();
        p.push(0x22); // field 4, length-delimited
        prost::encoding::encode_varint(rest.len() as u64, &mut p);
        p.extend_from_slice(rest);
        p
    } else {
        rest.to_vec()
    };
    let overhead = 17 + 96;
    let pt = plaintext(structured, payload, overhead);
    let secret = dh_secret(&SEED_A);
    let remote = s.b.public().dh_key;
    let mut hs = builder()
        .local_private_key(&secret)
        .and_then(|b| b.remote_public_key(&remote))
        .and_then(|b| b.build_initiator())
        .expect("initiator");
    let mut f = vec![0u8; overhead + pt.len()];
    f[0] = 1;
    f[1..17].copy_from_slice(&init_id);
    hs.write_message(&pt, &mut f[17..]).expect("write init");
    f
}

fn transport_frame(s: &Setup, structured: bool, nonce: u64, rest: &[u8]) -> Vec<u8> {
    let overhead = 25 + 16;
    let mut pt = plaintext(structured, rest.to_vec(), overhead);
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&nonce.to_le_bytes());
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &s.key).expect("key"));
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(n), Aad::empty(), &mut pt)
        .expect("seal");
    let mut f = vec![3u8];
    f.extend_from_slice(&s.sid);
    f.extend_from_slice(&nonce.to_be_bytes());
    f.extend_from_slice(&pt);
    f
}

fn response_round(s: &Setup, structured: bool, rest: &[u8]) {
    let mut sa = Sessions::with_seed(SessionPolicy::default(), [6; 32]);
    let init = sa
        .seal(
            &s.a,
            &s.b.public(),
            &InnerMessage::text([1; 16], "hi", 0),
            1,
        )
        .expect("seal");
    let secret = dh_secret(&SEED_B);
    let mut hs = builder()
        .local_private_key(&secret)
        .and_then(|b| b.build_responder())
        .expect("responder");
    let mut buf = vec![0u8; init.len()];
    hs.read_message(&init[17..], &mut buf).expect("read init");
    let overhead = 17 + 48;
    let pt = plaintext(structured, rest.to_vec(), overhead);
    let mut f = vec![0u8; overhead + pt.len()];
    f[0] = 2;
    f[1..17].copy_from_slice(&init[1..17]);
    hs.write_message(&pt, &mut f[17..]).expect("write response");
    let _ = sa.open(&s.a, &f, 2);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = setup();
    let structured = mode & 0x10 != 0;
    match mode % 4 {
        0 => {
            let mut sb = receiver(s);
            let _ = sb.open(&s.b, rest, 5);
            let mut padded = rest.to_vec();
            padded.truncate(LARGEST);
            padded.resize(bucket_for(padded.len()).unwrap_or(LARGEST), 0);
            let _ = sb.open(&s.b, &padded, 5);
        }
        1 => {
            let f = init_frame(s, structured, rest);
            let _ = receiver(s).open(&s.b, &f, 5);
        }
        2 => {
            let nonce = u64::from(mode >> 5);
            let f = transport_frame(s, structured, nonce, rest);
            let mut sb = receiver(s);
            if let Ok(o) = sb.open(&s.b, &f, 5) {
                assert!(o.inner.is_some() && o.reply.is_none());
                // Accepted once, never twice.
                assert!(sb.open(&s.b, &f, 5).is_err());
            }
        }
        _ => response_round(s, structured, rest),
    }
});
