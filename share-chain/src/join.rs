//! Joining a share chain whose beginning the network has pruned.
//!
//! Nodes keep only the last `prune_depth` shares (section 11 of `docs/PROTOCOL.md`), so a
//! node that joins late, or comes back after a long absence, cannot validate the oldest
//! shares a peer sends: their retarget look-back, PPLNS window and uncles lie in history
//! no one holds any more. It does not need to. Every rule reads at most
//! [`base_len`] shares below the share it checks, so a node takes the first `base_len`
//! shares of the peer's chain as its *base* and validates every share above it in full,
//! exactly as a node that saw the chain from its first share would.
//!
//! What the base is trusted for, and what is still checked:
//! - checked: the format, the linkage (each share's parent is the one before it), a share
//!   target no easier than the network's easiest and a valid `required_bits` at least as
//!   easy, the proof of work against the share target, and time at most `max_future_secs`
//!   ahead. So the base's work is real work: whoever made it paid for every hash.
//! - trusted: that each base share's `required_bits`, time and coinbase followed the rules
//!   relative to *its* unseen history. A lie there buys nothing above the base: shares
//!   built on it must still pass every rule, with real proof of work.
//!
//! Which chain to join: the peer's chain must have at least `min_recent_work` of *recent
//! work* (the summed weight of shares whose timestamps lie within the last window period,
//! `window_shares × share_period_secs`), a parameter the caller sets from what it can
//! check alone (the node: its own litecoind's block target), so that a new node fed only
//! an attacker's cheap chain refuses it; and, if the node holds a chain, more recent work
//! than that chain (which then shares no share with the peer's). Total work cannot be
//! compared (each node counts it from its own base), and recent work is what a stale or
//! lone chain lacks and a live pool has. Beating the live chain this way costs as many
//! hashes as the whole pool makes in a window period.
//!
//! A chain that starts at its first share (not pruned yet) is joined the same way, with no
//! base: every share is validated in full. This is the only way a node that holds a chain
//! takes a chain with another first share ([`crate::validation::ShareError::RootRefused`]).
//!
//! The peer also sends the uncles its base shares name (their credits and weights enter
//! the window and the retarget). The lowest `uncle_depth` base shares may name uncles it
//! has pruned; those shares lie below every window and look-back a validated share reads,
//! which is why the base is `2 × uncle_depth` longer than the deepest look-back.

use std::collections::{HashMap, HashSet};

use thiserror::Error;

use crate::chain::ChainIndex;
use crate::hash::ShareHash;
use crate::params::ConsensusParams;
use crate::pplns::share_credits;
use crate::share::{Share, ShareInfo};
use crate::target::Work;
use crate::validation::ShareError;

/// How many shares at the bottom of a joined chain are taken as its base: the deepest
/// look-back of any rule (the window, the retarget window, the median time span), plus
/// `uncle_depth` for the uncles of the first validated shares and `uncle_depth` for the
/// base shares whose own uncles may be pruned.
pub fn base_len(consensus: &ConsensusParams) -> usize {
    let deepest = consensus
        .window_shares
        .max(consensus.retarget_window)
        .max(consensus.median_time_span);
    deepest as usize + 2 * consensus.uncle_depth as usize
}

/// A peer's chain as sync delivers it: its best chain from the oldest share it holds,
/// oldest first, and the uncles those shares name.
#[derive(Clone, Debug, Default)]
pub struct PeerChain {
    /// Each share's parent is the one before it; the first one's parent is pruned.
    pub run: Vec<Share>,
    /// Shares the run names as uncles (in any order; others are ignored).
    pub uncles: Vec<Share>,
}

