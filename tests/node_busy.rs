//! A busy chain end to end, against the real litecoind (regtest, `-blockmaxweight=4000000`):
//! a mempool holding several blocks' worth of transactions (MWEB peg-ins among them) and a
//! PPLNS window of 49 P2WSH payees, whose coinbase outweighs the 4,000 weight units
//! litecoind leaves for it. Every block the node finds must be accepted by litecoind and pay
//! every payee of the window exactly as the share chain says (docs/NODE.md, "Block
//! assembly").
//!
//! The payees' shares are built from the node's own share templates and connected to its
//! chain directly (48 Stratum miners on 2 cores would take minutes to each find one); the
//! blocks are found by the project's CPU miner over real Stratum. The mempool is filled
//! first, a block mined by litecoind hands the node a full template at once, and mining
//! starts only once the node's template has caught up with the whole mempool (the node
//! refreshes its template every 5 s): its coinbase value is litecoind's, every fee in.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::absolute::LockTime;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use futures::StreamExt;
use p2pool::block_fit::witness_commitment;
use p2pool::daemon::{BlockTemplate, RpcClient};
use p2pool::miner::{mine, MinerStats};
use p2pool::node::{DaemonP2p, Node, NodeConfig, NodeEvent, NodeOptions};
use p2pool::work::{block_context, script_sig_prefix};
use serde_json::{json, Value};
use share_chain::address::script_to_address;
use share_chain::coinbase::Payout;
use share_chain::payout::{compute_payouts, payout_seed};
use share_chain::pow::pow_hash;
use share_chain::pplns::{window_work_cap, WindowWeights};
use share_chain::template::MinerPayout;
use share_chain::{Preset, ShareHash};

mod common;

use common::litecoind::RegtestPair;
use common::pool::{init_logs, regtest, regtest_miner};

/// Payees with a share each, paid to P2WSH: 48 outputs of 43 bytes are ~8,300 WU.
const PAYEES: u32 = 48;
/// Transactions of 40 outputs (~7,100 WU): the block litecoind mines to hand the node a
/// full template, the node's first block, the blocks after it.
const TIER_SIZES: [usize; 3] = [600, 560, 700];
/// Fee rates in litoshi per vbyte: base and spread of each tier.
const TIER_RATES: [(u64, u64); 3] = [(300, 100), (100, 150), (20, 70)];
/// Small children of tier 2 and 3 transactions (~390 WU), so blocks fill to the last
/// hundreds of weight units and templates carry `depends`.
const CHILDREN: usize = 400;
const OUTPUTS_PER_TX: usize = 40;
/// Blocks the node must find (the first two at least are full).
const BLOCKS: usize = 4;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// `<k> OP_DROP OP_TRUE`: anyone can spend its P2WSH output with the script as the only
/// witness item (no keys, no signing), and each `k` is a different address for `sendmany`.
fn witness_script(k: u32) -> Vec<u8> {
    let mut s = vec![0x04];
    s.extend_from_slice(&k.to_le_bytes());
    s.extend_from_slice(&[0x75, 0x51]);
    s
}

fn p2wsh(witness_script: &[u8]) -> Vec<u8> {
    let mut s = vec![0x00, 0x20];
    s.extend_from_slice(&sha256::Hash::hash(witness_script).to_byte_array());
    s
}

/// A payee's script: P2WSH of a script no one needs to spend here.
fn payee(i: u32) -> Vec<u8> {
    p2wsh(&[b"payee".as_slice(), &i.to_le_bytes()].concat())
}

/// Spends `input` (a P2WSH output of `witness_script`, worth `value`) to `outputs` equal
/// P2WSH outputs, paying `rate` litoshi per vbyte.
fn spend(input: OutPoint, value: u64, script: &[u8], outputs: usize, rate: u64) -> Transaction {
    let to = ScriptBuf::from_bytes(p2wsh(&witness_script(u32::MAX)));
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: input,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[script]),
        }],
        output: vec![
            TxOut {
                value: Amount::ZERO,
                script_pubkey: to,
            };
            outputs
        ],
    };
    let fee = rate * tx.weight().to_wu().div_ceil(4);
    let each = (value - fee) / outputs as u64;
    for out in &mut tx.output {
        out.value = Amount::from_sat(each);
    }
    tx
}

