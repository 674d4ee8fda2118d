-- Orders whose stock was reserved at the edge (ORDERFLOW_RESERVE_AT_EDGE), before their workflow
-- exists. Keep in step with ../sqlite/0004_order_starts.sql.
--
-- The row is written in the same transaction as the order and its reservation, so a reservation
-- never exists without a note that its workflow must be started: the edge starts it right away,
-- and the relay (starter/src/outbox.rs) starts any the edge did not get to (a crash, a Temporal
-- outage). The workflow id is derived from the order id, so starting twice starts once.
CREATE TABLE order_starts (
    order_id      TEXT PRIMARY KEY,
    -- The workflow's input (OrderInput as JSON), exactly as the customer sent it.
    input         TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    started_at_ms BIGINT
);
CREATE INDEX order_starts_pending ON order_starts (created_at_ms) WHERE started_at_ms IS NULL;
