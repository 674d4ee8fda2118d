-- The HTTP shim's tables, MySQL / MariaDB flavour. Keep in step with ../postgres/0002_http.sql
-- and ../sqlite/0002_http.sql. Types, collation and the reasons for them: see 0001_orderflow.sql.
--
-- What differs from PostgreSQL, and why:
-- * MySQL has no partial index. The unique key on (provider, event_id) is a plain one, which
--   is the same thing here: NULLs never collide in a MySQL or MariaDB unique key, so any number
--   of refused requests (event_id NULL) fit beside each verified event. It is named
--   webhook_callbacks_event: the code recognises a duplicate-key error (1062) by that name.
-- * provider, event_id and payment_no are stored as the request carried them (a refused request
--   to an unknown provider keeps its URL segment, payment_no is what the provider echoed back,
--   up to 500 characters in Stripe metadata), so they are wider than the domain types. A longer
--   value is refused by the server (strict mode), never truncated: truncating an event id could
--   merge two events into one. provider + event_id stay within InnoDB's 3072-byte key.
-- * headers, body and detail are MEDIUMTEXT (bodies are capped at 64 KiB, a detail can quote
--   the provider's event type). They reach sqlx's Any driver as bytes.

-- Every provider callback, recorded before it acts. A verified event is stored once per
-- (provider, event id), repeats only bump `deliveries`. A refused request (forged signature,
-- stale timestamp, malformed body, unknown provider) has no trusted event id and gets a row of
-- its own with its verdict.
CREATE TABLE webhook_callbacks (
    id             BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    provider       VARCHAR(255) NOT NULL,
    event_id       VARCHAR(255),
    payment_no     VARCHAR(500),
    verdict        VARCHAR(32)  NOT NULL,
    detail         MEDIUMTEXT,
    headers        MEDIUMTEXT   NOT NULL,
    body           MEDIUMTEXT   NOT NULL,
    body_encoding  VARCHAR(8)   NOT NULL CHECK (body_encoding IN ('utf8', 'base64')),
    deliveries     BIGINT       NOT NULL DEFAULT 1,
    received_at_ms BIGINT       NOT NULL,
    updated_at_ms  BIGINT       NOT NULL,
    UNIQUE KEY webhook_callbacks_event (provider, event_id),
    KEY webhook_callbacks_payment (payment_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Idempotency keys of POST /v1/orders: the same key with the same body is the same order, the
-- same key with another body is refused. (Dropped again by 0005_api_keys.sql, as on PostgreSQL.)
CREATE TABLE api_idempotency_keys (
    idempotency_key VARCHAR(255) NOT NULL PRIMARY KEY,
    request_sha256  VARCHAR(64)  NOT NULL,
    order_id        VARCHAR(64)  NOT NULL,
    created_at_ms   BIGINT       NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
