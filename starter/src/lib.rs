//! # orderflow-starter
//!
//! The library behind the `orderflow` binary:
//!
//! * [`orders`]: start, inspect, pay (sandbox), cancel and resolve orders — what a shop backend or
//!   an operator does. Used by the CLI, the tests and the HTTP shim.
//! * [`catalog`]: the demo catalog and stock administration.
//! * [`http`]: `orderflow serve`, the HTTP shim: orders API, provider webhooks, the sandbox's
//!   hosted checkout page.
//! * [`load`]: `orderflow load`, the load generator the benchmarks (`bench/run.sh`) drive.
//! * [`cli`]: the command-line surface (`orderflow --help`) and its output, human or `--json`.

pub mod catalog;
pub mod cli;
pub mod http;
pub mod load;
pub mod orders;
pub mod outbox;
