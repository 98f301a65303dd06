//! PPLNS: who is owed what over the window of recent shares.
//!
//! Each share on the chain earns **credits**: its work (`Target::work` of its share target)
//! to its payout script, less the operator fee it carries, which goes to the fee script.
//! A share that includes uncles also credits each uncle's miner with the uncle's work less
//! the uncle penalty, and takes the penalty itself. A share's **weight** is its own work
//! plus its uncles' work: the sum of its credits before the fee split.
//!
//! The window for a new share is the share itself plus up to `window_shares − 1` of its
//! ancestors, newest first, while their summed weight stays within the **work cap**
//! (`window_work_blocks ×` the work of the block target in the new share's header). The
//! ancestor that crosses the cap counts only for the part below it: each of its credits is
//! scaled by `remaining / weight`, rounded down. The new share counts in full.
//!
//! Credits are kept twice: by parent-chain script, and by aux-chain script (docs/PROTOCOL.md
//! §15). A credit whose holder has no aux script has no aux credit: on aux chains the window
//! is the same shares, the same cap and the same scaling, without it.
//!
//! [`WindowWeights`] computes this from scratch, walking the ancestors; [`Window`] keeps it
//! up to date as the best chain grows, adding the new tip and dropping the oldest share,
//! so connecting a share does not walk the whole window. [`ChildWindow`] reads either for
//! one new share, once for its coinbase and all its aux blocks.

use std::cell::OnceCell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ruint::aliases::U256;

use crate::hash::ShareHash;
use crate::params::ConsensusParams;
use crate::share::ShareInfo;
use crate::target::Target;

/// What one share adds to the window: `(script, weight)` credits and their sum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareCredits {
    /// Own work plus uncles' work.
    pub weight: u128,
    /// Credits by script; a script may appear more than once.
    pub credits: Vec<(Vec<u8>, u128)>,
    /// The same credits by aux-chain script, leaving out those with none.
    pub aux_credits: Vec<(Vec<u8>, u128)>,
}

/// The work of a share's own share target (1 if the bits are invalid, which validation
/// refuses before a share ever reaches the chain).
pub fn share_work(info: &ShareInfo) -> u128 {
    Target::from_compact(info.share_target_bits)
        .map(|t| t.work().0)
        .unwrap_or(1)
}

/// Credits `amount` to `info`'s miner and fee, on the parent chain (`out`) and on aux
/// chains (`aux_out`).
fn split_fee(
    info: &ShareInfo,
    amount: u128,
    out: &mut Vec<(Vec<u8>, u128)>,
    aux_out: &mut Vec<(Vec<u8>, u128)>,
) {
    let (fee, rest) = match &info.fee {
        Some(fee) => {
            let f = amount * u128::from(fee.basis_points.min(10_000)) / 10_000;
            (Some((fee, f)), amount - f)
        }
        None => (None, amount),
    };
    out.push((info.payout_script.clone(), rest));
    if let Some(aux) = info.aux_payout_script() {
        aux_out.push((aux, rest));
    }
    if let Some((fee, f)) = fee {
        out.push((fee.script.clone(), f));
        if let Some(aux) = fee.aux_payout_script() {
            aux_out.push((aux, f));
        }
    }
}

/// The credits of a share, given the uncles it includes (in its `uncles` order). Only the
/// share data counts, so a template's credits are known before its proof of work.
/// Weights saturate rather than overflow: no real share chain comes near `u128::MAX`.
pub fn share_credits(
    share: &ShareInfo,
    uncles: &[&ShareInfo],
    params: &ConsensusParams,
) -> ShareCredits {
    let own = share_work(share);
    let mut weight = own;
    let mut nephew = own;
    let mut credits = Vec::with_capacity(2 + 2 * uncles.len());
    let mut aux_credits = Vec::with_capacity(2 + 2 * uncles.len());
    let mut uncle_credits = Vec::with_capacity(2 * uncles.len());
    let mut uncle_aux_credits = Vec::with_capacity(2 * uncles.len());
    for uncle in uncles {
        let work = share_work(uncle);
        let penalty = work / 100 * u128::from(params.uncle_penalty_percent)
            + work % 100 * u128::from(params.uncle_penalty_percent) / 100;
        weight = weight.saturating_add(work);
        nephew = nephew.saturating_add(penalty);
        split_fee(
            uncle,
            work - penalty,
            &mut uncle_credits,
            &mut uncle_aux_credits,
        );
    }
    split_fee(share, nephew, &mut credits, &mut aux_credits);
    credits.extend(uncle_credits);
    credits.retain(|(_, w)| *w > 0);
    aux_credits.extend(uncle_aux_credits);
    aux_credits.retain(|(_, w)| *w > 0);
    ShareCredits {
        weight,
        credits,
        aux_credits,
    }
}

