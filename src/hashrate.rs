//! Hashrates of this node's workers and payout addresses, from their pseudo-shares.
//!
//! Stratum counts, per worker, the summed difficulty of accepted submissions
//! ([`crate::stratum::WorkerStats::accepted_difficulty`]). [`Hashrates::sample`] reads that
//! counter every [`SAMPLE_SECS`] and keeps two rings of `(time, total)` per worker: one
//! sample per [`SAMPLE_SECS`] over the last 10 minutes, one per 10 minutes over the last
//! 24 hours; a rate over a span is the counter's growth over the span, times the hashes
//! one unit of difficulty stands for. Memory is bounded: about 190 samples per worker,
//! at most [`MAX_WORKERS`] workers (the least recently active dropped first), and a worker
//! silent for 24 hours is forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::stratum::username::Username;
use crate::stratum::StatsSnapshot;

/// Seconds between samples.
pub const SAMPLE_SECS: u64 = 15;
/// Most workers followed.
pub const MAX_WORKERS: usize = 20_000;
const TEN_MINUTES: u64 = 600;
const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;

/// `(unix seconds, summed accepted difficulty)`, oldest first.
#[derive(Default)]
struct Series {
    recent: VecDeque<(u64, f64)>,
    tens: VecDeque<(u64, f64)>,
}

impl Series {
    fn push(&mut self, now: u64, total: f64) {
        if self
            .recent
            .back()
            .is_none_or(|(t, _)| now >= t + SAMPLE_SECS)
        {
            self.recent.push_back((now, total));
            while self
                .recent
                .front()
                .is_some_and(|(t, _)| *t + TEN_MINUTES + SAMPLE_SECS < now)
            {
                self.recent.pop_front();
            }
        }
        if self.tens.back().is_none_or(|(t, _)| now >= t + TEN_MINUTES) {
            self.tens.push_back((now, total));
            while self
                .tens
                .front()
                .is_some_and(|(t, _)| *t + DAY + TEN_MINUTES < now)
            {
                self.tens.pop_front();
            }
        }
    }

    /// Difficulty per second over (about) the last `span` seconds: from the oldest sample
    /// within the span to the newest. `None` until two samples are apart.
    fn rate(&self, span: u64) -> Option<f64> {
        let ring = if span <= TEN_MINUTES {
            &self.recent
        } else {
            &self.tens
        };
        let &(t1, v1) = self.recent.back()?;
        let &(t0, v0) = ring.iter().find(|(t, _)| *t + span >= t1)?;
        (t1 > t0).then(|| (v1 - v0).max(0.0) / (t1 - t0) as f64)
    }
}

struct Worker {
    address: String,
    series: Series,
    accepted: u64,
    rejected: u64,
    shares: u64,
    /// Last accepted submission (unix seconds).
    last_accepted: Option<u64>,
    /// Last time its counters moved (or it was first seen).
    last_active: u64,
}

/// One worker's or address's rates, in hashes per second.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rates {
    pub h10m: Option<f64>,
    pub h1h: Option<f64>,
    pub h24h: Option<f64>,
}

impl Rates {
    fn add(&mut self, other: &Rates) {
        let sum = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        self.h10m = sum(self.h10m, other.h10m);
        self.h1h = sum(self.h1h, other.h1h);
        self.h24h = sum(self.h24h, other.h24h);
    }

    pub fn to_json(&self) -> Value {
        json!({"10m": self.h10m, "1h": self.h1h, "24h": self.h24h})
    }
}

/// A worker's view for the API.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerView {
    pub username: String,
    pub address: String,
    pub rates: Rates,
    pub accepted: u64,
    pub rejected: u64,
    pub shares: u64,
    pub last_accepted: Option<u64>,
    pub online: bool,
    /// The 1-hour rate is under half the 24-hour rate.
    pub low_hashrate: bool,
}

impl WorkerView {
    pub fn to_json(&self) -> Value {
        json!({
            "username": self.username,
            "address": self.address,
            "hashrate": self.rates.to_json(),
            "accepted": self.accepted,
            "rejected": self.rejected,
            "shares": self.shares,
            "last_accepted": self.last_accepted,
            "online": self.online,
            "low_hashrate": self.low_hashrate,
        })
    }
}

/// The followed workers.
pub struct Hashrates {
    /// Hashes one unit of Stratum difficulty stands for (`2^32 / multiplier`).
    hashes_per_difficulty: f64,
    /// A worker with no accepted submission for this long is offline.
    offline_after: u64,
    workers: Mutex<HashMap<String, Worker>>,
}

