//! Protocol names derived from the network id.
//!
//! Every name a peer must agree on (the gossip topic, the sync, Kademlia and gossipsub
//! protocol ids, identify's protocol version) carries the hex network id. Nodes of two
//! networks (say litecoin and litecoin-testnet, or two presets that differ in one consensus
//! rule) therefore cannot even negotiate a stream with each other: the mismatch is caught by
//! multistream-select before a byte of share data moves, and identify lets us hang up early.

use libp2p::StreamProtocol;
use share_chain::NetworkId;

/// Wire version of the share gossip topic and the sync protocol. Bump on a breaking change.
pub const WIRE_VERSION: u32 = 1;

/// The names one network id maps to.
#[derive(Clone, Debug)]
pub struct ProtocolNames {
    /// The gossipsub topic for new shares: `p2pool/<hex id>/shares/1`.
    pub share_topic: String,
    /// The request-response sync protocol: `/p2pool/<hex id>/sync/1`.
    pub sync: StreamProtocol,
    /// The Kademlia protocol: `/p2pool/<hex id>/kad/1`, so the DHT is per network.
    pub kad: StreamProtocol,
    /// The gossipsub protocol id prefix: `/p2pool/<hex id>/meshsub`.
    pub gossipsub_prefix: String,
    /// Identify's protocol version string: `/p2pool/<hex id>/1`.
    pub identify_version: String,
}

impl ProtocolNames {
    /// The names for `id`.
    pub fn new(id: &NetworkId) -> Self {
        let hex_id = hex::encode(id.0);
        ProtocolNames {
            share_topic: format!("p2pool/{hex_id}/shares/{WIRE_VERSION}"),
            sync: stream_protocol(format!("/p2pool/{hex_id}/sync/{WIRE_VERSION}")),
            kad: stream_protocol(format!("/p2pool/{hex_id}/kad/{WIRE_VERSION}")),
            gossipsub_prefix: format!("/p2pool/{hex_id}/meshsub"),
            identify_version: format!("/p2pool/{hex_id}/{WIRE_VERSION}"),
        }
    }
}

fn stream_protocol(name: String) -> StreamProtocol {
    // Our names always start with '/', the only thing `try_from_owned` checks.
    StreamProtocol::try_from_owned(name).unwrap_or(StreamProtocol::new("/p2pool/invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_network_id() {
        let a = ProtocolNames::new(&NetworkId([0xab; 32]));
        let b = ProtocolNames::new(&NetworkId([0xcd; 32]));
        let hex_a = "ab".repeat(32);
        assert_eq!(a.share_topic, format!("p2pool/{hex_a}/shares/1"));
        assert_eq!(a.sync.as_ref(), format!("/p2pool/{hex_a}/sync/1"));
        assert_eq!(a.identify_version, format!("/p2pool/{hex_a}/1"));
        assert!(a.kad.as_ref().contains(&hex_a));
        assert!(a.gossipsub_prefix.contains(&hex_a));
        assert_ne!(a.share_topic, b.share_topic);
        assert_ne!(a.sync, b.sync);
        assert_ne!(a.kad, b.kad);
        assert_ne!(a.gossipsub_prefix, b.gossipsub_prefix);
        assert_ne!(a.identify_version, b.identify_version);
    }
}
