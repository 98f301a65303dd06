//! The sync protocol's messages and their bounded wire codec.
//!
//! Sync is a request-response protocol (`/p2pool/<hex id>/sync/1`) a node uses to catch up:
//! ask a peer for its tip, then for the shares after a locator. Shares travel as opaque
//! encoded bytes; this crate never parses them (the node does).
//!
//! Wire format (all integers big-endian), one request or one response per stream:
//!
//! ```text
//! frame    = len:u32 body[len]            len <= the limit for that direction
//! request  = 0x00                                           GetTip
//!          | 0x01 n:u16 hash[32]*n flag:u8 [stop:hash[32] if flag=1] max:u32
//!                                                           GetShares
//!          | 0x02 n:u16 hash[32]*n                          GetSharesByHash
//! response = 0x00 flag:u8 [hash[32] height:u64 work:u128 if flag=1]
//!                                                           Tip (flag 0 = no chain yet)
//!          | 0x01 n:u32 (len:u32 bytes[len])*n              Shares
//!          | 0x02 reason:u8                                 Refused
//! ```
//!
//! Peer input is hostile: the length prefix is checked against the limit before a single
//! byte of the body is buffered, every count is checked against its limit before the items
//! are read, and trailing bytes are an error. Decoding never panics (fuzzed by proptest).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};
use share_chain::{ShareHash, Work};

use crate::config::SyncLimits;

/// A sync request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncRequest {
    /// "What is your best share?"
    GetTip,
    /// "Send me up to `max` shares following the first locator hash you know, oldest first,
    /// stopping after `stop` if you reach it." A locator lists hashes from the requester's
    /// tip backwards (dense near the tip, sparse further back), as in Bitcoin's getheaders.
    GetShares {
        locator: Vec<ShareHash>,
        stop: Option<ShareHash>,
        max: u32,
    },
    /// "Send me these shares, those you have, in this order." For what the orphan pool
    /// waits for (a missed parent or uncle, including side branches that `GetShares`,
    /// which follows the best chain, never sends). At most `max_locator` hashes.
    GetSharesByHash { hashes: Vec<ShareHash> },
}

/// The answer to [`SyncRequest::GetTip`] when the responder has a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TipInfo {
    pub hash: ShareHash,
    pub height: u64,
    pub chain_work: Work,
}

/// Why a responder declined a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// The requester sent requests faster than the responder's rate limit.
    RateLimited,
    /// The responder's node is overloaded (its event queue is full).
    Busy,
    /// The responder's node did not answer (it is shutting down or dropped the request).
    Unavailable,
    /// The request was malformed or over the responder's limits (and was charged to the
    /// requester).
    InvalidRequest,
}

impl RefuseReason {
    fn code(self) -> u8 {
        match self {
            RefuseReason::RateLimited => 0,
            RefuseReason::Busy => 1,
            RefuseReason::Unavailable => 2,
            RefuseReason::InvalidRequest => 3,
        }
    }

    fn from_code(code: u8) -> Result<Self, CodecError> {
        match code {
            0 => Ok(RefuseReason::RateLimited),
            1 => Ok(RefuseReason::Busy),
            2 => Ok(RefuseReason::Unavailable),
            3 => Ok(RefuseReason::InvalidRequest),
            other => Err(CodecError::UnknownRefuseReason(other)),
        }
    }
}

/// A sync response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncResponse {
    /// The responder's best share, or `None` if it has no chain yet.
    Tip(Option<TipInfo>),
    /// Encoded shares, oldest first (possibly empty: nothing after the locator).
    Shares(Vec<Vec<u8>>),
    /// The responder declined.
    Refused(RefuseReason),
}

/// Why bytes from a peer are not a valid sync message.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversized { len: u64, max: u64 },
    #[error("message ends early")]
    Truncated,
    #[error("{0} bytes after the end of the message")]
    TrailingBytes(usize),
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
    #[error("invalid option flag {0:#04x}")]
    InvalidFlag(u8),
    #[error("unknown refuse reason {0}")]
    UnknownRefuseReason(u8),
    #[error("locator of {len} hashes exceeds the limit of {max}")]
    LocatorTooLong { len: usize, max: usize },
    #[error("{len} requested hashes exceed the limit of {max}")]
    TooManyHashes { len: usize, max: usize },
    #[error("{count} shares exceed the limit of {max}")]
    TooManyShares { count: u64, max: u64 },
    #[error("share of {len} bytes exceeds the limit of {max}")]
    ShareTooLarge { len: u64, max: u64 },
}

