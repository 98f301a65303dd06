//! The auxiliary proof of work: what an aux chain's block carries in place of its own proof.
//!
//! An aux block (Dogecoin) whose header sets the AuxPoW version bit is followed, on the wire,
//! by an [`AuxPow`]: the parent (Litecoin) coinbase, its merkle branch up to the parent
//! header, the aux block's branch in the merged-mining tree, and the parent header whose
//! scrypt hash is the proof. This module encodes it as the daemons do, and checks it with
//! their rules ([`AuxPow::check`], Dogecoin Core's `CAuxPow::check`), so the node can make
//! sure of an aux block before it submits it and tests can replay the daemons' verdicts.

use bitcoin::consensus::encode::{deserialize_partial, serialize, VarInt};
use bitcoin::Transaction;
use thiserror::Error;

use crate::merged_mining::{aux_slot, MERGED_MINING_MAGIC};
use crate::merged_mining::{fold_branch, CommitmentError, MergedMiningCommitment};
use crate::pow::pow_hash;
use crate::share::BlockHeader;
use crate::target::Target;
use crate::PowAlgorithm;

/// Version bit that says an aux block carries an AuxPoW.
pub const VERSION_AUXPOW: i32 = 1 << 8;
/// The chain id sits in the version's upper 16 bits.
pub const VERSION_CHAIN_START: i32 = 1 << 16;
/// Longest chain merkle branch the daemons accept.
pub const MAX_CHAIN_BRANCH: usize = 30;

/// An aux block's version: the daemon's base version with the chain id and the AuxPoW bit.
pub fn aux_block_version(base_version: i32, chain_id: u32) -> i32 {
    (base_version % VERSION_CHAIN_START)
        | (chain_id as i32).wrapping_mul(VERSION_CHAIN_START)
        | VERSION_AUXPOW
}

/// The proof that a parent block's work commits to an aux block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuxPow {
    /// The parent coinbase, serialized without its witness.
    pub coinbase: Transaction,
    /// The parent block's hash (carried, never checked by the daemons).
    pub parent_hash: [u8; 32],
    /// The coinbase's merkle branch in the parent block.
    pub coinbase_branch: Vec<[u8; 32]>,
    /// The coinbase's index in the parent block: 0.
    pub coinbase_index: i32,
    /// The aux block's branch in the merged-mining tree.
    pub chain_branch: Vec<[u8; 32]>,
    /// The aux block's slot in the merged-mining tree.
    pub chain_index: i32,
    pub parent_header: BlockHeader,
}

/// Why an aux daemon would refuse an AuxPoW (the daemon's own words in the messages).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuxPowError {
    #[error("AuxPow is not a generate")]
    NotAGenerate,
    #[error("Aux POW parent has our chain ID")]
    ParentHasOurChainId,
    #[error("Aux POW chain merkle branch too long")]
    ChainBranchTooLong,
    #[error("Aux POW merkle root incorrect")]
    ParentMerkleRoot,
    #[error("Aux POW missing chain merkle root in parent coinbase")]
    MissingRoot,
    #[error("Multiple merged mining headers in coinbase")]
    MultipleHeaders,
    #[error("Merged mining header is not just before chain merkle root")]
    HeaderNotBeforeRoot,
    #[error("Aux POW chain merkle root must start in the first 20 bytes of the parent coinbase")]
    LegacyRootTooLate,
    #[error("Aux POW missing chain merkle tree size and nonce in parent coinbase")]
    MissingSizeAndNonce,
    #[error("Aux POW merkle branch size does not match parent coinbase")]
    SizeMismatch,
    #[error("Aux POW wrong index")]
    WrongIndex,
    #[error("AUX proof of work failed")]
    ProofOfWork,
    #[error("the parent coinbase has no input")]
    NoInput,
}

