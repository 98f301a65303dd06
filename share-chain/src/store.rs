//! The share store: every connected share, persisted in LevelDB so a restarted node
//! restores its chain without downloading or re-validating the window.
//!
//! The store is a dumb, durable map. It knows nothing of chains or networks: the chain
//! index decides what to put and remove, and keeps its network id in the metadata so it can
//! refuse a store written by another network.
//!
//! The engine is Google's C++ LevelDB (Debian's `libleveldb-dev`, 1.23: the same library
//! litecoind and bitcoind keep their chain state in), reached through its C API with the
//! small binding in [`ffi`]. The pure-Rust `rusty-leveldb` 4.0.2 was tried first and failed
//! the kill -9 test in `tests/store_crash.rs`: an acknowledged delete came back after a kill.
//! docs/STORE.md has the evidence and the reasoning.
//!
//! Key layout (keys sort bytewise, so each kind is one contiguous range):
//! - `b's' || share_hash (32 bytes)` -> canonical encoding of [`StoredShare`];
//! - `b'm' || key (UTF-8, 1..=64 bytes)` -> raw metadata bytes (at most 8192);
//! - `b"v"` -> the store format version, `u32` little-endian ([`STORE_FORMAT_VERSION`]).
//!
//! Durability: every operation is one atomic LevelDB write batch. LevelDB hands each batch's
//! log record to the kernel (`write(2)`) before the write returns, so an acknowledged write
//! survives the death of the process (kill -9, panic, OOM kill) whatever the options. With
//! [`StoreOptions::sync`] (the default) it also `fdatasync`s the log first, so the write
//! survives a power loss or kernel crash as well.

use std::path::{Path, PathBuf};

use bincode::{Decode, Encode};
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
    /// `fdatasync` the write-ahead log before each write returns. Without it a write still
    /// survives the death of the process, but not a power loss or kernel crash.
    pub sync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            write_buffer_size: 4 << 20,
            sync: true,
        }
    }
}

/// Why a store operation failed. LevelDB reports its errors as text.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the share store at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("share store write failed: {0}")]
    Write(String),
    #[error("share store read failed: {0}")]
    Read(String),
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
/// this process or another, fails.
pub struct ShareStore {
    db: ffi::Db,
    sync: bool,
}

impl ShareStore {
    /// Opens the store in `dir`, creating it if missing.
    pub fn open(dir: &Path) -> Result<ShareStore, StoreError> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// Opens the store in `dir` with explicit options, creating it if missing.
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<ShareStore, StoreError> {
        let open_error = |reason| StoreError::Open {
            path: dir.to_path_buf(),
            reason,
        };
        let db = ffi::Db::open(dir, options.write_buffer_size).map_err(open_error)?;
        let mut store = ShareStore {
            db,
            sync: options.sync,
        };
        match store.db.get(FORMAT_KEY).map_err(open_error)? {
            Some(found) if found != STORE_FORMAT_VERSION.to_le_bytes() => {
                return Err(StoreError::UnsupportedFormat { found })
            }
            Some(_) => {}
            None => {
                let mut batch = ffi::Batch::new();
                batch.put(FORMAT_KEY, &STORE_FORMAT_VERSION.to_le_bytes());
                store.write(&batch)?;
            }
        }
        Ok(store)
    }

    /// Stores one record (replacing any record of the same share).
    /// Durable on return: survives kill -9 of the process right after.
    pub fn put(&mut self, record: &StoredShare) -> Result<(), StoreError> {
        self.put_batch(std::slice::from_ref(record))
    }

    /// Stores all records or none of them, durably on return.
    pub fn put_batch(&mut self, records: &[StoredShare]) -> Result<(), StoreError> {
        self.replace(&[], records)
    }

    /// Deletes the records of `remove` and stores `records`, all in one atomic, durable
    /// write: a crash leaves either the old set or the new one.
    pub fn replace(
        &mut self,
        remove: &[ShareHash],
        records: &[StoredShare],
    ) -> Result<(), StoreError> {
        if records.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let mut batch = ffi::Batch::new();
        for hash in remove {
            batch.delete(&share_key(hash));
        }
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
        self.write(&batch)
    }

