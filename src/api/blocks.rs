//! The found-blocks methods: `getblocks [count]` (the list kept by [`crate::blocks`]) and
//! `verifyblockpayout <blockhash>`, which rebuilds the coinbase the share chain prescribes
//! for a block its daemon holds and compares it with the daemon's, output by output.
//!
//! A parent-chain block: litecoind is asked for the block's summary and its coinbase alone
//! (`getblock <hash> 1`, `getrawtransaction <txid> true <hash>`). It is matched to its share
//! through the coinbase's last output, the share commitment (`docs/PROTOCOL.md`): so a
//! block whose coinbase was altered (a different hash than any share) is still checked
//! against the share it claims to be.
//!
//! An aux block (merged mining, §15), when litecoind does not know the hash: each aux
//! daemon is asked for the raw block (`getblock <hash> false`), of which only the header, the
//! AuxPoW and the coinbase are read. The AuxPoW's parent header names the share; the
//! share's aux block for that chain gives the prescribed coinbase. An aux block whose
//! proof of work was below the share target is in no share: only the node that found it
//! knows what it prescribed, from its found-block record, and the answer says so.
//!
//! One verification at a time.

use serde_json::{json, Value};
use share_chain::address::aux_address_to_script;
use share_chain::auxpow::AuxBlockHead;
use share_chain::coinbase::{build_aux_coinbase, build_coinbase};
use share_chain::params::AuxChainParams;
use share_chain::{CoinParams, ShareHash};

use super::methods::{error, Sources, INVALID_PARAMS, NOT_FOUND, UNAVAILABLE};
use crate::daemon::rpc::RpcError;
use jsonrpsee::types::ErrorObjectOwned;

/// One `verifyblockpayout` reads litecoind at a time.
static VERIFYING: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(1));

/// Most blocks `getblocks` returns.
pub const MAX_BLOCKS_LISTED: u64 = 500;
/// Most outputs read from a litecoind coinbase (the consensus cap is far lower).
const MAX_OUTPUTS: usize = 10_000;
/// Largest raw aux block read back (hex digits): 4 MB, four times Dogecoin's limit.
const MAX_AUX_BLOCK_HEX: usize = 8_000_000;

pub async fn getblocks(s: &Sources, count: Option<u64>) -> Result<Value, ErrorObjectOwned> {
    let count = count.unwrap_or(20);
    if count == 0 || count > MAX_BLOCKS_LISTED {
        return Err(error(
            INVALID_PARAMS,
            format!("count must be 1..={MAX_BLOCKS_LISTED}"),
        ));
    }
    Ok(Value::Array(
        s.blocks
            .newest(count as usize)
            .iter()
            .map(|b| b.to_json(&s.preset.coin.chain))
            .collect(),
    ))
}

/// One coinbase output: script and amount.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Output {
    script: Vec<u8>,
    amount: u64,
}

/// The chain whose addresses name outputs.
#[derive(Clone, Copy)]
enum Chain<'a> {
    Parent(&'a CoinParams),
    Aux(&'a AuxChainParams),
}

impl Chain<'_> {
    fn address(&self, script: &[u8]) -> Option<String> {
        match self {
            Chain::Parent(coin) => share_chain::address::script_to_address(script, coin),
            Chain::Aux(chain) => share_chain::address::aux_script_to_address(script, chain),
        }
    }
}

impl Output {
    fn to_json(&self, chain: Chain<'_>) -> Value {
        json!({
            "address": chain.address(&self.script),
            "script": hex::encode(&self.script),
            "amount": self.amount,
        })
    }

    fn of(tx: &bitcoin::Transaction) -> Vec<Output> {
        tx.output
            .iter()
            .map(|o| Output {
                script: o.script_pubkey.to_bytes(),
                amount: o.value.to_sat(),
            })
            .collect()
    }
}

/// The previous block and the coinbase's txid from litecoind's `getblock <hash> 1` answer.
fn block_summary(block: &Value) -> Result<([u8; 32], String), &'static str> {
    let prev = block["previousblockhash"]
        .as_str()
        .and_then(crate::daemon::rpc::parse_display_hash)
        .ok_or("the block has no previous block hash")?;
    let coinbase = block["tx"][0]
        .as_str()
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("the block has no coinbase txid")?;
    Ok((prev, coinbase.to_owned()))
}

