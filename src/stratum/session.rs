//! One miner connection: the Stratum state machine and its I/O loop.
//!
//! A session reads `\n`-terminated JSON lines (bounded in length and rate), answers each
//! request in order, and forwards every job the server broadcasts under a job id of its
//! own. Each job id remembers what the miner was told with it (extranonce1 and
//! difficulty), so a submission is checked against exactly the work it claims, even across
//! difficulty or extranonce changes. Submissions are checked cheaply here (job, fields,
//! ntime, version mask, duplicates) and hashed on the blocking pool; accepted ones are
//! answered in submission order, other answers as soon as they are known (miners match
//! answers by id). Invalid submissions spend the connection's credit ([`super::penalty`]):
//! past it, reading pauses after each one, then the connection is closed. Anything hostile
//! ends this session only, with one log line.
//!
//! Memory per idle session is a few hundred bytes plus its socket: the read buffer is
//! allocated only while bytes are pending and the write buffer is released after large
//! messages.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use serde_json::{json, Value};
use share_chain::Target;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, OwnedSemaphorePermit, TryAcquireError};
use tokio::time::Instant;

use super::errors::{SessionError, StratumError};
use super::job::{self, check_ntime, rolled_version, Job, Submission, EXTRANONCE2_SIZE};
use super::messages::{self, Incoming, Request};
use super::penalty::{Credit, Standing};
use super::server::{Availability, Shared};
use super::username::Username;
use super::vardiff::Vardiff;
use super::verify::Check;
use super::{JobFuture, Personalized, Solution, WorkSource};

#[doc(hidden)]
pub mod fuzzing;

/// First byte of a TLS record carrying a handshake (a ClientHello on a fresh connection).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 4096;
/// A write buffer larger than this is released after use rather than kept: a job's notify
/// line is a few KiB, and idle sessions should not each sit on one.
const KEEP_WRITE_BUFFER: usize = 512;
/// Longest method name echoed back in an error.
const MAX_ECHOED_METHOD: usize = 64;

/// (extranonce2, ntime, nonce, version): what makes two submissions of a job the same.
type SubmitKey = ([u8; EXTRANONCE2_SIZE], u32, u32, u32);

/// A job as this session sent it.
struct SentJob<P> {
    id: u32,
    job: Arc<Job<P>>,
    extranonce1: [u8; 4],
    /// The pseudo-share target the miner was given with it.
    target: Target,
    difficulty: f64,
    seen: HashSet<SubmitKey>,
}

/// The result of one verification, in request order.
struct Verified {
    id: Value,
    username: String,
    difficulty: f64,
    outcome: Result<(bool, bool), StratumError>,
}

type Pending = FuturesOrdered<Pin<Box<dyn Future<Output = Verified> + Send>>>;

/// One authorized username.
struct Worker<I> {
    username: String,
    identity: Arc<I>,
}

pub(crate) struct Session<W: WorkSource> {
    shared: Arc<Shared<W>>,
    peer: SocketAddr,
    extranonce1: [u8; 4],
    subscribed: bool,
    extranonce_subscribed: bool,
    /// Negotiated BIP310 mask (0: no rolling).
    version_mask: u32,
    workers: Vec<Worker<W::Identity>>,
    /// Set by `+diff` or `mining.suggest_difficulty`: vardiff is off.
    fixed_difficulty: Option<f64>,
    /// The miner's own floor (`minimum-difficulty` extension).
    miner_floor: f64,
    /// The session's difficulty (vardiff or fixed), before capping at the job's targets.
    difficulty: f64,
    /// The difficulty last sent with `mining.set_difficulty`.
    sent_difficulty: Option<f64>,
    vardiff: Vardiff,
    /// Work has been sent (subscribed and authorized).
    started: bool,
    jobs: VecDeque<SentJob<W::Payload>>,
    next_job_id: u32,
    current_job: Option<Arc<Job<W::Payload>>>,
    last_prev_hash: Option<[u8; 32]>,
    out: Vec<u8>,
    got_bytes: bool,
    flood_window: Instant,
    flood_count: u32,
    opened: Instant,
    last_message: Instant,
    /// While the server is paused: when this connection is closed.
    close_at: Option<Instant>,
    /// The miner's own job for the current broadcast, being built by the node; with the
    /// `clean` and `forget_older` flags to send it with.
    personalizing: Option<(JobFuture<W::Payload>, bool, bool)>,
    /// A subscribe or authorize was refused because the server is paused: close the
    /// connection once the answer is written.
    refused: Option<String>,
    /// What this connection's invalid submissions have cost it.
    credit: Credit,
    /// Slowed for invalid submissions: nothing is read until then.
    read_paused_until: Option<Instant>,
}

