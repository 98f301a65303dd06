//! A job as miners see it, and how a submission against it becomes a block header.
//!
//! The node hands the server a [`JobTemplate`] (the standard `mining.notify` fields plus
//! the share and block targets and the node's own payload). The server turns it into a
//! [`Job`] once, preparing the `mining.notify` text every session sends, so a broadcast to
//! ten thousand miners formats nothing twice.
//!
//! A miner's submission rebuilds the header exactly as the miner did:
//! `coinbase = coinb1 || extranonce1 || extranonce2 || coinb2`, its txid `sha256d`, the
//! merkle root by folding the branch (`h = sha256d(h || b)`), then
//! `version || prev_hash || merkle_root || ntime || bits || nonce`, each integer
//! little-endian. The hex fields of `mining.submit` (`ntime`, `nonce`, version bits) are
//! the big-endian spelling of those integers, as every Stratum miner writes them.

use std::sync::Arc;

use share_chain::hash::sha256d;
use share_chain::merkle::merkle_root_from_branch;
use share_chain::pow::pow_hash;
use share_chain::{BlockHeader, PowAlgorithm, Target};

use super::errors::StratumError;

/// Bytes of extranonce1 (per connection, chosen by the server).
pub const EXTRANONCE1_SIZE: usize = 4;
/// Bytes of extranonce2 (rolled by the miner).
pub const EXTRANONCE2_SIZE: usize = 4;
/// Longest coinbase part accepted in a template (a 4 MWU block's coinbase cannot be larger).
pub const MAX_COINBASE_PART: usize = 1 << 20;
/// Deepest merkle branch accepted (2^32 transactions).
pub const MAX_MERKLE_BRANCH: usize = 32;

/// Everything a miner needs for one job, plus what the node needs back.
#[derive(Clone, Debug)]
pub struct JobTemplate<P> {
    /// Previous block hash, internal byte order (as in the header).
    pub prev_hash: [u8; 32],
    /// Coinbase bytes before the extranonces.
    pub coinb1: Vec<u8>,
    /// Coinbase bytes after the extranonces.
    pub coinb2: Vec<u8>,
    /// Merkle branch of the coinbase (internal byte order), leaf side first.
    pub merkle_branch: Vec<[u8; 32]>,
    pub version: u32,
    /// Compact block target, as in the header.
    pub bits: u32,
    /// Header time the job starts from.
    pub time: u32,
    /// A hash at or under this is a share of the share chain.
    pub share_target: Target,
    /// A hash at or under this is a block of the coin.
    pub block_target: Target,
    /// A hash at or under this may be a block of an aux chain (the easiest of the job's aux
    /// targets; the node checks each chain's own).
    pub aux_target: Option<Target>,
    /// Miners must drop older jobs (new block, or the older jobs are useless).
    pub clean: bool,
    /// The node's own data for turning a solution into a share or block.
    pub payload: P,
}

/// A job prepared for broadcast: the template and the fixed part of its notify message.
#[derive(Debug)]
pub struct Job<P> {
    /// Server-wide sequence number (sessions give miners their own job ids).
    pub seq: u64,
    pub template: Arc<JobTemplate<P>>,
    /// The share target: a session's pseudo-share target is never harder, so no miner ever
    /// withholds a share for want of difficulty. Nor a block, where blocks are harder than
    /// shares (every real network). Where they are easier (regtest, on which nearly every
    /// hash is a block) a miner only reports the blocks that are also shares (capping at
    /// the block target would have it submit half its hashes); a block it does report
    /// below its session difficulty is still taken, never discarded.
    pub easiest_target: Target,
    /// `","prevhash","coinb1","coinb2",[branch],"version","bits","time",` — everything
    /// between the job id and `clean_jobs`.
    notify_middle: String,
}

const NOTIFY_PREFIX: &str = r#"{"id":null,"method":"mining.notify","params":[""#;

