//! Benchmark: what a flooding peer costs honest nodes (see BENCHMARKS.md, "Flood").
//!
//! Five real nodes ([`p2pool::p2p::P2p`] + [`p2pool::chain_service::ChainHandle`]) in one
//! process on loopback, in a line (each dials the one before), holding the same chain. A
//! sixth peer, built from the network crate alone, connects to node 0 and publishes as fast
//! as its network task takes them, in two runs:
//! - *invalid*: shares that decode but whose coinbase does not match the header (the check
//!   that costs a validator most: proof of work and a full coinbase rebuild first);
//! - *genesis*: valid root shares (no parent), mined beforehand; cheap on an easy target.
//!
//! Each run reports the process's CPU time (getrusage via /proc/self/stat), resident memory
//! (VmRSS) and disk writes (/proc/self/io `write_bytes`) over the flood, the time until node
//! 0 bans the flooder, and the time honest shares (published by node 4, the far end) take to
//! reach every other node, p50/p99, without a flood and during it. All six peers share the
//! process, so CPU and disk are the process's; the flooder's own share is small (it only
//! signs and sends).
//!
//! `cargo bench --bench flood` (`FLOOD_SAMPLES=n`, default 60; `FLOOD_SECS=n`, default 10).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{init_logs, load_average, mine_chain, mine_more, Node};
use futures::future::join_all;
use hdrhistogram::Histogram;
use p2pool_network::{NetworkConfig, NetworkEvent, NetworkHandle, Verdict};
use share_chain::chain::ChainIndex;
use share_chain::testkit::{mine_share, miner, regtest_preset};
use share_chain::{Preset, Share};

const NODES: usize = 5;
const GAP: Duration = Duration::from_millis(30);
const SAMPLE_LIMIT: Duration = Duration::from_secs(10);
/// Shares in the honest chain (a small window: the flood, not the window, is measured).
const CHAIN: usize = 400;

fn preset() -> Preset {
    regtest_preset("[consensus]\nwindow_shares = 200\nshare_period_secs = 15\n")
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Process CPU time (user + system) in clock ticks, from /proc/self/stat.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn proc_value(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Usage {
    cpu_ticks: u64,
    rss_kb: u64,
    written: u64,
    at: Instant,
}

fn usage() -> Usage {
    Usage {
        cpu_ticks: cpu_ticks(),
        rss_kb: proc_value("/proc/self/status", "VmRSS:"),
        written: proc_value("/proc/self/io", "write_bytes:"),
        at: Instant::now(),
    }
}

fn report(what: &str, before: &Usage, after: &Usage) {
    // Linux clock ticks are 100 per second.
    let cpu = (after.cpu_ticks - before.cpu_ticks) as f64 / 100.0;
    let wall = after.at.duration_since(before.at).as_secs_f64();
    println!(
        "{what}: CPU {cpu:.2} s over {wall:.1} s ({:.0} % of one core), RSS {} -> {} MB, \
         disk writes {:.2} MB",
        100.0 * cpu / wall,
        before.rss_kb / 1024,
        after.rss_kb / 1024,
        after.written.saturating_sub(before.written) as f64 / 1e6,
    );
}

/// A bare network peer that judges nothing it gets and publishes what it is given.
async fn flooder(preset: &Preset) -> NetworkHandle {
    let mut config = NetworkConfig::new(preset.network_id());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("an address")];
    config.enable_kad = false;
    config.target_peers = 0;
    let (handle, mut events) = p2pool_network::spawn(config).await.expect("network");
    let net = handle.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let NetworkEvent::ShareGossip { peer, msg_id, .. } = event {
                let _ = net.report_validation(msg_id, peer, Verdict::Ignore).await;
            }
        }
    });
    handle
}

/// Honest shares from node 4 until each of the others has it as its tip; microseconds.
async fn crossing(
    nodes: &[Node],
    fresh: &mut impl Iterator<Item = Share>,
    n: usize,
) -> Histogram<u64> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for _ in 0..n {
        let share = fresh.next().expect("enough shares mined");
        let hash = share.hash();
        let s = share.clone();
        let from = &nodes[NODES - 1];
        from.chain
            .call(move |c| c.connect(s, common::now_secs()).map(|_| ()))
            .await
            .expect("chain thread")
            .expect("own share connects");
        let mut rxs: Vec<_> = nodes[..NODES - 1]
            .iter()
            .map(|n| n.chain.subscribe())
            .collect();
        let t0 = Instant::now();
        from.publish.send(share.encode()).expect("p2p running");
        let arrivals = join_all(rxs.iter_mut().map(|rx| async move {
            let got = tokio::time::timeout(SAMPLE_LIMIT, rx.wait_for(|s| s.tip == Some(hash)))
                .await
                .is_ok_and(|r| r.is_ok());
            got.then(|| t0.elapsed())
        }))
        .await;
        let worst = arrivals
            .into_iter()
            .map(|t| t.unwrap_or(SAMPLE_LIMIT))
            .max()
            .unwrap_or_default();
        hist.record(worst.as_micros().max(1) as u64)
            .expect("in range");
        tokio::time::sleep(GAP).await;
    }
    hist
}

