-- Stripe adapter, MySQL / MariaDB flavour. Keep in step with ../postgres/0003_stripe.sql and
-- ../sqlite/0003_stripe.sql. Types, collation and the reasons for them: see 0001_orderflow.sql.
-- What differs from PostgreSQL: VARCHAR sizes (a Stripe id is at most 255 characters), and
-- CHAR_LENGTH for length (MySQL's LENGTH counts bytes).

-- Which PaymentIntent Stripe opened for each of our payment numbers. Stripe only remembers an
-- Idempotency-Key for 24 hours, so after that this table is what stops a retried create from
-- opening a second intent, and it is how query/close/refund find the intent (`pi_...`) to address.
-- Amount and currency are what we asked for (minor units, upper-case ISO code), so a reuse of the
-- payment number for a different sum is caught on our side too.
CREATE TABLE stripe_payment_intents (
    payment_no    VARCHAR(32)  NOT NULL PRIMARY KEY,
    intent_id     VARCHAR(255) NOT NULL,
    amount_minor  BIGINT       NOT NULL CHECK (amount_minor >= 0),
    currency      VARCHAR(3)   NOT NULL CHECK (CHAR_LENGTH(currency) = 3),
    created_at_ms BIGINT       NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
