//! Proof of work: the hash a share's header must bring under its target.
//!
//! Litecoin hashes the 80-byte header with scrypt (N=1024, r=1, p=1, the header as both
//! password and salt, 32 bytes out); Bitcoin with double SHA-256. Either way the result is
//! compared with the target as a little-endian 256-bit integer (see [`crate::target`]).
//! The share's *id* is always `sha256d(header)`, whatever the proof-of-work function.

use crate::hash::sha256d;
use crate::params::PowAlgorithm;

/// The proof-of-work hash of an 80-byte header, in the hash function's byte order.
pub fn pow_hash(algorithm: PowAlgorithm, header: &[u8; 80]) -> [u8; 32] {
    match algorithm {
        PowAlgorithm::Scrypt => scrypt_1024_1_1(header),
        PowAlgorithm::Sha256d => sha256d(header),
    }
}

/// Litecoin's scrypt: N=1024 (log2 10), r=1, p=1, dkLen=32, salt = password = header.
pub fn scrypt_1024_1_1(header: &[u8; 80]) -> [u8; 32] {
    // These parameters are valid constants; `Params::new` cannot fail for them.
    let params = scrypt::Params::new(10, 1, 1, 32).expect("scrypt(10, 1, 1, 32) is valid");
    let mut out = [0u8; 32];
    scrypt::scrypt(header, header, &params, &mut out).expect("32 bytes is a valid output length");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;

    fn display(mut hash: [u8; 32]) -> String {
        hash.reverse();
        hex::encode(hash)
    }

    const LITECOIN_GENESIS: &str = "010000000000000000000000000000000000000000000000000000000000000000000000d9ced4ed1130f7b7faad9be25323ffafa33232a17c3edf6cfd97bee6bafbdd97b9aa8e4ef0ff0f1ecd513f7c";

    #[test]
    fn litecoin_genesis_scrypt_hash() {
        let header: [u8; 80] = hex::decode(LITECOIN_GENESIS).unwrap().try_into().unwrap();
        let pow = pow_hash(PowAlgorithm::Scrypt, &header);
        let shown = display(pow);
        assert_eq!(
            shown,
            "0000050c34a64b415b6b15b37f2216634b5b1669cb9a2e38d76f7213b0671e00"
        );
        // It meets the genesis block's own target (bits 0x1e0ffff0) ...
        assert!(Target::from_compact(0x1e0ffff0).unwrap().is_met_by(&pow));
        // ... and the sha256d id does not (it is not the proof of work).
        let id = pow_hash(PowAlgorithm::Sha256d, &header);
        assert!(!Target::from_compact(0x1e0ffff0).unwrap().is_met_by(&id));
    }
}
