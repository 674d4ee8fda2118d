//! `OrderWorkflow`: one workflow per order, id `order-<order_id>`.
//!
//! ```text
//! validate ─✗─> REJECTED                              (recorded when the order id is usable)
//! open_order                                [local]   priced, recorded, stock reserved, payment
//!   ─✗─> finish_order: release, REJECTED    [local]   created, AWAITING_PAYMENT: one step
//! AWAITING_PAYMENT: wait for the first of
//!   payment signal ──────────> settle
//!   cancel update ───────────> close_order ─> CANCELLED                    (paid after all? settle)
//!   Temporal cancellation ───> same as cancel; the execution ends Canceled
//!   payment deadline timer ──> close_order ─> CLOSED                       (paid after all? settle)
//! settle: amount & currency match ─> finish_order: confirm, PAID
//!         otherwise ─> hold_for_review: NEEDS_REVIEW, wait for `resolve`
//!            ACCEPT ─> finish_order: confirm, PAID
//!            REFUND ─> refund_payment ─> finish_order: release, REFUNDED
//! ```
//!
//! `close_order` asks the provider first (a lost callback never closes a paid order), closes the
//! charge and, if it closed, records the payment, the released stock and the ending in one
//! transaction. Every ending is one transaction: `finish_order` or `close_order`.
//!
//! **Local or regular, at each call site.** The opening runs as local activities
//! ([`Flow::local_step`]): inside the first workflow task, one marker event each, no server round
//! trip; a step that keeps failing (an outage) is handed to a regular activity. Everything after
//! the wait is a regular activity ([`Flow::recorded_step`]): which way a wait ended is a race
//! between signals, updates and the timer, and it must be in history before anything acts on it
//! (a workflow task whose local steps already acted can still be thrown away and retried); the
//! provider's answers can change if asked again; and signals keep arriving after the wait (repeated
//! callbacks), while sdk-core 0.10 mishandles a workflow task that arrives during a local
//! activity.
//!
//! Determinism: time comes only from `ctx.workflow_time()`, collections are `BTreeSet` /
//! `VecDeque`, and every side effect is an activity. Activities run with a cancellation token of
//! their own, so cancelling the workflow never interrupts a half-done step: cancellation is
//! observed while waiting, and answered with compensation.

use crate::search_attributes;
use orderflow_activities::OrderActivities;
use orderflow_activities::PaymentActivities;
use orderflow_activities::failure::{self, code_of, message_of};
use orderflow_activities::finish::{CloseOrder, FinishOrder, HoldForReview, StockOutcome};
use orderflow_activities::open::OpenedOrder;
use orderflow_activities::orders::{PricedOrder, StatusChange};
use orderflow_activities::payments::{
    PaymentRef, ReceivedPayment, RefundPayment, RefundSecondPayment,
};
use orderflow_activities::providers::{ChargeState, CloseResult};
use orderflow_domain::{
    CancelRequest, Currency, Money, OrderInput, OrderOutcome, OrderStatus, OrderView, PaymentNo,
    PaymentOutcome, PaymentSignal, ResolveAction, ResolveRequest, ValidOrder,
};
use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, UNIX_EPOCH};
use temporalio_common::{ActivityDefinition, RetryPolicy};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ApplicationFailure, CancellableFuture,
    LocalActivityOptions, SyncWorkflowContext, TimerOptions, TimerResult,
    WorkflowCancellationToken, WorkflowContext, WorkflowContextView, WorkflowResult,
    WorkflowTermination,
};

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The patch that refunds second payments arriving while an order waits for review.
pub const REFUND_SECOND_PAYMENTS: &str = "refund-second-payments";

/// Per-worker settings that shape the workflow's commands. They must be the same on every worker
/// of a task queue (and in the replayer), like the workflow code itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderWorkflowConfig {
    /// Upsert the search attributes where the order comes to rest. Off only for servers that
    /// cannot register custom attributes (the time-skipping test server).
    pub search_attributes: bool,
}

impl Default for OrderWorkflowConfig {
    fn default() -> Self {
        OrderWorkflowConfig {
            search_attributes: true,
        }
    }
}

