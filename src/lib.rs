//! # p2pool: the p2pool-rs node
//!
//! The imperative shell around the `share-chain` consensus core. Reading order:
//! - [`daemon`]: the coin daemon (litecoind): JSON-RPC, block templates, new-block watcher,
//!   block assembly; and the aux daemons of merged mining (dogecoind);
//! - [`chain_service`]: the share chain on its own thread;
//! - [`work`]: from templates to miners' work, and from solutions to shares and blocks;
//! - [`block_fit`]: which template transactions to leave out so our coinbase fits the block;
//! - [`stratum`]: the Stratum v1 server miners connect to;
//! - [`p2p`]: the share-chain network (gossip and sync with other nodes);
//! - [`hashrate`]: workers' hashrates from their pseudo-shares; [`history`]: their
//!   history with tiered retention;
//! - [`blocks`]: the blocks the share chain found and their fate on litecoind;
//! - [`alerts`]: what goes wrong, logged, listed and sent to a webhook;
//! - [`api`]: the JSON-RPC API, dashboard and metrics for operators and miners.
//!
//! The `p2pool` binary (`src/main.rs`) wires these together; [`cli`] holds its client
//! subcommands (`status`, `payouts`, `miners`, `blocks`); [`progress`] draws long work on a
//! terminal.

pub mod alerts;
pub mod api;
pub mod block_fit;
pub mod blocks;
pub mod chain_service;
pub mod cli;
pub mod counters;
pub mod daemon;
pub mod devnet;
pub mod hashrate;
pub mod history;
pub mod miner;
pub mod node;
pub mod p2p;
pub mod progress;
pub mod regtest;
pub mod stratum;
pub mod work;
