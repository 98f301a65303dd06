//! Share difficulty: the target each new share must meet, steered toward the share period.
//!
//! The rule looks at the parent and up to `retarget_window − 1` of its ancestors (newest
//! first, `k` shares in all). The work they did per second is the weight of the newest
//! `k − 1` (own work plus uncles) over the time between the newest and the oldest; the
//! next share should take `share_period_secs` of that:
//!
//! ```text
//! desired = Σ weight(newest k−1) × share_period / max(1, time(newest) − time(oldest))
//! ```
//!
//! `desired` is then clamped to within `retarget_clamp_percent` of the parent's required
//! work (so neither a burst of luck nor lying timestamps move it fast), and never below the
//! work of the easiest share target. The result goes through the compact form, which rounds
//! the target down. A chain's first share, and the child of a share with no known ancestors,
//! inherit the parent's requirement (or the easiest target).

use ruint::aliases::U256;

use crate::params::ConsensusParams;
use crate::target::{Target, Work};

/// What retargeting needs to know about one share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetargetSample {
    pub time: u32,
    /// Own work plus uncles' work.
    pub weight: u128,
    /// The share's required target, compact form.
    pub required_bits: u32,
}

/// The required target (compact) for a child of `lookback[0]`; `lookback` is the parent and
/// its ancestors, newest first, at most `retarget_window` long. Empty means a first share.
pub fn next_required_bits(
    lookback: &[RetargetSample],
    max_share_target: Target,
    params: &ConsensusParams,
) -> u32 {
    let easiest = max_share_target.to_compact();
    let Some(parent) = lookback.first() else {
        return easiest;
    };
    let window = &lookback[..lookback.len().min(params.retarget_window as usize)];
    if window.len() < 2 {
        return parent.required_bits;
    }
    let oldest = window[window.len() - 1];
    let span = u64::from(parent.time.saturating_sub(oldest.time).max(1));
    let work: U256 = window[..window.len() - 1]
        .iter()
        .map(|s| U256::from(s.weight))
        .sum();
    let desired = work * U256::from(params.share_period_secs) / U256::from(span);

    let parent_work = U256::from(
        Target::from_compact(parent.required_bits)
            .map(|t| t.work().0)
            .unwrap_or(1),
    );
    let clamp = U256::from(params.retarget_clamp_percent);
    let hundred = U256::from(100u8);
    let low = parent_work * (hundred - clamp) / hundred;
    let high = parent_work * (hundred + clamp) / hundred;
    let floor = U256::from(max_share_target.work().0);
    let desired = desired.clamp(low, high).max(floor).max(U256::from(1u8));

    let work = Work(desired.try_into().unwrap_or(u128::MAX));
    Target::from_work(work).min(max_share_target).to_compact()
}

/// The median of the timestamps of the parent and its ancestors (newest first), over
/// `median_time_span` shares; a new share's time must be strictly greater.
pub fn median_time_past(times: &[u32], params: &ConsensusParams) -> Option<u32> {
    let span = times.len().min(params.median_time_span as usize);
    if span == 0 {
        return None;
    }
    let mut sorted = times[..span].to_vec();
    sorted.sort_unstable();
    Some(sorted[span / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Preset;
    use proptest::prelude::*;

    fn setup() -> (ConsensusParams, Target) {
        let p = Preset::builtin("litecoin").unwrap();
        (p.consensus.clone(), p.max_share_target())
    }

    fn chain(n: usize, spacing: u32, bits: u32) -> Vec<RetargetSample> {
        let weight = Target::from_compact(bits).unwrap().work().0;
        (0..n)
            .map(|i| RetargetSample {
                time: 1_000_000 - spacing * i as u32,
                weight,
                required_bits: bits,
            })
            .collect()
    }

    fn work_of(bits: u32) -> u128 {
        Target::from_compact(bits).unwrap().work().0
    }

    #[test]
    fn first_share_gets_the_easiest_target() {
        let (p, max) = setup();
        assert_eq!(next_required_bits(&[], max, &p), 0x1e0fffff);
    }

    #[test]
    fn on_period_keeps_the_difficulty() {
        let (p, max) = setup();
        let bits = 0x1d00ffff;
        let next = next_required_bits(&chain(60, 15, bits), max, &p);
        let ratio = work_of(next) as f64 / work_of(bits) as f64;
        assert!((0.999..1.001).contains(&ratio), "{ratio}");
    }

    #[test]
    fn fast_shares_raise_difficulty_by_at_most_the_clamp() {
        let (p, max) = setup();
        let bits = 0x1d00ffff;
        // Shares every 1.5 s: 10x too fast, clamped to +10%.
        let next = next_required_bits(&chain(60, 1, bits), max, &p);
        let ratio = work_of(next) as f64 / work_of(bits) as f64;
        // The compact form rounds the target down: a hair (< 2^-15) over the clamp.
        assert!((1.09..=1.1001).contains(&ratio), "{ratio}");
        // Slow shares lower it by at most 10%.
        let next = next_required_bits(&chain(60, 150, bits), max, &p);
        let ratio = work_of(next) as f64 / work_of(bits) as f64;
        assert!((0.9..0.91).contains(&ratio), "{ratio}");
    }

    #[test]
    fn never_easier_than_the_floor() {
        let (p, max) = setup();
        let next = next_required_bits(&chain(60, 1000, 0x1e0fffff), max, &p);
        assert_eq!(next, 0x1e0fffff);
    }

    #[test]
    fn median_time_past_of_eleven() {
        let (p, _) = setup();
        let times = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10, 11, 100];
        assert_eq!(median_time_past(&times, &p), Some(6));
        assert_eq!(median_time_past(&[], &p), None);
    }

    proptest! {
        #[test]
        fn result_is_within_clamp_and_floor(
            samples in proptest::collection::vec((0u32..2_000_000_000, 1u128..1u128 << 100), 1..70),
            parent_bits_exp in 0x1au32..0x1e,
        ) {
            let (p, max) = setup();
            let parent_bits = (parent_bits_exp << 24) | 0x00ffff;
            let lookback: Vec<RetargetSample> = samples.iter().map(|(t, w)| RetargetSample {
                time: *t, weight: *w, required_bits: parent_bits }).collect();
            let next = next_required_bits(&lookback, max, &p);
            let target = Target::from_compact(next).unwrap();
            prop_assert!(target <= max);
            let (w, pw) = (work_of(next), work_of(parent_bits));
            // Compact rounding can add a hair of work; the clamp allows 10%.
            prop_assert!(w as f64 <= pw as f64 * 1.1001 + 1.0);
            prop_assert!(w as f64 >= (pw as f64 * 0.9).min(max.work().0 as f64) * 0.9999);
        }
    }
}
