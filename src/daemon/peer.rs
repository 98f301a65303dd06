//! A client of litecoind's P2P port: learns of new blocks at once and relays found blocks
//! without needing one of litecoind's few RPC threads.
//!
//! Why: litecoind serves JSON-RPC with a handful of threads (`-rpcthreads`, 4 by default)
//! and a short queue (`-rpcworkqueue`, 16). When they are taken (a crashed node's long
//! poll holds one until the next block; a busy wallet) `submitblock` waits or is refused
//! with HTTP 503, and a found block is lost. The P2P port has no such limit: as classic
//! p2pool did, the node connects to it as an ordinary peer and sends a found block as a
//! `block` message, in parallel with `submitblock`. The same connection tells the node of
//! every new tip (`inv` or `headers`), so templates follow a new block without a long poll.
//!
//! The protocol (Bitcoin's, with Litecoin's network magic): each message is
//! `magic(4) || command(12, NUL-padded) || length(u32 LE) || checksum(4) || payload`, the
//! checksum being the first 4 bytes of sha256d(payload). The node sends `version`
//! (relay=false: no transaction announcements), answers `version` with `verack` and `ping`
//! with `pong`, and ignores everything else. A `block` payload is exactly what
//! `submitblock` takes (header, transactions with witnesses, and after MWEB activation the
//! `0x01 || mw::Block` extension, see [`super::block`]): litecoind deserializes a P2P
//! block the same way.
//!
//! litecoind is local and trusted to be honest, not to be well-formed: every message is
//! bounded ([`MAX_PAYLOAD`]), checked (magic, checksum) and a malformed one ends the
//! connection, which is made again after a short wait.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::consensus::encode::{deserialize_partial, serialize, VarInt};
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Address, ServiceFlags};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// Largest message payload read. litecoind sends the node only small messages (it asks
/// for no blocks); a block relayed *to* litecoind may be larger and is not bounded here.
pub const MAX_PAYLOAD: u32 = 4 * 1024 * 1024;

/// The protocol version announced: Litecoin Core 0.21's (BIP 339 `wtxidrelay` era).
const PROTOCOL_VERSION: u32 = 70016;

/// Time allowed to connect and complete the version handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Silence after which the connection is taken for dead (litecoind pings every 2 minutes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Waits between connection attempts: doubled per failure up to the maximum.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Found blocks waiting to be written; more is a flood (each is a real solution).
const BLOCK_QUEUE: usize = 64;

/// `inv` types that announce a block: MSG_BLOCK (2) and MSG_CMPCT_BLOCK (4), with or without
/// the witness (1<<30) and MWEB (1<<29) flags.
const INV_FLAGS: u32 = (1 << 30) | (1 << 29);
const MSG_BLOCK: u32 = 2;
const MSG_CMPCT_BLOCK: u32 = 4;

/// The P2P network magic of a daemon chain (`getblockchaininfo.chain`): Litecoin Core's
/// `pchMessageStart` (`src/chainparams.cpp`).
pub fn network_magic(daemon_chain: &str) -> [u8; 4] {
    match daemon_chain {
        "regtest" => [0xfa, 0xbf, 0xb5, 0xda],
        "test" => [0xfd, 0xd2, 0xc8, 0xf1],
        // Litecoin has no signet; anything else is mainnet.
        _ => [0xfb, 0xc0, 0xb6, 0xdb],
    }
}

/// litecoind's default P2P port of a daemon chain.
pub fn default_p2p_port(daemon_chain: &str) -> u16 {
    match daemon_chain {
        "regtest" => 19444,
        "test" => 19335,
        _ => 9333,
    }
}

/// Where and how to reach litecoind's P2P port.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub addr: SocketAddr,
    pub magic: [u8; 4],
}

impl PeerConfig {
    /// The default port and the magic of `daemon_chain` on `host`.
    pub fn for_chain(host: std::net::IpAddr, daemon_chain: &str) -> Self {
        PeerConfig {
            addr: SocketAddr::new(host, default_p2p_port(daemon_chain)),
            magic: network_magic(daemon_chain),
        }
    }
}

/// Why a block could not be handed to the P2P connection.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RelayError {
    #[error("not connected to litecoind's P2P port")]
    NotConnected,
    #[error("the P2P block queue is full")]
    QueueFull,
}