impl AuxPow {
    /// The daemons' serialization: the coinbase (no witness), the parent hash, the coinbase
    /// branch and index, the chain branch and index, the 80-byte parent header.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut coinbase = self.coinbase.clone();
        for input in &mut coinbase.input {
            input.witness.clear();
        }
        let mut out = serialize(&coinbase);
        out.extend_from_slice(&self.parent_hash);
        push_branch(&mut out, &self.coinbase_branch);
        out.extend_from_slice(&self.coinbase_index.to_le_bytes());
        push_branch(&mut out, &self.chain_branch);
        out.extend_from_slice(&self.chain_index.to_le_bytes());
        out.extend_from_slice(&self.parent_header.to_bytes());
        out
    }

    /// Every rule an aux daemon applies to the AuxPoW of the aux block `aux_hash` (internal
    /// byte order) on chain `chain_id` with block target `aux_target`. `strict_chain_id`:
    /// the aux chain refuses parents carrying its own chain id (Dogecoin's mainnet and
    /// regtest do).
    pub fn check(
        &self,
        aux_hash: &[u8; 32],
        chain_id: u32,
        strict_chain_id: bool,
        aux_target: &Target,
        pow: PowAlgorithm,
    ) -> Result<(), AuxPowError> {
        if self.coinbase_index != 0 {
            return Err(AuxPowError::NotAGenerate);
        }
        if strict_chain_id && (self.parent_header.version >> 16) as u32 == chain_id {
            return Err(AuxPowError::ParentHasOurChainId);
        }
        if self.chain_branch.len() > MAX_CHAIN_BRANCH {
            return Err(AuxPowError::ChainBranchTooLong);
        }
        let mut root = fold_branch(*aux_hash, &self.chain_branch, self.chain_index as u32);
        root.reverse();
        let txid = bitcoin::hashes::Hash::to_byte_array(self.coinbase.compute_txid());
        if fold_branch(txid, &self.coinbase_branch, self.coinbase_index as u32)
            != self.parent_header.merkle_root
        {
            return Err(AuxPowError::ParentMerkleRoot);
        }
        let script = self
            .coinbase
            .input
            .first()
            .ok_or(AuxPowError::NoInput)?
            .script_sig
            .as_bytes();
        let root_at = find(script, &root).ok_or(AuxPowError::MissingRoot)?;
        match MergedMiningCommitment::find_in(script) {
            Err(CommitmentError::Missing) => {
                if root_at > 20 {
                    return Err(AuxPowError::LegacyRootTooLate);
                }
            }
            Err(CommitmentError::Repeated) => return Err(AuxPowError::MultipleHeaders),
            _ => {
                let magic_at = find(script, &MERGED_MINING_MAGIC).unwrap_or(usize::MAX);
                if magic_at.wrapping_add(MERGED_MINING_MAGIC.len()) != root_at {
                    return Err(AuxPowError::HeaderNotBeforeRoot);
                }
            }
        }
        let rest = &script[root_at + 32..];
        if rest.len() < 8 {
            return Err(AuxPowError::MissingSizeAndNonce);
        }
        let size = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let height = self.chain_branch.len() as u32;
        if u64::from(size) != 1u64 << height {
            return Err(AuxPowError::SizeMismatch);
        }
        let nonce = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if self.chain_index as u32 != aux_slot(nonce, chain_id, height) {
            return Err(AuxPowError::WrongIndex);
        }
        if !aux_target.is_met_by(&pow_hash(pow, &self.parent_header.to_bytes())) {
            return Err(AuxPowError::ProofOfWork);
        }
        Ok(())
    }
}

/// An aux block as the daemon's `submitblock` takes it: the header, its AuxPoW, then the
/// transactions (`transactions` already serialized, the coinbase first).
pub fn encode_aux_block(
    header: &BlockHeader,
    auxpow: &AuxPow,
    transactions: &[Vec<u8>],
) -> Vec<u8> {
    let mut out = header.to_bytes().to_vec();
    out.extend(auxpow.to_bytes());
    out.extend(serialize(&VarInt(transactions.len() as u64)));
    for tx in transactions {
        out.extend_from_slice(tx);
    }
    out
}

/// Longest coinbase merkle branch read from a parent block (2^32 transactions).
const MAX_COINBASE_BRANCH: usize = 32;

/// Why an aux block's bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuxBlockDecodeError {
    #[error("the block ends early ({0})")]
    Truncated(&'static str),
    #[error("a {0} is malformed")]
    Malformed(&'static str),
    #[error("a merkle branch of {0} hashes is longer than any valid one")]
    BranchTooLong(u64),
    #[error("the block has no transaction")]
    NoTransaction,
}

/// The start of an aux block as its daemon serializes it (`getblock <hash> 0`): what
/// checking who it pays needs, read without the rest of its transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuxBlockHead {
    pub header: BlockHeader,
    /// Present when the header's version sets [`VERSION_AUXPOW`].
    pub auxpow: Option<AuxPow>,
    /// The aux block's own coinbase.
    pub coinbase: Transaction,
}

