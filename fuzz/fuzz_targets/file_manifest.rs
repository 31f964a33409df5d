//! File manifests, chunk lists and chunks. Raw bytes go to `FileManifest::from_bytes` and
//! `ChunkList::from_bytes` (accepted values re-encode identically, an accepted manifest's list
//! length and chunk lengths are consistent) and to `open_chunk`. When the first byte is odd, the
//! rest is a file (repeated up to four chunks long) sealed and opened again: it must come back
//! whole, and the same chunks with one byte flipped where the bytes say must be refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenim_crypto::CryptoError;
use tokenim_crypto::file::{
    CHUNK_TAG_LEN, ChunkList, FileKey, FileManifest, FileOpener, FileSealer, MIN_CHUNK_SIZE,
    open_chunk,
};

fn raw(data: &[u8]) {
    for max in [0, u64::MAX] {
        if let Ok(m) = FileManifest::from_bytes(data, max) {
            assert_eq!(
                m.to_bytes().as_slice(),
                data,
                "accepted manifests re-encode identically"
            );
            assert!(m.size() <= max);
            let n = m.chunk_count();
            assert_eq!(m.list_len(), n as usize * 34);
            let total: u64 = (0..n)
                .map(|i| (m.chunk_len(i).expect("within the count") - CHUNK_TAG_LEN) as u64)
                .sum();
            assert_eq!(total, m.size());
            assert!(m.chunk_len(n).is_none());
        }
    }
    if let Ok(l) = ChunkList::from_bytes(data) {
        assert_eq!(l.to_bytes(), data, "accepted lists re-encode identically");
    }
    // Made-up ciphertext never opens.
    assert!(open_chunk(&FileKey::from_bytes([3; 32]), 0, true, data).is_err());
}

fn scenario(data: &[u8]) {
    let Some((&flip, file)) = data.split_first() else {
        return;
    };
    let cs = MIN_CHUNK_SIZE as usize;
    let len = (file.len() * 97).min(4 * cs);
    let plain: Vec<u8> = file.iter().copied().cycle().take(len).collect();
    let mut s = FileSealer::with_key(MIN_CHUNK_SIZE, FileKey::from_bytes([5; 32])).expect("sealer");
    let mut chunks: Vec<Vec<u8>> = plain
        .chunks(cs)
        .map(|c| s.push(c).expect("push").1)
        .collect();
    if plain.len().is_multiple_of(cs) {
        chunks.push(s.push(&[]).expect("last").1);
    }
    let (m, l) = s.finish("fuzz.bin", "").expect("finish");
    let m = FileManifest::from_bytes(&m.to_bytes(), u64::MAX).expect("reads");
    let l = ChunkList::from_bytes(&l.to_bytes()).expect("reads");
    let mut o = FileOpener::new(&m, l.clone()).expect("opener");
    let mut out = Vec::new();
    for c in &chunks {
        out.extend(o.push(c).expect("genuine chunk"));
    }
    o.finish().expect("whole file");
    assert_eq!(out, plain);

    // One flipped byte, in the chunk and at the position the bytes choose.
    let i = usize::from(flip) % chunks.len();
    let pos = file.len().wrapping_mul(31) % chunks[i].len();
    let mut bad = chunks.clone();
    bad[i][pos] ^= flip | 1;
    let mut o = FileOpener::new(&m, l).expect("opener");
    for (j, c) in bad.iter().enumerate() {
        match o.push(c) {
            Ok(_) => assert_ne!(i, j, "a flipped chunk opened"),
            Err(CryptoError::ChunkIdMismatch { index }) => {
                assert_eq!(index as usize, i);
                return;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    panic!("the flipped chunk was never refused");
}

fuzz_target!(|data: &[u8]| {
    raw(data);
    if data.first().is_some_and(|b| b & 1 == 1) {
        scenario(&data[1..]);
    }
});
