//! The share: a block header that proves work, plus the data peers need to rebuild the
//! coinbase that the header commits to.
//!
//! A share's identity is `sha256d` of its 80-byte header, exactly like a block. The header's
//! merkle root commits to the coinbase, the coinbase's last output commits to the share's
//! [`ShareInfo`], so the proof of work covers everything a share says. Every variable-length
//! field has a hard bound, and every script a standard pattern ([`crate::script`]), checked
//! on decode.
//!
//! Since version 3 a share also carries the aux blocks its proof of work mines
//! ([`MergedMining`]): enough of each that every peer rebuilds the aux block's coinbase, which
//! must pay the window, and finds its hash in the parent coinbase's merged-mining commitment.

use bincode::{Decode, Encode};
use thiserror::Error;

use crate::encoding::{decode_canonical, encode_canonical, DecodeError};
use crate::hash::{sha256d, ShareHash};
use crate::merged_mining::MAX_AUX_TREE_HEIGHT;
use crate::params::NetworkId;
use crate::script::{derived_aux_script, is_aux_standard, ScriptKind, MAX_STANDARD_SCRIPT_LEN};

/// The share format this code produces and accepts (docs/PROTOCOL.md, "Changes in version 3").
pub const SHARE_VERSION: u32 = 3;
/// Longest payout or fee script: the longest standard script (P2WSH, P2TR).
pub const MAX_SCRIPT_LEN: usize = MAX_STANDARD_SCRIPT_LEN;
/// Coinbase scriptSig length bounds (Bitcoin's consensus rule).
pub const MIN_SCRIPT_SIG_LEN: usize = 2;
pub const MAX_SCRIPT_SIG_LEN: usize = 100;
/// Longest coinbase merkle branch: 2^24 transactions, far beyond any block.
pub const MAX_MERKLE_BRANCH: usize = 24;
/// Most uncle references any preset may allow; presets set their own lower limit.
pub const MAX_UNCLES: usize = 8;
/// Most aux blocks one share mines (and aux chains a preset lists). Four keep the largest
/// share inside the canonical encoding's 8 KiB.
pub const MAX_AUX_BLOCKS: usize = 4;

/// An 80-byte block header, field by field.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct BlockHeader {
    pub version: i32,
    /// Hash of the previous block, in internal byte order.
    pub prev_block: [u8; 32],
    /// Merkle root of the block's transactions, in internal byte order.
    pub merkle_root: [u8; 32],
    pub time: u32,
    /// The block target, compact form.
    pub bits: u32,
    pub nonce: u32,
}

impl BlockHeader {
    /// Bitcoin's serialization: the fields little-endian, in order.
    pub fn to_bytes(&self) -> [u8; 80] {
        let mut out = [0u8; 80];
        out[0..4].copy_from_slice(&self.version.to_le_bytes());
        out[4..36].copy_from_slice(&self.prev_block);
        out[36..68].copy_from_slice(&self.merkle_root);
        out[68..72].copy_from_slice(&self.time.to_le_bytes());
        out[72..76].copy_from_slice(&self.bits.to_le_bytes());
        out[76..80].copy_from_slice(&self.nonce.to_le_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8; 80]) -> Self {
        let word = |at: usize| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let mut prev_block = [0u8; 32];
        prev_block.copy_from_slice(&bytes[4..36]);
        let mut merkle_root = [0u8; 32];
        merkle_root.copy_from_slice(&bytes[36..68]);
        BlockHeader {
            version: i32::from_le_bytes(word(0)),
            prev_block,
            merkle_root,
            time: u32::from_le_bytes(word(68)),
            bits: u32::from_le_bytes(word(72)),
            nonce: u32::from_le_bytes(word(76)),
        }
    }

    /// The block hash, which is also the share's id.
    pub fn hash(&self) -> ShareHash {
        ShareHash::hash(&self.to_bytes())
    }
}