/// Why a peer's chain was not joined.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JoinError {
    #[error("{len} shares are too few to join: need more than {base} (the base)")]
    TooShort { len: usize, base: usize },
    #[error("share {index} of the run does not build on the one before it")]
    NotLinked { index: usize },
    #[error("base share {hash} is invalid: {reason}")]
    InvalidBase { hash: ShareHash, reason: ShareError },
    #[error("share {hash} above the base is invalid: {reason}")]
    Invalid { hash: ShareHash, reason: ShareError },
    #[error("share {0} names an uncle the peer did not send")]
    MissingUncle(ShareHash),
    #[error("our chain shares history with the peer's: catch up share by share")]
    Overlaps,
    #[error("our chain has more recent work ({ours}) than the peer's ({theirs})")]
    NotHeavier { ours: u128, theirs: u128 },
    #[error("the peer's chain has {theirs} recent work, less than the {min} required to join")]
    NotEnoughWork { min: u128, theirs: u128 },
}

impl JoinError {
    /// The peer sent something provably wrong (as opposed to a chain we just prefer not to
    /// take).
    pub fn is_punishable(&self) -> bool {
        matches!(
            self,
            JoinError::NotLinked { .. }
                | JoinError::InvalidBase { .. }
                | JoinError::Invalid { .. }
                | JoinError::MissingUncle(_)
        )
    }
}

/// Where "recent" starts: one window period (`window_shares × share_period_secs`) before
/// `now`.
fn recent_since(consensus: &ConsensusParams, now: u64) -> u64 {
    now.saturating_sub(u64::from(consensus.window_shares) * u64::from(consensus.share_period_secs))
}

/// The recent work (see [`ChainIndex::recent_work`]) a run would have if every share
/// target it claims were met.
fn claimed_recent_work(
    run: &[Share],
    uncles: &HashMap<ShareHash, Share>,
    consensus: &ConsensusParams,
    now: u64,
) -> u128 {
    let since = recent_since(consensus, now);
    run.iter()
        .rev()
        .take_while(|s| u64::from(s.header.time) >= since)
        .map(|s| {
            let named: Vec<&ShareInfo> = s
                .info
                .uncles
                .iter()
                .filter_map(|u| uncles.get(u).map(|u| &u.info))
                .collect();
            share_credits(&s.info, &named, consensus).weight
        })
        .fold(0u128, u128::saturating_add)
}

/// What a join took in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// Shares taken as the base (run shares and their uncles).
    pub base: usize,
    /// Shares validated in full above the base.
    pub validated: usize,
    pub tip: ShareHash,
}

impl ChainIndex {
    /// The summed weight of the best chain's shares with a timestamp within the last window
    /// period before `now`.
    pub fn recent_work(&self, now: u64) -> u128 {
        let Some(best) = self.best_hash() else {
            return 0;
        };
        let since = recent_since(&self.consensus, now);
        self.ancestors(best)
            .take_while(|e| u64::from(e.share.header.time) >= since)
            .fold(0u128, |sum, e| sum.saturating_add(e.credits.weight))
    }

