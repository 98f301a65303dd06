//! The aux blocks a share mines (docs/PROTOCOL.md §15): each one's coinbase pays the PPLNS
//! window on its own chain, and its hash is a leaf of the merged-mining tree the share's
//! coinbase scriptSig commits to.
//!
//! Every peer rebuilds each aux coinbase from the share chain, exactly as it rebuilds the
//! parent coinbase, hashes the aux header, rebuilds the tree and compares its root with the
//! commitment in the scriptSig. So an aux block found through the share chain can only pay
//! the window: a share committing to any other aux block is invalid to every peer, and every
//! share carries the commitment (an empty tree when it mines no aux chain), so no share can
//! hide another one in its scriptSig.

use thiserror::Error;

use crate::chain::{parent_of, ChainIndex};
use crate::coinbase::{aux_coinbase_txid, build_aux_coinbase, Coinbase, Payout};
use crate::hash::{sha256d, ShareHash};
use crate::merged_mining::{AuxTree, AuxTreeError, CommitmentError, MergedMiningCommitment};
use crate::merkle::merkle_root_from_branch;
use crate::params::AuxChainParams;
use crate::payout::{
    compute_payouts_borrowed, compute_payouts_without_finder_borrowed, BorrowedPayout,
};
use crate::pplns::{ChildWindow, ShareCredits};
use crate::share::{AuxBlock, BlockHeader, MergedMining, Share, ShareInfo};

/// The randomness of an aux coinbase's rounding draw:
/// `sha256d("p2pool-rs aux payout seed v1" || chain_id (u32 LE) || prev_share)`, so each
/// chain's draw is independent of the parent's and of the other chains'.
pub fn aux_payout_seed(prev_share: &ShareHash, chain_id: u32) -> [u8; 32] {
    let mut data = b"p2pool-rs aux payout seed v1".to_vec();
    data.extend_from_slice(&chain_id.to_le_bytes());
    data.extend_from_slice(prev_share.as_bytes());
    sha256d(&data)
}

/// An aux block's coinbase and header, given its payouts.
pub fn aux_block_parts(block: &AuxBlock, payouts: &[Payout]) -> (Coinbase, BlockHeader) {
    let coinbase = build_aux_coinbase(&block.coinbase_script_sig, payouts);
    let header = aux_header_with(block, coinbase.txid());
    (coinbase, header)
}

/// An aux block's header alone, given its payouts: what its leaf of the merged-mining tree
/// hashes. The same header as [`aux_block_parts`], without building the coinbase
/// ([`aux_coinbase_txid`]).
pub fn aux_block_header(block: &AuxBlock, payouts: &[Payout]) -> BlockHeader {
    let payouts = payouts.iter().map(|p| (p.script.as_slice(), p.amount));
    aux_header_with(
        block,
        aux_coinbase_txid(&block.coinbase_script_sig, payouts),
    )
}

fn aux_header_with(block: &AuxBlock, coinbase_txid: [u8; 32]) -> BlockHeader {
    BlockHeader {
        version: block.version,
        prev_block: block.prev_block,
        merkle_root: merkle_root_from_branch(coinbase_txid, &block.merkle_branch),
        time: block.time,
        bits: block.bits,
        nonce: 0,
    }
}

