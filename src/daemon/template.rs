//! Block templates from the daemon's `getblocktemplate`.
//!
//! The node builds every block (and so every share) on a template: the previous block, the
//! transactions to include, the coinbase value, the target. Litecoin 0.21 must be asked
//! with `{"rules":["mweb","segwit"]}`; after MWEB activation the template also carries the
//! MWEB extension block (`mweb`, hex) and ends with the HogEx ("integrating") transaction.
//!
//! Transactions are kept as **opaque bytes** (`data`) and in the template's order. They are
//! never decoded and re-serialized: rust-bitcoin cannot even parse a HogEx (its flag byte is
//! 0x08), and a re-encoded transaction that differs by one byte makes the block invalid.
//!
//! Parsing is defensive: every size is bounded, every field is checked for type and range,
//! and a malformed template is a [`TemplateError`], never a panic.

use ruint::aliases::U256;
use serde::Deserialize;
use serde_json::Value;
use share_chain::Target;
use thiserror::Error;

/// Most transactions a template may list. A 4 MWU block holds at most ~16,700 of the
/// smallest possible transactions (60 bytes × 4 WU).
pub const MAX_TEMPLATE_TRANSACTIONS: usize = 20_000;

/// Most bytes of transaction data in a template: a block's serialized size (without the
/// MWEB extension) is at most 4,000,000 bytes.
pub const MAX_TEMPLATE_TX_BYTES: usize = 4_000_000;

/// Most bytes of MWEB extension block. MWEB blocks are bounded at 200,000 MWEB weight, about
/// 11,000 outputs of ~860 bytes each; 16 MiB is comfortably above that.
pub const MAX_MWEB_BYTES: usize = 16 * 1024 * 1024;

/// Longest long-poll id kept (litecoind's is 64 hex digits and a counter).
pub const MAX_LONGPOLL_ID_LEN: usize = 1024;

/// Most `rules` entries kept, and the longest one.
const MAX_RULES: usize = 64;
const MAX_RULE_LEN: usize = 64;

/// The witness commitment script prefix: `OP_RETURN`, push 36, `0xaa21a9ed` (BIP141).
pub const WITNESS_COMMITMENT_PREFIX: [u8; 6] = [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    #[error("template is not the expected JSON shape: {0}")]
    Shape(String),
    #[error("field {field}: bad hex: {reason}")]
    Hex { field: &'static str, reason: String },
    #[error("field {field}: value {value} out of range")]
    OutOfRange { field: &'static str, value: String },
    #[error("{what}: {size} exceeds the limit of {max}")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    #[error("target {target} does not match bits {bits:#010x}")]
    TargetMismatch { target: String, bits: u32 },
    #[error("default_witness_commitment is not a BIP141 commitment script: {0}")]
    WitnessCommitment(String),
    #[error("HogEx placement: {0}")]
    HogEx(String),
}

/// The BIP141 witness commitment the coinbase must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessCommitment {
    /// The whole output script (`6a24aa21a9ed` || commitment), as the template gives it.
    pub script: Vec<u8>,
    /// The 32-byte commitment inside it.
    pub commitment: [u8; 32],
}

/// One template transaction, carried as opaque bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateTransaction {
    /// The serialized transaction exactly as the template gives it; goes into the block as is.
    pub data: Vec<u8>,
    /// Transaction id, internal byte order (what the merkle tree hashes).
    pub txid: [u8; 32],
    /// Witness transaction id (`hash` in the template), internal byte order.
    pub wtxid: [u8; 32],
    /// Fee in the coin's base unit.
    pub fee: u64,
    /// Weight in weight units.
    pub weight: u64,
    /// Signature operations, if the template gives them.
    pub sigops: Option<u64>,
    /// 1-based indexes of earlier template transactions this one spends.
    pub depends: Vec<u32>,
}

