//! Helpers that mine real, valid shares on an easy target, for tests and benchmarks.
//!
//! Nothing here is a fake: shares are built through [`ChainIndex::share_template_on`]
//! exactly as a node builds them for its miners, and the nonce is ground until the
//! proof of work meets the share target (about two hashes on the regtest preset).

use crate::aux_work::aux_block_parts;
use crate::auxpow::aux_block_version;
use crate::chain::ChainIndex;
use crate::coinbase::{aux_coinbase_script_sig, coinbase_script_sig, Payout};
use crate::hash::ShareHash;
use crate::join::PeerChain;
use crate::merged_mining::AuxTree;
use crate::params::Preset;
use crate::pow::pow_hash;
use crate::script::derived_aux_script;
use crate::share::{
    AuxBlock, BlockHeader, CoinbaseData, MergedMining, Share, ShareInfo, SHARE_VERSION,
};
use crate::template::{BlockContext, MinerPayout};

/// The regtest preset with overrides (TOML), for tests. Unless the overrides say
/// otherwise, the easiest share target is the regtest block target (`0x207fffff`, about
/// two hashes a share), so tests mine real shares quickly.
pub fn regtest_preset(overrides: &str) -> Preset {
    let mut preset = Preset::load("litecoin-regtest", Some(overrides)).expect("valid test preset");
    if !overrides.contains("max_share_target_bits") {
        preset.consensus.max_share_target_bits = 0x207f_ffff;
    }
    preset
}

/// A block context on the regtest block target paying `value`, merge-mining a Dogecoin
/// regtest block worth 10,000 DOGE.
pub fn block_context(value: u64) -> BlockContext {
    BlockContext {
        version: 0x2000_0000,
        prev_block: [0x11; 32],
        bits: 0x207f_ffff,
        coinbase_value: value,
        witness_commitment: Some([0x22; 32]),
        merkle_branch: vec![[0x33; 32], [0x44; 32]],
        aux: vec![dogecoin_block(1_000_000_000_000)],
    }
}

/// A Dogecoin (chain 98) regtest aux block paying `value` koinu.
pub fn dogecoin_block(value: u64) -> AuxBlock {
    AuxBlock {
        chain_id: 98,
        version: aux_block_version(4, 98),
        prev_block: [0x55; 32],
        time: 1_700_000_000,
        bits: 0x207f_ffff,
        coinbase_script_sig: aux_coinbase_script_sig(21, b"/testkit/"),
        coinbase_value: value,
        merkle_branch: vec![[0x66; 32]],
    }
}

/// A P2WPKH script paying miner number `n`.
pub fn miner_script(n: u32) -> Vec<u8> {
    let mut s = vec![0x00, 0x14];
    s.extend_from_slice(&[0xab; 16]);
    s.extend_from_slice(&n.to_be_bytes());
    s
}

pub fn miner(n: u32) -> MinerPayout {
    MinerPayout {
        script: miner_script(n),
        aux_script: None,
        fee: None,
        share_target_bits: None,
    }
}

/// Mines a valid share on `parent` for `miner` at `time`.
pub fn mine_share(
    index: &mut ChainIndex,
    parent: Option<ShareHash>,
    miner: &MinerPayout,
    time: u32,
) -> Share {
    mine_share_on_block(index, parent, miner, time, block_context(50_0000_0000))
}

/// Mines a valid share on `parent` for `miner` at `time`, on the block `block`.
pub fn mine_share_on_block(
    index: &mut ChainIndex,
    parent: Option<ShareHash>,
    miner: &MinerPayout,
    time: u32,
    block: BlockContext,
) -> Share {
    let template = index
        .share_template_on(parent, miner, block)
        .expect("template");
    let height = parent
        .and_then(|p| index.get(&p))
        .map_or(0, |e| e.height + 1);
    let script_sig = coinbase_script_sig(
        height + 1,
        &template.merged_mining_commitment(),
        b"/testkit/",
        &time.to_le_bytes(),
    );
    let mut share = template.share(script_sig, 0x2000_0000, time, 0);
    let pow = index.pow;
    while !template
        .share_target
        .is_met_by(&pow_hash(pow, &share.header.to_bytes()))
    {
        share.header.nonce = share.header.nonce.wrapping_add(1);
    }
    share
}

