//! The node's read-only API for operators and miners, on one HTTP listener (`--rpc`):
//!
//! - `POST /`: JSON-RPC 2.0 ([`methods`]): `getinfo`, `getpayoutinfo`, `getminerstats`,
//!   `getpeerinfo`, `getsharechain`. The dispatch, parameter parsing and error objects are
//!   jsonrpsee's; one call per request (batches are refused with a clear error).
//! - `GET /metrics`: Prometheus text exposition ([`metrics`]).
//! - `GET /`: a dashboard page that polls the JSON-RPC methods.
//!
//! Everything is read from the running parts (the chain thread, the Stratum server's
//! statistics, the daemon watcher, the network); nothing here changes node state, so the
//! API can be exposed to miners. Request bodies are bounded and answers are capped.

pub mod methods;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jsonrpsee::RpcModule;
use p2pool_network::NetworkHandle;
use share_chain::Preset;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::chain_service::ChainHandle;
use crate::counters::NodeCounters;
use crate::daemon::watcher::DaemonStatus;
use crate::p2p::SyncState;
use crate::stratum::StatsSnapshot;

/// Largest JSON-RPC request body accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest JSON-RPC answer produced (a full payout list of a big window fits easily).
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

const DASHBOARD: &str = include_str!("dashboard.html");

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
}

impl ApiServer {
    /// Binds `addr` and serves the API from `sources`.
    pub async fn start(addr: SocketAddr, sources: ApiSources) -> Result<ApiServer, ApiError> {
        let sources = Arc::new(sources);
        let module = methods::module(sources.clone()).map_err(ApiError::Register)?;
        let state = AppState {
            module: Arc::new(module),
            sources,
        };
        let app = Router::new()
            .route("/", get(dashboard).post(json_rpc))
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
        Ok(ApiServer { addr, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
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

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
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
