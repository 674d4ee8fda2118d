//! The relay for orders reserved at the edge: starts the workflow of every start note that is not
//! marked started (see `orderflow_activities::edge`).
//!
//! The edge itself starts a reserved order's workflow right after its commit; the relay is for
//! what that could not do (the process died between the two, Temporal was unreachable) and for
//! callers that leave the start to it on purpose (`orderflow-load --reserve-at-edge`, so a burst
//! of buyers is answered at the database's pace, not the server's). Every start is idempotent
//! (the workflow id is derived from the order id), so several relays, or a relay and the edge,
//! may start the same order: it starts once.

use crate::orders::{OrderOpError, Orders};
use futures::StreamExt;
use orderflow_activities::edge;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Notes read per pass, and starts in flight at once.
const BATCH: i64 = 256;
const IN_FLIGHT: usize = 64;

/// Once woken, the relay holds its starts while the edge keeps deciding (wakes closer together
/// than this)…
const QUIET: Duration = Duration::from_millis(50);
/// …but never longer than this: a winner's workflow starts at most this much later. Then it
/// drains every pending note before it holds again, so a sale that never pauses still has all
/// its winners started at the rate the server takes them.
pub const MAX_HOLD: Duration = Duration::from_secs(5);

/// One pass: starts the oldest pending notes' workflows and marks them. Returns how many were
/// started (or found started); the first error, if any, after trying every note of the batch.
pub async fn relay_once(orders: &Orders) -> Result<usize, OrderOpError> {
    let inputs = edge::pending_starts(&orders.db, BATCH).await?;
    let results: Vec<Result<(), OrderOpError>> = futures::stream::iter(inputs)
        .map(|input| async move {
            let order_id = input.order_id.clone();
            orders.ensure_started(input).await?;
            edge::mark_started(&orders.db, &order_id).await?;
            Ok(())
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let started = results.iter().filter(|r| r.is_ok()).count();
    match results.into_iter().find_map(Result::err) {
        Some(e) => Err(e),
        None => Ok(started),
    }
}

/// Relays forever: a pass whenever `wake` is notified (the edge decided a buyer in this process)
/// or `idle` has passed, and again at once while passes find work. After a failed pass it waits
/// `idle` before trying again, so an outage is not hammered.
///
/// Wakes come from a burst of buyers at the edge. Starting a workflow costs the Temporal server
/// and the worker far more than deciding a buyer costs the database, and on a shared machine
/// starts made during the burst slow the decisions after them; so the relay holds its starts
/// while wakes keep coming ([`QUIET`]), for at most `max_hold` ([`MAX_HOLD`] by default). The
/// winners' stock is held and their notes are durable meanwhile, and the server starts
/// workflows at its own pace either way. bench/NOTES.md has what it bought (more decisions per
/// second on a fresh server; no difference late in the full suite).
pub async fn run(orders: Orders, wake: Arc<Notify>, idle: Duration, max_hold: Duration) {
    loop {
        match relay_once(&orders).await {
            Ok(0) => {}
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "order start relay: a start failed; retrying later");
                tokio::time::sleep(idle).await;
                continue;
            }
        }
        tokio::select! {
            _ = wake.notified() => hold_while_deciding(&wake, max_hold).await,
            _ = tokio::time::sleep(idle) => {}
        }
    }
}

/// Returns once no wake has come for [`QUIET`], or `max_hold` after it was called.
async fn hold_while_deciding(wake: &Notify, max_hold: Duration) {
    let give_up = Instant::now() + max_hold;
    loop {
        let until = (Instant::now() + QUIET).min(give_up);
        match tokio::time::timeout_at(until, wake.notified()).await {
            Ok(()) if Instant::now() < give_up => {}
            _ => return,
        }
    }
}
