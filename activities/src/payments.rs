//! Payments: our `payments` row and `payment_log`, and the calls to the order's provider.
//!
//! Our row is written before the provider is called, and every provider call is keyed by the
//! payment number, so a crash between the two is repaired by the retry: the row is found, the
//! provider returns the charge it already has.

use crate::db::{Db, now_ms};
use crate::failure::{self, Classified};
use crate::outbox;
use crate::providers::{
    ChargeRequest, ChargeState, CloseResult, PayParams, ProviderError, ProviderRefund, Providers,
    RefundRequest, RefundResult, RefundState, refund_no_for,
};
use crate::sql;
use crate::sql::Sql;
use orderflow_domain::events::{Amount, EventType, PaymentEventData};
use orderflow_domain::{
    Money, OrderId, OrderStatus, PaymentNo, PaymentStatus, ProviderName, second_payment_refund_no,
};
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
    /// The payment's order is not over yet (awaiting payment, in review): its own workflow still
    /// decides whether it keeps the money. Retryable: asked again once the order is decided.
    #[error("order {order_id} of payment {payment_no} is still {order_status}: it decides first")]
    OrderUndecided {
        payment_no: String,
        order_id: String,
        order_status: String,
    },
    /// The provider has the refund and has not finished it (or cannot without an operator).
    /// Retryable: the refund is asked for again with the same refund number, which is how its
    /// progress is followed.
    #[error("refund {refund_no} of payment {payment_no} is not done yet: {state}")]
    RefundUnfinished {
        payment_no: String,
        refund_no: String,
        stuck: bool,
        state: String,
    },
}

impl Classified for PaymentError {
    fn code(&self) -> &'static str {
        match self {
            PaymentError::Provider(p) => p.code(),
            PaymentError::Invariant { .. } => failure::INVARIANT_VIOLATION,
            PaymentError::OrderUndecided { .. } => failure::ORDER_UNDECIDED,
            PaymentError::RefundUnfinished { stuck: false, .. } => failure::REFUND_PROCESSING,
            PaymentError::RefundUnfinished { stuck: true, .. } => failure::REFUND_STUCK,
            PaymentError::Db(e) => e.code(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            PaymentError::Provider(p) => p.retryable(),
            PaymentError::Invariant { .. } => false,
            PaymentError::OrderUndecided { .. } => true,
            PaymentError::RefundUnfinished { .. } => true,
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
    let inserted = sql!(
        "INSERT INTO payments (payment_no, order_id, provider, status, amount_minor, currency,
                               deadline_ms, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, 'PENDING', $4, $5, $6, $7, $7)
         ON CONFLICT (payment_no) DO NOTHING",
    )
    .on(&*tx)
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
        let (stored,): (i64,) = sql!("SELECT deadline_ms FROM payments WHERE payment_no = $1")
            .on(&*tx)
            .bind(payment_no.as_str())
            .fetch_one_as(&mut *tx)
            .await?;
        stored
    };
    tx.commit().await?;

    let mut pay = provider
        .create(&ChargeRequest {
            payment_no: payment_no.clone(),
            order_id: req.order_id.clone(),
            amount: req.amount,
            deadline_ms,
            description: format!("Order {}", req.order_id),
        })
        .await?;
    pay.checkout_url = providers.checkout_url(&payment_no, &pay);
    sql!(
        "UPDATE payments SET checkout_url = $2, qr_payload = $3, updated_at_ms = $4 WHERE payment_no = $1",
    ).on(db.engine())
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

/// What our books say the payment's order kept of its money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub order_id: Option<String>,
    /// The order's status as recorded (`None`: no order row).
    pub order_status: Option<String>,
    pub kept: Kept,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// The order is not over (pending, awaiting payment, in review): its own workflow will decide.
    Undecided,
    /// The order kept this payment: it is `PAID` (directly, or accepted after review), or its
    /// payment is recorded received and was never given back.
    Kept {
        minor: i64,
        currency: String,
        provider_txn_id: Option<String>,
    },
    /// No order holds this payment's money: the order closed, was cancelled, rejected or
    /// refunded, or there is no payment row.
    Nothing,
}

