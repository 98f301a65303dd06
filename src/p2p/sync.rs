//! The syncer: catches up from peers, one at a time, so a burst of orphans does not turn
//! into a burst of identical fetches. It asks a peer's tip and fetches batches of its best
//! chain after a locator of ours; if the peer's chain does not build on anything we hold,
//! it fetches the whole chain with the uncles it names and joins it; then it fetches by hash
//! what the orphan pool waits for.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use p2pool_network::{Misbehaviour, NetworkError, NetworkHandle, PeerId};
use share_chain::join::PeerChain;
use share_chain::locator::locator;
use share_chain::sharechain::ChainError;
use share_chain::{Share, ShareHash};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::gossip::{connect_batch, connect_bytes, Outcome};
use super::{now_secs, set_state, SyncState};
use crate::chain_service::ChainHandle;

/// The most batches one catch-up fetches before asking the peer's tip again; bounds a
/// peer that keeps feeding shares that never reach its claimed tip.
const MAX_BATCHES: usize = 1000;

/// The most shares a join accumulates: a peer keeps about `base_len` plus a margin; far
/// more means it is feeding us a chain that never ends.
fn max_join_run(base_len: usize) -> usize {
    base_len * 2 + 4096
}

/// How many rounds of by-hash fetches one catch-up makes for what the orphan pool waits
/// for (a fetched share may itself wait for another).
const MISSING_ROUNDS: usize = 8;

/// Catches up from peers, one at a time.
pub(super) struct Syncer {
    pub(super) handle: NetworkHandle,
    pub(super) chain: ChainHandle,
    pub(super) max_locator: usize,
    pub(super) batch: u32,
    pub(super) base_len: usize,
    pub(super) syncing: Arc<AtomicBool>,
    pub(super) state: Arc<watch::Sender<SyncState>>,
    /// Per peer, the tip of a chain we chose not to join (it has less recent work than
    /// ours): not fetched again until the peer's tip changes.
    pub(super) declined: std::sync::Mutex<std::collections::HashMap<PeerId, ShareHash>>,
    /// When the next sync request may go out (see [`Syncer::pace`]).
    pub(super) next_request: tokio::sync::Mutex<tokio::time::Instant>,
}

/// Spacing of our sync requests: at most 80 % of the inbound rate a peer allows by default
/// (`ScoreConfig::request_rate`), bursts included.
const REQUEST_SPACING: std::time::Duration = std::time::Duration::from_millis(
    (1000.0 / (0.8 * p2pool_network::DEFAULT_REQUEST_RATE)) as u64,
);

/// Peers remembered in [`Syncer::declined`] at most.
const MAX_DECLINED: usize = 1024;

/// What a catch-up received: shares it connected, or a chain to join.
enum Fetched {
    Connected,
    Join(Vec<Share>),
}

impl Syncer {
    pub(super) async fn run(self, mut requests: mpsc::UnboundedReceiver<PeerId>) {
        while let Some(first) = requests.recv().await {
            // Several orphans from one peer in a row need one catch-up, not several.
            let mut peers = vec![first];
            let mut seen: HashSet<PeerId> = HashSet::from([first]);
            while let Ok(peer) = requests.try_recv() {
                if seen.insert(peer) {
                    peers.push(peer);
                }
            }
            self.syncing.store(true, Ordering::Relaxed);
            for peer in peers {
                if let Err(e) = self.catch_up(peer).await {
                    debug!(%peer, error = %e, "sync with peer stopped");
                }
            }
            self.syncing.store(false, Ordering::Relaxed);
            // Every peer we were asked about has been tried: serve again. (A peer that
            // refuses or fails cannot hold our miners hostage.)
            set_state(&self.state, |s| {
                matches!(s, SyncState::Syncing { .. }).then_some(SyncState::Synced)
            });
        }
    }

    /// Waits until the next sync request may go out. The syncer asks one peer at a time,
    /// so spacing all its requests keeps each peer's inbound rate under the network's
    /// default limit, which a peer punishes as a flood.
    async fn pace(&self) {
        let mut next = self.next_request.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = tokio::time::Instant::now() + REQUEST_SPACING;
    }

    /// Most hashes in one `GetSharesByHash`.
    fn by_hash_max(&self) -> usize {
        self.max_locator.min(self.batch as usize).max(1)
    }

    fn progress(&self, peer: PeerId, received: usize, needed: Option<usize>) {
        set_state(&self.state, |_| {
            Some(SyncState::Syncing {
                peer,
                received,
                needed,
            })
        });
    }

