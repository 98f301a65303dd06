//! Benchmark: how long a new share takes to cross a 10-node loopback mesh (see
//! BENCHMARKS.md, "Share-chain network").
//!
//! Ten real nodes ([`p2pool::p2p::P2p`] + [`p2pool::chain_service::ChainHandle`]) in one
//! process, each holding the same full mainnet-size window (8,640 shares, 1,000 miners).
//! Topology, two runs: each node dials 3 others drawn at random (fixed seed), then
//! - *Discovered*: the node's own discovery (Kademlia) adds links on top, as it would in
//!   the field; on 10 nodes it ends as a complete graph (every share one hop away);
//! - *Pinned*: only the dialed links (every other pair banned through the public
//!   `NetworkHandle::ban` before dialing), so paths are multi-hop (hop counts printed).
//!
//! The graph actually in place is read back from the nodes and printed. Each sample: node 0
//! connects a freshly mined valid share to its chain and publishes it through its
//! own-shares channel (as the solution handler does); the clock stops when the last of the other nine nodes has it as its best
//! tip. Every hop decodes the share, checks its scrypt proof of work, validates it against
//! the window (coinbase rebuilt with the PPLNS payouts), stores it with `fdatasync`, and only
//! then lets gossipsub forward it.
//!
//! A plain program rather than criterion: criterion reports means, the aim is a p99.
//! `cargo bench --bench gossip_mesh` (`GOSSIP_SAMPLES=n` to change the 300 samples).

mod common;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use common::{init_logs, load_average, mine_chain, mine_more, preset, Node, WINDOW};
use futures::future::join_all;
use hdrhistogram::Histogram;
use p2pool_network::PeerId;
use share_chain::chain::ChainIndex;
use share_chain::{Preset, Share};

const NODES: usize = 10;
/// Each node dials this many others.
const DIALS: usize = 3;
const SEED: u64 = 0x5eed_2026;
const WARMUP: usize = 20;
/// Quiet time between samples, so a sample's leftover duplicate traffic does not land in
/// the next one (real shares are 15 s apart).
const GAP: Duration = Duration::from_millis(30);
const SAMPLE_LIMIT: Duration = Duration::from_secs(10);

/// The identified connections of every node, as node indices.
async fn graph(nodes: &[Node], ids: &HashMap<PeerId, usize>) -> Vec<BTreeSet<usize>> {
    let mut out = Vec::new();
    for n in nodes {
        let peers = n.p2p.handle().peers().await.expect("network up");
        out.push(
            peers
                .iter()
                .filter(|p| p.agent_version.is_some())
                .filter_map(|p| ids.get(&p.peer).copied())
                .collect(),
        );
    }
    out
}

/// Hop distance from node 0 to every node (`None`: unreachable).
fn hops(graph: &[BTreeSet<usize>]) -> Vec<Option<usize>> {
    let mut dist = vec![None; graph.len()];
    dist[0] = Some(0);
    let mut queue = VecDeque::from([0usize]);
    while let Some(i) = queue.pop_front() {
        let d = dist[i].unwrap_or(0);
        for &j in &graph[i] {
            if dist[j].is_none() {
                dist[j] = Some(d + 1);
                queue.push_back(j);
            }
        }
    }
    dist
}

fn describe(graph: &[BTreeSet<usize>]) -> String {
    let dist = hops(graph);
    let edges: usize = graph.iter().map(|s| s.len()).sum::<usize>() / 2;
    let degrees: Vec<usize> = graph.iter().map(|s| s.len()).collect();
    format!(
        "{edges} links, degrees {degrees:?}, hops from node 0 {:?}",
        dist.iter()
            .map(|d| d.map_or("-".to_string(), |d| d.to_string()))
            .collect::<Vec<_>>()
    )
}

fn main() {
    init_logs();
    let samples: usize = std::env::var("GOSSIP_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let preset = preset();
        let index = mine_chain(&preset, WINDOW, WARMUP + samples + 10);
        // Mined up front so mining never competes with the measured gossip for the CPUs.
        let t = Instant::now();
        let fresh = mine_more(&mut index.clone(), WARMUP + samples);
        eprintln!(
            "mined {} shares to publish in {:.1?}",
            fresh.len(),
            t.elapsed()
        );
        for topology in [Topology::Discovered, Topology::Pinned] {
            run(&preset, &index, &fresh, topology).await;
        }
    });
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Topology {
    /// The dialed links plus whatever the nodes' own discovery adds.
    Discovered,
    /// Only the dialed links: each node bans (through the public `NetworkHandle::ban`)
    /// every node it neither dialed nor was dialed by, before any dial, so discovery
    /// cannot add links and paths stay multi-hop.
    Pinned,
}