#[workflow]
pub struct OrderWorkflow {
    config: OrderWorkflowConfig,
    view: OrderView,
    /// Provider event ids already accepted: callbacks arrive more than once.
    seen_events: BTreeSet<String>,
    /// Accepted payment signals the main loop has not looked at yet.
    inbox: VecDeque<PaymentSignal>,
    cancel_reason: Option<String>,
    resolution: Option<ResolveRequest>,
    /// The wait for payment has ended (paid, timed out, cancelled): too late to cancel.
    payment_wait_over: bool,
}

impl OrderWorkflow {
    pub fn new(config: OrderWorkflowConfig) -> Self {
        OrderWorkflow {
            config,
            view: OrderView::default(),
            seen_events: BTreeSet::new(),
            inbox: VecDeque::new(),
            cancel_reason: None,
            resolution: None,
            payment_wait_over: false,
        }
    }

    fn status(&self) -> Option<OrderStatus> {
        self.view.status
    }
}

#[workflow_methods(factory_only)]
impl OrderWorkflow {
    #[run(name = "OrderWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: OrderInput,
    ) -> WorkflowResult<OrderOutcome> {
        ctx.state_mut(|s| {
            s.view.order_id = input.order_id.clone();
            s.view.customer_id = input.customer_id.clone();
            s.view.provider = input.provider.clone();
        });
        let flow = Flow {
            ctx: ctx.clone(),
            search_attributes_stale: std::cell::Cell::new(false),
        };
        match input.validate() {
            Ok(order) => flow.process(order).await,
            Err(invalid) => flow.reject_invalid(&input, invalid.to_string()).await,
        }
    }

    /// A verified payment callback. Repeats (same provider event id) are dropped here.
    #[signal(name = "payment")]
    pub fn payment(&mut self, _ctx: &mut SyncWorkflowContext<Self>, signal: PaymentSignal) {
        if signal.event_id.is_empty() || !self.seen_events.insert(signal.event_id.clone()) {
            return;
        }
        self.view.payment_events.push(signal.event_id.clone());
        self.inbox.push_back(signal);
    }

    #[update_validator(cancel)]
    fn validate_cancel(
        &self,
        _ctx: &WorkflowContextView,
        _req: &CancelRequest,
    ) -> Result<(), HandlerError> {
        match self.status() {
            Some(OrderStatus::AwaitingPayment)
                if self.cancel_reason.is_none() && !self.payment_wait_over =>
            {
                Ok(())
            }
            Some(OrderStatus::AwaitingPayment) if self.cancel_reason.is_some() => {
                Err("the order is already being cancelled".into())
            }
            // The wait is over (the deadline passed or a payment arrived): the order is settling
            // or closing, and a cancel accepted now could not be honoured.
            Some(OrderStatus::AwaitingPayment) => {
                Err("the order is already closing or settling its payment".into())
            }
            // Not yet awaiting payment (its first workflow task has not completed: a worker may
            // have died in it). Accepted: the order cancels as soon as it reaches the wait.
            None | Some(OrderStatus::Pending) if self.cancel_reason.is_none() => Ok(()),
            Some(status) => Err(format!(
                "only an order awaiting payment can be cancelled; this order is {status}"
            )
            .into()),
            None => Err("the order is already being cancelled".into()),
        }
    }

    /// Asks the order to cancel. Returns at once; the order then closes its payment, releases its
    /// stock and ends `CANCELLED` — or `PAID` if the provider says the customer paid first.
    #[update(name = "cancel")]
    pub fn cancel(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        req: CancelRequest,
    ) -> OrderView {
        let reason = if req.reason.trim().is_empty() {
            "cancelled on request".to_owned()
        } else {
            req.reason
        };
        self.cancel_reason = Some(reason);
        self.view.waiting_for = Some("cancellation: closing the payment".to_owned());
        self.view.clone()
    }

    #[update_validator(resolve)]
    fn validate_resolve(
        &self,
        _ctx: &WorkflowContextView,
        _req: &ResolveRequest,
    ) -> Result<(), HandlerError> {
        match self.status() {
            Some(OrderStatus::NeedsReview) if self.resolution.is_none() => Ok(()),
            Some(OrderStatus::NeedsReview) => Err("the order is already being resolved".into()),
            Some(status) => Err(format!(
                "only an order in NEEDS_REVIEW can be resolved; this order is {status}"
            )
            .into()),
            None => Err("the order has not started yet".into()),
        }
    }

    /// An operator's decision on an order in `NEEDS_REVIEW`: accept the payment or refund it.
    #[update(name = "resolve")]
    pub fn resolve(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        req: ResolveRequest,
    ) -> OrderView {
        self.view.waiting_for = Some(match req.action {
            ResolveAction::Accept => "resolution: accepting the payment".to_owned(),
            ResolveAction::Refund => "resolution: refunding the payment".to_owned(),
        });
        self.resolution = Some(req);
        self.view.clone()
    }

    #[query(name = "status")]
    pub fn status_query(&self, _ctx: &WorkflowContextView) -> OrderView {
        self.view.clone()
    }
}

