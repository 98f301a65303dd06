//! Fitting our coinbase into the block: which template transactions to leave out.
//!
//! litecoind fills a template up to its own coinbase reservation (4,000 weight units and 400
//! sigop cost), sized for one payout output. Our coinbase pays the whole PPLNS window: 40
//! P2WSH payees alone outweigh that reservation, and the block is refused (`bad-blk-weight`).
//! So once per round of work the node reserves what any coinbase of the round can cost
//! ([`CoinbaseReserve`]) and leaves out template transactions until header, transaction
//! count, coinbase and kept transactions fit the template's `weightlimit` and `sigoplimit`
//! ([`fit_template`]). The rule (docs/NODE.md, "Block assembly"):
//!
//! - the lowest fee rate goes first (fee × other's weight compared in integers), each with
//!   every transaction that depends on it, so the kept set is closed under `depends`;
//! - never the HogEx, nor anything it depends on (the MWEB peg-ins: the extension block
//!   commits to their peg-in kernels, so they must stay), and never a transaction a kept one
//!   depends on;
//! - the coinbase value loses exactly the fees of what was left out (the template's
//!   `coinbasevalue` counts every listed fee: claiming more is `bad-cb-amount`), and the
//!   witness commitment is recomputed over the kept transactions.
//!
//! The MWEB extension block is left as it is: it holds only MWEB data (its own weight limit
//! applies to it alone, and litecoind's template already meets it), and `GetBlockWeight`
//! counts the canonical block without it. Dropping canonical transactions other than the
//! HogEx and its peg-ins changes nothing it commits to.
//!
//! This is a local rule, not consensus: peers never see the block's other transactions.

use std::sync::Arc;

use bitcoin::consensus::encode::VarInt;
use bitcoin::Script;
use share_chain::hash::sha256d;
use share_chain::merkle::merkle_root;
use share_chain::script::ScriptKind;
use share_chain::template::ShareTemplate;
use thiserror::Error;

use crate::daemon::template::{
    BlockTemplate, TemplateTransaction, WitnessCommitment, WITNESS_COMMITMENT_PREFIX,
};
use crate::work::{script_sig_prefix, EXTRANONCE_SIZE};

/// Litecoin's (and Bitcoin's) block weight limit, when the template does not say.
pub const MAX_BLOCK_WEIGHT: u64 = 4_000_000;
/// The block sigop cost limit, when the template does not say.
pub const MAX_BLOCK_SIGOPS_COST: u64 = 80_000;
/// The 80-byte header, all of it non-witness data.
const HEADER_WEIGHT: u64 = 80 * 4;
/// Legacy sigop cost is 4 per counted sigop (`WITNESS_SCALE_FACTOR`).
const WITNESS_SCALE: u64 = share_chain::script::WITNESS_SCALE_FACTOR as u64;
/// `OP_CHECKMULTISIG` counts 20 legacy sigops: the most one script byte can count.
const MAX_SIGOPS_PER_BYTE: u64 = 20;
/// A transaction whose template gives no `sigops`: at most 20 sigop cost per weight unit
/// (one `OP_CHECKMULTISIG` byte is 4 weight units and 80 sigop cost; witness and P2SH
/// script bytes count no more per weight unit).
const MAX_SIGOP_COST_PER_WEIGHT: u64 = MAX_SIGOPS_PER_BYTE;
/// The largest payout output: share format v2 pays standard scripts only
/// ([`ScriptKind`]), the largest being P2WSH and P2TR (8-byte amount, 1-byte length,
/// 34-byte script).
pub const MAX_MINER_OUTPUT_SIZE: u64 = max_output_size();
/// The most sigop cost a payout output counts (P2PKH's `OP_CHECKSIG`, scaled).
const MAX_MINER_OUTPUT_SIGOP_COST: u64 = max_output_sigop_cost();

const fn max_output_size() -> u64 {
    let mut max = 0;
    let mut i = 0;
    while i < ScriptKind::ALL.len() {
        let v = ScriptKind::ALL[i].output_size() as u64;
        if v > max {
            max = v;
        }
        i += 1;
    }
    max
}

const fn max_output_sigop_cost() -> u64 {
    let mut max = 0;
    let mut i = 0;
    while i < ScriptKind::ALL.len() {
        let v = ScriptKind::ALL[i].sigop_cost() as u64;
        if v > max {
            max = v;
        }
        i += 1;
    }
    max
}

