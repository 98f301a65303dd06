//! # p2pool: the p2pool-rs node
//!
//! The imperative shell around the `share-chain` consensus core: the coin-daemon client,
//! (later) the Stratum server, the share-chain network and the node's own API. The `p2pool`
//! binary (`src/main.rs`) wires these together.

pub mod chain_service;
pub mod daemon;
pub mod work;
