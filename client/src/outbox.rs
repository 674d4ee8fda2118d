//! The relay for orders reserved at the edge: starts the workflow of every start note that is not
//! marked started (see `orderflow_activities::edge`).
//!
//! The edge itself starts a reserved order's workflow right after its commit; the relay is for
//! what that could not do (the process died between the two, Temporal was unreachable) and for
//! callers that leave the start to it on purpose (`orderflow-load --reserve-at-edge`, so a burst
//! of buyers is answered at the database's pace, not the server's). Every start is idempotent
//! (the workflow id is derived from the order id), so several relays, or a relay and the edge,
//! may start the same order: it starts once. It runs on the same loop as the order events'
//! relay (`orderflow_relay`).

use crate::orders::{OrderOpError, Orders};
use futures::StreamExt;
use orderflow_activities::edge;
use orderflow_relay::{Pacing, Pass};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Notes read per pass, and starts in flight at once.
const BATCH: i64 = 256;
const IN_FLIGHT: usize = 64;

/// Once woken, the relay holds its starts while the edge keeps deciding, but never longer than
/// this: a winner's workflow starts at most this much later. Then it drains every pending note
/// before it holds again, so a sale that never pauses still has all its winners started at the
/// rate the server takes them.
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

/// The start relay as a [`Pass`] of the shared relay loop.
struct StartRelay {
    orders: Orders,
}

#[async_trait::async_trait]
impl Pass for StartRelay {
    fn what(&self) -> &'static str {
        "order starts"
    }

    async fn pass(&self) -> anyhow::Result<usize> {
        Ok(relay_once(&self.orders).await?)
    }
}

/// Relays forever on the shared relay loop (`orderflow_relay::run`): a pass whenever `wake` is
/// notified (the edge decided a buyer in this process) or `idle` has passed, and again at once
/// while passes find work; after a failed pass it backs off, up to `idle`.
///
/// Wakes come from a burst of buyers at the edge, and the relay holds its starts while they keep
/// coming, for at most `max_hold` ([`MAX_HOLD`] by default): bench/NOTES.md has what that bought
/// (more decisions per second on a fresh server; no difference late in the full suite).
pub async fn run(orders: Orders, wake: Arc<Notify>, idle: Duration, max_hold: Duration) {
    orderflow_relay::run(
        StartRelay { orders },
        wake,
        Pacing {
            idle,
            max_hold,
            max_backoff: idle,
        },
    )
    .await
}
