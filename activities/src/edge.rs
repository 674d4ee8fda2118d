//! Reserving stock at the edge: the request that places an order decides its stock itself, before
//! any workflow exists (`ORDERFLOW_RESERVE_AT_EDGE`, for flash sales).
//!
//! Why: in a flash sale most buyers lose. With the default flow every buyer's order is a workflow
//! that learns "sold out" from its own reservation step, so decisions come at the rate the
//! Temporal server starts workflows (tens per second here) while the database could decide
//! thousands. At the edge a loser is answered from one database transaction and never costs a
//! workflow; a winner's workflow then finds its order recorded and its stock held (both steps are
//! idempotent: `record` returns the stored pricing, `reserve` skips lines already reserved), and
//! carries on as any order does: payment, timer, confirm or release.
//!
//! Nothing is lost between the decision and the workflow: the order, its reservation and a start
//! note (`order_starts`) commit together. The edge starts the workflow right after the commit and
//! marks the note; the relay (`orderflow_client::outbox`) starts whatever a crash or an outage
//! left behind. Starting twice starts once (the workflow id is derived from the order id).

use crate::coupons;
use crate::db::{Db, now_ms};
use crate::failure::Classified;
use crate::finish::StepError;
use crate::inventory::{self, InventoryError, ReserveStock};
use crate::orders::{self, OrderError, OrderRow, Pricing, StatusChange, StoredOrder};
use crate::sql;
use orderflow_domain::{OrderInput, OrderStatus, ValidOrder};
use sqlx::Row;

/// What the edge decided for an order.
#[derive(Debug)]
pub enum EdgeDecision {
    /// The stock is held and the start note written: start the workflow.
    Reserved,
    /// Not enough stock (or a SKU the catalog does not sell): the order is recorded `REJECTED`
    /// with this reason, as its workflow would have, and no workflow runs.
    Refused { reason: String },
    /// The same order id was placed before: nothing new is written. `start` says whether its
    /// workflow may need starting (it was reserved, or a crash came before its decision was
    /// recorded); false for an order already rejected, which must stay rejected even if stock has
    /// come back since.
    Repeat { start: bool },
}

/// Records the order priced from the catalog, reserves all its lines or none, and writes its start
/// note, in one transaction; an order that cannot have its stock is recorded `REJECTED` instead.
///
/// Most buyers in a sale lose, so the refusal is the path kept short: the price lookup also reads
/// each line's `available`, and a line already short is refused in one transaction that never
/// touches the contended inventory row. That read is only a hint for refusing (stock seen short
/// at that instant; the conditional update would have failed then too): a line that looks
/// available still goes through the conditional update, which decides.
pub async fn reserve_at_edge(
    db: &Db,
    order: &ValidOrder,
    input: &OrderInput,
) -> Result<EdgeDecision, StepError> {
    // Reads only, outside the write transaction.
    let (pricing, available) = match orders::price_with_stock(db, order).await {
        Ok(priced) => priced,
        Err(OrderError::Db(e)) => return Err(e.into()),
        Err(e) => match orders::load(db, order.order_id.as_str()).await? {
            // Placed before, and the catalog has changed since: the stored order stands.
            Some(stored) => {
                tracing::debug!(order_id = %order.order_id, error = %e, "repeat of an edge order");
                return Ok(decided(&stored));
            }
            None => {
                let reason = format!("{}: {e}", e.code());
                orders::mark_status(db, &rejected(order, &reason)).await?;
                return Ok(EdgeDecision::Refused { reason });
            }
        },
    };
    let short = order
        .lines
        .iter()
        .zip(&available)
        .find(|(line, available)| available.is_none_or(|a| a < i64::from(line.quantity)));
    if let Some((line, available)) = short {
        let err = match available {
            Some(available) => InventoryError::OutOfStock {
                sku: line.sku.to_string(),
                requested: i64::from(line.quantity),
                available: *available,
            },
            None => InventoryError::NotStocked(line.sku.to_string()),
        };
        return refuse(db, order, &pricing, &err).await;
    }

    let note = serde_json::to_string(input).expect("an order input serializes");
    let mut tx = db.begin_write().await?;
    if !orders::insert_order_in(&mut tx, &OrderRow::pending(order, &pricing)).await? {
        tx.rollback().await?;
        return repeat(db, order).await;
    }
    // The note before the reservation, so the contended inventory row is locked for as short a
    // time as in a plain reservation (see `inventory::reserve`).
    sql!(
        "INSERT INTO order_starts (order_id, input, created_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (order_id) DO NOTHING",
    )
    .on(&*tx)
    .bind(order.order_id.as_str())
    .bind(&note)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let req = ReserveStock::for_order(order);
    // The coupon's try in the same transaction, before the contended inventory row (as in
    // `inventory::reserve`): a refused coupon refuses the order and holds no stock.
    if let Some(claim) = &req.coupon
        && let Some(decided) = coupons::try_in(&mut tx, order.order_id.as_str(), claim).await?
    {
        tx.rollback().await?;
        let err =
            InventoryError::CouponUnavailable(coupons::why_unavailable(db, claim, decided).await);
        return refuse(db, order, &pricing, &err).await;
    }
    let Some(short) = inventory::reserve_in(&mut tx, &req, true).await? else {
        tx.commit().await?;
        return Ok(EdgeDecision::Reserved);
    };
    // Someone took the last units between the read and the update: none of this transaction
    // stays, and the order is refused as above.
    tx.rollback().await?;
    let err = inventory::out_of_stock(db, short).await;
    if let InventoryError::Db(e) = err {
        return Err(e.into());
    }
    refuse(db, order, &pricing, &err).await
}

