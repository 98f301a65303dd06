//! Throw-away litecoind and dogecoind regtest daemons, for the devnet and the end-to-end
//! tests.
//!
//! litecoind on regtest serves no block template until it has a peer and while its tip
//! looks old, so [`RegtestPair`] starts node A (the one the pool mines on, with a wallet)
//! and node B connected to it, with `-maxtipage` raised. Both listen on 127.0.0.1 only, on
//! free ports, in temporary data directories, and are killed when dropped.
//!
//! [`DogePair`] does the same with dogecoind, for merged mining: Dogecoin Core serves no
//! block template without a peer either, and takes AuxPoW blocks only from height
//! [`DOGE_AUXPOW_START`], so the pair mines its first blocks the legacy way.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;
use thiserror::Error;

use crate::daemon::{Auth, RpcClient, RpcConfig, RpcError};

/// The wallet created on node A.
pub const WALLET: &str = "p2pool";
const RPC_USER: &str = "p2pool";
const RPC_PASSWORD: &str = "devnet";

#[derive(Debug, Error)]
pub enum RegtestError {
    #[error(
        "litecoind was not found on PATH (or $LITECOIND). Install it with \
         `apt-get install litecoind` (Debian/Ubuntu), then run this again."
    )]
    NotInstalled,
    #[error("{0} was not found")]
    NotFound(String),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("regtest daemon {name} did not come up: {detail}")]
    Startup { name: String, detail: String },
    #[error("regtest daemon RPC failed: {0}")]
    Rpc(#[from] RpcError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn litecoind_binary() -> String {
    std::env::var("LITECOIND").unwrap_or_else(|_| "litecoind".to_owned())
}

/// How a daemon authenticates RPC callers.
#[derive(Clone, Debug)]
pub enum DaemonAuth {
    /// No `-rpcpassword`: litecoind writes `<datadir>/regtest/.cookie` on every start.
    Cookie,
    UserPass {
        user: String,
        password: String,
    },
}

impl DaemonAuth {
    /// The devnet's fixed user and password (127.0.0.1 only).
    pub fn devnet() -> Self {
        DaemonAuth::UserPass {
            user: RPC_USER.to_owned(),
            password: RPC_PASSWORD.to_owned(),
        }
    }
}

/// One regtest litecoind process.
pub struct Daemon {
    pub name: String,
    child: Child,
    datadir: TempDir,
    pub p2p_port: u16,
    pub rpc_port: u16,
    auth: DaemonAuth,
    /// The program and command line, kept so [`Daemon::restart`] starts it the same way.
    program: String,
    args: Vec<String>,
}

impl Daemon {
    /// Starts a daemon with the devnet's user and password and waits until its RPC answers.
    pub async fn start(name: &str, extra_args: &[String]) -> Result<Daemon, RegtestError> {
        Self::start_with(name, DaemonAuth::devnet(), extra_args).await
    }

    /// Starts a daemon with `auth` and waits until its RPC answers.
    pub async fn start_with(
        name: &str,
        auth: DaemonAuth,
        extra_args: &[String],
    ) -> Result<Daemon, RegtestError> {
        match Self::start_program(&litecoind_binary(), name, auth, extra_args).await {
            Err(RegtestError::NotFound(_)) => Err(RegtestError::NotInstalled),
            started => started,
        }
    }

    /// [`Daemon::start_with`] for another Bitcoin-Core-like daemon `program` (the merged-
    /// mining tests run dogecoind this way).
    pub async fn start_program(
        program: &str,
        name: &str,
        auth: DaemonAuth,
        extra_args: &[String],
    ) -> Result<Daemon, RegtestError> {
        let datadir = tempfile::Builder::new()
            .prefix(&format!("p2pool-ltc-{name}-"))
            .tempdir()?;
        let (p2p_port, rpc_port) = (free_port()?, free_port()?);
        let mut args = vec![
            "-regtest".to_owned(),
            format!("-datadir={}", datadir.path().display()),
            format!("-port={p2p_port}"),
            format!("-rpcport={rpc_port}"),
            "-bind=127.0.0.1".to_owned(),
            "-rpcbind=127.0.0.1".to_owned(),
            "-rpcallowip=127.0.0.1".to_owned(),
            "-server=1".to_owned(),
            "-printtoconsole=0".to_owned(),
            "-discover=0".to_owned(),
            "-dnsseed=0".to_owned(),
            "-listenonion=0".to_owned(),
            "-upnp=0".to_owned(),
            "-maxtipage=1000000000".to_owned(),
            "-fallbackfee=0.0001".to_owned(),
            "-rpcthreads=8".to_owned(),
        ];
        if let DaemonAuth::UserPass { user, password } = &auth {
            args.push(format!("-rpcuser={user}"));
            args.push(format!("-rpcpassword={password}"));
        }
        args.extend(extra_args.iter().cloned());
        let child = spawn(program, &args, datadir.path())?;
        let mut daemon = Daemon {
            name: name.to_owned(),
            child,
            datadir,
            p2p_port,
            rpc_port,
            auth,
            program: program.to_owned(),
            args,
        };
        daemon.wait_rpc(Duration::from_secs(60)).await?;
        Ok(daemon)
    }

