//! A small CPU miner that speaks Stratum v1, for the devnet and the end-to-end tests.
//!
//! It is a real miner, not a shortcut into the node: it connects over TCP, subscribes,
//! authorizes with an address, decodes `mining.notify`, grinds scrypt on its own threads
//! and submits what meets the difficulty it was given. Anything the server sends that it
//! does not understand ends the connection with an error rather than a panic.
//!
//! Like a real miner it rides out outages: when the pool closes the connection or refuses
//! it for now (a paused node), it reconnects with a short backoff, so a devnet or a test
//! keeps mining across a litecoind restart. Only a refused username ends it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use share_chain::hash::sha256d;
use share_chain::merkle::merkle_root_from_branch;
use share_chain::pow::pow_hash;
use share_chain::{BlockHeader, PowAlgorithm, Target};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::stratum::DifficultyScale;

/// How to mine.
#[derive(Clone, Debug)]
pub struct MinerConfig {
    pub server: SocketAddr,
    /// `ADDRESS[.worker][+difficulty]`.
    pub username: String,
    pub threads: usize,
    pub pow: PowAlgorithm,
    /// 65536 for scrypt miners (see `PowAlgorithm::stratum_difficulty_multiplier`).
    pub difficulty_multiplier: u32,
}

/// What the miner has done so far.
#[derive(Debug, Default)]
pub struct MinerStats {
    pub hashes: AtomicU64,
    pub submitted: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    /// Sessions that got work (subscribed, authorized and sent a job).
    pub sessions: AtomicU64,
    /// Connections lost or refused (each followed by a reconnect).
    pub disconnects: AtomicU64,
}

