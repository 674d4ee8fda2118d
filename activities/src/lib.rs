//! # orderflow-activities
//!
//! Every side effect of an order lives here; the workflow only decides. A tour:
//!
//! * [`db`]: one [`db::Db`] for SQLite, PostgreSQL and MySQL/MariaDB, picked by `DATABASE_URL`, with migrations
//!   and `BEGIN IMMEDIATE` write transactions on SQLite.
//! * [`orders`]: catalog pricing, order rows, the status log.
//! * [`inventory`]: reserve / confirm / release stock with conditional updates and a ledger.
//! * [`edge`]: stock decided when an order is placed, before its workflow (flash sales).
//! * [`payments`]: our payment rows and log, and calls to the order's provider.
//! * [`providers`]: the [`providers::PaymentProvider`] trait and the `sandbox` gateway.
//! * [`sql`]: every statement written once and rendered for each engine (`sql!`).
//! * [`failure`]: the stable failure codes and the one rule for what is retryable.
//!
//! * [`open`], [`finish`]: an order's opening and its ending (paid, closed, rejected), each one
//!   step; every ending is one transaction.
//!
//! The Temporal activities are thin wrappers at the bottom of this file, grouped by the system they
//! touch: [`OrderActivities`] (`open_order`, `close_order`, `finish_order`, `hold_for_review`,
//! `mark_order_status`) and [`PaymentActivities`] (`refund_payment`, and `query_payment` for late
//! payments). Each is idempotent:
//! run twice, it has the effect of running once (see each module's docs for how). Activity names
//! are fixed strings so renaming a Rust method never breaks recorded histories.

pub mod coupons;
pub mod db;
pub mod edge;
pub mod failure;
pub mod finish;
pub mod inventory;
pub mod metrics;
pub mod open;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod providers;
pub mod refunds;
pub mod sql;

use failure::to_activity_error;
use finish::{CloseOrder, FinishOrder, HoldForReview};
use metrics::OrderMetrics;
use open::OpenedOrder;
use orderflow_domain::{OrderStatus, ValidOrder};
use orders::StatusChange;
use payments::{PaymentInquiry, PaymentRef, RefundPayment};
use providers::{CloseResult, Providers, RefundResult};
use std::sync::Arc;
use std::time::Duration;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument;

/// The default time a customer has to pay.
pub const DEFAULT_PAYMENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Order bookkeeping: pricing, order rows, status changes.
pub struct OrderActivities {
    db: db::Db,
    default_payment_timeout: Duration,
    /// Providers this worker can pay with: an order naming another is rejected before any stock
    /// is reserved.
    providers: Providers,
    metrics: Option<Arc<OrderMetrics>>,
}

impl OrderActivities {
    pub fn new(db: db::Db, default_payment_timeout: Duration, providers: &Providers) -> Self {
        OrderActivities {
            db,
            default_payment_timeout,
            providers: providers.clone(),
            metrics: None,
        }
    }

    pub fn with_metrics(mut self, metrics: Option<Arc<OrderMetrics>>) -> Self {
        self.metrics = metrics;
        self
    }
}

#[activities]
impl OrderActivities {
    /// The order's steps up to the wait in one (see [`open`]): recorded, stock reserved, payment
    /// created, `AWAITING_PAYMENT`.
    #[activity(name = "open_order")]
    pub async fn open_order(
        self: Arc<Self>,
        _ctx: ActivityContext,
        order: ValidOrder,
    ) -> Result<OpenedOrder, ActivityError> {
        let (opened, recorded) = open::open(
            &self.db,
            &self.providers,
            &order,
            self.default_payment_timeout.as_secs(),
        )
        .instrument(tracing::info_span!("open_order", order_id = %order.order_id, provider = %order.provider))
        .await
        .map_err(fail(&self.metrics, "open_order"))?;
        self.status_reached(&open::awaiting_payment(&order), recorded)
            .await;
        Ok(opened)
    }

    /// Sets the order's status and appends to the status log (once per status).
    #[activity(name = "mark_order_status")]
    pub async fn mark_order_status(
        self: Arc<Self>,
        _ctx: ActivityContext,
        change: StatusChange,
    ) -> Result<(), ActivityError> {
        let changed = orders::mark_status(&self.db, &change)
            .instrument(tracing::info_span!("mark_order_status", order_id = %change.order_id, status = %change.status))
            .await
            .map_err(fail(&self.metrics, "mark_order_status"))?;
        self.status_reached(&change, changed).await;
        Ok(())
    }

    /// An order's last step in one transaction (see [`finish`]): the payment recorded, the stock
    /// confirmed or released, the final status.
    #[activity(name = "finish_order")]
    pub async fn finish_order(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: FinishOrder,
    ) -> Result<(), ActivityError> {
        let done = finish::finish(&self.db, &req)
            .instrument(tracing::info_span!("finish_order", order_id = %req.order_id, status = %req.change.status))
            .await
            .map_err(fail(&self.metrics, "finish_order"))?;
        self.status_reached(&req.change, done.status_recorded).await;
        Ok(())
    }

    /// A payment that does not match its order, in one transaction (see
    /// [`finish::hold_for_review`]): the payment `MISMATCHED`, the order `NEEDS_REVIEW`.
    #[activity(name = "hold_for_review")]
    pub async fn hold_for_review(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: HoldForReview,
    ) -> Result<(), ActivityError> {
        let recorded = finish::hold_for_review(&self.db, &req)
            .instrument(tracing::info_span!("hold_for_review", order_id = %req.change.order_id, payment_no = %req.paid.payment_no))
            .await
            .map_err(fail(&self.metrics, "hold_for_review"))?;
        self.status_reached(&req.change, recorded).await;
        Ok(())
    }

