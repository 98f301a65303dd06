//! Every rule a received share must meet before it joins the chain, each with its own
//! error, in the order they are checked (cheap first, the proof of work before the
//! coinbase is rebuilt).
//!
//! A share whose parent or an uncle is unknown is not invalid: it is an orphan, parked
//! until the missing share arrives ([`ShareError::is_orphan`]), but only after the checks
//! it can get without its history ([`ChainIndex::check_alone`], one proof of work), so that
//! parking junk costs its sender real work. A chain's first share offered to a node that
//! already holds a chain is refused before anything else ([`ShareError::RootRefused`]):
//! only a join may replace a chain. Every other error is final and, coming from a peer, a
//! reason to penalize it ([`ShareError::is_punishable`]).

use thiserror::Error;

use crate::aux_work::AuxWorkError;
use crate::chain::{parent_of, ChainEntry, ChainIndex, TipChange};
use crate::coinbase::build_coinbase;
use crate::hash::ShareHash;
use crate::merkle::merkle_root_from_branch;
use crate::pow::pow_hash;
use crate::pplns::ChildWindow;
use crate::share::{FormatError, Share};
use crate::target::{CompactError, Target, Work};

/// Why a share was not connected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShareError {
    #[error("share {0} is already known")]
    Duplicate(ShareHash),
    #[error("share {0} starts a new chain, and this node holds one (only a join replaces it)")]
    RootRefused(ShareHash),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("parent {0} is unknown (waiting for it)")]
    UnknownParent(ShareHash),
    #[error("uncle {0} is unknown (waiting for it)")]
    UnknownUncle(ShareHash),
    #[error(
        "required share target {found:#010x} differs from the retarget rule's {expected:#010x}"
    )]
    WrongRequiredTarget { expected: u32, found: u32 },
    #[error("share target is not a valid compact value: {0}")]
    InvalidShareTarget(CompactError),
    #[error("block target in the header is not a valid compact value: {0}")]
    InvalidBlockBits(CompactError),
    #[error("share target {found:#010x} is easier than the required {required:#010x}")]
    ShareTargetTooEasy { required: u32, found: u32 },
    #[error("timestamp {time} is not after the median time past {median}")]
    TimestampTooOld { time: u32, median: u32 },
    #[error("timestamp {time} is more than {max_future}s ahead of the local clock {now}")]
    TimestampInFuture {
        time: u32,
        now: u64,
        max_future: u32,
    },
    #[error("operator fee of {found} basis points exceeds the network's {max}")]
    FeeTooHigh { found: u16, max: u32 },
    #[error("coinbase value {0} exceeds the coin's maximum money")]
    ValueTooLarge(u64),
    #[error("{found} uncles exceed the network's {max}")]
    TooManyUncles { found: usize, max: u32 },
    #[error("uncle {0} is an ancestor of the share")]
    UncleIsAncestor(ShareHash),
    #[error("uncle {uncle} is {distance} shares away; allowed 1..={max}")]
    UncleOutOfRange {
        uncle: ShareHash,
        distance: u64,
        max: u32,
    },
    #[error("uncle {0} does not branch off the share's chain")]
    UncleNotSibling(ShareHash),
    #[error("uncle {0} is already included by an ancestor")]
    UncleAlreadyIncluded(ShareHash),
    #[error("proof of work does not meet the share target")]
    InsufficientWork,
    #[error("rebuilt coinbase does not match the header's merkle root")]
    MerkleRootMismatch,
    #[error("merged mining: {0}")]
    MergedMining(#[from] AuxWorkError),
}

impl ShareError {
    /// The share waits for a missing share rather than being invalid.
    pub fn is_orphan(&self) -> bool {
        matches!(
            self,
            ShareError::UnknownParent(_) | ShareError::UnknownUncle(_)
        )
    }

    /// Proves the share invalid, so its sender is penalized. Not so: a duplicate, an orphan,
    /// a clock disagreement that may resolve itself, and a refused root
    /// ([`ShareError::RootRefused`]: a valid share, perhaps from an honest node that started
    /// a chain at the same time, which the network layer scores mildly on its own).
    pub fn is_punishable(&self) -> bool {
        !matches!(
            self,
            ShareError::Duplicate(_)
                | ShareError::RootRefused(_)
                | ShareError::UnknownParent(_)
                | ShareError::UnknownUncle(_)
                | ShareError::TimestampInFuture { .. }
        )
    }

