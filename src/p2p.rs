//! The node's side of the share-chain network: gossip in and out, sync answers and catch-up.
//!
//! `p2pool-network` moves opaque bytes; this module gives them meaning. It runs one task
//! that drains the network's events (the network drops what a slow node leaves queued) and
//! one sync worker that catches up from peers, serially, so a burst of orphans does not
//! turn into a burst of identical fetches.
//!
//! - Gossip: each share is decoded and connected through the chain thread; the verdict
//!   (accept, ignore, reject with a penalty) goes back to the network, which forwards only
//!   accepted shares. An orphan is parked by the chain and its relayer asked for history.
//! - Our own shares (from the node's solution handler) are published.
//! - Sync answers: `GetTip` and `GetShares` from our best chain, `GetSharesByHash` from
//!   any share we hold.
//! - Catch-up: on connecting to a peer, on an orphan and every 5 s, ask the peer's tip and,
//!   if we lack it, fetch batches after a locator of our best chain until we have it or
//!   nothing new arrives. Then fetch by hash what the orphan pool still waits for (a missed
//!   uncle or side branch, which the best-chain batches never carry).
//! - Joining: when the peer's answer does not build on anything we hold (it pruned the
//!   history we share, or we have none), the whole chain it holds is fetched with the
//!   uncles it names and joined through [`ShareChain::join`](share_chain::sharechain::ShareChain::join):
//!   the bottom is taken as a base, everything above is validated in full.
//!
//! The sync state ([`SyncState`]) tells the node whether to serve miners: alone (no peers:
//! a lone node mines its own chain), syncing, or synced.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use p2pool_network::{
    Misbehaviour, Multiaddr, NetworkConfig, NetworkError, NetworkEvent, NetworkHandle, NetworkId,
    PeerId, SyncRequest, SyncResponse, TipInfo, Verdict, Work,
};
use share_chain::chain::ChainIndex;
use share_chain::join::{base_len, PeerChain};
use share_chain::locator::{locator, shares_after};
use share_chain::sharechain::ChainError;
use share_chain::{Share, ShareHash};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::chain_service::ChainHandle;

/// How the share-chain network is set up.
#[derive(Clone, Debug)]
pub struct P2pConfig {
    pub network_id: NetworkId,
    /// Addresses to listen on (`/ip4/127.0.0.1/tcp/0` picks a free port).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    pub peers: Vec<Multiaddr>,
    /// Where the node key and the peer store live.
    pub data_dir: PathBuf,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
}

/// Where the node stands with the share-chain network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// No peer: the node mines its own chain.
    Alone,
    /// Catching up from a peer: `received` shares of a catch-up that needs several
    /// batches, or of a chain being joined (which needs at least `needed`).
    Syncing {
        peer: PeerId,
        received: usize,
        needed: Option<usize>,
    },
    /// Holding the tip of every peer we asked (or as close as they let us get).
    Synced,
}

impl SyncState {
    /// Whether miners may be given work on our chain now.
    pub fn may_serve(&self) -> bool {
        !matches!(self, SyncState::Syncing { .. })
    }
}

impl std::fmt::Display for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncState::Alone => write!(f, "alone (no peers)"),
            SyncState::Synced => write!(f, "synced"),
            SyncState::Syncing {
                peer,
                received,
                needed: Some(needed),
            } => write!(
                f,
                "joining the share chain from {peer}: {received} shares of at least {needed}"
            ),
            SyncState::Syncing { peer, received, .. } => {
                write!(f, "syncing from {peer}: {received} shares received")
            }
        }
    }
}

/// The running network side of a node.
pub struct P2p {
    handle: NetworkHandle,
    listen_addrs: Vec<Multiaddr>,
    syncing: Arc<AtomicBool>,
    state: watch::Receiver<SyncState>,
    tasks: Vec<JoinHandle<()>>,
}

/// The most batches one catch-up fetches before asking the peer's tip again; bounds a
/// peer that keeps feeding shares that never reach its claimed tip.
const MAX_BATCHES: usize = 1000;

