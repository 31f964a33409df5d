//! Mailbox benchmarks on RocksDB: put of 1 KiB envelopes, and page queries (100 envelopes
//! after a random cursor) among 1M stored. Besides criterion's estimates, prints p50/p99 of
//! individually timed operations. Targets: put >= 100k/s, page p99 <= 2 ms.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use tokenim_store::{Backend, Batch, Cf, RocksBackend, Store, StoreOptions};

const NOW: u64 = 1_000_000;
const TTL: u64 = 86_400;
const PAGE_STORED: u64 = 1_000_000;

fn unlimited() -> StoreOptions {
    StoreOptions {
        mailbox_max_messages: u64::MAX,
        mailbox_max_bytes: u64::MAX,
        total_max_bytes: u64::MAX,
        ..StoreOptions::default()
    }
}

fn id(n: u64, salt: u8) -> [u8; 32] {
    let mut id = [salt; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    let total: Duration = samples.iter().sum();
    println!(
        "{name}: n={} p50={:?} p99={:?} p99.9={:?} max={:?} throughput={:.0}/s",
        samples.len(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0),
        samples.len() as f64 / total.as_secs_f64()
    );
}

/// A fresh store with `mailboxes` registered: each variant starts from an empty database so
/// that one variant's compaction debt does not slow the next.
fn fresh_store(mailboxes: u64) -> (tempfile::TempDir, Store, Vec<[u8; 32]>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), unlimited()).expect("open");
    let ids: Vec<[u8; 32]> = (0..mailboxes).map(|m| id(m, 0xbb)).collect();
    for mb in &ids {
        store.mailbox_register(mb, NOW).expect("register");
    }
    (dir, store, ids)
}

fn mailbox_put(c: &mut Criterion) {
    let envelope = vec![0xa5u8; 1024];

    // Individually timed puts, for percentiles and plain throughput.
    {
        let (_dir, store, mailboxes) = fresh_store(1);
        let mut samples = Vec::with_capacity(300_000);
        let start = Instant::now();
        for n in 0..300_000 {
            let t = Instant::now();
            store
                .mailbox_put(&mailboxes[0], &id(n, 1), &envelope, NOW, TTL)
                .expect("put");
            samples.push(t.elapsed());
        }
        let wall = start.elapsed();
        report("mailbox_put 1KiB, one mailbox, timed singly", samples);
        println!(
            "mailbox_put 1KiB, one mailbox: wall-clock {:.0}/s",
            300_000.0 / wall.as_secs_f64()
        );
    }
    {
        let (_dir, store, mailboxes) = fresh_store(1000);
        let mut samples = Vec::with_capacity(300_000);
        let mut rng = StdRng::seed_from_u64(7);
        for n in 0..300_000 {
            let mb = &mailboxes[rng.random_range(0..mailboxes.len())];
            let t = Instant::now();
            store
                .mailbox_put(mb, &id(n, 1), &envelope, NOW, TTL)
                .expect("put");
            samples.push(t.elapsed());
        }
        report("mailbox_put 1KiB, 1000 mailboxes, timed singly", samples);
    }
    {
        // Concurrent callers (4 threads), as a relay receiving from many peers.
        let (_dir, store, mailboxes) = fresh_store(1000);
        const PER_THREAD: u64 = 75_000;
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (store, mailboxes, envelope) = (&store, &mailboxes, &envelope);
                s.spawn(move || {
                    for n in 0..PER_THREAD {
                        let k = t * PER_THREAD + n;
                        let mb = &mailboxes[(k % 1000) as usize];
                        store
                            .mailbox_put(mb, &id(k, 1), envelope, NOW, TTL)
                            .expect("put");
                    }
                });
            }
        });
        println!(
            "mailbox_put 1KiB, 1000 mailboxes, 4 threads: wall-clock {:.0}/s",
            (4 * PER_THREAD) as f64 / start.elapsed().as_secs_f64()
        );
    }

    let mut group = c.benchmark_group("mailbox_put");
    group.throughput(Throughput::Elements(1));
    {
        let (_dir, store, mailboxes) = fresh_store(1);
        let mut n = 0u64;
        group.bench_function("1KiB_one_mailbox", |b| {
            b.iter(|| {
                n += 1;
                black_box(
                    store
                        .mailbox_put(&mailboxes[0], &id(n, 1), &envelope, NOW, TTL)
                        .expect("put"),
                )
            })
        });
        group.bench_function("1KiB_duplicate", |b| {
            b.iter(|| {
                black_box(
                    store
                        .mailbox_put(&mailboxes[0], &id(1, 1), &envelope, NOW, TTL)
                        .expect("put"),
                )
            })
        });
    }
    {
        let (_dir, store, mailboxes) = fresh_store(1000);
        let mut n = 0u64;
        group.bench_function("1KiB_1000_mailboxes", |b| {
            b.iter(|| {
                n += 1;
                let mb = &mailboxes[(n % 1000) as usize];
                black_box(
                    store
                        .mailbox_put(mb, &id(n, 2), &envelope, NOW, TTL)
                        .expect("put"),
                )
            })
        });
    }
    {
        let (_dir, store, mailboxes) = fresh_store(1);
        let mut n = 0u64;
        group.throughput(Throughput::Elements(100));
        group.bench_function("1KiB_batch_of_100", |b| {
            b.iter(|| {
                let ids: Vec<[u8; 32]> = (0..100)
                    .map(|_| {
                        n += 1;
                        id(n, 3)
                    })
                    .collect();
                let items: Vec<(&[u8; 32], &[u8])> =
                    ids.iter().map(|i| (i, &envelope[..])).collect();
                black_box(
                    store
                        .mailbox_put_many(&mailboxes[0], &items, NOW, TTL)
                        .expect("put"),
                )
            })
        });
    }
    group.finish();
}

