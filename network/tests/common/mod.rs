//! Test harness: real libp2p nodes on loopback, each driven by a scripted "node" task that
//! plays the validating p2pool node (verdicts by a predicate, sync answers from fixed data)
//! and reports what it saw on a channel the test waits on with timeouts.

#![allow(dead_code)]

use std::time::Duration;

use p2pool_network::{
    spawn, Misbehaviour, Multiaddr, NetworkConfig, NetworkEvent, NetworkHandle, NetworkId, PeerId,
    SyncRequest, SyncResponse, TipInfo, Verdict,
};
use tokio::sync::mpsc;

/// What a scripted node saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    Connected(PeerId),
    Disconnected(PeerId),
    Gossip {
        from: PeerId,
        data: Vec<u8>,
        accepted: bool,
    },
    SyncRequest(PeerId, SyncRequest),
    Banned(PeerId, Misbehaviour),
}

/// How the scripted node behaves.
#[derive(Clone)]
pub struct Script {
    /// Shares for which this returns true are rejected as invalid.
    pub reject: fn(&[u8]) -> bool,
    pub tip: Option<TipInfo>,
    pub shares: Vec<Vec<u8>>,
    /// How long judging one gossiped share takes (the driver judges one at a time, as the
    /// node does).
    pub judge_time: Duration,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            reject: |_| false,
            tip: None,
            shares: Vec::new(),
            judge_time: Duration::ZERO,
        }
    }
}

pub struct TestNode {
    pub handle: NetworkHandle,
    pub id: PeerId,
    /// Dialable address with `/p2p/<id>`.
    pub addr: Multiaddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    /// Everything taken off `seen` so far, for negative checks.
    pub log: Vec<Seen>,
}

pub fn net(b: u8) -> NetworkId {
    NetworkId([b; 32])
}

/// A loopback config with discovery off, so tests control the topology.
pub fn config(network: NetworkId) -> NetworkConfig {
    let mut c = NetworkConfig::new(network);
    c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    c.enable_kad = false;
    c.target_peers = 0;
    c
}

pub async fn start(config: NetworkConfig, script: Script) -> TestNode {
    let (handle, events) = spawn(config).await.expect("network starts");
    let status = handle.status().await.unwrap();
    let addr = status.listen_addrs[0]
        .clone()
        .with(libp2p::multiaddr::Protocol::P2p(status.local_peer_id));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(drive(handle.clone(), events, script, tx));
    TestNode {
        id: handle.local_peer_id(),
        handle,
        addr,
        seen: rx,
        log: Vec::new(),
    }
}

async fn drive(
    handle: NetworkHandle,
    mut events: mpsc::Receiver<NetworkEvent>,
    script: Script,
    seen: mpsc::UnboundedSender<Seen>,
) {
    while let Some(ev) = events.recv().await {
        let out = match ev {
            NetworkEvent::ShareGossip {
                peer, msg_id, data, ..
            } => {
                tokio::time::sleep(script.judge_time).await;
                let accepted = !(script.reject)(&data);
                let verdict = if accepted {
                    Verdict::Accept
                } else {
                    Verdict::Reject(Misbehaviour::InvalidShare)
                };
                let _ = handle.report_validation(msg_id, peer, verdict).await;
                Seen::Gossip {
                    from: peer,
                    data,
                    accepted,
                }
            }
            NetworkEvent::InboundSyncRequest {
                peer,
                request,
                reply,
            } => {
                let resp = match &request {
                    SyncRequest::GetTip => SyncResponse::Tip(script.tip),
                    SyncRequest::GetShares { max, .. } => SyncResponse::Shares(
                        script.shares.iter().take(*max as usize).cloned().collect(),
                    ),
                    SyncRequest::GetSharesByHash { hashes } => SyncResponse::Shares(
                        script.shares.iter().take(hashes.len()).cloned().collect(),
                    ),
                };
                reply.send(resp);
                Seen::SyncRequest(peer, request)
            }
            NetworkEvent::PeerConnected { peer, .. } => Seen::Connected(peer),
            NetworkEvent::PeerDisconnected { peer } => Seen::Disconnected(peer),
            NetworkEvent::PeerBanned { peer, reason, .. } => Seen::Banned(peer, reason),
            NetworkEvent::Listening { .. } => continue,
        };
        if seen.send(out).is_err() {
            return;
        }
    }
}

impl TestNode {
    /// Waits (up to `secs`) for an observation matching `pred`, logging everything seen.
    pub async fn wait_for(&mut self, secs: u64, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(s)) => {
                    self.log.push(s.clone());
                    if pred(&s) {
                        return s;
                    }
                }
                Ok(None) => panic!("node task ended while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}; saw {:?}", self.log),
            }
        }
    }

    /// Collects observations for `millis` (for checks that something does not happen).
    pub async fn drain_for(&mut self, millis: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(millis);
        while let Ok(Some(s)) = tokio::time::timeout_at(deadline, self.seen.recv()).await {
            self.log.push(s);
        }
    }

    pub fn saw(&self, pred: impl Fn(&Seen) -> bool) -> bool {
        self.log.iter().any(pred)
    }

    pub async fn gossip_data(&mut self, secs: u64, data: &[u8]) -> Seen {
        let want = data.to_vec();
        self.wait_for(
            secs,
            &format!("gossip {:?}", String::from_utf8_lossy(data)),
            |s| matches!(s, Seen::Gossip { data, .. } if *data == want),
        )
        .await
    }
}

/// `a` dials `b`; waits until both saw the other connect (identified, same network).
pub async fn connect(a: &mut TestNode, b: &mut TestNode) {
    a.handle.dial(b.addr.clone()).await.unwrap();
    let (ida, idb) = (a.id, b.id);
    a.wait_for(10, "outbound connection", |s| *s == Seen::Connected(idb))
        .await;
    b.wait_for(10, "inbound connection", |s| *s == Seen::Connected(ida))
        .await;
}

/// Waits until each node's gossip mesh holds `want[i]` peers.
pub async fn wait_mesh(nodes: &[&TestNode], want: &[usize]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for (n, w) in nodes.iter().zip(want) {
        loop {
            let st = n.handle.status().await.unwrap();
            if st.mesh_peers >= *w {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mesh not formed: {} has {} of {w}",
                n.id,
                st.mesh_peers
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
