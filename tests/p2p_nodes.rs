//! p2pool nodes sharing one share chain over the real network: real litecoind (regtest, one
//! daemon pair behind every node), real libp2p on 127.0.0.1, real Stratum CPU miners.
//!
//! - Three nodes, each with its own miner and payout address, gossip their shares: they end
//!   on the same best tip, the chain holds all three miners' shares, and litecoind accepts
//!   a block whose coinbase pays all three.
//! - A node started after the others have mined 20+ shares catches up over sync, ends on
//!   the same tip and builds the same payouts as an old node.
//! - A peer gossiping a share whose Dogecoin block pays its own miner alone is refused and
//!   charged; its honest share gets in.
//!
//! The tests run one after the other (a shared lock): each keeps the machine's CPUs
//! busy with miners.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pool::miner::{mine, MinerConfig, MinerStats};
use p2pool::node::{Node, NodeConfig, NodeEvent};
use p2pool::regtest::RegtestPair;
use p2pool_network::Multiaddr;
use share_chain::address::address_to_script;
use share_chain::template::MinerPayout;
use share_chain::{Preset, ShareHash};
use tokio::sync::Mutex;

mod common;

use common::pool::{best_chain_payout_scripts, paid_scripts, wait_for};

static SERIAL: Mutex<()> = Mutex::const_new(());

fn preset() -> Preset {
    Preset::builtin("litecoin-regtest").unwrap()
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A running CPU miner.
struct Miner {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Miner {
    /// Stops it and waits until it has (it checks its flag between Stratum messages, so a
    /// solution found meanwhile may still be submitted).
    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

struct TestNode {
    node: Node,
    _datadir: tempfile::TempDir,
}

impl TestNode {
    async fn start(daemons: &RegtestPair, peers: Vec<Multiaddr>) -> TestNode {
        let datadir = tempfile::tempdir().unwrap();
        let node = Node::start(NodeConfig {
            preset: preset(),
            datadir: datadir.path().to_path_buf(),
            daemon: daemons.a.rpc_config(),
            stratum: "127.0.0.1:0".parse().unwrap(),
            fee: None,
            p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            peers,
        })
        .await
        .expect("node starts");
        TestNode {
            node,
            _datadir: datadir,
        }
    }

    fn addrs(&self) -> Vec<Multiaddr> {
        let addrs = self.node.p2p.as_ref().expect("p2p is on").listen_addrs();
        assert!(!addrs.is_empty(), "the node listens");
        addrs
    }

    fn tip(&self) -> Option<ShareHash> {
        self.node.chain.summary().tip
    }

    /// Starts a CPU miner paying `address`.
    fn start_miner(&self, address: &str) -> Miner {
        let preset = preset();
        let stop = Arc::new(AtomicBool::new(false));
        let config = MinerConfig {
            server: self.node.stratum_addr(),
            username: format!("{address}.test"),
            threads: 1,
            pow: preset.coin.pow,
            difficulty_multiplier: preset.coin.pow.stratum_difficulty_multiplier(),
        };
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let _ = mine(config, Arc::new(MinerStats::default()), flag).await;
        });
        Miner { stop, task }
    }
}

/// Waits for `n` more shares found by `node`'s own miners.
async fn own_shares(node: &TestNode, n: usize, limit: Duration) {
    let mut events = node.node.subscribe();
    let mut seen = 0;
    let deadline = Instant::now() + limit;
    while seen < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(NodeEvent::ShareAccepted { .. })) => seen += 1,
            Ok(_) => {}
            Err(_) => panic!("only {seen} of {n} shares in {limit:?}"),
        }
    }
}

/// Stops every miner but the first, lets the first extend the chain by two shares (so every
/// node has one best tip to converge on, not a tie between two), then stops it too.
async fn settle(first: &TestNode, mut miners: Vec<Miner>) {
    let first_miner = miners.remove(0);
    for m in miners {
        m.stop().await;
    }
    own_shares(first, 2, Duration::from_secs(30)).await;
    first_miner.stop().await;
}

