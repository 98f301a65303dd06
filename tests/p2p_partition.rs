//! A network partition that heals converges on the most-work chain.
//!
//! Four real nodes (a [`ChainHandle`] and a [`P2p`] each, libp2p on 127.0.0.1, no
//! litecoind) start from one common prefix, then split into two pairs that cannot see each
//! other. Each pair extends its own branch: the light pair's branch is *longer* (six
//! shares at the easiest target), the heavy pair's is shorter but carries more work
//! (four shares at an eight times harder target), so "most work" and "longest" disagree.
//! After the pairs dial across, all four nodes must end on the heavy branch's tip and
//! compute the same payouts for the next share as the consensus core does from the heavy
//! chain. Every wait is a poll with a deadline; nothing is proven by sleeping.
//!
//! The heavy branch is four shares long so that the light branch's first share is out of
//! uncle range of the next share: whether a heavy-side node fetches the light branch at all
//! is a race (`GetShares` serves only the best chain), and a light share offered as an
//! uncle would make the nodes' next payouts depend on it.
//!
//! The second test: a share naming an uncle a node never saw is accepted once the node
//! fetches the uncle by hash (`GetSharesByHash`, for what the orphan pool waits for). It
//! failed 3 of 3 runs before that request existed: the node stalled on the orphan for good.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p2pool::chain_service::ChainHandle;
use p2pool::p2p::{P2p, P2pConfig};
use share_chain::chain::ChainIndex;
use share_chain::coinbase::Payout;
use share_chain::template::MinerPayout;
use share_chain::testkit::{block_context, grow_chain, mine_share, miner, miner_script};
use share_chain::{Preset, Share, ShareHash};
use tokio::sync::mpsc;

/// Generous: a loaded 2-core machine running debug builds. The periodic tip check every
/// 5 s repairs any missed announcement well within it.
const DEADLINE: Duration = Duration::from_secs(60);

/// Eight times the work of the easiest regtest share (`0x207fffff`).
const HEAVY_BITS: u32 = 0x200f_ffff;

