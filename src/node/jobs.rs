//! Jobs for miners: a round of work per block template and share-chain tip, one coinbase
//! per payout address.
//!
//! Each payout address gets its own coinbase (the share's own credit and the finder bonus
//! go to it). When work changes, the jobs of every address mined in the last round are
//! built ahead, off the event loop; a new address gets its job built on a task the first
//! time a connection needs it. [`feed_jobs`] starts a round whenever litecoind has a new
//! template or the share chain a new tip, and pauses Stratum while the node is not ready.
//!
//! Before a round's jobs are built, the template is fitted to the round's coinbase
//! ([`crate::block_fit`]): transactions are left out until any miner's coinbase of the
//! round fits the block's weight and sigop limits. The fit is kept for the template's
//! later rounds (a new share tip) while its coinbase reservation still holds, and every
//! job's coinbase is checked against that reservation before a miner gets it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use share_chain::address::{address_to_script, aux_address_to_script};
use share_chain::params::AuxChainParams;
use share_chain::template::{BlockContext, MinerPayout, ShareTemplate};
use share_chain::{CoinParams, OperatorFee, ShareHash};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, error, info};

use super::readiness::{daemon_condition, Readiness, ReadinessHandle, DAEMON_CONDITION};
use super::NodeEvent;
use crate::block_fit::{fit_template, CoinbaseReserve, Fitted};
use crate::chain_service::{ChainHandle, ChainSummary};
use crate::counters::NodeCounters;
use crate::daemon::aux::AuxTemplate;
use crate::daemon::template::BlockTemplate;
use crate::daemon::watcher::{DaemonState, DaemonStatus};
use crate::stratum::{
    Availability, Job, JobTemplate, Personalized, Solution, StratumServer, Username, WorkSource,
};
use crate::work::{block_context, build_work, coinbase_context, WorkPayload};

/// A payout address's job being built: every session of that address waits on one build.
type SharedBuild = Shared<BoxFuture<'static, Option<Arc<Job<WorkPayload>>>>>;
/// Each payout address's finished job of one round.
type RoundJobs = HashMap<Payee, Arc<Job<WorkPayload>>>;

/// Who a miner's shares pay: its payout script, and its aux-chain script if it named one
/// (`ADDRESS,AUX_ADDRESS`; else the share chain derives it, docs/PROTOCOL.md §15). Each payee
/// gets its own coinbase, so its own job.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Payee {
    pub script: Vec<u8>,
    pub aux_script: Option<Vec<u8>>,
}

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
    jobs: HashMap<Payee, Slot>,
    /// The round before, for sessions that read its broadcast just as this one was built.
    previous: Option<(u64, RoundJobs)>,
    /// Payout addresses connections asked jobs for, and when last: jobs are built ahead for
    /// these.
    known: HashMap<Payee, Instant>,
}

/// An address no connection asked a job for this long gets no job built ahead.
const KNOWN_ADDRESS_TTL: Duration = Duration::from_secs(600);
/// Jobs are built ahead for at most this many addresses (the most recently seen): a flood
/// of connections with fresh addresses must not make every round unboundedly long.
const MAX_KNOWN_ADDRESSES: usize = 10_000;

/// What a job of the current round is built from.
#[derive(Clone)]
struct Round {
    /// The fitted template.
    block: Arc<BlockTemplate>,
    context: BlockContext,
    /// What the block leaves for the coinbase: no job's coinbase may cost more.
    reserve: CoinbaseReserve,
    clean: bool,
    /// The aux daemons' templates the round merge-mines (their blocks are in `context`).
    aux: Vec<Arc<AuxTemplate>>,
}

/// A template fitted for a round, kept for the next rounds on the same template.
#[derive(Clone)]
struct RoundFit {
    /// The template as litecoind gave it.
    source: Arc<BlockTemplate>,
    fitted: Fitted,
    context: BlockContext,
}

/// How many times a round refits with a grown reservation before giving up (the second
/// attempt holds unless the fees left out change the payouts' count).
const MAX_FIT_ATTEMPTS: usize = 4;

/// The node's side of the Stratum server.
pub struct NodeWork {
    coin: CoinParams,
    chain: ChainHandle,
    fee: Option<OperatorFee>,
    cache: Arc<Mutex<JobCache>>,
    next_generation: AtomicU64,
    solutions: mpsc::UnboundedSender<Solution<NodeWork>>,
    counters: Arc<NodeCounters>,
    /// The last template's fit.
    fit: Mutex<Option<RoundFit>>,
    /// The aux daemons' newest templates (merged mining), ascending by chain id.
    aux: watch::Receiver<Vec<Arc<AuxTemplate>>>,
    /// The aux chains of the preset, to read miners' aux addresses.
    aux_chains: Vec<AuxChainParams>,
}

