//! # orderflow-starter
//!
//! The library behind the `orderflow` binary:
//!
//! * [`load`]: `orderflow load`, the load generator the benchmarks (`bench/run.sh`) drive.
//! * [`cli`]: the command-line surface (`orderflow --help`) and its output, human or `--json`.

pub mod cli;
pub mod load;
