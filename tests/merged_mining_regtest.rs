//! Merged mining end to end (docs/PROTOCOL.md §15): a node mining on a real litecoind
//! regtest pair merge-mines a real dogecoind regtest pair, with two CPU miners (a P2WPKH and
//! a P2PKH address). Every Dogecoin block it finds must be taken by dogecoind as its tip,
//! and its coinbase must pay the window exactly: what the node submitted, and for blocks
//! that are also shares, what any peer rebuilds from the share chain.
//!
//! Needs dogecoind (`$DOGECOIND` or PATH; see tests/common/dogecoind.rs): without it the
//! test prints SKIPPED and passes.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dogecoind::DogePair;
use common::pool::start_pool_with;
use p2pool::miner::{mine, MinerStats};
use p2pool::node::{NodeEvent, NodeOptions};
use share_chain::aux_work::aux_block_parts;
use share_chain::script::derived_aux_script;

/// Accepted Dogecoin blocks to collect.
const BLOCKS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dogecoin_blocks_pay_the_window() {
    let Some(doge) = DogePair::start().await else {
        return;
    };
    let doge_start = doge.block_count().await;
    let pool = start_pool_with(NodeOptions {
        aux_daemons: vec![doge.a.rpc_config()],
        ..NodeOptions::default()
    })
    .await;
    let mut events = pool.node.subscribe();
    let addresses = [
        pool.daemons.new_address("bech32").await.expect("address"),
        pool.daemons.new_address("legacy").await.expect("address"),
    ];
    let preset = share_chain::Preset::builtin("litecoin-regtest").unwrap();
    let aux_scripts: HashSet<String> = addresses
        .iter()
        .map(|a| {
            let script = share_chain::address::address_to_script(a, &preset.coin).unwrap();
            hex::encode(derived_aux_script(&script).expect("P2WPKH and P2PKH map"))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    for address in &addresses {
        let (config, stop) = (pool.miner(address), stop.clone());
        tokio::spawn(async move {
            let _ = mine(config, Arc::new(MinerStats::default()), stop).await;
        });
    }

    let mut accepted = Vec::new();
    let mut lost_races = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    while accepted.len() < BLOCKS {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} Dogecoin blocks in 180 s", accepted.len()));
        if let Ok(NodeEvent::AuxBlockSubmitted {
            chain,
            hash,
            height,
            accepted: ok,
            result,
            payouts,
        }) = event
        {
            assert_eq!(chain, "dogecoin-regtest");
            if ok {
                accepted.push((hash, height, payouts));
            } else {
                // Blocks are submitted in parallel: a second one on the same previous block
                // is a lost race; anything else would be a block dogecoind refused.
                assert!(result.starts_with("Inconclusive"), "refused: {result}");
                lost_races += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);

    // dogecoind took every one: its chain grew by them.
    assert!(doge.block_count().await >= doge_start + BLOCKS as u64);
    let mut from_shares = 0;
    for (hash, height, payouts) in &accepted {
        let mut display = *hash;
        display.reverse();
        let display = hex::encode(display);
        let coinbase = doge.coinbase_outputs(&display).await;
        // Exactly what the node built, all of the value, to the miners' keys.
        assert_eq!(&coinbase, payouts, "block {height} {display}");
        assert!(coinbase.iter().all(|(script, _)| aux_scripts.contains(script)));
        // The block from a share: what any peer rebuilds from the share chain.
        let hash = *hash;
        let rebuilt = pool
            .node
            .chain
            .call(move |c| {
                let index = c.index_mut();
                let shares: Vec<_> = index.entries().map(|e| e.hash).collect();
                for share_hash in shares {
                    let entry = index.get(&share_hash).expect("held").clone();
                    let share = &entry.share;
                    for block in &share.merged_mining.blocks {
                        let Ok(payouts) = index.aux_window_payouts(
                            &share.info,
                            &entry.credits,
                            share.header.bits,
                            block.chain_id,
                            block.coinbase_value,
                        ) else {
                            continue;
                        };
                        let (_, header) = aux_block_parts(block, &payouts);
                        if header.hash().0 == hash {
                            return Some(payouts);
                        }
                    }
                }
                None
            })
            .await
            .expect("chain");
        if let Some(rebuilt) = rebuilt {
            let rebuilt: Vec<(String, u64)> = rebuilt
                .iter()
                .map(|p| (hex::encode(&p.script), p.amount))
                .collect();
            assert_eq!(coinbase, rebuilt, "block {height}: the share chain's payouts");
            from_shares += 1;
        }
    }
    println!(
        "{} Dogecoin blocks accepted ({from_shares} from shares, checked against the share \
         chain), {lost_races} lost races",
        accepted.len()
    );
    assert!(
        from_shares > 0,
        "no Dogecoin block came from a share: nothing checked against the share chain"
    );
}