impl<P> Job<P> {
    /// Prepares `template`; refuses templates no miner could work on.
    pub fn new(seq: u64, template: JobTemplate<P>) -> Result<Self, String> {
        if template.coinb1.len() > MAX_COINBASE_PART || template.coinb2.len() > MAX_COINBASE_PART {
            return Err("coinbase part too large".into());
        }
        if template.merkle_branch.len() > MAX_MERKLE_BRANCH {
            return Err("merkle branch too deep".into());
        }
        let branch: Vec<String> = template
            .merkle_branch
            .iter()
            .map(|h| format!("\"{}\"", hex::encode(h)))
            .collect();
        let notify_middle = format!(
            "\",\"{}\",\"{}\",\"{}\",[{}],\"{:08x}\",\"{:08x}\",\"{:08x}\",",
            prevhash_hex(&template.prev_hash),
            hex::encode(&template.coinb1),
            hex::encode(&template.coinb2),
            branch.join(","),
            template.version,
            template.bits,
            template.time,
        );
        let easiest_target = template.share_target;
        Ok(Job {
            seq,
            template: Arc::new(template),
            easiest_target,
            notify_middle,
        })
    }

    /// The complete `mining.notify` line (with its newline) under `job_id`.
    pub fn notify_line(&self, job_id: &str, clean: bool) -> Vec<u8> {
        let tail: &str = if clean { "true]}\n" } else { "false]}\n" };
        let mut line = Vec::with_capacity(
            NOTIFY_PREFIX.len() + job_id.len() + self.notify_middle.len() + tail.len(),
        );
        line.extend_from_slice(NOTIFY_PREFIX.as_bytes());
        line.extend_from_slice(job_id.as_bytes());
        line.extend_from_slice(self.notify_middle.as_bytes());
        line.extend_from_slice(tail.as_bytes());
        line
    }
}

/// Stratum's spelling of the previous block hash: the internal byte order with each 4-byte
/// word reversed (miners undo it word by word).
pub fn prevhash_hex(prev_hash: &[u8; 32]) -> String {
    let mut swapped = *prev_hash;
    for word in swapped.chunks_exact_mut(4) {
        word.reverse();
    }
    hex::encode(swapped)
}

/// The fields of a `mining.submit`, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Submission {
    pub extranonce2: [u8; EXTRANONCE2_SIZE],
    pub ntime: u32,
    pub nonce: u32,
    /// The 6th parameter (BIP310 version bits), if sent.
    pub version_bits: Option<u32>,
}

impl Submission {
    /// Decodes the hex fields, refusing wrong lengths and non-hex text.
    pub fn parse(
        extranonce2: &str,
        ntime: &str,
        nonce: &str,
        version_bits: Option<&str>,
    ) -> Result<Submission, StratumError> {
        let mut en2 = [0u8; EXTRANONCE2_SIZE];
        if extranonce2.len() != 2 * EXTRANONCE2_SIZE {
            return Err(StratumError::malformed(
                "extranonce2",
                format!("expected {} hex digits", 2 * EXTRANONCE2_SIZE),
            ));
        }
        hex::decode_to_slice(extranonce2, &mut en2)
            .map_err(|e| StratumError::malformed("extranonce2", e.to_string()))?;
        Ok(Submission {
            extranonce2: en2,
            ntime: parse_u32_hex("ntime", ntime, true)?,
            nonce: parse_u32_hex("nonce", nonce, true)?,
            version_bits: version_bits
                .map(|v| parse_u32_hex("version bits", v, false))
                .transpose()?,
        })
    }
}

/// A big-endian hex u32: exactly 8 digits when `exact`, else 1 to 8.
fn parse_u32_hex(field: &'static str, s: &str, exact: bool) -> Result<u32, StratumError> {
    let len_ok = if exact {
        s.len() == 8
    } else {
        (1..=8).contains(&s.len())
    };
    if !len_ok || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StratumError::malformed(field, "expected 8 hex digits"));
    }
    u32::from_str_radix(s, 16).map_err(|e| StratumError::malformed(field, e.to_string()))
}

/// Checks `ntime`: not before the job's time (the template's `mintime`), and at most
/// `max_future_secs` ahead of `now` (unix seconds).
///
/// The upper bound is the share chain's own (`max_future_secs` of the preset, against the
/// same clock): a larger one would have miners told "accepted" for shares every node then
/// refuses, a smaller one would refuse shares the chain takes.
pub fn check_ntime(
    job_time: u32,
    ntime: u32,
    now: u64,
    max_future_secs: u32,
) -> Result<(), StratumError> {
    if ntime < job_time {
        return Err(StratumError::NtimeTooEarly {
            ntime,
            min: job_time,
        });
    }
    let max = now.saturating_add(u64::from(max_future_secs));
    if u64::from(ntime) > max {
        return Err(StratumError::NtimeTooFar {
            ntime,
            max: u32::try_from(max).unwrap_or(u32::MAX),
            max_future_secs,
        });
    }
    Ok(())
}

