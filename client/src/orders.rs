//! Client-side order operations, shared by the CLI, the tests and (later) the HTTP shim.
//!
//! Nothing here decides anything about an order: it starts the workflow, sends it signals and
//! updates, and reads its state. The only thing it writes itself is the sandbox gateway's books
//! (`order pay` plays the customer).

use orderflow_activities::db::Db;
use orderflow_activities::edge::{self, EdgeDecision};
use orderflow_activities::failure::{self, Classified};
use orderflow_activities::finish::StepError;
use orderflow_activities::orders as order_rows;
use orderflow_activities::payments as payment_rows;
use orderflow_activities::providers::ProviderError;
use orderflow_activities::providers::sandbox::{self, SandboxPayment, SandboxProvider};
use orderflow_domain::{
    CancelRequest, ClientId, OrderId, OrderInput, OrderOutcome, OrderStatus, OrderView, PaymentNo,
    PaymentOutcome, PaymentSignal, ResolveRequest, workflow_id_for,
};
use orderflow_workflows::late_payment::LatePayment;
use orderflow_workflows::{LatePaymentWorkflow, OrderWorkflow, late_payment_workflow_id};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use temporalio_client::errors::{
    WorkflowInteractionError, WorkflowQueryError, WorkflowStartError, WorkflowUpdateError,
};
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowGetResultOptions, WorkflowHandle,
    WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowSignalOptions,
    WorkflowStartOptions,
};

/// Why an order operation failed, as its callers (the CLI, the HTTP server, the tests) branch on
/// it: by variant and [`Refusal`] code, never by message text.
#[derive(Debug, thiserror::Error)]
pub enum OrderOpError {
    #[error("unknown order {0}")]
    UnknownOrder(String),
    /// The request, or the order's state, does not allow the operation. Final: asking again gets
    /// the same answer.
    #[error("{message}")]
    Refused { refusal: Refusal, message: String },
    #[error("order {order_id} did not reach {what} within {waited:?} (it is {status})")]
    Timeout {
        order_id: String,
        what: String,
        waited: Duration,
        status: String,
    },
    /// Temporal did not answer or failed: worth retrying later.
    #[error("Temporal: {0}")]
    Temporal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The sandbox gateway refused or failed to take a payment.
    #[error("sandbox: {0}")]
    Sandbox(#[source] ProviderError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// What kind of refusal an [`OrderOpError::Refused`] is, with its stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request is not a valid order; the code is the rule it broke (`INVALID_ORDER`,
    /// `UNKNOWN_SKU`, `PRICING`, … from `orderflow_activities::failure`).
    InvalidInput(&'static str),
    /// The order's state does not allow it now (cancel a paid order, resolve one not in review).
    WrongState,
    /// The order is over: its workflow has finished.
    Finished,
    /// The operation needs another payment provider (paying at the sandbox from here).
    WrongProvider,
    /// The request conflicts with what was done before (a refund larger than what is left, an
    /// idempotency key reused for another request); the code says which.
    Conflict(&'static str),
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::InvalidInput(code) => code,
            Refusal::WrongState => "ORDER_STATE_CONFLICT",
            Refusal::Finished => "ORDER_FINISHED",
            Refusal::WrongProvider => "WRONG_PROVIDER",
            Refusal::Conflict(code) => code,
        }
    }
}

impl OrderOpError {
    pub fn refused(refusal: Refusal, message: impl Into<String>) -> Self {
        OrderOpError::Refused {
            refusal,
            message: message.into(),
        }
    }

    fn temporal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        OrderOpError::Temporal(Box::new(err))
    }
}

/// What [`Orders::place_at_edge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgePlaced {
    /// Stock held and the workflow started.
    Started,
    /// Stock held; the relay starts the workflow.
    Reserved,
    /// Not enough stock (or an unknown SKU): recorded `REJECTED` with this reason, no workflow.
    Refused { reason: String },
    /// The order was placed and refused before; its view says why.
    Decided,
}

/// An edge step's error as the client sees it: the customer's mistake is refused with its code,
/// the database's is a database error.
fn step_error(err: StepError) -> OrderOpError {
    match err {
        StepError::Db(e)
        | StepError::Order(order_rows::OrderError::Db(e))
        | StepError::Inventory(orderflow_activities::inventory::InventoryError::Db(e)) => {
            OrderOpError::Db(e)
        }
        other => OrderOpError::refused(
            Refusal::InvalidInput(other.code()),
            format!("{}: {other}", other.code()),
        ),
    }
}

