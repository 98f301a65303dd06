//! Building the next share: what a node hands its miners to work on.
//!
//! A share template fixes everything about a new share except what the miner varies (the
//! extranonce inside the coinbase scriptSig, the header's time, nonce and rolled version
//! bits). It is built on the best tip for one miner, since the share's own payout script
//! and difficulty change the coinbase: the payouts are the PPLNS window *with* this share
//! in it, and the finder bonus goes to this miner.

use crate::aux_work::{aux_block_header, aux_block_parts, AuxWorkError};
use crate::chain::ChainIndex;
use crate::coinbase::{build_coinbase, Coinbase, Payout};
use crate::hash::ShareHash;
use crate::merged_mining::{AuxTree, AuxTreeError, COMMITMENT_LEN};
use crate::merkle::merkle_root_from_branch;
use crate::share::{
    AuxBlock, BlockHeader, CoinbaseData, MergedMining, OperatorFee, Share, ShareInfo, SHARE_VERSION,
};
use crate::target::Target;

/// What the coin daemon's block template says about the block being mined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockContext {
    pub version: i32,
    /// Previous block hash, internal byte order.
    pub prev_block: [u8; 32],
    /// Block target, compact.
    pub bits: u32,
    /// Subsidy plus fees.
    pub coinbase_value: u64,
    pub witness_commitment: Option<[u8; 32]>,
    /// The stratum merkle branch of the template's other transactions.
    pub merkle_branch: Vec<[u8; 32]>,
    /// The aux blocks to merge-mine, from the aux daemons' templates, ascending by chain id;
    /// their coinbases' outputs are left to the share chain.
    pub aux: Vec<AuxBlock>,
}

/// Who a share pays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinerPayout {
    pub script: Vec<u8>,
    /// The miner's aux-chain script, if it gave one (else derived from `script`, if possible).
    pub aux_script: Option<Vec<u8>>,
    pub fee: Option<OperatorFee>,
    /// A harder share target than required, if the miner asked for one.
    pub share_target_bits: Option<u32>,
}

/// Everything fixed about the next share for one miner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareTemplate {
    pub info: ShareInfo,
    pub block: BlockContext,
    pub payouts: Vec<Payout>,
    pub commitment: [u8; 32],
    /// The share target the solution must meet.
    pub share_target: Target,
    /// The block target (a solution meeting it is also a block).
    pub block_target: Target,
    /// The earliest header time the share chain accepts (median time past + 1).
    pub min_time: u32,
    /// The aux blocks this share mines and their tree (only chains someone in the window
    /// can be paid on: an aux block with no payee is left out).
    pub merged_mining: MergedMining,
    /// Each aux block's payouts, in `merged_mining.blocks` order.
    pub aux_payouts: Vec<Vec<Payout>>,
    pub aux_tree: AuxTree,
}

impl ShareTemplate {
    /// The 44 bytes the coinbase scriptSig must carry (`coinbase_script_sig` pushes them).
    pub fn merged_mining_commitment(&self) -> [u8; COMMITMENT_LEN] {
        self.aux_tree.commitment().to_bytes()
    }

    /// The coinbase and header of the aux block at `index` of `merged_mining.blocks`.
    pub fn aux_block(&self, index: usize) -> Option<(Coinbase, BlockHeader)> {
        let block = self.merged_mining.blocks.get(index)?;
        let payouts = self.aux_payouts.get(index)?;
        Some(aux_block_parts(block, payouts))
    }

    pub fn coinbase_data(&self, script_sig: Vec<u8>) -> CoinbaseData {
        CoinbaseData {
            script_sig,
            value: self.block.coinbase_value,
            witness_commitment: self.block.witness_commitment,
        }
    }

    /// The coinbase for a given scriptSig (with the extranonce at its end).
    pub fn coinbase(&self, script_sig: Vec<u8>) -> Coinbase {
        build_coinbase(
            &self.coinbase_data(script_sig),
            &self.payouts,
            &self.commitment,
        )
    }

