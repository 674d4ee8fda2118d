//! Orders: the catalog that prices them, the order rows, and the status log.

use crate::coupons::{self, CouponError};
use crate::db::{Db, Engine, now_ms};
use crate::failure::{self, Classified};
use crate::outbox;
use crate::providers::Providers;
use crate::sql;
use crate::sql::Sql;
use orderflow_domain::events::{Amount, EventLine, OrderEventData};
use orderflow_domain::{Currency, Money, MoneyError, OrderStatus, Sku, ValidOrder};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("unknown SKU {0}")]
    UnknownSku(String),
    #[error("payment provider {0:?} is not available on this worker")]
    UnknownProvider(String),
    #[error("cannot price the order: {0}")]
    Pricing(#[from] MoneyError),
    #[error(transparent)]
    Coupon(#[from] CouponError),
    #[error("order {0} was recorded with different contents; an order id is used once")]
    Conflict(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl Classified for OrderError {
    fn code(&self) -> &'static str {
        match self {
            OrderError::UnknownSku(_) => failure::UNKNOWN_SKU,
            OrderError::UnknownProvider(_) => failure::UNKNOWN_PROVIDER,
            OrderError::Pricing(_) => failure::PRICING,
            OrderError::Conflict(_) => failure::INVALID_ORDER,
            OrderError::Coupon(e) => e.code(),
            OrderError::Db(e) => e.code(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            OrderError::Db(e) => e.retryable(),
            OrderError::Coupon(e) => e.retryable(),
            _ => false,
        }
    }
}

/// The order as priced from the catalog when it was first recorded. `total` is what the
/// customer pays: the subtotal less the coupon's discount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedOrder {
    pub total: Money,
    pub lines: Vec<PricedLine>,
    /// How long the customer has to pay: the order's own value or the worker's default. Coming
    /// from an activity, it is recorded in history, so replay sees the same deadline even if the
    /// worker's configuration changed since.
    pub payment_timeout_secs: u64,
    /// The lines' sum before the discount. Defaults (histories recorded before coupons): absent,
    /// and then equal to `total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtotal_minor: Option<i64>,
    #[serde(default)]
    pub discount_minor: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
    /// This line's share of the order's discount (see `coupons::allocate`).
    #[serde(default)]
    pub discount_minor: i64,
}

/// An order priced from the catalog and its coupon: lines (with their discount shares), the
/// subtotal, the discount and the total to pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pricing {
    pub lines: Vec<PricedLine>,
    pub subtotal: Money,
    pub discount_minor: i64,
    pub total: Money,
}

impl Pricing {
    fn priced(self, order: &ValidOrder, timeout: u64) -> PricedOrder {
        PricedOrder {
            total: self.total,
            lines: self.lines,
            payment_timeout_secs: timeout,
            subtotal_minor: Some(self.subtotal.minor()),
            discount_minor: self.discount_minor,
            coupon_code: order.coupon_code.clone(),
        }
    }
}

/// Input of `mark_order_status`. Strings, not domain ids, because a rejected order may have an
/// invalid customer id that we still want on record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub order_id: String,
    pub customer_id: String,
    pub provider: String,
    pub status: OrderStatus,
    pub reason: Option<String>,
}

/// A catalog entry (`orderflow catalog seed`, `stock show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogItem {
    pub sku: Sku,
    pub name: String,
    pub price: Money,
}

pub async fn upsert_catalog_item(db: &Db, item: &CatalogItem) -> Result<(), sqlx::Error> {
    sql!(
        "INSERT INTO catalog (sku, name, price_minor, currency, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (sku) DO UPDATE SET name = excluded.name, price_minor = excluded.price_minor,
             currency = excluded.currency, updated_at_ms = excluded.updated_at_ms",
        // VALUES(col) is deprecated in MySQL 8.0.20 but still there; MariaDB has no `AS new` alias.
        mysql: "INSERT INTO catalog (sku, name, price_minor, currency, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON DUPLICATE KEY UPDATE name = VALUES(name), price_minor = VALUES(price_minor),
             currency = VALUES(currency), updated_at_ms = VALUES(updated_at_ms)",
    )
    .on(db.engine())
    .bind(item.sku.as_str())
    .bind(&item.name)
    .bind(item.price.minor())
    .bind(item.price.currency().code())
    .bind(now_ms())
    .execute(db.writes())
    .await?;
    Ok(())
}

