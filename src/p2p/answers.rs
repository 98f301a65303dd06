//! Our answers to peers' sync requests: our tip, the shares of our best chain after a
//! locator (from the best chain's height index, `share_chain::locator`), and any share we
//! hold by hash. Pure functions of the chain index, run on the chain thread.

use p2pool_network::{SyncRequest, SyncResponse, TipInfo, Work};
use share_chain::chain::ChainIndex;
use share_chain::locator::shares_after;

/// Our answer to a peer's sync request.
pub(super) fn answer_request(index: &ChainIndex, request: SyncRequest) -> SyncResponse {
    match request {
        SyncRequest::GetTip => SyncResponse::Tip(index.best().map(|b| TipInfo {
            hash: b.hash,
            height: b.height,
            chain_work: Work(b.chain_work),
        })),
        SyncRequest::GetShares { locator, stop, max } => {
            SyncResponse::Shares(shares_after(index, &locator, stop, max))
        }
        SyncRequest::GetSharesByHash { hashes } => SyncResponse::Shares(
            hashes
                .iter()
                .filter_map(|h| index.get(h))
                .map(|e| e.share.encode())
                .collect(),
        ),
    }
}
