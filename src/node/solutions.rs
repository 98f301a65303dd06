//! Solutions: a miner's header that meets a target becomes a block, a share, or both.
//!
//! A solution that meets the block target goes to litecoind first (every millisecond counts
//! against an orphaned block); one that meets the share target is then connected to the
//! share chain and, when the node is on the network, gossiped.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use share_chain::address::script_to_address;
use share_chain::CoinParams;
use tokio::sync::{broadcast, mpsc};
use tracing::{error, info, warn};

use super::jobs::NodeWork;
use super::NodeEvent;
use crate::chain_service::ChainHandle;
use crate::counters::NodeCounters;
use crate::daemon::rpc::{RpcClient, SubmitOutcome};
use crate::stratum::Solution;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn describe(script: &[u8], coin: &CoinParams) -> String {
    script_to_address(script, coin).unwrap_or_else(|| hex::encode(script))
}

/// Turns miners' solutions into blocks and shares.
pub(super) async fn handle_solutions(
    mut solutions: mpsc::UnboundedReceiver<Solution<NodeWork>>,
    chain: ChainHandle,
    rpc: Arc<RpcClient>,
    coin: CoinParams,
    events: broadcast::Sender<NodeEvent>,
    publish: Option<mpsc::UnboundedSender<Vec<u8>>>,
    counters: Arc<NodeCounters>,
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
            NodeCounters::add(&counters.blocks_submitted, 1);
            let (accepted, result) = match rpc.submit_block(&block).await {
                Ok(SubmitOutcome::Accepted) => {
                    accepted_on = Some(share.header.prev_block);
                    (true, "accepted".to_string())
                }
                Ok(other) => (false, format!("{other:?}")),
                Err(e) => (false, e.to_string()),
            };
            NodeCounters::add(
                if accepted {
                    &counters.blocks_accepted
                } else {
                    &counters.blocks_refused
                },
                1,
            );
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
