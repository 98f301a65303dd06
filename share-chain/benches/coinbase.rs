//! Cost of building a share's coinbase and hashing it, at the payout counts a large pool
//! reaches (200 is the preset's `max_payout_outputs`; 1000 is headroom). Every share a node
//! receives is checked by rebuilding its coinbase, so this bounds share validation.
//!
//! Run: `cargo bench -p share-chain --bench coinbase`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use share_chain::coinbase::{build_coinbase, coinbase_script_sig, Payout};
use share_chain::CoinbaseData;

fn payouts(n: u32) -> Vec<Payout> {
    (0..n)
        .map(|i| {
            // A P2WPKH script with a distinct program per output.
            let mut script = vec![0x00, 0x14];
            script.extend_from_slice(&[0x5a; 16]);
            script.extend_from_slice(&i.to_le_bytes());
            Payout {
                script,
                amount: 100_000 + u64::from(i),
            }
        })
        .collect()
}

fn bench_build_and_txid(c: &mut Criterion) {
    let data = CoinbaseData {
        script_sig: coinbase_script_sig(2_800_000, &[0; 44], b"/p2pool-rs/", &[0; 8]),
        value: 625_000_000,
        witness_commitment: Some([7; 32]),
    };
    let mut group = c.benchmark_group("build_coinbase+txid");
    for n in [200u32, 1000] {
        let outs = payouts(n);
        group.throughput(Throughput::Elements(u64::from(n)));
        group.bench_with_input(BenchmarkId::from_parameter(n), &outs, |b, outs| {
            b.iter(|| {
                let cb = build_coinbase(black_box(&data), black_box(outs), &[9; 32]);
                black_box(cb.txid())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_build_and_txid);
criterion_main!(benches);