/// The block difficulty a share's window cap is computed from (docs/PROTOCOL.md §8): the
/// `bits` of the share's header, unless those are a min-difficulty block's, which say
/// nothing about the coin's real difficulty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapBasis {
    /// Compact block target.
    pub bits: u32,
    /// Height of the share whose header carries `bits` (heights only ever compared).
    pub height: u64,
}

impl CapBasis {
    /// The cap basis of a share at `height` whose header carries `bits`, given its parent's
    /// (`None` for a chain's first share). `min_difficulty_bits` is the coin's `powLimit`
    /// if it allows min-difficulty blocks. Such a share inherits its parent's basis: the
    /// `bits` of the newest share among itself and its `window_shares − 1` ancestors that
    /// does not carry `powLimit`, or `powLimit` if there is none. The bound keeps the rule
    /// within the history every node holds (a node that joined a pruned chain included).
    pub fn of_share(
        bits: u32,
        height: u64,
        parent: Option<CapBasis>,
        min_difficulty_bits: Option<u32>,
        params: &ConsensusParams,
    ) -> CapBasis {
        let own = CapBasis { bits, height };
        let Some(limit) = min_difficulty_bits else {
            return own;
        };
        match parent {
            Some(p)
                if bits == limit
                    && p.bits != limit
                    && height.saturating_sub(p.height) < u64::from(params.window_shares) =>
            {
                p
            }
            _ => own,
        }
    }
}

/// The work cap for a share whose cap basis ([`CapBasis`]) is block target `block_bits`.
pub fn window_work_cap(block_bits: u32, params: &ConsensusParams) -> u128 {
    let block_work = Target::from_compact(block_bits)
        .map(|t| t.work().0)
        .unwrap_or(1);
    block_work.saturating_mul(u128::from(params.window_work_blocks))
}

/// `floor(value × numerator / denominator)` without overflow.
fn scale(value: u128, numerator: u128, denominator: u128) -> u128 {
    (U256::from(value) * U256::from(numerator) / U256::from(denominator)).to::<u128>()
}

/// Adds each credit to its script's sum.
fn add_credits(sums: &mut BTreeMap<Vec<u8>, u128>, credits: &[(Vec<u8>, u128)]) {
    for (script, w) in credits {
        let slot = sums.entry(script.clone()).or_insert(0);
        *slot = slot.saturating_add(*w);
    }
}

/// Takes each credit off its script's sum, dropping sums that reach zero.
fn remove_credits(sums: &mut BTreeMap<Vec<u8>, u128>, credits: &[(Vec<u8>, u128)]) {
    for (script, w) in credits {
        if let Some(slot) = sums.get_mut(script) {
            *slot = slot.saturating_sub(*w);
            if *slot == 0 {
                sums.remove(script);
            }
        }
    }
}

/// Adds the part `remaining / weight` of each credit (rounded down) to its script's sum.
fn add_scaled_credits(
    sums: &mut BTreeMap<Vec<u8>, u128>,
    credits: &[(Vec<u8>, u128)],
    remaining: u128,
    weight: u128,
) {
    for (script, w) in credits {
        let part = scale(*w, remaining, weight);
        if part > 0 {
            let slot = sums.entry(script.clone()).or_insert(0);
            *slot = slot.saturating_add(part);
        }
    }
}

/// Per-script weights of one window, ascending by script, on the parent chain and on aux
/// chains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowWeights {
    pub by_script: BTreeMap<Vec<u8>, u128>,
    pub by_aux_script: BTreeMap<Vec<u8>, u128>,
}

