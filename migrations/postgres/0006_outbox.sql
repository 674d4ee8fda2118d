-- Order events for downstream services: the transactional outbox. Keep in step with
-- ../sqlite/0006_outbox.sql and ../mysql/0006_outbox.sql.
--
-- Each row is inserted in the same transaction as the change it announces (activities/src/outbox.rs),
-- so an event exists if and only if its change committed. The relay (relay/src/events.rs) publishes
-- unpublished rows to NATS JetStream and then sets published_at_ms; published rows are pruned
-- after ORDERFLOW_EVENTS_RETENTION_HOURS.
--
-- orders.event_seq is the order's last event sequence number. Bumping it is what numbers an event,
-- and the bump takes the order row's lock, so an order's events commit in sequence order and a
-- pruned event's number is never given out again.
ALTER TABLE orders ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    -- The CloudEvents id and the broker's Nats-Msg-Id: '<order_id>.<sequence>', derived, never random.
    event_id        TEXT   NOT NULL UNIQUE,
    order_id        TEXT   NOT NULL,
    sequence        BIGINT NOT NULL CHECK (sequence > 0),
    -- 'order.paid', …: the CloudEvents type is 'io.orderflow.' || type || '.v1'.
    type            TEXT   NOT NULL,
    -- The event's data, JSON (schemas/events/<type>.json).
    data            TEXT   NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    published_at_ms BIGINT,
    UNIQUE (order_id, sequence)
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at_ms IS NULL;
CREATE INDEX outbox_published ON outbox (published_at_ms) WHERE published_at_ms IS NOT NULL;