pub async fn catalog(db: &Db) -> Result<Vec<CatalogItem>, OrderError> {
    let rows = sql!("SELECT sku, name, price_minor, currency FROM catalog ORDER BY sku")
        .on(db.engine())
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| {
            let sku: String = r.try_get(0)?;
            let currency: String = r.try_get(3)?;
            Ok(CatalogItem {
                sku: Sku::parse(sku.as_str()).map_err(|_| OrderError::UnknownSku(sku.clone()))?,
                name: r.try_get(1)?,
                price: Money::new(r.try_get(2)?, Currency::parse(&currency)?)?,
            })
        })
        .collect()
}

/// An order must name a provider this worker can pay with; checked before anything is recorded
/// or reserved.
pub fn require_provider(providers: &Providers, order: &ValidOrder) -> Result<(), OrderError> {
    match providers.get(order.provider.as_str()) {
        Ok(_) => Ok(()),
        Err(_) => Err(OrderError::UnknownProvider(order.provider.to_string())),
    }
}

/// Prices the order from the catalog and records it as `PENDING`. On a repeat (activity retry, or
/// the same order id started again) it returns the pricing stored the first time, so the amount
/// never changes under a running order even if the catalog does.
pub async fn record(
    db: &Db,
    order: &ValidOrder,
    default_timeout_secs: u64,
) -> Result<PricedOrder, OrderError> {
    let timeout = order.payment_timeout_secs.unwrap_or(default_timeout_secs);
    // New orders are the common case: price first, and look for a stored pricing only when the
    // insert below finds the order already recorded (or pricing fails: the catalog may have
    // changed since the first attempt).
    let pricing = match price(db, order).await {
        Ok(priced) => priced,
        Err(e) => {
            return match stored_pricing(db, order, timeout).await? {
                Some(stored) => Ok(stored),
                None => Err(e),
            };
        }
    };

    let mut tx = db.begin_write().await?;
    if !insert_order_in(&mut tx, &OrderRow::pending(order, &pricing)).await? {
        // Lost a race with another attempt: its pricing is the order's pricing.
        tx.rollback().await?;
        return stored_pricing(db, order, timeout)
            .await?
            .ok_or_else(|| OrderError::Conflict(order.order_id.to_string()));
    }
    tx.commit().await?;
    Ok(pricing.priced(order, timeout))
}

/// A priced order as first written: its row, its lines and its first status (`PENDING` for an
/// order a workflow will run; `REJECTED` for one the edge refuses, which was never pending).
pub(crate) struct OrderRow<'a> {
    pub order: &'a ValidOrder,
    pub pricing: &'a Pricing,
    pub status: OrderStatus,
    pub reason: Option<&'a str>,
}

impl<'a> OrderRow<'a> {
    /// The order's first event (sequence 1): `order.created`, or `order.rejected` for an order
    /// refused as it was placed.
    fn first_event(&self) -> OrderEventData {
        OrderEventData {
            order_id: self.order.order_id.to_string(),
            status: self.status,
            customer_id: self.order.customer_id.to_string(),
            provider: self.order.provider.to_string(),
            amount: Some(Amount {
                minor: self.pricing.total.minor(),
                currency: self.pricing.total.currency().code().to_owned(),
            }),
            reason: self.reason.map(str::to_owned),
            lines: Some(
                self.pricing
                    .lines
                    .iter()
                    .map(|l| EventLine {
                        sku: l.sku.clone(),
                        quantity: l.quantity,
                        unit_price_minor: l.unit_price_minor,
                        line_total_minor: l.line_total_minor,
                    })
                    .collect(),
            ),
            payment: None,
        }
    }

    /// An order its workflow will run: first status `PENDING`.
    pub(crate) fn pending(order: &'a ValidOrder, pricing: &'a Pricing) -> Self {
        OrderRow {
            order,
            pricing,
            status: OrderStatus::Pending,
            reason: None,
        }
    }
}

