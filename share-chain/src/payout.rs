//! From PPLNS weights to coinbase amounts: the exact, dust-free rounding rule.
//!
//! Paying `value × weight / total` to every miner in the window leaves fractions to round
//! and, for small miners, outputs too small to spend. p2pool raised small miners' share
//! difficulty; Monero's P2Pool (`quantize_rewards`) found a better answer, used here:
//!
//! 1. The finder of the block gets `B = floor(value × finder_bonus_bp / 10000)`.
//! 2. The rest `R = value − B` is paid in whole multiples of a **step**
//!    `T = max(dust_threshold, ceil(R / (max_payout_outputs − 1)))`: there are
//!    `U = floor(R / T)` steps to hand out, and `R − U·T` (less than one step) goes to the
//!    finder too.
//! 3. Miner `i` with weight `w_i` of total `W` is owed `U·w_i / W` steps. It gets the whole
//!    part for sure, and one more step with probability equal to the fractional part. The
//!    draw is *systematic sampling*: miners in ascending script order lay their fractions
//!    `f_i = (U·w_i) mod W` end to end on a line; points at `s, s + W, s + 2W, …` with
//!    `s = seed mod W` pick the miners whose segment they fall in. Each miner's chance of an
//!    extra step is exactly `f_i / W`, and exactly `Σf_i / W` steps are picked, so amounts
//!    always add up to `value`.
//!
//! Every output is at least one step (never dust), there are at most `max_payout_outputs`
//! of them, and each miner's *expected* payout is exactly its share: a miner owed 0.3 step
//! gets one step in 30% of blocks. The seed comes from the parent share's hash, which the
//! miner of the share cannot grind. All arithmetic is on integers (256-bit where products
//! need it).

use ruint::aliases::U256;

use crate::coinbase::Payout;
use crate::hash::{sha256d, ShareHash};
use crate::params::PayoutRules;

/// The randomness of the rounding draw: `sha256d("p2pool-rs payout seed v1" || prev_share)`.
pub fn payout_seed(prev_share: &ShareHash) -> [u8; 32] {
    let mut data = b"p2pool-rs payout seed v1".to_vec();
    data.extend_from_slice(prev_share.as_bytes());
    sha256d(&data)
}

/// The step every payout is a multiple of, for a reward `reward` left after the bonus.
pub fn payout_step(reward: u64, params: &PayoutRules) -> u64 {
    let slots = u64::from(params.max_payout_outputs.saturating_sub(1).max(1));
    params.dust_threshold.max(reward.div_ceil(slots)).max(1)
}

/// Calls `emit(i, steps)` for each weight in order with its whole steps:
/// `floor(units × w / W)` plus one more for the weights the systematic draw picks. In
/// `u128` when every intermediate value fits, which is every real window; in 256 bits
/// otherwise. Both give the same numbers. `total` is `W`, the sum of the weights, non-zero.
fn draw_steps(
    weights: &[(&[u8], u128)],
    total: U256,
    units: u64,
    seed: &[u8; 32],
    emit: impl FnMut(usize, u64),
) {
    let seed = U256::from_be_bytes(*seed);
    if let Ok(total) = u128::try_from(total) {
        // owed = units × w <= units × total, and the line and the points stay below
        // (n + 1) × total.
        let fits = u128::from(units).checked_mul(total).is_some()
            && (weights.len() as u128 + 1).checked_mul(total).is_some();
        if fits {
            let start = (seed % U256::from(total)).to::<u128>();
            let (widen, narrow) = (|w| w, |x| x as u64);
            return systematic_draw(
                weights,
                u128::from(units),
                total,
                start,
                widen,
                narrow,
                emit,
            );
        }
    }
    let narrow = |x: U256| x.to::<u64>();
    systematic_draw(
        weights,
        U256::from(units),
        total,
        seed % total,
        U256::from,
        narrow,
        emit,
    )
}

/// The draw of the module documentation, over any wide-enough unsigned integer.
fn systematic_draw<T>(
    weights: &[(&[u8], u128)],
    units: T,
    total: T,
    start: T,
    widen: impl Fn(u128) -> T,
    narrow: impl Fn(T) -> u64,
    mut emit: impl FnMut(usize, u64),
) where
    T: Copy
        + PartialOrd
        + std::ops::Add<Output = T>
        + std::ops::Mul<Output = T>
        + std::ops::Div<Output = T>
        + std::ops::Rem<Output = T>,
{
    let zero = widen(0);
    let mut next_point = start;
    let mut line = zero;
    for (i, (_, weight)) in weights.iter().enumerate() {
        let owed = units * widen(*weight);
        let mut whole = narrow(owed / total);
        let fraction = owed % total;
        if fraction > zero && next_point < line + fraction {
            whole += 1;
            next_point = next_point + total;
        }
        line = line + fraction;
        emit(i, whole);
    }
}

