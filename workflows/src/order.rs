//! `OrderWorkflow`: one workflow per order, id `order-<order_id>`.
//!
//! ```text
//! validate ─✗─> REJECTED
//! record_order ─✗─> REJECTED                      (unknown SKU, unknown provider, pricing)
//! reserve_stock ─✗─> REJECTED                     (OUT_OF_STOCK: nothing was reserved)
//! create_payment ─✗─> release_stock, REJECTED
//! AWAITING_PAYMENT: wait for the first of
//!   payment signal ──────────> settle
//!   cancel update ───────────> query → close ─> release_stock, CANCELLED   (paid? settle)
//!   Temporal cancellation ───> same as cancel; the execution ends Canceled
//!   payment deadline timer ──> query → close ─> release_stock, CLOSED      (paid? settle)
//! settle: amount & currency match ─> confirm_payment, confirm_stock, PAID
//!         otherwise ─> flag_payment_mismatch, NEEDS_REVIEW, wait for `resolve`
//!            ACCEPT ─> confirm_payment, confirm_stock, PAID
//!            REFUND ─> refund_payment, release_stock, REFUNDED
//! ```
//!
//! Orders started after [`LEAN_TASKS_PATCH`] take the same paths with fewer, larger steps: the
//! provider is asked and closed in one `close_unpaid_payment`, and each ending above ("release_stock,
//! CLOSED", "confirm_payment, confirm_stock, PAID", ...) is one `finish_order` — one transaction.
//! Orders started after [`MERGED_STEPS_PATCH`] also do everything before the wait (record,
//! reserve, create the payment, AWAITING_PAYMENT) as one `open_order`, and close (ask, close,
//! release the stock, CLOSED / CANCELLED) as one `close_order`.
//!
//! Determinism: time comes only from `ctx.workflow_time()`, collections are `BTreeSet` /
//! `VecDeque`, and every side effect is an activity. Activities run with a cancellation token of
//! their own, so cancelling the workflow never interrupts a half-done step: cancellation is
//! observed between steps and while waiting, and answered with compensation.

use crate::search_attributes;
use orderflow_activities::failure::{self, code_of, message_of};
use orderflow_activities::finish::{CloseOrder, FinishOrder, StockOutcome};
use orderflow_activities::inventory::ReserveStock;
use orderflow_activities::open::OpenedOrder;
use orderflow_activities::orders::{PricedOrder, StatusChange};
use orderflow_activities::payments::{
    CreatePayment, PaymentCreated, PaymentRef, ReceivedPayment, RefundPayment,
};
use orderflow_activities::providers::{ChargeState, CloseResult};
use orderflow_activities::{InventoryActivities, OrderActivities, PaymentActivities};
use orderflow_domain::{
    CancelRequest, Currency, Money, OrderInput, OrderOutcome, OrderStatus, OrderView, PaymentNo,
    PaymentOutcome, PaymentSignal, PaymentStatus, ResolveAction, ResolveRequest, ValidOrder,
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

/// `patched()` id of the change from "OrderStatus only" to every search attribute.
pub const FULL_SEARCH_ATTRIBUTES_PATCH: &str = "full-search-attributes";

/// `patched()` id of the change that runs each step as a local activity first (see
/// [`Flow::activity`]). Orders started before it keep scheduling regular activities on replay.
pub const LOCAL_STEPS_PATCH: &str = "local-steps";

/// `patched()` id of the change that costs the server fewer state transitions per order (orders
/// with local steps only; see [`Flow::lean`]): search attributes are upserted once per workflow
/// task instead of at every status, the close path asks and closes the provider in one activity,
/// and every ending is one transaction (`finish_order`). It implies
/// [`LOCAL_STEPS_PATCH`] and [`FULL_SEARCH_ATTRIBUTES_PATCH`] (see `run`).
pub const LEAN_TASKS_PATCH: &str = "lean-tasks";

/// `patched()` id of the change that merges steps (orders with lean tasks only): everything before
/// the wait is one `open_order` (record, reserve, create the payment, `AWAITING_PAYMENT`) instead of
/// four local activities — each one a round of the SDK's local-activity machinery in the worker —
/// and the close path is one `close_order` that also records the ending when the charge closes,
/// so the order's row says `CLOSED` one workflow task sooner and the last task only completes.
/// It implies [`LEAN_TASKS_PATCH`] (see `run`).
pub const MERGED_STEPS_PATCH: &str = "merged-steps";

/// Per-worker settings that shape the workflow's commands. They must be the same on every worker
/// of a task queue (and in the replayer), like the workflow code itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderWorkflowConfig {
    /// Upsert the `OrderStatus` search attribute at each transition. Off only for servers that
    /// cannot register custom attributes (the time-skipping test server).
    pub search_attributes: bool,
    /// Run steps as local activities first (see [`LOCAL_STEPS_PATCH`]). Off, new orders schedule
    /// a regular activity per step, as before the patch: more server work, every attempt visible.
    pub local_steps: bool,
    /// New orders take the [`LEAN_TASKS_PATCH`] path (needs `local_steps`). Off, they take the
    /// path from before it.
    pub lean_tasks: bool,
    /// New orders take the [`MERGED_STEPS_PATCH`] path (needs `lean_tasks`).
    pub merged_steps: bool,
}