    /// Fetches `peer`'s best chain until we hold its tip or it sends nothing new, joining it
    /// if it does not build on ours; then fetches what our orphans wait for.
    async fn catch_up(&self, peer: PeerId) -> Result<(), NetworkError> {
        self.pace().await;
        if let Some(tip) = self.handle.request_tip(peer).await? {
            let known = self
                .chain
                .call(move |c| c.index().contains(&tip.hash))
                .await
                .unwrap_or(true);
            let declined = self
                .declined
                .lock()
                .is_ok_and(|d| d.get(&peer) == Some(&tip.hash));
            if declined {
                debug!(%peer, tip = %tip.hash, "the peer's chain was declined already");
            } else if !known {
                info!(%peer, tip = %tip.hash, height = tip.height, "syncing from peer");
                if let Fetched::Join(run) = self.fetch_chain(peer, tip.hash).await? {
                    self.join(peer, run).await?;
                }
            }
        }
        self.fetch_missing(peer).await
    }

    /// Batches of `peer`'s best chain up to `tip`, connected as they come; or, if the first
    /// batch does not build on anything we hold, the whole chain, for [`Self::join`].
    async fn fetch_chain(&self, peer: PeerId, tip: ShareHash) -> Result<Fetched, NetworkError> {
        let (mut received, mut connected) = (0usize, 0usize);
        let mut last: Option<ShareHash> = None;
        let mut run: Vec<Share> = Vec::new();
        for round in 0..MAX_BATCHES {
            let loc = match last {
                // Joining: the peer continues after the last share it sent.
                Some(last) if !run.is_empty() => vec![last],
                _ => {
                    let max_locator = self.max_locator;
                    let mut loc = self
                        .chain
                        .call(move |c| locator(c.index(), max_locator))
                        .await
                        .unwrap_or_default();
                    // Continue after what the peer sent last even if it is not (yet) our
                    // best chain.
                    if let Some(last) = last {
                        if !loc.contains(&last) {
                            loc.insert(0, last);
                            loc.truncate(self.max_locator);
                        }
                    }
                    loc
                }
            };
            self.pace().await;
            let batch = self
                .handle
                .request_shares(peer, loc, Some(tip), self.batch)
                .await?;
            if batch.is_empty() {
                break;
            }
            let mut shares = Vec::with_capacity(batch.len());
            for data in batch {
                match Share::decode(&data) {
                    Ok(share) => shares.push(share),
                    Err(e) => {
                        debug!(%peer, error = %e, "undecodable share in a sync batch");
                        self.handle.penalize(peer, Misbehaviour::Garbage).await?;
                        return Ok(Fetched::Connected);
                    }
                }
            }
            received += shares.len();
            last = shares.last().map(Share::hash);
            if round == 0 && run.is_empty() {
                let parent = shares[0].info.prev_share;
                // A chain's first share builds on ours only when we hold none: a node with
                // a chain takes another first share only through a join (PROTOCOL.md §10).
                let builds_on_ours = self
                    .chain
                    .call(move |c| {
                        let index = c.index();
                        if parent.is_zero() {
                            index.is_empty()
                        } else {
                            index.contains(&parent)
                        }
                    })
                    .await
                    .unwrap_or(true);
                if !builds_on_ours {
                    info!(
                        %peer,
                        needed = self.base_len + 1,
                        "the peer's chain does not build on ours: fetching it whole to join"
                    );
                    run = shares;
                    self.progress(peer, received, Some(self.base_len + 1));
                    continue;
                }
            } else if !run.is_empty() {
                if run.last().map(Share::hash) != Some(shares[0].info.prev_share) {
                    // The peer's best chain moved under us: join what we have, if enough.
                    debug!(%peer, "the peer's chain changed while we fetched it");
                    break;
                }
                run.extend(shares);
                self.progress(peer, received, Some(self.base_len + 1));
                if run.len() > max_join_run(self.base_len) {
                    warn!(%peer, shares = run.len(), "the peer's chain does not end; not joining it");
                    return Ok(Fetched::Connected);
                }
                if last == Some(tip) {
                    break;
                }
                continue;
            }
            if round > 0 {
                // More than one batch behind: not synced until this is done.
                self.progress(peer, received, None);
            }
            let mut new = 0usize;
            for result in connect_batch(&self.chain, shares).await {
                match result {
                    Outcome::Connected(n) => {
                        connected += n;
                        new += 1;
                    }
                    Outcome::Orphan => new += 1,
                    Outcome::Duplicate | Outcome::Unripe => {}
                    Outcome::Invalid => {
                        self.handle
                            .penalize(peer, Misbehaviour::InvalidShare)
                            .await?;
                        return Ok(Fetched::Connected);
                    }
                    Outcome::Garbage => {
                        self.handle.penalize(peer, Misbehaviour::Garbage).await?;
                        return Ok(Fetched::Connected);
                    }
                    Outcome::Unavailable => return Ok(Fetched::Connected),
                }
            }
            let have_tip = self
                .chain
                .call(move |c| c.index().contains(&tip))
                .await
                .unwrap_or(true);
            info!(%peer, received, connected, "sync progress");
            if have_tip || new == 0 {
                break;
            }
        }
        if run.is_empty() {
            info!(%peer, received, connected, "sync with peer done");
            Ok(Fetched::Connected)
        } else {
            Ok(Fetched::Join(run))
        }
    }

