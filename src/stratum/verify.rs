//! The verification pool: a few threads that hash miners' submissions, several at a time.
//!
//! Every submission costs one proof-of-work hash (scrypt on Litecoin). Sessions queue their
//! submissions here and await the answer; each pool thread takes up to
//! [`SCRYPT_BATCH`] queued submissions at once and hashes them together
//! ([`scrypt_1024_1_1_many`]: four scrypt hashes side by side cost little more than one on
//! a CPU with AVX-512). Under light load a thread takes what is there (often one), so no
//! submission waits for a batch to fill. The pool's size bounds the CPU spent on hashing,
//! whatever the number of miners; the event loop never hashes.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use share_chain::hash::sha256d;
use share_chain::pow::{scrypt_1024_1_1_many, SCRYPT_BATCH};
use share_chain::PowAlgorithm;

/// One queued piece of work.
pub(crate) trait Check: Send {
    /// The header to hash (building it is CPU work too: coinbase and merkle root).
    fn header(&mut self) -> [u8; 80];
    /// Takes the header's proof-of-work hash and answers whoever queued the check.
    fn finish(self: Box<Self>, pow_hash: [u8; 32]);
}

struct State {
    tasks: VecDeque<Box<dyn Check>>,
    closed: bool,
    /// The most checks ever waiting at once (the server bounds it; see `verify_slots`).
    peak: usize,
}

struct Queue {
    state: Mutex<State>,
    ready: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic never happens while the lock is held (checks run outside it).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pool. Dropping it lets its threads finish what they hold and stop.
pub(crate) struct Verifier {
    queue: Arc<Queue>,
}

impl Verifier {
    /// Starts `threads` pool threads hashing with `pow`.
    pub(crate) fn start(threads: usize, pow: PowAlgorithm) -> std::io::Result<Verifier> {
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                tasks: VecDeque::new(),
                closed: false,
                peak: 0,
            }),
            ready: Condvar::new(),
        });
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("stratum-verify-{i}"))
                .spawn(move || work(&queue, pow))?;
        }
        Ok(Verifier { queue })
    }

    /// Queues a check; gives it back if the pool has stopped.
    pub(crate) fn submit(&self, check: Box<dyn Check>) -> Result<(), Box<dyn Check>> {
        let mut state = self.queue.lock();
        if state.closed {
            return Err(check);
        }
        state.tasks.push_back(check);
        state.peak = state.peak.max(state.tasks.len());
        drop(state);
        self.queue.ready.notify_one();
        Ok(())
    }

    /// Checks waiting for a thread.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queue.lock().tasks.len()
    }

    /// The most checks that ever waited for a thread at once.
    pub(crate) fn peak(&self) -> usize {
        self.queue.lock().peak
    }

    /// Stops the pool: queued checks are dropped (their sessions see a failure), threads
    /// end after their current batch.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut state = self.queue.lock();
            state.closed = true;
            std::mem::take(&mut state.tasks)
        };
        drop(dropped);
        self.queue.ready.notify_all();
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.close();
    }
}

/// One pool thread: take up to a batch, hash it, answer, repeat until closed.
fn work(queue: &Queue, pow: PowAlgorithm) {
    loop {
        let batch: Vec<Box<dyn Check>> = {
            let mut state = queue.lock();
            while state.tasks.is_empty() && !state.closed {
                state = queue.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.closed {
                return;
            }
            let n = state.tasks.len().min(SCRYPT_BATCH);
            state.tasks.drain(..n).collect()
        };
        // A check that panics (the node's `on_solution`, say) fails alone: its answer is
        // dropped, which its session reports as a verification failure.
        let mut checks = Vec::with_capacity(batch.len());
        let mut headers = Vec::with_capacity(batch.len());
        for mut check in batch {
            if let Ok(header) = catch_unwind(AssertUnwindSafe(|| check.header())) {
                headers.push(header);
                checks.push(check);
            }
        }
        let hashes = match pow {
            PowAlgorithm::Scrypt => scrypt_1024_1_1_many(&headers),
            PowAlgorithm::Sha256d => headers.iter().map(|h| sha256d(h)).collect(),
        };
        for (check, hash) in checks.into_iter().zip(hashes) {
            let _ = catch_unwind(AssertUnwindSafe(|| check.finish(hash)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use share_chain::pow::pow_hash;
    use std::sync::mpsc;
    use std::time::Duration;

    struct Hash {
        header: [u8; 80],
        out: mpsc::Sender<([u8; 80], [u8; 32])>,
    }

    impl Check for Hash {
        fn header(&mut self) -> [u8; 80] {
            self.header
        }
        fn finish(self: Box<Self>, pow_hash: [u8; 32]) {
            let _ = self.out.send((self.header, pow_hash));
        }
    }

    #[test]
    fn every_check_gets_its_own_hash() {
        let verifier = Verifier::start(2, PowAlgorithm::Scrypt).unwrap();
        let (tx, rx) = mpsc::channel();
        for i in 0..11u8 {
            let check = Hash {
                header: [i; 80],
                out: tx.clone(),
            };
            assert!(verifier.submit(Box::new(check)).is_ok());
        }
        for _ in 0..11 {
            let (header, hash) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(hash, pow_hash(PowAlgorithm::Scrypt, &header));
        }
        assert_eq!(verifier.queued(), 0);
        assert!((1..=11).contains(&verifier.peak()));
    }

    #[test]
    fn a_closed_pool_refuses_and_drops() {
        let verifier = Verifier::start(1, PowAlgorithm::Sha256d).unwrap();
        verifier.close();
        let (tx, rx) = mpsc::channel();
        let refused = verifier.submit(Box::new(Hash {
            header: [0; 80],
            out: tx,
        }));
        assert!(refused.is_err());
        drop(refused);
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    }
}
