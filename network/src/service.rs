//! The network task: owns the swarm, runs commands from the handle, turns swarm events into
//! [`NetworkEvent`]s, and keeps the peer set healthy (redials, ban expiry, peer store).
//!
//! It never blocks on the node: events go out with `try_send`, and when the node's queue is
//! full a share is ignored (gossipsub drops it) and a sync request is refused as busy.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, identity::Keypair, kad, mdns, ping, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::behaviour::{build_swarm, Behaviour, BehaviourEvent};
use crate::codec::{CodecError, RefuseReason, SyncRequest, SyncResponse, WireRequest};
use crate::config::NetworkConfig;
use crate::gate::ip_of;
use crate::handle::{
    Command, NetworkEvent, NetworkHandle, NetworkStatus, PeerInfo, SyncResponder, Verdict,
};
use crate::peer_store::PeerStore;
use crate::protocol::ProtocolNames;
use crate::score::Misbehaviour;
use crate::{keypair, NetworkError};

/// How often the maintenance pass runs.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);
/// Peer store saves happen every this many maintenance passes.
const SAVE_EVERY: u64 = 12;
/// Bootstrap peers are redialed (when we have no peer) every this many passes.
const BOOTSTRAP_EVERY: u64 = 6;
/// Most dials started per maintenance pass.
const DIALS_PER_PASS: usize = 4;
/// Most inbound sync requests waiting for the node at once; more are refused as busy.
const MAX_PENDING_INBOUND: usize = 256;
/// Most peers remembered as being on another network (not redialed).
const MAX_FOREIGN: usize = 1024;
/// First redial delay after a failed dial of a stored peer; doubles per failure.
const REDIAL_BASE: Duration = Duration::from_secs(5);
/// Longest redial delay.
const REDIAL_MAX: Duration = Duration::from_secs(600);
/// A stored peer that failed this many dials in a row is forgotten.
const MAX_DIAL_FAILURES: u32 = 8;
/// How long `spawn` waits for the listeners to come up.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the network: loads (or creates) the node key and peer store, builds the swarm,
/// waits until every listen address is bound, dials the bootstrap and stored peers, and runs
/// the network task on the current tokio runtime.
pub async fn spawn(
    config: NetworkConfig,
) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>), NetworkError> {
    let keypair = match &config.data_dir {
        Some(dir) => keypair::load_or_create(dir)?,
        None => Keypair::generate_ed25519(),
    };
    let peer_store = match &config.data_dir {
        Some(dir) => PeerStore::load(dir, config.max_stored_peers).unwrap_or_else(|e| {
            warn!("starting with an empty peer store: {e}");
            PeerStore::in_memory(config.max_stored_peers)
        }),
        None => PeerStore::in_memory(config.max_stored_peers),
    };
    let names = ProtocolNames::new(&config.network_id);
    let local_peer_id = keypair.public().to_peer_id();
    let mut swarm = build_swarm(keypair, &config, &names)?;

    let (event_tx, event_rx) = mpsc::channel(config.event_buffer.max(1));
    let listen_addrs = listen_all(&mut swarm, &config.listen, &event_tx).await?;
    info!(peer_id = %local_peer_id, ?listen_addrs, "p2pool network listening");

    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let mut service = Service {
        topic: IdentTopic::new(names.share_topic.clone()).hash(),
        names,
        swarm,
        config,
        cmd_rx,
        events: event_tx,
        peer_store,
        listen_addrs,
        peers: HashMap::new(),
        foreign: VecDeque::new(),
        outbound: HashMap::new(),
        redial: HashMap::new(),
        inbound: FuturesUnordered::new(),
        unjudged: HashMap::new(),
        ticks: 0,
    };
    service.bootstrap();
    tokio::spawn(service.run());
    Ok((
        NetworkHandle {
            tx: cmd_tx,
            local_peer_id,
        },
        event_rx,
    ))
}

