//! The first half of an order in one step: priced and recorded `PENDING`, its stock reserved,
//! its payment created at the provider, and the order `AWAITING_PAYMENT`.
//!
//! Each part has its own idempotency (a repeat returns the stored pricing, reserves nothing
//! twice, reuses the payment number and its first deadline, logs the status once), so the whole
//! step is safe to run twice, and a retry after a failure part-way picks up where the failure
//! was. A final failure of any part (unknown SKU, out of stock, a
//! provider that refuses the charge) fails the step with that part's code; the workflow then
//! releases whatever stock the order holds (nothing, if the reservation was what failed) and
//! rejects it.
//!
//! One step, not four: each local activity costs the worker a round of the SDK's local-activity
//! machinery and the workflow task another activation, which is most of the worker's CPU per
//! order (see bench/NOTES.md).

use crate::db::{self, Db};
use crate::finish::StepError;
use crate::inventory::{self, ReserveStock};
use crate::orders::{self, PricedOrder, StatusChange};
use crate::payments::{self, CreatePayment, PaymentCreated};
use crate::providers::Providers;
use orderflow_domain::{OrderStatus, ValidOrder};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// What `open_order` returns: the order is awaiting payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenedOrder {
    pub priced: PricedOrder,
    /// The payment as created; its `deadline_ms` is the stored one (the first attempt's).
    pub payment: PaymentCreated,
    /// This worker's clock as the step ended. The workflow times its deadline timer from here:
    /// the server starts a timer when it records the task's completion, moments after the step
    /// ended, whereas the workflow's own clock stands at the start of the task, before the step
    /// ran — a timer of `deadline − task start` fired the whole task's length after the deadline.
    /// Deadline and this clock are the same machine's, so no clock skew enters the timer either.
    pub opened_at_ms: i64,
}

/// Records, reserves, creates the payment and marks the order `AWAITING_PAYMENT`. Returns the
/// order as opened and whether this call recorded the status (false on a repeat).
pub async fn open(
    db: &Db,
    providers: &Providers,
    order: &ValidOrder,
    default_timeout_secs: u64,
) -> Result<(OpenedOrder, bool), StepError> {
    orders::require_provider(providers, order)?;
    // Each part keeps the span its own step had, inside `open_order`'s, so a trace still shows
    // where the time went.
    let priced = orders::record(db, order, default_timeout_secs)
        .instrument(tracing::info_span!("record_order", order_id = %order.order_id))
        .await?;
    let reserve = ReserveStock::for_order(order);
    inventory::reserve(db, &reserve)
        .instrument(tracing::info_span!("reserve_stock", order_id = %order.order_id))
        .await?;
    let deadline_ms = db::now_ms().saturating_add(
        i64::try_from(priced.payment_timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    );
    let payment = payments::create(
        db,
        providers,
        &CreatePayment {
            order_id: order.order_id.clone(),
            provider: order.provider.clone(),
            amount: priced.total,
            deadline_ms,
        },
    )
    .instrument(tracing::info_span!("create_payment", order_id = %order.order_id, provider = %order.provider))
    .await?;
    let recorded = orders::mark_status(db, &awaiting_payment(order))
        .instrument(tracing::info_span!("mark_order_status", order_id = %order.order_id, status = %OrderStatus::AwaitingPayment))
        .await?;
    Ok((
        OpenedOrder {
            priced,
            payment,
            // Read last: the workflow's timer counts from here.
            opened_at_ms: db::now_ms(),
        },
        recorded,
    ))
}

/// The status change `open` records last.
pub fn awaiting_payment(order: &ValidOrder) -> StatusChange {
    StatusChange {
        order_id: order.order_id.to_string(),
        customer_id: order.customer_id.to_string(),
        provider: order.provider.to_string(),
        status: OrderStatus::AwaitingPayment,
        reason: None,
    }
}
