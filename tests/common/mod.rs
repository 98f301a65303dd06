//! Helpers shared by the integration tests. Each test binary uses a different subset, so
//! unused items are expected.
#![allow(dead_code)]

pub mod chromium;
pub mod dogecoind;
pub mod litecoind;
pub mod pool;
