//! The node in a crash loop must not lose blocks (issue 9).
//!
//! As an operator met it: the node binary killed with SIGKILL every 12 s and restarted on
//! the same datadir, two CPU miners that leave while the node is down and come back later
//! (cpuminer retries after 30 s). A killed process must leave nothing parked in litecoind:
//! with BIP22 long polls, each killed process held one of litecoind's 4 RPC threads until
//! the next block, and with no miner there was no next block; after three kills the live
//! node could no longer submit a block (`submitblock` timed out, litecoind answered "work
//! queue depth exceeded"), and litecoind's height stopped.
//!
//! Real parts: litecoind 0.21 (regtest, its default `-rpcthreads=4`), the `p2pool` binary
//! (`p2pool run`, killed with SIGKILL), the project's CPU miner over Stratum.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::litecoind::{free_port, RegtestPair};
use common::pool::regtest_miner;
use p2pool::miner::{mine, MinerConfig, MinerStats};

/// How long each node process lives before it is killed.
const LIFETIME: Duration = Duration::from_secs(12);

/// One `p2pool run` process, its log in `log`.
fn start_node(pair: &RegtestPair, datadir: &Path, stratum: u16, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("node log file");
    let err = out.try_clone().expect("node log file");
    Command::new(env!("CARGO_BIN_EXE_p2pool"))
        .args(["run", "--network", "litecoin-regtest", "--no-p2p"])
        .arg("--datadir")
        .arg(datadir)
        .args(["--daemon-rpc", &pair.a.url()])
        .arg("--daemon-cookie")
        .arg(pair.a.cookie_path())
        .args(["--daemon-p2p", &format!("127.0.0.1:{}", pair.a.p2p_port)])
        .args(["--stratum", &format!("127.0.0.1:{stratum}")])
        .args(["--rpc", &format!("127.0.0.1:{}", free_port())])
        .args(["--stratum-pause-grace", "5"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("start the p2pool binary")
}

/// `text` without ANSI colour sequences.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What one process's log says about blocks.
#[derive(Debug, Default)]
struct Blocks {
    accepted: usize,
    /// Lost races: a block on a parent that already has one (valid, not the best chain).
    inconclusive: usize,
    /// Anything else litecoind did not take: refused, or never delivered.
    lost: Vec<String>,
    /// The P2P handshake with litecoind was made.
    p2p: bool,
}

fn blocks_in(log: &Path) -> Blocks {
    let text = plain(&std::fs::read_to_string(log).unwrap_or_default());
    let mut blocks = Blocks::default();
    for line in text.lines() {
        if line.contains("connected to litecoind's P2P port") {
            blocks.p2p = true;
        }
        if line.contains("block found by") {
            blocks.accepted += 1;
        } else if line.contains("NOT accepted by litecoind") {
            if line.contains("Inconclusive") {
                blocks.inconclusive += 1;
            } else {
                blocks.lost.push(line.to_owned());
            }
        }
    }
    blocks
}

struct Miners {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn start_miners(config: &MinerConfig) -> Miners {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..2)
        .map(|i| {
            let mut config = config.clone();
            config.username = format!("{}{i}", config.username);
            let stop = stop.clone();
            tokio::spawn(async move {
                let _ = mine(config, Arc::new(MinerStats::default()), stop).await;
            })
        })
        .collect();
    Miners { stop, tasks }
}

impl Miners {
    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_keep_coming_through_a_crash_loop() {
    common::pool::init_logs();
    let started = Instant::now();
    // litecoind's default RPC threads (the harness raises them to 8).
    let pair = RegtestPair::start_with(vec!["-rpcthreads=4".to_owned()]).await;
    let address = pair.new_address("bech32").await;
    let datadir = tempfile::tempdir().expect("a datadir");
    let logs = tempfile::tempdir().expect("a log directory");
    let stratum = free_port();
    let miner = MinerConfig {
        server: ([127, 0, 0, 1], stratum).into(),
        username: format!("{address}.cpu"),
        ..regtest_miner()
    };

    // Miners present in the first life, gone in the next two (cpuminer waits 30 s before
    // it retries), back from the fourth on.
    let mining = [true, false, false, true, true];
    let mut miners: Option<Miners> = None;
    let mut report = Vec::new();
    for (life, &with_miners) in mining.iter().enumerate() {
        let log = logs.path().join(format!("node-{life}.log"));
        let height_before = pair.block_count().await;
        let mut node = start_node(&pair, datadir.path(), stratum, &log);
        match (with_miners, miners.is_some()) {
            (true, false) => miners = Some(start_miners(&miner)),
            (false, true) => {
                if let Some(m) = miners.take() {
                    m.stop().await;
                }
            }
            _ => {}
        }
        tokio::time::sleep(LIFETIME).await;
        node.kill().expect("SIGKILL the node");
        let _ = node.wait();
        let gained = pair.block_count().await - height_before;
        let blocks = blocks_in(&log);
        eprintln!(
            "life {life} (miners: {with_miners}): litecoind +{gained} blocks; node reported {blocks:?}"
        );
        report.push((with_miners, gained, blocks, log));
    }
    if let Some(m) = miners.take() {
        m.stop().await;
    }

    for (life, (with_miners, gained, blocks, log)) in report.iter().enumerate() {
        let tail = || {
            let text = plain(&std::fs::read_to_string(log).unwrap_or_default());
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        assert!(
            blocks.lost.is_empty(),
            "life {life}: blocks lost: {:?}\n{}",
            blocks.lost,
            tail()
        );
        assert!(
            blocks.p2p,
            "life {life}: no P2P connection to litecoind\n{}",
            tail()
        );
        if *with_miners {
            assert!(
                *gained > 0 && blocks.accepted > 0,
                "life {life}: litecoind's height did not move (+{gained}), node reported \
                 {blocks:?}\n{}",
                tail()
            );
            // No block is lost: litecoind's height moved with the node's blocks. The node may
            // report more accepted blocks than the height gained: two solutions on one parent,
            // relayed in parallel, can both be accepted by litecoind (one then a side branch).
            // That over-count is a known reporting flaw (issue 9's follow-up), not a lost block.
            assert!(
                *gained * 2 >= blocks.accepted as u64,
                "life {life}: node reported {} accepted blocks, litecoind gained {gained}",
                blocks.accepted
            );
        }
    }
    eprintln!("crash-loop test took {:?}", started.elapsed());
}
