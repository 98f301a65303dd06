//! Writes the seed corpora (`fuzz/corpus/<target>/`) from real encodings: shares mined on
//! the fixtures' chain, sync frames as the codec writes them, Stratum sessions as
//! tests/stratum.rs speaks them, JSON-RPC requests as docs/RPC.md shows them.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (rewrites the seed files;
//! files the fuzzer added are left alone).

use std::fs;
use std::path::{Path, PathBuf};

use p2pool_fuzz::{address, base};
use p2pool_network::codec::{encode_request, encode_response};
use p2pool_network::{RefuseReason, SyncLimits, SyncRequest, SyncResponse, TipInfo, Work};
use share_chain::testkit::synthetic_share;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create corpus directory");
    fs::write(dir.join(name), bytes).expect("write seed");
}

/// A sync frame: the big-endian length, then the body.
fn frame(body: Vec<u8>) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn main() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let base = base();

    let dir = corpus.join("share_decode");
    for (i, s) in base.shares.iter().enumerate() {
        write(&dir, &format!("chain_{i}"), &s.encode());
    }
    write(&dir, "child_of_tip", &base.children[0].encode());
    write(&dir, "child_with_uncle", &base.children[1].encode());
    write(&dir, "synthetic", &synthetic_share(1).encode());

    // Aux blocks as an aux daemon returns them: the AuxPoWs a real Dogecoin Core was given
    // (share-chain's recorded vectors), in blocks with a coinbase and one more transaction;
    // and a block without an AuxPoW.
    let dir = corpus.join("aux_block");
    let vectors: serde_json::Value = serde_json::from_str(include_str!(
        "../../share-chain/tests/data/doge_auxpow_vectors.json"
    ))
    .expect("the vectors parse");
    let coinbase = share_chain::coinbase::build_aux_coinbase(
        &[0x01, 0x15],
        &[share_chain::coinbase::Payout {
            script: vec![
                0x76, 0xa9, 0x14, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0x88,
                0xac,
            ],
            amount: 1_000_000_000_000,
        }],
    )
    .to_bytes();
    let cases = vectors["cases"].as_array().expect("cases");
    for (i, auxpow) in cases
        .iter()
        .filter_map(|c| c["auxpow"].as_str())
        .take(4)
        .enumerate()
    {
        let auxpow = hex::decode(auxpow).expect("hex");
        let mut block = base.shares[0].header.to_bytes().to_vec();
        block[..4].copy_from_slice(&share_chain::auxpow::aux_block_version(6, 98).to_le_bytes());
        block.extend(auxpow);
        block.push(2);
        block.extend(&coinbase);
        block.extend(&coinbase);
        write(&dir, &format!("auxpow_{i}"), &block);
    }
    let mut plain = base.shares[0].header.to_bytes().to_vec();
    plain[..4].copy_from_slice(&6i32.to_le_bytes());
    plain.push(1);
    plain.extend(&coinbase);
    write(&dir, "plain", &plain);

    let dir = corpus.join("p2p_codec");
    let limits = SyncLimits::default();
    let hashes: Vec<_> = base.shares.iter().map(|s| s.hash()).collect();
    let requests = [
        ("get_tip", SyncRequest::GetTip),
        (
            "get_shares",
            SyncRequest::GetShares {
                locator: hashes.iter().rev().take(3).copied().collect(),
                stop: None,
                max: 128,
            },
        ),
        (
            "get_shares_stop",
            SyncRequest::GetShares {
                locator: vec![hashes[0]],
                stop: Some(hashes[3]),
                max: 10,
            },
        ),
        (
            "get_shares_by_hash",
            SyncRequest::GetSharesByHash {
                hashes: hashes[1..3].to_vec(),
            },
        ),
    ];
    for (name, req) in requests {
        let body = encode_request(&req, &limits).expect("seed request within limits");
        write(&dir, name, &frame(body));
    }
    let responses = [
        ("tip_none", SyncResponse::Tip(None)),
        (
            "tip",
            SyncResponse::Tip(Some(TipInfo {
                hash: hashes[5],
                height: 5,
                chain_work: Work(12),
            })),
        ),
        (
            "shares",
            SyncResponse::Shares(base.shares[..3].iter().map(|s| s.encode()).collect()),
        ),
        ("refused", SyncResponse::Refused(RefuseReason::Busy)),
    ];
    for (name, resp) in responses {
        let body = encode_response(&resp, &limits).expect("seed response within limits");
        write(&dir, name, &frame(body));
    }

    let dir = corpus.join("stratum_line");
    let user = format!("{}.rig1", address(0));
    let sessions = [
        (
            "happy_path",
            format!(
                concat!(
                    r#"{{"id":1,"method":"mining.subscribe","params":["test-miner/1.0"]}}"#,
                    "\n",
                    r#"{{"id":2,"method":"mining.configure","params":[["version-rolling"],{{"version-rolling.mask":"ffffffff","version-rolling.min-bit-count":2}}]}}"#,
                    "\n",
                    r#"{{"id":3,"method":"mining.authorize","params":["{user}","x"]}}"#,
                    "\n",
                    r#"{{"id":4,"method":"mining.submit","params":["{user}","1","00000000","6553f100","00000000"]}}"#,
                    "\n",
                    r#"{{"id":5,"method":"mining.submit","params":["{user}","1","00000001","6553f100","0000002a","00002000"]}}"#,
                    "\n",
                ),
                user = user
            ),
        ),
        (
            "extensions_and_difficulty",
            format!(
                concat!(
                    r#"{{"id":"a","method":"mining.configure","params":[["minimum-difficulty","subscribe-extranonce","x"],{{"minimum-difficulty.value":2.5}}]}}"#,
                    "\r\n",
                    r#"{{"id":"b","method":"mining.subscribe","params":[]}}"#,
                    "\n",
                    r#"{{"id":"c","method":"mining.extranonce.subscribe","params":[]}}"#,
                    "\n",
                    r#"{{"id":"d","method":"mining.suggest_difficulty","params":[0.5]}}"#,
                    "\n",
                    r#"{{"id":"e","method":"mining.authorize","params":["{user}+0.25","x"]}}"#,
                    "\n",
                    r#"{{"id":"f","method":"mining.suggest_difficulty","params":["nope"]}}"#,
                    "\n",
                    r#"{{"id":3,"result":true,"error":null}}"#,
                    "\n",
                    r#"{{"id":"g","method":"mining.get_transactions","params":[]}}"#,
                    "\n",
                ),
                user = user
            ),
        ),
        (
            "submit_before_subscribe",
            format!(
                "{}\n",
                r#"{"id":1,"method":"mining.submit","params":["x","1","00000000","00000000","00000000"]}"#
            ),
        ),
        (
            "bad_username",
            format!(
                "{}\n{}\n",
                r#"{"id":1,"method":"mining.subscribe","params":[]}"#,
                r#"{"id":2,"method":"mining.authorize","params":["ltc1qnotanaddress.w","x"]}"#
            ),
        ),
    ];
    for (name, text) in sessions {
        write(&dir, name, text.as_bytes());
    }

    let dir = corpus.join("rpc_request");
    let addr = address(0);
    let requests = [
        (
            "getinfo",
            r#"{"jsonrpc":"2.0","id":1,"method":"getinfo","params":[]}"#.to_string(),
        ),
        (
            "getpayoutinfo",
            r#"{"jsonrpc":"2.0","id":2,"method":"getpayoutinfo"}"#.to_string(),
        ),
        (
            "getpayoutinfo_address",
            format!(r#"{{"jsonrpc":"2.0","id":3,"method":"getpayoutinfo","params":["{addr}"]}}"#),
        ),
        (
            "getminerstats_address",
            format!(r#"{{"jsonrpc":"2.0","id":"m","method":"getminerstats","params":["{addr}"]}}"#),
        ),
        (
            "getpeerinfo",
            r#"{"jsonrpc":"2.0","id":5,"method":"getpeerinfo","params":[]}"#.to_string(),
        ),
        (
            "getsharechain",
            r#"{"jsonrpc":"2.0","id":6,"method":"getsharechain","params":[3]}"#.to_string(),
        ),
        (
            "unknown_method",
            r#"{"jsonrpc":"2.0","id":7,"method":"stop","params":[]}"#.to_string(),
        ),
        (
            "batch",
            r#"[{"jsonrpc":"2.0","id":8,"method":"getinfo"}]"#.to_string(),
        ),
    ];
    for (name, text) in requests {
        write(&dir, name, text.as_bytes());
    }
    println!("seeds written under {}", corpus.display());
}