/// Starts every listener and waits for each to report an address (or fail).
async fn listen_all(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
    events: &mpsc::Sender<NetworkEvent>,
) -> Result<Vec<Multiaddr>, NetworkError> {
    let mut waiting = HashSet::new();
    for addr in addrs {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NetworkError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        waiting.insert((id, addr.clone()));
    }
    let mut bound = Vec::new();
    let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
    while !waiting.is_empty() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| NetworkError::Listen {
                addr: waiting
                    .iter()
                    .next()
                    .map(|(_, a)| a.clone())
                    .unwrap_or_else(Multiaddr::empty),
                reason: "timed out".into(),
            })?;
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                waiting.retain(|(id, _)| *id != listener_id);
                let _ = events.try_send(NetworkEvent::Listening {
                    addr: address.clone(),
                });
                bound.push(address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason: Err(e),
                ..
            }
            | SwarmEvent::ListenerError {
                listener_id,
                error: e,
            } => {
                if let Some((_, addr)) = waiting.iter().find(|(id, _)| *id == listener_id) {
                    return Err(NetworkError::Listen {
                        addr: addr.clone(),
                        reason: e.to_string(),
                    });
                }
            }
            other => debug!(?other, "event while starting listeners"),
        }
    }
    Ok(bound)
}

#[derive(Debug)]
struct PeerState {
    /// Open connections and their remote addresses.
    connections: HashMap<libp2p::swarm::ConnectionId, Multiaddr>,
    inbound: bool,
    first_addr: Multiaddr,
    /// The address we dialed, if we did: worth remembering once the peer identifies.
    dialed_addr: Option<Multiaddr>,
    agent_version: Option<String>,
    rtt: Option<Duration>,
}

/// What a pending outbound request expects back.
struct Outbound {
    max_shares: Option<u32>,
    reply: oneshot::Sender<Result<SyncResponse, NetworkError>>,
}

struct InboundDone {
    channel: ResponseChannel<SyncResponse>,
    request: SyncRequest,
    response: Option<SyncResponse>,
}

