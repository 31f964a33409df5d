//! The file manifest, which travels inside an end-to-end encrypted message (see the module docs
//! of [`crate::file`]).

use std::fmt;

use prost::Message as _;
use zeroize::Zeroizing;

use super::{
    CHUNK_LIST_ENTRY_BYTES, CHUNK_TAG_LEN, ChunkList, FILE_FORMAT, FileKey, MAX_CHUNK_SIZE,
    MAX_CHUNKS, MAX_MANIFEST_BYTES, MAX_THUMBNAIL_BYTES, MIN_CHUNK_SIZE, check_file_name,
    check_mime,
};
use crate::error::{CryptoError, Result};
use crate::pb;
use crate::sign;

const W: &str = "file manifest";

/// A checked manifest: everything a recipient needs to fetch, verify and decrypt one file. Made
/// by [`super::FileSealer::finish`] or read by [`FileManifest::from_bytes`]; every value of
/// this type is within the limits, so its methods do not fail.
#[derive(Clone, PartialEq, Eq)]
pub struct FileManifest {
    name: String,
    size: u64,
    mime: String,
    sha256: [u8; 32],
    root: [u8; 32],
    key: FileKey,
    chunk_size: u32,
    thumbnail: Vec<u8>,
}

impl fmt::Debug for FileManifest {
    // The key reads the file; the name and type describe the user's content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileManifest")
            .field("name_len", &self.name.len())
            .field("size", &self.size)
            .field("chunk_size", &self.chunk_size)
            .field("root", &hex::encode(&self.root[..8]))
            .field("thumbnail_len", &self.thumbnail.len())
            .finish_non_exhaustive()
    }
}

/// Checks a chunk size and returns the chunk count of a file of `size` bytes with it.
pub(super) fn chunk_count(size: u64, chunk_size: u32) -> Result<u32> {
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(CryptoError::ChunkSize { size: chunk_size });
    }
    let count = size / u64::from(chunk_size) + 1;
    u32::try_from(count)
        .ok()
        .filter(|&c| c <= MAX_CHUNKS)
        .ok_or(CryptoError::TooManyChunks { max: MAX_CHUNKS })
}

