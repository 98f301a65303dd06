//! Benchmark: an empty node syncs a full mainnet-size window (8,640 shares, 1,000 miners)
//! from one peer over loopback (see BENCHMARKS.md, "Share-chain network").
//!
//! Both sides are the real node code: [`p2pool::p2p::P2p`] answering `GetTip`/`GetShares`
//! from a [`p2pool::chain_service::ChainHandle`] restored from a share store, and on the
//! other side an empty node whose catch-up fetches batches after its locator and connects
//! every share through full validation (scrypt proof of work, the coinbase rebuilt with the
//! PPLNS payouts, a `fdatasync`ed store write). Each iteration starts a fresh empty node
//! (not timed), then times from its dial to the moment its best tip is the server's.
//!
//! The second benchmark is the same for a node joining a chain its peer has pruned (the
//! case of every node that joins a network older than a day): the peer holds only the last
//! `prune_depth` shares, so the new node takes the bottom `base_len` of them as its base
//! (proof of work checked) and validates the rest in full (`docs/PROTOCOL.md` §11.1).
//!
//! `cargo bench --bench window_sync`

mod common;

use std::time::{Duration, Instant};

use common::{init_logs, load_average, mine_chain, preset, Node, WINDOW};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use share_chain::chain::ChainIndex;
use share_chain::sharechain::ShareChain;
use share_chain::Preset;

const SYNC_LIMIT: Duration = Duration::from_secs(300);

fn window_sync(c: &mut Criterion) {
    init_logs();
    let preset = preset();
    let index = mine_chain(&preset, WINDOW, 10);
    let name = format!("empty node syncs a full window ({WINDOW} shares) from one peer");
    time_syncs(c, &name, &preset, &index);
}

fn pruned_join(c: &mut Criterion) {
    init_logs();
    let preset = preset();
    let depth = ShareChain::prune_depth(&preset);
    let mut index = mine_chain(&preset, depth as usize + 200, 10);
    index.prune(depth);
    let name = format!(
        "empty node joins a pruned chain ({} shares held) from one peer",
        index.len()
    );
    time_syncs(c, &name, &preset, &index);
}

/// Serves `index` from one node and times fresh empty nodes (started untimed) from their
/// dial until their best tip is the server's: ten samples of one sync each (a sync is
/// seconds long).
fn time_syncs(c: &mut Criterion, name: &str, preset: &Preset, index: &ChainIndex) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let tip = index.best_hash().expect("a chain");
    let server = runtime.block_on(Node::start(preset, Some(index), Vec::new()));
    let server_addr = server.addr();

    let mut group = c.benchmark_group("share-chain network");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(30));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let client = Node::start(preset, None, Vec::new()).await;
                    let t0 = Instant::now();
                    client
                        .p2p
                        .handle()
                        .dial(server_addr.clone())
                        .await
                        .expect("dial starts");
                    let synced = client.wait_tip(tip, SYNC_LIMIT).await;
                    let took = t0.elapsed();
                    let held = client.chain.summary().shares;
                    assert!(
                        synced,
                        "not synced within {SYNC_LIMIT:?}: holds {held} shares"
                    );
                    eprintln!("synced {held} shares in {took:.2?}");
                    total += took;
                    client.stop().await;
                }
                total
            })
        })
    });
    group.finish();
    eprintln!("load average at the end: {}", load_average());
    runtime.block_on(server.stop());
}

criterion_group!(benches, window_sync, pruned_join);
criterion_main!(benches);
