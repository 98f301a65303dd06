//! Block assembly for `submitblock`: the 80-byte header, our coinbase and the template's
//! transactions, plus the MWEB extension block after activation.
//!
//! Litecoin serializes a block as (Litecoin Core 0.21, `src/primitives/block.h`,
//! `CBlock::SerializationOp`):
//!
//! ```text
//! header (80 bytes) || compact_size(tx count) || each transaction (witness serialization)
//!   || [if the last transaction is the HogEx] MWEB::Block
//! ```
//!
//! and `MWEB::Block` (`src/mweb/mweb_models.h`) is `WrapOptionalPtr(mw::Block)`: one byte
//! `0x01` when the extension block is present, then the `mw::Block` bytes. The template's
//! `mweb` field is the bare `mw::Block` serialization, so a block with MWEB ends in
//! `0x01 || mweb`. Without the `0x01` litecoind reads an absent extension block and rejects
//! the block (`mweb-missing`). Litecoin's own functional test `mweb_mining.py` builds its
//! blocks the same way (`CBlock.mweb_block` = the template's `mweb`).
//!
//! Transactions are copied byte for byte from the template, in its order; nothing here
//! decodes them.

use bitcoin::consensus::encode::VarInt;
use bitcoin::consensus::Encodable;

use super::template::BlockTemplate;

/// The `WrapOptionalPtr` marker of a present MWEB extension block.
pub const MWEB_PRESENT: u8 = 0x01;

/// The serialized block: `header || varint(1 + n) || coinbase || template txs || [0x01 || mweb]`.
///
/// `coinbase_with_witness` is the full (BIP144 witness) serialization of the coinbase.
pub fn assemble_block(
    header: &[u8; 80],
    coinbase_with_witness: &[u8],
    template: &BlockTemplate,
) -> Vec<u8> {
    let tx_bytes: usize = template.transactions.iter().map(|tx| tx.data.len()).sum();
    let mweb_bytes = template.mweb.as_ref().map_or(0, |m| 1 + m.len());
    let mut block =
        Vec::with_capacity(80 + 9 + coinbase_with_witness.len() + tx_bytes + mweb_bytes);
    block.extend_from_slice(header);
    let count = VarInt(1 + template.transactions.len() as u64);
    // Writing into a Vec cannot fail.
    let _ = count.consensus_encode(&mut block);
    block.extend_from_slice(coinbase_with_witness);
    for tx in &template.transactions {
        block.extend_from_slice(&tx.data);
    }
    if let Some(mweb) = &template.mweb {
        block.push(MWEB_PRESENT);
        block.extend_from_slice(mweb);
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::template::TemplateTransaction;
    use share_chain::Target;

    fn template(txs: Vec<Vec<u8>>, mweb: Option<Vec<u8>>) -> BlockTemplate {
        BlockTemplate {
            version: 0x2000_0000,
            previous_block_hash: [7; 32],
            transactions: txs
                .into_iter()
                .map(|data| TemplateTransaction {
                    data,
                    txid: [0; 32],
                    wtxid: [0; 32],
                    fee: 0,
                    weight: 0,
                    sigops: None,
                    depends: vec![],
                })
                .collect(),
            coinbase_value: 0,
            target: Target::MAX,
            bits: 0x207f_ffff,
            cur_time: 0,
            min_time: 0,
            height: 1,
            default_witness_commitment: None,
            mweb,
            longpoll_id: None,
            rules: vec![],
            weight_limit: None,
            sigop_limit: None,
        }
    }

    #[test]
    fn layout_without_mweb() {
        let header = [0xaa; 80];
        let block = assemble_block(
            &header,
            b"CB",
            &template(vec![b"t1".to_vec(), b"tx2".to_vec()], None),
        );
        let mut expected = header.to_vec();
        expected.push(3);
        expected.extend_from_slice(b"CBt1tx2");
        assert_eq!(block, expected);
    }

    #[test]
    fn layout_with_mweb_ends_in_marker_and_mweb() {
        let header = [0x55; 80];
        let block = assemble_block(
            &header,
            b"CB",
            &template(vec![b"hogex".to_vec()], Some(b"MW".to_vec())),
        );
        let mut expected = header.to_vec();
        expected.push(2);
        expected.extend_from_slice(b"CBhogex");
        expected.push(MWEB_PRESENT);
        expected.extend_from_slice(b"MW");
        assert_eq!(block, expected);
    }

    #[test]
    fn transaction_count_uses_compact_size() {
        // 252 template txs + coinbase = 253 = 0xfd, which needs the 3-byte form.
        let t = template(vec![vec![0x42]; 252], None);
        let block = assemble_block(&[0; 80], b"C", &t);
        assert_eq!(&block[80..83], &[0xfd, 0xfd, 0x00]);
        assert_eq!(block.len(), 80 + 3 + 1 + 252);
    }
}
