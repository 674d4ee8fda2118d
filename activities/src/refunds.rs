//! After-sale refunds: an operator gives back all or part of a paid order's money.
//!
//! Two halves, so the one who asks learns at once whether the refund is accepted, and the money
//! moves as durable work:
//!
//! * [`request`] (the CLI and the HTTP API, before they start the refund's workflow) checks the
//!   request and counts it against the payment in one transaction: a guarded single UPDATE of
//!   `payments.refunded_minor` (`refunded_minor + amount <= paid_amount_minor`), so two operators
//!   refunding at the same moment can never refund more than was paid — the loser is told what is
//!   left. A refund of lines counts its units against each order line the same way (a
//!   compare-and-set on `refunded_quantity`). The refund row, its lines and `refund.requested`
//!   are written in the same transaction. The refund number is derived from the payment and the
//!   request's idempotency key ([`after_sale_refund_no`]): the same request again is the same
//!   refund, the same key with another request is refused.
//! * [`execute`] (the `refund_after_sale` activity of `AfterSaleRefundWorkflow`) asks the provider
//!   with that refund number — a repeat returns the refund already made, so a worker killed
//!   mid-call never refunds twice — follows it while the provider says "processing", and then
//!   records it in one transaction: the refund `SUCCEEDED`, the refunded units back to sale when
//!   the operator asked, the order `PARTIALLY_REFUNDED` or `REFUNDED`, and `refund.completed`.
//!
//! Line amounts: a line's money is its total less its share of the order's discount
//! (`order_lines.discount_minor`). `k` more units of a line of `n`, with `r` refunded for `R`
//! already, refund `floor(net × (r + k) / n) − R`; the last units refund exactly what is left,
//! so refunding a line unit by unit or at once returns the same total.

use crate::db::{Db, now_ms};
use crate::failure::{self, Classified};
use crate::inventory::{self, InventoryError};
use crate::orders;
use crate::outbox;
use crate::payments::PaymentError;
use crate::providers::{Providers, RefundRequest};
use crate::sql;
use orderflow_domain::events::{Amount, EventType, PaymentEventData, RefundEventLine};
use orderflow_domain::{
    Currency, Money, OrderId, OrderStatus, PaymentNo, Sku, after_sale_refund_no,
};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

/// The longest reason kept (providers cap theirs lower and are given a prefix).
pub const MAX_REASON_CHARS: usize = 256;
/// The longest idempotency key accepted.
pub const MAX_KEY_CHARS: usize = 255;

/// What an operator asks to refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundScope {
    /// An amount of the payment's currency.
    Amount(Money),
    /// Units of the order's lines; the amount follows from the lines' prices and discounts.
    Lines(Vec<RefundLineAsk>),
    /// Everything not yet refunded.
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLineAsk {
    pub sku: Sku,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundAsk {
    pub order_id: OrderId,
    pub scope: RefundScope,
    pub reason: String,
    /// Return the refunded lines' units to sale (only with [`RefundScope::Lines`]).
    pub restock: bool,
    /// The request's idempotency key: the same key and request is the same refund.
    pub key: String,
    /// Who asked (the API key's client, or `cli:<user>`), for the record.
    pub requested_by: String,
}

/// Why a refund request was refused. Each is the caller's to fix; none is worth retrying as is.
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("{0}")]
    Invalid(String),
    #[error("no order {0}")]
    OrderNotFound(String),
    #[error(
        "order {order_id} is {status}: only a PAID or PARTIALLY_REFUNDED order can be refunded"
    )]
    NotRefundable { order_id: String, status: String },
    #[error(
        "a refund of {asked} would exceed what is left to refund of order {order_id}: {left} of {paid} paid"
    )]
    ExceedsPayment {
        order_id: String,
        asked: String,
        left: String,
        paid: String,
    },
    #[error("order {order_id} was paid in {paid}, not {asked}")]
    CurrencyMismatch {
        order_id: String,
        paid: String,
        asked: String,
    },
    #[error("order {order_id} has no line {sku}")]
    UnknownLine { order_id: String, sku: String },
    #[error(
        "order {order_id}: {asked} more of {sku} cannot be refunded, {left} of {quantity} are left"
    )]
    ExceedsLine {
        order_id: String,
        sku: String,
        asked: i64,
        left: i64,
        quantity: i64,
    },
    #[error("the key {key:?} was used for refund {refund_no} with another request")]
    KeyReused { key: String, refund_no: String },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl RefundError {
    /// A stable code for APIs and the CLI.
    pub fn code(&self) -> &'static str {
        match self {
            RefundError::Invalid(_) => "INVALID_REFUND",
            RefundError::OrderNotFound(_) => "ORDER_NOT_FOUND",
            RefundError::NotRefundable { .. } => "NOT_REFUNDABLE",
            RefundError::ExceedsPayment { .. } => "REFUND_EXCEEDS_PAYMENT",
            RefundError::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            RefundError::UnknownLine { .. } => "UNKNOWN_LINE",
            RefundError::ExceedsLine { .. } => "REFUND_EXCEEDS_LINE",
            RefundError::KeyReused { .. } => "IDEMPOTENCY_KEY_REUSED",
            RefundError::Db(_) => failure::DATABASE,
        }
    }
}

