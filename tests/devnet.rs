//! `p2pool devnet --nodes 2`: the devnet's own setup (`Devnet::start`, which `p2pool devnet`
//! runs) with two nodes, one CPU miner each, on a real regtest litecoind pair. The nodes
//! peer, each one's shares reach the other's share chain, and a block found pays the
//! miners of both nodes.
//!
//! With dogecoind (`$DOGECOIND` or PATH) the devnet also merge-mines a real regtest
//! dogecoind pair: each node gets Dogecoin blocks accepted, and one of them pays both
//! miners at the Dogecoin addresses of their keys, in the coinbase dogecoind holds. Without
//! dogecoind that part prints SKIPPED.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use p2pool::blocks::display_hex;
use p2pool::devnet::{dogecoin_address, Devnet, DevnetConfig, DevnetNode, Dogecoind};
use p2pool::node::NodeEvent;
use serde_json::{json, Value};
use share_chain::address::address_to_script;
use share_chain::script::derived_aux_script;
use share_chain::Preset;

mod common;

use common::dogecoind::{coinbase_outputs, dogecoind_or_skip};
use common::pool::{
    best_chain_payout_scripts, drain_accepted_aux, init_logs, paid_scripts, AcceptedAux,
};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_node_devnet_shares_one_chain_and_a_block_pays_both_nodes_miners() {
    init_logs();
    let started = Instant::now();
    let dogecoind =
        dogecoind_or_skip("the devnet's merged mining").map_or(Dogecoind::NotFound, Dogecoind::At);
    let devnet = Devnet::start(&DevnetConfig {
        miners: 1,
        nodes: 2,
        blocks: None,
        dogecoind: dogecoind.clone(),
    })
    .await
    .expect("the devnet starts (litecoind installed?)");
    assert_eq!(devnet.doge.is_some(), dogecoind != Dogecoind::NotFound);
    assert_eq!(devnet.nodes.len(), 2);
    let mut events: Vec<_> = devnet.nodes.iter().map(|n| n.node.subscribe()).collect();
    let (a, b) = (&devnet.nodes[0], &devnet.nodes[1]);
    assert_eq!((a.miners.len(), b.miners.len()), (1, 1));
    let (miner_a, miner_b) = (a.miners[0].clone(), b.miners[0].clone());
    assert_ne!(miner_a, miner_b);
    // Starting dogecoind and mining its first blocks takes a few seconds more.
    let limit = Duration::from_secs(if devnet.doge.is_some() { 75 } else { 60 });
    let deadline = started + limit;
    // Accepted Dogecoin blocks, by the node that submitted them.
    let mut aux_found: [Vec<AcceptedAux>; 2] = [Vec::new(), Vec::new()];

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
                match event {
                    NodeEvent::BlockSubmitted {
                        hash,
                        accepted: true,
                        payouts,
                        ..
                    } => {
                        let paid: HashSet<&String> = payouts.iter().map(|(who, _)| who).collect();
                        if paid.contains(&miner_a) && paid.contains(&miner_b) {
                            break 'found (hash, n);
                        }
                    }
                    NodeEvent::AuxBlockSubmitted {
                        hash,
                        accepted: true,
                        payouts,
                        ..
                    } => aux_found[n].push((hash, payouts)),
                    _ => {}
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
    let paid = paid_scripts(devnet.daemons.client(), &block.to_string()).await;
    assert!(paid.contains(&script(&miner_a)), "{paid:?}");
    assert!(paid.contains(&script(&miner_b)), "{paid:?}");

    // Each node's share chain holds the other node's miner's shares: they came over the
    // share-chain network (each node's Stratum serves only its own miner).
    for (n, other) in [(a, &miner_b), (b, &miner_a)] {
        let want = script(other);
        while !best_chain_payout_scripts(&n.node).await.contains(&want) {
            assert!(
                Instant::now() < deadline + Duration::from_secs(10),
                "{other}'s shares never reached the other node's chain"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    if let Some(doge) = &devnet.doge {
        // Each node gets Dogecoin blocks accepted, and one pays both miners at the
        // Dogecoin addresses of their keys.
        let preset = Preset::builtin("litecoin-regtest").unwrap();
        let doge_of = |miner: &str| dogecoin_address(&preset, miner).expect("P2WPKH or P2PKH");
        let want = [doge_of(&miner_a), doge_of(&miner_b)];
        let pays_both = |payouts: &[(String, u64)]| {
            want.iter()
                .all(|w| payouts.iter().any(|(who, amount)| who == w && *amount > 0))
        };
        let aux_deadline = deadline + Duration::from_secs(30);
        let paying = loop {
            drain_accepted_aux(&mut events, &mut aux_found);
            let both = aux_found.iter().flatten().find(|(_, p)| pays_both(p));
            if let (false, false, Some((hash, payouts))) =
                (aux_found[0].is_empty(), aux_found[1].is_empty(), both)
            {
                break (display_hex(*hash), payouts.clone());
            }
            assert!(
                Instant::now() < aux_deadline,
                "Dogecoin blocks accepted: {} via node 0, {} via node 1, none paying {want:?}",
                aux_found[0].len(),
                aux_found[1].len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        eprintln!(
            "Dogecoin blocks accepted: {} via node 0, {} via node 1; {} pays both miners, \
             after {:?}",
            aux_found[0].len(),
            aux_found[1].len(),
            paying.0,
            started.elapsed()
        );
        // dogecoind's own view: node A holds the block (node B's arrive over Dogecoin's P2P)
        // and its coinbase pays both miners' Dogecoin scripts what the node said.
        let client = doge.client();
        let arrived = Instant::now();
        while client
            .call::<Value>("getblockheader", vec![json!(paying.0)])
            .await
            .is_err()
        {
            assert!(
                arrived.elapsed() < Duration::from_secs(30),
                "dogecoind A never got {}",
                paying.0
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let coinbase = coinbase_outputs(doge, &paying.0).await;
        for (miner, doge_address) in [&miner_a, &miner_b].into_iter().zip(&want) {
            let aux = derived_aux_script(&script(miner)).unwrap();
            let amount = paying
                .1
                .iter()
                .find(|(who, _)| who == doge_address)
                .map(|(_, amount)| *amount)
                .unwrap();
            assert!(
                coinbase.contains(&(hex::encode(&aux), amount)),
                "{doge_address} ({miner}) not paid {amount} koinu in {coinbase:?}"
            );
        }
    }
    devnet.stop().await;
    eprintln!("done in {:?}", started.elapsed());
}
