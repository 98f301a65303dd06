//! The dashboard in a real headless Chromium, against a node mining on a real regtest
//! litecoind with two CPU miners over real Stratum, once the share chain has found a block.
//!
//! The page is loaded as a person would (Chromium runs its script, which polls the API);
//! its DOM is then read back (`--dump-dom`) and must show the node's real data, compared
//! with the JSON-RPC answers: the found block's hash and status, each worker's hashrate,
//! every payout amount of `getpayoutinfo`, and for `?address=` the miner's expected payout
//! and diagnosis from `explainpayout`. The charts must have drawn. Chromium's console must
//! show no error, and its network log no request to anywhere but the node.
//! Screenshots (desktop and phone width) are saved under `target/artifacts/`.
//!
//! Chromium is `$CHROMIUM` or `/usr/bin/chromium` (Debian's `chromium`, installed by
//! `scripts/deps.sh`); a missing browser fails the test with that instruction.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use p2pool::node::{Node, NodeEvent, NodeOptions};
use serde_json::json;

mod common;

use common::chromium::{artifacts_dir, chromium, escaped, run_chromium};
use common::pool::{api_result as result, start_pool_with, wait_quiet, Pool};

/// The share-chain blocks litecoind accepted among the events received so far.
fn share_blocks(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    blocks: &mut BTreeSet<String>,
    shares: &mut BTreeSet<String>,
) -> BTreeSet<String> {
    while let Ok(event) = events.try_recv() {
        match event {
            NodeEvent::BlockSubmitted {
                hash,
                accepted: true,
                ..
            } => {
                blocks.insert(hash.to_string());
            }
            NodeEvent::ShareAccepted { hash, .. } => {
                shares.insert(hash.to_string());
            }
            _ => {}
        }
    }
    blocks.intersection(shares).cloned().collect()
}

