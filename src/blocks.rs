//! The blocks the share chain found, whichever node found them, with their payouts and
//! their fate on their chain's daemon (`pending`, `immature`, `mature`, `orphaned`): the
//! parent chain's (litecoind) and, with merged mining, each aux chain's (dogecoind).
//!
//! Every node sees every share of the network, and a share whose proof of work meets the
//! block target in its own header is a block: so the list is the same on every node, not
//! only what this node's miners found. The same holds for the aux blocks a share carries
//! (docs/PROTOCOL.md §15): one whose target the share's proof of work meets is an aux
//! block, its coinbase rebuilt from the share chain. [`track`] scans each newly connected
//! share once (the hash off the chain thread), records each block with the coinbase
//! outputs the share chain prescribes for it, and follows each unsettled block through its
//! daemon's `getblockheader`. An aux block this node's miners found with a proof of work
//! below the share target is in no share: the node records it when its daemon accepts it
//! ([`FoundBlocks::record_submitted`]), as only this node can.
//!
//! Persistence: an append-only JSON lines file (`found_blocks.jsonl` in the datadir), one
//! record per block and per status change, the last record of a hash winning, rewritten
//! compactly when it holds far more lines than blocks. Why not the share store: it is
//! LevelDB owned by the consensus core and pruned with the window, while this list must
//! outlive the window; blocks are rare, so a small human-readable file is enough, and a
//! torn last line (a crash mid-append) is skipped on load. At most [`MAX_BLOCKS`] blocks
//! are kept (the newest), so the file and memory stay bounded.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use share_chain::address::{aux_script_to_address, script_to_address};
use share_chain::aux_work::aux_block_parts;
use share_chain::coinbase::Payout;
use share_chain::params::AuxChainParams;
use share_chain::pow::pow_hash;
use share_chain::target::Target;
use share_chain::{CoinParams, Preset, ShareHash};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::chain_service::{ChainHandle, ChainSummary};
use crate::daemon::aux::AuxDaemon;
use crate::daemon::rpc::{RpcClient, RpcError};

/// Most blocks kept (a block's record holds up to `max_payout_outputs` payouts).
pub const MAX_BLOCKS: usize = 2_000;
/// Most shares hashed per scan, so a restart with a full store does not stall the scan.
const SCAN_BATCH: usize = 4_096;
/// How often unsettled blocks are checked against litecoind.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// Unsettled blocks checked per round (the newest).
const STATUS_CHECKS: usize = 200;
/// The file name under the datadir.
pub const FILE_NAME: &str = "found_blocks.jsonl";

/// Where a found block stands on its chain's daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockStatus {
    /// Its daemon does not know it (yet, or never: another node's daemon lost it).
    Pending,
    /// On the best block chain, not yet spendable.
    Immature,
    /// On the best block chain, at least the coin's maturity deep.
    Mature,
    /// Known to its daemon but off its best chain.
    Orphaned,
}

/// One output the share chain prescribes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidOutput {
    /// The address, or the script in hex when it has no address.
    pub address: String,
    pub amount: u64,
}

/// One block found by the share chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundBlock {
    /// The aux chain it belongs to (merged mining); `None` for the parent chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux_chain: Option<String>,
    /// Block hash (display order); a parent-chain block's is its share's hash.
    pub hash: String,
    /// For an aux block: the parent-chain header whose proof of work it carries (display
    /// order), a share's hash when it came from a share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_header: Option<String>,
    /// Block height from the coinbase's BIP34 push (`None` if it has none), or its daemon's.
    pub height: Option<u64>,
    /// The finder's address on the block's chain (`none` when it has none there).
    pub finder: String,
    /// The header's time.
    pub time: u32,
    /// The coinbase value.
    pub value: u64,
    pub payouts: Vec<PaidOutput>,
    pub status: BlockStatus,
    /// Confirmations on litecoind at the last check (0 when pending or orphaned).
    pub confirmations: u64,
    /// When this node first saw it (unix seconds).
    pub seen: u64,
}

impl FoundBlock {
    /// The API's view; `parent_chain` names the chain of blocks that are not aux blocks.
    pub fn to_json(&self, parent_chain: &str) -> Value {
        json!({
            "chain": self.aux_chain.as_deref().unwrap_or(parent_chain),
            "hash": self.hash,
            "parent_header": self.parent_header,
            "height": self.height,
            "finder": self.finder,
            "time": self.time,
            "value": self.value,
            "payouts": self.payouts,
            "status": self.status,
            "confirmations": self.confirmations,
            "seen": self.seen,
        })
    }
}

