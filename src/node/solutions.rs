//! Solutions: a miner's header that meets a target becomes a block, a share, or both.
//!
//! A solution that meets the block target goes to litecoind first and on its own: each
//! block is submitted by a task of its own (`submitblock`, and in parallel a `block`
//! message on litecoind's P2P port, [`crate::daemon::peer`]), so a slow or saturated RPC
//! never delays the next block, and share-chain work never delays a block. One that meets
//! the share target is then handed to the share task, which connects it to the share chain
//! and, when the node is on the network, gossips it.
//!
//! Money is at stake: every solution dropped is logged as an error with the reason and
//! counted (`solutions_dropped`); every block litecoind refuses, or that could not be
//! delivered, is logged as an error and counted (`blocks_refused`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use share_chain::{CoinParams, Share};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tracing::{error, info, warn};

use super::jobs::NodeWork;
use super::NodeEvent;
use crate::blocks::{self, BlockStatus, FoundBlocks};
use crate::chain_service::ChainHandle;
use crate::counters::NodeCounters;
use crate::daemon::aux::AuxDaemon;
use crate::daemon::peer::DaemonPeer;
use crate::daemon::rpc::{RpcClient, RpcError, SubmitOutcome};
use crate::stratum::Solution;
use crate::work::{FoundAuxBlock, WorkPayload};

/// Blocks being submitted at once; beyond this a block solution is dropped (each is a real
/// proof of work, so only regtest or a flood of stale blocks gets here).
const MAX_SUBMISSIONS_IN_FLIGHT: usize = 32;

/// Shares waiting for the share chain; beyond this a share is dropped.
const SHARE_QUEUE: usize = 1024;

/// When `submitblock` fails but the block went out over P2P, how long to wait for litecoind
/// to announce it as its new tip (which confirms it).
const P2P_CONFIRMATION: Duration = Duration::from_secs(10);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A chain's last block its daemon accepted from this node.
#[derive(Clone, Copy, PartialEq, Eq)]
struct LastAccepted {
    prev_block: [u8; 32],
    hash: [u8; 32],
}

/// What a block submission needs, shared by the submission tasks.
pub(super) struct Submitter {
    pub rpc: Arc<RpcClient>,
    /// litecoind's P2P port, when the node connects to it.
    pub peer: Option<Arc<DaemonPeer>>,
    /// The aux daemons (merged mining).
    pub aux: Vec<Arc<AuxDaemon>>,
    pub events: broadcast::Sender<NodeEvent>,
    pub counters: Arc<NodeCounters>,
    /// The found-blocks list, where the aux blocks only this node knows of go.
    pub blocks: Arc<FoundBlocks>,
    /// For each chain (`None`: the parent chain), the last block its daemon accepted from
    /// us, as `(previous block, hash)`: more blocks on that previous block are stale, not
    /// worth a submission (on regtest, where nearly every hash is a block on every chain,
    /// they would flood the daemons), and the same block accepted again (two solutions of
    /// one job are one aux block) is not counted twice.
    accepted_on: Mutex<HashMap<Option<String>, LastAccepted>>,
    in_flight: Arc<Semaphore>,
}

impl Submitter {
    pub fn new(
        rpc: Arc<RpcClient>,
        peer: Option<Arc<DaemonPeer>>,
        aux: Vec<Arc<AuxDaemon>>,
        events: broadcast::Sender<NodeEvent>,
        counters: Arc<NodeCounters>,
        blocks: Arc<FoundBlocks>,
    ) -> Self {
        Submitter {
            rpc,
            peer,
            aux,
            events,
            counters,
            blocks,
            accepted_on: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(MAX_SUBMISSIONS_IN_FLIGHT)),
        }
    }

    /// Whether `chain`'s daemon already accepted a block on `prev_block`.
    fn is_stale(&self, chain: Option<&str>, prev_block: &[u8; 32]) -> bool {
        lock(&self.accepted_on)
            .iter()
            .any(|(c, last)| c.as_deref() == chain && last.prev_block == *prev_block)
    }

    /// Notes that `chain`'s daemon accepted block `hash` on `prev_block`; false when that
    /// very block was the last one noted (already counted).
    fn note_accepted(&self, chain: Option<String>, prev_block: [u8; 32], hash: [u8; 32]) -> bool {
        let last = LastAccepted { prev_block, hash };
        lock(&self.accepted_on).insert(chain, last) != Some(last)
    }
}

