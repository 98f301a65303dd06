//! The JSON-RPC methods. Parameters are positional; amounts are in the coin's smallest unit
//! (litoshi), weights are decimal strings (they can exceed 2^53).
//!
//! - `getinfo`: the node at a glance: daemon, share chain, sync state, Stratum, peers.
//! - `getpayoutinfo [address]`: the current PPLNS window per payout address, with each one's
//!   fraction and the amount it would expect from a block found now (the template's value
//!   less the finder bonus, in proportion to weight; the real coinbase rounds to whole
//!   payout steps, exact in expectation — `docs/PROTOCOL.md` §9), the payout rules, and
//!   the exact outputs (`payouts`) a block found now would pay.
//! - `getminerstats [address]`: this node's Stratum workers (all, or those paying
//!   `address`) and the address's place in the window.
//! - `getpeerinfo`: share-chain peers.
//! - `getsharechain [count]`: the newest shares of the best chain (at most 500).
//! - `getblocks [count]`, `verifyblockpayout <blockhash>`: [`super::blocks`].
//! - `getpplnswindow [offset count]`, `getshare <hash>`: [`super::window`].
//! - `explainpayout <address>`: [`super::explain`].
//! - `getalerts [count]`: the newest alerts ([`crate::alerts`]).
//! - `gethistory <address|pool|local> <10m|1h|1d>`: hashrate history ([`crate::history`]).

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::RpcModule;
use ruint::aliases::U256;
use serde_json::{json, Value};
use share_chain::address::aux_script_to_address;
use share_chain::address::{address_to_script, script_to_address};
use share_chain::payout::payout_step;
use share_chain::pplns::window_work_cap;
use share_chain::target::Target;
use share_chain::template::{BlockContext, MinerPayout};

use super::{ApiSources, ChainStats};
use crate::blocks::describe_script;
use crate::history::{Scope, Tier};
use crate::stratum::username::Username;

/// Most shares `getsharechain` returns.
pub const MAX_SHARES: usize = 500;

pub(super) const INVALID_PARAMS: i32 = -32602;
pub(super) const UNAVAILABLE: i32 = -32000;
/// The block or share asked for is not known (or was pruned).
pub(super) const NOT_FOUND: i32 = -32001;

pub(super) fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

pub(super) fn chain_stopped<E>(_: E) -> ErrorObjectOwned {
    error(UNAVAILABLE, "the share chain is not running")
}

pub(super) type Sources = Arc<ApiSources>;

/// The module with every method registered.
pub fn module(sources: Sources) -> Result<RpcModule<Sources>, String> {
    let mut m = RpcModule::new(sources);
    let e = |e: jsonrpsee::core::RegisterMethodError| e.to_string();
    m.register_async_method("getinfo", |_, s, _| async move { getinfo(&s).await })
        .map_err(e)?;
    m.register_async_method("getpayoutinfo", |p, s, _| async move {
        getpayoutinfo(&s, optional_address(&s, p)?).await
    })
    .map_err(e)?;
    m.register_async_method("getminerstats", |p, s, _| async move {
        getminerstats(&s, optional_address(&s, p)?).await
    })
    .map_err(e)?;
    m.register_async_method(
        "getpeerinfo",
        |_, s, _| async move { getpeerinfo(&s).await },
    )
    .map_err(e)?;
    m.register_async_method("getsharechain", |p, s, _| async move {
        let count: Option<u64> = p.sequence().optional_next()?;
        getsharechain(&s, count.unwrap_or(20)).await
    })
    .map_err(e)?;
    m.register_async_method("getblocks", |p, s, _| async move {
        let count: Option<u64> = p.sequence().optional_next()?;
        super::blocks::getblocks(&s, count).await
    })
    .map_err(e)?;
    m.register_async_method("verifyblockpayout", |p, s, _| async move {
        let hash: String = p.sequence().next()?;
        super::blocks::verifyblockpayout(&s, hash).await
    })
    .map_err(e)?;
    m.register_async_method("getpplnswindow", |p, s, _| async move {
        let mut seq = p.sequence();
        let offset: Option<u64> = seq.optional_next()?;
        let count: Option<u64> = seq.optional_next()?;
        super::window::getpplnswindow(&s, offset, count).await
    })
    .map_err(e)?;
    m.register_async_method("explainpayout", |p, s, _| async move {
        let (address, script) = optional_address(&s, p)?
            .ok_or_else(|| error(INVALID_PARAMS, "an address is required"))?;
        super::explain::explainpayout(&s, address, script).await
    })
    .map_err(e)?;
    m.register_async_method("gethistory", |p, s, _| async move {
        let mut seq = p.sequence();
        let who: String = seq.next()?;
        let tier: String = seq.next()?;
        gethistory(&s, who, tier)
    })
    .map_err(e)?;
    m.register_async_method("getalerts", |p, s, _| async move {
        let count: Option<u64> = p.sequence().optional_next()?;
        let count = count.unwrap_or(50);
        if count == 0 || count > crate::alerts::MAX_ALERTS as u64 {
            return Err(error(
                INVALID_PARAMS,
                format!("count must be 1..={}", crate::alerts::MAX_ALERTS),
            ));
        }
        Ok::<Value, ErrorObjectOwned>(Value::Array(
            s.alerts
                .newest(count as usize)
                .iter()
                .map(|a| a.to_json())
                .collect(),
        ))
    })
    .map_err(e)?;
    m.register_async_method("getshare", |p, s, _| async move {
        let hash: String = p.sequence().next()?;
        super::window::getshare(&s, hash).await
    })
    .map_err(e)?;
    Ok(m)
}