impl WindowWeights {
    fn add(&mut self, credits: &ShareCredits) {
        add_credits(&mut self.by_script, &credits.credits);
        add_credits(&mut self.by_aux_script, &credits.aux_credits);
    }

    fn add_scaled(&mut self, credits: &ShareCredits, remaining: u128) {
        let weight = credits.weight;
        add_scaled_credits(&mut self.by_script, &credits.credits, remaining, weight);
        add_scaled_credits(
            &mut self.by_aux_script,
            &credits.aux_credits,
            remaining,
            weight,
        );
    }

    /// The window from scratch: `own` plus `ancestors` (newest first).
    pub fn from_ancestors<'a>(
        own: &ShareCredits,
        ancestors: impl IntoIterator<Item = &'a ShareCredits>,
        cap: u128,
        params: &ConsensusParams,
    ) -> WindowWeights {
        let mut weights = WindowWeights::default();
        weights.add(own);
        let mut sum = 0u128;
        let limit = (params.window_shares as usize).saturating_sub(1);
        for credits in ancestors.into_iter().take(limit) {
            if sum.saturating_add(credits.weight) <= cap {
                sum += credits.weight;
                weights.add(credits);
            } else {
                weights.add_scaled(credits, cap - sum);
                break;
            }
        }
        weights
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u128)> {
        self.by_script.iter().map(|(s, w)| (s.as_slice(), *w))
    }

    /// The aux-chain weights, ascending by aux script.
    pub fn iter_aux(&self) -> impl Iterator<Item = (&[u8], u128)> {
        self.by_aux_script.iter().map(|(s, w)| (s.as_slice(), *w))
    }
}

/// Looks up a share's parent and credits by hash; `None` past the known chain.
pub trait CreditsLookup {
    fn credits_of(&self, hash: &ShareHash) -> Option<(ShareHash, Arc<ShareCredits>)>;
}

/// The window of the best chain, maintained incrementally.
///
/// Holds the ancestors that a child of `tip` would count in full, for the cap it was last
/// balanced to, with their per-script sums. The partially counted boundary share and the
/// new share's own credits are added when weights are asked for.
#[derive(Clone, Debug, Default)]
pub struct Window {
    tip: Option<ShareHash>,
    /// Newest first: (hash, parent, credits).
    full: VecDeque<(ShareHash, ShareHash, Arc<ShareCredits>)>,
    sums: BTreeMap<Vec<u8>, u128>,
    aux_sums: BTreeMap<Vec<u8>, u128>,
    full_weight: u128,
    cap: u128,
}

impl Window {
    pub fn tip(&self) -> Option<ShareHash> {
        self.tip
    }

    /// Shares counted in full (the tip and its ancestors).
    pub fn len(&self) -> usize {
        self.full.len()
    }

    pub fn is_empty(&self) -> bool {
        self.full.is_empty()
    }

    fn add(&mut self, credits: &ShareCredits) {
        self.full_weight = self.full_weight.saturating_add(credits.weight);
        add_credits(&mut self.sums, &credits.credits);
        add_credits(&mut self.aux_sums, &credits.aux_credits);
    }

    fn remove(&mut self, credits: &ShareCredits) {
        self.full_weight = self.full_weight.saturating_sub(credits.weight);
        remove_credits(&mut self.sums, &credits.credits);
        remove_credits(&mut self.aux_sums, &credits.aux_credits);
    }

    /// Rebuilds the window for `tip` from scratch.
    pub fn reset(
        &mut self,
        tip: ShareHash,
        cap: u128,
        chain: &impl CreditsLookup,
        params: &ConsensusParams,
    ) {
        *self = Window {
            tip: Some(tip),
            cap,
            ..Window::default()
        };
        if let Some((parent, credits)) = chain.credits_of(&tip) {
            self.full.push_back((tip, parent, credits.clone()));
            self.add(&credits);
        }
        self.rebalance(cap, chain, params);
    }