/// The outputs of litecoind's `getrawtransaction <txid> true <block>` answer.
fn coinbase_outputs(tx: &Value) -> Result<Vec<Output>, &'static str> {
    let vout = tx["vout"].as_array().ok_or("the coinbase has no outputs")?;
    if vout.len() > MAX_OUTPUTS {
        return Err("the coinbase has too many outputs");
    }
    vout.iter()
        .map(|o| {
            // Amounts are JSON numbers of coins; below 2^53 litoshi (every amount up to
            // the coin's max money) an f64 holds them exactly after rounding.
            let coins = o["value"].as_f64().ok_or("an output without a value")?;
            let script = o["scriptPubKey"]["hex"]
                .as_str()
                .and_then(|h| hex::decode(h).ok())
                .ok_or("an output without a script")?;
            if !(0.0..=9.0e7).contains(&coins) {
                return Err("an output value out of range");
            }
            Ok(Output {
                script,
                amount: (coins * 1e8).round() as u64,
            })
        })
        .collect()
}

/// The share commitment a coinbase carries in its last output (`OP_RETURN`, push 32).
fn share_commitment(outputs: &[Output]) -> Option<[u8; 32]> {
    let script = &outputs.last()?.script;
    if script.len() == 34 && script[0] == 0x6a && script[1] == 32 {
        script[2..].try_into().ok()
    } else {
        None
    }
}

/// Each output that differs, by index.
fn differences(expected: &[Output], actual: &[Output], chain: Chain<'_>) -> Vec<Value> {
    let n = expected.len().max(actual.len());
    (0..n)
        .filter_map(|i| {
            let (e, a) = (expected.get(i), actual.get(i));
            (e != a).then(|| {
                json!({
                    "index": i,
                    "expected": e.map(|o| o.to_json(chain)),
                    "actual": a.map(|o| o.to_json(chain)),
                })
            })
        })
        .collect()
}

pub async fn verifyblockpayout(s: &Sources, hash: String) -> Result<Value, ErrorObjectOwned> {
    let parsed = ShareHash::from_display_hex(&hash)
        .map_err(|_| error(INVALID_PARAMS, "blockhash must be 64 hex digits"))?;
    let hash = parsed.to_string();
    if s.daemon_rpc.is_none() && s.aux_daemons.is_empty() {
        return Err(error(UNAVAILABLE, "no daemon to read the block from"));
    }
    // One at a time: each is two daemon calls, and the API is open to miners.
    let _turn = VERIFYING
        .acquire()
        .await
        .map_err(|_| error(UNAVAILABLE, "verification is shut down"))?;
    let mut unreachable = Vec::new();
    if let Some(rpc) = &s.daemon_rpc {
        match rpc
            .call::<Value>("getblock", vec![json!(hash), json!(1)])
            .await
        {
            Ok(block) => return verify_parent_block(s, rpc, &hash, &block).await,
            // -5: "Block not found": perhaps an aux block.
            Err(RpcError::Rpc { code: -5, .. }) => {}
            Err(e) => unreachable.push(format!("litecoind: {e}")),
        }
    }
    for daemon in &s.aux_daemons {
        let Some(chain) = daemon.chain() else {
            unreachable.push(format!("{}: its chain is not known yet", daemon.url()));
            continue;
        };
        match daemon
            .rpc()
            // `false`, not 0: Dogecoin Core 1.14 takes a boolean (later versions take both).
            .call::<String>("getblock", vec![json!(hash), json!(false)])
            .await
        {
            Ok(raw) => return verify_aux_block(s, chain, &hash, &raw).await,
            Err(RpcError::Rpc { code: -5, .. }) => {}
            Err(e) => unreachable.push(format!("{}: {e}", chain.chain)),
        }
    }
    if unreachable.is_empty() {
        Err(error(NOT_FOUND, format!("no daemon knows block {hash}")))
    } else {
        Err(error(
            UNAVAILABLE,
            format!(
                "block {hash} not found, and not every daemon could be asked: {}",
                unreachable.join("; ")
            ),
        ))
    }
}