#[derive(Debug, Error)]
pub enum MinerError {
    #[error("cannot reach the stratum server: {0}")]
    Io(#[from] std::io::Error),
    #[error("the stratum server refused {what}: {detail}")]
    Refused { what: &'static str, detail: String },
    #[error("unexpected message from the stratum server: {0}")]
    Protocol(String),
    #[error("the stratum server closed the connection")]
    Closed,
    #[error("the stratum server has no work for now: {0}")]
    Unavailable(String),
}

impl MinerError {
    /// Whether reconnecting cannot help (the pool refused this username, or speaks
    /// something this miner does not understand).
    pub fn is_fatal(&self) -> bool {
        matches!(self, MinerError::Refused { .. } | MinerError::Protocol(_))
    }
}

/// First wait before reconnecting; it doubles per failed attempt up to the maximum.
const RECONNECT_MIN: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// The Stratum error code of an unauthorized worker or invalid username.
const CODE_UNAUTHORIZED: i64 = 24;

/// A job as a miner decodes it from `mining.notify` (also used by the Stratum tests).
#[derive(Clone, Debug)]
pub struct MinerJob {
    pub id: String,
    /// Internal byte order, as in the header.
    pub prev_block: [u8; 32],
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub branch: Vec<[u8; 32]>,
    pub version: u32,
    pub bits: u32,
    pub time: u32,
    pub clean: bool,
}

fn bad(what: &str) -> MinerError {
    MinerError::Protocol(what.to_string())
}

impl MinerJob {
    /// Decodes `mining.notify` params; anything malformed is an error, never a panic.
    pub fn from_notify(params: &Value) -> Result<MinerJob, MinerError> {
        let p = params.as_array().ok_or_else(|| bad("notify params"))?;
        let text = |i: usize| {
            p.get(i)
                .and_then(Value::as_str)
                .ok_or_else(|| bad("notify field"))
        };
        let hex32 = |s: &str| -> Result<[u8; 32], MinerError> {
            let mut out = [0u8; 32];
            hex::decode_to_slice(s, &mut out).map_err(|_| bad("notify hash"))?;
            Ok(out)
        };
        let word = |s: &str| u32::from_str_radix(s, 16).map_err(|_| bad("notify word"));
        // Stratum sends the previous hash with each 4-byte word reversed.
        let mut prev_block = hex32(text(1)?)?;
        for w in prev_block.chunks_exact_mut(4) {
            w.reverse();
        }
        let branch = p
            .get(4)
            .and_then(Value::as_array)
            .ok_or_else(|| bad("notify branch"))?
            .iter()
            .map(|b| hex32(b.as_str().unwrap_or_default()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MinerJob {
            id: text(0)?.to_string(),
            prev_block,
            coinb1: hex::decode(text(2)?).map_err(|_| bad("coinb1"))?,
            coinb2: hex::decode(text(3)?).map_err(|_| bad("coinb2"))?,
            branch,
            version: word(text(5)?)?,
            bits: word(text(6)?)?,
            time: word(text(7)?)?,
            clean: p
                .get(8)
                .and_then(Value::as_bool)
                .ok_or_else(|| bad("clean_jobs"))?,
        })
    }

    /// The header for `extranonce` (extranonce1 || extranonce2), with the given version,
    /// time and nonce.
    pub fn header(&self, extranonce: &[u8], version: u32, ntime: u32, nonce: u32) -> [u8; 80] {
        let coinbase = [&self.coinb1[..], extranonce, &self.coinb2[..]].concat();
        BlockHeader {
            version: version as i32,
            prev_block: self.prev_block,
            merkle_root: merkle_root_from_branch(sha256d(&coinbase), &self.branch),
            time: ntime,
            bits: self.bits,
            nonce,
        }
        .to_bytes()
    }
}

/// The work the grinding threads share.
#[derive(Default)]
struct Shared {
    job: Mutex<Option<(Arc<MinerJob>, Target)>>,
    generation: AtomicU64,
    stop: AtomicBool,
}

struct Found {
    job_id: String,
    extranonce2: [u8; 4],
    ntime: u32,
    nonce: u32,
}

/// Mines until `stop` is set, reconnecting whenever the pool goes away or refuses work for
/// now; ends early only on a fatal error ([`MinerError::is_fatal`]).
pub async fn mine(
    config: MinerConfig,
    stats: Arc<MinerStats>,
    stop: Arc<AtomicBool>,
) -> Result<(), MinerError> {
    let mut backoff = RECONNECT_MIN;
    loop {
        let mut got_work = false;
        match mine_once(&config, &stats, &stop, &mut got_work).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                stats.disconnects.fetch_add(1, Ordering::Relaxed);
                if got_work {
                    backoff = RECONNECT_MIN;
                }
                tracing::info!(server = %config.server, error = %e, retry_in = ?backoff, "miner: reconnecting");
            }
        }
        let until = tokio::time::Instant::now() + backoff;
        while tokio::time::Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// The error code and message of a JSON-RPC error answer.
fn rpc_error(msg: &Value) -> (Option<i64>, String) {
    let code = msg["error"][0].as_i64();
    let text = msg["error"][1]
        .as_str()
        .map_or_else(|| msg["error"].to_string(), str::to_string);
    (code, text)
}

/// One connection: mines until `stop` is set (`Ok`) or the connection ends (`Err`).
async fn mine_once(
    config: &MinerConfig,
    stats: &Arc<MinerStats>,
    stop: &AtomicBool,
    got_work: &mut bool,
) -> Result<(), MinerError> {
    let stream = TcpStream::connect(config.server).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let send = |id: u64, method: &str, params: Value| {
        format!(
            "{}\n",
            json!({"id": id, "method": method, "params": params})
        )
    };
    write
        .write_all(send(1, "mining.subscribe", json!(["p2pool-rs-cpuminer/1"])).as_bytes())
        .await?;
    write
        .write_all(send(2, "mining.authorize", json!([config.username, "x"])).as_bytes())
        .await?;

    let shared = Arc::new(Shared::default());
    let scale = DifficultyScale::new(config.difficulty_multiplier);
    let (found_tx, mut found_rx) = mpsc::unbounded_channel::<Found>();
    let mut extranonce1: Vec<u8> = Vec::new();
    let mut difficulty = 1.0f64;
    let mut threads = Vec::new();
    let mut next_id = 3u64;

    // Every way out of the loop, `?` included, lands here so the grinders are stopped.
    let result: Result<(), MinerError> = async { loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        tokio::select! {
            line = lines.next_line() => {
                let line = match line {
                    Ok(Some(line)) => line,
                    Ok(None) => break Err(MinerError::Closed),
                    Err(e) => break Err(e.into()),
                };
                let msg: Value = serde_json::from_str(&line).map_err(|_| bad("invalid JSON"))?;
                match msg.get("method").and_then(Value::as_str) {
                    Some("mining.set_difficulty") => {
                        difficulty = msg["params"][0].as_f64().ok_or_else(|| bad("difficulty"))?;
                    }
                    Some("mining.set_extranonce") => {
                        let en = msg["params"][0].as_str().ok_or_else(|| bad("extranonce"))?;
                        extranonce1 = hex::decode(en).map_err(|_| bad("extranonce"))?;
                    }
                    Some("mining.notify") => {
                        let job = Arc::new(MinerJob::from_notify(&msg["params"])?);
                        if !*got_work {
                            *got_work = true;
                            stats.sessions.fetch_add(1, Ordering::Relaxed);
                        }
                        *shared.job.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((job, scale.target(difficulty)));
                        shared.generation.fetch_add(1, Ordering::Relaxed);
                        if threads.is_empty() {
                            for t in 0..config.threads.max(1) {
                                threads.push(spawn_grinder(
                                    t as u8, extranonce1.clone(), config.pow, shared.clone(),
                                    stats.clone(), found_tx.clone()));
                            }
                        }
                    }
                    Some(_) => {}
                    None => match msg["id"].as_u64() {
                        Some(1) => {
                            match msg["result"][1].as_str().and_then(|s| hex::decode(s).ok()) {
                                Some(en1) => extranonce1 = en1,
                                // A paused pool refuses subscriptions for now.
                                None => break Err(MinerError::Unavailable(rpc_error(&msg).1)),
                            }
                        }
                        Some(2) if msg["result"] != json!(true) => {
                            let (code, detail) = rpc_error(&msg);
                            if code == Some(CODE_UNAUTHORIZED) {
                                break Err(MinerError::Refused { what: "the username", detail });
                            }
                            break Err(MinerError::Unavailable(detail));
                        }
                        Some(id) if id >= 3 => {
                            if msg["result"] == json!(true) {
                                stats.accepted.fetch_add(1, Ordering::Relaxed);
                            } else {
                                stats.rejected.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {}
                    },
                }
            }
            Some(found) = found_rx.recv() => {
                let params = json!([
                    config.username,
                    found.job_id,
                    hex::encode(found.extranonce2),
                    format!("{:08x}", found.ntime),
                    format!("{:08x}", found.nonce),
                ]);
                write.write_all(send(next_id, "mining.submit", params).as_bytes()).await?;
                next_id += 1;
                stats.submitted.fetch_add(1, Ordering::Relaxed);
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    } }.await;
    shared.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    result
}

/// One grinding thread: extranonce2 = (thread, counter), all nonces of each.
fn spawn_grinder(
    thread: u8,
    extranonce1: Vec<u8>,
    pow: PowAlgorithm,
    shared: Arc<Shared>,
    stats: Arc<MinerStats>,
    found: mpsc::UnboundedSender<Found>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut counter: u32 = 0;
        while !shared.stop.load(Ordering::Relaxed) {
            let generation = shared.generation.load(Ordering::Relaxed);
            let Some((job, target)) = shared.job.lock().unwrap_or_else(|p| p.into_inner()).clone()
            else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            counter = counter.wrapping_add(1);
            let extranonce2 = [
                thread,
                (counter >> 16) as u8,
                (counter >> 8) as u8,
                counter as u8,
            ];
            let extranonce = [&extranonce1[..], &extranonce2[..]].concat();
            let ntime = job.time;
            for nonce in 0..=u32::MAX {
                if nonce % 64 == 0
                    && (shared.generation.load(Ordering::Relaxed) != generation
                        || shared.stop.load(Ordering::Relaxed))
                {
                    break;
                }
                let header = job.header(&extranonce, job.version, ntime, nonce);
                stats.hashes.fetch_add(1, Ordering::Relaxed);
                if target.is_met_by(&pow_hash(pow, &header)) {
                    let _ = found.send(Found {
                        job_id: job.id.clone(),
                        extranonce2,
                        ntime,
                        nonce,
                    });
                }
            }
        }
    })
}