/// An operator fee: part of the share's weight credited to the node operator's script.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct OperatorFee {
    pub basis_points: u16,
    /// A standard script ([`ScriptKind`]).
    pub script: Vec<u8>,
    /// Where the fee is paid on aux chains, if not [`derived_aux_script`] of `script`: a
    /// P2PKH or P2SH script.
    pub aux_script: Option<Vec<u8>>,
}

impl OperatorFee {
    /// Where the fee is paid on aux chains (explicit, else derived), if anywhere.
    pub fn aux_payout_script(&self) -> Option<Vec<u8>> {
        aux_script_of(&self.script, self.aux_script.as_ref())
    }
}

fn aux_script_of(script: &[u8], explicit: Option<&Vec<u8>>) -> Option<Vec<u8>> {
    explicit.cloned().or_else(|| derived_aux_script(script))
}

/// What the share says about the share chain; committed to by the coinbase's last output.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ShareInfo {
    /// Always [`SHARE_VERSION`].
    pub version: u32,
    /// The parent share, or zero for a chain's first share.
    pub prev_share: ShareHash,
    /// The share target the chain requires of this share (the retarget rule's result),
    /// compact form. Declared so that a node holding only part of the ancestry can still
    /// check its descendants; checked against the retarget rule whenever the ancestry is known.
    pub required_bits: u32,
    /// The target this share's proof of work meets, compact form; at most the required
    /// target (a miner may choose harder shares and earns weight in proportion).
    pub share_target_bits: u32,
    /// Where the miner of this share is paid: a standard script ([`ScriptKind`]).
    pub payout_script: Vec<u8>,
    /// Where the miner is paid on aux chains, if not [`derived_aux_script`] of
    /// `payout_script`: a P2PKH or P2SH script.
    pub aux_payout_script: Option<Vec<u8>>,
    pub fee: Option<OperatorFee>,
    /// Orphaned recent shares this share includes, strictly ascending by hash.
    pub uncles: Vec<ShareHash>,
}

impl ShareInfo {
    /// Where this share's miner is paid on aux chains: its explicit aux script, or the one
    /// derived from its payout script; `None` if neither (docs/PROTOCOL.md §15).
    pub fn aux_payout_script(&self) -> Option<Vec<u8>> {
        aux_script_of(&self.payout_script, self.aux_payout_script.as_ref())
    }

    /// The 32 bytes the coinbase's last output carries:
    /// `sha256d("p2pool-rs share v3" || network_id || canonical(info))`.
    pub fn commitment(&self, network: &NetworkId) -> [u8; 32] {
        let mut data = b"p2pool-rs share v3".to_vec();
        data.extend_from_slice(&network.0);
        data.extend(encode_canonical(self));
        sha256d(&data)
    }
}

/// The parts of the coinbase that peers cannot derive from the share chain.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CoinbaseData {
    /// BIP34 height, tag and extranonce; 2 to 100 bytes.
    pub script_sig: Vec<u8>,
    /// Total value of the coinbase (subsidy plus fees) in the coin's base unit.
    pub value: u64,
    /// The segwit witness commitment of the block's transactions, if the block has one.
    pub witness_commitment: Option<[u8; 32]>,
}

/// One aux block a share's proof of work also mines: the aux template's claims, and the
/// parts of its coinbase peers cannot derive. The coinbase's outputs are the window's
/// payouts on that chain; the block's hash is a leaf of the share's merged-mining tree.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AuxBlock {
    /// The aux chain (a chain id of the preset's `aux_chains`).
    pub chain_id: u32,
    /// The aux header's fields; its merkle root follows from the coinbase, its nonce is 0.
    pub version: i32,
    pub prev_block: [u8; 32],
    pub time: u32,
    pub bits: u32,
    /// The aux coinbase's scriptSig, 2 to 100 bytes.
    pub coinbase_script_sig: Vec<u8>,
    /// The aux coinbase's value: the aux template's subsidy plus fees.
    pub coinbase_value: u64,
    /// Sibling hashes from the aux coinbase txid up to the aux header's merkle root.
    pub merkle_branch: Vec<[u8; 32]>,
}

