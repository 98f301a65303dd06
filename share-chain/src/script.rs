//! Standard payout scripts: the only scriptPubKeys a share may pay (docs/PROTOCOL.md §3).
//!
//! Every payout and fee script of a share ends up as an output of every block the window
//! pays, so a hostile script could make honest miners' blocks invalid or unrelayable (a
//! script of `OP_CHECKMULTISIG`s pushes the block past the sigop limit; a long one bloats
//! every coinbase). A share may therefore only name one of the five standard templates, in
//! its exact byte pattern, and each template's output size and sigop cost are constants the
//! block assembly can budget with.

/// The standard output templates a share may pay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScriptKind {
    /// `OP_DUP OP_HASH160 <20> OP_EQUALVERIFY OP_CHECKSIG`
    P2pkh,
    /// `OP_HASH160 <20> OP_EQUAL`
    P2sh,
    /// `OP_0 <20>`
    P2wpkh,
    /// `OP_0 <32>`
    P2wsh,
    /// `OP_1 <32>`
    P2tr,
}

/// The longest standard script (P2WSH and P2TR).
pub const MAX_STANDARD_SCRIPT_LEN: usize = 34;

/// `WITNESS_SCALE_FACTOR`: a legacy sigop costs this much of the block's sigop budget.
pub const WITNESS_SCALE_FACTOR: u32 = 4;

/// An output that no one can ever spend: P2WSH of the witness script `OP_RETURN` (`0x6a`),
/// `OP_0 PUSH32 sha256(0x6a)`. Spending it needs a witness script hashing to this value;
/// the one known script fails at its first opcode, and finding another is a SHA-256
/// preimage. It is standard (so a share may carry it, rule of §3) and pays no one: the
/// node puts it in work built before it knows a miner's address.
pub const UNSPENDABLE_SCRIPT: [u8; 34] = [
    0x00, 0x20, 0x18, 0x9f, 0x40, 0x03, 0x4b, 0xe7, 0xa1, 0x99, 0xf1, 0xfa, 0x98, 0x91, 0x66, 0x8e,
    0xe3, 0xab, 0x60, 0x49, 0xf8, 0x2d, 0x38, 0xc6, 0x8b, 0xe7, 0x0f, 0x59, 0x6e, 0xab, 0x2e, 0x18,
    0x57, 0xb7,
];

impl ScriptKind {
    pub const ALL: [ScriptKind; 5] = [
        ScriptKind::P2pkh,
        ScriptKind::P2sh,
        ScriptKind::P2wpkh,
        ScriptKind::P2wsh,
        ScriptKind::P2tr,
    ];

    /// The kind of `script`, or `None` if it is not exactly one of the standard patterns.
    pub fn of(script: &[u8]) -> Option<ScriptKind> {
        match script {
            [0x76, 0xa9, 0x14, hash @ .., 0x88, 0xac] if hash.len() == 20 => {
                Some(ScriptKind::P2pkh)
            }
            [0xa9, 0x14, hash @ .., 0x87] if hash.len() == 20 => Some(ScriptKind::P2sh),
            [0x00, 0x14, program @ ..] if program.len() == 20 => Some(ScriptKind::P2wpkh),
            [0x00, 0x20, program @ ..] if program.len() == 32 => Some(ScriptKind::P2wsh),
            [0x51, 0x20, program @ ..] if program.len() == 32 => Some(ScriptKind::P2tr),
            _ => None,
        }
    }

    /// The scriptPubKey's length in bytes.
    pub const fn script_len(self) -> usize {
        match self {
            ScriptKind::P2pkh => 25,
            ScriptKind::P2sh => 23,
            ScriptKind::P2wpkh => 22,
            ScriptKind::P2wsh | ScriptKind::P2tr => 34,
        }
    }

    /// Bytes of a transaction output paying this kind: 8 (value) + 1 (length varint, every
    /// standard script is under 253 bytes) + the script.
    pub const fn output_size(self) -> usize {
        8 + 1 + self.script_len()
    }

    /// Sigop cost of this output in a coinbase (BIP141 units). Only P2PKH's scriptPubKey
    /// holds a sigop (`OP_CHECKSIG`, one legacy sigop, scaled by [`WITNESS_SCALE_FACTOR`]);
    /// P2SH and witness outputs are counted when spent, never in the block creating them.
    pub const fn sigop_cost(self) -> u32 {
        match self {
            ScriptKind::P2pkh => WITNESS_SCALE_FACTOR,
            _ => 0,
        }
    }
}

