//! Shares waiting for a share we do not have yet (their parent or an uncle).
//!
//! Gossip can deliver a child before its parent. Such a share waits here, keyed by what it
//! is missing, until that arrives; then it is tried again. The pool is bounded in count: a
//! peer cannot fill memory with shares that hang off nothing. When full, the oldest waiting
//! share is dropped (it can be fetched again by sync).

use std::collections::{HashMap, HashSet, VecDeque};

use crate::hash::ShareHash;
use crate::share::Share;

/// Bounded pool of shares waiting for a missing dependency.
#[derive(Clone, Debug)]
pub struct OrphanPool {
    capacity: usize,
    waiting: HashMap<ShareHash, Vec<(ShareHash, Share)>>,
    held: HashSet<ShareHash>,
    /// Arrival order, for eviction: (share, what it waits for).
    order: VecDeque<(ShareHash, ShareHash)>,
}

impl OrphanPool {
    pub fn new(capacity: usize) -> Self {
        OrphanPool {
            capacity: capacity.max(1),
            waiting: HashMap::new(),
            held: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn contains(&self, hash: &ShareHash) -> bool {
        self.held.contains(hash)
    }

    /// What the pool is waiting for (to ask peers for).
    pub fn missing(&self) -> impl Iterator<Item = &ShareHash> {
        self.waiting.keys()
    }

    /// Parks `share` until `missing` arrives. Returns false if it was already held.
    pub fn insert(&mut self, share: Share, missing: ShareHash) -> bool {
        let hash = share.hash();
        if !self.held.insert(hash) {
            return false;
        }
        while self.held.len() > self.capacity {
            self.evict_oldest();
        }
        self.waiting.entry(missing).or_default().push((hash, share));
        self.order.push_back((hash, missing));
        if self.order.len() > 2 * self.capacity {
            // Entries of shares already taken linger until here; keep the queue bounded.
            let held = &self.held;
            self.order.retain(|(h, _)| held.contains(h));
        }
        true
    }

    /// Empties the pool, returning every share it held.
    pub fn take_all(&mut self) -> Vec<Share> {
        self.held.clear();
        self.order.clear();
        self.waiting
            .drain()
            .flat_map(|(_, list)| list.into_iter().map(|(_, share)| share))
            .collect()
    }

    /// Takes every share that was waiting for `arrived`.
    pub fn take_waiting_for(&mut self, arrived: &ShareHash) -> Vec<Share> {
        let Some(list) = self.waiting.remove(arrived) else {
            return Vec::new();
        };
        list.into_iter()
            .map(|(hash, share)| {
                self.held.remove(&hash);
                share
            })
            .collect()
    }

    fn evict_oldest(&mut self) {
        while let Some((hash, missing)) = self.order.pop_front() {
            if !self.held.contains(&hash) {
                continue; // already taken
            }
            if let Some(list) = self.waiting.get_mut(&missing) {
                if let Some(pos) = list.iter().position(|(h, _)| *h == hash) {
                    list.remove(pos);
                    self.held.remove(&hash);
                    if list.is_empty() {
                        self.waiting.remove(&missing);
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::tests::sample_share;

    fn share(n: u32) -> Share {
        let mut s = sample_share();
        s.header.nonce = n;
        s
    }

    #[test]
    fn waits_and_releases() {
        let mut pool = OrphanPool::new(10);
        let missing = ShareHash([9; 32]);
        assert!(pool.insert(share(1), missing));
        assert!(!pool.insert(share(1), missing));
        assert!(pool.insert(share(2), missing));
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.take_waiting_for(&missing).len(), 2);
        assert!(pool.is_empty());
        assert!(pool.take_waiting_for(&missing).is_empty());
    }

    #[test]
    fn bounded_with_oldest_evicted() {
        let mut pool = OrphanPool::new(3);
        for n in 0..10 {
            pool.insert(share(n), ShareHash([n as u8; 32]));
        }
        assert_eq!(pool.len(), 3);
        assert!(!pool.contains(&share(0).hash()));
        assert!(pool.contains(&share(9).hash()));
        assert_eq!(pool.missing().count(), 3);
    }
}
