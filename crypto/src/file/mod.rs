//! Files: the cryptography of sending one (sans-IO: the node reads, stores and moves the bytes).
//!
//! A file is sealed under its own random 32-byte [`FileKey`], in chunks, and each sealed chunk
//! is named by the SHA-256 of its ciphertext ([`ChunkId`]). Chunks are content-addressed
//! objects: relays store and serve them by id and can check an id without any key, retries
//! and the same file forwarded to other chats reuse the same ids, and a relay sees nothing but
//! ciphertext of a known length. The ids in order form a [`ChunkList`], one more
//! content-addressed object, named by its [root](ChunkList::root). The [`FileManifest`] (name,
//! size, type, SHA-256 of the plaintext, the list's root, the key, the chunk size, an optional
//! thumbnail) travels inside an end-to-end encrypted message; whoever holds it can fetch, check
//! and read the file, nobody else can read any of it.
//!
//! # Chunks
//!
//! Every chunk but the last holds exactly `chunk_size` bytes of plaintext; the last is shorter,
//! possibly empty, so a file of `size` bytes has `size / chunk_size + 1` chunks: a 0-byte file
//! is one empty chunk, and a file whose size is a multiple of the chunk size ends with an empty
//! chunk. Why: the sealer learns which chunk is the last from its length alone (read until a
//! short read), without knowing the size first and without holding a chunk back; every file has
//! exactly one last chunk to carry the last flag; and each size has one chunk count, so the
//! manifest needs no count and a reader knows each chunk's exact length before fetching it
//! ([`FileManifest::chunk_len`]). The cost is one 16-byte extra chunk for the rare file whose
//! size is a multiple of the chunk size.
//!
//! Chunk `i` is ChaCha20-Poly1305 ([`seal_chunk`]) under the file key with
//! - nonce = 8 zero bytes || `i` (u32, big-endian): unique because each key seals one file;
//! - associated data = `"tokenim/v1/file-chunk"` || 0x00 || `i` (u32) || last (1 byte, 1 for
//!   the last chunk, else 0): a chunk opens only at its own index (no reordering) and only in
//!   its own position (a file cut after a full chunk does not pass for a whole one);
//!
//! and is `plaintext || 16-byte tag` long. Its id is SHA-256(ciphertext) ([`chunk_id`]).
//!
//! # The chunk list and its root
//!
//! `ChunkList` (`proto/tokenim/v1/file.proto`) holds the ids in order; its root is
//! SHA-256(`"tokenim/v1/file-chunk-list"` || 0x00 || encoding), and readers accept only the
//! canonical encoding (34 bytes per id), so a list has one root. The manifest carries the root,
//! not the ids: the 8,193 ids of a 2 GiB file at the default chunk size are 272 KiB, far more
//! than a message's 48 KiB payload. The recipient fetches the list under its root and checks it
//! ([`FileManifest::verify_list`]); its exact length ([`FileManifest::list_len`]) is known
//! before the fetch.
//!
//! **At most [`MAX_CHUNKS`] = 2^20 chunks.** The list is the one object a recipient must hold
//! whole (to check the root before trusting any id in it): 2^20 ids are 34 MiB, a bound a node
//! can afford, where an unbounded count would let a manifest ask for any amount of memory. With
//! the smallest chunk size that still allows files of 64 GiB − 1 byte, and 256 GiB − 1 byte at
//! the default; the node's own limit (2 GiB by default, [`DEFAULT_MAX_FILE_SIZE`]) is far
//! below. It also keeps every index within a u32, the nonce's and the associated data's field.
//!
//! # Streaming
//!
//! [`FileSealer`]: `push` each chunk as it is read (it returns the id and ciphertext to store),
//! then `finish` gives the manifest and the list. It holds one SHA-256 state and the ids
//! (32 bytes per chunk), never the file. [`FileOpener`]: made from the manifest and the fetched
//! list; `check` verifies any chunk's length and id without keys (for chunks fetched out of
//! order and stored by id until their turn), `push` opens the chunks in order and `finish`
//! checks the size and the plaintext SHA-256. A chunk that fails leaves the opener unchanged, so
//! it can be fetched again. Resuming means keeping the chunks already fetched (by id) and
//! replaying them through a new opener: the opener's state is never persisted.
//!
//! # Choosing the chunk size
//!
//! **256 KiB** ([`DEFAULT_CHUNK_SIZE`]). Measured with `cargo bench -p tokenim-crypto --bench
//! files` (a 4 MiB file per iteration; two runs on this project's shared 2-core Xeon, so about
//! ±10 % noise):
//!
//! | chunk size | seal+id (MB/s) | open+verify (MB/s) |
//! |---|---|---|
//! | 64 KiB | 427–475 | 524–557 |
//! | 256 KiB | 393–409 | 532–549 |
//! | 1 MiB | 446–496 | 523–557 |
//!
//! The primitives alone over 256 KiB: ChaCha20-Poly1305 (ring) 2.0 GB/s, SHA-256 1.5 GB/s. Each
//! byte goes once through the AEAD and twice through SHA-256 (the ciphertext for the id, the
//! plaintext for the manifest), which puts the ceiling near 500 MB/s whatever the chunk size:
//! the differences above are noise. At 1 Gbit/s (125 MB/s) that is a quarter of one core, so the
//! CPU does not pick the size; the transfer does:
//!
//! | chunk size | requests/s at 100 Mbit/s, 1 Gbit/s | 8 in flight | ids of 2 GiB (list) | overhead per chunk |
//! |---|---|---|---|---|
//! | 64 KiB | 191, 1,907 | 512 KiB | 32,769 (1.1 MiB) | 0.13 % |
//! | 256 KiB | 48, 477 | 2 MiB | 8,193 (272 KiB) | 0.03 % |
//! | 1 MiB | 12, 119 | 8 MiB | 2,049 (68 KiB) | 0.008 % |
//!
//! (Overhead: the 16-byte tag, the 32-byte id a store keys it by and its 34 bytes in the list.)
//! - *Requests*: at 64 KiB a fast link means thousands of requests per second, each with its
//!   own framing, lookup and store write at the relay; at 256 KiB it is hundreds at most.
//! - *Keeping the link full*: a window of 8 requests moves 8 chunks per round trip; 8 × 256 KiB
//!   = 2 MiB fills 100 Mbit/s at up to 160 ms of round trip, and 1 Gbit/s at 16 ms. 8 × 64 KiB
//!   fills 100 Mbit/s only up to 40 ms.
//! - *Memory*: 8 chunks in flight are 2 MiB per transfer at 256 KiB, within a few MiB even with a
//!   few transfers at once; at 1 MiB, 8 MiB per transfer.
//! - *Resuming*: an interrupted transfer loses at most the chunks in flight (2 MiB) and resumes
//!   at chunk granularity; at 1 MiB it would lose up to 8 MiB.
//! - *Relay storage*: the per-chunk overhead is negligible from 64 KiB on; fewer, larger objects
//!   mean fewer store entries and a 4× shorter list than 64 KiB.
//!
//! 256 KiB is the size where requests, the list and the overhead are small and the window and
//! its memory still are. Readers accept any size in [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`], so
//! the default can change without a format change.
//!
//! # Limits, checked on reading
//!
//! Names: 1..=[`MAX_FILE_NAME_BYTES`] bytes of UTF-8, not `.` or `..`, no `/`, `\`, NUL,
//! control characters, nor Unicode bidirectional controls (which can make `exe.jpg` display as
//! `gpj.exe`...) ([`check_file_name`]); a name is never a path. MIME types: at most
//! [`MAX_MIME_BYTES`] of printable ASCII ([`check_mime`]). Sizes: at most the caller's
//! `max_size`. Chunk sizes: [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`]. Thumbnails: at most
//! [`MAX_THUMBNAIL_BYTES`]. Manifests: at most [`MAX_MANIFEST_BYTES`], canonical encoding only.

