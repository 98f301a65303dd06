//! The node's read-only API for operators and miners, on one HTTP listener (`--rpc`):
//!
//! - `POST /`: JSON-RPC 2.0 ([`methods`]): `getinfo`, `getpayoutinfo`, `getminerstats`,
//!   `getpeerinfo`, `getsharechain`, `getblocks`, `verifyblockpayout` ([`blocks`]),
//!   `getpplnswindow`, `getshare` ([`window`]), `explainpayout` ([`explain`]). The dispatch, parameter parsing and error objects are
//!   jsonrpsee's; one call per request (batches are refused with a clear error).
//! - `GET /metrics`: Prometheus text exposition ([`metrics`]).
//! - `GET /`, `GET /assets/NAME`: the dashboard, a page that polls the JSON-RPC methods and
//!   draws charts, with every file it loads compiled in ([`assets`]).
//!
//! Everything is read from the running parts (the chain thread, the Stratum server's
//! statistics, the daemon watcher, the network); nothing here changes node state, so the
//! API can be exposed to miners. Request bodies are bounded and answers are capped.
//! The server samples the workers' hashrates ([`crate::hashrate`]) and watches for alerts
//! for as long as it runs; the found-blocks list it reads is kept by the node
//! ([`crate::blocks::track`]), `--rpc` or not.

pub mod assets;
pub mod blocks;
pub mod explain;
pub mod methods;
pub mod metrics;
pub mod window;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jsonrpsee::RpcModule;
use p2pool_network::NetworkHandle;
use share_chain::{OperatorFee, Preset};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::alerts::{Alerts, Observed, Watch};
use crate::blocks::{BlockStatus, FoundBlocks};
use crate::chain_service::ChainHandle;
use crate::counters::NodeCounters;
use crate::daemon::aux::{AuxStatus, AuxTemplate};
use crate::daemon::rpc::RpcClient;
use crate::daemon::watcher::DaemonStatus;
use crate::hashrate::{Hashrates, SAMPLE_SECS};
use crate::history::History;
use crate::p2p::SyncState;
use crate::stratum::StatsSnapshot;