impl CodecError {
    /// Whether this error means the peer exceeded a limit (as opposed to sending garbage).
    pub fn is_over_limits(&self) -> bool {
        matches!(
            self,
            CodecError::Oversized { .. }
                | CodecError::LocatorTooLong { .. }
                | CodecError::TooManyHashes { .. }
                | CodecError::TooManyShares { .. }
                | CodecError::ShareTooLarge { .. }
        )
    }

    /// Finds a `CodecError` inside an I/O error produced by this codec.
    pub fn from_io(err: &io::Error) -> Option<&CodecError> {
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<CodecError>())
    }
}

impl From<CodecError> for io::Error {
    fn from(err: CodecError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }
}

const REQ_GET_TIP: u8 = 0x00;
const REQ_GET_SHARES: u8 = 0x01;
const REQ_GET_SHARES_BY_HASH: u8 = 0x02;
const RESP_TIP: u8 = 0x00;
const RESP_SHARES: u8 = 0x01;
const RESP_REFUSED: u8 = 0x02;

/// The largest request body `limits` allow (a GetShares with a full locator and a stop).
pub fn max_request_len(limits: &SyncLimits) -> u64 {
    // A GetSharesByHash list is bounded like a locator, so a GetShares is the largest.
    1 + 2 + 32 * limits.max_locator as u64 + 1 + 32 + 4
}

/// The largest response body `limits` allow (a full batch of maximal shares).
pub fn max_response_len(limits: &SyncLimits) -> u64 {
    let per_share = 4 + limits.max_share_size as u64;
    // A tip (1 + 1 + 32 + 8 + 16) is smaller than an empty batch plus one share.
    (1 + 4 + per_share * u64::from(limits.max_shares_per_response)).max(1 + 1 + 32 + 8 + 16)
}

/// Encodes a request body, refusing one that `limits` would make the peer reject.
pub fn encode_request(req: &SyncRequest, limits: &SyncLimits) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    match req {
        SyncRequest::GetTip => out.push(REQ_GET_TIP),
        SyncRequest::GetShares { locator, stop, max } => {
            if locator.len() > limits.max_locator {
                return Err(CodecError::LocatorTooLong {
                    len: locator.len(),
                    max: limits.max_locator,
                });
            }
            let n = u16::try_from(locator.len()).map_err(|_| CodecError::LocatorTooLong {
                len: locator.len(),
                max: usize::from(u16::MAX),
            })?;
            out.push(REQ_GET_SHARES);
            out.extend_from_slice(&n.to_be_bytes());
            for h in locator {
                out.extend_from_slice(h.as_bytes());
            }
            match stop {
                None => out.push(0),
                Some(h) => {
                    out.push(1);
                    out.extend_from_slice(h.as_bytes());
                }
            }
            out.extend_from_slice(&max.to_be_bytes());
        }
        SyncRequest::GetSharesByHash { hashes } => {
            let max = limits
                .max_locator
                .min(limits.max_shares_per_response as usize);
            if hashes.len() > max {
                return Err(CodecError::TooManyHashes {
                    len: hashes.len(),
                    max,
                });
            }
            let n = u16::try_from(hashes.len()).map_err(|_| CodecError::TooManyHashes {
                len: hashes.len(),
                max: usize::from(u16::MAX),
            })?;
            out.push(REQ_GET_SHARES_BY_HASH);
            out.extend_from_slice(&n.to_be_bytes());
            for h in hashes {
                out.extend_from_slice(h.as_bytes());
            }
        }
    }
    Ok(out)
}