/// Mines until the share chain has found a block litecoind accepted, both addresses are
/// in the window and every worker has a measured hashrate; then stops the miners and
/// returns the newest such block (litecoind's tip: only this node mines on it).
async fn mine_a_block(pool: &Pool, a: &str, b: &str) -> String {
    let mut events = pool.node.subscribe();
    let miners = pool.start_miners(&[a, b]);
    let start = Instant::now();
    let limit = Duration::from_secs(240);
    let (mut blocks, mut shares) = (BTreeSet::new(), BTreeSet::new());
    loop {
        let found = share_blocks(&mut events, &mut blocks, &mut shares);
        let pay = result(&pool.node, "getpayoutinfo", json!([])).await;
        let stats = result(&pool.node, "getminerstats", json!([])).await;
        let workers = stats["workers"].as_array().unwrap();
        let measured = workers.len() == 2
            && workers
                .iter()
                .all(|w| w["hashrate"]["10m"].as_f64().is_some_and(|r| r > 0.0));
        if !found.is_empty() && measured && pay["payees"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            start.elapsed() < limit,
            "no block, two payees and measured workers in {limit:?}: {pay} {stats}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    miners.store(true, Ordering::Relaxed);
    // Quiet: no new share for two seconds, so the payouts stay what they are.
    wait_quiet(&pool.node, Duration::from_secs(2)).await;
    let best: String = pool
        .daemons
        .client()
        .call("getbestblockhash", vec![])
        .await
        .unwrap();
    let found = share_blocks(&mut events, &mut blocks, &mut shares);
    assert!(
        found.contains(&best),
        "{best} is not a share block: {found:?}"
    );
    best
}

/// Waits until `getblocks` shows `hash` as `immature` (litecoind has it on its chain).
async fn wait_immature(node: &Node, hash: &str) {
    let start = Instant::now();
    loop {
        let blocks = result(node, "getblocks", json!([100])).await;
        let listed = blocks
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["hash"] == hash && b["status"] == "immature" && b["height"].is_u64());
        if listed {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{blocks}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every worker's 10-minute hashrate `getminerstats` gave while `during` ran (they move
/// with each 15-second sample), with `during`'s output.
async fn rates_while<T>(
    node: &Node,
    during: impl std::future::Future<Output = T>,
) -> (T, Vec<(String, f64)>) {
    let read = || async {
        let stats = result(node, "getminerstats", json!([])).await;
        stats["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["username"].as_str().unwrap().to_owned(),
                    w["hashrate"]["10m"].as_f64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let mut seen = read().await;
    tokio::pin!(during);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let out = loop {
        tokio::select! {
            out = &mut during => break out,
            _ = ticker.tick() => seen.extend(read().await),
        }
    };
    seen.extend(read().await);
    (out, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_nodes_real_data_in_chromium() {
    chromium();
    let pool = start_pool_with(NodeOptions {
        api: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeOptions::default()
    })
    .await;
    let a = pool.daemons.new_address("bech32").await.unwrap();
    let b = pool.daemons.new_address("legacy").await.unwrap();
    let block = mine_a_block(&pool, &a, &b).await;
    wait_immature(&pool.node, &block).await;
    let origin = format!("http://{}/", pool.node.api_addr().unwrap());

    // The whole page.
    let pay = result(&pool.node, "getpayoutinfo", json!([])).await;
    let (page, rates) = rates_while(&pool.node, run_chromium(&origin, None)).await;
    page.assert_clean(&origin);
    let refreshes: u32 = page.attr("<body", "data-refreshes").parse().unwrap();
    assert!(refreshes >= 2, "{refreshes}");
    assert!(
        !page.tag("<body").contains("data-error"),
        "{}",
        page.tag("<body")
    );

    // The found block, with its hash shown and its status from litecoind.
    let row = format!("data-hash=\"{block}\"");
    assert_eq!(page.attr(&row, "data-status"), "immature");
    assert!(page.dom.contains(&format!(">{block}</td>")), "{}", page.dom);

    // Each worker's hashrate, as getminerstats gave it while the page was read.
    for worker in [format!("{a}.test"), format!("{b}.test")] {
        let row = format!("data-worker=\"{worker}\"");
        assert_eq!(page.attr(&row, "data-state"), "online");
        let shown: f64 = page.attr_after(&row, "data-hashrate").parse().unwrap();
        assert!(shown > 0.0, "{worker}: {shown}");
        assert!(
            // The same number, up to the last bit: the page and the test read it through
            // different JSON parsers and calls, which have differed by one ulp.
            rates
                .iter()
                .any(|(w, r)| *w == worker && (r - shown).abs() <= r.abs() * 1e-12),
            "{worker} shows {shown} H/s; the RPC gave {rates:?}"
        );
    }

    // Every payout of a block found now, to the litoshi.
    let payouts = pay["payouts"].as_array().unwrap();
    assert!(payouts.len() >= 2, "{pay}");
    for p in payouts {
        let address = p["address"].as_str().unwrap();
        let amount = page.attr(&format!("data-address=\"{address}\""), "data-amount");
        assert_eq!(
            amount,
            p["amount"].as_u64().unwrap().to_string(),
            "{address}"
        );
    }
    let shown_payouts = page.dom.matches("data-address=\"").count();
    assert_eq!(shown_payouts, payouts.len(), "{}", page.dom);

    // The charts drew: hashrate points, a bar per payout, uPlot's canvases.
    let points: usize = page
        .attr("id=\"chart-hashrate\"", "data-points")
        .parse()
        .unwrap();
    assert!(points >= 1, "{}", page.tag("id=\"chart-hashrate\""));
    assert_eq!(
        page.attr("id=\"chart-payouts\"", "data-bars"),
        payouts.len().to_string()
    );
    assert!(page.dom.matches("<canvas").count() >= 2, "{}", page.dom);

    // A miner's own view, from the URL.
    let why = result(&pool.node, "explainpayout", json!([a])).await;
    let mine = run_chromium(&format!("{origin}?address={a}"), None).await;
    mine.assert_clean(&origin);
    let expected = why["expected_now"].as_u64().unwrap();
    assert!(expected > 0, "{why}");
    assert_eq!(
        mine.attr("id=\"miner-expected\"", "data-amount"),
        expected.to_string()
    );
    for line in why["diagnosis"].as_array().unwrap() {
        let line = escaped(line.as_str().unwrap());
        assert!(
            mine.dom.contains(&format!("<li>{line}</li>")),
            "{line} not in\n{}",
            mine.dom
        );
    }
    assert!(
        mine.dom.contains(&format!("data-worker=\"{a}.test\"")),
        "{}",
        mine.dom
    );
    let miner_points: usize = mine
        .attr("id=\"chart-miner\"", "data-points")
        .parse()
        .unwrap();
    assert!(miner_points >= 1);
    // An invalid address is explained, not a broken page.
    let bad = run_chromium(&format!("{origin}?address=nonsense"), None).await;
    bad.assert_clean(&origin);
    assert!(
        !bad.tag("id=\"miner-error\"").contains("hidden"),
        "{}",
        bad.dom
    );
    assert!(bad.dom.contains("invalid address"), "{}", bad.dom);

    // Screenshots for a person to look at: desktop and phone width, with the miner view.
    let dir = artifacts_dir();
    for (name, w, h) in [
        ("dashboard.png", 1280, 2000),
        ("dashboard-phone.png", 390, 1600),
    ] {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let shot = run_chromium(&format!("{origin}?address={a}"), Some((&path, w, h))).await;
        shot.assert_clean(&origin);
        let png = std::fs::read(&path).expect("the screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{}", path.display());
        println!("screenshot: {}", path.display());
    }
}
