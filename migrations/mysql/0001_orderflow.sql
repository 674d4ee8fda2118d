-- Orderflow schema, MySQL / MariaDB flavour. Keep in step with ../postgres/0001_orderflow.sql and
-- ../sqlite/0001_orderflow.sql: the same application SQL runs on all three, so table and column
-- names and meanings must match. One text for MariaDB >= 10.5 and MySQL >= 8.0.16 (the first
-- MySQL that enforces CHECK), using only what both accept.
-- Times are Unix milliseconds (BIGINT), money is integer minor units plus an ISO currency code.
--
-- What differs from PostgreSQL, and why:
-- * Every table is InnoDB, utf8mb4, with the binary collation utf8mb4_bin, so ids, SKUs and keys
--   compare exactly and case-sensitively, as on the other engines (under a _ci collation 'ord-a'
--   and 'ORD-A' would be one order). utf8mb4_bin is PAD SPACE on both servers: trailing spaces
--   compare equal ('a' = 'a '). Harmless here: no id type admits a space (domain/src/ids.rs),
--   nor does an Idempotency-Key (http/src/orders.rs).
-- * Text is VARCHAR(n), n from the limit the code enforces (ids from domain/src/ids.rs, SKU 40,
--   provider 32, payment number 32, currency 3). Values the code takes as they come (what a
--   provider reports, reasons, details, payloads) get a wide VARCHAR or MEDIUMTEXT: the servers
--   run in strict mode (the default of both, sqlx keeps it), where a value too long for its
--   column is an error, never a silent truncation. MEDIUMTEXT columns reach sqlx's Any driver
--   as bytes (the protocol types them BLOB), not text: here orders.reason,
--   order_status_log.reason and payment_log.detail.
-- * Only BIGINT, VARCHAR and MEDIUMTEXT. No BOOLEAN/TINYINT or DECIMAL (sqlx's Any driver has
--   no mapping for them), no CHAR (it drops trailing spaces when read), no ENUM (a CHECK does
--   the same on every engine).
-- * Foreign keys are table constraints: MySQL 8 parses an inline column REFERENCES and ignores it.
-- * Autoincrement ids are BIGINT AUTO_INCREMENT, not BIGSERIAL.
-- * The unique keys have fixed names (order_status_log_order_status, payments_order_id,
--   payment_log_payment_event): the code recognises a duplicate-key error (1062) by the key it
--   names, and translates it into "already done".
-- * Every column a statement looks rows up by leads some index: InnoDB locks every row an UPDATE
--   or locking read scans, so an unindexed WHERE sku = ? would lock the whole table.
--   stock_reservations (sku) is the one index PostgreSQL does without.
-- * The ledger is append-only through two one-statement triggers that SIGNAL (no BEGIN ... END,
--   so no DELIMITER: sqlx sends this file to the server as one multi-statement text).

