//! The merged-mining commitment: how one proof of work on the parent chain (Litecoin) also
//! counts on auxiliary chains (Dogecoin and any other scrypt AuxPoW chain).
//!
//! The parent block's coinbase scriptSig carries 44 bytes: the magic `fabe6d6d`, the root of
//! a small merkle tree whose leaves are the aux blocks' hashes, the tree's size and a nonce.
//! Each aux chain's block sits at the slot its chain id and the nonce dictate, so one parent
//! proof of work cannot be used twice on one chain. An aux daemon checks exactly this
//! (Dogecoin Core's `CAuxPow::check`); this module builds it and finds it again.
//!
//! Byte orders: leaves and inner nodes are in internal order (as `sha256d` produces them);
//! the root is written into the scriptSig **reversed**, as the daemons read it.

use thiserror::Error;

use crate::hash::sha256d;

/// `fabe6d6d`: marks the commitment in the parent coinbase.
pub const MERGED_MINING_MAGIC: [u8; 4] = [0xfa, 0xbe, 0x6d, 0x6d];
/// Magic, root, size and nonce.
pub const COMMITMENT_LEN: usize = 44;
/// Highest aux tree this share chain builds or accepts: 256 slots (the daemons take up to
/// 2^30; no real miner merges more than a handful of chains).
pub const MAX_AUX_TREE_HEIGHT: u32 = 8;

/// The slot of chain `chain_id` in a tree of height `height` for `nonce` (`getExpectedIndex`
/// of the daemons: a linear congruential step over 32-bit wrapping arithmetic).
pub fn aux_slot(nonce: u32, chain_id: u32, height: u32) -> u32 {
    let mut rand = nonce;
    rand = rand.wrapping_mul(1_103_515_245).wrapping_add(12_345);
    rand = rand.wrapping_add(chain_id);
    rand = rand.wrapping_mul(1_103_515_245).wrapping_add(12_345);
    rand % (1u32 << height.min(31))
}

/// `sha256d(left || right)`.
fn hash_pair(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(left);
    buf[32..].copy_from_slice(right);
    sha256d(&buf)
}

/// Folds `leaf` at `index` up `branch` (`CheckMerkleBranch`): at each level the sibling
/// goes left when the index is odd.
pub fn fold_branch(leaf: [u8; 32], branch: &[[u8; 32]], index: u32) -> [u8; 32] {
    let mut index = index;
    let mut hash = leaf;
    for sibling in branch {
        hash = if index & 1 == 1 {
            hash_pair(sibling, &hash)
        } else {
            hash_pair(&hash, sibling)
        };
        index >>= 1;
    }
    hash
}

/// Why aux blocks do not fit a tree.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuxTreeError {
    #[error("aux tree height {0} exceeds {MAX_AUX_TREE_HEIGHT}")]
    TooHigh(u32),
    #[error("aux chains {0} and {1} fall into the same slot")]
    SlotCollision(u32, u32),
    #[error("no tree of height at most {MAX_AUX_TREE_HEIGHT} separates these chains")]
    NoFreeSlots,
}

/// The tree of aux block hashes: `2^height` leaves, each chain's block hash at its slot,
/// all-zero leaves elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuxTree {
    height: u32,
    nonce: u32,
    /// `(chain_id, slot)` of each chain, in the order given.
    slots: Vec<(u32, u32)>,
    leaves: Vec<[u8; 32]>,
}

impl AuxTree {
    /// The tree of `height` and `nonce` holding `blocks` (`(chain_id, block hash)`), or the
    /// first two chains that share a slot.
    pub fn new(height: u32, nonce: u32, blocks: &[(u32, [u8; 32])]) -> Result<Self, AuxTreeError> {
        if height > MAX_AUX_TREE_HEIGHT {
            return Err(AuxTreeError::TooHigh(height));
        }
        let mut leaves = vec![[0u8; 32]; 1 << height];
        let mut taken: Vec<Option<u32>> = vec![None; 1 << height];
        let mut slots = Vec::with_capacity(blocks.len());
        for (chain_id, hash) in blocks {
            let slot = aux_slot(nonce, *chain_id, height);
            if let Some(other) = taken[slot as usize] {
                return Err(AuxTreeError::SlotCollision(other, *chain_id));
            }
            taken[slot as usize] = Some(*chain_id);
            leaves[slot as usize] = *hash;
            slots.push((*chain_id, slot));
        }
        Ok(AuxTree {
            height,
            nonce,
            slots,
            leaves,
        })
    }

