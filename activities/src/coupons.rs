//! Coupons: definitions and issued codes, the discount they give, and their TCC inside the order
//! saga — no step of the workflow of its own.
//!
//! * **Pricing** ([`discount_for`], [`allocate`]): server-side, from the catalog and the coupon's
//!   definition, in integer minor units. Percent: `floor(subtotal × percent / 100)`; fixed: the
//!   amount off. Either way capped so the total stays ≥ 1 minor unit (providers cannot charge 0).
//!   The discount is spread over the lines in proportion to their totals, largest remainder first,
//!   ties by SKU, and stored per line: a line's net amount is what a refund of it gives back.
//!   What cannot change while an order runs (the code exists, its currency, the minimum spend) is
//!   checked when pricing; what can (the validity window, whether someone else holds it) by the try.
//! * **Try** ([`try_in`]): in the transaction that reserves the stock, a guarded
//!   `AVAILABLE → LOCKED(order)`; refused, the stock reservation rolls back with it and the order
//!   is rejected `COUPON_UNAVAILABLE`.
//! * **Confirm** ([`confirm_in`]): in `finish_order`'s transaction when the stock is sold,
//!   `LOCKED → USED`.
//! * **Cancel** ([`cancel_in`]): wherever the stock is released, `LOCKED → AVAILABLE` if this order
//!   still holds it.
//!
//! `coupon_holds` is each order's record of its hold (LOCKED, USED or RELEASED). A cancel writes
//! RELEASED even when the try never ran, so a try that arrives after its own cancel (an attempt
//! that outlived its timeout) finds it and fails: it cannot lock a coupon for an order that is
//! already over (anti-hanging). Every coupon movement is one guarded statement; a repeat finds
//! the work done.

use crate::db::{Db, now_ms};
use crate::failure::{self, Classified};
use crate::sql;
use orderflow_domain::{Currency, Money, is_coupon_code};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum CouponError {
    /// The order cannot have this coupon (final: the order is rejected).
    #[error("{0}")]
    Unavailable(String),
    /// An operator's request that cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("coupon invariant violated: {0}")]
    Invariant(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl Classified for CouponError {
    fn code(&self) -> &'static str {
        match self {
            CouponError::Unavailable(_) => failure::COUPON_UNAVAILABLE,
            CouponError::Invalid(_) | CouponError::Conflict(_) | CouponError::NotFound(_) => {
                failure::INVALID_ORDER
            }
            CouponError::Invariant(_) => failure::INVARIANT_VIOLATION,
            CouponError::Db(e) => e.code(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            CouponError::Db(e) => e.retryable(),
            _ => false,
        }
    }
}

/// How a coupon takes money off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CouponKind {
    /// `amount_off` minor units of the definition's currency.
    #[serde(rename = "FIXED")]
    Fixed,
    /// `amount_off` whole percent, 1..=100.
    #[serde(rename = "PERCENT")]
    Percent,
}

impl CouponKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponKind::Fixed => "FIXED",
            CouponKind::Percent => "PERCENT",
        }
    }

    pub fn parse(s: &str) -> Result<Self, CouponError> {
        match s.to_ascii_uppercase().as_str() {
            "FIXED" => Ok(CouponKind::Fixed),
            "PERCENT" => Ok(CouponKind::Percent),
            other => Err(CouponError::Invalid(format!(
                "coupon kind {other:?} is neither FIXED nor PERCENT"
            ))),
        }
    }
}

/// A coupon definition: what its codes take off, on which spend, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponDefinition {
    pub id: String,
    pub kind: CouponKind,
    /// Minor units (FIXED) or whole percent (PERCENT).
    pub amount_off: i64,
    pub currency: String,
    pub min_spend_minor: i64,
    pub valid_from_ms: i64,
    pub valid_until_ms: i64,
}

