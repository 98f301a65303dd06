//! The node: the daemon watcher, the share chain and the Stratum server, wired together.
//!
//! Three things drive it:
//! - a new block template from litecoind (a new block, or new transactions) gives every
//!   miner fresh work, clean when the previous block changed ([`jobs`]);
//! - a new best share gives every miner fresh work on it (not clean: work still under way
//!   lands as an uncle rather than being lost);
//! - a miner's solution becomes a block submitted to litecoind at once when it meets the
//!   block target, and a share connected to the chain when it meets the share target
//!   ([`solutions`]).
//!
//! With `p2p_listen` set, the node also joins the share-chain network ([`crate::p2p`]):
//! shares it finds are gossiped, and peers' shares connect to the same chain.
//!
//! Work is served only while the node is ready ([`readiness`]): litecoind answers, on the
//! right chain, synced, with a template; and the share chain is in sync with the network.
//! Otherwise Stratum is paused with the reason, and resumes with fresh work by itself.

mod jobs;
mod join_work;
mod readiness;
mod solutions;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use p2pool_network::{Multiaddr, NetworkError};
use share_chain::{OperatorFee, Preset, ShareHash};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc};
use tracing::info;

pub use jobs::{NodeWork, Payee};
pub use join_work::DEFAULT_MIN_JOIN_WORK_PPM;
pub use readiness::{
    daemon_condition, Condition, Readiness, ReadinessHandle, DAEMON_CONDITION, SYNC_CONDITION,
};

use crate::alerts::Alerts;
use crate::api::{ApiError, ApiServer, ApiSources};
use crate::blocks::FoundBlocks;
use crate::chain_service::{ChainHandle, ChainStopped, OpenError};
use crate::counters::NodeCounters;
use crate::daemon::aux::{merge_feeds, AuxDaemon, AuxError, AuxWatcher};
use crate::daemon::peer::{DaemonPeer, PeerConfig};
use crate::daemon::rpc::{RpcClient, RpcConfig, RpcError};
use crate::daemon::watcher::{daemon_chain_name, DaemonState, Watcher, WatcherConfig};
use crate::hashrate::Hashrates;
use crate::history::History;
use crate::p2p::{P2p, P2pConfig};
use crate::stratum::{Availability, ServerError, StratumConfig, StratumServer};
use jobs::feed_jobs;
use readiness::follow_sync;
use solutions::{handle_solutions, Submitter};

/// How the node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub preset: Preset,
    pub datadir: PathBuf,
    pub daemon: RpcConfig,
    pub stratum: SocketAddr,
    /// The operator's fee, taken from the weight of shares mined through this node.
    pub fee: Option<OperatorFee>,
    /// Share-chain network listen addresses; empty: no network (a solo chain).
    pub p2p_listen: Vec<Multiaddr>,
    /// Share-chain peers to dial at start.
    pub peers: Vec<Multiaddr>,
}

/// Something worth telling the operator about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    DaemonState(DaemonState),
    /// The node's readiness changed (Stratum serves work only while it is ready).
    Readiness(Readiness),
    ShareAccepted {
        hash: ShareHash,
        height: u64,
        miner: String,
    },
    ShareRejected {
        miner: String,
        reason: String,
    },
    BlockSubmitted {
        hash: ShareHash,
        height: u32,
        accepted: bool,
        result: String,
        /// Who the coinbase pays: (address or script hex, amount).
        payouts: Vec<(String, u64)>,
    },
    /// An aux block (merged mining) went to its daemon.
    AuxBlockSubmitted {
        /// The aux chain's name.
        chain: String,
        /// The aux block's hash, internal byte order.
        hash: [u8; 32],
        height: u32,
        accepted: bool,
        result: String,
        /// Who its coinbase pays: (address on the aux chain, or the script's hex; amount).
        payouts: Vec<(String, u64)>,
    },
}

/// Tuning beyond [`NodeConfig`]; `Default` suits a real node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Once work is paused, how long connected miners keep their last job before their
    /// connections are closed (so they fail over to a backup pool).
    pub stratum_pause_grace: Duration,
    /// Miners' connections served at once; more are refused (counted and logged).
    pub stratum_max_connections: usize,
    /// Where to serve the JSON-RPC API, dashboard and metrics (none: not served).
    pub api: Option<SocketAddr>,
    /// Discover share-chain peers on the local network with mDNS.
    pub mdns: bool,
    /// The least work of a chain this node joins, in millionths of a block's work at
    /// litecoind's target (see [`join_work`]; 0 joins any chain).
    pub min_join_work_ppm: u32,
    /// litecoind's P2P port (new blocks at once, found blocks relayed without RPC).
    pub daemon_p2p: DaemonP2p,
    /// A worker with no accepted submission for this long is offline.
    pub offline_after: Duration,
    /// Where alerts are POSTed as JSON.
    pub webhook: Option<String>,
    /// Aux chain daemons to merge-mine (dogecoind), each on a chain of the preset's
    /// `aux_chains` (docs/PROTOCOL.md §15).
    pub aux_daemons: Vec<RpcConfig>,
}

