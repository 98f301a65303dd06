//! Sync answers on the best chain: the locator a catching-up node sends, and the shares a
//! node answers a locator with (`GetShares`, docs/PROTOCOL.md §13).
//!
//! Both are answered from the index's height index of the best chain
//! ([`ChainIndex::best_at`]): a locator hash costs one lookup, an answered share one lookup,
//! whatever the chain's length. Walking ancestors instead let one request of locator hashes
//! deep in the chain make the chain thread walk thousands of shares per hash.

use crate::chain::ChainIndex;
use crate::hash::ShareHash;

/// The encoded shares of our best chain after the first `locator` hash on it (from our
/// oldest share if none is), oldest first, at most `max`, ending at `stop` if it is on the
/// way. Costs O(`locator.len()` + answer).
pub fn shares_after(
    index: &ChainIndex,
    locator: &[ShareHash],
    stop: Option<ShareHash>,
    max: u32,
) -> Vec<Vec<u8>> {
    let (Some(best), Some(oldest)) = (index.best(), index.best_oldest()) else {
        return Vec::new();
    };
    let start = locator
        .iter()
        .find(|h| index.on_best_chain(h))
        .and_then(|h| index.get(h))
        .map_or(oldest.height, |e| e.height + 1);
    if max == 0 || start > best.height {
        return Vec::new();
    }
    let mut end = best.height.min(start.saturating_add(u64::from(max) - 1));
    if let Some(stop) = stop.and_then(|s| index.get(&s)) {
        if (start..=end).contains(&stop.height) && index.on_best_chain(&stop.hash) {
            end = stop.height;
        }
    }
    (start..=end)
        .map_while(|height| index.best_at(height).and_then(|h| index.get(&h)))
        .map(|e| e.share.encode())
        .collect()
}

