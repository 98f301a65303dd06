//! Merged mining end to end (docs/PROTOCOL.md §15): a node mining on a real litecoind
//! regtest pair merge-mines a real dogecoind regtest pair, with four CPU miners: a P2WPKH
//! and a P2PKH address (paid on Dogecoin at the P2PKH of the same key), a P2WSH address
//! that names a Dogecoin address (`ADDRESS,AUX_ADDRESS`), and a P2WSH address that names
//! none (paid nothing on Dogecoin: its part goes to the others). Every Dogecoin block the
//! pool finds must be taken by dogecoind, and its coinbase must pay the window exactly: what
//! the node submitted, and for blocks that are also shares, what any peer rebuilds from the
//! share chain.
//!
//! Needs dogecoind (`$DOGECOIND` or PATH; see tests/common/dogecoind.rs): without it the
//! test prints SKIPPED and passes.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dogecoind::{block_count, coinbase_outputs};
use common::pool::start_pool_with;
use p2pool::miner::MinerConfig;
use p2pool::miner::{mine, MinerStats};
use p2pool::node::{NodeEvent, NodeOptions};
use serde_json::json;
use share_chain::address::aux_script_to_address;
use share_chain::aux_work::aux_block_parts;
use share_chain::script::derived_aux_script;

/// The payouts of the aux block `hash` as `node` rebuilds them from its share chain, as any
/// peer does (docs/PROTOCOL.md §15), if a share it holds mined that block: `(script hex,
/// amount)`.
async fn rebuilt_by(node: &p2pool::node::Node, hash: [u8; 32]) -> Option<Vec<(String, u64)>> {
    node.chain
        .call(move |c| {
            let index = c.index_mut();
            let shares: Vec<_> = index.entries().map(|e| e.hash).collect();
            shares.into_iter().find_map(|h| {
                let entry = index.get(&h)?.clone();
                let share = &entry.share;
                share.merged_mining.blocks.iter().find_map(|block| {
                    let payouts = index
                        .aux_window_payouts(
                            &share.info,
                            &entry.credits,
                            share.header.bits,
                            block.chain_id,
                            block.coinbase_value,
                        )
                        .ok()?;
                    let (_, header) = aux_block_parts(block, &payouts);
                    (header.hash().0 == hash).then_some(payouts)
                })
            })
        })
        .await
        .expect("chain")
        .map(|payouts| {
            payouts
                .iter()
                .map(|p| (hex::encode(&p.script), p.amount))
                .collect()
        })
}

/// An aux block event's payouts `(Dogecoin address, amount)` as `(script hex, amount)`.
fn as_scripts(payouts: Vec<(String, u64)>) -> Vec<(String, u64)> {
    let preset = share_chain::Preset::builtin("litecoin-regtest").unwrap();
    payouts
        .into_iter()
        .map(|(address, amount)| {
            let script =
                share_chain::address::aux_address_to_script(&address, &preset.aux_chains[0])
                    .unwrap_or_else(|e| panic!("{address} is not a Dogecoin address: {e}"));
            (hex::encode(script), amount)
        })
        .collect()
}

/// An accepted aux block: its hash, height and coinbase `(script hex, amount)`.
type Accepted = ([u8; 32], u32, Vec<(String, u64)>);