/// The merged-mining tree a share commits to in its coinbase scriptSig
/// ([`crate::merged_mining`]): its height and nonce, and the aux blocks at its leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct MergedMining {
    pub tree_height: u32,
    pub tree_nonce: u32,
    /// Strictly ascending by chain id; empty when the share mines no aux chain.
    pub blocks: Vec<AuxBlock>,
}

/// A share as it travels between peers and sits in the store.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Share {
    pub header: BlockHeader,
    pub info: ShareInfo,
    pub coinbase: CoinbaseData,
    /// Sibling hashes from the coinbase txid up to the header's merkle root.
    pub merkle_branch: Vec<[u8; 32]>,
    /// The aux blocks this share also mines (docs/PROTOCOL.md §15).
    pub merged_mining: MergedMining,
}

/// A field outside its bounds.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    #[error("share version {0} is not supported (expected {SHARE_VERSION})")]
    Version(u32),
    #[error(
        "payout script ({0} bytes) is not a standard P2PKH, P2SH, P2WPKH, P2WSH or P2TR script"
    )]
    NonStandardPayoutScript(usize),
    #[error("fee script ({0} bytes) is not a standard P2PKH, P2SH, P2WPKH, P2WSH or P2TR script")]
    NonStandardFeeScript(usize),
    #[error("fee of {0} basis points exceeds 10000")]
    FeeTooLarge(u16),
    #[error(
        "coinbase scriptSig of {0} bytes is outside {MIN_SCRIPT_SIG_LEN}..={MAX_SCRIPT_SIG_LEN}"
    )]
    ScriptSigLength(usize),
    #[error("merkle branch of {0} hashes exceeds {MAX_MERKLE_BRANCH}")]
    MerkleBranchTooLong(usize),
    #[error("{0} uncles exceed {MAX_UNCLES}")]
    TooManyUncles(usize),
    #[error("uncles are not strictly ascending by hash")]
    UnclesNotSorted,
    #[error("aux payout or fee script ({0} bytes) is not a P2PKH or P2SH script")]
    NonStandardAuxScript(usize),
    #[error("merged-mining tree height {0} exceeds {MAX_AUX_TREE_HEIGHT}")]
    AuxTreeTooHigh(u32),
    #[error("{0} aux blocks exceed {MAX_AUX_BLOCKS}")]
    TooManyAuxBlocks(usize),
    #[error("aux blocks are not strictly ascending by chain id")]
    AuxBlocksNotSorted,
    #[error("aux coinbase scriptSig of {0} bytes is outside {MIN_SCRIPT_SIG_LEN}..={MAX_SCRIPT_SIG_LEN}")]
    AuxScriptSigLength(usize),
    #[error("aux merkle branch of {0} hashes exceeds {MAX_MERKLE_BRANCH}")]
    AuxMerkleBranchTooLong(usize),
}