/// Counts and logs a dropped solution.
fn drop_solution(counters: &NodeCounters, miner: &str, reason: &str) {
    NodeCounters::add(&counters.solutions_dropped, 1);
    error!(reason, "solution by {miner} dropped: {reason}");
}

/// A found block on its way to litecoind.
struct FoundBlock {
    bytes: Vec<u8>,
    share_hash: share_chain::ShareHash,
    prev_block: [u8; 32],
    height: u32,
    miner: String,
    payouts: Vec<(String, u64)>,
}

/// Turns miners' solutions into blocks and shares.
pub(super) async fn handle_solutions(
    mut solutions: mpsc::UnboundedReceiver<Solution<NodeWork>>,
    chain: ChainHandle,
    submitter: Arc<Submitter>,
    coin: CoinParams,
    publish: Option<mpsc::UnboundedSender<Vec<u8>>>,
) {
    let counters = submitter.counters.clone();
    let (shares_tx, shares_rx) = mpsc::channel(SHARE_QUEUE);
    let share_task = tokio::spawn(connect_shares(
        shares_rx,
        chain,
        submitter.events.clone(),
        publish,
    ));
    while let Some(solution) = solutions.recv().await {
        let payload = &solution.job.payload;
        let miner = blocks::describe_script(&solution.miner.script, &coin);
        let mut extranonce = solution.extranonce1.to_vec();
        extranonce.extend_from_slice(&solution.extranonce2);
        let share = payload.share_for(
            &extranonce,
            solution.version,
            solution.ntime,
            solution.nonce,
        );
        if share.header.to_bytes() != solution.header {
            drop_solution(
                &counters,
                &miner,
                "its header does not match the share rebuilt from its job",
            );
            continue;
        }
        if solution.meets_block_target {
            // The block first: every millisecond counts against an orphaned block.
            let prev_block = share.header.prev_block;
            if submitter.is_stale(None, &prev_block) {
                drop_solution(
                    &counters,
                    &miner,
                    "stale block: litecoind already accepted a block on the same previous block",
                );
            } else {
                match submitter.in_flight.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let found = FoundBlock {
                            bytes: payload.block_bytes(&share),
                            share_hash: share.hash(),
                            prev_block,
                            height: payload.block.height,
                            miner: miner.clone(),
                            payouts: payload
                                .share
                                .payouts
                                .iter()
                                .map(|p| (blocks::describe_script(&p.script, &coin), p.amount))
                                .collect(),
                        };
                        NodeCounters::add(&counters.blocks_submitted, 1);
                        let submitter = submitter.clone();
                        tokio::spawn(async move {
                            submit_block(&submitter, found).await;
                            drop(permit);
                        });
                    }
                    Err(_) => drop_solution(
                        &counters,
                        &miner,
                        "block: too many block submissions already in flight",
                    ),
                }
            }
        }
        if solution.meets_aux_target {
            submit_aux_blocks(
                &submitter,
                payload,
                &share,
                &solution.pow_hash,
                &coin,
                &miner,
            );
        }
        if solution.meets_share_target {
            match shares_tx.try_send((share, miner)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full((_, miner))) => {
                    drop_solution(&counters, &miner, "share: the share-chain queue is full")
                }
                Err(mpsc::error::TrySendError::Closed((_, miner))) => {
                    drop_solution(&counters, &miner, "share: the share task stopped")
                }
            }
        }
    }
    drop(shares_tx);
    let _ = share_task.await;
}