/// Why a connection ended.
#[derive(Debug, Error)]
pub enum PeerError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("wrong network magic {0:02x?}")]
    WrongMagic([u8; 4]),
    #[error("{command} payload of {length} bytes exceeds {MAX_PAYLOAD}")]
    TooLarge { command: String, length: u32 },
    #[error("bad checksum on {0}")]
    Checksum(String),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("closed by litecoind")]
    Closed,
}

/// One framed message.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub command: String,
    pub payload: Vec<u8>,
}

/// Frames `payload` as a `command` message.
pub fn frame(magic: [u8; 4], command: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + payload.len());
    out.extend_from_slice(&magic);
    let mut name = [0u8; 12];
    let bytes = command.as_bytes();
    let n = bytes.len().min(12);
    name[..n].copy_from_slice(&bytes[..n]);
    out.extend_from_slice(&name);
    // A payload over 4 GiB cannot exist (blocks are at most 4 MB plus MWEB).
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&checksum(payload));
    out.extend_from_slice(payload);
    out
}

fn checksum(payload: &[u8]) -> [u8; 4] {
    let hash = share_chain::hash::sha256d(payload);
    [hash[0], hash[1], hash[2], hash[3]]
}

/// Reads one message; checks magic, size and checksum.
pub async fn read_message(
    reader: &mut (impl AsyncReadExt + Unpin),
    magic: [u8; 4],
) -> Result<Message, PeerError> {
    let mut head = [0u8; 24];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(PeerError::Closed),
        Err(e) => return Err(e.into()),
    }
    let mut got = [0u8; 4];
    got.copy_from_slice(&head[..4]);
    if got != magic {
        return Err(PeerError::WrongMagic(got));
    }
    let name = &head[4..16];
    let end = name.iter().position(|&b| b == 0).unwrap_or(12);
    let command = String::from_utf8_lossy(&name[..end]).into_owned();
    let length = u32::from_le_bytes([head[16], head[17], head[18], head[19]]);
    if length > MAX_PAYLOAD {
        return Err(PeerError::TooLarge { command, length });
    }
    let mut payload = vec![0u8; length as usize];
    reader.read_exact(&mut payload).await?;
    if checksum(&payload) != head[20..24] {
        return Err(PeerError::Checksum(command));
    }
    Ok(Message { command, payload })
}

/// The block hashes an `inv` or `headers` payload announces (internal byte order); other
/// commands announce none.
pub fn announced_blocks(message: &Message) -> Result<Vec<[u8; 32]>, PeerError> {
    let mut cursor = message.payload.as_slice();
    match message.command.as_str() {
        "inv" => {
            let (count, used) =
                deserialize_partial::<VarInt>(cursor).map_err(|_| PeerError::Malformed("inv"))?;
            let count = count.0;
            cursor = &cursor[used..];
            // Each entry is 36 bytes: a count beyond the payload is a lie.
            if count.saturating_mul(36) != cursor.len() as u64 {
                return Err(PeerError::Malformed("inv"));
            }
            Ok(cursor
                .chunks_exact(36)
                .filter(|entry| {
                    let kind = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
                    matches!(kind & !INV_FLAGS, MSG_BLOCK | MSG_CMPCT_BLOCK)
                })
                .map(|entry| {
                    let mut hash = [0u8; 32];
                    hash.copy_from_slice(&entry[4..36]);
                    hash
                })
                .collect())
        }
        "headers" => {
            let (count, used) = deserialize_partial::<VarInt>(cursor)
                .map_err(|_| PeerError::Malformed("headers"))?;
            let count = count.0;
            cursor = &cursor[used..];
            // Each entry is an 80-byte header and a transaction count of 0.
            if count.saturating_mul(81) != cursor.len() as u64 {
                return Err(PeerError::Malformed("headers"));
            }
            Ok(cursor
                .chunks_exact(81)
                .map(|entry| share_chain::hash::sha256d(&entry[..80]))
                .collect())
        }
        _ => Ok(Vec::new()),
    }
}

/// The node's `version` message to `addr`.
fn version_payload(addr: SocketAddr, nonce: u64) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut version = VersionMessage::new(
        ServiceFlags::NONE,
        i64::try_from(now).unwrap_or(0),
        Address::new(&addr, ServiceFlags::NONE),
        Address::new(&unspecified, ServiceFlags::NONE),
        nonce,
        format!("/p2pool-rs:{}/", env!("CARGO_PKG_VERSION")),
        0,
    );
    version.version = PROTOCOL_VERSION;
    // No transaction announcements: the node wants blocks only.
    version.relay = false;
    serialize(&version)
}

