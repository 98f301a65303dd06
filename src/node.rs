//! The node: the daemon watcher, the share chain and the Stratum server, wired together.
//!
//! Three things drive it:
//! - a new block template from litecoind (a new block, or new transactions) gives every
//!   miner fresh work, clean when the previous block changed;
//! - a new best share gives every miner fresh work on it (not clean: work still under way
//!   lands as an uncle rather than being lost);
//! - a miner's solution becomes a block submitted to litecoind at once when it meets the
//!   block target, and a share connected to the chain when it meets the share target.
//!
//! With `p2p_listen` set, the node also joins the share-chain network ([`crate::p2p`]):
//! shares it finds are gossiped, and peers' shares connect to the same chain.
//!
//! Each payout address gets its own coinbase (the share's own credit and the finder bonus
//! go to it), built on demand when a connection first needs it and cached per job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use p2pool_network::{Multiaddr, NetworkError};
use share_chain::address::{address_to_script, script_to_address};
use share_chain::template::MinerPayout;
use share_chain::{CoinParams, OperatorFee, Preset, ShareHash};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::chain_service::{ChainHandle, ChainStopped, OpenError};
use crate::daemon::rpc::{RpcClient, RpcConfig, RpcError, SubmitOutcome};
use crate::daemon::template::BlockTemplate;
use crate::daemon::watcher::{daemon_chain_name, DaemonState, Watcher, WatcherConfig};
use crate::p2p::{P2p, P2pConfig};
use crate::stratum::{
    Job, JobTemplate, ServerError, Solution, StratumConfig, StratumServer, Username, WorkSource,
};
use crate::work::{block_context, build_work, WorkPayload};

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
}

