//! The kill -9 test of the share store: acknowledged writes survive the sudden death of the
//! process, and the store always reopens.
//!
//! The test re-executes its own binary as a writer child (selected by an environment
//! variable) that opens the store and loops over puts, batches and removes, printing an
//! intent line before each operation and an acknowledgement after it returns. The parent
//! reads those lines and kills the child with SIGKILL (`Child::kill`) at random points: while
//! it opens and recovers the store, right after, during heavy writing, at random delays.
//! After every kill the parent reopens the store and checks:
//! - it opens, and no record is corrupt;
//! - every acknowledged put is present and byte-identical, every acknowledged remove absent;
//! - the operation in flight at the kill happened entirely or not at all;
//! - nothing else is there.
//!
//! `STORE_CRASH_SEED` fixes the random choices (the seed is printed); `STORE_CRASH_ROUNDS`
//! changes the number of rounds (default 20).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use share_chain::encoding::encode_canonical;
use share_chain::store::{ShareStore, StoreOptions, StoredShare};
use share_chain::testkit::synthetic_share;
use share_chain::ShareHash;

const TEST_NAME: &str = "kill_9_never_loses_acknowledged_writes";
/// Set in the child: `dir|seed|first_id|write_buffer_size|sync (0 or 1)`.
const WRITER_ENV: &str = "P2POOL_STORE_CRASH_WRITER";
/// The writer stops writing (and waits to be killed) after this many operations.
const WRITER_MAX_OPS: usize = 4000;
/// Above this many records the writer removes more than it adds, bounding the store.
const WRITER_TARGET_RECORDS: usize = 3000;
/// Ids of round `r` start at `r * ID_STRIDE`, so rounds never reuse an id.
const ID_STRIDE: u64 = 1 << 32;
/// Total time budget; rounds stop early past it (at least MIN_ROUNDS run).
const TIME_BUDGET: Duration = Duration::from_secs(45);
const MIN_ROUNDS: usize = 8;
/// Longest wait for the child's next line before the round is declared hung.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// A realistic record, a pure function of `id`: 22-byte P2WPKH payout script, 8-entry
/// merkle branch, 2 uncles. Its share hash differs for every id.
fn make_record(id: u64) -> StoredShare {
    StoredShare {
        seq: id,
        height: id % 1_000_000,
        chain_work: u128::from(id) * 0x1_0000_0000_0001,
        share: synthetic_share(id),
    }
}

#[test]
fn kill_9_never_loses_acknowledged_writes() {
    if let Ok(spec) = std::env::var(WRITER_ENV) {
        run_writer(&spec);
    }
    run_parent();
}

// ---------------------------------------------------------------------------------------
// The writer child.

