//! Which chain a node will join: one with at least a set fraction of a block's work at its
//! own litecoind's target (docs/PROTOCOL.md §11.1 and §13).
//!
//! A new node whose every peer is an attacker would otherwise mine on whatever chain it is
//! offered first. The block target comes from the node's own coin daemon, which no peer
//! controls, so outdoing the minimum costs real hashes at the coin's difficulty. The rule is
//! each node's own policy, not consensus: nodes with different fractions still agree on
//! every share.

use share_chain::{CoinParams, Work};
use tokio::sync::watch;
use tracing::info;

use crate::daemon::watcher::DaemonStatus;
use crate::p2p::MinJoinWork;

/// The default fraction, in millionths of a block's work: 1,000 (a thousandth of a block).
/// On Litecoin's 36-hour window this asks an honest pool for about 1.3 GH/s (a seventh of
/// one L7), and an attacker for a thousandth of a block's hashes (about 5 hours of an L7 at
/// difficulty 40 million).
pub const DEFAULT_MIN_JOIN_WORK_PPM: u32 = 1_000;

/// The least work a chain must have to be joined when the block target is `block_bits`,
/// or `None` if these bits say nothing about the coin's difficulty (a testnet block that
/// took the minimum difficulty after 20 minutes without one).
pub fn min_join_work(coin: &CoinParams, block_bits: u32, ppm: u32) -> Option<Work> {
    if coin.min_difficulty_blocks && block_bits == coin.pow_limit_bits {
        return None;
    }
    let block_work = share_chain::Target::from_compact(block_bits).ok()?.work();
    // block_work / 1e6 × ppm, rounded down; exact for every block_work below 2^108.
    Some(Work(
        (block_work.0 / 1_000_000).saturating_mul(u128::from(ppm)),
    ))
}

/// Follows litecoind's templates and keeps the share-chain network's minimum up to date.
pub(super) async fn follow_block_target(
    mut daemon: watch::Receiver<DaemonStatus>,
    coin: CoinParams,
    ppm: u32,
    setter: MinJoinWork,
) {
    loop {
        let bits = daemon.borrow_and_update().ready_template().map(|t| t.bits);
        if let Some(work) = bits.and_then(|bits| min_join_work(&coin, bits, ppm)) {
            let work = p2pool_network::Work(work.0);
            if setter.get() != work {
                info!(
                    min_join_work = work.0,
                    "the least work of a chain to join follows litecoind's target"
                );
                setter.set(work);
            }
        }
        if daemon.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use share_chain::testkit::regtest_preset;

    fn coin(min_difficulty_blocks: bool) -> CoinParams {
        let mut coin = regtest_preset("").coin;
        coin.pow_limit_bits = 0x1e0f_ffff;
        coin.min_difficulty_blocks = min_difficulty_blocks;
        coin
    }

    #[test]
    fn a_fraction_of_the_block_work() {
        // Litecoin difficulty 1: bits 0x1d00ffff, work 2^32 + 2^16 + 1 hashes ≈ 4.29e9.
        let block = share_chain::Target::from_compact(0x1d00_ffff)
            .unwrap()
            .work()
            .0;
        assert_eq!(
            min_join_work(&coin(false), 0x1d00_ffff, 1_000),
            Some(Work(block / 1_000_000 * 1_000))
        );
        assert_eq!(
            min_join_work(&coin(false), 0x1d00_ffff, 1_000_000),
            Some(Work(block / 1_000_000 * 1_000_000))
        );
        assert_eq!(min_join_work(&coin(false), 0x1d00_ffff, 0), Some(Work(0)));
        // Harder blocks ask for more.
        assert!(
            min_join_work(&coin(false), 0x1c00_ffff, 1_000)
                > min_join_work(&coin(false), 0x1d00_ffff, 1_000)
        );
    }

    #[test]
    fn a_min_difficulty_block_says_nothing() {
        assert_eq!(min_join_work(&coin(true), 0x1e0f_ffff, 1_000), None);
        // The same bits on a coin without the rule are a real (very easy) target.
        assert!(min_join_work(&coin(false), 0x1e0f_ffff, 1_000).is_some());
        // Real bits on a coin with the rule count.
        assert!(min_join_work(&coin(true), 0x1d00_ffff, 1_000).is_some());
    }

    #[test]
    fn invalid_bits_say_nothing() {
        assert_eq!(min_join_work(&coin(false), 0x0180_0000, 1_000), None);
    }
}
