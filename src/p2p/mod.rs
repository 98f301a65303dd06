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
//!
//! One file per part: this one holds the configuration, the sync state and the event loop;
//! [`gossip`] judges received shares, [`answers`] answers peers' sync requests, [`sync`]
//! catches up from peers and joins their chains.

mod answers;
mod gossip;
mod sync;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p2pool_network::{
    Multiaddr, NetworkConfig, NetworkError, NetworkEvent, NetworkHandle, NetworkId, PeerId,
    SyncResponse, Work,
};
use share_chain::join::base_len;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::chain_service::ChainHandle;
use answers::answer_request;
use gossip::judge_gossip;

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
    /// The least work a chain must have to be joined (0: any): its tip's claim when the
    /// node has no chain, and its recent work when it is joined (PROTOCOL.md §11.1, §13).
    /// The node follows its coin daemon's block target with [`P2p::set_min_join_work`].
    pub min_join_work: Work,
    /// Deadlines and rates of catching up and joining.
    pub sync: SyncPolicy,
}

/// How long the node waits for peers when catching up or joining, and how slow a peer may
/// be (see `docs/PROTOCOL.md` §13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncPolicy {
    /// Longest a catch-up from one peer may take (its tip, the shares, a join, the missing
    /// shares); also the longest a first sync may pause the miners.
    pub deadline: Duration,
    /// How long a catch-up may run before `min_rate` applies.
    pub grace: Duration,
    /// Shares per second a catch-up must average once past `grace`.
    pub min_rate: u32,
    /// How long a peer found too slow is not synced from.
    pub slow_cooldown: Duration,
    /// A node without a chain gathers its peers' offers this long after its first peer
    /// connects, or until `join_quorum` peers have, before choosing whose chain to take.
    pub join_window: Duration,
    pub join_quorum: usize,
    /// Timeout of one sync request, in both directions.
    pub request_timeout: Duration,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy {
            // A full-window sync or join takes 3 to 15 s here (BENCHMARKS.md).
            deadline: Duration::from_secs(120),
            grace: Duration::from_secs(10),
            // A full window arrives at over 500 shares/s even under load.
            min_rate: 100,
            slow_cooldown: Duration::from_secs(600),
            join_window: Duration::from_secs(3),
            join_quorum: 8,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Where the node stands with the share-chain network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// No peer: the node mines its own chain.
    Alone,
    /// The node has no usable chain (see [`P2p::start`]) and is catching up from a peer:
    /// `received` shares of a catch-up that needs several batches, or of a chain being
    /// joined (which needs at least `needed`). Miners wait.
    Syncing {
        peer: PeerId,
        received: usize,
        needed: Option<usize>,
    },
    /// The node has a usable chain: it serves miners, and catch-ups run behind the scenes.
    /// (Or it has no chain and no peer offered one in time: it mines its own.)
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

/// Sets the least work a chain must have to be joined (see [`P2pConfig::min_join_work`]),
/// from any task; the node follows its coin daemon's block target with it.
#[derive(Clone, Debug)]
pub struct MinJoinWork(Arc<watch::Sender<Work>>);

impl MinJoinWork {
    pub fn set(&self, work: Work) {
        self.0.send_if_modified(|current| {
            let changed = *current != work;
            *current = work;
            changed
        });
    }

    pub fn get(&self) -> Work {
        *self.0.borrow()
    }
}

/// The running network side of a node.
pub struct P2p {
    handle: NetworkHandle,
    listen_addrs: Vec<Multiaddr>,
    syncing: Arc<AtomicBool>,
    state: watch::Receiver<SyncState>,
    min_join_work: Arc<watch::Sender<Work>>,
    tasks: Vec<JoinHandle<()>>,
}

impl P2p {
    /// Starts the network and the tasks that serve it. `own_shares` carries the encoded
    /// shares this node found, to publish.
    ///
    /// The node's chain is *usable* (miners are served while it catches up) once it holds
    /// a chain and either that chain's tip was at most [`RECENT_TIP_PERIODS`] share periods
    /// old at start, or a first round of catch-ups with its peers has ended (done, failed,
    /// or cut off by the deadline).
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
        net_config.request_timeout = config.sync.request_timeout;
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
        let now = now_secs();
        let (base, recent) = chain
            .call(move |c| {
                let index = c.index();
                let period = u64::from(index.params().share_period_secs);
                let recent = index.best().is_some_and(|b| {
                    u64::from(b.share.header.time) + RECENT_TIP_PERIODS * period >= now
                });
                (base_len(index.params()), recent)
            })
            .await
            .unwrap_or((0, false));
        let usable = Arc::new(AtomicBool::new(recent));
        let (min_join_work, min_join_work_rx) = watch::channel(config.min_join_work);
        let min_join_work = Arc::new(min_join_work);
        let (sync_tx, sync_rx) = mpsc::unbounded_channel();
        let sync = sync::Syncer {
            handle: handle.clone(),
            chain: chain.clone(),
            max_locator,
            batch,
            base_len: base,
            syncing: syncing.clone(),
            state: state_tx.clone(),
            usable: usable.clone(),
            policy: config.sync,
            min_join_work: min_join_work_rx,
            declined: Default::default(),
            slow: Default::default(),
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
                usable,
            )),
        ];
        Ok(P2p {
            handle,
            listen_addrs: status.listen_addrs,
            syncing,
            state,
            min_join_work,
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

    /// A handle that sets the least work a chain must have to be joined.
    pub fn min_join_work(&self) -> MinJoinWork {
        MinJoinWork(self.min_join_work.clone())
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

/// A chain whose tip is at most this many share periods old when the node starts is usable
/// at once: a quick restart does not pause the miners.
pub const RECENT_TIP_PERIODS: u64 = 10;

/// Drains the network's events and publishes our own shares.
async fn serve(
    handle: NetworkHandle,
    chain: ChainHandle,
    mut events: mpsc::Receiver<NetworkEvent>,
    mut own_shares: mpsc::UnboundedReceiver<Vec<u8>>,
    sync: mpsc::UnboundedSender<PeerId>,
    state: Arc<watch::Sender<SyncState>>,
    usable: Arc<AtomicBool>,
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
                Some(event) => on_event(&handle, &chain, &sync, &state, &usable, event).await,
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
    usable: &AtomicBool,
    event: NetworkEvent,
) {
    match event {
        NetworkEvent::Listening { addr } => info!(%addr, "share-chain network listening"),
        NetworkEvent::PeerConnected { peer, addr, .. } => {
            info!(%peer, %addr, "peer connected");
            // A first peer: without a usable chain, hold miners until we know whether its
            // chain is ahead.
            let next = if usable.load(Ordering::Relaxed) {
                SyncState::Synced
            } else {
                SyncState::Syncing {
                    peer,
                    received: 0,
                    needed: None,
                }
            };
            set_state(state, |s| (*s == SyncState::Alone).then_some(next));
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
