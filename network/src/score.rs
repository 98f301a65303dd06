//! Peer scoring, bans and inbound request rate limits.
//!
//! Each misbehaviour costs a peer a fixed penalty; scores decay back toward zero with a
//! half-life, so an honest peer that once relayed a bad share recovers, while a peer that
//! keeps misbehaving falls to the ban threshold. A banned peer is disconnected and its
//! PeerId (and IP address, unless loopback) refused for the ban duration.
//!
//! Pure logic with the current time passed in, so it is tested without sleeping; the
//! connection gate ([`crate::gate`]) applies its verdicts to the swarm. Every map is bounded
//! by [`ScoreConfig::max_tracked`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use crate::config::ScoreConfig;

/// Kinds of peer misbehaviour, each with its penalty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Misbehaviour {
    /// Bytes that do not decode (sync frames, or a gossiped share the node cannot parse).
    Garbage,
    /// A frame over the size limit.
    Oversized,
    /// A share that decodes but breaks a consensus rule.
    InvalidShare,
    /// A sync request beyond the limits (e.g. too long a locator).
    RequestOverLimits,
    /// Sync requests faster than the rate limit (charged per excess request).
    Flood,
    /// A sync response that does not answer the request (wrong kind, more shares than asked).
    UnexpectedResponse,
    /// A chain's first share sent to a node that holds a chain: valid work, perhaps from an
    /// honest node that started a chain at the same moment, so charged mildly; a stream of
    /// them (cheap to mine on an easy target) still bans.
    RefusedRoot,
    /// Anything else the node judges bad; small penalty.
    Other,
}

impl Misbehaviour {
    /// Score points this costs. With the default threshold of -100: four invalid shares, two
    /// oversized frames or nine excess requests in quick succession get a peer banned. (No
    /// penalty divides 100 exactly: decay between two penalties would leave the sum a hair
    /// above the threshold.)
    pub fn penalty(self) -> f64 {
        match self {
            Misbehaviour::Garbage => 30.0,
            Misbehaviour::Oversized => 60.0,
            Misbehaviour::InvalidShare => 30.0,
            Misbehaviour::RequestOverLimits => 30.0,
            Misbehaviour::Flood => 12.0,
            Misbehaviour::UnexpectedResponse => 30.0,
            Misbehaviour::RefusedRoot => 12.0,
            Misbehaviour::Other => 10.0,
        }
    }
}

/// What a penalty led to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PenaltyOutcome {
    /// The peer's score after the penalty.
    pub score: f64,
    /// `Some(until)` if this penalty got the peer banned.
    pub banned_until: Option<Instant>,
}

#[derive(Clone, Copy, Debug)]
struct PeerRecord {
    score: f64,
    score_at: Instant,
    tokens: f64,
    tokens_at: Instant,
}

/// Scores, bans and request buckets.
#[derive(Debug)]
pub struct Scoreboard {
    cfg: ScoreConfig,
    peers: HashMap<PeerId, PeerRecord>,
    banned_peers: HashMap<PeerId, Instant>,
    banned_ips: HashMap<IpAddr, Instant>,
}

impl Scoreboard {
    pub fn new(cfg: ScoreConfig) -> Self {
        Scoreboard {
            cfg,
            peers: HashMap::new(),
            banned_peers: HashMap::new(),
            banned_ips: HashMap::new(),
        }
    }

    fn fresh(&self, now: Instant) -> PeerRecord {
        PeerRecord {
            score: 0.0,
            score_at: now,
            tokens: self.cfg.request_burst,
            tokens_at: now,
        }
    }

    fn decayed(&self, rec: &PeerRecord, now: Instant) -> f64 {
        let half_life = self.cfg.decay_half_life.as_secs_f64();
        if half_life <= 0.0 {
            return 0.0;
        }
        let elapsed = now.saturating_duration_since(rec.score_at).as_secs_f64();
        rec.score * 0.5f64.powf(elapsed / half_life)
    }

    fn record(&mut self, peer: PeerId, now: Instant) -> &mut PeerRecord {
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.cfg.max_tracked {
            // Forget the peer with the best (least negative) score: it matters least.
            let best = self
                .peers
                .iter()
                .max_by(|a, b| a.1.score.total_cmp(&b.1.score))
                .map(|(p, _)| *p);
            if let Some(p) = best {
                self.peers.remove(&p);
            }
        }
        let fresh = self.fresh(now);
        self.peers.entry(peer).or_insert(fresh)
    }

