-- After-sale refunds, MySQL / MariaDB flavour. Keep in step with ../postgres/0008_refunds.sql,
-- which explains it; types and collation: see 0001_orderflow.sql.
--
-- What differs from PostgreSQL, and why:
-- * A column's CHECK is part of the column on MariaDB: inventory_ledger.event is redefined with
--   the new list.
-- * reason is MEDIUMTEXT, which reaches sqlx's Any driver as bytes.
ALTER TABLE payments ADD COLUMN refunded_minor BIGINT NOT NULL DEFAULT 0,
    ADD CONSTRAINT payments_refunded_within_paid
        CHECK (refunded_minor >= 0 AND refunded_minor <= COALESCE(paid_amount_minor, 0));

-- A second payment for one payment number (the customer paid twice while the order waited for
-- review) is refunded on its own; what went back so is settled, never refunded again.
ALTER TABLE payments ADD COLUMN extra_refunded_minor BIGINT NOT NULL DEFAULT 0;

ALTER TABLE order_lines ADD COLUMN refunded_quantity BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN refunded_minor BIGINT NOT NULL DEFAULT 0,
    ADD CONSTRAINT order_lines_refunded_within
        CHECK (refunded_quantity >= 0 AND refunded_quantity <= quantity AND refunded_minor >= 0);

ALTER TABLE stock_reservations ADD COLUMN returned BIGINT NOT NULL DEFAULT 0,
    ADD CONSTRAINT stock_reservations_returned_within CHECK (returned >= 0 AND returned <= quantity);

ALTER TABLE inventory_ledger MODIFY event VARCHAR(32) NOT NULL
    CHECK (event IN ('STOCK_SET', 'RESERVE', 'CONFIRM', 'RELEASE', 'RETURN'));

CREATE TABLE refunds (
    refund_no          VARCHAR(48)  NOT NULL PRIMARY KEY,
    order_id           VARCHAR(64)  NOT NULL,
    payment_no         VARCHAR(32)  NOT NULL,
    amount_minor       BIGINT       NOT NULL CHECK (amount_minor > 0),
    currency           VARCHAR(3)   NOT NULL,
    reason             MEDIUMTEXT   NOT NULL,
    restock            BIGINT       NOT NULL CHECK (restock IN (0, 1)),
    requested_by       VARCHAR(255) NOT NULL,
    request_summary     VARCHAR(4096) NOT NULL,
    state              VARCHAR(16)  NOT NULL CHECK (state IN ('REQUESTED', 'SUCCEEDED')),
    provider_refund_id VARCHAR(255),
    requested_at_ms    BIGINT       NOT NULL,
    completed_at_ms    BIGINT,
    KEY refunds_order (order_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE refund_lines (
    refund_no    VARCHAR(48) NOT NULL,
    sku          VARCHAR(40) NOT NULL,
    quantity     BIGINT      NOT NULL CHECK (quantity > 0),
    amount_minor BIGINT      NOT NULL CHECK (amount_minor >= 0),
    PRIMARY KEY (refund_no, sku)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

ALTER TABLE sandbox_charges ADD COLUMN refunded_minor BIGINT NOT NULL DEFAULT 0;
CREATE TABLE sandbox_refunds (
    refund_no     VARCHAR(48)  NOT NULL PRIMARY KEY,
    payment_no    VARCHAR(32)  NOT NULL,
    amount_minor  BIGINT       NOT NULL CHECK (amount_minor > 0),
    refund_id     VARCHAR(255) NOT NULL,
    created_at_ms BIGINT       NOT NULL,
    KEY sandbox_refunds_payment (payment_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
