//! Alerts: what an operator must learn before their miners do. Each alert is logged, kept
//! in a bounded list (`getalerts`), counted by kind (a metric), and, with `--webhook URL`,
//! POSTed there as JSON.
//!
//! [`Watch`] turns the node's state into alerts on transitions (raised once, and once more
//! when it clears): a worker going offline and coming back, a worker's 1-hour hashrate
//! under half its 24-hour one, litecoind not ready, no share-chain peers, out of sync, a
//! found block orphaned; a payout mismatch is raised where it is found; a found block (or aux
//! block) refused by its daemon, from the node's counters. The webhook is fed
//! through a bounded queue and a task of its own, with a timeout and retries, so a slow or
//! dead receiver never blocks mining: when the queue is full, alerts are dropped (and
//! counted in the log) rather than waited for.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Alerts kept for `getalerts`.
pub const MAX_ALERTS: usize = 500;
/// Alerts waiting for the webhook.
const WEBHOOK_QUEUE: usize = 1_000;
/// One webhook POST's time limit.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per alert (the waits between them double from one second).
const WEBHOOK_ATTEMPTS: u32 = 4;

/// One alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub id: u64,
    pub time: u64,
    /// `worker_offline`, `worker_online`, `low_hashrate`, `daemon_not_ready`,
    /// `daemon_ready`, `no_peers`, `peers`, `out_of_sync`, `synced`, `block_orphaned`,
    /// `payout_mismatch`, `block_refused`, `aux_block_refused`.
    pub kind: &'static str,
    /// What it is about: a worker, a block hash, `litecoind`, `p2p`, `sync`.
    pub subject: String,
    pub message: String,
}

/// The kept alerts and the counts by kind.
#[derive(Default)]
struct Log {
    last_id: u64,
    kept: VecDeque<Alert>,
    counts: BTreeMap<&'static str, u64>,
    /// `(kind, subject)` pairs raised with [`Alerts::raise_once`].
    once: HashSet<(&'static str, String)>,
}

/// Most pairs [`Alerts::raise_once`] remembers (then it forgets them all and starts over).
const MAX_ONCE: usize = 10_000;

/// The alert list, the counters and the webhook queue.
pub struct Alerts {
    log: Mutex<Log>,
    webhook: Option<mpsc::Sender<Alert>>,
}

impl Alerts {
    /// Alerts without a webhook.
    pub fn new() -> Alerts {
        Alerts {
            log: Mutex::new(Log::default()),
            webhook: None,
        }
    }