/// A request to start an order, as the CLI and the API take it.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// Who places it: the API client, or [`CLI_CLIENT`] from the terminal.
    pub client: ClientId,
    /// Same client and key, same order: the order id is derived from both.
    pub idempotency_key: String,
    pub customer_id: String,
    pub lines: Vec<(String, i64)>,
    pub provider: String,
    pub payment_timeout_secs: Option<u64>,
    /// A coupon to apply; the worker prices it (never the caller).
    pub coupon_code: Option<String>,
}

/// The client of orders started from the terminal (`orderflow order create`); no API key
/// belongs to it, so over HTTP only operators see its orders.
pub const CLI_CLIENT: &str = "cli";

/// [`CLI_CLIENT`] as a client id.
pub fn cli_client() -> ClientId {
    ClientId::parse(CLI_CLIENT).expect("a valid client id")
}

/// The order id for a client's idempotency key: `ord_` + 24 hex digits of SHA-256 over both.
/// Deterministic, so repeating a request with the same key addresses the same workflow and never
/// starts a second; scoped per client, so two shops that both send `cart-42` get two orders (a
/// client id has no ':', so the two parts cannot be confused).
pub fn order_id_for_key(client: &ClientId, key: &str) -> OrderId {
    let digest = hex::encode(Sha256::digest(
        format!("orderflow-order:{client}:{key}").as_bytes(),
    ));
    OrderId::parse(format!("ord_{}", &digest[..24])).expect("hex is a valid order id")
}

/// Everything the client side needs: Temporal, the database, the task queue.
#[derive(Clone)]
pub struct Orders {
    pub client: Client,
    pub db: Db,
    pub task_queue: String,
    pub public_url: String,
}

type Handle = WorkflowHandle<Client, OrderWorkflow>;

impl Orders {
    pub fn handle(&self, order_id: &str) -> Handle {
        self.client
            .get_workflow_handle::<OrderWorkflow>(workflow_id_for_str(order_id))
    }

    /// The handle of an order named by a caller (a URL path, a command line), once its id has
    /// the shape of an order id: see [`known_shape`].
    fn checked_handle(&self, order_id: &str) -> Result<Handle, OrderOpError> {
        known_shape(order_id)?;
        Ok(self.handle(order_id))
    }

    /// Starts the order's workflow, or finds the one already started for this key (running or
    /// finished). Returns the order id and whether this call started it.
    pub async fn start(&self, order: &NewOrder) -> Result<(OrderId, bool), OrderOpError> {
        let order_id = order_id_for_key(&order.client, &order.idempotency_key);
        let input = OrderInput {
            order_id: order_id.to_string(),
            customer_id: order.customer_id.clone(),
            lines: order
                .lines
                .iter()
                .map(|(sku, quantity)| orderflow_domain::OrderLineInput {
                    sku: sku.clone(),
                    quantity: *quantity,
                })
                .collect(),
            provider: order.provider.clone(),
            payment_timeout_secs: order.payment_timeout_secs,
            coupon_code: order.coupon_code.clone(),
        };
        self.start_input(input)
            .await
            .map(|started| (order_id, started))
    }

    /// Starts a workflow from a raw input (tests use this to send invalid orders). Returns false
    /// when a workflow for this order id already existed, running or finished.
    pub async fn start_input(&self, input: OrderInput) -> Result<bool, OrderOpError> {
        // Only to tell the caller "new" or "existing": the start below is idempotent on its own.
        if self
            .handle(&input.order_id)
            .describe(Default::default())
            .await
            .is_ok()
        {
            return Ok(false);
        }
        self.ensure_started(input).await
    }

    /// Starts the order's workflow unless it exists (running or finished); true if this call
    /// started it. Callers that already know whether the order is new (the API's idempotency
    /// keys) call this directly and save the lookup.
    pub async fn ensure_started(&self, input: OrderInput) -> Result<bool, OrderOpError> {
        let workflow_id = workflow_id_for_str(&input.order_id);
        let options = WorkflowStartOptions::new(self.task_queue.clone(), workflow_id)
            // A running order with this id is this order: attach to it.
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            // A finished order with this id is also this order: never run it a second time.
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .static_summary(format!(
                "order {} for {}",
                input.order_id, input.customer_id
            ))
            // The caller's trace (the HTTP request span), continued by the activities.
            .maybe_header(orderflow_worker::telemetry::current_trace_header())
            .build();
        match self
            .client
            .start_workflow(OrderWorkflow::run, input, options)
            .await
        {
            Ok(_) => Ok(true),
            Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(false),
            Err(e) => Err(OrderOpError::temporal(e)),
        }
    }

