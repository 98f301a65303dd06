//! Benchmark: resident memory of an idle node that has synced a full mainnet-size window
//! (8,640 shares, 1,000 miners) from a peer (see BENCHMARKS.md, "Share-chain network").
//!
//! The program plays both parts. As the parent it mines the window, serves it from a real
//! node ([`p2pool::p2p::P2p`] + [`p2pool::chain_service::ChainHandle`]) on loopback, and
//! starts itself again as the child: a fresh process with only the node's parts (the chain
//! thread, its LevelDB store, the network, catch-up) and the multi-thread tokio runtime the
//! `p2pool` binary uses. The child syncs the window, idles (connected, answering its
//! periodic tip checks), and reports its own `VmRSS`/`VmHWM` from `/proc/self/status`; the
//! parent samples the child's `VmRSS` from outside every second as well.
//!
//! Not in the child: the Stratum server and the litecoind RPC/watcher (they need a daemon;
//! the Stratum server idles at about 4 MB, see "Stratum server").
//!
//! `cargo bench --bench idle_memory` (`IDLE_SECS=n` to change the 60 s idle time).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{init_logs, load_average, mine_chain, preset, Node, WINDOW};
use share_chain::ShareHash;

const CHILD_PEER: &str = "P2POOL_IDLE_CHILD_PEER";
const CHILD_TIP: &str = "P2POOL_IDLE_CHILD_TIP";
const CHILD_IDLE: &str = "P2POOL_IDLE_CHILD_SECS";

/// `VmRSS` and `VmHWM` of a process, in KiB, from its `/proc/<pid>/status`.
fn memory_kib(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    init_logs();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    match std::env::var(CHILD_PEER) {
        Ok(peer) => runtime.block_on(child(peer)),
        Err(_) => runtime.block_on(parent()),
    }
}

/// The synced node under measurement. Prints `key=value` lines for the parent.
async fn child(peer: String) {
    let tip = ShareHash::from_display_hex(&std::env::var(CHILD_TIP).expect("tip to reach"))
        .expect("a share hash");
    let idle: u64 = std::env::var(CHILD_IDLE)
        .expect("idle seconds")
        .parse()
        .expect("a number");
    if let Some((rss, _)) = memory_kib("self") {
        println!("start_rss_kib={rss}");
    }
    let preset = preset();
    let node = Node::start(&preset, None, vec![peer.parse().expect("a multiaddr")]).await;
    let t0 = Instant::now();
    assert!(
        node.wait_tip(tip, Duration::from_secs(300)).await,
        "not synced within 300 s"
    );
    println!("synced_ms={}", t0.elapsed().as_millis());
    println!("shares={}", node.chain.summary().shares);
    if let Some((rss, _)) = memory_kib("self") {
        println!("synced_rss_kib={rss}");
    }
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let (rss, hwm) = memory_kib("self").expect("/proc/self/status");
    println!("idle_rss_kib={rss}");
    println!("hwm_kib={hwm}");
    println!("done");
    node.stop().await;
}

async fn parent() {
    let idle: u64 = std::env::var("IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let preset = preset();
    let index = mine_chain(&preset, WINDOW, 10);
    let tip = index.best_hash().expect("a chain");
    let server = Node::start(&preset, Some(&index), Vec::new()).await;
    drop(index);

    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .env(CHILD_PEER, server.addr().to_string())
        .env(CHILD_TIP, tip.to_string())
        .env(CHILD_IDLE, idle.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child starts");
    let pid = child.id().to_string();
    let stdout = child.stdout.take().expect("piped stdout");
    // The child's report, read on a thread so the runtime keeps serving the sync.
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .inspect(|l| eprintln!("child: {l}"))
            .collect::<Vec<String>>()
    });

    // Outside view: the child's VmRSS every second until it exits.
    let mut outside: Vec<u64> = Vec::new();
    while child.try_wait().expect("child status").is_none() {
        if let Some((rss, _)) = memory_kib(&pid) {
            outside.push(rss);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let status = child.wait().expect("child exit");
    let lines = reader.join().expect("reader thread");
    assert!(status.success(), "child failed: {status}");
    let value = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("child did not report {key}"))
    };
    let last_outside = outside
        .iter()
        .rev()
        .nth(1)
        .or(outside.last())
        .copied()
        .unwrap_or(0);
    println!(
        "idle synced node ({} shares, synced in {} ms, then {idle} s idle): VmRSS {:.1} MB \
         (after sync {:.1} MB, before start {:.1} MB), peak VmHWM {:.1} MB; from outside: \
         last {:.1} MB, max {:.1} MB",
        value("shares"),
        value("synced_ms"),
        mb(value("idle_rss_kib")),
        mb(value("synced_rss_kib")),
        mb(value("start_rss_kib")),
        mb(value("hwm_kib")),
        mb(last_outside),
        mb(outside.iter().copied().max().unwrap_or(0)),
    );
    println!("load average at the end: {}", load_average());
    server.stop().await;
}