/// How the wait for payment ended.
enum WaitOutcome {
    Payment(PaymentSignal),
    CancelRequested(String),
    WorkflowCancelled,
    DeadlinePassed,
}

/// Why an unpaid order closes.
enum Closing {
    Timeout,
    Cancel(String),
    WorkflowCancelled,
}

/// How a step runs; chosen at each call site (see the module docs).
#[derive(Clone, Copy)]
enum Step {
    /// [`Flow::local_step`]: inside the current workflow task.
    Local,
    /// [`Flow::recorded_step`]: a regular activity, its result in history before anything acts.
    Recorded,
}

/// How an order ends, recorded by `finish_order` in one transaction.
struct Ending {
    stock: StockOutcome,
    /// The payment to record as paid (orders that end `PAID`).
    paid: Option<ReceivedPayment>,
    status: OrderStatus,
    reason: Option<String>,
}

impl Ending {
    fn paid(received: ReceivedPayment) -> Self {
        Ending {
            stock: StockOutcome::Confirm,
            paid: Some(received),
            status: OrderStatus::Paid,
            reason: None,
        }
    }

    /// The stock goes back (safe when nothing was reserved).
    fn released(status: OrderStatus, reason: String) -> Self {
        Ending {
            stock: StockOutcome::Release,
            paid: None,
            status,
            reason: Some(reason),
        }
    }
}

/// The steps of one order. Holds a clone of the context so helpers can be plain methods.
struct Flow {
    ctx: WorkflowContext<OrderWorkflow>,
    /// The status changed since the search attributes were last upserted. They are upserted where
    /// the order comes to rest (before a wait, before a regular activity, at the end), not at
    /// every status: upserts in one workflow task reach the server together, so the earlier ones
    /// are never visible anyway, and each costs the server a visibility write.
    search_attributes_stale: std::cell::Cell<bool>,
}

