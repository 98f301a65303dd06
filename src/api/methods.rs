//! The JSON-RPC methods. Parameters are positional; amounts are in the coin's smallest unit
//! (litoshi), weights are decimal strings (they can exceed 2^53).
//!
//! - `getinfo`: the node at a glance: daemon, share chain, sync state, Stratum, peers.
//! - `getpayoutinfo [address]`: the current PPLNS window per payout address, with each one's
//!   fraction and the amount it would expect from a block found now (the template's value
//!   less the finder bonus, in proportion to weight; the real coinbase rounds to whole
//!   payout steps, exact in expectation — `docs/PROTOCOL.md` §9).
//! - `getminerstats [address]`: this node's Stratum workers (all, or those paying
//!   `address`) and the address's place in the window.
//! - `getpeerinfo`: share-chain peers.
//! - `getsharechain [count]`: the newest shares of the best chain (at most 500).

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::RpcModule;
use ruint::aliases::U256;
use serde_json::{json, Value};
use share_chain::address::{address_to_script, script_to_address};
use share_chain::target::Target;

use super::{ApiSources, ChainStats};
use crate::stratum::username::Username;

/// Most shares `getsharechain` returns.
pub const MAX_SHARES: usize = 500;

const INVALID_PARAMS: i32 = -32602;
const UNAVAILABLE: i32 = -32000;

fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

fn chain_stopped<E>(_: E) -> ErrorObjectOwned {
    error(UNAVAILABLE, "the share chain is not running")
}

type Sources = Arc<ApiSources>;

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
    Ok(json!({
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
        "sync": match &sync {
            Some(state) => json!({
                "state": state.to_string(),
                "serving": state.may_serve(),
            }),
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
fn proportional(value: u64, weight: u128, total: u128) -> u64 {
    if total == 0 {
        return 0;
    }
    let product = U256::from(value) * U256::from(weight);
    u64::try_from(product / U256::from(total)).unwrap_or(u64::MAX)
}

async fn getpayoutinfo(
    s: &ApiSources,
    address: Option<(String, Vec<u8>)>,
) -> Result<Value, ErrorObjectOwned> {
    let window = WindowView::read(s).await?;
    let block_value = s
        .daemon
        .borrow()
        .template
        .as_ref()
        .map(|t| t.coinbase_value);
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
    Ok(json!({
        "total_weight": window.total.to_string(),
        "payees": window.payees.len(),
        "block_value": block_value,
        "finder_bonus_basis_points": bonus_bp,
        "miners": listed,
    }))
}

async fn getminerstats(
    s: &ApiSources,
    address: Option<(String, Vec<u8>)>,
) -> Result<Value, ErrorObjectOwned> {
    let stats = (s.stratum)();
    let workers: Vec<Value> = stats
        .workers
        .iter()
        .filter(|w| match &address {
            Some((a, _)) => Username::parse(&w.username).is_ok_and(|u| u.address == *a),
            None => true,
        })
        .map(|w| {
            json!({
                "username": w.username,
                "accepted": w.accepted,
                "accepted_difficulty": w.accepted_difficulty,
                "rejected": w.rejected,
                "shares": w.shares,
                "blocks": w.blocks,
                "last_accepted": w.last_accepted
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs()),
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
    Ok(json!({ "workers": workers, "window": window }))
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
