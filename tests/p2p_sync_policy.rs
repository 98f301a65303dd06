//! No peer can stall a node's sync, and a node without a chain chooses whose chain to take:
//! real libp2p on 127.0.0.1, real chain threads and stores, real scrypt shares mined by the
//! share-chain test kit on an easy target (no litecoind needed).
//!
//! The hostile peer is built from the network crate's primitives and answers by hand: it
//! claims a long chain and answers each `GetShares` with one share, just under the
//! requester's timeout, for as long as it is asked.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use p2pool::chain_service::ChainHandle;
use p2pool::p2p::{P2p, P2pConfig, SyncPolicy, SyncState};
use p2pool_network::{
    Multiaddr, NetworkConfig, NetworkEvent, NetworkHandle, SyncRequest, SyncResponse, TipInfo,
    Verdict, Work,
};
use share_chain::chain::ChainIndex;
use share_chain::testkit::{grow_chain, regtest_preset};
use share_chain::{Preset, Share, ShareHash};
use tokio::sync::mpsc;

/// The sync request timeout of the nodes under test.
const TIMEOUT: Duration = Duration::from_secs(2);
const DEADLINE: Duration = Duration::from_secs(8);

fn preset() -> Preset {
    regtest_preset("[consensus]\nwindow_shares = 40\n")
}

fn policy() -> SyncPolicy {
    SyncPolicy {
        deadline: DEADLINE,
        grace: Duration::from_secs(1),
        min_rate: 5,
        request_timeout: TIMEOUT,
        join_window: Duration::from_millis(1500),
        ..SyncPolicy::default()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A chain of `n` shares paid to miners `miners..miners + 3`, the last one `2 × ahead`
/// seconds before now (negative: after), mined on a scratch index.
fn mine(n: usize, miners: u32, ahead: i64) -> (ChainIndex, Vec<Share>) {
    let mut index = ChainIndex::new(&preset());
    let start = now() as i64 - 2 * (n as i64 + 1) - 2 * ahead;
    let shares = grow_chain(&mut index, n, 4 + miners, start as u32);
    (index, shares)
}

struct Node {
    chain: ChainHandle,
    p2p: P2p,
    _dir: tempfile::TempDir,
    _own: mpsc::UnboundedSender<Vec<u8>>,
}

impl Node {
    /// A node holding `shares`, dialing `peers`.
    async fn start(shares: &[Share], peers: Vec<Multiaddr>, min_join_work: Work) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let preset = preset();
        let (chain, _) = ChainHandle::open(dir.path().join("chain"), preset.clone()).unwrap();
        for share in shares.iter().cloned() {
            chain
                .call(move |c| c.connect(share, now()).map(drop))
                .await
                .unwrap()
                .expect("a mined share connects");
        }
        let (own, own_rx) = mpsc::unbounded_channel();
        let p2p = P2p::start(
            P2pConfig {
                network_id: preset.network_id(),
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                peers,
                data_dir: dir.path().join("p2p"),
                mdns: false,
                min_join_work,
                sync: policy(),
            },
            chain.clone(),
            own_rx,
        )
        .await
        .unwrap();
        Node {
            chain,
            p2p,
            _dir: dir,
            _own: own,
        }
    }

    async fn tip(&self) -> Option<ShareHash> {
        self.chain.call(|c| c.index().best_hash()).await.unwrap()
    }

    fn state(&self) -> SyncState {
        self.p2p.sync_state().borrow().clone()
    }
}

/// A peer that serves `shares` one per `GetShares`, each answer `delay` late, and claims
/// their last share as its tip.
async fn slow_peer(shares: Vec<Share>, delay: Duration) -> (NetworkHandle, Multiaddr) {
    let mut config = NetworkConfig::new(preset().network_id());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.enable_kad = false;
    config.target_peers = 0;
    let (handle, mut events) = p2pool_network::spawn(config).await.unwrap();
    let status = handle.status().await.unwrap();
    let addr = status.listen_addrs[0]
        .clone()
        .with_p2p(status.local_peer_id)
        .unwrap();
    let tip = TipInfo {
        hash: shares.last().unwrap().hash(),
        height: shares.len() as u64 - 1,
        chain_work: Work(1 << 100),
    };
    let net = handle.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                NetworkEvent::InboundSyncRequest { request, reply, .. } => {
                    let response = match request {
                        SyncRequest::GetTip => SyncResponse::Tip(Some(tip)),
                        SyncRequest::GetShares { locator, .. } => {
                            let after = shares
                                .iter()
                                .position(|s| locator.contains(&s.hash()))
                                .map_or(0, |i| i + 1);
                            let one = shares.get(after).map(Share::encode);
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                reply.send(SyncResponse::Shares(one.into_iter().collect()));
                            });
                            continue;
                        }
                        SyncRequest::GetSharesByHash { .. } => SyncResponse::Shares(Vec::new()),
                    };
                    reply.send(response);
                }
                NetworkEvent::ShareGossip { peer, msg_id, .. } => {
                    let _ = net.report_validation(msg_id, peer, Verdict::Ignore).await;
                }
                _ => {}
            }
        }
    });
    (handle, addr)
}