impl TemplateTransaction {
    /// Whether this is Litecoin's HogEx: extended serialization (marker 0x00 after the
    /// version) with the HogEx flag bit 0x08 set.
    pub fn is_hogex(&self) -> bool {
        matches!(self.data.get(4..6), Some([0x00, flag]) if flag & 0x08 != 0)
    }
}

/// A parsed `getblocktemplate` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockTemplate {
    /// Block version for the header (an `int32` on the wire, kept as its bits).
    pub version: u32,
    /// The block to build on, internal byte order (as in the header).
    pub previous_block_hash: [u8; 32],
    /// Transactions after the coinbase, in the template's order; a HogEx, if any, is last.
    pub transactions: Vec<TemplateTransaction>,
    /// Subsidy plus all fees, the most the coinbase may pay out.
    pub coinbase_value: u64,
    /// The block target.
    pub target: Target,
    /// The block target in compact form, for the header.
    pub bits: u32,
    pub cur_time: u32,
    pub min_time: u32,
    /// Height of the block to build.
    pub height: u32,
    /// The witness commitment for the coinbase, if the template has segwit transactions
    /// (litecoind always sends one).
    pub default_witness_commitment: Option<WitnessCommitment>,
    /// The MWEB extension block, serialized (`mw::Block`), after MWEB activation.
    pub mweb: Option<Vec<u8>>,
    /// Id to pass back for a long poll.
    pub longpoll_id: Option<String>,
    /// The rules the daemon applied (e.g. `csv`, `!segwit`, `taproot`, `mweb`).
    pub rules: Vec<String>,
    /// Block weight limit, if given.
    pub weight_limit: Option<u64>,
    /// Block sigop limit, if given.
    pub sigop_limit: Option<u64>,
}

#[derive(Deserialize)]
struct RawTemplate {
    version: i64,
    previousblockhash: String,
    transactions: Vec<RawTransaction>,
    coinbasevalue: u64,
    target: String,
    bits: String,
    curtime: u64,
    mintime: u64,
    height: u64,
    #[serde(default)]
    default_witness_commitment: Option<String>,
    #[serde(default)]
    mweb: Option<String>,
    #[serde(default)]
    longpollid: Option<String>,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    weightlimit: Option<u64>,
    #[serde(default)]
    sigoplimit: Option<u64>,
}

#[derive(Deserialize)]
struct RawTransaction {
    data: String,
    txid: String,
    hash: String,
    fee: u64,
    weight: u64,
    #[serde(default)]
    sigops: Option<u64>,
    #[serde(default)]
    depends: Vec<u64>,
}

