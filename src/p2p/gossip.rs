//! Received shares, judged: each is decoded and connected through the chain thread, and
//! what that came to becomes the gossip verdict (accept and forward, ignore, or reject and
//! charge the sender). Sync batches and by-hash fetches go through the same connection, so
//! a share is judged alike however it arrives.

use p2pool_network::{Misbehaviour, Verdict};
use share_chain::sharechain::ChainError;
use share_chain::{Share, ShareHash};
use tracing::{debug, info, warn};

use super::now_secs;
use crate::chain_service::ChainHandle;

/// What connecting a received share came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Connected, with this many shares (itself and the orphans it unblocked).
    Connected(usize),
    Duplicate,
    Orphan,
    /// A chain's first share, and we hold a chain: only a join replaces it.
    RootRefused,
    /// Not valid now but not the sender's fault (a timestamp ahead of our clock).
    Unripe,
    Invalid,
    Garbage,
    /// The chain thread is gone or its store failed.
    Unavailable,
}

pub(super) async fn connect_bytes(chain: &ChainHandle, data: Vec<u8>) -> Outcome {
    match Share::decode(&data) {
        Ok(share) => connect_share(chain, share).await,
        Err(e) => {
            debug!(error = %e, "undecodable share");
            Outcome::Garbage
        }
    }
}

pub(super) async fn connect_share(chain: &ChainHandle, share: Share) -> Outcome {
    let hash = share.hash();
    match chain.call(move |c| c.connect(share, now_secs())).await {
        Ok(result) => outcome(hash, result),
        Err(_) => Outcome::Unavailable,
    }
}

/// Connects a sync batch with one durable write; each share's outcome.
pub(super) async fn connect_batch(chain: &ChainHandle, shares: Vec<Share>) -> Vec<Outcome> {
    let hashes: Vec<ShareHash> = shares.iter().map(Share::hash).collect();
    match chain
        .call(move |c| c.connect_batch(shares, now_secs()))
        .await
    {
        Ok(Ok(results)) => hashes
            .into_iter()
            .zip(results)
            .map(|(hash, r)| outcome(hash, r.map_err(ChainError::Invalid)))
            .collect(),
        Ok(Err(e)) => {
            warn!(error = %e, "cannot store shares");
            vec![Outcome::Unavailable]
        }
        Err(_) => vec![Outcome::Unavailable],
    }
}

fn outcome(
    hash: ShareHash,
    result: Result<share_chain::validation::Connected, ChainError>,
) -> Outcome {
    match result {
        Ok(connected) => {
            for (h, e) in &connected.rejected {
                debug!(share = %h, error = %e, "a waiting orphan turned out invalid");
            }
            Outcome::Connected(connected.entries.len())
        }
        Err(ChainError::Invalid(e)) => {
            if e.is_orphan() {
                Outcome::Orphan
            } else if matches!(e, share_chain::validation::ShareError::RootRefused(_)) {
                debug!(share = %hash, "a chain's first share, and we hold a chain");
                Outcome::RootRefused
            } else if e.is_punishable() {
                info!(share = %hash, error = %e, "invalid share from a peer");
                Outcome::Invalid
            } else if matches!(e, share_chain::validation::ShareError::Duplicate(_)) {
                Outcome::Duplicate
            } else {
                Outcome::Unripe
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot store a share");
            Outcome::Unavailable
        }
    }
}

/// The verdict on a gossiped share, and whether it is an orphan (ask for history).
pub(super) async fn judge_gossip(chain: &ChainHandle, data: Vec<u8>) -> (Verdict, bool) {
    match connect_bytes(chain, data).await {
        Outcome::Connected(_) => (Verdict::Accept, false),
        Outcome::Orphan => (Verdict::Ignore, true),
        Outcome::Duplicate | Outcome::Unripe | Outcome::Unavailable => (Verdict::Ignore, false),
        Outcome::Invalid => (Verdict::Reject(Misbehaviour::InvalidShare), false),
        // Not forwarded; the sender's own chain reaches us by a join if it has more work.
        Outcome::RootRefused => (Verdict::Reject(Misbehaviour::RefusedRoot), false),
        Outcome::Garbage => (Verdict::Reject(Misbehaviour::Garbage), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain_service::ChainHandle;
    use share_chain::chain::ChainIndex;
    use share_chain::testkit::{grow_chain, mine_share, miner, regtest_preset};

    #[tokio::test]
    async fn gossip_verdicts_follow_the_chain() {
        let preset = regtest_preset("[consensus]\nwindow_shares = 20\n");
        let mut scratch = ChainIndex::new(&preset);
        let shares = grow_chain(&mut scratch, 4, 3, 1_700_000_000);
        let dir = tempfile::tempdir().unwrap();
        let (handle, _) = ChainHandle::open(dir.path().to_path_buf(), preset.clone()).unwrap();

        let garbage = judge_gossip(&handle, vec![0xff; 7]).await;
        assert_eq!(garbage, (Verdict::Reject(Misbehaviour::Garbage), false));
        let first = judge_gossip(&handle, shares[0].encode()).await;
        assert_eq!(first, (Verdict::Accept, false));
        let again = judge_gossip(&handle, shares[0].encode()).await;
        assert_eq!(again, (Verdict::Ignore, false));
        // Its parent is missing: ignored (not the peer's fault), and history is wanted.
        let orphan = judge_gossip(&handle, shares[2].encode()).await;
        assert_eq!(orphan, (Verdict::Ignore, true));
        // A tampered share breaks its own commitment: rejected and charged.
        let mut forged = shares[1].clone();
        forged.info.payout_script = share_chain::script::UNSPENDABLE_SCRIPT.to_vec();
        let forged = judge_gossip(&handle, forged.encode()).await;
        assert_eq!(forged, (Verdict::Reject(Misbehaviour::InvalidShare), false));
        // The missing parent arrives: it connects and unblocks the orphan.
        assert_eq!(
            connect_bytes(&handle, shares[1].encode()).await,
            Outcome::Connected(2)
        );
        let tip = handle.call(|c| c.index().best_hash()).await.unwrap();
        assert_eq!(tip, Some(shares[2].hash()));
        // Another chain's first share: refused, charged mildly, not forwarded.
        let mut other = ChainIndex::new(&preset);
        let root = mine_share(&mut other, None, &miner(9), 1_700_000_100);
        assert_eq!(
            judge_gossip(&handle, root.encode()).await,
            (Verdict::Reject(Misbehaviour::RefusedRoot), false)
        );
        let tip = handle.call(|c| c.index().best_hash()).await.unwrap();
        assert_eq!(tip, Some(shares[2].hash()));

        // A share whose Dogecoin block pays its own miner alone (docs/PROTOCOL.md §15):
        // otherwise valid, proof of work and all, it is rejected and its sender charged.
        let greedy = share_chain::testkit::greedy_aux_share(
            &mut scratch,
            shares[2].hash(),
            &miner(1),
            1_700_000_500,
        );
        assert_eq!(
            judge_gossip(&handle, greedy.encode()).await,
            (Verdict::Reject(Misbehaviour::InvalidShare), false)
        );
        let tip = handle.call(|c| c.index().best_hash()).await.unwrap();
        assert_eq!(tip, Some(shares[2].hash()));
    }
}