    /// Moves the window to `new_tip`, a child of the current tip; anything else resets.
    pub fn advance(
        &mut self,
        new_tip: ShareHash,
        cap: u128,
        chain: &impl CreditsLookup,
        params: &ConsensusParams,
    ) {
        match chain.credits_of(&new_tip) {
            Some((parent, credits)) if Some(parent) == self.tip => {
                self.tip = Some(new_tip);
                self.full.push_front((new_tip, parent, credits.clone()));
                self.add(&credits);
                self.rebalance(cap, chain, params);
            }
            _ => self.reset(new_tip, cap, chain, params),
        }
    }

    /// Re-fits the window to `cap` (and the count limit), at either end.
    pub fn rebalance(&mut self, cap: u128, chain: &impl CreditsLookup, params: &ConsensusParams) {
        self.cap = cap;
        let limit = (params.window_shares as usize).saturating_sub(1);
        while self.full.len() > limit || self.full_weight > cap {
            match self.full.pop_back() {
                Some((_, _, credits)) => self.remove(&credits),
                None => break,
            }
        }
        while self.full.len() < limit {
            let Some(older) = self.boundary(chain) else {
                break;
            };
            if self.full_weight.saturating_add(older.2.weight) > cap {
                break;
            }
            self.add(&older.2);
            self.full.push_back(older);
        }
    }

    /// The next older share after the fully counted ones.
    fn boundary(
        &self,
        chain: &impl CreditsLookup,
    ) -> Option<(ShareHash, ShareHash, Arc<ShareCredits>)> {
        let next = match self.full.back() {
            Some((_, parent, _)) => *parent,
            None => self.tip?,
        };
        let (parent, credits) = chain.credits_of(&next)?;
        Some((next, parent, credits))
    }

    /// The per-script sums of the fully counted ancestors (balanced by [`Window::extras`]).
    pub fn sums(&self) -> &BTreeMap<Vec<u8>, u128> {
        &self.sums
    }

    /// The same by aux-chain script.
    pub fn aux_sums(&self) -> &BTreeMap<Vec<u8>, u128> {
        &self.aux_sums
    }

    /// Balances the window to `cap` and returns what a child of the tip adds to
    /// [`Window::sums`]: its own credits and the partially counted boundary share.
    pub fn extras(
        &mut self,
        own: &ShareCredits,
        cap: u128,
        chain: &impl CreditsLookup,
        params: &ConsensusParams,
    ) -> WindowWeights {
        self.balance(cap, chain, params);
        self.balanced_extras(own, chain, params)
    }

    /// Re-fits the window to `cap` if it was last balanced to another.
    pub fn balance(&mut self, cap: u128, chain: &impl CreditsLookup, params: &ConsensusParams) {
        if cap != self.cap {
            self.rebalance(cap, chain, params);
        }
    }

    /// [`Window::extras`] for the cap the window is balanced to ([`Window::balance`]).
    /// Split from the balancing so that it borrows the window only to read: the weights
    /// merged from it can then be read next to the rest of the chain index.
    pub fn balanced_extras(
        &self,
        own: &ShareCredits,
        chain: &impl CreditsLookup,
        params: &ConsensusParams,
    ) -> WindowWeights {
        let mut extras = WindowWeights::default();
        extras.add(own);
        let limit = (params.window_shares as usize).saturating_sub(1);
        if self.full.len() < limit {
            if let Some((_, _, credits)) = self.boundary(chain) {
                extras.add_scaled(&credits, self.cap - self.full_weight);
            }
        }
        extras
    }
}