    /// The share it waits for, if it is an orphan.
    fn missing(&self) -> Option<ShareHash> {
        match self {
            ShareError::UnknownParent(m) | ShareError::UnknownUncle(m) => Some(*m),
            _ => None,
        }
    }
}

/// The outcome of connecting a share.
#[derive(Debug, Clone)]
pub struct Connected {
    /// Every share connected by this call: the share and any orphans that were waiting
    /// for it, in connection order.
    pub entries: Vec<ChainEntry>,
    /// The last change of best tip, if any.
    pub tip_change: Option<TipChange>,
    /// Orphans that turned out invalid once their parent arrived.
    pub rejected: Vec<(ShareHash, ShareError)>,
}

impl ChainIndex {
    /// Validates `share` and connects it, with any orphans it unblocks. `now` is the local
    /// clock in Unix seconds. An orphan that passes [`ChainIndex::check_alone`] is parked
    /// and reported as an error; one that fails it is refused with that (punishable) error.
    pub fn connect(&mut self, share: Share, now: u64) -> Result<Connected, ShareError> {
        let hash = share.hash();
        if self.knows(&hash) {
            return Err(ShareError::Duplicate(hash));
        }
        let first = match self.validate(&share, now) {
            Ok(credits) => credits,
            Err(e) => {
                if let Some(missing) = e.missing() {
                    let work = self.check_alone(&share, now)?;
                    self.orphans.insert(share, missing, work);
                }
                return Err(e);
            }
        };
        let mut out = Connected {
            entries: Vec::new(),
            tip_change: None,
            rejected: Vec::new(),
        };
        let mut queue = vec![(share, first)];
        while let Some((share, credits)) = queue.pop() {
            let (entry, change) = self.insert(share, credits, None);
            if change.is_some() {
                out.tip_change = change;
            }
            for waiting in self.orphans.take_waiting_for(&entry.hash) {
                match self.validate(&waiting, now) {
                    Ok(c) => queue.push((waiting, c)),
                    Err(e) => match e.missing() {
                        // Checked alone when it was first parked.
                        Some(m) => {
                            let work = share_work(&waiting);
                            self.orphans.insert(waiting, m, work);
                        }
                        None => out.rejected.push((waiting.hash(), e)),
                    },
                }
            }
            out.entries.push(entry);
        }
        Ok(out)
    }