/// Polls `ok` every 50 ms for up to `limit`; the time it took.
async fn within(what: &str, limit: Duration, mut ok: impl AsyncFnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !ok().await {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_peer_does_not_keep_a_node_without_a_chain_syncing() {
    init_logs();
    let (_, shares) = mine(30, 0, 100);
    let (_hostile, addr) = slow_peer(shares, TIMEOUT - Duration::from_millis(300)).await;
    let node = Node::start(&[], vec![addr], Work::default()).await;
    within("the first peer", Duration::from_secs(10), async || {
        matches!(node.state(), SyncState::Syncing { .. })
    })
    .await;
    // It answers one share in 1.7 s: far below 5 shares/s once the second of grace is
    // over, so the node gives up on it well within the deadline.
    let paused = within(
        "serving again",
        DEADLINE + Duration::from_secs(3),
        async || node.state().may_serve(),
    )
    .await;
    eprintln!("miners paused for {paused:?} by the slow peer");
    // And it does not go back to it (the resync every 5 s skips it).
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(7) {
        assert!(node.state().may_serve(), "{}", node.state());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It took the one or two shares that came, nothing more.
    let held = node.chain.call(|c| c.index().len()).await.unwrap();
    assert!(held <= 2, "{held}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_peer_never_pauses_a_node_with_a_usable_chain() {
    init_logs();
    // Ours: 20 shares, the last a second or two old. The peer's: the same and 20 more.
    let (_, shares) = mine(40, 0, -18);
    let (_hostile, addr) = slow_peer(shares.clone(), TIMEOUT - Duration::from_millis(300)).await;
    let node = Node::start(&shares[..20], vec![addr], Work::default()).await;
    within(
        "a catch-up from the peer",
        Duration::from_secs(10),
        async || node.p2p.is_syncing(),
    )
    .await;
    let t0 = Instant::now();
    let mut gave_up = None;
    while t0.elapsed() < DEADLINE + Duration::from_secs(2) {
        assert!(node.state().may_serve(), "{}", node.state());
        if gave_up.is_none() && !node.p2p.is_syncing() {
            gave_up = Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gave_up = gave_up.expect("the node stops syncing from the slow peer");
    eprintln!("gave up on the slow peer after {gave_up:?}");
    assert!(gave_up < DEADLINE, "{gave_up:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_chain_takes_no_chain_below_the_minimum_work() {
    init_logs();
    let (light_index, light) = mine(20, 0, 50);
    let (heavy_index, heavy) = mine(40, 10, 50);
    let light_work = light_index.best().unwrap().chain_work;
    assert!(heavy_index.best().unwrap().chain_work > light_work + 1);
    let a = Node::start(&light, vec![], Work::default()).await;
    let b = Node::start(&heavy, vec![], Work::default()).await;
    let c = Node::start(&[], a.p2p.listen_addrs(), Work(light_work + 1)).await;
    // C asks A, declines its chain and serves (alone on no chain, as a lone node would).
    within("C done with A", Duration::from_secs(15), async || {
        c.state() == SyncState::Synced
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.tip().await, None, "C took a chain below its minimum");
    // B's chain claims enough work: C takes it.
    c.p2p
        .handle()
        .dial(b.p2p.listen_addrs()[0].clone())
        .await
        .unwrap();
    let b_tip = b.tip().await;
    within("C on B's chain", Duration::from_secs(20), async || {
        c.tip().await == b_tip
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_chain_takes_the_offer_with_the_most_work_first() {
    init_logs();
    let (_, light) = mine(20, 0, 50);
    let (_, heavy) = mine(40, 10, 50);
    let a = Node::start(&light, vec![], Work::default()).await;
    let b = Node::start(&heavy, vec![], Work::default()).await;
    // C connects to A first, to B a moment later (within its join window).
    let c = Node::start(&[], a.p2p.listen_addrs(), Work::default()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.p2p
        .handle()
        .dial(b.p2p.listen_addrs()[0].clone())
        .await
        .unwrap();
    let light: HashSet<ShareHash> = light.iter().map(Share::hash).collect();
    let b_tip = b.tip().await;
    within("C on B's chain", Duration::from_secs(20), async || {
        let tip = c.tip().await;
        assert!(
            !tip.is_some_and(|t| light.contains(&t)),
            "C took the lighter chain first"
        );
        tip == b_tip
    })
    .await;
}