    /// Places the order with its stock decided here, before any workflow exists (see
    /// `orderflow_activities::edge`). Sold out (or an unknown SKU): the order is recorded
    /// `REJECTED` and no workflow runs. Reserved: with `start_now` its workflow is started before
    /// this returns; otherwise (or if that start fails) the relay (`crate::outbox`) starts it.
    pub async fn place_at_edge(
        &self,
        input: OrderInput,
        start_now: bool,
    ) -> Result<EdgePlaced, OrderOpError> {
        let order = input.validate().map_err(|e| {
            OrderOpError::refused(
                Refusal::InvalidInput(failure::INVALID_ORDER),
                format!("{}: {e}", failure::INVALID_ORDER),
            )
        })?;
        let start = match edge::reserve_at_edge(&self.db, &order, &input)
            .await
            .map_err(step_error)?
        {
            EdgeDecision::Refused { reason } => return Ok(EdgePlaced::Refused { reason }),
            EdgeDecision::Repeat { start: false } => return Ok(EdgePlaced::Decided),
            EdgeDecision::Reserved | EdgeDecision::Repeat { start: true } => start_now,
        };
        if start {
            let order_id = input.order_id.clone();
            match self.ensure_started(input).await {
                Ok(_) => {
                    edge::mark_started(&self.db, &order_id).await?;
                    return Ok(EdgePlaced::Started);
                }
                // The note stays: the relay starts it.
                Err(e) => {
                    tracing::warn!(%order_id, error = %e, "start after edge reservation failed; left to the relay")
                }
            }
        }
        Ok(EdgePlaced::Reserved)
    }

    /// The order's state: from its workflow while it can answer, from the database otherwise.
    pub async fn view(&self, order_id: &str) -> Result<OrderView, OrderOpError> {
        match self
            .checked_handle(order_id)?
            .query(
                OrderWorkflow::status_query,
                (),
                WorkflowQueryOptions::default(),
            )
            .await
        {
            Ok(view) if view.status == Some(OrderStatus::Paid) => self.after_sale(view).await,
            Ok(view) => Ok(view),
            Err(WorkflowQueryError::NotFound(_)) => self
                .stored_view(order_id)
                .await?
                .ok_or_else(|| OrderOpError::UnknownOrder(order_id.to_owned())),
            Err(e) => match self.stored_view(order_id).await? {
                Some(view) => Ok(view),
                None => Err(OrderOpError::temporal(e)),
            },
        }
    }

    /// A paid order's workflow has ended at `PAID`; after-sale refunds move the order on in the
    /// database (`PARTIALLY_REFUNDED`, `REFUNDED`), which is what the view then shows.
    async fn after_sale(&self, mut view: OrderView) -> Result<OrderView, OrderOpError> {
        if let Some(order) = order_rows::load(&self.db, &view.order_id).await?
            && let Ok(status) = order.status.parse::<OrderStatus>()
            && matches!(
                status,
                OrderStatus::PartiallyRefunded | OrderStatus::Refunded
            )
        {
            view.status = Some(status);
            view.reason = order.reason;
        }
        Ok(view)
    }

    async fn stored_view(&self, order_id: &str) -> Result<Option<OrderView>, OrderOpError> {
        let Some(order) = order_rows::load(&self.db, order_id).await? else {
            return Ok(None);
        };
        let payment = payment_rows::load_for_order(&self.db, order_id).await?;
        Ok(Some(OrderView {
            order_id: order.order_id,
            customer_id: order.customer_id,
            status: order.status.parse().ok(),
            provider: order.provider,
            amount_minor: order.amount_minor,
            currency: order.currency,
            payment_no: payment.as_ref().map(|p| p.payment_no.clone()),
            checkout_url: payment.as_ref().and_then(|p| p.checkout_url.clone()),
            qr_payload: None,
            payment_deadline_ms: payment.as_ref().map(|p| p.deadline_ms),
            subtotal_minor: order.coupon_code.as_ref().and(order.subtotal_minor),
            discount_minor: order.coupon_code.as_ref().map(|_| order.discount_minor),
            coupon_code: order.coupon_code,
            reason: order.reason,
            waiting_for: None,
            waiting_since_ms: None,
            payment_events: Vec::new(),
            accepting_payments: false,
        }))
    }

