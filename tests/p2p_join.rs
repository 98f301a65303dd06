//! A node joins a share chain whose beginning its peers have pruned: real libp2p on
//! 127.0.0.1, real chain threads and stores, real scrypt shares (no litecoind needed: the
//! shares are mined by the share-chain test kit on an easy target).
//!
//! The old node grows a chain with side shares (uncles) far past its prune depth, so its
//! oldest share's parent is gone. A new node with no chain, and a node that mined a short
//! chain of its own before it found the network, both end on the old node's tip, report
//! themselves synced, and build byte-identical next coinbases. Both restart on that tip.

use std::time::{Duration, Instant};

use p2pool::chain_service::ChainHandle;
use p2pool::p2p::{P2p, P2pConfig, SyncState};
use p2pool_network::Multiaddr;
use share_chain::chain::ChainIndex;
use share_chain::sharechain::ShareChain;
use share_chain::testkit::{block_context, grow_chain, mine_share, miner, regtest_preset};
use share_chain::{Preset, Share, ShareHash};
use tokio::sync::mpsc;

fn preset() -> Preset {
    regtest_preset("[consensus]\nwindow_shares = 40\n")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct TestNode {
    chain: ChainHandle,
    p2p: P2p,
    dir: tempfile::TempDir,
    _own: mpsc::UnboundedSender<Vec<u8>>,
}

impl TestNode {
    async fn start(dir: tempfile::TempDir, peers: Vec<Multiaddr>) -> TestNode {
        let preset = preset();
        let (chain, _) = ChainHandle::open(dir.path().join("chain"), preset.clone()).unwrap();
        let (own, own_rx) = mpsc::unbounded_channel();
        let p2p = P2p::start(
            P2pConfig {
                network_id: preset.network_id(),
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                peers,
                data_dir: dir.path().join("p2p"),
                mdns: false,
                min_join_work: Default::default(),
                sync: Default::default(),
            },
            chain.clone(),
            own_rx,
        )
        .await
        .unwrap();
        TestNode {
            chain,
            p2p,
            dir,
            _own: own,
        }
    }

    async fn tip(&self) -> Option<ShareHash> {
        self.chain.call(|c| c.index().best_hash()).await.unwrap()
    }

    async fn next_coinbase(&self) -> Vec<u8> {
        self.chain
            .call(|c| {
                c.index_mut()
                    .share_template(&miner(99), block_context(50_0000_0000))
                    .unwrap()
                    .coinbase(vec![1, 2, 3, 4])
                    .to_bytes()
            })
            .await
            .unwrap()
    }
}

/// A chain of `n` shares ending a few seconds ago, with a side share (a future uncle) every
/// fifth share, mined on a scratch index.
fn mine_chain(n: usize) -> Vec<Share> {
    let mut idx = ChainIndex::new(&preset());
    let start = (now() - 2 * n as u64 - 10) as u32;
    let mut out = Vec::new();
    for i in 0..n {
        let parent = idx.best_hash();
        let time = start + 2 * i as u32;
        if i % 5 == 2 {
            let side = mine_share(&mut idx, parent, &miner(40 + i as u32 % 2), time);
            idx.connect(side.clone(), now()).unwrap();
            out.push(side);
        }
        let share = mine_share(&mut idx, parent, &miner(i as u32 % 4), time + 1);
        idx.connect(share.clone(), now()).unwrap();
        out.push(share);
    }
    out
}

async fn wait_for(what: &str, deadline: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !ok().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_nodes_join_a_pruned_chain_and_agree_on_the_next_coinbase() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();

    let old = TestNode::start(tempfile::tempdir().unwrap(), vec![]).await;
    let shares = mine_chain(300);
    let first = shares[0].hash();
    old.chain
        .call(move |c| {
            for s in shares {
                c.connect(s, now()).unwrap();
            }
            c.prune().unwrap();
        })
        .await
        .unwrap();
    let pruned = old
        .chain
        .call(move |c| !c.index().contains(&first) && c.index().len() < 200)
        .await
        .unwrap();
    assert!(pruned, "the old node pruned its first shares");
    let old_tip = old.tip().await.unwrap();
    let expected = old.next_coinbase().await;
    let addrs = old.p2p.listen_addrs();

    // A node with no chain, and one with a short chain of its own.
    let empty = TestNode::start(tempfile::tempdir().unwrap(), addrs.clone()).await;
    let lone_dir = tempfile::tempdir().unwrap();
    {
        let preset = preset();
        let (mut chain, _) = ShareChain::open(&lone_dir.path().join("chain"), &preset).unwrap();
        let mut scratch = ChainIndex::new(&preset);
        for s in grow_chain(&mut scratch, 4, 1, (now() - 30) as u32) {
            chain.connect(s, now()).unwrap();
        }
    }
    let lone = TestNode::start(lone_dir, addrs).await;
    assert_ne!(lone.tip().await, None);

    for node in [&empty, &lone] {
        wait_for("the join", Duration::from_secs(60), async || {
            node.tip().await == Some(old_tip)
        })
        .await;
        let state = node.p2p.sync_state();
        wait_for("the synced state", Duration::from_secs(30), async || {
            *state.borrow() == SyncState::Synced
        })
        .await;
        assert_eq!(node.next_coinbase().await, expected);
    }

    // Both restart on the joined chain.
    for node in [empty, lone] {
        let TestNode {
            chain, p2p, dir, ..
        } = node;
        drop(p2p);
        drop(chain);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (chain, _) = ChainHandle::open(dir.path().join("chain"), preset()).unwrap();
        let tip = chain.call(|c| c.index().best_hash()).await.unwrap();
        assert_eq!(tip, Some(old_tip));
    }
}
