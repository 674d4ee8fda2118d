//! Payments: our `payments` row and `payment_log`, and the calls to the order's provider.
//!
//! Our row is written before the provider is called, and every provider call is keyed by the
//! payment number, so a crash between the two is repaired by the retry: the row is found, the
//! provider returns the charge it already has.

use crate::db::{Db, now_ms};
use crate::failure::{self, Classified};
use crate::providers::{
    ChargeRequest, ChargeState, CloseResult, PayParams, ProviderError, Providers, RefundRequest,
    RefundResult,
};
use orderflow_domain::{Money, OrderId, PaymentNo, PaymentStatus, ProviderName};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The step contradicts what the payment already is (e.g. confirming a closed payment).
    #[error("payment {payment_no} is {status}: {detail}")]
    Invariant {
        payment_no: String,
        status: String,
        detail: String,
    },
}

impl Classified for PaymentError {
    fn code(&self) -> &'static str {
        match self {
            PaymentError::Provider(p) => p.code(),
            PaymentError::Invariant { .. } => failure::INVARIANT_VIOLATION,
            PaymentError::Db(e) => e.code(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            PaymentError::Provider(p) => p.retryable(),
            PaymentError::Invariant { .. } => false,
            PaymentError::Db(e) => e.retryable(),
        }
    }
}

/// What [`create`] takes (a part of `open_order`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePayment {
    pub order_id: OrderId,
    pub provider: ProviderName,
    pub amount: Money,
    /// Computed by the workflow from its own clock, so it is the same on replay.
    pub deadline_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCreated {
    pub payment_no: PaymentNo,
    pub pay: PayParams,
    /// The payment's deadline as stored: the one asked for, or on a repeat the one stored the
    /// first time. (0 in histories recorded before it was returned.)
    #[serde(default)]
    pub deadline_ms: i64,
}

/// Input of `query_payment`, and the payment `close_order` closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRef {
    pub payment_no: PaymentNo,
    pub provider: ProviderName,
}

/// What the provider reported (`hold_for_review`, and a paid `finish_order`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedPayment {
    pub payment_no: PaymentNo,
    pub paid_amount_minor: i64,
    pub paid_currency: String,
    pub provider_txn_id: String,
    /// Provider event id, or `query` / `close` when the payment was found by asking.
    pub source: String,
}

/// Input of `refund_payment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPayment {
    pub payment_no: PaymentNo,
    pub provider: ProviderName,
    pub amount: Money,
    pub reason: String,
}

pub async fn create(
    db: &Db,
    providers: &Providers,
    req: &CreatePayment,
) -> Result<PaymentCreated, PaymentError> {
    let provider = providers.get(req.provider.as_str())?;
    let payment_no = PaymentNo::for_order(&req.order_id);
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO payments (payment_no, order_id, provider, status, amount_minor, currency,
                               deadline_ms, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, 'PENDING', $4, $5, $6, $7, $7)
         ON CONFLICT (payment_no) DO NOTHING",
    )
    .bind(payment_no.as_str())
    .bind(req.order_id.as_str())
    .bind(req.provider.as_str())
    .bind(req.amount.minor())
    .bind(req.amount.currency().code())
    .bind(req.deadline_ms)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let deadline_ms = if inserted == 1 {
        log(&mut tx, &payment_no, "CREATED", None, now).await?;
        req.deadline_ms
    } else {
        // A repeat: the deadline the customer was first given stands.
        let (stored,): (i64,) =
            sqlx::query_as("SELECT deadline_ms FROM payments WHERE payment_no = $1")
                .bind(payment_no.as_str())
                .fetch_one(&mut *tx)
                .await?;
        stored
    };
    tx.commit().await?;

    let pay = provider
        .create(&ChargeRequest {
            payment_no: payment_no.clone(),
            order_id: req.order_id.clone(),
            amount: req.amount,
            deadline_ms,
        })
        .await?;
    sqlx::query(
        "UPDATE payments SET checkout_url = $2, qr_payload = $3, updated_at_ms = $4 WHERE payment_no = $1",
    )
    .bind(payment_no.as_str())
    .bind(&pay.checkout_url)
    .bind(&pay.qr_payload)
    .bind(now_ms())
    .execute(db.writes())
    .await?;
    Ok(PaymentCreated {
        payment_no,
        pay,
        deadline_ms,
    })
}