impl AuxBlockHead {
    /// Reads the header, the AuxPoW if the version announces one, and the first
    /// transaction. Every length is bounded before it is trusted.
    pub fn decode(bytes: &[u8]) -> Result<AuxBlockHead, AuxBlockDecodeError> {
        let mut reader = Reader { bytes, at: 0 };
        let header = BlockHeader::from_bytes(&reader.array::<80>("header")?);
        let auxpow = if header.version & VERSION_AUXPOW != 0 {
            Some(AuxPow::read(&mut reader)?)
        } else {
            None
        };
        if reader.var_int("transaction count")? == 0 {
            return Err(AuxBlockDecodeError::NoTransaction);
        }
        let coinbase = reader.transaction("coinbase")?;
        Ok(AuxBlockHead {
            header,
            auxpow,
            coinbase,
        })
    }
}

impl AuxPow {
    fn read(reader: &mut Reader<'_>) -> Result<AuxPow, AuxBlockDecodeError> {
        let coinbase = reader.transaction("parent coinbase")?;
        let parent_hash = reader.array::<32>("parent hash")?;
        let coinbase_branch = reader.branch(MAX_COINBASE_BRANCH)?;
        let coinbase_index = i32::from_le_bytes(reader.array::<4>("coinbase index")?);
        let chain_branch = reader.branch(MAX_CHAIN_BRANCH)?;
        let chain_index = i32::from_le_bytes(reader.array::<4>("chain index")?);
        let parent_header = BlockHeader::from_bytes(&reader.array::<80>("parent header")?);
        Ok(AuxPow {
            coinbase,
            parent_hash,
            coinbase_branch,
            coinbase_index,
            chain_branch,
            chain_index,
            parent_header,
        })
    }
}

/// A cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], AuxBlockDecodeError> {
        let slice = self
            .bytes
            .get(self.at..self.at.saturating_add(N))
            .ok_or(AuxBlockDecodeError::Truncated(what))?;
        self.at += N;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn var_int(&mut self, what: &'static str) -> Result<u64, AuxBlockDecodeError> {
        let rest = &self.bytes[self.at..];
        let (VarInt(n), used) = deserialize_partial::<VarInt>(rest).map_err(|_| {
            if rest.is_empty() {
                AuxBlockDecodeError::Truncated(what)
            } else {
                AuxBlockDecodeError::Malformed(what)
            }
        })?;
        self.at += used;
        Ok(n)
    }

    fn branch(&mut self, max: usize) -> Result<Vec<[u8; 32]>, AuxBlockDecodeError> {
        let n = self.var_int("merkle branch")?;
        if n > max as u64 {
            return Err(AuxBlockDecodeError::BranchTooLong(n));
        }
        (0..n).map(|_| self.array::<32>("merkle branch")).collect()
    }

    /// A transaction; rust-bitcoin bounds its allocations by the bytes present.
    fn transaction(&mut self, what: &'static str) -> Result<Transaction, AuxBlockDecodeError> {
        let (tx, used) = deserialize_partial::<Transaction>(&self.bytes[self.at..])
            .map_err(|_| AuxBlockDecodeError::Malformed(what))?;
        self.at += used;
        Ok(tx)
    }
}