/// The header version after BIP310 rolling: `(job & !mask) | (bits & mask)`.
///
/// Miners spell the 6th parameter two ways: only the rolled bits, or the whole rolled
/// version. Both are accepted; anything that changes a bit outside the negotiated mask
/// is refused.
pub fn rolled_version(job_version: u32, mask: u32, bits: Option<u32>) -> Result<u32, StratumError> {
    let Some(bits) = bits else {
        return Ok(job_version);
    };
    let outside = bits & !mask;
    if outside != 0 && outside != job_version & !mask {
        return Err(StratumError::VersionOutsideMask { bits, mask });
    }
    Ok((job_version & !mask) | (bits & mask))
}

/// `coinb1 || extranonce1 || extranonce2 || coinb2`.
pub fn coinbase<P>(
    template: &JobTemplate<P>,
    extranonce1: &[u8; EXTRANONCE1_SIZE],
    extranonce2: &[u8; EXTRANONCE2_SIZE],
) -> Vec<u8> {
    let mut tx = Vec::with_capacity(
        template.coinb1.len() + EXTRANONCE1_SIZE + EXTRANONCE2_SIZE + template.coinb2.len(),
    );
    tx.extend_from_slice(&template.coinb1);
    tx.extend_from_slice(extranonce1);
    tx.extend_from_slice(extranonce2);
    tx.extend_from_slice(&template.coinb2);
    tx
}

/// The 80-byte header ([`BlockHeader::to_bytes`], the one serialization of it).
pub fn header(
    version: u32,
    prev_hash: &[u8; 32],
    merkle_root: &[u8; 32],
    ntime: u32,
    bits: u32,
    nonce: u32,
) -> [u8; 80] {
    BlockHeader {
        // The header's version field is the same 4 bytes either way.
        version: version as i32,
        prev_block: *prev_hash,
        merkle_root: *merkle_root,
        time: ntime,
        bits,
        nonce,
    }
    .to_bytes()
}

/// What one submission amounts to.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub header: [u8; 80],
    pub pow_hash: [u8; 32],
    pub coinbase: Vec<u8>,
    /// Meets the session's pseudo-share target.
    pub meets_session_target: bool,
    pub meets_share_target: bool,
    pub meets_block_target: bool,
    pub meets_aux_target: bool,
}

impl Verdict {
    /// Whether the submission counts at all.
    pub fn accepted(&self) -> bool {
        self.meets_session_target || self.meets_share_target || self.meets_block_target
    }
}

/// Rebuilds the header of a submission and hashes it (the expensive part: run it off the
/// event loop).
pub fn verify<P>(
    pow: PowAlgorithm,
    template: &JobTemplate<P>,
    extranonce1: &[u8; EXTRANONCE1_SIZE],
    submission: &Submission,
    version: u32,
    session_target: Target,
) -> Verdict {
    let (coinbase, header) = submitted_header(template, extranonce1, submission, version);
    let pow_hash = pow_hash(pow, &header);
    judge(template, header, coinbase, pow_hash, session_target)
}

/// The coinbase and the 80-byte header a submission claims to have hashed.
pub fn submitted_header<P>(
    template: &JobTemplate<P>,
    extranonce1: &[u8; EXTRANONCE1_SIZE],
    submission: &Submission,
    version: u32,
) -> (Vec<u8>, [u8; 80]) {
    let coinbase = coinbase(template, extranonce1, &submission.extranonce2);
    let root = merkle_root_from_branch(sha256d(&coinbase), &template.merkle_branch);
    let header = header(
        version,
        &template.prev_hash,
        &root,
        submission.ntime,
        template.bits,
        submission.nonce,
    );
    (coinbase, header)
}