    /// Deletes the records of these shares (absent ones are ignored), all or none, durably.
    pub fn remove(&mut self, hashes: &[ShareHash]) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let mut batch = ffi::Batch::new();
        for hash in hashes {
            batch.delete(&share_key(hash));
        }
        self.write(&batch)
    }

    /// Every record, sorted by seq. A record that fails to decode is skipped with a
    /// `tracing::warn` and counted, never a panic or an error.
    pub fn load_all(&mut self) -> Result<LoadedShares, StoreError> {
        let mut loaded = LoadedShares::default();
        self.db
            .scan_prefix(SHARE_PREFIX, |key, value| match check_record(key, value) {
                Ok(record) => loaded.records.push(record),
                Err(why) => {
                    loaded.corrupt += 1;
                    warn!(key = %hex::encode(key), why, "skipping corrupt share record");
                }
            })
            .map_err(StoreError::Read)?;
        // The scan runs in key order, which is hash order, and the sort is stable, so equal
        // seqs stay ordered by hash without hashing again.
        loaded.records.sort_by_key(|r| r.seq);
        Ok(loaded)
    }

    /// How many share records the store holds (corrupt ones included).
    pub fn len(&mut self) -> Result<usize, StoreError> {
        let mut count = 0;
        self.db
            .scan_prefix(SHARE_PREFIX, |_, _| count += 1)
            .map_err(StoreError::Read)?;
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
        let mut batch = ffi::Batch::new();
        batch.put(&meta_key(key)?, value);
        self.write(&batch)
    }

    /// Reads a metadata value.
    pub fn get_meta(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(&meta_key(key)?).map_err(StoreError::Read)
    }

    fn write(&mut self, batch: &ffi::Batch) -> Result<(), StoreError> {
        self.db.write(batch, self.sync).map_err(StoreError::Write)
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

/// A minimal safe binding to LevelDB's C API (`leveldb/c.h`, stable since 1.x), linked
/// against the system library.
///
/// Written here rather than taken from the `leveldb`/`leveldb-sys` crates (last released in
/// 2020): `leveldb-sys` declares the out-parameters of `leveldb_iter_key`/`_value`/
/// `_get_error` as `*const`, and the `leveldb` crate passes immutable locals to them, which
/// is undefined behaviour in Rust; `leveldb-sys`'s bundled C++ build also fails with GCC 12.
/// The dozen functions below are all the store needs.
pub(crate) mod ffi {
    use std::ffi::{c_char, c_int, c_void, CStr, CString};
    use std::marker::{PhantomData, PhantomPinned};
    use std::path::Path;
    use std::ptr::NonNull;

    macro_rules! opaque {
        ($($name:ident),*) => {$(
            #[repr(C)]
            pub struct $name {
                _data: [u8; 0],
                _marker: PhantomData<(*mut u8, PhantomPinned)>,
            }
        )*};
    }
    opaque!(
        leveldb_t,
        leveldb_options_t,
        leveldb_readoptions_t,
        leveldb_writeoptions_t,
        leveldb_writebatch_t,
        leveldb_iterator_t
    );

    const LEVELDB_NO_COMPRESSION: c_int = 0;

    #[link(name = "leveldb")]
    extern "C" {
        fn leveldb_open(
            options: *const leveldb_options_t,
            name: *const c_char,
            errptr: *mut *mut c_char,
        ) -> *mut leveldb_t;
        fn leveldb_close(db: *mut leveldb_t);
        fn leveldb_write(
            db: *mut leveldb_t,
            options: *const leveldb_writeoptions_t,
            batch: *mut leveldb_writebatch_t,
            errptr: *mut *mut c_char,
        );
        fn leveldb_get(
            db: *mut leveldb_t,
            options: *const leveldb_readoptions_t,
            key: *const c_char,
            keylen: usize,
            vallen: *mut usize,
            errptr: *mut *mut c_char,
        ) -> *mut c_char;
        fn leveldb_create_iterator(
            db: *mut leveldb_t,
            options: *const leveldb_readoptions_t,
        ) -> *mut leveldb_iterator_t;
        fn leveldb_iter_destroy(it: *mut leveldb_iterator_t);
        fn leveldb_iter_valid(it: *const leveldb_iterator_t) -> u8;
        fn leveldb_iter_seek(it: *mut leveldb_iterator_t, k: *const c_char, klen: usize);
        fn leveldb_iter_next(it: *mut leveldb_iterator_t);
        fn leveldb_iter_key(it: *const leveldb_iterator_t, klen: *mut usize) -> *const c_char;
        fn leveldb_iter_value(it: *const leveldb_iterator_t, vlen: *mut usize) -> *const c_char;
        fn leveldb_iter_get_error(it: *const leveldb_iterator_t, errptr: *mut *mut c_char);
        fn leveldb_writebatch_create() -> *mut leveldb_writebatch_t;
        fn leveldb_writebatch_destroy(b: *mut leveldb_writebatch_t);
        fn leveldb_writebatch_put(
            b: *mut leveldb_writebatch_t,
            key: *const c_char,
            klen: usize,
            val: *const c_char,
            vlen: usize,
        );
        fn leveldb_writebatch_delete(b: *mut leveldb_writebatch_t, key: *const c_char, klen: usize);
        fn leveldb_options_create() -> *mut leveldb_options_t;
        fn leveldb_options_destroy(o: *mut leveldb_options_t);
        fn leveldb_options_set_create_if_missing(o: *mut leveldb_options_t, v: u8);
        fn leveldb_options_set_write_buffer_size(o: *mut leveldb_options_t, size: usize);
        fn leveldb_options_set_compression(o: *mut leveldb_options_t, v: c_int);
        fn leveldb_readoptions_create() -> *mut leveldb_readoptions_t;
        fn leveldb_readoptions_destroy(o: *mut leveldb_readoptions_t);
        fn leveldb_writeoptions_create() -> *mut leveldb_writeoptions_t;
        fn leveldb_writeoptions_destroy(o: *mut leveldb_writeoptions_t);
        fn leveldb_writeoptions_set_sync(o: *mut leveldb_writeoptions_t, v: u8);
        fn leveldb_free(ptr: *mut c_void);
    }

    /// Takes a LevelDB error string (if any), freeing it.
    fn take_error(err: *mut c_char) -> Result<(), String> {
        if err.is_null() {
            return Ok(());
        }
        // SAFETY: LevelDB sets errptr to a malloc()ed NUL-terminated string, which we own.
        let message = unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: freed exactly once, with the allocator LevelDB used.
        unsafe { leveldb_free(err.cast()) };
        Err(message)
    }

    /// A LevelDB object we created, destroyed with its destructor on drop.
    struct Owned<T> {
        ptr: NonNull<T>,
        destroy: unsafe extern "C" fn(*mut T),
    }

    impl<T> Owned<T> {
        fn new(ptr: *mut T, destroy: unsafe extern "C" fn(*mut T)) -> Result<Owned<T>, String> {
            NonNull::new(ptr)
                .map(|ptr| Owned { ptr, destroy })
                .ok_or_else(|| "LevelDB returned no object".to_string())
        }

        fn as_ptr(&self) -> *mut T {
            self.ptr.as_ptr()
        }
    }

    impl<T> Drop for Owned<T> {
        fn drop(&mut self) {
            // SAFETY: `ptr` came from the constructor matching `destroy` and is destroyed
            // exactly once, here.
            unsafe { (self.destroy)(self.ptr.as_ptr()) }
        }
    }

    /// An open LevelDB database.
    pub struct Db {
        // Field order is drop order: the database closes before its option objects go.
        db: Owned<leveldb_t>,
        read: Owned<leveldb_readoptions_t>,
        write_sync: Owned<leveldb_writeoptions_t>,
        write_nosync: Owned<leveldb_writeoptions_t>,
    }

    // SAFETY: LevelDB's DB object is safe for concurrent use from several threads (its
    // documented contract); the option objects are only read after creation.
    unsafe impl Send for Db {}
    unsafe impl Sync for Db {}

    impl Db {
        /// Opens (creating if missing) the database in `dir`.
        pub fn open(dir: &Path, write_buffer_size: usize) -> Result<Db, String> {
            let name = CString::new(dir.as_os_str().as_encoded_bytes())
                .map_err(|_| "path contains a NUL byte".to_string())?;
            // SAFETY (all blocks below): constructors and setters of LevelDB option objects,
            // called on live objects; leveldb_open gets valid options, a NUL-terminated name
            // and a NULL errptr, and copies what it needs from the options.
            let options = Owned::new(unsafe { leveldb_options_create() }, leveldb_options_destroy)?;
            unsafe {
                leveldb_options_set_create_if_missing(options.as_ptr(), 1);
                leveldb_options_set_write_buffer_size(options.as_ptr(), write_buffer_size);
                // Records are mostly hashes: compression would cost time and save nothing.
                leveldb_options_set_compression(options.as_ptr(), LEVELDB_NO_COMPRESSION);
            }
            let read = Owned::new(
                unsafe { leveldb_readoptions_create() },
                leveldb_readoptions_destroy,
            )?;
            let write_sync = Owned::new(
                unsafe { leveldb_writeoptions_create() },
                leveldb_writeoptions_destroy,
            )?;
            unsafe { leveldb_writeoptions_set_sync(write_sync.as_ptr(), 1) };
            let write_nosync = Owned::new(
                unsafe { leveldb_writeoptions_create() },
                leveldb_writeoptions_destroy,
            )?;
            let mut err = std::ptr::null_mut();
            let db = unsafe { leveldb_open(options.as_ptr(), name.as_ptr(), &mut err) };
            take_error(err)?;
            Ok(Db {
                db: Owned::new(db, leveldb_close)?,
                read,
                write_sync,
                write_nosync,
            })
        }

        /// Applies `batch` atomically; with `sync`, fdatasyncs the log before returning.
        pub fn write(&mut self, batch: &Batch, sync: bool) -> Result<(), String> {
            let options = if sync {
                &self.write_sync
            } else {
                &self.write_nosync
            };
            let mut err = std::ptr::null_mut();
            // SAFETY: live database, options and batch; LevelDB does not keep the batch.
            unsafe {
                leveldb_write(
                    self.db.as_ptr(),
                    options.as_ptr(),
                    batch.0.as_ptr(),
                    &mut err,
                )
            };
            take_error(err)
        }

        /// Reads one value.
        pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
            let mut len = 0usize;
            let mut err = std::ptr::null_mut();
            // SAFETY: live database and options; key pointer and length describe `key`.
            let value = unsafe {
                leveldb_get(
                    self.db.as_ptr(),
                    self.read.as_ptr(),
                    key.as_ptr().cast(),
                    key.len(),
                    &mut len,
                    &mut err,
                )
            };
            take_error(err)?;
            if value.is_null() {
                return Ok(None);
            }
            // SAFETY: LevelDB returns a malloc()ed buffer of `len` bytes that we own; it is
            // copied, then freed exactly once.
            let bytes = unsafe { std::slice::from_raw_parts(value.cast::<u8>(), len) }.to_vec();
            unsafe { leveldb_free(value.cast()) };
            Ok(Some(bytes))
        }

        /// Calls `f(key, value)` for every key starting with `prefix`, in key order, over a
        /// consistent snapshot; then reports any error the iteration met.
        pub fn scan_prefix(
            &self,
            prefix: u8,
            mut f: impl FnMut(&[u8], &[u8]),
        ) -> Result<(), String> {
            // SAFETY: live database and options.
            let it = Owned::new(
                unsafe { leveldb_create_iterator(self.db.as_ptr(), self.read.as_ptr()) },
                leveldb_iter_destroy,
            )?;
            let start = [prefix];
            // SAFETY: the iterator lives until the end of this function, before the
            // database can close; the key and value slices are used only before the next
            // call moves the iterator.
            unsafe {
                leveldb_iter_seek(it.as_ptr(), start.as_ptr().cast(), start.len());
                while leveldb_iter_valid(it.as_ptr()) != 0 {
                    let mut klen = 0usize;
                    let k = leveldb_iter_key(it.as_ptr(), &mut klen);
                    let key = std::slice::from_raw_parts(k.cast::<u8>(), klen);
                    if key.first() != Some(&prefix) {
                        break;
                    }
                    let mut vlen = 0usize;
                    let v = leveldb_iter_value(it.as_ptr(), &mut vlen);
                    let value = std::slice::from_raw_parts(v.cast::<u8>(), vlen);
                    f(key, value);
                    leveldb_iter_next(it.as_ptr());
                }
                let mut err = std::ptr::null_mut();
                leveldb_iter_get_error(it.as_ptr(), &mut err);
                take_error(err)
            }
        }
    }

    /// A write batch: puts and deletes applied together or not at all.
    pub struct Batch(Owned<leveldb_writebatch_t>);

    impl Batch {
        pub fn new() -> Batch {
            // SAFETY: plain constructor.
            let ptr = unsafe { leveldb_writebatch_create() };
            match Owned::new(ptr, leveldb_writebatch_destroy) {
                Ok(owned) => Batch(owned),
                // C++ `new` throws (and so terminates) rather than return NULL.
                Err(_) => std::process::abort(),
            }
        }

        pub fn put(&mut self, key: &[u8], value: &[u8]) {
            // SAFETY: live batch; LevelDB copies key and value.
            unsafe {
                leveldb_writebatch_put(
                    self.0.as_ptr(),
                    key.as_ptr().cast(),
                    key.len(),
                    value.as_ptr().cast(),
                    value.len(),
                )
            }
        }

        pub fn delete(&mut self, key: &[u8]) {
            // SAFETY: live batch; LevelDB copies the key.
            unsafe { leveldb_writebatch_delete(self.0.as_ptr(), key.as_ptr().cast(), key.len()) }
        }
    }
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

    /// Writes raw bytes under a key, bypassing every check.
    fn raw_put(store: &mut ShareStore, key: &[u8], value: &[u8]) {
        let mut batch = ffi::Batch::new();
        batch.put(key, value);
        store.db.write(&batch, true).unwrap();
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
        raw_put(&mut store, &share_key(&ShareHash([0xee; 32])), b"garbage");
        // A valid record under the wrong key.
        raw_put(
            &mut store,
            &share_key(&ShareHash([0x01; 32])),
            &encode_canonical(&record(3)),
        );
        // A record whose share breaks a format rule (uncles out of order).
        let mut bad = record(4);
        bad.share.info.uncles.reverse();
        raw_put(
            &mut store,
            &share_key(&bad.share.hash()),
            &encode_canonical(&bad),
        );
        // A key of the wrong length under the share prefix.
        raw_put(&mut store, b"short", &encode_canonical(&record(5)));
        // A valid record with a trailing byte.
        let mut trailing = encode_canonical(&record(6));
        trailing.push(0);
        raw_put(&mut store, &share_key(&record(6).share.hash()), &trailing);

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
                    ..StoreOptions::default()
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
        assert_eq!(store.get_meta("network_id").unwrap(), Some(vec![0x42; 32]));
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
            raw_put(&mut store, FORMAT_KEY, &2u32.to_le_bytes());
        }
        assert!(matches!(
            ShareStore::open(dir.path()),
            Err(StoreError::UnsupportedFormat { found }) if found == 2u32.to_le_bytes()
        ));
    }

    #[test]
    fn the_largest_share_fits_a_record() {
        let mut share = sample_share();
        // The longest standard scripts (P2TR, P2WSH).
        let longest = |tag: u8| [&[tag, 0x20][..], &[tag; 32]].concat();
        assert_eq!(longest(0x51).len(), MAX_SCRIPT_LEN);
        share.info.payout_script = longest(0x51);
        let p2pkh = [&[0x76, 0xa9, 0x14][..], &[1; 20], &[0x88, 0xac]].concat();
        share.info.aux_payout_script = Some(p2pkh.clone());
        share.info.fee = Some(OperatorFee {
            basis_points: 10_000,
            script: longest(0x00),
            aux_script: Some(p2pkh),
        });
        share.info.uncles = (0..MAX_UNCLES as u8).map(|i| ShareHash([i; 32])).collect();
        share.coinbase.script_sig = vec![0; 100];
        share.merkle_branch = vec![[7; 32]; MAX_MERKLE_BRANCH];
        share.merged_mining.blocks = (0..crate::share::MAX_AUX_BLOCKS as u32)
            .map(|id| crate::share::AuxBlock {
                coinbase_script_sig: vec![0; 100],
                merkle_branch: vec![[7; 32]; MAX_MERKLE_BRANCH],
                ..crate::share::tests::sample_aux_block(id)
            })
            .collect();
        share.check_format().unwrap();
        let record = StoredShare {
            seq: u64::MAX,
            height: u64::MAX,
            chain_work: u128::MAX,
            share,
        };
        let size = encode_canonical(&record).len();
        assert!(
            size < crate::encoding::MAX_ENCODED_SIZE,
            "largest record is {size} bytes"
        );

        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        store.put(&record).unwrap();
        assert_eq!(store.load_all().unwrap().records, vec![record]);
    }

    /// Random puts, batches and removes checked against a model, across clean reopens with
    /// write buffers small enough that compactions run all the time.
    #[test]
    fn random_operations_across_reopens_match_a_model() {
        use std::collections::{BTreeMap, BTreeSet};
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        let dir = tempfile::tempdir().unwrap();
        // Every id ever written: true = present, false = removed.
        let mut model: BTreeMap<u64, bool> = BTreeMap::new();
        let mut next = 0u64;
        for round in 0..=20 {
            let options = StoreOptions {
                write_buffer_size: [16 << 10, 64 << 10][rng.usize(0..2)],
                // fdatasync is slow on a real disk and changes nothing here but durability.
                sync: rng.u32(0..4) == 0,
            };
            let mut store = ShareStore::open_with(dir.path(), &options).unwrap();
            let loaded = store.load_all().unwrap();
            assert_eq!(loaded.corrupt, 0);
            let found: BTreeSet<u64> = loaded.records.iter().map(|r| r.seq).collect();
            for (&id, &present) in &model {
                assert_eq!(
                    found.contains(&id),
                    present,
                    "seed {seed}, round {round}: id {id} should be present: {present}"
                );
            }
            assert_eq!(found.len(), model.values().filter(|&&p| p).count());
            let mut present: Vec<u64> = found.into_iter().collect();
            for _ in 0..rng.usize(0..400) {
                if rng.u32(0..100) < 30 && !present.is_empty() {
                    let n = rng.usize(1..=present.len().min(60));
                    let ids: Vec<u64> = (0..n)
                        .map(|_| present.swap_remove(rng.usize(0..present.len())))
                        .collect();
                    let hashes: Vec<ShareHash> =
                        ids.iter().map(|&i| record(i).share.hash()).collect();
                    store.remove(&hashes).unwrap();
                    for id in ids {
                        model.insert(id, false);
                    }
                } else {
                    let n = rng.usize(1..=40) as u64;
                    let records: Vec<StoredShare> = (next..next + n).map(record).collect();
                    store.put_batch(&records).unwrap();
                    for id in next..next + n {
                        model.insert(id, true);
                        present.push(id);
                    }
                    next += n;
                }
            }
        }
    }
}
