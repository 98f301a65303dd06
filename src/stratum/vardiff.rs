//! Variable difficulty: keep each connection near one pseudo-share per target interval.
//!
//! Too easy a difficulty floods the node with submissions (each costs a scrypt hash to
//! check); too hard a one makes the hashrate estimate noisy and the miner look dead. The
//! rule: count accepted submissions over a window; when the window is old enough (or has
//! enough submissions to judge early, so a fast miner is tamed within seconds), scale the
//! difficulty by observed rate / wanted rate, bounded per step and by the configured floor
//! and ceiling, ignoring changes within the tolerance. A window with no submission at all
//! lowers the difficulty as if one had arrived at its end. Time is an argument so the rule
//! is tested without sleeping.

use std::time::Duration;

use tokio::time::Instant;

/// Vardiff settings (also the difficulty floor and ceiling for fixed difficulties).
#[derive(Clone, Debug, PartialEq)]
pub struct VardiffConfig {
    /// Difficulty of a new connection.
    pub initial_difficulty: f64,
    /// No connection's difficulty goes below this, fixed or not.
    pub min_difficulty: f64,
    /// Nor above this.
    pub max_difficulty: f64,
    /// Wanted time between pseudo-shares of one connection.
    pub target_interval: Duration,
    /// Retarget when the window is this old.
    pub retarget_interval: Duration,
    /// Or as soon as it holds this many submissions.
    pub retarget_shares: u32,
    /// Changes smaller than this fraction are skipped (avoids needless `set_difficulty`).
    pub tolerance: f64,
    /// Largest factor of one step, up or down.
    pub max_step: f64,
}

impl Default for VardiffConfig {
    fn default() -> Self {
        VardiffConfig {
            initial_difficulty: 4096.0,
            min_difficulty: 0.01,
            max_difficulty: 1e12,
            target_interval: Duration::from_secs(10),
            retarget_interval: Duration::from_secs(60),
            retarget_shares: 20,
            tolerance: 0.3,
            max_step: 4.0,
        }
    }
}

impl VardiffConfig {
    /// Refuses settings the rule cannot work with.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.min_difficulty) || !positive(self.max_difficulty) {
            return Err("min and max difficulty must be positive".into());
        }
        if self.min_difficulty > self.max_difficulty {
            return Err("min difficulty above max difficulty".into());
        }
        if !positive(self.initial_difficulty) {
            return Err("initial difficulty must be positive".into());
        }
        if self.target_interval.is_zero() || self.retarget_interval.is_zero() {
            return Err("vardiff intervals must be positive".into());
        }
        if self.retarget_shares == 0 {
            return Err("retarget_shares must be positive".into());
        }
        if !(self.tolerance >= 0.0 && self.tolerance < 1.0) {
            return Err("tolerance must be in [0, 1)".into());
        }
        if !(self.max_step.is_finite() && self.max_step > 1.0) {
            return Err("max_step must be above 1".into());
        }
        Ok(())
    }

    /// `difficulty` within the floor and ceiling (non-finite values go to the floor).
    pub fn clamp(&self, difficulty: f64) -> f64 {
        if difficulty.is_nan() {
            return self.min_difficulty;
        }
        difficulty.clamp(self.min_difficulty, self.max_difficulty)
    }
}

/// One connection's vardiff window.
#[derive(Clone, Debug)]
pub struct Vardiff {
    window_start: Instant,
    shares: u32,
}

impl Vardiff {
    pub fn new(now: Instant) -> Self {
        Vardiff {
            window_start: now,
            shares: 0,
        }
    }

    /// Starts a new window (the difficulty changed for another reason).
    pub fn reset(&mut self, now: Instant) {
        self.window_start = now;
        self.shares = 0;
    }

    /// When the current window is due for a retarget even without submissions.
    pub fn deadline(&self, config: &VardiffConfig) -> Instant {
        self.window_start + config.retarget_interval
    }

    /// Counts an accepted submission at `current` difficulty; returns a new difficulty
    /// when one is due.
    pub fn record_share(
        &mut self,
        now: Instant,
        config: &VardiffConfig,
        current: f64,
    ) -> Option<f64> {
        self.shares = self.shares.saturating_add(1);
        if self.shares >= config.retarget_shares || now >= self.deadline(config) {
            self.retarget(now, config, current)
        } else {
            None
        }
    }