/// An after-sale refund as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRefund {
    pub refund_no: String,
    pub order_id: String,
    pub payment_no: String,
    pub provider: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    pub restock: bool,
    pub lines: Vec<RefundEventLine>,
    pub requested_by: String,
    /// `REQUESTED` (counted, not yet returned by the provider) or `SUCCEEDED`.
    pub state: String,
    pub provider_refund_id: Option<String>,
    pub requested_at_ms: i64,
    pub completed_at_ms: Option<i64>,
}

/// Accepts a refund request (see the module docs). Returns the refund and whether this call
/// created it (false: the same request was made before with this key).
pub async fn request(db: &Db, ask: &RefundAsk) -> Result<(StoredRefund, bool), RefundError> {
    validate(ask)?;
    let payment_no = PaymentNo::for_order(&ask.order_id);
    let refund_no = after_sale_refund_no(&ask.order_id, &ask.key);
    let summary = request_summary(ask);
    // A line's compare-and-set can lose to a concurrent refund of the same line: read again and
    // retry; the money guard itself never needs a retry.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut tx = db.begin_write().await?;
        match request_in(&mut tx, ask, &payment_no, &refund_no, &summary).await {
            Ok(Requested::Created) => {
                tx.commit().await?;
                let stored = load(db, &refund_no).await?.ok_or_else(|| {
                    RefundError::Db(sqlx::Error::Protocol("refund vanished".into()))
                })?;
                return Ok((stored, true));
            }
            Ok(Requested::Existing) => {
                drop(tx);
                let stored = load(db, &refund_no).await?.ok_or_else(|| {
                    RefundError::Db(sqlx::Error::Protocol("refund vanished".into()))
                })?;
                return Ok((stored, false));
            }
            Ok(Requested::LineRaced) if attempts < 20 => continue,
            Ok(Requested::LineRaced) => {
                return Err(RefundError::Db(sqlx::Error::Protocol(
                    "the order's lines kept changing under this refund; try again".into(),
                )));
            }
            Err(e) => return Err(e),
        }
    }
}

enum Requested {
    Created,
    Existing,
    /// A concurrent refund of the same line committed between the read and the update.
    LineRaced,
}