/// A running P2P client of litecoind. Dropping it closes the connection.
pub struct DaemonPeer {
    blocks: mpsc::Sender<Vec<u8>>,
    connected: watch::Receiver<bool>,
    announced: broadcast::Sender<[u8; 32]>,
    task: JoinHandle<()>,
}

impl DaemonPeer {
    /// Connects (and reconnects, for ever) on the current tokio runtime.
    pub fn spawn(config: PeerConfig) -> Self {
        let (blocks_tx, blocks_rx) = mpsc::channel(BLOCK_QUEUE);
        let (connected_tx, connected_rx) = watch::channel(false);
        let (announced, _) = broadcast::channel(256);
        let task = tokio::spawn(run(config, blocks_rx, connected_tx, announced.clone()));
        DaemonPeer {
            blocks: blocks_tx,
            connected: connected_rx,
            announced,
            task,
        }
    }

    /// Whether the handshake is done and the connection up.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// A receiver of the connection state.
    pub fn connection(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }

    /// Queues a serialized block (the bytes `submitblock` takes) to be sent as `block`.
    pub fn relay_block(&self, block: Vec<u8>) -> Result<(), RelayError> {
        if !self.is_connected() {
            return Err(RelayError::NotConnected);
        }
        self.blocks.try_send(block).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RelayError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => RelayError::NotConnected,
        })
    }

    /// Every block hash litecoind announces (its new tips, in internal byte order).
    pub fn announcements(&self) -> broadcast::Receiver<[u8; 32]> {
        self.announced.subscribe()
    }
}

