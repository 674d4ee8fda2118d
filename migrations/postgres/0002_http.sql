-- The HTTP shim's tables. Keep in step with ../sqlite/0002_http.sql.

-- Every provider callback, recorded before it acts. A verified event is stored once per
-- (provider, event id); repeats only bump `deliveries`. A refused request (forged signature,
-- stale timestamp, malformed body, unknown provider) has no trusted event id and gets a row of
-- its own with its verdict.
CREATE TABLE webhook_callbacks (
    id             BIGSERIAL PRIMARY KEY,
    provider       TEXT NOT NULL,
    event_id       TEXT,
    payment_no     TEXT,
    verdict        TEXT NOT NULL,
    detail         TEXT,
    headers        TEXT NOT NULL,
    body           TEXT NOT NULL,
    body_encoding  TEXT NOT NULL CHECK (body_encoding IN ('utf8', 'base64')),
    deliveries     BIGINT NOT NULL DEFAULT 1,
    received_at_ms BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);
CREATE UNIQUE INDEX webhook_callbacks_event ON webhook_callbacks (provider, event_id)
    WHERE event_id IS NOT NULL;
CREATE INDEX webhook_callbacks_payment ON webhook_callbacks (payment_no);

-- Idempotency keys of POST /v1/orders: the same key with the same body is the same order; the
-- same key with another body is refused.
CREATE TABLE api_idempotency_keys (
    idempotency_key TEXT PRIMARY KEY,
    request_sha256  TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL
);
