//! The listener: accepts miners (up to a bound), fans jobs out to every session, keeps
//! pool-wide and per-worker statistics.
//!
//! Jobs travel through a `tokio::sync::watch` channel: a broadcast is one store, each
//! session wakes and writes its own `mining.notify` (the text is prepared once per job).
//! A session that falls behind simply sees the newest job; it notices a new block by the
//! changed previous hash, so `clean_jobs` is never lost. Submissions are verified on a pool
//! of `verify_threads` threads ([`super::verify`]), so at most that many threads hash at
//! once whatever the number of miners, and at most `verify_capacity()` submissions are
//! queued or hashed at once (a semaphore; a submission beyond waits, holding up only its
//! own connection). Connections beyond `max_connections` are refused, counted and logged.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use share_chain::pow::SCRYPT_BATCH;
use share_chain::{CoinParams, PowAlgorithm, Preset};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::difficulty::DifficultyScale;
use super::errors::{ServerError, SessionError};
use super::job::{Job, JobTemplate};
use super::penalty::InvalidSubmissionLimit;
use super::session::Session;
use super::vardiff::VardiffConfig;
use super::verify::Verifier;
use super::WorkSource;

/// Server settings. `Default` suits a node on the open internet; tests shrink them.
#[derive(Clone, Debug)]
pub struct StratumConfig {
    pub listen: SocketAddr,
    /// Connections beyond this are closed at once.
    pub max_connections: usize,
    /// A line longer than this (without a newline) closes the connection.
    pub max_line_bytes: usize,
    /// More messages than this within one second closes the connection.
    pub max_messages_per_sec: u32,
    /// A connection must subscribe and authorize within this time.
    pub handshake_timeout: Duration,
    /// A connection silent for this long is closed (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// A miner that does not read what it is sent for this long is dropped.
    pub write_timeout: Duration,
    /// Version bits miners may roll (BIP310); intersected with what each miner asks for.
    pub version_rolling_mask: u32,
    /// How far ahead of this machine's clock a submission's `ntime` may be, in seconds: the
    /// preset's `consensus.max_future_secs`, the share chain's own bound ([`Self::for_preset`]).
    pub max_future_secs: u32,
    pub vardiff: VardiffConfig,
    /// Threads of the verification pool (each hashes up to four submissions at once).
    pub verify_threads: usize,
    /// Submissions queued or being hashed at once, per verification thread: the bound on
    /// the whole server's verification work, whatever the number of connections. A
    /// submission beyond it waits for a slot (its connection's other submissions queue
    /// behind it, other connections go on).
    pub verify_queue_per_thread: usize,
    /// A submission that waited this long for a verification slot is answered "busy".
    pub verify_wait: Duration,
    /// Submissions of one connection being verified (or waiting to be) at once; beyond it
    /// the server stops reading from that connection until one finishes.
    pub max_inflight_per_session: usize,
    /// What invalid submissions cost a connection (slowed, then closed).
    pub invalid_submissions: InvalidSubmissionLimit,
    /// Jobs a session remembers (older job ids are stale).
    pub jobs_kept: usize,
    /// Distinct submissions remembered per job for duplicate detection.
    pub max_submissions_per_job: usize,
    /// Usernames one connection may authorize (proxies use several).
    pub max_workers_per_session: usize,
    /// Workers kept in the per-worker statistics.
    pub max_tracked_workers: usize,
    /// Once the server is paused, how long connected miners keep their last job before
    /// their connections are closed (so they fail over to a backup pool).
    pub pause_grace: Duration,
    /// The state the server starts in (a node starts paused until its daemon answers).
    pub availability: Availability,
}

/// Whether the server hands out work.
///
/// While paused, a connection that has not started mining is refused at `mining.subscribe`
/// or `mining.authorize` (a JSON-RPC error carrying the reason) and closed; a miner already
/// at work keeps its last job for [`StratumConfig::pause_grace`], then its connection is
/// closed too. The node pauses when its work could not become a valid block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    Serving,
    Paused { reason: String },
}

impl Availability {
    pub fn is_serving(&self) -> bool {
        matches!(self, Availability::Serving)
    }
}

