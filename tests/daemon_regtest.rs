//! The coin-daemon client against a REAL litecoind 0.21 on regtest.
//!
//! What it proves: templates parse (with mempool transactions, and after MWEB activation
//! with the `mweb` block and the HogEx), a block we assemble ourselves from a template is
//! accepted by `submitblock` byte for byte (before and after MWEB), the watcher learns of a
//! new block within a second and survives a daemon restart, and refusals (bad password,
//! wrong chain, no peer) give the right errors and states.
//!
//! The coinbase here is test-only code on rust-bitcoin (BIP34 height, one P2WPKH payout,
//! the witness commitment, the witness reserved value); the node's real coinbase is built
//! in share-chain.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::script::Builder;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use common::litecoind::{free_port, Node, NodeAuth, RegtestPair};
use p2pool::daemon::peer::network_magic;
use p2pool::daemon::rpc::{codes, parse_display_hash};
use p2pool::daemon::{
    assemble_block, Auth, BlockTemplate, DaemonPeer, DaemonState, DaemonStatus, PeerConfig,
    RpcClient, RpcConfig, RpcError, SubmitOutcome, Watcher, WatcherConfig,
};
use serde_json::{json, Value};
use share_chain::params::PowAlgorithm;
use share_chain::pow::pow_hash;
use tokio::sync::watch;

const TEMPLATE_TIMEOUT: Duration = Duration::from_secs(30);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("p2pool=debug")
        .try_init();
}

/// A block built from a template, ready for `submitblock`.
struct BuiltBlock {
    bytes: Vec<u8>,
    /// Block hash, display hex.
    hash: String,
    /// Our coinbase's txid, display hex.
    coinbase_txid: String,
    /// Hashes tried until the scrypt PoW met the target.
    tries: u32,
}

/// Test-only coinbase: BIP34 height push + a tag in the scriptSig, the whole coinbase value
/// to `payout`, the template's witness commitment, the 32-zero-byte witness reserved value.
fn coinbase(template: &BlockTemplate, payout: &[u8], tag: &[u8; 16]) -> Transaction {
    let script_sig = Builder::new()
        .push_int(i64::from(template.height))
        .push_slice(tag)
        .into_script();
    let mut output = vec![TxOut {
        value: Amount::from_sat(template.coinbase_value),
        script_pubkey: ScriptBuf::from_bytes(payout.to_vec()),
    }];
    if let Some(wc) = &template.default_witness_commitment {
        output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::from_bytes(wc.script.clone()),
        });
    }
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig,
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[0u8; 32]]),
        }],
        output,
    }
}

fn display(mut hash: [u8; 32]) -> String {
    hash.reverse();
    hex::encode(hash)
}

/// Builds the coinbase, the merkle root over the txids, the header; grinds the nonce with
/// scrypt until it meets the template target; assembles the block.
fn build_block(template: &BlockTemplate, payout: &[u8], tag: &[u8; 16]) -> BuiltBlock {
    let cb = coinbase(template, payout, tag);
    let cb_bytes = bitcoin::consensus::serialize(&cb);
    let txids = std::iter::once(cb.compute_txid())
        .chain(template.txids().map(|t| Txid::from_byte_array(*t)));
    let root = bitcoin::merkle_tree::calculate_root(txids).expect("at least the coinbase");
    let mut fields = share_chain::BlockHeader {
        version: template.version as i32,
        prev_block: template.previous_block_hash,
        merkle_root: root.to_byte_array(),
        time: template.cur_time,
        bits: template.bits,
        nonce: 0,
    };
    for nonce in 0u32..100_000 {
        fields.nonce = nonce;
        let header = fields.to_bytes();
        if template
            .target
            .is_met_by(&pow_hash(PowAlgorithm::Scrypt, &header))
        {
            return BuiltBlock {
                bytes: assemble_block(&header, &cb_bytes, template),
                hash: display(share_chain::hash::sha256d(&header)),
                coinbase_txid: display(cb.compute_txid().to_byte_array()),
                tries: nonce + 1,
            };
        }
    }
    panic!("no nonce met the regtest target in 100000 tries");
}

async fn get_block(rpc: &RpcClient, hash: &str, verbosity: u8) -> Value {
    rpc.call("getblock", vec![json!(hash), json!(verbosity)])
        .await
        .expect("getblock")
}