    /// The peer's current score (0 for an unknown peer).
    pub fn score(&self, peer: &PeerId, now: Instant) -> f64 {
        self.peers
            .get(peer)
            .map(|r| self.decayed(r, now))
            .unwrap_or(0.0)
    }

    /// Charges `kind` to `peer`; bans it (and `ips`) if its score reaches the threshold.
    pub fn penalize(
        &mut self,
        peer: PeerId,
        kind: Misbehaviour,
        ips: &[IpAddr],
        now: Instant,
    ) -> PenaltyOutcome {
        let current = self.score(&peer, now);
        let score = current - kind.penalty();
        let rec = self.record(peer, now);
        rec.score = score;
        rec.score_at = now;
        let banned_until = if score <= self.cfg.ban_threshold && !self.is_peer_banned(&peer, now) {
            Some(self.ban(peer, ips, now))
        } else {
            None
        };
        PenaltyOutcome {
            score,
            banned_until,
        }
    }

    /// Bans `peer` and the non-loopback `ips` for the ban duration; returns when it ends.
    pub fn ban(&mut self, peer: PeerId, ips: &[IpAddr], now: Instant) -> Instant {
        let until = now + self.cfg.ban_duration;
        let max = self.cfg.max_tracked;
        insert_bounded(&mut self.banned_peers, peer, until, max);
        for ip in ips {
            if !ip.is_loopback() {
                insert_bounded(&mut self.banned_ips, *ip, until, max);
            }
        }
        until
    }

    pub fn is_peer_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.banned_peers
            .get(peer)
            .is_some_and(|until| *until > now)
    }

    /// Loopback addresses are never banned.
    pub fn is_ip_banned(&self, ip: &IpAddr, now: Instant) -> bool {
        !ip.is_loopback() && self.banned_ips.get(ip).is_some_and(|until| *until > now)
    }

    /// Current peer bans and when they end.
    pub fn banned_peers(&self, now: Instant) -> Vec<(PeerId, Duration)> {
        self.banned_peers
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(p, until)| (*p, until.saturating_duration_since(now)))
            .collect()
    }

    /// Takes one request token from `peer`'s bucket; false if it is empty (a flood).
    pub fn allow_request(&mut self, peer: PeerId, now: Instant) -> bool {
        let rate = self.cfg.request_rate;
        let burst = self.cfg.request_burst;
        let rec = self.record(peer, now);
        let elapsed = now.saturating_duration_since(rec.tokens_at).as_secs_f64();
        rec.tokens = (rec.tokens + elapsed * rate).min(burst);
        rec.tokens_at = now;
        if rec.tokens >= 1.0 {
            rec.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops expired bans, and forgets a disconnected peer whose score has decayed to about
    /// zero (a reconnecting peer keeps a bad score until it decays).
    pub fn expire(&mut self, now: Instant, connected: impl Fn(&PeerId) -> bool) {
        self.banned_peers.retain(|_, until| *until > now);
        self.banned_ips.retain(|_, until| *until > now);
        let cfg_half_life = self.cfg.decay_half_life;
        let forget: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(p, r)| {
                !connected(p)
                    && (self.decayed(r, now) > -1.0 || cfg_half_life.is_zero())
                    && !self.banned_peers.contains_key(p)
            })
            .map(|(p, _)| *p)
            .collect();
        for p in forget {
            self.peers.remove(&p);
        }
    }

    /// Number of peers with a score record.
    pub fn tracked(&self) -> usize {
        self.peers.len()
    }
}