#[derive(Default)]
struct State {
    /// Oldest first.
    blocks: Vec<FoundBlock>,
    /// Shares with a sequence number above this were not scanned yet.
    scanned_seq: Option<u64>,
    lines: usize,
}

/// The list, shared by the tracker and the API.
pub struct FoundBlocks {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl FoundBlocks {
    /// A list kept in memory only.
    pub fn in_memory() -> FoundBlocks {
        FoundBlocks {
            path: None,
            state: Mutex::new(State::default()),
        }
    }

    /// Loads the list from `datadir` (an absent file is an empty list; unreadable lines
    /// are skipped with a warning).
    pub fn open(datadir: &Path) -> std::io::Result<FoundBlocks> {
        fs::create_dir_all(datadir)?;
        let path = datadir.join(FILE_NAME);
        let mut state = State::default();
        match File::open(&path) {
            Ok(file) => {
                let mut skipped = 0;
                for line in BufReader::new(file).lines() {
                    let line = line?;
                    state.lines += 1;
                    match serde_json::from_str::<FoundBlock>(&line) {
                        Ok(block) => upsert(&mut state.blocks, block),
                        Err(_) => skipped += 1,
                    }
                }
                if skipped > 0 {
                    warn!(skipped, file = %path.display(), "unreadable found-block lines skipped");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let blocks = FoundBlocks {
            path: Some(path),
            state: Mutex::new(state),
        };
        blocks.compact_if_needed(&mut lock(&blocks.state));
        Ok(blocks)
    }

    /// The newest `count` blocks, newest first.
    pub fn newest(&self, count: usize) -> Vec<FoundBlock> {
        let state = lock(&self.state);
        state.blocks.iter().rev().take(count).cloned().collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.state).blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Blocks by aux chain (`None`: the parent chain) and status, for the metrics.
    pub fn count_by_status(&self) -> HashMap<(Option<String>, BlockStatus), usize> {
        let mut counts = HashMap::new();
        for b in &lock(&self.state).blocks {
            *counts.entry((b.aux_chain.clone(), b.status)).or_default() += 1;
        }
        counts
    }

    /// Records an aux block this node's daemon accepted, unless the list has it already
    /// (from the share that carries it): `hash` and `parent_header` in display order.
    pub fn record_submitted(&self, block: FoundBlock) {
        if !self.contains(&block.hash) {
            info!(chain = block.aux_chain.as_deref().unwrap_or(""), block = %block.hash, "recorded an aux block this node found");
            self.record(block);
        }
    }

    /// Adds or updates a block (persisted before it is visible).
    pub fn record(&self, block: FoundBlock) {
        let mut state = lock(&self.state);
        if state.blocks.contains(&block) {
            return;
        }
        self.append(&mut state, &block);
        upsert(&mut state.blocks, block);
        self.compact_if_needed(&mut state);
    }

    fn append(&self, state: &mut State, block: &FoundBlock) {
        let Some(path) = &self.path else { return };
        let line = match serde_json::to_string(block) {
            Ok(line) => line,
            Err(e) => return warn!(error = %e, "cannot encode a found block"),
        };
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{line}"));
        match written {
            Ok(()) => state.lines += 1,
            Err(e) => warn!(error = %e, file = %path.display(), "cannot save a found block"),
        }
    }

    /// Keeps the newest [`MAX_BLOCKS`] and rewrites the file once it holds more than
    /// twice as many lines as blocks.
    fn compact_if_needed(&self, state: &mut State) {
        if state.blocks.len() > MAX_BLOCKS {
            let excess = state.blocks.len() - MAX_BLOCKS;
            state.blocks.drain(..excess);
        }
        let Some(path) = &self.path else { return };
        if state.lines <= 2 * state.blocks.len() + 64 {
            return;
        }
        let tmp = path.with_extension("jsonl.tmp");
        let result = (|| -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            for b in &state.blocks {
                let line = serde_json::to_string(b).map_err(std::io::Error::other)?;
                writeln!(f, "{line}")?;
            }
            f.sync_all()?;
            fs::rename(&tmp, path)
        })();
        match result {
            Ok(()) => state.lines = state.blocks.len(),
            Err(e) => warn!(error = %e, file = %path.display(), "cannot compact the found blocks"),
        }
    }

    fn scanned_seq(&self) -> Option<u64> {
        lock(&self.state).scanned_seq
    }

    fn set_scanned_seq(&self, seq: u64) {
        let mut state = lock(&self.state);
        state.scanned_seq = Some(state.scanned_seq.map_or(seq, |s| s.max(seq)));
    }

    fn contains(&self, hash: &str) -> bool {
        lock(&self.state).blocks.iter().any(|b| b.hash == hash)
    }

    /// The block with `hash` (display order), if listed.
    pub fn find(&self, hash: &str) -> Option<FoundBlock> {
        lock(&self.state)
            .blocks
            .iter()
            .find(|b| b.hash == hash)
            .cloned()
    }
}

/// Replaces the block with the same hash (keeping its place), or appends it.
fn upsert(blocks: &mut Vec<FoundBlock>, block: FoundBlock) {
    match blocks.iter_mut().find(|b| b.hash == block.hash) {
        Some(slot) => *slot = block,
        None => blocks.push(block),
    }
}

/// The BIP34 height a coinbase scriptSig starts with: a minimal number push
/// (`OP_1`..`OP_16`, or 1 to 8 little-endian bytes).
pub fn bip34_height(script_sig: &[u8]) -> Option<u64> {
    let first = *script_sig.first()?;
    match first {
        0x00 => Some(0),
        0x51..=0x60 => Some(u64::from(first - 0x50)),
        1..=8 => {
            let bytes = script_sig.get(1..1 + first as usize)?;
            let mut le = [0u8; 8];
            le[..bytes.len()].copy_from_slice(bytes);
            Some(u64::from_le_bytes(le))
        }
        _ => None,
    }
}

/// An address for a script, or its hex.
pub fn describe_script(script: &[u8], coin: &CoinParams) -> String {
    script_to_address(script, coin).unwrap_or_else(|| hex::encode(script))
}

/// An aux chain's address for a script, or its hex.
pub fn describe_aux_script(script: &[u8], chain: &AuxChainParams) -> String {
    aux_script_to_address(script, chain).unwrap_or_else(|| hex::encode(script))
}

/// An aux block's payouts as the list shows them.
pub fn aux_paid_outputs(payouts: &[Payout], chain: &AuxChainParams) -> Vec<PaidOutput> {
    payouts
        .iter()
        .map(|p| PaidOutput {
            address: describe_aux_script(&p.script, chain),
            amount: p.amount,
        })
        .collect()
}

/// A hash in display order (byte-reversed hex).
pub fn display_hex(mut hash: [u8; 32]) -> String {
    hash.reverse();
    hex::encode(hash)
}

/// A share not scanned yet: what deciding whether it is a block, or carries aux blocks,
/// needs.
struct Unscanned {
    hash: ShareHash,
    header: [u8; 80],
    bits: u32,
    /// The bits of each aux block it carries, in order.
    aux_bits: Vec<u32>,
}

/// A scanned share that is a block, or whose proof of work meets aux blocks' targets.
struct Hit {
    hash: ShareHash,
    parent: bool,
    /// Indexes into the share's aux blocks.
    aux: Vec<usize>,
}

impl Unscanned {
    fn hit(self, pow: share_chain::PowAlgorithm) -> Option<Hit> {
        let hash = pow_hash(pow, &self.header);
        let meets = |bits: u32| Target::from_compact(bits).is_ok_and(|t| t.is_met_by(&hash));
        let hit = Hit {
            hash: self.hash,
            parent: meets(self.bits),
            aux: (0..self.aux_bits.len())
                .filter(|&i| meets(self.aux_bits[i]))
                .collect(),
        };
        (hit.parent || !hit.aux.is_empty()).then_some(hit)
    }
}

/// Hashes the shares connected since the last scan and records those that are blocks, and
/// the aux blocks they carry whose target they meet. Returns how many blocks were new.
pub async fn scan(chain: &ChainHandle, preset: &Preset, blocks: &FoundBlocks) -> usize {
    let after = blocks.scanned_seq();
    let Ok((batch, top)) = chain
        .call(move |c| {
            let mut fresh: Vec<(u64, Unscanned)> = c
                .index()
                .entries()
                .filter(|e| after.is_none_or(|s| e.seq > s))
                .map(|e| {
                    (
                        e.seq,
                        Unscanned {
                            hash: e.hash,
                            header: e.share.header.to_bytes(),
                            bits: e.share.header.bits,
                            aux_bits: e
                                .share
                                .merged_mining
                                .blocks
                                .iter()
                                .map(|b| b.bits)
                                .collect(),
                        },
                    )
                })
                .collect();
            fresh.sort_unstable_by_key(|(seq, _)| *seq);
            fresh.truncate(SCAN_BATCH);
            let top = fresh.last().map(|(seq, _)| *seq);
            (fresh.into_iter().map(|(_, u)| u).collect::<Vec<_>>(), top)
        })
        .await
    else {
        return 0;
    };
    let pow = preset.coin.pow;
    let hits: Vec<Hit> =
        tokio::task::spawn_blocking(move || batch.into_iter().filter_map(|u| u.hit(pow)).collect())
            .await
            .unwrap_or_default();
    let mut new = 0;
    for hit in hits {
        for block in describe_hit(chain, preset, hit).await {
            if blocks.contains(&block.hash) {
                continue;
            }
            info!(
                chain = block.aux_chain.as_deref().unwrap_or(&preset.coin.chain),
                block = %block.hash,
                finder = %block.finder,
                value = block.value,
                "the share chain found a block"
            );
            blocks.record(block);
            new += 1;
        }
    }
    if let Some(top) = top {
        blocks.set_scanned_seq(top);
    }
    new
}

/// The records of the blocks of a hit, their payouts rebuilt from the chain.
async fn describe_hit(chain: &ChainHandle, preset: &Preset, hit: Hit) -> Vec<FoundBlock> {
    let coin = preset.coin.clone();
    chain
        .call(move |c| {
            let index = c.index_mut();
            let Some(entry) = index.get(&hit.hash).cloned() else {
                return Vec::new();
            };
            let share = &entry.share;
            let seen = crate::api::now_secs();
            let mut found = Vec::new();
            if hit.parent {
                let payouts = index.expected_payouts(share, &entry.credits);
                found.push(FoundBlock {
                    aux_chain: None,
                    hash: hit.hash.to_string(),
                    parent_header: None,
                    height: bip34_height(&share.coinbase.script_sig),
                    finder: describe_script(&share.info.payout_script, &coin),
                    time: share.header.time,
                    value: share.coinbase.value,
                    payouts: payouts
                        .iter()
                        .map(|p| PaidOutput {
                            address: describe_script(&p.script, &coin),
                            amount: p.amount,
                        })
                        .collect(),
                    status: BlockStatus::Pending,
                    confirmations: 0,
                    seen,
                });
            }
            for i in hit.aux {
                let Some(block) = share.merged_mining.blocks.get(i) else {
                    continue;
                };
                let Some(params) = index.aux_chain(block.chain_id).cloned() else {
                    continue;
                };
                // A share in the chain passed §15, so its payouts rebuild.
                let Ok(payouts) = index.aux_window_payouts(
                    &share.info,
                    &entry.credits,
                    share.header.bits,
                    block.chain_id,
                    block.coinbase_value,
                ) else {
                    continue;
                };
                let (_, header) = aux_block_parts(block, &payouts);
                found.push(FoundBlock {
                    aux_chain: Some(params.chain.clone()),
                    hash: display_hex(header.hash().0),
                    parent_header: Some(hit.hash.to_string()),
                    height: bip34_height(&block.coinbase_script_sig),
                    finder: share
                        .info
                        .aux_payout_script()
                        .map_or_else(|| "none".into(), |s| describe_aux_script(&s, &params)),
                    time: block.time,
                    value: block.coinbase_value,
                    payouts: aux_paid_outputs(&payouts, &params),
                    status: BlockStatus::Pending,
                    confirmations: 0,
                    seen,
                });
            }
            found
        })
        .await
        .unwrap_or_default()
}

/// What a daemon's `getblockheader` answer says of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderStatus {
    Known(BlockStatus, u64),
    /// Off the best chain above the best height: either the daemon has its header but has
    /// not connected it yet (a block relayed over P2P is announced by its header), or the
    /// block was invalidated and nothing has replaced it yet. A second such answer in a row
    /// says orphaned.
    OffChainAbove,
}

/// A block's status from its daemon's `getblockheader` answer (`None`: it does not know
/// the block), with the daemon's best height.
pub fn status_from_header(header: Option<&Value>, maturity: u32, best_height: u64) -> HeaderStatus {
    let Some(header) = header else {
        return HeaderStatus::Known(BlockStatus::Pending, 0);
    };
    match header.get("confirmations").and_then(Value::as_i64) {
        Some(c) if c >= i64::from(maturity) => HeaderStatus::Known(BlockStatus::Mature, c as u64),
        Some(c) if c >= 1 => HeaderStatus::Known(BlockStatus::Immature, c as u64),
        _ => match header.get("height").and_then(Value::as_u64) {
            Some(height) if height > best_height => HeaderStatus::OffChainAbove,
            _ => HeaderStatus::Known(BlockStatus::Orphaned, 0),
        },
    }
}

/// Where the list's blocks are followed: the parent chain's daemon and the aux daemons.
pub struct Daemons {
    pub parent: Option<Arc<RpcClient>>,
    pub aux: Vec<Arc<AuxDaemon>>,
}

impl Daemons {
    /// The daemon of `aux_chain` (`None`: the parent chain) and its coinbase maturity, if
    /// it is known.
    fn of(&self, aux_chain: Option<&str>, coin: &CoinParams) -> Option<(&RpcClient, u32)> {
        match aux_chain {
            None => self
                .parent
                .as_deref()
                .map(|rpc| (rpc, coin.coinbase_maturity)),
            Some(name) => self.aux.iter().find_map(|d| {
                let chain = d.chain().filter(|c| c.chain == name)?;
                Some((d.rpc(), chain.coinbase_maturity))
            }),
        }
    }
}

/// Each unsettled block's status on its daemon (newest first, at most [`STATUS_CHECKS`]);
/// mature blocks are settled. A daemon that cannot be reached is skipped until next round.
/// `off_chain`: the blocks the last round found [`HeaderStatus::OffChainAbove`].
pub async fn refresh_statuses(
    daemons: &Daemons,
    coin: &CoinParams,
    blocks: &FoundBlocks,
    off_chain: &mut HashSet<String>,
) {
    let unsettled: Vec<FoundBlock> = blocks
        .newest(MAX_BLOCKS)
        .into_iter()
        .filter(|b| b.status != BlockStatus::Mature)
        .take(STATUS_CHECKS)
        .collect();
    let mut unreachable: Vec<Option<String>> = Vec::new();
    // Each daemon's best height, asked once per round.
    let mut best_heights: HashMap<Option<String>, u64> = HashMap::new();
    for block in unsettled {
        if unreachable.contains(&block.aux_chain) {
            continue;
        }
        let Some((rpc, maturity)) = daemons.of(block.aux_chain.as_deref(), coin) else {
            continue;
        };
        let best_height = match best_heights.get(&block.aux_chain) {
            Some(&h) => h,
            None => match rpc.call::<u64>("getblockcount", vec![]).await {
                Ok(h) => *best_heights.entry(block.aux_chain.clone()).or_insert(h),
                Err(_) => {
                    unreachable.push(block.aux_chain.clone());
                    continue;
                }
            },
        };
        let header = match rpc
            .call::<Value>("getblockheader", vec![json!(block.hash)])
            .await
        {
            Ok(h) => Some(h),
            // -5: "Block not found".
            Err(RpcError::Rpc { code: -5, .. }) => None,
            Err(_) => {
                unreachable.push(block.aux_chain.clone());
                continue;
            }
        };
        let (status, confirmations) =
            match status_from_header(header.as_ref(), maturity, best_height) {
                HeaderStatus::Known(status, confirmations) => {
                    off_chain.remove(&block.hash);
                    (status, confirmations)
                }
                HeaderStatus::OffChainAbove if off_chain.contains(&block.hash) => {
                    (BlockStatus::Orphaned, 0)
                }
                HeaderStatus::OffChainAbove => {
                    off_chain.insert(block.hash.clone());
                    continue;
                }
            };
        // An aux block from a share has no BIP34 height when its chain does not ask for
        // one: its daemon says.
        let height = block.height.or_else(|| {
            header
                .as_ref()
                .and_then(|h| h.get("height"))
                .and_then(Value::as_u64)
        });
        if status != block.status || confirmations != block.confirmations || height != block.height
        {
            if status == BlockStatus::Orphaned && block.status != BlockStatus::Orphaned {
                warn!(
                    chain = block.aux_chain.as_deref().unwrap_or(&coin.chain),
                    block = %block.hash,
                    "a block found by the share chain was orphaned"
                );
            }
            blocks.record(FoundBlock {
                status,
                confirmations,
                height,
                ..block
            });
        }
    }
}

/// Scans new shares on every chain change and follows unsettled blocks on their daemons,
/// until the chain stops.
pub async fn track(chain: ChainHandle, preset: Preset, daemons: Daemons, blocks: Arc<FoundBlocks>) {
    let mut changes: watch::Receiver<ChainSummary> = chain.subscribe();
    let mut ticker = tokio::time::interval(STATUS_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut off_chain = HashSet::new();
    loop {
        // Scan until caught up (a restart may leave more than one batch).
        while scan(&chain, &preset, &blocks).await > 0 || has_unscanned(&chain, &blocks).await {}
        refresh_statuses(&daemons, &preset.coin, &blocks, &mut off_chain).await;
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = ticker.tick() => {}
        }
    }
}

/// Whether shares newer than the last scan remain.
async fn has_unscanned(chain: &ChainHandle, blocks: &FoundBlocks) -> bool {
    let after = blocks.scanned_seq();
    chain
        .call(move |c| c.index().entries().any(|e| after.is_none_or(|s| e.seq > s)))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(hash: &str, status: BlockStatus) -> FoundBlock {
        FoundBlock {
            aux_chain: None,
            hash: hash.into(),
            parent_header: None,
            height: Some(7),
            finder: "x".into(),
            time: 1,
            value: 100,
            payouts: vec![PaidOutput {
                address: "x".into(),
                amount: 100,
            }],
            status,
            confirmations: 0,
            seen: 2,
        }
    }

    #[test]
    fn bip34_heights() {
        assert_eq!(bip34_height(&[0x51]), Some(1));
        assert_eq!(bip34_height(&[0x60]), Some(16));
        assert_eq!(bip34_height(&[0x01, 0x11]), Some(17));
        assert_eq!(
            bip34_height(&[0x03, 0x40, 0x42, 0x0f, 0xff]),
            Some(1_000_000)
        );
        assert_eq!(bip34_height(&[0x03, 0x40]), None);
        assert_eq!(bip34_height(&[]), None);
        assert_eq!(bip34_height(&[0x4c]), None);
    }

    #[test]
    fn statuses_follow_confirmations() {
        use HeaderStatus::*;
        assert_eq!(
            status_from_header(None, 100, 50),
            Known(BlockStatus::Pending, 0)
        );
        let h = |c: i64| json!({ "confirmations": c, "height": 50 });
        // Off the best chain at a height the best chain has reached: orphaned.
        assert_eq!(
            status_from_header(Some(&h(-1)), 100, 50),
            Known(BlockStatus::Orphaned, 0)
        );
        // Above the best height: not connected yet, or invalidated; one answer cannot tell.
        assert_eq!(status_from_header(Some(&h(-1)), 100, 49), OffChainAbove);
        assert_eq!(
            status_from_header(Some(&h(3)), 100, 52),
            Known(BlockStatus::Immature, 3)
        );
        assert_eq!(
            status_from_header(Some(&h(100)), 100, 149),
            Known(BlockStatus::Mature, 100)
        );
    }

    #[test]
    fn the_list_survives_a_reopen_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        {
            let blocks = FoundBlocks::open(dir.path()).unwrap();
            blocks.record(block("aa", BlockStatus::Pending));
            blocks.record(block("bb", BlockStatus::Pending));
            blocks.record(block("aa", BlockStatus::Orphaned));
        }
        // A crash mid-append.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap();
        write!(f, "{{\"hash\":\"cc\",\"hei").unwrap();
        drop(f);
        let blocks = FoundBlocks::open(dir.path()).unwrap();
        let newest = blocks.newest(10);
        assert_eq!(newest.len(), 2);
        assert_eq!(newest[0].hash, "bb");
        assert_eq!(newest[1].status, BlockStatus::Orphaned);
    }

    #[test]
    fn the_list_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = FoundBlocks::open(dir.path()).unwrap();
        for i in 0..MAX_BLOCKS + 10 {
            blocks.record(block(&format!("{i:x}"), BlockStatus::Pending));
        }
        assert_eq!(blocks.len(), MAX_BLOCKS);
        assert_eq!(blocks.newest(1)[0].hash, format!("{:x}", MAX_BLOCKS + 9));
        let lines = fs::read_to_string(dir.path().join(FILE_NAME))
            .unwrap()
            .lines()
            .count();
        assert!(lines <= 2 * MAX_BLOCKS + 64, "{lines}");
    }
}