/// How many more payout outputs another miner's coinbase of the same round may have than
/// the round's template: its own output, and one more step drawn by the rounding
/// (`share_chain::payout`) when its weight moves between scripts.
pub const OUTPUT_SLACK: u64 = 2;

/// What one output costs in the block: serialized size (non-witness, so 4 weight units a
/// byte) and sigop cost (BIP141 units). Payout scripts are standard (share format v2):
/// share-chain's per-kind table gives both; any other script (the coinbase's commitment
/// outputs) is measured.
pub fn output_cost(script: &[u8]) -> (u64, u64) {
    if let Some(kind) = ScriptKind::of(script) {
        return (kind.output_size() as u64, u64::from(kind.sigop_cost()));
    }
    let len = script.len() as u64;
    let size = 8 + VarInt(len).size() as u64 + len;
    let sigops = Script::from_bytes(script).count_sigops_legacy() as u64;
    (size, sigops * WITNESS_SCALE)
}

/// The most weight and sigop cost any coinbase of a round may take: what the block
/// reserves for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoinbaseReserve {
    pub weight: u64,
    pub sigops: u64,
}

impl CoinbaseReserve {
    /// Whether this reservation holds `other`.
    pub fn covers(&self, other: &CoinbaseReserve) -> bool {
        self.weight >= other.weight && self.sigops >= other.sigops
    }

    /// The larger of the two in each dimension.
    pub fn max(self, other: CoinbaseReserve) -> CoinbaseReserve {
        CoinbaseReserve {
            weight: self.weight.max(other.weight),
            sigops: self.sigops.max(other.sigops),
        }
    }

    /// What the coinbase of `share` costs exactly, with the extranonce counted at its worst
    /// (every byte an `OP_CHECKMULTISIG`: miners choose it after the block is fitted).
    pub fn exact(share: &ShareTemplate, height: u32) -> CoinbaseReserve {
        let prefix = script_sig_prefix(share, height);
        let mut script_sig = prefix.clone();
        script_sig.extend_from_slice(&[0; EXTRANONCE_SIZE]);
        let coinbase = share.coinbase(script_sig);
        let outputs: u64 = coinbase
            .transaction()
            .output
            .iter()
            .map(|o| output_cost(o.script_pubkey.as_bytes()).1)
            .sum();
        let script_sig_sigops = Script::from_bytes(&prefix).count_sigops_legacy() as u64
            + EXTRANONCE_SIZE as u64 * MAX_SIGOPS_PER_BYTE;
        CoinbaseReserve {
            weight: coinbase.weight(),
            sigops: outputs + script_sig_sigops * WITNESS_SCALE,
        }
    }

    /// What any miner's coinbase of the round of `share` (any payout address) can cost:
    /// `share`'s own coinbase exactly, but with [`OUTPUT_SLACK`] more payout outputs (at
    /// most `max_outputs`), each as large and as sigop-heavy as the largest of `share`'s
    /// payouts or of any miner address.
    pub fn for_round(share: &ShareTemplate, height: u32, max_outputs: u32) -> CoinbaseReserve {
        let exact = Self::exact(share, height);
        let costs: Vec<(u64, u64)> = share
            .payouts
            .iter()
            .map(|p| output_cost(&p.script))
            .collect();
        let n = costs.len() as u64;
        let count = n.max((n + OUTPUT_SLACK).min(u64::from(max_outputs)));
        let largest = costs
            .iter()
            .map(|c| c.0)
            .max()
            .unwrap_or(0)
            .max(MAX_MINER_OUTPUT_SIZE);
        let heaviest = costs
            .iter()
            .map(|c| c.1)
            .max()
            .unwrap_or(0)
            .max(MAX_MINER_OUTPUT_SIGOP_COST);
        let size_now: u64 = costs.iter().map(|c| c.0).sum();
        let sigops_now: u64 = costs.iter().map(|c| c.1).sum();
        // The output count's varint: the payouts and up to two commitment outputs.
        let varint_growth = VarInt(count + 2).size() as u64 - VarInt(n).size() as u64;
        CoinbaseReserve {
            weight: exact.weight + (count * largest - size_now + varint_growth) * 4,
            sigops: exact.sigops + (count * heaviest - sigops_now),
        }
    }
}

/// What was left out of a template.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub count: u64,
    pub weight: u64,
    pub sigops: u64,
    pub fees: u64,
}

