//! The chain index: every known share in a tree, the best chain, and fork choice.
//!
//! Shares form a tree through `prev_share`. The best chain ends at the share with the most
//! cumulative work (own work plus uncles' work, summed from the first share); between equal
//! work, the share with the lower id wins, so fork choice is a pure function of the shares
//! and not of the order a node saw them in. A share arriving before its parent (or an uncle
//! it names) waits in the [`OrphanPool`] and connects when the missing share does, so
//! shares may arrive in any order and give the same chain.
//!
//! The index also keeps the PPLNS [`Window`] of the best tip up to date, so that checking
//! or building the next share's coinbase does not walk the whole window, and a height index
//! of the best chain (height -> hash), so that sync answers ([`crate::locator`]) and "is it
//! on the best chain" cost a lookup, not a walk. Validation rules live in
//! [`crate::validation`]; this file only keeps the tree.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::coinbase::Payout;
use crate::hash::ShareHash;
use crate::orphans::OrphanPool;
use crate::params::{AuxChainParams, ConsensusParams, NetworkId, PowAlgorithm, Preset};
use crate::payout::{compute_payouts, payout_seed};
use crate::pplns::{
    share_credits, window_work_cap, CapBasis, ChildWindow, CreditsLookup, ShareCredits, Window,
    WindowWeights,
};
use crate::retarget::{median_time_past, next_required_bits, RetargetSample};
use crate::share::{Share, ShareInfo};
use crate::target::Target;

/// Most shares waiting for a missing parent or uncle (their bytes are bounded too:
/// [`crate::orphans::ORPHAN_MAX_BYTES`]).
pub const ORPHAN_CAPACITY: usize = 1024;

/// A connected share and what the index derived from it.
#[derive(Clone, Debug)]
pub struct ChainEntry {
    pub hash: ShareHash,
    pub share: Arc<Share>,
    /// 0 for a chain's first share.
    pub height: u64,
    /// Cumulative weight from the first known share, inclusive.
    pub chain_work: u128,
    /// First-seen order: the order the store restores shares in (not consensus).
    pub seq: u64,
    pub credits: Arc<ShareCredits>,
    /// What its window's work cap is computed from (derived on insert).
    pub cap_basis: CapBasis,
}

impl ChainEntry {
    pub fn parent(&self) -> Option<ShareHash> {
        let prev = self.share.info.prev_share;
        (!prev.is_zero()).then_some(prev)
    }
}

/// The parent a share names, `None` for a chain's first share.
pub(crate) fn parent_of(info: &ShareInfo) -> Option<ShareHash> {
    (!info.prev_share.is_zero()).then_some(info.prev_share)
}

/// A change of best tip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TipChange {
    pub old: Option<ShareHash>,
    pub new: ShareHash,
    /// Shares of the old best chain no longer on it (0 when the new tip extends the old).
    pub reorg_depth: u64,
}

/// The tree of shares.
#[derive(Clone, Debug)]
pub struct ChainIndex {
    pub(crate) consensus: ConsensusParams,
    pub(crate) pow: PowAlgorithm,
    pub(crate) network_id: NetworkId,
    pub(crate) max_share_target: Target,
    pub(crate) max_money: u64,
    /// The coin's `powLimit` bits if it allows min-difficulty blocks (see [`CapBasis`]).
    pub(crate) min_difficulty_bits: Option<u32>,
    /// The aux chains shares may merge-mine (docs/PROTOCOL.md §15).
    pub(crate) aux_chains: Arc<[AuxChainParams]>,
    entries: HashMap<ShareHash, ChainEntry>,
    children: HashMap<ShareHash, Vec<ShareHash>>,
    best: Option<ShareHash>,
    /// The best chain by height: `best_by_height[i]` is its share at height
    /// `best_base + i`, from the oldest share held to the best tip.
    best_by_height: VecDeque<ShareHash>,
    best_base: u64,
    next_seq: u64,
    window: Window,
    pub(crate) orphans: OrphanPool,
}

struct Lookup<'a>(&'a HashMap<ShareHash, ChainEntry>);

impl CreditsLookup for Lookup<'_> {
    fn credits_of(&self, hash: &ShareHash) -> Option<(ShareHash, Arc<ShareCredits>)> {
        self.0
            .get(hash)
            .map(|e| (e.share.info.prev_share, e.credits.clone()))
    }
}

impl ChainIndex {
    pub fn new(preset: &Preset) -> Self {
        ChainIndex::with_params(
            preset.consensus.clone(),
            preset.coin.pow,
            preset.network_id(),
            preset.max_share_target(),
            preset.coin.max_money,
            preset
                .coin
                .min_difficulty_blocks
                .then_some(preset.coin.pow_limit_bits),
            preset.aux_chains.clone().into(),
        )
    }

    /// An index with no shares and the same network parameters.
    pub(crate) fn empty_like(&self) -> ChainIndex {
        ChainIndex::with_params(
            self.consensus.clone(),
            self.pow,
            self.network_id,
            self.max_share_target,
            self.max_money,
            self.min_difficulty_bits,
            self.aux_chains.clone(),
        )
    }

