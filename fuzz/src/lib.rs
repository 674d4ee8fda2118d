//! The property checks behind every fuzz target, one module per surface. Each `check_*` takes
//! arbitrary bytes and panics only when a property fails. The test suites include these files
//! with `#[path]` and feed them proptest inputs and hand-written cases, so the fuzzers and
//! `cargo test` check the same properties.

pub mod alipay;
pub mod domain;
pub mod orders_api;
pub mod webhooks;
pub mod wechatpay;