/// Whether an aux chain output may pay `script` (docs/PROTOCOL.md §15): P2PKH or P2SH, the
/// only standard templates of a chain without segwit (Dogecoin).
pub fn is_aux_standard(script: &[u8]) -> bool {
    matches!(
        ScriptKind::of(script),
        Some(ScriptKind::P2pkh | ScriptKind::P2sh)
    )
}

/// The aux chain script that pays the holder of parent-chain `script` with the same key, if
/// there is one without asking the miner: a P2PKH pays the same P2PKH, and a P2WPKH the
/// P2PKH of the same key hash (both are spent with the same compressed key).
///
/// A P2SH is **not** mapped: most parent-chain P2SH addresses wrap a segwit program
/// (P2SH-P2WPKH), and on a chain without segwit the same redeem script is spendable by
/// anyone once it has been revealed. P2WSH and P2TR commit to 32 bytes, which no aux
/// template holds. Such miners give their aux address explicitly.
pub fn derived_aux_script(script: &[u8]) -> Option<Vec<u8>> {
    match ScriptKind::of(script)? {
        ScriptKind::P2pkh => Some(script.to_vec()),
        ScriptKind::P2wpkh => {
            let mut out = vec![0x76, 0xa9, 0x14];
            out.extend_from_slice(&script[2..22]);
            out.extend_from_slice(&[0x88, 0xac]);
            Some(out)
        }
        ScriptKind::P2sh | ScriptKind::P2wsh | ScriptKind::P2tr => None,
    }
}