fn run_writer(spec: &str) -> ! {
    let parts: Vec<&str> = spec.split('|').collect();
    let [dir, seed, first_id, buffer, sync] = parts.as_slice() else {
        fail_child(&format!("bad writer spec {spec:?}"));
    };
    let parse = |s: &str| -> u64 { s.parse().unwrap_or_else(|_| fail_child("bad number")) };
    let mut rng = fastrand::Rng::with_seed(parse(seed));
    let mut next_id = parse(first_id);
    let options = StoreOptions {
        write_buffer_size: parse(buffer) as usize,
        sync: *sync == "1",
    };
    let mut store = ShareStore::open_with(Path::new(dir), &options)
        .unwrap_or_else(|e| fail_child(&format!("open: {e}")));
    let loaded = store
        .load_all()
        .unwrap_or_else(|e| fail_child(&format!("load: {e}")));
    let mut present: Vec<u64> = loaded.records.iter().map(|r| r.seq).collect();
    let mut out = std::io::stdout().lock();
    let mut say = |line: &str| {
        // One write per line, flushed at once: a printed line is an acknowledgement.
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            std::process::exit(4);
        }
    };
    // The test harness has already printed "test <name> ... " without a newline.
    say(&format!("\nready {}", present.len()));

    for _ in 0..WRITER_MAX_OPS {
        let remove_bias = if present.len() > WRITER_TARGET_RECORDS {
            60
        } else {
            20
        };
        let roll = rng.u32(0..100);
        if roll < remove_bias && !present.is_empty() {
            let n = rng.usize(1..=present.len().min(60));
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(present.swap_remove(rng.usize(0..present.len())));
            }
            say(&format!("? R {}", join(&ids)));
            let hashes: Vec<ShareHash> =
                ids.iter().map(|&id| make_record(id).share.hash()).collect();
            store
                .remove(&hashes)
                .unwrap_or_else(|e| fail_child(&format!("remove: {e}")));
        } else if roll < remove_bias + 40 {
            // Batches; one in ten is over 64 kB, spanning several 32 kB log blocks.
            let n = if rng.u32(0..10) == 0 {
                rng.usize(100..=300)
            } else {
                rng.usize(2..=40)
            };
            let ids: Vec<u64> = (next_id..next_id + n as u64).collect();
            next_id += n as u64;
            say(&format!("? B {}", join(&ids)));
            let records: Vec<StoredShare> = ids.iter().map(|&id| make_record(id)).collect();
            store
                .put_batch(&records)
                .unwrap_or_else(|e| fail_child(&format!("put_batch: {e}")));
            present.extend(ids);
        } else {
            let id = next_id;
            next_id += 1;
            say(&format!("? P {id}"));
            store
                .put(&make_record(id))
                .unwrap_or_else(|e| fail_child(&format!("put: {e}")));
            present.push(id);
        }
        say("!");
    }
    say("idle");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn fail_child(why: &str) -> ! {
    println!("error {why}");
    std::process::exit(3);
}

fn join(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

// ---------------------------------------------------------------------------------------
// The parent.

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u64>),
    Remove(Vec<u64>),
}

/// When a round kills its child.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// A fixed delay after spawning, usually while the store opens and recovers.
    DuringOpen(Duration),
    /// As soon as the child says it opened the store.
    AfterReady,
    /// After this many acknowledged operations.
    AfterAcks(usize),
    /// A random delay, anywhere in the writing.
    AfterDelay(Duration),
}

/// Kills the child if the parent panics before it does.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Totals {
    acks: usize,
    killed_before_ready: usize,
    in_flight_applied: usize,
    in_flight_not_applied: usize,
}

