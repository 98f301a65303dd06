//! Known peers' addresses, persisted in the data directory (`peers.json`).
//!
//! So a restarted node finds its network again without the bootstrap peers: addresses that
//! worked (outbound dials) and that peers announced (identify) are kept, most recently seen
//! first, and redialed on start. The store is bounded (peers and addresses per peer) and a
//! damaged file is skipped entry by entry, never fatal: it is a cache, not state.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

/// The peer store's file name inside the data directory.
pub const PEERS_FILE: &str = "peers.json";

/// Most addresses remembered per peer.
pub const MAX_ADDRS_PER_PEER: usize = 4;

/// Largest peer file read (256 peers x 4 addresses is about 100 KiB).
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// Why the peer store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PeerStoreError {
    #[error("reading the peer store {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing the peer store {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("the peer store {path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("the peer store {path} is not valid JSON: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    peers: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    peer_id: String,
    addrs: Vec<String>,
    /// Unix seconds.
    last_seen: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    addrs: Vec<Multiaddr>,
    last_seen: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct PeerStore {
    path: Option<PathBuf>,
    max_peers: usize,
    peers: HashMap<PeerId, Entry>,
    dirty: bool,
}

impl PeerStore {
    /// An empty store that is never saved.
    pub fn in_memory(max_peers: usize) -> Self {
        PeerStore {
            path: None,
            max_peers,
            peers: HashMap::new(),
            dirty: false,
        }
    }