/// Hands a found block to litecoind by RPC and P2P at once; reports what became of it.
async fn submit_block(submitter: &Submitter, found: FoundBlock) {
    let block_hash = share_chain::hash::sha256d(&found.bytes[..80.min(found.bytes.len())]);
    // Listen before relaying, so litecoind's announcement of the block cannot be missed.
    let mut announcements = submitter.peer.as_ref().map(|p| p.announcements());
    let relayed = match &submitter.peer {
        Some(peer) => peer
            .relay_block(found.bytes.clone())
            .map_err(|e| e.to_string()),
        None => Err("no P2P connection configured".to_string()),
    };
    let submitted = submitter.rpc.submit_block(&found.bytes).await;
    let (accepted, result) = match submitted {
        Ok(SubmitOutcome::Accepted) => (true, "accepted".to_string()),
        // Already there: it came first over P2P. Ours only if it is on the best chain:
        // another block on the same previous block may have come first (blocks are
        // submitted in parallel), and then litecoind keeps ours on a side branch. (A block
        // litecoind refused is "duplicate-invalid", a rejection.)
        Ok(SubmitOutcome::Duplicate) => match submitter.rpc.block_in_best_chain(block_hash).await {
            Ok(true) => (true, "accepted (relayed over P2P first)".to_string()),
            Ok(false) => (
                false,
                "Inconclusive: relayed over P2P, on a side branch (another block on the same \
                 previous block came first)"
                    .to_string(),
            ),
            Err(rpc_error) => {
                confirm_over_p2p(&relayed, announcements.as_mut(), block_hash, &rpc_error).await
            }
        },
        Ok(other) => (false, format!("{other:?}")),
        Err(rpc_error) => {
            if rpc_error.is_saturation() {
                error!(error = %rpc_error, "submitblock failed: litecoind's RPC is saturated (raise -rpcthreads and -rpcworkqueue)");
            }
            confirm_over_p2p(&relayed, announcements.as_mut(), block_hash, &rpc_error).await
        }
    };
    if let Err(reason) = &relayed {
        warn!(%reason, "block not relayed over P2P");
    }
    let counters = &submitter.counters;
    if accepted {
        if submitter.note_accepted(None, found.prev_block, found.share_hash.0) {
            NodeCounters::add(&counters.blocks_accepted, 1);
        }
        info!(
            block = %found.share_hash,
            height = found.height,
            %result,
            outputs = found.payouts.len(),
            "block found by {}",
            found.miner
        );
    } else {
        NodeCounters::add(&counters.blocks_refused, 1);
        error!(
            block = %found.share_hash,
            height = found.height,
            %result,
            "block by {} NOT accepted by litecoind: {result}",
            found.miner
        );
    }
    let _ = submitter.events.send(NodeEvent::BlockSubmitted {
        hash: found.share_hash,
        height: found.height,
        accepted,
        result,
        payouts: found.payouts,
    });
}

/// Submits every aux block `share` (with proof-of-work hash `pow_hash`) is, each on a task
/// of its own; one that cannot be built is an error, counted.
fn submit_aux_blocks(
    submitter: &Arc<Submitter>,
    payload: &WorkPayload,
    share: &Share,
    pow_hash: &[u8; 32],
    coin: &CoinParams,
    miner: &str,
) {
    let counters = &submitter.counters;
    for found in payload.aux_blocks(share, pow_hash, coin.pow) {
        let found = match found {
            Ok(found) => found,
            Err(reason) => {
                NodeCounters::add(&counters.aux_blocks_refused, 1);
                error!(%reason, "aux block by {miner} not submitted: {reason}");
                continue;
            }
        };
        let Some(daemon) = submitter
            .aux
            .iter()
            .find(|d| d.chain().is_some_and(|c| c.chain == found.chain.chain))
            .cloned()
        else {
            continue;
        };
        if submitter.is_stale(Some(&found.chain.chain), &found.prev_block) {
            // Its daemon already took a block on the same previous block: not worth a call.
            continue;
        }
        NodeCounters::add(&counters.aux_blocks_submitted, 1);
        let submitter = submitter.clone();
        let miner = miner.to_string();
        tokio::spawn(async move {
            submit_aux_block(&submitter, &daemon, found, &miner).await;
        });
    }
}

