//! The share store: every connected share, persisted in LevelDB so a restarted node
//! restores its chain without downloading or re-validating the window.
//!
//! The store is a dumb, durable map. It knows nothing of chains or networks: the chain
//! index decides what to put and remove, and keeps its network id in the metadata so it can
//! refuse a store written by another network. docs/STORE.md explains the choice of
//! `rusty-leveldb` and what the kill -9 test established.
//!
//! Key layout (keys sort bytewise, so each kind is one contiguous range):
//! - `b's' || share_hash (32 bytes)` -> canonical encoding of [`StoredShare`];
//! - `b'm' || key (UTF-8, 1..=64 bytes)` -> raw metadata bytes (at most 8192);
//! - `b"v"` -> the store format version, `u32` little-endian ([`STORE_FORMAT_VERSION`]).
//!
//! Durability: every write is one LevelDB write batch with `sync = true`. In rusty-leveldb
//! that hands the batch's log record to the kernel (`write(2)`) before returning, but never
//! calls `fsync`. An acknowledged write therefore survives the death of the process
//! (kill -9, panic, OOM kill), which `tests/store_crash.rs` checks, but not a power loss or a
//! kernel crash, after which the last seconds of shares may be gone; peers send them again.

use std::path::{Path, PathBuf};

use bincode::{Decode, Encode};
use rusty_leveldb::{LdbIterator, Options, Status, WriteBatch, DB};
use thiserror::Error;
use tracing::warn;

use crate::encoding::{decode_canonical, encode_canonical, MAX_ENCODED_SIZE};
use crate::hash::ShareHash;
use crate::share::Share;

/// Version of the key layout and record encoding; bumped on any incompatible change.
pub const STORE_FORMAT_VERSION: u32 = 1;
/// Longest metadata key, in bytes.
pub const MAX_META_KEY_LEN: usize = 64;
/// Largest metadata value, in bytes.
pub const MAX_META_VALUE_LEN: usize = MAX_ENCODED_SIZE;

const SHARE_PREFIX: u8 = b's';
const META_PREFIX: u8 = b'm';
const FORMAT_KEY: &[u8] = b"v";
const SHARE_KEY_LEN: usize = 1 + 32;

/// One connected share as persisted, with what the index needs to restore it without
/// re-validating: its first-seen sequence number, height and cumulative chain work.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct StoredShare {
    pub seq: u64,
    pub height: u64,
    pub chain_work: u128,
    pub share: Share,
}

/// What [`ShareStore::load_all`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadedShares {
    /// Every record that decoded, sorted by `seq` (then by hash, so the order is total).
    pub records: Vec<StoredShare>,
    /// Records skipped because they did not decode, broke a share format rule, or sat under
    /// a key that is not their share's hash.
    pub corrupt: usize,
}

/// Tuning knobs; [`ShareStore::open`] uses the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bytes of writes buffered in memory (and in the write-ahead log) before LevelDB
    /// writes them out as a table. Bounds memory use and the log replayed on open.
    pub write_buffer_size: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            write_buffer_size: 4 << 20,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the share store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Status,
    },
    #[error("share store write failed: {0}")]
    Write(#[source] Status),
    #[error("share store read failed: {0}")]
    Read(#[source] Status),
    #[error("record for share {hash} is {size} bytes, over the limit of {MAX_ENCODED_SIZE}")]
    RecordTooLarge { hash: ShareHash, size: usize },
    #[error("metadata key of {0} bytes is empty or longer than {MAX_META_KEY_LEN}")]
    MetaKeyLength(usize),
    #[error("metadata value of {0} bytes exceeds {MAX_META_VALUE_LEN}")]
    MetaValueTooLarge(usize),
    #[error(
        "share store format {found:02x?} is not supported (this build writes version {STORE_FORMAT_VERSION})"
    )]
    UnsupportedFormat { found: Vec<u8> },
}