/// litecoind's current template.
async fn block_template(rpc: &RpcClient) -> BlockTemplate {
    let raw: Value = rpc
        .call(
            "getblocktemplate",
            vec![json!({"rules": ["mweb", "segwit"]})],
        )
        .await
        .expect("getblocktemplate");
    BlockTemplate::from_json(raw).expect("a template")
}

/// Connects one share paying `script` to the node's chain: the node's own share template
/// on `block`, ground to the share target on two threads.
async fn connect_share(node: &Node, block: &BlockTemplate, script: Vec<u8>, time: u32) {
    let context = block_context(block);
    let miner = MinerPayout {
        aux_script: None,
        script,
        fee: None,
        share_target_bits: None,
    };
    let template = node
        .chain
        .call(move |c| c.index_mut().share_template(&miner, context))
        .await
        .expect("chain")
        .expect("share template");
    let mut script_sig = script_sig_prefix(&template, block.height);
    script_sig.extend_from_slice(&[0; 8]);
    let time = time.max(template.min_time);
    let share = template.share(script_sig, block.version as i32, time, 0);
    let target = template.share_target;
    let header = share.header.clone();
    let nonce = tokio::task::spawn_blocking(move || {
        let found = AtomicU32::new(u32::MAX);
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let (found, mut header) = (&found, header.clone());
                s.spawn(move || {
                    let mut nonce = t;
                    while found.load(Ordering::Relaxed) == u32::MAX {
                        header.nonce = nonce;
                        if target.is_met_by(&pow_hash(
                            share_chain::PowAlgorithm::Scrypt,
                            &header.to_bytes(),
                        )) {
                            found.store(nonce, Ordering::Relaxed);
                        }
                        nonce += 2;
                    }
                });
            }
        });
        found.into_inner()
    })
    .await
    .unwrap();
    let mut share = share;
    share.header.nonce = nonce;
    node.chain
        .call(move |c| c.connect(share, now_secs()))
        .await
        .expect("chain")
        .expect("the share connects");
}

/// Sends 1 LTC to each of `count` anyone-can-spend outputs (from `first`), mines them in,
/// and returns the outpoints in order.
async fn fund(
    pair: &RegtestPair,
    coin: &share_chain::CoinParams,
    first: u32,
    count: u32,
) -> Vec<(OutPoint, u64, Vec<u8>)> {
    let mut amounts = serde_json::Map::new();
    for k in first..first + count {
        let address = script_to_address(&p2wsh(&witness_script(k)), coin).expect("an address");
        amounts.insert(address, json!(1.0));
    }
    let txid: String = pair
        .rpc
        .call("sendmany", vec![json!(""), Value::Object(amounts)])
        .await
        .expect("sendmany");
    let wallet_tx: Value = pair
        .rpc
        .call("gettransaction", vec![json!(txid)])
        .await
        .unwrap();
    let decoded: Value = pair
        .rpc
        .call("decoderawtransaction", vec![wallet_tx["hex"].clone()])
        .await
        .unwrap();
    let txid: Txid = txid.parse().unwrap();
    let mut out = Vec::new();
    for k in first..first + count {
        let script = hex::encode(p2wsh(&witness_script(k)));
        let vout = decoded["vout"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["scriptPubKey"]["hex"] == script.as_str())
            .expect("the output");
        out.push((
            OutPoint::new(txid, vout["n"].as_u64().unwrap() as u32),
            100_000_000,
            witness_script(k),
        ));
    }
    out
}

