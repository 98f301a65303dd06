//! The share chain as a node keeps it: the in-memory [`ChainIndex`] backed by the
//! [`ShareStore`], so every connected share is on disk before `connect` returns and a
//! restarted node resumes on the same tip without downloading or re-validating anything.
//!
//! Loading trusts the store (its shares were validated when they connected): records are
//! re-inserted in first-seen order with their stored height and chain work, which restores
//! the same best tip. Every uncle a restored share names must be restored before it, except
//! for shares within `uncle_depth` of the lowest stored height (their uncles may have been
//! pruned); a missing one is an error naming the share, since its weight, and every window
//! and retarget that reads it, would be wrong. Shares deeper than the window plus a margin
//! are pruned from memory and disk as the chain grows.

use std::path::Path;

use thiserror::Error;
use tracing::{info, warn};

use crate::chain::{ChainEntry, ChainIndex};
use crate::hash::ShareHash;
use crate::join::{JoinError, Joined, PeerChain};
use crate::params::Preset;
use crate::share::Share;
use crate::store::{ShareStore, StoreError, StoredShare};
use crate::target::Work;
use crate::validation::{Connected, ShareError};

/// Connects between two prunings.
const PRUNE_EVERY: u64 = 64;
const NETWORK_ID_KEY: &str = "network_id";

/// Why the chain could not be opened or a share not connected.
#[derive(Debug, Error)]
pub enum ChainError {
    #[error(transparent)]
    Invalid(#[from] ShareError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error(
        "the share store belongs to network {found}, not {expected}; use another data directory"
    )]
    WrongNetwork { expected: String, found: String },
    #[error(
        "stored share {share} names uncle {uncle}, which the store does not hold; \
         the store is damaged: move the data directory's shares away to sync again"
    )]
    MissingUncle { share: ShareHash, uncle: ShareHash },
}

/// What opening the store found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub loaded: usize,
    pub corrupt: usize,
}

/// The persistent share chain.
pub struct ShareChain {
    index: ChainIndex,
    store: ShareStore,
    prune_depth: u64,
    connects_since_prune: u64,
}

impl ShareChain {
    /// How deep below the best tip shares are kept: the window, the retarget and time
    /// look-backs, uncles on both sides, and a margin.
    pub fn prune_depth(preset: &Preset) -> u64 {
        let c = &preset.consensus;
        u64::from(c.window_shares)
            + u64::from(c.retarget_window)
            + 2 * u64::from(c.uncle_depth)
            + 16
    }

    /// Opens (or creates) the store in `dir` and restores the chain from it.
    pub fn open(dir: &Path, preset: &Preset) -> Result<(ShareChain, LoadReport), ChainError> {
        let mut store = ShareStore::open(dir)?;
        let id = preset.network_id();
        match store.get_meta(NETWORK_ID_KEY)? {
            Some(found) if found != id.0 => {
                return Err(ChainError::WrongNetwork {
                    expected: id.to_string(),
                    found: hex::encode(found),
                })
            }
            Some(_) => {}
            None => store.put_meta(NETWORK_ID_KEY, &id.0)?,
        }
        let loaded = store.load_all()?;
        if loaded.corrupt > 0 {
            warn!(corrupt = loaded.corrupt, "skipped unreadable share records");
        }
        let mut index = ChainIndex::new(preset);
        let report = LoadReport {
            loaded: loaded.records.len(),
            corrupt: loaded.corrupt,
        };
        let lowest = loaded.records.iter().map(|r| r.height).min().unwrap_or(0);
        let pruned_below = lowest.saturating_add(u64::from(preset.consensus.uncle_depth));
        for record in loaded.records {
            let credits = if record.height < pruned_below {
                index.credits_from_held(&record.share.info)
            } else {
                index
                    .credits_for(&record.share.info)
                    .map_err(|uncle| ChainError::MissingUncle {
                        share: record.share.hash(),
                        uncle,
                    })?
            };
            index.insert(
                record.share,
                credits,
                Some((record.seq, record.height, record.chain_work)),
            );
        }
        if let Some(best) = index.best() {
            info!(
                shares = report.loaded,
                tip = %best.hash,
                height = best.height,
                "share chain restored"
            );
        }
        Ok((
            ShareChain {
                index,
                store,
                prune_depth: Self::prune_depth(preset),
                connects_since_prune: 0,
            },
            report,
        ))
    }

