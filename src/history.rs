//! Hashrate history with tiered retention: 10-minute buckets for 3 days, hourly buckets
//! for 7 days, daily buckets for ever (capped at [`MAX_DAYS`]), for the pool (from the
//! share chain), for this node (all its workers) and for each payout address mined through
//! this node.
//!
//! Every sample (`record`, each [`crate::hashrate::SAMPLE_SECS`]) is added to the open
//! bucket of each tier; a bucket's value is the mean of its samples. Pure and clock-free:
//! time is an argument. Saved as one JSON file in the datadir (`history.json`, written to
//! a temporary file and renamed, so a crash leaves the previous copy) whenever a
//! 10-minute bucket closes; loaded at start, so it survives a restart. At most
//! [`MAX_SERIES`] addresses are kept (the least recently active dropped first): with
//! 10,000 workers memory stays within a few tens of megabytes.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::warn;

/// Most address series kept.
pub const MAX_SERIES: usize = 10_000;
/// Daily buckets kept (about 30 years).
pub const MAX_DAYS: usize = 10_000;
/// The file name under the datadir.
pub const FILE_NAME: &str = "history.json";

/// A retention tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    TenMinutes,
    Hour,
    Day,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::TenMinutes, Tier::Hour, Tier::Day];

    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "10m" => Some(Tier::TenMinutes),
            "1h" => Some(Tier::Hour),
            "1d" => Some(Tier::Day),
            _ => None,
        }
    }

    pub fn secs(self) -> u64 {
        match self {
            Tier::TenMinutes => 600,
            Tier::Hour => 3_600,
            Tier::Day => 86_400,
        }
    }

    /// Buckets kept.
    fn keep(self) -> usize {
        match self {
            Tier::TenMinutes => 3 * 144,
            Tier::Hour => 7 * 24,
            Tier::Day => MAX_DAYS,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One tier of one series: closed buckets `(start, mean)` and the open one.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct Buckets {
    closed: VecDeque<(u64, f32)>,
    open: Option<(u64, f64, u32)>,
}

impl Buckets {
    /// Adds a sample; true if a bucket closed.
    fn add(&mut self, tier: Tier, now: u64, value: f64) -> bool {
        let start = now - now % tier.secs();
        let mut closed = false;
        match &mut self.open {
            Some((s, sum, n)) if *s == start => {
                *sum += value;
                *n += 1;
            }
            open => {
                if let Some((s, sum, n)) = open.take() {
                    self.closed
                        .push_back((s, (sum / f64::from(n.max(1))) as f32));
                    closed = true;
                    while self.closed.len() > tier.keep() {
                        self.closed.pop_front();
                    }
                }
                *open = Some((start, value, 1));
            }
        }
        closed
    }

    fn points(&self) -> Vec<(u64, f64)> {
        self.closed
            .iter()
            .map(|&(t, v)| (t, f64::from(v)))
            .chain(self.open.map(|(t, sum, n)| (t, sum / f64::from(n.max(1)))))
            .collect()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct Series {
    tiers: [Buckets; 3],
    last: u64,
}

impl Series {
    fn add(&mut self, now: u64, value: f64) -> bool {
        self.last = now;
        let mut closed = false;
        for tier in Tier::ALL {
            closed |= self.tiers[tier.index()].add(tier, now, value);
        }
        closed
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct Data {
    pool: Series,
    /// This node's workers together (absent from files written before it was kept).
    #[serde(default)]
    local: Series,
    addresses: BTreeMap<String, Series>,
}

/// Whose hashrate a series is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The whole share chain.
    Pool,
    /// This node's workers together.
    Local,
    /// One payout address's workers on this node.
    Address(&'a str),
}

/// The history, shared by the sampler and the API.
pub struct History {
    path: Option<PathBuf>,
    data: Mutex<Data>,
}

impl History {
    pub fn in_memory() -> History {
        History {
            path: None,
            data: Mutex::new(Data::default()),
        }
    }

    /// Loads `history.json` from `datadir` (absent or unreadable: empty, with a warning).
    pub fn open(datadir: &Path) -> History {
        let path = datadir.join(FILE_NAME);
        let data = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(error = %e, file = %path.display(), "unreadable hashrate history, starting anew");
                Data::default()
            }),
            Err(_) => Data::default(),
        };
        History {
            path: Some(path),
            data: Mutex::new(data),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the pool's, this node's and each address's hashrate at `now`; saves when a
    /// 10-minute bucket closed.
    pub fn record(
        &self,
        now: u64,
        pool: Option<f64>,
        local: Option<f64>,
        addresses: &[(String, f64)],
    ) {
        let mut data = self.lock();
        let mut closed = false;
        if let Some(p) = pool {
            closed |= data.pool.add(now, p);
        }
        if let Some(l) = local {
            closed |= data.local.add(now, l);
        }
        for (address, rate) in addresses {
            closed |= data
                .addresses
                .entry(address.clone())
                .or_default()
                .add(now, *rate);
        }
        if data.addresses.len() > MAX_SERIES {
            let mut by_last: Vec<(u64, String)> = data
                .addresses
                .iter()
                .map(|(a, s)| (s.last, a.clone()))
                .collect();
            by_last.sort_unstable();
            let excess = data.addresses.len() - MAX_SERIES;
            for (_, a) in by_last.into_iter().take(excess) {
                data.addresses.remove(&a);
            }
        }
        if closed {
            self.save(&data);
        }
    }

    fn save(&self, data: &Data) {
        let Some(path) = &self.path else { return };
        let tmp = path.with_extension("json.tmp");
        let result = serde_json::to_vec(data)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            warn!(error = %e, file = %path.display(), "cannot save the hashrate history");
        }
    }

    /// Saves now (at shutdown, or in tests).
    pub fn flush(&self) {
        let data = self.lock();
        self.save(&data);
    }

    /// `[[bucket start, hashes per second], …]` oldest first, or `None` for an unknown
    /// address.
    pub fn points(&self, who: Scope<'_>, tier: Tier) -> Option<Value> {
        let data = self.lock();
        let series = match who {
            Scope::Pool => &data.pool,
            Scope::Local => &data.local,
            Scope::Address(a) => data.addresses.get(a)?,
        };
        Some(json!(series.tiers[tier.index()].points()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_average_and_retain() {
        let h = History::in_memory();
        // Four days of one sample a minute: 100 H/s, then 200 H/s from the third day on.
        let t0: u64 = 19_676 * 86_400; // the start of a day
        for m in 0..4 * 1440u64 {
            let rate = if m < 2 * 1440 { 100.0 } else { 200.0 };
            h.record(
                t0 + m * 60,
                Some(rate),
                Some(rate / 4.0),
                &[("a".into(), rate / 2.0)],
            );
        }
        let tens = h.points(Scope::Pool, Tier::TenMinutes).unwrap();
        assert_eq!(tens.as_array().unwrap().len(), 3 * 144 + 1);
        let days = h.points(Scope::Pool, Tier::Day).unwrap();
        let days = days.as_array().unwrap();
        assert_eq!(days.len(), 4);
        assert_eq!(days[0][1], 100.0);
        assert_eq!(days[3][1], 200.0);
        assert_eq!(days[1][0], t0 + 86_400);
        let local = h.points(Scope::Local, Tier::Day).unwrap();
        assert_eq!(local[0][1], 25.0);
        assert_eq!(local[3][1], 50.0);
        let hours = h.points(Scope::Address("a"), Tier::Hour).unwrap();
        assert_eq!(hours.as_array().unwrap().len(), 96);
        assert!(h.points(Scope::Address("b"), Tier::Hour).is_none());
    }

    #[test]
    fn history_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path());
        for i in 0..30u64 {
            h.record(
                1_800_000_000 + i * 60,
                Some(5.0),
                Some(1.0),
                &[("a".into(), 1.0)],
            );
        }
        let before = h.points(Scope::Address("a"), Tier::TenMinutes).unwrap();
        h.flush();
        drop(h);
        let h = History::open(dir.path());
        assert_eq!(
            h.points(Scope::Address("a"), Tier::TenMinutes).unwrap(),
            before
        );
        assert_eq!(before.as_array().unwrap().len(), 3);
        let local = h.points(Scope::Local, Tier::TenMinutes).unwrap();
        assert_eq!(local.as_array().unwrap().len(), 3);
    }

    #[test]
    fn address_series_stay_bounded() {
        let h = History::in_memory();
        let many: Vec<(String, f64)> = (0..MAX_SERIES + 5)
            .map(|i| (format!("a{i}"), 1.0))
            .collect();
        h.record(1, None, None, &many);
        assert_eq!(h.lock().addresses.len(), MAX_SERIES);
    }
}
