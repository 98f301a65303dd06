//! The composed libp2p behaviour and the swarm built around it.
//!
//! Order matters: the connection gate and the connection limits come first, so a denied
//! connection is refused before the other behaviours set anything up for it.

use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, gossipsub, identify, kad, mdns, noise, ping, request_response, tcp, yamux,
    Swarm, SwarmBuilder,
};
use share_chain::hash::sha256d;

use crate::codec::SyncCodec;
use crate::config::NetworkConfig;
use crate::gate::ConnectionGate;
use crate::protocol::ProtocolNames;
use crate::score::Scoreboard;
use crate::NetworkError;

/// Every protocol the node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub gate: ConnectionGate,
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<SyncCodec>,
    pub kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Gossip message id: sha256d of the payload. Derived from content (not from the author
/// and sequence number) so the same share relayed by two authors is one message, and an id
/// cannot be claimed by different bytes.
pub fn message_id(data: &[u8]) -> gossipsub::MessageId {
    gossipsub::MessageId::new(&sha256d(data))
}

fn gossipsub_config(
    config: &NetworkConfig,
    names: &ProtocolNames,
) -> Result<gossipsub::Config, NetworkError> {
    let g = &config.gossip;
    let mesh_n = g.mesh_n.max(1);
    let mesh_n_low = (mesh_n * 2 / 3).max(1);
    let mesh_n_high = mesh_n * 2;
    // Must not exceed mesh_n_low nor half of mesh_n.
    let mesh_outbound_min = (mesh_n / 2).min(mesh_n_low);
    // The message cache (which holds messages awaiting validation) spans this many
    // heartbeats; it must cover the validation window and the 3 heartbeats of IHAVE gossip.
    let heartbeat_ms = g.heartbeat_interval.as_millis().max(1);
    let history_length = (g.validation_window.as_millis().div_ceil(heartbeat_ms) as usize).max(3);
    gossipsub::ConfigBuilder::default()
        .protocol_id_prefix(names.gossipsub_prefix.clone())
        // Every message is signed by its author and checked; unsigned ones are dropped.
        .validation_mode(gossipsub::ValidationMode::Strict)
        // Hold each message until the node has validated the share: only accepted shares are
        // forwarded, so an invalid share dies at the first honest hop.
        .validate_messages()
        .max_transmit_size(config.max_transmit_size())
        .heartbeat_interval(g.heartbeat_interval)
        .history_length(history_length)
        .history_gossip(3)
        .mesh_n(mesh_n)
        .mesh_n_low(mesh_n_low)
        .mesh_n_high(mesh_n_high)
        .mesh_outbound_min(mesh_outbound_min)
        .duplicate_cache_time(g.duplicate_cache_time)
        // Our own shares go to every subscribed peer at once, not just the mesh: in a small
        // network that is the fastest way across.
        .flood_publish(true)
        .message_id_fn(|m: &gossipsub::Message| message_id(&m.data))
        .build()
        .map_err(|e| NetworkError::Config(format!("gossipsub: {e}")))
}

/// Builds the swarm (transports and behaviours), not yet listening.
pub(crate) fn build_swarm(
    keypair: Keypair,
    config: &NetworkConfig,
    names: &ProtocolNames,
) -> Result<Swarm<Behaviour>, NetworkError> {
    let gossip_cfg = gossipsub_config(config, names)?;
    let peer_id = keypair.public().to_peer_id();

    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_incoming(Some(config.max_connections))
        .with_max_pending_incoming(Some(config.max_pending_connections))
        .with_max_pending_outgoing(Some(config.max_pending_connections))
        // Two, not one: simultaneous dials in both directions are legitimate.
        .with_max_established_per_peer(Some(2));

    let mut gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(keypair.clone()),
        gossip_cfg,
    )
    .map_err(|e| NetworkError::Config(format!("gossipsub: {e}")))?;
    gossipsub
        .subscribe(&gossipsub::IdentTopic::new(names.share_topic.clone()))
        .map_err(|e| NetworkError::Config(format!("gossipsub subscribe: {e}")))?;

    let sync = request_response::Behaviour::with_codec(
        SyncCodec::new(config.limits.clone()),
        [(names.sync.clone(), request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(32),
    );

    let kad = if config.enable_kad {
        let kcfg = kad::Config::new(names.kad.clone());
        let mut k =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kcfg);
        // Answer DHT queries even before an external address is confirmed: p2pool nodes are
        // servers by nature, and on loopback or a LAN none ever gets confirmed.
        k.set_mode(Some(kad::Mode::Server));
        Some(k)
    } else {
        None
    };

    let mdns = if config.enable_mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| NetworkError::Config(format!("mdns: {e}")))?,
        )
    } else {
        None
    };

    let behaviour = Behaviour {
        gate: ConnectionGate::new(
            Scoreboard::new(config.score.clone()),
            config.max_connections_per_ip,
        ),
        limits: connection_limits::Behaviour::new(limits),
        identify: identify::Behaviour::new(
            identify::Config::new(names.identify_version.clone(), keypair.public())
                .with_agent_version(config.agent_version.clone())
                .with_push_listen_addr_updates(true),
        ),
        ping: ping::Behaviour::default(),
        gossipsub,
        sync,
        kad: Toggle::from(kad),
        mdns: Toggle::from(mdns),
    };

    let idle = config.idle_connection_timeout;
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetworkError::Transport(e.to_string()))?
        .with_quic()
        .with_dns()
        .map_err(|e| NetworkError::Transport(e.to_string()))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| NetworkError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}