    /// Builds the index a node joining `peer`'s chain would hold: the base taken on the
    /// checks above (no base if the chain starts at its first share), every later share
    /// validated in full. Returns it (for the caller to put in place of this one) if the
    /// peer's chain has at least `min_recent_work` recent work and this index has no chain,
    /// or shares nothing with the peer's and has less recent work. `now` is the local clock
    /// in Unix seconds.
    pub fn join(
        &self,
        peer: PeerChain,
        now: u64,
        min_recent_work: Work,
    ) -> Result<(ChainIndex, Joined), JoinError> {
        let full_base = base_len(&self.consensus);
        let first = peer.run.first().ok_or(JoinError::TooShort {
            len: 0,
            base: full_base,
        })?;
        let base = if first.info.prev_share.is_zero() {
            0
        } else {
            full_base
        };
        if peer.run.len() <= base {
            return Err(JoinError::TooShort {
                len: peer.run.len(),
                base,
            });
        }
        if peer.run.iter().any(|s| self.knows(&s.hash())) {
            return Err(JoinError::Overlaps);
        }
        let hashes: Vec<ShareHash> = peer.run.iter().map(Share::hash).collect();
        if let Some(index) =
            (1..peer.run.len()).find(|&i| peer.run[i].info.prev_share != hashes[i - 1])
        {
            return Err(JoinError::NotLinked { index });
        }

        let in_run: HashSet<ShareHash> = hashes.iter().copied().collect();
        let mut uncles: HashMap<ShareHash, Share> = peer
            .uncles
            .into_iter()
            .map(|s| (s.hash(), s))
            .filter(|(h, _)| !in_run.contains(h))
            .collect();

        // A chain that cannot win even if every hash it claims is real is refused before
        // any proof of work is checked: a peer cannot make us hash for nothing.
        let claimed = claimed_recent_work(&peer.run, &uncles, &self.consensus, now);
        if claimed < min_recent_work.0 {
            return Err(JoinError::NotEnoughWork {
                min: min_recent_work.0,
                theirs: claimed,
            });
        }
        if self.best_hash().is_some() {
            let ours = self.recent_work(now);
            if claimed <= ours {
                return Err(JoinError::NotHeavier {
                    ours,
                    theirs: claimed,
                });
            }
        }

        let mut joined = self.empty_like();
        let mut base_count = 0;
        for (i, (share, hash)) in peer.run.into_iter().zip(hashes).enumerate() {
            if i < base {
                // Uncles first: the share's credits include theirs.
                for u in &share.info.uncles {
                    if let Some(uncle) = uncles.remove(u) {
                        joined.insert_base(uncle, now)?;
                        base_count += 1;
                    }
                }
                joined.insert_base(share, now)?;
                base_count += 1;
                continue;
            }
            for u in &share.info.uncles {
                if let Some(uncle) = uncles.remove(u) {
                    let uncle_hash = uncle.hash();
                    joined
                        .connect(uncle, now)
                        .map_err(|reason| JoinError::Invalid {
                            hash: uncle_hash,
                            reason,
                        })?;
                }
            }
            match joined.connect(share, now) {
                Ok(_) => {}
                Err(ShareError::UnknownUncle(_)) => return Err(JoinError::MissingUncle(hash)),
                Err(reason) => return Err(JoinError::Invalid { hash, reason }),
            }
        }

        let theirs = joined.recent_work(now);
        if theirs < min_recent_work.0 {
            return Err(JoinError::NotEnoughWork {
                min: min_recent_work.0,
                theirs,
            });
        }
        if self.best_hash().is_some() {
            let ours = self.recent_work(now);
            if theirs <= ours {
                return Err(JoinError::NotHeavier { ours, theirs });
            }
        }
        let tip = joined
            .best_hash()
            .ok_or(JoinError::TooShort { len: 0, base })?;
        let validated = joined.len() - base_count;
        Ok((
            joined,
            Joined {
                base: base_count,
                validated,
                tip,
            },
        ))
    }

