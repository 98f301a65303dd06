//! Benchmarks of the share store: what one durable put costs with and without fdatasync, a
//! batch put, and how long a restarting node takes to read back a full PPLNS window.
//!
//! Run with `cargo bench -p share-chain --bench store`. The store lives in a temporary
//! directory on the machine's disk, so the sync numbers are the disk's fdatasync latency.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use share_chain::share::{BlockHeader, CoinbaseData, Share, ShareInfo, SHARE_VERSION};
use share_chain::store::{ShareStore, StoreOptions, StoredShare};
use share_chain::ShareHash;

/// A full PPLNS window (8,640 shares) plus margin.
const WINDOW_RECORDS: u64 = 9_000;

/// A realistic record: 22-byte P2WPKH payout script, 8-entry merkle branch, 2 uncles.
fn record(id: u64) -> StoredShare {
    let b = |salt: u64| -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&(id ^ (salt << 8) ^ (i as u64) << 56).to_le_bytes());
        }
        out
    };
    let mut uncles = vec![ShareHash(b(1)), ShareHash(b(2))];
    uncles.sort();
    let mut payout_script = vec![0x00, 0x14];
    payout_script.extend_from_slice(&b(3)[..20]);
    StoredShare {
        seq: id,
        height: id,
        chain_work: u128::from(id) << 40,
        share: Share {
            header: BlockHeader {
                version: 0x2000_0000,
                prev_block: b(4),
                merkle_root: b(5),
                time: 1_700_000_000 + (id >> 32) as u32,
                bits: 0x1e0f_fff0,
                nonce: id as u32,
            },
            info: ShareInfo {
                version: SHARE_VERSION,
                prev_share: ShareHash(b(6)),
                required_bits: 0x1e0f_fff0,
                share_target_bits: 0x1e0f_fff0,
                payout_script,
                fee: None,
                uncles,
            },
            coinbase: CoinbaseData {
                script_sig: vec![0x03, 0x10, 0x27, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8],
                value: 625_000_000,
                witness_commitment: Some(b(7)),
            },
            merkle_branch: (10..18).map(b).collect(),
        },
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
