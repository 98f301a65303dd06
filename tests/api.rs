//! The JSON-RPC API, dashboard and metrics over real HTTP, reading a real share chain (real
//! scrypt shares mined by the share-chain test kit) through the chain thread.
//!
//! The node-level wiring (a real litecoind, real miners) is covered in `node_regtest.rs`;
//! here: every method's answer matches the chain it reads, and hostile requests get a
//! JSON-RPC error, never a crash.

use p2pool::api::{ApiServer, ApiSources, MAX_REQUEST_BYTES};
use p2pool::chain_service::ChainHandle;
use p2pool::daemon::watcher::{DaemonState, DaemonStatus};
use p2pool::stratum::{StatsSnapshot, WorkerStats};
use serde_json::{json, Value};
use share_chain::address::script_to_address;
use share_chain::chain::ChainIndex;
use share_chain::testkit::{grow_chain, miner_script, regtest_preset};
use tokio::sync::watch;

struct Api {
    server: ApiServer,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    _daemon: watch::Sender<DaemonStatus>,
    counters: std::sync::Arc<p2pool::counters::NodeCounters>,
}

impl Api {
    async fn call(&self, method: &str, params: Value) -> Value {
        self.raw(json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string())
            .await
    }

    async fn raw(&self, body: String) -> Value {
        let url = format!("http://{}/", self.server.local_addr());
        let resp = self.client.post(url).body(body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }
}

/// An API over a chain of `n` shares from 3 miners (0, 1, 2 in turn), with one Stratum
/// worker paying miner 1.
async fn api(n: usize) -> (Api, Vec<String>) {
    let preset = regtest_preset("[consensus]\nwindow_shares = 30\nwindow_work_blocks = 1000\n");
    let dir = tempfile::tempdir().unwrap();
    let (chain, _) = ChainHandle::open(dir.path().join("chain"), preset.clone()).unwrap();
    let mut scratch = ChainIndex::new(&preset);
    let shares = grow_chain(&mut scratch, n, 3, 1_700_000_000);
    chain
        .call(move |c| {
            for s in shares {
                c.connect(s, 1_800_000_000).unwrap();
            }
        })
        .await
        .unwrap();
    let addresses: Vec<String> = (0..3)
        .map(|i| script_to_address(&miner_script(i), &preset.coin).unwrap())
        .collect();
    let worker = format!("{}.rig1", addresses[1]);
    let (daemon_tx, daemon) = watch::channel(DaemonStatus {
        state: DaemonState::Unreachable,
        template: None,
        template_seq: 0,
    });
    let counters = std::sync::Arc::new(p2pool::counters::NodeCounters::default());
    // The node keeps the found-blocks list; here, with no daemon to follow them on.
    let blocks = std::sync::Arc::new(p2pool::blocks::FoundBlocks::in_memory());
    tokio::spawn(p2pool::blocks::track(
        chain.clone(),
        preset.clone(),
        p2pool::blocks::Daemons {
            parent: None,
            aux: Vec::new(),
        },
        blocks.clone(),
    ));
    let sources = ApiSources {
        preset,
        chain,
        daemon,
        stratum: Box::new(move || StatsSnapshot {
            connections: 1,
            accepted: 5,
            workers: vec![WorkerStats {
                username: worker.clone(),
                accepted: 5,
                shares: 2,
                ..WorkerStats::default()
            }],
            ..StatsSnapshot::default()
        }),
        network: None,
        sync: None,
        counters: counters.clone(),
        daemon_rpc: None,
        fee: None,
        blocks: blocks.clone(),
        aux_daemons: Vec::new(),
        hashrates: std::sync::Arc::new(p2pool::hashrate::Hashrates::new(65_536, 600)),
        history: std::sync::Arc::new(p2pool::history::History::in_memory()),
        alerts: Default::default(),
        aux: tokio::sync::watch::channel(Vec::new()).1,
        aux_status: Vec::new(),
    };
    let server = ApiServer::start("127.0.0.1:0".parse().unwrap(), sources)
        .await
        .unwrap();
    let api = Api {
        server,
        client: reqwest::Client::new(),
        _dir: dir,
        _daemon: daemon_tx,
        counters,
    };
    (api, addresses)
}

/// A found block its daemon refused is money lost: the operator hears of it as an alert
/// (and its aux counterpart for merged mining), once per new refusal.
#[tokio::test]
async fn refused_blocks_raise_alerts() {
    use p2pool::counters::NodeCounters;
    let (api, _) = api(3).await;
    NodeCounters::add(&api.counters.blocks_refused, 2);
    NodeCounters::add(&api.counters.aux_blocks_refused, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let kinds = loop {
        let alerts = api.call("getalerts", json!([])).await["result"].clone();
        let kinds: Vec<(String, String)> = alerts
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["kind"].as_str().unwrap().to_owned(),
                    a["message"].as_str().unwrap().to_owned(),
                )
            })
            .filter(|(k, _)| k.ends_with("block_refused"))
            .collect();
        if kinds.len() == 2 || std::time::Instant::now() > deadline {
            break kinds;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds
        .iter()
        .any(|(k, m)| k == "block_refused" && m.starts_with("2 found block")));
    assert!(kinds.iter().any(|(k, _)| k == "aux_block_refused"));
    // No new refusal, no new alert.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let alerts = api.call("getalerts", json!([])).await["result"].clone();
    let count = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"].as_str().unwrap().ends_with("block_refused"))
        .count();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn methods_report_the_chain_they_read() {
    let (api, addresses) = api(10).await;

    let info = api.call("getinfo", json!([])).await;
    let info = &info["result"];
    assert_eq!(info["share_chain"]["height"], 9);
    assert_eq!(info["share_chain"]["shares"], 10);
    assert_eq!(info["share_chain"]["window_shares"], 10);
    assert_eq!(info["share_chain"]["window_payees"], 3);
    assert_eq!(info["daemon"]["ready"], false);
    assert_eq!(info["stratum"]["connections"], 1);
    assert_eq!(info["sync"]["serving"], true);

    // Miner 0 mined shares 0, 3, 6, 9; miners 1 and 2 three each: 4/10, 3/10, 3/10.
    let pay = api.call("getpayoutinfo", json!([])).await;
    let pay = &pay["result"];
    assert_eq!(pay["payees"], 3);
    let miners = pay["miners"].as_array().unwrap();
    assert_eq!(miners[0]["address"], addresses[0].as_str());
    let fractions: Vec<f64> = miners
        .iter()
        .map(|m| m["fraction"].as_f64().unwrap())
        .collect();
    assert!((fractions[0] - 0.4).abs() < 1e-9, "{fractions:?}");
    assert!((fractions.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let weights: u128 = miners
        .iter()
        .map(|m| m["weight"].as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    assert_eq!(weights.to_string(), pay["total_weight"].as_str().unwrap());
    // No template: no amount to expect.
    assert_eq!(miners[0]["expected"], Value::Null);

    let one = api.call("getpayoutinfo", json!([addresses[2]])).await;
    let one = one["result"]["miners"].as_array().unwrap().clone();
    assert_eq!(one.len(), 1);
    assert!((one[0]["fraction"].as_f64().unwrap() - 0.3).abs() < 1e-9);

    let stats = api.call("getminerstats", json!([addresses[1]])).await;
    let stats = &stats["result"];
    assert_eq!(stats["workers"].as_array().unwrap().len(), 1);
    assert_eq!(stats["workers"][0]["shares"], 2);
    assert!((stats["window"]["fraction"].as_f64().unwrap() - 0.3).abs() < 1e-9);
    let none = api.call("getminerstats", json!([addresses[0]])).await;
    assert!(none["result"]["workers"].as_array().unwrap().is_empty());

    let recent = api.call("getsharechain", json!([5])).await;
    let recent = recent["result"].as_array().unwrap();
    assert_eq!(recent.len(), 5);
    assert_eq!(recent[0]["height"], 9);
    assert_eq!(recent[0]["hash"], info["share_chain"]["tip"]);
    assert_eq!(recent[4]["height"], 5);

    assert_eq!(
        api.call("getpeerinfo", json!([])).await["result"],
        json!([])
    );

    let base = format!("http://{}", api.server.local_addr());
    let metrics = api
        .client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("p2pool_share_chain_height 9"), "{metrics}");
    assert!(metrics.contains("p2pool_window_payees 3"), "{metrics}");
    assert!(
        metrics.contains("p2pool_stratum_accepted_total 5"),
        "{metrics}"
    );
    // The dashboard: the page and its embedded assets, with their types, only from here.
    let get = |path: &str| api.client.get(format!("{base}{path}")).send();
    let page = get("/").await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    let page = page.text().await.unwrap();
    assert!(page.contains("src=\"/assets/dashboard.js\""), "{page}");
    let script = get("/assets/dashboard.js").await.unwrap();
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(script.text().await.unwrap().contains("getpayoutinfo"));
    let chart = get("/assets/uPlot.iife.min.js").await.unwrap();
    assert_eq!(chart.status(), 200);
    assert!(chart.text().await.unwrap().contains("uPlot"));
    let css = get("/assets/uPlot.min.css").await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    for missing in ["/assets/nothing.js", "/assets/..%2Fmod.rs", "/assets/"] {
        assert_eq!(get(missing).await.unwrap().status(), 404, "{missing}");
    }
    let local = api.call("gethistory", json!(["local", "10m"])).await;
    assert_eq!(local["result"]["points"], json!([]), "{local}");
}

#[tokio::test]
async fn hostile_requests_get_errors() {
    let (api, _) = api(3).await;
    let code = |v: &Value| v["error"]["code"].as_i64();

    let wrong_net = api
        .call(
            "getpayoutinfo",
            json!(["ltc1qw508d6qejxtdg4y5r3zarvary0c5xw7kgmn4n9"]),
        )
        .await;
    assert_eq!(code(&wrong_net), Some(-32602), "{wrong_net}");
    assert!(wrong_net["error"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid address"));
    assert_eq!(
        code(&api.call("getpayoutinfo", json!([42])).await),
        Some(-32602)
    );
    assert_eq!(
        code(&api.call("getsharechain", json!([0])).await),
        Some(-32602)
    );
    assert_eq!(
        code(&api.call("getsharechain", json!([100_000])).await),
        Some(-32602)
    );
    assert_eq!(
        code(&api.call("nosuchmethod", json!([])).await),
        Some(-32601)
    );
    for (method, params) in [
        ("verifyblockpayout", json!([])),
        ("verifyblockpayout", json!(["zz"])),
        ("verifyblockpayout", json!([7])),
        ("getshare", json!(["00"])),
        ("getshare", json!([])),
        ("getblocks", json!([0])),
        ("getblocks", json!([1_000_000])),
        ("getblocks", json!(["ten"])),
        ("getpplnswindow", json!([0, 0])),
        ("getpplnswindow", json!([0, 100_000])),
        ("getpplnswindow", json!([-1])),
        ("getpplnswindow", json!([u64::MAX])),
    ] {
        let answer = api.call(method, params.clone()).await;
        assert_eq!(code(&answer), Some(-32602), "{method} {params}: {answer}");
    }
    // Well-formed, but unknown.
    let unknown = "11".repeat(32);
    let answer = api.call("getshare", json!([unknown])).await;
    assert_eq!(code(&answer), Some(-32001), "{answer}");
    // No litecoind to read a block from.
    let answer = api.call("verifyblockpayout", json!([unknown])).await;
    assert_eq!(code(&answer), Some(-32000), "{answer}");
    assert_eq!(code(&api.raw("{not json".into()).await), Some(-32700));
    assert_eq!(code(&api.raw("[{}]".into()).await), Some(-32600));

    // An oversized body is refused before it is read whole.
    let url = format!("http://{}/", api.server.local_addr());
    let big = "x".repeat(MAX_REQUEST_BYTES + 1);
    let resp = api.client.post(&url).body(big).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    // And the server still answers.
    assert!(api.call("getinfo", json!([])).await["result"].is_object());
}

/// The window, a share and the found blocks as the chain holds them. The test kit mines on
/// the regtest block target, so every share is also a block.
#[tokio::test]
async fn window_shares_and_found_blocks() {
    let (api, addresses) = api(10).await;
    let tip = api.call("getinfo", json!([])).await["result"]["share_chain"]["tip"].clone();

    let window = api.call("getpplnswindow", json!([])).await;
    let window = &window["result"];
    assert_eq!(window["total"], 10, "{window}");
    assert_eq!(window["tip"], tip);
    let rows = window["shares"].as_array().unwrap();
    assert_eq!(rows[0]["hash"], tip);
    assert_eq!(rows[9]["height"], 0);
    // The credits add up to the window's weights per address.
    let pay = api.call("getpayoutinfo", json!([])).await;
    for miner in pay["result"]["miners"].as_array().unwrap() {
        let credited: u128 = rows
            .iter()
            .flat_map(|r| r["credits"].as_array().unwrap())
            .filter(|c| c["address"] == miner["address"])
            .map(|c| c["weight"].as_str().unwrap().parse::<u128>().unwrap())
            .sum();
        assert_eq!(credited.to_string(), miner["weight"].as_str().unwrap());
    }
    let page = api.call("getpplnswindow", json!([8, 5])).await;
    let page = page["result"]["shares"].as_array().unwrap().clone();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["hash"], rows[8]["hash"]);

    let share = api.call("getshare", json!([tip])).await;
    let share = &share["result"];
    assert_eq!(share["place"], "best", "{share}");
    assert_eq!(share["height"], 9);
    assert_eq!(share["address"], addresses[0].as_str());
    assert_eq!(share["coinbase"]["value"], 50_0000_0000u64);

    // Every share is a block here, and carries a Dogecoin block it also mines (the test
    // chain's aux target is as easy): all ten of each are listed, newest first, pending (no
    // daemon to follow them), each paying exactly its coinbase value.
    let start = std::time::Instant::now();
    let blocks = loop {
        let blocks = api.call("getblocks", json!([100])).await["result"].clone();
        if blocks.as_array().unwrap().len() == 20 {
            break blocks;
        }
        assert!(start.elapsed().as_secs() < 10, "{blocks}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let on = |chain: &str| -> Vec<Value> {
        blocks
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["chain"] == chain)
            .cloned()
            .collect()
    };
    let (litecoin, dogecoin) = (on("litecoin-regtest"), on("dogecoin-regtest"));
    assert_eq!((litecoin.len(), dogecoin.len()), (10, 10));
    assert_eq!(litecoin[0]["hash"], tip);
    assert_eq!(litecoin[0]["finder"], addresses[0].as_str());
    // The newest Dogecoin block is the tip share's, paying its miner's Dogecoin address.
    assert_eq!(dogecoin[0]["parent_header"], tip);
    assert!(dogecoin[0]["finder"].as_str().unwrap().starts_with('m'));
    for (b, value) in litecoin
        .iter()
        .map(|b| (b, 50_0000_0000u64))
        .chain(dogecoin.iter().map(|b| (b, b["value"].as_u64().unwrap())))
    {
        assert_eq!(b["status"], "pending");
        let paid: u64 = b["payouts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["amount"].as_u64().unwrap())
            .sum();
        assert_eq!(paid, value, "{b}");
    }
    let base = format!("http://{}", api.server.local_addr());
    let metrics = api
        .client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for chain in ["litecoin-regtest", "dogecoin-regtest"] {
        assert!(
            metrics.contains(&format!(
                "p2pool_found_blocks{{chain=\"{chain}\",status=\"pending\"}} 10"
            )),
            "{metrics}"
        );
    }
}
