//! Throw-away dogecoind regtest daemons, for the merged-mining tests.
//!
//! Dogecoin Core serves no block template without a peer (even on regtest), so [`DogePair`]
//! starts node A (the one the pool merge-mines on, with `-txindex` so tests can read its
//! coinbases) and node B connected to it, both on 127.0.0.1 in temporary data directories,
//! killed when dropped. They are the node's own regtest [`Daemon`]s run with another program.
//!
//! dogecoind is not a Debian package: build Dogecoin Core 1.14 yourself (outside this
//! repository) and put `dogecoind` on PATH or name it in `$DOGECOIND`. Without it,
//! [`DogePair::start`] returns `None` and the test says plainly that it skipped.

use std::time::{Duration, Instant};

use p2pool::daemon::RpcClient;
use p2pool::regtest::{Daemon, DaemonAuth};
use serde_json::Value;

/// Dogecoin regtest's first height that takes AuxPoW blocks (`nHeightEffective`).
pub const AUXPOW_START: u64 = 20;
/// The regtest P2PKH address (version 0x6f) of the all-zero hash160: no one holds its key.
pub const BURN_ADDRESS: &str = "mfWxJ45yp2SFn7UciZyNpvDKrzbhyfKrY8";

/// The dogecoind to run: `$DOGECOIND`, else `dogecoind` if it is on PATH.
pub fn dogecoind_binary() -> Option<String> {
    if let Ok(path) = std::env::var("DOGECOIND") {
        return Some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("dogecoind"))
        .find(|candidate| candidate.is_file())
        .map(|p| p.display().to_string())
}

/// Node A (merge-mined on) and node B (its peer).
pub struct DogePair {
    pub a: Daemon,
    pub b: Daemon,
}

impl DogePair {
    /// Starts the pair and waits until they are connected; `None` (with the reason printed)
    /// when dogecoind is not installed.
    pub async fn start() -> Option<DogePair> {
        let Some(program) = dogecoind_binary() else {
            // Written to the process's stderr, not through `eprintln!`, which the test
            // harness captures and hides for a passing test: a skip must be seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: dogecoind not found (set $DOGECOIND or put it on PATH; build \
                 Dogecoin Core 1.14 to run the merged-mining tests)"
            );
            return None;
        };
        let start = |name: &'static str, extra: Vec<String>| {
            let program = program.clone();
            async move {
                Daemon::start_program(&program, name, DaemonAuth::devnet(), &extra)
                    .await
                    .unwrap_or_else(|e| panic!("dogecoind {name}: {e}"))
            }
        };
        let a = start("doge-a", vec!["-txindex=1".into()]).await;
        let b = start("doge-b", vec![format!("-connect=127.0.0.1:{}", a.p2p_port)]).await;
        let pair = DogePair { a, b };
        let client = pair.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let peers: Value = client
                .call("getconnectioncount", vec![])
                .await
                .expect("rpc");
            if peers.as_u64().unwrap_or(0) > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the dogecoind pair did not connect"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Dogecoin's regtest takes AuxPoW blocks from height 20 on ("early-auxpow-block"
        // before): mine the legacy blocks first, to an unspendable P2PKH.
        let _: Value = client
            .call(
                "generatetoaddress",
                vec![Value::from(AUXPOW_START), Value::from(BURN_ADDRESS)],
            )
            .await
            .expect("generatetoaddress");
        Some(pair)
    }

    pub fn client(&self) -> RpcClient {
        self.a.client().expect("an RPC client")
    }

    pub async fn block_count(&self) -> u64 {
        let count: Value = self
            .client()
            .call("getblockcount", vec![])
            .await
            .expect("getblockcount");
        count.as_u64().expect("a count")
    }

    /// The outputs of the coinbase of block `hash` (display hex): `(script hex, koinu)`.
    pub async fn coinbase_outputs(&self, hash: &str) -> Vec<(String, u64)> {
        let client = self.client();
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
                // Decimal DOGE: exact in an f64 up to 2^53 koinu (90 million DOGE), far
                // above a regtest coinbase.
                let doge = o["value"].as_f64().expect("value");
                (script, (doge * 1e8).round() as u64)
            })
            .collect()
    }
}
