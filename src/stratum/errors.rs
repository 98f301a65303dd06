//! Everything that can go wrong in the Stratum server, one variant per failure.
//!
//! Three kinds, because they end differently: a [`StratumError`] is answered to the miner
//! as a JSON-RPC error and the connection goes on; a [`SessionError`] closes that one
//! connection (hostile or broken input, timeouts); a [`ServerError`] stops the server from
//! starting at all.

use std::io;

use thiserror::Error;

/// A request the server refuses; sent back as `[code, message, null]`.
///
/// Codes are the ones common Stratum pools use (20 other, 21 stale job, 22 duplicate,
/// 23 low difficulty, 24 unauthorized, 25 not subscribed), so miners and proxies show
/// the usual reason.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StratumError {
    /// A job this connection was sent, since replaced (a new block, say).
    #[error("job not found (stale)")]
    JobNotFound,
    /// A job id this connection was never sent.
    #[error("job not found (unknown job id)")]
    UnknownJob,
    #[error("duplicate share")]
    Duplicate,
    #[error("low difficulty share")]
    LowDifficulty,
    #[error("unauthorized worker {0:?}")]
    Unauthorized(String),
    #[error("not subscribed")]
    NotSubscribed,
    #[error("invalid username {username:?}: {reason}")]
    InvalidUsername { username: String, reason: String },
    #[error("ntime {ntime:08x} is before the job's time {min:08x}")]
    NtimeTooEarly { ntime: u32, min: u32 },
    /// The share chain refuses a share this far ahead of the node's clock.
    #[error(
        "ntime {ntime:08x} is more than {max_future_secs} s ahead of the pool's clock \
         (latest {max:08x})"
    )]
    NtimeTooFar {
        ntime: u32,
        max: u32,
        max_future_secs: u32,
    },
    #[error("version bits {bits:08x} outside the negotiated mask {mask:08x}")]
    VersionOutsideMask { bits: u32, mask: u32 },
    #[error("malformed {field}: {reason}")]
    Malformed { field: &'static str, reason: String },
    #[error("too many submissions for this job")]
    TooManySubmissions,
    #[error("too many workers on this connection")]
    TooManyWorkers,
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    #[error("share could not be verified")]
    VerificationFailed,
    /// Every verification slot stayed taken for too long: the server is overloaded.
    #[error("server busy, submission not verified")]
    Busy,
    /// The pool hands out no work now (the reason says why); try again later or elsewhere.
    #[error("no work available: {0}")]
    Unavailable(String),
}

impl StratumError {
    /// The Stratum error code.
    pub fn code(&self) -> i64 {
        match self {
            StratumError::JobNotFound | StratumError::UnknownJob => 21,
            StratumError::Duplicate => 22,
            StratumError::LowDifficulty => 23,
            StratumError::Unauthorized(_) | StratumError::InvalidUsername { .. } => 24,
            StratumError::NotSubscribed => 25,
            StratumError::NtimeTooEarly { .. }
            | StratumError::NtimeTooFar { .. }
            | StratumError::VersionOutsideMask { .. }
            | StratumError::Malformed { .. }
            | StratumError::TooManySubmissions
            | StratumError::TooManyWorkers
            | StratumError::UnknownMethod(_)
            | StratumError::VerificationFailed
            | StratumError::Busy
            | StratumError::Unavailable(_) => 20,
        }
    }

    /// Shorthand for a malformed field.
    pub fn malformed(field: &'static str, reason: impl Into<String>) -> Self {
        StratumError::Malformed {
            field,
            reason: reason.into(),
        }
    }
}

/// Why the server closed one connection.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error("line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("TLS handshake sent to the plain-text stratum port")]
    TlsOnPlainPort,
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("not a JSON-RPC request object")]
    NotARequest,
    #[error("more than {limit} messages in one second")]
    Flood { limit: u32 },
    #[error("did not subscribe and authorize in time")]
    HandshakeTimeout,
    #[error("idle for too long")]
    IdleTimeout,
    #[error("write timed out (miner not reading)")]
    WriteTimeout,
    #[error("work paused: {0}")]
    Paused(String),
    #[error("too many invalid submissions ({invalid})")]
    TooManyInvalid { invalid: u64 },
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl SessionError {
    /// Whether the peer misbehaved (worth a warning) rather than simply went away.
    pub fn is_hostile(&self) -> bool {
        !matches!(
            self,
            SessionError::Io(_) | SessionError::IdleTimeout | SessionError::Paused(_)
        )
    }
}

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("invalid stratum configuration: {0}")]
    InvalidConfig(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_common_pools() {
        assert_eq!(StratumError::JobNotFound.code(), 21);
        assert_eq!(StratumError::UnknownJob.code(), 21);
        assert_eq!(StratumError::Duplicate.code(), 22);
        assert_eq!(StratumError::LowDifficulty.code(), 23);
        assert_eq!(StratumError::Unauthorized("x".into()).code(), 24);
        assert_eq!(StratumError::NotSubscribed.code(), 25);
        assert_eq!(StratumError::malformed("nonce", "bad").code(), 20);
        assert_eq!(StratumError::NtimeTooEarly { ntime: 1, min: 2 }.code(), 20);
    }
}
