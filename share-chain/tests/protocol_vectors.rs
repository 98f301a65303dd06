//! Checks the test vectors written in docs/PROTOCOL.md, section 14, so the spec and the code
//! cannot drift apart. Each vector is a fenced block tagged `vector` holding TOML with a
//! `name`. Run with `PRINT_VECTORS=1 cargo test -p share-chain --test protocol_vectors --
//! --nocapture` to print the values this code computes.

use std::collections::BTreeMap;

use share_chain::aux_work::aux_block_parts;
use share_chain::chain::ChainIndex;
use share_chain::coinbase::build_coinbase;
use share_chain::merged_mining::aux_slot;
use share_chain::params::{PowAlgorithm, Preset, BUILTIN_NAMES};
use share_chain::payout::compute_payouts;
use share_chain::pow::pow_hash;
use share_chain::testkit::{grow_chain, regtest_preset};
use share_chain::{BlockHeader, Target};

type Vectors = BTreeMap<String, toml::Table>;

fn vectors() -> Vectors {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    let text = std::fs::read_to_string(path).expect("docs/PROTOCOL.md");
    let mut out = BTreeMap::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("```vector\n") {
        let body = &rest[start + 10..];
        let end = body.find("```").expect("closed vector block");
        let table: toml::Table = toml::from_str(&body[..end]).expect("vector TOML");
        let name = table["name"].as_str().expect("name").to_string();
        assert!(
            out.insert(name.clone(), table).is_none(),
            "duplicate {name}"
        );
        rest = &body[end + 3..];
    }
    out
}

fn vector<'a>(v: &'a Vectors, name: &str) -> &'a toml::Table {
    v.get(name)
        .unwrap_or_else(|| panic!("vector {name} missing from PROTOCOL.md"))
}

fn text<'a>(v: &'a Vectors, name: &str, key: &str) -> &'a str {
    vector(v, name)
        .get(key)
        .and_then(|x| x.as_str())
        .unwrap_or_else(|| panic!("{name}.{key}"))
}