/// Inserts into a ban map, evicting the ban that ends soonest when full.
fn insert_bounded<K: std::hash::Hash + Eq + Copy>(
    map: &mut HashMap<K, Instant>,
    key: K,
    until: Instant,
    max: usize,
) {
    if !map.contains_key(&key) && map.len() >= max.max(1) {
        let soonest = map.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k);
        if let Some(k) = soonest {
            map.remove(&k);
        }
    }
    map.insert(key, until);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> ScoreConfig {
        ScoreConfig {
            ban_threshold: -100.0,
            decay_half_life: Duration::from_secs(100),
            ban_duration: Duration::from_secs(1000),
            request_rate: 2.0,
            request_burst: 4.0,
            max_tracked: 8,
        }
    }

    #[test]
    fn repeated_invalid_shares_ban_the_peer_and_its_ip() {
        let mut sb = Scoreboard::new(cfg());
        let now = Instant::now();
        let peer = PeerId::random();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for i in 1..=3 {
            let out = sb.penalize(peer, Misbehaviour::InvalidShare, &[ip, lo], now);
            assert_eq!(out.score, -30.0 * i as f64);
            assert_eq!(out.banned_until, None);
        }
        assert!(!sb.is_peer_banned(&peer, now));
        let out = sb.penalize(peer, Misbehaviour::InvalidShare, &[ip, lo], now);
        assert_eq!(out.banned_until, Some(now + Duration::from_secs(1000)));
        assert!(sb.is_peer_banned(&peer, now));
        assert!(sb.is_ip_banned(&ip, now));
        assert!(!sb.is_ip_banned(&lo, now), "loopback is never banned");
        assert!(!sb.is_peer_banned(&PeerId::random(), now));
        // The ban ends.
        let later = now + Duration::from_secs(1001);
        assert!(!sb.is_peer_banned(&peer, later));
        assert!(!sb.is_ip_banned(&ip, later));
        sb.expire(later, |_| false);
        assert!(sb.banned_peers(later).is_empty());
    }

    #[test]
    fn scores_decay_with_the_half_life() {
        let mut sb = Scoreboard::new(cfg());
        let now = Instant::now();
        let peer = PeerId::random();
        sb.penalize(peer, Misbehaviour::InvalidShare, &[], now);
        assert_eq!(sb.score(&peer, now), -30.0);
        let s = sb.score(&peer, now + Duration::from_secs(100));
        assert!((s + 15.0).abs() < 1e-9, "{s}");
        // Decayed penalties do not add up to a ban: 5 x 30 spread over time stays above -100,
        // where 4 at once would ban.
        for t in [200, 400, 600, 700] {
            let at = now + Duration::from_secs(t);
            let out = sb.penalize(peer, Misbehaviour::InvalidShare, &[], at);
            assert!(out.banned_until.is_none(), "{out:?}");
        }
        // Forgotten once decayed and disconnected, kept while connected.
        let far = now + Duration::from_secs(10_000);
        sb.expire(far, |_| true);
        assert_eq!(sb.tracked(), 1);
        sb.expire(far, |_| false);
        assert_eq!(sb.tracked(), 0);
    }

    #[test]
    fn request_bucket_allows_burst_then_rate() {
        let mut sb = Scoreboard::new(cfg());
        let now = Instant::now();
        let peer = PeerId::random();
        let allowed = (0..10).filter(|_| sb.allow_request(peer, now)).count();
        assert_eq!(allowed, 4, "the burst");
        // 2 per second refill.
        let t1 = now + Duration::from_millis(1000);
        let allowed = (0..10).filter(|_| sb.allow_request(peer, t1)).count();
        assert_eq!(allowed, 2);
        // Another peer has its own bucket.
        assert!(sb.allow_request(PeerId::random(), t1));
    }

    #[test]
    fn maps_stay_bounded() {
        let mut sb = Scoreboard::new(cfg());
        let now = Instant::now();
        for i in 0..100u32 {
            let p = PeerId::random();
            sb.penalize(p, Misbehaviour::Other, &[], now);
            let ip = IpAddr::from([198, 51, (i / 256) as u8, (i % 256) as u8]);
            sb.ban(p, &[ip], now + Duration::from_secs(u64::from(i)));
        }
        assert!(sb.tracked() <= 8);
        assert!(sb.banned_peers.len() <= 8);
        assert!(sb.banned_ips.len() <= 8);
        // The newest bans (ending last) are the ones kept.
        let last_ip = IpAddr::from([198, 51, 0, 99]);
        assert!(sb.is_ip_banned(&last_ip, now + Duration::from_secs(100)));
    }

    proptest! {
        #[test]
        fn score_never_rises_above_zero_and_bans_only_at_threshold(
            steps in proptest::collection::vec((0usize..7, 0u64..500), 1..40)
        ) {
            let kinds = [
                Misbehaviour::Garbage, Misbehaviour::Oversized, Misbehaviour::InvalidShare,
                Misbehaviour::RequestOverLimits, Misbehaviour::Flood,
                Misbehaviour::UnexpectedResponse, Misbehaviour::Other,
            ];
            let mut sb = Scoreboard::new(cfg());
            let peer = PeerId::random();
            let mut now = Instant::now();
            for (k, dt) in steps {
                now += Duration::from_secs(dt);
                let out = sb.penalize(peer, kinds[k], &[], now);
                prop_assert!(out.score < 0.0);
                if out.banned_until.is_some() {
                    prop_assert!(out.score <= -100.0);
                }
                prop_assert!(sb.score(&peer, now) <= 0.0);
            }
        }
    }
}