pub async fn query(
    providers: &Providers,
    payment: &PaymentRef,
) -> Result<ChargeState, PaymentError> {
    Ok(providers
        .get(payment.provider.as_str())?
        .query(&payment.payment_no)
        .await?)
}

/// Asks the provider first and closes the charge only if it is not paid. A paid charge comes back
/// as [`CloseResult::AlreadyPaid`], whether the query saw it or the close lost the race to it. The
/// caller records a `Closed` answer (see [`closed_in`]).
///
/// A payment our books already show `CLOSED` was closed by an earlier attempt of the caller's
/// step whose completion was lost: it answers `Closed` again without asking. Asking could now
/// hear "paid" — money taken after our close (`pay_after_close`) — and turn an order that was
/// closed, its stock already released, into a paid one; that money is refunded by the
/// late-payment path instead.
pub(crate) async fn close_unless_paid_at_provider(
    db: &Db,
    providers: &Providers,
    payment: &PaymentRef,
) -> Result<CloseResult, PaymentError> {
    let ours = load(db, payment.payment_no.as_str()).await?;
    if ours.is_some_and(|p| p.status == PaymentStatus::Closed.as_str()) {
        return Ok(CloseResult::Closed);
    }
    let state = query(providers, payment).await?;
    if state.status == PaymentStatus::Paid {
        return Ok(CloseResult::AlreadyPaid(state));
    }
    close_at_provider(providers, payment).await
}

async fn close_at_provider(
    providers: &Providers,
    payment: &PaymentRef,
) -> Result<CloseResult, PaymentError> {
    Ok(providers
        .get(payment.provider.as_str())?
        .close(&payment.payment_no)
        .await?)
}

/// Records, inside the caller's transaction, that the provider closed the charge (see
/// `crate::finish`).
pub(crate) async fn closed_in(
    tx: &mut Transaction<'static, Any>,
    payment_no: &PaymentNo,
) -> Result<(), PaymentError> {
    set_status_in(tx, payment_no, PaymentStatus::Closed, &["PENDING"], None).await
}

/// The states a payment may be confirmed from.
const CONFIRM_FROM: &[&str] = &["PENDING", "MISMATCHED"];

/// Records the payment as `PAID` (from `PENDING`, or from `MISMATCHED` when an operator accepts
/// it), inside the caller's transaction (see `crate::finish`). A repeat finds it paid and changes
/// nothing.
pub(crate) async fn confirm_in(
    tx: &mut Transaction<'static, Any>,
    paid: &ReceivedPayment,
) -> Result<(), PaymentError> {
    received_in(tx, paid, PaymentStatus::Paid, CONFIRM_FROM).await
}

/// Records, inside the caller's transaction, that the provider reported a payment that does not
/// match the order (see `crate::finish::hold_for_review`).
pub(crate) async fn mismatched_in(
    tx: &mut Transaction<'static, Any>,
    paid: &ReceivedPayment,
) -> Result<(), PaymentError> {
    received_in(tx, paid, PaymentStatus::Mismatched, &["PENDING"]).await
}

