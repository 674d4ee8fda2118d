-- After-sale refunds. Keep in step with ../sqlite/0008_refunds.sql and ../mysql/0008_refunds.sql.
--
-- An operator refunds a paid order, whole or in part (activities/src/refunds.rs). The request is
-- counted against the payment when it is accepted, in one guarded UPDATE of
-- payments.refunded_minor, so two operators refunding at once can never refund more than was
-- paid; the CHECKs below are the last line of defence. A refund line counts its units against the
-- order line the same way, and a refund that returns stock to sale counts the units against the
-- confirmed reservation (stock_reservations.returned), so `sold` still equals what the
-- reservations hold (inventory::audit).
ALTER TABLE payments ADD COLUMN refunded_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE payments ADD CONSTRAINT payments_refunded_within_paid
    CHECK (refunded_minor >= 0 AND refunded_minor <= COALESCE(paid_amount_minor, 0));

-- A second payment for one payment number (the customer paid twice while the order waited for
-- review) is refunded on its own; what went back so is settled, never refunded again.
ALTER TABLE payments ADD COLUMN extra_refunded_minor BIGINT NOT NULL DEFAULT 0;

ALTER TABLE order_lines ADD COLUMN refunded_quantity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE order_lines ADD COLUMN refunded_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE order_lines ADD CONSTRAINT order_lines_refunded_within
    CHECK (refunded_quantity >= 0 AND refunded_quantity <= quantity AND refunded_minor >= 0);

ALTER TABLE stock_reservations ADD COLUMN returned BIGINT NOT NULL DEFAULT 0;
ALTER TABLE stock_reservations ADD CONSTRAINT stock_reservations_returned_within
    CHECK (returned >= 0 AND returned <= quantity);

-- RETURN: refunded units back to sale (sold → available).
ALTER TABLE inventory_ledger DROP CONSTRAINT inventory_ledger_event_check;
ALTER TABLE inventory_ledger ADD CONSTRAINT inventory_ledger_event_check
    CHECK (event IN ('STOCK_SET', 'RESERVE', 'CONFIRM', 'RELEASE', 'RETURN'));

-- One row per after-sale refund. refund_no is derived from the payment and the request's
-- idempotency key (domain::refund_no_after_sale), never random: it is the provider's refund
-- number, and the workflow id is 'refund-' || refund_no.
CREATE TABLE refunds (
    refund_no          TEXT PRIMARY KEY,
    order_id           TEXT   NOT NULL,
    payment_no         TEXT   NOT NULL,
    amount_minor       BIGINT NOT NULL CHECK (amount_minor > 0),
    currency           TEXT   NOT NULL,
    reason             TEXT   NOT NULL,
    -- 1: the refunded lines' units go back to sale when the refund completes.
    restock            BIGINT NOT NULL CHECK (restock IN (0, 1)),
    requested_by       TEXT   NOT NULL,
    -- What was asked (scope, restock, the reason's start): the same key with another request is
    -- refused, not merged.
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

-- The sandbox gateway's refunds, one per refund number, and what it has refunded of each charge.
ALTER TABLE sandbox_charges ADD COLUMN refunded_minor BIGINT NOT NULL DEFAULT 0;
CREATE TABLE sandbox_refunds (
    refund_no     TEXT PRIMARY KEY,
    payment_no    TEXT   NOT NULL,
    amount_minor  BIGINT NOT NULL CHECK (amount_minor > 0),
    refund_id     TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX sandbox_refunds_payment ON sandbox_refunds (payment_no);
