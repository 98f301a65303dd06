//! The generation (coinbase) transaction a share commits to.
//!
//! Every node rebuilds a share's coinbase from the share chain (the payouts) and the few
//! bytes peers cannot derive ([`CoinbaseData`]), and must get the same bytes, so the layout
//! is fixed here: version 1, one input with the null prevout, the payouts in the order the
//! payout module gives, then the segwit witness commitment if the block has one, then last
//! the share commitment (an `OP_RETURN` of 32 bytes binding the coinbase to the share).
//! Serialization is rust-bitcoin's.
//!
//! Stratum miners fill in the extranonce themselves, so it is the last bytes of the
//! scriptSig and [`Coinbase::split_for_stratum`] cuts the transaction around it.

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode::{serialize, VarInt};
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use thiserror::Error;

use crate::merged_mining::COMMITMENT_LEN;
use crate::share::CoinbaseData;

/// `OP_RETURN`.
const OP_RETURN: u8 = 0x6a;
/// The BIP 141 witness commitment header.
pub const WITNESS_COMMITMENT_HEADER: [u8; 4] = [0xaa, 0x21, 0xa9, 0xed];

/// One output of the coinbase: who is paid, and how much (in the coin's base unit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payout {
    pub script: Vec<u8>,
    pub amount: u64,
}

/// Why a coinbase cannot be cut for Stratum.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoinbaseError {
    #[error(
        "extranonce of {extranonce_len} bytes is longer than the {script_sig_len}-byte scriptSig"
    )]
    ExtranonceTooLong {
        extranonce_len: usize,
        script_sig_len: usize,
    },
}

/// Appends the minimal push of `n` (Bitcoin Core's `CScript() << n`): `OP_0`, `OP_1`..`OP_16`,
/// or the CScriptNum bytes (little-endian, a sign byte added if the top bit is set).
fn push_script_num(out: &mut Vec<u8>, n: u64) {
    match n {
        0 => out.push(0x00),
        1..=16 => out.push(0x50 + n as u8),
        _ => {
            let mut bytes: Vec<u8> = n.to_le_bytes().to_vec();
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
            if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                bytes.push(0x00);
            }
            // At most 9 bytes: a direct push.
            out.push(bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
    }
}

/// Appends a minimal data push of `data` (direct, `OP_PUSHDATA1`, 2 or 4).
fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    // Data of 4 GiB or more cannot be pushed at all; a scriptSig is at most 100 bytes, so
    // such a tag is cut to what the length field can say (and the result is refused later).
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let data = data.get(..len as usize).unwrap_or(data);
    match len {
        0..=75 => out.push(len as u8),
        76..=0xff => out.extend_from_slice(&[0x4c, len as u8]),
        0x100..=0xffff => {
            out.push(0x4d);
            out.extend_from_slice(&(len as u16).to_le_bytes());
        }
        _ => {
            out.push(0x4e);
            out.extend_from_slice(&len.to_le_bytes());
        }
    }
    out.extend_from_slice(data);
}

/// BIP34 height push (minimal CScriptNum push, as Bitcoin Core's `CScript() << height`),
/// then a push of the 44-byte merged-mining commitment (docs/PROTOCOL.md §15; every share
/// carries one), then a push of `tag` (skip if empty), then the extranonce bytes appended
/// raw (not pushed), so the extranonce is the last bytes of the scriptSig and Stratum can
/// split around it.
///
/// Consensus limits a coinbase scriptSig to 2..=100 bytes; the caller keeps within them
/// (`CoinbaseData` decoding checks them).
pub fn coinbase_script_sig(
    height: u64,
    merged_mining: &[u8; COMMITMENT_LEN],
    tag: &[u8],
    extranonce: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + COMMITMENT_LEN + tag.len() + extranonce.len());
    push_script_num(&mut out, height);
    push_data(&mut out, merged_mining);
    if !tag.is_empty() {
        push_data(&mut out, tag);
    }
    out.extend_from_slice(extranonce);
    out
}