/// The answer for a parent-chain block (`block`: litecoind's `getblock <hash> 1`).
async fn verify_parent_block(
    s: &Sources,
    rpc: &crate::daemon::rpc::RpcClient,
    hash: &str,
    block: &Value,
) -> Result<Value, ErrorObjectOwned> {
    let litecoind = |e: &str| error(UNAVAILABLE, format!("litecoind: {e}"));
    let (prev_block, coinbase_txid) = block_summary(block).map_err(litecoind)?;
    // The coinbase alone, not the whole block decoded (`getblock <hash> 2` is megabytes
    // for a full block); with the block hash, litecoind needs no transaction index.
    let coinbase: Value = rpc
        .call(
            "getrawtransaction",
            vec![json!(coinbase_txid), json!(true), json!(hash)],
        )
        .await
        .map_err(|e| litecoind(&e.to_string()))?;
    let actual = coinbase_outputs(&coinbase).map_err(litecoind)?;
    let commitment = share_commitment(&actual).ok_or_else(|| {
        error(
            NOT_FOUND,
            "the block's coinbase carries no share commitment: not a share-chain block",
        )
    })?;
    let network = s.preset.network_id();
    let expected = s
        .chain
        .call(move |c| {
            let index = c.index_mut();
            let entry = index
                .entries()
                .filter(|e| e.share.header.prev_block == prev_block)
                .find(|e| e.share.info.commitment(&network) == commitment)?
                .clone();
            let payouts = index.expected_payouts(&entry.share, &entry.credits);
            let coinbase = build_coinbase(&entry.share.coinbase, &payouts, &commitment);
            Some((entry.hash, Output::of(coinbase.transaction())))
        })
        .await
        .map_err(|_| error(UNAVAILABLE, "the share chain is not running"))?;
    let Some((share, expected)) = expected else {
        return Err(error(
            NOT_FOUND,
            "the share chain does not hold the share this block commits to (pruned or unknown)",
        ));
    };
    let differences = differences(&expected, &actual, Chain::Parent(&s.preset.coin));
    let matched = differences.is_empty();
    if !matched {
        crate::api::note_payout_mismatch(s, hash);
    }
    Ok(json!({
        "match": matched,
        "chain": s.preset.coin.chain,
        "block": hash,
        "share": share.to_string(),
        "basis": "share chain",
        "outputs": expected.len(),
        "differences": differences,
    }))
}

/// The outputs a found-block record lists (addresses on `chain`, or scripts in hex).
fn recorded_outputs(payouts: &[crate::blocks::PaidOutput], chain: &AuxChainParams) -> Vec<Output> {
    payouts
        .iter()
        .map(|p| Output {
            script: aux_address_to_script(&p.address, chain)
                .ok()
                .or_else(|| hex::decode(&p.address).ok())
                .unwrap_or_default(),
            amount: p.amount,
        })
        .collect()
}

