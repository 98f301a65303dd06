//! Every rule a received share must meet before it joins the chain, each with its own
//! error, in the order they are checked (cheap first, the proof of work before the
//! coinbase is rebuilt).
//!
//! A share whose parent or an uncle is unknown is not invalid: it is an orphan, parked
//! until the missing share arrives ([`ShareError::is_orphan`]). Every other error is final
//! and, coming from a peer, a reason to penalize it.

use thiserror::Error;

use crate::chain::{ChainEntry, ChainIndex, TipChange};
use crate::coinbase::build_coinbase;
use crate::hash::ShareHash;
use crate::merkle::merkle_root_from_branch;
use crate::payout::{compute_payouts, payout_seed};
use crate::pow::pow_hash;
use crate::share::{FormatError, Share};
use crate::target::{CompactError, Target};

/// Why a share was not connected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShareError {
    #[error("share {0} is already known")]
    Duplicate(ShareHash),
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
}

impl ShareError {
    /// The share waits for a missing share rather than being invalid.
    pub fn is_orphan(&self) -> bool {
        matches!(
            self,
            ShareError::UnknownParent(_) | ShareError::UnknownUncle(_)
        )
    }

    /// Not the sender's fault (a duplicate, an orphan, or a clock disagreement that may
    /// resolve itself); everything else proves the share invalid.
    pub fn is_punishable(&self) -> bool {
        !matches!(
            self,
            ShareError::Duplicate(_)
                | ShareError::UnknownParent(_)
                | ShareError::UnknownUncle(_)
                | ShareError::TimestampInFuture { .. }
        )
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
    /// clock in Unix seconds. An orphan is parked and reported as an error.
    pub fn connect(&mut self, share: Share, now: u64) -> Result<Connected, ShareError> {
        let hash = share.hash();
        if self.knows(&hash) {
            return Err(ShareError::Duplicate(hash));
        }
        let first = match self.validate(&share, now) {
            Ok(credits) => credits,
            Err(e) => {
                match &e {
                    ShareError::UnknownParent(missing) | ShareError::UnknownUncle(missing) => {
                        self.orphans.insert(share, *missing);
                    }
                    _ => {}
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
                    Err(e) if e.is_orphan() => {
                        if let ShareError::UnknownParent(m) | ShareError::UnknownUncle(m) = e {
                            self.orphans.insert(waiting, m);
                        }
                    }
                    Err(e) => out.rejected.push((waiting.hash(), e)),
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

        // The chain it builds on.
        let parent = if info.prev_share.is_zero() {
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
        let credits = self.credits_for(share);
        let root = self.expected_merkle_root(share, &credits);
        if root != share.header.merkle_root {
            return Err(ShareError::MerkleRootMismatch);
        }
        Ok(credits)
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
        let payouts = self.expected_payouts(share, credits);
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
        let parent = (!share.info.prev_share.is_zero()).then_some(share.info.prev_share);
        let weights = self.window_weights(parent, credits, share.header.bits);
        compute_payouts(
            weights.iter().map(|(s, w)| (s.as_slice(), *w)),
            &share.info.payout_script,
            share.coinbase.value,
            &self.consensus,
            &payout_seed(&share.info.prev_share),
        )
    }
}