    /// Adds a share of a joined chain's base after the checks it can still get
    /// ([`ChainIndex::check_alone`]). Its uncles must be in already, except for a share
    /// within `uncle_depth` of the base's bottom (height 0), whose uncles the peer may have
    /// pruned.
    fn insert_base(&mut self, share: Share, now: u64) -> Result<(), JoinError> {
        let hash = share.hash();
        self.check_alone(&share, now)
            .map_err(|reason| JoinError::InvalidBase { hash, reason })?;
        let height = self.get(&share.info.prev_share).map_or(0, |p| p.height + 1);
        let credits = if height < u64::from(self.consensus.uncle_depth) {
            self.credits_from_held(&share.info)
        } else {
            self.credits_for(&share.info)
                .map_err(|_| JoinError::MissingUncle(hash))?
        };
        self.insert(share, credits, None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pow::pow_hash;
    use crate::target::Target;
    use crate::testkit::{block_context, grow_chain, mine_share, miner, regtest_preset, served};
    use proptest::prelude::*;

    const T0: u32 = 1_700_000_000;
    const PRESET: &str = "[consensus]\nwindow_shares = 20\n";

    fn index() -> ChainIndex {
        ChainIndex::new(&regtest_preset(PRESET))
    }

    /// A chain with regular side shares (so uncles), grown past several prunings.
    fn long_chain(n: usize) -> (ChainIndex, u64) {
        long_chain_with(n, 7)
    }

    fn long_chain_with(n: usize, side_every: usize) -> (ChainIndex, u64) {
        let mut idx = index();
        let mut time = T0;
        for i in 0..n {
            let parent = idx.best_hash();
            time += 2;
            if parent.is_some() && i % side_every == 3 % side_every {
                // A sibling of the next share: it becomes an uncle (never a second first
                // share, which a node with a chain refuses).
                let side = mine_share(&mut idx, parent, &miner(50 + i as u32 % 3), time);
                idx.connect(side, u64::from(time)).unwrap();
            }
            let share = mine_share(&mut idx, parent, &miner(i as u32 % 5), time + 1);
            idx.connect(share, u64::from(time) + 1).unwrap();
            if i % 16 == 0 {
                let depth = u64::from(idx.params().window_shares)
                    + u64::from(idx.params().retarget_window)
                    + 2 * u64::from(idx.params().uncle_depth)
                    + 16;
                idx.prune(depth);
            }
        }
        (idx, u64::from(time) + 10)
    }

    fn next_coinbase(idx: &mut ChainIndex) -> Vec<u8> {
        idx.share_template(&miner(99), block_context(50_0000_0000))
            .unwrap()
            .coinbase(vec![1, 2, 3, 4])
            .to_bytes()
    }

    #[test]
    fn a_late_node_agrees_with_the_full_node_byte_for_byte() {
        let (mut peer, now) = long_chain(150);
        let served = served(&peer);
        assert!(!served.run[0].info.prev_share.is_zero(), "the peer pruned");
        assert!(!served.uncles.is_empty());
        let (mut joined, report) = index().join(served.clone(), now, Work::ZERO).unwrap();
        assert_eq!(joined.best_hash(), peer.best_hash());
        // The cheap pre-check counts exactly what the joined chain holds.
        let uncles: HashMap<ShareHash, Share> = served
            .uncles
            .iter()
            .map(|u| (u.hash(), u.clone()))
            .collect();
        let claimed = claimed_recent_work(&served.run, &uncles, peer.params(), now);
        assert!(claimed > 0);
        assert_eq!(claimed, joined.recent_work(now));
        assert_eq!(report.tip, peer.best_hash().unwrap());
        assert!(report.validated >= 1);
        assert_eq!(report.base + report.validated, joined.len());
        assert_eq!(next_coinbase(&mut joined), next_coinbase(&mut peer));

        // Both accept the same next share, and both refuse the same tampered one.
        let tip = peer.best_hash();
        let next = mine_share(&mut peer, tip, &miner(3), (now + 1) as u32);
        let mut forged = next.clone();
        forged.coinbase.value -= 1;
        assert!(joined.validate(&forged, now + 1).is_err());
        assert!(peer.validate(&forged, now + 1).is_err());
        joined.connect(next.clone(), now + 1).unwrap();
        peer.connect(next, now + 1).unwrap();
        assert_eq!(next_coinbase(&mut joined), next_coinbase(&mut peer));
    }

    #[test]
    fn broken_or_short_runs_are_refused() {
        let (peer, now) = long_chain(120);
        let good = served(&peer);
        let base = base_len(peer.params());

        let mut short = good.clone();
        short.run.truncate(base);
        assert_eq!(
            index().join(short, now, Work::ZERO).unwrap_err(),
            JoinError::TooShort { len: base, base }
        );

        let mut gap = good.clone();
        gap.run.remove(10);
        assert_eq!(
            index().join(gap, now, Work::ZERO).unwrap_err(),
            JoinError::NotLinked { index: 10 }
        );

        // Changing a base share breaks the link to the next one; on its own, a base share
        // must still carry its proof of work and an allowed target.
        let mut weak = good.clone();
        weak.run[0].header.nonce ^= 1;
        assert_eq!(
            index().join(weak, now, Work::ZERO).unwrap_err(),
            JoinError::NotLinked { index: 1 }
        );
        let mut bad = good.run[0].clone();
        let target = Target::from_compact(bad.info.share_target_bits).unwrap();
        while target.is_met_by(&pow_hash(peer.pow, &bad.header.to_bytes())) {
            bad.header.nonce = bad.header.nonce.wrapping_add(1);
        }
        let err = index().insert_base(bad, now).unwrap_err();
        assert!(
            matches!(
                err,
                JoinError::InvalidBase {
                    reason: ShareError::InsufficientWork,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_punishable());
        let mut easy = good.run[0].clone();
        easy.info.required_bits = 0x2100_ffff;
        easy.info.share_target_bits = 0x2100_ffff;
        assert!(matches!(
            index().insert_base(easy, now).unwrap_err(),
            JoinError::InvalidBase {
                reason: ShareError::ShareTargetTooEasy { .. },
                ..
            }
        ));

        // A share above the base that breaks a rule (its payouts): caught in full.
        let mut tampered = good.clone();
        let last = tampered.run.len() - 1;
        tampered.run[last].coinbase.value += 1;
        let err = index().join(tampered, now, Work::ZERO).unwrap_err();
        assert!(matches!(err, JoinError::Invalid { .. }), "{err:?}");

        // The uncles of validated shares must come along.
        let mut no_uncles = good.clone();
        let needed: HashSet<ShareHash> = no_uncles.run[base..]
            .iter()
            .flat_map(|s| s.info.uncles.iter().copied())
            .collect();
        assert!(!needed.is_empty());
        no_uncles.uncles.retain(|u| !needed.contains(&u.hash()));
        assert!(index()
            .join(no_uncles, now, Work::ZERO)
            .unwrap_err()
            .is_punishable());
    }

    #[test]
    fn a_chain_from_its_first_share_is_validated_in_full_and_replaces_a_lighter_one() {
        // Two nodes started chains at the same time: each refuses the other's first share
        // (only a join replaces a chain), and the one with less recent work joins the other's.
        let mut heavy = index();
        let heavy_shares = grow_chain(&mut heavy, 6, 2, T0);
        let mut light = index();
        let light_shares = grow_chain(&mut light, 3, 1, T0 + 1);
        let now = u64::from(heavy_shares[5].header.time) + 1;
        assert_eq!(
            light.connect(heavy_shares[0].clone(), now).unwrap_err(),
            ShareError::RootRefused(heavy_shares[0].hash())
        );
        let run = |shares: &[Share]| PeerChain {
            run: shares.to_vec(),
            uncles: vec![],
        };
        assert!(matches!(
            heavy.join(run(&light_shares), now, Work::ZERO).unwrap_err(),
            JoinError::NotHeavier { .. }
        ));
        let (mut joined, report) = light.join(run(&heavy_shares), now, Work::ZERO).unwrap();
        assert_eq!(report.base, 0);
        assert_eq!(report.validated, 6);
        assert_eq!(joined.best_hash(), heavy.best_hash());
        assert_eq!(next_coinbase(&mut joined), next_coinbase(&mut heavy));
        // Validated in full: a broken rule anywhere, the first share included, rejects it.
        let mut forged = heavy_shares.clone();
        forged[0].coinbase.value += 1;
        assert!(matches!(
            index().join(run(&forged), now, Work::ZERO).unwrap_err(),
            JoinError::Invalid { .. }
        ));
    }

    #[test]
    fn a_chain_below_the_minimum_recent_work_is_refused() {
        let (peer, now) = long_chain(120);
        let served = served(&peer);
        let theirs = peer.recent_work(now);
        assert!(theirs > 0);
        assert_eq!(
            index()
                .join(served.clone(), now, Work(theirs + 1))
                .unwrap_err(),
            JoinError::NotEnoughWork {
                min: theirs + 1,
                theirs
            }
        );
        assert!(!JoinError::NotEnoughWork { min: 1, theirs: 0 }.is_punishable());
        let (joined, _) = index().join(served, now, Work(theirs)).unwrap();
        assert_eq!(joined.best_hash(), peer.best_hash());
    }

    #[test]
    fn a_base_share_above_the_pruned_depth_must_come_with_its_uncles() {
        let (peer, now) = long_chain_with(150, 2);
        let good = served(&peer);
        let depth = peer.params().uncle_depth as usize;
        // A base share high enough that the peer holds its uncles, but below every window
        // and look-back a validated share reads: a missing uncle there changed nothing
        // anyone checks, and was skipped without a word.
        let (i, uncle) = (depth..2 * depth)
            .find_map(|i| good.run[i].info.uncles.first().map(|u| (i, *u)))
            .expect("a base share with an uncle");
        let mut missing = good.clone();
        missing.uncles.retain(|u| u.hash() != uncle);
        let err = index().join(missing, now, Work::ZERO).unwrap_err();
        assert_eq!(err, JoinError::MissingUncle(good.run[i].hash()));
        assert!(err.is_punishable());
        assert!(index().join(good, now, Work::ZERO).is_ok());
    }

    #[test]
    fn a_disjoint_chain_is_taken_only_with_more_recent_work() {
        let (peer, now) = long_chain(120);
        let served = served(&peer);
        // A lone node's short, recent chain loses to the live pool's.
        let mut lone = index();
        grow_chain(&mut lone, 5, 1, (now - 20) as u32);
        assert!(lone.join(served.clone(), now, Work::ZERO).is_ok());
        // The same lone chain wins once the pool's chain is a window period old.
        let later = now + 20 * 2 + 1_000;
        let mut fresh_lone = index();
        grow_chain(&mut fresh_lone, 5, 1, (later - 20) as u32);
        assert!(matches!(
            fresh_lone
                .join(served.clone(), later, Work::ZERO)
                .unwrap_err(),
            JoinError::NotHeavier { .. }
        ));
        // A node that already holds part of the chain catches up share by share instead.
        let mut partial = index().join(served.clone(), now, Work::ZERO).unwrap().0;
        partial.prune(0);
        assert_eq!(
            partial.join(served, now, Work::ZERO).unwrap_err(),
            JoinError::Overlaps
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]
        /// Wherever the peer's pruning left the base (relative to the uncles), the joined
        /// node builds the same next coinbase as the node that saw everything.
        #[test]
        fn joining_anywhere_gives_the_same_next_coinbase(n in 80usize..160, side_every in 2usize..9) {
            let (mut peer, now) = long_chain_with(n, side_every);
            let served = served(&peer);
            let (mut joined, _) = index().join(served.clone(), now, Work::ZERO).unwrap();
            prop_assert_eq!(joined.best_hash(), peer.best_hash());
            // Recent side shares no share names yet reach a node by gossip, not by the
            // join; with them, the joined node offers the same uncles too.
            let mut side: Vec<&crate::chain::ChainEntry> =
                peer.entries().filter(|e| !joined.knows(&e.hash)).collect();
            side.sort_by_key(|e| e.seq);
            for entry in side {
                let _ = joined.connect((*entry.share).clone(), now);
            }
            prop_assert_eq!(next_coinbase(&mut joined), next_coinbase(&mut peer));
            // The peer's next share is valid to the joined node.
            let tip = peer.best_hash();
            let next = mine_share(&mut peer, tip, &miner(7), (now + 1) as u32);
            let verdict = joined.validate(&next, now + 1);
            prop_assert!(verdict.is_ok(), "{:?}", verdict);
        }
    }
}
