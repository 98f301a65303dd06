//! Counters of what the node did with money at stake: blocks submitted, refused, solutions
//! dropped, template transactions left out to fit the coinbase.
//!
//! The parts that do the work (solution handling, job building, the daemon client) hold an
//! `Arc<NodeCounters>` and increment it; the API renders it as Prometheus metrics at each
//! scrape. Plain atomics: nothing here is consensus, and a reader may see one counter a
//! moment ahead of another.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters since the node started.
#[derive(Debug, Default)]
pub struct NodeCounters {
    /// Blocks handed to litecoind (by RPC or its P2P port).
    pub blocks_submitted: AtomicU64,
    /// Blocks litecoind accepted.
    pub blocks_accepted: AtomicU64,
    /// Blocks litecoind refused or that could not be delivered: money lost.
    pub blocks_refused: AtomicU64,
    /// Solutions (block or share) dropped before reaching litecoind or the share chain.
    pub solutions_dropped: AtomicU64,
    /// Template transactions left out so the coinbase fits the block's limits.
    pub template_txs_dropped: AtomicU64,
    /// Their summed weight.
    pub template_weight_dropped: AtomicU64,
    /// Found blocks whose coinbase `verifyblockpayout` found different from the share
    /// chain's prescription.
    pub payout_mismatches: AtomicU64,
    /// Aux blocks (merged mining) handed to their daemons.
    pub aux_blocks_submitted: AtomicU64,
    /// Aux blocks their daemons accepted.
    pub aux_blocks_accepted: AtomicU64,
    /// Aux blocks refused, undeliverable, or not built: money lost.
    pub aux_blocks_refused: AtomicU64,
}

impl NodeCounters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
