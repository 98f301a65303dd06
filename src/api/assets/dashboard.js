// The dashboard's script: polls the node's JSON-RPC API (POST /, same origin) every 5 s and
// renders it into dashboard.html, with uPlot charts. Each section is drawn from its own
// call, so one failing method leaves the others up to date. Rows carry data-* attributes
// with the raw values (hashes, litoshi, H/s), which tests/dashboard_chromium.rs reads.
"use strict";

const REFRESH_MS = 5000;
const $ = id => document.getElementById(id);

async function call(method, params = []) {
  const r = await fetch("/", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }) });
  const j = await r.json();
  if (j.error) throw new Error(`${method}: ${j.error.message}`);
  return j.result;
}

// Formatting.
const coins = v => v == null ? "–" : (v / 1e8).toFixed(8);
function rate(h) {
  if (h == null) return "–";
  const u = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s"];
  let i = 0;
  while (h >= 1000 && i < u.length - 1) { h /= 1000; i++; }
  return h.toFixed(2) + " " + u[i];
}
function ago(t) {
  if (t == null) return "–";
  const s = Math.max(0, Math.round(Date.now() / 1000 - t));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return new Date(t * 1000).toLocaleDateString();
}
const pct = f => f == null ? "–" : (100 * f).toFixed(3) + " %";

// Tables: `cols` are [text(item), class?, attrs(item)?] per cell; `rowAttrs(item)` sets
// the row's data-* attributes.
function cell(text, cls, attrs) {
  const td = document.createElement("td");
  td.textContent = text == null ? "–" : String(text);
  if (cls) td.className = cls;
  if (cls === "id") td.title = td.textContent;
  for (const [k, v] of Object.entries(attrs || {})) td.setAttribute(k, v);
  return td;
}
function rows(tbody, items, cols, rowAttrs) {
  tbody.replaceChildren(...items.map(it => {
    const tr = document.createElement("tr");
    for (const [k, v] of Object.entries(rowAttrs ? rowAttrs(it) : {})) tr.setAttribute(k, v);
    cols.forEach(([f, cls, attrs]) => tr.append(cell(f(it), cls, attrs && attrs(it))));
    return tr;
  }));
}
function setText(id, text, cls) {
  const el = $(id);
  el.textContent = text;
  if (cls !== undefined) el.className = cls;
  return el;
}

// Charts (uPlot). Sized to their container; redrawn on resize.
const charts = {};
function chartWidth(el) { return Math.max(260, el.clientWidth); }
function lineChart(id, series, data) {
  const el = $(id);
  el.dataset.points = String(data[0].length);
  if (!charts[id]) {
    charts[id] = new uPlot({
      width: chartWidth(el), height: 220,
      // From the data, at least a few buckets wide: uPlot spreads a lone point over years.
      scales: { x: { time: true, range: u => {
        const xs = u.data[0], step = TIER_SECS[tier];
        const end = xs.length ? xs[xs.length - 1] : Date.now() / 1000;
        return [Math.min(xs.length ? xs[0] : end, end - 6 * step), end + step / 2];
      } }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [{}, { values: (u, vals) => vals.map(v => rate(v)), size: 80 }],
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: s.color, width: 2,
        fill: i === 0 ? s.color + "1a" : undefined, spanGaps: true, points: { size: 6 },
        value: (u, v) => rate(v) }))],
    }, data, el);
  } else {
    charts[id].setData(data);
  }
}
function barChart(id, labels, values) {
  const el = $(id);
  el.dataset.bars = String(values.length);
  const xs = values.map((_, i) => i + 1);
  const data = [xs, values];
  const opts = () => ({
    width: chartWidth(el), height: 200,
    scales: { x: { time: false, range: (u, min, max) => [min - 0.5, max + 0.5] },
              y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [{ values: (u, vals) => vals.map(v => Number.isInteger(v) ? labels[v - 1] ?? "" : ""),
             space: 60 },
           { values: (u, vals) => vals.map(v => (v / 1e8).toString()), size: 70 }],
    legend: { show: true },
    series: [{ label: "payee", value: (u, v) => v == null ? "–" : labels[v - 1] ?? "" },
      { label: "amount (LTC)", stroke: "#2b6cb0", fill: "#2b6cb099", width: 1,
        paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false },
        value: (u, v) => coins(v) }],
  });
  // Labels change with the payees: rebuild rather than restyle.
  if (charts[id]) charts[id].destroy();
  el.replaceChildren();
  charts[id] = values.length ? new uPlot(opts(), data, el) : null;
}
window.addEventListener("resize", () => {
  for (const [id, c] of Object.entries(charts)) if (c) c.setSize({ width: chartWidth($(id)), height: c.height });
});

