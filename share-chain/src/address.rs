//! Litecoin addresses to and from payout scripts (scriptPubKeys).
//!
//! Miners log in with an address; shares and coinbases carry the script it stands for. This
//! is a small codec on the `base58` and `bech32` crates that rust-bitcoin 0.32 re-exports,
//! because `bitcoin::Address` only knows Bitcoin's version bytes and prefixes.
//!
//! Accepted, as Litecoin Core 0.21 accepts them:
//! - base58check P2PKH (`L…`, `m…`/`n…`) and P2SH under both version bytes of a network
//!   (`M…`/`3…` on mainnet, `Q…`/`2…` on testnet and regtest); P2SH is encoded with the
//!   first (newer) version byte, as Litecoin Core prints it;
//! - bech32 segwit v0 (P2WPKH, P2WSH) and bech32m witness v1 with a 32-byte program (P2TR).
//!
//! Every script this produces is one of the standard kinds a share may pay
//! ([`crate::script::ScriptKind`]). Valid addresses of other kinds are refused with the
//! reason: witness v2..=16 and v1 programs other than 32 bytes (anyone can spend them until a
//! soft fork gives them meaning), and MWEB stealth addresses (they name no scriptPubKey, so a
//! coinbase cannot pay them). Every refusal says why, and names the network when an address belongs to another
//! Litecoin network than the node's, because that is the commonest mistake.

use bitcoin::base58;
use bitcoin::bech32::primitives::decode::{CharError, UncheckedHrpstring, UncheckedHrpstringError};
use bitcoin::bech32::{self, Bech32, Bech32m, Fe32, Hrp};
use bitcoin::hashes::Hash;
use bitcoin::script::witness_program::WitnessProgram;
use bitcoin::{PubkeyHash, Script, ScriptBuf, ScriptHash, WitnessVersion};
use thiserror::Error;

use crate::params::{AuxChainParams, CoinParams};

/// Longest input looked at. MWEB addresses (about 120 characters) fit, so they get their own
/// error rather than "too long"; nothing longer is worth decoding.
pub const MAX_ADDRESS_LEN: usize = 200;

/// Longest segwit address (BIP 173).
pub const MAX_SEGWIT_ADDRESS_LEN: usize = 90;

/// The Litecoin networks, to tell a user which network an address they gave belongs to.
/// `known_networks_match_presets` checks this table against the built-in presets.
struct KnownNetwork {
    /// Name used in messages.
    label: &'static str,
    /// The preset's `chain`.
    chain: &'static str,
    p2pkh_version: u8,
    p2sh_versions: [u8; 2],
    bech32_hrp: &'static str,
}

const KNOWN_NETWORKS: &[KnownNetwork] = &[
    KnownNetwork {
        label: "Litecoin mainnet",
        chain: "litecoin",
        p2pkh_version: 0x30,
        p2sh_versions: [0x32, 0x05],
        bech32_hrp: "ltc",
    },
    KnownNetwork {
        label: "Litecoin testnet",
        chain: "litecoin-testnet",
        p2pkh_version: 0x6f,
        p2sh_versions: [0x3a, 0xc4],
        bech32_hrp: "tltc",
    },
    KnownNetwork {
        label: "Litecoin regtest",
        chain: "litecoin-regtest",
        p2pkh_version: 0x6f,
        p2sh_versions: [0x3a, 0xc4],
        bech32_hrp: "rltc",
    },
];

/// Human-readable parts of MWEB stealth addresses. Litecoin Core 0.21 uses `ltcmweb` on
/// mainnet and `tmweb` on both testnet and regtest (checked with `getnewaddress "" mweb`).
const MWEB_HRPS: &[&str] = &["ltcmweb", "tmweb"];

/// Which checksum a bech32 string carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bech32Variant {
    /// BIP 173, for witness version 0.
    Bech32,
    /// BIP 350, for witness versions 1 to 16.
    Bech32m,
}

impl std::fmt::Display for Bech32Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bech32Variant::Bech32 => "bech32",
            Bech32Variant::Bech32m => "bech32m",
        })
    }
}

