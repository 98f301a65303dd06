//! Configuration of the network service: addresses, limits, scoring and gossip tuning.
//!
//! [`NetworkConfig::new`] gives defaults sized for a small share-chain network (tens of
//! nodes); the node fills in the listen and bootstrap addresses and its data directory.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;
use share_chain::NetworkId;

/// Size limits shared by gossip and sync. Peers on one network should use the same values:
/// a peer with larger limits can send what we refuse (and it is then penalized).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncLimits {
    /// Largest encoded share accepted over gossip or sync, in bytes.
    pub max_share_size: usize,
    /// Most hashes in a `GetShares` locator.
    pub max_locator: usize,
    /// Most shares in one `Shares` response (larger `max` requests are clamped, not refused).
    pub max_shares_per_response: u32,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits {
            // A share is a header plus share data (merkle branch, uncles, a few scripts):
            // a few hundred bytes to a few KiB. 16 KiB leaves room without inviting abuse.
            max_share_size: 16 * 1024,
            max_locator: 64,
            // 128 x 16 KiB bounds a response at about 2 MiB.
            max_shares_per_response: 128,
        }
    }
}

/// Inbound sync requests per second a peer may send by default. Requesters pace
/// themselves under it: a full-window sync is about 70 requests.
pub const DEFAULT_REQUEST_RATE: f64 = 50.0;

/// Peer scoring and banning; see [`crate::score`].
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreConfig {
    /// A peer whose score falls to this value or below is disconnected and banned.
    pub ban_threshold: f64,
    /// Penalties decay toward zero with this half-life.
    pub decay_half_life: Duration,
    /// How long a ban lasts.
    pub ban_duration: Duration,
    /// Sustained inbound sync requests per second allowed per peer.
    pub request_rate: f64,
    /// Burst of inbound sync requests allowed per peer.
    pub request_burst: f64,
    /// Most peers (and most bans) remembered; the least interesting are forgotten first.
    pub max_tracked: usize,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            ban_threshold: -100.0,
            decay_half_life: Duration::from_secs(600),
            ban_duration: Duration::from_secs(3600),
            request_rate: DEFAULT_REQUEST_RATE,
            request_burst: 2.0 * DEFAULT_REQUEST_RATE,
            max_tracked: 4096,
        }
    }
}

/// Gossipsub tuning for a small network: short heartbeat, small mesh, flood publishing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipConfig {
    /// Mesh maintenance interval (grafting, pruning, IHAVE gossip).
    pub heartbeat_interval: Duration,
    /// Target mesh degree; `mesh_n_low`/`mesh_n_high` are derived from it.
    pub mesh_n: usize,
    /// How long message ids are remembered to drop duplicates.
    pub duplicate_cache_time: Duration,
    /// How long a received share is held for the node's verdict. A verdict given later
    /// finds the message gone: it is not forwarded (the node still has the share).
    pub validation_window: Duration,
    /// How many of one relaying peer's shares may await the node's verdict at once; more
    /// are ignored unjudged (not forwarded), so a flooder cannot fill the node's queue
    /// ahead of honest shares while its score runs down to a ban.
    pub max_unjudged_per_peer: usize,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            heartbeat_interval: Duration::from_millis(700),
            mesh_n: 6,
            duplicate_cache_time: Duration::from_secs(120),
            // Room for the node to fetch a missing parent over sync before judging.
            validation_window: Duration::from_secs(10),
            // Shares come seconds apart; an honest relay has one or two in flight.
            max_unjudged_per_peer: 16,
        }
    }
}

/// Everything [`crate::spawn`] needs.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// The network id from the preset; every protocol name carries it.
    pub network_id: NetworkId,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/9338`.
    pub listen: Vec<Multiaddr>,
    /// Peers dialed at start and whenever we have no peers; a trailing `/p2p/<id>` also seeds
    /// Kademlia.
    pub bootstrap: Vec<Multiaddr>,
    /// Where the node key (`network_key`) and the peer store (`peers.json`) live; `None`
    /// gives an ephemeral identity and no persistence (tests).
    pub data_dir: Option<PathBuf>,
    /// Local-network discovery. Off by default: it announces the node on the LAN.
    pub enable_mdns: bool,
    /// Kademlia discovery (per network, via the `/p2pool/<id>/kad/1` protocol).
    pub enable_kad: bool,
    /// While fewer peers are connected, known peers are dialed.
    pub target_peers: u32,
    /// Most established connections in total.
    pub max_connections: u32,
    /// Most established connections from one IP address. Loopback addresses are exempt
    /// (they are the operator's own processes), as they are from IP bans.
    pub max_connections_per_ip: u32,
    /// Most connections being set up at once (each direction).
    pub max_pending_connections: u32,
    /// Most peers kept in the peer store.
    pub max_stored_peers: usize,
    /// Size limits for shares and sync messages.
    pub limits: SyncLimits,
    /// Peer scoring and bans.
    pub score: ScoreConfig,
    /// Gossipsub tuning.
    pub gossip: GossipConfig,
    /// Timeout of one sync request (both directions: our node must answer within it too).
    pub request_timeout: Duration,
    /// A connection with no open stream is closed after this long.
    pub idle_connection_timeout: Duration,
    /// Capacity of the event channel to the node. When it is full, gossip is ignored and
    /// sync requests are refused as busy rather than blocking the network.
    pub event_buffer: usize,
    /// Identify's agent string.
    pub agent_version: String,
}

impl NetworkConfig {
    /// Defaults for `network_id`, listening nowhere until the node says where.
    pub fn new(network_id: NetworkId) -> Self {
        NetworkConfig {
            network_id,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            data_dir: None,
            enable_mdns: false,
            enable_kad: true,
            target_peers: 8,
            max_connections: 64,
            max_connections_per_ip: 4,
            max_pending_connections: 16,
            max_stored_peers: 256,
            limits: SyncLimits::default(),
            score: ScoreConfig::default(),
            gossip: GossipConfig::default(),
            request_timeout: Duration::from_secs(10),
            idle_connection_timeout: Duration::from_secs(120),
            event_buffer: 1024,
            agent_version: format!("p2pool-rs/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Largest gossipsub frame: a share plus the envelope (topic, signature, key, seqno).
    pub(crate) fn max_transmit_size(&self) -> usize {
        self.limits.max_share_size + 1024
    }
}
