//! Targets, compact "bits" and work.
//!
//! A proof-of-work hash meets a target when, read as a 256-bit little-endian integer, it is
//! at most the target. Targets travel in Bitcoin's 32-bit compact form (`nBits`); the rules
//! for decoding it are Bitcoin Core's `SetCompact`, with negative, overflowing and zero
//! values refused. Work is the expected number of hashes to meet a target,
//! `floor(2^256 / (target + 1))`, kept in a `u128` that saturates: no real share can carry
//! 2^128 hashes of work, and saturation keeps hostile extremes from wrapping.

use std::fmt;

use ruint::aliases::U256;
use thiserror::Error;

/// Why a compact target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CompactError {
    #[error("compact target {0:#010x} is negative")]
    Negative(u32),
    #[error("compact target {0:#010x} overflows 256 bits")]
    Overflow(u32),
    #[error("compact target {0:#010x} is zero")]
    Zero(u32),
}

/// A 256-bit proof-of-work target.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target(U256);

impl Target {
    /// The easiest possible target.
    pub const MAX: Target = Target(U256::MAX);

    pub fn from_u256(value: U256) -> Self {
        Target(value)
    }

    pub fn as_u256(&self) -> U256 {
        self.0
    }

    /// Decodes a compact target, refusing negative, overflowing and zero values.
    pub fn from_compact(bits: u32) -> Result<Self, CompactError> {
        let exponent = bits >> 24;
        let mantissa = bits & 0x007f_ffff;
        if bits & 0x0080_0000 != 0 && mantissa != 0 {
            return Err(CompactError::Negative(bits));
        }
        if mantissa != 0
            && (exponent > 34
                || (mantissa > 0xff && exponent > 33)
                || (mantissa > 0xffff && exponent > 32))
        {
            return Err(CompactError::Overflow(bits));
        }
        let value = if exponent <= 3 {
            U256::from(mantissa >> (8 * (3 - exponent)))
        } else {
            U256::from(mantissa) << (8 * (exponent - 3) as usize)
        };
        if value.is_zero() {
            return Err(CompactError::Zero(bits));
        }
        Ok(Target(value))
    }

    /// Encodes to compact form, rounding the mantissa down (Bitcoin Core's `GetCompact`).
    pub fn to_compact(&self) -> u32 {
        let mut size = self.0.byte_len() as u32;
        let mut compact: u32 = if size <= 3 {
            (self.0.to::<u64>() << (8 * (3 - size))) as u32
        } else {
            (self.0 >> (8 * (size - 3) as usize)).to::<u32>()
        };
        if compact & 0x0080_0000 != 0 {
            compact >>= 8;
            size += 1;
        }
        compact | (size << 24)
    }

    /// The target rounded down to what its compact form can express.
    pub fn round_to_compact(&self) -> Self {
        // A compact form produced by `to_compact` of a non-zero target always decodes.
        Target::from_compact(self.to_compact()).unwrap_or(*self)
    }

    /// Whether `hash` (as produced by the hash function, little-endian) meets this target.
    pub fn is_met_by(&self, hash: &[u8; 32]) -> bool {
        U256::from_le_bytes(*hash) <= self.0
    }

    /// Expected hashes to meet this target: `floor(2^256 / (target + 1))`, saturating.
    pub fn work(&self) -> Work {
        if self.0 == U256::MAX {
            return Work(1);
        }
        // 2^256 / (t+1) == (2^256 - 1 - t) / (t + 1) + 1, computed without 257-bit values.
        let t1 = self.0 + U256::from(1u8);
        let w = (U256::MAX - self.0) / t1 + U256::from(1u8);
        Work(w.try_into().unwrap_or(u128::MAX))
    }