/// Where the node reaches litecoind's P2P port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DaemonP2p {
    /// The RPC host (an IP address or `localhost`) on the chain's default P2P port.
    #[default]
    Default,
    At(SocketAddr),
    /// No P2P connection: blocks go by `submitblock` only, new blocks are polled for.
    Off,
}

impl DaemonP2p {
    /// The peer configuration for a daemon at `rpc_url` on `daemon_chain`, if any.
    pub fn resolve(&self, rpc_url: &str, daemon_chain: &str) -> Option<PeerConfig> {
        let magic = crate::daemon::peer::network_magic(daemon_chain);
        match self {
            DaemonP2p::Off => None,
            DaemonP2p::At(addr) => Some(PeerConfig { addr: *addr, magic }),
            DaemonP2p::Default => {
                let url = reqwest::Url::parse(rpc_url).ok()?;
                let host = match url.host_str()? {
                    "localhost" => std::net::IpAddr::from([127, 0, 0, 1]),
                    // A name other than localhost is not resolved: give the address.
                    host => host.trim_matches(['[', ']']).parse().ok()?,
                };
                Some(PeerConfig::for_chain(host, daemon_chain))
            }
        }
    }
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            stratum_pause_grace: StratumConfig::default().pause_grace,
            stratum_max_connections: StratumConfig::default().max_connections,
            api: None,
            mdns: false,
            min_join_work_ppm: join_work::DEFAULT_MIN_JOIN_WORK_PPM,
            daemon_p2p: DaemonP2p::Default,
            offline_after: Duration::from_secs(600),
            webhook: None,
            aux_daemons: Vec::new(),
        }
    }
}

