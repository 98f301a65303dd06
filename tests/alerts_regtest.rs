//! Alerts and history on a node mining on a real regtest litecoind: a worker that stops
//! turns offline and raises an alert, which a real HTTP webhook receiver gets; the
//! hashrate history survives a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use p2pool::miner::{mine, MinerStats};
use p2pool::node::{Node, NodeConfig, NodeOptions};
use serde_json::{json, Value};
use tokio::sync::mpsc;

mod common;

use common::pool::{api_result as result, regtest, start_pool_with, Pool};

/// A webhook receiver on a free port: its URL and the alerts it receives.
async fn webhook() -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(tx): State<mpsc::UnboundedSender<Value>>, Json(v): Json<Value>| async move {
                    let _ = tx.send(v);
                },
            ),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

fn options(webhook: Option<String>) -> NodeOptions {
    NodeOptions {
        api: Some("127.0.0.1:0".parse().unwrap()),
        offline_after: Duration::from_secs(3),
        webhook,
        ..NodeOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_raises_an_alert_and_history_survives_a_restart() {
    let (url, mut received) = webhook().await;
    let pool = start_pool_with(options(Some(url))).await;
    let address = pool.daemons.new_address("bech32").await.unwrap();
    let worker = format!("{address}.test");
    let stop = Arc::new(AtomicBool::new(false));
    let (config, flag) = (pool.miner(&address), stop.clone());
    tokio::spawn(async move {
        let _ = mine(config, Arc::new(MinerStats::default()), flag).await;
    });

    // Mining long enough for two hashrate samples and a pool hashrate.
    let start = Instant::now();
    loop {
        let history = result(&pool.node, "gethistory", json!(["pool", "10m"])).await;
        let stats = result(&pool.node, "getminerstats", json!([address])).await;
        if !history["points"].as_array().unwrap().is_empty()
            && stats["workers"][0]["hashrate"]["10m"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{history} {stats}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mine_history = result(&pool.node, "gethistory", json!([address, "10m"])).await;
    assert!(
        !mine_history["points"].as_array().unwrap().is_empty(),
        "{mine_history}"
    );

    // The worker stops right after an accepted submission, so it is online when it stops
    // (vardiff aims at ~10 s between submissions: while mining it may flap offline and back
    // with a 3 s limit, and those alerts are not the ones looked for).
    let accepted = |stats: &Value| stats["workers"][0]["accepted"].as_u64().unwrap_or(0);
    let before = accepted(&result(&pool.node, "getminerstats", json!([address])).await);
    let start = Instant::now();
    loop {
        let stats = result(&pool.node, "getminerstats", json!([address])).await;
        if accepted(&stats) > before {
            assert_eq!(stats["workers"][0]["online"], true, "{stats}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let stopped_at = p2pool::api::now_secs();
    // Offline 3 s after its last submission: the webhook hears of it.
    let alert = loop {
        let alert = tokio::time::timeout(Duration::from_secs(30), received.recv())
            .await
            .expect("an offline alert within 30 s of the stop")
            .unwrap();
        if alert["kind"] == "worker_offline" && alert["time"].as_u64().unwrap() >= stopped_at {
            break alert;
        }
    };
    assert_eq!(alert["subject"], worker.as_str(), "{alert}");
    assert!(
        alert["time"].as_u64().unwrap() <= stopped_at + 3 + 4,
        "raised late: {alert}"
    );
    assert!(
        alert["message"].as_str().unwrap().contains("3 s"),
        "{alert}"
    );
    let listed = result(&pool.node, "getalerts", json!([])).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "worker_offline" && a["subject"] == worker.as_str()),
        "{listed}"
    );
    // Offline in the stats too. The miner checks its stop flag between Stratum messages,
    // so a solution it found meanwhile may still land and make it online for 3 s more.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let stats = result(&pool.node, "getminerstats", json!([address])).await;
        if stats["workers"][0]["online"] == false {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still online: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = common::pool::metrics_text(&pool.node).await;
    let offline_alerts = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "worker_offline")
        .count();
    assert!(
        metrics.contains(&format!(
            "p2pool_alerts_total{{kind=\"worker_offline\"}} {offline_alerts}"
        )),
        "{offline_alerts} {metrics}"
    );

    // History survives a restart.
    let before = result(&pool.node, "gethistory", json!(["pool", "10m"])).await;
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
        options(None),
    )
    .await
    .expect("the node restarts");
    let after = result(&node, "gethistory", json!(["pool", "10m"])).await;
    // The same buckets (the open one may have gained a sample since).
    assert_eq!(
        after["points"][0][0], before["points"][0][0],
        "{before} {after}"
    );
    let mine_after = result(&node, "gethistory", json!([address, "10m"])).await;
    assert_eq!(mine_after["points"][0][0], mine_history["points"][0][0]);
}
