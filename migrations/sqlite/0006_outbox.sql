-- Order events for downstream services: the transactional outbox. Keep in step with
-- ../postgres/0006_outbox.sql, which explains it.
ALTER TABLE orders ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE outbox (
    -- AUTOINCREMENT: an id is never reused after its row is pruned.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT   NOT NULL UNIQUE,
    order_id        TEXT   NOT NULL,
    sequence        BIGINT NOT NULL CHECK (sequence > 0),
    type            TEXT   NOT NULL,
    data            TEXT   NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    published_at_ms BIGINT,
    UNIQUE (order_id, sequence)
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at_ms IS NULL;
CREATE INDEX outbox_published ON outbox (published_at_ms) WHERE published_at_ms IS NOT NULL;
