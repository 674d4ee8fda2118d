-- Orderflow schema, SQLite flavour. Keep in step with ../postgres/0001_orderflow.sql: the same
-- application SQL runs on both, so table and column names and meanings must match.
-- Times are Unix milliseconds (BIGINT); money is integer minor units plus an ISO currency code.

-- Sellable items and their prices. Orders are priced from here, never from the client.
CREATE TABLE catalog (
    sku           TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    price_minor   BIGINT NOT NULL CHECK (price_minor >= 0),
    currency      TEXT NOT NULL CHECK (length(currency) = 3),
    updated_at_ms BIGINT NOT NULL
);

-- One row per SKU. Stock only moves through conditional UPDATEs (see activities/src/inventory.rs);
-- the CHECKs are the last line of defence if application code ever gets it wrong.
CREATE TABLE inventory (
    sku           TEXT PRIMARY KEY REFERENCES catalog (sku),
    total         BIGINT NOT NULL CHECK (total >= 0),
    available     BIGINT NOT NULL CHECK (available >= 0),
    reserved      BIGINT NOT NULL CHECK (reserved >= 0),
    sold          BIGINT NOT NULL CHECK (sold >= 0),
    updated_at_ms BIGINT NOT NULL,
    CHECK (available + reserved + sold = total)
);

-- TCC reservations: one row per (order, sku). RESERVED moves to CONFIRMED or RELEASED exactly once.
CREATE TABLE stock_reservations (
    order_id      TEXT NOT NULL,
    sku           TEXT NOT NULL REFERENCES inventory (sku),
    quantity      BIGINT NOT NULL CHECK (quantity > 0),
    state         TEXT NOT NULL CHECK (state IN ('RESERVED', 'CONFIRMED', 'RELEASED')),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (order_id, sku)
);

-- Append-only history of every stock movement; summing the deltas per SKU gives the inventory row.
CREATE TABLE inventory_ledger (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    sku             TEXT NOT NULL,
    order_id        TEXT,
    event           TEXT NOT NULL CHECK (event IN ('STOCK_SET', 'RESERVE', 'CONFIRM', 'RELEASE')),
    delta_total     BIGINT NOT NULL,
    delta_available BIGINT NOT NULL,
    delta_reserved  BIGINT NOT NULL,
    delta_sold      BIGINT NOT NULL,
    at_ms           BIGINT NOT NULL
);
CREATE INDEX inventory_ledger_sku ON inventory_ledger (sku);
CREATE TRIGGER inventory_ledger_no_update BEFORE UPDATE ON inventory_ledger
BEGIN SELECT RAISE(ABORT, 'inventory_ledger is append-only'); END;
CREATE TRIGGER inventory_ledger_no_delete BEFORE DELETE ON inventory_ledger
BEGIN SELECT RAISE(ABORT, 'inventory_ledger is append-only'); END;

CREATE TABLE orders (
    order_id      TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL,
    provider      TEXT NOT NULL,
    status        TEXT NOT NULL,
    amount_minor  BIGINT CHECK (amount_minor >= 0),
    currency      TEXT,
    reason        TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX orders_status ON orders (status);

CREATE TABLE order_lines (
    order_id         TEXT NOT NULL REFERENCES orders (order_id),
    sku              TEXT NOT NULL,
    quantity         BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor >= 0),
    line_total_minor BIGINT NOT NULL CHECK (line_total_minor >= 0),
    currency         TEXT NOT NULL,
    PRIMARY KEY (order_id, sku)
);

-- Each status an order reaches, once (the state machine never revisits a status).
CREATE TABLE order_status_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    status   TEXT NOT NULL,
    reason   TEXT,
    at_ms    BIGINT NOT NULL,
    UNIQUE (order_id, status)
);

-- Our side of each order's payment. payment_no is derived from the order id (domain::PaymentNo).
CREATE TABLE payments (
    payment_no        TEXT PRIMARY KEY,
    order_id          TEXT NOT NULL UNIQUE,
    provider          TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'PAID', 'MISMATCHED', 'CLOSED', 'REFUNDED')),
    amount_minor      BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency          TEXT NOT NULL,
    paid_amount_minor BIGINT,
    paid_currency     TEXT,
    provider_txn_id   TEXT,
    deadline_ms       BIGINT NOT NULL,
    checkout_url      TEXT,
    qr_payload        TEXT,
    created_at_ms     BIGINT NOT NULL,
    updated_at_ms     BIGINT NOT NULL
);

-- Each state a payment reaches, once, with the detail that got it there.
CREATE TABLE payment_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_no TEXT NOT NULL,
    event      TEXT NOT NULL,
    detail     TEXT,
    at_ms      BIGINT NOT NULL,
    UNIQUE (payment_no, event)
);

-- The sandbox provider's own books: a simulated gateway. It is a product feature (demo, load
-- tests, local development), not a test double, and it keeps its state like a real gateway would.
CREATE TABLE sandbox_charges (
    payment_no        TEXT PRIMARY KEY,
    amount_minor      BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency          TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'PAID', 'CLOSED', 'REFUNDED')),
    paid_amount_minor BIGINT,
    txn_id            TEXT,
    refund_id         TEXT,
    created_at_ms     BIGINT NOT NULL,
    updated_at_ms     BIGINT NOT NULL
);
