//! The share chain on its own thread, reached through an async handle.
//!
//! [`ShareChain`] is synchronous (and its LevelDB store is not `Send`), so it lives on one
//! dedicated thread and everything else sends it closures to run. One owner means no locks
//! around consensus state, and a slow disk write never blocks the async reactor. After each
//! closure the thread publishes the chain's summary on a `watch` channel, so the Stratum
//! side learns of a new tip without polling.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::thread;

use share_chain::sharechain::{ChainError, LoadReport, ShareChain};
use share_chain::{Preset, ShareHash};
use thiserror::Error;
use tokio::sync::{oneshot, watch};

type Job = Box<dyn FnOnce(&mut ShareChain) + Send>;

/// What is cheap to know about the chain at any time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainSummary {
    pub tip: Option<ShareHash>,
    pub height: u64,
    pub shares: usize,
    pub orphans: usize,
}

impl ChainSummary {
    fn of(chain: &ShareChain) -> Self {
        let index = chain.index();
        ChainSummary {
            tip: index.best_hash(),
            height: index.best().map_or(0, |b| b.height),
            shares: index.len(),
            orphans: index.orphan_count(),
        }
    }
}

/// Why the chain could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("cannot start the share chain thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the share chain thread died while opening the store")]
    Died,
}

/// The chain thread has stopped (it panicked or the node is shutting down).
#[derive(Debug, Error)]
#[error("the share chain thread has stopped")]
pub struct ChainStopped;

/// A cheap, cloneable handle to the chain thread.
#[derive(Clone)]
pub struct ChainHandle {
    jobs: std_mpsc::Sender<Job>,
    summary: watch::Receiver<ChainSummary>,
}

impl ChainHandle {
    /// Opens the chain in `datadir` on a new thread.
    pub fn open(datadir: PathBuf, preset: Preset) -> Result<(ChainHandle, LoadReport), OpenError> {
        let (jobs, inbox) = std_mpsc::channel::<Job>();
        let (opened_tx, opened_rx) = std_mpsc::channel();
        let (summary_tx, summary) = watch::channel(ChainSummary::default());
        thread::Builder::new()
            .name("share-chain".into())
            .spawn(move || {
                let mut chain = match ShareChain::open(&datadir, &preset) {
                    Ok((chain, report)) => {
                        let _ = opened_tx.send(Ok(report));
                        chain
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                summary_tx.send_replace(ChainSummary::of(&chain));
                while let Ok(job) = inbox.recv() {
                    job(&mut chain);
                    let now = ChainSummary::of(&chain);
                    summary_tx.send_if_modified(|old| {
                        let changed = *old != now;
                        *old = now;
                        changed
                    });
                }
            })?;
        let report = opened_rx.recv().map_err(|_| OpenError::Died)??;
        Ok((ChainHandle { jobs, summary }, report))
    }

    /// Runs `f` on the chain thread and returns its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ShareChain) -> R + Send + 'static,
    ) -> Result<R, ChainStopped> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |chain| {
                let _ = tx.send(f(chain));
            }))
            .map_err(|_| ChainStopped)?;
        rx.await.map_err(|_| ChainStopped)
    }

    pub fn summary(&self) -> ChainSummary {
        self.summary.borrow().clone()
    }

    /// Changes of the chain's summary (a new tip, more shares).
    pub fn subscribe(&self) -> watch::Receiver<ChainSummary> {
        self.summary.clone()
    }
}