impl<W: WorkSource> Session<W> {
    pub(crate) fn new(shared: Arc<Shared<W>>, peer: SocketAddr) -> Self {
        let now = Instant::now();
        let extranonce1 = shared.allocate_extranonce1();
        let difficulty = shared
            .config
            .vardiff
            .clamp(shared.config.vardiff.initial_difficulty);
        Session {
            extranonce1,
            peer,
            subscribed: false,
            extranonce_subscribed: false,
            version_mask: 0,
            workers: Vec::new(),
            fixed_difficulty: None,
            miner_floor: 0.0,
            difficulty,
            sent_difficulty: None,
            vardiff: Vardiff::new(now),
            started: false,
            jobs: VecDeque::new(),
            next_job_id: 1,
            current_job: None,
            last_prev_hash: None,
            out: Vec::new(),
            got_bytes: false,
            flood_window: now,
            flood_count: 0,
            opened: now,
            last_message: now,
            close_at: None,
            personalizing: None,
            refused: None,
            credit: Credit::new(&shared.config.invalid_submissions, now),
            read_paused_until: None,
            shared,
        }
    }

    /// Serves the connection until it closes, the server shuts down or the miner misbehaves.
    pub(crate) async fn run(mut self, stream: TcpStream) -> Result<(), SessionError> {
        let (rd, mut wr) = stream.into_split();
        let mut job_rx = self.shared.jobs.subscribe();
        let mut extranonce_rx = self.shared.extranonce_epoch.subscribe();
        let mut shutdown_rx = self.shared.shutdown.subscribe();
        let mut availability_rx = self.shared.availability.subscribe();
        let availability = availability_rx.borrow_and_update().clone();
        self.on_availability(&availability);
        self.current_job = job_rx.borrow_and_update().clone();
        self.last_prev_hash = self.current_job.as_ref().map(|j| j.template.prev_hash);
        let mut buf: Vec<u8> = Vec::new();
        let mut pending: Pending = FuturesOrdered::new();
        let max_inflight = self.shared.config.max_inflight_per_session;
        tracing::debug!(peer = %self.peer, "stratum: connection opened");

        loop {
            if *shutdown_rx.borrow() {
                return Ok(());
            }
            if !self.out.is_empty() {
                match tokio::time::timeout(
                    self.shared.config.write_timeout,
                    wr.write_all(&self.out),
                )
                .await
                {
                    Ok(result) => result?,
                    Err(_) => return Err(SessionError::WriteTimeout),
                }
                if self.out.capacity() > KEEP_WRITE_BUFFER {
                    self.out = Vec::new();
                } else {
                    self.out.clear();
                }
            }
            if let Some(reason) = self.refused.take() {
                return Err(SessionError::Paused(reason));
            }
            let deadline = self.deadline();
            tokio::select! {
                biased;
                _ = shutdown_rx.changed() => return Ok(()),
                Some(done) = pending.next(), if !pending.is_empty() => {
                    self.finish_submit(done)?;
                    self.process_buffered(&mut buf, &mut pending)?;
                }
                changed = job_rx.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let job = job_rx.borrow_and_update().clone();
                    if let Some(job) = job {
                        self.on_new_job(job);
                    }
                }
                job = next_personalized(&mut self.personalizing), if self.personalizing.is_some() => {
                    if let Some((_, clean, forget_older)) = self.personalizing.take() {
                        if let Some(job) = job {
                            self.send_personal_job(job, clean, forget_older);
                        }
                    }
                }
                changed = availability_rx.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let availability = availability_rx.borrow_and_update().clone();
                    self.on_availability(&availability);
                }
                changed = extranonce_rx.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    extranonce_rx.borrow_and_update();
                    self.renew_extranonce();
                }
                ready = rd.readable(),
                    if pending.len() < max_inflight && self.read_paused_until.is_none() =>
                {
                    ready?;
                    buf.reserve(READ_CHUNK);
                    match rd.try_read_buf(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e.into()),
                    }
                    if !self.got_bytes {
                        self.got_bytes = true;
                        if buf.first() == Some(&TLS_HANDSHAKE_RECORD) {
                            return Err(SessionError::TlsOnPlainPort);
                        }
                    }
                    self.process_buffered(&mut buf, &mut pending)?;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.on_timer()?;
                    self.process_buffered(&mut buf, &mut pending)?;
                }
            }
            if buf.is_empty() && buf.capacity() > 0 {
                buf = Vec::new();
            }
        }
    }

    /// The next moment something is due: handshake or idle timeout, or a vardiff check.
    fn deadline(&self) -> Instant {
        let cfg = &self.shared.config;
        let far = Instant::now() + Duration::from_secs(3600);
        let mut deadline = far;
        if !self.started {
            deadline = deadline.min(self.opened + cfg.handshake_timeout);
        }
        if let Some(idle) = cfg.idle_timeout {
            deadline = deadline.min(self.last_message + idle);
        }
        if self.started && self.fixed_difficulty.is_none() {
            deadline = deadline.min(self.vardiff.deadline(&cfg.vardiff));
        }
        if let Some(close_at) = self.close_at {
            deadline = deadline.min(close_at);
        }
        if let Some(paused) = self.read_paused_until {
            deadline = deadline.min(paused);
        }
        deadline
    }

    /// A pause starts this connection's grace period; resuming cancels it.
    fn on_availability(&mut self, availability: &Availability) {
        match availability {
            Availability::Serving => self.close_at = None,
            Availability::Paused { .. } => {
                if self.close_at.is_none() {
                    self.close_at = Some(Instant::now() + self.shared.config.pause_grace);
                }
            }
        }
    }

    /// Refuses a subscribe or authorize of a connection not yet mining while the server is
    /// paused, and marks the connection for closing once the answer is out.
    fn refuse_if_paused(&mut self) -> Result<(), StratumError> {
        if self.started {
            return Ok(());
        }
        match &*self.shared.availability.borrow() {
            Availability::Serving => Ok(()),
            Availability::Paused { reason } => {
                self.refused = Some(reason.clone());
                Err(StratumError::Unavailable(reason.clone()))
            }
        }
    }

    fn on_timer(&mut self) -> Result<(), SessionError> {
        let now = Instant::now();
        if self.read_paused_until.is_some_and(|until| now >= until) {
            self.read_paused_until = None;
        }
        let cfg = &self.shared.config;
        if self.close_at.is_some_and(|at| now >= at) {
            let reason = match &*self.shared.availability.borrow() {
                Availability::Paused { reason } => reason.clone(),
                Availability::Serving => String::from("paused"),
            };
            return Err(SessionError::Paused(reason));
        }
        if !self.started && now >= self.opened + cfg.handshake_timeout {
            return Err(SessionError::HandshakeTimeout);
        }
        if let Some(idle) = cfg.idle_timeout {
            if now >= self.last_message + idle {
                return Err(SessionError::IdleTimeout);
            }
        }
        if self.started && self.fixed_difficulty.is_none() {
            let current = self.sent_difficulty.unwrap_or(self.difficulty);
            if let Some(new) = self.vardiff.tick(now, &cfg.vardiff, current) {
                self.set_session_difficulty(new);
            }
        }
        Ok(())
    }

    /// Handles the complete lines in `buf` (while verification capacity lasts) and checks
    /// the unterminated rest against the line limit.
    fn process_buffered(
        &mut self,
        buf: &mut Vec<u8>,
        pending: &mut Pending,
    ) -> Result<(), SessionError> {
        let limit = self.shared.config.max_line_bytes;
        let max_inflight = self.shared.config.max_inflight_per_session;
        let mut start = 0;
        while pending.len() < max_inflight && self.read_paused_until.is_none() {
            let Some(rest) = buf.get(start..) else { break };
            let Some(pos) = rest.iter().position(|&b| b == b'\n') else {
                break;
            };
            if pos > limit {
                return Err(SessionError::LineTooLong { limit });
            }
            let line = rest.get(..pos).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            start += pos + 1;
            self.on_line(line, pending)?;
        }
        buf.drain(..start.min(buf.len()));
        if buf.len() > limit && !buf.contains(&b'\n') {
            return Err(SessionError::LineTooLong { limit });
        }
        Ok(())
    }

    fn on_line(&mut self, line: &[u8], pending: &mut Pending) -> Result<(), SessionError> {
        let now = Instant::now();
        if now.saturating_duration_since(self.flood_window) >= Duration::from_secs(1) {
            self.flood_window = now;
            self.flood_count = 0;
        }
        self.flood_count += 1;
        let limit = self.shared.config.max_messages_per_sec;
        if self.flood_count > limit {
            return Err(SessionError::Flood { limit });
        }
        self.last_message = now;
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let Incoming::Request(request) = messages::parse_line(line)? else {
            return Ok(());
        };
        let mark = self.out.len();
        let result = match request.method.as_str() {
            "mining.subscribe" => self.subscribe(&request),
            "mining.authorize" => self.authorize(&request),
            "mining.configure" => self.configure(&request),
            "mining.submit" => match self.submit(&request) {
                Ok(verification) => {
                    pending.push_back(verification);
                    return Ok(());
                }
                Err(e) => {
                    let worker = request
                        .str_param(0, "worker")
                        .ok()
                        .filter(|w| self.workers.iter().any(|x| x.username == *w));
                    self.shared.stats.record_rejected(worker, e.code());
                    self.charge(&e)?;
                    Err(e)
                }
            },
            "mining.suggest_difficulty" => self.suggest_difficulty(&request),
            "mining.extranonce.subscribe" => {
                self.extranonce_subscribed = true;
                Ok(Value::Bool(true))
            }
            other => Err(StratumError::UnknownMethod(
                other.chars().take(MAX_ECHOED_METHOD).collect(),
            )),
        };
        let answer = match result {
            Ok(value) => messages::response_ok(&request.id, value),
            Err(e) => messages::response_err(&request.id, &e),
        };
        self.insert_answer(mark, &answer);
        Ok(())
    }

    fn subscribe(&mut self, _request: &Request) -> Result<Value, StratumError> {
        self.refuse_if_paused()?;
        let first = !self.subscribed;
        self.subscribed = true;
        let en1 = hex::encode(self.extranonce1);
        let subscription = format!("{en1}{:08x}", self.next_job_id);
        let result = json!([
            [
                ["mining.set_difficulty", subscription],
                ["mining.notify", subscription]
            ],
            en1,
            EXTRANONCE2_SIZE
        ]);
        if first {
            self.maybe_start();
        }
        Ok(result)
    }

    fn authorize(&mut self, request: &Request) -> Result<Value, StratumError> {
        let name = request.str_param(0, "username")?;
        self.refuse_if_paused()?;
        if self.workers.iter().any(|w| w.username == name) {
            return Ok(Value::Bool(true));
        }
        if self.workers.len() >= self.shared.config.max_workers_per_session {
            return Err(StratumError::TooManyWorkers);
        }
        let invalid = |reason: String| StratumError::InvalidUsername {
            username: name.chars().take(128).collect(),
            reason,
        };
        let username = Username::parse(name).map_err(|e| invalid(e.to_string()))?;
        let identity = self
            .shared
            .work
            .validate_username(&username)
            .map_err(invalid)?;
        // Jobs are built for the connection's payout address: one address per connection.
        if self
            .workers
            .first()
            .is_some_and(|w| *w.identity != identity)
        {
            return Err(StratumError::Unauthorized(
                "one payout address per connection: open another connection for this address"
                    .into(),
            ));
        }
        self.workers.push(Worker {
            username: username.full.clone(),
            identity: Arc::new(identity),
        });
        tracing::debug!(peer = %self.peer, username = %username, "stratum: authorized");
        if let Some(d) = username.difficulty {
            self.fix_difficulty(d);
        }
        self.maybe_start();
        Ok(Value::Bool(true))
    }

    fn configure(&mut self, request: &Request) -> Result<Value, StratumError> {
        let params = request.params_array()?;
        let extensions = params
            .first()
            .and_then(Value::as_array)
            .ok_or_else(|| StratumError::malformed("extensions", "expected an array"))?;
        let options = params.get(1).and_then(Value::as_object);
        let option = |key: &str| options.and_then(|o| o.get(key));
        let mut result = serde_json::Map::new();
        for ext in extensions.iter().filter_map(Value::as_str).take(16) {
            match ext {
                "version-rolling" => {
                    let requested = match option("version-rolling.mask") {
                        None => Some(u32::MAX),
                        Some(v) => v.as_str().and_then(|s| {
                            (s.len() <= 8).then(|| u32::from_str_radix(s, 16).ok())?
                        }),
                    };
                    match requested {
                        Some(mask) => {
                            self.version_mask = mask & self.shared.config.version_rolling_mask;
                            result.insert(ext.into(), Value::Bool(true));
                            result.insert(
                                "version-rolling.mask".into(),
                                Value::String(format!("{:08x}", self.version_mask)),
                            );
                        }
                        None => {
                            result.insert(ext.into(), Value::Bool(false));
                        }
                    }
                }
                "minimum-difficulty" => {
                    let value = option("minimum-difficulty.value").and_then(Value::as_f64);
                    let ok = value.is_some_and(|v| v.is_finite() && v > 0.0);
                    if let (true, Some(v)) = (ok, value) {
                        self.miner_floor = self.shared.config.vardiff.clamp(v);
                        if self.difficulty < self.miner_floor {
                            self.set_session_difficulty(self.miner_floor);
                        }
                    }
                    result.insert(ext.into(), Value::Bool(ok));
                }
                "subscribe-extranonce" => {
                    self.extranonce_subscribed = true;
                    result.insert(ext.into(), Value::Bool(true));
                }
                other => {
                    result.insert(
                        other.chars().take(MAX_ECHOED_METHOD).collect(),
                        Value::Bool(false),
                    );
                }
            }
        }
        Ok(Value::Object(result))
    }

    fn suggest_difficulty(&mut self, request: &Request) -> Result<Value, StratumError> {
        let d = request
            .params_array()?
            .first()
            .and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .filter(|d: &f64| d.is_finite() && *d > 0.0)
            .ok_or_else(|| StratumError::malformed("difficulty", "expected a positive number"))?;
        self.fix_difficulty(d);
        Ok(Value::Bool(true))
    }

    /// A miner-chosen difficulty: vardiff off, never below the floor.
    fn fix_difficulty(&mut self, d: f64) {
        let d = self.shared.config.vardiff.clamp(d).max(self.miner_floor);
        self.fixed_difficulty = Some(d);
        self.set_session_difficulty(d);
    }

    /// Changes the session difficulty and, once work flows, tells the miner (with a fresh
    /// job id so the new difficulty applies from it on).
    fn set_session_difficulty(&mut self, d: f64) {
        self.difficulty = d.max(self.miner_floor);
        if !self.started {
            return;
        }
        if let Some(job) = self.current_job.clone() {
            if Some(self.effective(&job).0) != self.sent_difficulty {
                self.send_job(job, false, false);
            }
        } else if Some(self.difficulty) != self.sent_difficulty {
            self.out
                .extend_from_slice(&messages::set_difficulty(self.difficulty));
            self.sent_difficulty = Some(self.difficulty);
            self.vardiff.reset(Instant::now());
        }
    }

    /// Sends the first difficulty and job once the miner is subscribed and authorized.
    fn maybe_start(&mut self) {
        if self.started || !self.subscribed || self.workers.is_empty() {
            return;
        }
        self.started = true;
        self.vardiff.reset(Instant::now());
        match self.current_job.clone() {
            Some(job) => self.send_job(job, true, true),
            None => {
                self.out
                    .extend_from_slice(&messages::set_difficulty(self.difficulty));
                self.sent_difficulty = Some(self.difficulty);
            }
        }
    }

    /// The difficulty and pseudo-share target for `job`: the session's, unless the job's
    /// share or block target is easier (then that, so no share or block is withheld).
    fn effective(&self, job: &Job<W::Payload>) -> (f64, Target) {
        let scale = &self.shared.scale;
        let session_target = scale.target(self.difficulty);
        if session_target >= job.easiest_target {
            (self.difficulty, session_target)
        } else {
            let d = scale.difficulty(job.easiest_target);
            (d, scale.target(d).max(job.easiest_target))
        }
    }

    fn on_new_job(&mut self, job: Arc<Job<W::Payload>>) {
        let new_block = self.last_prev_hash != Some(job.template.prev_hash);
        let clean = job.template.clean || new_block;
        self.last_prev_hash = Some(job.template.prev_hash);
        self.current_job = Some(job.clone());
        if self.started {
            self.send_job(job, clean, clean);
        }
    }

    /// Queues `set_difficulty` (if it changed) and `mining.notify` for `job` under a new id.
    /// `forget_older` drops older job ids (they become stale).
    fn send_job(&mut self, job: Arc<Job<W::Payload>>, clean: bool, forget_older: bool) {
        // A job still being built for an older broadcast is superseded by this one; its
        // flags carry over (a clean job must not turn into a dirty one).
        let (clean, forget_older) = match self.personalizing.take() {
            Some((_, c, f)) => (clean || c, forget_older || f),
            None => (clean, forget_older),
        };
        let Some(worker) = self.workers.first() else {
            self.send_personal_job(job, clean, forget_older);
            return;
        };
        match self.shared.work.personalize(&job, &worker.identity) {
            Personalized::Ready(job) => self.send_personal_job(job, clean, forget_older),
            Personalized::Later(future) => {
                tracing::trace!(peer = %self.peer, seq = job.seq, "stratum: job being built");
                self.personalizing = Some((future, clean, forget_older));
            }
            Personalized::Nothing => {
                tracing::trace!(peer = %self.peer, seq = job.seq, "stratum: no job for this miner");
            }
        }
    }

    /// Queues `set_difficulty` (if it changed) and `mining.notify` for this miner's `job`.
    fn send_personal_job(&mut self, job: Arc<Job<W::Payload>>, clean: bool, forget_older: bool) {
        let (difficulty, target) = self.effective(&job);
        if self.sent_difficulty != Some(difficulty) {
            self.out
                .extend_from_slice(&messages::set_difficulty(difficulty));
            self.sent_difficulty = Some(difficulty);
            self.vardiff.reset(Instant::now());
        }
        if forget_older {
            self.jobs.clear();
        }
        let id = self.next_job_id;
        self.next_job_id = self.next_job_id.wrapping_add(1);
        self.out
            .extend_from_slice(&job.notify_line(&format!("{id:x}"), clean));
        self.jobs.push_back(SentJob {
            id,
            job,
            extranonce1: self.extranonce1,
            target,
            difficulty,
            seen: HashSet::new(),
        });
        while self.jobs.len() > self.shared.config.jobs_kept {
            self.jobs.pop_front();
        }
    }

    /// New extranonce1 for a miner that asked to be told (`mining.set_extranonce`), then a
    /// clean job so it switches at once. Older job ids keep the old extranonce1.
    fn renew_extranonce(&mut self) {
        if !self.extranonce_subscribed || !self.subscribed {
            return;
        }
        self.extranonce1 = self.shared.allocate_extranonce1();
        self.out.extend_from_slice(&messages::notification(
            "mining.set_extranonce",
            json!([hex::encode(self.extranonce1), EXTRANONCE2_SIZE]),
        ));
        if let (true, Some(job)) = (self.started, self.current_job.clone()) {
            self.send_job(job, true, false);
        }
    }

    /// The cheap checks of a submission; the hash itself is left to the returned future.
    fn submit(
        &mut self,
        request: &Request,
    ) -> Result<Pin<Box<dyn Future<Output = Verified> + Send>>, StratumError> {
        let params = request.params_array()?;
        if !(5..=6).contains(&params.len()) {
            return Err(StratumError::malformed(
                "params",
                "expected 5 or 6 parameters",
            ));
        }
        if !self.subscribed {
            return Err(StratumError::NotSubscribed);
        }
        let username = request.str_param(0, "worker")?;
        let worker = self
            .workers
            .iter()
            .find(|w| w.username == username)
            .ok_or_else(|| StratumError::Unauthorized(username.chars().take(128).collect()))?;
        let identity = worker.identity.clone();
        let username = worker.username.clone();
        let job_id = request.str_param(1, "job id")?;
        let version_bits = match params.get(5) {
            Some(v) => Some(
                v.as_str()
                    .ok_or_else(|| StratumError::malformed("version bits", "not a string"))?,
            ),
            None => None,
        };
        let submission = Submission::parse(
            request.str_param(2, "extranonce2")?,
            request.str_param(3, "ntime")?,
            request.str_param(4, "nonce")?,
            version_bits,
        )?;
        let id = (job_id.len() <= 8)
            .then(|| u32::from_str_radix(job_id, 16).ok())
            .flatten()
            .ok_or(StratumError::UnknownJob)?;
        let version_mask = self.version_mask;
        let max_seen = self.shared.config.max_submissions_per_job;
        // Ids run from 1 up: one below the next is a job this connection was sent (stale
        // if forgotten); any other was never sent (wrap-around takes 2^32 jobs).
        let issued = (1..self.next_job_id).contains(&id);
        let sent = self.jobs.iter_mut().find(|j| j.id == id).ok_or(if issued {
            StratumError::JobNotFound
        } else {
            StratumError::UnknownJob
        })?;
        let template = sent.job.template.clone();
        check_ntime(
            template.time,
            submission.ntime,
            unix_now(),
            self.shared.config.max_future_secs,
        )?;
        let version = rolled_version(template.version, version_mask, submission.version_bits)?;
        let key = (
            submission.extranonce2,
            submission.ntime,
            submission.nonce,
            version,
        );
        if sent.seen.contains(&key) {
            return Err(StratumError::Duplicate);
        }
        if sent.seen.len() >= max_seen {
            return Err(StratumError::TooManySubmissions);
        }
        sent.seen.insert(key);

        let shared = self.shared.clone();
        let extranonce1 = sent.extranonce1;
        let target = sent.target;
        let difficulty = sent.difficulty;
        let request_id = request.id.clone();
        Ok(Box::pin(async move {
            let outcome = verify_off_loop(Submit {
                shared,
                template,
                extranonce1,
                submission,
                version,
                target,
                miner: identity,
                username: username.clone(),
            })
            .await;
            Verified {
                id: request_id,
                username,
                difficulty,
                outcome,
            }
        }))
    }

    /// Puts `answer` before what handling its request queued from `mark` on (miners expect
    /// the authorize answer before the first job, say).
    fn insert_answer(&mut self, mark: usize, answer: &[u8]) {
        let follow_up = self.out.split_off(mark.min(self.out.len()));
        self.out.extend_from_slice(answer);
        self.out.extend_from_slice(&follow_up);
    }

    /// Charges a rejected submission to the connection (see [`super::penalty`]): slows it
    /// once its credit is spent, closes it once it owes a whole burst more.
    fn charge(&mut self, error: &StratumError) -> Result<(), SessionError> {
        let limit = &self.shared.config.invalid_submissions;
        let now = Instant::now();
        match self.credit.rejected(limit, now, error) {
            Standing::Good => Ok(()),
            Standing::Slowed { first } => {
                if first {
                    self.shared
                        .stats
                        .slowed_connections
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        peer = %self.peer,
                        invalid = self.credit.invalid,
                        "stratum: slowing a connection that sends invalid submissions"
                    );
                }
                if !limit.slowdown.is_zero() {
                    self.read_paused_until = Some(now + limit.slowdown);
                }
                Ok(())
            }
            Standing::Closed => Err(SessionError::TooManyInvalid {
                invalid: self.credit.invalid,
            }),
        }
    }

    fn finish_submit(&mut self, done: Verified) -> Result<(), SessionError> {
        let mark = self.out.len();
        let answer = match done.outcome {
            Ok((share, block)) => {
                self.shared
                    .stats
                    .record_accepted(&done.username, done.difficulty, share, block);
                if share || block {
                    tracing::info!(
                        peer = %self.peer,
                        worker = %done.username,
                        share,
                        block,
                        "stratum: solution found"
                    );
                }
                let now = Instant::now();
                self.credit
                    .accepted(&self.shared.config.invalid_submissions, now);
                if self.fixed_difficulty.is_none() {
                    let current = self.sent_difficulty.unwrap_or(self.difficulty);
                    let cfg = &self.shared.config.vardiff;
                    if let Some(new) = self.vardiff.record_share(now, cfg, current) {
                        self.set_session_difficulty(new);
                    }
                }
                messages::response_ok(&done.id, Value::Bool(true))
            }
            Err(e) => {
                self.shared
                    .stats
                    .record_rejected(Some(&done.username), e.code());
                self.charge(&e)?;
                messages::response_err(&done.id, &e)
            }
        };
        self.insert_answer(mark, &answer);
        Ok(())
    }
}