/// Why a string is not a payout address for the node's network.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address of {len} characters is too long (at most {max})")]
    TooLong { len: usize, max: usize },
    #[error("not an address: {base58} as base58, and {bech32} as bech32")]
    Malformed { base58: String, bech32: String },
    #[error("base58 address has a bad checksum (mistyped?)")]
    Base58Checksum,
    #[error("base58 string of {0} bytes is too short to be an address")]
    Base58TooShort(usize),
    #[error("base58 address carries {0} bytes; an address carries a version byte and 20 bytes")]
    Base58Length(usize),
    #[error("address version byte 0x{version:02x} is not a {chain} address")]
    UnknownVersion { version: u8, chain: String },
    #[error("this is a {network} address, but this node runs {chain}")]
    WrongNetwork { network: String, chain: String },
    #[error("address prefix {found:?} is not {chain}'s {expected:?}")]
    WrongHrp {
        found: String,
        expected: String,
        chain: String,
    },
    #[error(
        "address prefix {found:?} makes this a {network} address, but this node runs {chain} \
         (whose addresses start {expected:?})"
    )]
    WrongHrpNetwork {
        found: String,
        expected: String,
        network: String,
        chain: String,
    },
    #[error("MWEB addresses have no scriptPubKey and cannot receive coinbase payouts")]
    Mweb,
    #[error("bech32 address mixes upper and lower case")]
    MixedCase,
    #[error("bech32 address has a bad checksum (mistyped?)")]
    Bech32Checksum,
    #[error("bech32 address has no witness version or program")]
    NoWitnessData,
    #[error("witness version {0} does not exist (versions are 0 to 16)")]
    WitnessVersion(u8),
    #[error(
        "witness version {version} addresses must be encoded as {expected}, this one is {found}"
    )]
    WrongVariant {
        version: u8,
        expected: Bech32Variant,
        found: Bech32Variant,
    },
    #[error("bech32 address has invalid padding bits")]
    Padding,
    #[error(
        "witness program of {len} bytes is invalid for witness version {version} \
         (version 0 takes 20 or 32 bytes, later versions 2 to 40)"
    )]
    ProgramLength { version: u8, len: usize },
    #[error(
        "witness version {version} with a {len}-byte program is not a payout type: until a soft \
         fork defines it anyone can spend it (payouts go to P2PKH, P2SH, P2WPKH, P2WSH or P2TR)"
    )]
    UnspendableWitness { version: u8, len: usize },
}

/// The scriptPubKey an address pays to, if the address belongs to `coin`'s network.
pub fn address_to_script(address: &str, coin: &CoinParams) -> Result<Vec<u8>, AddressError> {
    check_length(address)?;
    // Base58 first, as Litecoin Core does: a valid base58check string is taken as one. The
    // two alphabets overlap, but Litecoin's prefixes all contain an `l`, which base58 lacks,
    // so no Litecoin bech32 address decodes as base58.
    let base58_error = match base58::decode_check(address) {
        Ok(payload) => return base58_to_script(&payload, coin),
        Err(e) => e,
    };
    match UncheckedHrpstring::new(address) {
        Ok(unchecked) => bech32_to_script(address, unchecked, coin),
        Err(bech32_error) => Err(match (base58_error, bech32_error) {
            (base58::Error::IncorrectChecksum(_), _) => AddressError::Base58Checksum,
            (base58::Error::TooShort(e), _) => {
                AddressError::Base58TooShort(e.invalid_base58_length())
            }
            (_, UncheckedHrpstringError::Char(CharError::MixedCase)) => AddressError::MixedCase,
            (b, e) => AddressError::Malformed {
                base58: b.to_string(),
                bech32: e.to_string(),
            },
        }),
    }
}

/// Refuses an empty address and one too long to be any address.
fn check_length(address: &str) -> Result<(), AddressError> {
    if address.is_empty() {
        return Err(AddressError::Empty);
    }
    if address.len() > MAX_ADDRESS_LEN {
        return Err(AddressError::TooLong {
            len: address.len(),
            max: MAX_ADDRESS_LEN,
        });
    }
    Ok(())
}

/// A base58check payload's version byte and 20-byte hash.
fn base58_parts(payload: &[u8]) -> Result<(u8, [u8; 20]), AddressError> {
    match payload.split_first() {
        Some((&version, hash)) => hash
            .try_into()
            .map(|hash| (version, hash))
            .map_err(|_| AddressError::Base58Length(payload.len())),
        None => Err(AddressError::Base58Length(0)),
    }
}

fn p2pkh(hash: [u8; 20]) -> Vec<u8> {
    ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array(hash)).into_bytes()
}

fn p2sh(hash: [u8; 20]) -> Vec<u8> {
    ScriptBuf::new_p2sh(&ScriptHash::from_byte_array(hash)).into_bytes()
}

fn base58_to_script(payload: &[u8], coin: &CoinParams) -> Result<Vec<u8>, AddressError> {
    let (version, hash) = base58_parts(payload)?;
    if version == coin.p2pkh_version {
        return Ok(p2pkh(hash));
    }
    if coin.p2sh_versions.contains(&version) {
        return Ok(p2sh(hash));
    }
    let owners: Vec<&str> = KNOWN_NETWORKS
        .iter()
        .filter(|n| n.chain != coin.chain)
        .filter(|n| n.p2pkh_version == version || n.p2sh_versions.contains(&version))
        .map(|n| n.label)
        .collect();
    if owners.is_empty() {
        Err(AddressError::UnknownVersion {
            version,
            chain: coin.chain.clone(),
        })
    } else {
        Err(AddressError::WrongNetwork {
            network: owners.join(" or "),
            chain: coin.chain.clone(),
        })
    }
}