    /// Checks every rule; returns the share's PPLNS credits.
    pub fn validate(
        &mut self,
        share: &Share,
        now: u64,
    ) -> Result<crate::pplns::ShareCredits, ShareError> {
        share.check_format()?;
        let info = &share.info;
        let params = self.consensus.clone();

        // The chain it builds on. A new chain's first share is taken only by a node with no
        // chain: otherwise anyone could make every node hash, store and forward shares at
        // the easiest target that build on nothing. Refused before any proof of work.
        let parent = if info.prev_share.is_zero() {
            if !self.is_empty() {
                return Err(ShareError::RootRefused(share.hash()));
            }
            None
        } else {
            Some(
                self.get(&info.prev_share)
                    .ok_or(ShareError::UnknownParent(info.prev_share))?
                    .clone(),
            )
        };
        if info.uncles.len() > params.max_uncles as usize {
            return Err(ShareError::TooManyUncles {
                found: info.uncles.len(),
                max: params.max_uncles,
            });
        }
        for uncle in &info.uncles {
            if !self.contains(uncle) {
                return Err(ShareError::UnknownUncle(*uncle));
            }
        }

        // Difficulty.
        let expected = self.required_bits_for_child(parent.as_ref().map(|p| p.hash));
        if info.required_bits != expected {
            return Err(ShareError::WrongRequiredTarget {
                expected,
                found: info.required_bits,
            });
        }
        let required =
            Target::from_compact(info.required_bits).map_err(ShareError::InvalidShareTarget)?;
        let share_target =
            Target::from_compact(info.share_target_bits).map_err(ShareError::InvalidShareTarget)?;
        if share_target > required {
            return Err(ShareError::ShareTargetTooEasy {
                required: info.required_bits,
                found: info.share_target_bits,
            });
        }
        Target::from_compact(share.header.bits).map_err(ShareError::InvalidBlockBits)?;

        // Time.
        let time = share.header.time;
        if let Some(p) = &parent {
            if let Some(median) = self.median_time_past(p.hash) {
                if time <= median {
                    return Err(ShareError::TimestampTooOld { time, median });
                }
            }
        }
        if u64::from(time) > now.saturating_add(u64::from(params.max_future_secs)) {
            return Err(ShareError::TimestampInFuture {
                time,
                now,
                max_future: params.max_future_secs,
            });
        }

        // Amounts.
        if let Some(fee) = &info.fee {
            if u32::from(fee.basis_points) > params.max_fee_basis_points {
                return Err(ShareError::FeeTooHigh {
                    found: fee.basis_points,
                    max: params.max_fee_basis_points,
                });
            }
        }
        if share.coinbase.value > self.max_money {
            return Err(ShareError::ValueTooLarge(share.coinbase.value));
        }

        // Uncles.
        let height = parent.as_ref().map_or(0, |p| p.height + 1);
        for uncle in &info.uncles {
            self.check_uncle(uncle, parent.as_ref(), height)?;
        }

        // Proof of work.
        if !share_target.is_met_by(&pow_hash(self.pow, &share.header.to_bytes())) {
            return Err(ShareError::InsufficientWork);
        }

        // The coinbase, rebuilt byte for byte, must be what the header commits to.
        let credits = self
            .credits_for(&share.info)
            .map_err(ShareError::UnknownUncle)?;
        // One window serves the coinbase and every aux block's coinbase.
        self.with_child_window(
            parent_of(&share.info),
            &credits,
            share.header.bits,
            |this, window| {
                if this.merkle_root_from(window, share) != share.header.merkle_root {
                    return Err(ShareError::MerkleRootMismatch);
                }
                // Its aux blocks pay the window, and they are what the scriptSig commits
                // to (§15).
                this.check_merged_mining_from(window, share)?;
                Ok(())
            },
        )?;
        Ok(credits)
    }

    /// The checks a share can get without its history: format, target bounds
    /// (`target(share_target_bits) ≤ target(required_bits) ≤ max_share_target`), a valid
    /// block target, time at most `max_future_secs` ahead of `now`, and proof of work
    /// against its own share target (one hash: a bounded cost, and whoever sends a share
    /// that passes paid for it). What an orphan passes before it is parked, and what a
    /// joined chain's base is checked for. Returns the work of the share target.
    pub fn check_alone(&self, share: &Share, now: u64) -> Result<Work, ShareError> {
        share.check_format()?;
        let info = &share.info;
        let required =
            Target::from_compact(info.required_bits).map_err(ShareError::InvalidShareTarget)?;
        let share_target =
            Target::from_compact(info.share_target_bits).map_err(ShareError::InvalidShareTarget)?;
        if required > self.max_share_target || share_target > required {
            return Err(ShareError::ShareTargetTooEasy {
                required: info.required_bits,
                found: info.share_target_bits,
            });
        }
        Target::from_compact(share.header.bits).map_err(ShareError::InvalidBlockBits)?;
        let max_future = self.consensus.max_future_secs;
        if u64::from(share.header.time) > now.saturating_add(u64::from(max_future)) {
            return Err(ShareError::TimestampInFuture {
                time: share.header.time,
                now,
                max_future,
            });
        }
        if !share_target.is_met_by(&pow_hash(self.pow, &share.header.to_bytes())) {
            return Err(ShareError::InsufficientWork);
        }
        Ok(share_target.work())
    }

