//! The connection gate: a `NetworkBehaviour` that enforces bans and the per-IP limit.
//!
//! libp2p's `connection_limits` covers total and per-peer counts, but not "how many from one
//! IP" nor timed bans of an IP, so this small behaviour does both. It owns the
//! [`Scoreboard`]: the service charges penalties through it, and when one ends in a ban the
//! gate closes the peer's connections and from then on denies the PeerId (when the
//! connection is established, since only then is the PeerId known) and its IP addresses
//! (before the handshake, which costs nothing). Loopback is exempt from the IP rules.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use libp2p::core::{multiaddr::Protocol, transport::PortUse, Endpoint};
use libp2p::swarm::{
    dummy, CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm,
    NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use crate::score::{Misbehaviour, PenaltyOutcome, Scoreboard};

/// Why the gate denied a connection.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum GateDenied {
    #[error("peer {0} is banned")]
    PeerBanned(PeerId),
    #[error("address {0} is banned")]
    IpBanned(IpAddr),
    #[error("{count} connections from {ip} already (limit {max})")]
    TooManyFromIp { ip: IpAddr, count: u32, max: u32 },
}

/// The IP address in a multiaddr, if it has one.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// See the module documentation.
pub struct ConnectionGate {
    scores: Scoreboard,
    max_per_ip: u32,
    /// Established connections: their peer and remote IP.
    connections: HashMap<ConnectionId, (PeerId, Option<IpAddr>)>,
    per_ip: HashMap<IpAddr, u32>,
    to_close: VecDeque<PeerId>,
    waker: Option<Waker>,
}

impl ConnectionGate {
    pub fn new(scores: Scoreboard, max_per_ip: u32) -> Self {
        ConnectionGate {
            scores,
            max_per_ip,
            connections: HashMap::new(),
            per_ip: HashMap::new(),
            to_close: VecDeque::new(),
            waker: None,
        }
    }

    /// Pure check for an inbound connection from `ip` (before any handshake).
    pub fn check_inbound_ip(&self, ip: IpAddr, now: Instant) -> Result<(), GateDenied> {
        if ip.is_loopback() {
            return Ok(());
        }
        if self.scores.is_ip_banned(&ip, now) {
            return Err(GateDenied::IpBanned(ip));
        }
        let count = self.per_ip.get(&ip).copied().unwrap_or(0);
        if count >= self.max_per_ip {
            return Err(GateDenied::TooManyFromIp {
                ip,
                count,
                max: self.max_per_ip,
            });
        }
        Ok(())
    }

    fn check_peer(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        if self.scores.is_peer_banned(peer, Instant::now()) {
            return Err(ConnectionDenied::new(GateDenied::PeerBanned(*peer)));
        }
        Ok(())
    }

    /// The remote IPs of `peer`'s current connections.
    pub fn ips_of(&self, peer: &PeerId) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .connections
            .values()
            .filter(|(p, _)| p == peer)
            .filter_map(|(_, ip)| *ip)
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }

    /// Charges `kind` to `peer`; on a ban, disconnects it and bans its IPs too.
    pub fn penalize(&mut self, peer: PeerId, kind: Misbehaviour) -> PenaltyOutcome {
        let ips = self.ips_of(&peer);
        let out = self.scores.penalize(peer, kind, &ips, Instant::now());
        if out.banned_until.is_some() {
            self.close(peer);
        }
        out
    }

    /// Bans `peer` (and its current IPs) outright and disconnects it.
    pub fn ban(&mut self, peer: PeerId) -> Instant {
        let ips = self.ips_of(&peer);
        let until = self.scores.ban(peer, &ips, Instant::now());
        self.close(peer);
        until
    }

    fn close(&mut self, peer: PeerId) {
        self.to_close.push_back(peer);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub fn scores(&self) -> &Scoreboard {
        &self.scores
    }

    pub fn scores_mut(&mut self) -> &mut Scoreboard {
        &mut self.scores
    }
}

impl NetworkBehaviour for ConnectionGate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if let Some(ip) = ip_of(remote) {
            self.check_inbound_ip(ip, Instant::now())
                .map_err(ConnectionDenied::new)?;
        }
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_peer(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(peer) = peer {
            self.check_peer(&peer)?;
        }
        Ok(vec![])
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_peer(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                let ip = ip_of(e.endpoint.get_remote_address());
                if let Some(ip) = ip {
                    *self.per_ip.entry(ip).or_insert(0) += 1;
                }
                self.connections.insert(e.connection_id, (e.peer_id, ip));
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                if let Some((_, Some(ip))) = self.connections.remove(&connection_id) {
                    if let Some(n) = self.per_ip.get_mut(&ip) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.per_ip.remove(&ip);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        if let Some(peer_id) = self.to_close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::All,
            });
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScoreConfig;

    #[test]
    fn ip_of_reads_v4_and_v6() {
        let a: Multiaddr = "/ip4/192.0.2.1/tcp/1".parse().unwrap();
        let b: Multiaddr = "/ip6/::1/tcp/1".parse().unwrap();
        let c: Multiaddr = "/dns4/example.org/tcp/1".parse().unwrap();
        assert_eq!(ip_of(&a), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(ip_of(&b), Some("::1".parse().unwrap()));
        assert_eq!(ip_of(&c), None);
    }

    #[test]
    fn per_ip_limit_and_ip_bans_apply_except_to_loopback() {
        let mut gate = ConnectionGate::new(Scoreboard::new(ScoreConfig::default()), 2);
        let now = Instant::now();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        gate.per_ip.insert(ip, 2);
        gate.per_ip.insert(lo, 50);
        assert_eq!(
            gate.check_inbound_ip(ip, now),
            Err(GateDenied::TooManyFromIp {
                ip,
                count: 2,
                max: 2
            })
        );
        assert_eq!(gate.check_inbound_ip(lo, now), Ok(()));
        let other: IpAddr = "203.0.113.10".parse().unwrap();
        assert_eq!(gate.check_inbound_ip(other, now), Ok(()));
        gate.scores_mut().ban(PeerId::random(), &[other, lo], now);
        assert_eq!(
            gate.check_inbound_ip(other, now),
            Err(GateDenied::IpBanned(other))
        );
        assert_eq!(gate.check_inbound_ip(lo, now), Ok(()));
    }

    #[test]
    fn a_ban_queues_a_disconnect_and_denies_the_peer() {
        let mut gate = ConnectionGate::new(Scoreboard::new(ScoreConfig::default()), 2);
        let peer = PeerId::random();
        for _ in 0..3 {
            assert!(gate
                .penalize(peer, Misbehaviour::Garbage)
                .banned_until
                .is_none());
        }
        assert!(gate.to_close.is_empty());
        assert!(gate.check_peer(&peer).is_ok());
        let out = gate.penalize(peer, Misbehaviour::Garbage);
        assert!(out.banned_until.is_some());
        assert_eq!(gate.to_close.pop_front(), Some(peer));
        let denied = gate.check_peer(&peer).unwrap_err();
        assert_eq!(
            denied.downcast_ref::<GateDenied>(),
            Some(&GateDenied::PeerBanned(peer))
        );
    }
}