/// Accepted Dogecoin blocks to collect.
const BLOCKS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dogecoin_blocks_pay_the_window() {
    let Some(doge) = common::dogecoind::start().await else {
        return;
    };
    let doge_start = block_count(&doge).await;
    let pool = start_pool_with(NodeOptions {
        aux_daemons: vec![doge.a.rpc_config()],
        api: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeOptions::default()
    })
    .await;
    let mut events = pool.node.subscribe();
    let addresses = [
        pool.daemons.new_address("bech32").await.expect("address"),
        pool.daemons.new_address("legacy").await.expect("address"),
    ];
    let preset = share_chain::Preset::builtin("litecoin-regtest").unwrap();
    let mut aux_scripts: HashSet<String> = addresses
        .iter()
        .map(|a| {
            let script = share_chain::address::address_to_script(a, &preset.coin).unwrap();
            hex::encode(derived_aux_script(&script).expect("P2WPKH and P2PKH map"))
        })
        .collect();
    // Two P2WSH addresses (1-of-1 multisig of the generator point's key): one names a
    // Dogecoin address, the other none.
    let client = pool.daemons.client();
    let p2wsh = |key: &'static str| async move {
        let made: serde_json::Value = client
            .call(
                "createmultisig",
                vec![json!(1), json!([key]), json!("bech32")],
            )
            .await
            .expect("createmultisig");
        made["address"].as_str().expect("address").to_owned()
    };
    let named = p2wsh("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").await;
    let unnamed = p2wsh("02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5").await;
    let doge_script = [&[0x76, 0xa9, 0x14][..], &[0x42; 20], &[0x88, 0xac]].concat();
    let doge_address = aux_script_to_address(&doge_script, &preset.aux_chains[0]).unwrap();
    aux_scripts.insert(hex::encode(&doge_script));
    let usernames = [
        format!("{}.a", addresses[0]),
        format!("{}.b", addresses[1]),
        format!("{named},{doge_address}.named"),
        format!("{unnamed}.unnamed"),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    for username in usernames {
        let config = MinerConfig {
            username,
            ..pool.miner(&addresses[0])
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = mine(config, Arc::new(MinerStats::default()), stop).await;
        });
    }

    let mut accepted: Vec<Accepted> = Vec::new();
    let mut lost_races = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    // At least BLOCKS blocks, and until one pays the miner that named its Dogecoin address
    // (on a busy machine its first share may come after the others' first blocks).
    let named_script = hex::encode(&doge_script);
    let pays_named = |accepted: &[Accepted]| {
        accepted
            .iter()
            .any(|(_, _, payouts)| payouts.iter().any(|(s, _)| *s == named_script))
    };
    while accepted.len() < BLOCKS || !pays_named(&accepted) {
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
                // Two solutions of one job are one Dogecoin block (its header does not
                // depend on the parent's): the second is "already known".
                if accepted.iter().all(|(h, _, _)| *h != hash) {
                    accepted.push((hash, height, as_scripts(payouts)));
                }
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
    assert!(block_count(&doge).await >= doge_start + BLOCKS as u64);
    let mut from_shares = 0;
    let mut named_paid = 0;
    for (hash, height, payouts) in &accepted {
        let mut display = *hash;
        display.reverse();
        let display = hex::encode(display);
        let coinbase = coinbase_outputs(&doge, &display).await;
        // Exactly what the node built, all of the value, to the miners' keys.
        assert_eq!(&coinbase, payouts, "block {height} {display}");
        assert!(coinbase
            .iter()
            .all(|(script, _)| aux_scripts.contains(script)));
        assert_eq!(
            coinbase.iter().map(|(_, v)| v).sum::<u64>(),
            500_000 * 100_000_000,
            "the whole regtest subsidy"
        );
        named_paid += coinbase
            .iter()
            .filter(|(s, _)| *s == hex::encode(&doge_script))
            .count();
        // The block from a share: what any peer rebuilds from the share chain.
        if let Some(rebuilt) = rebuilt_by(&pool.node, *hash).await {
            assert_eq!(
                coinbase, rebuilt,
                "block {height}: the share chain's payouts"
            );
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
    assert!(
        named_paid > 0,
        "the miner's named Dogecoin address was never paid"
    );

    // The found-blocks list holds every accepted Dogecoin block, followed on dogecoind
    // (regtest maturity: 60), and `verifyblockpayout` finds each coinbase as prescribed:
    // from the share chain for blocks from shares, else from the node's own record.
    let displays: Vec<String> = accepted
        .iter()
        .map(|(hash, _, _)| p2pool::blocks::display_hex(*hash))
        .collect();
    let listed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let list = common::pool::api_result(&pool.node, "getblocks", json!([500])).await;
            let settled = displays.iter().all(|h| {
                list.as_array().unwrap().iter().any(|b| {
                    b["hash"] == h.as_str()
                        && b["chain"] == "dogecoin-regtest"
                        && b["status"] == "immature"
                })
            });
            if settled {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("every accepted Dogecoin block listed as immature within 30 s");
    let mut by_share = 0;
    for (display, (_, height, coinbase)) in displays.iter().zip(&accepted) {
        let block = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["hash"] == display.as_str())
            .unwrap();
        assert_eq!(block["height"], *height, "{block}");
        let listed_payouts: Vec<(String, u64)> = block["payouts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["address"].as_str().unwrap().to_owned(),
                    p["amount"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(&as_scripts(listed_payouts), coinbase, "{block}");
        let verdict =
            common::pool::api_result(&pool.node, "verifyblockpayout", json!([display])).await;
        assert_eq!(verdict["match"], true, "{verdict}");
        assert_eq!(verdict["chain"], "dogecoin-regtest");
        if verdict["basis"] == "share chain" {
            by_share += 1;
        }
    }
    assert!(by_share > 0, "no block verified from the share chain");
    // "Why was I not paid" on Dogecoin: the miner who named a Dogecoin address is paid
    // there, and the last Dogecoin blocks show it; the one who named none is told why it
    // gets no Dogecoin.
    let explained = common::pool::api_result(&pool.node, "explainpayout", json!([named])).await;
    assert_eq!(
        explained["aux_addresses"][0],
        json!({"chain": "dogecoin-regtest", "addresses": [doge_address]}),
        "{explained}"
    );
    let paid_named: u64 = explained["last_blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["chain"] == "dogecoin-regtest")
        .map(|b| b["paid"].as_u64().unwrap())
        .sum();
    assert!(paid_named > 0, "{explained}");
    let explained = common::pool::api_result(&pool.node, "explainpayout", json!([unnamed])).await;
    assert_eq!(
        explained["aux_addresses"][0]["addresses"],
        json!([]),
        "{explained}"
    );
    assert!(
        explained["diagnosis"]
            .to_string()
            .contains("no dogecoin-regtest address"),
        "{explained}"
    );

    // A Dogecoin block mined without the share chain (no AuxPoW) is not one of ours.
    let plain: serde_json::Value = doge
        .client()
        .call(
            "generatetoaddress",
            vec![json!(1), json!(common::dogecoind::BURN_ADDRESS)],
        )
        .await
        .expect("generatetoaddress");
    let answer = common::pool::api_call(&pool.node, "verifyblockpayout", json!([plain[0]])).await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no AuxPoW"),
        "{answer}"
    );
    // A reorg on dogecoind: the newest accepted block turns orphaned in the list.
    let newest = accepted
        .iter()
        .max_by_key(|(_, height, _)| *height)
        .unwrap();
    let newest = p2pool::blocks::display_hex(newest.0);
    let _: serde_json::Value = doge
        .client()
        .call("invalidateblock", vec![json!(newest)])
        .await
        .expect("invalidateblock");
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let list = common::pool::api_result(&pool.node, "getblocks", json!([500])).await;
            let status = list
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["hash"] == newest.as_str())
                .map(|b| b["status"].clone());
            if status == Some(json!("orphaned")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the invalidated Dogecoin block turns orphaned within 30 s");
    println!(
        "{} Dogecoin blocks listed and verified ({by_share} from the share chain)",
        displays.len()
    );

    // What the API shows miners: the Dogecoin a block found now pays, by Dogecoin address.
    let info = common::pool::api_result(&pool.node, "getpayoutinfo", json!([])).await;
    let aux = &info["aux_payouts"][0];
    assert_eq!(aux["chain"], "dogecoin-regtest", "{info}");
    let payouts = aux["payouts"].as_array().expect("payouts");
    let sum: u64 = payouts.iter().map(|p| p["amount"].as_u64().unwrap()).sum();
    assert_eq!(sum, aux["coinbase_value"].as_u64().unwrap());
    for p in payouts {
        let address = p["address"].as_str().unwrap();
        let script = share_chain::address::aux_address_to_script(address, &preset.aux_chains[0])
            .expect("a Dogecoin address");
        assert!(aux_scripts.contains(&hex::encode(script)), "{address}");
    }

    // And the dashboard, in a real Chromium: the Dogecoin a block found now pays, in full,
    // to those addresses (the miners have stopped, so the window holds still).
    let origin = format!("http://{}/", pool.node.api_addr().expect("api"));
    let run = common::chromium::run_chromium(&origin, None).await;
    run.assert_clean(&origin);
    assert!(
        run.dom.contains("data-block-chain=\"dogecoin-regtest\""),
        "the found Dogecoin blocks are on the page"
    );
    let mut shown = 0u64;
    let mut rest = run.dom.as_str();
    while let Some(at) = rest.find("data-chain=\"dogecoin-regtest\"") {
        let row = &rest[at..];
        let address = common::chromium::value_of(row, "data-address").expect("address");
        let amount: u64 = common::chromium::value_of(row, "data-amount")
            .expect("amount")
            .parse()
            .unwrap();
        let script = share_chain::address::aux_address_to_script(address, &preset.aux_chains[0])
            .expect("a Dogecoin address on the page");
        assert!(aux_scripts.contains(&hex::encode(script)), "{address}");
        shown += amount;
        rest = &row[1..];
    }
    assert_eq!(
        shown,
        500_000 * 100_000_000,
        "the page shows the whole aux coinbase"
    );
    let shot = common::chromium::artifacts_dir().join("dashboard-merged-mining.png");
    common::chromium::run_chromium(&origin, Some((&shot, 1280, 2200))).await;
    println!("screenshot: {}", shot.display());
}

/// Two nodes on one share chain (real libp2p on 127.0.0.1), each with its own miner, both
/// merge-mining the same dogecoind: a Dogecoin block found through either node pays the
/// other node's miner too, and the node that did not build it, rebuilding it from the share
/// chain as any peer does, finds the same coinbase dogecoind holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dogecoin_block_from_either_node_pays_both_nodes_miners() {
    let Some(doge) = common::dogecoind::start().await else {
        return;
    };
    common::pool::init_logs();
    let daemons = p2pool::regtest::RegtestPair::start()
        .await
        .expect("litecoind pair");
    let start = |peers: Vec<p2pool_network::Multiaddr>| {
        let (daemons, doge) = (&daemons, &doge);
        async move {
            let datadir = tempfile::tempdir().unwrap();
            let node = p2pool::node::Node::start_with(
                p2pool::node::NodeConfig {
                    preset: common::pool::regtest(),
                    datadir: datadir.path().to_path_buf(),
                    daemon: daemons.a.rpc_config(),
                    stratum: "127.0.0.1:0".parse().unwrap(),
                    fee: None,
                    p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                    peers,
                },
                NodeOptions {
                    aux_daemons: vec![doge.a.rpc_config()],
                    daemon_p2p: p2pool::node::DaemonP2p::At(
                        ([127, 0, 0, 1], daemons.a.p2p_port).into(),
                    ),
                    ..NodeOptions::default()
                },
            )
            .await
            .expect("node starts");
            (node, datadir)
        }
    };
    let (a, _a_dir) = start(Vec::new()).await;
    let a_addrs = a.p2p.as_ref().expect("p2p").listen_addrs();
    let (b, _b_dir) = start(a_addrs).await;
    let preset = common::pool::regtest();
    let mut doge_of = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    for node in [&a, &b] {
        let address = daemons.new_address("bech32").await.expect("address");
        let script = share_chain::address::address_to_script(&address, &preset.coin).unwrap();
        doge_of.push(hex::encode(derived_aux_script(&script).unwrap()));
        let config = MinerConfig {
            server: node.stratum_addr(),
            username: format!("{address}.rig"),
            ..common::pool::regtest_miner()
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = mine(config, Arc::new(MinerStats::default()), stop).await;
        });
    }

    // Accepted Dogecoin blocks, by the node that submitted them.
    let mut events = [a.subscribe(), b.subscribe()];
    let mut found: [Vec<common::pool::AcceptedAux>; 2] = [Vec::new(), Vec::new()];
    let deadline = Instant::now() + Duration::from_secs(240);
    let pays_both = |blocks: &[common::pool::AcceptedAux]| {
        blocks.iter().any(|(_, payouts)| {
            let payouts = as_scripts(payouts.clone());
            doge_of
                .iter()
                .all(|s| payouts.iter().any(|(script, _)| script == s))
        })
    };
    while !(pays_both(&found[0]) && pays_both(&found[1])) {
        assert!(
            Instant::now() < deadline,
            "in 240 s: {} blocks via node A, {} via node B, not each paying both miners",
            found[0].len(),
            found[1].len()
        );
        common::pool::drain_accepted_aux(&mut events, &mut found);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);

    // Each node checks the other's blocks from its own copy of the share chain.
    let mut checked = 0;
    for (builder, checker) in [(0usize, &b), (1usize, &a)] {
        for (hash, payouts) in &found[builder] {
            let mut display = *hash;
            display.reverse();
            let coinbase = coinbase_outputs(&doge, &hex::encode(display)).await;
            assert_eq!(coinbase, as_scripts(payouts.clone()));
            if let Some(rebuilt) = rebuilt_by(checker, *hash).await {
                assert_eq!(coinbase, rebuilt, "the peer's rebuild");
                checked += 1;
            }
        }
    }
    println!(
        "{} Dogecoin blocks via node A, {} via node B; {checked} rebuilt by the other node",
        found[0].len(),
        found[1].len()
    );
    assert!(checked > 0, "no block was rebuilt by the other node");
}

/// Waits for `n` accepted blocks of the parent chain (`aux: false`) or of an aux chain
/// (`aux: true`) from `events`, within `limit`.
async fn accepted_blocks(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    aux: bool,
    n: usize,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    let mut seen = 0;
    while seen < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{seen} of {n} accepted {} blocks in {limit:?}",
                    if aux { "aux" } else { "parent" }
                )
            });
        match event {
            Ok(NodeEvent::BlockSubmitted { accepted: true, .. }) if !aux => seen += 1,
            Ok(NodeEvent::AuxBlockSubmitted { accepted: true, .. }) if aux => seen += 1,
            _ => {}
        }
    }
}