    fn check_uncle(
        &self,
        uncle: &ShareHash,
        parent: Option<&ChainEntry>,
        height: u64,
    ) -> Result<(), ShareError> {
        let max = self.consensus.uncle_depth;
        let u = self.get(uncle).ok_or(ShareError::UnknownUncle(*uncle))?;
        let Some(parent) = parent else {
            return Err(ShareError::UncleNotSibling(*uncle));
        };
        let distance = height.saturating_sub(u.height);
        if u.height >= height || distance > u64::from(max) {
            return Err(ShareError::UncleOutOfRange {
                uncle: *uncle,
                distance,
                max,
            });
        }
        let at = self
            .ancestor_at(parent.hash, u.height)
            .ok_or(ShareError::UncleNotSibling(*uncle))?;
        if at.hash == *uncle {
            return Err(ShareError::UncleIsAncestor(*uncle));
        }
        if at.share.info.prev_share != u.share.info.prev_share {
            return Err(ShareError::UncleNotSibling(*uncle));
        }
        let included = self
            .ancestors(parent.hash)
            .take_while(|e| e.height > u.height)
            .any(|e| e.share.info.uncles.contains(uncle));
        if included {
            return Err(ShareError::UncleAlreadyIncluded(*uncle));
        }
        Ok(())
    }

    /// The merkle root of the block `share` claims to be: its coinbase, rebuilt from the
    /// chain and its data, folded up its merkle branch.
    pub fn expected_merkle_root(
        &mut self,
        share: &Share,
        credits: &crate::pplns::ShareCredits,
    ) -> [u8; 32] {
        self.with_child_window(
            parent_of(&share.info),
            credits,
            share.header.bits,
            |this, w| this.merkle_root_from(w, share),
        )
    }

    /// [`ChainIndex::expected_merkle_root`] from the share's window, already read.
    fn merkle_root_from(&self, window: &ChildWindow<'_>, share: &Share) -> [u8; 32] {
        let payouts = self.payouts_from(
            window,
            parent_of(&share.info),
            share.coinbase.value,
            &share.info.payout_script,
        );
        let coinbase = build_coinbase(
            &share.coinbase,
            &payouts,
            &share.info.commitment(self.network_id()),
        );
        merkle_root_from_branch(coinbase.txid(), &share.merkle_branch)
    }

    /// The coinbase outputs `share` must pay (before the commitment outputs).
    pub fn expected_payouts(
        &mut self,
        share: &Share,
        credits: &crate::pplns::ShareCredits,
    ) -> Vec<crate::coinbase::Payout> {
        self.window_payouts(
            parent_of(&share.info),
            credits,
            share.header.bits,
            share.coinbase.value,
            &share.info.payout_script,
        )
    }
}

