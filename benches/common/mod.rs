//! Shared by the share-chain network benchmarks: a full mainnet-size window mined for real
//! (regtest targets, so a share costs about two scrypt hashes), and p2pool nodes (the real
//! [`ChainHandle`] plus [`P2p`]) on 127.0.0.1, seeded from it through the share store as a
//! restarted node would be.
//!
//! Everything here panics on failure: a benchmark that cannot set up has nothing to report.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p2pool::chain_service::ChainHandle;
use p2pool::p2p::{P2p, P2pConfig};
use p2pool_network::Multiaddr;
use share_chain::chain::ChainIndex;
use share_chain::store::{ShareStore, StoredShare};
use share_chain::testkit::{grow_chain, mine_share, miner, regtest_preset};
use share_chain::{Preset, Share, ShareHash};
use tokio::sync::mpsc;

/// A mainnet window (`config/litecoin.toml`): 8,640 shares.
pub const WINDOW: usize = 8640;
/// Distinct miners taking turns, as in the consensus benchmarks: the payouts hit the
/// 200-output cap, so every validation rebuilds a full-size coinbase.
pub const MINERS: u32 = 1000;

/// Regtest (easy targets, cheap to mine) with the mainnet window and share period.
pub fn preset() -> Preset {
    regtest_preset(&format!(
        "[consensus]\nwindow_shares = {WINDOW}\nshare_period_secs = 15\n"
    ))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A chain of `shares` shares, one share period apart, ending `spare` periods before now
/// (room to mine that many more shares on top without running ahead of the clock).
pub fn mine_chain(preset: &Preset, shares: usize, spare: usize) -> ChainIndex {
    let period = u64::from(preset.consensus.share_period_secs);
    let start = now_secs() - period * (shares + spare + 1) as u64;
    let mut index = ChainIndex::new(preset);
    let t = Instant::now();
    grow_chain(
        &mut index,
        shares,
        MINERS,
        u32::try_from(start).expect("a 32-bit time"),
    );
    eprintln!(
        "mined a chain of {} shares ({} miners) in {:.1?}",
        index.len(),
        MINERS,
        t.elapsed()
    );
    index
}

/// `n` more shares on `index`'s best tip, one share period apart, connected to it.
pub fn mine_more(index: &mut ChainIndex, n: usize) -> Vec<Share> {
    let period = index.params().share_period_secs;
    (0..n)
        .map(|i| {
            let tip = index.best().expect("a chain to extend");
            let (parent, time) = (tip.hash, tip.share.header.time + period);
            let share = mine_share(index, Some(parent), &miner(i as u32 % MINERS), time);
            index
                .connect(share.clone(), u64::from(time))
                .expect("a mined share connects");
            share
        })
        .collect()
}

/// Writes `index`'s best chain into a new share store in `dir`, as a node that had
/// validated it would have left it.
pub fn write_store(dir: &Path, index: &ChainIndex) {
    let best = index.best_hash().expect("a chain");
    let mut records: Vec<StoredShare> = index
        .ancestors(best)
        .map(|e| StoredShare {
            seq: e.seq,
            height: e.height,
            chain_work: e.chain_work,
            share: (*e.share).clone(),
        })
        .collect();
    records.reverse();
    let mut store = ShareStore::open(dir).expect("store opens");
    store.put_batch(&records).expect("store written");
}

/// A p2pool node's share chain and network side, on loopback.
pub struct Node {
    pub chain: ChainHandle,
    pub p2p: P2p,
    /// Its own-shares channel into `P2p`, as the solution handler uses it.
    pub publish: mpsc::UnboundedSender<Vec<u8>>,
    pub dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node, its chain restored from `seed` if given (empty otherwise), dialing
    /// `peers`.
    pub async fn start(preset: &Preset, seed: Option<&ChainIndex>, peers: Vec<Multiaddr>) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let chain_dir = dir.path().join("chain");
        if let Some(index) = seed {
            write_store(&chain_dir, index);
        }
        let (chain, report) = ChainHandle::open(chain_dir, preset.clone()).expect("chain opens");
        if let Some(index) = seed {
            assert_eq!(report.loaded, index.len(), "the whole seed chain restored");
        }
        let (publish, own_shares) = mpsc::unbounded_channel();
        let p2p = P2p::start(
            P2pConfig {
                network_id: preset.network_id(),
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("an address")],
                peers,
                data_dir: dir.path().join("p2p"),
                mdns: false,
                min_join_work: Default::default(),
                sync: Default::default(),
            },
            chain.clone(),
            own_shares,
        )
        .await
        .expect("network starts");
        Node {
            chain,
            p2p,
            publish,
            dir,
        }
    }

    pub fn addr(&self) -> Multiaddr {
        self.p2p.listen_addrs()[0].clone()
    }

    /// Waits until the node's best tip is `tip`; false after `limit`.
    pub async fn wait_tip(&self, tip: ShareHash, limit: Duration) -> bool {
        let mut rx = self.chain.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|s| s.tip == Some(tip)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops the network task (saving its peer store while the directory still exists).
    pub async fn stop(self) {
        let _ = self.p2p.handle().shutdown().await;
    }
}

/// Logs to stderr at `RUST_LOG` (default: warnings).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// The machine's load average, for the report.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
