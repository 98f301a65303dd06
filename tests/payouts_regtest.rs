//! What the node says it pays, checked against what litecoind holds: a node mining on a
//! real regtest litecoind with two CPU miners over real Stratum.
//!
//! - the coinbase of a found block equals the `getpayoutinfo` payouts in force when it
//!   was found;
//! - `getblocks` lists it with those payouts, and its status follows litecoind
//!   (`immature`, then `orphaned` after `invalidateblock`), and a restart keeps the list;
//! - `verifyblockpayout` passes on it and names the output of a sibling block whose
//!   coinbase was altered (submitted here, with a real scrypt proof of work).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::{Amount, Block};
use p2pool::cli::{self, ApiClient};
use p2pool::node::{Node, NodeConfig, NodeEvent, NodeOptions};
use serde_json::{json, Value};
use share_chain::pow::scrypt_1024_1_1;
use share_chain::target::Target;
use share_chain::ShareHash;

mod common;

use common::pool::{
    api_call as call, api_result as result, regtest, start_pool_with, wait_quiet, Pool,
};

fn api_options() -> NodeOptions {
    NodeOptions {
        api: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeOptions::default()
    }
}

/// The next accepted block that is also a share on the chain.
async fn next_share_block(node: &Node, limit: Duration) -> ShareHash {
    let mut events = node.subscribe();
    let start = Instant::now();
    // Blocks are submitted on their own tasks: the block and share events of one solution
    // come in either order.
    let mut blocks = std::collections::HashSet::new();
    let mut shares = std::collections::HashSet::new();
    loop {
        let left = limit.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(NodeEvent::BlockSubmitted {
                hash,
                accepted: true,
                ..
            })) => {
                if shares.contains(&hash) {
                    return hash;
                }
                blocks.insert(hash);
            }
            Ok(Ok(NodeEvent::ShareAccepted { hash, .. })) => {
                if blocks.contains(&hash) {
                    return hash;
                }
                shares.insert(hash);
            }
            Ok(_) => {}
            Err(_) => panic!("no share block in {limit:?}"),
        }
    }
}

/// The coinbase's paying outputs as litecoind holds them: `(address, amount)`.
async fn litecoind_payouts(pool: &Pool, block: &str) -> Vec<(String, u64)> {
    let raw: Value = pool
        .daemons
        .client()
        .call("getblock", vec![json!(block), json!(2)])
        .await
        .unwrap();
    raw["tx"][0]["vout"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| {
            let amount = (o["value"].as_f64().unwrap() * 1e8).round() as u64;
            let address = o["scriptPubKey"]["addresses"][0].as_str()?.to_owned();
            (amount > 0).then_some((address, amount))
        })
        .collect()
}