mod chunk;
mod list;
mod manifest;
mod stream;

pub use chunk::{CHUNK_TAG_LEN, ChunkId, FileKey, chunk_id, open_chunk, seal_chunk};
pub use list::{CHUNK_LIST_ENTRY_BYTES, ChunkList, MAX_CHUNK_LIST_BYTES};
pub use manifest::FileManifest;
pub use stream::{FileOpener, FileSealer};

use crate::error::{CryptoError, Result};

/// Format version of `FileManifest`.
pub const FILE_FORMAT: u32 = 1;
/// Domain string of the chunks' associated data.
pub const CHUNK_AAD_DOMAIN: &str = "tokenim/v1/file-chunk";
/// Domain string of the chunk list's root.
pub const LIST_ROOT_DOMAIN: &str = "tokenim/v1/file-chunk-list";
/// Smallest chunk size: below it requests cost more than the bytes they carry, and it keeps
/// [`MAX_CHUNKS`] chunks above 16 GiB.
pub const MIN_CHUNK_SIZE: u32 = 64 * 1024;
/// Largest chunk size: bounds what a recipient must buffer per chunk whatever the sender chose
/// (8 MiB for a window of 8 requests).
pub const MAX_CHUNK_SIZE: u32 = 1024 * 1024;
/// The chunk size senders use (see "Choosing the chunk size" above).
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024;
/// Most chunks in one file (see "The chunk list and its root" above).
pub const MAX_CHUNKS: u32 = 1 << 20;
/// The file size limit a node uses unless configured otherwise: 2 GiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 2 * 1024 * 1024 * 1024;
/// Longest file name, in bytes of UTF-8 (the common file-system limit).
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Longest MIME type (RFC 6838 allows 127 characters per part; one part for both is plenty).
pub const MAX_MIME_BYTES: usize = 127;
/// Largest thumbnail: a preview fits 16 KiB, and the manifest stays a small part of a message.
pub const MAX_THUMBNAIL_BYTES: usize = 16 * 1024;
/// Longest encoded `FileManifest` (a manifest at every limit is about 16,900 bytes); it fits an
/// `InnerMessage` payload ([`crate::MAX_PAYLOAD_BYTES`]) with room to spare.
pub const MAX_MANIFEST_BYTES: usize = 17 * 1024;
const _: () = assert!(MAX_MANIFEST_BYTES <= crate::MAX_PAYLOAD_BYTES);

