#![allow(clippy::unwrap_used)]

use prost::Message as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest as _, Sha256};

use super::*;
use crate::pb;

const CS: u32 = MIN_CHUNK_SIZE;

fn key() -> FileKey {
    FileKey::from_bytes([7; 32])
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Seals `plain` with chunk size `cs`: manifest, list, chunks (ciphertexts).
fn seal(plain: &[u8], cs: u32) -> (FileManifest, ChunkList, Vec<Vec<u8>>) {
    let mut s = FileSealer::with_key(cs, key()).unwrap();
    let mut chunks = Vec::new();
    let mut rest = plain;
    loop {
        let n = rest.len().min(cs as usize);
        let (id, ct) = s.push(&rest[..n]).unwrap();
        assert_eq!(id, chunk_id(&ct));
        chunks.push(ct);
        rest = &rest[n..];
        if n < cs as usize {
            break;
        }
    }
    let (m, l) = s.finish("report.pdf", "application/pdf").unwrap();
    (m, l, chunks)
}

fn open(m: &FileManifest, l: &ChunkList, chunks: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut o = FileOpener::new(m, l.clone())?;
    let mut out = Vec::new();
    for c in chunks {
        out.extend(o.push(c)?);
    }
    o.finish()?;
    Ok(out)
}

/// A valid manifest's protobuf, changed by `f`, encoded.
fn changed(f: impl FnOnce(&mut pb::FileManifest)) -> Vec<u8> {
    let (m, _, _) = seal(&data(10), CS);
    let mut p = pb::FileManifest::decode(m.to_bytes().as_slice()).unwrap();
    f(&mut p);
    p.encode_to_vec()
}

#[test]
fn round_trip_and_chunk_counts() {
    for len in [
        0,
        1,
        CS as usize - 1,
        CS as usize,
        CS as usize + 1,
        3 * CS as usize,
    ] {
        let plain = data(len);
        let (m, l, chunks) = seal(&plain, CS);
        assert_eq!(m.size(), len as u64);
        assert_eq!(m.chunk_count() as usize, len / CS as usize + 1);
        assert_eq!(l.len(), chunks.len());
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(m.chunk_len(i as u32), Some(c.len()));
        }
        assert_eq!(m.chunk_len(chunks.len() as u32), None);
        // The last chunk is always short: empty when the size is a multiple of the chunk size.
        let last_plain = chunks.last().unwrap().len() - CHUNK_TAG_LEN;
        assert_eq!(last_plain, len % CS as usize);
        assert_eq!(m.sha256(), &<[u8; 32]>::from(Sha256::digest(&plain)));
        assert_eq!(m.list_len(), l.to_bytes().len());
        assert_eq!(open(&m, &l, &chunks).unwrap(), plain);
        let read = FileManifest::from_bytes(&m.to_bytes(), DEFAULT_MAX_FILE_SIZE).unwrap();
        assert_eq!(read, m);
        assert_eq!(ChunkList::from_bytes(&l.to_bytes()).unwrap(), l);
    }
}

#[test]
fn chunk_layout_is_the_documented_one() {
    // Nonce = 8 zero bytes || index (u32 BE); AAD = domain || 0 || index (u32 BE) || last.
    let k = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[7; 32]).unwrap());
    let mut buf = b"hello".to_vec();
    let mut nonce = [0u8; 12];
    nonce[8..].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    let mut aad = b"tokenim/v1/file-chunk\0".to_vec();
    aad.extend_from_slice(&[1, 2, 3, 4, 1]);
    k.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .unwrap();
    assert_eq!(
        seal_chunk(&key(), 0x0102_0304, true, b"hello").unwrap(),
        buf
    );
}

#[test]
fn chunks_open_only_at_their_index_position_and_key() {
    let c = seal_chunk(&key(), 3, false, b"chunk").unwrap();
    assert_eq!(open_chunk(&key(), 3, false, &c).unwrap(), b"chunk");
    let fail = |r: Result<Vec<u8>>, i: u32| {
        assert!(matches!(r, Err(CryptoError::ChunkDecryptFailed { index }) if index == i));
    };
    fail(open_chunk(&key(), 4, false, &c), 4);
    fail(open_chunk(&key(), 3, true, &c), 3);
    fail(open_chunk(&FileKey::from_bytes([8; 32]), 3, false, &c), 3);
    fail(open_chunk(&key(), 3, false, &c[..c.len() - 1]), 3);
    fail(open_chunk(&key(), 3, false, &[]), 3);
    assert!(matches!(
        seal_chunk(&key(), 0, true, &vec![0; MAX_CHUNK_SIZE as usize + 1]),
        Err(CryptoError::ChunkTooLong { .. })
    ));
}