// Joins several `[[t, v], …]` series on their times: `[times, values1, values2, …]`.
function align(seriesList) {
  const times = [...new Set(seriesList.flatMap(s => s.map(p => p[0])))].sort((a, b) => a - b);
  const maps = seriesList.map(s => new Map(s));
  return [times, ...maps.map(m => times.map(t => m.get(t) ?? null))];
}

let tier = "10m";
const TIER_SECS = { "10m": 600, "1h": 3600, "1d": 86400 };
const address = new URLSearchParams(location.search).get("address")?.trim() || null;

function renderInfo(info, pay) {
  setText("chain", "· " + info.chain);
  setText("version", info.version);
  const serving = info.sync.serving && info.daemon.ready;
  setText("status", `litecoind ${info.daemon.ready ? "ready" : info.daemon.state} · share chain ` +
    `${info.sync.state} · ${serving ? "serving miners" : "not serving miners"}`, serving ? "ok" : "bad");
  setText("pool-rate", rate(info.hashrate.pool)).dataset.hashrate = info.hashrate.pool ?? "";
  setText("local-rate", rate(info.hashrate.local["10m"])).dataset.hashrate = info.hashrate.local["10m"] ?? "";
  const n = info.share_chain;
  setText("share-height", `${n.height} (${n.shares} held)`);
  setText("block-height", info.daemon.height == null ? "–" :
    `${info.daemon.height} · ${coins(info.daemon.block_value)}`);
  setText("payees", `${n.window_payees} in ${n.window_shares} shares`);
  setText("peer-count", info.p2p ? (info.p2p.error ? "–" : String(info.p2p.peers)) : "no network")
    .dataset.peers = info.p2p?.peers ?? "";
  const sync = setText("sync", info.sync.state, info.sync.serving ? "ok" : "bad");
  sync.dataset.state = info.sync.state;
  sync.dataset.serving = String(info.sync.serving);
  const want = pay?.rules?.window_shares;
  const fill = want ? Math.min(1, n.window_shares / want) : 0;
  $("window-progress").value = fill;
  setText("window-fill", want ? `${n.window_shares} / ${want} shares` : "–");
  const joining = info.sync.received != null;
  $("join-row").hidden = !joining;
  $("join-row").dataset.received = info.sync.received ?? "";
  $("join-row").dataset.needed = info.sync.needed ?? "";
  if (joining) {
    const needed = info.sync.needed;
    if (needed) $("join-progress").value = Math.min(1, info.sync.received / needed);
    else $("join-progress").removeAttribute("value");
    setText("join-fill", needed ? `${info.sync.received} / ${needed} shares` : `${info.sync.received} shares`);
  }
  setText("p2p", info.p2p ? (info.p2p.error ?? `peer id ${info.p2p.peer_id} · ` +
    `listening on ${info.p2p.listen.join(", ") || "nothing"} · ${info.p2p.mesh_peers} in the gossip mesh`)
    : "no share-chain network (--no-p2p)");
}

