//! JSON-RPC client for the coin daemon (litecoind 0.21, later bitcoind).
//!
//! Why not a JSON-RPC crate: jsonrpsee's client rejects litecoind's answers (`"error": null`
//! on success, and errors sent as HTTP 404/500, which loses the error code). This client
//! speaks the daemon's dialect directly: it POSTs JSON-RPC 1.0
//! (`{"jsonrpc":"1.0","id":N,"method":..,"params":[..]}`) with HTTP basic auth and reads the
//! `{result, error}` body *whatever the HTTP status*. A 401 with an empty body means bad
//! credentials.
//!
//! Credentials are a user/password pair or the daemon's cookie file (`__cookie__:secret`).
//! The daemon writes a new cookie every time it starts, so on a 401 the file is read again
//! and the call retried once.
//!
//! The daemon is local and trusted to be honest, not to be well-formed: every answer is
//! bounded in size ([`MAX_RESPONSE_BYTES`]) and a malformed one is an error, never a panic.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;

use super::template::{BlockTemplate, TemplateError};

/// Largest daemon answer read, in bytes. A block template is at most ~4 MB of transactions
/// plus an MWEB block, both hex-encoded; 64 MiB leaves room and still bounds memory.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Default time allowed for one ordinary call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Time allowed to open the TCP connection; a local daemon answers in microseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest cookie file read (the real one is ~75 bytes).
const MAX_COOKIE_BYTES: u64 = 4096;

/// The daemon's JSON-RPC error codes the node reacts to (Bitcoin Core's `rpc/protocol.h`).
pub mod codes {
    /// `RPC_MISC_ERROR`.
    pub const MISC_ERROR: i64 = -1;
    /// `RPC_INVALID_PARAMETER`.
    pub const INVALID_PARAMETER: i64 = -8;
    /// `RPC_CLIENT_NOT_CONNECTED`: no peers (regtest serves no template until it has one).
    pub const CLIENT_NOT_CONNECTED: i64 = -9;
    /// `RPC_CLIENT_IN_INITIAL_DOWNLOAD`: still syncing.
    pub const CLIENT_IN_INITIAL_DOWNLOAD: i64 = -10;
    /// `RPC_IN_WARMUP`: the daemon is starting (loading the block index, verifying...).
    pub const IN_WARMUP: i64 = -28;
    /// `RPC_METHOD_NOT_FOUND`.
    pub const METHOD_NOT_FOUND: i64 = -32601;
}

/// How the client proves itself to the daemon.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `-rpcuser` / `-rpcpassword`.
    UserPass { user: String, password: String },
    /// The daemon's `.cookie` file, read when needed and again after a 401.
    CookieFile(PathBuf),
}

impl fmt::Debug for Auth {
    // Never print a password or a cookie into a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::UserPass { user, .. } => write!(f, "UserPass {{ user: {user:?}, .. }}"),
            Auth::CookieFile(path) => write!(f, "CookieFile({path:?})"),
        }
    }
}

/// Where and how to reach the daemon.
#[derive(Clone, Debug)]
pub struct RpcConfig {
    /// e.g. `http://127.0.0.1:9332/` (a wallet path like `/wallet/name` is allowed).
    pub url: String,
    pub auth: Auth,
    /// Time allowed for one ordinary call.
    pub timeout: Duration,
}

