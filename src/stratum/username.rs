//! The miner's username: `ADDRESS[,AUX_ADDRESS][.worker][+difficulty]`.
//!
//! The address says where the miner is paid (the node validates it through
//! [`super::WorkSource`]); the aux address where it is paid on merge-mined chains
//! (Dogecoin), when its address has no aux form of the same key (docs/PROTOCOL.md §15);
//! the worker name only labels statistics; `+difficulty` asks for a
//! fixed pseudo-share difficulty instead of vardiff. Parts may come in either order after
//! the address (`ADDR+512.rig1` works too). Anything malformed is refused with a reason,
//! never guessed at.

use std::fmt;

/// Longest username accepted.
pub const MAX_USERNAME_LEN: usize = 256;
/// Longest worker name accepted.
pub const MAX_WORKER_LEN: usize = 64;

/// A parsed username.
#[derive(Clone, Debug, PartialEq)]
pub struct Username {
    /// Exactly what the miner sent.
    pub full: String,
    pub address: String,
    /// Where the miner is paid on aux chains (merged mining), if it says.
    pub aux_address: Option<String>,
    pub worker: Option<String>,
    /// A fixed stratum difficulty the miner asked for.
    pub difficulty: Option<f64>,
}

/// Why a username was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum UsernameError {
    #[error("username is empty")]
    Empty,
    #[error("username longer than {MAX_USERNAME_LEN} bytes")]
    TooLong,
    #[error("username contains whitespace or control characters")]
    BadCharacters,
    #[error("address part is empty")]
    NoAddress,
    #[error("aux address after ',' is empty")]
    NoAuxAddress,
    #[error("worker name is empty or longer than {MAX_WORKER_LEN} bytes")]
    BadWorker,
    #[error("worker name given twice")]
    TwoWorkers,
    #[error("difficulty {0:?} is not a positive number")]
    BadDifficulty(String),
    #[error("difficulty given twice")]
    TwoDifficulties,
}

impl Username {
    /// Parses `ADDRESS[.worker][+difficulty]`.
    pub fn parse(full: &str) -> Result<Username, UsernameError> {
        if full.is_empty() {
            return Err(UsernameError::Empty);
        }
        if full.len() > MAX_USERNAME_LEN {
            return Err(UsernameError::TooLong);
        }
        if full.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UsernameError::BadCharacters);
        }
        let split = full.find(['.', '+']).unwrap_or(full.len());
        let (address, mut rest) = full.split_at(split);
        let (address, aux_address) = match address.split_once(',') {
            Some((_, "")) => return Err(UsernameError::NoAuxAddress),
            Some((address, aux)) => (address, Some(aux.to_string())),
            None => (address, None),
        };
        if address.is_empty() {
            return Err(UsernameError::NoAddress);
        }
        let mut worker = None;
        let mut difficulty = None;
        while let Some(sep) = rest.chars().next() {
            let body = &rest[1..];
            if sep == '.' {
                // A worker name runs to the next '+' (it may itself contain dots).
                let end = body.find('+').unwrap_or(body.len());
                let part = &body[..end];
                if part.is_empty() || part.len() > MAX_WORKER_LEN {
                    return Err(UsernameError::BadWorker);
                }
                if worker.replace(part.to_string()).is_some() {
                    return Err(UsernameError::TwoWorkers);
                }
                rest = &body[end..];
            } else {
                let end = number_prefix_len(body);
                let part = &body[..end];
                let d: f64 = part
                    .parse()
                    .map_err(|_| UsernameError::BadDifficulty(part.to_string()))?;
                if !d.is_finite() || d <= 0.0 {
                    return Err(UsernameError::BadDifficulty(part.to_string()));
                }
                if difficulty.replace(d).is_some() {
                    return Err(UsernameError::TwoDifficulties);
                }
                rest = &body[end..];
                if !(rest.is_empty() || rest.starts_with(['.', '+'])) {
                    return Err(UsernameError::BadDifficulty(body.to_string()));
                }
            }
        }
        Ok(Username {
            full: full.to_string(),
            address: address.to_string(),
            aux_address,
            worker,
            difficulty,
        })
    }
}

