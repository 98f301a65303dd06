//! litecoind restarts while the pool mines: the node must notice, stop claiming blocks,
//! and carry on by itself once litecoind is back, with neither the node nor the miner
//! restarted.
//!
//! A real node on a regtest litecoind pair and one real CPU miner (`p2pool::miner`) over
//! Stratum. Node A (the one the pool talks to) is stopped cleanly and started again on the
//! same data directory and ports; node B, started with `-connect` to A, reconnects by
//! itself (A serves no template without a peer).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pool::daemon::DaemonState;
use p2pool::miner::{mine, MinerConfig, MinerStats};
use p2pool::node::{Node, NodeConfig, NodeEvent};
use p2pool::regtest::RegtestPair;
use serde_json::{json, Value};
use share_chain::Preset;
use tokio::sync::broadcast::{self, error::RecvError};

/// Every wait is bounded by this.
const WAIT: Duration = Duration::from_secs(30);

/// Waits for the first event `pick` maps to `Some`; every event seen on the way goes to
/// `seen` (so the caller can check what happened meanwhile).
async fn wait_for<T>(
    events: &mut broadcast::Receiver<NodeEvent>,
    seen: &mut Vec<NodeEvent>,
    what: &str,
    mut pick: impl FnMut(&NodeEvent) -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        let left = WAIT.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(event)) => {
                let picked = pick(&event);
                seen.push(event);
                if let Some(t) = picked {
                    return t;
                }
            }
            Ok(Err(RecvError::Lagged(n))) => panic!("missed {n} node events"),
            Ok(Err(RecvError::Closed)) => panic!("the node stopped"),
            Err(_) => panic!("no {what} within {WAIT:?}; events meanwhile: {seen:?}"),
        }
    }
}

fn accepted_block(event: &NodeEvent) -> Option<u32> {
    match event {
        NodeEvent::BlockSubmitted {
            accepted: true,
            height,
            ..
        } => Some(*height),
        _ => None,
    }
}

fn state(wanted: DaemonState) -> impl FnMut(&NodeEvent) -> Option<()> {
    move |event| match event {
        NodeEvent::DaemonState(s) if *s == wanted => Some(()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litecoind_restart_while_mining() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    let mut daemons = RegtestPair::start().await.expect("litecoind pair");
    let preset = Preset::builtin("litecoin-regtest").unwrap();
    let datadir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeConfig {
        preset: preset.clone(),
        datadir: datadir.path().to_path_buf(),
        daemon: daemons.a.rpc_config(),
        stratum: "127.0.0.1:0".parse().unwrap(),
        fee: None,
        p2p_listen: Vec::new(),
        peers: Vec::new(),
    })
    .await
    .expect("node starts");
    let mut events = node.subscribe();
    let address = daemons.new_address("bech32").await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(MinerStats::default());
    let miner = tokio::spawn(mine(
        MinerConfig {
            server: node.stratum_addr(),
            username: format!("{address}.cpu"),
            threads: 1,
            pow: preset.coin.pow,
            difficulty_multiplier: preset.coin.stratum_difficulty_multiplier,
        },
        stats.clone(),
        stop.clone(),
    ));

    // Mining works: litecoind accepts the pool's blocks.
    let mut seen = Vec::new();
    let first = wait_for(&mut events, &mut seen, "accepted block", accepted_block).await;
    let height_before = daemons.block_count().await.unwrap();
    assert!(u64::from(first) <= height_before);

    // litecoind goes away: the node says so. Events already queued happened before.
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    daemons.a.stop(WAIT).await.expect("stop litecoind A");
    let stopped_at = Instant::now();
    // Blocks submitted while litecoind was shutting down may or may not have made it; those
    // that claim to have are checked against litecoind once it is back.
    let mut stopping = Vec::new();
    wait_for(
        &mut events,
        &mut stopping,
        "Unreachable state",
        state(DaemonState::Unreachable),
    )
    .await;
    let noticed = stopped_at.elapsed();

    // The miner keeps hashing on the last job meanwhile, and the node submits what it
    // finds: wait for one such block, so the check below is never vacuous.
    let mut outage = Vec::new();
    wait_for(
        &mut events,
        &mut outage,
        "block submitted during the outage",
        |e| matches!(e, NodeEvent::BlockSubmitted { .. }).then_some(()),
    )
    .await;

    // litecoind comes back on the same data directory and ports. (Events from here on may
    // be blocks litecoind really accepted, even before the node calls it ready again.)
    while let Ok(event) = events.try_recv() {
        outage.push(event);
    }
    daemons.a.restart().await.expect("restart litecoind A");
    daemons
        .wait_connected(WAIT)
        .await
        .expect("node B reconnects to A");
    let mut after = Vec::new();
    wait_for(
        &mut events,
        &mut after,
        "Ready state",
        state(DaemonState::Ready),
    )
    .await;

    // Nothing submitted while litecoind was down claims to be accepted.
    for event in &outage {
        assert!(
            accepted_block(event).is_none(),
            "a block was accepted while litecoind was down: {event:?}"
        );
    }
    let refused = outage
        .iter()
        .filter(|e| {
            matches!(
                e,
                NodeEvent::BlockSubmitted {
                    accepted: false,
                    ..
                }
            )
        })
        .count();

    // The node, the miner and litecoind carry on: new blocks on top of the old tip.
    let next = wait_for(&mut events, &mut after, "accepted block", accepted_block).await;
    assert!(
        u64::from(next) > height_before,
        "block {next} builds on the chain from before the restart ({height_before})"
    );
    let height_after = daemons.block_count().await.unwrap();
    assert!(height_after > height_before);
    assert!(!miner.is_finished(), "the miner never lost its connection");

    // Every block the node called accepted, before, during or after the restart, is on
    // litecoind's chain.
    for event in seen.iter().chain(&stopping).chain(&after) {
        if let NodeEvent::BlockSubmitted {
            hash,
            accepted: true,
            ..
        } = event
        {
            let block: Result<Value, _> = daemons
                .client()
                .call("getblockheader", vec![json!(hash.to_string())])
                .await;
            let block = block.unwrap_or_else(|e| panic!("block {hash} claimed accepted: {e}"));
            assert!(
                block["confirmations"].as_i64().unwrap_or(0) >= 1,
                "block {hash} claimed accepted is not on the main chain: {block}"
            );
        }
    }

    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(5), miner).await;
    println!(
        "node_restart: {:?} in all; Unreachable noticed {noticed:?} after stop; \
         {refused} block submissions refused during \
         the outage; height {height_before} -> {height_after}",
        started.elapsed()
    );
}
