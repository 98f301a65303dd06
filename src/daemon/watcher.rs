//! Follows the daemon: learns of every new block within a second and publishes the newest
//! block template together with an explicit daemon state.
//!
//! Why: a miner working on an old block wastes its hashes, and a miner given work while
//! the daemon is down, syncing, on the wrong chain or refusing our password finds shares
//! that can never become blocks. So the state is explicit, and the published template is
//! `Some` only while the state is [`DaemonState::Ready`]; consumers must still check the
//! state before handing out work.
//!
//! How: no RPC call is ever left waiting in litecoind. litecoind has few RPC threads
//! (`-rpcthreads`, 4 by default), and a BIP22 long poll holds one until the next block or
//! mempool change, even after the process that sent it is gone: a node in a crash loop
//! would fill them all, and the live node could no longer submit its blocks. So by default
//! the watcher makes only short, bounded calls: a new block is learnt from litecoind's P2P
//! port ([`super::peer`], an `inv`/`headers` announcement) and a fresh template fetched at
//! once; `getbestblockhash` every [`WatcherConfig::poll_interval`] covers a P2P connection
//! that is down; a template is fetched every [`WatcherConfig::refresh_interval`] for new
//! transactions. Long polling remains available ([`WatcherConfig::use_longpoll`]), at most
//! one call at a time; if it fails with a daemon error the watcher falls back to polling.
//! On any failure it reports the state, waits [`WatcherConfig::retry_interval`] and starts
//! over, so it resumes by itself when the daemon comes back. State changes are logged once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, trace, warn};

use super::rpc::{codes, RpcClient, RpcError};
use super::template::BlockTemplate;

/// What the node knows about its daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonState {
    /// Not heard from it yet.
    Connecting,
    /// Answering, on the right chain, synced, serving templates: miners may get work.
    Ready,
    /// No connection (down, wrong port, connection broken, call timed out).
    Unreachable,
    /// It refused our credentials.
    Unauthorized,
    /// It runs a different chain than the preset's.
    WrongChain { expected: String, found: String },
    /// It is starting up (loading the block index...): the daemon's message.
    WarmingUp(String),
    /// Initial block download.
    Syncing,
    /// It answers but serves no usable template (e.g. regtest without a peer); the reason.
    NoTemplate(String),
    /// Its RPC server is saturated: calls time out or are refused with HTTP 503 ("work
    /// queue depth exceeded"), so a found block may not get through `submitblock`. The
    /// failure seen.
    Saturated(String),
}

impl DaemonState {
    pub fn is_ready(&self) -> bool {
        matches!(self, DaemonState::Ready)
    }
}

/// What the watcher publishes.
#[derive(Clone, Debug)]
pub struct DaemonStatus {
    pub state: DaemonState,
    /// The newest template; `Some` only while `state` is `Ready`.
    pub template: Option<Arc<BlockTemplate>>,
    /// Counts published templates, so a consumer can tell a new one from the same one.
    pub template_seq: u64,
}

impl DaemonStatus {
    /// The template to build work on, if the daemon is ready.
    pub fn ready_template(&self) -> Option<&Arc<BlockTemplate>> {
        if self.state.is_ready() {
            self.template.as_ref()
        } else {
            None
        }
    }
}

/// Tuning of the watcher.
#[derive(Clone, Debug)]
pub struct WatcherConfig {
    /// The chain the daemon must report in `getblockchaininfo.chain`
    /// (see [`daemon_chain_name`]).
    pub expected_chain: String,
    /// Use `getblocktemplate` long polling (one call at a time). Off by default: a long
    /// poll holds one of litecoind's RPC threads until the next block, even after this
    /// process is killed (see the module documentation).
    pub use_longpoll: bool,
    /// Tip polling interval (`getbestblockhash`) when not long polling; P2P announcements
    /// wake the watcher sooner.
    pub poll_interval: Duration,
    /// How long one long poll may wait before it is simply re-issued.
    pub longpoll_timeout: Duration,
    /// Wait between attempts while the daemon is not ready.
    pub retry_interval: Duration,
    /// In polling mode, fetch a fresh template at least this often (new transactions).
    pub refresh_interval: Duration,
    /// Time allowed for one ordinary call (template, best block hash).
    pub call_timeout: Duration,
}

