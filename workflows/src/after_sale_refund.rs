//! `AfterSaleRefundWorkflow`: an operator's refund of a paid order, whole or in part, id
//! `refund-<refund_no>`.
//!
//! The request was accepted before the workflow started (`orderflow_activities::refunds::request`
//! counted it against the payment), so the workflow only moves the money: one activity,
//! `refund_after_sale`, asks the provider with the refund number derived from the order and the
//! request, follows it while the provider says "processing" (a retryable failure, so each
//! attempt and the last answer show in `describe`), and records it with the order's new status.
//! A worker killed mid-call retries with the same refund number, and the provider answers with
//! the refund it already made: one refund, however often it runs.
//!
//! Its `status` query shows the refund, and its search attributes the order's status after it
//! (`OrderStatus = "PARTIALLY_REFUNDED"` finds it in the UI): the order's own workflow ended at
//! `PAID` and can no longer change its attributes.

use crate::order::{OrderWorkflowConfig, activity_options, fail};
use crate::search_attributes::{CUSTOMER_ID, ORDER_AMOUNT_MINOR, ORDER_STATUS, PAYMENT_PROVIDER};
use orderflow_activities::PaymentActivities;
use orderflow_activities::refunds::AfterSaleRefunded;
use orderflow_domain::OrderStatus;
use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowContextView, WorkflowResult};

/// Workflow input, plain JSON like every Orderflow contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterSaleRefund {
    pub order_id: String,
    pub refund_no: String,
}

/// What the `status` query answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundView {
    pub order_id: String,
    pub refund_no: String,
    /// `REQUESTED` until the provider has returned the money, then `SUCCEEDED`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The order's status once this refund is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_status: Option<OrderStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// The workflow id of an after-sale refund: one per refund number.
pub fn refund_workflow_id(refund_no: &str) -> String {
    format!("refund-{refund_no}")
}

#[workflow]
pub struct AfterSaleRefundWorkflow {
    config: OrderWorkflowConfig,
    view: RefundView,
}

impl AfterSaleRefundWorkflow {
    pub fn new(config: OrderWorkflowConfig) -> Self {
        AfterSaleRefundWorkflow {
            config,
            view: RefundView::default(),
        }
    }
}

#[workflow_methods(factory_only)]
impl AfterSaleRefundWorkflow {
    #[run(name = "AfterSaleRefundWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: AfterSaleRefund,
    ) -> WorkflowResult<AfterSaleRefunded> {
        ctx.state_mut(|s| {
            s.view.order_id.clone_from(&input.order_id);
            s.view.refund_no.clone_from(&input.refund_no);
            s.view.state = "REQUESTED".to_owned();
            s.view.waiting_for = Some("the provider: making and following the refund".to_owned());
        });
        let done: AfterSaleRefunded = ctx
            .execute_activity(
                PaymentActivities::refund_after_sale,
                input.refund_no.clone(),
                activity_options(),
            )
            .await
            .map_err(fail)?;
        ctx.state_mut(|s| {
            s.view.state = "SUCCEEDED".to_owned();
            s.view.refund_id = Some(done.refund_id.clone());
            s.view.amount_minor = Some(done.amount_minor);
            s.view.currency = Some(done.currency.clone());
            s.view.order_status = Some(done.order_status);
            s.view.waiting_for = None;
        });
        if ctx.state(|s| s.config.search_attributes) {
            ctx.upsert_search_attributes(vec![
                ORDER_STATUS.value_set(done.order_status.as_str().to_owned()),
                CUSTOMER_ID.value_set(done.customer_id.clone()),
                PAYMENT_PROVIDER.value_set(done.provider.clone()),
                ORDER_AMOUNT_MINOR.value_set(done.paid_minor),
            ]);
        }
        Ok(done)
    }

    #[query(name = "status")]
    pub fn status_query(&self, _ctx: &WorkflowContextView) -> RefundView {
        self.view.clone()
    }
}