    /// The target whose work is `work`: `floor(2^256 / work) - 1`, for `work >= 1`.
    pub fn from_work(work: Work) -> Self {
        if work.0 <= 1 {
            return Target::MAX;
        }
        let w = U256::from(work.0);
        // floor(2^256 / w) - 1 == floor((2^256 - 1) / w) - 1 unless w divides 2^256;
        // for a power of two w, (2^256 - 1) / w is one less than 2^256 / w.
        let q = U256::MAX / w;
        let exact = w.is_power_of_two();
        Target(if exact { q } else { q - U256::from(1u8) })
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({:#066x})", self.0)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:064x}", self.0)
    }
}

/// An amount of work: expected hashes. Sums saturate at `u128::MAX`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Work(pub u128);

impl Work {
    pub const ZERO: Work = Work(0);

    pub fn saturating_add(self, other: Work) -> Work {
        Work(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Work) -> Work {
        Work(self.0.saturating_sub(other.0))
    }
}

impl std::ops::Add for Work {
    type Output = Work;
    fn add(self, other: Work) -> Work {
        self.saturating_add(other)
    }
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, other: Work) {
        *self = self.saturating_add(other);
    }
}

impl std::iter::Sum for Work {
    fn sum<I: Iterator<Item = Work>>(iter: I) -> Work {
        iter.fold(Work::ZERO, Work::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bitcoin_difficulty_one_decodes() {
        let t = Target::from_compact(0x1d00ffff).unwrap();
        assert_eq!(
            t.to_string(),
            "00000000ffff0000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(t.to_compact(), 0x1d00ffff);
        // Difficulty 1 is 2^32 * 65536/65535 hashes, rounded down.
        assert_eq!(t.work(), Work(4_295_032_833));
    }

    #[test]
    fn regtest_bits_decode() {
        let t = Target::from_compact(0x207fffff).unwrap();
        assert_eq!(
            t.to_string(),
            "7fffff0000000000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(t.work(), Work(2));
    }

    #[test]
    fn invalid_compact_forms_are_refused() {
        assert_eq!(
            Target::from_compact(0x04923456),
            Err(CompactError::Negative(0x04923456))
        );
        assert_eq!(
            Target::from_compact(0xff123456),
            Err(CompactError::Overflow(0xff123456))
        );
        assert_eq!(Target::from_compact(0), Err(CompactError::Zero(0)));
        assert_eq!(
            Target::from_compact(0x01003456),
            Err(CompactError::Zero(0x01003456))
        );
    }

    #[test]
    fn small_exponents_follow_bitcoin_core() {
        // Vectors from Bitcoin Core's arith_uint256 tests.
        assert_eq!(
            Target::from_compact(0x01123456).unwrap().as_u256(),
            U256::from(0x12u8)
        );
        assert_eq!(
            Target::from_compact(0x02123456).unwrap().as_u256(),
            U256::from(0x1234u16)
        );
        assert_eq!(
            Target::from_compact(0x03123456).unwrap().as_u256(),
            U256::from(0x123456u32)
        );
        assert_eq!(
            Target::from_compact(0x04123456).unwrap().as_u256(),
            U256::from(0x12345600u32)
        );
        assert_eq!(
            Target::from_compact(0x01123456).unwrap().to_compact(),
            0x01120000
        );
        assert_eq!(
            Target::from_compact(0x05009234).unwrap().to_compact(),
            0x05009234
        );
    }

    #[test]
    fn work_of_extremes() {
        assert_eq!(Target::MAX.work(), Work(1));
        assert_eq!(Target::from_u256(U256::from(1u8)).work(), Work(u128::MAX));
        assert_eq!(Target::from_work(Work(1)), Target::MAX);
        assert_eq!(Target::from_work(Work(2)).as_u256(), U256::MAX >> 1);
    }

    proptest! {
        #[test]
        fn compact_round_trip_is_stable(bits in any::<u32>()) {
            if let Ok(t) = Target::from_compact(bits) {
                let again = Target::from_compact(t.to_compact()).unwrap();
                prop_assert_eq!(again, t);
            }
        }

        #[test]
        fn from_work_inverts_work(w in 2u128..) {
            let t = Target::from_work(Work(w));
            // Rounding can only lose less than one unit of work either way.
            let back = t.work().0;
            prop_assert!(back == w || back == w + 1 || back + 1 == w, "w={w} back={back}");
        }

        #[test]
        fn harder_targets_have_more_work(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let (a, b) = (U256::from_le_bytes(a), U256::from_le_bytes(b));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assume!(!lo.is_zero());
            prop_assert!(Target::from_u256(lo).work() >= Target::from_u256(hi).work());
        }
    }
}
