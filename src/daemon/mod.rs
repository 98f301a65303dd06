//! The coin-daemon side of the node: talking to litecoind (later bitcoind).
//!
//! - [`rpc`]: the JSON-RPC client (basic auth or cookie, litecoind's error dialect);
//! - [`template`]: `getblocktemplate` parsed and checked, transactions kept as opaque bytes;
//! - [`block`]: a solved block assembled for `submitblock`, MWEB extension included;
//! - [`watcher`]: a task that learns of new blocks within a second and publishes the newest
//!   template with an explicit daemon state;
//! - [`peer`]: a client of litecoind's P2P port: new-block announcements, and found blocks
//!   relayed without an RPC thread;
//! - [`aux`]: aux chain daemons (dogecoind) for merged mining: their templates, and found
//!   aux blocks submitted with their AuxPoW.

pub mod aux;
pub mod block;
pub mod peer;
pub mod rpc;
pub mod template;
pub mod watcher;

pub use block::assemble_block;
pub use peer::{DaemonPeer, PeerConfig, RelayError};
pub use rpc::{Auth, BlockchainInfo, NetworkInfo, RpcClient, RpcConfig, RpcError, SubmitOutcome};
pub use template::{BlockTemplate, TemplateError, TemplateTransaction, WitnessCommitment};
pub use watcher::{daemon_chain_name, DaemonState, DaemonStatus, Watcher, WatcherConfig};
