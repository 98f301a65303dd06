//! The merkle tree of a block's transactions, seen from the coinbase.
//!
//! A share commits to its coinbase and proves the coinbase sits in the block header it was
//! mined on with the coinbase's merkle branch: the sibling hashes from the coinbase (always
//! the first transaction, index 0) up to the root. Stratum sends miners the same branch, so
//! they can fold their own coinbase up to the root. Hashes are in internal byte order (as
//! `sha256d` produces them, the reverse of how explorers print txids), and an odd level
//! pairs its last hash with itself, as Bitcoin and Litecoin do.

use crate::hash::sha256d;

/// `sha256d(left || right)`: one inner node of the tree.
fn hash_pair(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(left);
    buf[32..].copy_from_slice(right);
    sha256d(&buf)
}

/// The next level up of a list of hashes, the last one paired with itself if the count is odd.
fn next_level(level: &[[u8; 32]]) -> Vec<[u8; 32]> {
    level
        .chunks(2)
        .filter_map(|pair| {
            let left = pair.first()?;
            Some(hash_pair(left, pair.get(1).unwrap_or(left)))
        })
        .collect()
}

/// Folds a leaf up a branch where the leaf is always the left-most (index 0) node:
/// h = sha256d(h || sibling) for each sibling. Hashes in internal byte order.
pub fn merkle_root_from_branch(leaf: [u8; 32], branch: &[[u8; 32]]) -> [u8; 32] {
    branch
        .iter()
        .fold(leaf, |acc, sibling| hash_pair(&acc, sibling))
}

/// The branch for index 0 given the txids of all OTHER transactions in block order (the
/// stratum merkle branch), Bitcoin's rule of duplicating the last hash of an odd level.
///
/// The coinbase's own hash is not needed: at every level the left-most node is the one
/// being proven, its sibling is the next node, and the rest of the level (all to its right)
/// is hashed up without it.
pub fn coinbase_merkle_branch(other_txids: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut branch = Vec::new();
    // The current level without its left-most node.
    let mut rest = other_txids.to_vec();
    while let Some((sibling, right)) = rest.split_first() {
        branch.push(*sibling);
        // The left-most node pairs with `sibling`; the others pair among themselves.
        rest = next_level(right);
    }
    branch
}

/// Plain merkle root of a list of txids (for tests and block assembly). An empty list has
/// the all-zero root, as in Bitcoin Core.
pub fn merkle_root(txids: &[[u8; 32]]) -> [u8; 32] {
    let mut level = txids.to_vec();
    loop {
        match level.as_slice() {
            [] => return [0; 32],
            [root] => return *root,
            _ => level = next_level(&level),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{merkle_tree, Txid};
    use proptest::prelude::*;

    /// Txids as explorers and RPC print them (byte-reversed) to internal order.
    fn internal(display: &str) -> [u8; 32] {
        let mut bytes: [u8; 32] = hex::decode(display).unwrap().try_into().unwrap();
        bytes.reverse();
        bytes
    }

    /// Regtest blocks mined on Litecoin Core 0.21.2.1 (`litecoind -regtest`, throw-away
    /// datadir): 110 blocks to a wallet address, then `sendtoaddress` five (then six) times
    /// and `generatetoaddress 1`; `getblock <hash> 1` gave the `tx` list and `merkleroot`.
    /// Block 111 has 6 transactions, block 112 has 7 (odd levels at every height).
    const BLOCKS: &[(&str, &[&str])] = &[
        (
            "2a4fc9e951a997a268f93363334640ab166635c6455575dcad1a0f433a8a0b0c",
            &[
                "cb8107a8be015c9f7efb55b74f179f81ec51d7409b328cc05ef429661e43d466",
                "c303a3b0fd4bce1ebca5cb28271e8af43dcff0523a05e47656a684a4e8a6cf4c",
                "d1fc68bd8b4a962e6f9a52e03f371f88b7c0ef0fdcc2a2a8de46a7aa8d5c6bd7",
                "290b5f815cbe4379a31ab445579aa1233643e31cea399e94e5fa111ec24965df",
                "7fea310b27bfef86985b7bad228c03c1f90338a7d81a51acf436fd48526dade3",
                "16913579b80e8b433c38ee6187f3715f60b2d0c15f0d7a541732397575e87bf7",
            ],
        ),
        (
            "9d448e47e2e5246b21b8910d4c69b6f964400cd2e282a3ab71fde2fc1c414233",
            &[
                "16b8be587edacc0801a0a39c76d74629cee75b120bc4946f3efdd8036764bc13",
                "db834ffa8d628037224cf1abb42d98b2d050ef54fd298395140d68cfa8504900",
                "08dd3b01f920ce376d128677a51354ce7ee79bc041e256b36e795c725d2e0435",
                "1ab68a0509dbcf230a9f20de899e2dd4b9b87063435bcadbaed29421c25b4558",
                "772477b1afa3a73742a0b914c25373a0b693febdb8f453baed181058fdb432ab",
                "b7fe1be3f184e671e3e916f38fc2a774791c27685efdf954973067af217636b9",
                "cee7f579635dd599710d754874b6b1f693f568d2fa993037a86fe5cadf21c0f2",
            ],
        ),
    ];

    #[test]
    fn litecoind_blocks() {
        for (root, txids) in BLOCKS {
            let txids: Vec<[u8; 32]> = txids.iter().map(|t| internal(t)).collect();
            let root = internal(root);
            assert_eq!(merkle_root(&txids), root);
            let branch = coinbase_merkle_branch(&txids[1..]);
            // ceil(log2(n)) levels: 6 and 7 transactions both have 3.
            assert_eq!(branch.len(), 3);
            assert_eq!(branch[0], txids[1]);
            assert_eq!(merkle_root_from_branch(txids[0], &branch), root);
            // Any other coinbase gives another root.
            assert_ne!(merkle_root_from_branch([0; 32], &branch), root);
        }
    }

    #[test]
    fn small_cases() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let c = [3u8; 32];
        assert_eq!(merkle_root(&[]), [0; 32]);
        assert_eq!(merkle_root(&[a]), a);
        assert!(coinbase_merkle_branch(&[]).is_empty());
        assert_eq!(merkle_root_from_branch(a, &[]), a);
        assert_eq!(coinbase_merkle_branch(&[b]), vec![b]);
        assert_eq!(merkle_root(&[a, b]), hash_pair(&a, &b));
        // Three leaves: c is paired with itself.
        let bc = hash_pair(&c, &c);
        assert_eq!(coinbase_merkle_branch(&[b, c]), vec![b, bc]);
        assert_eq!(merkle_root(&[a, b, c]), hash_pair(&hash_pair(&a, &b), &bc));
    }

    fn rust_bitcoin_root(txids: &[[u8; 32]]) -> [u8; 32] {
        merkle_tree::calculate_root(txids.iter().map(|t| Txid::from_byte_array(*t)))
            .map(|r| r.to_byte_array())
            .unwrap_or([0; 32])
    }

    proptest! {
        #[test]
        fn agrees_with_rust_bitcoin(txids in proptest::collection::vec(any::<[u8; 32]>(), 1..70)) {
            let root = merkle_root(&txids);
            prop_assert_eq!(root, rust_bitcoin_root(&txids));
            let branch = coinbase_merkle_branch(&txids[1..]);
            prop_assert_eq!(merkle_root_from_branch(txids[0], &branch), root);
            // The branch is as long as the tree is high.
            let height = usize::BITS - (txids.len() - 1).leading_zeros();
            prop_assert_eq!(branch.len(), height as usize);
        }
    }
}
