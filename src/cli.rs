//! The client subcommands: `p2pool status`, `payouts [address]`, `miners`, `blocks` ask a
//! running node's API (`--rpc`) and print readable tables.
//!
//! They only read the JSON-RPC answers documented in docs/RPC.md; a node that cannot be
//! reached, or answers with an error, is reported with the URL tried.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;

/// Why a client command failed.
#[derive(Debug, Error)]
pub enum CliError {
    #[error(
        "cannot reach the node's API at {url}: {reason} (is `p2pool run` running with this --rpc?)"
    )]
    Unreachable { url: String, reason: String },
    #[error("the node answered {method} with an error: {message}")]
    Rpc { method: String, message: String },
}

/// A JSON-RPC client of a node's API.
pub struct ApiClient {
    url: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(addr: SocketAddr) -> ApiClient {
        ApiClient {
            url: format!("http://{addr}/"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    pub async fn call(&self, method: &str, params: Value) -> Result<Value, CliError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let unreachable = |e: reqwest::Error| CliError::Unreachable {
            url: self.url.clone(),
            reason: e.to_string(),
        };
        let answer: Value = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)?;
        if let Some(e) = answer.get("error").filter(|e| !e.is_null()) {
            return Err(CliError::Rpc {
                method: method.into(),
                message: e["message"].as_str().unwrap_or("unknown").into(),
            });
        }
        Ok(answer["result"].clone())
    }
}

/// A plain text table: columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut first = true;
        for (cell, &w) in cells.zip(&widths) {
            if !first {
                out.push_str("  ");
            }
            first = false;
            let _ = write!(out, "{cell:<w$}");
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&mut out, &mut headers.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

/// Litoshi as coins with 8 decimals.
pub fn coins(litoshi: u64) -> String {
    format!("{}.{:08}", litoshi / 100_000_000, litoshi % 100_000_000)
}

/// Hashes per second with a unit.
pub fn hashrate(h: Option<f64>) -> String {
    let Some(h) = h else { return "-".into() };
    let units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s"];
    let mut v = h;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.2} {}", units[i])
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `p2pool status`.
pub async fn status(api: &ApiClient) -> Result<String, CliError> {
    let info = api.call("getinfo", json!([])).await?;
    let rows = vec![
        vec!["chain".into(), text(&info["chain"])],
        vec!["litecoind".into(), text(&info["daemon"]["state"])],
        vec!["block height".into(), text(&info["daemon"]["height"])],
        vec![
            "share chain".into(),
            format!(
                "height {}, {} shares, {} in the window, {} payees",
                text(&info["share_chain"]["height"]),
                text(&info["share_chain"]["shares"]),
                text(&info["share_chain"]["window_shares"]),
                text(&info["share_chain"]["window_payees"]),
            ),
        ],
        vec!["sync".into(), text(&info["sync"]["state"])],
        vec!["peers".into(), text(&info["p2p"]["peers"])],
        vec![
            "pool hashrate".into(),
            hashrate(info["hashrate"]["pool"].as_f64()),
        ],
        vec![
            "local hashrate".into(),
            hashrate(info["hashrate"]["local"]["10m"].as_f64()),
        ],
        vec!["workers".into(), text(&info["stratum"]["workers"])],
    ];
    Ok(table(&["", ""], &rows))
}

/// `p2pool payouts [address]`.
pub async fn payouts(api: &ApiClient, address: Option<String>) -> Result<String, CliError> {
    let params = match &address {
        Some(a) => json!([a]),
        None => json!([]),
    };
    let info = api.call("getpayoutinfo", params).await?;
    let mut out = String::new();
    if let Some(value) = info["coinbase_value"].as_u64() {
        let _ = writeln!(
            out,
            "a block found now by {} pays {} LTC:",
            text(&info["finder"]),
            coins(value)
        );
    }
    let rows: Vec<Vec<String>> = info["payouts"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|p| address.as_ref().is_none_or(|a| p["address"] == a.as_str()))
                .map(|p| {
                    vec![
                        text(&p["address"]),
                        coins(p["amount"].as_u64().unwrap_or(0)),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&table(&["address", "amount"], &rows));
    Ok(out)
}

/// `p2pool miners`.
pub async fn miners(api: &ApiClient) -> Result<String, CliError> {
    let stats = api.call("getminerstats", json!([])).await?;
    let rows: Vec<Vec<String>> = stats["workers"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|w| {
                    let flags = match (w["online"].as_bool(), w["low_hashrate"].as_bool()) {
                        (Some(false), _) => "offline",
                        (_, Some(true)) => "low hashrate",
                        (Some(true), _) => "online",
                        _ => "-",
                    };
                    vec![
                        text(&w["username"]),
                        hashrate(w["hashrate"]["10m"].as_f64()),
                        hashrate(w["hashrate"]["1h"].as_f64()),
                        hashrate(w["hashrate"]["24h"].as_f64()),
                        text(&w["accepted"]),
                        text(&w["rejected"]),
                        text(&w["shares"]),
                        flags.into(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(table(
        &[
            "worker", "10m", "1h", "24h", "accepted", "rejected", "shares", "state",
        ],
        &rows,
    ))
}

/// `p2pool blocks`.
pub async fn blocks(api: &ApiClient, count: u64) -> Result<String, CliError> {
    let list = api.call("getblocks", json!([count])).await?;
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|list| {
            list.iter()
                .map(|b| {
                    vec![
                        text(&b["chain"]),
                        text(&b["height"]),
                        text(&b["hash"]),
                        text(&b["finder"]),
                        coins(b["value"].as_u64().unwrap_or(0)),
                        b["payouts"].as_array().map_or(0, Vec::len).to_string(),
                        match b["status"].as_str() {
                            Some("immature") => format!("immature ({})", text(&b["confirmations"])),
                            _ => text(&b["status"]),
                        },
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(table(
        &[
            "chain", "height", "hash", "finder", "value", "outputs", "status",
        ],
        &rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up() {
        let t = table(
            &["a", "bb"],
            &[
                vec!["long cell".into(), "x".into()],
                vec!["y".into(), "z".into()],
            ],
        );
        assert_eq!(t, "a          bb\nlong cell  x\ny          z\n");
    }

    #[test]
    fn units() {
        assert_eq!(coins(1_250_000_001), "12.50000001");
        assert_eq!(hashrate(Some(1_500_000.0)), "1.50 MH/s");
        assert_eq!(hashrate(None), "-");
    }
}