impl Hashrates {
    pub fn new(stratum_difficulty_multiplier: u32, offline_after_secs: u64) -> Hashrates {
        Hashrates {
            hashes_per_difficulty: 4_294_967_296.0
                / f64::from(stratum_difficulty_multiplier.max(1)),
            offline_after: offline_after_secs,
            workers: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds without an accepted submission after which a worker is offline.
    pub fn offline_after(&self) -> u64 {
        self.offline_after
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the Stratum counters at `now`.
    pub fn sample(&self, now: u64, stats: &StatsSnapshot) {
        let mut workers = self.lock();
        for w in &stats.workers {
            let address = Username::parse(&w.username)
                .map(|u| u.address)
                .unwrap_or_default();
            let entry = workers.entry(w.username.clone()).or_insert_with(|| Worker {
                address,
                series: Series::default(),
                accepted: 0,
                rejected: 0,
                shares: 0,
                last_accepted: None,
                last_active: now,
            });
            if w.accepted != entry.accepted || w.rejected != entry.rejected {
                entry.last_active = now;
            }
            entry.accepted = w.accepted;
            entry.rejected = w.rejected;
            entry.shares = w.shares;
            entry.last_accepted = w
                .last_accepted
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            entry.series.push(now, w.accepted_difficulty);
        }
        workers.retain(|_, w| w.last_active + DAY > now);
        if workers.len() > MAX_WORKERS {
            let mut by_activity: Vec<(u64, String)> = workers
                .iter()
                .map(|(name, w)| (w.last_active, name.clone()))
                .collect();
            by_activity.sort_unstable();
            let excess = workers.len() - MAX_WORKERS;
            for (_, name) in by_activity.into_iter().take(excess) {
                workers.remove(&name);
            }
        }
    }

    fn rates_of(&self, w: &Worker) -> Rates {
        let h = |span| w.series.rate(span).map(|r| r * self.hashes_per_difficulty);
        Rates {
            h10m: h(TEN_MINUTES),
            h1h: h(HOUR),
            h24h: h(DAY),
        }
    }

    fn view(&self, username: &str, w: &Worker, now: u64) -> WorkerView {
        let rates = self.rates_of(w);
        let low_hashrate = match (rates.h1h, rates.h24h) {
            (Some(hour), Some(day)) => {
                // Only once the day's span is longer than the hour's: otherwise both read
                // the same samples.
                let span = w
                    .series
                    .tens
                    .front()
                    .map_or(0, |(t, _)| now.saturating_sub(*t));
                span > HOUR && hour < day / 2.0
            }
            _ => false,
        };
        WorkerView {
            username: username.to_owned(),
            address: w.address.clone(),
            rates,
            accepted: w.accepted,
            rejected: w.rejected,
            shares: w.shares,
            last_accepted: w.last_accepted,
            online: w
                .last_accepted
                .is_some_and(|t| now.saturating_sub(t) < self.offline_after),
            low_hashrate,
        }
    }

    /// Every followed worker (or those paying `address`), by username.
    /// The workers whose 1-hour hashrate is under half their 24-hour average (what the
    /// `low_hashrate` alert watches).
    pub fn low_hashrate_workers(&self, now: u64) -> Vec<String> {
        self.workers(now, None)
            .into_iter()
            .filter(|w| w.low_hashrate)
            .map(|w| w.username)
            .collect()
    }

    pub fn workers(&self, now: u64, address: Option<&str>) -> Vec<WorkerView> {
        let workers = self.lock();
        let mut out: Vec<WorkerView> = workers
            .iter()
            .filter(|(_, w)| address.is_none_or(|a| w.address == a))
            .map(|(name, w)| self.view(name, w, now))
            .collect();
        out.sort_by(|a, b| a.username.cmp(&b.username));
        out
    }

    /// Per payout address: the sum of its workers' rates.
    pub fn addresses(&self, now: u64) -> Vec<(String, Rates)> {
        let mut by_address: HashMap<String, Rates> = HashMap::new();
        for v in self.workers(now, None) {
            by_address
                .entry(v.address.clone())
                .or_default()
                .add(&v.rates);
        }
        let mut out: Vec<(String, Rates)> = by_address.into_iter().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The summed rates of `address`'s workers (`None` if it has none).
    pub fn address(&self, now: u64, address: &str) -> Option<Rates> {
        let views = self.workers(now, Some(address));
        (!views.is_empty()).then(|| {
            let mut r = Rates::default();
            for v in &views {
                r.add(&v.rates);
            }
            r
        })
    }

    /// All workers' summed rates.
    pub fn local(&self, now: u64) -> Rates {
        let mut r = Rates::default();
        for v in self.workers(now, None) {
            r.add(&v.rates);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stratum::WorkerStats;
    use std::time::{Duration, UNIX_EPOCH};

    fn stats(name: &str, difficulty: f64, last: u64) -> StatsSnapshot {
        StatsSnapshot {
            workers: vec![WorkerStats {
                username: name.into(),
                accepted: difficulty as u64,
                accepted_difficulty: difficulty,
                last_accepted: Some(UNIX_EPOCH + Duration::from_secs(last)),
                ..WorkerStats::default()
            }],
            ..StatsSnapshot::default()
        }
    }

    #[test]
    fn rates_follow_the_difficulty_counter() {
        // Multiplier 2^32: one unit of difficulty is one hash.
        let h = Hashrates::new(u32::MAX, 600);
        let t0 = 1_000_000;
        // 10 difficulty per second for an hour, then 1 per second for an hour.
        let mut total = 0.0;
        for i in 0..=480u64 {
            let now = t0 + i * SAMPLE_SECS;
            h.sample(now, &stats("addr.rig", total, now));
            total += if i < 240 { 150.0 } else { 15.0 };
        }
        let now = t0 + 480 * SAMPLE_SECS;
        let v = &h.workers(now, None)[0];
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() / b < 0.05;
        assert!(close(v.rates.h10m, 1.0), "{v:?}");
        assert!(close(v.rates.h1h, 1.0), "{v:?}");
        assert!(close(v.rates.h24h, 5.5), "{v:?}");
        assert!(v.online);
        assert!(v.low_hashrate, "{v:?}");
        assert_eq!(v.address, "addr");
        assert!(!h.workers(now + 601, None)[0].online);
    }

    #[test]
    fn memory_stays_bounded() {
        let h = Hashrates::new(65_536, 600);
        let many = StatsSnapshot {
            workers: (0..MAX_WORKERS + 100)
                .map(|i| WorkerStats {
                    username: format!("a.w{i}"),
                    ..WorkerStats::default()
                })
                .collect(),
            ..StatsSnapshot::default()
        };
        h.sample(1_000, &many);
        assert_eq!(h.lock().len(), MAX_WORKERS);
        // Silent for a day: forgotten.
        h.sample(1_000 + DAY, &StatsSnapshot::default());
        assert_eq!(h.lock().len(), 0);
    }
}
