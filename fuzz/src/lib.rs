//! Fixtures shared by the fuzz targets and the seed-corpus generator (`examples/seeds.rs`):
//! one small real share chain (real scrypt shares, with a fork so uncles exist), the API
//! over it, and the node's sync limits. Built once per process; every target input runs
//! against the same state, so runs are deterministic.

use std::sync::{Arc, OnceLock};

use p2pool::api::methods;
use p2pool::api::ApiSources;
use p2pool::chain_service::ChainHandle;
use p2pool::daemon::watcher::{DaemonState, DaemonStatus};
use p2pool::stratum::{StatsSnapshot, WorkerStats};
use share_chain::address::script_to_address;
use share_chain::chain::ChainIndex;
use share_chain::testkit::{grow_chain, mine_share, miner, miner_script, regtest_preset};
use share_chain::{Preset, Share};
use tokio::sync::watch;

/// Shares on the base chain's best path.
pub const BASE_LEN: usize = 6;
/// Time of the base chain's first share.
pub const START: u32 = 1_700_000_000;

/// The chain every share input is validated against.
pub struct Base {
    pub preset: Preset,
    /// The best chain and one side share (a sibling of the tip, so a child of the tip may
    /// name it as an uncle).
    pub index: ChainIndex,
    /// The base chain's shares in connection order (the side share last).
    pub shares: Vec<Share>,
    /// Valid children of the tip (one without, one with the uncle): seeds.
    pub children: Vec<Share>,
    /// The clock for validation: just after the newest share.
    pub now: u64,
}

/// The base chain (built on first use, about a dozen scrypt-mined shares).
pub fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let preset = regtest_preset("");
        let mut index = ChainIndex::new(&preset);
        let mut shares = grow_chain(&mut index, BASE_LEN, 3, START);
        let period = index.params().share_period_secs;
        let time = START + period * (BASE_LEN as u32 + 1);
        let grandparent = shares[BASE_LEN - 2].hash();
        let side = mine_share(&mut index, Some(grandparent), &miner(2), time);
        // A sibling of the tip with less or equal work: connects as a side branch.
        let _ = index.connect(side.clone(), u64::from(time));
        shares.push(side);
        let tip = shares[BASE_LEN - 1].hash();
        let children = vec![
            mine_share(&mut index.clone(), Some(tip), &miner(0), time + period),
            mine_share(&mut index, Some(tip), &miner(1), time + period),
        ];
        Base {
            preset,
            index,
            shares,
            children,
            now: u64::from(time + 2 * period),
        }
    })
}

/// The regtest address of test miner `n` (as miners put it in a Stratum username).
pub fn address(n: u32) -> String {
    let coin = regtest_preset("").coin;
    script_to_address(&miner_script(n), &coin).unwrap_or_default()
}

/// The JSON-RPC API over the base chain, as `p2pool::api` serves it.
pub struct Api {
    pub runtime: tokio::runtime::Runtime,
    pub module: jsonrpsee::RpcModule<Arc<ApiSources>>,
    _dir: tempfile::TempDir,
    _daemon: watch::Sender<DaemonStatus>,
}

/// The API (built on first use: a LevelDB chain in a temporary directory).
pub fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let base = base();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (chain, _) =
            ChainHandle::open(dir.path().join("chain"), base.preset.clone()).expect("open chain");
        let shares = base.shares.clone();
        let now = base.now;
        runtime
            .block_on(chain.call(move |c| {
                for s in shares {
                    let _ = c.connect(s, now);
                }
            }))
            .expect("chain thread");
        let (daemon_tx, daemon) = watch::channel(DaemonStatus {
            state: DaemonState::Unreachable,
            template: None,
            template_seq: 0,
        });
        let worker = format!("{}.rig1", address(1));
        let sources = Arc::new(ApiSources {
            preset: base.preset.clone(),
            chain,
            daemon,
            stratum: Box::new(move || StatsSnapshot {
                connections: 1,
                accepted: 5,
                workers: vec![WorkerStats {
                    username: worker.clone(),
                    accepted: 5,
                    shares: 2,
                    ..WorkerStats::default()
                }],
                ..StatsSnapshot::default()
            }),
            network: None,
            sync: None,
            counters: Default::default(),
            daemon_rpc: None,
            fee: None,
            blocks: Arc::new(p2pool::blocks::FoundBlocks::in_memory()),
            aux_daemons: Vec::new(),
            hashrates: Arc::new(p2pool::hashrate::Hashrates::new(65_536, 600)),
            history: Arc::new(p2pool::history::History::in_memory()),
            alerts: Default::default(),
            aux: tokio::sync::watch::channel(Vec::new()).1,
            aux_status: Vec::new(),
        });
        let module = methods::module(sources).expect("API methods register");
        Api {
            runtime,
            module,
            _dir: dir,
            _daemon: daemon_tx,
        }
    })
}
