//! A p2pool node on a throw-away regtest litecoind pair: the setup every node test shares.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pool::miner::{mine, MinerConfig, MinerStats};
use p2pool::node::{DaemonP2p, Node, NodeConfig, NodeEvent, NodeOptions};
use p2pool::regtest::RegtestPair;
use serde_json::{json, Value};
use share_chain::Preset;
use tempfile::TempDir;

pub struct Pool {
    pub daemons: RegtestPair,
    pub node: Node,
    pub datadir: TempDir,
}

/// Logs to the test's output (`RUST_LOG` overrides the `warn` default), once per process.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn regtest() -> Preset {
    Preset::builtin("litecoin-regtest").expect("the regtest preset")
}

/// Starts litecoind (a pair, so it serves templates) and a node on it, Stratum on a free
/// port; returns once Stratum serves work.
pub async fn start_pool() -> Pool {
    start_pool_with(NodeOptions::default()).await
}

/// [`start_pool`] with node options.
pub async fn start_pool_with(mut options: NodeOptions) -> Pool {
    init_logs();
    let daemons = RegtestPair::start().await.expect("litecoind pair");
    // The harness's litecoind listens on a free port, not regtest's default: the node
    // connects to it there, as it would to a production litecoind.
    if options.daemon_p2p == DaemonP2p::Default {
        options.daemon_p2p = DaemonP2p::At(([127, 0, 0, 1], daemons.a.p2p_port).into());
    }
    let datadir = tempfile::tempdir().expect("a temporary datadir");
    let node = Node::start_with(
        NodeConfig {
            preset: regtest(),
            datadir: datadir.path().to_path_buf(),
            daemon: daemons.a.rpc_config(),
            stratum: "127.0.0.1:0".parse().expect("an address"),
            fee: None,
            p2p_listen: Vec::new(),
            peers: Vec::new(),
        },
        options,
    )
    .await
    .expect("node starts");
    let start = Instant::now();
    while !node.stratum.availability().is_serving() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the node does not serve work: {:?}",
            node.readiness()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Pool {
        daemons,
        node,
        datadir,
    }
}

/// A one-thread regtest CPU miner; set `server` and `username`.
pub fn regtest_miner() -> MinerConfig {
    let preset = regtest();
    MinerConfig {
        server: "127.0.0.1:0".parse().expect("an address"),
        username: String::new(),
        threads: 1,
        pow: preset.coin.pow,
        difficulty_multiplier: preset.coin.pow.stratum_difficulty_multiplier(),
    }
}

impl Pool {
    /// A one-thread CPU miner on this node paying `address`.
    pub fn miner(&self, address: &str) -> MinerConfig {
        MinerConfig {
            server: self.node.stratum_addr(),
            username: format!("{address}.test"),
            ..regtest_miner()
        }
    }

    /// One CPU miner per address; they run until the returned flag is set.
    pub fn start_miners(&self, addresses: &[impl AsRef<str>]) -> Arc<AtomicBool> {
        let stop = Arc::new(AtomicBool::new(false));
        for address in addresses {
            let (config, stop) = (self.miner(address.as_ref()), stop.clone());
            tokio::spawn(async move {
                let _ = mine(config, Arc::new(MinerStats::default()), stop).await;
            });
        }
        stop
    }
}

/// Polls `check` every 100 ms until it holds; fails the test with `what` after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The payout scripts of the shares on `node`'s best chain.
pub async fn best_chain_payout_scripts(node: &Node) -> HashSet<Vec<u8>> {
    node.chain
        .call(|c| {
            let index = c.index();
            match index.best_hash() {
                Some(best) => index
                    .ancestors(best)
                    .map(|e| e.share.info.payout_script.clone())
                    .collect(),
                None => HashSet::new(),
            }
        })
        .await
        .expect("the chain thread")
}

/// An accepted aux block from a node's events: its hash and payouts `(address, amount)`.
pub type AcceptedAux = ([u8; 32], Vec<(String, u64)>);

/// Moves the aux blocks accepted so far from each node's `events` into its `found` list.
pub fn drain_accepted_aux(
    events: &mut [tokio::sync::broadcast::Receiver<NodeEvent>],
    found: &mut [Vec<AcceptedAux>],
) {
    for (rx, found) in events.iter_mut().zip(found.iter_mut()) {
        while let Ok(event) = rx.try_recv() {
            if let NodeEvent::AuxBlockSubmitted {
                hash,
                accepted: true,
                payouts,
                ..
            } = event
            {
                found.push((hash, payouts));
            }
        }
    }
}

/// The whole JSON-RPC answer of `method` on `node`'s API (which must be on).
pub async fn api_call(node: &Node, method: &str, params: Value) -> Value {
    let url = format!("http://{}/", node.api_addr().expect("the API is on"));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("the API answers")
        .json()
        .await
        .expect("a JSON answer")
}

/// The `result` of `method` on `node`'s API; an error answer fails the test.
pub async fn api_result(node: &Node, method: &str, params: Value) -> Value {
    let answer = api_call(node, method, params).await;
    assert!(answer["error"].is_null(), "{method}: {answer}");
    answer["result"].clone()
}

/// Waits until `node`'s share chain has had no new share for `quiet` (after its miners have
/// stopped), so what it pays stays put.
pub async fn wait_quiet(node: &Node, quiet: Duration) {
    let mut tip = node.chain.summary().tip;
    loop {
        tokio::time::sleep(quiet).await;
        let now = node.chain.summary().tip;
        if now == tip {
            return;
        }
        tip = now;
    }
}

/// A webhook receiver that accepts connections and never reads or answers them: its URL,
/// and how many connections it has taken.
pub async fn silent_receiver() -> (String, Arc<std::sync::atomic::AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}/hook", listener.local_addr().expect("an address"));
    let connections = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            held.push(socket);
        }
    });
    (url, connections)
}

/// The scripts block `hash` (display hex) pays a positive amount in its coinbase, as
/// litecoind (`client`) holds it.
pub async fn paid_scripts(client: &p2pool::daemon::RpcClient, hash: &str) -> HashSet<Vec<u8>> {
    let raw: Value = client
        .call("getblock", vec![json!(hash), json!(2)])
        .await
        .expect("litecoind has the block");
    raw["tx"][0]["vout"]
        .as_array()
        .expect("the coinbase's outputs")
        .iter()
        .filter(|out| out["value"].as_f64().unwrap_or(0.0) > 0.0)
        .map(|out| hex::decode(out["scriptPubKey"]["hex"].as_str().unwrap_or("")).expect("hex"))
        .collect()
}

/// `node`'s Prometheus metrics, as text.
pub async fn metrics_text(node: &Node) -> String {
    reqwest::get(format!(
        "http://{}/metrics",
        node.api_addr().expect("the API is on")
    ))
    .await
    .expect("the API answers")
    .text()
    .await
    .expect("text")
}
