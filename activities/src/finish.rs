//! The last step of an order in one transaction: its payment recorded as paid (paid orders), its
//! reserved stock confirmed (sold) or released, and its final status with its log entry. Also the
//! one transaction that holds a wrongly paid order for review ([`hold_for_review`]).
//!
//! These rows must change together — an order `PAID` whose stock is still only reserved, or
//! `CLOSED` with its stock still held, is a state nobody should ever read — and one transaction
//! is also one commit instead of three, on the path whose latency customers and the close
//! deadline feel. Each part keeps its own guard (confirm refuses released stock and a closed
//! payment; a repeat finds everything in place and changes nothing), so the whole step is
//! idempotent like the steps it replaces.

use crate::coupons::{self, CouponError};
use crate::db::Db;
use crate::failure::Classified;
use crate::inventory::{self, Delta, InventoryError, StockMoved};
use crate::orders::{self, OrderError, StatusChange};
use crate::payments::{self, PaymentError, PaymentRef, ReceivedPayment};
use crate::providers::{CloseResult, Providers};
use orderflow_domain::OrderId;
use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

/// What happens to the order's reserved stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StockOutcome {
    /// Sold: reserved → sold.
    Confirm,
    /// Given back: reserved → available (safe when nothing was reserved).
    Release,
}

/// Input of `finish_order`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishOrder {
    pub order_id: OrderId,
    pub stock: StockOutcome,
    /// The payment to record as paid, for an order that ends `PAID`.
    pub paid: Option<ReceivedPayment>,
    /// The final status (and reason) to record.
    pub change: StatusChange,
}

/// An error of a step made of several parts (`finish_order`, `close_order`, `open_order`): the
/// failing part's own error, so its code and whether it is worth retrying are that part's.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error(transparent)]
    Coupon(#[from] CouponError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl Classified for StepError {
    fn code(&self) -> &'static str {
        match self {
            StepError::Order(e) => e.code(),
            StepError::Inventory(e) => e.code(),
            StepError::Payment(e) => e.code(),
            StepError::Coupon(e) => e.code(),
            StepError::Db(e) => e.code(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            StepError::Order(e) => e.retryable(),
            StepError::Inventory(e) => e.retryable(),
            StepError::Payment(e) => e.retryable(),
            StepError::Coupon(e) => e.retryable(),
            StepError::Db(e) => e.retryable(),
        }
    }
}

/// What [`finish`] did: the stock lines it moved, and whether it recorded the status (false on a
/// repeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub stock: StockMoved,
    pub status_recorded: bool,
}

pub async fn finish(db: &Db, req: &FinishOrder) -> Result<Finished, StepError> {
    let mut tx = db.begin_write().await?;
    let finished = finish_in(&mut tx, req).await?;
    tx.commit().await?;
    Ok(finished)
}

async fn finish_in(
    tx: &mut Transaction<'static, Any>,
    req: &FinishOrder,
) -> Result<Finished, StepError> {
    if let Some(paid) = &req.paid {
        payments::confirm_in(tx, paid).await?;
    }
    let delta = match req.stock {
        StockOutcome::Confirm => Delta::Confirm,
        StockOutcome::Release => Delta::Release,
    };
    let status_recorded = orders::mark_status_in(tx, &req.change).await?;
    // The coupon with the stock (TCC confirm or cancel), before the inventory rows as in the try.
    match req.stock {
        StockOutcome::Confirm => coupons::confirm_in(tx, req.order_id.as_str()).await?,
        StockOutcome::Release => coupons::cancel_in(tx, req.order_id.as_str()).await?,
    }
    // Last: the SKU's inventory row is the one other orders wait for (see `inventory::reserve`).
    let stock = inventory::settle_in(tx, &req.order_id, delta).await?;
    Ok(Finished {
        stock,
        status_recorded,
    })
}

/// Input of `hold_for_review`: the payment as the provider reported it, and the `NEEDS_REVIEW`
/// status (with its reason) to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldForReview {
    pub paid: ReceivedPayment,
    pub change: StatusChange,
}

/// A payment that does not match its order: the payment recorded `MISMATCHED` with what was paid,
/// and the order `NEEDS_REVIEW`, in one transaction, so an order never shows review without the
/// payment that needs it. The stock stays reserved until an operator decides. Safe to run twice:
/// the payment moves only from `PENDING`, and the status log is unique. Returns whether it
/// recorded the status (false on a repeat).
pub async fn hold_for_review(db: &Db, req: &HoldForReview) -> Result<bool, StepError> {
    let mut tx = db.begin_write().await?;
    payments::mismatched_in(&mut tx, &req.paid).await?;
    let recorded = orders::mark_status_in(&mut tx, &req.change).await?;
    tx.commit().await?;
    Ok(recorded)
}

/// Input of `close_order`: the order's payment, and the ending to record if it closes unpaid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseOrder {
    pub order_id: OrderId,
    pub payment: PaymentRef,
    /// `CLOSED` (the deadline passed) or `CANCELLED`, with its reason.
    pub change: StatusChange,
}

/// The close path of an order in one step: ask the provider, close the charge unless it is paid,
/// and if it closed, record the payment `CLOSED`, release the stock and record the ending — the
/// last three in one transaction. A paid charge (the callback was lost, or the customer paid
/// while we closed) comes back as [`CloseResult::AlreadyPaid`] with nothing changed here: the
/// order settles it instead. Safe to run twice: a repeat finds the payment `CLOSED` in our books
/// (see [`payments::close_unless_paid_at_provider`]), and the transaction's parts find everything
/// in place. Returns what the transaction did, if it ran.
pub async fn close(
    db: &Db,
    providers: &Providers,
    req: &CloseOrder,
) -> Result<(CloseResult, Option<Finished>), StepError> {
    let result = payments::close_unless_paid_at_provider(db, providers, &req.payment).await?;
    if result != CloseResult::Closed {
        return Ok((result, None));
    }
    let mut tx = db.begin_write().await?;
    payments::closed_in(&mut tx, &req.payment.payment_no).await?;
    let finished = finish_in(
        &mut tx,
        &FinishOrder {
            order_id: req.order_id.clone(),
            stock: StockOutcome::Release,
            paid: None,
            change: req.change.clone(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((result, Some(finished)))
}
