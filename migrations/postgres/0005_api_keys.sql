-- API clients: their keys, and the orders each created. Keep in step with ../sqlite/0005_api_keys.sql.

-- One row per API key. The key itself is shown once, at creation; only its SHA-256 is kept (a
-- key has 256 random bits, so a fast hash is enough), found by its public id, the short part
-- after `ofk_`. Scopes are space-separated. A revoked key fails on its next request.
CREATE TABLE api_keys (
    key_id        TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX api_keys_client ON api_keys (client_id);

-- The orders API's idempotency keys, scoped per client: the same key from two clients is two
-- orders. The row also says which client owns the order; an order without a row here (started
-- from the CLI) belongs to no client and only operator keys see it over HTTP.
CREATE TABLE client_orders (
    client_id       TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    order_id        TEXT NOT NULL UNIQUE,
    created_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (client_id, idempotency_key)
);

-- Keys from before clients existed name orders that belong to nobody: only operators see them.
DROP TABLE api_idempotency_keys;