async fn run(preset: &Preset, index: &ChainIndex, fresh: &[Share], topology: Topology) {
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(Node::start(preset, Some(index), Vec::new()).await);
    }
    let ids: HashMap<PeerId, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.p2p.local_peer_id(), i))
        .collect();

    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut dials: Vec<(usize, usize)> = Vec::new();
    let mut dialed: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); NODES];
    for i in 0..NODES {
        let mut others: Vec<usize> = (0..NODES).filter(|&j| j != i).collect();
        rng.shuffle(&mut others);
        for &j in &others[..DIALS] {
            dials.push((i, j));
            dialed[i].insert(j);
            dialed[j].insert(i);
        }
    }
    if topology == Topology::Pinned {
        for i in 0..NODES {
            for j in (0..NODES).filter(|j| *j != i && !dialed[i].contains(j)) {
                let peer = nodes[j].p2p.local_peer_id();
                nodes[i].p2p.handle().ban(peer).await.expect("network up");
            }
        }
    }
    for (i, j) in dials {
        nodes[i]
            .p2p
            .handle()
            .dial(nodes[j].addr())
            .await
            .expect("dial starts");
    }
    println!("== topology {topology:?}: each node dials {DIALS} others (seed {SEED:#x})");
    println!("dialed links: {}", describe(&dialed));

    // Every dialed link up and every node's gossip mesh formed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let g = graph(&nodes, &ids).await;
        let links_up = (0..NODES).all(|i| dialed[i].is_subset(&g[i]));
        let mut meshes_full = true;
        for n in &nodes {
            let st = n.p2p.handle().status().await.expect("network up");
            meshes_full &= st.topic_peers > 0 && st.mesh_peers >= st.topic_peers.min(4);
        }
        if links_up && meshes_full {
            break;
        }
        assert!(Instant::now() < deadline, "mesh not formed: {g:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut first_hop = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut last_node = vec![0usize; NODES];
    let mut start_graph = None;
    for (k, share) in fresh.iter().enumerate() {
        if k == WARMUP {
            start_graph = Some(graph(&nodes, &ids).await);
        }
        let hash = share.hash();
        let s = share.clone();
        nodes[0]
            .chain
            .call(move |c| c.connect(s, common::now_secs()).map(|_| ()))
            .await
            .expect("chain thread")
            .expect("own share connects");
        let mut rxs: Vec<_> = nodes[1..].iter().map(|n| n.chain.subscribe()).collect();
        let t0 = Instant::now();
        nodes[0].publish.send(share.encode()).expect("p2p running");
        let arrivals = join_all(rxs.iter_mut().map(|rx| async move {
            let got = tokio::time::timeout(SAMPLE_LIMIT, rx.wait_for(|s| s.tip == Some(hash)))
                .await
                .is_ok_and(|r| r.is_ok());
            got.then(|| t0.elapsed())
        }))
        .await;
        let Some(times) = arrivals.into_iter().collect::<Option<Vec<Duration>>>() else {
            panic!("share {k} did not reach every node within {SAMPLE_LIMIT:?}");
        };
        if k >= WARMUP {
            let (last, worst) = times
                .iter()
                .enumerate()
                .max_by_key(|(_, t)| **t)
                .map(|(i, t)| (i + 1, *t))
                .expect("nine nodes");
            let best = times.iter().min().copied().unwrap_or_default();
            hist.record(worst.as_micros().max(1) as u64)
                .expect("in range");
            first_hop
                .record(best.as_micros().max(1) as u64)
                .expect("in range");
            last_node[last] += 1;
        }
        tokio::time::sleep(GAP).await;
    }
    let end_graph = graph(&nodes, &ids).await;

    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "links when measuring started: {}",
        describe(start_graph.as_deref().unwrap_or(&end_graph))
    );
    println!("links when measuring ended:   {}", describe(&end_graph));
    println!(
        "10-node mesh ({topology:?}), {} shares, window {WINDOW}: last node reached in \
         p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (mean {:.2} ms)",
        hist.len(),
        ms(hist.value_at_quantile(0.5)),
        ms(hist.value_at_quantile(0.9)),
        ms(hist.value_at_quantile(0.99)),
        ms(hist.max()),
        hist.mean() / 1000.0,
    );
    println!(
        "first node reached in p50 {:.2} ms, p99 {:.2} ms",
        ms(first_hop.value_at_quantile(0.5)),
        ms(first_hop.value_at_quantile(0.99)),
    );
    println!("which node was last, count per node: {last_node:?}");
    println!("load average: {}", load_average());
    for n in nodes {
        n.stop().await;
    }
}