/// The persistent set of connected shares, keyed by share hash, plus small metadata.
///
/// Holds the LevelDB directory lock while open: a second `open` of the same directory, in
/// this process or another, fails. Not `Send` (rusty-leveldb uses `Rc` inside): keep it on
/// the thread that owns the chain.
pub struct ShareStore {
    db: DB,
}

impl ShareStore {
    /// Opens the store in `dir`, creating it if missing.
    pub fn open(dir: &Path) -> Result<ShareStore, StoreError> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// Opens the store in `dir` with explicit options, creating it if missing.
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<ShareStore, StoreError> {
        let opt = Options {
            create_if_missing: true,
            write_buffer_size: options.write_buffer_size,
            // Reusing the previous log or manifest means appending after whatever the killed
            // process left at its end. rusty-leveldb's log reader stops at the first torn
            // record, so anything appended after one would be lost on the next open. Starting
            // fresh files on every open costs one small table write and is safe.
            reuse_logs: false,
            reuse_manifest: false,
            ..Options::default()
        };
        let open_error = |source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        };
        let mut db = DB::open(dir, opt).map_err(open_error)?;
        let snapshot = db.get_snapshot();
        match db.get_at(&snapshot, FORMAT_KEY).map_err(open_error)? {
            Some(found) if found.as_ref() != STORE_FORMAT_VERSION.to_le_bytes() => {
                return Err(StoreError::UnsupportedFormat {
                    found: found.to_vec(),
                })
            }
            Some(_) => {}
            None => {
                let mut batch = WriteBatch::default();
                batch.put(FORMAT_KEY, &STORE_FORMAT_VERSION.to_le_bytes());
                db.write(batch, true).map_err(StoreError::Write)?;
            }
        }
        Ok(ShareStore { db })
    }

    /// Stores one record (replacing any record of the same share).
    /// Durable on return: survives kill -9 of the process right after.
    pub fn put(&mut self, record: &StoredShare) -> Result<(), StoreError> {
        self.put_batch(std::slice::from_ref(record))
    }

    /// Stores all records or none of them, durably on return.
    pub fn put_batch(&mut self, records: &[StoredShare]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for record in records {
            let hash = record.share.hash();
            let value = encode_canonical(record);
            // encode_canonical falls back to an unbounded encoding rather than failing, so
            // the bound is checked here: a record load_all would refuse is never written.
            if value.len() > MAX_ENCODED_SIZE {
                return Err(StoreError::RecordTooLarge {
                    hash,
                    size: value.len(),
                });
            }
            batch.put(&share_key(&hash), &value);
        }
        self.write(batch)
    }

    /// Deletes the records of these shares (absent ones are ignored), all or none, durably.
    pub fn remove(&mut self, hashes: &[ShareHash]) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for hash in hashes {
            batch.delete(&share_key(hash));
        }
        self.write(batch)
    }

    /// Every record, sorted by seq. A record that fails to decode is skipped with a
    /// `tracing::warn` and counted, never a panic or an error.
    pub fn load_all(&mut self) -> Result<LoadedShares, StoreError> {
        let mut loaded = LoadedShares::default();
        self.for_each_share(|key, value| match check_record(key, value) {
            Ok(record) => loaded.records.push(record),
            Err(why) => {
                loaded.corrupt += 1;
                warn!(key = %hex::encode(key), why, "skipping corrupt share record");
            }
        })?;
        // The scan runs in key order, which is hash order, and the sort is stable, so equal
        // seqs stay ordered by hash without hashing again.
        loaded.records.sort_by_key(|r| r.seq);
        Ok(loaded)
    }

    /// How many share records the store holds (corrupt ones included).
    pub fn len(&mut self) -> Result<usize, StoreError> {
        let mut count = 0;
        self.for_each_share(|_, _| count += 1)?;
        Ok(count)
    }

    /// Whether the store holds no share record.
    pub fn is_empty(&mut self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Sets a small metadata value (e.g. the network id the store belongs to), durably.
    pub fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if value.len() > MAX_META_VALUE_LEN {
            return Err(StoreError::MetaValueTooLarge(value.len()));
        }
        let mut batch = WriteBatch::default();
        batch.put(&meta_key(key)?, value);
        self.write(batch)
    }

    /// Reads a metadata value.
    pub fn get_meta(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = meta_key(key)?;
        let snapshot = self.db.get_snapshot();
        let value = self
            .db
            .get_at(&snapshot, &key)
            .map_err(StoreError::Read)?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn write(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        // sync = true: the log record reaches the kernel before we return (see module docs).
        self.db.write(batch, true).map_err(StoreError::Write)
    }

    /// Calls `f(key, value)` for every key under the share prefix, in key order.
    fn for_each_share(&mut self, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        let mut iter = self.db.new_iter().map_err(StoreError::Read)?;
        iter.seek(&[SHARE_PREFIX]);
        while iter.valid() {
            let Some((key, value)) = iter.current() else {
                break;
            };
            if key.first() != Some(&SHARE_PREFIX) {
                break;
            }
            f(&key, &value);
            if !iter.advance() {
                break;
            }
        }
        Ok(())
    }
}

