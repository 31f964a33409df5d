//! Property tests of file encryption: any file at any chunk size comes back whole; a flipped
//! byte, two swapped chunks or a dropped last chunk is always caught (by the ids, the list's
//! root and the AEAD each on its own); the manifest and list decoders never panic and accept
//! only canonical encodings.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use tokenim_crypto::file::{
    ChunkList, DEFAULT_MAX_FILE_SIZE, FileKey, FileManifest, FileOpener, FileSealer,
    MIN_CHUNK_SIZE, chunk_id, open_chunk,
};
use tokenim_crypto::{ChunkId, CryptoError};

/// Deterministic bytes from a seed (xorshift), so cases shrink by seed and size, not by content.
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Sealed {
    key: FileKey,
    plain: Vec<u8>,
    manifest: FileManifest,
    list: ChunkList,
    chunks: Vec<Vec<u8>>,
}

fn seal(seed: u64, chunk_size: u32, size: usize) -> Sealed {
    let key = FileKey::from_bytes(data(seed ^ 0x55, 32).try_into().unwrap());
    let plain = data(seed, size);
    let mut s = FileSealer::with_key(chunk_size, key.clone()).unwrap();
    let mut chunks = Vec::new();
    for piece in plain.chunks(chunk_size as usize) {
        chunks.push(s.push(piece).unwrap().1);
    }
    if size.is_multiple_of(chunk_size as usize) {
        // The last chunk is short: empty here.
        chunks.push(s.push(&[]).unwrap().1);
    }
    let (manifest, list) = s.finish("f.bin", "application/octet-stream").unwrap();
    Sealed {
        key,
        plain,
        manifest,
        list,
        chunks,
    }
}

/// Opens `chunks` in order against `manifest` and `list`.
fn open(
    manifest: &FileManifest,
    list: &ChunkList,
    chunks: &[Vec<u8>],
) -> Result<Vec<u8>, CryptoError> {
    let mut o = FileOpener::new(manifest, list.clone())?;
    let mut out = Vec::new();
    for c in chunks {
        out.extend(o.push(c)?);
    }
    o.finish()?;
    Ok(out)
}

/// A list made from whatever chunks an attacker holds: what a forged list would name.
fn list_of(chunks: &[Vec<u8>]) -> ChunkList {
    ChunkList::new(chunks.iter().map(|c| chunk_id(c)).collect()).unwrap()
}

/// (seed, chunk size, size): 0..=4 chunks' worth, exact multiples of the chunk size often.
fn file() -> impl Strategy<Value = (u64, u32, usize)> {
    (
        any::<u64>(),
        MIN_CHUNK_SIZE..=3 * MIN_CHUNK_SIZE,
        0usize..4,
        prop_oneof![Just(0usize), Just(1), any::<usize>()],
    )
        .prop_map(|(seed, cs, full, rest)| (seed, cs, full * cs as usize + rest % cs as usize))
}

/// Applies one mutation: flip bits in a byte, truncate, or insert a byte.
fn mutate(mut v: Vec<u8>, op: u8, pos: usize, val: u8) -> Vec<u8> {
    if v.is_empty() {
        return vec![val];
    }
    let pos = pos % v.len();
    match op % 3 {
        0 => v[pos] ^= val.max(1),
        1 => v.truncate(pos),
        _ => v.insert(pos, val),
    }
    v
}