/// The answer for an aux block of `chain` (`raw`: its daemon's `getblock <hash> false`).
async fn verify_aux_block(
    s: &Sources,
    chain: &AuxChainParams,
    hash: &str,
    raw: &str,
) -> Result<Value, ErrorObjectOwned> {
    let daemon = |e: &str| error(UNAVAILABLE, format!("{}: {e}", chain.chain));
    if raw.len() > MAX_AUX_BLOCK_HEX {
        return Err(daemon("the block is larger than any valid one"));
    }
    let bytes = hex::decode(raw).map_err(|_| daemon("the block is not hex"))?;
    let head = AuxBlockHead::decode(&bytes).map_err(|e| daemon(&e.to_string()))?;
    let Some(auxpow) = head.auxpow else {
        return Err(error(
            NOT_FOUND,
            format!(
                "block {hash} of {} carries no AuxPoW: it was not merge-mined",
                chain.chain
            ),
        ));
    };
    let actual = Output::of(&head.coinbase);
    let parent = auxpow.parent_header.hash();
    let chain_id = chain.chain_id;
    let from_share = s
        .chain
        .call(move |c| {
            let index = c.index_mut();
            let entry = index.get(&parent)?.clone();
            let share = &entry.share;
            let block = share
                .merged_mining
                .blocks
                .iter()
                .find(|b| b.chain_id == chain_id)?;
            let payouts = index
                .aux_window_payouts(
                    &share.info,
                    &entry.credits,
                    share.header.bits,
                    chain_id,
                    block.coinbase_value,
                )
                .ok()?;
            let coinbase = build_aux_coinbase(&block.coinbase_script_sig, &payouts);
            Some(Output::of(coinbase.transaction()))
        })
        .await
        .map_err(|_| error(UNAVAILABLE, "the share chain is not running"))?;
    let (expected, basis) = match from_share {
        Some(expected) => (expected, "share chain"),
        None => {
            let record = s
                .blocks
                .find(hash)
                .filter(|b| b.aux_chain.as_deref() == Some(&chain.chain))
                .ok_or_else(|| {
                    error(
                        NOT_FOUND,
                        format!(
                            "the share chain does not hold share {parent}, whose proof of work                              this block carries (pruned, unknown, or not a share), and this                              node did not find the block"
                        ),
                    )
                })?;
            (
                recorded_outputs(&record.payouts, chain),
                "this node's record: the block's proof of work was below the share target, so                  it is in no share and only the node that found it knows what it prescribed",
            )
        }
    };
    let differences = differences(&expected, &actual, Chain::Aux(chain));
    let matched = differences.is_empty();
    if !matched {
        crate::api::note_payout_mismatch(s, hash);
    }
    Ok(json!({
        "match": matched,
        "chain": chain.chain,
        "block": hash,
        "parent_header": parent.to_string(),
        "basis": basis,
        "outputs": expected.len(),
        "differences": differences,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(script: u8, amount: u64) -> Output {
        Output {
            script: vec![script],
            amount,
        }
    }

    #[test]
    fn differences_name_each_output() {
        let coin = share_chain::testkit::regtest_preset("").coin;
        let chain = Chain::Parent(&coin);
        let expected = [out(1, 10), out(2, 20)];
        assert!(differences(&expected, &expected, chain).is_empty());
        let d = differences(&expected, &[out(1, 9), out(2, 20), out(3, 1)], chain);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0]["index"], 0);
        assert_eq!(d[0]["expected"]["amount"], 10);
        assert_eq!(d[0]["actual"]["amount"], 9);
        assert_eq!(d[1]["expected"], Value::Null);
    }

    /// A record's payouts read back as the scripts they were recorded from, whether they
    /// have an address on the aux chain or were kept as hex.
    #[test]
    fn recorded_aux_payouts_read_back() {
        let chain = share_chain::testkit::regtest_preset("").aux_chains[0].clone();
        let p2pkh = [&[0x76, 0xa9, 0x14][..], &[7; 20], &[0x88, 0xac]].concat();
        let p2wpkh = [&[0x00, 0x14][..], &[9; 20]].concat();
        let payouts = crate::blocks::aux_paid_outputs(
            &[
                share_chain::coinbase::Payout {
                    script: p2pkh.clone(),
                    amount: 3,
                },
                share_chain::coinbase::Payout {
                    script: p2wpkh.clone(),
                    amount: 4,
                },
            ],
            &chain,
        );
        assert!(payouts[0].address.starts_with('n') || payouts[0].address.starts_with('m'));
        assert_eq!(payouts[1].address, hex::encode(&p2wpkh));
        let outputs = recorded_outputs(&payouts, &chain);
        assert_eq!(outputs, [out_of(&p2pkh, 3), out_of(&p2wpkh, 4)]);
    }

    fn out_of(script: &[u8], amount: u64) -> Output {
        Output {
            script: script.to_vec(),
            amount,
        }
    }

    #[test]
    fn coinbase_outputs_are_read_exactly() {
        let tx = json!({"vout": [
            {"value": 12.49999999, "scriptPubKey": {"hex": "51"}},
            {"value": 0.0, "scriptPubKey": {"hex": format!("6a20{}", "ab".repeat(32))}},
        ]});
        let outputs = coinbase_outputs(&tx).unwrap();
        assert_eq!(outputs[0].amount, 1_249_999_999);
        assert_eq!(share_commitment(&outputs), Some([0xab; 32]));
        assert!(coinbase_outputs(&json!({})).is_err());
        let bad = json!({"vout": [{"value": -1.0, "scriptPubKey": {"hex": "51"}}]});
        assert!(coinbase_outputs(&bad).is_err());
        let block = json!({"previousblockhash": "00".repeat(32), "tx": ["cd".repeat(32)]});
        assert_eq!(block_summary(&block).unwrap().1, "cd".repeat(32));
        assert!(
            block_summary(&json!({"previousblockhash": "00".repeat(32), "tx": ["zz"]})).is_err()
        );
        assert!(block_summary(&json!({"tx": ["cd".repeat(32)]})).is_err());
    }
}