fn share_key(hash: &ShareHash) -> [u8; SHARE_KEY_LEN] {
    let mut key = [0u8; SHARE_KEY_LEN];
    key[0] = SHARE_PREFIX;
    key[1..].copy_from_slice(hash.as_bytes());
    key
}

fn meta_key(key: &str) -> Result<Vec<u8>, StoreError> {
    if key.is_empty() || key.len() > MAX_META_KEY_LEN {
        return Err(StoreError::MetaKeyLength(key.len()));
    }
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(META_PREFIX);
    out.extend_from_slice(key.as_bytes());
    Ok(out)
}

/// Decodes a share record and checks it belongs under its key.
fn check_record(key: &[u8], value: &[u8]) -> Result<StoredShare, &'static str> {
    if key.len() != SHARE_KEY_LEN {
        return Err("key is not a share hash");
    }
    let record: StoredShare = decode_canonical(value).map_err(|_| "value does not decode")?;
    if record.share.check_format().is_err() {
        return Err("share breaks a format rule");
    }
    if key.get(1..) != Some(record.share.hash().as_bytes().as_slice()) {
        return Err("key is not the share's hash");
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::tests::sample_share;
    use crate::share::{OperatorFee, MAX_MERKLE_BRANCH, MAX_SCRIPT_LEN, MAX_UNCLES};

    fn record(seq: u64) -> StoredShare {
        let mut share = sample_share();
        share.header.nonce = seq as u32;
        share.header.time = 1_700_000_000 + seq as u32;
        StoredShare {
            seq,
            height: seq + 1,
            chain_work: u128::from(seq) << 70 | 0xabcd,
            share,
        }
    }

    fn open(dir: &tempfile::TempDir) -> ShareStore {
        ShareStore::open(dir.path()).unwrap()
    }

    #[test]
    fn put_load_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        assert!(store.is_empty().unwrap());
        let a = record(1);
        let (b, c) = (record(2), record(3));
        store.put(&a).unwrap();
        store.put_batch(&[b.clone(), c.clone()]).unwrap();
        assert_eq!(store.len().unwrap(), 3);
        let loaded = store.load_all().unwrap();
        assert_eq!(loaded.corrupt, 0);
        assert_eq!(loaded.records, vec![a.clone(), b.clone(), c.clone()]);

        store.remove(&[b.share.hash(), ShareHash([9; 32])]).unwrap();
        let loaded = store.load_all().unwrap();
        assert_eq!(loaded.records, vec![a.clone(), c.clone()]);
        assert_eq!(store.len().unwrap(), 2);

        // A second put of the same share replaces the record.
        let mut a2 = a.clone();
        a2.seq = 10;
        store.put(&a2).unwrap();
        assert_eq!(store.load_all().unwrap().records, vec![c, a2]);
        store.put_batch(&[]).unwrap();
        store.remove(&[]).unwrap();
        assert_eq!(store.len().unwrap(), 2);
    }

    #[test]
    fn load_is_sorted_by_seq_not_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let records: Vec<StoredShare> = [7u64, 3, 11, 0, 5, 2].into_iter().map(record).collect();
        store.put_batch(&records).unwrap();
        let loaded = store.load_all().unwrap();
        let seqs: Vec<u64> = loaded.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![0, 2, 3, 5, 7, 11]);
        // The hashes of these records are not in seq order, so the sort did the work.
        let hashes: Vec<ShareHash> = loaded.records.iter().map(|r| r.share.hash()).collect();
        let mut sorted = hashes.clone();
        sorted.sort();
        assert_ne!(hashes, sorted);
    }

    #[test]
    fn corrupt_values_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        store.put_batch(&[record(1), record(2)]).unwrap();
        // Garbage under a share key.
        store
            .db
            .put(&share_key(&ShareHash([0xee; 32])), b"garbage")
            .unwrap();
        // A valid record under the wrong key.
        store
            .db
            .put(
                &share_key(&ShareHash([0x01; 32])),
                &encode_canonical(&record(3)),
            )
            .unwrap();
        // A record whose share breaks a format rule (uncles out of order).
        let mut bad = record(4);
        bad.share.info.uncles.reverse();
        store
            .db
            .put(&share_key(&bad.share.hash()), &encode_canonical(&bad))
            .unwrap();
        // A key of the wrong length under the share prefix.
        store.db.put(b"short", &encode_canonical(&record(5))).unwrap();
        // A valid record with a trailing byte.
        let mut trailing = encode_canonical(&record(6));
        trailing.push(0);
        store
            .db
            .put(&share_key(&record(6).share.hash()), &trailing)
            .unwrap();
        store.db.flush().unwrap();

        let loaded = store.load_all().unwrap();
        assert_eq!(loaded.records, vec![record(1), record(2)]);
        assert_eq!(loaded.corrupt, 5);
        assert_eq!(store.len().unwrap(), 7);
        drop(store);
        // Corrupt records never stop the store from opening.
        let mut store = open(&dir);
        assert_eq!(store.load_all().unwrap().corrupt, 5);
    }

    #[test]
    fn reopen_after_drop_sees_everything() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<StoredShare> = (0..500).map(record).collect();
        {
            let mut store = ShareStore::open_with(
                dir.path(),
                // Small enough that the records end up in tables, not only in the log.
                &StoreOptions {
                    write_buffer_size: 16 << 10,
                },
            )
            .unwrap();
            for chunk in records.chunks(7) {
                store.put_batch(chunk).unwrap();
            }
            store
                .remove(&[records[10].share.hash(), records[20].share.hash()])
                .unwrap();
            store.put_meta("network_id", &[0x42; 32]).unwrap();
        }
        let mut store = open(&dir);
        let loaded = store.load_all().unwrap();
        let expected: Vec<StoredShare> = records
            .iter()
            .filter(|r| r.seq != 10 && r.seq != 20)
            .cloned()
            .collect();
        assert_eq!(loaded.corrupt, 0);
        assert_eq!(loaded.records, expected);
        assert_eq!(
            store.get_meta("network_id").unwrap(),
            Some(vec![0x42; 32])
        );
    }

    #[test]
    fn a_second_open_of_the_same_directory_fails_while_the_first_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        assert!(matches!(
            ShareStore::open(dir.path()),
            Err(StoreError::Open { .. })
        ));
        drop(store);
        ShareStore::open(dir.path()).unwrap();
    }

    #[test]
    fn meta_round_trips_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        assert_eq!(store.get_meta("network_id").unwrap(), None);
        store.put_meta("network_id", b"litecoin").unwrap();
        store.put_meta("other", b"").unwrap();
        assert_eq!(
            store.get_meta("network_id").unwrap(),
            Some(b"litecoin".to_vec())
        );
        assert_eq!(store.get_meta("other").unwrap(), Some(vec![]));
        // Metadata is not a share record.
        assert_eq!(store.len().unwrap(), 0);
        assert!(matches!(
            store.put_meta("", b"x"),
            Err(StoreError::MetaKeyLength(0))
        ));
        let long = "k".repeat(MAX_META_KEY_LEN + 1);
        assert!(matches!(
            store.get_meta(&long),
            Err(StoreError::MetaKeyLength(_))
        ));
        assert!(matches!(
            store.put_meta("big", &vec![0; MAX_META_VALUE_LEN + 1]),
            Err(StoreError::MetaValueTooLarge(_))
        ));
    }

    #[test]
    fn a_store_of_another_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(&dir);
            store.db.put(FORMAT_KEY, &2u32.to_le_bytes()).unwrap();
            store.db.flush().unwrap();
        }
        assert!(matches!(
            ShareStore::open(dir.path()),
            Err(StoreError::UnsupportedFormat { found }) if found == 2u32.to_le_bytes()
        ));
    }

    #[test]
    fn the_largest_share_fits_a_record() {
        let mut share = sample_share();
        share.info.payout_script = vec![0x51; MAX_SCRIPT_LEN];
        share.info.fee = Some(OperatorFee {
            basis_points: 10_000,
            script: vec![0x52; MAX_SCRIPT_LEN],
        });
        share.info.uncles = (0..MAX_UNCLES as u8).map(|i| ShareHash([i; 32])).collect();
        share.coinbase.script_sig = vec![0; 100];
        share.merkle_branch = vec![[7; 32]; MAX_MERKLE_BRANCH];
        share.check_format().unwrap();
        let record = StoredShare {
            seq: u64::MAX,
            height: u64::MAX,
            chain_work: u128::MAX,
            share,
        };
        let size = encode_canonical(&record).len();
        assert!(size < 2048, "largest record is {size} bytes");

        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        store.put(&record).unwrap();
        assert_eq!(store.load_all().unwrap().records, vec![record]);
    }
}