impl Flow {
    async fn process(&self, order: ValidOrder) -> WorkflowResult<OrderOutcome> {
        self.set_view_status(OrderStatus::Pending, None);
        // The first workflow task runs open_order and starts the wait; it may be retried from
        // scratch (a signal or cancel arriving meanwhile fails its completion), so the path
        // through it never branches on cancellation: the wait sees a cancellation and closes.
        let opened: OpenedOrder = match self
            .local_step(|| OrderActivities::open_order, order.clone())
            .await
        {
            Ok(opened) => opened,
            // Whichever part failed, releasing is safe: an order that reserved nothing holds
            // nothing, and one whose payment the provider refused gives its stock back.
            Err(e) => return self.release_and_reject(&order, &e).await,
        };
        let OpenedOrder {
            priced,
            payment: created,
            opened_at_ms,
        } = opened;
        let deadline_ms = created.deadline_ms;
        self.ctx.state_mut(|s| {
            s.view.amount_minor = Some(priced.total.minor());
            s.view.currency = Some(priced.total.currency().code().to_owned());
            s.view.payment_no = Some(created.payment_no.to_string());
            s.view.checkout_url = Some(created.pay.checkout_url.clone());
            s.view.qr_payload = Some(created.pay.qr_payload.clone());
            s.view.payment_deadline_ms = Some(deadline_ms);
            // Shown only for orders with a coupon, so the view of any other order is as it was.
            if priced.coupon_code.is_some() {
                s.view.subtotal_minor = priced.subtotal_minor;
                s.view.discount_minor = Some(priced.discount_minor);
                s.view.coupon_code = priced.coupon_code.clone();
            }
        });
        // open_order recorded it in the database.
        self.set_view_status(OrderStatus::AwaitingPayment, None);
        let payment = PaymentRef {
            payment_no: created.payment_no,
            provider: order.provider.clone(),
        };

        match self
            .wait_for_payment(&payment.payment_no, deadline_ms, opened_at_ms)
            .await
        {
            WaitOutcome::Payment(signal) => {
                let received = ReceivedPayment {
                    payment_no: payment.payment_no.clone(),
                    paid_amount_minor: signal.amount_minor,
                    paid_currency: signal.currency.clone(),
                    provider_txn_id: signal.provider_txn_id.clone(),
                    source: signal.event_id.clone(),
                };
                self.settle(&order, &priced, &payment, received).await
            }
            WaitOutcome::CancelRequested(reason) => {
                self.close(&order, &priced, &payment, Closing::Cancel(reason))
                    .await
            }
            WaitOutcome::WorkflowCancelled => {
                self.close(&order, &priced, &payment, Closing::WorkflowCancelled)
                    .await
            }
            WaitOutcome::DeadlinePassed => {
                self.close(&order, &priced, &payment, Closing::Timeout)
                    .await
            }
        }
    }

    /// Waits for a payment for `payment_no`, a cancel request, workflow cancellation or the
    /// deadline — whichever comes first. Failed attempts and signals for another payment number
    /// are noted and the wait goes on.
    ///
    /// The timer counts from `opened_at_ms` (`open_order`'s clock as it ended), not from workflow
    /// time: workflow time stands at the start of the task, before the step ran, while the server
    /// starts the timer when the task completes, so it would fire the whole task's length late.
    async fn wait_for_payment(
        &self,
        payment_no: &PaymentNo,
        deadline_ms: i64,
        opened_at_ms: i64,
    ) -> WaitOutcome {
        self.publish_search_attributes();
        let remaining =
            Duration::from_millis(u64::try_from(deadline_ms - opened_at_ms).unwrap_or(0));
        let timer = self.ctx.timer(
            TimerOptions::builder(remaining)
                .summary("payment deadline".to_owned())
                .build(),
        );
        let mut timer = std::pin::pin!(timer);
        self.waiting_for(
            "a payment callback from the provider, a cancel request, or the payment deadline",
        );
        self.ctx.state_mut(|s| s.view.accepting_payments = true);
        let outcome = self.wait_loop(payment_no, timer.as_mut()).await;
        self.ctx.state_mut(|s| {
            s.view.accepting_payments = false;
            s.payment_wait_over = true;
        });
        outcome
    }

    async fn wait_loop(
        &self,
        payment_no: &PaymentNo,
        mut timer: std::pin::Pin<&mut impl CancellableFuture<Output = TimerResult>>,
    ) -> WaitOutcome {
        loop {
            let woke = temporalio_sdk::workflows::select! {
                woke = self.ctx.wait_condition(|s| !s.inbox.is_empty() || s.cancel_reason.is_some()) => woke.is_ok(),
                fired = timer.as_mut() => {
                    if fired == TimerResult::Cancelled {
                        return WaitOutcome::WorkflowCancelled;
                    }
                    return WaitOutcome::DeadlinePassed;
                }
            };
            if !woke {
                timer.cancel();
                return WaitOutcome::WorkflowCancelled;
            }
            // Payments first: if the money and a cancel arrive together, the customer has paid.
            while let Some(signal) = self.ctx.state_mut(|s| s.inbox.pop_front()) {
                if signal.payment_no != payment_no.as_str() {
                    self.note(format!(
                        "ignored payment event {} for another payment number {}",
                        signal.event_id, signal.payment_no
                    ));
                    continue;
                }
                match signal.outcome {
                    PaymentOutcome::Paid => {
                        timer.cancel();
                        return WaitOutcome::Payment(signal);
                    }
                    PaymentOutcome::Failed => self.note(format!(
                        "payment attempt failed (event {}); still waiting",
                        signal.event_id
                    )),
                }
            }
            if let Some(reason) = self.ctx.state(|s| s.cancel_reason.clone()) {
                timer.cancel();
                return WaitOutcome::CancelRequested(reason);
            }
        }
    }