    /// The smallest tree that separates `blocks`, with nonce 0: the choice every node
    /// makes, so a template's tree is reproducible.
    ///
    /// The nonce cannot separate two chains: the slots of chain ids `x` and `y` differ by
    /// `(x − y) × 1103515245 mod 2^height` whatever the nonce, and the multiplier is odd, so
    /// they collide exactly when `x ≡ y (mod 2^height)`. Only a taller tree helps.
    pub fn smallest(blocks: &[(u32, [u8; 32])]) -> Result<Self, AuxTreeError> {
        let mut height = 0;
        while (1usize << height) < blocks.len() {
            height += 1;
        }
        (height..=MAX_AUX_TREE_HEIGHT)
            .find_map(|h| AuxTree::new(h, 0, blocks).ok())
            .ok_or(AuxTreeError::NoFreeSlots)
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn nonce(&self) -> u32 {
        self.nonce
    }

    /// The slot of `chain_id`, if the tree holds it.
    pub fn slot_of(&self, chain_id: u32) -> Option<u32> {
        self.slots
            .iter()
            .find(|(id, _)| *id == chain_id)
            .map(|(_, slot)| *slot)
    }

    /// The root, internal byte order.
    pub fn root(&self) -> [u8; 32] {
        let mut level = self.leaves.clone();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| hash_pair(&pair[0], &pair[1]))
                .collect();
        }
        level[0]
    }

    /// The siblings from `slot` up to the root (the aux proof's chain merkle branch).
    pub fn branch(&self, slot: u32) -> Vec<[u8; 32]> {
        let mut branch = Vec::with_capacity(self.height as usize);
        let mut level = self.leaves.clone();
        let mut index = slot as usize;
        while level.len() > 1 {
            branch.push(level[index ^ 1]);
            level = level
                .chunks(2)
                .map(|pair| hash_pair(&pair[0], &pair[1]))
                .collect();
            index >>= 1;
        }
        branch
    }

    /// What the parent coinbase carries for this tree.
    pub fn commitment(&self) -> MergedMiningCommitment {
        MergedMiningCommitment {
            root: self.root(),
            size: 1 << self.height,
            nonce: self.nonce,
        }
    }
}

/// The 44 bytes in the parent coinbase: `fabe6d6d || reversed root || size || nonce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergedMiningCommitment {
    /// Root of the aux tree, internal byte order.
    pub root: [u8; 32],
    /// Number of leaves, a power of two.
    pub size: u32,
    pub nonce: u32,
}

/// Why a scriptSig does not carry a usable commitment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CommitmentError {
    #[error("the coinbase scriptSig carries no merged-mining commitment")]
    Missing,
    #[error("the coinbase scriptSig carries more than one merged-mining magic")]
    Repeated,
    #[error("the merged-mining commitment is cut short by the end of the scriptSig")]
    Truncated,
    #[error("the aux tree root appears in the scriptSig before the merged-mining magic")]
    RootBeforeMagic,
}

impl MergedMiningCommitment {
    pub fn to_bytes(&self) -> [u8; COMMITMENT_LEN] {
        let mut out = [0u8; COMMITMENT_LEN];
        out[..4].copy_from_slice(&MERGED_MINING_MAGIC);
        let mut root = self.root;
        root.reverse();
        out[4..36].copy_from_slice(&root);
        out[36..40].copy_from_slice(&self.size.to_le_bytes());
        out[40..44].copy_from_slice(&self.nonce.to_le_bytes());
        out
    }

    /// The one commitment in a parent coinbase's `script_sig`, with the daemons' rules: the
    /// magic exactly once, its 40 bytes complete, and the root not found earlier in the
    /// script (the daemons look for the first occurrence of the root and refuse the block if
    /// the magic is not just before it).
    pub fn find_in(script_sig: &[u8]) -> Result<Self, CommitmentError> {
        let at = find(script_sig, &MERGED_MINING_MAGIC, 0).ok_or(CommitmentError::Missing)?;
        if find(script_sig, &MERGED_MINING_MAGIC, at + 1).is_some() {
            return Err(CommitmentError::Repeated);
        }
        let body = script_sig
            .get(at + 4..at + COMMITMENT_LEN)
            .ok_or(CommitmentError::Truncated)?;
        let reversed_root = &body[..32];
        if find(script_sig, reversed_root, 0) != Some(at + 4) {
            return Err(CommitmentError::RootBeforeMagic);
        }
        let mut root = [0u8; 32];
        root.copy_from_slice(reversed_root);
        root.reverse();
        let word = |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
        Ok(MergedMiningCommitment {
            root,
            size: word(32),
            nonce: word(36),
        })
    }
}

