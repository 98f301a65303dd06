//! One Stratum session driven from raw bytes without a socket, for the `stratum_line` fuzz
//! target (fuzz/fuzz_targets/stratum_line.rs).
//!
//! The bytes take exactly the path of what [`Session::run`] reads from a miner: the TLS
//! check, line splitting and the line limit, the flood limit, JSON parsing, every method's
//! parameter parsing and validation (usernames against real regtest addresses), and
//! submissions hashed on a real verification pool against a real job. Only the socket and
//! the timers are left out. Not part of the node's API.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use share_chain::address::address_to_script;
use share_chain::testkit::regtest_preset;
use share_chain::{CoinParams, Target};

use super::{Pending, Session, TLS_HANDSHAKE_RECORD};
use crate::stratum::difficulty::DifficultyScale;
use crate::stratum::errors::SessionError;
use crate::stratum::job::{Job, JobTemplate};
use crate::stratum::server::{Shared, StratumConfig};
use crate::stratum::{Solution, Username, WorkSource};

/// A work source like the node's: usernames must carry a regtest address.
struct FuzzWork {
    coin: CoinParams,
}

impl WorkSource for FuzzWork {
    type Identity = Vec<u8>;
    type Payload = ();

    fn validate_username(&self, username: &Username) -> Result<Vec<u8>, String> {
        address_to_script(&username.address, &self.coin).map_err(|e| e.to_string())
    }

    fn on_solution(&self, _: Solution<Self>) {}
}

/// What the session did with the input.
pub struct Outcome {
    /// Everything the session would have written to the miner.
    pub output: Vec<u8>,
    /// `Err` if the session ended the connection.
    pub result: Result<(), SessionError>,
    /// Every difficulty the session holds or told the miner (all must be usable).
    pub difficulties: Vec<f64>,
}

/// A regtest job (the block and share targets of regtest, so most submissions are
/// solutions and the whole submission path runs).
fn job(seq: u64, time: u32) -> Job<()> {
    let target = Target::from_compact(0x207f_ffff).unwrap_or(Target::MAX);
    let template = JobTemplate {
        prev_hash: [seq as u8; 32],
        coinb1: vec![1, 0, 0, 0, 1, 0, 0, 0, 0, 0x20],
        coinb2: vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0],
        merkle_branch: vec![[7; 32]],
        version: 0x2000_0000,
        bits: 0x207f_ffff,
        time,
        share_target: target,
        block_target: target,
        aux_target: None,
        clean: true,
        payload: (),
    };
    // The template is within every bound `Job::new` checks.
    Job::new(seq, template).unwrap_or_else(|e| panic!("fuzz job template refused: {e}"))
}

/// Feeds `input` to a fresh subscribed-nothing session as if a miner had sent it in one
/// read, answers every submission, then broadcasts a new job and renews extranonces.
pub fn drive(input: &[u8]) -> Outcome {
    let coin = regtest_preset("").coin;
    let config = StratumConfig {
        verify_threads: 1,
        ..StratumConfig::default()
    };
    let shared = match Shared::new(
        config,
        DifficultyScale::from_coin(&coin),
        coin.pow,
        Arc::new(FuzzWork { coin: coin.clone() }),
    ) {
        Ok(shared) => Arc::new(shared),
        Err(e) => panic!("cannot start the verification pool: {e}"),
    };
    shared
        .jobs
        .send_replace(Some(Arc::new(job(1, 1_700_000_000))));
    let mut session = Session::new(shared.clone(), SocketAddr::from(([127, 0, 0, 1], 1)));
    session.current_job = shared.jobs.borrow().clone();
    session.last_prev_hash = session.current_job.as_ref().map(|j| j.template.prev_hash);

    let mut output = Vec::new();
    let result = run(&mut session, input, &mut output);
    if result.is_ok() {
        session.on_new_job(Arc::new(job(2, 1_700_000_600)));
        session.renew_extranonce();
        output.append(&mut session.out);
    }
    let mut difficulties = vec![session.difficulty];
    difficulties.extend(session.sent_difficulty);
    difficulties.extend(session.fixed_difficulty);
    difficulties.extend(session.jobs.iter().map(|j| j.difficulty));
    Outcome {
        output,
        result,
        difficulties,
    }
}

/// The read side of `Session::run` for one buffer: process, then answer what was queued
/// for verification, until no complete line is left.
fn run(
    session: &mut Session<FuzzWork>,
    input: &[u8],
    output: &mut Vec<u8>,
) -> Result<(), SessionError> {
    if input.first() == Some(&TLS_HANDSHAKE_RECORD) {
        return Err(SessionError::TlsOnPlainPort);
    }
    let mut buf = input.to_vec();
    let mut pending: Pending = Pending::new();
    loop {
        session.process_buffered(&mut buf, &mut pending)?;
        output.append(&mut session.out);
        match futures::executor::block_on(pending.next()) {
            Some(done) => {
                // The penalty for invalid submissions may close the session here.
                if let Err(e) = session.finish_submit(done) {
                    output.append(&mut session.out);
                    return Err(e);
                }
            }
            None => return Ok(()),
        }
    }
}