impl CouponDefinition {
    /// Checks an operator's definition: id shape, kind range, currency, window.
    pub fn validate(&self) -> Result<(), CouponError> {
        if !is_coupon_code(&self.id) {
            return Err(CouponError::Invalid(
                "a coupon definition id is 1..=64 characters of A-Z, a-z, 0-9, '_' or '-'".into(),
            ));
        }
        Currency::parse(&self.currency)
            .map_err(|e| CouponError::Invalid(format!("currency: {e}")))?;
        match self.kind {
            CouponKind::Percent if !(1..=100).contains(&self.amount_off) => {
                return Err(CouponError::Invalid(format!(
                    "a percent coupon takes 1..=100 percent off, not {}",
                    self.amount_off
                )));
            }
            CouponKind::Fixed if self.amount_off < 1 => {
                return Err(CouponError::Invalid(format!(
                    "a fixed coupon takes at least 1 minor unit off, not {}",
                    self.amount_off
                )));
            }
            _ => {}
        }
        if self.min_spend_minor < 0 {
            return Err(CouponError::Invalid(
                "the minimum spend cannot be negative".into(),
            ));
        }
        if self.valid_from_ms < 0 {
            return Err(CouponError::Invalid(
                "valid_from_ms is a Unix time in ms, not negative".into(),
            ));
        }
        if self.valid_until_ms <= self.valid_from_ms {
            return Err(CouponError::Invalid(
                "the validity window must end after it starts".into(),
            ));
        }
        Ok(())
    }
}

/// An issued code and where it is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCoupon {
    pub code: String,
    pub definition_id: String,
    /// `None`: any customer may use it.
    pub customer_id: Option<String>,
    /// `AVAILABLE`, `LOCKED` or `USED`.
    pub state: String,
    /// The order holding it (LOCKED) or that spent it (USED).
    pub order_id: Option<String>,
    pub updated_at_ms: i64,
}

/// The discount a definition gives on `subtotal`, or why it gives none. The rounding rule:
/// percent = floor(subtotal × percent / 100); fixed = the amount off; both capped at
/// `subtotal − 1` so the order still costs at least one minor unit (no provider charges 0).
pub fn discount_for(
    code: &str,
    def: &CouponDefinition,
    subtotal: Money,
) -> Result<i64, CouponError> {
    if def.currency != subtotal.currency().code() {
        return Err(CouponError::Unavailable(format!(
            "coupon {code} is for {} orders; this order is in {}",
            def.currency,
            subtotal.currency().code()
        )));
    }
    let s = subtotal.minor();
    if s < def.min_spend_minor {
        return Err(CouponError::Unavailable(format!(
            "coupon {code} needs a minimum spend of {} minor units; the order's subtotal is {s}",
            def.min_spend_minor
        )));
    }
    let raw = match def.kind {
        // i128: subtotal × 100 cannot overflow.
        CouponKind::Percent => {
            i64::try_from(i128::from(s) * i128::from(def.amount_off) / 100).unwrap_or(i64::MAX)
        }
        CouponKind::Fixed => def.amount_off,
    };
    Ok(raw.clamp(0, (s - 1).max(0)))
}

/// Spreads `discount` over lines with these totals (already in SKU order), in proportion to each
/// total: each line gets the floor of its exact share, and the units left over go one each to
/// the lines with the largest remainders, ties to the earlier SKU. The shares sum to `discount`,
/// and none exceeds its line's total while `discount` is below the subtotal.
pub fn allocate(discount: i64, line_totals: &[i64]) -> Vec<i64> {
    let subtotal: i128 = line_totals.iter().map(|t| i128::from(*t)).sum();
    if discount <= 0 || subtotal <= 0 {
        return vec![0; line_totals.len()];
    }
    let d = i128::from(discount);
    let mut shares: Vec<i64> = Vec::with_capacity(line_totals.len());
    let mut remainders: Vec<(i128, usize)> = Vec::with_capacity(line_totals.len());
    for (i, total) in line_totals.iter().enumerate() {
        let exact = d * i128::from(*total);
        shares.push(i64::try_from(exact / subtotal).unwrap_or(i64::MAX));
        remainders.push((exact % subtotal, i));
    }
    let given: i64 = shares.iter().sum();
    // Largest remainder first; a stable sort keeps SKU order among equals.
    remainders.sort_by_key(|r| std::cmp::Reverse(r.0));
    for (_, i) in remainders
        .iter()
        .take(usize::try_from(discount - given).unwrap_or(0))
    {
        shares[*i] += 1;
    }
    shares
}

