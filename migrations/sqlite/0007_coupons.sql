-- Coupons: definitions, issued codes, and each order's hold on its code. Keep in step with
-- ../postgres/0007_coupons.sql, which explains them.
CREATE TABLE coupon_definitions (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('FIXED', 'PERCENT')),
    amount_off        BIGINT NOT NULL CHECK (amount_off > 0),
    currency          TEXT NOT NULL CHECK (length(currency) = 3),
    min_spend_minor   BIGINT NOT NULL DEFAULT 0 CHECK (min_spend_minor >= 0),
    valid_from_ms     BIGINT NOT NULL,
    valid_until_ms    BIGINT NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    CHECK (kind <> 'PERCENT' OR amount_off <= 100),
    CHECK (valid_until_ms > valid_from_ms)
);

CREATE TABLE coupons (
    code          TEXT PRIMARY KEY,
    definition_id TEXT NOT NULL REFERENCES coupon_definitions (id),
    customer_id   TEXT,
    state         TEXT NOT NULL CHECK (state IN ('AVAILABLE', 'LOCKED', 'USED')),
    order_id      TEXT,
    updated_at_ms BIGINT NOT NULL,
    CHECK ((state = 'AVAILABLE') = (order_id IS NULL))
);
CREATE INDEX coupons_order_id ON coupons (order_id);
CREATE INDEX coupons_definition_id ON coupons (definition_id);

CREATE TABLE coupon_holds (
    order_id      TEXT PRIMARY KEY,
    code          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('LOCKED', 'USED', 'RELEASED')),
    updated_at_ms BIGINT NOT NULL
);

ALTER TABLE orders ADD COLUMN coupon_code TEXT;
ALTER TABLE orders ADD COLUMN subtotal_minor BIGINT CHECK (subtotal_minor >= 0);
ALTER TABLE orders ADD COLUMN discount_minor BIGINT NOT NULL DEFAULT 0 CHECK (discount_minor >= 0);
ALTER TABLE order_lines ADD COLUMN discount_minor BIGINT NOT NULL DEFAULT 0 CHECK (discount_minor >= 0);
