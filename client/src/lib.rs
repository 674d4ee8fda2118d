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

pub mod catalog;
pub mod orders;
pub mod outbox;