/// A dogecoind that is down when the node starts, comes up, and stops again: Litecoin
/// mining never waits for it, Dogecoin blocks resume as soon as it serves templates, and
/// `getinfo` shows its state throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_aux_daemon_down_or_restarting_costs_litecoin_nothing() {
    let Some(mut doge) = common::dogecoind::start().await else {
        return;
    };
    doge.a
        .stop(Duration::from_secs(30))
        .await
        .expect("dogecoind stops");
    let pool = start_pool_with(NodeOptions {
        aux_daemons: vec![doge.a.rpc_config()],
        api: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeOptions::default()
    })
    .await;
    let aux_state = |info: &serde_json::Value| {
        (
            info["aux"][0]["ready"].as_bool().expect("aux state"),
            info["aux"][0]["state"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let info = common::pool::api_result(&pool.node, "getinfo", json!([])).await;
    let (ready, state) = aux_state(&info);
    assert!(!ready, "{info}");
    assert!(
        state.contains("unreachable") || state == "connecting",
        "{state}"
    );

    let mut events = pool.node.subscribe();
    let address = pool.daemons.new_address("bech32").await.expect("address");
    let stop = Arc::new(AtomicBool::new(false));
    let (config, flag) = (pool.miner(&address), stop.clone());
    tokio::spawn(async move {
        let _ = mine(config, Arc::new(MinerStats::default()), flag).await;
    });
    // Litecoin goes on without dogecoind.
    accepted_blocks(&mut events, false, 3, Duration::from_secs(120)).await;

    // dogecoind comes up: Dogecoin blocks follow, and getinfo says it is ready.
    doge.a.restart().await.expect("dogecoind restarts");
    accepted_blocks(&mut events, true, 2, Duration::from_secs(120)).await;
    let info = common::pool::api_result(&pool.node, "getinfo", json!([])).await;
    assert!(aux_state(&info).0, "{info}");

    // It stops mid-mining: Litecoin blocks still come, and getinfo says why Dogecoin does not.
    doge.a
        .stop(Duration::from_secs(30))
        .await
        .expect("dogecoind stops");
    accepted_blocks(&mut events, false, 3, Duration::from_secs(120)).await;
    let info = common::pool::api_result(&pool.node, "getinfo", json!([])).await;
    let (ready, state) = aux_state(&info);
    assert!(!ready && state.contains("unreachable"), "{info}");
    stop.store(true, Ordering::Relaxed);
}
