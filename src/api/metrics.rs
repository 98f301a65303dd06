//! Prometheus metrics, rendered at each scrape from the same sources as the JSON-RPC API
//! (so the two never disagree), in the OpenMetrics text format of `prometheus-client`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{ApiSources, ChainStats};
use crate::blocks::BlockStatus;
use crate::counters::NodeCounters;
use crate::p2p::SyncState;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// The metrics text, or why it cannot be produced.
pub async fn render(s: &ApiSources) -> Result<String, String> {
    let mut registry = Registry::with_prefix("p2pool");
    let chain = ChainStats::read(&s.chain)
        .await
        .map_err(|_| "the share chain is not running".to_string())?;
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(
        &mut registry,
        "share_chain_height",
        "Height of the best share.",
        as_i64(chain.height),
    );
    gauge(
        &mut registry,
        "share_chain_shares",
        "Shares held in memory.",
        chain.shares as i64,
    );
    gauge(
        &mut registry,
        "share_chain_orphans",
        "Shares waiting for a missing parent or uncle.",
        chain.orphans as i64,
    );
    gauge(
        &mut registry,
        "window_payees",
        "Payout scripts in the current PPLNS window.",
        chain.window_payees as i64,
    );

    let daemon = s.daemon.borrow().clone();
    gauge(
        &mut registry,
        "daemon_ready",
        "1 while the coin daemon serves usable templates.",
        i64::from(daemon.state.is_ready()),
    );
    if let Some(t) = &daemon.template {
        gauge(
            &mut registry,
            "block_height",
            "Height of the block being mined.",
            i64::from(t.height),
        );
    }

    let sync_state = match s.sync.as_ref().map(|r| r.borrow().clone()) {
        None | Some(SyncState::Alone) => 0,
        Some(SyncState::Syncing { .. }) => 1,
        Some(SyncState::Synced) => 2,
    };
    gauge(
        &mut registry,
        "sync_state",
        "0 alone or no network, 1 syncing, 2 synced.",
        sync_state,
    );

    let st = (s.stratum)();
    gauge(
        &mut registry,
        "stratum_connections",
        "Open Stratum connections.",
        st.connections as i64,
    );
    gauge(
        &mut registry,
        "stratum_workers",
        "Distinct worker names seen.",
        st.workers.len() as i64,
    );
    counter(
        &mut registry,
        "stratum_accepted",
        "Accepted submissions (pseudo-shares included).",
        st.accepted,
    );
    counter(
        &mut registry,
        "stratum_shares",
        "Submissions that became shares on the chain.",
        st.shares,
    );
    counter(
        &mut registry,
        "stratum_blocks",
        "Submissions that met the block target.",
        st.blocks,
    );
    counter(&mut registry, "stratum_jobs", "Jobs broadcast.", st.jobs);
    let rejected = Family::<Vec<(String, String)>, Counter>::default();
    for (code, count) in &st.rejected {
        rejected
            .get_or_create(&vec![("code".to_string(), code.to_string())])
            .inc_by(*count);
    }
    registry.register(
        "stratum_rejected",
        "Rejected submissions by Stratum error code.",
        rejected,
    );

    if let Some(net) = &s.network {
        if let Ok(status) = net.status().await {
            gauge(
                &mut registry,
                "p2p_peers",
                "Connected share-chain peers.",
                status.connected_peers as i64,
            );
            gauge(
                &mut registry,
                "p2p_mesh_peers",
                "Peers in the share gossip mesh.",
                status.mesh_peers as i64,
            );
        }
    }

    let c = &s.counters;
    let counted = [
        (
            "blocks_submitted",
            "Blocks handed to the coin daemon.",
            &c.blocks_submitted,
        ),
        (
            "blocks_accepted",
            "Blocks the coin daemon accepted.",
            &c.blocks_accepted,
        ),
        (
            "blocks_refused",
            "Blocks the coin daemon refused or that could not be delivered.",
            &c.blocks_refused,
        ),
        (
            "solutions_dropped",
            "Solutions dropped before reaching the daemon or the share chain.",
            &c.solutions_dropped,
        ),
        (
            "template_txs_dropped",
            "Template transactions left out so the coinbase fits the block.",
            &c.template_txs_dropped,
        ),
        (
            "template_weight_dropped",
            "Weight of the template transactions left out.",
            &c.template_weight_dropped,
        ),
        (
            "payout_mismatches",
            "Found blocks whose coinbase differs from the share chain's payouts.",
            &c.payout_mismatches,
        ),
        (
            "aux_blocks_submitted",
            "Aux blocks (merged mining) handed to their daemons.",
            &c.aux_blocks_submitted,
        ),
        (
            "aux_blocks_accepted",
            "Aux blocks their daemons accepted.",
            &c.aux_blocks_accepted,
        ),
        (
            "aux_blocks_refused",
            "Aux blocks refused, undeliverable, or that could not be built.",
            &c.aux_blocks_refused,
        ),
    ];
    for (name, help, value) in counted {
        counter(&mut registry, name, help, NodeCounters::get(value));
    }

    let by_status = s.blocks.count_by_status();
    let found = Family::<Vec<(String, String)>, Gauge>::default();
    let chains =
        std::iter::once(None).chain(s.preset.aux_chains.iter().map(|a| Some(a.chain.clone())));
    for chain in chains {
        for status in [
            BlockStatus::Pending,
            BlockStatus::Immature,
            BlockStatus::Mature,
            BlockStatus::Orphaned,
        ] {
            let n = by_status
                .get(&(chain.clone(), status))
                .copied()
                .unwrap_or(0);
            let label = serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let name = chain.clone().unwrap_or_else(|| s.preset.coin.chain.clone());
            found
                .get_or_create(&vec![
                    ("chain".to_string(), name),
                    ("status".to_string(), label),
                ])
                .set(n as i64);
        }
    }
    registry.register(
        "found_blocks",
        "Blocks the share chain found (any node), by chain and status on its daemon.",
        found,
    );

    let alerts = Family::<Vec<(String, String)>, Counter>::default();
    for (kind, n) in s.alerts.counts() {
        alerts
            .get_or_create(&vec![("kind".to_string(), kind.to_string())])
            .inc_by(n);
    }
    registry.register("alerts", "Alerts raised, by kind.", alerts);

    let now = super::now_secs();
    let rates =
        Family::<Vec<(String, String)>, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let local = s.hashrates.local(now);
    for (span, rate) in [("10m", local.h10m), ("1h", local.h1h), ("24h", local.h24h)] {
        if let Some(r) = rate {
            rates
                .get_or_create(&vec![
                    ("scope".to_string(), "local".to_string()),
                    ("span".to_string(), span.to_string()),
                ])
                .set(r);
        }
    }
    if let Some(pool) = super::pool_hashrate(&s.chain).await {
        rates
            .get_or_create(&vec![
                ("scope".to_string(), "pool".to_string()),
                ("span".to_string(), "recent".to_string()),
            ])
            .set(pool);
    }
    registry.register(
        "hashrate",
        "Hashes per second: this node's workers, the pool.",
        rates,
    );

    let mut out = String::new();
    encode(&mut out, &registry).map_err(|e| e.to_string())?;
    Ok(out)
}
