//! # p2pool-network: the share-chain network over libp2p
//!
//! Moves shares between p2pool nodes and knows nothing of what a valid share is: shares are
//! opaque bytes plus [`ShareHash`]es. The node (the `p2pool` binary) validates and tells the
//! network its verdict; the network forwards, answers, scores and bans accordingly.
//!
//! ## Shape
//!
//! [`spawn`] starts a tokio task that owns the libp2p swarm and returns a [`NetworkHandle`]
//! (cheap clone, async commands) and a receiver of [`NetworkEvent`]s:
//!
//! ```text
//!   node ── publish_share / report_validation / request_* / penalize ──▶ network task
//!   node ◀── ShareGossip / InboundSyncRequest{reply} / PeerConnected ... ── network task
//! ```
//!
//! ## The node's contract
//!
//! - Call [`spawn`] inside a tokio runtime with a [`NetworkConfig`] (listen and bootstrap
//!   addresses, data directory, network id from the preset). It returns once every listen
//!   address is bound ([`NetworkStatus::listen_addrs`] has the real ports).
//! - Drain the event receiver continuously. When it is full the network does not wait:
//!   gossip is ignored, sync requests are refused as busy, other events are dropped.
//! - For each [`NetworkEvent::ShareGossip`], answer [`NetworkHandle::report_validation`]
//!   with the same `msg_id` and `peer` within [`GossipConfig::validation_window`]:
//!   `Accept` forwards it, `Reject(kind)` drops it and charges the peer, `Ignore` drops it.
//! - For each [`NetworkEvent::InboundSyncRequest`], send a [`SyncResponse`] through its
//!   `reply` within [`NetworkConfig::request_timeout`] (oversized answers are trimmed).
//! - Publish only shares this node found ([`NetworkHandle::publish_share`]); received shares
//!   travel on by `Accept`.
//! - Charge misbehaviour seen outside gossip (an invalid share from sync, say) with
//!   [`NetworkHandle::penalize`].
//!
//! ## Protocols
//!
//! - Transport: TCP (and QUIC when listening on a `/quic-v1` address), Noise, Yamux, DNS.
//! - Identify (`protocol_version = /p2pool/<hex id>/1`) and ping. A peer whose identify
//!   says another network is disconnected and not redialed.
//! - Gossipsub on topic `p2pool/<hex id>/shares/1`, protocol `/p2pool/<hex id>/meshsub/1.1.0`:
//!   signed messages (`Strict`), message id = sha256d(payload), and `validate_messages`: a
//!   share is held until the node's [`Verdict`]; only accepted shares are forwarded.
//!   `Reject` also charges the relaying peer. Frames are bounded by the share size limit.
//! - Sync, request-response `/p2pool/<hex id>/sync/1` ([`codec`]): `GetTip -> Tip` and
//!   `GetShares{locator, stop, max} -> Shares`, length-prefixed with hard limits checked
//!   before allocation. Inbound requests are rate-limited per peer.
//! - Kademlia on `/p2pool/<hex id>/kad/1` (per-network DHT) for discovery, seeded by the
//!   bootstrap peers; mDNS optional (off by default).
//!
//! Because every protocol name carries the network id, nodes of different networks cannot
//! negotiate any share-carrying stream with each other.
//!
//! ## Peer hygiene
//!
//! [`score`]: penalties per [`Misbehaviour`] with decay; at the threshold a peer is
//! disconnected and its PeerId (and non-loopback IP) banned for a while. [`gate`] denies
//! banned peers and IPs and enforces the per-IP connection limit; libp2p's
//! `connection_limits` enforces the totals. [`peer_store`] persists known addresses and
//! [`keypair`] the node key in the data directory.

pub mod behaviour;
pub mod codec;
pub mod config;
pub mod gate;
pub mod handle;
pub mod keypair;
pub mod peer_store;
pub mod protocol;
pub mod score;
mod service;

pub use codec::{CodecError, RefuseReason, SyncRequest, SyncResponse, TipInfo};
pub use config::{GossipConfig, NetworkConfig, ScoreConfig, SyncLimits, DEFAULT_REQUEST_RATE};
pub use handle::{NetworkEvent, NetworkHandle, NetworkStatus, PeerInfo, SyncResponder, Verdict};
pub use libp2p::gossipsub::MessageId;
pub use libp2p::{Multiaddr, PeerId};
pub use score::Misbehaviour;
pub use service::spawn;
pub use share_chain::{NetworkId, ShareHash, Work};

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network configuration: {0}")]
    Config(String),
    #[error("building the transport: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error(transparent)]
    Keypair(#[from] keypair::KeypairError),
    #[error("the network task has stopped")]
    Stopped,
    #[error("share of {len} bytes exceeds the limit of {max}")]
    ShareTooLarge { len: usize, max: usize },
    #[error("this share was already published or received")]
    DuplicateShare,
    #[error("no peer is subscribed to the share topic")]
    NoPeers,
    #[error("publishing failed: {0}")]
    Publish(String),
    #[error("cannot dial {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error("peer {0} is banned")]
    PeerBanned(PeerId),
    #[error("request not sent: {0}")]
    InvalidRequest(CodecError),
    #[error("request failed: could not connect to the peer")]
    RequestDialFailure,
    #[error("request timed out")]
    RequestTimeout,
    #[error("connection closed before the response")]
    RequestConnectionClosed,
    #[error("the peer does not speak our sync protocol (another network?)")]
    UnsupportedProtocol,
    #[error("request failed: {0}")]
    RequestIo(String),
    #[error("the peer refused the request: {0:?}")]
    Refused(RefuseReason),
    #[error("the peer's response does not answer the request")]
    UnexpectedResponse,
}
