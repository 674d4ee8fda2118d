//! Stock: reserve (TCC try), confirm (TCC confirm) and release (TCC cancel).
//!
//! Stock only moves through conditional updates — `UPDATE inventory ... WHERE available >= $q` —
//! so two orders racing for the last unit cannot both win, whatever the isolation level. Each
//! movement writes a row to the append-only `inventory_ledger` in the same transaction.
//!
//! Idempotency: a reservation row is keyed by (order, sku) and changes state at most once,
//! `RESERVED` → `CONFIRMED` or `RESERVED` → `RELEASED`, through an `UPDATE ... WHERE state =
//! 'RESERVED'`. A retried activity finds the work done and does nothing.

use crate::coupons::{self, CouponClaim};
use crate::db::{Db, Engine, now_ms};
use crate::failure::{self, Classified};
use crate::sql;
use orderflow_domain::{OrderId, Sku, ValidOrder, ValidOrderLine};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("out of stock: {sku} has {available} available, the order needs {requested}")]
    OutOfStock {
        sku: String,
        requested: i64,
        available: i64,
    },
    #[error("{0} is not stocked")]
    NotStocked(String),
    /// The order's coupon could not be locked in the stock's transaction (see `crate::coupons`).
    #[error("{0}")]
    CouponUnavailable(String),
    #[error("stock for {sku} cannot be set to {total}: {held} units are reserved or sold")]
    BelowCommitted { sku: String, total: i64, held: i64 },
    #[error("stock invariant violated for {sku}: {detail}")]
    Invariant { sku: String, detail: String },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl Classified for InventoryError {
    fn code(&self) -> &'static str {
        match self {
            InventoryError::OutOfStock { .. } | InventoryError::NotStocked(_) => {
                failure::OUT_OF_STOCK
            }
            InventoryError::BelowCommitted { .. } => failure::INVALID_ORDER,
            InventoryError::CouponUnavailable(_) => failure::COUPON_UNAVAILABLE,
            InventoryError::Invariant { .. } => failure::INVARIANT_VIOLATION,
            InventoryError::Db(e) => e.code(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            InventoryError::Db(e) => e.retryable(),
            _ => false,
        }
    }
}

/// What [`reserve`] takes: the order's lines, already validated and sorted by SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveStock {
    pub order_id: OrderId,
    pub lines: Vec<ValidOrderLine>,
    /// The coupon to lock with the stock (TCC try), if the order has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<CouponClaim>,
}

impl ReserveStock {
    /// Everything the order holds: its lines, and its coupon for its customer.
    pub fn for_order(order: &ValidOrder) -> Self {
        ReserveStock {
            order_id: order.order_id.clone(),
            lines: order.lines.clone(),
            coupon: order.coupon_code.as_ref().map(|code| CouponClaim {
                code: code.clone(),
                customer_id: order.customer_id.to_string(),
            }),
        }
    }
}

/// How many reservation rows a confirm or release moved (0 on a repeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockMoved {
    pub lines: u32,
}

/// One inventory row as `orderflow stock show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    pub sku: String,
    pub total: i64,
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