/// Splits `value` among `weights` (unique scripts, ascending byte order) and the finder.
///
/// Returns the outputs in coinbase order: amount descending, then script ascending. The
/// amounts sum to exactly `value`; no output is zero.
pub fn compute_payouts(
    weights: &[(&[u8], u128)],
    finder_script: &[u8],
    value: u64,
    params: &PayoutRules,
    seed: &[u8; 32],
) -> Vec<Payout> {
    owned(compute_payouts_borrowed(
        weights,
        finder_script,
        value,
        params,
        seed,
    ))
}

/// [`compute_payouts`] for a finder with no script on this chain (an aux chain whose finder
/// gave no aux address, docs/PROTOCOL.md §15): there is no finder bonus, and what is left
/// after the whole steps (less than one step) goes to the first output in coinbase order;
/// a value below one step goes whole to the largest weight (the lowest script among
/// equals). Empty when `weights` is (no one to pay).
pub fn compute_payouts_without_finder(
    weights: &[(&[u8], u128)],
    value: u64,
    params: &PayoutRules,
    seed: &[u8; 32],
) -> Vec<Payout> {
    owned(compute_payouts_without_finder_borrowed(
        weights, value, params, seed,
    ))
}

/// A payout whose script is borrowed from the weights (or the finder): `(script, amount)`.
/// Checking a share needs only the hash of the coinbase its payouts make, and copying every
/// script into a [`Payout`] (a few hundred small allocations a coinbase) cost more than
/// drawing the amounts. The owned functions above are these, copied.
pub(crate) type BorrowedPayout<'a> = (&'a [u8], u64);

/// [`compute_payouts`], scripts borrowed.
pub(crate) fn compute_payouts_borrowed<'a>(
    weights: &[(&'a [u8], u128)],
    finder_script: &'a [u8],
    value: u64,
    params: &PayoutRules,
    seed: &[u8; 32],
) -> Vec<BorrowedPayout<'a>> {
    split_value(weights, Some(finder_script), value, params, seed)
}

/// [`compute_payouts_without_finder`], scripts borrowed.
pub(crate) fn compute_payouts_without_finder_borrowed<'a>(
    weights: &[(&'a [u8], u128)],
    value: u64,
    params: &PayoutRules,
    seed: &[u8; 32],
) -> Vec<BorrowedPayout<'a>> {
    let mut paid = split_value(weights, None, value, params, seed);
    let sum: u64 = paid.iter().map(|(_, amount)| amount).sum();
    match paid.first_mut() {
        Some((_, amount)) => *amount += value - sum,
        None if value > 0 => {
            // `max_by` keeps the last of equals: walk from the highest script down.
            if let Some((script, _)) = weights.iter().rev().max_by(|a, b| a.1.cmp(&b.1)) {
                paid.push((*script, value));
            }
        }
        None => {}
    }
    paid
}

fn owned(paid: Vec<BorrowedPayout<'_>>) -> Vec<Payout> {
    paid.into_iter()
        .map(|(script, amount)| Payout {
            script: script.to_vec(),
            amount,
        })
        .collect()
}

