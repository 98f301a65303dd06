//! Every `mining.submit` refusal, through the real node on a real litecoind (regtest).
//!
//! tests/stratum.rs checks the Stratum server against a stub work source; this file checks
//! what a miner sees from the whole node: jobs built from litecoind's templates, blocks
//! found on them submitted to litecoind, shares connected to the share chain. The miner is
//! a raw Stratum client written here (JSON lines over TCP, its own `mining.notify` decoding
//! and header building, real scrypt), so nothing of the server's own code checks itself.
//!
//! On regtest every share is also a block (the block target is ~2^255), so an accepted
//! submission moves litecoind's tip and the node sends a clean job: the test follows the
//! jobs as they come rather than assuming one.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use p2pool::miner::MinerJob;
use p2pool::node::{NodeEvent, NodeOptions};
use p2pool::stratum::DifficultyScale;
use serde_json::{json, Value};
use share_chain::address::{address_to_script, script_to_address};
use share_chain::pow::pow_hash;
use share_chain::{PowAlgorithm, Preset, ShareHash, Target};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Every wait on the node or litecoind is bounded by this.
const WAIT: Duration = Duration::from_secs(30);

mod common;

use common::pool::{start_pool_with, Pool};

/// The node's Stratum connection limit in this test (`--stratum-max-connections`).
const MAX_CONNECTIONS: usize = 3;

fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as u32
}

/// A job as decoded from `mining.notify`, with the difficulty in force when it came.
#[derive(Clone, Debug)]
struct Job {
    notify: MinerJob,
    difficulty: f64,
}

impl std::ops::Deref for Job {
    type Target = MinerJob;
    fn deref(&self) -> &MinerJob {
        &self.notify
    }
}

impl Job {
    fn from_notify(params: &Value, difficulty: f64) -> Job {
        Job {
            notify: MinerJob::from_notify(params).expect("a well-formed mining.notify"),
            difficulty,
        }
    }

    /// The previous block hash as litecoind displays it.
    fn prev_block_display(&self) -> String {
        let mut b = self.prev_block;
        b.reverse();
        hex::encode(b)
    }
}

fn scale() -> DifficultyScale {
    let preset = Preset::builtin("litecoin-regtest").unwrap();
    DifficultyScale::new(preset.coin.pow.stratum_difficulty_multiplier())
}

/// A solution found for a job.
#[derive(Clone, Debug)]
struct Found {
    extranonce2: [u8; 4],
    version: u32,
    nonce: u32,
}

/// Grinds real scrypt on the blocking pool until a hash meets the job's difficulty.
async fn grind(job: &Job, extranonce1: &[u8], extranonce2: [u8; 4], version: u32) -> Found {
    let job = job.clone();
    let extranonce = [extranonce1, &extranonce2[..]].concat();
    let target = scale().target(job.difficulty);
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        for nonce in 0..=u32::MAX {
            let header = job.header(&extranonce, version, job.time, nonce);
            if target.is_met_by(&pow_hash(PowAlgorithm::Scrypt, &header)) {
                return Found {
                    extranonce2,
                    version,
                    nonce,
                };
            }
            assert!(
                start.elapsed() < WAIT,
                "no hash met difficulty {} in {WAIT:?}",
                job.difficulty
            );
        }
        unreachable!("the loop returns or panics first")
    })
    .await
    .expect("grinding thread")
}

/// A nonce whose hash meets neither the session target (with a 2x margin, so rounding
/// cannot matter) nor the block target: a share that is worth nothing.
fn low_difficulty_nonce(job: &Job, extranonce1: &[u8], extranonce2: [u8; 4]) -> u32 {
    let extranonce = [extranonce1, &extranonce2[..]].concat();
    let easier = scale().target(job.difficulty / 2.0);
    let block = Target::from_compact(job.bits).expect("job bits");
    (0..1000u32)
        .find(|&nonce| {
            let hash = pow_hash(
                PowAlgorithm::Scrypt,
                &job.header(&extranonce, job.version, job.time, nonce),
            );
            !easier.is_met_by(&hash) && !block.is_met_by(&hash)
        })
        .expect("most hashes are worth nothing")
}