impl StockLevel {
    pub fn is_consistent(&self) -> bool {
        self.available >= 0
            && self.reserved >= 0
            && self.sold >= 0
            && self.available + self.reserved + self.sold == self.total
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delta {
    Reserve,
    Confirm,
    Release,
    /// Refunded units back to sale: sold → available.
    Return,
}

impl Delta {
    fn event(self) -> &'static str {
        match self {
            Delta::Reserve => "RESERVE",
            Delta::Confirm => "CONFIRM",
            Delta::Release => "RELEASE",
            Delta::Return => "RETURN",
        }
    }

    /// (available, reserved, sold) deltas for `q` units.
    fn columns(self, q: i64) -> (i64, i64, i64) {
        match self {
            Delta::Reserve => (-q, q, 0),
            Delta::Confirm => (0, -q, q),
            Delta::Release => (q, -q, 0),
            Delta::Return => (q, 0, -q),
        }
    }
}

async fn ledger(
    tx: &mut Transaction<'static, Any>,
    sku: &str,
    order_id: &str,
    delta: Delta,
    q: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let (available, reserved, sold) = delta.columns(q);
    sql!(
        "INSERT INTO inventory_ledger
            (sku, order_id, event, delta_total, delta_available, delta_reserved, delta_sold, at_ms)
         VALUES ($1, $2, $3, 0, $4, $5, $6, $7)",
    )
    .on(&**tx)
    .bind(sku)
    .bind(order_id)
    .bind(delta.event())
    .bind(available)
    .bind(reserved)
    .bind(sold)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Reserves every line or none. A line already reserved for this order (an earlier attempt of
/// this activity) is skipped, so running it twice reserves once.
///
/// The SKU's inventory row is the contended one in a flash sale: every buyer updates it. The
/// conditional update takes its row lock after the idempotency check and the ledger entry (a
/// table without foreign keys), so the lock is held for the reservation row and the commit only.
/// The reservation row comes after the update on purpose: its foreign key to the inventory row
/// would otherwise take a share lock on that row first, and on PostgreSQL many transactions
/// sharing a lock on one row go through multixacts — it cut the raw reservation rate to a third
/// when tried (bench/NOTES.md).
///
/// The order's coupon, if any, is locked first in the same transaction (TCC try,
/// `coupons::try_in`): refused, nothing of the transaction stays and the order fails
/// `COUPON_UNAVAILABLE`; the coupon row is locked before the inventory rows, as in every
/// transaction that moves both, so they never wait on each other crosswise.
pub async fn reserve(db: &Db, req: &ReserveStock) -> Result<(), InventoryError> {
    let mut tx = db.begin_write().await?;
    if let Some(claim) = &req.coupon
        && let Some(decided) = coupons::try_in(&mut tx, req.order_id.as_str(), claim).await?
    {
        tx.rollback().await?;
        return Err(InventoryError::CouponUnavailable(
            coupons::why_unavailable(db, claim, decided).await,
        ));
    }
    match reserve_in(&mut tx, req, false).await? {
        None => {
            tx.commit().await?;
            Ok(())
        }
        Some(short) => {
            // Nothing of this transaction stays: not this line's ledger entry, not earlier lines.
            tx.rollback().await?;
            Err(out_of_stock(db, short).await)
        }
    }
}

/// A line the conditional update could not reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortLine {
    pub sku: Sku,
    pub requested: i64,
}

/// [`reserve`] inside the caller's transaction (the edge reservation writes the order and its
/// start note in the same one). Returns the first line that could not be reserved; the caller
/// must then roll the transaction back, because earlier lines and the ledger entry are in it.
/// `new_order`: the order row was inserted in this transaction, so it cannot hold a reservation
/// yet and the repeat check is skipped.
pub(crate) async fn reserve_in(
    tx: &mut Transaction<'static, Any>,
    req: &ReserveStock,
    new_order: bool,
) -> Result<Option<ShortLine>, sqlx::Error> {
    let now = now_ms();
    let order_id = req.order_id.as_str();
    for line in &req.lines {
        let sku = line.sku.as_str();
        let q = i64::from(line.quantity);
        if !new_order {
            let existing =
                sql!("SELECT 1 FROM stock_reservations WHERE order_id = $1 AND sku = $2")
                    .on(&**tx)
                    .bind(order_id)
                    .bind(sku)
                    .fetch_optional(&mut **tx)
                    .await?;
            if existing.is_some() {
                continue;
            }
        }
        ledger(tx, sku, order_id, Delta::Reserve, q, now).await?;
        let moved = sql!(
            "UPDATE inventory
                SET available = available - $2, reserved = reserved + $2, updated_at_ms = $3
              WHERE sku = $1 AND available >= $2",
        )
        .on(&**tx)
        .bind(sku)
        .bind(q)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if moved == 0 {
            return Ok(Some(ShortLine {
                sku: line.sku.clone(),
                requested: q,
            }));
        }
        sql!(
            "INSERT INTO stock_reservations (order_id, sku, quantity, state, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, 'RESERVED', $4, $4)",
        ).on(&**tx)
        .bind(order_id)
        .bind(sku)
        .bind(q)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(None)
}

/// The error for a line the conditional update refused, read after the rollback (the decision
/// was the update's; the level is only for the message).
pub(crate) async fn out_of_stock(db: &Db, short: ShortLine) -> InventoryError {
    match level(db, &short.sku).await {
        Ok(Some(level)) => InventoryError::OutOfStock {
            sku: short.sku.to_string(),
            requested: short.requested,
            available: level.available,
        },
        Ok(None) => InventoryError::NotStocked(short.sku.to_string()),
        Err(e) => InventoryError::Db(e),
    }
}

/// Moves the order's `RESERVED` rows to `RELEASED` (reserved → available). Safe on an order that
/// reserved nothing.
pub async fn release(db: &Db, order_id: &OrderId) -> Result<StockMoved, InventoryError> {
    let mut tx = db.begin_write().await?;
    let moved = settle_in(&mut tx, order_id, Delta::Release).await?;
    tx.commit().await?;
    Ok(moved)
}

/// Moves the order's `RESERVED` rows to `CONFIRMED` (reserved → sold) or `RELEASED` (reserved →
/// available), inside the caller's transaction (see `crate::finish`).
pub(crate) async fn settle_in(
    tx: &mut Transaction<'static, Any>,
    order_id: &OrderId,
    delta: Delta,
) -> Result<StockMoved, InventoryError> {
    let (state, inventory_update) = match delta {
        Delta::Confirm => (
            "CONFIRMED",
            sql!(
                "UPDATE inventory SET reserved = reserved - $2, sold = sold + $2, updated_at_ms = $3
                  WHERE sku = $1 AND reserved >= $2"
            ),
        ),
        Delta::Release => (
            "RELEASED",
            sql!(
                "UPDATE inventory SET reserved = reserved - $2, available = available + $2,
                        updated_at_ms = $3
                  WHERE sku = $1 AND reserved >= $2"
            ),
        ),
        Delta::Reserve | Delta::Return => unreachable!("reserve and return have their own paths"),
    };
    let now = now_ms();
    // Claims every line still RESERVED in one statement; the state guard makes this the single
    // point where a reservation can move (a concurrent repeat waits for the row lock, then finds
    // nothing left to claim).
    let claimed = claim_reserved(tx, order_id, state, now).await?;
    if claimed.is_empty() && delta == Delta::Confirm {
        // Selling stock that was given back would sell it twice: refuse, loudly, rather than
        // report a confirm that moved nothing. (A repeat of a confirm finds CONFIRMED rows.)
        let released: Option<(String,)> = sql!(
            "SELECT sku FROM stock_reservations WHERE order_id = $1 AND state = 'RELEASED' LIMIT 1",
        )
        .on(&**tx)
        .bind(order_id.as_str())
        .fetch_optional_as(&mut **tx)
        .await?;
        if let Some((sku,)) = released {
            return Err(InventoryError::Invariant {
                sku,
                detail: format!("{order_id} asks to confirm stock it already released"),
            });
        }
    }
    let mut lines = claimed;
    // Inventory rows are locked in SKU order, whatever order the claim gave, so two orders
    // sharing SKUs never wait on each other in opposite orders.
    lines.sort();
    for (sku, q) in &lines {
        // The ledger entry first: the inventory row is the contended one, locked last.
        ledger(tx, sku, order_id.as_str(), delta, *q, now).await?;
        let moved = inventory_update
            .on(&**tx)
            .bind(sku.as_str())
            .bind(*q)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if moved == 0 {
            return Err(InventoryError::Invariant {
                sku: sku.clone(),
                detail: format!("{q} units reserved by {order_id} are not in `reserved`"),
            });
        }
    }
    let lines = u32::try_from(lines.len()).unwrap_or(u32::MAX);
    Ok(StockMoved { lines })
}

/// Moves the order's `RESERVED` reservation rows to `state` and returns the (sku, quantity) it
/// moved. The state guard makes this the single point where a reservation can move: a concurrent
/// repeat waits for the row locks, then finds nothing left to claim.
async fn claim_reserved(
    tx: &mut Transaction<'static, Any>,
    order_id: &OrderId,
    state: &str,
    now: i64,
) -> Result<Vec<(String, i64)>, InventoryError> {
    if Engine::of(tx) != Engine::MySql {
        return sql!(
            "UPDATE stock_reservations SET state = $2, updated_at_ms = $3
              WHERE order_id = $1 AND state = 'RESERVED'
              RETURNING sku, quantity",
            only: [Sqlite, Postgres]
        )
        .on(&**tx)
        .bind(order_id.as_str())
        .bind(state)
        .bind(now)
        .fetch_all_as(&mut **tx)
        .await
        .map_err(InventoryError::from);
    }
    // MySQL has no UPDATE … RETURNING: lock the rows (a locking read sees the latest committed
    // rows, not the transaction's snapshot), then move exactly those.
    let claimed: Vec<(String, i64)> = sql!(
        "SELECT sku, quantity FROM stock_reservations
          WHERE order_id = $1 AND state = 'RESERVED' FOR UPDATE",
        only: [MySql]
    )
    .on(&**tx)
    .bind(order_id.as_str())
    .fetch_all_as(&mut **tx)
    .await?;
    if claimed.is_empty() {
        return Ok(claimed);
    }
    let moved = sql!(
        "UPDATE stock_reservations SET state = $2, updated_at_ms = $3
          WHERE order_id = $1 AND state = 'RESERVED'"
    )
    .on(&**tx)
    .bind(order_id.as_str())
    .bind(state)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved != claimed.len() as u64 {
        return Err(InventoryError::Invariant {
            sku: claimed[0].0.clone(),
            detail: format!(
                "{order_id}: {moved} reservations moved, {} locked",
                claimed.len()
            ),
        });
    }
    Ok(claimed)
}

/// Sets a SKU's total stock (an operator's recount). Refused if it would drop below what is
/// already reserved or sold. The ledger records the change as deltas so it still sums to the row.
pub async fn set_total(db: &Db, sku: &Sku, total: i64) -> Result<StockLevel, InventoryError> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    sql!(
        "INSERT INTO inventory (sku, total, available, reserved, sold, updated_at_ms)
         VALUES ($1, 0, 0, 0, 0, $2) ON CONFLICT (sku) DO NOTHING",
    )
    .on(&*tx)
    .bind(sku.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    // Touch the row first: on PostgreSQL this takes its row lock, so the ledger deltas computed
    // next and the update after them see the same numbers (SQLite already holds the write lock).
    sql!("UPDATE inventory SET updated_at_ms = $2 WHERE sku = $1")
        .on(&*tx)
        .bind(sku.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let logged = sql!(
        "INSERT INTO inventory_ledger
            (sku, order_id, event, delta_total, delta_available, delta_reserved, delta_sold, at_ms)
         SELECT sku, NULL, 'STOCK_SET', $2 - total, $2 - total, 0, 0, $3
           FROM inventory WHERE sku = $1 AND $2 >= reserved + sold",
    )
    .on(&*tx)
    .bind(sku.as_str())
    .bind(total)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if logged == 0 {
        tx.rollback().await?;
        let held = level(db, sku)
            .await?
            .map(|l| l.reserved + l.sold)
            .unwrap_or_default();
        return Err(InventoryError::BelowCommitted {
            sku: sku.to_string(),
            total,
            held,
        });
    }
    sql!(
        "UPDATE inventory SET available = $2 - reserved - sold, total = $2, updated_at_ms = $3
          WHERE sku = $1 AND $2 >= reserved + sold",
    )
    .on(&*tx)
    .bind(sku.as_str())
    .bind(total)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    level(db, sku)
        .await?
        .ok_or_else(|| InventoryError::NotStocked(sku.to_string()))
}

pub async fn level(db: &Db, sku: &Sku) -> Result<Option<StockLevel>, sqlx::Error> {
    let row = sql!("SELECT sku, total, available, reserved, sold FROM inventory WHERE sku = $1")
        .on(db.engine())
        .bind(sku.as_str())
        .fetch_optional(db.pool())
        .await?;
    row.map(|r| stock_level(&r)).transpose()
}

pub async fn levels(db: &Db) -> Result<Vec<StockLevel>, sqlx::Error> {
    let rows = sql!("SELECT sku, total, available, reserved, sold FROM inventory ORDER BY sku")
        .on(db.engine())
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(stock_level).collect()
}

fn stock_level(r: &sqlx::any::AnyRow) -> Result<StockLevel, sqlx::Error> {
    Ok(StockLevel {
        sku: r.try_get(0)?,
        total: r.try_get(1)?,
        available: r.try_get(2)?,
        reserved: r.try_get(3)?,
        sold: r.try_get(4)?,
    })
}

/// Returns `quantity` sold units of the order's `sku` to sale (an after-sale refund), inside the
/// caller's transaction: counted against the confirmed reservation first (a guarded update, so no
/// unit comes back twice), then the ledger entry and the inventory row (sold → available).
pub(crate) async fn return_in(
    tx: &mut Transaction<'static, Any>,
    order_id: &OrderId,
    sku: &str,
    quantity: i64,
) -> Result<(), InventoryError> {
    let now = now_ms();
    let counted = sql!(
        "UPDATE stock_reservations SET returned = returned + $3, updated_at_ms = $4
          WHERE order_id = $1 AND sku = $2 AND state = 'CONFIRMED' AND returned + $3 <= quantity"
    )
    .on(&**tx)
    .bind(order_id.as_str())
    .bind(sku)
    .bind(quantity)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if counted == 0 {
        return Err(InventoryError::Invariant {
            sku: sku.to_owned(),
            detail: format!("{order_id} has no {quantity} sold units of it left to return"),
        });
    }
    ledger(tx, sku, order_id.as_str(), Delta::Return, quantity, now).await?;
    let moved = sql!(
        "UPDATE inventory SET sold = sold - $2, available = available + $2, updated_at_ms = $3
          WHERE sku = $1 AND sold >= $2"
    )
    .on(&**tx)
    .bind(sku)
    .bind(quantity)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved == 0 {
        return Err(InventoryError::Invariant {
            sku: sku.to_owned(),
            detail: format!("{quantity} units sold to {order_id} are not in `sold`"),
        });
    }
    Ok(())
}

/// Checks the inventory invariants against the ledger and the reservations:
/// every row adds up, the ledger sums to every row, and `reserved`/`sold` equal the quantities of
/// the `RESERVED`/`CONFIRMED` reservations; and the coupons' invariants (`coupons::audit`), which
/// the order saga keeps beside the stock. Returns one line per problem (empty when all is well).
pub async fn audit(db: &Db) -> Result<Vec<String>, sqlx::Error> {
    let mut problems = coupons::audit(db).await?;
    for level in levels(db).await? {
        if !level.is_consistent() {
            problems.push(format!("{}: row does not add up: {level:?}", level.sku));
        }
        let sums = sql!(
            "SELECT CAST(COALESCE(SUM(delta_total), 0) AS BIGINT),
                    CAST(COALESCE(SUM(delta_available), 0) AS BIGINT),
                    CAST(COALESCE(SUM(delta_reserved), 0) AS BIGINT),
                    CAST(COALESCE(SUM(delta_sold), 0) AS BIGINT)
               FROM inventory_ledger WHERE sku = $1",
        )
        .on(db.engine())
        .bind(&level.sku)
        .fetch_one(db.pool())
        .await?;
        let ledger: (i64, i64, i64, i64) = (
            sums.try_get(0)?,
            sums.try_get(1)?,
            sums.try_get(2)?,
            sums.try_get(3)?,
        );
        if ledger != (level.total, level.available, level.reserved, level.sold) {
            problems.push(format!(
                "{}: ledger sums to {ledger:?}, row is {:?}",
                level.sku,
                (level.total, level.available, level.reserved, level.sold)
            ));
        }
        let held = sql!(
            "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'RESERVED' THEN quantity ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN state = 'CONFIRMED' THEN quantity - returned ELSE 0 END), 0) AS BIGINT)
               FROM stock_reservations WHERE sku = $1",
        ).on(db.engine())
        .bind(&level.sku)
        .fetch_one(db.pool())
        .await?;
        let (reserved, sold): (i64, i64) = (held.try_get(0)?, held.try_get(1)?);
        if (reserved, sold) != (level.reserved, level.sold) {
            problems.push(format!(
                "{}: reservations hold reserved={reserved} sold={sold}, row says reserved={} sold={}",
                level.sku, level.reserved, level.sold
            ));
        }
    }
    Ok(problems)
}
