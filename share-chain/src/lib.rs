//! # share-chain: the p2pool-rs consensus core
//!
//! Everything every node must agree on byte for byte, and nothing else: no sockets, no
//! async, no clocks (the current time is an argument). The same shares in give the same
//! chain, the same payouts and the same coinbase bytes out, on every machine.
//!
//! Reading order, from the bottom up:
//! - [`hash`], [`target`], [`encoding`]: identifiers, targets and work, the canonical bytes;
//! - [`params`]: the network presets and the network id;
//! - [`share`]: what a share is; [`pow`]: its proof of work;
//! - [`script`]: the standard payout scripts; [`address`]: Litecoin addresses to and from them;
//! - [`pplns`] and [`payout`]: who is owed what over the window, and the exact amounts;
//! - [`coinbase`] and [`merkle`]: the generation transaction a share commits to;
//! - [`retarget`]: the share difficulty; [`validation`]: every rule a received share meets;
//! - [`chain`]: the tree of shares and fork choice; [`join`]: joining a pruned chain;
//!   [`locator`]: sync answers from the best chain; [`store`]: persistence in LevelDB;
//! - [`merged_mining`], [`aux_work`], [`auxpow`]: the commitment to aux chains' blocks
//!   (Dogecoin) in the parent coinbase, the aux coinbases that pay the window, and the proof
//!   an aux block carries.

pub mod address;
pub mod aux_work;
pub mod auxpow;
pub mod chain;
pub mod coinbase;
pub mod encoding;
pub mod hash;
pub mod join;
pub mod locator;
pub mod merged_mining;
pub mod merkle;
pub mod orphans;
pub mod params;
pub mod payout;
pub mod pow;
pub mod pplns;
pub mod retarget;
pub mod script;
pub mod share;
pub mod sharechain;
pub mod store;
pub mod target;
pub mod template;
pub mod testkit;
pub mod validation;

pub use hash::ShareHash;
pub use params::{CoinParams, ConsensusParams, NetworkId, PowAlgorithm, Preset};
pub use share::{BlockHeader, CoinbaseData, OperatorFee, Share, ShareInfo};
pub use target::{Target, Work};
