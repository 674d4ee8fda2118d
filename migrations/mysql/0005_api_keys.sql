-- API clients: their keys, and the orders each created. MySQL / MariaDB flavour. Keep in step
-- with ../postgres/0005_api_keys.sql and ../sqlite/0005_api_keys.sql. Types, collation and the
-- reasons for them: see 0001_orderflow.sql.
-- What differs from PostgreSQL: VARCHAR sizes (a key id is 12 hex digits, a SHA-256 64, an
-- Idempotency-Key at most 255 visible ASCII characters), and the unique key on
-- client_orders (order_id) is named client_orders_order_id: the code recognises a
-- duplicate-key error (1062) by that name.

-- One row per API key. The key itself is shown once, at creation. Only its SHA-256 is kept (a
-- key has 256 random bits, so a fast hash is enough), found by its public id, the short part
-- after `ofk_`. Scopes are space-separated. A revoked key fails on its next request.
CREATE TABLE api_keys (
    key_id        VARCHAR(32)  NOT NULL PRIMARY KEY,
    client_id     VARCHAR(64)  NOT NULL,
    scopes        VARCHAR(255) NOT NULL,
    secret_sha256 VARCHAR(64)  NOT NULL,
    created_at_ms BIGINT       NOT NULL,
    revoked_at_ms BIGINT,
    KEY api_keys_client (client_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The orders API's idempotency keys, scoped per client: the same key from two clients is two
-- orders. The row also says which client owns the order. An order without a row here (started
-- from the CLI) belongs to no client and only operator keys see it over HTTP.
CREATE TABLE client_orders (
    client_id       VARCHAR(64)  NOT NULL,
    idempotency_key VARCHAR(255) NOT NULL,
    request_sha256  VARCHAR(64)  NOT NULL,
    order_id        VARCHAR(64)  NOT NULL,
    created_at_ms   BIGINT       NOT NULL,
    PRIMARY KEY (client_id, idempotency_key),
    UNIQUE KEY client_orders_order_id (order_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Keys from before clients existed name orders that belong to nobody: only operators see them.
DROP TABLE api_idempotency_keys;
