//! An aux block as an aux daemon returns it (`getblock <hash> false`), read back by
//! `verifyblockpayout`: `AuxBlockHead::decode` reads the header, the AuxPoW when the version
//! announces one, and the coinbase, bounding every length.
//!
//! Invariants: no panic; what decodes re-encodes to the input's first bytes (header, then
//! the AuxPoW as the daemons serialize it) whenever the parent coinbase carries no witness
//! (the daemons' serialization has none; a witness-serialized one decodes but re-encodes
//! without it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use share_chain::auxpow::AuxBlockHead;

fuzz_target!(|data: &[u8]| {
    let Ok(head) = AuxBlockHead::decode(data) else {
        return;
    };
    let mut prefix = head.header.to_bytes().to_vec();
    if let Some(auxpow) = &head.auxpow {
        if auxpow.coinbase.input.iter().any(|i| !i.witness.is_empty()) {
            return;
        }
        prefix.extend(auxpow.to_bytes());
    }
    assert!(
        data.starts_with(&prefix),
        "the decoded header and AuxPoW re-encode to the input's first bytes"
    );
});