/// Hands a found aux block to its daemon; reports what became of it.
async fn submit_aux_block(
    submitter: &Submitter,
    daemon: &AuxDaemon,
    found: FoundAuxBlock,
    miner: &str,
) {
    let (accepted, result) = match daemon.submit(&found.bytes).await {
        Ok(SubmitOutcome::Accepted) => (true, "accepted".to_string()),
        Ok(SubmitOutcome::Duplicate) => match daemon.in_best_chain(found.hash).await {
            Ok(true) => (true, "accepted (already known)".to_string()),
            Ok(false) => (false, "Inconclusive: on a side branch".to_string()),
            Err(e) => (false, format!("duplicate, and its place is unknown: {e}")),
        },
        Ok(other) => (false, format!("{other:?}")),
        Err(e) => (false, format!("not delivered: {e}")),
    };
    let hash = blocks::display_hex(found.hash);
    let chain = found.chain.chain.clone();
    let counters = &submitter.counters;
    if accepted {
        if submitter.note_accepted(Some(chain.clone()), found.prev_block, found.hash) {
            NodeCounters::add(&counters.aux_blocks_accepted, 1);
        }
        info!(
            %chain,
            block = %hash,
            height = found.height,
            outputs = found.payouts.len(),
            "aux block found by {miner}"
        );
        submitter.blocks.record_submitted(blocks::FoundBlock {
            aux_chain: Some(chain.clone()),
            hash: hash.clone(),
            parent_header: Some(found.parent_header.to_string()),
            height: Some(u64::from(found.height)),
            finder: found.finder.as_deref().map_or_else(
                || "none".into(),
                |s| blocks::describe_aux_script(s, &found.chain),
            ),
            time: found.time,
            value: found.value,
            payouts: blocks::aux_paid_outputs(&found.payouts, &found.chain),
            status: BlockStatus::Pending,
            confirmations: 0,
            seen: now_secs(),
        });
    } else {
        NodeCounters::add(&counters.aux_blocks_refused, 1);
        error!(
            %chain,
            block = %hash,
            height = found.height,
            %result,
            "aux block by {miner} NOT accepted: {result}"
        );
    }
    let _ = submitter.events.send(NodeEvent::AuxBlockSubmitted {
        payouts: blocks::aux_paid_outputs(&found.payouts, &found.chain)
            .into_iter()
            .map(|p| (p.address, p.amount))
            .collect(),
        chain,
        hash: found.hash,
        height: found.height,
        accepted,
        result,
    });
}

/// When RPC failed (`rpc_error`): whether the block went out over P2P and litecoind
/// announced it as its new tip; the outcome and what to log.
async fn confirm_over_p2p(
    relayed: &Result<(), String>,
    announcements: Option<&mut broadcast::Receiver<[u8; 32]>>,
    block_hash: [u8; 32],
    rpc_error: &RpcError,
) -> (bool, String) {
    match (relayed, announcements) {
        (Ok(()), Some(rx)) => {
            if announced(rx, block_hash).await {
                (true, format!("accepted over P2P (RPC: {rpc_error})"))
            } else {
                (
                    false,
                    format!("relayed over P2P but not confirmed; RPC: {rpc_error}"),
                )
            }
        }
        (Err(p2p), _) => (
            false,
            format!("not delivered: RPC: {rpc_error}; P2P: {p2p}"),
        ),
        (Ok(()), None) => (false, format!("not delivered: RPC: {rpc_error}")),
    }
}

/// Whether litecoind announces `hash` over P2P within [`P2P_CONFIRMATION`].
async fn announced(rx: &mut broadcast::Receiver<[u8; 32]>, hash: [u8; 32]) -> bool {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(h) if h == hash => return true,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    };
    tokio::time::timeout(P2P_CONFIRMATION, wait)
        .await
        .unwrap_or(false)
}

/// Connects shares to the share chain in the order they were found, and gossips them.
async fn connect_shares(
    mut shares: mpsc::Receiver<(Share, String)>,
    chain: ChainHandle,
    events: broadcast::Sender<NodeEvent>,
    publish: Option<mpsc::UnboundedSender<Vec<u8>>>,
) {
    while let Some((share, miner)) = shares.recv().await {
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