/// The definition behind an issued code (`None`: no such code). Read when pricing.
pub async fn definition_of_code(
    db: &Db,
    code: &str,
) -> Result<Option<CouponDefinition>, sqlx::Error> {
    let row = sql!(
        "SELECT d.id, d.kind, d.amount_off, d.currency, d.min_spend_minor, d.valid_from_ms,
                d.valid_until_ms
           FROM coupons c JOIN coupon_definitions d ON d.id = c.definition_id
          WHERE c.code = $1",
    )
    .on(db.engine())
    .bind(code)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| definition_row(&r)).transpose()
}

fn definition_row(r: &sqlx::any::AnyRow) -> Result<CouponDefinition, sqlx::Error> {
    let kind: String = r.try_get(1)?;
    Ok(CouponDefinition {
        id: r.try_get(0)?,
        kind: CouponKind::parse(&kind).map_err(|e| sqlx::Error::Decode(e.to_string().into()))?,
        amount_off: r.try_get(2)?,
        currency: r.try_get(3)?,
        min_spend_minor: r.try_get(4)?,
        valid_from_ms: r.try_get(5)?,
        valid_until_ms: r.try_get(6)?,
    })
}

/// Who claims a coupon in the try: the code and the ordering customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponClaim {
    pub code: String,
    pub customer_id: String,
}