/// Decodes a request body under `limits`.
pub fn decode_request(body: &[u8], limits: &SyncLimits) -> Result<SyncRequest, CodecError> {
    let mut r = Reader::new(body);
    let req = match r.u8()? {
        REQ_GET_TIP => SyncRequest::GetTip,
        REQ_GET_SHARES => {
            let n = usize::from(r.u16()?);
            if n > limits.max_locator {
                return Err(CodecError::LocatorTooLong {
                    len: n,
                    max: limits.max_locator,
                });
            }
            let mut locator = Vec::with_capacity(n);
            for _ in 0..n {
                locator.push(ShareHash(r.array()?));
            }
            let stop = match r.u8()? {
                0 => None,
                1 => Some(ShareHash(r.array()?)),
                other => return Err(CodecError::InvalidFlag(other)),
            };
            let max = r.u32()?;
            SyncRequest::GetShares { locator, stop, max }
        }
        REQ_GET_SHARES_BY_HASH => {
            let n = usize::from(r.u16()?);
            let max = limits
                .max_locator
                .min(limits.max_shares_per_response as usize);
            if n > max {
                return Err(CodecError::TooManyHashes { len: n, max });
            }
            let mut hashes = Vec::with_capacity(n);
            for _ in 0..n {
                hashes.push(ShareHash(r.array()?));
            }
            SyncRequest::GetSharesByHash { hashes }
        }
        other => return Err(CodecError::UnknownTag(other)),
    };
    r.finish()?;
    Ok(req)
}

/// Encodes a response body, refusing one that `limits` would make the peer reject.
pub fn encode_response(resp: &SyncResponse, limits: &SyncLimits) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    match resp {
        SyncResponse::Tip(tip) => {
            out.push(RESP_TIP);
            match tip {
                None => out.push(0),
                Some(t) => {
                    out.push(1);
                    out.extend_from_slice(t.hash.as_bytes());
                    out.extend_from_slice(&t.height.to_be_bytes());
                    out.extend_from_slice(&t.chain_work.0.to_be_bytes());
                }
            }
        }
        SyncResponse::Shares(shares) => {
            let count = shares.len() as u64;
            let max = u64::from(limits.max_shares_per_response);
            if count > max {
                return Err(CodecError::TooManyShares { count, max });
            }
            out.push(RESP_SHARES);
            out.extend_from_slice(&(shares.len() as u32).to_be_bytes());
            for s in shares {
                if s.len() > limits.max_share_size {
                    return Err(CodecError::ShareTooLarge {
                        len: s.len() as u64,
                        max: limits.max_share_size as u64,
                    });
                }
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s);
            }
        }
        SyncResponse::Refused(reason) => {
            out.push(RESP_REFUSED);
            out.push(reason.code());
        }
    }
    Ok(out)
}

/// Decodes a response body under `limits`.
pub fn decode_response(body: &[u8], limits: &SyncLimits) -> Result<SyncResponse, CodecError> {
    let mut r = Reader::new(body);
    let resp = match r.u8()? {
        RESP_TIP => match r.u8()? {
            0 => SyncResponse::Tip(None),
            1 => {
                let hash = ShareHash(r.array()?);
                let height = r.u64()?;
                let chain_work = Work(u128::from_be_bytes(r.array()?));
                SyncResponse::Tip(Some(TipInfo {
                    hash,
                    height,
                    chain_work,
                }))
            }
            other => return Err(CodecError::InvalidFlag(other)),
        },
        RESP_SHARES => {
            let count = u64::from(r.u32()?);
            let max = u64::from(limits.max_shares_per_response);
            if count > max {
                return Err(CodecError::TooManyShares { count, max });
            }
            let mut shares = Vec::new();
            for _ in 0..count {
                let len = u64::from(r.u32()?);
                if len > limits.max_share_size as u64 {
                    return Err(CodecError::ShareTooLarge {
                        len,
                        max: limits.max_share_size as u64,
                    });
                }
                // `len` is at most max_share_size, which is a usize.
                shares.push(r.bytes(len as usize)?.to_vec());
            }
            SyncResponse::Shares(shares)
        }
        RESP_REFUSED => SyncResponse::Refused(RefuseReason::from_code(r.u8()?)?),
        other => return Err(CodecError::UnknownTag(other)),
    };
    r.finish()?;
    Ok(resp)
}

/// A cursor over a body that fails instead of panicking when the bytes run out.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Reader { rest }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.rest.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn finish(self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes(self.rest.len()))
        }
    }
}

/// Reads one length-prefixed frame, refusing a length over `max` before buffering anything.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, max: u64) -> io::Result<Vec<u8>> {
    let mut len_bytes = [0u8; 4];
    io.read_exact(&mut len_bytes).await?;
    let len = u64::from(u32::from_be_bytes(len_bytes));
    if len > max {
        return Err(CodecError::Oversized { len, max }.into());
    }
    // Grow the buffer as bytes arrive instead of trusting the prefix with an allocation.
    let mut body = Vec::new();
    io.take(len).read_to_end(&mut body).await?;
    if body.len() as u64 != len {
        return Err(CodecError::Truncated.into());
    }
    Ok(body)
}

