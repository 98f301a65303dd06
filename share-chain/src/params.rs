//! Network presets: the coin's parameters, the share chain's consensus parameters, and the
//! node's default ports (its own and its daemon's), read from the TOML files in the
//! workspace's `config/` folder.
//!
//! The built-in presets are embedded in the binary; a user file may override any field of
//! one (it is merged over the preset, table by table). The **network id** is a hash of the
//! `coin` and `consensus` tables and nothing else, so two nodes that disagree on any rule
//! have different ids and never exchange shares, while a node's own settings (its ports, its
//! daemon's RPC port) never fork it off its network.

use bincode::Encode;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::encoding::encode_canonical;
use crate::hash::sha256d;
use crate::target::Target;

/// The proof-of-work function of a coin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode)]
#[serde(rename_all = "lowercase")]
pub enum PowAlgorithm {
    /// Litecoin: scrypt with N=1024, r=1, p=1 over the 80-byte header.
    Scrypt,
    /// Bitcoin: double SHA-256 of the 80-byte header.
    Sha256d,
}

impl PowAlgorithm {
    /// Stratum difficulty 1 is this many times easier than SHA-256 difficulty 1: the
    /// convention of each algorithm's mining hardware and pools (65536 for scrypt miners,
    /// 1 for SHA-256 miners). Not consensus: it only scales what the node tells its miners.
    pub fn stratum_difficulty_multiplier(self) -> u32 {
        match self {
            PowAlgorithm::Scrypt => 65536,
            PowAlgorithm::Sha256d => 1,
        }
    }
}

/// What the share chain must know about the coin. Every field is part of the network id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode)]
#[serde(deny_unknown_fields)]
pub struct CoinParams {
    /// The chain's name, e.g. `litecoin-testnet`; part of the network id.
    pub chain: String,
    pub pow: PowAlgorithm,
    /// Base58 version byte of P2PKH addresses.
    pub p2pkh_version: u8,
    /// Base58 version bytes of P2SH addresses; the first is the one used for encoding.
    pub p2sh_versions: Vec<u8>,
    /// Human-readable part of bech32 (segwit v0) and bech32m (taproot) addresses.
    pub bech32_hrp: String,
    /// Blocks before a coinbase output can be spent.
    pub coinbase_maturity: u32,
    /// Target seconds between blocks.
    pub block_interval_secs: u32,
    /// Largest valid amount in the coin's base unit (84 million LTC in litoshi).
    pub max_money: u64,
    /// The coin's easiest block target (`powLimit`), compact form, as the daemon encodes it
    /// in a min-difficulty block's `bits`.
    pub pow_limit_bits: u32,
    /// Whether a block may carry `pow_limit_bits` when its time is more than twice the block
    /// interval after its parent's (`fPowAllowMinDifficultyBlocks`: testnet and regtest).
    /// Such blocks do not set the window's work cap (docs/PROTOCOL.md §8).
    pub min_difficulty_blocks: bool,
}

/// The share chain's consensus rules. Every field is part of the network id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode)]
#[serde(deny_unknown_fields)]
pub struct ConsensusParams {
    /// Target seconds between shares.
    pub share_period_secs: u32,
    /// PPLNS window length in shares (main-chain shares; their uncles ride along).
    pub window_shares: u32,
    /// The window's work is capped at this many times the work of the block target in the
    /// share's header.
    pub window_work_blocks: u32,
    /// Easiest allowed share target (the minimum share difficulty), compact form.
    pub max_share_target_bits: u32,
    /// Shares looked back over when retargeting.
    pub retarget_window: u32,
    /// Largest change of the required share work from one share to the next, in percent.
    pub retarget_clamp_percent: u32,
    /// Timestamps are checked against the median of this many previous shares.
    pub median_time_span: u32,
    /// A share may be at most this many seconds ahead of the validating node's clock.
    pub max_future_secs: u32,
    /// Largest height difference between a share and an uncle it includes.
    pub uncle_depth: u32,
    /// Most uncles one share may include.
    pub max_uncles: u32,
    /// Percent of an uncle's weight that goes to the share including it.
    pub uncle_penalty_percent: u32,
    /// Basis points of the coinbase value paid to the share that finds the block.
    pub finder_bonus_basis_points: u32,
    /// Largest operator fee a share may carry, in basis points of its weight.
    pub max_fee_basis_points: u32,
    /// Most payout outputs in a coinbase (commitment outputs not counted).
    pub max_payout_outputs: u32,
    /// Smallest payout output, in the coin's base unit; payouts are whole multiples of a
    /// step at least this large.
    pub dust_threshold: u64,
}