async fn same_tip(nodes: &[&TestNode], limit: Duration) -> ShareHash {
    wait_for("all nodes on the same best tip", limit, || async {
        let tips: HashSet<Option<ShareHash>> = nodes.iter().map(|n| n.tip()).collect();
        tips.len() == 1 && !tips.contains(&None)
    })
    .await;
    nodes[0].tip().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_mine_one_chain_and_a_block_pays_all() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let daemons = RegtestPair::start().await.expect("litecoind pair");
    let a = TestNode::start(&daemons, Vec::new()).await;
    let b = TestNode::start(&daemons, a.addrs()).await;
    let mut peers = a.addrs();
    peers.extend(b.addrs());
    let c = TestNode::start(&daemons, peers).await;
    let nodes = [&a, &b, &c];

    let mut addresses = Vec::new();
    for kind in ["bech32", "legacy", "bech32"] {
        addresses.push(daemons.new_address(kind).await.unwrap());
    }
    let scripts: Vec<Vec<u8>> = addresses
        .iter()
        .map(|x| address_to_script(x, &preset().coin).unwrap())
        .collect();

    // Blocks from any node, paying all three miners.
    let mut events: Vec<_> = nodes.iter().map(|n| n.node.subscribe()).collect();
    let miners: Vec<Miner> = nodes
        .iter()
        .zip(&addresses)
        .map(|(n, addr)| n.start_miner(addr))
        .collect();
    let limit = Duration::from_secs(60);
    let deadline = Instant::now() + limit;
    let block = 'found: loop {
        assert!(
            Instant::now() < deadline,
            "no accepted block paying all three miners in {limit:?}"
        );
        for rx in &mut events {
            while let Ok(event) = rx.try_recv() {
                if let NodeEvent::BlockSubmitted {
                    hash,
                    accepted: true,
                    payouts,
                    ..
                } = event
                {
                    let paid: HashSet<&String> = payouts.iter().map(|(who, _)| who).collect();
                    if addresses.iter().all(|x| paid.contains(x)) {
                        break 'found hash;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // litecoind's own view of that block's coinbase.
    let paid = paid_scripts(daemons.client(), &block.to_string()).await;
    for s in &scripts {
        assert!(paid.contains(s), "the block's coinbase pays every miner");
    }

    settle(&a, miners).await;
    same_tip(&nodes, Duration::from_secs(30)).await;
    for n in nodes {
        let on_chain = best_chain_payout_scripts(&n.node).await;
        for s in &scripts {
            assert!(
                on_chain.contains(s),
                "the shared chain holds every miner's shares"
            );
        }
    }
    // A solution still in flight when its miner stopped may extend the chain: they agree
    // again on the new tip.
    same_tip(&nodes, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_syncs_the_chain() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let daemons = RegtestPair::start().await.expect("litecoind pair");
    let a = TestNode::start(&daemons, Vec::new()).await;
    let b = TestNode::start(&daemons, a.addrs()).await;
    let mut addresses = Vec::new();
    for kind in ["bech32", "legacy"] {
        addresses.push(daemons.new_address(kind).await.unwrap());
    }
    let miners = vec![a.start_miner(&addresses[0]), b.start_miner(&addresses[1])];
    wait_for(
        "20 shares on the chain",
        Duration::from_secs(60),
        || async { a.node.chain.summary().height >= 20 && b.node.chain.summary().height >= 20 },
    )
    .await;
    settle(&a, miners).await;
    same_tip(&[&a, &b], Duration::from_secs(30)).await;
    let height = a.node.chain.summary().height;
    assert!(height >= 20);

    // Late, and it knows only b: everything it gets, it gets by sync.
    let late = TestNode::start(&daemons, b.addrs()).await;
    let nodes = [&a, &b, &late];
    let script = address_to_script(&addresses[0], &preset().coin).unwrap();
    let template = |n: &TestNode| {
        let script = script.clone();
        let chain = n.node.chain.clone();
        async move {
            chain
                .call(move |c| {
                    let miner = MinerPayout {
                        aux_script: None,
                        script,
                        fee: None,
                        share_target_bits: None,
                    };
                    c.index_mut()
                        .share_template(&miner, share_chain::testkit::block_context(50_0000_0000))
                        .map(|t| (t.payouts, t.info.uncles))
                })
                .await
                .unwrap()
                .unwrap()
        }
    };
    // A solution in flight when its miner stopped may still move the tip: compare on a
    // tip that held still across the comparison.
    for attempt in 0.. {
        assert!(attempt < 5, "the tip kept moving");
        let tip = same_tip(&nodes, Duration::from_secs(30)).await;
        let heights = (
            a.node.chain.summary().height,
            late.node.chain.summary().height,
        );
        // The same chain gives the same payouts to the next share of any miner.
        let old = template(&a).await;
        let new = template(&late).await;
        if a.tip() != Some(tip) || late.tip() != Some(tip) {
            continue;
        }
        assert_eq!(heights.0, heights.1);
        assert!(heights.1 >= height);
        assert!(old.0.len() >= 2, "both miners are paid");
        // Uncles are each node's own choice among the side shares it holds: a side share
        // found as the miners stopped may be known to `a` and not (yet) to the late node.
        // With the same uncles, the same chain must give byte-identical payouts.
        // Then the windows, which no choice enters, must be the same.
        if old.1 != new.1 {
            let window = |n: &TestNode| {
                let chain = n.node.chain.clone();
                async move {
                    chain
                        .call(|c| c.index().tip_window().map(|w| w.sums().clone()))
                        .await
                        .unwrap()
                }
            };
            assert_eq!(window(&a).await, window(&late).await);
            break;
        }
        assert_eq!(old, new);
        break;
    }
}

/// A share whose Dogecoin block pays its own miner the whole reward (docs/PROTOCOL.md §15),
/// gossiped by a real libp2p peer to a real node: the node refuses it and charges the peer,
/// while the same peer's honest share, mined the same way on the same chain, gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_paying_its_miner_the_whole_aux_block_is_refused() {
    use p2pool_network::{NetworkConfig, NetworkEvent, Verdict};
    use share_chain::testkit::{greedy_aux_share, mine_share, miner};

    let _serial = SERIAL.lock().await;
    init_logs();
    let daemons = RegtestPair::start().await.expect("litecoind pair");
    let node = TestNode::start(&daemons, Vec::new()).await;
    let address = daemons.new_address("bech32").await.unwrap();
    let first = node.start_miner(&address);
    own_shares(&node, 3, Duration::from_secs(60)).await;
    first.stop().await;

    // The other node: a bare network peer publishing what it is given.
    let mut config = NetworkConfig::new(preset().network_id());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.enable_kad = false;
    let (greedy_node, mut events) = p2pool_network::spawn(config).await.expect("network");
    let judge = greedy_node.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let NetworkEvent::ShareGossip { peer, msg_id, .. } = event {
                let _ = judge.report_validation(msg_id, peer, Verdict::Ignore).await;
            }
        }
    });
    greedy_node.dial(node.addrs()[0].clone()).await.unwrap();
    let node_net = node.node.p2p.as_ref().unwrap().handle().clone();
    let greedy_id = greedy_node.local_peer_id();
    wait_for(
        "the peer in the node's gossip mesh",
        Duration::from_secs(30),
        || async {
            let theirs = greedy_node.peers().await.unwrap_or_default();
            theirs.iter().any(|p| p.in_mesh)
        },
    )
    .await;

    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32
    };
    // Honest: paying the window on both chains. The node takes it as its tip.
    let tip = node.tip().unwrap();
    let time = now();
    let honest = node
        .node
        .chain
        .call(move |c| mine_share(c.index_mut(), Some(tip), &miner(7), time))
        .await
        .unwrap();
    let honest_hash = honest.hash();
    greedy_node.publish_share(honest.encode()).await.unwrap();
    wait_for(
        "the honest share as the node's tip",
        Duration::from_secs(30),
        || async { node.tip() == Some(honest_hash) },
    )
    .await;

    // Greedy: the same, but its Dogecoin block pays its miner alone.
    let time = now();
    let greedy = node
        .node
        .chain
        .call(move |c| greedy_aux_share(c.index_mut(), honest_hash, &miner(7), time))
        .await
        .unwrap();
    let greedy_hash = greedy.hash();
    greedy_node.publish_share(greedy.encode()).await.unwrap();
    wait_for(
        "the greedy peer charged",
        Duration::from_secs(30),
        || async {
            let peers = node_net.peers().await.unwrap_or_default();
            peers
                .iter()
                // One invalid share's penalty (30), decaying from the moment it was charged.
                .any(|p| p.peer == greedy_id && p.score < -25.0)
        },
    )
    .await;
    let held = node
        .node
        .chain
        .call(move |c| c.index().get(&greedy_hash).is_some())
        .await
        .unwrap();
    assert!(!held, "the greedy share is not in the node's chain");
    assert_eq!(
        node.tip(),
        Some(honest_hash),
        "the tip stays the honest share"
    );
}