/// The payout script of the broadcast job, which is always personalized before a miner sees
/// it: standard (a share must be) and unspendable, so that should such work ever be mined,
/// no one can take what it pays.
const PLACEHOLDER_SCRIPT: &[u8] = &share_chain::script::UNSPENDABLE_SCRIPT;

fn placeholder() -> Payee {
    Payee {
        script: PLACEHOLDER_SCRIPT.to_vec(),
        aux_script: None,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // What these mutexes hold has no invariant a panic could break halfway: keep using it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The Stratum job of `share` on `block` (CPU work: coinbase halves and their hex), if its
/// coinbase fits the room `reserve` the block left for it.
fn job_template(
    share: ShareTemplate,
    block: Arc<BlockTemplate>,
    aux: Vec<Arc<AuxTemplate>>,
    reserve: CoinbaseReserve,
    clean: bool,
    generation: u64,
) -> Option<JobTemplate<WorkPayload>> {
    let cost = CoinbaseReserve::exact(&share, block.height);
    if !reserve.covers(&cost) {
        // A block with this coinbase would be over the limits: no job rather than work that
        // cannot pay. The next round (a new tip or template) reserves more.
        error!(
            weight = cost.weight,
            sigops = cost.sigops,
            reserved_weight = reserve.weight,
            reserved_sigops = reserve.sigops,
            "a coinbase outgrew the room reserved in the block"
        );
        return None;
    }
    let mut work = match build_work(share, block.clone(), aux) {
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
        aux_target: work.payload.aux_target(),
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
    pub(super) fn new(
        coin: CoinParams,
        chain: ChainHandle,
        fee: Option<OperatorFee>,
        solutions: mpsc::UnboundedSender<Solution<NodeWork>>,
        counters: Arc<NodeCounters>,
        aux: watch::Receiver<Vec<Arc<AuxTemplate>>>,
        aux_chains: Vec<AuxChainParams>,
    ) -> Self {
        NodeWork {
            coin,
            chain,
            fee,
            cache: Arc::new(Mutex::new(JobCache::default())),
            next_generation: AtomicU64::new(0),
            solutions,
            counters,
            fit: Mutex::new(None),
            aux,
            aux_chains,
        }
    }

    /// The script of a miner's aux address: valid on one of the preset's aux chains.
    fn aux_address_script(&self, address: &str) -> Result<Vec<u8>, String> {
        let mut last = "this network merge-mines no aux chain".to_string();
        for chain in &self.aux_chains {
            match aux_address_to_script(address, chain) {
                Ok(script) => return Ok(script),
                Err(e) => last = format!("aux address: {e}"),
            }
        }
        Err(last)
    }

    /// What any coinbase of a round on `context` can cost: from the placeholder's share
    /// template on the current tip ([`CoinbaseReserve::for_round`]).
    async fn round_reserve(&self, context: BlockContext, height: u32) -> Option<CoinbaseReserve> {
        let miner = self.payout(&placeholder());
        let reserve = self
            .chain
            .call(move |c| {
                let index = c.index_mut();
                let max_outputs = index.params().max_payout_outputs;
                index
                    .share_template(&miner, context)
                    .map(|share| CoinbaseReserve::for_round(&share, height, max_outputs))
            })
            .await;
        built_or_logged(reserve)
    }

    /// `block` fitted for this round: the last fit while the template is the same and its
    /// reservation still holds the round's coinbases, else a new one (logged and counted
    /// when it leaves transactions out).
    async fn fit_round(&self, block: &Arc<BlockTemplate>) -> Option<RoundFit> {
        let cached = lock(&self.fit)
            .as_ref()
            .filter(|f| Arc::ptr_eq(&f.source, block))
            .cloned();
        let mut reserve = cached.as_ref().map(|f| f.fitted.reserve);
        let mut context = cached
            .as_ref()
            .map_or_else(|| coinbase_context(block), |f| f.context.clone());
        let mut fresh: Option<RoundFit> = None;
        for _ in 0..MAX_FIT_ATTEMPTS {
            let needed = self.round_reserve(context.clone(), block.height).await?;
            if let Some(reserve) = reserve.filter(|r| r.covers(&needed)) {
                let Some(fit) = fresh.or(cached) else {
                    break;
                };
                debug_assert_eq!(fit.fitted.reserve, reserve);
                return Some(self.adopt(fit));
            }
            let grown = reserve.map_or(needed, |r| r.max(needed));
            reserve = Some(grown);
            let source = block.clone();
            let fit = tokio::task::spawn_blocking(move || {
                fit_template(&source, grown).map(|fitted| {
                    let context = block_context(&fitted.template);
                    RoundFit {
                        source,
                        fitted,
                        context,
                    }
                })
            })
            .await;
            let fit = match fit {
                Ok(Ok(fit)) => fit,
                Ok(Err(e)) => {
                    error!(height = block.height, error = %e, "cannot fit the coinbase into the block");
                    return None;
                }
                Err(e) => {
                    error!(error = %e, "cannot fit the coinbase into the block");
                    return None;
                }
            };
            context = fit.context.clone();
            fresh = Some(fit);
        }
        error!(
            height = block.height,
            "the coinbase kept outgrowing the room made for it in the block"
        );
        None
    }

    /// Makes `fit` the current one; a new fit that left transactions out is logged and
    /// counted (once per fit, not once per round on it).
    fn adopt(&self, fit: RoundFit) -> RoundFit {
        let mut current = lock(&self.fit);
        let is_new = !current.as_ref().is_some_and(|c| {
            Arc::ptr_eq(&c.source, &fit.source)
                && Arc::ptr_eq(&c.fitted.template, &fit.fitted.template)
        });
        if is_new {
            let dropped = fit.fitted.dropped;
            if dropped.count > 0 {
                info!(
                    height = fit.source.height,
                    dropped = dropped.count,
                    weight = dropped.weight,
                    fees = dropped.fees,
                    kept = fit.fitted.template.transactions.len(),
                    reserved_weight = fit.fitted.reserve.weight,
                    reserved_sigops = fit.fitted.reserve.sigops,
                    "left template transactions out so the coinbase fits the block"
                );
                NodeCounters::add(&self.counters.template_txs_dropped, dropped.count);
                NodeCounters::add(&self.counters.template_weight_dropped, dropped.weight);
            }
            *current = Some(fit.clone());
        }
        fit
    }

    fn payout(&self, payee: &Payee) -> MinerPayout {
        MinerPayout {
            script: payee.script.clone(),
            aux_script: payee.aux_script.clone(),
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
        let fit = self.fit_round(&block).await?;
        let block = fit.fitted.template;
        let reserve = fit.fitted.reserve;
        let mut context = fit.context;
        // The aux blocks to merge-mine: the share chain makes their coinbases pay the window.
        let aux = self.aux.borrow().clone();
        context.aux = aux.iter().map(|t| t.block.clone()).collect();
        let mut miners = vec![self.payout(&placeholder())];
        {
            let mut cache = lock(&self.cache);
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
            miners.extend(cache.known.keys().map(|payee| self.payout(payee)));
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
                        let payee = Payee {
                            script: m.script,
                            aux_script: m.aux_script,
                        };
                        (payee, share)
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
        let aux_for_jobs = aux.clone();
        let built = tokio::task::spawn_blocking(move || {
            let mut broadcast = None;
            let mut jobs = HashMap::new();
            for (i, (payee, share)) in shares.into_iter().enumerate() {
                let share = match share {
                    Ok(share) => share,
                    Err(e) => {
                        error!(error = %e, "cannot build a share template");
                        continue;
                    }
                };
                let Some(template) = job_template(
                    share,
                    for_jobs.clone(),
                    aux_for_jobs.clone(),
                    reserve,
                    clean,
                    generation,
                ) else {
                    continue;
                };
                if i == 0 {
                    broadcast = Some(template);
                } else if let Some(job) = prepared_job(template, generation) {
                    jobs.insert(payee, Slot::Ready(job));
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
        let mut cache = lock(&self.cache);
        let finished: RoundJobs = cache
            .jobs
            .iter()
            .filter_map(|(payee, slot)| match slot {
                Slot::Ready(job) => Some((payee.clone(), job.clone())),
                Slot::Building(_) => None,
            })
            .collect();
        cache.previous = Some((cache.generation, finished));
        cache.generation = generation;
        cache.round = Some(Round {
            block,
            context,
            reserve,
            clean,
            aux,
        });
        cache.jobs = jobs;
        debug!(generation, ahead = cache.jobs.len(), "jobs built ahead");
        Some(broadcast)
    }

    /// Builds `payee`'s job of the current round on a task (the chain thread for the share
    /// template, then the coinbase); the result lands in the cache and in the future.
    fn spawn_build(&self, generation: u64, round: Round, payee: Payee) -> Option<SharedBuild> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let chain = self.chain.clone();
        let cache = self.cache.clone();
        let miner = self.payout(&payee);
        let task = runtime.spawn(async move {
            let Round {
                block,
                context,
                reserve,
                clean,
                aux,
            } = round;
            let share = chain
                .call(move |c| c.index_mut().share_template(&miner, context))
                .await;
            let job = built_or_logged(share).and_then(|share| {
                job_template(share, block, aux, reserve, clean, generation)
                    .and_then(|t| prepared_job(t, generation))
            });
            let mut cache = lock(&cache);
            if cache.generation == generation {
                match &job {
                    Some(job) => {
                        if let Some(slot) = cache.jobs.get_mut(&payee) {
                            *slot = Slot::Ready(job.clone());
                        }
                    }
                    // Let the next request try again.
                    None => {
                        cache.jobs.remove(&payee);
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
    type Identity = Payee;
    type Payload = WorkPayload;

    fn validate_username(&self, username: &Username) -> Result<Payee, String> {
        let script = address_to_script(&username.address, &self.coin).map_err(|e| e.to_string())?;
        let aux_script = match &username.aux_address {
            None => None,
            Some(aux) => Some(self.aux_address_script(aux)?),
        };
        if aux_script.is_none()
            && !self.aux_chains.is_empty()
            && share_chain::script::derived_aux_script(&script).is_none()
        {
            // Not refused: its aux part goes to the rest of the window, by the rules.
            info!(
                username = %username,
                "miner's address has no aux-chain form and it gave no aux address \
                 (ADDRESS,AUX_ADDRESS): it is not paid on merge-mined chains"
            );
        }
        Ok(Payee { script, aux_script })
    }

    fn on_solution(&self, solution: Solution<Self>) {
        let _ = self.solutions.send(solution);
    }

    fn personalize(&self, job: &Arc<Job<WorkPayload>>, miner: &Payee) -> Personalized<WorkPayload> {
        let generation = job.template.payload.generation;
        let mut cache = lock(&self.cache);
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

/// Rebuilds work whenever the daemon has a new template or the chain a new tip, and pauses
/// Stratum while the node is not ready (see [`Readiness`]).
pub(super) async fn feed_jobs(
    mut daemon: watch::Receiver<DaemonStatus>,
    mut chain: watch::Receiver<ChainSummary>,
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
    let mut aux = work.aux.clone();
    loop {
        // A new aux block is new work too (not clean: the parent work still counts).
        let new_aux = aux.has_changed().unwrap_or(false);
        aux.mark_unchanged();
        let status = daemon.borrow_and_update().clone();
        let tip = chain.borrow_and_update().tip;
        let (daemon_ready, reason) = daemon_condition(&status);
        readiness.set(DAEMON_CONDITION, daemon_ready, reason);
        // After readiness follows it: whoever hears of the state sees readiness agree.
        if last_state.as_ref() != Some(&status.state) {
            let _ = events.send(NodeEvent::DaemonState(status.state.clone()));
            last_state = Some(status.state.clone());
        }
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
                if new_template || new_tip || new_aux || !serving {
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
            changed = aux.changed() => if changed.is_err() { return },
        }
    }
}

/// A share template built on the chain thread, or `None` with the reason logged (the chain
/// refused, or its thread is gone).
fn built_or_logged<T>(
    built: Result<Result<T, impl std::fmt::Display>, impl std::fmt::Display>,
) -> Option<T> {
    let built = built
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match built {
        Ok(t) => Some(t),
        Err(e) => {
            error!(error = %e, "cannot build a share template");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The broadcast job's payout must pass the share format (a standard script) and pay
    /// no one (not `OP_TRUE`, which anyone could spend).
    #[test]
    fn placeholder_payout_is_standard_and_unspendable() {
        use share_chain::script::{ScriptKind, UNSPENDABLE_SCRIPT};
        assert_eq!(ScriptKind::of(PLACEHOLDER_SCRIPT), Some(ScriptKind::P2wsh));
        assert_eq!(PLACEHOLDER_SCRIPT, UNSPENDABLE_SCRIPT);
    }
}