function renderPayouts(pay) {
  const payouts = pay.payouts ?? [];
  const fraction = new Map(pay.miners.map(m => [m.address, m.fraction]));
  setText("payout-summary", pay.payouts == null ? "no block template from litecoind yet" :
    `${payouts.length} outputs, ${coins(pay.coinbase_value)} in all, found by ${pay.finder ?? "–"} ` +
    `(finder bonus ${pay.finder_bonus_basis_points / 100} %, payout step ${coins(pay.rules.payout_step)})`);
  rows(document.querySelector("#payouts tbody"), payouts,
    [[p => p.address, "id"], [p => coins(p.amount), "n"], [p => pct(fraction.get(p.address)), "n"]],
    p => ({ "data-address": p.address, "data-amount": p.amount }));
  const short = a => a.length > 12 ? a.slice(0, 6) + "…" + a.slice(-4) : a;
  barChart("chart-payouts", payouts.map(p => short(p.address)), payouts.map(p => p.amount));
  // Merged mining: each aux block pays the same window on its own chain.
  const aux = pay.aux_payouts ?? [];
  document.getElementById("aux-payouts").hidden = aux.length === 0;
  const auxRows = aux.flatMap(a => a.payouts.map(p => ({ chain: a.chain, ...p })));
  setText("aux-payout-summary", aux.map(a =>
    `${a.chain}: ${a.payouts.length} outputs, ${coins(a.coinbase_value)} in all`).join(" · "));
  rows(document.querySelector("#aux-payouts-table tbody"), auxRows,
    [[p => p.chain], [p => p.address, "id"], [p => coins(p.amount), "n"]],
    p => ({ "data-chain": p.chain, "data-address": p.address, "data-amount": p.amount }));
}

function renderBlocks(blocks) {
  rows(document.querySelector("#blocks tbody"), blocks,
    [[b => b.chain], [b => b.height, "n"], [b => b.hash, "id"], [b => b.finder, "id"],
     [b => coins(b.value), "n"],
     [b => ago(b.time)],
     [b => b.status === "immature" ? `immature (${b.confirmations})` : b.status, null,
      b => ({ class: b.status === "orphaned" ? "bad" : b.status === "pending" ? "warn" : "ok" })]],
    b => ({ "data-hash": b.hash, "data-status": b.status, "data-block-chain": b.chain }));
}

function workerState(w) {
  if (w.online === false) return ["offline", "bad"];
  if (w.low_hashrate) return ["low hashrate", "warn"];
  return ["online", "ok"];
}
function renderWorkers(tbody, workers, withShares) {
  const cols = [[w => w.username, "id"],
    [w => rate(w.hashrate?.["10m"]), "n", w => ({ "data-hashrate": w.hashrate?.["10m"] ?? "" })],
    [w => rate(w.hashrate?.["1h"]), "n"], [w => rate(w.hashrate?.["24h"]), "n"],
    [w => w.accepted, "n"], [w => w.rejected, "n"]];
  if (withShares) cols.push([w => w.shares, "n"]);
  cols.push([w => workerState(w)[0], null, w => ({ class: workerState(w)[1] })]);
  rows(tbody, workers, cols, w => ({ "data-worker": w.username, "data-state": workerState(w)[0] }));
}

function renderShares(shares) {
  rows(document.querySelector("#shares tbody"), shares,
    [[s => s.height, "n"], [s => s.hash, "id"], [s => s.miner ?? "–", "id"], [s => ago(s.time)],
     [s => s.uncles.length ? `${s.uncles.length}: ${s.uncles.map(u => u.slice(0, 8)).join(", ")}` : "–"]],
    s => ({ "data-hash": s.hash, "data-uncles": s.uncles.length }));
}

