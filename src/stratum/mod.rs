//! # Stratum v1 server: how miners get work from the node and hand back solutions
//!
//! The server speaks the line-based JSON-RPC dialect every Stratum v1 miner knows
//! (`mining.subscribe`, `authorize`, `configure` (BIP310 version rolling), `submit`,
//! `suggest_difficulty`, `extranonce.subscribe`; it sends `set_difficulty`, `notify` and
//! `set_extranonce`). It is deliberately ignorant of the share chain and the coin daemon:
//! the node plugs in through [`WorkSource`] (who may mine, and what to do with a solution)
//! and pushes jobs with [`StratumServer::broadcast`]. That keeps this layer testable alone
//! and keeps consensus decisions out of it.
//!
//! Reading order: [`server`] (listener, job fan-out, statistics) → [`session`] (one
//! connection) → [`job`] (what a job is and how a submission becomes a header) →
//! [`difficulty`] / [`vardiff`] → [`penalty`] → [`messages`] / [`username`] / [`errors`].
//!
//! Verifying a submission costs one scrypt hash (0.06–0.2 ms); that runs on a bounded pool
//! of threads ([`verify`], several hashes at once) so the event loop keeps serving every
//! other miner meanwhile. The work queued for that pool is bounded server-wide (a few
//! batches per thread); a connection whose submissions wait for a slot stops being read,
//! others go on. Invalid submissions cost their connection ([`penalty`]).

pub mod difficulty;
pub mod errors;
pub mod job;
pub mod messages;
pub mod penalty;
pub mod server;
pub mod session;
pub mod username;
pub mod vardiff;
mod verify;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use difficulty::DifficultyScale;
pub use errors::{ServerError, SessionError, StratumError};
pub use job::{Job, JobTemplate, EXTRANONCE1_SIZE, EXTRANONCE2_SIZE};
pub use penalty::InvalidSubmissionLimit;
pub use server::{Availability, StatsSnapshot, StratumConfig, StratumServer, WorkerStats};
pub use username::Username;
pub use vardiff::VardiffConfig;

/// The node's side of the server.
///
/// Both methods are called synchronously: `validate_username` on the event loop (it should
/// only decode an address), `on_solution` on a verification thread (it should hand the
/// solution to the node, e.g. through a channel, and return).
pub trait WorkSource: Send + Sync + Sized + 'static {
    /// What the node keeps about an authorized miner (its payout script, say): the result of
    /// validating the address part of the username.
    type Identity: PartialEq + Send + Sync + 'static;
    /// Opaque per-job data the node needs to turn a solution into a share or a block.
    type Payload: Send + Sync + 'static;

    /// Checks a parsed `ADDRESS[.worker][+difficulty]` username. An invalid or wrong-network
    /// address must be an `Err` with a message for the miner; the server never falls back
    /// to some other payout.
    fn validate_username(&self, username: &Username) -> Result<Self::Identity, String>;

    /// A submission met the job's share target or its block target (see the flags).
    fn on_solution(&self, solution: Solution<Self>);

    /// The job `miner` works on in place of the broadcast `job`. A P2Pool coinbase pays the
    /// miner of the share its own credit and the finder bonus, so each payout address needs
    /// its own coinbase. Called on the event loop for every job a session sends: it must not
    /// block. Return a cached job, or a future that builds it off the event loop (the
    /// session sends it when it is ready, unless a newer job came meanwhile). The default
    /// sends everyone the broadcast job as it is.
    fn personalize(
        &self,
        job: &Arc<job::Job<Self::Payload>>,
        miner: &Self::Identity,
    ) -> Personalized<Self::Payload> {
        let _ = miner;
        Personalized::Ready(job.clone())
    }
}

/// A future that yields a miner's own job (`None`: no work for that miner now).
pub type JobFuture<P> = Pin<Box<dyn Future<Output = Option<Arc<job::Job<P>>>> + Send>>;

/// What [`WorkSource::personalize`] has for a miner.
pub enum Personalized<P> {
    /// Its job, at once.
    Ready(Arc<job::Job<P>>),
    /// Its job once this future resolves.
    Later(JobFuture<P>),
    /// Nothing for now (the node cannot build its coinbase): better no job than one paying
    /// someone else.
    Nothing,
}

/// A submission that met the share target or the block target of its job.
pub struct Solution<W: WorkSource> {
    /// The 80-byte block header the miner hashed.
    pub header: [u8; 80],
    /// Its proof-of-work hash (little-endian, as compared with targets).
    pub pow_hash: [u8; 32],
    /// The full coinbase transaction: `coinb1 || extranonce1 || extranonce2 || coinb2`.
    pub coinbase: Vec<u8>,
    /// The job the miner worked on, with the node's payload.
    pub job: Arc<JobTemplate<W::Payload>>,
    pub extranonce1: [u8; EXTRANONCE1_SIZE],
    pub extranonce2: [u8; EXTRANONCE2_SIZE],
    pub ntime: u32,
    pub nonce: u32,
    /// The header's version after version rolling.
    pub version: u32,
    /// Who found it: the identity returned by [`WorkSource::validate_username`].
    pub miner: Arc<W::Identity>,
    /// The username as the miner sent it in `mining.submit`.
    pub username: String,
    pub meets_share_target: bool,
    /// The node should submit the block to the coin daemon at once.
    pub meets_block_target: bool,
    /// It may be a block of an aux chain (merged mining).
    pub meets_aux_target: bool,
}
