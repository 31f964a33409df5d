//! Sending and receiving chains: the HMAC ratchet, key ids, and the bounded store of skipped
//! message keys.

use std::collections::BTreeMap;

use ed25519_dalek::{SigningKey, VerifyingKey};
use ring::hmac;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{KEY_ID_LEN, MAX_FORWARD, MAX_SKIPPED_KEYS};
use crate::error::{CryptoError, Result};

/// A 32-byte secret wiped on drop.
pub(super) type Secret = Zeroizing<[u8; 32]>;

/// Spacing of the memory-only chain keys cached ahead of a receiving chain.
const CHECKPOINT_EVERY: u32 = 64;
const MESSAGE_KEY: u8 = 0x01;
const NEXT_CHAIN: u8 = 0x02;
const CTX_KEY_ID: &[u8] = b"tokenim/v1/sender-key-id\0";

/// `HMAC-SHA256(chain, byte)`.
fn step(chain: &[u8; 32], byte: u8) -> Secret {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, chain), &[byte]);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(tag.as_ref());
    out
}

/// The message key at this chain position.
pub(super) fn message_key(chain: &[u8; 32]) -> Secret {
    step(chain, MESSAGE_KEY)
}

/// The chain key of the next position.
pub(super) fn next_chain(chain: &[u8; 32]) -> Secret {
    step(chain, NEXT_CHAIN)
}

/// The clear id of one sender's epoch: derived, so no member can choose an id that collides
/// with another member's (the sender is part of it), and unreadable without the signing key.
pub(super) fn key_id(
    group: &[u8; 32],
    sender: &[u8; 32],
    epoch: u32,
    signing_key: &[u8; 32],
) -> [u8; KEY_ID_LEN] {
    let mut h = Sha256::new();
    h.update(CTX_KEY_ID);
    h.update(group);
    h.update(sender);
    h.update(epoch.to_be_bytes());
    h.update(signing_key);
    let d: [u8; 32] = h.finalize().into();
    let mut out = [0u8; KEY_ID_LEN];
    out.copy_from_slice(&d[..KEY_ID_LEN]);
    out
}

/// Our sending chain at one epoch.
pub(super) struct OwnChain {
    pub(super) epoch: u32,
    /// The next iteration to send; `chain` is at it.
    pub(super) iteration: u32,
    pub(super) chain: Secret,
    /// Zeroized on drop by ed25519-dalek.
    pub(super) signing: SigningKey,
    pub(super) key_id: [u8; KEY_ID_LEN],
}

impl OwnChain {
    pub(super) fn new(
        group: &[u8; 32],
        me: &[u8; 32],
        epoch: u32,
        iteration: u32,
        chain: Secret,
        signing_secret: &[u8; 32],
    ) -> Self {
        let signing = SigningKey::from_bytes(signing_secret);
        let key_id = key_id(group, me, epoch, &signing.verifying_key().to_bytes());
        OwnChain {
            epoch,
            iteration,
            chain,
            signing,
            key_id,
        }
    }
}

/// Another member's chain at one epoch.
pub(super) struct RecvChain {
    pub(super) epoch: u32,
    pub(super) key_id: [u8; KEY_ID_LEN],
    pub(super) signing: VerifyingKey,
    /// The next iteration not yet consumed from the chain; `chain` is at it.
    pub(super) iteration: u32,
    pub(super) chain: Secret,
    /// Iterations below this have no key here (before the distribution, or evicted).
    pub(super) floor: u32,
    /// Keys of messages skipped over that have not arrived yet (at most
    /// [`MAX_SKIPPED_KEYS`]; the lowest iterations are evicted first).
    pub(super) skipped: BTreeMap<u32, Secret>,
    /// Memory only: chain keys at multiples of [`CHECKPOINT_EVERY`] above `iteration`, so that
    /// frames far ahead (maybe forged by whoever saw the clear key id: they fail only after the
    /// walk) cost at most that many steps each, not [`MAX_FORWARD`]. Derivable from `chain`
    /// anyway; dropped as the chain passes them.
    pub(super) checkpoints: BTreeMap<u32, Secret>,
}