impl BlockTemplate {
    /// Parses and checks a `getblocktemplate` result.
    pub fn from_json(value: Value) -> Result<Self, TemplateError> {
        let raw: RawTemplate =
            serde_json::from_value(value).map_err(|e| TemplateError::Shape(e.to_string()))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawTemplate) -> Result<Self, TemplateError> {
        let version = u32::try_from(raw.version)
            .ok()
            .or_else(|| i32::try_from(raw.version).ok().map(|v| v as u32))
            .ok_or_else(|| out_of_range("version", raw.version))?;
        let previous_block_hash = display_hash("previousblockhash", &raw.previousblockhash)?;

        if raw.transactions.len() > MAX_TEMPLATE_TRANSACTIONS {
            return Err(TemplateError::TooLarge {
                what: "transaction count",
                size: raw.transactions.len(),
                max: MAX_TEMPLATE_TRANSACTIONS,
            });
        }
        let count = raw.transactions.len();
        let mut total_bytes = 0usize;
        let mut transactions = Vec::with_capacity(count);
        for tx in raw.transactions {
            let data = bounded_hex("transactions[].data", &tx.data, MAX_TEMPLATE_TX_BYTES)?;
            total_bytes = total_bytes.saturating_add(data.len());
            if total_bytes > MAX_TEMPLATE_TX_BYTES {
                return Err(TemplateError::TooLarge {
                    what: "transaction bytes",
                    size: total_bytes,
                    max: MAX_TEMPLATE_TX_BYTES,
                });
            }
            let depends = tx
                .depends
                .iter()
                .map(|&d| {
                    u32::try_from(d)
                        .ok()
                        .filter(|&d| d >= 1 && (d as usize) <= count)
                        .ok_or_else(|| out_of_range("transactions[].depends", d))
                })
                .collect::<Result<Vec<_>, _>>()?;
            transactions.push(TemplateTransaction {
                data,
                txid: display_hash("transactions[].txid", &tx.txid)?,
                wtxid: display_hash("transactions[].hash", &tx.hash)?,
                fee: tx.fee,
                weight: tx.weight,
                sigops: tx.sigops,
                depends,
            });
        }

        let bits_vec = bounded_hex("bits", &raw.bits, 4)?;
        let bits_bytes: [u8; 4] = bits_vec
            .try_into()
            .map_err(|_| out_of_range("bits", &raw.bits))?;
        let bits = u32::from_be_bytes(bits_bytes);
        let target_bytes: [u8; 32] = bounded_hex("target", &raw.target, 32)?
            .try_into()
            .map_err(|_| out_of_range("target", &raw.target))?;
        let target = Target::from_u256(U256::from_be_bytes(target_bytes));
        // The header carries `bits`; a target that says otherwise would make us grind for
        // the wrong thing, so the two must agree.
        match Target::from_compact(bits) {
            Ok(from_bits) if from_bits == target => {}
            _ => {
                return Err(TemplateError::TargetMismatch {
                    target: raw.target,
                    bits,
                })
            }
        }

        let default_witness_commitment = raw
            .default_witness_commitment
            .as_deref()
            .map(parse_witness_commitment)
            .transpose()?;
        let mweb = raw
            .mweb
            .as_deref()
            .map(|m| bounded_hex("mweb", m, MAX_MWEB_BYTES))
            .transpose()?;
        if let Some(id) = &raw.longpollid {
            if id.len() > MAX_LONGPOLL_ID_LEN {
                return Err(TemplateError::TooLarge {
                    what: "longpollid",
                    size: id.len(),
                    max: MAX_LONGPOLL_ID_LEN,
                });
            }
        }
        if raw.rules.len() > MAX_RULES || raw.rules.iter().any(|r| r.len() > MAX_RULE_LEN) {
            return Err(TemplateError::TooLarge {
                what: "rules",
                size: raw.rules.len(),
                max: MAX_RULES,
            });
        }

        check_hogex(&transactions, mweb.is_some())?;

        Ok(BlockTemplate {
            version,
            previous_block_hash,
            transactions,
            coinbase_value: raw.coinbasevalue,
            target,
            bits,
            cur_time: u32::try_from(raw.curtime)
                .map_err(|_| out_of_range("curtime", raw.curtime))?,
            min_time: u32::try_from(raw.mintime)
                .map_err(|_| out_of_range("mintime", raw.mintime))?,
            height: u32::try_from(raw.height).map_err(|_| out_of_range("height", raw.height))?,
            default_witness_commitment,
            mweb,
            longpoll_id: raw.longpollid,
            rules: raw.rules,
            weight_limit: raw.weightlimit,
            sigop_limit: raw.sigoplimit,
        })
    }

    /// The txids of the template's transactions, in block order (the coinbase's comes first
    /// in the merkle tree and is not among them).
    pub fn txids(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.transactions.iter().map(|tx| &tx.txid)
    }

    /// Sum of the template transactions' fees.
    pub fn total_fees(&self) -> u64 {
        self.transactions
            .iter()
            .fold(0u64, |sum, tx| sum.saturating_add(tx.fee))
    }

    /// Whether blocks built on this template carry an MWEB extension block.
    pub fn has_mweb(&self) -> bool {
        self.mweb.is_some()
    }
}