/// A raw Stratum client: requests, and the notifications that arrive meanwhile.
struct Client {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    next_id: u64,
    extranonce1: Vec<u8>,
    difficulty: f64,
    /// Jobs in the order received.
    jobs: Vec<Job>,
    /// Answers read while waiting for something else.
    answers: HashMap<u64, Value>,
    /// The session's negotiated version-rolling mask.
    version_mask: u32,
}

impl Client {
    async fn connect(pool: &Pool) -> Client {
        let stream = TcpStream::connect(pool.node.stratum_addr())
            .await
            .expect("connect to stratum");
        let (read, write) = stream.into_split();
        Client {
            lines: BufReader::new(read).lines(),
            write,
            next_id: 1,
            extranonce1: Vec::new(),
            difficulty: 0.0,
            jobs: Vec::new(),
            answers: HashMap::new(),
            version_mask: 0,
        }
    }

    /// Reads one line and files it: a notification updates the state, an answer is kept.
    async fn read_one(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, self.lines.next_line())
            .await
            .expect("the stratum server answers in time")
            .expect("read from stratum")
            .expect("the stratum server keeps the connection open");
        self.take(&line);
    }

    /// Reads what the server sends until it has been quiet for `quiet`.
    async fn drain(&mut self, quiet: Duration) {
        // `next_line` is cancel safe: a timeout loses no part of a line.
        while let Ok(line) = tokio::time::timeout(quiet, self.lines.next_line()).await {
            let line = line
                .expect("read from stratum")
                .expect("the stratum server keeps the connection open");
            self.take(&line);
        }
    }

    fn take(&mut self, line: &str) {
        let msg: Value = serde_json::from_str(line).expect("JSON line");
        match msg["method"].as_str() {
            Some("mining.set_difficulty") => {
                self.difficulty = msg["params"][0].as_f64().expect("difficulty");
            }
            Some("mining.notify") => {
                let job = Job::from_notify(&msg["params"], self.difficulty);
                self.jobs.push(job);
            }
            Some(other) => panic!("unexpected notification {other}: {line}"),
            None => {
                let id = msg["id"].as_u64().expect("an answer carries our id");
                self.answers.insert(id, msg);
            }
        }
    }

    /// Sends requests in one write; returns their ids.
    async fn send(&mut self, requests: &[(&str, Value)]) -> Vec<u64> {
        let mut text = String::new();
        let mut ids = Vec::new();
        for (method, params) in requests {
            let id = self.next_id;
            self.next_id += 1;
            text.push_str(&json!({"id": id, "method": method, "params": params}).to_string());
            text.push('\n');
            ids.push(id);
        }
        self.write
            .write_all(text.as_bytes())
            .await
            .expect("write to stratum");
        ids
    }

    async fn answer(&mut self, id: u64) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(answer) = self.answers.remove(&id) {
                return answer;
            }
            self.read_one(deadline).await;
        }
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        let ids = self.send(&[(method, params)]).await;
        self.answer(ids[0]).await
    }

    /// Waits for a job (received so far or later) that satisfies `pred`.
    async fn wait_job(&mut self, pred: impl Fn(&Job) -> bool) -> Job {
        let deadline = Instant::now() + WAIT;
        let mut seen = 0;
        loop {
            if let Some(job) = self.jobs[seen..].iter().find(|j| pred(j)) {
                return job.clone();
            }
            seen = self.jobs.len();
            self.read_one(deadline).await;
        }
    }

    fn latest(&self) -> Job {
        self.jobs.last().expect("a job").clone()
    }

    fn submit_params(&self, user: &str, job: &Job, found: &Found, ntime: u32) -> Value {
        let mut params = json!([
            user,
            job.id,
            hex::encode(found.extranonce2),
            format!("{ntime:08x}"),
            format!("{:08x}", found.nonce),
        ]);
        if found.version != job.version {
            let bits = found.version & self.version_mask;
            params
                .as_array_mut()
                .unwrap()
                .push(json!(format!("{bits:08x}")));
        }
        params
    }
}

/// The error code of an answer, with its message; panics on a success.
fn error_of(answer: &Value) -> (i64, String) {
    assert_eq!(
        answer["result"],
        Value::Null,
        "expected a refusal, got {answer}"
    );
    let code = answer["error"][0].as_i64().expect("error code");
    let message = answer["error"][1].as_str().unwrap_or_default().to_string();
    (code, message)
}

