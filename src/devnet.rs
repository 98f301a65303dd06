//! `p2pool devnet`: the whole thing on one machine, for trying it out.
//!
//! Starts a throw-away regtest litecoind pair, a p2pool node on the regtest preset, and a few
//! CPU miners (one per address, each with its own thread) that connect to the node's
//! Stratum port like any miner would. Then it prints what happens — shares, blocks, and who
//! each block's coinbase paid — until stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use share_chain::Preset;
use thiserror::Error;
use tokio::sync::broadcast::error::RecvError;

use crate::miner::{mine, MinerConfig, MinerStats};
use crate::node::{DaemonP2p, Node, NodeConfig, NodeError, NodeEvent, NodeOptions};
use crate::regtest::{RegtestError, RegtestPair};

/// How the devnet runs.
#[derive(Clone, Debug)]
pub struct DevnetConfig {
    pub miners: usize,
    /// Stop after this many blocks (None: until interrupted).
    pub blocks: Option<u64>,
}

#[derive(Debug, Error)]
pub enum DevnetError {
    #[error(transparent)]
    Regtest(#[from] RegtestError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs the devnet until `shutdown` resolves or the block count is reached.
pub async fn run(
    config: DevnetConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DevnetError> {
    println!("starting a regtest litecoind pair (127.0.0.1, throw-away data directories)...");
    let daemons = RegtestPair::start().await?;
    let preset = Preset::builtin("litecoin-regtest").expect("the regtest preset is built in");
    let datadir = tempfile::Builder::new()
        .prefix("p2pool-devnet-")
        .tempdir()?;
    let node = Node::start_with(
        NodeConfig {
            preset: preset.clone(),
            datadir: datadir.path().to_path_buf(),
            daemon: daemons.a.rpc_config(),
            stratum: "127.0.0.1:0".parse().expect("a socket address"),
            fee: None,
            p2p_listen: Vec::new(),
            peers: Vec::new(),
        },
        NodeOptions {
            api: Some("127.0.0.1:0".parse().expect("a socket address")),
            // The devnet's litecoind listens on a free port, not regtest's default.
            daemon_p2p: DaemonP2p::At(([127, 0, 0, 1], daemons.a.p2p_port).into()),
            ..NodeOptions::default()
        },
    )
    .await?;
    println!(
        "litecoind rpc {}, p2pool stratum {}, share chain in {}",
        daemons.a.url(),
        node.stratum_addr(),
        datadir.path().display()
    );
    if let Some(api) = node.api_addr() {
        println!("dashboard http://{api}/ (JSON-RPC: POST to the same URL; metrics: /metrics)");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut miners = Vec::new();
    for (i, kind) in ["bech32", "legacy", "p2sh-segwit", "bech32"]
        .iter()
        .cycle()
        .take(config.miners.max(1))
        .enumerate()
    {
        let address = daemons.new_address(kind).await?;
        println!("miner {i}: 1 CPU thread paying {address}");
        let stats = Arc::new(MinerStats::default());
        let miner = MinerConfig {
            server: node.stratum_addr(),
            username: format!("{address}.cpu{i}"),
            threads: 1,
            pow: preset.coin.pow,
            difficulty_multiplier: preset.coin.pow.stratum_difficulty_multiplier(),
        };
        let stop = stop.clone();
        miners.push(tokio::spawn(async move {
            if let Err(e) = mine(miner, stats, stop).await {
                eprintln!("miner {i} stopped: {e}");
            }
        }));
    }

    let mut events = node.subscribe();
    let mut blocks = 0u64;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            event = events.recv() => match event {
                Ok(NodeEvent::ShareAccepted { hash, height, miner }) => {
                    println!("share {height:>5} {hash} by {miner}");
                }
                Ok(NodeEvent::ShareRejected { miner, reason }) => {
                    println!("share by {miner} rejected: {reason}");
                }
                Ok(NodeEvent::BlockSubmitted { hash, height, accepted, result, payouts }) => {
                    println!("BLOCK {height} {hash}: {result}; coinbase pays {} outputs:", payouts.len());
                    for (who, amount) in payouts {
                        println!("    {:>14.8} LTC  {who}", amount as f64 / 1e8);
                    }
                    if accepted {
                        blocks += 1;
                    }
                    if config.blocks.is_some_and(|n| blocks >= n) {
                        break;
                    }
                }
                Ok(NodeEvent::DaemonState(state)) => println!("litecoind: {state:?}"),
                Ok(NodeEvent::Readiness(readiness)) => match readiness.blocker() {
                    None => println!("node ready: serving miners"),
                    Some(reason) => println!("node not ready, miners paused: {reason}"),
                },
                Err(RecvError::Lagged(n)) => println!("({n} events skipped)"),
                Err(RecvError::Closed) => break,
            },
        }
    }
    stop.store(true, Ordering::Relaxed);
    for m in miners {
        let _ = tokio::time::timeout(Duration::from_secs(5), m).await;
    }
    println!("devnet stopped after {blocks} blocks");
    Ok(())
}