/// Unicode bidirectional controls: in a name they reorder what is shown (`"x\u{202E}gpj.exe"`
/// reads as `xexe.jpg`), hiding the real extension.
const BIDI_CONTROLS: [char; 12] = [
    '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}',
    '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
];

/// Checks a file name ([`CryptoError::FileName`]): a recipient saves it as given, so it must
/// never be a path or a special name, nor show something else than it is.
pub fn check_file_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_FILE_NAME_BYTES {
        "longer than 255 bytes"
    } else if name == "." || name == ".." {
        "\".\" or \"..\""
    } else if name.contains(['/', '\\']) {
        "path separator"
    } else if name.contains('\0') {
        "NUL character"
    } else if name.chars().any(char::is_control) {
        "control character"
    } else if name.contains(BIDI_CONTROLS) {
        "bidirectional control character"
    } else {
        return Ok(());
    };
    Err(CryptoError::FileName(reason))
}

/// Checks a MIME type ([`CryptoError::FileMime`]): at most [`MAX_MIME_BYTES`] of printable
/// ASCII; empty means unknown.
pub fn check_mime(mime: &str) -> Result<()> {
    if mime.len() > MAX_MIME_BYTES {
        return Err(CryptoError::FileMime("longer than 127 bytes"));
    }
    if !mime.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(CryptoError::FileMime("not printable ASCII"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
