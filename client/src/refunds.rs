//! After-sale refunds from the client side (the CLI, the HTTP API, the tests): accept the request
//! in the database (`orderflow_activities::refunds::request`: the caller learns at once whether it
//! fits what is left to refund), then start its workflow, `refund-<refund_no>`, idempotently.
//!
//! If the process dies between the two, the refund is counted and `REQUESTED` with no workflow:
//! the same request again (same key) finds it and starts the workflow, and
//! [`Orders::resume_refunds`] starts every such one (`orderflow refunds resume`).

use crate::orders::{OrderOpError, Orders, Refusal};
use orderflow_activities::refunds::{self, RefundAsk, RefundError, StoredRefund};
use orderflow_workflows::AfterSaleRefundWorkflow;
use orderflow_workflows::after_sale_refund::{AfterSaleRefund, RefundView};
pub use orderflow_workflows::refund_workflow_id;
use temporalio_client::errors::{WorkflowQueryError, WorkflowStartError};
use temporalio_client::{
    WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowStartOptions,
};

/// What [`Orders::refund`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundStarted {
    pub refund: StoredRefund,
    /// False: the same request (same key) was accepted before; this is that refund.
    pub created: bool,
    pub workflow_id: String,
}

/// A refused refund request as an order operation's refusal, with the refund's own code.
fn refused(err: RefundError) -> OrderOpError {
    match err {
        RefundError::Db(e) => OrderOpError::Db(e),
        RefundError::OrderNotFound(id) => OrderOpError::UnknownOrder(id),
        RefundError::NotRefundable { .. }
        | RefundError::CurrencyMismatch { .. }
        | RefundError::UnknownLine { .. }
        | RefundError::ExceedsPayment { .. }
        | RefundError::ExceedsLine { .. }
        | RefundError::KeyReused { .. } => {
            OrderOpError::refused(Refusal::Conflict(err.code()), err.to_string())
        }
        other => OrderOpError::refused(Refusal::InvalidInput(other.code()), other.to_string()),
    }
}

impl Orders {
    /// Accepts an after-sale refund and starts its workflow (see the module docs).
    pub async fn refund(&self, ask: &RefundAsk) -> Result<RefundStarted, OrderOpError> {
        crate::orders::known_shape(ask.order_id.as_str())?;
        let (refund, created) = refunds::request(&self.db, ask).await.map_err(refused)?;
        let workflow_id = self.start_refund_workflow(&refund).await?;
        Ok(RefundStarted {
            refund,
            created,
            workflow_id,
        })
    }

    async fn start_refund_workflow(&self, refund: &StoredRefund) -> Result<String, OrderOpError> {
        let workflow_id = refund_workflow_id(&refund.refund_no);
        let options = WorkflowStartOptions::new(self.task_queue.clone(), workflow_id.clone())
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .static_summary(format!(
                "after-sale refund of {} {} for order {}",
                refund.amount_minor, refund.currency, refund.order_id
            ))
            .build();
        let input = AfterSaleRefund {
            order_id: refund.order_id.clone(),
            refund_no: refund.refund_no.clone(),
        };
        match self
            .client
            .start_workflow(AfterSaleRefundWorkflow::run, input, options)
            .await
        {
            Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(workflow_id),
            Err(e) => Err(OrderOpError::Temporal(Box::new(e))),
        }
    }

    /// The order's after-sale refunds, oldest first (an unknown order has none).
    pub async fn refunds(&self, order_id: &str) -> Result<Vec<StoredRefund>, OrderOpError> {
        crate::orders::known_shape(order_id)?;
        Ok(refunds::for_order(&self.db, order_id).await?)
    }

    /// A refund's workflow's `status` query.
    pub async fn refund_view(&self, refund_no: &str) -> Result<RefundView, OrderOpError> {
        self.client
            .get_workflow_handle::<AfterSaleRefundWorkflow>(refund_workflow_id(refund_no))
            .query(
                AfterSaleRefundWorkflow::status_query,
                (),
                WorkflowQueryOptions::default(),
            )
            .await
            .map_err(|e| match e {
                WorkflowQueryError::NotFound(_) => OrderOpError::refused(
                    Refusal::InvalidInput("UNKNOWN_REFUND"),
                    format!("no refund workflow for {refund_no}"),
                ),
                e => OrderOpError::Temporal(Box::new(e)),
            })
    }

    /// Starts the workflow of every refund still `REQUESTED` (idempotent: a running or finished
    /// one is left as it is). Returns how many it looked at.
    pub async fn resume_refunds(&self) -> Result<usize, OrderOpError> {
        let pending = refunds::requested(&self.db).await?;
        for refund in &pending {
            self.start_refund_workflow(refund).await?;
        }
        Ok(pending.len())
    }
}