/// A template with our coinbase's room made.
#[derive(Clone, Debug)]
pub struct Fitted {
    /// The template as the block will be: kept transactions, value and witness
    /// commitment adjusted (the same `Arc` when nothing was left out).
    pub template: Arc<BlockTemplate>,
    pub reserve: CoinbaseReserve,
    pub dropped: Dropped,
}

/// Why no block can be built on a template.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FitError {
    #[error(
        "the coinbase ({reserve_weight} WU, {reserve_sigops} sigop cost) and the transactions \
         that must stay ({kept_weight} WU, {kept_sigops} sigop cost) exceed the block limits \
         ({weight_limit} WU, {sigop_limit} sigop cost)"
    )]
    CannotFit {
        reserve_weight: u64,
        reserve_sigops: u64,
        kept_weight: u64,
        kept_sigops: u64,
        weight_limit: u64,
        sigop_limit: u64,
    },
    #[error("the fees left out ({fees}) exceed the coinbase value ({value})")]
    Value { fees: u64, value: u64 },
}

/// The sigop cost of a template transaction (bounded by its weight when not given).
fn sigop_cost(tx: &TemplateTransaction) -> u64 {
    tx.sigops
        .unwrap_or_else(|| tx.weight.saturating_mul(MAX_SIGOP_COST_PER_WEIGHT))
}

/// Room for the template's transactions: the limits less the header, the transaction
/// count (at its largest, all kept) and the coinbase reservation. `None`: not even the
/// coinbase fits.
fn budget(template: &BlockTemplate, reserve: &CoinbaseReserve) -> (Option<u64>, Option<u64>) {
    let weight_limit = template.weight_limit.unwrap_or(MAX_BLOCK_WEIGHT);
    let sigop_limit = template.sigop_limit.unwrap_or(MAX_BLOCK_SIGOPS_COST);
    let count = VarInt(template.transactions.len() as u64 + 1).size() as u64 * 4;
    (
        weight_limit.checked_sub(HEADER_WEIGHT + count + reserve.weight),
        sigop_limit.checked_sub(reserve.sigops),
    )
}

/// The 0-based indexes of the transactions `txs[i]` depends on. `depends` are 1-based and
/// checked in range by the template parser; any that is not is skipped.
fn parents(txs: &[TemplateTransaction], i: usize) -> impl Iterator<Item = usize> + '_ {
    let n = txs.len();
    txs[i]
        .depends
        .iter()
        .filter_map(move |&d| (d as usize).checked_sub(1).filter(|&p| p < n))
}

/// Which of `txs` to keep so their weight and sigop cost stay within the budgets: see the
/// module documentation for the rule. Linear in the transactions and their `depends`, plus
/// one sort. `Err` carries what the transactions that must stay take.
pub fn select(
    txs: &[TemplateTransaction],
    max_weight: u64,
    max_sigops: u64,
) -> Result<Vec<bool>, (u64, u64)> {
    let n = txs.len();
    let mut keep = vec![true; n];
    // Sums in u128: a hostile template's weights could overflow u64.
    let mut weight: u128 = txs.iter().map(|t| u128::from(t.weight)).sum();
    let mut sigops: u128 = txs.iter().map(|t| u128::from(sigop_cost(t))).sum();
    let fits = |w: u128, s: u128| w <= u128::from(max_weight) && s <= u128::from(max_sigops);
    if fits(weight, sigops) {
        return Ok(keep);
    }
    // The HogEx and everything it depends on, transitively.
    let mut protected = vec![false; n];
    let mut stack: Vec<usize> = (0..n).filter(|&i| txs[i].is_hogex()).collect();
    while let Some(i) = stack.pop() {
        if !std::mem::replace(&mut protected[i], true) {
            stack.extend(parents(txs, i));
        }
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for p in parents(txs, i) {
            children[p].push(i);
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| !protected[i]).collect();
    // Lowest fee rate first (fee_a / weight_a < fee_b / weight_b, cross-multiplied); among
    // equals the later one first, as children follow their parents in a template.
    order.sort_unstable_by(|&a, &b| {
        let (ta, tb) = (&txs[a], &txs[b]);
        let ra = u128::from(ta.fee) * u128::from(tb.weight.max(1));
        let rb = u128::from(tb.fee) * u128::from(ta.weight.max(1));
        ra.cmp(&rb).then(b.cmp(&a))
    });
    for root in order {
        if fits(weight, sigops) {
            break;
        }
        if !keep[root] {
            continue;
        }
        // The root and every kept transaction depending on it. None is protected: a
        // protected transaction's ancestors are all protected.
        stack.push(root);
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut keep[i], false) {
                weight -= u128::from(txs[i].weight);
                sigops -= u128::from(sigop_cost(&txs[i]));
                stack.extend(children[i].iter().copied().filter(|&c| keep[c]));
            }
        }
    }
    if fits(weight, sigops) {
        Ok(keep)
    } else {
        let saturate = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        Err((saturate(weight), saturate(sigops)))
    }
}