/// Why the node could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Chain(#[from] OpenError),
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error(transparent)]
    Stratum(#[from] ServerError),
    #[error(transparent)]
    ChainStopped(#[from] ChainStopped),
    #[error("share-chain network: {0}")]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot open the found-blocks list: {0}")]
    FoundBlocks(std::io::Error),
    #[error("aux daemon {url}: {error}")]
    Aux { url: String, error: AuxError },
}

/// A running node.
pub struct Node {
    pub chain: ChainHandle,
    pub stratum: Arc<StratumServer<NodeWork>>,
    /// The share-chain network, when the node listens for peers.
    pub p2p: Option<P2p>,
    api: Option<ApiServer>,
    events: broadcast::Sender<NodeEvent>,
    readiness: ReadinessHandle,
    _watcher: Watcher,
    _aux_watchers: Vec<AuxWatcher>,
    /// Also held by the submission tasks; dropped with the last of them.
    _daemon_peer: Option<Arc<DaemonPeer>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Starts the node: opens the chain, binds Stratum, starts watching the daemon.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        Node::start_with(config, NodeOptions::default()).await
    }

    /// [`Node::start`] with non-default options.
    pub async fn start_with(config: NodeConfig, options: NodeOptions) -> Result<Node, NodeError> {
        let preset = config.preset.clone();
        let (chain, report) = ChainHandle::open(config.datadir.join("shares"), preset.clone())?;
        info!(
            network = %preset.coin.chain,
            network_id = %preset.network_id(),
            shares = report.loaded,
            "share chain opened"
        );
        let rpc = Arc::new(RpcClient::new(config.daemon.clone())?);
        let daemon_chain = daemon_chain_name(&preset.coin.chain);
        let peer = match options.daemon_p2p.resolve(&config.daemon.url, daemon_chain) {
            Some(peer_config) => Some(Arc::new(DaemonPeer::spawn(peer_config))),
            None => {
                tracing::warn!(
                    "no connection to litecoind's P2P port: found blocks go by submitblock only"
                );
                None
            }
        };
        let watcher = Watcher::spawn_with(
            rpc.clone(),
            WatcherConfig::new(daemon_chain),
            peer.as_ref().map(|p| p.announcements()),
        );
        let mut aux_watchers = Vec::with_capacity(options.aux_daemons.len());
        for aux in &options.aux_daemons {
            // Not asked anything yet: a daemon that is down now is mined with once it is up.
            let rpc = Arc::new(RpcClient::new(aux.clone()).map_err(|e| NodeError::Aux {
                url: aux.url.clone(),
                error: e.into(),
            })?);
            aux_watchers.push(AuxWatcher::spawn(Arc::new(AuxDaemon::new(rpc, &preset))));
        }
        let (aux_feed, aux_merge) = merge_feeds(&aux_watchers);
        let aux_daemons: Vec<Arc<AuxDaemon>> =
            aux_watchers.iter().map(|w| w.daemon.clone()).collect();
        let (events, _) = broadcast::channel(1024);
        let counters = Arc::new(NodeCounters::default());
        // Kept whether or not the API is served: the list outlives a run without `--rpc`.
        let found_blocks =
            Arc::new(FoundBlocks::open(&config.datadir).map_err(NodeError::FoundBlocks)?);
        let (solutions_tx, solutions_rx) = mpsc::unbounded_channel();
        let work = Arc::new(NodeWork::new(
            preset.coin.clone(),
            chain.clone(),
            config.fee.clone(),
            solutions_tx,
            counters.clone(),
            aux_feed.clone(),
            preset.aux_chains.clone(),
        ));
        let readiness = ReadinessHandle::default();
        let stratum_config = StratumConfig {
            pause_grace: options.stratum_pause_grace,
            max_connections: options.stratum_max_connections,
            // Paused until litecoind has answered and work is built.
            availability: Availability::Paused {
                reason: readiness
                    .current()
                    .blocker()
                    .unwrap_or_else(|| "starting".into()),
            },
            ..StratumConfig::for_preset(config.stratum, &preset)
        };
        let stratum =
            Arc::new(StratumServer::bind(stratum_config, &preset.coin, work.clone()).await?);
        let (p2p, publish) = if config.p2p_listen.is_empty() {
            (None, None)
        } else {
            let (publish_tx, publish_rx) = mpsc::unbounded_channel();
            let p2p = P2p::start(
                P2pConfig {
                    network_id: preset.network_id(),
                    listen: config.p2p_listen.clone(),
                    peers: config.peers.clone(),
                    data_dir: config.datadir.join("p2p"),
                    mdns: options.mdns,
                    min_join_work: Default::default(),
                    sync: Default::default(),
                },
                chain.clone(),
                publish_rx,
            )
            .await?;
            (Some(p2p), Some(publish_tx))
        };
        let api = match options.api {
            Some(addr) => {
                let stats = stratum.clone();
                let sources = ApiSources {
                    preset: preset.clone(),
                    chain: chain.clone(),
                    daemon: watcher.subscribe(),
                    stratum: Box::new(move || stats.stats()),
                    network: p2p.as_ref().map(|p| p.handle().clone()),
                    sync: p2p.as_ref().map(P2p::sync_state),
                    counters: counters.clone(),
                    daemon_rpc: Some(rpc.clone()),
                    fee: config.fee.clone(),
                    blocks: found_blocks.clone(),
                    aux_daemons: aux_daemons.clone(),
                    history: Arc::new(History::open(&config.datadir)),
                    alerts: Arc::new(match options.webhook.clone() {
                        Some(url) => Alerts::with_webhook(url),
                        None => Alerts::new(),
                    }),
                    aux: aux_feed.clone(),
                    aux_status: aux_watchers.iter().map(AuxWatcher::subscribe).collect(),
                    hashrates: Arc::new(Hashrates::new(
                        preset.coin.pow.stratum_difficulty_multiplier(),
                        options.offline_after.as_secs(),
                    )),
                };
                Some(ApiServer::start(addr, sources).await?)
            }
            None => None,
        };

        let mut tasks = vec![
            aux_merge,
            tokio::spawn(crate::blocks::track(
                chain.clone(),
                preset.clone(),
                crate::blocks::Daemons {
                    parent: Some(rpc.clone()),
                    aux: aux_daemons.clone(),
                },
                found_blocks.clone(),
            )),
            tokio::spawn(feed_jobs(
                watcher.subscribe(),
                chain.subscribe(),
                readiness.clone(),
                work.clone(),
                stratum.clone(),
                events.clone(),
            )),
            tokio::spawn(handle_solutions(
                solutions_rx,
                chain.clone(),
                Arc::new(Submitter::new(
                    rpc,
                    peer.clone(),
                    aux_daemons,
                    events.clone(),
                    counters.clone(),
                    found_blocks,
                )),
                preset.coin.clone(),
                publish,
            )),
        ];
        if let Some(p2p) = &p2p {
            tasks.push(tokio::spawn(follow_sync(
                p2p.sync_state(),
                readiness.clone(),
            )));
            tasks.push(tokio::spawn(join_work::follow_block_target(
                watcher.subscribe(),
                preset.coin.clone(),
                options.min_join_work_ppm,
                p2p.min_join_work(),
            )));
        }
        Ok(Node {
            chain,
            stratum,
            p2p,
            api,
            events,
            readiness,
            _watcher: watcher,
            _aux_watchers: aux_watchers,
            _daemon_peer: peer,
            tasks,
        })
    }

    pub fn stratum_addr(&self) -> SocketAddr {
        self.stratum.local_addr()
    }

    /// Where the JSON-RPC API listens, if it was asked for.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(ApiServer::local_addr)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Whether the node serves work now, and if not, why.
    pub fn readiness(&self) -> Readiness {
        self.readiness.current()
    }

    /// The handle to set and watch readiness conditions (the share-chain network sets
    /// [`SYNC_CONDITION`] through it).
    pub fn readiness_handle(&self) -> ReadinessHandle {
        self.readiness.clone()
    }

    /// See [`ReadinessHandle::set_sync_ready`].
    pub fn set_sync_ready(&self, ready: bool, reason: impl Into<String>) {
        self.readiness.set_sync_ready(ready, reason);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