fn bech32_to_script(
    address: &str,
    unchecked: UncheckedHrpstring<'_>,
    coin: &CoinParams,
) -> Result<Vec<u8>, AddressError> {
    let hrp = unchecked.hrp().to_lowercase();
    if MWEB_HRPS.contains(&hrp.as_str()) {
        return Err(AddressError::Mweb);
    }
    let expected = coin.bech32_hrp.to_lowercase();
    if hrp != expected {
        return Err(match KNOWN_NETWORKS.iter().find(|n| n.bech32_hrp == hrp) {
            Some(n) => AddressError::WrongHrpNetwork {
                found: hrp,
                expected,
                network: n.label.to_string(),
                chain: coin.chain.clone(),
            },
            None => AddressError::WrongHrp {
                found: hrp,
                expected,
                chain: coin.chain.clone(),
            },
        });
    }
    if address.len() > MAX_SEGWIT_ADDRESS_LEN {
        return Err(AddressError::TooLong {
            len: address.len(),
            max: MAX_SEGWIT_ADDRESS_LEN,
        });
    }
    let (variant, mut checked) = if unchecked.has_valid_checksum::<Bech32>() {
        (Bech32Variant::Bech32, unchecked.remove_checksum::<Bech32>())
    } else if unchecked.has_valid_checksum::<Bech32m>() {
        (
            Bech32Variant::Bech32m,
            unchecked.remove_checksum::<Bech32m>(),
        )
    } else {
        return Err(AddressError::Bech32Checksum);
    };
    // The first data character is the witness version; `witness_version()` hides values
    // above 16 as "none", so read the character itself to report them.
    let first = checked
        .data_part_ascii_no_checksum()
        .first()
        .ok_or(AddressError::NoWitnessData)?;
    let version = Fe32::from_char(char::from(*first))
        .map_err(|_| AddressError::NoWitnessData)?
        .to_u8();
    if version > 16 {
        return Err(AddressError::WitnessVersion(version));
    }
    let expected_variant = if version == 0 {
        Bech32Variant::Bech32
    } else {
        Bech32Variant::Bech32m
    };
    if variant != expected_variant {
        return Err(AddressError::WrongVariant {
            version,
            expected: expected_variant,
            found: variant,
        });
    }
    checked.remove_witness_version();
    checked
        .validate_segwit_padding()
        .map_err(|_| AddressError::Padding)?;
    let program: Vec<u8> = checked.byte_iter().collect();
    let length_ok = match version {
        0 => program.len() == 20 || program.len() == 32,
        _ => (2..=40).contains(&program.len()),
    };
    let bad_length = || AddressError::ProgramLength {
        version,
        len: program.len(),
    };
    if !length_ok {
        return Err(bad_length());
    }
    // Valid addresses, but only taproot's 32-byte v1 program has spending rules.
    if version > 1 || (version == 1 && program.len() != 32) {
        return Err(AddressError::UnspendableWitness {
            version,
            len: program.len(),
        });
    }
    let witness_version = WitnessVersion::try_from(version).map_err(|_| bad_length())?;
    let program = WitnessProgram::new(witness_version, &program).map_err(|_| bad_length())?;
    Ok(ScriptBuf::new_witness_program(&program).into_bytes())
}

/// The address of a scriptPubKey on `coin`'s network, or `None` for scripts that have no
/// address (bare multisig, P2PK, OP_RETURN, malformed witness programs). Bech32 output is
/// lower case; P2SH uses the network's first P2SH version byte.
pub fn script_to_address(script: &[u8], coin: &CoinParams) -> Option<String> {
    let script = Script::from_bytes(script);
    if script.is_p2pkh() {
        let hash = script.as_bytes().get(3..23)?;
        return Some(base58_address(coin.p2pkh_version, hash));
    }
    if script.is_p2sh() {
        let hash = script.as_bytes().get(2..22)?;
        return Some(base58_address(*coin.p2sh_versions.first()?, hash));
    }
    let version = script.witness_version()?;
    let program = script.as_bytes().get(2..)?;
    let version = version.to_num();
    if version == 0 && program.len() != 20 && program.len() != 32 {
        return None;
    }
    let hrp = Hrp::parse(&coin.bech32_hrp).ok()?;
    let fe = Fe32::try_from(version).ok()?;
    bech32::segwit::encode(hrp, fe, program).ok()
}

/// The scriptPubKey an aux chain address pays to: base58 P2PKH or P2SH with `chain`'s
/// version bytes (Dogecoin: `D…` and `9…`/`A…` on mainnet), the only kinds an aux payout may
/// be (docs/PROTOCOL.md §15).
pub fn aux_address_to_script(
    address: &str,
    chain: &AuxChainParams,
) -> Result<Vec<u8>, AddressError> {
    check_length(address)?;
    let payload = base58::decode_check(address).map_err(|e| match e {
        base58::Error::IncorrectChecksum(_) => AddressError::Base58Checksum,
        base58::Error::TooShort(e) => AddressError::Base58TooShort(e.invalid_base58_length()),
        other => AddressError::Malformed {
            base58: other.to_string(),
            bech32: "not tried: aux chains have no segwit".into(),
        },
    })?;
    let (version, hash) = base58_parts(&payload)?;
    if version == chain.p2pkh_version {
        Ok(p2pkh(hash))
    } else if version == chain.p2sh_version {
        Ok(p2sh(hash))
    } else {
        Err(AddressError::UnknownVersion {
            version,
            chain: chain.chain.clone(),
        })
    }
}

