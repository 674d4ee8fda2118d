//! # orderflow-relay
//!
//! Orderflow writes two kinds of durable notes in the transaction of the change they follow, and
//! delivers them afterwards: the start notes of orders reserved at the edge (`order_starts`,
//! delivered by starting their workflows: `orderflow_client::outbox`) and the order events
//! (`outbox`, delivered to NATS JetStream: [`events`]). Both are delivered by the one loop here,
//! [`run`]: a [`Pass`] delivers what is pending, and the loop decides when the next pass runs —
//! at once while passes find work, on a wake or after `idle` when they do not, and after a failure
//! with a growing back-off, so an outage is neither hammered nor waited out longer than needed.
//!
//! * [`events`]: the event relay (claim in the database, publish, wait for acks, mark), its
//!   metrics and the outbox's pruning.
//! * [`sink`]: [`sink::EventSink`], what a broker must do for the relay; [`jetstream`] is the one
//!   built (RabbitMQ or Kafka would be another implementation of the same trait).

pub mod events;
pub mod jetstream;
pub mod sink;

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// One delivery pass of a relay.
#[async_trait::async_trait]
pub trait Pass: Send + Sync {
    /// What the relay delivers, for its log lines: "order starts", "order events".
    fn what(&self) -> &'static str;
    /// Delivers what is pending. Returns how many notes it delivered; an error once it has tried
    /// everything it could (what was delivered stays delivered).
    async fn pass(&self) -> anyhow::Result<usize>;
}

/// When a relay's passes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// The longest a note waits for a pass when nothing wakes the relay.
    pub idle: Duration,
    /// Once woken, how long at most the relay holds its pass while wakes keep coming closer
    /// together than [`QUIET`] (see [`run`]). Zero: a pass on every wake.
    pub max_hold: Duration,
    /// The back-off after failed passes doubles from [`FIRST_BACKOFF`] up to this.
    pub max_backoff: Duration,
}

/// The first wait after a failed pass.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Wakes closer together than this keep a woken relay holding (see [`Pacing::max_hold`]).
pub const QUIET: Duration = Duration::from_millis(50);

/// The wait after `failures` failed passes in a row (1, 2, …).
pub fn backoff(failures: u32, max: Duration) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(max)
        .max(FIRST_BACKOFF.min(max))
}

/// Runs `pass` forever: again at once while passes deliver, else on a `wake` or after
/// `pacing.idle`; after a failed pass it waits [`backoff`].
///
/// Holding on wakes is for the start relay: wakes come from a burst of buyers at the edge, and
/// starting a workflow costs the Temporal server and the worker far more than deciding a buyer
/// costs the database, so the relay holds its starts while wakes keep coming, for at most
/// `max_hold`. The winners' stock is held and their notes are durable meanwhile.
pub async fn run(pass: impl Pass, wake: Arc<Notify>, pacing: Pacing) {
    let mut failures = 0u32;
    loop {
        match pass.pass().await {
            Ok(0) => failures = 0,
            Ok(_) => {
                failures = 0;
                continue;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = backoff(failures, pacing.max_backoff);
                tracing::warn!(
                    error = format!("{e:#}"),
                    failures,
                    retry_in_ms = wait.as_millis() as u64,
                    "{} relay: a pass failed; retrying",
                    pass.what()
                );
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        tokio::select! {
            _ = wake.notified() => hold_while_woken(&wake, pacing.max_hold).await,
            _ = tokio::time::sleep(pacing.idle) => {}
        }
    }
}

/// Returns once no wake has come for [`QUIET`], or `max_hold` after it was called.
async fn hold_while_woken(wake: &Notify, max_hold: Duration) {
    let give_up = Instant::now() + max_hold;
    loop {
        let until = (Instant::now() + QUIET).min(give_up);
        match tokio::time::timeout_at(until, wake.notified()).await {
            Ok(()) if Instant::now() < give_up => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let max = Duration::from_secs(30);
        assert_eq!(backoff(1, max), Duration::from_millis(200));
        assert_eq!(backoff(2, max), Duration::from_millis(400));
        assert_eq!(backoff(5, max), Duration::from_millis(3200));
        assert_eq!(backoff(9, max), max);
        assert_eq!(backoff(u32::MAX, max), max);
        assert_eq!(
            backoff(1, Duration::from_millis(50)),
            Duration::from_millis(50)
        );
    }
}
