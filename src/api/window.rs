//! The share-level methods: `getpplnswindow [offset count]` (every share of the current
//! PPLNS window, paged, with the exact credits a payout is recomputed from) and
//! `getshare <hash>` (one share decoded, with its place: best chain, uncle, stale, orphan).
//!
//! Both run on the chain thread, so each call is bounded: a page is at most
//! [`MAX_PAGE`] rows, and the walk is the window (at most `window_shares`).

use jsonrpsee::types::ErrorObjectOwned;
use serde_json::{json, Value};
use share_chain::chain::{ChainEntry, ChainIndex};
use share_chain::pplns::share_work;
use share_chain::{CoinParams, ShareHash};

use super::methods::{chain_stopped, error, Sources, INVALID_PARAMS, NOT_FOUND};
use crate::blocks::describe_script;

/// Most rows `getpplnswindow` returns per call.
pub const MAX_PAGE: u64 = 1_000;

fn credits_json(entry: &ChainEntry, coin: &CoinParams) -> Vec<Value> {
    entry
        .credits
        .credits
        .iter()
        .map(|(script, w)| json!({"address": describe_script(script, coin), "weight": w.to_string()}))
        .collect()
}

/// One row of the window: a share counted in full or in part, or an uncle it includes.
enum Row<'a> {
    Share {
        entry: &'a ChainEntry,
        partial: bool,
    },
    Uncle {
        entry: &'a ChainEntry,
        included_by: ShareHash,
        partial: bool,
    },
}

/// The window's rows, newest first: each fully counted share, then each uncle it includes
/// (`uncle: true`; its credit is inside the including share's `credits`); last, the
/// boundary share a new share counts in part (`partial: true`), if any. Only references:
/// a page is rendered from them, so a call costs one walk of the window, not its JSON.
fn window_rows(index: &ChainIndex) -> Vec<Row<'_>> {
    let Some(window) = index.tip_window() else {
        return Vec::new();
    };
    let Some(tip) = window.tip() else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    let limit = (index.params().window_shares as usize).saturating_sub(1);
    let full = window.len();
    for (i, entry) in index.ancestors(tip).take(full + 1).enumerate() {
        let partial = i == full;
        if partial && full >= limit {
            break;
        }
        rows.push(Row::Share { entry, partial });
        for uncle in &entry.share.info.uncles {
            if let Some(u) = index.get(uncle) {
                rows.push(Row::Uncle {
                    entry: u,
                    included_by: entry.hash,
                    partial,
                });
            }
        }
    }
    rows
}

fn row_json(row: &Row<'_>, coin: &CoinParams) -> Value {
    match row {
        Row::Share { entry, partial } => json!({
            "hash": entry.hash.to_string(),
            "height": entry.height,
            "address": describe_script(&entry.share.info.payout_script, coin),
            "weight": entry.credits.weight.to_string(),
            "credits": credits_json(entry, coin),
            "uncle": false,
            "partial": partial,
        }),
        Row::Uncle {
            entry,
            included_by,
            partial,
        } => json!({
            "hash": entry.hash.to_string(),
            "height": entry.height,
            "address": describe_script(&entry.share.info.payout_script, coin),
            "weight": share_work(&entry.share.info).to_string(),
            "uncle": true,
            "included_by": included_by.to_string(),
            "partial": partial,
        }),
    }
}

pub async fn getpplnswindow(
    s: &Sources,
    offset: Option<u64>,
    count: Option<u64>,
) -> Result<Value, ErrorObjectOwned> {
    let offset = offset.unwrap_or(0);
    let count = count.unwrap_or(100);
    if count == 0 || count > MAX_PAGE {
        return Err(error(
            INVALID_PARAMS,
            format!("count must be 1..={MAX_PAGE}"),
        ));
    }
    if offset > u64::from(u32::MAX) {
        return Err(error(INVALID_PARAMS, "offset is too large"));
    }
    let coin = s.preset.coin.clone();
    s.chain
        .call(move |c| {
            let index = c.index();
            let rows = window_rows(index);
            let total = rows.len();
            let page: Vec<Value> = rows
                .iter()
                .skip(offset as usize)
                .take(count as usize)
                .map(|row| row_json(row, &coin))
                .collect();
            json!({
                "tip": index.tip_window().and_then(|w| w.tip()).map(|t| t.to_string()),
                "total": total,
                "offset": offset,
                "shares": page,
            })
        })
        .await
        .map_err(chain_stopped)
}

/// Where a share stands: `best` (on the best chain), `uncle` (off it, included by a best
/// share), `stale` (off it and not included), or `orphan` (waiting for its parent).
fn place(index: &ChainIndex, entry: &ChainEntry) -> (&'static str, Option<ShareHash>) {
    let Some(best) = index.best_hash() else {
        return ("stale", None);
    };
    if index.is_ancestor(&entry.hash, best) {
        return ("best", None);
    }
    let depth = u64::from(index.params().uncle_depth);
    let nephew = (entry.height + 1..=entry.height + depth + 1)
        .filter_map(|h| index.ancestor_at(best, h))
        .find(|e| e.share.info.uncles.contains(&entry.hash));
    match nephew {
        Some(n) => ("uncle", Some(n.hash)),
        None => ("stale", None),
    }
}

pub async fn getshare(s: &Sources, hash: String) -> Result<Value, ErrorObjectOwned> {
    let hash = ShareHash::from_display_hex(&hash)
        .map_err(|_| error(INVALID_PARAMS, "hash must be 64 hex digits"))?;
    let coin = s.preset.coin.clone();
    let found = s
        .chain
        .call(move |c| {
            let index = c.index();
            let Some(entry) = index.get(&hash) else {
                return index
                    .knows(&hash)
                    .then(|| json!({"hash": hash.to_string(), "place": "orphan"}));
            };
            let (place, included_by) = place(index, entry);
            let share = &entry.share;
            let info = &share.info;
            let h = &share.header;
            Some(json!({
                "hash": hash.to_string(),
                "place": place,
                "included_by": included_by.map(|n| n.to_string()),
                "height": entry.height,
                "prev_share": info.prev_share.to_string(),
                "address": describe_script(&info.payout_script, &coin),
                "fee": info.fee.as_ref().map(|f| json!({
                    "basis_points": f.basis_points,
                    "address": describe_script(&f.script, &coin),
                })),
                "required_bits": format!("{:#010x}", info.required_bits),
                "share_target_bits": format!("{:#010x}", info.share_target_bits),
                "work": share_work(info).to_string(),
                "weight": entry.credits.weight.to_string(),
                "credits": credits_json(entry, &coin),
                "uncles": info.uncles.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "header": {
                    "version": h.version,
                    "prev_block": ShareHash(h.prev_block).to_string(),
                    "merkle_root": ShareHash(h.merkle_root).to_string(),
                    "time": h.time,
                    "bits": format!("{:#010x}", h.bits),
                    "nonce": h.nonce,
                },
                "coinbase": {
                    "value": share.coinbase.value,
                    "script_sig": hex::encode(&share.coinbase.script_sig),
                    "block_height": crate::blocks::bip34_height(&share.coinbase.script_sig),
                },
            }))
        })
        .await
        .map_err(chain_stopped)?;
    found.ok_or_else(|| {
        error(
            NOT_FOUND,
            "unknown share: never seen, or pruned from the share chain",
        )
    })
}
