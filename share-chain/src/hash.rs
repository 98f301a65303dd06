//! Hashes that identify things in the share chain.
//!
//! Every identifier is a double SHA-256 (`sha256d`), as in Bitcoin. Hashes are stored in
//! their natural byte order (the order `sha256d` produces) and displayed byte-reversed, the
//! way Bitcoin and Litecoin display block hashes, so a share's id reads like a block hash.

use std::fmt;

use bincode::{Decode, Encode};
use bitcoin::hashes::{sha256d, Hash};

/// A 32-byte double-SHA-256 identifier of a share (the hash of its 80-byte header).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Encode, Decode)]
pub struct ShareHash(pub [u8; 32]);

impl ShareHash {
    /// The all-zero hash: the `prev_share` of a chain's first share.
    pub const ZERO: ShareHash = ShareHash([0; 32]);

    /// `sha256d(data)`.
    pub fn hash(data: &[u8]) -> Self {
        ShareHash(sha256d::Hash::hash(data).to_byte_array())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }

    /// Parses the byte-reversed display form.
    pub fn from_display_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes)?;
        bytes.reverse();
        Ok(ShareHash(bytes))
    }
}

impl fmt::Display for ShareHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rev = self.0;
        rev.reverse();
        f.write_str(&hex::encode(rev))
    }
}

impl fmt::Debug for ShareHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareHash({self})")
    }
}

/// `sha256d(data)` as raw bytes.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    sha256d::Hash::hash(data).to_byte_array()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_byte_reversed_and_round_trips() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[31] = 0x01;
        let h = ShareHash(bytes);
        let shown = h.to_string();
        assert!(shown.starts_with("01"));
        assert!(shown.ends_with("ab"));
        assert_eq!(ShareHash::from_display_hex(&shown).unwrap(), h);
    }

    #[test]
    fn sha256d_of_empty_input_matches_known_value() {
        // sha256d("") = 5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456
        assert_eq!(
            hex::encode(sha256d(b"")),
            "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
        );
    }
}