    pub fn index(&self) -> &ChainIndex {
        &self.index
    }

    /// The index, for building templates (which update its window cache).
    pub fn index_mut(&mut self) -> &mut ChainIndex {
        &mut self.index
    }

    /// Validates and connects `share` (and any orphans it unblocks), persisting every
    /// connected share before returning.
    pub fn connect(&mut self, share: Share, now: u64) -> Result<Connected, ChainError> {
        let connected = self.index.connect(share, now)?;
        let records: Vec<StoredShare> = connected.entries.iter().map(record).collect();
        self.store.put_batch(&records)?;
        self.connects_since_prune += records.len() as u64;
        if self.connects_since_prune >= PRUNE_EVERY {
            self.prune()?;
        }
        Ok(connected)
    }

    /// Connects `shares` in order, each as [`ShareChain::connect`] would, but persists
    /// everything connected in one durable write at the end: a sync batch costs one
    /// `fdatasync`, not one per share. Returns each share's outcome, or the store's error
    /// (then nothing of the batch is on disk; it is fetched again after a restart).
    pub fn connect_batch(
        &mut self,
        shares: Vec<Share>,
        now: u64,
    ) -> Result<Vec<Result<Connected, ShareError>>, ChainError> {
        let mut records = Vec::new();
        let outcomes: Vec<Result<Connected, ShareError>> = shares
            .into_iter()
            .map(|share| {
                let outcome = self.index.connect(share, now);
                if let Ok(connected) = &outcome {
                    records.extend(connected.entries.iter().map(record));
                }
                outcome
            })
            .collect();
        self.store.put_batch(&records)?;
        self.connects_since_prune += records.len() as u64;
        if self.connects_since_prune >= PRUNE_EVERY {
            self.prune()?;
        }
        Ok(outcomes)
    }

    /// Joins a peer's chain that does not build on ours (see [`crate::join`]) if it has at
    /// least `min_recent_work` recent work (and more than ours): on success the joined
    /// chain replaces ours in memory and on disk, in one atomic write, and the orphans we
    /// held are tried on it.
    pub fn join(
        &mut self,
        peer: PeerChain,
        now: u64,
        min_recent_work: Work,
    ) -> Result<Joined, ChainError> {
        let (mut joined, report) = self.index.join(peer, now, min_recent_work)?;
        let mut entries: Vec<&ChainEntry> = joined.entries().collect();
        entries.sort_by_key(|e| e.seq);
        let records: Vec<StoredShare> = entries.into_iter().map(record).collect();
        let old: Vec<_> = self.index.entries().map(|e| e.hash).collect();
        self.store.replace(&old, &records)?;
        let orphans = self.index.orphans.take_all();
        std::mem::swap(&mut self.index, &mut joined);
        info!(
            base = report.base,
            validated = report.validated,
            tip = %report.tip,
            replaced = old.len(),
            "joined the network's share chain"
        );
        for orphan in orphans {
            // Most are already in the joined chain; the rest wait or fail as usual.
            let _ = self.connect(orphan, now);
        }
        Ok(report)
    }

    /// Drops shares too deep to matter, from memory and disk. Returns how many.
    pub fn prune(&mut self) -> Result<usize, ChainError> {
        self.connects_since_prune = 0;
        let gone = self.index.prune(self.prune_depth);
        if !gone.is_empty() {
            self.store.remove(&gone)?;
        }
        Ok(gone.len())
    }
}

