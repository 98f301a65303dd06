//! `stratum-load`: a load generator for the Stratum server, and a test server to aim it at.
//!
//! - `stratum-load serve` runs the real [`StratumServer`] with a stub node (any username,
//!   a fixed difficulty so easy that every honest submission is accepted, a new job every
//!   few seconds whose coinbase carries the broadcast time) and prints its memory (VmRSS)
//!   and counters while it runs.
//! - `stratum-load run` opens N connections, subscribes and authorizes each, then submits
//!   at a given total rate for a while. It does not grind: the server still hashes every
//!   submission (that cost is what is measured). It prints submit-latency percentiles and
//!   how long each broadcast took to reach every connection (from the time stamp in the
//!   job's coinbase; both processes share the machine's clock).
//!
//! Loopback only: every run is bounded in connections and time and stops by itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use p2pool::stratum::{
    JobTemplate, Solution, StratumConfig, StratumServer, Username, VardiffConfig, WorkSource,
};
use ruint::aliases::U256;
use serde_json::{json, Value};
use share_chain::{Preset, Target};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

/// Marks coinbases made by `serve`, so `run` knows the time stamp after it is ours.
const STAMP_MARKER: &[u8; 8] = b"p2plload";
/// The fixed difficulty of `serve`: 2^-20 on the scrypt scale is the easiest target.
const SERVE_DIFFICULTY: f64 = 1.0 / 1_048_576.0;

