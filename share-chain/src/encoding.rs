//! The canonical byte encoding of everything peers hash or exchange.
//!
//! One configuration of bincode 2 is used everywhere: fixed-width little-endian integers,
//! `u64` lengths before sequences, a `0`/`1` byte before an `Option`'s value, fixed arrays
//! as raw bytes, struct fields in declaration order. docs/PROTOCOL.md writes this layout
//! down so that another implementation can reproduce it byte for byte. Decoding is always
//! bounded: the limit is checked before any allocation, and trailing bytes are an error.

use bincode::config::{self, Configuration, Fixint, Limit, LittleEndian};
use bincode::{Decode, Encode};
use thiserror::Error;

/// The largest encoded share (or stored record) accepted, in bytes.
pub const MAX_ENCODED_SIZE: usize = 8192;

type Canonical = Configuration<LittleEndian, Fixint, Limit<MAX_ENCODED_SIZE>>;

fn canonical() -> Canonical {
    config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_ENCODED_SIZE>()
}

/// Why bytes could not be decoded.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("{0} bytes exceed the limit of {MAX_ENCODED_SIZE}")]
    TooLarge(usize),
    #[error("malformed encoding: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
}

/// Encodes a value canonically. Values of this crate's types always fit the limit.
pub fn encode_canonical<T: Encode>(value: &T) -> Vec<u8> {
    // Encoding into a Vec only fails when the value exceeds the limit, which the callers'
    // types rule out by construction (their fields are bounded); fall back to the unbounded
    // configuration so hashing never panics.
    bincode::encode_to_vec(value, canonical()).unwrap_or_else(|_| {
        bincode::encode_to_vec(
            value,
            config::standard()
                .with_little_endian()
                .with_fixed_int_encoding(),
        )
        .unwrap_or_default()
    })
}

/// Decodes exactly one value from `bytes`, refusing oversize input and trailing bytes.
pub fn decode_canonical<T: Decode<()>>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_ENCODED_SIZE {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    let (value, read) = bincode::decode_from_slice::<T, _>(bytes, canonical())
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(DecodeError::TrailingBytes(bytes.len() - read));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Encode, Decode, Debug, PartialEq)]
    struct Sample {
        a: u32,
        b: Vec<u8>,
        c: Option<[u8; 2]>,
    }

    #[test]
    fn layout_is_fixed_width_little_endian() {
        let bytes = encode_canonical(&Sample {
            a: 0x0102_0304,
            b: vec![9, 8],
            c: Some([7, 6]),
        });
        assert_eq!(
            bytes,
            [4, 3, 2, 1, 2, 0, 0, 0, 0, 0, 0, 0, 9, 8, 1, 7, 6].to_vec()
        );
        assert_eq!(
            decode_canonical::<Sample>(&bytes).unwrap(),
            Sample {
                a: 0x0102_0304,
                b: vec![9, 8],
                c: Some([7, 6])
            }
        );
    }

    #[test]
    fn hostile_lengths_and_trailing_bytes_are_refused() {
        // A length prefix claiming 2^60 bytes must not allocate.
        let mut bytes = vec![0u8; 4];
        bytes.extend((1u64 << 60).to_le_bytes());
        assert!(matches!(
            decode_canonical::<Sample>(&bytes),
            Err(DecodeError::Malformed(_))
        ));
        let mut ok = encode_canonical(&Sample {
            a: 1,
            b: vec![],
            c: None,
        });
        ok.push(0);
        assert!(matches!(
            decode_canonical::<Sample>(&ok),
            Err(DecodeError::TrailingBytes(1))
        ));
        assert!(matches!(
            decode_canonical::<Sample>(&vec![0; MAX_ENCODED_SIZE + 1]),
            Err(DecodeError::TooLarge(_))
        ));
    }
}