impl FileManifest {
    /// Checks every field; the one constructor.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        name: &str,
        size: u64,
        mime: &str,
        sha256: [u8; 32],
        root: [u8; 32],
        key: FileKey,
        chunk_size: u32,
        thumbnail: Vec<u8>,
    ) -> Result<FileManifest> {
        check_file_name(name)?;
        check_mime(mime)?;
        chunk_count(size, chunk_size)?;
        if thumbnail.len() > MAX_THUMBNAIL_BYTES {
            return Err(CryptoError::malformed(
                W,
                format!(
                    "thumbnail of {} bytes, max {MAX_THUMBNAIL_BYTES}",
                    thumbnail.len()
                ),
            ));
        }
        Ok(FileManifest {
            name: name.to_owned(),
            size,
            mime: mime.to_owned(),
            sha256,
            root,
            key,
            chunk_size,
            thumbnail,
        })
    }

    /// The same manifest with a preview image of at most [`MAX_THUMBNAIL_BYTES`] (JPEG, PNG or
    /// WebP; the viewer recognises the format). Empty removes it.
    pub fn with_thumbnail(self, thumbnail: Vec<u8>) -> Result<FileManifest> {
        let FileManifest {
            name,
            size,
            mime,
            sha256,
            root,
            key,
            chunk_size,
            ..
        } = self;
        Self::new(&name, size, &mime, sha256, root, key, chunk_size, thumbnail)
    }

    /// The file's name (never a path: see [`super::check_file_name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Plaintext size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// MIME type; empty when unknown.
    pub fn mime(&self) -> &str {
        &self.mime
    }

    /// SHA-256 of the whole plaintext.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The root of the chunk list: the address the list is fetched by.
    pub fn root(&self) -> &[u8; 32] {
        &self.root
    }

    /// The file key.
    pub fn key(&self) -> &FileKey {
        &self.key
    }

    /// Plaintext bytes of every chunk but the last.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// The preview image; empty when none.
    pub fn thumbnail(&self) -> &[u8] {
        &self.thumbnail
    }

    /// Number of chunks: `size / chunk_size + 1` (the last is shorter, possibly empty).
    pub fn chunk_count(&self) -> u32 {
        // In bounds: checked when the manifest was made.
        (self.size / u64::from(self.chunk_size)) as u32 + 1
    }

    /// The exact ciphertext length of chunk `index` (plaintext + [`CHUNK_TAG_LEN`]), `None`
    /// past the last: a fetcher can refuse a longer answer before reading it.
    pub fn chunk_len(&self, index: u32) -> Option<usize> {
        let last = self.chunk_count() - 1;
        match index.cmp(&last) {
            std::cmp::Ordering::Less => Some(self.chunk_size as usize + CHUNK_TAG_LEN),
            std::cmp::Ordering::Equal => {
                Some((self.size % u64::from(self.chunk_size)) as usize + CHUNK_TAG_LEN)
            }
            std::cmp::Ordering::Greater => None,
        }
    }

    /// The exact length of this file's encoded [`ChunkList`], known before fetching it.
    pub fn list_len(&self) -> usize {
        self.chunk_count() as usize * CHUNK_LIST_ENTRY_BYTES
    }

    /// Checks that `list` is this file's: its length ([`CryptoError::ChunkCount`]) and its root
    /// ([`CryptoError::ChunkListRoot`]).
    pub fn verify_list(&self, list: &ChunkList) -> Result<()> {
        let expected = self.chunk_count();
        if list.len() != expected as usize {
            return Err(CryptoError::ChunkCount {
                expected,
                found: list.len(),
            });
        }
        if list.root() != self.root {
            return Err(CryptoError::ChunkListRoot);
        }
        Ok(())
    }

    /// The `FileManifest` encoding, for the payload of an end-to-end encrypted message. It holds
    /// the key, hence zeroized on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let p = Zeroizing::new(pb::FileManifest {
            version: FILE_FORMAT,
            name: self.name.clone(),
            size: self.size,
            mime: self.mime.clone(),
            sha256: self.sha256.to_vec(),
            root: self.root.to_vec(),
            key: self.key.as_bytes().to_vec(),
            chunk_size: self.chunk_size,
            thumbnail: self.thumbnail.clone(),
        });
        Zeroizing::new(p.encode_to_vec())
    }

    /// Reads a `FileManifest` from a decrypted message: at most [`MAX_MANIFEST_BYTES`], canonical
    /// encoding, version, name, type, `size` at most `max_size` (the caller's limit), chunk size
    /// and count within bounds, 32-byte hashes and key, thumbnail size.
    pub fn from_bytes(b: &[u8], max_size: u64) -> Result<FileManifest> {
        if b.len() > MAX_MANIFEST_BYTES {
            return Err(CryptoError::malformed(
                W,
                format!("{} bytes, max {MAX_MANIFEST_BYTES}", b.len()),
            ));
        }
        let p =
            Zeroizing::new(pb::FileManifest::decode(b).map_err(|e| CryptoError::malformed(W, e))?);
        if p.version != FILE_FORMAT {
            return Err(CryptoError::UnsupportedVersion {
                what: W,
                version: p.version,
            });
        }
        if p.size > max_size {
            return Err(CryptoError::FileTooLarge {
                size: p.size,
                max: max_size,
            });
        }
        let key = FileKey::from_bytes(sign::array(&p.key, W, "key")?);
        let m = Self::new(
            &p.name,
            p.size,
            &p.mime,
            sign::array(&p.sha256, W, "sha256")?,
            sign::array(&p.root, W, "root")?,
            key,
            p.chunk_size,
            p.thumbnail.clone(),
        )?;
        if *m.to_bytes() != b {
            return Err(CryptoError::malformed(W, "non-canonical encoding"));
        }
        Ok(m)
    }
}

// pb::FileManifest holds the key: zeroize it when a decoded or built copy drops.
impl zeroize::Zeroize for pb::FileManifest {
    fn zeroize(&mut self) {
        self.key.zeroize();
    }
}