/// Why a share's merged mining breaks the rules of §15.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuxWorkError {
    #[error("aux chain {0} is not one this network merge-mines")]
    UnknownChain(u32),
    #[error("aux coinbase value {value} exceeds chain {chain_id}'s max money")]
    ValueTooLarge { chain_id: u32, value: u64 },
    #[error("aux block of chain {0} pays no one: no share of the window has an aux script")]
    NoPayees(u32),
    #[error(transparent)]
    Tree(#[from] AuxTreeError),
    #[error(transparent)]
    Commitment(#[from] CommitmentError),
    #[error("the merged-mining commitment in the coinbase is not the share's aux tree")]
    CommitmentMismatch,
}

impl ChainIndex {
    /// The aux chain with `chain_id`, if this network merge-mines it.
    pub fn aux_chain(&self, chain_id: u32) -> Option<&AuxChainParams> {
        self.aux_chains.iter().find(|a| a.chain_id == chain_id)
    }

    /// What the aux block of `chain_id` worth `value` must pay, for a new share `info` with
    /// `own` credits whose parent-chain header carries `block_bits`: the window by aux
    /// script through the chain's payout rules, the finder bonus to the share's aux script
    /// (or, if it has none, to no one: [`compute_payouts_without_finder`]).
    pub fn aux_window_payouts(
        &mut self,
        info: &ShareInfo,
        own: &ShareCredits,
        block_bits: u32,
        chain_id: u32,
        value: u64,
    ) -> Result<Vec<Payout>, AuxWorkError> {
        self.with_child_window(parent_of(info), own, block_bits, |this, window| {
            this.aux_payouts_from(window, info, chain_id, value)
        })
    }

    /// [`ChainIndex::aux_window_payouts`] from the share's window, already read.
    pub(crate) fn aux_payouts_from(
        &self,
        window: &ChildWindow<'_>,
        info: &ShareInfo,
        chain_id: u32,
        value: u64,
    ) -> Result<Vec<Payout>, AuxWorkError> {
        let finder = info.aux_payout_script();
        let payouts =
            self.borrowed_aux_payouts(window, info, finder.as_deref(), chain_id, value)?;
        Ok(payouts
            .into_iter()
            .map(|(script, amount)| Payout {
                script: script.to_vec(),
                amount,
            })
            .collect())
    }

    /// The same, each script borrowed from the window or `finder` (the share's aux script):
    /// for checking a share, which needs only the aux coinbase's hash.
    fn borrowed_aux_payouts<'a>(
        &self,
        window: &'a ChildWindow<'_>,
        info: &ShareInfo,
        finder: Option<&'a [u8]>,
        chain_id: u32,
        value: u64,
    ) -> Result<Vec<BorrowedPayout<'a>>, AuxWorkError> {
        let chain = self
            .aux_chain(chain_id)
            .ok_or(AuxWorkError::UnknownChain(chain_id))?;
        if value > chain.max_money {
            return Err(AuxWorkError::ValueTooLarge { chain_id, value });
        }
        let rules = chain.payout_rules(&self.consensus);
        let seed = aux_payout_seed(&info.prev_share, chain_id);
        let weights = window.aux();
        let payouts = match finder {
            Some(script) => compute_payouts_borrowed(weights, script, value, &rules, &seed),
            None => compute_payouts_without_finder_borrowed(weights, value, &rules, &seed),
        };
        if payouts.is_empty() && value > 0 {
            return Err(AuxWorkError::NoPayees(chain_id));
        }
        Ok(payouts)
    }

    /// The merged-mining tree of `share`, each aux block's coinbase rebuilt from the chain:
    /// the tree its scriptSig must commit to.
    pub fn expected_aux_tree(
        &mut self,
        share: &Share,
        credits: &ShareCredits,
    ) -> Result<AuxTree, AuxWorkError> {
        self.with_child_window(
            parent_of(&share.info),
            credits,
            share.header.bits,
            |this, window| this.aux_tree_from(window, share),
        )
    }

    /// [`ChainIndex::expected_aux_tree`] from the share's window, already read: one window
    /// for all its aux blocks.
    fn aux_tree_from(
        &self,
        window: &ChildWindow<'_>,
        share: &Share,
    ) -> Result<AuxTree, AuxWorkError> {
        let mm: &MergedMining = &share.merged_mining;
        let finder = share.info.aux_payout_script();
        let mut leaves = Vec::with_capacity(mm.blocks.len());
        for block in &mm.blocks {
            let payouts = self.borrowed_aux_payouts(
                window,
                &share.info,
                finder.as_deref(),
                block.chain_id,
                block.coinbase_value,
            )?;
            let txid = aux_coinbase_txid(&block.coinbase_script_sig, payouts.into_iter());
            leaves.push((block.chain_id, aux_header_with(block, txid).hash().0));
        }
        Ok(AuxTree::new(mm.tree_height, mm.tree_nonce, &leaves)?)
    }

    /// The rule of §15: the scriptSig's one merged-mining commitment is the share's aux tree.
    pub fn check_merged_mining(
        &mut self,
        share: &Share,
        credits: &ShareCredits,
    ) -> Result<(), AuxWorkError> {
        self.with_child_window(
            parent_of(&share.info),
            credits,
            share.header.bits,
            |this, window| this.check_merged_mining_from(window, share),
        )
    }

    /// [`ChainIndex::check_merged_mining`] from the share's window, already read (the one
    /// its coinbase was checked against).
    pub(crate) fn check_merged_mining_from(
        &self,
        window: &ChildWindow<'_>,
        share: &Share,
    ) -> Result<(), AuxWorkError> {
        let found = MergedMiningCommitment::find_in(&share.coinbase.script_sig)?;
        let expected = self.aux_tree_from(window, share)?.commitment();
        if found != expected {
            return Err(AuxWorkError::CommitmentMismatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coinbase::coinbase_script_sig;
    use crate::payout::{compute_payouts, compute_payouts_without_finder};
    use crate::pow::pow_hash;
    use crate::script::derived_aux_script;
    use crate::template::{BlockContext, MinerPayout, ShareTemplate};
    use crate::testkit::{block_context, grow_chain, miner, miner_script, regtest_preset};
    use crate::validation::ShareError;
    use proptest::prelude::{prop_assert, prop_assert_eq};

    const T0: u32 = 1_700_000_000;
    const NOW: u64 = T0 as u64 + 100_000;
    const DOGE: u64 = 1_000_000_000_000;

    fn chain() -> ChainIndex {
        let mut idx = ChainIndex::new(&regtest_preset(""));
        grow_chain(&mut idx, 12, 3, T0);
        idx
    }

    fn template(idx: &mut ChainIndex, m: &MinerPayout) -> ShareTemplate {
        let parent = idx.best_hash();
        idx.share_template_on(parent, m, block_context(50_0000_0000))
            .unwrap()
    }

    /// The share a miner makes from `template` with `commitment` in its scriptSig (and
    /// `extra` after it), its proof of work ground.
    fn mine(idx: &ChainIndex, t: &ShareTemplate, commitment: &[u8; 44], extra: &[u8]) -> Share {
        let sig = coinbase_script_sig(13, commitment, b"/t/", extra);
        let mut share = t.share(sig, 0x2000_0000, T0 + 10_000, 0);
        while !t
            .share_target
            .is_met_by(&pow_hash(idx.pow(), &share.header.to_bytes()))
        {
            share.header.nonce += 1;
        }
        share
    }

    fn honest(idx: &ChainIndex, t: &ShareTemplate) -> Share {
        mine(idx, t, &t.merged_mining_commitment(), &[1, 2, 3, 4])
    }

    #[test]
    fn an_aux_block_pays_the_window_and_its_share_is_valid() {
        let mut idx = chain();
        let t = template(&mut idx, &miner(1));
        assert_eq!(t.merged_mining.blocks.len(), 1);
        let payouts = &t.aux_payouts[0];
        assert_eq!(payouts.iter().map(|p| p.amount).sum::<u64>(), DOGE);
        // The three miners of the window, each at the P2PKH of its P2WPKH key hash.
        let mut paid: Vec<Vec<u8>> = payouts.iter().map(|p| p.script.clone()).collect();
        paid.sort();
        let mut expected: Vec<Vec<u8>> = (0..3)
            .map(|n| derived_aux_script(&miner_script(n)).unwrap())
            .collect();
        expected.sort();
        assert_eq!(paid, expected);
        let share = honest(&idx, &t);
        assert!(idx.validate(&share, NOW).is_ok());
        idx.connect(share, NOW).unwrap();
    }

    /// A node that mines the share chain but pays the aux block to itself alone: every peer
    /// refuses its share.
    #[test]
    fn a_share_paying_itself_on_the_aux_chain_is_invalid() {
        let mut idx = chain();
        let t = template(&mut idx, &miner(1));
        let block = &t.merged_mining.blocks[0];
        let greedy = vec![Payout {
            script: derived_aux_script(&miner_script(1)).unwrap(),
            amount: block.coinbase_value,
        }];
        let (_, header) = aux_block_parts(block, &greedy);
        let tree = AuxTree::new(0, 0, &[(98, header.hash().0)]).unwrap();
        let share = mine(&idx, &t, &tree.commitment().to_bytes(), &[1, 2, 3, 4]);
        let err = idx.validate(&share, NOW).unwrap_err();
        assert_eq!(
            err,
            ShareError::MergedMining(AuxWorkError::CommitmentMismatch)
        );
        assert!(err.is_punishable());
    }

    #[test]
    fn aux_data_changed_after_mining_is_invalid() {
        let mut idx = chain();
        let t = template(&mut idx, &miner(1));
        let mut share = honest(&idx, &t);
        share.merged_mining.blocks[0].coinbase_value -= 1;
        assert_eq!(
            idx.validate(&share, NOW),
            Err(ShareError::MergedMining(AuxWorkError::CommitmentMismatch))
        );
        let mut share = honest(&idx, &t);
        share.merged_mining.blocks.clear();
        assert_eq!(
            idx.validate(&share, NOW),
            Err(ShareError::MergedMining(AuxWorkError::CommitmentMismatch))
        );
        let mut share = honest(&idx, &t);
        share.merged_mining.blocks[0].chain_id = 99;
        assert_eq!(
            idx.validate(&share, NOW),
            Err(ShareError::MergedMining(AuxWorkError::UnknownChain(99)))
        );
    }

    /// Every share carries exactly one commitment: none at all, or a second one hidden in
    /// the extranonce (which would let the miner mine another aux block for itself), makes
    /// the share invalid.
    #[test]
    fn the_commitment_is_there_exactly_once() {
        let mut idx = chain();
        let t = template(&mut idx, &miner(1));
        let sig = crate::coinbase::coinbase_script_sig(13, &[0; 44], b"", &[]);
        // A scriptSig with the commitment's bytes zeroed: no magic anywhere.
        let mut share = t.share(sig, 0x2000_0000, T0 + 10_000, 0);
        while !t
            .share_target
            .is_met_by(&pow_hash(idx.pow(), &share.header.to_bytes()))
        {
            share.header.nonce += 1;
        }
        assert_eq!(
            idx.validate(&share, NOW),
            Err(ShareError::MergedMining(AuxWorkError::Commitment(
                CommitmentError::Missing
            )))
        );
        let hidden = MergedMiningCommitment {
            root: [7; 32],
            size: 1,
            nonce: 0,
        }
        .to_bytes();
        let share = mine(&idx, &t, &t.merged_mining_commitment(), &hidden);
        assert_eq!(
            idx.validate(&share, NOW),
            Err(ShareError::MergedMining(AuxWorkError::Commitment(
                CommitmentError::Repeated
            )))
        );
    }

    /// A miner whose address has no aux form and who gave no aux address is paid nothing on
    /// the aux chain: its part goes to the others, in proportion. Given one, it is paid there.
    #[test]
    fn a_miner_without_an_aux_script_leaves_its_part_to_the_others() {
        let p2wsh = |n: u8| [&[0x00, 0x20][..], &[n; 32]].concat();
        let aux_of = |n: u8| [&[0x76, 0xa9, 0x14][..], &[n; 20], &[0x88, 0xac]].concat();
        let mut idx = ChainIndex::new(&regtest_preset(""));
        let period = idx.params().share_period_secs;
        for i in 0..12u32 {
            let m = MinerPayout {
                script: p2wsh(i as u8 % 2),
                // Miner 1 names an aux address; miner 0 does not.
                aux_script: (i % 2 == 1).then(|| aux_of(1)),
                fee: None,
                share_target_bits: None,
            };
            let parent = idx.best_hash();
            let share = crate::testkit::mine_share(&mut idx, parent, &m, T0 + period * (i + 1));
            idx.connect(share, NOW).unwrap();
        }
        // The finder (miner 0, no aux script) gets no bonus; miner 1 takes the whole block.
        let finder = MinerPayout {
            script: p2wsh(0),
            aux_script: None,
            fee: None,
            share_target_bits: None,
        };
        let t = template(&mut idx, &finder);
        assert_eq!(
            t.aux_payouts[0],
            vec![Payout {
                script: aux_of(1),
                amount: DOGE
            }]
        );
        let share = honest(&idx, &t);
        assert!(idx.validate(&share, NOW).is_ok());
    }

    /// When no one in the window can be paid on the aux chain, the template leaves the aux
    /// block out, and its share (an empty tree) is valid.
    #[test]
    fn no_payee_no_aux_block() {
        let p2wsh = [&[0x00, 0x20][..], &[3; 32]].concat();
        let m = MinerPayout {
            script: p2wsh,
            aux_script: None,
            fee: None,
            share_target_bits: None,
        };
        let mut idx = ChainIndex::new(&regtest_preset(""));
        let t = template(&mut idx, &m);
        assert!(t.merged_mining.blocks.is_empty());
        assert_eq!(t.aux_tree.commitment().root, [0; 32]);
        let share = honest(&idx, &t);
        assert!(idx.validate(&share, NOW).is_ok());
    }

    /// One miner of the property test below: its script kind (P2WPKH, whose aux script is
    /// derived; P2WSH, which has none; P2WSH with an explicit aux script; P2PKH), its number,
    /// an operator fee, and a harder share target (bigger credits, so the cap scales them).
    fn varied_miner(kind: u8, n: u8, fee: Option<(u16, u8)>, hard: bool) -> MinerPayout {
        let p2wsh = |n: u8| [&[0x00, 0x20][..], &[n; 32]].concat();
        let p2pkh = |n: u8| [&[0x76, 0xa9, 0x14][..], &[n; 20], &[0x88, 0xac]].concat();
        let (script, aux_script) = match kind % 4 {
            0 => (miner_script(u32::from(n)), None),
            1 => (p2wsh(n), None),
            2 => (p2wsh(n), Some(p2pkh(n ^ 0x80))),
            _ => (p2pkh(n), None),
        };
        MinerPayout {
            script,
            aux_script,
            fee: fee.map(|(bp, k)| crate::share::OperatorFee {
                basis_points: bp,
                script: if k % 2 == 0 {
                    miner_script(200)
                } else {
                    p2wsh(200)
                },
                aux_script: (k % 3 == 0).then(|| p2pkh(201)),
            }),
            share_target_bits: hard.then_some(0x1f7f_ffff),
        }
    }

    /// The parent and aux payouts of a new share, each side walked on its own from scratch:
    /// the computation before the window was shared, as an independent reference.
    fn payouts_walked_per_side(
        idx: &ChainIndex,
        info: &ShareInfo,
        own: &ShareCredits,
        bits: u32,
        value: u64,
        aux_value: u64,
    ) -> (Vec<Payout>, Vec<Payout>) {
        use crate::payout::payout_seed;
        use crate::pplns::{window_work_cap, WindowWeights};
        let parent = crate::chain::parent_of(info);
        let cap = window_work_cap(idx.cap_basis_for_child(parent, bits).bits, idx.params());
        let walk = || {
            let ancestors = parent.into_iter().flat_map(|p| idx.ancestors(p));
            let credits = ancestors.map(|e| e.credits.as_ref());
            WindowWeights::from_ancestors(own, credits, cap, idx.params())
        };
        let (parent_walk, aux_walk) = (walk(), walk());
        let parent_weights: Vec<(&[u8], u128)> = parent_walk.iter().collect();
        let aux_weights: Vec<(&[u8], u128)> = aux_walk.iter_aux().collect();
        let seed = payout_seed(&info.prev_share);
        let rules = idx.params().payout_rules();
        let payouts = compute_payouts(&parent_weights, &info.payout_script, value, &rules, &seed);
        let doge = idx
            .aux_chain(98)
            .expect("dogecoin")
            .payout_rules(idx.params());
        let seed = aux_payout_seed(&info.prev_share, 98);
        let aux = match info.aux_payout_script() {
            Some(script) => compute_payouts(&aux_weights, &script, aux_value, &doge, &seed),
            None => compute_payouts_without_finder(&aux_weights, aux_value, &doge, &seed),
        };
        (payouts, aux)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Templates and validation read the parent and aux payouts from one window; they
        /// are, byte for byte, what walking the window once per side gives, on the best tip
        /// (the incremental window) and off it (walked from scratch), on random chains of
        /// miners with and without aux scripts, fees, uncles and a work cap that cuts.
        #[test]
        fn one_window_pays_what_each_side_walked_alone_pays(
            miners in proptest::collection::vec(
                (0u8..4, 0u8..6, proptest::option::of((0u16..=1000, 0u8..6)), proptest::bool::weighted(0.3), proptest::bool::weighted(0.15)),
                1..40,
            ),
            window_shares in 2u32..30,
            window_work_blocks in 1u64..20_000,
            finder in (0u8..4, 0u8..8, proptest::option::of((0u16..=1000, 0u8..6))),
            values in (1u64..5_000_000_000, 0u64..20_000_000_000_000),
            off_tip in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let preset = regtest_preset(&format!(
                "[coin]\npow = \"sha256d\"\n[consensus]\nwindow_shares = {window_shares}\n\
                 window_work_blocks = {window_work_blocks}\n"
            ));
            let mut idx = ChainIndex::new(&preset);
            let period = idx.params().share_period_secs;
            let mut time = T0;
            let mut all = Vec::new();
            for (kind, n, fee, hard, fork) in &miners {
                time += period;
                let best = idx.best_hash();
                // Now and then a sibling of the tip: a fork, and an uncle to later shares.
                let parent = match best.and_then(|b| idx.get(&b)) {
                    Some(tip) if *fork && tip.parent().is_some() => tip.parent(),
                    _ => best,
                };
                let share = crate::testkit::mine_share(&mut idx, parent, &varied_miner(*kind, *n, *fee, *hard), time);
                all.push(share.hash());
                idx.connect(share, NOW).unwrap();
            }
            let (value, aux_value) = values;
            let finder = varied_miner(finder.0, finder.1, finder.2, false);
            let tip = idx.best_hash();
            let other = Some(all[off_tip.index(all.len())]);
            for parent in [tip, other, None] {
                let block = BlockContext {
                    aux: vec![crate::testkit::dogecoin_block(aux_value)],
                    ..block_context(value)
                };
                let t = idx.share_template_on(parent, &finder, block).unwrap();
                let credits = idx.credits_for(&t.info).unwrap();
                let (payouts, aux) =
                    payouts_walked_per_side(&idx, &t.info, &credits, t.block.bits, value, aux_value);
                prop_assert_eq!(&t.payouts, &payouts);
                if aux.is_empty() && aux_value > 0 {
                    prop_assert!(t.aux_payouts.is_empty());
                } else {
                    prop_assert_eq!(&t.aux_payouts, &vec![aux.clone()]);
                }
                // Validation reads the same window: the template's share is valid (a new
                // chain's first share is refused here, before its coinbase is read), and
                // the public one-side calls agree.
                let share = mine(&idx, &t, &t.merged_mining_commitment(), &[9, 9]);
                if parent.is_some() {
                    prop_assert_eq!(idx.validate(&share, NOW), Ok(credits.clone()));
                }
                prop_assert_eq!(idx.expected_payouts(&share, &credits), payouts);
                let one_side =
                    idx.aux_window_payouts(&t.info, &credits, t.block.bits, 98, aux_value);
                if aux.is_empty() && aux_value > 0 {
                    prop_assert_eq!(one_side, Err(AuxWorkError::NoPayees(98)));
                } else {
                    prop_assert_eq!(one_side, Ok(aux));
                }
            }
        }
    }

    #[test]
    fn seeds_differ_by_chain_and_parent() {
        let a = aux_payout_seed(&ShareHash([1; 32]), 98);
        assert_ne!(a, aux_payout_seed(&ShareHash([1; 32]), 1));
        assert_ne!(a, aux_payout_seed(&ShareHash([2; 32]), 98));
        assert_ne!(a, crate::payout::payout_seed(&ShareHash([1; 32])));
    }
}
