//! Bytes on a sync stream from a peer, read by the node's request-response codec
//! (`SyncCodec::read_request` / `read_response`: the length-prefixed frame with its bound,
//! then the body), under the node's default limits; each share of a response is then
//! decoded as the node does.
//!
//! Invariants: a message that decodes came from a frame within the direction's limit and
//! re-encodes to exactly the frame's body (one encoding per message); its counts are
//! within the limits.

#![no_main]

use futures::executor::block_on;
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec;
use libp2p::StreamProtocol;
use p2pool_network::codec::{
    encode_request, encode_response, max_request_len, max_response_len, SyncCodec, WireRequest,
};
use p2pool_network::{SyncLimits, SyncRequest, SyncResponse};
use share_chain::Share;

/// The frame body the codec read: the bytes after the 4-byte length prefix.
fn body(data: &[u8]) -> &[u8] {
    let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    &data[4..4 + len]
}

fuzz_target!(|data: &[u8]| {
    let limits = SyncLimits::default();
    let mut codec = SyncCodec::new(limits.clone());
    let protocol = StreamProtocol::new("/p2pool/fuzz/sync/1");

    if let Ok(WireRequest(Ok(req))) =
        block_on(codec.read_request(&protocol, &mut Cursor::new(data)))
    {
        let body = body(data);
        assert!(body.len() as u64 <= max_request_len(&limits));
        match &req {
            SyncRequest::GetShares { locator, .. } => assert!(locator.len() <= limits.max_locator),
            SyncRequest::GetSharesByHash { hashes } => assert!(hashes.len() <= limits.max_locator),
            SyncRequest::GetTip => {}
        }
        assert_eq!(encode_request(&req, &limits).as_deref(), Ok(body));
    }

    if let Ok(resp) = block_on(codec.read_response(&protocol, &mut Cursor::new(data))) {
        let body = body(data);
        assert!(body.len() as u64 <= max_response_len(&limits));
        if let SyncResponse::Shares(shares) = &resp {
            assert!(shares.len() <= limits.max_shares_per_response as usize);
            for s in shares {
                assert!(s.len() <= limits.max_share_size);
                if let Ok(share) = Share::decode(s) {
                    assert_eq!(&share.encode(), s);
                }
            }
        }
        assert_eq!(encode_response(&resp, &limits).as_deref(), Ok(body));
    }
});