    /// The close path, shared by timeout, cancel and workflow cancellation, in one step
    /// (`close_order`): ask the provider first (a lost callback must not close a paid order),
    /// close the charge unless it is paid, and if it closed, record the payment, the released
    /// stock and the ending in one transaction.
    async fn close(
        &self,
        order: &ValidOrder,
        priced: &PricedOrder,
        payment: &PaymentRef,
        why: Closing,
    ) -> WorkflowResult<OrderOutcome> {
        let (status, reason) = match &why {
            Closing::Timeout => (
                OrderStatus::Closed,
                "not paid before the payment deadline".to_owned(),
            ),
            Closing::Cancel(reason) => (OrderStatus::Cancelled, reason.clone()),
            Closing::WorkflowCancelled => (
                OrderStatus::Cancelled,
                "the workflow was cancelled".to_owned(),
            ),
        };
        self.waiting_for("the provider: checking and closing the payment");
        let req = CloseOrder {
            order_id: order.order_id.clone(),
            payment: payment.clone(),
            change: self.status_change(status, Some(reason.clone())),
        };
        // The first step after the wait, and a question to the provider: recorded.
        let closed = self
            .recorded_step(OrderActivities::close_order, req)
            .await
            .map_err(fail)?;
        if let CloseResult::AlreadyPaid(state) = closed {
            let received = received_from(payment, &state, "close");
            return self.settle(order, priced, payment, received).await;
        }
        let outcome = self.finished(status, Some(reason))?;
        if matches!(why, Closing::WorkflowCancelled) {
            // Report the execution as Canceled, as whoever cancelled it expects; the order row and
            // the search attribute already say CANCELLED.
            return Err(WorkflowTermination::cancelled());
        }
        Ok(outcome)
    }

    /// The customer paid. Keep it if it matches the order; otherwise park it for an operator.
    async fn settle(
        &self,
        order: &ValidOrder,
        priced: &PricedOrder,
        payment: &PaymentRef,
        received: ReceivedPayment,
    ) -> WorkflowResult<OrderOutcome> {
        let expected = priced.total;
        let matches = received.paid_amount_minor == expected.minor()
            && received.paid_currency == expected.currency().code();
        if matches {
            return self.accept(order, received).await;
        }
        let reason = format!(
            "paid {} but the order is {}",
            describe_amount(received.paid_amount_minor, &received.paid_currency),
            expected
        );
        let hold = HoldForReview {
            paid: received.clone(),
            change: self.status_change(OrderStatus::NeedsReview, Some(reason.clone())),
        };
        self.recorded_step(OrderActivities::hold_for_review, hold)
            .await
            .map_err(fail)?;
        self.set_view_status(OrderStatus::NeedsReview, Some(reason.clone()));
        self.waiting_for("an operator's `resolve` update (ACCEPT or REFUND)");
        self.publish_search_attributes();

        // Decided once per order, here: only orders that reach review ask (and record the
        // marker); histories from before the change replay the plain wait.
        let decision = if self.ctx.patched(REFUND_SECOND_PAYMENTS) {
            self.wait_for_resolution(payment, &received).await
        } else {
            self.ctx.wait_condition(|s| s.resolution.is_some()).await
        };
        let (action, note) = match decision {
            Ok(()) => {
                let r = self
                    .ctx
                    .state(|s| s.resolution.clone())
                    .ok_or_else(|| fail_msg("resolution vanished"))?;
                let who = if r.operator.is_empty() {
                    "an operator".to_owned()
                } else {
                    r.operator.clone()
                };
                (r.action, format!("{reason}; resolved by {who}: {}", r.note))
            }
            // Cancelling an order that holds money means giving the money back.
            Err(_) => (
                ResolveAction::Refund,
                format!("{reason}; the workflow was cancelled during review"),
            ),
        };
        match action {
            ResolveAction::Accept => self.accept(order, received).await,
            ResolveAction::Refund => {
                let refund_amount = Money::new(
                    received.paid_amount_minor,
                    Currency::parse(&received.paid_currency).unwrap_or(expected.currency()),
                )
                .unwrap_or(expected);
                self.recorded_step(
                    PaymentActivities::refund_payment,
                    RefundPayment {
                        payment_no: payment.payment_no.clone(),
                        provider: payment.provider.clone(),
                        amount: refund_amount,
                        reason: note.clone(),
                    },
                )
                .await
                .map_err(fail)?;
                let ending = Ending::released(OrderStatus::Refunded, note);
                self.finish(Step::Recorded, order, ending).await
            }
        }
    }