    fn with_params(
        consensus: ConsensusParams,
        pow: PowAlgorithm,
        network_id: NetworkId,
        max_share_target: Target,
        max_money: u64,
        min_difficulty_bits: Option<u32>,
        aux_chains: Arc<[AuxChainParams]>,
    ) -> ChainIndex {
        ChainIndex {
            consensus,
            pow,
            network_id,
            max_share_target,
            max_money,
            min_difficulty_bits,
            aux_chains,
            entries: HashMap::new(),
            children: HashMap::new(),
            best: None,
            best_by_height: VecDeque::new(),
            best_base: 0,
            next_seq: 0,
            window: Window::default(),
            orphans: OrphanPool::new(ORPHAN_CAPACITY),
        }
    }

    pub fn params(&self) -> &ConsensusParams {
        &self.consensus
    }

    pub fn network_id(&self) -> &NetworkId {
        &self.network_id
    }

    /// The aux chains shares may merge-mine.
    pub fn aux_chains(&self) -> &[AuxChainParams] {
        &self.aux_chains
    }

    /// The proof-of-work function of the parent chain.
    pub fn pow(&self) -> PowAlgorithm {
        self.pow
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, hash: &ShareHash) -> Option<&ChainEntry> {
        self.entries.get(hash)
    }

    /// The PPLNS window of the best tip (what the next share's window holds before its own
    /// credit: [`Window::sums`] per payout script, [`Window::len`] shares), or `None` with no
    /// chain.
    pub fn tip_window(&self) -> Option<&Window> {
        (self.best.is_some() && self.window.tip() == self.best).then_some(&self.window)
    }