fn validate(ask: &RefundAsk) -> Result<(), RefundError> {
    let invalid = |m: &str| Err(RefundError::Invalid(m.to_owned()));
    let reason = ask.reason.trim();
    if reason.is_empty() {
        return invalid("a refund needs a reason");
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(RefundError::Invalid(format!(
            "the reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    if ask.key.is_empty() || ask.key.chars().count() > MAX_KEY_CHARS {
        return Err(RefundError::Invalid(format!(
            "the idempotency key must be 1 to {MAX_KEY_CHARS} characters"
        )));
    }
    match &ask.scope {
        RefundScope::Amount(m) if m.minor() <= 0 => invalid("the amount must be positive"),
        RefundScope::Lines(lines) if lines.is_empty() => invalid("name at least one line"),
        RefundScope::Lines(lines) => match lines.iter().find(|l| l.quantity <= 0) {
            Some(l) => Err(RefundError::Invalid(format!(
                "the quantity of {} must be positive",
                l.sku
            ))),
            None => Ok(()),
        },
        _ if ask.restock => invalid("returning stock to sale needs the lines it is for"),
        _ => Ok(()),
    }
}

/// What was asked, as one string to compare a repeat with: scope, restock and the reason's start
/// (its first 64 characters).
fn request_summary(ask: &RefundAsk) -> String {
    let scope = match &ask.scope {
        RefundScope::Amount(m) => format!("amount:{}:{}", m.minor(), m.currency().code()),
        RefundScope::Lines(lines) => {
            let parts: Vec<String> = merged(lines)
                .iter()
                .map(|l| format!("{}={}", l.sku, l.quantity))
                .collect();
            format!("lines:{}", parts.join(","))
        }
        RefundScope::Rest => "rest".to_owned(),
    };
    // Stored whole (not hashed): it is short, and a refused repeat can say what differed.
    let reason: String = ask.reason.trim().chars().take(64).collect();
    format!("{scope}|{}|{reason}", ask.restock)
}

/// An order's status and its payment's paid amount, currency and refunded total.
type PaidOrder = (String, Option<i64>, Option<String>, Option<i64>);

async fn request_in(
    tx: &mut Transaction<'static, Any>,
    ask: &RefundAsk,
    payment_no: &PaymentNo,
    refund_no: &str,
    summary: &str,
) -> Result<Requested, RefundError> {
    let order_id = ask.order_id.as_str();
    let existing: Option<(String,)> =
        sql!("SELECT request_summary FROM refunds WHERE refund_no = $1")
            .on(&**tx)
            .bind(refund_no)
            .fetch_optional_as(&mut **tx)
            .await?;
    if let Some((stored,)) = existing {
        if stored == summary {
            return Ok(Requested::Existing);
        }
        return Err(RefundError::KeyReused {
            key: ask.key.clone(),
            refund_no: refund_no.to_owned(),
        });
    }
    let order: Option<PaidOrder> = sql!(
        "SELECT o.status, p.paid_amount_minor, p.paid_currency, p.refunded_minor
           FROM orders o LEFT JOIN payments p ON p.order_id = o.order_id
          WHERE o.order_id = $1"
    )
    .on(&**tx)
    .bind(order_id)
    .fetch_optional_as(&mut **tx)
    .await?;
    let Some((status, paid, paid_currency, refunded)) = order else {
        return Err(RefundError::OrderNotFound(order_id.to_owned()));
    };
    let refundable = status
        .parse::<OrderStatus>()
        .is_ok_and(|s| s.is_refundable());
    let (Some(paid), Some(currency), true) = (paid, paid_currency, refundable) else {
        return Err(RefundError::NotRefundable {
            order_id: order_id.to_owned(),
            status,
        });
    };
    let currency = Currency::parse(&currency).map_err(|e| {
        RefundError::Db(sqlx::Error::Protocol(format!(
            "stored currency of {order_id}: {e}"
        )))
    })?;
    let refunded = refunded.unwrap_or(0);
    let money = |minor: i64| {
        Money::new(minor, currency)
            .map(|m| m.to_string())
            .unwrap_or_else(|_| format!("{minor} minor units"))
    };

    let mut lines = Vec::new();
    let amount = match &ask.scope {
        RefundScope::Amount(m) => {
            if m.currency() != currency {
                return Err(RefundError::CurrencyMismatch {
                    order_id: order_id.to_owned(),
                    paid: currency.to_string(),
                    asked: m.currency().to_string(),
                });
            }
            m.minor()
        }
        RefundScope::Rest => paid - refunded,
        RefundScope::Lines(asked) => {
            let asked = merged(asked);
            let mut total = 0i64;
            for line in &asked {
                match refund_line_in(tx, order_id, line).await? {
                    LineRefund::Counted(l) => {
                        total += l.amount_minor;
                        lines.push(l);
                    }
                    LineRefund::Raced => return Ok(Requested::LineRaced),
                }
            }
            total
        }
    };
    if amount <= 0 {
        return Err(RefundError::ExceedsPayment {
            order_id: order_id.to_owned(),
            asked: money(amount.max(0)),
            left: money(paid - refunded),
            paid: money(paid),
        });
    }
    // The guard: one statement, so concurrent requests are counted one after the other and the
    // sum never passes what was paid.
    let counted = sql!(
        "UPDATE payments SET refunded_minor = refunded_minor + $2, updated_at_ms = $3
          WHERE payment_no = $1 AND status = 'PAID'
            AND paid_amount_minor IS NOT NULL AND refunded_minor + $2 <= paid_amount_minor"
    )
    .on(&**tx)
    .bind(payment_no.as_str())
    .bind(amount)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if counted == 0 {
        let now: Option<(Option<i64>,)> =
            sql!("SELECT refunded_minor FROM payments WHERE payment_no = $1")
                .on(&**tx)
                .bind(payment_no.as_str())
                .fetch_optional_as(&mut **tx)
                .await?;
        let refunded = now.and_then(|(r,)| r).unwrap_or(refunded);
        return Err(RefundError::ExceedsPayment {
            order_id: order_id.to_owned(),
            asked: money(amount),
            left: money(paid - refunded),
            paid: money(paid),
        });
    }
    let now = now_ms();
    let reason = ask.reason.trim();
    sql!(
        "INSERT INTO refunds (refund_no, order_id, payment_no, amount_minor, currency, reason,
                              restock, requested_by, request_summary, state, requested_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'REQUESTED', $10)"
    )
    .on(&**tx)
    .bind(refund_no)
    .bind(order_id)
    .bind(payment_no.as_str())
    .bind(amount)
    .bind(currency.code())
    .bind(reason)
    .bind(i64::from(ask.restock))
    .bind(ask.requested_by.as_str())
    .bind(summary)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    for line in &lines {
        sql!(
            "INSERT INTO refund_lines (refund_no, sku, quantity, amount_minor) VALUES ($1, $2, $3, $4)"
        )
        .on(&**tx)
        .bind(refund_no)
        .bind(line.sku.as_str())
        .bind(line.quantity)
        .bind(line.amount_minor)
        .execute(&mut **tx)
        .await?;
    }
    outbox::payment_in(
        tx,
        payment_no.as_str(),
        EventType::RefundRequested,
        event_data(
            payment_no.as_str(),
            refund_no,
            Amount {
                minor: amount,
                currency: currency.code().to_owned(),
            },
            reason,
            ask.restock,
            &lines,
            None,
        ),
    )
    .await?;
    Ok(Requested::Created)
}

/// The lines asked for, a SKU named twice counted once with both quantities, in SKU order (the
/// order rows are locked in, like the inventory's).
fn merged(lines: &[RefundLineAsk]) -> Vec<RefundLineAsk> {
    let mut by_sku: std::collections::BTreeMap<&str, (Sku, i64)> = Default::default();
    for l in lines {
        by_sku
            .entry(l.sku.as_str())
            .or_insert_with(|| (l.sku.clone(), 0))
            .1 += l.quantity;
    }
    by_sku
        .into_values()
        .map(|(sku, quantity)| RefundLineAsk { sku, quantity })
        .collect()
}

enum LineRefund {
    Counted(RefundEventLine),
    Raced,
}

/// Counts `line.quantity` more units of a line as refunded and returns their amount.
async fn refund_line_in(
    tx: &mut Transaction<'static, Any>,
    order_id: &str,
    line: &RefundLineAsk,
) -> Result<LineRefund, RefundError> {
    let row: Option<(i64, i64, i64, i64, i64)> = sql!(
        "SELECT quantity, line_total_minor, discount_minor, refunded_quantity, refunded_minor
           FROM order_lines WHERE order_id = $1 AND sku = $2"
    )
    .on(&**tx)
    .bind(order_id)
    .bind(line.sku.as_str())
    .fetch_optional_as(&mut **tx)
    .await?;
    let Some((quantity, total, discount, refunded_q, refunded_m)) = row else {
        return Err(RefundError::UnknownLine {
            order_id: order_id.to_owned(),
            sku: line.sku.to_string(),
        });
    };
    let left = quantity - refunded_q;
    if line.quantity > left {
        return Err(RefundError::ExceedsLine {
            order_id: order_id.to_owned(),
            sku: line.sku.to_string(),
            asked: line.quantity,
            left,
            quantity,
        });
    }
    let amount = line_refund_amount(
        total - discount,
        quantity,
        refunded_q,
        refunded_m,
        line.quantity,
    );
    let moved = sql!(
        "UPDATE order_lines SET refunded_quantity = refunded_quantity + $3,
                                refunded_minor = refunded_minor + $4
          WHERE order_id = $1 AND sku = $2 AND refunded_quantity = $5"
    )
    .on(&**tx)
    .bind(order_id)
    .bind(line.sku.as_str())
    .bind(line.quantity)
    .bind(amount)
    .bind(refunded_q)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved == 0 {
        return Ok(LineRefund::Raced);
    }
    Ok(LineRefund::Counted(RefundEventLine {
        sku: line.sku.to_string(),
        quantity: line.quantity,
        amount_minor: amount,
    }))
}

/// The money for `k` more units of a line of `n` units worth `net`, of which `r` were refunded
/// for `refunded` already (see the module docs): cumulative floor, the last units take the rest.
pub fn line_refund_amount(net: i64, n: i64, r: i64, refunded: i64, k: i64) -> i64 {
    if n <= 0 {
        return 0;
    }
    let through = if r + k >= n {
        net
    } else {
        // i128: net × units cannot overflow.
        i64::try_from(i128::from(net) * i128::from(r + k) / i128::from(n)).unwrap_or(net)
    };
    (through - refunded).max(0)
}

#[allow(clippy::too_many_arguments)]
fn event_data(
    payment_no: &str,
    refund_no: &str,
    amount: Amount,
    reason: &str,
    restock: bool,
    lines: &[RefundEventLine],
    refund_id: Option<String>,
) -> PaymentEventData {
    PaymentEventData {
        order_id: String::new(),
        payment_no: payment_no.to_owned(),
        provider: String::new(),
        amount,
        provider_txn_id: None,
        refund_no: Some(refund_no.to_owned()),
        refund_id,
        reason: Some(reason.to_owned()),
        lines: (!lines.is_empty()).then(|| lines.to_vec()),
        restock: Some(restock),
    }
}

/// An after-sale refund by its number.
pub async fn load(db: &Db, refund_no: &str) -> Result<Option<StoredRefund>, sqlx::Error> {
    let rows = select_refunds(db, RefundsOf::Refund(refund_no)).await?;
    Ok(rows.into_iter().next())
}

/// An order's after-sale refunds, oldest first.
pub async fn for_order(db: &Db, order_id: &str) -> Result<Vec<StoredRefund>, sqlx::Error> {
    select_refunds(db, RefundsOf::Order(order_id)).await
}

/// Every refund accepted and not yet completed, oldest first.
pub async fn requested(db: &Db) -> Result<Vec<StoredRefund>, sqlx::Error> {
    select_refunds(db, RefundsOf::State("REQUESTED")).await
}

enum RefundsOf<'a> {
    Refund(&'a str),
    Order(&'a str),
    State(&'a str),
}

type RefundRow = (
    String,
    String,
    String,
    String,
    i64,
    String,
    sql::Text,
    i64,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
);

async fn select_refunds(db: &Db, of: RefundsOf<'_>) -> Result<Vec<StoredRefund>, sqlx::Error> {
    let (stmt, key) = match of {
        RefundsOf::Refund(no) => (
            sql!(
                "SELECT r.refund_no, r.order_id, r.payment_no, p.provider, r.amount_minor, r.currency,
                        r.reason, r.restock, r.requested_by, r.state, r.provider_refund_id,
                        r.requested_at_ms, r.completed_at_ms
                   FROM refunds r JOIN payments p ON p.payment_no = r.payment_no
                  WHERE r.refund_no = $1"
            ),
            no,
        ),
        RefundsOf::Order(order_id) => (
            sql!(
                "SELECT r.refund_no, r.order_id, r.payment_no, p.provider, r.amount_minor, r.currency,
                        r.reason, r.restock, r.requested_by, r.state, r.provider_refund_id,
                        r.requested_at_ms, r.completed_at_ms
                   FROM refunds r JOIN payments p ON p.payment_no = r.payment_no
                  WHERE r.order_id = $1 ORDER BY r.requested_at_ms, r.refund_no"
            ),
            order_id,
        ),
        RefundsOf::State(state) => (
            sql!(
                "SELECT r.refund_no, r.order_id, r.payment_no, p.provider, r.amount_minor, r.currency,
                        r.reason, r.restock, r.requested_by, r.state, r.provider_refund_id,
                        r.requested_at_ms, r.completed_at_ms
                   FROM refunds r JOIN payments p ON p.payment_no = r.payment_no
                  WHERE r.state = $1 ORDER BY r.requested_at_ms, r.refund_no"
            ),
            state,
        ),
    };
    let rows: Vec<RefundRow> = stmt
        .on(db.engine())
        .bind(key)
        .fetch_all_as(db.pool())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let lines: Vec<(String, i64, i64)> = sql!(
            "SELECT sku, quantity, amount_minor FROM refund_lines WHERE refund_no = $1 ORDER BY sku"
        )
        .on(db.engine())
        .bind(r.0.as_str())
        .fetch_all_as(db.pool())
        .await?;
        out.push(StoredRefund {
            refund_no: r.0,
            order_id: r.1,
            payment_no: r.2,
            provider: r.3,
            amount_minor: r.4,
            currency: r.5,
            reason: r.6.into(),
            restock: r.7 == 1,
            lines: lines
                .into_iter()
                .map(|(sku, quantity, amount_minor)| RefundEventLine {
                    sku,
                    quantity,
                    amount_minor,
                })
                .collect(),
            requested_by: r.8,
            state: r.9,
            provider_refund_id: r.10,
            requested_at_ms: r.11,
            completed_at_ms: r.12,
        });
    }
    Ok(out)
}

/// What `refund_after_sale` returns once the money is back with the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterSaleRefunded {
    pub refund_no: String,
    pub order_id: String,
    pub customer_id: String,
    pub provider: String,
    pub amount_minor: i64,
    pub currency: String,
    pub refund_id: String,
    /// The order's status after this refund: `PARTIALLY_REFUNDED` or `REFUNDED`.
    pub order_status: OrderStatus,
    /// Of what was paid, how much has come back so far (this refund included).
    pub refunded_minor: i64,
    pub paid_minor: i64,
}

/// An error of [`execute`]: the payment side's (provider, follow-up) or the stock's.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("refund {0} does not exist")]
    NotFound(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl Classified for ExecuteError {
    fn code(&self) -> &'static str {
        match self {
            ExecuteError::Payment(e) => e.code(),
            ExecuteError::Inventory(e) => e.code(),
            ExecuteError::NotFound(_) => failure::INVARIANT_VIOLATION,
            ExecuteError::Db(e) => e.code(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            ExecuteError::Payment(e) => e.retryable(),
            ExecuteError::Inventory(e) => e.retryable(),
            ExecuteError::NotFound(_) => false,
            ExecuteError::Db(e) => e.retryable(),
        }
    }
}

/// Makes the refund at the provider and records it (see the module docs). Safe to run twice: the
/// provider answers a repeated refund number with the refund it made, and the transaction moves
/// the refund from `REQUESTED` once.
pub async fn execute(
    db: &Db,
    providers: &Providers,
    refund_no: &str,
) -> Result<AfterSaleRefunded, ExecuteError> {
    let refund = load(db, refund_no)
        .await?
        .ok_or_else(|| ExecuteError::NotFound(refund_no.to_owned()))?;
    let payment_no = PaymentNo::parse(refund.payment_no.as_str())
        .map_err(|e| ExecuteError::Db(sqlx::Error::Protocol(e.to_string())))?;
    let invariant = |detail: String| {
        ExecuteError::Payment(PaymentError::Invariant {
            payment_no: refund.payment_no.clone(),
            status: refund.state.clone(),
            detail,
        })
    };
    let amount = Currency::parse(&refund.currency)
        .and_then(|c| Money::new(refund.amount_minor, c))
        .map_err(|e| invariant(e.to_string()))?;
    let refund_id = match refund.provider_refund_id.clone() {
        // Recorded already: a repeat of an activity that completed.
        Some(id) if refund.state == "SUCCEEDED" => id,
        _ => {
            crate::payments::refund_at_provider(
                providers,
                &refund.provider,
                RefundRequest {
                    payment_no: payment_no.clone(),
                    refund_no: refund.refund_no.clone(),
                    amount,
                    reason: refund.reason.clone(),
                },
            )
            .await?
        }
    };
    let mut tx = db.begin_write().await?;
    let done = complete_in(&mut tx, &refund, &refund_id).await?;
    tx.commit().await?;
    Ok(done)
}

async fn complete_in(
    tx: &mut Transaction<'static, Any>,
    refund: &StoredRefund,
    refund_id: &str,
) -> Result<AfterSaleRefunded, ExecuteError> {
    let now = now_ms();
    // The order's row first: refunds of one order complete one after the other, so the sum below
    // sees every refund that completed before this one.
    sql!("UPDATE orders SET updated_at_ms = $2 WHERE order_id = $1")
        .on(&**tx)
        .bind(refund.order_id.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    let moved = sql!(
        "UPDATE refunds SET state = 'SUCCEEDED', provider_refund_id = $2, completed_at_ms = $3
          WHERE refund_no = $1 AND state = 'REQUESTED'"
    )
    .on(&**tx)
    .bind(refund.refund_no.as_str())
    .bind(refund_id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    let (customer_id, paid, refunded): (String, i64, i64) = sql!(
        "SELECT o.customer_id, p.paid_amount_minor,
                CAST((SELECT COALESCE(SUM(r.amount_minor), 0) FROM refunds r
                       WHERE r.order_id = o.order_id AND r.state = 'SUCCEEDED') AS BIGINT)
           FROM orders o JOIN payments p ON p.order_id = o.order_id
          WHERE o.order_id = $1"
    )
    .on(&**tx)
    .bind(refund.order_id.as_str())
    .fetch_one_as(&mut **tx)
    .await?;
    let status = if refunded >= paid {
        OrderStatus::Refunded
    } else {
        OrderStatus::PartiallyRefunded
    };
    if moved {
        if refund.restock {
            let order_id = OrderId::parse(refund.order_id.as_str())
                .map_err(|e| ExecuteError::Db(sqlx::Error::Protocol(e.to_string())))?;
            for line in &refund.lines {
                inventory::return_in(tx, &order_id, &line.sku, line.quantity).await?;
            }
        }
        let amount = Currency::parse(&refund.currency)
            .and_then(|c| Money::new(refund.amount_minor, c))
            .map(|m| m.to_string())
            .unwrap_or_else(|_| format!("{} {}", refund.amount_minor, refund.currency));
        let reason = format!("refund {} of {amount}: {}", refund.refund_no, refund.reason);
        orders::mark_after_sale_in(tx, &refund.order_id, status, &reason).await?;
        outbox::payment_in(
            tx,
            &refund.payment_no,
            EventType::RefundCompleted,
            event_data(
                &refund.payment_no,
                &refund.refund_no,
                Amount {
                    minor: refund.amount_minor,
                    currency: refund.currency.clone(),
                },
                &refund.reason,
                refund.restock,
                &refund.lines,
                Some(refund_id.to_owned()),
            ),
        )
        .await?;
    }
    Ok(AfterSaleRefunded {
        refund_no: refund.refund_no.clone(),
        order_id: refund.order_id.clone(),
        customer_id,
        provider: refund.provider.clone(),
        amount_minor: refund.amount_minor,
        currency: refund.currency.clone(),
        refund_id: refund_id.to_owned(),
        order_status: status,
        refunded_minor: refunded,
        paid_minor: paid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_refunds_add_up_to_the_line_whatever_the_steps() {
        // 3 units for 1000 net: one by one 333, 333, 334; two then one 666, 334; all at once 1000.
        assert_eq!(line_refund_amount(1000, 3, 0, 0, 1), 333);
        assert_eq!(line_refund_amount(1000, 3, 1, 333, 1), 333);
        assert_eq!(line_refund_amount(1000, 3, 2, 666, 1), 334);
        assert_eq!(line_refund_amount(1000, 3, 0, 0, 2), 666);
        assert_eq!(line_refund_amount(1000, 3, 2, 666, 1), 334);
        assert_eq!(line_refund_amount(1000, 3, 0, 0, 3), 1000);
        for n in 1..12i64 {
            for net in [0i64, 1, 7, 999, 1001, 123_457] {
                let (mut r, mut refunded) = (0, 0);
                while r < n {
                    let a = line_refund_amount(net, n, r, refunded, 1);
                    assert!(a >= 0);
                    refunded += a;
                    r += 1;
                }
                assert_eq!(refunded, net, "n={n} net={net}");
            }
        }
    }

    #[test]
    fn refund_numbers_are_derived_and_fit_the_providers() {
        let order = OrderId::parse("ord_0123456789abcdef01234567").unwrap();
        let payment = PaymentNo::for_order(&order);
        let a = after_sale_refund_no(&order, "k1");
        assert_eq!(a, after_sale_refund_no(&order, "k1"));
        assert_ne!(a, after_sale_refund_no(&order, "k2"));
        assert_eq!(a.len(), 42);
        assert!(a.starts_with(&crate::providers::refund_no_for(&payment)));
    }
}
