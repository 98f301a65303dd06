//! Shares waiting for a share we do not have yet (their parent or an uncle).
//!
//! Gossip can deliver a child before its parent. Such a share waits here, keyed by what it
//! is missing, until that arrives; then it is tried again. A share is parked only after the
//! checks it can get alone, proof of work included ([`crate::chain::ChainIndex::check_alone`]),
//! so every orphan cost its sender the work of its share target.
//!
//! The pool is bounded in count and in bytes. When full, the share worth least goes: the
//! least work, and between equal work the newest, which may be the arriving share itself.
//! So a flood can only push out orphans with less work than each flooding share carries,
//! and a flood at the easiest target pushes out nothing (the easiest target is the least
//! any orphan has).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use crate::hash::ShareHash;
use crate::share::Share;
use crate::target::Work;

/// Most bytes (canonical encodings) the pool holds.
pub const ORPHAN_MAX_BYTES: usize = 2 << 20;

/// Eviction order: the first key goes first (least work, then newest).
type Worth = (Work, Reverse<u64>, ShareHash);

#[derive(Clone, Debug)]
struct Parked {
    share: Share,
    missing: ShareHash,
    worth: Worth,
    size: usize,
}

/// Bounded pool of shares waiting for a missing dependency.
#[derive(Clone, Debug)]
pub struct OrphanPool {
    max_count: usize,
    max_bytes: usize,
    bytes: usize,
    next_seq: u64,
    held: HashMap<ShareHash, Parked>,
    /// What is missing -> the shares waiting for it.
    waiting: HashMap<ShareHash, Vec<ShareHash>>,
    by_worth: BTreeSet<Worth>,
}

impl OrphanPool {
    /// A pool of at most `capacity` shares and [`ORPHAN_MAX_BYTES`] bytes.
    pub fn new(capacity: usize) -> Self {
        OrphanPool::with_limits(capacity, ORPHAN_MAX_BYTES)
    }

    pub fn with_limits(max_count: usize, max_bytes: usize) -> Self {
        OrphanPool {
            max_count: max_count.max(1),
            max_bytes,
            bytes: 0,
            next_seq: 0,
            held: HashMap::new(),
            waiting: HashMap::new(),
            by_worth: BTreeSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Bytes held (canonical encodings).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, hash: &ShareHash) -> bool {
        self.held.contains_key(hash)
    }

    /// What the pool is waiting for (to ask peers for).
    pub fn missing(&self) -> impl Iterator<Item = &ShareHash> {
        self.waiting.keys()
    }

    /// Parks `share`, whose share target is worth `work`, until `missing` arrives. Returns
    /// false if it was already held, or if the pool is full of shares worth more.
    pub fn insert(&mut self, share: Share, missing: ShareHash, work: Work) -> bool {
        let hash = share.hash();
        let size = share.encode().len();
        if self.held.contains_key(&hash) || size > self.max_bytes {
            return false;
        }
        let worth = (work, Reverse(self.next_seq), hash);
        // Who would make room, least worth first; none if the newcomer is worth least (then
        // it is the one that goes, and nothing held is disturbed).
        let (mut count, mut bytes) = (self.held.len() + 1, self.bytes + size);
        let mut evict = Vec::new();
        for least in self.by_worth.iter() {
            if count <= self.max_count && bytes <= self.max_bytes {
                break;
            }
            if *least > worth {
                return false;
            }
            count -= 1;
            bytes -= self.held.get(&least.2).map_or(0, |p| p.size);
            evict.push(least.2);
        }
        for hash in &evict {
            self.remove(hash);
        }
        self.next_seq += 1;
        self.bytes += size;
        self.by_worth.insert(worth);
        self.waiting.entry(missing).or_default().push(hash);
        self.held.insert(
            hash,
            Parked {
                share,
                missing,
                worth,
                size,
            },
        );
        true
    }

    /// Empties the pool, returning every share it held.
    pub fn take_all(&mut self) -> Vec<Share> {
        self.waiting.clear();
        self.by_worth.clear();
        self.bytes = 0;
        self.held.drain().map(|(_, p)| p.share).collect()
    }

    /// Takes every share that was waiting for `arrived`, in arrival order.
    pub fn take_waiting_for(&mut self, arrived: &ShareHash) -> Vec<Share> {
        let Some(list) = self.waiting.remove(arrived) else {
            return Vec::new();
        };
        list.into_iter()
            .filter_map(|hash| self.detach(&hash))
            .collect()
    }

    /// Drops a held share.
    fn remove(&mut self, hash: &ShareHash) {
        let Some(missing) = self.held.get(hash).map(|p| p.missing) else {
            return;
        };
        if let Some(list) = self.waiting.get_mut(&missing) {
            list.retain(|h| h != hash);
            if list.is_empty() {
                self.waiting.remove(&missing);
            }
        }
        self.detach(hash);
    }

    /// Takes a held share out of everything but `waiting`.
    fn detach(&mut self, hash: &ShareHash) -> Option<Share> {
        let parked = self.held.remove(hash)?;
        self.by_worth.remove(&parked.worth);
        self.bytes -= parked.size;
        Some(parked.share)
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
        assert!(pool.insert(share(1), missing, Work(5)));
        assert!(!pool.insert(share(1), missing, Work(5)));
        assert!(pool.insert(share(2), missing, Work(5)));
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.bytes(), 2 * share(1).encode().len());
        let back = pool.take_waiting_for(&missing);
        assert_eq!(back, vec![share(1), share(2)]);
        assert!(pool.is_empty());
        assert_eq!(pool.bytes(), 0);
        assert!(pool.take_waiting_for(&missing).is_empty());
    }

    #[test]
    fn when_full_the_least_work_goes_and_the_newest_among_equals() {
        let mut pool = OrphanPool::new(3);
        for n in 0..3 {
            assert!(pool.insert(share(n), ShareHash([n as u8; 32]), Work(10)));
        }
        // Equal work: the newcomer is refused, nothing held is pushed out.
        for n in 3..20 {
            assert!(!pool.insert(share(n), ShareHash([n as u8; 32]), Work(10)));
        }
        assert!((0..3).all(|n| pool.contains(&share(n).hash())));
        // More work: the newest of the least-work shares makes room.
        assert!(pool.insert(share(20), ShareHash([20; 32]), Work(11)));
        assert!(!pool.contains(&share(2).hash()));
        assert!(pool.contains(&share(0).hash()) && pool.contains(&share(1).hash()));
        assert_eq!(pool.missing().count(), 3);
        assert!(!pool.missing().any(|m| *m == ShareHash([2; 32])));
    }

    #[test]
    fn bytes_are_bounded() {
        let size = share(0).encode().len();
        let mut pool = OrphanPool::with_limits(100, 2 * size + size / 2);
        assert!(pool.insert(share(0), ShareHash([1; 32]), Work(1)));
        assert!(pool.insert(share(1), ShareHash([1; 32]), Work(2)));
        assert!(pool.insert(share(2), ShareHash([1; 32]), Work(3)));
        assert_eq!(pool.len(), 2);
        assert!(pool.bytes() <= 2 * size + size / 2);
        assert!(!pool.contains(&share(0).hash()));
        assert_eq!(pool.take_waiting_for(&ShareHash([1; 32])).len(), 2);
        assert_eq!(pool.bytes(), 0);
    }
}