#[test]
fn root_is_the_hash_of_the_prost_encoding() {
    let (_, l, _) = seal(&data(2 * CS as usize + 5), CS);
    let mut h = Sha256::new();
    h.update(b"tokenim/v1/file-chunk-list\0");
    h.update(l.to_bytes());
    assert_eq!(l.root(), <[u8; 32]>::from(h.finalize()));
    assert_eq!(l.to_bytes().len(), 3 * CHUNK_LIST_ENTRY_BYTES);
}

#[test]
fn chunk_list_decoding_is_strict() {
    let (_, l, _) = seal(&data(CS as usize), CS);
    let b = l.to_bytes();
    let malformed = |b: &[u8]| {
        assert!(
            matches!(ChunkList::from_bytes(b), Err(CryptoError::Malformed { .. })),
            "{b:?}"
        );
    };
    malformed(&[]);
    malformed(&b[..b.len() - 1]);
    // An unknown field after the ids: decodes, but is not the canonical encoding.
    let mut extra = b.clone();
    extra.extend_from_slice(&[0x10, 0x01]);
    malformed(&extra);
    // A 31-byte id.
    let short = pb::ChunkList {
        ids: vec![vec![1; 31]],
    }
    .encode_to_vec();
    malformed(&short);
    assert!(matches!(
        ChunkList::from_bytes(&vec![0; MAX_CHUNK_LIST_BYTES + 1]),
        Err(CryptoError::TooManyChunks { .. })
    ));
    assert!(ChunkList::new(Vec::new()).is_err());
}

#[test]
fn sealer_misuse() {
    assert!(matches!(
        FileSealer::new(MIN_CHUNK_SIZE - 1),
        Err(CryptoError::ChunkSize { .. })
    ));
    assert!(matches!(
        FileSealer::new(MAX_CHUNK_SIZE + 1),
        Err(CryptoError::ChunkSize { .. })
    ));
    let mut s = FileSealer::with_key(CS, key()).unwrap();
    assert!(matches!(
        s.push(&data(CS as usize + 1)),
        Err(CryptoError::ChunkTooLong { .. })
    ));
    s.push(&data(CS as usize)).unwrap();
    assert_eq!(s.size(), u64::from(CS));
    let s2 = FileSealer::with_key(CS, key()).unwrap();
    assert!(matches!(s2.finish("a", ""), Err(CryptoError::FileState(_))));
    s.push(&[]).unwrap();
    assert!(matches!(s.push(&[]), Err(CryptoError::FileState(_))));
    assert!(matches!(
        s.finish("a/b", ""),
        Err(CryptoError::FileName("path separator"))
    ));
}

#[test]
fn sealer_stops_at_max_chunks() {
    let mut s = FileSealer::with_key(CS, key()).unwrap();
    s.ids = vec![ChunkId([0; 32]); MAX_CHUNKS as usize - 1];
    // A full chunk at the last index would leave no room for the (short) last one.
    assert!(matches!(
        s.push(&data(CS as usize)),
        Err(CryptoError::TooManyChunks { .. })
    ));
    s.push(&data(5)).unwrap();
    s.size = u64::from(MAX_CHUNKS - 1) * u64::from(CS) + 5;
    let (m, l) = s.finish("big", "").unwrap();
    assert_eq!(m.chunk_count(), MAX_CHUNKS);
    assert_eq!(l.to_bytes().len(), MAX_CHUNK_LIST_BYTES);
    m.verify_list(&l).unwrap();
    assert!(FileManifest::from_bytes(&m.to_bytes(), u64::MAX).is_ok());
    assert!(matches!(
        FileManifest::from_bytes(
            &changed(|p| p.size = u64::from(MAX_CHUNKS) * u64::from(CS)),
            u64::MAX
        ),
        Err(CryptoError::TooManyChunks { .. })
    ));
}

