//! Benchmarks of the share store: what one durable put costs with and without fdatasync, a
//! batch put, and how long a restarting node takes to read back a full PPLNS window.
//!
//! Run with `cargo bench -p share-chain --bench store`. The store lives in a temporary
//! directory on the machine's disk, so the sync numbers are the disk's fdatasync latency.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use share_chain::store::{ShareStore, StoreOptions, StoredShare};
use share_chain::testkit::synthetic_share;

/// A full PPLNS window (8,640 shares) plus margin.
const WINDOW_RECORDS: u64 = 9_000;

/// A realistic record: 22-byte P2WPKH payout script, 8-entry merkle branch, 2 uncles.
fn record(id: u64) -> StoredShare {
    StoredShare {
        seq: id,
        height: id,
        chain_work: u128::from(id) << 40,
        share: synthetic_share(id),
    }
}

fn open(dir: &tempfile::TempDir, sync: bool) -> ShareStore {
    ShareStore::open_with(
        dir.path(),
        &StoreOptions {
            sync,
            ..StoreOptions::default()
        },
    )
    .expect("open store")
}

fn bench_put(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    group.measurement_time(Duration::from_secs(5));
    for sync in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = open(&dir, sync);
        let mut next = 0u64;
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("put/sync={sync}"), |b| {
            b.iter_batched(
                || {
                    next += 1;
                    record(next)
                },
                |r| store.put(black_box(&r)).expect("put"),
                BatchSize::SmallInput,
            )
        });
        group.throughput(Throughput::Elements(100));
        group.bench_function(format!("put_batch_100/sync={sync}"), |b| {
            b.iter_batched(
                || {
                    let records: Vec<StoredShare> = (next..next + 100).map(record).collect();
                    next += 100;
                    records
                },
                |rs| store.put_batch(black_box(&rs)).expect("put_batch"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_load(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut store = open(&dir, false);
        let records: Vec<StoredShare> = (0..WINDOW_RECORDS).map(record).collect();
        for chunk in records.chunks(500) {
            store.put_batch(chunk).expect("fill");
        }
    }
    let mut group = c.benchmark_group("store");
    group.sample_size(20);
    group.throughput(Throughput::Elements(WINDOW_RECORDS));
    {
        let mut store = open(&dir, true);
        group.bench_function("load_all/9000", |b| {
            b.iter(|| {
                let loaded = store.load_all().expect("load");
                assert_eq!(loaded.records.len() as u64, WINDOW_RECORDS);
                loaded
            })
        });
    }
    group.bench_function("open_and_load_all/9000", |b| {
        b.iter(|| {
            let mut store = open(&dir, true);
            let loaded = store.load_all().expect("load");
            assert_eq!(loaded.records.len() as u64, WINDOW_RECORDS);
            loaded
        })
    });
    group.finish();
}

criterion_group!(benches, bench_put, bench_load);
criterion_main!(benches);