fn run_parent() {
    let seed = std::env::var("STORE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let rounds: usize = std::env::var("STORE_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("store crash test: seed {seed}, {rounds} rounds (STORE_CRASH_SEED to repeat)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    // Acknowledged state of every id ever written: true = present, false = removed.
    let mut model: BTreeMap<u64, bool> = BTreeMap::new();
    let mut totals = Totals::default();
    let started = Instant::now();

    let mut round = 0;
    while round < rounds && (round < MIN_ROUNDS || started.elapsed() < TIME_BUDGET) {
        let kill_at = match round % 4 {
            0 => KillAt::DuringOpen(Duration::from_millis(rng.u64(0..=40))),
            1 => KillAt::AfterReady,
            2 => KillAt::AfterAcks(rng.usize(1..=1500)),
            _ => KillAt::AfterDelay(Duration::from_millis(rng.u64(20..=1500))),
        };
        let write_buffer_size = [32 << 10, 64 << 10, 256 << 10, 4 << 20][rng.usize(0..4)];
        // Both durability modes must survive kill -9; sync only adds power-loss safety.
        let sync = rng.bool();
        let spec = format!(
            "{}|{}|{}|{}|{}",
            dir.path().display(),
            rng.u64(..),
            (round as u64 + 1) * ID_STRIDE,
            write_buffer_size,
            u8::from(sync)
        );
        let outcome = run_round(&spec, kill_at);
        totals.acks += outcome.acked.len();
        if !outcome.ready {
            totals.killed_before_ready += 1;
        }
        for op in &outcome.acked {
            apply(&mut model, op);
        }
        // Verification reopens the store, which recovers and rewrites it: keep a copy of the
        // files exactly as the kill left them, to look at if the check fails.
        let as_killed = copy_dir(dir.path());
        let applied = match verify(dir.path(), &mut model, outcome.in_flight.as_ref()) {
            Ok(applied) => applied,
            Err(why) => {
                let kept = as_killed.keep();
                panic!(
                    "round {round} ({kill_at:?}, seed {seed}): {why}; the store as the kill \
                     left it is in {}",
                    kept.display()
                );
            }
        };
        match applied {
            Some(true) => totals.in_flight_applied += 1,
            Some(false) => totals.in_flight_not_applied += 1,
            None => {}
        }
        println!(
            "round {round:2}: {kill_at:?}, buffer {write_buffer_size}, sync {sync}, open after \
             {:?}, killed after {:?}, {} acks, in flight {}, store holds {} records",
            outcome.ready_after,
            outcome.killed_after,
            outcome.acked.len(),
            match applied {
                Some(true) => "applied",
                Some(false) => "not applied",
                None => "none",
            },
            model.values().filter(|&&present| present).count()
        );
        round += 1;
    }
    println!(
        "{round} rounds in {:.1} s: {} acknowledged operations, {} kills before the store \
         was open, in-flight operations applied {} / not applied {}",
        started.elapsed().as_secs_f64(),
        totals.acks,
        totals.killed_before_ready,
        totals.in_flight_applied,
        totals.in_flight_not_applied
    );
    assert!(totals.acks > 0, "no round acknowledged anything");
}

struct RoundOutcome {
    ready: bool,
    /// When the parent saw the child's "ready" (the store open), if it did before the kill.
    ready_after: Option<Duration>,
    /// When the kill was sent.
    killed_after: Duration,
    acked: Vec<Op>,
    in_flight: Option<Op>,
}

fn run_round(spec: &str, kill_at: KillAt) -> RoundOutcome {
    let exe = std::env::current_exe().expect("own executable");
    let child = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(WRITER_ENV, spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writer");
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().expect("child stdout");
    let lines = spawn_line_reader(stdout);
    let spawned = Instant::now();

    let mut outcome = RoundOutcome {
        ready: false,
        ready_after: None,
        killed_after: Duration::ZERO,
        acked: Vec::new(),
        in_flight: None,
    };
    loop {
        let due = match kill_at {
            KillAt::DuringOpen(delay) => spawned.elapsed() >= delay,
            KillAt::AfterReady => outcome.ready,
            KillAt::AfterAcks(n) => outcome.acked.len() >= n,
            KillAt::AfterDelay(delay) => spawned.elapsed() >= delay,
        };
        if due {
            break;
        }
        let wait = match kill_at {
            KillAt::DuringOpen(delay) | KillAt::AfterDelay(delay) => {
                delay.saturating_sub(spawned.elapsed())
            }
            _ => LINE_TIMEOUT,
        };
        match lines.recv_timeout(wait) {
            Ok(line) => {
                let flow = handle_line(&line, &mut outcome);
                if outcome.ready && outcome.ready_after.is_none() {
                    outcome.ready_after = Some(spawned.elapsed());
                }
                if flow == Flow::Idle {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if matches!(kill_at, KillAt::AfterReady | KillAt::AfterAcks(_)) {
                    panic!("writer printed nothing for {LINE_TIMEOUT:?}");
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.0.wait();
                panic!("writer exited on its own: {status:?}");
            }
        }
    }
    // SIGKILL: Child::kill on Unix.
    outcome.killed_after = spawned.elapsed();
    child.0.kill().expect("kill the writer");
    let status = child.0.wait().expect("reap the writer");
    assert!(!status.success(), "writer was not killed: {status:?}");
    // Lines already in the pipe were printed before the kill: they count.
    for line in lines.iter() {
        handle_line(&line, &mut outcome);
    }
    outcome
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Idle,
}

fn handle_line(line: &str, outcome: &mut RoundOutcome) -> Flow {
    let Some(line) = line.strip_suffix('\n') else {
        // A partial last line was cut by the kill; it acknowledges nothing.
        return Flow::Continue;
    };
    let parse_ids = |s: &str| -> Vec<u64> {
        s.split(',')
            .map(|id| id.parse().expect("id in writer line"))
            .collect()
    };
    if line.starts_with("ready ") {
        outcome.ready = true;
    } else if let Some(ids) = line.strip_prefix("? P ") {
        outcome.in_flight = Some(Op::Put(parse_ids(ids)));
    } else if let Some(ids) = line.strip_prefix("? B ") {
        outcome.in_flight = Some(Op::Put(parse_ids(ids)));
    } else if let Some(ids) = line.strip_prefix("? R ") {
        outcome.in_flight = Some(Op::Remove(parse_ids(ids)));
    } else if line == "!" {
        let op = outcome.in_flight.take().expect("ack without an operation");
        outcome.acked.push(op);
    } else if line == "idle" {
        return Flow::Idle;
    } else if let Some(why) = line.strip_prefix("error ") {
        panic!("writer failed: {why}");
    }
    // Anything else is the test harness talking.
    Flow::Continue
}

fn spawn_line_reader(stdout: std::process::ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

fn apply(model: &mut BTreeMap<u64, bool>, op: &Op) {
    match op {
        Op::Put(ids) => ids.iter().for_each(|&id| {
            model.insert(id, true);
        }),
        Op::Remove(ids) => ids.iter().for_each(|&id| {
            model.insert(id, false);
        }),
    }
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::Builder::new()
        .prefix("store-crash-as-killed-")
        .tempdir()
        .expect("temp dir");
    for entry in std::fs::read_dir(from).expect("read store dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.path().join(entry.file_name())).expect("copy store file");
    }
    to
}

/// Reopens the store and checks it against the model; returns whether the in-flight
/// operation (if any) was applied, and folds it into the model.
fn verify(
    dir: &Path,
    model: &mut BTreeMap<u64, bool>,
    in_flight: Option<&Op>,
) -> Result<Option<bool>, String> {
    let mut store =
        ShareStore::open(dir).map_err(|e| format!("store does not reopen after kill -9: {e}"))?;
    let loaded = store.load_all().map_err(|e| format!("load_all: {e}"))?;
    if loaded.corrupt != 0 {
        return Err(format!("{} corrupt records", loaded.corrupt));
    }
    let len = store.len().map_err(|e| format!("len: {e}"))?;
    if len != loaded.records.len() {
        return Err(format!(
            "len {len} disagrees with load_all ({})",
            loaded.records.len()
        ));
    }
    let mut found: BTreeMap<u64, StoredShare> = BTreeMap::new();
    for record in loaded.records {
        let seq = record.seq;
        if encode_canonical(&record) != encode_canonical(&make_record(seq)) {
            return Err(format!("record {seq} is not byte-identical"));
        }
        if found.insert(seq, record).is_some() {
            return Err(format!("seq {seq} twice"));
        }
    }

    // The operation in flight at the kill: all or nothing.
    let mut applied = None;
    if let Some(op) = in_flight {
        let (ids, applied_means_present) = match op {
            Op::Put(ids) => (ids, true),
            Op::Remove(ids) => (ids, false),
        };
        let present = ids.iter().filter(|id| found.contains_key(id)).count();
        if present != 0 && present != ids.len() {
            return Err(format!(
                "in-flight {op:?} half applied ({present} of {} present)",
                ids.len()
            ));
        }
        let done = (present == ids.len()) == applied_means_present;
        if done {
            apply(model, op);
        }
        applied = Some(done);
    }

    for (&id, &present) in model.iter() {
        if present && !found.contains_key(&id) {
            return Err(format!("acknowledged put of {id} lost"));
        }
        if !present && found.contains_key(&id) {
            return Err(format!("acknowledged remove of {id} undone"));
        }
    }
    if let Some(id) = found.keys().find(|id| !model.contains_key(id)) {
        return Err(format!("record {id} was never written"));
    }
    Ok(applied)
}
