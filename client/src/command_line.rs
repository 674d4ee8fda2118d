//! What every Orderflow command-line tool shares (`orderflow`, `orderflow-load`) beside their
//! settings (`orderflow_worker::settings::CliSettings`): the one line printed for an error.

use crate::orders::OrderOpError;

/// Turns an error into the one line the CLI prints, naming the likely fix where there is one.
pub fn explain(err: &anyhow::Error) -> String {
    if let Some(op) = err.downcast_ref::<OrderOpError>() {
        return op.to_string();
    }
    // The outermost context says what we were doing, the root cause why it failed; the layers
    // in between repeat one another.
    let root = err.root_cause().to_string();
    let top = err.to_string();
    if top == root || top.contains(&root) {
        top
    } else {
        format!("{top}: {root}")
    }
}