impl WatcherConfig {
    pub fn new(expected_chain: impl Into<String>) -> Self {
        WatcherConfig {
            expected_chain: expected_chain.into(),
            use_longpoll: false,
            poll_interval: Duration::from_millis(500),
            longpoll_timeout: Duration::from_secs(120),
            retry_interval: Duration::from_secs(1),
            refresh_interval: Duration::from_secs(5),
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// The name litecoind/bitcoind report in `getblockchaininfo.chain` for a preset's chain
/// name (`litecoin` → `main`, `litecoin-testnet` → `test`, `litecoin-regtest` → `regtest`).
pub fn daemon_chain_name(preset_chain: &str) -> &'static str {
    if preset_chain.ends_with("-regtest") {
        "regtest"
    } else if preset_chain.ends_with("-testnet") {
        "test"
    } else if preset_chain.ends_with("-signet") {
        "signet"
    } else {
        "main"
    }
}

/// A running watcher. Dropping it stops the task.
pub struct Watcher {
    status: watch::Receiver<DaemonStatus>,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts following the daemon on the current tokio runtime.
    pub fn spawn(client: Arc<RpcClient>, config: WatcherConfig) -> Self {
        Self::spawn_with(client, config, None)
    }

    /// [`spawn`](Self::spawn), woken at once by each block litecoind announces over P2P
    /// ([`super::peer::DaemonPeer::announcements`]).
    pub fn spawn_with(
        client: Arc<RpcClient>,
        config: WatcherConfig,
        announcements: Option<broadcast::Receiver<[u8; 32]>>,
    ) -> Self {
        let (tx, rx) = watch::channel(DaemonStatus {
            state: DaemonState::Connecting,
            template: None,
            template_seq: 0,
        });
        // The task runs until the `Watcher` is dropped (which aborts it).
        let task = tokio::spawn(async move {
            let mut publisher = Publisher { tx, seq: 0 };
            let mut announcements = announcements;
            run(&client, &config, &mut publisher, &mut announcements).await;
        });
        Watcher { status: rx, task }
    }

    /// A receiver of every status change.
    pub fn subscribe(&self) -> watch::Receiver<DaemonStatus> {
        self.status.clone()
    }

    /// The current status.
    pub fn status(&self) -> DaemonStatus {
        self.status.borrow().clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Publisher {
    tx: watch::Sender<DaemonStatus>,
    seq: u64,
}

impl Publisher {
    /// Sets a state that is not `Ready`, dropping the template; logs only on change.
    fn set_state(&mut self, state: DaemonState, detail: &str) {
        let changed = self.tx.send_if_modified(|status| {
            if status.state == state {
                return false;
            }
            status.state = state.clone();
            status.template = None;
            true
        });
        if changed {
            if let DaemonState::Saturated(_) = state {
                error!(
                    detail,
                    "litecoind's RPC is saturated: found blocks may not get through submitblock \
                     (relayed over P2P meanwhile); raise its -rpcthreads and -rpcworkqueue, \
                     and look for other clients holding its RPC threads"
                );
            } else {
                warn!(?state, detail, "coin daemon not ready");
            }
        } else {
            trace!(?state, detail, "coin daemon still not ready");
        }
    }

    /// Publishes a new template, which makes the state `Ready`.
    fn publish(&mut self, template: BlockTemplate) {
        self.seq += 1;
        let seq = self.seq;
        let height = template.height;
        let was_ready = self.tx.borrow().state.is_ready();
        self.tx.send_modify(|status| {
            status.state = DaemonState::Ready;
            status.template = Some(Arc::new(template));
            status.template_seq = seq;
        });
        if !was_ready {
            info!(height, "coin daemon ready");
        } else {
            debug!(height, seq, "new block template");
        }
    }

    fn current_tip(&self) -> Option<[u8; 32]> {
        self.tx
            .borrow()
            .template
            .as_ref()
            .map(|t| t.previous_block_hash)
    }

    fn current_longpoll_id(&self) -> Option<String> {
        self.tx
            .borrow()
            .template
            .as_ref()
            .and_then(|t| t.longpoll_id.clone())
    }
}

/// The state a failed call puts the daemon in.
fn state_for(error: &RpcError) -> DaemonState {
    match error {
        // Connected but no answer in time, or the work queue is full: every RPC thread
        // is busy (or held by other clients' long polls).
        RpcError::Timeout | RpcError::WorkQueueFull => DaemonState::Saturated(error.to_string()),
        // 503 without "work queue": litecoind is shutting down, like a daemon that is down.
        RpcError::Unreachable(_) | RpcError::Http(503) => DaemonState::Unreachable,
        RpcError::Unauthorized | RpcError::Cookie { .. } => DaemonState::Unauthorized,
        RpcError::Rpc { code, .. } if *code == codes::CLIENT_IN_INITIAL_DOWNLOAD => {
            DaemonState::Syncing
        }
        RpcError::Rpc { code, message } if *code == codes::IN_WARMUP => {
            DaemonState::WarmingUp(message.clone())
        }
        RpcError::Rpc { message, .. } => DaemonState::NoTemplate(message.clone()),
        other => DaemonState::NoTemplate(other.to_string()),
    }
}

/// Forever: check the daemon, get a template, follow the tip; on failure report and retry.
async fn run(
    client: &RpcClient,
    config: &WatcherConfig,
    publisher: &mut Publisher,
    announcements: &mut Option<broadcast::Receiver<[u8; 32]>>,
) {
    loop {
        match connect(client, config).await {
            Ok(template) => {
                publisher.publish(template);
                let error = follow(client, config, publisher, announcements).await;
                publisher.set_state(state_for(&error), &error.to_string());
            }
            Err((state, detail)) => publisher.set_state(state, &detail),
        }
        tokio::time::sleep(config.retry_interval).await;
    }
}

/// Checks chain and sync state, then fetches a first template.
async fn connect(
    client: &RpcClient,
    config: &WatcherConfig,
) -> Result<BlockTemplate, (DaemonState, String)> {
    let fail = |e: RpcError| (state_for(&e), e.to_string());
    let info = client.get_blockchain_info().await.map_err(fail)?;
    if info.chain != config.expected_chain {
        let state = DaemonState::WrongChain {
            expected: config.expected_chain.clone(),
            found: info.chain,
        };
        return Err((state, "getblockchaininfo".into()));
    }
    if info.initialblockdownload {
        return Err((
            DaemonState::Syncing,
            format!("{} of {} headers", info.blocks, info.headers),
        ));
    }
    client
        .get_block_template(None, client_timeout(config))
        .await
        .map_err(fail)
}

/// Time allowed for an ordinary template fetch.
fn client_timeout(config: &WatcherConfig) -> Duration {
    // A large template on a slow machine can take a few seconds to build.
    config.call_timeout
}

/// Waits up to `limit` for a block announcement; whether one came. A closed channel is
/// dropped (the watcher then relies on polling).
async fn announced(
    announcements: &mut Option<broadcast::Receiver<[u8; 32]>>,
    limit: Duration,
) -> bool {
    let Some(rx) = announcements else {
        tokio::time::sleep(limit).await;
        return false;
    };
    match tokio::time::timeout(limit, rx.recv()).await {
        Err(_) => false,
        // Missed some: still news of a block.
        Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
            // Several announcements in a row (inv and headers) make one fetch.
            while rx.try_recv().is_ok() {}
            true
        }
        Ok(Err(broadcast::error::RecvError::Closed)) => {
            *announcements = None;
            false
        }
    }
}

/// Least time between two templates on the same tip (new transactions); a new block is
/// never delayed.
const MEMPOOL_UPDATE_SPACING: Duration = Duration::from_millis(500);

/// Follows the tip until a call fails; returns that failure.
async fn follow(
    client: &RpcClient,
    config: &WatcherConfig,
    publisher: &mut Publisher,
    announcements: &mut Option<broadcast::Receiver<[u8; 32]>>,
) -> RpcError {
    let mut use_longpoll = config.use_longpoll;
    let mut last_fetch = Instant::now();
    loop {
        if use_longpoll {
            let Some(id) = publisher.current_longpoll_id() else {
                use_longpoll = false;
                continue;
            };
            match client
                .get_block_template(Some(&id), config.longpoll_timeout)
                .await
            {
                Ok(template) => {
                    let same_tip = publisher.current_tip() == Some(template.previous_block_hash);
                    publisher.publish(template);
                    // A long poll answered on the same tip is a mempool update. Right after
                    // a restart litecoind answers those at once, again and again (over a
                    // thousand a second while it reloads its mempool): space them out.
                    if same_tip {
                        tokio::time::sleep(MEMPOOL_UPDATE_SPACING).await;
                    }
                }
                // Nothing new for a long time: ask again, with a fresh template.
                Err(RpcError::Timeout) => match fetch(client, config).await {
                    Ok(template) => publisher.publish(template),
                    Err(e) => return e,
                },
                Err(e @ (RpcError::Unreachable(_) | RpcError::Unauthorized)) => return e,
                Err(e) => match fetch(client, config).await {
                    // A plain fetch fails too: the daemon's state, not long polling, is
                    // the problem (e.g. it lost its peers).
                    Err(plain) => return plain,
                    Ok(template) => {
                        // The daemon serves templates but long polling does not work.
                        warn!(error = %e, "long poll failed; polling getbestblockhash instead");
                        publisher.publish(template);
                        use_longpoll = false;
                        last_fetch = Instant::now();
                    }
                },
            }
        } else {
            if announced(announcements, config.poll_interval).await {
                // A new block: its template at once.
                match fetch(client, config).await {
                    Ok(template) => publisher.publish(template),
                    Err(e) => return e,
                }
                last_fetch = Instant::now();
                continue;
            }
            let best = match client.get_best_block_hash().await {
                Ok(best) => best,
                Err(e) => return e,
            };
            if publisher.current_tip() != Some(best)
                || last_fetch.elapsed() >= config.refresh_interval
            {
                match fetch(client, config).await {
                    Ok(template) => publisher.publish(template),
                    Err(e) => return e,
                }
                last_fetch = Instant::now();
            }
        }
    }
}

async fn fetch(client: &RpcClient, config: &WatcherConfig) -> Result<BlockTemplate, RpcError> {
    client
        .get_block_template(None, client_timeout(config))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names() {
        assert_eq!(daemon_chain_name("litecoin"), "main");
        assert_eq!(daemon_chain_name("litecoin-testnet"), "test");
        assert_eq!(daemon_chain_name("litecoin-regtest"), "regtest");
        assert_eq!(daemon_chain_name("bitcoin-signet"), "signet");
        for (preset, chain) in [
            ("litecoin", "main"),
            ("litecoin-testnet", "test"),
            ("litecoin-regtest", "regtest"),
        ] {
            let preset = share_chain::Preset::builtin(preset).unwrap();
            assert_eq!(daemon_chain_name(&preset.coin.chain), chain);
        }
    }

    #[test]
    fn errors_map_to_states() {
        let rpc = |code: i64, message: &str| RpcError::Rpc {
            code,
            message: message.into(),
        };
        assert!(matches!(
            state_for(&RpcError::Timeout),
            DaemonState::Saturated(_)
        ));
        assert!(matches!(
            state_for(&RpcError::WorkQueueFull),
            DaemonState::Saturated(_)
        ));
        assert_eq!(state_for(&RpcError::Http(503)), DaemonState::Unreachable);
        assert_eq!(
            state_for(&RpcError::Unauthorized),
            DaemonState::Unauthorized
        );
        assert_eq!(
            state_for(&rpc(-10, "Litecoin Core is in initial sync")),
            DaemonState::Syncing
        );
        assert_eq!(
            state_for(&rpc(-28, "Loading block index...")),
            DaemonState::WarmingUp("Loading block index...".into())
        );
        assert_eq!(
            state_for(&rpc(-9, "Litecoin Core is not connected!")),
            DaemonState::NoTemplate("Litecoin Core is not connected!".into())
        );
        assert!(matches!(
            state_for(&RpcError::BadResponse("x".into())),
            DaemonState::NoTemplate(_)
        ));
    }

    /// A fake daemon on 127.0.0.1: answers each HTTP request with `handler(method, params)`
    /// = (status, body), one request per connection. For behaviours a real litecoind does
    /// not show on demand (no long poll, hostile answers).
    mod fake {
        use std::sync::Arc;

        use serde_json::Value;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::TcpListener;

        pub type Handler = Arc<dyn Fn(&str, &Value) -> (u16, Vec<u8>) + Send + Sync>;

        /// Starts the server; returns its URL.
        pub async fn serve(handler: Handler) -> String {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/", listener.local_addr().unwrap());
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let mut request = Vec::new();
                        let mut buf = [0u8; 4096];
                        // Read headers, then the body announced by Content-Length.
                        let body = loop {
                            let n = socket.read(&mut buf).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            request.extend_from_slice(&buf[..n]);
                            let text = String::from_utf8_lossy(&request).to_string();
                            if let Some(end) = text.find("\r\n\r\n") {
                                let length = text
                                    .lines()
                                    .find_map(|l| {
                                        l.to_ascii_lowercase()
                                            .strip_prefix("content-length:")
                                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                    })
                                    .unwrap_or(0);
                                if request.len() >= end + 4 + length {
                                    break request[end + 4..end + 4 + length].to_vec();
                                }
                            }
                        };
                        let call: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let method = call["method"].as_str().unwrap_or("").to_owned();
                        let (status, answer) = handler(&method, &call["params"]);
                        let head = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n",
                            answer.len()
                        );
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(&answer).await;
                        let _ = socket.shutdown().await;
                    });
                }
            });
            url
        }
    }

    fn client_for(url: String) -> RpcClient {
        RpcClient::new(super::super::rpc::RpcConfig::new(
            url,
            super::super::rpc::Auth::UserPass {
                user: "u".into(),
                password: "p".into(),
            },
        ))
        .unwrap()
    }

    fn ok(result: serde_json::Value) -> (u16, Vec<u8>) {
        let body = serde_json::json!({"result": result, "error": null, "id": 1});
        (200, body.to_string().into_bytes())
    }

    /// A synced regtest chain's `getblockchaininfo` with best block `tip_hex`.
    fn chain_info(tip_hex: &str) -> serde_json::Value {
        serde_json::json!({
            "chain": "regtest", "blocks": 1, "headers": 1,
            "bestblockhash": tip_hex, "initialblockdownload": false,
        })
    }

    /// An empty regtest template on `tip_hex`.
    fn template_on(tip_hex: &str) -> serde_json::Value {
        serde_json::json!({
            "version": 536870912, "previousblockhash": tip_hex,
            "transactions": [], "coinbasevalue": 5000000000u64,
            "target": format!("7fffff{}", "00".repeat(29)), "bits": "207fffff",
            "curtime": 1700000000u64, "mintime": 1700000000u64, "height": 2,
            "longpollid": format!("{tip_hex}1"),
        })
    }

    #[tokio::test]
    async fn falls_back_to_polling_when_long_poll_fails() {
        use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
        use std::sync::Mutex;

        let tip = Arc::new(AtomicU8::new(1));
        let longpolls = Arc::new(AtomicUsize::new(0));
        let seen_methods = Arc::new(Mutex::new(Vec::<String>::new()));
        let handler: fake::Handler = {
            let (tip, longpolls, seen) = (tip.clone(), longpolls.clone(), seen_methods.clone());
            Arc::new(move |method: &str, params: &serde_json::Value| {
                seen.lock().unwrap().push(method.to_owned());
                let tip_hex = format!("{:02x}", tip.load(Ordering::SeqCst)).repeat(32);
                match method {
                    "getblockchaininfo" => ok(chain_info(&tip_hex)),
                    "getbestblockhash" => ok(serde_json::json!(tip_hex)),
                    "getblocktemplate" if params[0].get("longpollid").is_some() => {
                        longpolls.fetch_add(1, Ordering::SeqCst);
                        let body = r#"{"result":null,"error":{"code":-1,"message":"no long poll"},"id":1}"#;
                        (500, body.as_bytes().to_vec())
                    }
                    "getblocktemplate" => ok(template_on(&tip_hex)),
                    _ => (404, Vec::new()),
                }
            })
        };
        let url = fake::serve(handler).await;
        let mut config = WatcherConfig::new("regtest");
        config.use_longpoll = true;
        config.poll_interval = Duration::from_millis(50);
        let watcher = Watcher::spawn(Arc::new(client_for(url)), config);
        let mut rx = watcher.subscribe();
        let wait = |expected: [u8; 32]| {
            let mut rx = rx.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    rx.wait_for(|s| {
                        s.ready_template().map(|t| t.previous_block_hash) == Some(expected)
                    }),
                )
                .await
                .expect("template on the expected tip")
                .expect("watcher alive")
                .clone()
            }
        };
        wait([1; 32]).await;
        // Wait until the watcher polls (long poll failed and was left).
        let polled = || {
            seen_methods
                .lock()
                .unwrap()
                .iter()
                .any(|m| m == "getbestblockhash")
        };
        let start = tokio::time::Instant::now();
        while !polled() {
            assert!(start.elapsed() < Duration::from_secs(5), "never polled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A new tip is found by polling getbestblockhash.
        tip.store(2, Ordering::SeqCst);
        let status = wait([2; 32]).await;
        assert!(status.template_seq >= 2);
        // Long poll was tried once and then left alone.
        assert_eq!(longpolls.load(Ordering::SeqCst), 1);
        // Every status seen since then was Ready with a template.
        assert!(rx.borrow_and_update().ready_template().is_some());
    }

    /// The default watcher leaves no call waiting in litecoind (a killed process's long
    /// poll holds an RPC thread until the next block) and follows a new block as soon as
    /// litecoind announces it over P2P, long before its next poll.
    #[tokio::test]
    async fn no_long_poll_and_new_blocks_from_announcements() {
        use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

        let tip = Arc::new(AtomicU8::new(1));
        let longpolls = Arc::new(AtomicUsize::new(0));
        let handler: fake::Handler = {
            let (tip, longpolls) = (tip.clone(), longpolls.clone());
            Arc::new(move |method: &str, params: &serde_json::Value| {
                let tip_hex = format!("{:02x}", tip.load(Ordering::SeqCst)).repeat(32);
                match method {
                    "getblockchaininfo" => ok(chain_info(&tip_hex)),
                    "getbestblockhash" => ok(serde_json::json!(tip_hex)),
                    "getblocktemplate" => {
                        if params[0].get("longpollid").is_some() {
                            longpolls.fetch_add(1, Ordering::SeqCst);
                        }
                        ok(template_on(&tip_hex))
                    }
                    _ => (404, Vec::new()),
                }
            })
        };
        let url = fake::serve(handler).await;
        let mut config = WatcherConfig::new("regtest");
        // Polling alone would take a minute to see the new block.
        config.poll_interval = Duration::from_secs(60);
        config.refresh_interval = Duration::from_secs(60);
        let (announce, announcements) = broadcast::channel(8);
        let watcher = Watcher::spawn_with(Arc::new(client_for(url)), config, Some(announcements));
        let mut rx = watcher.subscribe();
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| s.state.is_ready()))
            .await
            .expect("ready")
            .expect("watcher alive");
        tip.store(2, Ordering::SeqCst);
        announce.send([2; 32]).unwrap();
        tokio::time::timeout(
            Duration::from_secs(2),
            rx.wait_for(|s| s.ready_template().map(|t| t.previous_block_hash) == Some([2; 32])),
        )
        .await
        .expect("the announced block's template at once")
        .expect("watcher alive");
        assert_eq!(longpolls.load(Ordering::SeqCst), 0, "no long poll");
    }

    #[tokio::test]
    async fn hostile_http_answers_are_errors() {
        let handler: fake::Handler = Arc::new(|method: &str, _: &serde_json::Value| match method {
            "garbage" => (200, b"\x00\xffnot json".to_vec()),
            "truncated" => (200, br#"{"result":"#.to_vec()),
            "unauthorized" => (401, Vec::new()),
            "huge" => (200, vec![b' '; super::super::rpc::MAX_RESPONSE_BYTES + 1]),
            "getblocktemplate" => ok(serde_json::json!({"transactions": 5})),
            _ => (503, Vec::new()),
        });
        let client = client_for(fake::serve(handler).await);
        let call = |m: &'static str| {
            let client = &client;
            async move { client.call::<serde_json::Value>(m, vec![]).await }
        };
        assert!(matches!(
            call("garbage").await,
            Err(RpcError::BadResponse(_))
        ));
        assert!(matches!(
            call("truncated").await,
            Err(RpcError::BadResponse(_))
        ));
        assert!(matches!(
            call("unauthorized").await,
            Err(RpcError::Unauthorized)
        ));
        assert!(matches!(call("huge").await, Err(RpcError::TooLarge)));
        assert!(matches!(call("other").await, Err(RpcError::Http(503))));
        assert!(matches!(
            client
                .get_block_template(None, Duration::from_secs(5))
                .await,
            Err(RpcError::Template(_))
        ));
        assert!(matches!(
            client.get_best_block_hash().await,
            Err(RpcError::Http(503))
        ));
    }

    #[tokio::test]
    async fn status_is_not_ready_without_a_template_and_unreachable_when_nothing_listens() {
        // A port nothing listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = RpcClient::new(super::super::rpc::RpcConfig::new(
            format!("http://127.0.0.1:{port}/"),
            super::super::rpc::Auth::UserPass {
                user: "u".into(),
                password: "p".into(),
            },
        ))
        .unwrap();
        let mut config = WatcherConfig::new("regtest");
        config.retry_interval = Duration::from_millis(50);
        let watcher = Watcher::spawn(Arc::new(client), config);
        let mut rx = watcher.subscribe();
        let status = tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|s| s.state == DaemonState::Unreachable),
        )
        .await
        .unwrap()
        .unwrap()
        .clone();
        assert!(status.template.is_none());
        assert!(status.ready_template().is_none());
    }
}