fn split_value<'a>(
    weights: &[(&'a [u8], u128)],
    finder_script: Option<&'a [u8]>,
    value: u64,
    params: &PayoutRules,
    seed: &[u8; 32],
) -> Vec<BorrowedPayout<'a>> {
    debug_assert!(
        weights.windows(2).all(|p| p[0].0 < p[1].0),
        "scripts must ascend"
    );
    let bonus_bp = match finder_script {
        Some(_) => params.finder_bonus_basis_points,
        None => 0,
    };
    let bonus = (u128::from(value) * u128::from(bonus_bp) / 10_000) as u64;
    let reward = value - bonus;
    let total: U256 = weights.iter().map(|(_, w)| U256::from(*w)).sum();

    let mut finder_extra = bonus;
    // At most `max_payout_outputs`: every output is at least one of the fewer steps.
    let outputs = weights.len().min(params.max_payout_outputs as usize);
    let mut paid: Vec<BorrowedPayout<'a>> = Vec::with_capacity(outputs + 1);
    if total.is_zero() {
        finder_extra = value;
    } else {
        let step = payout_step(reward, params);
        let units = reward / step;
        finder_extra += reward - units * step;
        draw_steps(weights, total, units, seed, |i, whole| {
            // `whole <= units`, so the product does not overflow.
            if whole > 0 {
                paid.push((weights[i].0, whole * step));
            }
        });
    }

    if let (true, Some(finder_script)) = (finder_extra > 0, finder_script) {
        match paid.iter_mut().find(|(script, _)| *script == finder_script) {
            Some((_, amount)) => *amount += finder_extra,
            None => paid.push((finder_script, finder_extra)),
        }
    }
    // Unstable sorting gives the same bytes: elements that compare equal are equal.
    paid.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    paid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Preset;
    use proptest::prelude::*;

    fn params(max_outputs: u32, dust: u64) -> PayoutRules {
        let mut p = Preset::builtin("litecoin")
            .unwrap()
            .consensus
            .payout_rules();
        p.max_payout_outputs = max_outputs;
        p.dust_threshold = dust;
        p
    }

    proptest! {
        /// Without a finder the amounts still sum to the value exactly, every output but the
        /// first is a whole number of steps, and each miner's steps are within one of its
        /// exact share.
        #[test]
        fn without_a_finder_the_window_takes_everything(
            ws in proptest::collection::vec(1u128..1_000_000, 1..50),
            value in 1u64..10_000_000_000_000,
            seed in any::<[u8; 32]>(),
        ) {
            let p = params(200, 100_000_000);
            let scripts: Vec<Vec<u8>> = (0..ws.len() as u32).map(script).collect();
            let weights: Vec<(&[u8], u128)> = scripts.iter().map(|s| s.as_slice()).zip(ws.iter().copied()).collect();
            let out = compute_payouts_without_finder(&weights, value, &p, &seed);
            prop_assert_eq!(out.iter().map(|o| o.amount).sum::<u64>(), value);
            let step = payout_step(value, &p);
            for o in out.iter().skip(1) {
                prop_assert_eq!(o.amount % step, 0);
            }
            prop_assert!(compute_payouts_without_finder(&[], value, &p, &seed).is_empty());
        }
    }

    fn script(i: u32) -> Vec<u8> {
        let mut s = vec![0x00, 0x14];
        s.extend_from_slice(&[0u8; 16]);
        s.extend_from_slice(&i.to_be_bytes());
        s
    }

    #[test]
    fn worked_example_from_protocol_md() {
        // docs/PROTOCOL.md, "Worked example": three miners, weights 5:3:2, value 10 LTC.
        let p = params(200, 100_000);
        let (a, b, c) = (script(1), script(2), script(3));
        let weights = vec![(a.as_slice(), 5u128), (b.as_slice(), 3), (c.as_slice(), 2)];
        let seed = [0u8; 32];
        let out = compute_payouts(&weights, &c, 1_000_000_000, &p, &seed);
        // Bonus 0.5% = 5,000,000. R = 995,000,000. Step = max(100000, ceil(R/199)) = 5,000,000.
        // U = 199 steps: a is owed 99.5, b 59.7, c 39.8 (fractions 5, 7, 8 tenths: two extra
        // steps to hand out). Seed 0 puts the points at 0 and 10 (tenths) on the line
        // a[0,5) b[5,12) c[12,20): a and b get an extra step, c keeps 39 plus the bonus.
        assert_eq!(
            out,
            vec![
                Payout {
                    script: a.clone(),
                    amount: 100 * 5_000_000
                },
                Payout {
                    script: b.clone(),
                    amount: 60 * 5_000_000
                },
                Payout {
                    script: c.clone(),
                    amount: 39 * 5_000_000 + 5_000_000
                },
            ]
        );
        assert_eq!(out.iter().map(|p| p.amount).sum::<u64>(), 1_000_000_000);
    }

    #[test]
    fn empty_window_pays_the_finder_everything() {
        let p = params(200, 100_000);
        let out = compute_payouts(&[], &script(9), 12_345, &p, &[7; 32]);
        assert_eq!(
            out,
            vec![Payout {
                script: script(9),
                amount: 12_345
            }]
        );
    }

    #[test]
    fn expected_payout_of_a_tiny_miner_is_exact() {
        // A miner owed 0.3 of a step gets one step in ~30% of blocks over many seeds.
        let p = params(3, 1);
        let (big, tiny) = (script(1), script(2));
        let value = 1_000_000u64; // bonus 5000, R = 995000, step = 497500, U = 2
        let mut tiny_total = 0u64;
        let rounds = 4000u32;
        for round in 0..rounds {
            let seed = payout_seed(&ShareHash::hash(&round.to_le_bytes()));
            // tiny owed 2 * 15 / 100 = 0.3 steps.
            let w = vec![(big.as_slice(), 85u128), (tiny.as_slice(), 15)];
            let out = compute_payouts(&w, &big, value, &p, &seed);
            tiny_total += out
                .iter()
                .filter(|o| o.script == tiny)
                .map(|o| o.amount)
                .sum::<u64>();
        }
        let expected = f64::from(rounds) * 0.3 * 497_500.0;
        let ratio = tiny_total as f64 / expected;
        assert!((0.93..1.07).contains(&ratio), "ratio {ratio}");
    }

    proptest! {
        /// The `u128` fast path and the 256-bit path draw the same steps.
        #[test]
        fn both_widths_draw_the_same(
            raw in proptest::collection::vec(1u128..1u128 << 60, 1..100),
            units in 1u64..1_000_000,
            seed in any::<[u8; 32]>(),
        ) {
            let scripts: Vec<Vec<u8>> = (0..raw.len() as u32).map(script).collect();
            let weights: Vec<(&[u8], u128)> =
                scripts.iter().map(|s| s.as_slice()).zip(raw.iter().copied()).collect();
            let total: U256 = raw.iter().map(|w| U256::from(*w)).sum();
            let mut fast = Vec::new();
            draw_steps(&weights, total, units, &seed, |_, w| fast.push(w));
            let mut wide = Vec::new();
            systematic_draw(&weights, U256::from(units), total,
                U256::from_be_bytes(seed) % total, U256::from, |x| x.to::<u64>(), |_, w| wide.push(w));
            prop_assert_eq!(fast, wide);
        }

        #[test]
        fn amounts_sum_exactly_and_respect_cap_and_dust(
            raw in proptest::collection::btree_map(any::<u32>(), 1u128..u128::MAX / 4096, 0..600),
            value in 0u64..8_400_000_000_000_000,
            finder in any::<u32>(),
            max_outputs in 2u32..400,
            dust in 1u64..10_000_000,
            seed in any::<[u8; 32]>(),
        ) {
            let p = params(max_outputs, dust);
            let scripts: Vec<(Vec<u8>, u128)> = raw.iter().map(|(k, w)| (script(*k), *w)).collect();
            let finder = script(finder);
            let weights: Vec<(&[u8], u128)> = scripts.iter().map(|(s, w)| (s.as_slice(), *w)).collect();
            let out = compute_payouts(&weights, &finder, value, &p, &seed);
            prop_assert_eq!(out.iter().map(|o| o.amount).sum::<u64>(), value);
            prop_assert!(out.len() <= max_outputs as usize);
            prop_assert!(out.iter().all(|o| o.amount > 0));
            let reward = value - (u128::from(value) * 50 / 10_000) as u64;
            let step = payout_step(reward, &p);
            for o in &out {
                if o.script != finder {
                    prop_assert_eq!(o.amount % step, 0);
                }
            }
            // Order: amount descending, then script ascending; scripts unique.
            prop_assert!(out.windows(2).all(|w|
                w[0].amount > w[1].amount || (w[0].amount == w[1].amount && w[0].script < w[1].script)));
        }

        #[test]
        fn each_miner_gets_floor_or_ceil_of_its_share(
            raw in proptest::collection::btree_map(any::<u32>(), 1u128..1u128 << 100, 1..50),
            value in 1_000_000u64..100_000_000_000,
            seed in any::<[u8; 32]>(),
        ) {
            let p = params(200, 1000);
            let scripts: Vec<(Vec<u8>, u128)> = raw.iter().map(|(k, w)| (script(*k), *w)).collect();
            let finder = vec![0x51]; // not among the miners
            let weights: Vec<(&[u8], u128)> = scripts.iter().map(|(s, w)| (s.as_slice(), *w)).collect();
            let out = compute_payouts(&weights, &finder, value, &p, &seed);
            let reward = value - value * 50 / 10_000;
            let step = payout_step(reward, &p);
            let units = u128::from(reward / step);
            let total: u128 = scripts.iter().map(|(_, w)| *w).sum();
            for (s, w) in &scripts {
                let got = out.iter().find(|o| &o.script == s).map_or(0, |o| o.amount) / step;
                let exact_floor = (U256::from(units) * U256::from(*w) / U256::from(total)).to::<u64>();
                prop_assert!(got == exact_floor || got == exact_floor + 1);
            }
        }
    }
}
