//! Noise transport encryption done here rather than in snow, so that keys, counters and the
//! replay window can be serialised: ChaCha20-Poly1305 (ring), nonce = 4 zero bytes || counter
//! (u64 little-endian), empty associated data; byte-compatible with Noise's CipherState.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::error::{CryptoError, Result};

fn noise_nonce(n: u64) -> Nonce {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(b)
}

fn key(k: &[u8; 32]) -> LessSafeKey {
    // CHACHA20_POLY1305 takes any 32-byte key, so this cannot fail.
    LessSafeKey::new(UnboundKey::new(&aead::CHACHA20_POLY1305, k).expect("32-byte key"))
}

/// Encrypts `buf[..]` in place and returns the tag to append.
pub(crate) fn seal_in_place(k: &[u8; 32], n: u64, buf: &mut [u8]) -> [u8; 16] {
    let tag = key(k)
        .seal_in_place_separate_tag(noise_nonce(n), Aad::empty(), buf)
        .expect("frames are far below ChaCha20's 256 GiB limit");
    let mut out = [0u8; 16];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Decrypts `ciphertext || tag` in place; returns the plaintext part.
pub(crate) fn open_in_place<'b>(k: &[u8; 32], n: u64, buf: &'b mut [u8]) -> Result<&'b mut [u8]> {
    key(k)
        .open_in_place(noise_nonce(n), Aad::empty(), buf)
        .map_err(|_| CryptoError::DecryptFailed)
}

/// Sliding replay window over transport nonces: accepts each nonce at most once, and none more
/// than `bits` below the highest accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplayWindow {
    /// 1 + highest accepted nonce; 0 when none yet.
    pub(crate) highest_plus_one: u64,
    /// Bit `n % bits` is set when nonce `n` (within the window) was accepted.
    pub(crate) bitmap: Vec<u64>,
}

impl ReplayWindow {
    /// Largest window we keep (bounds restored state).
    pub(crate) const MAX_BITS: u64 = 1 << 16;

    /// A window of at least `bits` (rounded up to a multiple of 64, at least 64).
    pub(crate) fn new(bits: u64) -> Self {
        let words = bits.clamp(64, Self::MAX_BITS).div_ceil(64) as usize;
        ReplayWindow {
            highest_plus_one: 0,
            bitmap: vec![0; words],
        }
    }

    pub(crate) fn bits(&self) -> u64 {
        self.bitmap.len() as u64 * 64
    }

    fn bit(&self, n: u64) -> (usize, u64) {
        let i = n % self.bits();
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether `n` may be accepted; does not record it.
    pub(crate) fn check(&self, n: u64) -> Result<()> {
        if n >= self.highest_plus_one {
            return Ok(());
        }
        if self.highest_plus_one - n > self.bits() {
            return Err(CryptoError::NonceTooOld);
        }
        let (w, m) = self.bit(n);
        if self.bitmap[w] & m != 0 {
            return Err(CryptoError::Replay);
        }
        Ok(())
    }

    /// Records `n` (after it decrypted). Call only after `check(n)` succeeded.
    pub(crate) fn accept(&mut self, n: u64) {
        if n >= self.highest_plus_one {
            // Forget the slots of nonces that slide out of the window.
            let advance = n + 1 - self.highest_plus_one;
            if advance >= self.bits() {
                self.bitmap.iter_mut().for_each(|w| *w = 0);
            } else {
                for k in self.highest_plus_one..=n {
                    let (w, m) = self.bit(k);
                    self.bitmap[w] &= !m;
                }
            }
            self.highest_plus_one = n + 1;
        }
        let (w, m) = self.bit(n);
        self.bitmap[w] |= m;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn aead_round_trip() {
        let k = [7u8; 32];
        let mut buf = b"hello world".to_vec();
        let tag = seal_in_place(&k, 5, &mut buf);
        buf.extend_from_slice(&tag);
        let mut c = buf.clone();
        assert_eq!(open_in_place(&k, 5, &mut c).unwrap(), b"hello world");
        let mut c = buf.clone();
        assert!(open_in_place(&k, 6, &mut c).is_err());
        let mut c = buf;
        c[0] ^= 1;
        assert!(open_in_place(&k, 5, &mut c).is_err());
    }

    #[test]
    fn window() {
        let mut w = ReplayWindow::new(128);
        for n in [0u64, 2, 1, 5] {
            w.check(n).unwrap();
            w.accept(n);
        }
        assert!(matches!(w.check(2), Err(CryptoError::Replay)));
        w.check(3).unwrap();
        w.check(4).unwrap();
        w.accept(300);
        assert!(matches!(w.check(100), Err(CryptoError::NonceTooOld)));
        // 300 - 127 = 173 is the oldest still inside.
        w.check(173).unwrap();
        assert!(matches!(w.check(172), Err(CryptoError::NonceTooOld)));
        assert!(matches!(w.check(300), Err(CryptoError::Replay)));
        w.accept(173);
        assert!(matches!(w.check(173), Err(CryptoError::Replay)));
        // Sliding by less than the window clears exactly the slots that left it.
        w.accept(301);
        w.check(174).unwrap();
        assert!(matches!(w.check(173), Err(CryptoError::NonceTooOld)));
        assert!(matches!(w.check(301), Err(CryptoError::Replay)));
    }
}
