//! Streaming sealing and opening of whole files, one chunk at a time (see the module docs of
//! [`crate::file`]). Neither side ever holds more than one chunk and the list of ids.

use std::fmt;

use ring::aead::LessSafeKey;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::chunk::{open_with, seal_with};
use super::manifest::chunk_count;
use super::{ChunkId, ChunkList, FileKey, FileManifest, MAX_CHUNKS, chunk_id};
use crate::error::{CryptoError, Result};

/// Seals a file chunk by chunk as it is read. Push every chunk in order: each but the last is
/// exactly the chunk size, the last is shorter (empty when the size is a multiple of the chunk
/// size, or the file is empty). Reading the file in chunk-size pieces until a short read does
/// exactly that, with no size known up front.
pub struct FileSealer {
    key: FileKey,
    aead: LessSafeKey,
    chunk_size: u32,
    // pub(super): tests jump to the chunk limit without sealing 64 GiB.
    pub(super) ids: Vec<ChunkId>,
    pub(super) size: u64,
    sha256: Sha256,
    /// The last (short) chunk was pushed.
    done: bool,
}

impl fmt::Debug for FileSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSealer")
            .field("chunk_size", &self.chunk_size)
            .field("chunks", &self.ids.len())
            .field("size", &self.size)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl FileSealer {
    /// A sealer with a fresh random key. `chunk_size` within
    /// [`super::MIN_CHUNK_SIZE`]..=[`super::MAX_CHUNK_SIZE`]; use
    /// [`super::DEFAULT_CHUNK_SIZE`] unless measuring.
    pub fn new(chunk_size: u32) -> Result<FileSealer> {
        Self::with_key(chunk_size, FileKey::generate()?)
    }

    /// A sealer with a given key (known-answer tests, benches). Never seal two different
    /// contents under one key: chunk nonces come from indexes and would repeat.
    pub fn with_key(chunk_size: u32, key: FileKey) -> Result<FileSealer> {
        chunk_count(0, chunk_size)?;
        Ok(FileSealer {
            aead: key.aead()?,
            key,
            chunk_size,
            ids: Vec::new(),
            size: 0,
            sha256: Sha256::new(),
            done: false,
        })
    }

    /// Seals the next chunk; returns its id and ciphertext, to store or send under that id. A
    /// chunk shorter than the chunk size is the last. Fails on a chunk longer than the chunk
    /// size, after the last chunk, and when a full chunk would leave no room within
    /// [`MAX_CHUNKS`] for the last.
    pub fn push(&mut self, plaintext: &[u8]) -> Result<(ChunkId, Vec<u8>)> {
        if self.done {
            return Err(CryptoError::FileState("chunk after the last"));
        }
        let chunk_size = self.chunk_size as usize;
        if plaintext.len() > chunk_size {
            return Err(CryptoError::ChunkTooLong {
                len: plaintext.len(),
                max: chunk_size,
            });
        }
        let index = self.ids.len() as u32;
        let last = plaintext.len() < chunk_size;
        if !last && index + 1 >= MAX_CHUNKS {
            return Err(CryptoError::TooManyChunks { max: MAX_CHUNKS });
        }
        let ciphertext = seal_with(&self.aead, index, last, plaintext)?;
        let id = chunk_id(&ciphertext);
        self.sha256.update(plaintext);
        self.size += plaintext.len() as u64;
        self.ids.push(id);
        self.done = last;
        Ok((id, ciphertext))
    }

    /// Plaintext bytes pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The chunk size chosen.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// After the last chunk: the manifest (to send inside an end-to-end message) and the chunk
    /// list (to store under the manifest's root). `name` and `mime` are checked as
    /// [`super::check_file_name`] and [`super::check_mime`] do; check them before sealing to
    /// fail early. The size limit is the caller's to check (it knows the file's size first).
    pub fn finish(self, name: &str, mime: &str) -> Result<(FileManifest, ChunkList)> {
        if !self.done {
            return Err(CryptoError::FileState(
                "finish before the last (short) chunk",
            ));
        }
        let list = ChunkList::new(self.ids)?;
        let manifest = FileManifest::new(
            name,
            self.size,
            mime,
            self.sha256.finalize().into(),
            list.root(),
            self.key,
            self.chunk_size,
            Vec::new(),
        )?;
        Ok((manifest, list))
    }
}

/// Opens a received file chunk by chunk, in order, checking every chunk against the list and
/// the whole against the manifest. A chunk that fails leaves the opener as it was, so the same
/// index can be fetched again and pushed.
pub struct FileOpener {
    manifest: FileManifest,
    list: ChunkList,
    aead: LessSafeKey,
    next: u32,
    size: u64,
    sha256: Sha256,
}

impl fmt::Debug for FileOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileOpener")
            .field("manifest", &self.manifest)
            .field("next", &self.next)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl FileOpener {
    /// An opener for `manifest`'s file, once its `list` was fetched; checks the list against
    /// the manifest ([`FileManifest::verify_list`]).
    pub fn new(manifest: &FileManifest, list: ChunkList) -> Result<FileOpener> {
        manifest.verify_list(&list)?;
        Ok(FileOpener {
            aead: manifest.key().aead()?,
            manifest: manifest.clone(),
            list,
            next: 0,
            size: 0,
            sha256: Sha256::new(),
        })
    }

    /// The list of the file being opened.
    pub fn list(&self) -> &ChunkList {
        &self.list
    }

    /// The index [`FileOpener::push`] expects next; `None` once every chunk was pushed.
    pub fn next_index(&self) -> Option<u32> {
        (self.next < self.manifest.chunk_count()).then_some(self.next)
    }

    /// Checks, without keys, that `ciphertext` is chunk `index` of this file: its length
    /// ([`CryptoError::ChunkLength`]) and id ([`CryptoError::ChunkIdMismatch`]). For chunks that
    /// arrive out of order and are stored, by id, until their turn.
    pub fn check(&self, index: u32, ciphertext: &[u8]) -> Result<()> {
        let (Some(expected), Some(id)) = (self.manifest.chunk_len(index), self.list.get(index))
        else {
            return Err(CryptoError::FileState("chunk index past the last"));
        };
        if ciphertext.len() != expected {
            return Err(CryptoError::ChunkLength {
                index,
                len: ciphertext.len(),
                expected,
            });
        }
        if chunk_id(ciphertext) != *id {
            return Err(CryptoError::ChunkIdMismatch { index });
        }
        Ok(())
    }

    /// Checks and opens chunk [`FileOpener::next_index`]; returns its plaintext, to append to
    /// the file.
    pub fn push(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>> {
        let Some(index) = self.next_index() else {
            return Err(CryptoError::FileState("chunk after the last"));
        };
        self.check(index, ciphertext)?;
        let last = index + 1 == self.manifest.chunk_count();
        let plaintext = open_with(&self.aead, index, last, ciphertext.to_vec())?;
        self.sha256.update(&plaintext);
        self.size += plaintext.len() as u64;
        self.next += 1;
        Ok(plaintext)
    }

    /// After the last chunk: checks the size and the SHA-256 of everything pushed against the
    /// manifest.
    pub fn finish(self) -> Result<()> {
        if self.next_index().is_some() {
            return Err(CryptoError::FileState("finish before the last chunk"));
        }
        if self.size != self.manifest.size() {
            return Err(CryptoError::FileSizeMismatch {
                expected: self.manifest.size(),
                got: self.size,
            });
        }
        let sha256: [u8; 32] = self.sha256.finalize().into();
        if !bool::from(sha256.ct_eq(self.manifest.sha256())) {
            return Err(CryptoError::FileHashMismatch);
        }
        Ok(())
    }
}
