//! The dashboard's peers table and sync state in a real headless Chromium, against two real
//! p2pool nodes peered over libp2p on 127.0.0.1 (one regtest litecoind pair behind both).
//!
//! Node A mines a few shares alone: its page shows the sync state `getinfo.sync` gives
//! (`alone (no peers)`), no peer and a peer count of 0. Node B then starts, dials A and
//! catches up on A's share chain. A's page must show B as its one peer with what A's
//! `getpeerinfo` answered while the page was read (peer id, which is B's own
//! `getinfo.p2p.peer_id`; the remote address, direction `in`, agent, ping time and score),
//! and the sync state of `getinfo.sync`. B's page must show A as an outbound peer at A's
//! listen address, its own sync state, and A's tip as its newest share. Chromium's console
//! must stay empty and the page must ask nothing of another host. A screenshot of A's page
//! is saved to `target/artifacts/dashboard-peers.png`.
//!
//! Chromium is `$CHROMIUM` or `/usr/bin/chromium` (Debian's `chromium`, installed by
//! `scripts/deps.sh`); a missing browser fails the test with that instruction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pool::miner::{mine, MinerStats};
use p2pool::node::{DaemonP2p, Node, NodeConfig, NodeOptions};
use p2pool::regtest::{Daemon, RegtestPair};
use p2pool_network::Multiaddr;
use serde_json::{json, Value};
use tempfile::TempDir;

mod common;

use common::chromium::{artifacts_dir, chromium, escaped, run_chromium, Run};
use common::pool::{api_result as result, init_logs, regtest, regtest_miner, wait_for};

/// A node on `daemon` with its API and the share-chain network on free loopback ports,
/// dialling `peers`; returns once Stratum serves work.
async fn start_node(daemon: &Daemon, peers: Vec<Multiaddr>) -> (Node, TempDir) {
    let datadir = tempfile::tempdir().unwrap();
    let node = Node::start_with(
        NodeConfig {
            preset: regtest(),
            datadir: datadir.path().to_path_buf(),
            daemon: daemon.rpc_config(),
            stratum: "127.0.0.1:0".parse().unwrap(),
            fee: None,
            p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            peers,
        },
        NodeOptions {
            api: Some("127.0.0.1:0".parse().unwrap()),
            daemon_p2p: DaemonP2p::At(([127, 0, 0, 1], daemon.p2p_port).into()),
            ..NodeOptions::default()
        },
    )
    .await
    .expect("node starts");
    wait_for("the node serves work", Duration::from_secs(30), || async {
        node.stratum.availability().is_serving()
    })
    .await;
    (node, datadir)
}

/// Every `getpeerinfo` answer of `node` while `during` ran (ping times and scores move),
/// with `during`'s output.
async fn peers_while<T>(
    node: &Node,
    during: impl std::future::Future<Output = T>,
) -> (T, Vec<Value>) {
    let mut seen = vec![result(node, "getpeerinfo", json!([])).await];
    tokio::pin!(during);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let out = loop {
        tokio::select! {
            out = &mut during => break out,
            _ = ticker.tick() => seen.push(result(node, "getpeerinfo", json!([])).await),
        }
    };
    seen.push(result(node, "getpeerinfo", json!([])).await);
    (out, seen)
}

/// `getinfo.sync`, read before and after `page` was loaded and unchanged meanwhile (so the
/// page can only have shown this one), as the page must show it.
fn assert_sync_shown(page: &Run, before: &Value, after: &Value) {
    let sync = &before["sync"];
    assert_eq!(
        sync, &after["sync"],
        "the sync state moved while the page was read"
    );
    let state = sync["state"].as_str().unwrap();
    let tag = page.tag("id=\"sync\"");
    assert_eq!(page.attr("id=\"sync\"", "data-state"), state, "{tag}");
    assert!(
        page.dom.contains(&format!("{tag}{}</p>", escaped(state))),
        "the sync line does not read {state:?}: {tag}"
    );
    let serving = sync["serving"].as_bool().unwrap();
    assert_eq!(
        page.attr("id=\"sync\"", "data-serving"),
        serving.to_string()
    );
    assert_eq!(
        page.attr("id=\"sync\"", "class"),
        if serving { "ok" } else { "bad" }
    );
    // The catch-up bar only while catching up, with its counts.
    let join = page.tag("id=\"join-row\"");
    assert_eq!(
        join.contains(" hidden"),
        sync["received"].is_null(),
        "{join}"
    );
    let count = |v: &Value| v.as_u64().map(|n| n.to_string()).unwrap_or_default();
    assert_eq!(
        page.attr("id=\"join-row\"", "data-received"),
        count(&sync["received"])
    );
    assert_eq!(
        page.attr("id=\"join-row\"", "data-needed"),
        count(&sync["needed"])
    );
    // The summary cards: peers and share chain, as getinfo gave them.
    let peers = before["p2p"]["peers"].as_u64().unwrap();
    assert_eq!(after["p2p"]["peers"], before["p2p"]["peers"]);
    assert_eq!(
        page.attr("id=\"peer-count\"", "data-peers"),
        peers.to_string()
    );
    let chain = &before["share_chain"];
    let held = format!("{} ({} held)", chain["height"], chain["shares"]);
    assert!(
        page.dom
            .contains(&format!("id=\"share-height\">{held}</p>")),
        "no share height {held:?} in\n{}",
        page.tag("id=\"share-height\"")
    );
    // This node's own identity in the peers section.
    let me = before["p2p"]["peer_id"].as_str().unwrap();
    assert!(
        page.dom.contains(&format!("peer id {me} · listening on ")),
        "no own peer id {me} on the page: {}",
        page.tag("id=\"p2p\"")
    );
}