/// A locator of our best chain: the tip, then hashes 1, 2, 4, 8, ... shares back, and the
/// oldest share we hold; at most `max` hashes. Costs O(log(chain length)).
pub fn locator(index: &ChainIndex, max: usize) -> Vec<ShareHash> {
    let (Some(best), Some(oldest)) = (index.best(), index.best_oldest()) else {
        return Vec::new();
    };
    if max == 0 {
        return Vec::new();
    }
    let depth = best.height.saturating_sub(oldest.height);
    let mut out = Vec::new();
    let mut back = 0u64;
    while back <= depth && out.len() < max {
        out.extend(index.best_at(best.height - back));
        back = if back == 0 { 1 } else { back.saturating_mul(2) };
    }
    if out.last() != Some(&oldest.hash) {
        if out.len() == max {
            out.pop();
        }
        out.push(oldest.hash);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::Share;
    use crate::testkit::{grow_chain, mine_share, miner, regtest_preset};

    const T0: u32 = 1_700_000_000;

    fn chain(n: usize) -> (ChainIndex, Vec<Share>) {
        let mut index = ChainIndex::new(&regtest_preset("[consensus]\nwindow_shares = 20\n"));
        let shares = grow_chain(&mut index, n, 3, T0);
        (index, shares)
    }

    fn hashes(encoded: &[Vec<u8>]) -> Vec<ShareHash> {
        encoded
            .iter()
            .map(|b| Share::decode(b).unwrap().hash())
            .collect()
    }

    #[test]
    fn locator_is_dense_near_the_tip_and_ends_at_the_oldest() {
        let (index, shares) = chain(40);
        let loc = locator(&index, 64);
        let back = |i: usize| shares[shares.len() - 1 - i].hash();
        let expected: Vec<ShareHash> = [0, 1, 2, 4, 8, 16, 32, 39]
            .iter()
            .map(|&i| back(i))
            .collect();
        assert_eq!(loc, expected);
        let short = locator(&index, 3);
        assert_eq!(short, vec![back(0), back(1), back(39)]);
        assert_eq!(locator(&index, 1), vec![back(39)]);
        assert!(locator(&index, 0).is_empty());
        assert!(locator(&ChainIndex::new(&regtest_preset("")), 64).is_empty());
        // Exactly a power of two deep: the oldest is not listed twice.
        let (index, shares) = chain(33);
        let loc = locator(&index, 64);
        assert_eq!(loc.len(), 7);
        assert_eq!(loc.last(), Some(&shares[0].hash()));
    }

    #[test]
    fn shares_after_follow_the_first_known_locator_hash() {
        let (index, shares) = chain(12);
        let all: Vec<ShareHash> = shares.iter().map(|s| s.hash()).collect();
        // Unknown locator: from our oldest share.
        let unknown = ShareHash([0x42; 32]);
        assert_eq!(hashes(&shares_after(&index, &[unknown], None, 100)), all);
        assert_eq!(hashes(&shares_after(&index, &[], None, 5)), all[..5]);
        // The first hash we know wins, wherever it is in the locator.
        let got = shares_after(&index, &[unknown, all[3], all[1]], None, 100);
        assert_eq!(hashes(&got), all[4..]);
        // Bounded by max and by stop.
        assert_eq!(hashes(&shares_after(&index, &[all[3]], None, 2)), all[4..6]);
        assert_eq!(
            hashes(&shares_after(&index, &[all[3]], Some(all[7]), 100)),
            all[4..8]
        );
        // Nothing after our tip.
        assert!(shares_after(&index, &[all[11]], None, 100).is_empty());
        assert!(shares_after(&index, &[all[3]], None, 0).is_empty());
        assert!(shares_after(&ChainIndex::new(&regtest_preset("")), &[], None, 9).is_empty());
    }

    #[test]
    fn shares_after_a_fork_point_stay_on_the_best_chain() {
        let (mut index, shares) = chain(6);
        // A side branch off share 2 that stays shorter than the best chain.
        let side = mine_share(&mut index, Some(shares[2].hash()), &miner(9), T0 + 1000);
        let side_hash = side.hash();
        index.connect(side, u64::from(T0 + 1000)).unwrap();
        assert_ne!(index.best_hash(), Some(side_hash));
        // The side share is not on our best chain: the next locator hash (share 2) is used.
        let got = shares_after(&index, &[side_hash, shares[2].hash()], None, 100);
        let expected: Vec<ShareHash> = shares[3..].iter().map(|s| s.hash()).collect();
        assert_eq!(hashes(&got), expected);
        // A stop off the best chain is ignored.
        let got = shares_after(&index, &[shares[2].hash()], Some(side_hash), 100);
        assert_eq!(hashes(&got), expected);
    }

    #[test]
    fn answers_follow_a_reorg_and_pruning() {
        let (mut index, shares) = chain(30);
        // A heavier branch from share 20 takes over.
        let mut parent = shares[20].hash();
        let mut branch = Vec::new();
        for i in 0..12 {
            let s = mine_share(&mut index, Some(parent), &miner(7), T0 + 500 + i);
            index.connect(s.clone(), u64::from(T0) + 10_000).unwrap();
            parent = s.hash();
            branch.push(s.hash());
        }
        assert_eq!(index.best_hash(), Some(parent));
        let got = hashes(&shares_after(
            &index,
            &[shares[25].hash(), shares[20].hash()],
            None,
            100,
        ));
        assert_eq!(got, branch);
        index.prune(20);
        let oldest = index.best_oldest().unwrap().hash;
        assert_eq!(locator(&index, 64).last(), Some(&oldest));
        assert_eq!(hashes(&shares_after(&index, &[], None, 1)), vec![oldest]);
    }

    #[test]
    fn a_peer_chain_replays_into_an_empty_index() {
        let (source, shares) = chain(30);
        let mut dest = ChainIndex::new(&regtest_preset("[consensus]\nwindow_shares = 20\n"));
        let mut rounds = 0;
        while dest.best_hash() != source.best_hash() {
            rounds += 1;
            assert!(rounds < 10, "catch-up does not converge");
            let loc = locator(&dest, 64);
            for data in shares_after(&source, &loc, source.best_hash(), 8) {
                let share = Share::decode(&data).unwrap();
                dest.connect(share, u64::from(T0) + 10_000).unwrap();
            }
        }
        assert_eq!(rounds, 4);
        assert_eq!(dest.len(), shares.len());
    }
}