/// What the order of `payment_no` kept, from our `payments` and `orders` rows. A final order does
/// not change what it kept, so the answer stands once it is not [`Kept::Undecided`].
pub async fn kept_by_order(db: &Db, payment_no: &str) -> Result<Holding, sqlx::Error> {
    let Some(r) = sql!(
        "SELECT p.status, p.amount_minor, p.currency, p.paid_amount_minor, p.paid_currency,
                p.provider_txn_id, o.status, p.order_id, p.extra_refunded_minor
           FROM payments p LEFT JOIN orders o ON o.order_id = p.order_id
          WHERE p.payment_no = $1",
    )
    .on(db.engine())
    .bind(payment_no)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(Holding {
            order_id: None,
            order_status: None,
            kept: Kept::Nothing,
        });
    };
    let payment_status: String = r.try_get(0)?;
    let order_status: Option<String> = r.try_get(6)?;
    let parsed = order_status.as_deref().map(str::parse::<OrderStatus>);
    let open = match &parsed {
        Some(Ok(status)) => !status.is_final(),
        // A status we cannot read counts as undecided: never refund on a guess.
        Some(Err(_)) => true,
        // No order row: the payment row alone decides.
        None => false,
    };
    let received = [
        PaymentStatus::Paid.as_str(),
        PaymentStatus::Mismatched.as_str(),
    ]
    .contains(&payment_status.as_str());
    let kept = if open {
        Kept::Undecided
    } else if received || matches!(parsed, Some(Ok(OrderStatus::Paid))) {
        let amount: i64 = r.try_get(1)?;
        let currency: String = r.try_get(2)?;
        let paid: Option<i64> = r.try_get(3)?;
        let paid_currency: Option<String> = r.try_get(4)?;
        // Second payments already given back count as settled: never refunded twice.
        let extra_refunded: i64 = r.try_get(8)?;
        Kept::Kept {
            minor: paid.unwrap_or(amount) + extra_refunded,
            currency: paid_currency.unwrap_or(currency),
            provider_txn_id: r.try_get(5)?,
        }
    } else {
        Kept::Nothing
    };
    Ok(Holding {
        order_id: r.try_get(7)?,
        order_status,
        kept,
    })
}

/// `query_payment`'s answer: what the provider holds, and how much of it our order kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentInquiry {
    #[serde(flatten)]
    pub charge: ChargeState,
    /// Minor units of the provider's paid amount that our order kept (in the charge's currency):
    /// only the rest may be refunded. Histories recorded before this field existed hold a bare
    /// `ChargeState`: the field is absent there, reads as 0 ("nothing kept"), and their
    /// `LatePaymentWorkflow` replays the path it took then (refund everything the provider held);
    /// new runs decide on the recorded value.
    #[serde(default)]
    pub kept_by_order_minor: i64,
    /// The order's status when asked, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_status: Option<String>,
}

