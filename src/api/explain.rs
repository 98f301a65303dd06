//! `explainpayout <address>`: "why was I not paid". For one payout address: its shares and
//! where each stands (in the window and for how many more shares, uncle, stale, outside
//! the window), its rejected submissions, its expected payout now, what the last found
//! blocks paid it (on every chain: with merged mining, at the aux addresses its shares
//! name or its address maps to), and a plain diagnosis when it gets nothing.
//!
//! One chain-thread call walks the chain's shares once (bounded by what the chain holds,
//! the prune depth); at most [`MAX_SHARES_LISTED`] shares are listed, newest first, with
//! the totals of all.

use jsonrpsee::types::ErrorObjectOwned;
use serde_json::{json, Value};
use share_chain::payout::payout_step;
use share_chain::script::derived_aux_script;
use share_chain::target::Target;

use super::methods::{chain_stopped, proportional, Sources};

/// Most shares listed.
pub const MAX_SHARES_LISTED: usize = 100;
/// Found blocks looked at for what they paid (parent and aux blocks together).
const BLOCKS_LOOKED_AT: usize = 20;

/// What the chain says about one script.
struct Standing {
    shares: Vec<Value>,
    in_window: usize,
    uncles: usize,
    stale: usize,
    outside: usize,
    weight: u128,
    total_weight: u128,
    /// Expected hashes for one share at the current share difficulty.
    share_work: u128,
    /// The aux scripts its shares are paid at (merged mining), newest share's first.
    aux_scripts: Vec<Vec<u8>>,
}

fn standing(chain: &share_chain::chain::ChainIndex, script: &[u8]) -> Standing {
    let window = chain.tip_window();
    let tip = chain.best();
    let full = window.map_or(0, |w| w.len()) as u64;
    let window_shares = u64::from(chain.params().window_shares);
    let uncle_depth = u64::from(chain.params().uncle_depth);
    let mut mine: Vec<&share_chain::chain::ChainEntry> = chain
        .entries()
        .filter(|e| e.share.info.payout_script == script)
        .collect();
    mine.sort_by(|a, b| b.height.cmp(&a.height).then(b.seq.cmp(&a.seq)));
    let mut st = Standing {
        shares: Vec::new(),
        in_window: 0,
        uncles: 0,
        stale: 0,
        outside: 0,
        weight: window.map_or(0, |w| w.sums().get(script).copied().unwrap_or(0)),
        total_weight: window.map_or(0, |w| w.sums().values().sum()),
        share_work: Target::from_compact(chain.required_bits_for_child(chain.best_hash()))
            .map_or(0, |t| t.work().0),
        aux_scripts: Vec::new(),
    };
    for e in &mine {
        if let Some(aux) = e.share.info.aux_payout_script() {
            if !st.aux_scripts.contains(&aux) {
                st.aux_scripts.push(aux);
            }
        }
    }
    for e in mine {
        let (place, depth) = match tip {
            Some(t) if chain.is_ancestor(&e.hash, t.hash) => ("best", t.height - e.height),
            Some(t) => {
                let nephew = (e.height + 1..=e.height + uncle_depth + 1)
                    .filter_map(|h| chain.ancestor_at(t.hash, h))
                    .find(|n| n.share.info.uncles.contains(&e.hash));
                match nephew {
                    Some(n) => ("uncle", t.height - n.height),
                    None => ("stale", 0),
                }
            }
            None => ("stale", 0),
        };
        let standing = match place {
            "stale" => {
                st.stale += 1;
                "stale: off the best chain and not included as an uncle, earns nothing"
            }
            _ if depth < full => {
                st.in_window += 1;
                if place == "uncle" {
                    st.uncles += 1;
                }
                "in the window"
            }
            _ => {
                st.outside += 1;
                "outside the window"
            }
        };
        if st.shares.len() < MAX_SHARES_LISTED {
            let left = (place != "stale" && depth < full).then(|| {
                window_shares
                    .saturating_sub(1)
                    .saturating_sub(depth)
                    .min(full - depth)
            });
            st.shares.push(json!({
                "hash": e.hash.to_string(),
                "height": e.height,
                "time": e.share.header.time,
                "place": place,
                "standing": standing,
                "uncle": place == "uncle",
                "weight": e.credits.weight.to_string(),
                "window_shares_left": left,
            }));
        }
    }
    st
}

fn duration_words(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} seconds")
    } else if secs < 7_200.0 {
        format!("{:.0} minutes", secs / 60.0)
    } else if secs < 172_800.0 {
        format!("{:.1} hours", secs / 3_600.0)
    } else {
        format!("{:.1} days", secs / 86_400.0)
    }
}