/// Waits for the node to connect the share of the submission just accepted from `miner`;
/// if it was also a block litecoind accepted, waits for the clean job on top of it, so the
/// next step works on current work.
async fn settle(
    c: &mut Client,
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    miner: &str,
) -> ShareHash {
    let mut blocks = HashSet::new();
    let share = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::BlockSubmitted {
                    hash,
                    accepted: true,
                    ..
                }) => {
                    blocks.insert(hash);
                }
                Ok(NodeEvent::ShareAccepted { hash, miner: m, .. }) if m == miner => return hash,
                Ok(NodeEvent::ShareRejected { reason, .. }) => panic!("share rejected: {reason}"),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("node events: {e}"),
            }
        }
    })
    .await
    .expect("the share reaches the chain");
    if !blocks.contains(&share) {
        // A block is submitted by a task of its own: litecoind's answer may come after the
        // share is connected. No answer in a few seconds: the share was no block (or a
        // stale one, not submitted).
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::BlockSubmitted { hash, accepted, .. }) if hash == share => {
                        if accepted {
                            blocks.insert(hash);
                        }
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    _ => {}
                }
            }
        })
        .await;
    }
    if blocks.contains(&share) {
        let tip = share.to_string();
        c.wait_job(|j| j.prev_block_display() == tip).await;
    }
    share
}