/// Submits `built` and checks that litecoind took it as its new tip, stored exactly our
/// bytes, and put our coinbase first.
async fn submit_and_check(pair: &RegtestPair, template: &BlockTemplate, built: &BuiltBlock) {
    let outcome = pair
        .rpc
        .submit_block(&built.bytes)
        .await
        .expect("submitblock");
    assert_eq!(outcome, SubmitOutcome::Accepted);
    check_stored(pair, template, built).await;
}

/// Sends `built` as a P2P `block` message (no RPC) and checks as [`submit_and_check`]; also
/// that litecoind announces it back as its new tip (how the node confirms a block when
/// `submitblock` fails).
async fn relay_and_check(
    pair: &RegtestPair,
    peer: &DaemonPeer,
    template: &BlockTemplate,
    built: &BuiltBlock,
) {
    let mut announcements = peer.announcements();
    peer.relay_block(built.bytes.clone())
        .expect("the block queued on the P2P connection");
    let hash = parse_display_hash(&built.hash).expect("a hash");
    let announced = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if announcements.recv().await.expect("announcements") == hash {
                return;
            }
        }
    })
    .await;
    assert!(
        announced.is_ok(),
        "litecoind did not announce the block relayed over P2P; tip {}\n{}",
        pair.best_block_hash().await,
        pair.a.log_tail()
    );
    check_stored(pair, template, built).await;
}

