-- Orders whose stock was reserved at the edge (ORDERFLOW_RESERVE_AT_EDGE), before their workflow
-- exists. MySQL / MariaDB flavour. Keep in step with ../postgres/0004_order_starts.sql and
-- ../sqlite/0004_order_starts.sql. Types, collation and the reasons for them: see 0001_orderflow.sql.
--
-- What differs from PostgreSQL, and why:
-- * MySQL has no partial index: order_starts_pending indexes (started_at_ms, created_at_ms), so
--   the relay's `WHERE started_at_ms IS NULL ORDER BY created_at_ms` reads the pending rows in
--   order from the index (IS NULL is an index lookup in InnoDB).
-- * input is MEDIUMTEXT, which reaches sqlx's Any driver as bytes.
--
-- The row is written in the same transaction as the order and its reservation, so a reservation
-- never exists without a note that its workflow must be started: the edge starts it right away,
-- and the relay (starter/src/outbox.rs) starts any the edge did not get to (a crash, a Temporal
-- outage). The workflow id is derived from the order id, so starting twice starts once.
CREATE TABLE order_starts (
    order_id      VARCHAR(64) NOT NULL PRIMARY KEY,
    -- The workflow's input (OrderInput as JSON), exactly as the customer sent it.
    input         MEDIUMTEXT  NOT NULL,
    created_at_ms BIGINT      NOT NULL,
    started_at_ms BIGINT,
    KEY order_starts_pending (started_at_ms, created_at_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
