//! The last step of an order in one transaction: its payment recorded as paid (paid orders), its
//! reserved stock confirmed (sold) or released, and its final status with its log entry.
//!
//! These rows must change together — an order `PAID` whose stock is still only reserved, or
//! `CLOSED` with its stock still held, is a state nobody should ever read — and one transaction
//! is also one commit instead of three, on the path whose latency customers and the close
//! deadline feel. Each part keeps its own guard (confirm refuses released stock and a closed
//! payment; a repeat finds everything in place and changes nothing), so the whole step is
//! idempotent like the steps it replaces.

use crate::db::Db;
use crate::failure::{self, Classified, db_is_retryable};
use crate::inventory::{self, Delta, InventoryError, StockMoved};
use crate::orders::{self, StatusChange};
use crate::payments::{self, PaymentError, ReceivedPayment};
use orderflow_domain::OrderId;
use serde::{Deserialize, Serialize};

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

#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl Classified for FinishError {
    fn code(&self) -> &'static str {
        match self {
            FinishError::Inventory(e) => e.code(),
            FinishError::Payment(e) => e.code(),
            FinishError::Db(e) if !db_is_retryable(e) => failure::INVARIANT_VIOLATION,
            FinishError::Db(_) => failure::DATABASE,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            FinishError::Inventory(e) => e.retryable(),
            FinishError::Payment(e) => e.retryable(),
            FinishError::Db(e) => db_is_retryable(e),
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

pub async fn finish(db: &Db, req: &FinishOrder) -> Result<Finished, FinishError> {
    let mut tx = db.begin_write().await?;
    if let Some(paid) = &req.paid {
        payments::confirm_in(&mut tx, paid).await?;
    }
    let delta = match req.stock {
        StockOutcome::Confirm => Delta::Confirm,
        StockOutcome::Release => Delta::Release,
    };
    let status_recorded = orders::mark_status_in(&mut tx, &req.change).await?;
    // Last: the SKU's inventory row is the one other orders wait for (see `inventory::reserve`).
    let stock = inventory::settle_in(&mut tx, &req.order_id, delta).await?;
    tx.commit().await?;
    Ok(Finished {
        stock,
        status_recorded,
    })
}