impl P2p {
    /// Starts the network and the tasks that serve it. `own_shares` carries the encoded
    /// shares this node found, to publish.
    pub async fn start(
        config: P2pConfig,
        chain: ChainHandle,
        own_shares: mpsc::UnboundedReceiver<Vec<u8>>,
    ) -> Result<P2p, NetworkError> {
        let mut net_config = NetworkConfig::new(config.network_id);
        net_config.listen = config.listen;
        net_config.bootstrap = config.peers;
        net_config.data_dir = Some(config.data_dir);
        net_config.enable_mdns = config.mdns;
        let max_locator = net_config.limits.max_locator;
        let batch = net_config.limits.max_shares_per_response;
        let (handle, events) = p2pool_network::spawn(net_config).await?;
        let status = handle.status().await?;
        info!(
            peer_id = %handle.local_peer_id(),
            listen = ?status.listen_addrs,
            "share-chain network up"
        );
        let syncing = Arc::new(AtomicBool::new(false));
        let (state_tx, state) = watch::channel(SyncState::Alone);
        let state_tx = Arc::new(state_tx);
        let base = chain
            .call(|c| base_len(c.index().params()))
            .await
            .unwrap_or(0);
        let (sync_tx, sync_rx) = mpsc::unbounded_channel();
        let sync = Syncer {
            handle: handle.clone(),
            chain: chain.clone(),
            max_locator,
            batch,
            base_len: base,
            syncing: syncing.clone(),
            state: state_tx.clone(),
            declined: Default::default(),
            next_request: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        };
        let tasks = vec![
            tokio::spawn(sync.run(sync_rx)),
            tokio::spawn(serve(
                handle.clone(),
                chain,
                events,
                own_shares,
                sync_tx,
                state_tx,
            )),
        ];
        Ok(P2p {
            handle,
            listen_addrs: status.listen_addrs,
            syncing,
            state,
            tasks,
        })
    }

    /// The bound listen addresses (real ports), each ending in `/p2p/<our id>` so a peer
    /// dialing it also knows whom to expect.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs
            .iter()
            .map(|a| {
                a.clone()
                    .with_p2p(self.handle.local_peer_id())
                    .unwrap_or_else(|a| a)
            })
            .collect()
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.handle.local_peer_id()
    }

    /// Whether a catch-up from a peer is under way (of any size).
    pub fn is_syncing(&self) -> bool {
        self.syncing.load(Ordering::Relaxed)
    }

    /// The sync state, kept up to date (see [`SyncState::may_serve`]).
    pub fn sync_state(&self) -> watch::Receiver<SyncState> {
        self.state.clone()
    }

    pub fn handle(&self) -> &NetworkHandle {
        &self.handle
    }
}

impl Drop for P2p {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How often every connected peer's tip is checked, so a missed announcement or a failed
/// catch-up is repaired without waiting for the next share.
const RESYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Drains the network's events and publishes our own shares.
async fn serve(
    handle: NetworkHandle,
    chain: ChainHandle,
    mut events: mpsc::Receiver<NetworkEvent>,
    mut own_shares: mpsc::UnboundedReceiver<Vec<u8>>,
    sync: mpsc::UnboundedSender<PeerId>,
    state: Arc<watch::Sender<SyncState>>,
) {
    let mut resync = tokio::time::interval(RESYNC_INTERVAL);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = resync.tick() => {
                if let Ok(peers) = handle.peers().await {
                    // Only peers identify confirmed to be on our network.
                    for peer in peers.into_iter().filter(|p| p.agent_version.is_some()) {
                        let _ = sync.send(peer.peer);
                    }
                }
            }
            event = events.recv() => match event {
                Some(event) => on_event(&handle, &chain, &sync, &state, event).await,
                None => return,
            },
            Some(share) = own_shares.recv() => {
                match handle.publish_share(share).await {
                    Ok(_) => debug!("share published"),
                    Err(NetworkError::NoPeers) => debug!("no peer to publish a share to"),
                    Err(e) => warn!(error = %e, "cannot publish a share"),
                }
            }
        }
    }
}

