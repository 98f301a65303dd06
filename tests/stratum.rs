//! Stratum server against a real TCP client on 127.0.0.1.
//!
//! The client below speaks Stratum the way a miner does: it decodes `mining.notify`
//! (un-swapping the previous hash, concatenating the coinbase, folding the merkle branch),
//! grinds real scrypt hashes against the difficulty it was sent, and submits. The node side
//! is a stub [`WorkSource`] (this is the protocol layer; the node is tested elsewhere)
//! that accepts `rltc1…` addresses and records every solution.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p2pool::miner::MinerJob;
use p2pool::stratum::{
    Availability, InvalidSubmissionLimit, Job, JobTemplate, Personalized, Solution, StratumConfig,
    StratumServer, Username, VardiffConfig, WorkSource,
};
use ruint::aliases::U256;
use serde_json::{json, Value};
use share_chain::pow::pow_hash;
use share_chain::{PowAlgorithm, Preset, Target};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// The node stub.

#[derive(Default)]
struct Stub {
    solutions: Mutex<Vec<Solution<Stub>>>,
    /// How long `on_solution` takes (it runs on a verification thread).
    solution_delay: Duration,
}

impl WorkSource for Stub {
    type Identity = String;
    type Payload = u64;

    fn validate_username(&self, username: &Username) -> Result<String, String> {
        let a = &username.address;
        if a.starts_with("ltc1") || a.starts_with("tltc1") {
            return Err(format!("{a} is not a litecoin-regtest address"));
        }
        if !a.starts_with("rltc1") || !a.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("{a} is not a valid address"));
        }
        Ok(format!("payout:{a}"))
    }

    fn on_solution(&self, solution: Solution<Self>) {
        std::thread::sleep(self.solution_delay);
        self.solutions.lock().unwrap().push(solution);
    }
}

fn regtest() -> Preset {
    Preset::builtin("litecoin-regtest").unwrap()
}

fn base_config() -> StratumConfig {
    StratumConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        vardiff: VardiffConfig {
            // 2^-15 on the scrypt scale: about half of all hashes qualify.
            initial_difficulty: 2f64.powi(-15),
            min_difficulty: 2f64.powi(-20),
            max_difficulty: 1e9,
            // Out of the way unless a test is about vardiff.
            target_interval: Duration::from_secs(3600),
            retarget_interval: Duration::from_secs(3600),
            retarget_shares: 1_000_000,
            tolerance: 0.3,
            max_step: 4.0,
        },
        ..StratumConfig::default()
    }
}

async fn start(config: StratumConfig) -> (StratumServer<Stub>, Arc<Stub>) {
    start_with(config, Stub::default()).await
}

/// A server already serving one easy job (share and block targets any hash meets).
async fn start_serving(config: StratumConfig) -> (StratumServer<Stub>, Arc<Stub>) {
    let (server, stub) = start(config).await;
    server
        .broadcast(template(1, 0xaa, true, easy_share(), easy_block()))
        .unwrap();
    (server, stub)
}

async fn start_with(config: StratumConfig, stub: Stub) -> (StratumServer<Stub>, Arc<Stub>) {
    let stub = Arc::new(stub);
    let server = StratumServer::bind(config, &regtest().coin, stub.clone())
        .await
        .unwrap();
    (server, stub)
}

fn now_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// A quarter of all hashes are shares, a sixteenth are blocks.
fn easy_share() -> Target {
    Target::from_u256(U256::MAX >> 2)
}
fn easy_block() -> Target {
    Target::from_u256(U256::MAX >> 4)
}
/// Practically unreachable.
fn hard() -> Target {
    Target::from_u256(U256::from(1u8) << 32)
}

fn template(tag: u64, prev: u8, clean: bool, share: Target, block: Target) -> JobTemplate<u64> {
    let mut coinb1 = hex::decode(
        "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20",
    )
    .unwrap();
    coinb1.extend_from_slice(&tag.to_le_bytes());
    JobTemplate {
        prev_hash: [prev; 32],
        coinb1,
        coinb2: hex::decode("ffffffff0100f2052a010000001976a914000000000000000000000000000000000000000088ac00000000").unwrap(),
        merkle_branch: vec![[0x11; 32], [0x22; 32], [0x33; 32]],
        version: 0x2000_0000,
        bits: 0x207f_ffff,
        time: now_secs(),
        share_target: share,
        block_target: block,
        aux_target: None,
        clean,
        payload: tag,
    }
}

// ---------------------------------------------------------------------------------------
// The miner.

fn hash_f64(hash: &[u8; 32]) -> f64 {
    U256::from_le_bytes(*hash)
        .as_limbs()
        .iter()
        .enumerate()
        .map(|(i, &l)| l as f64 * 2f64.powi(64 * i as i32))
        .sum()
}

/// The miner's idea of the target of `difficulty` (scrypt scale: diff 1 = 0xffff << 224).
fn target_f64(difficulty: f64) -> f64 {
    65535.0 * 2f64.powi(224) / difficulty
}

/// A found nonce.
#[derive(Clone, Debug)]
struct Found {
    en2: [u8; 4],
    ntime: u32,
    nonce: u32,
    header: [u8; 80],
    hash: [u8; 32],
}

struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    notes: VecDeque<Value>,
    en1: Vec<u8>,
    difficulty: f64,
    jobs: Vec<MinerJob>,
    next_nonce: u32,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (r, w) = stream.into_split();
        Client {
            reader: BufReader::new(r),
            writer: w,
            next_id: 1,
            notes: VecDeque::new(),
            en1: Vec::new(),
            difficulty: 0.0,
            jobs: Vec::new(),
            next_nonce: 0,
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// Next line as JSON; None at EOF (or a reset).
    async fn next_line(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(TIMEOUT, self.reader.read_line(&mut line))
            .await
            .expect("server silent for too long")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        let v: Value = serde_json::from_str(&line).expect("server sent invalid JSON");
        if v.get("method").is_some() {
            self.observe(&v);
        }
        Some(v)
    }

    fn observe(&mut self, v: &Value) {
        match v["method"].as_str().unwrap() {
            "mining.set_difficulty" => self.difficulty = v["params"][0].as_f64().unwrap(),
            "mining.notify" => {
                let job = MinerJob::from_notify(&v["params"]).expect("a well-formed notify");
                if job.clean {
                    self.jobs.clear();
                }
                self.jobs.push(job);
            }
            "mining.set_extranonce" => {
                self.en1 = hex::decode(v["params"][0].as_str().unwrap()).unwrap()
            }
            other => panic!("unexpected notification {other}"),
        }
    }

    /// Sends a request and returns its response; notifications seen meanwhile are queued.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let line = format!(
            "{}\n",
            json!({"id": id, "method": method, "params": params})
        );
        self.send_raw(line.as_bytes()).await.unwrap();
        loop {
            let v = self.next_line().await.expect("connection closed");
            if v.get("method").is_some() {
                self.notes.push_back(v);
            } else if v["id"] == json!(id) {
                return v;
            }
        }
    }

    /// Waits for the next notification of `method`.
    async fn notification(&mut self, method: &str) -> Value {
        while let Some(v) = self.notes.pop_front() {
            if v["method"] == method {
                return v;
            }
        }
        loop {
            let v = self.next_line().await.expect("connection closed");
            if v["method"] == method {
                return v;
            }
        }
    }

    /// Subscribes and authorizes; returns once the first job is in.
    async fn handshake(&mut self, username: &str) {
        let sub = self
            .call("mining.subscribe", json!(["test-miner/1.0"]))
            .await;
        assert_eq!(sub["error"], Value::Null, "{sub}");
        self.en1 = hex::decode(sub["result"][1].as_str().unwrap()).unwrap();
        let auth = self.call("mining.authorize", json!([username, "x"])).await;
        assert_eq!(auth["result"], json!(true), "{auth}");
        self.notification("mining.notify").await;
    }

    fn job(&self) -> MinerJob {
        self.jobs.last().cloned().expect("no job yet")
    }

    /// Grinds the newest job until `want(hash)` holds.
    fn grind(&mut self, version: u32, want: impl Fn(&[u8; 32]) -> bool) -> Found {
        let ntime = self.job().time;
        self.grind_at(version, ntime, want)
    }

    /// [`Client::grind`] with a rolled `ntime`.
    fn grind_at(&mut self, version: u32, ntime: u32, want: impl Fn(&[u8; 32]) -> bool) -> Found {
        let job = self.job();
        let en2 = [0, 0, 0, 7];
        for _ in 0..100_000 {
            let nonce = self.next_nonce;
            self.next_nonce += 1;
            let header = job.header(&[&self.en1[..], &en2[..]].concat(), version, ntime, nonce);
            let hash = pow_hash(PowAlgorithm::Scrypt, &header);
            if want(&hash) {
                return Found {
                    en2,
                    ntime,
                    nonce,
                    header,
                    hash,
                };
            }
        }
        panic!("nothing found in 100000 hashes");
    }

    /// A hash that meets the session difficulty (with a margin for float rounding).
    fn grind_pseudo(&mut self, share: Target) -> Found {
        let t = target_f64(self.difficulty) * 0.999;
        let version = self.job().version;
        self.grind(version, move |h| hash_f64(h) < t && !share.is_met_by(h))
    }

    async fn submit(&mut self, user: &str, f: &Found, extra: Option<&str>) -> Value {
        let job = self.job();
        let mut params = vec![
            json!(user),
            json!(job.id),
            json!(hex::encode(f.en2)),
            json!(format!("{:08x}", f.ntime)),
            json!(format!("{:08x}", f.nonce)),
        ];
        if let Some(v) = extra {
            params.push(json!(v));
        }
        self.call("mining.submit", Value::Array(params)).await
    }

    /// Writes `mining.submit` requests for the newest job in one go (nonces `nonces`, ids
    /// from 1000 up), without waiting for answers.
    async fn pipeline_submits(&mut self, user: &str, nonces: std::ops::Range<u32>) -> Vec<u64> {
        let job = self.job();
        let mut bytes = Vec::new();
        let mut ids = Vec::new();
        for nonce in nonces {
            let id = 1000 + u64::from(nonce);
            ids.push(id);
            let params = json!([
                user,
                job.id,
                "00000000",
                format!("{:08x}", job.time),
                format!("{nonce:08x}")
            ]);
            bytes.extend_from_slice(
                format!(
                    "{}\n",
                    json!({"id": id, "method": "mining.submit", "params": params})
                )
                .as_bytes(),
            );
        }
        self.send_raw(&bytes).await.unwrap();
        ids
    }

    /// Reads until every id in `ids` is answered; the answers in the order of `ids`.
    async fn answers(&mut self, ids: &[u64]) -> Vec<Value> {
        let mut got = std::collections::HashMap::new();
        while got.len() < ids.len() {
            let v = self.next_line().await.expect("connection closed");
            if let Some(id) = v["id"].as_u64() {
                if ids.contains(&id) {
                    got.insert(id, v);
                }
            }
        }
        ids.iter().map(|id| got.remove(id).unwrap()).collect()
    }

    /// Whether the server closes the connection (reads until EOF, discarding lines).
    async fn closed_by_server(&mut self) -> bool {
        let mut buf = vec![0u8; 4096];
        loop {
            match tokio::time::timeout(TIMEOUT, self.reader.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn error_code(response: &Value) -> i64 {
    response["error"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error, got {response}"))
}

const USER: &str = "rltc1qminer0000.rig1";

// ---------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_pseudo_share_share_and_block() {
    let (server, stub) = start(base_config()).await;
    server
        .broadcast(template(1, 0xaa, true, easy_share(), easy_block()))
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;

    let sub = c.call("mining.subscribe", json!(["test-miner/1.0"])).await;
    let result = &sub["result"];
    assert_eq!(result[0][0][0], "mining.set_difficulty");
    assert_eq!(result[0][1][0], "mining.notify");
    assert_eq!(result[1].as_str().unwrap().len(), 8, "4-byte extranonce1");
    assert_eq!(result[2], 4, "extranonce2_size");
    c.en1 = hex::decode(result[1].as_str().unwrap()).unwrap();

    let conf = c
        .call(
            "mining.configure",
            json!([["version-rolling"], {"version-rolling.mask": "ffffffff", "version-rolling.min-bit-count": 2}]),
        )
        .await;
    assert_eq!(conf["result"]["version-rolling"], true);
    assert_eq!(conf["result"]["version-rolling.mask"], "1fffe000");

    let auth = c.call("mining.authorize", json!([USER, "x"])).await;
    assert_eq!(auth["result"], true);
    let diff = c.notification("mining.set_difficulty").await;
    assert_eq!(diff["params"][0].as_f64().unwrap(), 2f64.powi(-15));
    let notify = c.notification("mining.notify").await;
    assert_eq!(notify["params"][8], true, "first job is clean");
    assert_eq!(c.job().prev_block, [0xaa; 32]);

    // A pseudo-share: accepted, counted, not handed to the node.
    let f = c.grind_pseudo(easy_share());
    let r = c.submit(USER, &f, None).await;
    assert_eq!(r["result"], true, "{r}");
    assert!(stub.solutions.lock().unwrap().is_empty());

    // A share that is not a block.
    let f = c.grind(0x2000_0000, |h| {
        easy_share().is_met_by(h) && !easy_block().is_met_by(h)
    });
    let r = c.submit(USER, &f, None).await;
    assert_eq!(r["result"], true, "{r}");
    {
        let sols = stub.solutions.lock().unwrap();
        assert_eq!(sols.len(), 1);
        let s = &sols[0];
        assert!(s.meets_share_target && !s.meets_block_target);
        assert_eq!(s.header, f.header, "server rebuilt the miner's header");
        assert_eq!(s.pow_hash, f.hash);
        assert_eq!(*s.miner, "payout:rltc1qminer0000");
        assert_eq!(s.username, USER);
        assert_eq!(s.job.payload, 1);
        let job = c.job();
        let coinbase = [&job.coinb1[..], &c.en1[..], &f.en2[..], &job.coinb2[..]].concat();
        assert_eq!(s.coinbase, coinbase);
        assert_eq!(s.extranonce1.to_vec(), c.en1);
    }

    // A block (rolled version inside the mask).
    let f = c.grind(0x2000_6000, |h| easy_block().is_met_by(h));
    let r = c.submit(USER, &f, Some("00006000")).await;
    assert_eq!(r["result"], true, "{r}");
    {
        let sols = stub.solutions.lock().unwrap();
        assert_eq!(sols.len(), 2);
        assert!(sols[1].meets_block_target && sols[1].meets_share_target);
        assert_eq!(sols[1].version, 0x2000_6000);
        assert_eq!(sols[1].header, f.header);
    }

    let stats = server.stats();
    assert_eq!(stats.accepted, 3);
    assert_eq!(stats.shares, 2);
    assert_eq!(stats.blocks, 1);
    assert!((stats.accepted_difficulty - 3.0 * 2f64.powi(-15)).abs() < 1e-12);
    assert_eq!(stats.workers.len(), 1);
    assert_eq!(stats.workers[0].username, USER);
    assert_eq!(stats.workers[0].accepted, 3);
    assert_eq!(stats.connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_has_its_code_and_the_session_survives() {
    let (server, stub) = start(base_config()).await;
    server
        .broadcast(template(1, 0xaa, true, easy_share(), easy_block()))
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;

    // 25: submit before subscribing.
    let r = c
        .call(
            "mining.submit",
            json!([USER, "1", "00000000", "00000000", "00000000"]),
        )
        .await;
    assert_eq!(error_code(&r), 25, "{r}");

    c.handshake(USER).await;
    let f = c.grind_pseudo(easy_share());

    // 24: a worker this connection never authorized.
    let r = c.submit("rltc1qsomeoneelse", &f, None).await;
    assert_eq!(error_code(&r), 24, "{r}");

    // 21: unknown job id.
    let good_id = c.job().id.clone();
    c.jobs.last_mut().unwrap().id = "ffff".into();
    let r = c.submit(USER, &f, None).await;
    assert_eq!(error_code(&r), 21, "{r}");
    c.jobs.last_mut().unwrap().id = good_id;

    // 20: malformed fields.
    for (i, bad) in [
        (2, "0007"),
        (3, "123"),
        (4, "xyzxyzxy"),
        (2, "000000000007"),
    ] {
        let job = c.job();
        let mut p = vec![
            json!(USER),
            json!(job.id),
            json!(hex::encode(f.en2)),
            json!(format!("{:08x}", f.ntime)),
            json!(format!("{:08x}", f.nonce)),
        ];
        p[i] = json!(bad);
        let r = c.call("mining.submit", Value::Array(p)).await;
        assert_eq!(error_code(&r), 20, "{r}");
        assert!(r["error"][1].as_str().unwrap().contains("malformed"), "{r}");
    }
    let r = c.call("mining.submit", json!([USER, "1"])).await;
    assert_eq!(error_code(&r), 20, "{r}");

    // 20: ntime before the job's time, or too far ahead of the clock.
    for ntime in [f.ntime - 1, f.ntime + 7201] {
        let mut g = f.clone();
        g.ntime = ntime;
        let r = c.submit(USER, &g, None).await;
        assert_eq!(error_code(&r), 20, "{r}");
        assert!(r["error"][1].as_str().unwrap().contains("ntime"), "{r}");
    }

    // 20: version bits outside the mask (no rolling negotiated on this connection).
    let r = c.submit(USER, &f, Some("00006000")).await;
    assert_eq!(error_code(&r), 20, "{r}");
    assert!(r["error"][1].as_str().unwrap().contains("mask"), "{r}");

    // 23: low difficulty.
    let t = target_f64(c.difficulty) * 1.001;
    let low = c.grind(0x2000_0000, move |h| hash_f64(h) > t);
    let r = c.submit(USER, &low, None).await;
    assert_eq!(error_code(&r), 23, "{r}");

    // Accepted once, then 22: duplicate.
    let r = c.submit(USER, &f, None).await;
    assert_eq!(r["result"], true, "{r}");
    let r = c.submit(USER, &f, None).await;
    assert_eq!(error_code(&r), 22, "{r}");

    // 20: unknown method.
    let r = c.call("mining.get_transactions", json!([])).await;
    assert_eq!(error_code(&r), 20, "{r}");

    // 21: stale after a clean job (new block).
    let old_job = c.job();
    server
        .broadcast(template(2, 0xbb, true, easy_share(), easy_block()))
        .unwrap();
    c.notification("mining.notify").await;
    assert_ne!(c.job().id, old_job.id);
    let fresh = c.grind_pseudo(easy_share());
    c.jobs.push(old_job);
    let r = c.submit(USER, &fresh, None).await;
    assert_eq!(error_code(&r), 21, "{r}");
    c.jobs.pop();

    // The session still works.
    let r = c.submit(USER, &fresh, None).await;
    assert_eq!(r["result"], true, "{r}");
    assert!(stub.solutions.lock().unwrap().is_empty());

    let stats = server.stats();
    assert_eq!(stats.accepted, 2);
    for code in [20, 21, 22, 23, 24, 25] {
        assert!(
            stats.rejected.get(&code).copied().unwrap_or(0) >= 1,
            "{code}: {stats:?}"
        );
    }
    assert_eq!(stats.hostile_disconnects, 0);
}

/// The share chain refuses a share more than `max_future_secs` ahead of the node's clock:
/// Stratum's bound is the same, from the preset, so no miner is told "accepted" for a share
/// the chain then drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntime_is_bounded_by_the_clock_and_the_presets_max_future() {
    let preset = regtest();
    let max_future = preset.consensus.max_future_secs;
    let config = StratumConfig {
        vardiff: base_config().vardiff,
        ..StratumConfig::for_preset("127.0.0.1:0".parse().unwrap(), &preset)
    };
    assert_eq!(config.max_future_secs, max_future);
    let (server, _stub) = start(config).await;
    server
        .broadcast(template(1, 0xaa, true, hard(), hard()))
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.handshake(USER).await;
    let t = target_f64(c.difficulty) * 0.999;
    let version = c.job().version;

    // Past the bound (with a margin for the clock ticking between here and the server),
    // yet well inside the job's old two-hour roll.
    let ntime = now_secs() + max_future + 30;
    let f = c.grind_at(version, ntime, |h| hash_f64(h) < t);
    let r = c.submit(USER, &f, None).await;
    assert_eq!(error_code(&r), 20, "{r}");
    let msg = r["error"][1].as_str().unwrap();
    assert!(
        msg.contains("ntime") && msg.contains(&format!("more than {max_future} s ahead")),
        "{msg}"
    );

    // At the bound: accepted (the server's clock can only have moved on since).
    let ntime = now_secs() + max_future;
    let f = c.grind_at(version, ntime, |h| hash_f64(h) < t);
    let r = c.submit(USER, &f, None).await;
    assert_eq!(r["result"], true, "{r}");

    // Before the job's time: refused too.
    let ntime = c.job().time - 1;
    let f = c.grind_at(version, ntime, |h| hash_f64(h) < t);
    let r = c.submit(USER, &f, None).await;
    assert_eq!(error_code(&r), 20, "{r}");
    assert!(
        r["error"][1].as_str().unwrap().contains("before the job"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_wrong_network_addresses_are_refused_at_authorize() {
    let (server, _stub) = start(base_config()).await;
    server
        .broadcast(template(1, 0xaa, true, easy_share(), easy_block()))
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.call("mining.subscribe", json!([])).await;
    for (user, expect) in [
        ("ltc1qmainnetaddress.rig", "not a litecoin-regtest address"),
        ("notanaddress", "not a valid address"),
        ("rltc1qok+abc", "difficulty"),
        ("", "empty"),
    ] {
        let r = c.call("mining.authorize", json!([user, "x"])).await;
        assert_eq!(error_code(&r), 24, "{r}");
        let msg = r["error"][1].as_str().unwrap();
        assert!(msg.contains(expect), "{user}: {msg}");
        assert_eq!(r["result"], Value::Null);
    }
    // No work was sent to an unauthorized connection, and submitting is refused.
    assert!(c.jobs.is_empty());
    let r = c
        .call(
            "mining.submit",
            json!([
                "ltc1qmainnetaddress.rig",
                "1",
                "00000000",
                "00000000",
                "00000000"
            ]),
        )
        .await;
    assert_eq!(error_code(&r), 24, "{r}");
    // A good address on the same connection still works.
    let r = c.call("mining.authorize", json!([USER, "x"])).await;
    assert_eq!(r["result"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_rolling_is_limited_to_the_intersection_of_masks() {
    let (server, stub) = start(base_config()).await;
    server
        .broadcast(template(1, 0xaa, true, easy_share(), easy_block()))
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    let conf = c
        .call(
            "mining.configure",
            json!([["version-rolling", "some-future-extension"], {"version-rolling.mask": "00ffe000"}]),
        )
        .await;
    assert_eq!(conf["result"]["version-rolling.mask"], "00ffe000");
    assert_eq!(conf["result"]["some-future-extension"], false);
    c.handshake(USER).await;

    // Inside the negotiated mask, both spellings (bits only, whole version).
    let f = c.grind(0x2000_2000, |h| easy_share().is_met_by(h));
    let r = c.submit(USER, &f, Some("00002000")).await;
    assert_eq!(r["result"], true, "{r}");
    let f = c.grind(0x2040_0000, |h| easy_share().is_met_by(h));
    let r = c.submit(USER, &f, Some("20400000")).await;
    assert_eq!(r["result"], true, "{r}");
    {
        let sols = stub.solutions.lock().unwrap();
        assert_eq!(sols[0].version, 0x2000_2000);
        assert_eq!(sols[1].version, 0x2040_0000);
        assert_eq!(sols[1].header, f.header);
    }
    // In the server's mask but outside the miner's: refused.
    let f = c.grind(0x2100_0000, |_| true);
    let r = c.submit(USER, &f, Some("01000000")).await;
    assert_eq!(error_code(&r), 20, "{r}");
    // Outside both.
    let r = c.submit(USER, &f, Some("00000001")).await;
    assert_eq!(error_code(&r), 20, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vardiff_moves_toward_the_target_interval() {
    let mut config = base_config();
    config.vardiff.target_interval = Duration::from_millis(500);
    config.vardiff.retarget_interval = Duration::from_secs(2);
    config.vardiff.retarget_shares = 6;
    let (server, _stub) = start(config).await;
    // Hard share and block targets, so the session difficulty is what the miner gets.
    server
        .broadcast(template(1, 0xaa, true, hard(), hard()))
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.handshake(USER).await;
    let start = c.difficulty;
    assert_eq!(start, 2f64.powi(-15));

    // Six pseudo-shares at once: far too fast, so one step up (x4) and a fresh job.
    let jobs_before = c.jobs.len();
    for _ in 0..6 {
        let f = c.grind_pseudo(hard());
        let r = c.submit(USER, &f, None).await;
        assert_eq!(r["result"], true, "{r}");
    }
    let d = c.notification("mining.set_difficulty").await;
    let raised = d["params"][0].as_f64().unwrap();
    assert_eq!(raised, start * 4.0);
    c.notification("mining.notify").await;
    assert!(
        c.jobs.len() > jobs_before,
        "new job id at the new difficulty"
    );
    assert!(!c.job().clean, "a difficulty change does not discard work");

    // Then silence: after the retarget interval it comes down again (with a fresh job).
    let silent_from = std::time::Instant::now();
    let d = c.notification("mining.set_difficulty").await;
    let lowered = d["params"][0].as_f64().unwrap();
    assert_eq!(lowered, raised / 4.0);
    assert!(silent_from.elapsed() >= Duration::from_millis(1500));
    c.notification("mining.notify").await;

    // A share found at the raised difficulty on the raised job's id is still accepted.
    let raised_job = c.jobs[c.jobs.len() - 2].clone();
    let fresh_job = c.jobs.pop().unwrap();
    c.jobs.push(raised_job);
    let t = target_f64(raised) * 0.999;
    let f = c.grind(0x2000_0000, move |h| hash_f64(h) < t);
    assert_eq!(c.submit(USER, &f, None).await["result"], true);
    c.jobs.push(fresh_job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_difficulty_from_username_and_suggest_with_a_floor() {
    let mut config = base_config();
    config.vardiff.retarget_shares = 2;
    let (server, _stub) = start(config).await;
    server
        .broadcast(template(1, 0xaa, true, hard(), hard()))
        .unwrap();

    let mut c = Client::connect(server.local_addr()).await;
    c.handshake("rltc1qfixed.rig+0.0001").await;
    assert_eq!(c.difficulty, 0.0001);
    // Fixed: fast submissions do not move it.
    for _ in 0..3 {
        let f = c.grind_pseudo(hard());
        let r = c.submit("rltc1qfixed.rig+0.0001", &f, None).await;
        assert_eq!(r["result"], true, "{r}");
    }
    // A round trip so any set_difficulty would have arrived.
    c.call("mining.extranonce.subscribe", json!([])).await;
    assert_eq!(c.difficulty, 0.0001);
    assert!(c.notes.is_empty());

    // suggest_difficulty below the floor is raised to it.
    let mut c = Client::connect(server.local_addr()).await;
    let r = c.call("mining.suggest_difficulty", json!([1e-12])).await;
    assert_eq!(r["result"], true);
    c.handshake(USER).await;
    assert_eq!(c.difficulty, 2f64.powi(-20));
    let r = c.call("mining.suggest_difficulty", json!([0.5])).await;
    assert_eq!(r["result"], true);
    let d = c.notification("mining.set_difficulty").await;
    assert_eq!(d["params"][0], 0.5);
    let r = c.call("mining.suggest_difficulty", json!(["nope"])).await;
    assert_eq!(error_code(&r), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_difficulty_is_capped_at_an_easier_share_target() {
    let mut config = base_config();
    config.vardiff.initial_difficulty = 1.0;
    let (server, stub) = start(config).await;
    server
        .broadcast(template(1, 0xaa, true, easy_share(), hard()))
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.handshake(USER).await;
    // Difficulty 1 would hide shares; the miner is given the share difficulty instead.
    let expected = server.scale().difficulty(easy_share());
    assert!(
        (c.difficulty / expected - 1.0).abs() < 1e-12,
        "{}",
        c.difficulty
    );
    let f = c.grind(0x2000_0000, |h| easy_share().is_met_by(h));
    let r = c.submit(USER, &f, None).await;
    assert_eq!(r["result"], true, "{r}");
    assert_eq!(stub.solutions.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_jobs_reach_every_session() {
    let (server, _stub) = start(base_config()).await;
    server
        .broadcast(template(1, 0xaa, true, easy_share(), easy_block()))
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut c = Client::connect(server.local_addr()).await;
        c.handshake(&format!("rltc1qminer.rig{i}")).await;
        clients.push(c);
    }
    let en1s: std::collections::HashSet<Vec<u8>> = clients.iter().map(|c| c.en1.clone()).collect();
    assert_eq!(en1s.len(), 5, "extranonce1 unique per connection");

    // Same block, new job: not clean.
    server
        .broadcast(template(2, 0xaa, false, easy_share(), easy_block()))
        .unwrap();
    for c in clients.iter_mut() {
        let n = c.notification("mining.notify").await;
        assert_eq!(n["params"][8], false);
    }
    // New block: clean everywhere.
    server
        .broadcast(template(3, 0xbb, true, easy_share(), easy_block()))
        .unwrap();
    for c in clients.iter_mut() {
        let n = c.notification("mining.notify").await;
        assert_eq!(n["params"][8], true);
        assert_eq!(c.job().prev_block, [0xbb; 32]);
    }
    // A new previous hash is a clean job even if the template forgot to say so.
    server
        .broadcast(template(4, 0xcc, false, easy_share(), easy_block()))
        .unwrap();
    for c in clients.iter_mut() {
        let n = c.notification("mining.notify").await;
        assert_eq!(n["params"][8], true);
    }
    assert_eq!(server.stats().jobs, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_closes_only_that_connection() {
    let mut config = base_config();
    config.max_messages_per_sec = 50;
    let (server, _stub) = start_serving(config).await;
    let mut good = Client::connect(server.local_addr()).await;
    good.handshake(USER).await;

    let long_line = vec![b'a'; 20 * 1024];
    let mut flood = Vec::new();
    for i in 0..200 {
        flood.extend_from_slice(
            format!("{{\"id\":{i},\"method\":\"mining.extranonce.subscribe\",\"params\":[]}}\n")
                .as_bytes(),
        );
    }
    let tls_hello = hex::decode("160301020001000200030379").unwrap();
    // (what, bytes, after a normal start?)
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage JSON", b"{this is not json}\n".to_vec(), true),
        ("not an object", b"[1,2,3]\n".to_vec(), false),
        ("TLS ClientHello", tls_hello, false),
        (
            "HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        ("over-long line", long_line, true),
        ("flood", flood, true),
    ];
    for (i, (what, bytes, started)) in cases.into_iter().enumerate() {
        let mut bad = Client::connect(server.local_addr()).await;
        if started {
            bad.handshake(&format!("rltc1qbad.w{i}")).await;
        }
        let _ = bad.send_raw(&bytes).await;
        assert!(
            bad.closed_by_server().await,
            "{what}: connection stayed open"
        );

        // The good miner is undisturbed.
        let f = good.grind_pseudo(easy_share());
        let r = good.submit(USER, &f, None).await;
        assert_eq!(r["result"], true, "after {what}: {r}");
    }
    assert_eq!(server.stats().hostile_disconnects, 6);
    server
        .broadcast(template(2, 0xbb, true, easy_share(), easy_block()))
        .unwrap();
    let n = good.notification("mining.notify").await;
    assert_eq!(n["params"][8], true);
    assert_eq!(server.connections(), 1);
}

/// Junk submissions cost the connection that sends them: served at full speed within the
/// burst, then slowed, then closed (counted and logged); stale submissions after a new
/// block and other connections are not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_submissions_slow_then_close_their_connection() {
    let mut config = base_config();
    config.invalid_submissions = InvalidSubmissionLimit {
        burst: 5,
        forgiven_per_sec: 0,
        slowdown: Duration::from_millis(400),
    };
    let (server, _stub) = start_serving(config).await;
    let mut honest = Client::connect(server.local_addr()).await;
    honest.handshake(USER).await;
    let mut junk = Client::connect(server.local_addr()).await;
    junk.handshake("rltc1qjunk.rig").await;

    // An honest miner after a new block: thirty submissions on the stale job, then work.
    let stale_job = honest.job();
    server
        .broadcast(template(2, 0xbb, true, easy_share(), easy_block()))
        .unwrap();
    honest.notification("mining.notify").await;
    junk.notification("mining.notify").await;
    let fresh = honest.job();
    honest.jobs.push(stale_job);
    let ids = honest.pipeline_submits(USER, 0..30).await;
    let started = std::time::Instant::now();
    for r in honest.answers(&ids).await {
        assert_eq!(error_code(&r), 21, "{r}");
        assert!(r["error"][1].as_str().unwrap().contains("stale"), "{r}");
    }
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "stale is not slowed"
    );
    honest.jobs.push(fresh);
    let f = honest.grind_pseudo(easy_share());
    assert_eq!(honest.submit(USER, &f, None).await["result"], true);

    // Junk: a low-difficulty share, then job ids never sent.
    let t = target_f64(junk.difficulty) * 1.001;
    let low = junk.grind(0x2000_0000, move |h| hash_f64(h) > t);
    let r = junk.submit("rltc1qjunk.rig", &low, None).await;
    assert_eq!(error_code(&r), 23, "{r}");
    let unknown = |c: &mut Client, n: u32| {
        json!([
            "rltc1qjunk.rig",
            format!("{:x}", 0x1000 + n),
            "00000000",
            format!("{:08x}", c.job().time),
            "00000000"
        ])
    };
    // Four more within the burst: answered at once.
    for n in 0..4 {
        let p = unknown(&mut junk, n);
        let started = std::time::Instant::now();
        let r = junk.call("mining.submit", p).await;
        assert_eq!(error_code(&r), 21, "{r}");
        assert!(r["error"][1].as_str().unwrap().contains("unknown"), "{r}");
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "not slowed yet"
        );
    }
    assert_eq!(server.stats().slowed_connections, 0);
    // The sixth spends the credit: the connection is slowed from then on.
    let p = unknown(&mut junk, 4);
    let r = junk.call("mining.submit", p).await;
    assert_eq!(error_code(&r), 21, "{r}");
    assert_eq!(server.stats().slowed_connections, 1);
    let p = unknown(&mut junk, 5);
    let started = std::time::Instant::now();
    let r = junk.call("mining.submit", p).await;
    assert_eq!(error_code(&r), 21, "{r}");
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "slowed: answered after {:?}",
        started.elapsed()
    );
    // The honest miner meanwhile is served as usual.
    let started = std::time::Instant::now();
    let f = honest.grind_pseudo(easy_share());
    assert_eq!(honest.submit(USER, &f, None).await["result"], true);
    assert!(started.elapsed() < Duration::from_millis(350));
    // Owing a whole burst: closed.
    let mut bytes = Vec::new();
    for n in 6..12 {
        let line =
            json!({"id": 50 + n, "method": "mining.submit", "params": unknown(&mut junk, n)});
        bytes.extend_from_slice(format!("{line}\n").as_bytes());
    }
    let _ = junk.send_raw(&bytes).await;
    assert!(junk.closed_by_server().await, "junk connection stayed open");
    let stats = server.stats();
    assert_eq!(stats.invalid_disconnects, 1, "{stats:?}");
    assert_eq!(stats.hostile_disconnects, 1, "{stats:?}");
    assert_eq!(stats.slowed_connections, 1, "{stats:?}");
    assert_eq!(server.connections(), 1);
    let f = honest.grind_pseudo(easy_share());
    assert_eq!(honest.submit(USER, &f, None).await["result"], true);
}

/// The verification work queued at once is bounded for the whole server (a few batches per
/// thread), whatever the number of connections: a flood of submissions waits for slots,
/// every one is still answered, and other connections are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_queue_is_bounded_server_wide() {
    let mut config = base_config();
    config.verify_threads = 1;
    config.verify_queue_per_thread = 4;
    config.verify_wait = Duration::from_secs(60);
    let stub = Stub {
        // Every submission is a share that takes the (only) verification thread 10 ms.
        solution_delay: Duration::from_millis(10),
        ..Stub::default()
    };
    let (server, stub) = start_with(config, stub).await;
    assert_eq!(server.stats().verify_capacity, 4);
    server
        .broadcast(template(1, 0xaa, true, Target::MAX, hard()))
        .unwrap();
    let mut flooders = Vec::new();
    let mut all_ids = Vec::new();
    for i in 0..10 {
        let user = format!("rltc1qflood.w{i}");
        let mut c = Client::connect(server.local_addr()).await;
        c.handshake(&user).await;
        let ids = c.pipeline_submits(&user, 0..16).await;
        flooders.push(c);
        all_ids.push(ids);
    }
    // 160 submissions of 10 ms each: the flood lasts over a second. Meanwhile a new miner
    // is answered at once (its reads are not held up by anyone's queue).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let mut other = Client::connect(server.local_addr()).await;
    other.handshake(USER).await;
    let r = other
        .call("mining.suggest_difficulty", json!([0.001]))
        .await;
    assert_eq!(r["result"], true);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(500),
        "a new miner waited {waited:?}"
    );
    assert!(
        stub.solutions.lock().unwrap().len() < 150,
        "the flood was over before the check"
    );

    for (c, ids) in flooders.iter_mut().zip(&all_ids) {
        for r in c.answers(ids).await {
            assert_eq!(r["result"], true, "{r}");
        }
    }
    let stats = server.stats();
    assert_eq!(stats.accepted, 160);
    assert!(
        stats.verify_queue_peak <= 4,
        "at most the capacity waits for the pool: peak {}",
        stats.verify_queue_peak
    );
    assert_eq!(stats.slowed_connections, 0);
}

/// A submission that cannot get a verification slot in time is answered "busy", which the
/// miner is not charged for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_verification_queue_answers_busy_without_charging_the_miner() {
    let mut config = base_config();
    config.verify_threads = 1;
    config.verify_queue_per_thread = 1;
    config.verify_wait = Duration::from_millis(100);
    config.invalid_submissions.burst = 1;
    let stub = Stub {
        solution_delay: Duration::from_millis(600),
        ..Stub::default()
    };
    let (server, _stub) = start_with(config, stub).await;
    server
        .broadcast(template(1, 0xaa, true, Target::MAX, hard()))
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.handshake(USER).await;
    let ids = c.pipeline_submits(USER, 0..4).await;
    let answers = c.answers(&ids).await;
    assert_eq!(answers[0]["result"], true, "{}", answers[0]);
    for r in &answers[1..] {
        assert_eq!(error_code(r), 20, "{r}");
        assert!(r["error"][1].as_str().unwrap().contains("busy"), "{r}");
    }
    let stats = server.stats();
    assert_eq!(stats.slowed_connections, 0, "{stats:?}");
    assert_eq!(stats.rejected.get(&20), Some(&3), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_bound_and_handshake_timeout() {
    let mut config = base_config();
    config.max_connections = 2;
    config.handshake_timeout = Duration::from_millis(500);
    let (server, _stub) = start_serving(config).await;
    let mut a = Client::connect(server.local_addr()).await;
    a.handshake(USER).await;
    let mut idle = Client::connect(server.local_addr()).await;
    // Let the server register the second connection before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = Client::connect(server.local_addr()).await;
    assert!(refused.closed_by_server().await, "third connection refused");
    assert_eq!(server.stats().refused_connections, 1);
    // The idle one never authorizes: closed after the handshake timeout.
    assert!(idle.closed_by_server().await);
    // The miner is still served.
    let f = a.grind_pseudo(easy_share());
    assert_eq!(a.submit(USER, &f, None).await["result"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_extranonce_reaches_subscribed_miners() {
    let (server, stub) = start(base_config()).await;
    server
        .broadcast(template(1, 0xaa, true, easy_share(), easy_block()))
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    let r = c.call("mining.extranonce.subscribe", json!([])).await;
    assert_eq!(r["result"], true);
    c.handshake(USER).await;
    let mut other = Client::connect(server.local_addr()).await;
    other.handshake("rltc1qother").await;
    let old = c.en1.clone();

    server.renew_extranonces();
    c.notification("mining.set_extranonce").await;
    assert_ne!(c.en1, old);
    c.notification("mining.notify").await;
    let f = c.grind(0x2000_0000, |h| easy_share().is_met_by(h));
    assert_eq!(c.submit(USER, &f, None).await["result"], true);
    assert_eq!(
        stub.solutions.lock().unwrap()[0].extranonce1.to_vec(),
        c.en1
    );

    // The other miner did not subscribe: it keeps its extranonce and gets nothing.
    let en1 = other.en1.clone();
    let f = other.grind_pseudo(easy_share());
    assert_eq!(other.submit("rltc1qother", &f, None).await["result"], true);
    assert!(other.notes.is_empty());
    assert_eq!(other.en1, en1);
}

// ---------------------------------------------------------------------------------------
// Availability: a paused server refuses new miners and lets connected ones go.

fn paused(reason: &str) -> Availability {
    Availability::Paused {
        reason: reason.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_refuses_new_miners_and_closes_connected_ones_after_the_grace() {
    let mut config = base_config();
    config.pause_grace = Duration::from_millis(800);
    let (server, _stub) = start_serving(config).await;
    let mut miner = Client::connect(server.local_addr()).await;
    miner.handshake(USER).await;

    let reason = "litecoind: unreachable (stopped)";
    server.set_availability(paused(reason));
    assert_eq!(server.availability(), paused(reason));

    // A new connection is refused at subscribe, with the reason, and closed.
    let mut late = Client::connect(server.local_addr()).await;
    let sub = late
        .call("mining.subscribe", json!(["test-miner/1.0"]))
        .await;
    assert_eq!(sub["result"], Value::Null, "{sub}");
    assert_eq!(sub["error"][0], 20, "{sub}");
    let message = sub["error"][1].as_str().unwrap();
    assert!(message.contains(reason), "{message}");
    assert!(
        late.closed_by_server().await,
        "refused connection stays open"
    );
    // So is one that authorizes first.
    let mut late = Client::connect(server.local_addr()).await;
    let auth = late.call("mining.authorize", json!([USER, "x"])).await;
    assert_eq!(auth["error"][0], 20, "{auth}");
    assert!(late.closed_by_server().await);

    // The connected miner keeps its job during the grace period ...
    let f = miner.grind_pseudo(easy_share());
    assert_eq!(miner.submit(USER, &f, None).await["result"], true);
    // ... and is closed after it, without a new job.
    let paused_at = std::time::Instant::now();
    assert!(miner.closed_by_server().await, "miner kept past the grace");
    assert!(paused_at.elapsed() < Duration::from_secs(5));
    assert!(
        miner.notes.iter().all(|n| n["method"] != "mining.notify"),
        "no work while paused: {:?}",
        miner.notes
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.connections(), 0);
    assert_eq!(server.stats().hostile_disconnects, 0);

    // Resumed with fresh work: miners are served again, with that work only.
    server
        .broadcast(template(2, 0xbb, true, easy_share(), easy_block()))
        .unwrap();
    server.set_availability(Availability::Serving);
    let mut back = Client::connect(server.local_addr()).await;
    back.handshake(USER).await;
    assert_eq!(back.job().prev_block, [0xbb; 32]);
    let f = back.grind_pseudo(easy_share());
    assert_eq!(back.submit(USER, &f, None).await["result"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_pause_keeps_connected_miners() {
    let mut config = base_config();
    config.pause_grace = Duration::from_millis(500);
    let (server, _stub) = start_serving(config).await;
    let mut miner = Client::connect(server.local_addr()).await;
    miner.handshake(USER).await;

    server.set_availability(paused("litecoind: restarting"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    server
        .broadcast(template(2, 0xbb, true, easy_share(), easy_block()))
        .unwrap();
    server.set_availability(Availability::Serving);
    let n = miner.notification("mining.notify").await;
    assert_eq!(n["params"][8], true);
    // Well past the grace: still connected and served.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let f = miner.grind_pseudo(easy_share());
    assert_eq!(miner.submit(USER, &f, None).await["result"], true);
    assert_eq!(server.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_paused_serves_nobody_until_resumed() {
    let mut config = base_config();
    config.availability = paused("litecoind: waiting for its first answer");
    let (server, _stub) = start(config).await;
    let mut early = Client::connect(server.local_addr()).await;
    let sub = early.call("mining.subscribe", json!(["m/1"])).await;
    assert!(
        sub["error"][1]
            .as_str()
            .unwrap()
            .contains("waiting for its first answer"),
        "{sub}"
    );
    assert!(early.closed_by_server().await);
    server
        .broadcast(template(1, 0xaa, true, easy_share(), easy_block()))
        .unwrap();
    server.set_availability(Availability::Serving);
    let mut miner = Client::connect(server.local_addr()).await;
    miner.handshake(USER).await;
}

// ---------------------------------------------------------------------------------------
// Jobs personalized off the event loop.

/// Pays each miner with a job built later (a delay stands in for the chain thread).
struct Slow {
    delay: Duration,
}

impl WorkSource for Slow {
    type Identity = String;
    type Payload = u64;

    fn validate_username(&self, username: &Username) -> Result<String, String> {
        Ok(username.address.clone())
    }

    fn on_solution(&self, _solution: Solution<Self>) {}

    fn personalize(&self, job: &Arc<Job<u64>>, miner: &String) -> Personalized<u64> {
        let delay = self.delay;
        let mut template = (*job.template).clone();
        // The miner's own coinbase: its name at the end of coinb1.
        template.coinb1.extend_from_slice(miner.as_bytes());
        let seq = job.seq;
        Personalized::Later(Box::pin(async move {
            tokio::time::sleep(delay).await;
            Job::new(seq, template).ok().map(Arc::new)
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_built_later_reach_the_miner_and_keep_their_clean_flag() {
    let work = Arc::new(Slow {
        delay: Duration::from_millis(150),
    });
    let server = StratumServer::bind(base_config(), &regtest().coin, work)
        .await
        .unwrap();
    server
        .broadcast(template(1, 0xaa, true, easy_share(), easy_block()))
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.handshake(USER).await;
    assert!(
        c.job().coinb1.ends_with(b"rltc1qminer0000"),
        "the miner's own job"
    );
    let f = c.grind_pseudo(easy_share());
    assert_eq!(c.submit(USER, &f, None).await["result"], true);

    // A clean job superseded by a dirty one before it was built: the miner still gets a
    // clean job (the older work is useless), and only the newest.
    server
        .broadcast(template(2, 0xbb, true, easy_share(), easy_block()))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    server
        .broadcast(template(3, 0xbb, false, easy_share(), easy_block()))
        .unwrap();
    let n = c.notification("mining.notify").await;
    assert_eq!(n["params"][8], true, "{n}");
    assert_eq!(c.job().prev_block, [0xbb; 32]);
    let tag: [u8; 8] = 3u64.to_le_bytes();
    assert!(
        c.job().coinb1.windows(8).any(|w| w == tag),
        "the newest job is sent"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        c.notes.iter().all(|n| n["method"] != "mining.notify"),
        "the superseded job is never sent"
    );
}
