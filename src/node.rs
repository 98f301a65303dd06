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
//! go to it). When work changes, the jobs of every address mined in the last round are
//! built ahead, off the event loop; a new address gets its job built on a task the first
//! time a connection needs it.
//!
//! Work is served only while the node is ready ([`Readiness`]): litecoind answers, on the
//! right chain, synced, with a template; and the share chain is in sync with the network.
//! Otherwise Stratum is paused with the reason, and resumes with fresh work by itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::{BoxFuture, FutureExt, Shared};

use p2pool_network::{Multiaddr, NetworkError};
use share_chain::address::{address_to_script, script_to_address};
use share_chain::template::{BlockContext, MinerPayout, ShareTemplate};
use share_chain::{CoinParams, OperatorFee, Preset, ShareHash};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::api::{ApiError, ApiServer, ApiSources};
use crate::chain_service::{ChainHandle, ChainStopped, OpenError};
use crate::daemon::rpc::{RpcClient, RpcConfig, RpcError, SubmitOutcome};
use crate::daemon::template::BlockTemplate;
use crate::daemon::watcher::{
    daemon_chain_name, DaemonState, DaemonStatus, Watcher, WatcherConfig,
};
use crate::p2p::{P2p, P2pConfig, SyncState};
use crate::stratum::{
    Availability, Job, JobTemplate, Personalized, ServerError, Solution, StratumConfig,
    StratumServer, Username, WorkSource,
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
}

/// Name of the readiness condition the daemon watcher feeds.
pub const DAEMON_CONDITION: &str = "litecoind";
/// Name of the readiness condition of share-chain sync (set by the share-chain network
/// through [`ReadinessHandle::set_sync_ready`]; ready until it says otherwise).
pub const SYNC_CONDITION: &str = "share chain";

/// One thing the node needs before its work can become a valid block or share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub name: &'static str,
    pub ready: bool,
    /// What the state is: why it is not ready, or what ready means here.
    pub reason: String,
}

/// Whether the node hands out work: ready when every named condition is.
///
/// Stratum serves miners only while the node is ready; otherwise it is paused with the
/// reasons of the conditions that are not (see [`crate::stratum::Availability`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    conditions: Vec<Condition>,
}

impl Readiness {
    /// A starting node: litecoind not heard from yet, share-chain sync ready.
    pub fn starting() -> Self {
        Readiness {
            conditions: vec![
                Condition {
                    name: DAEMON_CONDITION,
                    ready: false,
                    reason: "waiting for its first answer".into(),
                },
                Condition {
                    name: SYNC_CONDITION,
                    ready: true,
                    reason: "ready".into(),
                },
            ],
        }
    }

    pub fn is_ready(&self) -> bool {
        self.conditions.iter().all(|c| c.ready)
    }

    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    pub fn condition(&self, name: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.name == name)
    }

    /// Why the node is not ready (`name: reason` of each such condition), or `None`.
    pub fn blocker(&self) -> Option<String> {
        let reasons: Vec<String> = self
            .conditions
            .iter()
            .filter(|c| !c.ready)
            .map(|c| format!("{}: {}", c.name, c.reason))
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Sets a condition (adding it if new); whether anything changed.
    pub fn set(&mut self, name: &'static str, ready: bool, reason: String) -> bool {
        match self.conditions.iter_mut().find(|c| c.name == name) {
            Some(c) if c.ready == ready && c.reason == reason => false,
            Some(c) => {
                c.ready = ready;
                c.reason = reason;
                true
            }
            None => {
                self.conditions.push(Condition {
                    name,
                    ready,
                    reason,
                });
                true
            }
        }
    }
}

/// Sets and watches the node's [`Readiness`]; cheap to clone and hand to whoever owns a
/// condition.
#[derive(Clone)]
pub struct ReadinessHandle {
    tx: Arc<watch::Sender<Readiness>>,
}