    /// Stops the daemon cleanly (RPC `stop`, so its blocks are flushed) and waits until the
    /// process has exited; kills it if it takes longer than `limit`.
    pub async fn stop(&mut self, limit: Duration) -> Result<(), RegtestError> {
        let _: Result<Value, _> = self.client()?.call("stop", vec![]).await;
        let start = Instant::now();
        while self.child.try_wait()?.is_none() {
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts a stopped daemon again on the same data directory and ports.
    pub async fn restart(&mut self) -> Result<(), RegtestError> {
        if self.child.try_wait()?.is_none() {
            return Err(RegtestError::Startup {
                name: self.name.clone(),
                detail: "restart of a daemon that is still running".into(),
            });
        }
        self.child = spawn(&self.program, &self.args, self.datadir.path())?;
        self.wait_rpc(Duration::from_secs(60)).await
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Where litecoind writes its RPC cookie (with [`DaemonAuth::Cookie`]).
    pub fn cookie_path(&self) -> PathBuf {
        self.datadir.path().join("regtest").join(".cookie")
    }

    /// The credentials the node's client should use for this daemon.
    pub fn rpc_auth(&self) -> Auth {
        match &self.auth {
            DaemonAuth::Cookie => Auth::CookieFile(self.cookie_path()),
            DaemonAuth::UserPass { user, password } => Auth::UserPass {
                user: user.clone(),
                password: password.clone(),
            },
        }
    }

    pub fn rpc_config(&self) -> RpcConfig {
        RpcConfig::new(self.url(), self.rpc_auth())
    }

    /// A client with other credentials (to test refusals).
    pub fn client_with(&self, auth: Auth) -> Result<RpcClient, RpcError> {
        RpcClient::new(RpcConfig::new(self.url(), auth))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    pub fn client(&self) -> Result<RpcClient, RpcError> {
        RpcClient::new(self.rpc_config())
    }

    pub fn datadir(&self) -> &Path {
        self.datadir.path()
    }

    async fn wait_rpc(&mut self, limit: Duration) -> Result<(), RegtestError> {
        let client = self.client()?;
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(RegtestError::Startup {
                    name: self.name.clone(),
                    detail: format!("exited ({status}): {}", self.log_tail()),
                });
            }
            match client.get_blockchain_info().await {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > limit => {
                    return Err(RegtestError::Startup {
                        name: self.name.clone(),
                        detail: format!("no RPC after {limit:?}: {e}"),
                    })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The end of the daemon's logs, for error messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        for file in ["stderr.log", "regtest/debug.log"] {
            let content =
                std::fs::read_to_string(self.datadir.path().join(file)).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            let from = lines.len().saturating_sub(15);
            text.push_str(&lines[from..].join("\n"));
        }
        text
    }
}

/// Spawns `program` with `args`, its stderr appended to `datadir/stderr.log`.
fn spawn(program: &str, args: &[String], datadir: &Path) -> Result<Child, RegtestError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(datadir.join("stderr.log"))?;
    Command::new(program)
        .args(args)
        // litecoind creates `$HOME/.litecoin` even with `-datadir`; two starting at once on a
        // fresh machine race on that mkdir and one exits ("File exists"). Keep it inside the
        // throw-away datadir.
        .env("HOME", datadir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RegtestError::NotFound(program.to_owned()),
            _ => RegtestError::Spawn {
                program: program.to_owned(),
                source: e,
            },
        })
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Node A (mined on, with a wallet) and node B (its peer).
pub struct RegtestPair {
    pub a: Daemon,
    pub b: Daemon,
    client: RpcClient,
}

impl RegtestPair {
    pub async fn start() -> Result<RegtestPair, RegtestError> {
        let a = Daemon::start("a", &[]).await?;
        let b = Daemon::start("b", &[format!("-connect=127.0.0.1:{}", a.p2p_port)]).await?;
        let client = a.client()?;
        let pair = RegtestPair { a, b, client };
        pair.wait_connected(Duration::from_secs(30)).await?;
        let _: Value = pair
            .client
            .call("createwallet", vec![json!(WALLET)])
            .await?;
        Ok(pair)
    }

    pub fn client(&self) -> &RpcClient {
        &self.client
    }

    /// Waits until A has a peer (B): without one it serves no block template.
    pub async fn wait_connected(&self, limit: Duration) -> Result<(), RegtestError> {
        let start = Instant::now();
        loop {
            let peers: u64 = self.client.call("getconnectioncount", vec![]).await?;
            if peers > 0 {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(RegtestError::Startup {
                    name: "b".into(),
                    detail: "never connected to a".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new wallet address of `kind` (`legacy`, `p2sh-segwit`, `bech32`).
    pub async fn new_address(&self, kind: &str) -> Result<String, RegtestError> {
        Ok(self
            .client
            .call("getnewaddress", vec![json!(""), json!(kind)])
            .await?)
    }

    pub async fn mine_blocks(&self, n: u64, address: &str) -> Result<Vec<String>, RegtestError> {
        Ok(self
            .client
            .call("generatetoaddress", vec![json!(n), json!(address)])
            .await?)
    }

    pub async fn block_count(&self) -> Result<u64, RegtestError> {
        Ok(self.client.call("getblockcount", vec![]).await?)
    }

    /// Node A's data directory.
    pub fn datadir(&self) -> PathBuf {
        self.a.datadir().to_path_buf()
    }
}

/// Dogecoin regtest's first height that takes AuxPoW blocks (`nHeightEffective`): below it
/// a merge-mined block is refused ("early-auxpow-block").
pub const DOGE_AUXPOW_START: u64 = 20;
/// The Dogecoin regtest P2PKH address (version 0x6f) of the all-zero hash160: no one holds
/// its key. [`DogePair::start`] mines the legacy blocks to it.
pub const DOGE_BURN_ADDRESS: &str = "mfWxJ45yp2SFn7UciZyNpvDKrzbhyfKrY8";

/// The dogecoind to run: `$DOGECOIND` (if set and not empty), else `dogecoind` if it is a
/// file in a directory of `$PATH`. dogecoind is not a Debian package: Dogecoin Core 1.14 is
/// built by hand.
pub fn find_dogecoind() -> Option<String> {
    if let Some(path) = std::env::var_os("DOGECOIND").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path).display().to_string());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("dogecoind"))
        .find(|candidate| candidate.is_file())
        .map(|p| p.display().to_string())
}

/// A dogecoind regtest pair for merged mining: node A (the one merge-mined on, with
/// `-txindex` so its coinbases can be read back) and node B connected to it, past
/// [`DOGE_AUXPOW_START`].
pub struct DogePair {
    pub a: Daemon,
    pub b: Daemon,
    client: RpcClient,
}

impl DogePair {
    /// Starts dogecoind `program` twice, waits until B is connected to A (without a peer
    /// there is no block template), then mines the blocks below [`DOGE_AUXPOW_START`] to
    /// [`DOGE_BURN_ADDRESS`].
    pub async fn start(program: &str) -> Result<DogePair, RegtestError> {
        let auth = DaemonAuth::devnet();
        let a =
            Daemon::start_program(program, "doge-a", auth.clone(), &["-txindex=1".into()]).await?;
        let connect = format!("-connect=127.0.0.1:{}", a.p2p_port);
        let b = Daemon::start_program(program, "doge-b", auth, &[connect]).await?;
        let client = a.client()?;
        let pair = DogePair { a, b, client };
        let start = Instant::now();
        loop {
            let peers: u64 = pair.client.call("getconnectioncount", vec![]).await?;
            if peers > 0 {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(RegtestError::Startup {
                    name: "doge-b".into(),
                    detail: "never connected to doge-a".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _: Value = pair
            .client
            .call(
                "generatetoaddress",
                vec![json!(DOGE_AUXPOW_START), json!(DOGE_BURN_ADDRESS)],
            )
            .await?;
        Ok(pair)
    }

    /// A client of node A.
    pub fn client(&self) -> &RpcClient {
        &self.client
    }

    pub async fn block_count(&self) -> Result<u64, RegtestError> {
        Ok(self.client.call("getblockcount", vec![]).await?)
    }
}
