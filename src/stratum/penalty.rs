//! What invalid submissions cost the connection that sends them.
//!
//! Each submission the server cannot credit costs something (one scrypt hash for a bad
//! proof of work, a parse, a lookup): a connection that sends them by the thousand must not
//! ride free. Each connection holds a credit, counted in invalid submissions (a token
//! bucket): it starts full at [`InvalidSubmissionLimit::burst`], an accepted submission
//! earns one back, and time earns [`InvalidSubmissionLimit::forgiven_per_sec`]. An invalid
//! submission spends one; a stale one (a job made obsolete by a new block: every miner has
//! a few in flight then) spends [`STALE_COST`]. Once the credit is spent the connection is
//! slowed (reading from it pauses [`InvalidSubmissionLimit::slowdown`] after each further
//! invalid submission); once it owes another `burst`, it is closed.
//!
//! An honest miner never comes near: its rejects are a small fraction of its accepted
//! submissions, each of which pays for one. Errors that are the server's own (busy,
//! paused, verification failed) cost nothing.

use std::time::Duration;

use tokio::time::Instant;

use super::errors::StratumError;

/// What a stale submission costs, in invalid submissions.
pub const STALE_COST: f64 = 0.1;

/// How a connection's invalid submissions are limited. Not consensus: a local policy.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidSubmissionLimit {
    /// Invalid submissions a connection may send (beyond those its accepted ones pay for)
    /// before it is slowed; as many again and it is closed.
    pub burst: u32,
    /// Invalid submissions forgiven per second.
    pub forgiven_per_sec: u32,
    /// While a connection is in debt, each invalid submission pauses reading from it this
    /// long.
    pub slowdown: Duration,
}

impl Default for InvalidSubmissionLimit {
    fn default() -> Self {
        InvalidSubmissionLimit {
            burst: 100,
            forgiven_per_sec: 1,
            slowdown: Duration::from_millis(100),
        }
    }
}

impl InvalidSubmissionLimit {
    pub fn validate(&self) -> Result<(), String> {
        if self.burst == 0 {
            return Err("invalid_submissions.burst must be positive".into());
        }
        if self.slowdown > Duration::from_secs(60) {
            return Err("invalid_submissions.slowdown must be at most a minute".into());
        }
        Ok(())
    }
}

/// What a rejected submission costs, by its error.
pub fn cost(error: &StratumError) -> f64 {
    match error {
        StratumError::JobNotFound => STALE_COST,
        // The server's own state, not the miner's doing.
        StratumError::VerificationFailed | StratumError::Busy | StratumError::Unavailable(_) => 0.0,
        _ => 1.0,
    }
}

/// The verdict on a connection after an invalid submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Within its credit.
    Good,
    /// In debt: pause reading from it for the slowdown. `first` on the first time.
    Slowed { first: bool },
    /// Owes a whole burst more: close it.
    Closed,
}

/// One connection's credit.
#[derive(Debug)]
pub struct Credit {
    balance: f64,
    updated: Instant,
    slowed: bool,
    /// Invalid submissions charged so far (for the log).
    pub invalid: u64,
}

impl Credit {
    pub fn new(limit: &InvalidSubmissionLimit, now: Instant) -> Self {
        Credit {
            balance: f64::from(limit.burst),
            updated: now,
            slowed: false,
            invalid: 0,
        }
    }

    /// Adds what time has forgiven since the last update, up to the burst.
    fn refill(&mut self, limit: &InvalidSubmissionLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = now;
        self.balance = (self.balance + elapsed * f64::from(limit.forgiven_per_sec))
            .min(f64::from(limit.burst));
    }

    /// An accepted submission earns one back.
    pub fn accepted(&mut self, limit: &InvalidSubmissionLimit, now: Instant) {
        self.refill(limit, now);
        self.balance = (self.balance + 1.0).min(f64::from(limit.burst));
        if self.balance >= 0.0 {
            self.slowed = false;
        }
    }

    /// Charges a rejected submission; says what to do with the connection.
    pub fn rejected(
        &mut self,
        limit: &InvalidSubmissionLimit,
        now: Instant,
        error: &StratumError,
    ) -> Standing {
        let cost = cost(error);
        if cost == 0.0 {
            return Standing::Good;
        }
        self.refill(limit, now);
        self.invalid += 1;
        self.balance -= cost;
        if self.balance <= -f64::from(limit.burst) {
            Standing::Closed
        } else if self.balance < 0.0 {
            let first = !self.slowed;
            self.slowed = true;
            Standing::Slowed { first }
        } else {
            Standing::Good
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit() -> InvalidSubmissionLimit {
        InvalidSubmissionLimit {
            burst: 10,
            forgiven_per_sec: 2,
            slowdown: Duration::from_millis(100),
        }
    }

    #[test]
    fn junk_is_slowed_then_closed() {
        let (limit, now) = (limit(), Instant::now());
        let mut credit = Credit::new(&limit, now);
        for _ in 0..10 {
            assert_eq!(
                credit.rejected(&limit, now, &StratumError::LowDifficulty),
                Standing::Good
            );
        }
        assert_eq!(
            credit.rejected(&limit, now, &StratumError::Duplicate),
            Standing::Slowed { first: true }
        );
        for _ in 0..8 {
            assert_eq!(
                credit.rejected(&limit, now, &StratumError::LowDifficulty),
                Standing::Slowed { first: false }
            );
        }
        assert_eq!(
            credit.rejected(&limit, now, &StratumError::LowDifficulty),
            Standing::Closed
        );
        assert_eq!(credit.invalid, 20);
    }

    #[test]
    fn accepted_submissions_and_time_pay_for_rejects() {
        let (limit, start) = (limit(), Instant::now());
        let mut credit = Credit::new(&limit, start);
        // One reject per accepted submission, forever: never slowed.
        for _ in 0..1000 {
            credit.accepted(&limit, start);
            let s = credit.rejected(&limit, start, &StratumError::LowDifficulty);
            assert_eq!(s, Standing::Good);
        }
        // Spend it all, then wait: two a second come back, capped at the burst.
        for _ in 0..10 {
            credit.rejected(&limit, start, &StratumError::LowDifficulty);
        }
        let later = start + Duration::from_secs(60);
        for _ in 0..10 {
            let s = credit.rejected(&limit, later, &StratumError::LowDifficulty);
            assert_eq!(s, Standing::Good);
        }
        assert!(matches!(
            credit.rejected(&limit, later, &StratumError::LowDifficulty),
            Standing::Slowed { .. }
        ));
    }

    #[test]
    fn stale_is_cheap_and_server_errors_are_free() {
        let (limit, now) = (limit(), Instant::now());
        let mut credit = Credit::new(&limit, now);
        // A hundred stale submissions cost what ten invalid ones do.
        for _ in 0..99 {
            assert_eq!(
                credit.rejected(&limit, now, &StratumError::JobNotFound),
                Standing::Good
            );
        }
        for _ in 0..1000 {
            for e in [
                StratumError::Busy,
                StratumError::VerificationFailed,
                StratumError::Unavailable("x".into()),
            ] {
                assert_eq!(credit.rejected(&limit, now, &e), Standing::Good);
            }
        }
        assert_eq!(
            credit.rejected(&limit, now, &StratumError::UnknownJob),
            Standing::Slowed { first: true }
        );
    }
}
