//! # orderflow-starter
//!
//! One job: the `orderflow` command line. Every command is a thin layer over another crate:
//! order operations, the catalog and stock over `orderflow-client`, `orderflow serve` over
//! `orderflow-http`; this crate parses the flags and prints the result, human or `--json`.
//!
//! * [`cli`]: the command-line surface (`orderflow --help`) and its output.
//! * [`events`]: `orderflow events …` and `orderflow relay`.

pub mod cli;
pub mod events;
pub mod refunds;