/// TCC try, inside the stock reservation's transaction: records the order's hold and moves the
/// code `AVAILABLE → LOCKED(order)` if the customer may use it and it is valid now. Returns
/// `Ok(None)` when the order holds it (also on a repeat), or `Ok(Some(reason))` when it cannot:
/// the caller must then roll the transaction back.
pub(crate) async fn try_in(
    tx: &mut Transaction<'static, Any>,
    order_id: &str,
    claim: &CouponClaim,
) -> Result<Option<String>, sqlx::Error> {
    let now = now_ms();
    let recorded = sql!(
        "INSERT INTO coupon_holds (order_id, code, state, updated_at_ms) VALUES ($1, $2, 'LOCKED', $3)
         ON CONFLICT (order_id) DO NOTHING",
    )
    .on(&**tx)
    .bind(order_id)
    .bind(&claim.code)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if recorded == 0 {
        // The order has a hold already: a repeat of this try, or a try after its own cancel.
        let hold: Option<(String, String)> =
            sql!("SELECT code, state FROM coupon_holds WHERE order_id = $1")
                .on(&**tx)
                .bind(order_id)
                .fetch_optional_as(&mut **tx)
                .await?;
        return Ok(match hold {
            Some((code, state)) if code == claim.code && state != "RELEASED" => None,
            Some((_, state)) if state == "RELEASED" => Some(format!(
                "order {order_id} has already released its coupon; it cannot take one again"
            )),
            _ => Some(format!("order {order_id} holds another coupon")),
        });
    }
    let locked = sql!(
        "UPDATE coupons SET state = 'LOCKED', order_id = $2, updated_at_ms = $3
          WHERE code = $1 AND state = 'AVAILABLE'
            AND (customer_id IS NULL OR customer_id = $4)
            AND definition_id IN (SELECT id FROM coupon_definitions
                                   WHERE valid_from_ms <= $3 AND valid_until_ms > $3)",
    )
    .on(&**tx)
    .bind(&claim.code)
    .bind(order_id)
    .bind(now)
    .bind(&claim.customer_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok((locked == 0).then(String::new))
}

/// Why the try could not lock the code, read after its rollback (the guarded update decided;
/// this only words it). Never names another customer or order.
pub(crate) async fn why_unavailable(db: &Db, claim: &CouponClaim, decided: String) -> String {
    if !decided.is_empty() {
        return decided;
    }
    let code = &claim.code;
    let row = sql!(
        "SELECT c.state, c.customer_id, d.valid_from_ms, d.valid_until_ms
           FROM coupons c JOIN coupon_definitions d ON d.id = c.definition_id
          WHERE c.code = $1",
    )
    .on(db.engine())
    .bind(code)
    .fetch_optional(db.pool())
    .await;
    let row = match row {
        Ok(Some(row)) => row,
        Ok(None) => return format!("unknown coupon code {code}"),
        Err(_) => return format!("coupon {code} is not available"),
    };
    let read = || -> Result<(String, Option<String>, i64, i64), sqlx::Error> {
        Ok((
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        ))
    };
    let Ok((state, customer, from, until)) = read() else {
        return format!("coupon {code} is not available");
    };
    let now = now_ms();
    if customer.is_some_and(|c| c != claim.customer_id) {
        format!("coupon {code} was issued to another customer")
    } else if now < from {
        format!("coupon {code} is not valid yet")
    } else if now >= until {
        format!("coupon {code} has expired")
    } else if state == "USED" {
        format!("coupon {code} has already been used")
    } else if state == "LOCKED" {
        format!("coupon {code} is held by another order")
    } else {
        format!("coupon {code} is not available")
    }
}

/// TCC confirm, in `finish_order`'s transaction as the stock is sold: the order's hold and its
/// code move `LOCKED → USED`. An order without a coupon costs one primary-key update that finds
/// nothing; so does a repeat (the hold is USED already). A RELEASED hold is never confirmed: its
/// stock was released in the same transaction, and the stock's own confirm refuses that order.
pub(crate) async fn confirm_in(
    tx: &mut Transaction<'static, Any>,
    order_id: &str,
) -> Result<(), CouponError> {
    let now = now_ms();
    let held = sql!(
        "UPDATE coupon_holds SET state = 'USED', updated_at_ms = $2
          WHERE order_id = $1 AND state = 'LOCKED'",
    )
    .on(&**tx)
    .bind(order_id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if held == 0 {
        return Ok(());
    }
    let used = sql!(
        "UPDATE coupons SET state = 'USED', updated_at_ms = $2
          WHERE order_id = $1 AND state = 'LOCKED'",
    )
    .on(&**tx)
    .bind(order_id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if used != 1 {
        return Err(CouponError::Invariant(format!(
            "{order_id} holds a coupon that is not LOCKED by it ({used} moved)"
        )));
    }
    Ok(())
}

/// TCC cancel, wherever the order's stock is released: its hold becomes RELEASED (written even if
/// the try never ran, so a late try fails) and its code, if this order still holds it, AVAILABLE
/// again. An order without a coupon costs one statement that finds its row by primary key and
/// writes nothing; a repeat writes nothing either. A USED hold stays USED.
pub(crate) async fn cancel_in(
    tx: &mut Transaction<'static, Any>,
    order_id: &str,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let released = sql!(
        "INSERT INTO coupon_holds (order_id, code, state, updated_at_ms)
         SELECT order_id, coupon_code, 'RELEASED', $2 FROM orders
          WHERE order_id = $1 AND coupon_code IS NOT NULL
         ON CONFLICT (order_id) DO UPDATE SET state = 'RELEASED', updated_at_ms = excluded.updated_at_ms
          WHERE coupon_holds.state = 'LOCKED'",
        // No WHERE on MySQL's upsert: each column keeps its value unless the hold is LOCKED;
        // assignments run left to right, so state is last. Qualified: `orders` is in scope too
        // and has an updated_at_ms of its own.
        mysql: "INSERT INTO coupon_holds (order_id, code, state, updated_at_ms)
         SELECT order_id, coupon_code, 'RELEASED', $2 FROM orders
          WHERE order_id = $1 AND coupon_code IS NOT NULL
         ON DUPLICATE KEY UPDATE
            updated_at_ms = IF(coupon_holds.state = 'LOCKED', VALUES(updated_at_ms),
                               coupon_holds.updated_at_ms),
            state = IF(coupon_holds.state = 'LOCKED', 'RELEASED', coupon_holds.state)",
    )
    .on(&**tx)
    .bind(order_id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if released == 0 {
        return Ok(());
    }
    sql!(
        "UPDATE coupons SET state = 'AVAILABLE', order_id = NULL, updated_at_ms = $2
          WHERE order_id = $1 AND state = 'LOCKED'",
    )
    .on(&**tx)
    .bind(order_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Defines a coupon. Idempotent by id: the same terms again answer the stored definition; other
/// terms under an existing id are a conflict (a definition never changes under issued codes).
pub async fn define(db: &Db, def: &CouponDefinition) -> Result<CouponDefinition, CouponError> {
    def.validate()?;
    let inserted = sql!(
        "INSERT INTO coupon_definitions (id, kind, amount_off, currency, min_spend_minor,
                                         valid_from_ms, valid_until_ms, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO NOTHING",
    )
    .on(db.engine())
    .bind(&def.id)
    .bind(def.kind.as_str())
    .bind(def.amount_off)
    .bind(&def.currency)
    .bind(def.min_spend_minor)
    .bind(def.valid_from_ms)
    .bind(def.valid_until_ms)
    .bind(now_ms())
    .execute(db.writes())
    .await?
    .rows_affected();
    let stored = definition(db, &def.id)
        .await?
        .ok_or_else(|| CouponError::NotFound(format!("coupon definition {}", def.id)))?;
    if inserted == 0 && stored != *def {
        return Err(CouponError::Conflict(format!(
            "coupon definition {} exists with other terms",
            def.id
        )));
    }
    Ok(stored)
}

pub async fn definition(db: &Db, id: &str) -> Result<Option<CouponDefinition>, sqlx::Error> {
    let row = sql!(
        "SELECT id, kind, amount_off, currency, min_spend_minor, valid_from_ms, valid_until_ms
           FROM coupon_definitions WHERE id = $1",
    )
    .on(db.engine())
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| definition_row(&r)).transpose()
}

pub async fn definitions(db: &Db) -> Result<Vec<CouponDefinition>, sqlx::Error> {
    let rows = sql!(
        "SELECT id, kind, amount_off, currency, min_spend_minor, valid_from_ms, valid_until_ms
           FROM coupon_definitions ORDER BY id",
    )
    .on(db.engine())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(definition_row).collect()
}

/// Issues `code` under a definition, for one customer or (None) anyone. Idempotent by code: the
/// same definition and customer again answer the stored code; anything else is a conflict.
pub async fn issue(
    db: &Db,
    definition_id: &str,
    customer_id: Option<&str>,
    code: &str,
) -> Result<IssuedCoupon, CouponError> {
    if !is_coupon_code(code) {
        return Err(CouponError::Invalid(
            "a coupon code is 1..=64 characters of A-Z, a-z, 0-9, '_' or '-'".into(),
        ));
    }
    if let Some(customer) = customer_id {
        orderflow_domain::CustomerId::parse(customer)
            .map_err(|e| CouponError::Invalid(format!("invalid customer id: {e}")))?;
    }
    // Inserted only if the definition exists: an unknown one is a clear 404, not a key error.
    sql!(
        "INSERT INTO coupons (code, definition_id, customer_id, state, order_id, updated_at_ms)
         SELECT $1, id, $3, 'AVAILABLE', NULL, $4 FROM coupon_definitions WHERE id = $2
         ON CONFLICT (code) DO NOTHING",
    )
    .on(db.engine())
    .bind(code)
    .bind(definition_id)
    .bind(customer_id)
    .bind(now_ms())
    .execute(db.writes())
    .await?;
    match coupon(db, code).await? {
        Some(c) if c.definition_id == definition_id && c.customer_id.as_deref() == customer_id => {
            Ok(c)
        }
        Some(_) => Err(CouponError::Conflict(format!(
            "coupon code {code} is already issued with other terms"
        ))),
        None => Err(CouponError::NotFound(format!(
            "coupon definition {definition_id}"
        ))),
    }
}

pub async fn coupon(db: &Db, code: &str) -> Result<Option<IssuedCoupon>, sqlx::Error> {
    let row = sql!(
        "SELECT code, definition_id, customer_id, state, order_id, updated_at_ms
           FROM coupons WHERE code = $1",
    )
    .on(db.engine())
    .bind(code)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| issued_row(&r)).transpose()
}

/// The codes issued under a definition.
pub async fn codes(db: &Db, definition_id: &str) -> Result<Vec<IssuedCoupon>, sqlx::Error> {
    let rows = sql!(
        "SELECT code, definition_id, customer_id, state, order_id, updated_at_ms
           FROM coupons WHERE definition_id = $1 ORDER BY code",
    )
    .on(db.engine())
    .bind(definition_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(issued_row).collect()
}

fn issued_row(r: &sqlx::any::AnyRow) -> Result<IssuedCoupon, sqlx::Error> {
    Ok(IssuedCoupon {
        code: r.try_get(0)?,
        definition_id: r.try_get(1)?,
        customer_id: r.try_get(2)?,
        state: r.try_get(3)?,
        order_id: r.try_get(4)?,
        updated_at_ms: r.try_get(5)?,
    })
}

/// The coupon invariants, one line per problem (empty when all hold): no code is USED by more
/// than one order; every USED code was spent by an order that was paid; every LOCKED code is
/// held by an order still open (PENDING, AWAITING_PAYMENT) or under review (NEEDS_REVIEW); each
/// order's LOCKED/USED hold matches its code.
pub async fn audit(db: &Db) -> Result<Vec<String>, sqlx::Error> {
    let mut problems = Vec::new();
    let twice: Vec<(String, i64)> = sql!(
        "SELECT code, CAST(COUNT(*) AS BIGINT) FROM coupon_holds WHERE state = 'USED'
          GROUP BY code HAVING COUNT(*) > 1",
    )
    .on(db.engine())
    .fetch_all_as(db.pool())
    .await?;
    for (code, n) in twice {
        problems.push(format!("coupon {code}: USED by {n} orders"));
    }
    let misplaced: Vec<(String, String, Option<String>, Option<String>)> = sql!(
        "SELECT c.code, c.state, c.order_id, o.status
           FROM coupons c LEFT JOIN orders o ON o.order_id = c.order_id
          WHERE (c.state = 'LOCKED'
                 AND (o.status IS NULL
                      OR o.status NOT IN ('PENDING', 'AWAITING_PAYMENT', 'NEEDS_REVIEW')))
             OR (c.state = 'USED'
                 AND NOT EXISTS (SELECT 1 FROM order_status_log l
                                  WHERE l.order_id = c.order_id AND l.status = 'PAID'))",
    )
    .on(db.engine())
    .fetch_all_as(db.pool())
    .await?;
    for (code, state, order, status) in misplaced {
        problems.push(format!(
            "coupon {code}: {state} by order {order:?}, which is {status:?}"
        ));
    }
    let unmatched: Vec<(String, String, String)> = sql!(
        "SELECT h.order_id, h.code, h.state
           FROM coupon_holds h LEFT JOIN coupons c ON c.code = h.code
          WHERE h.state IN ('LOCKED', 'USED')
            AND (c.code IS NULL OR c.order_id IS NULL OR c.order_id <> h.order_id
                 OR c.state <> h.state)",
    )
    .on(db.engine())
    .fetch_all_as(db.pool())
    .await?;
    for (order, code, state) in unmatched {
        problems.push(format!(
            "order {order}: its hold on {code} is {state}, the code is not"
        ));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(kind: CouponKind, amount_off: i64, min_spend_minor: i64) -> CouponDefinition {
        CouponDefinition {
            id: "D".into(),
            kind,
            amount_off,
            currency: "USD".into(),
            min_spend_minor,
            valid_from_ms: 0,
            valid_until_ms: i64::MAX,
        }
    }

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::parse("USD").unwrap()).unwrap()
    }

    #[test]
    fn percent_rounds_down_and_fixed_takes_its_amount() {
        // 15% of 1999 = 299.85 → 299.
        assert_eq!(
            discount_for("C", &def(CouponKind::Percent, 15, 0), usd(1999)).unwrap(),
            299
        );
        assert_eq!(
            discount_for("C", &def(CouponKind::Percent, 33, 0), usd(1)).unwrap(),
            0
        );
        assert_eq!(
            discount_for("C", &def(CouponKind::Fixed, 500, 0), usd(1999)).unwrap(),
            500
        );
        // No overflow near the top of i64.
        assert_eq!(
            discount_for("C", &def(CouponKind::Percent, 50, 0), usd(i64::MAX)).unwrap(),
            i64::MAX / 2
        );
    }

    #[test]
    fn the_total_never_drops_below_one_minor_unit() {
        assert_eq!(
            discount_for("C", &def(CouponKind::Fixed, 5000, 0), usd(1250)).unwrap(),
            1249
        );
        assert_eq!(
            discount_for("C", &def(CouponKind::Percent, 100, 0), usd(1250)).unwrap(),
            1249
        );
        assert_eq!(
            discount_for("C", &def(CouponKind::Fixed, 5, 0), usd(1)).unwrap(),
            0
        );
    }

    #[test]
    fn minimum_spend_and_currency_are_checked() {
        let err = discount_for("C", &def(CouponKind::Fixed, 100, 2000), usd(1999)).unwrap_err();
        assert!(err.to_string().contains("minimum spend"), "{err}");
        assert_eq!(err.code(), failure::COUPON_UNAVAILABLE);
        assert_eq!(
            discount_for("C", &def(CouponKind::Fixed, 100, 2000), usd(2000)).unwrap(),
            100
        );
        let eur = Money::new(5000, Currency::parse("EUR").unwrap()).unwrap();
        let err = discount_for("C", &def(CouponKind::Fixed, 100, 0), eur).unwrap_err();
        assert!(err.to_string().contains("USD"), "{err}");
    }

    #[test]
    fn allocation_is_proportional_largest_remainder_ties_by_sku() {
        // 10 over 3 equal lines: 3.33 each; the one unit left goes to the first SKU.
        assert_eq!(allocate(10, &[10, 10, 10]), [4, 3, 3]);
        // 299 over 3998 + 1250: exact shares 227.7 and 71.3 → 228, 71.
        assert_eq!(allocate(299, &[1250, 3998]), [71, 228]);
        // 5 over 1, 3, 3: shares 0.71, 2.14, 2.14; the unit left goes to the largest remainder.
        assert_eq!(allocate(5, &[1, 3, 3]), [1, 2, 2]);
        // 2 over 3, 1, 3: 0.857, 0.286, 0.857: two units left, to the two largest remainders.
        assert_eq!(allocate(2, &[3, 1, 3]), [1, 0, 1]);
        assert_eq!(allocate(0, &[5, 5]), [0, 0]);
        assert_eq!(allocate(7, &[0, 10]), [0, 7]);
        for (discount, totals) in [
            (1249_i64, vec![1250_i64]),
            (17, vec![3, 5, 7, 11]),
            (999, vec![1, 1, 1, 998]),
        ] {
            let shares = allocate(discount, &totals);
            assert_eq!(shares.iter().sum::<i64>(), discount);
            assert!(shares.iter().zip(&totals).all(|(s, t)| s <= t && *s >= 0));
        }
    }

    #[test]
    fn definitions_are_checked() {
        assert!(def(CouponKind::Percent, 101, 0).validate().is_err());
        assert!(def(CouponKind::Percent, 0, 0).validate().is_err());
        assert!(def(CouponKind::Fixed, 0, 0).validate().is_err());
        assert!(def(CouponKind::Fixed, 1, -1).validate().is_err());
        let mut window = def(CouponKind::Fixed, 1, 0);
        window.valid_until_ms = 0;
        assert!(window.validate().is_err());
        let mut currency = def(CouponKind::Fixed, 1, 0);
        currency.currency = "usd!".into();
        assert!(currency.validate().is_err());
        assert!(def(CouponKind::Percent, 100, 0).validate().is_ok());
    }
}