impl Default for ReadinessHandle {
    fn default() -> Self {
        ReadinessHandle {
            tx: Arc::new(watch::Sender::new(Readiness::starting())),
        }
    }
}

impl ReadinessHandle {
    /// Sets condition `name`; a change is logged once (a warning when it stops being ready).
    pub fn set(&self, name: &'static str, ready: bool, reason: impl Into<String>) {
        let reason = reason.into();
        let changed = self
            .tx
            .send_if_modified(|r| r.set(name, ready, reason.clone()));
        if changed {
            if ready {
                info!(condition = name, "{name} is ready: {reason}");
            } else {
                warn!(condition = name, "{name} is not ready: {reason}");
            }
        }
    }

    /// The share-chain sync condition: `false` while the node is catching up with its
    /// peers (Stratum serves no work meanwhile), with the reason to show.
    pub fn set_sync_ready(&self, ready: bool, reason: impl Into<String>) {
        self.set(SYNC_CONDITION, ready, reason);
    }

    pub fn current(&self) -> Readiness {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Readiness> {
        self.tx.subscribe()
    }
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
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            stratum_pause_grace: StratumConfig::default().pause_grace,
            stratum_max_connections: StratumConfig::default().max_connections,
            api: None,
            mdns: false,
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
            cache: Arc::new(Mutex::new(JobCache::default())),
            next_generation: AtomicU64::new(0),
            solutions: solutions_tx,
        });
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
                };
                Some(ApiServer::start(addr, sources).await?)
            }
            None => None,
        };

        let mut tasks = vec![
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
                rpc,
                preset.coin.clone(),
                events.clone(),
                publish,
            )),
        ];
        if let Some(p2p) = &p2p {
            tasks.push(tokio::spawn(follow_sync(
                p2p.sync_state(),
                readiness.clone(),
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

/// Keeps the share-chain condition of readiness in step with the network's sync state:
/// miners are served while the node is alone or synced, not while it catches up (work on a
/// stale tip would only make orphans).
async fn follow_sync(mut sync: watch::Receiver<SyncState>, readiness: ReadinessHandle) {
    loop {
        let state = sync.borrow_and_update().clone();
        readiness.set_sync_ready(state.may_serve(), state.to_string());
        if sync.changed().await.is_err() {
            return;
        }
    }
}

/// A payout address's job being built: every session of that address waits on one build.
type SharedBuild = Shared<BoxFuture<'static, Option<Arc<Job<WorkPayload>>>>>;
/// Each payout address's finished job of one round.
type RoundJobs = HashMap<Vec<u8>, Arc<Job<WorkPayload>>>;

/// A payout address's job in the current round.
enum Slot {
    Ready(Arc<Job<WorkPayload>>),
    /// Being built off the event loop.
    Building(SharedBuild),
}

/// The current round of work: its block and share context and each payout address's job.
#[derive(Default)]
struct JobCache {
    generation: u64,
    round: Option<Round>,
    jobs: HashMap<Vec<u8>, Slot>,
    /// The round before, for sessions that read its broadcast just as this one was built.
    previous: Option<(u64, RoundJobs)>,
    /// Payout addresses connections asked jobs for, and when last: jobs are built ahead for
    /// these.
    known: HashMap<Vec<u8>, Instant>,
}

/// An address no connection asked a job for this long gets no job built ahead.
const KNOWN_ADDRESS_TTL: Duration = Duration::from_secs(600);
/// Jobs are built ahead for at most this many addresses (the most recently seen): a flood
/// of connections with fresh addresses must not make every round unboundedly long.
const MAX_KNOWN_ADDRESSES: usize = 10_000;

/// What a job of the current round is built from.
#[derive(Clone)]
struct Round {
    block: Arc<BlockTemplate>,
    context: BlockContext,
    clean: bool,
}

/// The node's side of the Stratum server.
pub struct NodeWork {
    coin: CoinParams,
    chain: ChainHandle,
    fee: Option<OperatorFee>,
    cache: Arc<Mutex<JobCache>>,
    next_generation: AtomicU64,
    solutions: mpsc::UnboundedSender<Solution<NodeWork>>,
}

/// A script that pays no one; the broadcast job is always personalized before a miner
/// sees it, so this only fills the slot.
const PLACEHOLDER_SCRIPT: &[u8] = &[0x51];

fn lock_cache(cache: &Mutex<JobCache>) -> std::sync::MutexGuard<'_, JobCache> {
    // The cache holds no invariant a panic could break halfway: keep using it.
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The Stratum job of `share` on `block` (CPU work: coinbase halves and their hex).
fn job_template(
    share: ShareTemplate,
    block: Arc<BlockTemplate>,
    clean: bool,
    generation: u64,
) -> Option<JobTemplate<WorkPayload>> {
    let mut work = match build_work(share, block.clone()) {
        Ok(work) => work,
        Err(e) => {
            error!(error = %e, "cannot split the coinbase for Stratum");
            return None;
        }
    };
    work.payload.generation = generation;
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

fn prepared_job(
    template: JobTemplate<WorkPayload>,
    generation: u64,
) -> Option<Arc<Job<WorkPayload>>> {
    match Job::new(generation, template) {
        Ok(job) => Some(Arc::new(job)),
        Err(e) => {
            error!(error = %e, "built a job no miner can use");
            None
        }
    }
}

impl NodeWork {
    fn payout(&self, script: Vec<u8>) -> MinerPayout {
        MinerPayout {
            script,
            fee: self.fee.clone(),
            share_target_bits: None,
        }
    }

    /// Starts a round of work on `block`: builds the broadcast job and, ahead of time, the
    /// job of every payout address mined in the last round (one call to the chain thread,
    /// the coinbases on the blocking pool), so sessions find theirs ready. Returns the
    /// broadcast job's template (its coinbase pays a placeholder).
    async fn prepare_round(
        &self,
        block: Arc<BlockTemplate>,
        clean: bool,
    ) -> Option<JobTemplate<WorkPayload>> {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let for_context = block.clone();
        let context = match tokio::task::spawn_blocking(move || block_context(&for_context)).await {
            Ok(context) => context,
            Err(e) => {
                error!(error = %e, "cannot prepare the block context");
                return None;
            }
        };
        let mut miners = vec![self.payout(PLACEHOLDER_SCRIPT.to_vec())];
        {
            let mut cache = lock_cache(&self.cache);
            cache
                .known
                .retain(|_, used| used.elapsed() < KNOWN_ADDRESS_TTL);
            if cache.known.len() > MAX_KNOWN_ADDRESSES {
                let mut by_age: Vec<Instant> = cache.known.values().copied().collect();
                by_age.sort_unstable_by(|a, b| b.cmp(a));
                if let Some(&oldest_kept) = by_age.get(MAX_KNOWN_ADDRESSES - 1) {
                    cache.known.retain(|_, used| *used >= oldest_kept);
                }
            }
            miners.extend(cache.known.keys().map(|script| self.payout(script.clone())));
        }
        let shared_context = context.clone();
        let shares = self
            .chain
            .call(move |c| {
                let index = c.index_mut();
                miners
                    .into_iter()
                    .map(|m| {
                        let share = index.share_template(&m, shared_context.clone());
                        (m.script, share)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        let shares = match shares {
            Ok(shares) => shares,
            Err(e) => {
                error!(error = %e, "cannot build share templates");
                return None;
            }
        };
        let for_jobs = block.clone();
        let built = tokio::task::spawn_blocking(move || {
            let mut broadcast = None;
            let mut jobs = HashMap::new();
            for (i, (script, share)) in shares.into_iter().enumerate() {
                let share = match share {
                    Ok(share) => share,
                    Err(e) => {
                        error!(error = %e, "cannot build a share template");
                        continue;
                    }
                };
                let Some(template) = job_template(share, for_jobs.clone(), clean, generation)
                else {
                    continue;
                };
                if i == 0 {
                    broadcast = Some(template);
                } else if let Some(job) = prepared_job(template, generation) {
                    jobs.insert(script, Slot::Ready(job));
                }
            }
            (broadcast, jobs)
        })
        .await;
        let (broadcast, jobs) = match built {
            Ok(built) => built,
            Err(e) => {
                error!(error = %e, "cannot build jobs");
                return None;
            }
        };
        let broadcast = broadcast?;
        let mut cache = lock_cache(&self.cache);
        let finished: RoundJobs = cache
            .jobs
            .iter()
            .filter_map(|(script, slot)| match slot {
                Slot::Ready(job) => Some((script.clone(), job.clone())),
                Slot::Building(_) => None,
            })
            .collect();
        cache.previous = Some((cache.generation, finished));
        cache.generation = generation;
        cache.round = Some(Round {
            block,
            context,
            clean,
        });
        cache.jobs = jobs;
        debug!(generation, ahead = cache.jobs.len(), "jobs built ahead");
        Some(broadcast)
    }

    /// Builds `script`'s job of the current round on a task (the chain thread for the share
    /// template, then the coinbase); the result lands in the cache and in the future.
    fn spawn_build(&self, generation: u64, round: Round, script: Vec<u8>) -> Option<SharedBuild> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let chain = self.chain.clone();
        let cache = self.cache.clone();
        let miner = self.payout(script.clone());
        let task = runtime.spawn(async move {
            let Round {
                block,
                context,
                clean,
            } = round;
            let share = chain
                .call(move |c| c.index_mut().share_template(&miner, context))
                .await;
            let job = match share {
                Ok(Ok(share)) => job_template(share, block, clean, generation)
                    .and_then(|t| prepared_job(t, generation)),
                Ok(Err(e)) => {
                    error!(error = %e, "cannot build a share template");
                    None
                }
                Err(e) => {
                    error!(error = %e, "cannot build a share template");
                    None
                }
            };
            let mut cache = lock_cache(&cache);
            if cache.generation == generation {
                match &job {
                    Some(job) => {
                        if let Some(slot) = cache.jobs.get_mut(&script) {
                            *slot = Slot::Ready(job.clone());
                        }
                    }
                    // Let the next request try again.
                    None => {
                        cache.jobs.remove(&script);
                    }
                }
            }
            job
        });
        let future: BoxFuture<'static, Option<Arc<Job<WorkPayload>>>> =
            Box::pin(async move { task.await.ok().flatten() });
        Some(future.shared())
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
    ) -> Personalized<WorkPayload> {
        let generation = job.template.payload.generation;
        let mut cache = lock_cache(&self.cache);
        match cache.known.get_mut(miner) {
            Some(used) => *used = Instant::now(),
            None => {
                cache.known.insert(miner.clone(), Instant::now());
            }
        }
        if cache.generation != generation {
            // The round before (its broadcast was read just as the next one was built), or
            // an older one: then the newer broadcast is already on its way to the session.
            return match &cache.previous {
                Some((previous, jobs)) if *previous == generation => {
                    jobs.get(miner).map_or(Personalized::Nothing, |job| {
                        Personalized::Ready(job.clone())
                    })
                }
                _ => Personalized::Nothing,
            };
        }
        if let Some(slot) = cache.jobs.get(miner) {
            return match slot {
                Slot::Ready(job) => Personalized::Ready(job.clone()),
                Slot::Building(future) => Personalized::Later(Box::pin(future.clone())),
            };
        }
        let Some(round) = cache.round.clone() else {
            return Personalized::Nothing;
        };
        // Never fall back to the broadcast job: it pays a placeholder, not this miner.
        let Some(future) = self.spawn_build(generation, round, miner.clone()) else {
            return Personalized::Nothing;
        };
        cache
            .jobs
            .insert(miner.clone(), Slot::Building(future.clone()));
        Personalized::Later(Box::pin(future))
    }
}

/// What litecoind's state means for work: ready, or the reason it is not.
pub fn daemon_condition(status: &DaemonStatus) -> (bool, String) {
    match &status.state {
        DaemonState::Ready if status.template.is_some() => (true, "ready".into()),
        DaemonState::Ready => (false, "no block template yet".into()),
        DaemonState::Connecting => (false, "waiting for its first answer".into()),
        DaemonState::Unreachable => (
            false,
            "unreachable (stopped, restarting, or a wrong RPC address)".into(),
        ),
        DaemonState::Unauthorized => (
            false,
            "refused the RPC credentials (wrong user, password or cookie)".into(),
        ),
        DaemonState::WrongChain { expected, found } => (
            false,
            format!("runs the {found} chain, this node needs {expected}"),
        ),
        DaemonState::WarmingUp(message) => (false, format!("starting up: {message}")),
        DaemonState::Syncing => (false, "still syncing the block chain".into()),
        DaemonState::NoTemplate(reason) => (false, format!("serves no block template: {reason}")),
    }
}

/// Rebuilds work whenever the daemon has a new template or the chain a new tip, and pauses
/// Stratum while the node is not ready (see [`Readiness`]).
async fn feed_jobs(
    mut daemon: watch::Receiver<DaemonStatus>,
    mut chain: watch::Receiver<crate::chain_service::ChainSummary>,
    readiness: ReadinessHandle,
    work: Arc<NodeWork>,
    stratum: Arc<StratumServer<NodeWork>>,
    events: broadcast::Sender<NodeEvent>,
) {
    let mut ready_rx = readiness.subscribe();
    let mut last_state: Option<DaemonState> = None;
    let mut last_readiness: Option<Readiness> = None;
    let mut last_template_seq = 0;
    let mut last_prev_block: Option<[u8; 32]> = None;
    let mut last_tip: Option<ShareHash> = None;
    let mut serving = false;
    loop {
        let status = daemon.borrow_and_update().clone();
        let tip = chain.borrow_and_update().tip;
        if last_state.as_ref() != Some(&status.state) {
            let _ = events.send(NodeEvent::DaemonState(status.state.clone()));
            last_state = Some(status.state.clone());
        }
        let (daemon_ready, reason) = daemon_condition(&status);
        readiness.set(DAEMON_CONDITION, daemon_ready, reason);
        let now = ready_rx.borrow_and_update().clone();
        if last_readiness.as_ref() != Some(&now) {
            let _ = events.send(NodeEvent::Readiness(now.clone()));
            last_readiness = Some(now.clone());
        }
        match (now.blocker(), status.ready_template()) {
            (None, Some(template)) => {
                let new_template = status.template_seq != last_template_seq;
                let new_tip = tip != last_tip;
                // Back from a pause, miners get fresh work even on the same template.
                if new_template || new_tip || !serving {
                    let clean = last_prev_block != Some(template.previous_block_hash);
                    if let Some(job) = work.prepare_round(template.clone(), clean).await {
                        match stratum.broadcast(job) {
                            Ok(seq) => debug!(seq, clean, height = template.height, "new work"),
                            Err(e) => error!(error = %e, "cannot broadcast work"),
                        }
                        last_template_seq = status.template_seq;
                        last_prev_block = Some(template.previous_block_hash);
                        last_tip = tip;
                        if !serving {
                            stratum.set_availability(Availability::Serving);
                            serving = true;
                        }
                    } else if !serving {
                        // Ready, but no work could be built (the reason is logged above).
                        stratum.set_availability(Availability::Paused {
                            reason: "the node cannot build work for miners; see its log".into(),
                        });
                    }
                }
            }
            (blocker, _) => {
                let reason = blocker.unwrap_or_else(|| "litecoind: no block template".into());
                stratum.set_availability(Availability::Paused { reason });
                serving = false;
            }
        }
        tokio::select! {
            changed = daemon.changed() => if changed.is_err() { return },
            changed = chain.changed() => if changed.is_err() { return },
            changed = ready_rx.changed() => if changed.is_err() { return },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: DaemonState) -> DaemonStatus {
        DaemonStatus {
            state,
            template: None,
            template_seq: 0,
        }
    }

    #[test]
    fn readiness_combines_named_conditions() {
        let mut r = Readiness::starting();
        assert!(!r.is_ready());
        assert_eq!(
            r.blocker().as_deref(),
            Some("litecoind: waiting for its first answer")
        );
        assert!(r.set(DAEMON_CONDITION, true, "ready".into()));
        assert!(r.is_ready());
        assert_eq!(r.blocker(), None);
        // Setting the same state again is no change.
        assert!(!r.set(DAEMON_CONDITION, true, "ready".into()));
        assert!(r.set(SYNC_CONDITION, false, "catching up: 10 of 80 shares".into()));
        assert!(r.set(DAEMON_CONDITION, false, "unreachable".into()));
        assert_eq!(
            r.blocker().as_deref(),
            Some("litecoind: unreachable; share chain: catching up: 10 of 80 shares")
        );
        assert_eq!(r.condition(SYNC_CONDITION).map(|c| c.ready), Some(false));
    }

    #[test]
    fn the_handle_publishes_changes() {
        let handle = ReadinessHandle::default();
        let mut rx = handle.subscribe();
        rx.borrow_and_update();
        handle.set_sync_ready(false, "syncing");
        assert!(rx.has_changed().unwrap());
        assert!(!rx.borrow_and_update().is_ready());
        handle.set_sync_ready(false, "syncing");
        assert!(!rx.has_changed().unwrap(), "no change, no wake-up");
        assert_eq!(
            handle
                .current()
                .condition(SYNC_CONDITION)
                .map(|c| c.reason.clone()),
            Some("syncing".to_string())
        );
    }

    #[tokio::test]
    async fn miners_wait_while_the_share_chain_syncs() {
        let handle = ReadinessHandle::default();
        handle.set(DAEMON_CONDITION, true, "ready");
        let (sync_tx, sync_rx) = watch::channel(SyncState::Alone);
        let mut rx = handle.subscribe();
        let task = tokio::spawn(follow_sync(sync_rx, handle.clone()));
        let until = |want: bool| {
            let mut rx = rx.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    rx.wait_for(|r| r.is_ready() == want),
                )
                .await
                .expect("readiness follows the sync state")
                .expect("the handle lives")
                .clone()
            }
        };
        // Alone: a lone node mines its own chain.
        until(true).await;
        let peer = p2pool_network::PeerId::random();
        sync_tx.send_replace(SyncState::Syncing {
            peer,
            received: 128,
            needed: Some(8647),
        });
        let paused = until(false).await;
        let reason = paused.blocker().unwrap();
        assert!(reason.contains("128 shares of at least 8647"), "{reason}");
        sync_tx.send_replace(SyncState::Synced);
        until(true).await;
        rx.borrow_and_update();
        task.abort();
    }

    #[test]
    fn every_daemon_state_has_a_reason() {
        let states = [
            DaemonState::Connecting,
            DaemonState::Ready,
            DaemonState::Unreachable,
            DaemonState::Unauthorized,
            DaemonState::WrongChain {
                expected: "regtest".into(),
                found: "main".into(),
            },
            DaemonState::WarmingUp("Loading block index".into()),
            DaemonState::Syncing,
            DaemonState::NoTemplate("not connected".into()),
        ];
        for state in states {
            let (ready, reason) = daemon_condition(&status(state.clone()));
            assert!(!ready, "{state:?} without a template is not ready");
            assert!(!reason.is_empty());
        }
        let (_, reason) = daemon_condition(&status(DaemonState::Unauthorized));
        assert!(reason.contains("credentials"), "{reason}");
        let (_, reason) = daemon_condition(&status(DaemonState::WrongChain {
            expected: "regtest".into(),
            found: "main".into(),
        }));
        assert!(
            reason.contains("main") && reason.contains("regtest"),
            "{reason}"
        );
    }
}