pub async fn explainpayout(
    s: &Sources,
    address: String,
    script: Vec<u8>,
) -> Result<Value, ErrorObjectOwned> {
    let now = super::now_secs();
    let script_of_address = script.clone();
    let st = s
        .chain
        .call(move |c| standing(c.index(), &script))
        .await
        .map_err(chain_stopped)?;
    let daemon = s.daemon.borrow().clone();
    let value = daemon.template.as_ref().map(|t| t.coinbase_value);
    let c = &s.preset.consensus;
    let reward =
        value.map(|v| v - proportional(v, u128::from(c.finder_bonus_basis_points), 10_000));
    let expected = reward.map(|r| proportional(r, st.weight, st.total_weight));
    let step = reward.map(|r| payout_step(r, &c.payout_rules()));
    let workers = s.hashrates.workers(now, Some(address.as_str()));
    let rates = s.hashrates.address(now, &address);
    let rejected: u64 = workers.iter().map(|w| w.rejected).sum();
    let accepted: u64 = workers.iter().map(|w| w.accepted).sum();
    // Its addresses on each aux chain: those its shares name, else its own address's aux
    // form, if it has one (what a share of it would be paid at).
    let aux_scripts = if st.aux_scripts.is_empty() {
        derived_aux_script(&script_of_address).into_iter().collect()
    } else {
        st.aux_scripts.clone()
    };
    let aux_addresses: Vec<(String, Vec<String>)> = s
        .preset
        .aux_chains
        .iter()
        .map(|chain| {
            let addresses = aux_scripts
                .iter()
                .map(|script| crate::blocks::describe_aux_script(script, chain))
                .collect();
            (chain.chain.clone(), addresses)
        })
        .collect();
    let blocks: Vec<Value> = s
        .blocks
        .newest(BLOCKS_LOOKED_AT)
        .iter()
        .map(|b| {
            let paid_to: Vec<&str> = match &b.aux_chain {
                None => vec![address.as_str()],
                Some(chain) => aux_addresses
                    .iter()
                    .filter(|(c, _)| c == chain)
                    .flat_map(|(_, a)| a.iter().map(String::as_str))
                    .collect(),
            };
            let paid: u64 = b
                .payouts
                .iter()
                .filter(|p| paid_to.contains(&p.address.as_str()))
                .map(|p| p.amount)
                .sum();
            json!({
                "chain": b.aux_chain.as_deref().unwrap_or(&s.preset.coin.chain),
                "hash": b.hash,
                "height": b.height,
                "status": b.status,
                "paid": paid,
            })
        })
        .collect();

    let mut diagnosis = Vec::new();
    if !daemon.state.is_ready() {
        diagnosis.push(format!(
            "litecoind is not ready ({:?}): this node serves no work and finds no blocks",
            daemon.state
        ));
    }
    if let Some(sync) = s.sync.as_ref().map(|r| r.borrow().clone()) {
        if !sync.may_serve() {
            diagnosis.push(format!(
                "this node is not synced with the share chain: {sync}"
            ));
        }
    }
    let total_shares = st.in_window + st.stale + st.outside;
    if total_shares == 0 {
        let hashrate = rates.as_ref().and_then(|r| r.h1h.or(r.h10m));
        match hashrate {
            Some(h) if h > 0.0 => diagnosis.push(format!(
                "no share yet: its submissions ({accepted} accepted) are all below the share \
                 difficulty so far; at {h:.0} H/s a share takes {} on average",
                duration_words(st.share_work as f64 / h)
            )),
            _ if !workers.is_empty() => diagnosis
                .push("no share yet, and no hashrate measured for its workers on this node".into()),
            _ => diagnosis.push(
                "no shares in the share chain, and no worker on this node mines to it".into(),
            ),
        }
    } else if st.in_window == 0 {
        if st.stale == total_shares {
            diagnosis.push(format!(
                "all {} of its shares were orphaned (stale: another share won at the same height \
                 and they were not included as uncles)",
                st.stale
            ));
        } else {
            diagnosis.push(
                "its shares have left the window (older than the last window of shares or \
                 work): it is paid again after its next share"
                    .into(),
            );
        }
    } else if let (Some(e), Some(step)) = (expected, step) {
        if e < step {
            diagnosis.push(format!(
                "dust rule: it is owed about {e} per block, under one payout step ({step}); \
                 it is paid one step in about {:.0}% of blocks, exact on average",
                100.0 * e as f64 / step as f64
            ));
        } else {
            diagnosis.push(format!(
                "in the window with {} shares: a block found now pays it about {e}",
                st.in_window
            ));
        }
    }
    for (chain, addresses) in &aux_addresses {
        if addresses.is_empty() {
            diagnosis.push(format!(
                "no {chain} address: its address has no {chain} form (P2SH, P2WSH and P2TR \
                 have none) and its shares name none, so it is paid nothing on {chain} (its \
                 part goes to the rest of the window); a miner names one in its username: \
                 ADDRESS,AUX_ADDRESS.worker"
            ));
        }
    }
    if rejected > 0 {
        diagnosis.push(format!(
            "{rejected} of its submissions were rejected (stale or dead on arrival, or invalid)"
        ));
    }
    Ok(json!({
        "address": address,
        "shares": {
            "in_window": st.in_window,
            "uncles_in_window": st.uncles,
            "stale": st.stale,
            "outside_window": st.outside,
            "listed": st.shares,
        },
        "window": {
            "weight": st.weight.to_string(),
            "total_weight": st.total_weight.to_string(),
        },
        "expected_now": expected,
        "payout_step": step,
        "share_work": st.share_work.to_string(),
        "hashrate": rates.map(|r| r.to_json()),
        "submissions": {"accepted": accepted, "rejected": rejected},
        "aux_addresses": aux_addresses
            .iter()
            .map(|(chain, addresses)| json!({"chain": chain, "addresses": addresses}))
            .collect::<Vec<_>>(),
        "last_blocks": blocks,
        "diagnosis": diagnosis,
    }))
}