impl Default for OrderWorkflowConfig {
    fn default() -> Self {
        OrderWorkflowConfig {
            search_attributes: true,
            local_steps: true,
            lean_tasks: true,
            merged_steps: true,
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
        // Decided once per order, before its first command, so an order never mixes the two.
        // The newest patch first: an order that has it was started by code with every earlier
        // patch, so it does not ask for those. Each `patched()` that records a marker also makes
        // the SDK upsert `TemporalChangeVersion` — a visibility write on the server per patch per
        // order, which new orders need only once. Older histories (no lean marker) replay down
        // the older calls unchanged.
        let config = ctx.state(|s| s.config);
        let merged_steps = config.local_steps
            && config.lean_tasks
            && config.merged_steps
            && ctx.patched(MERGED_STEPS_PATCH);
        let lean = merged_steps
            || (config.local_steps && config.lean_tasks && ctx.patched(LEAN_TASKS_PATCH));
        let local_steps = lean || (config.local_steps && ctx.patched(LOCAL_STEPS_PATCH));
        let flow = Flow {
            ctx: ctx.clone(),
            local_steps,
            lean,
            merged_steps,
            durable_next: std::cell::Cell::new(false),
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

/// How opening the order ended: awaiting payment, or over (rejected, or cancelled before the wait).
enum Opening {
    AwaitingPayment {
        priced: PricedOrder,
        payment: PaymentRef,
        deadline_ms: i64,
        /// The clock the deadline timer counts from, when the opening step reported one
        /// (`OpenedOrder::opened_at_ms`); otherwise the task's own clock.
        timer_from_ms: Option<i64>,
    },
    Over(WorkflowResult<OrderOutcome>),
}

/// What closing the payment found.
enum PaymentClosed {
    /// The customer paid after all.
    Paid(ReceivedPayment),
    /// Closed; the order's ending is still to record.
    Closed,
    /// Closed, and the ending recorded with it (`close_order`).
    ClosedAndRecorded,
}

/// How the wait for payment ended.
enum WaitOutcome {
    Payment(PaymentSignal),
    CancelRequested(String),
    WorkflowCancelled,
    DeadlinePassed,
}

/// The steps of one order. Holds a clone of the context so helpers can be plain methods.
struct Flow {
    ctx: WorkflowContext<OrderWorkflow>,
    /// Steps try a local activity first (orders started after `LOCAL_STEPS_PATCH`).
    local_steps: bool,
    /// Orders started after [`LEAN_TASKS_PATCH`]:
    /// - search attributes are upserted when the order comes to rest (before a wait, before a
    ///   regular activity, at the end), not at every status: upserts in one workflow task reach
    ///   the server together, so the ones before the last were never visible anyway, and each
    ///   cost the server a visibility write;
    /// - (the paid path keeps its recorded decision, like the others: running it locally in the
    ///   task that saw the payment made the SDK core trip over a second workflow task for the
    ///   same run when duplicate callbacks arrived meanwhile — see RELIABILITY.md §6);
    /// - the close path is one provider activity (`close_unpaid_payment`) instead of two.
    lean: bool,
    /// Orders started after [`MERGED_STEPS_PATCH`]: one `open_order` up to the wait, one
    /// `close_order` to close.
    merged_steps: bool,
    /// The next step must be a regular activity: a wait just ended (see [`Flow::decided`]).
    durable_next: std::cell::Cell<bool>,
    /// The status changed since the search attributes were last upserted (lean orders).
    search_attributes_stale: std::cell::Cell<bool>,
}

impl Flow {
    async fn process(&self, order: ValidOrder) -> WorkflowResult<OrderOutcome> {
        // record_order writes the PENDING row and its log entry itself.
        self.set_view_status(OrderStatus::Pending, None);
        let opening = if self.merged_steps {
            self.open_in_one_step(&order).await
        } else {
            self.open_step_by_step(&order).await
        };
        let (priced, payment, deadline_ms, timer_from_ms) = match opening {
            Opening::AwaitingPayment {
                priced,
                payment,
                deadline_ms,
                timer_from_ms,
            } => (priced, payment, deadline_ms, timer_from_ms),
            Opening::Over(outcome) => return outcome,
        };

        match self
            .wait_for_payment(&payment.payment_no, deadline_ms, timer_from_ms)
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
                self.close_order(&order, &priced, Some(&payment), Closing::Cancel(reason))
                    .await
            }
            WaitOutcome::WorkflowCancelled => {
                self.close_order(&order, &priced, Some(&payment), Closing::WorkflowCancelled)
                    .await
            }
            WaitOutcome::DeadlinePassed => {
                self.close_order(&order, &priced, Some(&payment), Closing::Timeout)
                    .await
            }
        }
    }

    /// Orders started after [`MERGED_STEPS_PATCH`]: one step up to the wait.
    async fn open_in_one_step(&self, order: &ValidOrder) -> Opening {
        let opened: OpenedOrder = match self
            .activity(|| OrderActivities::open_order, order.clone())
            .await
        {
            Ok(opened) => opened,
            // Whichever part failed, releasing is safe: an order that reserved nothing holds
            // nothing, and one whose payment the provider refused gives its stock back.
            Err(e) => return Opening::Over(self.release_and_reject(order, &e).await),
        };
        let OpenedOrder {
            priced,
            payment,
            opened_at_ms,
        } = opened;
        let deadline_ms = payment.deadline_ms;
        self.show_priced(&priced);
        self.show_payment(&payment, deadline_ms);
        // open_order recorded it in the database.
        self.set_view_status(OrderStatus::AwaitingPayment, None);
        Opening::AwaitingPayment {
            priced,
            payment: PaymentRef {
                payment_no: payment.payment_no,
                provider: order.provider.clone(),
            },
            deadline_ms,
            timer_from_ms: opened_at_ms,
        }
    }

    /// Orders started before [`MERGED_STEPS_PATCH`] replay the steps they were started with.
    async fn open_step_by_step(&self, order: &ValidOrder) -> Opening {
        let priced: PricedOrder = match self
            .activity(|| OrderActivities::record_order, order.clone())
            .await
        {
            Ok(p) => p,
            Err(e) => return Opening::Over(self.reject(&failure_reason(&e)).await),
        };
        self.show_priced(&priced);

        let reserve = ReserveStock {
            order_id: order.order_id.clone(),
            lines: order.lines.clone(),
        };
        if let Err(e) = self
            .activity(|| InventoryActivities::reserve_stock, reserve)
            .await
        {
            // All lines or none: a failed reservation holds nothing, but releasing is idempotent
            // and cheap, and guards against a reservation that committed just before a failure.
            return Opening::Over(self.release_and_reject(order, &e).await);
        }
        // With local steps, the steps up to the wait run in one workflow task that may be retried
        // from scratch (a signal or cancel arriving meanwhile fails its completion). The path
        // through it must then be the same every time, so it does not branch on cancellation:
        // the wait sees a cancellation and closes the payment too.
        if !self.local_steps && self.workflow_cancelled() {
            return Opening::Over(
                self.close_order(order, &priced, None, Closing::WorkflowCancelled)
                    .await,
            );
        }

        let deadline_ms = self.now_ms() + secs_to_ms(priced.payment_timeout_secs);
        let created: PaymentCreated = match self
            .activity(
                || PaymentActivities::create_payment,
                CreatePayment {
                    order_id: order.order_id.clone(),
                    provider: order.provider.clone(),
                    amount: priced.total,
                    deadline_ms,
                },
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                return Opening::Over(self.release_and_reject(order, &e).await);
            }
        };
        self.show_payment(&created, deadline_ms);
        if let Err(e) = self.transition(OrderStatus::AwaitingPayment, None).await {
            return Opening::Over(Err(e));
        }
        Opening::AwaitingPayment {
            priced,
            payment: PaymentRef {
                payment_no: created.payment_no.clone(),
                provider: order.provider.clone(),
            },
            deadline_ms,
            timer_from_ms: None,
        }
    }

    fn show_priced(&self, priced: &PricedOrder) {
        self.ctx.state_mut(|s| {
            s.view.amount_minor = Some(priced.total.minor());
            s.view.currency = Some(priced.total.currency().code().to_owned());
        });
    }

    fn show_payment(&self, created: &PaymentCreated, deadline_ms: i64) {
        self.ctx.state_mut(|s| {
            s.view.payment_no = Some(created.payment_no.to_string());
            s.view.checkout_url = Some(created.pay.checkout_url.clone());
            s.view.qr_payload = Some(created.pay.qr_payload.clone());
            s.view.payment_deadline_ms = Some(deadline_ms);
        });
    }

    /// Waits for a payment for `payment_no`, a cancel request, workflow cancellation or the
    /// deadline — whichever comes first. Failed attempts and signals for another payment number
    /// are noted and the wait goes on.
    async fn wait_for_payment(
        &self,
        payment_no: &PaymentNo,
        deadline_ms: i64,
        timer_from_ms: Option<i64>,
    ) -> WaitOutcome {
        self.publish_search_attributes();
        let from_ms = timer_from_ms.unwrap_or_else(|| self.now_ms());
        let remaining = Duration::from_millis(u64::try_from(deadline_ms - from_ms).unwrap_or(0));
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
        self.decided();
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

    /// The close path, shared by timeout, cancel and workflow cancellation: ask the provider first
    /// (a lost callback must not close a paid order), close the charge (which may answer "already
    /// paid"), release the stock.
    async fn close_order(
        &self,
        order: &ValidOrder,
        priced: &PricedOrder,
        payment: Option<&PaymentRef>,
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
        let mut recorded = false;
        if let Some(payment) = payment {
            self.waiting_for("the provider: checking and closing the payment");
            match self.close_payment(order, payment, status, &reason).await? {
                PaymentClosed::Paid(paid) => {
                    return self.settle(order, priced, payment, paid).await;
                }
                PaymentClosed::Closed => {}
                PaymentClosed::ClosedAndRecorded => recorded = true,
            }
        }
        let outcome = if recorded {
            self.concluded(status, Some(reason))?
        } else {
            self.conclude(order, StockOutcome::Release, None, status, Some(reason))
                .await?
        };
        if matches!(why, Closing::WorkflowCancelled) {
            // Report the execution as Canceled, as whoever cancelled it expects; the order row and
            // the search attribute already say CANCELLED.
            return Err(WorkflowTermination::cancelled());
        }
        Ok(outcome)
    }

    /// Asks the provider and closes the charge unless it is paid. Returns the payment if the
    /// customer paid after all (a lost callback, or a payment racing the close). Orders started
    /// after [`MERGED_STEPS_PATCH`] also record the ending (`status`, `reason`) in the same step
    /// when the charge closes.
    async fn close_payment(
        &self,
        order: &ValidOrder,
        payment: &PaymentRef,
        status: OrderStatus,
        reason: &str,
    ) -> WorkflowResult<PaymentClosed> {
        let paid = |state: &ChargeState, source| {
            PaymentClosed::Paid(received_from(payment, state, source))
        };
        if self.merged_steps {
            let req = CloseOrder {
                order_id: order.order_id.clone(),
                payment: payment.clone(),
                change: self.status_change(status, Some(reason.to_owned())),
            };
            let closed = self
                .recorded_activity(OrderActivities::close_order, req)
                .await
                .map_err(fail)?;
            return Ok(match closed {
                CloseResult::AlreadyPaid(state) => paid(&state, "close"),
                CloseResult::Closed => PaymentClosed::ClosedAndRecorded,
            });
        }
        if self.lean {
            let closed = self
                .recorded_activity(PaymentActivities::close_unpaid_payment, payment.clone())
                .await
                .map_err(fail)?;
            return Ok(match closed {
                CloseResult::AlreadyPaid(state) => paid(&state, "close"),
                CloseResult::Closed => PaymentClosed::Closed,
            });
        }
        let state: ChargeState = self
            .recorded_activity(PaymentActivities::query_payment, payment.clone())
            .await
            .map_err(fail)?;
        if state.status == PaymentStatus::Paid {
            return Ok(paid(&state, "query"));
        }
        let closed = self
            .recorded_activity(PaymentActivities::close_payment, payment.clone())
            .await
            .map_err(fail)?;
        Ok(match closed {
            CloseResult::AlreadyPaid(state) => paid(&state, "close"),
            CloseResult::Closed => PaymentClosed::Closed,
        })
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
        self.activity(
            || PaymentActivities::flag_payment_mismatch,
            received.clone(),
        )
        .await
        .map_err(fail)?;
        self.transition(OrderStatus::NeedsReview, Some(reason.clone()))
            .await?;
        self.waiting_for("an operator's `resolve` update (ACCEPT or REFUND)");
        self.publish_search_attributes();

        let decision = self.ctx.wait_condition(|s| s.resolution.is_some()).await;
        self.decided();
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
                self.recorded_activity(
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
                self.conclude(
                    order,
                    StockOutcome::Release,
                    None,
                    OrderStatus::Refunded,
                    Some(note),
                )
                .await
            }
        }
    }

    async fn accept(
        &self,
        order: &ValidOrder,
        received: ReceivedPayment,
    ) -> WorkflowResult<OrderOutcome> {
        self.waiting_for("confirming the payment and the stock");
        self.conclude(
            order,
            StockOutcome::Confirm,
            Some(received),
            OrderStatus::Paid,
            None,
        )
        .await
    }

    /// A step after the reservation failed for good: give the stock back and reject the order.
    async fn release_and_reject(
        &self,
        order: &ValidOrder,
        err: &ActivityExecutionError,
    ) -> WorkflowResult<OrderOutcome> {
        let reason = failure_reason(err);
        self.conclude(
            order,
            StockOutcome::Release,
            None,
            OrderStatus::Rejected,
            Some(reason),
        )
        .await
    }

    /// The order's last step: its payment recorded (if `paid`), its stock confirmed or released,
    /// its final status. Lean orders do it in one activity, one transaction (`finish_order`);
    /// older orders replay the separate steps they were started with.
    async fn conclude(
        &self,
        order: &ValidOrder,
        stock: StockOutcome,
        paid: Option<ReceivedPayment>,
        status: OrderStatus,
        reason: Option<String>,
    ) -> WorkflowResult<OrderOutcome> {
        if !self.lean {
            if let Some(paid) = paid {
                self.activity(|| PaymentActivities::confirm_payment, paid)
                    .await
                    .map_err(fail)?;
            }
            match stock {
                StockOutcome::Confirm => {
                    self.activity(
                        || InventoryActivities::confirm_stock,
                        order.order_id.clone(),
                    )
                    .await
                    .map_err(fail)?;
                }
                StockOutcome::Release => self.release_stock(order).await?,
            }
            return self.finish(status, reason).await;
        }
        let req = FinishOrder {
            order_id: order.order_id.clone(),
            stock,
            paid,
            change: self.status_change(status, reason.clone()),
        };
        self.activity(|| OrderActivities::finish_order, req)
            .await
            .map_err(fail)?;
        self.concluded(status, reason)
    }

    /// A step recorded the final status (`finish_order`, `close_order`): show it, and end. Only
    /// then: while the step retries (an outage), the order still shows what it waits for.
    fn concluded(
        &self,
        status: OrderStatus,
        reason: Option<String>,
    ) -> WorkflowResult<OrderOutcome> {
        self.set_view_status(status, reason.clone());
        self.finished(status, reason)
    }

    async fn release_stock(&self, order: &ValidOrder) -> WorkflowResult<()> {
        self.activity(
            || InventoryActivities::release_stock,
            order.order_id.clone(),
        )
        .await
        .map_err(fail)?;
        Ok(())
    }

    async fn reject(&self, reason: &str) -> WorkflowResult<OrderOutcome> {
        self.finish(OrderStatus::Rejected, Some(reason.to_owned()))
            .await
    }

    /// Input that failed validation. It is recorded when the order id itself is usable.
    async fn reject_invalid(
        &self,
        input: &OrderInput,
        reason: String,
    ) -> WorkflowResult<OrderOutcome> {
        if orderflow_domain::OrderId::parse(input.order_id.as_str()).is_ok() {
            return self.reject(&reason).await;
        }
        self.set_view_status(OrderStatus::Rejected, Some(reason.clone()));
        self.publish_search_attributes();
        Ok(OrderOutcome {
            order_id: input.order_id.clone(),
            status: OrderStatus::Rejected,
            reason: Some(reason),
        })
    }

    async fn finish(
        &self,
        status: OrderStatus,
        reason: Option<String>,
    ) -> WorkflowResult<OrderOutcome> {
        self.transition(status, reason.clone()).await?;
        self.finished(status, reason)
    }

    /// The final status is recorded: show it, and end.
    fn finished(
        &self,
        status: OrderStatus,
        reason: Option<String>,
    ) -> WorkflowResult<OrderOutcome> {
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

    /// Moves the order to `status`: in the query view, in the search attribute, in the database.
    async fn transition(&self, status: OrderStatus, reason: Option<String>) -> WorkflowResult<()> {
        self.set_view_status(status, reason.clone());
        let change = self.status_change(status, reason);
        self.activity(|| OrderActivities::mark_order_status, change)
            .await
            .map_err(fail)?;
        Ok(())
    }

    fn set_view_status(&self, status: OrderStatus, reason: Option<String>) {
        self.ctx.state_mut(|s| {
            s.view.status = Some(status);
            if reason.is_some() {
                s.view.reason = reason;
            }
        });
        if self.lean {
            self.search_attributes_stale.set(true);
        } else {
            self.upsert_search_attributes();
        }
    }

    /// Lean orders: upserts the search attributes if the status changed since the last upsert.
    /// Called where the order comes to rest, so what the UI shows is the state it rests in.
    fn publish_search_attributes(&self) {
        if self.search_attributes_stale.replace(false) {
            self.upsert_search_attributes();
        }
    }

    fn upsert_search_attributes(&self) {
        let (upsert, status, view) = self
            .ctx
            .state(|s| (s.config.search_attributes, s.view.status, s.view.clone()));
        if let (true, Some(status)) = (upsert, status) {
            // Histories recorded before the full set existed upserted only OrderStatus; the patch
            // keeps them replaying unchanged while new orders get every attribute.
            let updates = if self.lean || self.ctx.patched(FULL_SEARCH_ATTRIBUTES_PATCH) {
                search_attributes::for_order(status, &view)
            } else {
                search_attributes::for_status(status)
            };
            self.ctx.upsert_search_attributes(updates);
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

    fn workflow_cancelled(&self) -> bool {
        self.ctx.cancellation_token().is_cancelled()
    }

    fn now_ms(&self) -> i64 {
        self.ctx
            .workflow_time()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    /// A step whose answer may differ if it is asked again — the provider's view of a payment
    /// that a late customer can still pay — always runs as a regular activity: its answer is
    /// in history before the workflow acts on it, so a retried workflow task never takes the
    /// other branch after the first attempt's local steps already acted (closed, released).
    async fn recorded_activity<A>(
        &self,
        activity: A,
        input: A::Input,
    ) -> Result<A::Output, ActivityExecutionError>
    where
        A: ActivityDefinition,
    {
        self.durable_next.set(false);
        self.publish_search_attributes();
        self.ctx
            .execute_activity(activity, input, activity_options())
            .await
    }

    /// A wait ended: which way it went (paid, cancelled, timed out, resolved) depends on the race
    /// between signals, updates and the timer. A local activity's side effects happen before its
    /// workflow task is recorded, and that task can still be thrown away (a signal arriving
    /// meanwhile fails its completion); the retry may then see the race end the other way —
    /// after the discarded attempt already closed the payment and released the stock. So the
    /// first step after a wait is a regular activity: scheduling it completes the deciding
    /// workflow task before anything happens, and the decision is in history from then on.
    /// Later local steps are database steps that give the same answer when re-run; provider
    /// questions go through [`Flow::recorded_activity`].
    fn decided(&self) {
        self.durable_next.set(true);
    }

    /// Runs one step. Orders started after [`LOCAL_STEPS_PATCH`] try it as a local activity
    /// first: it runs in this worker inside the current workflow task and is recorded as one
    /// marker event, instead of a scheduled/started/completed round trip through the server and
    /// an extra workflow task per step — the server's state transitions are the limit on orders
    /// per second. A step that keeps failing with a retryable error (an outage) is handed to a
    /// regular activity, which retries for as long as it takes and shows its attempts and last
    /// error in `describe` (what `orderflow order status` explains). A final error (e.g.
    /// `OUT_OF_STOCK`) is final either way. Both kinds are at-least-once; every step is
    /// idempotent, so a repeat after a crash changes nothing.
    async fn activity<A>(
        &self,
        activity: impl Fn() -> A,
        input: A::Input,
    ) -> Result<A::Output, ActivityExecutionError>
    where
        A: ActivityDefinition,
        A::Input: Clone,
    {
        if self.local_steps && !self.durable_next.replace(false) {
            match self
                .ctx
                .execute_local_activity(activity(), input.clone(), local_activity_options())
                .await
            {
                Ok(output) => return Ok(output),
                Err(e) if !retry_remotely(&e) => return Err(e),
                Err(_) => {}
            }
        }
        // A regular activity leaves the workflow task: the order rests here until it completes.
        self.publish_search_attributes();
        self.ctx
            .execute_activity(activity(), input, activity_options())
            .await
    }
}

enum Closing {
    Timeout,
    Cancel(String),
    WorkflowCancelled,
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

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn describe_amount(minor: i64, currency: &str) -> String {
    match Currency::parse(currency).and_then(|c| Money::new(minor, c)) {
        Ok(m) => m.to_string(),
        Err(_) => format!("{minor} minor units of {currency:?}"),
    }
}
