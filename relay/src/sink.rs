//! What a broker must do for the event relay. JetStream is the one built ([`crate::jetstream`]);
//! RabbitMQ (publisher confirms, a `message_id` property the consumer de-duplicates on) or Kafka (an
//! idempotent producer, the order id as the key) would be another implementation.

use orderflow_domain::events::{CloudEvent, EventType};

/// An event on its way to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub event_type: EventType,
    pub event: CloudEvent,
}

#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    /// The broker's name, for logs and `orderflow events status`.
    fn name(&self) -> &'static str;

    /// Publishes `events` — at most one per order, oldest first — and answers, one result per
    /// event in the same order, whether the broker has stored it. A duplicate the broker
    /// recognised by the event id counts as stored. An event whose answer is an error is
    /// published again by a later pass, under the same id.
    async fn publish(&self, events: &[Outgoing]) -> Vec<anyhow::Result<()>>;
}
