-- Order events for downstream services: the transactional outbox. MySQL / MariaDB flavour. Keep
-- in step with ../postgres/0006_outbox.sql, which explains it; types and collation: see
-- 0001_orderflow.sql.
--
-- What differs from PostgreSQL, and why:
-- * No partial indexes: outbox_pending indexes (published_at_ms, id), so the relay's
--   `WHERE published_at_ms IS NULL ORDER BY id` reads the pending rows in order from the index,
--   and the pruner's range on published_at_ms uses the same index.
-- * data is MEDIUMTEXT, which reaches sqlx's Any driver as bytes.
ALTER TABLE orders ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE outbox (
    id              BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id        VARCHAR(96) NOT NULL,
    order_id        VARCHAR(64) NOT NULL,
    sequence        BIGINT      NOT NULL CHECK (sequence > 0),
    type            VARCHAR(64) NOT NULL,
    data            MEDIUMTEXT  NOT NULL,
    created_at_ms   BIGINT      NOT NULL,
    published_at_ms BIGINT,
    UNIQUE KEY outbox_event_id (event_id),
    UNIQUE KEY outbox_order_sequence (order_id, sequence),
    KEY outbox_pending (published_at_ms, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