/// Inserts the order, its lines and its first status entry, unless a row for this order id exists
/// (then nothing is written and it returns false).
///
/// On PostgreSQL the three go in as one statement (data-modifying CTEs): one round trip instead
/// of three, on a path every order takes and every refused buyer of a flash sale too. SQLite has
/// no such statements; there it is three inserts in the transaction.
pub(crate) async fn insert_order_in(
    tx: &mut Transaction<'static, Any>,
    row: &OrderRow<'_>,
) -> Result<bool, sqlx::Error> {
    let OrderRow {
        order,
        pricing,
        status,
        reason,
    } = *row;
    let (lines, total) = (&pricing.lines, pricing.total);
    let now = now_ms();
    if tx.backend_name() == "PostgreSQL" {
        return insert_order_postgres(&mut **tx, row, now).await;
    }
    let inserted = sql!(
        "INSERT INTO orders (order_id, customer_id, provider, status, reason, amount_minor,
                             currency, created_at_ms, updated_at_ms, event_seq, coupon_code,
                             subtotal_minor, discount_minor)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1, $9, $10, $11)
         ON CONFLICT (order_id) DO NOTHING",
    )
    .on(&**tx)
    .bind(order.order_id.as_str())
    .bind(order.customer_id.as_str())
    .bind(order.provider.as_str())
    .bind(status.as_str())
    .bind(reason)
    .bind(total.minor())
    .bind(total.currency().code())
    .bind(now)
    .bind(order.coupon_code.as_deref())
    .bind(pricing.subtotal.minor())
    .bind(pricing.discount_minor)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    for line in lines {
        sql!(
            "INSERT INTO order_lines (order_id, sku, quantity, unit_price_minor, line_total_minor,
                                      currency, discount_minor)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .on(&**tx)
        .bind(order.order_id.as_str())
        .bind(&line.sku)
        .bind(line.quantity)
        .bind(line.unit_price_minor)
        .bind(line.line_total_minor)
        .bind(total.currency().code())
        .bind(line.discount_minor)
        .execute(&mut **tx)
        .await?;
    }
    log_status(tx, order.order_id.as_str(), status, reason, now).await?;
    outbox::first_in(tx, &row.first_event(), now).await?;
    Ok(true)
}

/// [`insert_order_in`] as a transaction of its own. On PostgreSQL that is the one statement by
/// itself — a statement is atomic — two round trips fewer than inside `BEGIN`/`COMMIT`, which is
/// what a refused buyer in a flash sale costs (`edge::refuse`).
pub(crate) async fn insert_order(db: &Db, row: &OrderRow<'_>) -> Result<bool, sqlx::Error> {
    if db.engine() == Engine::Postgres {
        return insert_order_postgres(db.writes(), row, now_ms()).await;
    }
    let mut tx = db.begin_write().await?;
    let inserted = insert_order_in(&mut tx, row).await?;
    if inserted {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(inserted)
}

/// The same three inserts as one PostgreSQL statement. The lines and the status entry are
/// inserted only if the order row was (`FROM o`), so a repeat writes nothing and returns false.
async fn insert_order_postgres<'e, E>(
    executor: E,
    row: &OrderRow<'_>,
    now: i64,
) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let (order, lines, total) = (row.order, &row.pricing.lines, row.pricing.total);
    // $1..$8 are the order's, $9..$11 its first event's, $12..$14 its coupon; each line adds
    // five ($15.. in groups).
    let values: Vec<String> = (0..lines.len())
        .map(|i| {
            let n = 15 + 5 * i;
            format!(
                "(${}, ${}::BIGINT, ${}::BIGINT, ${}::BIGINT, ${}::BIGINT)",
                n,
                n + 1,
                n + 2,
                n + 3,
                n + 4
            )
        })
        .collect();
    let sql = format!(
        "WITH o AS (
            INSERT INTO orders (order_id, customer_id, provider, status, reason, amount_minor,
                                currency, created_at_ms, updated_at_ms, event_seq, coupon_code,
                                subtotal_minor, discount_minor)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1, $12, $13::BIGINT, $14::BIGINT)
            ON CONFLICT (order_id) DO NOTHING
            RETURNING order_id
         ), e AS (
            INSERT INTO outbox (event_id, order_id, sequence, type, data, created_at_ms)
            SELECT $9, o.order_id, 1, $10, $11, $8 FROM o
         ), l AS (
            INSERT INTO order_lines (order_id, sku, quantity, unit_price_minor, line_total_minor,
                                     currency, discount_minor)
            SELECT o.order_id, v.sku, v.quantity, v.unit_price, v.line_total, $7, v.discount
              FROM o, (VALUES {}) AS v (sku, quantity, unit_price, line_total, discount)
         ), s AS (
            INSERT INTO order_status_log (order_id, status, reason, at_ms)
            SELECT o.order_id, $4, $5, $8 FROM o
         )
         SELECT CAST(COUNT(*) AS BIGINT) FROM o",
        values.join(", ")
    );
    let currency = total.currency();
    let mut query = sqlx::query(&sql)
        .bind(order.order_id.as_str())
        .bind(order.customer_id.as_str())
        .bind(order.provider.as_str())
        .bind(row.status.as_str())
        .bind(row.reason)
        .bind(total.minor())
        .bind(currency.code())
        .bind(now);
    let (event_id, event_type, data) = outbox::first_event_json(&row.first_event());
    query = query
        .bind(event_id)
        .bind(event_type)
        .bind(data)
        .bind(order.coupon_code.as_deref())
        .bind(row.pricing.subtotal.minor())
        .bind(row.pricing.discount_minor);
    for line in lines {
        query = query
            .bind(&line.sku)
            .bind(line.quantity)
            .bind(line.unit_price_minor)
            .bind(line.line_total_minor)
            .bind(line.discount_minor);
    }
    let inserted: i64 = query.fetch_one(executor).await?.try_get(0)?;
    Ok(inserted == 1)
}