    /// Called when the deadline passes with no submission to trigger a retarget.
    pub fn tick(&mut self, now: Instant, config: &VardiffConfig, current: f64) -> Option<f64> {
        if now >= self.deadline(config) {
            self.retarget(now, config, current)
        } else {
            None
        }
    }

    fn retarget(&mut self, now: Instant, config: &VardiffConfig, current: f64) -> Option<f64> {
        let elapsed = now
            .saturating_duration_since(self.window_start)
            .as_secs_f64()
            .max(0.001);
        let shares = f64::from(self.shares.max(1));
        self.reset(now);
        let wanted = config.target_interval.as_secs_f64();
        let observed = elapsed / shares;
        let ratio = (wanted / observed).clamp(1.0 / config.max_step, config.max_step);
        if (ratio - 1.0).abs() <= config.tolerance {
            return None;
        }
        let new = config.clamp(current * ratio);
        (new != current).then_some(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VardiffConfig {
        VardiffConfig {
            initial_difficulty: 1.0,
            min_difficulty: 0.001,
            max_difficulty: 1e6,
            target_interval: Duration::from_secs(10),
            retarget_interval: Duration::from_secs(60),
            retarget_shares: 20,
            tolerance: 0.3,
            max_step: 4.0,
        }
    }

    #[test]
    fn default_config_is_valid() {
        VardiffConfig::default().validate().unwrap();
        let mut bad = config();
        bad.min_difficulty = 2e6;
        assert!(bad.validate().is_err());
        bad = config();
        bad.max_step = 1.0;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn fast_miner_is_raised_early_by_at_most_one_step() {
        let cfg = config();
        let t0 = Instant::now();
        let mut v = Vardiff::new(t0);
        // 20 shares within 2 s: 100x too fast, retargets at the 20th, capped at x4.
        let mut result = None;
        for i in 1..=20u64 {
            result = v.record_share(t0 + Duration::from_millis(100 * i), &cfg, 8.0);
            if i < 20 {
                assert_eq!(result, None);
            }
        }
        assert_eq!(result, Some(32.0));
    }

    #[test]
    fn slightly_fast_miner_moves_proportionally() {
        let cfg = config();
        let t0 = Instant::now();
        let mut v = Vardiff::new(t0);
        // 12 shares in 60 s = one per 5 s: twice too fast.
        for i in 1..12u64 {
            assert_eq!(
                v.record_share(t0 + Duration::from_secs(5 * i), &cfg, 10.0),
                None
            );
        }
        let d = v.record_share(t0 + Duration::from_secs(60), &cfg, 10.0);
        assert_eq!(d, Some(20.0));
    }

    #[test]
    fn on_target_miner_is_left_alone() {
        let cfg = config();
        let t0 = Instant::now();
        let mut v = Vardiff::new(t0);
        for i in 1..=6u64 {
            assert_eq!(
                v.record_share(t0 + Duration::from_secs(10 * i), &cfg, 10.0),
                None
            );
        }
    }

    #[test]
    fn silent_miner_is_lowered_down_to_the_floor() {
        let cfg = config();
        let t0 = Instant::now();
        let mut v = Vardiff::new(t0);
        assert_eq!(v.tick(t0 + Duration::from_secs(59), &cfg, 1.0), None);
        let mut d = 1.0;
        let mut now = t0;
        for _ in 0..10 {
            now = v.deadline(&cfg);
            if let Some(new) = v.tick(now, &cfg, d) {
                assert!(new < d);
                d = new;
            }
        }
        assert_eq!(d, cfg.min_difficulty);
        assert_eq!(v.tick(v.deadline(&cfg), &cfg, d), None);
        assert!(now > t0);
    }

    #[test]
    fn ceiling_holds() {
        let mut cfg = config();
        cfg.max_difficulty = 50.0;
        let t0 = Instant::now();
        let mut v = Vardiff::new(t0);
        let mut out = None;
        for i in 1..=20u64 {
            out = v.record_share(t0 + Duration::from_millis(i), &cfg, 40.0);
        }
        assert_eq!(out, Some(50.0));
    }
}
