//! Aux chain daemons (dogecoind): merged mining's side of the daemon.
//!
//! An aux daemon gives block templates like litecoind's (`getblocktemplate`), from which the
//! node takes the aux block a share mines ([`AuxTemplate::block`]); the share chain fills in
//! its coinbase (the window's payouts, docs/PROTOCOL.md §15). [`AuxWatcher`] keeps the newest
//! template of each aux daemon: it polls the best block every half second and refreshes the
//! template every ten seconds for new transactions. A found aux block goes back by
//! `submitblock` with its AuxPoW ([`AuxTemplate::assemble`]).
//!
//! The chain is learnt from the daemon: the template's version carries the chain id in its
//! upper 16 bits, which must be one of the preset's `aux_chains`. A daemon that is down at
//! start, or stops, or restarts, is only left out of the work meanwhile: the parent chain's
//! mining never waits for it, and its state is visible ([`AuxStatus`], `getinfo`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use share_chain::auxpow::{aux_block_version, encode_aux_block, AuxPow};
use share_chain::coinbase::aux_coinbase_script_sig;
use share_chain::merkle::coinbase_merkle_branch;
use share_chain::params::AuxChainParams;
use share_chain::share::AuxBlock;
use share_chain::{Preset, Target};
use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

use super::rpc::{RpcClient, RpcError, SubmitOutcome};
use super::template::{BlockTemplate, TemplateError};
use crate::work::COINBASE_TAG;

/// How often the aux daemon's best block is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often the template is refreshed on the same block (new transactions).
const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Why an aux daemon cannot be used.
#[derive(Debug, Error)]
pub enum AuxError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("aux template: {0}")]
    Template(#[from] TemplateError),
    #[error(
        "the aux daemon mines chain id {0}, which this network does not merge-mine (its \
         preset lists {1})"
    )]
    UnknownChain(u32, String),
}

/// An aux daemon's newest template, as the share chain and the block assembly need it.
#[derive(Clone, Debug)]
pub struct AuxTemplate {
    pub chain: AuxChainParams,
    /// The aux block a share mines (its coinbase outputs are the share chain's to fill in).
    pub block: AuxBlock,
    pub target: Target,
    pub height: u32,
    /// The template's other transactions, serialized, in block order.
    pub transactions: Vec<Vec<u8>>,
}

impl AuxTemplate {
    /// The aux block of a template from the daemon of `chain`.
    pub fn from_template(template: &BlockTemplate, chain: &AuxChainParams) -> Self {
        let txids: Vec<[u8; 32]> = template.txids().copied().collect();
        AuxTemplate {
            chain: chain.clone(),
            block: AuxBlock {
                chain_id: chain.chain_id,
                version: aux_block_version(template.version as i32, chain.chain_id),
                prev_block: template.previous_block_hash,
                time: template.cur_time.max(template.min_time),
                bits: template.bits,
                coinbase_script_sig: aux_coinbase_script_sig(
                    u64::from(template.height),
                    COINBASE_TAG,
                ),
                coinbase_value: template.coinbase_value,
                merkle_branch: coinbase_merkle_branch(&txids),
            },
            target: template.target,
            height: template.height,
            transactions: template
                .transactions
                .iter()
                .map(|t| t.data.clone())
                .collect(),
        }
    }

    /// The aux block's bytes for `submitblock`: `header` (from the share template), its
    /// AuxPoW, the coinbase paying `payouts`, then the template's transactions.
    pub fn assemble(
        &self,
        header: &share_chain::BlockHeader,
        auxpow: &AuxPow,
        coinbase: &share_chain::coinbase::Coinbase,
    ) -> Vec<u8> {
        let mut transactions = Vec::with_capacity(1 + self.transactions.len());
        transactions.push(coinbase.to_bytes());
        transactions.extend(self.transactions.iter().cloned());
        encode_aux_block(header, auxpow, &transactions)
    }
}

/// An aux daemon: its RPC and the chain it mines, learnt from its first template.
pub struct AuxDaemon {
    rpc: Arc<RpcClient>,
    /// The preset's aux chains: the daemon's must be one of them.
    known: Vec<AuxChainParams>,
    chain: OnceLock<AuxChainParams>,
}

impl AuxDaemon {
    /// A daemon not yet asked anything: it may be down now, and come up later.
    pub fn new(rpc: Arc<RpcClient>, preset: &Preset) -> Self {
        AuxDaemon {
            rpc,
            known: preset.aux_chains.clone(),
            chain: OnceLock::new(),
        }
    }

    pub fn url(&self) -> &str {
        self.rpc.url()
    }

    /// Its JSON-RPC client (for reading blocks back: status, payouts).
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// The chain it mines, once a template has said.
    pub fn chain(&self) -> Option<&AuxChainParams> {
        self.chain.get()
    }

    /// Its newest template (the first one also says which chain it mines: one of the
    /// preset's, else an error naming them).
    pub async fn template(&self) -> Result<AuxTemplate, AuxError> {
        let template = fetch(&self.rpc).await?;
        let chain = match self.chain.get() {
            Some(chain) => chain,
            None => {
                let chain_id = template.version >> 16;
                let chain = self
                    .known
                    .iter()
                    .find(|c| c.chain_id == chain_id)
                    .cloned()
                    .ok_or_else(|| {
                        let known: Vec<String> = self
                            .known
                            .iter()
                            .map(|c| format!("{} ({})", c.chain, c.chain_id))
                            .collect();
                        AuxError::UnknownChain(chain_id, known.join(", "))
                    })?;
                info!(chain = %chain.chain, chain_id, url = self.rpc.url(), "aux daemon connected");
                self.chain.get_or_init(|| chain)
            }
        };
        Ok(AuxTemplate::from_template(&template, chain))
    }

