//! # orderflow-starter
//!
//! The library behind the `orderflow` binary:
//!
//! * [`http`]: `orderflow serve`, the HTTP shim: orders API, provider webhooks, the sandbox's
//!   hosted checkout page.
//! * [`load`]: `orderflow load`, the load generator the benchmarks (`bench/run.sh`) drive.
//! * [`cli`]: the command-line surface (`orderflow --help`) and its output, human or `--json`.

pub mod cli;
pub mod http;
pub mod load;