fn strings(v: &Vectors, name: &str, key: &str) -> Vec<String> {
    vector(v, name)[key]
        .as_array()
        .unwrap_or_else(|| panic!("{name}.{key}"))
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

fn display(mut h: [u8; 32]) -> String {
    h.reverse();
    hex::encode(h)
}

fn print_mode() -> bool {
    std::env::var_os("PRINT_VECTORS").is_some()
}

/// Asserts, or in print mode prints what the code computes.
fn check<T: PartialEq + std::fmt::Debug>(what: &str, got: T, expected: T) {
    if print_mode() {
        println!("{what} = {got:?}");
    } else {
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn pow_and_targets() {
    let v = vectors();
    let name = "pow/litecoin-genesis";
    let header: [u8; 80] = hex::decode(text(&v, name, "header"))
        .unwrap()
        .try_into()
        .unwrap();
    let scrypt = display(pow_hash(PowAlgorithm::Scrypt, &header));
    let id = BlockHeader::from_bytes(&header).hash().to_string();
    check("scrypt", scrypt.as_str(), text(&v, name, "scrypt"));
    check("id", id.as_str(), text(&v, name, "id"));

    for name in [
        "compact/bitcoin-difficulty-1",
        "compact/regtest",
        "compact/litecoin-min-share",
    ] {
        let bits = text(&v, name, "bits");
        let bits = u32::from_str_radix(bits.trim_start_matches("0x"), 16).unwrap();
        let t = Target::from_compact(bits).unwrap();
        check(name, t.to_string().as_str(), text(&v, name, "target"));
        check(
            name,
            t.work().0.to_string().as_str(),
            text(&v, name, "work"),
        );
    }
}

#[test]
fn network_ids() {
    let v = vectors();
    for preset in BUILTIN_NAMES {
        let id = Preset::builtin(preset).unwrap().network_id().to_string();
        let name = format!("network-id/{preset}");
        check(&name, id.as_str(), text(&v, &name, "id"));
    }
}

#[test]
fn payout_worked_example() {
    let v = vectors();
    let name = "payout/worked-example";
    let t = vector(&v, name);
    let p = Preset::builtin("litecoin")
        .unwrap()
        .consensus
        .payout_rules();
    let scripts: Vec<Vec<u8>> = strings(&v, name, "scripts")
        .iter()
        .map(|s| hex::decode(s).unwrap())
        .collect();
    let weights: Vec<u128> = t["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_integer().unwrap() as u128)
        .collect();
    let value = t["value"].as_integer().unwrap() as u64;
    let finder = hex::decode(text(&v, name, "finder")).unwrap();
    let seed: [u8; 32] = hex::decode(text(&v, name, "seed"))
        .unwrap()
        .try_into()
        .unwrap();
    let weights: Vec<(&[u8], u128)> = scripts
        .iter()
        .map(|s| s.as_slice())
        .zip(weights.iter().copied())
        .collect();
    let out = compute_payouts(&weights, &finder, value, &p, &seed);
    let got: Vec<String> = out
        .iter()
        .map(|o| format!("{}:{}", hex::encode(&o.script), o.amount))
        .collect();
    check(name, got, strings(&v, name, "outputs"));
}

/// A three-share regtest chain mined by the testkit: every consensus rule is in these bytes
/// (encoding, retarget, PPLNS, payouts, coinbase, commitment, merkle root).
#[test]
fn regtest_chain() {
    let v = vectors();
    let name = "chain/regtest-three-shares";
    let mut index = ChainIndex::new(&regtest_preset(""));
    let shares = grow_chain(&mut index, 3, 2, 1_700_000_000);
    let ids: Vec<String> = shares.iter().map(|s| s.hash().to_string()).collect();
    let last = &shares[2];
    let entry = index.get(&last.hash()).unwrap().clone();
    let payouts = index.expected_payouts(last, &entry.credits);
    let coinbase = build_coinbase(
        &last.coinbase,
        &payouts,
        &last.info.commitment(index.network_id()),
    );
    let encoded = hex::encode(last.encode());
    let coinbase_hex = hex::encode(coinbase.to_bytes());
    check("ids", ids, strings(&v, name, "ids"));
    check("share", encoded.as_str(), text(&v, name, "share"));
    check(
        "coinbase",
        coinbase_hex.as_str(),
        text(&v, name, "coinbase"),
    );

    // The Dogecoin block the third share also mines (docs/PROTOCOL.md §15).
    let name = "merged-mining/regtest-three-shares";
    let block = &last.merged_mining.blocks[0];
    let aux_payouts = index
        .aux_window_payouts(
            &last.info,
            &entry.credits,
            last.header.bits,
            block.chain_id,
            block.coinbase_value,
        )
        .unwrap();
    let (aux_coinbase, aux_header) = aux_block_parts(block, &aux_payouts);
    let tree = index.expected_aux_tree(last, &entry.credits).unwrap();
    check(
        "aux coinbase",
        hex::encode(aux_coinbase.to_bytes()).as_str(),
        text(&v, name, "aux_coinbase"),
    );
    check(
        "aux header",
        hex::encode(aux_header.to_bytes()).as_str(),
        text(&v, name, "aux_header"),
    );
    check(
        "aux block hash",
        aux_header.hash().to_string().as_str(),
        text(&v, name, "aux_block_hash"),
    );
    check(
        "commitment",
        hex::encode(tree.commitment().to_bytes()).as_str(),
        text(&v, name, "commitment"),
    );
}

/// The slots of the daemons' `getExpectedIndex`.
#[test]
fn aux_slots() {
    let v = vectors();
    let name = "merged-mining/slots";
    let t = vector(&v, name);
    let cases = t["cases"].as_array().unwrap();
    let got: Vec<String> = cases
        .iter()
        .map(|c| {
            let c: Vec<u32> = c
                .as_str()
                .unwrap()
                .split(':')
                .take(3)
                .map(|x| x.parse().unwrap())
                .collect();
            format!("{}:{}:{}:{}", c[0], c[1], c[2], aux_slot(c[0], c[1], c[2]))
        })
        .collect();
    check(name, got, strings(&v, name, "cases"));
}