#[test]
fn same_key_same_chunks() {
    // Retries and re-uploads of one sealing dedupe: the ids depend only on key and content.
    let (m1, l1, _) = seal(&data(CS as usize + 3), CS);
    let (m2, l2, _) = seal(&data(CS as usize + 3), CS);
    assert_eq!((m1, l1), (m2, l2));
    let a = FileSealer::new(CS).unwrap().finish("a", "");
    assert!(a.is_err());
    assert_ne!(FileKey::generate().unwrap(), FileKey::generate().unwrap());
}

#[test]
fn names() {
    for ok in [
        "a",
        "report.pdf",
        "..a",
        "a..",
        "Ünïcødé 漢字.txt",
        ".hidden",
        &"x".repeat(255),
    ] {
        check_file_name(ok).unwrap();
    }
    let bad: [(&str, &str); 11] = [
        ("", "empty"),
        (&"x".repeat(256), "longer than 255 bytes"),
        (".", "\".\" or \"..\""),
        ("..", "\".\" or \"..\""),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("/", "path separator"),
        ("a\0b", "NUL character"),
        ("a\nb", "control character"),
        ("a\u{85}b", "control character"),
        ("x\u{202E}gpj.exe", "bidirectional control character"),
    ];
    for (name, reason) in bad {
        match check_file_name(name) {
            Err(CryptoError::FileName(r)) => assert_eq!(r, reason, "{name:?}"),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    // 255 bytes of UTF-8, not 255 characters.
    assert!(check_file_name(&"é".repeat(128)).is_err());
}

#[test]
fn mimes() {
    for ok in [
        "",
        "image/jpeg",
        "text/plain; charset=utf-8",
        &"a".repeat(127),
    ] {
        check_mime(ok).unwrap();
    }
    for bad in [&"a".repeat(128), "image/jpé", "text/plain\n", "a\tb"] {
        assert!(
            matches!(check_mime(bad), Err(CryptoError::FileMime(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn manifest_decoding_checks_every_field() {
    let max = DEFAULT_MAX_FILE_SIZE;
    let err = |b: Vec<u8>| FileManifest::from_bytes(&b, max).unwrap_err();
    assert!(matches!(
        err(changed(|p| p.version = 2)),
        CryptoError::UnsupportedVersion { version: 2, .. }
    ));
    assert!(matches!(
        err(changed(|p| p.size = max + 1)),
        CryptoError::FileTooLarge { .. }
    ));
    assert!(matches!(
        err(changed(|p| p.name = "../etc/passwd".into())),
        CryptoError::FileName(_)
    ));
    assert!(matches!(
        err(changed(|p| p.name.clear())),
        CryptoError::FileName("empty")
    ));
    assert!(matches!(
        err(changed(|p| p.mime = "x".repeat(128))),
        CryptoError::FileMime(_)
    ));
    assert!(matches!(
        err(changed(|p| p.chunk_size = MIN_CHUNK_SIZE - 1)),
        CryptoError::ChunkSize { .. }
    ));
    assert!(matches!(
        err(changed(|p| p.chunk_size = MAX_CHUNK_SIZE + 1)),
        CryptoError::ChunkSize { .. }
    ));
    for f in [
        (|p: &mut pb::FileManifest| p.key.truncate(31)) as fn(&mut pb::FileManifest),
        |p| p.sha256.push(0),
        |p| p.root.clear(),
        |p| p.thumbnail = vec![1; MAX_THUMBNAIL_BYTES + 1],
    ] {
        assert!(matches!(err(changed(f)), CryptoError::Malformed { .. }));
    }
    // Non-canonical: an unknown field, a field repeated (prost keeps the last), default sent.
    let good = changed(|_| {});
    for extra in [&[0x50, 0x01][..], &[0x08, 0x01], &[0x18, 0x0a]] {
        let mut b = good.clone();
        b.extend_from_slice(extra);
        assert!(matches!(
            FileManifest::from_bytes(&b, max),
            Err(CryptoError::Malformed { .. })
        ));
    }
    assert!(matches!(
        FileManifest::from_bytes(&vec![0; MAX_MANIFEST_BYTES + 1], max),
        Err(CryptoError::Malformed { .. })
    ));
}

#[test]
fn largest_manifest_fits_its_limit_and_a_message() {
    let (m, _, _) = seal(&data(1), CS);
    let name = "é".repeat(127) + "x";
    assert_eq!(name.len(), MAX_FILE_NAME_BYTES);
    let p = pb::FileManifest {
        version: u32::MAX,
        name,
        size: u64::MAX,
        mime: "m".repeat(MAX_MIME_BYTES),
        sha256: vec![1; 32],
        root: vec![2; 32],
        key: vec![3; 32],
        chunk_size: u32::MAX,
        thumbnail: vec![4; MAX_THUMBNAIL_BYTES],
    };
    let worst = p.encode_to_vec().len();
    assert!(worst <= MAX_MANIFEST_BYTES, "{worst}");
    let thumb = m.with_thumbnail(vec![9; MAX_THUMBNAIL_BYTES]).unwrap();
    let read = FileManifest::from_bytes(&thumb.to_bytes(), DEFAULT_MAX_FILE_SIZE).unwrap();
    assert_eq!(read.thumbnail(), &[9; MAX_THUMBNAIL_BYTES][..]);
    assert!(
        read.with_thumbnail(vec![0; MAX_THUMBNAIL_BYTES + 1])
            .is_err()
    );
}

#[test]
fn verify_list_and_opener_errors() {
    let (m, l, chunks) = seal(&data(2 * CS as usize + 1), CS);
    let (_, other, _) = seal(&data(2 * CS as usize + 2), CS);
    assert!(matches!(
        m.verify_list(&other),
        Err(CryptoError::ChunkListRoot)
    ));
    let short = ChunkList::new(l.ids()[..2].to_vec()).unwrap();
    assert!(matches!(
        m.verify_list(&short),
        Err(CryptoError::ChunkCount {
            expected: 3,
            found: 2
        })
    ));
    let mut o = FileOpener::new(&m, l.clone()).unwrap();
    assert!(matches!(
        o.check(3, &chunks[0]),
        Err(CryptoError::FileState(_))
    ));
    assert!(matches!(
        o.check(2, &chunks[0]),
        Err(CryptoError::ChunkLength { index: 2, .. })
    ));
    assert!(matches!(
        o.push(&chunks[1]),
        Err(CryptoError::ChunkIdMismatch { index: 0 })
    ));
    // A failed chunk changes nothing: the right one is taken afterwards.
    assert_eq!(o.next_index(), Some(0));
    o.check(2, &chunks[2]).unwrap();
    o.push(&chunks[0]).unwrap();
    o.push(&chunks[1]).unwrap();
    let o2 = FileOpener::new(&m, l).unwrap();
    assert!(matches!(o2.finish(), Err(CryptoError::FileState(_))));
    o.push(&chunks[2]).unwrap();
    assert_eq!(o.next_index(), None);
    assert!(matches!(o.push(&chunks[2]), Err(CryptoError::FileState(_))));
    o.finish().unwrap();
}

#[test]
fn opener_checks_size_and_hash() {
    // A manifest whose sha256 is not its content's (its sender made it so): caught at finish.
    let (m, l, chunks) = seal(&data(100), CS);
    let lie = FileManifest::from_bytes(
        &changed(|p| {
            p.sha256 = vec![0; 32];
            p.size = 100;
            p.root = l.root().to_vec();
        }),
        DEFAULT_MAX_FILE_SIZE,
    )
    .unwrap();
    assert!(matches!(
        open(&lie, &l, &chunks),
        Err(CryptoError::FileHashMismatch)
    ));
    assert_eq!(open(&m, &l, &chunks).unwrap(), data(100));
}

#[test]
fn debug_hides_key_and_name() {
    let (m, l, _) = seal(&data(10), CS);
    let o = FileOpener::new(&m, l.clone()).unwrap();
    let s = FileSealer::with_key(CS, key()).unwrap();
    let out = format!("{m:?} {l:?} {o:?} {s:?} {:?}", key());
    assert!(!out.contains("0707") && !out.contains("7, 7, 7"), "{out}");
    assert!(!out.contains("report") && !out.contains("pdf"), "{out}");
}