/// A submission to verify: its job, its connection's extranonce and target, and who sent it.
struct Submit<W: WorkSource> {
    shared: Arc<Shared<W>>,
    template: Arc<job::JobTemplate<W::Payload>>,
    extranonce1: [u8; 4],
    submission: Submission,
    version: u32,
    target: Target,
    miner: Arc<W::Identity>,
    username: String,
}

/// A submission queued on the verification pool, answered through `reply`.
struct SubmitCheck<W: WorkSource> {
    submit: Submit<W>,
    coinbase: Vec<u8>,
    header: [u8; 80],
    reply: oneshot::Sender<Result<(bool, bool), StratumError>>,
    /// Its verification slot, given back when the check is done (or dropped).
    _slot: OwnedSemaphorePermit,
}

impl<W: WorkSource> Check for SubmitCheck<W> {
    fn header(&mut self) -> [u8; 80] {
        let s = &self.submit;
        let (coinbase, header) =
            job::submitted_header(&s.template, &s.extranonce1, &s.submission, s.version);
        self.coinbase = coinbase;
        self.header = header;
        header
    }

    /// Hands a share or block to the node (from the pool thread) and answers the session.
    fn finish(self: Box<Self>, pow_hash: [u8; 32]) {
        let SubmitCheck {
            submit: s,
            coinbase,
            header,
            reply,
            _slot,
        } = *self;
        let verdict = job::judge(&s.template, header, coinbase, pow_hash, s.target);
        if !verdict.accepted() {
            let _ = reply.send(Err(StratumError::LowDifficulty));
            return;
        }
        let (share, block) = (verdict.meets_share_target, verdict.meets_block_target);
        let aux = verdict.meets_aux_target;
        if share || block || aux {
            s.shared.work.on_solution(Solution {
                header: verdict.header,
                pow_hash: verdict.pow_hash,
                coinbase: verdict.coinbase,
                job: s.template,
                extranonce1: s.extranonce1,
                extranonce2: s.submission.extranonce2,
                ntime: s.submission.ntime,
                nonce: s.submission.nonce,
                version: s.version,
                miner: s.miner,
                username: s.username,
                meets_share_target: share,
                meets_block_target: block,
                meets_aux_target: aux,
            });
        }
        let _ = reply.send(Ok((share, block)));
    }
}