/// What a header with proof-of-work hash `pow_hash` amounts to against the job's targets.
pub fn judge<P>(
    template: &JobTemplate<P>,
    header: [u8; 80],
    coinbase: Vec<u8>,
    pow_hash: [u8; 32],
    session_target: Target,
) -> Verdict {
    Verdict {
        header,
        pow_hash,
        coinbase,
        meets_session_target: session_target.is_met_by(&pow_hash),
        meets_share_target: template.share_target.is_met_by(&pow_hash),
        meets_block_target: template.block_target.is_met_by(&pow_hash),
        meets_aux_target: template.aux_target.is_some_and(|t| t.is_met_by(&pow_hash)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn template() -> JobTemplate<()> {
        JobTemplate {
            prev_hash: [7u8; 32],
            coinb1: vec![1, 2, 3],
            coinb2: vec![4, 5],
            merkle_branch: vec![[9u8; 32], [10u8; 32]],
            version: 0x2000_0000,
            bits: 0x207f_ffff,
            time: 1_700_000_000,
            share_target: Target::MAX,
            block_target: Target::from_compact(0x207f_ffff).unwrap(),
            aux_target: None,
            clean: true,
            payload: (),
        }
    }

    #[test]
    fn prevhash_is_word_swapped() {
        let mut prev = [0u8; 32];
        for (i, b) in prev.iter_mut().enumerate() {
            *b = i as u8;
        }
        let s = prevhash_hex(&prev);
        assert!(s.starts_with("0302010007060504"), "{s}");
        assert!(s.ends_with("1f1e1d1c"), "{s}");
    }

    #[test]
    fn notify_line_is_valid_json_with_standard_fields() {
        let job = Job::new(1, template()).unwrap();
        let line = job.notify_line("2a", true);
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["method"], "mining.notify");
        let p = v["params"].as_array().unwrap();
        assert_eq!(p.len(), 9);
        assert_eq!(p[0], "2a");
        assert_eq!(p[2], "010203");
        assert_eq!(p[3], "0405");
        assert_eq!(p[4].as_array().unwrap().len(), 2);
        assert_eq!(p[5], "20000000");
        assert_eq!(p[6], "207fffff");
        assert_eq!(p[7], format!("{:08x}", 1_700_000_000u32));
        assert_eq!(p[8], true);
        let v: serde_json::Value = serde_json::from_slice(&job.notify_line("2b", false)).unwrap();
        assert_eq!(v["params"][8], false);
    }

    #[test]
    fn submission_fields_are_checked() {
        let s = Submission::parse("0000002a", "6553f100", "deadbeef", Some("00002000")).unwrap();
        assert_eq!(s.extranonce2, [0, 0, 0, 0x2a]);
        assert_eq!(s.ntime, 0x6553f100);
        assert_eq!(s.nonce, 0xdeadbeef);
        assert_eq!(s.version_bits, Some(0x2000));
        for (en2, ntime, nonce, v) in [
            ("00002a", "6553f100", "deadbeef", None),
            ("0000002a00", "6553f100", "deadbeef", None),
            ("zz00002a", "6553f100", "deadbeef", None),
            ("0000002a", "6553f1", "deadbeef", None),
            ("0000002a", "6553f100", "deadbeefaa", None),
            ("0000002a", "6553f100", "+eadbeef", None),
            ("0000002a", "6553f100", "deadbeef", Some("")),
            ("0000002a", "6553f100", "deadbeef", Some("123456789")),
        ] {
            let e = Submission::parse(en2, ntime, nonce, v).unwrap_err();
            assert_eq!(e.code(), 20, "{en2} {ntime} {nonce} {v:?}");
        }
    }

    #[test]
    fn ntime_window() {
        let now = 1_000_000;
        assert!(check_ntime(1000, 1000, now, 60).is_ok());
        assert!(check_ntime(1000, 999, now, 60).is_err());
        // The bound is the node's clock plus the preset's allowance, not the job's time.
        assert!(check_ntime(1000, 1_000_060, now, 60).is_ok());
        assert_eq!(
            check_ntime(1000, 1_000_061, now, 60),
            Err(StratumError::NtimeTooFar {
                ntime: 1_000_061,
                max: 1_000_060,
                max_future_secs: 60
            })
        );
        assert!(check_ntime(1000, 1000 + 7200, 1000, 7200).is_ok());
        assert!(check_ntime(1000, 1000 + 7201, 1000, 7200).is_err());
        // A job from ahead of the node's clock leaves nothing to submit.
        assert!(check_ntime(2000, 2000, 1000, 60).is_err());
        // No overflow at the ends.
        assert!(check_ntime(u32::MAX - 5, u32::MAX, u64::from(u32::MAX), 60).is_ok());
        assert!(check_ntime(0, u32::MAX, u64::MAX, u32::MAX).is_ok());
    }

    #[test]
    fn version_rolling_inside_and_outside_the_mask() {
        let mask = 0x1fff_e000;
        let job = 0x2000_0000;
        assert_eq!(rolled_version(job, mask, None), Ok(job));
        // Only the rolled bits.
        assert_eq!(
            rolled_version(job, mask, Some(0x0000_6000)),
            Ok(0x2000_6000)
        );
        // The whole rolled version.
        assert_eq!(
            rolled_version(job, mask, Some(0x2000_6000)),
            Ok(0x2000_6000)
        );
        // A bit outside the mask.
        assert_eq!(
            rolled_version(job, mask, Some(0x0000_0001)),
            Err(StratumError::VersionOutsideMask { bits: 1, mask })
        );
        assert!(rolled_version(job, mask, Some(0x4000_0000)).is_err());
        // No rolling negotiated: only "no change" is acceptable.
        assert_eq!(rolled_version(job, 0, Some(0)), Ok(job));
        assert_eq!(rolled_version(job, 0, Some(job)), Ok(job));
        assert!(rolled_version(job, 0, Some(0x2000)).is_err());
    }

    #[test]
    fn merkle_root_and_header_match_rust_bitcoin() {
        use bitcoin::block::{Header, Version};
        use bitcoin::hashes::sha256d as bsha;
        use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};

        // Four distinct leaves: the coinbase's branch is [leaf1, hash(leaf2 || leaf3)].
        let leaves: Vec<[u8; 32]> = (0u8..4).map(|i| sha256d(&[i; 7])).collect();
        let pair = |a: &[u8; 32], b: &[u8; 32]| {
            let mut v = a.to_vec();
            v.extend_from_slice(b);
            sha256d(&v)
        };
        let branch = [leaves[1], pair(&leaves[2], &leaves[3])];
        let root = merkle_root_from_branch(leaves[0], &branch);
        let expected = bitcoin::merkle_tree::calculate_root(
            leaves
                .iter()
                .map(|l| TxMerkleNode::from_raw_hash(bsha::Hash::from_byte_array(*l))),
        )
        .unwrap();
        assert_eq!(root, expected.to_byte_array());

        let built = header(
            0x2000_6000,
            &[3u8; 32],
            &root,
            1_700_000_123,
            0x1d00_ffff,
            0xdead_beef,
        );
        let reference = Header {
            version: Version::from_consensus(0x2000_6000),
            prev_blockhash: BlockHash::from_byte_array([3u8; 32]),
            merkle_root: expected,
            time: 1_700_000_123,
            bits: CompactTarget::from_consensus(0x1d00_ffff),
            nonce: 0xdead_beef,
        };
        assert_eq!(
            built.to_vec(),
            bitcoin::consensus::encode::serialize(&reference)
        );
    }

    #[test]
    fn verify_rebuilds_the_coinbase_and_header() {
        let t = template();
        let en1 = [0xaa, 0xbb, 0xcc, 0xdd];
        let sub = Submission {
            extranonce2: [1, 2, 3, 4],
            ntime: t.time + 5,
            nonce: 42,
            version_bits: None,
        };
        let v = verify(PowAlgorithm::Scrypt, &t, &en1, &sub, t.version, Target::MAX);
        assert_eq!(
            v.coinbase,
            [1, 2, 3, 0xaa, 0xbb, 0xcc, 0xdd, 1, 2, 3, 4, 4, 5]
        );
        let root = merkle_root_from_branch(sha256d(&v.coinbase), &t.merkle_branch);
        assert_eq!(&v.header[36..68], &root);
        assert_eq!(&v.header[76..80], &42u32.to_le_bytes());
        assert_eq!(v.pow_hash, pow_hash(PowAlgorithm::Scrypt, &v.header));
        assert!(v.meets_session_target && v.meets_share_target && v.accepted());
        let hard = Target::from_compact(0x0300_0001).unwrap();
        let v = verify(PowAlgorithm::Scrypt, &t, &en1, &sub, t.version, hard);
        assert!(!v.meets_session_target);
    }
}