fn push_branch(out: &mut Vec<u8>, branch: &[[u8; 32]]) {
    out.extend(serialize(&VarInt(branch.len() as u64)));
    for hash in branch {
        out.extend_from_slice(hash);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
pub(crate) mod vectors {
    //! The AuxPoW vectors recorded from a real Dogecoin Core 1.14.7 and litecoind 0.21.2
    //! (`tests/data/doge_auxpow_vectors.json`; its README says how they were made).

    pub const VECTORS: &str = include_str!("../tests/data/doge_auxpow_vectors.json");

    pub fn cases() -> Vec<serde_json::Value> {
        let all: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        all["cases"].as_array().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::vectors::cases;
    use super::*;

    fn decode(bytes: &[u8]) -> AuxPow {
        let mut reader = Reader { bytes, at: 0 };
        let auxpow = AuxPow::read(&mut reader).unwrap();
        assert_eq!(reader.at, bytes.len(), "every byte read");
        auxpow
    }

    fn display_hash(s: &str) -> [u8; 32] {
        let mut h: [u8; 32] = hex::decode(s).unwrap().try_into().unwrap();
        h.reverse();
        h
    }

    /// Each recorded AuxPoW re-encodes to the bytes the daemon was given, and our check
    /// reaches the daemon's verdict, with the daemon's reason for each refusal.
    #[test]
    fn recorded_auxpows_get_the_daemons_verdict() {
        let mut checked = 0;
        for case in cases() {
            let Some(auxpow_hex) = case["auxpow"].as_str() else {
                continue;
            };
            let name = case["case"].as_str().unwrap();
            let bytes = hex::decode(auxpow_hex).unwrap();
            let auxpow = decode(&bytes);
            assert_eq!(auxpow.to_bytes(), bytes, "{name}: re-encoding");
            let template = &case["createauxblock"];
            let aux_hash = display_hash(template["hash"].as_str().unwrap());
            let chain_id = template["chainid"].as_u64().unwrap() as u32;
            let target_le: [u8; 32] = hex::decode(template["target"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let target = Target::from_u256(ruint::aliases::U256::from_le_bytes(target_le));
            let verdict = auxpow.check(&aux_hash, chain_id, true, &target, PowAlgorithm::Scrypt);
            let accepted = case["submitauxblock"].as_bool().unwrap();
            match (accepted, verdict) {
                (true, Ok(())) => {}
                (false, Err(e)) => {
                    let reason = case["debug_log_reason"].as_str().unwrap();
                    assert!(
                        e.to_string().contains(reason),
                        "{name}: we say {e:?}, the daemon said {reason:?}"
                    );
                }
                (accepted, verdict) => {
                    panic!("{name}: daemon accepted={accepted}, we say {verdict:?}")
                }
            }
            checked += 1;
        }
        assert_eq!(checked, 12);
    }

    /// A recorded AuxPoW inside a block: the head reads back what was encoded, with or
    /// without the AuxPoW, and every cut of the bytes is an error, never a panic.
    #[test]
    fn aux_block_heads_read_back() {
        let case = cases()
            .into_iter()
            .find(|c| c["auxpow"].is_string())
            .unwrap();
        let auxpow = decode(&hex::decode(case["auxpow"].as_str().unwrap()).unwrap());
        let coinbase = crate::coinbase::build_aux_coinbase(
            &[0x01, 0x07],
            &[crate::coinbase::Payout {
                script: vec![0x51],
                amount: 5,
            }],
        );
        let mut header = auxpow.parent_header.clone();
        header.version = aux_block_version(6, 98);
        let bytes = encode_aux_block(&header, &auxpow, &[coinbase.to_bytes(), vec![0xff; 3]]);
        let head = AuxBlockHead::decode(&bytes).unwrap();
        assert_eq!(head.header, header);
        assert_eq!(head.auxpow.as_ref(), Some(&auxpow));
        assert_eq!(&head.coinbase, coinbase.transaction());
        for cut in 0..bytes.len() - 3 {
            assert!(AuxBlockHead::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A plain block (no AuxPoW bit): header, then the transactions.
        header.version = 6;
        let mut plain = header.to_bytes().to_vec();
        plain.push(1);
        plain.extend(coinbase.to_bytes());
        let head = AuxBlockHead::decode(&plain).unwrap();
        assert!(head.auxpow.is_none());
        assert_eq!(&head.coinbase, coinbase.transaction());
        // A branch longer than any valid one is refused before it is read.
        let mut long = bytes[..80].to_vec();
        long.extend(serialize(&auxpow.coinbase));
        long.extend([0u8; 32]);
        long.push(33);
        assert_eq!(
            AuxBlockHead::decode(&long),
            Err(AuxBlockDecodeError::BranchTooLong(33))
        );
    }

    #[test]
    fn aux_versions_carry_the_chain_id_and_the_auxpow_bit() {
        // Dogecoin's template version 6 (its last pre-versionbits version) on chain 98.
        assert_eq!(aux_block_version(6, 98), 0x0062_0106);
        assert_eq!(aux_block_version(0x0062_0006, 98), 0x0062_0106);
    }
}
