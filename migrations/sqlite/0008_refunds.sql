-- After-sale refunds, SQLite flavour. Keep in step with ../postgres/0008_refunds.sql, which
-- explains it.
--
-- What differs from PostgreSQL, and why:
-- * SQLite adds no table constraint to an existing table: the CHECKs ride on the new columns.
-- * A CHECK cannot be changed in place: inventory_ledger is rebuilt with 'RETURN' in its event
--   list (same columns, same rows, same index and append-only triggers).
ALTER TABLE payments ADD COLUMN refunded_minor BIGINT NOT NULL DEFAULT 0
    CHECK (refunded_minor >= 0 AND refunded_minor <= COALESCE(paid_amount_minor, 0));

-- A second payment for one payment number (the customer paid twice while the order waited for
-- review) is refunded on its own; what went back so is settled, never refunded again.
ALTER TABLE payments ADD COLUMN extra_refunded_minor BIGINT NOT NULL DEFAULT 0;

ALTER TABLE order_lines ADD COLUMN refunded_quantity BIGINT NOT NULL DEFAULT 0
    CHECK (refunded_quantity >= 0 AND refunded_quantity <= quantity);
ALTER TABLE order_lines ADD COLUMN refunded_minor BIGINT NOT NULL DEFAULT 0
    CHECK (refunded_minor >= 0);

ALTER TABLE stock_reservations ADD COLUMN returned BIGINT NOT NULL DEFAULT 0
    CHECK (returned >= 0 AND returned <= quantity);

DROP TRIGGER inventory_ledger_no_update;
DROP TRIGGER inventory_ledger_no_delete;
CREATE TABLE inventory_ledger_v8 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    sku             TEXT NOT NULL,
    order_id        TEXT,
    event           TEXT NOT NULL CHECK (event IN ('STOCK_SET', 'RESERVE', 'CONFIRM', 'RELEASE', 'RETURN')),
    delta_total     BIGINT NOT NULL,
    delta_available BIGINT NOT NULL,
    delta_reserved  BIGINT NOT NULL,
    delta_sold      BIGINT NOT NULL,
    at_ms           BIGINT NOT NULL
);
INSERT INTO inventory_ledger_v8
    (id, sku, order_id, event, delta_total, delta_available, delta_reserved, delta_sold, at_ms)
SELECT id, sku, order_id, event, delta_total, delta_available, delta_reserved, delta_sold, at_ms
  FROM inventory_ledger;
DROP TABLE inventory_ledger;
ALTER TABLE inventory_ledger_v8 RENAME TO inventory_ledger;
CREATE INDEX inventory_ledger_sku ON inventory_ledger (sku);
CREATE TRIGGER inventory_ledger_no_update BEFORE UPDATE ON inventory_ledger
BEGIN SELECT RAISE(ABORT, 'inventory_ledger is append-only'); END;
CREATE TRIGGER inventory_ledger_no_delete BEFORE DELETE ON inventory_ledger
BEGIN SELECT RAISE(ABORT, 'inventory_ledger is append-only'); END;

CREATE TABLE refunds (
    refund_no          TEXT PRIMARY KEY,
    order_id           TEXT   NOT NULL,
    payment_no         TEXT   NOT NULL,
    amount_minor       BIGINT NOT NULL CHECK (amount_minor > 0),
    currency           TEXT   NOT NULL,
    reason             TEXT   NOT NULL,
    restock            BIGINT NOT NULL CHECK (restock IN (0, 1)),
    requested_by       TEXT   NOT NULL,
    request_summary     TEXT   NOT NULL,
    state              TEXT   NOT NULL CHECK (state IN ('REQUESTED', 'SUCCEEDED')),
    provider_refund_id TEXT,
    requested_at_ms    BIGINT NOT NULL,
    completed_at_ms    BIGINT
);
CREATE INDEX refunds_order ON refunds (order_id);

CREATE TABLE refund_lines (
    refund_no    TEXT   NOT NULL,
    sku          TEXT   NOT NULL,
    quantity     BIGINT NOT NULL CHECK (quantity > 0),
    amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
    PRIMARY KEY (refund_no, sku)
);

ALTER TABLE sandbox_charges ADD COLUMN refunded_minor BIGINT NOT NULL DEFAULT 0;
CREATE TABLE sandbox_refunds (
    refund_no     TEXT PRIMARY KEY,
    payment_no    TEXT   NOT NULL,
    amount_minor  BIGINT NOT NULL CHECK (amount_minor > 0),
    refund_id     TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX sandbox_refunds_payment ON sandbox_refunds (payment_no);