fn mailbox_page(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), unlimited()).expect("open");
    let mb = id(0, 0xcc);
    store.mailbox_register(&mb, NOW).expect("register");
    let envelope = vec![0x3cu8; 1024];
    let build = Instant::now();
    let mut n = 0u64;
    while n < PAGE_STORED {
        let ids: Vec<[u8; 32]> = (0..1000)
            .map(|_| {
                n += 1;
                id(n, 4)
            })
            .collect();
        let items: Vec<(&[u8; 32], &[u8])> = ids.iter().map(|i| (i, &envelope[..])).collect();
        store.mailbox_put_many(&mb, &items, NOW, TTL).expect("put");
    }
    store.flush().expect("flush");
    println!(
        "built {PAGE_STORED} envelopes of 1 KiB in {:?} ({:.0}/s batched by 1000); disk {} MiB",
        build.elapsed(),
        PAGE_STORED as f64 / build.elapsed().as_secs_f64(),
        store.disk_usage().expect("disk usage") >> 20
    );

    let mut rng = StdRng::seed_from_u64(42);
    let mut samples = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let after = rng.random_range(0..PAGE_STORED - 100);
        let t = Instant::now();
        let page = store.mailbox_page(&mb, Some(after), 100).expect("page");
        samples.push(t.elapsed());
        assert_eq!(page.len(), 100);
    }
    report(
        "mailbox_page 100 of 1M (random cursor, timed singly)",
        samples,
    );

    let mut group = c.benchmark_group("mailbox_page");
    group.throughput(Throughput::Elements(1));
    group.bench_function("100_after_cursor_of_1M", |b| {
        b.iter(|| {
            let after = rng.random_range(0..PAGE_STORED - 100);
            black_box(store.mailbox_page(&mb, Some(after), 100).expect("page"))
        })
    });
    group.finish();
}

/// What RocksDB itself costs here: one 1 KiB put per write, and a get that misses (the
/// dedupe check of every fresh envelope).
fn rocksdb_baseline(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = RocksBackend::open(dir.path(), false).expect("open");
    let value = vec![0x11u8; 1024];
    let mut n = 0u64;
    let mut group = c.benchmark_group("rocksdb_baseline");
    group.throughput(Throughput::Elements(1));
    group.bench_function("put_1KiB", |b| {
        b.iter(|| {
            n += 1;
            let mut batch = Batch::new();
            batch.put(Cf::Mailboxes, id(n, 5).to_vec(), value.clone());
            backend.write(batch).expect("write")
        })
    });
    group.bench_function("get_miss", |b| {
        b.iter(|| {
            n += 1;
            black_box(backend.get(Cf::Mailboxes, &id(n, 6)).expect("get"))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    targets = rocksdb_baseline, mailbox_put, mailbox_page
}
criterion_main!(benches);