/// The address of an aux chain script (P2PKH or P2SH), if it has one.
pub fn aux_script_to_address(script: &[u8], chain: &AuxChainParams) -> Option<String> {
    let script = Script::from_bytes(script);
    if script.is_p2pkh() {
        return Some(base58_address(
            chain.p2pkh_version,
            script.as_bytes().get(3..23)?,
        ));
    }
    if script.is_p2sh() {
        return Some(base58_address(
            chain.p2sh_version,
            script.as_bytes().get(2..22)?,
        ));
    }
    None
}

fn base58_address(version: u8, hash: &[u8]) -> String {
    let mut payload = Vec::with_capacity(1 + hash.len());
    payload.push(version);
    payload.extend_from_slice(hash);
    base58::encode_check(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dogecoin addresses from Dogecoin Core's own chain parameters: the version bytes 0x1e
    /// (`D`) and 0x16 on mainnet, 0x6f and 0xc4 on regtest.
    #[test]
    fn aux_addresses_round_trip_on_each_chain() {
        for name in BUILTIN_NAMES {
            let preset = Preset::builtin(name).unwrap();
            for chain in &preset.aux_chains {
                for script in [
                    [&[0x76, 0xa9, 0x14][..], &[7; 20], &[0x88, 0xac]].concat(),
                    [&[0xa9, 0x14][..], &[7; 20], &[0x87]].concat(),
                ] {
                    let address = aux_script_to_address(&script, chain).unwrap();
                    assert_eq!(aux_address_to_script(&address, chain), Ok(script));
                }
            }
        }
        let doge = &Preset::builtin("litecoin").unwrap().aux_chains[0];
        let p2pkh = [&[0x76, 0xa9, 0x14][..], &[0; 20], &[0x88, 0xac]].concat();
        assert!(aux_script_to_address(&p2pkh, doge)
            .unwrap()
            .starts_with('D'));
        // A Litecoin address is not a Dogecoin one.
        assert!(matches!(
            aux_address_to_script("LM2WMpR1Rp6j3Sa59cMXMs1SPzj9eXpGc1", doge),
            Err(AddressError::UnknownVersion { .. })
        ));
    }
    use crate::params::{Preset, BUILTIN_NAMES};
    use crate::script::ScriptKind;
    use proptest::prelude::*;

    fn coin(name: &str) -> CoinParams {
        Preset::builtin(name).unwrap().coin
    }

    /// (network, address, scriptPubKey hex) produced by Litecoin Core 0.21.2.1 (the Debian
    /// `litecoind`), run offline (`-connect=0 -listen=0`) with a throw-away datadir on each
    /// network: `createwallet w`, `getnewaddress "" legacy|p2sh-segwit|bech32`,
    /// `createmultisig 1 [k1,k2] bech32` (P2WSH), then `getaddressinfo`/`validateaddress`
    /// for the scriptPubKey. Litecoin Core 0.21 cannot make bech32m addresses, so the
    /// taproot vectors were encoded by hand from the witness program shown and
    /// `validateaddress` on each network confirmed `isvalid: true` and the scriptPubKey.
    const VECTORS: &[(&str, &str, &str)] = &[
        // regtest
        (
            "litecoin-regtest",
            "mojxZd4JXNtfU1jenTttaSNwdiqRX8PTPj",
            "76a9145a36a34988122e4b86c76f06416899a79cee55f388ac",
        ),
        (
            "litecoin-regtest",
            "Qd1fBkZ6EHvLJNhLKtGe2S7DRbwePG74Hn",
            "a914b3fc3305ed2d83cc73a18c8ebe49ac241272001d87",
        ),
        (
            "litecoin-regtest",
            "rltc1qlah2qczyaaxws6tfthn84uvell99wq533v7lzz",
            "0014ff6ea06044ef4ce869695de67af199ffca570291",
        ),
        (
            "litecoin-regtest",
            "rltc1q8vpmvak95dalgjjrv77slmqye29qa8lwfgrrasm5dpj3352gwnfqjg729f",
            "00203b03b676c5a37bf44a4367bd0fec04ca8a0e9fee4a063ec374686518d14874d2",
        ),
        (
            "litecoin-regtest",
            "rltc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqsyzyjh",
            "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        ),
        // From `decoderawtransaction` of the coinbase test vector in coinbase.rs.
        (
            "litecoin-regtest",
            "rltc1qzyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3p937dx",
            "00141111111111111111111111111111111111111111",
        ),
        // testnet
        (
            "litecoin-testnet",
            "n1baQNjhA6QquWffWHjjqdoMdtkH73PK7C",
            "76a914dc425260ee7b7175994a503d24ad4f297d79c7e988ac",
        ),
        (
            "litecoin-testnet",
            "QTyoH5iWnn3KR86VuNGu47NpNzv32HkTK1",
            "a91450e8fd77ff24c639674d78cdc9252ab00019b96587",
        ),
        (
            "litecoin-testnet",
            "tltc1qj2g5mxv33t97pwaennl77cevld9lxt4xzt9k7q",
            "001492914d99918acbe0bbb99cffef632cfb4bf32ea6",
        ),
        (
            "litecoin-testnet",
            "tltc1qzslrzcpqshzxx9w7eq8dln3sp4uju0lnq5xqt02akafex5htt2mqkztv80",
            "0020143e31602085c46315dec80edfce300d792e3ff3050c05bd5db7539352eb5ab6",
        ),
        (
            "litecoin-testnet",
            "tltc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq2a7uhl",
            "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        ),
        // mainnet
        (
            "litecoin",
            "LSexKDpvcxpBoHVZ4yyTSL6bVU1HJK5tbu",
            "76a914518352a573429fdb4bcf89623ebe3af764a4230688ac",
        ),
        (
            "litecoin",
            "MMzbimYbfCV78cQSDT9AHLWVdXomuTyg3N",
            "a9149a991e1a7777644316ed38844c2f019ffebf870c87",
        ),
        (
            "litecoin",
            "ltc1ql3sd6dg69tg4wu0x7qrcelxs0y9xsj5gq4tsv2",
            "0014fc60dd351a2ad15771e6f0078cfcd0790a684a88",
        ),
        (
            "litecoin",
            "ltc1qchr77u6gu6km0r6tg8ep7ns2q9jqf3gg4cl4xj28n4zpk3whsrjsl6euy4",
            "0020c5c7ef7348e6adb78f4b41f21f4e0a016404c508ae3f5349479d441b45d780e5",
        ),
        (
            "litecoin",
            "ltc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqpj6zg2",
            "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        ),
    ];

    /// Valid witness v2 and v16 addresses (encoded by hand, `validateaddress` on each network
    /// answered `isvalid: true` with these scriptPubKeys): not payout types.
    const FUTURE_WITNESS: &[(&str, &str, &str)] = &[
        (
            "litecoin-regtest",
            "rltc1zqypqxpq9qcrsszg2pvxq6rs0zqt5400g",
            "52100102030405060708090a0b0c0d0e0f10",
        ),
        ("litecoin-regtest", "rltc1sqypqw9sj82", "60020102"),
        (
            "litecoin-testnet",
            "tltc1zqypqxpq9qcrsszg2pvxq6rs0zq2e9vm7",
            "52100102030405060708090a0b0c0d0e0f10",
        ),
        ("litecoin-testnet", "tltc1sqypq66rek7", "60020102"),
        (
            "litecoin",
            "ltc1zqypqxpq9qcrsszg2pvxq6rs0zq4gq8zz",
            "52100102030405060708090a0b0c0d0e0f10",
        ),
        ("litecoin", "ltc1sqypqw96stc", "60020102"),
    ];

    /// P2SH addresses under the older version byte (0x05 on mainnet, 0xc4 on testnet and
    /// regtest), base58check-encoded by hand from the hashes of the P2SH vectors above;
    /// `validateaddress` on each network answered `isvalid: true`, the same scriptPubKey,
    /// and re-encoded the address with the newer byte (the `M…`/`Q…` address given here).
    const OLD_P2SH: &[(&str, &str, &str, &str)] = &[
        (
            "litecoin",
            "3FnTQt8di5dgL78Y7a9pThG6JqDKqhpPDA",
            "a9149a991e1a7777644316ed38844c2f019ffebf870c87",
            "MMzbimYbfCV78cQSDT9AHLWVdXomuTyg3N",
        ),
        (
            "litecoin-testnet",
            "2Mzd3A4rGmfzEGwLTHGEsyQwPEcUD2aAfHo",
            "a91450e8fd77ff24c639674d78cdc9252ab00019b96587",
            "QTyoH5iWnn3KR86VuNGu47NpNzv32HkTK1",
        ),
        (
            "litecoin-regtest",
            "2N9eu4jgrDBsFABwHhnEcwjfnHDVpXxCjxJ",
            "a914b3fc3305ed2d83cc73a18c8ebe49ac241272001d87",
            "Qd1fBkZ6EHvLJNhLKtGe2S7DRbwePG74Hn",
        ),
    ];

    /// MWEB addresses from `getnewaddress "" mweb` on Litecoin Core 0.21.2.1 (regtest,
    /// testnet, mainnet: regtest uses the testnet prefix `tmweb`).
    const MWEB: &[(&str, &str)] = &[
        ("litecoin-regtest", "tmweb1qqtnt7jkycfpu480yn8q5hrr0gskvm3uk7ne5jva0rr02yus06yn8cqsd6y764w2zvr7g7js7th894yrj73xagj2qry7uu7xx7yt4z0kcsqzrgn8w"),
        ("litecoin-testnet", "tmweb1qq0htnjezyxuss8upjgprxgjz2aqfadqpx3tlgmzn70qwn7e9arcpuqnd7my7frzkqrv4x4e526265adug9jegm6y8dl8wjm0acxpzx7x3g2mz07j"),
        ("litecoin", "ltcmweb1qqv5mlaw5luc7yj6wr8thz6j8saj8ujhnc7jxxm672s6pw35kxgy7xq6cucjqryx9q7exclacffgugphdvwtm2kxyxnhq7lv5xh0nyswwf5nffn2v"),
    ];

    #[test]
    fn litecoind_vectors_round_trip() {
        for (net, address, spk) in VECTORS {
            let c = coin(net);
            let script = address_to_script(address, &c)
                .unwrap_or_else(|e| panic!("{address} on {net}: {e}"));
            assert_eq!(hex::encode(&script), *spk, "{address}");
            assert_eq!(
                script_to_address(&script, &c).as_deref(),
                Some(*address),
                "{spk}"
            );
        }
    }

    #[test]
    fn every_accepted_address_pays_a_standard_script() {
        let accepted = VECTORS
            .iter()
            .map(|(net, address, _)| (*net, *address))
            .chain(OLD_P2SH.iter().map(|(net, address, _, _)| (*net, *address)));
        for (net, address) in accepted {
            let script = address_to_script(address, &coin(net)).unwrap();
            assert!(ScriptKind::of(&script).is_some(), "{address}");
        }
    }

    #[test]
    fn future_witness_versions_are_refused_with_the_reason() {
        for (net, address, spk) in FUTURE_WITNESS {
            let c = coin(net);
            let version = if spk.starts_with("52") { 2 } else { 16 };
            let len = hex::decode(spk).unwrap().len() - 2;
            let err = address_to_script(address, &c).unwrap_err();
            assert_eq!(
                err,
                AddressError::UnspendableWitness { version, len },
                "{address}"
            );
            assert!(err.to_string().contains("anyone can spend"));
            // Still displayed if such a script is ever met.
            assert_eq!(
                script_to_address(&hex::decode(spk).unwrap(), &c).as_deref(),
                Some(*address)
            );
        }
        // A v1 program of 20 bytes is not taproot either.
        let c = coin("litecoin-regtest");
        let v1: Vec<Fe32> = std::iter::once(Fe32::P)
            .chain([7u8; 20].into_iter().bytes_to_fes())
            .collect();
        assert_eq!(
            address_to_script(&encode_fes::<Bech32m>("rltc", &v1), &c),
            Err(AddressError::UnspendableWitness {
                version: 1,
                len: 20
            })
        );
    }

    #[test]
    fn old_p2sh_versions_decode_and_reencode_with_the_new_one() {
        for (net, old, spk, new) in OLD_P2SH {
            let c = coin(net);
            let script = address_to_script(old, &c).unwrap();
            assert_eq!(hex::encode(&script), *spk);
            assert_eq!(script_to_address(&script, &c).as_deref(), Some(*new));
        }
    }

    #[test]
    fn bech32_is_case_insensitive_but_not_mixed_case() {
        let c = coin("litecoin");
        let lower = "ltc1ql3sd6dg69tg4wu0x7qrcelxs0y9xsj5gq4tsv2";
        let upper = lower.to_uppercase();
        assert_eq!(
            address_to_script(&upper, &c).unwrap(),
            address_to_script(lower, &c).unwrap()
        );
        let taproot = "ltc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqpj6zg2";
        assert!(address_to_script(&taproot.to_uppercase(), &c).is_ok());
        let mixed = "ltc1Ql3sd6dg69tg4wu0x7qrcelxs0y9xsj5gq4tsv2";
        assert_eq!(address_to_script(mixed, &c), Err(AddressError::MixedCase));
        let mixed = "LTC1ql3sd6dg69tg4wu0x7qrcelxs0y9xsj5gq4tsv2";
        assert_eq!(address_to_script(mixed, &c), Err(AddressError::MixedCase));
    }

    #[test]
    fn mweb_addresses_are_refused_with_the_reason() {
        for (net, address) in MWEB {
            let err = address_to_script(address, &coin(net)).unwrap_err();
            assert_eq!(err, AddressError::Mweb);
            assert_eq!(
                err.to_string(),
                "MWEB addresses have no scriptPubKey and cannot receive coinbase payouts"
            );
        }
        // Also on a network other than its own: the MWEB reason is the useful one.
        assert_eq!(
            address_to_script(MWEB[2].1, &coin("litecoin-regtest")),
            Err(AddressError::Mweb)
        );
    }

    #[test]
    fn base58_of_another_litecoin_network_is_named() {
        let err = address_to_script(
            "LSexKDpvcxpBoHVZ4yyTSL6bVU1HJK5tbu",
            &coin("litecoin-testnet"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            AddressError::WrongNetwork {
                network: "Litecoin mainnet".into(),
                chain: "litecoin-testnet".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "this is a Litecoin mainnet address, but this node runs litecoin-testnet"
        );
        let err =
            address_to_script("QTyoH5iWnn3KR86VuNGu47NpNzv32HkTK1", &coin("litecoin")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this is a Litecoin testnet or Litecoin regtest address, but this node runs litecoin"
        );
        // Testnet and regtest share their version bytes, as in Litecoin Core.
        assert!(address_to_script(
            "n1baQNjhA6QquWffWHjjqdoMdtkH73PK7C",
            &coin("litecoin-regtest")
        )
        .is_ok());
    }

    #[test]
    fn unknown_version_byte() {
        // A Bitcoin mainnet P2PKH address (version 0x00).
        let err =
            address_to_script("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", &coin("litecoin")).unwrap_err();
        assert_eq!(
            err,
            AddressError::UnknownVersion {
                version: 0,
                chain: "litecoin".into()
            }
        );
    }

    #[test]
    fn bad_checksums() {
        let c = coin("litecoin");
        // Last character changed.
        assert_eq!(
            address_to_script("LSexKDpvcxpBoHVZ4yyTSL6bVU1HJK5tbv", &c),
            Err(AddressError::Base58Checksum)
        );
        assert_eq!(
            address_to_script("ltc1ql3sd6dg69tg4wu0x7qrcelxs0y9xsj5gq4tsv3", &c),
            Err(AddressError::Bech32Checksum)
        );
    }

    #[test]
    fn wrong_hrp_names_the_network() {
        let err = address_to_script(
            "tltc1qj2g5mxv33t97pwaennl77cevld9lxt4xzt9k7q",
            &coin("litecoin-regtest"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "address prefix \"tltc\" makes this a Litecoin testnet address, but this node runs \
             litecoin-regtest (whose addresses start \"rltc\")"
        );
        // A Bitcoin address (BIP 173 vector): the prefix is simply wrong.
        let err = address_to_script(
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
            &coin("litecoin"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            AddressError::WrongHrp {
                found: "bc".into(),
                expected: "ltc".into(),
                chain: "litecoin".into()
            }
        );
    }

    #[test]
    fn wrong_variant_for_the_witness_version() {
        let c = coin("litecoin-regtest");
        // The regtest taproot vector's program, checksummed as bech32 instead of bech32m:
        // litecoind's validateaddress answered isvalid false.
        assert_eq!(
            address_to_script(
                "rltc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq9cjgh4",
                &c
            ),
            Err(AddressError::WrongVariant {
                version: 1,
                expected: Bech32Variant::Bech32m,
                found: Bech32Variant::Bech32
            })
        );
        // A v0 program checksummed as bech32m.
        let program = hex::decode("ff6ea06044ef4ce869695de67af199ffca570291").unwrap();
        let fes: Vec<Fe32> = std::iter::once(Fe32::Q)
            .chain(program.iter().copied().bytes_to_fes())
            .collect();
        let wrong = encode_fes::<Bech32m>("rltc", &fes);
        assert_eq!(
            address_to_script(&wrong, &c),
            Err(AddressError::WrongVariant {
                version: 0,
                expected: Bech32Variant::Bech32,
                found: Bech32Variant::Bech32m
            })
        );
    }

    use bitcoin::bech32::primitives::iter::ByteIterExt;
    use bitcoin::bech32::Checksum;

    /// A bech32 string with `Ck`'s checksum over arbitrary five-bit groups, to build
    /// addresses the library's own encoder refuses to make.
    fn encode_fes<Ck: Checksum>(hrp: &str, fes: &[Fe32]) -> String {
        use bitcoin::bech32::primitives::iter::Fe32IterExt;
        let hrp = Hrp::parse(hrp).unwrap();
        fes.iter()
            .copied()
            .with_checksum::<Ck>(&hrp)
            .chars()
            .collect()
    }

    #[test]
    fn invalid_program_lengths() {
        let c = coin("litecoin-regtest");
        // 16-byte v0 program: litecoind's validateaddress answered isvalid false.
        assert_eq!(
            address_to_script("rltc1qqypqxpq9qcrsszg2pvxq6rs0zqyzn8qa", &c),
            Err(AddressError::ProgramLength {
                version: 0,
                len: 16
            })
        );
        // A 1-byte v1 program and a 41-byte v2 program.
        let one: Vec<Fe32> = std::iter::once(Fe32::P)
            .chain([7u8].into_iter().bytes_to_fes())
            .collect();
        assert_eq!(
            address_to_script(&encode_fes::<Bech32m>("rltc", &one), &c),
            Err(AddressError::ProgramLength { version: 1, len: 1 })
        );
        let long: Vec<Fe32> = std::iter::once(Fe32::Z)
            .chain([7u8; 41].into_iter().bytes_to_fes())
            .collect();
        assert_eq!(
            address_to_script(&encode_fes::<Bech32m>("rltc", &long), &c),
            Err(AddressError::ProgramLength {
                version: 2,
                len: 41
            })
        );
        // Witness version 17 does not exist.
        let v17: Vec<Fe32> = std::iter::once(Fe32::try_from(17u8).unwrap())
            .chain([7u8; 20].into_iter().bytes_to_fes())
            .collect();
        assert_eq!(
            address_to_script(&encode_fes::<Bech32m>("rltc", &v17), &c),
            Err(AddressError::WitnessVersion(17))
        );
        // No data at all.
        assert_eq!(
            address_to_script(&encode_fes::<Bech32>("rltc", &[]), &c),
            Err(AddressError::NoWitnessData)
        );
    }

    #[test]
    fn empty_and_too_long() {
        let c = coin("litecoin");
        assert_eq!(address_to_script("", &c), Err(AddressError::Empty));
        let long = "L".repeat(MAX_ADDRESS_LEN + 1);
        assert!(matches!(
            address_to_script(&long, &c),
            Err(AddressError::TooLong { .. })
        ));
        // A bech32 string past BIP 173's 90 characters.
        let fes: Vec<Fe32> = std::iter::once(Fe32::P)
            .chain([7u8; 60].into_iter().bytes_to_fes())
            .collect();
        let s = encode_fes::<Bech32m>("ltc", &fes);
        assert!(s.len() > MAX_SEGWIT_ADDRESS_LEN);
        assert_eq!(
            address_to_script(&s, &c),
            Err(AddressError::TooLong {
                len: s.len(),
                max: MAX_SEGWIT_ADDRESS_LEN
            })
        );
        assert!(matches!(
            address_to_script("not an address", &c),
            Err(AddressError::Malformed { .. })
        ));
    }

    #[test]
    fn scripts_without_an_address() {
        let c = coin("litecoin");
        // OP_RETURN, P2PK, and a v0 program of 16 bytes.
        assert_eq!(script_to_address(&[0x6a, 0x01, 0x00], &c), None);
        let p2pk =
            hex::decode("2102b6a8bfbbf20881eb0278fdb5bb93b3fc12ca1418d5a7e1b490a2e65b662d7461ac")
                .unwrap();
        assert_eq!(script_to_address(&p2pk, &c), None);
        let mut v0_16 = vec![0x00, 0x10];
        v0_16.extend([1u8; 16]);
        assert_eq!(script_to_address(&v0_16, &c), None);
        assert_eq!(script_to_address(&[], &c), None);
    }

    #[test]
    fn known_networks_match_presets() {
        for name in BUILTIN_NAMES {
            let c = coin(name);
            let known = KNOWN_NETWORKS.iter().find(|n| n.chain == c.chain).unwrap();
            assert_eq!(known.p2pkh_version, c.p2pkh_version);
            assert_eq!(known.p2sh_versions.to_vec(), c.p2sh_versions);
            assert_eq!(known.bech32_hrp, c.bech32_hrp);
        }
    }

    /// Scripts a payout address stands for: P2PKH, P2SH, v0 of 20 or 32 bytes, v1 of 32.
    fn addressable_script() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            any::<[u8; 20]>()
                .prop_map(|h| ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array(h)).into_bytes()),
            any::<[u8; 20]>()
                .prop_map(|h| ScriptBuf::new_p2sh(&ScriptHash::from_byte_array(h)).into_bytes()),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 20),
                proptest::collection::vec(any::<u8>(), 32)
            ]
            .prop_map(|p| witness_script(0, &p)),
            proptest::collection::vec(any::<u8>(), 32).prop_map(|p| witness_script(1, &p)),
        ]
    }

    fn witness_script(version: u8, program: &[u8]) -> Vec<u8> {
        let v = WitnessVersion::try_from(version).unwrap();
        ScriptBuf::new_witness_program(&WitnessProgram::new(v, program).unwrap()).into_bytes()
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,250}", net in 0usize..3) {
            let _ = address_to_script(&s, &coin(BUILTIN_NAMES[net]));
        }

        #[test]
        fn address_like_strings_never_panic(
            s in "(ltc|tltc|rltc|LTC|tmweb|bc)1[qpzry9x8gf2tvdw0s3jn54khce6mua7lQPZRY]{0,100}",
        ) {
            let _ = address_to_script(&s, &coin("litecoin"));
        }

        #[test]
        fn arbitrary_scripts_never_panic(script in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(a) = script_to_address(&script, &coin("litecoin")) {
                match ScriptKind::of(&script) {
                    Some(_) => prop_assert_eq!(address_to_script(&a, &coin("litecoin")).unwrap(), script),
                    None => {
                        let refused = matches!(
                            address_to_script(&a, &coin("litecoin")),
                            Err(AddressError::UnspendableWitness { .. })
                        );
                        prop_assert!(refused, "{} was not refused", a);
                    }
                }
            }
        }

        #[test]
        fn scripts_round_trip(script in addressable_script(), net in 0usize..3) {
            let c = coin(BUILTIN_NAMES[net]);
            let address = script_to_address(&script, &c).unwrap();
            prop_assert_eq!(&address_to_script(&address, &c).unwrap(), &script);
            prop_assert_eq!(script_to_address(&address_to_script(&address, &c).unwrap(), &c), Some(address));
        }
    }
}