/// An aux block's scriptSig: the BIP34 height push, then a push of `tag`. Aux coinbases need
/// no extranonce: the parent's proof of work varies, not theirs.
pub fn aux_coinbase_script_sig(height: u64, tag: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + tag.len());
    push_script_num(&mut out, height);
    if !tag.is_empty() {
        push_data(&mut out, tag);
    }
    if out.len() < 2 {
        // Consensus wants at least two bytes; a height under 17 pushes one.
        out.push(0x00);
    }
    out
}

/// A built coinbase transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coinbase {
    tx: Transaction,
}

/// Outputs in this order: `payouts` as given (the payout module orders them), then the segwit
/// witness commitment output if `data.witness_commitment` is Some
/// (OP_RETURN, push 36: aa21a9ed || commitment), then LAST the share commitment output
/// (value 0, OP_RETURN, push 32: share_commitment). Version 1, one input with null prevout
/// (32 zero bytes, index 0xffffffff), scriptSig = data.script_sig, sequence 0xffffffff, locktime 0.
/// If a witness commitment is present, the input's witness is one 32-byte zero item (the
/// witness reserved value).
///
/// `data.value` is not checked against the payouts here: the payout module splits it.
pub fn build_coinbase(
    data: &CoinbaseData,
    payouts: &[Payout],
    share_commitment: &[u8; 32],
) -> Coinbase {
    let mut output = Vec::with_capacity(payouts.len() + 2);
    output.extend(payouts.iter().map(|p| TxOut {
        value: Amount::from_sat(p.amount),
        script_pubkey: ScriptBuf::from_bytes(p.script.clone()),
    }));
    let mut witness = Witness::new();
    if let Some(commitment) = &data.witness_commitment {
        let mut script = Vec::with_capacity(38);
        script.extend_from_slice(&[OP_RETURN, 36]);
        script.extend_from_slice(&WITNESS_COMMITMENT_HEADER);
        script.extend_from_slice(commitment);
        output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::from_bytes(script),
        });
        witness.push([0u8; 32]);
    }
    let mut script = Vec::with_capacity(34);
    script.extend_from_slice(&[OP_RETURN, 32]);
    script.extend_from_slice(share_commitment);
    output.push(TxOut {
        value: Amount::ZERO,
        script_pubkey: ScriptBuf::from_bytes(script),
    });
    let tx = Transaction {
        version: Version::ONE,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes(data.script_sig.clone()),
            sequence: Sequence::MAX,
            witness,
        }],
        output,
    };
    Coinbase { tx }
}

/// An aux block's coinbase (docs/PROTOCOL.md §15): version 1, one input with the null
/// prevout, `script_sig` and sequence `0xffffffff`, then `payouts` in the order given, lock
/// time 0, no witness. Nothing else: the aux block's hash, a leaf of the share's
/// merged-mining tree, commits to it.
pub fn build_aux_coinbase(script_sig: &[u8], payouts: &[Payout]) -> Coinbase {
    let tx = Transaction {
        version: Version::ONE,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes(script_sig.to_vec()),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: payouts
            .iter()
            .map(|p| TxOut {
                value: Amount::from_sat(p.amount),
                script_pubkey: ScriptBuf::from_bytes(p.script.clone()),
            })
            .collect(),
    };
    Coinbase { tx }
}

/// The txid of [`build_aux_coinbase`]`(script_sig, payouts)`, hashed straight from the
/// payouts' `(script, amount)`. Checking a share's aux blocks and building a template need only the aux
/// header's hash, and building the transaction to hash it copies every payout script (a
/// few hundred small allocations, which profiles showed cost more than the hashing).
/// The bytes are the legacy serialization `Transaction` encodes for `compute_txid`
/// (checked against it by a test).
pub fn aux_coinbase_txid<'a>(
    script_sig: &[u8],
    payouts: impl ExactSizeIterator<Item = (&'a [u8], u64)>,
) -> [u8; 32] {
    let mut engine = bitcoin::hashes::sha256d::Hash::engine();
    let mut put = |bytes: &[u8]| bitcoin::hashes::HashEngine::input(&mut engine, bytes);
    // Version 1, one input: the null prevout (32 zero bytes, index 0xffffffff).
    put(&1i32.to_le_bytes());
    put(&[1]);
    put(&[0; 32]);
    put(&u32::MAX.to_le_bytes());
    put_compact_size(&mut put, script_sig.len() as u64);
    put(script_sig);
    put(&Sequence::MAX.0.to_le_bytes());
    put_compact_size(&mut put, payouts.len() as u64);
    for (script, amount) in payouts {
        put(&amount.to_le_bytes());
        put_compact_size(&mut put, script.len() as u64);
        put(script);
    }
    // Lock time 0.
    put(&0u32.to_le_bytes());
    bitcoin::hashes::sha256d::Hash::from_engine(engine).to_byte_array()
}

