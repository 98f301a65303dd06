//! End to end against the real litecoind (regtest): a p2pool node, two CPU miners paying
//! two addresses over real Stratum, real scrypt. Blocks are accepted by litecoind, before
//! and after MWEB activation, and each block's coinbase pays both miners in proportion to
//! the work in the share chain's PPLNS window.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use p2pool::node::NodeEvent;
use serde_json::{json, Value};
use share_chain::address::address_to_script;
use share_chain::payout::payout_step;
use share_chain::pplns::{window_work_cap, WindowWeights};
use share_chain::{Preset, ShareHash};

mod common;

use common::pool::{start_pool_with, Pool};
use p2pool::node::NodeOptions;

/// Waits until both miners have shares on the chain and then for `n` blocks accepted by
/// litecoind that are also shares (so the share chain holds the coinbase they paid). A
/// block is submitted on a task of its own, so its share may be connected before or after
/// litecoind's answer: either order counts.
async fn accepted_share_blocks(pool: &Pool, n: usize, limit: Duration) -> Vec<ShareHash> {
    let mut events = pool.node.subscribe();
    let start = Instant::now();
    let mut miners_seen = std::collections::HashSet::new();
    let mut blocks = std::collections::HashSet::new();
    let mut shares = std::collections::HashSet::new();
    let mut found = Vec::new();
    while found.len() < n {
        let left = limit.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(NodeEvent::BlockSubmitted {
                hash,
                accepted: true,
                ..
            })) => {
                if shares.contains(&hash) {
                    found.push(hash);
                }
                blocks.insert(hash);
            }
            Ok(Ok(NodeEvent::ShareAccepted { hash, miner, .. })) => {
                if miners_seen.len() == 2 {
                    if blocks.contains(&hash) {
                        found.push(hash);
                    }
                    shares.insert(hash);
                }
                miners_seen.insert(miner);
            }
            Ok(_) => {}
            Err(_) => panic!(
                "only {} of {n} share blocks ({} miners with shares, {} blocks accepted) in \
                 {limit:?}",
                found.len(),
                miners_seen.len(),
                blocks.len()
            ),
        }
    }
    found
}

/// Checks the block's coinbase on litecoind against the share chain's window.
async fn check_coinbase_pays_window(pool: &Pool, addresses: &[String], block: ShareHash) {
    let preset = Preset::builtin("litecoin-regtest").unwrap();
    let rpc = pool.daemons.client();
    let raw: Value = rpc
        .call("getblock", vec![json!(block.to_string()), json!(2)])
        .await
        .expect("litecoind knows the block");
    let coinbase = &raw["tx"][0];
    let mut paid: Vec<(Vec<u8>, u64)> = Vec::new();
    for out in coinbase["vout"].as_array().unwrap() {
        let sats = (out["value"].as_f64().unwrap() * 1e8).round() as u64;
        let script = hex::decode(out["scriptPubKey"]["hex"].as_str().unwrap()).unwrap();
        if sats > 0 {
            paid.push((script, sats));
        }
    }
    let value: u64 = paid.iter().map(|(_, v)| v).sum();

    // The window the share chain says this block's share pays, from the node's own chain.
    let (weights, finder) = pool
        .node
        .chain
        .call(move |chain| {
            let index = chain.index();
            let entry = index.get(&block).expect("the block is a share").clone();
            let ancestors = entry
                .parent()
                .into_iter()
                .flat_map(|p| index.ancestors(p))
                .map(|e| e.credits.as_ref());
            let cap = window_work_cap(entry.cap_basis.bits, index.params());
            let w = WindowWeights::from_ancestors(&entry.credits, ancestors, cap, index.params());
            (w.by_script, entry.share.info.payout_script.clone())
        })
        .await
        .unwrap();
    let total: u128 = weights.values().sum();
    let scripts: Vec<Vec<u8>> = addresses
        .iter()
        .map(|a| address_to_script(a, &preset.coin).unwrap())
        .collect();
    for s in &scripts {
        assert!(
            weights.contains_key(s),
            "both miners have work in the window"
        );
    }
    let bonus = value * u64::from(preset.consensus.finder_bonus_basis_points) / 10_000;
    let reward = value - bonus;
    let step = payout_step(reward, &preset.consensus.payout_rules());
    for (script, weight) in &weights {
        let exact = reward as f64 * *weight as f64 / total as f64;
        let got = paid
            .iter()
            .find(|(s, _)| s == script)
            .map_or(0, |(_, v)| *v) as f64;
        let extra = if *script == finder {
            (bonus + step) as f64
        } else {
            0.0
        };
        assert!(
            (got - exact).abs() <= step as f64 + extra,
            "paid {got}, owed {exact} (step {step})"
        );
    }
}

