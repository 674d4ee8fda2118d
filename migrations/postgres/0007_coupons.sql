-- Coupons: definitions, issued codes, and each order's hold on its code (TCC inside the order
-- saga: activities/src/coupons.rs). Keep in step with ../sqlite/ and ../mysql/0007_coupons.sql.
-- Money is integer minor units; times are Unix ms.

-- What a coupon takes off. FIXED: amount_off in minor units of `currency`; PERCENT: a whole
-- percent 1..100 (discount = floor(subtotal * percent / 100)). Immutable once written, so a
-- price computed from it stays true for the order's life.
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

-- One row per issued code, single use. customer_id NULL: anyone may use it. It moves only
-- AVAILABLE -> LOCKED(order_id) -> USED, or LOCKED -> AVAILABLE, by guarded single UPDATEs.
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

-- Each order's hold on its code (anti-hanging): written by the try (LOCKED), the confirm (USED)
-- and the cancel (RELEASED, also when there was nothing to release). A try finding its order
-- RELEASED fails: it arrived after its own cancel.
CREATE TABLE coupon_holds (
    order_id      TEXT PRIMARY KEY,
    code          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('LOCKED', 'USED', 'RELEASED')),
    updated_at_ms BIGINT NOT NULL
);

-- Orders keep what the customer was charged before and after the coupon; each line keeps its
-- share of the discount (largest remainder, ties by SKU), so a line's net amount is
-- line_total_minor - discount_minor.
ALTER TABLE orders ADD COLUMN coupon_code TEXT;
ALTER TABLE orders ADD COLUMN subtotal_minor BIGINT CHECK (subtotal_minor >= 0);
ALTER TABLE orders ADD COLUMN discount_minor BIGINT NOT NULL DEFAULT 0 CHECK (discount_minor >= 0);
ALTER TABLE order_lines ADD COLUMN discount_minor BIGINT NOT NULL DEFAULT 0 CHECK (discount_minor >= 0);