#[derive(Parser)]
#[command(about = "Stratum load generator and test server (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Stratum server with a stub node.
    Serve {
        #[arg(long, default_value = "127.0.0.1:3333")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 20_000)]
        max_connections: usize,
        /// Seconds between jobs.
        #[arg(long, default_value_t = 5.0)]
        job_interval: f64,
        /// Seconds between status lines.
        #[arg(long, default_value_t = 5.0)]
        report_interval: f64,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 600.0)]
        duration: f64,
        /// Coinbase outputs in each job (coinb2 size grows ~34 bytes each).
        #[arg(long, default_value_t = 20)]
        outputs: usize,
        /// Worker threads of the runtime.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Connect, authorize and submit.
    Run {
        #[arg(long, default_value = "127.0.0.1:3333")]
        addr: SocketAddr,
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Total submissions per second over all connections (0: idle connections).
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Seconds of submitting (after all connections are up).
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// Connections opened at once.
        #[arg(long, default_value_t = 256)]
        connect_concurrency: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let nofile = rlimit::increase_nofile_limit(u64::MAX).context("raising the fd limit")?;
    let threads = match &cli.command {
        Command::Serve { threads, .. } | Command::Run { threads, .. } => *threads,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    println!("open file limit: {nofile}");
    match cli.command {
        Command::Serve {
            listen,
            max_connections,
            job_interval,
            report_interval,
            duration,
            outputs,
            ..
        } => runtime.block_on(serve(
            listen,
            max_connections,
            job_interval,
            report_interval,
            duration,
            outputs,
        )),
        Command::Run {
            addr,
            connections,
            rate,
            duration,
            connect_concurrency,
            ..
        } => runtime.block_on(run(addr, connections, rate, duration, connect_concurrency)),
    }
}

/// Resident memory of this process in KiB, from /proc/self/status.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// serve

#[derive(Default)]
struct LoadNode {
    solutions: AtomicU64,
}

impl WorkSource for LoadNode {
    type Identity = ();
    type Payload = ();

    fn validate_username(&self, _username: &Username) -> Result<(), String> {
        Ok(())
    }

    fn on_solution(&self, _solution: Solution<Self>) {
        self.solutions.fetch_add(1, Ordering::Relaxed);
    }
}

fn load_job(seq: u64, outputs: usize) -> JobTemplate<()> {
    let mut coinb1 = vec![1, 0, 0, 0, 1];
    coinb1.extend_from_slice(&[0; 32]);
    coinb1.extend_from_slice(&[0xff; 4]);
    coinb1.push(0x20);
    coinb1.extend_from_slice(STAMP_MARKER);
    coinb1.extend_from_slice(&seq.to_le_bytes());
    coinb1.extend_from_slice(&unix_nanos().to_le_bytes());
    let mut coinb2 = vec![0xff; 4];
    coinb2.push(outputs.min(250) as u8);
    for i in 0..outputs.min(250) {
        coinb2.extend_from_slice(&(1000 + i as u64).to_le_bytes());
        coinb2.extend_from_slice(&[0x19, 0x76, 0xa9, 0x14]);
        coinb2.extend_from_slice(&[i as u8; 20]);
        coinb2.extend_from_slice(&[0x88, 0xac]);
    }
    coinb2.extend_from_slice(&[0; 4]);
    let hard = Target::from_u256(U256::from(1u8) << 32);
    JobTemplate {
        // A new previous block every fourth job (the clean ones).
        prev_hash: [(seq.div_ceil(4) % 251) as u8; 32],
        coinb1,
        coinb2,
        merkle_branch: vec![[0x11; 32]; 8],
        version: 0x2000_0000,
        bits: 0x1e0f_fff0,
        time: (unix_nanos() / 1_000_000_000) as u32,
        share_target: hard,
        block_target: hard,
        aux_target: None,
        clean: seq % 4 == 1,
        payload: (),
    }
}

async fn serve(
    listen: SocketAddr,
    max_connections: usize,
    job_interval: f64,
    report_interval: f64,
    duration: f64,
    outputs: usize,
) -> Result<()> {
    let positive = |x: f64| x.is_finite() && x > 0.0 && x <= 86_400.0;
    if !(positive(job_interval) && positive(report_interval) && positive(duration)) {
        bail!("intervals and duration must be in (0, 86400] seconds");
    }
    let preset = Preset::builtin("litecoin-regtest")?;
    let config = StratumConfig {
        listen,
        max_connections,
        max_messages_per_sec: 10_000,
        handshake_timeout: Duration::from_secs(600),
        idle_timeout: None,
        vardiff: VardiffConfig {
            initial_difficulty: SERVE_DIFFICULTY,
            min_difficulty: SERVE_DIFFICULTY,
            max_difficulty: SERVE_DIFFICULTY,
            ..VardiffConfig::default()
        },
        ..StratumConfig::default()
    };
    let node = Arc::new(LoadNode::default());
    let rss_before = rss_kib();
    let server = StratumServer::bind(config, &preset.coin, node.clone()).await?;
    println!(
        "serving on {} (rss {} KiB before connections)",
        server.local_addr(),
        rss_before
    );
    let started = Instant::now();
    let mut seq = 0u64;
    let mut next_job = Instant::now();
    let mut next_report = Instant::now() + Duration::from_secs_f64(report_interval);
    let mut last_accepted = 0u64;
    let mut last_report = Instant::now();
    while started.elapsed().as_secs_f64() < duration {
        let now = Instant::now();
        if now >= next_job {
            seq += 1;
            server.broadcast(load_job(seq, outputs))?;
            next_job = now + Duration::from_secs_f64(job_interval);
        }
        if now >= next_report {
            let stats = server.stats();
            let rate =
                (stats.accepted - last_accepted) as f64 / last_report.elapsed().as_secs_f64();
            let rss = rss_kib();
            let per_conn = if stats.connections > 0 {
                (rss.saturating_sub(rss_before)) as f64 * 1024.0 / stats.connections as f64
            } else {
                0.0
            };
            println!(
                "t={:>5.1}s connections={} rss={} KiB ({:.0} B/connection above start) accepted={} ({:.0}/s) rejected={:?} jobs={}",
                started.elapsed().as_secs_f64(),
                stats.connections,
                rss,
                per_conn,
                stats.accepted,
                rate,
                stats.rejected,
                stats.jobs
            );
            last_accepted = stats.accepted;
            last_report = now;
            next_report = now + Duration::from_secs_f64(report_interval);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("serve: duration reached, stopping");
    server.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// run

struct RunState {
    submit_latency_us: Mutex<Histogram<u64>>,
    notify_latency_us: Mutex<Histogram<u64>>,
    /// job seq -> (connections reached, latest arrival latency in µs)
    jobs: Mutex<HashMap<u64, (usize, u64)>>,
    sent: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    ready: AtomicUsize,
    failed: AtomicUsize,
}

fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

async fn run(
    addr: SocketAddr,
    connections: usize,
    rate: f64,
    duration: f64,
    connect_concurrency: usize,
) -> Result<()> {
    let rate_ok = rate == 0.0 || (rate.is_finite() && rate >= 0.001);
    let duration_ok = duration.is_finite() && duration > 0.0 && duration <= 3600.0;
    if connections == 0 || !rate_ok || !duration_ok {
        bail!("need connections > 0, rate 0 or >= 0.001, and 0 < duration <= 3600");
    }
    let state = Arc::new(RunState {
        submit_latency_us: Mutex::new(histogram()?),
        notify_latency_us: Mutex::new(histogram()?),
        jobs: Mutex::new(HashMap::new()),
        sent: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    });
    let (go_tx, go_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(connect_concurrency.max(1)));
    // Each connection submits every `period`, with its phase spread over the period.
    let period = if rate > 0.0 {
        Some(Duration::from_secs_f64(connections as f64 / rate))
    } else {
        None
    };
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let phase = period.map(|p| p.mul_f64(i as f64 / connections as f64));
        tasks.push(tokio::spawn(connection(
            addr,
            i,
            state.clone(),
            gate.clone(),
            go_rx.clone(),
            stop_rx.clone(),
            period.zip(phase),
        )));
    }
    // Wait for every connection to be up (or failed), at most a minute.
    while state.ready.load(Ordering::Relaxed) + state.failed.load(Ordering::Relaxed) < connections
        && t0.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = state.ready.load(Ordering::Relaxed);
    println!(
        "connected and authorized {ready}/{connections} in {:.2}s ({} failed); client rss {} KiB",
        t0.elapsed().as_secs_f64(),
        state.failed.load(Ordering::Relaxed),
        rss_kib()
    );
    // Fan-out is measured only for jobs broadcast while every connection is listening.
    state
        .jobs
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clear();
    let _ = go_tx.send(true);
    let run_start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(duration)).await;
    let _ = stop_tx.send(true);
    let elapsed = run_start.elapsed().as_secs_f64();
    // Let answers in flight arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for t in &tasks {
        t.abort();
    }

    let sent = state.sent.load(Ordering::Relaxed);
    let accepted = state.accepted.load(Ordering::Relaxed);
    let rejected = state.rejected.load(Ordering::Relaxed);
    println!(
        "submits: sent {sent} ({:.0}/s), accepted {accepted}, rejected {rejected}, unanswered {}",
        sent as f64 / elapsed,
        sent.saturating_sub(accepted + rejected)
    );
    if let Ok(h) = state.submit_latency_us.lock() {
        if !h.is_empty() {
            println!(
                "submit latency ms: p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} (n={})",
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.9) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                h.max() as f64 / 1000.0,
                h.len()
            );
        }
    }
    if let (Ok(h), Ok(jobs)) = (state.notify_latency_us.lock(), state.jobs.lock()) {
        let mut full: Vec<(u64, usize, u64)> = jobs
            .iter()
            .map(|(seq, (n, max))| (*seq, *n, *max))
            .collect();
        full.sort();
        for (seq, n, max) in &full {
            println!(
                "job {seq}: reached {n}/{ready} connections, last after {:.1} ms",
                *max as f64 / 1000.0
            );
        }
        if !h.is_empty() {
            println!(
                "notify latency ms (all connections, jobs after start): p50 {:.2} p99 {:.2} max {:.2} (n={})",
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                h.max() as f64 / 1000.0,
                h.len()
            );
        }
    }
    println!("client rss {} KiB", rss_kib());
    Ok(())
}