    /// Loads `dir/peers.json` (an absent file is an empty store); invalid entries are skipped.
    pub fn load(dir: &Path, max_peers: usize) -> Result<Self, PeerStoreError> {
        let path = dir.join(PEERS_FILE);
        let mut store = PeerStore {
            path: Some(path.clone()),
            ..PeerStore::in_memory(max_peers)
        };
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(store),
            Err(source) => return Err(PeerStoreError::Read { path, source }),
        };
        let mut text = Vec::new();
        file.take(MAX_FILE + 1)
            .read_to_end(&mut text)
            .map_err(|source| PeerStoreError::Read {
                path: path.clone(),
                source,
            })?;
        if text.len() as u64 > MAX_FILE {
            return Err(PeerStoreError::TooLarge {
                path,
                max: MAX_FILE,
            });
        }
        let parsed: FileFormat =
            serde_json::from_slice(&text).map_err(|source| PeerStoreError::Parse {
                path: path.clone(),
                source,
            })?;
        for e in parsed.peers {
            let Ok(peer) = e.peer_id.parse::<PeerId>() else {
                continue;
            };
            // Stored most recent first; `insert` puts each at the front, so replay backwards.
            for a in e.addrs.iter().take(MAX_ADDRS_PER_PEER).rev() {
                if let Ok(addr) = a.parse::<Multiaddr>() {
                    store.insert(peer, addr, e.last_seen);
                }
            }
        }
        store.dirty = false;
        Ok(store)
    }

    /// Remembers that `peer` was reachable at `addr` at `now` (Unix seconds). A `/p2p/<id>`
    /// suffix is stripped; the most recent addresses are kept.
    pub fn insert(&mut self, peer: PeerId, addr: Multiaddr, now: u64) {
        let addr = strip_p2p(addr);
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.max_peers {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(p, _)| *p);
            match oldest {
                Some(p) if self.peers.get(&p).is_some_and(|e| e.last_seen <= now) => {
                    self.peers.remove(&p);
                }
                _ => return,
            }
        }
        if self.max_peers == 0 {
            return;
        }
        let entry = self.peers.entry(peer).or_insert(Entry {
            addrs: Vec::new(),
            last_seen: now,
        });
        entry.addrs.retain(|a| a != &addr);
        entry.addrs.insert(0, addr);
        entry.addrs.truncate(MAX_ADDRS_PER_PEER);
        entry.last_seen = entry.last_seen.max(now);
        self.dirty = true;
    }

    /// Forgets `peer` (e.g. it turned out to be on another network).
    pub fn remove(&mut self, peer: &PeerId) {
        if self.peers.remove(peer).is_some() {
            self.dirty = true;
        }
    }

    /// Peers and their addresses, most recently seen first.
    pub fn candidates(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut list: Vec<(&PeerId, &Entry)> = self.peers.iter().collect();
        list.sort_by(|a, b| b.1.last_seen.cmp(&a.1.last_seen).then(a.0.cmp(b.0)));
        list.into_iter()
            .map(|(p, e)| (*p, e.addrs.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Writes the store if it changed since the last save (atomically: temp file + rename).
    pub fn save(&mut self) -> Result<(), PeerStoreError> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let file = FileFormat {
            version: 1,
            peers: self
                .candidates()
                .into_iter()
                .map(|(p, addrs)| FileEntry {
                    peer_id: p.to_string(),
                    addrs: addrs.iter().map(|a| a.to_string()).collect(),
                    last_seen: self.peers.get(&p).map(|e| e.last_seen).unwrap_or(0),
                })
                .collect(),
        };
        let write = || -> io::Result<()> {
            let text = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            let tmp = path.with_extension("json.tmp");
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| PeerStoreError::Write {
            path: path.clone(),
            source,
        })?;
        self.dirty = false;
        Ok(())
    }
}

/// `addr` without a trailing `/p2p/<id>` (the store keys by PeerId already).
fn strip_p2p(mut addr: Multiaddr) -> Multiaddr {
    if matches!(
        addr.iter().last(),
        Some(libp2p::multiaddr::Protocol::P2p(_))
    ) {
        addr.pop();
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/192.0.2.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn saves_and_reloads_most_recent_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PeerStore::load(dir.path(), 10).unwrap();
        assert!(s.is_empty());
        let (a, b) = (PeerId::random(), PeerId::random());
        s.insert(a, addr(1), 100);
        s.insert(b, addr(2), 200);
        let with_p2p = addr(3).with(libp2p::multiaddr::Protocol::P2p(a));
        s.insert(a, with_p2p, 150);
        s.save().unwrap();
        let t = PeerStore::load(dir.path(), 10).unwrap();
        let c = t.candidates();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], (b, vec![addr(2)]));
        assert_eq!(c[1], (a, vec![addr(3), addr(1)]));
    }

    #[test]
    fn bounded_in_peers_and_addresses() {
        let mut s = PeerStore::in_memory(3);
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            s.insert(*p, addr(i as u16), i as u64);
        }
        assert_eq!(s.len(), 3);
        // The oldest two were evicted.
        let kept: Vec<PeerId> = s.candidates().into_iter().map(|(p, _)| p).collect();
        assert_eq!(kept, vec![peers[4], peers[3], peers[2]]);
        for port in 0..10 {
            s.insert(peers[4], addr(100 + port), 10);
        }
        assert_eq!(s.candidates()[0].1.len(), MAX_ADDRS_PER_PEER);
        assert_eq!(s.candidates()[0].1[0], addr(109));
    }

    #[test]
    fn damaged_entries_are_skipped_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let good = PeerId::random();
        let text = format!(
            r#"{{"version":1,"peers":[
                {{"peer_id":"nonsense","addrs":["/ip4/1.2.3.4/tcp/1"],"last_seen":1}},
                {{"peer_id":"{good}","addrs":["not an addr","/ip4/192.0.2.1/tcp/5"],"last_seen":2}}
            ]}}"#
        );
        fs::write(dir.path().join(PEERS_FILE), text).unwrap();
        let s = PeerStore::load(dir.path(), 10).unwrap();
        assert_eq!(s.candidates(), vec![(good, vec![addr(5)])]);
        fs::write(dir.path().join(PEERS_FILE), b"{{{").unwrap();
        assert!(matches!(
            PeerStore::load(dir.path(), 10),
            Err(PeerStoreError::Parse { .. })
        ));
    }
}
