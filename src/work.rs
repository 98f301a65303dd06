//! Work for miners: from the daemon's block template and the share chain's share template
//! to the pieces a Stratum job carries, and from a miner's solution back to a share and a
//! block.
//!
//! The coinbase scriptSig is `BIP34 height || push(merged-mining commitment) ||
//! push("/p2pool-rs/") || extranonce`, with the 8-byte extranonce (4 bytes per connection, 4 chosen by the miner) last, so the coinbase
//! splits into Stratum's `coinb1` and `coinb2` around it. Everything else in the coinbase is
//! fixed by the share template: the PPLNS payouts, the witness commitment, the share
//! commitment.

use std::sync::Arc;

use share_chain::auxpow::AuxPow;
use share_chain::coinbase::{coinbase_script_sig, CoinbaseError, Payout};
use share_chain::merkle::coinbase_merkle_branch;
use share_chain::params::AuxChainParams;
use share_chain::template::{BlockContext, ShareTemplate};
use share_chain::{PowAlgorithm, Target};
use share_chain::{Share, ShareHash};

use crate::daemon::aux::AuxTemplate;
use crate::daemon::block::assemble_block;
use crate::daemon::template::BlockTemplate;

/// Tag in every coinbase scriptSig this node builds.
pub const COINBASE_TAG: &[u8] = b"/p2pool-rs/";
/// Extranonce bytes at the end of the scriptSig: extranonce1 (per connection) and
/// extranonce2 (the miner's).
pub const EXTRANONCE_SIZE: usize = 8;

/// The share chain's view of a daemon template.
pub fn block_context(template: &BlockTemplate) -> BlockContext {
    let txids: Vec<[u8; 32]> = template.txids().copied().collect();
    BlockContext {
        merkle_branch: coinbase_merkle_branch(&txids),
        ..coinbase_context(template)
    }
}

/// [`block_context`] without the merkle branch: all a coinbase needs (its size does not
/// depend on the other transactions), without hashing thousands of txids.
pub fn coinbase_context(template: &BlockTemplate) -> BlockContext {
    BlockContext {
        version: template.version as i32,
        prev_block: template.previous_block_hash,
        bits: template.bits,
        coinbase_value: template.coinbase_value,
        witness_commitment: template
            .default_witness_commitment
            .as_ref()
            .map(|w| w.commitment),
        merkle_branch: Vec::new(),
        aux: Vec::new(),
    }
}

/// The scriptSig of `share`'s coinbase at block `height`, before the extranonce.
pub fn script_sig_prefix(share: &ShareTemplate, height: u32) -> Vec<u8> {
    coinbase_script_sig(
        u64::from(height),
        &share.merged_mining_commitment(),
        COINBASE_TAG,
        &[],
    )
}

/// What a job needs beyond the coinbase halves: everything to rebuild the share and block.
#[derive(Debug)]
pub struct WorkPayload {
    pub share: ShareTemplate,
    pub block: Arc<BlockTemplate>,
    pub script_sig_prefix: Vec<u8>,
    /// The aux daemons' templates of the round (merged mining), by chain id.
    pub aux: Vec<Arc<AuxTemplate>>,
    /// Which round of work this belongs to (the node counts them; 0 until it sets one):
    /// jobs of one round share their block template and share-chain tip.
    pub generation: u64,
}

/// An aux block a solution found, ready for its daemon.
#[derive(Debug)]
pub struct FoundAuxBlock {
    /// The aux chain.
    pub chain: AuxChainParams,
    /// The aux block's hash, internal byte order.
    pub hash: [u8; 32],
    /// The block it builds on, internal byte order.
    pub prev_block: [u8; 32],
    /// The parent-chain header whose proof of work it carries.
    pub parent_header: ShareHash,
    pub height: u32,
    pub time: u32,
    pub value: u64,
    /// The finder's script on the aux chain, if it has one.
    pub finder: Option<Vec<u8>>,
    pub bytes: Vec<u8>,
    pub payouts: Vec<Payout>,
}

/// One miner's work.
#[derive(Debug)]
pub struct MinerWork {
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    /// The header time to start from: the template's, but never below what the share
    /// chain accepts.
    pub time: u32,
    pub payload: WorkPayload,
}