/// The BIP141 commitment over `wtxids` (the coinbase's, all zeros, first), with the
/// all-zero witness reserved value our coinbase carries.
pub fn witness_commitment(wtxids: impl Iterator<Item = [u8; 32]>) -> WitnessCommitment {
    let leaves: Vec<[u8; 32]> = std::iter::once([0u8; 32]).chain(wtxids).collect();
    let mut preimage = [0u8; 64];
    preimage[..32].copy_from_slice(&merkle_root(&leaves));
    let commitment = sha256d(&preimage);
    let mut script = WITNESS_COMMITMENT_PREFIX.to_vec();
    script.extend_from_slice(&commitment);
    WitnessCommitment { script, commitment }
}

/// Leaves out what must go for a coinbase costing up to `reserve` to fit `template`.
pub fn fit_template(
    template: &Arc<BlockTemplate>,
    reserve: CoinbaseReserve,
) -> Result<Fitted, FitError> {
    let cannot_fit = |kept_weight, kept_sigops| FitError::CannotFit {
        reserve_weight: reserve.weight,
        reserve_sigops: reserve.sigops,
        kept_weight,
        kept_sigops,
        weight_limit: template.weight_limit.unwrap_or(MAX_BLOCK_WEIGHT),
        sigop_limit: template.sigop_limit.unwrap_or(MAX_BLOCK_SIGOPS_COST),
    };
    let (Some(max_weight), Some(max_sigops)) = budget(template, &reserve) else {
        return Err(cannot_fit(0, 0));
    };
    let keep = select(&template.transactions, max_weight, max_sigops)
        .map_err(|(w, s)| cannot_fit(w, s))?;
    let mut dropped = Dropped::default();
    for (tx, _) in template
        .transactions
        .iter()
        .zip(&keep)
        .filter(|(_, k)| !**k)
    {
        dropped.count += 1;
        dropped.weight = dropped.weight.saturating_add(tx.weight);
        dropped.sigops = dropped.sigops.saturating_add(sigop_cost(tx));
        dropped.fees = dropped.fees.saturating_add(tx.fee);
    }
    if dropped.count == 0 {
        return Ok(Fitted {
            template: template.clone(),
            reserve,
            dropped,
        });
    }
    let coinbase_value =
        template
            .coinbase_value
            .checked_sub(dropped.fees)
            .ok_or(FitError::Value {
                fees: dropped.fees,
                value: template.coinbase_value,
            })?;
    // Old 1-based index to new 1-based index, for the kept transactions' `depends`.
    let mut new_index = vec![0u32; keep.len()];
    let mut next = 0u32;
    for (slot, _) in new_index.iter_mut().zip(&keep).filter(|(_, k)| **k) {
        next += 1;
        *slot = next;
    }
    let transactions: Vec<TemplateTransaction> = template
        .transactions
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(tx, _)| TemplateTransaction {
            depends: tx
                .depends
                .iter()
                .filter_map(|&d| new_index.get((d as usize).checked_sub(1)?).copied())
                .filter(|&d| d > 0)
                .collect(),
            ..tx.clone()
        })
        .collect();
    let default_witness_commitment = template
        .default_witness_commitment
        .as_ref()
        .map(|_| witness_commitment(transactions.iter().map(|tx| tx.wtxid)));
    Ok(Fitted {
        template: Arc::new(BlockTemplate {
            version: template.version,
            previous_block_hash: template.previous_block_hash,
            transactions,
            coinbase_value,
            target: template.target,
            bits: template.bits,
            cur_time: template.cur_time,
            min_time: template.min_time,
            height: template.height,
            default_witness_commitment,
            mweb: template.mweb.clone(),
            longpoll_id: template.longpoll_id.clone(),
            rules: template.rules.clone(),
            weight_limit: template.weight_limit,
            sigop_limit: template.sigop_limit,
        }),
        reserve,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use share_chain::Target;

    /// A HogEx's first bytes: version, marker 0x00, flag 0x08.
    const HOGEX: [u8; 6] = [2, 0, 0, 0, 0, 0x08];

    fn tx(
        i: usize,
        weight: u64,
        fee: u64,
        sigops: Option<u64>,
        depends: Vec<u32>,
    ) -> TemplateTransaction {
        TemplateTransaction {
            data: vec![2, 0, 0, 0, 1, i as u8],
            txid: [i as u8; 32],
            wtxid: sha256d(&[i as u8]),
            fee,
            weight,
            sigops,
            depends,
        }
    }

    fn hogex(i: usize, depends: Vec<u32>) -> TemplateTransaction {
        TemplateTransaction {
            data: HOGEX.to_vec(),
            ..tx(i, 500, 0, Some(0), depends)
        }
    }

    fn template(transactions: Vec<TemplateTransaction>, coinbase_value: u64) -> Arc<BlockTemplate> {
        let mweb = transactions
            .last()
            .filter(|t| t.is_hogex())
            .map(|_| vec![1, 2, 3]);
        Arc::new(BlockTemplate {
            version: 0x2000_0000,
            previous_block_hash: [7; 32],
            transactions,
            coinbase_value,
            target: Target::MAX,
            bits: 0x207f_ffff,
            cur_time: 0,
            min_time: 0,
            height: 500,
            default_witness_commitment: Some(witness_commitment(std::iter::empty())),
            mweb,
            longpoll_id: None,
            rules: vec![],
            weight_limit: Some(MAX_BLOCK_WEIGHT),
            sigop_limit: Some(MAX_BLOCK_SIGOPS_COST),
        })
    }

    fn rate_below(a: &TemplateTransaction, b: &TemplateTransaction) -> bool {
        u128::from(a.fee) * u128::from(b.weight.max(1))
            < u128::from(b.fee) * u128::from(a.weight.max(1))
    }

    #[test]
    fn a_template_that_fits_is_kept_whole() {
        let t = template(vec![tx(0, 1000, 10, Some(4), vec![])], 100);
        let fitted = fit_template(
            &t,
            CoinbaseReserve {
                weight: 8000,
                sigops: 400,
            },
        )
        .unwrap();
        assert!(Arc::ptr_eq(&fitted.template, &t));
        assert_eq!(fitted.dropped, Dropped::default());
    }

    #[test]
    fn drops_the_lowest_fee_rate_with_its_children_and_pays_only_kept_fees() {
        // 0: cheap parent, 1: its rich child, 2: middling, 3: rich; the HogEx depends on 4.
        let txs = vec![
            tx(0, 400_000, 400, Some(4), vec![]),
            tx(1, 400_000, 400_000, Some(4), vec![1]),
            tx(2, 1_000_000, 100_000, Some(4), vec![]),
            tx(3, 1_000_000, 1_000_000, Some(4), vec![]),
            tx(4, 1_190_000, 10, Some(4), vec![]),
            hogex(5, vec![5]),
        ];
        let total_fees: u64 = txs.iter().map(|t| t.fee).sum();
        let t = template(txs, 625_000_000 + total_fees);
        // Header, count and transactions take 320 + 4 + 3,990,500 WU: no room for a
        // 10,000 WU coinbase. 0 has the lowest fee rate and goes, with its child 1.
        let fitted = fit_template(
            &t,
            CoinbaseReserve {
                weight: 10_000,
                sigops: 400,
            },
        )
        .unwrap();
        let kept: Vec<[u8; 32]> = fitted
            .template
            .transactions
            .iter()
            .map(|t| t.txid)
            .collect();
        assert_eq!(kept, vec![[2; 32], [3; 32], [4; 32], [5; 32]]);
        assert_eq!(fitted.dropped.count, 2);
        assert_eq!(fitted.dropped.weight, 800_000);
        assert_eq!(fitted.dropped.fees, 400_400);
        assert_eq!(fitted.template.coinbase_value, t.coinbase_value - 400_400);
        // Depends renumbered: the HogEx now depends on the third transaction.
        assert_eq!(fitted.template.transactions[3].depends, vec![3]);
        // The witness commitment covers the kept transactions only.
        let expected = witness_commitment(fitted.template.transactions.iter().map(|t| t.wtxid));
        assert_eq!(fitted.template.default_witness_commitment, Some(expected));
        assert_ne!(
            fitted.template.default_witness_commitment,
            t.default_witness_commitment
        );
        assert_eq!(fitted.template.mweb, t.mweb);
    }

    #[test]
    fn sigops_alone_make_room_too() {
        let txs = vec![
            tx(0, 1000, 5000, Some(79_000), vec![]),
            tx(1, 1000, 10, Some(500), vec![]),
            tx(2, 1000, 20, None, vec![]),
        ];
        let t = template(txs, 1_000_000);
        // The reservation of 600 leaves 79,400: the cheapest (1) and the unknown-sigops one
        // (2, counted at 20 per weight unit) go.
        let fitted = fit_template(
            &t,
            CoinbaseReserve {
                weight: 1000,
                sigops: 600,
            },
        )
        .unwrap();
        assert_eq!(fitted.template.transactions.len(), 1);
        assert_eq!(fitted.template.transactions[0].txid, [0; 32]);
    }

    #[test]
    fn what_must_stay_and_does_not_fit_is_an_error() {
        let t = template(
            vec![tx(0, 3_000_000, 1, Some(0), vec![]), hogex(1, vec![1])],
            1_000,
        );
        let err = fit_template(
            &t,
            CoinbaseReserve {
                weight: 1_000_000,
                sigops: 0,
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                FitError::CannotFit {
                    kept_weight: 3_000_500,
                    ..
                }
            ),
            "{err}"
        );
        let err = fit_template(
            &t,
            CoinbaseReserve {
                weight: 5_000_000,
                sigops: 0,
            },
        )
        .unwrap_err();
        assert!(matches!(err, FitError::CannotFit { .. }), "{err}");
    }

    #[test]
    fn output_costs_by_kind() {
        let p2pkh = [&[0x76, 0xa9, 0x14][..], &[0; 20], &[0x88, 0xac]].concat();
        let p2sh = [&[0xa9, 0x14][..], &[0; 20], &[0x87]].concat();
        let p2wpkh = [&[0x00, 0x14][..], &[0; 20]].concat();
        let p2wsh = [&[0x00, 0x20][..], &[0; 32]].concat();
        let p2tr = [&[0x51, 0x20][..], &[0; 32]].concat();
        assert_eq!(output_cost(&p2pkh), (34, 4));
        assert_eq!(output_cost(&p2sh), (32, 0));
        assert_eq!(output_cost(&p2wpkh), (31, 0));
        assert_eq!(output_cost(&p2wsh), (43, 0));
        assert_eq!(output_cost(&p2tr), (43, 0));
        assert_eq!(output_cost(&p2tr).0, MAX_MINER_OUTPUT_SIZE);
        assert_eq!(MAX_MINER_OUTPUT_SIGOP_COST, 4);
        // The per-kind table agrees with measuring the script.
        for script in [&p2pkh, &p2sh, &p2wpkh, &p2wsh, &p2tr] {
            let measured = 8 + 1 + script.len() as u64;
            let sigops = Script::from_bytes(script).count_sigops_legacy() as u64 * WITNESS_SCALE;
            assert_eq!(output_cost(script), (measured, sigops));
        }
        // A non-standard script (a commitment output here) is measured: a bare multisig
        // counts 20 legacy sigops, 80 sigop cost.
        assert_eq!(output_cost(&[0x51, 0x51, 0xae]), (12, 80));
    }

    #[test]
    fn the_round_reservation_covers_every_miners_coinbase() {
        use share_chain::chain::ChainIndex;
        use share_chain::template::MinerPayout;
        use share_chain::testkit::{block_context, grow_chain, regtest_preset};
        let preset = regtest_preset("");
        let mut index = ChainIndex::new(&preset);
        grow_chain(&mut index, 120, 60, 1_700_000_000);
        let max_outputs = index.params().max_payout_outputs;
        let payout = |script: Vec<u8>| MinerPayout {
            aux_script: None,
            script,
            fee: None,
            share_target_bits: None,
        };
        let p2pkh = |i: u8| [&[0x76, 0xa9, 0x14][..], &[i; 20], &[0x88, 0xac]].concat();
        let p2wsh = |i: u8| [&[0x00, 0x20][..], &[i; 32]].concat();
        for value in [1_0000_0000, 6_2500_0000, 50_0000_0000, 20_000_000] {
            let context = block_context(value);
            let round = index
                .share_template(&payout(vec![0x51]), context.clone())
                .unwrap();
            let reserve = CoinbaseReserve::for_round(&round, 500, max_outputs);
            let mut miners: Vec<Vec<u8>> =
                (0..70).map(share_chain::testkit::miner_script).collect();
            miners.extend((0..20).map(p2pkh));
            miners.extend((0..20).map(p2wsh));
            for script in miners {
                let share = index
                    .share_template(&payout(script), context.clone())
                    .unwrap();
                let cost = CoinbaseReserve::exact(&share, 500);
                assert!(
                    reserve.covers(&cost),
                    "{reserve:?} < {cost:?} at value {value}"
                );
            }
        }
    }

    /// Up to 40 transactions, each depending on a few earlier ones, and sometimes a HogEx
    /// last depending on some of them.
    fn arb_txs() -> impl Strategy<Value = Vec<TemplateTransaction>> {
        (1usize..40, any::<bool>()).prop_flat_map(|(n, with_hogex)| {
            let one = (
                1u64..200_000,
                0u64..2_000_000,
                prop::option::weighted(0.9, 0u64..2_000),
                prop::collection::vec(any::<prop::sample::Index>(), 0..3),
            );
            prop::collection::vec(one, n).prop_map(move |raw| {
                let mut txs: Vec<TemplateTransaction> = raw
                    .into_iter()
                    .enumerate()
                    .map(|(i, (weight, fee, sigops, deps))| {
                        let mut depends: Vec<u32> = if i == 0 {
                            vec![]
                        } else {
                            deps.iter().map(|d| d.index(i) as u32 + 1).collect()
                        };
                        depends.sort_unstable();
                        depends.dedup();
                        tx(i, weight, fee, sigops, depends)
                    })
                    .collect();
                if with_hogex {
                    let n = txs.len();
                    let depends = (1..=n as u32).filter(|d| d % 5 == 0).collect();
                    txs.push(hogex(n, depends));
                }
                txs
            })
        })
    }

    proptest! {
        #[test]
        fn selection_rules_hold(txs in arb_txs(), max_weight in 0u64..4_000_000, max_sigops in 0u64..40_000) {
            let n = txs.len();
            let mut protected = vec![false; n];
            let mut stack: Vec<usize> = (0..n).filter(|&i| txs[i].is_hogex()).collect();
            while let Some(i) = stack.pop() {
                if !std::mem::replace(&mut protected[i], true) {
                    stack.extend(txs[i].depends.iter().map(|&d| d as usize - 1));
                }
            }
            let must_weight: u64 = (0..n).filter(|&i| protected[i]).map(|i| txs[i].weight).sum();
            let must_sigops: u64 = (0..n).filter(|&i| protected[i]).map(|i| sigop_cost(&txs[i])).sum();
            match select(&txs, max_weight, max_sigops) {
                Err(_) => prop_assert!(must_weight > max_weight || must_sigops > max_sigops),
                Ok(keep) => {
                    // Limits hold.
                    let weight: u64 = (0..n).filter(|&i| keep[i]).map(|i| txs[i].weight).sum();
                    let sigops: u64 = (0..n).filter(|&i| keep[i]).map(|i| sigop_cost(&txs[i])).sum();
                    prop_assert!(weight <= max_weight && sigops <= max_sigops);
                    for i in 0..n {
                        // The HogEx and what it depends on stay.
                        prop_assert!(!protected[i] || keep[i]);
                        // Closed under dependencies.
                        if keep[i] {
                            for &d in &txs[i].depends {
                                prop_assert!(keep[d as usize - 1]);
                            }
                        }
                    }
                    // Fee-rate order: a transaction dropped for itself (all its parents kept)
                    // has no higher fee rate than any kept one that could have gone.
                    for r in (0..n).filter(|&r| !keep[r]) {
                        if txs[r].depends.iter().all(|&d| keep[d as usize - 1]) {
                            for k in (0..n).filter(|&k| keep[k] && !protected[k]) {
                                prop_assert!(!rate_below(&txs[k], &txs[r]), "kept {k} is cheaper than dropped {r}");
                            }
                        }
                    }
                    // Nothing is dropped when everything fits.
                    let all_weight: u64 = txs.iter().map(|t| t.weight).sum();
                    let all_sigops: u64 = txs.iter().map(sigop_cost).sum();
                    if all_weight <= max_weight && all_sigops <= max_sigops {
                        prop_assert!(keep.iter().all(|k| *k));
                    }
                }
            }
        }
    }
}