/// Submits raw transactions, eight at a time.
async fn submit(rpc: &Arc<RpcClient>, txs: &[Transaction]) {
    let results: Vec<Result<String, _>> = futures::stream::iter(txs.iter().map(|tx| {
        let rpc = rpc.clone();
        let hex = bitcoin::consensus::encode::serialize_hex(tx);
        async move {
            rpc.call::<String>("sendrawtransaction", vec![json!(hex)])
                .await
        }
    }))
    .buffer_unordered(8)
    .collect()
    .await;
    for r in results {
        r.expect("litecoind accepts the transaction");
    }
}

/// The node's API: `method`'s result.
async fn api(node: &Node, method: &str) -> Value {
    let url = format!("http://{}/", node.api_addr().expect("the API is on"));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []});
    let answer: Value = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["result"].clone()
}

/// Checks that litecoind has `block` and that its coinbase pays exactly what the share
/// chain's window says, every payee included. Returns the block's weight, its coinbase's
/// weight and its transaction count.
async fn check_block(
    node: &Node,
    rpc: &RpcClient,
    block: ShareHash,
    payees: &[Vec<u8>],
) -> (u64, u64, usize) {
    let raw: Value = rpc
        .call("getblock", vec![json!(block.to_string()), json!(2)])
        .await
        .unwrap_or_else(|e| panic!("litecoind has block {block}: {e}"));
    let paid: Vec<Payout> = raw["tx"][0]["vout"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| Payout {
            script: hex::decode(o["scriptPubKey"]["hex"].as_str().unwrap()).unwrap(),
            amount: (o["value"].as_f64().unwrap() * 1e8).round() as u64,
        })
        .filter(|p| p.amount > 0)
        .collect();
    let (expected, in_window) = node
        .chain
        .call(move |chain| {
            let index = chain.index();
            let entry = index.get(&block).expect("the block is a share").clone();
            let parent = entry.parent();
            let ancestors = parent
                .into_iter()
                .flat_map(|p| index.ancestors(p))
                .map(|e| e.credits.as_ref());
            let cap = window_work_cap(entry.share.header.bits, index.params());
            let w = WindowWeights::from_ancestors(&entry.credits, ancestors, cap, index.params());
            let weights: Vec<(&[u8], u128)> = w.iter().collect();
            let seed = payout_seed(&parent.unwrap_or(ShareHash::ZERO));
            let payouts = compute_payouts(
                &weights,
                &entry.share.info.payout_script,
                entry.share.coinbase.value,
                &index.params().payout_rules(),
                &seed,
            );
            (payouts, w.by_script.len())
        })
        .await
        .unwrap();
    assert_eq!(paid, expected, "block {block} pays the window");
    assert!(
        in_window > PAYEES as usize,
        "{in_window} payees in the window"
    );
    for script in payees {
        assert!(
            paid.iter().any(|p| &p.script == script),
            "block {block} pays payee {}",
            hex::encode(script)
        );
    }
    (
        raw["weight"].as_u64().unwrap(),
        raw["tx"][0]["weight"].as_u64().unwrap(),
        raw["tx"].as_array().unwrap().len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_blocks_with_a_large_window_are_accepted() {
    init_logs();
    let started = Instant::now();
    let preset: Preset = regtest();
    let coin = preset.coin.clone();
    let pair = RegtestPair::start_with(vec!["-blockmaxweight=4000000".to_owned()]).await;
    let rpc = pair.rpc.clone();

    // MWEB active from height 432: its first block needs a peg-in.
    let wallet = pair.new_address("bech32").await;
    pair.mine_blocks(431, &wallet).await;
    let mweb = pair.new_address("mweb").await;
    pair.send(&mweb, 1.0).await;
    pair.mine_blocks(1, &wallet).await;

    let datadir = tempfile::tempdir().unwrap();
    let node = Node::start_with(
        NodeConfig {
            preset: preset.clone(),
            datadir: datadir.path().to_path_buf(),
            daemon: pair.a.rpc_config(),
            stratum: "127.0.0.1:0".parse().unwrap(),
            fee: None,
            p2p_listen: Vec::new(),
            peers: Vec::new(),
        },
        NodeOptions {
            api: Some("127.0.0.1:0".parse().unwrap()),
            daemon_p2p: DaemonP2p::At(([127, 0, 0, 1], pair.a.p2p_port).into()),
            ..NodeOptions::default()
        },
    )
    .await
    .expect("node starts");

    // Funding outputs, mined in, then the transactions spending them.
    let total: usize = TIER_SIZES.iter().sum();
    let half = (total / 2) as u32;
    let mut funding = fund(&pair, &coin, 0, half).await;
    funding.extend(fund(&pair, &coin, half, total as u32 - half).await);
    pair.mine_blocks(1, &wallet).await;
    let mut tiers: Vec<Vec<Transaction>> = Vec::new();
    let mut funds = funding.into_iter();
    for (size, (base, spread)) in TIER_SIZES.iter().zip(TIER_RATES) {
        tiers.push(
            (0..*size as u64)
                .map(|i| {
                    let (outpoint, value, script) = funds.next().unwrap();
                    spend(
                        outpoint,
                        value,
                        &script,
                        OUTPUTS_PER_TX,
                        base + (i * 7919) % spread,
                    )
                })
                .collect(),
        );
    }
    let spender = witness_script(u32::MAX);
    let children: Vec<Transaction> = tiers[1]
        .iter()
        .chain(&tiers[2])
        .step_by((TIER_SIZES[1] + TIER_SIZES[2]) / CHILDREN)
        .enumerate()
        .map(|(i, parent)| {
            let input = OutPoint::new(parent.compute_txid(), 0);
            let value = parent.output[0].value.to_sat();
            spend(input, value, &spender, 1, 20 + (i as u64 * 37) % 380)
        })
        .collect();

    // The payees' shares (timestamps 2 s apart, the share period, so the share difficulty
    // stays where it is), while litecoind takes the transactions.
    let payees: Vec<Vec<u8>> = (0..PAYEES).map(payee).collect();
    let mempool = async {
        for tier in &tiers {
            submit(&rpc, tier).await;
        }
        submit(&rpc, &children).await;
    };
    let block = block_template(&rpc).await;
    let shares = async {
        let base = now_secs() as u32 - 2 * PAYEES - 30;
        for (i, script) in payees.iter().enumerate() {
            connect_share(&node, &block, script.clone(), base + 2 * i as u32).await;
        }
    };
    tokio::join!(mempool, shares);
    let info: Value = rpc.call("getmempoolinfo", vec![]).await.unwrap();
    eprintln!("mempool {info}, setup {:?}", started.elapsed());

    // A block mined by litecoind hands the node a full template at once; peg-ins join the
    // mempool just after, at 500 litoshi/vbyte (above every tier), so the full template
    // carries them and the HogEx depends on them: the fit must keep them.
    let trigger = pair.block_count().await;
    pair.mine_blocks(1, &wallet).await;
    let _: Value = rpc.call("settxfee", vec![json!(0.005)]).await.unwrap();
    let mut pegins = Vec::new();
    // Each amount is more than the wallet's MWEB coins (its earlier sends to itself): the
    // wallet must peg canonical coins in, rather than pay from MWEB coins alone.
    for amount in [10.0, 30.0, 100.0] {
        let address = pair.new_address("mweb").await;
        pegins.push(pair.send(&address, amount).await);
    }
    // The node's template catches up with the full mempool, peg-ins included: litecoind's
    // template carries them (it rebuilds a template on the same tip at most every 5 s) and
    // the node's has the same height and coinbase value (subsidy and every fee).
    let pegins_of = |t: &BlockTemplate| {
        t.transactions
            .last()
            .filter(|t| t.is_hogex())
            .map_or(0, |h| h.depends.len())
    };
    let waited = Instant::now();
    let full = loop {
        let full = block_template(&rpc).await;
        let daemon = api(&node, "getinfo").await["daemon"].clone();
        if pegins_of(&full) > 0
            && daemon["height"].as_u64() == Some(trigger + 2)
            && daemon["block_value"].as_u64() == Some(full.coinbase_value)
        {
            break full;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the node's template did not catch up with the mempool: {daemon}; litecoind's \
             height {} value {}, {} peg-ins",
            full.height,
            full.coinbase_value,
            pegins_of(&full)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "full template: {} transactions, {} WU, fees {}, {} peg-ins the HogEx depends on",
        full.transactions.len(),
        full.transactions.iter().map(|t| t.weight).sum::<u64>(),
        full.total_fees(),
        pegins_of(&full)
    );

    // The witness commitment the node recomputes for the transactions it keeps is
    // litecoind's own over all of them (HogEx included).
    assert!(full.transactions.len() > 500 && full.has_mweb());
    assert_eq!(
        Some(witness_commitment(
            full.transactions.iter().map(|t| t.wtxid)
        )),
        full.default_witness_commitment
    );

    // One CPU miner over Stratum finds the blocks (on regtest nearly every share is one).
    let mut events = node.subscribe();
    let miner_script = payee(PAYEES);
    let stop = Arc::new(AtomicBool::new(false));
    let config = p2pool::miner::MinerConfig {
        server: node.stratum_addr(),
        username: script_to_address(&miner_script, &coin).unwrap(),
        ..regtest_miner()
    };
    let miner = tokio::spawn(mine(config, Arc::new(MinerStats::default()), stop.clone()));
    let mut found = Vec::new();
    // On regtest nearly every share is a block, and blocks are submitted in parallel: a
    // second block on the same previous block loses the race to the first (litecoind says
    // "inconclusive", or it came over P2P first and is on a side branch). Nothing else may
    // be refused.
    let mut lost_races = 0;
    let limit = Duration::from_secs(120);
    let mining = Instant::now();
    while found.len() < BLOCKS {
        let left = limit.saturating_sub(mining.elapsed());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(NodeEvent::BlockSubmitted {
                hash,
                height,
                accepted,
                result,
                ..
            })) => {
                if accepted {
                    found.push(hash);
                } else {
                    assert!(
                        result.starts_with("Inconclusive"),
                        "block {hash} at height {height}: {result}"
                    );
                    lost_races += 1;
                }
            }
            Ok(_) => {}
            Err(_) => panic!("only {} of {BLOCKS} blocks in {limit:?}", found.len()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = miner.await;
    eprintln!(
        "{} blocks accepted, {lost_races} lost races against the node's own blocks",
        found.len()
    );

    let mut weights = Vec::new();
    for block in &found {
        let (weight, coinbase, txs) = check_block(&node, &rpc, *block, &payees).await;
        eprintln!("block {block}: {weight} WU, coinbase {coinbase} WU, {txs} transactions");
        weights.push(weight);
    }
    eprintln!("block weights {weights:?}, {:?} in all", started.elapsed());
    // The first blocks were full: the node left transactions out, and counts them.
    assert!(weights[0] > 3_900_000, "{weights:?}");
    let metrics = reqwest::get(format!("http://{}/metrics", node.api_addr().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped = metrics
        .lines()
        .find(|l| l.starts_with("p2pool_template_txs_dropped"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("the counter");
    let dropped_weight = metrics
        .lines()
        .find(|l| l.starts_with("p2pool_template_weight_dropped"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("the counter");
    eprintln!("template transactions left out: {dropped} ({dropped_weight} WU)");
    assert!(dropped > 0, "{metrics}");
    // The MWEB transactions sent into the busy mempool (peg-ins: the HogEx depends on them)
    // are confirmed in the node's blocks. (The wallet may fund some from its MWEB coins:
    // those live only in the extension block, so the wallet, not getblock's canonical
    // list, says where they are.)
    for pegin in &pegins {
        let wtx: Value = rpc
            .call("gettransaction", vec![json!(pegin)])
            .await
            .expect("gettransaction");
        let block = wtx["blockhash"].as_str().unwrap_or_default().to_owned();
        assert!(
            found.iter().any(|f| f.to_string() == block),
            "MWEB transaction {pegin} is in one of the node's blocks (it is in {block:?})"
        );
    }
}