/// Why bytes are not a share.
#[derive(Debug, Error)]
pub enum ShareDecodeError {
    #[error(transparent)]
    Encoding(#[from] DecodeError),
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl Share {
    /// The share's id: `sha256d` of the header.
    pub fn hash(&self) -> ShareHash {
        self.header.hash()
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_canonical(self)
    }

    /// Decodes a share from untrusted bytes: bounded, never panics.
    pub fn decode(bytes: &[u8]) -> Result<Share, ShareDecodeError> {
        let share: Share = decode_canonical(bytes)?;
        share.check_format()?;
        Ok(share)
    }

    /// Checks every length and range that does not need the chain.
    pub fn check_format(&self) -> Result<(), FormatError> {
        let info = &self.info;
        if info.version != SHARE_VERSION {
            return Err(FormatError::Version(info.version));
        }
        if ScriptKind::of(&info.payout_script).is_none() {
            return Err(FormatError::NonStandardPayoutScript(
                info.payout_script.len(),
            ));
        }
        if let Some(fee) = &info.fee {
            if ScriptKind::of(&fee.script).is_none() {
                return Err(FormatError::NonStandardFeeScript(fee.script.len()));
            }
            if fee.basis_points > 10_000 {
                return Err(FormatError::FeeTooLarge(fee.basis_points));
            }
        }
        let sig = self.coinbase.script_sig.len();
        if !(MIN_SCRIPT_SIG_LEN..=MAX_SCRIPT_SIG_LEN).contains(&sig) {
            return Err(FormatError::ScriptSigLength(sig));
        }
        if self.merkle_branch.len() > MAX_MERKLE_BRANCH {
            return Err(FormatError::MerkleBranchTooLong(self.merkle_branch.len()));
        }
        if info.uncles.len() > MAX_UNCLES {
            return Err(FormatError::TooManyUncles(info.uncles.len()));
        }
        if info.uncles.windows(2).any(|w| w[0] >= w[1]) {
            return Err(FormatError::UnclesNotSorted);
        }
        let aux_scripts = info
            .aux_payout_script
            .iter()
            .chain(info.fee.iter().flat_map(|f| f.aux_script.iter()));
        for script in aux_scripts {
            if !is_aux_standard(script) {
                return Err(FormatError::NonStandardAuxScript(script.len()));
            }
        }
        let mm = &self.merged_mining;
        if mm.tree_height > MAX_AUX_TREE_HEIGHT {
            return Err(FormatError::AuxTreeTooHigh(mm.tree_height));
        }
        if mm.blocks.len() > MAX_AUX_BLOCKS {
            return Err(FormatError::TooManyAuxBlocks(mm.blocks.len()));
        }
        if mm.blocks.windows(2).any(|w| w[0].chain_id >= w[1].chain_id) {
            return Err(FormatError::AuxBlocksNotSorted);
        }
        for block in &mm.blocks {
            let sig = block.coinbase_script_sig.len();
            if !(MIN_SCRIPT_SIG_LEN..=MAX_SCRIPT_SIG_LEN).contains(&sig) {
                return Err(FormatError::AuxScriptSigLength(sig));
            }
            if block.merkle_branch.len() > MAX_MERKLE_BRANCH {
                return Err(FormatError::AuxMerkleBranchTooLong(
                    block.merkle_branch.len(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn sample_share() -> Share {
        Share {
            header: BlockHeader {
                version: 0x2000_0000,
                prev_block: [1; 32],
                merkle_root: [2; 32],
                time: 1_700_000_000,
                bits: 0x207f_ffff,
                nonce: 42,
            },
            info: ShareInfo {
                version: SHARE_VERSION,
                prev_share: ShareHash([3; 32]),
                required_bits: 0x207f_ffff,
                share_target_bits: 0x207f_ffff,
                payout_script: vec![
                    0x00, 0x14, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                ],
                aux_payout_script: None,
                fee: None,
                uncles: vec![ShareHash([4; 32]), ShareHash([5; 32])],
            },
            coinbase: CoinbaseData {
                script_sig: vec![0x01, 0x05, 0, 0, 0, 0, 0, 0, 0, 0],
                value: 625_000_000,
                witness_commitment: Some([6; 32]),
            },
            merkle_branch: vec![[8; 32]],
            merged_mining: MergedMining {
                tree_height: 0,
                tree_nonce: 0,
                blocks: vec![sample_aux_block(98)],
            },
        }
    }

    pub fn sample_aux_block(chain_id: u32) -> AuxBlock {
        AuxBlock {
            chain_id,
            version: 0x0062_0104,
            prev_block: [9; 32],
            time: 1_700_000_000,
            bits: 0x207f_ffff,
            coinbase_script_sig: vec![0x01, 0x14, 0, 0],
            coinbase_value: 1_000_000_000_000,
            merkle_branch: vec![],
        }
    }

    /// The largest share the bounds allow still fits the canonical encoding's limit, so
    /// every share that passes the format rules can travel and be stored.
    #[test]
    fn the_largest_share_fits_the_encoding_limit() {
        let mut s = sample_share();
        let long = vec![0x00, 0x20]
            .into_iter()
            .chain([1u8; 32])
            .collect::<Vec<_>>();
        let p2pkh = [&[0x76, 0xa9, 0x14][..], &[1; 20], &[0x88, 0xac]].concat();
        s.info.payout_script = long.clone();
        s.info.aux_payout_script = Some(p2pkh.clone());
        s.info.fee = Some(OperatorFee {
            basis_points: 100,
            script: long,
            aux_script: Some(p2pkh),
        });
        s.info.uncles = (0..MAX_UNCLES as u8).map(|i| ShareHash([i; 32])).collect();
        s.coinbase.script_sig = vec![0; MAX_SCRIPT_SIG_LEN];
        s.merkle_branch = vec![[0; 32]; MAX_MERKLE_BRANCH];
        s.merged_mining.tree_height = MAX_AUX_TREE_HEIGHT;
        s.merged_mining.blocks = (0..MAX_AUX_BLOCKS as u32)
            .map(|id| AuxBlock {
                coinbase_script_sig: vec![0; MAX_SCRIPT_SIG_LEN],
                merkle_branch: vec![[0; 32]; MAX_MERKLE_BRANCH],
                ..sample_aux_block(id)
            })
            .collect();
        let bytes = s.encode();
        assert!(
            bytes.len() <= crate::encoding::MAX_ENCODED_SIZE,
            "{}",
            bytes.len()
        );
        assert_eq!(Share::decode(&bytes).unwrap(), s);
    }

    #[test]
    fn aux_bounds_are_checked_on_decode() {
        let refused = |f: &dyn Fn(&mut Share)| {
            let mut s = sample_share();
            f(&mut s);
            match Share::decode(&s.encode()) {
                Err(ShareDecodeError::Format(e)) => e,
                other => panic!("{other:?}"),
            }
        };
        let p2wpkh = [&[0x00, 0x14][..], &[1; 20]].concat();
        assert_eq!(
            refused(&|s| s.info.aux_payout_script = Some(p2wpkh.clone())),
            FormatError::NonStandardAuxScript(22)
        );
        assert_eq!(
            refused(&|s| s.merged_mining.tree_height = 9),
            FormatError::AuxTreeTooHigh(9)
        );
        assert_eq!(
            refused(&|s| s.merged_mining.blocks = vec![sample_aux_block(98), sample_aux_block(98)]),
            FormatError::AuxBlocksNotSorted
        );
        assert_eq!(
            refused(&|s| s.merged_mining.blocks = (0..5).map(sample_aux_block).collect()),
            FormatError::TooManyAuxBlocks(5)
        );
        assert_eq!(
            refused(&|s| s.merged_mining.blocks[0].coinbase_script_sig = vec![0]),
            FormatError::AuxScriptSigLength(1)
        );
        assert_eq!(
            refused(&|s| s.merged_mining.blocks[0].merkle_branch = vec![[0; 32]; 25]),
            FormatError::AuxMerkleBranchTooLong(25)
        );
    }

    #[test]
    fn header_bytes_round_trip_and_hash_like_a_block() {
        // Litecoin's genesis block header.
        let bytes = hex::decode("010000000000000000000000000000000000000000000000000000000000000000000000d9ced4ed1130f7b7faad9be25323ffafa33232a17c3edf6cfd97bee6bafbdd97b9aa8e4ef0ff0f1ecd513f7c").unwrap();
        let header = BlockHeader::from_bytes(&bytes.clone().try_into().unwrap());
        assert_eq!(header.to_bytes().to_vec(), bytes);
        assert_eq!(header.nonce, 2_084_524_493);
        assert_eq!(
            header.hash().to_string(),
            "12a765e31ffd4059bada1e25190f6e98c99d9714d334efa41a195a7e7e04bfe2"
        );
    }

    #[test]
    fn share_round_trips() {
        let share = sample_share();
        let bytes = share.encode();
        assert_eq!(Share::decode(&bytes).unwrap(), share);
    }

    #[test]
    fn out_of_bounds_fields_are_refused() {
        let mut s = sample_share();
        s.info.uncles.reverse();
        assert!(matches!(
            Share::decode(&s.encode()),
            Err(ShareDecodeError::Format(FormatError::UnclesNotSorted))
        ));
        let mut s = sample_share();
        s.coinbase.script_sig = vec![0; 101];
        assert!(matches!(
            Share::decode(&s.encode()),
            Err(ShareDecodeError::Format(FormatError::ScriptSigLength(101)))
        ));
        let mut s = sample_share();
        s.info.payout_script = vec![0; MAX_SCRIPT_LEN + 1];
        assert!(matches!(
            Share::decode(&s.encode()),
            Err(ShareDecodeError::Format(
                FormatError::NonStandardPayoutScript(35)
            ))
        ));
        let mut s = sample_share();
        s.info.version = 2;
        assert!(matches!(
            Share::decode(&s.encode()),
            Err(ShareDecodeError::Format(FormatError::Version(2)))
        ));
    }

    /// A script of 25 `OP_CHECKMULTISIG`s counts 500 legacy sigops (2,000 of a block's
    /// 80,000 budget) in every block whose window pays it: refused as a payout or fee script,
    /// like anything that is not exactly a standard template.
    #[test]
    fn non_standard_scripts_are_refused() {
        let bomb = vec![0xae; 25];
        for script in [bomb.clone(), vec![0x51], vec![], vec![0x6a, 0x01, 0x00]] {
            let mut s = sample_share();
            s.info.payout_script = script.clone();
            assert!(
                matches!(
                    Share::decode(&s.encode()),
                    Err(ShareDecodeError::Format(
                        FormatError::NonStandardPayoutScript(_)
                    ))
                ),
                "{}",
                hex::encode(&script)
            );
        }
        let mut s = sample_share();
        s.info.fee = Some(OperatorFee {
            basis_points: 100,
            script: bomb,
            aux_script: None,
        });
        assert!(matches!(
            Share::decode(&s.encode()),
            Err(ShareDecodeError::Format(FormatError::NonStandardFeeScript(
                25
            )))
        ));
        // Every standard kind passes, as payout and as fee script.
        for script in [
            crate::script::UNSPENDABLE_SCRIPT.to_vec(),
            [&[0x76, 0xa9, 0x14][..], &[1; 20], &[0x88, 0xac]].concat(),
            [&[0xa9, 0x14][..], &[1; 20], &[0x87]].concat(),
            [&[0x51, 0x20][..], &[1; 32]].concat(),
        ] {
            let mut s = sample_share();
            s.info.payout_script = script.clone();
            s.info.fee = Some(OperatorFee {
                basis_points: 100,
                script,
                aux_script: None,
            });
            assert_eq!(Share::decode(&s.encode()).unwrap(), s);
        }
    }

    proptest! {
        /// The one header serialization is Bitcoin's, field for field (rust-bitcoin's
        /// `block::Header` as the reference), and so is the id.
        #[test]
        fn header_bytes_match_rust_bitcoin(
            version in any::<i32>(),
            prev in any::<[u8; 32]>(),
            root in any::<[u8; 32]>(),
            time in any::<u32>(),
            bits in any::<u32>(),
            nonce in any::<u32>(),
        ) {
            use bitcoin::hashes::Hash;
            let ours = BlockHeader { version, prev_block: prev, merkle_root: root, time, bits, nonce };
            let reference = bitcoin::block::Header {
                version: bitcoin::block::Version::from_consensus(version),
                prev_blockhash: bitcoin::BlockHash::from_byte_array(prev),
                merkle_root: bitcoin::TxMerkleNode::from_byte_array(root),
                time,
                bits: bitcoin::CompactTarget::from_consensus(bits),
                nonce,
            };
            let bytes = bitcoin::consensus::encode::serialize(&reference);
            prop_assert_eq!(ours.to_bytes().to_vec(), bytes.clone());
            prop_assert_eq!(BlockHeader::from_bytes(&ours.to_bytes()), ours.clone());
            prop_assert_eq!(ours.hash().0, reference.block_hash().to_byte_array());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Share::decode(&bytes);
        }

        #[test]
        fn mutated_shares_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = sample_share().encode();
            for (at, value) in flips {
                let n = bytes.len();
                bytes[at % n] = value;
            }
            if let Ok(share) = Share::decode(&bytes) {
                prop_assert_eq!(share.encode(), bytes);
            }
        }
    }
}