/// The window weights of one new share, on the parent chain and on the aux chains, read
/// from one balancing of the incremental [`Window`] (or one walk of the ancestors).
///
/// A share's coinbase and each of its aux blocks' coinbases pay the same window: the same
/// shares, cap and scaling, read by parent script or by aux script (docs/PROTOCOL.md §15).
/// So the window is fitted, and its partial boundary share and the new share's credits
/// found, once for all of them; each side is merged into one ascending list the first time
/// it is asked for, and that list serves every aux chain. A share without aux blocks never
/// merges the aux side.
#[derive(Debug)]
pub struct ChildWindow<'a> {
    /// The incremental window, whose per-script sums `extras` completes; `None` when
    /// `extras` holds the whole window, walked from scratch.
    window: Option<&'a Window>,
    /// What the new share adds to `sums`, or the whole window.
    extras: &'a WindowWeights,
    parent: OnceCell<Vec<(&'a [u8], u128)>>,
    aux: OnceCell<Vec<(&'a [u8], u128)>>,
}

impl<'a> ChildWindow<'a> {
    /// The incremental window's sums plus `extras` ([`Window::balanced_extras`]).
    pub fn incremental(window: &'a Window, extras: &'a WindowWeights) -> Self {
        ChildWindow {
            window: Some(window),
            extras,
            parent: OnceCell::new(),
            aux: OnceCell::new(),
        }
    }

    /// A window computed whole ([`WindowWeights::from_ancestors`]).
    pub fn whole(weights: &'a WindowWeights) -> Self {
        ChildWindow {
            window: None,
            extras: weights,
            parent: OnceCell::new(),
            aux: OnceCell::new(),
        }
    }

    /// The weights by parent-chain script, ascending by script.
    pub fn parent(&self) -> &[(&'a [u8], u128)] {
        self.parent.get_or_init(|| match self.window {
            Some(window) => merge_weights(&window.sums, &self.extras.by_script),
            None => self.extras.iter().collect(),
        })
    }

    /// The weights by aux-chain script, ascending by aux script: the same for every aux
    /// chain.
    pub fn aux(&self) -> &[(&'a [u8], u128)] {
        self.aux.get_or_init(|| match self.window {
            Some(window) => merge_weights(&window.aux_sums, &self.extras.by_aux_script),
            None => self.extras.iter_aux().collect(),
        })
    }
}

/// Merges two ascending per-script maps into one ascending list, adding equal scripts.
pub fn merge_weights<'a>(
    a: &'a BTreeMap<Vec<u8>, u128>,
    b: &'a BTreeMap<Vec<u8>, u128>,
) -> Vec<(&'a [u8], u128)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut a = a.iter().peekable();
    let mut b = b.iter().peekable();
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some((sa, _)), Some((sb, _))) => sa.cmp(sb),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        match next {
            std::cmp::Ordering::Less => {
                if let Some((s, w)) = a.next() {
                    out.push((s.as_slice(), *w));
                }
            }
            std::cmp::Ordering::Greater => {
                if let Some((s, w)) = b.next() {
                    out.push((s.as_slice(), *w));
                }
            }
            std::cmp::Ordering::Equal => {
                if let (Some((s, wa)), Some((_, wb))) = (a.next(), b.next()) {
                    out.push((s.as_slice(), wa.saturating_add(*wb)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Preset;
    use crate::share::tests::sample_share;
    use crate::share::OperatorFee;
    use crate::share::Share;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn params(window: u32) -> ConsensusParams {
        let mut p = Preset::builtin("litecoin-regtest").unwrap().consensus;
        p.window_shares = window;
        p
    }

    fn share_with(bits: u32, script: u8, fee: Option<u16>) -> Share {
        let mut s = sample_share();
        s.info.share_target_bits = bits;
        s.info.payout_script = vec![script; 22];
        s.info.fee = fee.map(|bp| OperatorFee {
            basis_points: bp,
            script: vec![0xfe; 22],
            aux_script: None,
        });
        s
    }

    #[test]
    fn credits_split_fee_and_uncle_penalty() {
        let p = params(10);
        // 0x1f00ffff has work 65537 (2^256 / (0xffff << 224 + 1), rounded down).
        let nephew = share_with(0x1f00ffff, 1, Some(1000));
        let uncle = share_with(0x1f00ffff, 2, None);
        let w = share_work(&nephew.info);
        assert_eq!(w, 65_537);
        let c = share_credits(&nephew.info, &[&uncle.info], &p);
        assert_eq!(c.weight, 2 * w);
        let penalty = w * 20 / 100;
        let nephew_total = w + penalty;
        let fee = nephew_total / 10;
        assert_eq!(
            c.credits,
            vec![
                (vec![1; 22], nephew_total - fee),
                (vec![0xfe; 22], fee),
                (vec![2; 22], w - penalty),
            ]
        );
        assert_eq!(c.credits.iter().map(|(_, w)| w).sum::<u128>(), c.weight);
    }

    struct Chain(HashMap<ShareHash, (ShareHash, Arc<ShareCredits>)>);
    impl CreditsLookup for Chain {
        fn credits_of(&self, hash: &ShareHash) -> Option<(ShareHash, Arc<ShareCredits>)> {
            self.0.get(hash).cloned()
        }
    }

    fn hash_of(i: usize) -> ShareHash {
        ShareHash::hash(&(i as u64).to_le_bytes())
    }

    fn ancestors(chain: &Chain, from: ShareHash) -> Vec<Arc<ShareCredits>> {
        let mut out = Vec::new();
        let mut at = from;
        while let Some((parent, c)) = chain.credits_of(&at) {
            out.push(c);
            at = parent;
        }
        out
    }

    proptest! {
        /// The incremental window always equals the window computed from scratch, as the
        /// chain grows and the cap moves both ways.
        #[test]
        fn incremental_window_equals_from_scratch(
            shares in proptest::collection::vec((1u128..1000, 0u8..6, 1u128..1000, 0u8..6), 1..80),
            caps in proptest::collection::vec(1u128..40_000, 80),
            window in 2u32..30,
        ) {
            let p = params(window);
            let mut chain = Chain(HashMap::new());
            let mut win = Window::default();
            let own = ShareCredits { weight: 5, credits: vec![(vec![9], 5)], aux_credits: vec![(vec![8], 5)] };
            let mut parent = ShareHash::ZERO;
            for (i, (w1, s1, w2, s2)) in shares.iter().enumerate() {
                // The second credit's holder has no aux script when s2 is 0.
                let aux_credits = if *s2 == 0 { vec![(vec![*s1], *w1)] } else { vec![(vec![*s1], *w1), (vec![*s2 % 3], *w2)] };
                let credits = Arc::new(ShareCredits {
                    weight: w1 + w2,
                    credits: vec![(vec![*s1], *w1), (vec![*s2], *w2)],
                    aux_credits,
                });
                let h = hash_of(i);
                chain.0.insert(h, (parent, credits));
                let cap = caps[i];
                win.advance(h, cap, &chain, &p);
                parent = h;
                for probe in [cap, caps[(i * 7) % caps.len()]] {
                    let extras = win.extras(&own, probe, &chain, &p);
                    let fast: Vec<(Vec<u8>, u128)> = merge_weights(win.sums(), &extras.by_script)
                        .into_iter().map(|(s, w)| (s.to_vec(), w)).collect();
                    let anc = ancestors(&chain, h);
                    let slow = WindowWeights::from_ancestors(&own, anc.iter().map(|c| c.as_ref()), probe, &p);
                    let fast_aux: Vec<(Vec<u8>, u128)> = merge_weights(win.aux_sums(), &extras.by_aux_script)
                        .into_iter().map(|(s, w)| (s.to_vec(), w)).collect();
                    let slow_aux: Vec<(Vec<u8>, u128)> = slow.iter_aux().map(|(s, w)| (s.to_vec(), w)).collect();
                    let slow: Vec<(Vec<u8>, u128)> = slow.iter().map(|(s, w)| (s.to_vec(), w)).collect();
                    prop_assert_eq!(fast, slow);
                    prop_assert_eq!(fast_aux, slow_aux);
                }
            }
        }
    }

    #[test]
    fn cap_basis_skips_min_difficulty_bits_within_the_window() {
        let p = params(10);
        const LIMIT: u32 = 0x1e0f_ffff;
        const REAL: u32 = 0x1b01_2345;
        let basis = |bits, height| CapBasis { bits, height };
        let of = |bits, height, parent, min| CapBasis::of_share(bits, height, parent, min, &p);
        // A chain's first share, and any share with real bits: its own.
        assert_eq!(of(LIMIT, 0, None, Some(LIMIT)), basis(LIMIT, 0));
        assert_eq!(
            of(REAL, 5, Some(basis(0x1b00_1111, 4)), Some(LIMIT)),
            basis(REAL, 5)
        );
        // powLimit bits inherit the parent's basis while it lies within the window...
        assert_eq!(
            of(LIMIT, 13, Some(basis(REAL, 4)), Some(LIMIT)),
            basis(REAL, 4)
        );
        // ...and not beyond it (10 shares: heights 5..=14 for a share at 14).
        assert_eq!(
            of(LIMIT, 14, Some(basis(REAL, 4)), Some(LIMIT)),
            basis(LIMIT, 14)
        );
        assert_eq!(
            of(LIMIT, 6, Some(basis(LIMIT, 5)), Some(LIMIT)),
            basis(LIMIT, 6)
        );
        // A coin without min-difficulty blocks takes the bits as they are.
        assert_eq!(of(LIMIT, 6, Some(basis(REAL, 5)), None), basis(LIMIT, 6));
    }

    /// Testnet: a block found 2 × block_interval after its parent carries powLimit. Its
    /// window must be the one a block at the real difficulty would pay, not the ~3 easiest
    /// blocks' worth of work (about one share) it would get from its own bits.
    #[test]
    fn a_min_difficulty_block_pays_the_real_difficulty_window() {
        use crate::chain::ChainIndex;
        use crate::template::BlockContext;
        use crate::testkit::{block_context, mine_share_on_block, miner, regtest_preset};
        // Work 16 a block, against the easiest share's work 2: a window of about 24 shares.
        const REAL: u32 = 0x200f_ffff;
        const LIMIT: u32 = 0x207f_ffff;
        let context = |bits| BlockContext {
            bits,
            ..block_context(50_0000_0000)
        };
        let payouts_of = |min_difficulty_blocks: bool| {
            let preset = regtest_preset(&format!(
                "[coin]\nmin_difficulty_blocks = {min_difficulty_blocks}\n\
                 pow_limit_bits = {LIMIT}\n[consensus]\nwindow_work_blocks = 3\n"
            ));
            let mut index = ChainIndex::new(&preset);
            let t0 = 1_700_000_000;
            // 40 shares on real-difficulty templates, then 5 on min-difficulty ones (not
            // blocks, but they carry the template's bits), each by another miner.
            for i in 0..45u32 {
                let bits = if i < 40 { REAL } else { LIMIT };
                let time = t0 + 2 * (i + 1);
                let parent = index.best_hash();
                let share = mine_share_on_block(&mut index, parent, &miner(i), time, context(bits));
                index.connect(share, u64::from(time)).unwrap();
            }
            let mut next = |bits| {
                index
                    .share_template(&miner(99), context(bits))
                    .unwrap()
                    .payouts
            };
            (next(REAL), next(LIMIT))
        };
        let (real, min_difficulty) = payouts_of(true);
        assert!(
            real.len() > 20,
            "the real window pays {} outputs",
            real.len()
        );
        assert_eq!(min_difficulty, real);
        // Where blocks cannot carry powLimit, its bits are the block's real difficulty.
        let (real, easiest) = payouts_of(false);
        assert!(easiest.len() < 5 && real.len() > 20);
    }

    #[test]
    fn cap_counts_the_crossing_share_partially() {
        let p = params(100);
        let a = ShareCredits {
            weight: 10,
            credits: vec![(vec![1], 6), (vec![2], 4)],
            aux_credits: vec![(vec![1], 6)],
        };
        let b = ShareCredits {
            weight: 10,
            credits: vec![(vec![3], 10)],
            aux_credits: vec![(vec![3], 10)],
        };
        let own = ShareCredits {
            weight: 1,
            credits: vec![(vec![9], 1)],
            aux_credits: vec![],
        };
        // Cap 15: a in full (10), b only 5/10 of it.
        let w = WindowWeights::from_ancestors(&own, [&a, &b], 15, &p);
        let got: Vec<_> = w.iter().map(|(s, w)| (s.to_vec(), w)).collect();
        assert_eq!(
            got,
            vec![(vec![1], 6), (vec![2], 4), (vec![3], 5), (vec![9], 1)]
        );
        // On aux chains: the same shares and scaling, without the holder of no aux script.
        let aux: Vec<_> = w.iter_aux().map(|(s, w)| (s.to_vec(), w)).collect();
        assert_eq!(aux, vec![(vec![1], 6), (vec![3], 5)]);
        // The count limit counts the new share: a window of 2 shares holds own + a.
        let w = WindowWeights::from_ancestors(&own, [&a, &b], 1000, &params(2));
        assert_eq!(w.by_script.len(), 3);
    }
}