    /// Fetches the uncles `run` names and joins the chain through the chain thread.
    async fn join(&self, peer: PeerId, run: Vec<Share>) -> Result<(), NetworkError> {
        let in_run: HashSet<ShareHash> = run.iter().map(Share::hash).collect();
        let mut wanted: Vec<ShareHash> = run
            .iter()
            .flat_map(|s| s.info.uncles.iter().copied())
            .filter(|u| !in_run.contains(u))
            .collect();
        wanted.sort();
        wanted.dedup();
        let mut uncles = Vec::new();
        for chunk in wanted.chunks(self.by_hash_max()) {
            self.pace().await;
            for data in self
                .handle
                .request_shares_by_hash(peer, chunk.to_vec())
                .await?
            {
                match Share::decode(&data) {
                    Ok(share) => uncles.push(share),
                    Err(_) => {
                        self.handle.penalize(peer, Misbehaviour::Garbage).await?;
                        return Ok(());
                    }
                }
            }
        }
        let (len, uncle_count) = (run.len(), uncles.len());
        let run_tip = run.last().map(Share::hash);
        let chain = PeerChain { run, uncles };
        let result = self
            .chain
            .call(move |c| c.join(chain, now_secs(), share_chain::Work::ZERO))
            .await;
        match result {
            Ok(Ok(joined)) => info!(
                %peer,
                shares = len,
                uncles = uncle_count,
                base = joined.base,
                validated = joined.validated,
                tip = %joined.tip,
                "joined the peer's share chain"
            ),
            Ok(Err(ChainError::Join(e))) if e.is_punishable() => {
                warn!(%peer, error = %e, "the peer's chain is invalid");
                self.handle
                    .penalize(peer, Misbehaviour::InvalidShare)
                    .await?;
            }
            Ok(Err(e)) => {
                info!(%peer, error = %e, "not joining the peer's chain");
                if let (Some(tip), Ok(mut declined)) = (run_tip, self.declined.lock()) {
                    if declined.len() >= MAX_DECLINED {
                        declined.clear();
                    }
                    declined.insert(peer, tip);
                }
            }
            Err(_) => debug!("the chain thread is gone"),
        }
        Ok(())
    }

    /// Asks `peer` for the shares our orphans wait for (parents and uncles), a batch at a
    /// time, while that brings new shares.
    async fn fetch_missing(&self, peer: PeerId) -> Result<(), NetworkError> {
        for _ in 0..MISSING_ROUNDS {
            let batch = self.by_hash_max();
            let missing = self
                .chain
                .call(move |c| {
                    let mut m = c.index().missing();
                    m.sort();
                    m.truncate(batch);
                    m
                })
                .await
                .unwrap_or_default();
            if missing.is_empty() {
                return Ok(());
            }
            self.pace().await;
            let shares = self.handle.request_shares_by_hash(peer, missing).await?;
            if shares.is_empty() {
                return Ok(());
            }
            let mut connected = 0;
            for data in shares {
                match connect_bytes(&self.chain, data).await {
                    Outcome::Connected(n) => connected += n,
                    Outcome::Invalid => {
                        return self
                            .handle
                            .penalize(peer, Misbehaviour::InvalidShare)
                            .await
                            .map(drop);
                    }
                    Outcome::Garbage => {
                        return self
                            .handle
                            .penalize(peer, Misbehaviour::Garbage)
                            .await
                            .map(drop);
                    }
                    _ => {}
                }
            }
            debug!(%peer, connected, "fetched missing shares");
            if connected == 0 {
                return Ok(());
            }
        }
        Ok(())
    }
}

