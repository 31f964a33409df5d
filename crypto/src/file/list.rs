//! The ordered chunk ids of a file (see the module docs of [`crate::file`]).

use std::fmt;

use prost::Message as _;
use sha2::{Digest as _, Sha256};

use super::{ChunkId, LIST_ROOT_DOMAIN, MAX_CHUNKS};
use crate::error::{CryptoError, Result};
use crate::pb;
use crate::sign;

const W: &str = "chunk list";

/// Encoded bytes per id: field tag, length, 32 bytes.
pub const CHUNK_LIST_ENTRY_BYTES: usize = 34;
/// Longest encoded `ChunkList` accepted: [`MAX_CHUNKS`] ids (34 MiB).
pub const MAX_CHUNK_LIST_BYTES: usize = MAX_CHUNKS as usize * CHUNK_LIST_ENTRY_BYTES;

/// The chunk ids of one file, in order; 1..=[`MAX_CHUNKS`] of them. Fetched as one more
/// content-addressed object under its [root](ChunkList::root), which the manifest carries.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkList {
    ids: Vec<ChunkId>,
}

impl fmt::Debug for ChunkList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the root: hashing up to 34 MiB is no job for a log line.
        f.debug_struct("ChunkList")
            .field("ids", &self.ids.len())
            .field("first", &self.ids.first())
            .finish()
    }
}

impl ChunkList {
    /// A list of `ids`, in file order: 1..=[`MAX_CHUNKS`] of them.
    pub fn new(ids: Vec<ChunkId>) -> Result<ChunkList> {
        if ids.is_empty() {
            return Err(CryptoError::malformed(W, "no chunks"));
        }
        if ids.len() > MAX_CHUNKS as usize {
            return Err(CryptoError::TooManyChunks { max: MAX_CHUNKS });
        }
        Ok(ChunkList { ids })
    }

    /// The ids, chunk 0 first.
    pub fn ids(&self) -> &[ChunkId] {
        &self.ids
    }

    /// The number of chunks (at least 1).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always false: a file has at least one chunk (the last, possibly empty).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of chunk `index`.
    pub fn get(&self, index: u32) -> Option<&ChunkId> {
        self.ids.get(index as usize)
    }

    /// SHA-256(`"tokenim/v1/file-chunk-list"` || 0x00 || encoding). The domain keeps a root from
    /// ever equalling a chunk id (a plain SHA-256), so a list cannot be passed off as a chunk or
    /// the other way round under one address.
    pub fn root(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(LIST_ROOT_DOMAIN.as_bytes());
        h.update([0]);
        // The canonical encoding, streamed rather than built (tests check it against prost's).
        for id in &self.ids {
            h.update([0x0a, 0x20]);
            h.update(id.0);
        }
        h.finalize().into()
    }

    /// The `ChunkList` encoding: [`CHUNK_LIST_ENTRY_BYTES`] per id.
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::ChunkList {
            ids: self.ids.iter().map(|id| id.0.to_vec()).collect(),
        }
        .encode_to_vec()
    }

    /// Reads a `ChunkList`: at most [`MAX_CHUNK_LIST_BYTES`], canonical encoding only (one list,
    /// one root), 1..=[`MAX_CHUNKS`] ids of 32 bytes. Whether it is the list of a given file is
    /// [`super::FileManifest::verify_list`]'s job.
    pub fn from_bytes(b: &[u8]) -> Result<ChunkList> {
        // Before decoding: the size bounds the memory decoding takes.
        if b.len() > MAX_CHUNK_LIST_BYTES {
            return Err(CryptoError::TooManyChunks { max: MAX_CHUNKS });
        }
        let p = pb::ChunkList::decode(b).map_err(|e| CryptoError::malformed(W, e))?;
        let ids = p
            .ids
            .iter()
            .map(|id| sign::array(id, W, "id").map(ChunkId))
            .collect::<Result<Vec<_>>>()?;
        let list = ChunkList::new(ids)?;
        if list.to_bytes() != b {
            return Err(CryptoError::malformed(W, "non-canonical encoding"));
        }
        Ok(list)
    }
}