/// Largest JSON-RPC request body accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest JSON-RPC answer produced (a full payout list of a big window fits easily).
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Where the API reads from.
pub struct ApiSources {
    pub preset: Preset,
    pub chain: ChainHandle,
    pub daemon: watch::Receiver<DaemonStatus>,
    /// The Stratum server's statistics.
    pub stratum: Box<dyn Fn() -> StatsSnapshot + Send + Sync>,
    /// The share-chain network, if the node runs one.
    pub network: Option<NetworkHandle>,
    pub sync: Option<watch::Receiver<SyncState>>,
    /// Blocks, dropped solutions and left-out transactions, counted where they happen.
    pub counters: Arc<NodeCounters>,
    /// litecoind, to follow found blocks and read their coinbases (none: not followed).
    pub daemon_rpc: Option<Arc<RpcClient>>,
    /// This node's operator fee (it changes what a block found through it pays).
    pub fee: Option<OperatorFee>,
    /// The blocks the share chain found.
    pub blocks: Arc<FoundBlocks>,
    /// The aux daemons, to read aux blocks back (`verifyblockpayout`).
    pub aux_daemons: Vec<Arc<crate::daemon::aux::AuxDaemon>>,
    /// Workers' hashrates, sampled from the Stratum statistics.
    pub hashrates: Arc<Hashrates>,
    /// The pool's and each address's hashrate over time.
    pub history: Arc<History>,
    /// Alerts raised, and the webhook they go to.
    pub alerts: Arc<Alerts>,
    /// The aux daemons' newest templates (merged mining; empty without aux daemons).
    pub aux: watch::Receiver<Vec<Arc<AuxTemplate>>>,
    /// Each aux daemon's state.
    pub aux_status: Vec<watch::Receiver<AuxStatus>>,
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How often alert conditions are checked.
const ALERT_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Checks the alert conditions every [`ALERT_CHECK`] until the server stops.
async fn watch_alerts(s: Arc<ApiSources>) {
    let mut watch = Watch::default();
    let mut ticker = tokio::time::interval(ALERT_CHECK);
    // Refused blocks are money lost: each new one is an alert (the log has the reason).
    let mut refused = [0u64; 2];
    loop {
        ticker.tick().await;
        let now = now_secs();
        let counted = [
            NodeCounters::get(&s.counters.blocks_refused),
            NodeCounters::get(&s.counters.aux_blocks_refused),
        ];
        for (i, (kind, subject, what)) in [
            ("block_refused", "litecoind", "found block"),
            (
                "aux_block_refused",
                "aux daemon",
                "found aux block (merged mining)",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            if counted[i] > refused[i] {
                s.alerts.raise(
                    now,
                    kind,
                    subject.to_string(),
                    format!(
                        "{} {what}(s) refused or not delivered ({} since start); the log \
                         says why",
                        counted[i] - refused[i],
                        counted[i]
                    ),
                );
                refused[i] = counted[i];
            }
        }
        let stats = (s.stratum)();
        let daemon = s.daemon.borrow().state.clone();
        let peers = match &s.network {
            Some(net) => net.status().await.ok().map(|st| st.connected_peers),
            None => None,
        };
        let sync_problem = s
            .sync
            .as_ref()
            .map(|r| r.borrow().clone())
            .filter(|st| !st.may_serve())
            .map(|st| st.to_string());
        let observed = Observed {
            now,
            workers: stats
                .workers
                .iter()
                .map(|w| {
                    let last = w
                        .last_accepted
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_secs());
                    (w.username.clone(), last)
                })
                .collect(),
            low_hashrate: s.hashrates.low_hashrate_workers(now),
            daemon_problem: (!daemon.is_ready()).then(|| format!("{daemon:?}")),
            peers,
            sync_problem,
            orphaned_blocks: s
                .blocks
                .newest(crate::blocks::MAX_BLOCKS)
                .into_iter()
                .filter(|b| b.status == BlockStatus::Orphaned)
                .map(|b| b.hash)
                .collect(),
        };
        watch.check(&observed, s.hashrates.offline_after(), &s.alerts);
    }
}

/// Shares of the best chain the pool's hashrate is measured over.
const POOL_RATE_SHARES: usize = 120;

/// The pool's hashrate from the share chain: the work of the newest best-chain shares over
/// the time they took (`None` with fewer than two shares or no time between them).
pub async fn pool_hashrate(chain: &ChainHandle) -> Option<f64> {
    chain
        .call(|c| {
            let index = c.index();
            let recent: Vec<(u32, u128)> = index
                .best_hash()
                .into_iter()
                .flat_map(|b| index.ancestors(b))
                .take(POOL_RATE_SHARES)
                .map(|e| (e.share.header.time, e.credits.weight))
                .collect();
            let (newest, oldest) = (recent.first()?.0, recent.last()?.0);
            let span = newest.checked_sub(oldest).filter(|s| *s > 0)?;
            // The oldest share's work was done before the span began.
            let work: u128 = recent[..recent.len() - 1].iter().map(|(_, w)| w).sum();
            Some(work as f64 / f64::from(span))
        })
        .await
        .ok()
        .flatten()
}

/// A found block's coinbase differs from what the share chain prescribes: counted and
/// alerted once per block (money was paid other than the chain says; asking again about
/// the same block is not a new mismatch).
pub(crate) fn note_payout_mismatch(s: &ApiSources, block: &str) {
    let raised = s.alerts.raise_once(
        now_secs(),
        "payout_mismatch",
        block.to_owned(),
        format!("block {block}'s coinbase does not pay what the share chain prescribes"),
    );
    if raised {
        NodeCounters::add(&s.counters.payout_mismatches, 1);
    }
}

/// Why the API could not start.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("cannot listen for the API on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot register the API methods: {0}")]
    Register(String),
}

/// The running API server; stops when dropped.
pub struct ApiServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
    sampler: JoinHandle<()>,
    watcher: JoinHandle<()>,
    /// Saved when the server stops, so a restart keeps the open buckets.
    history: Arc<History>,
}