impl Drop for DaemonPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects, serves the connection until it fails, waits, and again, for ever.
async fn run(
    config: PeerConfig,
    mut blocks: mpsc::Receiver<Vec<u8>>,
    connected: watch::Sender<bool>,
    announced: broadcast::Sender<[u8; 32]>,
) {
    let mut backoff = RETRY_MIN;
    let mut was_up = true; // log the first failure
    loop {
        match connect(&config).await {
            Ok((reader, writer)) => {
                info!(addr = %config.addr, "connected to litecoind's P2P port");
                connected.send_replace(true);
                backoff = RETRY_MIN;
                was_up = true;
                let error = serve(&config, reader, writer, &mut blocks, &announced).await;
                connected.send_replace(false);
                warn!(addr = %config.addr, %error, "litecoind P2P connection lost");
            }
            Err(error) => {
                if was_up {
                    warn!(addr = %config.addr, %error, "cannot connect to litecoind's P2P port; retrying");
                } else {
                    debug!(addr = %config.addr, %error, "cannot connect to litecoind's P2P port");
                }
                was_up = false;
            }
        }
        // Blocks queued while down are not kept: submitblock carries them.
        while blocks.try_recv().is_ok() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// TCP connection and version handshake.
async fn connect(
    config: &PeerConfig,
) -> Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf), PeerError> {
    let handshake = async {
        let stream = TcpStream::connect(config.addr).await?;
        stream.set_nodelay(true)?;
        let (read, mut writer) = stream.into_split();
        let mut reader = BufReader::new(read);
        let nonce = fastrand_nonce();
        writer
            .write_all(&frame(
                config.magic,
                "version",
                &version_payload(config.addr, nonce),
            ))
            .await?;
        let (mut got_version, mut got_verack) = (false, false);
        while !(got_version && got_verack) {
            let message = read_message(&mut reader, config.magic).await?;
            match message.command.as_str() {
                "version" => {
                    got_version = true;
                    writer
                        .write_all(&frame(config.magic, "verack", &[]))
                        .await?;
                }
                "verack" => got_verack = true,
                _ => {}
            }
        }
        Ok::<_, PeerError>((reader, writer))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| PeerError::Timeout)?
}

/// A nonce for `version` (litecoind uses it only to detect connections to itself).
fn fastrand_nonce() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (now as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// Serves an established connection until it fails.
async fn serve(
    config: &PeerConfig,
    mut reader: BufReader<OwnedReadHalf>,
    mut writer: OwnedWriteHalf,
    blocks: &mut mpsc::Receiver<Vec<u8>>,
    announced: &broadcast::Sender<[u8; 32]>,
) -> PeerError {
    // Reading is not cancel-safe: it runs in its own task and hands over whole messages.
    let (messages_tx, mut messages) = mpsc::channel::<Result<Message, PeerError>>(64);
    let magic = config.magic;
    let read_task = tokio::spawn(async move {
        loop {
            let message =
                match tokio::time::timeout(IDLE_TIMEOUT, read_message(&mut reader, magic)).await {
                    Ok(message) => message,
                    Err(_) => Err(PeerError::Timeout),
                };
            let failed = message.is_err();
            if messages_tx.send(message).await.is_err() || failed {
                return;
            }
        }
    });
    let error = loop {
        tokio::select! {
            message = messages.recv() => {
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => break e,
                    None => break PeerError::Closed,
                };
                match message.command.as_str() {
                    "ping" => {
                        if let Err(e) = writer.write_all(&frame(magic, "pong", &message.payload)).await {
                            break e.into();
                        }
                    }
                    "inv" | "headers" => match announced_blocks(&message) {
                        Ok(hashes) => {
                            for hash in hashes {
                                debug!(hash = %hex::encode(hash), "litecoind announced a block");
                                let _ = announced.send(hash);
                            }
                        }
                        Err(e) => break e,
                    },
                    _ => {}
                }
            }
            block = blocks.recv() => {
                let Some(block) = block else { break PeerError::Closed };
                if let Err(e) = writer.write_all(&frame(magic, "block", &block)).await {
                    break e.into();
                }
                debug!(bytes = block.len(), "block relayed to litecoind over P2P");
            }
        }
    };
    read_task.abort();
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_hostile_frames_fail() {
        let magic = network_magic("regtest");
        let bytes = frame(magic, "ping", &[1, 2, 3, 4, 5, 6, 7, 8]);
        // verack's empty payload has the well-known checksum 5df6e0e2.
        assert_eq!(
            &frame(magic, "verack", &[])[20..24],
            &[0x5d, 0xf6, 0xe0, 0xe2]
        );
        let message = read_message(&mut bytes.as_slice(), magic).await.unwrap();
        assert_eq!(message.command, "ping");
        assert_eq!(message.payload, vec![1, 2, 3, 4, 5, 6, 7, 8]);

        let wrong = read_message(&mut bytes.as_slice(), network_magic("main")).await;
        assert!(matches!(wrong, Err(PeerError::WrongMagic(_))));
        let mut corrupt = bytes.clone();
        corrupt[24] ^= 1;
        assert!(matches!(
            read_message(&mut corrupt.as_slice(), magic).await,
            Err(PeerError::Checksum(_))
        ));
        let mut huge = bytes.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            read_message(&mut huge.as_slice(), magic).await,
            Err(PeerError::TooLarge { .. })
        ));
        // Truncated: an error, not a hang or a panic.
        assert!(read_message(&mut &bytes[..30], magic).await.is_err());
        assert!(matches!(
            read_message(&mut &bytes[..0], magic).await,
            Err(PeerError::Closed)
        ));
    }

    #[test]
    fn inv_and_headers_announce_blocks() {
        let mut inv = vec![3u8];
        for (kind, byte) in [(1u32, 0xaa), (2, 0xbb), (0x4000_0002, 0xcc)] {
            inv.extend_from_slice(&kind.to_le_bytes());
            inv.extend_from_slice(&[byte; 32]);
        }
        let message = Message {
            command: "inv".into(),
            payload: inv.clone(),
        };
        assert_eq!(
            announced_blocks(&message).unwrap(),
            vec![[0xbb; 32], [0xcc; 32]]
        );
        // A count that does not match the payload is malformed.
        inv[0] = 4;
        let lie = Message {
            command: "inv".into(),
            payload: inv,
        };
        assert!(announced_blocks(&lie).is_err());

        let mut headers = vec![1u8];
        headers.extend_from_slice(&[7u8; 80]);
        headers.push(0);
        let message = Message {
            command: "headers".into(),
            payload: headers,
        };
        assert_eq!(
            announced_blocks(&message).unwrap(),
            vec![share_chain::hash::sha256d(&[7u8; 80])]
        );
        let other = Message {
            command: "addr".into(),
            payload: vec![0xff; 3],
        };
        assert!(announced_blocks(&other).unwrap().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn announcements_never_panic(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            for command in ["inv", "headers"] {
                let _ = announced_blocks(&Message { command: command.into(), payload: payload.clone() });
            }
        }
    }
}
