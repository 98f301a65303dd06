//! The syncer: catches up from peers, one at a time, so a burst of orphans does not turn
//! into a burst of identical fetches. It asks a peer's tip and fetches batches of its best
//! chain after a locator of ours; if the peer's chain does not build on anything we hold,
//! it fetches the whole chain with the uncles it names and joins it; then it fetches by hash
//! what the orphan pool waits for.
//!
//! No peer can hold it: each catch-up has a deadline and, after a grace, a minimum rate of
//! shares; a peer that misses either is not synced from for a while and the others are
//! tried. A node without a chain first gathers its peers' offers for a moment and tries the
//! one claiming the most work first, and takes none claiming less than the minimum.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use p2pool_network::{Misbehaviour, NetworkError, NetworkHandle, PeerId, TipInfo, Work};
use share_chain::join::PeerChain;
use share_chain::locator::locator;
use share_chain::sharechain::ChainError;
use share_chain::{Share, ShareHash};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::gossip::{connect_batch, connect_bytes, Outcome};
use super::{now_secs, set_state, SyncPolicy, SyncState};
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
    /// Whether the node's chain is usable (see [`super::P2p::start`]): then catch-ups do not
    /// pause the miners.
    pub(super) usable: Arc<AtomicBool>,
    pub(super) policy: SyncPolicy,
    /// See [`super::P2pConfig::min_join_work`]; set through [`super::MinJoinWork`].
    pub(super) min_join_work: watch::Receiver<Work>,
    /// Per peer, the tip of a chain we chose not to join (it has less recent work than
    /// ours): not fetched again until the peer's tip changes.
    pub(super) declined: std::sync::Mutex<HashMap<PeerId, ShareHash>>,
    /// Peers found too slow, and until when they are not synced from.
    pub(super) slow: std::sync::Mutex<HashMap<PeerId, Instant>>,
    /// When the next sync request may go out (see [`Syncer::pace`]).
    pub(super) next_request: tokio::sync::Mutex<tokio::time::Instant>,
}

/// Spacing of our sync requests: at most 80 % of the inbound rate a peer allows by default
/// (`ScoreConfig::request_rate`), bursts included.
const REQUEST_SPACING: std::time::Duration = std::time::Duration::from_millis(
    (1000.0 / (0.8 * p2pool_network::DEFAULT_REQUEST_RATE)) as u64,
);

/// Peers remembered in [`Syncer::declined`] (and in [`Syncer::slow`]) at most.
const MAX_DECLINED: usize = 1024;

/// What a catch-up received: shares it connected, or a chain to join.
enum Fetched {
    Connected,
    Join(Vec<Share>),
}

/// Why a catch-up from a peer stopped early.
#[derive(Debug, thiserror::Error)]
pub(super) enum SyncError {
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("{received} shares in {elapsed:?}: slower than the minimum rate")]
    TooSlow { received: usize, elapsed: Duration },
    #[error("not done within the deadline of {0:?}")]
    Deadline(Duration),
}

impl Syncer {
    pub(super) async fn run(self, mut requests: mpsc::UnboundedReceiver<PeerId>) {
        while let Some(first) = requests.recv().await {
            // Several orphans from one peer in a row need one catch-up, not several.
            let mut peers = vec![first];
            let mut seen: HashSet<PeerId> = HashSet::from([first]);
            self.syncing.store(true, Ordering::Relaxed);
            if !self.has_chain().await {
                self.gather(&mut requests, &mut peers, &mut seen).await;
                self.rank_offers(&mut peers).await;
            }
            while let Ok(peer) = requests.try_recv() {
                if seen.insert(peer) {
                    peers.push(peer);
                }
            }
            let round = Instant::now();
            let mut next = 0;
            while let Some(&peer) = peers.get(next) {
                next += 1;
                match self.catch_up_bounded(peer).await {
                    Ok(()) => {}
                    Err(SyncError::Network(e)) => {
                        debug!(%peer, error = %e, "sync with peer stopped")
                    }
                    Err(e) => {
                        warn!(%peer, error = %e, "peer too slow to sync from; trying the others");
                        self.mark_slow(peer);
                        for other in self.other_peers(&seen).await {
                            seen.insert(other);
                            peers.push(other);
                        }
                    }
                }
                if round.elapsed() >= self.policy.deadline {
                    // However many peers are left to try, the miners wait no longer.
                    self.release().await;
                }
            }
            self.syncing.store(false, Ordering::Relaxed);
            // Every peer we were asked about has been tried: serve again. (A peer that
            // refuses or fails cannot hold our miners hostage.)
            self.release().await;
        }
    }

