//! The found-blocks methods: `getblocks [count]` (the list kept by [`crate::blocks`]) and
//! `verifyblockpayout <blockhash>`, which rebuilds the coinbase the share chain prescribes
//! for a block litecoind holds and compares it with litecoind's, output by output.
//!
//! litecoind is asked for the block's summary and its coinbase alone (`getblock <hash> 1`,
//! `getrawtransaction <txid> true <hash>`), one verification at a time.
//!
//! A block is matched to its share through the coinbase's last output, the share
//! commitment (`docs/PROTOCOL.md`): so a block whose coinbase was altered (a different
//! hash than any share) is still checked against the share it claims to be.

use serde_json::{json, Value};
use share_chain::coinbase::build_coinbase;
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
            .map(|b| b.to_json())
            .collect(),
    ))
}

/// One coinbase output: script and amount.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Output {
    script: Vec<u8>,
    amount: u64,
}

impl Output {
    fn to_json(&self, coin: &CoinParams) -> Value {
        json!({
            "address": share_chain::address::script_to_address(&self.script, coin),
            "script": hex::encode(&self.script),
            "amount": self.amount,
        })
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
fn differences(expected: &[Output], actual: &[Output], coin: &CoinParams) -> Vec<Value> {
    let n = expected.len().max(actual.len());
    (0..n)
        .filter_map(|i| {
            let (e, a) = (expected.get(i), actual.get(i));
            (e != a).then(|| {
                json!({
                    "index": i,
                    "expected": e.map(|o| o.to_json(coin)),
                    "actual": a.map(|o| o.to_json(coin)),
                })
            })
        })
        .collect()
}

pub async fn verifyblockpayout(s: &Sources, hash: String) -> Result<Value, ErrorObjectOwned> {
    let parsed = ShareHash::from_display_hex(&hash)
        .map_err(|_| error(INVALID_PARAMS, "blockhash must be 64 hex digits"))?;
    let Some(rpc) = &s.daemon_rpc else {
        return Err(error(UNAVAILABLE, "no litecoind to read the block from"));
    };
    // One at a time: each is two litecoind calls, and the API is open to miners.
    let _turn = VERIFYING
        .acquire()
        .await
        .map_err(|_| error(UNAVAILABLE, "verification is shut down"))?;
    let block: Value = match rpc
        .call("getblock", vec![json!(parsed.to_string()), json!(1)])
        .await
    {
        Ok(b) => b,
        Err(RpcError::Rpc { code: -5, .. }) => {
            return Err(error(
                NOT_FOUND,
                format!("litecoind does not know block {hash}"),
            ))
        }
        Err(e) => return Err(error(UNAVAILABLE, format!("litecoind: {e}"))),
    };
    let litecoind = |e: &str| error(UNAVAILABLE, format!("litecoind: {e}"));
    let (prev_block, coinbase_txid) = block_summary(&block).map_err(litecoind)?;
    // The coinbase alone, not the whole block decoded (`getblock <hash> 2` is megabytes
    // for a full block); with the block hash, litecoind needs no transaction index.
    let coinbase: Value = rpc
        .call(
            "getrawtransaction",
            vec![json!(coinbase_txid), json!(true), json!(parsed.to_string())],
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
            Some((
                entry.hash,
                coinbase
                    .transaction()
                    .output
                    .iter()
                    .map(|o| Output {
                        script: o.script_pubkey.to_bytes(),
                        amount: o.value.to_sat(),
                    })
                    .collect::<Vec<_>>(),
            ))
        })
        .await
        .map_err(|_| error(UNAVAILABLE, "the share chain is not running"))?;
    let Some((share, expected)) = expected else {
        return Err(error(
            NOT_FOUND,
            "the share chain does not hold the share this block commits to (pruned or unknown)",
        ));
    };
    let differences = differences(&expected, &actual, &s.preset.coin);
    let matched = differences.is_empty();
    if !matched {
        crate::api::note_payout_mismatch(s, &hash);
    }
    Ok(json!({
        "match": matched,
        "block": hash,
        "share": share.to_string(),
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
        let expected = [out(1, 10), out(2, 20)];
        assert!(differences(&expected, &expected, &coin).is_empty());
        let d = differences(&expected, &[out(1, 9), out(2, 20), out(3, 1)], &coin);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0]["index"], 0);
        assert_eq!(d[0]["expected"]["amount"], 10);
        assert_eq!(d[0]["actual"]["amount"], 9);
        assert_eq!(d[1]["expected"], Value::Null);
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
