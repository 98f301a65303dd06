//! TEMPORARY stand-in until the coinbase module lands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payout {
    pub script: Vec<u8>,
    pub amount: u64,
}