/// The node's JSON-RPC API reports what the miners did: litecoind ready, both miners in
/// the window with an expected payout, their workers' accepted submissions.
async fn check_api(pool: &Pool, addresses: &[String]) {
    let url = format!("http://{}/", pool.node.api_addr().expect("the API is on"));
    let client = reqwest::Client::new();
    let call = |method: &str, params: Value| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let request = client.post(&url).json(&body).send();
        async move {
            let answer: Value = request.await.unwrap().json().await.unwrap();
            assert!(answer["error"].is_null(), "{answer}");
            answer["result"].clone()
        }
    };
    let info = call("getinfo", json!([])).await;
    assert_eq!(info["daemon"]["ready"], true, "{info}");
    assert!(info["share_chain"]["height"].as_u64().unwrap() > 0);
    let pay = call("getpayoutinfo", json!([])).await;
    let value = pay["block_value"].as_u64().expect("a template's value");
    let miners = pay["miners"].as_array().unwrap();
    let mut expected_sum = 0;
    for address in addresses {
        let m = miners
            .iter()
            .find(|m| m["address"] == address.as_str())
            .unwrap_or_else(|| panic!("{address} is in the window: {pay}"));
        assert!(m["fraction"].as_f64().unwrap() > 0.0);
        expected_sum += m["expected"].as_u64().unwrap();
    }
    assert!(expected_sum > 0 && expected_sum <= value);
    for address in addresses {
        let stats = call("getminerstats", json!([address])).await;
        let workers = stats["workers"].as_array().unwrap();
        assert_eq!(workers.len(), 1, "{stats}");
        assert!(workers[0]["accepted"].as_u64().unwrap() > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_pay_every_miner_before_and_after_mweb() {
    let pool = start_pool_with(NodeOptions {
        api: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeOptions::default()
    })
    .await;
    let mut addresses = Vec::new();
    for kind in ["bech32", "legacy"] {
        addresses.push(pool.daemons.new_address(kind).await.unwrap());
    }

    // Before MWEB: the pool's own blocks, each paying both miners by their work.
    let miners = pool.start_miners(&addresses);
    let blocks = accepted_share_blocks(&pool, 2, Duration::from_secs(180)).await;
    check_coinbase_pays_window(&pool, &addresses, *blocks.last().unwrap()).await;
    check_api(&pool, &addresses).await;
    miners.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Jump to just below MWEB activation (height 432) and put a peg-in in the mempool:
    // the first MWEB block must carry one.
    let spare = pool.daemons.new_address("bech32").await.unwrap();
    while pool.daemons.block_count().await.unwrap() < 431 {
        let height = pool.daemons.block_count().await.unwrap();
        pool.daemons
            .mine_blocks((431 - height).min(50), &spare)
            .await
            .unwrap();
    }
    assert_eq!(pool.daemons.block_count().await.unwrap(), 431);
    let mweb: String = pool
        .daemons
        .client()
        .call("getnewaddress", vec![json!(""), json!("mweb")])
        .await
        .unwrap();
    let _: Value = pool
        .daemons
        .client()
        .call("sendtoaddress", vec![json!(mweb), json!(1.0)])
        .await
        .expect("peg-in");

    let miners = pool.start_miners(&addresses);
    let blocks = accepted_share_blocks(&pool, 2, Duration::from_secs(180)).await;
    let tip = pool.daemons.block_count().await.unwrap();
    assert!(
        tip >= 434,
        "the pool mined past MWEB activation (tip {tip})"
    );
    let info: Value = pool
        .daemons
        .client()
        .call("getblock", vec![json!(blocks[0].to_string()), json!(2)])
        .await
        .unwrap();
    assert!(info["height"].as_u64().unwrap() >= 432);
    check_coinbase_pays_window(&pool, &addresses, *blocks.last().unwrap()).await;
    miners.store(true, Ordering::Relaxed);
}