/// The work of a share's claimed target (1 if it does not decode: such a share never gets
/// this far).
fn share_work(share: &Share) -> Work {
    Target::from_compact(share.info.share_target_bits).map_or(Work(1), |t| t.work())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pow::pow_hash;
    use crate::share::OperatorFee;
    use crate::testkit::{grow_chain, mine_share, miner, regtest_preset};

    const T0: u32 = 1_700_000_000;
    const NOW: u64 = T0 as u64 + 100_000;

    fn setup(overrides: &str) -> (ChainIndex, Vec<Share>) {
        let mut idx = ChainIndex::new(&regtest_preset(overrides));
        let shares = grow_chain(&mut idx, 12, 3, T0);
        (idx, shares)
    }

    /// Re-grinds the nonce so the proof of work holds again after a tampering.
    fn regrind(idx: &ChainIndex, share: &mut Share) {
        let target = Target::from_compact(share.info.share_target_bits).unwrap();
        while !target.is_met_by(&pow_hash(idx.pow, &share.header.to_bytes())) {
            share.header.nonce = share.header.nonce.wrapping_add(1);
        }
    }

    fn next(idx: &mut ChainIndex) -> Share {
        let parent = idx.best_hash();
        mine_share(idx, parent, &miner(5), T0 + 10_000)
    }

    #[test]
    fn a_mined_share_is_valid() {
        let (mut idx, _) = setup("");
        let s = next(&mut idx);
        assert!(idx.validate(&s, NOW).is_ok());
    }

    #[test]
    fn tampered_payout_script_breaks_the_commitment() {
        let (mut idx, _) = setup("");
        let mut s = next(&mut idx);
        s.info.payout_script = crate::testkit::miner_script(6);
        regrind(&idx, &mut s);
        assert_eq!(idx.validate(&s, NOW), Err(ShareError::MerkleRootMismatch));
    }

    #[test]
    fn tampered_coinbase_value_or_branch_breaks_the_merkle_root() {
        let (mut idx, _) = setup("");
        let mut s = next(&mut idx);
        s.coinbase.value += 1;
        regrind(&idx, &mut s);
        assert_eq!(idx.validate(&s, NOW), Err(ShareError::MerkleRootMismatch));
        let mut s = next(&mut idx);
        s.merkle_branch[0][0] ^= 1;
        regrind(&idx, &mut s);
        assert_eq!(idx.validate(&s, NOW), Err(ShareError::MerkleRootMismatch));
    }

    #[test]
    fn difficulty_rules() {
        let (mut idx, _) = setup("");
        let mut s = next(&mut idx);
        s.info.required_bits = 0x1f00ffff;
        assert!(matches!(
            idx.validate(&s, NOW),
            Err(ShareError::WrongRequiredTarget { .. })
        ));

        // Required target harder than the floor, so an easier share target exists.
        let (mut idx, _) = setup("[consensus]\nmax_share_target_bits = 0x1f7fffff\n");
        let mut s = next(&mut idx);
        s.info.share_target_bits = 0x207fffff;
        assert!(matches!(
            idx.validate(&s, NOW),
            Err(ShareError::ShareTargetTooEasy { .. })
        ));
        let mut s = next(&mut idx);
        s.info.share_target_bits = 0x04923456;
        assert!(matches!(
            idx.validate(&s, NOW),
            Err(ShareError::InvalidShareTarget(_))
        ));
        let mut s = next(&mut idx);
        s.header.bits = 0;
        assert!(matches!(
            idx.validate(&s, NOW),
            Err(ShareError::InvalidBlockBits(_))
        ));
    }

    #[test]
    fn proof_of_work_is_checked() {
        let (mut idx, _) = setup("");
        let mut s = next(&mut idx);
        let target = Target::from_compact(s.info.share_target_bits).unwrap();
        while target.is_met_by(&pow_hash(idx.pow, &s.header.to_bytes())) {
            s.header.nonce = s.header.nonce.wrapping_add(1);
        }
        assert_eq!(idx.validate(&s, NOW), Err(ShareError::InsufficientWork));
    }

    #[test]
    fn timestamps_are_bounded_both_ways() {
        let (mut idx, shares) = setup("");
        let parent = idx.best_hash();
        let median = idx.median_time_past(parent.unwrap()).unwrap();
        assert_eq!(median, shares[6].header.time);
        let s = mine_share(&mut idx, parent, &miner(1), median);
        assert_eq!(
            idx.validate(&s, NOW),
            Err(ShareError::TimestampTooOld {
                time: median,
                median
            })
        );
        // The coin's bound, 2 hours (litecoind's): a template whose mintime runs ahead of
        // the local clock still makes valid shares.
        let time = T0 + 10_000;
        let s = mine_share(&mut idx, parent, &miner(1), time);
        assert!(idx.validate(&s, u64::from(time) - 7_000).is_ok());
        assert!(idx.validate(&s, u64::from(time) - 7_200).is_ok());
        let now = u64::from(time) - 7_201;
        let err = idx.validate(&s, now).unwrap_err();
        assert_eq!(
            err,
            ShareError::TimestampInFuture {
                time,
                now,
                max_future: 7_200
            }
        );
        assert!(!err.is_punishable());
    }

    #[test]
    fn amounts_and_fees_are_bounded() {
        let (mut idx, _) = setup("");
        let parent = idx.best_hash();
        let mut greedy = miner(1);
        greedy.fee = Some(OperatorFee {
            basis_points: 1001,
            script: crate::testkit::miner_script(77),
            aux_script: None,
        });
        let s = mine_share(&mut idx, parent, &greedy, T0 + 10_000);
        assert_eq!(
            idx.validate(&s, NOW),
            Err(ShareError::FeeTooHigh {
                found: 1001,
                max: 1000
            })
        );
        let mut s = next(&mut idx);
        s.coinbase.value = 8_400_000_000_000_001;
        assert_eq!(
            idx.validate(&s, NOW),
            Err(ShareError::ValueTooLarge(8_400_000_000_000_001))
        );
    }

    #[test]
    fn a_fee_within_bounds_pays_the_operator() {
        // sha256d keeps grinding a harder share (work 65537) quick.
        let (mut idx, _) = setup("[coin]\npow = \"sha256d\"\n");
        let parent = idx.best_hash();
        let mut m = miner(1);
        m.share_target_bits = Some(0x1f00ffff);
        m.fee = Some(OperatorFee {
            basis_points: 1000,
            script: crate::testkit::miner_script(77),
            aux_script: None,
        });
        let s = mine_share(&mut idx, parent, &m, T0 + 10_000);
        idx.connect(s.clone(), NOW).unwrap();
        let e = idx.get(&s.hash()).unwrap();
        assert_eq!(
            e.credits.credits,
            vec![
                (crate::testkit::miner_script(1), 65_537 - 6_553),
                (crate::testkit::miner_script(77), 6_553),
            ]
        );
    }

    #[test]
    fn uncle_rules() {
        let (mut idx, shares) = setup("");
        // Included once, not twice: a sibling of the tip (the two tie in work; the one with
        // the higher id is off the chain), included by the next share.
        let sibling = mine_share(&mut idx, Some(shares[10].hash()), &miner(9), T0 + 7_000);
        idx.connect(sibling.clone(), NOW).unwrap();
        let off = sibling.hash().max(shares[11].hash());
        assert_eq!(idx.best_hash(), Some(sibling.hash().min(shares[11].hash())));
        let nephew = next(&mut idx);
        assert!(nephew.info.uncles.contains(&off));
        idx.connect(nephew.clone(), NOW).unwrap();
        let mut again = next(&mut idx);
        assert!(!again.info.uncles.contains(&off));
        again.info.uncles = vec![off];
        assert_eq!(
            idx.validate(&again, NOW),
            Err(ShareError::UncleAlreadyIncluded(off))
        );
        let tip = nephew.hash();
        // An ancestor is no uncle.
        let mut s = next(&mut idx);
        s.info.uncles = vec![shares[10].hash()];
        assert_eq!(
            idx.validate(&s, NOW),
            Err(ShareError::UncleIsAncestor(shares[10].hash()))
        );
        // An unknown uncle makes the share wait.
        let mut s = next(&mut idx);
        s.info.uncles = vec![ShareHash([7; 32])];
        let err = idx.validate(&s, NOW).unwrap_err();
        assert!(err.is_orphan());
        // Too deep: a sibling of shares[5] is 8 heights below the next share.
        let old = mine_share(&mut idx, Some(shares[4].hash()), &miner(8), T0 + 5_000);
        idx.connect(old.clone(), NOW).unwrap();
        let mut s = next(&mut idx);
        s.info.uncles = vec![old.hash()];
        assert!(matches!(
            idx.validate(&s, NOW),
            Err(ShareError::UncleOutOfRange { distance: 8, .. })
        ));
        // A share on a side branch two deep does not hang off the chain.
        let side1 = mine_share(&mut idx, Some(shares[8].hash()), &miner(8), T0 + 6_000);
        idx.connect(side1.clone(), NOW).unwrap();
        let side2 = mine_share(&mut idx, Some(side1.hash()), &miner(8), T0 + 6_001);
        idx.connect(side2.clone(), NOW).unwrap();
        let mut s = next(&mut idx);
        s.info.uncles = vec![side2.hash()];
        assert_eq!(
            idx.validate(&s, NOW),
            Err(ShareError::UncleNotSibling(side2.hash()))
        );
        // Too many uncles.
        let mut s = next(&mut idx);
        s.info.uncles = (0..5u8).map(|i| ShareHash([i; 32])).collect();
        assert!(matches!(
            idx.validate(&s, NOW),
            Err(ShareError::TooManyUncles { found: 5, max: 4 })
        ));
        assert_eq!(idx.best_hash(), Some(tip));
    }
}