/// The optional first parameter, an address of this node's network: (address, script).
fn optional_address(
    s: &ApiSources,
    params: Params<'static>,
) -> Result<Option<(String, Vec<u8>)>, ErrorObjectOwned> {
    let address: Option<String> = params.sequence().optional_next()?;
    address
        .map(|a| {
            address_to_script(&a, &s.preset.coin)
                .map(|script| (a.clone(), script))
                .map_err(|e| error(INVALID_PARAMS, format!("invalid address {a:?}: {e}")))
        })
        .transpose()
}

async fn getinfo(s: &ApiSources) -> Result<Value, ErrorObjectOwned> {
    let c = ChainStats::read(&s.chain).await.map_err(chain_stopped)?;
    let chain = json!({
        "tip": c.tip.map(|t| t.to_string()),
        "height": c.height,
        "shares": c.shares,
        "orphans": c.orphans,
        "window_shares": c.window_shares,
        "window_payees": c.window_payees,
    });
    let daemon = s.daemon.borrow().clone();
    let stratum = (s.stratum)();
    let sync = s.sync.as_ref().map(|r| r.borrow().clone());
    let p2p = match &s.network {
        Some(net) => match net.status().await {
            Ok(st) => json!({
                "peer_id": st.local_peer_id.to_string(),
                "listen": st.listen_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "peers": st.connected_peers,
                "identified_peers": st.identified_peers,
                "mesh_peers": st.mesh_peers,
            }),
            Err(e) => json!({ "error": e.to_string() }),
        },
        None => Value::Null,
    };
    let rejected: u64 = stratum.rejected.values().sum();
    let now = super::now_secs();
    let hashrate = json!({
        "pool": super::pool_hashrate(&s.chain).await,
        "local": s.hashrates.local(now).to_json(),
    });
    Ok(json!({
        "hashrate": hashrate,
        "version": env!("CARGO_PKG_VERSION"),
        "chain": s.preset.coin.chain,
        "network_id": s.preset.network_id().to_string(),
        "daemon": {
            "state": format!("{:?}", daemon.state),
            "ready": daemon.state.is_ready(),
            "height": daemon.template.as_ref().map(|t| t.height),
            "block_value": daemon.template.as_ref().map(|t| t.coinbase_value),
        },
        "share_chain": chain,
        // Merged mining: each aux daemon's state; a chain without a template is left out of
        // the work until its daemon is back.
        "aux": s.aux_status.iter().map(|rx| {
            let st = rx.borrow().clone();
            json!({
                "url": st.url,
                "chain": st.chain,
                "state": st.state,
                "ready": st.template.is_some(),
                "height": st.template.as_ref().map(|t| t.height),
                "block_value": st.template.as_ref().map(|t| t.block.coinbase_value),
            })
        }).collect::<Vec<_>>(),
        "sync": match &sync {
            Some(state) => {
                // A catch-up's progress, for the dashboard's bar.
                let (received, needed) = match state {
                    crate::p2p::SyncState::Syncing {
                        received, needed, ..
                    } => (Some(*received), *needed),
                    _ => (None, None),
                };
                json!({
                    "state": state.to_string(),
                    "serving": state.may_serve(),
                    "received": received,
                    "needed": needed,
                })
            }
            None => json!({ "state": "off (no share-chain network)", "serving": true }),
        },
        "stratum": {
            "connections": stratum.connections,
            "workers": stratum.workers.len(),
            "accepted": stratum.accepted,
            "rejected": rejected,
            "shares": stratum.shares,
            "blocks": stratum.blocks,
            "jobs": stratum.jobs,
        },
        "p2p": p2p,
    }))
}

