//! The share-chain network (libp2p). See issue 4; filled in as that work lands.
