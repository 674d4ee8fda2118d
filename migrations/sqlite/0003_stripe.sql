-- Stripe adapter, SQLite flavour. Keep in step with ../postgres/0003_stripe.sql.

-- Which PaymentIntent Stripe opened for each of our payment numbers. Stripe only remembers an
-- Idempotency-Key for 24 hours, so after that this table is what stops a retried create from
-- opening a second intent, and it is how query/close/refund find the intent (`pi_...`) to address.
-- Amount and currency are what we asked for (minor units, upper-case ISO code), so a reuse of the
-- payment number for a different sum is caught on our side too.
CREATE TABLE stripe_payment_intents (
    payment_no    TEXT PRIMARY KEY,
    intent_id     TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency      TEXT NOT NULL CHECK (length(currency) = 3),
    created_at_ms BIGINT NOT NULL
);
