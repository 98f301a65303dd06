//! Throw-away dogecoind regtest daemons, for the merged-mining tests: the devnet's own
//! [`DogePair`] (`src/regtest.rs`), which starts node A (the one the pool merge-mines on,
//! with `-txindex` so tests can read its coinbases) and node B connected to it (Dogecoin
//! Core serves no block template without a peer, even on regtest), then mines the blocks
//! below the AuxPoW start height.
//!
//! dogecoind is not a Debian package: build Dogecoin Core 1.14 yourself (outside this
//! repository) and put `dogecoind` on PATH or name it in `$DOGECOIND`. Without it, [`start`]
//! returns `None` and the test says plainly that it skipped.

pub use p2pool::regtest::DogePair;
use p2pool::regtest::{find_dogecoind, DOGE_BURN_ADDRESS};
use serde_json::Value;

/// An address no one holds the key of, for blocks mined by hand.
pub const BURN_ADDRESS: &str = DOGE_BURN_ADDRESS;

/// Prints `SKIPPED: what` to the process's stderr, not through `eprintln!`, which the test
/// harness captures and hides for a passing test: a skip must be seen.
pub fn skipped(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what}");
}

/// The dogecoind to run (`$DOGECOIND`, else `dogecoind` on PATH), or `None` with the skip of
/// `what` printed.
pub fn dogecoind_or_skip(what: &str) -> Option<String> {
    let found = find_dogecoind();
    if found.is_none() {
        skipped(&format!(
            "{what}: dogecoind not found (set $DOGECOIND or put it on PATH; build Dogecoin \
             Core 1.14 to run the merged-mining tests)"
        ));
    }
    found
}

/// Starts the pair past the AuxPoW start height; `None` (with the skip printed) when
/// dogecoind is not installed.
pub async fn start() -> Option<DogePair> {
    let program = dogecoind_or_skip("merged mining")?;
    Some(
        DogePair::start(&program)
            .await
            .unwrap_or_else(|e| panic!("dogecoind pair ({program}): {e}")),
    )
}

/// Node A's block count.
pub async fn block_count(doge: &DogePair) -> u64 {
    doge.block_count().await.expect("getblockcount")
}

/// The outputs of the coinbase of block `hash` (display hex) on node A: `(script hex,
/// koinu)`.
pub async fn coinbase_outputs(doge: &DogePair, hash: &str) -> Vec<(String, u64)> {
    let client = doge.client();
    let block: Value = client
        .call("getblock", vec![Value::String(hash.to_owned())])
        .await
        .expect("getblock");
    let txid = block["tx"][0].clone();
    let tx: Value = client
        .call("getrawtransaction", vec![txid, Value::from(1)])
        .await
        .expect("getrawtransaction");
    tx["vout"]
        .as_array()
        .expect("vout")
        .iter()
        .map(|o| {
            let script = o["scriptPubKey"]["hex"].as_str().expect("hex").to_owned();
            // Decimal DOGE: exact in an f64 up to 2^53 koinu (90 million DOGE), far above a
            // regtest coinbase.
            let doge = o["value"].as_f64().expect("value");
            (script, (doge * 1e8).round() as u64)
        })
        .collect()
}