impl RpcConfig {
    pub fn new(url: impl Into<String>, auth: Auth) -> Self {
        RpcConfig {
            url: url.into(),
            auth,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Why a call failed. Each failure the node must tell apart has its own variant.
#[derive(Debug, Error)]
pub enum RpcError {
    /// No connection: the daemon is down, the port is wrong, or the connection broke.
    #[error("daemon unreachable: {}", error_chain(.0))]
    Unreachable(#[source] reqwest::Error),
    /// The call took longer than allowed (normal for a long poll with nothing new).
    #[error("daemon call timed out")]
    Timeout,
    /// HTTP 401: wrong user/password or a stale cookie.
    #[error("daemon refused the credentials (HTTP 401)")]
    Unauthorized,
    /// The cookie file could not be read or is malformed.
    #[error("cannot use cookie file {path:?}: {reason}")]
    Cookie { path: PathBuf, reason: String },
    /// The daemon answered with a JSON-RPC error.
    #[error("daemon error {code}: {message}")]
    Rpc { code: i64, message: String },
    /// HTTP 503 "Work queue depth exceeded": every RPC thread is busy and the queue full.
    #[error("daemon's RPC work queue is full (HTTP 503)")]
    WorkQueueFull,
    /// An HTTP error status without a JSON-RPC body.
    #[error("daemon answered HTTP {0}")]
    Http(u16),
    /// The answer is larger than [`MAX_RESPONSE_BYTES`].
    #[error("daemon answer exceeds {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// The answer is not the JSON-RPC shape or not the expected result type.
    #[error("malformed daemon answer: {0}")]
    BadResponse(String),
    /// `getblocktemplate` answered, but the template is unusable.
    #[error("invalid block template: {0}")]
    Template(#[from] TemplateError),
    /// The HTTP client could not be built (bad URL or TLS setup).
    #[error("cannot set up the RPC client: {0}")]
    Setup(String),
}

impl RpcError {
    /// Whether the daemon's RPC server is overloaded (no answer in time, or its work queue
    /// full) rather than down or refusing.
    pub fn is_saturation(&self) -> bool {
        matches!(self, RpcError::Timeout | RpcError::WorkQueueFull)
    }

    /// The JSON-RPC error code, if the daemon sent one.
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            RpcError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What `submitblock` said about a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// `null`: valid and accepted.
    Accepted,
    /// `"duplicate"`: the daemon already has this block.
    Duplicate,
    /// `"inconclusive"`: valid as far as checked, but not on the best chain.
    Inconclusive,
    /// Any other string is the rejection reason (e.g. `high-hash`, `bad-txnmrklroot`).
    Rejected(String),
}

/// The part of `getblockchaininfo` the node uses (other fields are ignored).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct BlockchainInfo {
    /// `main`, `test`, `regtest` or `signet`.
    pub chain: String,
    pub blocks: u64,
    pub headers: u64,
    pub bestblockhash: String,
    #[serde(default)]
    pub initialblockdownload: bool,
    #[serde(default)]
    pub verificationprogress: f64,
}

/// The part of `getnetworkinfo` the node uses.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct NetworkInfo {
    pub version: u64,
    pub subversion: String,
    pub protocolversion: u64,
    pub connections: u64,
    #[serde(default)]
    pub warnings: String,
}

/// The JSON-RPC 1.0 answer envelope.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    result: Value,
    #[serde(default)]
    error: Value,
}

/// A JSON-RPC client for one daemon endpoint. Cheap to share behind an `Arc`.
pub struct RpcClient {
    http: reqwest::Client,
    url: String,
    auth: Auth,
    timeout: Duration,
    /// `(user, password)` last read from the cookie file.
    cookie: Mutex<Option<(String, String)>>,
    next_id: AtomicU64,
}

impl fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcClient")
            .field("url", &self.url)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl RpcClient {
    pub fn new(config: RpcConfig) -> Result<Self, RpcError> {
        // Validate the URL now, so a typo is a startup error rather than "unreachable".
        reqwest::Url::parse(&config.url)
            .map_err(|e| RpcError::Setup(format!("bad URL {:?}: {e}", config.url)))?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // No idle keep-alive connections: litecoind 0.21's clean shutdown waits for
            // every open HTTP connection (measured: `stop` took 7.5 s with a pooled one),
            // and a pooled connection may be one the daemon is closing. A new loopback
            // connection per call costs microseconds.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| RpcError::Setup(e.to_string()))?;
        Ok(RpcClient {
            http,
            url: config.url,
            auth: config.auth,
            timeout: config.timeout,
            cookie: Mutex::new(None),
            next_id: AtomicU64::new(1),
        })
    }

    /// The endpoint this client talks to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with positional `params` and decodes the result as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Vec<Value>,
    ) -> Result<T, RpcError> {
        self.call_with_timeout(method, params, self.timeout).await
    }

    /// [`call`](Self::call) with its own time limit (long polls wait far longer than 30 s).
    pub async fn call_with_timeout<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Vec<Value>,
        timeout: Duration,
    ) -> Result<T, RpcError> {
        let result = self.call_value(method, &params, timeout).await?;
        serde_json::from_value(result)
            .map_err(|e| RpcError::BadResponse(format!("{method}: unexpected result: {e}")))
    }

    /// One call returning the raw `result`; retried once with a fresh cookie after a 401.
    async fn call_value(
        &self,
        method: &str,
        params: &[Value],
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        match self.call_once(method, params, timeout, false).await {
            Err(RpcError::Unauthorized) if matches!(self.auth, Auth::CookieFile(_)) => {
                // The daemon may have restarted and written a new cookie.
                self.call_once(method, params, timeout, true).await
            }
            other => other,
        }
    }

    async fn call_once(
        &self,
        method: &str,
        params: &[Value],
        timeout: Duration,
        reload_cookie: bool,
    ) -> Result<Value, RpcError> {
        let (user, password) = match self.credentials(reload_cookie) {
            Ok(credentials) => credentials,
            Err(cookie_error) => {
                // litecoind deletes its cookie when it stops, so a missing cookie usually
                // means a daemon that is down. Find out: an unreachable daemon is reported
                // as such, one that answers gets the cookie error.
                return match self.send(method, params, timeout, None).await {
                    Err(e @ (RpcError::Unreachable(_) | RpcError::Timeout)) => Err(e),
                    _ => Err(cookie_error),
                };
            }
        };
        self.send(method, params, timeout, Some((&user, &password)))
            .await
    }