/// The order priced from the catalog and its coupon.
async fn price(db: &Db, order: &ValidOrder) -> Result<Pricing, OrderError> {
    let (lines, subtotal, _) = price_from(
        db,
        order,
        sql!("SELECT price_minor, currency, CAST(NULL AS BIGINT) FROM catalog WHERE sku = $1"),
    )
    .await?;
    apply_coupon(db, order, lines, subtotal).await
}

/// The coupon's discount on the catalog's prices: what cannot change while the order runs is
/// checked here (the code exists, its currency, the minimum spend); the try checks the rest as it
/// locks the code. No coupon: no statement, a zero discount.
pub(crate) async fn apply_coupon(
    db: &Db,
    order: &ValidOrder,
    mut lines: Vec<PricedLine>,
    subtotal: Money,
) -> Result<Pricing, OrderError> {
    let Some(code) = order.coupon_code.as_deref() else {
        return Ok(Pricing {
            lines,
            subtotal,
            discount_minor: 0,
            total: subtotal,
        });
    };
    let def = coupons::definition_of_code(db, code)
        .await?
        .ok_or_else(|| CouponError::Unavailable(format!("unknown coupon code {code}")))?;
    let discount = coupons::discount_for(code, &def, subtotal)?;
    let totals: Vec<i64> = lines.iter().map(|l| l.line_total_minor).collect();
    for (line, share) in lines.iter_mut().zip(coupons::allocate(discount, &totals)) {
        line.discount_minor = share;
    }
    let total = Money::new(subtotal.minor() - discount, subtotal.currency())?;
    Ok(Pricing {
        lines,
        subtotal,
        discount_minor: discount,
        total,
    })
}

/// [`price`], and each line's `available` stock as read in the same statement (`None`: the SKU has
/// no inventory row). Only a hint: the conditional update decides; the edge uses it to refuse a
/// sold-out order without touching the contended row.
pub(crate) async fn price_with_stock(
    db: &Db,
    order: &ValidOrder,
) -> Result<(Pricing, Vec<Option<i64>>), OrderError> {
    let (lines, subtotal, available) = price_from(
        db,
        order,
        sql!(
            "SELECT c.price_minor, c.currency, i.available
               FROM catalog c LEFT JOIN inventory i ON i.sku = c.sku WHERE c.sku = $1"
        ),
    )
    .await?;
    Ok((apply_coupon(db, order, lines, subtotal).await?, available))
}

