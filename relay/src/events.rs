//! The order events' relay: claims unpublished events from the outbox
//! (`orderflow_activities::outbox`), publishes them through an [`EventSink`], and marks published
//! those the broker acknowledged. Also the outbox's pruning and the relay's metrics.
//!
//! On PostgreSQL and MySQL the claim, the publish and the mark are one transaction: the claimed
//! rows stay locked (`FOR UPDATE SKIP LOCKED`) while they are published, so relays running at
//! once publish different events. On SQLite nothing is held while publishing (that would hold the
//! file's one write lock): run one relay per SQLite file. Either way an event published by a
//! relay that died before marking it is published again under the same id and dropped by the
//! broker's duplicate window, and an order's next event is claimed only once the one before it
//! is marked, so the stream holds each event once and an order's events in sequence.

use crate::Pass;
use crate::sink::{EventSink, Outgoing};
use orderflow_activities::db::{Db, Engine, now_ms};
use orderflow_activities::metrics::params;
use orderflow_activities::outbox::{self, StoredEvent};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use temporalio_common::telemetry::metrics::{CoreMeter, Counter, Gauge, GaugeF64, NewAttributes};

/// Events claimed per pass.
pub const DEFAULT_BATCH: i64 = 256;

pub struct EventRelay {
    db: Db,
    sink: Arc<dyn EventSink>,
    batch: i64,
    metrics: Option<RelayMetrics>,
}

impl EventRelay {
    pub fn new(db: Db, sink: Arc<dyn EventSink>) -> EventRelay {
        EventRelay {
            db,
            sink,
            batch: DEFAULT_BATCH,
            metrics: None,
        }
    }

    pub fn with_batch(mut self, batch: i64) -> EventRelay {
        self.batch = batch.max(1);
        self
    }

    /// Records the relay's metrics on `meter` (the worker's Prometheus endpoint).
    pub fn with_metrics(mut self, meter: Arc<dyn CoreMeter>) -> EventRelay {
        self.metrics = Some(RelayMetrics::new(meter));
        self
    }

    /// Publishes `claimed` and returns the ids the broker acknowledged, and the first failure.
    async fn publish(&self, claimed: &[StoredEvent]) -> (Vec<i64>, Option<anyhow::Error>) {
        let outgoing: Vec<Outgoing> = claimed
            .iter()
            .map(|e| Outgoing {
                event_type: e.event_type,
                event: e.cloud_event(),
            })
            .collect();
        let results = self.sink.publish(&outgoing).await;
        let mut acked = Vec::with_capacity(claimed.len());
        let mut first_error = None;
        for (event, result) in claimed.iter().zip(results) {
            match result {
                Ok(()) => acked.push(event.id),
                Err(e) => {
                    first_error.get_or_insert(e.context(format!(
                        "publishing event {} to {}",
                        event.event_id,
                        self.sink.name()
                    )));
                }
            }
        }
        (acked, first_error)
    }

    async fn claim_publish_mark(&self) -> anyhow::Result<(usize, Option<anyhow::Error>)> {
        if self.db.engine() == Engine::Sqlite {
            let claimed = {
                let mut conn = self.db.pool().acquire().await?;
                outbox::claim(&mut conn, self.batch).await?
            };
            if claimed.is_empty() {
                return Ok((0, None));
            }
            let (acked, error) = self.publish(&claimed).await;
            let mut tx = self.db.begin_write().await?;
            outbox::mark_published(&mut tx, &acked).await?;
            tx.commit().await?;
            return Ok((acked.len(), error));
        }
        let mut tx = self.db.pool().begin().await?;
        let claimed = outbox::claim(&mut tx, self.batch).await?;
        if claimed.is_empty() {
            tx.rollback().await?;
            return Ok((0, None));
        }
        let (acked, error) = self.publish(&claimed).await;
        outbox::mark_published(&mut tx, &acked).await?;
        tx.commit().await?;
        Ok((acked.len(), error))
    }
}

#[async_trait::async_trait]
impl Pass for EventRelay {
    fn what(&self) -> &'static str {
        "order events"
    }

    async fn pass(&self) -> anyhow::Result<usize> {
        let outcome = self.claim_publish_mark().await;
        if let Some(metrics) = &self.metrics {
            metrics.after_pass(&self.db, &outcome).await;
        }
        match outcome? {
            (_, Some(error)) => Err(error),
            (published, None) => Ok(published),
        }
    }
}

/// The relay's Prometheus metrics. The lag is read from the outbox at most once a second.
struct RelayMetrics {
    meter: Arc<dyn CoreMeter>,
    published: Counter,
    failures: Counter,
    pending: Gauge,
    oldest_age: GaugeF64,
    lag_read_at_ms: Mutex<i64>,
}

impl RelayMetrics {
    fn new(meter: Arc<dyn CoreMeter>) -> RelayMetrics {
        RelayMetrics {
            published: meter.counter(params(
                "orderflow_events_published_total",
                "Order events the broker acknowledged",
                "",
            )),
            failures: meter.counter(params(
                "orderflow_events_relay_failures_total",
                "Relay passes that failed (broker or database unreachable)",
                "",
            )),
            pending: meter.gauge(params(
                "orderflow_events_pending",
                "Order events in the outbox not yet published",
                "",
            )),
            oldest_age: meter.gauge_f64(params(
                "orderflow_events_oldest_pending_age_seconds",
                "Age of the oldest unpublished order event (0 when none waits)",
                "s",
            )),
            lag_read_at_ms: Mutex::new(0),
            meter,
        }
    }

    async fn after_pass(&self, db: &Db, outcome: &anyhow::Result<(usize, Option<anyhow::Error>)>) {
        let attrs = self.meter.new_attributes(NewAttributes::from(Vec::new()));
        match outcome {
            Ok((published, error)) => {
                self.published.add(*published as u64, &attrs);
                if error.is_some() {
                    self.failures.add(1, &attrs);
                }
            }
            Err(_) => self.failures.add(1, &attrs),
        }
        let now = now_ms();
        {
            let mut last = self.lag_read_at_ms.lock().expect("not poisoned");
            if now - *last < 1000 {
                return;
            }
            *last = now;
        }
        if let Ok(lag) = outbox::lag(db).await {
            self.pending.record(lag.pending.max(0) as u64, &attrs);
            self.oldest_age
                .record(lag.oldest_age(now).as_secs_f64(), &attrs);
        }
    }
}

/// Deletes published events older than `retention`, every `every`, in batches, forever.
pub async fn prune_forever(db: Db, retention: Duration, every: Duration) {
    const BATCH: i64 = 1000;
    loop {
        let before = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        loop {
            match outbox::prune(&db, before, BATCH).await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(deleted = n, "pruned published order events");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning published order events failed; retrying later");
                    break;
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The default pacing of the event relay: a pass every 100 ms when idle, back-off up to 30 s.
pub fn pacing() -> crate::Pacing {
    crate::Pacing {
        idle: Duration::from_millis(100),
        max_hold: Duration::ZERO,
        max_backoff: MAX_BACKOFF,
    }
}

/// The event relay's longest wait between two tries of a publish (see
/// `jetstream::StreamSettings::check`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