    /// Polls the order until `done` holds for its view, or `timeout` passes.
    pub async fn wait_until(
        &self,
        order_id: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&OrderView) -> bool,
    ) -> Result<OrderView, OrderOpError> {
        // Not a shape any order has: unknown now and always, so there is nothing to wait for.
        known_shape(order_id)?;
        let start = Instant::now();
        let mut last_error = None;
        loop {
            let view = match self.view(order_id).await {
                Ok(view) => Some(view),
                // Not queryable yet: the first workflow task has not run.
                Err(OrderOpError::UnknownOrder(_)) => None,
                // A busy server or worker can time a query out before the order's row exists;
                // that is a reason to ask again, not an answer. Our own deadline still holds.
                Err(OrderOpError::Temporal(e)) => {
                    last_error = Some(e);
                    None
                }
                Err(e) => return Err(e),
            };
            if let Some(view) = &view
                && done(view)
            {
                return Ok(view.clone());
            }
            if start.elapsed() >= timeout {
                return Err(OrderOpError::Timeout {
                    order_id: order_id.to_owned(),
                    what: what.to_owned(),
                    waited: timeout,
                    status: view
                        .and_then(|v| v.status)
                        .map(|s| s.to_string())
                        .or_else(|| last_error.map(|e| format!("unknown: {e}")))
                        .unwrap_or_else(|| "not started".to_owned()),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the order has left `PENDING` (it is awaiting payment, or already decided).
    ///
    /// Watches the order's row, then asks the workflow once for its full view. Querying while
    /// the order's first workflow task runs would make the worker answer mid-task: it completes
    /// the task early and the server schedules another, three state transitions per order for
    /// nothing. The row says `AWAITING_PAYMENT` only once that task has done its work.
    pub async fn wait_ready(
        &self,
        order_id: &str,
        timeout: Duration,
    ) -> Result<OrderView, OrderOpError> {
        let ready = |v: &OrderView| v.status.is_some_and(|s| s != OrderStatus::Pending);
        known_shape(order_id)?;
        let start = Instant::now();
        let stored = loop {
            let stored = self.stored_view(order_id).await?;
            match stored {
                Some(view) if ready(&view) => break view,
                _ if start.elapsed() >= timeout => {
                    return Err(OrderOpError::Timeout {
                        order_id: order_id.to_owned(),
                        what: "AWAITING_PAYMENT".to_owned(),
                        waited: timeout,
                        status: stored
                            .and_then(|v| v.status)
                            .map_or_else(|| "not started".to_owned(), |s| s.to_string()),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        // The live view adds what only the workflow knows (the QR payload, what it waits for).
        match self.view(order_id).await {
            Ok(live) if ready(&live) => Ok(live),
            _ => Ok(stored),
        }
    }

    /// Waits for a final status.
    pub async fn wait_final(
        &self,
        order_id: &str,
        timeout: Duration,
    ) -> Result<OrderView, OrderOpError> {
        self.wait_until(order_id, "a final status", timeout, |v| {
            v.status.is_some_and(|s| s.is_final())
        })
        .await
    }

    /// The workflow's result (blocks until it finishes). A workflow cancelled through Temporal has
    /// no result; its order is read from the database.
    pub async fn outcome(&self, order_id: &str) -> Result<OrderOutcome, OrderOpError> {
        match self
            .checked_handle(order_id)?
            .get_result(WorkflowGetResultOptions::default())
            .await
        {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                let stored = self
                    .stored_view(order_id)
                    .await?
                    .ok_or_else(|| OrderOpError::temporal(e))?;
                Ok(OrderOutcome {
                    order_id: stored.order_id,
                    status: stored.status.unwrap_or(OrderStatus::Pending),
                    reason: stored.reason,
                })
            }
        }
    }

    /// Plays the customer at the sandbox gateway: pays the order's charge (its own amount, or
    /// `amount_minor` to simulate a wrong sum), then delivers the provider callback `deliveries`
    /// times as the webhook handler would (0 = the callback is lost).
    pub async fn pay_sandbox(
        &self,
        order_id: &str,
        amount_minor: Option<i64>,
        deliveries: u32,
    ) -> Result<SandboxPayment, OrderOpError> {
        let order = known_shape(order_id)?;
        let payment_no = PaymentNo::for_order(&order);
        let stored = payment_rows::load_for_order(&self.db, order_id)
            .await?
            .ok_or_else(|| OrderOpError::UnknownOrder(order_id.to_owned()))?;
        if stored.provider != sandbox::NAME {
            return Err(OrderOpError::refused(
                Refusal::WrongProvider,
                format!(
                    "order {order_id} pays with {}; only sandbox payments can be made from here",
                    stored.provider
                ),
            ));
        }
        let gateway = SandboxProvider::new(self.db.clone(), &self.public_url);
        let paid = gateway
            .pay(&payment_no, amount_minor)
            .await
            .map_err(OrderOpError::Sandbox)?;
        let signal = PaymentSignal {
            event_id: paid.event_id.clone(),
            provider: sandbox::NAME.to_owned(),
            payment_no: payment_no.to_string(),
            outcome: PaymentOutcome::Paid,
            amount_minor: paid.paid_amount_minor,
            currency: paid.currency.clone(),
            provider_txn_id: paid.txn_id.clone(),
        };
        for _ in 0..deliveries {
            self.signal_payment(order_id, signal.clone()).await?;
        }
        Ok(paid)
    }

    pub async fn signal_payment(
        &self,
        order_id: &str,
        signal: PaymentSignal,
    ) -> Result<(), OrderOpError> {
        let sent = self
            .checked_handle(order_id)?
            .signal(
                OrderWorkflow::payment,
                signal,
                WorkflowSignalOptions::default(),
            )
            .await
            .map_err(|e| interaction_error(order_id, e));
        // The close path may have found this very payment by asking the provider and finished.
        self.over_if_unknown(order_id, sent, "sent a payment callback")
            .await
    }

    /// Sends the `cancel` update. A refusal (the order is not awaiting payment) carries the
    /// workflow's reason.
    pub async fn cancel(&self, order_id: &str, reason: &str) -> Result<OrderView, OrderOpError> {
        let result = self
            .checked_handle(order_id)?
            .execute_update(
                OrderWorkflow::cancel,
                CancelRequest {
                    reason: reason.to_owned(),
                },
                WorkflowExecuteUpdateOptions::default(),
            )
            .await;
        self.explain_refusal(order_id, result, "cancelled (it must be AWAITING_PAYMENT)")
            .await
    }

    /// An update to a finished workflow fails as "not found"; say instead what state the order
    /// ended in.
    async fn explain_refusal(
        &self,
        order_id: &str,
        result: Result<OrderView, WorkflowUpdateError>,
        action: &str,
    ) -> Result<OrderView, OrderOpError> {
        self.over_if_unknown(
            order_id,
            result.map_err(|e| update_error(order_id, e)),
            action,
        )
        .await
    }

    /// A signal or update to a finished workflow fails as "not found"; say instead what state
    /// the order ended in (still "unknown" when there is no such order).
    async fn over_if_unknown<T>(
        &self,
        order_id: &str,
        result: Result<T, OrderOpError>,
        action: &str,
    ) -> Result<T, OrderOpError> {
        match result {
            Err(OrderOpError::UnknownOrder(_)) => match self.stored_view(order_id).await? {
                Some(view) => Err(OrderOpError::refused(
                    Refusal::Finished,
                    format!(
                        "order {order_id} can no longer be {action}: it is {}",
                        view.status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "unknown".into())
                    ),
                )),
                None => Err(OrderOpError::UnknownOrder(order_id.to_owned())),
            },
            other => other,
        }
    }

    pub async fn resolve(
        &self,
        order_id: &str,
        req: ResolveRequest,
    ) -> Result<OrderView, OrderOpError> {
        let result = self
            .checked_handle(order_id)?
            .execute_update(
                OrderWorkflow::resolve,
                req,
                WorkflowExecuteUpdateOptions::default(),
            )
            .await;
        self.explain_refusal(order_id, result, "resolved (it must be NEEDS_REVIEW)")
            .await
    }

    /// The activities the order's workflow is waiting on, with their retry attempt and last
    /// error: why a stuck order is stuck. Empty for a finished or idle order.
    pub async fn pending_steps(&self, order_id: &str) -> Result<Vec<PendingStep>, OrderOpError> {
        let described = self
            .checked_handle(order_id)?
            .describe(Default::default())
            .await
            .map_err(|e| interaction_error(order_id, e))?;
        Ok(described
            .raw()
            .pending_activities
            .iter()
            .map(|a| PendingStep {
                activity: a
                    .activity_type
                    .as_ref()
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
                attempt: a.attempt,
                last_error: a
                    .last_failure
                    .as_ref()
                    .map(|f| orderflow_activities::failure::message_of(f).to_owned()),
            })
            .collect())
    }

    /// Orders matching a visibility query, newest first, at most `limit`.
    pub async fn list(&self, query: &str, limit: usize) -> Result<Vec<ListedOrder>, OrderOpError> {
        use futures::TryStreamExt;
        use orderflow_workflows::search_attributes as sa;
        let to_ms = |t: Option<std::time::SystemTime>| {
            t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        let stream = self.client.list_workflows(
            query.to_owned(),
            temporalio_client::WorkflowListOptions::builder()
                .limit(limit)
                .build(),
        );
        let rows: Vec<_> = stream.try_collect().await.map_err(OrderOpError::temporal)?;
        Ok(rows
            .into_iter()
            .map(|w| {
                let attrs = w.search_attributes();
                let deadline = attrs
                    .get(&sa::PAYMENT_DEADLINE)
                    .map(|t| t.seconds().saturating_mul(1000) + i64::from(t.nanos() / 1_000_000));
                ListedOrder {
                    order_id: w.id().trim_start_matches("order-").to_owned(),
                    workflow_id: w.id().to_owned(),
                    status: attrs.get(&sa::ORDER_STATUS),
                    customer_id: attrs.get(&sa::CUSTOMER_ID),
                    provider: attrs.get(&sa::PAYMENT_PROVIDER),
                    amount_minor: attrs.get(&sa::ORDER_AMOUNT_MINOR),
                    payment_deadline_ms: deadline,
                    started_ms: to_ms(w.start_time()),
                    execution_status: format!("{:?}", w.status()),
                }
            })
            .collect())
    }

    /// Starts the refund of a payment that arrived after its order was over. One workflow per
    /// payment number, started idempotently, so repeated callbacks refund once.
    pub async fn start_late_payment_refund(
        &self,
        order_id: &str,
        payment_no: &str,
        provider: &str,
        event_id: &str,
    ) -> Result<(), OrderOpError> {
        let options = WorkflowStartOptions::new(
            self.task_queue.clone(),
            late_payment_workflow_id(payment_no),
        )
        .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
        .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
        .static_summary(format!("refund of a late payment for order {order_id}"))
        .build();
        let input = LatePayment {
            order_id: order_id.to_owned(),
            payment_no: payment_no.to_owned(),
            provider: provider.to_owned(),
            event_id: event_id.to_owned(),
        };
        match self
            .client
            .start_workflow(LatePaymentWorkflow::run, input, options)
            .await
        {
            Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(()),
            Err(e) => Err(OrderOpError::temporal(e)),
        }
    }

    /// The order workflow's history as the SDK's replayer reads it.
    pub async fn export_history(&self, order_id: &str) -> Result<Vec<u8>, OrderOpError> {
        self.export_workflow_history(&workflow_id_for_str(order_id), order_id)
            .await
    }

    /// Any workflow's history (`late-payment-<payment_no>`, ...). `label` names it in errors.
    pub async fn export_workflow_history(
        &self,
        workflow_id: &str,
        label: &str,
    ) -> Result<Vec<u8>, OrderOpError> {
        let order_id = label;
        self.client
            .get_workflow_handle::<temporalio_common::UntypedWorkflow>(workflow_id)
            .fetch_history(Default::default())
            .to_json()
            .await
            .map_err(|e| match e {
                temporalio_client::WorkflowHistoryError::Fetch(
                    WorkflowInteractionError::NotFound(_),
                ) => OrderOpError::UnknownOrder(order_id.to_owned()),
                other => OrderOpError::temporal(other),
            })
    }
}

/// An activity the order's workflow is waiting on, as Temporal describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingStep {
    pub activity: String,
    pub attempt: i32,
    pub last_error: Option<String>,
}

/// An order as the visibility store lists it (search attributes, no workflow round trip).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedOrder {
    pub order_id: String,
    pub workflow_id: String,
    pub status: Option<String>,
    pub customer_id: Option<String>,
    pub provider: Option<String>,
    pub amount_minor: Option<i64>,
    pub payment_deadline_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub execution_status: String,
}

/// The visibility query for stuck orders: still running, and either past their payment deadline
/// while awaiting payment (the close should have happened), or in `NEEDS_REVIEW` / `PENDING` for
/// longer than `older_than`. `only` narrows it to one of those statuses.
pub fn stuck_query(
    only: Option<OrderStatus>,
    older_than: Duration,
    now: std::time::SystemTime,
) -> String {
    let rfc = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let cutoff = rfc(now.checked_sub(older_than).unwrap_or(std::time::UNIX_EPOCH));
    let overdue = format!(
        r#"(OrderStatus = "AWAITING_PAYMENT" AND PaymentDeadline < "{}")"#,
        rfc(now)
    );
    let lingering = |s: OrderStatus| format!(r#"(OrderStatus = "{s}" AND StartTime < "{cutoff}")"#);
    let clause = match only {
        Some(OrderStatus::AwaitingPayment) => overdue,
        Some(status) => lingering(status),
        None => format!(
            "({overdue} OR {} OR {})",
            lingering(OrderStatus::NeedsReview),
            lingering(OrderStatus::Pending)
        ),
    };
    format!(r#"WorkflowType = "OrderWorkflow" AND ExecutionStatus = "Running" AND {clause}"#)
}

/// Orders with a given status, running or not.
pub fn status_query(status: OrderStatus) -> String {
    format!(r#"WorkflowType = "OrderWorkflow" AND OrderStatus = "{status}""#)
}

/// An order id as a caller gave it, checked before it goes to Temporal or the database. One
/// that is not the shape of an order id ([`OrderId::parse`]: 1 to 64 ASCII letters, digits, `-`
/// and `_`; no order is ever recorded under another) names no order, and is answered like any
/// unknown order, rather than with whatever Temporal says of a 10 KB workflow id.
pub fn known_shape(order_id: &str) -> Result<OrderId, OrderOpError> {
    OrderId::parse(order_id).map_err(|_| {
        // Not echoed in full: it may be kilobytes long.
        let shown: String = order_id.chars().take(OrderId::MAX_LEN).collect();
        let more = if shown.len() < order_id.len() {
            "…"
        } else {
            ""
        };
        OrderOpError::UnknownOrder(format!("{shown}{more}"))
    })
}

pub fn workflow_id_for_str(order_id: &str) -> String {
    match OrderId::parse(order_id) {
        Ok(id) => workflow_id_for(&id),
        Err(_) => format!("order-{order_id}"),
    }
}

/// Temporal answers a signal or update to a finished workflow with this status message (no
/// distinct gRPC code).
fn already_completed(status: &tonic::Status) -> bool {
    status
        .message()
        .contains("workflow execution already completed")
}

fn interaction_error(order_id: &str, e: WorkflowInteractionError) -> OrderOpError {
    match e {
        WorkflowInteractionError::NotFound(_) => OrderOpError::UnknownOrder(order_id.to_owned()),
        WorkflowInteractionError::Rpc(status) if already_completed(&status) => {
            OrderOpError::refused(
                Refusal::Finished,
                format!("order {order_id} has already finished"),
            )
        }
        other => OrderOpError::temporal(other),
    }
}

fn update_error(order_id: &str, e: WorkflowUpdateError) -> OrderOpError {
    match e {
        WorkflowUpdateError::NotFound(_) => OrderOpError::UnknownOrder(order_id.to_owned()),
        // The update's validator refused: the order's state does not allow it.
        WorkflowUpdateError::Failed(failure) => {
            OrderOpError::refused(Refusal::WrongState, failure.message.clone())
        }
        WorkflowUpdateError::Rpc(status) if already_completed(&status) => OrderOpError::refused(
            Refusal::Finished,
            format!("order {order_id} has already finished; it can no longer be changed"),
        ),
        other => OrderOpError::temporal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_no_possible_order_are_unknown_orders_shown_short() {
        let id = known_shape("ord_0123456789abcdef01234567").expect("an order id");
        assert_eq!(id.as_str(), "ord_0123456789abcdef01234567");
        let long = "A".repeat(10 * 1024);
        for bad in [long.as_str(), "", "a b", "ord/../x", "ordé"] {
            match known_shape(bad) {
                Err(OrderOpError::UnknownOrder(shown)) => {
                    assert!(shown.chars().count() <= OrderId::MAX_LEN + 1, "{shown}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