// A peer with several connections (one dialled each way) has an address per connection.
function renderPeers(peers) {
  rows(document.querySelector("#peers tbody"), peers,
    [[p => p.peer_id, "id"], [p => p.addrs.length ? p.addrs.join(", ") : "–", "id"],
     [p => p.inbound ? "in" : "out"],
     [p => p.rtt_ms == null ? "–" : p.rtt_ms.toFixed(1) + " ms", "n"], [p => p.score?.toFixed?.(1) ?? p.score, "n"],
     [p => p.agent ?? "–", "id"]],
    p => ({ "data-peer": p.peer_id, "data-addrs": p.addrs.join(" "), "data-direction": p.inbound ? "in" : "out",
            "data-rtt-ms": p.rtt_ms ?? "", "data-score": p.score ?? "", "data-agent": p.agent ?? "" }));
}

function renderAlerts(alerts) {
  rows(document.querySelector("#alerts tbody"), alerts,
    [[a => new Date(a.time * 1000).toLocaleString()], [a => a.kind], [a => a.message, "msg"]],
    a => ({ "data-kind": a.kind }));
}

async function refreshHashrate() {
  const [pool, local] = await Promise.all([call("gethistory", ["pool", tier]),
    call("gethistory", ["local", tier])]);
  lineChart("chart-hashrate", [{ label: "pool", color: "#2b6cb0" }, { label: "this node", color: "#d97706" }],
    align([pool.points, local.points]));
}

async function refreshMiner() {
  const [why, stats, pay, hist] = await Promise.all([call("explainpayout", [address]),
    call("getminerstats", [address]), call("getpayoutinfo", [address]), call("gethistory", [address, tier])]);
  $("miner-view").hidden = false;
  $("miner-error").hidden = true;
  setText("miner-expected", coins(why.expected_now)).dataset.amount = why.expected_now ?? "";
  setText("miner-fraction", pct(pay.miners[0]?.fraction));
  setText("miner-rate", rate(stats.hashrate?.["10m"])).dataset.hashrate = stats.hashrate?.["10m"] ?? "";
  setText("miner-shares", `${why.shares.in_window} (+${why.shares.uncles_in_window} uncles)`);
  $("miner-diagnosis").replaceChildren(...why.diagnosis.map(d => {
    const li = document.createElement("li"); li.textContent = d; return li;
  }));
  renderWorkers(document.querySelector("#miner-workers tbody"), stats.workers, false);
  lineChart("chart-miner", [{ label: address.slice(0, 12) + "…", color: "#067647" }], align([hist.points]));
}

// One refresh: every section from its own call; the first failure is shown in the status.
async function refresh() {
  const jobs = [
    Promise.all([call("getinfo"), call("getpayoutinfo")]).then(([info, pay]) => {
      renderInfo(info, pay); renderPayouts(pay);
    }),
    call("getblocks", [10]).then(renderBlocks),
    call("getminerstats").then(m => renderWorkers(document.querySelector("#workers tbody"), m.workers, true)),
    call("getsharechain", [15]).then(renderShares),
    call("getpeerinfo").then(renderPeers),
    call("getalerts", [20]).then(renderAlerts),
    refreshHashrate(),
  ];
  if (address) {
    jobs.push(refreshMiner().catch(e => {
      $("miner-view").hidden = true;
      setText("miner-error", e.message).hidden = false;
    }));
  }
  const failed = (await Promise.allSettled(jobs)).filter(r => r.status === "rejected");
  document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
  if (failed.length) {
    const msg = failed[0].reason?.message ?? String(failed[0].reason);
    setText("status", "cannot read the node: " + msg, "bad");
    document.body.dataset.error = msg;
  } else {
    delete document.body.dataset.error;
  }
  setText("updated", new Date().toLocaleTimeString());
}

function start() {
  if (address) $("miner-address").value = address;
  for (const b of document.querySelectorAll("#tiers button")) {
    b.addEventListener("click", () => {
      tier = b.dataset.tier;
      for (const o of document.querySelectorAll("#tiers button")) o.classList.toggle("on", o === b);
      refresh();
    });
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
}
start();