/// Splits the coinbase of `share` (on `block`) for Stratum.
pub fn build_work(
    share: ShareTemplate,
    block: Arc<BlockTemplate>,
    aux: Vec<Arc<AuxTemplate>>,
) -> Result<MinerWork, CoinbaseError> {
    let prefix = script_sig_prefix(&share, block.height);
    let mut script_sig = prefix.clone();
    script_sig.extend_from_slice(&[0; EXTRANONCE_SIZE]);
    let (coinb1, coinb2) = share
        .coinbase(script_sig)
        .split_for_stratum(EXTRANONCE_SIZE)?;
    let time = block.cur_time.max(block.min_time).max(share.min_time);
    Ok(MinerWork {
        coinb1,
        coinb2,
        time,
        payload: WorkPayload {
            share,
            block,
            script_sig_prefix: prefix,
            aux,
            generation: 0,
        },
    })
}

impl WorkPayload {
    /// The share a solution makes: `extranonce` is extranonce1 || extranonce2.
    pub fn share_for(&self, extranonce: &[u8], version: u32, time: u32, nonce: u32) -> Share {
        let mut script_sig = self.script_sig_prefix.clone();
        script_sig.extend_from_slice(extranonce);
        self.share.share(script_sig, version as i32, time, nonce)
    }

    /// The easiest target among the aux blocks this work mines, if any: a solution under it
    /// may be an aux block.
    pub fn aux_target(&self) -> Option<Target> {
        self.share
            .merged_mining
            .blocks
            .iter()
            .filter_map(|b| self.aux_template(b.chain_id))
            .map(|t| t.target)
            .max()
    }

    fn aux_template(&self, chain_id: u32) -> Option<&Arc<AuxTemplate>> {
        self.aux.iter().find(|t| t.chain.chain_id == chain_id)
    }

    /// The aux blocks `share` (a miner's solution of this work, with proof-of-work hash
    /// `pow_hash`) is, each with its AuxPoW, ready for the aux daemon's `submitblock`.
    /// Each is checked with the aux daemon's own rules first.
    pub fn aux_blocks(
        &self,
        share: &Share,
        pow_hash: &[u8; 32],
        pow: PowAlgorithm,
    ) -> Vec<Result<FoundAuxBlock, String>> {
        let mut found = Vec::new();
        for (index, block) in self.share.merged_mining.blocks.iter().enumerate() {
            let Some(template) = self.aux_template(block.chain_id) else {
                continue;
            };
            if !template.target.is_met_by(pow_hash) {
                continue;
            }
            found.push(self.aux_block(share, index, template, pow));
        }
        found
    }

    fn aux_block(
        &self,
        share: &Share,
        index: usize,
        template: &AuxTemplate,
        pow: PowAlgorithm,
    ) -> Result<FoundAuxBlock, String> {
        let chain_id = template.chain.chain_id;
        let (coinbase, header) = self
            .share
            .aux_block(index)
            .ok_or("the share template lacks the aux block")?;
        let slot = self
            .share
            .aux_tree
            .slot_of(chain_id)
            .ok_or("the aux tree lacks the chain")?;
        let parent_coinbase = self.share.coinbase(share.coinbase.script_sig.clone());
        let auxpow = AuxPow {
            coinbase: parent_coinbase.transaction().clone(),
            parent_hash: share.hash().0,
            coinbase_branch: share.merkle_branch.clone(),
            coinbase_index: 0,
            chain_branch: self.share.aux_tree.branch(slot),
            chain_index: slot as i32,
            parent_header: share.header.clone(),
        };
        let hash = header.hash().0;
        auxpow
            .check(
                &hash,
                chain_id,
                template.chain.strict_chain_id,
                &template.target,
                pow,
            )
            .map_err(|e| format!("its AuxPoW would be refused: {e}"))?;
        Ok(FoundAuxBlock {
            chain: template.chain.clone(),
            hash,
            prev_block: header.prev_block,
            parent_header: share.hash(),
            height: template.height,
            time: header.time,
            value: template.block.coinbase_value,
            finder: share.info.aux_payout_script(),
            bytes: template.assemble(&header, &auxpow, &coinbase),
            payouts: self
                .share
                .aux_payouts
                .get(index)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// The full block of a share that meets the block target, ready for `submitblock`.
    pub fn block_bytes(&self, share: &Share) -> Vec<u8> {
        let coinbase = self.share.coinbase(share.coinbase.script_sig.clone());
        assemble_block(&share.header.to_bytes(), &coinbase.to_bytes(), &self.block)
    }
}