async fn on_event(
    handle: &NetworkHandle,
    chain: &ChainHandle,
    sync: &mpsc::UnboundedSender<PeerId>,
    state: &watch::Sender<SyncState>,
    event: NetworkEvent,
) {
    match event {
        NetworkEvent::Listening { addr } => info!(%addr, "share-chain network listening"),
        NetworkEvent::PeerConnected { peer, addr, .. } => {
            info!(%peer, %addr, "peer connected");
            // A first peer: hold miners until we know whether its chain is ahead.
            set_state(state, |s| {
                (*s == SyncState::Alone).then_some(SyncState::Syncing {
                    peer,
                    received: 0,
                    needed: None,
                })
            });
            let _ = sync.send(peer);
        }
        NetworkEvent::PeerDisconnected { peer } => {
            debug!(%peer, "peer disconnected");
            if handle.peers().await.is_ok_and(|p| p.is_empty()) {
                set_state(state, |_| Some(SyncState::Alone));
            }
        }
        NetworkEvent::PeerBanned {
            peer,
            reason,
            duration,
        } => warn!(%peer, ?reason, ?duration, "peer banned"),
        NetworkEvent::ShareGossip {
            peer, msg_id, data, ..
        } => {
            let (verdict, orphan) = judge_gossip(chain, data).await;
            if orphan {
                let _ = sync.send(peer);
            }
            if let Err(e) = handle.report_validation(msg_id, peer, verdict).await {
                debug!(error = %e, "cannot report a verdict");
            }
        }
        NetworkEvent::InboundSyncRequest {
            peer,
            request,
            reply,
        } => {
            let answer = chain
                .call(move |c| answer_request(c.index(), request))
                .await;
            match answer {
                Ok(response) => {
                    if !reply.send(response) {
                        debug!(%peer, "sync request timed out before our answer");
                    }
                }
                Err(_) => {
                    let _ = reply.send(SyncResponse::Refused(
                        p2pool_network::RefuseReason::Unavailable,
                    ));
                }
            }
        }
    }
}

/// What connecting a received share came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Connected, with this many shares (itself and the orphans it unblocked).
    Connected(usize),
    Duplicate,
    Orphan,
    /// Not valid now but not the sender's fault (a timestamp ahead of our clock).
    Unripe,
    Invalid,
    Garbage,
    /// The chain thread is gone or its store failed.
    Unavailable,
}

async fn connect_bytes(chain: &ChainHandle, data: Vec<u8>) -> Outcome {
    match Share::decode(&data) {
        Ok(share) => connect_share(chain, share).await,
        Err(e) => {
            debug!(error = %e, "undecodable share");
            Outcome::Garbage
        }
    }
}

async fn connect_share(chain: &ChainHandle, share: Share) -> Outcome {
    let hash = share.hash();
    match chain.call(move |c| c.connect(share, now_secs())).await {
        Ok(result) => outcome(hash, result),
        Err(_) => Outcome::Unavailable,
    }
}

/// Connects a sync batch with one durable write; each share's outcome.
async fn connect_batch(chain: &ChainHandle, shares: Vec<Share>) -> Vec<Outcome> {
    let hashes: Vec<ShareHash> = shares.iter().map(Share::hash).collect();
    match chain
        .call(move |c| c.connect_batch(shares, now_secs()))
        .await
    {
        Ok(Ok(results)) => hashes
            .into_iter()
            .zip(results)
            .map(|(hash, r)| outcome(hash, r.map_err(ChainError::Invalid)))
            .collect(),
        Ok(Err(e)) => {
            warn!(error = %e, "cannot store shares");
            vec![Outcome::Unavailable]
        }
        Err(_) => vec![Outcome::Unavailable],
    }
}