    pub async fn submit(&self, block: &[u8]) -> Result<SubmitOutcome, RpcError> {
        self.rpc.submit_block(block).await
    }

    /// Whether the block `hash` (internal byte order) is on the aux daemon's best chain.
    pub async fn in_best_chain(&self, hash: [u8; 32]) -> Result<bool, RpcError> {
        self.rpc.block_in_best_chain(hash).await
    }
}

async fn fetch(rpc: &RpcClient) -> Result<BlockTemplate, AuxError> {
    // Dogecoin Core takes no rules (it has no segwit or MWEB to opt into).
    let value: Value = rpc.call("getblocktemplate", vec![json!({})]).await?;
    Ok(BlockTemplate::from_json(value)?)
}

/// What an aux daemon is doing, for the node (its newest template) and the operator.
#[derive(Clone, Debug, Default)]
pub struct AuxStatus {
    pub url: String,
    /// The chain it mines, once learnt.
    pub chain: Option<String>,
    /// `ready`, or why not (unreachable, no template, another chain).
    pub state: String,
    /// `None` while it has none: the node then mines without that chain.
    pub template: Option<Arc<AuxTemplate>>,
}

/// Keeps the newest template of one aux daemon. A daemon that is down, not ready or
/// restarting costs the parent chain nothing: its chain is left out of the work until it
/// serves templates again.
pub struct AuxWatcher {
    pub daemon: Arc<AuxDaemon>,
    status: watch::Receiver<AuxStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl AuxWatcher {
    pub fn spawn(daemon: Arc<AuxDaemon>) -> Self {
        let (tx, rx) = watch::channel(AuxStatus {
            url: daemon.url().to_owned(),
            state: "connecting".into(),
            ..AuxStatus::default()
        });
        let task = tokio::spawn(watch_aux(daemon.clone(), tx));
        AuxWatcher {
            daemon,
            status: rx,
            task,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<AuxStatus> {
        self.status.clone()
    }
}

impl Drop for AuxWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_aux(daemon: Arc<AuxDaemon>, tx: watch::Sender<AuxStatus>) {
    let mut best: Option<[u8; 32]> = None;
    let mut last_refresh = tokio::time::Instant::now();
    let mut failing = false;
    let status = |state: String, template: Option<Arc<AuxTemplate>>| AuxStatus {
        url: daemon.url().to_owned(),
        chain: daemon.chain().map(|c| c.chain.clone()),
        state,
        template,
    };
    loop {
        let tip = daemon.rpc.get_best_block_hash().await;
        let due = last_refresh.elapsed() >= REFRESH_INTERVAL;
        let missing = tx.borrow().template.is_none();
        let failure = match tip {
            Ok(tip) if Some(tip) != best || due || missing => match daemon.template().await {
                Ok(template) => {
                    if failing {
                        info!(url = daemon.url(), "aux daemon serves templates again");
                        failing = false;
                    }
                    best = Some(tip);
                    last_refresh = tokio::time::Instant::now();
                    tx.send_replace(status("ready".into(), Some(Arc::new(template))));
                    None
                }
                Err(e) => Some(format!("no template: {e}")),
            },
            Ok(_) => None,
            Err(e) => Some(format!("unreachable: {e}")),
        };
        if let Some(reason) = failure {
            if !failing {
                warn!(url = daemon.url(), %reason, "aux daemon: mining without it until it is back");
                failing = true;
            }
            best = None;
            tx.send_replace(status(reason, None));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The newest templates of all `watchers`, ascending by chain id, as one feed (a chain
/// whose daemon has no template is left out). The returned task keeps the feed alive, even
/// with no aux daemon at all.
pub fn merge_feeds(
    watchers: &[AuxWatcher],
) -> (
    watch::Receiver<Vec<Arc<AuxTemplate>>>,
    tokio::task::JoinHandle<()>,
) {
    let mut feeds: Vec<_> = watchers.iter().map(AuxWatcher::subscribe).collect();
    let template = |f: &mut watch::Receiver<AuxStatus>| f.borrow_and_update().template.clone();
    let (tx, rx) = watch::channel(Vec::new());
    let task = tokio::spawn(async move {
        loop {
            let mut current: Vec<Arc<AuxTemplate>> =
                feeds.iter_mut().filter_map(template).collect();
            current.sort_by_key(|t| t.chain.chain_id);
            current.dedup_by_key(|t| t.chain.chain_id);
            tx.send_replace(current);
            if feeds.is_empty() {
                // Nothing will ever change; the sender stays, so receivers never see it
                // closed.
                std::future::pending::<()>().await;
            }
            let changes = feeds.iter_mut().map(|f| Box::pin(f.changed()));
            let (changed, _, _) = futures::future::select_all(changes).await;
            if changed.is_err() {
                std::future::pending::<()>().await;
            }
        }
    });
    (rx, task)
}