    /// Every connected share, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &ChainEntry> {
        self.entries.values()
    }

    pub fn contains(&self, hash: &ShareHash) -> bool {
        self.entries.contains_key(hash)
    }

    /// Known either connected or waiting as an orphan.
    pub fn knows(&self, hash: &ShareHash) -> bool {
        self.entries.contains_key(hash) || self.orphans.contains(hash)
    }

    pub fn best(&self) -> Option<&ChainEntry> {
        self.best.and_then(|h| self.entries.get(&h))
    }

    pub fn best_hash(&self) -> Option<ShareHash> {
        self.best
    }

    /// The best chain's share at `height`, if the index holds one there. A lookup.
    pub fn best_at(&self, height: u64) -> Option<ShareHash> {
        let i = usize::try_from(height.checked_sub(self.best_base)?).ok()?;
        self.best_by_height.get(i).copied()
    }

    /// The oldest share held of the best chain (where its known history ends).
    pub fn best_oldest(&self) -> Option<&ChainEntry> {
        self.best_by_height
            .front()
            .and_then(|h| self.entries.get(h))
    }

    /// Whether `hash` is on the best chain. A lookup.
    pub fn on_best_chain(&self, hash: &ShareHash) -> bool {
        self.entries
            .get(hash)
            .is_some_and(|e| self.best_at(e.height) == Some(*hash))
    }

    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// Hashes the orphan pool waits for.
    pub fn missing(&self) -> Vec<ShareHash> {
        self.orphans.missing().copied().collect()
    }

    pub fn children_of(&self, hash: &ShareHash) -> &[ShareHash] {
        self.children.get(hash).map_or(&[], |v| v.as_slice())
    }

    /// `from` and its known ancestors, newest first.
    pub fn ancestors(&self, from: ShareHash) -> impl Iterator<Item = &ChainEntry> {
        let mut next = Some(from);
        std::iter::from_fn(move || {
            let entry = self.entries.get(&next?)?;
            next = entry.parent();
            Some(entry)
        })
    }

    /// The known entry of the chain ending at `from` at `height`.
    pub fn ancestor_at(&self, from: ShareHash, height: u64) -> Option<&ChainEntry> {
        let top = self.entries.get(&from)?;
        if height > top.height {
            return None;
        }
        self.ancestors(from).nth((top.height - height) as usize)
    }

    /// Whether `maybe_ancestor` is on the chain ending at `from` (inclusive).
    pub fn is_ancestor(&self, maybe_ancestor: &ShareHash, from: ShareHash) -> bool {
        match self.entries.get(maybe_ancestor) {
            Some(a) => self
                .ancestor_at(from, a.height)
                .is_some_and(|e| e.hash == *maybe_ancestor),
            None => false,
        }
    }

    /// The required share target (compact) for a child of `parent` (`None`: a first share).
    pub fn required_bits_for_child(&self, parent: Option<ShareHash>) -> u32 {
        let lookback: Vec<RetargetSample> = match parent {
            Some(p) => self
                .ancestors(p)
                .take(self.consensus.retarget_window as usize)
                .map(|e| RetargetSample {
                    time: e.share.header.time,
                    weight: e.credits.weight,
                    required_bits: e.share.info.required_bits,
                })
                .collect(),
            None => Vec::new(),
        };
        next_required_bits(&lookback, self.max_share_target, &self.consensus)
    }

    /// The cap basis of a child of `parent` whose header carries block target `block_bits`.
    pub fn cap_basis_for_child(&self, parent: Option<ShareHash>, block_bits: u32) -> CapBasis {
        let parent = parent.and_then(|p| self.entries.get(&p));
        CapBasis::of_share(
            block_bits,
            parent.map_or(0, |p| p.height + 1),
            parent.map(|p| p.cap_basis),
            self.min_difficulty_bits,
            &self.consensus,
        )
    }

    /// Median time past for a child of `parent`.
    pub fn median_time_past(&self, parent: ShareHash) -> Option<u32> {
        let times: Vec<u32> = self
            .ancestors(parent)
            .take(self.consensus.median_time_span as usize)
            .map(|e| e.share.header.time)
            .collect();
        median_time_past(&times, &self.consensus)
    }

    /// The credits of a share given the index. Every uncle it names must be connected:
    /// otherwise the first missing one is returned, never skipped (its weight would be
    /// wrong, and with it every window and retarget that reads it).
    pub fn credits_for(&self, info: &ShareInfo) -> Result<ShareCredits, ShareHash> {
        let uncles = info
            .uncles
            .iter()
            .map(|u| self.entries.get(u).map(|e| &e.share.info).ok_or(*u))
            .collect::<Result<Vec<&ShareInfo>, ShareHash>>()?;
        Ok(share_credits(info, &uncles, &self.consensus))
    }

    /// The credits of a share from the uncles the index holds, skipping any it does not.
    /// Only for a share within `uncle_depth` of where the held history starts (a joined
    /// chain's base, a pruned store's bottom), whose uncles may lie below that start (its
    /// weight is then short, harmlessly: no rule reads that deep, docs/PROTOCOL.md §11,
    /// §11.1), and for a template's own uncles (candidates the index holds). Everywhere
    /// else, [`ChainIndex::credits_for`].
    pub(crate) fn credits_from_held(&self, info: &ShareInfo) -> ShareCredits {
        let uncles: Vec<&ShareInfo> = info
            .uncles
            .iter()
            .filter_map(|u| self.entries.get(u).map(|e| &e.share.info))
            .collect();
        share_credits(info, &uncles, &self.consensus)
    }

    /// The payouts of a new share with `own` credits on `parent`, whose header carries
    /// block target `block_bits` (its cap basis follows from it and `parent`'s) and whose
    /// coinbase is worth `value`: the PPLNS window through [`compute_payouts`].
    pub fn window_payouts(
        &mut self,
        parent: Option<ShareHash>,
        own: &ShareCredits,
        block_bits: u32,
        value: u64,
        finder_script: &[u8],
    ) -> Vec<Payout> {
        self.with_child_window(parent, own, block_bits, |this, window| {
            this.payouts_from(window, parent, value, finder_script)
        })
    }

    /// [`ChainIndex::window_payouts`] from a window already read.
    pub(crate) fn payouts_from(
        &self,
        window: &ChildWindow<'_>,
        parent: Option<ShareHash>,
        value: u64,
        finder_script: &[u8],
    ) -> Vec<Payout> {
        let seed = payout_seed(&parent.unwrap_or(ShareHash::ZERO));
        let rules = self.consensus.payout_rules();
        compute_payouts(window.parent(), finder_script, value, &rules, &seed)
    }

    /// Calls `f` with the index and the window of a new share with `own` credits on
    /// `parent` whose header carries `block_bits`: incremental on the best tip, walked from
    /// scratch elsewhere. One call serves the share's coinbase and all its aux blocks'
    /// ([`ChildWindow`]), so a validation or a template fits the window once. The index is
    /// handed back read-only: the window's weights borrow it.
    pub(crate) fn with_child_window<R>(
        &mut self,
        parent: Option<ShareHash>,
        own: &ShareCredits,
        block_bits: u32,
        f: impl FnOnce(&ChainIndex, &ChildWindow<'_>) -> R,
    ) -> R {
        let basis = self.cap_basis_for_child(parent, block_bits);
        let cap = window_work_cap(basis.bits, &self.consensus);
        match parent {
            Some(p) if self.window.tip() == Some(p) => {
                self.window
                    .balance(cap, &Lookup(&self.entries), &self.consensus);
                let this = &*self;
                let extras =
                    this.window
                        .balanced_extras(own, &Lookup(&this.entries), &this.consensus);
                f(this, &ChildWindow::incremental(&this.window, &extras))
            }
            _ => {
                let ancestors = parent
                    .into_iter()
                    .flat_map(|p| self.ancestors(p))
                    .map(|e| e.credits.as_ref());
                let weights = WindowWeights::from_ancestors(own, ancestors, cap, &self.consensus);
                f(self, &ChildWindow::whole(&weights))
            }
        }
    }

    /// Adds a share that passed validation (or was validated before it was stored).
    /// `restored` carries the stored seq, height and chain work of a share loaded from disk.
    pub(crate) fn insert(
        &mut self,
        share: Share,
        credits: ShareCredits,
        restored: Option<(u64, u64, u128)>,
    ) -> (ChainEntry, Option<TipChange>) {
        let hash = share.hash();
        let parent = self.entries.get(&share.info.prev_share);
        let (seq, height, chain_work) = match restored {
            Some(r) => r,
            None => (
                self.next_seq,
                parent.map_or(0, |p| p.height + 1),
                parent
                    .map_or(0, |p| p.chain_work)
                    .saturating_add(credits.weight),
            ),
        };
        self.next_seq = self.next_seq.max(seq + 1);
        let cap_basis = CapBasis::of_share(
            share.header.bits,
            height,
            parent.map(|p| p.cap_basis),
            self.min_difficulty_bits,
            &self.consensus,
        );
        let entry = ChainEntry {
            hash,
            share: Arc::new(share),
            height,
            chain_work,
            seq,
            credits: Arc::new(credits),
            cap_basis,
        };
        self.children
            .entry(entry.share.info.prev_share)
            .or_default()
            .push(hash);
        self.entries.insert(hash, entry.clone());
        let change = self.update_best(&entry);
        (entry, change)
    }

    fn update_best(&mut self, entry: &ChainEntry) -> Option<TipChange> {
        let better = match self.best() {
            None => true,
            Some(best) => {
                // Equal work: the lower id (as 32 bytes, the order uncles are listed in),
                // a pure function of the shares, so every node picks the same tip.
                entry.chain_work > best.chain_work
                    || (entry.chain_work == best.chain_work && entry.hash < best.hash)
            }
        };
        if !better {
            return None;
        }
        let old = self.best;
        let reorg_depth = match old {
            Some(o) if o == entry.share.info.prev_share => 0,
            Some(o) => self.reorg_depth(o, entry.hash),
            None => 0,
        };
        self.best = Some(entry.hash);
        self.index_best_chain(entry);
        // The cap of the tip's child, if that child carries the same bits (else rebalanced).
        let cap = window_work_cap(entry.cap_basis.bits, &self.consensus);
        let lookup = Lookup(&self.entries);
        self.window
            .advance(entry.hash, cap, &lookup, &self.consensus);
        Some(TipChange {
            old,
            new: entry.hash,
            reorg_depth,
        })
    }

    /// Points the height index at the chain ending at `tip`: walks back from `tip` to the
    /// first share the index already holds at its height (one step when `tip` extends the
    /// best chain, the reorg depth otherwise), drops what was above it, appends the rest.
    fn index_best_chain(&mut self, tip: &ChainEntry) {
        let mut path: Vec<ShareHash> = Vec::new();
        let mut joint: Option<u64> = None;
        let mut next = Some(tip);
        while let Some(e) = next {
            if self.best_at(e.height) == Some(e.hash) {
                joint = Some(e.height);
                break;
            }
            path.push(e.hash);
            next = e.parent().and_then(|p| self.entries.get(&p));
        }
        match joint {
            Some(height) => {
                let keep = (height - self.best_base) as usize + 1;
                self.best_by_height.truncate(keep);
            }
            None => {
                // The new chain shares nothing with the indexed one (or there was none): it
                // is indexed from where its known history ends.
                self.best_by_height.clear();
                self.best_base = (tip.height + 1).saturating_sub(path.len() as u64);
            }
        }
        self.best_by_height.extend(path.into_iter().rev());
    }

    /// How many shares of the chain ending at `old` are not on the chain ending at `new`
    /// (counted down to where the known history ends, if the two never meet).
    fn reorg_depth(&self, old: ShareHash, new: ShareHash) -> u64 {
        let (Some(o), Some(n)) = (self.entries.get(&old), self.entries.get(&new)) else {
            return 0;
        };
        let (mut a, mut b) = (o, n);
        let mut depth = 0;
        loop {
            if a.hash == b.hash {
                return depth;
            }
            if a.height >= b.height {
                depth += 1;
                match a.parent().and_then(|p| self.entries.get(&p)) {
                    Some(p) => a = p,
                    None => return depth,
                }
            } else {
                match b.parent().and_then(|p| self.entries.get(&p)) {
                    Some(p) => b = p,
                    // The new chain's history ends first: all of the old one is left.
                    None => return depth + self.ancestors(a.hash).count() as u64,
                }
            }
        }
    }

    /// Recent shares a child of `parent` may include as uncles: within `uncle_depth`,
    /// off the chain, hanging off it, not included already. Most work first, at most
    /// `max_uncles`, returned in ascending hash order (as a share lists them).
    pub fn uncle_candidates(&self, parent: ShareHash) -> Vec<ShareHash> {
        let Some(top) = self.entries.get(&parent) else {
            return Vec::new();
        };
        let child_height = top.height + 1;
        let depth = u64::from(self.consensus.uncle_depth);
        let chain: Vec<&ChainEntry> = self.ancestors(parent).take(depth as usize + 1).collect();
        let included: std::collections::HashSet<ShareHash> = chain
            .iter()
            .flat_map(|e| e.share.info.uncles.iter().copied())
            .collect();
        let mut found: Vec<&ChainEntry> = Vec::new();
        for at in chain.iter().skip(1) {
            // Siblings of a chain share hang off its parent: at's children other than the
            // chain share one height above.
            for child in self.children_of(&at.hash) {
                let Some(c) = self.entries.get(child) else {
                    continue;
                };
                if child_height.saturating_sub(c.height) > depth
                    || chain.iter().any(|e| e.hash == *child)
                    || included.contains(child)
                {
                    continue;
                }
                found.push(c);
            }
        }
        found.sort_by(|a, b| {
            b.credits
                .weight
                .cmp(&a.credits.weight)
                .then(a.seq.cmp(&b.seq))
        });
        let mut hashes: Vec<ShareHash> = found
            .into_iter()
            .take(self.consensus.max_uncles as usize)
            .map(|e| e.hash)
            .collect();
        hashes.sort();
        hashes
    }

    /// Removes shares more than `keep` heights below the best tip. Returns their hashes.
    pub fn prune(&mut self, keep: u64) -> Vec<ShareHash> {
        let Some(best) = self.best() else {
            return Vec::new();
        };
        let Some(floor) = best.height.checked_sub(keep) else {
            return Vec::new();
        };
        let doomed: Vec<ShareHash> = self
            .entries
            .values()
            .filter(|e| e.height < floor)
            .map(|e| e.hash)
            .collect();
        // Each parent's child list is filtered once, whatever number of its children go:
        // removing them one by one would be quadratic in a parent's children (all the
        // roots share the all-zero parent).
        let gone: HashSet<ShareHash> = doomed.iter().copied().collect();
        let mut parents: HashSet<ShareHash> = HashSet::new();
        for hash in &doomed {
            if let Some(e) = self.entries.remove(hash) {
                parents.insert(e.share.info.prev_share);
            }
        }
        for parent in parents {
            if let Some(siblings) = self.children.get_mut(&parent) {
                siblings.retain(|h| !gone.contains(h));
                if siblings.is_empty() {
                    self.children.remove(&parent);
                }
            }
        }
        while self.best_base < floor && self.best_by_height.pop_front().is_some() {
            self.best_base += 1;
        }
        doomed
    }

    /// The hashes of the best chain, newest first, at most `n`.
    pub fn best_chain(&self, n: usize) -> Vec<ShareHash> {
        self.best_by_height.iter().rev().take(n).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{block_context, grow_chain, mine_share, miner, regtest_preset};
    use proptest::prelude::*;

    const T0: u32 = 1_700_000_000;

    fn index() -> ChainIndex {
        ChainIndex::new(&regtest_preset("[consensus]\nwindow_shares = 20\n"))
    }

    fn next_payouts(index: &mut ChainIndex) -> Vec<crate::coinbase::Payout> {
        index
            .share_template(&miner(99), block_context(50_0000_0000))
            .unwrap()
            .payouts
    }

    /// The exact coinbase bytes the next share of miner 99 would commit to.
    fn next_coinbase(index: &mut ChainIndex) -> Vec<u8> {
        index
            .share_template(&miner(99), block_context(50_0000_0000))
            .unwrap()
            .coinbase(vec![1, 2, 3, 4])
            .to_bytes()
    }

    #[test]
    fn a_linear_chain_grows_the_best_tip() {
        let mut idx = index();
        let shares = grow_chain(&mut idx, 5, 3, T0);
        let best = idx.best().unwrap();
        assert_eq!(best.hash, shares[4].hash());
        assert_eq!(best.height, 4);
        // Each regtest share at the easiest target does work 2.
        assert_eq!(best.chain_work, 10);
        assert_eq!(idx.best_chain(10).len(), 5);
        assert!(idx.is_ancestor(&shares[0].hash(), best.hash));
    }

    #[test]
    fn a_child_before_its_parent_waits_then_connects() {
        let mut source = index();
        let shares = grow_chain(&mut source, 3, 2, T0);
        let mut idx = index();
        idx.connect(shares[0].clone(), u64::from(T0) + 100).unwrap();
        let err = idx
            .connect(shares[2].clone(), u64::from(T0) + 100)
            .unwrap_err();
        assert_eq!(err, ShareError::UnknownParent(shares[1].hash()));
        assert_eq!(idx.orphan_count(), 1);
        assert_eq!(idx.missing(), vec![shares[1].hash()]);
        let done = idx.connect(shares[1].clone(), u64::from(T0) + 100).unwrap();
        assert_eq!(done.entries.len(), 2);
        assert_eq!(idx.best_hash(), Some(shares[2].hash()));
        assert_eq!(idx.orphan_count(), 0);
        assert_eq!(
            idx.connect(shares[1].clone(), u64::from(T0) + 100)
                .unwrap_err(),
            ShareError::Duplicate(shares[1].hash())
        );
    }

    use crate::validation::ShareError;

    /// Builds a tree: a main chain and a competing branch from `fork_at`. With
    /// `see_main`, the branch's miner knows the main chain and includes its shares as
    /// uncles where it may.
    fn forked(
        main_len: usize,
        fork_at: usize,
        branch_len: usize,
        see_main: bool,
    ) -> (Vec<Share>, Vec<Share>) {
        let mut idx = index();
        let main = grow_chain(&mut idx, main_len, 3, T0);
        if !see_main {
            idx = index();
            for s in &main[..=fork_at] {
                idx.connect(s.clone(), u64::from(T0) + 10_000).unwrap();
            }
        }
        let mut branch = Vec::new();
        let mut parent = main[fork_at].hash();
        for i in 0..branch_len {
            let time = T0 + 1000 + i as u32 * 2;
            let s = mine_share(&mut idx, Some(parent), &miner(10 + i as u32 % 2), time);
            idx.connect(s.clone(), u64::from(time)).unwrap();
            parent = s.hash();
            branch.push(s);
        }
        (main, branch)
    }

    #[test]
    fn most_work_wins_and_a_reorg_equals_building_the_winner_from_scratch() {
        let (main, branch) = forked(8, 3, 6, true);
        assert!(branch.iter().any(|s| !s.info.uncles.is_empty()));
        // Replay: main chain first, then the heavier branch arrives and takes over.
        let mut idx = index();
        for s in &main {
            idx.connect(s.clone(), u64::from(T0) + 10_000).unwrap();
        }
        assert_eq!(idx.best_hash(), Some(main[7].hash()));
        let mut last_change = None;
        for s in &branch {
            if let Some(c) = idx
                .connect(s.clone(), u64::from(T0) + 10_000)
                .unwrap()
                .tip_change
            {
                last_change = Some(c);
            }
        }
        let change = last_change.unwrap();
        assert_eq!(change.new, branch[5].hash());
        assert_eq!(idx.best_hash(), Some(branch[5].hash()));

        // From scratch: only the winning chain and the uncles it includes.
        let uncles: Vec<&Share> = main[4..]
            .iter()
            .filter(|m| branch.iter().any(|b| b.info.uncles.contains(&m.hash())))
            .collect();
        let mut fresh = index();
        let mut winning: Vec<&Share> = main[..4].iter().chain(branch.iter()).collect();
        winning.extend(uncles);
        for s in winning {
            let _ = fresh.connect(s.clone(), u64::from(T0) + 10_000);
        }
        assert_eq!(fresh.orphan_count(), 0);
        assert_eq!(fresh.best_hash(), idx.best_hash());
        assert_eq!(next_payouts(&mut fresh), next_payouts(&mut idx));
        assert_eq!(
            fresh.best().unwrap().chain_work,
            idx.best().unwrap().chain_work
        );
    }

    #[test]
    fn a_reorg_back_to_the_first_branch_restores_its_state() {
        let (main, branch) = forked(6, 2, 4, false);
        let mut idx = index();
        for s in main.iter().chain(branch.iter()) {
            idx.connect(s.clone(), u64::from(T0) + 10_000).unwrap();
        }
        // The branch (height 6) beat the main chain (height 5).
        assert_eq!(idx.best_hash(), Some(branch[3].hash()));
        // More shares on the main chain (which include branch shares as uncles) take it back.
        let mut extended = main.clone();
        let mut parent = main[5].hash();
        let mut deepest = 0;
        for i in 0..2 {
            let s = mine_share(&mut idx, Some(parent), &miner(1), T0 + 2000 + i);
            let change = idx
                .connect(s.clone(), u64::from(T0) + 10_000)
                .unwrap()
                .tip_change;
            deepest = deepest.max(change.map_or(0, |c| c.reorg_depth));
            parent = s.hash();
            extended.push(s);
        }
        assert_eq!(deepest, 4, "the four branch shares left the best chain");
        assert_eq!(idx.best_hash(), Some(parent));
        // The same state as a node that saw the winning chain first, the branch after.
        let mut fresh = index();
        for s in extended.iter().chain(branch.iter()) {
            let _ = fresh.connect(s.clone(), u64::from(T0) + 10_000);
        }
        assert_eq!(fresh.orphan_count(), 0);
        assert_eq!(fresh.best_hash(), Some(parent));
        assert_eq!(next_coinbase(&mut fresh), next_coinbase(&mut idx));
    }

    #[test]
    fn equal_work_picks_the_lower_id_in_any_order() {
        let (main, branch) = forked(5, 2, 2, false);
        // main[3], main[4] and branch[0], branch[1] tie in work at height 4.
        let lower = main[4].hash().min(branch[1].hash());
        let mut idx = index();
        for s in main.iter().chain(branch.iter()) {
            idx.connect(s.clone(), u64::from(T0) + 10_000).unwrap();
        }
        assert_eq!(
            idx.get(&main[4].hash()).unwrap().chain_work,
            idx.get(&branch[1].hash()).unwrap().chain_work
        );
        assert_eq!(idx.best_hash(), Some(lower));
        let mut idx = index();
        for s in main[..3]
            .iter()
            .chain(branch.iter())
            .chain(main[3..].iter())
        {
            idx.connect(s.clone(), u64::from(T0) + 10_000).unwrap();
        }
        assert_eq!(idx.best_hash(), Some(lower));
        assert_eq!(idx.best_chain(100), walked_best_chain(&idx));
    }

    /// The best chain by walking parents, newest first: what the height index must hold.
    fn walked_best_chain(idx: &ChainIndex) -> Vec<ShareHash> {
        idx.best_hash()
            .map(|b| idx.ancestors(b).map(|e| e.hash).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_new_chain_offered_to_a_node_with_one_is_refused_before_its_proof_of_work() {
        let mut idx = index();
        let shares = grow_chain(&mut idx, 3, 1, T0);
        let mut other = index();
        let root = grow_chain(&mut other, 1, 2, T0 + 7).remove(0);
        let now = u64::from(T0) + 10_000;
        let err = idx.connect(root.clone(), now).unwrap_err();
        assert_eq!(err, ShareError::RootRefused(root.hash()));
        assert!(!err.is_punishable() && !err.is_orphan());
        assert!(!idx.knows(&root.hash()));
        // Even with a proof of work that fails: refused before it is checked.
        let mut junk = root.clone();
        let target = Target::from_compact(junk.info.share_target_bits).unwrap();
        while target.is_met_by(&crate::pow::pow_hash(idx.pow, &junk.header.to_bytes())) {
            junk.header.nonce = junk.header.nonce.wrapping_add(1);
        }
        assert_eq!(
            idx.connect(junk.clone(), now).unwrap_err(),
            ShareError::RootRefused(junk.hash())
        );
        // Our own first share is a duplicate, as ever; an empty node takes any first share.
        assert_eq!(
            idx.connect(shares[0].clone(), now).unwrap_err(),
            ShareError::Duplicate(shares[0].hash())
        );
        assert!(index().connect(root, now).is_ok());
        assert_eq!(idx.best_hash(), Some(shares[2].hash()));
    }

    #[test]
    fn pruning_many_roots_keeps_the_children_lists_consistent() {
        // Roots restored from an old store all hang off the all-zero parent.
        let mut idx = index();
        let shares = grow_chain(&mut idx, 30, 2, T0);
        let mut source = index();
        for i in 0..50u32 {
            let root = mine_share(&mut source, None, &miner(100 + i), T0 + i);
            let credits = source.credits_for(&root.info).unwrap();
            idx.insert(root, credits, None);
        }
        assert_eq!(idx.children_of(&ShareHash::ZERO).len(), 51);
        idx.prune(20);
        assert!(idx.children_of(&ShareHash::ZERO).is_empty());
        assert_eq!(idx.len(), 21);
        assert_eq!(idx.best_oldest().unwrap().hash, shares[9].hash());
        assert_eq!(idx.best_chain(100), walked_best_chain(&idx));
    }

    #[test]
    fn an_orphaned_sibling_becomes_an_uncle_and_earns_reduced_weight() {
        let mut idx = index();
        let main = grow_chain(&mut idx, 4, 1, T0);
        // A sibling of main[3] by another miner, with a higher id so that main[3] stays best
        // (equal work: the lower id wins).
        let uncle = (7..)
            .map(|m| mine_share(&mut idx, Some(main[2].hash()), &miner(m), T0 + 50))
            .find(|s| s.hash() > main[3].hash())
            .unwrap();
        idx.connect(uncle.clone(), u64::from(T0) + 60).unwrap();
        assert_eq!(idx.best_hash(), Some(main[3].hash()));
        assert_eq!(idx.uncle_candidates(main[3].hash()), vec![uncle.hash()]);
        let nephew = mine_share(&mut idx, Some(main[3].hash()), &miner(0), T0 + 70);
        assert_eq!(nephew.info.uncles, vec![uncle.hash()]);
        idx.connect(nephew.clone(), u64::from(T0) + 70).unwrap();
        let e = idx.get(&nephew.hash()).unwrap();
        // Own work 2 plus the uncle's 2.
        assert_eq!(e.credits.weight, 4);
        assert_eq!(
            e.chain_work,
            idx.get(&main[3].hash()).unwrap().chain_work + 4
        );
        // Already included: not offered again.
        assert!(idx.uncle_candidates(nephew.hash()).is_empty());
    }

    #[test]
    fn pruning_keeps_the_recent_chain() {
        let mut idx = index();
        let shares = grow_chain(&mut idx, 30, 2, T0);
        let before = next_payouts(&mut idx);
        let gone = idx.prune(22);
        assert_eq!(gone.len(), 7);
        assert!(!idx.contains(&shares[0].hash()));
        assert!(idx.contains(&shares[7].hash()));
        // Pruning below the window does not change what the next share pays.
        assert_eq!(next_payouts(&mut idx), before);
    }

    /// Honest orphans (a chain's shares 5..10, share 4 missing) and a pool of `capacity`.
    fn with_orphans(capacity: usize) -> (ChainIndex, Vec<Share>) {
        let mut source = index();
        let shares = grow_chain(&mut source, 10, 2, T0);
        let mut idx = index();
        idx.orphans = OrphanPool::new(capacity);
        for s in &shares[..4] {
            idx.connect(s.clone(), u64::from(T0) + 10_000).unwrap();
        }
        for s in &shares[5..] {
            assert!(idx
                .connect(s.clone(), u64::from(T0) + 10_000)
                .unwrap_err()
                .is_orphan());
        }
        assert_eq!(idx.orphan_count(), 5);
        (idx, shares)
    }

    /// Copies of `share` with other nonces, whose proof of work fails (`bad`) or holds
    /// (they are then valid siblings of `share`).
    fn variants(idx: &ChainIndex, share: &Share, n: usize, bad: bool) -> Vec<Share> {
        let target = Target::from_compact(share.info.share_target_bits).unwrap();
        let mut out = Vec::new();
        let mut s = share.clone();
        while out.len() < n {
            s.header.nonce = s.header.nonce.wrapping_add(1);
            let meets = target.is_met_by(&crate::pow::pow_hash(idx.pow, &s.header.to_bytes()));
            if meets != bad {
                out.push(s.clone());
            }
        }
        out
    }

    #[test]
    fn orphans_are_checked_alone_before_they_are_parked() {
        let (mut idx, shares) = with_orphans(8);
        let now = u64::from(T0) + 10_000;
        let junk = variants(&idx, &shares[9], 1, true).remove(0);
        assert_eq!(
            idx.connect(junk.clone(), now).unwrap_err(),
            ShareError::InsufficientWork
        );
        assert!(!idx.knows(&junk.hash()));
        let mut easy = variants(&idx, &shares[9], 1, false).remove(0);
        easy.info.required_bits = 0x2100_ffff;
        assert!(matches!(
            idx.connect(easy, now),
            Err(ShareError::ShareTargetTooEasy { .. })
        ));
        let future =
            u64::from(shares[9].header.time) - u64::from(idx.consensus.max_future_secs) - 1;
        let err = idx.connect(variants(&idx, &shares[9], 1, false).remove(0), future);
        assert!(matches!(err, Err(ShareError::TimestampInFuture { .. })));
        assert_eq!(idx.orphan_count(), 5);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6))]
        /// A flood of junk never pushes out an honest orphan: shares whose proof of work
        /// fails are refused (and punishable), and shares at the easiest target that do
        /// carry their work find the pool full of shares worth as much.
        #[test]
        fn a_flood_never_evicts_an_honest_orphan(bad in 1usize..40, good in 0usize..12) {
            let (mut idx, shares) = with_orphans(8);
            let now = u64::from(T0) + 10_000;
            for junk in variants(&idx, &shares[9], bad, true) {
                let err = idx.connect(junk, now).unwrap_err();
                prop_assert_eq!(&err, &ShareError::InsufficientWork);
                prop_assert!(err.is_punishable());
            }
            // Junk that carries its work at the easiest target, but breaks a rule only full
            // validation sees (its coinbase no longer matches the header).
            for mut cheap in variants(&idx, &shares[9], good, false) {
                cheap.coinbase.value -= 1;
                prop_assert!(idx.connect(cheap, now).unwrap_err().is_orphan());
            }
            prop_assert!(idx.orphan_count() <= 8);
            for s in &shares[5..] {
                prop_assert!(idx.knows(&s.hash()));
            }
            let done = idx.connect(shares[4].clone(), now).unwrap();
            prop_assert_eq!(done.entries.len(), 6);
            prop_assert_eq!(idx.best_hash(), Some(shares[9].hash()));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        /// Any arrival order of the same shares gives the same best tip and the same next
        /// coinbase payouts, with a heavier branch (which includes uncles) and with two
        /// tips of equal work.
        #[test]
        fn arrival_order_does_not_matter(order in Just((0..14usize).collect::<Vec<_>>()).prop_shuffle()) {
            for (main, branch) in [forked(9, 4, 5, true), forked(9, 3, 5, false)] {
                let all: Vec<Share> = main.into_iter().chain(branch).collect();
                let mut reference = index();
                for s in &all {
                    reference.connect(s.clone(), u64::from(T0) + 10_000).unwrap();
                }
                let mut idx = index();
                for &i in &order {
                    let _ = idx.connect(all[i].clone(), u64::from(T0) + 10_000);
                }
                prop_assert_eq!(idx.len(), all.len());
                prop_assert_eq!(idx.best_hash(), reference.best_hash());
                prop_assert_eq!(idx.best_chain(100), walked_best_chain(&idx));
                prop_assert_eq!(next_coinbase(&mut idx), next_coinbase(&mut reference));
            }
        }
    }
}