fn outcome(
    hash: ShareHash,
    result: Result<share_chain::validation::Connected, ChainError>,
) -> Outcome {
    match result {
        Ok(connected) => {
            for (h, e) in &connected.rejected {
                debug!(share = %h, error = %e, "a waiting orphan turned out invalid");
            }
            Outcome::Connected(connected.entries.len())
        }
        Err(ChainError::Invalid(e)) => {
            if e.is_orphan() {
                Outcome::Orphan
            } else if e.is_punishable() {
                info!(share = %hash, error = %e, "invalid share from a peer");
                Outcome::Invalid
            } else if matches!(e, share_chain::validation::ShareError::Duplicate(_)) {
                Outcome::Duplicate
            } else {
                Outcome::Unripe
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot store a share");
            Outcome::Unavailable
        }
    }
}

/// The verdict on a gossiped share, and whether it is an orphan (ask for history).
async fn judge_gossip(chain: &ChainHandle, data: Vec<u8>) -> (Verdict, bool) {
    match connect_bytes(chain, data).await {
        Outcome::Connected(_) => (Verdict::Accept, false),
        Outcome::Orphan => (Verdict::Ignore, true),
        Outcome::Duplicate | Outcome::Unripe | Outcome::Unavailable => (Verdict::Ignore, false),
        Outcome::Invalid => (Verdict::Reject(Misbehaviour::InvalidShare), false),
        Outcome::Garbage => (Verdict::Reject(Misbehaviour::Garbage), false),
    }
}

/// Our answer to a peer's sync request.
fn answer_request(index: &ChainIndex, request: SyncRequest) -> SyncResponse {
    match request {
        SyncRequest::GetTip => SyncResponse::Tip(index.best().map(|b| TipInfo {
            hash: b.hash,
            height: b.height,
            chain_work: Work(b.chain_work),
        })),
        SyncRequest::GetShares { locator, stop, max } => {
            SyncResponse::Shares(shares_after(index, &locator, stop, max))
        }
        SyncRequest::GetSharesByHash { hashes } => SyncResponse::Shares(
            hashes
                .iter()
                .filter_map(|h| index.get(h))
                .map(|e| e.share.encode())
                .collect(),
        ),
    }
}

/// Changes the sync state if `change` says so, logging each transition once.
fn set_state(
    state: &watch::Sender<SyncState>,
    change: impl FnOnce(&SyncState) -> Option<SyncState>,
) {
    state.send_if_modified(|current| match change(current) {
        Some(next) if next != *current => {
            let announce = std::mem::discriminant(&next) != std::mem::discriminant(current);
            *current = next;
            if announce {
                info!(state = %current, "share-chain sync state");
            }
            true
        }
        _ => false,
    });
}

/// The most shares a join accumulates: a peer keeps about `base_len` plus a margin; far
/// more means it is feeding us a chain that never ends.
fn max_join_run(base_len: usize) -> usize {
    base_len * 2 + 4096
}

/// How many rounds of by-hash fetches one catch-up makes for what the orphan pool waits
/// for (a fetched share may itself wait for another).
const MISSING_ROUNDS: usize = 8;

/// Catches up from peers, one at a time.
struct Syncer {
    handle: NetworkHandle,
    chain: ChainHandle,
    max_locator: usize,
    batch: u32,
    base_len: usize,
    syncing: Arc<AtomicBool>,
    state: Arc<watch::Sender<SyncState>>,
    /// Per peer, the tip of a chain we chose not to join (it has less recent work than
    /// ours): not fetched again until the peer's tip changes.
    declined: std::sync::Mutex<std::collections::HashMap<PeerId, ShareHash>>,
    /// When the next sync request may go out (see [`Syncer::pace`]).
    next_request: tokio::sync::Mutex<tokio::time::Instant>,
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
    async fn run(self, mut requests: mpsc::UnboundedReceiver<PeerId>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use share_chain::testkit::{grow_chain, regtest_preset};

    #[tokio::test]
    async fn gossip_verdicts_follow_the_chain() {
        let preset = regtest_preset("[consensus]\nwindow_shares = 20\n");
        let shares = grow_chain(&mut ChainIndex::new(&preset), 4, 3, 1_700_000_000);
        let dir = tempfile::tempdir().unwrap();
        let (handle, _) = ChainHandle::open(dir.path().to_path_buf(), preset).unwrap();

        let garbage = judge_gossip(&handle, vec![0xff; 7]).await;
        assert_eq!(garbage, (Verdict::Reject(Misbehaviour::Garbage), false));
        let first = judge_gossip(&handle, shares[0].encode()).await;
        assert_eq!(first, (Verdict::Accept, false));
        let again = judge_gossip(&handle, shares[0].encode()).await;
        assert_eq!(again, (Verdict::Ignore, false));
        // Its parent is missing: ignored (not the peer's fault), and history is wanted.
        let orphan = judge_gossip(&handle, shares[2].encode()).await;
        assert_eq!(orphan, (Verdict::Ignore, true));
        // A tampered share breaks its own commitment: rejected and charged.
        let mut forged = shares[1].clone();
        forged.info.payout_script = share_chain::script::UNSPENDABLE_SCRIPT.to_vec();
        let forged = judge_gossip(&handle, forged.encode()).await;
        assert_eq!(forged, (Verdict::Reject(Misbehaviour::InvalidShare), false));
        // The missing parent arrives: it connects and unblocks the orphan.
        assert_eq!(
            connect_bytes(&handle, shares[1].encode()).await,
            Outcome::Connected(2)
        );
        let tip = handle.call(|c| c.index().best_hash()).await.unwrap();
        assert_eq!(tip, Some(shares[2].hash()));
    }
}