/// `query_payment`: the provider's state of the charge, and what our order kept of it. Waits
/// (a retryable failure) while the order is still open: until then its own workflow decides.
pub async fn inquire(
    db: &Db,
    providers: &Providers,
    payment: &PaymentRef,
) -> Result<PaymentInquiry, PaymentError> {
    let holding = kept_by_order(db, payment.payment_no.as_str()).await?;
    if holding.kept == Kept::Undecided {
        return Err(PaymentError::OrderUndecided {
            payment_no: payment.payment_no.to_string(),
            order_id: holding.order_id.unwrap_or_default(),
            order_status: holding.order_status.unwrap_or_default(),
        });
    }
    let charge = query(providers, payment).await?;
    let kept_by_order_minor = match &holding.kept {
        Kept::Kept {
            minor, currency, ..
        } if *currency == charge.currency => *minor,
        // Kept in another currency than the provider reports: no subtraction is meaningful, so
        // all of it counts as kept and nothing is refunded automatically.
        Kept::Kept { minor, .. } => charge.paid_amount_minor.unwrap_or(*minor).max(*minor),
        Kept::Undecided | Kept::Nothing => 0,
    };
    if charge.status == PaymentStatus::Paid
        && let Some(paid_minor) = charge.paid_amount_minor
        && paid_minor > kept_by_order_minor
    {
        record_received_late(db, &payment.payment_no, &charge, paid_minor).await?;
    }
    Ok(PaymentInquiry {
        charge,
        kept_by_order_minor,
        order_status: holding.order_status,
    })
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
    set_status_in(tx, payment_no, PaymentStatus::Closed, &["PENDING"], None).await?;
    Ok(())
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
    let [from1, from2, from3] = in_list(from);
    let moved = sql!(
        "UPDATE payments SET status = $2, paid_amount_minor = $3, paid_currency = $4,
                provider_txn_id = $5, updated_at_ms = $6
          WHERE payment_no = $1 AND status IN ($7, $8, $9)"
    )
    .on(&**tx)
    .bind(paid.payment_no.as_str())
    .bind(status.as_str())
    .bind(paid.paid_amount_minor)
    .bind(&paid.paid_currency)
    .bind(&paid.provider_txn_id)
    .bind(now)
    .bind(from1)
    .bind(from2)
    .bind(from3)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved == 0 {
        // A repeat finds the row already in `status`; anything else (a closed or refunded
        // payment asked to be paid) means the order took two paths at once: stop, visibly.
        let current: Option<(String,)> = sql!("SELECT status FROM payments WHERE payment_no = $1")
            .on(&**tx)
            .bind(paid.payment_no.as_str())
            .fetch_optional_as(&mut **tx)
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

/// The states a refund moves our payment from. Not `PAID`: a payment its order kept stays paid.
/// The only refund that meets one is a late payment's excess over what the order kept, and that
/// money was never the order's.
const REFUND_FROM: &[&str] = &["MISMATCHED", "PENDING", "CLOSED"];

pub async fn refund(
    db: &Db,
    providers: &Providers,
    req: &RefundPayment,
) -> Result<RefundResult, PaymentError> {
    let refund_no = refund_no_for(&req.payment_no);
    let result = RefundResult {
        refund_id: refund_at_provider(
            providers,
            req.provider.as_str(),
            RefundRequest {
                payment_no: req.payment_no.clone(),
                refund_no: refund_no.clone(),
                amount: req.amount,
                reason: req.reason.clone(),
            },
        )
        .await?,
    };
    let detail = format!(
        "refund {} of {} ({})",
        result.refund_id, req.amount, req.reason
    );
    let mut tx = db.begin_write().await?;
    let moved = set_status_in(
        &mut tx,
        &req.payment_no,
        PaymentStatus::Refunded,
        REFUND_FROM,
        Some(&detail),
    )
    .await?;
    // Whether this call recorded the refund (a repeat finds it recorded): then it is announced.
    let mut completed = moved;
    if !moved {
        // A repeat (already `REFUNDED`, logged the first time), or an excess refunded from a
        // payment its order kept: the payment stays `PAID` and the log says what went back.
        let current: Option<(String,)> = sql!("SELECT status FROM payments WHERE payment_no = $1")
            .on(&*tx)
            .bind(req.payment_no.as_str())
            .fetch_optional_as(&mut *tx)
            .await?;
        if current.is_some_and(|(s,)| s == PaymentStatus::Paid.as_str()) {
            completed = log(
                &mut tx,
                &req.payment_no,
                "EXCESS_REFUNDED",
                Some(&detail),
                now_ms(),
            )
            .await?;
        }
    }
    if completed {
        outbox::payment_in(
            &mut tx,
            req.payment_no.as_str(),
            EventType::RefundCompleted,
            PaymentEventData {
                order_id: String::new(),
                payment_no: req.payment_no.to_string(),
                provider: String::new(),
                amount: Amount {
                    minor: req.amount.minor(),
                    currency: req.amount.currency().code().to_owned(),
                },
                provider_txn_id: None,
                refund_no: Some(refund_no),
                refund_id: Some(result.refund_id.clone()),
                reason: Some(req.reason.clone()),
                lines: None,
                restock: None,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(result)
}

/// Asks the provider for the refund (a repeat of its number returns the refund it made) and
/// returns the provider's refund id once the money is back (see [`finished_refund`]).
pub(crate) async fn refund_at_provider(
    providers: &Providers,
    provider: &str,
    req: RefundRequest,
) -> Result<String, PaymentError> {
    let refund = providers.get(provider)?.refund(&req).await?;
    finished_refund(refund, &req.payment_no, &req.refund_no)
}

/// The provider's refund id once the money is back; while the provider is still processing it
/// (or needs a person), a retryable error that says so — asking again with the same refund
/// number is how a refund is followed to its end.
fn finished_refund(
    refund: ProviderRefund,
    payment_no: &PaymentNo,
    refund_no: &str,
) -> Result<String, PaymentError> {
    let unfinished = |stuck: bool, state: String| PaymentError::RefundUnfinished {
        payment_no: payment_no.to_string(),
        refund_no: refund_no.to_owned(),
        stuck,
        state,
    };
    match refund.state {
        RefundState::Succeeded => Ok(refund.refund_id),
        RefundState::Processing => Err(unfinished(
            false,
            format!("the provider is processing refund {}", refund.refund_id),
        )),
        RefundState::Stuck(why) => Err(unfinished(
            true,
            format!(
                "refund {} needs an operator at the provider: {why}",
                refund.refund_id
            ),
        )),
    }
}

/// Input of `refund_second_payment`: a payment that arrived for a payment number already paid
/// (with another transaction) while its order waited for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundSecondPayment {
    pub payment_no: PaymentNo,
    pub provider: ProviderName,
    pub amount: Money,
    pub provider_txn_id: String,
    pub reason: String,
}

/// Gives a second payment back, once: the refund number is derived from its transaction id
/// ([`second_payment_refund_no`]), the payment log records it once per transaction, and the
/// amount is added to `payments.extra_refunded_minor`, so a later late-payment inquiry counts it
/// as settled, not as money to give back again. The first payment is untouched: the operator
/// still decides it.
pub async fn refund_second(
    db: &Db,
    providers: &Providers,
    req: &RefundSecondPayment,
) -> Result<RefundResult, PaymentError> {
    let refund_no = second_payment_refund_no(&req.payment_no, &req.provider_txn_id);
    let result = RefundResult {
        refund_id: refund_at_provider(
            providers,
            req.provider.as_str(),
            RefundRequest {
                payment_no: req.payment_no.clone(),
                refund_no: refund_no.clone(),
                amount: req.amount,
                reason: req.reason.clone(),
            },
        )
        .await?,
    };
    let event = format!("2ND_REFUND:{}", &refund_no[refund_no.len() - 10..]);
    let detail = format!(
        "refund {} of {} for second payment txn={} ({})",
        result.refund_id, req.amount, req.provider_txn_id, req.reason
    );
    let mut tx = db.begin_write().await?;
    if log(&mut tx, &req.payment_no, &event, Some(&detail), now_ms()).await? {
        sql!(
            "UPDATE payments SET extra_refunded_minor = extra_refunded_minor + $2
              WHERE payment_no = $1"
        )
        .on(&*tx)
        .bind(req.payment_no.as_str())
        .bind(req.amount.minor())
        .execute(&mut *tx)
        .await?;
        outbox::payment_in(
            &mut tx,
            req.payment_no.as_str(),
            EventType::RefundCompleted,
            PaymentEventData {
                order_id: String::new(),
                payment_no: req.payment_no.to_string(),
                provider: String::new(),
                amount: Amount {
                    minor: req.amount.minor(),
                    currency: req.amount.currency().code().to_owned(),
                },
                provider_txn_id: Some(req.provider_txn_id.clone()),
                refund_no: Some(refund_no),
                refund_id: Some(result.refund_id.clone()),
                reason: Some(req.reason.clone()),
                lines: None,
                restock: None,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(result)
}

async fn set_status_in(
    tx: &mut Transaction<'static, Any>,
    payment_no: &PaymentNo,
    status: PaymentStatus,
    from: &[&str],
    detail: Option<&str>,
) -> Result<bool, PaymentError> {
    let now = now_ms();
    let [from1, from2, from3] = in_list(from);
    let moved = sql!(
        "UPDATE payments SET status = $2, updated_at_ms = $3
          WHERE payment_no = $1 AND status IN ($4, $5, $6)"
    )
    .on(&**tx)
    .bind(payment_no.as_str())
    .bind(status.as_str())
    .bind(now)
    .bind(from1)
    .bind(from2)
    .bind(from3)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    // Logged only when it moved: a repeat was logged the first time, and a payment in another
    // state (a kept `PAID` one asked to be refunded) did not become `status`.
    if moved {
        log(tx, payment_no, status.as_str(), detail, now).await?;
    }
    Ok(moved)
}

/// The one to three statuses of a fixed `status IN ($a, $b, $c)`, the first repeated to fill it,
/// so each statement's text is written once whatever the list.
fn in_list<'a>(values: &[&'a str]) -> [&'a str; 3] {
    assert!(
        (1..=3).contains(&values.len()),
        "a status list has one to three entries"
    );
    let at = |i: usize| values.get(i).copied().unwrap_or(values[0]);
    [at(0), at(1), at(2)]
}

/// Writes what a provider reported about a payment (a refund's progress) to its log, once per
/// event name: a repeat of the report changes nothing.
pub async fn record_provider_event(
    db: &Db,
    payment_no: &str,
    event: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    let payment_no = PaymentNo::parse(payment_no)
        .map_err(|e| sqlx::Error::Protocol(format!("payment number {payment_no:?}: {e}")))?;
    let mut tx = db.begin_write().await?;
    log(&mut tx, &payment_no, event, Some(detail), now_ms()).await?;
    tx.commit().await
}

/// Records, once, that the provider holds money for `payment_no` beyond what its (finished) order
/// kept — a payment after the close, or a second one — and announces it
/// (`payment.received_late`), in one transaction. Returns whether this call recorded it.
async fn record_received_late(
    db: &Db,
    payment_no: &PaymentNo,
    charge: &ChargeState,
    paid_minor: i64,
) -> Result<bool, sqlx::Error> {
    let detail = format!(
        "{paid_minor} {} txn={}",
        charge.currency,
        charge.provider_txn_id.as_deref().unwrap_or("-")
    );
    let mut tx = db.begin_write().await?;
    let recorded = log(
        &mut tx,
        payment_no,
        "RECEIVED_LATE",
        Some(&detail),
        now_ms(),
    )
    .await?;
    if recorded {
        outbox::payment_in(
            &mut tx,
            payment_no.as_str(),
            EventType::PaymentReceivedLate,
            PaymentEventData {
                order_id: String::new(),
                payment_no: payment_no.to_string(),
                provider: String::new(),
                amount: Amount {
                    minor: paid_minor,
                    currency: charge.currency.clone(),
                },
                provider_txn_id: charge.provider_txn_id.clone(),
                refund_no: None,
                refund_id: None,
                reason: None,
                lines: None,
                restock: None,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(recorded)
}

/// Writes `event` to the payment's log once. Returns whether this call wrote it.
async fn log(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    payment_no: &PaymentNo,
    event: &str,
    detail: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let inserted = sql!(
        "INSERT INTO payment_log (payment_no, event, detail, at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (payment_no, event) DO NOTHING",
        key: "payment_log_payment_event",
    )
    .on(&**tx)
    .bind(payment_no.as_str())
    .bind(event)
    .bind(detail)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
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
    let by_order = sql!(
        "SELECT payment_no, order_id, provider, status, amount_minor, currency, paid_amount_minor,
                provider_txn_id, deadline_ms, checkout_url
           FROM payments WHERE order_id = $1"
    );
    load_by(db, by_order, order_id).await
}

pub async fn load(db: &Db, payment_no: &str) -> Result<Option<StoredPayment>, sqlx::Error> {
    let by_number = sql!(
        "SELECT payment_no, order_id, provider, status, amount_minor, currency, paid_amount_minor,
                provider_txn_id, deadline_ms, checkout_url
           FROM payments WHERE payment_no = $1"
    );
    load_by(db, by_number, payment_no).await
}

/// What the payment page shows: the QR code's payload, the amount, the deadline and where the
/// order stands, read in one statement (the page asks every second while a customer looks at it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayPage {
    pub payment_no: String,
    pub order_id: String,
    pub provider: String,
    pub amount_minor: i64,
    pub currency: String,
    pub deadline_ms: i64,
    pub qr_payload: String,
    /// The order's recorded status (`AWAITING_PAYMENT`, `PAID`, `CLOSED`, …).
    pub order_status: String,
}

pub async fn pay_page(db: &Db, payment_no: &str) -> Result<Option<PayPage>, sqlx::Error> {
    let Some(r) = sql!(
        "SELECT p.payment_no, p.order_id, p.provider, p.amount_minor, p.currency, p.deadline_ms,
                p.qr_payload, o.status
           FROM payments p JOIN orders o ON o.order_id = p.order_id
          WHERE p.payment_no = $1"
    )
    .on(db)
    .bind(payment_no)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let qr_payload: Option<String> = r.try_get(6)?;
    Ok(Some(PayPage {
        payment_no: r.try_get(0)?,
        order_id: r.try_get(1)?,
        provider: r.try_get(2)?,
        amount_minor: r.try_get(3)?,
        currency: r.try_get(4)?,
        deadline_ms: r.try_get(5)?,
        qr_payload: qr_payload.unwrap_or_default(),
        order_status: r.try_get(7)?,
    }))
}

/// The payment `select` finds by `key`, with its log.
async fn load_by(
    db: &Db,
    select: &'static Sql,
    key: &str,
) -> Result<Option<StoredPayment>, sqlx::Error> {
    let Some(r) = select.on(db).bind(key).fetch_optional(db.pool()).await? else {
        return Ok(None);
    };
    let payment_no: String = r.try_get(0)?;
    let log = sql!("SELECT event FROM payment_log WHERE payment_no = $1 ORDER BY id")
        .on(db.engine())
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

#[cfg(test)]
mod tests {
    use super::PaymentInquiry;
    use orderflow_domain::PaymentStatus;

    /// `query_payment` results recorded before `kept_by_order_minor` existed (a bare
    /// `ChargeState`, as in `tests/histories/late_payment_refund.v1.json`) read as "nothing kept",
    /// so their workflows replay the refund they made; new results carry the field.
    #[test]
    fn recorded_inquiries_without_the_kept_amount_read_as_nothing_kept() {
        let recorded = r#"{"status":"PAID","paid_amount_minor":999,"currency":"USD","provider_txn_id":"sbx_txn_1"}"#;
        let old: PaymentInquiry = serde_json::from_str(recorded).unwrap();
        assert_eq!(old.charge.status, PaymentStatus::Paid);
        assert_eq!(old.charge.paid_amount_minor, Some(999));
        assert_eq!((old.kept_by_order_minor, old.order_status), (0, None));

        let new = PaymentInquiry {
            kept_by_order_minor: 999,
            order_status: Some("PAID".to_owned()),
            ..serde_json::from_str(recorded).unwrap()
        };
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["kept_by_order_minor"], 999);
        assert_eq!(json["paid_amount_minor"], 999);
        assert_eq!(serde_json::from_value::<PaymentInquiry>(json).unwrap(), new);
    }
}