/// Writes one length-prefixed frame.
pub async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| {
        io::Error::from(CodecError::Oversized {
            len: body.len() as u64,
            max: u64::from(u32::MAX),
        })
    })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(body).await?;
    io.flush().await
}

/// A request as the codec carries it. Inbound, a request that breaks the format or the
/// limits is delivered as `Err` rather than failing the stream: libp2p's request-response
/// does not report read failures to the behaviour, and we want to both charge the peer and
/// tell it why ([`RefuseReason::InvalidRequest`]). Outbound, only `Ok` is ever written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRequest(pub Result<SyncRequest, CodecError>);

/// The request-response codec: frames as above, limits from the node's [`SyncLimits`].
#[derive(Clone, Debug)]
pub struct SyncCodec {
    limits: SyncLimits,
}

impl SyncCodec {
    pub fn new(limits: SyncLimits) -> Self {
        SyncCodec { limits }
    }
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = WireRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<WireRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_frame(io, max_request_len(&self.limits)).await {
            Ok(body) => Ok(WireRequest(decode_request(&body, &self.limits))),
            Err(e) => match CodecError::from_io(&e) {
                // An oversized frame is refused from its prefix; its body is never read.
                Some(ce) => Ok(WireRequest(Err(ce.clone()))),
                None => Err(e),
            },
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, max_response_len(&self.limits)).await?;
        Ok(decode_response(&body, &self.limits)?)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: WireRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let body = encode_request(&req.0?, &self.limits)?;
        write_frame(io, &body).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let body = encode_response(&resp, &self.limits)?;
        write_frame(io, &body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> SyncLimits {
        SyncLimits {
            max_share_size: 64,
            max_locator: 4,
            max_shares_per_response: 3,
        }
    }

    fn hash(b: u8) -> ShareHash {
        ShareHash([b; 32])
    }

    #[test]
    fn requests_round_trip() {
        let l = limits();
        for req in [
            SyncRequest::GetTip,
            SyncRequest::GetShares {
                locator: vec![],
                stop: None,
                max: 0,
            },
            SyncRequest::GetShares {
                locator: vec![hash(1), hash(2), hash(3), hash(4)],
                stop: Some(hash(9)),
                max: u32::MAX,
            },
            SyncRequest::GetSharesByHash { hashes: vec![] },
            SyncRequest::GetSharesByHash {
                hashes: vec![hash(5), hash(6), hash(7)],
            },
        ] {
            let body = encode_request(&req, &l).unwrap();
            assert!(body.len() as u64 <= max_request_len(&l));
            assert_eq!(decode_request(&body, &l).unwrap(), req);
        }
    }

    #[test]
    fn responses_round_trip() {
        let l = limits();
        for resp in [
            SyncResponse::Tip(None),
            SyncResponse::Tip(Some(TipInfo {
                hash: hash(7),
                height: 123_456,
                chain_work: Work(u128::MAX - 5),
            })),
            SyncResponse::Shares(vec![]),
            SyncResponse::Shares(vec![vec![1; 64], vec![], vec![2; 10]]),
            SyncResponse::Refused(RefuseReason::RateLimited),
            SyncResponse::Refused(RefuseReason::Busy),
            SyncResponse::Refused(RefuseReason::Unavailable),
            SyncResponse::Refused(RefuseReason::InvalidRequest),
        ] {
            let body = encode_response(&resp, &l).unwrap();
            assert!(body.len() as u64 <= max_response_len(&l));
            assert_eq!(decode_response(&body, &l).unwrap(), resp);
        }
    }

    #[test]
    fn encoder_refuses_what_the_peer_would_reject() {
        let l = limits();
        let long = SyncRequest::GetShares {
            locator: vec![hash(0); 5],
            stop: None,
            max: 1,
        };
        assert_eq!(
            encode_request(&long, &l),
            Err(CodecError::LocatorTooLong { len: 5, max: 4 })
        );
        let hashes = SyncRequest::GetSharesByHash {
            hashes: vec![hash(1); 4],
        };
        assert_eq!(
            encode_request(&hashes, &l),
            Err(CodecError::TooManyHashes { len: 4, max: 3 })
        );
        let many = SyncResponse::Shares(vec![vec![]; 4]);
        assert!(matches!(
            encode_response(&many, &l),
            Err(CodecError::TooManyShares { count: 4, max: 3 })
        ));
        let big = SyncResponse::Shares(vec![vec![0; 65]]);
        assert!(matches!(
            encode_response(&big, &l),
            Err(CodecError::ShareTooLarge { len: 65, max: 64 })
        ));
    }

    #[test]
    fn decoder_enforces_limits_and_exact_length() {
        let l = limits();
        let wide = SyncLimits {
            max_locator: 10,
            max_shares_per_response: 10,
            max_share_size: 100,
        };
        let long = encode_request(
            &SyncRequest::GetShares {
                locator: vec![hash(0); 5],
                stop: None,
                max: 1,
            },
            &wide,
        )
        .unwrap();
        assert_eq!(
            decode_request(&long, &l),
            Err(CodecError::LocatorTooLong { len: 5, max: 4 })
        );
        let many = encode_response(&SyncResponse::Shares(vec![vec![]; 4]), &wide).unwrap();
        assert!(matches!(
            decode_response(&many, &l),
            Err(CodecError::TooManyShares { .. })
        ));
        let big = encode_response(&SyncResponse::Shares(vec![vec![0; 65]]), &wide).unwrap();
        assert!(matches!(
            decode_response(&big, &l),
            Err(CodecError::ShareTooLarge { .. })
        ));
        let mut trailing = encode_request(&SyncRequest::GetTip, &l).unwrap();
        trailing.push(0);
        assert_eq!(
            decode_request(&trailing, &l),
            Err(CodecError::TrailingBytes(1))
        );
        assert_eq!(decode_request(&[], &l), Err(CodecError::Truncated));
        assert_eq!(decode_request(&[7], &l), Err(CodecError::UnknownTag(7)));
        assert_eq!(
            decode_response(&[RESP_REFUSED, 4], &l),
            Err(CodecError::UnknownRefuseReason(4))
        );
        assert_eq!(
            decode_response(&[RESP_TIP, 2], &l),
            Err(CodecError::InvalidFlag(2))
        );
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_from_its_prefix() {
        // The prefix claims 4 GiB but no body follows: the reader must refuse it without
        // waiting for (or allocating) the body.
        let data = u32::MAX.to_be_bytes();
        let mut io = futures::io::Cursor::new(data.to_vec());
        let err = futures::executor::block_on(read_frame(&mut io, 100)).unwrap_err();
        assert_eq!(
            CodecError::from_io(&err),
            Some(&CodecError::Oversized {
                len: u64::from(u32::MAX),
                max: 100
            })
        );
    }

    #[test]
    fn frames_round_trip_and_short_bodies_are_truncated() {
        let mut buf = futures::io::Cursor::new(Vec::new());
        futures::executor::block_on(write_frame(&mut buf, b"hello")).unwrap();
        let bytes = buf.into_inner();
        let mut io = futures::io::Cursor::new(bytes.clone());
        let body = futures::executor::block_on(read_frame(&mut io, 5)).unwrap();
        assert_eq!(body, b"hello");
        let mut short = futures::io::Cursor::new(bytes[..7].to_vec());
        let err = futures::executor::block_on(read_frame(&mut short, 5)).unwrap_err();
        assert_eq!(CodecError::from_io(&err), Some(&CodecError::Truncated));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let l = limits();
            let _ = decode_request(&body, &l);
            let _ = decode_response(&body, &l);
        }

        #[test]
        fn get_shares_round_trips(
            locator in proptest::collection::vec(any::<[u8; 32]>(), 0..=4),
            stop in proptest::option::of(any::<[u8; 32]>()),
            max in any::<u32>(),
        ) {
            let l = limits();
            let req = SyncRequest::GetShares {
                locator: locator.into_iter().map(ShareHash).collect(),
                stop: stop.map(ShareHash),
                max,
            };
            let body = encode_request(&req, &l).unwrap();
            prop_assert!(body.len() as u64 <= max_request_len(&l));
            prop_assert_eq!(decode_request(&body, &l).unwrap(), req);
        }

        #[test]
        fn shares_round_trip(shares in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=64), 0..=3)) {
            let l = limits();
            let resp = SyncResponse::Shares(shares);
            let body = encode_response(&resp, &l).unwrap();
            prop_assert!(body.len() as u64 <= max_response_len(&l));
            prop_assert_eq!(decode_response(&body, &l).unwrap(), resp);
        }
    }
}