/// Bitcoin's CompactSize encoding of `n`, as `VarInt` serializes it.
fn put_compact_size(put: &mut impl FnMut(&[u8]), n: u64) {
    match n {
        0..=0xfc => put(&[n as u8]),
        0xfd..=0xffff => {
            put(&[0xfd]);
            put(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            put(&[0xfe]);
            put(&(n as u32).to_le_bytes());
        }
        _ => {
            put(&[0xff]);
            put(&n.to_le_bytes());
        }
    }
}

impl Coinbase {
    /// The transaction itself.
    pub fn transaction(&self) -> &Transaction {
        &self.tx
    }

    /// sha256d of the non-witness serialization, in internal byte order.
    pub fn txid(&self) -> [u8; 32] {
        self.tx.compute_txid().to_byte_array()
    }

    /// The serialization with witness (for the block), if any.
    pub fn to_bytes(&self) -> Vec<u8> {
        serialize(&self.tx)
    }

    /// The serialization without witness (what the txid hashes and Stratum sends).
    pub fn to_bytes_without_witness(&self) -> Vec<u8> {
        // The legacy layout field by field, as `compute_txid` hashes it: encoding the inputs
        // on their own leaves out the witness and its marker.
        let mut out = serialize(&self.tx.version);
        out.extend(serialize(&self.tx.input));
        out.extend(serialize(&self.tx.output));
        out.extend(serialize(&self.tx.lock_time));
        out
    }

    /// Stratum's coinb1/coinb2: the non-witness serialization split around the last
    /// `extranonce_len` bytes of the scriptSig (coinb1 ends just before them, coinb2 starts
    /// right after). Error if the scriptSig is shorter than extranonce_len.
    pub fn split_for_stratum(
        &self,
        extranonce_len: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), CoinbaseError> {
        let script_sig_len = self
            .tx
            .input
            .first()
            .map(|input| input.script_sig.len())
            .unwrap_or(0);
        let too_long = CoinbaseError::ExtranonceTooLong {
            extranonce_len,
            script_sig_len,
        };
        if extranonce_len > script_sig_len {
            return Err(too_long);
        }
        // version, input count, prevout (32 + 4), scriptSig length, then the scriptSig.
        let script_start = serialize(&self.tx.version).len()
            + VarInt(self.tx.input.len() as u64).size()
            + 36
            + VarInt(script_sig_len as u64).size();
        let cut = script_start + script_sig_len - extranonce_len;
        let resume = script_start + script_sig_len;
        let bytes = self.to_bytes_without_witness();
        match (bytes.get(..cut), bytes.get(resume..)) {
            (Some(coinb1), Some(coinb2)) => Ok((coinb1.to_vec(), coinb2.to_vec())),
            _ => Err(too_long),
        }
    }

    /// Block weight units (4 × non-witness size + witness size).
    pub fn weight(&self) -> u64 {
        self.tx.weight().to_wu()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::script::Builder;
    use proptest::prelude::*;

    proptest! {
        /// The aux coinbase's txid hashed straight from the payouts is the built
        /// transaction's, across every CompactSize width the lengths reach.
        #[test]
        fn aux_coinbase_txid_is_the_built_transactions(
            script_sig in proptest::collection::vec(any::<u8>(), 0..300),
            payouts in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..300), any::<u64>()),
                0..300,
            ),
        ) {
            let payouts: Vec<Payout> = payouts
                .into_iter()
                .map(|(script, amount)| Payout { script, amount })
                .collect();
            let borrowed = payouts.iter().map(|p| (p.script.as_slice(), p.amount));
            prop_assert_eq!(
                aux_coinbase_txid(&script_sig, borrowed),
                build_aux_coinbase(&script_sig, &payouts).txid()
            );
        }
    }

    #[test]
    fn compact_size_is_varints() {
        for n in [
            0,
            0xfc,
            0xfd,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_compact_size(&mut |b: &[u8]| out.extend_from_slice(b), n);
            assert_eq!(out, serialize(&VarInt(n)), "{n}");
        }
    }

    fn p2wpkh(i: u32) -> Vec<u8> {
        let mut s = vec![0x00, 0x14];
        s.extend_from_slice(&[i as u8; 16]);
        s.extend_from_slice(&i.to_le_bytes());
        s
    }

    #[test]
    fn script_sig_layout() {
        let mm = [0xab; COMMITMENT_LEN];
        let pushed_mm = [&[0x2c][..], &mm].concat();
        // Heights 1..=16 are OP_N, as `CScript() << height` gives.
        let with = |height: &[u8], rest: &[u8]| [height, &pushed_mm, rest].concat();
        assert_eq!(
            coinbase_script_sig(1, &mm, b"", &[0xee]),
            with(&[0x51], &[0xee])
        );
        assert_eq!(coinbase_script_sig(16, &mm, b"", &[]), with(&[0x60], &[]));
        assert_eq!(
            coinbase_script_sig(17, &mm, b"", &[]),
            with(&[0x01, 0x11], &[])
        );
        // 128 needs a sign byte.
        assert_eq!(
            coinbase_script_sig(128, &mm, b"", &[]),
            with(&[0x02, 0x80, 0x00], &[])
        );
        // Litecoin mainnet block 2,500,000 = 0x2625a0.
        assert_eq!(
            coinbase_script_sig(2_500_000, &mm, b"/p2pool-rs/", &[1, 2, 3, 4]),
            with(
                &[0x03, 0xa0, 0x25, 0x26],
                &[&[11][..], b"/p2pool-rs/", &[1, 2, 3, 4]].concat()
            )
        );
        let tag = [7u8; 40];
        let s = coinbase_script_sig(300, &mm, &tag, &[]);
        assert_eq!(&s[48..50], &[40, 7]);
        assert_eq!(s.len(), 3 + 45 + 41);
        // Aux coinbases: height and tag, at least two bytes.
        assert_eq!(aux_coinbase_script_sig(1, b""), vec![0x51, 0x00]);
        assert_eq!(
            aux_coinbase_script_sig(17, b"x"),
            vec![0x01, 0x11, 0x01, b'x']
        );
    }

    /// The small case built by `small()`, checked by decoding both serializations with
    /// Litecoin Core 0.21.2.1's `decoderawtransaction` (regtest): version 1, locktime 0, one
    /// input with `coinbase` "0370110102747401020304" (height 70000, push "tt", extranonce
    /// 01020304), sequence 4294967295, `txinwitness` [32 zero bytes]; outputs 12.5 LTC to
    /// `0014` + 20×0x11 (witness_v0_keyhash), 0 to `6a24aa21a9ed` + 32×0x22, 0 to `6a20` +
    /// 32×0x33 (both nulldata). litecoind reported txid `SMALL_TXID` for both, size 219 and weight
    /// 768 with the witness, size 183 without.
    const SMALL_WITH_WITNESS: &str = "010000000001010000000000000000000000000000000000000000000000000000000000000000ffffffff0b0370110102747401020304ffffffff03807c814a0000000016001411111111111111111111111111111111111111110000000000000000266a24aa21a9ed22222222222222222222222222222222222222222222222222222222222222220000000000000000226a2033333333333333333333333333333333333333333333333333333333333333330120000000000000000000000000000000000000000000000000000000000000000000000000";
    const SMALL_WITHOUT_WITNESS: &str = "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff0b0370110102747401020304ffffffff03807c814a0000000016001411111111111111111111111111111111111111110000000000000000266a24aa21a9ed22222222222222222222222222222222222222222222222222222222222222220000000000000000226a20333333333333333333333333333333333333333333333333333333333333333300000000";
    const SMALL_TXID: &str = "9f5c623691f2f3296182661a951bbd6df36afed092721be14e4c97a04d100057";

    fn small() -> Coinbase {
        let data = CoinbaseData {
            // Height 70000, push "tt", extranonce 01020304 (the layout before merged mining:
            // litecoind decoded exactly these bytes).
            script_sig: hex::decode("0370110102747401020304").unwrap(),
            value: 1_250_000_000,
            witness_commitment: Some([0x22; 32]),
        };
        let mut script = vec![0x00, 0x14];
        script.extend([0x11; 20]);
        build_coinbase(
            &data,
            &[Payout {
                script,
                amount: 1_250_000_000,
            }],
            &[0x33; 32],
        )
    }

    #[test]
    fn small_case_matches_litecoind() {
        let cb = small();
        assert_eq!(hex::encode(cb.to_bytes()), SMALL_WITH_WITNESS);
        assert_eq!(
            hex::encode(cb.to_bytes_without_witness()),
            SMALL_WITHOUT_WITNESS
        );
        let mut txid = cb.txid();
        txid.reverse();
        assert_eq!(hex::encode(txid), SMALL_TXID);
        assert_eq!(cb.weight(), 768);
    }

    #[test]
    fn stratum_split_reassembles() {
        let cb = small();
        let (coinb1, coinb2) = cb.split_for_stratum(4).unwrap();
        let joined = [coinb1.clone(), vec![1, 2, 3, 4], coinb2.clone()].concat();
        assert_eq!(joined, cb.to_bytes_without_witness());
        // coinb1 ends with the tag push, coinb2 starts with the sequence.
        assert!(coinb1.ends_with(b"\x02tt"));
        assert!(coinb2.starts_with(&[0xff; 4]));
        // Zero-length extranonce: the whole scriptSig is in coinb1; the whole scriptSig
        // as extranonce: coinb1 ends with its length byte.
        let (c1, _) = cb.split_for_stratum(11).unwrap();
        assert!(c1.ends_with(&[0xff, 0xff, 0xff, 0xff, 11]));
        let (c1, c2) = cb.split_for_stratum(0).unwrap();
        assert_eq!([c1, c2].concat(), cb.to_bytes_without_witness());
        assert_eq!(
            cb.split_for_stratum(12),
            Err(CoinbaseError::ExtranonceTooLong {
                extranonce_len: 12,
                script_sig_len: 11
            })
        );
    }

    #[test]
    fn without_witness_commitment_has_no_witness() {
        let data = CoinbaseData {
            script_sig: coinbase_script_sig(200, &[0; COMMITMENT_LEN], b"", &[0; 8]),
            value: 5_000,
            witness_commitment: None,
        };
        let cb = build_coinbase(
            &data,
            &[Payout {
                script: p2wpkh(1),
                amount: 5_000,
            }],
            &[9; 32],
        );
        assert_eq!(cb.to_bytes(), cb.to_bytes_without_witness());
        assert_eq!(cb.transaction().output.len(), 2);
        assert_eq!(cb.weight(), 4 * cb.to_bytes().len() as u64);
    }

    #[test]
    fn thousand_outputs_fit() {
        let payouts: Vec<Payout> = (0..1000)
            .map(|i| Payout {
                script: p2wpkh(i),
                amount: 100_000 + u64::from(i),
            })
            .collect();
        let data = CoinbaseData {
            script_sig: coinbase_script_sig(
                3_000_000,
                &[0; COMMITMENT_LEN],
                b"/p2pool-rs/",
                &[0; 8],
            ),
            value: 625_000_000,
            witness_commitment: Some([5; 32]),
        };
        let cb = build_coinbase(&data, &payouts, &[6; 32]);
        let size = cb.to_bytes().len();
        let weight = cb.weight();
        assert!(size <= 40_000, "size {size}");
        assert!(weight <= 4 * 40_000, "weight {weight}");
        assert_eq!(cb.transaction().output.len(), 1002);
        // By hand: 1000 P2WPKH outputs of 8 + 1 + 22 bytes = 31,000; witness commitment
        // 8 + 1 + 38 = 47; share commitment 8 + 1 + 34 = 43; output count 3 (over 252);
        // version 4, input count 1, prevout 36, scriptSig 1 + 24 (height 4, tag 12,
        // extranonce 8), sequence 4, locktime 4: 31,167 without witness. The witness adds
        // marker and flag 2 and one 32-byte item 1 + 1 + 32.
        // 31,167 bytes before merged mining, plus the pushed 44-byte commitment.
        assert_eq!(cb.to_bytes_without_witness().len(), 31_212);
        assert_eq!(size, 31_212 + 36);
        assert_eq!(weight, 4 * 31_212 + 36);
    }

    proptest! {
        #[test]
        fn height_push_matches_rust_bitcoin(height in 0u64..=i64::MAX as u64) {
            let mm = [0x5a; COMMITMENT_LEN];
            let ours = coinbase_script_sig(height, &mm, b"", b"");
            let theirs = Builder::new().push_int(height as i64).push_slice(mm).into_script().into_bytes();
            prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn tag_push_matches_rust_bitcoin(tag in proptest::collection::vec(any::<u8>(), 1..300)) {
            let mm = [0x5a; COMMITMENT_LEN];
            let ours = coinbase_script_sig(17, &mm, &tag, b"");
            let push = bitcoin::script::PushBytesBuf::try_from(tag).unwrap();
            let theirs = Builder::new().push_int(17).push_slice(mm).push_slice(push).into_script().into_bytes();
            prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn consistent_with_rust_bitcoin(
            height in 17u64..10_000_000,
            tag in proptest::collection::vec(any::<u8>(), 0..20),
            extranonce in proptest::collection::vec(any::<u8>(), 0..16),
            amounts in proptest::collection::vec(0u64..8_400_000_000_000_000, 0..40),
            witness in proptest::option::of(any::<[u8; 32]>()),
            commitment in any::<[u8; 32]>(),
        ) {
            let data = CoinbaseData {
                script_sig: coinbase_script_sig(height, &[0x5a; COMMITMENT_LEN], &tag, &extranonce),
                value: amounts.iter().sum(),
                witness_commitment: witness,
            };
            let payouts: Vec<Payout> = amounts
                .iter()
                .enumerate()
                .map(|(i, &amount)| Payout { script: p2wpkh(i as u32), amount })
                .collect();
            let cb = build_coinbase(&data, &payouts, &commitment);
            // txid: rust-bitcoin's over the decoded bytes and sha256d of the legacy bytes.
            let decoded: Transaction = bitcoin::consensus::deserialize(&cb.to_bytes()).unwrap();
            prop_assert_eq!(cb.txid(), decoded.compute_txid().to_byte_array());
            prop_assert_eq!(cb.txid(), crate::hash::sha256d(&cb.to_bytes_without_witness()));
            prop_assert!(decoded.is_coinbase());
            // Output order: payouts, witness commitment, share commitment last.
            let outs = &decoded.output;
            prop_assert_eq!(outs.len(), payouts.len() + 1 + usize::from(witness.is_some()));
            let last = outs.last().unwrap().script_pubkey.as_bytes();
            prop_assert_eq!(last, &[&[0x6a, 0x20][..], &commitment].concat()[..]);
            if let Some(w) = witness {
                let wc = outs[outs.len() - 2].script_pubkey.as_bytes();
                prop_assert_eq!(wc, &[&[0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed][..], &w].concat()[..]);
                prop_assert_eq!(decoded.input[0].witness.to_vec(), vec![vec![0u8; 32]]);
            }
            // The Stratum split puts the extranonce back where it was.
            let (c1, c2) = cb.split_for_stratum(extranonce.len()).unwrap();
            prop_assert_eq!([c1, extranonce.clone(), c2].concat(), cb.to_bytes_without_witness());
        }
    }
}