    /// Ends a pause of the miners: from now on a chain the node holds is usable.
    async fn release(&self) {
        if self.has_chain().await {
            self.usable.store(true, Ordering::Relaxed);
        }
        set_state(&self.state, |s| {
            matches!(s, SyncState::Syncing { .. }).then_some(SyncState::Synced)
        });
    }

    async fn has_chain(&self) -> bool {
        self.chain
            .call(|c| c.index().best_hash().is_some())
            .await
            .unwrap_or(false)
    }

    /// Without a chain: waits for more peers to connect, for the join window after the
    /// first or until the quorum, so the first peer to answer does not choose our chain.
    async fn gather(
        &self,
        requests: &mut mpsc::UnboundedReceiver<PeerId>,
        peers: &mut Vec<PeerId>,
        seen: &mut HashSet<PeerId>,
    ) {
        let until = Instant::now() + self.policy.join_window;
        while peers.len() < self.policy.join_quorum {
            match tokio::time::timeout_at(until, requests.recv()).await {
                Ok(Some(peer)) => {
                    if seen.insert(peer) {
                        peers.push(peer);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Orders `peers` by the work their tips claim, most first (then the higher tip, then
    /// by id); peers without a tip come last. The claim is only a hint of which chain to
    /// fetch first: the chain itself is validated, and a lighter one is replaced by a
    /// heavier one as usual.
    async fn rank_offers(&self, peers: &mut [PeerId]) {
        let asks = peers.iter().map(|&peer| async move {
            self.pace().await;
            let tip = self.handle.request_tip(peer).await.ok().flatten();
            (peer, tip)
        });
        let offers: HashMap<PeerId, TipInfo> = join_all(asks)
            .await
            .into_iter()
            .filter_map(|(peer, tip)| Some((peer, tip?)))
            .collect();
        let key = |p: &PeerId| offers.get(p).map(|t| (t.chain_work, t.height));
        peers.sort_by(|a, b| key(b).cmp(&key(a)).then(a.cmp(b)));
        info!(
            peers = peers.len(),
            offers = offers.len(),
            "no chain yet: chose the order of the peers' offers"
        );
    }

    /// Connected peers on our network not in `seen` and not too slow.
    async fn other_peers(&self, seen: &HashSet<PeerId>) -> Vec<PeerId> {
        let mut others: Vec<PeerId> = self
            .handle
            .peers()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.agent_version.is_some() && !seen.contains(&p.peer))
            .map(|p| p.peer)
            .filter(|p| !self.is_slow(p))
            .collect();
        others.sort();
        others
    }

    fn is_slow(&self, peer: &PeerId) -> bool {
        self.slow
            .lock()
            .is_ok_and(|s| s.get(peer).is_some_and(|until| *until > Instant::now()))
    }

    fn mark_slow(&self, peer: PeerId) {
        if let Ok(mut slow) = self.slow.lock() {
            let now = Instant::now();
            if slow.len() >= MAX_DECLINED {
                slow.retain(|_, until| *until > now);
                if slow.len() >= MAX_DECLINED {
                    slow.clear();
                }
            }
            slow.insert(peer, now + self.policy.slow_cooldown);
        }
    }

    /// [`Self::catch_up`] within the deadline, unless the peer is on its slow cooldown.
    async fn catch_up_bounded(&self, peer: PeerId) -> Result<(), SyncError> {
        if self.is_slow(&peer) {
            debug!(%peer, "not syncing from a peer found too slow");
            return Ok(());
        }
        let started = Instant::now();
        let deadline = self.policy.deadline;
        tokio::time::timeout(deadline, self.catch_up(peer, started))
            .await
            .map_err(|_| SyncError::Deadline(deadline))?
    }

    /// Fails once past the grace if fewer than the minimum rate of shares came in since
    /// `started`.
    fn check_rate(&self, started: Instant, received: usize) -> Result<(), SyncError> {
        let elapsed = started.elapsed();
        let needed = u128::from(self.policy.min_rate) * elapsed.as_millis();
        if elapsed > self.policy.grace && (received as u128) * 1000 < needed {
            return Err(SyncError::TooSlow { received, elapsed });
        }
        Ok(())
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

    /// Reports a catch-up that pauses the miners, unless the chain is usable.
    fn progress(&self, peer: PeerId, received: usize, needed: Option<usize>) {
        if self.usable.load(Ordering::Relaxed) {
            return;
        }
        set_state(&self.state, |_| {
            Some(SyncState::Syncing {
                peer,
                received,
                needed,
            })
        });
    }

    /// Fetches `peer`'s best chain until we hold its tip or it sends nothing new, joining it
    /// if it does not build on ours; then fetches what our orphans wait for. Without a chain
    /// of our own, a tip claiming less than the minimum work is not taken.
    /// The least work a chain must have to be joined, as the node last set it.
    fn min_join_work(&self) -> Work {
        *self.min_join_work.borrow()
    }

    async fn catch_up(&self, peer: PeerId, started: Instant) -> Result<(), SyncError> {
        self.pace().await;
        if let Some(tip) = self.handle.request_tip(peer).await? {
            let (known, have_chain) = self
                .chain
                .call(move |c| (c.index().contains(&tip.hash), c.index().best().is_some()))
                .await
                .unwrap_or((true, true));
            let declined = self
                .declined
                .lock()
                .is_ok_and(|d| d.get(&peer) == Some(&tip.hash));
            if declined {
                debug!(%peer, tip = %tip.hash, "the peer's chain was declined already");
            } else if !have_chain && tip.chain_work < self.min_join_work() {
                info!(
                    %peer,
                    work = tip.chain_work.0,
                    min = self.min_join_work().0,
                    "the peer's chain claims less work than a chain must have to be joined"
                );
                self.decline(peer, tip.hash);
            } else if !known {
                info!(%peer, tip = %tip.hash, height = tip.height, "syncing from peer");
                if let Fetched::Join(run) = self.fetch_chain(peer, tip.hash, started).await? {
                    self.join(peer, run, started).await?;
                }
            }
        }
        Ok(self.fetch_missing(peer).await?)
    }

    /// Remembers not to fetch `peer`'s chain again while its tip stays `tip`.
    fn decline(&self, peer: PeerId, tip: ShareHash) {
        if let Ok(mut declined) = self.declined.lock() {
            if declined.len() >= MAX_DECLINED {
                declined.clear();
            }
            declined.insert(peer, tip);
        }
    }

    /// Batches of `peer`'s best chain up to `tip`, connected as they come; or, if the first
    /// batch does not build on anything we hold, the whole chain, for [`Self::join`].
    async fn fetch_chain(
        &self,
        peer: PeerId,
        tip: ShareHash,
        started: Instant,
    ) -> Result<Fetched, SyncError> {
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
            self.check_rate(started, received)?;
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
                    // A first share in a batch after ours: the join path's, not charged.
                    Outcome::Duplicate | Outcome::Unripe | Outcome::RootRefused => {}
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
    async fn join(&self, peer: PeerId, run: Vec<Share>, started: Instant) -> Result<(), SyncError> {
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
            self.check_rate(started, run.len() + uncles.len())?;
        }
        let (len, uncle_count) = (run.len(), uncles.len());
        let run_tip = run.last().map(Share::hash);
        let chain = PeerChain { run, uncles };
        let min_recent_work = share_chain::Work(self.min_join_work().0);
        let result = self
            .chain
            .call(move |c| c.join(chain, now_secs(), min_recent_work))
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
                if let Some(tip) = run_tip {
                    self.decline(peer, tip);
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
