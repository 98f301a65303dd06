//! Benchmarks of the consensus core at a full window (see BENCHMARKS.md).
//!
//! The chain is mined for real through the same template code a node uses. Proof of work
//! is excluded from the connect figure by switching the preset to sha256d (one double
//! SHA-256, well under a microsecond), so what is measured is validation, the coinbase
//! rebuild and the index update.

use criterion::{criterion_group, criterion_main, Criterion};
use share_chain::chain::ChainIndex;
use share_chain::locator::{locator, shares_after};
use share_chain::params::PowAlgorithm;
use share_chain::pow::pow_hash;
use share_chain::sharechain::ShareChain;
use share_chain::template::BlockContext;
use share_chain::testkit::{
    block_context, grow_chain, mine_share, mine_share_on_block, miner, regtest_preset,
};

/// The testkit's block (which merge-mines a Dogecoin block) without its aux block.
fn without_aux(value: u64) -> BlockContext {
    BlockContext {
        aux: Vec::new(),
        ..block_context(value)
    }
}

const T0: u32 = 1_700_000_000;
const WINDOW: usize = 8640;

fn full_window(miners: u32) -> ChainIndex {
    let preset = regtest_preset(&format!(
        "[coin]\npow = \"sha256d\"\n[consensus]\nwindow_shares = {WINDOW}\nshare_period_secs = 15\n"
    ));
    let mut index = ChainIndex::new(&preset);
    grow_chain(&mut index, WINDOW + 10, miners, T0);
    index
}

fn connect(c: &mut Criterion) {
    let mut index = full_window(1000);
    let now = u64::from(T0) + 10_000_000;
    let parent = index.best_hash();
    let share = mine_share(
        &mut index,
        parent,
        &miner(5),
        T0 + 15 * (WINDOW as u32 + 20),
    );
    c.bench_function(
        "validate share, full window (8640 shares, 1000 miners)",
        |b| b.iter(|| index.validate(&share, now).expect("valid")),
    );
    // What merged mining adds: the same share without its Dogecoin block (its coinbase still
    // carries the empty commitment every share carries).
    let plain = mine_share_on_block(
        &mut index,
        parent,
        &miner(5),
        T0 + 15 * (WINDOW as u32 + 20),
        without_aux(50_0000_0000),
    );
    assert!(plain.merged_mining.blocks.is_empty() && !share.merged_mining.blocks.is_empty());
    c.bench_function(
        "validate share without aux block, full window (8640 shares, 1000 miners)",
        |b| b.iter(|| index.validate(&plain, now).expect("valid")),
    );
    // Steady state: a run of new shares connected one after another on the best tip, as
    // a node does. Each run starts from a fresh copy of the full window (copy not timed).
    let mut scratch = index.clone();
    let run = grow_chain(&mut scratch, 200, 1000, T0 + 15 * (WINDOW as u32 + 20));
    c.bench_function(
        "connect share, full window (8640 shares, 1000 miners)",
        |b| {
            b.iter_custom(|iters| {
                let mut elapsed = std::time::Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let mut idx = index.clone();
                    let n = left.min(run.len());
                    let start = std::time::Instant::now();
                    for s in &run[..n] {
                        idx.connect(s.clone(), now).expect("valid");
                    }
                    elapsed += start.elapsed();
                    left -= n;
                }
                elapsed
            })
        },
    );
}

fn payouts(c: &mut Criterion) {
    let mut index = full_window(1000);
    let context = block_context(625_000_000);
    c.bench_function(
        "next share template + payouts, 1000 miners in window",
        |b| {
            b.iter(|| {
                index
                    .share_template(&miner(5), context.clone())
                    .expect("template")
            })
        },
    );
    let t = index.share_template(&miner(5), context).expect("template");
    assert!(t.payouts.len() > 150, "{} payouts", t.payouts.len());
    assert_eq!(t.aux_payouts.len(), 1);
    let plain = without_aux(625_000_000);
    c.bench_function(
        "next share template + payouts without aux block, 1000 miners in window",
        |b| {
            b.iter(|| {
                index
                    .share_template(&miner(5), plain.clone())
                    .expect("template")
            })
        },
    );
}

fn cold_start(c: &mut Criterion) {
    let preset = regtest_preset(&format!(
        "[coin]\npow = \"sha256d\"\n[consensus]\nwindow_shares = {WINDOW}\nshare_period_secs = 15\n"
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut chain, _) = ShareChain::open(dir.path(), &preset).expect("open");
        let mut scratch = ChainIndex::new(&preset);
        let shares = grow_chain(&mut scratch, WINDOW + 100, 1000, T0);
        for s in shares {
            chain
                .connect(s, u64::from(T0) + 10_000_000)
                .expect("connect");
        }
    }
    let mut group = c.benchmark_group("cold start");
    group.sample_size(10);
    group.bench_function("open store + restore a full window (8740 shares)", |b| {
        b.iter(|| {
            let (chain, report) = ShareChain::open(dir.path(), &preset).expect("open");
            assert!(report.loaded >= WINDOW);
            chain
        })
    });
    group.finish();
}

/// Sync answers at a full window: a hostile `GetShares` whose 64 locator hashes all lie
/// near the bottom of the chain (each used to cost a walk from the tip), and building our
/// own locator. Answered from the height index, both cost lookups, not walks.
fn sync_answers(c: &mut Criterion) {
    let index = full_window(10);
    let best = index.best().expect("a chain");
    let deep: Vec<_> = (0..64)
        .map(|i| {
            let mut h = share_chain::ShareHash([0x42; 32]);
            h.0[0] = i;
            h
        })
        .chain(index.best_at(best.height - 8600))
        .collect();
    assert_eq!(shares_after(&index, &deep, None, 100).len(), 100);
    c.bench_function(
        "shares_after: 64 unknown + 1 deep locator hash, 100 shares (8650-share chain)",
        |b| b.iter(|| shares_after(&index, &deep, None, 100)),
    );
    let on_chain: Vec<_> = (0..64)
        .filter_map(|i| index.best_at(best.height - 8000 - i))
        .collect();
    c.bench_function(
        "shares_after: 64 locator hashes 8000 deep, 100 shares (8650-share chain)",
        |b| b.iter(|| shares_after(&index, &on_chain, None, 100)),
    );
    c.bench_function("locator(64), 8650-share chain", |b| {
        b.iter(|| locator(&index, 64))
    });
}

fn scrypt(c: &mut Criterion) {
    let mut header = [0u8; 80];
    c.bench_function("scrypt(1024,1,1) header hash", |b| {
        b.iter(|| {
            header[76] = header[76].wrapping_add(1);
            pow_hash(PowAlgorithm::Scrypt, &header)
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = connect, payouts, cold_start, sync_answers, scrypt
}
criterion_main!(benches);