/// Records the priced order as `REJECTED` for `err` (its only status: it was never pending), in
/// one transaction (on PostgreSQL one statement).
async fn refuse(
    db: &Db,
    order: &ValidOrder,
    pricing: &Pricing,
    err: &InventoryError,
) -> Result<EdgeDecision, StepError> {
    let reason = format!("{}: {err}", err.code());
    let row = OrderRow {
        order,
        pricing,
        status: OrderStatus::Rejected,
        reason: Some(&reason),
    };
    if !orders::insert_order(db, &row).await? {
        return repeat(db, order).await;
    }
    Ok(EdgeDecision::Refused { reason })
}

fn rejected(order: &ValidOrder, reason: &str) -> StatusChange {
    StatusChange {
        order_id: order.order_id.to_string(),
        customer_id: order.customer_id.to_string(),
        provider: order.provider.to_string(),
        status: OrderStatus::Rejected,
        reason: Some(reason.to_owned()),
    }
}

/// The order id exists: whether it may need its start. The caller's idempotency key guarantees
/// it is the same order (the HTTP API compares request bodies; the CLI derives the id from the
/// key), so only its status matters here.
async fn repeat(db: &Db, order: &ValidOrder) -> Result<EdgeDecision, StepError> {
    Ok(match orders::load(db, order.order_id.as_str()).await? {
        Some(stored) => decided(&stored),
        None => EdgeDecision::Repeat { start: false },
    })
}

/// A stored order's decision: a refused one stays refused, anything else may need its start.
fn decided(stored: &StoredOrder) -> EdgeDecision {
    EdgeDecision::Repeat {
        start: stored.status != OrderStatus::Rejected.as_str(),
    }
}

/// Start notes not yet marked started, oldest first. A note that does not parse (only a hand edit
/// could make one) is logged and skipped, never allowed to stop the others.
pub async fn pending_starts(db: &Db, limit: i64) -> Result<Vec<OrderInput>, sqlx::Error> {
    let rows = sql!(
        "SELECT order_id, input FROM order_starts WHERE started_at_ms IS NULL
          ORDER BY created_at_ms LIMIT $1",
    )
    .on(db.engine())
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut inputs = Vec::with_capacity(rows.len());
    for row in &rows {
        let order_id: String = row.try_get(0)?;
        let note: sql::Text = row.try_get(1)?;
        match serde_json::from_str(&note.0) {
            Ok(input) => inputs.push(input),
            Err(e) => tracing::error!(%order_id, error = %e, "unreadable start note, skipped"),
        }
    }
    Ok(inputs)
}

/// The order's workflow exists (started by this call or an earlier one).
pub async fn mark_started(db: &Db, order_id: &str) -> Result<(), sqlx::Error> {
    sql!(
        "UPDATE order_starts SET started_at_ms = $2 WHERE order_id = $1 AND started_at_ms IS NULL",
    )
    .on(db.engine())
    .bind(order_id)
    .bind(now_ms())
    .execute(db.writes())
    .await?;
    Ok(())
}