    /// Alerts POSTed to `url` as well; the task delivering them runs until the returned
    /// `Alerts` is dropped. Must be called inside a tokio runtime.
    pub fn with_webhook(url: String) -> Alerts {
        let (tx, rx) = mpsc::channel(WEBHOOK_QUEUE);
        tokio::spawn(deliver(url, rx));
        Alerts {
            webhook: Some(tx),
            ..Alerts::new()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Raises an alert.
    pub fn raise(&self, now: u64, kind: &'static str, subject: String, message: String) {
        let alert = {
            let mut log = self.lock();
            log.last_id += 1;
            let alert = Alert {
                id: log.last_id,
                time: now,
                kind,
                subject,
                message,
            };
            log.kept.push_back(alert.clone());
            while log.kept.len() > MAX_ALERTS {
                log.kept.pop_front();
            }
            *log.counts.entry(kind).or_default() += 1;
            alert
        };
        warn!(kind = alert.kind, subject = %alert.subject, "alert: {}", alert.message);
        if let Some(tx) = &self.webhook {
            if tx.try_send(alert).is_err() {
                warn!("the webhook queue is full: alert not delivered");
            }
        }
    }

    /// Raises an alert unless one of this kind about this subject was raised already (an
    /// API caller asking again about the same block raises nothing new). Returns whether
    /// it was raised.
    pub fn raise_once(
        &self,
        now: u64,
        kind: &'static str,
        subject: String,
        message: String,
    ) -> bool {
        {
            let mut log = self.lock();
            if log.once.len() >= MAX_ONCE {
                log.once.clear();
            }
            if !log.once.insert((kind, subject.clone())) {
                return false;
            }
        }
        self.raise(now, kind, subject, message);
        true
    }

    /// The newest `count` alerts, newest first.
    pub fn newest(&self, count: usize) -> Vec<Alert> {
        self.lock().kept.iter().rev().take(count).cloned().collect()
    }

    /// Alerts raised since start, by kind.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.lock().counts.clone()
    }
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts::new()
    }
}

/// POSTs each alert to `url`, retrying with a doubling wait.
async fn deliver(url: String, mut alerts: mpsc::Receiver<Alert>) {
    let client = match reqwest::Client::builder().timeout(WEBHOOK_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => return warn!(error = %e, "cannot start the webhook client"),
    };
    while let Some(alert) = alerts.recv().await {
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=WEBHOOK_ATTEMPTS {
            match client.post(&url).json(&alert).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => warn!(status = %r.status(), attempt, "the webhook refused an alert"),
                Err(e) => warn!(error = %e, attempt, "cannot deliver an alert to the webhook"),
            }
            if attempt == WEBHOOK_ATTEMPTS {
                warn!(
                    id = alert.id,
                    "alert dropped after {WEBHOOK_ATTEMPTS} attempts"
                );
            } else {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}

/// What [`Watch::check`] looks at, read by the caller.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub now: u64,
    /// Worker → last accepted submission (unix seconds).
    pub workers: Vec<(String, Option<u64>)>,
    /// Workers whose 1-hour hashrate is under half their 24-hour one.
    pub low_hashrate: Vec<String>,
    /// `None` when ready, else the daemon's state.
    pub daemon_problem: Option<String>,
    /// `None` without a network; else the number of connected peers.
    pub peers: Option<usize>,
    /// `None` when in sync (or without a network), else the sync state.
    pub sync_problem: Option<String>,
    /// Hashes of found blocks now orphaned.
    pub orphaned_blocks: Vec<String>,
}

/// The previous state, to raise alerts on transitions only.
#[derive(Default)]
pub struct Watch {
    offline: HashSet<String>,
    low: HashSet<String>,
    daemon: Option<String>,
    no_peers: bool,
    out_of_sync: Option<String>,
    orphaned: HashSet<String>,
    /// Blocks already orphaned at the first check are not news.
    started: bool,
}

impl Watch {
    /// Compares `o` with the previous check and raises what changed.
    pub fn check(&mut self, o: &Observed, offline_after: u64, alerts: &Alerts) {
        let now = o.now;
        for (worker, last) in &o.workers {
            // A worker that never had a submission accepted is not "back" or "offline" yet.
            let offline = last.is_some_and(|t| now.saturating_sub(t) >= offline_after);
            let was = self.offline.contains(worker);
            if offline && !was {
                self.offline.insert(worker.clone());
                alerts.raise(
                    now,
                    "worker_offline",
                    worker.clone(),
                    format!("worker {worker} has submitted nothing for {offline_after} s"),
                );
            } else if !offline && was {
                self.offline.remove(worker);
                alerts.raise(
                    now,
                    "worker_online",
                    worker.clone(),
                    format!("worker {worker} is back"),
                );
            }
        }
        let low: HashSet<String> = o.low_hashrate.iter().cloned().collect();
        for worker in low.difference(&self.low) {
            alerts.raise(
                now,
                "low_hashrate",
                worker.clone(),
                format!("worker {worker}'s 1-hour hashrate is under half its 24-hour average"),
            );
        }
        self.low = low;
        if o.daemon_problem != self.daemon {
            match &o.daemon_problem {
                Some(p) => alerts.raise(
                    now,
                    "daemon_not_ready",
                    "litecoind".into(),
                    format!("litecoind is unreachable or not ready: {p}"),
                ),
                None if self.started => alerts.raise(
                    now,
                    "daemon_ready",
                    "litecoind".into(),
                    "litecoind is ready again".into(),
                ),
                None => {}
            }
            self.daemon = o.daemon_problem.clone();
        }
        let no_peers = o.peers == Some(0);
        if no_peers != self.no_peers {
            if no_peers {
                alerts.raise(
                    now,
                    "no_peers",
                    "p2p".into(),
                    "no share-chain peers: this node mines a chain of its own".into(),
                );
            } else {
                alerts.raise(
                    now,
                    "peers",
                    "p2p".into(),
                    "share-chain peers are back".into(),
                );
            }
            self.no_peers = no_peers;
        }
        if o.sync_problem != self.out_of_sync {
            match &o.sync_problem {
                Some(p) => alerts.raise(
                    now,
                    "out_of_sync",
                    "sync".into(),
                    format!("the share chain is out of sync: {p}"),
                ),
                None => alerts.raise(
                    now,
                    "synced",
                    "sync".into(),
                    "the share chain is in sync".into(),
                ),
            }
            self.out_of_sync = o.sync_problem.clone();
        }
        for hash in &o.orphaned_blocks {
            if self.orphaned.insert(hash.clone()) && self.started {
                alerts.raise(
                    now,
                    "block_orphaned",
                    hash.clone(),
                    format!("block {hash} found by the share chain was orphaned"),
                );
            }
        }
        if !self.started {
            info!("alerts watching");
        }
        self.started = true;
    }
}

impl Alert {
    pub fn to_json(&self) -> Value {
        json!(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_raised_on_transitions_only() {
        let alerts = Alerts::new();
        let mut watch = Watch::default();
        let mut o = Observed {
            now: 1_000,
            workers: vec![("a.rig".into(), Some(990))],
            peers: Some(2),
            ..Observed::default()
        };
        watch.check(&o, 600, &alerts);
        assert!(alerts.newest(10).is_empty());
        o.now = 1_600;
        o.peers = Some(0);
        o.daemon_problem = Some("Unreachable".into());
        watch.check(&o, 600, &alerts);
        watch.check(&o, 600, &alerts);
        let kinds: Vec<&str> = alerts.newest(10).iter().map(|a| a.kind).collect();
        assert_eq!(kinds, ["no_peers", "daemon_not_ready", "worker_offline"]);
        o.workers = vec![("a.rig".into(), Some(1_599))];
        o.orphaned_blocks = vec!["ab".into()];
        watch.check(&o, 600, &alerts);
        let kinds: Vec<&str> = alerts.newest(2).iter().map(|a| a.kind).collect();
        assert_eq!(kinds, ["block_orphaned", "worker_online"]);
        assert_eq!(alerts.counts()["worker_offline"], 1);
    }

    /// From hashrate samples to the alert, as the API's watcher does it: Stratum counters
    /// sampled every 15 s into [`Hashrates`], the workers it flags `low_hashrate` fed to
    /// [`Watch::check`], over 27 simulated hours.
    #[test]
    fn a_worker_whose_hashrate_halves_raises_low_hashrate_once() {
        use crate::hashrate::{Hashrates, SAMPLE_SECS};
        use crate::stratum::{StatsSnapshot, WorkerStats};
        use std::time::{Duration, UNIX_EPOCH};

        const HOUR: u64 = 3_600;
        let hashrates = Hashrates::new(65_536, 600);
        let alerts = Alerts::new();
        let mut watch = Watch::default();
        let t0 = 1_800_000_000;
        // Summed accepted difficulty per second: "steady" always 100; "drops" 100 for 24 h,
        // then 20 (under half), back to 100 at 25 h, then 20 again from 26 h.
        let rate = |worker: &str, t: u64| match (worker, (t - t0) / HOUR) {
            ("a.drops", 24 | 26..) => 20.0,
            _ => 100.0,
        };
        let names = ["a.steady", "a.drops"];
        let mut totals = [0.0f64; 2];
        let mut low_alerts: Vec<(u64, String)> = Vec::new();
        let mut t = t0;
        while t <= t0 + 27 * HOUR {
            let stats = StatsSnapshot {
                workers: names
                    .iter()
                    .zip(&totals)
                    .map(|(name, total)| WorkerStats {
                        username: (*name).into(),
                        accepted: *total as u64,
                        accepted_difficulty: *total,
                        last_accepted: Some(UNIX_EPOCH + Duration::from_secs(t)),
                        ..WorkerStats::default()
                    })
                    .collect(),
                ..StatsSnapshot::default()
            };
            hashrates.sample(t, &stats);
            // What `watch_alerts` (src/api/mod.rs) observes.
            let observed = Observed {
                now: t,
                workers: names.iter().map(|n| ((*n).into(), Some(t))).collect(),
                low_hashrate: hashrates.low_hashrate_workers(t),
                ..Observed::default()
            };
            let before = alerts.counts().get("low_hashrate").copied().unwrap_or(0);
            watch.check(&observed, 600, &alerts);
            if alerts.counts().get("low_hashrate").copied().unwrap_or(0) > before {
                let a = alerts.newest(1).remove(0);
                assert_eq!(a.kind, "low_hashrate");
                assert_eq!(a.time, t);
                assert!(a.message.contains(&a.subject), "{a:?}");
                low_alerts.push((t - t0, a.subject));
            }
            for (i, name) in names.iter().enumerate() {
                totals[i] += rate(name, t) * SAMPLE_SECS as f64;
            }
            t += SAMPLE_SECS;
        }
        // A day at a steady rate (the first hour's thin history included) raises nothing;
        // the drop at 24 h is alerted once, when the 1-hour rate has fallen under half the
        // day's (after 0.625 h at 20 of 100, give or take a 10-minute sample); the recovery
        // raises nothing; the second drop at 26 h is alerted again.
        assert_eq!(low_alerts.len(), 2, "{low_alerts:?}");
        for ((at, subject), dropped) in low_alerts.iter().zip([24 * HOUR, 26 * HOUR]) {
            assert_eq!(subject, "a.drops");
            let after = at - dropped;
            assert!(
                (HOUR / 2..=HOUR + HOUR / 4).contains(&after),
                "raised {after} s after the drop"
            );
        }
        assert!(alerts.newest(10).iter().all(|a| a.kind == "low_hashrate"));
    }

    #[test]
    fn the_list_is_bounded() {
        let alerts = Alerts::new();
        for i in 0..MAX_ALERTS + 3 {
            alerts.raise(i as u64, "peers", "p2p".into(), String::new());
        }
        assert_eq!(alerts.newest(usize::MAX).len(), MAX_ALERTS);
        assert_eq!(alerts.newest(1)[0].id, MAX_ALERTS as u64 + 3);
    }

    #[test]
    fn raise_once_raises_once_per_subject() {
        let alerts = Alerts::new();
        assert!(alerts.raise_once(1, "payout_mismatch", "aa".into(), String::new()));
        assert!(!alerts.raise_once(2, "payout_mismatch", "aa".into(), String::new()));
        assert!(alerts.raise_once(3, "payout_mismatch", "bb".into(), String::new()));
        assert_eq!(alerts.counts()["payout_mismatch"], 2);
        assert_eq!(alerts.newest(10).len(), 2);
    }
}
