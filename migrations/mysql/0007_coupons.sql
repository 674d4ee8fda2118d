-- Coupons: definitions, issued codes, and each order's hold on its code. MySQL / MariaDB
-- flavour. Keep in step with ../postgres/0007_coupons.sql, which explains them; types and
-- collation: see 0001_orderflow.sql. Every column a statement looks rows up by is indexed
-- (coupons.order_id: the confirm and cancel; coupons.definition_id: listing a definition's codes).
CREATE TABLE coupon_definitions (
    id                VARCHAR(64) NOT NULL PRIMARY KEY,
    kind              VARCHAR(16) NOT NULL CHECK (kind IN ('FIXED', 'PERCENT')),
    amount_off        BIGINT      NOT NULL CHECK (amount_off > 0),
    currency          VARCHAR(3)  NOT NULL CHECK (length(currency) = 3),
    min_spend_minor   BIGINT      NOT NULL DEFAULT 0 CHECK (min_spend_minor >= 0),
    valid_from_ms     BIGINT      NOT NULL,
    valid_until_ms    BIGINT      NOT NULL,
    created_at_ms     BIGINT      NOT NULL,
    CHECK (kind <> 'PERCENT' OR amount_off <= 100),
    CHECK (valid_until_ms > valid_from_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE coupons (
    code          VARCHAR(64) NOT NULL PRIMARY KEY,
    definition_id VARCHAR(64) NOT NULL,
    customer_id   VARCHAR(64),
    state         VARCHAR(16) NOT NULL CHECK (state IN ('AVAILABLE', 'LOCKED', 'USED')),
    order_id      VARCHAR(64),
    updated_at_ms BIGINT      NOT NULL,
    CHECK ((state = 'AVAILABLE') = (order_id IS NULL)),
    KEY coupons_order_id (order_id),
    KEY coupons_definition_id (definition_id),
    CONSTRAINT coupons_definition_id_fkey FOREIGN KEY (definition_id) REFERENCES coupon_definitions (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE coupon_holds (
    order_id      VARCHAR(64) NOT NULL PRIMARY KEY,
    code          VARCHAR(64) NOT NULL,
    state         VARCHAR(16) NOT NULL CHECK (state IN ('LOCKED', 'USED', 'RELEASED')),
    updated_at_ms BIGINT      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

ALTER TABLE orders ADD COLUMN coupon_code VARCHAR(64);
ALTER TABLE orders ADD COLUMN subtotal_minor BIGINT CHECK (subtotal_minor >= 0);
ALTER TABLE orders ADD COLUMN discount_minor BIGINT NOT NULL DEFAULT 0 CHECK (discount_minor >= 0);
ALTER TABLE order_lines ADD COLUMN discount_minor BIGINT NOT NULL DEFAULT 0 CHECK (discount_minor >= 0);