/// A running node.
pub struct Node {
    pub chain: ChainHandle,
    pub stratum: Arc<StratumServer<NodeWork>>,
    /// The share-chain network, when the node listens for peers.
    pub p2p: Option<P2p>,
    events: broadcast::Sender<NodeEvent>,
    _watcher: Watcher,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Starts the node: opens the chain, binds Stratum, starts watching the daemon.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let preset = config.preset.clone();
        let (chain, report) = ChainHandle::open(config.datadir.join("shares"), preset.clone())?;
        info!(
            network = %preset.coin.chain,
            network_id = %preset.network_id(),
            shares = report.loaded,
            "share chain opened"
        );
        let rpc = Arc::new(RpcClient::new(config.daemon.clone())?);
        let watcher = Watcher::spawn(
            rpc.clone(),
            WatcherConfig::new(daemon_chain_name(&preset.coin.chain)),
        );
        let (events, _) = broadcast::channel(1024);
        let (solutions_tx, solutions_rx) = mpsc::unbounded_channel();
        let work = Arc::new(NodeWork {
            coin: preset.coin.clone(),
            chain: chain.clone(),
            fee: config.fee.clone(),
            cache: Mutex::new(JobCache::default()),
            solutions: solutions_tx,
        });
        let stratum_config = StratumConfig {
            listen: config.stratum,
            ..StratumConfig::default()
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
                },
                chain.clone(),
                publish_rx,
            )
            .await?;
            (Some(p2p), Some(publish_tx))
        };

        let tasks = vec![
            tokio::spawn(feed_jobs(
                watcher.subscribe(),
                chain.subscribe(),
                work.clone(),
                stratum.clone(),
                events.clone(),
            )),
            tokio::spawn(handle_solutions(
                solutions_rx,
                chain.clone(),
                rpc,
                preset.coin.clone(),
                events.clone(),
                publish,
            )),
        ];
        Ok(Node {
            chain,
            stratum,
            p2p,
            events,
            _watcher: watcher,
            tasks,
        })
    }

    pub fn stratum_addr(&self) -> SocketAddr {
        self.stratum.local_addr()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Jobs built for each payout address, for the current broadcast job.
#[derive(Default)]
struct JobCache {
    seq: u64,
    jobs: HashMap<Vec<u8>, Arc<Job<WorkPayload>>>,
}

/// The node's side of the Stratum server.
pub struct NodeWork {
    coin: CoinParams,
    chain: ChainHandle,
    fee: Option<OperatorFee>,
    cache: Mutex<JobCache>,
    solutions: mpsc::UnboundedSender<Solution<NodeWork>>,
}

/// A script that pays no one; the broadcast job is always personalized before a miner
/// sees it, so this only fills the slot.
const PLACEHOLDER_SCRIPT: &[u8] = &[0x51];

impl NodeWork {
    /// Builds `script`'s job on `block` (blocking on the chain thread).
    fn build_job(
        &self,
        block: Arc<BlockTemplate>,
        script: Vec<u8>,
        clean: bool,
        seq: u64,
    ) -> Option<Arc<Job<WorkPayload>>> {
        let template = self.build_template(block, script, clean)?;
        match Job::new(seq, template) {
            Ok(job) => Some(Arc::new(job)),
            Err(e) => {
                error!(error = %e, "built a job no miner can use");
                None
            }
        }
    }

    fn build_template(
        &self,
        block: Arc<BlockTemplate>,
        script: Vec<u8>,
        clean: bool,
    ) -> Option<JobTemplate<WorkPayload>> {
        let context = block_context(&block);
        let miner = MinerPayout {
            script,
            fee: self.fee.clone(),
            share_target_bits: None,
        };
        let share = match self
            .chain
            .call_blocking(move |c| c.index_mut().share_template(&miner, context))
        {
            Ok(Ok(share)) => share,
            Ok(Err(e)) => {
                error!(error = %e, "cannot build a share template");
                return None;
            }
            Err(e) => {
                error!(error = %e, "cannot build a share template");
                return None;
            }
        };
        let work = match build_work(share, block.clone()) {
            Ok(work) => work,
            Err(e) => {
                error!(error = %e, "cannot split the coinbase for Stratum");
                return None;
            }
        };
        Some(JobTemplate {
            prev_hash: block.previous_block_hash,
            coinb1: work.coinb1,
            coinb2: work.coinb2,
            merkle_branch: work.payload.share.block.merkle_branch.clone(),
            version: block.version,
            bits: block.bits,
            time: work.time,
            share_target: work.payload.share.share_target,
            block_target: block.target,
            clean,
            payload: work.payload,
        })
    }
}

impl WorkSource for NodeWork {
    /// The payout script.
    type Identity = Vec<u8>;
    type Payload = WorkPayload;

    fn validate_username(&self, username: &Username) -> Result<Vec<u8>, String> {
        address_to_script(&username.address, &self.coin).map_err(|e| e.to_string())
    }

    fn on_solution(&self, solution: Solution<Self>) {
        let _ = self.solutions.send(solution);
    }

    fn personalize(
        &self,
        job: &Arc<Job<WorkPayload>>,
        miner: &Vec<u8>,
    ) -> Option<Arc<Job<WorkPayload>>> {
        let mut cache = match self.cache.lock() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cache.seq != job.seq {
            cache.seq = job.seq;
            cache.jobs.clear();
        }
        if let Some(mine) = cache.jobs.get(miner) {
            return Some(mine.clone());
        }
        let block = job.template.payload.block.clone();
        // Never fall back to the broadcast job: it pays a placeholder, not this miner.
        let mine = self.build_job(block, miner.clone(), job.template.clean, job.seq)?;
        cache.jobs.insert(miner.clone(), mine.clone());
        Some(mine)
    }
}

/// Rebuilds work whenever the daemon has a new template or the chain a new tip.
async fn feed_jobs(
    mut daemon: watch::Receiver<crate::daemon::watcher::DaemonStatus>,
    mut chain: watch::Receiver<crate::chain_service::ChainSummary>,
    work: Arc<NodeWork>,
    stratum: Arc<StratumServer<NodeWork>>,
    events: broadcast::Sender<NodeEvent>,
) {
    let mut last_state: Option<DaemonState> = None;
    let mut last_template_seq = 0;
    let mut last_prev_block: Option<[u8; 32]> = None;
    let mut last_tip: Option<ShareHash> = None;
    loop {
        let status = daemon.borrow_and_update().clone();
        let tip = chain.borrow_and_update().tip;
        if last_state.as_ref() != Some(&status.state) {
            match &status.state {
                DaemonState::Ready => info!("litecoind is ready: serving work"),
                DaemonState::Connecting => info!("connecting to litecoind"),
                other => warn!(state = ?other, "litecoind is not ready: no new work for miners"),
            }
            let _ = events.send(NodeEvent::DaemonState(status.state.clone()));
            last_state = Some(status.state.clone());
        }
        if let Some(template) = status.ready_template() {
            let new_template = status.template_seq != last_template_seq;
            let new_tip = tip != last_tip;
            if new_template || new_tip {
                let clean = last_prev_block != Some(template.previous_block_hash);
                let block = template.clone();
                let w = work.clone();
                let built = tokio::task::spawn_blocking(move || {
                    w.build_template(block, PLACEHOLDER_SCRIPT.to_vec(), clean)
                })
                .await;
                if let Ok(Some(job)) = built {
                    match stratum.broadcast(job) {
                        Ok(seq) => debug!(seq, clean, height = template.height, "new work"),
                        Err(e) => error!(error = %e, "cannot broadcast work"),
                    }
                    last_template_seq = status.template_seq;
                    last_prev_block = Some(template.previous_block_hash);
                    last_tip = tip;
                }
            }
        }
        tokio::select! {
            changed = daemon.changed() => if changed.is_err() { return },
            changed = chain.changed() => if changed.is_err() { return },
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn describe(script: &[u8], coin: &CoinParams) -> String {
    script_to_address(script, coin).unwrap_or_else(|| hex::encode(script))
}

/// Turns miners' solutions into blocks and shares.
async fn handle_solutions(
    mut solutions: mpsc::UnboundedReceiver<Solution<NodeWork>>,
    chain: ChainHandle,
    rpc: Arc<RpcClient>,
    coin: CoinParams,
    events: broadcast::Sender<NodeEvent>,
    publish: Option<mpsc::UnboundedSender<Vec<u8>>>,
) {
    // Once a block on some previous block is accepted, more blocks on it are stale: they
    // are not worth a submitblock (on regtest, where nearly every hash is a block, they
    // would flood litecoind).
    let mut accepted_on: Option<[u8; 32]> = None;
    while let Some(solution) = solutions.recv().await {
        let payload = &solution.job.payload;
        let mut extranonce = solution.extranonce1.to_vec();
        extranonce.extend_from_slice(&solution.extranonce2);
        let share = payload.share_for(
            &extranonce,
            solution.version,
            solution.ntime,
            solution.nonce,
        );
        if share.header.to_bytes() != solution.header {
            error!("a solution's header does not match the share rebuilt from its job");
            continue;
        }
        let miner = describe(&solution.miner, &coin);
        let stale = accepted_on == Some(share.header.prev_block);
        if solution.meets_block_target && !stale {
            // The block first: every millisecond counts against an orphaned block.
            let block = payload.block_bytes(&share);
            let (accepted, result) = match rpc.submit_block(&block).await {
                Ok(SubmitOutcome::Accepted) => {
                    accepted_on = Some(share.header.prev_block);
                    (true, "accepted".to_string())
                }
                Ok(other) => (false, format!("{other:?}")),
                Err(e) => (false, e.to_string()),
            };
            let payouts: Vec<(String, u64)> = payload
                .share
                .payouts
                .iter()
                .map(|p| (describe(&p.script, &coin), p.amount))
                .collect();
            info!(
                block = %share.hash(),
                height = payload.block.height,
                %result,
                outputs = payouts.len(),
                "block found by {miner}"
            );
            let _ = events.send(NodeEvent::BlockSubmitted {
                hash: share.hash(),
                height: payload.block.height,
                accepted,
                result,
                payouts,
            });
        }
        if solution.meets_share_target {
            let hash = share.hash();
            let encoded = publish.as_ref().map(|_| share.encode());
            let outcome = chain.call(move |c| c.connect(share, now_secs())).await;
            match outcome {
                Ok(Ok(connected)) => {
                    let height = connected.entries.first().map_or(0, |e| e.height);
                    info!(share = %hash, height, "share by {miner}");
                    if let (Some(publish), Some(encoded)) = (&publish, encoded) {
                        let _ = publish.send(encoded);
                    }
                    let _ = events.send(NodeEvent::ShareAccepted {
                        hash,
                        height,
                        miner,
                    });
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "share by {miner} rejected");
                    let _ = events.send(NodeEvent::ShareRejected {
                        miner,
                        reason: e.to_string(),
                    });
                }
                Err(e) => error!(error = %e, "share chain unavailable"),
            }
        }
    }
}