/// Prices each line with `sql` (price, currency, a third column passed through), one row per SKU.
async fn price_from(
    db: &Db,
    order: &ValidOrder,
    sql: &'static Sql,
) -> Result<(Vec<PricedLine>, Money, Vec<Option<i64>>), OrderError> {
    let mut lines = Vec::with_capacity(order.lines.len());
    let mut extra = Vec::with_capacity(order.lines.len());
    let mut total: Option<Money> = None;
    for line in &order.lines {
        let row = sql
            .on(db)
            .bind(line.sku.as_str())
            .fetch_optional(db.pool())
            .await?
            .ok_or_else(|| OrderError::UnknownSku(line.sku.to_string()))?;
        let currency: String = row.try_get(1)?;
        let unit = Money::new(row.try_get(0)?, Currency::parse(&currency)?)?;
        let line_total = unit.checked_mul(line.quantity)?;
        total = Some(match total {
            None => line_total,
            Some(t) => t.checked_add(line_total)?,
        });
        lines.push(PricedLine {
            sku: line.sku.to_string(),
            quantity: i64::from(line.quantity),
            unit_price_minor: unit.minor(),
            line_total_minor: line_total.minor(),
            discount_minor: 0,
        });
        extra.push(row.try_get(2)?);
    }
    // validate() guarantees at least one line.
    let total = total.ok_or_else(|| OrderError::Conflict(order.order_id.to_string()))?;
    Ok((lines, total, extra))
}