fn preset() -> Preset {
    share_chain::testkit::regtest_preset("[consensus]\nwindow_shares = 40\n")
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Polls `check` every 50 ms until it holds; panics with `what` after [`DEADLINE`].
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Node {
    name: &'static str,
    chain: ChainHandle,
    p2p: P2p,
    /// The node's own-shares channel into `P2p`, as the solution handler uses it.
    publish: mpsc::UnboundedSender<Vec<u8>>,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start(name: &'static str, preset: &Preset) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let (chain, _) = ChainHandle::open(dir.path().join("chain"), preset.clone()).unwrap();
        let (publish, own_shares) = mpsc::unbounded_channel();
        let p2p = P2p::start(
            P2pConfig {
                network_id: preset.network_id(),
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                peers: Vec::new(),
                data_dir: dir.path().join("p2p"),
                mdns: false,
                min_join_work: Default::default(),
                sync: Default::default(),
            },
            chain.clone(),
            own_shares,
        )
        .await
        .expect("network starts");
        Node {
            name,
            chain,
            p2p,
            publish,
            _dir: dir,
        }
    }

    fn tip(&self) -> Option<ShareHash> {
        self.chain.summary().tip
    }

    /// Connects `shares` straight into the node's chain (the common history every node
    /// already had before the test).
    async fn seed(&self, shares: &[Share]) {
        let shares = shares.to_vec();
        self.chain
            .call(move |c| {
                for s in shares {
                    c.connect(s, now_secs()).expect("prefix share connects");
                }
            })
            .await
            .unwrap();
    }

    /// What the node does with a share its own miner found: connect it, then publish it.
    async fn found(&self, share: &Share) {
        let s = share.clone();
        self.chain
            .call(move |c| c.connect(s, now_secs()).map(|_| ()))
            .await
            .unwrap()
            .expect("own share connects");
        self.publish.send(share.encode()).unwrap();
    }

    async fn dial(&self, other: &Node) {
        let addr = other.p2p.listen_addrs()[0].clone();
        self.p2p.handle().dial(addr).await.unwrap();
    }

    async fn connected_peers(&self) -> HashSet<p2pool_network::PeerId> {
        self.p2p
            .handle()
            .peers()
            .await
            .unwrap()
            .into_iter()
            .filter(|p| p.agent_version.is_some())
            .map(|p| p.peer)
            .collect()
    }

    async fn knows(&self, hash: ShareHash) -> bool {
        self.chain
            .call(move |c| c.index().contains(&hash))
            .await
            .unwrap()
    }

    /// The payouts of this node's next share for a fixed miner and block.
    async fn next_payouts(&self) -> Vec<Payout> {
        self.chain
            .call(|c| {
                let m = next_miner();
                c.index_mut()
                    .share_template(&m, block_context(50_0000_0000))
                    .map(|t| t.payouts)
            })
            .await
            .unwrap()
            .expect("template on the synced chain")
    }
}

/// The miner whose next share's payouts are compared.
fn next_miner() -> MinerPayout {
    miner(77)
}

/// Mines `n` shares for miner `who` on `index`'s best tip, one share period apart after
/// the tip's time, with an optional harder share target.
fn mine_branch(index: &mut ChainIndex, n: usize, who: u32, bits: Option<u32>) -> Vec<Share> {
    let period = index.params().share_period_secs;
    let payout = MinerPayout {
        share_target_bits: bits,
        ..miner(who)
    };
    (0..n)
        .map(|_| {
            let tip = index.best().expect("a prefix");
            let (parent, time) = (tip.hash, tip.share.header.time + period);
            let share = mine_share(index, Some(parent), &payout, time);
            index
                .connect(share.clone(), u64::from(time))
                .expect("a mined share connects");
            share
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_partition_converges_on_the_most_work_chain() {
    init_logs();
    let preset = preset();
    // History well in the past, so no share is ahead of any node's clock.
    let t0 = (now_secs() - 100_000) as u32;
    let mut base = ChainIndex::new(&preset);
    let prefix = grow_chain(&mut base, 12, 1, t0);
    let fork_point = prefix.last().unwrap().hash();

    let mut light_index = base.clone();
    let light = mine_branch(&mut light_index, 6, 1, None);
    let mut heavy_index = base.clone();
    let heavy = mine_branch(&mut heavy_index, 4, 2, Some(HEAVY_BITS));
    let (light_tip, heavy_tip) = (light.last().unwrap().hash(), heavy.last().unwrap().hash());
    // The premise: the light branch is longer, the heavy branch has more work.
    let (l, h) = (light_index.best().unwrap(), heavy_index.best().unwrap());
    assert!(l.height > h.height && h.chain_work > l.chain_work);

    let a = Node::start("a", &preset).await;
    let b = Node::start("b", &preset).await;
    let c = Node::start("c", &preset).await;
    let d = Node::start("d", &preset).await;
    let all = [&a, &b, &c, &d];
    for n in all {
        n.seed(&prefix).await;
    }
    // The summary is published just after each chain call returns.
    wait_until("every node on the prefix", || async {
        all.iter().all(|n| n.tip() == Some(fork_point))
    })
    .await;

    // The partition: a–b and c–d, nothing across.
    a.dial(&b).await;
    c.dial(&d).await;
    for (x, y) in [(&a, &b), (&c, &d)] {
        let (xid, yid) = (x.p2p.local_peer_id(), y.p2p.local_peer_id());
        wait_until(&format!("{} and {} connected", x.name, y.name), || async {
            x.connected_peers().await.contains(&yid) && y.connected_peers().await.contains(&xid)
        })
        .await;
    }

    // Each side mines its branch on its first node; the second gets it over the network.
    for s in &light {
        a.found(s).await;
    }
    for s in &heavy {
        c.found(s).await;
    }
    wait_until("each pair on its own branch", || async {
        a.tip() == Some(light_tip)
            && b.tip() == Some(light_tip)
            && c.tip() == Some(heavy_tip)
            && d.tip() == Some(heavy_tip)
    })
    .await;
    // The partition held: neither side has seen the other's branch.
    assert!(!a.knows(heavy_tip).await && !b.knows(heavy_tip).await);
    assert!(!c.knows(light_tip).await && !d.knows(light_tip).await);
    for n in all {
        let peers = n.connected_peers().await;
        assert_eq!(peers.len(), 1, "{} sees only its partner", n.name);
    }

    // Heal: each light node dials a heavy node.
    a.dial(&c).await;
    b.dial(&d).await;
    wait_until("all four on the heavy branch's tip", || async {
        all.iter().all(|n| n.tip() == Some(heavy_tip))
    })
    .await;
    for n in all {
        assert_eq!(
            n.tip(),
            Some(heavy_tip),
            "{} stays on the heavy tip",
            n.name
        );
    }

    // One chain, one set of payouts for the next share, on every node: the same as the
    // consensus core computes from the heavy chain. The light branch is out of uncle range,
    // so its miner is not paid.
    let expected = heavy_index
        .share_template(&next_miner(), block_context(50_0000_0000))
        .unwrap()
        .payouts;
    let paid: HashSet<&[u8]> = expected.iter().map(|p| p.script.as_slice()).collect();
    assert!(
        paid.contains(miner_script(0).as_slice()),
        "the prefix miner"
    );
    assert!(paid.contains(miner_script(2).as_slice()), "the heavy miner");
    assert!(
        !paid.contains(miner_script(1).as_slice()),
        "not the light miner"
    );
    for n in all {
        assert_eq!(n.next_payouts().await, expected, "{}'s payouts", n.name);
    }
    for n in all {
        n.p2p.handle().shutdown().await.unwrap();
    }
}

/// A node that was cut off while a side share was gossiped must still accept a later share
/// that names it as an uncle: X holds a side share S (a sibling of the common tip T, found
/// while Y was not connected), then mines N on T with S as its uncle and publishes it.
///
/// Y parks N as an orphan (`UnknownUncle`); X's best chain never contains S, so only the
/// by-hash fetch of what Y's orphan pool waits for brings S, and then N connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_whose_uncle_was_missed_is_accepted() {
    init_logs();
    let preset = preset();
    let t0 = (now_secs() - 100_000) as u32;
    let mut base = ChainIndex::new(&preset);
    let prefix = grow_chain(&mut base, 12, 1, t0);
    let tip = prefix.last().unwrap();
    let parent = tip.info.prev_share;

    // S: a sibling of T (same parent), with a higher id, so T stays the best tip.
    let mut x_index = base.clone();
    // Equal work: the lower id is best, so S gets a higher id than T.
    let side = (5..)
        .map(|m| mine_share(&mut x_index, Some(parent), &miner(m), tip.header.time + 1))
        .find(|s| s.hash() > tip.hash())
        .unwrap();
    x_index.connect(side.clone(), now_secs()).unwrap();
    assert_eq!(x_index.best_hash(), Some(tip.hash()));
    let nephew = mine_share(
        &mut x_index,
        Some(tip.hash()),
        &miner(6),
        tip.header.time + 2,
    );
    assert_eq!(nephew.info.uncles, vec![side.hash()], "N names S as uncle");

    let x = Node::start("x", &preset).await;
    let y = Node::start("y", &preset).await;
    x.seed(&prefix).await;
    y.seed(&prefix).await;
    // X got S while Y was away: straight into X's chain, never gossiped again.
    x.seed(std::slice::from_ref(&side)).await;
    x.dial(&y).await;
    let (xid, yid) = (x.p2p.local_peer_id(), y.p2p.local_peer_id());
    wait_until("x and y connected", || async {
        x.connected_peers().await.contains(&yid) && y.connected_peers().await.contains(&xid)
    })
    .await;
    wait_until("both on T", || async {
        x.tip() == Some(tip.hash()) && y.tip() == Some(tip.hash())
    })
    .await;

    x.found(&nephew).await;
    wait_until("y on N", || async { y.tip() == Some(nephew.hash()) }).await;
    assert!(y.knows(side.hash()).await);
    for n in [&x, &y] {
        n.p2p.handle().shutdown().await.unwrap();
    }
}