/// An auxiliary chain the share chain merge-mines (docs/PROTOCOL.md §15): its identity and
/// the payout rules of its coinbases. Every field but `coinbase_maturity` is part of the
/// network id (see the `Encode` impl).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuxChainParams {
    /// The chain's name, e.g. `dogecoin-regtest`.
    pub chain: String,
    /// The chain id its AuxPoW blocks carry (Dogecoin: 98), which sets its slot in the
    /// merged-mining tree.
    pub chain_id: u32,
    /// Whether the chain refuses parents carrying its own chain id (`fStrictChainId`).
    pub strict_chain_id: bool,
    /// Base58 version byte of its P2PKH addresses.
    pub p2pkh_version: u8,
    /// Base58 version byte of its P2SH addresses.
    pub p2sh_version: u8,
    /// Largest valid amount in the chain's base unit.
    pub max_money: u64,
    /// Most payout outputs in one of its coinbases.
    pub max_payout_outputs: u32,
    /// Smallest payout output in the chain's base unit (the step's floor, as on the parent).
    pub dust_threshold: u64,
    /// Confirmations before the chain lets a coinbase be spent (Dogecoin: 240; 60 on
    /// regtest). Not consensus: only the node's found-block status reads it.
    pub coinbase_maturity: u32,
}

/// The network id's encoding of an aux chain: every consensus field, in declaration order
/// (what the derive would write), without `coinbase_maturity`, which no share-chain rule
/// reads.
impl Encode for AuxChainParams {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.chain.encode(encoder)?;
        self.chain_id.encode(encoder)?;
        self.strict_chain_id.encode(encoder)?;
        self.p2pkh_version.encode(encoder)?;
        self.p2sh_version.encode(encoder)?;
        self.max_money.encode(encoder)?;
        self.max_payout_outputs.encode(encoder)?;
        self.dust_threshold.encode(encoder)
    }
}

/// The rules that turn window weights into coinbase amounts (docs/PROTOCOL.md §9), for the
/// parent chain or an aux chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayoutRules {
    pub finder_bonus_basis_points: u32,
    pub max_payout_outputs: u32,
    pub dust_threshold: u64,
}

impl ConsensusParams {
    /// The parent chain's payout rules.
    pub fn payout_rules(&self) -> PayoutRules {
        PayoutRules {
            finder_bonus_basis_points: self.finder_bonus_basis_points,
            max_payout_outputs: self.max_payout_outputs,
            dust_threshold: self.dust_threshold,
        }
    }
}

impl AuxChainParams {
    /// An aux chain's payout rules: its own output cap and dust floor, the share chain's
    /// finder bonus.
    pub fn payout_rules(&self, consensus: &ConsensusParams) -> PayoutRules {
        PayoutRules {
            finder_bonus_basis_points: consensus.finder_bonus_basis_points,
            max_payout_outputs: self.max_payout_outputs,
            dust_threshold: self.dust_threshold,
        }
    }
}

/// Default ports: the node's listening ports and its coin daemon's JSON-RPC port. Not
/// consensus: each node may set its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultPorts {
    pub stratum: u16,
    pub p2p: u16,
    pub rpc: u16,
    /// The coin daemon's JSON-RPC port.
    pub daemon_rpc: u16,
}

/// A complete network preset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub coin: CoinParams,
    pub consensus: ConsensusParams,
    pub ports: DefaultPorts,
    /// The aux chains shares may merge-mine, ascending by chain id (`[[aux_chains]]`).
    #[serde(default)]
    pub aux_chains: Vec<AuxChainParams>,
    /// Share-chain peers to bootstrap from (libp2p multiaddrs).
    #[serde(default)]
    pub bootstrap_peers: Vec<String>,
}

/// Why a preset could not be loaded.
#[derive(Debug, Error)]
pub enum PresetError {
    #[error("unknown network {0:?} (known: {known})", known = BUILTIN_NAMES.join(", "))]
    UnknownNetwork(String),
    #[error("invalid preset TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid preset: {0}")]
    Invalid(String),
}

const BUILTIN: &[(&str, &str)] = &[
    ("litecoin", include_str!("../../config/litecoin.toml")),
    (
        "litecoin-testnet",
        include_str!("../../config/litecoin-testnet.toml"),
    ),
    (
        "litecoin-regtest",
        include_str!("../../config/litecoin-regtest.toml"),
    ),
];

/// Names of the built-in presets.
pub const BUILTIN_NAMES: &[&str] = &["litecoin", "litecoin-testnet", "litecoin-regtest"];

/// A 32-byte network identifier; see the module documentation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NetworkId(pub [u8; 32]);

impl std::fmt::Display for NetworkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Preset {
    /// A built-in preset by name.
    pub fn builtin(name: &str) -> Result<Preset, PresetError> {
        Self::load(name, None)
    }