/// The row of peer `id` on `page` is one of the `getpeerinfo` answers in `seen`, to the
/// last field; returns that answer's entry.
fn assert_peer_shown(page: &Run, id: &str, seen: &[Value]) -> Value {
    let row = format!("data-peer=\"{id}\"");
    let attr = |name| page.attr(&row, name).to_owned();
    let (addrs, direction, agent) = (
        attr("data-addrs"),
        attr("data-direction"),
        attr("data-agent"),
    );
    let (rtt, score) = (attr("data-rtt-ms"), attr("data-score"));
    let close = |shown: &str, v: &Value| match (shown.parse::<f64>(), v.as_f64()) {
        // Through two JSON parsers: the same number up to the last bit.
        (Ok(s), Some(r)) => (s - r).abs() <= r.abs() * 1e-12,
        _ => false,
    };
    let entry = seen
        .iter()
        .flat_map(|answer| answer.as_array().unwrap())
        .find(|p| {
            let want_addrs: Vec<&str> = p["addrs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            p["peer_id"] == id
                && addrs == want_addrs.join(" ")
                && direction == if p["inbound"] == true { "in" } else { "out" }
                && agent == p["agent"].as_str().unwrap_or("")
                && close(&rtt, &p["rtt_ms"])
                && close(&score, &p["score"])
        })
        .unwrap_or_else(|| {
            panic!(
                "peer {id} shows addrs {addrs:?}, {direction}, agent {agent:?}, rtt {rtt}, \
                 score {score}; getpeerinfo gave {seen:#?}"
            )
        })
        .clone();
    // What a person reads: the id, every address, the direction and the agent.
    let text = |s: &str| format!(">{}</td>", escaped(s));
    let shown = entry["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(", ");
    let at = page.dom.find(&row).unwrap();
    let cells = &page.dom[at..at + page.dom[at..].find("</tr>").unwrap()];
    for want in [id, &shown, &direction, &agent] {
        assert!(
            cells.contains(&text(want)),
            "{want:?} not in the row {cells}"
        );
    }
    entry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_real_peer_and_the_sync_state_in_chromium() {
    chromium();
    init_logs();
    let started = Instant::now();
    let daemons = RegtestPair::start().await.expect("litecoind pair");
    let (a, _a_dir) = start_node(&daemons.a, Vec::new()).await;
    let origin_a = format!("http://{}/", a.api_addr().unwrap());

    // A few shares on A, mined alone.
    let address = daemons.new_address("bech32").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let miner = tokio::spawn({
        let (config, stop) = (
            p2pool::miner::MinerConfig {
                server: a.stratum_addr(),
                username: format!("{address}.test"),
                ..regtest_miner()
            },
            stop.clone(),
        );
        async move {
            let _ = mine(config, Arc::new(MinerStats::default()), stop).await;
        }
    });
    wait_for("A mines 5 shares", Duration::from_secs(60), || async {
        a.chain.summary().shares >= 5
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(10), miner).await;
    eprintln!("A mined its shares after {:?}", started.elapsed());

    // A alone: no peer row, a count of 0, the sync state getinfo gives.
    let before = result(&a, "getinfo", json!([])).await;
    let (page, seen) = peers_while(&a, run_chromium(&origin_a, None)).await;
    let after = result(&a, "getinfo", json!([])).await;
    page.assert_clean(&origin_a);
    assert!(seen.iter().all(|s| s == &json!([])), "{seen:?}");
    assert_eq!(before["sync"]["state"], "alone (no peers)", "{before}");
    assert_sync_shown(&page, &before, &after);
    assert_eq!(page.dom.matches("data-peer=\"").count(), 0, "{}", page.dom);
    eprintln!("A's page alone read after {:?}", started.elapsed());

    // B dials A and catches up on A's chain.
    let (b, _b_dir) = start_node(&daemons.a, a.p2p.as_ref().unwrap().listen_addrs()).await;
    let origin_b = format!("http://{}/", b.api_addr().unwrap());
    let a_tip = a.chain.summary().tip.expect("A has a chain");
    let (a_info, b_info) = (
        result(&a, "getinfo", json!([])).await,
        result(&b, "getinfo", json!([])).await,
    );
    let (a_id, b_id) = (
        a_info["p2p"]["peer_id"].as_str().unwrap().to_owned(),
        b_info["p2p"]["peer_id"].as_str().unwrap().to_owned(),
    );
    // Each lists the other, identified and pinged, so every column has a value.
    for (node, other) in [(&a, &b_id), (&b, &a_id)] {
        wait_for(
            "the nodes list each other, identified and pinged",
            Duration::from_secs(30),
            || async {
                let peers = result(node, "getpeerinfo", json!([])).await;
                peers.as_array().unwrap().iter().any(|p| {
                    p["peer_id"] == other.as_str() && p["agent"].is_string() && p["rtt_ms"].is_f64()
                })
            },
        )
        .await;
    }
    wait_for("B holds A's tip", Duration::from_secs(30), || async {
        b.chain.summary().tip == Some(a_tip)
            && result(&b, "getinfo", json!([])).await["sync"]["state"] == "synced"
    })
    .await;
    eprintln!("B peered and synced after {:?}", started.elapsed());

    // A's page: B is its one peer, inbound, as getpeerinfo gave it.
    let before = result(&a, "getinfo", json!([])).await;
    let (page, seen) = peers_while(&a, run_chromium(&origin_a, None)).await;
    let after = result(&a, "getinfo", json!([])).await;
    page.assert_clean(&origin_a);
    assert_sync_shown(&page, &before, &after);
    let rows = page.dom.matches("data-peer=\"").count();
    assert_eq!(rows, 1, "A has one peer: {}", page.dom);
    let b_row = assert_peer_shown(&page, &b_id, &seen);
    assert_eq!(b_row["inbound"], true, "B dialled A: {b_row}");
    assert!(
        b_row["addrs"][0]
            .as_str()
            .unwrap()
            .starts_with("/ip4/127.0.0.1/tcp/"),
        "{b_row}"
    );
    assert!(
        b_row["agent"].as_str().unwrap().contains("p2pool"),
        "{b_row}"
    );

    // B's page: A is its one peer, outbound at A's listen address; B's newest share is A's tip.
    let before = result(&b, "getinfo", json!([])).await;
    let (page_b, seen) = peers_while(&b, run_chromium(&origin_b, None)).await;
    let after = result(&b, "getinfo", json!([])).await;
    page_b.assert_clean(&origin_b);
    assert_eq!(before["sync"]["state"], "synced", "{before}");
    assert_sync_shown(&page_b, &before, &after);
    assert_eq!(
        page_b.dom.matches("data-peer=\"").count(),
        1,
        "{}",
        page_b.dom
    );
    let a_row = assert_peer_shown(&page_b, &a_id, &seen);
    assert_eq!(a_row["inbound"], false, "{a_row}");
    // The address dialled: a listen address, with or without A's `/p2p/` id.
    let listen: Vec<&str> = a_info["p2p"]["listen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        a_row["addrs"].as_array().unwrap().iter().any(|addr| {
            let addr = addr.as_str().unwrap();
            let addr = addr.strip_suffix(&format!("/p2p/{a_id}")).unwrap_or(addr);
            listen.contains(&addr)
        }),
        "B reached A at one of A's listen addresses {listen:?}: {a_row}"
    );
    let first_share = page_b.attr_after("id=\"shares\"", "data-hash");
    assert_eq!(
        first_share,
        a_tip.to_string(),
        "B's newest share is A's tip"
    );

    // A screenshot of A's page for a person to look at.
    let path = artifacts_dir().join("dashboard-peers.png");
    let _ = std::fs::remove_file(&path);
    let shot = run_chromium(&origin_a, Some((&path, 1280, 2400))).await;
    shot.assert_clean(&origin_a);
    let png = std::fs::read(&path).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{}", path.display());
    println!("screenshot: {}", path.display());
    eprintln!("done in {:?}", started.elapsed());
}
