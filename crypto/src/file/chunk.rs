//! File keys, chunk sealing and chunk ids (see the module docs of [`crate::file`]).

use std::fmt;

use rand::TryRng as _;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::{CHUNK_AAD_DOMAIN, MAX_CHUNK_SIZE};
use crate::error::{CryptoError, Result};

/// Bytes a chunk's ciphertext adds to its plaintext (the Poly1305 tag).
pub const CHUNK_TAG_LEN: usize = 16;

/// The key of one file: 32 random bytes, used for that file only, so that nonces taken from chunk
/// indexes are never used twice under one key. Zeroized on drop; Debug does not print it.
#[derive(Clone)]
pub struct FileKey(Zeroizing<[u8; 32]>);

impl FileKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<FileKey> {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::SysRng
            .try_fill_bytes(k.as_mut())
            .map_err(|_| CryptoError::Rng)?;
        Ok(FileKey(k))
    }

    /// A key from its bytes (a received manifest, known-answer tests). Sealing two different
    /// contents under one key reuses nonces and breaks the encryption of both.
    pub fn from_bytes(bytes: [u8; 32]) -> FileKey {
        FileKey(Zeroizing::new(bytes))
    }

    /// The key's bytes (what the manifest carries).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(super) fn aead(&self) -> Result<LessSafeKey> {
        // CHACHA20_POLY1305 takes any 32-byte key; the error is unreachable but not unwrapped.
        UnboundKey::new(&aead::CHACHA20_POLY1305, self.0.as_ref())
            .map(LessSafeKey::new)
            .map_err(|_| CryptoError::malformed("file key", "refused by the AEAD"))
    }
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKey(..)")
    }
}

impl PartialEq for FileKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}

impl Eq for FileKey {}

/// A chunk id: SHA-256 of the chunk's ciphertext. The same chunk has the same id at every hop
/// and on every retry, so relays and stores dedupe on it, and anyone can check it without keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", hex::encode(&self.0[..8]))
    }
}

/// The id of a chunk: SHA-256 of its ciphertext.
pub fn chunk_id(ciphertext: &[u8]) -> ChunkId {
    ChunkId(Sha256::digest(ciphertext).into())
}

/// 8 zero bytes || index (u32, big-endian). Unique per chunk because the key is unique per file.
fn nonce(index: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[8..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Domain || 0x00 || index (u32, big-endian) || last (1 byte). The index stops reordering (also
/// bound by the nonce); the flag stops a truncated file from passing for a whole one.
fn aad(index: u32, last: bool) -> [u8; CHUNK_AAD_DOMAIN.len() + 6] {
    let mut a = [0u8; CHUNK_AAD_DOMAIN.len() + 6];
    let d = CHUNK_AAD_DOMAIN.len();
    a[..d].copy_from_slice(CHUNK_AAD_DOMAIN.as_bytes());
    a[d + 1..d + 5].copy_from_slice(&index.to_be_bytes());
    a[d + 5] = u8::from(last);
    a
}

/// Seals the plaintext of chunk `index` (`last` for the file's last chunk): ciphertext || tag.
pub fn seal_chunk(key: &FileKey, index: u32, last: bool, plaintext: &[u8]) -> Result<Vec<u8>> {
    seal_with(&key.aead()?, index, last, plaintext)
}

/// Opens chunk `index` (`last` for the file's last chunk): the plaintext, or
/// [`CryptoError::ChunkDecryptFailed`] when it was modified, sealed for another index or
/// position, or under another key.
pub fn open_chunk(key: &FileKey, index: u32, last: bool, ciphertext: &[u8]) -> Result<Vec<u8>> {
    open_with(&key.aead()?, index, last, ciphertext.to_vec())
}

pub(super) fn seal_with(
    key: &LessSafeKey,
    index: u32,
    last: bool,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let too_long = CryptoError::ChunkTooLong {
        len: plaintext.len(),
        max: MAX_CHUNK_SIZE as usize,
    };
    if plaintext.len() > MAX_CHUNK_SIZE as usize {
        return Err(too_long);
    }
    let mut buf = Vec::with_capacity(plaintext.len() + CHUNK_TAG_LEN);
    buf.extend_from_slice(plaintext);
    // ring refuses only inputs beyond ChaCha20's 256 GiB, far above MAX_CHUNK_SIZE.
    let tag = key
        .seal_in_place_separate_tag(nonce(index), Aad::from(aad(index, last)), &mut buf)
        .map_err(|_| too_long)?;
    buf.extend_from_slice(tag.as_ref());
    Ok(buf)
}

/// Decrypts in place, reusing the ciphertext's buffer for the plaintext.
pub(super) fn open_with(
    key: &LessSafeKey,
    index: u32,
    last: bool,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>> {
    let len = key
        .open_in_place(nonce(index), Aad::from(aad(index, last)), &mut buf)
        .map_err(|_| CryptoError::ChunkDecryptFailed { index })?
        .len();
    buf.truncate(len);
    Ok(buf)
}
