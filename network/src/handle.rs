//! The node's side of the network: the [`NetworkHandle`] it sends commands through and the
//! [`NetworkEvent`]s it receives.
//!
//! The handle is a cheap clone around a command channel into the network task; every call
//! waits for the task's answer. Events arrive on a bounded channel; see
//! [`crate::NetworkConfig::event_buffer`] for what happens when the node falls behind.

use std::time::Duration;

use libp2p::gossipsub::MessageId;
use libp2p::{Multiaddr, PeerId};
use share_chain::ShareHash;
use tokio::sync::{mpsc, oneshot};

use crate::codec::{SyncRequest, SyncResponse, TipInfo};
use crate::score::Misbehaviour;
use crate::NetworkError;

/// The node's judgement of a gossiped share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it to our mesh.
    Accept,
    /// Invalid: drop it, tell gossipsub, and charge the peer that sent it.
    Reject(Misbehaviour),
    /// Not forwardable but not the peer's fault (unknown parent, too old, already have it):
    /// drop it without a penalty.
    Ignore,
}

/// Something the node should know or act on.
#[derive(Debug)]
pub enum NetworkEvent {
    /// A listener is up on `addr`.
    Listening { addr: Multiaddr },
    /// A peer of our network connected and identified itself. Peers of other networks are
    /// disconnected without an event.
    PeerConnected {
        peer: PeerId,
        agent_version: String,
        /// The address of the first connection.
        addr: Multiaddr,
        /// Whether the peer dialed us.
        inbound: bool,
    },
    /// A peer announced by `PeerConnected` has no connection left.
    PeerDisconnected { peer: PeerId },
    /// A gossiped share awaiting validation. The node must answer with
    /// [`NetworkHandle::report_validation`] (`msg_id`, `peer`): until then it is not forwarded.
    ShareGossip {
        /// The peer that relayed it to us (the one to penalize if it is invalid).
        peer: PeerId,
        /// Its author, as signed.
        source: Option<PeerId>,
        msg_id: MessageId,
        data: Vec<u8>,
    },
    /// A peer asks for sync data; answer through `reply` within the request timeout.
    /// `GetShares::max` is already clamped to our limit.
    InboundSyncRequest {
        peer: PeerId,
        request: SyncRequest,
        reply: SyncResponder,
    },
    /// A peer's score fell to the threshold: it is disconnected and banned for `duration`.
    PeerBanned {
        peer: PeerId,
        reason: Misbehaviour,
        duration: Duration,
    },
}

/// Where the node sends its answer to an [`NetworkEvent::InboundSyncRequest`].
#[derive(Debug)]
pub struct SyncResponder {
    pub(crate) tx: oneshot::Sender<SyncResponse>,
}

impl SyncResponder {
    /// Sends the answer. The network trims a `Shares` answer to the request's `max` and to
    /// the size limits. Returns false if the request has already timed out.
    pub fn send(self, response: SyncResponse) -> bool {
        self.tx.send(response).is_ok()
    }
}

/// A connected peer.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerInfo {
    pub peer: PeerId,
    /// Remote addresses of its connections.
    pub addrs: Vec<Multiaddr>,
    /// Whether its first connection was inbound.
    pub inbound: bool,
    /// Set once identify confirmed it is on our network.
    pub agent_version: Option<String>,
    /// Last ping round trip.
    pub rtt: Option<Duration>,
    /// Current score (0 is neutral, the ban threshold is negative).
    pub score: f64,
    /// Whether it is in our gossip mesh.
    pub in_mesh: bool,
}

/// A snapshot of the network.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkStatus {
    pub local_peer_id: PeerId,
    pub listen_addrs: Vec<Multiaddr>,
    /// Connected peers, identified or not.
    pub connected_peers: usize,
    /// Connected peers confirmed to be on our network.
    pub identified_peers: usize,
    /// Peers subscribed to the share topic.
    pub topic_peers: usize,
    /// Peers in our gossip mesh for the share topic.
    pub mesh_peers: usize,
    /// Current bans and their remaining time.
    pub banned_peers: Vec<(PeerId, Duration)>,
    /// Peers recently found to be on another network (disconnected, not redialed).
    pub foreign_peers: usize,
    /// Peers in the peer store.
    pub known_peers: usize,
    /// Sync requests we sent that are awaiting an answer.
    pub pending_outbound_requests: usize,
    /// Sync requests from peers awaiting our node's answer.
    pub pending_inbound_requests: usize,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NetworkError>>;