/// One payee of the window.
struct Payee {
    script: Vec<u8>,
    weight: u128,
}

/// The best tip's PPLNS window, per payout script.
struct WindowView {
    payees: Vec<Payee>,
    total: u128,
}

impl WindowView {
    async fn read(s: &ApiSources) -> Result<WindowView, ErrorObjectOwned> {
        let payees: Vec<Payee> = s
            .chain
            .call(|c| {
                c.index()
                    .tip_window()
                    .map(|w| {
                        w.sums()
                            .iter()
                            .map(|(script, &weight)| Payee {
                                script: script.clone(),
                                weight,
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .await
            .map_err(chain_stopped)?;
        let total = payees.iter().map(|p| p.weight).sum();
        Ok(WindowView { payees, total })
    }

    fn weight_of(&self, script: &[u8]) -> u128 {
        self.payees
            .iter()
            .find(|p| p.script == script)
            .map_or(0, |p| p.weight)
    }

    fn fraction(&self, weight: u128) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            weight as f64 / self.total as f64
        }
    }
}

/// `value × weight / total`, rounded down, without overflow.
pub(super) fn proportional(value: u64, weight: u128, total: u128) -> u64 {
    if total == 0 {
        return 0;
    }
    let product = U256::from(value) * U256::from(weight);
    u64::try_from(product / U256::from(total)).unwrap_or(u64::MAX)
}

/// `(script, amount)` of each output.
type Outputs = Vec<(Vec<u8>, u64)>;

/// What a block found now would pay, on the parent chain and on each aux chain.
struct PayoutsNow {
    parent: Outputs,
    /// `(chain id, aux coinbase value, payouts)` of each aux block merge-mined now.
    aux: Vec<(u32, u64, Outputs)>,
}

/// The outputs a block found now would pay: the coinbase of `finder`'s next share on the
/// best tip (with this node's fee), for the template's block target and value, and the aux
/// coinbases of the aux blocks it would mine.
async fn payouts_now(
    s: &ApiSources,
    finder: Vec<u8>,
    bits: u32,
    value: u64,
) -> Result<PayoutsNow, ErrorObjectOwned> {
    let miner = MinerPayout {
        script: finder,
        aux_script: None,
        fee: s.fee.clone(),
        share_target_bits: None,
    };
    let block = BlockContext {
        version: 0,
        prev_block: [0; 32],
        bits,
        coinbase_value: value,
        witness_commitment: None,
        merkle_branch: Vec::new(),
        aux: s.aux.borrow().iter().map(|t| t.block.clone()).collect(),
    };
    let pairs = |payouts: Vec<share_chain::coinbase::Payout>| -> Outputs {
        payouts.into_iter().map(|p| (p.script, p.amount)).collect()
    };
    s.chain
        .call(move |c| {
            c.index_mut()
                .share_template(&miner, block)
                .map(|t| PayoutsNow {
                    aux: t
                        .merged_mining
                        .blocks
                        .iter()
                        .zip(t.aux_payouts.clone())
                        .map(|(b, p)| (b.chain_id, b.coinbase_value, pairs(p)))
                        .collect(),
                    parent: pairs(t.payouts),
                })
        })
        .await
        .map_err(chain_stopped)?
        .map_err(|e| error(UNAVAILABLE, format!("cannot build the next share: {e}")))
}

/// The payout rules of the preset (and this node's fee), for `getpayoutinfo`.
fn rules(s: &ApiSources, bits: Option<u32>, value: Option<u64>) -> Value {
    let c = &s.preset.consensus;
    let reward =
        value.map(|v| v - proportional(v, u128::from(c.finder_bonus_basis_points), 10_000));
    json!({
        "finder_bonus_basis_points": c.finder_bonus_basis_points,
        "node_fee_basis_points": s.fee.as_ref().map_or(0, |f| f.basis_points),
        "max_fee_basis_points": c.max_fee_basis_points,
        "window_shares": c.window_shares,
        "window_work_blocks": c.window_work_blocks,
        "window_work_cap": bits.map(|b| window_work_cap(b, c).to_string()),
        "uncle_penalty_percent": c.uncle_penalty_percent,
        "max_payout_outputs": c.max_payout_outputs,
        "dust_threshold": c.dust_threshold,
        "payout_step": reward.map(|r| payout_step(r, &c.payout_rules())),
    })
}

async fn getpayoutinfo(
    s: &ApiSources,
    address: Option<(String, Vec<u8>)>,
) -> Result<Value, ErrorObjectOwned> {
    let window = WindowView::read(s).await?;
    let template = s
        .daemon
        .borrow()
        .template
        .as_ref()
        .map(|t| (t.coinbase_value, t.bits));
    let block_value = template.map(|(v, _)| v);
    let bonus_bp = u64::from(s.preset.consensus.finder_bonus_basis_points);
    let shared = block_value.map(|v| v - proportional(v, u128::from(bonus_bp), 10_000));
    let describe = |script: &[u8], weight: u128| {
        json!({
            "address": script_to_address(script, &s.preset.coin),
            "script": hex::encode(script),
            "weight": weight.to_string(),
            "fraction": window.fraction(weight),
            "expected": shared.map(|v| proportional(v, weight, window.total)),
        })
    };
    let mut miners: Vec<&Payee> = window.payees.iter().collect();
    miners.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.script.cmp(&b.script)));
    let listed: Vec<Value> = match &address {
        Some((_, script)) => vec![describe(script, window.weight_of(script))],
        None => miners
            .iter()
            .map(|p| describe(&p.script, p.weight))
            .collect(),
    };
    // The finder of the block "found now": the address asked about, else the miner of
    // the best share (the last one to find a share).
    let finder = match &address {
        Some((_, script)) => Some(script.clone()),
        None => s
            .chain
            .call(|c| c.index().best().map(|b| b.share.info.payout_script.clone()))
            .await
            .map_err(chain_stopped)?,
    };
    let (payouts, aux) = match (template, &finder) {
        (Some((value, bits)), Some(finder)) => {
            let paid = payouts_now(s, finder.clone(), bits, value).await?;
            let parent = Value::Array(
                paid.parent
                    .iter()
                    .map(|(script, amount)| {
                        json!({"address": describe_script(script, &s.preset.coin), "amount": amount})
                    })
                    .collect(),
            );
            let aux: Vec<Value> = paid
                .aux
                .iter()
                .filter_map(|(chain_id, value, payouts)| {
                    let chain = s.preset.aux_chain(*chain_id)?;
                    Some(json!({
                        "chain": chain.chain,
                        "coinbase_value": value,
                        "payouts": payouts.iter().map(|(script, amount)| json!({
                            "address": aux_script_to_address(script, chain)
                                .unwrap_or_else(|| hex::encode(script)),
                            "amount": amount,
                        })).collect::<Vec<_>>(),
                    }))
                })
                .collect();
            (parent, Value::Array(aux))
        }
        _ => (Value::Null, Value::Array(Vec::new())),
    };
    Ok(json!({
        "total_weight": window.total.to_string(),
        "payees": window.payees.len(),
        "block_value": block_value,
        "coinbase_value": block_value,
        "finder_bonus_basis_points": bonus_bp,
        "rules": rules(s, template.map(|(_, b)| b), block_value),
        "finder": finder.map(|f| describe_script(&f, &s.preset.coin)),
        "payouts": payouts,
        "aux_payouts": aux,
        "miners": listed,
    }))
}

async fn getminerstats(
    s: &ApiSources,
    address: Option<(String, Vec<u8>)>,
) -> Result<Value, ErrorObjectOwned> {
    let stats = (s.stratum)();
    let now = super::now_secs();
    let views: std::collections::HashMap<String, crate::hashrate::WorkerView> = s
        .hashrates
        .workers(now, address.as_ref().map(|(a, _)| a.as_str()))
        .into_iter()
        .map(|v| (v.username.clone(), v))
        .collect();
    let offline_after = s.hashrates.offline_after();
    let workers: Vec<Value> = stats
        .workers
        .iter()
        .filter(|w| match &address {
            Some((a, _)) => Username::parse(&w.username).is_ok_and(|u| u.address == *a),
            None => true,
        })
        .map(|w| {
            let view = views.get(&w.username);
            let last_accepted = w
                .last_accepted
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            // From the live counters, as the alerts read them (the hashrate samples lag).
            let online = last_accepted.is_some_and(|t| now.saturating_sub(t) < offline_after);
            json!({
                "hashrate": view.map(|v| v.rates.to_json()),
                "online": online,
                "low_hashrate": view.map(|v| v.low_hashrate),
                "username": w.username,
                "accepted": w.accepted,
                "accepted_difficulty": w.accepted_difficulty,
                "rejected": w.rejected,
                "shares": w.shares,
                "blocks": w.blocks,
                "last_accepted": last_accepted,
            })
        })
        .collect();
    let window = match &address {
        Some((_, script)) => {
            let window = WindowView::read(s).await?;
            let weight = window.weight_of(script);
            json!({
                "weight": weight.to_string(),
                "fraction": window.fraction(weight),
            })
        }
        None => Value::Null,
    };
    let hashrate = match &address {
        Some((a, _)) => s.hashrates.address(now, a).map(|r| r.to_json()),
        None => Some(s.hashrates.local(now).to_json()),
    };
    Ok(json!({ "workers": workers, "hashrate": hashrate, "window": window }))
}

/// `gethistory <address|pool|local> <10m|1h|1d>`: `[[bucket start, H/s], …]`, oldest first.
fn gethistory(s: &ApiSources, who: String, tier: String) -> Result<Value, ErrorObjectOwned> {
    let tier = Tier::parse(&tier)
        .ok_or_else(|| error(INVALID_PARAMS, "the tier must be 10m, 1h or 1d"))?;
    let who = match who.as_str() {
        "pool" => Scope::Pool,
        "local" => Scope::Local,
        a => {
            address_to_script(a, &s.preset.coin)
                .map_err(|e| error(INVALID_PARAMS, format!("invalid address {a:?}: {e}")))?;
            Scope::Address(a)
        }
    };
    Ok(json!({
        "tier": tier.secs(),
        "points": s.history.points(who, tier).unwrap_or_else(|| json!([])),
    }))
}

async fn getpeerinfo(s: &ApiSources) -> Result<Value, ErrorObjectOwned> {
    let Some(net) = &s.network else {
        return Ok(json!([]));
    };
    let peers = net
        .peers()
        .await
        .map_err(|e| error(UNAVAILABLE, e.to_string()))?;
    Ok(peers
        .into_iter()
        .map(|p| {
            json!({
                "peer_id": p.peer.to_string(),
                "addrs": p.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "inbound": p.inbound,
                "agent": p.agent_version,
                "rtt_ms": p.rtt.map(|d| d.as_secs_f64() * 1000.0),
                "score": p.score,
            })
        })
        .collect())
}

async fn getsharechain(s: &ApiSources, count: u64) -> Result<Value, ErrorObjectOwned> {
    if count == 0 || count > MAX_SHARES as u64 {
        return Err(error(
            INVALID_PARAMS,
            format!("count must be 1..={MAX_SHARES}"),
        ));
    }
    let coin = s.preset.coin.clone();
    let shares = s
        .chain
        .call(move |c| {
            let index = c.index();
            index
                .best_hash()
                .into_iter()
                .flat_map(|b| index.ancestors(b))
                .take(count as usize)
                .map(|e| {
                    let info = &e.share.info;
                    json!({
                        "hash": e.hash.to_string(),
                        "height": e.height,
                        "time": e.share.header.time,
                        "miner": script_to_address(&info.payout_script, &coin),
                        "share_target_bits": format!("{:#010x}", info.share_target_bits),
                        "work": Target::from_compact(info.share_target_bits)
                            .map(|t| t.work().0.to_string())
                            .ok(),
                        "weight": e.credits.weight.to_string(),
                        "uncles": info.uncles.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    })
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(chain_stopped)?;
    Ok(Value::Array(shares))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_amounts_round_down_without_overflow() {
        assert_eq!(proportional(100, 1, 3), 33);
        assert_eq!(proportional(100, 2, 3), 66);
        assert_eq!(proportional(100, 0, 3), 0);
        assert_eq!(proportional(100, 5, 0), 0);
        // Weights near 2^128 would overflow a u128 product.
        assert_eq!(
            proportional(8_400_000_000_000_000, u128::MAX, u128::MAX),
            8_400_000_000_000_000
        );
        assert_eq!(
            proportional(1_000_000_007, u128::MAX / 2, u128::MAX),
            500_000_003
        );
    }
}