/// How to update a [`RecvChain`] once a frame at some iteration verified.
pub(super) enum Advance {
    /// The key came from the skipped store: remove it.
    Skipped,
    /// The chain moves past the frame (to `next`); the keys jumped over are kept.
    Ahead { next: Secret },
}

impl RecvChain {
    /// The message key for iteration `n`, and how to commit it. Changes nothing but the
    /// checkpoint cache: a frame that fails to decrypt or verify leaves the chain as it was.
    pub(super) fn key_for(&mut self, n: u32) -> Result<(Secret, Advance)> {
        if n < self.iteration {
            return match self.skipped.get(&n) {
                Some(k) => Ok((k.clone(), Advance::Skipped)),
                None if n < self.floor => Err(CryptoError::SenderKeyTooOld),
                // Between the floor and the chain, every key not held was consumed.
                None => Err(CryptoError::Replay),
            };
        }
        let ahead = n - self.iteration;
        if ahead > MAX_FORWARD {
            return Err(CryptoError::SenderKeyTooFarAhead {
                ahead,
                max: MAX_FORWARD,
            });
        }
        let chain = self.chain_at(n);
        Ok((
            message_key(&chain),
            Advance::Ahead {
                next: next_chain(&chain),
            },
        ))
    }

    /// The chain key at `n >= iteration`, from the nearest checkpoint below.
    fn chain_at(&mut self, n: u32) -> Secret {
        let (mut i, mut c) = match self.checkpoints.range(..=n).next_back() {
            Some((&i, c)) => (i, c.clone()),
            None => (self.iteration, self.chain.clone()),
        };
        while i < n {
            c = next_chain(&c);
            i += 1;
            if i % CHECKPOINT_EVERY == 0 {
                self.checkpoints.insert(i, c.clone());
            }
        }
        c
    }

    /// Records that the frame at iteration `n` was accepted.
    pub(super) fn commit(&mut self, n: u32, advance: Advance) {
        match advance {
            Advance::Skipped => {
                self.skipped.remove(&n);
            }
            Advance::Ahead { next } => {
                // Keep the keys of the (newest MAX_SKIPPED_KEYS) messages jumped over.
                let keep_from = n
                    .saturating_sub(MAX_SKIPPED_KEYS as u32)
                    .max(self.iteration);
                let mut c = self.chain_at(keep_from);
                for i in keep_from..n {
                    self.skipped.insert(i, message_key(&c));
                    c = next_chain(&c);
                }
                self.chain = next;
                // `n < u32::MAX`: frame headers beyond are refused.
                self.iteration = n + 1;
                self.checkpoints = self.checkpoints.split_off(&self.iteration);
                while self.skipped.len() > MAX_SKIPPED_KEYS {
                    if let Some((i, _)) = self.skipped.pop_first() {
                        self.floor = self.floor.max(i + 1);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// HMAC-SHA256 written out from its definition, to check the ratchet independently.
    fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
        let pad = |b: u8| {
            let mut k = [b; 64];
            k.iter_mut().zip(key).for_each(|(x, y)| *x ^= y);
            k
        };
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(msg)
            .finalize();
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    }

    #[test]
    fn ratchet_is_hmac_sha256() {
        let k = [0x0b; 32];
        assert_eq!(*message_key(&k), hmac_sha256(&k, &[1]));
        assert_eq!(*next_chain(&k), hmac_sha256(&k, &[2]));
    }

    #[test]
    fn key_id_binds_every_input() {
        let base = key_id(&[1; 32], &[2; 32], 3, &[4; 32]);
        assert_ne!(base, key_id(&[9; 32], &[2; 32], 3, &[4; 32]));
        assert_ne!(base, key_id(&[1; 32], &[9; 32], 3, &[4; 32]));
        assert_ne!(base, key_id(&[1; 32], &[2; 32], 4, &[4; 32]));
        assert_ne!(base, key_id(&[1; 32], &[2; 32], 3, &[9; 32]));
    }
}