fn as_pairs(list: &Value) -> Vec<(String, u64)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["address"].as_str().unwrap().to_owned(),
                p["amount"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Waits until `getblocks` shows `hash` with `status`.
async fn wait_status(node: &Node, hash: &str, status: &str) -> Value {
    let start = Instant::now();
    loop {
        let blocks = result(node, "getblocks", json!([100])).await;
        if let Some(b) = blocks
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["hash"] == hash)
        {
            if b["status"] == status {
                return b.clone();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{hash} not {status}: {blocks}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A sibling of `hash` whose coinbase's first output pays one litoshi less, with a valid
/// proof of work: litecoind stores it (off its best chain); returns its hash.
async fn submit_altered_sibling(pool: &Pool, hash: &str) -> String {
    let client = pool.daemons.client();
    let raw: String = client
        .call("getblock", vec![json!(hash), json!(0)])
        .await
        .unwrap();
    let mut block: Block = deserialize(&hex::decode(raw).unwrap()).expect("a pre-MWEB block");
    let out = &mut block.txdata[0].output[0];
    out.value = Amount::from_sat(out.value.to_sat() - 1);
    block.header.merkle_root = block.compute_merkle_root().unwrap();
    let target = Target::from_compact(block.header.bits.to_consensus()).unwrap();
    loop {
        block.header.nonce = block.header.nonce.wrapping_add(1);
        let header: [u8; 80] = serialize(&block.header).try_into().unwrap();
        if target.is_met_by(&scrypt_1024_1_1(&header)) {
            break;
        }
    }
    let answer: Value = client
        .call("submitblock", vec![json!(hex::encode(serialize(&block)))])
        .await
        .unwrap();
    let altered = block.block_hash().to_string();
    // Stored whether or not it is the best chain ("inconclusive": a side branch).
    let header: Value = client
        .call("getblockheader", vec![json!(altered)])
        .await
        .unwrap_or_else(|e| panic!("submitblock said {answer}; the block is unknown: {e}"));
    assert_eq!(header["hash"], altered.as_str());
    altered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_blocks_are_listed_verified_and_followed() {
    let pool = start_pool_with(api_options()).await;
    let a = pool.daemons.new_address("bech32").await.unwrap();
    let b = pool.daemons.new_address("legacy").await.unwrap();

    // Both miners get work into the window.
    let miners = pool.start_miners(&[&a, &b]);
    let start = Instant::now();
    loop {
        let pay = result(&pool.node, "getpayoutinfo", json!([])).await;
        if pay["payees"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "{pay}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    miners.store(true, Ordering::Relaxed);
    // Quiet: no new share for a second.
    wait_quiet(&pool.node, Duration::from_secs(1)).await;
    let tip = pool.node.chain.summary().tip;

    // The payouts in force now, for a block found by `a`...
    let pay = result(&pool.node, "getpayoutinfo", json!([a])).await;
    let promised = as_pairs(&pay["payouts"]);
    assert_eq!(
        promised.iter().map(|(_, v)| v).sum::<u64>(),
        pay["coinbase_value"].as_u64().unwrap(),
        "{pay}"
    );
    assert_eq!(pay["finder"], a.as_str());
    assert!(promised.iter().any(|(addr, _)| *addr == b), "{pay}");
    assert_eq!(pay["rules"]["max_payout_outputs"], 200, "{pay}");

    // ...are what the next block `a` finds pays.
    let miners = pool.start_miners(&[&a]);
    let found = next_share_block(&pool.node, Duration::from_secs(120)).await;
    miners.store(true, Ordering::Relaxed);
    let parent = pool
        .node
        .chain
        .call(move |c| c.index().get(&found).map(|e| e.share.info.prev_share))
        .await
        .unwrap();
    assert_eq!(
        parent, tip,
        "the block was found on the tip the payouts were read at"
    );
    let hash = found.to_string();
    assert_eq!(litecoind_payouts(&pool, &hash).await, promised);

    // Listed, with the same payouts, followed on litecoind.
    let listed = wait_status(&pool.node, &hash, "immature").await;
    assert_eq!(as_pairs(&listed["payouts"]), promised);
    assert_eq!(listed["finder"], a.as_str());
    let header: Value = pool
        .daemons
        .client()
        .call("getblockheader", vec![json!(hash)])
        .await
        .unwrap();
    assert_eq!(listed["height"], header["height"], "{listed}");
    assert!(listed["confirmations"].as_u64().unwrap() >= 1, "{listed}");

    // "Why was I not paid": `a` has shares in the window and the block paid it what was
    // promised; an address that never mined has none, and says so.
    let paid_a = promised.iter().find(|(addr, _)| *addr == a).unwrap().1;
    let explained = result(&pool.node, "explainpayout", json!([a])).await;
    assert!(
        explained["shares"]["in_window"].as_u64().unwrap() > 0,
        "{explained}"
    );
    assert!(
        !explained["shares"]["listed"].as_array().unwrap().is_empty(),
        "{explained}"
    );
    let last = explained["last_blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["hash"] == hash.as_str())
        .unwrap_or_else(|| panic!("{explained}"));
    assert_eq!(last["paid"].as_u64().unwrap(), paid_a, "{explained}");
    assert!(
        explained["expected_now"].as_u64().unwrap() > 0,
        "{explained}"
    );
    let nobody = pool.daemons.new_address("bech32").await.unwrap();
    let explained = result(&pool.node, "explainpayout", json!([nobody])).await;
    assert_eq!(explained["shares"]["in_window"], 0, "{explained}");
    assert_eq!(explained["expected_now"], 0, "{explained}");
    let diagnosis = explained["diagnosis"].to_string();
    assert!(
        diagnosis.contains("no shares in the share chain"),
        "{explained}"
    );
    let bad = call(&pool.node, "explainpayout", json!(["not-an-address"])).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");

    // The command-line clients print the same, as tables.
    let client = ApiClient::new(pool.node.api_addr().unwrap());
    let printed = cli::blocks(&client, 20).await.unwrap();
    let row = printed
        .lines()
        .find(|l| l.contains(&hash))
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(row.contains("immature"), "{printed}");
    assert!(row.contains(&a), "{printed}");
    let printed = cli::payouts(&client, Some(a.clone())).await.unwrap();
    assert!(printed.lines().any(|l| l.starts_with(&a)), "{printed}");
    assert!(!printed.contains(&b), "{printed}");
    let printed = cli::status(&client).await.unwrap();
    assert!(printed.contains("share chain"), "{printed}");
    let printed = cli::miners(&client).await.unwrap();
    assert!(printed.starts_with("worker"), "{printed}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = closed.local_addr().unwrap();
    drop(closed);
    let err = cli::status(&ApiClient::new(nowhere)).await.unwrap_err();
    assert!(err.to_string().contains(&nowhere.to_string()), "{err}");

    // The coinbase is what the share chain prescribes...
    let verified = result(&pool.node, "verifyblockpayout", json!([hash])).await;
    assert_eq!(verified["match"], true, "{verified}");
    assert_eq!(verified["differences"], json!([]));
    // ...and an altered copy is not, output 0 named.
    let altered = submit_altered_sibling(&pool, &hash).await;
    let verified = result(&pool.node, "verifyblockpayout", json!([altered])).await;
    assert_eq!(verified["match"], false, "{verified}");
    let diffs = verified["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "{verified}");
    assert_eq!(diffs[0]["index"], 0);
    assert_eq!(
        diffs[0]["expected"]["amount"].as_u64().unwrap(),
        diffs[0]["actual"]["amount"].as_u64().unwrap() + 1
    );
    assert_eq!(verified["share"], hash.as_str());
    // Asking again about the same block is not a new mismatch.
    let again = result(&pool.node, "verifyblockpayout", json!([altered])).await;
    assert_eq!(again["match"], false, "{again}");
    let unknown = call(&pool.node, "verifyblockpayout", json!(["11".repeat(32)])).await;
    assert_eq!(unknown["error"]["code"], -32001, "{unknown}");
    let url = format!("http://{}/metrics", pool.node.api_addr().unwrap());
    let metrics = reqwest::get(url).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("p2pool_payout_mismatches_total 1"),
        "{metrics}"
    );

    // Orphaned by a reorg.
    let _: Value = pool
        .daemons
        .client()
        .call("invalidateblock", vec![json!(hash)])
        .await
        .unwrap();
    wait_status(&pool.node, &hash, "orphaned").await;
    let start = Instant::now();
    loop {
        let alerts = result(&pool.node, "getalerts", json!([100])).await;
        let raised = alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "block_orphaned" && a["subject"] == hash.as_str());
        if raised {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{alerts}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A restart keeps the list.
    let Pool {
        daemons,
        node,
        datadir,
    } = pool;
    drop(node);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let node = Node::start_with(
        NodeConfig {
            preset: regtest(),
            datadir: datadir.path().to_path_buf(),
            daemon: daemons.a.rpc_config(),
            stratum: "127.0.0.1:0".parse().unwrap(),
            fee: None,
            p2p_listen: Vec::new(),
            peers: Vec::new(),
        },
        api_options(),
    )
    .await
    .expect("the node restarts");
    let kept = wait_status(&node, &hash, "orphaned").await;
    assert_eq!(as_pairs(&kept["payouts"]), promised);
}