fn print_hist(what: &str, h: &Histogram<u64>) {
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "{what}: {} shares, last node reached p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        h.len(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    );
}

fn main() {
    init_logs();
    let samples = env("FLOOD_SAMPLES", 60);
    let secs = env("FLOOD_SECS", 10) as u64;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let preset = preset();
        let index = mine_chain(&preset, CHAIN, 3 * samples + 10);
        let fresh = mine_more(&mut index.clone(), 3 * samples + 10);
        // The junk, made up front so the flooder only sends.
        let valid = fresh[0].clone();
        let invalid: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| {
                let mut s = valid.clone();
                s.info.payout_script = i.to_be_bytes().to_vec();
                s.encode()
            })
            .collect();
        let t = Instant::now();
        let mut scratch = ChainIndex::new(&preset);
        let now = common::now_secs() as u32;
        let genesis: Vec<Vec<u8>> = (0..2_000u32)
            .map(|i| mine_share(&mut scratch, None, &miner(i), now - 1000 + i % 900).encode())
            .collect();
        eprintln!(
            "mined {} genesis shares in {:.1?}",
            genesis.len(),
            t.elapsed()
        );

        for (kind, junk) in [("invalid", &invalid), ("genesis", &genesis)] {
            let mut nodes: Vec<Node> = Vec::new();
            for i in 0..NODES {
                let peers = if i == 0 {
                    vec![]
                } else {
                    vec![nodes[i - 1].addr()]
                };
                nodes.push(Node::start(&preset, Some(&index), peers).await);
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            let mut shares = fresh.clone().into_iter();
            // The baseline: the same honest shares over a period of the same length.
            let quiet_before = usage();
            let q0 = Instant::now();
            let quiet = crossing(&nodes, &mut shares, samples).await;
            if q0.elapsed() < Duration::from_secs(secs) {
                tokio::time::sleep(Duration::from_secs(secs) - q0.elapsed()).await;
            }
            let quiet_after = usage();
            print_hist(&format!("== {kind}: no flood"), &quiet);
            report(
                &format!("{kind}: process without a flood, same honest shares, same length"),
                &quiet_before,
                &quiet_after,
            );

            let flood = flooder(&preset).await;
            let target = nodes[0].p2p.local_peer_id();
            flood.dial(nodes[0].addr()).await.expect("dial");
            while !flood
                .peers()
                .await
                .expect("up")
                .iter()
                .any(|p| p.peer == target && p.in_mesh)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let flooder_id = flood.local_peer_id();
            let before = usage();
            let t0 = Instant::now();
            let sent = Arc::new(AtomicUsize::new(0));
            let sender = {
                let (flood, junk, sent) = (flood.clone(), junk.clone(), sent.clone());
                tokio::spawn(async move {
                    for data in junk {
                        if flood.publish_share(data).await.is_err() {
                            break;
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                })
            };
            let watch = {
                let handle = nodes[0].p2p.handle().clone();
                tokio::spawn(async move {
                    loop {
                        let st = handle.status().await.expect("up");
                        if st.banned_peers.iter().any(|(p, _)| *p == flooder_id) {
                            return Some(t0.elapsed());
                        }
                        if t0.elapsed() > Duration::from_secs(secs) {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            };
            let during = crossing(&nodes, &mut shares, samples).await;
            let banned = watch.await.expect("watch");
            let elapsed = t0.elapsed();
            if elapsed < Duration::from_secs(secs) {
                tokio::time::sleep(Duration::from_secs(secs) - elapsed).await;
            }
            let after = usage();
            sender.abort();
            let sent = sent.load(Ordering::Relaxed);
            match banned {
                Some(t) => println!("{kind}: flooder banned by node 0 after {t:.2?}"),
                None => println!("{kind}: flooder not banned within {secs} s"),
            }
            println!("{kind}: flooder published {sent} shares (counted when it stopped)");
            report(
                &format!("{kind}: process during the flood"),
                &before,
                &after,
            );
            let quiet_usage = usage();
            tokio::time::sleep(Duration::from_secs(secs)).await;
            report(
                &format!("{kind}: process idle, same length"),
                &quiet_usage,
                &usage(),
            );
            print_hist(&format!("{kind}: during the flood"), &during);
            println!("load average: {}", load_average());
            let _ = flood.shutdown().await;
            for n in nodes {
                n.stop().await;
            }
        }
    });
}