impl std::fmt::Display for ScriptKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScriptKind::P2pkh => "P2PKH",
            ScriptKind::P2sh => "P2SH",
            ScriptKind::P2wpkh => "P2WPKH",
            ScriptKind::P2wsh => "P2WSH",
            ScriptKind::P2tr => "P2TR",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aux_scripts_follow_the_same_key_and_never_a_wrapped_program() {
        let h = [7u8; 20];
        let p2pkh = [&[0x76, 0xa9, 0x14][..], &h, &[0x88, 0xac]].concat();
        let p2wpkh = [&[0x00, 0x14][..], &h].concat();
        let p2sh = [&[0xa9, 0x14][..], &h, &[0x87]].concat();
        assert_eq!(derived_aux_script(&p2pkh), Some(p2pkh.clone()));
        assert_eq!(derived_aux_script(&p2wpkh), Some(p2pkh.clone()));
        assert_eq!(derived_aux_script(&p2sh), None);
        assert_eq!(derived_aux_script(&UNSPENDABLE_SCRIPT), None);
        assert!(is_aux_standard(&p2pkh) && is_aux_standard(&p2sh));
        assert!(!is_aux_standard(&p2wpkh) && !is_aux_standard(&UNSPENDABLE_SCRIPT));
    }
    use bitcoin::hashes::{sha256, Hash};
    use bitcoin::script::witness_program::WitnessProgram;
    use bitcoin::{PubkeyHash, Script, ScriptBuf, ScriptHash, WScriptHash, WitnessVersion};
    use proptest::prelude::*;

    /// One script of each kind, built by rust-bitcoin.
    fn examples() -> Vec<(ScriptKind, ScriptBuf)> {
        let h20 = [7u8; 20];
        let h32 = [9u8; 32];
        vec![
            (
                ScriptKind::P2pkh,
                ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array(h20)),
            ),
            (
                ScriptKind::P2sh,
                ScriptBuf::new_p2sh(&ScriptHash::from_byte_array(h20)),
            ),
            (
                ScriptKind::P2wpkh,
                ScriptBuf::new_witness_program(
                    &WitnessProgram::new(WitnessVersion::V0, &h20).unwrap(),
                ),
            ),
            (
                ScriptKind::P2wsh,
                ScriptBuf::new_p2wsh(&WScriptHash::from_byte_array(h32)),
            ),
            (
                ScriptKind::P2tr,
                ScriptBuf::new_witness_program(
                    &WitnessProgram::new(WitnessVersion::V1, &h32).unwrap(),
                ),
            ),
        ]
    }

    #[test]
    fn classifies_each_standard_kind_with_its_size_and_sigops() {
        for (kind, script) in examples() {
            assert_eq!(ScriptKind::of(script.as_bytes()), Some(kind), "{kind}");
            assert_eq!(script.len(), kind.script_len(), "{kind}");
            let output = bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(1),
                script_pubkey: script.clone(),
            };
            assert_eq!(
                bitcoin::consensus::encode::serialize(&output).len(),
                kind.output_size(),
                "{kind}"
            );
            // rust-bitcoin's legacy (accurate) count, scaled as in a block's sigop cost.
            assert_eq!(
                script.count_sigops_legacy() as u32 * WITNESS_SCALE_FACTOR,
                kind.sigop_cost(),
                "{kind}"
            );
        }
        assert!(ScriptKind::ALL
            .iter()
            .all(|k| k.script_len() <= MAX_STANDARD_SCRIPT_LEN));
    }

    #[test]
    fn refuses_anything_else() {
        let multisig_bomb = vec![0xae; 25]; // OP_CHECKMULTISIG x 25: 500 sigops
        let p2pk =
            hex_script("2102b6a8bfbbf20881eb0278fdb5bb93b3fc12ca1418d5a7e1b490a2e65b662d7461ac");
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x51],             // OP_TRUE
            vec![0x6a, 0x01, 0x00], // OP_RETURN
            multisig_bomb,
            p2pk,
            [&[0x00, 0x14][..], &[1; 19]].concat(), // v0, 19 bytes
            [&[0x00, 0x20][..], &[1; 20]].concat(), // v0 with a wrong push length
            [&[0x51, 0x14][..], &[1; 20]].concat(), // v1 of 20 bytes
            [&[0x52, 0x20][..], &[1; 32]].concat(), // witness v2
            [&[0x60, 0x02][..], &[1; 2]].concat(),  // witness v16
            [&[0x00, 0x14][..], &[1; 20], &[0x00]].concat(), // trailing byte
            [&[0x76, 0xa9, 0x14][..], &[1; 20], &[0x88, 0xad]].concat(), // CHECKSIGVERIFY
        ];
        for script in cases {
            assert_eq!(ScriptKind::of(&script), None, "{}", hex::encode(&script));
        }
    }

    fn hex_script(h: &str) -> Vec<u8> {
        hex::decode(h).unwrap()
    }

    #[test]
    fn unspendable_script_is_p2wsh_of_op_return() {
        let witness_script = Script::from_bytes(&[0x6a]);
        let expected = ScriptBuf::new_p2wsh(&witness_script.wscript_hash());
        assert_eq!(expected.as_bytes(), UNSPENDABLE_SCRIPT);
        assert_eq!(
            &UNSPENDABLE_SCRIPT[2..],
            sha256::Hash::hash(&[0x6a]).as_byte_array()
        );
        assert_eq!(ScriptKind::of(&UNSPENDABLE_SCRIPT), Some(ScriptKind::P2wsh));
    }

    proptest! {
        /// Whatever the bytes, a script is classified exactly when rust-bitcoin sees the same
        /// template (with v1 only as a 32-byte program), and never panics.
        #[test]
        fn agrees_with_rust_bitcoin(script in proptest::collection::vec(any::<u8>(), 0..40)) {
            let s = Script::from_bytes(&script);
            let expected = if s.is_p2pkh() {
                Some(ScriptKind::P2pkh)
            } else if s.is_p2sh() {
                Some(ScriptKind::P2sh)
            } else if s.is_p2wpkh() {
                Some(ScriptKind::P2wpkh)
            } else if s.is_p2wsh() {
                Some(ScriptKind::P2wsh)
            } else if s.is_p2tr() {
                Some(ScriptKind::P2tr)
            } else {
                None
            };
            prop_assert_eq!(ScriptKind::of(&script), expected);
        }

        #[test]
        fn standard_patterns_with_any_hash_are_classified(kind in 0usize..5, fill in any::<[u8; 32]>()) {
            let kind = ScriptKind::ALL[kind];
            let (prefix, suffix, len): (&[u8], &[u8], usize) = match kind {
                ScriptKind::P2pkh => (&[0x76, 0xa9, 0x14], &[0x88, 0xac], 20),
                ScriptKind::P2sh => (&[0xa9, 0x14], &[0x87], 20),
                ScriptKind::P2wpkh => (&[0x00, 0x14], &[], 20),
                ScriptKind::P2wsh => (&[0x00, 0x20], &[], 32),
                ScriptKind::P2tr => (&[0x51, 0x20], &[], 32),
            };
            let script = [prefix, &fill[..len], suffix].concat();
            prop_assert_eq!(ScriptKind::of(&script), Some(kind));
        }
    }
}
