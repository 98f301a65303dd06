//! A throw-away litecoind regtest harness for integration tests.
//!
//! Why a pair: litecoind on regtest serves no block template until it has a peer, so
//! [`RegtestPair`] starts node A (the one tests mine on, with a wallet) and node B, which
//! connects to A. Both listen on 127.0.0.1 only, on free ports, with temporary data
//! directories, and are killed when dropped. `-maxtipage` is raised because regtest's
//! genesis block is from 2011 and litecoind would otherwise report "still syncing".
//!
//! The processes are the node's own [`Daemon`]s (`src/regtest.rs`, also used by the devnet).
//! litecoind must be installed (`apt-get install litecoind`); `LITECOIND` may name another
//! binary. A missing binary fails the test with that instruction: tests are never skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pool::daemon::{Auth, RpcClient, RpcError};
use p2pool::regtest::Daemon;
use serde_json::{json, Value};

pub use p2pool::regtest::DaemonAuth as NodeAuth;

/// The wallet created on node A.
pub const WALLET: &str = "w";

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    p2pool::regtest::free_port().expect("a free port on 127.0.0.1")
}

/// One litecoind process (restartable on the same data directory and ports): the node's own
/// [`Daemon`], with test-friendly methods that panic with litecoind's log on failure.
pub struct Node(Daemon);

impl std::ops::Deref for Node {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.0
    }
}

impl Node {
    /// Starts a regtest node and waits until its RPC answers.
    pub async fn start(name: &'static str, auth: NodeAuth, extra_args: Vec<String>) -> Node {
        match Daemon::start_with(name, auth, &extra_args).await {
            Ok(daemon) => Node(daemon),
            Err(e) => panic!("{e}"),
        }
    }

    pub fn client(&self) -> RpcClient {
        self.0.client().expect("an RPC client")
    }

    pub fn client_with(&self, auth: Auth) -> RpcClient {
        self.0.client_with(auth).expect("an RPC client")
    }

    /// Stops the node cleanly (RPC `stop`) and waits for the process to exit.
    pub async fn stop(&mut self) {
        self.0
            .stop(Duration::from_secs(30))
            .await
            .expect("litecoind stops");
    }

    /// Starts the node again on the same data directory and ports.
    pub async fn restart(&mut self) {
        if let Err(e) = self.0.restart().await {
            panic!("{e}\n{}", self.0.log_tail());
        }
    }

    pub fn kill(&mut self) {
        self.0.kill();
    }
}

/// Node A (cookie auth, wallet [`WALLET`], mined on) and node B (user/password, connected
/// to A, so that A serves templates).
pub struct RegtestPair {
    pub a: Node,
    pub b: Node,
    /// A client of A.
    pub rpc: Arc<RpcClient>,
}

impl RegtestPair {
    pub async fn start() -> RegtestPair {
        Self::start_with(Vec::new()).await
    }

    /// [`start`](Self::start) with more arguments for node A (later ones win, e.g.
    /// `-rpcthreads=4` over the harness's 8).
    pub async fn start_with(a_args: Vec<String>) -> RegtestPair {
        let mut args = vec!["-listen=1".to_owned()];
        args.extend(a_args);
        let a = Node::start("a", NodeAuth::Cookie, args).await;
        let b = Node::start(
            "b",
            NodeAuth::UserPass {
                user: "p2pool".to_owned(),
                password: format!("pw{}", free_port()),
            },
            vec![
                format!("-connect=127.0.0.1:{}", a.p2p_port),
                "-disablewallet=1".to_owned(),
            ],
        )
        .await;
        let rpc = Arc::new(a.client());
        let _: Value = rpc
            .call("createwallet", vec![json!(WALLET)])
            .await
            .expect("createwallet on node A");
        let pair = RegtestPair { a, b, rpc };
        pair.wait_connected(Duration::from_secs(30)).await;
        pair
    }

    /// Waits until A has a peer (B), so that `getblocktemplate` works.
    pub async fn wait_connected(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let peers: Result<u64, RpcError> = self.rpc.call("getconnectioncount", vec![]).await;
            if matches!(peers, Ok(n) if n > 0) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "node B did not connect to node A within {limit:?}: {peers:?}\n{}",
                self.b.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new wallet address on A; `kind` is `bech32`, `legacy`, `p2sh-segwit` or `mweb`.
    pub async fn new_address(&self, kind: &str) -> String {
        self.rpc
            .call("getnewaddress", vec![json!(""), json!(kind)])
            .await
            .expect("getnewaddress")
    }

    /// The output script of a wallet address.
    pub async fn script_of(&self, address: &str) -> Vec<u8> {
        let info: Value = self
            .rpc
            .call("getaddressinfo", vec![json!(address)])
            .await
            .expect("getaddressinfo");
        let hex = info["scriptPubKey"].as_str().expect("scriptPubKey");
        hex::decode(hex).expect("scriptPubKey hex")
    }

    /// Mines `n` blocks on A paying `address`; returns their hashes (display hex).
    pub async fn mine_blocks(&self, n: u64, address: &str) -> Vec<String> {
        self.rpc
            .call_with_timeout(
                "generatetoaddress",
                vec![json!(n), json!(address)],
                Duration::from_secs(300),
            )
            .await
            .expect("generatetoaddress")
    }

    /// Sends `amount` LTC from A's wallet; returns the txid.
    pub async fn send(&self, address: &str, amount: f64) -> String {
        self.rpc
            .call("sendtoaddress", vec![json!(address), json!(amount)])
            .await
            .expect("sendtoaddress")
    }

    pub async fn block_count(&self) -> u64 {
        self.rpc
            .call("getblockcount", vec![])
            .await
            .expect("getblockcount")
    }

    pub async fn best_block_hash(&self) -> String {
        self.rpc
            .call("getbestblockhash", vec![])
            .await
            .expect("getbestblockhash")
    }
}