    /// Waits for the operator's decision. Meanwhile a second payment for this payment number (a
    /// callback with another transaction id: the customer paid twice) is money no order will
    /// keep: it is refunded at once, each transaction once, under a refund number derived from
    /// its transaction id. Repeats of the held payment's callback change nothing.
    async fn wait_for_resolution(
        &self,
        payment: &PaymentRef,
        held: &ReceivedPayment,
    ) -> Result<(), temporalio_sdk::WorkflowCancellationError> {
        let mut refunded: BTreeSet<String> = BTreeSet::new();
        loop {
            self.ctx
                .wait_condition(|s| s.resolution.is_some() || !s.inbox.is_empty())
                .await?;
            while let Some(signal) = self.ctx.state_mut(|s| s.inbox.pop_front()) {
                let second = signal.payment_no == payment.payment_no.as_str()
                    && signal.outcome == PaymentOutcome::Paid
                    && !signal.provider_txn_id.is_empty()
                    && signal.provider_txn_id != held.provider_txn_id;
                if !second || !refunded.insert(signal.provider_txn_id.clone()) {
                    continue;
                }
                let Ok(amount) = Currency::parse(&signal.currency)
                    .and_then(|c| Money::new(signal.amount_minor, c))
                else {
                    self.note(format!(
                        "second payment {} has no usable amount; left for an operator",
                        signal.provider_txn_id
                    ));
                    continue;
                };
                self.waiting_for("the provider: refunding a second payment");
                let req = RefundSecondPayment {
                    payment_no: payment.payment_no.clone(),
                    provider: payment.provider.clone(),
                    amount,
                    provider_txn_id: signal.provider_txn_id.clone(),
                    reason: format!(
                        "second payment (txn {}) while the order waited for review",
                        signal.provider_txn_id
                    ),
                };
                // A failure here is an outage, retried without end; only a final refusal ends
                // the wait, loudly.
                if let Err(e) = self
                    .recorded_step(PaymentActivities::refund_second_payment, req)
                    .await
                {
                    self.note(format!(
                        "could not refund second payment {}: {}",
                        signal.provider_txn_id,
                        failure_reason(&e)
                    ));
                }
                self.waiting_for("an operator's `resolve` update (ACCEPT or REFUND)");
            }
            if self.ctx.state(|s| s.resolution.is_some()) {
                return Ok(());
            }
        }
    }

    /// Confirms the payment and the stock: the order is `PAID`.
    async fn accept(
        &self,
        order: &ValidOrder,
        received: ReceivedPayment,
    ) -> WorkflowResult<OrderOutcome> {
        self.waiting_for("confirming the payment and the stock");
        self.finish(Step::Recorded, order, Ending::paid(received))
            .await
    }

    /// Opening failed for good: give back whatever stock the order holds and reject it.
    async fn release_and_reject(
        &self,
        order: &ValidOrder,
        err: &ActivityExecutionError,
    ) -> WorkflowResult<OrderOutcome> {
        let ending = Ending::released(OrderStatus::Rejected, failure_reason(err));
        self.finish(Step::Local, order, ending).await
    }