    /// One HTTP round trip; reads `{result, error}` whatever the status.
    async fn send(
        &self,
        method: &str,
        params: &[Value],
        timeout: Duration,
        credentials: Option<(&str, &str)>,
    ) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params});
        let mut request = self.http.post(&self.url);
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        let mut response = request
            .json(&body)
            .timeout(timeout)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(RpcError::Unauthorized);
        }
        // Read the body in chunks so an endless answer stops at the bound.
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if bytes.len().saturating_add(chunk.len()) > MAX_RESPONSE_BYTES {
                return Err(RpcError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        decode_envelope(method, status.as_u16(), &bytes)
    }

    /// The user and password to send, reading the cookie file if needed.
    fn credentials(&self, reload_cookie: bool) -> Result<(String, String), RpcError> {
        match &self.auth {
            Auth::UserPass { user, password } => Ok((user.clone(), password.clone())),
            Auth::CookieFile(path) => {
                let mut cached = self.cookie.lock().unwrap_or_else(|p| p.into_inner());
                if reload_cookie || cached.is_none() {
                    *cached = Some(read_cookie(path)?);
                }
                cached.clone().ok_or_else(|| RpcError::Cookie {
                    path: path.clone(),
                    reason: "no cookie".into(),
                })
            }
        }
    }

    /// `getblockchaininfo`.
    pub async fn get_blockchain_info(&self) -> Result<BlockchainInfo, RpcError> {
        self.call("getblockchaininfo", vec![]).await
    }

    /// `getnetworkinfo`.
    pub async fn get_network_info(&self) -> Result<NetworkInfo, RpcError> {
        self.call("getnetworkinfo", vec![]).await
    }

    /// `getbestblockhash`, in internal byte order (the display hex reversed).
    pub async fn get_best_block_hash(&self) -> Result<[u8; 32], RpcError> {
        let hex: String = self.call("getbestblockhash", vec![]).await?;
        parse_display_hash(&hex).ok_or_else(|| {
            RpcError::BadResponse(format!("getbestblockhash: not a 32-byte hash: {hex:?}"))
        })
    }

    /// `getblocktemplate {"rules":["mweb","segwit"]}` (litecoind refuses any other rule set).
    ///
    /// With `longpoll_id` the daemon holds the call until the template changes (a new block,
    /// or new transactions after about a minute); `timeout` must then be long.
    pub async fn get_block_template(
        &self,
        longpoll_id: Option<&str>,
        timeout: Duration,
    ) -> Result<BlockTemplate, RpcError> {
        let mut request = json!({"rules": ["mweb", "segwit"]});
        if let (Some(id), Some(object)) = (longpoll_id, request.as_object_mut()) {
            object.insert("longpollid".into(), Value::String(id.to_owned()));
        }
        let value = self
            .call_value("getblocktemplate", &[request], timeout)
            .await?;
        Ok(BlockTemplate::from_json(value)?)
    }

    /// Whether the block `hash` (internal byte order) is on the daemon's best chain
    /// (`getblockheader`'s `confirmations` is -1 for a block on a side branch).
    pub async fn block_in_best_chain(&self, hash: [u8; 32]) -> Result<bool, RpcError> {
        #[derive(Deserialize)]
        struct Header {
            confirmations: i64,
        }
        let mut display = hash;
        display.reverse();
        let header: Header = self
            .call("getblockheader", vec![Value::String(hex::encode(display))])
            .await?;
        Ok(header.confirmations >= 1)
    }

    /// `submitblock` with the block's bytes.
    pub async fn submit_block(&self, block: &[u8]) -> Result<SubmitOutcome, RpcError> {
        let answer: Option<String> = self
            .call("submitblock", vec![Value::String(hex::encode(block))])
            .await?;
        Ok(match answer.as_deref() {
            None => SubmitOutcome::Accepted,
            Some("duplicate") => SubmitOutcome::Duplicate,
            Some("inconclusive") => SubmitOutcome::Inconclusive,
            Some(reason) => SubmitOutcome::Rejected(reason.to_owned()),
        })
    }
}

/// Maps a transport error to the variant the node acts on.
fn classify(error: reqwest::Error) -> RpcError {
    if error.is_timeout() {
        RpcError::Timeout
    } else {
        RpcError::Unreachable(error)
    }
}