-- Sellable items and their prices. Orders are priced from here, never from the client.
-- name: the API allows 200 characters. `orderflow catalog add` does not check, and a name over
-- 255 is refused here where PostgreSQL would take it.
CREATE TABLE catalog (
    sku           VARCHAR(40)  NOT NULL PRIMARY KEY,
    name          VARCHAR(255) NOT NULL,
    price_minor   BIGINT       NOT NULL CHECK (price_minor >= 0),
    currency      VARCHAR(3)   NOT NULL CHECK (CHAR_LENGTH(currency) = 3),
    updated_at_ms BIGINT       NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per SKU. Stock only moves through conditional UPDATEs (see activities/src/inventory.rs),
-- the CHECKs are the last line of defence if application code ever gets it wrong.
CREATE TABLE inventory (
    sku           VARCHAR(40) NOT NULL PRIMARY KEY,
    total         BIGINT      NOT NULL CHECK (total >= 0),
    available     BIGINT      NOT NULL CHECK (available >= 0),
    reserved      BIGINT      NOT NULL CHECK (reserved >= 0),
    sold          BIGINT      NOT NULL CHECK (sold >= 0),
    updated_at_ms BIGINT      NOT NULL,
    CHECK (available + reserved + sold = total),
    CONSTRAINT inventory_sku_fkey FOREIGN KEY (sku) REFERENCES catalog (sku)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- TCC reservations: one row per (order, sku). RESERVED moves to CONFIRMED or RELEASED exactly once.
-- The sku index serves the per-SKU reads (and is the one the foreign key uses).
CREATE TABLE stock_reservations (
    order_id      VARCHAR(64) NOT NULL,
    sku           VARCHAR(40) NOT NULL,
    quantity      BIGINT      NOT NULL CHECK (quantity > 0),
    state         VARCHAR(32) NOT NULL CHECK (state IN ('RESERVED', 'CONFIRMED', 'RELEASED')),
    created_at_ms BIGINT      NOT NULL,
    updated_at_ms BIGINT      NOT NULL,
    PRIMARY KEY (order_id, sku),
    KEY stock_reservations_sku (sku),
    CONSTRAINT stock_reservations_sku_fkey FOREIGN KEY (sku) REFERENCES inventory (sku)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Append-only history of every stock movement. Summing the deltas per SKU gives the inventory row.
CREATE TABLE inventory_ledger (
    id              BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    sku             VARCHAR(40) NOT NULL,
    order_id        VARCHAR(64),
    event           VARCHAR(32) NOT NULL CHECK (event IN ('STOCK_SET', 'RESERVE', 'CONFIRM', 'RELEASE')),
    delta_total     BIGINT      NOT NULL,
    delta_available BIGINT      NOT NULL,
    delta_reserved  BIGINT      NOT NULL,
    delta_sold      BIGINT      NOT NULL,
    at_ms           BIGINT      NOT NULL,
    KEY inventory_ledger_sku (sku)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- SQLSTATE 45000 is "unhandled user-defined exception": error 1644 with this message.
CREATE TRIGGER inventory_ledger_no_update BEFORE UPDATE ON inventory_ledger
FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'inventory_ledger is append-only';
CREATE TRIGGER inventory_ledger_no_delete BEFORE DELETE ON inventory_ledger
FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'inventory_ledger is append-only';

-- reason: MEDIUMTEXT, it can hold a failure message or an operator note of any length.
CREATE TABLE orders (
    order_id      VARCHAR(64) NOT NULL PRIMARY KEY,
    customer_id   VARCHAR(64) NOT NULL,
    provider      VARCHAR(32) NOT NULL,
    status        VARCHAR(32) NOT NULL,
    amount_minor  BIGINT CHECK (amount_minor >= 0),
    currency      VARCHAR(3),
    reason        MEDIUMTEXT,
    created_at_ms BIGINT      NOT NULL,
    updated_at_ms BIGINT      NOT NULL,
    KEY orders_status (status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE order_lines (
    order_id         VARCHAR(64) NOT NULL,
    sku              VARCHAR(40) NOT NULL,
    quantity         BIGINT      NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT      NOT NULL CHECK (unit_price_minor >= 0),
    line_total_minor BIGINT      NOT NULL CHECK (line_total_minor >= 0),
    currency         VARCHAR(3)  NOT NULL,
    PRIMARY KEY (order_id, sku),
    CONSTRAINT order_lines_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (order_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Each status an order reaches, once (the state machine never revisits a status).
CREATE TABLE order_status_log (
    id       BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_id VARCHAR(64) NOT NULL,
    status   VARCHAR(32) NOT NULL,
    reason   MEDIUMTEXT,
    at_ms    BIGINT      NOT NULL,
    UNIQUE KEY order_status_log_order_status (order_id, status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Our side of each order's payment. payment_no is derived from the order id (domain::PaymentNo).
-- paid_currency and provider_txn_id are what the provider reported, unchecked, hence wide.
-- checkout_url and qr_payload are URLs and QR texts, well under 2048 characters.
CREATE TABLE payments (
    payment_no        VARCHAR(32)   NOT NULL PRIMARY KEY,
    order_id          VARCHAR(64)   NOT NULL,
    provider          VARCHAR(32)   NOT NULL,
    status            VARCHAR(32)   NOT NULL CHECK (status IN ('PENDING', 'PAID', 'MISMATCHED', 'CLOSED', 'REFUNDED')),
    amount_minor      BIGINT        NOT NULL CHECK (amount_minor >= 0),
    currency          VARCHAR(3)    NOT NULL,
    paid_amount_minor BIGINT,
    paid_currency     VARCHAR(255),
    provider_txn_id   VARCHAR(255),
    deadline_ms       BIGINT        NOT NULL,
    checkout_url      VARCHAR(2048),
    qr_payload        VARCHAR(2048),
    created_at_ms     BIGINT        NOT NULL,
    updated_at_ms     BIGINT        NOT NULL,
    UNIQUE KEY payments_order_id (order_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Each state a payment reaches, once, with the detail that got it there.
-- detail: MEDIUMTEXT, it carries a refund reason, which an operator's note can make any length.
CREATE TABLE payment_log (
    id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    payment_no VARCHAR(32) NOT NULL,
    event      VARCHAR(32) NOT NULL,
    detail     MEDIUMTEXT,
    at_ms      BIGINT      NOT NULL,
    UNIQUE KEY payment_log_payment_event (payment_no, event)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The sandbox provider's own books: a simulated gateway. It is a product feature (demo, load
-- tests, local development), not a test double, and it keeps its state like a real gateway would.
CREATE TABLE sandbox_charges (
    payment_no        VARCHAR(32)  NOT NULL PRIMARY KEY,
    amount_minor      BIGINT       NOT NULL CHECK (amount_minor >= 0),
    currency          VARCHAR(3)   NOT NULL,
    status            VARCHAR(32)  NOT NULL CHECK (status IN ('PENDING', 'PAID', 'CLOSED', 'REFUNDED')),
    paid_amount_minor BIGINT,
    txn_id            VARCHAR(255),
    refund_id         VARCHAR(255),
    created_at_ms     BIGINT       NOT NULL,
    updated_at_ms     BIGINT       NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
