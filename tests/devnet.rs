//! `p2pool devnet --nodes 2`: the devnet's own setup (`Devnet::start`, which `p2pool devnet`
//! runs) with two nodes, one CPU miner each, on a real regtest litecoind pair. The nodes
//! peer, each one's shares reach the other's share chain, and a block found pays the
//! miners of both nodes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use p2pool::devnet::{Devnet, DevnetConfig, DevnetNode};
use p2pool::node::NodeEvent;
use serde_json::{json, Value};
use share_chain::address::address_to_script;
use share_chain::Preset;

mod common;

use common::pool::init_logs;

fn script(address: &str) -> Vec<u8> {
    address_to_script(address, &Preset::builtin("litecoin-regtest").unwrap().coin).unwrap()
}

async fn peers(n: &DevnetNode) -> usize {
    let p2p = n
        .node
        .p2p
        .as_ref()
        .expect("a devnet of two nodes runs the network");
    p2p.handle()
        .status()
        .await
        .map(|s| s.connected_peers)
        .unwrap_or(0)
}

/// The payout scripts of the shares on `n`'s best chain.
async fn miners_on_best_chain(n: &DevnetNode) -> HashSet<Vec<u8>> {
    n.node
        .chain
        .call(|c| {
            let index = c.index();
            match index.best_hash() {
                Some(best) => index
                    .ancestors(best)
                    .map(|e| e.share.info.payout_script.clone())
                    .collect(),
                None => HashSet::new(),
            }
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_node_devnet_shares_one_chain_and_a_block_pays_both_nodes_miners() {
    init_logs();
    let started = Instant::now();
    let devnet = Devnet::start(&DevnetConfig {
        miners: 1,
        nodes: 2,
        blocks: None,
    })
    .await
    .expect("the devnet starts (litecoind installed?)");
    assert_eq!(devnet.nodes.len(), 2);
    let mut events: Vec<_> = devnet.nodes.iter().map(|n| n.node.subscribe()).collect();
    let (a, b) = (&devnet.nodes[0], &devnet.nodes[1]);
    assert_eq!((a.miners.len(), b.miners.len()), (1, 1));
    let (miner_a, miner_b) = (a.miners[0].clone(), b.miners[0].clone());
    assert_ne!(miner_a, miner_b);
    let limit = Duration::from_secs(60);
    let deadline = started + limit;

    // Peered on loopback.
    while peers(a).await == 0 || peers(b).await == 0 {
        assert!(Instant::now() < deadline, "the devnet's nodes never peered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A block, from either node, paying the miners of both.
    let (block, found_by) = 'found: loop {
        assert!(
            Instant::now() < deadline,
            "no accepted block paying {miner_a} and {miner_b} in {limit:?}"
        );
        for (n, rx) in events.iter_mut().enumerate() {
            while let Ok(event) = rx.try_recv() {
                if let NodeEvent::BlockSubmitted {
                    hash,
                    accepted: true,
                    payouts,
                    ..
                } = event
                {
                    let paid: HashSet<&String> = payouts.iter().map(|(who, _)| who).collect();
                    if paid.contains(&miner_a) && paid.contains(&miner_b) {
                        break 'found (hash, n);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "node {found_by} found block {block}, paying both nodes' miners, after {:?}",
        started.elapsed()
    );
    // litecoind's own view of the block's coinbase.
    let raw: Value = devnet
        .daemons
        .client()
        .call("getblock", vec![json!(block.to_string()), json!(2)])
        .await
        .expect("litecoind has the block");
    let paid: HashSet<Vec<u8>> = raw["tx"][0]["vout"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|out| out["value"].as_f64().unwrap() > 0.0)
        .map(|out| hex::decode(out["scriptPubKey"]["hex"].as_str().unwrap()).unwrap())
        .collect();
    assert!(paid.contains(&script(&miner_a)), "{raw}");
    assert!(paid.contains(&script(&miner_b)), "{raw}");

    // Each node's share chain holds the other node's miner's shares: they came over the
    // share-chain network (each node's Stratum serves only its own miner).
    for (n, other) in [(a, &miner_b), (b, &miner_a)] {
        let want = script(other);
        while !miners_on_best_chain(n).await.contains(&want) {
            assert!(
                Instant::now() < deadline + Duration::from_secs(10),
                "{other}'s shares never reached the other node's chain"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    devnet.stop().await;
    eprintln!("done in {:?}", started.elapsed());
}