impl ApiServer {
    /// Binds `addr` and serves the API from `sources`.
    pub async fn start(addr: SocketAddr, sources: ApiSources) -> Result<ApiServer, ApiError> {
        let sources = Arc::new(sources);
        let module = methods::module(sources.clone()).map_err(ApiError::Register)?;
        let tracked = sources.clone();
        let state = AppState {
            module: Arc::new(module),
            sources,
        };
        let app = Router::new()
            .route("/", get(assets::page).post(json_rpc))
            .route("/assets/{name}", get(assets::file))
            .route("/metrics", get(prometheus))
            .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ApiError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ApiError::Bind { addr, source })?;
        info!(%addr, "JSON-RPC API, dashboard and metrics listening");
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                warn!(error = %e, "the API server stopped");
            }
        });
        let sampled = tracked.clone();
        let sampler = tokio::spawn(async move {
            let tracked = sampled;
            let mut ticker = tokio::time::interval(std::time::Duration::from_secs(SAMPLE_SECS));
            loop {
                ticker.tick().await;
                let now = now_secs();
                tracked.hashrates.sample(now, &(tracked.stratum)());
                let pool = pool_hashrate(&tracked.chain).await;
                let addresses: Vec<(String, f64)> = tracked
                    .hashrates
                    .addresses(now)
                    .into_iter()
                    .filter_map(|(a, r)| Some((a, r.h10m?)))
                    .collect();
                let local = tracked.hashrates.local(now).h10m;
                tracked.history.record(now, pool, local, &addresses);
            }
        });
        let history = tracked.history.clone();
        let watcher = tokio::spawn(watch_alerts(tracked));
        Ok(ApiServer {
            addr,
            task,
            sampler,
            watcher,
            history,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
        self.sampler.abort();
        self.watcher.abort();
        self.history.flush();
    }
}

/// The share chain at a glance, read in one chain-thread call (for `getinfo` and metrics).
struct ChainStats {
    tip: Option<share_chain::ShareHash>,
    height: u64,
    shares: usize,
    orphans: usize,
    window_shares: usize,
    window_payees: usize,
}

impl ChainStats {
    async fn read(chain: &ChainHandle) -> Result<ChainStats, crate::chain_service::ChainStopped> {
        chain
            .call(|c| {
                let index = c.index();
                let window = index.tip_window();
                ChainStats {
                    tip: index.best_hash(),
                    height: index.best().map_or(0, |b| b.height),
                    shares: index.len(),
                    orphans: index.orphan_count(),
                    window_shares: window.map_or(0, |w| w.len()),
                    window_payees: window.map_or(0, |w| w.sums().len()),
                }
            })
            .await
    }
}

#[derive(Clone)]
struct AppState {
    module: Arc<RpcModule<Arc<ApiSources>>>,
    sources: Arc<ApiSources>,
}

async fn prometheus(State(state): State<AppState>) -> Response {
    match metrics::render(&state.sources).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
    }
}

/// One JSON-RPC 2.0 call per POST; the answer (success or error object) always comes back
/// with status 200 and a JSON body, as JSON-RPC over HTTP expects.
async fn json_rpc(State(state): State<AppState>, body: String) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    (json, answer_json_rpc(&state.module, &body).await).into_response()
}

/// The JSON-RPC answer to a POST body (already bounded by [`MAX_REQUEST_BYTES`] and valid
/// UTF-8): one call, dispatched by jsonrpsee. Public for the `rpc_request` fuzz target.
#[doc(hidden)]
pub async fn answer_json_rpc(module: &RpcModule<Arc<ApiSources>>, body: &str) -> String {
    if body.trim_start().starts_with('[') {
        return error_body(-32600, "batch requests are not supported");
    }
    match module.raw_json_request(body, 1).await {
        Ok((answer, _)) => {
            let text = answer.get().to_owned();
            if text.len() > MAX_RESPONSE_BYTES {
                return error_body(-32603, "the answer is too large");
            }
            text
        }
        // Not a JSON-RPC request object at all.
        Err(e) => error_body(-32700, &format!("parse error: {e}")),
    }
}

fn error_body(code: i32, message: &str) -> String {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": code, "message": message},
    })
    .to_string()
}