/// What `run` needs of a `mining.notify` line.
struct NotifyFields {
    job_id: String,
    ntime: String,
    /// The broadcast time stamp, on jobs from `serve`: (job seq, unix nanos).
    stamp: Option<(u64, u64)>,
}

/// Reads a notify line's job id, coinb1 stamp and ntime by position: every string field of
/// `mining.notify` is plain hex, so splitting on quotes is exact. `None` for other lines.
fn notify_fields(line: &str) -> Option<NotifyFields> {
    let params = line
        .strip_prefix(r#"{"id":null,"method":"mining.notify","params":["#)?
        .trim_end();
    // Quoted strings in order: job id, prevhash, coinb1, coinb2, branch..., version, bits,
    // ntime; the last three are the last three quoted strings.
    let strings: Vec<&str> = params.split('"').skip(1).step_by(2).collect();
    let job_id = strings.first()?.to_string();
    let coinb1 = strings.get(2)?;
    let ntime = strings.get(strings.len().checked_sub(1)?)?.to_string();
    let stamp = stamp(&json!(["", "", coinb1]));
    Some(NotifyFields {
        job_id,
        ntime,
        stamp,
    })
}

/// The time stamp `serve` put in a notify's coinb1, if any: (job seq, unix nanos).
fn stamp(params: &Value) -> Option<(u64, u64)> {
    let coinb1 = hex::decode(params.get(2)?.as_str()?).ok()?;
    let at = coinb1
        .windows(STAMP_MARKER.len())
        .position(|w| w == STAMP_MARKER)?;
    let rest = coinb1.get(at + STAMP_MARKER.len()..)?;
    let seq = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let nanos = u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
    Some((seq, nanos))
}

async fn connection(
    addr: SocketAddr,
    index: usize,
    state: Arc<RunState>,
    gate: Arc<Semaphore>,
    mut go: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    schedule: Option<(Duration, Duration)>,
) {
    if let Err(e) = connection_inner(addr, index, &state, gate, &mut go, &mut stop, schedule).await
    {
        if state.ready.load(Ordering::Relaxed) == 0 || index < 3 {
            eprintln!("connection {index}: {e:#}");
        }
        state.failed.fetch_add(1, Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection_inner(
    addr: SocketAddr,
    index: usize,
    state: &RunState,
    gate: Arc<Semaphore>,
    go: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
    schedule: Option<(Duration, Duration)>,
) -> Result<()> {
    let permit = gate.acquire_owned().await?;
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let user = format!("rltc1qload{index}.w");
    w.write_all(
        format!(
            "{}\n{}\n",
            json!({"id": 1, "method": "mining.subscribe", "params": ["stratum-load/1"]}),
            json!({"id": 2, "method": "mining.authorize", "params": [user, "x"]})
        )
        .as_bytes(),
    )
    .await?;
    let mut job: Option<(String, String)> = None; // (job id, ntime)
    let mut authorized = false;
    while !(authorized && job.is_some()) {
        let line = lines
            .next_line()
            .await?
            .context("closed during handshake")?;
        let v: Value = serde_json::from_str(&line)?;
        if v["id"] == 2 {
            if v["result"] != true {
                bail!("authorize refused: {line}");
            }
            authorized = true;
        }
        if v["method"] == "mining.notify" {
            job = Some((
                v["params"][0].as_str().unwrap_or("0").to_string(),
                v["params"][7].as_str().unwrap_or("0").to_string(),
            ));
        }
    }
    drop(permit);
    state.ready.fetch_add(1, Ordering::Relaxed);

    let mut pending: HashMap<u64, Instant> = HashMap::new();
    let mut next_id = 3u64;
    let mut nonce = 0u32;
    let mut started = *go.borrow();
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
    let mut next_submit = far;
    if started {
        if let Some((_, phase)) = schedule {
            next_submit = tokio::time::Instant::now() + phase;
        }
    }
    let mut stopped = false;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let arrived = Instant::now();
                let arrived_unix = unix_nanos();
                let Some(line) = line? else { bail!("server closed the connection") };
                // Notifies are read without building a JSON tree: this process shares the
                // CPU with the server, and 10,000 parses of a 1.5 kB line would slow the
                // fan-out it measures. (The time was taken above, before any parsing.)
                if let Some(fields) = notify_fields(&line) {
                    job = Some((fields.job_id, fields.ntime));
                    if let (true, Some((seq, sent_at))) = (started && !stopped, fields.stamp) {
                        let latency = arrived_unix.saturating_sub(sent_at) / 1000;
                        if let Ok(mut h) = state.notify_latency_us.lock() {
                            let _ = h.record(latency.max(1));
                        }
                        if let Ok(mut jobs) = state.jobs.lock() {
                            let e = jobs.entry(seq).or_insert((0, 0));
                            e.0 += 1;
                            e.1 = e.1.max(latency);
                        }
                    }
                } else if let (v, Some(id)) = {
                    let v: Value = serde_json::from_str(&line)?;
                    let id = v["id"].as_u64();
                    (v, id)
                } {
                    if let Some(at) = pending.remove(&id) {
                        let us = arrived.duration_since(at).as_micros() as u64;
                        if let Ok(mut h) = state.submit_latency_us.lock() {
                            let _ = h.record(us.max(1));
                        }
                        if v["result"] == true {
                            state.accepted.fetch_add(1, Ordering::Relaxed);
                        } else {
                            state.rejected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            changed = go.changed(), if !started => {
                changed?;
                started = *go.borrow();
                if let (true, Some((_, phase))) = (started, schedule) {
                    next_submit = tokio::time::Instant::now() + phase;
                }
            }
            changed = stop.changed(), if !stopped => {
                changed?;
                stopped = *stop.borrow();
                next_submit = far;
            }
            _ = tokio::time::sleep_until(next_submit), if next_submit < far => {
                let Some((period, _)) = schedule else { continue };
                next_submit += period;
                if let Some((job_id, ntime)) = &job {
                    nonce = nonce.wrapping_add(1);
                    let id = next_id;
                    next_id += 1;
                    let msg = json!({"id": id, "method": "mining.submit", "params": [
                        user, job_id, "00000000", ntime, format!("{nonce:08x}")
                    ]});
                    pending.insert(id, Instant::now());
                    w.write_all(format!("{msg}\n").as_bytes()).await?;
                    state.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broadcast_stamp_survives_the_notify_encoding() {
        let before = unix_nanos();
        let job = load_job(7, 3);
        let params = json!([
            "1",
            "00",
            hex::encode(&job.coinb1),
            hex::encode(&job.coinb2)
        ]);
        let (seq, at) = stamp(&params).unwrap();
        assert_eq!(seq, 7);
        assert!(at >= before && at <= unix_nanos());
        assert!(stamp(&json!(["1", "00", "0011"])).is_none());
        // The quick notify reader agrees with the server's own encoding.
        let prepared = p2pool::stratum::Job::new(7, load_job(7, 3)).unwrap();
        let line = String::from_utf8(prepared.notify_line("1f", true)).unwrap();
        let fields = notify_fields(&line).unwrap();
        assert_eq!(fields.job_id, "1f");
        assert_eq!(fields.ntime, format!("{:08x}", job.time));
        assert_eq!(fields.stamp.map(|s| s.0), Some(7));
        assert!(notify_fields(r#"{"id":3,"result":true,"error":null}"#).is_none());
        // Clean jobs start a new block; the others keep the previous hash.
        assert!(job.clean == (7 % 4 == 1));
        assert_eq!(load_job(5, 0).prev_hash, load_job(8, 0).prev_hash);
        assert_ne!(load_job(4, 0).prev_hash, load_job(5, 0).prev_hash);
    }
}