struct Service {
    names: ProtocolNames,
    topic: TopicHash,
    swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    cmd_rx: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    peer_store: PeerStore,
    listen_addrs: Vec<Multiaddr>,
    peers: HashMap<PeerId, PeerState>,
    /// Peers found to be on another network, most recent last.
    foreign: VecDeque<PeerId>,
    outbound: HashMap<OutboundRequestId, Outbound>,
    /// Failed dials per stored peer: how many in a row, and when to try again.
    redial: HashMap<PeerId, (u32, Instant)>,
    inbound: FuturesUnordered<BoxFuture<'static, InboundDone>>,
    /// Gossiped shares handed to the node and not judged yet, per relaying peer, oldest
    /// first (see [`crate::GossipConfig::max_unjudged_per_peer`]).
    unjudged: HashMap<PeerId, VecDeque<(gossipsub::MessageId, Instant)>>,
    ticks: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

impl Service {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(Command::Shutdown { reply }) => {
                        self.save_peers();
                        let _ = reply.send(Ok(()));
                        return;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => {
                        // Every handle is gone: the node has stopped.
                        self.save_peers();
                        return;
                    }
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(done) = self.inbound.next(), if !self.inbound.is_empty() => {
                    self.answer_inbound(done);
                }
                _ = tick.tick() => self.maintain(),
            }
        }
    }

    /// Hands `event` to the node without waiting; false if its queue is full or closed.
    fn emit(&self, event: NetworkEvent) -> bool {
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(e) => {
                debug!(event = ?e.into_inner(), "node event queue full or closed");
                false
            }
        }
    }

    fn emit_or_warn(&self, event: NetworkEvent) {
        if !self.emit(event) {
            warn!("node event queue full or closed; event dropped");
        }
    }

    // ---- commands -------------------------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { data, reply } => {
                let _ = reply.send(self.publish(data));
            }
            Command::Validation {
                msg_id,
                peer,
                verdict,
                reply,
            } => {
                let acceptance = match verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Reject(_) => MessageAcceptance::Reject,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                };
                self.judged(&peer, &msg_id);
                let held = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&msg_id, &peer, acceptance);
                if let Verdict::Reject(kind) = verdict {
                    self.penalize(peer, kind);
                }
                let _ = reply.send(Ok(held));
            }
            Command::Penalize { peer, kind, reply } => {
                let score = self.penalize(peer, kind);
                let _ = reply.send(Ok(score));
            }
            Command::Ban { peer, reply } => {
                let until = self.swarm.behaviour_mut().gate.ban(peer);
                self.on_banned(peer, Misbehaviour::Other, until);
                let _ = reply.send(Ok(()));
            }
            Command::Request {
                peer,
                request,
                reply,
            } => self.send_request(peer, request, reply),
            Command::Dial { addr, reply } => {
                let result = self
                    .swarm
                    .dial(addr.clone())
                    .map_err(|e| NetworkError::Dial {
                        addr,
                        reason: e.to_string(),
                    });
                let _ = reply.send(result);
            }
            Command::Peers { reply } => {
                let _ = reply.send(Ok(self.peer_infos()));
            }
            Command::Status { reply } => {
                let _ = reply.send(Ok(self.status()));
            }
            Command::Shutdown { reply } => {
                // Handled in `run`; unreachable here but harmless.
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn publish(&mut self, data: Vec<u8>) -> Result<gossipsub::MessageId, NetworkError> {
        let max = self.config.limits.max_share_size;
        if data.len() > max {
            return Err(NetworkError::ShareTooLarge {
                len: data.len(),
                max,
            });
        }
        let topic = IdentTopic::new(self.names.share_topic.clone());
        self.swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, data)
            .map_err(|e| match e {
                gossipsub::PublishError::Duplicate => NetworkError::DuplicateShare,
                gossipsub::PublishError::NoPeersSubscribedToTopic => NetworkError::NoPeers,
                other => NetworkError::Publish(other.to_string()),
            })
    }

    /// Charges `kind` to `peer`; reports a resulting ban to the node. Returns the new score.
    fn penalize(&mut self, peer: PeerId, kind: Misbehaviour) -> f64 {
        let out = self.swarm.behaviour_mut().gate.penalize(peer, kind);
        debug!(%peer, ?kind, score = out.score, "peer penalized");
        if let Some(until) = out.banned_until {
            self.on_banned(peer, kind, until);
        }
        out.score
    }

    /// Forgets a banned peer's addresses and tells the node.
    fn on_banned(&mut self, peer: PeerId, kind: Misbehaviour, until: Instant) {
        warn!(%peer, ?kind, "peer banned");
        if let Some(k) = self.swarm.behaviour_mut().kad.as_mut() {
            k.remove_peer(&peer);
        }
        self.peer_store.remove(&peer);
        self.emit_or_warn(NetworkEvent::PeerBanned {
            peer,
            reason: kind,
            duration: until.saturating_duration_since(Instant::now()),
        });
    }

    fn send_request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, NetworkError>>,
    ) {
        if self
            .swarm
            .behaviour()
            .gate
            .scores()
            .is_peer_banned(&peer, Instant::now())
        {
            let _ = reply.send(Err(NetworkError::PeerBanned(peer)));
            return;
        }
        // Refuse locally what the peer would refuse (and penalize us for).
        if let Err(e) = crate::codec::encode_request(&request, &self.config.limits) {
            let _ = reply.send(Err(NetworkError::InvalidRequest(e)));
            return;
        }
        let max_shares = match &request {
            SyncRequest::GetTip => None,
            SyncRequest::GetShares { max, .. } => Some(*max),
            SyncRequest::GetSharesByHash { hashes } => Some(hashes.len() as u32),
        };
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, WireRequest(Ok(request)));
        self.outbound.insert(id, Outbound { max_shares, reply });
    }

    // ---- swarm events ---------------------------------------------------------------

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.on_gossip(e),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.on_identify(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.rtt = Some(rtt);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, ..
            })) => {
                debug!(%peer, "kademlia routing updated");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                for (peer, addr) in list {
                    if !self.peers.contains_key(&peer) && !self.foreign.contains(&peer) {
                        self.dial_peer(peer, vec![addr]);
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let (addr, inbound, dialed) = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => {
                        (address.clone(), false, Some(address.clone()))
                    }
                    ConnectedPoint::Listener { send_back_addr, .. } => {
                        (send_back_addr.clone(), true, None)
                    }
                };
                debug!(peer = %peer_id, %addr, inbound, "connection established");
                self.redial.remove(&peer_id);
                let state = self.peers.entry(peer_id).or_insert_with(|| PeerState {
                    connections: HashMap::new(),
                    inbound,
                    first_addr: addr.clone(),
                    dialed_addr: None,
                    agent_version: None,
                    rtt: None,
                });
                state.connections.insert(connection_id, addr);
                if state.dialed_addr.is_none() {
                    state.dialed_addr = dialed;
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.connections.remove(&connection_id);
                }
                if num_established == 0 {
                    self.unjudged.remove(&peer_id);
                    if let Some(state) = self.peers.remove(&peer_id) {
                        if state.agent_version.is_some() {
                            self.emit_or_warn(NetworkEvent::PeerDisconnected { peer: peer_id });
                        }
                    }
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address.clone());
                }
                self.emit_or_warn(NetworkEvent::Listening { addr: address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                debug!(%error, "inbound connection refused or failed");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(?peer_id, %error, "outbound connection failed");
                if let Some(peer) = peer_id {
                    self.dial_failed(peer);
                }
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                if message.topic != self.topic {
                    return;
                }
                if !self.may_hand_over(propagation_source) {
                    debug!(peer = %propagation_source, "too many of the peer's shares await a verdict; share ignored");
                    self.ignore(&message_id, &propagation_source);
                    return;
                }
                let ev = NetworkEvent::ShareGossip {
                    peer: propagation_source,
                    source: message.source,
                    msg_id: message_id.clone(),
                    data: message.data,
                };
                if self.emit(ev) {
                    self.unjudged
                        .entry(propagation_source)
                        .or_default()
                        .push_back((message_id, Instant::now()));
                } else {
                    // The node cannot take it now: drop it without blaming the peer.
                    warn!("node event queue full; gossiped share ignored");
                    self.ignore(&message_id, &propagation_source);
                }
            }
            gossipsub::Event::SlowPeer { peer_id, .. } => {
                debug!(peer = %peer_id, "gossipsub: slow peer");
            }
            other => debug!(?other, "gossipsub event"),
        }
    }

    /// Drops a gossiped share without forwarding it or blaming the peer.
    fn ignore(&mut self, msg_id: &gossipsub::MessageId, peer: &PeerId) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(msg_id, peer, MessageAcceptance::Ignore);
    }

    /// Whether another share relayed by `peer` may go to the node: fewer than the limit of
    /// its shares await a verdict. Shares held past the validation window no longer count
    /// (gossipsub has dropped them).
    fn may_hand_over(&mut self, peer: PeerId) -> bool {
        let Some(queue) = self.unjudged.get_mut(&peer) else {
            return true;
        };
        let window = self.config.gossip.validation_window;
        let now = Instant::now();
        while queue
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) > window)
        {
            queue.pop_front();
        }
        queue.len() < self.config.gossip.max_unjudged_per_peer
    }

    /// The node judged `msg_id` from `peer`: it no longer counts against the peer's limit.
    fn judged(&mut self, peer: &PeerId, msg_id: &gossipsub::MessageId) {
        if let Some(queue) = self.unjudged.get_mut(peer) {
            if let Some(i) = queue.iter().position(|(m, _)| m == msg_id) {
                queue.remove(i);
            }
            if queue.is_empty() {
                self.unjudged.remove(peer);
            }
        }
    }

    fn on_sync(&mut self, event: request_response::Event<WireRequest, SyncResponse>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_inbound_request(peer, request, channel),
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some(pending) = self.outbound.remove(&request_id) else {
                    return;
                };
                let result = match (&response, pending.max_shares) {
                    (SyncResponse::Refused(_), _) => Ok(response),
                    (SyncResponse::Tip(_), None) => Ok(response),
                    (SyncResponse::Shares(s), Some(max)) if s.len() as u64 <= u64::from(max) => {
                        Ok(response)
                    }
                    _ => {
                        self.penalize(peer, Misbehaviour::UnexpectedResponse);
                        Err(NetworkError::UnexpectedResponse)
                    }
                };
                let _ = pending.reply.send(result);
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let OutboundFailure::Io(e) = &error {
                    if let Some(ce) = CodecError::from_io(e) {
                        let kind = if ce.is_over_limits() {
                            Misbehaviour::Oversized
                        } else {
                            Misbehaviour::Garbage
                        };
                        self.penalize(peer, kind);
                    }
                }
                if let Some(pending) = self.outbound.remove(&request_id) {
                    let err = match error {
                        OutboundFailure::DialFailure => NetworkError::RequestDialFailure,
                        OutboundFailure::Timeout => NetworkError::RequestTimeout,
                        OutboundFailure::ConnectionClosed => NetworkError::RequestConnectionClosed,
                        OutboundFailure::UnsupportedProtocols => NetworkError::UnsupportedProtocol,
                        OutboundFailure::Io(e) => NetworkError::RequestIo(e.to_string()),
                    };
                    let _ = pending.reply.send(Err(err));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                // Codec errors on reading arrive as `WireRequest(Err)`; this is transport
                // trouble, a timeout, or our node not answering.
                debug!(%peer, %error, "inbound sync request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn on_inbound_request(
        &mut self,
        peer: PeerId,
        request: WireRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
        let request = match request.0 {
            Ok(r) => r,
            Err(ce) => {
                let kind = match ce {
                    CodecError::Oversized { .. } => Misbehaviour::Oversized,
                    ref e if e.is_over_limits() => Misbehaviour::RequestOverLimits,
                    _ => Misbehaviour::Garbage,
                };
                info!(%peer, error = %ce, "invalid sync request");
                self.respond(channel, SyncResponse::Refused(RefuseReason::InvalidRequest));
                self.penalize(peer, kind);
                return;
            }
        };
        let allowed = self
            .swarm
            .behaviour_mut()
            .gate
            .scores_mut()
            .allow_request(peer, Instant::now());
        if !allowed {
            self.respond(channel, SyncResponse::Refused(RefuseReason::RateLimited));
            self.penalize(peer, Misbehaviour::Flood);
            return;
        }
        if self.inbound.len() >= MAX_PENDING_INBOUND {
            self.respond(channel, SyncResponse::Refused(RefuseReason::Busy));
            return;
        }
        let request = match request {
            SyncRequest::GetShares { locator, stop, max } => SyncRequest::GetShares {
                locator,
                stop,
                max: max.min(self.config.limits.max_shares_per_response),
            },
            other => other,
        };
        let (tx, rx) = oneshot::channel();
        let ev = NetworkEvent::InboundSyncRequest {
            peer,
            request: request.clone(),
            reply: SyncResponder { tx },
        };
        if !self.emit(ev) {
            self.respond(channel, SyncResponse::Refused(RefuseReason::Busy));
            return;
        }
        let timeout = self.config.request_timeout;
        self.inbound.push(
            async move {
                let response = tokio::time::timeout(timeout, rx)
                    .await
                    .ok()
                    .and_then(Result::ok);
                InboundDone {
                    channel,
                    request,
                    response,
                }
            }
            .boxed(),
        );
    }

    fn answer_inbound(&mut self, done: InboundDone) {
        let limits = &self.config.limits;
        let response = match (done.request, done.response) {
            (_, None) => SyncResponse::Refused(RefuseReason::Unavailable),
            (SyncRequest::GetTip, Some(r @ (SyncResponse::Tip(_) | SyncResponse::Refused(_)))) => r,
            (SyncRequest::GetShares { max, .. }, Some(SyncResponse::Shares(shares))) => {
                // Trim to what the requester asked for and what the limits allow, so the
                // peer never has reason to refuse (and penalize) our answer.
                let keep = shares
                    .iter()
                    .take(max as usize)
                    .take_while(|s| s.len() <= limits.max_share_size)
                    .count();
                let mut shares = shares;
                shares.truncate(keep);
                SyncResponse::Shares(shares)
            }
            (SyncRequest::GetShares { .. }, Some(r @ SyncResponse::Refused(_))) => r,
            (SyncRequest::GetSharesByHash { hashes }, Some(SyncResponse::Shares(mut shares))) => {
                let keep = shares
                    .iter()
                    .take(hashes.len())
                    .take_while(|s| s.len() <= limits.max_share_size)
                    .count();
                shares.truncate(keep);
                SyncResponse::Shares(shares)
            }
            (SyncRequest::GetSharesByHash { .. }, Some(r @ SyncResponse::Refused(_))) => r,
            (req, Some(resp)) => {
                warn!(
                    ?req,
                    ?resp,
                    "the node answered a sync request with the wrong kind"
                );
                SyncResponse::Refused(RefuseReason::Unavailable)
            }
        };
        self.respond(done.channel, response);
    }

    fn respond(&mut self, channel: ResponseChannel<SyncResponse>, response: SyncResponse) {
        if self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(channel, response)
            .is_err()
        {
            debug!("sync response not sent: the request timed out or the connection closed");
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        if info.protocol_version != self.names.identify_version {
            info!(peer = %peer_id, version = %info.protocol_version, "peer is on another network; disconnecting");
            self.mark_foreign(peer_id);
            return;
        }
        let Some(state) = self.peers.get_mut(&peer_id) else {
            return;
        };
        let first = state.agent_version.is_none();
        state.agent_version = Some(info.agent_version.clone());
        let dialed = state.dialed_addr.clone();
        let (first_addr, inbound) = (state.first_addr.clone(), state.inbound);

        let now = unix_now();
        if let Some(addr) = dialed {
            self.peer_store.insert(peer_id, addr, now);
        }
        let speaks_kad = info.protocols.contains(&self.names.kad);
        // A remote peer's loopback addresses point at our own machine: keep them only when
        // the peer itself is on loopback (tests, several nodes on one host).
        let local_peer = ip_of(&first_addr).is_some_and(|ip| ip.is_loopback());
        for addr in info
            .listen_addrs
            .iter()
            .take(crate::peer_store::MAX_ADDRS_PER_PEER)
        {
            if speaks_kad {
                if let Some(k) = self.swarm.behaviour_mut().kad.as_mut() {
                    k.add_address(&peer_id, addr.clone());
                }
            }
            // Unspecified addresses (0.0.0.0) are useless to dial.
            if !is_unspecified(addr)
                && (local_peer || !ip_of(addr).is_some_and(|ip| ip.is_loopback()))
            {
                self.peer_store.insert(peer_id, addr.clone(), now);
            }
        }
        if first {
            self.emit_or_warn(NetworkEvent::PeerConnected {
                peer: peer_id,
                agent_version: info.agent_version,
                addr: first_addr,
                inbound,
            });
        }
    }

    fn mark_foreign(&mut self, peer: PeerId) {
        if !self.foreign.contains(&peer) {
            if self.foreign.len() >= MAX_FOREIGN {
                self.foreign.pop_front();
            }
            self.foreign.push_back(peer);
        }
        self.peer_store.remove(&peer);
        if let Some(k) = self.swarm.behaviour_mut().kad.as_mut() {
            k.remove_peer(&peer);
        }
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    // ---- maintenance ----------------------------------------------------------------

    /// Dials the bootstrap peers (seeding Kademlia) and the stored peers.
    fn bootstrap(&mut self) {
        for addr in self.config.bootstrap.clone() {
            if let Some(peer) = peer_of(&addr) {
                if let Some(k) = self.swarm.behaviour_mut().kad.as_mut() {
                    k.add_address(&peer, addr.clone());
                }
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                warn!(%addr, %e, "cannot dial bootstrap peer");
            }
        }
        self.dial_stored(self.config.target_peers as usize);
        if let Some(k) = self.swarm.behaviour_mut().kad.as_mut() {
            // Fails only with no known peer, which is fine at this point.
            let _ = k.bootstrap();
        }
    }

    fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, %e, "dial not started");
        }
    }

    /// Dials up to `n` stored peers that are not connected, banned or foreign.
    fn dial_stored(&mut self, n: usize) {
        let now = Instant::now();
        let me = *self.swarm.local_peer_id();
        let candidates: Vec<(PeerId, Vec<Multiaddr>)> = self
            .peer_store
            .candidates()
            .into_iter()
            .filter(|(p, _)| {
                *p != me
                    && !self.peers.contains_key(p)
                    && !self.foreign.contains(p)
                    && !self.swarm.behaviour().gate.scores().is_peer_banned(p, now)
                    && self.redial.get(p).is_none_or(|(_, next)| *next <= now)
            })
            .take(n)
            .collect();
        for (peer, addrs) in candidates {
            self.dial_peer(peer, addrs);
        }
    }

    /// Backs off redialing `peer`; forgets it after too many failures in a row.
    fn dial_failed(&mut self, peer: PeerId) {
        let failures = self.redial.get(&peer).map(|(n, _)| n + 1).unwrap_or(1);
        if failures >= MAX_DIAL_FAILURES {
            self.redial.remove(&peer);
            self.peer_store.remove(&peer);
            return;
        }
        let delay = REDIAL_BASE
            .saturating_mul(1u32 << failures.min(16))
            .min(REDIAL_MAX);
        self.redial.insert(peer, (failures, Instant::now() + delay));
    }

    fn maintain(&mut self) {
        self.ticks += 1;
        let now = Instant::now();
        let connected: HashSet<PeerId> = self.peers.keys().copied().collect();
        self.swarm
            .behaviour_mut()
            .gate
            .scores_mut()
            .expire(now, |p| connected.contains(p));
        // Forget backoff state of peers no longer in the store (bounded by the store).
        let known: HashSet<PeerId> = self
            .peer_store
            .candidates()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        self.redial.retain(|p, _| known.contains(p));
        let target = self.config.target_peers as usize;
        if connected.len() < target {
            self.dial_stored((target - connected.len()).min(DIALS_PER_PASS));
            if connected.is_empty() && self.ticks % BOOTSTRAP_EVERY == 0 {
                self.bootstrap();
            }
        }
        if self.ticks % SAVE_EVERY == 0 {
            self.save_peers();
        }
    }

    fn save_peers(&mut self) {
        if let Err(e) = self.peer_store.save() {
            warn!("peer store not saved: {e}");
        }
    }

    // ---- queries --------------------------------------------------------------------

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        let b = self.swarm.behaviour();
        let mesh: HashSet<&PeerId> = b.gossipsub.mesh_peers(&self.topic).collect();
        let mut list: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(peer, s)| PeerInfo {
                peer: *peer,
                addrs: s.connections.values().cloned().collect(),
                inbound: s.inbound,
                agent_version: s.agent_version.clone(),
                rtt: s.rtt,
                score: b.gate.scores().score(peer, now),
                in_mesh: mesh.contains(peer),
            })
            .collect();
        list.sort_by_key(|p| p.peer);
        list
    }

    fn status(&self) -> NetworkStatus {
        let now = Instant::now();
        let b = self.swarm.behaviour();
        let topic_peers = b
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&self.topic))
            .count();
        NetworkStatus {
            local_peer_id: *self.swarm.local_peer_id(),
            listen_addrs: self.listen_addrs.clone(),
            connected_peers: self.peers.len(),
            identified_peers: self
                .peers
                .values()
                .filter(|s| s.agent_version.is_some())
                .count(),
            topic_peers,
            mesh_peers: b.gossipsub.mesh_peers(&self.topic).count(),
            banned_peers: b.gate.scores().banned_peers(now),
            foreign_peers: self.foreign.len(),
            known_peers: self.peer_store.len(),
            pending_outbound_requests: self.outbound.len(),
            pending_inbound_requests: self.inbound.len(),
        }
    }
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}