async fn expect_error(client: &mut Client, method: &str, params: Value, code: i64) -> String {
    let answer = client.request(method, params.clone()).await;
    let (got, message) = error_of(&answer);
    assert_eq!(
        got, code,
        "{method} {params}: expected error {code}, got {answer}"
    );
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_submit_refusal_through_the_real_node() {
    let started = Instant::now();
    let pool = start_pool_with(NodeOptions {
        stratum_max_connections: MAX_CONNECTIONS,
        ..NodeOptions::default()
    })
    .await;
    let address = pool.daemons.new_address("bech32").await.unwrap();
    let other_address = pool.daemons.new_address("legacy").await.unwrap();
    let regtest = Preset::builtin("litecoin-regtest").unwrap();
    let mainnet = Preset::builtin("litecoin").unwrap();
    let script = address_to_script(&address, &regtest.coin).unwrap();

    // 25: a connection that never subscribed (even one that authorized).
    let mut fresh = Client::connect(&pool).await;
    let submit5 = json!([address, "1", "00000000", "00000000", "00000000"]);
    expect_error(&mut fresh, "mining.submit", submit5.clone(), 25).await;
    let auth = fresh
        .request("mining.authorize", json!([address, "x"]))
        .await;
    assert_eq!(auth["result"], json!(true));
    expect_error(&mut fresh, "mining.submit", submit5, 25).await;
    drop(fresh);

    // Authorization: mainnet addresses and garbage are refused (24) with the reason.
    let mut c = Client::connect(&pool).await;
    let sub = c.request("mining.subscribe", json!(["node-test/1"])).await;
    c.extranonce1 = hex::decode(sub["result"][1].as_str().unwrap()).unwrap();
    let mainnet_bech32 = script_to_address(&script, &mainnet.coin).expect("mainnet bech32");
    assert!(mainnet_bech32.starts_with("ltc1"), "{mainnet_bech32}");
    let legacy_script = address_to_script(&other_address, &regtest.coin).unwrap();
    let mainnet_legacy = script_to_address(&legacy_script, &mainnet.coin).expect("mainnet L...");
    assert!(mainnet_legacy.starts_with('L'), "{mainnet_legacy}");
    for mainnet_address in [&mainnet_bech32, &mainnet_legacy] {
        let message = expect_error(
            &mut c,
            "mining.authorize",
            json!([format!("{mainnet_address}.rig"), "x"]),
            24,
        )
        .await;
        assert!(
            message.contains(mainnet_address.as_str()) && message.contains("regtest"),
            "the refusal names the address and the network: {message}"
        );
    }
    let message = expect_error(
        &mut c,
        "mining.authorize",
        json!(["not-an-address", "x"]),
        24,
    )
    .await;
    assert!(message.contains("not an address"), "{message}");
    assert!(c.jobs.is_empty(), "no work before a valid authorization");

    // A valid regtest address: work flows.
    let user = format!("{address}.rig1");
    let auth = c.request("mining.authorize", json!([user, "x"])).await;
    assert_eq!(auth["result"], json!(true), "{auth}");
    c.wait_job(|_| true).await;
    assert!(c.difficulty > 0.0, "a difficulty came before the first job");
    // A second payout address on the same connection is refused: jobs pay one address.
    expect_error(&mut c, "mining.authorize", json!([other_address, "x"]), 24).await;

    let job = c.latest();
    let en2 = [0, 0, 0, 1];
    let nothing = Found {
        extranonce2: en2,
        version: job.version,
        nonce: 0,
    };

    // 24: a username this connection never authorized.
    let stranger = c.submit_params(&other_address, &job, &nothing, job.time);
    expect_error(&mut c, "mining.submit", stranger, 24).await;

    // 20: malformed parameters.
    let good = c.submit_params(&user, &job, &nothing, job.time);
    let with = |i: usize, v: Value| {
        let mut p = good.clone();
        p[i] = v;
        p
    };
    let malformed = [
        json!([user, job.id, "00000001", format!("{:08x}", job.time)]),
        json!([
            user,
            job.id,
            "00000001",
            format!("{:08x}", job.time),
            "00000000",
            "00000000",
            "x"
        ]),
        json!({"user": user}),
        with(2, json!("zzzzzzzz")),
        with(2, json!("0001")),
        with(2, json!("0000000001")),
        with(3, json!("123")),
        with(3, json!("g0000000")),
        with(4, json!("xyz12345")),
        with(4, json!("000000000")),
        with(4, json!(12345)),
    ];
    for params in malformed {
        expect_error(&mut c, "mining.submit", params, 20).await;
    }

    // 21: job ids that were never sent.
    for id in ["ffffff", "not-hex", "123456789"] {
        expect_error(&mut c, "mining.submit", with(1, json!(id)), 21).await;
    }

    // 20: ntime before the job's time, or further ahead of the node's clock than the
    // share chain allows (the preset's max_future_secs, one bound for both).
    let max_future = regtest.consensus.max_future_secs;
    let too_far = now_secs() + max_future + 30;
    for (ntime, why) in [
        (job.time - 1, "before the job".to_string()),
        (too_far, format!("more than {max_future} s ahead")),
    ] {
        let message = expect_error(
            &mut c,
            "mining.submit",
            with(3, json!(format!("{ntime:08x}"))),
            20,
        )
        .await;
        assert!(
            message.contains("ntime") && message.contains(&why),
            "{message}"
        );
    }

    // 20: version bits without version rolling, then outside the negotiated mask.
    let mut rolled = good.clone();
    rolled
        .as_array_mut()
        .unwrap()
        .push(json!(format!("{:08x}", 0x0000_2000)));
    expect_error(&mut c, "mining.submit", rolled, 20).await;
    let configure = c
        .request(
            "mining.configure",
            json!([["version-rolling"], {"version-rolling.mask": "ffffffff"}]),
        )
        .await;
    assert_eq!(configure["result"]["version-rolling"], json!(true));
    c.version_mask = u32::from_str_radix(
        configure["result"]["version-rolling.mask"]
            .as_str()
            .unwrap(),
        16,
    )
    .unwrap();
    assert_ne!(c.version_mask, 0);
    for bits in [0x0000_0001u32, 0x4000_0000, !c.version_mask] {
        let mut p = good.clone();
        p.as_array_mut().unwrap().push(json!(format!("{bits:08x}")));
        let message = expect_error(&mut c, "mining.submit", p, 20).await;
        assert!(message.contains("mask"), "{message}");
    }

    // 23: a hash that meets neither the session target nor the block target; 22 when the
    // very same submission comes again.
    let job = c.latest();
    let en2 = [0, 0, 0, 2];
    let low = Found {
        extranonce2: en2,
        version: job.version,
        nonce: low_difficulty_nonce(&job, &c.extranonce1, en2),
    };
    let params = c.submit_params(&user, &job, &low, job.time);
    let message = expect_error(&mut c, "mining.submit", params.clone(), 23).await;
    assert!(message.contains("low difficulty"), "{message}");
    expect_error(&mut c, "mining.submit", params, 22).await;

    // Accepted: a real solution at the session difficulty is a share on the node's chain
    // (and, on regtest, a block). Sent twice in one write: the second is a duplicate (22).
    let mut events = pool.node.subscribe();
    let shares_before = pool.node.chain.call(|c| c.index().len()).await.unwrap();
    let found = grind(&job, &c.extranonce1, [0, 0, 0, 3], job.version).await;
    let params = c.submit_params(&user, &job, &found, job.time);
    let ids = c
        .send(&[("mining.submit", params.clone()), ("mining.submit", params)])
        .await;
    let first = c.answer(ids[0]).await;
    assert_eq!(first["result"], json!(true), "a real solution: {first}");
    let second = c.answer(ids[1]).await;
    assert_eq!(error_of(&second).0, 22, "the same solution again: {second}");
    let share = settle(&mut c, &mut events, &address).await;
    // That was the chain's first share. Work built before it reached the chain (the clean
    // job of the block it made may be) builds on no share, and a node holding a chain
    // refuses a new chain's first share (PROTOCOL.md §10): take the work built on it.
    let mut tip = pool.node.chain.subscribe();
    tokio::time::timeout(WAIT, tip.wait_for(|s| s.tip == Some(share)))
        .await
        .expect("the share becomes the tip")
        .expect("the chain runs");
    c.drain(Duration::from_millis(500)).await;
    let (shares_after, payout) = pool
        .node
        .chain
        .call(move |c| {
            let entry = c
                .index()
                .get(&share)
                .map(|e| e.share.info.payout_script.clone());
            (c.index().len(), entry)
        })
        .await
        .unwrap();
    assert_eq!(
        shares_after,
        shares_before + 1,
        "one share more on the chain"
    );
    assert_eq!(payout, Some(script.clone()), "the share pays the miner");

    // Accepted with rolled version bits inside the mask.
    let job = c.latest();
    let version = job.version | (0x0000_2000 & c.version_mask);
    assert_ne!(version, job.version);
    let found = grind(&job, &c.extranonce1, [0, 0, 0, 4], version).await;
    let params = c.submit_params(&user, &job, &found, job.time);
    let answer = c.request("mining.submit", params).await;
    assert_eq!(answer["result"], json!(true), "a rolled solution: {answer}");
    let share = settle(&mut c, &mut events, &address).await;
    let rolled_version = pool
        .node
        .chain
        .call(move |c| c.index().get(&share).map(|e| e.share.header.version))
        .await
        .unwrap();
    assert_eq!(
        rolled_version,
        Some(version as i32),
        "the share keeps the rolled version"
    );

    // 21: a real solution on a job made stale by a new block (mined on litecoind directly).
    let stale_job = c.latest();
    let found = grind(&stale_job, &c.extranonce1, [0, 0, 0, 5], stale_job.version).await;
    let spare = pool.daemons.new_address("bech32").await.unwrap();
    let mined = pool.daemons.mine_blocks(1, &spare).await.unwrap();
    let new_tip = mined[0].clone();
    let fresh_job = c.wait_job(|j| j.prev_block_display() == new_tip).await;
    assert!(fresh_job.clean, "a new block makes a clean job");
    let params = c.submit_params(&user, &stale_job, &found, stale_job.time);
    let message = expect_error(&mut c, "mining.submit", params, 21).await;
    assert!(message.contains("stale"), "{message}");

    // The connection limit: `c` and two more are served, the next is closed at once.
    let _more = [
        TcpStream::connect(pool.node.stratum_addr()).await.unwrap(),
        TcpStream::connect(pool.node.stratum_addr()).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pool.node.stratum.connections(), MAX_CONNECTIONS);
    let mut refused = TcpStream::connect(pool.node.stratum_addr()).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, refused.read(&mut byte))
        .await
        .expect("the refused connection is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(pool.node.stratum.stats().refused_connections, 1);

    println!("node_stratum: {:?}", started.elapsed());
}