/// Waits for a verification slot (the server-wide bound on queued work), queues the
/// submission on the verification pool and waits for its verdict.
async fn verify_off_loop<W: WorkSource>(submit: Submit<W>) -> Result<(bool, bool), StratumError> {
    let shared = submit.shared.clone();
    let slot = match shared.verify_slots.clone().try_acquire_owned() {
        Ok(slot) => slot,
        Err(TryAcquireError::Closed) => return Err(StratumError::VerificationFailed),
        Err(TryAcquireError::NoPermits) => {
            // Waiting here holds one of this connection's in-flight places, so a connection
            // that keeps submitting stops being read; others are not held up.
            let wait = shared.config.verify_wait;
            match tokio::time::timeout(wait, shared.verify_slots.clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                Ok(Err(_)) => return Err(StratumError::VerificationFailed),
                Err(_) => return Err(StratumError::Busy),
            }
        }
    };
    let (reply, answer) = oneshot::channel();
    let check = Box::new(SubmitCheck {
        submit,
        coinbase: Vec::new(),
        header: [0; 80],
        reply,
        _slot: slot,
    });
    if shared.verifier.submit(check).is_err() {
        return Err(StratumError::VerificationFailed);
    }
    answer
        .await
        .unwrap_or(Err(StratumError::VerificationFailed))
}

/// This machine's clock in unix seconds: the clock the share chain judges share times by.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Waits for the job being personalized (pending forever when there is none; the select
/// arm is disabled then anyway).
async fn next_personalized<P>(
    slot: &mut Option<(JobFuture<P>, bool, bool)>,
) -> Option<Arc<Job<P>>> {
    match slot {
        Some((future, _, _)) => future.await,
        None => std::future::pending().await,
    }
}