pub(crate) enum Command {
    Publish {
        data: Vec<u8>,
        reply: Reply<MessageId>,
    },
    Validation {
        msg_id: MessageId,
        peer: PeerId,
        verdict: Verdict,
        reply: Reply<bool>,
    },
    Penalize {
        peer: PeerId,
        kind: Misbehaviour,
        reply: Reply<f64>,
    },
    Ban {
        peer: PeerId,
        reply: Reply<()>,
    },
    Request {
        peer: PeerId,
        request: SyncRequest,
        reply: Reply<SyncResponse>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<()>,
    },
    Peers {
        reply: Reply<Vec<PeerInfo>>,
    },
    Status {
        reply: Reply<NetworkStatus>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// Commands to the network task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NetworkHandle {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) local_peer_id: PeerId,
}

impl NetworkHandle {
    /// Our PeerId (stable across restarts when a data directory is configured).
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetworkError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| NetworkError::Stopped)?;
        rx.await.map_err(|_| NetworkError::Stopped)?
    }

    /// Gossips a share this node produced (not one received from a peer: accepted gossip is
    /// forwarded by [`Self::report_validation`]). Returns the gossip message id.
    pub async fn publish_share(&self, data: Vec<u8>) -> Result<MessageId, NetworkError> {
        self.call(|reply| Command::Publish { data, reply }).await
    }

    /// The node's verdict on a [`NetworkEvent::ShareGossip`]. Returns false if gossipsub no
    /// longer held the message (validated too late; it was dropped).
    pub async fn report_validation(
        &self,
        msg_id: MessageId,
        peer: PeerId,
        verdict: Verdict,
    ) -> Result<bool, NetworkError> {
        self.call(|reply| Command::Validation {
            msg_id,
            peer,
            verdict,
            reply,
        })
        .await
    }

    /// Charges a misbehaviour to `peer` (e.g. an invalid share received through sync).
    /// Returns the peer's new score; at the threshold it is banned.
    pub async fn penalize(&self, peer: PeerId, kind: Misbehaviour) -> Result<f64, NetworkError> {
        self.call(|reply| Command::Penalize { peer, kind, reply })
            .await
    }

    /// Bans `peer` for the configured duration and disconnects it.
    pub async fn ban(&self, peer: PeerId) -> Result<(), NetworkError> {
        self.call(|reply| Command::Ban { peer, reply }).await
    }

    /// Sends a sync request and waits for the answer (up to the request timeout). The answer
    /// is checked to match the request: a `Tip` or `Refused` for `GetTip`; `Shares` (at most
    /// `max`) or `Refused` for `GetShares`; `Shares` (at most as many as asked) or `Refused`
    /// for `GetSharesByHash`. A mismatch is charged to the peer and an error.
    pub async fn request(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<SyncResponse, NetworkError> {
        self.call(|reply| Command::Request {
            peer,
            request,
            reply,
        })
        .await
    }

    /// The peer's best share (`None`: it has no chain yet).
    pub async fn request_tip(&self, peer: PeerId) -> Result<Option<TipInfo>, NetworkError> {
        match self.request(peer, SyncRequest::GetTip).await? {
            SyncResponse::Tip(tip) => Ok(tip),
            SyncResponse::Refused(reason) => Err(NetworkError::Refused(reason)),
            SyncResponse::Shares(_) => Err(NetworkError::UnexpectedResponse),
        }
    }

    /// Up to `max` encoded shares following the first hash in `locator` the peer knows,
    /// oldest first, stopping after `stop`.
    pub async fn request_shares(
        &self,
        peer: PeerId,
        locator: Vec<ShareHash>,
        stop: Option<ShareHash>,
        max: u32,
    ) -> Result<Vec<Vec<u8>>, NetworkError> {
        match self
            .request(peer, SyncRequest::GetShares { locator, stop, max })
            .await?
        {
            SyncResponse::Shares(shares) => Ok(shares),
            SyncResponse::Refused(reason) => Err(NetworkError::Refused(reason)),
            SyncResponse::Tip(_) => Err(NetworkError::UnexpectedResponse),
        }
    }

    /// The shares with these hashes that the peer holds (at most `max_locator` hashes,
    /// and `max_shares_per_response`), in the order asked, missing ones left out.
    pub async fn request_shares_by_hash(
        &self,
        peer: PeerId,
        hashes: Vec<ShareHash>,
    ) -> Result<Vec<Vec<u8>>, NetworkError> {
        match self
            .request(peer, SyncRequest::GetSharesByHash { hashes })
            .await?
        {
            SyncResponse::Shares(shares) => Ok(shares),
            SyncResponse::Refused(reason) => Err(NetworkError::Refused(reason)),
            SyncResponse::Tip(_) => Err(NetworkError::UnexpectedResponse),
        }
    }

    /// Dials an address (a trailing `/p2p/<id>` pins the expected PeerId). Returns once the
    /// dial started; [`NetworkEvent::PeerConnected`] tells when it succeeded.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetworkError> {
        self.call(|reply| Command::Dial { addr, reply }).await
    }

    /// Connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetworkError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// A snapshot of the network.
    pub async fn status(&self) -> Result<NetworkStatus, NetworkError> {
        self.call(|reply| Command::Status { reply }).await
    }

    /// Saves the peer store and stops the network task.
    pub async fn shutdown(&self) -> Result<(), NetworkError> {
        self.call(|reply| Command::Shutdown { reply }).await
    }
}