    /// The order's last step, `finish_order`: its payment recorded (if paid), its stock confirmed
    /// or released, its final status — one transaction.
    async fn finish(
        &self,
        step: Step,
        order: &ValidOrder,
        ending: Ending,
    ) -> WorkflowResult<OrderOutcome> {
        let Ending {
            stock,
            paid,
            status,
            reason,
        } = ending;
        let req = FinishOrder {
            order_id: order.order_id.clone(),
            stock,
            paid,
            change: self.status_change(status, reason.clone()),
        };
        match step {
            Step::Local => self.local_step(|| OrderActivities::finish_order, req).await,
            Step::Recorded => self.recorded_step(OrderActivities::finish_order, req).await,
        }
        .map_err(fail)?;
        self.finished(status, reason)
    }

    /// Input that failed validation. It is recorded when the order id itself is usable.
    async fn reject_invalid(
        &self,
        input: &OrderInput,
        reason: String,
    ) -> WorkflowResult<OrderOutcome> {
        if orderflow_domain::OrderId::parse(input.order_id.as_str()).is_ok() {
            let change = self.status_change(OrderStatus::Rejected, Some(reason.clone()));
            self.local_step(|| OrderActivities::mark_order_status, change)
                .await
                .map_err(fail)?;
        }
        self.finished(OrderStatus::Rejected, Some(reason))
    }

    /// The order is finished, its final status recorded: show it, and end. Only then: while the
    /// last step retries (an outage), the order still shows what it waits for.
    fn finished(
        &self,
        status: OrderStatus,
        reason: Option<String>,
    ) -> WorkflowResult<OrderOutcome> {
        self.set_view_status(status, reason.clone());
        self.publish_search_attributes();
        self.ctx.state_mut(|s| {
            s.view.waiting_for = None;
            s.view.waiting_since_ms = None;
        });
        Ok(OrderOutcome {
            order_id: self.ctx.state(|s| s.view.order_id.clone()),
            status,
            reason,
        })
    }

    fn status_change(&self, status: OrderStatus, reason: Option<String>) -> StatusChange {
        self.ctx.state(|s| StatusChange {
            order_id: s.view.order_id.clone(),
            customer_id: s.view.customer_id.clone(),
            provider: s.view.provider.clone(),
            status,
            reason,
        })
    }

    fn set_view_status(&self, status: OrderStatus, reason: Option<String>) {
        self.ctx.state_mut(|s| {
            s.view.status = Some(status);
            if reason.is_some() {
                s.view.reason = reason;
            }
        });
        self.search_attributes_stale.set(true);
    }

    /// Upserts the search attributes if the status changed since the last upsert. Called where
    /// the order comes to rest, so what the UI shows is the state it rests in.
    fn publish_search_attributes(&self) {
        if !self.search_attributes_stale.replace(false) {
            return;
        }
        let (upsert, view) = self
            .ctx
            .state(|s| (s.config.search_attributes, s.view.clone()));
        if let (true, Some(status)) = (upsert, view.status) {
            self.ctx
                .upsert_search_attributes(search_attributes::for_order(status, &view));
        }
    }

    fn waiting_for(&self, what: &str) {
        let now = self.now_ms();
        self.ctx.state_mut(|s| {
            s.view.waiting_for = Some(what.to_owned());
            s.view.waiting_since_ms = Some(now);
        });
    }

    fn note(&self, what: String) {
        self.ctx.state_mut(|s| s.view.reason = Some(what));
    }

