//! # orderflow-client
//!
//! One job: operate orders from outside the workflow, as a shop backend or an operator does. It
//! decides nothing about an order; it starts workflows, sends them signals and updates, and reads
//! their state. Used by the CLI (`orderflow`), the HTTP shim (`orderflow-http`), the load
//! generator (`orderflow-load`) and the tests.
//!
//! * [`orders`]: start, inspect, pay (sandbox), cancel and resolve orders, refund late payments,
//!   export workflow histories.
//! * [`outbox`]: the relay that starts the workflows of orders reserved at the edge.
//! * [`catalog`]: the demo catalog and stock administration.
//! * [`command_line`]: what the command-line tools share: the global flags (where the stack is,
//!   how to print) and the one-line error message.

pub mod catalog;
pub mod command_line;
pub mod orders;
pub mod outbox;
pub mod refunds;