    /// A built-in preset with an optional user TOML merged over it.
    pub fn load(name: &str, user_override: Option<&str>) -> Result<Preset, PresetError> {
        let text = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| PresetError::UnknownNetwork(name.to_string()))?;
        let mut value: toml::Value = toml::from_str(text)?;
        if let Some(user) = user_override {
            let user: toml::Value = toml::from_str(user)?;
            merge(&mut value, user);
        }
        let preset: Preset = value.try_into()?;
        preset.check()?;
        Ok(preset)
    }

    /// Refuses parameter values the consensus code cannot work with.
    pub fn check(&self) -> Result<(), PresetError> {
        let c = &self.consensus;
        let bad = |why: &str| Err(PresetError::Invalid(why.to_string()));
        if Target::from_compact(c.max_share_target_bits).is_err() {
            return bad("max_share_target_bits is not a valid compact target");
        }
        if Target::from_compact(self.coin.pow_limit_bits).is_err() {
            return bad("pow_limit_bits is not a valid compact target");
        }
        if c.share_period_secs == 0 || c.window_shares == 0 || c.window_work_blocks == 0 {
            return bad("share_period_secs, window_shares and window_work_blocks must be positive");
        }
        if c.retarget_window < 2 || c.median_time_span == 0 {
            return bad("retarget_window must be at least 2 and median_time_span positive");
        }
        if c.retarget_clamp_percent == 0 || c.retarget_clamp_percent >= 100 {
            return bad("retarget_clamp_percent must be in 1..=99");
        }
        if c.uncle_penalty_percent > 100 {
            return bad("uncle_penalty_percent must be at most 100");
        }
        if c.finder_bonus_basis_points > 10_000 || c.max_fee_basis_points > 10_000 {
            return bad("basis points must be at most 10000");
        }
        if c.max_payout_outputs < 2 {
            return bad("max_payout_outputs must be at least 2");
        }
        if c.dust_threshold == 0 {
            return bad("dust_threshold must be positive");
        }
        if self.aux_chains.len() > crate::share::MAX_AUX_BLOCKS {
            return bad("too many aux chains");
        }
        if self
            .aux_chains
            .windows(2)
            .any(|w| w[0].chain_id >= w[1].chain_id)
        {
            return bad("aux_chains must be listed by strictly ascending chain_id");
        }
        let leaves: Vec<(u32, [u8; 32])> = self
            .aux_chains
            .iter()
            .map(|a| (a.chain_id, [0; 32]))
            .collect();
        if crate::merged_mining::AuxTree::smallest(&leaves).is_err() {
            return bad("aux chain ids must differ modulo 256 (their merged-mining slots collide)");
        }
        for aux in &self.aux_chains {
            if aux.max_payout_outputs < 2 || aux.dust_threshold == 0 {
                return bad(
                    "an aux chain needs max_payout_outputs >= 2 and a positive dust_threshold",
                );
            }
        }
        if self.coin.p2sh_versions.is_empty() {
            return bad("p2sh_versions must not be empty");
        }
        Ok(())
    }

    /// The network id: `sha256d("p2pool-rs network id v3" || canonical(coin) ||
    /// canonical(consensus) || canonical(aux_chains))`.
    pub fn network_id(&self) -> NetworkId {
        let mut data = b"p2pool-rs network id v3".to_vec();
        data.extend(encode_canonical(&self.coin));
        data.extend(encode_canonical(&self.consensus));
        data.extend(encode_canonical(&self.aux_chains));
        NetworkId(sha256d(&data))
    }

    /// The aux chain with `chain_id`, if shares may merge-mine it.
    pub fn aux_chain(&self, chain_id: u32) -> Option<&AuxChainParams> {
        self.aux_chains.iter().find(|a| a.chain_id == chain_id)
    }

    /// The easiest share target allowed.
    pub fn max_share_target(&self) -> Target {
        // Checked in `check`; the fallback is unreachable for a loaded preset.
        Target::from_compact(self.consensus.max_share_target_bits).unwrap_or(Target::MAX)
    }
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_preset_loads_and_checks() {
        for name in BUILTIN_NAMES {
            let p = Preset::builtin(name).unwrap();
            assert_eq!(&p.coin.chain, name);
        }
        assert_eq!(BUILTIN.len(), BUILTIN_NAMES.len());
    }

    #[test]
    fn network_ids_differ_between_presets_and_with_any_rule() {
        let ids: Vec<_> = BUILTIN_NAMES
            .iter()
            .map(|n| Preset::builtin(n).unwrap().network_id())
            .collect();
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        assert_ne!(ids[0], ids[2]);

        let tweaked = Preset::load(
            "litecoin",
            Some("[consensus]\nuncle_penalty_percent = 21\n"),
        )
        .unwrap();
        assert_eq!(tweaked.consensus.uncle_penalty_percent, 21);
        assert_ne!(tweaked.network_id(), ids[0]);
        // Ports are not consensus: changing them keeps the id.
        let ports = Preset::load("litecoin", Some("[ports]\nstratum = 1234\n")).unwrap();
        assert_eq!(ports.ports.stratum, 1234);
        assert_eq!(ports.network_id(), ids[0]);
    }

    /// Each scalar or list of `table` in `name`'s preset, with a changed value that still
    /// passes `Preset::check`, as a one-key override.
    fn tweaks(name: &str, table: &str) -> Vec<(String, String)> {
        let text = BUILTIN.iter().find(|(n, _)| *n == name).unwrap().1;
        let value: toml::Value = toml::from_str(text).unwrap();
        let fields = value[table].as_table().unwrap();
        assert!(!fields.is_empty());
        fields
            .iter()
            .map(|(key, v)| {
                let changed = match v {
                    // One less keeps a compact target valid (one more may set its sign bit).
                    toml::Value::Integer(i) if key.ends_with("_bits") => {
                        toml::Value::Integer(i - 1)
                    }
                    toml::Value::Integer(i) => toml::Value::Integer(i + 1),
                    toml::Value::Boolean(b) => toml::Value::Boolean(!b),
                    toml::Value::String(s) if key == "pow" => {
                        toml::Value::String(if s == "scrypt" { "sha256d" } else { "scrypt" }.into())
                    }
                    toml::Value::String(s) => toml::Value::String(format!("{s}x")),
                    toml::Value::Array(a) => {
                        let mut a = a.clone();
                        a.reverse();
                        toml::Value::Array(a)
                    }
                    other => panic!("{table}.{key}: no tweak for {other:?}"),
                };
                (key.clone(), format!("[{table}]\n{key} = {changed}\n"))
            })
            .collect()
    }

    #[test]
    fn network_id_covers_every_consensus_setting_and_nothing_else() {
        for name in BUILTIN_NAMES {
            let id = Preset::builtin(name).unwrap().network_id();
            for table in ["coin", "consensus"] {
                for (key, tweak) in tweaks(name, table) {
                    let p = Preset::load(name, Some(&tweak))
                        .unwrap_or_else(|e| panic!("{name} {tweak}: {e}"));
                    assert_ne!(
                        p.network_id(),
                        id,
                        "{name}: {table}.{key} must change the id"
                    );
                }
            }
            for table in ["ports"] {
                for (key, tweak) in tweaks(name, table) {
                    let p = Preset::load(name, Some(&tweak)).unwrap();
                    assert_ne!(p, Preset::builtin(name).unwrap(), "{tweak} applied");
                    assert_eq!(p.network_id(), id, "{name}: {table}.{key} is not consensus");
                }
            }
            let peers =
                Preset::load(name, Some("bootstrap_peers = [\"/ip4/1.2.3.4/tcp/1\"]\n")).unwrap();
            assert_eq!(peers.network_id(), id);
            // Each aux chain field but the maturity is consensus.
            let base = Preset::builtin(name).unwrap();
            let aux = &base.aux_chains[0];
            let tweaked = |f: &dyn Fn(&mut AuxChainParams)| {
                let mut p = base.clone();
                f(&mut p.aux_chains[0]);
                p.network_id()
            };
            assert_eq!(
                tweaked(&|a| a.coinbase_maturity += 1),
                id,
                "{name}: the aux maturity is not consensus"
            );
            let consensus_tweaks: [&dyn Fn(&mut AuxChainParams); 8] = [
                &|a| a.chain.push('x'),
                &|a| a.chain_id += 1,
                &|a| a.strict_chain_id = !a.strict_chain_id,
                &|a| a.p2pkh_version ^= 1,
                &|a| a.p2sh_version ^= 1,
                &|a| a.max_money -= 1,
                &|a| a.max_payout_outputs += 1,
                &|a| a.dust_threshold += 1,
            ];
            for (i, tweak) in consensus_tweaks.iter().enumerate() {
                assert_ne!(tweaked(tweak), id, "{name}: aux field {i} of {aux:?}");
            }
        }
    }

    #[test]
    fn the_time_bound_is_the_coins_two_hours() {
        for name in BUILTIN_NAMES {
            assert_eq!(
                Preset::builtin(name).unwrap().consensus.max_future_secs,
                7200
            );
        }
    }

    #[test]
    fn overrides_are_checked() {
        assert!(matches!(
            Preset::load("litecoin", Some("[consensus]\nmax_payout_outputs = 1\n")),
            Err(PresetError::Invalid(_))
        ));
        assert!(matches!(
            Preset::load("litecoin", Some("[consensus]\nno_such_rule = 1\n")),
            Err(PresetError::Toml(_))
        ));
        assert!(matches!(
            Preset::builtin("dogecoin"),
            Err(PresetError::UnknownNetwork(_))
        ));
    }
}