/// litecoind's tip is `built`, stored byte for byte, our coinbase first.
async fn check_stored(pair: &RegtestPair, template: &BlockTemplate, built: &BuiltBlock) {
    assert_eq!(pair.best_block_hash().await, built.hash);
    assert_eq!(pair.block_count().await, u64::from(template.height));
    // The daemon's own serialization of the stored block is exactly what we sent.
    let raw = get_block(&pair.rpc, &built.hash, 0).await;
    assert_eq!(raw.as_str(), Some(hex::encode(&built.bytes).as_str()));
    let block = get_block(&pair.rpc, &built.hash, 1).await;
    let txs: Vec<&str> = block["tx"]
        .as_array()
        .expect("tx list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(txs.len(), 1 + template.transactions.len());
    assert_eq!(txs[0], built.coinbase_txid);
    for (tx, expected) in txs[1..].iter().zip(&template.transactions) {
        assert_eq!(*tx, display(expected.txid));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_and_own_block_with_mempool_transactions() {
    init_logs();
    let started = Instant::now();
    let pair = RegtestPair::start().await;
    let address = pair.new_address("bech32").await;
    pair.mine_blocks(101, &address).await;
    let mut sent = Vec::new();
    for amount in [1.0, 2.5, 4.0] {
        let to = pair.new_address("bech32").await;
        sent.push(pair.send(&to, amount).await);
    }

    let t = pair
        .rpc
        .get_block_template(None, TEMPLATE_TIMEOUT)
        .await
        .expect("getblocktemplate");
    assert_eq!(t.height, 102);
    assert_eq!(
        Some(t.previous_block_hash),
        parse_display_hash(&pair.best_block_hash().await)
    );
    let mut template_txids: Vec<String> = t.txids().map(|id| display(*id)).collect();
    template_txids.sort();
    sent.sort();
    assert_eq!(template_txids, sent);
    assert!(t
        .transactions
        .iter()
        .all(|tx| !tx.is_hogex() && tx.fee > 0 && tx.weight > 0));
    assert!(t.mweb.is_none(), "MWEB is not active before height 432");
    assert_eq!(t.bits, 0x207f_ffff);
    // Regtest subsidy is 50 LTC until the first halving at 150.
    assert_eq!(t.coinbase_value, 50 * 100_000_000 + t.total_fees());
    assert!(t.default_witness_commitment.is_some());
    assert!(t.cur_time >= t.min_time);
    assert!(t.longpoll_id.is_some());
    assert!(t.rules.iter().any(|r| r.contains("segwit")));

    // litecoind 0.21 refuses a template request without the mweb rule (the client always
    // sends both), and keeps the error code although it answers HTTP 500.
    let rules = pair
        .rpc
        .call::<Value>("getblocktemplate", vec![json!({"rules": ["segwit"]})])
        .await
        .unwrap_err();
    assert_eq!(rules.rpc_code(), Some(codes::INVALID_PARAMETER), "{rules}");

    let payout = pair.script_of(&address).await;

    // A block whose coinbase was changed after the header was made: refused, with a reason.
    let mut tampered = build_block(&t, &payout, b"p2pool-rs-tamper");
    let at = tampered
        .bytes
        .windows(16)
        .position(|w| w == b"p2pool-rs-tamper")
        .expect("tag in the coinbase");
    tampered.bytes[at] ^= 0x01;
    match pair
        .rpc
        .submit_block(&tampered.bytes)
        .await
        .expect("submitblock")
    {
        SubmitOutcome::Rejected(reason) => assert_eq!(reason, "bad-txnmrklroot"),
        other => panic!("tampered block: {other:?}"),
    }

    let built = build_block(&t, &payout, b"p2pool-rs-test-1");
    submit_and_check(&pair, &t, &built).await;
    let mempool: Vec<String> = pair.rpc.call("getrawmempool", vec![]).await.unwrap();
    assert!(
        mempool.is_empty(),
        "our block mined the mempool: {mempool:?}"
    );
    // The same block again is a duplicate.
    assert_eq!(
        pair.rpc.submit_block(&built.bytes).await.unwrap(),
        SubmitOutcome::Duplicate
    );
    eprintln!(
        "pre-MWEB: block {} with {} txs accepted after {} scrypt tries; test took {:?}",
        built.hash,
        t.transactions.len(),
        built.tries,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_mweb_blocks_accepted() {
    init_logs();
    let started = Instant::now();
    let pair = RegtestPair::start().await;
    let address = pair.new_address("bech32").await;
    let payout = pair.script_of(&address).await;
    // MWEB activates at 432 on regtest; its first block needs a peg-in in the mempool.
    pair.mine_blocks(431, &address).await;
    let mined_at = started.elapsed();
    // The node's P2P client of litecoind: rounds 1 and 2 relay their block over P2P only.
    let peer = DaemonPeer::spawn(PeerConfig {
        addr: ([127, 0, 0, 1], pair.a.p2p_port).into(),
        magic: network_magic("regtest"),
    });
    let mut connected = peer.connection();
    tokio::time::timeout(Duration::from_secs(10), connected.wait_for(|up| *up))
        .await
        .expect("P2P handshake with litecoind")
        .expect("peer task alive");

    for (round, tag) in [
        b"p2pool-rs-mweb-1",
        b"p2pool-rs-mweb-2",
        b"p2pool-rs-mweb-3",
    ]
    .into_iter()
    .enumerate()
    {
        let mut expected = Vec::new();
        if round < 2 {
            let mweb_address = pair.new_address("mweb").await;
            expected.push(pair.send(&mweb_address, 1.0).await); // peg-in
            let other = pair.new_address("bech32").await;
            expected.push(pair.send(&other, 2.0).await);
        }
        let t = pair
            .rpc
            .get_block_template(None, TEMPLATE_TIMEOUT)
            .await
            .expect("getblocktemplate");
        assert_eq!(t.height, 432 + round as u32);
        assert!(t.rules.iter().any(|r| r == "mweb"));
        let mweb = t.mweb.as_ref().expect("an MWEB block in the template");
        assert!(!mweb.is_empty());
        let hogex = t.transactions.last().expect("a HogEx");
        assert!(hogex.is_hogex(), "the HogEx is last");
        let txids: Vec<String> = t.txids().map(|id| display(*id)).collect();
        if round == 0 {
            // The wallet has no MWEB coins yet: the peg-in and the plain send spend
            // canonical outputs and are template transactions.
            for txid in &expected {
                assert!(txids.contains(txid), "{txid} not in the template");
            }
            assert_eq!(t.transactions.len(), expected.len() + 1);
        } else {
            // Later sends may spend MWEB coins; such transactions live only inside the
            // `mweb` blob, so only the HogEx is certain to be there.
            assert!(t.transactions.len() <= expected.len() + 1);
        }

        let built = build_block(&t, &payout, tag);
        if round == 0 {
            submit_and_check(&pair, &t, &built).await;
        } else {
            relay_and_check(&pair, &peer, &t, &built).await;
        }
        // Every wallet transaction, canonical or MWEB-only, is confirmed in our block.
        for txid in &expected {
            let wtx: Value = pair
                .rpc
                .call("gettransaction", vec![json!(txid)])
                .await
                .expect("gettransaction");
            assert_eq!(
                wtx["blockhash"].as_str(),
                Some(built.hash.as_str()),
                "{txid}"
            );
        }
        assert!(
            built.bytes.ends_with(&[&[0x01][..], mweb].concat()),
            "the block ends in 0x01 || mweb"
        );
        eprintln!(
            "MWEB block {} at height {} ({} txs, mweb {} bytes, block {} bytes) accepted",
            built.hash,
            t.height,
            t.transactions.len(),
            mweb.len(),
            built.bytes.len()
        );
    }
    eprintln!(
        "MWEB test: 431 blocks mined in {mined_at:?}, whole test {:?}",
        started.elapsed()
    );
}

/// Waits until the watcher publishes a ready template built on `tip` (display hex), at most
/// `limit` after `since`; returns the time since `since`.
async fn wait_for_tip(
    rx: &mut watch::Receiver<DaemonStatus>,
    tip: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    let tip = parse_display_hash(tip).expect("tip hash");
    tokio::time::timeout(
        limit.saturating_sub(since.elapsed()),
        rx.wait_for(|s| s.ready_template().map(|t| t.previous_block_hash) == Some(tip)),
    )
    .await
    .unwrap_or_else(|_| panic!("watcher did not report the new tip within {limit:?}"))
    .expect("watcher alive");
    since.elapsed()
}

async fn wait_for_state(
    rx: &mut watch::Receiver<DaemonStatus>,
    limit: Duration,
    what: &str,
    pred: impl FnMut(&DaemonStatus) -> bool,
) -> DaemonStatus {
    let outcome = tokio::time::timeout(limit, rx.wait_for(pred))
        .await
        .map(|r| r.map(|status| status.clone()));
    match outcome {
        Ok(Ok(status)) => status,
        Ok(Err(_)) => panic!("watcher stopped"),
        Err(_) => panic!(
            "watcher not {what} within {limit:?}; state {:?}",
            rx.borrow().state
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_follows_the_tip_and_survives_a_restart() {
    init_logs();
    let mut pair = RegtestPair::start().await;
    let address = pair.new_address("bech32").await;

    let mut config = WatcherConfig::new("regtest");
    config.retry_interval = Duration::from_millis(200);
    // Node A uses cookie auth: after its restart the client must re-read the new cookie.
    let mut longpoll_config = config.clone();
    longpoll_config.use_longpoll = true;
    let longpoll = Watcher::spawn(Arc::new(pair.a.client()), longpoll_config);
    let mut polling_config = config.clone();
    polling_config.use_longpoll = false;
    let polling = Watcher::spawn(Arc::new(pair.a.client()), polling_config);
    let mut rx = longpoll.subscribe();
    let mut rx_poll = polling.subscribe();
    for rx in [&mut rx, &mut rx_poll] {
        let status =
            wait_for_state(rx, Duration::from_secs(10), "ready", |s| s.state.is_ready()).await;
        assert_eq!(status.ready_template().map(|t| t.height), Some(1));
    }

    let mut worst_longpoll = Duration::ZERO;
    let mut worst_poll = Duration::ZERO;
    for _ in 0..5 {
        let seq = rx.borrow().template_seq;
        // Timed from before the block is mined: a conservative latency.
        let mined = Instant::now();
        let hash = pair.mine_blocks(1, &address).await.remove(0);
        let seen = wait_for_tip(&mut rx, &hash, mined, Duration::from_secs(1)).await;
        let seen_poll = wait_for_tip(&mut rx_poll, &hash, mined, Duration::from_secs(1)).await;
        assert!(rx.borrow().template_seq > seq);
        worst_longpoll = worst_longpoll.max(seen);
        worst_poll = worst_poll.max(seen_poll);
    }
    eprintln!(
        "new block seen after at most {worst_longpoll:?} (long poll), {worst_poll:?} (polling)"
    );

    // The daemon goes away: no template, state Unreachable.
    let stop = Instant::now();
    pair.a.stop().await;
    let stopped = stop.elapsed();
    let status = wait_for_state(&mut rx, Duration::from_secs(30), "unreachable", |s| {
        s.state == DaemonState::Unreachable
    })
    .await;
    assert!(status.template.is_none() && status.ready_template().is_none());
    eprintln!(
        "litecoind took {stopped:?} to stop; unreachable reported {:?} after it exited",
        stop.elapsed() - stopped
    );

    // It comes back on the same datadir and ports, with a new cookie: Ready again by itself.
    let old_cookie = std::fs::read_to_string(pair.a.cookie_path()).unwrap_or_default();
    let restart = Instant::now();
    pair.a.restart().await;
    let new_cookie = std::fs::read_to_string(pair.a.cookie_path()).expect("new cookie");
    assert_ne!(
        old_cookie, new_cookie,
        "litecoind writes a new cookie on every start"
    );
    // Node B reconnects by itself (it was started with -connect to A).
    pair.wait_connected(Duration::from_secs(30)).await;
    for rx in [&mut rx, &mut rx_poll] {
        wait_for_state(rx, Duration::from_secs(60), "ready again", |s| {
            s.state.is_ready()
        })
        .await;
    }
    eprintln!("ready again {:?} after restart began", restart.elapsed());
    let best = pair.best_block_hash().await;
    wait_for_tip(&mut rx, &best, Instant::now(), Duration::from_secs(5)).await;
    let mined = Instant::now();
    let hash = pair.mine_blocks(1, &address).await.remove(0);
    wait_for_tip(&mut rx, &hash, mined, Duration::from_secs(1)).await;
    wait_for_tip(&mut rx_poll, &hash, mined, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_credentials_chain_and_no_peer() {
    init_logs();
    let password = format!("pw{}", free_port());
    let node = Node::start(
        "lone",
        NodeAuth::UserPass {
            user: "p2pool".into(),
            password: password.clone(),
        },
        vec![],
    )
    .await;

    // Right credentials.
    let good = Arc::new(node.client());
    let net = good.get_network_info().await.expect("getnetworkinfo");
    assert!(
        net.subversion.contains("LitecoinCore"),
        "{}",
        net.subversion
    );
    assert!(net.version >= 210_000, "{}", net.version);
    let info = good.get_blockchain_info().await.expect("getblockchaininfo");
    assert_eq!(info.chain, "regtest");
    assert!(!info.initialblockdownload);

    // Errors keep their code although litecoind sends them as HTTP 404/500.
    let unknown = good
        .call::<Value>("nosuchmethod", vec![])
        .await
        .unwrap_err();
    assert_eq!(unknown.rpc_code(), Some(codes::METHOD_NOT_FOUND));
    // No peer: regtest serves no template.
    let no_peer = good
        .get_block_template(None, TEMPLATE_TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        no_peer.rpc_code(),
        Some(codes::CLIENT_NOT_CONNECTED),
        "{no_peer}"
    );

    // Wrong password, missing cookie, nothing listening.
    let wrong = node.client_with(Auth::UserPass {
        user: "p2pool".into(),
        password: "wrong".into(),
    });
    assert!(matches!(
        wrong.get_blockchain_info().await,
        Err(RpcError::Unauthorized)
    ));
    let no_cookie = node.client_with(Auth::CookieFile(node.cookie_path()));
    assert!(matches!(
        no_cookie.get_blockchain_info().await,
        Err(RpcError::Cookie { .. })
    ));
    let nobody = RpcClient::new(RpcConfig::new(
        format!("http://127.0.0.1:{}/", free_port()),
        node.rpc_auth(),
    ))
    .unwrap();
    assert!(matches!(
        nobody.get_blockchain_info().await,
        Err(RpcError::Unreachable(_))
    ));
    // A missing cookie with nothing listening is a daemon that is down, not bad credentials
    // (litecoind deletes its cookie when it stops).
    let nobody_cookie = RpcClient::new(RpcConfig::new(
        format!("http://127.0.0.1:{}/", free_port()),
        Auth::CookieFile(node.cookie_path()),
    ))
    .unwrap();
    assert!(matches!(
        nobody_cookie.get_blockchain_info().await,
        Err(RpcError::Unreachable(_))
    ));

    // The watcher's states for each.
    let cases: Vec<(Arc<RpcClient>, &str, DaemonState)> = vec![
        (Arc::new(wrong), "regtest", DaemonState::Unauthorized),
        (Arc::new(no_cookie), "regtest", DaemonState::Unauthorized),
        (Arc::new(nobody_cookie), "regtest", DaemonState::Unreachable),
        (
            good.clone(),
            "main",
            DaemonState::WrongChain {
                expected: "main".into(),
                found: "regtest".into(),
            },
        ),
        (
            good.clone(),
            "regtest",
            DaemonState::NoTemplate("Litecoin Core is not connected!".into()),
        ),
        (Arc::new(nobody), "regtest", DaemonState::Unreachable),
    ];
    for (client, chain, expected) in cases {
        let mut config = WatcherConfig::new(chain);
        config.retry_interval = Duration::from_millis(100);
        let watcher = Watcher::spawn(client, config);
        let mut rx = watcher.subscribe();
        let status = wait_for_state(
            &mut rx,
            Duration::from_secs(10),
            "in the expected state",
            |s| s.state == expected,
        )
        .await;
        assert!(status.template.is_none());
    }
}
