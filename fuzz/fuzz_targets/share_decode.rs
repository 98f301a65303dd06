//! Share bytes from a peer (gossip or sync), as the node handles them: `Share::decode`,
//! then `ChainIndex::connect` against a small real chain.
//!
//! Invariants: decoding is the inverse of encoding (a share that decodes re-encodes to the
//! very input bytes, so a share has one encoding and one hash); a share that connects is in
//! the index afterwards, first among the connected entries.

#![no_main]

use libfuzzer_sys::fuzz_target;
use share_chain::Share;

fuzz_target!(|data: &[u8]| {
    let Ok(share) = Share::decode(data) else {
        return;
    };
    assert_eq!(
        share.encode(),
        data,
        "decode then encode must give the input"
    );
    let base = p2pool_fuzz::base();
    let mut index = base.index.clone();
    let hash = share.hash();
    if let Ok(connected) = index.connect(share, base.now) {
        assert!(index.knows(&hash));
        assert_eq!(connected.entries.first().map(|e| e.hash), Some(hash));
    }
});