#[cfg(test)]
mod model_tests {
    use super::*;
    use crate::share::tests::sample_share;
    use std::collections::BTreeMap;

    fn record(id: u64) -> StoredShare {
        let mut share = sample_share();
        share.header.nonce = id as u32;
        share.header.time = (id >> 32) as u32;
        StoredShare { seq: id, height: id, chain_work: id.into(), share }
    }

    /// Random puts, batches and removes against a model, with reopen (clean close) in between.
    #[test]
    fn random_operations_with_clean_reopens_match_a_model() {
        let seed = fastrand::u64(..);
        eprintln!("seed {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut model: BTreeMap<u64, bool> = BTreeMap::new();
        let mut next = 0u64;
        for round in 0..30 {
            let opts = StoreOptions { write_buffer_size: [16 << 10, 64 << 10][rng.usize(0..2)] };
            let mut store = ShareStore::open_with(dir.path(), &opts).unwrap();
            let loaded = store.load_all().unwrap();
            let found: std::collections::BTreeSet<u64> = loaded.records.iter().map(|r| r.seq).collect();
            for (&id, &present) in &model {
                assert_eq!(found.contains(&id), present, "round {round}: id {id} present={present}");
            }
            assert_eq!(found.len(), model.values().filter(|p| **p).count());
            let mut present: Vec<u64> = found.into_iter().collect();
            for _ in 0..rng.usize(0..800) {
                let roll = rng.u32(0..100);
                if roll < 30 && !present.is_empty() {
                    let n = rng.usize(1..=present.len().min(60));
                    let ids: Vec<u64> = (0..n).map(|_| present.swap_remove(rng.usize(0..present.len()))).collect();
                    let hashes: Vec<ShareHash> = ids.iter().map(|&i| record(i).share.hash()).collect();
                    store.remove(&hashes).unwrap();
                    ids.iter().for_each(|&i| { model.insert(i, false); });
                } else {
                    let n = rng.usize(1..=40);
                    let recs: Vec<StoredShare> = (next..next + n as u64).map(record).collect();
                    store.put_batch(&recs).unwrap();
                    for i in next..next + n as u64 { model.insert(i, true); present.push(i); }
                    next += n as u64;
                }
            }
        }
    }
}