async fn received_in(
    tx: &mut Transaction<'static, Any>,
    paid: &ReceivedPayment,
    status: PaymentStatus,
    from: &[&str],
) -> Result<(), PaymentError> {
    let now = now_ms();
    let from_sql = sql_list(from);
    let moved = sqlx::query(&format!(
        "UPDATE payments SET status = $2, paid_amount_minor = $3, paid_currency = $4,
                provider_txn_id = $5, updated_at_ms = $6
          WHERE payment_no = $1 AND status IN ({from_sql})"
    ))
    .bind(paid.payment_no.as_str())
    .bind(status.as_str())
    .bind(paid.paid_amount_minor)
    .bind(&paid.paid_currency)
    .bind(&paid.provider_txn_id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved == 0 {
        // A repeat finds the row already in `status`; anything else (a closed or refunded
        // payment asked to be paid) means the order took two paths at once: stop, visibly.
        let current: Option<(String,)> =
            sqlx::query_as("SELECT status FROM payments WHERE payment_no = $1")
                .bind(paid.payment_no.as_str())
                .fetch_optional(&mut **tx)
                .await?;
        match current {
            Some((current,)) if current == status.as_str() => return Ok(()),
            Some((current,)) => {
                return Err(PaymentError::Invariant {
                    payment_no: paid.payment_no.to_string(),
                    status: current,
                    detail: format!("cannot record it as {status}"),
                });
            }
            None => {
                return Err(PaymentError::Invariant {
                    payment_no: paid.payment_no.to_string(),
                    status: "unknown".to_owned(),
                    detail: "no such payment".to_owned(),
                });
            }
        }
    }
    let detail = format!(
        "{} {} txn={} via {}",
        paid.paid_amount_minor, paid.paid_currency, paid.provider_txn_id, paid.source
    );
    log(tx, &paid.payment_no, status.as_str(), Some(&detail), now).await?;
    Ok(())
}

pub async fn refund(
    db: &Db,
    providers: &Providers,
    req: &RefundPayment,
) -> Result<RefundResult, PaymentError> {
    let result = providers
        .get(req.provider.as_str())?
        .refund(&RefundRequest {
            payment_no: req.payment_no.clone(),
            amount: req.amount,
            reason: req.reason.clone(),
        })
        .await?;
    set_status(
        db,
        &req.payment_no,
        PaymentStatus::Refunded,
        &["PAID", "MISMATCHED", "PENDING", "CLOSED"],
        Some(&format!("refund {} ({})", result.refund_id, req.reason)),
    )
    .await?;
    Ok(result)
}

async fn set_status(
    db: &Db,
    payment_no: &PaymentNo,
    status: PaymentStatus,
    from: &[&str],
    detail: Option<&str>,
) -> Result<(), PaymentError> {
    let mut tx = db.begin_write().await?;
    set_status_in(&mut tx, payment_no, status, from, detail).await?;
    tx.commit().await?;
    Ok(())
}

async fn set_status_in(
    tx: &mut Transaction<'static, Any>,
    payment_no: &PaymentNo,
    status: PaymentStatus,
    from: &[&str],
    detail: Option<&str>,
) -> Result<(), PaymentError> {
    let now = now_ms();
    let from_sql = sql_list(from);
    sqlx::query(&format!(
        "UPDATE payments SET status = $2, updated_at_ms = $3
          WHERE payment_no = $1 AND status IN ({from_sql})"
    ))
    .bind(payment_no.as_str())
    .bind(status.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    log(tx, payment_no, status.as_str(), detail, now).await?;
    Ok(())
}

/// `'A', 'B'` for an `IN (...)` of status names. Only ever called with our own constants, never
/// with input, so quoting them inline is safe.
fn sql_list(values: &[&str]) -> String {
    values
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn log(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    payment_no: &PaymentNo,
    event: &str,
    detail: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payment_log (payment_no, event, detail, at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (payment_no, event) DO NOTHING",
    )
    .bind(payment_no.as_str())
    .bind(event)
    .bind(detail)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Our record of an order's payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPayment {
    pub payment_no: String,
    pub order_id: String,
    pub provider: String,
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub paid_amount_minor: Option<i64>,
    pub provider_txn_id: Option<String>,
    pub deadline_ms: i64,
    pub checkout_url: Option<String>,
    pub log: Vec<String>,
}

pub async fn load_for_order(db: &Db, order_id: &str) -> Result<Option<StoredPayment>, sqlx::Error> {
    load_where(db, "order_id", order_id).await
}

pub async fn load(db: &Db, payment_no: &str) -> Result<Option<StoredPayment>, sqlx::Error> {
    load_where(db, "payment_no", payment_no).await
}

async fn load_where(
    db: &Db,
    column: &'static str,
    value: &str,
) -> Result<Option<StoredPayment>, sqlx::Error> {
    let Some(r) = sqlx::query(&format!(
        "SELECT payment_no, order_id, provider, status, amount_minor, currency, paid_amount_minor,
                provider_txn_id, deadline_ms, checkout_url
           FROM payments WHERE {column} = $1"
    ))
    .bind(value)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let payment_no: String = r.try_get(0)?;
    let log = sqlx::query("SELECT event FROM payment_log WHERE payment_no = $1 ORDER BY id")
        .bind(&payment_no)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Some(StoredPayment {
        payment_no,
        order_id: r.try_get(1)?,
        provider: r.try_get(2)?,
        status: r.try_get(3)?,
        amount_minor: r.try_get(4)?,
        currency: r.try_get(5)?,
        paid_amount_minor: r.try_get(6)?,
        provider_txn_id: r.try_get(7)?,
        deadline_ms: r.try_get(8)?,
        checkout_url: r.try_get(9)?,
        log,
    }))
}