/// Length of the number at the start of `s`: digits, and '.' or 'e' only when a digit
/// follows, so `+0.5.rig` reads as difficulty 0.5 and worker `rig`.
fn number_prefix_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let next_is_digit = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
        let ok = b.is_ascii_digit() || (matches!(b, b'.' | b'e' | b'E') && next_is_digit);
        if !ok {
            break;
        }
        i += 1;
    }
    i
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_all_forms() {
        let u = Username::parse("rltc1qabc").unwrap();
        assert_eq!(
            (u.address.as_str(), u.worker, u.difficulty),
            ("rltc1qabc", None, None)
        );
        let u = Username::parse("rltc1qabc.rig1").unwrap();
        assert_eq!(u.worker.as_deref(), Some("rig1"));
        assert_eq!(u.aux_address, None);
        let u = Username::parse("rltc1qabc,nDoge9.rig1+64").unwrap();
        assert_eq!(
            (
                u.address.as_str(),
                u.aux_address.as_deref(),
                u.worker.as_deref()
            ),
            ("rltc1qabc", Some("nDoge9"), Some("rig1"))
        );
        assert_eq!(
            Username::parse("rltc1qabc,.rig1"),
            Err(UsernameError::NoAuxAddress)
        );
        assert_eq!(Username::parse(",nDoge9"), Err(UsernameError::NoAddress));
        let u = Username::parse("rltc1qabc.rig1+512").unwrap();
        assert_eq!(
            (u.worker.as_deref(), u.difficulty),
            (Some("rig1"), Some(512.0))
        );
        let u = Username::parse("rltc1qabc+0.5.rig2").unwrap();
        assert_eq!(
            (u.worker.as_deref(), u.difficulty),
            (Some("rig2"), Some(0.5))
        );
        let u = Username::parse("rltc1qabc.rig.3+2").unwrap();
        assert_eq!(
            (u.worker.as_deref(), u.difficulty),
            (Some("rig.3"), Some(2.0))
        );
        let u = Username::parse("rltc1qabc+1e3.rig2").unwrap();
        assert_eq!(
            (u.worker.as_deref(), u.difficulty),
            (Some("rig2"), Some(1000.0))
        );
        assert_eq!(u.full, "rltc1qabc+1e3.rig2");
    }

    #[test]
    fn refuses_malformed_names() {
        assert_eq!(Username::parse(""), Err(UsernameError::Empty));
        assert_eq!(Username::parse(".rig"), Err(UsernameError::NoAddress));
        assert_eq!(Username::parse("addr."), Err(UsernameError::BadWorker));
        assert_eq!(
            Username::parse("addr.a+1.b"),
            Err(UsernameError::TwoWorkers)
        );
        assert!(matches!(
            Username::parse("addr+12x"),
            Err(UsernameError::BadDifficulty(_))
        ));
        assert!(matches!(
            Username::parse("addr+abc"),
            Err(UsernameError::BadDifficulty(_))
        ));
        assert!(matches!(
            Username::parse("addr+-5"),
            Err(UsernameError::BadDifficulty(_))
        ));
        assert!(matches!(
            Username::parse("addr+inf"),
            Err(UsernameError::BadDifficulty(_))
        ));
        assert_eq!(
            Username::parse("addr+1+2"),
            Err(UsernameError::TwoDifficulties)
        );
        assert_eq!(Username::parse("ad dr"), Err(UsernameError::BadCharacters));
        assert_eq!(
            Username::parse(&"a".repeat(300)),
            Err(UsernameError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,300}") {
            let _ = Username::parse(&s);
        }

        #[test]
        fn round_trips_components(addr in "[a-zA-Z0-9]{1,60}", worker in "[a-z0-9_-]{1,20}", d in 1u32..1_000_000) {
            let u = Username::parse(&format!("{addr}.{worker}+{d}")).unwrap();
            prop_assert_eq!(u.address, addr);
            prop_assert_eq!(u.worker, Some(worker));
            prop_assert_eq!(u.difficulty, Some(d as f64));
        }
    }
}
