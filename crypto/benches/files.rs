//! File encryption throughput per chunk size: `cargo bench -p tokenim-crypto --bench files`.
//! The numbers and the chunk size chosen from them are in the module docs of
//! `tokenim_crypto::file`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest as _, Sha256};
use tokenim_crypto::file::{ChunkList, FileKey, FileManifest, FileOpener, FileSealer};

/// One file per iteration: big enough for 4 chunks of the largest size.
const FILE: usize = 4 * 1024 * 1024;
const CHUNK_SIZES: [u32; 3] = [64 * 1024, 256 * 1024, 1024 * 1024];

fn seal(plain: &[u8], cs: u32) -> (FileManifest, ChunkList, Vec<Vec<u8>>) {
    let mut s = FileSealer::with_key(cs, FileKey::from_bytes([7; 32])).unwrap();
    let mut chunks: Vec<Vec<u8>> = plain
        .chunks(cs as usize)
        .map(|c| s.push(c).unwrap().1)
        .collect();
    chunks.push(s.push(&[]).unwrap().1);
    let (m, l) = s.finish("bench.bin", "").unwrap();
    (m, l, chunks)
}

fn files(c: &mut Criterion) {
    let plain: Vec<u8> = (0..FILE).map(|i| (i % 251) as u8).collect();
    let mut g = c.benchmark_group("file");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::BytesDecimal(FILE as u64));
    for cs in CHUNK_SIZES {
        let kib = cs / 1024;
        // Sender: encrypt, id each chunk, hash the plaintext (what FileSealer::push does).
        g.bench_with_input(
            BenchmarkId::new("seal+id", format!("{kib}KiB")),
            &cs,
            |b, &cs| b.iter(|| black_box(seal(black_box(&plain), cs))),
        );
        // Recipient: check each id, decrypt, hash the plaintext, compare at the end.
        let (m, l, chunks) = seal(&plain, cs);
        g.bench_with_input(
            BenchmarkId::new("open+verify", format!("{kib}KiB")),
            &cs,
            |b, _| {
                b.iter(|| {
                    let mut o = FileOpener::new(&m, l.clone()).unwrap();
                    for ch in &chunks {
                        black_box(o.push(black_box(ch)).unwrap());
                    }
                    o.finish().unwrap();
                })
            },
        );
    }
    g.finish();

    // The floors: each primitive alone over one 256 KiB chunk (seal+id runs AEAD + 2 hashes).
    let chunk = &plain[..256 * 1024];
    let mut g = c.benchmark_group("floor 256KiB");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::BytesDecimal(chunk.len() as u64));
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &[9; 32]).unwrap(),
    );
    let mut buf = chunk.to_vec();
    g.bench_function("ring chacha20poly1305", |b| {
        b.iter(|| {
            let nonce = ring::aead::Nonce::assume_unique_for_key([0; 12]);
            key.seal_in_place_separate_tag(nonce, ring::aead::Aad::empty(), &mut buf)
                .unwrap()
        })
    });
    g.bench_function("sha2 sha256", |b| {
        b.iter(|| black_box(Sha256::digest(black_box(chunk))))
    });
    g.bench_function("ring sha256", |b| {
        b.iter(|| {
            black_box(ring::digest::digest(
                &ring::digest::SHA256,
                black_box(chunk),
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, files);
criterion_main!(benches);