/// Mines a share on `parent` for `miner` at `time` that is valid in every way but one: its
/// Dogecoin block pays the miner's aux script the whole value instead of the window
/// (docs/PROTOCOL.md §15), and the coinbase commits to that block. Every peer must refuse
/// it. `miner`'s script must have an aux form (P2PKH or P2WPKH).
pub fn greedy_aux_share(
    index: &mut ChainIndex,
    parent: ShareHash,
    miner: &MinerPayout,
    time: u32,
) -> Share {
    let template = index
        .share_template_on(Some(parent), miner, block_context(50_0000_0000))
        .expect("template");
    let block = &template.merged_mining.blocks[0];
    let everything = [Payout {
        script: derived_aux_script(&miner.script).expect("a script with an aux form"),
        amount: block.coinbase_value,
    }];
    let (_, header) = aux_block_parts(block, &everything);
    let tree = AuxTree::new(0, 0, &[(block.chain_id, header.hash().0)]).expect("one leaf");
    let script_sig = coinbase_script_sig(
        9,
        &tree.commitment().to_bytes(),
        b"/greedy/",
        &time.to_le_bytes(),
    );
    let mut share = template.share(script_sig, 0x2000_0000, time, 0);
    while !template
        .share_target
        .is_met_by(&pow_hash(index.pow, &share.header.to_bytes()))
    {
        share.header.nonce = share.header.nonce.wrapping_add(1);
    }
    share
}

/// Mines and connects `n` shares on the best tip, one per share period from `start`,
/// cycling through `miners` miners. Returns the shares in order.
pub fn grow_chain(index: &mut ChainIndex, n: usize, miners: u32, start: u32) -> Vec<Share> {
    let period = index.params().share_period_secs;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let parent = index.best_hash();
        let time = start + period * (index.len() as u32 + 1);
        let share = mine_share(index, parent, &miner(i as u32 % miners.max(1)), time);
        index
            .connect(share.clone(), u64::from(time))
            .expect("a mined share connects");
        out.push(share);
    }
    out
}

/// What a peer serves a joining node: its best chain from the oldest share it holds, and
/// the uncles that chain names which it still holds.
pub fn served(peer: &ChainIndex) -> PeerChain {
    let mut run: Vec<Share> = peer
        .best_hash()
        .into_iter()
        .flat_map(|best| peer.ancestors(best))
        .map(|e| (*e.share).clone())
        .collect();
    run.reverse();
    let uncles = run
        .iter()
        .flat_map(|s| s.info.uncles.iter())
        .filter_map(|u| peer.get(u).map(|e| (*e.share).clone()))
        .collect();
    PeerChain { run, uncles }
}

/// A well-formed share that is a pure function of `id` (not valid on any chain): a
/// realistic size for store tests and benchmarks — a 22-byte P2WPKH payout script, an
/// 8-hash merkle branch, 2 uncles, one aux block. Its hash differs for every id.
pub fn synthetic_share(id: u64) -> Share {
    let b = |salt: u64| -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&(id ^ (salt << 8) ^ (i as u64) << 56).to_le_bytes());
        }
        out
    };
    let mut uncles = vec![ShareHash(b(1)), ShareHash(b(2))];
    uncles.sort();
    uncles.dedup();
    let mut payout_script = vec![0x00, 0x14];
    payout_script.extend_from_slice(&b(3)[..20]);
    Share {
        header: BlockHeader {
            version: 0x2000_0000,
            prev_block: b(4),
            merkle_root: b(5),
            time: 1_700_000_000u32.wrapping_add((id >> 32) as u32),
            bits: 0x1e0f_fff0,
            nonce: id as u32,
        },
        info: ShareInfo {
            version: SHARE_VERSION,
            prev_share: ShareHash(b(6)),
            required_bits: 0x1e0f_fff0,
            share_target_bits: 0x1e0f_fff0,
            payout_script,
            aux_payout_script: None,
            fee: None,
            uncles,
        },
        coinbase: CoinbaseData {
            script_sig: vec![0x03, 0x10, 0x27, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8],
            value: 625_000_000 + (id % 1000),
            witness_commitment: Some(b(7)),
        },
        merkle_branch: (10..18).map(b).collect(),
        merged_mining: MergedMining {
            tree_height: 0,
            tree_nonce: 0,
            blocks: vec![AuxBlock {
                prev_block: b(8),
                ..dogecoin_block(1_000_000_000_000 + id % 1000)
            }],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aux_work::AuxWorkError;
    use crate::validation::ShareError;

    /// The greedy share breaks §15 and nothing else: the chain refuses it for its aux
    /// commitment, and takes an honest share mined the same way on the same parent.
    #[test]
    fn a_greedy_share_breaks_only_the_aux_rule() {
        let mut index = ChainIndex::new(&regtest_preset(""));
        let shares = grow_chain(&mut index, 3, 2, 1_700_000_000);
        let parent = shares[2].hash();
        let greedy = greedy_aux_share(&mut index, parent, &miner(1), 1_700_000_100);
        assert_eq!(
            index.connect(greedy, 1_700_000_100).map(|_| ()),
            Err(ShareError::MergedMining(AuxWorkError::CommitmentMismatch))
        );
        let honest = mine_share(&mut index, Some(parent), &miner(1), 1_700_000_100);
        assert!(index.connect(honest, 1_700_000_100).is_ok());
    }
}
