//! `p2pool devnet`: the whole thing on one machine, for trying it out.
//!
//! Starts a throw-away regtest litecoind pair, `nodes` p2pool nodes on the regtest preset
//! (with more than one, peered on loopback so the share chain travels between them, each
//! next to one litecoind of the pair in turn), and a few CPU miners per node (one per
//! address, each with its own thread) that connect to their node's Stratum port like any
//! miner would. Then it prints what happens — shares, blocks, and who each block's coinbase
//! paid, the miners of every node — until stopped.
//!
//! With dogecoind (`--dogecoind PATH`, else `$DOGECOIND` or `dogecoind` on PATH) it also
//! starts a throw-away regtest dogecoind pair, mined past Dogecoin's AuxPoW start height,
//! and every node merge-mines it: the Dogecoin blocks found, and who their coinbases paid,
//! are printed too. Without dogecoind it says so and runs without merged mining.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use share_chain::Preset;
use thiserror::Error;
use tokio::sync::broadcast::error::RecvError;

use crate::miner::{mine, MinerConfig, MinerStats};
use crate::node::{DaemonP2p, Node, NodeConfig, NodeError, NodeEvent, NodeOptions};
use crate::regtest::{find_dogecoind, DogePair, RegtestError, RegtestPair, DOGE_AUXPOW_START};

/// How the devnet runs.
#[derive(Clone, Debug)]
pub struct DevnetConfig {
    /// Miners per node.
    pub miners: usize,
    /// p2pool nodes (peered when more than one).
    pub nodes: usize,
    /// Stop after this many blocks (None: until interrupted).
    pub blocks: Option<u64>,
    /// The dogecoind to merge-mine with.
    pub dogecoind: Dogecoind,
}

/// Which dogecoind the devnet merge-mines with, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dogecoind {
    /// This program.
    At(String),
    /// None was named and none was found: no merged mining.
    NotFound,
    /// Turned off (`--no-dogecoind`).
    Off,
}

impl Dogecoind {
    /// `$DOGECOIND`, else `dogecoind` on PATH, else [`Dogecoind::NotFound`].
    pub fn find() -> Dogecoind {
        find_dogecoind().map_or(Dogecoind::NotFound, Dogecoind::At)
    }
}

#[derive(Debug, Error)]
pub enum DevnetError {
    #[error(transparent)]
    Regtest(#[from] RegtestError),
    #[error(
        "cannot start dogecoind ({program}) for merged mining (run the devnet with \
         --no-dogecoind to go without)"
    )]
    Dogecoind {
        program: String,
        source: RegtestError,
    },
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

/// A running devnet: its nodes (dropped first), its litecoind pair, its dogecoind pair if
/// it merge-mines, and its miners, which stop when it is dropped.
pub struct Devnet {
    pub nodes: Vec<DevnetNode>,
    pub daemons: RegtestPair,
    /// The dogecoind pair every node merge-mines (None without dogecoind).
    pub doge: Option<DogePair>,
    stop: Arc<AtomicBool>,
    miners: Vec<tokio::task::JoinHandle<()>>,
}

impl Devnet {
    /// Starts the litecoind pair, the nodes (peered on loopback when more than one) and
    /// their miners, printing where everything is.
    pub async fn start(config: &DevnetConfig) -> Result<Devnet, DevnetError> {
        println!("starting a regtest litecoind pair (127.0.0.1, throw-away data directories)...");
        let daemons = RegtestPair::start().await?;
        let doge = match &config.dogecoind {
            Dogecoind::At(program) => {
                println!(
                    "starting a regtest dogecoind pair ({program}) for merged mining, and \
                     mining its first {DOGE_AUXPOW_START} blocks (Dogecoin takes AuxPoW \
                     blocks from there on)..."
                );
                let pair =
                    DogePair::start(program)
                        .await
                        .map_err(|source| DevnetError::Dogecoind {
                            program: program.clone(),
                            source,
                        })?;
                Some(pair)
            }
            Dogecoind::NotFound => {
                println!(
                    "dogecoind not found (no --dogecoind, $DOGECOIND unset, none on PATH): \
                     the devnet runs WITHOUT merged mining. To merge-mine Dogecoin, build \
                     Dogecoin Core 1.14 and pass --dogecoind PATH."
                );
                None
            }
            Dogecoind::Off => {
                println!("--no-dogecoind: the devnet runs without merged mining");
                None
            }
        };
        let preset = Preset::builtin("litecoin-regtest").expect("the regtest preset is built in");
        let mut nodes: Vec<DevnetNode> = Vec::new();
        let count = config.nodes.max(1);
        for n in 0..count {
            let datadir = tempfile::Builder::new()
                .prefix("p2pool-devnet-")
                .tempdir()?;
            let daemon = if n % 2 == 0 { &daemons.a } else { &daemons.b };
            let aux = doge.as_ref().map(|d| if n % 2 == 0 { &d.a } else { &d.b });
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
                    aux_daemons: aux.map(|d| d.rpc_config()).into_iter().collect(),
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
            if let Some(aux) = aux {
                println!(
                    "node {n}: merge-mines Dogecoin on dogecoind rpc {}",
                    aux.url()
                );
            }
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
                if doge.is_some() {
                    match dogecoin_address(&preset, &address) {
                        Some(doge_address) => println!(
                            "node {n} miner {i}: paid on Dogecoin at {doge_address} (the same key)"
                        ),
                        None => println!(
                            "node {n} miner {i}: paid no Dogecoin (a P2SH address has no \
                             Dogecoin twin; a miner names one as ADDRESS,DOGE_ADDRESS)"
                        ),
                    }
                }
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
            doge,
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

/// The Dogecoin address a miner paid at the Litecoin `address` is paid at on the preset's
/// first aux chain (the address of the same key), if it has one (P2PKH and P2WPKH do).
pub fn dogecoin_address(preset: &Preset, address: &str) -> Option<String> {
    let script = share_chain::address::address_to_script(address, &preset.coin).ok()?;
    let aux = share_chain::script::derived_aux_script(&script)?;
    share_chain::address::aux_script_to_address(&aux, preset.aux_chains.first()?)
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
    let (mut blocks, mut aux_blocks) = (0u64, 0u64);
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
                Ok(NodeEvent::AuxBlockSubmitted { chain, hash, height, accepted, result, payouts }) => {
                    let mut display = hash;
                    display.reverse();
                    println!(
                        "node {n}: {chain} BLOCK {height} {}: {result}; coinbase pays {} outputs:",
                        hex::encode(display),
                        payouts.len()
                    );
                    let unit = if chain.starts_with("dogecoin") { "DOGE" } else { "coins" };
                    for (who, amount) in payouts {
                        println!("    {:>14.8} {unit} {who}", amount as f64 / 1e8);
                    }
                    if accepted {
                        aux_blocks += 1;
                    }
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
    let merged = devnet.doge.is_some();
    devnet.stop().await;
    if merged {
        println!("devnet stopped after {blocks} blocks and {aux_blocks} Dogecoin blocks");
    } else {
        println!("devnet stopped after {blocks} blocks");
    }
    Ok(())
}
