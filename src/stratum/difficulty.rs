//! Stratum difficulty ⇄ 256-bit target.
//!
//! Stratum talks about difficulty as a float relative to a "difficulty 1" target. For
//! SHA-256 miners that target is Bitcoin's `0x00000000ffff0000…`; scrypt miners expect one
//! 65536 times easier (`0x0000ffff0000…`), which `PowAlgorithm::stratum_difficulty_multiplier`
//! gives. Floats are fine here: this only decides which pseudo-shares the node accepts from
//! its own miners, nothing peers must agree on. The share and block targets themselves are
//! always compared exactly.

use ruint::aliases::{U256, U512};
use share_chain::{CoinParams, Target};

/// Bitcoin's difficulty-1 target, `0xffff << 208`.
fn sha256_difficulty_one() -> U256 {
    U256::from(0xffffu32) << 208
}

/// The mapping between stratum difficulty and targets for one coin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DifficultyScale {
    one: Target,
}

impl DifficultyScale {
    /// The scale whose difficulty 1 is `multiplier` times easier than Bitcoin's difficulty 1
    /// (saturating at the easiest target).
    pub fn new(multiplier: u32) -> Self {
        let one = sha256_difficulty_one()
            .checked_mul(U256::from(multiplier.max(1)))
            .unwrap_or(U256::MAX);
        DifficultyScale {
            one: Target::from_u256(one),
        }
    }

    /// The scale a coin's miners expect.
    pub fn from_coin(coin: &CoinParams) -> Self {
        Self::new(coin.pow.stratum_difficulty_multiplier())
    }

    /// The target of stratum difficulty 1.
    pub fn difficulty_one(&self) -> Target {
        self.one
    }

    /// The target of `difficulty`: `one / difficulty`, clamped to `[1, MAX]`. Non-finite or
    /// non-positive difficulties map to the easiest target (callers validate miner input
    /// before it gets here).
    pub fn target(&self, difficulty: f64) -> Target {
        if !difficulty.is_finite() || difficulty <= 0.0 {
            return Target::MAX;
        }
        // one * 2^64 / round(difficulty * 2^64): 64 fractional bits keep tiny and huge
        // difficulties precise; U512 keeps `one * 2^64` from overflowing.
        let scaled = (difficulty * 18_446_744_073_709_551_616.0) as u128; // saturating cast
        let denominator = U512::from(scaled.max(1));
        let numerator = U512::from(self.one.as_u256()) << 64;
        let quotient = numerator / denominator;
        let value = if quotient > U512::from(U256::MAX) {
            U256::MAX
        } else {
            U256::from(quotient).max(U256::from(1u8))
        };
        Target::from_u256(value)
    }

    /// The difficulty of `target`: `one / target`.
    pub fn difficulty(&self, target: Target) -> f64 {
        let t = u256_to_f64(target.as_u256()).max(1.0);
        u256_to_f64(self.one.as_u256()) / t
    }
}

/// A 256-bit integer as the nearest-ish f64 (enough for difficulty arithmetic).
pub fn u256_to_f64(value: U256) -> f64 {
    value
        .as_limbs()
        .iter()
        .enumerate()
        .map(|(i, &limb)| limb as f64 * 2f64.powi(64 * i as i32))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex_target(t: Target) -> String {
        t.to_string()
    }

    #[test]
    fn scrypt_difficulty_one_is_65536_times_sha256_difficulty_one() {
        let scrypt = DifficultyScale::new(65536);
        assert_eq!(
            hex_target(scrypt.target(1.0)),
            "0000ffff00000000000000000000000000000000000000000000000000000000"
        );
        let sha = DifficultyScale::new(1);
        assert_eq!(
            hex_target(sha.target(1.0)),
            "00000000ffff0000000000000000000000000000000000000000000000000000"
        );
        let preset = share_chain::Preset::builtin("litecoin-regtest").unwrap();
        assert_eq!(DifficultyScale::from_coin(&preset.coin), scrypt);
    }

    #[test]
    fn doubling_difficulty_halves_the_target() {
        let scale = DifficultyScale::new(65536);
        assert_eq!(
            hex_target(scale.target(2.0)),
            "00007fff80000000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(
            scale.target(0.5).as_u256(),
            scale.target(1.0).as_u256() << 1
        );
    }

    #[test]
    fn extremes_are_clamped() {
        let scale = DifficultyScale::new(65536);
        assert_eq!(scale.target(1e-30), Target::MAX);
        assert_eq!(scale.target(0.0), Target::MAX);
        assert_eq!(scale.target(-3.0), Target::MAX);
        assert_eq!(scale.target(f64::NAN), Target::MAX);
        assert_eq!(scale.target(f64::INFINITY), Target::MAX);
        // Huge difficulties stay positive targets.
        assert!(scale.target(1e300).as_u256() >= U256::from(1u8));
        assert!(scale.difficulty(Target::from_u256(U256::ZERO)).is_finite());
    }

    #[test]
    fn difficulty_of_the_share_chain_minimum_target() {
        // Regtest's easiest share target 0x207fffff is difficulty 2^-15 * 0xffff/0x7fffff..
        let scale = DifficultyScale::new(65536);
        let t = Target::from_compact(0x207fffff).unwrap();
        let d = scale.difficulty(t);
        assert!(
            (d - 0xffff as f64 / 0x7fffff as f64 / 256.0).abs() < 1e-12,
            "{d}"
        );
    }

    proptest! {
        #[test]
        fn round_trip_is_close(exp in -20.0f64..40.0, mult in prop::sample::select(vec![1u32, 65536])) {
            let scale = DifficultyScale::new(mult);
            let d = 2f64.powf(exp);
            let t = scale.target(d);
            prop_assume!(t != Target::MAX);
            let back = scale.difficulty(t);
            prop_assert!((back / d - 1.0).abs() < 1e-9, "d={d} back={back}");
        }

        #[test]
        fn harder_difficulty_never_gives_an_easier_target(a in 1e-6f64..1e12, b in 1e-6f64..1e12) {
            let scale = DifficultyScale::new(65536);
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(scale.target(hi) <= scale.target(lo));
        }
    }
}