impl Default for StratumConfig {
    fn default() -> Self {
        StratumConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9327)),
            max_connections: 10_000,
            max_line_bytes: 16 * 1024,
            max_messages_per_sec: 200,
            handshake_timeout: Duration::from_secs(60),
            idle_timeout: Some(Duration::from_secs(30 * 60)),
            write_timeout: Duration::from_secs(10),
            version_rolling_mask: 0x1fff_e000,
            // What the built-in presets say at the time of writing; a node takes its
            // preset's value (`for_preset`).
            max_future_secs: 60,
            vardiff: VardiffConfig::default(),
            verify_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            // Four batches of four per thread: every thread always has a batch ready.
            verify_queue_per_thread: 4 * SCRYPT_BATCH,
            verify_wait: Duration::from_secs(10),
            max_inflight_per_session: 16,
            invalid_submissions: InvalidSubmissionLimit::default(),
            jobs_kept: 8,
            max_submissions_per_job: 100_000,
            max_workers_per_session: 64,
            max_tracked_workers: 10_000,
            pause_grace: Duration::from_secs(30),
            availability: Availability::Serving,
        }
    }
}

impl StratumConfig {
    /// The defaults, listening on `listen`, with the bounds the share chain of `preset`
    /// imposes (so Stratum never accepts what the chain would refuse, nor the reverse).
    pub fn for_preset(listen: SocketAddr, preset: &Preset) -> Self {
        StratumConfig {
            listen,
            max_future_secs: preset.consensus.max_future_secs,
            ..StratumConfig::default()
        }
    }

    /// Submissions queued or being hashed at once, server-wide.
    pub fn verify_capacity(&self) -> usize {
        self.verify_threads
            .saturating_mul(self.verify_queue_per_thread)
            .min(Semaphore::MAX_PERMITS)
    }

    /// Refuses settings the server cannot work with.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |why: &str| Err(ServerError::InvalidConfig(why.to_string()));
        self.vardiff
            .validate()
            .map_err(ServerError::InvalidConfig)?;
        if self.max_connections == 0 || self.verify_threads == 0 {
            return bad("max_connections and verify_threads must be positive");
        }
        if self.max_line_bytes < 256 {
            return bad("max_line_bytes must be at least 256");
        }
        if self.max_messages_per_sec == 0 || self.max_inflight_per_session == 0 {
            return bad("max_messages_per_sec and max_inflight_per_session must be positive");
        }
        if self.verify_queue_per_thread == 0 {
            return bad("verify_queue_per_thread must be positive");
        }
        self.invalid_submissions
            .validate()
            .map_err(ServerError::InvalidConfig)?;
        if self.jobs_kept == 0 || self.max_submissions_per_job == 0 {
            return bad("jobs_kept and max_submissions_per_job must be positive");
        }
        if self.max_workers_per_session == 0 {
            return bad("max_workers_per_session must be positive");
        }
        if self.pause_grace > Duration::from_secs(24 * 3600) {
            return bad("pause_grace must be at most a day");
        }
        Ok(())
    }
}

/// Statistics of one worker (one username).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerStats {
    pub username: String,
    /// Accepted submissions (pseudo-shares, shares and blocks).
    pub accepted: u64,
    /// Sum of the difficulties of the accepted submissions (hashrate ≈ this × 2^32 /
    /// multiplier per second of window).
    pub accepted_difficulty: f64,
    pub rejected: u64,
    pub shares: u64,
    pub blocks: u64,
    pub last_accepted: Option<SystemTime>,
}

/// A snapshot of the server's statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsSnapshot {
    pub connections: usize,
    /// Connections refused because the server was full.
    pub refused_connections: u64,
    /// Connections closed for misbehaviour (including `invalid_disconnects`).
    pub hostile_disconnects: u64,
    /// Connections slowed for sending too many invalid submissions.
    pub slowed_connections: u64,
    /// Connections closed for sending too many invalid submissions.
    pub invalid_disconnects: u64,
    /// Submissions that can be queued for verification at once (the whole server's bound).
    pub verify_capacity: usize,
    /// The most submissions that ever waited for a verification thread at once.
    pub verify_queue_peak: usize,
    pub accepted: u64,
    pub accepted_difficulty: f64,
    /// Rejected submissions by Stratum error code.
    pub rejected: BTreeMap<i64, u64>,
    pub shares: u64,
    pub blocks: u64,
    /// Jobs broadcast so far.
    pub jobs: u64,
    pub workers: Vec<WorkerStats>,
}

#[derive(Default)]
struct StatsInner {
    accepted: u64,
    accepted_difficulty: f64,
    rejected: BTreeMap<i64, u64>,
    shares: u64,
    blocks: u64,
    workers: HashMap<String, WorkerStats>,
}

