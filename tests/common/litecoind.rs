//! A throw-away litecoind regtest harness for integration tests.
//!
//! Why a pair: litecoind on regtest serves no block template until it has a peer, so
//! [`RegtestPair`] starts node A (the one tests mine on, with a wallet) and node B, which
//! connects to A. Both listen on 127.0.0.1 only, on free ports, with temporary data
//! directories, and are killed when dropped. `-maxtipage` is raised because regtest's
//! genesis block is from 2011 and litecoind would otherwise report "still syncing".
//!
//! litecoind must be installed (`apt-get install litecoind`); `LITECOIND` may name another
//! binary. A missing binary fails the test with that instruction: tests are never skipped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pool::daemon::{Auth, RpcClient, RpcConfig, RpcError};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The wallet created on node A.
pub const WALLET: &str = "w";

/// How a node authenticates RPC callers.
#[derive(Clone, Debug)]
pub enum NodeAuth {
    /// No `-rpcpassword`: litecoind writes `<datadir>/regtest/.cookie` on every start.
    Cookie,
    UserPass {
        user: String,
        password: String,
    },
}

/// One litecoind process (restartable on the same data directory and ports).
pub struct Node {
    pub name: &'static str,
    child: Option<Child>,
    datadir: TempDir,
    pub p2p_port: u16,
    pub rpc_port: u16,
    auth: NodeAuth,
    extra_args: Vec<String>,
}

/// A free port on 127.0.0.1 (the OS picks it; it is released before litecoind binds it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

fn litecoind_binary() -> String {
    std::env::var("LITECOIND").unwrap_or_else(|_| "litecoind".to_owned())
}

impl Node {
    /// Starts a regtest node and waits until its RPC answers.
    pub async fn start(name: &'static str, auth: NodeAuth, extra_args: Vec<String>) -> Node {
        let datadir = tempfile::Builder::new()
            .prefix(&format!("p2pool-ltc-{name}-"))
            .tempdir()
            .expect("create a temporary datadir");
        let mut node = Node {
            name,
            child: None,
            datadir,
            p2p_port: free_port(),
            rpc_port: free_port(),
            auth,
            extra_args,
        };
        node.spawn();
        node.wait_rpc(Duration::from_secs(60)).await;
        node
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "-regtest".to_owned(),
            format!("-datadir={}", self.datadir.path().display()),
            format!("-port={}", self.p2p_port),
            format!("-rpcport={}", self.rpc_port),
            "-bind=127.0.0.1".to_owned(),
            "-rpcbind=127.0.0.1".to_owned(),
            "-rpcallowip=127.0.0.1".to_owned(),
            "-server=1".to_owned(),
            "-daemon=0".to_owned(),
            "-printtoconsole=0".to_owned(),
            "-discover=0".to_owned(),
            "-dnsseed=0".to_owned(),
            "-listenonion=0".to_owned(),
            "-upnp=0".to_owned(),
            "-maxtipage=1000000000".to_owned(),
            "-fallbackfee=0.0001".to_owned(),
            "-keypool=10".to_owned(),
            // A long poll holds one RPC thread; leave room for everything else.
            "-rpcthreads=8".to_owned(),
        ];
        if let NodeAuth::UserPass { user, password } = &self.auth {
            args.push(format!("-rpcuser={user}"));
            args.push(format!("-rpcpassword={password}"));
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.datadir.path().join("stderr.log"))
            .expect("create stderr log");
        let child = Command::new(litecoind_binary())
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        match child {
            Ok(child) => self.child = Some(child),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "litecoind not found on PATH (or $LITECOIND): these tests need a real \
                 litecoind 0.21. Install it with `apt-get install litecoind`."
            ),
            Err(e) => panic!("cannot start {}: {e}", litecoind_binary()),
        }
    }

    /// Waits until the RPC answers (`getblockchaininfo` succeeds, warm-up over).
    async fn wait_rpc(&mut self, limit: Duration) {
        let client = self.client();
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "litecoind {} exited during startup ({status}):\n{}",
                        self.name,
                        self.log_tail()
                    );
                }
            }
            match client.get_blockchain_info().await {
                Ok(_) => return,
                Err(e) if start.elapsed() > limit => {
                    panic!(
                        "litecoind {} RPC not up after {limit:?}: {e}\n{}",
                        self.name,
                        self.log_tail()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The end of litecoind's debug log, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        for file in ["stderr.log", "regtest/debug.log"] {
            let content =
                std::fs::read_to_string(self.datadir.path().join(file)).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            let from = lines.len().saturating_sub(20);
            text.push_str(&format!("--- {file}\n{}\n", lines[from..].join("\n")));
        }
        text
    }

    pub fn cookie_path(&self) -> PathBuf {
        self.datadir.path().join("regtest").join(".cookie")
    }

    /// The credentials this node accepts.
    pub fn rpc_auth(&self) -> Auth {
        match &self.auth {
            NodeAuth::Cookie => Auth::CookieFile(self.cookie_path()),
            NodeAuth::UserPass { user, password } => Auth::UserPass {
                user: user.clone(),
                password: password.clone(),
            },
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.rpc_port)
    }

    /// A client of this node with the right credentials.
    pub fn client(&self) -> RpcClient {
        RpcClient::new(RpcConfig::new(self.url(), self.rpc_auth())).expect("RPC client")
    }

    /// A client with the given credentials (for testing refusals).
    pub fn client_with(&self, auth: Auth) -> RpcClient {
        RpcClient::new(RpcConfig::new(self.url(), auth)).expect("RPC client")
    }

    /// Stops the node cleanly (RPC `stop`) and waits for the process to exit.
    pub async fn stop(&mut self) {
        let _ = self.client().call::<Value>("stop", vec![]).await;
        let start = Instant::now();
        while let Some(child) = self.child.as_mut() {
            match child.try_wait() {
                Ok(Some(_)) => {
                    self.child = None;
                }
                _ if start.elapsed() > Duration::from_secs(30) => {
                    self.kill();
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Starts the node again on the same data directory and ports.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running node");
        self.spawn();
        self.wait_rpc(Duration::from_secs(60)).await;
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
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
        let a = Node::start("a", NodeAuth::Cookie, vec!["-listen=1".to_owned()]).await;
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
