//! A node mining on a real regtest litecoind whose litecoind is stopped mid-run: the
//! `daemon_not_ready` alert is raised and listed by `getalerts`, and `daemon_ready` once
//! litecoind is back. Meanwhile the node's webhook receiver accepts connections and never
//! answers: neither the alerts nor the mining wait for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pool::miner::{mine, MinerStats};
use p2pool::node::{NodeEvent, NodeOptions};
use serde_json::{json, Value};

mod common;

use common::pool::{api_result as result, silent_receiver, start_pool_with};

/// Alerts of `kind` listed by `getalerts` with an id above `after`.
fn listed(alerts: &Value, kind: &str, after: u64) -> Vec<Value> {
    alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind && a["id"].as_u64().unwrap() > after)
        .cloned()
        .collect()
}

/// Waits up to `limit` for a share accepted by the node.
async fn a_share(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(NodeEvent::ShareAccepted { .. })) => return,
            Ok(_) => {}
            Err(_) => panic!("no share accepted in {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_litecoind_raises_daemon_not_ready_then_daemon_ready() {
    // A webhook receiver that accepts connections and never reads or answers.
    let (webhook, connections) = silent_receiver().await;
    let mut pool = start_pool_with(NodeOptions {
        api: Some("127.0.0.1:0".parse().unwrap()),
        webhook: Some(webhook),
        // Longer than the outage: the miner keeps its connection.
        stratum_pause_grace: Duration::from_secs(60),
        ..NodeOptions::default()
    })
    .await;
    let mut events = pool.node.subscribe();
    let address = pool.daemons.new_address("bech32").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (config, flag) = (pool.miner(&address), stop.clone());
    let miner = tokio::spawn(async move {
        let _ = mine(config, Arc::new(MinerStats::default()), flag).await;
    });
    a_share(&mut events, Duration::from_secs(60)).await;
    let before = result(&pool.node, "getalerts", json!([500])).await;
    let baseline = before
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_u64())
        .max()
        .unwrap_or(0);

    // litecoind stops.
    pool.daemons.a.stop(Duration::from_secs(30)).await.unwrap();
    let stopped = Instant::now();
    let not_ready = loop {
        let alerts = result(&pool.node, "getalerts", json!([500])).await;
        if let Some(a) = listed(&alerts, "daemon_not_ready", baseline).pop() {
            break a;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "no daemon_not_ready alert 15 s after litecoind stopped: {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("{not_ready} after {:?}", stopped.elapsed());
    assert_eq!(not_ready["subject"], "litecoind", "{not_ready}");
    assert!(
        not_ready["message"]
            .as_str()
            .unwrap()
            .starts_with("litecoind is unreachable or not ready"),
        "{not_ready}"
    );
    let info = result(&pool.node, "getinfo", json!([])).await;
    assert_eq!(info["daemon"]["ready"], false, "{info}");
    // The webhook is being delivered to, and holds the delivery.
    while connections.load(Ordering::Relaxed) == 0 {
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "no webhook delivery"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // litecoind is back (with its peer, so it serves templates again).
    pool.daemons.a.restart().await.unwrap();
    pool.daemons
        .wait_connected(Duration::from_secs(30))
        .await
        .unwrap();
    let restarted = Instant::now();
    let not_ready_id = not_ready["id"].as_u64().unwrap();
    let ready = loop {
        let alerts = result(&pool.node, "getalerts", json!([500])).await;
        if let Some(a) = listed(&alerts, "daemon_ready", not_ready_id).pop() {
            break a;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "no daemon_ready alert 30 s after litecoind was back: {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ready["subject"], "litecoind", "{ready}");
    // Mining goes on, the webhook still hanging on its first alert.
    while events.try_recv().is_ok() {}
    a_share(&mut events, Duration::from_secs(60)).await;
    let metrics = common::pool::metrics_text(&pool.node).await;
    for kind in ["daemon_not_ready", "daemon_ready"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&format!("p2pool_alerts_total{{kind=\"{kind}\"}} "))),
            "{kind}: {metrics}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(30), miner).await;
}
