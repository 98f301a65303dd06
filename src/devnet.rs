//! `p2pool devnet`: the whole thing on one machine, for trying it out.
//!
//! Starts a throw-away regtest litecoind pair, `nodes` p2pool nodes on the regtest preset
//! (with more than one, peered on loopback so the share chain travels between them, each
//! next to one litecoind of the pair in turn), and a few CPU miners per node (one per
//! address, each with its own thread) that connect to their node's Stratum port like any
//! miner would. Then it prints what happens — shares, blocks, and who each block's coinbase
//! paid, the miners of every node — until stopped.

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
    /// Miners per node.
    pub miners: usize,
    /// p2pool nodes (peered when more than one).
    pub nodes: usize,
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

/// One node of a running devnet.
pub struct DevnetNode {
    pub node: Node,
    /// The payout address of each of its CPU miners.
    pub miners: Vec<String>,
    _datadir: tempfile::TempDir,
}

/// A running devnet: its nodes (dropped first), its litecoind pair and its miners, which
/// stop when it is dropped.
pub struct Devnet {
    pub nodes: Vec<DevnetNode>,
    pub daemons: RegtestPair,
    stop: Arc<AtomicBool>,
    miners: Vec<tokio::task::JoinHandle<()>>,
}

impl Devnet {
    /// Starts the litecoind pair, the nodes (peered on loopback when more than one) and
    /// their miners, printing where everything is.
    pub async fn start(config: &DevnetConfig) -> Result<Devnet, DevnetError> {
        println!("starting a regtest litecoind pair (127.0.0.1, throw-away data directories)...");
        let daemons = RegtestPair::start().await?;
        let preset = Preset::builtin("litecoin-regtest").expect("the regtest preset is built in");
        let mut nodes: Vec<DevnetNode> = Vec::new();
        let count = config.nodes.max(1);
        for n in 0..count {
            let datadir = tempfile::Builder::new()
                .prefix("p2pool-devnet-")
                .tempdir()?;
            let daemon = if n % 2 == 0 { &daemons.a } else { &daemons.b };
            let (p2p_listen, peers) = if count == 1 {
                (Vec::new(), Vec::new())
            } else {
                let listen = "/ip4/127.0.0.1/tcp/0".parse().expect("a multiaddr");
                let peers = nodes
                    .first()
                    .and_then(|first| first.node.p2p.as_ref())
                    .map(|p| p.listen_addrs())
                    .unwrap_or_default();
                (vec![listen], peers)
            };
            let node = Node::start_with(
                NodeConfig {
                    preset: preset.clone(),
                    datadir: datadir.path().to_path_buf(),
                    daemon: daemon.rpc_config(),
                    stratum: "127.0.0.1:0".parse().expect("a socket address"),
                    fee: None,
                    p2p_listen,
                    peers,
                },
                NodeOptions {
                    api: Some("127.0.0.1:0".parse().expect("a socket address")),
                    // The devnet's litecoind listens on a free port, not regtest's default.
                    daemon_p2p: DaemonP2p::At(([127, 0, 0, 1], daemon.p2p_port).into()),
                    ..NodeOptions::default()
                },
            )
            .await?;
            println!(
                "node {n}: litecoind rpc {}, p2pool stratum {}, share chain in {}",
                daemon.url(),
                node.stratum_addr(),
                datadir.path().display()
            );
            if let Some(api) = node.api_addr() {
                println!(
                    "node {n}: dashboard http://{api}/ (JSON-RPC: POST to the same URL; metrics: /metrics)"
                );
            }
            nodes.push(DevnetNode {
                node,
                miners: Vec::new(),
                _datadir: datadir,
            });
        }

        let stop = Arc::new(AtomicBool::new(false));
        let mut miners = Vec::new();
        let kinds = ["bech32", "legacy", "p2sh-segwit", "bech32"];
        let per_node = config.miners.max(1);
        for (n, devnet_node) in nodes.iter_mut().enumerate() {
            for i in 0..per_node {
                let kind = kinds[(n * per_node + i) % kinds.len()];
                let address = daemons.new_address(kind).await?;
                println!("node {n} miner {i}: 1 CPU thread paying {address}");
                let stats = Arc::new(MinerStats::default());
                let miner = MinerConfig {
                    server: devnet_node.node.stratum_addr(),
                    username: format!("{address}.n{n}cpu{i}"),
                    threads: 1,
                    pow: preset.coin.pow,
                    difficulty_multiplier: preset.coin.pow.stratum_difficulty_multiplier(),
                };
                devnet_node.miners.push(address);
                let stop = stop.clone();
                miners.push(tokio::spawn(async move {
                    if let Err(e) = mine(miner, stats, stop).await {
                        eprintln!("node {n} miner {i} stopped: {e}");
                    }
                }));
            }
        }
        Ok(Devnet {
            nodes,
            daemons,
            stop,
            miners,
        })
    }

    /// Stops the miners (waiting up to 5 s for each), then everything else.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for m in std::mem::take(&mut self.miners) {
            let _ = tokio::time::timeout(Duration::from_secs(5), m).await;
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs the devnet until `shutdown` resolves or the block count is reached.
pub async fn run(
    config: DevnetConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DevnetError> {
    let devnet = Devnet::start(&config).await?;

    // Every node's events, tagged with the node.
    let (tagged_tx, mut tagged) = tokio::sync::mpsc::unbounded_channel();
    let mut forwarders = Vec::new();
    for (n, devnet_node) in devnet.nodes.iter().enumerate() {
        let mut events = devnet_node.node.subscribe();
        let tx = tagged_tx.clone();
        forwarders.push(tokio::spawn(async move {
            loop {
                let event = events.recv().await;
                let closed = matches!(event, Err(RecvError::Closed));
                if tx.send((n, event)).is_err() || closed {
                    return;
                }
            }
        }));
    }
    drop(tagged_tx);
    let mut blocks = 0u64;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            tagged_event = tagged.recv() => {
                let Some((n, event)) = tagged_event else { break };
                match event {
                Ok(NodeEvent::ShareAccepted { hash, height, miner }) => {
                    println!("node {n}: share {height:>5} {hash} by {miner}");
                }
                Ok(NodeEvent::ShareRejected { miner, reason }) => {
                    println!("node {n}: share by {miner} rejected: {reason}");
                }
                Ok(NodeEvent::BlockSubmitted { hash, height, accepted, result, payouts }) => {
                    println!("node {n}: BLOCK {height} {hash}: {result}; coinbase pays {} outputs:", payouts.len());
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
                Ok(NodeEvent::AuxBlockSubmitted { chain, height, result, payouts, .. }) => {
                    println!("node {n}: AUX BLOCK {chain} {height}: {result}; coinbase pays {} outputs", payouts.len());
                }
                Ok(NodeEvent::DaemonState(state)) => println!("node {n}: litecoind: {state:?}"),
                Ok(NodeEvent::Readiness(readiness)) => match readiness.blocker() {
                    None => println!("node {n}: ready, serving miners"),
                    Some(reason) => println!("node {n}: not ready, miners paused: {reason}"),
                },
                Err(RecvError::Lagged(skipped)) => println!("node {n}: ({skipped} events skipped)"),
                Err(RecvError::Closed) => break,
                }
            },
        }
    }
    for f in forwarders {
        f.abort();
    }
    devnet.stop().await;
    println!("devnet stopped after {blocks} blocks");
    Ok(())
}