    fn now_ms(&self) -> i64 {
        self.ctx
            .workflow_time()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    /// A step as a regular activity, always: every step after the wait (see the module docs).
    /// Scheduling it completes the workflow task that decided, so the decision is in history
    /// before anything happens, and no local activity runs while callbacks keep arriving.
    async fn recorded_step<A>(
        &self,
        activity: A,
        input: A::Input,
    ) -> Result<A::Output, ActivityExecutionError>
    where
        A: ActivityDefinition,
    {
        // A regular activity leaves the workflow task: the order rests here until it completes.
        self.publish_search_attributes();
        self.ctx
            .execute_activity(activity, input, activity_options())
            .await
    }

    /// A step as a local activity: it runs in this worker inside the current workflow task and is
    /// recorded as one marker event, instead of a scheduled/started/completed round trip through
    /// the server and an extra workflow task — the server's state transitions are the limit on
    /// orders per second. A step that keeps failing with a retryable error (an outage) is handed
    /// to a regular activity, which retries for as long as it takes and shows its attempts and
    /// last error in `describe` (what `orderflow order status` explains). A final error (e.g.
    /// `OUT_OF_STOCK`) is final either way. Both kinds are at-least-once; every step is
    /// idempotent, so a repeat after a crash changes nothing.
    async fn local_step<A>(
        &self,
        activity: impl Fn() -> A,
        input: A::Input,
    ) -> Result<A::Output, ActivityExecutionError>
    where
        A: ActivityDefinition,
        A::Input: Clone,
    {
        match self
            .ctx
            .execute_local_activity(activity(), input.clone(), local_activity_options())
            .await
        {
            Err(e) if retry_remotely(&e) => self.recorded_step(activity(), input).await,
            done => done,
        }
    }
}

/// Every activity retries with backoff for as long as it takes, unless it fails with a
/// non-retryable error (the activity decides, see `orderflow_activities::failure`). A database or
/// provider outage therefore stalls an order instead of failing it, and the order resumes when the
/// outage ends. Each activity has its own cancellation token: a cancelled workflow lets a running
/// step finish and then compensates.
pub(crate) fn activity_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(500))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(30))
                .build(),
        )
        .cancellation_token(WorkflowCancellationToken::new())
        .build()
}

/// A local attempt gets a few quick tries; a step still failing after them is an outage, better
/// retried as a regular activity (visible, unbounded, with backoff up to 30 s).
fn local_activity_options() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(10))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(100))
                .backoff_coefficient(2.0)
                .maximum_attempts(3)
                .build(),
        )
        .cancellation_token(WorkflowCancellationToken::new())
        .build()
}

/// Whether a failed local attempt should be handed to a regular activity: yes for retryable
/// failures (attempts ran out, timeouts), no for a final answer (a non-retryable application
/// failure such as `OUT_OF_STOCK`), a cancellation or a payload that cannot be converted.
fn retry_remotely(err: &ActivityExecutionError) -> bool {
    match err {
        ActivityExecutionError::Failed(_) => !err.failure().is_some_and(failure::is_non_retryable),
        _ => false,
    }
}

fn received_from(payment: &PaymentRef, state: &ChargeState, source: &str) -> ReceivedPayment {
    ReceivedPayment {
        payment_no: payment.payment_no.clone(),
        paid_amount_minor: state.paid_amount_minor.unwrap_or_default(),
        paid_currency: state.currency.clone(),
        provider_txn_id: state.provider_txn_id.clone().unwrap_or_default(),
        source: source.to_owned(),
    }
}

/// `CODE: message` from a final activity failure, as shown to people.
fn failure_reason(err: &ActivityExecutionError) -> String {
    match err.failure() {
        Some(f) => match code_of(f) {
            Some(code) => format!("{code}: {}", message_of(f)),
            None => message_of(f).to_owned(),
        },
        None => err.to_string(),
    }
}

/// A step that must not fail did (an activity gave up with a non-retryable error such as
/// `INVARIANT_VIOLATION`). Fail the workflow so it is visible in the UI rather than guessing.
pub(crate) fn fail(err: ActivityExecutionError) -> WorkflowTermination {
    let code = err
        .failure()
        .and_then(code_of)
        .unwrap_or(failure::INVARIANT_VIOLATION)
        .to_owned();
    ApplicationFailure::builder(failure_reason(&err))
        .type_name(code)
        .non_retryable(true)
        .build()
        .into()
}

fn fail_msg(msg: &str) -> WorkflowTermination {
    ApplicationFailure::non_retryable(msg.to_owned()).into()
}

fn describe_amount(minor: i64, currency: &str) -> String {
    match Currency::parse(currency).and_then(|c| Money::new(minor, c)) {
        Ok(m) => m.to_string(),
        Err(_) => format!("{minor} minor units of {currency:?}"),
    }
}