async fn stored_pricing(
    db: &Db,
    order: &ValidOrder,
    timeout: u64,
) -> Result<Option<PricedOrder>, OrderError> {
    let Some(head) = sql!(
        "SELECT customer_id, amount_minor, currency, coupon_code, subtotal_minor, discount_minor
           FROM orders WHERE order_id = $1"
    )
    .on(db.engine())
    .bind(order.order_id.as_str())
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let customer: String = head.try_get(0)?;
    let amount: Option<i64> = head.try_get(1)?;
    let currency: Option<String> = head.try_get(2)?;
    let coupon_code: Option<String> = head.try_get(3)?;
    let subtotal_minor: Option<i64> = head.try_get(4)?;
    let discount_minor: i64 = head.try_get(5)?;
    let (Some(amount), Some(currency)) = (amount, currency) else {
        // A row without an amount is a rejected order recorded by mark_order_status; reusing its
        // id for a new order is a conflict.
        return Err(OrderError::Conflict(order.order_id.to_string()));
    };
    let rows = sql!(
        "SELECT sku, quantity, unit_price_minor, line_total_minor, discount_minor FROM order_lines
          WHERE order_id = $1 ORDER BY sku",
    )
    .on(db.engine())
    .bind(order.order_id.as_str())
    .fetch_all(db.pool())
    .await?;
    let lines = rows
        .iter()
        .map(|r| {
            Ok(PricedLine {
                sku: r.try_get(0)?,
                quantity: r.try_get(1)?,
                unit_price_minor: r.try_get(2)?,
                line_total_minor: r.try_get(3)?,
                discount_minor: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let same_lines = lines.len() == order.lines.len()
        && lines.iter().zip(&order.lines).all(|(stored, asked)| {
            stored.sku == asked.sku.as_str() && stored.quantity == i64::from(asked.quantity)
        });
    if customer != order.customer_id.as_str() || !same_lines || coupon_code != order.coupon_code {
        return Err(OrderError::Conflict(order.order_id.to_string()));
    }
    Ok(Some(PricedOrder {
        total: Money::new(amount, Currency::parse(&currency)?)?,
        lines,
        payment_timeout_secs: timeout,
        subtotal_minor,
        discount_minor,
        coupon_code,
    }))
}

/// Sets the order's status and logs the transition once. Creates a minimal row for orders that
/// were rejected before they could be recorded. Returns whether this call recorded the
/// transition (false on a repeat).
pub async fn mark_status(db: &Db, change: &StatusChange) -> Result<bool, OrderError> {
    let mut tx = db.begin_write().await?;
    let logged = mark_status_in(&mut tx, change).await?;
    tx.commit().await?;
    Ok(logged)
}

/// [`mark_status`] inside the caller's transaction (see `crate::finish`).
pub(crate) async fn mark_status_in(
    tx: &mut Transaction<'static, Any>,
    change: &StatusChange,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let customer: String = change.customer_id.chars().take(64).collect();
    sql!(
        "INSERT INTO orders (order_id, customer_id, provider, status, reason, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (order_id) DO UPDATE
            SET status = excluded.status, reason = excluded.reason, updated_at_ms = excluded.updated_at_ms
          WHERE orders.status <> excluded.status",
        // MySQL has no WHERE on an upsert: each column keeps its value unless the status changes.
        // Assignments run left to right and see the columns already assigned, so status is last.
        mysql: "INSERT INTO orders (order_id, customer_id, provider, status, reason, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON DUPLICATE KEY UPDATE
            reason = IF(status <> VALUES(status), VALUES(reason), reason),
            updated_at_ms = IF(status <> VALUES(status), VALUES(updated_at_ms), updated_at_ms),
            status = VALUES(status)",
    ).on(&**tx)
    .bind(&change.order_id)
    .bind(&customer)
    .bind(&change.provider)
    .bind(change.status.as_str())
    .bind(change.reason.as_deref())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let logged = log_status(
        tx,
        &change.order_id,
        change.status,
        change.reason.as_deref(),
        now,
    )
    .await?;
    if logged {
        outbox::status_in(tx, &change.order_id, change.status).await?;
    }
    Ok(logged)
}

/// An after-sale refund's status change (`PAID`/`PARTIALLY_REFUNDED` → `PARTIALLY_REFUNDED` or
/// `REFUNDED`), inside the refund's transaction: guarded by the statuses it may leave, logged and
/// announced the first time the order reaches it.
pub(crate) async fn mark_after_sale_in(
    tx: &mut Transaction<'static, Any>,
    order_id: &str,
    status: OrderStatus,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sql!(
        "UPDATE orders SET status = $2, reason = $3, updated_at_ms = $4
          WHERE order_id = $1 AND status IN ('PAID', 'PARTIALLY_REFUNDED')"
    )
    .on(&**tx)
    .bind(order_id)
    .bind(status.as_str())
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if log_status(tx, order_id, status, Some(reason), now).await? {
        outbox::status_in(tx, order_id, status).await?;
    }
    Ok(())
}

/// When the order was recorded and when its payment window ends, for latency metrics.
pub struct Timing {
    pub created_at_ms: i64,
    pub deadline_ms: Option<i64>,
}

pub async fn timing(db: &Db, order_id: &str) -> Result<Timing, sqlx::Error> {
    let row = sql!(
        "SELECT o.created_at_ms, p.deadline_ms FROM orders o
           LEFT JOIN payments p ON p.order_id = o.order_id
          WHERE o.order_id = $1",
    )
    .on(db.engine())
    .bind(order_id)
    .fetch_one(db.pool())
    .await?;
    Ok(Timing {
        created_at_ms: row.try_get(0)?,
        deadline_ms: row.try_get(1)?,
    })
}

async fn log_status(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    order_id: &str,
    status: OrderStatus,
    reason: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let inserted = sql!(
        "INSERT INTO order_status_log (order_id, status, reason, at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (order_id, status) DO NOTHING",
        key: "order_status_log_order_status",
    )
    .on(&**tx)
    .bind(order_id)
    .bind(status.as_str())
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// An order as stored, for `orderflow order status` once its workflow has finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOrder {
    pub order_id: String,
    pub customer_id: String,
    pub provider: String,
    pub status: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub reason: Option<String>,
    pub status_log: Vec<String>,
    #[serde(default)]
    pub subtotal_minor: Option<i64>,
    #[serde(default)]
    pub discount_minor: i64,
    #[serde(default)]
    pub coupon_code: Option<String>,
}

pub async fn load(db: &Db, order_id: &str) -> Result<Option<StoredOrder>, sqlx::Error> {
    let Some(row) = sql!(
        "SELECT order_id, customer_id, provider, status, amount_minor, currency, reason,
                subtotal_minor, discount_minor, coupon_code
           FROM orders WHERE order_id = $1",
    )
    .on(db.engine())
    .bind(order_id)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let log = sql!("SELECT status FROM order_status_log WHERE order_id = $1 ORDER BY id")
        .on(db.engine())
        .bind(order_id)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Some(StoredOrder {
        order_id: row.try_get(0)?,
        customer_id: row.try_get(1)?,
        provider: row.try_get(2)?,
        status: row.try_get(3)?,
        amount_minor: row.try_get(4)?,
        currency: row.try_get(5)?,
        reason: row.try_get::<Option<sql::Text>, _>(6)?.map(String::from),
        status_log: log,
        subtotal_minor: row.try_get(7)?,
        discount_minor: row.try_get(8)?,
        coupon_code: row.try_get(9)?,
    }))
}