/// With MWEB the HogEx must be the last transaction, and there is exactly one; without it
/// there is none.
fn check_hogex(transactions: &[TemplateTransaction], has_mweb: bool) -> Result<(), TemplateError> {
    let hogex_positions: Vec<usize> = transactions
        .iter()
        .enumerate()
        .filter(|(_, tx)| tx.is_hogex())
        .map(|(i, _)| i)
        .collect();
    match (has_mweb, hogex_positions.as_slice()) {
        (false, []) => Ok(()),
        (false, _) => Err(TemplateError::HogEx(
            "a HogEx transaction without an MWEB block".into(),
        )),
        (true, [last]) if *last + 1 == transactions.len() => Ok(()),
        (true, []) => Err(TemplateError::HogEx(
            "an MWEB block without a HogEx transaction".into(),
        )),
        (true, positions) => Err(TemplateError::HogEx(format!(
            "HogEx at positions {positions:?} of {}, must be exactly one, last",
            transactions.len()
        ))),
    }
}

fn parse_witness_commitment(script_hex: &str) -> Result<WitnessCommitment, TemplateError> {
    let script = bounded_hex("default_witness_commitment", script_hex, 38)?;
    let commitment = script
        .strip_prefix(&WITNESS_COMMITMENT_PREFIX)
        .and_then(|rest| <[u8; 32]>::try_from(rest).ok())
        .ok_or_else(|| TemplateError::WitnessCommitment(script_hex.to_owned()))?;
    Ok(WitnessCommitment { script, commitment })
}

fn out_of_range(field: &'static str, value: impl ToString) -> TemplateError {
    TemplateError::OutOfRange {
        field,
        value: value.to_string(),
    }
}

/// Decodes hex after checking that it decodes to at most `max` bytes.
fn bounded_hex(field: &'static str, text: &str, max: usize) -> Result<Vec<u8>, TemplateError> {
    if text.len() / 2 > max {
        return Err(TemplateError::TooLarge {
            what: field,
            size: text.len() / 2,
            max,
        });
    }
    hex::decode(text).map_err(|e| TemplateError::Hex {
        field,
        reason: e.to_string(),
    })
}