/// An error and its causes on one line ("error sending request: connection refused"), since
/// reqwest's own message leaves out the cause an operator needs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads `{result, error}` from a body, whatever the HTTP status.
fn decode_envelope(method: &str, status: u16, bytes: &[u8]) -> Result<Value, RpcError> {
    let envelope: Envelope = match serde_json::from_slice(bytes) {
        Ok(envelope) => envelope,
        // litecoind's `httpserver.cpp` answers a full work queue with this plain text.
        Err(_) if status == 503 && contains(bytes, b"Work queue depth exceeded") => {
            return Err(RpcError::WorkQueueFull)
        }
        // No JSON-RPC body: the HTTP status is all there is (e.g. 404 for an unknown wallet).
        Err(_) if !(200..300).contains(&status) => return Err(RpcError::Http(status)),
        Err(e) => return Err(RpcError::BadResponse(format!("{method}: {e}"))),
    };
    match envelope.error {
        Value::Null => Ok(envelope.result),
        Value::Object(error) => {
            let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            Err(RpcError::Rpc { code, message })
        }
        other => Err(RpcError::BadResponse(format!(
            "{method}: error member is neither null nor an object: {other}"
        ))),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads `user:password` from a cookie file.
fn read_cookie(path: &PathBuf) -> Result<(String, String), RpcError> {
    use std::io::Read;
    let cookie_error = |reason: String| RpcError::Cookie {
        path: path.clone(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| cookie_error(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_COOKIE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| cookie_error(e.to_string()))?;
    let line = text.lines().next().unwrap_or("");
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.to_owned(), password.to_owned())),
        _ => Err(cookie_error("not of the form user:password".into())),
    }
}

/// Parses a hash in display order (byte-reversed hex) into internal order.
pub fn parse_display_hash(hex_str: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut bytes).ok()?;
    bytes.reverse();
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_envelope_with_null_error() {
        let body = br#"{"result":"abc","error":null,"id":1}"#;
        assert_eq!(decode_envelope("m", 200, body).unwrap(), json!("abc"));
        // `result: null` is a valid success (submitblock's "accepted").
        let body = br#"{"result":null,"error":null,"id":1}"#;
        assert_eq!(decode_envelope("m", 200, body).unwrap(), Value::Null);
    }

    #[test]
    fn error_body_keeps_code_whatever_the_status() {
        for status in [200, 404, 500] {
            let body =
                br#"{"result":null,"error":{"code":-32601,"message":"Method not found"},"id":1}"#;
            match decode_envelope("m", status, body) {
                Err(RpcError::Rpc { code, message }) => {
                    assert_eq!(code, codes::METHOD_NOT_FOUND);
                    assert_eq!(message, "Method not found");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn full_work_queue_is_told_apart() {
        let full = decode_envelope("m", 503, b"Work queue depth exceeded");
        assert!(matches!(full, Err(RpcError::WorkQueueFull)));
        assert!(full.unwrap_err().is_saturation());
        assert!(matches!(
            decode_envelope("m", 503, b""),
            Err(RpcError::Http(503))
        ));
        assert!(RpcError::Timeout.is_saturation());
        assert!(!RpcError::Http(503).is_saturation());
    }

    #[test]
    fn non_json_bodies() {
        assert!(matches!(
            decode_envelope("m", 404, b""),
            Err(RpcError::Http(404))
        ));
        assert!(matches!(
            decode_envelope("m", 200, b"<html>"),
            Err(RpcError::BadResponse(_))
        ));
        assert!(matches!(
            decode_envelope("m", 200, br#"{"result":1,"error":"boom"}"#),
            Err(RpcError::BadResponse(_))
        ));
    }

    #[test]
    fn cookie_file_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".cookie");
        std::fs::write(&path, "__cookie__:s3cr:et\n").unwrap();
        assert_eq!(
            read_cookie(&path).unwrap(),
            ("__cookie__".to_owned(), "s3cr:et".to_owned())
        );
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(read_cookie(&path), Err(RpcError::Cookie { .. })));
        assert!(matches!(
            read_cookie(&dir.path().join("missing")),
            Err(RpcError::Cookie { .. })
        ));
    }

    #[test]
    fn auth_debug_hides_secrets() {
        let auth = Auth::UserPass {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[test]
    fn display_hash_is_reversed() {
        let h =
            parse_display_hash("00000000000000000000000000000000000000000000000000000000000000ff")
                .unwrap();
        assert_eq!(h[0], 0xff);
        assert!(parse_display_hash("zz").is_none());
        assert!(parse_display_hash("00").is_none());
    }

    proptest::proptest! {
        #[test]
        fn envelope_decoding_never_panics(status in 100u16..600, body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_envelope("m", status, &body);
        }
    }
}