    /// The share a miner's solution makes.
    pub fn share(&self, script_sig: Vec<u8>, version: i32, time: u32, nonce: u32) -> Share {
        let coinbase = self.coinbase_data(script_sig);
        let txid = build_coinbase(&coinbase, &self.payouts, &self.commitment).txid();
        Share {
            header: BlockHeader {
                version,
                prev_block: self.block.prev_block,
                merkle_root: merkle_root_from_branch(txid, &self.block.merkle_branch),
                time,
                bits: self.block.bits,
                nonce,
            },
            info: self.info.clone(),
            coinbase,
            merkle_branch: self.block.merkle_branch.clone(),
            merged_mining: self.merged_mining.clone(),
        }
    }
}

/// Why a template could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("block target {0:#010x} is not a valid compact value")]
    InvalidBlockBits(u32),
    #[error("requested share target {0:#010x} is invalid or easier than required")]
    InvalidShareTarget(u32),
    #[error("aux block: {0}")]
    Aux(#[from] AuxWorkError),
    #[error("aux blocks: {0}")]
    AuxTree(#[from] AuxTreeError),
}

impl ChainIndex {
    /// The template for `miner`'s next share on the best tip.
    pub fn share_template(
        &mut self,
        miner: &MinerPayout,
        block: BlockContext,
    ) -> Result<ShareTemplate, TemplateError> {
        let parent = self.best_hash();
        self.share_template_on(parent, miner, block)
    }

    /// The template for `miner`'s next share on `parent` (`None`: a new chain).
    pub fn share_template_on(
        &mut self,
        parent: Option<ShareHash>,
        miner: &MinerPayout,
        block: BlockContext,
    ) -> Result<ShareTemplate, TemplateError> {
        let block_target = Target::from_compact(block.bits)
            .map_err(|_| TemplateError::InvalidBlockBits(block.bits))?;
        let required_bits = self.required_bits_for_child(parent);
        let required = Target::from_compact(required_bits)
            .map_err(|_| TemplateError::InvalidShareTarget(required_bits))?;
        let share_target_bits = miner.share_target_bits.unwrap_or(required_bits);
        let share_target = match Target::from_compact(share_target_bits) {
            Ok(t) if t <= required => t,
            _ => return Err(TemplateError::InvalidShareTarget(share_target_bits)),
        };
        let uncles = parent.map(|p| self.uncle_candidates(p)).unwrap_or_default();
        let info = ShareInfo {
            version: SHARE_VERSION,
            prev_share: parent.unwrap_or(ShareHash::ZERO),
            required_bits,
            share_target_bits,
            payout_script: miner.script.clone(),
            aux_payout_script: miner.aux_script.clone(),
            fee: miner.fee.clone(),
            uncles,
        };
        // The uncles are candidates the index holds, so none is missing.
        let credits = self.credits_from_held(&info);
        // One window serves the coinbase and every aux block's coinbase.
        let (payouts, aux) =
            self.with_child_window(parent, &credits, block.bits, |this, window| {
                let payouts =
                    this.payouts_from(window, parent, block.coinbase_value, &info.payout_script);
                let aux: Vec<_> = block
                    .aux
                    .iter()
                    .map(|aux| {
                        this.aux_payouts_from(window, &info, aux.chain_id, aux.coinbase_value)
                    })
                    .collect();
                (payouts, aux)
            });
        let mut aux_blocks = Vec::with_capacity(block.aux.len());
        let mut aux_payouts = Vec::with_capacity(block.aux.len());
        let mut leaves = Vec::with_capacity(block.aux.len());
        for (aux, payouts) in block.aux.iter().zip(aux) {
            let payouts = match payouts {
                Ok(payouts) => payouts,
                // No one in the window can be paid there: mine without it.
                Err(AuxWorkError::NoPayees(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let header = aux_block_header(aux, &payouts);
            leaves.push((aux.chain_id, header.hash().0));
            aux_blocks.push(aux.clone());
            aux_payouts.push(payouts);
        }
        let aux_tree = AuxTree::smallest(&leaves)?;
        let merged_mining = MergedMining {
            tree_height: aux_tree.height(),
            tree_nonce: aux_tree.nonce(),
            blocks: aux_blocks,
        };
        let commitment = info.commitment(self.network_id());
        let min_time = parent
            .and_then(|p| self.median_time_past(p))
            .map_or(0, |m| m.saturating_add(1));
        Ok(ShareTemplate {
            info,
            block,
            payouts,
            commitment,
            share_target,
            block_target,
            min_time,
            merged_mining,
            aux_payouts,
            aux_tree,
        })
    }
}