/// A hash in display order (byte-reversed hex) to internal order.
fn display_hash(field: &'static str, text: &str) -> Result<[u8; 32], TemplateError> {
    let mut bytes: [u8; 32] = bounded_hex(field, text, 32)?
        .try_into()
        .map_err(|_| out_of_range(field, text))?;
    bytes.reverse();
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PREV: &str = "196884819450b18568ae2cbe42618e0c6ca9f253d41542d4827f7963b8327596";
    // A HogEx: version 2, marker 0x00, flag 0x08 (trimmed: the parser never decodes it).
    const HOGEX: &str = "0200000000080100";

    /// A template shaped like litecoind 0.21's regtest answer at the MWEB activation height.
    fn sample() -> Value {
        json!({
            "capabilities": ["proposal"],
            "version": 536870912,
            "rules": ["csv", "!segwit", "taproot", "mweb"],
            "previousblockhash": PREV,
            "transactions": [
                {"data": "0200000001aa", "txid": "11".repeat(32), "hash": "22".repeat(32),
                 "depends": [], "fee": 5530, "sigops": 1, "weight": 485},
                {"data": HOGEX, "txid": "33".repeat(32), "hash": "33".repeat(32),
                 "depends": [1], "fee": 0, "sigops": 0, "weight": 376}
            ],
            "coinbaseaux": {},
            "coinbasevalue": 1250006940u64,
            "longpollid": format!("{PREV}436"),
            "target": "7fffff0000000000000000000000000000000000000000000000000000000000",
            "mintime": 1795365165u64,
            "mutable": ["time", "transactions", "prevblock"],
            "noncerange": "00000000ffffffff",
            "sigoplimit": 80000,
            "sizelimit": 4000000,
            "weightlimit": 4000000,
            "curtime": 1795365165u64,
            "bits": "207fffff",
            "height": 432,
            "default_witness_commitment": format!("6a24aa21a9ed{}", "ab".repeat(32)),
            "mweb": "8230f3cbfe"
        })
    }

    #[test]
    fn parses_a_litecoind_template() {
        let t = BlockTemplate::from_json(sample()).unwrap();
        assert_eq!(t.version, 0x2000_0000);
        let mut prev = hex::decode(PREV).unwrap();
        prev.reverse();
        assert_eq!(t.previous_block_hash.to_vec(), prev);
        assert_eq!(t.transactions.len(), 2);
        assert_eq!(t.transactions[0].data, hex::decode("0200000001aa").unwrap());
        assert_eq!(t.transactions[0].fee, 5530);
        assert_eq!(t.transactions[1].depends, vec![1]);
        assert!(!t.transactions[0].is_hogex());
        assert!(t.transactions[1].is_hogex());
        assert_eq!(t.coinbase_value, 1_250_006_940);
        assert_eq!(t.bits, 0x207f_ffff);
        assert_eq!(t.target, Target::from_compact(0x207f_ffff).unwrap());
        assert_eq!(t.height, 432);
        assert_eq!(t.cur_time, 1_795_365_165);
        let wc = t.default_witness_commitment.as_ref().unwrap();
        assert_eq!(wc.commitment, [0xab; 32]);
        assert_eq!(wc.script.len(), 38);
        assert_eq!(
            t.mweb.as_deref(),
            Some(&hex::decode("8230f3cbfe").unwrap()[..])
        );
        assert_eq!(t.total_fees(), 5530);
        assert_eq!(t.weight_limit, Some(4_000_000));
        assert!(t.rules.iter().any(|r| r == "mweb"));
    }

    #[test]
    fn negative_version_is_kept_as_its_bits() {
        let mut v = sample();
        v["version"] = json!(-1);
        assert_eq!(BlockTemplate::from_json(v).unwrap().version, u32::MAX);
        let mut v = sample();
        v["version"] = json!(1u64 << 40);
        assert!(matches!(
            BlockTemplate::from_json(v),
            Err(TemplateError::OutOfRange { .. })
        ));
    }

    #[test]
    fn refuses_malformed_fields() {
        let cases: Vec<(&str, Value)> = vec![
            ("previousblockhash", json!("00")),
            ("previousblockhash", json!(5)),
            ("bits", json!("zz7fffff")),
            ("bits", json!("207fffff00")),
            ("target", json!("00")),
            ("height", json!(-1)),
            ("height", json!(1u64 << 33)),
            ("coinbasevalue", json!(-5)),
            ("coinbasevalue", json!(1.5)),
            ("default_witness_commitment", json!("6a24aa21a9ed00")),
            (
                "default_witness_commitment",
                json!(format!("6a24aa21a9ee{}", "00".repeat(32))),
            ),
            ("mweb", json!("xyz")),
            ("transactions", json!("nope")),
            ("longpollid", json!("x".repeat(MAX_LONGPOLL_ID_LEN + 1))),
        ];
        for (field, bad) in cases {
            let mut v = sample();
            v[field] = bad.clone();
            assert!(
                BlockTemplate::from_json(v).is_err(),
                "{field} = {bad} was accepted"
            );
        }
        for missing in [
            "version",
            "previousblockhash",
            "transactions",
            "bits",
            "height",
        ] {
            let mut v = sample();
            v.as_object_mut().unwrap().remove(missing);
            assert!(BlockTemplate::from_json(v).is_err(), "missing {missing}");
        }
        assert!(BlockTemplate::from_json(json!(null)).is_err());
        assert!(BlockTemplate::from_json(json!([1, 2])).is_err());
    }

    #[test]
    fn target_must_match_bits() {
        let mut v = sample();
        v["target"] = json!("7ffffe0000000000000000000000000000000000000000000000000000000000");
        assert!(matches!(
            BlockTemplate::from_json(v),
            Err(TemplateError::TargetMismatch { .. })
        ));
    }

    #[test]
    fn hogex_must_be_last_and_only_with_mweb() {
        // HogEx not last.
        let mut v = sample();
        let txs = v["transactions"].as_array_mut().unwrap();
        txs.swap(0, 1);
        txs[1]["depends"] = json!([]);
        assert!(matches!(
            BlockTemplate::from_json(v),
            Err(TemplateError::HogEx(_))
        ));
        // MWEB without a HogEx.
        let mut v = sample();
        v["transactions"].as_array_mut().unwrap().pop();
        assert!(matches!(
            BlockTemplate::from_json(v),
            Err(TemplateError::HogEx(_))
        ));
        // HogEx without MWEB.
        let mut v = sample();
        v.as_object_mut().unwrap().remove("mweb");
        assert!(matches!(
            BlockTemplate::from_json(v),
            Err(TemplateError::HogEx(_))
        ));
        // Neither: a pre-activation template.
        let mut v = sample();
        v.as_object_mut().unwrap().remove("mweb");
        v["transactions"].as_array_mut().unwrap().pop();
        let t = BlockTemplate::from_json(v).unwrap();
        assert!(!t.has_mweb());
    }

    #[test]
    fn depends_must_point_into_the_template() {
        for bad in [json!([0]), json!([3]), json!([-1])] {
            let mut v = sample();
            v["transactions"][1]["depends"] = bad;
            assert!(BlockTemplate::from_json(v).is_err());
        }
    }

    #[test]
    fn sizes_are_bounded() {
        let mut v = sample();
        v["mweb"] = json!("00".repeat(MAX_MWEB_BYTES + 1));
        assert!(matches!(
            BlockTemplate::from_json(v),
            Err(TemplateError::TooLarge { what: "mweb", .. })
        ));
        let mut v = sample();
        let tx = v["transactions"][0].clone();
        let many = vec![tx; MAX_TEMPLATE_TRANSACTIONS + 1];
        v["transactions"] = json!(many);
        v.as_object_mut().unwrap().remove("mweb");
        assert!(matches!(
            BlockTemplate::from_json(v),
            Err(TemplateError::TooLarge { .. })
        ));
        // Several transactions each under the limit but together over it.
        let mut v = sample();
        v.as_object_mut().unwrap().remove("mweb");
        let big = json!({"data": "00".repeat(MAX_TEMPLATE_TX_BYTES / 2 + 1),
            "txid": "11".repeat(32), "hash": "11".repeat(32), "fee": 0, "weight": 4});
        v["transactions"] = json!([big.clone(), big]);
        assert!(matches!(
            BlockTemplate::from_json(v),
            Err(TemplateError::TooLarge {
                what: "transaction bytes",
                ..
            })
        ));
    }

    proptest::proptest! {
        /// Any value in any field gives a template or an error, never a panic.
        #[test]
        fn hostile_field_values_never_panic(
            field in proptest::sample::select(vec![
                "version", "previousblockhash", "transactions", "coinbasevalue", "target",
                "bits", "curtime", "mintime", "height", "default_witness_commitment", "mweb",
                "longpollid", "rules", "weightlimit",
            ]),
            text in ".{0,80}",
            number in proptest::num::i64::ANY,
            pick in 0u8..4,
        ) {
            let mut v = sample();
            v[field] = match pick {
                0 => json!(text),
                1 => json!(number),
                2 => json!([text, number]),
                _ => json!({"data": text}),
            };
            let _ = BlockTemplate::from_json(v);
        }

        #[test]
        fn arbitrary_json_never_panics(text in ".{0,200}") {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                let _ = BlockTemplate::from_json(v);
            }
        }
    }
}
