//! snow set-up: `Noise_IK_25519_ChaChaPoly_BLAKE2s`, prologue `tokenim/v1`, ring for
//! ChaChaPoly with snow's default resolver for X25519 and BLAKE2s, and our own seeded RNG for
//! ephemeral keys (so that sessions can be deterministic in tests and simulations).

use rand::rngs::ChaCha20Rng;
use rand::{Rng as _, SeedableRng as _};
use sha2::{Digest, Sha256};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{
    BoxedCryptoResolver, CryptoResolver, DefaultResolver, FallbackResolver, RingResolver,
};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState};
use zeroize::Zeroize;

use super::frame::ID_LEN;
use crate::error::{CryptoError, Result};

/// The Noise protocol name.
pub const NOISE_PROTOCOL: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// The Noise prologue.
pub const NOISE_PROLOGUE: &[u8] = b"tokenim/v1";

fn params() -> Result<NoiseParams> {
    NOISE_PROTOCOL.parse().map_err(CryptoError::Handshake)
}

struct SeededRandom(ChaCha20Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

/// Resolves only the RNG: one ChaCha20 stream per handshake, seeded from the session RNG.
struct RngOnly([u8; 32]);

impl Drop for RngOnly {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl CryptoResolver for RngOnly {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRandom(ChaCha20Rng::from_seed(self.0))))
    }
    fn resolve_dh(&self, _: &DHChoice) -> Option<Box<dyn Dh>> {
        None
    }
    fn resolve_hash(&self, _: &HashChoice) -> Option<Box<dyn Hash>> {
        None
    }
    fn resolve_cipher(&self, _: &CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

pub(crate) fn resolver(rng_seed: [u8; 32]) -> BoxedCryptoResolver {
    Box::new(FallbackResolver::new(
        Box::new(RngOnly(rng_seed)),
        Box::new(FallbackResolver::new(
            Box::new(RingResolver),
            Box::new(DefaultResolver),
        )),
    ))
}

pub(crate) fn builder(rng_seed: [u8; 32]) -> Result<Builder<'static>> {
    Builder::with_resolver(params()?, resolver(rng_seed))
        .prologue(NOISE_PROLOGUE)
        .map_err(CryptoError::Handshake)
}

pub(crate) fn initiator(
    local_secret: &[u8; 32],
    remote_dh: &[u8; 32],
    rng_seed: [u8; 32],
) -> Result<HandshakeState> {
    builder(rng_seed)?
        .local_private_key(local_secret)
        .and_then(|b| b.remote_public_key(remote_dh))
        .and_then(|b| b.build_initiator())
        .map_err(CryptoError::Handshake)
}

pub(crate) fn responder(local_secret: &[u8; 32], rng_seed: [u8; 32]) -> Result<HandshakeState> {
    builder(rng_seed)?
        .local_private_key(local_secret)
        .and_then(|b| b.build_responder())
        .map_err(CryptoError::Handshake)
}

/// Maps snow errors: a failed AEAD is a [`CryptoError::DecryptFailed`] like any other.
pub(crate) fn err(e: snow::Error) -> CryptoError {
    match e {
        snow::Error::Decrypt => CryptoError::DecryptFailed,
        other => CryptoError::Handshake(other),
    }
}

/// Transport session id from the handshake hash (see session.proto).
pub(crate) fn session_id(handshake_hash: &[u8]) -> [u8; ID_LEN] {
    let mut h = Sha256::new();
    h.update(b"tokenim/v1/session-id\0");
    h.update(handshake_hash);
    let d: [u8; 32] = h.finalize().into();
    let mut out = [0u8; ID_LEN];
    out.copy_from_slice(&d[..ID_LEN]);
    out
}