    /// The close path in one step (see [`finish::close`]): the provider asked and the charge
    /// closed unless paid; if closed, the payment, the stock and the ending in one transaction.
    #[activity(name = "close_order")]
    pub async fn close_order(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: CloseOrder,
    ) -> Result<CloseResult, ActivityError> {
        let (result, finished) = finish::close(&self.db, &self.providers, &req)
            .instrument(tracing::info_span!("close_order", order_id = %req.order_id, status = %req.change.status))
            .await
            .map_err(fail(&self.metrics, "close_order"))?;
        if let Some(done) = finished {
            self.status_reached(&req.change, done.status_recorded).await;
        }
        Ok(result)
    }
}

impl OrderActivities {
    /// Business metrics for a status change, counted once (`changed` is false on a repeat).
    async fn status_reached(&self, change: &StatusChange, changed: bool) {
        if let (true, Some(m)) = (changed, &self.metrics) {
            let code = change
                .reason
                .as_deref()
                .and_then(|r| r.split_once(':'))
                .map(|(code, _)| code);
            m.order_reached(change.status, code);
            // Only these two statuses have a latency to record: no read for the others (every
            // order reaches AWAITING_PAYMENT inside `open_order`, before its timer's clock is read).
            if !matches!(change.status, OrderStatus::Paid | OrderStatus::Closed) {
                return;
            }
            if let Ok(timing) = orders::timing(&self.db, &change.order_id).await {
                let since = |from: i64| {
                    std::time::Duration::from_millis(
                        u64::try_from(db::now_ms() - from).unwrap_or(0),
                    )
                };
                match change.status {
                    OrderStatus::Paid => m.payment_latency(since(timing.created_at_ms)),
                    OrderStatus::Closed => {
                        if let Some(deadline) = timing.deadline_ms {
                            m.close_lateness(since(deadline));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Payments at the provider and in our books.
pub struct PaymentActivities {
    db: db::Db,
    providers: Providers,
    metrics: Option<Arc<OrderMetrics>>,
}

impl PaymentActivities {
    pub fn new(db: db::Db, providers: Providers) -> Self {
        PaymentActivities {
            db,
            providers,
            metrics: None,
        }
    }

    pub fn with_metrics(mut self, metrics: Option<Arc<OrderMetrics>>) -> Self {
        self.metrics = metrics;
        self
    }
}

/// Counts a failed attempt (by activity and code) and converts the error for Temporal.
fn fail<'m, E: failure::Classified>(
    metrics: &'m Option<Arc<OrderMetrics>>,
    activity: &'static str,
) -> impl FnOnce(E) -> ActivityError + 'm {
    move |err| {
        if let Some(m) = metrics {
            m.activity_failed(activity, err.code());
        }
        to_activity_error(err)
    }
}

#[activities]
impl PaymentActivities {
    /// What the provider holds for a payment number and how much of it our order kept (see
    /// [`payments::inquire`]); retried while the order is still open.
    #[activity(name = "query_payment")]
    pub async fn query_payment(
        self: Arc<Self>,
        _ctx: ActivityContext,
        payment: PaymentRef,
    ) -> Result<PaymentInquiry, ActivityError> {
        payments::inquire(&self.db, &self.providers, &payment)
            .instrument(tracing::info_span!("query_payment", payment_no = %payment.payment_no, provider = %payment.provider))
            .await
            .map_err(fail(&self.metrics, "query_payment"))
    }

    #[activity(name = "refund_payment")]
    pub async fn refund_payment(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: RefundPayment,
    ) -> Result<RefundResult, ActivityError> {
        let refunded = payments::refund(&self.db, &self.providers, &req)
            .instrument(tracing::info_span!("refund_payment", payment_no = %req.payment_no, provider = %req.provider))
            .await
            .map_err(fail(&self.metrics, "refund_payment"))?;
        if let Some(m) = &self.metrics {
            m.refunded(req.provider.as_str());
        }
        Ok(refunded)
    }

    /// A second payment for a payment number already paid, refunded once (see
    /// [`payments::refund_second`]).
    #[activity(name = "refund_second_payment")]
    pub async fn refund_second_payment(
        self: Arc<Self>,
        _ctx: ActivityContext,
        req: payments::RefundSecondPayment,
    ) -> Result<RefundResult, ActivityError> {
        let refunded = payments::refund_second(&self.db, &self.providers, &req)
            .instrument(tracing::info_span!("refund_second_payment", payment_no = %req.payment_no, provider = %req.provider))
            .await
            .map_err(fail(&self.metrics, "refund_second_payment"))?;
        if let Some(m) = &self.metrics {
            m.refunded(req.provider.as_str());
        }
        Ok(refunded)
    }

    /// An operator's after-sale refund, made at the provider under its refund number and
    /// recorded (see [`refunds::execute`]); retried while the provider is processing it.
    #[activity(name = "refund_after_sale")]
    pub async fn refund_after_sale(
        self: Arc<Self>,
        _ctx: ActivityContext,
        refund_no: String,
    ) -> Result<refunds::AfterSaleRefunded, ActivityError> {
        let done = refunds::execute(&self.db, &self.providers, &refund_no)
            .instrument(tracing::info_span!("refund_after_sale", refund_no = %refund_no))
            .await
            .map_err(fail(&self.metrics, "refund_after_sale"))?;
        if let Some(m) = &self.metrics {
            m.refunded(&done.provider);
        }
        Ok(done)
    }
}