/// The first index at or after `from` where `needle` occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slots_match_the_daemons_for_dogecoin() {
        // Dogecoin's chain id 98 in a tree of one slot is always slot 0; bigger trees spread.
        assert_eq!(aux_slot(0, 98, 0), 0);
        // 0 * a + c = 12345; + 98 = 12443; 12443 * 1103515245 + 12345 (mod 2^32).
        let expected = 12_443u32.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        assert_eq!(aux_slot(0, 98, 8), expected % 256);
        assert_eq!(aux_slot(7, 98, 2), {
            let r = 7u32.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            r.wrapping_add(98)
                .wrapping_mul(1_103_515_245)
                .wrapping_add(12_345)
                % 4
        });
    }

    /// Chain ids equal modulo 2^h share a slot at height h for every nonce; the smallest tree
    /// is the first height that tells them apart.
    #[test]
    fn only_height_separates_chains() {
        for nonce in 0..50 {
            assert_eq!(aux_slot(nonce, 1, 2), aux_slot(nonce, 5, 2));
        }
        let tree = AuxTree::smallest(&[(1, [1; 32]), (5, [5; 32])]).unwrap();
        assert_eq!(tree.height(), 3);
        assert_eq!(
            AuxTree::smallest(&[(1, [1; 32]), (257, [2; 32])]),
            Err(AuxTreeError::NoFreeSlots)
        );
    }

    #[test]
    fn a_tree_of_one_chain_is_its_block_hash() {
        let tree = AuxTree::smallest(&[(98, [7; 32])]).unwrap();
        assert_eq!((tree.height(), tree.nonce()), (0, 0));
        assert_eq!(tree.root(), [7; 32]);
        assert!(tree.branch(0).is_empty());
    }

    #[test]
    fn commitment_bytes_round_trip_and_reverse_the_root() {
        let mut root = [0u8; 32];
        root[0] = 1;
        let c = MergedMiningCommitment {
            root,
            size: 4,
            nonce: 9,
        };
        let bytes = c.to_bytes();
        assert_eq!(&bytes[..4], &MERGED_MINING_MAGIC);
        assert_eq!(bytes[35], 1, "the root is written reversed");
        let mut script = vec![0x03, 0x01, 0x02, 0x03, 0x2c];
        script.extend_from_slice(&bytes);
        script.extend_from_slice(b"tail");
        assert_eq!(MergedMiningCommitment::find_in(&script), Ok(c));
    }

    #[test]
    fn malformed_commitments_are_refused() {
        let c = MergedMiningCommitment {
            root: [5; 32],
            size: 1,
            nonce: 0,
        };
        let bytes = c.to_bytes();
        assert_eq!(
            MergedMiningCommitment::find_in(b"no magic here"),
            Err(CommitmentError::Missing)
        );
        let twice = [&bytes[..], &bytes[..]].concat();
        assert_eq!(
            MergedMiningCommitment::find_in(&twice),
            Err(CommitmentError::Repeated)
        );
        assert_eq!(
            MergedMiningCommitment::find_in(&bytes[..43]),
            Err(CommitmentError::Truncated)
        );
        let early = [&[5u8; 32][..], &bytes[..]].concat();
        assert_eq!(
            MergedMiningCommitment::find_in(&early),
            Err(CommitmentError::RootBeforeMagic)
        );
    }

    proptest! {
        /// Every chain's branch folds its block hash up to the root, at the slot the daemons
        /// expect for the tree's size and nonce.
        #[test]
        fn branches_fold_to_the_root(ids in proptest::collection::btree_set(0u32..256, 1..6), high in 0u32..4) {
            // Ids distinct modulo 256 always fit a tree of height 8.
            let ids: Vec<u32> = ids.iter().map(|id| id + (high << 8)).collect();
            let blocks: Vec<(u32, [u8; 32])> = ids.iter().map(|id| (*id, sha256d(&id.to_le_bytes()))).collect();
            let tree = AuxTree::smallest(&blocks).unwrap();
            for (id, hash) in &blocks {
                let slot = tree.slot_of(*id).unwrap();
                prop_assert_eq!(slot, aux_slot(tree.nonce(), *id, tree.height()));
                let branch = tree.branch(slot);
                prop_assert_eq!(branch.len() as u32, tree.height());
                prop_assert_eq!(fold_branch(*hash, &branch, slot), tree.root());
            }
        }

        #[test]
        fn find_never_panics(script in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = MergedMiningCommitment::find_in(&script);
        }
    }
}