fn record(e: &ChainEntry) -> StoredShare {
    StoredShare {
        seq: e.seq,
        height: e.height,
        chain_work: e.chain_work,
        share: (*e.share).clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{block_context, grow_chain, mine_share, miner, regtest_preset, served};

    const T0: u32 = 1_700_000_000;

    #[test]
    fn a_restart_resumes_on_the_same_tip_with_the_same_payouts() {
        let dir = tempfile::tempdir().unwrap();
        let preset = regtest_preset("[consensus]\nwindow_shares = 30\n");
        let (mut chain, report) = ShareChain::open(dir.path(), &preset).unwrap();
        assert_eq!(report, LoadReport::default());
        // Mine on a scratch index, connect through the persistent chain.
        let mut scratch = ChainIndex::new(&preset);
        let shares = grow_chain(&mut scratch, 200, 4, T0);
        for s in &shares {
            chain.connect(s.clone(), u64::from(T0) + 100_000).unwrap();
        }
        let tip = chain.index().best_hash();
        let payouts = chain
            .index_mut()
            .share_template(&miner(9), block_context(1_000_000_000))
            .unwrap()
            .payouts;
        let kept = chain.index().len();
        assert!((72..200).contains(&kept), "pruned to {kept}");
        drop(chain);

        let (mut again, report) = ShareChain::open(dir.path(), &preset).unwrap();
        assert_eq!(report.corrupt, 0);
        assert_eq!(report.loaded, kept);
        assert_eq!(again.index().best_hash(), tip);
        let again_payouts = again
            .index_mut()
            .share_template(&miner(9), block_context(1_000_000_000))
            .unwrap()
            .payouts;
        assert_eq!(again_payouts, payouts);
    }

    #[test]
    fn a_joined_chain_replaces_ours_and_survives_a_restart() {
        let preset = regtest_preset("[consensus]\nwindow_shares = 20\n");
        let peer_dir = tempfile::tempdir().unwrap();
        let (mut peer, _) = ShareChain::open(peer_dir.path(), &preset).unwrap();
        let mut scratch = ChainIndex::new(&preset);
        let shares = grow_chain(&mut scratch, 200, 4, T0);
        let now = u64::from(shares[199].header.time) + 10;
        for s in &shares {
            peer.connect(s.clone(), now).unwrap();
        }
        assert!(!peer.index().contains(&shares[0].hash()), "the peer pruned");

        // A node that mined a few shares alone before it found the network.
        let dir = tempfile::tempdir().unwrap();
        let (mut node, _) = ShareChain::open(dir.path(), &preset).unwrap();
        let mut lone = ChainIndex::new(&preset);
        for s in grow_chain(&mut lone, 3, 1, T0 + 390) {
            node.connect(s, now).unwrap();
        }
        // A share of the network's that arrived early waits as an orphan meanwhile.
        let ahead = mine_share(&mut scratch, Some(shares[199].hash()), &miner(8), T0 + 402);
        assert!(node.connect(ahead.clone(), now).is_err());

        let report = node.join(served(peer.index()), now, Work::ZERO).unwrap();
        assert_eq!(report.base + report.validated, peer.index().len());
        // The orphan connected on the joined chain.
        assert_eq!(node.index().best_hash(), Some(ahead.hash()));
        peer.connect(ahead, now).unwrap();
        let payouts = |c: &mut ShareChain| {
            c.index_mut()
                .share_template(&miner(9), block_context(1_000_000_000))
                .unwrap()
                .payouts
        };
        let expected = payouts(&mut peer);
        assert_eq!(payouts(&mut node), expected);
        drop(node);

        let (mut again, report) = ShareChain::open(dir.path(), &preset).unwrap();
        assert_eq!(report.loaded, again.index().len());
        assert_eq!(again.index().best_hash(), peer.index().best_hash());
        assert_eq!(payouts(&mut again), expected);
    }

    #[test]
    fn a_batch_connects_like_single_shares_and_is_stored() {
        let preset = regtest_preset("[consensus]\nwindow_shares = 30\n");
        let mut scratch = ChainIndex::new(&preset);
        let shares = grow_chain(&mut scratch, 100, 3, T0);
        let now = u64::from(T0) + 100_000;
        let dir = tempfile::tempdir().unwrap();
        let (mut chain, _) = ShareChain::open(dir.path(), &preset).unwrap();
        let mut batch = shares.clone();
        batch.swap(10, 11); // share 11 waits for share 10, which follows it
        let mut forged = shares[50].clone();
        forged.coinbase.value += 1;
        batch.insert(50, forged);
        batch.push(shares[3].clone());
        let outcomes = chain.connect_batch(batch, now).unwrap();
        assert_eq!(outcomes.len(), 102);
        assert!(matches!(outcomes[10], Err(ShareError::UnknownParent(_))));
        assert_eq!(outcomes[11].as_ref().unwrap().entries.len(), 2);
        assert!(matches!(outcomes[50], Err(ShareError::MerkleRootMismatch)));
        assert!(matches!(outcomes[101], Err(ShareError::Duplicate(_))));
        let tip = chain.index().best_hash();
        assert_eq!(tip, Some(shares[99].hash()));
        let kept = chain.index().len();
        drop(chain);
        let (again, report) = ShareChain::open(dir.path(), &preset).unwrap();
        assert_eq!(report.loaded, kept);
        assert_eq!(again.index().best_hash(), tip);
    }

    /// A chain with an uncle every few shares, mined on a scratch index.
    fn chain_with_uncles(preset: &Preset, n: usize) -> Vec<Share> {
        let mut scratch = ChainIndex::new(preset);
        let mut out = Vec::new();
        for i in 0..n as u32 {
            let parent = scratch.best_hash();
            let time = T0 + 4 * i + 2;
            if i % 4 == 1 {
                let side = mine_share(&mut scratch, parent, &miner(50), time);
                scratch.connect(side.clone(), u64::from(time)).unwrap();
                out.push(side);
            }
            let share = mine_share(&mut scratch, parent, &miner(i % 3), time + 1);
            scratch.connect(share.clone(), u64::from(time) + 1).unwrap();
            out.push(share);
        }
        out
    }

    #[test]
    fn a_stored_share_whose_uncle_is_missing_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let preset = regtest_preset("[consensus]\nwindow_shares = 30\n");
        let shares = chain_with_uncles(&preset, 20);
        {
            let (mut chain, _) = ShareChain::open(dir.path(), &preset).unwrap();
            for s in &shares {
                chain.connect(s.clone(), u64::from(T0) + 100_000).unwrap();
            }
        }
        let nephew = shares
            .iter()
            .rev()
            .find(|s| !s.info.uncles.is_empty())
            .unwrap();
        let uncle = nephew.info.uncles[0];
        ShareStore::open(dir.path())
            .unwrap()
            .remove(&[uncle])
            .unwrap();
        match ShareChain::open(dir.path(), &preset) {
            Err(ChainError::MissingUncle { share, uncle: u }) => {
                assert_eq!((share, u), (nephew.hash(), uncle));
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("restored with a missing uncle"),
        }
    }

    #[test]
    fn a_pruned_store_restores_though_its_lowest_shares_miss_uncles() {
        let dir = tempfile::tempdir().unwrap();
        let preset = regtest_preset("[consensus]\nwindow_shares = 20\n");
        let shares = chain_with_uncles(&preset, 120);
        let tip = {
            let (mut chain, _) = ShareChain::open(dir.path(), &preset).unwrap();
            for s in &shares {
                chain.connect(s.clone(), u64::from(T0) + 100_000).unwrap();
            }
            chain.prune().unwrap();
            chain.index().best_hash()
        };
        let (again, _) = ShareChain::open(dir.path(), &preset).unwrap();
        assert_eq!(again.index().best_hash(), tip);
    }

    #[test]
    fn a_new_chain_offered_to_a_node_with_one_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let preset = regtest_preset("");
        let (mut chain, _) = ShareChain::open(dir.path(), &preset).unwrap();
        let mut scratch = ChainIndex::new(&preset);
        let ours = grow_chain(&mut scratch, 2, 1, T0);
        let mut other = ChainIndex::new(&preset);
        let root = grow_chain(&mut other, 1, 1, T0 + 9).remove(0);
        let now = u64::from(T0) + 1000;
        chain.connect_batch(ours, now).unwrap();
        assert!(matches!(
            chain.connect(root.clone(), now),
            Err(ChainError::Invalid(ShareError::RootRefused(_)))
        ));
        drop(chain);
        let (again, report) = ShareChain::open(dir.path(), &preset).unwrap();
        assert_eq!(report.loaded, 2);
        assert!(!again.index().knows(&root.hash()));
    }

    #[test]
    fn a_store_of_another_network_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let regtest = regtest_preset("");
        drop(ShareChain::open(dir.path(), &regtest).unwrap());
        let testnet = Preset::builtin("litecoin-testnet").unwrap();
        assert!(matches!(
            ShareChain::open(dir.path(), &testnet),
            Err(ChainError::WrongNetwork { .. })
        ));
    }

    #[test]
    fn invalid_shares_are_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let preset = regtest_preset("");
        let (mut chain, _) = ShareChain::open(dir.path(), &preset).unwrap();
        let mut scratch = ChainIndex::new(&preset);
        let mut shares = grow_chain(&mut scratch, 2, 1, T0);
        shares[1].coinbase.value += 1;
        chain
            .connect(shares[0].clone(), u64::from(T0) + 1000)
            .unwrap();
        assert!(chain
            .connect(shares[1].clone(), u64::from(T0) + 1000)
            .is_err());
        drop(chain);
        let (_, report) = ShareChain::open(dir.path(), &preset).unwrap();
        assert_eq!(report.loaded, 1);
    }
}