/// The statistics sessions update.
pub(crate) struct Stats {
    inner: Mutex<StatsInner>,
    max_tracked_workers: usize,
    pub(crate) refused_connections: AtomicU64,
    pub(crate) hostile_disconnects: AtomicU64,
    pub(crate) slowed_connections: AtomicU64,
    pub(crate) invalid_disconnects: AtomicU64,
}

impl Stats {
    fn new(max_tracked_workers: usize) -> Self {
        Stats {
            inner: Mutex::new(StatsInner::default()),
            max_tracked_workers,
            refused_connections: AtomicU64::new(0),
            hostile_disconnects: AtomicU64::new(0),
            slowed_connections: AtomicU64::new(0),
            invalid_disconnects: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatsInner> {
        // A panic elsewhere while holding the lock leaves plain counters: still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the worker's entry, if it is (or can be) tracked.
    fn with_worker(
        inner: &mut StatsInner,
        cap: usize,
        name: &str,
        f: impl FnOnce(&mut WorkerStats),
    ) {
        if let Some(w) = inner.workers.get_mut(name) {
            f(w);
        } else if inner.workers.len() < cap {
            let mut w = WorkerStats {
                username: name.to_string(),
                ..WorkerStats::default()
            };
            f(&mut w);
            inner.workers.insert(name.to_string(), w);
        }
    }

    pub(crate) fn record_accepted(&self, worker: &str, difficulty: f64, share: bool, block: bool) {
        let mut inner = self.lock();
        inner.accepted += 1;
        inner.accepted_difficulty += difficulty;
        inner.shares += u64::from(share);
        inner.blocks += u64::from(block);
        let now = SystemTime::now();
        Self::with_worker(&mut inner, self.max_tracked_workers, worker, |w| {
            w.accepted += 1;
            w.accepted_difficulty += difficulty;
            w.shares += u64::from(share);
            w.blocks += u64::from(block);
            w.last_accepted = Some(now);
        });
    }

    pub(crate) fn record_rejected(&self, worker: Option<&str>, code: i64) {
        let mut inner = self.lock();
        *inner.rejected.entry(code).or_default() += 1;
        if let Some(worker) = worker {
            Self::with_worker(&mut inner, self.max_tracked_workers, worker, |w| {
                w.rejected += 1
            });
        }
    }
}

/// What all sessions share.
pub(crate) struct Shared<W: WorkSource> {
    pub(crate) config: StratumConfig,
    pub(crate) scale: DifficultyScale,
    pub(crate) work: Arc<W>,
    pub(crate) jobs: watch::Sender<Option<Arc<Job<W::Payload>>>>,
    /// Bumped to give every extranonce-subscribed session a fresh extranonce1.
    pub(crate) extranonce_epoch: watch::Sender<u64>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) availability: watch::Sender<Availability>,
    next_extranonce1: AtomicU32,
    next_job_seq: AtomicU64,
    pub(crate) verifier: Verifier,
    /// One permit per submission queued or being hashed (`verify_capacity` in all).
    pub(crate) verify_slots: Arc<Semaphore>,
    pub(crate) stats: Stats,
    pub(crate) sessions: AtomicUsize,
}

impl<W: WorkSource> Shared<W> {
    /// What a server's sessions share, with its verification pool started.
    pub(crate) fn new(
        config: StratumConfig,
        scale: DifficultyScale,
        pow: PowAlgorithm,
        work: Arc<W>,
    ) -> std::io::Result<Self> {
        // std's RandomState is seeded randomly per process: a dependency-free random start.
        let random_start = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32;
        Ok(Shared {
            scale,
            work,
            jobs: watch::Sender::new(None),
            extranonce_epoch: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
            availability: watch::Sender::new(config.availability.clone()),
            next_extranonce1: AtomicU32::new(random_start),
            next_job_seq: AtomicU64::new(1),
            verifier: Verifier::start(config.verify_threads, pow)?,
            verify_slots: Arc::new(Semaphore::new(config.verify_capacity())),
            stats: Stats::new(config.max_tracked_workers),
            sessions: AtomicUsize::new(0),
            config,
        })
    }

    /// A fresh extranonce1: a counter from a random start, so connections alive at the same
    /// time never share one (short of 2^32 connections).
    pub(crate) fn allocate_extranonce1(&self) -> [u8; 4] {
        self.next_extranonce1
            .fetch_add(1, Ordering::Relaxed)
            .to_be_bytes()
    }
}

/// A running Stratum server.
pub struct StratumServer<W: WorkSource> {
    shared: Arc<Shared<W>>,
    local_addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

impl<W: WorkSource> StratumServer<W> {
    /// Binds `config.listen` and starts accepting miners. Must run inside a Tokio runtime.
    pub async fn bind(
        config: StratumConfig,
        coin: &CoinParams,
        work: Arc<W>,
    ) -> Result<Self, ServerError> {
        config.validate()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let listen = config.listen;
        let shared = Arc::new(
            Shared::new(config, DifficultyScale::from_coin(coin), coin.pow, work).map_err(
                |source| ServerError::Bind {
                    addr: listen,
                    source,
                },
            )?,
        );
        let accept_task = tokio::spawn(accept_loop(listener, shared.clone()));
        match &*shared.availability.borrow() {
            Availability::Serving => tracing::info!(%local_addr, "stratum server listening"),
            Availability::Paused { reason } => {
                tracing::info!(%local_addr, %reason, "stratum server listening, paused")
            }
        }
        Ok(StratumServer {
            shared,
            local_addr,
            accept_task,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends a job to every subscribed session; returns its server-wide sequence number.
    /// A template no miner could use (oversized coinbase parts, absurd branch) is refused.
    pub fn broadcast(&self, template: JobTemplate<W::Payload>) -> Result<u64, ServerError> {
        let seq = self.shared.next_job_seq.fetch_add(1, Ordering::Relaxed);
        let job = Job::new(seq, template).map_err(ServerError::InvalidConfig)?;
        self.shared.jobs.send_replace(Some(Arc::new(job)));
        Ok(seq)
    }

    /// Pauses or resumes work (see [`Availability`]); each change is logged once.
    ///
    /// Pausing also withdraws the current job, so no connection accepted later is ever
    /// sent work from before the pause: broadcast fresh work before resuming.
    pub fn set_availability(&self, availability: Availability) {
        let previous = self.shared.availability.send_replace(availability.clone());
        if previous == availability {
            return;
        }
        match (&previous, &availability) {
            (Availability::Serving, Availability::Paused { reason }) => {
                self.shared.jobs.send_replace(None);
                tracing::warn!(
                    %reason,
                    connections = self.connections(),
                    grace = ?self.shared.config.pause_grace,
                    "stratum paused: refusing new miners; connected miners are closed after \
                     the grace period unless work resumes"
                );
            }
            (Availability::Paused { .. }, Availability::Paused { reason }) => {
                tracing::info!(%reason, "stratum still paused, for another reason");
            }
            (Availability::Paused { .. }, Availability::Serving) => {
                tracing::info!(
                    connections = self.connections(),
                    "stratum serving again: accepting miners"
                );
            }
            (Availability::Serving, Availability::Serving) => {}
        }
    }

    /// Whether the server hands out work now.
    pub fn availability(&self) -> Availability {
        self.shared.availability.borrow().clone()
    }

    /// Gives every session that sent `mining.extranonce.subscribe` a new extranonce1
    /// (announced with `mining.set_extranonce` and a fresh job). Others keep theirs.
    pub fn renew_extranonces(&self) {
        self.shared.extranonce_epoch.send_modify(|e| *e += 1);
    }

    /// Live connections.
    pub fn connections(&self) -> usize {
        self.shared.sessions.load(Ordering::Relaxed)
    }

    /// The stratum difficulty scale in use.
    pub fn scale(&self) -> DifficultyScale {
        self.shared.scale
    }

    pub fn stats(&self) -> StatsSnapshot {
        let inner = self.shared.stats.lock();
        let mut workers: Vec<WorkerStats> = inner.workers.values().cloned().collect();
        workers.sort_by(|a, b| a.username.cmp(&b.username));
        StatsSnapshot {
            connections: self.connections(),
            refused_connections: self
                .shared
                .stats
                .refused_connections
                .load(Ordering::Relaxed),
            hostile_disconnects: self
                .shared
                .stats
                .hostile_disconnects
                .load(Ordering::Relaxed),
            slowed_connections: self.shared.stats.slowed_connections.load(Ordering::Relaxed),
            invalid_disconnects: self
                .shared
                .stats
                .invalid_disconnects
                .load(Ordering::Relaxed),
            verify_capacity: self.shared.config.verify_capacity(),
            verify_queue_peak: self.shared.verifier.peak(),
            accepted: inner.accepted,
            accepted_difficulty: inner.accepted_difficulty,
            rejected: inner.rejected.clone(),
            shares: inner.shares,
            blocks: inner.blocks,
            jobs: self.shared.next_job_seq.load(Ordering::Relaxed) - 1,
            workers,
        }
    }

    /// Stops accepting and closes every session.
    pub async fn shutdown(self) {
        self.shared.shutdown.send_replace(true);
        self.shared.verifier.close();
        self.accept_task.abort();
        // Sessions see the flag and end on their own; wait briefly for them.
        for _ in 0..100 {
            if self.connections() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl<W: WorkSource> Drop for StratumServer<W> {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.shared.verifier.close();
        self.accept_task.abort();
    }
}

async fn accept_loop<W: WorkSource>(listener: TcpListener, shared: Arc<Shared<W>>) {
    let permits = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut refusals = RefusalLog::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "stratum accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shared
                .stats
                .refused_connections
                .fetch_add(1, Ordering::Relaxed);
            refusals.refused(peer, shared.config.max_connections);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.sessions.fetch_add(1, Ordering::Relaxed);
            let result = Session::new(shared.clone(), peer).run(stream).await;
            shared.sessions.fetch_sub(1, Ordering::Relaxed);
            match result {
                Err(e) if e.is_hostile() => {
                    shared
                        .stats
                        .hostile_disconnects
                        .fetch_add(1, Ordering::Relaxed);
                    if matches!(e, SessionError::TooManyInvalid { .. }) {
                        shared
                            .stats
                            .invalid_disconnects
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(%peer, reason = %e, "stratum: closing connection");
                }
                Err(e) => tracing::debug!(%peer, reason = %e, "stratum: connection ended"),
                Ok(()) => tracing::debug!(%peer, "stratum: connection closed"),
            }
            drop(permit);
        });
    }
}

/// Logs refused connections at WARN, at most once per [`RefusalLog::EVERY`] (a flood of
/// connections must not flood the log too).
#[derive(Default)]
struct RefusalLog {
    last: Option<std::time::Instant>,
    unlogged: u64,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn refused(&mut self, peer: SocketAddr, max_connections: usize) {
        self.unlogged += 1;
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            return;
        }
        tracing::warn!(
            %peer,
            refused = self.unlogged,
            max_connections,
            "stratum server full: connection refused (raise --stratum-max-connections?)"
        );
        self.last = Some(now);
        self.unlogged = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_bad_ones_are_refused() {
        StratumConfig::default().validate().unwrap();
        let bad = StratumConfig {
            max_connections: 0,
            ..StratumConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = StratumConfig {
            max_line_bytes: 10,
            ..StratumConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    struct Nobody;
    impl WorkSource for Nobody {
        type Identity = ();
        type Payload = ();
        fn validate_username(&self, _: &crate::stratum::Username) -> Result<(), String> {
            Err("nobody".into())
        }
        fn on_solution(&self, _: crate::stratum::Solution<Self>) {}
    }

    fn future_size<F, Fut>(_: &F) -> usize
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every connection is one task holding this future: keep it small (10,000 miners).
    #[test]
    fn a_session_task_is_small() {
        let config = StratumConfig::default();
        let shared = Arc::new(
            Shared::new(
                config,
                DifficultyScale::new(65536),
                PowAlgorithm::Scrypt,
                Arc::new(Nobody),
            )
            .unwrap(),
        );
        let session = Session::new(shared, SocketAddr::from(([127, 0, 0, 1], 1)));
        let size = future_size(&move |s| session.run(s));
        println!("session future: {size} bytes");
        assert!(size < 4096, "session future is {size} bytes");
    }

    #[test]
    fn worker_stats_are_bounded() {
        let stats = Stats::new(2);
        stats.record_accepted("a", 1.5, false, false);
        stats.record_accepted("a", 2.5, true, false);
        stats.record_accepted("b", 1.0, true, true);
        stats.record_accepted("c", 1.0, false, false);
        stats.record_rejected(Some("c"), 23);
        stats.record_rejected(None, 20);
        let inner = stats.lock();
        assert_eq!(inner.accepted, 4);
        assert_eq!(inner.accepted_difficulty, 6.0);
        assert_eq!(inner.shares, 2);
        assert_eq!(inner.blocks, 1);
        assert_eq!(inner.workers.len(), 2);
        assert_eq!(inner.workers["a"].accepted, 2);
        assert_eq!(inner.workers["a"].accepted_difficulty, 4.0);
        assert!(!inner.workers.contains_key("c"));
        assert_eq!(inner.rejected[&23], 1);
        assert_eq!(inner.rejected[&20], 1);
    }
}