proptest! {
    #[test]
    fn round_trip((seed, cs, size) in file()) {
        let f = seal(seed, cs, size);
        prop_assert_eq!(f.chunks.len(), size / cs as usize + 1);
        prop_assert_eq!(f.manifest.chunk_count() as usize, f.chunks.len());
        let m = FileManifest::from_bytes(&f.manifest.to_bytes(), DEFAULT_MAX_FILE_SIZE).unwrap();
        let l = ChunkList::from_bytes(&f.list.to_bytes()).unwrap();
        prop_assert_eq!(&m, &f.manifest);
        prop_assert_eq!(&l, &f.list);
        prop_assert_eq!(open(&m, &l, &f.chunks).unwrap(), f.plain);
    }

    #[test]
    fn any_flipped_byte_is_caught(
        (seed, cs, size) in file(),
        which in any::<usize>(),
        pos in any::<usize>(),
        mask in 1u8..,
    ) {
        let f = seal(seed, cs, size);
        let i = which % f.chunks.len();
        let mut bad = f.chunks.clone();
        let p = pos % bad[i].len();
        bad[i][p] ^= mask;
        let idx = i as u32;
        // By its id...
        prop_assert!(matches!(
            open(&f.manifest, &f.list, &bad),
            Err(CryptoError::ChunkIdMismatch { index }) if index == idx
        ), "flipped byte not caught by its id");
        // ...by the root, when the list is forged to match...
        prop_assert!(matches!(
            open(&f.manifest, &list_of(&bad), &bad),
            Err(CryptoError::ChunkListRoot)
        ), "forged list not caught by the root");
        // ...and by the AEAD alone.
        let last = i + 1 == f.chunks.len();
        prop_assert!(open_chunk(&f.key, idx, last, &bad[i]).is_err());
    }

    #[test]
    fn swapped_chunks_are_caught(
        (seed, cs, size) in file(),
        a in any::<usize>(),
        b in any::<usize>(),
    ) {
        let f = seal(seed, cs, size);
        let n = f.chunks.len();
        prop_assume!(n >= 2);
        let (i, j) = (a % n, b % n);
        prop_assume!(i != j);
        let mut bad = f.chunks.clone();
        bad.swap(i, j);
        let first = i.min(j) as u32;
        let r = open(&f.manifest, &f.list, &bad);
        prop_assert!(
            matches!(
                r,
                Err(CryptoError::ChunkIdMismatch { index } | CryptoError::ChunkLength { index, .. })
                    if index == first
            ),
            "{:?}", r
        );
        prop_assert!(matches!(
            open(&f.manifest, &list_of(&bad), &bad),
            Err(CryptoError::ChunkListRoot)
        ), "swapped list not caught by the root");
        // A chunk does not open at another index, whatever flag it is given.
        for last in [false, true] {
            prop_assert!(open_chunk(&f.key, i as u32, last, &f.chunks[j]).is_err());
        }
    }

    #[test]
    fn dropped_last_chunk_is_caught((seed, cs, size) in file()) {
        let f = seal(seed, cs, size);
        let n = f.chunks.len();
        let cut = &f.chunks[..n - 1];
        // The list without its last id is not the manifest's...
        if n >= 2 {
            let short = ChunkList::new(f.list.ids()[..n - 1].to_vec()).unwrap();
            prop_assert!(matches!(
                f.manifest.verify_list(&short),
                Err(CryptoError::ChunkCount { .. })
            ), "short list not refused by count");
            // ...the new last chunk was not sealed as a last one...
            prop_assert!(matches!(
                open_chunk(&f.key, n as u32 - 2, true, &cut[n - 2]),
                Err(CryptoError::ChunkDecryptFailed { .. })
            ), "non-last chunk opened as the last");
        }
        // ...and an opener that got every chunk but the last does not finish.
        let mut o = FileOpener::new(&f.manifest, f.list.clone()).unwrap();
        for c in cut {
            o.push(c).unwrap();
        }
        prop_assert!(matches!(o.finish(), Err(CryptoError::FileState(_))), "truncated file finished");
    }
}

proptest! {
    #[test]
    fn decoders_never_panic(b in prop::collection::vec(any::<u8>(), 0..2048)) {
        for max in [0, DEFAULT_MAX_FILE_SIZE, u64::MAX] {
            if let Ok(m) = FileManifest::from_bytes(&b, max) {
                let again = m.to_bytes();
                prop_assert_eq!(again.as_slice(), b.as_slice());
            }
        }
        if let Ok(l) = ChunkList::from_bytes(&b) {
            prop_assert_eq!(l.to_bytes(), b);
        }
    }

    #[test]
    fn damaged_encodings_are_refused_or_canonical(
        ids in prop::collection::vec(any::<[u8; 32]>(), 1..20),
        thumb in prop::collection::vec(any::<u8>(), 0..64),
        op in any::<u8>(),
        pos in any::<usize>(),
        val in any::<u8>(),
    ) {
        let list = ChunkList::new(ids.into_iter().map(ChunkId).collect()).unwrap();
        let m = seal(1, MIN_CHUNK_SIZE, 10).manifest.with_thumbnail(thumb).unwrap();
        let mb = mutate(m.to_bytes().to_vec(), op, pos, val);
        if let Ok(read) = FileManifest::from_bytes(&mb, u64::MAX) {
            // Only an encoding that is canonical for what it decodes to is accepted.
            let again = read.to_bytes();
            prop_assert_eq!(again.as_slice(), mb.as_slice());
        }
        let lb = mutate(list.to_bytes(), op, pos, val);
        if let Ok(read) = ChunkList::from_bytes(&lb) {
            prop_assert_eq!(read.to_bytes(), lb);
            prop_assert_ne!(read.root(), list.root());
        }
    }
}
